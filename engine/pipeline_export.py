"""Reading a Nightscout entries export (JSON, JSON Lines, gzip, MongoDB Extended JSON) for
`phlo-tui import` (engine.pipeline.Pipeline.import_file)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.api.arguments import check_export_file
from engine.errors import SourceError
from engine.ingest.extjson import plain_record


def read_export(path: Path) -> list[object]:
    """Entries of a Nightscout export: a JSON array or JSON Lines, optionally gzip-compressed (detected
    by content); MongoDB Extended JSON values (mongoexport's `{"$oid": ...}`, `{"$date": ...}`) are read
    as the API sends them (`engine.ingest.extjson`)."""
    check_export_file(path)
    from engine.ingest.imports.detect import read_bytes

    raw = read_bytes(path)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        if e.msg != "Extra data":
            raise SourceError(f"{path}: not a JSON file: {e}", EXPORT_HINT) from e
        data = _json_lines(path, raw)
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not a JSON file: {e}", EXPORT_HINT) from e
    if isinstance(data, dict) and isinstance(data.get("entries"), list):
        data = data["entries"]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a JSON array of entries, got {type(data).__name__}", EXPORT_HINT)
    if b'"$' not in raw:  # no Extended JSON wrapper anywhere: skip looking at every entry
        return list(data)
    return [plain_record(entry) for entry in data]


EXPORT_HINT = (
    "export entries from Nightscout as JSON (/api/v1/entries.json), or with "
    "`mongoexport --collection entries` (one entry a line, or --jsonArray)"
)


def _json_lines(path: Path, raw: bytes) -> list[object]:
    """One JSON value per non-blank line, as mongoexport writes without --jsonArray."""
    values = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if line.strip():
            try:
                values.append(json.loads(line))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise SourceError(f"{path}: line {number} is not JSON: {e}", EXPORT_HINT) from e
    return values
