"""The `phlo-tui` command line: the commands the README lists, over the engine facade."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.api.arguments import check_backfill, check_export_file, check_period, check_query
from engine.clock import clock_from_env
from engine.config import Settings, load_settings
from engine.errors import PhloError
from engine.runs.records import CommandKind
from phlo_tui import cli_data, report
from phlo_tui.cli_args import _port, _VersionAction
from phlo_tui.cli_output import (
    _diff_row,
    _fmt,
    _or_blank,
    _print_json,
    _print_table,
    _report_run,
    _status_summary,
)

if TYPE_CHECKING:
    from engine.api.reads import HomeStatus

log = logging.getLogger(__name__)

EXIT_USAGE = 2


def _demo_flag(parser: argparse.ArgumentParser) -> None:
    # Accepted before or after the command; SUPPRESS keeps a sub-parser from resetting the top-level value.
    parser.add_argument(
        "--demo",
        action="store_true",
        default=argparse.SUPPRESS,
        help="use the built-in Nightscout simulator and the demo home",
    )


def _verbose_flag(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log progress to stderr"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phlo-tui",
        description="A glucose lakehouse in one process: Nightscout -> validation -> Iceberg -> DuckDB.",
    )
    _demo_flag(parser)
    parser.add_argument(
        "--daemon", action="store_true", help="run the engine headless: hourly schedule, logs, SIGTERM stops"
    )
    _verbose_flag(parser, False)
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _demo_flag(p)
        # SUPPRESS, as for --demo: `-v` after the command keeps a `-v` given before it.
        _verbose_flag(p, argparse.SUPPRESS)
        return p

    p = command("run", "one run now; exit 0 done (or nothing new), 1 failed, 3 held by a quality gate")
    p.add_argument("--full-refresh", action="store_true", help="rebuild every model from all of raw")
    p.add_argument("--json", action="store_true", help="print the run as JSON")

    p = command("backfill", "ingest history in large windows")
    p.add_argument("--since", required=True, metavar="DATE", help="first local day, YYYY-MM-DD")
    p.add_argument("--until", metavar="DATE", help="last local day, YYYY-MM-DD (default: today)")
    p.add_argument("--json", action="store_true", help="print the run as JSON")

    p = command(
        "import", "ingest a Nightscout JSON export, a Dexcom Clarity or a LibreView CSV (plain or gzip)"
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument(
        "--format",
        choices=("nightscout", "clarity", "libreview"),
        help="the file's format (default: detected)",
    )
    p.add_argument(
        "--timezone", metavar="ZONE", help="IANA zone of a CSV's local times (default PHLO_TIMEZONE)"
    )
    p.add_argument(
        "--date-order",
        choices=("dmy", "mdy"),
        help="LibreView dates DD-MM-YYYY or MM-DD-YYYY, when the file cannot tell",
    )
    p.add_argument("--json", action="store_true", help="print the run as JSON")

    p = command("promote", "promote dev -> main (refused with the reasons while an error gate fails)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="print the promotion as JSON")

    p = command("status", "runs, watermarks and table heads")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("diff", "dev against main per table")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("metrics", "daily glucose metrics (default: the last 14 days on main)")
    p.add_argument("--since", metavar="DATE", help="first local day, YYYY-MM-DD")
    p.add_argument("--until", metavar="DATE", help="last local day, YYYY-MM-DD")
    p.add_argument("--days", type=int, metavar="N", help="the last N local days (default 14)")
    p.add_argument("--branch", choices=("dev", "main"), default="main", help="which branch to read")
    p.add_argument("--json", action="store_true", help="print a JSON array of row objects")

    p = command(
        "report", "the one-page AGP report for the clinic, as PDF or PNG (default: the last 14 full days)"
    )
    report.add_arguments(p)

    p = command("quality", "failed checks of recent runs")
    p.add_argument("--run", metavar="RUN_ID", help="only this run")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("sql", "DuckDB SQL over the lake's tables (e.g. raw.glucose_entries)")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("--branch", choices=("dev", "main"), default="main", help="which branch to read")
    p.add_argument("--json", action="store_true", help="print a JSON array of row objects")

    cli_data.add_commands(command)

    p = command(
        "remove-postgres",
        "stop the private PostgreSQL and delete it, data included (PHLO_HOME/postgres; as root also "
        "/var/lib/phlo-tui/postgres-<id>); the next publish creates a new one",
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    p = command("simulate", "run the Nightscout simulator alone on loopback, or write its trace as an export")
    p.add_argument("--port", type=_port, default=5000, help="port to listen on, 1-65535 (default 5000)")
    p.add_argument("--seed", type=int, default=42, help="seed of the trace (default 42)")
    p.add_argument("--export", choices=("clarity", "libreview"), help="write a CSV export to FILE instead")
    p.add_argument("--days", type=int, default=14, metavar="N", help="days of the export (default 14)")
    p.add_argument(
        "--until",
        metavar="DATE",
        help="the export ends at the start of this UTC day, YYYY-MM-DD (default: now)",
    )
    p.add_argument("--units", choices=("mg/dL", "mmol/L"), default="mg/dL", help="the export's glucose unit")
    p.add_argument("--date-order", choices=("dmy", "mdy"), default="dmy", help="LibreView's date order")
    p.add_argument("file", type=Path, nargs="?", metavar="FILE", help="the export to write (.gz: gzip)")
    p.add_argument(
        "--uploader",
        choices=("aaps", "loop"),
        help="serve one closed loop's treatments (AndroidAPS or Loop; default: mixed uploaders)",
    )
    return parser


def _promote(engine: Any, args: argparse.Namespace) -> int:
    diffs = [d for d in engine.diff() if d.changed]
    if not diffs:
        print("nothing to promote: main already equals dev")
        return 0
    if not args.yes:
        _print_table(("table", "ahead", "added", "removed", "days", "schema"), [_diff_row(d) for d in diffs])
        if not sys.stdin.isatty():
            print("phlo-tui: error: promotion needs confirmation", file=sys.stderr)
            print("  hint: run it in a terminal, or pass --yes", file=sys.stderr)
            return 1
        if input("promote these tables from dev to main? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not promoted")
            return 1
    promotion = engine.execute(CommandKind.PROMOTE, {}, on_queued=_say_queued).promotion
    if args.json:
        _print_json(promotion)
    elif promotion:
        print(f"promotion {promotion['id']}: main of {len(diffs)} table(s) now equals dev")
    else:
        print("nothing to promote: main already equals dev")
    return 0


def _remove_postgres(engine: Any, args: argparse.Namespace) -> int:
    where = engine.settings.home / "postgres"
    if not args.yes:
        if not sys.stdin.isatty():
            print("phlo-tui: error: removing the private PostgreSQL needs confirmation", file=sys.stderr)
            print("  hint: run it in a terminal, or pass --yes", file=sys.stderr)
            return 1
        if input(
            f"stop the private PostgreSQL of {where} and delete its data? [y/N] "
        ).strip().lower() not in (
            "y",
            "yes",
        ):
            print("not removed")
            return 1
    removed = engine.remove_private_cluster()
    if not removed:
        print(f"no private PostgreSQL in {where}")
    for path in removed:
        print(f"removed {path}")
    return 0


def _command_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "run":
        return {"full_refresh": args.full_refresh}
    if args.command == "backfill":
        return {"since": args.since, "until": args.until}
    if args.command == "import":
        return {
            "path": str(args.file.resolve()),
            "format": args.format,
            "timezone": args.timezone,
            "date_order": args.date_order,
        }
    return {}


def _say_queued(pid: int) -> None:
    print(f"queued to the running daemon (pid {pid})", file=sys.stderr)


def _check_args(args: argparse.Namespace, settings: Settings) -> None:
    """Mistakes in the arguments and input paths, answered before anything heavy is imported."""
    if args.command == "metrics":
        check_period(args.since, args.until, args.days)
    elif args.command == "backfill":
        check_backfill(args.since, args.until, clock_from_env()().astimezone(settings.zone).date())
    elif args.command == "sql":
        check_query(args.query)
    elif args.command == "import":
        check_export_file(args.file)


def _dispatch(args: argparse.Namespace) -> int:
    demo = bool(getattr(args, "demo", False))
    if args.command == "simulate" and args.export:
        from engine.api.commands import export_command

        print(
            export_command(
                args.export,
                args.file,
                args.days,
                args.units,
                args.date_order,
                args.seed,
                args.until,
                load_settings(),
            )
        )
        return 0
    if args.command == "simulate":
        from engine.api.commands import serve_forever

        serve_forever(
            port=args.port, seed=args.seed, tz=load_settings(demo=True).timezone, uploader=args.uploader
        )
        return 0

    settings = load_settings(demo=demo)
    _check_args(args, settings)
    if args.command == "run" and not args.daemon:
        from engine.api.startup import prefetch_run

        prefetch_run(settings)  # the site is read while the engine is imported
    if args.daemon:
        if args.command is not None:
            print("phlo-tui: error: --daemon takes no command", file=sys.stderr)
            return EXIT_USAGE
        from engine.api.commands import Daemon

        return Daemon(settings).serve()
    if args.command is None:
        from phlo_tui.app import run_app

        return run_app(settings)
    if args.command == "report":
        return report.run_report(settings, args)
    if args.command in cli_data.COMMANDS:
        return cli_data.run(settings, args)
    if args.command in LIGHT_COMMANDS:
        code = _answer_light(settings, args)
        if code is not None:
            return code
    # Imported here, not above: the dashboard paints before it loads the lake (see run_app), and the
    # light commands answer without it.
    from engine.api.startup import PIPELINE_COMMANDS, engine_class

    with engine_class(args.command)(settings) as engine:
        if args.command in PIPELINE_COMMANDS:
            outcome = engine.execute(CommandKind(args.command), _command_args(args), on_queued=_say_queued)
            if outcome.run is not None:
                _report_run(outcome.run, args.json)
            return outcome.exit_code
        if args.command == "promote":
            return _promote(engine, args)
        if args.command == "remove-postgres":
            return _remove_postgres(engine, args)
        if args.command == "sql":
            result = engine.query(args.query, args.branch)
            if args.json:
                _print_json(result.records())
            else:
                _print_table(result.columns, result.rows)
            return 0
        return _answer(engine, args)


ENGINE_COMMANDS = ("run", "backfill", "import", "promote", "sql", "remove-postgres")  # the Engine answers

LIGHT_COMMANDS = ("status", "quality", "metrics", "diff")
"""Answered from the run store and the lake's metadata without the engine when they can be (engine.api.fastread)."""


