"""Starting real ``plowline collector`` processes for tests, and reading their logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from plowline.rawlog.record import RawRecord, decode_record

TEST_ID_HEADER = "x-test-id"
START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_test_id() -> str:
    return uuid.uuid4().hex


@dataclass
class RunningCollector:
    """A ``plowline collector`` started through the real command line."""

    process: subprocess.Popen[bytes]
    port: int
    raw_dir: Path
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def records(self) -> list[RawRecord]:
        """Every whole line of every raw log, files in name order."""
        if not self.raw_dir.exists():
            return []
        records = []
        for path in sorted(self.raw_dir.iterdir()):
            for line in path.read_bytes().split(b"\n"):
                if line:
                    records.append(decode_record(line))
        return records

    def records_for(self, test_id: str) -> list[RawRecord]:
        return [r for r in self.records() if r.header(TEST_ID_HEADER) == test_id]

    def record_for(self, test_id: str) -> RawRecord:
        found = self.records_for(test_id)
        assert len(found) == 1, f"{len(found)} records for {test_id}"
        return found[0]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the collector (by its pid) and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_collector(
    workdir: Path, *, env: dict[str, str] | None = None
) -> RunningCollector:
    port = free_port()
    raw_dir = workdir / "raw"
    log_path = workdir / "collector.log"
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith("PLOWLINE_COLLECTOR_")
    }
    child_env.update(env or {})
    command = [
        sys.executable,
        "-c",
        "from plowline.cli import main; main()",
        "collector",
        "--port",
        str(port),
        "--raw-dir",
        str(raw_dir),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=child_env
        )
    running = RunningCollector(process, port, raw_dir, log_path)
    _wait_for_health(running)
    return running


def _wait_for_health(running: RunningCollector) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(trust_env=False, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                pytest.fail(f"collector exited at start-up:\n{running.log()}")
            try:
                if client.get(running.base_url + "/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    running.stop()
    pytest.fail(f"collector not ready in {START_TIMEOUT} s:\n{running.log()}")


class CollectorFactory:
    """Starts collectors for one test and stops whichever are still running."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[RunningCollector] = []

    def __call__(self, env: dict[str, str] | None = None) -> RunningCollector:
        workdir = self.tmp_path / f"collector{len(self.started)}"
        workdir.mkdir()
        running = start_collector(workdir, env=env)
        self.started.append(running)
        return running

    def stop_all(self) -> None:
        for running in self.started:
            if running.process.poll() is None:
                running.stop()
