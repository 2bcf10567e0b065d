"""Acknowledged means stored: a collector killed with SIGKILL part-way through a
stream of requests, then restarted on the same folder, has every request it
answered 2xx in its raw log exactly once, and no torn line read as a record."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from collector_process import free_port

from plowline.rawlog.reader import iter_lines
from plowline.rawlog.record import decode_record

pytestmark = pytest.mark.slow

TOTAL = 2000
KILL_AFTER = 700
CLIENTS = 8
START_TIMEOUT = 20.0


class Collector:
    """A ``plowline collector`` in a process group of its own, to kill whole."""

    def __init__(self, raw_dir: Path, log_path: Path, durability: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLOWLINE_")}
        command = [
            sys.executable,
            "-m",
            "plowline",
            "collector",
            "--port",
            str(self.port),
            "--raw-dir",
            str(raw_dir),
            "--durability",
            durability,
        ]
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._wait_until_healthy()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, self.log_path.read_text()
                try:
                    if client.get(self.base_url + "/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        pytest.fail(f"collector not ready:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL the collector and its workers (its own process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


class Sender:
    """Clients that send tagged pixel requests and note which got a 2xx."""

    def __init__(self, ids: queue.Queue[str]) -> None:
        self.ids = ids
        self.acknowledged: list[str] = []
        self.lock = threading.Lock()

    def run(self, base_url: str, clients: int) -> None:
        threads = [
            threading.Thread(target=self._send, args=(base_url,))
            for _ in range(clients)
        ]
        for thread in threads:
            thread.start()
        self.threads = threads

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)

    def _send(self, base_url: str) -> None:
        with httpx.Client(base_url=base_url, trust_env=False, timeout=10) as client:
            while True:
                try:
                    test_id = self.ids.get_nowait()
                except queue.Empty:
                    return
                try:
                    response = client.get(f"/i?e=pv&tid={test_id}")
                except httpx.TransportError:
                    return  # the collector is gone: this request is not answered
                if response.is_success:
                    with self.lock:
                        self.acknowledged.append(test_id)

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def logged_ids(raw_dir: Path) -> Counter[str]:
    """Test ids of every record in the folder's closed raw logs."""
    found: Counter[str] = Counter()
    for _, _, line in iter_lines([str(raw_dir)]):
        record = decode_record(line)  # a torn line would fail here
        assert record.querystring is not None
        found[parse_qs(record.querystring.decode())["tid"][0]] += 1
    return found


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_sigkill_loses_and_doubles_no_acknowledged_request(
    tmp_path: Path, durability: str
) -> None:
    raw_dir = tmp_path / "raw"
    log_path = tmp_path / "collector.log"
    ids: queue.Queue[str] = queue.Queue()
    for n in range(TOTAL):
        ids.put(f"{n:06d}")
    sender = Sender(ids)

    first = Collector(raw_dir, log_path, durability)
    sender.run(first.base_url, CLIENTS)
    deadline = time.monotonic() + 30
    while sender.count() < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.01)
    first.kill()
    sender.join()
    acknowledged_before_kill = sender.count()

    second = Collector(raw_dir, log_path, durability)
    sender.run(second.base_url, CLIENTS)
    sender.join()
    assert second.stop() == 0

    logged = logged_ids(raw_dir)
    assert acknowledged_before_kill >= KILL_AFTER
    assert ids.empty() and sender.count() >= TOTAL - CLIENTS
    assert [name for name in os.listdir(raw_dir) if name.endswith(".open")] == []
    assert {test_id: logged[test_id] for test_id in sender.acknowledged} == {
        test_id: 1 for test_id in sender.acknowledged
    }
    assert max(logged.values()) == 1
    assert "left by stopped collector processes" in log_path.read_text()
