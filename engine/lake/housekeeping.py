"""The lake's housekeeping: snapshots kept and expired, small files compacted, orphan files swept.

`LakeHousekeeping` is mixed into `Lake` (engine/lake/store.py): it uses the table loading and the
failure boundary that `Lake` defines; engine/lake/maintenance.py is the weekly job that calls it."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pyiceberg.expressions import (
    AlwaysTrue,
)
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import Snapshot, ancestors_of
from pyiceberg.table.update import (
    AssertRefSnapshotId,
    AssertTableUUID,
    RemoveSnapshotsUpdate,
    TableRequirement,
)
from pyiceberg.table.update.snapshot import ManageSnapshots
from pyiceberg.typedef import Record

from engine.errors import LakeError
from engine.lake.access import LakeAccess
from engine.lake.catalog import _head, _head_of, transaction
from engine.lake.conform import (
    _arrow_schema,
    _conform,
    _plain_strings,
)
from engine.lake.files import (
    _fingerprint,
    _local_path,
    _planned_tasks,
    _snapshot_schema,
)


@dataclass(frozen=True)
class ExpiryResult:
    """What one expiry removed: snapshots from the metadata, and files no snapshot references."""

    snapshots_expired: int
    files_deleted: int
    bytes_freed: int


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot of a branch's history."""

    snapshot_id: int
    parent_id: int | None
    timestamp_ms: int
    operation: str
    summary: dict[str, str]


