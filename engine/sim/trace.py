"""The person behind the simulator: a deterministic CGM trace, a pure function of seed, time
zone and instant (sensors, gaps, meals, lows, drift, compression artefacts), rendered as the entry
documents xDrip and Dexcom uploads carry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal
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
TYPED_KINDS: dict[str, EntryKind] = {"sgv": "sgv", "mbg": "mbg", "cal": "cal"}

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


U64 = np.uint64
_MASK64 = (1 << 64) - 1
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def splitmix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    x = x + U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> U64(27))) * U64(0x94D049BB133111EB)
    return x ^ (x >> U64(31))


def _to_unit(h: npt.NDArray[np.uint64]) -> FloatArray:
    return (h >> U64(11)).astype(np.float64) * 2.0**-53


def _gamma_bumps(t: FloatArray, bumps: FloatArray) -> FloatArray:
    """Sum of A·(x·e^(1−x))^k with x = (t − onset)/τ: peaks at A when t − onset = τ."""
    x = (t[:, None] - bumps[:, 0]) / bumps[:, 2]
    inside = (x > 0.0) & (x < BUMP_SUPPORT)
    safe = np.where(inside, x, 1.0)
    shape = np.where(inside, np.exp(bumps[:, 3] * (np.log(safe) + 1.0 - safe)), 0.0)
    # Row sums over a fixed event set keep every reading bit-identical however it is queried.
    result: FloatArray = (shape * bumps[:, 1]).sum(axis=1)
    return result


@lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def pump_units(units: float) -> float:
    """Insulin as pumps deliver it: whole 0.05 U steps."""
    return round(round(units * 20) / 20, 2)


def iso_ms(ms: int) -> str:
    day, rest = divmod(ms, DAY_MS)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{_day_prefix(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


@dataclass(frozen=True)
class DayPlan:
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
class Block:
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


class TraceModel:
    """The CGM trace alone: every entry is a pure function of seed, tz and time."""

    def __init__(self, seed: int = 42, tz: str = "UTC") -> None:
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {tz!r}: use an IANA name such as 'UTC'") from e
        self.seed = seed
        self._seed64 = seed & _MASK64
        self._keys = {
            tag: splitmix(np.array([self._seed64 ^ (tag * 0x632BE59BD9B4E019 & _MASK64)], U64))[0]
            for tag in range(TAG_ID, TAG_DRIFT + 1)
        }
        phase = self._hash(np.zeros(1, np.int64), TAG_SENSOR_PHASE)[0] % U64(SENSOR_LIFE_S)
        self._sensor_phase = int(phase)
        # About two years of days; a block is ~300 rows of a dozen numeric columns (~25 kB).
        self._block = lru_cache(maxsize=800)(self._generate_block)
        self._plan = lru_cache(maxsize=4096)(self._generate_plan)

    def _select(self, kind: EntryKind, low: int, high: int, count: int) -> list[dict[str, Any]]:
        if kind != "all" and kind not in KIND_CODES:
            raise ValueError(f"unknown entry kind {kind!r}: use all, sgv, mbg or cal")
        if high < low:
            return []
        limit = count if count > 0 else None
        picked: list[tuple[Block, npt.NDArray[np.intp]]] = []
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
        return [doc for block, rows in picked for doc in render_entries(block, rows)]

    # -- deterministic randomness ---------------------------------------------------------------

    def _hash(self, values: IntArray, tag: int) -> npt.NDArray[np.uint64]:
        return splitmix(splitmix(values.astype(U64) ^ self._keys[tag]))

    def _uniform(self, values: IntArray, tag: int) -> FloatArray:
        return _to_unit(self._hash(values, tag))

    def _normal(self, values: IntArray, tag: int) -> FloatArray:
        h = self._hash(values, tag)
        u1 = 1.0 - _to_unit(h)
        u2 = _to_unit(splitmix(h))
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
        offset = (h % U64(READING_S)).astype(np.int64)
        u = _to_unit(h)
        v = _to_unit(splitmix(h))
        w = _to_unit(splitmix(splitmix(h)))
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

    def _generate_plan(self, ordinal: int) -> DayPlan:
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
        return DayPlan(
            noon=at(12.0),
            baseline=float(rng.uniform(115, 145)),
            bumps=np.array(bumps, dtype=np.float64),
            compressions=np.array(compressions, dtype=np.float64).reshape(-1, 3),
            fingersticks=fingersticks,
            calibration=calibration,
            meals=tuple(meals),
            lows=tuple(lows),
        )

    def _glucose(self, t: FloatArray, plans: list[DayPlan]) -> tuple[FloatArray, FloatArray]:
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

    def _generate_block(self, day: int) -> Block:
        start, end = day * DAY_S, (day + 1) * DAY_S
        times, sensors = self._reading_times(start, end)
        keep = np.ones(len(times), dtype=bool)
        for gap_start, gap_end in self._gaps(day - 1) + self._gaps(day):
            keep &= (times < gap_start) | (times >= gap_end)
        times, sensors = times[keep], sensors[keep]
        # Local dates that can hold an event touching this UTC day (zones span -12 h..+14 h and
        # an event lasts well under a day).
        plans = [self._plan(EPOCH_ORDINAL + day + k) for k in range(-2, 3)]
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
        sgv[error] = codes[self._hash(times[error], TAG_ERROR_CODE) % U64(len(codes))]
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
        return Block(
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


def render_entries(block: Block, rows: npt.NDArray[np.intp]) -> Iterable[dict[str, Any]]:
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
        stamp = iso_ms(ms)
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
