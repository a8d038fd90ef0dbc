"""Tests for the built-in Nightscout simulator, over real loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest

from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.signals import sigint_default

NOW = 1_718_000_000.25  # 2024-06-10T06:13:20.250Z, pinned so every run sees the same trace
NOW_MS = int(NOW * 1000)
DAY_MS = 86_400_000
MONTH_START_MS = NOW_MS - 30 * DAY_MS
ENTRIES = "/api/v1/entries.json"
SGV = "/api/v1/entries/sgv.json"


def pinned(seed: int = 42, tz: str = "UTC") -> GlucoseSimulator:
    return GlucoseSimulator(seed=seed, tz=tz, clock=lambda: NOW)


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(pinned()) as running:
        yield running


@pytest.fixture
def client(server: SimulatorServer) -> Iterator[httpx.Client]:
    server.clear_faults()
    with httpx.Client(base_url=server.url, timeout=5) as http:
        yield http
    server.clear_faults()


@pytest.fixture(scope="module")
def month(server: SimulatorServer) -> list[dict[str, Any]]:
    """Every entry of the 30 days before NOW, newest first, fetched over HTTP."""
    params = {"find[date][$gte]": MONTH_START_MS, "count": 20_000}
    response = httpx.get(server.url + ENTRIES, params=params, timeout=10)
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return entries


def fetch(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def primary_sgv(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sensor readings from the main uploader, oldest first (duplicate uploads dropped)."""
    return [e for e in reversed(entries) if e["type"] == "sgv" and e["device"] == "xDrip-DexcomG6"]


def glucose_values(entries: list[dict[str, Any]]) -> np.ndarray:
    values = np.array([int(e["sgv"]) for e in primary_sgv(entries)])
    return values[values >= 39]


# -- determinism and identity -----------------------------------------------------------------


def test_a_reading_is_the_same_in_every_window_and_every_instance(client: httpx.Client) -> None:
    wide = fetch(client, SGV, **{"find[date][$gte]": NOW_MS - DAY_MS, "count": 1000})
    narrow = fetch(
        client,
        SGV,
        **{"find[date][$gte]": NOW_MS - 7 * 3_600_000, "find[date][$lt]": NOW_MS - 3_600_000},
        count=1000,
    )
    other = pinned().export(NOW_MS - DAY_MS, NOW_MS + 1, kind="sgv")
    by_id = {e["_id"]: e for e in wide}
    assert len(narrow) > 60
    assert all(by_id[e["_id"]] == e for e in narrow)
    assert other == wide


def test_another_seed_gives_another_trace() -> None:
    window = (NOW_MS - DAY_MS, NOW_MS)
    first = [e["sgv"] for e in pinned(seed=1).export(*window, kind="sgv")]
    second = [e["sgv"] for e in pinned(seed=2).export(*window, kind="sgv")]
    assert first != second


def test_ids_are_object_ids_led_by_the_epoch_seconds(month: list[dict[str, Any]]) -> None:
    assert len({e["_id"] for e in month}) == len(month)
    for entry in month:
        assert re.fullmatch(r"[0-9a-f]{24}", entry["_id"])
        assert int(entry["_id"][:8], 16) == entry["date"] // 1000


