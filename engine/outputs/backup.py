"""Backups of a phlo home: a consistent cut taken by the writer, packed into one tar file, verified, restored.

The cut (`take_cut`) runs in the process that holds the writer lease: the daemon, through its command
queue, or the `backup` command itself when no daemon runs. Holding the lease is what makes it
consistent: only the lease holder commits to the Iceberg catalog, expires snapshots or deletes files,
so while it cuts, the catalog, the files its tables reference and the run store's promotions and
watermarks cannot move apart. The two SQLite databases are copied with SQLite's online backup API,
which gives a transactionally consistent copy while other processes (the dashboard, `status`, a
lease heartbeat) keep reading and writing the run store. The Iceberg files are immutable once
written, so the cut hard-links them into a staging folder inside the home (a copy where a link is
refused) instead of reading them: the cut takes milliseconds to seconds, and the daemon's schedule
goes on while the archive is compressed from the staging folder, whatever maintenance deletes
meanwhile.

Only the files the kept snapshots of each table reference are taken (each table's current
metadata.json, its manifest lists, manifests and live data files): never an orphan, never an older
metadata.json. A header (first member) names the format and the home it was taken from; a manifest
(last member) holds the SHA-256 of every file. A restore unpacks into a temporary folder beside the
target, verifies every checksum, rewrites the absolute paths Iceberg keeps when the home moved, and
only then renames the folder into place.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from engine.config import Settings
from engine.errors import PhloError
from engine.lake.catalog_uri import CATALOG_NAME, CATALOG_TABLES, redacted, scrub
from engine.outputs.archive import (
    CATALOG_DB,
    RUNS_DB,
    BackupError,
    BackupSummary,
    Progress,
    read_archive,
    write_archive,
)
from engine.outputs.relocate import (
    relocate,
)

log = logging.getLogger(__name__)

CUT_PREFIX = ".backup-cut-"


# -- the cut -----------------------------------------------------------------------------------


def take_cut(settings: Settings) -> Path:
    """Copy the run store and the catalog, and link every file the kept snapshots of every lake table
    reference, into a new staging folder in the home; returns it (the caller removes it).

    Call only while holding the writer lease, between writes. Raises BackupError when a database cannot
    be copied, a file a snapshot references is missing, or the warehouse is not on the local disk.
    """
    home = settings.home.absolute()
    if not settings.runs_db.exists():
        raise BackupError(f"there is no phlo home at {home}", "check PHLO_HOME (or --demo)")
    _remove_stale_cuts(home)
    staging = home / f"{CUT_PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    started = time.perf_counter()
    try:
        staging.mkdir(mode=0o700)
        _copy_sqlite(settings.runs_db, staging / RUNS_DB)
        _scrub_run_store(staging / RUNS_DB)
        tables: dict[str, str] = {}
        catalog = settings.lake_dir / "catalog.sqlite"
        if settings.catalog_uri is not None or catalog.exists():
            (staging / "lake").mkdir(mode=0o700)
            if settings.catalog_uri is not None:
                _copy_postgres_catalog(settings.catalog_uri, staging / CATALOG_DB)
            else:
                _copy_sqlite(catalog, staging / CATALOG_DB)
            for table, location in catalog_tables(staging / CATALOG_DB):
                for path in sorted(_table_files(table, location)):
                    _link(home, path, staging)
                tables[table] = _relative(home, _local(location))
        (staging / "cut.json").write_text(
            json.dumps({"home": str(home), "created_at": datetime.now(UTC).isoformat(), "tables": tables})
        )
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, PhloError):
            raise
        if isinstance(e, OSError | sqlite3.Error):
            raise BackupError(
                f"cannot take a backup of {home}: {e}", f"check free disk space and permissions under {home}"
            ) from e
        raise
    log.info("backup cut of %s taken in %.3f s", home, time.perf_counter() - started)
    return staging


def catalog_tables(catalog: Path) -> list[tuple[str, str]]:
    """(namespace.table, metadata location) of every table of the SQLite catalog at `catalog`."""
    with closing(sqlite3.connect(catalog)) as con:
        rows = con.execute(
            "select table_namespace, table_name, metadata_location from iceberg_tables "
            "where metadata_location is not null order by 1, 2"
        ).fetchall()
    return [(f"{namespace}.{name}", str(location)) for namespace, name, location in rows]


_CATALOG_SCHEMA = """
create table iceberg_tables (
    catalog_name varchar(255) not null,
    table_namespace varchar(255) not null,
    table_name varchar(255) not null,
    metadata_location varchar(1000),
    previous_metadata_location varchar(1000),
    iceberg_type varchar(5),
    primary key (catalog_name, table_namespace, table_name)
);
create table iceberg_namespace_properties (
    catalog_name varchar(255) not null,
    namespace varchar(255) not null,
    property_key varchar(255) not null,
    property_value varchar(1000) not null,
    primary key (catalog_name, namespace, property_key)
);
"""
"""Iceberg's JDBC catalog tables, as pyiceberg's SQL catalog creates them in SQLite."""


def _copy_postgres_catalog(uri: str, target: Path) -> None:
    """Copy this lake's rows of a catalog kept in PostgreSQL (engine.lake.catalog_uri) into a SQLite catalog
    file at `target`, so a backup restores anywhere (its first open with catalog_uri moves it back).
    Consistent because only the lease holder commits, and the cut holds the lease."""
    import psycopg

    try:
        with psycopg.connect(uri, connect_timeout=10) as con:
            con.read_only = True
            con.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            rows = {
                name: con.execute(
                    f"select {', '.join(columns)} from {name} where catalog_name = %s", (CATALOG_NAME,)
                ).fetchall()
                for name, columns in CATALOG_TABLES.items()
            }
    except psycopg.Error as e:
        raise BackupError(
            f"cannot read the lake's catalog in PostgreSQL at {redacted(uri)}: {scrub(str(e), uri).strip()}",
            "check catalog_uri (PHLO_CATALOG_URI) and that the database server runs",
        ) from None
    with closing(sqlite3.connect(target)) as dst, dst:
        dst.executescript(_CATALOG_SCHEMA)
        for name, columns in CATALOG_TABLES.items():
            marks = ", ".join("?" for _ in columns)
            dst.executemany(f"insert into {name} ({', '.join(columns)}) values ({marks})", rows[name])
    target.chmod(0o600)


def _copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy while others read and write `source`."""
    with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    target.chmod(0o600)


