-- materialized: incremental
-- partition_by: reading_month
--
-- Bolus and carb events, and temp basals, in local time, one row per treatment; notes and site
-- changes are not events a dose analysis reads. A bolus the loop gave by itself (an SMB, Loop's
-- automatic bolus) is flagged; a bolus calculation counts only what bronze counts of it.
-- A temp basal carries its duration, its rate (absolute U/h, else a percent of the schedule) and
-- the insulin it delivered when the uploader says (Loop's amount); it is no bolus: its insulin is
-- counted by gold.fct_daily_basal_insulin.
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
    cast(event_type = 'Temp Basal' as boolean) as is_temp_basal,
    cast(case when event_type = 'Temp Basal' then coalesce(duration_min, 0) end as double) as duration_min,
    cast(case when event_type = 'Temp Basal' then basal_rate_u_h end as double) as basal_rate_u_h,
    cast(case when event_type = 'Temp Basal' then basal_percent end as double) as basal_percent,
    cast(case when event_type = 'Temp Basal' then basal_delivered_units end as double) as basal_delivered_units,
    cast(reading_month as varchar) as reading_month
from bronze.stg_treatments
where is_bolus or is_carbs or event_type = 'Temp Basal'
