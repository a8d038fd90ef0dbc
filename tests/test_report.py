"""`phlo-tui report`: the clinic's AGP report, read back from the PDF as a person (pdftotext) would.

Two homes filled by the real engine from the simulator over HTTP, for fixed past days (nothing depends on
today): twenty days in America/New_York around the 2025 spring-forward day, with treatments; seven days
from a site without treatments. Every figure printed is compared with `metrics --json` of the same period
and branch, pooled over the days (sums of readings, of squares, of band counts), within display rounding.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from engine.api.facade import Engine
from engine.config import load_settings
from engine.errors import PhloError
from engine.outputs.report.data import load_report, sufficient_data
from engine.outputs.report.period import Period, resolve_period
from engine.outputs.report.style import PAPER_INCHES, PNG_DPI
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator

ZONE = "America/New_York"
PINNED = datetime(2025, 3, 26, 12, tzinfo=UTC).timestamp()
"""The simulator's now: after the days the homes hold, so the site serves them all."""
SINCE, UNTIL = "2025-03-08", "2025-03-21"
"""A 14-day period holding 2025-03-09, a 23-hour day in New York."""
# pdftotext, pdfinfo and pdffonts come from poppler-utils, which scripts/test installs when missing.


@dataclass(frozen=True)
class Home:
    env: dict[str, str]
    path: Path


def _home(path: Path, since: str, until: str, *, treatments: bool) -> Iterator[Home]:
    with SimulatorServer(
        GlucoseSimulator(seed=3, tz=ZONE, clock=lambda: PINNED), serve_treatments=treatments
    ) as server:
        env = {
            "PHLO_HOME": str(path / "home"),
            "PHLO_CONFIG": str(path / "no-config.toml"),
            "PHLO_TIMEZONE": ZONE,
            "NIGHTSCOUT_URL": server.url,
            "PHLO_MANAGE_POSTGRES": "false",
            "RUNTIME__DLTHUB_TELEMETRY": "false",
        }
        with Engine(load_settings(env)) as engine:
            run = engine.backfill(since, until)
            assert run.status.value == "succeeded", run.error
        yield Home(env, path)


@pytest.fixture(scope="module")
def treated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    yield from _home(tmp_path_factory.mktemp("treated"), "2025-03-05", "2025-03-24", treatments=True)


@pytest.fixture(scope="module")
def untreated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    yield from _home(tmp_path_factory.mktemp("untreated"), "2025-03-12", "2025-03-18", treatments=False)


