"""Running the real ``plowline up`` in a test: start, send, query, stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from plowline.storage.query import QueryResult, run_query

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningUp:
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    stdout_path: Path
    stderr_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def duckdb_path(self) -> Path:
        return self.workdir / "plowline.duckdb"

    @property
    def raw_dir(self) -> Path:
        return self.workdir / "plowline-data" / "raw"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def query(self, sql: str) -> QueryResult:
        return run_query(self.duckdb_path, sql)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        result = self.query(sql)
        return [dict(zip(result.columns, row, strict=True)) for row in result.rows]

    def tables_exist(self, schema: str, table: str) -> bool:
        return bool(
            self.scalar(
                "select count(*) from information_schema.tables "
                f"where table_schema = '{schema}' and table_name = '{table}'"
            )
        )

    def scalar(self, sql: str) -> Any:
        return self.query(sql).rows[0][0]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> float:
        """Seconds until ``condition`` held; fails the test after ``timeout``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if condition():
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout} s:\n{self.stderr()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def plowline_command() -> list[str]:
    return [sys.executable, "-m", "plowline"]


def start_up(workdir: Path, *extra: str) -> RunningUp:
    """``plowline up`` in ``workdir`` with its default paths, on a free port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stdout_path, stderr_path = workdir / "up.stdout", workdir / "up.stderr"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(
            [*plowline_command(), "up", "--port", str(port), *extra],
            cwd=workdir,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    running = RunningUp(process, port, workdir, stdout_path, stderr_path)
    deadline = time.monotonic() + START_TIMEOUT
    while "Plowline is up" not in running.stdout():
        if process.poll() is not None or time.monotonic() > deadline:
            running.stop(signal.SIGKILL)
            raise AssertionError(f"plowline up did not start:\n{running.stderr()}")
        time.sleep(0.05)
    with httpx.Client(trust_env=False) as client:
        assert client.get(f"{running.base_url}/health").status_code == 200
    return running
