"""API v3 history as the incremental source: the simulator serves Nightscout's authorization and
history endpoints over HTTP, the client authenticates with the access token as Nightscout does,
and an AndroidAPS deletion or edit made after ingest, older than the re-read window, reaches the
layers on the next run (and, on a site without API v3, does not)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.api.facade import Engine
from engine.api.treatment_reads import load_daily_treatments
from engine.config import load_settings
from engine.errors import SourceError
from engine.ingest import nightscout_v3
from engine.ingest.nightscout import NightscoutConfig, configure_dlt
from engine.ingest.nightscout_v3 import HistoryClient, position_key
from engine.runs.records import RunStatus
from engine.sim.loop import DELETED_AFTER_S, EDITED_AFTER_S
from engine.sim.revocation import revoke_jwts
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.simclock import Clock
from tests.test_closed_loop_sim import given, gold_totals

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
TOKEN = "phloreader-0f3c9a1b2d4e5f60"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def aaps(clock: Clock) -> GlucoseSimulator:
    return GlucoseSimulator(seed=7, tz="Europe/Paris", clock=clock, uploader="aaps")


def jwt_of(url: str, token: str = TOKEN) -> httpx.Response:
    return httpx.get(f"{url}/api/v2/authorization/request/{token}")


def test_the_simulator_serves_authorization_and_history_as_nightscout(
    clock: Clock, aaps: GlucoseSimulator
) -> None:
    since = int(clock.now * 1000) - 5 * DAY_MS
    with SimulatorServer(aaps, token=TOKEN) as server:
        assert jwt_of(server.url, "wrong-0000000000000000").status_code == 401
        granted = jwt_of(server.url).json()
        assert granted["exp"] - granted["iat"] == 8 * 3600 and granted["token"].count(".") == 2
        history = f"{server.url}/api/v3/treatments/history/{since}"
        assert httpx.get(history).status_code == 401  # no JWT
        assert httpx.get(history, params={"token": TOKEN}).status_code == 401  # v3 takes no token
        bearer = {"Authorization": f"Bearer {granted['token']}"}
        tampered = {"Authorization": f"Bearer {granted['token'][:-2]}xx"}
        assert httpx.get(history, headers=tampered).status_code == 401
        answer = httpx.get(history, headers=bearer).json()
        assert answer["status"] == 200
        changes = answer["result"]
        modified = [d["srvModified"] for d in changes]
        assert changes and modified == sorted(modified) and min(modified) > since
        assert all("_id" not in d and d["identifier"] for d in changes)
        assert any(d.get("isValid") is False for d in changes)  # a deletion is a change
        assert any(
            d["eventType"] == "Carb Correction" and d["srvModified"] > d["srvCreated"] for d in changes
        )
        page = httpx.get(history, headers=bearer, params={"limit": 5}).json()["result"]
        assert page == changes[:5]
        assert httpx.get(history, headers=bearer, params={"limit": 1001}).status_code == 400
        assert httpx.get(f"{server.url}/api/v3/treatments/history/0", headers=bearer).status_code == 400
        entries = httpx.get(f"{server.url}/api/v3/entries/history/{since}", headers=bearer).json()["result"]
        assert entries and all(e["isValid"] is False and e["type"] == "sgv" for e in entries)
    loop = GlucoseSimulator(seed=7, tz="Europe/Paris", clock=clock, uploader="loop")
    with SimulatorServer(loop) as server:  # Loop uploads through API v1: nothing has a srvModified
        assert httpx.get(f"{server.url}/api/v3/treatments/history/{since}").json()["result"] == []
        assert httpx.get(f"{server.url}/api/v3/entries/history/{since}").json()["result"]
    with SimulatorServer(aaps, serve_v3=False) as server:
        assert jwt_of(server.url).status_code == 404
        assert httpx.get(f"{server.url}/api/v3/treatments/history/{since}").status_code == 404


def test_the_client_renews_its_jwt_before_it_expires_and_pages(
    home: Path, clock: Clock, aaps: GlucoseSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_dlt(home)
    elapsed = [0.0]
    since = int(clock.now * 1000) - 2 * DAY_MS
    with SimulatorServer(aaps, token=TOKEN, jwt_lifetime_s=600) as server:
        client = HistoryClient(NightscoutConfig(server.url, token=TOKEN, max_attempts=1), lambda: elapsed[0])
        assert client.available() is None
        first = [d for page in client.history("treatments", since) for d in page.documents]
        # Ten minutes later by both clocks: the first JWT has expired at the site.
        elapsed[0] += 601
        clock.now += 601
        again = [d for page in client.history("treatments", since) for d in page.documents]
        assert client.authorizations == 2
        assert len(again) >= len(first) > 0
        bearers = {r.headers.get("authorization") for r in server.requests if "/api/v3/" in r.path}
        assert len(bearers) == 2
        # Short pages: each starts just below the last one's newest change, so a change that
        # shares its srvModified with the page's last (a calculation and its carbs) is not lost.
        modified = [d["srvModified"] for d in again]
        assert len(set(modified)) < len(modified)
        for size in (7, 13, 40):
            monkeypatch.setattr(nightscout_v3, "HISTORY_LIMIT", size)
            pages = list(client.history("treatments", since))
            assert len(pages) > 2 and all(len(p.documents) == size for p in pages[:-1])
            paged = {d["identifier"] for page in pages for d in page.documents}
            assert sorted(paged) == sorted(d["identifier"] for d in again)
    with SimulatorServer(aaps, token=TOKEN) as server:
        wrong = HistoryClient(NightscoutConfig(server.url, token="wrong-00000000", max_attempts=1))
        with pytest.raises(SourceError) as refused:
            wrong.available()
        assert "wrong-0" not in str(refused.value) and "HTTP 401" in str(refused.value)


@pytest.fixture
def changes(clock: Clock, aaps: GlucoseSimulator) -> tuple[dict[str, Any], dict[str, Any]]:
    """A mistaken bolus deleted and hypo carbs corrected in AndroidAPS three days after each was
    logged, both before the suite's now."""
    now_ms = int(clock.now * 1000)
    docs = aaps.history("treatments", now_ms - 10 * DAY_MS)
    deleted = [d for d in docs if d.get("isValid") is False and d["eventType"] == "Correction Bolus"]
    edited = [d for d in docs if d["eventType"] == "Carb Correction" and d["srvModified"] > d["srvCreated"]]
    assert deleted and edited
    return deleted[-1], edited[-1]


