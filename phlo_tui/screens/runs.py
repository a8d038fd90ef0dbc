"""Page 3: the runs, newest first; the highlighted run's steps, its retry or error, and its log lines."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Label, Log
from textual.worker import get_current_worker

from engine.api.pages import PipelineStatus, RunsSnapshot, load_runs
from engine.clock import wall_clock
from engine.runs.records import RunRecord, RunStatus
from phlo_tui.screens.base import PhloScreen, cursor_key, restore_cursor
from phlo_tui.widgets.glucose import duration_text
from phlo_tui.widgets.pipeline_bar import STATUS_ICONS

# 2026-11-25 21:43:04,262 INFO run=<id> engine.publish.pgcluster: message -> 21:43:04 INFO engine.publish.pgcluster: message
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d),\d+ (\w+) run=\S+ (.*)$")


def short_log_line(line: str) -> str:
    match = LOG_LINE.match(line)
    return " ".join(match.groups()) if match else line


class RunsLoaded(Message):
    def __init__(self, snapshot: RunsSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


def run_seconds(run: RunRecord, now: datetime) -> float:
    return ((run.finished_at or now) - run.started_at).total_seconds()


class RunsScreen(PhloScreen):
    PAGE = "runs"
    BINDINGS = [
        Binding("s", "focus_steps", "Steps", id="runs.steps"),
        Binding("escape", "focus_runs", "Runs", id="runs.back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: RunsSnapshot | None = None
        self.selected: str | None = None

    def compose_page(self) -> ComposeResult:
        with Vertical(id="runs-page"):
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            yield Label("", id="run-detail")
            yield DataTable(id="steps-table", cursor_type="row")
            yield Log(id="run-log", max_lines=200)

    def on_mount(self) -> None:
        self.query_one("#runs-table", DataTable).add_columns(
            "status", "trigger", "started", "took", "fetched", "stored", "quar.", "id"
        )
        self.query_one("#steps-table", DataTable).add_columns("#", "step", "status", "took", "rows", "error")

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def load(self, selected: str | None) -> None:
        snapshot = load_runs(self.phlo.engine, selected)
        if not get_current_worker().is_cancelled:
            self.post_message(RunsLoaded(snapshot))

    def reload(self) -> None:
        # Someone watching the newest run keeps watching the newest when a new run starts.
        runs = self.snapshot.runs if self.snapshot else ()
        following = not runs or self.selected == runs[0].id
        self.load(None if following else self.selected)

    def status_polled(self, previous: PipelineStatus | None, status: PipelineStatus) -> None:
        self.show_status()
        if self.phlo.ready and (previous is None or previous.runs_version != status.runs_version):
            self.reload()

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self.snapshot = message.snapshot
        self.selected = message.snapshot.selected
        table = self.query_one("#runs-table", DataTable)
        now = wall_clock()  # process time: the run store stamps runs with it (engine.clock)
        zone = ZoneInfo(self.phlo.zone)
        with self.app.batch_update():
            table.clear()
            for run in message.snapshot.runs:
                s = run.totals
                table.add_row(
                    f"{STATUS_ICONS[run.status]} {run.status.value}",
                    run.trigger.value,
                    run.started_at.astimezone(zone).strftime("%m-%d %H:%M"),
                    duration_text(run_seconds(run, now)),
                    "" if s.fetched is None else s.fetched,
                    "" if s.stored is None else s.stored,
                    "" if s.quarantined is None else s.quarantined,
                    run.id,
                    key=run.id,
                )
            restore_cursor(table, self.selected)
        self.show_run()

    @on(DataTable.RowHighlighted, "#runs-table")
    def run_highlighted(self, event: DataTable.RowHighlighted | DataTable.RowSelected) -> None:
        if event.cursor_row != event.data_table.cursor_row:
            return  # posted while the table was rebuilt: the cursor has moved on since
        key = event.row_key.value
        if key is not None and key != self.selected:
            self.selected = key
            self.show_run()
            self.load(key)

    @on(DataTable.RowSelected, "#runs-table")
    def run_selected(self, event: DataTable.RowSelected) -> None:
        self.run_highlighted(event)
        self.action_focus_steps()

    def selected_run(self) -> RunRecord | None:
        runs = self.snapshot.runs if self.snapshot else ()
        return next((r for r in runs if r.id == self.selected), None)

    def show_run(self) -> None:
        run = self.selected_run()
        detail = self.query_one("#run-detail", Label)
        steps = self.query_one("#steps-table", DataTable)
        log = self.query_one("#run-log", Log)
        steps_key = cursor_key(steps)
        steps.clear()
        log.clear()
        if run is None:
            detail.update("no runs yet: press r to run now")
            return
        detail.update(self.describe(run))
        now = wall_clock()
        for step in run.steps:
            seconds = step.seconds if step.finished_at else (now - step.started_at).total_seconds()
            steps.add_row(
                str(step.seq),
                step.label,
                step.status.value,
                duration_text(seconds),
                "" if step.rows is None else str(step.rows),
                step.error or "",
                key=str(step.seq),
            )
        restore_cursor(steps, steps_key)
        if self.snapshot is not None and self.snapshot.selected == run.id:
            lines = [short_log_line(line) for line in self.snapshot.log_lines]
            log.write_lines(lines or ["(no log lines for this run)"])

    def describe(self, run: RunRecord) -> str:
        s = run.totals
        parts = [f"run {run.id}", run.status.value]
        if s.gate:
            parts.append(f"gate {s.gate}")
        if s.promotion:
            parts.append(f"promotion {s.promotion}")
        if run.status is RunStatus.RETRYING and s.next_attempt_at:
            at = s.next_attempt_at.astimezone(ZoneInfo(self.phlo.zone))
            parts.append(f"next attempt {at:%H:%M:%S} (attempt {s.attempt or '?'})")
        text = " · ".join(parts)
        if run.error:
            text += f"\n{run.error}" + (f" — {run.hint}" if run.hint else "")
        return text

    def action_focus_steps(self) -> None:
        self.query_one("#steps-table", DataTable).focus()

    def action_focus_runs(self) -> None:
        self.query_one("#runs-table", DataTable).focus()
