"""Second pass of attacks on the collector's own HTTP server: the sinks other
than the plain raw log (fsync durability, stdout, NATS), the batched plain
pixel path (many connections, a batch that cannot be written, disconnects,
mixing with ASGI requests), ``/metrics`` under all of this, and ``plowline up``
end to end.

The first pass (test_http1_breaking.py) covered the HTTP framing itself; this
file does not repeat it.

The two bugs it found (an empty raw-log file left per failed write on a full
disk; a batch left unanswered when its store raised something other than
OSError) are fixed; their tests are the last two of the file's groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from collector_process import (
    TEST_ID_HEADER,
    CollectorFactory,
    free_port,
)
from nats_support import NATS_HOST, NATS_PORT, TcpProxy, nats_reachable
from raw_http import (
    FakeTransport,
    connect,
    metric,
    new_id,
    pixel,
    post,
    read_until_closed,
    statuses,
    wait_for,
)

from plowline.collector.config import CollectorConfig
from plowline.collector.http1 import ServerState
from plowline.collector.server import build_app
from plowline.rawlog.record import RawRecord, decode_record

pytestmark = pytest.mark.slow

PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
REQUESTS = "plowline_collector_requests_total"


# --- raw sockets --------------------------------------------------------------


def exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, str]:
    with connect(port) as sock:
        sock.sendall(data)
        return read_until_closed(sock, timeout)


Answer = tuple[int, dict[str, str], bytes]


def parse_answers(
    data: bytes, heads: frozenset[int] = frozenset()
) -> tuple[list[Answer], bytes]:
    """Complete answers at the start of ``data`` (content-length or chunked);
    answers numbered in ``heads`` are to HEAD requests (no body)."""
    out: list[Answer] = []
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
        if len(out) in heads:
            out.append((status, headers, b""))
            rest = after
            continue
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            tail = after
            while True:
                line, sep, tail = tail.partition(b"\r\n")
                if not sep:
                    return out, rest
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    _, sep, tail = tail.partition(b"\r\n")
                    if not sep:
                        return out, rest
                    break
                if len(tail) < size + 2:
                    return out, rest
                body += tail[:size]
                tail = tail[size + 2 :]
            out.append((status, headers, body))
            rest = tail
            continue
        size = int(headers.get("content-length", "0"))
        if len(after) < size:
            return out, rest
        out.append((status, headers, after[:size]))
        rest = after[size:]


def read_answers(
    sock: socket.socket,
    count: int,
    timeout: float = 5.0,
    heads: frozenset[int] = frozenset(),
) -> tuple[list[Answer], str]:
    sock.settimeout(timeout)
    buffer = b""
    while True:
        found, _ = parse_answers(buffer, heads)
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


def read_records(raw_dir: Path) -> list[RawRecord]:
    if not raw_dir.exists():
        return []
    records = []
    for path in sorted(raw_dir.iterdir()):
        if path.name.startswith("."):
            continue
        for line in path.read_bytes().split(b"\n"):
            if line:
                records.append(decode_record(line))
    return records


def ids_of(records: list[RawRecord]) -> Counter[str | None]:
    return Counter(r.header(TEST_ID_HEADER) for r in records)


def request_counts(text: str) -> dict[tuple[str, int], float]:
    out = {}
    for group, status, value in re.findall(
        REQUESTS + r'\{group="(\w+)",status="(\d+)"\} ([0-9.e+]+)', text
    ):
        out[(group, int(status))] = float(value)
    return out


def scrape(port: int) -> str:
    reply, _ = exchange(port, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
    got, _ = parse_answers(reply)
    assert got and got[0][0] == 200, reply[:200]
    return got[0][2].decode()


# --- the server in this process --------------------------------------------------


class InProcess:
    """ServerState + CollectorApp on a uvloop loop in a thread, on 127.0.0.1:0."""

    def __init__(self, config: CollectorConfig, **state: Any) -> None:
        self.config = config
        self.raw_dir = config.raw_dir
        self.state_args = state
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self.errors: list[dict[str, Any]] = []

    def start(self) -> InProcess:
        self.loop.set_exception_handler(lambda _loop, ctx: self.errors.append(ctx))
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        self.app = build_app(self.config)
        self.state = ServerState(self.app, self.loop, **self.state_args)
        self.server = await self.loop.create_server(self.state.protocol, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def call(self, fn: Callable[[], Any]) -> Any:
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

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def records(self) -> list[RawRecord]:
        return read_records(self.raw_dir)


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[Callable[..., InProcess]]:
    started: list[InProcess] = []

    def make(state: dict[str, Any] | None = None, **config: Any) -> InProcess:
        raw_dir = tmp_path / f"raw{len(started)}"
        server = InProcess(
            CollectorConfig(raw_dir=raw_dir, port=0, **config), **(state or {})
        ).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def slow_sync_path(tmp_path: Path, delay: float) -> dict[str, str]:
    """Environment for a collector process whose fdatasync takes ``delay`` s
    longer (a sitecustomize on its PYTHONPATH)."""
    folder = tmp_path / "slowsync"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import os, time\n"
        "_real = os.fdatasync\n"
        "def _slow(fd):\n"
        f"    time.sleep({delay})\n"
        "    return _real(fd)\n"
        "os.fdatasync = _slow\n"
    )
    return {"PYTHONPATH": str(folder)}


# =============================================================================
# fsync durability: the ASGI path with a suspended coroutine
# =============================================================================


def test_fsync_answer_comes_only_after_the_sync_that_covers_the_record(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process(durability="fsync")
    commit = server.app.writer.commit
    assert commit is not None
    real_sync = commit._sync
    synced = [0]

    def slow_sync() -> Any:
        time.sleep(0.15)
        result = real_sync()
        if result.error is None:
            synced[0] = result.ticket
        return result

    commit._sync = slow_sync
    ids = [new_id() for _ in range(3)]
    with connect(server.port) as sock:
        for n, test_id in enumerate(ids, start=1):
            request = pixel(test_id) if n % 2 else post(test_id, b'{"n":1}')
            sock.sendall(request)
            got, _ = read_answers(sock, 1)
            assert got[0][0] == 200
            # The sync that made this record durable had ended before the answer.
            assert synced[0] >= n
    assert ids_of(server.records()) == Counter(ids)


def test_fsync_pipelined_mix_is_answered_in_order(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process(durability="fsync")
    ids = [new_id() for _ in range(5)]
    requests = [
        pixel(ids[0]),
        post(ids[1], b'{"a":1}'),
        b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n",
        pixel(ids[2], method=b"HEAD"),
        b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
        pixel(ids[3], query=b"e=pv&x=" + b"y" * 3000),
        post(ids[4], b"z" * 70000),
    ]
    with connect(server.port) as sock:
        sock.sendall(b"".join(requests))
        got, how = read_answers(sock, len(requests), heads=frozenset({3}))
    assert how == "complete"
    assert [a[0] for a in got] == [200, 200, 200, 200, 404, 200, 200]
    assert got[0][1]["content-type"] == "image/gif"
    assert got[1][2] == b"ok" and got[2][2] == b"ok"
    assert got[3][2] == b"" and got[3][1]["content-length"] == "43"
    records = server.records()
    assert ids_of(records) == Counter(ids)
    assert [r.header(TEST_ID_HEADER) for r in records] == ids


def test_fsync_sigterm_waits_for_syncs_in_progress(
    collector_factory: CollectorFactory, tmp_path: Path
) -> None:
    running = collector_factory(
        {"PLOWLINE_COLLECTOR_DURABILITY": "fsync", **slow_sync_path(tmp_path, 0.8)}
    )
    ids = [new_id() for _ in range(5)]
    socks = []
    for n, test_id in enumerate(ids):
        sock = connect(running.port)
        sock.sendall(post(test_id, b'{"n":1}') if n % 2 else pixel(test_id))
        socks.append(sock)
    # A pipelined pair: the first is in progress, the second never begun.
    first, second = new_id(), new_id()
    pair = connect(running.port)
    pair.sendall(pixel(first) + post(second, b"x"))
    socks.append(pair)
    time.sleep(0.2)
    running.process.send_signal(signal.SIGTERM)
    replies = []
    for sock in socks:
        with sock:
            reply, ended = read_until_closed(sock, 8)
            replies.append((statuses(reply), ended))
    assert running.process.wait(15) == 0
    assert replies == [([200], "eof")] * 6
    counts = ids_of(running.records())
    assert all(counts[i] == 1 for i in [*ids, first])
    assert counts[second] == 0  # never answered, never recorded
    assert all(p.suffix == ".jsonl" for p in running.raw_dir.iterdir())


def test_fsync_metrics_add_up(in_process: Callable[..., InProcess]) -> None:
    server = in_process(durability="fsync")
    ids = [new_id() for _ in range(6)]
    with connect(server.port) as sock:
        sock.sendall(
            b"".join(pixel(i) if n % 2 else post(i, b"{}") for n, i in enumerate(ids))
        )
        got, _ = read_answers(sock, len(ids))
    assert [a[0] for a in got] == [200] * 6
    text = scrape(server.port)
    assert request_counts(text) == {("pixel", 200): 3, ("post", 200): 3}
    assert metric(text, "plowline_collector_records_written_total") == 6
    assert len(server.records()) == 6


# =============================================================================
# The plain pixel batch
# =============================================================================


def test_many_connections_at_once_are_batched_and_each_recorded_once(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process()
    sizes: list[int] = []
    real = server.app.store_plain_records

    def counting(records: list[Any]) -> bool:
        sizes.append(len(records))
        return real(records)

    server.state._store_plain = counting
    ids = [new_id() for _ in range(200)]
    socks = [connect(server.port) for _ in ids]
    data = [pixel(i, extra=b"Connection: close\r\n") for i in ids]
    for sock, request in zip(socks, data, strict=True):
        sock.sendall(request)
    codes = []
    for sock in socks:
        with sock:
            reply, ended = read_until_closed(sock, 5)
            codes.append((statuses(reply), ended))
    assert codes == [([200], "eof")] * len(ids)
    assert ids_of(server.records()) == Counter(ids)
    assert sum(sizes) == len(ids) and max(sizes) > 1
    text = scrape(server.port)
    assert metric(text, REQUESTS, group="pixel", status="200") == len(ids)
    assert metric(text, "plowline_collector_records_written_total") == len(ids)


def test_failed_batch_answers_every_request_503_and_none_200(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process()
    real = server.app._store_now
    failing = [True]

    def store(line: bytes, record_id: str) -> None:
        if failing[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        assert real is not None
        real(line, record_id)

    server.app._store_now = server.app._store = store
    ids = [new_id() for _ in range(40)]
    socks = [connect(server.port) for _ in ids]
    for sock, test_id in zip(socks, ids, strict=True):
        # Two pixels each: the first in a batch, the second the ASGI way.
        sock.sendall(pixel(test_id) + pixel(test_id, extra=b"Connection: close\r\n"))
    results = []
    for sock in socks:
        with sock:
            reply, ended = read_until_closed(sock, 5)
            got, _ = parse_answers(reply)
            results.append(([a[0] for a in got], ended))
    assert results == [([503, 503], "eof")] * len(ids)
    assert server.records() == []
    text = scrape(server.port)
    assert metric(text, REQUESTS, group="pixel", status="503") == 80
    assert metric(text, REQUESTS, group="pixel", status="200") == 0
    assert metric(text, "plowline_collector_write_errors_total") == 80

    failing[0] = False
    again = new_id()
    reply, _ = exchange(server.port, pixel(again, extra=b"Connection: close\r\n"))
    assert statuses(reply) == [200]
    assert ids_of(server.records()) == Counter([again])


def test_head_pixel_in_failed_batch_gets_503_without_body(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process()

    def store(line: bytes, record_id: str) -> None:
        raise OSError(errno.EIO, "I/O error")

    server.app._store_now = server.app._store = store
    with connect(server.port) as sock:
        sock.sendall(
            pixel(new_id(), method=b"HEAD", extra=b"Origin: https://a.example\r\n")
        )
        sock.sendall(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        reply, ended = read_until_closed(sock, 5)
    got, rest = parse_answers(reply, heads=frozenset({0}))
    assert [a[0] for a in got] == [503, 200] and rest == b"" and ended == "eof"
    assert got[0][1]["access-control-allow-origin"] == "https://a.example"


def tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def fill(path: Path) -> Path:
    filler = path / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as out:
        while True:
            out.write(b"x" * 4096)
            out.flush()
    return filler


def test_full_disk_batch_gets_503_and_leaves_no_torn_line(
    collector_factory: CollectorFactory, tmp_path: Path
) -> None:
    mount = tmp_path / "small"
    if not tmpfs(mount, "256k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    factory = CollectorFactory(mount)
    try:
        running = factory()
        filler = fill(mount)
        # One page left: a batch's joined write fits in part, then fails.
        os.truncate(filler, filler.stat().st_size - 4096)
        ids = [new_id() for _ in range(60)]
        socks = [connect(running.port) for _ in ids]
        for sock, test_id in zip(socks, ids, strict=True):
            sock.sendall(
                pixel(test_id, b"e=pv&pad=" + b"p" * 300, b"Connection: close\r\n")
            )
        codes: dict[str, int] = {}
        for sock, test_id in zip(socks, ids, strict=True):
            with sock:
                reply, _ = read_until_closed(sock, 5)
                (codes[test_id],) = statuses(reply)
        text = scrape(running.port)
        filler.unlink()
        assert running.stop() == 0
        assert set(codes.values()) <= {200, 503} and 503 in codes.values()
        # Whole lines only, and exactly the requests answered 200.
        for path in running.raw_dir.iterdir():
            data = path.read_bytes()
            assert data == b"" or data.endswith(b"\n"), path
        recorded = ids_of(read_records(running.raw_dir))
        assert recorded == Counter(i for i, c in codes.items() if c == 200)
        ok = sum(1 for c in codes.values() if c == 200)
        assert metric(text, REQUESTS, group="pixel", status="200") == ok
        assert metric(text, REQUESTS, group="pixel", status="503") == len(ids) - ok
        assert metric(text, "plowline_collector_write_errors_total") == len(ids) - ok
        assert metric(text, "plowline_collector_records_written_total") == ok
    finally:
        factory.stop_all()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_does_not_leave_an_empty_raw_log_per_failed_request(
    collector_factory: CollectorFactory, tmp_path: Path
) -> None:
    mount = tmp_path / "small"
    if not tmpfs(mount, "256k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    factory = CollectorFactory(mount)
    try:
        running = factory()
        filler = fill(mount)
        codes = [
            statuses(
                exchange(running.port, pixel(new_id(), extra=b"Connection: close\r\n"))[
                    0
                ]
            )
            for _ in range(50)
        ]
        assert codes == [[503]] * 50
        files = list(running.raw_dir.iterdir())
        filler.unlink()
        assert running.stop() == 0
        assert len(files) <= 2, f"{len(files)} files for 50 failed requests"
    finally:
        factory.stop_all()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_pixels_and_asgi_requests_mixed_on_one_connection_keep_their_order(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process()
    ids = [new_id() for _ in range(6)]
    requests = [
        pixel(ids[0]),
        post(ids[1], b'{"a":1}'),
        pixel(ids[2]),
        b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n",
        pixel(ids[3], method=b"HEAD"),
        b"OPTIONS /i HTTP/1.1\r\nHost: t\r\nOrigin: https://o.example\r\n\r\n",
        pixel(ids[4], extra=b"SP-Anonymous: *\r\n"),  # not plain: the ASGI way
        pixel(ids[5]),
    ]
    with connect(server.port) as sock:
        # Once in one read, then a request per read.
        sock.sendall(b"".join(requests))
        got, how = read_answers(sock, len(requests), heads=frozenset({4}))
        assert how == "complete"
        assert [a[0] for a in got] == [200] * len(requests)
        kinds = [a[1].get("content-type") for a in got]
        assert kinds == [
            "image/gif",
            "text/plain",
            "image/gif",
            "text/plain; charset=utf-8",
            "image/gif",
            None,
            "image/gif",
            "image/gif",
        ]
        more = [new_id() for _ in range(4)]
        for n, test_id in enumerate(more):
            sock.sendall(pixel(test_id) if n % 2 else post(test_id, b"{}"))
            got2, _ = read_answers(sock, 1)
            assert got2[0][0] == 200
    records = server.records()
    assert ids_of(records) == Counter(ids + more)
    assert [r.header(TEST_ID_HEADER) for r in records][: len(ids)] == ids


def test_client_gone_while_its_pixel_waits_for_the_batch(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process()
    ids = [new_id() for _ in range(50)]
    for test_id in ids:
        sock = connect(server.port)
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        sock.sendall(pixel(test_id) + pixel(test_id))
        sock.close()  # reset at once
    assert wait_for(lambda: not server.call(lambda: len(server.state.connections)))
    assert server.errors == []
    after = new_id()
    reply, _ = exchange(server.port, pixel(after, extra=b"Connection: close\r\n"))
    assert statuses(reply) == [200]
    counts = ids_of(server.records())
    assert counts[after] == 1 and all(counts[i] <= 2 for i in ids)
    text = scrape(server.port)
    assert metric(text, "plowline_collector_records_written_total") == sum(
        counts.values()
    )
    assert metric(text, REQUESTS, group="pixel", status="200") == sum(counts.values())


def test_client_gone_while_pixel_waits_simulated_exactly(
    in_process: Callable[..., InProcess],
) -> None:
    """The connection is lost after the pixel was parsed and before the flush."""
    server = in_process()

    test_id = new_id()

    def run() -> Any:
        connection = server.state.protocol()
        transport = FakeTransport(("127.0.0.1", 5555))
        connection.connection_made(transport)  # type: ignore[arg-type]
        connection.data_received(pixel(test_id) + pixel(test_id))
        connection.connection_lost(ConnectionResetError())
        return connection, transport

    connection, transport = server.call(run)
    time.sleep(0.2)
    assert transport.sent == []
    assert connection not in server.state.connections
    assert server.errors == []
    assert ids_of(server.records())[test_id] == 1


def test_unexpected_error_in_the_batch_store_still_answers(
    in_process: Callable[..., InProcess],
) -> None:
    server = in_process()

    def store(line: bytes, record_id: str) -> None:
        raise ValueError("unexpected")

    server.app._store_now = store
    server.app._store = store
    with connect(server.port) as sock:
        sock.sendall(pixel(new_id(), extra=b"Connection: close\r\n"))
        reply, ended = read_until_closed(sock, 2)
    assert ended == "eof"
    assert statuses(reply) and statuses(reply)[0] >= 500


# =============================================================================
# stdout
# =============================================================================


class StdoutCollector:
    def __init__(self, tmp_path: Path, workers: int) -> None:
        self.port = free_port()
        self.read_fd, write_fd = os.pipe()
        self.err = tmp_path / f"stdout-{workers}.err"
        with open(self.err, "wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from plowline.cli import main; main()",
                    "collector",
                    "--port",
                    str(self.port),
                    "--raw-dir",
                    str(tmp_path / "raw"),
                    "--sink",
                    "stdout",
                    "--workers",
                    str(workers),
                ],
                stdout=write_fd,
                stderr=err,
                env={
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith("PLOWLINE_COLLECTOR_")
                },
            )
        os.close(write_fd)
        self.out = bytearray()
        self.reader: threading.Thread | None = None

    def start_reading(self) -> None:
        def read() -> None:
            while chunk := os.read(self.read_fd, 65536):
                self.out.extend(chunk)

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()

    def wait_ready(self) -> None:
        def ready() -> bool:
            try:
                reply, _ = exchange(
                    self.port, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", 1
                )
            except OSError:
                return False
            return statuses(reply) == [200]

        assert wait_for(ready, 15), self.err.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(15)
        if self.reader is not None:
            self.reader.join(5)
        return code


@pytest.fixture
def stdout_collector(tmp_path: Path) -> Iterator[Callable[[int], StdoutCollector]]:
    started: list[StdoutCollector] = []

    def make(workers: int) -> StdoutCollector:
        running = StdoutCollector(tmp_path / f"w{len(started)}", workers)
        started.append(running)
        return running

    (tmp_path / "w0").mkdir()
    (tmp_path / "w1").mkdir()
    yield make
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(5)
        with contextlib.suppress(OSError):
            os.close(running.read_fd)


@pytest.mark.parametrize("workers", [1, 2])
def test_stdout_lines_are_whole_and_each_request_once(
    stdout_collector: Callable[[int], StdoutCollector], workers: int
) -> None:
    running = stdout_collector(workers)
    running.start_reading()
    running.wait_ready()
    acknowledged: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with connect(running.port) as sock:
            for j in range(30):
                test_id = f"{k}-{j}-{uuid.uuid4().hex[:6]}"
                size = 50 + (j * 97) % 3000  # lines stay under 4 KiB
                if j % 3 == 0:
                    sock.sendall(post(test_id, b"x" * size))
                elif j % 3 == 1:
                    sock.sendall(pixel(test_id, b"e=pv&pad=" + b"p" * size))
                else:  # two pipelined: a batch of one and an ASGI pixel
                    sock.sendall(pixel(test_id) + pixel(test_id + "b"))
                    got, _ = read_answers(sock, 2)
                    assert [a[0] for a in got] == [200, 200]
                    with lock:
                        acknowledged.extend([test_id, test_id + "b"])
                    continue
                got, _ = read_answers(sock, 1)
                assert got[0][0] == 200
                with lock:
                    acknowledged.append(test_id)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert running.stop() == 0
    lines = bytes(running.out).split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]
    seen = Counter(dict(r["headers"])[TEST_ID_HEADER] for r in records)
    assert seen == Counter(acknowledged)


def test_stdout_reader_gone_gives_503_never_200(
    stdout_collector: Callable[[int], StdoutCollector],
) -> None:
    running = stdout_collector(1)
    running.wait_ready()
    reply, _ = exchange(running.port, pixel(new_id(), extra=b"Connection: close\r\n"))
    assert statuses(reply) == [200]
    os.close(running.read_fd)
    codes = []
    with connect(running.port) as sock:
        sock.sendall(
            pixel(new_id())
            + post(new_id(), b"{}")
            + pixel(new_id(), method=b"HEAD")
            + b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        reply, _ = read_until_closed(sock)
        got, _ = parse_answers(reply, heads=frozenset({2}))
        codes = [a[0] for a in got]
    assert codes == [503, 503, 503, 200]
    text = scrape(running.port)
    assert metric(text, "plowline_collector_write_errors_total") == 3
    assert metric(text, "plowline_collector_records_written_total") == 1
    assert metric(text, REQUESTS, group="pixel", status="503") == 2
    assert metric(text, REQUESTS, group="post", status="503") == 1
    assert running.stop() == 0


# =============================================================================
# NATS
# =============================================================================


async def _stream_messages(name: str, delete: bool = False) -> list[bytes]:
    import nats
    import nats.js.errors

    connection = await nats.connect(f"nats://{NATS_HOST}:{NATS_PORT}")
    try:
        js = connection.jetstream()
        if delete:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
            return []
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            return []
        first, count = info.state.first_seq, info.state.messages
        return [
            (await js.get_msg(name, seq)).data for seq in range(first, first + count)
        ]
    finally:
        await connection.close()


def stream_ids(name: str) -> list[str | None]:
    payloads = asyncio.run(_stream_messages(name))
    return [decode_record(p).header(TEST_ID_HEADER) for p in payloads]


@pytest.fixture
def nats_stream() -> Iterator[str]:
    pytest.importorskip("nats")
    if not nats_reachable():
        pytest.skip("no NATS server at 127.0.0.1:4222")
    name = f"BREAKER2_{uuid.uuid4().hex[:12].upper()}"
    yield name
    asyncio.run(_stream_messages(name, delete=True))


def nats_env(name: str, url: str, **more: str) -> dict[str, str]:
    return {
        "PLOWLINE_COLLECTOR_SINK": "nats",
        "PLOWLINE_COLLECTOR_NATS_URL": url,
        "PLOWLINE_COLLECTOR_NATS_STREAM": name,
        "PLOWLINE_COLLECTOR_NATS_SUBJECT": f"breaker2.{name.lower()}",
        "PLOWLINE_COLLECTOR_NATS_TIMEOUT_SECONDS": "1",
        **more,
    }


def send_mixed(port: int, rounds: int, prefix: str) -> list[str]:
    """Pipelined pixel + POST + HEAD pixel per round; the ids answered 200."""
    acknowledged = []
    with connect(port) as sock:
        for n in range(rounds):
            ids = [f"{prefix}{n}a", f"{prefix}{n}b", f"{prefix}{n}c"]
            sock.sendall(
                pixel(ids[0])
                + post(ids[1], b'{"n":%d}' % n)
                + pixel(ids[2], method=b"HEAD")
            )
            got, how = read_answers(sock, 3, heads=frozenset({2}))
            assert how == "complete"
            assert [a[1].get("content-type") for a in got] == [
                "image/gif",
                "text/plain",
                "image/gif",
            ]
            acknowledged += [i for i, a in zip(ids, got, strict=True) if a[0] == 200]
    return acknowledged


def test_nats_streaming_pipelined_mix_lands_once_in_order(
    collector_factory: CollectorFactory, nats_stream: str
) -> None:
    running = collector_factory(
        nats_env(nats_stream, f"nats://{NATS_HOST}:{NATS_PORT}")
    )
    warmup = send_mixed(running.port, 2, "w")
    assert wait_for(lambda: "Streaming records" in running.log(), 15), running.log()
    acknowledged = send_mixed(running.port, 15, "s")
    assert len(acknowledged) == 45
    assert wait_for(lambda: len(stream_ids(nats_stream)) == 51, 15)
    assert running.stop() == 0
    in_stream = stream_ids(nats_stream)
    assert Counter(in_stream) == Counter(warmup + acknowledged)
    assert in_stream[-45:] == acknowledged  # streamed in the order answered


def test_nats_unreachable_at_start_spools_then_forwards_every_record(
    collector_factory: CollectorFactory, nats_stream: str
) -> None:
    proxy = TcpProxy((NATS_HOST, NATS_PORT))  # not listening yet
    try:
        running = collector_factory(
            nats_env(
                nats_stream,
                f"nats://127.0.0.1:{proxy.port}",
                PLOWLINE_COLLECTOR_DURABILITY="fsync",
            )
        )
        spooled = send_mixed(running.port, 8, "u")
        assert len(spooled) == 24
        assert sum(p.read_bytes().count(b"\n") for p in running.raw_dir.iterdir()) == 24
        proxy.start()
        assert wait_for(lambda: len(stream_ids(nats_stream)) == 24, 20)
        later = send_mixed(running.port, 5, "l")
        proxy.stop()  # away again mid-run: spooled again
        during = send_mixed(running.port, 5, "d")
        proxy.start()
        total = spooled + later + during
        assert wait_for(lambda: len(stream_ids(nats_stream)) == len(total), 25)
        assert running.stop() == 0
        assert Counter(stream_ids(nats_stream)) == Counter(total)
    finally:
        proxy.stop()


# =============================================================================
# /metrics with several workers
# =============================================================================


def test_metrics_of_two_workers_add_up_to_the_raw_log(
    collector_factory: CollectorFactory, tmp_path: Path
) -> None:
    share = tmp_path / "metrics"
    share.mkdir()
    running = collector_factory(
        {
            "PLOWLINE_COLLECTOR_WORKERS": "2",
            "PLOWLINE_COLLECTOR_METRICS_DIR": str(share),
        }
    )
    sent = Counter[tuple[str, int]]()

    def client(k: int) -> None:
        for _ in range(20):
            with connect(running.port) as sock:
                sock.sendall(
                    pixel(new_id())
                    + post(new_id(), b"{}")
                    + b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
                    + pixel(new_id(), extra=b"Connection: close\r\n")
                )
                got, _ = read_answers(sock, 4)
                assert [a[0] for a in got] == [200, 200, 404, 200]

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent[("pixel", 200)] = 160
    sent[("post", 200)] = 80
    sent[("other", 404)] = 80

    def settled() -> bool:
        counts = request_counts(scrape(running.port))
        return all(counts.get(k, 0) == v for k, v in sent.items())

    assert wait_for(settled, 5)
    text = scrape(running.port)
    assert metric(text, "plowline_collector_records_written_total") == 240
    assert metric(text, "plowline_collector_workers_reporting") == 2
    assert len(read_records(running.raw_dir)) == 240
    assert running.stop() == 0


# =============================================================================
# plowline up end to end
# =============================================================================


def test_plowline_up_loads_pixels_and_post_batches_into_duckdb(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from up_process import start_up

    up = start_up(tmp_path / "up", "--workers", "2")
    try:
        app = f"breaker2-{uuid.uuid4().hex[:8]}"
        eids = [str(uuid.uuid4()) for _ in range(30)]
        with connect(up.port) as sock:
            requests = []
            for n, eid in enumerate(eids[:10]):
                query = (
                    f"e=pv&p=web&tv=t-1&aid={app}&eid={eid}"
                    f"&url=https%3A%2F%2Fa.example%2F{n}"
                )
                requests.append(pixel(f"g{n}", query.encode()))
            sock.sendall(b"".join(requests))
            got, how = read_answers(sock, 10)
            assert how == "complete" and [a[0] for a in got] == [200] * 10
            for start in (10, 20):
                events = [
                    {
                        "e": "pv",
                        "p": "web",
                        "tv": "t-1",
                        "aid": app,
                        "eid": eid,
                        "url": f"https://a.example/post/{k}",
                        "dtm": str(int(time.time() * 1000)),
                    }
                    for k, eid in enumerate(eids[start : start + 10])
                ]
                body = json.dumps(
                    {
                        "schema": PAYLOAD_DATA,
                        "data": events,
                    }
                ).encode()
                sock.sendall(post(f"p{start}", body))
                got, _ = read_answers(sock, 1)
                assert got[0][0] == 200
        up.wait_for(
            lambda: (
                up.scalar(f"SELECT count(*) FROM atomic.events WHERE app_id = '{app}'")
                == 30
            ),
            timeout=30,
        )
        rows = up.rows(
            f"SELECT event_id, page_url FROM atomic.events WHERE app_id = '{app}'"
        )
        assert sorted(r["event_id"] for r in rows) == sorted(eids)
        assert {r["page_url"] for r in rows} >= {
            "https://a.example/0",
            "https://a.example/post/9",
        }
    finally:
        assert up.stop() == 0, up.stderr()
