"""The private PostgreSQL cluster the app runs as its own child under PHLO_HOME/postgres when no DSN is set."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.publish.pgserver import (
    STOP_SIGNAL,
    ClusterError,
    ServerUser,
    _die_with_parent,
    _port_free,
    server_user,
)

log = logging.getLogger(__name__)

DATABASE = "phlo"
SUPERUSER = "phlo"
# sun_path holds 108 bytes with the terminating NUL; the socket file is `.s.PGSQL.<port>`.
SOCKET_PATH_MAX = 107
SOCKET_FILE_LONGEST = ".s.PGSQL.65535"
# As root the server runs as `postgres`, which cannot pass the 0700 home (nor /root); its data
# then lives here, one directory per home, and PHLO_HOME/postgres/cluster links to it.
ROOT_CLUSTERS = Path("/var/lib/phlo-tui")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
LOG_MAX_BYTES = 10 * 1024 * 1024


class PrivateCluster:
    """One PostgreSQL cluster per phlo home, started on demand as a child that dies with the app.

    Files in `home_dir` (PHLO_HOME/postgres): `data/` (or, as root, a link `cluster` to the data's
    parent under /var/lib/phlo-tui), `run/` (the Unix socket), `port`, `password` (of the
    superuser `phlo`, for loopback TCP; the socket needs none and only the app's user reaches it),
    `postgres.log`, `lock`.
    """

    def __init__(self, home_dir: Path, bindir: Path) -> None:
        self.home_dir = Path(home_dir).absolute()
        self.bindir = bindir
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    # -- layout ----------------------------------------------------------------------------------

    @property
    def cluster_dir(self) -> Path:
        """Where the server's own files live: home_dir, or outside the home when running as root."""
        if os.geteuid() != 0:
            return self.home_dir
        digest = hashlib.sha256(str(self.home_dir.resolve()).encode()).hexdigest()[:12]
        return ROOT_CLUSTERS / f"postgres-{digest}"

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def socket_dir(self) -> Path:
        """A directory whose socket path fits the 107-byte limit: run/ beside the data, else /tmp."""
        preferred = self.cluster_dir / "run"
        if len(os.fsencode(preferred / SOCKET_FILE_LONGEST)) <= SOCKET_PATH_MAX:
            return preferred
        digest = hashlib.sha256(str(self.cluster_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"phlo-pg-{digest}"

    @property
    def password_file(self) -> Path:
        return self.home_dir / "password"

    @property
    def log_file(self) -> Path:
        return self.home_dir / "postgres.log"

    @property
    def port(self) -> int | None:
        try:
            return int((self.home_dir / "port").read_text().strip())
        except (OSError, ValueError):
            return None

    def conninfo(self) -> str:
        """libpq connection string over the Unix socket (no password needed there)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(host=str(self.socket_dir), port=str(self.port), dbname=DATABASE, user=SUPERUSER)

    # -- state -----------------------------------------------------------------------------------

    @property
    def started_here(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def running_pid(self) -> int | None:
        """The postmaster's pid when one serves this data directory and reports itself ready."""
        fields = self._pid_file()
        if fields is None or len(fields) < 8 or fields[7].strip() != "ready":
            return None
        try:
            pid = int(fields[0])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            return None
        except PermissionError:
            pass  # alive, owned by the server user
        # A server killed with -9 leaves its pid file; the pid may since belong to another program.
        if Path("/proc/self").exists():
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                return None
            if name not in ("postgres", "postmaster"):
                return None
        return pid

    def _pid_file(self) -> list[str] | None:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return None

    def describe(self) -> dict[str, Any]:
        """JSON-safe picture for `status --json`; never the password itself."""
        pid = self.running_pid()
        return {
            "kind": "managed",
            "bindir": str(self.bindir),
            "data_dir": str(self.data_dir),
            "socket_dir": str(self.socket_dir),
            "host": "127.0.0.1",
            "port": self.port,
            "database": DATABASE,
            "user": SUPERUSER,
            "password_file": str(self.password_file),
            "initialized": (self.data_dir / "PG_VERSION").exists(),
            "running": pid is not None,
            "pid": pid,
            "started_by_this_process": self.started_here,
        }

    # -- lifecycle -------------------------------------------------------------------------------

    def ensure_running(self) -> None:
        """initdb on first use, then start the server unless one (ours or another process's) is ready.

        Raises ClusterError with the server's log tail when it cannot be created or started.
        """
        with self._lock:
            if self.started_here:
                return
            with self._file_lock():
                if self.running_pid() is not None:
                    return
                user = server_user()
                self._prepare_dirs(user)
                if not (self.data_dir / "PG_VERSION").exists():
                    self._initdb(user)
                self._start(user)
                self._ensure_database()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the server if this process started it (fast shutdown); a server of another process stays."""
        with self._lock:
            proc = self._proc
            self._proc = None
            if proc is None or proc.poll() is not None:
                return
            proc.send_signal(STOP_SIGNAL)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("private PostgreSQL did not stop in %.0f s; sending SIGQUIT", timeout)
                proc.send_signal(signal.SIGQUIT)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def remove(self, timeout: float = STOP_TIMEOUT_S) -> list[Path]:
        """Stop the server (started here or left running by another process) and delete the cluster:
        its data (as root under /var/lib/phlo-tui), a socket directory outside it, and home_dir.

        Returns the paths deleted (none when there was no cluster). The caller makes sure no other
        process publishes to it meanwhile (the writer lease). Raises ClusterError when the server
        does not stop or a path cannot be deleted.
        """
        self.stop(timeout)
        paths = list(dict.fromkeys((self.cluster_dir, self.socket_dir, self.home_dir)))
        if not any(p.exists() or p.is_symlink() for p in paths):
            return []
        with self._lock, self._file_lock():
            pid = self.running_pid()
            if pid is not None:
                self._stop_other(pid, timeout)
            removed = []
            for path in paths:
                if not path.exists() and not path.is_symlink():
                    continue
                try:
                    shutil.rmtree(path)
                except OSError as e:
                    raise ClusterError(
                        f"cannot delete {path} of the private PostgreSQL: {e.strerror}",
                        "check its permissions and delete it by hand",
                    ) from e
                removed.append(path)
        if removed:
            log.info("private PostgreSQL removed: %s", ", ".join(map(str, removed)))
        return removed

    def _stop_other(self, pid: int, timeout: float) -> None:
        """Fast shutdown of a postmaster this process did not start; wait for it to be gone."""
        try:
            os.kill(pid, STOP_SIGNAL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running_pid() is None and not (self.data_dir / "postmaster.pid").exists():
                return
            time.sleep(0.05)
        raise ClusterError(
            f"the private PostgreSQL (pid {pid}) did not stop in {timeout:.0f} s",
            "stop the process that uses it (phlo-tui, a psql) and try again",
        )

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Serialises initdb and start between processes sharing the home."""
        self.home_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.home_dir / "lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _prepare_dirs(self, user: ServerUser) -> None:
        try:
            self.home_dir.chmod(0o700)
            if not user.is_self:
                ROOT_CLUSTERS.mkdir(parents=True, exist_ok=True)
                ROOT_CLUSTERS.chmod(0o711)
                self._private_dir(self.cluster_dir, user)
                link = self.home_dir / "cluster"
                if not link.is_symlink():
                    link.symlink_to(self.cluster_dir, target_is_directory=True)
            self._private_dir(self.socket_dir, user)
        except OSError as e:
            raise ClusterError(
                f"cannot prepare the directories of the private PostgreSQL: {e}",
                "check the permissions and free space, or set PHLO_POSTGRES_DSN",
            ) from e

    def _private_dir(self, path: Path, user: ServerUser) -> None:
        """Create `path` 0700 for the server user, or accept it only when it already is exactly that."""
        try:
            path.mkdir(mode=0o700)
            os.chown(path, user.uid, user.gid)
        except FileExistsError:
            pass
        except OSError as e:
            raise ClusterError(
                f"cannot create {path} for the private PostgreSQL: {e.strerror}",
                "check the permissions of its parent, or set PHLO_POSTGRES_DSN",
            ) from e
        st = path.lstat()
        if not path.is_dir() or path.is_symlink() or st.st_uid != user.uid or st.st_mode & 0o077:
            raise ClusterError(
                f"{path} exists but is not a private directory of user {user.name}",
                "remove it (another user may have created it) and try again",
            )

    def _initdb(self, user: ServerUser) -> None:
        """initdb into a scratch directory renamed into place, so an interrupted initdb is redone."""
        scratch = self.cluster_dir / "data.init"
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(mode=0o700)
        os.chown(scratch, user.uid, user.gid)
        password = secrets.token_urlsafe(24)
        # initdb reads the password from a file of the server user's, removed right after.
        pwfile = self.cluster_dir / "initdb.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        os.chown(pwfile, user.uid, user.gid)
        argv = [
            str(self.bindir / "initdb"),
            "-D",
            str(scratch),
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-instructions",
        ]
        log.info("initdb of the private PostgreSQL in %s", self.data_dir)
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                cwd=self.cluster_dir,
                user=user.uid,
                group=user.gid,
                extra_groups=[] if not user.is_self else None,
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise ClusterError(
                f"initdb of the private PostgreSQL in {self.data_dir} failed: "
                + done.stderr.decode(errors="replace").strip()[-500:],
                "check the disk and the PostgreSQL installation, or set PHLO_POSTGRES_DSN",
            )
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        scratch.rename(self.data_dir)

    def _start(self, user: ServerUser) -> None:
        for _ in range(3):
            port = self._choose_port()
            proc = self._spawn(user, port)
            if self._wait_ready(proc):
                self._proc = proc
                log.info("private PostgreSQL started (pid %s, port %s)", proc.pid, port)
                return
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if "could not bind" not in self._log_tail():
                break  # anything but a lost race for the port is not worth another try
        raise ClusterError(
            f"the private PostgreSQL in {self.data_dir} did not start: {self._log_tail()}",
            f"see {self.log_file}; or set PHLO_POSTGRES_DSN to use another server",
        )

    def _choose_port(self) -> int:
        """The remembered port when it is free, else a new free loopback port (remembered)."""
        port = self.port
        if port is None or not _port_free(port):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
            (self.home_dir / "port").write_text(f"{port}\n")
        return port

    def _spawn(self, user: ServerUser, port: int) -> subprocess.Popen[bytes]:
        """Start the postmaster from a thread that lives exactly as long as it does.

        The parent-death signal fires when the *thread* that forked the child ends, so the fork
        cannot happen in a short-lived worker thread; this keeper thread waits for (and reaps) it.
        """
        if self.log_file.exists() and self.log_file.stat().st_size > LOG_MAX_BYTES:
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
        argv = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(port),
            "-k",
            str(self.socket_dir),
            "-h",
            "127.0.0.1",
            "-c",
            "unix_socket_permissions=0700",
            "-c",
            "max_connections=30",
            "-c",
            "shared_buffers=32MB",
            "-c",
            "logging_collector=off",
        ]
        started: list[subprocess.Popen[bytes] | BaseException] = []
        ready = threading.Event()
        parent = os.getpid()

        def keeper() -> None:
            try:
                with self.log_file.open("ab") as log_fh:
                    proc = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log_fh,
                        stderr=subprocess.STDOUT,
                        cwd=self.cluster_dir,
                        user=user.uid,
                        group=user.gid,
                        extra_groups=[] if not user.is_self else None,
                        start_new_session=True,
                        preexec_fn=lambda: _die_with_parent(parent),
                    )
            except BaseException as e:
                started.append(e)
                ready.set()
                return
            started.append(proc)
            ready.set()
            proc.wait()

        threading.Thread(target=keeper, name="phlo-postgres-keeper", daemon=True).start()
        ready.wait()
        outcome = started[0]
        if isinstance(outcome, BaseException):
            raise ClusterError(
                f"cannot start {argv[0]}: {outcome}", "check the PostgreSQL installation"
            ) from outcome
        return outcome

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            fields = self._pid_file()
            if (
                fields
                and len(fields) >= 8
                and fields[0].strip() == str(proc.pid)
                and fields[7].strip() == "ready"
            ):
                return True
            time.sleep(0.02)
        return False

    def _ensure_database(self) -> None:
        # psycopg here, not at the top: `status` describes the cluster without loading the driver.
        import psycopg
        from psycopg import sql
        from psycopg.conninfo import make_conninfo

        admin = make_conninfo(self.conninfo(), dbname="postgres")
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=10) as con:
                exists = con.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone()
                if exists is None:
                    con.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
        except psycopg.Error as e:
            raise ClusterError(
                f"cannot create database {DATABASE!r} in the private PostgreSQL: {e}",
                f"see {self.log_file}",
            ) from e

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])
