"""The HTTP under the Nightscout source: the session with its auth (token or API_SECRET), retries, tokens
redacted from logs, pages checked for their JSON shape, and every failure turned into one clear
SourceError."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from engine.errors import SourceError

# requests (with urllib3) is imported where a request is made, not here: a `run` whose records a
# prefetch child read (engine.ingest.prefetch) never makes one, and saves importing it.
if TYPE_CHECKING:
    from requests import PreparedRequest, Response, Session
    from requests.exceptions import ConnectionError

    from engine.ingest.nightscout import NightscoutConfig

Auth = Callable[["PreparedRequest"], "PreparedRequest"]
"""A request's credentials, as requests takes them: a callable that adds them to the prepared request."""


SECRET_HINT = "check NIGHTSCOUT_TOKEN / NIGHTSCOUT_API_SECRET (the token needs read access)"


URL_HINT = "check NIGHTSCOUT_URL: it should be the site's base URL, e.g. https://my-site.example.org"


LATER_HINT = "the site may be down, asleep or overloaded: try again later"


class EndpointNotFound(SourceError):
    """The site answered 404 for an endpoint: it does not serve that kind of record."""


class AccessRefused(SourceError):
    """The site answered 401 or 403: the credentials (or an API v3 JWT) are not accepted."""


def _set(secret: str | None) -> str:
    return "'set'" if secret else "None"


def _reveal(secret: str) -> str:
    # engine.config.Secret prints as "***"; the wire needs the characters themselves.
    return str.__str__(secret)


def _token(config: NightscoutConfig) -> str | None:
    if config.token:
        return _reveal(config.token)
    return dict(parse_qsl(urlsplit(config.url).query)).get("token") or None


class _NightscoutAuth:
    """Adds the credentials to the prepared request only, so dlt's request logs never see them (an
    `Auth`: requests calls any callable it is given as `auth`)."""

    def __init__(self, token: str | None, api_secret_sha1: str | None) -> None:
        self._token = token
        self._api_secret_sha1 = api_secret_sha1

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        if self._token:
            request.prepare_url(str(request.url), {"token": self._token})
        if self._api_secret_sha1:
            request.headers["api-secret"] = self._api_secret_sha1
        return request

    def __repr__(self) -> str:
        return "_NightscoutAuth(***)"


class _GarbledPage(Exception):
    """A 200 answer that is an HTML page or cut-short JSON: usually a proxy fault, so retried."""

    def __init__(self, html: bool) -> None:
        super().__init__("HTML page" if html else "truncated or invalid JSON")
        self.html = html


