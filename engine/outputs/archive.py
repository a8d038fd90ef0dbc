"""The backup archive: one tar (gzip or zstd) of a home's consistent cut, with a header and a manifest of
every file's size and SHA-256; written, read back and verified as a stream."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import sqlite3
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata as importlib_metadata
from pathlib import Path, PurePosixPath
from typing import IO, Any

from engine.errors import PhloError

FORMAT = 1
"""The archive layout this version writes and the newest it reads."""


HEADER = "phlo-backup.json"


MANIFEST = "manifest.json"


RUNS_DB = "runs.sqlite"
CATALOG_DB = "lake/catalog.sqlite"


_CHUNK = 1 << 20


_GZIP_MAGIC = b"\x1f\x8b"


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) as an archive is written or read."""


class BackupError(PhloError):
    """A backup could not be written, read, verified or restored."""


@dataclass(frozen=True)
class BackupSummary:
    """What a backup holds (or a verified one held): its header fields, files and bytes."""

    path: Path
    created_at: datetime
    home: str
    version: str
    files: int
    bytes: int
    tables: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "created_at": self.created_at.isoformat(),
            "home": self.home,
            "version": self.version,
            "files": self.files,
            "bytes": self.bytes,
            "tables": self.tables,
        }


def app_version() -> str:
    try:
        return importlib_metadata.version("phlo-tui")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def write_archive(staging: Path, out: Path, *, progress: Progress | None = None) -> BackupSummary:
    """Pack a cut into `out` (zstd when it ends in .zst, else gzip): header first, the files, the
    manifest with their SHA-256 last. Written to a temporary file beside `out` and renamed, so `out`
    is whole or absent. Raises BackupError when the file cannot be written (a full disk included)."""
    cut = json.loads((staging / "cut.json").read_text())
    files = sorted(
        p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file() and p.name != "cut.json"
    )
    sizes = {name: (staging / name).stat().st_size for name in files}
    total = sum(sizes.values())
    created = cut["created_at"]
    header = {
        "format": FORMAT,
        "app": "phlo-tui",
        "version": app_version(),
        "created_at": created,
        "home": cut["home"],
        "runstore_schema": _user_version(staging / RUNS_DB),
        "tables": cut["tables"],
        "files": len(files),
        "bytes": total,
    }
    partial = out.with_name(f".{out.name}.partial-{secrets.token_hex(3)}")
    try:
        with open(partial, "xb") as raw, _compressor(raw, out.name) as stream:
            with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                _add_bytes(tar, HEADER, json.dumps(header, indent=1).encode())
                checksums: dict[str, dict[str, Any]] = {}
                done = 0
                for name in files:
                    path = staging / name
                    info = tar.gettarinfo(str(path), arcname=name)
                    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
                    with path.open("rb") as fh:
                        hashing = _HashingReader(fh)
                        tar.addfile(info, hashing)
                    checksums[name] = {"sha256": hashing.hexdigest(), "bytes": info.size}
                    done += info.size
                    if progress is not None:
                        progress(done, total)
                _add_bytes(tar, MANIFEST, json.dumps({"format": FORMAT, "files": checksums}).encode())
            stream.flush()
        with open(partial, "rb+") as fh:
            os.fsync(fh.fileno())
        partial.rename(out)
    except BaseException as e:
        partial.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise BackupError(
                f"cannot write the backup {out}: {e.strerror or e}",
                f"check free disk space and permissions in {out.parent}; nothing was left behind",
            ) from e
        raise
    return BackupSummary(
        out, datetime.fromisoformat(created), cut["home"], header["version"], len(files), total, cut["tables"]
    )


def _user_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as con:
        return int(con.execute("pragma user_version").fetchone()[0])


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


