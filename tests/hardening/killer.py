"""Runs `phlo-tui` commands in forked children and SIGKILLs a child at a chosen point, as a power cut would.

A zygote: it imports the engine once, then reads one JSON request per line on stdin and answers with
one JSON line on stdout, so each killed run costs a fork instead of a fresh interpreter. A request:

    {"argv": ["backfill", "--since", "2026-01-01"], "env": {...}, "out": "/path/log",
     "when": "enter" | "leave" | "commit" | "call" | "none", "target": "merge"}

`enter` kills inside step `target` (`merge`, or `merge@treatments` for one source's step) right after
its start is recorded; `leave` kills after the step's
work is done, before its end is recorded; `commit` kills an Iceberg commit of a table whose metadata
path contains `target`, after the new metadata file is written and before the catalog points at it;
`call` kills on entering the Nth call of a `Lake` method (`set_branch:3`: a promotion half done).
The answer is `{"status": N}`: the exit code, or -9 when the child was killed. No product code is
changed: the patches are installed in the child only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

# Imported once here and shared by every forked child: a child pays for its run, not its imports.
import dlt  # noqa: F401
import pandera.pandas  # noqa: F401
import psycopg  # noqa: F401
import pyiceberg.table  # noqa: F401
import sqlglot  # noqa: F401

import phlo_tui.cli
import schemas  # noqa: F401
from engine.runs.records import StepHandle
from engine.runs.store import RunStore


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _patch(when: str, target: str) -> None:
    if when in ("enter", "leave"):
        original = RunStore.step
        step_name, _, source = target.partition("@")

        def matches(name: str, detail: dict[str, Any] | None) -> bool:
            return name == step_name and (not source or (detail or {}).get("source") == source)

        @contextlib.contextmanager
        def step(
            self: RunStore, run_id: str, name: str, detail: dict[str, Any] | None = None
        ) -> Iterator[StepHandle]:
            with original(self, run_id, name, detail) as handle:
                if when == "enter" and matches(name, detail):
                    _die()
                yield handle
                if when == "leave" and matches(name, detail):
                    _die()

        RunStore.step = step  # type: ignore[method-assign]
    elif when == "commit":
        from pyiceberg.catalog import MetastoreCatalog

        write = MetastoreCatalog._write_metadata

        def write_then_die(metadata: Any, io: Any, metadata_path: str) -> None:
            write(metadata, io, metadata_path)
            if target in metadata_path:
                _die()

        MetastoreCatalog._write_metadata = staticmethod(write_then_die)  # type: ignore[method-assign]
    elif when == "call":
        from engine.lake.store import Lake

        method, _, nth = target.partition(":")
        original_method = getattr(Lake, method)
        calls = 0

        def die_on_nth(self: Lake, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == int(nth):
                _die()
            return original_method(self, *args, **kwargs)

        setattr(Lake, method, die_on_nth)


def _child(request: dict[str, Any]) -> None:
    os.environ.clear()
    os.environ.update(request["env"])
    out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    _patch(request.get("when", "none"), request.get("target", ""))
    code = 1
    try:
        code = phlo_tui.cli.main(request["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"status": code}), flush=True)


if __name__ == "__main__":
    main()
