"""The Nightscout source against the simulator (and a tiny odd-payload site) over loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from engine.errors import SourceError
from engine.ingest.nightscout import (
    DAY_MS,
    FetchWindow,
    NightscoutConfig,
    _date_ms,
    configure_dlt,
    fetch_window,
    plan_windows,
    redact_url,
    site_status,
)
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator

NOW_S = 1_748_736_000.0  # 2025-06-01T00:00:00Z: a fixed clock keeps every query repeatable
NOW_MS = int(NOW_S * 1000)
TOKEN = "tok-SECRET-4f1d2c9a"
API_SECRET = "api-SECRET-b7e3c0d5"
API_SECRET_SHA1 = hashlib.sha1(API_SECRET.encode()).hexdigest()
SECRETS = (TOKEN, API_SECRET, API_SECRET_SHA1)
DLT_ENV = ("RUNTIME__DLTHUB_TELEMETRY", "DLT_DATA_DIR", "DLT_PROJECT_DIR", "DLT_LOCAL_DIR")
ONE_DAY = FetchWindow(NOW_MS - 2 * DAY_MS, NOW_MS - DAY_MS)


@pytest.fixture(scope="module", autouse=True)
def dlt_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    saved = {name: os.environ.get(name) for name in DLT_ENV}
    home = tmp_path_factory.mktemp("phlo-home")
    configure_dlt(home)
    yield home
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def dlt_logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """Route dlt's own logger (silent unless a pipeline set it up) into caplog at DEBUG."""
    from dlt.common import logger as dlt_logger

    monkeypatch.setattr(dlt_logger, "LOGGER", logging.getLogger("dlt-under-test"))
    caplog.set_level(logging.DEBUG)
    return caplog


def _simulator() -> GlucoseSimulator:
    return GlucoseSimulator(seed=7, clock=lambda: NOW_S)


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(_simulator()) as running:
        yield running


@pytest.fixture
def locked_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(_simulator(), token=TOKEN, api_secret=API_SECRET) as running:
        yield running


def _config(url: str, **overrides: Any) -> NightscoutConfig:
    values: dict[str, Any] = {"max_attempts": 3, "backoff_s": 0.05, "timeout_s": 5.0}
    return NightscoutConfig(url=url, **{**values, **overrides})


def _expected(server: SimulatorServer, window: FetchWindow) -> list[dict[str, Any]]:
    return server.simulator.entries(kind="sgv", gte=window.start_ms, lt=window.end_ms, count=10**9)


def _entry_requests(server: SimulatorServer) -> list[Any]:
    return [r for r in server.requests if r.path.startswith("/api/v1/entries")]


def _assert_secret_free(error: SourceError, logs: str = "") -> None:
    texts = [
        str(error),
        repr(error),
        error.hint,
        "".join(traceback.format_exception(error)),
        logs,
    ]
    for secret in SECRETS:
        assert not any(secret in text for text in texts), f"a secret leaked: {texts}"
    # A chained requests exception would carry the full URL, token included.
    assert error.__cause__ is None
    assert error.__context__ is None


# -- plan_windows and redact_url ------------------------------------------------------------


def test_plan_windows_covers_the_range_contiguously_oldest_first() -> None:
    windows = plan_windows(0, 65 * DAY_MS, max_days=30)
    assert windows == [
        FetchWindow(0, 30 * DAY_MS),
        FetchWindow(30 * DAY_MS, 60 * DAY_MS),
        FetchWindow(60 * DAY_MS, 65 * DAY_MS),
    ]


def test_plan_windows_edges() -> None:
    assert plan_windows(5, 5) == []
    assert plan_windows(10, 5) == []
    assert plan_windows(0, 1) == [FetchWindow(0, 1)]
    assert plan_windows(0, 60 * DAY_MS) == [
        FetchWindow(0, 30 * DAY_MS),
        FetchWindow(30 * DAY_MS, 60 * DAY_MS),
    ]
    days = plan_windows(7, 3 * DAY_MS + 7, max_days=1)
    assert [w.end_ms - w.start_ms for w in days] == [DAY_MS] * 3
    assert all(a.end_ms == b.start_ms for a, b in pairwise(days))
    with pytest.raises(ValueError, match="max_days"):
        plan_windows(0, DAY_MS, max_days=0)


