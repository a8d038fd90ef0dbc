"""How the command line prints: JSON, aligned tables, a run's one-line report, the status summary."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from engine.api.reads import HomeStatus


def _json_default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _print_json(data: object) -> None:
    print(json.dumps(data, default=_json_default, indent=None))


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _or_blank(value: object) -> object:
    return "" if value is None else value


def _report_run(run: Any, as_json: bool) -> None:
    if as_json:
        _print_json(run.to_json())
        return
    s = run.totals
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    print(
        f"run {run.id} {run.status.value} in {seconds:.1f}s: fetched {s.fetched or 0}, "
        f"stored {s.stored or 0}, unchanged {s.unchanged or 0}, quarantined {s.quarantined or 0}"
        + (f", skipped {s.skipped} of {s.lines} lines" if s.lines is not None else "")
    )
    if run.error:
        print(f"  error: {run.error}", file=sys.stderr)
        if run.hint:
            print(f"  hint: {run.hint}", file=sys.stderr)


def _fmt(value: object) -> object:
    return round(value, 1) if isinstance(value, float) else value


def _diff_row(d: Any) -> tuple[object, ...]:
    days = d.days_touched
    span = f"{days[0]}..{days[-1]} ({len(days)})" if len(days) > 1 else (days[0] if days else "")
    return (d.table, d.snapshots_ahead, d.rows_added, d.rows_removed, span, "; ".join(d.schema_changes))


def _status_summary(status: HomeStatus) -> list[tuple[str, str]]:
    """What `status` prints above its runs: the writer, the gate, main, freshness and publishing,
    each a line a person reads at a glance (times in the configured zone; `--json` has it all)."""
    zone = ZoneInfo(status.settings["timezone"])

    def at(when: datetime | None, form: str = "%Y-%m-%d %H:%M") -> str:
        return "?" if when is None else when.astimezone(zone).strftime(form)

    writer = status.writer
    if writer:
        text = f"{writer.role} pid {writer.pid} on {writer.host}"
        if writer.next_run_at:
            text += f", next run {at(writer.next_run_at, '%H:%M')}"
    else:
        cli = "phlo-tui --demo" if status.demo else "phlo-tui"
        text = f"none running (runs start with `{cli}`, `{cli} --daemon` or `{cli} run`)"
    lines = [("writer", text)]
    gate = "ok: no error check holds promotion"
    if status.gate_errors:
        gate = f"held by {len(status.gate_errors)} error check(s): " + "; ".join(status.gate_errors)
    lines.append(("gate", gate))
    promotion = status.last_promotion
    main_text = "never promoted"
    if promotion:
        main_text = f"promotion {promotion.id} at {at(promotion.created_at)} ({promotion.state.value})"
    lines.append(("main", main_text))
    lines.append(("freshness", f"{status.freshness.level}: {status.freshness.message}"))
    backup = status.backup
    if backup:
        lines.append(("backup", f"{backup['level']}: {backup['message']}"))
    target = status.publish_target
    if target.get("kind") == "none":
        lines.append(("publish", "off (no PostgreSQL configured)"))
    elif target.get("host"):
        where = f"{target['host']}:{target.get('port') or 5432}/{target.get('database') or ''}"
        kind = "private PostgreSQL" if target["kind"] != "dsn" else "PostgreSQL"
        lines.append(("publish", f"{kind} {where}"))
    if status.pending_months:
        lines.append(
            (
                "pending",
                f"{len(status.pending_months)} local month(s) to rebuild: "
                + ", ".join(status.pending_months),
            )
        )
    return lines
