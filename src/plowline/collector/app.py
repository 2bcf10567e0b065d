"""The collector as a framework-free ASGI 3 application (protocol.md §2).

Every tracking request is appended to the raw log before it is answered, and a
2xx is sent only once the record has been handed to the operating system. The
request is kept as received: the raw path, querystring and body bytes are never
parsed into events here; that is the enrichment stage's job. Routes, settings
and limits are described in docs/collector.md.
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
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

from plowline import __version__
from plowline.collector.client_ip import ClientAddress
from plowline.collector.config import CollectorConfig
from plowline.collector.cookies import CookieSetter, DoNotTrack, cookie_value
from plowline.collector.metrics import CONTENT_TYPE, CollectorMetrics
from plowline.collector.redirect import RedirectPolicy
from plowline.collector.tracker_script import (
    NOT_BUILT,
    TRACKER_SCRIPT,
    load_tracker_script,
)
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
# How much of each oversized part (querystring, headers, body) its
# size-violation record keeps.
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
# What a header line costs besides its name and value: ": " and CRLF.
_HEADER_LINE_OVERHEAD = 4

_NO_STORE = (b"cache-control", b"no-cache, no-store, must-revalidate")
_PIXEL_HEADERS: Headers = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL)).encode()),
    _NO_STORE,
]
_OK_HEADERS: Headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
_REDIRECT_HEADERS: Headers = [(b"content-length", b"0"), _NO_STORE]
_CORS_TAIL: Headers = [
    (b"access-control-allow-credentials", b"true"),
    (b"vary", b"Origin"),
]
_PREFLIGHT_TAIL: Headers = [
    *_CORS_TAIL,
    (b"access-control-allow-headers", b"Content-Type, SP-Anonymous"),
    # POST is CORS-safelisted, but some proxies and older browsers want it named.
    (b"access-control-allow-methods", b"GET, POST, OPTIONS, HEAD"),
    (b"access-control-max-age", b"3600"),
    (b"content-length", b"0"),
]


class RecordWriter(Protocol):
    """Where records go: a sink of :mod:`plowline.collector.sinks`, or a
    :class:`plowline.rawlog.writer.RawLogWriter`.

    ``write`` returns None once the record is stored, or an awaitable that ends
    when it is; either raises :class:`OSError` when it cannot be stored.
    """

    def write(self, record: RawRecord) -> Awaitable[None] | None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _RequestHeaders:
    """What the collector needs from the request headers, read in one pass."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    size: int = 0
    origin: bytes | None = None
    cookies: list[bytes] = field(default_factory=list)
    forwarded: list[bytes] = field(default_factory=list)
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


def _read_headers(
    raw_headers: list[tuple[bytes, bytes]], proxy: str
) -> _RequestHeaders:
    found = _RequestHeaders()
    pairs = found.pairs
    size = 0
    for raw_name, raw_value in raw_headers:
        size += len(raw_name) + len(raw_value)
        name = raw_name.decode("latin-1")
        value = _text(raw_value)
        pairs.append((name, value))
        lower = name.lower()
        if lower in _NOTED_HEADERS:
            _note_header(found, lower, raw_value, value)
        elif lower == proxy:
            found.forwarded.append(raw_value)
    found.size = size + _HEADER_LINE_OVERHEAD * len(raw_headers)
    if found.anonymous:
        found.pairs = [p for p in pairs if p[0].lower() not in _ANONYMOUS_DROPPED]
    return found


_NOTED_HEADERS = frozenset(
    {"cookie", "origin", "sp-anonymous", "content-type", "content-length"}
    | {"user-agent", "referer", "host"}
)


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
_UNAVAILABLE = _text_response("service unavailable")
_NOT_BUILT = _text_response(NOT_BUILT)


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


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why a tracking request is answered 4xx: kept in the record as ``error``."""

    status: int
    error: str
    text: str


def _over_limits(
    query: bytes, found: _RequestHeaders, body: _Body, config: CollectorConfig
) -> _Refusal | None:
    # In the order the parts arrive: request line, headers, body.
    # Known limitation: granian refuses a request target over 65,534 bytes, more
    # than 100 header lines and a head over about 512 KiB before this runs, so
    # such requests leave no record (docs/collector.md, granian's own limits).
    if len(query) > config.max_querystring_bytes:
        what = f"querystring of {len(query)} bytes exceeds"
        return _size_refusal(414, what, config.max_querystring_bytes)
    if found.size > config.max_header_bytes:
        what = f"headers of {found.size} bytes exceed"
        return _size_refusal(431, what, config.max_header_bytes)
    limit = config.max_body_bytes
    if body.size > limit:
        return _size_refusal(
            413, f"body of {_body_size(body, found)} bytes exceeds", limit
        )
    if body.broken:
        # Kept, as every request is: enrich reports it as a failed event.
        error = (
            f"incomplete_body: the body ended after {body.size} bytes, before "
            "it was complete (client gone or malformed chunked encoding)"
        )
        return _Refusal(400, error, "request body incomplete or malformed")
    return None


def _size_refusal(status: int, what: str, limit: int) -> _Refusal:
    reason = f"{what} the limit of {limit} bytes"
    return _Refusal(status, f"size_violation: {reason}", f"request too large: {reason}")


def _body_size(body: _Body, found: _RequestHeaders) -> str:
    declared = found.content_length
    if declared is not None and declared >= body.size:
        return f"{declared}"
    if body.complete:
        return f"{body.size}"
    return f"more than {body.size}"


def _cut(text: str | None) -> str | None:
    return text[:SNIPPET_BYTES] if text is not None else None


def _cut_headers(pairs: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The first headers, up to about ``SNIPPET_BYTES`` in all."""
    kept = []
    budget = SNIPPET_BYTES
    for name, value in pairs:
        if budget <= 0:
            break
        value = value[:budget]
        kept.append((name[:budget], value))
        budget -= len(name) + len(value) + _HEADER_LINE_OVERHEAD
    return tuple(kept)


