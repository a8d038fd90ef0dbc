"""The lake's access to its catalog and tables: one catalog per process, tables loaded once per
run while pinned, and every third-party failure turned into a LakeError that says what next.

The base of `Lake` (engine/lake/store.py, writes), `LakeReads` (engine/lake/reads.py) and
`LakeHousekeeping` (engine/lake/housekeeping.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from pyiceberg.catalog import MetastoreCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.table import Table

from engine.errors import LakeError
from engine.lake import manifest_cache
from engine.lake.opening import (
    MOVED_CATALOG,
    _open_catalog,
    _open_postgres_catalog,
)


class LakeAccess:
    """The Iceberg warehouse under PHLO_HOME/lake: warehouse/ (file://) and its SQL catalog, the file
    catalog.sqlite or, with `catalog_uri`, a PostgreSQL database (engine.lake.catalog_uri)."""

    def __init__(self, root: Path, catalog_uri: str | None = None) -> None:
        self.root = Path(root).absolute()
        self.catalog_uri = catalog_uri
        self._catalog_instance: MetastoreCatalog | None = None
        self._catalog_lock = threading.Lock()
        self._pinned: dict[str, Table] | None = None

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Within the block, load each table from the catalog once and reuse it (its commits keep
        it current). Only for the process that holds the writer lease, for a run's own steps: a
        commit by anyone else meanwhile would go unseen until it makes one of ours fail (and a
        failed commit unpins). Nested blocks share the outer one."""
        if self._pinned is not None:
            yield
            return
        self._pinned = {}
        try:
            yield
        finally:
            self._pinned = None

    def _catalog(self) -> MetastoreCatalog:
        with self._catalog_lock:
            if self._catalog_instance is None:
                manifest_cache.install()
                # Imports pyiceberg.io.pyarrow, which loading a table imports anyway.
                from engine.lake import schema_check

                schema_check.install()
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                (self.root / "warehouse").mkdir(mode=0o700, exist_ok=True)
                warehouse = f"file://{self.root}/warehouse"
                database = self.root / "catalog.sqlite"
                moved = database.with_name(MOVED_CATALOG)
                if self.catalog_uri is not None:
                    self._catalog_instance = _open_postgres_catalog(self.catalog_uri, warehouse, database)
                else:
                    if moved.exists() and not database.exists():
                        raise LakeError(
                            f"the catalog of the lake under {self.root} was moved to PostgreSQL ({moved.name})",
                            "set catalog_uri (PHLO_CATALOG_URI) to that database again",
                        )
                    # WAL lets readers in other processes load metadata while the writer commits.
                    with closing(sqlite3.connect(database, timeout=30)) as connection:
                        connection.execute("PRAGMA journal_mode=WAL")
                    self._catalog_instance = _open_catalog(database, warehouse)
            return self._catalog_instance

    def _load_table(self, name: str) -> Table:
        """The table from the catalog, or the one pinned for the run. Raises NoSuchTableError."""
        pinned = self._pinned
        if pinned is not None and name in pinned:
            return pinned[name]
        table = self._catalog().load_table(name)
        if pinned is not None:
            pinned[name] = table
        return table

    def _load(self, name: str) -> Table:
        try:
            return self._load_table(name)
        except NoSuchTableError as e:
            raise LakeError(
                f"lake table {name} does not exist in {self.root}",
                "run `phlo-tui run` once to create the lake tables",
            ) from e

    @contextmanager
    def _boundary(self, what: str) -> Iterator[None]:
        """Turn any third-party failure into a LakeError saying what failed, where, and what next."""
        try:
            yield
        except LakeError:
            raise
        except CommitFailedException as e:
            if self._pinned is not None:
                self._pinned.clear()
            raise LakeError(
                f"{what} failed: another process changed the table ({e})",
                "make sure only one phlo-tui process writes this home, then run again",
            ) from e
        except OSError as e:
            raise LakeError(
                f"{what} failed: {e}", f"check free disk space and permissions under {self.root}"
            ) from e
        except Exception as e:
            raise LakeError(
                f"{what} failed: {type(e).__name__}: {e}",
                f"the lake under {self.root} may be damaged or written by another version; "
                "see the log for the traceback",
            ) from e
