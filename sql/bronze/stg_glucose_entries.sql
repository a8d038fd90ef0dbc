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
with recursive versions as (
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

-- Entries of the same value closer than 60 s to the previous one form a chain; almost every
-- chain is a single entry, so only the longer ones go through the greedy walk below.
chained as (
    select
        *,
        reading_epoch_ms - lag(reading_epoch_ms) over same_value < 60000 as continues_chain
    from sgv_entries
    window same_value as (partition by sgv order by reading_epoch_ms, entry_id)
),

chains as (
    select
        *,
        sum(case when continues_chain then 0 else 1 end) over (
            partition by sgv order by reading_epoch_ms, entry_id rows unbounded preceding
        ) as chain_no
    from chained
),

numbered as (
    select
        *,
        row_number() over (partition by sgv, chain_no order by reading_epoch_ms, entry_id) as chain_pos,
        count(*) over (partition by sgv, chain_no) as chain_length
    from chains
),

in_long_chains as (
    select sgv, chain_no, chain_pos, entry_id, reading_epoch_ms
    from numbered
    where chain_length > 1
),

-- Walks each chain one position per step, carrying the date of the entry last kept.
greedy (sgv, chain_no, chain_pos, entry_id, is_kept, kept_epoch_ms) as (
    select sgv, chain_no, chain_pos, entry_id, true, reading_epoch_ms
    from in_long_chains
    where chain_pos = 1
    union all
    select
        n.sgv,
        n.chain_no,
        n.chain_pos,
        n.entry_id,
        n.reading_epoch_ms - g.kept_epoch_ms >= 60000,
        case when n.reading_epoch_ms - g.kept_epoch_ms >= 60000 then n.reading_epoch_ms else g.kept_epoch_ms end
    from greedy as g
    inner join in_long_chains as n
        on n.sgv = g.sgv and n.chain_no = g.chain_no and n.chain_pos = g.chain_pos + 1
),

kept as (
    select n.*
    from numbered as n
    left join greedy as g on g.entry_id = n.entry_id
    where n.chain_length = 1 or g.is_kept
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