def engine_for(home: Path, url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("NIGHTSCOUT_URL", url)
    monkeypatch.setenv("NIGHTSCOUT_TOKEN", TOKEN)
    monkeypatch.setenv("PHLO_TIMEZONE", "Europe/Paris")
    monkeypatch.setenv("PHLO_INITIAL_DAYS", "10")
    monkeypatch.setenv("PHLO_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("PHLO_LOOKBACK_MINUTES", "0")
    monkeypatch.setenv("PHLO_REREAD_HOURS", "12")
    return Engine(load_settings(), clock=clock.utc)


def stored_docs(engine: Engine, simulator: GlucoseSimulator) -> list[dict[str, Any]]:
    """The documents the site serves now (through API v1) of those the lake received, through
    either API (a v3 document's key is its identifier)."""
    ids = {row[0] for row in engine.query("select _id from raw.treatments", "dev").rows}
    now_ms = int(simulator.clock() * 1000)
    docs = simulator.treatments(gte=now_ms - 30 * DAY_MS, count=0)
    return [d for d in docs if d["_id"] in ids or d.get("identifier") in ids]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


@pytest.mark.parametrize("serve_v3", [True, False], ids=["v3", "v1-only"])
def test_a_change_older_than_the_reread_window_reaches_the_layers_through_history(
    home: Path,
    clock: Clock,
    aaps: GlucoseSimulator,
    changes: tuple[dict[str, Any], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    logs: pytest.LogCaptureFixture,
    serve_v3: bool,
) -> None:
    """Daily runs: each re-reads 12 h and a created_at query reaches 2 days further back, so a
    record logged three days before its change is not read through API v1 again."""
    deleted, edited = changes
    assert DELETED_AFTER_S == EDITED_AFTER_S == 3 * 86_400
    logged_ms = max(deleted["srvCreated"], edited["srvCreated"])
    changed_ms = max(deleted["srvModified"], edited["srvModified"])
    moments = list(range(logged_ms + HOUR_MS, changed_ms + DAY_MS, DAY_MS))
    with (
        SimulatorServer(aaps, token=TOKEN, serve_v3=serve_v3) as server,
        engine_for(home, server.url, clock, monkeypatch) as engine,
    ):
        positions = []
        for moment_ms in moments:
            clock.now = moment_ms / 1000
            run = engine.run_now()
            assert run.status is RunStatus.SUCCEEDED, run.error
            assert run.summary["api"] == ("v3-history" if serve_v3 else "v1")
            positions.append(engine.store.watermark(position_key("treatments")))
        # Each run asks for the changes since the position the run before it left (a page each).
        asked = [int(r.path.rpartition("/")[2]) for r in server.requests if "/treatments/history/" in r.path]
        assert asked[1:] == (positions[:-1] if serve_v3 else [])
        docs = stored_docs(engine, aaps)
        names = {}
        for doc in docs:
            for name, change in (("deleted", deleted), ("edited", edited)):
                if doc.get("identifier") == change["identifier"]:
                    names.update({doc["_id"]: name, change["identifier"]: name})
        silver = engine.query(
            "select treatment_id, insulin_units, carbs_g from silver.fct_treatments", "dev"
        ).rows
        kept = sorted((names[row[0]], row[1], row[2]) for row in silver if row[0] in names)
        position = engine.store.watermark(position_key("treatments"))
        runs = json.dumps([r.to_json() for r in engine.list_runs()])
        totals = gold_totals(engine)
        days = load_daily_treatments(engine, "dev", date(2000, 1, 1), clock.utc().date())
        jwts = {r.headers["authorization"] for r in server.requests if "authorization" in r.headers}
    if serve_v3:
        assert kept == [("edited", None, 15.0)]
        assert totals == given(docs)
        # The dashboard's read: the automatic share comes through the engine's read API.
        assert round(sum(d.automatic_units for d in days), 2) == totals[2] > 0
        assert position is not None and position >= changed_ms
        assert jwts
    else:  # API v1 alone still serves the deleted bolus as valid and the carbs as first logged
        assert kept == [("deleted", 2.0, None), ("edited", None, 20.0)]
        assert totals != given(docs)
        assert position is None
    text = runs + "\n".join(r.getMessage() for r in logs.records)
    assert TOKEN not in text
    assert not [jwt for jwt in jwts if jwt.removeprefix("Bearer ") in text]


def test_a_jwt_revoked_mid_run_is_renewed_once_then_refused_in_one_line(
    home: Path, clock: Clock, aaps: GlucoseSimulator
) -> None:
    configure_dlt(home)
    since = int(clock.now * 1000) - 2 * DAY_MS
    with SimulatorServer(aaps, token=TOKEN) as server:
        client = HistoryClient(NightscoutConfig(server.url, token=TOKEN, max_attempts=1))
        assert client.available() is None
        before = [d for page in client.history("treatments", since) for d in page.documents]
        # The site restarts with a new API_SECRET: the JWT held is refused, a new one is granted.
        revoke_jwts(server)
        after = [d for page in client.history("treatments", since) for d in page.documents]
        assert client.authorizations == 2 and len(after) == len(before) > 0
        # The subject is deleted: the JWT is refused, and so is the request for a new one.
        revoke_jwts(server)
        client_refused = HistoryClient(NightscoutConfig(server.url, token=TOKEN, max_attempts=1))
        assert client_refused.available() is None
        revoke_jwts(server, access_token=True)
        with pytest.raises(SourceError) as refused:
            list(client_refused.history("treatments", since))
    text = str(refused.value)
    assert "HTTP 401" in text and "\n" not in text
    assert TOKEN not in text and server.url in text and refused.value.__cause__ is None
