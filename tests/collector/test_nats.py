"""The NATS JetStream path end to end, against the NATS server on 127.0.0.1:4222.

The collector reaches the server through a TCP proxy this test starts and stops,
so the stream can go away and come back without touching the shared server.
Each test uses a stream of its own and deletes it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from collector_process import CollectorFactory, RunningCollector
from nats_support import NATS_HOST, NATS_PORT, NATS_URL, TcpProxy, nats_reachable

from plowline.rawlog.record import decode_record

pytestmark = pytest.mark.slow

WAIT_SECONDS = 30.0


nats = pytest.importorskip("nats", reason="nats-py is not installed")
if not nats_reachable():
    pytest.skip(
        f"No NATS server with JetStream at {NATS_URL}: start one (nats-server -js) "
        "to run the stream tests.",
        allow_module_level=True,
    )


async def _stream_call(name: str, action: str) -> Any:
    connection = await nats.connect(NATS_URL)
    try:
        js = connection.jetstream()
        if action == "delete":
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
            return None
        info = await js.stream_info(name)
        count = info.state.messages
        if action == "count":
            return count
        first = info.state.first_seq
        messages = [await js.get_msg(name, seq) for seq in range(first, first + count)]
        return [message.data for message in messages]
    finally:
        await connection.close()


def stream_count(name: str) -> int:
    with contextlib.suppress(nats.js.errors.NotFoundError):
        return int(asyncio.run(_stream_call(name, "count")))
    return 0


def stream_tags(name: str) -> Counter[str]:
    payloads: list[bytes] = asyncio.run(_stream_call(name, "messages"))
    return Counter(tag_of(decode_record(data).querystring) for data in payloads)


def tag_of(querystring: bytes | None) -> str:
    assert querystring is not None
    return parse_qs(querystring.decode())["pltag"][0]


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def send(collector: RunningCollector, count: int) -> list[str]:
    """Tagged page views; the tags of those answered 2xx."""
    acknowledged = []
    with httpx.Client(base_url=collector.base_url, trust_env=False) as client:
        for _ in range(count):
            tag = uuid.uuid4().hex
            query = f"/i?e=pv&p=web&tv=test-1&aid=nats-test&pltag={tag}"
            if client.get(query).is_success:
                acknowledged.append(tag)
    return acknowledged


def spooled_lines(raw_dir: Path) -> int:
    return sum(
        len(path.read_bytes().splitlines())
        for path in raw_dir.iterdir()
        if not path.name.startswith(".")
    )


@pytest.fixture
def stream_name() -> Iterator[str]:
    name = f"PLOWLINE_TEST_{uuid.uuid4().hex[:12].upper()}"
    yield name
    asyncio.run(_stream_call(name, "delete"))


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    running = TcpProxy((NATS_HOST, NATS_PORT))
    running.start()
    yield running
    running.stop()


def test_stream_away_and_back_keeps_every_acknowledged_record(
    collector_factory: CollectorFactory,
    stream_name: str,
    proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    collector = collector_factory(
        {
            "PLOWLINE_COLLECTOR_SINK": "nats",
            "PLOWLINE_COLLECTOR_NATS_URL": f"nats://127.0.0.1:{proxy.port}",
            "PLOWLINE_COLLECTOR_NATS_STREAM": stream_name,
            "PLOWLINE_COLLECTOR_NATS_SUBJECT": f"plowline.test.{stream_name.lower()}",
            "PLOWLINE_COLLECTOR_NATS_TIMEOUT_SECONDS": "1",
        }
    )
    before = send(collector, 40)
    wait_for(lambda: stream_count(stream_name) == 40, "the first records")

    proxy.stop()
    during = send(collector, 40)
    assert len(during) == 40
    assert stream_count(stream_name) == 40
    assert spooled_lines(collector.raw_dir) >= 40

    proxy.start()
    wait_for(lambda: stream_count(stream_name) == 80, "the spooled records")
    after = send(collector, 20)
    wait_for(lambda: stream_count(stream_name) == 100, "the last records")
    assert collector.stop() == 0

    assert stream_tags(stream_name) == Counter(before + during + after)
    forwarded = [p for p in collector.raw_dir.iterdir() if p.suffix == ".forwarded"]
    assert forwarded

    good, bad = tmp_path / "good.tsv", tmp_path / "bad.jsonl"
    command = [
        sys.executable,
        "-m",
        "plowline",
        "enrich",
        "--from-nats",
        NATS_URL,
        "--stream",
        stream_name,
        "--good",
        str(good),
        "--bad",
        str(bad),
        "--until-idle",
    ]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert len(good.read_bytes().splitlines()) == 100
    assert bad.read_bytes() == b""

    again = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr.decode()
    assert len(good.read_bytes().splitlines()) == 100
