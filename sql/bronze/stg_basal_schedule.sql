-- materialized: table
--
-- The scheduled basal of every Nightscout profile document, one row per schedule segment
-- (docs/closed-loop.md, "Total daily insulin from basal"). As Nightscout reads it
-- (lib/profilefunctions.js): the document in force at an instant is the newest whose startDate is
-- at or before it; its profile is the store entry named defaultProfile (else its only entry); the
-- rate is that of the last basal entry whose time (timeAsSeconds, else "HH:MM") is at or before
-- the local time since midnight in the profile's timezone (else the home's zone), before the
-- first entry the first entry's. Local time is the wall clock, as the pump and AndroidAPS
-- (Profile.secondsFromMidnight) read it; Nightscout's own display counts real seconds since
-- midnight, an hour off after a DST change on that day.
-- A whole table, not monthly: the profile in force may be years older than the month being built.
with versions as (
    select *
    from raw.profiles
    qualify row_number() over (
        partition by coalesce(identifier, _id)
        order by srv_modified desc nulls last, _phlo_ingested_at desc, _id
    ) = 1
),

documents as (
    select
        _id as profile_id,
        default_profile,
        start_ts,
        lead(start_ts) over (order by start_ts, _id) as until_ts,
        store_json
    from versions
    where coalesce(is_valid, true)
),

chosen as (
    select d.profile_id, d.start_ts, d.until_ts, s.key as profile_name, s.value as profile
    from documents as d, json_each(d.store_json) as s
    where s.key = d.default_profile
        or (d.default_profile is null and json_array_length(json_keys(d.store_json)) = 1)
),

entries as (
    select
        c.profile_id,
        c.profile_name,
        c.start_ts,
        c.until_ts,
        coalesce(
            nullif(c.profile ->> 'timezone', ''),
            cast(getvariable('phlo_timezone') as varchar)
        ) as timezone,
        coalesce(
            try_cast(b.value ->> 'timeAsSeconds' as integer),
            try_cast(split_part(b.value ->> 'time', ':', 1) as integer) * 3600
                + try_cast(split_part(b.value ->> 'time', ':', 2) as integer) * 60
        ) as seconds_from,
        try_cast(b.value ->> 'value' as double) as rate_u_h
    from chosen as c, json_each(c.profile -> 'basal') as b
),

usable as (
    select *
    from entries
    where seconds_from between 0 and 86399 and rate_u_h >= 0
),

-- Before its first entry's time a schedule gives its first entry's rate (getValueByTime starts
-- from valueContainer[0]): the first segment starts at midnight.
segments as (
    select
        profile_id,
        profile_name,
        start_ts,
        until_ts,
        timezone,
        rate_u_h,
        case when row_number() over (partition by profile_id order by seconds_from) = 1 then 0
        else seconds_from end as seconds_from
    from usable
)

select
    cast(profile_id as varchar) as profile_id,
    cast(profile_name as varchar) as profile_name,
    cast(start_ts as timestamptz) as valid_from,
    cast(until_ts as timestamptz) as valid_until,
    cast(timezone as varchar) as timezone,
    cast(seconds_from as integer) as seconds_from,
    cast(coalesce(lead(seconds_from) over (partition by profile_id order by seconds_from), 86400) as integer)
        as seconds_until,
    cast(rate_u_h as double) as rate_u_h
from segments