class CollectorApp:
    """ASGI application: ``await app(scope, receive, send)``, lifespan included.

    ``clock`` returns seconds since the epoch; it stamps records and cookie
    expiry dates. ``tracker_script`` is the file served as ``/plowline.js``.
    The writer is closed at lifespan shutdown.
    """

    def __init__(
        self,
        config: CollectorConfig,
        writer: RecordWriter,
        *,
        clock: Callable[[], float] = time.time,
        tracker_script: Path = TRACKER_SCRIPT,
    ) -> None:
        self.config = config
        self.writer = writer
        self.metrics = CollectorMetrics(config.metrics_dir)
        self._clock = clock
        self._collector = f"plowline-{__version__}"
        self._cookie_name = config.cookie_name.encode("ascii")
        self._cookies = CookieSetter(config)
        self._do_not_track = DoNotTrack.from_config(config)
        self._redirects = RedirectPolicy(config.redirect_allowed_hosts)
        self._client_address = ClientAddress(
            config.trusted_proxies, config.proxy_header
        )
        self._proxy_header = (
            self._client_address.header if config.trusted_proxies else ""
        )
        self._tracker = load_tracker_script(tracker_script, config.tracker_max_age)
        self._in_flight = 0
        self._failures_unlogged = 0
        self._last_failure_log = float("-inf")

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
            await self._track(scope, receive, send, "post")
        else:
            await self._send(send, "other", 404, *_NOT_FOUND)

    async def _get_or_head(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        if path in _PIXEL_PATHS:
            await self._track(scope, receive, send, "pixel")
        elif _is_vendor_path(path):
            # SSC routes every /r/{anything} as a redirect; enrich adapts r/tp2.
            kind = "redirect" if path.startswith("/r/") else "pixel"
            await self._track(scope, receive, send, kind)
        elif path == "/health":
            await self._send(send, "health", 200, *_HEALTHY, head=method == "HEAD")
        elif path == "/robots.txt":
            await self._send(send, "other", 200, *_ROBOTS, head=method == "HEAD")
        elif path == "/plowline.js":
            await self._tracker_script(scope, send)
        elif path == "/metrics" and self.config.metrics_enabled:
            body = self.metrics.render()
            headers = [
                (b"content-type", CONTENT_TYPE),
                (b"content-length", str(len(body)).encode()),
            ]
            await self._send(send, "other", 200, headers, body, head=method == "HEAD")
        else:
            await self._send(send, "other", 404, *_NOT_FOUND)

    async def _send(
        self,
        send: Send,
        group: str,
        status: int,
        headers: Headers,
        body: bytes,
        *,
        head: bool = False,
    ) -> None:
        self.metrics.count(group, status)
        await _respond(send, status, headers, b"" if head else body)

    async def _preflight(self, scope: Scope, send: Send) -> None:
        origin = next((v for k, v in scope["headers"] if k.lower() == b"origin"), None)
        headers = [(b"access-control-allow-origin", origin or b"*"), *_PREFLIGHT_TAIL]
        await self._send(send, "preflight", 200, headers, b"")

    async def _tracker_script(self, scope: Scope, send: Send) -> None:
        head = scope["method"] == "HEAD"
        script = self._tracker
        if script is None:
            await self._send(send, "other", 404, *_NOT_BUILT, head=head)
            return
        if_none_match = next(
            (v for k, v in scope["headers"] if k.lower() == b"if-none-match"), None
        )
        if script.not_modified(if_none_match):
            await self._send(send, "other", 304, script.not_modified_headers, b"")
        else:
            await self._send(send, "other", 200, script.headers, script.body, head=head)

    async def _track(
        self, scope: Scope, receive: Receive, send: Send, kind: str
    ) -> None:
        self._in_flight += 1
        try:
            await self._record_and_answer(scope, receive, send, kind)
        finally:
            self._in_flight -= 1

    async def _record_and_answer(
        self, scope: Scope, receive: Receive, send: Send, kind: str
    ) -> None:
        found = _read_headers(scope["headers"], self._proxy_header)
        query: bytes = scope.get("query_string", b"")
        body = await _read_body(receive, self.config.max_body_bytes)

        now = self._clock()
        userid = self._network_userid(query, found)
        refusal = _over_limits(query, found, body, self.config)
        received = self.metrics.received
        received["querystring"] += len(query)
        received["headers"] += found.size
        received["body"] += body.size
        tracked = self._do_not_track is None or not self._do_not_track.matches(
            found.cookies
        )
        if tracked:
            record = self._record(scope, found, query, body.data, now, userid, refusal)
            written = await self._write(record, now)
        else:
            # Do not track: nothing recorded, no cookie set, the usual answer.
            self.metrics.do_not_track += 1
            written = True

        if not written:
            await self._answer_error(scope, send, kind, found, 503, _UNAVAILABLE)
        elif refusal is not None:
            answer = self._answer_error(
                scope, send, kind, found, refusal.status, _text_response(refusal.text)
            )
            if body.broken:
                with suppress(Exception):  # the client may be gone already
                    await answer
            else:
                await answer
        else:
            cookie = tracked and self.config.cookie_enabled and not found.anonymous
            await self._answer(scope, send, kind, found, now, userid, cookie=cookie)

    def _network_userid(self, query: bytes, found: _RequestHeaders) -> str:
        # tnuid is not the collector's business: enrich applies it (§1.3.3).
        if found.anonymous:
            return ANONYMOUS_NETWORK_USERID
        # A nuid parameter overrides the cookie, and so rewrites it (§2.4).
        from_query = _usable_id(_query_value(query, b"nuid")) if query else None
        if from_query is not None:
            return from_query
        if found.cookies:
            from_cookie = _usable_id(cookie_value(found.cookies, self._cookie_name))
            if from_cookie is not None:
                return from_cookie
        return str(uuid.uuid4())

    def _record(
        self,
        scope: Scope,
        found: _RequestHeaders,
        query: bytes,
        body: bytes,
        now: float,
        userid: str,
        refusal: _Refusal | None,
    ) -> RawRecord:
        client = scope.get("client")
        peer = str(client[0]) if client else None
        forwarded = found.forwarded
        ip = None if found.anonymous else self._client_address.resolve(peer, forwarded)
        headers = tuple(found.pairs)
        path, content_type = _raw_path(scope), found.content_type
        useragent, referer, host = found.useragent, found.referer, found.host
        extra: dict[str, Any] = {}
        if refusal is not None:
            extra["error"] = refusal.error
            if refusal.error.startswith("size_violation"):
                # Only the start of each part: the record must stay writable.
                query, body = query[:SNIPPET_BYTES], body[:SNIPPET_BYTES]
                headers = _cut_headers(found.pairs)
                path, content_type = _cut(path) or "", _cut(content_type)
                useragent, referer, host = _cut(useragent), _cut(referer), _cut(host)
        return RawRecord(
            id=str(uuid.uuid4()),
            tstamp=int(now * 1000),
            collector=self._collector,
            method=scope["method"],
            path=path,
            querystring=query or None,
            body=body or None,
            content_type=content_type,
            headers=headers,
            ip=ip,
            useragent=useragent,
            referer=referer,
            host=host,
            network_userid=userid,
            extra=extra,
        )

    async def _write(self, record: RawRecord, now: float) -> bool:
        try:
            pending = self.writer.write(record)
            if pending is not None:
                await pending
        except OSError as exc:
            self.metrics.write_errors += 1
            self._report_write_failure(exc, now)
            return False
        self.metrics.records_written += 1
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
        kind: str,
        found: _RequestHeaders,
        now: float,
        userid: str,
        *,
        cookie: bool,
    ) -> None:
        if kind == "redirect":
            query: bytes = scope.get("query_string", b"")
            decision = self._redirects.decide(_query_value(query, b"u"))
            if decision.location is None:
                response = _text_response(decision.refusal or "redirect refused")
                await self._answer_error(scope, send, kind, found, 400, response)
                return
            status, body = 302, b""
            headers = [(b"location", decision.location), *_REDIRECT_HEADERS]
        elif kind == "pixel":
            status, body, headers = 200, PIXEL, list(_PIXEL_HEADERS)
        else:
            status, body, headers = 200, b"ok", list(_OK_HEADERS)
        headers.append((b"access-control-allow-origin", found.origin or b"*"))
        headers.extend(_CORS_TAIL)
        if cookie:
            https = scope.get("scheme") == "https"
            value = self._cookies.header(userid, now, https=https, host=found.host)
            headers.append((b"set-cookie", value))
        head = scope["method"] == "HEAD"
        await self._send(send, kind, status, headers, body, head=head)

    async def _answer_error(
        self,
        scope: Scope,
        send: Send,
        kind: str,
        found: _RequestHeaders,
        status: int,
        response: tuple[Headers, bytes],
    ) -> None:
        headers = [
            *response[0],
            (b"access-control-allow-origin", found.origin or b"*"),
            *_CORS_TAIL,
        ]
        head = scope["method"] == "HEAD"
        await self._send(send, kind, status, headers, response[1], head=head)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._drain()
                self.writer.close()
                self.metrics.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _drain(self) -> None:
        """Wait, for a bounded time, for requests that are still being recorded."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
