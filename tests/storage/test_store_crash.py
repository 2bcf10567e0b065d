"""A `plowline load` killed part-way, then run again: every event exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
from store_support import cli_args, make_row, make_store, write_tsv

ROWS = 6000
CTX = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"


def big_input(path: Path) -> Path:
    rows = []
    for n in range(ROWS):
        contexts = {"schema": CTX, "data": [{"schema": PAGE, "data": {"id": f"p{n}"}}]}
        rows.append(
            make_row(
                f"{n:08d}-aaaa-4bbb-8ccc-dddddddddddd",
                page_title="crash test " + "x" * 500,
                page_url=f"http://example.com/{n}",
                contexts=orjson.dumps(contexts).decode(),
            )
        )
    return write_tsv(path, rows)


def plowline_load(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PLOWLINE_LOAD_BATCH_BYTES": "60000"}
    return subprocess.Popen(
        [sys.executable, "-m", "plowline", "load", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_killed_load_completes_on_rerun(store_kind: str, tmp_path: Path) -> None:
    source = big_input(tmp_path / "big.tsv")
    args = [*cli_args(store_kind, tmp_path), str(source)]

    process = plowline_load(*args)
    assert process.stderr is not None
    committed = 0
    deadline = time.monotonic() + 120
    for line in process.stderr:
        if " written, " in line:
            committed += 1
            if committed == 3:
                process.send_signal(signal.SIGKILL)
                break
        assert time.monotonic() < deadline, "the load wrote no batches"
    process.wait()
    process.stderr.close()
    if process.stdout is not None:
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL, "the load ended before the kill"

    rerun = plowline_load(*args)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "batches were loaded before: skipped" in out

    store = make_store(store_kind, tmp_path)
    try:
        events = store.read_events().column("event_id").to_pylist()
        assert len(events) == ROWS
        assert len(set(events)) == ROWS
        pages = store.read_child_table("com_snowplowanalytics_snowplow_web_page_1")
        assert sorted(pages.column("id").to_pylist()) == sorted(
            f"p{n}" for n in range(ROWS)
        )
        manifest = store.read_manifest().to_pylist()
        assert sum(entry["events"] for entry in manifest) == ROWS
        assert len({entry["batch_id"] for entry in manifest}) == len(manifest)
    finally:
        store.close()
