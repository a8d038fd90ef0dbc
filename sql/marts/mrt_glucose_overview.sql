-- materialized: table
-- publish: glucose_overview key=reading_date
--
-- Daily overview for display: days with more than 12 valid readings (an hour of data), values
-- rounded (1 decimal, GMI 2). The rating reads the unrounded time in range, so a day at
-- 69.96 % shows 70.0 but rates Good.
select
    cast(reading_date as date) as reading_date,
    cast(day_name as varchar) as day_name,
    cast(reading_count as bigint) as reading_count,
    cast(round(avg_glucose_mg_dl, 1) as double) as avg_glucose_mg_dl,
    cast(round(time_in_range_pct, 1) as double) as time_in_range_pct,
    cast(round(estimated_a1c_pct, 2) as double) as estimated_a1c_pct,
    cast(
        case
            when time_in_range_pct >= 70 then 'Excellent'
            when time_in_range_pct >= 50 then 'Good'
            when time_in_range_pct >= 30 then 'Needs Improvement'
            else 'Critical'
        end as varchar
    ) as diabetes_management_rating
from gold.fct_daily_glucose_metrics
where reading_count > 12
