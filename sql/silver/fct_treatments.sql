-- materialized: incremental
-- partition_by: reading_month
--
-- Bolus and carb events in local time, one row per treatment; basal changes, notes and site
-- changes are not events a dose analysis reads. A bolus the loop gave by itself (an SMB, Loop's
-- automatic bolus) is flagged; a bolus calculation counts only what bronze counts of it.
select
    cast(treatment_id as varchar) as treatment_id,
    cast(event_type as varchar) as event_type,
    cast(treatment_ts as timestamptz) as treatment_ts,
    cast(treatment_local_ts as timestamp) as treatment_local_ts,
    cast(treatment_local_ts as date) as reading_date,
    cast(case when is_bolus then insulin_units end as double) as insulin_units,
    cast(case when is_carbs then carbs_g end as double) as carbs_g,
    cast(is_bolus as boolean) as is_bolus,
    cast(is_carbs as boolean) as is_carbs,
    cast(is_automatic as boolean) as is_automatic,
    cast(reading_month as varchar) as reading_month
from bronze.stg_treatments
where is_bolus or is_carbs
