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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import numpy.typing as npt

from engine.errors import PhloError
from engine.sim.loop import (
    Uploader,
)
from engine.sim.profiles import profile_response
from engine.sim.queries import leading_int, query_entries, query_treatments, status_document, v3_timestamp
from engine.sim.simulator import GlucoseSimulator
from engine.sim.trace import HISTORY_LIMIT, JWT_LIFETIME_S

EntryKind = Literal["all", "sgv", "mbg", "cal"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


FAULT_KINDS = ("http_500", "http_502", "http_503", "http_429", "slow", "truncated", "html")
_FAULT_OPTIONS = {"http_429": {"retry_after"}, "slow": {"seconds"}}


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
            document = status_document(owner.simulator.clock())
        elif treatments:
            document = query_treatments(owner.simulator, query)
        else:
            document = query_entries(owner.simulator, query, path_kind)
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
        last_modified = v3_timestamp(since)
        if last_modified is None:
            self._send_json(400, {"status": 400, "message": "Bad or missing Last-Modified header/parameter"})
            return
        limit = leading_int(query.get("limit", str(HISTORY_LIMIT)))
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
