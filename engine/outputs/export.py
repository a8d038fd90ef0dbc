"""Tables out of the lake: Parquet or CSV of any table, and glucose entries as a Nightscout site takes them back."""

from __future__ import annotations

import gzip
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.api.reads import BRANCHES
from engine.errors import PhloError
from schemas.raw import SOURCE_KEYS

if TYPE_CHECKING:
    import duckdb

    from engine.api.facade import Engine

FORMATS = ("parquet", "csv")
ENTRIES_TABLE = "raw.glucose_entries"
NIGHTSCOUT_FIELDS = {column: keys[0] for column, keys in SOURCE_KEYS.items()}
"""Lake column -> the field of Nightscout's entries API it came from (the import's first raw key)."""
_TIME_COLUMNS = ("reading_date", "reading_ts", "treatment_ts", "treatment_date")
"""Columns that place a row on a local day, in order of preference, for --since/--until."""


class ExportError(PhloError):
    """A table could not be exported: an unknown table or format, bad dates, an unwritable file."""


def export_table(
    engine: Engine,
    table: str,
    fmt: str,
    out: Path,
    *,
    since: str | None = None,
    until: str | None = None,
    branch: str = "main",
) -> int:
    """Write lake table `table` as of `branch` (main: the last promotion, as `sql` reads it) to `out` as
    Parquet or CSV, only the rows of local days `since`..`until` when given; returns the rows written.
    `out` is written whole or not at all. Raises ExportError."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER"
    with _view(engine, table, branch) as (con, columns):
        where, params = _day_filter(table, columns, since, until)
        with _written(out) as partial:
            literal = "'" + str(partial).replace("'", "''") + "'"
            con.execute(f"COPY (SELECT * FROM export_source{where}) TO {literal} ({options})", params)
            rows = con.sql(f"SELECT count(*) FROM export_source{where}", params=params).fetchall()[0][0]
    return int(rows)


def export_nightscout_entries(
    engine: Engine, out: Path, *, since: str | None = None, until: str | None = None, branch: str = "main"
) -> int:
    """Write the stored glucose entries (raw.glucose_entries, oldest first) to `out` as a JSON array of
    Nightscout entries: the API's field names, empty fields left out, `_id` kept (a 24-hex ObjectId,
    which a site keeps on upload). POST it to a site's /api/v1/entries, or `phlo-tui import` it.
    Returns the entries written. Raises ExportError."""
    with _view(engine, ENTRIES_TABLE, branch) as (con, columns):
        where, params = _day_filter(ENTRIES_TABLE, columns, since, until)
        fields = [(c, NIGHTSCOUT_FIELDS[c]) for c in columns if c in NIGHTSCOUT_FIELDS]
        select = ", ".join(f'"{c}"' for c, _ in fields)
        con.execute(f"SELECT {select} FROM export_source{where} ORDER BY date, _id", params)
        count = 0
        with _written(out) as partial, partial.open("w", encoding="utf-8") as fh:
            fh.write("[")
            while batch := con.fetchmany(10_000):
                for row in batch:
                    entry = {
                        name: value for (_, name), value in zip(fields, row, strict=True) if value is not None
                    }
                    fh.write(("," if count else "") + "\n" + json.dumps(entry, default=_json_value))
                    count += 1
            fh.write("\n]\n")
    return count


def _json_value(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@contextmanager
def _view(engine: Engine, table: str, branch: str) -> Iterator[tuple[duckdb.DuckDBPyConnection, list[str]]]:
    """A DuckDB connection with view `export_source` over `table` as `sql` reads it, and its columns."""
    from engine.api.lake_query import zone_literal
    from engine.lake.views import connect

    if branch not in BRANCHES:
        raise ExportError(f"unknown branch {branch!r}", f"use one of {', '.join(BRANCHES)}")
    if table not in engine.lake_tables() or not engine.lake.table_exists(table):
        raise ExportError(
            f"there is no lake table {table}",
            "`phlo-tui tables` lists them (e.g. gold.fct_daily_glucose_metrics)",
        )
    snapshot = engine.main_snapshots().get(table) if branch == "main" else None
    con = connect(zone_literal(engine.settings.timezone))
    try:
        engine.lake.register_duckdb(con, table, branch, as_name="export_source", snapshot_id=snapshot)
        columns = [str(c) for c in con.sql("SELECT * FROM export_source LIMIT 0").columns]
        yield con, columns
    finally:
        con.close()


def _day_filter(
    table: str, columns: list[str], since: str | None, until: str | None
) -> tuple[str, dict[str, date]]:
    if since is None and until is None:
        return "", {}
    column = next((c for c in _TIME_COLUMNS if c in columns), None)
    if column is None:
        raise ExportError(
            f"{table} has no column that places its rows on a day", "export it without --since/--until"
        )
    bounds = {"since": _day(since, "--since"), "until": _day(until, "--until")}
    params = {k: v for k, v in bounds.items() if v is not None}
    if "since" in params and "until" in params and params["since"] > params["until"]:
        raise ExportError(f"--since {since} is after --until {until}", "swap the dates")
    # Timestamps become the local date in the session's zone (lake_views.connect sets it).
    parts = [
        f'CAST("{column}" AS DATE) {op} ${name}'
        for name, op in (("since", ">="), ("until", "<="))
        if name in params
    ]
    return " WHERE " + " AND ".join(parts), params


def _day(text: str | None, flag: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ExportError(f"{flag} {text!r} is not a date", "use YYYY-MM-DD") from None


@contextmanager
def _written(out: Path) -> Iterator[Path]:
    """A temporary path beside `out`, renamed to `out` when the block ends without an error."""
    out = out.absolute()
    if out.is_dir() or not out.parent.is_dir():
        raise ExportError(
            f"cannot write {out}: " + ("it is a folder" if out.is_dir() else f"{out.parent} does not exist"),
            "give a file name in an existing folder",
        )
    partial = out.with_name(f".{out.name}.partial-{secrets.token_hex(3)}")
    try:
        yield partial
        os.replace(partial, out)
    except OSError as e:
        raise ExportError(
            f"cannot write {out}: {e.strerror or e}", "check free disk space and permissions"
        ) from e
    except Exception as e:
        import duckdb

        if isinstance(e, duckdb.Error):
            raise ExportError(f"cannot write {out}: {e}", "check free disk space and permissions") from e
        raise
    finally:
        partial.unlink(missing_ok=True)


@dataclass(frozen=True)
class ReaderTable:
    """A lake table as an outside reader (DuckDB's iceberg_scan, Spark, Trino) finds it: the metadata file
    whose main branch is the snapshot main's readers see (the last promotion's), and its rows."""

    table: str
    snapshot_id: int | None
    rows: int | None
    metadata_file: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "snapshot_id": self.snapshot_id,
            "rows": self.rows,
            "metadata_file": self.metadata_file,
        }


def reader_tables(engine: Engine) -> list[ReaderTable]:
    """Each existing lake table with main's promoted snapshot, its row count (from the snapshot's summary)
    and the newest metadata.json whose main is that snapshot: the current one, or during a promotion
    (main moved, not yet recorded) the one before it. `metadata_file` is None when no kept metadata
    file has it (older than the 100 kept). Raises LakeError."""
    promoted = engine.main_snapshots()
    found = []
    for name in engine.lake_tables():
        if not engine.lake.table_exists(name):
            continue
        current = engine.lake.metadata_location(name)
        snapshot = promoted.get(name) or engine.lake.snapshot_id(name, "main")
        metadata_file, rows = None, None
        for candidate in _metadata_chain(current):
            document = _read_metadata(candidate)
            if document is None:
                break
            if document.get("current-snapshot-id") == snapshot:
                metadata_file = candidate
                summary: dict[str, str] = next(
                    (
                        s.get("summary", {})
                        for s in document.get("snapshots", [])
                        if s["snapshot-id"] == snapshot
                    ),
                    {},
                )
                rows = int(summary["total-records"]) if "total-records" in summary else None
                break
        found.append(ReaderTable(name, snapshot, rows, metadata_file))
    return found


def _metadata_chain(current: str) -> Iterator[str]:
    """The current metadata file, then those of its metadata log, newest first."""
    yield current
    document = _read_metadata(current)
    if document is None:
        return
    for entry in reversed(document.get("metadata-log", [])):
        yield _local(str(entry["metadata-file"]))


def _read_metadata(location: str) -> dict[str, Any] | None:
    try:
        raw = Path(location).read_bytes()
    except OSError:
        return None
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    document: dict[str, Any] = json.loads(raw)
    return document


def _local(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri
