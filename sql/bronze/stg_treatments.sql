-- materialized: incremental
-- partition_by: reading_month
--
-- Nightscout treatments typed and renamed; one row per treatment, in local time.
-- Event types are normalised to Nightscout's canonical names whatever the case and spacing an
-- uploader used; a name Nightscout does not define is kept as sent (trimmed).
-- Closed-loop conventions come first (docs/closed-loop.md):
-- 1. One version per document: the one the site changed last (srvModified, then the one stored
--    last). A document is its API v3 identifier, else its _id, whichever API served it.
-- 2. Deleted means deleted: a document whose version says isValid false goes no further.
-- 3. Uploader identities before heuristics: documents of one kind (temp basal, bolus calculation,
--    bolus, carbs, other event) sharing AndroidAPS's pump composite key (pumpId, pumpType,
--    pumpSerial), else Loop's syncIdentifier, else xDrip's uuid, else Trio's id, are one record:
--    the earliest (then smallest _id) is kept.
-- 4. Calculations are not doses: a Bolus Wizard record's insulin counts only when no delivered
--    bolus of the same insulin (within 0.05 U) was uploaded within 2 minutes of it, and its carbs
--    only when no other record holds the same carbs within 2 minutes.
-- A temp basal keeps its rate (absolute, else rate, U/h), its percent of the schedule and the
-- insulin it delivered (Loop's amount) for the basal model (sql/gold/fct_daily_basal_insulin.sql).
-- A bolus is insulin given (> 0 U) by any event but a temp basal, a pump priming or a long-acting
-- injection (an imported Clarity or LibreView dose); a carb entry is carbs > 0 g. A loop's automatic bolus (isSMB, type SMB, Loop's automatic) is flagged.
-- Duplicate uploads without an uploader identity collapse, as glucose entries do: a pump
-- uploader and a phone app upload the same bolus with different _ids, enteredBy and a created_at
-- seconds apart. A treatment is a copy when one kept before it (earliest time, then smallest _id)
-- has the same canonical event type, insulin, carbs, duration and basal rate (nulls equal) less
-- than 60 s earlier. The same bolus given again minutes later is a second bolus and stays.
-- Greedy, not chained, as for glucose.
with versions as (
    select *
    from raw.treatments
    qualify row_number() over (
        partition by coalesce(identifier, _id)
        order by srv_modified desc nulls last, _phlo_ingested_at desc, _id
    ) = 1
),

identified as (
    select
        *,
        case
            when trim(event_type) ilike 'temp%basal' then 'temp basal'
            when lower(regexp_replace(trim(event_type), '\s+', ' ', 'g')) = 'bolus wizard' then 'calculation'
            when insulin > 0 then 'bolus'
            when carbs > 0 then 'carbs'
            else 'event:' || lower(trim(event_type))
        end as record_kind,
        case
            when pump_id is not null and pump_type is not null and pump_serial is not null
                then 'pump:' || pump_type || ':' || pump_serial || ':' || cast(pump_id as varchar)
            when sync_identifier is not null then 'sync:' || sync_identifier
            when uuid is not null then 'uuid:' || uuid
            when uploader_id is not null then 'id:' || uploader_id
        end as uploader_key
    from versions
    where coalesce(is_valid, true)
),

typed as (
    select
        _id as treatment_id,
        trim(event_type) as event_type_raw,
        lower(regexp_replace(trim(event_type), '\s+', ' ', 'g')) as event_key,
        treatment_ts,
        insulin,
        carbs,
        duration,
        coalesce(absolute, rate) as basal_rate,
        percent as basal_percent,
        amount as basal_amount,
        coalesce(upper(bolus_type) = 'PRIMING', false) as is_priming,
        coalesce(is_smb or upper(bolus_type) = 'SMB' or automatic, false) as is_automatic_dose,
        entered_by,
        notes,
        _phlo_run_id,
        _phlo_ingested_at
    from identified
    qualify uploader_key is null or row_number() over (
        partition by record_kind, uploader_key order by treatment_ts, _id
    ) = 1
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
),

-- Everything a copy repeats, as one comparable value (a null is its own value, equal to itself).
keyed as (
    select
        *,
        epoch_ms(treatment_ts) as treatment_epoch_ms,
        concat_ws(
            '|',
            event_type,
            coalesce(cast(insulin as varchar), '-'),
            coalesce(cast(carbs as varchar), '-'),
            coalesce(cast(duration as varchar), '-'),
            coalesce(cast(basal_rate as varchar), '-')
        ) as dose_key
    from localised
),

-- Duplicate uploads collapse by the dose (sql/macros/keep_first_upload.sql).
uploads as (
    select dose_key as dup_key, treatment_epoch_ms as dup_epoch_ms, treatment_id as dup_id
    from keyed
),

kept as (
    select *
    from keyed
    where treatment_id in (select dup_id from keep_first_upload('uploads'))
),

delivered as (
    select
        *,
        coalesce(insulin > 0 and event_type not in ('Temp Basal', 'Bolus Wizard', 'Long-Acting Insulin') and not is_priming, false)
            as is_delivered_bolus
    from kept
),

-- A calculation's insulin and carbs, when another record within 2 minutes already holds them.
calculations as (
    select
        c.treatment_id,
        bool_or(d.is_delivered_bolus and abs(d.insulin - c.insulin) < 0.05) as insulin_delivered,
        bool_or(d.event_type <> 'Bolus Wizard' and abs(d.carbs - c.carbs) < 0.5) as carbs_logged
    from delivered as c
    inner join delivered as d
        on d.treatment_id <> c.treatment_id
        and abs(d.treatment_epoch_ms - c.treatment_epoch_ms) <= 120000
    where c.event_type = 'Bolus Wizard'
    group by c.treatment_id
)

select
    cast(d.treatment_id as varchar) as treatment_id,
    cast(event_type as varchar) as event_type,
    cast(event_type_raw as varchar) as event_type_raw,
    cast(treatment_ts as timestamptz) as treatment_ts,
    cast(treatment_local_ts as timestamp) as treatment_local_ts,
    cast(strftime(treatment_local_ts, '%Y-%m') as varchar) as reading_month,
    cast(insulin as double) as insulin_units,
    cast(carbs as double) as carbs_g,
    cast(duration as double) as duration_min,
    cast(basal_rate as double) as basal_rate_u_h,
    cast(basal_percent as double) as basal_percent,
    cast(basal_amount as double) as basal_delivered_units,
    cast(
        is_delivered_bolus or (event_type = 'Bolus Wizard' and insulin > 0 and not coalesce(insulin_delivered, false))
        as boolean
    ) as is_bolus,
    cast(coalesce(carbs > 0 and not coalesce(carbs_logged, false), false) as boolean) as is_carbs,
    cast(is_automatic_dose and is_delivered_bolus as boolean) as is_automatic,
    cast(event_type = 'Bolus Wizard' as boolean) as is_calculation,
    cast(entered_by as varchar) as entered_by,
    cast(notes as varchar) as notes,
    cast(_phlo_run_id as varchar) as _phlo_run_id,
    cast(_phlo_ingested_at as timestamptz) as _phlo_ingested_at
from delivered as d
left join calculations as c on c.treatment_id = d.treatment_id
