"""Export files of other systems, read into the lake beside Nightscout's: Dexcom Clarity and LibreView CSVs.

`read_csv_import` turns a file into checked lake rows (`CsvImport`); `store_import` (engine.pipeline_import)
merges them within a pipeline run. Detection of a file's format is in `engine.ingest.imports.detect`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import ConfigError, SourceError
from engine.ingest.imports.common import CsvImport, build
from engine.ingest.imports.detect import (
    CLARITY,
    FORMATS,
    LIBREVIEW,
    NIGHTSCOUT,
    decode_text,
    detect_format,
    read_bytes,
)

__all__ = ["CLARITY", "FORMATS", "LIBREVIEW", "NIGHTSCOUT", "CsvImport", "file_format", "read_csv_import"]


def file_format(path: Path, named: str | None = None) -> str:
    """The format named (`--format`), else the one the file's content shows. Raises SourceError."""
    if named is not None:
        if named not in FORMATS:
            raise ConfigError(f"unknown import format {named!r}", f"use one of {', '.join(FORMATS)}")
        return named
    return detect_format(path, read_bytes(path))


def read_csv_import(
    path: Path, fmt: str, *, timezone: str, date_order: str | None, now: datetime
) -> CsvImport:
    """A Clarity or LibreView export read in local zone `timezone`, checked, shaped for the lake.

    Raises SourceError for an unreadable file or one without the format's header, ConfigError for an
    unknown zone or date order, SourceError when LibreView dates can be read both ways without
    `date_order`."""
    from engine.ingest.imports import clarity, libreview
    from schemas.imports import CLARITY_ROWS_SCHEMA, LIBREVIEW_ROWS_SCHEMA

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(f"unknown time zone {timezone!r}", "use an IANA name such as Europe/Berlin") from e
    if date_order is not None and date_order not in libreview.DATE_ORDERS:
        raise ConfigError(f"unknown date order {date_order!r}", libreview.DATE_ORDER_HINT)
    raw = read_bytes(path)
    text = decode_text(path, raw)
    digest = hashlib.sha256(raw).hexdigest()[:16]
    if fmt == CLARITY:
        return build(clarity.parse(path, text), CLARITY_ROWS_SCHEMA, timezone, now, digest)
    if fmt == LIBREVIEW:
        return build(libreview.parse(path, text, date_order), LIBREVIEW_ROWS_SCHEMA, timezone, now, digest)
    raise SourceError(f"{path}: {fmt} is not a CSV format", "use --format clarity or --format libreview")
