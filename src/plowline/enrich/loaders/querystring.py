"""One tracker-protocol querystring per line, as a pixel request (for tests and
migrations). Such lines carry no time: the record takes the time it is read."""

from __future__ import annotations

import time
import uuid

from plowline.rawlog.record import RawRecord

COLLECTOR = "querystring"


def load(line: bytes) -> RawRecord | None:
    query = line.strip().removeprefix(b"?")
    if not query:
        return None
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=int(time.time() * 1000),
        collector=COLLECTOR,
        method="GET",
        path="/i",
        querystring=query,
    )
