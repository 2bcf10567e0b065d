"""Collector benchmark: Plowline's collector against nginx serving the same pixel.

Run from the repository, with Plowline installed in the interpreter that runs it::

    .venv/bin/python bench/collector.py
    .venv/bin/python bench/collector.py --duration 20 --markdown result.md
    .venv/bin/python bench/collector.py --post        # batched POST to /tp2

Each server gets a warm-up, then a measured run of fixed length and connection
count: nginx (one worker process, combined access log on) returning the 43-byte
GIF from a file, then Plowline's collector with 1 and with 2 workers. Load comes
from wrk when it is installed, else from a small asyncio load generator
(bench/collector_load.py; reported as such: it is slower than wrk and may itself
be the limit).

The table counts the records each server wrote for the measured run (raw-log
lines for Plowline, access-log lines for nginx; a marker in the User-Agent tells
runs apart) against the 2xx the load generator received. wrk stops with one
request in flight on some connections; those are recorded but never counted as
received, so the check is: records = 2xx + requests in flight at the stop.

Only 127.0.0.1 ports that this script opened receive traffic, and every server
it starts is stopped by its process id. Nothing is installed: a missing wrk or
nginx is named with the ``apt-get install`` that brings it, and the rest runs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from collector_load import (
    BenchError,
    BenchRequest,
    LoadGenerator,
    LoadResult,
    PythonLoad,
    WrkLoad,
    batch_post,
    page_view_get,
    tool_version,
)
from collector_servers import NginxServer, PlowlineServer, Server

# /usr/sbin is often missing from a non-root PATH, and nginx lives there.
_EXTRA_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
_TICKS = os.sysconf("SC_CLK_TCK")


# Measuring.


def _process_cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def _machine_cpu_seconds() -> tuple[float, float]:
    """Busy and steal CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq) / _TICKS, steal / _TICKS


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass(slots=True)
class Measurement:
    """One server's measured run and what it cost."""

    server: str
    workers: int
    load: LoadResult
    records: int
    rss: list[tuple[str, float]]
    server_cpu: float
    other_cpu: float
    steal: float

    @property
    def check(self) -> str:
        """Whether the records match: every 2xx, plus the requests in flight."""
        load = self.load
        if load.ok != load.responses:
            return f"FAILED: {load.responses - load.ok} responses were not 2xx"
        expected = load.ok + load.in_flight
        if self.records == expected:
            return "ok"
        if load.ok <= self.records < expected:
            # A server may drop a request whose client has gone; never a 2xx one.
            return f"ok, {expected - self.records} in flight not recorded"
        return f"MISMATCH: {self.records:,} records, expected {expected:,}"


def new_marker() -> str:
    return uuid.uuid4().hex[:16]


def measure(
    server: Server,
    load: LoadGenerator,
    make_request: Callable[[str], BenchRequest],
    options: argparse.Namespace,
) -> Measurement:
    """Start ``server``, warm it up, measure one run, stop it, count its records."""
    label = f"{server.name} ({server.workers} worker{'s' * (server.workers > 1)})"
    marker = new_marker()
    try:
        server.start()
        if options.warmup:
            _progress(f"{label}: warm-up {options.warmup} s")
            load.run(server.port, make_request(new_marker()), options.warmup)
        _progress(f"{label}: measuring {options.duration} s")
        request = make_request(marker)
        pids = [pid for _, pid in server.processes()]
        server_before = _process_cpu_seconds(pids)
        busy_before, steal_before = _machine_cpu_seconds()
        result = load.run(server.port, request, options.duration)
        busy_after, steal_after = _machine_cpu_seconds()
        server_cpu = _process_cpu_seconds(pids) - server_before
        rss = [(role, _rss_mb(pid)) for role, pid in server.processes()]
    finally:
        server.stop()
    records = server.count_records(marker)
    seconds = result.seconds or 1.0
    other = (busy_after - busy_before) - server_cpu - result.cpu_seconds
    return Measurement(
        server=server.name,
        workers=server.workers,
        load=result,
        records=records,
        rss=rss,
        server_cpu=server_cpu / seconds,
        other_cpu=max(0.0, other / seconds),
        steal=(steal_after - steal_before) / seconds,
    )


