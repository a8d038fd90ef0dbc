"""The tables each model reads, remembered by the SQL's content: parsing the ten models with sqlglot
(and importing it) is about a second of every fresh process that runs the pipeline, for an answer that
changes only when a model's file does.

The memory is a JSON file in the home (`model-references.json`): SHA-256 of a model's SQL -> the
qualified tables it reads, as engine.transform.models.table_references gave them. A missing, unreadable
or foreign file is parsed again; one that cannot be written (a read-only home) is simply not kept."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT = 1
"""Bumped when what a model's entry means changes: older files are then parsed again."""


def sql_key(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


def read_references(path: Path | None) -> dict[str, tuple[str, ...]]:
    """SQL key -> tables read, from `path`; empty when there is none or it is not ours."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), dict):
        return {}
    return {
        str(key): tuple(str(t) for t in refs)
        for key, refs in data["models"].items()
        if isinstance(refs, list) and all(isinstance(t, str) for t in refs)
    }


def write_references(path: Path | None, references: dict[str, tuple[str, ...]]) -> None:
    """Keep `references` in `path` (a temporary file renamed over it); a failure is logged, never raised."""
    if path is None:
        return
    text = json.dumps({"format": FORMAT, "models": {k: list(v) for k, v in sorted(references.items())}})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        log.debug("cannot keep the models' table references in %s: %s", path, e)
