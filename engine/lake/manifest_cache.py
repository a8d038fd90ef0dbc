"""The entries pyiceberg reads from a manifest, read once per process instead of on every plan and commit.

pyiceberg 0.12 decodes a table's manifests whenever it plans a scan, and an overwrite's commit decodes
every manifest of the parent snapshot twice more (to find the files it deletes and the manifests it
keeps): about seven milliseconds a manifest, a dozen manifests a table, several times per model write.
A manifest is written once under a unique name and never changed (engine.outputs.relocate rewrites
them only in a home no process runs in), so its entries are kept by path, checked against the file's
size and modification time, and by the manifest-list fields pyiceberg fills in the entries from.

Reading one is pyiceberg's own reading too, except that the reader tree for a writer schema is
resolved once (pyiceberg converts the schema and resolves it per file: seven eighths of the time of a
manifest with a few entries).

The cached entries are shared: pyiceberg builds new entries for what it writes and changes a read
entry only while reading it (`_inherit_from_manifest`), before it is kept here; the lake changes
only the data files it writes itself (engine.lake.files._remember_files).

A snapshot's manifest list is written once too and is kept the same way (pyiceberg re-reads it on
every plan and commit, about six milliseconds each). An unfiltered plan (`live_data_files`) walks the
kept list and entries directly: pyiceberg's plan would keep all of them anyway, through a thread pool
and a filter evaluation per file.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

from pyiceberg.avro.decoder import new_decoder
from pyiceberg.avro.file import _SCHEMA_KEY, AvroFile
from pyiceberg.avro.reader import Reader
from pyiceberg.avro.resolver import resolve_reader
from pyiceberg.io import FileIO
from pyiceberg.manifest import (
    DEFAULT_READ_VERSION,
    MANIFEST_ENTRY_SCHEMAS,
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    _inherit_from_manifest,
    _manifests,
)
from pyiceberg.schema import Schema
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot

_MAX_MANIFESTS = 4096
_T = TypeVar("_T")

_pyiceberg_read = ManifestFile.fetch_manifest_entry
"""pyiceberg's own reading, which tests/test_lake_manifest_cache.py compares _read with."""

_readers: dict[str, tuple[Schema, Reader]] = {}
"""The schema and reader tree resolved for a manifest's writer schema (the JSON in its header): the
manifests of a table share one or two, and resolving is nearly all of pyiceberg's time on a small one."""


class _ManifestAvroFile(AvroFile[ManifestEntry]):
    """pyiceberg's AvroFile for manifest entries, resolving each writer schema once per process (the
    reader tree is stateless: it reads from the decoder it is handed)."""

    def __enter__(self) -> _ManifestAvroFile:
        with self.input_file.open() as f:
            self.decoder = new_decoder(f.read())
        self.header = self._read_header()
        written = self.header.meta.get(_SCHEMA_KEY)
        resolved = _readers.get(written) if written is not None else None
        if resolved is None:
            schema = self.header.get_schema()
            resolved = (
                schema,
                resolve_reader(schema, self.read_schema or schema, self.read_types, self.read_enums),
            )
            if written is not None:
                with _lock:
                    _readers[written] = resolved
        self.schema, self.reader = resolved
        self.read_schema = self.read_schema or self.schema
        return self


def _read(manifest: ManifestFile, io: FileIO, discard_deleted: bool = True) -> list[ManifestEntry]:
    """ManifestFile.fetch_manifest_entry of pyiceberg 0.12, with the reader tree resolved once."""
    with _ManifestAvroFile(
        io.new_input(manifest.manifest_path),
        MANIFEST_ENTRY_SCHEMAS[DEFAULT_READ_VERSION],
        read_types={-1: ManifestEntry, 2: DataFile},
        read_enums={0: ManifestEntryStatus, 101: FileFormat, 134: DataFileContent},
    ) as reader:
        return [
            _inherit_from_manifest(entry, manifest)
            for entry in reader
            if not discard_deleted or entry.status != ManifestEntryStatus.DELETED
        ]


_entries: OrderedDict[tuple[object, ...], tuple[ManifestEntry, ...]] = OrderedDict()
_lock = threading.Lock()


def fetch_manifest_entry(self: ManifestFile, io: FileIO, discard_deleted: bool = True) -> list[ManifestEntry]:
    """ManifestFile.fetch_manifest_entry, remembered for local files."""
    stat = _local_stat(self.manifest_path)
    if stat is None:
        return _read(self, io, discard_deleted)
    key = (
        self.manifest_path,
        stat.st_size,
        stat.st_mtime_ns,
        discard_deleted,
        self.added_snapshot_id,
        self.sequence_number,
        self.min_sequence_number,
        self.partition_spec_id,
    )
    return list(_remembered(_entries, _MAX_MANIFESTS, key, lambda: tuple(_read(self, io, discard_deleted))))


def _remembered(
    cache: OrderedDict[Any, tuple[_T, ...]], limit: int, key: Any, load: Callable[[], tuple[_T, ...]]
) -> tuple[_T, ...]:
    """`cache[key]`, loaded (outside the lock) when absent; the least recently used beyond `limit` go."""
    with _lock:
        found = cache.get(key)
        if found is not None:
            cache.move_to_end(key)
            return found
    loaded = load()
    with _lock:
        cache[key] = loaded
        while len(cache) > limit:
            cache.popitem(last=False)
    return loaded


def _local_stat(uri: str) -> os.stat_result | None:
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        return None
    try:
        return os.stat(parsed.path)
    except OSError:
        return None  # pyiceberg says what is missing


_lists: OrderedDict[tuple[str, int, int], tuple[ManifestFile, ...]] = OrderedDict()
_MAX_LISTS = 1024


def snapshot_manifests(self: Snapshot, io: FileIO) -> list[ManifestFile]:
    """Snapshot.manifests, remembered for local manifest lists (written once, like manifests; the
    ManifestFile objects are pyiceberg's own, which it already shares by path)."""
    stat = _local_stat(self.manifest_list)
    if stat is None:
        return list(_manifests(io, self.manifest_list))
    key = (self.manifest_list, stat.st_size, stat.st_mtime_ns)
    return list(_remembered(_lists, _MAX_LISTS, key, lambda: _manifests(io, self.manifest_list)))


def live_data_files(metadata: TableMetadata, io: FileIO, snapshot_id: int) -> list[DataFile] | None:
    """The data files an unfiltered DataScan.plan_files of `snapshot_id` gives, in its order, walked
    from the cached manifest list and entries; None where pyiceberg must plan (an unknown snapshot,
    delete manifests or delete files, which it pairs with data files or refuses).

    With no row filter pyiceberg keeps every manifest and every live entry, except files without
    rows (its metrics evaluator skips those unless the scan includes empty files): the same here.
    """
    snapshot = metadata.snapshot_by_id(snapshot_id) if snapshot_id else None
    if snapshot is None:
        return None
    files: list[DataFile] = []
    for manifest in snapshot.manifests(io):
        if manifest.content != ManifestContent.DATA:
            return None
        for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
            file = entry.data_file
            if file.content != DataFileContent.DATA:
                return None
            if file.record_count != 0:
                files.append(file)
    return files


def install() -> None:
    """Make every ManifestFile and Snapshot of this process read through the caches (idempotent)."""
    ManifestFile.fetch_manifest_entry = fetch_manifest_entry  # type: ignore[method-assign]
    Snapshot.manifests = snapshot_manifests  # type: ignore[method-assign]
