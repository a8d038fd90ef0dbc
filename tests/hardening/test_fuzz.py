"""Property-based payloads through the real ingest: hostile Nightscout entries never crash a run, every
entry is accounted for, and `main` never holds a row that fails an error-severity check."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.api.facade import Engine
from engine.config import load_settings
from engine.errors import PhloError
from engine.ingest.sources import GLUCOSE, SOURCES, TREATMENTS_SOURCE, Source
from engine.runs.records import RunRecord, RunStatus, Severity
from engine.transform.quality import schema_checks
from schemas import TABLE_SCHEMAS
from tests.simclock import START, START_S

pytestmark = pytest.mark.hardening

NOW_MS = int(START_S * 1000)
DAY_MS = 86_400_000
FULL = os.environ.get("PHLO_HARDENING_FULL") == "1"
# CI: a fixed set of 25 examples per test (no flakes); PHLO_HARDENING_FULL=1: 200 fresh ones.
FUZZ = settings(
    max_examples=200 if FULL else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=not FULL,
)

odd_text = st.text(
    st.one_of(
        st.characters(), st.sampled_from(["\x00", "\ud800", "\udfff", "\u202e", "\ufeff", "💉", "'", '"'])
    ),
    max_size=12,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text,
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=6,
)
# Mostly plausible values, so that many entries are stored and the layers have work to do.
recent_ms = st.integers(min_value=NOW_MS - 10 * DAY_MS, max_value=NOW_MS + 2 * 3_600_000)
dates = st.one_of(
    recent_ms,
    recent_ms,
    recent_ms.map(str),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=NOW_MS + 365 * DAY_MS, max_value=NOW_MS + 500 * 365 * DAY_MS),
    st.integers(min_value=0, max_value=946_684_800_000),
    st.floats(allow_nan=False, allow_infinity=False),
    junk,
)
glucose = st.one_of(
    st.integers(min_value=40, max_value=400),
    st.integers(min_value=40, max_value=400),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=1, max_value=1000).map(str),
    junk,
)
# A small pool of ids, so that duplicates and conflicting copies of one `_id` are common.
ids = st.one_of(
    st.sampled_from(["5f00000000000000000000a1", "5f00000000000000000000a2", "a", ""]), odd_text, junk
)
entry = st.fixed_dictionaries(
    {"_id": ids, "date": dates, "sgv": glucose},
    optional={
        "type": st.one_of(st.just("sgv"), st.just("sgv"), st.sampled_from(["mbg", "cal", "SGV"]), junk),
        "mbg": glucose,
        "dateString": st.one_of(odd_text, junk),
        "direction": st.one_of(st.sampled_from(["Flat", "SingleUp", "NOT COMPUTABLE"]), odd_text, junk),
        "device": st.one_of(odd_text, junk),
        "trend": st.one_of(st.integers(min_value=-(2**40), max_value=2**40), junk),
        "utcOffset": st.one_of(st.integers(min_value=-(2**40), max_value=2**40), junk),
        "noise": junk,
        "extra": junk,
    },
)
# Plausible entries too, so that runs store rows, pass the gates and reach main beside hostile ones.
good_entry = st.builds(
    lambda n, date, sgv: {"_id": f"{n:024x}", "type": "sgv", "date": date, "sgv": sgv, "direction": "Flat"},
    st.integers(min_value=0, max_value=2**40),
    st.integers(min_value=NOW_MS - 10 * DAY_MS, max_value=NOW_MS),
    st.integers(min_value=40, max_value=400),
)
# Hostile payloads, and good ones with a few hostile entries mixed in (under the 5 % quarantine gate,
# so that entries which pass validation with warnings do reach main).
payloads = st.one_of(
    st.lists(st.one_of(good_entry, good_entry, entry, junk), max_size=40),
    st.tuples(st.lists(good_entry, min_size=40, max_size=80), st.lists(entry, max_size=3)).flatmap(
        lambda parts: st.permutations(parts[0] + parts[1])
    ),
)


@contextmanager
def fresh_engine(url: str | None = None) -> Iterator[Engine]:
    home = Path(tempfile.mkdtemp(prefix="phlo-fuzz-"))
    # One attempt per request: a hostile body is not a transient fault, and retries only cost time.
    env = {
        "PHLO_HOME": str(home),
        "PHLO_TIMEZONE": "UTC",
        "PHLO_MANAGE_POSTGRES": "false",
        "PHLO_MAX_ATTEMPTS": "1",
    }
    if url:
        env["NIGHTSCOUT_URL"] = url
    try:
        with Engine(load_settings(env, config_path=home / "no-config.toml")) as engine:
            yield engine
    finally:
        shutil.rmtree(home, ignore_errors=True)


def assert_accounted(engine: Engine, run: RunRecord, sent: int, source: Source = GLUCOSE) -> None:
    """Every record sent is stored or quarantined with a reason, and the lake agrees with the summary."""
    assert run.status is not RunStatus.FAILED or not (run.error or "").startswith("internal error"), run.error
    if run.status is RunStatus.FAILED:
        assert run.error and run.hint, "a failed run says what failed and what to do"
        return
    s = run.summary["sources"][source.name] if "sources" in run.summary else run.summary
    assert s["fetched"] == sent
    assert s["stored"] + s["unchanged"] + s["quarantined"] == sent, s
    raw = engine.lake.read_arrow(source.table.name, "dev")
    assert raw.num_rows == s["stored"]
    quarantine = engine.lake.read_arrow(source.quarantine.name, "dev")
    assert quarantine.num_rows == s["quarantined"]
    assert all(reason for reason in quarantine["reason"].to_pylist())
    assert all(check for check in quarantine["check"].to_pylist())


def assert_main_clean(engine: Engine) -> None:
    """No table on main holds a row that fails an error-severity check."""
    if engine.store.last_promotion() is None:
        return
    for source in SOURCES:
        if engine.lake.snapshot_id(source.table.name, "main") is None:
            continue
        raw = engine.lake.read_arrow(source.table.name, "main").to_pylist()
        batch = source.validate_batch(raw, run_id="recheck", source="main", now=START)
        assert batch.quarantine.num_rows == 0, batch.quarantine.select(["check", "reason"]).to_pylist()
    for table, model in TABLE_SCHEMAS.items():
        if engine.lake.table_exists(table) and engine.lake.snapshot_id(table, "main") is not None:
            rows = engine.lake.read_arrow(table, "main")
            errors = [r for r in schema_checks(model, table, rows) if r.severity is Severity.ERROR]
            assert not errors, (table, errors)


@FUZZ
@given(payloads)
def test_import_of_hostile_exports(entries: list[Any]) -> None:
    with fresh_engine() as engine:
        path = engine.settings.home / "export.json"
        path.write_text(json.dumps(entries))
        run = engine.import_file(path)
        event(f"{run.status.value}, promoted {engine.store.last_promotion() is not None}")
        assert_accounted(engine, run, len(entries))
        assert_main_clean(engine)


@FUZZ
@given(junk.filter(lambda value: not isinstance(value, list)))
def test_an_export_that_is_not_an_array_is_refused_clearly(document: Any) -> None:
    with fresh_engine() as engine:
        path = engine.settings.home / "export.json"
        path.write_text(json.dumps(document))
        if isinstance(document, dict) and isinstance(document.get("entries"), list):
            run = engine.import_file(path)
            assert_accounted(engine, run, len(document["entries"]))
            return
        with pytest.raises(PhloError, match="expected a JSON array of entries") as refused:
            engine.import_file(path)
        assert refused.value.hint


class _Site(ThreadingHTTPServer):
    body = b"[]"
    treatments: bytes | None = None
    """The treatments body, answered to the first treatments request only (so however many windows
    a run fetches, it receives each record once), `[]` after; None: no such collection (404)."""
    treatments_served = False

    def serve_treatments(self, body: bytes | None) -> None:
        self.treatments, self.treatments_served = body, False


class _Handler(BaseHTTPRequestHandler):
    """A Nightscout site that answers every entries request with the same body (a short page), and
    treatments requests as `_Site.treatments` says (404, which the run only warns about, by default)."""

    server: _Site

    def do_GET(self) -> None:
        status, body = 200, self.server.body if "/entries" in self.path else b"{}"
        if "/treatments" in self.path:
            if self.server.treatments is None:
                status = 404
            else:
                body = b"[]" if self.server.treatments_served else self.server.treatments
                self.server.treatments_served = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def site() -> Iterator[_Site]:
    server = _Site(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


bodies = st.one_of(
    payloads.map(lambda entries: json.dumps(entries).encode()),
    junk.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=40),
    st.sampled_from([b"", b"[", b"<html>nope</html>", b"\xff\xfe[]", b'[{"_id": "a", "sgv": 1e999}]']),
)


def sent_records(body: bytes) -> list[Any] | None:
    """The records of a body that is a JSON array; None for a body the run must refuse whole."""
    try:
        sent = json.loads(body)
    except ValueError:
        return None
    return sent if isinstance(sent, list) else None


def assert_refused(run: RunRecord) -> None:
    """The whole response is refused, with what failed and what to do."""
    assert run.status is RunStatus.FAILED, run.summary
    assert run.error and run.hint and "internal error" not in run.error


@FUZZ
@given(body=bodies)
def test_a_hostile_site_never_crashes_a_run(site: _Site, body: bytes) -> None:
    site.body = body
    site.serve_treatments(None)
    with fresh_engine(f"http://127.0.0.1:{site.server_address[1]}") as engine:
        run = engine.run_now()
        sent = sent_records(body)
        if sent is None:
            assert_refused(run)
            return
        event(f"{run.status.value}, promoted {engine.store.last_promotion() is not None}")
        assert_accounted(engine, run, len(sent))
        assert_main_clean(engine)
        assert run.status in (RunStatus.SUCCEEDED, RunStatus.HELD), run.error


def _iso(ms: int, form: int) -> str:
    """Instant `ms` as created_at text in one of the forms uploaders send (or one naming no instant)."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    forms = [
        moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
        moment.astimezone(timezone(timedelta(hours=2))).isoformat(),
        moment.isoformat(timespec="microseconds"),
        moment.strftime("%Y-%m-%dT%H:%M:%S"),  # no zone: names no instant
        moment.strftime("%Y-%m-%d"),
        moment.strftime("%d/%m/%Y %H:%M"),
        moment.isoformat().replace("+00:00", "+0000"),
    ]
    return forms[form % len(forms)]


