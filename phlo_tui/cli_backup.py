"""The command line's backup, verify and restore commands (engine.backup), hooked into phlo_tui.cli."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from engine.config import Settings

COMMANDS = ("backup", "restore")


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


def run(settings: Settings, args: argparse.Namespace) -> int:
    from engine.backup import backup, restore, verify

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
