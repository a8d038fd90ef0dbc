"""Nightscout API v3's history: every change to a collection since a `srvModified`, deletions
included, read with a JWT got from the site's access token (docs/closed-loop.md, "API v3 history").

Facts from cgm-remote-monitor (lib/api3/generic/history/operation.js, lib/api3/security.js,
lib/authorization/index.js, lib/server/enclave.js, lib/api3/const.json):
- `GET /api/v3/{collection}/history/{lastModified}` answers `{"status": 200, "result": [...]}`:
  the documents with `srvModified > lastModified`, sorted by `srvModified` ascending, at most
  `limit` (default and maximum API3_MAX_LIMIT, 1000); a `lastModified` before 2000-01-01 is refused
  (HTTP 400). A document has no `_id` but its `identifier` (the `_id`'s hex when it had none).
- Only a document written through API v3 has a `srvModified`: one written through API v1 (xDrip,
  Loop, the careportal) never shows in the history, so the v1 windows stay the source of new records.
- API v3 takes no API_SECRET: `GET /api/v2/authorization/request/<access token>` answers
  `{"token": <JWT>, "sub", "permissionGroups", "iat", "exp"}` (8 hours), sent as
  `Authorization: Bearer <JWT>`; no JWT is HTTP 401. A site before API v3 answers 404.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.errors import SourceError
from engine.ingest.nightscout import NightscoutConfig, _read, redact_url
from engine.ingest.nightscout_http import (
    AccessRefused,
    EndpointNotFound,
    _json_body_hook,
    _raise_for_status,
    _token,
)

if TYPE_CHECKING:
    from requests import PreparedRequest, Response, Session

log = logging.getLogger(__name__)

AUTH_PATH = "/api/v2/authorization/request/"
V3_PATH = "/api/v3/"
HISTORY_LIMIT = 1000
"""API3_MAX_LIMIT's default: the most documents one history page holds."""
MIN_TIMESTAMP_MS = 946_684_800_000
"""2000-01-01: the site refuses an earlier `lastModified` (HTTP 400)."""
REFRESH_MARGIN_S = 300.0
"""A JWT is renewed this long (at most a tenth of its lifetime) before it expires."""
POSITION_PREFIX = "nightscout:v3-history:"
"""Run-store key prefix of a collection's sync position: the last `srvModified` stored."""


def position_key(collection: str) -> str:
    return POSITION_PREFIX + collection


@dataclass(frozen=True)
class HistoryPage:
    documents: list[dict[str, Any]]
    last_modified: int
    """The newest `srvModified` of the page: where the next page starts."""


class _Bearer:
    """The JWT as a bearer token (an engine.ingest.nightscout_http.Auth)."""

    def __init__(self, jwt: Callable[[], str]) -> None:
        self._jwt = jwt

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._jwt()}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(***)"


class _NoAuth:
    """No credentials: the JWT request itself carries the access token in its URL."""

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        return request


