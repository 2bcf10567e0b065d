"""``plowline up`` when things go wrong: busy port, bad options, a killed process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from up_process import start_up


def run_up(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plowline", "up", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: it only waits for its parent to collect it.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_second_up_on_a_busy_port_refuses_to_start(tmp_path: Path) -> None:
    first = start_up(tmp_path / "first")
    try:
        second_dir = tmp_path / "second"
        second_dir.mkdir()
        done = run_up(second_dir, "--port", str(first.port))
        assert done.returncode == 1
        assert f"Cannot listen on 127.0.0.1:{first.port}" in done.stderr
        assert "another" in done.stderr
        assert list(second_dir.iterdir()) == []
    finally:
        assert first.stop() == 0


def test_bad_options_are_named(tmp_path: Path) -> None:
    done = run_up(tmp_path, "--port", "99999")
    assert done.returncode == 2
    assert "--port" in done.stderr and "99999" in done.stderr
    assert "collector" not in done.stderr
    assert run_up(tmp_path, "--workers", "0").returncode == 2
    assert list(tmp_path.iterdir()) == []


def test_killed_up_takes_its_collector_down(tmp_path: Path) -> None:
    up = start_up(tmp_path / "killed")
    [collector] = children(up.process.pid)
    up.process.send_signal(signal.SIGKILL)
    up.process.wait(timeout=10)

    deadline = time.monotonic() + 15
    while alive(collector) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(collector)
    with httpx.Client(trust_env=False) as client:
        try:
            client.get(f"{up.base_url}/health", timeout=2)
        except httpx.TransportError:
            pass
        else:
            raise AssertionError("the collector still answers after up was killed")

    again = start_up(up.workdir)
    assert again.stop() == 0
