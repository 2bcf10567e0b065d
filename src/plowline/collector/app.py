"""The collector as a framework-free ASGI 3 application (protocol.md §2).

Every tracking request is appended to the raw log before it is answered, and a
2xx is sent only once the record has been handed to the operating system. The
request is kept as received: the raw path, querystring and body bytes are never
parsed into events here; that is the enrichment stage's job.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import suppress
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

from plowline import __version__
from plowline.collector.config import CollectorConfig
from plowline.rawlog.record import RawRecord

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# The 43-byte transparent GIF89a of the Clojure, CloudFront and SSC 2.x
# collectors (protocol.md §2.2, variant A).
PIXEL = bytes.fromhex(
    "47494638396101000100f00000ffffff"
    "00000021f90401000000002c00000000"
    "010001000002024401003b"
)
ANONYMOUS_NETWORK_USERID = "00000000-0000-0000-0000-000000000000"
# How much of an oversized body is kept in its size-violation record.
SNIPPET_BYTES = 64 * 1024
# An oversized body is read and dropped up to this many times the limit, so
# that the client can read the 413; past that the connection is cut.
_DRAIN_FACTOR = 16
# How long shutdown waits for requests that are still being recorded.
DRAIN_SECONDS = 10.0

_PIXEL_PATHS = frozenset({"/i", "/ice.png"})
# SP-Anonymous asks that nothing identifying the sender be stored (SSC 2.x/3.x).
_ANONYMOUS_DROPPED = frozenset({"cookie", "x-forwarded-for", "x-real-ip", "forwarded"})
# RFC 6265 cookie-octets: anything else could break or extend the Set-Cookie line.
_COOKIE_VALUE = re.compile(rb"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{1,128}")
_FAILURE_LOG_INTERVAL = 10.0

_PIXEL_HEADERS: Headers = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL)).encode()),
    (b"cache-control", b"no-cache, no-store, must-revalidate"),
]
_OK_HEADERS: Headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
_CORS_TAIL: Headers = [
    (b"access-control-allow-credentials", b"true"),
    (b"vary", b"Origin"),
]
_PREFLIGHT_TAIL: Headers = [
    *_CORS_TAIL,
    (b"access-control-allow-headers", b"Content-Type, SP-Anonymous"),
    (b"access-control-max-age", b"3600"),
    (b"content-length", b"0"),
]


class RecordWriter(Protocol):
    """Where records go; :class:`plowline.rawlog.writer.RawLogWriter` is one."""

    def write(self, record: RawRecord) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _RequestHeaders:
    """What the collector needs from the request headers, read in one pass."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    origin: bytes | None = None
    cookies: list[bytes] = field(default_factory=list)
    anonymous: bool = False
    content_type: str | None = None
    content_length: int | None = None
    useragent: str | None = None
    referer: str | None = None
    host: str | None = None


def _text(raw: bytes) -> str:
    # Same rule as the raw-record format: UTF-8 when valid, else Latin-1.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_headers(raw_headers: list[tuple[bytes, bytes]]) -> _RequestHeaders:
    found = _RequestHeaders()
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1")
        value = _text(raw_value)
        found.pairs.append((name, value))
        _note_header(found, name.lower(), raw_value, value)
    if found.anonymous:
        found.pairs = [p for p in found.pairs if p[0].lower() not in _ANONYMOUS_DROPPED]
    return found


def _note_header(found: _RequestHeaders, name: str, raw: bytes, value: str) -> None:
    # The first occurrence wins for single-valued headers, as in RawRecord.header.
    if name == "cookie":
        found.cookies.append(raw)
    elif name == "origin" and found.origin is None:
        found.origin = raw
    elif name == "sp-anonymous":
        found.anonymous = True
    elif name == "content-type" and found.content_type is None:
        found.content_type = value.lower()
    elif name == "content-length" and found.content_length is None:
        found.content_length = int(raw) if raw.isdigit() else None
    elif name == "user-agent" and found.useragent is None:
        found.useragent = value
    elif name == "referer" and found.referer is None:
        found.referer = value
    elif name == "host" and found.host is None:
        found.host = value


def _query_value(query: bytes, key: bytes) -> bytes | None:
    """The percent-decoded value of the first ``key=`` pair in ``query``."""
    if key not in query:
        return None
    prefix = key + b"="
    for pair in query.split(b"&"):
        if pair.startswith(prefix):
            return unquote_to_bytes(pair[len(prefix) :].replace(b"+", b" "))
    return None


def _cookie_value(cookie_headers: list[bytes], name: bytes) -> bytes | None:
    for header in cookie_headers:
        for part in header.split(b";"):
            key, sep, value = part.strip().partition(b"=")
            if sep and key.strip() == name:
                return value.strip().strip(b'"')
    return None


def _usable_id(candidate: bytes | None) -> str | None:
    if candidate is None or not _COOKIE_VALUE.fullmatch(candidate):
        return None
    return candidate.decode("ascii")


