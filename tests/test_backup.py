"""Backup and restore as a person runs them: the real CLI on a home built from the simulator, a daemon
running meanwhile, a restore into another folder, and every kind of bad input."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pty
import resource
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.clock import NOW_ENV
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.pgserver import PgServer
from tests.simclock import HOUR, START, Clock

# The module's home is built once by real runs (minutes on a busy machine), inside the first test's time.
pytestmark = pytest.mark.timeout(1800)

TABLES = (
    "raw.glucose_entries",
    "raw.glucose_quarantine",
    "silver.fct_glucose_readings",
    "gold.fct_daily_glucose_metrics",
    "gold.fct_hourly_glucose_profile",
    "marts.mrt_glucose_overview",
)


def home_env(home: Path, url: str, root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHLO_", "NIGHTSCOUT_"))}
    return {
        **env,
        "PHLO_HOME": str(home),
        "NIGHTSCOUT_URL": url,
        "PHLO_CONFIG": str(root / "no-config.toml"),
        "PHLO_MANAGE_POSTGRES": "false",
        "PHLO_TIMEZONE": "UTC",
        "PHLO_INITIAL_DAYS": "1",
        "PHLO_REREAD_HOURS": "0",  # a run fetches from its watermark alone: the restored one is checked
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        NOW_ENV: START.isoformat(),  # the engine's data time is the simulator's (tests/simclock.py)
    }


def phlo(
    env: dict[str, str], *args: str, preexec: Callable[[], None] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "phlo_tui.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=preexec,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def without_elapsed_time(metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics --json` without what moves with data time between two reads: coverage against the time
    elapsed (the period's, and today's row's)."""
    for moving in ("expected_readings", "coverage_pct", "message"):
        metrics["period"].pop(moving)
    for row in metrics["days"]:
        row.pop("coverage_pct")
        row.pop("expected_reading_count")
    return metrics


def answers(env: dict[str, str]) -> dict[str, Any]:
    """What a person reads from a home: metrics and SQL on both branches, and the branch diff."""
    out: dict[str, Any] = {"diff": json.loads(ok(phlo(env, "diff", "--json")))}
    for branch in ("main", "dev"):
        out[f"metrics-{branch}"] = without_elapsed_time(
            json.loads(ok(phlo(env, "metrics", "--branch", branch, "--json")))
        )
        union = " union all ".join(f"select '{t}' as t, count(*) as n from {t}" for t in TABLES)
        out[f"counts-{branch}"] = json.loads(ok(phlo(env, "sql", union, "--branch", branch, "--json")))
        out[f"entries-{branch}"] = json.loads(
            ok(
                phlo(
                    env,
                    "sql",
                    "select count(*) as n, sum(hash(_id, sgv, date)::hugeint) as h from raw.glucose_entries",
                    "--branch",
                    branch,
                    "--json",
                )
            )
        )
    return out


def one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("phlo-tui: error: ") and text in lines[0], result.stderr
    assert all(line.startswith("  hint: ") for line in lines[1:]), result.stderr
    assert "Traceback" not in result.stderr


def tree(path: Path) -> dict[str, str]:
    """Every file under `path` with a hash of its bytes: equal before and after means untouched."""
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@dataclass
class Built:
    root: Path
    home: Path
    env: dict[str, str]
    backup: Path
    clock: Clock
    server: SimulatorServer

    def env_for(self, home: Path) -> dict[str, str]:
        return {**self.env, "PHLO_HOME": str(home)}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """A home with a promoted run and an unpromoted one after it (dev ahead of main), and its backup."""
    root = tmp_path_factory.mktemp("backup")
    clock = Clock()
    clock.now -= 8 * HOUR  # eight hours behind the engine's data time: room for later runs
    with SimulatorServer(GlucoseSimulator(seed=13, clock=clock)) as server:
        env = home_env(root / "home", server.url, root)
        ok(phlo(env, "run"))
        clock.now += 3 * HOUR  # past any gap in the trace (at most 2 h)
        ok(phlo({**env, "PHLO_AUTO_PROMOTE": "false"}, "run"))
        backup = root / "home.tar.gz"
        ok(phlo(env, "backup", str(backup)))
        yield Built(root, root / "home", env, backup, clock, server)


