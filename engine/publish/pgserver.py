"""The PostgreSQL server on this machine, for the private cluster: finding its binaries, the user it
runs as (`postgres` when we are root), a child that dies with its parent, and a free port."""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.errors import PhloError

SERVER_USER_WHEN_ROOT = "postgres"
SEARCH_GLOBS = ("/usr/lib/postgresql/*/bin",)
PR_SET_PDEATHSIG = 1

# SIGTERM is a smart shutdown for PostgreSQL: it waits for every client (PostgREST, a psql left
# open) to disconnect, possibly forever. SIGINT is its fast shutdown: clients are cut, the
# server stops cleanly at once.
STOP_SIGNAL = signal.SIGINT

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


class ClusterError(PhloError):
    """The private PostgreSQL cluster could not be created, started or stopped."""


def find_server_binaries(globs: tuple[str, ...] = SEARCH_GLOBS, path: str | None = None) -> Path | None:
    """The directory holding `postgres` and `initdb`: the newest /usr/lib/postgresql/N/bin, else PATH."""

    def version(bindir: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", bindir)) or (0,)

    candidates = sorted((d for g in globs for d in glob.glob(g)), key=version, reverse=True)
    for directory in candidates:
        if _is_server_bindir(Path(directory)):
            return Path(directory)
    found = shutil.which("postgres", path=path)
    if found is None:
        return None
    for candidate in (Path(found).parent, Path(found).resolve().parent):
        if _is_server_bindir(candidate):
            return candidate
    return None


def _is_server_bindir(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in ("postgres", "initdb"))


def _die_with_parent(parent: int) -> None:
    """preexec_fn of the postmaster: get STOP_SIGNAL when the thread that started it ends.

    Runs after Popen has switched user: changing credentials clears the parent-death signal.
    """
    if _libc is not None and _libc.prctl(PR_SET_PDEATHSIG, int(STOP_SIGNAL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the app died before the signal was armed
        os.kill(os.getpid(), STOP_SIGNAL)


@dataclass(frozen=True)
class ServerUser:
    """Who the server runs as: the app's own user, or `postgres` when the app runs as root."""

    name: str
    uid: int
    gid: int

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()


def server_user() -> ServerUser:
    """Raises ClusterError when running as root and there is no `postgres` user to run the server."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    try:
        entry = pwd.getpwnam(SERVER_USER_WHEN_ROOT)
    except KeyError:
        raise ClusterError(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as",
            "create a system user `postgres`, run phlo-tui as another user, or set PHLO_POSTGRES_DSN",
        ) from None
    return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
