"""A stand-in for the model runner in tests: raw rows from local times, then every sql/ layer in DuckDB."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
import pandera.pandas as pa_model
import pyarrow as pa
import pyarrow.compute as pc
from pandera.errors import SchemaErrors

from engine.ingest.tables import GLUCOSE_ENTRIES, PROFILES, TREATMENTS
from engine.sql_macros import define_macros

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
LAYERS = ("bronze", "silver", "gold", "marts")
INGESTED_AT = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    """One Nightscout entry as the tests describe it: local wall-clock time, sgv, device."""

    local_time: datetime
    sgv: int
    device: str = "dexcom"
    type: str = "sgv"
    direction: str | None = "Flat"
    entry_id: str | None = None
    seconds_offset: float = 0.0


def object_id(*parts: object) -> str:
    """A stable 24-hex id shaped like a Mongo ObjectId."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:24]


def raw_entries(
    entries: Iterable[Entry | tuple[datetime, int] | tuple[datetime, int, str]], zone: str
) -> pa.Table:
    """Rows of raw.glucose_entries for entries at wall-clock times in `zone` (aware times are kept as given)."""
    tz = ZoneInfo(zone)
    rows: list[dict[str, object]] = []
    for item in entries:
        entry = item if isinstance(item, Entry) else Entry(*item)
        local = entry.local_time.replace(tzinfo=tz) if entry.local_time.tzinfo is None else entry.local_time
        instant = local.astimezone(UTC)
        date_ms = round(instant.timestamp() * 1000 + entry.seconds_offset * 1000)
        reading_ts = datetime.fromtimestamp(date_ms / 1000, UTC)
        is_sgv = entry.type == "sgv"
        rows.append(
            {
                "_id": entry.entry_id or object_id(date_ms, entry.sgv, entry.device, entry.type),
                "type": entry.type,
                "date": date_ms,
                "date_string": reading_ts.isoformat(),
                "sys_time": reading_ts.isoformat(),
                "utc_offset": int((local.utcoffset() or timedelta(0)).total_seconds() // 60),
                "sgv": entry.sgv if is_sgv else None,
                "mbg": entry.sgv if entry.type == "mbg" else None,
                "direction": entry.direction if is_sgv else None,
                "trend": 4 if is_sgv else None,
                "noise": 1 if is_sgv else None,
                "device": entry.device,
                "reading_ts": reading_ts,
                "reading_month": reading_ts.strftime("%Y-%m"),
                "_phlo_ingested_at": INGESTED_AT,
                "_phlo_run_id": "test-run",
            }
        )
    return pa.Table.from_pylist(rows, schema=GLUCOSE_ENTRIES.arrow_schema)


def every_5_minutes(start: datetime, values: Iterable[int], zone: str, device: str = "dexcom") -> list[Entry]:
    """Entries 5 real minutes apart from local `start`, stepping in UTC so daylight-saving changes are real."""
    first = start.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    return [Entry(first + timedelta(minutes=5 * i), sgv, device) for i, sgv in enumerate(values)]


def connect(zone: str, session_zone: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up as the runner does; `session_zone` lets a test make the session differ."""
    con = duckdb.connect()
    con.execute(f"set TimeZone = '{session_zone or zone}'")
    con.execute("set variable phlo_timezone = $1", [zone])
    for layer in ("raw", *LAYERS):
        con.execute(f"create schema {layer}")
    define_macros(con)
    return con


def register(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """Make an Arrow table readable under its qualified name, as the runner registers upstream tables."""
    con.register(f"arrow_{name.replace('.', '_')}", table)
    con.execute(f"create or replace view {name} as select * from arrow_{name.replace('.', '_')}")


def model_paths() -> list[Path]:
    """Model files in layer order; no model reads a table of its own layer, so that order suffices."""
    return [path for layer in LAYERS for path in sorted((SQL_DIR / layer).glob("*.sql"))]


def model_name(path: Path) -> str:
    return f"{path.parent.name}.{path.stem}"


def build(
    raw: pa.Table, zone: str, session_zone: str | None = None, treatments: pa.Table | None = None
) -> duckdb.DuckDBPyConnection:
    """Every model built as a table over `raw` (and `treatments`, default none), in a fresh connection."""
    con = connect(zone, session_zone)
    register(con, GLUCOSE_ENTRIES.name, raw)
    register(
        con, TREATMENTS.name, treatments if treatments is not None else TREATMENTS.arrow_schema.empty_table()
    )
    register(con, PROFILES.name, PROFILES.arrow_schema.empty_table())
    for path in model_paths():
        con.execute(f"create table {model_name(path)} as {path.read_text()}")
    return con


def neighbour_months(month: str) -> list[str]:
    year, mon = (int(x) for x in month.split("-"))
    index = year * 12 + mon - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in (index - 1, index, index + 1)]


def build_month(path: Path, month: str, upstream: Mapping[str, pa.Table], zone: str) -> pa.Table:
    """One incremental model's rows for `month`, computed from its inputs cut to that month ±1 month."""
    con = connect(zone)
    context = pa.array(neighbour_months(month))
    for name, rows in upstream.items():
        register(con, name, rows.filter(pc.is_in(rows["reading_month"], value_set=context)))
    query = f"select * from ({path.read_text()}\n) as model where reading_month = $month"
    return con.sql(query, params={"month": month}).to_arrow_table()


def table(con: duckdb.DuckDBPyConnection, name: str, order_by: str) -> list[dict[str, object]]:
    """A built table's rows as dicts, ordered."""
    cursor = con.execute(f"select * from {name} order by {order_by}")
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def failed_checks(
    model: type[pa_model.DataFrameModel], frame: pd.DataFrame
) -> set[tuple[str, str | None, str]]:
    """(check, column or None, severity) of every failed check, severities read as schemas/ declares them.

    A column's checks carry `metadata={"severity": ...}` on the field; a dataframe-level check finds
    its severity by name in `Config.metadata["severity"]`; pandera's own structural checks (a
    missing or unexpected column) are errors.
    """
    try:
        model.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return set()
    columns = model.to_schema().columns
    named: dict[str, str] = model.Config.metadata["severity"]
    found: set[tuple[str, str | None, str]] = set()
    for context, column, check in zip(cases["schema_context"], cases["column"], cases["check"], strict=True):
        if context == "Column":
            found.add((str(check), str(column), columns[column].metadata["severity"]))
        else:
            found.add((str(check), None, named.get(str(check), "error")))
    return found
