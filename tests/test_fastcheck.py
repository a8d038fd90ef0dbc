"""engine/fastcheck.py says "pass" exactly when pandera does: on what a real run validates, and on
mutations of it that break each rule of every schema in schemas/ one at a time; the gates' and the
ingest's results are those of the pandera-only path."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pyarrow
import pytest
from pandera.errors import ParserError, SchemaErrors

from engine import fastcheck
from engine.api.facade import Engine
from engine.config import load_settings
from engine.fastcheck import FrameCheckFailure
from engine.fastcheck import evaluate as fast_evaluate
from engine.fastcheck import passes as fast_passes
from engine.ingest import sources
from engine.ingest.validation import RawSpec, ValidatedBatch
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from engine.transform import layers, quality
from schemas import TABLE_SCHEMAS
from tests.module_env import engine_env
from tests.simclock import Clock

READINGS_KEPT = 30
RAW_KEPT = 10


@dataclass
class RunInputs:
    """What one real run handed to validate_records and to the gates' schema_checks."""

    raw: dict[str, tuple[RawSpec, list[object], dict[str, Any]]] = field(default_factory=dict)
    tables: dict[str, pyarrow.Table] = field(default_factory=dict)


@pytest.fixture(scope="module")
def run_inputs(tmp_path_factory: pytest.TempPathFactory) -> RunInputs:
    """Three days from the simulator (treatments and temp basals too), ingested, built and gated by the
    real engine, with what its validation steps were given recorded on the way."""
    inputs = RunInputs()
    path = tmp_path_factory.mktemp("fastcheck")
    real_validate, real_schema_checks = sources.validate_records, layers.schema_checks

    def record_raw(spec: RawSpec, records: Any, **kwargs: Any) -> ValidatedBatch:
        inputs.raw.setdefault(spec.table.name, (spec, list(records), kwargs))
        return real_validate(spec, records, **kwargs)

    def record_table(model: Any, table: str, rows: pyarrow.Table) -> list[quality.CheckResult]:
        inputs.tables.setdefault(table, rows)
        return real_schema_checks(model, table, rows)

    with (
        pytest.MonkeyPatch.context() as mp,
        SimulatorServer(GlucoseSimulator(seed=5, clock=Clock())) as server,
    ):
        engine_env(mp, path, server.url)
        mp.setattr(sources, "validate_records", record_raw)
        mp.setattr(layers, "schema_checks", record_table)
        with Engine(load_settings()) as engine:
            assert engine.run_now().status.value == "succeeded"
    assert set(inputs.tables) == set(TABLE_SCHEMAS)
    assert {"raw.glucose_entries", "raw.treatments"} <= set(inputs.raw)
    return inputs


@pytest.fixture
def pandera_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The product as it was before the fast path: every validation through pandera."""
    without_fast_path(monkeypatch)
    yield


def without_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastcheck, "passes", lambda schema, frame: False)
    monkeypatch.setattr(fastcheck, "evaluate", lambda schema, frame: None)


# -- the gates' tables -----------------------------------------------------------------------------


def base_table(name: str, model: Any, rows: pyarrow.Table) -> pyarrow.Table:
    """The run's output without the rows pandera flags (days of partial coverage), a long one cut
    to its first rows (its checks are per row, or per table on tables that stay whole)."""
    if name == "gold.fct_hourly_glucose_profile":
        # Three days cannot make an hour representative (70 % of 14 days x 12 readings): give every
        # hour the count 14 days would.
        rows = rows.set_column(1, "reading_count", pyarrow.array([14 * 12] * rows.num_rows, pyarrow.int64()))
    try:
        model.validate(rows.to_pandas(), lazy=True)
    except SchemaErrors as errors:
        flagged = set(errors.failure_cases["index"])
        assert None not in flagged, "only rows are flagged"
        rows = rows.filter(pyarrow.array([i not in flagged for i in range(rows.num_rows)]))
    return rows.slice(0, READINGS_KEPT) if rows.num_rows > 2 * READINGS_KEPT else rows


def put(
    table: pyarrow.Table, name: str, row: int, value: object, type_: pyarrow.DataType | None = None
) -> pyarrow.Table:
    """`table` with column `name`'s value at `row` replaced (the column cast to `type_` if given)."""
    values = table.column(name).to_pylist()
    if type_ is not None:
        values = [None if v is None else _as(type_, v) for v in values]
    values[row] = value
    column = pyarrow.array(values, type=type_ or table.schema.field(name).type)
    return table.set_column(table.column_names.index(name), name, column)


