-- materialized: incremental
-- partition_by: reading_month
-- publish: glucose_readings key=entry_id days=90
-- (About 26,000 rows: a sequential scan answers a time range in milliseconds, so no index
-- besides the key; each index costs its build on every publish.)
--
-- Valid glucose readings with local-time dimensions and the consensus bands (docs/metrics.md).
-- Sensor error codes and impossible values (outside 20..600 mg/dL) are not readings.
-- day_of_week is ISO 8601, 1 = Monday .. 7 = Sunday.
-- The previous reading is the person's, whatever device sent either (duplicate uploads that
-- collapse keep one uploader's name, and a person may switch sensors: a gap is a gap in the
-- person's readings). It is looked for at most 28 days back: the runner hands an incremental
-- model at least the whole previous month, so a month sliced with its neighbours sees the same
-- previous reading as the full history does.
with readings as (
    select
        entry_id,
        glucose_mg_dl,
        reading_ts,
        reading_local_ts,
        reading_epoch_ms,
        reading_month,
        direction,
        trend,
        device
    from bronze.stg_glucose_entries
    where not is_sensor_error and glucose_mg_dl between 20 and 600
),

with_previous as (
    select
        *,
        lag(glucose_mg_dl) over by_time as previous_glucose_mg_dl,
        lag(reading_epoch_ms) over by_time as previous_epoch_ms
    from readings
    window by_time as (order by reading_epoch_ms, entry_id)
),

previous_in_reach as (
    select
        * exclude (previous_glucose_mg_dl, previous_epoch_ms),
        case when reading_epoch_ms - previous_epoch_ms <= cast(28 * 86400 as bigint) * 1000 then previous_glucose_mg_dl end
            as previous_glucose_mg_dl,
        case when reading_epoch_ms - previous_epoch_ms <= cast(28 * 86400 as bigint) * 1000 then previous_epoch_ms end
            as previous_epoch_ms
    from with_previous
)

select
    cast(entry_id as varchar) as entry_id,
    cast(reading_ts as timestamptz) as reading_ts,
    cast(reading_local_ts as timestamp) as reading_local_ts,
    cast(reading_local_ts as date) as reading_date,
    cast(reading_month as varchar) as reading_month,
    cast(hour(reading_local_ts) as integer) as hour_of_day,
    cast(isodow(reading_local_ts) as integer) as day_of_week,
    cast(dayname(reading_local_ts) as varchar) as day_name,
    cast(glucose_mg_dl as integer) as glucose_mg_dl,
    cast(glucose_mg_dl / 18.018 as double) as glucose_mmol_l,
    cast(
        case
            when glucose_mg_dl < 54 then 'very_low'
            when glucose_mg_dl < 70 then 'low'
            when glucose_mg_dl <= 180 then 'in_range'
            when glucose_mg_dl <= 250 then 'high'
            else 'very_high'
        end as varchar
    ) as glucose_category,
    cast(glucose_mg_dl between 70 and 180 as boolean) as is_in_range,
    cast(glucose_mg_dl - previous_glucose_mg_dl as integer) as glucose_change_mg_dl,
    cast((reading_epoch_ms - previous_epoch_ms) / 60000.0 as double) as minutes_since_last_reading,
    cast(direction as varchar) as direction,
    cast(trend as integer) as trend,
    cast(device as varchar) as device
from previous_in_reach
