"""Raw-socket helpers of the collector's HTTP server tests (the tester passes in
test_http1_breaking.py and test_http1_sinks_breaking.py)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable

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