def _as(type_: pyarrow.DataType, value: object) -> object:
    return value.isoformat() if hasattr(value, "isoformat") and pyarrow.types.is_string(type_) else str(value)


def bound_breakers(check: pa.Check, type_: pyarrow.DataType) -> list[object]:
    """Values that break a Field check: beyond its bound, or on it for a strict one."""
    stats = check.statistics
    whole = pyarrow.types.is_integer(type_)
    if check.name == "greater_than_or_equal_to":
        return [math.ceil(stats["min_value"]) - 1 if whole else stats["min_value"] - 1e-9]
    if check.name == "greater_than":
        return [stats["min_value"]]
    if check.name == "less_than_or_equal_to":
        return [math.floor(stats["max_value"]) + 1 if whole else stats["max_value"] + 1e-9]
    if check.name == "less_than":
        return [stats["max_value"]]
    if check.name == "isin":
        return ["not one of them"]
    if check.name == "str_matches":
        return ["2026-13"]
    raise AssertionError(f"no mutation breaks {check.name}: add one")


def nudged(value: object, type_: pyarrow.DataType) -> list[object]:
    """Values near and far from `value` that break the relations dataframe checks hold."""
    if value is None:  # a value where there was none, far from any the checks allow
        value = 1000
    if pyarrow.types.is_boolean(type_):
        return [not value]
    if pyarrow.types.is_integer(type_):
        return [int(value) + 500]  # type: ignore[call-overload]
    if pyarrow.types.is_floating(type_):
        return [float(value) + 0.004]  # type: ignore[arg-type]
    if pyarrow.types.is_string(type_):
        return [f"{value}x"]
    if pyarrow.types.is_timestamp(type_) or pyarrow.types.is_date(type_):
        return [value + timedelta(days=1)]  # type: ignore[operator]
    raise AssertionError(f"no nudge for {type_}")


def mutations(schema: pa.DataFrameSchema, table: pyarrow.Table) -> Iterator[tuple[str, pyarrow.Table]]:
    """`table` changed one way at a time: every column null, of another type, repeated, at and
    beyond each of its Field bounds, nudged; a column missing or added; rows dropped."""
    names = list(schema.columns)
    yield "no rows", table.slice(0, 0)
    yield "first row dropped", table.slice(1)
    yield "extra column", table.append_column("unexpected", pyarrow.array([1] * table.num_rows))
    for name in (names[0], names[-1]):
        yield f"{name} missing", table.drop_columns([name])
    text_tried: set[pyarrow.DataType] = set()
    for name, column in schema.columns.items():
        type_ = table.schema.field(name).type
        first = table.column(name)[0].as_py()
        yield f"{name} null", put(table, name, 0, None)
        if not pyarrow.types.is_string(type_) and type_ not in text_tried:  # once per type
            text_tried.add(type_)
            yield f"{name} junk text", put(table, name, 0, "junk", pyarrow.string())
            yield f"{name} as text", put(table, name, 0, _as(pyarrow.string(), first), pyarrow.string())
        if column.unique and table.num_rows > 1:
            yield f"{name} repeated", put(table, name, 1, first)
        for check in column.checks:
            for value in bound_breakers(check, type_):
                yield f"{name} {check.name} {value!r}", put(table, name, 0, value)
        last = table.num_rows - 1  # the first row of a series often lacks its relations (no previous reading)
        for value in nudged(table.column(name)[last].as_py(), type_):
            yield f"{name} nudged to {value!r}", put(table, name, last, value)


def null_survives(column: pa.Column) -> bool:
    """Whether a null stays null through the column's coercion (bool coercion makes it False; a
    failed coercion leaves it as it was)."""
    try:
        return bool(column.dtype.try_coerce(pd.Series([None, None], dtype=object)).hasnans)
    except ParserError:
        return True


def reported(check: pa.Check) -> str:
    """How schema_checks names a Field check (pandera's error text) or a custom one (its name)."""
    return str(check.error) if check.error is not None else str(check.name)


