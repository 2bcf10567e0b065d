"""The collector as a framework-free ASGI 3 application (protocol.md §2).

Every tracking request is appended to the raw log before it is answered, and a
2xx is sent only once the record has been handed to the operating system. The
request is kept as received: the raw path, querystring and body bytes are never
parsed into events here; that is the enrichment stage's job. Routes, settings
and limits are described in docs/collector.md.

The pixel request is the hot path (docs/collector.md, Speed): a plain one goes
one straight way (``_plain_pixel``), its headers checked and written into the
record's JSON from their bytes in one pass (``plainpath.scan_headers``, in C
where built), its record encoded straight to its raw-log line (no
``RawRecord``), its id taken from a batch of random bytes and the constant
part of its answer built once. A GET or HEAD over HTTP/1
without ``Content-Length`` or ``Transfer-Encoding`` has no body, so the
server's ``receive()``, which costs more than the rest of such a request's
Python, is not called for it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

import orjson

from plowline import __version__
from plowline.collector.client_ip import ClientAddress
from plowline.collector.config import CollectorConfig
from plowline.collector.cookies import CookieSetter, DoNotTrack, cookie_value
from plowline.collector.lines import encode_line
from plowline.collector.metrics import CONTENT_TYPE, CollectorMetrics
from plowline.collector.plainpath import (
    _HEADER_LINE_OVERHEAD,
    _PAIR_SEP,
    _VALUE_SEP,
    _VERBATIM,
    ScannedHeaders,
    _headers_json,
    scan_headers,
)
from plowline.collector.redirect import RedirectPolicy
from plowline.collector.sinks import RawLogSink, StdoutSink
from plowline.collector.tracker_script import (
    NOT_BUILT,
    TRACKER_SCRIPT,
    load_tracker_script,
)
from plowline.ids import RandomIds
from plowline.rawlog.record import FORMAT_VERSION, RawRecord, decode_record
from plowline.rawlog.writer import RawLogWriter

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
_PIXEL_RAW_PATHS = frozenset({b"/i", b"/ice.png"})
_BODILESS_METHODS = frozenset({b"GET", b"HEAD"})
# SP-Anonymous asks that nothing identifying the sender be stored (SSC 2.x/3.x).
_ANONYMOUS_DROPPED = frozenset({"cookie", "x-forwarded-for", "x-real-ip", "forwarded"})
# RFC 6265 cookie-octets: anything else could break or extend the Set-Cookie line.
_COOKIE_VALUE = re.compile(rb"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{1,128}")
_FAILURE_LOG_INTERVAL = 10.0

_NO_STORE = (b"cache-control", b"no-cache, no-store, must-revalidate")
_PIXEL_HEADERS: Headers = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL)).encode()),
    _NO_STORE,
]
_OK_HEADERS: Headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
_REDIRECT_HEADERS: Headers = [(b"content-length", b"0"), _NO_STORE]
_ALLOW_ORIGIN = b"access-control-allow-origin"
_CORS_TAIL: Headers = [
    (b"access-control-allow-credentials", b"true"),
    (b"vary", b"Origin"),
]
# The answers to a recorded request, but for the origin and the cookie, built
# once: (head before the origin, tail after it, body).
_ANSWERS: dict[str, tuple[Headers, Headers, bytes]] = {
    "pixel": (_PIXEL_HEADERS, _CORS_TAIL, PIXEL),
    "post": (_OK_HEADERS, _CORS_TAIL, b"ok"),
}
# Only HTTP/1 tells by its headers that a request has no body.
_HTTP1 = frozenset({"1.1", "1.0"})
_PIXEL_ANSWER = tuple(_PIXEL_HEADERS)
# ASGI messages the server only reads, so they can be shared.
_PIXEL_BODY = {"type": "http.response.body", "body": PIXEL}
_EMPTY_BODY = {"type": "http.response.body", "body": b""}
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


class _RequestHeaders:
    """What the collector needs from the request headers, read in one pass."""

    __slots__ = (
        "anonymous",
        "chunked",
        "content_length",
        "content_length_seen",
        "content_type",
        "cookies",
        "forwarded",
        "host",
        "json",
        "origin",
        "raw",
        "referer",
        "size",
        "useragent",
    )

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        self.size = 0
        # The record's "headers" value, encoded, when the quick way could.
        self.json: bytes | None = None
        self.origin: bytes | None = None
        self.cookies: list[bytes] = []
        self.forwarded: list[bytes] = []
        self.anonymous = False
        self.content_type: str | None = None
        self.content_length: int | None = None
        self.content_length_seen = False
        self.chunked = False
        self.useragent: str | None = None
        self.referer: str | None = None
        self.host: str | None = None

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The headers as the record keeps them: names as Latin-1, values as
        UTF-8 or else Latin-1; without the identifying ones when anonymous."""
        pairs = [(name.decode("latin-1"), _text(value)) for name, value in self.raw]
        if self.anonymous:
            return [p for p in pairs if p[0].lower() not in _ANONYMOUS_DROPPED]
        return pairs

    @property
    def may_have_body(self) -> bool:
        """False when an HTTP/1 request has no body: neither Transfer-Encoding
        nor a Content-Length other than 0 (RFC 9112 §6.3)."""
        return self.chunked or (self.content_length_seen and self.content_length != 0)


