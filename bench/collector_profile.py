"""Where one pixel request's time goes inside the collector, without sockets.

Feeds the benchmark's page-view request (bench/collector_load.py), as bytes,
to the collector's HTTP server (plowline.collector.http1) on a connection whose
transport only counts what it is given, and calls the application's parts
directly, in loops: what is left is the Python work of the server and the
application, and the raw-log write. The socket's own system calls are not in
these figures; bench/collector.py measures the whole. Each figure is the best
of several rounds (the machine is shared; the best round is the least
disturbed), in microseconds per request::

    .venv/bin/python bench/collector_profile.py
    .venv/bin/python bench/collector_profile.py --cprofile   # and a cProfile table
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, MutableMapping
from pathlib import Path
from typing import Any

import orjson
from collector_load import page_view_get

from plowline.collector import app as app_module
from plowline.collector import plainpath
from plowline.collector.app import PIXEL, CollectorApp
from plowline.collector.config import CollectorConfig
from plowline.collector.cookies import CookieSetter
from plowline.collector.http1 import HttpConnection, ServerState
from plowline.collector.lines import encode_line
from plowline.collector.sinks import StdoutSink, build_sink
from plowline.ids import RandomIds


def pixel_scope() -> dict[str, Any]:
    """The ASGI scope of the benchmark's page view."""
    request = page_view_get("profile")
    raw_path, _, query = request.target.encode("latin-1").partition(b"?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query,
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


_BODY = {"type": "http.request", "body": b"", "more_body": False}


async def _receive() -> dict[str, Any]:
    return _BODY


async def _send(message: MutableMapping[str, Any]) -> None:
    return None


def _drive(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise RuntimeError("the application suspended; this harness cannot resume it")


def best_microseconds(action: Callable[[], object], rounds: int, calls: int) -> float:
    """The fastest round's time per call, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        # CPU time of this process: other processes' work disturbs it less.
        start = time.process_time()
        for _ in range(calls):
            action()
        best = min(best, (time.process_time() - start) / calls)
    return best * 1e6


class CountingTransport:
    """What the server writes to, and how a connection asks for its addresses."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_extra_info(self, name: str) -> tuple[str, int]:
        return ("127.0.0.1", 50000)

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self) -> None:
        raise RuntimeError("the connection was closed: the request was not plain")


class AnswerOnly:
    """An application that answers every plain pixel request with constants:
    the server's own share."""

    plain_header_keys = (b"", b"sp")

    def plain_pixel(self, *request: object) -> tuple[bytes, bytes, bytes, bytes, str]:
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 43\r\n"
        return b"", head, PIXEL, b"*", "pixel"

    def store_plain_records(self, records: list[object]) -> bool:
        return True

    def plain_unavailable(self, origin: bytes, body: bool) -> tuple[bytes, bytes]:
        raise RuntimeError("nothing is stored, so nothing fails")

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        raise RuntimeError("not a plain pixel request")


# Requests answered per turn of the event loop in the batched figure.
BATCH = 10


def request_bytes() -> bytes:
    request = page_view_get("profile")
    head = f"{request.method} {request.target} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in request.headers
    )
    return head.encode("latin-1") + b"\r\n"


def connections(
    app: object, loop: asyncio.AbstractEventLoop, count: int
) -> tuple[ServerState, list[HttpConnection]]:
    state = ServerState(app, loop)  # type: ignore[arg-type]
    served = [state.protocol() for _ in range(count)]
    for one in served:
        one.connection_made(CountingTransport())  # type: ignore[arg-type]
    return state, served


def serve_batch(
    state: ServerState, served: list[HttpConnection], raw: bytes
) -> Callable[[], None]:
    """One request on each connection, then the batch written and answered,
    as in one turn of the event loop."""

    def batch() -> None:
        for one in served:
            one.data_received(raw)
        state.flush_plain()

    return batch


def measure(rounds: int, calls: int, raw_dir: Path) -> list[tuple[str, float]]:
    return asyncio.run(_measure(rounds, calls, raw_dir))


async def _measure(rounds: int, calls: int, raw_dir: Path) -> list[tuple[str, float]]:
    loop = asyncio.get_running_loop()
    scope = pixel_scope()
    config = CollectorConfig(raw_dir=raw_dir)
    full = CollectorApp(config, build_sink(config))
    devnull = os.open(os.devnull, os.O_WRONLY)
    null = CollectorApp(config, StdoutSink(devnull))
    raw = request_bytes()
    one = serve_batch(*connections(full, loop, 1), raw)
    ten = serve_batch(*connections(full, loop, BATCH), raw)
    answer_only = serve_batch(*connections(AnswerOnly(), loop, 1), raw)
    raw_path, query = scope["raw_path"], scope["query_string"]
    plain = (b"GET", raw_path, query, scope["headers"], "1.1", ("127.0.0.1", 5000))
    headers = scope["headers"]
    found = app_module._read_headers(headers, b"")
    ids = RandomIds()
    cookies = CookieSetter(config)
    now = time.time()

    def encode() -> bytes:
        return encode_line(
            ids.next(),
            int(now * 1000),
            "plowline-0",
            "GET",
            "/i",
            scope["query_string"],
            b"",
            found.content_type,
            found.pairs if found.json is None else orjson.Fragment(found.json),
            "127.0.0.1",
            found.useragent,
            found.referer,
            found.host,
            "5d7c0b9e-0001-4000-8000-00000000beef",
        )

    record = full.plain_pixel(*plain)
    assert record is not None
    kind = "C" if plainpath.COMPILED else "Python"
    figures = [
        ("whole request, raw-log sink", one),
        (f"  the same, {BATCH} per write (per req.)", ten),
        ("  the server alone", answer_only),
        ("  straight path, no write", lambda: full.plain_pixel(*plain)),
        ("  its write, raw-log sink", lambda: full.store_plain_records([record])),
        ("  its write, /dev/null", lambda: null.store_plain_records([record])),
        ("ASGI path, raw-log sink", lambda: _drive(full(scope, _receive, _send))),
        ("ASGI path, /dev/null", lambda: _drive(null(scope, _receive, _send))),
        (
            f"  the headers, straight path ({kind})",
            lambda: plainpath.scan_headers(headers, False, b"", b"sp"),
        ),
        (
            "  the headers, its Python twin",
            lambda: plainpath.scan_headers_py(headers, False, b"", b"sp"),
        ),
        ("  the headers, general path", lambda: app_module._read_headers(headers, b"")),
        ("  a record id", ids.next),
        ("  encoding the record", encode),
        (
            "  the Set-Cookie value",
            lambda: cookies.header("x", now, https=False, host="h"),
        ),
    ]
    results = [(name, best_microseconds(f, rounds, calls)) for name, f in figures]
    results[1] = (results[1][0], results[1][1] / BATCH)
    full.writer.close()
    os.close(devnull)
    return results


async def _profiled(app: CollectorApp, raw: bytes) -> cProfile.Profile:
    batch = serve_batch(*connections(app, asyncio.get_running_loop(), BATCH), raw)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20_000 // BATCH):
        batch()
    return profiler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--cprofile", action="store_true")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="plowline-profile-") as temp:
        results = measure(options.rounds, options.calls, Path(temp))
        for name, micros in results:
            print(f"{name:36s} {micros:6.2f} us")
        if options.cprofile:
            config = CollectorConfig(raw_dir=Path(temp) / "profiled")
            app = CollectorApp(config, build_sink(config))
            raw = request_bytes()
            profiler = asyncio.run(_profiled(app, raw))
            profiler.disable()
            app.writer.close()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