def _progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# Report.


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _plowline_version() -> str:
    version = importlib.metadata.version("plowline")
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} (commit {commit}{', src/ modified' if dirty else ''})"


def machine_lines(nginx: str | None, wrk: str | None) -> list[str]:
    """What the numbers were measured on."""
    cpus = len(os.sched_getaffinity(0))
    load = Path("/proc/loadavg").read_text().split()[:3]
    tools = [
        f"Python {platform.python_version()}",
        f"plowline {_plowline_version()}",
        f"httptools {importlib.metadata.version('httptools')}",
        f"uvloop {importlib.metadata.version('uvloop')}",
        f"nginx {tool_version(nginx)}" if nginx else "nginx not installed",
        f"wrk {tool_version(wrk)}" if wrk else "wrk not installed",
    ]
    return [
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {cpus} CPUs ({_cpu_model()}), {platform.system()} "
        f"{platform.release()}; load average at start {' '.join(load)}",
        f"- Software: {', '.join(tools)}",
    ]


def _fmt_rss(rss: list[tuple[str, float]]) -> str:
    return ", ".join(f"{mb:.1f} ({role})" for role, mb in rss)


def results_table(rows: list[Measurement]) -> list[str]:
    nginx = next((m.load.rate for m in rows if m.server == "nginx"), None)
    lines = [
        "| server | workers | req/s | p50 ms | p99 ms | vs nginx | 2xx | records "
        "| RSS MB per process |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for m in rows:
        ratio = f"{m.load.rate / nginx:.2f}" if nginx else "n/a"
        lines.append(
            f"| {m.server} | {m.workers} | {m.load.rate:,.0f} | {m.load.p50_ms:.1f} "
            f"| {m.load.p99_ms:.1f} | {ratio} | {m.load.ok:,} | {m.records:,} "
            f"| {_fmt_rss(m.rss)} |"
        )
    return lines


def conditions_table(rows: list[Measurement]) -> list[str]:
    lines = [
        "| server | workers | in flight at stop | non-2xx | socket errors "
        "| records check | server CPU | req per server CPU-s | load generator CPU "
        "| other CPU | steal |",
        "|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|",
    ]
    for m in rows:
        load = m.load
        load_cpu = load.cpu_seconds / (load.seconds or 1.0)
        other_status = load.responses - load.ok
        efficiency = load.rate / m.server_cpu if m.server_cpu else 0.0
        lines.append(
            f"| {m.server} | {m.workers} | {load.in_flight} | {other_status} "
            f"| {load.socket_errors} | {m.check} | {m.server_cpu:.0%} "
            f"| {efficiency:,.0f} | {load_cpu:.0%} | {m.other_cpu:.0%} "
            f"| {m.steal:.0%} |"
        )
    return lines


def report(
    rows: list[Measurement],
    header: list[str],
    skipped: list[str],
    request: BenchRequest,
    load: LoadGenerator,
    options: argparse.Namespace,
) -> str:
    """The whole result as Markdown."""
    lines = ["## Collector benchmark", "", *header]
    lines.append(
        f"- Load: {load.label}, {options.connections} connections, "
        f"{options.threads} thread(s), {options.duration} s measured after a "
        f"{options.warmup} s warm-up, HTTP/1.1 keep-alive"
    )
    lines.append(f"- Request: {request.describe()}")
    if options.collector_args:
        lines.append(f"- Collector options: `{options.collector_args}`")
    lines += ["", *results_table(rows), "", *conditions_table(rows), ""]
    lines += [f"- Skipped: {text}" for text in skipped]
    lines.append(
        "- CPU columns are in percent of one core over the measured run; other CPU "
        "is what the rest of the machine used meanwhile (other people's work adds "
        "noise); steal is time the hypervisor gave to other guests. Requests per "
        "server CPU-second (all the server's processes) varies less with that noise "
        "than req/s does."
    )
    lines.append(_goal_line(rows))
    return "\n".join(lines) + "\n"


def _goal_line(rows: list[Measurement]) -> str:
    nginx = next((m for m in rows if m.server == "nginx"), None)
    single = next((m for m in rows if m.server == "plowline" and m.workers == 1), None)
    if nginx is None or single is None or not nginx.load.rate:
        return "- Goal (1 worker at 0.8 of nginx's req/s): not measured in this run."
    ratio = single.load.rate / nginx.load.rate
    verdict = "met" if ratio >= 0.8 else "not met"
    return f"- Goal (1 worker at 0.8 of nginx's req/s): {verdict}, {ratio:.2f}."


# Command line.


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Plowline's collector against nginx serving the pixel.",
    )
    parser.add_argument(
        "--duration", type=int, default=10, help="measured seconds (10)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds (2)")
    parser.add_argument(
        "--connections", type=int, default=50, help="open connections (50)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        choices=(1, 2),
        default=1,
        help="wrk threads, or Python load processes (1)",
    )
    parser.add_argument(
        "--workers", default="1,2", help="Plowline worker counts to run, e.g. 1,2 (1,2)"
    )
    parser.add_argument(
        "--post", action="store_true", help="send a batched POST instead of GET /i"
    )
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk if installed (auto), or force one",
    )
    parser.add_argument("--no-nginx", action="store_true", help="skip the nginx run")
    parser.add_argument(
        "--collector-args",
        default="",
        help="more options for `plowline collector`, e.g. '--durability fsync'",
    )
    parser.add_argument("--markdown", type=Path, help="also write the result here")
    options = parser.parse_args(argv)
    try:
        options.worker_counts = [int(n) for n in options.workers.split(",")]
    except ValueError:
        parser.error(f"--workers {options.workers!r} is not a list like 1,2")
    if min(options.worker_counts) < 1 or options.duration < 1 or options.warmup < 0:
        parser.error("workers and --duration must be at least 1, --warmup at least 0")
    if options.connections < options.threads:
        parser.error("--connections must be at least --threads")
    return options


