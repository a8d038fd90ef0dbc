"""A Clarity or LibreView export opened for import: its header and first pass read, its records then
checked and shaped for the lake a slice of whole local days at a time (`CsvExport.slices`)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from engine.errors import SourceError
from engine.ingest.imports import clarity, libreview
from engine.ingest.imports.common import CsvImport, CsvTable, SliceState, build, import_params
from engine.ingest.imports.detect import CLARITY, LIBREVIEW, read_bytes
from engine.ingest.imports.quarantine import merged_checks
from engine.ingest.imports.reading import SLICE_RECORDS, CsvText, csv_text, slice_ends, sliced, stripped


@dataclass
class CsvExport:
    """An export file ready to be read slice by slice; the first pass has counted its records and
    decided its date order."""

    fmt: str
    timezone: str
    date_order: str | None
    lines: int
    digest: str
    now: datetime
    text: CsvText
    header_at: int
    header: list[str]
    stamps: np.ndarray
    """Each record's naive local time (datetime64[ns], NaT where none)."""
    ends: list[int] | None
    cells: pd.DataFrame | None
    """The whole file's cells when the first pass had to read them all (rows wider than the header)."""

    def params(self) -> dict[str, Any]:
        """What the run records about the import (never the file's name: see `import_params`)."""
        return import_params(self.fmt, self.timezone, self.date_order, self.lines, self.digest)

    def whole(self) -> CsvImport:
        """Every slice as one: the whole file checked and shaped for the lake (for a small file)."""
        parts = list(self.slices())
        skipped: Counter[str] = Counter()
        for part in parts:
            skipped.update(part.skipped)
        return CsvImport(
            fmt=self.fmt,
            timezone=self.timezone,
            date_order=self.date_order,
            lines=self.lines,
            records=pa.concat_tables([part.records for part in parts]),
            scans=pa.concat_tables([part.scans for part in parts]),
            readings=pd.concat([part.readings for part in parts], ignore_index=True),
            treatments=sorted(
                (t for part in parts for t in part.treatments), key=lambda t: str(t["created_at"])
            ),
            quarantine=[row for part in parts for row in part.quarantine],
            checks=tuple(merged_checks([check for part in parts for check in part.checks])),
            skipped=dict(skipped),
            digest=self.digest,
        )

    def slices(self) -> Iterator[CsvImport]:
        """The file's records checked and shaped for the lake, a slice of whole local days at a time;
        every record of the file is counted in exactly one slice."""
        from schemas.imports import CLARITY_ROWS_SCHEMA, LIBREVIEW_ROWS_SCHEMA

        valid = self.stamps[~np.isnat(self.stamps)].astype("int64")
        state = SliceState(descending=len(valid) > 1 and bool(np.median(np.diff(valid)) < 0))
        whole, self.cells = self.cells, None
        for cells in [whole] if whole is not None else sliced(self.text, self.ends):
            table = CsvTable(self.text, cells)
            local_ts = pd.Series(self.stamps[cells.index.to_numpy()], index=cells.index)
            if self.fmt == CLARITY:
                parsed = clarity.parse(table, self.header_at, self.header, local_ts)
                schema = CLARITY_ROWS_SCHEMA
            else:
                parsed = libreview.parse(table, self.header_at, self.header, local_ts, self.date_order)
                schema = LIBREVIEW_ROWS_SCHEMA
            shaped = build(parsed, schema, self.timezone, self.now, self.digest, state)
            del table, local_ts, parsed, cells  # one slice in memory at a time
            yield shaped
            del shaped


def open_export(
    path: Path,
    fmt: str,
    *,
    timezone: str,
    date_order: str | None,
    now: datetime,
    slice_records: int = SLICE_RECORDS,
) -> CsvExport:
    """The first pass over a Clarity or LibreView export: its header, record count, local times and
    date order. Raises SourceError for an unreadable file, one without the format's header, or
    LibreView dates that read both ways without `date_order`."""
    if fmt not in (CLARITY, LIBREVIEW):
        raise SourceError(f"{path}: {fmt} is not a CSV format", "use --format clarity or --format libreview")
    module = clarity if fmt == CLARITY else libreview
    raw = read_bytes(path)
    digest = hashlib.sha256(raw).hexdigest()[:16]
    text, header_at, header = module.header(path, csv_text(raw))
    del raw
    column = module.timestamp_column(header)
    assert column is not None, "a header names its timestamp column"
    cells = None
    try:
        values = text.column(column)
    except (pd.errors.ParserError, ValueError):
        cells = text.whole()
        values = cells[column].to_numpy(dtype=object) if column in cells.columns else np.full(len(cells), "")
    texts = stripped(values)
    texts.iloc[: header_at + 1] = None
    given = texts.notna().to_numpy()
    local, order = module.local_times(path, texts[given], date_order)
    stamps = np.full(len(texts), np.datetime64("NaT"), dtype="datetime64[ns]")
    stamps[given] = local.to_numpy(dtype="datetime64[ns]")
    return CsvExport(
        fmt=fmt,
        timezone=timezone,
        date_order=order,
        lines=len(texts),
        digest=digest,
        now=now,
        text=text,
        header_at=header_at,
        header=header,
        stamps=stamps,
        ends=slice_ends(stamps, slice_records) if cells is None else None,
        cells=cells,
    )
