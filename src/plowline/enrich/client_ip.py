"""The client's IP address.

A Plowline collector resolves it itself (from proxy headers only when the
connection comes from a proxy it was told to trust) and records it in ``ip``:
that is the address. For records of other collectors, proxy headers are read as
Snowplow enrich reads them:

The first ``X-Forwarded-For`` header whose first entry is an IP address wins;
else the first ``for=`` of a ``Forwarded`` header; else the socket address.
Quotes, brackets and ports are removed. Trusting these headers gives a client no
power it lacks anyway: the tracker protocol's ``ip`` parameter overrides them.
"""

from __future__ import annotations

import re

from plowline.collector.client_ip import address_text
from plowline.rawlog.record import RawRecord

PLOWLINE_COLLECTOR = "plowline"
_FORWARDED_FOR_RE = re.compile(r"for=([^,;]+)", re.IGNORECASE)


def client_ip(record: RawRecord) -> str | None:
    if record.collector.startswith(PLOWLINE_COLLECTOR):
        return record.ip
    forwarded: list[str] = []
    for name, value in record.headers:
        lower = name.lower()
        if lower == "x-forwarded-for":
            address = address_text(value.split(",", 1)[0])
            if address is not None:
                return address
        elif lower == "forwarded":
            forwarded.append(value)
    for value in forwarded:
        match = _FORWARDED_FOR_RE.search(value)
        if match is not None:
            address = address_text(match[1])
            if address is not None:
                return address
    return record.ip
