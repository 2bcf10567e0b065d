"""The collector's HTTP/1.1 server: llhttp (through httptools) on an asyncio
event loop, running the collector's ASGI application.

Why not granian any more: its ASGI hand-over alone cost more server CPU per
request than nginx spends on the whole request (docs/benchmarks.md), and it
refused on its own, unrecorded, requests the collector is there to keep (a
target over 65,534 bytes, more than 100 header lines, raw UTF-8 in the
target). This server hands the application the request exactly as parsed. A
plain pixel request goes to ``CollectorApp.plain_pixel`` without ASGI, and the
raw-log lines of those parsed in one turn of the event loop are written
together before they are answered (``ServerState.flush_plain``). Where the C
module is built, such a request at the start of a read is not given to llhttp
at all: ``plainpath.read_plain`` reads it, and the headers come to the
application already scanned (``HttpConnection._straight``). Any other
request runs the application's coroutine straight from the parser callback,
made a task only when it really waits (a body still arriving, an fsync, a
stream). Each answer goes out in one ``write``.

What it does: HTTP/1.0 and 1.1, keep-alive and pipelining (answers in order),
``Content-Length`` and chunked bodies, back-pressure both ways, ``Expect:
100-continue``, limits on the head, trailers and chunk framing, timeouts for
idle connections and slow requests, bytes that cannot be parsed handed to the
application to be recorded (``keep_unparsed``), and a graceful stop: no new
connections, idle ones closed, requests in progress finished, then the
application's lifespan shutdown.
What it leaves out: TLS (put a proxy in front), HTTP/2, upgrades (an upgrade
request is answered as an ordinary one and its connection closed).
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import unquote

import httptools

from plowline.collector.plainpath import ScannedHeaders, read_plain

logger = logging.getLogger(__name__)

Message = dict[str, Any]
# An ASGI 3 application: app(scope, receive, send).
App = Callable[..., Coroutine[Any, Any, None]]
KeepUnparsed = Callable[
    [bytes, str, "tuple[str, int] | None"], Coroutine[Any, Any, None]
]
# What CollectorApp.plain_pixel and plain_post give for a plain request: its
# raw-log line, its answer's head (status line and headers, without the blank
# line), the answer's body, the origin allowed (for the 503 answer instead),
# and its metrics group.
PlainRecord = tuple[bytes, bytes, bytes, bytes, str]
# Their headers: the list, or what plainpath.scan_headers makes of it.
PlainHeaders = list[tuple[bytes, bytes]] | ScannedHeaders
PlainPost = Callable[
    [bytes, bytes, PlainHeaders, str, "tuple[str, int] | None", bytes],
    "PlainRecord | None",
]
PlainPixel = Callable[
    [bytes, bytes, bytes, PlainHeaders, str, "tuple[str, int] | None"],
    "PlainRecord | None",
]

# The whole head (request line and header lines) may not exceed this many bytes
# nor this many header lines; past them the server answers on its own (431 or
# 414) and closes. The application's own, lower limits record what they refuse.
DEFAULT_HEAD_LIMIT = 1024 * 1024
DEFAULT_HEADER_LINES_LIMIT = 2000
# A connection with no request in progress is closed after this many seconds.
DEFAULT_KEEPALIVE_TIMEOUT = 75.0
# A request must have arrived whole this many seconds after its first byte.
DEFAULT_REQUEST_TIMEOUT = 60.0
# Reading stops while this much of a body waits for the application.
_BODY_HIGH_WATER = 256 * 1024
_SWEEP_INTERVAL = 1.0
# How much of a request that cannot be parsed is kept in its record.
UNPARSED_BYTES = 64 * 1024

_REASONS = {
    100: b"Continue",
    200: b"OK",
    204: b"No Content",
    301: b"Moved Permanently",
    302: b"Found",
    304: b"Not Modified",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
_STATUS_LINES: dict[int, bytes] = {}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"
_CRLF = b"\r\n"
_SEP = b": "
_EMPTY_BODY: Message = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT: Message = {"type": "http.disconnect"}
_ASGI = {"version": "3.0", "spec_version": "2.3"}
# Bytes above 0x7f become X in a request line given to the parser.
_MASK_HIGH = bytes.maketrans(bytes(range(0x80, 0x100)), b"X" * 0x80)


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        reason = _REASONS.get(status, b"")
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        _STATUS_LINES[status] = line
    return line


def _text_head(status: int, body: bytes) -> bytes:
    """The status line and headers of a plain-text answer of the server's own,
    without the connection and date headers."""
    return b"".join(
        (
            status_line(status),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
        )
    )


def plain_answer(status: int, text: str, *, date: bytes = b"") -> bytes:
    """A whole answer of the server's own, closing the connection."""
    body = text.encode("utf-8")
    return b"".join((_text_head(status, body), date, _CLOSE, _CRLF, body))


