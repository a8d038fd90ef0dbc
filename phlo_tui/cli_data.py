"""The command line's commands that take data out of the home: backup, restore (engine.outputs.backup) and export
(engine.outputs.export); hooked into phlo_tui.cli."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from engine.config import Settings

COMMANDS = ("backup", "restore", "export", "tables")


def add_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Add `backup` and `restore` through cli.build_parser's `command(name, help)`."""
    p = command("backup", "a consistent online backup of the home into one file (.tar.gz or .tar.zst)")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--verify", action="store_true", help="check FILE's checksums instead of writing it")
    p.add_argument("--json", action="store_true", help="print what the backup holds as JSON")

    p = command("restore", "restore a backup into an empty home (default: this home)")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--home", type=Path, metavar="DIR", help="the home to restore into (default: PHLO_HOME)")
    p.add_argument("--force", action="store_true", help="move a non-empty home aside first")
    p.add_argument("--json", action="store_true", help="print what was restored as JSON")

    p = command("export", "a lake table as Parquet or CSV, or `entries` as Nightscout JSON")
    p.add_argument(
        "table", metavar="TABLE", help="a lake table (see `sql`), or `entries` with --format nightscout"
    )
    p.add_argument("--format", required=True, choices=("parquet", "csv", "nightscout"), dest="fmt")
    p.add_argument("--out", required=True, type=Path, metavar="FILE")
    p.add_argument("--since", metavar="DATE", help="first local day, YYYY-MM-DD")
    p.add_argument("--until", metavar="DATE", help="last local day, YYYY-MM-DD")
    p.add_argument("--branch", choices=("dev", "main"), default="main", help="which branch to read")

    p = command(
        "tables", "each lake table, its rows on main and the metadata file DuckDB's iceberg_scan reads"
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "export":
        return _export(settings, args)
    if args.command == "tables":
        return _tables(settings, args)
    from engine.api.commands import backup, restore, verify

    progress = _Progress("verifying" if args.command == "restore" or args.verify else "backing up")
    if args.command == "backup" and args.verify:
        summary = verify(args.file, progress=progress)
        progress.done()
        what = "verified"
    elif args.command == "backup":
        summary = backup(settings, args.file, progress=progress)
        progress.done()
        what = "backed up"
    else:
        home = (args.home or settings.home).absolute()
        summary, aside = restore(args.file, home, force=args.force, progress=progress)
        progress.done()
        what = f"restored into {home}" + (f" (the old home is now {aside})" if aside else "") + " from"
    if args.json:
        print(json.dumps(summary.to_json()))
    else:
        print(
            f"{what} {summary.path}: {summary.files} files, {summary.bytes / 1e6:.1f} MB, "
            f"{len(summary.tables)} tables, taken {summary.created_at:%Y-%m-%d %H:%M:%S} UTC from {summary.home}"
        )
    return 0


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from engine.api.commands import ENTRIES_TABLE, export_nightscout_entries, export_table
    from engine.api.facade import Engine
    from engine.errors import PhloError

    nightscout = args.fmt == "nightscout"
    if nightscout != (args.table == "entries"):
        raise PhloError(
            f"cannot export {args.table} as {args.fmt}",
            "use `export entries --format nightscout`, or a lake table with --format parquet or csv",
        )
    if not settings.runs_db.exists():
        raise PhloError(f"there is no phlo home at {settings.home}", "check PHLO_HOME (or --demo)")
    bounds = {"since": args.since, "until": args.until, "branch": args.branch}
    with Engine(settings) as engine:
        if nightscout:
            rows = export_nightscout_entries(engine, args.out, **bounds)
        else:
            rows = export_table(engine, args.table, args.fmt, args.out, **bounds)
    what = ENTRIES_TABLE + " as Nightscout entries" if nightscout else args.table
    print(f"exported {rows} rows of {what} ({args.branch}) to {args.out}")
    return 0


def _tables(settings: Settings, args: argparse.Namespace) -> int:
    from engine.api.commands import reader_tables
    from engine.api.facade import Engine
    from engine.errors import PhloError

    if not settings.runs_db.exists():
        raise PhloError(f"there is no phlo home at {settings.home}", "check PHLO_HOME (or --demo)")
    with Engine(settings) as engine:
        tables = reader_tables(engine)
    if args.json:
        print(json.dumps({"tables": [t.to_json() for t in tables]}))
        return 0
    width = max([5, *(len(t.table) for t in tables)])
    print(f"{'table':<{width}}  {'rows':>8}  metadata file (main)")
    for t in tables:
        rows = "?" if t.rows is None else str(t.rows)
        print(f"{t.table:<{width}}  {rows:>8}  {t.metadata_file or '(not kept)'}")
    return 0


class _Progress:
    """A percentage on stderr while it is a terminal, at most ten times a second; silent otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = False
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.tty or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        percent = 100 * done / total if total else 100
        print(
            f"\r{self.label}: {percent:5.1f}% ({done / 1e6:.1f} of {total / 1e6:.1f} MB)",
            end="",
            file=sys.stderr,
        )
        self.shown = True

    def done(self) -> None:
        if self.shown:
            print(file=sys.stderr)
            self.shown = False