def test_redact_url_drops_userinfo_query_and_fragment() -> None:
    assert redact_url(f"https://me:{TOKEN}@ns.example.org:8443/x/?token={TOKEN}#top") == (
        "https://ns.example.org:8443/x/"
    )
    assert redact_url("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert redact_url(f"http://{TOKEN}@ns.example.org:port/") == "http://ns.example.org:port/"
    assert redact_url(f"http://[::1]:80/?token={TOKEN}") == "http://[::1]:80/"


def test_config_repr_shows_no_secret() -> None:
    config = NightscoutConfig(
        url=f"https://ns.example.org/?token={TOKEN}", token=TOKEN, api_secret=API_SECRET
    )
    text = repr(config)
    assert not any(secret in text for secret in SECRETS)
    assert "https://ns.example.org/" in text and "'set'" in text


def test_date_ms_reads_every_shape_of_date() -> None:
    assert _date_ms({"date": 1_700_000_000_123}) == 1_700_000_000_123
    assert _date_ms({"date": 1_700_000_000_123.9}) == 1_700_000_000_123
    assert _date_ms({"date": "1700000000123"}) == 1_700_000_000_123
    assert _date_ms({"date": "1.7e12"}) == 1_700_000_000_000
    for unusable in ("Sun Aug 09 16:53:40 PDT 2015", None, True, float("nan"), "inf", [1]):
        assert _date_ms({"date": unusable}) is None
    assert _date_ms({}) is None
    assert _date_ms("not an entry") is None


# -- fetching against the simulator ---------------------------------------------------------


def test_window_returns_exactly_the_simulator_entries(server: SimulatorServer) -> None:
    window = FetchWindow(NOW_MS - 3 * DAY_MS + 12_345, NOW_MS - DAY_MS)
    entries = fetch_window(_config(server.url), window)
    assert entries == _expected(server, window)
    assert len(entries) > 500
    # As decoded: camelCase keys, and sgv left as the site sent it (sometimes a string).
    assert {"_id", "dateString", "sysTime", "utcOffset"} <= set(entries[0])
    assert all(e["type"] == "sgv" for e in entries)
    (request,) = _entry_requests(server)
    assert request.path == "/api/v1/entries/sgv.json"
    assert request.query == {
        "count": "10000",
        "find[date][$gte]": str(window.start_ms),
        "find[date][$lt]": str(window.end_ms),
    }


def test_small_pages_give_the_same_entries_newest_first(server: SimulatorServer) -> None:
    expected = _expected(server, ONE_DAY)
    entries = fetch_window(_config(server.url, page_size=37), ONE_DAY)
    assert entries == expected
    assert len({e["_id"] for e in entries}) == len(entries)

    requests = _entry_requests(server)
    assert len(requests) >= len(expected) // 37
    assert all(r.query["count"] == "37" for r in requests)
    assert all(r.query["find[date][$gte]"] == str(ONE_DAY.start_ms) for r in requests)
    bounds = [int(r.query["find[date][$lt]"]) for r in requests]
    assert bounds[0] == ONE_DAY.end_ms
    assert bounds == sorted(bounds, reverse=True) and len(set(bounds)) == len(bounds)
    # Each next page starts just above the oldest date of the page before (inclusive of it).
    for bound, next_bound in pairwise(bounds):
        page = server.simulator.entries(kind="sgv", gte=ONE_DAY.start_ms, lt=bound, count=37)
        assert next_bound == page[-1]["date"] + 1


def _same_ms_duplicate(server: SimulatorServer) -> tuple[int, dict[str, Any]]:
    """A date held by two entries in the simulator's trace, and the reading just newer than it."""
    entries = _expected(server, FetchWindow(NOW_MS - 60 * DAY_MS, NOW_MS))
    for newer, first, second in zip(entries, entries[1:], entries[2:], strict=False):
        if first["date"] == second["date"] and newer["date"] > first["date"]:
            return first["date"], newer
    raise AssertionError("the simulator trace has no same-millisecond duplicate")


def test_a_page_boundary_inside_same_date_duplicates_loses_nothing(server: SimulatorServer) -> None:
    date, newer = _same_ms_duplicate(server)
    window = FetchWindow(date - DAY_MS, newer["date"] + 1)
    # page_size 2 cuts [newer, dup-a] | [dup-a, dup-b] (held back, then a stuck page) | ...
    entries = fetch_window(_config(server.url, page_size=2), window)
    assert entries == _expected(server, window)


def test_a_stuck_page_asks_again_with_a_bigger_count(server: SimulatorServer) -> None:
    date, _ = _same_ms_duplicate(server)
    window = FetchWindow(date - 3_600_000, date + 1)
    # One entry per page and two share the newest date: $lt alone cannot get past them.
    entries = fetch_window(_config(server.url, page_size=1), window)
    assert entries == _expected(server, window)
    asked = [(r.query["find[date][$lt]"], r.query["count"]) for r in _entry_requests(server)]
    assert asked[:3] == [(str(date + 1), "1"), (str(date + 1), "2"), (str(date + 1), "4")]
    assert len(asked) < 4 * len(entries)


def test_token_goes_in_the_query_and_api_secret_as_sha1_header(locked_server: SimulatorServer) -> None:
    entries = fetch_window(_config(locked_server.url, token=TOKEN), ONE_DAY)
    assert entries == _expected(locked_server, ONE_DAY)
    assert _entry_requests(locked_server)[-1].query["token"] == TOKEN
    assert "api-secret" not in _entry_requests(locked_server)[-1].headers

    entries = fetch_window(_config(locked_server.url, api_secret=API_SECRET), ONE_DAY)
    assert entries == _expected(locked_server, ONE_DAY)
    last = _entry_requests(locked_server)[-1]
    assert last.headers["api-secret"] == API_SECRET_SHA1
    assert "token" not in last.query


def test_a_token_in_the_url_is_used_and_kept_out_of_errors(locked_server: SimulatorServer) -> None:
    assert fetch_window(_config(f"{locked_server.url}/?token={TOKEN}"), ONE_DAY)
    with pytest.raises(SourceError) as caught:
        fetch_window(_config(f"{locked_server.url}/wrong/?token={TOKEN}"), ONE_DAY)
    assert "was not found (HTTP 404)" in caught.value.message
    assert "NIGHTSCOUT_URL" in caught.value.hint
    _assert_secret_free(caught.value)


@pytest.mark.parametrize("credentials", [{"token": "wrong"}, {"api_secret": "wrong"}, {}])
def test_refused_credentials_say_which_settings_to_check(
    locked_server: SimulatorServer, credentials: dict[str, str], dlt_logs: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(SourceError) as caught:
        fetch_window(_config(locked_server.url, **credentials), ONE_DAY)
    assert caught.value.message == f"{locked_server.url}/api/v1/entries/sgv.json refused access (HTTP 401)"
    assert "NIGHTSCOUT_TOKEN" in caught.value.hint and "NIGHTSCOUT_API_SECRET" in caught.value.hint
    assert len(_entry_requests(locked_server)) == 1  # a 401 is not retried


def test_secrets_stay_out_of_dlt_logs_even_at_debug(
    locked_server: SimulatorServer, dlt_logs: pytest.LogCaptureFixture
) -> None:
    fetch_window(_config(locked_server.url, token=TOKEN, api_secret=API_SECRET, page_size=100), ONE_DAY)
    assert "Making GET request" in dlt_logs.text  # dlt's request log was captured...
    assert not any(secret in dlt_logs.text for secret in SECRETS)  # ...without the secrets


TRANSIENT_FAULTS = [
    ("http_500", {}),
    ("http_502", {}),
    ("http_503", {}),
    ("http_429", {"retry_after": 1}),
    ("slow", {"seconds": 0.6}),
    ("truncated", {}),
    ("html", {}),
]


@pytest.mark.parametrize(("kind", "options"), TRANSIENT_FAULTS)
def test_transient_faults_recover_within_the_attempts(
    locked_server: SimulatorServer, kind: str, options: dict[str, Any]
) -> None:
    locked_server.inject(kind, times=2, **options)
    config = _config(locked_server.url, token=TOKEN, timeout_s=0.3, max_retry_delay_s=0.1)
    assert fetch_window(config, ONE_DAY) == _expected(locked_server, ONE_DAY)
    assert len(_entry_requests(locked_server)) == 3


PERSISTENT_FAULTS = [
    ("http_500", {}, "kept answering HTTP 500 (after 3 attempts)"),
    ("http_502", {}, "kept answering HTTP 502 (after 3 attempts)"),
    ("http_503", {}, "kept answering HTTP 503 (after 3 attempts)"),
    ("http_429", {"retry_after": 1}, "kept answering HTTP 429 (after 3 attempts)"),
    ("slow", {"seconds": 0.6}, "did not answer within 0.3 s (after 3 attempts)"),
    ("truncated", {}, "got truncated or invalid JSON from"),
    ("html", {}, "got an HTML page instead of JSON from"),
]


@pytest.mark.parametrize(("kind", "options", "message"), PERSISTENT_FAULTS)
def test_persistent_faults_raise_a_clear_source_error(
    locked_server: SimulatorServer,
    kind: str,
    options: dict[str, Any],
    message: str,
    dlt_logs: pytest.LogCaptureFixture,
) -> None:
    locked_server.inject(kind, times=4, **options)
    config = _config(
        locked_server.url, token=TOKEN, api_secret=API_SECRET, timeout_s=0.3, max_retry_delay_s=0.1
    )
    with pytest.raises(SourceError) as caught:
        fetch_window(config, ONE_DAY)
    assert message in caught.value.message
    assert f"{locked_server.url}/api/v1/entries/sgv.json" in caught.value.message
    assert caught.value.hint
    assert len(_entry_requests(locked_server)) == 3
    _assert_secret_free(caught.value, dlt_logs.text)


def _timed_fetch(config: NightscoutConfig) -> float:
    started = time.monotonic()
    fetch_window(config, ONE_DAY)
    return time.monotonic() - started


def test_429_waits_as_long_as_retry_after_says(server: SimulatorServer) -> None:
    config = _config(server.url, backoff_s=0.01)
    unhindered = _timed_fetch(config)  # also pays dlt's first import outside the measurement
    server.inject("http_429", times=1, retry_after=1)
    assert _timed_fetch(config) - unhindered >= 0.9


def test_retry_after_is_capped_by_max_retry_delay(server: SimulatorServer) -> None:
    server.inject("http_429", times=1, retry_after=120)
    assert _timed_fetch(_config(server.url, backoff_s=0.01, max_retry_delay_s=0.2)) < 5


def test_connection_refused_is_a_source_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        fetch_window(_config(url, token=TOKEN, max_attempts=5, backoff_s=30.0), ONE_DAY)
    # Not retried: with five attempts 30 s apart, a retry would take minutes.
    assert time.monotonic() - started < 30.0
    assert caught.value.message == (
        f"could not connect to {url}/api/v1/entries/sgv.json: connection refused "
        "(after 1 attempt: a refused connection is not retried)"
    )
    assert "NIGHTSCOUT_URL" in caught.value.hint
    _assert_secret_free(caught.value)


def test_site_status_reads_status_json(locked_server: SimulatorServer) -> None:
    status = site_status(_config(locked_server.url, api_secret=API_SECRET))
    assert status["status"] == "ok" and status["apiEnabled"] is True
    with pytest.raises(SourceError) as caught:
        site_status(_config(locked_server.url, token="nope"))
    assert "status.json refused access (HTTP 401)" in caught.value.message


def test_site_status_survives_one_html_page(server: SimulatorServer) -> None:
    server.inject("html", times=1, include_status=True)
    assert site_status(_config(server.url))["name"] == "nightscout"


def test_fetching_before_configure_dlt_is_refused(
    server: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DLT_DATA_DIR")
    with pytest.raises(RuntimeError, match="configure_dlt"):
        fetch_window(_config(server.url), ONE_DAY)


# -- odd sites the simulator does not play -------------------------------------------------


@contextmanager
def _odd_site(
    entries: list[Any] | None = None, body: bytes | None = None, honour_lt: bool = True
) -> Iterator[str]:
    """Serves `body` as is, or `entries` paged like Nightscout (dates compared as numbers)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            payload = body
            if payload is None:
                gte = float(query["find[date][$gte]"])
                lt = float(query["find[date][$lt]"]) if honour_lt else float("inf")
                rows = [e for e in entries or [] if gte <= float(e["date"]) < lt]
                rows.sort(key=lambda e: -float(e["date"]))
                payload = json.dumps(rows[: int(query["count"])]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_pages_over_float_and_string_dates() -> None:
    dates: list[object] = [1000.5, "2000", 3000, 3000.25, "4000.75", 5000, 6000.0, 7000]
    entries = [{"_id": str(i), "date": date} for i, date in enumerate(dates)]
    with _odd_site(entries) as url:
        fetched = fetch_window(_config(url, page_size=3), FetchWindow(0, 10_000))
    # 3000 and 3000.25 fall in one millisecond: held back together, neither lost nor repeated.
    assert [e["_id"] for e in fetched] == ["7", "6", "5", "4", "3", "2", "1", "0"]
    assert fetched[4]["date"] == 3000.25 and fetched[6]["date"] == "2000"


def test_a_site_that_ignores_the_date_bound_fails_instead_of_looping() -> None:
    entries = [{"_id": str(i), "date": 1000 + i} for i in range(10)]
    with _odd_site(entries, honour_lt=False) as url, pytest.raises(SourceError) as caught:
        fetch_window(_config(url, page_size=4), FetchWindow(0, 1005))
    assert "ignored find[date][$lt]" in caught.value.message


def test_a_full_page_without_dates_fails() -> None:
    with (
        _odd_site(body=json.dumps([{"_id": "a"}, {"_id": "b"}]).encode()) as url,
        pytest.raises(SourceError) as caught,
    ):
        fetch_window(_config(url, page_size=2), ONE_DAY)
    assert "no entry with a usable `date`" in caught.value.message


@pytest.mark.parametrize(
    ("body", "got"), [(b'{"status": 200}', "an object"), (b'"hello"', "a string"), (b"null", "null")]
)
def test_json_that_is_not_a_list_fails_without_retrying(body: bytes, got: str) -> None:
    with _odd_site(body=body) as url, pytest.raises(SourceError) as caught:
        fetch_window(_config(url), ONE_DAY)
    assert caught.value.message == f"expected a list in JSON from {url}/api/v1/entries/sgv.json, got {got}"


def test_an_empty_list_is_no_entries() -> None:
    with _odd_site(body=b"[]") as url:
        assert fetch_window(_config(url), ONE_DAY) == []


# -- where dlt writes ----------------------------------------------------------------------


def _tree(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    return {str(p): p.stat().st_mtime for p in [path, *path.rglob("*")]}


def test_dlt_writes_only_under_the_home_and_telemetry_is_off(server: SimulatorServer, tmp_path: Path) -> None:
    # A fresh interpreter: dlt must be imported only after configure_dlt, as in the app.
    home, cwd, user_home = tmp_path / "home", tmp_path / "cwd", tmp_path / "user"
    cwd.mkdir()
    user_home.mkdir()
    script = textwrap.dedent(
        f"""
        import json, os, sys
        from pathlib import Path
        from engine.ingest.nightscout import FetchWindow, NightscoutConfig, configure_dlt, fetch_window
        assert "dlt" not in sys.modules
        configure_dlt(Path({str(home)!r}))
        entries = fetch_window(NightscoutConfig(url={server.url!r}), FetchWindow({ONE_DAY.start_ms}, {ONE_DAY.end_ms}))
        from dlt.common.configuration.resolve import resolve_configuration
        from dlt.common.configuration.specs import RuntimeConfiguration
        from dlt.common.runtime.run_context import active
        print(json.dumps({{
            "entries": len(entries),
            "telemetry": resolve_configuration(RuntimeConfiguration()).dlthub_telemetry,
            "env": os.environ["RUNTIME__DLTHUB_TELEMETRY"],
            "data_dir": active().data_dir,
            "run_dir": active().run_dir,
        }}))
        """
    )
    var_dlt = _tree(Path("/var/dlt"))
    env = {k: v for k, v in os.environ.items() if k not in DLT_ENV}
    env.update(HOME=str(user_home), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["entries"] == len(_expected(server, ONE_DAY))
    assert report["telemetry"] is False and report["env"] == "false"
    assert report["data_dir"] == str(home / "dlt" / "data")
    assert report["run_dir"] == str(home / "dlt" / "project")
    assert _tree(Path("/var/dlt")) == var_dlt
    assert list(cwd.iterdir()) == [] and list(user_home.iterdir()) == []