@pytest.mark.slow
@pytest.mark.parametrize("table_name", list(TABLE_SCHEMAS))
def test_fast_verdict_is_panderas_on_every_mutation_of_a_gate_table(
    run_inputs: RunInputs, table_name: str, pandera_only: None
) -> None:
    model = TABLE_SCHEMAS[table_name]
    schema = model.to_schema()
    table = base_table(table_name, model, run_inputs.tables[table_name])
    assert table.num_rows > 0, "the run built rows for every gated table"
    assert quality.schema_checks(model, table_name, table) == []
    assert fast_passes(schema, table.to_pandas()), "a clean table takes the fast path"
    broken: set[tuple[str, str | None]] = set()
    disagreements = []
    reported_without_pandera = 0
    for label, mutated in mutations(schema, table):
        results = quality.schema_checks(model, table_name, mutated)  # pandera alone
        broken |= {(r.check, r.column) for r in results}
        frame = mutated.to_pandas()
        if fast_passes(schema, frame) != (results == []):
            disagreements.append((label, [(r.check, r.column) for r in results]))
        if isinstance(fast_evaluate(schema, frame), FrameCheckFailure):
            reported_without_pandera += 1
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(fastcheck, "evaluate", fast_evaluate)
                if quality.schema_checks(model, table_name, mutated) != results:
                    disagreements.append((f"{label}, reported", [(r.check, r.column) for r in results]))
    assert disagreements == []
    assert reported_without_pandera > 0 or not schema.checks, "a failing frame check is reported quickly"
    expected = {("column_in_dataframe", None), ("column_in_schema", None)}
    for name, column in schema.columns.items():
        expected |= {(reported(check), name) for check in column.checks}
        if not column.nullable and null_survives(column):
            expected.add(("not_nullable", name))
        if column.unique:
            expected.add(("field_uniqueness", name))
    expected |= {(reported(check), None) for check in schema.checks}
    assert expected - broken == set(), "every rule is broken by at least one mutation"
    assert any(check.startswith(("coerce_dtype", "dtype")) for check, _ in broken)


