"""Shared test helpers: the captured tracker traffic in ../shared/fixtures/traffic.

The captures are read from the shared folder at test time; when it is missing
the tests that need it are skipped with a message naming the folder.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plowline.rawlog.record import RawRecord

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PLOWLINE_SHARED", REPO.parent / "shared"))
TRAFFIC = SHARED / "fixtures" / "traffic"
CAPTURE_FILES = (
    "python_tracker.jsonl",
    "js_tracker_get.jsonl",
    "js_tracker_post.jsonl",
)

# The README of the captures: 55 + 15 + 11 requests carrying 68 + 15 + 15 events.
EVENTS_PER_FILE = {
    "python_tracker.jsonl": 68,
    "js_tracker_get.jsonl": 15,
    "js_tracker_post.jsonl": 15,
}


def require_traffic() -> Path:
    """The captures' folder; skips the test where it is absent, except in CI,
    which always has it: there a missing folder is a broken set-up."""
    if not TRAFFIC.is_dir():
        message = f"captured traffic not found in {TRAFFIC} (set PLOWLINE_SHARED)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return TRAFFIC


def captured_requests(name: str) -> list[dict[str, Any]]:
    """The captured requests of one file, in order."""
    path = require_traffic() / name
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def all_captured_requests() -> Iterator[dict[str, Any]]:
    for name in CAPTURE_FILES:
        yield from captured_requests(name)


def record_from_capture(
    request: dict[str, Any], tstamp: int = 1796398150600
) -> RawRecord:
    """A raw record as the collector would write it for a captured request."""
    headers = tuple((name, value) for name, value in request["headers"])
    lower = {name.lower(): value for name, value in headers}
    query = request["query_string"]
    body = request["body"]
    content_type = lower.get("content-type")
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=tstamp,
        collector="plowline-test",
        method=request["method"],
        path=request["path"],
        querystring=query.encode() if query else None,
        body=body.encode() if body else None,
        content_type=content_type.lower() if content_type else None,
        headers=headers,
        ip=request["client"].rsplit(":", 1)[0],
        useragent=lower.get("user-agent"),
        referer=lower.get("referer"),
        host=lower.get("host"),
        network_userid=str(uuid.uuid4()),
    )


def enriched_traffic_rows() -> list[list[str]]:
    """Every captured request enriched (no enrichments configured): the
    enriched events' 131 fields each, in capture order."""
    from plowline.enrich.pipeline import EnrichedEvent, Enricher

    enricher = Enricher()
    return [
        outcome.to_row()
        for request in all_captured_requests()
        for outcome in enricher.enrich_record(record_from_capture(request))
        if isinstance(outcome, EnrichedEvent)
    ]
