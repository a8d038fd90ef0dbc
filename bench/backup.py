"""Bench: a backup of an existing home, split as the writer lease sees it: seconds of the cut (taken under
the lease: SQLite online backups and hard links) and of the packing (outside it), the archive's size,
and a verify. Usage: PHLO_HOME=DIR uv run python bench/backup.py [--zstd]. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import engine.lake.store  # noqa: F401  - imported before timing, as the daemon has it loaded
from engine.config import load_settings
from engine.outputs.archive import verify, write_archive
from engine.outputs.backup import take_cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zstd", action="store_true", help="write .tar.zst instead of .tar.gz")
    args = parser.parse_args()
    settings = load_settings()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / ("backup.tar.zst" if args.zstd else "backup.tar.gz")
        started = time.perf_counter()
        staging = take_cut(settings)
        cut = time.perf_counter() - started
        try:
            started = time.perf_counter()
            summary = write_archive(staging, out)
            pack = time.perf_counter() - started
        finally:
            shutil.rmtree(staging)
        started = time.perf_counter()
        verify(out)
        checked = time.perf_counter() - started
        print(f"home            {settings.home}")
        print(f"tables          {len(summary.tables)}, files {summary.files}, {summary.bytes / 1e6:.1f} MB")
        print(f"cut (lease)     {cut:.3f} s")
        print(f"pack            {pack:.3f} s -> {out.stat().st_size / 1e6:.2f} MB {out.suffix}")
        print(f"verify          {checked:.3f} s")


if __name__ == "__main__":
    main()