def test_restore_elsewhere_answers_as_before_then_continues_and_publishes(
    built: Built, tmp_path: Path, pg: PgServer
) -> None:
    before = answers(built.env)
    assert any(t["rows_added"] for t in before["diff"]["tables"]), "dev is ahead of main"
    assert before["entries-main"] != before["entries-dev"]
    other = tmp_path / "elsewhere" / "home"
    env = built.env_for(other)
    out = ok(phlo(env, "restore", str(built.backup)))
    assert f"restored into {other}" in out
    assert answers(env) == before
    # Iceberg's absolute paths moved with the home: no file of it names the old one.
    old = str(built.home).encode()
    assert [name for name, _ in tree(other).items() if old in (other / name).read_bytes()] == []
    # Manifests are compressed Avro: read them to see where the data files they list are.
    from pyiceberg.table import StaticTable

    from engine.lake.housekeeping import _referenced_files
    from engine.outputs.backup import catalog_tables

    catalog = catalog_tables(other / "lake" / "catalog.sqlite")
    assert {t for t, _ in catalog} >= set(TABLES)
    referenced = {
        path for _, location in catalog for path in _referenced_files(StaticTable.from_metadata(location))
    }
    assert referenced and {p for p in referenced if not p.startswith(f"{other}/")} == set()
    # Exactly what the kept snapshots reference: the orphan sweep finds nothing to delete (and
    # would refuse if a referenced file were missing).
    from engine.lake.store import Lake

    lake = Lake(other / "lake")
    future = datetime.now(UTC) + timedelta(days=1)
    for table in TABLES:
        assert lake.delete_orphan_files(table, older_than=future).files_deleted == 0

    # The next run continues from the restored watermark and publishes.
    built.clock.now += 3 * HOUR
    dsn = pg.create_database("restored")
    run = json.loads(ok(phlo({**env, "PHLO_POSTGRES_DSN": dsn}, "run", "--json")))
    assert run["status"] == "succeeded"
    # Glucose entries from the restored watermark: 3 h + the hour of lookback (some uploaded twice),
    # not the 20 h a first run would fetch.
    fetched = run["summary"]["sources"]["entries"]["fetched"]
    assert 0 < fetched <= 6 * 12, fetched
    assert isinstance(run["summary"]["publish"], dict) and set(run["summary"]["publish"].values()) == {
        "published"
    }
    main_days = ok(phlo(env, "sql", "select count(*) as n from gold.fct_daily_glucose_metrics", "--json"))
    with psycopg.connect(dsn) as con:
        published = con.execute("select count(*) from api.daily_glucose_metrics").fetchone()
    assert published is not None and published[0] == json.loads(main_days)[0]["n"]
    diff = json.loads(ok(phlo(env, "diff", "--json")))["tables"]
    assert all(t["main_snapshot"] == t["dev_snapshot"] for t in diff)  # promoted


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


