-- materialized: incremental
-- partition_by: reading_month
-- publish: daily_glucose_metrics key=reading_date
--
-- One row per local calendar day with at least one valid reading; metrics stored unrounded.
-- A day with nothing but sensor error codes has no row: there is no glucose to measure.
-- Definitions follow docs/metrics.md. Band percentages are % of readings, not time weighted.
-- coverage_pct = readings / readings expected at 5 minutes over the real length of the local
-- day (288; 276 or 300 on daylight-saving days), capped at 100.
--
-- Hypoglycaemia episodes, level 1 below 70 and level 2 below 54 mg/dL, over all valid readings
-- in time order. Each reading stands for the time until the next one, at most 5 minutes, so
-- three 5-minute readings below the threshold make 15 minutes. An episode starts with the
-- first run of at least 15 minutes below the threshold and lasts until a run of at least
-- 15 minutes at or above it, or until a gap of more than 15 minutes without readings (what
-- happened in the gap is unknown). Shorter rises in between do not split it. A level 2
-- episode is also inside a level 1 episode. An episode counts on the local day it starts.
with readings as (
    select
        entry_id,
        reading_date,
        reading_month,
        epoch_ms(reading_ts) as reading_epoch_ms,
        cast(glucose_mg_dl as double) as gl
    from silver.fct_glucose_readings
),

daily as (
    select
        reading_date,
        count(*) as reading_count,
        avg(gl) as avg_glucose_mg_dl,
        stddev_samp(gl) as stddev_glucose_mg_dl,
        min(gl) as min_glucose_mg_dl,
        max(gl) as max_glucose_mg_dl,
        100.0 * count_if(gl >= 70 and gl <= 180) / count(*) as time_in_range_pct,
        100.0 * count_if(gl < 70) / count(*) as time_below_range_pct,
        100.0 * count_if(gl > 180) / count(*) as time_above_range_pct,
        100.0 * count_if(gl < 54) / count(*) as time_very_low_pct,
        100.0 * count_if(gl >= 54 and gl < 70) / count(*) as time_low_pct,
        100.0 * count_if(gl > 180 and gl <= 250) / count(*) as time_high_pct,
        100.0 * count_if(gl > 250) / count(*) as time_very_high_pct,
        avg(10 * power(least(1.509 * (power(ln(gl), 1.084) - 5.381), 0), 2)) as lbgi,
        avg(10 * power(greatest(1.509 * (power(ln(gl), 1.084) - 5.381), 0), 2)) as hbgi
    from readings
    group by reading_date
),

sensor_errors as (
    select
        cast(reading_local_ts as date) as reading_date,
        count(*) as sensor_error_count
    from bronze.stg_glucose_entries
    where is_sensor_error
    group by 1
),

thresholds (hypo_level, threshold_mg_dl) as (
    values (1, 70.0), (2, 54.0)
),

steps as (
    select
        t.hypo_level,
        r.entry_id,
        r.reading_date,
        r.reading_epoch_ms,
        r.gl < t.threshold_mg_dl as is_below,
        lag(r.gl < t.threshold_mg_dl) over by_time as previous_is_below,
        r.reading_epoch_ms - lag(r.reading_epoch_ms) over by_time as ms_since_previous,
        least(coalesce(lead(r.reading_epoch_ms) over by_time - r.reading_epoch_ms, 300000), 300000)
            as represented_ms
    from readings as r
    cross join thresholds as t
    window by_time as (partition by t.hypo_level order by r.reading_epoch_ms, r.entry_id)
),

run_marks as (
    select
        *,
        coalesce(ms_since_previous > 15 * 60000, true) as after_gap,
        coalesce(ms_since_previous > 15 * 60000, true) or is_below <> previous_is_below as starts_run
    from steps
),

run_numbers as (
    select
        *,
        sum(case when starts_run then 1 else 0 end) over (
            partition by hypo_level order by reading_epoch_ms, entry_id rows unbounded preceding
        ) as run_no
    from run_marks
),