def test_entry_fields_look_like_real_uploads(month: list[dict[str, Any]]) -> None:
    kinds = {e["type"]: e for e in month}
    sgv = next(e for e in month if e["type"] == "sgv" and "direction" in e)
    assert {"_id", "sgv", "date", "dateString", "sysTime", "utcOffset", "direction", "trend"} <= set(sgv)
    assert (sgv["noise"], sgv["rssi"], sgv["utcOffset"]) == (1, 100, 0)
    assert isinstance(sgv["filtered"], int) and isinstance(sgv["unfiltered"], int)
    parsed = datetime.strptime(sgv["dateString"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert parsed.timestamp() * 1000 == sgv["date"]
    assert {"mbg", "date", "dateString", "device"} <= set(kinds["mbg"])
    assert {"slope", "intercept", "scale", "date", "dateString", "device"} <= set(kinds["cal"])


# -- query semantics --------------------------------------------------------------------------


def test_count_defaults_to_ten(client: httpx.Client) -> None:
    assert len(fetch(client, ENTRIES)) == 10
    assert len(fetch(client, SGV)) == 10
    assert len(fetch(client, SGV, count=3)) == 3


def test_entries_come_newest_first(month: list[dict[str, Any]]) -> None:
    dates = [e["date"] for e in month]
    assert dates == sorted(dates, reverse=True)
    assert len(month) > 8000


@pytest.mark.parametrize(
    ("operator", "includes_pivot", "side"),
    [("$gte", True, "newer"), ("$gt", False, "newer"), ("$lte", True, "older"), ("$lt", False, "older")],
)
def test_date_operators(client: httpx.Client, operator: str, includes_pivot: bool, side: str) -> None:
    pivot = fetch(client, SGV, count=50)[25]["date"]
    found = fetch(client, SGV, **{f"find[date][{operator}]": pivot, "count": 2000})
    dates = [e["date"] for e in found]
    assert (pivot in dates) is includes_pivot
    assert all(d >= pivot for d in dates) if side == "newer" else all(d <= pivot for d in dates)
    assert len(found) >= 24


def test_without_a_date_filter_only_the_last_four_days_are_searched(client: httpx.Client) -> None:
    found = fetch(client, SGV, count=5000)
    oldest = found[-1]["date"]
    assert NOW_MS - 4 * DAY_MS <= oldest < NOW_MS - 4 * DAY_MS + 600_000
    assert 1000 < len(found) < 4 * 288 + 20


def test_a_non_integer_date_parses_as_its_leading_integer(client: httpx.Client) -> None:
    # 2015-06-11 becomes 2015 ms after the epoch: a bound that excludes nothing.
    found = fetch(client, SGV, **{"find[date][$gte]": "2015-06-11", "count": 2000})
    assert len(found) == 2000
    assert found[-1]["date"] < NOW_MS - 5 * DAY_MS
    assert fetch(client, SGV, **{"find[date][$gte]": "2015", "count": 2000}) == found


def test_a_count_larger_than_the_result_returns_everything(client: httpx.Client) -> None:
    window = {"find[date][$gte]": NOW_MS - 3_600_000, "find[date][$lt]": NOW_MS}
    assert len(fetch(client, SGV, **window, count=10_000)) == len(fetch(client, SGV, **window, count=13))


def test_paging_with_lt_until_a_short_page_matches_one_big_query(client: httpx.Client) -> None:
    since = NOW_MS - 3 * DAY_MS
    everything = fetch(client, ENTRIES, **{"find[date][$gte]": since, "count": 10_000})
    pages: list[dict[str, Any]] = []
    upper = NOW_MS + 1
    while True:
        page = fetch(client, ENTRIES, **{"find[date][$gte]": since, "find[date][$lt]": upper, "count": 97})
        pages.extend(page)
        if len(page) < 97:
            break
        upper = page[-1]["date"]
    assert len(everything) > 800
    assert pages == everything


def test_paths_without_json_and_find_type_filter(client: httpx.Client) -> None:
    assert fetch(client, "/api/v1/entries", count=20) == fetch(client, ENTRIES, count=20)
    assert fetch(client, "/api/v1/entries/sgv", count=20) == fetch(client, SGV, count=20)
    typed = fetch(client, ENTRIES, **{"find[type]": "sgv", "count": 20})
    assert typed == fetch(client, SGV, count=20)
    meter = fetch(client, ENTRIES, **{"find[type]": "mbg", "find[date][$gte]": MONTH_START_MS})
    assert meter and {e["type"] for e in meter} == {"mbg"}


def test_sgv_json_has_only_sgv_while_entries_json_mixes_kinds(
    client: httpx.Client, month: list[dict[str, Any]]
) -> None:
    sgv_only = fetch(client, SGV, **{"find[date][$gte]": MONTH_START_MS, "count": 20_000})
    assert {e["type"] for e in sgv_only} == {"sgv"}
    assert {e["type"] for e in month} == {"sgv", "mbg", "cal"}
    assert sgv_only == [e for e in month if e["type"] == "sgv"]


# -- time -------------------------------------------------------------------------------------


def test_no_future_readings_and_new_ones_appear_as_time_passes() -> None:
    now = [NOW]
    simulator = GlucoseSimulator(seed=42, clock=lambda: now[0])
    with SimulatorServer(simulator) as running, httpx.Client(base_url=running.url) as http:
        before = fetch(http, SGV, count=500)
        assert before[0]["date"] <= NOW_MS
        assert before[0]["date"] > NOW_MS - 15 * 60_000
        now[0] += 3600
        after = fetch(http, SGV, count=500)
    new = [e for e in after if e["date"] > before[0]["date"]]
    assert after[0]["date"] <= int(now[0] * 1000)
    assert 10 <= len(new) <= 14
    assert after[len(new) : len(new) + 100] == before[:100]


def test_export_is_half_open_and_stops_at_now() -> None:
    simulator = pinned()
    entries = simulator.export(NOW_MS - DAY_MS, NOW_MS + DAY_MS)
    assert entries[0]["date"] <= NOW_MS
    first = entries[-1]["date"]
    assert simulator.export(first, first + 1)[0]["date"] == first
    assert simulator.export(first - 1, first) == []


# -- physiology -------------------------------------------------------------------------------


def test_trace_is_a_plausible_type1_profile(month: list[dict[str, Any]]) -> None:
    values = glucose_values(month)
    in_range = np.mean((values >= 70) & (values <= 180)) * 100
    below = np.mean(values < 70) * 100
    very_low = np.mean(values < 54) * 100
    assert 60 <= in_range <= 78
    assert 0.8 <= below <= 4.5
    assert 0 < very_low < below
    assert 140 <= values.mean() <= 165
    assert values.min() >= 40 and values.max() <= 400
    assert values.max() > 250


def test_readings_are_five_minutes_apart_off_the_epoch_grid(month: list[dict[str, Any]]) -> None:
    dates = np.array([e["date"] for e in primary_sgv(month)])
    steps = np.diff(dates)
    assert np.mean(steps == 300_000) > 0.97
    # Each sensor keeps its own offset of some seconds past the 5-minute epoch grid.
    offsets = set((dates % 300_000).tolist())
    assert 2 <= len(offsets) <= 5
    assert all(offset % 1000 == 0 for offset in offsets)


def test_readings_only_use_sensor_values_or_error_codes(month: list[dict[str, Any]]) -> None:
    values = {int(e["sgv"]) for e in month if e["type"] == "sgv"}
    assert all(40 <= v <= 400 or v in {1, 5, 9, 10, 12} for v in values)


def test_meals_follow_local_time() -> None:
    """The day's shape moves with the configured zone: it lines up in local, not UTC, hours."""
    window = (NOW_MS - 21 * DAY_MS, NOW_MS)

    def hourly_profile(tz: str, local: bool) -> np.ndarray:
        entries = pinned(tz=tz).export(*window, kind="sgv")
        sums, counts = np.zeros(24), np.zeros(24)
        zone = ZoneInfo(tz) if local else UTC
        for entry in entries:
            if int(entry["sgv"]) >= 39:
                hour = datetime.fromtimestamp(entry["date"] / 1000, zone).hour
                sums[hour] += int(entry["sgv"])
                counts[hour] += 1
        return sums / counts

    utc = hourly_profile("UTC", local=False)
    tokyo_local = hourly_profile("Asia/Tokyo", local=True)
    tokyo_utc = hourly_profile("Asia/Tokyo", local=False)
    assert np.corrcoef(utc, tokyo_local)[0, 1] > 0.7
    assert np.corrcoef(utc, tokyo_utc)[0, 1] < 0.3


def test_direction_and_trend_follow_the_rate_of_change(month: list[dict[str, Any]]) -> None:
    readings = primary_sgv(month)
    trends = {
        "DoubleUp": 1,
        "SingleUp": 2,
        "FortyFiveUp": 3,
        "Flat": 4,
        "FortyFiveDown": 5,
        "SingleDown": 6,
        "DoubleDown": 7,
        "NOT COMPUTABLE": 8,
        "RATE OUT OF RANGE": 9,
    }
    exact = close = total = 0
    for earlier, later in zip(readings, readings[2:], strict=False):
        if later["date"] - earlier["date"] != 600_000 or "direction" not in later:
            continue
        assert later["trend"] == trends[later["direction"]]
        if int(later["sgv"]) < 39 or int(earlier["sgv"]) < 39 or later["trend"] > 7:
            continue
        rate = (int(later["sgv"]) - int(earlier["sgv"])) / 10
        expected = 4 - np.sign(rate) * min(3, int(abs(rate)))
        total += 1
        exact += later["trend"] == expected
        close += abs(later["trend"] - expected) <= 1
    # The arrow comes from the sensor's smoothed signal, the check from noisy readings.
    assert total > 7000
    assert exact / total > 0.8
    assert close / total > 0.99
    assert {e.get("direction") for e in readings} >= set(trends)


# -- real-world quirks ------------------------------------------------------------------------


def test_quirk_rates_over_a_month(month: list[dict[str, Any]]) -> None:
    readings = primary_sgv(month)
    n = len(readings)
    directions = Counter(e.get("direction") for e in readings)
    errors = [e for e in readings if int(e["sgv"]) < 39]
    assert 0.001 <= len(errors) / n <= 0.006
    assert all(e["direction"] == "NOT COMPUTABLE" for e in errors)
    assert 0.004 <= sum(isinstance(e["sgv"], str) for e in readings) / n <= 0.02
    assert 0.003 <= directions["NOT COMPUTABLE"] / n <= 0.012
    assert 0.0003 <= directions["RATE OUT OF RANGE"] / n <= 0.004
    assert 0.0008 <= directions[None] / n <= 0.006
    assert all(("trend" in e) == ("direction" in e) for e in readings)


def test_duplicate_uploads_share_the_reading_but_not_the_id(month: list[dict[str, Any]]) -> None:
    by_second: dict[int, list[dict[str, Any]]] = {}
    for entry in month:
        if entry["type"] == "sgv":
            by_second.setdefault(entry["date"] // 1000, []).append(entry)
    pairs = [group for group in by_second.values() if len(group) > 1]
    readings = len(primary_sgv(month))
    assert 0.002 <= len(pairs) / readings <= 0.01
    for group in pairs:
        first, second = group
        assert int(first["sgv"]) == int(second["sgv"])
        assert 0 <= abs(first["date"] - second["date"]) <= 1000
        assert first["_id"] != second["_id"]
        assert {first["device"], second["device"]} == {"xDrip-DexcomG6", "share2"}


def test_gaps_and_sensor_warmups(month: list[dict[str, Any]]) -> None:
    steps = np.diff(np.array([e["date"] for e in primary_sgv(month)]))
    # A new sensor starts on a new offset after a 2-hour warm-up; signal loss keeps the offset.
    sensor_changes = steps[steps % 300_000 != 0] / 60_000
    signal_loss = steps[(steps % 300_000 == 0) & (steps > 300_000)] / 60_000 - 5
    assert len(sensor_changes) == 3  # a sensor every 10 days
    assert np.all((sensor_changes > 120) & (sensor_changes < 130))
    assert 6 <= len(signal_loss) <= 25  # "a few times a week"
    assert np.all((signal_loss >= 15) & (signal_loss <= 120))


def test_compression_lows_are_brief_nightly_dips(month: list[dict[str, Any]]) -> None:
    readings = [e for e in primary_sgv(month) if int(e["sgv"]) >= 39]
    dates = np.array([e["date"] for e in readings])
    values = np.array([int(e["sgv"]) for e in readings])
    night = day = 0
    reach = 5  # 25 minutes either side: a real low lasts longer than that
    for i in range(reach, len(values) - reach):
        if dates[i + reach] - dates[i - reach] != 2 * reach * 300_000:
            continue
        around = values[i - reach : i + reach + 1]
        if min(values[i - reach], values[i + reach]) - values[i] >= 25 and values[i] == around.min():
            hour = datetime.fromtimestamp(dates[i] / 1000, UTC).hour
            night, day = (night + 1, day) if hour < 6 else (night, day + 1)
    assert night >= 3
    assert night > day


def test_finger_sticks_and_calibrations_per_day(month: list[dict[str, Any]]) -> None:
    kinds = Counter(e["type"] for e in month)
    assert 40 <= kinds["mbg"] <= 80
    assert 15 <= kinds["cal"] <= 35
    for meter in (e for e in month if e["type"] == "mbg"):
        assert 20 <= meter["mbg"] <= 600


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 502, 503])
def test_server_errors(server: SimulatorServer, client: httpx.Client, code: int) -> None:
    server.inject(f"http_{code}", times=2)
    assert client.get(SGV).status_code == code
    assert client.get(ENTRIES).status_code == code
    assert client.get(SGV).status_code == 200


def test_429_carries_retry_after(server: SimulatorServer, client: httpx.Client) -> None:
    server.inject("http_429")
    server.inject("http_429", retry_after=7)
    first, second = client.get(SGV), client.get(SGV)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "1")
    assert (second.status_code, second.headers["Retry-After"]) == (429, "7")
    assert client.get(SGV).status_code == 200


