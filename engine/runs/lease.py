"""The writer lease: one process writes a home's lake at a time, and everyone can see who and whether alive.

Two layers: an exclusive `flock` on `<home>/writer.lock` fences writers on this machine (the kernel
frees it the moment its holder dies, even by kill -9), and a lease row in the run store names the
holder, its pid, host and heartbeat, for status and for attaching to a running daemon.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from engine.errors import LeaseHeldError
from engine.runs.database import utcnow
from engine.runs.records import LeaseRecord
from engine.runs.store import RunStore

HEARTBEAT_EVERY_S = 5.0
LEASE_TIMEOUT = timedelta(seconds=60)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_daemon(store: RunStore) -> LeaseRecord | None:
    """The lease of a running daemon on this home, or None (no daemon, or its heartbeat stopped)."""
    lease = store.lease()
    if lease is None or lease.role != "daemon":
        return None
    if utcnow() - lease.heartbeat_at > LEASE_TIMEOUT:
        return None
    if lease.host == socket.gethostname() and not pid_alive(lease.pid):
        return None
    return lease


class WriterLock:
    """Held by the process that writes the lake; a heartbeat thread keeps the lease row fresh."""

    def __init__(self, home: Path, store: RunStore) -> None:
        self.path = home / "writer.lock"
        self.store = store
        self.host = socket.gethostname()
        self._fh: IO[str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.next_run_at: datetime | None = None
        self.lost = threading.Event()
        """Set when another process took the lease over: stop writing."""

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self, role: str) -> LeaseRecord:
        """Take the lock and the lease, or raise LeaseHeldError naming the process that has them."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fh = open(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), "a+")  # noqa: SIM115 - held for the lock's life
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            lease = self.store.lease()
            who = (
                f"a {lease.role} (pid {lease.pid} on {lease.host}, since {lease.acquired_at:%Y-%m-%d %H:%M:%S})"
                if lease is not None
                else "another phlo-tui process"
            )
            raise LeaseHeldError(
                f"{self.path.parent} is being written by {who}",
                "wait for it to finish or stop it; a running daemon takes commands from `phlo-tui run`",
            ) from None
        try:
            # The flock is ours, so a holder recorded on this host is dead; one on another host
            # (a home on a shared disk) is trusted until its heartbeat is stale.
            current = self.store.lease()
            alive_elsewhere = current is not None and current.host != self.host
            lease = self.store.take_lease(
                role, os.getpid(), self.host, stale_after=LEASE_TIMEOUT, holder_alive=alive_elsewhere
            )
        except BaseException:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()
            raise
        self._fh = fh
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="phlo-lease-heartbeat", daemon=True)
        self._thread.start()
        return lease

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            try:
                if not self.store.heartbeat(os.getpid(), self.host, self.next_run_at):
                    self.lost.set()
                    return
            except Exception:  # a busy or briefly unreadable store: try again at the next beat
                continue

    def beat_now(self) -> None:
        if self.held:
            self.store.heartbeat(os.getpid(), self.host, self.next_run_at)

    def release(self) -> None:
        if self._fh is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.store.release_lease(os.getpid(), self.host)
        finally:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
