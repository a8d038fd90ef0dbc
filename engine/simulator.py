"""Built-in Nightscout API v1 simulator: a deterministic CGM trace served over loopback HTTP."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

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
DRIFT_LAYERS = ((3 * 3600, 22.0), (40 * 60, 5.0))  # (knot spacing s, SD mg/dL)
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
    TAG_GAPS,
    TAG_PLAN,
    TAG_DRIFT,
) = range(1, 14)

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
        self, seed: int = 42, tz: str = "UTC", clock: Callable[[], float] = time.time
    ) -> None:
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {tz!r}: use an IANA name such as 'UTC'") from e
        self.seed = seed
        self.clock = clock
        self._seed64 = seed & _MASK64
        self._keys = {
            tag: _splitmix(np.array([self._seed64 ^ (tag * 0x632BE59BD9B4E019 & _MASK64)], _U64))[0]
            for tag in range(TAG_ID, TAG_DRIFT + 1)
        }
        # About two years of days; a block is ~300 rows of a dozen numeric columns (~25 kB).
        self._block = lru_cache(maxsize=800)(self._generate_block)
        self._plan = lru_cache(maxsize=4096)(self._generate_plan)

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
        return self._select(kind, low, high, count)

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
        phase = int(self._hash(np.array([0]), TAG_SENSOR)[0] % _U64(SENSOR_LIFE_S))
        return phase + sensor * SENSOR_LIFE_S

    def _sensor_of(self, t: int) -> int:
        return (t - self._sensor_start(0)) // SENSOR_LIFE_S

    def _sensor_draws(self, sensors: IntArray) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
        """Per-sensor reading offset (s), gain bias, raw-count slope and intercept."""
        h = self._hash(sensors + 1, TAG_SENSOR)
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
        for earliest, latest in ((6.5, 9.0), (11.5, 14.0), (17.5, 20.5)):
            meal = at(rng.uniform(earliest, latest))
            bumps.append((meal, rng.uniform(40, 150), rng.uniform(60, 90) * 60, 2.0))
            if rng.random() < 0.25:  # an over-bolus: a dip a few hours after the meal
                onset = meal + rng.uniform(120, 200) * 60
                bumps.append((onset, -rng.uniform(25, 60), rng.uniform(45, 75) * 60, 3.0))
        bumps.append((at(rng.uniform(3.5, 4.5)), rng.uniform(15, 40), rng.uniform(120, 170) * 60, 3.0))
        if rng.random() < 0.3:
            bumps.append(
                (at(rng.uniform(15, 19.5)), -rng.uniform(30, 70), rng.uniform(40, 70) * 60, 2.0)
            )
        if rng.random() < 0.3:
            bumps.append(
                (at(rng.uniform(0.5, 4.0)), -rng.uniform(50, 100), rng.uniform(50, 80) * 60, 3.0)
            )
        compressions = []
        if rng.random() < COMPRESSION_PER_NIGHT:
            compressions.append(
                (at(rng.uniform(0.5, 5.5)), rng.uniform(20, 45) * 60, rng.uniform(30, 70))
            )
        fingersticks = tuple(
            sorted(int(at(h)) for h in rng.uniform(6.5, 22.5, int(rng.integers(1, 4))))
        )
        calibration = None
        if rng.random() < CALIBRATION_PER_DAY:
            calibration = fingersticks[0] + int(rng.uniform(30, 300))
        return _DayPlan(
            noon=at(12.0),
            baseline=float(rng.uniform(110, 140)),
            bumps=np.array(bumps, dtype=np.float64),
            compressions=np.array(compressions, dtype=np.float64).reshape(-1, 3),
            fingersticks=fingersticks,
            calibration=calibration,
        )

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
        layers = len(DRIFT_LAYERS)
        p0, p1, p2, p3 = (self._normal((k + j) * layers + layer, TAG_DRIFT) for j in (-1, 0, 1, 2))
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
        meter = np.array(
            [t for p in plans for t in p.fingersticks if start <= t < end], dtype=np.int64
        )
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
        jitter = np.where(
            dup_ms < DUPLICATE_SAME_MS_RATE, 0, 1 + (dup_ms * 999).astype(np.int64) % 999
        )
        meter_value = np.clip(
            np.rint(glucose[2 * n :] * (1.0 + 0.04 * self._normal(meter, TAG_METER))),
            METER_MIN,
            METER_MAX,
        ).astype(np.int64)
        _, _, cal_slope, cal_intercept = self._sensor_draws(
            np.array([self._sensor_of(int(t)) for t in cals], dtype=np.int64)
        )

        date_ms = np.concatenate([times * 1000, times[dup] * 1000 + jitter, meter * 1000, cals * 1000])
        kind = np.concatenate(
            [np.full(n + int(dup.sum()), SGV), np.full(len(meter), MBG), np.full(len(cals), CAL)]
        ).astype(np.int8)
        device = np.concatenate(
            [np.zeros(n), np.ones(int(dup.sum())), np.zeros(len(meter) + len(cals))]
        ).astype(np.int8)
        # The _id hash covers (seed, time, kind); a duplicate upload counts as its own kind.
        id_kind = kind.astype(np.int64) * 2 + device
        id_tail = self._hash(date_ms * 8 + id_kind, TAG_ID)
        filtered = np.rint(smooth * slope + intercept).astype(np.int64)
        unfiltered = np.rint(raw * slope + intercept).astype(np.int64)
        pad = np.zeros(len(meter) + len(cals), dtype=np.int64)
        nan = np.full(len(meter), np.nan)
        order = np.lexsort((device, kind, date_ms))
        return _Block(
            date_ms=date_ms[order],
            kind=kind[order],
            id_tail=id_tail[order],
            value=np.concatenate([sgv, sgv[dup], meter_value, pad[: len(cals)]])[order],
            direction=np.concatenate([direction, direction[dup], pad.astype(np.int8)])[order],
            as_string=np.concatenate(
                [self._uniform(times, TAG_STRING) < STRING_SGV_RATE, np.zeros(int(dup.sum()) + len(pad), bool)]
            )[order],
            device=device[order],
            filtered=np.concatenate([filtered, filtered[dup], pad])[order],
            unfiltered=np.concatenate([unfiltered, unfiltered[dup], pad])[order],
            slope=np.concatenate([np.full(n + int(dup.sum()), np.nan), nan, cal_slope])[order],
            intercept=np.concatenate([np.full(n + int(dup.sum()), np.nan), nan, cal_intercept])[
                order
            ],
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
