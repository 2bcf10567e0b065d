"""Sinks in one process: group commit, stdout, and the NATS sink's local spool."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from collector_process import free_port

from plowline.cli import cli
from plowline.collector.config import CollectorConfig
from plowline.collector.server import wait_until_ready
from plowline.collector.sinks import GroupCommit, RawLogSink, StdoutSink, build_sink
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord, decode_record
from plowline.rawlog.writer import Durability, RawLogWriter, SyncResult


def record(n: int) -> RawRecord:
    return RawRecord(
        id=f"00000000-0000-4000-8000-{n:012d}",
        tstamp=1796398275792 + n,
        collector="plowline-test",
        method="GET",
        path="/i",
        querystring=f"e=pv&n={n}".encode(),
    )


def lines_in(raw_dir: Path) -> list[bytes]:
    return [
        line
        for path in sorted(raw_dir.iterdir())
        for line in path.read_bytes().splitlines()
    ]


async def write_all(sink: RawLogSink, count: int) -> None:
    pending = [sink.write(record(n)) for n in range(count)]
    await asyncio.gather(*(p for p in pending if p is not None))


def test_concurrent_records_share_fsyncs(tmp_path: Path) -> None:
    writer = RawLogWriter(tmp_path, durable=True)
    sink = RawLogSink(writer, durability=Durability.FSYNC)
    asyncio.run(write_all(sink, 200))
    syncs = sink.commit.syncs if sink.commit else 0
    sink.close()

    assert 1 <= syncs < 200
    assert len(lines_in(tmp_path)) == 200


def test_os_durability_stores_without_waiting(tmp_path: Path) -> None:
    sink = RawLogSink(RawLogWriter(tmp_path))

    assert sink.write(record(1)) is None
    sink.close()
    assert [decode_record(line).id for line in lines_in(tmp_path)] == [record(1).id]


def test_failed_fsync_fails_every_record_it_covered() -> None:
    failure = OSError(errno.EIO, "Input/output error")
    commit = GroupCommit(lambda: SyncResult(ticket=3, error=failure))

    async def wait_three() -> list[BaseException | None]:
        waits = [commit.wait_for(ticket) for ticket in (1, 2, 3)]
        return await asyncio.gather(*waits, return_exceptions=True)

    outcomes = asyncio.run(wait_three())
    commit.close()
    assert outcomes == [failure] * 3


def test_fsync_durability_needs_a_durable_writer(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durable=True"):
        RawLogSink(RawLogWriter(tmp_path), durability=Durability.FSYNC)


def test_stdout_sink_writes_one_line_per_record() -> None:
    read_end, write_end = os.pipe()
    sink = StdoutSink(write_end)
    sink.write(record(1))
    sink.write(record(2))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        lines = pipe.read().splitlines()

    assert [decode_record(line).id for line in lines] == [record(1).id, record(2).id]


def nats_config(raw_dir: Path) -> CollectorConfig:
    # A port nobody listens on: the stream is unreachable.
    return CollectorConfig(
        raw_dir=raw_dir,
        sink="nats",
        nats_url=f"nats://127.0.0.1:{free_port()}",
        nats_stream="PLOWLINE_UNREACHABLE",
        nats_timeout_seconds=0.5,
    )


def test_unreachable_stream_spools_records_locally(tmp_path: Path) -> None:
    pytest.importorskip("nats", reason="nats-py is not installed")
    sink = build_sink(nats_config(tmp_path))
    stored = sink.write(record(1))
    assert stored is None or isinstance(stored, Awaitable)
    sink.close()

    assert [decode_record(line).id for line in lines_in(tmp_path)] == [record(1).id]
    assert [p.suffix for p in tmp_path.iterdir()] == [".jsonl"]


def test_unreachable_stream_and_failing_disk_refuse_the_record(
    tmp_path: Path,
) -> None:
    pytest.importorskip("nats", reason="nats-py is not installed")
    raw_dir = tmp_path / "raw"
    sink = build_sink(nats_config(raw_dir))
    raw_dir.rmdir()
    raw_dir.write_text("not a folder")
    try:
        with pytest.raises(OSError):
            sink.write(record(1))
    finally:
        sink.close()


# --- settings and the command line -------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sink": "kafka"}, "must be one of rawlog, stdout, nats"),
        ({"durability": "always"}, "must be one of os, fsync"),
        ({"sink": "stdout", "durability": "fsync"}, "not to sink = 'stdout'"),
        ({"nats_stream": "raw.events"}, "not a JetStream stream name"),
        ({"nats_subject": "plowline.*"}, "no wildcards"),
        ({"nats_timeout_seconds": 0}, "must be positive"),
    ],
    ids=["sink", "durability", "stdout-fsync", "stream", "subject", "timeout"],
)
def test_bad_sink_setting_is_named(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        CollectorConfig(**settings)


def test_sink_settings_survive_the_environment_round_trip() -> None:
    config = CollectorConfig(
        sink="nats",
        durability="fsync",
        nats_url="nats://127.0.0.1:4333",
        nats_stream="RAW",
        nats_subject="raw.in",
        nats_timeout_seconds=0.5,
    )

    assert CollectorConfig.from_env(config.to_env()) == config


def test_enrich_needs_inputs_or_a_stream() -> None:
    result = CliRunner().invoke(cli, ["enrich", "--good", "-", "--bad", "-"])

    assert result.exit_code == 2
    assert "Give INPUT files or --from-nats URL" in result.output


@pytest.mark.slow
def test_stdout_sink_prints_records_and_logs_elsewhere(tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "plowline",
        "collector",
        "--port",
        str(port),
        "--raw-dir",
        str(tmp_path / "raw"),
        "--sink",
        "stdout",
    ]
    with (tmp_path / "stderr").open("wb") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout=20)
        with httpx.Client(trust_env=False) as client:
            for n in range(3):
                client.get(f"http://127.0.0.1:{port}/i?n={n}")
    finally:
        process.send_signal(signal.SIGTERM)
        printed, _ = process.communicate(timeout=30)

    assert process.returncode == 0
    records = [decode_record(line) for line in printed.splitlines()]
    assert [r.querystring for r in records] == [b"n=0", b"n=1", b"n=2"]
    assert "Records go to standard output" in (tmp_path / "stderr").read_text()
    # Nothing is written there, so the raw-log folder is not made.
    assert not (tmp_path / "raw").exists()
