"""The servers of the collector benchmark: nginx and Plowline's collector.

Each runs as a child process on a free 127.0.0.1 port, in a folder of its own,
and is stopped by its process id (SIGTERM, then SIGKILL after 30 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from collector_load import HOST, POST_PATH, BenchError

from plowline.collector.app import PIXEL

CACHE_CONTROL = "no-cache, no-store, must-revalidate"


class Server(Protocol):
    name: str
    workers: int
    port: int

    def start(self) -> None: ...

    def processes(self) -> list[tuple[str, int]]: ...

    def stop(self) -> None: ...

    def count_records(self, marker: str) -> int: ...


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Block until ``url`` answers 200; raise BenchError if the server dies first."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{url} never answered; the server exited:\n{_tail(log)}")
        try:
            with opener.open(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise BenchError(f"{url} did not answer 200 within 20 s:\n{_tail(log)}")


def check_pixel(url: str) -> None:
    """Check that ``url`` returns the 43-byte GIF with the no-cache header."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        body = response.read()
        cache = response.headers.get("Cache-Control", "")
        kind = response.headers.get("Content-Type", "")
    if body != PIXEL or cache != CACHE_CONTROL or kind != "image/gif":
        raise BenchError(
            f"{url} did not return the pixel: {len(body)} bytes, Content-Type "
            f"{kind!r}, Cache-Control {cache!r}."
        )


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _count_lines_with(paths: list[Path], marker: str) -> int:
    needle = marker.encode()
    total = 0
    for path in paths:
        with path.open("rb") as lines:
            total += sum(1 for line in lines if needle in line)
    return total


Identity = tuple[int, int]  # pid and start time: a pid alone may be reused


def identities(pids: list[int]) -> list[Identity]:
    """The pids with their start times, for the ones that still run."""
    found = []
    for pid in pids:
        started = _start_time(pid)
        if started is not None:
            found.append((pid, started))
    return found


def _start_time(pid: int) -> int | None:
    """The start time of a running process, None for a gone or zombie one."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _stop_process(process: subprocess.Popen[bytes], children: list[Identity]) -> None:
    """SIGTERM, then SIGKILL after 30 s; ``children`` left behind are killed."""
    children = children + identities(descendants(process.pid))
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        print(
            f"  pid {process.pid} ignored SIGTERM for 30 s; killing it", file=sys.stderr
        )
        process.kill()
        process.wait()
    for pid, started in set(children):
        # A worker that outlived its parent: still ours if its start time matches.
        if _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):  # it may exit meanwhile
                os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        kids = sorted(children.get(pending.pop(), []))
        found += kids
        pending += kids
    return found


@dataclass(slots=True)
class NginxServer:
    """nginx, one worker, serving the pixel from a file with the access log on."""

    executable: str
    root: Path
    name: str = "nginx"
    workers: int = 1
    port: int = 0
    _process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port = free_port()
        self.root.mkdir()
        # Under root nginx's worker runs as another user and must read the pixel.
        self.root.chmod(0o755)
        (self.root / "pixel.gif").write_bytes(PIXEL)
        conf = self.root / "nginx.conf"
        conf.write_text(self._config())
        command = [self.executable, "-c", str(conf), "-p", str(self.root)]
        # -e sends the start-up messages to our folder, not /var/log/nginx.
        command += ["-e", str(self.root / "error.log")]
        with (self.root / "stdout.log").open("wb") as out:
            self._process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT
            )
        url = f"http://{HOST}:{self.port}/i"
        wait_for_http(url, self._process, self.root / "error.log")
        check_pixel(url)

    def _config(self) -> str:
        root = self.root
        temp_paths = "\n".join(
            f"    {kind}_temp_path {root / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""daemon off;
master_process on;
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log {root / "access.log"} combined;
{temp_paths}
    # The collector keeps connections open as long as the client does.
    keepalive_requests 1000000;
    server {{
        listen {HOST}:{self.port};
        location = /i {{
            default_type image/gif;
            add_header Cache-Control "{CACHE_CONTROL}";
            alias {root / "pixel.gif"};
        }}
        location = {POST_PATH} {{
            default_type text/plain;
            add_header Cache-Control "{CACHE_CONTROL}";
            return 200 "ok";
        }}
    }}
}}
"""

    def processes(self) -> list[tuple[str, int]]:
        assert self._process is not None
        master = self._process.pid
        return [("master", master)] + [("worker", pid) for pid in descendants(master)]

    def stop(self) -> None:
        if self._process is not None:
            _stop_process(self._process, [])

    def count_records(self, marker: str) -> int:
        return _count_lines_with([self.root / "access.log"], marker)


@dataclass(slots=True)
class PlowlineServer:
    """``python -m plowline collector`` with ``workers`` worker processes."""

    root: Path
    workers: int
    extra_args: list[str] = field(default_factory=list)
    name: str = "plowline"
    port: int = 0
    _process: subprocess.Popen[bytes] | None = None
    _workers: list[Identity] = field(default_factory=list)

    def start(self) -> None:
        self.port = free_port()
        self.root.mkdir()
        command = [sys.executable, "-m", "plowline", "collector", "--port"]
        command += [str(self.port), "--raw-dir", str(self.root / "raw")]
        command += ["--workers", str(self.workers), *self.extra_args]
        with (self.root / "collector.log").open("wb") as out:
            self._process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT
            )
        base = f"http://{HOST}:{self.port}"
        wait_for_http(f"{base}/health", self._process, self.root / "collector.log")
        check_pixel(f"{base}/i")

    def processes(self) -> list[tuple[str, int]]:
        assert self._process is not None
        main = self._process.pid
        workers = descendants(main)
        self._workers = identities(workers)
        return [("main", main)] + [("worker", pid) for pid in workers]

    def stop(self) -> None:
        if self._process is not None:
            # Workers seen under load are also stopped if the main process hangs.
            _stop_process(self._process, self._workers)

    def count_records(self, marker: str) -> int:
        return _count_lines_with(
            sorted((self.root / "raw").glob("raw-*.jsonl")), marker
        )
