"""Page 5: failed checks of the recent runs, filtered by severity, their sample rows, and quarantined raw rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Label
from textual.worker import get_current_worker

from engine.api.pages import QualitySnapshot, load_quality
from engine.api.pages.pipeline import QUARANTINE_ROWS
from engine.runs.records import CheckRecord
from phlo_tui.screens.base import PhloScreen, cursor_key, restore_cursor
from phlo_tui.screens.text_modal import TextModal

SEVERITIES = ("all", "error", "warning")
MAX_SAMPLES = 20


class QualityLoaded(Message):
    def __init__(self, snapshot: QualitySnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


def check_title(check: CheckRecord) -> str:
    return f"{check.severity} · {check.table} · {check.check}" + (
        f" on {check.column}" if check.column else ""
    )


def samples_text(check: CheckRecord) -> str:
    """The failing rows one field a line, for reading; `samples_json` is what `c` copies."""
    head = f"{check_title(check)}\n{check.failing_count} failing row(s) in run {check.run_id}"
    samples = check.samples[:MAX_SAMPLES]
    if not samples:
        return head + "\n\n(no sample rows were kept for this check)"
    shown = f"the first {len(samples)}" if check.failing_count > len(samples) else "all"
    blocks = [f"{head}; {shown} below"]
    for number, sample in enumerate(samples, start=1):
        width = max(len(str(k)) for k in sample) if sample else 0
        fields = "\n".join(f"  {k!s:<{width}}  {v}" for k, v in sample.items())
        blocks.append(f"#{number}\n{fields}")
    return "\n\n".join(blocks)


def quarantine_note(snapshot: QualitySnapshot, gate_errors: Sequence[str]) -> str:
    """Why `error` rows can stand beside "gate ok": their rows went to the quarantine, not to the lake."""
    if not snapshot.quarantining():
        return ""
    rows = len(snapshot.quarantine)
    gate = (
        f"gate held by {len(gate_errors)} error check(s) (4)"
        if gate_errors
        else f"gate ok: quarantine ≤ {snapshot.quarantine_ratio_max * 100:g} % per batch"
    )
    return f"{rows}{'+' if rows == QUARANTINE_ROWS else ''} rows quarantined (error), not loaded · {gate}"


def samples_json(check: CheckRecord) -> str:
    return "\n".join(json.dumps(s, default=str, ensure_ascii=False) for s in check.samples[:MAX_SAMPLES])


class QualityScreen(PhloScreen):
    PAGE = "quality"
    BINDINGS = [Binding("s", "cycle_severity", "Severity", id="quality.severity")]

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: QualitySnapshot | None = None
        self.severity = "all"

    def compose_page(self) -> ComposeResult:
        with Vertical(id="quality-page"):
            yield Label("", id="checks-title", classes="section")
            yield DataTable(id="checks-table", cursor_type="row", zebra_stripes=True)
            yield Label("Quarantined raw rows (dev) · enter shows the payload", classes="section")
            yield DataTable(id="quarantine-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#checks-table", DataTable).add_columns(
            "severity", "failing", "table", "check", "column", "run"
        )
        self.query_one("#quarantine-table", DataTable).add_columns("source", "entry", "check", "reason", "at")

    @work(thread=True, exclusive=True, exit_on_error=False, group="quality")
    def load(self) -> None:
        snapshot = load_quality(self.phlo.engine)
        if not get_current_worker().is_cancelled:
            self.post_message(QualityLoaded(snapshot))

    def reload(self) -> None:
        self.load()

    def on_quality_loaded(self, message: QualityLoaded) -> None:
        self.snapshot = message.snapshot
        self.render_checks()
        table = self.query_one("#quarantine-table", DataTable)
        key = cursor_key(table)
        table.clear()
        zone = ZoneInfo(self.phlo.zone)
        for i, row in enumerate(message.snapshot.quarantine):
            at = row.quarantined_at.astimezone(zone).strftime("%m-%d %H:%M") if row.quarantined_at else ""
            table.add_row(row.source, row.entry_id, row.check, row.reason, at, key=str(i))
        restore_cursor(table, key)

    def shown_checks(self) -> list[tuple[int, CheckRecord]]:
        checks = self.snapshot.checks if self.snapshot else ()
        return [(i, c) for i, c in enumerate(checks) if self.severity in ("all", c.severity)]

    def render_checks(self) -> None:
        table = self.query_one("#checks-table", DataTable)
        key = cursor_key(table)
        table.clear()
        zone = ZoneInfo(self.phlo.zone)
        started = self.snapshot.run_started if self.snapshot else {}
        shown = self.shown_checks()
        for i, c in shown:
            at = started.get(c.run_id)
            table.add_row(
                c.severity,
                str(c.failing_count),
                c.table,
                c.check,
                c.column or "",
                at.astimezone(zone).strftime("%m-%d %H:%M") if at else c.run_id,
                key=str(i),
            )
        restore_cursor(table, key)
        total = len(self.snapshot.checks) if self.snapshot else 0
        status = self.phlo.pipeline
        note = quarantine_note(self.snapshot, status.gate_errors if status else ()) if self.snapshot else ""
        self.query_one("#checks-title", Label).update(
            f"Failed checks, last 20 runs · {self.severity} (s) · {len(shown)}/{total} · enter: rows"
            + (f"\n[not b]{note}[/]" if note else "")
        )

    def action_cycle_severity(self) -> None:
        self.severity = SEVERITIES[(SEVERITIES.index(self.severity) + 1) % len(SEVERITIES)]
        self.render_checks()

    @on(DataTable.RowSelected, "#checks-table")
    def check_selected(self, event: DataTable.RowSelected) -> None:
        if self.snapshot is None or event.row_key.value is None:
            return
        check = self.snapshot.checks[int(event.row_key.value)]
        self.app.push_screen(
            TextModal(f"Failing rows: {check.check}", samples_text(check), copy_text=samples_json(check))
        )

    @on(DataTable.RowSelected, "#quarantine-table")
    def quarantined_selected(self, event: DataTable.RowSelected) -> None:
        if self.snapshot is None or event.row_key.value is None:
            return
        row = self.snapshot.quarantine[int(event.row_key.value)]
        try:
            payload = json.dumps(json.loads(row.payload), indent=2, ensure_ascii=False)
        except ValueError:
            payload = row.payload
        text = f"entry {row.entry_id}\ncheck {row.check}: {row.reason}\n\n{payload}"
        self.app.push_screen(TextModal(f"Quarantined: {row.entry_id}", text))