def phlo(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PHLO_", "NIGHTSCOUT_"))}
    return subprocess.run(
        [sys.executable, "-m", "phlo_tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**keep, **env},
        cwd=cwd,
    )


def pdf_text(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def pdf_info(path: Path) -> dict[str, str]:
    out = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def pooled(days: list[dict[str, Any]]) -> dict[str, float]:
    """The period's figures from `metrics --json`'s daily rows, pooled exactly: a reading-weighted mean,
    the SD from each day's sum of squares, band shares from band counts; never a mean of daily figures."""
    n = sum(d["reading_count"] for d in days)
    total = sum(d["reading_count"] * d["avg_glucose_mg_dl"] for d in days)
    mean = total / n
    squares = sum(
        (d["reading_count"] - 1) * (d["stddev_glucose_mg_dl"] or 0.0) ** 2
        + d["reading_count"] * d["avg_glucose_mg_dl"] ** 2
        for d in days
    )
    sd = math.sqrt((squares - n * mean**2) / (n - 1))
    share = {
        band: sum(d["reading_count"] * d[f"time_{band}_pct"] for d in days) / n
        for band in ("very_low", "low", "in_range", "high", "very_high")
    }
    return {
        "readings": n,
        "mean": mean,
        "cv": 100 * sd / mean,
        "gmi": 3.31 + 0.02392 * mean,
        "gri": min(
            100.0,
            3.0 * share["very_low"] + 2.4 * share["low"] + 1.6 * share["very_high"] + 0.8 * share["high"],
        ),
        "cgm": min(100.0, 100 * n / sum(d["expected_reading_count"] for d in days)),
        "hypo_l1": sum(d["hypo_episodes_l1"] for d in days),
        "hypo_l2": sum(d["hypo_episodes_l2"] for d in days),
        **share,
    }


def printed(text: str, pattern: str) -> str:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the report's text"
    return found.group(1)


def near(shown: str, value: float, decimals: int) -> bool:
    """Whether `shown` is `value` rounded to `decimals` (a hair of slack for a value on a rounding edge)."""
    return abs(float(shown) - value) <= 0.5 * 10**-decimals + 1e-9


def metrics(home: Home, since: str, until: str, branch: str = "main") -> list[dict[str, Any]]:
    result = phlo("metrics", "--since", since, "--until", until, "--branch", branch, "--json", env=home.env)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)["days"]
    return rows


def test_the_pdf_prints_the_lakes_figures(treated: Home, tmp_path: Path) -> None:
    out = tmp_path / "agp.pdf"
    result = phlo("report", "--since", SINCE, "--until", UNTIL, "--out", str(out), env=treated.env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"wrote {out} (2 pages)"
    assert lines[1].startswith(f"period: {SINCE} to {UNTIL} (14 days, {ZONE}), branch main")
    assert lines[2].startswith("data: sufficient: CGM active ")
    days = metrics(treated, SINCE, UNTIL)
    assert [d["reading_date"] for d in days] == [
        (date(2025, 3, 8) + timedelta(days=i)).isoformat() for i in range(14)
    ]
    assert next(d for d in days if d["reading_date"] == "2025-03-09")["expected_reading_count"] == 276
    want = pooled(days)
    text = pdf_text(out)
    assert near(printed(text, r"Mean glucose\s+(\d+) mg/dL"), want["mean"], 0)
    assert near(printed(text, r"\(GMI\)\s+([\d.]+) %"), want["gmi"], 1)
    assert near(printed(text, r"\(CV\)\s+([\d.]+) %"), want["cv"], 1)
    assert near(printed(text, r"\(GRI\)\s+([\d.]+) \(zone"), want["gri"], 1)
    zone = printed(text, r"\(GRI\)\s+[\d.]+ \(zone ([A-E])\)")
    assert zone == "ABCDE"[min(4, max(0, math.ceil(want["gri"] / 20) - 1))]
    assert near(printed(text, r"% time CGM active:\s+([\d.]+) %"), want["cgm"], 1)
    assert int(printed(text, r"episodes, level 1\s+(\d+)")) == want["hypo_l1"]
    assert int(printed(text, r"episodes, level 2\s+(\d+)")) == want["hypo_l2"]
    assert near(printed(text, r"Time in range 70–180\s+([\d.]+) %"), want["in_range"], 1)
    assert near(printed(text, r"Time below 70\s+([\d.]+) %"), want["very_low"] + want["low"], 1)
    assert near(printed(text, r"Time below 54\s+([\d.]+) %"), want["very_low"], 1)
    assert near(printed(text, r"Time above 180\s+([\d.]+) %"), want["high"] + want["very_high"], 1)
    assert near(printed(text, r"Time above 250\s+([\d.]+) %"), want["very_high"], 1)
    # The time-in-ranges bar, very high to very low: each share and its time per day.
    bar = re.findall(r"([\d.]+) % \((?:(\d+) h )?(\d+) min per day\)", text)
    assert len(bar) == 5
    for (share, hours, minutes), band in zip(
        bar, ("very_high", "high", "in_range", "low", "very_low"), strict=True
    ):
        assert near(share, want[band], 1)
        assert int(hours or 0) * 60 + int(minutes) == round(want[band] / 100 * 1440)
    assert "Period: 08 Mar 2025 – 21 Mar 2025 (14 days)".replace(" ", "") in text.replace(" ", "")
    assert "NOT ENOUGH DATA" not in text
    for day in ("Sat 08 Mar", "Sun 09 Mar", "Fri 21 Mar"):
        assert day in text
    info = pdf_info(out)
    assert info["Pages"] == "2"
    assert info["Page size"].startswith("595")  # A4 by default
    fonts = subprocess.run(["pdffonts", str(out)], capture_output=True, text=True, check=True).stdout
    rows = fonts.splitlines()[2:]
    assert rows and all(row.split()[-5] == "yes" for row in rows), fonts  # the 'emb' column
    # The second page: insulin and carbs per day and each bolus summarised, from the treatment tables.
    with Engine(load_settings(treated.env)) as engine:
        totals = engine.query(
            "select sum(total_insulin_units), sum(total_carbs_g), sum(bolus_count) from gold.fct_daily_treatment_totals "
            "where reading_date between $since and $until",
            params={"since": SINCE, "until": UNTIL},
        ).rows[0]
        readings = engine.query(
            "select max(reading_local_ts) from silver.fct_glucose_readings where reading_date between $s and $u",
            params={"s": SINCE, "u": UNTIL},
        ).rows[0][0]
    assert near(printed(text, r"Bolus insulin ([\d.]+) U over 14 days"), totals[0], 1)
    assert near(printed(text, r"carbohydrates (\d+) g,"), totals[1], 0)
    assert int(printed(text, r"All boluses\s+(\d+)")) == totals[2]
    assert f"Data through: {readings:%d %b %Y %H:%M}".replace(" ", "") in text.replace(" ", "")
    assert list(tmp_path.iterdir()) == [out], "no temporary file is left beside the report"


def test_mmol_letter_and_png(treated: Home, tmp_path: Path) -> None:
    env = {**treated.env, "PHLO_REPORT_PAPER": "Letter", "PHLO_REPORT_NAME": "Ada Example"}
    out = tmp_path / "mmol.pdf"
    result = phlo(
        "report", "--since", SINCE, "--until", UNTIL, "--units", "MMOL/L", "--out", str(out), env=env
    )
    assert result.returncode == 0, result.stderr
    text = pdf_text(out)
    want = pooled(metrics(treated, SINCE, UNTIL))
    assert near(printed(text, r"Mean glucose\s+([\d.]+) mmol/L"), want["mean"] / 18.018, 1)
    assert "Ada Example" in text and "mmol/L" in text
    for label in (
        "Target range 3.9–10.0 mmol/L",
        "Very high >13.9 mmol/L",
        "Low 3.0–3.8 mmol/L",
        "Very low <3.0",
    ):
        assert label in text
    assert "Time in range 3.9–10.0" in text and "Time below 3.0" in text and "Time above 13.9" in text
    ticks = set(re.findall(r"^\s*(\d+\.\d)\s*$", text, flags=re.MULTILINE))
    assert {"3.0", "3.9", "10.0", "13.9"} <= ticks, ticks
    assert pdf_info(out)["Page size"].startswith("612 x 792")  # Letter
    png = tmp_path / "agp.png"
    result = phlo("report", "--since", SINCE, "--until", UNTIL, "--out", str(png), env=treated.env)
    assert result.returncode == 0, result.stderr
    width, height = (round(inches * PNG_DPI) for inches in PAPER_INCHES["A4"])
    assert abs(png_size(png)[0] - width) <= 1 and abs(png_size(png)[1] - height) <= 1
    second = tmp_path / "agp-2.png"
    assert png_size(second) == png_size(png), "the treatments page goes to a second PNG"
    assert result.stdout.startswith(f"wrote {png}, {second} (2 pages)")


def test_without_treatments_one_page_and_the_banner(untreated: Home, tmp_path: Path) -> None:
    week = tmp_path / "week.pdf"
    result = phlo(
        "report", "--since", "2025-03-12", "--until", "2025-03-18", "--out", str(week), env=untreated.env
    )
    assert result.returncode == 0, result.stderr
    assert "data: NOT sufficient" in result.stdout
    text = pdf_text(week)
    assert pdf_info(week)["Pages"] == "1"
    assert "NOT ENOUGH DATA" in text and "period of 7 days (needs ≥ 14)" in text
    assert "CGM active" not in text.split("NOT ENOUGH DATA")[1].split("\n")[0]
    # Fourteen days of which seven have readings: enough days, too little CGM data.
    fortnight = tmp_path / "fortnight.pdf"
    result = phlo("report", "--until", "2025-03-18", "--out", str(fortnight), env=untreated.env)
    assert result.returncode == 0, result.stderr
    banner = pdf_text(fortnight).split("NOT ENOUGH DATA")[1].split("\n")[0]
    assert "needs ≥ 70 %" in banner and "period of" not in banner
    days = metrics(untreated, "2025-03-05", "2025-03-18")
    shown = float(printed(pdf_text(fortnight), r"% time CGM active:\s+([\d.]+) %"))
    expected = sum(d["reading_count"] for d in days) / (13 * 288 + 276) * 100  # 9 March has 23 hours
    assert near(str(shown), expected, 1)
    assert "no data" in pdf_text(fortnight), "a day without readings has its panel, marked"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--since", "2025-01-01", "--until", "2025-01-14"],
            "no readings from 2025-01-01 to 2025-01-14 on main",
        ),
        (["--since", "2100-01-01", "--until", "2100-01-14"], "in the future"),
        (["--days", "14", "--since", "2025-03-01"], "--days cannot be combined"),
        (["--since", "2025-03-20", "--until", "2025-03-10"], "ends (2025-03-10) before it starts"),
        (["--since", "2025-02-30"], "bad date '2025-02-30'"),
        (["--out", "agp.txt"], "cannot write a report as 'agp.txt'"),
        (["--out", "missing/agp.pdf"], "no directory"),
        (
            ["--since", "2025-03-12", "--until", "2025-03-18", "--out", "/proc/agp.pdf"],
            "cannot write /proc/agp.pdf",
        ),
    ],
)
def test_bad_input_is_one_line(untreated: Home, tmp_path: Path, args: list[str], message: str) -> None:
    result = phlo("report", *args, env=untreated.env, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("phlo-tui: error: ") and message in lines[0], result.stderr
    assert lines[1:] == [] or (len(lines) == 2 and lines[1].startswith("  hint: ")), result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing is written, not even a temporary file"


def test_an_existing_file_is_kept_without_force(untreated: Home, tmp_path: Path) -> None:
    out = tmp_path / "agp.pdf"
    out.write_bytes(b"the clinic's copy")
    args = ["report", "--since", "2025-03-12", "--until", "2025-03-18", "--out", str(out)]
    refused = phlo(*args, env=untreated.env)
    assert refused.returncode == 1 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert out.read_bytes() == b"the clinic's copy"
    replaced = phlo(*args, "--force", env=untreated.env)
    assert replaced.returncode == 0, replaced.stderr
    assert out.read_bytes().startswith(b"%PDF") and oct(out.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agp.pdf"]


def test_when_the_light_reader_cannot_answer_the_engine_reads_the_same(
    untreated: Home, tmp_path: Path
) -> None:
    """The command line reads in a forked child through engine.api.fastread; on a home whose snapshot files
    were not recorded that child cannot answer, and the engine reads the period instead: same page."""
    args = ["report", "--since", "2025-03-12", "--until", "2025-03-18", "--force"]
    light = phlo(*args, "--out", str(tmp_path / "light.pdf"), env=untreated.env)
    assert light.returncode == 0, light.stderr
    copy = {**untreated.env, "PHLO_HOME": str(tmp_path / "home")}
    shutil.copytree(untreated.env["PHLO_HOME"], copy["PHLO_HOME"])
    with sqlite3.connect(load_settings(copy).runs_db) as db:
        assert db.execute("delete from snapshot_files").rowcount > 0
    db.close()
    engine = phlo("-v", *args, "--out", str(tmp_path / "engine.pdf"), env=copy)
    assert engine.returncode == 0, engine.stderr
    assert "the engine reads the report: snapshot" in engine.stderr
    assert pdf_text(tmp_path / "engine.pdf") == pdf_text(tmp_path / "light.pdf")


def test_the_command_lines_period_ends_at_data_time(untreated: Home, tmp_path: Path) -> None:
    """Without dates, the last 14 full local days before PHLO_NOW (engine.clock), not before the wall clock."""
    noon = "2025-03-19T16:00:00+00:00"  # 12:00 on 19 March in New York, the day after the home's last
    result = phlo("report", "--out", "agp.pdf", env={**untreated.env, "PHLO_NOW": noon}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "period: 2025-03-05 to 2025-03-18 (14 days, America/New_York)" in result.stdout, result.stdout


def test_matplotlibs_cache_goes_to_the_home_when_the_users_cannot_be_written(
    untreated: Home, tmp_path: Path
) -> None:
    """A service user whose home cannot be written: matplotlib's font list is kept in PHLO_HOME/matplotlib
    (built once, found by the next process), not in a temporary directory made, and warned about, every time."""
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    env = {**untreated.env, "HOME": str(blocked / "home"), "XDG_CONFIG_HOME": "", "XDG_CACHE_HOME": ""}
    env |= {"MPLCONFIGDIR": ""}
    for _ in range(2):
        args = ["report", "--since", "2025-03-12", "--until", "2025-03-18", "--out", "agp.pdf", "--force"]
        result = phlo(*args, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "temporary" not in result.stderr and "not a writable" not in result.stderr, result.stderr
    assert list((Path(untreated.env["PHLO_HOME"]) / "matplotlib").glob("fontlist-*.json"))


def test_the_agp_is_the_periods_percentiles_by_time_of_day(treated: Home) -> None:
    """Each slot's percentiles are numpy's (linear, type 7) over the readings within ±30 min of it, on all
    days of the period; the window wraps around midnight."""
    settings = load_settings(treated.env)
    period = Period(date(2025, 3, 8), date(2025, 3, 21))
    with Engine(settings) as engine:
        data = load_report(engine, settings, period, "main", datetime(2025, 3, 26, tzinfo=UTC))
        rows = engine.query(
            "select hour(reading_local_ts) * 60 + minute(reading_local_ts) + second(reading_local_ts) / 60.0, "
            "glucose_mg_dl from silver.fct_glucose_readings where reading_date between $s and $u",
            params={"s": period.since, "u": period.until},
        ).rows
    minutes = np.array([r[0] for r in rows], dtype=float)
    values = np.array([r[1] for r in rows], dtype=float)
    assert len(data.agp) == 96
    for slot in (data.agp[0], data.agp[30], data.agp[95]):
        window = values[(minutes - slot.minute + 30) % 1440 < 60]  # [slot - 30 min, slot + 30 min)
        assert slot.readings == len(window)
        assert np.allclose(
            [slot.p05, slot.p25, slot.p50, slot.p75, slot.p95], np.percentile(window, [5, 25, 50, 75, 95])
        )
    assert [p.day for p in data.profiles] == period.dates()


def test_the_default_period_is_the_last_14_full_local_days() -> None:
    zone = ZoneInfo(ZONE)
    now = datetime(2025, 3, 22, 3, 30, tzinfo=UTC)  # 23:30 on 21 March in New York
    assert resolve_period(zone, now) == Period(date(2025, 3, 7), date(2025, 3, 20))
    assert resolve_period(zone, now, days=90) == Period(date(2024, 12, 21), date(2025, 3, 20))
    assert resolve_period(zone, now, until="2025-03-10") == Period(date(2025, 2, 25), date(2025, 3, 10))
    assert resolve_period(zone, now, since="2025-03-01") == Period(date(2025, 3, 1), date(2025, 3, 20))
    assert resolve_period(zone, now, since="2025-03-21") == Period(date(2025, 3, 21), date(2025, 3, 21))
    with pytest.raises(PhloError, match="in the future"):
        resolve_period(zone, now, since="2025-03-20", until="2025-03-22")
    with pytest.raises(PhloError, match=r"outside 1\.\.3650"):
        resolve_period(zone, now, days=0)
    # The spring-forward day expects 276 readings; today counts up to now.
    period = Period(date(2025, 3, 9), date(2025, 3, 9))
    assert period.expected_readings(zone, now) == 276
    assert Period(date(2025, 3, 21), date(2025, 3, 21)).expected_readings(zone, now) == 282


def test_sufficient_data_needs_14_days_and_70_percent() -> None:
    assert sufficient_data(14, 70.0)
    assert not sufficient_data(13, 100.0)
    assert not sufficient_data(14, 69.99)


@pytest.mark.anyio
async def test_e_exports_the_period_on_screen(treated: Home) -> None:
    from phlo_tui.app import PhloApp
    from tests.test_tui import Recorder, settle

    clock = datetime(2025, 3, 21, 18, tzinfo=UTC)  # 14:00 in New York: today is 21 March
    engine = Engine(load_settings(treated.env))
    recorder = Recorder()
    app = PhloApp(engine, poll_interval=60.0, schedule=False, clock=lambda: clock)
    reports = Path(treated.env["PHLO_HOME"]) / "reports"
    try:
        async with app.run_test(size=(100, 32), message_hook=recorder) as pilot:
            await settle(pilot)
            await pilot.press("e")
            await settle(pilot)
            overview = reports / "agp-report-2025-03-08_2025-03-21.pdf"
            assert pdf_info(overview)["Pages"] == "2"
            assert any(str(overview) in n for n in recorder.notifications()), recorder.notifications()
            # Today is counted up to the dashboard's clock (14:00): 13 whole days and 14 hours expected.
            cgm = float(printed(pdf_text(overview), r"% time CGM active:\s+([\d.]+) %"))
            days = metrics(treated, "2025-03-08", "2025-03-21")
            expected = 12 * 288 + 276 + 14 * 12
            readings = engine.query(
                "select count(*) from silver.fct_glucose_readings where reading_date between $s and $u",
                params={"s": "2025-03-08", "u": "2025-03-21"},
            ).rows[0][0]
            assert readings == sum(d["reading_count"] for d in days)
            assert near(str(cgm), min(100.0, 100 * readings / expected), 1)
            await pilot.press("2", "d", "u")  # the Charts page over 30 days, in mmol/L
            await settle(pilot)
            await pilot.press("e")
            await settle(pilot)
            charts = reports / "agp-report-2025-02-20_2025-03-21.pdf"
            assert "mmol/L" in pdf_text(charts)
            assert any(str(charts) in n for n in recorder.notifications())
    finally:
        engine.close()


def test_report_settings(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('report_name = "Ada Example"\nreport_paper = "Letter"\n')
    settings = load_settings({}, config)
    assert (settings.report_name, settings.report_paper) == ("Ada Example", "Letter")
    assert load_settings({}, tmp_path / "none.toml").report_paper == "A4"
    with pytest.raises(
        PhloError, match="PHLO_REPORT_PAPER: bad value for report_paper: 'B5' is not one of A4, Letter"
    ):
        load_settings({"PHLO_REPORT_PAPER": "B5"}, tmp_path / "none.toml")