@pytest.mark.parametrize("table_name", list(TABLE_SCHEMAS))
def test_schema_checks_results_are_the_pandera_only_ones(
    run_inputs: RunInputs, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = TABLE_SCHEMAS[table_name]
    table = run_inputs.tables[table_name]
    first = table.column_names[0]
    # The whole output as the gate saw it, and with a few rules broken at once.
    broken = put(put(table, first, 0, None), table.column_names[-1], table.num_rows - 1, None)
    fast = [quality.schema_checks(model, table_name, t) for t in (table, broken)]
    without_fast_path(monkeypatch)
    assert fast == [quality.schema_checks(model, table_name, t) for t in (table, broken)]
    assert fast[1] != []


# -- raw records ----------------------------------------------------------------------------------

# Every kind of JSON value, and for a number or a text the values beyond its checks' bounds.
RAW_KINDS: tuple[object, ...] = (None, "junk", True, [1])
RAW_NUMBERS: tuple[object, ...] = (12.5, -1, 700, 10**13)
RAW_TEXTS = ("", "2026-05-13T10:00:00", "1999-12-31T23:00:00Z", "2100-01-01T00:00:00Z")
REMOVED = object()


def raw_base(spec: RawSpec, records: list[object], now: Any) -> list[dict[str, Any]]:
    """Records of the run that pass every check, of as many kinds (eventType, type) as there are."""
    clean: dict[object, dict[str, Any]] = {}
    for record in records:
        assert isinstance(record, dict)
        kind = record.get("eventType", record.get("type"))
        if len(clean) < RAW_KEPT and kind not in clean and not validate(spec, [record], now).results:
            clean[kind] = record
    for record in records:  # more of the commonest kind, for uniqueness and order
        if (
            len(clean) < RAW_KEPT
            and record not in clean.values()
            and not validate(spec, [record], now).results
        ):
            clean[len(clean)] = record
    return list(clean.values())


def validate(spec: RawSpec, records: list[Any], now: Any) -> ValidatedBatch:
    return sources.validate_records(spec, records, run_id="r", source="test", now=now, ingested_at=now)


def raw_mutations(spec: RawSpec, base: list[dict[str, Any]]) -> Iterator[tuple[str, list[Any]]]:
    """The records with one value of one record changed: every raw key set to every kind of JSON
    value (or removed); an _id repeated."""
    yield "repeated _id", [*base, {**base[1], "_id": base[0]["_id"]}]
    if "type" in spec.source_keys:  # an entry of each kind without its value
        for kind in ("sgv", "mbg"):
            yield f"type={kind} without {kind}", [{**base[0], "type": kind, kind: None}, *base[1:]]
    for keys in spec.source_keys.values():
        key = keys[0]
        extremes = RAW_TEXTS if isinstance(base[0].get(key), str) else RAW_NUMBERS
        for value in (REMOVED, *RAW_KINDS, *extremes):
            changed = copy.deepcopy(base)
            if value is REMOVED:
                changed[0].pop(key, None)
            else:
                changed[0][key] = value
            yield f"{key}={'removed' if value is REMOVED else repr(value)[:20]}", changed


@pytest.mark.slow
@pytest.mark.parametrize("table_name", ["raw.glucose_entries", "raw.treatments"])
def test_fast_verdict_is_panderas_on_every_mutation_of_raw_records(
    run_inputs: RunInputs, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, records, kwargs = run_inputs.raw[table_name]
    now = kwargs["now"]
    frames: list[pd.DataFrame] = []

    def pandera_alone(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> bool:
        frames.append(frame.copy())
        return False

    monkeypatch.setattr(fastcheck, "passes", pandera_alone)
    base = raw_base(spec, records, now)
    assert validate(spec, base, now).results == ()
    assert fastcheck.passes is pandera_alone
    broken: set[str] = set()
    disagreements = []
    for label, mutated in raw_mutations(spec, base):
        frames.clear()
        results = validate(spec, mutated, now).results
        broken |= {r.check for r in results}
        (frame,) = frames
        monkeypatch.undo()
        if fast_passes(spec.schema, frame) != (results == ()):
            disagreements.append((label, [r.check for r in results]))
        monkeypatch.setattr(fastcheck, "passes", pandera_alone)
    assert disagreements == []
    expected = {check.name for check in spec.schema.checks}
    for name, column in spec.schema.columns.items():
        expected |= {f"{name}_{check.name}" for check in column.checks}
        if not column.nullable:
            expected.add(f"{name}_not_null")
    assert expected - broken == set(), "every rule is broken by at least one mutation"


@pytest.mark.parametrize("table_name", ["raw.glucose_entries", "raw.treatments"])
def test_validate_records_is_the_pandera_only_result(
    run_inputs: RunInputs, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, records, kwargs = run_inputs.raw[table_name]
    base = raw_base(spec, records, kwargs["now"])
    batches = [records, base, [*base[:3], *(m for _, m in list(raw_mutations(spec, base))[1:6]), *base[3:]]]
    fast = [sources.validate_records(spec, b, **kwargs) for b in batches]
    without_fast_path(monkeypatch)
    alone = [sources.validate_records(spec, b, **kwargs) for b in batches]
    assert fast == alone
    assert fast[1].results == () and fast[1].valid.num_rows == len(base)


# -- schema features the project's schemas do not use yet ------------------------------------------


def verdicts(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> tuple[bool, bool]:
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors:
        pandera = False
    else:
        pandera = True
    return fast_passes(schema, frame), pandera


FRAME = pd.DataFrame({"a": [1.0, 2.0, None], "b": ["x", "y", "z"]})


@pytest.mark.parametrize(
    ("label", "schema", "frame"),
    [
        (
            "element-wise column check",
            pa.DataFrameSchema(
                {
                    "a": pa.Column(
                        float, pa.Check(lambda v: isinstance(v, float), element_wise=True), nullable=True
                    )
                }
            ),
            FRAME[["a"]],
        ),
        (
            "element-wise check that fails",
            pa.DataFrameSchema(
                {"a": pa.Column(float, pa.Check(lambda v: v > 1, element_wise=True), nullable=True)}
            ),
            FRAME[["a"]],
        ),
        (
            "check that sees nulls",
            pa.DataFrameSchema(
                {"a": pa.Column(float, pa.Check(lambda s: s > 0, ignore_na=False), nullable=True)}
            ),
            FRAME[["a"]],
        ),
        (
            "check that sees no nulls",
            pa.DataFrameSchema({"a": pa.Column(float, pa.Check(lambda s: s.notna()), nullable=True)}),
            FRAME[["a"]],
        ),
        (
            "scalar true",
            pa.DataFrameSchema({"a": pa.Column(float, pa.Check(lambda s: True), nullable=True)}),
            FRAME[["a"]],
        ),
        (
            "scalar false",
            pa.DataFrameSchema({"a": pa.Column(float, pa.Check(lambda s: False), nullable=True)}),
            FRAME[["a"]],
        ),
        (
            "ndarray output",
            pa.DataFrameSchema(
                {"a": pa.Column(float, pa.Check(lambda s: (s > 0).to_numpy()), nullable=True)}
            ),
            FRAME[["a"]],
        ),
        (
            "check that raises",
            pa.DataFrameSchema({"a": pa.Column(float, pa.Check(lambda s: s.no_such), nullable=True)}),
            FRAME[["a"]],
        ),
        (
            "element-wise frame check",
            pa.DataFrameSchema(
                {"b": pa.Column(str)},
                checks=pa.Check(lambda row: isinstance(row["b"], str), element_wise=True),
            ),
            FRAME[["b"]],
        ),
        (
            "frame check on a row of nulls",
            pa.DataFrameSchema(
                {"a": pa.Column(float, nullable=True)}, checks=pa.Check(lambda df: df["a"] > 0)
            ),
            FRAME[["a"]],
        ),
        (
            "frame check output as a frame",
            pa.DataFrameSchema(
                {"a": pa.Column(float, nullable=True)}, checks=pa.Check(lambda df: df.notna())
            ),
            FRAME[["a"]],
        ),
        (
            "groupby check",
            pa.DataFrameSchema(
                {
                    "a": pa.Column(float, nullable=True),
                    "b": pa.Column(str, pa.Check(lambda g: True, groupby="a")),
                }
            ),
            FRAME,
        ),
        ("regex column", pa.DataFrameSchema({"[ab]": pa.Column(regex=True, nullable=True)}), FRAME),
        ("default", pa.DataFrameSchema({"a": pa.Column(float, default=0.0)}), FRAME[["a"]]),
        (
            "index",
            pa.DataFrameSchema({"a": pa.Column(float, nullable=True)}, index=pa.Index(int)),
            FRAME[["a"]],
        ),
        ("not strict, extra column", pa.DataFrameSchema({"a": pa.Column(float, nullable=True)}), FRAME),
        (
            "filtering strictness",
            pa.DataFrameSchema({"a": pa.Column(float, nullable=True)}, strict="filter"),
            FRAME,
        ),
        (
            "optional column absent",
            pa.DataFrameSchema({"a": pa.Column(float, nullable=True), "c": pa.Column(int, required=False)}),
            FRAME,
        ),
        (
            "coerced to text",
            pa.DataFrameSchema({"a": pa.Column(str, nullable=True)}, coerce=True),
            FRAME[["a"]],
        ),
        ("coercion that fails", pa.DataFrameSchema({"b": pa.Column(float)}, coerce=True), FRAME[["b"]]),
        ("wrong dtype", pa.DataFrameSchema({"a": pa.Column(int, nullable=True)}), FRAME[["a"]]),
        (
            "warning check that fails",
            pa.DataFrameSchema(
                {"a": pa.Column(float, pa.Check(lambda s: s > 1, raise_warning=True), nullable=True)}
            ),
            FRAME[["a"]],
        ),
    ],
)
def test_fast_verdict_on_other_schema_features(
    label: str, schema: pa.DataFrameSchema, frame: pd.DataFrame
) -> None:
    fast, pandera = verdicts(schema, frame)
    assert not fast or pandera, f"{label}: the fast path passed what pandera fails"
    if label in UNVOUCHED:
        assert (fast, pandera) == (False, True), f"{label} is not left to pandera any more"
    else:
        assert fast == pandera, f"{label}: fast {fast}, pandera {pandera}"


UNVOUCHED = {
    # What the fast path leaves to pandera although pandera passes it.
    "frame check output as a frame",
    "groupby check",
    "regex column",
    "default",
    "index",
    "filtering strictness",
    "optional column absent",
    "warning check that fails",
}


def test_a_clean_frame_is_left_as_it_was(run_inputs: RunInputs) -> None:
    table = run_inputs.tables["silver.fct_glucose_readings"]
    frame = table.to_pandas()
    before = frame.copy()
    assert fast_passes(TABLE_SCHEMAS["silver.fct_glucose_readings"].to_schema(), frame)
    pd.testing.assert_frame_equal(frame, before)
