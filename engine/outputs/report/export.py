"""Writing the clinic report: read the figures, draw them, and put each file in place by a rename."""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

from engine.config import Settings
from engine.errors import PhloError
from engine.outputs.report.data import ReportData, ReportReader, load_report
from engine.outputs.report.period import Period

FORMATS = (".pdf", ".png")


@dataclass(frozen=True)
class ReportResult:
    """What was written: the files (a PNG report with a treatments page is two files), the period, its data."""

    paths: tuple[Path, ...]
    pages: int
    data: ReportData

    @property
    def period(self) -> Period:
        return self.data.period

    @property
    def sufficient(self) -> bool:
        return self.data.sufficient

    def summary(self) -> list[str]:
        """What `phlo-tui report` prints: where it wrote, the period, whether the data was sufficient."""
        stats = self.data.stats
        files = ", ".join(str(p) for p in self.paths)
        enough = (
            "sufficient"
            if self.sufficient
            else "NOT sufficient (the consensus asks for 14 days with ≥ 70 % CGM data)"
        )
        return [
            f"wrote {files} ({self.pages} page{'s' if self.pages > 1 else ''})",
            f"period: {self.period.since} to {self.period.until} ({self.period.days} days, {self.data.timezone}), "
            f"branch {self.data.branch}",
            f"data: {enough}: CGM active {stats.cgm_active_pct:.1f} %, {stats.readings} readings "
            f"on {stats.days_with_readings} of {self.period.days} days",
        ]


def default_report_path(directory: Path, period: Period, suffix: str = ".pdf") -> Path:
    return directory / f"agp-report-{period.since}_{period.until}{suffix}"


def export_report(
    reader: ReportReader,
    settings: Settings,
    *,
    period: Period,
    out: Path,
    units: str,
    branch: str = "main",
    force: bool = False,
    now: datetime,
) -> ReportResult:
    """Read the period's figures through `reader`, draw them and write `out` (.pdf, or .png: then a second
    page goes to `<stem>-2.png`). Each file is written to a temporary file beside it and renamed, so it is
    never left half-written; an existing file is replaced only with `force`.

    Raises PhloError for an unknown format, an unwritable or existing path, or a period without readings."""
    load = partial(load_report, reader, settings, period, branch, now)
    return export_loaded(load, settings, period=period, out=out, units=units, force=force)


def export_loaded(
    load: Callable[[], ReportData], settings: Settings, *, period: Period, out: Path, units: str, force: bool
) -> ReportResult:
    """export_report with the period's figures from `load()` (called once, after the output path is checked,
    while matplotlib is imported)."""
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise PhloError(f"cannot write a report as {out.name!r}", "name the file .pdf or .png")
    _check_writable(out, force)
    keep_matplotlib_cache(settings.home)
    # matplotlib takes a second or more to import: on a second core while DuckDB reads the period (it
    # runs without the GIL), or while a child process reads it, waited for before anything else happens,
    # an error included.
    importing = threading.Thread(
        target=importlib.import_module, args=("engine.outputs.report.render",), name="import-matplotlib"
    )
    importing.start()
    try:
        data = load()
    finally:
        importing.join()
    from engine.outputs.report.render import render_pages, write_pdf, write_png

    pages = render_pages(data, units, settings.report_paper, settings.report_name)
    writers: list[tuple[Path, Callable[[str], None]]]
    if suffix == ".pdf":
        title = f"AGP report {period.since} to {period.until}"
        writers = [(out, partial(write_pdf, pages, title=title))]
    else:
        names = [out] + [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(2, len(pages) + 1)]
        writers = [(path, partial(write_png, page)) for path, page in zip(names, pages, strict=True)]
    for path, _ in writers[1:]:
        _check_writable(path, force)
    for path, write in writers:
        _write_atomically(path, write, force)
    paths = [path for path, _ in writers]
    return ReportResult(tuple(paths), len(pages), data)


def keep_matplotlib_cache(home: Path) -> None:
    """Point matplotlib at `home`/matplotlib when its own directories cannot be written (a service user
    without a home directory): it would otherwise build its font list again in a new temporary directory
    in every process, and warn each time. Call before matplotlib is imported; $MPLCONFIGDIR wins."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    # matplotlib's own choice: the XDG config and cache directories on Linux and BSD, ~/.matplotlib elsewhere.
    try:
        user = Path.home()
        if sys.platform.startswith(("linux", "freebsd")):
            wanted = [
                Path(os.environ.get("XDG_CONFIG_HOME") or user / ".config", "matplotlib"),
                Path(os.environ.get("XDG_CACHE_HOME") or user / ".cache", "matplotlib"),
            ]
        else:
            wanted = [user / ".matplotlib"]
        for directory in wanted:
            directory.mkdir(parents=True, exist_ok=True)
        if all(os.access(d, os.W_OK | os.X_OK) for d in wanted):
            return
    except (OSError, RuntimeError):  # RuntimeError: no home directory at all
        pass
    own = home / "matplotlib"
    own.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = str(own)


def _check_writable(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise PhloError(f"{path} already exists", "pass --force to replace it, or choose another --out")
    if path.is_dir():
        raise PhloError(f"{path} is a directory", "give a file name ending in .pdf or .png")
    parent = path.parent
    if not parent.is_dir():
        raise PhloError(f"cannot write {path}: no directory {parent}", "create it, or choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PhloError(f"cannot write {path}: {parent} is not writable", "choose another --out")


def _write_atomically(path: Path, write: Callable[[str], None], force: bool) -> None:
    """`write(tmp)` into a temporary file in `path`'s directory, then rename it to `path` (without `force`,
    a link that fails when `path` appeared meanwhile)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise PhloError(f"cannot write {path}: {e.strerror}", "choose another --out") from e
    os.close(fd)
    try:
        write(tmp)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except OSError as e:
                if e.errno == errno.EEXIST:
                    raise PhloError(f"{path} already exists", "pass --force to replace it") from e
                if path.exists():
                    raise
                os.replace(tmp, path)  # a file system without hard links
    except OSError as e:
        raise PhloError(f"cannot write {path}: {e.strerror or e}", "check the disk and the path") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