def _is_vendor_path(path: str) -> bool:
    """True for exactly two non-empty segments: ``/{vendor}/{version}``."""
    if path.count("/") != 2 or not path.startswith("/"):
        return False
    _, vendor, version = path.split("/")
    return bool(vendor) and bool(version)


def _raw_path(scope: Scope) -> str:
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return str(scope["path"])
    # Some servers leave the query in raw_path; the record keeps it separately.
    return _text(raw.partition(b"?")[0])


def _text_response(text: str) -> tuple[Headers, bytes]:
    body = text.encode("utf-8")
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    return headers, body


_NOT_FOUND = _text_response("not found")
_HEALTHY = _text_response("ok")
_ROBOTS = _text_response("User-agent: *\nDisallow: /\n")
_TOO_LARGE = _text_response("request body too large")
_UNAVAILABLE = _text_response("service unavailable")
_INCOMPLETE = _text_response("request body incomplete or malformed")


async def _respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True, slots=True)
class _Body:
    data: bytes
    size: int
    complete: bool
    broken: bool = False


async def _read_body(receive: Receive, limit: int) -> _Body:
    """The body; ``broken`` when it ended early (the client went away, or the
    server could not read its chunked framing).

    Past ``limit`` only the first bytes are kept, but the rest is still read (up
    to a bound) so that the client is not reset before it reads the 413.
    """
    kept = bytearray()
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return _Body(bytes(kept[: limit + 1]), size, complete=False, broken=True)
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if len(kept) <= limit:
            kept += chunk
        if not message.get("more_body", False):
            return _Body(bytes(kept), size, complete=True)
        if size > limit * _DRAIN_FACTOR:
            return _Body(bytes(kept), size, complete=False)


def _size_violation(body: _Body, declared: int | None, limit: int) -> str:
    if declared is not None and declared >= body.size:
        seen = f"{declared}"
    elif body.complete:
        seen = f"{body.size}"
    else:
        seen = f"more than {body.size}"
    return f"size_violation: body of {seen} bytes exceeds the limit of {limit} bytes"


