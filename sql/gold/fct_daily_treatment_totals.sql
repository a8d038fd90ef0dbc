-- materialized: incremental
-- partition_by: reading_month
--
-- Bolus insulin and carbs per local calendar day, for the days with at least one such event;
-- the insulin the loop gave by itself (SMBs, automatic boluses) also apart.
select
    cast(reading_date as date) as reading_date,
    cast(coalesce(sum(insulin_units), 0) as double) as total_insulin_units,
    cast(coalesce(sum(carbs_g), 0) as double) as total_carbs_g,
    cast(coalesce(sum(insulin_units) filter (where is_automatic), 0) as double) as automatic_insulin_units,
    cast(count(*) filter (where is_bolus) as integer) as bolus_count,
    cast(count(*) filter (where is_carbs) as integer) as carb_entry_count,
    cast(any_value(reading_month) as varchar) as reading_month
from silver.fct_treatments
group by reading_date
