"""The request and the load generators of the collector benchmark.

The request is a page view as the JavaScript tracker v3 sends it from a browser
(GET /i with a web_page entity, or a POST batch of five events), with the
headers Chrome sends. Two load generators send it over HTTP/1.1 keep-alive: wrk
with a Lua script that counts requests sent and responses by status, or, where
wrk is missing, an asyncio generator over raw sockets in this module.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import re
import resource
import subprocess
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

HOST = "127.0.0.1"
POST_PATH = "/com.snowplowanalytics.snowplow/tp2"
_IGLU = "iglu:com.snowplowanalytics.snowplow"
_RESULT_PREFIX = "BENCH-RESULT "


class BenchError(Exception):
    """The benchmark could not run a step; the message says which and why."""


# The request: a JavaScript tracker v3 page view, as a browser sends it.


@dataclass(frozen=True, slots=True)
class BenchRequest:
    """One HTTP/1.1 request, sent unchanged on every connection of a run."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def raw(self) -> bytes:
        """The request as bytes on the wire, Content-Length included."""
        lines = [f"{self.method} {self.target} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.body:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body

    def describe(self) -> str:
        """A short description: method, path and sizes."""
        path, _, query = self.target.partition("?")
        size = (
            f"{len(self.body):,}-byte body" if self.body else f"{len(query)}-byte query"
        )
        return f"{self.method} {path} ({size}, {len(self.raw()):,} bytes in all)"


@dataclass(frozen=True, slots=True)
class Visitor:
    """Ids that stay the same across a browser's requests."""

    domain_userid: str = field(default_factory=lambda: str(uuid.uuid4()))
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    network_userid: str = field(default_factory=lambda: str(uuid.uuid4()))
    page_view_id: str = field(default_factory=lambda: str(uuid.uuid4()))


PAGE_URL = (
    "https://shop.example.com/products/trail-running-shoes-x2?colour=blue&size=43"
    "&utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale"
)
PAGE_TITLE = "Trail running shoes X2 | Example Shop"
PAGE_REFERRER = "https://www.example.org/search?q=trail+running+shoes"
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


def _b64url(document: object) -> str:
    # The JS tracker sends cx and ue_px as URL-safe base64 without padding.
    text = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode("ascii")


def _contexts(visitor: Visitor) -> str:
    return _b64url(
        {
            "schema": f"{_IGLU}/contexts/jsonschema/1-0-0",
            "data": [
                {
                    "schema": f"{_IGLU}/web_page/jsonschema/1-0-0",
                    "data": {"id": visitor.page_view_id},
                }
            ],
        }
    )


def _event(
    visitor: Visitor, kind: str, now_ms: int, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The fields of one event, in the order the JS tracker v3 sends them."""
    fields = {"stm": str(now_ms), "e": kind, "url": PAGE_URL, "page": PAGE_TITLE}
    fields["refr"] = PAGE_REFERRER
    fields.update(extra or {})
    fields.update(
        {
            "eid": str(uuid.uuid4()),
            "tv": "js-3.24.6",
            "tna": "sp",
            "aid": "bench",
            "p": "web",
            "cookie": "1",
            "cs": "UTF-8",
            "lang": "en-US",
            "res": "1920x1080",
            "cd": "24",
            "dtm": str(now_ms - 4),
            "vp": "1536x730",
            "ds": "1521x4316",
            "vid": "3",
            "sid": visitor.session_id,
            "duid": visitor.domain_userid,
            "cx": _contexts(visitor),
        }
    )
    return fields


def _browser_headers(visitor: Visitor, marker: str) -> list[tuple[str, str]]:
    now = int(time.time())
    cookie = (
        f"_sp_ses.1fff=*; _sp_id.1fff={visitor.domain_userid}.{now - 86400}.3."
        f"{now}.{now - 3600}.{visitor.session_id}; sp={visitor.network_userid}"
    )
    return [
        ("Host", "collector.example.com"),
        ("Connection", "keep-alive"),
        (
            "sec-ch-ua",
            '"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"',
        ),
        ("sec-ch-ua-mobile", "?0"),
        ("sec-ch-ua-platform", '"Windows"'),
        # The marker tells one run's records from another's; both servers log it.
        ("User-Agent", f"{USER_AGENT} bench/{marker}"),
        ("Accept", "*/*"),
        ("Origin", "https://shop.example.com"),
        ("Sec-Fetch-Site", "same-site"),
        ("Sec-Fetch-Mode", "cors"),
        ("Sec-Fetch-Dest", "empty"),
        ("Referer", "https://shop.example.com/"),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("Accept-Language", "en-US,en;q=0.9"),
        ("Cookie", cookie),
    ]


def page_view_get(marker: str) -> BenchRequest:
    """A page view sent as GET /i, percent-encoded like encodeURIComponent."""
    visitor = Visitor()
    fields = _event(visitor, "pv", int(time.time() * 1000))
    # encodeURIComponent leaves these unescaped; quote() would escape them.
    safe = "!*'()~"
    query = "&".join(
        f"{key}={urllib.parse.quote(value, safe=safe)}" for key, value in fields.items()
    )
    return BenchRequest("GET", f"/i?{query}", tuple(_browser_headers(visitor, marker)))


def batch_post(marker: str) -> BenchRequest:
    """A payload_data POST of five events, as the JS tracker batches them."""
    visitor = Visitor()
    now = int(time.time() * 1000)
    link = {
        "schema": f"{_IGLU}/link_click/jsonschema/1-0-1",
        "data": {"targetUrl": "https://shop.example.com/cart", "elementId": "to-cart"},
    }
    unstruct = {"schema": f"{_IGLU}/unstruct_event/jsonschema/1-0-0", "data": link}
    # Page pings carry only the scroll offsets that are not zero.
    events = [
        _event(visitor, "pv", now),
        _event(visitor, "pp", now + 10_000, {"pp_may": "812"}),
        _event(visitor, "se", now + 12_000, {"se_ca": "product", "se_ac": "add"}),
        _event(visitor, "pp", now + 20_000, {"pp_miy": "812", "pp_may": "1644"}),
        _event(visitor, "ue", now + 23_000, {"ue_px": _b64url(unstruct)}),
    ]
    payload = {"schema": f"{_IGLU}/payload_data/jsonschema/1-0-4", "data": events}
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = _browser_headers(visitor, marker)
    headers.insert(2, ("Content-Type", "application/json; charset=UTF-8"))
    return BenchRequest("POST", POST_PATH, tuple(headers), body)


# Load generators.


@dataclass(slots=True)
class LoadResult:
    """What a load generator saw during one run."""

    seconds: float
    sent: int
    statuses: dict[int, int]
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_seconds: float

    @property
    def responses(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def in_flight(self) -> int:
        """Requests sent but not answered when the load stopped."""
        return self.sent - self.responses

    @property
    def rate(self) -> float:
        return self.responses / self.seconds if self.seconds else 0.0


class LoadGenerator(Protocol):
    label: str

    def run(self, port: int, request: BenchRequest, seconds: int) -> LoadResult: ...


def _lua_string(text: str | bytes) -> str:
    """A Lua string literal for any bytes: printable ASCII kept, the rest escaped."""
    data = text.encode("latin-1") if isinstance(text, str) else text
    out = []
    for byte in data:
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


# Counts per thread live in each thread's globals; done() reads them back through
# the thread objects that setup() kept. Defining request() makes wrk call it for
# every request, which is what lets it count requests sent.
_WRK_SCRIPT = """
local threads = {}
local request_bytes

sent = 0
statuses = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  request_bytes = wrk.format()
end

function request()
  sent = sent + 1
  return request_bytes
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = 0
  local counts = {}
  for _, thread in ipairs(threads) do
    total = total + thread:get("sent")
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '%s{"duration_us": %d, "sent": %d, "p50_us": %.0f, "p99_us": %.0f, ' ..
    '"socket_errors": %d, "statuses": {%s}}\\n',
    RESULT_PREFIX, summary.duration, total, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ", ")))