class _HashingReader:
    """A binary file wrapper that hashes what is read through it."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@contextmanager
def _compressor(raw: IO[bytes], name: str) -> Iterator[Any]:
    if name.endswith((".zst", ".zstd")):
        import zstandard

        with zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as writer:
            yield writer
    else:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as writer:
            yield writer


@contextmanager
def _decompressor(path: Path) -> Iterator[Any]:
    try:
        raw = path.open("rb")
    except OSError as e:
        raise BackupError(f"cannot read the backup {path}: {e.strerror or e}", "check the path") from e
    with raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic.startswith(_GZIP_MAGIC):
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield stream
        elif magic == _ZSTD_MAGIC:
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(raw, closefd=False) as reader:
                yield reader
        else:
            raise BackupError(
                f"{path} is not a phlo-tui backup (neither gzip nor zstd)", "give the file `backup` wrote"
            )


def read_archive(path: Path, into: Path | None, *, progress: Progress | None = None) -> BackupSummary:
    """Read a whole backup, checking every member's SHA-256 against the manifest; with `into`, also
    unpack it there. Raises BackupError for a file that is truncated, damaged, not a backup or written
    by a newer version (before anything is unpacked, for the latter)."""
    header: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    seen: dict[str, str] = {}
    done = 0
    try:
        with _decompressor(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = _safe_name(path, member)
                source = tar.extractfile(member)
                if source is None:
                    raise _damaged(path, f"member {name} has no content")
                if header is None:
                    if name != HEADER:
                        raise BackupError(f"{path} is not a phlo-tui backup", "give the file `backup` wrote")
                    header = _check_header(path, json.loads(source.read()))
                    continue
                if name == MANIFEST:
                    manifest = json.loads(source.read())
                    continue
                if manifest is not None:
                    raise _damaged(path, f"{name} follows the manifest")
                digest = hashlib.sha256()
                with _sink(into, name) as sink:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        sink.write(chunk)
                seen[name] = digest.hexdigest()
                done += member.size
                if progress is not None:
                    progress(done, int(header.get("bytes") or done))
    except BackupError:
        raise
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _damaged(path, str(e)) from e
    except OSError as e:
        if into is not None and e.filename is not None and str(e.filename).startswith(str(into)):
            raise BackupError(
                f"cannot unpack the backup into {into.parent}: {e.strerror or e}",
                "check free disk space and permissions there; nothing was changed",
            ) from e
        raise _damaged(path, str(e)) from e
    except Exception as e:  # zstandard raises its own ZstdError for a damaged frame
        if type(e).__module__.startswith("zstandard"):
            raise _damaged(path, str(e)) from e
        raise
    if header is None or manifest is None:
        raise _damaged(path, "the manifest is missing (the file ends early)")
    expected = {name: str(entry["sha256"]) for name, entry in manifest.get("files", {}).items()}
    if set(expected) != set(seen):
        raise _damaged(path, f"{len(set(expected) ^ set(seen))} file(s) differ from the manifest's list")
    bad = sorted(name for name in seen if seen[name] != expected[name])
    if bad:
        raise _damaged(path, f"checksum mismatch in {len(bad)} file(s), such as {bad[0]}")
    return BackupSummary(
        path,
        datetime.fromisoformat(header["created_at"]),
        str(header["home"]),
        str(header.get("version", "")),
        len(seen),
        done,
        dict(header.get("tables", {})),
    )


def _damaged(path: Path, detail: str) -> BackupError:
    return BackupError(
        f"the backup {path} is truncated or damaged: {detail}",
        "nothing was restored; use another backup (the daemon keeps the newest backup_keep)",
    )


def _safe_name(path: Path, member: tarfile.TarInfo) -> str:
    name = PurePosixPath(member.name)
    if not member.isfile() or name.is_absolute() or ".." in name.parts or not name.parts:
        raise _damaged(path, f"unexpected member {member.name!r}")
    return name.as_posix()


def _check_header(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    from engine.runs.database import _SCHEMA

    fmt, schema = int(header.get("format", 0)), int(header.get("runstore_schema", 0))
    if fmt > FORMAT or schema > len(_SCHEMA):
        raise BackupError(
            f"the backup {path} was written by a newer phlo-tui ({header.get('version', '?')}: format {fmt}, "
            f"run store {schema}); this one ({app_version()}) reads format {FORMAT}, run store {len(_SCHEMA)}",
            "upgrade phlo-tui, then restore",
        )
    if fmt < 1 or not header.get("home") or not header.get("created_at"):
        raise _damaged(path, "its header is incomplete")
    return header


@contextmanager
def _sink(into: Path | None, name: str) -> Iterator[Any]:
    if into is None:
        yield _NullSink()
        return
    target = into / name
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
        yield fh


class _NullSink(io.RawIOBase):
    def write(self, data: Any) -> int:
        return len(data)


def verify(path: Path, *, progress: Progress | None = None) -> BackupSummary:
    """Check a backup without restoring it. Raises BackupError as read_archive does."""
    return read_archive(path.absolute(), None, progress=progress)
