"""Declarations of the raw lake tables: Iceberg schema, partitioning and the exact Arrow types written."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)


@dataclass(frozen=True)
class TableDef:
    """One lake table: its name, Iceberg schema, partition spec and the Arrow schema writes must match."""

    name: str
    schema: Schema
    partition_spec: PartitionSpec
    arrow_schema: pa.Schema
    key: str | None = None
    partition_column: str | None = None


def _nested(fields: list[tuple[str, object, bool, str]]) -> Schema:
    return Schema(
        *[
            NestedField(field_id=i, name=name, field_type=typ, required=required, doc=doc)  # type: ignore[arg-type]
            for i, (name, typ, required, doc) in enumerate(fields, start=1)
        ]
    )


# Fields added after the first release go last, so a stored table gains them as new columns
# (engine/lake/evolve.py) with the field ids the declaration gives them.
# API v3's: a deleted document stays with isValid false; identifier and srvModified name a document
# and its version whichever API served it (docs/closed-loop.md).
_V3_FIELDS: list[tuple[str, object, bool, str]] = [
    ("is_valid", BooleanType(), False, "isValid: false marks a document deleted (API v3 deletes so)"),
    ("identifier", StringType(), False, "API v3 identifier of the document (the _id's hex when it has none)"),
    ("srv_modified", LongType(), False, "srvModified: when the site last changed the document, epoch ms"),
]

# Nightscout entry fields (snake_case, as dlt names them) plus phlo bookkeeping columns.
_GLUCOSE_FIELDS: list[tuple[str, object, bool, str]] = [
    ("_id", StringType(), True, "Nightscout entry id (Mongo ObjectId)"),
    ("type", StringType(), False, "sgv | mbg | cal"),
    ("date", LongType(), True, "reading time, epoch milliseconds UTC"),
    ("date_string", StringType(), False, "dateString as uploaded"),
    ("sys_time", StringType(), False, "sysTime as uploaded"),
    ("utc_offset", IntegerType(), False, "uploader's UTC offset in minutes"),
    ("sgv", IntegerType(), False, "sensor glucose mg/dL; below 39 is a sensor error code"),
    ("mbg", IntegerType(), False, "meter (finger-stick) glucose mg/dL"),
    ("direction", StringType(), False, "trend arrow name"),
    ("trend", IntegerType(), False, "numeric trend 1..9"),
    ("noise", IntegerType(), False, "sensor noise level"),
    ("filtered", DoubleType(), False, "filtered raw sensor value"),
    ("unfiltered", DoubleType(), False, "unfiltered raw sensor value"),
    ("rssi", IntegerType(), False, "signal strength"),
    ("device", StringType(), False, "uploading device"),
    ("slope", DoubleType(), False, "calibration slope (cal entries)"),
    ("intercept", DoubleType(), False, "calibration intercept (cal entries)"),
    ("scale", DoubleType(), False, "calibration scale (cal entries)"),
    ("reading_ts", TimestamptzType(), True, "reading time as timestamptz (UTC)"),
    ("reading_month", StringType(), True, "YYYY-MM of reading_ts in UTC; the identity partition"),
    ("_phlo_ingested_at", TimestamptzType(), True, "when phlo stored this version of the row"),
    ("_phlo_run_id", StringType(), True, "run that stored this version of the row"),
    *_V3_FIELDS,
]

_QUARANTINE_FIELDS: list[tuple[str, object, bool, str]] = [
    ("run_id", StringType(), True, "run that quarantined the row"),
    ("entry_id", StringType(), False, "the entry's _id when it had one"),
    ("check", StringType(), True, "name of the failed check"),
    ("column", StringType(), False, "column the check guards, if any"),
    ("severity", StringType(), True, "error (warnings are never quarantined)"),
    ("reason", StringType(), True, "human readable reason"),
    ("payload", StringType(), True, "the original entry as JSON"),
    ("source", StringType(), True, "where the entry came from (URL without query, or file name)"),
    ("quarantined_at", TimestamptzType(), True, "when it was quarantined"),
]

_ARROW_TYPES: dict[type, pa.DataType] = {
    StringType: pa.string(),
    LongType: pa.int64(),
    IntegerType: pa.int32(),
    DoubleType: pa.float64(),
    TimestamptzType: pa.timestamp("us", tz="UTC"),
    BooleanType: pa.bool_(),
}


def _arrow(fields: list[tuple[str, object, bool, str]]) -> pa.Schema:
    return pa.schema(
        [pa.field(name, _ARROW_TYPES[type(typ)], nullable=not required) for name, typ, required, _ in fields]
    )


def _month_spec(schema: Schema, column: str) -> PartitionSpec:
    source = schema.find_field(column)
    return PartitionSpec(
        PartitionField(source_id=source.field_id, field_id=1000, transform=IdentityTransform(), name=column)
    )


_glucose_schema = _nested(_GLUCOSE_FIELDS)
_quarantine_schema = _nested(_QUARANTINE_FIELDS)

GLUCOSE_ENTRIES = TableDef(
    name="raw.glucose_entries",
    schema=_glucose_schema,
    partition_spec=_month_spec(_glucose_schema, "reading_month"),
    arrow_schema=_arrow(_GLUCOSE_FIELDS),
    key="_id",
    partition_column="reading_month",
)

GLUCOSE_QUARANTINE = TableDef(
    name="raw.glucose_quarantine",
    schema=_quarantine_schema,
    partition_spec=PartitionSpec(),
    arrow_schema=_arrow(_QUARANTINE_FIELDS),
)

# Nightscout treatment fields (snake_case) plus phlo bookkeeping columns.
_TREATMENT_FIELDS: list[tuple[str, object, bool, str]] = [
    ("_id", StringType(), True, "Nightscout treatment id (Mongo ObjectId)"),
    ("event_type", StringType(), True, "eventType as uploaded (Meal Bolus, Temp Basal, ...)"),
    ("created_at", StringType(), True, "created_at as uploaded (an ISO 8601 string in any of its forms)"),
    ("insulin", DoubleType(), False, "insulin units (bolus events)"),
    ("carbs", DoubleType(), False, "carbohydrates in grams"),
    ("duration", DoubleType(), False, "minutes (temp basal, extended bolus)"),
    ("rate", DoubleType(), False, "temp basal rate U/h"),
    ("absolute", DoubleType(), False, "temp basal absolute rate U/h"),
    ("entered_by", StringType(), False, "enteredBy: the uploader or person"),
    ("notes", StringType(), False, "free text"),
    ("utc_offset", IntegerType(), False, "uploader's UTC offset in minutes"),
    ("treatment_ts", TimestamptzType(), True, "created_at as timestamptz (UTC)"),
    ("treatment_month", StringType(), True, "YYYY-MM of treatment_ts in UTC; the identity partition"),
    ("_phlo_ingested_at", TimestamptzType(), True, "when phlo stored this version of the row"),
    ("_phlo_run_id", StringType(), True, "run that stored this version of the row"),
    *_V3_FIELDS,
    # How closed-loop uploaders name one record across uploads (docs/closed-loop.md).
    ("sync_identifier", StringType(), False, "syncIdentifier: Loop's id of the record"),
    ("uuid", StringType(), False, "uuid: xDrip's id of the record"),
    ("uploader_id", StringType(), False, "id: Trio's id of the record"),
    ("pump_id", LongType(), False, "pumpId: AndroidAPS's pump event id (with pump_type and pump_serial)"),
    ("pump_type", StringType(), False, "pumpType: AndroidAPS's pump driver"),
    ("pump_serial", StringType(), False, "pumpSerial: the pump's serial number"),
    (
        "bolus_type",
        StringType(),
        False,
        "type: NORMAL | SMB | PRIMING (AndroidAPS), normal | square | dual (Loop)",
    ),
    ("is_smb", BooleanType(), False, "isSMB: a super micro bolus the loop gave (AndroidAPS, OpenAPS)"),
    ("automatic", BooleanType(), False, "automatic: a dose the loop gave (Loop)"),
    # What a temp basal delivers besides `absolute`/`rate` (docs/closed-loop.md, basal).
    ("percent", DoubleType(), False, "percent: a temp basal as the schedule's rate changed by this many %"),
    ("amount", DoubleType(), False, "amount: the insulin a temp basal delivered, units (Loop)"),
]

_treatments_schema = _nested(_TREATMENT_FIELDS)

TREATMENTS = TableDef(
    name="raw.treatments",
    schema=_treatments_schema,
    partition_spec=_month_spec(_treatments_schema, "treatment_month"),
    arrow_schema=_arrow(_TREATMENT_FIELDS),
    key="_id",
    partition_column="treatment_month",
)

TREATMENTS_QUARANTINE = TableDef(
    name="raw.treatments_quarantine",
    schema=_quarantine_schema,
    partition_spec=PartitionSpec(),
    arrow_schema=_arrow(_QUARANTINE_FIELDS),
)

# Every data row of an imported Dexcom Clarity or LibreView CSV as the file gave it (engine/imports):
# readings, scans, strips, doses and events. Readings and doses also go to the tables above, in
# mg/dL and Nightscout's shape; this keeps the original value and unit, and the scans.
_IMPORT_RECORD_FIELDS: list[tuple[str, object, bool, str]] = [
    ("_id", StringType(), True, "deterministic id: format, device serial, local time, record type"),
    ("import_format", StringType(), True, "clarity | libreview"),
    (
        "record_type",
        StringType(),
        True,
        "as the file names it: Clarity's Event Type, LibreView's Record Type",
    ),
    (
        "record_kind",
        StringType(),
        True,
        "reading | scan | strip | calibration | insulin | carbs | ketone | event",
    ),
    (
        "event_subtype",
        StringType(),
        False,
        "Clarity's Event Subtype (Fast-Acting, ...); LibreView's insulin kind",
    ),
    ("device", StringType(), False, "the device the file names"),
    ("device_serial", StringType(), False, "transmitter id (Clarity) or serial number (LibreView)"),
    ("local_time", StringType(), True, "the record's local date-time as written in the file"),
    ("timezone", StringType(), True, "the IANA zone the local time was read in"),
    ("value_text", StringType(), False, "the record's value as written in the file (Low, 5.6, 12)"),
    ("value_unit", StringType(), False, "mg/dL | mmol/L | U | g"),
    (
        "glucose_mg_dl",
        IntegerType(),
        False,
        "glucose as integer mg/dL: round(mmol/L x 18.016); Low 39, High 401",
    ),
    ("value_flag", StringType(), False, "Low or High: outside the sensor's range"),
    ("insulin", DoubleType(), False, "insulin units"),
    ("carbs", DoubleType(), False, "carbohydrates in grams"),
    ("notes", StringType(), False, "free text of the record"),
    ("record_ts", TimestamptzType(), True, "the local time as an instant (UTC)"),
    ("record_month", StringType(), True, "YYYY-MM of record_ts in UTC; the identity partition"),
    ("_phlo_ingested_at", TimestamptzType(), True, "when phlo stored this version of the row"),
    ("_phlo_run_id", StringType(), True, "run that stored this version of the row"),
]

_import_records_schema = _nested(_IMPORT_RECORD_FIELDS)

IMPORT_RECORDS = TableDef(
    name="raw.import_records",
    schema=_import_records_schema,
    partition_spec=_month_spec(_import_records_schema, "record_month"),
    arrow_schema=_arrow(_IMPORT_RECORD_FIELDS),
    key="_id",
    partition_column="record_month",
)

# Nightscout profile documents (/api/v1/profile.json), one row per document: the basal schedule
# a total daily dose needs (docs/closed-loop.md, "Total daily insulin from basal").
_PROFILE_FIELDS: list[tuple[str, object, bool, str]] = [
    ("_id", StringType(), True, "Nightscout profile document id"),
    ("start_date", StringType(), True, "startDate as uploaded: from when the document is in force"),
    ("start_ts", TimestamptzType(), True, "startDate as timestamptz (UTC)"),
    ("default_profile", StringType(), False, "defaultProfile: the name of the store entry in use"),
    ("store_json", StringType(), True, "store: every named profile (basal, timezone, ...) as JSON text"),
    ("units", StringType(), False, "units: mg/dl or mmol"),
    ("start_month", StringType(), True, "YYYY-MM of start_ts in UTC; the identity partition"),
    ("_phlo_ingested_at", TimestamptzType(), True, "when phlo stored this version of the row"),
    ("_phlo_run_id", StringType(), True, "run that stored this version of the row"),
    *_V3_FIELDS,
]

_profiles_schema = _nested(_PROFILE_FIELDS)

PROFILES = TableDef(
    name="raw.profiles",
    schema=_profiles_schema,
    partition_spec=_month_spec(_profiles_schema, "start_month"),
    arrow_schema=_arrow(_PROFILE_FIELDS),
    key="_id",
    partition_column="start_month",
)

RAW_TABLES: tuple[TableDef, ...] = (
    GLUCOSE_ENTRIES,
    GLUCOSE_QUARANTINE,
    TREATMENTS,
    TREATMENTS_QUARANTINE,
    IMPORT_RECORDS,
    PROFILES,
)