# The answer to plain requests whose batch failed in an unexpected way.
_FAILED_BODY = b"internal server error"
_FAILED_HEAD = _text_head(500, _FAILED_BODY)


class _Refused(Exception):
    """Raised inside a parser callback: the request is answered by the server."""

    def __init__(self, status: int, text: str, *, keep: bool = False) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        # Whether the bytes read are handed to the application to be recorded.
        self.keep = keep


@types.coroutine
def _resume(
    coro: Coroutine[Any, Any, None], waiting_on: Any
) -> Generator[Any, Any, None]:
    """Go on running ``coro`` inside a task, from the await it stopped at.

    ``coro`` was started by hand (``send(None)``) and yielded ``waiting_on``,
    the future it waits for; the task waits for that same future, then resumes
    the coroutine, passing on anything thrown in (cancellation).
    """
    pending = waiting_on
    while True:
        error: BaseException | None = None
        try:
            yield pending
        except BaseException as exc:
            error = exc
        try:
            pending = coro.send(None) if error is None else coro.throw(error)
        except StopIteration:
            return


class ServerState:
    """What the connections of one worker share: the application, limits,
    the cached ``date`` header and the set of open connections."""

    def __init__(
        self,
        app: App,
        loop: asyncio.AbstractEventLoop,
        *,
        head_limit: int = DEFAULT_HEAD_LIMIT,
        header_lines_limit: int = DEFAULT_HEADER_LINES_LIMIT,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        self.app = app
        self.loop = loop
        self.head_limit = head_limit
        self.header_lines_limit = header_lines_limit
        self.keepalive_timeout = keepalive_timeout
        self.request_timeout = request_timeout
        self.connections: set[HttpConnection] = set()
        # The application's own way for a plain pixel request, if it has one
        # (CollectorApp.plain_pixel): it gives the request's raw-log line and
        # answer, or None to be asked the ASGI way; the lines are stored in
        # batches (flush_plain).
        self.plain_pixel: PlainPixel | None = getattr(app, "plain_pixel", None)
        self.plain_post: PlainPost | None = getattr(app, "plain_post", None)
        self._store_plain: Callable[[list[PlainRecord]], bool] | None = getattr(
            app, "store_plain_records", None
        )
        self._unavailable: Callable[[bytes, bool], tuple[bytes, bytes]] | None = (
            getattr(app, "plain_unavailable", None)
        )
        if self._store_plain is None or self._unavailable is None:
            self.plain_pixel = self.plain_post = None
        # Plain requests read without llhttp when the C module is built
        # (plainpath.read_plain), looking for these headers.
        keys: tuple[bytes, bytes] | None = getattr(app, "plain_header_keys", None)
        self.read_plain = (
            read_plain if self.plain_pixel is not None and keys is not None else None
        )
        self.plain_keys = keys or (b"", b"")
        self.plain_batch: list[tuple[HttpConnection, PlainRecord]] = []
        # And its way to record the bytes of a request that could not be parsed
        # (CollectorApp.keep_unparsed), if it has one.
        self.keep_unparsed: KeepUnparsed | None = getattr(app, "keep_unparsed", None)
        self.stopping = False
        self.date = b""
        self._sweeper: asyncio.TimerHandle | None = None
        self._tick()

    def _tick(self) -> None:
        # The date header changes once a second; so does the timeout check.
        self.date = b"date: %s\r\n" % formatdate(usegmt=True).encode("ascii")
        now = self.loop.time()
        for connection in list(self.connections):
            connection.check_timeout(now)
        self._sweeper = self.loop.call_later(_SWEEP_INTERVAL, self._tick)

    def flush_plain(self) -> None:
        """Store the plain pixel requests parsed since the last flush with one
        write, then answer each (called once per turn of the event loop)."""
        batch, self.plain_batch = self.plain_batch, []
        store, unavailable = self._store_plain, self._unavailable
        if not batch or store is None or unavailable is None:
            return
        try:
            stored = store([record for _, record in batch])
        except Exception:
            logger.exception("The collector failed to store %d record(s)", len(batch))
            for connection, _ in batch:
                connection.plain_wait.keep_alive = False
                connection.answer_plain(_FAILED_HEAD, _FAILED_BODY)
            return
        for connection, (_, head, body, origin, _) in batch:
            if not stored:
                head, body = unavailable(origin, bool(body))
            try:
                connection.answer_plain(head, body)
            except Exception:
                logger.exception("The collector failed to answer %s", connection.client)
                connection.abort()

    def protocol(self) -> HttpConnection:
        return HttpConnection(self)

    def stop_accepting(self) -> None:
        """Close idle connections; the others close after their answer."""
        self.stopping = True
        for connection in list(self.connections):
            connection.close_when_idle()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self.connections):
            connection.abort()