end
"""


@dataclass(slots=True)
class WrkLoad:
    """wrk with a Lua script that counts requests sent and responses by status."""

    executable: str
    threads: int
    connections: int
    workdir: Path
    label: str = ""

    def __post_init__(self) -> None:
        self.label = f"wrk {tool_version(self.executable)}"

    def run(self, port: int, request: BenchRequest, seconds: int) -> LoadResult:
        script = self.workdir / "load.lua"
        script.write_text(self._script(request), encoding="latin-1")
        command = [
            self.executable,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{seconds}s",
            "-s",
            str(script),
            f"http://{HOST}:{port}/",
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return self._parse(done, cpu)

    def _script(self, request: BenchRequest) -> str:
        lines = [
            f"RESULT_PREFIX = {_lua_string(_RESULT_PREFIX)}",
            f"wrk.method = {_lua_string(request.method)}",
            f"wrk.path = {_lua_string(request.target)}",
        ]
        lines += [
            f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}"
            for name, value in request.headers
        ]
        if request.body:
            lines.append(f"wrk.body = {_lua_string(request.body)}")
        return "\n".join(lines) + "\n" + _WRK_SCRIPT

    @staticmethod
    def _parse(done: subprocess.CompletedProcess[str], cpu: float) -> LoadResult:
        found = [
            line[len(_RESULT_PREFIX) :]
            for line in done.stdout.splitlines()
            if line.startswith(_RESULT_PREFIX)
        ]
        if done.returncode != 0 or not found:
            raise BenchError(
                f"wrk exited with code {done.returncode} without a result:\n"
                f"{done.stdout}{done.stderr}"
            )
        data = json.loads(found[-1])
        return LoadResult(
            seconds=data["duration_us"] / 1e6,
            # wrk calls request() once more at start-up, to check the script.
            sent=data["sent"] - 1,
            statuses={int(k): v for k, v in data["statuses"].items()},
            socket_errors=data["socket_errors"],
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            cpu_seconds=cpu,
        )


@dataclass(slots=True)
class _ConnectionStats:
    sent: int = 0
    errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response with a Content-Length body; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    if match is None:
        raise ConnectionError("response without Content-Length")
    await reader.readexactly(int(match.group(1)))
    return status


async def _keep_alive_connection(
    port: int, request: bytes, deadline: float, stats: _ConnectionStats
) -> None:
    # One request at a time per connection, like wrk; no new request starts after
    # the deadline, so every request sent is also answered (or fails).
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            started = time.perf_counter()
            writer.write(request)
            stats.sent += 1
            status = await asyncio.wait_for(_read_response(reader), timeout=10)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            stats.errors += 1
            if writer is not None:
                writer.close()
            writer = None
            continue
        stats.latencies.append(time.perf_counter() - started)
        stats.statuses[status] += 1
    if writer is not None:
        writer.close()


@dataclass(slots=True)
class _ProcessResult:
    sent: int
    errors: int
    statuses: dict[int, int]
    latencies: list[float]
    seconds: float
    cpu_seconds: float


def _python_load_process(
    port: int, request: bytes, connections: int, seconds: int
) -> _ProcessResult:
    """One load process: ``connections`` keep-alive loops for ``seconds``."""
    cpu_start, started = time.process_time(), time.perf_counter()
    deadline = started + seconds
    stats = [_ConnectionStats() for _ in range(connections)]

    async def run_all() -> None:
        await asyncio.gather(
            *(_keep_alive_connection(port, request, deadline, s) for s in stats)
        )

    asyncio.run(run_all())
    statuses: Counter[int] = Counter()
    for s in stats:
        statuses.update(s.statuses)
    return _ProcessResult(
        sent=sum(s.sent for s in stats),
        errors=sum(s.errors for s in stats),
        statuses=dict(statuses),
        latencies=[latency for s in stats for latency in s.latencies],
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_start,
    )


@dataclass(slots=True)
class PythonLoad:
    """asyncio over raw sockets, HTTP/1.1 keep-alive, in ``processes`` processes."""

    processes: int
    connections: int
    label: str = "Python asyncio load generator"

    def run(self, port: int, request: BenchRequest, seconds: int) -> LoadResult:
        per_process, rest = divmod(self.connections, self.processes)
        shares = [per_process + (i < rest) for i in range(self.processes)]
        with concurrent.futures.ProcessPoolExecutor(self.processes) as pool:
            futures = [
                pool.submit(_python_load_process, port, request.raw(), n, seconds)
                for n in shares
            ]
            parts = [f.result() for f in futures]

        statuses: Counter[int] = Counter()
        for part in parts:
            statuses.update(part.statuses)
        latencies = sorted(latency for part in parts for latency in part.latencies)
        return LoadResult(
            seconds=max(part.seconds for part in parts),
            sent=sum(part.sent for part in parts),
            statuses=dict(statuses),
            socket_errors=sum(part.errors for part in parts),
            p50_ms=_percentile(latencies, 50) * 1000,
            p99_ms=_percentile(latencies, 99) * 1000,
            cpu_seconds=sum(part.cpu_seconds for part in parts),
        )


def _percentile(ordered: list[float], percent: float) -> float:
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(percent / 100 * len(ordered)) - 1))
    return ordered[rank]


def tool_version(executable: str) -> str:
    """The version an nginx or wrk binary reports about itself."""
    done = subprocess.run(
        [executable, "-v"], capture_output=True, text=True, check=False, timeout=10
    )
    text = done.stdout + done.stderr
    match = re.search(r"nginx/(\S+)|^wrk (\S+)", text, re.MULTILINE)
    if match is None:
        return "(unknown version)"
    return match.group(1) or match.group(2)
