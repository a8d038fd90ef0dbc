"""Tests of raw glucose entry validation: quarantine reasons, warnings, Arrow schemas, accounting."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pandera.config
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ValidationError
from engine.ingest.tables import GLUCOSE_ENTRIES, GLUCOSE_QUARANTINE
from engine.ingest.validation import (
    MAX_SAMPLES,
    CheckResult,
    Severity,
    ValidatedBatch,
    validate_glucose_entries,
)
from schemas.raw import DIRECTIONS, RAW_GLUCOSE_ENTRIES_SCHEMA, RawGlucoseEntries, check_severity

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
HOUR_MS = 3_600_000


def entry(number: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid sgv entry as the API sends it; `changes` set keys, a value of ... removes one."""
    base: dict[str, Any] = {
        "_id": f"5f1e{number:020x}",
        "type": "sgv",
        "date": NOW_MS - 300_000 * (number + 1),
        "dateString": "2025-06-15T11:55:00.000Z",
        "sysTime": "2025-06-15T11:55:00.000Z",
        "utcOffset": 0,
        "sgv": 120,
        "direction": "Flat",
        "trend": 4,
        "noise": 1,
        "filtered": 151_000.5,
        "unfiltered": 150_000.25,
        "rssi": 100,
        "device": "xDrip-DexcomG6",
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not ...}


def validate(entries: list[Any], **kwargs: Any) -> ValidatedBatch:
    return validate_glucose_entries(entries, run_id="run-1", source="test.json", now=NOW, **kwargs)


def result(batch: ValidatedBatch, check: str) -> CheckResult:
    return next(r for r in batch.results if r.check == check)


def assert_accounted(entries: list[Any], batch: ValidatedBatch) -> None:
    """Every entry is in valid or quarantine exactly once, and nothing valid breaks an error rule."""
    assert batch.input_count == len(entries) == batch.valid.num_rows + batch.quarantine.num_rows
    assert batch.valid.schema.equals(GLUCOSE_ENTRIES.arrow_schema, check_metadata=True)
    assert batch.quarantine.schema.equals(GLUCOSE_QUARANTINE.arrow_schema, check_metadata=True)
    first_with_id: dict[str, Any] = {}
    for item in entries:
        if isinstance(item, dict) and isinstance(item.get("_id"), str):
            first_with_id.setdefault(item["_id"], item)
    valid_ids = batch.valid.column("_id").to_pylist()
    assert len(set(valid_ids)) == len(valid_ids)
    kept = [canonical(first_with_id[entry_id]) for entry_id in valid_ids]
    quarantined = [
        canonical(json.loads(payload)) for payload in batch.quarantine.column("payload").to_pylist()
    ]
    assert Counter(kept) + Counter(quarantined) == Counter(canonical(item) for item in entries)
    for row in batch.valid.to_pylist():
        assert isinstance(row["_id"], str) and row["_id"]
        assert row["type"] in ("sgv", "mbg", "cal")
        assert 946_684_800_000 <= row["date"] <= NOW_MS + HOUR_MS
        assert row["reading_ts"] == datetime.fromtimestamp(row["date"] / 1000, UTC)
        for glucose in ("sgv", "mbg"):
            assert row[glucose] is None or 1 <= row[glucose] <= 1000
            assert row["type"] != glucose or row[glucose] is not None
    assert set(batch.quarantine.column("severity").to_pylist()) <= {"error"}