class _Exchange:
    """One request and its answer: the ASGI ``receive`` and ``send``."""

    __slots__ = (
        "begun",
        "broken",
        "buffered",
        "chunked",
        "chunks",
        "complete",
        "connection",
        "expect_continue",
        "finished",
        "head",
        "head_request",
        "keep_alive",
        "scope",
        "started",
        "waiter",
    )

    def __init__(self, connection: HttpConnection, scope: dict[str, Any]) -> None:
        self.connection = connection
        self.scope = scope
        self.keep_alive = True
        self.expect_continue = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.complete = False
        self.waiter: asyncio.Future[None] | None = None
        self.started = False
        self.finished = False
        self.head = b""
        self.chunked = False
        self.head_request = scope["method"] == "HEAD"
        self.begun = False
        self.broken = False

    # --- the request body -------------------------------------------------

    def add_body(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _BODY_HIGH_WATER:
            self.connection.pause()
        self._wake()

    def end_body(self) -> None:
        self.complete = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def receive(self) -> Message:
        connection = self.connection
        if self.expect_continue and not self.started:
            self.expect_continue = False
            if not self.chunks and not self.complete:
                # Only while the client still waits: a body on its way is not.
                connection.write(_CONTINUE)
        while not self.chunks and not self.complete:
            if connection.lost or self.broken:
                return _DISCONNECT
            if self.finished:
                return _DISCONNECT
            waiter = connection.state.loop.create_future()
            self.waiter = waiter
            connection.resume()
            await waiter
        if self.chunks:
            body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            self.chunks = []
            self.buffered = 0
            connection.resume()
            return {
                "type": "http.request",
                "body": body,
                "more_body": not self.complete,
            }
        if self.finished or connection.lost:
            return _DISCONNECT
        return _EMPTY_BODY

    # --- the answer -------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("The answer was already started.")
            self.started = True
            self.head = self._head(message["status"], message.get("headers", ()))
        elif kind == "http.response.body":
            if not self.started or self.finished:
                raise RuntimeError("A body was sent outside an answer.")
            body: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            if self.head_request:
                body = b""
            elif self.chunked and body:
                body = b"%x\r\n%s\r\n" % (len(body), body)
            if not more:
                self.finished = True
                if self.chunked and not self.head_request:
                    body += b"0\r\n\r\n"
            if self.head:
                body = self.head + body
                self.head = b""
            if body:
                self.connection.write(body)
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r}.")

    def _head(self, status: int, headers: Any) -> bytes:
        parts = [status_line(status)]
        append = parts.append
        has_length = False
        for name, value in headers:
            if name == b"content-length":
                has_length = True
            append(name)
            append(_SEP)
            append(value)
            append(_CRLF)
        if not has_length and status >= 200 and status not in (204, 304):
            if self.scope["http_version"] == "1.1":
                append(b"transfer-encoding: chunked\r\n")
                self.chunked = True
            else:
                # No way to mark the end of an HTTP/1.0 body but closing.
                self.keep_alive = False
        connection = self.connection
        if not self.complete or connection.state.stopping:
            # A body not read to its end cannot be skipped to the next request.
            self.keep_alive = False
        if not self.keep_alive:
            append(_CLOSE)
        elif self.scope["http_version"] == "1.0":
            append(_KEEP_ALIVE)
        append(connection.state.date)
        append(_CRLF)
        return b"".join(parts)