async def dashboard_reads(env: dict[str, str]) -> tuple[Any, ...]:
    """What the dashboard shows on a home: the Overview's figures and band panel, the Charts' days and
    the Branches page's diff, with the clock at the suite's data time and no run on start."""
    from engine.config import load_settings
    from phlo_tui.app import EngineReady, PhloApp
    from phlo_tui.screens.branches import DiffComputed
    from phlo_tui.screens.charts import ChartsLoaded
    from phlo_tui.screens.overview import OverviewLoaded
    from phlo_tui.widgets.band_panel import BandPanel
    from tests.test_tui import Recorder, settle

    recorder = Recorder()
    app = PhloApp(settings=load_settings(env), poll_interval=60.0, clock=lambda: START, schedule=False)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await settle(pilot)
        assert recorder.of(EngineReady) and recorder.of(OverviewLoaded)
        bands = app.screen.query_one(BandPanel).render().plain
        for page in ("2", "4"):
            await pilot.press(page)
            await settle(pilot)
        app.exit()
    overview, charts, diff = (recorder.of(kind)[-1] for kind in (OverviewLoaded, ChartsLoaded, DiffComputed))
    return overview.snapshot, bands, charts.snapshot, diff.snapshot  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_the_dashboard_shows_a_restored_home_as_it_showed_the_original(
    built: Built, tmp_path: Path
) -> None:
    backup = tmp_path / "now.tar.gz"
    ok(phlo(built.env, "backup", str(backup)))
    other = tmp_path / "restored"
    ok(phlo(built.env_for(other), "restore", str(backup)))
    before = await dashboard_reads(built.env)
    after = await dashboard_reads(built.env_for(other))
    assert before[0].trace and "%" in before[1]
    assert after == before


def test_backup_while_the_daemon_runs_is_taken_by_it_between_runs(built: Built, tmp_path: Path) -> None:
    home = tmp_path / "daemon-home"
    env = {**built.env_for(home), "PHLO_SCHEDULE_INTERVAL_SECONDS": "2"}
    ok(phlo(env, "restore", str(built.backup)))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "phlo_tui.cli", "--daemon"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        runs = lambda: len(json.loads(ok(phlo(env, "status", "--json")))["runs"])  # noqa: E731
        before = runs()
        wait_for(lambda: runs() > before)
        backup = tmp_path / "online.tar.zst"
        result = phlo(env, "backup", str(backup), "--json")
        summary = json.loads(ok(result))
        assert set(summary["tables"]) >= set(TABLES)
        with sqlite3.connect(home / "runs.sqlite") as con:
            commands = con.execute("select kind, status from commands").fetchall()
        assert ("backup_cut", "done") in commands  # the daemon took the cut, holding its lease
        assert daemon.poll() is None
        after = runs()
        wait_for(lambda: runs() > after)  # and its schedule goes on
        assert not list(home.glob(".backup-cut-*"))
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    ok(phlo(env, "backup", "--verify", str(backup)))
    restored = tmp_path / "from-online"
    renv = built.env_for(restored)
    ok(phlo(renv, "restore", str(backup)))
    # The run store and the catalog are one cut: the recorded promotion is what main points at.
    status = json.loads(ok(phlo(renv, "status", "--json")))
    promoted = status["last_promotion"]["tables"]
    for table, heads in status["tables"].items():
        if table in promoted:
            assert heads["main"] == promoted[table]["to"], table
    assert status["writer"] is None and status["daemon"] is None  # the restored home has no writer


def test_the_daemon_backs_up_daily_keeps_the_newest_and_status_shows_the_age(
    built: Built, tmp_path: Path
) -> None:
    home, folder = tmp_path / "home", tmp_path / "backups"
    env = {**built.env_for(home), "PHLO_BACKUP_DIR": str(folder), "PHLO_BACKUP_KEEP": "2"}
    ok(phlo(env, "restore", str(built.backup)))
    folder.mkdir()
    now = datetime.now(UTC)
    old = [
        folder / f"phlo-backup-{now - timedelta(days=d, hours=1):%Y%m%dT%H%M%SZ}.tar.gz" for d in (3, 4, 5)
    ]
    for path in old:
        shutil.copy(built.backup, path)
    status = json.loads(ok(phlo(env, "status", "--json")))
    assert status["backup"]["path"] == str(old[0]) and status["backup"]["level"] == "warning"
    assert "backup:    warning: newest backup" in ok(phlo(env, "status"))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "phlo_tui.cli", "--daemon"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(list(folder.iterdir())) == 2 and not old[0].with_name(old[1].name).exists())
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    new = sorted(set(folder.iterdir()) - set(old))
    assert len(new) == 1 and sorted(folder.iterdir()) == sorted([old[0], new[0]])
    ok(phlo(env, "backup", "--verify", str(new[0])))
    status = json.loads(ok(phlo(env, "status", "--json")))
    assert status["backup"]["path"] == str(new[0]) and status["backup"]["level"] == "ok"
    assert not list(home.glob(".backup-cut-*"))


