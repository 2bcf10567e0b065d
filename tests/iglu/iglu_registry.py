"""A static Iglu registry on 127.0.0.1 for tests: serves a folder, counts requests."""

from __future__ import annotations

import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fixture_traffic import SHARED

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "iglu"
IGLU_CENTRAL = SHARED / "data" / "iglu-central"
FIXTURE_SCHEMAS = SHARED / "fixtures" / "traffic"


@dataclass
class Registry:
    """What the running registry saw, and how it should answer."""

    root: Path
    url: str = ""
    requests: Counter[str] = field(default_factory=Counter)
    headers: list[dict[str, str]] = field(default_factory=list)
    status: int | None = None  # answer every request with this status
    apikey: str | None = None  # when set, other keys get 401


def _handler(registry: Registry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            registry.requests[self.path] += 1
            registry.headers.append({k.lower(): v for k, v in self.headers.items()})
            if registry.status is not None:
                self._answer(registry.status, b"{}")
                return
            if registry.apikey and self.headers.get("apikey") != registry.apikey:
                self._answer(401, b'{"message": "not authorised"}')
                return
            target = (registry.root / self.path.lstrip("/")).resolve()
            if registry.root not in target.parents or not target.is_file():
                self._answer(404, b'{"message": "not found"}')
                return
            self._answer(200, target.read_bytes())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve_registry(root: Path) -> Iterator[Registry]:
    registry = Registry(root.resolve())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(registry))
    registry.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_shared(folder: Path) -> Path:
    """A folder of ../shared; skips where it is absent, except in CI (CI=true),
    which always has it, so there a missing folder fails the test."""
    if not folder.is_dir():
        message = f"shared test data not found in {folder} (set PLOWLINE_SHARED)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder
