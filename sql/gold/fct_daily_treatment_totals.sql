-- materialized: incremental
-- partition_by: reading_month
--
-- Insulin and carbs per local calendar day, for the days with a bolus, a carb entry or counted
-- basal: bolus insulin (`total_insulin_units`, the insulin the loop gave by itself as boluses,
-- SMBs and automatic boluses, also apart), basal insulin (gold.fct_daily_basal_insulin; null
-- unless a profile schedule or temp basals cover every minute of the day so far), and the total daily dose (bolus +
-- basal, null without basal) with basal's share of it.
with boluses as (
    select
        reading_date,
        coalesce(sum(insulin_units), 0) as bolus_units,
        coalesce(sum(carbs_g), 0) as carbs_g,
        coalesce(sum(insulin_units) filter (where is_automatic), 0) as automatic_units,
        count(*) filter (where is_bolus) as bolus_count,
        count(*) filter (where is_carbs) as carb_entry_count
    from silver.fct_treatments
    group by reading_date
),

days as (
    select
        coalesce(b.reading_date, basal.reading_date) as reading_date,
        coalesce(b.bolus_units, 0) as bolus_units,
        coalesce(b.carbs_g, 0) as carbs_g,
        coalesce(b.automatic_units, 0) as automatic_units,
        coalesce(b.bolus_count, 0) as bolus_count,
        coalesce(b.carb_entry_count, 0) as carb_entry_count,
        case when basal.is_complete then basal.basal_insulin_units end as basal_insulin_units
    from boluses as b
    full outer join gold.fct_daily_basal_insulin as basal on basal.reading_date = b.reading_date
)

select
    cast(reading_date as date) as reading_date,
    cast(bolus_units as double) as total_insulin_units,
    cast(carbs_g as double) as total_carbs_g,
    cast(automatic_units as double) as automatic_insulin_units,
    cast(bolus_count as integer) as bolus_count,
    cast(carb_entry_count as integer) as carb_entry_count,
    cast(basal_insulin_units as double) as basal_insulin_units,
    cast(bolus_units + basal_insulin_units as double) as total_daily_dose_units,
    cast(basal_insulin_units / nullif(bolus_units + basal_insulin_units, 0) as double) as basal_share,
    cast(strftime(reading_date, '%Y-%m') as varchar) as reading_month
from days
where bolus_count + carb_entry_count > 0 or basal_insulin_units is not null
