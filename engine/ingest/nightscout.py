"""The Nightscout source: records of an API v1 endpoint (sgv entries, treatments) of a time window
through a dlt rest_api source, with retries."""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from engine.errors import SourceError
from engine.ingest.nightscout_http import (
    URL_HINT,
    Auth,
    _json_body_hook,
    _raise_for_status,
    _RedactTokens,
    _session,
    _set,
    _source_error,
)

if TYPE_CHECKING:
    from dlt.sources.helpers.rest_client.paginators import BasePaginator
    from requests import Request, Response, Session

    from engine.config import Settings

log = logging.getLogger(__name__)
_T = TypeVar("_T")

DAY_MS = 86_400_000
API_PATH = "/api/v1/"
ENTRIES_PATH = "entries/sgv.json"
TREATMENTS_PATH = "treatments.json"
STATUS_PATH = "status.json"


@dataclass(frozen=True)
class NightscoutConfig:
    """How to reach one Nightscout site. The secrets never show in a repr."""

    url: str
    """Site base URL, e.g. https://x.herokuapp.com; a `?token=` in it is used when `token` is unset."""
    token: str | None = None
    """Access token, sent as ?token=."""
    api_secret: str | None = None
    """The site's API_SECRET, sent as its SHA-1 hex in the api-secret header."""
    page_size: int = 10000
    timeout_s: float = 30.0
    max_attempts: int = 5
    """Attempts per request on timeouts, connection errors, 5xx, 429, HTML-200 and broken JSON."""
    backoff_s: float = 1.0
    """First retry delay; it doubles per attempt up to `max_retry_delay_s` (Retry-After wins)."""
    max_retry_delay_s: float = 30.0

    def __repr__(self) -> str:
        # The URL may carry ?token=...; the secrets are only said to be set.
        return (
            f"NightscoutConfig(url={redact_url(self.url)!r}, token={_set(self.token)},"
            f" api_secret={_set(self.api_secret)}, page_size={self.page_size},"
            f" timeout_s={self.timeout_s}, max_attempts={self.max_attempts},"
            f" backoff_s={self.backoff_s}, max_retry_delay_s={self.max_retry_delay_s})"
        )


def site_config(settings: Settings, url: str) -> NightscoutConfig:
    """The site at `url` with the settings' secrets, page size, timeout and attempts."""
    return NightscoutConfig(
        url=url,
        token=settings.nightscout_token.reveal() if settings.nightscout_token else None,
        api_secret=settings.nightscout_api_secret.reveal() if settings.nightscout_api_secret else None,
        page_size=settings.page_size,
        timeout_s=settings.request_timeout_s,
        max_attempts=settings.max_attempts,
    )