class LakeHousekeeping(LakeAccess):
    """Expiry, compaction and the orphan sweep of a `Lake`'s tables."""

    def expire_snapshots(self, name: str, *, older_than: dt.datetime) -> ExpiryResult:
        """expire_unprotected_snapshots (nothing extra protected), then, when any snapshot went,
        delete_orphan_files with the same cutoff: the files only those snapshots used, and files a
        write killed before its commit left behind. Call it from the writer, between runs.
        Raises LakeError as those two do.
        """
        expired = self.expire_unprotected_snapshots(name, older_than=older_than, protect=set())
        if not expired:
            # Files only become unreferenced when snapshots go, so there is nothing to sweep.
            return ExpiryResult(0, 0, 0)
        swept = self.delete_orphan_files(name, older_than=older_than)
        return ExpiryResult(expired, swept.files_deleted, swept.bytes_freed)

    def snapshots(self, name: str) -> list[SnapshotInfo]:
        """Every snapshot the table keeps, whether a branch reaches it or not, newest first.

        Raises LakeError for a missing table.
        """
        with self._boundary(f"listing the snapshots of {name}"):
            table = self._load(name)
            return [
                _snapshot_info(snapshot)
                for snapshot in sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms, reverse=True)
            ]

    def expire_unprotected_snapshots(self, name: str, *, older_than: dt.datetime, protect: set[int]) -> int:
        """Forget the snapshots committed before `older_than`, except branch and tag heads, every
        snapshot between a branch head and the head of another branch it descends from (dev's
        unpromoted work down to main), and the ids in `protect` (snapshots readers were pointed at,
        such as the promotions' `from` and `to`). Returns how many were forgotten.

        Unlike expire_snapshots it deletes no file (delete_orphan_files does, with its own safety
        age) and keeps `protect` whatever their age. One catalog commit that asserts every ref
        still points where it was read.
        Raises LakeError when the table cannot be read or written, or a ref moved meanwhile.
        """
        with self._boundary(f"expiring snapshots of {name}"):
            table = self._load(name)
            refs = table.metadata.refs
            heads = {ref.snapshot_id for ref in refs.values()}
            kept = heads | _unpromoted(table, heads) | protect
            cutoff_ms = int(older_than.timestamp() * 1000)
            expired = [
                s.snapshot_id
                for s in table.metadata.snapshots
                if s.timestamp_ms < cutoff_ms and s.snapshot_id not in kept
            ]
            if not expired:
                return 0
            # ExpireSnapshots.by_ids deep-copies the whole metadata twice per id (seconds for a few
            # hundred); the catalog applies the same update in one go, and checks every ref, where
            # pyiceberg's builder checks none.
            requirements: tuple[TableRequirement, ...] = (
                AssertTableUUID(uuid=table.metadata.table_uuid),
                *(
                    AssertRefSnapshotId(ref=ref_name, snapshot_id=ref.snapshot_id)  # type: ignore[call-arg]
                    for ref_name, ref in refs.items()
                ),
            )
            updates = (RemoveSnapshotsUpdate(snapshot_ids=expired),)  # type: ignore[call-arg]
            table.catalog.commit_table(table, requirements, updates)
            if self._pinned is not None:
                # That commit bypassed the Table object, which is now stale.
                self._pinned.pop(name, None)
            return len(expired)

    def compact(
        self,
        name: str,
        *,
        branch: str = "dev",
        fast_forward: str | None = None,
        snapshot_properties: dict[str, str] | None = None,
    ) -> CompactionResult:
        """Rewrite every partition that has several data files in the head of `branch` into one file
        (an unpartitioned table counts as one partition), in one commit, with the same rows.

        Before the commit, the row count and a checksum of every row (DuckDB's hash of all columns,
        summed) of the whole new head are compared with the old head's; on a mismatch nothing is
        committed (the files written are left for delete_orphan_files) and LakeError is raised.
        With `fast_forward`, that branch moves to the compacted snapshot in the same commit when it
        pointed at the head of `branch` before, so it reads the same rows from fewer files;
        otherwise it stays where it is. Makes no commit when no partition has several files.
        Raises LakeError for a missing table or branch, delete files, a checksum mismatch, or any
        lake failure.
        """
        started = time.perf_counter()
        with self._boundary(f"compacting {name} on branch {branch}"):
            table = self._load(name)
            head = _head(table, name, branch)
            tasks = _planned_tasks(table, table.metadata, head)
            spec = table.spec()
            by_partition: dict[tuple[int, Record], list[FileScanTask]] = {}
            for task in tasks:
                by_partition.setdefault((task.file.spec_id, task.file.partition), []).append(task)
            # A file of an older partition spec cannot be rewritten into its old partition; none of
            # phlo's tables has ever changed its spec.
            crowded = {
                key: group for key, group in by_partition.items() if len(group) > 1 and key[0] == spec.spec_id
            }
            if not crowded:
                return CompactionResult(
                    len(tasks), len(tasks), 0, (), None, None, time.perf_counter() - started
                )
            rewritten = [task for group in crowded.values() for task in group]
            rows = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue()).to_table(rewritten)
            rows = _conform(_plain_strings(rows), _arrow_schema(table.schema()), name)
            # The head's own schema: what readers of the branch see, before and after.
            schema = _snapshot_schema(table, head)
            expected = _fingerprint(schema, [_local_path(task.file.file_path) for task in tasks])
            follower = table.metadata.refs.get(fast_forward) if fast_forward is not None else None
            moves = follower is not None and follower.snapshot_id == head
            properties = {"phlo.maintenance": "compaction", **(snapshot_properties or {})}
            with transaction(table) as tx:
                if spec.is_unpartitioned():
                    tx.overwrite(
                        rows, overwrite_filter=AlwaysTrue(), snapshot_properties=properties, branch=branch
                    )
                else:
                    tx.dynamic_partition_overwrite(rows, properties, branch=branch)
                staged = tx.table_metadata
                compacted = _head_of(staged, name, branch)
                after = _planned_tasks(table, staged, compacted)
                found = _fingerprint(schema, [_local_path(task.file.file_path) for task in after])
                if found != expected:
                    # Raising inside the transaction is what keeps it from committing.
                    raise LakeError(
                        f"compacting {name} on branch {branch} would change its rows: {expected[0]} rows "
                        f"(checksum {expected[1]}) before, {found[0]} rows (checksum {found[1]}) after; "
                        "nothing was committed",
                        "report this with the log; the table is unchanged",
                    )
                if moves and fast_forward is not None:
                    ManageSnapshots(tx).create_branch(compacted, fast_forward).commit()
            partitions = tuple(
                sorted(spec.partition_to_path(partition, table.schema()) for _, partition in crowded)
            )
            return CompactionResult(
                files_before=len(tasks),
                files_after=len(after),
                files_rewritten=len(rewritten),
                partitions=partitions,
                snapshot_id=compacted,
                fast_forwarded=fast_forward if moves else None,
                seconds=time.perf_counter() - started,
            )

    def delete_orphan_files(self, name: str, *, older_than: dt.datetime) -> OrphanSweep:
        """Delete the files under the table's data/ and metadata/ folders (local warehouse only)
        that nothing of the table refers to, and that were last modified before `older_than`.

        Referred to: every remaining snapshot's manifest list, manifests and live data files, the
        current metadata.json and those of its metadata log, and statistics files. The age keeps a
        write still in flight (files written, commit to come) safe. Only Iceberg's kinds of files
        (.parquet, .avro, .metadata.json, .puffin) are considered; nothing else is touched. Call
        it from the writer, after expire_unprotected_snapshots. Refuses to delete anything when a
        file a snapshot refers to is not where its path says (the lake is damaged or the paths
        cannot be matched), since then "unreferenced" cannot be trusted.
        Raises LakeError for a missing table, such a missing file, or a file that cannot be deleted.
        """
        with self._boundary(f"deleting orphan files of {name}"):
            table = self._load(name)
            location = urlparse(table.location())
            if location.scheme != "file":
                return OrphanSweep(0, 0)
            referenced = _referenced_files(table)
            missing = sorted(path for path in referenced if not os.path.exists(path))
            if missing:
                raise LakeError(
                    f"lake table {name} refers to {len(missing)} file(s) that do not exist, such as "
                    f"{missing[0]}; no orphan file was deleted",
                    "restore the files from a backup, or rebuild the table with a backfill",
                )
            kept = referenced | _metadata_files(table)
            cutoff = older_than.timestamp()
            deleted, freed = 0, 0
            for path in _iceberg_files(Path(location.path)):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if stat.st_mtime < cutoff and os.path.realpath(path) not in kept:
                    path.unlink(missing_ok=True)
                    deleted, freed = deleted + 1, freed + stat.st_size
            return OrphanSweep(deleted, freed)

    def stored_files(self, name: str) -> tuple[int, int]:
        """(files, bytes) of Iceberg files under the table's data/ and metadata/ folders, referenced
        or not; (0, 0) for storage other than local files. Raises LakeError for a missing table."""
        with self._boundary(f"measuring the files of {name}"):
            location = urlparse(self._load(name).location())
            if location.scheme != "file":
                return 0, 0
            files, size = 0, 0
            for path in _iceberg_files(Path(location.path)):
                try:
                    size += path.stat().st_size
                except FileNotFoundError:
                    continue
                files += 1
            return files, size


