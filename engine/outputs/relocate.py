"""A restored lake in a home at another path: every absolute path in its Iceberg metadata (metadata.json,
manifest lists and manifests, Avro) and catalog rewritten from the old home to the new."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from engine.outputs.archive import (
    _GZIP_MAGIC,
    CATALOG_DB,
    RUNS_DB,
)


def relocate(root: Path, *, old_home: str, new_home: str, tables: dict[str, str]) -> None:
    """Make the unpacked home at `root` read as `new_home` when it was cut from `old_home`.

    Iceberg keeps absolute paths: the table location and the manifest lists in each metadata.json,
    the manifests in each manifest list, the data files in each manifest, and the metadata location
    in the catalog; the run store records data file paths for the light reads. Each is rewritten from
    `old_home` to `new_home`. Every metadata.json also forgets its log of earlier metadata files, which
    a backup does not carry.
    """
    moved = _mover(old_home, new_home)
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for metadata_file in tables.values():
        _rewrite_metadata_json(root / metadata_file, moved)
    if old_home != new_home:
        for avro in sorted((root / "lake").rglob("*.avro")):
            _rewrite_avro(avro, moved)
    catalog = root / CATALOG_DB
    if CATALOG_DB in present:
        with closing(sqlite3.connect(catalog)) as con, con:
            rows = con.execute(
                "select rowid, metadata_location, previous_metadata_location from iceberg_tables"
            ).fetchall()
            for rowid, location, _previous in rows:
                con.execute(
                    "update iceberg_tables set metadata_location = ?, previous_metadata_location = null "
                    "where rowid = ?",
                    (moved(location) if location else location, rowid),
                )
            con.execute(
                "update iceberg_namespace_properties set property_value = ? || substr(property_value, ?) "
                "where substr(property_value, 1, ?) = ?",
                (
                    f"file://{new_home}/",
                    len(f"file://{old_home}/") + 1,
                    len(f"file://{old_home}/"),
                    f"file://{old_home}/",
                ),
            )
    with closing(sqlite3.connect(root / RUNS_DB)) as con, con:
        rows = con.execute("select rowid, files from snapshot_files").fetchall()
        for rowid, files in rows:
            con.execute(
                "update snapshot_files set files = ? where rowid = ?",
                (json.dumps([moved(f) for f in json.loads(files)]), rowid),
            )


def _mover(old_home: str, new_home: str) -> Callable[[str], str]:
    old_uri, new_uri = f"file://{old_home}/", f"file://{new_home}/"
    old_path, new_path = f"{old_home}/", f"{new_home}/"

    def moved(value: str) -> str:
        if value.startswith(old_uri):
            return new_uri + value[len(old_uri) :]
        if value.startswith(old_path):
            return new_path + value[len(old_path) :]
        return value

    return moved


def _rewrite_metadata_json(path: Path, moved: Callable[[str], str]) -> None:
    raw = path.read_bytes()
    zipped = raw.startswith(_GZIP_MAGIC)
    document = json.loads(gzip.decompress(raw) if zipped else raw)
    document = _walk(document, moved)
    # The earlier metadata files are not in the backup; a commit would try to delete them.
    document["metadata-log"] = []
    data = json.dumps(document).encode()
    _replace(path, gzip.compress(data) if zipped else data)


def _walk(value: Any, moved: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return moved(value)
    if isinstance(value, list):
        return [_walk(v, moved) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, moved) for k, v in value.items()}
    return value


def _rewrite_avro(path: Path, moved: Callable[[str], str]) -> None:
    """Rewrite every path string in one Iceberg Avro file (a manifest list or a manifest), keeping its
    schema (with field ids), header metadata and codec."""
    from pyiceberg.avro.file import AvroFile, AvroOutputFile
    from pyiceberg.io.pyarrow import PyArrowFileIO
    from pyiceberg.typedef import Record

    file_io = PyArrowFileIO()
    with AvroFile[Record](file_io.new_input(str(path))) as reader:
        meta = dict(reader.header.meta)
        schema = reader.schema
        records = [_move_record(record, moved) for record in reader]
    name = json.loads(meta["avro.schema"]).get("name", "record")
    meta.pop("avro.schema", None)
    temporary = path.with_name(f".{path.name}.moving")
    with AvroOutputFile[Record](file_io.new_output(str(temporary)), schema, name, metadata=meta) as writer:
        writer.write_block(records)
    temporary.replace(path)


def _move_record(value: Any, moved: Callable[[str], str]) -> Any:
    from pyiceberg.typedef import Record

    if isinstance(value, str):
        return moved(value)
    if isinstance(value, Record):
        for position in range(len(value)):
            value[position] = _move_record(value[position], moved)
        return value
    if isinstance(value, list):
        return [_move_record(v, moved) for v in value]
    if isinstance(value, dict):
        return {_move_record(k, moved): _move_record(v, moved) for k, v in value.items()}
    return value


def _replace(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.moving")
    temporary.write_bytes(data)
    temporary.replace(path)
