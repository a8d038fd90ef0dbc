-- materialized: incremental
-- partition_by: reading_month
--
-- Sensor glucose entries (type = 'sgv') typed and renamed; one row per reading.
-- Error codes (sgv < 39) are kept and flagged: gold counts them, silver drops them.
-- Duplicate uploads collapse: phone and receiver upload the same reading with different _ids
-- and device names and a date a second or so apart. An entry is a copy when an entry kept
-- before it (earliest date, then smallest _id) has the same sgv less than 60 s earlier.
-- "Kept before it" is greedy, not chained: a run of equal values each 50 s apart keeps every
-- other one rather than collapsing into its first entry; readings a full 60 s apart, as a
-- one-minute sensor sends them, are all kept.
-- Before that, one version per document (an API v3 identifier, else the _id: the one the site
-- changed last), and a document whose version says isValid false (deleted, as API v3 deletes)
-- goes no further (docs/closed-loop.md).
with versions as (
    select *
    from raw.glucose_entries
    qualify row_number() over (
        partition by coalesce(identifier, _id)
        order by srv_modified desc nulls last, _phlo_ingested_at desc, _id
    ) = 1
),

sgv_entries as (
    select
        _id as entry_id,
        date as reading_epoch_ms,
        sgv,
        direction,
        trend,
        noise,
        device,
        reading_ts,
        _phlo_run_id,
        _phlo_ingested_at
    from versions
    where type = 'sgv' and sgv is not null and coalesce(is_valid, true)
),

-- Duplicate uploads collapse by the sgv (sql/macros/keep_first_upload.sql).
uploads as (
    select sgv as dup_key, reading_epoch_ms as dup_epoch_ms, entry_id as dup_id
    from sgv_entries
),

kept as (
    select *
    from sgv_entries
    where entry_id in (select dup_id from keep_first_upload('uploads'))
),

-- Without the zone every local month would be null and an incremental run would keep nothing.
localised as (
    select
        *,
        timezone(
            coalesce(cast(getvariable('phlo_timezone') as varchar), error('SET VARIABLE phlo_timezone first')),
            reading_ts
        ) as reading_local_ts
    from kept
)

select
    cast(entry_id as varchar) as entry_id,
    cast(case when sgv >= 39 then sgv end as integer) as glucose_mg_dl,
    cast(reading_ts as timestamptz) as reading_ts,
    cast(reading_local_ts as timestamp) as reading_local_ts,
    cast(reading_epoch_ms as bigint) as reading_epoch_ms,
    cast(strftime(reading_local_ts, '%Y-%m') as varchar) as reading_month,
    cast(direction as varchar) as direction,
    cast(trend as integer) as trend,
    cast(noise as integer) as noise,
    cast(device as varchar) as device,
    cast(sgv < 39 as boolean) as is_sensor_error,
    cast(case when sgv < 39 then sgv end as integer) as sensor_error_code,
    cast(_phlo_run_id as varchar) as _phlo_run_id,
    cast(_phlo_ingested_at as timestamptz) as _phlo_ingested_at
from localised