def _scrub_run_store(path: Path) -> None:
    """A restored home has no writer yet: drop the lease row and the command queue of the copy."""
    with closing(sqlite3.connect(path)) as con, con:
        con.execute("delete from lease")
        con.execute("delete from commands where status in ('queued', 'running')")


def _table_files(table: str, metadata_location: str) -> set[str]:
    """Local paths of a table's current metadata.json and of what its kept snapshots reference."""
    from pyiceberg.table import StaticTable

    from engine.lake.housekeeping import _referenced_files

    try:
        static = StaticTable.from_metadata(metadata_location)
        return {_local(metadata_location), *_referenced_files(static)}
    except FileNotFoundError as e:
        raise BackupError(
            f"lake table {table} refers to a file that does not exist: {e.filename or e}",
            "the lake is damaged; restore an older backup or rebuild the table with a backfill",
        ) from e


def _link(home: Path, path: str, staging: Path) -> None:
    target = staging / _relative(home, path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.link(path, target)
    except FileNotFoundError as e:
        raise BackupError(
            f"a file the lake refers to does not exist: {path}",
            "the lake is damaged; restore an older backup or rebuild the table with a backfill",
        ) from e
    except OSError:
        shutil.copy2(path, target)  # a file system without hard links


def _relative(home: Path, path: str) -> str:
    try:
        return Path(path).relative_to(home).as_posix()
    except ValueError:
        raise BackupError(
            f"the lake file {path} is outside the home {home}",
            "backups cover a warehouse under the home only; back up other storage with its own tools",
        ) from None


def _local(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise BackupError(
            f"the lake file {uri} is not on the local disk",
            "backups cover a warehouse under the home only; back up other storage with its own tools",
        )
    return parsed.path if parsed.scheme == "file" else uri


def _remove_stale_cuts(home: Path) -> None:
    """Staging folders of backups whose process died (a day old: a live one is being packed)."""
    for path in home.glob(f"{CUT_PREFIX}*"):
        with suppress(OSError):
            if time.time() - path.stat().st_mtime > 86400:
                shutil.rmtree(path, ignore_errors=True)


# -- the archive -------------------------------------------------------------------------------


# -- backup, verify, restore ---------------------------------------------------------------------


def restore(
    path: Path, home: Path, *, force: bool = False, progress: Progress | None = None
) -> tuple[BackupSummary, Path | None]:
    """Restore the backup at `path` into `home`, which must be missing or empty unless `force`.

    Unpacks into a temporary folder beside `home`, verifies every checksum, moves the lake's absolute
    paths to `home`, and only then renames the folder into place; with `force`, an existing home is
    first renamed aside. Returns what the backup held and where the old home went. On any failure `home` is as it was and nothing is left behind.
    Raises BackupError for a damaged or newer backup, a non-empty home without `force`, a home in use
    by a running phlo-tui, or a place that cannot be written.
    """
    path, home = path.absolute(), home.absolute()
    if home.exists() and not home.is_dir():
        raise BackupError(f"cannot restore into {home}: it is not a folder", "give a folder with --home")
    occupied = home.is_dir() and any(home.iterdir())
    if occupied and not force:
        raise BackupError(
            f"cannot restore into {home}: it is not empty",
            "give an empty or new folder with --home, or pass --force to move the current home aside",
        )
    if occupied:
        _refuse_if_in_use(home)
    try:
        home.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{home.name}.restore-", dir=home.parent))
    except OSError as e:
        raise BackupError(
            f"cannot restore into {home}: {e.strerror or e}",
            f"choose a place you can write, or check the permissions of {home.parent}",
        ) from e
    aside: Path | None = None
    try:
        summary = read_archive(path, work, progress=progress)
        relocate(work, old_home=summary.home, new_home=str(home), tables=summary.tables)
        work.chmod(0o700)
        if occupied:
            aside = home.with_name(f"{home.name}.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
            home.rename(aside)
        elif home.exists():
            home.rmdir()
        try:
            work.rename(home)
        except OSError:
            if aside is not None:
                aside.rename(home)
                aside = None
            raise
    except BaseException as e:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(e, OSError | sqlite3.Error):
            raise BackupError(
                f"cannot restore into {home}: {e}", f"check free disk space and permissions in {home.parent}"
            ) from e
        raise
    return summary, aside


def _refuse_if_in_use(home: Path) -> None:
    import fcntl

    lock = home / "writer.lock"
    if not lock.exists():
        return
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(
                f"cannot restore into {home}: a phlo-tui process is writing it",
                "stop the daemon (or the dashboard) first",
            ) from None
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# -- moving a lake ---------------------------------------------------------------------------------


def backup(settings: Settings, out: Path, *, progress: Progress | None = None) -> BackupSummary:
    """Back the home up into `out`, online: the cut is taken by the writer (the daemon when one runs,
    which pauses between runs for the cut only), then packed here. Raises BackupError, LeaseHeldError."""
    from engine.api.facade import Engine

    out = out.absolute()
    if not settings.runs_db.exists():
        raise BackupError(f"there is no phlo home at {settings.home}", "check PHLO_HOME (or --demo)")
    if out.is_dir() or not out.parent.is_dir():
        raise BackupError(
            f"cannot write the backup {out}: "
            + ("it is a folder" if out.is_dir() else f"{out.parent} does not exist"),
            "give a file name in an existing folder, such as backups/phlo-2026-01-31.tar.gz",
        )
    with Engine(settings) as engine:
        staging = engine.backup_cut()
    try:
        return write_archive(staging, out, progress=progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- scheduled backups -----------------------------------------------------------------------------

SCHEDULED_PREFIX = "phlo-backup-"
SCHEDULED_SUFFIX = ".tar.gz"
BACKUP_EVERY = timedelta(days=1)
BACKUP_STALE = timedelta(days=2)
"""A newest backup older than this is a warning in `status` and an alert of the daemon."""


@dataclass(frozen=True)
class ScheduledBackup:
    path: Path
    created_at: datetime


def scheduled_backups(folder: Path) -> list[ScheduledBackup]:
    """The daemon's backups in `folder`, newest first, by the UTC time in their names."""
    found = []
    with suppress(OSError):
        for path in folder.glob(f"{SCHEDULED_PREFIX}*{SCHEDULED_SUFFIX}"):
            stamp = path.name[len(SCHEDULED_PREFIX) : -len(SCHEDULED_SUFFIX)]
            with suppress(ValueError):
                found.append(
                    ScheduledBackup(path, datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
                )
    return sorted(found, key=lambda b: b.created_at, reverse=True)


def backup_state(settings: Settings, now: datetime) -> dict[str, Any] | None:
    """The newest scheduled backup for `status`: path, time, age and level (`warning` once it is older
    than BACKUP_STALE, or when there is none); None when backup_dir is not set."""
    if settings.backup_dir is None:
        return None
    found = scheduled_backups(settings.backup_dir)
    if not found:
        return {
            "path": None,
            "created_at": None,
            "age_hours": None,
            "level": "warning",
            "message": f"no backup in {settings.backup_dir} yet",
        }
    newest = found[0]
    age = now - newest.created_at
    level = "warning" if age > BACKUP_STALE else "ok"
    return {
        "path": str(newest.path),
        "created_at": newest.created_at.isoformat(),
        "age_hours": round(age.total_seconds() / 3600, 1),
        "level": level,
        "message": f"newest backup {newest.path.name} is {_age(age)} old"
        + (f" (over {BACKUP_STALE.days} days)" if level == "warning" else ""),
    }


def _age(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.1f} days"


def backup_due(settings: Settings, now: datetime) -> bool:
    """Whether the daemon should write a backup now: backup_dir is set and its newest is a day old."""
    if settings.backup_dir is None:
        return False
    found = scheduled_backups(settings.backup_dir)
    return not found or now - found[0].created_at >= BACKUP_EVERY


def write_scheduled(settings: Settings, staging: Path, now: datetime) -> Path:
    """Pack a cut into backup_dir under its scheduled name, then delete all but the newest backup_keep.
    Raises BackupError."""
    if settings.backup_dir is None:
        raise BackupError("no backup_dir is set", "set PHLO_BACKUP_DIR")
    folder = settings.backup_dir.absolute()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise BackupError(
            f"cannot create the backup folder {folder}: {e.strerror}", "check backup_dir"
        ) from e
    out = folder / f"{SCHEDULED_PREFIX}{now:%Y%m%dT%H%M%SZ}{SCHEDULED_SUFFIX}"
    write_archive(staging, out)
    for old in scheduled_backups(folder)[settings.backup_keep :]:
        old.path.unlink(missing_ok=True)
    return out
