"""A lake table's branch heads, lineage, snapshot schemas and snapshot data files, read from its metadata.json
and Avro manifests with the standard library, as pyiceberg's TableMetadata and DataScan.plan_files give them.

For the command line's light reads (engine.api.fastread), which must not import pyiceberg. They answer only
what this module reads exactly as pyiceberg would; anything else (storage other than local files, delete
files, a type without a DuckDB column type here, a damaged file) raises Unreadable, and the caller asks the
engine, which reads with pyiceberg and says what is wrong.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from engine.lake.avro import AvroError, Fields, read_container
from engine.lake.views import Column

DUCKDB_TYPES = {
    "boolean": "BOOLEAN",
    "date": "DATE",
    "float": "FLOAT",
    "timestamp": "TIMESTAMP",
    "string": "VARCHAR",
    "long": "BIGINT",
    "int": "INTEGER",
    "double": "DOUBLE",
    "timestamptz": "TIMESTAMPTZ",
}
"""Iceberg type name -> DuckDB column type: the types of engine.lake.files._DUCKDB_TYPES, by the names
pyiceberg prints them with (and metadata.json spells them with)."""

_DELETED = 2
"""A manifest entry's status when its file left the table in that manifest's snapshot."""

_MANIFEST_LIST_FIELDS: Fields = {"manifest_path": None, "content": None}
_MANIFEST_FIELDS: Fields = {"status": None, "data_file": {"content": None, "file_path": None}}
"""What is read of a manifest list's and a manifest's records; the rest (partition summaries, column
statistics) is skipped undecoded."""


class Unreadable(Exception):
    """The table's metadata or manifests are not what this module reads: ask pyiceberg."""


def read_metadata(location: str) -> dict[str, Any]:
    """A table's metadata.json (gzipped or not), from a local path or file:// URI."""
    path = Path(_local(location))
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz.metadata.json"):
            raw = gzip.decompress(raw)
        metadata = json.loads(raw)
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise Unreadable(f"metadata at {location}: {type(e).__name__}: {e}") from None
    if not isinstance(metadata, dict):
        raise Unreadable(f"metadata at {location} is not an object")
    return metadata


def ref_snapshots(metadata: dict[str, Any]) -> dict[str, int]:
    """Ref name -> snapshot id as pyiceberg's TableMetadata.snapshot_by_name finds it (what Lake.snapshot_id
    gives): a table with a current snapshot and no ref `main` has main there; a ref to a snapshot that
    is not in the metadata has none."""
    refs = {name: int(ref["snapshot-id"]) for name, ref in (metadata.get("refs") or {}).items()}
    current = metadata.get("current-snapshot-id")
    if "main" not in refs and current is not None and int(current) != -1:
        refs["main"] = int(current)
    known = {int(s["snapshot-id"]) for s in metadata.get("snapshots") or []}
    return {name: snapshot_id for name, snapshot_id in refs.items() if snapshot_id in known}


def lineage(metadata: dict[str, Any], head: int) -> list[int]:
    """Snapshot `head` and its ancestors still in the metadata, newest first (pyiceberg's ancestors_of)."""
    snapshots = {int(s["snapshot-id"]): s for s in metadata.get("snapshots") or []}
    found: list[int] = []
    snapshot = snapshots.get(head)
    while snapshot is not None and len(found) <= len(snapshots):
        found.append(int(snapshot["snapshot-id"]))
        parent = snapshot.get("parent-snapshot-id")
        snapshot = snapshots.get(int(parent)) if parent is not None else None
    return found


def snapshot_schema(metadata: dict[str, Any], snapshot_id: int) -> dict[str, str]:
    """Column name -> Iceberg type name of the schema `snapshot_id` was written with (the current schema when
    the snapshot names none, or one the metadata lacks), in column order: Lake.snapshot_schema."""
    snapshot = _snapshot(metadata, snapshot_id)
    schemas = {int(s["schema-id"]): s for s in metadata.get("schemas") or []}
    current = schemas.get(int(metadata.get("current-schema-id", -1)))
    wanted = snapshot.get("schema-id")
    schema = schemas.get(int(wanted), current) if wanted is not None else current
    if schema is None:
        raise Unreadable(f"no schema for snapshot {snapshot_id}")
    columns = {}
    for field in schema.get("fields") or []:
        kind = field.get("type")
        if kind not in DUCKDB_TYPES:
            raise Unreadable(f"column {field.get('name')!r} has type {kind!r}")
        columns[str(field["name"])] = str(kind)
    return columns


def duckdb_columns(schema: dict[str, str]) -> list[Column]:
    """(name, DuckDB type) of a snapshot_schema: what a view over the snapshot's files selects."""
    return [(name, DUCKDB_TYPES[kind]) for name, kind in schema.items()]


def snapshot_files(
    metadata: dict[str, Any], snapshot_id: int, manifests: dict[str, list[str]] | None = None
) -> list[str]:
    """Paths of the data files of snapshot `snapshot_id`, in manifest order: the live entries (added or
    existing) of its data manifests, as Lake.snapshot_files gives them.

    `manifests` caches each manifest's live files by its path across calls (manifests never change, and
    the two heads of a branch share most of theirs). Raises Unreadable for delete manifests (the
    engine refuses merge-on-read deletes and says so) and for anything it cannot read.
    """
    cache = {} if manifests is None else manifests
    manifest_list = _snapshot(metadata, snapshot_id).get("manifest-list")
    if not isinstance(manifest_list, str):
        raise Unreadable(f"snapshot {snapshot_id} has no manifest list")
    files: list[str] = []
    for manifest in _avro_records(manifest_list, _MANIFEST_LIST_FIELDS):
        if int(manifest.get("content") or 0) != 0:
            raise Unreadable(f"snapshot {snapshot_id} has delete files")
        path = str(manifest["manifest_path"])
        if path not in cache:
            cache[path] = [
                _live_data_file(entry)
                for entry in _avro_records(path, _MANIFEST_FIELDS)
                if entry["status"] != _DELETED
            ]
        files.extend(cache[path])
    return files


def _live_data_file(entry: dict[str, Any]) -> str:
    data_file = entry["data_file"]
    if int(data_file.get("content") or 0) != 0:
        raise Unreadable("a data manifest lists a delete file")
    return _local(str(data_file["file_path"]))


def _avro_records(location: str, fields: Fields) -> list[dict[str, Any]]:
    try:
        _, records = read_container(Path(_local(location)).read_bytes(), fields)
    except (OSError, AvroError) as e:
        raise Unreadable(f"{location}: {type(e).__name__}: {e}") from None
    if not all(isinstance(r, dict) for r in records):
        raise Unreadable(f"{location} does not hold records")
    return records


def _snapshot(metadata: dict[str, Any], snapshot_id: int) -> dict[str, Any]:
    for snapshot in metadata.get("snapshots") or []:
        if int(snapshot["snapshot-id"]) == snapshot_id:
            return dict(snapshot)
    raise Unreadable(f"snapshot {snapshot_id} is not in the metadata")


def _local(uri: str) -> str:
    """A file:// URI or a plain path as a path (engine.lake.files._local_path); other storage is Unreadable."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return parsed.path
    if parsed.scheme == "":
        return uri
    raise Unreadable(f"{uri} is not a local file")
