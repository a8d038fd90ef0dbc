"""A function run in a forked child process while this process does other work: `phlo-tui report` reads
the period there (DuckDB's import and the reads) while it imports matplotlib, on the machine's second core.
Python threads cannot do that: both halves are mostly Python and would take turns holding the GIL.

Only for a process that has started no threads yet (a fork copies only the thread that calls it): the
command line, never the dashboard.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import traceback
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def can_fork() -> bool:
    """Whether a forked child is safe here: on Linux and the BSDs (macOS's system libraries may not
    survive a fork), and only while this process runs a single thread."""
    import threading

    return (
        hasattr(os, "fork")
        and sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd"))
        and threading.active_count() == 1
    )


class ForkedCall(Generic[T]):
    """`function()` running in a forked child from construction; `result()` waits for it and returns its
    value or raises its exception (pickled back through a pipe), `cancel()` ends it unread."""

    def __init__(self, function: Callable[[], T]) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_end)
            _child(function, write_end)
        os.close(write_end)
        self._pid: int | None = pid
        self._pipe = read_end

    def result(self) -> T:
        if self._pid is None:
            raise RuntimeError("the forked call was already read or cancelled")
        chunks = []
        try:
            while chunk := os.read(self._pipe, 1 << 20):
                chunks.append(chunk)
        finally:
            self._reap()
        if not chunks:
            raise RuntimeError("the child process reading the report ended without an answer")
        ok, value = pickle.loads(b"".join(chunks))
        if not ok:
            raise value
        return value

    def cancel(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, 9)
            self._reap()

    def _reap(self) -> None:
        os.close(self._pipe)
        pid, self._pid = self._pid, None
        if pid is not None:
            os.waitpid(pid, 0)


def _child(function: Callable[[], T], pipe: int) -> None:
    """Run `function`, write (True, value) or (False, exception) to `pipe`, and leave at once: no exit
    handlers, no flushing of buffers the parent also holds."""
    code = 0
    try:
        try:
            payload = pickle.dumps((True, function()))
        except BaseException as e:
            try:
                payload = pickle.dumps((False, e))
                pickle.loads(payload)
            except Exception:  # an exception that does not survive pickling: its text does
                text = "".join(traceback.format_exception(e))
                payload = pickle.dumps((False, RuntimeError(f"reading the report failed:\n{text}")))
        view = memoryview(payload)
        while view:
            view = view[os.write(pipe, view) :]
    except BaseException:
        code = 1
    finally:
        os._exit(code)