def test_slow_response_arrives_late_or_times_the_client_out(
    server: SimulatorServer, client: httpx.Client
) -> None:
    server.inject("slow", seconds=0.4)
    started = time.perf_counter()
    late = client.get(SGV)
    assert time.perf_counter() - started >= 0.4
    assert late.json() == fetch(client, SGV)
    server.inject("slow", seconds=0.6)
    with pytest.raises(httpx.ReadTimeout):
        client.get(SGV, timeout=0.1)


def test_truncated_json_is_a_cut_200(server: SimulatorServer, client: httpx.Client) -> None:
    server.inject("truncated")
    cut = client.get(SGV, params={"count": 50})
    whole = client.get(SGV, params={"count": 50})
    assert cut.status_code == 200
    assert cut.headers["content-type"].startswith("application/json")
    assert whole.content.startswith(cut.content) and len(cut.content) < len(whole.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)


def test_html_maintenance_page_with_status_200(server: SimulatorServer, client: httpx.Client) -> None:
    server.inject("html")
    page = client.get(SGV)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.lstrip().lower().startswith("<!doctype html>")


def test_status_is_spared_unless_asked(server: SimulatorServer, client: httpx.Client) -> None:
    server.inject("http_503")
    assert client.get("/api/v1/status.json").status_code == 200
    assert client.get(SGV).status_code == 503
    server.inject("http_503", include_status=True)
    assert client.get("/api/v1/status.json").status_code == 503