created_at = st.one_of(
    st.builds(_iso, recent_ms, st.integers(0, 3)),
    st.builds(_iso, recent_ms, st.integers(0, 3)),
    st.builds(_iso, recent_ms, st.integers(4, 7)),
    # Years 1 to 9999, less a day at each end so that every form (a +02:00 offset too) exists.
    st.builds(_iso, st.integers(-62_135_510_400_000, 253_402_214_400_000), st.integers(0, 7)),
    st.sampled_from(
        ["", "Z", "2025-02-30T10:00:00Z", "2025-01-01T25:61:00Z", "now", "+275760-09-13T00:00:00Z"]
    ),
    recent_ms,
    recent_ms.map(str),
    odd_text,
    junk,
)
dose = st.one_of(
    st.floats(min_value=0, max_value=30),
    st.integers(min_value=0, max_value=150),
    st.floats(min_value=0, max_value=30).map(str),
    st.sampled_from(["1,5", "2 U", "", "NaN", "Infinity", "-0", "1e3"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    junk,
)
event_types = st.one_of(
    st.sampled_from(
        ["Meal Bolus", "Correction Bolus", "Snack Bolus", "Carb Correction", "Temp Basal", "Note"]
    ),
    st.sampled_from(["meal  bolus", " Bolus Wizard ", "Combo Bolus", "Site Change", ""]),
    odd_text,
    junk,
)
treatment = st.fixed_dictionaries(
    {"_id": ids, "eventType": event_types, "created_at": created_at},
    optional={
        "insulin": dose,
        "carbs": dose,
        "duration": dose,
        "rate": dose,
        "absolute": dose,
        "enteredBy": st.one_of(odd_text, junk),
        "notes": st.one_of(odd_text, junk),
        "utcOffset": st.one_of(st.integers(min_value=-(2**40), max_value=2**40), junk),
        "createdAt": created_at,
        "event_type": event_types,
        "mills": junk,
        "extra": junk,
    },
)
# Plausible treatments, some under the shared small id pool, so that copies of a stored one occur.
good_treatment = st.builds(
    lambda n, ms, form, kind, insulin, carbs: {
        "_id": n,
        "eventType": kind,
        "created_at": _iso(ms, form),
        "insulin": insulin,
        "carbs": carbs,
        "enteredBy": "xdrip",
    },
    st.one_of(st.integers(min_value=0, max_value=2**40).map(lambda n: f"{n:024x}"), ids),
    st.integers(min_value=NOW_MS - DAY_MS, max_value=NOW_MS),
    st.integers(0, 3),
    st.sampled_from(["Meal Bolus", "Correction Bolus", "Carb Correction"]),
    st.one_of(st.none(), st.floats(min_value=0.1, max_value=15).map(lambda u: round(u, 2))),
    st.one_of(st.none(), st.integers(min_value=0, max_value=120)),
)
treatment_lists = st.lists(st.one_of(good_treatment, good_treatment, treatment, junk), max_size=40)
treatment_bodies = st.one_of(
    treatment_lists.map(lambda records: json.dumps(records).encode()),
    treatment_lists.map(lambda records: json.dumps(records).encode()),
    junk.filter(lambda value: not isinstance(value, list)).map(lambda value: json.dumps(value).encode()),
    st.sampled_from([b"", b"[", b"<html>nope</html>", b'[{"_id": "a", "insulin": 1e999}]']),
)
# A day of readings around the treatments, the same in every example, so that the marts have work to do.
READINGS = json.dumps(
    [
        {
            "_id": f"{i:024x}",
            "type": "sgv",
            "date": NOW_MS - i * 300_000,
            "sgv": 90 + i % 120,
            "direction": "Flat",
        }
        for i in range(288)
    ]
).encode()


@FUZZ
@given(body=treatment_bodies)
def test_hostile_treatments_never_crash_a_run(site: _Site, body: bytes) -> None:
    site.body = READINGS
    site.serve_treatments(body)
    with fresh_engine(f"http://127.0.0.1:{site.server_address[1]}") as engine:
        run = engine.run_now()
        sent = sent_records(body)
        if sent is None:
            event("refused")
            assert_refused(run)
            assert "treatments" in run.error, run.error
            return
        event(f"{run.status.value}, promoted {engine.store.last_promotion() is not None}")
        assert_accounted(engine, run, len(sent), TREATMENTS_SOURCE)
        assert_accounted(engine, run, 288)
        assert_main_clean(engine)
        assert run.status in (RunStatus.SUCCEEDED, RunStatus.HELD), run.error
