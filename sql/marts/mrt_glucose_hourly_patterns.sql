-- materialized: table
-- publish: glucose_hourly_patterns key=hour_of_day
--
-- Glucose by local hour of the day over the trailing 90 local days ending on the newest
-- reading's day: recent enough to reflect the current therapy, long enough for a stable
-- pattern. Rounded for display to 1 decimal. Percentiles are continuous (linear interpolation,
-- as in gold.fct_hourly_glucose_profile); band percentages are % of readings.
with newest as (
    select max(reading_date) as window_end
    from silver.fct_glucose_readings
),

window_bounds as (
    select
        cast(window_end - interval 89 day as date) as window_start,
        window_end
    from newest
    where window_end is not null
),

hourly as (
    select
        r.hour_of_day,
        count(*) as reading_count,
        avg(r.glucose_mg_dl) as avg_glucose_mg_dl,
        stddev_samp(r.glucose_mg_dl) as stddev_glucose_mg_dl,
        quantile_cont(r.glucose_mg_dl, [0.05, 0.25, 0.5, 0.75, 0.95]) as percentiles,
        100.0 * count_if(r.glucose_mg_dl between 70 and 180) / count(*) as time_in_range_pct,
        100.0 * count_if(r.glucose_mg_dl < 70) / count(*) as time_below_range_pct,
        100.0 * count_if(r.glucose_mg_dl > 180) / count(*) as time_above_range_pct
    from silver.fct_glucose_readings as r
    inner join window_bounds as w on r.reading_date between w.window_start and w.window_end
    group by r.hour_of_day
)

select
    cast(h.hour_of_day as integer) as hour_of_day,
    cast(h.reading_count as bigint) as reading_count,
    cast(round(h.avg_glucose_mg_dl, 1) as double) as avg_glucose_mg_dl,
    cast(round(h.stddev_glucose_mg_dl, 1) as double) as stddev_glucose_mg_dl,
    cast(round(cv_pct(h.stddev_glucose_mg_dl, h.avg_glucose_mg_dl), 1) as double) as cv_pct,
    cast(round(h.percentiles[1], 1) as double) as p05_mg_dl,
    cast(round(h.percentiles[2], 1) as double) as p25_mg_dl,
    cast(round(h.percentiles[3], 1) as double) as p50_mg_dl,
    cast(round(h.percentiles[4], 1) as double) as p75_mg_dl,
    cast(round(h.percentiles[5], 1) as double) as p95_mg_dl,
    cast(round(h.time_in_range_pct, 1) as double) as time_in_range_pct,
    cast(round(h.time_below_range_pct, 1) as double) as time_below_range_pct,
    cast(round(h.time_above_range_pct, 1) as double) as time_above_range_pct,
    cast(w.window_start as date) as window_start,
    cast(w.window_end as date) as window_end
from hourly as h
cross join window_bounds as w