def _answer_light(settings: Settings, args: argparse.Namespace) -> int | None:
    """A LIGHT_COMMANDS command answered by engine.api.fastread, which imports in a tenth of the engine's time;
    None when it cannot answer exactly what the engine would (anything not recorded, unreadable or
    refused, a user error included): the engine then answers, and says what is wrong."""
    from engine.api.fastread import FastReader, NotRecorded

    try:
        reader = FastReader(settings)
    except NotRecorded as e:
        log.info("the engine answers %s: %s", args.command, e)
        return None
    try:
        # Nothing is printed before the reader has answered, so a refusal leaves stdout to the engine.
        return _answer(reader, args)
    except NotRecorded as e:
        log.info("the engine answers %s: %s", args.command, e)
        return None
    finally:
        reader.close()


def _answer(source: Any, args: argparse.Namespace) -> int:
    """status, quality, metrics or diff, from the Engine or a FastReader (both have these methods)."""
    if args.command == "diff":
        diffs = source.diff()
        if args.json:
            _print_json({"tables": [d.to_json() for d in diffs]})
        else:
            _print_table(
                ("table", "ahead", "added", "removed", "days", "schema"), [_diff_row(d) for d in diffs]
            )
        return 0
    if args.command == "metrics":
        from engine.api.reads import metrics_answer  # not at the top: `report` goes without it (0.1 s)

        result = source.metrics(since=args.since, until=args.until, days=args.days, branch=args.branch)
        answer = metrics_answer(source.settings, result, args.since, args.until, args.days, source.clock())
        if args.json:
            _print_json(answer)
        else:
            shown = (
                "reading_date",
                "reading_count",
                "avg_glucose_mg_dl",
                "time_in_range_pct",
                "time_below_range_pct",
                "cv_pct",
                "estimated_a1c_pct",
                "gri",
                "coverage_pct",
            )
            _print_table(shown, [[_fmt(row[c]) for c in shown] for row in answer["days"]])
            period = answer["period"]
            verdict = (
                period["message"]
                or f"{period['readings']} readings, {period['coverage_pct']:.0f} % of the period"
            )
            print(f"\nperiod {period['since']}..{period['until']} ({period['days']} d): {verdict}")
        return 0
    if args.command == "quality":
        checks = source.quality(args.run)
        if args.json:
            _print_json({"checks": [c.to_json() for c in checks]})
        else:
            _print_table(
                ("run", "severity", "table", "check", "column", "failing"),
                [(c.run_id, c.severity, c.table, c.check, c.column, c.failing_count) for c in checks],
            )
        return 0
    status: HomeStatus = source.status()
    if args.json:
        _print_json(status.to_json())
        return 0
    print(f"home: {status.home}{'  (demo)' if status.demo else ''}")
    for label, text in _status_summary(status):
        print(f"{label + ':':<11}{text}")
    print()
    _print_table(
        ("run", "status", "trigger", "started", "fetched", "stored", "quarantined"),
        [
            (
                r.id,
                r.status.value,
                r.trigger.value,
                r.started_at.isoformat()[:19],
                _or_blank(r.totals.fetched),
                _or_blank(r.totals.stored),
                _or_blank(r.totals.quarantined),
            )
            for r in status.runs
        ],
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`phlo-tui ARGV` in this process; returns the exit code (the program itself is `entry`)."""
    return _run(_parse(argv))


def entry() -> None:
    """The `phlo-tui` program. A command's process ends at once when the command is done
    (phlo_tui.process_exit: exit handlers run, databases closed, output flushed; no module teardown);
    the dashboard and the daemon, whose threads may still be at work, end as Python ends them, and so
    does a process under a profiler (`python -m cProfile`), which writes its report after this returns."""
    args = _parse(None)
    if args.command in ENGINE_COMMANDS and not args.daemon:
        from engine.api.startup import leave_out_unused, pause_collector

        pause_collector()
        leave_out_unused()
    code = _run(args)
    if args.command is not None and not args.daemon and sys.getprofile() is None:
        from phlo_tui.process_exit import end_process

        end_process(code)
    sys.exit(code)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    # Everything phlo writes (lake, catalog, run store, logs, dlt state) is the user's alone:
    # readings are health data. Modules that create files also set their modes, for library use.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return args


def _run(args: argparse.Namespace) -> int:
    try:
        return _dispatch(args)
    except PhloError as e:
        print(f"phlo-tui: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("phlo-tui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Whoever read stdout has gone (`| head`): nothing to report. Point stdout at /dev/null so that
        # Python's flush at exit does not raise again, and exit as a process ended by SIGPIPE does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13


if __name__ == "__main__":
    entry()
