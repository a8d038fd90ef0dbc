"""A CSV export read a slice at a time, so that memory stays bounded by the slice, not the file.

A first pass reads only the timestamp column: how many records the file has, the date order of
LibreView dates (decided on the whole file), whether the file runs newest first, and where slices
end. Repeats, id ranks and autumn folds are all decided within one local day, so a slice holds
whole local days (whole months when it can, for each month partition to be written once); a file
whose days are not in runs (two devices' blocks of the same days) is read as one slice.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.io.parsers import TextFileReader

from engine.errors import SourceError
from engine.ingest.imports.detect import delimiter

SLICE_RECORDS = 50_000
"""Records per slice, cut where a local month ends (or a day, past twice as many)."""
_CHUNK = 20_000
_EXTRA_COLUMNS = 8
_BOM = b"\xef\xbb\xbf"


@dataclass
class CsvText:
    """The file's bytes and how to read them; each record's original text split out only when asked
    (a record is quoted in quarantine only)."""

    raw: bytes
    encoding: str
    delimiter: str
    width: int
    _originals: list[str] | None = field(default=None, repr=False)

    def original(self, position: int) -> str:
        """The text of record `position` as the file holds it."""
        if self._originals is None:
            self._originals = _split_records(self.raw.decode(self.encoding, errors="replace"), self.delimiter)
        return self._originals[position]

    def _read(self, width: int, **options: Any) -> Any:
        """pandas' reader of the records as text cells ("" when empty) in `width` columns. Raises
        pandas' ParserError or ValueError for rows wider than that (unless `usecols` picks some)."""
        return pd.read_csv(
            io.BytesIO(self.raw),
            sep=self.delimiter,
            header=None,
            names=list(range(width)),
            dtype=str,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
            encoding=self.encoding,
            encoding_errors="replace",
            **options,
        )

    def column(self, index: int) -> np.ndarray:
        """One column's cells of every record (a first pass reads the timestamps only)."""
        # Exactly the header's width: pandas refuses more names than any row has cells.
        cells: pd.DataFrame = self._read(self.width, usecols=[index])
        return cells[index].fillna("").to_numpy(dtype=object)

    def chunks(self, size: int) -> TextFileReader:
        """The records, `size` at a time."""
        reader: TextFileReader = self._read(self.width + _EXTRA_COLUMNS, chunksize=size)
        return reader

    def whole(self) -> pd.DataFrame:
        """Every record at once; the csv module reads rows of any width."""
        try:
            cells = self._read(self.width + _EXTRA_COLUMNS)
        except (pd.errors.ParserError, ValueError):
            return next(self.rows_after(0, size=None))
        cells = cells.fillna("")
        cells.index = pd.RangeIndex(len(cells))
        return cells

    def rows_after(self, offset: int, size: int | None) -> Iterator[pd.DataFrame]:
        """The records from position `offset` on, `size` at a time (all at once when None), read by
        the csv module, which takes rows of any width."""
        reader = csv.reader(
            io.StringIO(self.raw.decode(self.encoding, errors="replace")), delimiter=self.delimiter
        )
        for _ in range(offset):
            next(reader, None)
        while True:
            rows = list(itertools.islice(reader, size))
            if not rows and size is not None:
                return
            cells = pd.DataFrame(rows, dtype=object).fillna("")
            cells.index = pd.RangeIndex(offset, offset + len(rows))
            offset += len(rows)
            yield cells
            if size is None:
                return


def csv_text(raw: bytes) -> CsvText:
    """The file's bytes as UTF-8 (a byte-order mark dropped), else Windows-1252 as Excel saves it."""
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    encoding = "utf-8"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        encoding = "cp1252"
    return CsvText(raw=raw, encoding=encoding, delimiter=",", width=0)


