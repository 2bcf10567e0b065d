"""Hostile tests of the collector's compiled straight path for plain requests
(plowline/collector/_plain.c through plainpath.read_plain and
http1.HttpConnection._straight).

Two kinds of checks:

- The C functions on their own: bytes that end right at an unreadable page
  (an over-read crashes the test), odd argument types, 64/65 headers, line
  limits of 0 and below, and reference leaks.
- The server in process, on a fake transport, run three ways on the same
  reads: ``straight`` (as shipped), ``llhttp`` (the straight path off: every
  request through llhttp, as before it) and ``asgi`` (every plain path off:
  the application's general ``_track``). Records (but their ids), answers (but
  the date) and whether the connection was closed must agree.

The bug it found, now fixed: a plain request followed by a lone CR in the
same read left the server's request-line watch open on nothing (``_watch_line``
on the bytes ``_straight`` gave back), so the next read's LF ended that "line"
and the real request line after it went to llhttp unmasked: raw UTF-8 in its
target got a 400 and an unparsable_request record, where llhttp alone records
it and answers 200. The same happened without the straight path when the CR
came in a read of its own. ``_watch_line`` now skips the CR/LF at the start of
a read while nothing of the request line has been seen.

Left alone, as documented and kept as known limitations (xfail) in
test_http1_breaking.py: without the straight path, raw UTF-8 in a request
line that follows another request in the same read gets a 400, and an
unparsable_request record holds the requests llhttp read before it in that
read; the straight path does better on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import mmap
import random
import re
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from collector_process import RunningCollector, start_collector
from raw_http import (
    FakeTransport,
    feed_reads,
    raw_log_lines,
    read_until_closed,
    statuses,
)

from plowline.collector import plainpath
from plowline.collector.app import CollectorApp
from plowline.collector.config import CollectorConfig
from plowline.collector.http1 import ServerState
from plowline.rawlog.record import decode_record, encode_record
from plowline.rawlog.writer import RawLogWriter

pytestmark = pytest.mark.skipif(
    not plainpath.COMPILED, reason="plowline.collector._plain is not built"
)

NOW = 1796398275.5
PEER = ("198.51.100.4", 40000)
UUID4 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
TP2 = b"/com.snowplowanalytics.snowplow/tp2"

PIXEL = b"GET /i?e=pv HTTP/1.1\r\nHost: c.example\r\n\r\n"
PIXEL_COOKIE = (
    b'GET /i?e=pv&nuid=abc-1 HTTP/1.1\r\nHost: c.example\r\nCookie: sp="u-1"\r\n\r\n'
)
POST = (
    b"POST " + TP2 + b' HTTP/1.1\r\nHost: c.example\r\nContent-Length: 7\r\n\r\n{"a":1}'
)
CHUNKED = (
    b"POST " + TP2 + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\n{}\r\n0\r\n\r\n"
)
HEAD10 = b'HEAD /ice.png HTTP/1.0\r\nConnection: keep-alive\r\nUser-Agent: a"b\r\n\r\n'
DUPLICATE_HOST = b"GET /i HTTP/1.1\r\nhost: a\r\nHost: b\r\n\r\n"
# A pixel request with raw UTF-8 in its target, which the server accepts and
# keeps (docs/collector.md) unless it follows another request in the same read.
UTF8 = "GET /i?e=pv&q=é HTTP/1.1\r\nHost: c.example\r\n\r\n".encode()


# --- harness ------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    answer: bytes  # without the date header
    records: list[dict[str, Any]]  # without ids, new user ids by position
    closed: bool
    straight: int  # requests read_plain accepted
    metrics: str


def run(
    reads: bytes | list[bytes],
    mode: str = "straight",
    *,
    header_lines_limit: int | None = None,
    **config: Any,
) -> Outcome:
    """Feed ``reads`` (one data_received each) to one connection, ``mode``
    being straight, llhttp or asgi (see the module's doc)."""
    chunks = [reads] if isinstance(reads, bytes) else reads

    async def exchange(folder: Path) -> Outcome:
        writer = RawLogWriter(folder)
        app = CollectorApp(
            CollectorConfig(raw_dir=folder, **config), writer, clock=lambda: NOW
        )
        limits = (
            {}
            if header_lines_limit is None
            else {"header_lines_limit": header_lines_limit}
        )
        state = ServerState(app, asyncio.get_running_loop(), **limits)
        accepted = [0]
        if mode == "straight":
            assert state.read_plain is not None
            original = state.read_plain

            def spy(*args: Any) -> Any:
                read = original(*args)
                accepted[0] += read is not None
                return read

            state.read_plain = spy
        else:
            state.read_plain = None
        if mode == "asgi":
            state.plain_pixel = state.plain_post = None

            async def not_plain(scope: Any, send: Any) -> bool:
                return False

            app._plain_pixel = not_plain  # type: ignore[method-assign]
        connection = state.protocol()
        transport = FakeTransport(PEER)
        connection.connection_made(transport)  # type: ignore[arg-type]
        await feed_reads(state, connection, chunks, settle=5)
        closed = transport.closed
        metrics = app.metrics.render().decode()
        state.close()
        writer.close()
        answer = transport.answer_without_date()
        return Outcome(answer, [], closed, accepted[0], metrics)

    with tempfile.TemporaryDirectory() as temp:
        outcome = asyncio.run(exchange(Path(temp)))
        lines = raw_log_lines(Path(temp))
    sent = b"".join(chunks)
    for index, line in enumerate(lines):
        record = orjson.loads(encode_record(decode_record(line)))
        del record["id"]
        userid = record.get("network_userid") or ""
        if UUID4.fullmatch(userid) and userid.encode() not in sent:
            outcome.answer = outcome.answer.replace(userid.encode(), b"UID%d" % index)
            record["network_userid"] = f"UID{index}"
        outcome.records.append(record)
    return outcome


def same(a: Outcome, b: Outcome) -> bool:
    return (a.answer, a.records, a.closed) == (b.answer, b.records, b.closed)


def three_ways(reads: bytes | list[bytes], **kwargs: Any) -> Outcome:
    """The straight way, checked against llhttp and against the ASGI way."""
    straight = run(reads, "straight", **kwargs)
    for mode in ("llhttp", "asgi"):
        other = run(reads, mode, **kwargs)
        assert straight.answer == other.answer, mode
        assert straight.records == other.records, mode
        assert straight.closed == other.closed, mode
        assert straight.metrics == other.metrics, mode
    return straight


def codes(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


# --- the bug: a lone CR after a plain request ------------------------------------


@pytest.mark.parametrize("first", [PIXEL, POST], ids=["pixel", "post"])
def test_cr_after_a_plain_request_then_utf8_request_line_is_read_as_llhttp_does(
    first: bytes,
) -> None:
    # Read 1: a plain request and the CR of an extra CRLF (as old browsers sent
    # after a POST body); read 2: its LF and a request with raw UTF-8 in its
    # target. llhttp alone records both and answers 200 twice.
    reads = [first + b"\r", b"\n" + UTF8]
    general = run(reads, "llhttp")
    assert codes(general.answer) == [200, 200]
    assert general.records[1]["querystring"] == "e=pv&q=é"
    assert not general.closed
    straight = run(reads, "straight")
    assert straight.straight == 1
    # Now: 400 and an unparsable_request record with the connection closed.
    assert codes(straight.answer) == [200, 200]
    assert straight.records == general.records
    assert not straight.closed


def test_cr_alone_between_requests_then_utf8_request_line_is_accepted() -> None:
    # The same cause without the straight path (http1._watch_line): a read of
    # one CR opens a request line of nothing, which the next read's LF closes,
    # so the request line after it is not masked. docs/collector.md: raw bytes
    # above 0x7f in the target "are accepted and kept, also when the request
    # line comes in several reads".
    reads = [PIXEL, b"\r", b"\n" + UTF8]
    for mode in ("straight", "llhttp"):
        outcome = run(reads, mode)
        assert codes(outcome.answer) == [200, 200], mode
        assert [r["querystring"] for r in outcome.records] == ["e=pv", "e=pv&q=é"]


def test_cr_alone_after_a_plain_request_does_not_change_later_plain_reads() -> None:
    # What held up around the bug: ASCII requests after the CR are read the
    # same way (llhttp reads the next one, as the watch is open).
    reads = [PIXEL + b"\r", b"\n" + PIXEL_COOKIE, POST]
    straight = three_ways(reads)
    assert codes(straight.answer) == [200, 200, 200]
    assert straight.straight == 2


# --- the C functions on their own -----------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


class GuardedBuffer:
    """Bytes placed right before (or after) a page that cannot be read: a
    read past either end of the buffer is a crash, not a quiet NUL."""

    def __init__(self, pages: int = 16) -> None:
        page = mmap.PAGESIZE
        self.size = pages * page
        self.map = mmap.mmap(-1, self.size + 2 * page)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.view = memoryview(self.map)
        assert _libc.mprotect(base, page, 0) == 0  # PROT_NONE
        assert _libc.mprotect(base + page + self.size, page, 0) == 0
        self.page = page

    def at_end(self, data: bytes) -> memoryview:
        start = self.page + self.size - len(data)
        self.view[start : start + len(data)] = data
        return self.view[start : start + len(data)]

    def at_start(self, data: bytes) -> memoryview:
        self.view[self.page : self.page + len(data)] = data
        return self.view[self.page : self.page + len(data)]


@pytest.fixture(scope="module")
def guarded() -> Iterator[GuardedBuffer]:
    if not sys.platform.startswith("linux"):
        pytest.skip("mprotect guard pages: Linux only")
    yield GuardedBuffer()


_EDGY = [
    PIXEL_COOKIE,
    POST,
    HEAD10,
    b"POST /a/b HTTP/1.0\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\nab",
    b'GET /i HTTP/1.1\r\nCookie: ;;=;sp=;sp;sp = "" ;\r\nOrigin: \\"\r\n\r\n',
    b'GET /i HTTP/1.1\r\nCookie: sp="x\r\n\r\n',
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(66)) + b"\r\n",
]


@pytest.mark.parametrize("data", _EDGY)
def test_no_read_past_either_end_of_the_buffer_at_any_length(
    guarded: GuardedBuffer, data: bytes
) -> None:
    assert plainpath.parse_head is not None and plainpath.read_plain is not None
    whole = plainpath.read_plain(data, 2000, b"x-forwarded-for", b"sp")
    for size in range(len(data) + 1):
        piece = data[:size]
        for place in (guarded.at_end, guarded.at_start):
            for limit in (2000, 64, 3, 0, -1):
                parsed = plainpath.parse_head(place(piece), limit)
                assert parsed == plainpath.parse_head(piece, limit)
                read = plainpath.read_plain(
                    place(piece), limit, b"x-forwarded-for", b"sp"
                )
                assert read == plainpath.read_plain(
                    piece, limit, b"x-forwarded-for", b"sp"
                )
                if read is not None:
                    assert 0 < read[0] <= size
    if whole is not None:
        assert plainpath.read_plain(data[: whole[0] - 1], 2000, b"", b"sp") is None


def test_random_mutations_never_read_out_of_bounds(guarded: GuardedBuffer) -> None:
    assert plainpath.parse_head is not None and plainpath.read_plain is not None
    rng = random.Random(20240605)
    tokens = [
        b"\r",
        b"\n",
        b"\r\n",
        b":",
        b" ",
        b"HTTP/1.",
        b'"',
        b"\\",
        b";",
        b"=",
        b"\x7f",
        b"\x00",
        b"\xff",
        b"Content-Length: ",
        b"9",
        b"Connection: close\r\n",
        b"sp=",
        b"\r\n\r\n",
    ]
    for _ in range(3000):
        data = bytearray(rng.choice(_EDGY))
        for _ in range(rng.randint(1, 4)):
            at = rng.randint(0, len(data))
            choice = rng.randint(0, 3)
            if choice == 0 and data:
                data[min(at, len(data) - 1)] = rng.randint(0, 255)
            elif choice == 1:
                data[at:at] = rng.choice(tokens)
            elif choice == 2:
                del data[at : at + rng.randint(1, 8)]
            else:
                data = data[:at]
        piece = bytes(data)
        expected = plainpath.read_plain(piece, 2000, b"x-forwarded-for", b"sp")
        for place in (guarded.at_end, guarded.at_start):
            assert (
                plainpath.read_plain(place(piece), 2000, b"x-forwarded-for", b"sp")
                == expected
            )
            plainpath.parse_head(place(piece), 64)


def test_buffer_kinds_and_wrong_argument_types() -> None:
    parse, read, scan = (
        plainpath.parse_head,
        plainpath.read_plain,
        plainpath.scan_headers,
    )
    assert parse is not None and read is not None
    data = b"GET /i HTTP/1.1\r\nHost: h\r\n\r\n"
    parsed = parse(data, 10)
    assert parsed == (len(data), b"GET", b"/i", "1.1", True, [(b"host", b"h")], None)
    assert parse(bytearray(data), 10) == parsed
    assert parse(memoryview(b"xx" + data)[2:], 10) == parsed
    assert read(bytearray(data), 10, b"", b"sp") == read(data, 10, b"", b"sp")
    with pytest.raises(BufferError):
        parse(memoryview(data + data)[::2], 10)
    with pytest.raises(TypeError):
        parse(data.decode(), 10)
    with pytest.raises(TypeError):
        parse(data, None)
    with pytest.raises(OverflowError):
        parse(data, 2**70)
    with pytest.raises(TypeError):
        read(data, 10, "x-forwarded-for", b"sp")
    with pytest.raises(TypeError):
        read(data, 10, b"", "sp")
    with pytest.raises(TypeError):
        scan(((b"host", b"h"),), False, b"", b"sp")  # a tuple, not a list
    with pytest.raises(TypeError):
        scan([(b"host", b"h")], False, "", b"sp")

    class Sub(bytes):
        pass

    # Anything not made of exact (bytes, bytes) pairs is left to the general way.
    for odd in (
        [[b"host", b"h"]],
        [(b"host", b"h", b"x")],
        [(b"host",)],
        [("host", "h")],
        [(Sub(b"host"), b"h")],
        [(b"host", Sub(b"h"))],
        [(b"Host", b"h")],
        [(b"", b"h")],
        [(b"1", b"h")],  # no letter
        [(b"host", b"h\x00")],
        [(b"host", b"caf\xc3\xa9")],
        [],
    ):
        assert scan(odd, False, b"", b"sp") is None, odd
    # Sub-classed keys read as their bytes.
    assert read(data, 10, Sub(b"host"), Sub(b"sp"))[6][5] == b"h"


def test_64_headers_are_taken_65_are_left_to_llhttp() -> None:
    assert plainpath.read_plain is not None and plainpath.parse_head is not None
    head = b"GET /i HTTP/1.1\r\n"

    def request(count: int) -> bytes:
        return head + b"".join(b"X-%d: v\r\n" % i for i in range(count)) + b"\r\n"

    assert plainpath.parse_head(request(64), 2000) is not None
    assert plainpath.read_plain(request(64), 2000, b"", b"sp") is not None
    assert plainpath.parse_head(request(65), 2000) is None
    assert plainpath.read_plain(request(65), 2000, b"", b"sp") is None
    pairs = [(b"x-%d" % i, b"v") for i in range(65)]
    assert plainpath.scan_headers(pairs[:64], False, b"", b"sp") is not None
    assert plainpath.scan_headers(pairs, False, b"", b"sp") is None
    # Line limits below one: a request with headers is never taken.
    for limit in (0, -1, -(2**62)):
        assert plainpath.parse_head(request(1), limit) is None
        assert plainpath.read_plain(request(1), limit, b"", b"sp") is None
    # A request without headers: parse_head reads it, read_plain leaves it.
    assert plainpath.parse_head(head + b"\r\n", 0) is not None
    assert plainpath.read_plain(head + b"\r\n", 2000, b"", b"sp") is None


def test_no_reference_or_memory_leak_over_many_calls() -> None:
    parse, read, scan = (
        plainpath.parse_head,
        plainpath.read_plain,
        plainpath.scan_headers,
    )
    assert parse is not None and read is not None
    full = (
        b'GET /i?e=pv HTTP/1.1\r\nHost: c.example\r\nUser-Agent: M"o\\\r\n'
        b'Cookie: a=1; sp="abc"\r\nReferer: r\r\nContent-Type: X/Y\r\n'
        b"Origin: o\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"
    )
    parsed = parse(full, 100)
    assert parsed is not None
    headers = parsed[5]
    body = POST
    values = (full, body, headers, headers + headers)

    def loop(times: int) -> None:
        for _ in range(times):
            parse(full, 100)
            parse(body, 100)
            parse(full, 1)
            read(full, 100, b"x-forwarded-for", b"sp")
            read(body, 100, b"", b"sp")
            read(full, 1, b"", b"sp")
            scan(headers, False, b"x-forwarded-for", b"sp")
            scan(headers + headers, False, b"", b"sp")
            for bad in (lambda: read(full, 100, "x", b"sp"), lambda: parse("x", 1)):
                with contextlib.suppress(TypeError):
                    bad()

    loop(20_000)
    gc.collect()
    before = sys.getallocatedblocks()
    refs = [sys.getrefcount(value) for value in values]
    loop(100_000)
    gc.collect()
    assert sys.getallocatedblocks() - before < 50
    assert [sys.getrefcount(value) for value in values] == refs


# --- the server: the straight way against llhttp and ASGI -----------------------


def test_pipelined_mix_split_at_every_byte_agrees() -> None:
    data = PIXEL_COOKIE + POST + b"\r\n" + CHUNKED + HEAD10 + DUPLICATE_HOST + PIXEL
    for cut in range(1, len(data)):
        reads = [data[:cut], data[cut:]]
        straight = run(reads, "straight")
        general = run(reads, "llhttp")
        assert same(straight, general), cut
        assert codes(straight.answer) == [200] * 6, cut
    # Whole, the straight way takes the first request only; the rest are
    # llhttp's and queued behind it, answered in order.
    straight = three_ways(data)
    assert straight.straight == 1
    assert [r["method"] for r in straight.records] == [
        "GET",
        "POST",
        "POST",
        "HEAD",
        "GET",
        "GET",
    ]


def test_each_plain_request_in_a_read_of_its_own_is_taken() -> None:
    reads = [PIXEL_COOKIE, POST, HEAD10, PIXEL]
    straight = three_ways(reads)
    assert straight.straight == 4
    assert codes(straight.answer) == [200] * 4
    assert b"\r\nconnection: keep-alive\r\n" in straight.answer  # the HTTP/1.0 one
    assert not straight.closed


def test_a_plain_request_then_part_of_the_next_then_the_rest() -> None:
    for cut in range(1, len(POST)):
        reads = [PIXEL_COOKIE + POST[:cut], POST[cut:] + PIXEL]
        straight = run(reads, "straight")
        assert same(straight, run(reads, "llhttp")), cut
        assert codes(straight.answer) == [200, 200, 200], cut
        assert straight.straight >= 1


@pytest.mark.parametrize(
    "first",
    [
        PIXEL.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
        PIXEL.replace(b"HTTP/1.1", b"HTTP/1.0"),
        POST.replace(b"\r\n\r\n", b"\r\nconnection: CLOSE\r\n\r\n"),
    ],
    ids=["close", "http1.0", "post-close"],
)
def test_bytes_after_a_request_that_closes_are_ignored(first: bytes) -> None:
    for after in (PIXEL, b"GARBAGE\x00\r\n\r\n", b"\r\n", UTF8):
        straight = three_ways(first + after)
        assert straight.straight == 1
        assert codes(straight.answer) == [200]
        assert b"\r\nconnection: close\r\n" in straight.answer
        assert len(straight.records) == 1
        assert straight.closed


def test_header_line_limits_agree() -> None:
    request = (
        b"GET /i HTTP/1.1\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(5))
        + b"\r\n"
    )
    taken = three_ways(request, header_lines_limit=5)
    assert taken.straight == 1 and codes(taken.answer) == [200]
    refused = three_ways(request, header_lines_limit=4)
    assert refused.straight == 0 and codes(refused.answer) == [431]
    assert refused.records == []
    many = b"GET /i HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(65))
    left = three_ways(many + b"\r\n")
    assert left.straight == 0 and codes(left.answer) == [200]
    assert len(left.records[0]["headers"]) == 65


@pytest.mark.parametrize(
    ("headers", "config"),
    [
        ([b'Cookie: a=1 ; sp = "v-2" ;'], {}),
        ([b'Cookie: sp=""', b"Host: h"], {}),
        ([b'Cookie: SP=upper; sp="\\"x\\""'], {}),
        ([b"Cookie: dnt=1; sp=z"], {"do_not_track_cookie_name": "dnt"}),
        (
            [b"Cookie: dnt=2; sp=z"],
            {"do_not_track_cookie_name": "dnt", "do_not_track_cookie_value": "1"},
        ),
        ([b"host: a", b"Host: b"], {}),
        ([b'Origin: "o\\"', b'User-Agent: a\\"b', b'Referer: "r"'], {}),
        ([b"sP-aNoNyMoUs: *", b"Cookie: sp=z"], {}),
        (
            [b"X-Forwarded-For: 203.0.113.9, 10.0.0.1"],
            {"trusted_proxies": ("198.51.100.0/24",)},
        ),
        ([b"x-forwarded-for: garbage"], {"trusted_proxies": ("198.51.100.0/24",)}),
        (
            [b"Forwarded: for=203.0.113.7;proto=https"],
            {"trusted_proxies": ("198.51.100.4",), "proxy_header": "Forwarded"},
        ),
        (
            [b'FORWARDED: for="[2001:db8::1]"'],
            {"trusted_proxies": ("198.51.100.4",), "proxy_header": "forwarded"},
        ),
        ([b"Host: C.Example.:80"], {"cookie_domains": ("example",)}),
        ([b"Content-Type: Text/PLAIN"], {}),
        ([b"1: digits"], {}),
        ([b"X-Long: " + b"v" * 300], {"max_header_bytes": 300}),
    ],
)
def test_header_forms_agree_three_ways(
    headers: list[bytes], config: dict[str, Any]
) -> None:
    head = b"".join(h + b"\r\n" for h in headers)
    for target in (b"/i?e=pv&nuid=abc-9", b"/i?e=pv"):
        pixel = b"GET " + target + b" HTTP/1.1\r\n" + head + b"\r\n"
        body = b'{"e":"pv"}'
        post = (
            b"POST "
            + TP2
            + b"?e=pv HTTP/1.0\r\n"
            + head
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        three_ways(pixel, **config)
        three_ways(post, **config)
        three_ways(pixel + post + pixel, **config)


def test_random_pipelined_streams_agree() -> None:
    rng = random.Random(4242)
    headers = [
        b"Host: c.example",
        b"host: C.Example.:80",
        b'User-Agent: M "q" \\b',
        b'Referer: http://r/?a="b"',
        b"Origin: https://o",
        b'Origin: "o\\"',
        b"Cookie: sp=abc-123",
        b'Cookie: sp="q-1"',
        b"Cookie: a=1 ; sp = v-2 ;",
        b"Cookie: dnt=1; sp=z",
        b"SP-Anonymous: *",
        b"X-Forwarded-For: 203.0.113.9",
        b"Content-Type: Application/JSON",
        b"Connection: close",
        b"Connection: Keep-Alive",
        b"Accept: */*",
        b"X-Sp:   lead",
        b"X-Del: a\x7fb",
        b"X-Tab: a\tb",
        b"Expect: 100-continue",
    ]
    configs: list[dict[str, Any]] = [
        {},
        {"trusted_proxies": ("198.51.100.0/24",)},
        {"do_not_track_cookie_name": "dnt"},
        {"cookie_enabled": False},
        {"max_header_bytes": 120, "max_querystring_bytes": 10},
    ]
    for _ in range(150):
        parts = []
        for _ in range(rng.randint(1, 3)):
            method = rng.choice([b"GET", b"GET", b"HEAD", b"POST", b"POST", b"PUT"])
            target = rng.choice([b"/i", b"/ice.png", TP2, b"/com.acme/v1", b"/x"])
            target += rng.choice([b"", b"?e=pv", b"?e=pv&nuid=abc-1", b"?a=%22&b"])
            version = rng.choice([b"1.1", b"1.1", b"1.0"])
            lines = rng.sample(headers, rng.randint(0, 4))
            body = rng.choice([b"", b"{}", "é".encode(), b"\xff"])
            if method == b"POST" or rng.random() < 0.05:
                lines.append(b"Content-Length: %d" % len(body))
            else:
                body = b""
            parts.append(
                method
                + b" "
                + target
                + b" HTTP/"
                + version
                + b"\r\n"
                + b"".join(line + b"\r\n" for line in lines)
                + b"\r\n"
                + body
                + rng.choice([b"", b"", b"\r\n"])
            )
        data = b"".join(parts)
        cut = rng.randint(1, len(data))
        reads = [data[:cut], data[cut:]] if cut < len(data) else [data]
        config = rng.choice(configs)
        straight = run(reads, "straight", **config)
        general = run(reads, "llhttp", **config)
        # (A request the parser gives up on is recorded with the bytes of the
        # read; without the straight path they hold the requests llhttp read
        # before it, as documented: the bodies of those records may differ.)
        for outcome in (straight, general):
            for record in outcome.records:
                if str(record.get("error", "")).startswith("unparsable_request"):
                    record.pop("body", None)
                    record.pop("body_base64", None)
        assert same(straight, general), (reads, config)


# --- a real collector ------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    running = start_collector(tmp_path_factory.mktemp("plainbreak"))
    yield running
    assert running.stop() == 0, running.log()


def _talk(port: int, reads: list[bytes], pause: float = 0.2) -> tuple[bytes, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for data in reads:
            sock.sendall(data)
            time.sleep(pause)
        sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock)


def _tagged(tag: bytes, request: bytes) -> bytes:
    return request.replace(b"\r\n", b"\r\nX-Test-Id: " + tag + b"\r\n", 1)


def test_real_collector_pipelined_plain_requests(real: RunningCollector) -> None:
    tag = b"pipelined-plain"
    data = b"".join(_tagged(tag, r) for r in (PIXEL_COOKIE, POST, HEAD10, PIXEL))
    reply, ended = _talk(real.port, [data, _tagged(tag, PIXEL)])
    assert statuses(reply) == [200] * 5
    assert ended == "eof"
    records = real.records_for(tag.decode())
    assert [r.method for r in records] == ["GET", "POST", "HEAD", "GET", "GET"]
    assert records[0].network_userid == "abc-1"


def test_real_collector_cr_after_a_plain_request_then_utf8_line(
    real: RunningCollector,
) -> None:
    tag = b"cr-then-utf8"
    reads = [_tagged(tag, PIXEL) + b"\r", b"\n" + _tagged(tag, UTF8)]
    reply, _ = _talk(real.port, reads)
    assert statuses(reply) == [200, 200]
    records = real.records_for(tag.decode())
    assert [r.querystring for r in records] == [b"e=pv", "e=pv&q=é".encode()]