def test_clear_faults_and_unknown_kinds(server: SimulatorServer, client: httpx.Client) -> None:
    server.inject("http_500", times=5)
    server.clear_faults()
    assert client.get(SGV).status_code == 200
    with pytest.raises(ValueError, match="unknown fault"):
        server.inject("http_418")
    with pytest.raises(ValueError, match="retry_after"):
        server.inject("slow", retry_after=3)


def test_faults_over_http(client: httpx.Client) -> None:
    queued = client.post("/_sim/faults", json={"kind": "http_429", "times": 2, "retry_after": 3})
    assert queued.status_code == 200
    assert client.get(SGV).headers["Retry-After"] == "3"
    assert client.delete("/_sim/faults").status_code == 200
    assert client.get(SGV).status_code == 200
    assert client.post("/_sim/faults", json={"kind": "nope"}).status_code == 400


# -- status, auth and request recording -------------------------------------------------------


def test_status_document(client: httpx.Client) -> None:
    for path in ("/api/v1/status.json", "/api/v1/status"):
        status = client.get(path).json()
        assert status["status"] == "ok"
        assert status["version"] == "15.0.2"
        assert status["serverTimeEpoch"] == NOW_MS
        assert status["serverTime"] == "2024-06-10T06:13:20.250Z"
        assert status["apiEnabled"] is True
        assert status["settings"]["units"] == "mg/dl"