class _WrongShape(Exception):
    """A 200 answer with valid JSON of the wrong type: the URL points at something else."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"expected {expected}, got {got}")
        self.expected = expected
        self.got = got


def _retried_exceptions() -> tuple[type[Exception], ...]:
    from requests.exceptions import ChunkedEncodingError, Timeout

    return (Timeout, ChunkedEncodingError, _GarbledPage)


def _retry_connection_error(response: Response | None, error: BaseException | None) -> bool:
    """Retry a failed connection, but not a refused one: nothing listens at that address, and asking
    again four times over 17 s only delays saying so (the next run tries again)."""
    from requests.exceptions import ConnectionError

    return isinstance(error, ConnectionError) and _connection_reason(error) != "connection refused"


_JSON_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


def _json_body_hook(expected: type) -> Callable[..., None]:
    """A response hook that decodes a 200 body once, inside dlt's retry loop, and checks its type.

    Running inside the retried `send` is what lets HTML pages and truncated JSON be retried like a
    5xx; the decoded body replaces `response.json` so dlt does not parse it a second time.
    """

    def check(response: Response, *args: Any, **kwargs: Any) -> None:
        if response.status_code != 200:
            return
        # JSON never starts with "<"; the content type is not trusted, proxies get it wrong both ways.
        if response.content[:64].lstrip()[:1] == b"<":
            raise _GarbledPage(html=True)
        try:
            payload = json.loads(response.content)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise _GarbledPage(html=False) from None
        if not isinstance(payload, expected):
            got = _JSON_TYPE_NAMES.get(type(payload), "a number" if payload is not None else "null")
            raise _WrongShape(_JSON_TYPE_NAMES[expected], got)
        response.json = lambda **_: payload  # type: ignore[method-assign]

    return check


def _raise_for_status(response: Response, *args: Any, **kwargs: Any) -> None:
    response.raise_for_status()


class _RedactTokens(logging.Filter):
    """urllib3 logs each request line, query string included, at DEBUG: hide the token in it."""

    _TOKEN = re.compile(r"([?&]token=|/authorization/request/)[^&\s\"?]*")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message or "/authorization/request/" in message:
            record.msg, record.args = self._TOKEN.sub(r"\1***", message), None
        return True


@contextmanager
def _session(config: NightscoutConfig, auth: Auth | None = None) -> Iterator[Session]:
    """A dlt requests session with the config's retries, timeout and credentials (API v1's, unless
    `auth` says otherwise: API v3 takes a JWT instead, engine/ingest/nightscout_v3.py)."""
    from dlt.sources.helpers.requests import Client

    secret = config.api_secret and hashlib.sha1(_reveal(config.api_secret).encode()).hexdigest()
    client = Client(
        request_timeout=config.timeout_s,
        # dlt's rest client raises through its response hooks, inside the retry loop.
        raise_for_status=False,
        exceptions=_retried_exceptions(),
        retry_condition=_retry_connection_error,
        request_max_attempts=config.max_attempts,
        request_backoff_factor=config.backoff_s,
        request_max_retry_delay=config.max_retry_delay_s,
        respect_retry_after_header=True,
        session_attrs={"auth": auth or _NightscoutAuth(_token(config), secret or None)},
    )
    session = client.session
    try:
        yield session
    finally:
        session.close()


def _causes(error: BaseException) -> list[BaseException]:
    """The error and what it wraps: dlt wraps whatever a resource raised in its own exceptions."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _source_error(error: Exception, config: NightscoutConfig, url: str) -> SourceError | None:
    """A user-facing SourceError for what fetching raised, naming `url` and no secret; None for a bug."""
    from requests import RequestException
    from requests.exceptions import ChunkedEncodingError, ConnectionError, HTTPError, Timeout

    attempts = f"after {config.max_attempts} attempt{'s' if config.max_attempts != 1 else ''}"
    for cause in _causes(error):
        if isinstance(cause, SourceError):
            return type(cause)(cause.message, cause.hint, transient=cause.transient)
        if isinstance(cause, _GarbledPage) and cause.html:
            return SourceError(
                f"got an HTML page instead of JSON from {url} ({attempts})",
                "is the site up and the URL right? " + URL_HINT,
                transient=True,
            )
        if isinstance(cause, _GarbledPage | ChunkedEncodingError):
            return SourceError(
                f"got truncated or invalid JSON from {url} ({attempts})",
                "the site or a proxy cut the answer short: try again later",
                transient=True,
            )
        if isinstance(cause, _WrongShape):
            return SourceError(
                f"expected {cause.expected} in JSON from {url}, got {cause.got}",
                "this does not look like a Nightscout site: " + URL_HINT,
            )
        if isinstance(cause, HTTPError) and cause.response is not None:
            return _http_error(cause.response.status_code, url, attempts)
        if isinstance(cause, Timeout):
            return SourceError(
                f"{url} did not answer within {config.timeout_s:g} s ({attempts})", LATER_HINT, transient=True
            )
        if isinstance(cause, ConnectionError):
            reason = _connection_reason(cause)
            if reason == "connection refused":
                attempts = "after 1 attempt: a refused connection is not retried"
            return SourceError(
                f"could not connect to {url}: {reason} ({attempts})",
                "check NIGHTSCOUT_URL and that the site is up",
                transient=True,
            )
        if isinstance(cause, RequestException):
            return SourceError(f"request to {url} failed: {type(cause).__name__}", URL_HINT)
    return None


def _http_error(status: int, url: str, attempts: str) -> SourceError:
    if status in (401, 403):
        return AccessRefused(f"{url} refused access (HTTP {status})", SECRET_HINT)
    if status == 404:
        return EndpointNotFound(f"{url} was not found (HTTP 404)", URL_HINT)
    if status == 429 or status >= 500:
        return SourceError(f"{url} kept answering HTTP {status} ({attempts})", LATER_HINT, transient=True)
    return SourceError(f"{url} answered HTTP {status}", URL_HINT)


def _connection_reason(error: ConnectionError) -> str:
    from requests.exceptions import SSLError

    if isinstance(error, SSLError):
        return "TLS/SSL error"
    for cause in _causes(error):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host not found"
    return "connection failed"
