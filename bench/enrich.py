"""Enrichment speed: events per second in one process and on every core.

Builds a realistic raw log from the traffic captured from the official Snowplow
trackers (../shared/fixtures/traffic), varied so that caches cannot hide the work:
every copy gets its own event ids, user agents, client addresses, page paths and
timestamps. Then runs ``plowline enrich`` on it with 1 worker and with N workers,
and prints a table of events/s, the speed-up, and peak memory (RSS).

    .venv/bin/python bench/enrich.py                 # 1,000,000 events
    .venv/bin/python bench/enrich.py --events 200000 --workers 2

Memory is measured for two input sizes to show whether it stays flat.

Then the configurable enrichments (issue 5), in this process on a smaller input:
events/s per core with none, with every enrichment of examples/enrichments on
(and with schema validation against Iglu Central too, when ../shared/data has
it), and the cost of each enrichment alone in microseconds per event.

    .venv/bin/python bench/enrich.py --events 0 --enrichment-events 50000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
TRAFFIC = Path(os.environ.get("PLOWLINE_SHARED", REPO.parent / "shared")) / (
    "fixtures/traffic"
)
CAPTURES = ("python_tracker.jsonl", "js_tracker_get.jsonl", "js_tracker_post.jsonl")
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/17.{v} Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
)


def load_captures() -> list[dict]:
    if not TRAFFIC.is_dir():
        sys.exit(f"Captured traffic not found in {TRAFFIC}; set PLOWLINE_SHARED.")
    requests = []
    for name in CAPTURES:
        for line in (TRAFFIC / name).read_text("utf-8").splitlines():
            request = json.loads(line)
            if request["method"] != "OPTIONS":
                requests.append(request)
    return requests


def events_in(request: dict) -> int:
    if request["body"]:
        return len(json.loads(request["body"])["data"])
    return 1


def vary(request: dict, rng: random.Random, n: int) -> dict:
    """A raw record for one copy of a captured request, with its own ids."""
    query = request["query_string"] or ""
    body = request["body"]
    for old in {p.split("=", 1)[1] for p in query.split("&") if p.startswith("eid=")}:
        query = query.replace(old, str(uuid.uuid4()))
    path = f"%2Fsection-{n % 500}%2Fitem-{rng.randrange(10_000)}"
    query = query.replace("%2Facceptance", path)
    if body:
        document = json.loads(body)
        for event in document["data"]:
            event["eid"] = str(uuid.uuid4())
            if "url" in event:
                event["url"] += f"?item={rng.randrange(10_000)}"
        body = json.dumps(document, separators=(",", ":"))
    agent = rng.choice(BROWSERS).format(v=rng.randrange(90, 130))
    headers = [[k, v] for k, v in request["headers"] if k.lower() != "user-agent"]
    headers.append(["User-Agent", agent])
    content_type = next(
        (v.lower() for k, v in request["headers"] if k.lower() == "content-type"), None
    )
    return {
        "v": 1, "id": str(uuid.uuid4()),
        "tstamp": 1_796_398_150_000 + n * 37, "collector": "plowline-bench",
        "method": request["method"], "path": request["path"],
        "querystring": query or None, "body": body, "content_type": content_type,
        "headers": headers,
        "ip": f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}."
        f"{rng.randrange(1, 255)}",
        "useragent": agent, "referer": quote("http://127.0.0.1:8000/", safe=":/"),
        "host": "t.example.com", "network_userid": str(uuid.uuid4()),
    }  # fmt: skip


def build_input(path: Path, target_events: int) -> int:
    """Write a raw log of about ``target_events`` events; return the count."""
    rng = random.Random(42)
    requests = load_captures()
    events = 0
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        while events < target_events:
            request = requests[n % len(requests)]
            out.write(json.dumps(vary(request, rng, n), separators=(",", ":")) + "\n")
            events += events_in(request)
            n += 1
    return events


def run_enrich(raw: Path, workers: int, workdir: Path) -> tuple[float, str]:
    """Seconds taken and the command's summary line."""
    command = [
        sys.executable, "-m", "plowline", "-q", "enrich", "--workers", str(workers),
        "--good", str(workdir / "good.tsv"), "--bad", str(workdir / "bad.jsonl"),
        str(raw),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    return elapsed, done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--enrichment-events", type=int, default=50_000)
    args = parser.parse_args()
    # Printed first: figures from machines or days of another pace do not compare.
    print(f"this machine's pace: {machine_pace():.1f} ms for a fixed piece of Python")
    if args.events > 0:
        base_benchmark(args)
    if args.enrichment_events > 0:
        enrichment_benchmark(args.enrichment_events)


def machine_pace() -> float:
    """Milliseconds (CPU time, best of five) for a fixed mix of dict, str and
    int work like enrichment's: figures from machines or days whose pace
    differs compare only through this (the VMs here differ by up to 2x)."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        fields: dict[str, str] = {}
        for n in range(100_000):
            key = "k" + str(n % 97)
            fields[key] = fields.get(key, "")[:8] + "x"
        best = min(best, time.process_time() - started)
    return best * 1000


def base_benchmark(args: argparse.Namespace) -> None:

    with tempfile.TemporaryDirectory(prefix="plowline-bench-") as tmp:
        workdir = Path(tmp)
        small, large = workdir / "small.jsonl", workdir / "large.jsonl"
        small_events = build_input(small, max(args.events // 10, 1000))
        events = build_input(large, args.events)
        size_mb = large.stat().st_size / 2**20

        rows = []
        for workers in sorted({1, args.workers}):
            seconds, summary = run_enrich(large, workers, workdir)
            rows.append((workers, events / seconds, seconds, summary))
        memory = _memory(small, large, workdir)

    print(
        f"# Enrichment benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    cpu = platform.processor() or platform.machine()
    python = platform.python_version()
    print(f"machine: {os.cpu_count()} cores, {cpu}, Python {python}")
    print(
        f"input: {events:,} events in a {size_mb:,.0f} MB raw log (from the "
        "captured Snowplow tracker traffic, varied)\n"
    )
    print("| workers | events/s | seconds | speed-up | output |")
    print("|---|---|---|---|---|")
    base = rows[0][1]
    for workers, rate, seconds, summary in rows:
        print(
            f"| {workers} | {rate:,.0f} | {seconds:.1f} | {rate / base:.2f}x | "
            f"{summary} |"
        )
    print(
        f"\npeak RSS, 1 worker: {memory[0]:.0f} MiB for {small_events:,} events, "
        f"{memory[1]:.0f} MiB for {events:,} events"
    )


def _memory(small: Path, large: Path, workdir: Path) -> tuple[float, float]:
    """Peak RSS (MiB) of one-worker runs on the small and the large input, each
    measured in a fresh process (RUSAGE_CHILDREN keeps the largest child seen)."""
    peaks = []
    for raw in (small, large):
        probe = subprocess.run(
            [sys.executable, "-c",
             "import resource, subprocess, sys; "
             "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
             sys.executable, "-m", "plowline", "-q", "enrich",
             "--good", str(workdir / "g"), "--bad", str(workdir / "b"), str(raw)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        peaks.append(int(probe.stdout.strip()) / 1024)
    return peaks[0], peaks[1]


def enrichment_benchmark(target_events: int) -> None:
    from plowline.enrich.enrichments.config import load_enrichments
    from plowline.enrich.pipeline import Enricher, output_line

    with tempfile.TemporaryDirectory(prefix="plowline-bench-") as tmp:
        workdir = Path(tmp)
        raw = workdir / "raw.jsonl"
        events = build_input(raw, target_events)
        lines = raw.read_bytes().splitlines()
        every = load_enrichments(_all_enabled(workdir / "enrichments"))
        resolver = _iglu_central(workdir)

        def rate(enricher: Enricher) -> float:
            best = float("inf")
            for _ in range(2):  # the better of two runs: the machine is shared
                started = time.process_time()
                for line in lines:
                    for outcome in enricher.enrich_line(line):
                        output_line(outcome)  # the line plowline enrich writes
                best = min(best, time.process_time() - started)
            return events / best

        none = rate(Enricher())
        rows = [("none", none), ("every enrichment", rate(Enricher(enrichments=every)))]
        if resolver is not None:
            rows.append(
                (
                    "every enrichment + schema validation",
                    rate(Enricher(enrichments=every, resolver=resolver)),
                )
            )
        # Each enrichment's own time, measured around its calls in one run with
        # all of them on: steadier on a shared machine than runs compared.
        timed = [_Timed(e) for e in every]
        rate(Enricher(enrichments=timed))

    print(f"\n## Enrichments: {events:,} events, one process (CPU time)\n")
    print("| configuration | events/s per core | µs per event |")
    print("|---|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:,.0f} | {1e6 / value:,.1f} |")
    print("\n| enrichment | time per event (in the run with all on) |")
    print("|---|---|")
    for item in sorted(timed, key=lambda t: -t.seconds):
        # rate() ran twice: the calls of both runs are counted.
        print(f"| {item.inner.name} | {item.seconds / (2 * events) * 1e6:,.1f} µs |")


class _Timed:
    """An enrichment that also adds up the time spent in it."""

    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0

    @property
    def emits_events(self) -> bool:
        return bool(self.inner.emits_events)

    def identity(self):  # type: ignore[no-untyped-def]
        return self.inner.identity()

    def enrich(self, event, inp) -> None:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            self.inner.enrich(event, inp)
        finally:
            self.seconds += time.perf_counter() - started


# Rates added to the example's file (which has USD and EUR only) for the
# other currency of the captured traffic: without them the currency
# enrichment fails those events and the bench would time failed events.
EXTRA_RATES = {"GBP": "0.79"}


def _all_enabled(folder: Path) -> Path:
    """examples/enrichments with every file switched on."""
    shutil.copytree(REPO / "examples" / "enrichments", folder)
    for path in folder.glob("*.json"):
        document = json.loads(path.read_text("utf-8"))
        document["data"]["enabled"] = True
        path.write_text(json.dumps(document), "utf-8")
    rates = folder / "files" / "rates.csv"
    days = {
        line.split(",")[0]
        for line in rates.read_text("utf-8").splitlines()
        if line[:1].isdigit()
    }
    with open(rates, "a", encoding="utf-8") as out:
        for day in sorted(days):
            for currency, rate in EXTRA_RATES.items():
                out.write(f"{day},{currency},{rate}\n")
    return folder


SITE_SECTION_SCHEMA = {
    "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/"
    "schema/jsonschema/1-0-0#",
    "description": "The part of the site a page belongs to (example enrichment)",
    "self": {
        "vendor": "com.example",
        "name": "site_section",
        "format": "jsonschema",
        "version": "1-0-0",
    },
    "type": "object",
    "properties": {"section": {"type": "string", "maxLength": 255}},
    "required": ["section"],
    "additionalProperties": False,
}


def _iglu_central(workdir: Path):  # type: ignore[no-untyped-def]
    """A resolver of Iglu Central, the captures' own schemas and the example
    enrichment's, if Iglu Central is present."""
    from plowline.iglu.config import load_resolver

    central = TRAFFIC.parent.parent / "data" / "iglu-central"
    if not central.is_dir():
        print(f"(no {central}: schema validation is not measured)")
        return None
    # The example Python enrichment derives a com.example/site_section context:
    # without its schema every event would fail validation, and the row would
    # measure failed events rather than validation.
    examples = workdir / "example-schemas"
    site_section = examples / "schemas/com.example/site_section/jsonschema/1-0-0"
    site_section.parent.mkdir(parents=True, exist_ok=True)
    site_section.write_text(json.dumps(SITE_SECTION_SCHEMA), "utf-8")
    repositories = [
        {"name": "Iglu Central", "priority": 1, "vendorPrefixes": [],
         "connection": {"embedded": {"path": str(central)}}},
        {"name": "captures", "priority": 2, "vendorPrefixes": [],
         "connection": {"embedded": {"path": str(TRAFFIC)}}},
        {"name": "examples", "priority": 3, "vendorPrefixes": [],
         "connection": {"embedded": {"path": str(examples)}}},
    ]  # fmt: skip
    config = workdir / "resolver.json"
    config.write_text(
        json.dumps(
            {
                "schema": "iglu:com.snowplowanalytics.iglu/resolver-config/"
                "jsonschema/1-0-1",
                "data": {"cacheSize": 1000, "repositories": repositories},
            }
        )
    )
    return load_resolver(config)


if __name__ == "__main__":
    main()
