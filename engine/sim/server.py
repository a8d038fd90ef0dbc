"""Built-in Nightscout API v1 simulator: a deterministic CGM trace and the treatments behind it
(boluses before its meal rises, corrections, carbs for its lows, basal changes) over loopback HTTP."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from engine.clock import clock_from_env, epoch_seconds
from engine.errors import PhloError
from engine.sim.loop import (
    DELETED_AFTER_S,
    EDITED_AFTER_S,
    Uploader,
    as_served,
    as_v3,
    closed_loop_treatments,
    mark_deleted_entries,
)
from engine.sim.profiles import profile_response

EntryKind = Literal["all", "sgv", "mbg", "cal"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_S = 86_400
DAY_MS = DAY_S * 1000
READING_S = 300
SENSOR_LIFE_S = 10 * DAY_S
WARMUP_S = 2 * 3600
IMPLICIT_WINDOW_MS = 4 * DAY_MS
# The trace starts here so that an unbounded query ("$lt" only, count=0) still terminates.
HISTORY_START_MS = 1_262_304_000_000  # 2010-01-01T00:00:00Z
HISTORY_LIMIT = 1000  # API v3's API3_MAX_LIMIT: the default and the most a history page holds
MIN_TIMESTAMP_MS = 946_684_800_000  # API v3 refuses a lastModified before 2000-01-01 (HTTP 400)
JWT_LIFETIME_S = 8 * 3600  # lib/server/enclave.js signJWT's default
DEFAULT_COUNT = 10
SENSOR_MIN, SENSOR_MAX = 40, 400
METER_MIN, METER_MAX = 20, 600

# Per-reading quirk rates (fractions of sgv readings).
ERROR_CODE_RATE = 0.003
STRING_SGV_RATE = 0.01
DUPLICATE_RATE = 0.005
NOT_COMPUTABLE_RATE = 0.003
RATE_OUT_OF_RANGE_RATE = 0.0015
MISSING_DIRECTION_RATE = 0.003
DUPLICATE_SAME_MS_RATE = 0.3
# Per-day event rates.
GAPS_PER_DAY = 0.45
COMPRESSION_PER_NIGHT = 0.25
CALIBRATION_PER_DAY = 0.85
ERROR_CODES = (5, 5, 5, 1, 9, 10, 12)

# Gamma-shaped bumps are cut at this many time constants (value there < 1e-4 of the peak), so
# each event has compact support and a reading only ever sees events from nearby days.
BUMP_SUPPORT = 8.0
SENSOR_NOISE_SD = 2.5
DRIFT_LAYERS = ((3 * 3600, 31.0), (40 * 60, 5.0))  # (knot spacing s, SD mg/dL)
RATE_LOOKBACK_S = 600

PRIMARY_DEVICE = "xDrip-DexcomG6"
DUPLICATE_DEVICE = "share2"
DEVICES = (PRIMARY_DEVICE, DUPLICATE_DEVICE)

# Dexcom trend numbers; 0 means the uploader sent no direction at all.
DIRECTIONS = {
    1: "DoubleUp",
    2: "SingleUp",
    3: "FortyFiveUp",
    4: "Flat",
    5: "FortyFiveDown",
    6: "SingleDown",
    7: "DoubleDown",
    8: "NOT COMPUTABLE",
    9: "RATE OUT OF RANGE",
}
NOT_COMPUTABLE, RATE_OUT_OF_RANGE, NO_DIRECTION = 8, 9, 0

SGV, MBG, CAL = 0, 1, 2
KIND_CODES = {"sgv": SGV, "mbg": MBG, "cal": CAL}
_TYPED_KINDS: dict[str, EntryKind] = {"sgv": "sgv", "mbg": "mbg", "cal": "cal"}

# Hash domain tags: each quirk draws from its own stream so rates stay independent.
(
    TAG_ID,
    TAG_NOISE,
    TAG_ERROR,
    TAG_ERROR_CODE,
    TAG_DIRECTION,
    TAG_STRING,
    TAG_DUPLICATE,
    TAG_DUPLICATE_MS,
    TAG_METER,
    TAG_SENSOR,
    TAG_SENSOR_PHASE,
    TAG_GAPS,
    TAG_PLAN,
    TAG_DRIFT,
) = range(1, 15)
TAG_TREATMENTS = 15  # a default_rng stream per local day, like TAG_PLAN
TAG_LATE_UPLOADS = 16  # its own stream, so the day's other draws stay as they were
TAG_TREATMENT_COPIES = 17

# Treatments: an insulin-to-carb ratio, the share of values logged as strings, and how often a
# day holds a record a real site would hold by mistake (negative insulin, absurd carbs, no date).
CARBS_PER_UNIT = 10.0
STRING_VALUE_RATE = 0.1
BAD_TREATMENT_EVERY_DAYS = 5  # so any 6 whole days hold one
ENTERED_BY = ("xdrip", "careportal", "AndroidAPS")
# A phone that was offline uploads its treatments hours later, in its own local time: with its
# offset, and half the time (an old uploader) with a space where ISO 8601 puts the `T`.
LATE_UPLOAD_RATE = 0.05
LATE_UPLOAD_HOURS = (1.0, 8.0)
# A pump uploader beside the phone app sends some boluses and carbs a second time: its own _id,
# created_at a few seconds later in UTC, the same doses.
TREATMENT_COPY_RATE = 0.08
COPY_UPLOADER = "openaps://medtronic/722"

FAULT_KINDS = ("http_500", "http_502", "http_503", "http_429", "slow", "truncated", "html")
_FAULT_OPTIONS = {"http_429": {"retry_after"}, "slow": {"seconds"}}

_U64 = np.uint64
_MASK64 = (1 << 64) - 1
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_LEADING_INT = re.compile(r"\s*([+-]?\d+)")


def _splitmix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    x = x + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _to_unit(h: npt.NDArray[np.uint64]) -> FloatArray:
    return (h >> _U64(11)).astype(np.float64) * 2.0**-53


def _gamma_bumps(t: FloatArray, bumps: FloatArray) -> FloatArray:
    """Sum of A·(x·e^(1−x))^k with x = (t − onset)/τ: peaks at A when t − onset = τ."""
    x = (t[:, None] - bumps[:, 0]) / bumps[:, 2]
    inside = (x > 0.0) & (x < BUMP_SUPPORT)
    safe = np.where(inside, x, 1.0)
    shape = np.where(inside, np.exp(bumps[:, 3] * (np.log(safe) + 1.0 - safe)), 0.0)
    # Row sums over a fixed event set keep every reading bit-identical however it is queried.
    result: FloatArray = (shape * bumps[:, 1]).sum(axis=1)
    return result


def _leading_int(text: str) -> int | None:
    """Parse like JavaScript's parseInt, which Nightscout applies to numeric query fields."""
    match = _LEADING_INT.match(text)
    return int(match.group(1)) if match else None


@lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def _units(units: float) -> float:
    """Insulin as pumps deliver it: whole 0.05 U steps."""
    return round(round(units * 20) / 20, 2)


def _iso_ms(ms: int) -> str:
    day, rest = divmod(ms, DAY_MS)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{_day_prefix(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


@dataclass(frozen=True)
class _DayPlan:
    """What happens on one local calendar day, as UTC instants (seconds)."""

    noon: float
    baseline: float
    bumps: FloatArray  # rows of (onset, amplitude, tau, shape k)
    compressions: FloatArray  # rows of (start, duration, depth)
    fingersticks: tuple[int, ...]
    calibration: int | None
    meals: tuple[tuple[float, float, bool], ...] = ()  # (onset, rise mg/dL, over-bolused)
    lows: tuple[float, ...] = ()  # nadirs of the dips not caused by a meal bolus


@dataclass(frozen=True)
class _Block:
    """All entries whose date falls in one UTC day, as columns sorted by date ascending."""

    date_ms: IntArray
    kind: npt.NDArray[np.int8]
    id_tail: npt.NDArray[np.uint64]
    value: IntArray  # sgv or mbg
    direction: npt.NDArray[np.int8]
    as_string: npt.NDArray[np.bool_]
    device: npt.NDArray[np.int8]
    filtered: IntArray
    unfiltered: IntArray
    slope: FloatArray
    intercept: FloatArray


class GlucoseSimulator:
    """A deterministic T1D-like CGM trace: every entry is a pure function of seed, tz and time."""

    def __init__(
        self,
        seed: int = 42,
        tz: str = "UTC",
        clock: Callable[[], float] | None = None,
        uploader: Uploader | None = None,
    ) -> None:
        """`clock` gives "now" in epoch seconds: entries after it do not exist yet. Default: data time
        ($PHLO_NOW or the wall clock, engine.clock), so a simulator in a subprocess shares its caller's.
        `uploader` makes the treatments those of one closed loop (engine/sim/loop.py), and
        deletes a few readings; None serves the mixed uploaders of a site without one."""
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {tz!r}: use an IANA name such as 'UTC'") from e
        self.seed = seed
        self.clock = clock if clock is not None else epoch_seconds(clock_from_env())
        self._seed64 = seed & _MASK64
        self._keys = {
            tag: _splitmix(np.array([self._seed64 ^ (tag * 0x632BE59BD9B4E019 & _MASK64)], _U64))[0]
            for tag in range(TAG_ID, TAG_DRIFT + 1)
        }
        phase = self._hash(np.zeros(1, np.int64), TAG_SENSOR_PHASE)[0] % _U64(SENSOR_LIFE_S)
        self._sensor_phase = int(phase)
        # About two years of days; a block is ~300 rows of a dozen numeric columns (~25 kB).
        self._block = lru_cache(maxsize=800)(self._generate_block)
        self._plan = lru_cache(maxsize=4096)(self._generate_plan)
        self.uploader = uploader
        self._treatments = lru_cache(maxsize=4096)(
            self._generate_treatments if uploader is None else self._closed_loop_treatments
        )

    # -- queries -------------------------------------------------------------------------------

    def entries(
        self,
        *,
        kind: EntryKind = "all",
        gte: int | None = None,
        gt: int | None = None,
        lt: int | None = None,
        lte: int | None = None,
        count: int = DEFAULT_COUNT,
    ) -> list[dict[str, Any]]:
        """Entries as Nightscout returns them, newest first.

        Without any date bound only the last 4 days are searched (Nightscout's implicit filter);
        entries after the clock's "now" do not exist yet. `count <= 0` means no limit, as a
        MongoDB limit of 0 does.
        """
        low, high = self._bounds(gte, gt, lt, lte)
        found = self._select(kind, low, high, count)
        return found if self.uploader is None else mark_deleted_entries(found, self.seed)

    def _bounds(self, gte: int | None, gt: int | None, lt: int | None, lte: int | None) -> tuple[int, int]:
        """The inclusive [low, high] instants (ms) a find[...] filter selects, up to the clock's now;
        with no bound at all, only the last 4 days (Nightscout's implicit filter)."""
        now_ms = int(self.clock() * 1000)
        low, high = HISTORY_START_MS, now_ms
        if gte is None and gt is None and lt is None and lte is None:
            low = max(low, now_ms - IMPLICIT_WINDOW_MS)
        if gte is not None:
            low = max(low, gte)
        if gt is not None:
            low = max(low, gt + 1)
        if lt is not None:
            high = min(high, lt - 1)
        if lte is not None:
            high = min(high, lte)
        return low, high

    def treatments(
        self,
        *,
        gte: int | str | None = None,
        gt: int | str | None = None,
        lt: int | str | None = None,
        lte: int | str | None = None,
        count: int = DEFAULT_COUNT,
    ) -> list[dict[str, Any]]:
        """Treatments as Nightscout returns them: bounds on `created_at` compared as text with the
        stored strings, as MongoDB does, and the greatest string first (`sort: {created_at: -1}`).

        A bound is an instant (ms) or ISO text; Nightscout rewrites either into UTC ISO text with
        milliseconds (`lib/server/query.js`), which then meets stored strings of every offset and
        form: `04:30:00-05:00` (09:30Z) sorts before `09:00:00.000Z`. Without any bound the site
        adds `$gte` 4 days before now. A treatment exists once uploaded (its `_id` holds the upload
        second, as a real ObjectId does); `count <= 0` means no limit. A bound that is no date
        matches nothing.
        """
        now_ms = int(self.clock() * 1000)
        bounds = {"gte": gte, "gt": gt, "lt": lt, "lte": lte}
        if all(value is None for value in bounds.values()):
            bounds["gte"] = now_ms - IMPLICIT_WINDOW_MS
        given = {op: _bound_text(value) for op, value in bounds.items() if value is not None}
        texts = {op: text for op, text in given.items() if text is not None}
        if len(texts) < len(given):
            return []
        # A stored string sorts within two days of its instant (offsets, a space for the `T`).
        instants = {op: _instant_ms(text) for op, text in texts.items()}
        low = max(
            [HISTORY_START_MS]
            + [ms - 2 * DAY_MS for op, ms in instants.items() if op in ("gte", "gt") and ms is not None]
        )
        high = min(
            [now_ms]
            + [ms + 2 * DAY_MS for op, ms in instants.items() if op in ("lt", "lte") and ms is not None]
        )
        if high < low:
            return []
        first = _EPOCH_ORDINAL + low // DAY_MS - 1
        last = _EPOCH_ORDINAL + high // DAY_MS + 1

        def selected(text: object) -> bool:
            # MongoDB compares a string bound with strings only: a missing created_at never matches.
            return isinstance(text, str) and all(
                _TEXT_COMPARISONS[op](text, bound) for op, bound in texts.items()
            )

        served = (
            as_served(doc, now_ms)
            for ordinal in range(last, first - 1, -1)
            for uploaded_ms, doc in self._treatments(ordinal)
            if uploaded_ms <= now_ms and selected(doc.get("created_at"))
        )
        found = [doc for doc in served if doc is not None]
        found.sort(key=lambda doc: (doc["created_at"], doc["_id"]), reverse=True)
        limit = count if count > 0 else len(found)
        return found[:limit]

    def history(
        self, collection: str, last_modified: int, limit: int = HISTORY_LIMIT
    ) -> list[dict[str, Any]]:
        """API v3's history of `collection` (entries or treatments): the documents whose srvModified
        is after `last_modified` (epoch ms) and not after now, the oldest change first, at most
        `limit`, as API v3 serves them. Only documents written or changed through API v3 have a
        srvModified: the closed loop's AndroidAPS uploads and the readings the person deleted."""
        now_ms = int(self.clock() * 1000)
        changed: list[dict[str, Any]] = []
        if collection == "treatments":
            # A document is changed at most this long after the day it belongs to.
            reach = max(DELETED_AFTER_S, EDITED_AFTER_S) * 1000 + 2 * DAY_MS
            first = _EPOCH_ORDINAL + max(last_modified - reach, HISTORY_START_MS) // DAY_MS
            for ordinal in range(first, _EPOCH_ORDINAL + now_ms // DAY_MS + 2):
                for uploaded_ms, doc in self._treatments(ordinal):
                    served = as_served(doc, now_ms) if uploaded_ms <= now_ms else None
                    modified = served.get("srvModified") if served else None
                    if served and isinstance(modified, int) and last_modified < modified <= now_ms:
                        changed.append(served)
        elif collection == "entries" and self.uploader is not None:
            # A deleted reading's srvModified is its date: read forward a few days at a time.
            low = max(last_modified + 1, HISTORY_START_MS)
            while low <= now_ms and len(changed) < limit:
                high = min(low + 7 * DAY_MS, now_ms + 1)
                found = mark_deleted_entries(self._select("sgv", low, high - 1, 0), self.seed)
                changed.extend(
                    sorted((e for e in found if e.get("isValid") is False), key=lambda e: e["date"])
                )
                low = high
        changed.sort(key=lambda doc: (doc["srvModified"], doc["_id"]))
        return [as_v3(doc) for doc in changed[:limit]]

    def export(self, since_ms: int, until_ms: int, kind: EntryKind = "all") -> list[dict[str, Any]]:
        """Every entry with since_ms <= date < until_ms (and not after now), newest first."""
        return self.entries(kind=kind, gte=since_ms, lt=until_ms, count=0)

    def _select(self, kind: EntryKind, low: int, high: int, count: int) -> list[dict[str, Any]]:
        if kind != "all" and kind not in KIND_CODES:
            raise ValueError(f"unknown entry kind {kind!r}: use all, sgv, mbg or cal")
        if high < low:
            return []
        limit = count if count > 0 else None
        picked: list[tuple[_Block, npt.NDArray[np.intp]]] = []
        total = 0
        for day in range(high // DAY_MS, low // DAY_MS - 1, -1):
            block = self._block(day)
            first = int(np.searchsorted(block.date_ms, low, side="left"))
            last = int(np.searchsorted(block.date_ms, high, side="right"))
            rows = np.arange(last - 1, first - 1, -1)
            if kind != "all":
                rows = rows[block.kind[rows] == KIND_CODES[kind]]
            if limit is not None:
                rows = rows[: limit - total]
            picked.append((block, rows))
            total += len(rows)
            if limit is not None and total >= limit:
                break
        return [doc for block, rows in picked for doc in _render(block, rows)]

    # -- deterministic randomness ---------------------------------------------------------------

    def _hash(self, values: IntArray, tag: int) -> npt.NDArray[np.uint64]:
        return _splitmix(_splitmix(values.astype(_U64) ^ self._keys[tag]))

    def _uniform(self, values: IntArray, tag: int) -> FloatArray:
        return _to_unit(self._hash(values, tag))

    def _normal(self, values: IntArray, tag: int) -> FloatArray:
        h = self._hash(values, tag)
        u1 = 1.0 - _to_unit(h)
        u2 = _to_unit(_splitmix(h))
        result: FloatArray = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        return result

    # -- sensors ------------------------------------------------------------------------------

    def _sensor_start(self, sensor: int) -> int:
        return self._sensor_phase + sensor * SENSOR_LIFE_S

    def _sensor_of(self, t: int) -> int:
        return (t - self._sensor_phase) // SENSOR_LIFE_S

    def _sensor_draws(self, sensors: IntArray) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
        """Per-sensor reading offset (s), gain bias, raw-count slope and intercept."""
        h = self._hash(sensors, TAG_SENSOR)
        offset = (h % _U64(READING_S)).astype(np.int64)
        u = _to_unit(h)
        v = _to_unit(_splitmix(h))
        w = _to_unit(_splitmix(_splitmix(h)))
        return offset, (u - 0.5) * 0.08, 750.0 + 250.0 * v, 25_000.0 + 10_000.0 * w

    def _reading_times(self, start: int, end: int) -> tuple[IntArray, IntArray]:
        """Sensor reading instants in [start, end): every 5 min on the sensor's own offset."""
        times: list[IntArray] = []
        sensors: list[IntArray] = []
        for sensor in range(self._sensor_of(start), self._sensor_of(end - 1) + 1):
            offset = int(self._sensor_draws(np.array([sensor]))[0][0])
            life_start = self._sensor_start(sensor)
            first = max(start, life_start + WARMUP_S)
            stop = min(end, life_start + SENSOR_LIFE_S)
            first += (offset - first) % READING_S
            grid = np.arange(first, stop, READING_S, dtype=np.int64)
            times.append(grid)
            sensors.append(np.full(len(grid), sensor, dtype=np.int64))
        return np.concatenate(times), np.concatenate(sensors)

    def _gaps(self, day: int) -> list[tuple[int, int]]:
        """Signal-loss runs (start, end) starting on a UTC day: 15 min to 2 h each."""
        rng = np.random.default_rng([self._seed64, TAG_GAPS, day])
        gaps = []
        for _ in range(int(rng.poisson(GAPS_PER_DAY))):
            start = day * DAY_S + int(rng.uniform(0, DAY_S))
            gaps.append((start, start + int(rng.uniform(15, 120) * 60)))
        return gaps

    # -- physiology -----------------------------------------------------------------------------

    def _generate_plan(self, ordinal: int) -> _DayPlan:
        rng = np.random.default_rng([self._seed64, TAG_PLAN, ordinal])
        day = date.fromordinal(ordinal)
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz)

        def at(hours: float) -> float:
            # Aware datetime arithmetic is wall-clock arithmetic, so DST days stay correct.
            return (midnight + timedelta(hours=hours)).timestamp()

        bumps: list[tuple[float, float, float, float]] = []
        meals: list[tuple[float, float, bool]] = []
        lows: list[float] = []
        for earliest, latest in ((6.5, 9.0), (11.5, 14.0), (17.5, 20.5)):
            meal = at(rng.uniform(earliest, latest))
            bumps.append((meal, rng.uniform(40, 150), rng.uniform(60, 90) * 60, 2.0))
            over_bolus = bool(rng.random() < 0.25)
            if over_bolus:  # an over-bolus: a dip a few hours after the meal
                onset = meal + rng.uniform(120, 200) * 60
                bumps.append((onset, -rng.uniform(25, 60), rng.uniform(45, 75) * 60, 3.0))
            meals.append((meal, bumps[-2 if over_bolus else -1][1], over_bolus))
        bumps.append((at(rng.uniform(3.5, 4.5)), rng.uniform(15, 40), rng.uniform(120, 170) * 60, 3.0))
        if rng.random() < 0.3:
            bumps.append((at(rng.uniform(15, 19.5)), -rng.uniform(30, 70), rng.uniform(40, 70) * 60, 2.0))
            lows.append(bumps[-1][0] + bumps[-1][2])
        if rng.random() < 0.3:
            bumps.append((at(rng.uniform(0.5, 4.0)), -rng.uniform(40, 80), rng.uniform(50, 80) * 60, 3.0))
            lows.append(bumps[-1][0] + bumps[-1][2])
        compressions = []
        if rng.random() < COMPRESSION_PER_NIGHT:
            compressions.append((at(rng.uniform(0.5, 5.5)), rng.uniform(20, 45) * 60, rng.uniform(30, 70)))
        fingersticks = tuple(sorted(int(at(h)) for h in rng.uniform(6.5, 22.5, int(rng.integers(1, 4)))))
        calibration = None
        if rng.random() < CALIBRATION_PER_DAY:
            calibration = fingersticks[0] + int(rng.uniform(30, 300))
        return _DayPlan(
            noon=at(12.0),
            baseline=float(rng.uniform(115, 145)),
            bumps=np.array(bumps, dtype=np.float64),
            compressions=np.array(compressions, dtype=np.float64).reshape(-1, 3),
            fingersticks=fingersticks,
            calibration=calibration,
            meals=tuple(meals),
            lows=tuple(lows),
        )

    def _generate_treatments(self, ordinal: int) -> tuple[tuple[int, dict[str, Any]], ...]:
        """The treatments logged on one local day as (upload ms, document), from the day's plan."""
        plan = self._plan(ordinal)
        rng = np.random.default_rng([self._seed64, TAG_TREATMENTS, ordinal])
        late = np.random.default_rng([self._seed64, TAG_LATE_UPLOADS, ordinal])
        copies = np.random.default_rng([self._seed64, TAG_TREATMENT_COPIES, ordinal])
        day = date.fromordinal(ordinal)
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        records: list[tuple[int, dict[str, Any]]] = []

        def add(at_s: float, fields: dict[str, Any], *, faulty: bool = False) -> None:
            seconds = int(at_s)
            # Uploaders disagree on the form: millis or not, Z or the phone's offset.
            form = int(rng.integers(0, 4))
            moment = datetime.fromtimestamp(seconds, self.tz)
            if form == 0:
                created = _iso_ms(seconds * 1000)
            elif form == 1:
                created = _iso_ms(seconds * 1000).replace(".000Z", "Z")
            elif form == 2:
                created = moment.isoformat()
            else:
                created = moment.astimezone(ZoneInfo("UTC")).isoformat()
            uploaded = seconds
            if late.random() < LATE_UPLOAD_RATE:
                uploaded += int(late.uniform(*LATE_UPLOAD_HOURS) * 3600)
                created = moment.isoformat(sep=" " if late.random() < 0.5 else "T")
            doc: dict[str, Any] = {
                # An ObjectId starts with the second it was made: the upload's.
                "_id": f"{uploaded:08x}{int(rng.integers(0, 2**63)):016x}",
                "created_at": created,
                "enteredBy": ENTERED_BY[int(rng.integers(0, len(ENTERED_BY)))],
                **fields,
            }
            if rng.random() < 0.5:
                doc["utcOffset"] = int(moment.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
            records.append((uploaded * 1000, doc))
            repeated = copies.random() < TREATMENT_COPY_RATE
            if repeated and not faulty and ("insulin" in fields or "carbs" in fields):
                again = seconds + int(copies.integers(1, 30))
                copy = {key: v for key, v in doc.items() if key != "utcOffset"}
                copy.update(
                    _id=f"{again:08x}{int(copies.integers(0, 2**63)):016x}",
                    created_at=_iso_ms(again * 1000),
                    enteredBy=COPY_UPLOADER,
                )
                records.append((again * 1000, copy))

        def value(number: float) -> float | str:
            return str(number) if rng.random() < STRING_VALUE_RATE else number

        for onset, rise, over_bolus in plan.meals:
            carbs = round(rise * rng.uniform(0.35, 0.5))
            units = carbs / CARBS_PER_UNIT * (1.35 if over_bolus else 1.0) * rng.uniform(0.9, 1.1)
            kind = str(rng.choice(["Meal Bolus", "Meal Bolus", "Meal Bolus", "Bolus Wizard", "Snack Bolus"]))
            add(
                onset - rng.uniform(5, 20) * 60,
                {"eventType": kind, "insulin": value(_units(units)), "carbs": value(carbs)},
            )
            if rise > 110 and rng.random() < 0.6:
                fields: dict[str, Any] = {
                    "eventType": "Correction Bolus",
                    "insulin": value(_units(rng.uniform(0.5, 2.0))),
                }
                if rng.random() < 0.5:
                    fields["carbs"] = None
                add(onset + rng.uniform(100, 150) * 60, fields)
        for nadir in plan.lows:
            add(
                nadir - rng.uniform(0, 10) * 60,
                {
                    "eventType": "Carb Correction",
                    "carbs": value(int(rng.choice([15, 20]))),
                    "insulin": None,
                },
            )
        for _ in range(int(rng.integers(1, 3))):
            rate = round(float(rng.uniform(0.2, 1.5)), 2)
            hours = float(rng.uniform(0, 24))
            add(
                (midnight + timedelta(hours=hours)).timestamp(),
                {
                    "eventType": "Temp Basal",
                    "duration": int(rng.choice([30, 60, 120])),
                    "rate": rate,
                    "absolute": rate,
                },
            )
        if rng.random() < 0.2:
            add(
                (midnight + timedelta(hours=float(rng.uniform(8, 22)))).timestamp(),
                {"eventType": "Note", "notes": "exercise"},
            )
        if ordinal % 3 == 0:
            add(
                (midnight + timedelta(hours=20)).timestamp(),
                {"eventType": "Site Change", "notes": "new cannula"},
            )
        if ordinal % BAD_TREATMENT_EVERY_DAYS == 1:
            at_s = (midnight + timedelta(hours=float(rng.uniform(9, 21)))).timestamp()
            bad = ordinal // BAD_TREATMENT_EVERY_DAYS % 3
            if bad == 0:
                add(at_s, {"eventType": "Correction Bolus", "insulin": -1.5}, faulty=True)
            elif bad == 1:
                add(at_s, {"eventType": "Meal Bolus", "insulin": 2.0, "carbs": 2500}, faulty=True)
            else:
                # No zone: which instant it names is anyone's guess. (A record without created_at
                # at all a site never serves: every query filters on it.)
                add(at_s, {"eventType": "Note", "notes": "logged without a zone"}, faulty=True)
                stamp = records[-1][1]["created_at"]
                records[-1][1]["created_at"] = (
                    datetime.fromisoformat(stamp).astimezone(self.tz).strftime("%Y-%m-%dT%H:%M:%S")
                )
        return tuple(records)

    def _closed_loop_treatments(self, ordinal: int) -> tuple[tuple[int, dict[str, Any]], ...]:
        assert self.uploader is not None
        return closed_loop_treatments(self._plan(ordinal), ordinal, self._seed64, self.tz, self.uploader)

    def _glucose(self, t: FloatArray, plans: list[_DayPlan]) -> tuple[FloatArray, FloatArray]:
        """True glucose and the compression artefact (mg/dL) at instants t (s)."""
        knot_t = np.array([p.noon for p in plans])
        knot_v = np.array([p.baseline for p in plans])
        i = np.clip(np.searchsorted(knot_t, t, side="right") - 1, 0, len(plans) - 2)
        f = np.clip((t - knot_t[i]) / (knot_t[i + 1] - knot_t[i]), 0.0, 1.0)
        w = (1.0 - np.cos(np.pi * f)) / 2.0
        glucose = knot_v[i] * (1.0 - w) + knot_v[i + 1] * w
        for layer, (spacing, sd) in enumerate(DRIFT_LAYERS):
            glucose += sd * self._catmull_rom(t / spacing, layer)
        glucose += _gamma_bumps(t, np.concatenate([p.bumps for p in plans]))
        compression = np.zeros_like(t)
        for start, duration, depth in np.concatenate([p.compressions for p in plans]):
            phase = (t - start) / duration
            inside = (phase > 0.0) & (phase < 1.0)
            compression += np.where(inside, depth * np.sin(np.pi * phase) ** 2, 0.0)
        return glucose, compression

    def _catmull_rom(self, position: FloatArray, layer: int) -> FloatArray:
        """A smooth random curve through standard-normal knots at integer positions."""
        k = np.floor(position).astype(np.int64)
        f = position - k
        # Draw each knot once rather than four times per sample.
        knots = np.arange(k.min() - 1, k.max() + 3, dtype=np.int64)
        values = self._normal(knots * len(DRIFT_LAYERS) + layer, TAG_DRIFT)
        at = k - knots[0]
        p0, p1, p2, p3 = values[at - 1], values[at], values[at + 1], values[at + 2]
        result: FloatArray = 0.5 * (
            2 * p1
            + (p2 - p0) * f
            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f**2
            + (3 * p1 - p0 - 3 * p2 + p3) * f**3
        )
        return result

    # -- one UTC day of entries -----------------------------------------------------------------

    def _generate_block(self, day: int) -> _Block:
        start, end = day * DAY_S, (day + 1) * DAY_S
        times, sensors = self._reading_times(start, end)
        keep = np.ones(len(times), dtype=bool)
        for gap_start, gap_end in self._gaps(day - 1) + self._gaps(day):
            keep &= (times < gap_start) | (times >= gap_end)
        times, sensors = times[keep], sensors[keep]
        # Local dates that can hold an event touching this UTC day (zones span -12 h..+14 h and
        # an event lasts well under a day).
        plans = [self._plan(_EPOCH_ORDINAL + day + k) for k in range(-2, 3)]
        meter = np.array([t for p in plans for t in p.fingersticks if start <= t < end], dtype=np.int64)
        cals = np.array(
            [p.calibration for p in plans if p.calibration is not None and start <= p.calibration < end],
            dtype=np.int64,
        )

        n = len(times)
        instants = np.concatenate([times, times - RATE_LOOKBACK_S, meter]).astype(np.float64)
        glucose, compression = self._glucose(instants, plans)
        _, bias, slope, intercept = self._sensor_draws(sensors)
        sensed = glucose * np.concatenate([1.0 + bias, 1.0 + bias, np.ones(len(meter))]) - compression
        smooth, before = sensed[:n], sensed[n : 2 * n]
        raw = smooth + SENSOR_NOISE_SD * self._normal(times, TAG_NOISE)
        sgv = np.clip(np.rint(raw), SENSOR_MIN, SENSOR_MAX).astype(np.int64)

        rate = (smooth - before) / (RATE_LOOKBACK_S / 60)
        steps = np.digitize(np.abs(rate), [1.0, 2.0, 3.0], right=False)  # 0 flat .. 3 double
        direction = np.where(rate >= 0, 4 - steps, 4 + steps).astype(np.int8)
        quirk = self._uniform(times, TAG_DIRECTION)
        direction[quirk < NOT_COMPUTABLE_RATE + RATE_OUT_OF_RANGE_RATE + MISSING_DIRECTION_RATE] = (
            NO_DIRECTION
        )
        direction[quirk < NOT_COMPUTABLE_RATE + RATE_OUT_OF_RANGE_RATE] = RATE_OUT_OF_RANGE
        direction[quirk < NOT_COMPUTABLE_RATE] = NOT_COMPUTABLE
        error = self._uniform(times, TAG_ERROR) < ERROR_CODE_RATE
        codes = np.array(ERROR_CODES, dtype=np.int64)
        sgv[error] = codes[self._hash(times[error], TAG_ERROR_CODE) % _U64(len(codes))]
        direction[error] = NOT_COMPUTABLE

        dup = self._uniform(times, TAG_DUPLICATE) < DUPLICATE_RATE
        dup_ms = self._uniform(times[dup], TAG_DUPLICATE_MS)
        # Sub-second offsets keep a duplicate in its reading's second, hence in the same block.
        jitter = np.where(dup_ms < DUPLICATE_SAME_MS_RATE, 0, 1 + (dup_ms * 999).astype(np.int64) % 999)
        meter_value = np.clip(
            np.rint(glucose[2 * n :] * (1.0 + 0.04 * self._normal(meter, TAG_METER))),
            METER_MIN,
            METER_MAX,
        ).astype(np.int64)
        _, _, cal_slope, cal_intercept = self._sensor_draws(
            np.array([self._sensor_of(int(t)) for t in cals], dtype=np.int64)
        )

        source = np.concatenate([np.arange(n), np.flatnonzero(dup)])  # reading behind each sgv row
        no_meter, no_cal = np.zeros(len(meter), np.int64), np.zeros(len(cals), np.int64)
        date_ms = np.concatenate([times * 1000, times[dup] * 1000 + jitter, meter * 1000, cals * 1000])
        kind = np.concatenate(
            [np.full(len(source), SGV), np.full(len(meter), MBG), np.full(len(cals), CAL)]
        ).astype(np.int8)
        device = (np.arange(len(date_ms)) >= n) & (kind == SGV)
        # The _id hash covers (seed, time, kind); a duplicate upload counts as its own kind.
        id_tail = self._hash(date_ms * 8 + kind * 2 + device, TAG_ID)
        order = np.lexsort((device, kind, date_ms))

        def column(
            readings: npt.NDArray[Any], meter_part: npt.NDArray[Any], cal_part: npt.NDArray[Any]
        ) -> Any:
            return np.concatenate([readings[source], meter_part, cal_part])[order]

        # Only the main uploader has the string-sgv habit; the duplicate's uploader sends numbers.
        as_string = self._uniform(times, TAG_STRING) < STRING_SGV_RATE
        as_string_rows = np.zeros(len(date_ms), bool)
        as_string_rows[:n] = as_string
        sgv_nan = np.full(n, np.nan)
        return _Block(
            date_ms=date_ms[order],
            kind=kind[order],
            id_tail=id_tail[order],
            value=column(sgv, meter_value, no_cal),
            direction=column(direction, no_meter, no_cal).astype(np.int8),
            as_string=as_string_rows[order],
            device=device[order].astype(np.int8),
            filtered=column(np.rint(smooth * slope + intercept).astype(np.int64), no_meter, no_cal),
            unfiltered=column(np.rint(raw * slope + intercept).astype(np.int64), no_meter, no_cal),
            slope=column(sgv_nan, np.full(len(meter), np.nan), cal_slope),
            intercept=column(sgv_nan, np.full(len(meter), np.nan), cal_intercept),
        )


def _render(block: _Block, rows: npt.NDArray[np.intp]) -> Iterable[dict[str, Any]]:
    """Build entry documents with the field set real xDrip/Dexcom uploads carry."""
    columns = zip(
        block.date_ms[rows].tolist(),
        block.kind[rows].tolist(),
        block.id_tail[rows].tolist(),
        block.value[rows].tolist(),
        block.direction[rows].tolist(),
        block.as_string[rows].tolist(),
        block.device[rows].tolist(),
        block.filtered[rows].tolist(),
        block.unfiltered[rows].tolist(),
        block.slope[rows].tolist(),
        block.intercept[rows].tolist(),
        strict=True,
    )
    for ms, kind, tail, value, direction, as_string, device, filt, unfilt, slope, intercept in columns:
        stamp = _iso_ms(ms)
        doc: dict[str, Any] = {"_id": f"{ms // 1000:08x}{tail:016x}", "device": DEVICES[device]}
        if kind == SGV:
            doc.update(
                date=ms,
                dateString=stamp,
                sysTime=stamp,
                sgv=str(value) if as_string else value,
                type="sgv",
                filtered=filt,
                unfiltered=unfilt,
                rssi=100,
                noise=1,
                utcOffset=0,
            )
            if direction != NO_DIRECTION:
                doc["direction"] = DIRECTIONS[direction]
                doc["trend"] = direction
        elif kind == MBG:
            doc.update(date=ms, dateString=stamp, sysTime=stamp, mbg=value, type="mbg", utcOffset=0)
        else:
            doc.update(
                date=ms,
                dateString=stamp,
                type="cal",
                slope=round(slope, 4),
                intercept=round(intercept, 4),
                scale=1,
            )
        yield doc


# -- HTTP server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator saw it; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class _Fault:
    kind: str
    remaining: int
    include_status: bool
    retry_after: int
    seconds: float


_BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_MAINTENANCE_PAGE = (
    "<!DOCTYPE html><html><head><title>Site under maintenance</title></head><body>"
    "<h1>We&rsquo;ll be back soon</h1><p>This site is undergoing scheduled maintenance.</p>"
    "</body></html>"
)


def _status_document(now: float) -> dict[str, Any]:
    """A status.json shaped like cgm-remote-monitor 15.0.2 with a typical single-user setup."""
    now_ms = int(now * 1000)
    return {
        "status": "ok",
        "name": "nightscout",
        "version": "15.0.2",
        "serverTime": _iso_ms(now_ms),
        "serverTimeEpoch": now_ms,
        "apiEnabled": True,
        "careportalEnabled": True,
        "boluscalcEnabled": True,
        "settings": {
            "units": "mg/dl",
            "timeFormat": 24,
            "dayStart": 7,
            "dayEnd": 21,
            "nightMode": False,
            "editMode": True,
            "showRawbg": "never",
            "customTitle": "Nightscout",
            "theme": "colors",
            "alarmUrgentHigh": True,
            "alarmHigh": True,
            "alarmLow": True,
            "alarmUrgentLow": True,
            "alarmTimeagoWarn": True,
            "alarmTimeagoWarnMins": 15,
            "alarmTimeagoUrgent": True,
            "alarmTimeagoUrgentMins": 30,
            "language": "en",
            "scaleY": "log",
            "showPlugins": "dbsize delta direction upbat",
            "enable": ["careportal", "boluscalc", "food", "bwp", "cage", "sage", "iage", "iob"],
            "thresholds": {"bgHigh": 260, "bgTargetTop": 180, "bgTargetBottom": 70, "bgLow": 55},
            "DEFAULT_FEATURES": ["bgnow", "delta", "direction", "timeago", "devicestatus", "upbat"],
            "authDefaultRoles": "readable",
        },
        "extendedSettings": {"devicestatus": {"advanced": True}},
        "authorized": None,
        "runtimeState": "loaded",
    }


def _require_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError as e:
        raise ValueError(f"simulator host {host!r} is not an IP address or 'localhost'") from e
    if not (address.is_loopback and address.version == 4):
        raise ValueError(f"the simulator only binds IPv4 loopback (127.0.0.0/8), not {host!r}")


class SimulatorServer:
    """A Nightscout API v1 HTTP server over a GlucoseSimulator; use as a context manager."""

    def __init__(
        self,
        simulator: GlucoseSimulator | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        api_secret: str | None = None,
        serve_treatments: bool = True,
        serve_v3: bool = True,
        jwt_lifetime_s: int = JWT_LIFETIME_S,
    ) -> None:
        _require_loopback(host)
        # False: /api/v1/treatments answers 404, as on a site without that collection.
        self.serve_treatments = serve_treatments
        # False: /api/v2/authorization and /api/v3 answer 404, as on a site before Nightscout 14.
        self.serve_v3 = serve_v3
        self.jwt_lifetime_s = jwt_lifetime_s
        self._jwt_key = secrets.token_bytes(32)
        self.simulator = simulator if simulator is not None else GlucoseSimulator()
        self.host = host
        self.port = port
        self._token = token
        self._secret_sha1 = hashlib.sha1(api_secret.encode()).hexdigest() if api_secret is not None else None
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._requests: deque[RecordedRequest] = deque(maxlen=1000)
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash; the port is the bound one once started."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """The last 1000 requests, oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    def start(self) -> SimulatorServer:
        if self._httpd is not None:
            raise RuntimeError("the simulator server is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"nightscout-simulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections so clients see the site go down."""
        if self._httpd is None or self._thread is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def inject(self, kind: str, times: int = 1, **options: Any) -> None:
        """Answer the next `times` API requests with a fault.

        Options: `include_status` (bool, also hit status.json; default False), `retry_after`
        (http_429, seconds, default 1), `seconds` (slow, default 1.0). Faults queue in order.
        Raises ValueError for an unknown kind or option.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}: use one of {', '.join(FAULT_KINDS)}")
        unknown = set(options) - {"include_status"} - _FAULT_OPTIONS.get(kind, set())
        if unknown:
            raise ValueError(f"fault {kind!r} takes no option(s) {', '.join(sorted(unknown))}")
        if int(times) < 1:
            raise ValueError(f"fault times must be at least 1, got {times!r}")
        fault = _Fault(
            kind=kind,
            remaining=int(times),
            include_status=bool(options.get("include_status", False)),
            retry_after=int(options.get("retry_after", 1)),
            seconds=float(options.get("seconds", 1.0)),
        )
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _next_fault(self, is_status: bool) -> _Fault | None:
        with self._lock:
            if not self._faults or (is_status and not self._faults[0].include_status):
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.popleft()
            return fault

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _authorized(self, query: dict[str, str], headers: dict[str, str]) -> bool:
        if self._token is None and self._secret_sha1 is None:
            return True
        token = query.get("token")
        if self._token is not None and token is not None and hmac.compare_digest(token, self._token):
            return True
        secret = headers.get("api-secret")
        return (
            self._secret_sha1 is not None
            and secret is not None
            and hmac.compare_digest(secret.strip().lower(), self._secret_sha1)
        )

    def issue_jwt(self, access_token: str) -> dict[str, Any] | None:
        """`/api/v2/authorization/request/<access token>`'s answer, or None for a token the site
        does not know (a simulator without a token knows every one). Times are the simulator's."""
        if self._token is not None and not hmac.compare_digest(access_token, self._token):
            return None
        iat = int(self.simulator.clock())
        claims = {"accessToken": access_token, "iat": iat, "exp": iat + self.jwt_lifetime_s}
        signing = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode())
        signature = _b64(hmac.new(self._jwt_key, signing.encode(), hashlib.sha256).digest())
        return {
            "token": f"{signing}.{signature}",
            "sub": "phlo-reader",
            "permissionGroups": [["*:*:read"]],
            "iat": iat,
            "exp": iat + self.jwt_lifetime_s,
        }

    def _v3_authorized(self, headers: dict[str, str]) -> bool:
        """API v3 takes a valid, unexpired JWT only (no token, no API_SECRET); a simulator without
        credentials is open, as a site with API3_SECURITY_ENABLE=false."""
        if self._token is None and self._secret_sha1 is None:
            return True
        scheme, _, jwt = headers.get("authorization", "").partition(" ")
        signing, _, signature = jwt.rpartition(".")
        if scheme.lower() != "bearer" or not signing:
            return False
        expected = _b64(hmac.new(self._jwt_key, signing.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            return False
        payload = signing.partition(".")[2]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return bool(self.simulator.clock() < claims["exp"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: SimulatorServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


_ENTRY_PATHS = re.compile(r"/api/v1/entries(?:/(sgv|mbg|cal))?(?:\.json)?/?")
_STATUS_PATH = re.compile(r"/api/v1/status(?:\.json)?/?")
_TREATMENTS_PATH = re.compile(r"/api/v1/treatments(?:\.json)?/?")
_AUTHORIZATION_PATH = re.compile(r"/api/v2/authorization/request/([^/]+)")
_HISTORY_PATH = re.compile(r"/api/v3/(entries|treatments)/history/([^/]+)")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse connections
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every small keep-alive response.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the simulator runs inside tests and next to the TUI, which own the terminal."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        owner = self.server.owner
        split = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        headers = {key.lower(): value for key, value in self.headers.items()}
        owner._record(RecordedRequest(self.command, split.path, query, headers))
        try:
            if split.path == "/_sim/faults":
                self._control_faults(owner)
            elif self.command != "GET":
                self._send_json(405, {"status": 405, "message": "Method Not Allowed"})
            elif (entries := _ENTRY_PATHS.fullmatch(split.path)) or _STATUS_PATH.fullmatch(split.path):
                self._serve_api(owner, query, headers, entries.group(1) if entries else None, entries is None)
            elif _TREATMENTS_PATH.fullmatch(split.path) and owner.serve_treatments:
                self._serve_api(owner, query, headers, None, False, treatments=True)
            elif (asked := _AUTHORIZATION_PATH.fullmatch(split.path)) and owner.serve_v3:
                answer = owner.issue_jwt(unquote(asked.group(1)))
                if answer is None:
                    self._send_json(
                        401, {"status": 401, "message": "Unauthorized", "description": "Invalid/Missing"}
                    )
                else:
                    self._send_json(200, answer)
            elif (history := _HISTORY_PATH.fullmatch(split.path)) and owner.serve_v3:
                self._serve_history(owner, query, headers, history.group(1), history.group(2))
            elif (profiles := profile_response(owner, split.path, query, headers)) is not None:
                self._send_json(*profiles)
            else:
                self._send_json(404, {"status": 404, "message": "Not Found"})
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. timed out during a slow fault): nothing left to answer.
            self.close_connection = True

    def _serve_api(
        self,
        owner: SimulatorServer,
        query: dict[str, str],
        headers: dict[str, str],
        path_kind: str | None,
        is_status: bool,
        *,
        treatments: bool = False,
    ) -> None:
        fault = owner._next_fault(is_status)
        if fault is not None and fault.kind == "slow":
            owner._stopping.wait(fault.seconds)
        elif fault is not None and fault.kind not in ("slow", "truncated"):
            self._send_fault(fault)
            return
        if not owner._authorized(query, headers):
            self._send_json(401, {"status": 401, "message": "Unauthorized"})
            return
        document: Any
        if is_status:
            document = _status_document(owner.simulator.clock())
        elif treatments:
            document = _query_treatments(owner.simulator, query)
        else:
            document = _query_entries(owner.simulator, query, path_kind)
        body = json.dumps(document, separators=(",", ":")).encode()
        if fault is not None and fault.kind == "truncated":
            body = body[: len(body) // 2]
        self._send(200, body, "application/json; charset=utf-8")

    def _serve_history(
        self,
        owner: SimulatorServer,
        query: dict[str, str],
        headers: dict[str, str],
        collection: str,
        since: str,
    ) -> None:
        """API v3 HISTORY (lib/api3/generic/history/operation.js), in its JSON envelope."""
        if not owner._v3_authorized(headers):
            self._send_json(401, {"status": 401, "message": "Missing or bad access token or JWT"})
            return
        last_modified = _v3_timestamp(since)
        if last_modified is None:
            self._send_json(400, {"status": 400, "message": "Bad or missing Last-Modified header/parameter"})
            return
        limit = _leading_int(query.get("limit", str(HISTORY_LIMIT)))
        if limit is None or not 0 < limit <= HISTORY_LIMIT:
            self._send_json(400, {"status": 400, "message": "Parameter limit out of tolerance"})
            return
        result = owner.simulator.history(collection, last_modified, limit)
        self._send_json(200, {"status": 200, "result": result})

    def _send_fault(self, fault: _Fault) -> None:
        if fault.kind == "http_500":
            self._send_json(500, {"status": 500, "message": "Internal Server Error"})
        elif fault.kind == "http_429":
            self._send_json(
                429,
                {"status": 429, "message": "Too Many Requests"},
                {"Retry-After": str(fault.retry_after)},
            )
        elif fault.kind == "html":
            self._send(200, _MAINTENANCE_PAGE.encode(), "text/html; charset=utf-8")
        else:
            code = int(fault.kind.removeprefix("http_"))
            reason = "Bad Gateway" if code == 502 else "Service Temporarily Unavailable"
            page = _BAD_GATEWAY_PAGE.format(code=code, reason=reason)
            self._send(code, page.encode(), "text/html")

    def _control_faults(self, owner: SimulatorServer) -> None:
        if self.command == "DELETE":
            owner.clear_faults()
            self._send_json(200, {"status": "ok"})
            return
        if self.command != "POST":
            self._send_json(405, {"status": 405, "message": "Method Not Allowed"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            spec = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(spec, dict):
                raise ValueError("the fault must be a JSON object")
            kind = spec.pop("kind", None)
            times = spec.pop("times", 1)
            owner.inject(str(kind), int(times), **spec)
        except (ValueError, TypeError) as e:
            self._send_json(400, {"status": 400, "message": str(e)})
            return
        self._send_json(200, {"status": "ok", "kind": kind, "times": times})

    def _send_json(self, code: int, document: Any, extra_headers: dict[str, str] | None = None) -> None:
        body = json.dumps(document, separators=(",", ":")).encode()
        self._send(code, body, "application/json; charset=utf-8", extra_headers)

    def _send(
        self,
        code: int,
        body: bytes,
        content_type: str,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _query_entries(
    simulator: GlucoseSimulator, query: dict[str, str], path_kind: str | None
) -> list[dict[str, Any]]:
    """Apply Nightscout's entries query semantics to the simulator."""
    requested_type = query.get("find[type]")
    if path_kind is not None and requested_type is not None and requested_type != path_kind:
        return []
    requested = path_kind or requested_type
    kind: EntryKind = "all"
    if requested is not None:
        if requested not in _TYPED_KINDS:
            return []
        kind = _TYPED_KINDS[requested]
    bounds: dict[str, int | None] = {}
    for operator in ("gte", "gt", "lt", "lte"):
        raw = query.get(f"find[date][${operator}]")
        value = None if raw is None else _leading_int(raw)
        if raw is not None and value is None:
            # MongoDB compares a NaN bound with no stored date, so nothing matches.
            return []
        bounds[operator] = value
    count = _leading_int(query.get("count", ""))
    return simulator.entries(
        kind=kind,
        gte=bounds["gte"],
        gt=bounds["gt"],
        lt=bounds["lt"],
        lte=bounds["lte"],
        count=DEFAULT_COUNT if count is None else count,
    )


def _query_treatments(simulator: GlucoseSimulator, query: dict[str, str]) -> list[dict[str, Any]]:
    """Apply Nightscout's treatments query semantics: `find[created_at][...]` bounds are text."""
    count = _leading_int(query.get("count", ""))
    return simulator.treatments(
        gte=query.get("find[created_at][$gte]"),
        gt=query.get("find[created_at][$gt]"),
        lt=query.get("find[created_at][$lt]"),
        lte=query.get("find[created_at][$lte]"),
        count=DEFAULT_COUNT if count is None else count,
    )


def _v3_timestamp(text: str) -> int | None:
    """API v3's reading of a timestamp parameter (lib/api3/shared/dateTools.js): epoch ms, or
    seconds when that would lie before 2000, or ISO 8601; None (HTTP 400) before 2000-01-01."""
    try:
        number = float(text)
    except ValueError:
        ms = _instant_ms(unquote(text))
    else:
        ms = int(number) if number >= MIN_TIMESTAMP_MS else int(number * 1000)
    return ms if ms is not None and ms >= MIN_TIMESTAMP_MS else None


def _instant_ms(text: str) -> int | None:
    """An ISO 8601 date or date-time as epoch ms; without a zone it is read as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return int(moment.timestamp() * 1000)


def _bound_text(value: int | str) -> str | None:
    """A `created_at` bound as Nightscout hands it to MongoDB: a number's text as sent, anything
    else as UTC ISO text with milliseconds (moment.parseZone(...).toISOString()); None when the
    site would refuse it as no date. An instant (ms) is what a bound's text means."""
    if isinstance(value, int):
        return _iso_ms(value)
    try:
        float(value)
    except ValueError:
        pass
    else:
        return value  # JavaScript's isNaN(value) is false: the site leaves it alone
    # "some clients don't escape the plus": the site turns the first space back into one.
    ms = _instant_ms(value.replace(" ", "+", 1))
    return None if ms is None else _iso_ms(ms)


_TEXT_COMPARISONS: dict[str, Callable[[str, str], bool]] = {
    "gte": lambda text, bound: text >= bound,
    "gt": lambda text, bound: text > bound,
    "lt": lambda text, bound: text < bound,
    "lte": lambda text, bound: text <= bound,
}


def serve_forever(
    port: int, seed: int = 42, tz: str = "UTC", host: str = "127.0.0.1", uploader: Uploader | None = None
) -> None:
    """Run a simulator in the foreground until Ctrl-C (for `phlo-tui simulate`)."""
    try:
        server = SimulatorServer(
            GlucoseSimulator(seed=seed, tz=tz, uploader=uploader), host=host, port=port
        ).start()
    except OSError as e:
        raise PhloError(
            f"cannot serve the simulator on {host}:{port}: {e.strerror}",
            "choose another --port, or stop what listens there",
        ) from e
    print(
        f"Nightscout simulator (seed {seed}, tz {tz}, uploader {uploader or 'mixed'}) serving {server.url}",
        flush=True,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        server.stop()