class HistoryClient:
    """One run's API v3 access: a JWT from the access token, renewed before it expires; the token
    and the JWT appear in no log, error or record."""

    def __init__(self, config: NightscoutConfig, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._monotonic = monotonic
        self._jwt: str | None = None
        self._renew_at = 0.0
        self.authorizations = 0
        """JWTs asked for so far."""

    @property
    def base(self) -> str:
        return redact_url(self._config.url).rstrip("/")

    def available(self) -> str | None:
        """None when the site serves API v3 to this client, else why not (it is then read through
        API v1 and its re-read window). Raises SourceError when the site refuses the token."""
        if _token(self._config) is None:
            return "no access token (NIGHTSCOUT_TOKEN): API v3 takes no API_SECRET"
        try:
            self._authorize()
        except EndpointNotFound:
            return "the site has no /api/v2/authorization (HTTP 404)"
        return None

    def _bearer(self) -> str:
        if self._jwt is None or self._monotonic() >= self._renew_at:
            self._authorize()
        assert self._jwt is not None
        return self._jwt

    def _authorize(self) -> None:
        token = _token(self._config)
        assert token is not None
        url = self.base + AUTH_PATH + token

        def request(session: Session) -> dict[str, Any]:
            answer: dict[str, Any] = session.get(url, hooks=_hooks()).json()
            return answer

        started = self._monotonic()
        answer = _read(self._config, "", request, _NoAuth(), endpoint=self.base + AUTH_PATH + "***")
        jwt, iat, exp = answer.get("token"), answer.get("iat"), answer.get("exp")
        if not isinstance(jwt, str) or not isinstance(iat, int) or not isinstance(exp, int) or exp <= iat:
            raise SourceError(
                f"{self.base}{AUTH_PATH}*** answered no usable JWT",
                "this does not behave like a Nightscout site: check NIGHTSCOUT_URL",
            )
        lifetime = float(exp - iat)
        # The site's clock may differ from ours: the JWT's own lifetime counts from when it came.
        self._renew_at = started + lifetime - min(REFRESH_MARGIN_S, lifetime / 10)
        self._jwt = jwt
        self.authorizations += 1
        log.info("got an API v3 JWT valid %d s", int(lifetime))

    def history(self, collection: str, last_modified: int) -> Iterator[HistoryPage]:
        """Pages of every change to `collection` after `last_modified` (epoch ms), oldest change
        first, until a short page. Raises EndpointNotFound when the site has no API v3."""
        since = max(last_modified, MIN_TIMESTAMP_MS)
        while True:
            documents = self._page(collection, since)
            modified = [d["srvModified"] for d in documents if isinstance(d.get("srvModified"), int)]
            newest = max(modified, default=since)
            if documents and newest <= since:
                raise SourceError(
                    f"{self.base}{V3_PATH}{collection}/history sent changes not after {since}",
                    "this does not behave like a Nightscout site: check NIGHTSCOUT_URL",
                )
            yield HistoryPage([_as_v1(d) for d in documents], newest)
            if len(documents) < HISTORY_LIMIT:
                return
            # The site asks for srvModified > since: a full page whose last change shares its
            # srvModified with the next page's first would lose that one. Start again just below
            # the newest (the merge makes a repeat free) unless the whole page shares it.
            since = newest - 1 if min(modified) < newest else newest

    def _page(self, collection: str, since: int) -> list[dict[str, Any]]:
        path = f"{V3_PATH}{collection}/history/{since}"

        def request(session: Session) -> list[dict[str, Any]]:
            answer = session.get(self.base + path, params={"limit": HISTORY_LIMIT}, hooks=_hooks()).json()
            result = answer.get("result")
            if not isinstance(result, list):
                raise SourceError(
                    f"{self.base}{path} answered no `result` list",
                    "this does not behave like a Nightscout site: check NIGHTSCOUT_URL",
                )
            return [d for d in result if isinstance(d, dict)]

        try:
            documents = _read(self._config, "", request, _Bearer(self._bearer), endpoint=self.base + path)
        except AccessRefused:
            # The JWT held was revoked or the site's key changed (a restart with a new API_SECRET):
            # one new JWT and one more try; a second refusal is the site's answer.
            log.info("the site refused the API v3 JWT: asking for a new one")
            self._authorize()
            try:
                documents = _read(self._config, "", request, _Bearer(self._bearer), endpoint=self.base + path)
            except AccessRefused as e:
                status = e.message.rpartition("(HTTP ")[2].rstrip(")")
                raise AccessRefused(
                    f"{self.base}{path} refused a new API v3 JWT too (HTTP {status})",
                    "the access token may have lost its read permission: check its roles in Nightscout's admin",
                ) from None
        log.info("fetched %d changes from %s", len(documents), self.base + path)
        return documents


def _hooks() -> dict[str, list[Callable[[Response], Any]]]:
    """Decode a 200 body as a JSON object inside the retry loop; raise on any other status."""
    return {"response": [_json_body_hook(dict), _raise_for_status]}


def _as_v1(document: dict[str, Any]) -> dict[str, Any]:
    """A v3 document as the raw tables take it: its `created_at` from its `date` when the site
    did not add one (API3_CREATED_AT_FALLBACK_ENABLED off)."""
    if "created_at" not in document and isinstance(document.get("date"), int) and "sgv" not in document:
        moment = datetime.fromtimestamp(document["date"] / 1000, UTC)
        return {**document, "created_at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    return document
