"""Which export a file is (Nightscout JSON, Dexcom Clarity CSV, LibreView CSV), told by its content."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from pathlib import Path

from engine.errors import SourceError

NIGHTSCOUT = "nightscout"
CLARITY = "clarity"
LIBREVIEW = "libreview"
FORMATS = (NIGHTSCOUT, CLARITY, LIBREVIEW)
FORMAT_NAMES = {
    NIGHTSCOUT: "a Nightscout entries JSON export",
    CLARITY: "a Dexcom Clarity CSV export",
    LIBREVIEW: "a LibreView CSV export",
}
SUPPORTED = "a Nightscout entries JSON export, a Dexcom Clarity CSV or a LibreView CSV (each plain or gzip)"
FORMAT_HINT = "export it again from its portal, or name its format with --format nightscout|clarity|libreview"
# A header is found among the first lines: LibreView's is the second, after a line of metadata.
_HEADER_LINES = 3


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip (by its magic bytes, not its name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file", "check the path of the export") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a directory", "give the export file itself") from None
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror}", "check the file's permissions") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise SourceError(f"{path}: a damaged gzip file: {e}", "export or download it again") from e
    return raw


def delimiter(line: str) -> str:
    """The field separator of a header line: a comma, or a semicolon or tab where a locale uses one."""
    counts = {sep: line.count(sep) for sep in (",", ";", "\t")}
    return max(counts, key=lambda sep: counts[sep])


def header_cells(line: str) -> list[str]:
    sep = delimiter(line)
    return [cell.strip() for cell in next(csv.reader(io.StringIO(line), delimiter=sep), [])]


def is_clarity_header(cells: list[str]) -> bool:
    return "Event Type" in cells and any(cell.startswith("Timestamp") for cell in cells)


def is_libreview_header(cells: list[str]) -> bool:
    return "Device Timestamp" in cells and "Record Type" in cells


def detect_format(path: Path, raw: bytes) -> str:
    """`nightscout`, `clarity` or `libreview`; raises SourceError naming the supported formats and
    quoting the header found for anything else."""
    text = raw[:65536].decode("utf-8-sig", errors="replace").lstrip()
    if text[:1] in ("[", "{"):
        return NIGHTSCOUT
    lines = [line for line in text.splitlines()[:_HEADER_LINES] if line.strip()]
    for line in lines:
        cells = header_cells(line)
        if is_clarity_header(cells):
            return CLARITY
        if is_libreview_header(cells):
            return LIBREVIEW
    if _is_json(raw):  # JSON, but not an array or object: read_export says what it expected
        return NIGHTSCOUT
    raise SourceError(
        f"{path}: not a JSON file, nor a CSV this version reads: expected {SUPPORTED}; "
        f"its header is {_quoted_header(lines)}",
        FORMAT_HINT,
    )


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False
    return True


def _quoted_header(lines: list[str]) -> str:
    """The line that looks like the header, quoted and cut short. A line of metadata before a wider
    line (LibreView's first, which names the patient) is never quoted."""
    if not lines:
        return "empty"
    header = lines[0]
    if len(lines) > 1 and len(header_cells(lines[1])) > len(header_cells(lines[0])):
        header = lines[1]
    shown = header if len(header) <= 160 else header[:159] + "…"
    return repr(shown)
