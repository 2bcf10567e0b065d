"""Raw-socket helpers of the collector's HTTP server tests (the tester passes in
test_http1_breaking.py and test_http1_sinks_breaking.py)."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector_process import TEST_ID_HEADER, new_test_id

TP2 = b"/com.snowplowanalytics.snowplow/tp2"
# The status code of each answer in a stream of answers.
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, str]:
    """Everything the server sends, and how it ended: eof, reset or timeout."""
    sock.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return out, "eof"
            out += chunk
    except TimeoutError:
        return out, "timeout"
    except ConnectionResetError:
        return out, "reset"
    return out, "timeout"


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "")
    found = re.search(r"^" + pattern + r" ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def new_id() -> str:
    return new_test_id()


def statuses(reply: bytes) -> list[int]:
    return [int(s) for s in STATUS.findall(reply)]


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def pixel(
    test_id: str, query: bytes = b"e=pv", extra: bytes = b"", method: bytes = b"GET"
) -> bytes:
    return (
        method
        + b" /i?"
        + query
        + b" HTTP/1.1\r\nHost: t.example\r\n"
        + TEST_ID_HEADER.encode()
        + b": "
        + test_id.encode()
        + b"\r\n"
        + extra
        + b"\r\n"
    )


def post(test_id: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST "
        + TP2
        + b" HTTP/1.1\r\nHost: t.example\r\n"
        + TEST_ID_HEADER.encode()
        + b": "
        + test_id.encode()
        + b"\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n" % len(body)
        + extra
        + b"\r\n"
        + body
    )


class FakeTransport:
    """What an HttpConnection writes to when a test feeds it bytes itself:
    keeps what is written, and says whether the connection was closed."""

    def __init__(self, peer: tuple[object, ...] = ("198.51.100.4", 40000)) -> None:
        self.sent: list[bytes] = []
        self.closed = False
        self.peer = peer

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def get_extra_info(self, name: str) -> tuple[object, ...]:
        return self.peer

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def answer_without_date(self) -> bytes:
        """Everything written, without the Date header (it moves with the clock)."""
        answer = b"".join(self.sent)
        return b"\r\n".join(
            line for line in answer.split(b"\r\n") if not line.startswith(b"date:")
        )


async def feed_reads(
    state: Any, connection: Any, reads: list[bytes], settle: int = 3
) -> None:
    """Give ``connection`` each read in turn, letting the server write and
    answer its plain requests' batch after each (``ServerState.flush_plain``,
    as one turn of the event loop does), then ``settle`` turns more."""
    for chunk in reads:
        connection.data_received(chunk)
        for _ in range(3):
            state.flush_plain()
            await asyncio.sleep(0)
    for _ in range(settle):
        state.flush_plain()
        await asyncio.sleep(0)


def raw_log_lines(folder: Path) -> list[bytes]:
    """The lines of every raw-log file in ``folder``, files in name order."""
    return [
        line
        for path in sorted(folder.iterdir())
        for line in path.read_bytes().splitlines()
    ]
