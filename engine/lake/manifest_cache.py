"""The entries pyiceberg reads from a manifest, read once per process instead of on every plan and commit.

pyiceberg 0.12 decodes a table's manifests whenever it plans a scan, and an overwrite's commit decodes
every manifest of the parent snapshot twice more (to find the files it deletes and the manifests it
keeps): about seven milliseconds a manifest, a dozen manifests a table, several times per model write.
A manifest is written once under a unique name and never changed (engine.outputs.relocate rewrites
them only in a home no process runs in), so its entries are kept by path, checked against the file's
size and modification time, and by the manifest-list fields pyiceberg fills in the entries from.

The cached entries are shared: pyiceberg builds new entries for what it writes and changes a read
entry only while reading it (`_inherit_from_manifest`), before it is kept here; the lake changes
only the data files it writes itself (engine.lake.files._remember_files).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from urllib.parse import urlparse

from pyiceberg.io import FileIO
from pyiceberg.manifest import ManifestEntry, ManifestFile

_MAX_MANIFESTS = 4096

_read = ManifestFile.fetch_manifest_entry
_entries: OrderedDict[tuple[object, ...], tuple[ManifestEntry, ...]] = OrderedDict()
_lock = threading.Lock()


def fetch_manifest_entry(self: ManifestFile, io: FileIO, discard_deleted: bool = True) -> list[ManifestEntry]:
    """ManifestFile.fetch_manifest_entry, remembered for local files."""
    parsed = urlparse(self.manifest_path)
    if parsed.scheme not in ("file", ""):
        return _read(self, io, discard_deleted)
    try:
        stat = os.stat(parsed.path)
    except OSError:
        return _read(self, io, discard_deleted)  # pyiceberg says what is missing
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
    with _lock:
        entries = _entries.get(key)
        if entries is not None:
            _entries.move_to_end(key)
            return list(entries)
    entries = tuple(_read(self, io, discard_deleted))
    with _lock:
        _entries[key] = entries
        while len(_entries) > _MAX_MANIFESTS:
            _entries.popitem(last=False)
    return list(entries)


def install() -> None:
    """Make every ManifestFile of this process read through the cache (idempotent)."""
    ManifestFile.fetch_manifest_entry = fetch_manifest_entry  # type: ignore[method-assign]
