"""Nightscout profile documents (`/api/v1/profile.json`) into `raw.profiles`: the basal schedule a
total daily dose needs (docs/closed-loop.md, "Total daily insulin from basal").

Facts from cgm-remote-monitor (`lib/api/profile/index.js`, `lib/server/profile.js`,
`lib/constants.json`): the list is sorted by `startDate` descending and holds
`PROFILES_DEFAULT_COUNT` (10) documents unless `count` says more; it has no date filter. Each
document has `_id`, `startDate`, `defaultProfile`, `store` (profile name -> `{basal, timezone,
...}`) and `units`. The profile in force may be years old, so every run reads the whole list.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from engine.errors import SourceError
from engine.ingest.nightscout import NightscoutConfig, _api_base, _read, redact_url
from engine.ingest.nightscout_http import EndpointNotFound, _json_body_hook, _raise_for_status
from engine.ingest.prefetch import PROFILES as PREFETCHED_PROFILES
from engine.ingest.prefetch import Prefetched

if TYPE_CHECKING:
    import pyarrow as pa
    from requests import Session

    from engine.lake.store import Lake
    from engine.runs.store import RunStore

log = logging.getLogger(__name__)

PROFILE_PATH = "profile.json"
PROFILE_COUNT = 10_000
"""Asked for explicitly: the site's default is 10 documents, and there is no paging."""


@dataclass(frozen=True)
class ProfileRows:
    """Profile documents as `raw.profiles` rows, and how many documents were not profiles."""

    rows: pa.Table
    skipped: int


def fetch_profiles(config: NightscoutConfig) -> list[dict[str, Any]]:
    """Every profile document the site serves, newest first. Raises EndpointNotFound on HTTP 404,
    SourceError for any other failure (no secret in either)."""

    def read(session: Session) -> list[dict[str, Any]]:
        from dlt.sources.helpers.rest_client import RESTClient

        client = RESTClient(base_url=_api_base(config), session=session)
        hooks = {"response": [_json_body_hook(list), _raise_for_status]}
        answer = client.get(PROFILE_PATH, params={"count": PROFILE_COUNT}, hooks=hooks).json()
        return [d for d in answer if isinstance(d, dict)]

    documents = _read(config, PROFILE_PATH, read)
    if len(documents) >= PROFILE_COUNT:
        log.warning(
            "the site sent %d profile documents, the most asked for: older ones are missing", PROFILE_COUNT
        )
    return documents


def profile_rows(documents: Sequence[dict[str, Any]], *, run_id: str, now: datetime) -> ProfileRows:
    """The documents that are profiles (a string `_id` or `identifier`, a `startDate` that names an
    instant, a `store` object) as rows of exactly `raw.profiles`' Arrow schema; the others are
    counted in `skipped` (nothing downstream could use them)."""
    import pyarrow as pa

    from engine.ingest.tables import PROFILES

    columns: dict[str, list[Any]] = {f.name: [] for f in PROFILES.arrow_schema}
    skipped = 0
    for document in documents:
        key = document.get("_id") or document.get("identifier")
        start = _instant(document.get("startDate"))
        store = document.get("store")
        if not isinstance(key, str) or not key or start is None or not isinstance(store, dict):
            skipped += 1
            continue
        row = {
            "_id": key,
            "start_date": document["startDate"],
            "start_ts": start,
            "default_profile": _text(document.get("defaultProfile")),
            "store_json": json.dumps(store, sort_keys=True),
            "units": _text(document.get("units")),
            "start_month": start.strftime("%Y-%m"),
            "_phlo_ingested_at": now,
            "_phlo_run_id": run_id,
            "is_valid": document.get("isValid") if isinstance(document.get("isValid"), bool) else None,
            "identifier": _text(document.get("identifier")),
            "srv_modified": document.get("srvModified") if type(document.get("srvModified")) is int else None,
        }
        for name, values in columns.items():
            values.append(row[name])
    return ProfileRows(pa.table(columns, schema=PROFILES.arrow_schema), skipped)


class _Pipeline(Protocol):
    store: RunStore
    lake: Lake

    def checkpoint(self) -> None: ...


def ingest_profiles(
    pipeline: _Pipeline,
    run_id: str,
    config: NightscoutConfig,
    *,
    zone: ZoneInfo,
    since_ms: int,
    now: datetime,
    prefetched: Prefetched | None = None,
) -> dict[str, int] | None:
    """Fetch the profile documents and merge them into `raw.profiles`; a profile that changed marks
    the local months from its start to `now` pending (a new table's first documents: from
    `since_ms`, the run's first fetched instant, as the months before hold no new data). None when
    the site serves no profiles (HTTP 404) or answers with something unusable: the basal then stays
    unknown, and the run goes on."""
    from engine.ingest.tables import PROFILES  # here: the prefetch child reads profiles without pyiceberg

    pipeline.checkpoint()
    with pipeline.store.step(run_id, "fetch", {"source": "profiles"}) as step:
        try:
            documents = prefetched.records(*PREFETCHED_PROFILES) if prefetched is not None else None
            if documents is None:
                documents = fetch_profiles(config)
        except EndpointNotFound:
            log.warning("the site does not serve %s (HTTP 404): basal insulin stays unknown", PROFILE_PATH)
            step.detail.update(not_served=True)
            return None
        except SourceError as e:
            # Profiles only add the basal: a site whose answer is unusable (not a list, not JSON,
            # refused) keeps its readings and boluses flowing; the next run asks again.
            log.warning(
                "the site's %s could not be used (%s): basal insulin stays unknown", PROFILE_PATH, e.message
            )
            step.detail.update(not_served=True, error=e.message)
            return None
        step.rows = len(documents)
    pipeline.checkpoint()
    with pipeline.store.step(run_id, "merge", {"source": "profiles"}) as step:
        converted = profile_rows(documents, run_id=run_id, now=now)
        first = pipeline.lake.snapshot_id(PROFILES.name, "dev") is None
        result = pipeline.lake.merge(PROFILES, converted.rows, snapshot_properties={"phlo.run-id": run_id})
        if result.partitions:
            start = datetime.strptime(min(result.partitions), "%Y-%m").replace(tzinfo=ZoneInfo("UTC"))
            if first:
                start = max(start, datetime.fromtimestamp(since_ms / 1000, ZoneInfo("UTC")))
            # A profile's start month in UTC may be the month before locally: from a day earlier.
            pipeline.store.add_pending_months(months_between(start - timedelta(days=1), now, zone), run_id)
        step.rows = result.rows_inserted + result.rows_updated
        step.detail.update(
            inserted=result.rows_inserted,
            updated=result.rows_updated,
            unchanged=result.rows_unchanged,
            skipped=converted.skipped,
            site=redact_url(config.url),
        )
    return {"fetched": len(documents), "stored": step.rows, "skipped": converted.skipped}


def months_between(start: datetime, end: datetime, zone: ZoneInfo) -> set[str]:
    """Every local 'YYYY-MM' from `start`'s month to `end`'s, both included."""
    first, last = start.astimezone(zone), end.astimezone(zone)
    index, stop = first.year * 12 + first.month - 1, last.year * 12 + last.month - 1
    return {f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index, stop + 1)}


def _instant(value: object) -> datetime | None:
    """An ISO 8601 date-time with a zone as an aware datetime; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None or moment.year < 1971:
        return None
    return moment.astimezone(ZoneInfo("UTC"))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