def _text(raw: bytes) -> str:
    # Same rule as the raw-record format: UTF-8 when valid, else Latin-1.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_NOTED_HEADERS = frozenset(
    {b"cookie", b"origin", b"sp-anonymous", b"content-type", b"content-length"}
    | {b"user-agent", b"referer", b"host", b"transfer-encoding"}
)


def _read_headers(
    raw_headers: list[tuple[bytes, bytes]], proxy: bytes
) -> _RequestHeaders:
    """Note the headers the collector uses; ``proxy`` is the lower-cased name of
    the trusted proxies' header, or empty."""
    found = _RequestHeaders(raw_headers)
    for name, value in raw_headers:
        if name in _NOTED_HEADERS:
            _note_header(found, name, value)
        elif not name.islower() and name.lower() in _NOTED_HEADERS:
            # ASGI servers lower-case names; another caller may not have.
            _note_header(found, name.lower(), value)
        elif proxy and name.lower() == proxy:
            found.forwarded.append(value)
    count = len(raw_headers)
    if count:
        # Every name and value, a separator after each name and between pairs.
        joined = _PAIR_SEP.join(map(_VALUE_SEP.join, raw_headers))
        # What the headers weigh on the wire: ": " and CRLF instead of the two
        # separators of each pair (the last one has only one).
        found.size = len(joined) + (_HEADER_LINE_OVERHEAD - 2) * count + 1
        if not found.anonymous:
            found.json = _headers_json(joined, count)
    else:
        found.json = b"[]"
    return found


def _note_header(found: _RequestHeaders, name: bytes, raw: bytes) -> None:
    # The first occurrence wins for single-valued headers, as in RawRecord.header.
    if name == b"cookie":
        found.cookies.append(raw)
    elif name == b"user-agent":
        if found.useragent is None:
            found.useragent = _text(raw)
    elif name == b"host":
        if found.host is None:
            found.host = _text(raw)
    elif name == b"origin":
        if found.origin is None:
            found.origin = raw
    elif name == b"referer":
        if found.referer is None:
            found.referer = _text(raw)
    elif name == b"content-type":
        if found.content_type is None:
            found.content_type = _text(raw).lower()
    elif name == b"content-length":
        found.content_length_seen = True
        if found.content_length is None and raw.isdigit():
            found.content_length = int(raw)
    elif name == b"transfer-encoding":
        found.chunked = True
    elif name == b"sp-anonymous":
        found.anonymous = True


@functools.lru_cache(maxsize=4096)
def _ip_json(address: str) -> bytes:
    """A client address from the socket as a JSON string (clients come back)."""
    return orjson.dumps(address)


# How a plain pixel request's raw-log line starts, up to its record id.
_LINE_START = b'{"v":%d,"id":"' % FORMAT_VERSION


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


