"""Quality gates over the layers: each table's pandera schema plus continuity, freshness,
reconciliation and quarantine-ratio checks, every result with a severity."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
from pandera.errors import SchemaErrors

from engine import fastcheck
from engine.ingest.validation import MAX_SAMPLES, CheckResult
from engine.runs.records import Severity

CONTINUITY_GAP_MINUTES = 30
FRESH_WARNING = timedelta(hours=1)
FRESH_ERROR = timedelta(hours=24)
QUARANTINE_RATIO_MAX = 0.05


@dataclass(frozen=True)
class GateReport:
    """All check results of one run; it blocks promotion when any result is an error."""

    results: tuple[CheckResult, ...]

    @property
    def errors(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.severity is Severity.ERROR)

    @property
    def passed(self) -> bool:
        return not self.errors


def _json_rows(frame: pd.DataFrame) -> tuple[dict[str, object], ...]:
    return tuple(json.loads(frame.head(MAX_SAMPLES).to_json(orient="records", date_format="iso")))


def schema_checks(model: type[pa.DataFrameModel], table: str, rows: pa_arrow.Table) -> list[CheckResult]:
    """Validate `rows` of `table` with its pandera model (lazily: every failure, not the first).

    Column checks take the severity in the field's metadata, dataframe checks the one named in
    `Config.metadata["severity"]`; pandera's structural failures (a missing column) are errors.
    """
    frame = rows.to_pandas()
    named: dict[str, str] = getattr(model.Config, "metadata", {}).get("severity", {})
    quick = fastcheck.evaluate(model.to_schema(), frame)
    if quick is True:  # a clean table: pandera would find nothing
        return []
    if isinstance(quick, fastcheck.FrameCheckFailure):  # what pandera would report, without it
        level = Severity(named.get(quick.name, "error"))
        samples = _json_rows(frame.iloc[quick.rows])
        return [CheckResult(quick.name, table, None, level, len(quick.rows), samples)]
    try:
        model.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return []
    columns = model.to_schema().columns
    grouped: dict[tuple[str, str | None], list[Any]] = {}
    for context, column, check, index in zip(
        cases["schema_context"], cases["column"], cases["check"], cases["index"], strict=True
    ):
        key = (str(check), str(column) if context == "Column" and column is not None else None)
        grouped.setdefault(key, []).append(index)
    results = []
    for (check, column), indexes in grouped.items():
        if column is not None and column in columns:
            severity = (columns[column].metadata or {}).get("severity", "error")
        else:
            severity = named.get(check, "error")
        positions = sorted({int(i) for i in indexes if i is not None and not pd.isna(i)})
        samples = _json_rows(frame.iloc[positions]) if positions else ()
        results.append(
            CheckResult(
                check=check,
                table=table,
                column=column,
                severity=Severity(severity),
                failing_count=len(positions) or len(indexes),
                samples=samples,
            )
        )
    return results


def continuity_check(readings: pa_arrow.Table, table: str) -> CheckResult | None:
    """Warn about gaps of more than 30 minutes between consecutive readings (sensor off or not uploading)."""
    if readings.num_rows == 0 or "minutes_since_last_reading" not in readings.column_names:
        return None
    frame = readings.select(["reading_ts", "minutes_since_last_reading"]).to_pandas()
    gaps = frame[frame["minutes_since_last_reading"] > CONTINUITY_GAP_MINUTES]
    if gaps.empty:
        return None
    return CheckResult(
        check="continuity_gap_over_30_min",
        table=table,
        column="minutes_since_last_reading",
        severity=Severity.WARNING,
        failing_count=len(gaps),
        samples=_json_rows(gaps.sort_values("minutes_since_last_reading", ascending=False)),
    )


def freshness_check(newest: datetime | None, now: datetime, table: str) -> CheckResult | None:
    """The newest reading should be under an hour old (warning) and must be under a day old (error)."""
    if newest is None:
        return CheckResult("freshness", table, "reading_ts", Severity.ERROR, 1, ({"newest": None},))
    age = now - newest
    if age <= FRESH_WARNING:
        return None
    severity = Severity.ERROR if age > FRESH_ERROR else Severity.WARNING
    sample = {"newest_reading": newest.isoformat(), "age_minutes": round(age.total_seconds() / 60, 1)}
    return CheckResult("freshness", table, "reading_ts", severity, 1, (sample,))


def reconciliation_check(silver: pa_arrow.Table, gold: pa_arrow.Table, table: str) -> CheckResult | None:
    """Gold's reading_count per day equals silver's count of readings that day, for the days rebuilt."""
    if gold.num_rows == 0 and silver.num_rows == 0:
        return None
    silver_days = silver.select(["reading_date"]).to_pandas().groupby("reading_date").size()
    gold_days = (
        gold.select(["reading_date", "reading_count"]).to_pandas().set_index("reading_date")["reading_count"]
    )
    both = pd.concat([silver_days.rename("silver"), gold_days.rename("gold")], axis=1).fillna(0)
    bad = both[both["silver"] != both["gold"]]
    if bad.empty:
        return None
    rows = bad.reset_index().rename(columns={"index": "reading_date"})
    return CheckResult(
        "reconciliation_daily_counts", table, "reading_count", Severity.ERROR, len(bad), _json_rows(rows)
    )


def quarantine_ratio_check(received: int, quarantined: int, table: str) -> CheckResult | None:
    """More than 5 % of a batch quarantined means the source changed shape: stop and look."""
    if received == 0 or quarantined / received <= QUARANTINE_RATIO_MAX:
        return None
    sample = {"received": received, "quarantined": quarantined, "ratio": round(quarantined / received, 4)}
    return CheckResult("quarantine_ratio", table, None, Severity.ERROR, quarantined, (sample,))


def report(results: Sequence[CheckResult | None]) -> GateReport:
    return GateReport(tuple(r for r in results if r is not None))
