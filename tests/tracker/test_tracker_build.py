"""The built tracker: committed up to date, under its size goal, served by the
collector as /plowline.js."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import httpx
from browser_env import REPO, build_tracker

COMMITTED = REPO / "src" / "plowline" / "collector" / "static" / "plowline.js"
SIZE_GOAL = 8 * 1024  # bytes, minified and gzipped (docs/benchmarks.md, Tracker)


def test_committed_tracker_is_the_build_of_js_sources(tmp_path: Path) -> None:
    build_tracker(tmp_path)
    assert (tmp_path / "plowline.js").read_bytes() == COMMITTED.read_bytes(), (
        "src/plowline/collector/static/plowline.js is stale: run `npm run build` "
        "(node js/build.mjs) and commit the result"
    )


def test_tracker_is_under_its_size_goal() -> None:
    gzipped = len(gzip.compress(COMMITTED.read_bytes(), compresslevel=9))
    assert gzipped <= SIZE_GOAL, f"{gzipped} bytes gzipped, over {SIZE_GOAL}"


def test_collector_serves_the_tracker_with_cache_headers(up: Any) -> None:
    with httpx.Client(base_url=up.base_url, trust_env=False) as client:
        answer = client.get("/plowline.js")
        assert answer.status_code == 200
        assert answer.content == COMMITTED.read_bytes()
        assert answer.headers["content-type"].startswith("application/javascript")
        assert answer.headers["cache-control"].startswith("public, max-age=")
        again = client.get(
            "/plowline.js", headers={"If-None-Match": answer.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""
