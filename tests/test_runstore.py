"""The run store: records, the step wrapper, quality results and watermarks, across processes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.errors import LeaseHeldError, StepFailed
from engine.runs.lease import WriterLock
from engine.runs.records import CheckRecord, RunStatus, RunTrigger, Severity, StepStatus
from engine.runs.store import RunStore


def test_step_wrapper_records_success_and_failure(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    run = store.create_run(RunTrigger.MANUAL)
    with store.step(run.id, "fetch", {"window": 1}) as step:
        step.rows = 12
    with pytest.raises(StepFailed) as err, store.step(run.id, "merge"):
        raise OSError("disk full")
    assert err.value.step == "merge"
    assert isinstance(err.value.__cause__, OSError)
    steps = store.get_run(run.id).steps
    assert [(s.name, s.status, s.rows) for s in steps] == [
        ("fetch", StepStatus.SUCCEEDED, 12),
        ("merge", StepStatus.FAILED, None),
    ]
    assert steps[0].detail == {"window": 1}
    assert steps[1].error is not None and "disk full" in steps[1].error
    assert steps[0].seconds is not None and steps[0].seconds >= 0


def test_records_are_frozen_and_statuses_grouped(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    run = store.create_run(RunTrigger.BACKFILL, {"since": "2026-01-01"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = RunStatus.FAILED  # type: ignore[misc]
    assert run.status in RunStatus.ACTIVE
    done = store.finish_run(run.id, RunStatus.HELD, summary={"stored": 3})
    assert done.status in RunStatus.FINISHED
    assert done.summary == {"stored": 3}
    assert done.params == {"since": "2026-01-01"}


def test_list_runs_newest_first_and_shared_between_handles(tmp_path: Path) -> None:
    a = RunStore(tmp_path / "runs.sqlite")
    ids = [a.create_run(RunTrigger.MANUAL).id for _ in range(3)]
    b = RunStore(tmp_path / "runs.sqlite")
    assert [r.id for r in b.list_runs()] == ids[::-1]


def test_abandoned_runs_are_failed(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    run = store.create_run(RunTrigger.MANUAL)
    assert store.fail_abandoned_runs() == 1
    assert store.get_run(run.id).status is RunStatus.FAILED


def test_watermark_only_moves_forward(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.watermark("s") is None
    store.advance_watermark("s", 100, "r1")
    store.advance_watermark("s", 50, "r2")
    assert store.watermark("s") == 100
    store.advance_watermark("s", 150, "r3")
    assert store.watermark("s") == 150


def test_quality_results_keep_twenty_samples(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    run = store.create_run(RunTrigger.MANUAL)
    samples = tuple({"i": i} for i in range(50))
    store.record_checks(
        [CheckRecord(run.id, "sgv_in_range", "raw.glucose_entries", "sgv", Severity.ERROR, 50, samples)]
    )
    (check,) = store.checks(run.id)
    assert check.failing_count == 50
    assert len(check.samples) == 20


def test_writer_lock_names_holder_and_is_freed_by_release(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    first = WriterLock(tmp_path, store)
    first.acquire("daemon")
    assert store.lease() is not None and store.lease().role == "daemon"  # type: ignore[union-attr]
    with pytest.raises(LeaseHeldError, match="daemon"):
        WriterLock(tmp_path, RunStore(tmp_path / "runs.sqlite")).acquire("cli")
    first.release()
    assert store.lease() is None
    second = WriterLock(tmp_path, store)
    second.acquire("cli")
    assert second.held
    second.release()


def test_lease_of_dead_holder_on_another_host_waits_for_staleness(tmp_path: Path) -> None:
    from datetime import timedelta

    store = RunStore(tmp_path / "runs.sqlite")
    store.take_lease("daemon", 999_999, "elsewhere", stale_after=timedelta(seconds=60), holder_alive=True)
    with pytest.raises(LeaseHeldError, match="elsewhere"):
        store.take_lease("daemon", 1, "here", stale_after=timedelta(seconds=60), holder_alive=True)
    taken = store.take_lease("daemon", 1, "here", stale_after=timedelta(seconds=0), holder_alive=True)
    assert (taken.pid, taken.host) == (1, "here")
    assert not store.heartbeat(999_999, "elsewhere")
    assert store.heartbeat(1, "here")


def test_command_queue_round_trip(tmp_path: Path) -> None:
    from engine.runs.records import CommandKind, CommandStatus

    store = RunStore(tmp_path / "runs.sqlite")
    first = store.enqueue(CommandKind.RUN, {"full_refresh": False})
    second = store.enqueue(CommandKind.PROMOTE, {})
    claimed = store.claim_command()
    assert claimed is not None and claimed.id == first and claimed.status is CommandStatus.RUNNING
    store.finish_command(first, CommandStatus.DONE, exit_code=3, run_id="r1", result={"status": "held"})
    done = store.command(first)
    assert (done.status, done.exit_code, done.run_id, done.result) == (
        CommandStatus.DONE,
        3,
        "r1",
        {"status": "held"},
    )
    assert store.claim_command().id == second  # type: ignore[union-attr]
    assert store.claim_command() is None
    assert store.abandon_commands() == 1
    assert store.command(second).status is CommandStatus.FAILED


def test_a_command_kind_this_version_does_not_know_is_answered_not_crashed_on(tmp_path: Path) -> None:
    """A newer phlo-tui may queue a kind an older daemon does not know: the record reads back as text,
    the typed kinds as their enum, and the daemon answers the unknown one with exit 2 and a hint."""
    from engine.daemon import execute_command
    from engine.runs.records import CommandKind

    store = RunStore(tmp_path / "runs.sqlite")
    known = store.enqueue(CommandKind.BACKFILL, {"since": "2026-01-01"})
    unknown = store.enqueue("compact", {})  # type: ignore[arg-type]
    assert store.command(known).kind is CommandKind.BACKFILL
    record = store.command(unknown)
    assert record.kind == "compact" and not isinstance(record.kind, CommandKind)
    code, run_id, result = execute_command(None, record)  # type: ignore[arg-type]
    assert (code, run_id) == (2, None)
    assert "unknown command 'compact'" in result["error"] and result["hint"]


def test_step_labels_name_the_source_and_the_window(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    run = store.create_run(RunTrigger.BACKFILL)
    with store.step(run.id, "fetch", {"source": "treatments", "window": 2, "windows": 5}):
        pass
    with store.step(run.id, "fetch", {"source": "glucose", "window": 1, "windows": 1}):
        pass
    with store.step(run.id, "validate", {"source": "glucose"}):
        pass
    with store.step(run.id, "gates"):
        pass
    labels = [s.label for s in store.get_run(run.id).steps]
    assert labels == ["fetch treatments 2/5", "fetch glucose", "validate glucose", "gates"]


def test_a_runs_summary_reads_back_typed_and_missing_figures_are_none(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    store = RunStore(tmp_path / "runs.sqlite")
    run = store.create_run(RunTrigger.MANUAL)
    at = datetime(2026, 5, 13, 14, 30, tzinfo=UTC)
    store.finish_run(
        run.id,
        RunStatus.FAILED,
        error="site down",
        summary={"fetched": 12, "stored": 10, "quarantined": 2, "transient": True, "gate": "passed"},
    )
    retrying = store.mark_retrying(run.id, at, 2)
    totals = store.get_run(run.id).totals
    assert (totals.fetched, totals.stored, totals.quarantined, totals.unchanged) == (12, 10, 2, None)
    assert totals.transient and totals.gate == "passed" and totals.lines is None
    assert (totals.attempt, totals.next_attempt_at) == (2, at) == (retrying.totals.attempt, at)
    assert store.get_run(store.create_run(RunTrigger.MANUAL).id).totals.transient is False