class CollectorApp:
    """ASGI application: ``await app(scope, receive, send)``, lifespan included.

    ``clock`` returns seconds since the epoch; it stamps records and cookie
    expiry dates. The writer is closed at lifespan shutdown.
    """

    def __init__(
        self,
        config: CollectorConfig,
        writer: RecordWriter,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.writer = writer
        self._clock = clock
        self._collector = f"plowline-{__version__}"
        self._cookie_name = config.cookie_name.encode("ascii")
        self._cookie_head = (
            f"Path={config.cookie_path}; Max-Age={config.cookie_max_age}"
        )
        self._cookie_tails = (
            self._cookie_attributes(secure=False),
            self._cookie_attributes(secure=True),
        )
        self._expires_cache: tuple[int, str] = (-1, "")
        self._in_flight = 0
        self._failures_unlogged = 0
        self._last_failure_log = float("-inf")

    def _cookie_attributes(self, *, secure: bool) -> str:
        parts = []
        if self.config.cookie_domain:
            parts.append(f"Domain={self.config.cookie_domain}")
        # Browsers drop SameSite=None without Secure, and drop Secure cookies
        # that arrive over plain http: so the attributes follow the scheme.
        parts.append("SameSite=None; Secure" if secure else "SameSite=Lax")
        parts.append("HttpOnly")
        return "; ".join(parts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if method == "OPTIONS":
            await self._preflight(scope, send)
        elif method in ("GET", "HEAD"):
            await self._get_or_head(scope, receive, send, method, path)
        elif method == "POST" and _is_vendor_path(path):
            await self._track(scope, receive, send, pixel=False)
        else:
            await _respond(send, 404, *_NOT_FOUND)

    async def _get_or_head(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        # Known limitation: click redirects (/r/tp2?u=...) are not implemented;
        # like any two-segment path they are recorded and answered with the pixel.
        if path in _PIXEL_PATHS or _is_vendor_path(path):
            await self._track(scope, receive, send, pixel=True)
            return
        if path == "/health":
            headers, body = _HEALTHY
        elif path == "/robots.txt":
            headers, body = _ROBOTS
        else:
            await _respond(send, 404, *_NOT_FOUND)
            return
        await _respond(send, 200, headers, b"" if method == "HEAD" else body)

    async def _preflight(self, scope: Scope, send: Send) -> None:
        origin = next((v for k, v in scope["headers"] if k.lower() == b"origin"), None)
        headers = [(b"access-control-allow-origin", origin or b"*"), *_PREFLIGHT_TAIL]
        await _respond(send, 200, headers, b"")

    async def _track(
        self, scope: Scope, receive: Receive, send: Send, *, pixel: bool
    ) -> None:
        self._in_flight += 1
        try:
            await self._record_and_answer(scope, receive, send, pixel=pixel)
        finally:
            self._in_flight -= 1

    async def _record_and_answer(
        self, scope: Scope, receive: Receive, send: Send, *, pixel: bool
    ) -> None:
        found = _read_headers(scope["headers"])
        limit = self.config.max_body_bytes
        body = await _read_body(receive, limit)

        now = self._clock()
        userid = self._network_userid(scope, found)
        data = body.data
        extra: dict[str, Any] = {}
        if body.size > limit:
            data = data[:SNIPPET_BYTES]
            extra["error"] = _size_violation(body, found.content_length, limit)
        elif body.broken:
            # Kept, as every request is: enrich reports it as a failed event.
            extra["error"] = (
                f"incomplete_body: the body ended after {body.size} bytes, before "
                "it was complete (client gone or malformed chunked encoding)"
            )
        record = self._record(scope, found, data, now, userid, extra)
        if not self._write(record, now):
            await self._answer_error(send, found, 503, _UNAVAILABLE)
        elif body.broken and body.size <= limit:
            with suppress(Exception):  # the client may be gone already
                await self._answer_error(send, found, 400, _INCOMPLETE)
        elif extra:
            await self._answer_error(send, found, 413, _TOO_LARGE)
        else:
            await self._answer(scope, send, found, now, userid, pixel=pixel)

    def _network_userid(self, scope: Scope, found: _RequestHeaders) -> str:
        if found.anonymous:
            return ANONYMOUS_NETWORK_USERID
        query: bytes = scope.get("query_string", b"")
        # A nuid parameter overrides the cookie, and so rewrites it (§2.4).
        from_query = _usable_id(_query_value(query, b"nuid")) if query else None
        if from_query is not None:
            return from_query
        if found.cookies:
            from_cookie = _usable_id(_cookie_value(found.cookies, self._cookie_name))
            if from_cookie is not None:
                return from_cookie
        return str(uuid.uuid4())

    def _record(
        self,
        scope: Scope,
        found: _RequestHeaders,
        body: bytes,
        now: float,
        userid: str,
        extra: dict[str, Any],
    ) -> RawRecord:
        client = scope.get("client")
        ip = None if found.anonymous or not client else str(client[0])
        return RawRecord(
            id=str(uuid.uuid4()),
            tstamp=int(now * 1000),
            collector=self._collector,
            method=scope["method"],
            path=_raw_path(scope),
            querystring=scope.get("query_string") or None,
            body=body or None,
            content_type=found.content_type,
            headers=tuple(found.pairs),
            ip=ip,
            useragent=found.useragent,
            referer=found.referer,
            host=found.host,
            network_userid=userid,
            extra=extra,
        )

    def _write(self, record: RawRecord, now: float) -> bool:
        try:
            self.writer.write(record)
        except OSError as exc:
            self._report_write_failure(exc, now)
            return False
        return True

    def _report_write_failure(self, exc: OSError, now: float) -> None:
        # One line per interval: a full disk must not also flood the log.
        self._failures_unlogged += 1
        if now - self._last_failure_log < _FAILURE_LOG_INTERVAL:
            return
        logger.error(
            "Could not append to the raw log (%s); answered 503 to %d request(s) "
            "since the last report.",
            exc,
            self._failures_unlogged,
        )
        self._failures_unlogged = 0
        self._last_failure_log = now

    async def _answer(
        self,
        scope: Scope,
        send: Send,
        found: _RequestHeaders,
        now: float,
        userid: str,
        *,
        pixel: bool,
    ) -> None:
        headers = list(_PIXEL_HEADERS if pixel else _OK_HEADERS)
        headers.append((b"access-control-allow-origin", found.origin or b"*"))
        headers.extend(_CORS_TAIL)
        if self.config.cookie_enabled and not found.anonymous:
            secure = scope.get("scheme") == "https"
            headers.append((b"set-cookie", self._set_cookie(userid, now, secure)))
        body = PIXEL if pixel else b"ok"
        await _respond(send, 200, headers, b"" if scope["method"] == "HEAD" else body)

    async def _answer_error(
        self,
        send: Send,
        found: _RequestHeaders,
        status: int,
        response: tuple[Headers, bytes],
    ) -> None:
        headers = [
            *response[0],
            (b"access-control-allow-origin", found.origin or b"*"),
            *_CORS_TAIL,
        ]
        await _respond(send, status, headers, response[1])

    def _set_cookie(self, userid: str, now: float, secure: bool) -> bytes:
        expires = self._expires(int(now) + self.config.cookie_max_age)
        name, head = self.config.cookie_name, self._cookie_head
        tail = self._cookie_tails[secure]
        return f"{name}={userid}; {head}; Expires={expires}; {tail}".encode("ascii")

    def _expires(self, moment: int) -> str:
        # Formatting an HTTP date costs more than the rest of the cookie; it
        # changes once a second.
        cached_moment, text = self._expires_cache
        if cached_moment != moment:
            text = formatdate(moment, usegmt=True)
            self._expires_cache = (moment, text)
        return text

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._drain()
                self.writer.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _drain(self) -> None:
        """Wait, for a bounded time, for requests that are still being recorded."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
