-- materialized: table
--
-- Ambulatory glucose profile: glucose percentiles for each local hour of the day over the
-- trailing 14 local days ending on the newest reading's day (window_start .. window_end, both
-- included). Percentiles are continuous: linear interpolation between the two nearest order
-- statistics (Hyndman-Fan type 7, the default of R's quantile and numpy's percentile).
-- All 24 hours are listed; an hour without readings has reading_count 0 and no percentiles.
with newest as (
    select max(reading_date) as window_end
    from silver.fct_glucose_readings
),

window_bounds as (
    select
        cast(window_end - interval 13 day as date) as window_start,
        window_end
    from newest
    where window_end is not null
),

hourly as (
    select
        r.hour_of_day,
        count(*) as reading_count,
        quantile_cont(r.glucose_mg_dl, [0.05, 0.25, 0.5, 0.75, 0.95]) as percentiles
    from silver.fct_glucose_readings as r
    inner join window_bounds as w on r.reading_date between w.window_start and w.window_end
    group by r.hour_of_day
)

select
    cast(h.hour_of_day as integer) as hour_of_day,
    cast(coalesce(p.reading_count, 0) as bigint) as reading_count,
    cast(p.percentiles[1] as double) as p05_mg_dl,
    cast(p.percentiles[2] as double) as p25_mg_dl,
    cast(p.percentiles[3] as double) as p50_mg_dl,
    cast(p.percentiles[4] as double) as p75_mg_dl,
    cast(p.percentiles[5] as double) as p95_mg_dl,
    cast(w.window_start as date) as window_start,
    cast(w.window_end as date) as window_end
from window_bounds as w
cross join range(24) as h(hour_of_day)
left join hourly as p on p.hour_of_day = h.hour_of_day