def find_header(
    path: Path, source: CsvText, marker: str, is_header: Callable[[list[str]], bool], what: str, hint: str
) -> tuple[CsvText, int, list[str]]:
    """The file's text with its delimiter and width read from the first line holding `marker`, the
    position of its header among the first lines (found by `is_header`) and the header's cells. Raises
    SourceError naming `what` when there is none."""
    lines = source.raw[:65536].decode(source.encoding, errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines[:3]) if marker in line), 0)
    first = lines[start] if lines else ""
    sep = delimiter(first)
    width = len(next(csv.reader(io.StringIO(first), delimiter=sep), []))
    text = CsvText(raw=source.raw, encoding=source.encoding, delimiter=sep, width=width)
    head = _first_records(text, 3)
    for position in range(len(head)):
        cells = [str(c).strip() for c in head.iloc[position]]
        if is_header(cells):
            return text, position, cells
    raise SourceError(f"{path}: no {what} header in its first lines", hint)


def _first_records(text: CsvText, count: int) -> pd.DataFrame:
    rows = []
    reader = csv.reader(
        io.StringIO(text.raw[:65536].decode(text.encoding, errors="replace")), delimiter=text.delimiter
    )
    for row in reader:
        rows.append(row)
        if len(rows) == count:
            break
    return pd.DataFrame(rows, dtype=object).fillna("")


def stripped(values: np.ndarray) -> pd.Series:
    """Text cells stripped, None where empty."""
    trimmed = pc.utf8_trim_whitespace(pa.array(values, pa.string()))
    return pd.Series(
        pc.if_else(pc.equal(trimmed, ""), None, trimmed).to_numpy(zero_copy_only=False), dtype=object
    )


def slice_ends(stamps: np.ndarray, size: int = SLICE_RECORDS) -> list[int] | None:
    """Positions where slices of whole local days end (the last slice's end left out), from each
    record's naive local time (NaT where none); None when some day comes back after another, so that
    the file must be read as one slice."""
    valid = np.flatnonzero(~np.isnat(stamps))
    if len(valid) == 0:
        return []
    days = stamps[valid].astype("datetime64[D]")
    starts = np.concatenate(([0], np.flatnonzero(days[1:] != days[:-1]) + 1))
    if len(np.unique(days[starts])) != len(starts):
        return None
    months = days[starts].astype("datetime64[M]")
    ends: list[int] = []
    last = 0
    for i in range(1, len(starts)):
        position = int(valid[starts[i]])
        month_ends = months[i] != months[i - 1]
        if (month_ends and position - last >= size) or position - last >= 2 * size:
            ends.append(position)
            last = position
    if ends and len(stamps) - ends[-1] < size // 4:
        ends.pop()  # a short tail joins the slice before it: a slice costs a commit per table
    return ends


def sliced(text: CsvText, ends: list[int] | None) -> Iterator[pd.DataFrame]:
    """The file's records as text cells, indexed by position, a slice ending at each of `ends` and one
    after the last."""
    if ends is None:
        yield text.whole()
        return
    pending: list[pd.DataFrame] = []
    cuts = iter([*ends, None])
    cut = next(cuts)
    offset = 0
    for chunk in _chunks(text):
        offset += len(chunk)
        pending.append(chunk)
        while cut is not None and cut <= offset:
            buffered = pd.concat(pending) if len(pending) > 1 else pending[0]
            pending = [buffered.loc[cut:].copy()]  # a view would keep the slice read alive
            head = buffered.loc[: cut - 1]
            del buffered
            yield head
            del head
            cut = next(cuts)
    if pending:
        rest = pd.concat(pending) if len(pending) > 1 else pending[0]
        if len(rest) or offset == 0:
            yield rest


def _chunks(text: CsvText) -> Iterator[pd.DataFrame]:
    """The records as text cells in chunks indexed by position; from a row far wider than the header
    on, read by the csv module."""
    offset = 0
    try:
        with text.chunks(_CHUNK) as reader:
            for chunk in reader:
                chunk.index = pd.RangeIndex(offset, offset + len(chunk))
                offset += len(chunk)
                yield chunk.fillna("")
    except (pd.errors.ParserError, ValueError):
        yield from text.rows_after(offset, _CHUNK)


def _split_records(text: str, delimiter: str) -> list[str]:
    """Each CSV record's original text."""
    physical = text.splitlines()
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    originals: list[str] = []
    start = 0
    for _ in reader:
        end = reader.line_num
        originals.append(physical[start] if end == start + 1 else "\n".join(physical[start:end]))
        start = end
    return originals