def test_token_auth() -> None:
    with (
        SimulatorServer(pinned(), token="reader-abc123") as running,
        httpx.Client(base_url=running.url) as http,
    ):
        denied = http.get(SGV)
        assert denied.status_code == 401
        assert denied.json() == {"status": 401, "message": "Unauthorized"}
        assert http.get(SGV, params={"token": "reader-wrong"}).status_code == 401
        assert http.get(SGV, params={"token": "reader-abc123"}).status_code == 200
        assert running.requests[-1].query["token"] == "reader-abc123"


def test_api_secret_auth_wants_the_sha1_hex() -> None:
    secret = "correct horse battery"
    digest = hashlib.sha1(secret.encode()).hexdigest()
    with (
        SimulatorServer(pinned(), api_secret=secret) as running,
        httpx.Client(base_url=running.url) as http,
    ):
        assert http.get(SGV).status_code == 401
        assert http.get("/api/v1/status.json").status_code == 401
        assert http.get(SGV, headers={"api-secret": secret}).status_code == 401
        assert http.get(SGV, headers={"API-SECRET": digest}).status_code == 200
        assert running.requests[-1].headers["api-secret"] == digest


def test_requests_are_recorded_and_bounded() -> None:
    with SimulatorServer(pinned()) as running, httpx.Client(base_url=running.url) as http:
        http.get(SGV, params={"count": 2, "find[date][$gte]": 5})
        recorded = running.requests[-1]
        assert (recorded.method, recorded.path) == ("GET", SGV)
        assert recorded.query == {"count": "2", "find[date][$gte]": "5"}
        assert recorded.headers["host"] == running.url.removeprefix("http://")
        for _ in range(1005):
            http.get("/nowhere")
        assert len(running.requests) == 1000
        assert all(r.path == "/nowhere" for r in running.requests)


# -- lifecycle --------------------------------------------------------------------------------


def test_only_loopback_is_served() -> None:
    for host in ("0.0.0.0", "192.168.1.10", "example.org"):
        with pytest.raises(ValueError):
            SimulatorServer(host=host)


def test_a_stopped_server_refuses_connections() -> None:
    running = SimulatorServer(pinned()).start()
    url = running.url
    with httpx.Client(base_url=url) as http:
        assert http.get(SGV).status_code == 200
        running.stop()
        with pytest.raises(httpx.TransportError):
            http.get(SGV)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        GlucoseSimulator(tz="Mars/Olympus_Mons")


def test_serve_forever_prints_its_url_and_stops_on_ctrl_c() -> None:
    code = "from engine.sim.server import serve_forever; serve_forever(0, seed=7)"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        injected = httpx.post(url.group(0) + "/_sim/faults", json={"kind": "http_502"})
        assert injected.status_code == 200
        assert httpx.get(url.group(0) + SGV).status_code == 502
        assert httpx.get(url.group(0) + SGV).status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None and "Traceback" not in process.stderr.read()
    finally:
        process.kill()
        process.wait()
