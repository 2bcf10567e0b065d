"""Attacks on the collector's own HTTP/1.1 server (plowline.collector.http1 and
plowline.collector.server), from outside over loopback with raw sockets.

Two kinds of server: a real ``plowline collector`` process (collector_process),
and the same server run in a thread of this process (``InProcess``): a
ServerState and a CollectorApp with a raw log in a temporary folder, where the
limits and timeouts can be made small.

Tests marked ``xfail(strict=True)`` assert what would be right where the
server has a known limitation (docs/collector.md); the reason names it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from collector_process import (
    TEST_ID_HEADER,
    CollectorFactory,
    RunningCollector,
    start_collector,
)
from raw_http import (
    TP2,
    connect,
    metric,
    new_id,
    pixel,
    post,
    read_until_closed,
    statuses,
    wait_for,
)

from plowline.collector import plainpath
from plowline.collector.config import CollectorConfig
from plowline.collector.http1 import ServerState
from plowline.collector.server import build_app
from plowline.rawlog.record import RawRecord, decode_record

pytestmark = pytest.mark.slow


# --- raw sockets --------------------------------------------------------------


def exchange(
    port: int, data: bytes, *, timeout: float = 5.0, shut_wr: bool = False
) -> tuple[bytes, str]:
    with connect(port) as sock:
        sock.sendall(data)
        if shut_wr:
            sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock, timeout)


def answers(
    reply: bytes, no_body: frozenset[int] = frozenset()
) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a stream of answers (content-length or chunked framed); the
    answers numbered in ``no_body`` are to HEAD requests."""
    out: list[tuple[int, dict[str, str], bytes]] = []
    rest = reply
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"unterminated head: {head!r}"
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b": ")
            headers[name.decode().lower()] = value.decode("latin-1")
        if status == 100:
            out.append((status, headers, b""))
            continue
        if len(out) in no_body:
            body = b""
        elif "content-length" in headers:
            size = int(headers["content-length"])
            body, rest = rest[:size], rest[size:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                line, _, rest = rest.partition(b"\r\n")
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    _, _, rest = rest.partition(b"\r\n")
                    break
                body += rest[:size]
                rest = rest[size + 2 :]
        else:
            body, rest = rest, b""
        out.append((status, headers, body))
    return out


def read_records(raw_dir: Path) -> list[RawRecord]:
    if not raw_dir.exists():
        return []
    records = []
    for path in sorted(raw_dir.iterdir()):
        for line in path.read_bytes().split(b"\n"):
            if line:
                records.append(decode_record(line))
    return records


def tagged(records: list[RawRecord], test_id: str) -> list[RawRecord]:
    return [r for r in records if r.header(TEST_ID_HEADER) == test_id]


def unparsed_holding(records: list[RawRecord], marker: bytes) -> list[RawRecord]:
    """Records of unparsable requests whose kept bytes hold ``marker``."""
    return [
        r
        for r in records
        if str(r.extra.get("error", "")).startswith("unparsable_request")
        and marker in (r.body or b"")
    ]


# --- the server in this process --------------------------------------------------


class InProcess:
    """ServerState + CollectorApp on a uvloop loop in a thread, on 127.0.0.1:0."""

    def __init__(self, raw_dir: Path, config: CollectorConfig, **state: Any) -> None:
        self.raw_dir = raw_dir
        self.config = config
        self.state_args = state
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self._state: ServerState | None = None

    @property
    def state(self) -> ServerState:
        assert self._state is not None
        return self._state

    def start(self) -> InProcess:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        self.app = build_app(self.config)
        self._state = ServerState(self.app, self.loop, **self.state_args)
        self.server = await self.loop.create_server(self.state.protocol, "127.0.0.1", 0)
        sockets: list[socket.socket] = getattr(self.server, "sockets", [])
        self.port = sockets[0].getsockname()[1]

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop and return its result."""

        async def go() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)

    def stop(self) -> None:
        async def go() -> None:
            self.server.close()
            self.state.close()
            await asyncio.sleep(0.05)
            self.app.writer.close()
            self.app.metrics.stop()

        asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def records(self) -> list[RawRecord]:
        return read_records(self.raw_dir)


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[Callable[..., InProcess]]:
    started: list[InProcess] = []

    def make(**state: Any) -> InProcess:
        raw_dir = tmp_path / f"raw{len(started)}"
        config = CollectorConfig(raw_dir=raw_dir, port=0)
        server = InProcess(raw_dir, config, **state).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    running = start_collector(tmp_path_factory.mktemp("breaking"))
    yield running
    assert running.stop() == 0, running.log()


def parse_answers(data: bytes) -> tuple[list[tuple[int, dict[str, str], bytes]], bytes]:
    """The complete answers at the start of ``data`` and the bytes left over."""
    out: list[tuple[int, dict[str, str], bytes]] = []
    rest = data
    while True:
        head, sep, after = rest.partition(b"\r\n\r\n")
        if not sep:
            return out, rest
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
        if status == 100:
            out.append((status, headers, b""))
            rest = after
            continue
        size = int(headers.get("content-length", "0"))
        if len(after) < size:
            return out, rest
        out.append((status, headers, after[:size]))
        rest = after[size:]


def read_answers(
    sock: socket.socket, count: int, timeout: float = 5.0
) -> tuple[list[tuple[int, dict[str, str], bytes]], str]:
    """Read until ``count`` answers came, or the connection ended."""
    sock.settimeout(timeout)
    buffer = b""
    found: list[tuple[int, dict[str, str], bytes]] = []
    while True:
        got, buffer = parse_answers(buffer)
        found += got
        if len(found) >= count:
            return found, "complete"
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return found, "timeout"
        except ConnectionResetError:
            return found, "reset"
        if not chunk:
            return found, "eof"
        buffer += chunk


def refuses_connections(port: int) -> bool:
    try:
        sock = connect(port, timeout=1)
    except OSError:
        return True
    sock.close()
    return False


# =============================================================================
# What holds: the real collector over loopback
# =============================================================================


def test_pipelined_mix_is_answered_in_order_and_each_request_recorded(
    collector: RunningCollector,
) -> None:
    ids = [new_id() for _ in range(5)]
    chunked = (
        b"POST "
        + TP2
        + b" HTTP/1.1\r\nHost: t\r\nx-test-id: "
        + ids[4].encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    data = (
        pixel(ids[0], b"n=0")
        + post(ids[1], b'{"n":1}')
        + pixel(ids[2], b"n=2")
        + pixel(ids[3], b"n=3").replace(b"GET ", b"HEAD ", 1)
        + chunked
        + b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    reply, ended = exchange(collector.port, data)

    assert ended == "eof"
    got = answers(reply, no_body=frozenset({3}))
    assert [a[0] for a in got] == [200] * 6
    assert got[0][2][:6] == b"GIF89a"
    assert got[1][2] == b"ok"
    assert got[3][2] == b""  # HEAD
    assert got[3][1]["content-length"] == "43"
    assert got[5][2] == b"ok" and got[5][1]["connection"] == "close"
    assert all("date" in a[1] for a in got)
    assert collector.record_for(ids[0]).querystring == b"n=0"
    assert collector.record_for(ids[1]).body == b'{"n":1}'
    assert collector.record_for(ids[2]).querystring == b"n=2"
    assert collector.record_for(ids[3]).method == "HEAD"
    assert collector.record_for(ids[4]).body == b"abcde"


def test_request_sent_byte_by_byte_is_recorded(collector: RunningCollector) -> None:
    test_id = new_id()
    request = (
        b"POST "
        + TP2
        + b"?q=a%20b HTTP/1.1\r\nHost: t\r\nx-test-id: "
        + test_id.encode()
        + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"4;name=value\r\nbody\r\n0\r\n\r\n"
    )
    with connect(collector.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in request:
            sock.sendall(bytes([byte]))
            time.sleep(0.0005)
        reply, ended = read_until_closed(sock)

    assert statuses(reply) == [200] and ended == "eof"
    record = collector.record_for(test_id)
    assert record.querystring == b"q=a%20b"
    assert record.body == b"body"


def test_chunk_extensions_and_trailers_do_not_reach_the_body(
    collector: RunningCollector,
) -> None:
    test_id = new_id()
    request = (
        b"POST "
        + TP2
        + b" HTTP/1.1\r\nHost: t\r\nx-test-id: "
        + test_id.encode()
        + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b'5;a=1;b="x"\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n'
    )
    reply, _ = exchange(collector.port, request)

    assert statuses(reply) == [200]
    assert collector.record_for(test_id).body == b"hello world"


def test_bad_chunk_size_is_answered_400_and_recorded_incomplete(
    collector: RunningCollector,
) -> None:
    test_id = new_id()
    request = (
        b"POST "
        + TP2
        + b" HTTP/1.1\r\nHost: t\r\nx-test-id: "
        + test_id.encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\nnope\r\n0\r\n\r\n"
    )
    reply, ended = exchange(collector.port, request)

    assert statuses(reply) == [400] and ended == "eof"
    assert b"connection: close" in reply
    record = collector.record_for(test_id)
    assert record.body == b"abc"
    assert str(record.extra["error"]).startswith("incomplete_body")


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nContent-Length: 5\r\n",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Content-Length: -5\r\n",
        b"Content-Length: 5x\r\n",
    ],
    ids=["dup-same", "dup-different", "cl-and-te", "negative", "not-a-number"],
)
def test_ambiguous_framing_is_answered_400_and_its_bytes_kept(
    collector: RunningCollector, framing: bytes
) -> None:
    marker = new_id().encode()
    request = (
        b"POST "
        + TP2
        + b"?m="
        + marker
        + b" HTTP/1.1\r\nHost: t\r\n"
        + framing
        + b"\r\nhello"
    )
    reply, ended = exchange(collector.port, request)

    assert statuses(reply) == [400] and ended == "eof"
    assert b"date: " in reply
    assert wait_for(lambda: len(unparsed_holding(collector.records(), marker)) == 1)
    assert unparsed_holding(collector.records(), marker)[0].body == request


def test_body_over_the_limit_gets_413_and_the_connection_goes_on(
    collector: RunningCollector,
) -> None:
    first, second = new_id(), new_id()
    body = b"x" * (1024 * 1024 + 1)
    with connect(collector.port) as sock:
        sock.sendall(post(first, body) + pixel(second))
        got, _ = read_answers(sock, 2)

    assert [a[0] for a in got] == [413, 200]
    assert "connection" not in got[0][1]
    record = collector.record_for(first)
    assert record.extra["error"] == (
        "size_violation: body of 1048577 bytes exceeds the limit of 1048576 bytes"
    )
    assert (
        len(record.body or b"") == 1024 * 1024 + 1 or len(record.body or b"") == 65536
    )
    collector.record_for(second)


def test_chunked_body_over_sixteen_times_the_limit_gets_413_and_close(
    collector: RunningCollector,
) -> None:
    test_id = new_id()
    result: dict[str, Any] = {}
    with connect(collector.port, timeout=15) as sock:
        sock.sendall(
            b"POST "
            + TP2
            + b" HTTP/1.1\r\nHost: t\r\nx-test-id: "
            + test_id.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )

        def reader() -> None:
            result["reply"] = read_until_closed(sock, 15)

        thread = threading.Thread(target=reader)
        thread.start()
        block = b"10000\r\n" + b"y" * 0x10000 + b"\r\n"
        try:
            for _ in range(18 * 16):  # 18 MiB
                sock.sendall(block)
        except OSError:
            pass
        thread.join()

    reply, _ = result["reply"]
    assert statuses(reply) == [413]
    assert b"connection: close" in reply
    error = str(collector.record_for(test_id).extra["error"])
    assert error.startswith("size_violation: body of more than ")


def test_expect_100_continue_is_answered_before_the_body(
    collector: RunningCollector,
) -> None:
    test_id = new_id()
    head = post(test_id, b"hello", b"Expect: 100-continue\r\n")[: -len(b"hello")]
    with connect(collector.port) as sock:
        sock.sendall(head)
        sock.settimeout(5)
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        got, _ = read_answers(sock, 1)
    assert got[0][0] == 200
    assert collector.record_for(test_id).body == b"hello"


def test_expect_100_continue_without_the_body_gets_no_final_answer_yet(
    in_process: Callable[..., InProcess],
) -> None:
    # In this process: a client that leaves mid-body would hold a real
    # collector's stop for 10 s (see the end-of-stream bug below).
    server = in_process()
    test_id = new_id()
    head = post(test_id, b"hello", b"Expect: 100-continue\r\n")[: -len(b"hello")]
    with connect(server.port) as sock:
        sock.sendall(head)
        reply, ended = read_until_closed(sock, 1.0)
    assert reply == b"HTTP/1.1 100 Continue\r\n\r\n" and ended == "timeout"


def test_http10_expect_gets_no_100_continue(collector: RunningCollector) -> None:
    test_id = new_id()
    request = post(test_id, b"hi", b"Expect: 100-continue\r\n").replace(
        b"HTTP/1.1", b"HTTP/1.0", 1
    )
    reply, ended = exchange(collector.port, request)
    assert statuses(reply) == [200] and ended == "eof"
    assert b"connection: close" in reply


def test_http10_keep_alive_then_close(collector: RunningCollector) -> None:
    a, b = new_id(), new_id()
    keep = b"Connection: keep-alive\r\n"
    data = (
        pixel(a, b"k=1", keep).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
        + b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        + pixel(b, b"k=2").replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    )
    reply, ended = exchange(collector.port, data)

    got = answers(reply)
    assert [g[0] for g in got] == [200, 200, 200] and ended == "eof"
    assert [g[1].get("connection") for g in got] == [
        "keep-alive",
        "keep-alive",
        "close",
    ]
    assert collector.record_for(a).querystring == b"k=1"
    assert collector.record_for(b).querystring == b"k=2"


def test_absolute_form_target_is_recorded_with_its_path_and_query(
    collector: RunningCollector,
) -> None:
    test_id = new_id()
    request = (
        b"GET http://t.example:8080/i?abs=1&x=%C3%A9 HTTP/1.1\r\nHost: t.example\r\n"
        b"x-test-id: " + test_id.encode() + b"\r\nConnection: close\r\n\r\n"
    )
    reply, _ = exchange(collector.port, request)
    assert statuses(reply) == [200]
    record = collector.record_for(test_id)
    assert (record.path, record.querystring) == ("/i", b"abs=1&x=%C3%A9")


def test_options_star_gets_the_preflight_answer(collector: RunningCollector) -> None:
    reply, _ = exchange(
        collector.port, b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    got = answers(reply)
    assert got[0][0] == 200
    assert got[0][1]["access-control-max-age"] == "3600"


def test_raw_utf8_and_invalid_bytes_in_a_target_read_at_once_are_kept(
    collector: RunningCollector,
) -> None:
    good, bad = new_id(), new_id()
    reply1, _ = exchange(
        collector.port,
        pixel(good, b"q=\xc3\xa9t\xc3\xa9", b"Connection: close\r\n").replace(
            b"/i?", b"/caf\xc3\xa9/v1?", 1
        ),
    )
    reply2, _ = exchange(
        collector.port, pixel(bad, b"q=\xff\xfe%zz", b"Connection: close\r\n")
    )
    assert statuses(reply1) == [200] and statuses(reply2) == [200]
    record = collector.record_for(good)
    assert record.path == "/café/v1"
    assert record.querystring == "q=été".encode()
    assert collector.record_for(bad).querystring == b"q=\xff\xfe%zz"
    line = next(
        line
        for path in sorted(collector.raw_dir.iterdir())
        for line in path.read_bytes().split(b"\n")
        if bad.encode() in line
    )
    assert b'"querystring_base64":"' + base64.b64encode(b"q=\xff\xfe%zz") in line


def test_half_closed_client_gets_every_answer(collector: RunningCollector) -> None:
    ids = [new_id() for _ in range(3)]
    data = post(ids[0], b"abc") + pixel(ids[1]) + pixel(ids[2])
    reply, ended = exchange(collector.port, data, shut_wr=True)
    assert [a[0] for a in answers(reply)] == [200, 200, 200] and ended == "eof"
    for test_id in ids:
        collector.record_for(test_id)


def test_transfer_encoding_other_than_chunked_is_answered_400_and_recorded(
    collector: RunningCollector,
) -> None:
    test_id = new_id()
    request = post(test_id, b"hello").replace(
        b"Content-Length: 5", b"Transfer-Encoding: gzip"
    )
    reply, ended = exchange(collector.port, request)
    assert statuses(reply) == [400] and ended == "eof"
    record = collector.record_for(test_id)
    assert str(record.extra["error"]).startswith("incomplete_body")


def test_client_reset_mid_answers_leaves_the_server_serving(
    collector: RunningCollector,
) -> None:
    sock = connect(collector.port)
    sock.sendall(b"".join(pixel(new_id()) for _ in range(300)))
    sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
    )
    sock.close()  # RST
    time.sleep(0.2)
    reply, _ = exchange(
        collector.port, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    assert statuses(reply) == [200]
    assert "Traceback" not in collector.log()


def test_many_connections_at_once_are_all_answered_and_recorded(
    collector: RunningCollector,
) -> None:
    ids = [new_id() for _ in range(250)]
    socks = [connect(collector.port, timeout=10) for _ in ids]
    try:
        for sock, test_id in zip(socks, ids, strict=True):
            sock.sendall(pixel(test_id, extra=b"Connection: close\r\n"))
        replies = [read_until_closed(sock, 10) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(statuses(r) == [200] and e == "eof" for r, e in replies)
    recorded = {r.header(TEST_ID_HEADER) for r in collector.records()}
    assert set(ids) <= recorded


def test_header_lines_limit_is_2000(collector: RunningCollector) -> None:
    at_limit, over = new_id(), new_id()

    def request(test_id: str, lines: int) -> bytes:
        # Host, x-test-id, Connection and the padding lines.
        padding = b"".join(b"h%d: v\r\n" % i for i in range(lines - 3))
        return pixel(test_id, extra=b"Connection: close\r\n" + padding)

    reply1, _ = exchange(collector.port, request(at_limit, 2000))
    reply2, _ = exchange(collector.port, request(over, 2001))
    assert statuses(reply1) == [200]
    assert statuses(reply2) == [431]
    assert len(collector.record_for(at_limit).headers) == 2000
    assert collector.records_for(over) == []


def test_odd_requests_never_get_a_5xx(collector: RunningCollector) -> None:
    rng = random.Random(1234)
    paths = [
        b"/i",
        b"/com.acme/v1",
        b"/r/tp2",
        b"/health",
        b"/metrics",
        b"*",
        b"http://h/i",
        b"/a/b/c",
        b"/%ff/%zz",
        b"/plowline.js",
    ]
    methods = [b"GET", b"HEAD", b"POST", b"OPTIONS", b"PUT", b"DELETE"]
    headers = [
        b"Host: \xff\xfe",
        b"Origin: \xc3\xa9",
        b"Cookie: sp=\xff",
        b"SP-Anonymous: *",
        b"Content-Type: \xff",
        b"Host: [::1]:99999",
        b"X-Forwarded-For: \xff",
        b"If-None-Match: \xff",
        b"Host: a..b",
        b"Accept-Encoding: gzip;q=\xff",
    ]
    for _ in range(300):
        path = rng.choice(paths)
        query = bytes(rng.choice(b"abc=&%+u\xc3\xa9\xff:/?#") for _ in range(8))
        target = path if path == b"*" else path + b"?" + query
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 16)))
        if path.startswith(b"http"):
            # A body behind a bad absolute target is its own bug (below).
            body = b""
        request = (
            rng.choice(methods)
            + b" "
            + target
            + b" HTTP/1.1\r\n"
            + b"".join(h + b"\r\n" for h in rng.sample(headers, rng.randint(0, 3)))
            + (b"Content-Length: %d\r\n" % len(body) if body else b"")
            + b"Connection: close\r\n\r\n"
            + body
        )
        reply, ended = exchange(collector.port, request)
        codes = statuses(reply)
        assert codes and ended == "eof", request
        assert codes[-1] < 500, (request, reply)


def test_metrics_count_pixels_posts_and_unparsable_requests(
    collector: RunningCollector,
) -> None:
    def scrape() -> str:
        reply, _ = exchange(
            collector.port, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        return answers(reply)[0][2].decode()

    before = scrape()
    exchange(collector.port, pixel(new_id(), extra=b"Connection: close\r\n"))
    exchange(collector.port, post(new_id(), b"x", b"Connection: close\r\n"))
    exchange(collector.port, b"BREW /i HTTP/1.1\r\n\r\n")
    time.sleep(0.1)
    after = scrape()
    name = "plowline_collector_requests_total"
    for group, status in (("pixel", "200"), ("post", "200"), ("other", "400")):
        assert metric(after, name, group=group, status=status) == (
            metric(before, name, group=group, status=status) + 1
        ), group


# =============================================================================
# What holds: timeouts, in this process with small values
# =============================================================================


def test_slow_head_gets_408(in_process: Callable[..., InProcess]) -> None:
    server = in_process(request_timeout=0.5)
    with connect(server.port) as sock:
        sock.sendall(b"GET /i?slow=1 HTTP/1.1\r\nHost: t\r\nx-a: ")
        for _ in range(3):  # a byte now and then does not help
            time.sleep(0.3)
            sock.sendall(b"a")
        reply, ended = read_until_closed(sock, 5)
    assert statuses(reply) == [408] and ended == "eof"
    assert b"date: " in reply and b"connection: close" in reply


def test_idle_keep_alive_connection_is_closed(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process(keepalive_timeout=0.5)
    with connect(server.port) as sock:
        sock.sendall(pixel("idle"))
        reply, ended = read_until_closed(sock, 5)
    assert statuses(reply) == [200] and ended == "eof"


def test_slow_body_is_recorded_incomplete_and_its_connection_closed(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process(request_timeout=0.5)
    with connect(server.port) as sock:
        sock.sendall(post("slowbody", b"0123456789")[:-5])
        _, ended = read_until_closed(sock, 5)
    assert ended in ("eof", "reset")
    assert wait_for(lambda: len(tagged(server.records(), "slowbody")) == 1)
    record = tagged(server.records(), "slowbody")[0]
    assert record.body == b"01234"
    assert str(record.extra["error"]).startswith("incomplete_body")


# =============================================================================
# What holds: stopping, worker processes
# =============================================================================


def test_sigterm_finishes_bodies_in_flight_and_closes_idle_connections(
    collector_factory: CollectorFactory,
) -> None:
    running = collector_factory()
    ids = [new_id() for _ in range(4)]
    busy = [connect(running.port) for _ in ids]
    for sock, test_id in zip(busy, ids, strict=True):
        sock.sendall(post(test_id, b"0123456789")[:-5])
    idle = connect(running.port)
    idle.sendall(pixel(new_id()))
    assert read_answers(idle, 1)[0][0][0] == 200
    half_head = connect(running.port)
    half_head.sendall(b"GET /i?x=1 HTTP/1.1\r\n")
    time.sleep(0.3)

    running.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with idle, half_head:
        assert read_until_closed(idle, 3) == (b"", "eof")
        assert read_until_closed(half_head, 3) == (b"", "eof")
    assert refuses_connections(running.port)
    late = new_id()
    for sock in busy:
        sock.sendall(b"56789" + pixel(late))  # the pixel must not be taken
    for sock in busy:
        reply, ended = read_until_closed(sock, 5)
        got = answers(reply)
        assert [a[0] for a in got] == [200] and ended == "eof"
        assert got[0][1]["connection"] == "close"
        sock.close()

    assert running.process.wait(15) == 0
    for test_id in ids:
        assert running.record_for(test_id).body == b"0123456789"
    assert running.records_for(late) == []
    assert all(p.suffix == ".jsonl" for p in running.raw_dir.iterdir())


def test_every_pipelined_200_is_recorded_exactly_once_across_sigterm(
    collector_factory: CollectorFactory,
) -> None:
    running = collector_factory()
    acknowledged: list[str] = []
    lock = threading.Lock()

    def pipeline() -> None:
        deadline = time.monotonic() + 10
        try:
            sock = connect(running.port)
        except OSError:
            return
        with sock:
            while time.monotonic() < deadline:
                batch = [new_id() for _ in range(10)]
                try:
                    sock.sendall(b"".join(pixel(i, b"e=pv") for i in batch))
                except OSError:
                    return
                got, ended = read_answers(sock, len(batch))
                with lock:
                    acknowledged.extend(
                        i for i, a in zip(batch, got, strict=False) if a[0] == 200
                    )
                if ended != "complete":
                    return

    threads = [threading.Thread(target=pipeline) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.7)
    assert running.stop(signal.SIGTERM) == 0
    for thread in threads:
        thread.join()

    counts: dict[str | None, int] = {}
    for record in running.records():
        key = record.header(TEST_ID_HEADER)
        counts[key] = counts.get(key, 0) + 1
    assert len(acknowledged) > 50
    assert all(counts.get(i) == 1 for i in acknowledged)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(x) for x in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_sigkill_of_one_worker_starts_another_and_serving_goes_on(
    collector_factory: CollectorFactory,
) -> None:
    running = collector_factory({"PLOWLINE_COLLECTOR_WORKERS": "2"})
    assert wait_for(lambda: len(_children(running.process.pid)) == 2)
    workers = _children(running.process.pid)
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(
        lambda: (
            len(_children(running.process.pid)) == 2
            and victim not in _children(running.process.pid)
        )
    )
    ids = [new_id() for _ in range(30)]
    for test_id in ids:
        reply, _ = exchange(
            running.port, pixel(test_id, extra=b"Connection: close\r\n")
        )
        assert statuses(reply) == [200]
    assert running.stop() == 0
    assert f"Collector worker {victim} died (exit code -9); starting another" in (
        running.log()
    )
    for test_id in ids:
        running.record_for(test_id)


def test_sigkill_of_the_supervisor_stops_the_workers(
    collector_factory: CollectorFactory,
) -> None:
    running = collector_factory({"PLOWLINE_COLLECTOR_WORKERS": "2"})
    assert wait_for(lambda: len(_children(running.process.pid)) == 2)
    workers = _children(running.process.pid)
    test_id = new_id()
    reply, _ = exchange(running.port, pixel(test_id, extra=b"Connection: close\r\n"))
    assert statuses(reply) == [200]

    running.process.kill()
    running.process.wait(5)
    assert wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=10)
    assert refuses_connections(running.port)
    running.record_for(test_id)
    # The workers stopped cleanly: their raw logs are closed.
    assert all(p.suffix == ".jsonl" for p in running.raw_dir.iterdir())


# =============================================================================
# Bugs: each test asserts the correct behaviour and is expected to fail now
# =============================================================================


def upgrade_request(target: bytes) -> bytes:
    return (
        b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\n\r\n"
    )


def test_upgrade_pixel_request_is_answered_then_closed(
    collector: RunningCollector,
) -> None:
    reply, ended = exchange(collector.port, upgrade_request(b"/i?e=pv"), timeout=2)
    got = answers(reply)
    assert [a[0] for a in got] == [200]
    assert got[0][1].get("connection") == "close"
    assert ended == "eof"


@pytest.mark.parametrize("target", [b"/health", b"/com.acme/v1?e=pv"])
def test_upgrade_request_answered_the_asgi_way_is_then_closed(
    collector: RunningCollector, target: bytes
) -> None:
    reply, ended = exchange(collector.port, upgrade_request(target), timeout=1.5)
    got = answers(reply)
    assert len(got) == 1
    assert got[0][1].get("connection") == "close"
    assert ended == "eof"


@pytest.mark.parametrize("version", [b"1.0", b"1.1"])
def test_bytes_after_a_closing_request_are_ignored(
    collector: RunningCollector, version: bytes
) -> None:
    first, second = new_id(), new_id()
    closing = pixel(first, extra=b"Connection: close\r\n" if version == b"1.1" else b"")
    closing = closing.replace(b"HTTP/1.1", b"HTTP/" + version, 1)

    def unparsable_count() -> float:
        reply, _ = exchange(
            collector.port, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        text = answers(reply)[0][2].decode()
        return metric(
            text, "plowline_collector_requests_total", group="other", status="400"
        )

    before = unparsable_count()
    reply, ended = exchange(collector.port, closing + pixel(second))
    time.sleep(0.2)

    assert statuses(reply) == [200] and ended == "eof"
    collector.record_for(first)
    records = collector.records()
    assert tagged(records, second) == []
    assert unparsed_holding(records, first.encode()) == []
    assert unparsable_count() == before


@pytest.mark.parametrize(
    "first",
    [
        b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /not/a/route/here HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    ],
    ids=["health-with-body", "404-post"],
)
def test_request_behind_a_body_the_application_did_not_read(
    collector: RunningCollector, first: bytes
) -> None:
    # Whole in one read: the body is complete, so the connection goes on and
    # the requests behind it are answered and recorded once.
    pixel_id, post_id = new_id(), new_id()
    with connect(collector.port) as sock:
        sock.sendall(first + pixel(pixel_id) + post(post_id, b"hi"))
        got, _ = read_answers(sock, 3)
    assert [a[0] for a in got][1:] == [200, 200]
    assert len(collector.records_for(pixel_id)) == 1
    assert collector.record_for(post_id).body == b"hi"

    # The body cut across reads: the answer closes the connection, and a
    # request sent after it is neither recorded nor answered. (The version
    # first tested recorded such requests without answering them.)
    late = new_id()
    with connect(collector.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(first[:-2])
        time.sleep(0.1)
        with contextlib.suppress(OSError):
            sock.sendall(first[-2:] + pixel(late))
        reply, ended = read_until_closed(sock, 3)
    got = answers(reply)
    assert len(got) == 1 and got[0][1]["connection"] == "close" and ended == "eof"
    time.sleep(0.2)
    assert collector.records_for(late) == []


def test_unparsable_request_keeps_its_raw_utf8_bytes(
    collector: RunningCollector,
) -> None:
    marker = new_id().encode()
    request = (
        b"GET /i?m=" + marker + b"&q=\xc3\xa9 HTTP/1.1\r\nHost: t\r\n"
        b"bad header line\r\n\r\n"
    )
    reply, _ = exchange(collector.port, request)
    assert statuses(reply) == [400]
    assert wait_for(lambda: len(unparsed_holding(collector.records(), marker)) == 1)
    assert unparsed_holding(collector.records(), marker)[0].body == request


@pytest.mark.xfail(
    strict=True,
    reason="Known limitation: the unparsable record holds the reads that "
    "held the bad request, so requests before it in the same read, already "
    "recorded and answered, are in it too (llhttp gives no offsets)",
)
def test_unparsable_record_holds_only_the_bad_request(
    collector: RunningCollector,
) -> None:
    good = new_id()
    bad = b"BREW /pot?m=" + new_id().encode() + b" HTTP/1.1\r\n\r\n"
    reply, _ = exchange(collector.port, pixel(good) + post(new_id(), b"x") + bad)
    assert statuses(reply) == [200, 200, 400]
    assert wait_for(lambda: len(unparsed_holding(collector.records(), bad)) == 1)
    assert unparsed_holding(collector.records(), bad)[0].body == bad


def test_unparsable_request_split_across_reads_is_kept_whole(
    collector: RunningCollector,
) -> None:
    marker = new_id().encode()
    parts = [
        b"GET /i?m=" + marker + b" HTTP/1.1\r\n",
        b"Host: t\r\n",
        b"bad line\r\n\r\n",
    ]
    with connect(collector.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for part in parts:
            sock.sendall(part)
            time.sleep(0.1)
        reply, _ = read_until_closed(sock)
    assert statuses(reply) == [400]
    assert wait_for(
        lambda: len(unparsed_holding(collector.records(), marker)) == 1, 2.0
    )
    assert unparsed_holding(collector.records(), marker)[0].body == b"".join(parts)


def test_raw_utf8_target_split_across_reads_is_recorded(
    collector: RunningCollector,
) -> None:
    test_id = new_id()
    request = pixel(test_id, b"q=\xc3\xa9\xc3\xa9", b"Connection: close\r\n")
    cut = request.index(b"\xa9")  # inside the first two-byte character
    with connect(collector.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request[:cut])
        time.sleep(0.1)
        sock.sendall(request[cut:])
        reply, _ = read_until_closed(sock)
    assert statuses(reply) == [200]
    assert collector.record_for(test_id).querystring == "q=éé".encode()


@pytest.mark.xfail(
    strict=True,
    reason="Known limitation: raw UTF-8 in the request line of a pipelined "
    "request that follows another read by llhttp in the same read is refused "
    "400 (only a request line that starts what llhttp is given is masked)",
)
def test_raw_utf8_target_after_another_request_in_one_read_is_recorded(
    collector: RunningCollector,
) -> None:
    second = new_id()
    # /health is not a plain request: llhttp reads it, and the next one after it.
    reply, _ = exchange(
        collector.port,
        b"GET /health HTTP/1.1\r\nHost: t.example\r\n\r\n"
        + pixel(second, b"q=\xc3\xa9", b"Connection: close\r\n"),
    )
    assert statuses(reply) == [200, 200]
    assert collector.record_for(second).querystring == "q=é".encode()


@pytest.mark.skipif(not plainpath.COMPILED, reason="the C straight path is not built")
def test_raw_utf8_target_after_a_plain_request_in_one_read_is_recorded(
    collector: RunningCollector,
) -> None:
    first, second = new_id(), new_id()
    reply, _ = exchange(
        collector.port,
        pixel(first) + pixel(second, b"q=\xc3\xa9", b"Connection: close\r\n"),
    )
    assert statuses(reply) == [200, 200]
    assert collector.record_for(first).querystring is not None
    assert collector.record_for(second).querystring == "q=é".encode()


def test_absolute_form_target_with_raw_utf8_is_recorded(
    collector: RunningCollector,
) -> None:
    test_id = new_id()
    request = (
        b"GET http://t.example/i?q=\xc3\xa9 HTTP/1.1\r\nHost: t.example\r\n"
        b"x-test-id: " + test_id.encode() + b"\r\nConnection: close\r\n\r\n"
    )
    reply, _ = exchange(collector.port, request)
    assert statuses(reply) == [200]
    assert collector.record_for(test_id).querystring == "q=é".encode()


def test_trailers_never_reach_the_recorded_headers(
    collector: RunningCollector,
) -> None:
    test_id = new_id()
    request = (
        b"POST "
        + TP2
        + b" HTTP/1.1\r\nHost: t\r\nx-test-id: "
        + test_id.encode()
        + b"\r\nx-name: caf\xc3\xa9\r\nTransfer-Encoding: chunked\r\n"
        + b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\nx-trailer: late\r\n\r\n"
    )
    reply, _ = exchange(collector.port, request)
    assert statuses(reply) == [200]
    record = collector.record_for(test_id)
    assert record.header("x-name") == "café"
    assert record.header("x-trailer") is None


# --- in this process ------------------------------------------------------------


@pytest.mark.parametrize("part", [b"x-big: ", b""], ids=["value", "name"])
def test_head_limit_covers_a_header_line_still_arriving(
    in_process: Callable[..., InProcess], part: bytes
) -> None:
    server = in_process(head_limit=64 * 1024)
    with connect(server.port) as sock:
        sock.sendall(b"GET /i HTTP/1.1\r\nHost: t\r\n" + part)
        with contextlib.suppress(OSError):
            sock.sendall(b"a" * (1024 * 1024))
        reply, _ = read_until_closed(sock, 2)
    assert statuses(reply) == [431]


def test_trailers_are_held_within_the_header_lines_limit(
    in_process: Callable[..., InProcess],
) -> None:
    limit = 100
    server = in_process(header_lines_limit=limit)
    request = (
        b"POST "
        + TP2
        + b" HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"3\r\nabc\r\n0\r\n"
        + b"t: v\r\n" * 5000
    )
    with connect(server.port) as sock:
        sock.sendall(request)
        time.sleep(0.5)
        held: list[int] = server.call(
            lambda: [len(c.headers) for c in server.state.connections]
        )
    assert all(count <= limit for count in held), held


def test_answers_not_read_by_the_client_stop_the_reading(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process()
    requests = b"GET /health HTTP/1.1\r\n\r\n" * 4000  # 96 KB
    goal = 6 * 1024 * 1024  # of requests: about 27 MiB of answers
    sent = 0
    stalls = 0
    deadline = time.monotonic() + 12
    with connect(server.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(0.5)
        view = memoryview(requests)
        offset = 0
        while sent < goal and stalls < 6 and time.monotonic() < deadline:
            try:
                count = sock.send(view[offset:])
            except TimeoutError:
                stalls += 1  # the server stopped reading: what should happen
                continue
            stalls = 0
            sent += count
            offset = (offset + count) % len(requests)
        time.sleep(0.5)
        buffered = server.call(
            lambda: sum(
                c.transport.get_write_buffer_size()
                for c in server.state.connections
                if c.transport is not None
            )
        )
        still_open = server.call(lambda: len(server.state.connections))
    assert still_open == 1
    assert buffered < 4 * 1024 * 1024, (sent, buffered)


def test_end_of_stream_mid_body_is_answered_and_recorded_at_once(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process(request_timeout=3.0)
    with connect(server.port) as sock:
        sock.sendall(post("halfclosed", b"0123456789")[:-5])
        sock.shutdown(socket.SHUT_WR)
        reply, _ = read_until_closed(sock, 2)
    with connect(server.port) as sock:
        sock.sendall(post("closed", b"0123456789")[:-5])
    assert statuses(reply) == [400]
    for test_id in ("halfclosed", "closed"):

        def recorded(wanted: str = test_id) -> bool:
            return len(tagged(server.records(), wanted)) == 1

        assert wait_for(recorded, 1.0)
        record = tagged(server.records(), test_id)[0]
        assert record.body == b"01234"
        assert str(record.extra["error"]).startswith("incomplete_body")


def test_slow_body_gets_an_answer_before_the_close(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process(request_timeout=0.5)
    with connect(server.port) as sock:
        sock.sendall(post("slow", b"0123456789")[:-5])
        reply, _ = read_until_closed(sock, 4)
    assert statuses(reply) in ([408], [400])


@pytest.mark.parametrize("first", ["pixel", "post"])
def test_hundreds_of_pipelined_requests_are_all_answered(
    in_process: Callable[..., InProcess], first: str
) -> None:
    server = in_process()
    lead = pixel("lead") if first == "pixel" else post("lead", b"x" * 10)[:-5]
    many = b"".join(pixel(f"p{i}") for i in range(500))
    last = b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"
    with connect(server.port) as sock:
        sock.sendall(lead)
        if first == "post":
            time.sleep(0.1)  # the POST waits for the rest of its body
            sock.sendall(b"x" * 5 + many + last)
        else:
            sock.sendall(many + last)
        got, _ = read_answers(sock, 502, timeout=3)
    assert len(got) == 502 and all(a[0] == 200 for a in got)
    assert got[-1][2] == b"ok"


@pytest.mark.parametrize("body", [b"hi", b""], ids=["body-in-read", "body-later"])
def test_bad_absolute_target_with_a_body_is_answered(
    collector: RunningCollector, body: bytes
) -> None:
    # The path is taken after the authority, which is not checked: /x, a 404.
    request = (
        b"POST http://[::1/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    reply, ended = exchange(collector.port, request, timeout=2)
    assert statuses(reply) == [404] and ended == "eof"
    assert "Fatal error" not in collector.log()
