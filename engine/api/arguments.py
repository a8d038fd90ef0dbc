"""Checks of a command's arguments that need nothing heavy, so that the command line answers a
mistake before it imports the engine; the engine makes the same checks through these functions."""

from __future__ import annotations

import stat
from datetime import date
from pathlib import Path

from engine.errors import PhloError, SourceError


def iso_date(value: str | None) -> str | None:
    """`value` as YYYY-MM-DD, or None; raises PhloError for anything else."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as e:
        raise PhloError(f"bad date {value!r}", "use YYYY-MM-DD, for example 2026-01-31") from e


def check_period(since: str | None, until: str | None, days: int | None) -> tuple[str | None, str | None]:
    """The local days of a period (`metrics`): `since` and `until` as YYYY-MM-DD. Raises PhloError for a
    bad date, `days` below 1, or `since` after `until` (each would answer an empty or unbounded table)."""
    since, until = iso_date(since), iso_date(until)
    if days is not None and days < 1:
        raise PhloError(
            f"--days {days}: a period has at least one day", "use --days 1 or more, e.g. --days 14"
        )
    if since is not None and until is not None and since > until:
        raise PhloError(f"--since {since} is after --until {until}", "give a --since on or before --until")
    return since, until


def check_backfill(since: str, until: str | None, today: date) -> None:
    """`backfill --since/--until`: real dates, `since` on or before `until` (default: `today`)."""
    first, last = iso_date(since), iso_date(until)
    assert first is not None
    if last is None and first > today.isoformat():
        raise PhloError(
            f"--since {first} is after today ({today.isoformat()}): there is no history to fetch yet",
            "give a day in the past",
        )
    if last is not None and last < first:
        raise PhloError(f"--until {last} is before --since {first}", "give an --until on or after --since")


def check_query(sql: str) -> None:
    """`sql QUERY`: something to run."""
    if not sql.strip():
        raise PhloError(
            "the query is empty", 'give one, e.g. phlo-tui sql "select count(*) from raw.glucose_entries"'
        )


def check_export_file(path: Path) -> None:
    """A file to import: it exists, is a file (not a directory) and is not empty. Raises SourceError."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file", "check the path of the export") from None
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror}", "check the file's permissions") from e
    if stat.S_ISDIR(info.st_mode):
        raise SourceError(f"{path}: is a directory, not an export file", "give the export file inside it")
    if info.st_size == 0:
        raise SourceError(
            f"{path}: the file is empty", "export the entries again; an export holds at least []"
        )
