"""Where one pixel request's time goes inside the collector, without a server.

Calls the ASGI application directly, in a loop, with the benchmark's page-view
request (bench/collector_load.py) and a fake ``receive``/``send`` that never
suspend, so the coroutine runs to its end in one ``send(None)``: what is left is
the application's own Python work and the raw-log write. Each figure is the best
of several rounds (the machine is shared; the best round is the least
disturbed), in microseconds per request::

    .venv/bin/python bench/collector_profile.py
    .venv/bin/python bench/collector_profile.py --cprofile   # and a cProfile table

The server's share (HTTP parsing, the ASGI hand-over between granian's threads
and the event loop, socket I/O) is not in these figures; bench/collector.py
measures the whole.
"""

from __future__ import annotations

import argparse
import cProfile
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
from plowline.collector.app import CollectorApp
from plowline.collector.config import CollectorConfig
from plowline.collector.cookies import CookieSetter
from plowline.collector.lines import encode_line
from plowline.collector.sinks import build_sink
from plowline.ids import RandomIds


class NullSink:
    """A sink that stores nothing: the application's cost without the write."""

    def write(self, record: object) -> None:
        return None

    def store(self, line: bytes, record_id: str) -> None:
        return None

    def close(self) -> None:
        return None


def pixel_scope() -> dict[str, Any]:
    """The ASGI scope granian builds for the benchmark's page view."""
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


def _plain_headers(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """What CollectorApp._plain_pixel does with the headers before encoding."""
    by_name = dict(headers)
    if not b"".join(by_name).islower():
        return None
    joined = app_module._PAIR_SEP.join(map(app_module._VALUE_SEP.join, headers))
    return app_module._headers_json(joined, len(headers))


def best_microseconds(action: Callable[[], object], rounds: int, calls: int) -> float:
    """The fastest round's time per call, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            action()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def measure(rounds: int, calls: int, raw_dir: Path) -> list[tuple[str, float]]:
    scope = pixel_scope()
    config = CollectorConfig(raw_dir=raw_dir)
    full = CollectorApp(config, build_sink(config))
    null = CollectorApp(config, NullSink())
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

    figures = [
        (
            "whole request, raw-log sink",
            lambda: _drive(full(scope, _receive, _send)),
        ),
        ("whole request, no write", lambda: _drive(null(scope, _receive, _send))),
        ("  the headers, straight path", lambda: _plain_headers(headers)),
        ("  the headers, general path", lambda: app_module._read_headers(headers, b"")),
        ("  a record id", ids.next),
        ("  encoding the record", encode),
        (
            "  the Set-Cookie value",
            lambda: cookies.header("x", now, https=False, host="h"),
        ),
    ]
    results = [(name, best_microseconds(f, rounds, calls)) for name, f in figures]
    full.writer.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--cprofile", action="store_true")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="plowline-profile-") as temp:
        results = measure(options.rounds, options.calls, Path(temp))
        for name, micros in results:
            print(f"{name:32s} {micros:6.2f} us")
        whole, no_write = results[0][1], results[1][1]
        print(f"{'  the raw-log write (difference)':32s} {whole - no_write:6.2f} us")
        if options.cprofile:
            config = CollectorConfig(raw_dir=Path(temp) / "profiled")
            app = CollectorApp(config, build_sink(config))
            scope = pixel_scope()
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(20_000):
                _drive(app(scope, _receive, _send))
            profiler.disable()
            app.writer.close()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
