"""One line on every page: the run in progress (step k/n) or the last run, the next run, the gate, the writer."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from rich.text import Text
from textual.widget import Widget

from engine.api.pages import PipelineStatus
from engine.runs.records import RunRecord, RunStatus, StepStatus
from phlo_tui.widgets.glucose import ago, duration_text

STATUS_ICONS = {
    RunStatus.QUEUED: "…",
    RunStatus.RUNNING: "▶",
    RunStatus.RETRYING: "↻",
    RunStatus.SUCCEEDED: "✓",
    RunStatus.HELD: "⏸",
    RunStatus.FAILED: "✗",
}


def run_steps(run: RunRecord, planned_steps: int) -> tuple[int, int]:
    """(steps finished, steps planned) of a run in progress; the plan is an estimate."""
    windows = int(run.params.get("windows") or 1)
    planned = max(planned_steps + 3 * windows, len(run.steps))
    return sum(1 for s in run.steps if s.status is not StepStatus.RUNNING), planned


def run_progress(run: RunRecord, planned_steps: int) -> str:
    """'model silver.fct_glucose_readings 5/11' for a run in progress."""
    windows = int(run.params.get("windows") or 1)
    done, planned = run_steps(run, planned_steps)
    current = run.steps[-1] if run.steps else None
    if current is None:
        return f"starting 0/{planned}"
    name = current.name
    if current.name == "fetch" and windows > 1:
        name = f"fetch window {current.detail.get('window', '?')}/{windows}"
    return f"{name} {done + (1 if current.status is StepStatus.RUNNING else 0)}/{planned}"


def progress_bar(done: int, planned: int, width: int = 12) -> str:
    """A bar of eighth blocks: '██████▍     '."""
    filled = 0 if planned <= 0 else min(width * 8, round(8 * width * done / planned))
    full, rest = divmod(filled, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[rest] if rest else "")).ljust(width)


def local_time(ts: datetime, zone: str) -> str:
    return ts.astimezone(ZoneInfo(zone)).strftime("%H:%M")


class PipelineBar(Widget):
    """Renders a PipelineStatus; `busy` names a command this app started that has not reported yet."""

    COMPONENT_CLASSES = {
        "pipeline-bar--ok",
        "pipeline-bar--warning",
        "pipeline-bar--error",
        "pipeline-bar--active",
        "pipeline-bar--dim",
        "pipeline-bar--bar",
    }

    def __init__(self) -> None:
        super().__init__()
        self.status: PipelineStatus | None = None
        self.zone = "UTC"
        self.busy: str | None = None

    def show(self, status: PipelineStatus | None, zone: str, busy: str | None) -> None:
        self.status, self.zone, self.busy = status, zone, busy
        self.refresh()

    def render(self) -> Text:
        style = self.get_component_rich_style
        line = Text(no_wrap=True, overflow="ellipsis")
        status = self.status
        if status is None:
            line.append(" reading the run store…", style("pipeline-bar--dim"))
            return line
        active = status.active
        if active is not None:
            line.append(f" {STATUS_ICONS[active.status]} ", style("pipeline-bar--active"))
            if active.status is RunStatus.RETRYING:
                at = active.totals.next_attempt_at
                when = local_time(at, self.zone) if at else "soon"
                line.append(f"retrying (attempt {active.totals.attempt or '?'}) at {when}")
            else:
                seconds = (status.now - active.started_at).total_seconds()
                done, planned = run_steps(active, status.planned_steps)
                line.append(progress_bar(done, planned), style("pipeline-bar--bar"))
                line.append(f" {active.trigger.value} run: {run_progress(active, status.planned_steps)}")
                line.append(f" · {duration_text(max(0.0, seconds))}", style("pipeline-bar--dim"))
        elif self.busy:
            line.append(f" … {self.busy}", style("pipeline-bar--active"))
        elif status.latest is not None:
            run = status.latest
            kind = {RunStatus.SUCCEEDED: "ok", RunStatus.HELD: "warning"}.get(run.status, "error")
            line.append(f" {STATUS_ICONS[run.status]} {run.status.value}", style(f"pipeline-bar--{kind}"))
            line.append(f" {ago(run.started_at, status.now)}")
        else:
            line.append(" no runs yet: press r", style("pipeline-bar--dim"))
        if status.next_run is not None:
            line.append(f" · next {local_time(status.next_run, self.zone)}")
        if status.gate_errors:
            line.append(f" · gate held ({len(status.gate_errors)})", style("pipeline-bar--error"))
        else:
            line.append(" · gate ok", style("pipeline-bar--ok"))
        if status.daemon is not None:
            line.append(f" · daemon pid {status.daemon.pid}", style("pipeline-bar--dim"))
        else:
            line.append(" · in-process", style("pipeline-bar--dim"))
        return line