def test_progress_is_shown_on_a_terminal(built: Built, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "phlo_tui.cli", "backup", "--verify", str(built.backup)],
            env=built.env,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=300,
        )
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    assert b"verifying: 100.0%" in shown
    assert b"verifying" not in phlo(built.env, "backup", "--verify", str(built.backup)).stderr.encode()


def test_restore_refuses_a_non_empty_home_unless_forced(built: Built, tmp_path: Path) -> None:
    home = tmp_path / "taken"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    env = built.env_for(home)
    one_line_error(phlo(env, "restore", str(built.backup)), "it is not empty")
    assert tree(home) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}
    out = ok(phlo(env, "restore", str(built.backup), "--force"))
    (aside,) = tmp_path.glob("taken.before-restore-*")
    assert str(aside) in out and (aside / "notes.txt").read_text() == "mine"
    assert (home / "runs.sqlite").exists() and not (home / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["taken", aside.name])


def _repack(source: Path, target: Path, change: Callable[[str, bytes], bytes]) -> None:
    """A copy of a backup with some members' bytes changed, packed and compressed properly."""
    with gzip.open(source) as raw, tarfile.open(fileobj=raw, mode="r|") as tar_in:
        members = [(m, tar_in.extractfile(m).read()) for m in tar_in]  # type: ignore[union-attr]
    with gzip.open(target, "wb") as raw, tarfile.open(fileobj=raw, mode="w|") as tar_out:
        for member, data in members:
            data = change(member.name, data)
            member.size = len(data)
            tar_out.addfile(member, io.BytesIO(data))


def _truncated(source: Path, target: Path) -> None:
    target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])


def _flipped_byte(source: Path, target: Path) -> None:
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))


def _changed_parquet(source: Path, target: Path) -> None:
    done: list[str] = []

    def change(name: str, data: bytes) -> bytes:
        if name.endswith(".parquet") and not done:
            done.append(name)
            return data[:-9] + bytes([data[-9] ^ 1]) + data[-8:]
        return data

    _repack(source, target, change)


