"""Export files of other systems, read into the lake beside Nightscout's: Dexcom Clarity and LibreView CSVs.

`open_csv_import` opens a file (`CsvExport`) whose slices are checked lake rows (`CsvImport`);
`store_import` (engine.pipeline_import) merges them within a pipeline run. Detection of a file's format is in `engine.ingest.imports.detect`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import ConfigError
from engine.ingest.imports.common import CsvImport
from engine.ingest.imports.detect import (
    CLARITY,
    FORMATS,
    LIBREVIEW,
    NIGHTSCOUT,
    detect_format,
    read_bytes,
)
from engine.ingest.imports.reading import SLICE_RECORDS

if TYPE_CHECKING:
    from engine.ingest.imports.csv_export import CsvExport

__all__ = [
    "CLARITY",
    "FORMATS",
    "LIBREVIEW",
    "NIGHTSCOUT",
    "CsvExport",
    "CsvImport",
    "file_format",
    "open_csv_import",
]


def file_format(path: Path, named: str | None = None) -> str:
    """The format named (`--format`), else the one the file's content shows. Raises SourceError."""
    if named is not None:
        if named not in FORMATS:
            raise ConfigError(f"unknown import format {named!r}", f"use one of {', '.join(FORMATS)}")
        return named
    return detect_format(path, read_bytes(path))


def open_csv_import(
    path: Path,
    fmt: str,
    *,
    timezone: str,
    date_order: str | None,
    now: datetime,
    slice_records: int = SLICE_RECORDS,
) -> CsvExport:
    """A Clarity or LibreView export opened to be read in local zone `timezone`, a slice at a time
    (`CsvExport.slices`), after a first pass over its timestamps.

    Raises SourceError for an unreadable file or one without the format's header, ConfigError for an
    unknown zone or date order, SourceError when LibreView dates can be read both ways without
    `date_order`. A slice holds whole local days, about `slice_records` records."""
    from engine.ingest.imports import libreview
    from engine.ingest.imports.csv_export import open_export

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(f"unknown time zone {timezone!r}", "use an IANA name such as Europe/Berlin") from e
    if date_order is not None and date_order not in libreview.DATE_ORDERS:
        raise ConfigError(f"unknown date order {date_order!r}", libreview.DATE_ORDER_HINT)
    return open_export(
        path, fmt, timezone=timezone, date_order=date_order, now=now, slice_records=slice_records
    )


def read_csv_import(
    path: Path,
    fmt: str,
    *,
    timezone: str,
    date_order: str | None,
    now: datetime,
    slice_records: int = SLICE_RECORDS,
) -> CsvImport:
    """A whole Clarity or LibreView export checked and shaped for the lake, read a slice at a time;
    raises as `open_csv_import`."""
    return open_csv_import(
        path, fmt, timezone=timezone, date_order=date_order, now=now, slice_records=slice_records
    ).whole()
