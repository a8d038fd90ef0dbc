-- materialized: incremental
-- partition_by: reading_month
--
-- Nightscout treatments typed and renamed; one row per treatment, in local time.
-- Event types are normalised to Nightscout's canonical names whatever the case and spacing an
-- uploader used; a name Nightscout does not define is kept as sent (trimmed).
-- A bolus is insulin given (> 0 U) by any event but a temp basal; a carb entry is carbs > 0 g.
with typed as (
    select
        _id as treatment_id,
        trim(event_type) as event_type_raw,
        lower(regexp_replace(trim(event_type), '\s+', ' ', 'g')) as event_key,
        treatment_ts,
        insulin,
        carbs,
        duration,
        coalesce(absolute, rate) as basal_rate,
        entered_by,
        notes,
        _phlo_run_id,
        _phlo_ingested_at
    from raw.treatments
),

-- Without the zone every local month would be null and an incremental run would keep nothing.
localised as (
    select
        *,
        timezone(
            coalesce(cast(getvariable('phlo_timezone') as varchar), error('SET VARIABLE phlo_timezone first')),
            treatment_ts
        ) as treatment_local_ts,
        case event_key
            when 'meal bolus' then 'Meal Bolus'
            when 'snack bolus' then 'Snack Bolus'
            when 'bolus wizard' then 'Bolus Wizard'
            when 'correction bolus' then 'Correction Bolus'
            when 'combo bolus' then 'Combo Bolus'
            when 'carb correction' then 'Carb Correction'
            when 'temp basal' then 'Temp Basal'
            when 'temporary basal' then 'Temp Basal'
            when 'note' then 'Note'
            when 'site change' then 'Site Change'
            when 'sensor change' then 'Sensor Change'
            when 'sensor start' then 'Sensor Start'
            when 'exercise' then 'Exercise'
            else event_type_raw
        end as event_type
    from typed
)

select
    cast(treatment_id as varchar) as treatment_id,
    cast(event_type as varchar) as event_type,
    cast(event_type_raw as varchar) as event_type_raw,
    cast(treatment_ts as timestamptz) as treatment_ts,
    cast(treatment_local_ts as timestamp) as treatment_local_ts,
    cast(strftime(treatment_local_ts, '%Y-%m') as varchar) as reading_month,
    cast(insulin as double) as insulin_units,
    cast(carbs as double) as carbs_g,
    cast(duration as double) as duration_min,
    cast(basal_rate as double) as basal_rate_u_h,
    cast(coalesce(insulin > 0 and event_type <> 'Temp Basal', false) as boolean) as is_bolus,
    cast(coalesce(carbs > 0, false) as boolean) as is_carbs,
    cast(entered_by as varchar) as entered_by,
    cast(notes as varchar) as notes,
    cast(_phlo_run_id as varchar) as _phlo_run_id,
    cast(_phlo_ingested_at as timestamptz) as _phlo_ingested_at
from localised