def _plain_vendor_path(raw_path: bytes) -> bool:
    """A ``/vendor/version`` path as sent, with nothing percent-encoded (so
    that it is the path the collector routes on) and not a redirect."""
    if raw_path.count(b"/") != 2 or raw_path[:1] != b"/" or b"%" in raw_path:
        return False
    _, vendor, version = raw_path.split(b"/")
    return bool(vendor) and bool(version) and vendor != b"r"


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
    return _raw_path_text(raw)


def _raw_path_text(raw: bytes) -> str:
    # Some servers leave the query in raw_path; the record keeps it separately.
    return _text(raw.partition(b"?")[0])


def _stores_at_once(writer: RecordWriter) -> bool:
    """True when ``writer`` has stored a line once its store call returns."""
    if isinstance(writer, (RawLogWriter, StdoutSink)):
        return True
    return isinstance(writer, RawLogSink) and writer.commit is None


def _wire_headers(headers: Headers) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


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
# The same answers as bytes on the wire, for plain_pixel: the status
# line and the headers up to the allowed origin's value; then the rest.
_PIXEL_WIRE = (
    b"HTTP/1.1 200 OK\r\n" + _wire_headers(_PIXEL_HEADERS) + _ALLOW_ORIGIN + b": "
)
_POST_WIRE = b"HTTP/1.1 200 OK\r\n" + _wire_headers(_OK_HEADERS) + _ALLOW_ORIGIN + b": "
_CORS_TAIL_WIRE = b"\r\n" + _wire_headers(_CORS_TAIL)
_UNAVAILABLE_WIRE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    + _wire_headers(_UNAVAILABLE[0])
    + _ALLOW_ORIGIN
    + b": ",
    _UNAVAILABLE[1],
)
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


_NO_BODY = _Body(b"", 0, complete=True)


