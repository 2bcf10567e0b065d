"""The collector's HTTP/1.1 server (plowline.collector.http1) over real sockets.

Each test serves a CollectorApp from the test's own event loop on a loopback
port it opened, and talks to it with raw bytes, so every byte of the answers
can be checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from asgi_client import MemoryWriter
from collector_process import CollectorFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from raw_http import FakeTransport

from plowline.collector.app import PIXEL, CollectorApp
from plowline.collector.config import CollectorConfig
from plowline.collector.http1 import ServerState
from plowline.enrich.adapters import to_raw_events
from plowline.enrich.failed import FailedEvent
from plowline.rawlog.record import RawRecord, decode_record, encode_record
from plowline.rawlog.writer import RawLogWriter

NOW = 1796398275.5
TP2 = b"/com.snowplowanalytics.snowplow/tp2"


@contextlib.asynccontextmanager
async def serving(
    app: Any, **settings: float
) -> AsyncIterator[tuple[int, ServerState]]:
    loop = asyncio.get_running_loop()
    state = ServerState(app, loop, **settings)  # type: ignore[arg-type]
    server = await loop.create_server(state.protocol, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port, state
    finally:
        server.close()
        state.close()
        await server.wait_closed()


def new_app(writer: Any | None = None) -> tuple[CollectorApp, MemoryWriter]:
    memory = writer or MemoryWriter()
    return CollectorApp(CollectorConfig(), memory, clock=lambda: NOW), memory


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One answer: its head (without the blank line) and its body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    status = int(head.split(b" ", 2)[1])
    if status == 100 or head.startswith(b"HEAD"):
        length = 0
    body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
    return head[:-4], body


def status_of(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def pixel_get(query: bytes, *extra: bytes) -> bytes:
    return (
        b"GET /i?"
        + query
        + b" HTTP/1.1\r\nHost: c.example\r\nUser-Agent: test/1\r\n"
        + b"".join(extra)
        + b"\r\n"
    )


def test_the_direct_and_the_asgi_way_answer_and_record_alike() -> None:
    request = pixel_get(
        b"e=pv&page=Home",
        b'sec-ch-ua: "Chromium";v="124"\r\n',
        b"Origin: https://shop.example\r\n",
        b"Cookie: a=1; sp=5d7c0b9e-0001-4000-8000-00000000beef\r\n",
    )
    answers: list[bytes] = []
    records: list[RawRecord] = []
    for direct in (True, False):

        async def exchange(direct: bool = direct) -> None:
            app, writer = new_app()
            async with serving(app) as (port, state):
                if not direct:
                    state.plain_pixel = None
                reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
                writer_.write(request)
                head, body = await read_answer(reader)
                writer_.close()
            assert body == PIXEL
            # The date changes with the second: the rest must be the same.
            lines = [x for x in head.split(b"\r\n") if not x.startswith(b"date:")]
            answers.append(b"\r\n".join(lines))
            records.extend(writer.records)

        run(exchange)

    assert answers[0] == answers[1]
    assert b"set-cookie: sp=5d7c0b9e-0001-4000-8000-00000000beef;" in answers[0]
    assert b"access-control-allow-origin: https://shop.example" in answers[0]
    direct_record, asgi_record = records
    assert direct_record.id != asgi_record.id
    assert direct_record.headers == asgi_record.headers
    assert direct_record.querystring == asgi_record.querystring == b"e=pv&page=Home"
    assert (direct_record.ip, direct_record.tstamp) == ("127.0.0.1", 1796398275500)
    assert direct_record.network_userid == asgi_record.network_userid


def test_pipelined_requests_are_answered_in_order() -> None:
    body = b'{"schema":"iglu:x","data":[{"e":"pv"}]}'
    requests = (
        pixel_get(b"n=1")
        + b"POST "
        + TP2
        + b" HTTP/1.1\r\nHost: c\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
        + b"GET /health HTTP/1.1\r\nHost: c\r\n\r\n"
        + pixel_get(b"n=2")
    )

    async def exchange() -> None:
        app, writer = new_app()
        async with serving(app) as (port, _):
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(requests)
            answers = [await read_answer(reader) for _ in range(4)]
            writer_.close()
        assert [status_of(h) for h, _ in answers] == [200, 200, 200, 200]
        assert [b for _, b in answers] == [PIXEL, b"ok", b"ok", PIXEL]
        assert [(r.method, r.querystring, r.body) for r in writer.records] == [
            ("GET", b"n=1", None),
            ("POST", None, body),
            ("GET", b"n=2", None),
        ]

    run(exchange)


def test_expect_100_continue_is_answered_before_the_body() -> None:
    body = b"e=pv&aid=shop"

    async def exchange() -> None:
        app, writer = new_app()
        async with serving(app) as (port, _):
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(
                b"POST " + TP2 + b" HTTP/1.1\r\nHost: c\r\nExpect: 100-continue\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            interim, _ = await read_answer(reader)
            assert interim == b"HTTP/1.1 100 Continue"
            assert writer.records == []  # nothing before the body
            writer_.write(body)
            head, answer = await read_answer(reader)
            writer_.close()
        assert (status_of(head), answer) == (200, b"ok")
        assert writer.records[0].body == body

    run(exchange)


def test_a_chunked_body_is_recorded_decoded() -> None:
    async def exchange() -> None:
        app, writer = new_app()
        async with serving(app) as (port, _):
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(
                b"POST " + TP2 + b" HTTP/1.1\r\nHost: c\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\ne=pv&\r\n"
            )
            await asyncio.sleep(0.05)  # the rest in another read
            writer_.write(b"7;ext=1\r\naid=abc\r\n0\r\n\r\n")
            head, answer = await read_answer(reader)
            writer_.close()
        assert (status_of(head), answer) == (200, b"ok")
        assert writer.records[0].body == b"e=pv&aid=abc"

    run(exchange)


@pytest.mark.parametrize(
    ("request_line", "keep_alive"),
    [
        (b"GET /i?e=pv HTTP/1.0\r\n\r\n", False),
        (b"GET /i?e=pv HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
        (b"GET /i?e=pv HTTP/1.1\r\nConnection: close\r\n\r\n", False),
    ],
    ids=["1.0", "1.0-keep-alive", "1.1-close"],
)
def test_the_connection_is_kept_only_when_the_client_asks(
    request_line: bytes, keep_alive: bool
) -> None:
    async def exchange() -> None:
        app, writer = new_app()
        async with serving(app) as (port, _):
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(request_line)
            head, body = await read_answer(reader)
            assert body == PIXEL
            if keep_alive:
                assert header(head, b"connection") == b"keep-alive"
                writer_.write(request_line)
                second, _ = await read_answer(reader)
                assert status_of(second) == 200
            else:
                assert header(head, b"connection") == b"close"
                assert await asyncio.wait_for(reader.read(), 5) == b""
            writer_.close()
        assert len(writer.records) == (2 if keep_alive else 1)
        assert header(head, b"date") is not None

    run(exchange)


def test_unparsable_bytes_are_answered_400_and_kept_for_enrich() -> None:
    garbage = b"GET /i?e=pv BAD/9\r\nHost: c\r\n\r\n"

    async def exchange() -> None:
        app, writer = new_app()
        async with serving(app) as (port, _):
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(garbage)
            head, body = await read_answer(reader)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer_.close()
        assert status_of(head) == 400
        assert body.startswith(b"malformed HTTP request: ")
        [record] = writer.records
        assert record.body == garbage
        assert (record.method, record.path) == ("", "")
        assert record.extra["error"] == "unparsable_request: " + body.decode()
        [failed] = to_raw_events(record, now_ms=1)
        assert isinstance(failed, FailedEvent)
        assert failed.type == "collector_payload_format_violation"
        assert failed.failure["messages"] == [{"error": record.extra["error"]}]

    run(exchange)


def test_raw_utf8_in_the_target_is_kept() -> None:
    async def exchange() -> None:
        app, writer = new_app()
        async with serving(app) as (port, _):
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(b"GET /i?page=caf\xc3\xa9&x=\xff HTTP/1.1\r\nHost: c\r\n\r\n")
            head, _ = await read_answer(reader)
            writer_.close()
        assert status_of(head) == 200
        assert writer.records[0].querystring == b"page=caf\xc3\xa9&x=\xff"

    run(exchange)


def test_a_head_that_does_not_arrive_in_time_gets_408() -> None:
    async def exchange() -> None:
        app, writer = new_app()
        async with serving(app, request_timeout=0.3) as (port, _):
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(b"GET /i?e=pv HTTP/1.1\r\nHost: c\r\n")  # no blank line
            head, body = await read_answer(reader)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer_.close()
        assert status_of(head) == 408
        assert body == b"request not received in time"
        assert writer.records == []

    run(exchange)


def test_a_body_that_stops_arriving_is_recorded_as_incomplete() -> None:
    async def exchange() -> None:
        app, writer = new_app()
        async with serving(app, request_timeout=0.3) as (port, _):
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(
                b"POST "
                + TP2
                + b" HTTP/1.1\r\nHost: c\r\nContent-Length: 10\r\n\r\nabc"
            )
            # The server gives up on the body: the application answers, and
            # the connection is closed.
            head, body = await read_answer(reader)
            assert (status_of(head), header(head, b"connection")) == (400, b"close")
            assert body == b"request body incomplete or malformed"
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer_.close()
        [record] = writer.records
        assert record.body == b"abc"
        assert record.extra["error"].startswith("incomplete_body: ")

    run(exchange)


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    async def exchange() -> None:
        app, _ = new_app()
        async with serving(app, keepalive_timeout=0.3) as (port, state):
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(pixel_get(b"e=pv"))
            await read_answer(reader)
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert time.monotonic() - started < 3
            writer_.close()
            assert not state.connections

    run(exchange)


def test_an_application_error_is_a_500_and_the_server_goes_on() -> None:
    class Failing:
        calls = 0

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            Failing.calls += 1
            if scope["path"] == "/boom":
                raise ValueError("boom")
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def exchange() -> None:
        async with serving(Failing()) as (port, _):
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(b"GET /boom HTTP/1.1\r\nHost: c\r\n\r\n")
            head, body = await read_answer(reader)
            assert (status_of(head), body) == (500, b"internal server error")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer_.close()
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(b"GET /fine HTTP/1.1\r\nHost: c\r\n\r\n")
            head, _ = await read_answer(reader)
            assert status_of(head) == 204
            writer_.close()
        assert Failing.calls == 2

    run(exchange)


def test_a_raw_log_sink_takes_the_direct_way(tmp_path: Path) -> None:
    async def exchange() -> None:
        raw = RawLogWriter(tmp_path)
        app = CollectorApp(CollectorConfig(raw_dir=tmp_path), raw)
        asked: list[bytes] = []
        original = app.plain_pixel

        def spy(*request: Any) -> Any:
            asked.append(request[1])
            return original(*request)

        async with serving(app) as (port, state):
            state.plain_pixel = spy
            reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
            writer_.write(pixel_get(b"e=pv"))
            assert status_of((await read_answer(reader))[0]) == 200
            writer_.write(b"GET /health HTTP/1.1\r\n\r\n")
            assert status_of((await read_answer(reader))[0]) == 200
            writer_.close()
        raw.close()
        assert asked == [b"/i", b"/health"]  # /health: declined, then ASGI
        lines = b"".join(p.read_bytes() for p in tmp_path.iterdir()).splitlines()
        assert len(lines) == 1 and b'"querystring":"e=pv"' in lines[0]

    run(exchange)


# --- worker processes -----------------------------------------------------------


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def _alive(pid: int) -> bool:
    # A worker that ended but was not reaped yet (a zombie) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_for(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.mark.slow
def test_a_dead_worker_is_replaced_and_workers_end_with_the_collector(
    collector_factory: CollectorFactory,
) -> None:
    running = collector_factory(env={"PLOWLINE_COLLECTOR_WORKERS": "2"})
    main = running.process
    assert _wait_for(lambda: len(_children(main.pid)) == 2)
    url = running.base_url + "/i?e=pv"
    with httpx.Client(trust_env=False, timeout=5) as client:
        assert _wait_for(lambda: _answers(client, url))
        victim = min(_children(main.pid))
        os.kill(victim, signal.SIGKILL)
        assert _wait_for(lambda: len(_children(main.pid) - {victim}) == 2)
        assert victim not in _children(main.pid)
        for _ in range(20):  # new connections: both workers answer
            assert client.get(url, headers={"connection": "close"}).status_code == 200
    workers = _children(main.pid)
    assert f"Collector worker {victim} died (exit code -9)" in running.log()

    os.kill(main.pid, signal.SIGKILL)
    main.wait(10)
    # Told by the kernel that their parent is gone, the workers stop.
    assert _wait_for(lambda: not any(_alive(w) for w in workers))


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.TransportError:
        return False


# --- plain pixel requests, stored in batches -------------------------------------


class _CountingWriter(RawLogWriter):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.calls: list[int] = []
        self.fail = False

    def write_line(self, line: bytes) -> int:
        if self.fail:
            raise OSError(28, "No space left on device")
        self.calls.append(line.count(b"\n"))
        return super().write_line(line)


def _three_connections(app: CollectorApp) -> tuple[ServerState, list[FakeTransport]]:
    state = ServerState(app, asyncio.get_running_loop())
    transports = []
    for n in range(3):
        connection = state.protocol()
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        connection.data_received(pixel_get(b"n=%d" % n, b"Origin: https://o%d\r\n" % n))
        transports.append(transport)
    return state, transports


def test_plain_requests_of_one_turn_are_written_together_then_answered(
    tmp_path: Path,
) -> None:
    async def exchange() -> None:
        writer = _CountingWriter(tmp_path)
        app = CollectorApp(CollectorConfig(raw_dir=tmp_path), writer)
        state, transports = _three_connections(app)
        assert writer.calls == [] and all(not t.sent for t in transports)
        state.flush_plain()
        state.close()
        writer.close()
        assert writer.calls == [3]
        for n, transport in enumerate(transports):
            [answer] = transport.sent
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"access-control-allow-origin: https://o%d\r\n" % n in answer
            assert answer.endswith(b"\r\n\r\n" + PIXEL)
        lines = b"".join(p.read_bytes() for p in tmp_path.iterdir()).splitlines()
        assert [
            b'"querystring":"n=%d"' % n in line for n, line in enumerate(lines)
        ] == [
            True,
            True,
            True,
        ]
        assert app.metrics.records_written == 3
        assert app.metrics.requests[("pixel", 200)] == 3

    run(exchange)


def test_a_batch_that_cannot_be_written_is_answered_503(tmp_path: Path) -> None:
    async def exchange() -> None:
        writer = _CountingWriter(tmp_path)
        writer.fail = True
        app = CollectorApp(CollectorConfig(raw_dir=tmp_path), writer)
        state, transports = _three_connections(app)
        state.flush_plain()
        state.close()
        for n, transport in enumerate(transports):
            [answer] = transport.sent
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert b"access-control-allow-origin: https://o%d\r\n" % n in answer
            assert b"set-cookie" not in answer
            assert answer.endswith(b"\r\n\r\nservice unavailable")
        assert app.metrics.write_errors == 3
        assert app.metrics.requests[("pixel", 503)] == 3
        assert app.metrics.records_written == 0

    run(exchange)


# --- plain POST requests ---------------------------------------------------------


def _post_bytes(body: bytes, headers: list[tuple[bytes, bytes]], path: bytes) -> bytes:
    head = b"POST " + path + b" HTTP/1.1\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


def _one_way(request: bytes, *, direct: bool) -> tuple[bytes, list[RawRecord], int]:
    """Answer and records of one request, the straight way or the ASGI way,
    with a raw log (the straight way needs a sink that stores at once)."""

    async def exchange(folder: Path) -> tuple[bytes, int]:
        writer = RawLogWriter(folder)
        app = CollectorApp(CollectorConfig(raw_dir=folder), writer, clock=lambda: NOW)
        taken: list[bool] = []
        state = ServerState(app, asyncio.get_running_loop())
        original = app.plain_post

        def spy(*request: Any) -> Any:
            record = original(*request)
            taken.append(record is not None)
            return record

        state.plain_post = spy if direct else None
        connection = state.protocol()
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        connection.data_received(request)
        state.flush_plain()
        await asyncio.sleep(0)  # an ASGI exchange that waited, if any
        state.close()
        writer.close()
        answer = b"".join(transport.sent)
        lines = [x for x in answer.split(b"\r\n") if not x.startswith(b"date:")]
        return b"\r\n".join(lines), sum(taken)

    with tempfile.TemporaryDirectory() as temp:
        answer, taken = asyncio.run(exchange(Path(temp)))
        records = [
            decode_record(line)
            for path in sorted(Path(temp).iterdir())
            for line in path.read_bytes().splitlines()
        ]
    return answer, records, taken


POST_HEADERS = [
    (b"Host", b"c.example"),
    (b"Content-Type", b"application/json; charset=UTF-8"),
    (b"Origin", b"https://shop.example"),
    (b"Cookie", b"sp=5d7c0b9e-0001-4000-8000-00000000beef"),
    (b"sec-ch-ua", b'"Chromium";v="124"'),
]


def test_a_plain_post_is_answered_and_recorded_as_the_asgi_way_does() -> None:
    body = b'{"schema":"iglu:x","data":[{"e":"pv","page":"Caf\xc3\xa9 \\"quoted\\""}]}'
    request = _post_bytes(body, POST_HEADERS, TP2)
    direct_answer, direct_records, taken = _one_way(request, direct=True)
    asgi_answer, asgi_records, _ = _one_way(request, direct=False)

    assert taken == 1
    assert direct_answer == asgi_answer
    assert direct_answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert direct_answer.endswith(b"\r\n\r\nok")
    [direct], [general] = direct_records, asgi_records
    assert direct.body == general.body == body
    assert direct.content_type == "application/json; charset=utf-8"
    assert (direct.method, direct.path) == ("POST", TP2.decode())
    assert direct.headers == general.headers
    assert direct.network_userid == general.network_userid


@settings(max_examples=150, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=80),
        st.text(max_size=60).map(lambda text: text.encode("utf-8")),
    ),
    extra=st.lists(
        st.tuples(
            st.sampled_from([b"x-a", b"User-Agent", b"Referer", b"SP-Anonymous"]),
            # Header values the parser takes: no control characters.
            st.binary(min_size=1, max_size=12).filter(
                lambda v: all(b >= 0x20 and b != 0x7F for b in v) and v.strip() == v
            ),
        ),
        max_size=3,
        unique_by=lambda pair: pair[0].lower(),
    ),
    path=st.sampled_from([TP2, b"/com.acme/v1", b"/r/tp2", b"/com.acme%2Fx/v1"]),
)
def test_plain_and_asgi_posts_agree_on_random_requests(
    body: bytes, extra: list[tuple[bytes, bytes]], path: bytes
) -> None:
    request = _post_bytes(body, [*POST_HEADERS, *extra], path)
    direct_answer, direct_records, _ = _one_way(request, direct=True)
    asgi_answer, asgi_records, _ = _one_way(request, direct=False)

    assert direct_answer == asgi_answer
    assert len(direct_records) == len(asgi_records)
    for direct, general in zip(direct_records, asgi_records, strict=True):
        assert direct.id != general.id
        assert _without_id(direct) == _without_id(general)


def _without_id(record: RawRecord) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(encode_record(record))
    del data["id"]
    return data
