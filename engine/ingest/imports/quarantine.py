"""What an import sets aside: each quarantined line with its reason and its original text (names redacted),
and the checks that say how many and why."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from engine.ingest.tables import IMPORT_RECORDS
from engine.ingest.validation import CheckResult
from engine.runs.records import Severity

if TYPE_CHECKING:
    from engine.ingest.imports.common import ParsedRows


MAX_SAMPLES = 20


def _shown(value: object) -> str:
    return "missing" if value is None or (isinstance(value, float) and np.isnan(value)) else repr(value)


_REASON_COLUMN = {"local_ts": "local_time", "instant_ms": "local_time", "glucose": "glucose_text"}


def _quarantine_row(
    parsed: ParsedRows,
    position: int,
    failed: list[tuple[str, str | None]],
    explained: dict[str, str],
    frame: pd.DataFrame,
    entry_id: str,
) -> dict[str, Any]:
    row = parsed.rows.loc[position]
    reasons = []
    for check, column in failed:
        source = _REASON_COLUMN.get(column or "", column or "")
        shown = _shown(row[source]) if source in row.index else "the record"
        reasons.append(f'{check}: {source}={shown} fails "{explained.get(check, check)}"')
    check, column = failed[0]
    return {
        "entry_id": entry_id,
        "check": f"{parsed.fmt}_{check}",
        "column": _REASON_COLUMN.get(column or "", column),
        "reason": f"line {position + 1}: " + "; ".join(reasons),
        "payload": _redacted(parsed, position),
    }


def _redacted(parsed: ParsedRows, position: int) -> str:
    """The original record, with the cells that may name the patient emptied."""
    text = parsed.table.original(position)
    if not parsed.redact:
        return text
    cells = next(csv.reader(io.StringIO(text), delimiter=parsed.table.delimiter), [])
    for index in parsed.redact:
        if index < len(cells) and cells[index]:
            cells[index] = ""
    out = io.StringIO()
    csv.writer(out, delimiter=parsed.table.delimiter, lineterminator="").writerow(cells)
    return out.getvalue()


def _quarantine_checks(quarantine: list[dict[str, Any]]) -> Iterator[CheckResult]:
    by_check: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for row in quarantine:
        by_check.setdefault((row["check"], row["column"]), []).append(row)
    for (check, column), rows in sorted(by_check.items(), key=lambda item: item[0][0]):
        yield CheckResult(
            check=check,
            table=IMPORT_RECORDS.name,
            column=column,
            severity=Severity.ERROR,
            failing_count=len(rows),
            samples=tuple({"reason": r["reason"], "line": r["payload"]} for r in rows[:MAX_SAMPLES]),
        )


def merged_checks(results: list[CheckResult]) -> list[CheckResult]:
    """The checks of every slice of a file as the file's: counts added, the first samples kept;
    errors by check name, then warnings."""
    merged: dict[tuple[str, str | None, Severity], CheckResult] = {}
    for result in results:
        key = (result.check, result.column, result.severity)
        if key in merged:
            known = merged[key]
            result = replace(
                known,
                failing_count=known.failing_count + result.failing_count,
                samples=(known.samples + result.samples)[:MAX_SAMPLES],
            )
        merged[key] = result
    return sorted(merged.values(), key=lambda r: (r.severity != Severity.ERROR, r.check))


def _moved_check(
    rows: pd.DataFrame, moved: np.ndarray, millis: np.ndarray, zone: str
) -> Iterator[CheckResult]:
    """A warning naming the local times the spring change skipped, and where they moved."""
    if not moved.any():
        return
    tz = ZoneInfo(zone)
    samples = tuple(
        {
            "local_time": str(local),
            "read_as": datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).isoformat(),
        }
        for local, ms in zip(
            rows["local_time"].to_numpy()[moved][:MAX_SAMPLES], millis[moved][:MAX_SAMPLES], strict=True
        )
    )
    yield CheckResult(
        check="local_time_exists",
        table=IMPORT_RECORDS.name,
        column="local_time",
        severity=Severity.WARNING,
        failing_count=int(moved.sum()),
        samples=samples,
    )