def _line_store(
    writer: RecordWriter,
) -> Callable[[bytes, str], Awaitable[None] | None]:
    """How the application hands an encoded line to ``writer``.

    Sinks take the line as it is. A :class:`RawLogWriter` appends it and is
    done. Any other record writer gets the record read back from the line.
    """
    store: Callable[[bytes, str], Awaitable[None] | None] | None = getattr(
        writer, "store", None
    )
    if store is not None:
        return store
    if isinstance(writer, RawLogWriter):
        raw_writer = writer

        def append(line: bytes, record_id: str) -> None:
            raw_writer.write_line(line)

        return append

    def write_record(line: bytes, record_id: str) -> Awaitable[None] | None:
        return writer.write(decode_record(line))

    return write_record


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why a tracking request is answered 4xx: kept in the record as ``error``."""

    status: int
    error: str
    text: str


def _over_limits(
    query: bytes, found: _RequestHeaders, body: _Body, config: CollectorConfig
) -> _Refusal | None:
    # In the order the parts arrive: request line, headers, body. The HTTP
    # server refuses on its own only far above these (docs/collector.md).
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


def _cut_headers(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The first headers, up to about ``SNIPPET_BYTES`` in all."""
    kept = []
    budget = SNIPPET_BYTES
    for name, value in pairs:
        if budget <= 0:
            break
        value = value[:budget]
        kept.append((name[:budget], value))
        budget -= len(name) + len(value) + _HEADER_LINE_OVERHEAD
    return kept


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
        # The line's part from the collector's name to the method's value.
        self._collector_json = (
            b',"collector":' + orjson.dumps(self._collector) + b',"method":"'
        )
        self._cookie_name = config.cookie_name.encode("ascii")
        self._cookies = CookieSetter(config)
        self._do_not_track = DoNotTrack.from_config(config)
        self._redirects = RedirectPolicy(config.redirect_allowed_hosts)
        self._client_address = ClientAddress(
            config.trusted_proxies, config.proxy_header
        )
        self._proxy_header = (
            self._client_address.header.lower().encode("latin-1")
            if config.trusted_proxies
            else b""
        )
        # What the server's compiled reader (plainpath.read_plain) looks for:
        # the trusted proxies' header and the network-user cookie.
        self.plain_header_keys = (self._proxy_header, self._cookie_name)
        self._tracker = load_tracker_script(tracker_script, config.tracker_max_age)
        self._store = _line_store(writer)
        self._store_now = self._store if _stores_at_once(writer) else None
        # Several lines in one write: to a raw-log file of this worker's own.
        self._store_joined = not isinstance(writer, StdoutSink)
        self._ids = RandomIds()
        self._in_flight = 0
        self._failures_unlogged = 0
        self._last_failure_log = float("-inf")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            # The pixel first: it is most of the traffic.
            if scope["path"] in _PIXEL_PATHS and scope["method"] in ("GET", "HEAD"):
                if not await self._plain_pixel(scope, send):
                    await self._track(scope, receive, send, "pixel")
            else:
                await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _plain_pixel(self, scope: Scope, send: Send) -> bool:
        """Record and answer a pixel request that needs nothing special, in
        one straight line; False, having done nothing, for any other.

        Plain means: HTTP/1 without a body, every header name lower-case and
        once only, printable ASCII throughout, within the size limits, not
        anonymous and not opted out. Everything else goes the general way,
        which gives the same answer and record for these too (tests check both).
        """
        raw_path: bytes | None = scope.get("raw_path")
        if scope.get("http_version", "") not in _HTTP1:
            return False
        headers = scope["headers"]
        scanned = scan_headers(
            headers if type(headers) is list else list(headers),
            False,
            self._proxy_header,
            self._cookie_name,
        )
        if scanned is None:
            return False
        plain = self._plain_line(
            scope["method"].encode("ascii"),
            scope["path"] if raw_path is None else raw_path,
            scope.get("query_string", b""),
            scanned,
            scope.get("client"),
        )
        if plain is None:
            return False
        line, record_id, now, userid, origin_sent, host = plain
        self._in_flight += 1
        try:
            written = await self._write(line, record_id, now)
            if not written:
                found = _RequestHeaders(scope["headers"])
                found.origin = origin_sent
                await self._answer_error(scope, send, "pixel", found, 503, _UNAVAILABLE)
                return True
            origin = origin_sent or b"*"
            answer = [*_PIXEL_ANSWER, (_ALLOW_ORIGIN, origin), *_CORS_TAIL]
            cookie = self._plain_cookie(
                userid, now, host, https=scope.get("scheme") == "https"
            )
            if cookie is not None:
                answer.append((b"set-cookie", cookie))
            self.metrics.count("pixel", 200)
            await send(
                {"type": "http.response.start", "status": 200, "headers": answer}
            )
            if scope["method"] == "HEAD":
                await send(_EMPTY_BODY)
            else:
                await send(_PIXEL_BODY)
        finally:
            self._in_flight -= 1
        return True

    def plain_pixel(
        self,
        method: bytes,
        raw_path: bytes,
        query: bytes,
        headers: Headers | ScannedHeaders,
        http_version: str,
        client: tuple[str, int] | None,
    ) -> tuple[bytes, bytes, bytes, bytes, str] | None:
        """A plain pixel request's raw-log line and answer, for the collector's
        own HTTP server (:mod:`plowline.collector.http1`), which asks before it
        builds an ASGI scope; None, having done nothing, for a request that is
        not one (see ``_plain_pixel``) or when the sink does not store at once
        (fsync durability, a stream).

        ``headers``: the request's header list, or what
        ``plainpath.scan_headers`` makes of it (the server's compiled reader,
        ``plainpath.read_plain``, gives that).

        Gives the line, the answer's head (status line and header lines,
        without the blank line that ends it), its body, the origin allowed
        (for :meth:`plain_unavailable`) and the metrics group. The server
        stores the lines of the requests it parsed in one turn of its loop
        together (:meth:`store_plain_records`), then answers each.
        """
        return self._plain_read(method, raw_path, query, headers, http_version, client)

    def plain_post(
        self,
        raw_path: bytes,
        query: bytes,
        headers: Headers | ScannedHeaders,
        http_version: str,
        client: tuple[str, int] | None,
        body: bytes,
    ) -> tuple[bytes, bytes, bytes, bytes, str] | None:
        """As :meth:`plain_pixel`, for a ``POST`` to a ``/vendor/version`` path
        whose whole body is at hand: plain headers (``Content-Length`` given,
        no ``Transfer-Encoding``), a body within the limit and UTF-8."""
        return self._plain_read(
            b"POST", raw_path, query, headers, http_version, client, body
        )

    def _plain_read(
        self,
        method: bytes,
        raw_path: bytes,
        query: bytes,
        headers: Headers | ScannedHeaders,
        http_version: str,
        client: tuple[str, int] | None,
        body: bytes | None = None,
    ) -> tuple[bytes, bytes, bytes, bytes, str] | None:
        """:meth:`plain_pixel` (``body`` None) or :meth:`plain_post`."""
        if self._store_now is None or http_version not in _HTTP1:
            return None
        if body is None:
            if raw_path not in _PIXEL_RAW_PATHS or method not in _BODILESS_METHODS:
                return None
            body_json = None
        else:
            if (
                not _plain_vendor_path(raw_path)
                or len(body) > self.config.max_body_bytes
            ):
                return None
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                return None  # kept as body_base64: the general way
            body_json = orjson.dumps(text) if body else b"null"
        if isinstance(headers, tuple):
            scanned: ScannedHeaders | None = headers
        else:
            scanned = scan_headers(
                headers, body is not None, self._proxy_header, self._cookie_name
            )
        if scanned is None:
            return None
        plain = self._plain_line(
            method, raw_path, query, scanned, client, body_json=body_json
        )
        if plain is None:
            return None
        line, _, now, userid, origin, host = plain
        if body is None:
            head, origin = self._plain_head(_PIXEL_WIRE, userid, now, origin, host)
            return line, head, b"" if method == b"HEAD" else PIXEL, origin, "pixel"
        self.metrics.received["body"] += len(body)
        head, origin = self._plain_head(_POST_WIRE, userid, now, origin, host)
        return line, head, b"ok", origin, "post"

    def _plain_head(
        self,
        wire: bytes,
        userid: str,
        now: float,
        origin_sent: bytes | None,
        host: bytes | None,
    ) -> tuple[bytes, bytes]:
        """The head of a plain request's answer (``wire`` up to the allowed
        origin's value, then the origin, the CORS tail and the cookie), and
        the origin."""
        origin = origin_sent or b"*"
        head = wire + origin + _CORS_TAIL_WIRE
        cookie = self._plain_cookie(userid, now, host, https=False)
        if cookie is not None:
            head += b"set-cookie: " + cookie + b"\r\n"
        return head, origin

    def _plain_cookie(
        self, userid: str, now: float, host: bytes | None, *, https: bool
    ) -> bytes | None:
        """The Set-Cookie value for a plain pixel request (``host``: its Host
        header), if cookies are on."""
        if not self.config.cookie_enabled:
            return None
        return self._cookies.header(
            userid,
            now,
            https=https,
            host=None if host is None else host.decode("ascii"),
        )

    def store_plain_records(
        self, records: list[tuple[bytes, bytes, bytes, bytes, str]]
    ) -> bool:
        """Store the lines :meth:`plain_pixel` and :meth:`plain_post` gave,
        with one write; False, with none of them stored, when they could not
        be."""
        store = self._store_now
        assert store is not None
        lines = [record[0] for record in records]
        count = len(lines)
        metrics = self.metrics
        try:
            if count == 1:
                store(lines[0], "")
            elif self._store_joined:
                store(b"".join(lines), "")
            else:
                # A pipe: only a write within its atomic size (4 KiB) cannot
                # interleave with another worker's.
                for line in lines:
                    store(line, "")
        except OSError as exc:
            metrics.write_errors += count
            self._report_write_failure(exc, self._clock(), count)
            for record in records:
                metrics.count(record[4], 503)
            return False
        metrics.records_written += count
        for record in records:
            metrics.count(record[4], 200)
        return True

    def plain_unavailable(self, origin: bytes, body: bool) -> tuple[bytes, bytes]:
        """The 503 answer to a plain request whose line was not stored."""
        head, text = _UNAVAILABLE_WIRE
        return head + origin + _CORS_TAIL_WIRE, text if body else b""

    def _plain_line(
        self,
        method: bytes,
        raw_path: bytes | str,
        query: bytes,
        scanned: ScannedHeaders,
        client: tuple[str, int] | None,
        *,
        body_json: bytes | None = None,
    ) -> tuple[bytes, str, float, str, bytes | None, bytes | None] | None:
        """The raw-log line of a plain request (see ``_plain_pixel``) whose
        headers ``scanned`` holds, with its record id, time, network user id,
        and its Origin and Host headers; None for a request that is not plain.
        Counts the bytes received.

        The line is put together from the request's bytes, which is why only
        printable ASCII qualifies: such bytes stand for themselves in JSON but
        for the quote and the backslash, which are escaped. It is the line
        :func:`plowline.collector.lines.encode_line` writes (tests check).
        """
        (
            headers_json,
            size,
            cookie,
            host,
            origin,
            forwarded,
            agent_json,
            referer_json,
            host_json,
            content_type_json,
            sent_userid,
        ) = scanned
        path = (
            raw_path.encode("utf-8", "surrogateescape")
            if isinstance(raw_path, str)
            else raw_path.partition(b"?")[0]
        )
        if query.translate(None, _VERBATIM) or path.translate(None, _VERBATIM):
            return None
        config = self.config
        if len(query) > config.max_querystring_bytes or size > config.max_header_bytes:
            return None
        cookies = [cookie] if cookie is not None else []
        if self._do_not_track is not None and self._do_not_track.matches(cookies):
            return None

        now = self._clock()
        userid = None
        if query.find(b"nuid") >= 0:
            userid = _usable_id(_query_value(query, b"nuid"))
        if userid is None and sent_userid is not None:
            userid = _usable_id(sent_userid)
        if userid is None:
            userid = self._ids.next()
        if self._proxy_header:
            peer = str(client[0]) if client else None
            proxies = [forwarded] if forwarded is not None else []
            resolved = self._client_address.resolve(peer, proxies)
            ip = orjson.dumps(resolved)
        elif client:
            ip = _ip_json(client[0])
        else:
            ip = b"null"
        record_id = self._ids.next()
        line = b"".join(
            (
                _LINE_START,
                record_id.encode("ascii"),
                b'","tstamp":',
                b"%d" % int(now * 1000),
                self._collector_json,
                method,
                b'","path":"',
                path,
                b'","querystring":"' if query else b'","querystring":null',
                query,
                b'","body":' if query else b',"body":',
                b"null" if body_json is None else body_json,
                b',"content_type":',
                content_type_json,
                b',"headers":',
                headers_json,
                b',"ip":',
                ip,
                b',"useragent":',
                agent_json,
                b',"referer":',
                referer_json,
                b',"host":',
                host_json,
                b',"network_userid":"',
                userid.encode("ascii"),
                b'"}\n',
            )
        )
        received = self.metrics.received
        received["querystring"] += len(query)
        received["headers"] += size
        return line, record_id, now, userid, origin, host

    async def keep_unparsed(
        self, data: bytes, reason: str, client: tuple[str, int] | None
    ) -> None:
        """Record bytes that the HTTP server could not parse as a request.

        The record has no method, path or headers; its body holds the start of
        the bytes (up to SNIPPET_BYTES) and its ``error`` the parser's reason,
        so enrichment reports it as a collector-payload-format failure.
        """
        now = self._clock()
        record_id = self._ids.next()
        line = encode_line(
            record_id,
            int(now * 1000),
            self._collector,
            "",
            "",
            b"",
            data[:SNIPPET_BYTES],
            None,
            [],
            str(client[0]) if client else None,
            None,
            None,
            None,
            self._ids.next(),
            f"unparsable_request: {reason}",
        )
        self.metrics.received["body"] += len(data)
        self._in_flight += 1
        try:
            await self._write(line, record_id, now)
        finally:
            self._in_flight -= 1
        self.metrics.count("other", 400)

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
        accept = next(
            (v for k, v in scope["headers"] if k.lower() == b"accept-encoding"), None
        )
        if script.not_modified(if_none_match):
            await self._send(send, "other", 304, script.not_modified_headers, b"")
        elif script.accepts_gzip(accept):
            await self._send(
                send, "other", 200, script.gzipped_headers, script.gzipped, head=head
            )
        else:
            await self._send(send, "other", 200, script.headers, script.body, head=head)

    async def _track(
        self, scope: Scope, receive: Receive, send: Send, kind: str
    ) -> None:
        """Record a tracking request, then answer it."""
        self._in_flight += 1
        try:
            found = _read_headers(scope["headers"], self._proxy_header)
            query: bytes = scope.get("query_string", b"")
            if (
                found.may_have_body
                or kind == "post"
                or scope.get("http_version") not in _HTTP1
            ):
                body = await _read_body(receive, self.config.max_body_bytes)
            else:
                body = _NO_BODY

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
                record_id = self._ids.next()
                line = self._line(
                    record_id, scope, found, query, body.data, now, userid, refusal
                )
                written = await self._write(line, record_id, now)
            else:
                # Do not track: nothing recorded, no cookie set, the usual answer.
                self.metrics.do_not_track += 1
                written = True

            if not written:
                await self._answer_error(scope, send, kind, found, 503, _UNAVAILABLE)
            elif refusal is not None:
                answer = self._answer_error(
                    scope,
                    send,
                    kind,
                    found,
                    refusal.status,
                    _text_response(refusal.text),
                )
                if body.broken:
                    with suppress(Exception):  # the client may be gone already
                        await answer
                else:
                    await answer
            else:
                cookie = tracked and self.config.cookie_enabled and not found.anonymous
                await self._answer(scope, send, kind, found, now, userid, cookie=cookie)
        finally:
            self._in_flight -= 1

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
        return self._ids.next()

    def _line(
        self,
        record_id: str,
        scope: Scope,
        found: _RequestHeaders,
        query: bytes,
        body: bytes,
        now: float,
        userid: str,
        refusal: _Refusal | None,
    ) -> bytes:
        """The request's raw-log line (docs/raw-log.md)."""
        client = scope.get("client")
        peer = str(client[0]) if client else None
        forwarded = found.forwarded
        ip = None if found.anonymous else self._client_address.resolve(peer, forwarded)
        headers: list[tuple[str, str]] | orjson.Fragment
        headers = found.pairs if found.json is None else orjson.Fragment(found.json)
        path, content_type = _raw_path(scope), found.content_type
        useragent, referer, host = found.useragent, found.referer, found.host
        error = None
        if refusal is not None:
            error = refusal.error
            if error.startswith("size_violation"):
                # Only the start of each part: the record must stay writable.
                query, body = query[:SNIPPET_BYTES], body[:SNIPPET_BYTES]
                headers = _cut_headers(found.pairs)
                path, content_type = _cut(path) or "", _cut(content_type)
                useragent, referer, host = _cut(useragent), _cut(referer), _cut(host)
        return encode_line(
            record_id,
            int(now * 1000),
            self._collector,
            scope["method"],
            path,
            query,
            body,
            content_type,
            headers,
            ip,
            useragent,
            referer,
            host,
            userid,
            error,
        )

    async def _write(self, line: bytes, record_id: str, now: float) -> bool:
        try:
            pending = self._store(line, record_id)
            if pending is not None:
                await pending
        except OSError as exc:
            self.metrics.write_errors += 1
            self._report_write_failure(exc, now)
            return False
        self.metrics.records_written += 1
        return True

    def _report_write_failure(self, exc: OSError, now: float, count: int = 1) -> None:
        # One line per interval: a full disk must not also flood the log.
        self._failures_unlogged += count
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
            head_part: Headers = [(b"location", decision.location), *_REDIRECT_HEADERS]
            tail: Headers = _CORS_TAIL
        else:
            status = 200
            head_part, tail, body = _ANSWERS[kind]
        origin: Headers = [(_ALLOW_ORIGIN, found.origin or b"*")]
        if cookie:
            https = scope.get("scheme") == "https"
            value = self._cookies.header(userid, now, https=https, host=found.host)
            headers = head_part + origin + tail + [(b"set-cookie", value)]
        else:
            headers = head_part + origin + tail
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
