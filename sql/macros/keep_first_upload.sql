-- keep_first_upload(uploads): the uploads kept when duplicate uploads collapse.
--
-- `uploads` names a relation (a CTE of the calling model) with three columns: dup_key (everything a
-- copy repeats, as one comparable value), dup_epoch_ms (its time) and dup_id (its id). It returns
-- the dup_id of every upload kept. An upload is a copy when an upload kept before it (earliest
-- time, then smallest id) has the same key less than 60 s earlier. "Kept before it" is greedy, not
-- chained: a run of equal keys each 50 s apart keeps every other one rather than collapsing into
-- its first; uploads a full 60 s apart are all kept.
-- Used by sql/bronze/stg_glucose_entries.sql (key: the sgv) and stg_treatments.sql (key: the
-- dose). The model runner defines it on its connection before building (engine.transform.models).
create or replace macro keep_first_upload(uploads) as table
with recursive
-- Uploads of the same key closer than 60 s to the previous one form a chain; almost every chain
-- is a single upload, so only the longer ones go through the greedy walk below.
chained as (
    select
        dup_key,
        dup_epoch_ms,
        dup_id,
        dup_epoch_ms - lag(dup_epoch_ms) over same_key < 60000 as continues_chain
    from query_table(uploads)
    window same_key as (partition by dup_key order by dup_epoch_ms, dup_id)
),

chains as (
    select
        *,
        sum(case when continues_chain then 0 else 1 end) over (
            partition by dup_key order by dup_epoch_ms, dup_id rows unbounded preceding
        ) as chain_no
    from chained
),

numbered as (
    select
        *,
        row_number() over (partition by dup_key, chain_no order by dup_epoch_ms, dup_id) as chain_pos,
        count(*) over (partition by dup_key, chain_no) as chain_length
    from chains
),

in_long_chains as (
    select dup_key, chain_no, chain_pos, dup_id, dup_epoch_ms
    from numbered
    where chain_length > 1
),

-- Walks each chain one position per step, carrying the time of the upload last kept.
greedy (dup_key, chain_no, chain_pos, dup_id, is_kept, kept_epoch_ms) as (
    select dup_key, chain_no, chain_pos, dup_id, true, dup_epoch_ms
    from in_long_chains
    where chain_pos = 1
    union all
    select
        n.dup_key,
        n.chain_no,
        n.chain_pos,
        n.dup_id,
        n.dup_epoch_ms - g.kept_epoch_ms >= 60000,
        case when n.dup_epoch_ms - g.kept_epoch_ms >= 60000 then n.dup_epoch_ms else g.kept_epoch_ms end
    from greedy as g
    inner join in_long_chains as n
        on n.dup_key = g.dup_key and n.chain_no = g.chain_no and n.chain_pos = g.chain_pos + 1
)

select n.dup_id
from numbered as n
left join greedy as g on g.dup_id = n.dup_id
where n.chain_length = 1 or g.is_kept
