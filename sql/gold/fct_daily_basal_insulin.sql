-- materialized: incremental
-- partition_by: reading_month
--
-- Basal insulin per local day, counted minute by minute (docs/closed-loop.md, "Total daily insulin
-- from basal"), as Nightscout's lib/profilefunctions.js reads a minute:
-- - the scheduled rate: the profile document in force (bronze.stg_basal_schedule: the newest
--   started at or before the minute), the segment of its schedule at the minute's local time in
--   the profile's timezone;
-- - replaced where a temp basal ran: from its start for its duration, ended early by the next
--   temp basal (a zero-duration temp basal only cancels the one before). Its insulin is what the
--   uploader says it delivered (Loop's amount) spread over its duration, else its absolute rate,
--   else the scheduled rate changed by its percent ((100 + percent) / 100);
-- - each minute gives rate / 60 units.
-- Days are those with any treatment or reading; minutes after the newest of them (the end of the
-- last temp basal included) are not counted yet, so today holds the basal given so far. A minute
-- with neither a profile in force nor a temp basal is not counted (`counted_minutes` says how many
-- were; `is_complete` that every minute up to the newest record was). Profile switches (a percentage or timeshift of the schedule, AndroidAPS) are not applied.
with days as (
    select reading_date from silver.fct_treatments
    union
    select reading_date from silver.fct_glucose_readings
),

-- The minute's temp basal is the newest started at or before it (an ASOF join below): so a newer
-- temp basal ends the one before, and a zero-duration one only cancels it.
temps as (
    select
        treatment_ts,
        treatment_ts + to_microseconds(cast(duration_min * 60000000 as bigint)) as end_ts,
        duration_min,
        -- A negative rate or amount is no usable figure (the schedule's rate stands); a percent
        -- below -100 is no basal at all.
        case when basal_rate_u_h >= 0 then basal_rate_u_h end as basal_rate_u_h,
        greatest(basal_percent, -100) as basal_percent,
        case when basal_delivered_units >= 0 then basal_delivered_units end as basal_delivered_units
    from silver.fct_treatments
    where is_temp_basal
    -- Two temp basals started at the same instant: the one uploaded last (largest id) runs.
    qualify row_number() over (partition by treatment_ts order by treatment_id desc) = 1
),

newest as (
    select max(at_ts) as newest_ts
    from (
        select max(treatment_ts) as at_ts from silver.fct_treatments
        union all
        select max(end_ts) from temps
        union all
        select max(reading_ts) from silver.fct_glucose_readings
    )
),

minutes as (
    select
        reading_date,
        unnest(generate_series(
            timezone(getvariable('phlo_timezone'), cast(reading_date as timestamp)),
            timezone(getvariable('phlo_timezone'), cast(reading_date + interval 1 day as timestamp))
                - interval 1 minute,
            interval 1 minute
        )) as minute_ts
    from days
),

counted as (
    select m.reading_date, m.minute_ts
    from minutes as m, newest as n
    where m.minute_ts < n.newest_ts
),

documents as (
    select distinct profile_id, valid_from, timezone from bronze.stg_basal_schedule
),

in_force as (
    select
        c.reading_date,
        c.minute_ts,
        d.profile_id,
        hour(timezone(d.timezone, c.minute_ts)) * 3600
            + minute(timezone(d.timezone, c.minute_ts)) * 60
            + second(timezone(d.timezone, c.minute_ts)) as local_seconds
    from counted as c
    asof left join documents as d on c.minute_ts >= d.valid_from
),

scheduled as (
    select f.reading_date, f.minute_ts, s.rate_u_h as scheduled_u_h
    from in_force as f
    asof left join bronze.stg_basal_schedule as s
        on s.profile_id = f.profile_id and f.local_seconds >= s.seconds_from
),

per_minute as (
    select
        s.reading_date,
        s.scheduled_u_h,
        t.treatment_ts is not null and s.minute_ts < t.end_ts as in_temp,
        case
            when t.treatment_ts is null or s.minute_ts >= t.end_ts then s.scheduled_u_h / 60
            when t.basal_delivered_units is not null and t.duration_min > 0
                then t.basal_delivered_units / t.duration_min
            when t.basal_rate_u_h is not null then t.basal_rate_u_h / 60
            when t.basal_percent is not null then s.scheduled_u_h * (100 + t.basal_percent) / 100 / 60
            else s.scheduled_u_h / 60
        end as units
    from scheduled as s
    asof left join temps as t on s.minute_ts >= t.treatment_ts
)

select
    cast(reading_date as date) as reading_date,
    cast(sum(units) as double) as basal_insulin_units,
    cast(coalesce(sum(scheduled_u_h / 60) filter (where not in_temp), 0) as double) as scheduled_basal_units,
    cast(count(*) filter (where in_temp) as integer) as temp_basal_minutes,
    cast(count(units) as integer) as counted_minutes,
    cast(count(units) = count(*) as boolean) as is_complete,
    cast(strftime(reading_date, '%Y-%m') as varchar) as reading_month
from per_minute
group by reading_date
having count(units) > 0
