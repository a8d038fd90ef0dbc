"""How a `phlo-tui` command's process ends once the command is done: what the interpreter's own shutdown
does that matters, then `os._exit`, without the ~0.6 s that shutdown spends tearing down modules and
collecting the heap a run leaves (pyiceberg, pandas, DuckDB, Arrow).

What still happens, in the interpreter's order (Python/pylifecycle.c, Py_FinalizeEx):
1. `threading._shutdown`: the threads' exit hooks (concurrent.futures joins its idle pool workers) and a
   join of every non-daemon thread, as at any exit;
2. every `atexit` handler, last registered first: the prefetch child's reaping (engine.ingest.prefetch),
   `logging.shutdown` (handlers flushed and closed), `weakref.finalize` callbacks (temporary directories);
3. every SQLite and DuckDB connection still open is closed, as the heap's teardown would close it: SQLite
   then checkpoints and removes the write-ahead log (the lake's catalog keeps one open), DuckDB its own;
4. stdout and stderr flushed; when the reader of a pipe has gone (`| head -2`) the rest is dropped
   quietly and the exit code is 141 (128 + SIGPIPE), as a process killed by SIGPIPE reports.

The private PostgreSQL is not an exit handler: the command's `Engine` stops it when it closes, before this.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
from typing import NoReturn

EXIT_BROKEN_PIPE = 128 + 13


def end_process(code: int) -> NoReturn:
    """End this process with `code` (or 141 when stdout's reader has gone) after the steps above."""
    shutdown_threads = getattr(threading, "_shutdown", None)
    if shutdown_threads is not None:
        shutdown_threads()
    atexit._run_exitfuncs()
    close_databases()
    code = flush_std_streams(code)
    os._exit(code)


def close_databases() -> None:
    """Close every SQLite and DuckDB connection the process still holds (never raises).

    Found as the referrers of their types: an instance of a heap type visits its type when the
    collector traverses it (the C API's rule since Python 3.9), so one pass in C finds them, where
    walking `gc.get_objects()` in Python costs several times as long on a run's heap."""
    kinds: list[type] = []
    for module, name in (("sqlite3", "Connection"), ("duckdb", "DuckDBPyConnection")):
        kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type):
            kinds.extend(_with_subclasses(kind))
    if not kinds:
        return
    for obj in gc.get_referrers(*kinds):
        if isinstance(obj, tuple(kinds)):
            with contextlib.suppress(Exception):
                obj.close()


def flush_std_streams(code: int) -> int:
    """Flush stdout and stderr; the exit code to report (141 instead of 0 when stdout's reader has gone)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except BrokenPipeError:
            if stream is sys.stdout and code == 0:
                code = EXIT_BROKEN_PIPE
        except (OSError, ValueError):
            pass
    return code


def _with_subclasses(kind: type) -> list[type]:
    found = [kind]
    for sub in kind.__subclasses__():
        found.extend(_with_subclasses(sub))
    return found