@dataclass(frozen=True)
class TimeField:
    """How an endpoint's records are dated, and so filtered and paged: `date` holds epoch
    milliseconds (entries), `created_at` an ISO 8601 string (treatments).

    The site compares an ISO field as text: it turns the bound into UTC ISO text with milliseconds
    and MongoDB compares that with each stored string, which may carry any offset or form
    (`04:30:00-05:00` is 09:30Z yet sorts before `09:00:00.000Z`). So a query reaches `margin_ms`
    beyond the window on both sides, every record returned is kept whatever its instant (the merge
    by `_id` makes the overlap free), and pages move by text, not by instant.
    """

    name: str
    iso: bool = False
    margin_ms: int = 0
    """How far beyond a window the query bounds reach, so that every text form of an instant in
    the window sorts inside them; it also takes an incremental run back that far before its
    watermark, where a late upload whose text sorts early is found."""

    def bound(self, ms: int) -> int | str:
        """The query value for instant `ms`: the number itself, or UTC ISO text with milliseconds."""
        if not self.iso:
            return ms
        moment = _EPOCH + timedelta(milliseconds=ms)  # exact: no float seconds
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def text(self, record: object) -> str | None:
        """A record's field as the site stores and compares it: the string, or None."""
        value = record.get(self.name) if isinstance(record, dict) else None
        return value if isinstance(value, str) else None

    def of(self, record: object) -> int | None:
        """A record's time as whole epoch milliseconds, or None when it has no usable one."""
        if not self.iso:
            return _date_ms(record, self.name)
        value = record.get(self.name) if isinstance(record, dict) else None
        if not isinstance(value, str):
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None
        return math.floor(moment.timestamp() * 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DATE = TimeField("date")
# Offsets run from -12:00 to +14:00, and a date and time joined by a space instead of `T` sorts
# before every `T` form of its date (up to a day early): two days either side covers both.
CREATED_AT = TimeField("created_at", iso=True, margin_ms=2 * DAY_MS)


@dataclass(frozen=True)
class FetchWindow:
    """Entries with start_ms <= date < end_ms (epoch milliseconds, UTC)."""

    start_ms: int
    end_ms: int


def configure_dlt(home: Path) -> None:
    """Keep everything dlt writes under `home/dlt` and turn its telemetry off.

    Call before the first fetch: dlt reads these when it is imported and when it first resolves its
    runtime configuration, and as root it would otherwise write under /var/dlt.
    """
    root = home / "dlt"
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["DLT_DATA_DIR"] = str(root / "data")
    os.environ["DLT_PROJECT_DIR"] = str(root / "project")
    os.environ["DLT_LOCAL_DIR"] = str(root / "local")


def plan_windows(since_ms: int, until_ms: int, max_days: int = 30) -> list[FetchWindow]:
    """Contiguous windows covering [since_ms, until_ms), oldest first, each at most `max_days` long."""
    if max_days < 1:
        raise ValueError(f"max_days must be at least 1, got {max_days}")
    step = max_days * DAY_MS
    return [FetchWindow(start, min(start + step, until_ms)) for start in range(since_ms, until_ms, step)]


def redact_url(url: str) -> str:
    """The URL without userinfo, query string and fragment: safe for logs, errors and records."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def fetch_window(config: NightscoutConfig, window: FetchWindow) -> list[dict[str, Any]]:
    """Every sgv entry with window.start_ms <= date < window.end_ms, as the site sent it.

    Pages newest first through `find[date][$lt]` until a short page. Raises SourceError (without
    any secret, and with no chained cause that could hold one) when the site cannot be read.
    """
    return fetch_records(config, ENTRIES_PATH, DATE, window)


def fetch_records(
    config: NightscoutConfig, path: str, time_field: TimeField, window: FetchWindow
) -> list[dict[str, Any]]:
    """Every record of endpoint `path` (under /api/v1/) dated in the window, as the site sent it;
    for a field the site compares as text, also those within `time_field.margin_ms` of it.

    Filters and pages on `time_field` (`find[<field>][$gte|$lt]`, newest first, always with an
    explicit `count`: Nightscout's default is 10). Raises EndpointNotFound when the site answers
    404, SourceError for every other failure to read it (no secret in either).
    """
    margin = time_field.margin_ms
    queried = FetchWindow(window.start_ms - margin, window.end_ms + margin)
    records = _read(config, path, lambda session: list(_resource(config, path, time_field, queried, session)))
    log.info(
        "fetched %d records for [%d, %d) from %s",
        len(records),
        queried.start_ms,
        queried.end_ms,
        _endpoint(config, path),
    )
    return records


def site_status(config: NightscoutConfig) -> dict[str, Any]:
    """GET /api/v1/status.json: the site's name, version and settings (a connection check)."""

    def read_status(session: Session) -> dict[str, Any]:
        from dlt.sources.helpers.rest_client import RESTClient

        client = RESTClient(base_url=_api_base(config), session=session)
        hooks = {"response": [_json_body_hook(dict), _raise_for_status]}
        status: dict[str, Any] = client.get(STATUS_PATH, hooks=hooks).json()
        return status

    return _read(config, STATUS_PATH, read_status)


# -- requests and dlt plumbing -----------------------------------------------------------------


def _read(
    config: NightscoutConfig,
    path: str,
    read: Callable[[Session], _T],
    auth: Auth | None = None,
    endpoint: str | None = None,
) -> _T:
    """Run `read` on a configured session; turn what it raises into a secret-free SourceError
    naming `endpoint` (default: API v1's `path`; never a URL that holds a secret)."""
    _require_dlt_configured()
    try:
        with _session(config, auth) as session:
            return read(session)
    except Exception as e:
        failure = _source_error(e, config, endpoint or _endpoint(config, path))
        if failure is None:  # not a site problem but a bug: keep its traceback
            raise
    # Raised outside the handler so that no exception of requests (whose messages carry the full
    # URL, token included) is kept as __context__ and printed or recorded with it.
    raise failure


def _api_base(config: NightscoutConfig) -> str:
    # Userinfo would only reach dlt's request log: Nightscout authenticates by token or api-secret.
    return redact_url(config.url).rstrip("/") + API_PATH


def _endpoint(config: NightscoutConfig, path: str) -> str:
    return redact_url(_api_base(config) + path)


_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
_URLLIB3_LOG.addFilter(_RedactTokens())


def _require_dlt_configured() -> None:
    if "DLT_DATA_DIR" not in os.environ:
        raise RuntimeError("call engine.ingest.nightscout.configure_dlt(home) before fetching")


def _resource(
    config: NightscoutConfig, path: str, time_field: TimeField, window: FetchWindow, session: Session
) -> Any:
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {"base_url": _api_base(config), "session": session},
            "resources": [
                {
                    "name": "records",
                    "endpoint": {
                        "path": path,
                        "params": {
                            "count": config.page_size,
                            f"find[{time_field.name}][$gte]": time_field.bound(window.start_ms),
                            f"find[{time_field.name}][$lt]": time_field.bound(window.end_ms),
                        },
                        "paginator": _paginator_class()(
                            window, config.page_size, _endpoint(config, path), time_field
                        ),
                        "data_selector": "$",
                        "response_actions": [_json_body_hook(list)],
                    },
                }
            ],
        }
    )
    return source.resources["records"]


