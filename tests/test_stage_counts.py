"""Stage by stage: collector -> raw log -> ``plowline enrich`` -> ``plowline load``.

Every event sent comes out exactly once, as an enriched event or a failed event.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
from snowplow_analytics_sdk.event_transformer import transform

from plowline.storage.query import run_query
from up_process import free_port

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def plowline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plowline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def good_event(n: int) -> dict[str, str]:
    return {
        "e": "se",
        "p": "web",
        "tv": "t",
        "aid": "counts",
        "se_ca": "c",
        "se_ac": f"a{n}",
        "se_va": str(n / 4),
    }


def bad_event(n: int) -> dict[str, object]:
    kinds: list[dict[str, object]] = [
        {"e": "se", "p": "web", "tv": "t", "vid": "not-a-number"},
        {"e": "nope", "p": "web", "tv": "t"},
        {"e": "se", "p": "web", "tv": "t", "se_va": 12},
        {"p": "web", "tv": "t"},
    ]
    return kinds[n % len(kinds)]


def test_every_event_sent_is_enriched_or_failed_once(tmp_path: Path) -> None:
    raw_dir = tmp_path / "raw"
    port = free_port()
    collector = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plowline",
            "collector",
            "--port",
            str(port),
            "--raw-dir",
            str(raw_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rng = random.Random(7)
    good = bad = 0
    expected_values: list[float] = []
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(trust_env=False, timeout=10) as client:
            for _ in range(100):
                try:
                    client.get(f"{base}/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            for n in range(60):
                batch = []
                for _ in range(rng.randint(1, 5)):
                    if rng.random() < 0.3:
                        batch.append(bad_event(n))
                        bad += 1
                    else:
                        batch.append(good_event(n))
                        expected_values.append(n / 4)
                        good += 1
                body = orjson.dumps({"schema": PAYLOAD_DATA, "data": batch})
                response = client.post(
                    base + TP2,
                    content=body,
                    headers={"Content-Type": "application/json; charset=UTF-8"},
                )
                assert response.status_code == 200
            for n in range(20):
                # GET pixels: one event each, every fourth without a valid type.
                code = "pv" if n % 4 else "zz"
                response = client.get(f"{base}/i?e={code}&p=web&tv=t&aid=counts")
                assert response.status_code == 200
                good, bad = (good + 1, bad) if n % 4 else (good, bad + 1)
            # Not the tracker protocol at all: one failed event for the request.
            client.post(
                base + TP2,
                content=b"\x00\xff garbage",
                headers={"Content-Type": "application/json"},
            )
            bad += 1
    finally:
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=30) == 0

    enriched = plowline(
        "enrich", "--good", "good.tsv", "--bad", "bad.jsonl", str(raw_dir), cwd=tmp_path
    )
    assert enriched.returncode == 0, enriched.stderr
    good_lines = (tmp_path / "good.tsv").read_text("utf-8").splitlines()
    bad_lines = (tmp_path / "bad.jsonl").read_text("utf-8").splitlines()
    assert (len(good_lines), len(bad_lines)) == (good, bad)
    assert f"{good} enriched events, {bad} failed events" in enriched.stderr

    for line in bad_lines:
        document = orjson.loads(line)
        assert document["data"]["failure"]["timestamp"].endswith("Z")
        assert document["data"]["payload"]
    documents = [transform(line) for line in good_lines]
    values = [float(d["se_value"]) for d in documents if d["event"] == "struct"]
    assert sorted(values) == sorted(expected_values)

    loaded = plowline(
        "load",
        "--duckdb",
        "events.duckdb",
        "--failed",
        "bad.jsonl",
        "good.tsv",
        cwd=tmp_path,
    )
    assert loaded.returncode == 0, loaded.stderr
    result = run_query(
        tmp_path / "events.duckdb",
        "SELECT count(*), count(DISTINCT event_id) FROM atomic.events",
    )
    assert result.rows == [[good, good]]
    failed = run_query(
        tmp_path / "events.duckdb",
        "SELECT failure_type, count(*) FROM atomic.failed_events GROUP BY 1",
    )
    by_type = dict(map(tuple, failed.rows))
    assert sum(by_type.values()) == bad
    assert by_type["tracker_protocol_violations"] >= 1
    assert by_type["schema_violations"] >= 1