def _unpromoted(table: Table, heads: set[int]) -> set[int]:
    """Snapshots between a branch head and the nearest other head among its ancestors (both excluded)."""
    unpromoted: set[int] = set()
    for head in heads:
        path: list[int] = []
        for snapshot in ancestors_of(table.metadata.snapshot_by_id(head), table.metadata):
            if snapshot.snapshot_id in heads and snapshot.snapshot_id != head:
                unpromoted.update(path)
                break
            if snapshot.snapshot_id != head:
                path.append(snapshot.snapshot_id)
    return unpromoted


def _referenced_files(table: Table) -> set[str]:
    """Real paths of every manifest list, manifest and live data file of the table's snapshots."""
    referenced: set[str] = set()
    seen_manifests: set[str] = set()
    for snapshot in table.metadata.snapshots:
        referenced.add(os.path.realpath(_local_path(snapshot.manifest_list)))
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            referenced.add(os.path.realpath(_local_path(manifest.manifest_path)))
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                referenced.add(os.path.realpath(_local_path(entry.data_file.file_path)))
    return referenced


@dataclass(frozen=True)
class CompactionResult:
    """What one compaction did: data files of the branch head before and after, files rewritten,
    the partitions rewritten ('' for an unpartitioned table), the new head (None when nothing was
    committed) and the branch fast-forwarded along with it, if any."""

    files_before: int
    files_after: int
    files_rewritten: int
    partitions: tuple[str, ...]
    snapshot_id: int | None
    fast_forwarded: str | None
    seconds: float


@dataclass(frozen=True)
class OrphanSweep:
    """Files nothing referred to any more, deleted, and their bytes."""

    files_deleted: int
    bytes_freed: int


_ICEBERG_SUFFIXES = (".parquet", ".avro", ".metadata.json", ".puffin")


def _snapshot_info(snapshot: Snapshot) -> SnapshotInfo:
    return SnapshotInfo(
        snapshot_id=snapshot.snapshot_id,
        parent_id=snapshot.parent_snapshot_id,
        timestamp_ms=snapshot.timestamp_ms,
        operation=snapshot.summary.operation.value if snapshot.summary else "",
        summary=dict(snapshot.summary.additional_properties) if snapshot.summary else {},
    )


def _metadata_files(table: Table) -> set[str]:
    """Real paths of the current metadata.json, those of its metadata log, and statistics files."""
    paths = [table.metadata_location]
    paths += [entry.metadata_file for entry in table.metadata.metadata_log]
    paths += [stats.statistics_path for stats in table.metadata.statistics]
    paths += [stats.statistics_path for stats in table.metadata.partition_statistics]
    return {os.path.realpath(_local_path(path)) for path in paths}


def _iceberg_files(location: Path) -> Iterator[Path]:
    """The Iceberg files under the data/ and metadata/ folders of a table's local location."""
    for folder in ("data", "metadata"):
        for path in sorted((location / folder).rglob("*")):
            if path.name.endswith(_ICEBERG_SUFFIXES) and path.is_file():
                yield path