def _date_ms(entry: object, name: str = "date") -> int | None:
    """An entry's `name` field (epoch milliseconds) as whole milliseconds, or None when it has no usable one."""
    value = entry.get(name) if isinstance(entry, dict) else None
    if type(value) is int:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return math.floor(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return math.floor(number) if math.isfinite(number) else None
    return None


def _first_bound_above(time_field: TimeField, text: str, low_ms: int, high_ms: int) -> int:
    """The smallest instant in (low_ms, high_ms] whose bound text sorts above `text`, assuming
    `high_ms`'s does; UTC ISO texts sort as their instants, so a bisection finds it."""
    while high_ms - low_ms > 1:
        middle = (low_ms + high_ms) // 2
        if str(time_field.bound(middle)) > text:
            high_ms = middle
        else:
            low_ms = middle
    return high_ms


@functools.cache
def _paginator_class() -> Callable[[FetchWindow, int, str, TimeField], BasePaginator]:
    # Defined on first use: subclassing dlt's paginator imports dlt, which must wait for configure_dlt.
    from dlt.sources.helpers.rest_client.paginators import BasePaginator

    class NewestFirstPaginator(BasePaginator):
        """Nightscout's only paging: ask again with `find[<time>][$lt]` below the page, until a short page.

        A full page's oldest date may have more entries than fit on it (two uploaders, same ms), so
        those are held back and the next page asks for `$lt` oldest + 1, which returns all of them.
        A stuck page (every entry shares one date) cannot move `$lt`: the same range is asked for
        again with twice the count, until the page reaches an older date or comes back short.
        A field the site compares as text (`created_at`) pages by its strings the same way.
        """

        def __init__(self, window: FetchWindow, page_size: int, url: str, time_field: TimeField) -> None:
            super().__init__()
            self._time = time_field
            self._start_ms = window.start_ms
            self._lt = window.end_ms
            self._page_size = page_size
            self._count = page_size
            self._url = url

        def update_state(self, response: Response, data: list[Any] | None = None) -> None:
            # paginate() yields this very list after update_state, so trimming it holds entries back.
            page = data if data is not None else []
            if len(page) < self._count:
                self._has_next_page = False
                return
            if self._time.iso:
                self._next_by_text(page)
                return
            dates = [self._time.of(entry) for entry in page]
            known = [d for d in dates if d is not None]
            if not known:
                raise SourceError(
                    f"a full page from {self._url} has no entry with a usable `{self._time.name}`",
                    "the site's entries look corrupt: check them in Nightscout",
                )
            oldest, newest = min(known), max(known)
            if oldest == newest:
                page.clear()
                self._count *= 2
                return
            page[:] = [e for e, d in zip(page, dates, strict=True) if d is None or d > oldest]
            if oldest + 1 >= self._lt:
                raise SourceError(
                    f"{self._url} ignored find[{self._time.name}][$lt] and sent entries dated {newest}",
                    "this does not behave like a Nightscout site: " + URL_HINT,
                )
            self._lt = oldest + 1
            self._count = self._page_size
            self._has_next_page = self._lt > self._start_ms

        def _next_by_text(self, page: list[Any]) -> None:
            """The site sorts and filters the stored strings: the next `$lt` is the first bound the
            site can be sent (UTC ISO text) above the page's smallest string. Records below that
            bound come again on the next page, so they are held back from this one."""
            texts = [self._time.text(record) for record in page]
            known = [t for t in texts if t is not None]
            if not known:
                raise SourceError(
                    f"a full page from {self._url} has no record with a text `{self._time.name}`",
                    "the site's records look corrupt: check them in Nightscout",
                )
            oldest = min(known)
            if oldest >= str(self._time.bound(self._lt)):
                raise SourceError(
                    f"{self._url} ignored find[{self._time.name}][$lt] and sent {oldest!r}",
                    "this does not behave like a Nightscout site: " + URL_HINT,
                )
            below = _first_bound_above(self._time, oldest, self._start_ms, self._lt)
            if below == self._lt:  # the whole page sorts between two bounds: ask for more at once
                page.clear()
                self._count *= 2
                return
            cut = str(self._time.bound(below))
            page[:] = [r for r, t in zip(page, texts, strict=True) if t is None or t >= cut]
            self._lt = below
            self._count = self._page_size
            self._has_next_page = self._lt > self._start_ms

        def update_request(self, request: Request) -> None:
            # dlt built the params as a dict from the endpoint config.
            params = cast(dict[str, Any], request.params)
            params["count"] = self._count
            params[f"find[{self._time.name}][$lt]"] = self._time.bound(self._lt)

    return NewestFirstPaginator


# -- errors -------------------------------------------------------------------------------------
