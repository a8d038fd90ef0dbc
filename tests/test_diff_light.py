"""The diff of a table whose dev is ahead of its main, read without pyiceberg (engine.lake.diff.metadata_diff over
engine.lake.manifest_files and engine.lake.avro), against the engine's (branch_diff, through pyiceberg).

On a real Iceberg lake in tmp_path written by engine.lake.store: a raw table with updated and new rows two
snapshots ahead, a partitioned model with a new column and a replaced month, an unpartitioned model emptied
on dev, a table whose dev equals its main, and one whose branches diverged. Every snapshot's files, schema
and lineage read from the manifests are pyiceberg's; each diff is the engine's; what the light reading
cannot answer exactly (diverged branches, damaged or foreign files) raises Unreadable, never another answer.
The command line's use of it is tested in tests/test_cli_light.py.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.errors import PromotionError
from engine.ingest.tables import GLUCOSE_ENTRIES
from engine.lake.avro import AvroError, read_container
from engine.lake.diff import branch_diff, metadata_diff
from engine.lake.files import _DUCKDB_TYPES
from engine.lake.manifest_files import (
    DUCKDB_TYPES,
    Unreadable,
    duckdb_columns,
    lineage,
    read_metadata,
    ref_snapshots,
    snapshot_files,
    snapshot_schema,
)
from engine.lake.store import Lake
from engine.lake.views import connect
from tests.simclock import START
from tests.test_lake import glucose_rows, model_rows

TIMEZONE = "America/New_York"
ENTRIES = GLUCOSE_ENTRIES.name
MONTHLY = "gold.monthly"
WHOLE = "marts.whole"
SAME = "gold.same"
DIVERGED = "gold.diverged"
AHEAD = (ENTRIES, MONTHLY, WHOLE)


def promote(lake: Lake, name: str) -> None:
    head = lake.snapshot_id(name, "dev")
    assert head is not None
    lake.set_branch(name, "main", head)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    lake = Lake(tmp_path_factory.mktemp("difflight") / "lake")
    start = START - timedelta(days=40)
    lake.ensure_table(GLUCOSE_ENTRIES)
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(start, 400))
    promote(lake, ENTRIES)
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(start, 10, sgv=200, run_id="run-2"))  # ten rows updated
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(start + timedelta(days=30), 20, run_id="run-3"))

    lake.write_model(MONTHLY, model_rows({"2024-01": 3, "2024-02": 2}), partition_by="reading_month")
    promote(lake, MONTHLY)
    changed = model_rows({"2024-02": 4}, value=7.0).append_column("note", [["a", None, "b", "c"]])
    lake.write_model(MONTHLY, changed, partition_by="reading_month", partitions=["2024-02"])

    lake.write_model(WHOLE, model_rows({"2024-03": 5}))
    promote(lake, WHOLE)
    lake.write_model(WHOLE, model_rows({"2024-03": 5}).slice(0, 0))

    lake.write_model(SAME, model_rows({"2024-01": 2}))
    promote(lake, SAME)

    lake.write_model(DIVERGED, model_rows({"2024-01": 2}))
    promote(lake, DIVERGED)
    lake.write_model(DIVERGED, model_rows({"2024-01": 3}), branch="main")
    lake.write_model(DIVERGED, model_rows({"2024-01": 4}), branch="dev")
    yield lake


def metadata(lake: Lake, name: str) -> dict[str, object]:
    return read_metadata(lake.metadata_location(name))


def test_the_light_diff_is_the_engines(lake: Lake) -> None:
    con = connect(TIMEZONE)
    manifests: dict[str, list[str]] = {}
    expected = branch_diff(lake, [*AHEAD, SAME], TIMEZONE)
    for engines in expected:
        heads = ref_snapshots(metadata(lake, engines.table))
        assert (heads.get("main"), heads.get("dev")) == (engines.main_snapshot, engines.dev_snapshot)
        if engines.table == SAME:
            assert heads["main"] == heads["dev"] and not engines.changed
            continue
        light = metadata_diff(
            con, engines.table, metadata(lake, engines.table), heads["main"], heads["dev"], manifests
        )
        assert light == engines, engines.table
    diffs = {d.table: d for d in expected}
    # What the lake holds: each kind of change is there to be compared.
    assert diffs[ENTRIES].snapshots_ahead >= 2, "two merges, each one snapshot or more"
    assert (diffs[ENTRIES].rows_added, diffs[ENTRIES].rows_removed) == (30, 10)
    assert len(diffs[ENTRIES].days_touched) == 2
    assert diffs[MONTHLY].schema_changes == ("added note string",)
    assert (diffs[MONTHLY].rows_added, diffs[MONTHLY].rows_removed) == (4, 2)
    assert (diffs[WHOLE].rows_added, diffs[WHOLE].rows_removed, diffs[WHOLE].days_touched) == (
        0,
        5,
        ("2024-03-01",),
    )


def test_every_snapshot_reads_as_pyiceberg_reads_it(lake: Lake) -> None:
    checked = 0
    for name in (*AHEAD, SAME, DIVERGED):
        table = metadata(lake, name)
        heads = ref_snapshots(table)
        assert heads == {b: lake.snapshot_id(name, b) for b in ("main", "dev")}, name
        assert lineage(table, heads["dev"]) == [s.snapshot_id for s in lake.history(name, "dev")]
        for snapshot in table["snapshots"]:  # type: ignore[attr-defined]
            snapshot_id = int(snapshot["snapshot-id"])
            # Sorted: the engine gives the files of a snapshot it wrote itself in the order it remembers.
            assert sorted(snapshot_files(table, snapshot_id)) == sorted(
                lake.snapshot_files(name, snapshot_id)
            )
            assert snapshot_schema(table, snapshot_id) == lake.snapshot_schema(name, snapshot_id), name
            columns = duckdb_columns(snapshot_schema(table, snapshot_id))
            assert columns == lake.snapshot_columns(name, snapshot_id), name
            checked += 1
    assert checked >= 12


def test_the_type_names_are_the_engines() -> None:
    assert {str(kind()): duckdb for kind, duckdb in _DUCKDB_TYPES.items()} == DUCKDB_TYPES


def test_diverged_branches_are_left_to_the_engine(lake: Lake) -> None:
    with pytest.raises(PromotionError, match="not an ancestor"):
        branch_diff(lake, [DIVERGED], TIMEZONE)
    table = metadata(lake, DIVERGED)
    heads = ref_snapshots(table)
    with pytest.raises(Unreadable, match="not an ancestor"):
        metadata_diff(connect(TIMEZONE), DIVERGED, table, heads["main"], heads["dev"])


def test_damaged_or_foreign_files_are_unreadable(lake: Lake, tmp_path: Path) -> None:
    table = metadata(lake, ENTRIES)
    dev = ref_snapshots(table)["dev"]
    snapshot = next(s for s in table["snapshots"] if s["snapshot-id"] == dev)  # type: ignore[attr-defined]
    good = Path(snapshot["manifest-list"].removeprefix("file://"))
    header, records = read_container(good.read_bytes())
    assert header["avro.codec"] == b"deflate" and records and "manifest_path" in records[0]

    damaged = {
        "truncated": good.read_bytes()[:-30],
        "not avro": b"PAR1" + good.read_bytes()[4:],
        "snappy": good.read_bytes().replace(b"\x0edeflate", b"\x0csnappy", 1),
        "bad sync": good.read_bytes()[:-1] + bytes([good.read_bytes()[-1] ^ 0xFF]),
    }
    for what, data in damaged.items():
        with pytest.raises(AvroError):
            read_container(data)
        copy = tmp_path / f"{what.replace(' ', '-')}.avro"
        copy.write_bytes(data)
        snapshot["manifest-list"] = copy.as_uri()
        with pytest.raises(Unreadable):
            snapshot_files(table, dev)
    for location in ("s3://bucket/snap.avro", str(tmp_path / "gone.avro")):
        snapshot["manifest-list"] = location
        with pytest.raises(Unreadable):
            snapshot_files(table, dev)
    with pytest.raises(Unreadable, match="not a local file"):
        read_metadata("s3://bucket/table/metadata/00001.metadata.json")
    location = Path(lake.metadata_location(ENTRIES))
    shutil.copy(location, tmp_path / "cut.metadata.json")
    (tmp_path / "cut.metadata.json").write_text(location.read_text()[:-10])
    with pytest.raises(Unreadable):
        read_metadata(str(tmp_path / "cut.metadata.json"))
    assert json.loads(location.read_text())["refs"], "the table's own metadata is untouched"


def zigzag(n: int) -> bytes:
    """An Avro int or long."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out) + bytes([n])