def _newer(source: Path, target: Path) -> None:
    def change(name: str, data: bytes) -> bytes:
        if name == "phlo-backup.json":
            return json.dumps({**json.loads(data), "format": 99, "version": "9.0.0"}).encode()
        return data

    _repack(source, target, change)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncated, "is truncated or damaged"),
        (_flipped_byte, "is truncated or damaged"),
        (_changed_parquet, "checksum mismatch in 1 file(s)"),
        (_newer, "was written by a newer phlo-tui"),
    ],
)
def test_bad_backups_are_refused_in_one_line_and_the_home_is_untouched(
    built: Built,
    tmp_path: Path,
    damage: Callable[[Path, Path], None],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from phlo_tui.cli import main

    def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """The command line in this process (each subprocess costs seconds of imports)."""
        monkeypatch.setenv("PHLO_HOME", str(home))
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    bad = tmp_path / "bad.tar.gz"
    damage(built.backup, bad)
    one_line_error(cli(built.home, "backup", "--verify", str(bad)), message)
    home = tmp_path / "existing"
    assert cli(home, "restore", str(built.backup)).returncode == 0
    before = tree(home)
    for args in (("--force",), ()):
        one_line_error(cli(home, "restore", str(bad), *args), message if args else "not empty")
        assert tree(home) == before
    fresh = tmp_path / "fresh"
    one_line_error(cli(fresh, "restore", str(bad)), message)
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz", "existing"]


def test_a_full_disk_during_backup_leaves_nothing_behind(built: Built, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = built.env_for(home)
    ok(phlo(env, "restore", str(built.backup)))
    # Room for the cut's copy of the run store (the largest file it writes), not for the archive.
    store, archive = (home / "runs.sqlite").stat().st_size, built.backup.stat().st_size
    assert store + 8192 < archive
    limit = (store + archive) // 2

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "out"
    out.mkdir()
    before = tree(home / "lake")
    result = phlo(env, "backup", str(out / "b.tar.gz"), preexec=small_disk)
    one_line_error(result, "cannot write the backup")
    assert "File too large" in result.stderr
    assert list(out.iterdir()) == []  # no partial file
    assert not list(home.glob(".backup-cut-*"))
    assert tree(home / "lake") == before
    ok(phlo(env, "backup", str(out / "b.tar.gz")))  # with room, the same backup works


def test_restore_into_a_place_without_permission(built: Built, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "keep.txt").write_text("x")
    locked.chmod(0o500)
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        # root passes permission checks; without these capabilities it meets them like anyone.
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")
    try:
        for target in (locked / "home", locked / "deeper" / "home"):
            result = phlo(built.env_for(target), "restore", str(built.backup), prefix=prefix)
            one_line_error(result, f"cannot restore into {target}")
            assert "Permission denied" in result.stderr
        assert sorted(p.name for p in locked.iterdir()) == ["keep.txt"]
    finally:
        locked.chmod(0o700)


def wait_for(predicate: Callable[[], bool], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The command line in this process (each subprocess costs seconds of imports), on a given home."""
    from phlo_tui.cli import main

    def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
        monkeypatch.setenv("PHLO_HOME", str(home))
        monkeypatch.setenv("PHLO_TIMEZONE", "UTC")
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def test_export_parquet_and_csv_hold_what_sql_reads(
    built: Built, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    import duckdb

    table = "silver.fct_glucose_readings"
    columns = "count(*) as n, sum(hash(entry_id, reading_ts)::hugeint) as h"
    for branch in ("main", "dev"):
        out = tmp_path / f"{branch}.parquet"
        ok(cli(built.home, "export", table, "--format", "parquet", "--out", str(out), "--branch", branch))
        want = json.loads(
            ok(cli(built.home, "sql", f"select {columns} from {table}", "--branch", branch, "--json"))
        )
        got = duckdb.sql(f"select {columns} from read_parquet('{out}')").fetchall()
        assert [(want[0]["n"], int(want[0]["h"]))] == [(got[0][0], int(got[0][1]))]
    days = json.loads(
        ok(
            cli(
                built.home,
                "sql",
                "select min(reading_date) as d from gold.fct_daily_glucose_metrics",
                "--json",
            )
        )
    )
    first = days[0]["d"]
    csv = tmp_path / "first-day.csv"
    ok(
        cli(
            built.home,
            "export",
            "gold.fct_daily_glucose_metrics",
            "--format",
            "csv",
            "--out",
            str(csv),
            "--since",
            first,
            "--until",
            first,
        )
    )
    rows = duckdb.sql(f"select reading_date::varchar from read_csv('{csv}')").fetchall()
    assert rows == [(first,)]


def test_export_refusals_are_one_line(
    built: Built, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    out = str(tmp_path / "x.csv")
    one_line_error(
        cli(built.home, "export", "raw.nope", "--format", "csv", "--out", out), "no lake table raw.nope"
    )
    one_line_error(
        cli(built.home, "export", "entries", "--format", "csv", "--out", out), "cannot export entries"
    )
    one_line_error(
        cli(built.home, "export", "raw.glucose_entries", "--format", "csv", "--out", out, "--since", "May 1"),
        "is not a date",
    )
    one_line_error(
        cli(
            built.home,
            "export",
            "raw.glucose_entries",
            "--format",
            "csv",
            "--out",
            str(tmp_path / "no" / "x"),
        ),
        "does not exist",
    )
    assert list(tmp_path.iterdir()) == []


def test_nightscout_export_round_trips_through_import(
    built: Built, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    from schemas.raw import SOURCE_KEYS

    out = tmp_path / "entries.json"
    ok(cli(built.home, "export", "entries", "--format", "nightscout", "--out", str(out)))
    entries = json.loads(out.read_text())
    api_fields = {keys[0] for keys in SOURCE_KEYS.values()}
    assert entries and all(set(e) <= api_fields for e in entries)
    # What a site's POST /api/v1/entries keeps: an ObjectId `_id`, `date` in epoch ms, the type.
    assert all(len(e["_id"]) == 24 and int(e["_id"], 16) >= 0 for e in entries)
    assert all(isinstance(e["date"], int) and e["type"] == "sgv" for e in entries)
    assert [e["date"] for e in entries] == sorted(e["date"] for e in entries)
    fresh = tmp_path / "fresh"
    ok(cli(fresh, "import", str(out)))
    stored = (
        "select count(*) as n, sum(hash(_id, type, date, date_string, sys_time, utc_offset, sgv, direction, "
        "trend, noise, filtered, unfiltered, rssi, device)::hugeint)::varchar as h from raw.glucose_entries"
    )
    assert json.loads(ok(cli(fresh, "sql", stored, "--json"))) == json.loads(
        ok(cli(built.home, "sql", stored, "--json"))
    )


DUCKDB_READER = """
import duckdb, glob, json, os, sys
ext = glob.glob(os.path.join(os.path.dirname(duckdb.__file__), "..", "duckdb_ext", "extensions", "*", "*"))[0]
con = duckdb.connect(config={"extension_directory": sys.argv[2], "autoinstall_known_extensions": False})
for name in ("avro", "iceberg"):
    con.execute(f"INSTALL '{os.path.join(ext, name + '.duckdb_extension')}'")
    con.execute(f"LOAD {name}")
tables = json.load(open(sys.argv[1]))["tables"]
print(json.dumps({t["table"]: con.sql("select count(*) from iceberg_scan(?)", params=[t["metadata_file"]]).fetchone()[0] for t in tables}))
"""


def test_duckdb_reads_every_table_of_a_restored_home_with_iceberg_scan(built: Built, tmp_path: Path) -> None:
    """DuckDB's own Iceberg extension, from PyPI in a throwaway virtualenv, on the metadata files
    `tables` names: each count equals `sql` on main (a restored home: the paths were moved)."""
    venv = tmp_path / "venv"
    uv = shutil.which("uv")
    setup = (
        [[uv, "venv", "-q", str(venv), "--python", sys.executable]]
        if uv
        else [[sys.executable, "-m", "venv", str(venv)]]
    )
    install = ["duckdb==1.4.4", "duckdb-ext-iceberg", "duckdb-ext-avro"]
    setup.append(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *install]
        if uv
        else [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *install]
    )
    for argv in setup:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.skip(
                f"cannot install DuckDB from PyPI ({' '.join(argv[:2])}): {result.stderr.strip()[-200:]}"
            )
    home = tmp_path / "restored"
    env = built.env_for(home)
    ok(phlo(env, "restore", str(built.backup)))
    listing = tmp_path / "tables.json"
    listing.write_text(ok(phlo(env, "tables", "--json")))
    tables = json.loads(listing.read_text())["tables"]
    assert all(t["metadata_file"].startswith(f"{home}/") for t in tables)
    read = subprocess.run(
        [str(venv / "bin" / "python"), "-c", DUCKDB_READER, str(listing), str(tmp_path / "ext")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert read.returncode == 0, read.stderr
    counts = json.loads(read.stdout)
    union = " union all ".join(f"select '{t['table']}' as t, count(*) as n from {t['table']}" for t in tables)
    want = {r["t"]: r["n"] for r in json.loads(ok(phlo(env, "sql", union, "--json")))}
    assert counts == want == {t["table"]: t["rows"] for t in tables}
    assert len(counts) >= len(TABLES)