class _PlainWait:
    """What a connection is busy with while its plain pixel request waits for
    its batch to be written (ServerState.flush_plain)."""

    __slots__ = ("buffered", "keep_alive", "version")

    def __init__(self) -> None:
        self.keep_alive = True
        self.version = "1.1"
        self.buffered = 0

    def _wake(self) -> None:
        return None


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests and runs one exchange at a time."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.lost = False
        self.paused = False
        self.closing = False
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        # The request being parsed, and what has come of it so far.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.in_head = False
        # The request being parsed began in the read being parsed.
        self.begun_here = False
        # Bytes of the current request's body phase that were not body (chunk
        # framing, trailers), and the body bytes of the read being parsed.
        self.framing_bytes = 0
        self.body_in_read = 0
        self.trailer_lines = 0
        # The reads of the current request's incomplete head, for the record
        # of a request that cannot be parsed (up to UNPARSED_BYTES).
        self.carry = b""
        # No request begun since the last one ended; a request line not ended
        # yet (its bytes so far, whether any is above 0x7f); and that line as
        # given to the parser, masked, with its own bytes (_watch_line).
        self.between = True
        self.line_open = False
        self.line_seen = b""
        self.line_high = False
        self.masked: tuple[bytes, bytes] | None = None
        # The head of the request being parsed is complete, its message not.
        self.after_head = False
        self.reading: _Exchange | None = None
        self.receiving_since: float | None = None
        # The exchange the application runs, and parsed ones waiting their turn.
        self.running: _Exchange | _PlainWait | None = None
        self.queued: deque[_Exchange] = deque()
        self.idle_since = state.loop.time()
        self.plain_wait = _PlainWait()
        # The client sent its last byte, or a request could not be parsed: no
        # request after those in hand. ``refusal`` is the answer owed last.
        self.eof = False
        self.refusal = b""
        self.write_paused = False
        # Set while _next runs queued requests, so that those answered at once
        # do not start the next ones from deeper in the stack.
        self.advancing = False
        # The straight way declined the request llhttp is reading (_straight).
        self.declined = False

    # --- connection events ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple) and len(local) >= 2:
            self.server = (str(local[0]), int(local[1]))
        self.state.connections.add(self)
        if self.state.stopping:
            self.close_when_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.state.connections.discard(self)
        for exchange in (self.running, self.reading, *self.queued):
            if exchange is not None:
                exchange._wake()

    def data_received(self, data: bytes) -> None:
        if self.refusal or self.lost:
            return  # nothing after a request that could not be parsed
        if (
            self.between
            and self.running is None
            and not self.line_open
            and not self.eof
            and self.state.read_plain is not None
        ):
            data = self._straight(data)
            if not data:
                return
        received = data
        if self.line_open or (
            self.between and (not data.isascii() or data.find(b"\n") < 0)
        ):
            data = self._watch_line(data)
        self.begun_here = False
        self.body_in_read = 0
        try:
            self.parser.feed_data(data)
            if self.after_head:
                if not self.begun_here:
                    self._count_framing(len(data))
                # A body still to come, in later reads: the request starts now.
                reading = self.reading
                if reading is None:
                    reading = self.reading = self._body_exchange()
                if not reading.begun:
                    self._start(reading)
            if self.in_head:
                self._count_head(received)
        except httptools.HttpParserUpgrade:
            # Not upgraded: the request is answered, then the connection closed.
            self._end_after_answers()
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                kept = received if self.begun_here else self.carry + received
                unparsed = kept[:UNPARSED_BYTES] if refused.keep else b""
                self._refuse(refused.status, refused.text, unparsed)
            else:
                logger.exception("The collector's HTTP server failed on a request")
                self._refuse(500, "internal server error")
        except httptools.HttpParserError as exc:
            reason = str(exc) or type(exc).__name__
            if reason.startswith("Data after"):
                # Bytes after a request that closes the connection: ignored.
                self._end_after_answers()
                return
            unparsed = received if self.begun_here else self.carry + received
            self._refuse(
                400, f"malformed HTTP request: {reason}", unparsed[:UNPARSED_BYTES]
            )

    def _straight(self, data: bytes) -> bytes:
        """Take a plain request at the start of ``data`` the collector's
        straight way, without llhttp (``plainpath.read_plain``); give back the
        bytes llhttp is to read: those after it, or all of ``data`` when it
        does not start with such a request or the application turns it down.
        """
        state = self.state
        assert state.read_plain is not None
        proxy, cookie = state.plain_keys
        read = state.read_plain(data, state.header_lines_limit, proxy, cookie)
        if read is None:
            return data
        used, method, target, version, keep_alive, body, scanned = read
        raw_path, _, query = target.partition(b"?")
        if body is None:
            plain = state.plain_pixel
            if plain is None:
                return data
            record = plain(method, raw_path, query, scanned, version, self.client)
        else:
            post = state.plain_post
            if post is None:
                return data
            record = post(raw_path, query, scanned, version, self.client, body)
        if record is None:
            # Nothing done: llhttp reads it, and it goes the ASGI way without
            # the application being asked again.
            self.declined = True
            return data
        self._wait_for_batch(record, keep_alive, version)
        if not keep_alive:
            # Bytes after a request that closes the connection are ignored,
            # as llhttp ignores them.
            self._end_after_answers()
            return b""
        return data[used:]

    def _count_head(self, received: bytes) -> None:
        """After a read that left a head incomplete: keep its bytes for a
        record, and refuse a head over the limit (the read it began in is not
        counted: it may hold earlier requests)."""
        if self.begun_here:
            self.carry = received[:UNPARSED_BYTES]
        else:
            self.head_bytes += len(received)
            if len(self.carry) < UNPARSED_BYTES:
                self.carry += received[: UNPARSED_BYTES - len(self.carry)]
        limit = self.state.head_limit
        if self.head_bytes > limit:
            what = "request head" if self.headers else "request line"
            self._refuse(
                414 if not self.headers else 431,
                f"{what} over {limit} bytes, the server's own limit",
            )

    def _count_framing(self, size: int) -> None:
        # Chunk sizes, extensions and trailers: as much as a head, no more.
        self.framing_bytes += size - self.body_in_read
        limit = self.state.head_limit
        if self.framing_bytes > limit:
            self._refuse(431, f"chunk framing or trailers over {limit} bytes")

    def _end_after_answers(self) -> None:
        """Read nothing more; close once the requests in hand are answered."""
        self.eof = True
        self.pause()
        # An upgrade request itself is answered with connection: close
        # (_exchange, on_message_complete); those before it as usual.
        if self.running is None and not self.queued:
            self._close()

    def pause_writing(self) -> None:
        # The client does not read its answers: read no more requests.
        self.write_paused = True
        self.pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.resume()

    def _watch_line(self, data: bytes) -> bytes:
        """``data`` with the bytes above 0x7f of a request line replaced by
        ``X``, which the parser accepts, for the request line that starts this
        read or goes on from the last one.

        llhttp refuses such bytes in a request target, but clients send raw
        UTF-8 there and the collector keeps requests as received: the parsed
        target is given its own bytes back (``_unmask_target``). A request
        line that follows, in the same read, another request that llhttp
        reads is not masked: its raw bytes above 0x7f get the parser's 400.
        """
        # Line ends before a request line are skipped, also when a read ended
        # in one (a request line still open with nothing of it seen yet).
        if self.line_open and self.line_seen:
            start = 0
        else:
            start = len(data) - len(data.lstrip(b"\r\n"))
        end = data.find(b"\n", start)
        if end < 0:
            end = len(data)
        piece = data[start:end]
        self.line_open = end == len(data)
        high = not piece.isascii()
        if self.line_open or self.line_seen:
            self.line_seen += piece
        if high:
            self.line_high = True
        if self.line_high:
            line = self.line_seen or piece
            self.masked = (line.translate(_MASK_HIGH), line)
        if not self.line_open:
            self.line_seen = b""
            self.line_high = False
        if not high:
            return data
        return data[:start] + piece.translate(_MASK_HIGH) + data[end:]

    def _unmask_target(self, masked: bytes, line: bytes) -> None:
        self.masked = None
        url = self.url
        at = masked.find(b" ") + 1
        seen = url[: len(masked) - at]
        if at and masked[at : at + len(seen)] == seen:
            self.url = line[at : at + len(seen)] + url[len(seen) :]

    def eof_received(self) -> bool | None:
        # The client will send nothing more; answers already due still go out.
        self.eof = True
        if self.reading is not None or self.after_head:
            self._broken_body("the client ended the connection inside the body")
            return True
        if self.running is None and not self.queued:
            return None  # closes the transport
        return True

    # --- parser callbacks ----------------------------------------------------

    def on_message_begin(self) -> None:
        self.between = False
        self.begun_here = True
        self.url = b""
        self.headers = []
        self.in_head = True
        self.head_bytes = 0
        self.framing_bytes = 0
        self.trailer_lines = 0
        self.receiving_since = self.state.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_head:
            self.headers.append((name.lower(), value))
            return
        # A trailer field, after a chunked body: counted, never recorded.
        self.trailer_lines += 1
        if self.trailer_lines > self.state.header_lines_limit:
            raise _Refused(431, "too many trailer fields")

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.carry = b""
        if self.masked is not None:
            self._unmask_target(*self.masked)
        limit = self.state.header_lines_limit
        if len(self.headers) > limit:
            raise _Refused(
                431, f"more than {limit} header lines, the server's own limit"
            )
        if self.head_bytes:  # a head that came in several reads
            refused = self._head_over_limit()
            if refused is not None:
                raise refused
        if self.parser.should_upgrade() and self._declares_body():
            # The parser would take the body for the new protocol's bytes and
            # drop it: refused, and recorded with the bytes read.
            raise _Refused(
                400,
                "an Upgrade request with a body is not supported; send it "
                "without Connection: upgrade",
                keep=True,
            )
        # What comes next tells whether there is a body: the parser's
        # on_message_complete at once (none), or on_body (started once the
        # body is complete, or at the end of this read if it is not, so that
        # a body that came whole is read without waiting).
        self.after_head = True

    def _declares_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return True
            if name == b"content-length" and value.strip() not in (b"", b"0"):
                return True
        return False

    def on_body(self, body: bytes) -> None:
        self.body_in_read += len(body)
        exchange = self.reading
        if exchange is None:
            exchange = self.reading = self._body_exchange()
        if not exchange.finished:
            exchange.add_body(body)

    def _body_exchange(self) -> _Exchange:
        """The exchange of a request whose body is to come."""
        exchange = self._exchange()
        if exchange.scope["http_version"] == "1.1":
            for name, value in self.headers:
                if name == b"expect" and value.lower() == b"100-continue":
                    exchange.expect_continue = True
        return exchange

    def on_message_complete(self) -> None:
        exchange = self.reading
        self.receiving_since = None
        self.between = True
        self.after_head = False
        declined, self.declined = self.declined, False
        if exchange is not None:
            self.reading = None
            exchange.end_body()
            if not exchange.begun and (declined or not self._post_plain(exchange)):
                self._start(exchange)
            return
        # No body. The collector's own straight way for a plain pixel request,
        # when nothing else is being answered on this connection.
        url = self.url
        state = self.state
        plain = state.plain_pixel
        if (
            plain is not None
            and not declined
            and self.running is None
            and url[:1] == b"/"
        ):
            parser = self.parser
            raw_path, _, query = url.partition(b"?")
            version = parser.get_http_version()
            record = plain(
                parser.get_method(), raw_path, query, self.headers, version, self.client
            )
            if record is not None:
                keep_alive = parser.should_keep_alive() and not parser.should_upgrade()
                self._wait_for_batch(record, keep_alive, version)
                return
        exchange = self._exchange()
        exchange.complete = True
        self._start(exchange)

    def _post_plain(self, exchange: _Exchange) -> bool:
        """Take the collector's straight way for a POST whose whole body came
        in this read, if it is plain (CollectorApp.plain_post)."""
        state = self.state
        plain = state.plain_post
        scope = exchange.scope
        if plain is None or self.running is not None or scope["method"] != "POST":
            return False
        chunks = exchange.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        record = plain(
            scope["raw_path"],
            scope["query_string"],
            scope["headers"],
            scope["http_version"],
            self.client,
            body,
        )
        if record is None:
            return False
        self._wait_for_batch(record, exchange.keep_alive, scope["http_version"])
        return True

    def _wait_for_batch(
        self, record: PlainRecord, keep_alive: bool, version: str
    ) -> None:
        # Busy until the batch's records are written and it is answered.
        wait = self.running = self.plain_wait
        wait.keep_alive = keep_alive
        wait.version = version
        state = self.state
        if not state.plain_batch:
            state.loop.call_soon(state.flush_plain)
        state.plain_batch.append((self, record))

    def _exchange(self) -> _Exchange:
        """The ASGI exchange of the request just parsed."""
        parser = self.parser
        url = self.url
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
        elif b"://" in url:
            # Absolute form (through a proxy): the path and query of the URL.
            rest = url.partition(b"://")[2]
            slash = rest.find(b"/")
            question = rest.find(b"?")
            if slash < 0 or 0 <= question < slash:
                rest = b"/" + rest[question:] if question >= 0 else b"/"
            else:
                rest = rest[slash:]
            raw_path, _, query = rest.partition(b"?")
        else:
            raw_path, query = url, b""  # "*", or an authority
        if b"%" in raw_path:
            path = unquote(raw_path.decode("latin-1"), "utf-8", "surrogateescape")
        else:
            path = raw_path.decode("utf-8", "surrogateescape")
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": parser.get_http_version(),
            "server": self.server,
            "client": self.client,
            "scheme": "http",
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
        }
        exchange = _Exchange(self, scope)
        if not parser.should_keep_alive() or parser.should_upgrade():
            exchange.keep_alive = False  # not upgraded: closed after the answer
        return exchange

    def answer_plain(self, head: bytes, body: bytes) -> None:
        """Send the answer of the plain pixel request this connection waits on."""
        state = self.state
        wait = self.plain_wait
        keep_alive = wait.keep_alive and not state.stopping
        if not keep_alive:
            connection = _CLOSE
        elif wait.version == "1.0":
            connection = _KEEP_ALIVE
        else:
            connection = b""
        self.write(b"".join((head, connection, state.date, _CRLF, body)))
        self.running = None
        self._next(keep_alive)

    def _start(self, exchange: _Exchange) -> None:
        exchange.begun = True
        if self.running is None:
            self._run(exchange)
        else:
            self.queued.append(exchange)
            self.pause()

    # --- running the application ---------------------------------------------

    def _run(self, exchange: _Exchange) -> None:
        self.running = exchange
        coro = self.state.app(exchange.scope, exchange.receive, exchange.send)
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            self._done(exchange, None)
            return
        except BaseException as exc:
            self._done(exchange, exc)
            return
        task = self.state.loop.create_task(_resume(coro, waiting_on))
        task.add_done_callback(lambda done: self._task_done(exchange, done))

    def _task_done(self, exchange: _Exchange, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        self._done(exchange, error)

    def _done(self, exchange: _Exchange, error: BaseException | None) -> None:
        if error is not None:
            logger.error(
                "The collector failed on %s %s",
                exchange.scope["method"],
                exchange.scope["raw_path"][:200].decode("latin-1"),
                exc_info=error,
            )
        if not exchange.finished:
            if not exchange.started and not self.lost:
                self.write(
                    plain_answer(500, "internal server error", date=self.state.date)
                )
            exchange.keep_alive = False
            exchange.finished = True
        self.running = None
        self._next(exchange.keep_alive)

    def _next(self, keep_alive: bool) -> None:
        """After an answer: the next request waiting, or the close that is due."""
        if self.lost:
            return
        if not keep_alive or ((self.closing or self.eof) and not self.queued):
            if self.refusal:
                self.write(self.refusal)
            self._close()
            return
        self.idle_since = self.state.loop.time()
        if self.advancing:
            return  # the loop below, further up the stack, goes on
        self.advancing = True
        try:
            while self.queued and self.running is None and not self.lost:
                self._run(self.queued.popleft())
        finally:
            self.advancing = False
        if self.running is None and not self.queued:
            self.resume()

    # --- flow and closing ----------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.lost and self.transport is not None:
            self.transport.write(data)

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.lost:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if (
            self.paused
            and not self.queued
            and not self.lost
            and not self.write_paused
            and self.transport is not None
            and (self.running is None or self.running.buffered <= _BODY_HIGH_WATER)
        ):
            self.paused = False
            self.transport.resume_reading()

    def _head_over_limit(self) -> _Refused | None:
        """Why the head parsed so far is refused, if it is over the limit."""
        limit = self.state.head_limit
        size = len(self.url)
        if size > limit:
            return _Refused(
                414, f"request line over {limit} bytes, the server's own limit"
            )
        size += sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > limit:
            return _Refused(
                431, f"request head over {limit} bytes, the server's own limit"
            )
        return None

    def _refuse(self, status: int, text: str, unparsed: bytes = b"") -> None:
        """Answer a request the server cannot hand to the application, and close.

        ``unparsed``: the read the parser gave up on, handed to the
        application's ``keep_unparsed`` (if it has one) to be recorded.
        """
        if self.reading is not None or self.after_head:
            self._broken_body(text)
            return
        self.receiving_since = None
        logger.info("Refused a request from %s: %s", self.client, text)
        answer = plain_answer(status, text, date=self.state.date)
        keep = self.state.keep_unparsed
        if unparsed and keep is not None:
            # Answered once the bytes are kept (or could not be).
            self.refusal = answer
            self.eof = True
            self.pause()
            task = self.state.loop.create_task(keep(unparsed, text, self.client))
            task.add_done_callback(self._kept)
            return
        if self.running is not None or self.queued:
            # Earlier requests are still being answered: theirs go first.
            self.refusal = answer
            self.eof = True
            self.pause()
            return
        self.write(answer)
        self._close()

    def _broken_body(self, text: str) -> None:
        """The body being read cannot be read to its end: the application,
        which has the request already, is told so and gives the answer; then
        the connection closes."""
        self.receiving_since = None
        reading, self.reading = self.reading, None
        if reading is None:
            reading = self._body_exchange()  # broken before any of its body
        self.after_head = False
        logger.info("Broken body from %s: %s", self.client, text)
        reading.broken = True
        reading._wake()
        self.eof = True
        self.pause()
        if not reading.begun:
            self._start(reading)

    def _kept(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "Could not keep an unparsed request", exc_info=task.exception()
            )
        if self.running is None and not self.queued and not self.lost:
            self.write(self.refusal)
            self._close()

    def _close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()
        self.lost = True
        self.state.connections.discard(self)

    def close_when_idle(self) -> None:
        self.closing = True
        if self.running is None and self.reading is None and not self.queued:
            self._close()

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()
        self.lost = True

    def check_timeout(self, now: float) -> None:
        if self.lost:
            return
        since = self.receiving_since
        if since is not None and now - since > self.state.request_timeout:
            if self.running is None:
                self._refuse(408, "request not received in time")
            elif self.running is self.reading:
                # The application waits for the rest of the body: it is told
                # it will not come, records what came and answers.
                self._broken_body("body not received in time")
        elif (
            since is None
            and self.running is None
            and not self.queued
            and now - self.idle_since > self.state.keepalive_timeout
        ):
            self._close()