def text(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return zigzag(len(raw)) + raw


def container(schema: dict[str, object], records: list[bytes], codec: str = "deflate") -> bytes:
    """An Avro object container file of encoded `records`, in one block (the test's own writer, after the
    specification, not pyiceberg's)."""
    sync = bytes(range(16))
    header = b"Obj\x01" + zigzag(2)
    header += text("avro.schema") + text(json.dumps(schema)) + text("avro.codec") + text(codec) + zigzag(0)
    body = b"".join(records)
    if codec == "deflate":
        compressor = zlib.compressobj(wbits=-15)
        body = compressor.compress(body) + compressor.flush()
    return header + sync + zigzag(len(records)) + zigzag(len(body)) + body + sync


def test_every_avro_type_is_read_or_skipped_after_the_specification() -> None:
    """Types Iceberg's manifests do not use as well: enums, fixed, maps, floats, and an array written in a
    block with its byte size (a negative count), read whole and skipped."""
    schema = {
        "type": "record",
        "name": "r",
        "fields": [
            {"name": "flag", "type": "boolean"},
            {"name": "kind", "type": {"type": "enum", "name": "e", "symbols": ["a", "b", "c"]}},
            {"name": "tag", "type": {"type": "fixed", "name": "f", "size": 3}},
            {"name": "ratios", "type": {"type": "map", "values": "double"}},
            {"name": "sizes", "type": {"type": "array", "items": "long"}},
            {"name": "weight", "type": "float"},
            {"name": "note", "type": ["null", "string"]},
            {
                "name": "inner",
                "type": {"type": "record", "name": "i", "fields": [{"name": "n", "type": "int"}]},
            },
        ],
    }
    sizes = zigzag(-2) + zigzag(len(zigzag(300) + zigzag(-5))) + zigzag(300) + zigzag(-5) + zigzag(0)
    record = (
        b"\x01"
        + zigzag(2)
        + b"xyz"
        + zigzag(1)
        + text("k")
        + struct.pack("<d", 0.5)
        + zigzag(0)
        + sizes
        + struct.pack("<f", 1.5)
        + zigzag(1)
        + text("héllo")
        + zigzag(-70000)
    )
    whole = {
        "flag": True,
        "kind": "c",
        "tag": b"xyz",
        "ratios": {"k": 0.5},
        "sizes": [300, -5],
        "weight": 1.5,
        "note": "héllo",
        "inner": {"n": -70000},
    }
    for codec in ("null", "deflate"):
        data = container(schema, [record, record], codec)
        assert read_container(data)[1] == [whole, whole]
        assert (
            read_container(data, {"note": None, "inner": {"n": None}})[1]
            == [{"note": "héllo", "inner": {"n": -70000}}] * 2
        )
        assert read_container(data, {"flag": None})[1] == [{"flag": True}] * 2
    with pytest.raises(AvroError):
        read_container(container(schema, [record[:-1], record]))