runs as (
    select
        hypo_level,
        run_no,
        bool_or(is_below) as is_below,
        bool_or(after_gap) as after_gap,
        min(reading_epoch_ms) as start_epoch_ms,
        arg_min(reading_date, reading_epoch_ms) as start_date,
        sum(represented_ms) as duration_ms
    from run_numbers
    group by hypo_level, run_no
),

-- A block is a stretch no episode can end inside: it starts after a gap or after 15 minutes
-- at or above the threshold, so it holds at most one episode.
run_blocks as (
    select
        *,
        coalesce(lag(not is_below and duration_ms >= 15 * 60000) over by_run, false) or after_gap
            as starts_block
    from runs
    window by_run as (partition by hypo_level order by run_no)
),

block_numbers as (
    select
        *,
        sum(case when starts_block then 1 else 0 end) over (
            partition by hypo_level order by run_no rows unbounded preceding
        ) as block_no
    from run_blocks
),

episodes as (
    select
        hypo_level,
        arg_min(start_date, start_epoch_ms) as start_date
    from block_numbers
    where is_below and duration_ms >= 15 * 60000
    group by hypo_level, block_no
),

daily_episodes as (
    select
        start_date as reading_date,
        count_if(hypo_level = 1) as hypo_episodes_l1,
        count_if(hypo_level = 2) as hypo_episodes_l2
    from episodes
    group by start_date
),

day_lengths as (
    select
        reading_date,
        (
            epoch_ms(timezone(getvariable('phlo_timezone'), cast(reading_date + interval 1 day as timestamp)))
            - epoch_ms(timezone(getvariable('phlo_timezone'), cast(reading_date as timestamp)))
        ) / 300000 as expected_reading_count
    from daily
)

select
    cast(d.reading_date as date) as reading_date,
    cast(strftime(d.reading_date, '%Y-%m') as varchar) as reading_month,
    cast(dayname(d.reading_date) as varchar) as day_name,
    cast(d.reading_count as bigint) as reading_count,
    cast(d.avg_glucose_mg_dl as double) as avg_glucose_mg_dl,
    cast(d.stddev_glucose_mg_dl as double) as stddev_glucose_mg_dl,
    cast(d.min_glucose_mg_dl as double) as min_glucose_mg_dl,
    cast(d.max_glucose_mg_dl as double) as max_glucose_mg_dl,
    cast(d.time_in_range_pct as double) as time_in_range_pct,
    cast(d.time_below_range_pct as double) as time_below_range_pct,
    cast(d.time_above_range_pct as double) as time_above_range_pct,
    cast(d.time_very_low_pct as double) as time_very_low_pct,
    cast(d.time_low_pct as double) as time_low_pct,
    cast(d.time_high_pct as double) as time_high_pct,
    cast(d.time_very_high_pct as double) as time_very_high_pct,
    cast(cv_pct(d.stddev_glucose_mg_dl, d.avg_glucose_mg_dl) as double) as cv_pct,
    cast(gmi_pct(d.avg_glucose_mg_dl) as double) as estimated_a1c_pct,
    cast(gri(d.time_very_low_pct, d.time_low_pct, d.time_high_pct, d.time_very_high_pct) as double) as gri,
    cast(d.lbgi as double) as lbgi,
    cast(d.hbgi as double) as hbgi,
    cast(l.expected_reading_count as bigint) as expected_reading_count,
    cast(least(100.0 * d.reading_count / l.expected_reading_count, 100.0) as double) as coverage_pct,
    cast(coalesce(e.sensor_error_count, 0) as bigint) as sensor_error_count,
    cast(coalesce(h.hypo_episodes_l1, 0) as bigint) as hypo_episodes_l1,
    cast(coalesce(h.hypo_episodes_l2, 0) as bigint) as hypo_episodes_l2
from daily as d
inner join day_lengths as l on l.reading_date = d.reading_date
left join sensor_errors as e on e.reading_date = d.reading_date
left join daily_episodes as h on h.reading_date = d.reading_date
