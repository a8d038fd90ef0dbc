"""Nightscout records written as MongoDB Extended JSON (mongoexport, database backups), as the API sends them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from engine.ingest.nightscout import CREATED_AT, DATE

_NUMBERS = ("$numberInt", "$numberLong", "$numberDouble", "$numberDecimal")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def plain_record(record: object) -> object:
    """`record` with each top-level Extended JSON value (canonical or relaxed, v1 or v2) replaced
    by what Nightscout's API sends for it.

    `{"$oid": h}` is `h`; `{"$numberInt" | "$numberLong" | "$numberDouble" | "$numberDecimal": "x"}`
    is the number x; `{"$date": d}` (ISO text, `{"$numberLong": ms}` or a number of ms) is epoch
    milliseconds for `date`, which the API keeps as a number, and UTC ISO 8601 text with
    milliseconds for any other field (`created_at`, `sysTime`), which it keeps as text. A wrapper
    that does not hold what its type says (`{"$oid": 5}`, a non-finite double, a date that is no
    date) stays as sent, so that validation quarantines it with the value shown.
    """
    if not isinstance(record, dict) or not any(isinstance(value, dict) for value in record.values()):
        return record
    return {key: _plain(key, value) for key, value in record.items()}


def _plain(key: object, value: object) -> object:
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((tag, inner),) = value.items()
    if tag == "$oid":
        return inner if isinstance(inner, str) else value
    if tag in _NUMBERS:
        number = _number(inner)
        return value if number is None else number
    if tag == "$date":
        ms = _date_ms(inner)
        if ms is None:
            return value
        if key == DATE.name:
            return ms
        try:
            return CREATED_AT.bound(ms)
        except OverflowError:  # beyond year 9999: no ISO text, the wrapper is quarantined as sent
            return value
    return value


def _number(text: object) -> int | float | None:
    """A canonical number's text as int when whole, float when finite, else None."""
    if not isinstance(text, str):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _date_ms(inner: object) -> int | None:
    """A `$date`'s instant as epoch ms: canonical `{"$numberLong": ms}`, relaxed ISO text, or a
    legacy number of ms; None when it is none of these."""
    if isinstance(inner, dict):
        inner = _plain(None, inner)
    if isinstance(inner, bool):
        return None
    if isinstance(inner, int):
        return inner
    if isinstance(inner, float):
        return math.floor(inner) if math.isfinite(inner) else None
    if not isinstance(inner, str):
        return None
    try:
        moment = datetime.fromisoformat(inner)
    except ValueError:
        return None
    if moment.tzinfo is None:  # a BSON date is UTC; mongoexport always writes the zone anyway
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)  # exact: no float seconds