def find_tool(name: str) -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + _EXTRA_PATH
    return shutil.which(name, path=path)


def choose_load(
    options: argparse.Namespace, wrk: str | None, workdir: Path, skipped: list[str]
) -> LoadGenerator:
    if wrk is not None and options.load_generator != "python":
        return WrkLoad(wrk, options.threads, options.connections, workdir)
    label = "Python asyncio load generator (bench/collector_load.py)"
    if wrk is None:
        skipped.append(
            "wrk is not installed (`apt-get install wrk` brings it); the Python "
            "load generator ran instead, and it may be the limit, not the servers"
        )
    return PythonLoad(options.threads, options.connections, label)


def run_all(
    options: argparse.Namespace, nginx: str | None, load: LoadGenerator, workdir: Path
) -> list[Measurement]:
    """nginx first, then Plowline with each worker count, one after the other."""
    make_request = batch_post if options.post else page_view_get
    servers: list[Server] = []
    if nginx is not None and not options.no_nginx:
        servers.append(NginxServer(nginx, workdir / "nginx"))
    extra = shlex.split(options.collector_args)
    for n in options.worker_counts:
        servers.append(PlowlineServer(workdir / f"plowline-{n}", n, extra))
    return [measure(server, load, make_request, options) for server in servers]


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    wrk, nginx = find_tool("wrk"), find_tool("nginx")
    if options.load_generator == "wrk" and wrk is None:
        print("wrk is not installed: `apt-get install wrk` brings it.", file=sys.stderr)
        return 2
    skipped: list[str] = []
    if nginx is None and not options.no_nginx:
        skipped.append(
            "nginx is not installed (`apt-get install nginx-light` brings it)"
        )
    header = machine_lines(nginx, wrk)

    with tempfile.TemporaryDirectory(prefix="plowline-bench-") as temp:
        workdir = Path(temp)
        workdir.chmod(0o755)  # nginx's worker may run as another user
        load = choose_load(options, wrk, workdir, skipped)
        for text in skipped:
            _progress(text)
        try:
            rows = run_all(options, nginx, load, workdir)
        except BenchError as exc:
            _progress(f"stopped: {exc}")
            return 1

    request = (batch_post if options.post else page_view_get)(new_marker())
    text = report(rows, header, skipped, request, load, options)
    print(text)
    if options.markdown:
        options.markdown.write_text(text)
    return 0 if all(m.check.startswith("ok") for m in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