def json_safe(value: Any) -> Any:
    """The test's own model of a payload: JSON values as they are, anything else repr'd."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key if isinstance(key, str) else repr(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return repr(value)


def canonical(value: Any) -> str:
    return json.dumps(json_safe(value), sort_keys=True)


# --- the bad-entry corpus: each lands in quarantine with its reason ----------------------------

BAD_ENTRIES = [
    pytest.param(entry(_id=...), "_id_not_null", "_id missing", id="missing _id"),
    pytest.param(entry(_id=None), "_id_not_null", "_id=null", id="null _id"),
    pytest.param(entry(_id=12345), "_id_is_string", "_id=12345", id="integer _id"),
    pytest.param(entry(_id={"$oid": "5f1e" + "0" * 20}), "_id_is_string", '_id={"$oid"', id="mongo _id"),
    pytest.param(entry(_id=""), "_id_is_string", '_id=""', id="empty _id"),
    pytest.param(entry(type=...), "type_not_null", "type missing", id="missing type"),
    pytest.param(entry(type="treatment"), "type_allowed", 'type="treatment"', id="unknown type"),
    pytest.param(entry(type=1), "type_allowed", "type=1", id="numeric type"),
    pytest.param(entry(sgv="abc"), "sgv_is_integer", 'sgv="abc"', id="sgv abc"),
    pytest.param(entry(sgv=12.5), "sgv_is_integer", "sgv=12.5", id="sgv 12.5"),
    pytest.param(entry(sgv="12.5"), "sgv_is_integer", 'sgv="12.5"', id="sgv string 12.5"),
    pytest.param(entry(sgv=True), "sgv_is_integer", "sgv=true", id="sgv bool"),
    pytest.param(entry(sgv=[120]), "sgv_is_integer", "sgv=[120]", id="sgv list"),
    pytest.param(entry(sgv={"$numberInt": "120"}), "sgv_is_integer", "sgv={", id="sgv object"),
    pytest.param(entry(sgv=float("inf")), "sgv_is_integer", 'sgv="inf"', id="sgv infinity"),
    pytest.param(entry(sgv=0), "sgv_in_range", "sgv=0", id="sgv 0"),
    pytest.param(entry(sgv="0"), "sgv_in_range", 'sgv="0"', id="sgv string 0"),
    pytest.param(entry(sgv=1001), "sgv_in_range", "sgv=1001", id="sgv 1001"),
    pytest.param(entry(sgv=-5), "sgv_in_range", "sgv=-5", id="sgv negative"),
    pytest.param(entry(sgv=10**400), "sgv_is_integer", "sgv=1000000", id="sgv beyond float"),
    pytest.param(entry(sgv=...), "sgv_required", "sgv missing", id="sgv missing on type sgv"),
    pytest.param(entry(sgv=None), "sgv_required", "sgv=null", id="sgv null on type sgv"),
    pytest.param(entry(type="mbg", sgv=...), "mbg_required", "mbg missing", id="mbg missing on type mbg"),
    pytest.param(entry(type="mbg", sgv=..., mbg=0), "mbg_in_range", "mbg=0", id="mbg 0"),
    pytest.param(entry(type="mbg", sgv=..., mbg="x"), "mbg_is_integer", 'mbg="x"', id="mbg junk"),
    pytest.param(entry(date=...), "date_not_null", "date missing", id="date missing"),
    pytest.param(entry(date="2015-06-11"), "date_is_integer", 'date="2015-06-11"', id="date iso string"),
    pytest.param(entry(date=1434000000000.5), "date_is_integer", "date=1434000000000.5", id="date fraction"),
    pytest.param(
        entry(date=NOW_MS + 86_400_000 * 365),
        "date_not_in_future",
        f"date={NOW_MS + 86_400_000 * 365}",
        id="date far future",
    ),
    pytest.param(entry(date=86_400_000), "date_not_before_2000", "date=86400000", id="date 1970"),
    pytest.param(entry(date=-1), "date_not_before_2000", "date=-1", id="date negative"),
    pytest.param(entry(date=10**30), "date_not_in_future", f"date={10**30} fails", id="date beyond int64"),
]


@pytest.mark.parametrize(("bad", "check", "shown"), BAD_ENTRIES)
def test_bad_entry_is_quarantined_with_its_reason(bad: dict[str, Any], check: str, shown: str) -> None:
    batch = validate([entry(1), bad])

    assert batch.valid.column("_id").to_pylist() == [entry(1)["_id"]]
    [row] = batch.quarantine.to_pylist()
    assert row["check"] == check
    assert row["severity"] == "error"
    assert row["reason"].startswith(f"{check}: {shown}")
    assert row["run_id"] == "run-1" and row["source"] == "test.json"
    assert row["quarantined_at"] == NOW
    assert json.loads(row["payload"]) == json_safe(bad)
    assert row["entry_id"] == (bad["_id"] if isinstance(bad.get("_id"), str) else None)
    assert result(batch, check).severity is Severity.ERROR
    assert result(batch, check).failing_count == 1


@pytest.mark.parametrize(
    "junk",
    ["hello", 5, None, True, 1.5, [1, 2], [], [[{"_id": "x"}]], [{"_id": "x", "sgv": 5}], ("tuple",)],
    ids=repr,
)
def test_an_entry_that_is_not_an_object_is_quarantined(junk: Any) -> None:
    batch = validate([entry(1), junk])

    [row] = batch.quarantine.to_pylist()
    assert row["check"] == "entry_is_object"
    assert row["column"] is None and row["entry_id"] is None
    shown = json.dumps(json_safe(junk), separators=(",", ":"))
    assert row["reason"].startswith(f"entry_is_object: entry={shown} fails")
    assert result(batch, "entry_is_object").samples == ({"entry": json_safe(junk)},)


def test_payload_round_trips_and_junk_that_json_cannot_hold_is_reprd() -> None:
    sent = entry(1, sgv="abc", extra={"nested": [1, 2.5, None, "ü"]})
    odd = entry(2, sgv=None, noise=float("nan"), rssi=object(), slope=(1, 2), **{"7": 7})

    batch = validate([sent, odd])

    payloads = batch.quarantine.column("payload").to_pylist()
    assert json.loads(payloads[0]) == sent
    assert payloads[0] == json.dumps(sent, separators=(",", ":"), ensure_ascii=False)
    decoded = json.loads(payloads[1])
    assert decoded["noise"] == "nan"
    assert decoded["rssi"].startswith("<object object at")
    assert decoded["slope"] == [1, 2]


def test_exact_and_conflicting_duplicates_keep_the_first_copy() -> None:
    first = entry(1)
    batch = validate([first, entry(2), dict(first), entry(1, sgv=121)])

    assert batch.valid.column("_id").to_pylist() == [first["_id"], entry(2)["_id"]]
    assert batch.valid.column("sgv").to_pylist() == [120, 120]
    exact, conflicting = batch.quarantine.to_pylist()
    assert exact["check"] == conflicting["check"] == "_id_unique"
    assert exact["reason"].endswith("(exact duplicate of the entry at position 0)")
    assert conflicting["reason"].endswith("(conflicting duplicate of the entry at position 0)")
    assert result(batch, "_id_unique").failing_count == 2


def test_ids_of_other_types_are_not_reported_as_duplicates() -> None:
    batch = validate([entry(1, _id=7), entry(2, _id=7), entry(3, _id=None), entry(4, _id=None)])

    assert {r.check: r.failing_count for r in batch.results} == {"_id_is_string": 2, "_id_not_null": 2}


def test_reason_lists_every_failed_error_check_and_check_names_the_first() -> None:
    batch = validate([entry(1, type="sgv", date="soon", sgv=5000, _id=...)])

    [row] = batch.quarantine.to_pylist()
    assert row["check"] == "_id_not_null"
    assert row["column"] == "_id"
    assert [part.split(":")[0] for part in row["reason"].split("; ")] == [
        "_id_not_null",
        "date_is_integer",
        "sgv_in_range",
    ]


def test_nested_junk_object_is_quarantined_once() -> None:
    junk = {"a": {"b": [{"c": float("nan")}]}, "sgv": {"$gt": 1}}

    batch = validate([junk])

    [row] = batch.quarantine.to_pylist()
    assert row["check"] == "_id_not_null"
    assert "sgv_is_integer" in row["reason"]
    assert batch.valid.num_rows == 0


# --- warnings report without quarantining --------------------------------------------------------


def test_warnings_are_reported_and_the_entry_is_kept() -> None:
    entries = [
        entry(1, direction="Sideways"),
        entry(2, sgv=700),
        entry(3, device=...),
        entry(4, noise="junk", filtered="abc", rssi=2**40),
        entry(5, direction=5, dateString=["x"]),
    ]

    batch = validate(entries)

    assert batch.quarantine.num_rows == 0
    rows = batch.valid.to_pylist()
    assert rows[0]["direction"] == "Sideways"
    assert rows[1]["sgv"] == 700
    assert rows[2]["device"] is None
    assert (rows[3]["noise"], rows[3]["filtered"], rows[3]["rssi"]) == (None, None, None)
    assert (rows[4]["direction"], rows[4]["date_string"]) == (None, None)
    warned = {r.check: r for r in batch.results}
    assert set(warned) == {
        "direction_allowed",
        "sgv_plausible",
        "device_not_null",
        "noise_is_integer",
        "filtered_is_number",
        "rssi_is_integer",
        "direction_is_string",
        "date_string_is_string",
    }
    assert all(r.severity is Severity.WARNING and r.failing_count == 1 for r in warned.values())
    assert warned["sgv_plausible"].samples == (entries[1],)
    assert warned["device_not_null"].column == "device"


@pytest.mark.parametrize(("sgv", "warned"), [(1, False), (600, False), (601, True), (1000, True)])
def test_sgv_bounds(sgv: int, warned: bool) -> None:
    batch = validate([entry(1, sgv=sgv)])

    assert batch.valid.column("sgv").to_pylist() == [sgv]
    assert any(r.check == "sgv_plausible" for r in batch.results) is warned


def test_every_known_direction_passes() -> None:
    batch = validate(
        [entry(i, direction=name) for i, name in enumerate(DIRECTIONS)] + [entry(99, direction=None)]
    )

    assert batch.valid.num_rows == len(DIRECTIONS) + 1
    assert batch.results == ()


def test_sensor_error_codes_are_valid_raw_rows() -> None:
    batch = validate([entry(1, sgv=5), entry(2, sgv="5", direction="NOT COMPUTABLE"), entry(3, sgv=" 39 ")])

    assert batch.quarantine.num_rows == 0
    assert batch.valid.column("sgv").to_pylist() == [5, 5, 39]
    assert batch.results == ()


def test_numeric_strings_are_coerced() -> None:
    batch = validate([entry(1, sgv="120", date=str(NOW_MS - 60_000), utcOffset="-300", filtered="1.5e5")])

    [row] = batch.valid.to_pylist()
    assert (row["sgv"], row["date"], row["utc_offset"], row["filtered"]) == (
        120,
        NOW_MS - 60_000,
        -300,
        150_000.0,
    )


# Nightscout's tests/fixtures/example.json (cgm-remote-monitor), as the API serves it: with the _id
# MongoDB adds on insert. Every sgv is a string; 12 are "5" (?NC) with NOT COMPUTABLE.
_FIXTURE_SGVS = [178, 179, 178, 177, 176, 176, 175, 174, 174, 175, 176, 176, 173, 171, 170, 171, 169, 169]


def nightscout_fixture() -> list[dict[str, Any]]:
    readings = [("5", 1405792155000 - 300_000 * i, "NOT COMPUTABLE") for i in range(12)] + [
        (str(sgv), 1405767555000 - 300_000 * i + (1000 if i == 6 else 0), "Flat")
        for i, sgv in enumerate(_FIXTURE_SGVS)
    ]
    return [
        {
            "_id": f"53ca{position:020x}",
            "type": "sgv",
            "sgv": sgv,
            "dateString": datetime.fromtimestamp(date / 1000, UTC).strftime("%m/%d/%Y %I:%M:%S %p"),
            "date": date,
            "device": "dexcom",
            "direction": direction,
        }
        for position, (sgv, date, direction) in enumerate(readings)
    ]


def test_nightscout_fixture_shape_is_all_valid() -> None:
    fixture = nightscout_fixture()

    batch = validate_glucose_entries(
        fixture, run_id="run-1", source="example.json", now=datetime(2014, 7, 19, 18, tzinfo=UTC)
    )

    assert all(isinstance(item["sgv"], str) for item in fixture)
    assert batch.valid.num_rows == 30 and batch.quarantine.num_rows == 0
    assert batch.results == ()
    rows = batch.valid.to_pylist()
    error_codes = [row for row in rows if row["sgv"] == 5]
    assert len(error_codes) == 12
    assert {row["direction"] for row in error_codes} == {"NOT COMPUTABLE"}
    assert [row["sgv"] for row in rows[12:]] == _FIXTURE_SGVS
    assert {row["reading_month"] for row in rows} == {"2014-07"}


# --- the valid batch ----------------------------------------------------------------------------


def test_valid_batch_has_exactly_the_lake_schema_and_bookkeeping_columns() -> None:
    ingested = datetime(2025, 6, 15, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))

    batch = validate([entry(1, unknown="ignored", sgv="88")], ingested_at=ingested)

    assert batch.valid.schema.equals(GLUCOSE_ENTRIES.arrow_schema, check_metadata=True)
    assert batch.quarantine.schema.equals(GLUCOSE_QUARANTINE.arrow_schema, check_metadata=True)
    [row] = batch.valid.to_pylist()
    assert row["date"] == NOW_MS - 600_000
    assert row["reading_ts"] == NOW - timedelta(minutes=10)
    assert row["reading_month"] == "2025-06"
    assert row["_phlo_ingested_at"] == ingested
    assert row["_phlo_run_id"] == "run-1"
    assert "unknown" not in batch.valid.column_names
    assert (row["utc_offset"], row["trend"], row["noise"], row["rssi"]) == (0, 4, 1, 100)
    assert (row["filtered"], row["unfiltered"]) == (151_000.5, 150_000.25)
    assert (row["mbg"], row["slope"], row["intercept"], row["scale"]) == (None, None, None, None)


@pytest.mark.parametrize(
    ("date", "month"),
    [(1735689599999, "2024-12"), (1735689600000, "2025-01"), (946_684_800_000, "2000-01")],
)
def test_reading_month_is_the_utc_month(date: int, month: str) -> None:
    batch = validate([entry(1, date=date)])

    assert batch.valid.column("reading_month").to_pylist() == [month]


@pytest.mark.parametrize(("offset_ms", "valid"), [(HOUR_MS, True), (HOUR_MS + 1, False)])
def test_future_tolerance_is_one_hour_after_now(offset_ms: int, valid: bool) -> None:
    batch = validate([entry(1, date=NOW_MS + offset_ms)])

    assert batch.valid.num_rows == int(valid)


def test_snake_case_keys_are_accepted_and_camel_case_wins() -> None:
    snake = entry(1, dateString=..., sysTime=..., utcOffset=..., date_string="a", sys_time="b", utc_offset=60)
    both = entry(2, dateString="camel", date_string="snake", utcOffset=None, utc_offset=-60)

    batch = validate([snake, both])

    rows = batch.valid.to_pylist()
    assert (rows[0]["date_string"], rows[0]["sys_time"], rows[0]["utc_offset"]) == ("a", "b", 60)
    assert (rows[1]["date_string"], rows[1]["utc_offset"]) == ("camel", -60)


def test_mbg_and_cal_entries_are_valid() -> None:
    mbg = entry(1, type="mbg", sgv=..., direction=..., mbg="104")
    cal = entry(2, type="cal", sgv=..., direction=..., slope=895.6, intercept=29_000, scale=1)

    batch = validate([mbg, cal])

    rows = batch.valid.to_pylist()
    assert rows[0]["mbg"] == 104
    assert (rows[1]["slope"], rows[1]["intercept"], rows[1]["scale"]) == (895.6, 29_000.0, 1.0)


def test_empty_batch() -> None:
    batch = validate([])

    assert batch.input_count == 0
    assert batch.valid.num_rows == batch.quarantine.num_rows == 0
    assert batch.valid.schema.equals(GLUCOSE_ENTRIES.arrow_schema, check_metadata=True)
    assert batch.quarantine.schema.equals(GLUCOSE_QUARANTINE.arrow_schema, check_metadata=True)
    assert batch.results == ()


def test_samples_are_capped() -> None:
    entries = [entry(i, sgv="bad") for i in range(MAX_SAMPLES + 5)]

    batch = validate(entries)

    failed = result(batch, "sgv_is_integer")
    assert failed.failing_count == MAX_SAMPLES + 5
    assert failed.samples == tuple(entries[:MAX_SAMPLES])
    assert failed.table == "raw.glucose_entries" and failed.column == "sgv"


def test_naive_clock_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        validate_glucose_entries([entry(1)], run_id="r", source="s", now=datetime(2025, 6, 15))


def test_pandera_settings_cannot_switch_the_checks_off() -> None:
    # What PANDERA_VALIDATION_ENABLED=False or PANDERA_VALIDATION_DEPTH=SCHEMA_ONLY would set.
    with pandera.config.config_context(validation_enabled=False, validation_depth="SCHEMA_ONLY"):
        batch = validate([entry(1, sgv="abc")])

    assert batch.valid.num_rows == 0 and batch.quarantine.num_rows == 1


# --- severities live in the schema ----------------------------------------------------------------


def test_field_severities_are_readable_from_the_schema() -> None:
    columns = RawGlucoseEntries.to_schema().columns

    severities = {name: column.metadata["severity"] for name, column in columns.items()}

    assert {name for name, severity in severities.items() if severity == "error"} == {
        "_id",
        "type",
        "date",
        "sgv",
        "mbg",
    }
    assert set(severities.values()) == {"error", "warning"}
    assert RawGlucoseEntries.Config.metadata["severity"]["sgv_plausible"] == "warning"
    assert RawGlucoseEntries.Config.metadata["severity"]["entry_is_object"] == "error"


def test_every_schema_check_has_a_severity() -> None:
    named = [
        (f"{name}_{check.name}", name)
        for name, column in RAW_GLUCOSE_ENTRIES_SCHEMA.columns.items()
        for check in column.checks
    ] + [(check.name, None) for check in RAW_GLUCOSE_ENTRIES_SCHEMA.checks]

    severities = {check: check_severity(check, column) for check, column in named}

    assert len(named) == 30  # 27, and isValid, identifier and srvModified (API v3)
    assert set(severities.values()) == {"error", "warning"}
    assert severities["sgv_in_range"] == "error"
    assert severities["sgv_plausible"] == "warning"
    assert severities["sgv_required"] == "error"
    assert severities["noise_is_integer"] == "warning"


# --- accounting invariant over generated junk -------------------------------------------------------

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(["5", "120", " 88 ", "1e2", "12.5", "abc", "", "NaN", "inf", "sgv", "mbg", "Flat"]),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_field_values = {
    "_id": st.sampled_from(["a", "b", "c", ""]) | _json_values,
    "type": st.sampled_from(["sgv", "mbg", "cal"]) | _json_values,
    "date": st.integers(NOW_MS - 10 * 86_400_000, NOW_MS + 2 * HOUR_MS) | _json_values,
    "sgv": st.integers(-5, 1100) | _json_values,
    "mbg": st.integers(-5, 1100) | _json_values,
    "direction": st.sampled_from(DIRECTIONS) | _json_values,
}
_keys = sorted({*entry(), *_field_values, "date_string", "sys_time", "utc_offset", "mbg", "slope", "other"})


@st.composite
def junk_batches(draw: st.DrawFn) -> list[Any]:
    """Entries: valid ones with a few keys broken or dropped, random objects, and non-objects."""
    items: list[Any] = []
    for number in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["mutated", "mutated", "random", "non-object"]))
        if kind == "non-object":
            items.append(draw(_json_values))
            continue
        item: dict[str, Any] = entry(number) if kind == "mutated" else {}
        mutated = kind == "mutated"
        for key in draw(st.lists(st.sampled_from(_keys), unique=True, max_size=4 if mutated else len(_keys))):
            drop: bool = draw(st.booleans())
            if mutated and drop:
                item.pop(key, None)
            else:
                item[key] = draw(_field_values.get(key, _json_values))
        items.append(item)
    repeat: bool = draw(st.booleans())
    if items and repeat:
        items.append(draw(st.sampled_from(items)))
    return items


@pytest.mark.hardening
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk_batches())
def test_every_entry_is_valid_or_quarantined_exactly_once(entries: list[Any]) -> None:
    batch = validate(entries)

    assert_accounted(entries, batch)
    for check in batch.results:
        assert 0 < check.failing_count <= len(entries)
        assert len(check.samples) == min(check.failing_count, MAX_SAMPLES)
        json.dumps(check.samples, allow_nan=False)


def test_accounting_holds_for_the_hand_made_corpus() -> None:
    corpus = [param.values[0] for param in BAD_ENTRIES] + [entry(i) for i in range(100, 105)] + ["junk", None]

    batch = validate(corpus)

    assert_accounted(corpus, batch)
    assert batch.valid.num_rows == 5
    assert batch.quarantine.num_rows == len(BAD_ENTRIES) + 2
