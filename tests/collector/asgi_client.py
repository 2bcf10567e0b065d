"""Driving :class:`CollectorApp` in-process, one ASGI request at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from plowline.collector.app import CollectorApp
from plowline.rawlog.record import RawRecord

Header = tuple[bytes, bytes]


@dataclass
class Response:
    """What the application sent back for one request."""

    status: int
    headers: list[Header]
    body: bytes
    messages: list[dict[str, Any]] = field(repr=False)

    def header(self, name: str) -> str | None:
        values = self.header_list(name)
        return values[0] if values else None

    def header_list(self, name: str) -> list[str]:
        wanted = name.lower().encode()
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == wanted]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class MemoryWriter:
    """A record writer that keeps records in a list; ``fail`` makes writes fail."""

    def __init__(self) -> None:
        self.records: list[RawRecord] = []
        self.fail = False
        self.closed = False

    def write(self, record: RawRecord) -> None:
        if self.fail:
            raise OSError(28, "No space left on device")
        self.records.append(record)

    def close(self) -> None:
        self.closed = True


def scope_for(
    method: str,
    target: bytes,
    headers: Sequence[Header],
    *,
    scheme: str = "http",
    client: tuple[str, int] | None = ("203.0.113.9", 5555),
) -> dict[str, Any]:
    """The ASGI scope a server builds: ``path`` decoded, ``raw_path`` as sent."""
    raw_path, _, query = target.partition(b"?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "headers": [(name.lower(), value) for name, value in headers],
        "client": client,
        "server": ("127.0.0.1", 8080),
    }


async def send_request(
    app: CollectorApp,
    scope: dict[str, Any],
    body_parts: Sequence[bytes] = (b"",),
    *,
    disconnect_early: bool = False,
) -> Response:
    incoming = [
        {"type": "http.request", "body": part, "more_body": i < len(body_parts) - 1}
        for i, part in enumerate(body_parts)
    ]
    if disconnect_early and incoming:
        incoming[-1]["more_body"] = True
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    body = b"".join(
        m.get("body", b"") for m in sent if m["type"] == "http.response.body"
    )
    return Response(starts[0]["status"], list(starts[0]["headers"]), body, sent)


def call(
    app: CollectorApp,
    method: str = "GET",
    target: str | bytes = "/i",
    headers: Sequence[Header] | dict[str, str] = (),
    body: bytes | Sequence[bytes] = b"",
    *,
    scheme: str = "http",
    client: tuple[str, int] | None = ("203.0.113.9", 5555),
    disconnect_early: bool = False,
) -> Response:
    """One request through ``app``, in a fresh event loop."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    if isinstance(headers, dict):
        headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
    parts = [body] if isinstance(body, bytes) else list(body)
    scope = scope_for(method, target, headers, scheme=scheme, client=client)
    return asyncio.run(
        send_request(app, scope, parts, disconnect_early=disconnect_early)
    )
