"""The writer lock: only one process writes a home's lake at a time; the kernel frees it if the holder dies."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from engine.errors import LeaseHeldError


class WriterLock:
    """An exclusive `flock` on `<home>/writer.lock`, which also names its holder for the error message."""

    def __init__(self, home: Path) -> None:
        self.path = home / "writer.lock"
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def holder(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text()
            return dict(json.loads(text)) if text.strip() else None
        except (OSError, ValueError):
            return None

    def acquire(self, role: str) -> None:
        """Take the lock or raise LeaseHeldError naming the process that has it."""
        if self._fh is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the lock
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            who = self.holder() or {}
            raise LeaseHeldError(
                f"another phlo-tui process is writing {self.path.parent}: "
                f"{who.get('role', 'unknown')} pid {who.get('pid', '?')} on {who.get('host', '?')} "
                f"since {who.get('since', '?')}",
                "wait for it to finish, or stop it first",
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(
            json.dumps(
                {
                    "role": role,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
        )
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is None:
            return
        self._fh.seek(0)
        self._fh.truncate()
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None
