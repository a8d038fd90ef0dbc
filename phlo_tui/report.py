"""`phlo-tui report` and the dashboard's `e`: the clinic report of a period, written over engine.outputs.report.

Importing this module imports nothing heavy (the command line builds its parser with it); engine.outputs.report
and matplotlib are imported when a report is written.
"""

from __future__ import annotations

import argparse
import logging
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from engine.clock import clock_from_env
from engine.config import UNITS, Settings

if TYPE_CHECKING:
    from engine.api.commands import Period, ReportData, ReportReader, ReportResult
    from engine.api.facade import Engine

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, metavar="N", help="the last N full local days (default 14)")
    parser.add_argument("--since", metavar="DATE", help="first local day, YYYY-MM-DD")
    parser.add_argument("--until", metavar="DATE", help="last local day, YYYY-MM-DD (default: yesterday)")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="FILE.pdf or FILE.png (default: agp-report-SINCE_UNTIL.pdf here)",
    )
    parser.add_argument(
        "--units", type=_units, metavar="UNITS", help="mg/dL or mmol/L (default: the setting)"
    )
    parser.add_argument("--branch", choices=("dev", "main"), default="main", help="which branch to read")
    parser.add_argument("--force", action="store_true", help="replace the file if it exists")


def _units(text: str) -> str:
    for units in UNITS:
        if text.lower() == units.lower():
            return units
    raise argparse.ArgumentTypeError(f"unknown units {text!r}: use mg/dL or mmol/L")


def run_report(settings: Settings, args: argparse.Namespace) -> int:
    """The command: writes the report and prints where, the period and whether the data was sufficient.
    The period ends at data time (engine.clock: $PHLO_NOW, else the wall clock), as `metrics`' does."""
    from engine.api.commands import default_report_path, resolve_period

    now = clock_from_env()()
    period = resolve_period(settings.zone, now, days=args.days, since=args.since, until=args.until)
    out = args.out if args.out is not None else default_report_path(Path.cwd(), period)
    units = args.units or settings.units
    result = _export_light(settings, period, out, units, args.branch, args.force, now)
    if result is None:
        from engine.api.facade import Engine

        with Engine(settings) as engine:
            result = export_from(engine, settings, period, out, units, args.branch, args.force, now)
    for line in result.summary():
        print(line)
    return 0


def _export_light(
    settings: Settings, period: Period, out: Path, units: str, branch: str, force: bool, now: datetime
) -> ReportResult | None:
    """Through engine.api.fastread, which reads the recorded files of the same snapshots without importing the
    engine; None when it cannot (the engine then reads). Where it can, in a forked child process, while
    this one imports matplotlib (engine.outputs.report.forked)."""
    from engine.api.commands import can_fork

    if can_fork():
        return _export_forked(settings, period, out, units, branch, force, now)
    from engine.api.fastread import FastReader, NotRecorded

    try:
        reader = FastReader(settings)
    except NotRecorded as e:
        log.info("the engine reads the report: %s", e)
        return None
    try:
        return export_from(reader, settings, period, out, units, branch, force, now)
    except NotRecorded as e:
        log.info("the engine reads the report: %s", e)
        return None
    finally:
        reader.close()


class _EngineReads(Exception):
    """The child's FastReader could not read the report: the engine reads it (engine.api.fastread.NotRecorded,
    which the parent does not import: that would import DuckDB, the child's half of the work)."""


def _export_forked(
    settings: Settings, period: Period, out: Path, units: str, branch: str, force: bool, now: datetime
) -> ReportResult | None:
    from engine.api.commands import ForkedCall, export_loaded

    reading = ForkedCall(partial(_read_light, settings, period, branch, now))
    try:
        return export_loaded(reading.result, settings, period=period, out=out, units=units, force=force)
    except _EngineReads as e:
        log.info("the engine reads the report: %s", e)
        return None
    finally:
        reading.cancel()


def _read_light(settings: Settings, period: Period, branch: str, now: datetime) -> ReportData:
    """In the child: the period's figures through a FastReader."""
    from engine.api.commands import load_report
    from engine.api.fastread import FastReader, NotRecorded

    try:
        reader = FastReader(settings)
        try:
            return load_report(reader, settings, period, branch, now)
        finally:
            reader.close()
    except NotRecorded as e:
        raise _EngineReads(str(e)) from None


def export_from(
    reader: ReportReader,
    settings: Settings,
    period: Period,
    out: Path,
    units: str,
    branch: str,
    force: bool,
    now: datetime,
) -> ReportResult:
    from engine.api.commands import export_report

    return export_report(
        reader, settings, period=period, out=out, units=units, branch=branch, force=force, now=now
    )


def export_on_screen(
    engine: Engine, since: date, until: date, branch: str, units: str, now: datetime
) -> ReportResult:
    """The dashboard's `e`: the report of local days `since`..`until` (the period on screen, `now` the
    dashboard's clock) into PHLO_HOME/reports/, replacing an earlier export of the same period."""
    from engine.api.commands import Period, default_report_path

    period = Period(since, until)
    directory = engine.settings.home / "reports"
    directory.mkdir(mode=0o700, exist_ok=True)
    out = default_report_path(directory, period)
    return export_from(engine, engine.settings, period, out, units, branch, True, now)
