"""A throwaway PostgreSQL for the tests: initdb into a temp dir, a free loopback port, `postgres` when root."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

PUBLISHER = "phlo_publisher"
DATABASE = "lakehouse"


def server_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin, else the directory of `postgres` on PATH; None without one."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name), reverse=True
    )
    on_path = shutil.which("postgres")
    for directory in [*found, *([str(Path(on_path).parent)] if on_path else [])]:
        if all(os.access(Path(directory) / name, os.X_OK) for name in ("postgres", "initdb")):
            return Path(directory)
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgServer:
    """initdb + postgres as a child of the test process; `stop()` and `start()` may be called repeatedly.

    Trust authentication on the socket and on 127.0.0.1 only; fsync off (throwaway data). Under
    /tmp, not pytest's tmp_path: as root the server runs as `postgres`, which cannot pass the
    0700 /tmp/pytest-of-root.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="phlo-pgtest-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = free_port()
        self._user: pwd.struct_passwd | None = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        self.proc: subprocess.Popen[bytes] | None = None
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )

    def _as_server_user(self) -> dict[str, object]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _run(self, argv: list[str]) -> None:
        subprocess.run(argv, check=True, capture_output=True, cwd=self.root, **self._as_server_user())  # type: ignore[call-overload]

    def start(self) -> PgServer:
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-h",
                "127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=60",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            **self._as_server_user(),
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            try:
                lines = (self.data / "postmaster.pid").read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[0] == str(self.proc.pid) and lines[7].strip() == "ready":
                return self
            time.sleep(0.02)
        raise AssertionError(
            "test PostgreSQL did not start: " + (self.root / "server.log").read_text()[-2000:]
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, user: str = "postgres", dbname: str = "postgres", **extra: str) -> str:
        return make_conninfo(host="127.0.0.1", port=str(self.port), user=user, dbname=dbname, **extra)

    def create_database(self, name: str, owner: str = PUBLISHER) -> str:
        """A fresh database owned by a login role that may create roles (the publishing role); its DSN."""
        with psycopg.connect(self.dsn(), autocommit=True) as con:
            if con.execute("select 1 from pg_roles where rolname = %s", (owner,)).fetchone() is None:
                con.execute(sql.SQL("create role {} login createrole").format(sql.Identifier(owner)))
            con.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            con.execute(
                sql.SQL("create database {} owner {}").format(sql.Identifier(name), sql.Identifier(owner))
            )
        return self.dsn(user=owner, dbname=name)
