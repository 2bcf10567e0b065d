"""Failed events: what could not be enriched, why, and the input to replay it.

Each failed event is a self-describing JSON object in the shape of Snowplow's bad
rows (``iglu:com.snowplowanalytics.snowplow.badrows/<type>/jsonschema/<version>``)
so existing tooling can read them: ``data.processor`` names Plowline,
``data.failure`` holds the time and messages naming the field and the bad value,
and ``data.payload`` holds the input. For requests, the payload also carries the
raw record unchanged under ``rawRecord``, so a replay starts from the exact bytes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from plowline import __version__
from plowline.enrich.urls import parse_querystring
from plowline.rawlog.record import RawRecord, encode_record

PROCESSOR = {"artifact": "plowline", "version": __version__}

BADROWS_VENDOR = "iglu:com.snowplowanalytics.snowplow.badrows"
SCHEMA_VERSIONS = {
    "collector_payload_format_violation": "1-0-0",
    "adapter_failures": "1-0-0",
    "tracker_protocol_violations": "1-0-1",
    "schema_violations": "2-0-1",
    "enrichment_failures": "2-0-1",
    "size_violation": "1-0-0",
    "generic_error": "1-0-0",
}

Message = dict[str, Any]


def iso_tstamp(ms: int) -> str:
    """Milliseconds since the epoch as ``2026-12-04T15:29:10.526Z``."""
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=1024)
def _iso_second(seconds: int) -> str:
    # The failed events of one batch share their seconds: each is formatted once.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def field_message(name: str, value: str | None, expectation: str) -> Message:
    return {"field": name, "value": value, "expectation": expectation}


@dataclass(slots=True)
class FailedEvent:
    """One input event (or unreadable input) that produced no enriched event."""

    type: str
    failure: dict[str, Any]
    payload: Any
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> str:
        version = SCHEMA_VERSIONS[self.type]
        return f"{BADROWS_VENDOR}/{self.type}/jsonschema/{version}"

    @property
    def reason(self) -> str:
        """The failure in one line of text, for people and logs."""
        if "errors" in self.failure:
            return "; ".join(self.failure["errors"])
        if "expectation" in self.failure:
            return str(self.failure["expectation"])
        messages = self.failure.get("messages")
        if messages is None:
            messages = [self.failure.get("message", {})]
        return "; ".join(describe_message(m) for m in messages)

    def to_json(self) -> bytes:
        document = {
            "schema": self.schema,
            "data": {
                "processor": PROCESSOR,
                "failure": self.failure,
                "payload": self.payload,
            },
        }
        return orjson.dumps(document)


def describe_message(message: Message) -> str:
    inner = message.get("message")
    if isinstance(inner, dict):  # an enrichment failure: who failed, and how
        who = (message.get("enrichment") or {}).get("identifier")
        return (f"{who}: " if who else "") + describe_message(inner)
    if "field" in message and "expectation" in message:
        return (
            f"field {message['field']} has value {message['value']!r}, "
            f"expected {message['expectation']}"
        )
    if "error" in message:
        where = f"field {message['field']}: " if "field" in message else ""
        return f"{where}{message['error']}"
    return orjson.dumps(message).decode()


def request_context(record: RawRecord) -> dict[str, Any]:
    """What both payload shapes say of the request: where, when, from whom."""
    return {
        "contentType": record.content_type,
        "encoding": "UTF-8",
        "hostname": record.host,
        "timestamp": iso_tstamp(record.tstamp),
        "ipAddress": record.ip,
        "useragent": record.useragent,
        "refererUri": record.referer,
        "headers": [f"{name}: {value}" for name, value in record.headers],
    }


def collector_payload(record: RawRecord) -> dict[str, Any]:
    """The raw record in the shape of Snowplow's collector payload."""
    query = record.querystring.decode("utf-8", "replace") if record.querystring else ""
    vendor, version = _api_of(record.path)
    return {
        "vendor": vendor,
        "version": version,
        "querystring": [{"name": n, "value": v} for n, v in parse_querystring(query)],
        "body": record.body.decode("utf-8", "replace") if record.body else None,
        "collector": record.collector,
        **request_context(record),
        "networkUserId": record.network_userid,
        "rawRecord": orjson.loads(encode_record(record)),
    }


def _api_of(path: str) -> tuple[str | None, str | None]:
    parts = path.strip("/").split("/")
    if len(parts) == 2:
        return parts[0], parts[1]
    return None, None


def unreadable_input(
    line: bytes,
    error: str,
    *,
    loader: str,
    now_ms: int,
    source: str | None = None,
    line_number: int | None = None,
) -> FailedEvent:
    """A line that is not a raw record at all."""
    failure: dict[str, Any] = {
        "timestamp": iso_tstamp(now_ms),
        "loader": loader,
        "message": {"error": error},
    }
    if source is not None:
        failure["source"] = {"file": _text_of_path(source), "line": line_number}
    return FailedEvent(
        "collector_payload_format_violation",
        failure,
        line.decode("utf-8", "replace").rstrip("\n"),
    )


def _text_of_path(path: str) -> str:
    """A file name as JSON can hold it: bytes of a name that are not UTF-8
    (kept by Python as surrogate escapes) become U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def request_failure(
    kind: str, record: RawRecord, messages: list[Message], *, now_ms: int
) -> FailedEvent:
    """An adapter failure or tracker-protocol violation: the request as a whole
    (or one event of a batch) cannot be read as events."""
    vendor, version = _api_of(record.path)
    failure = {
        "timestamp": iso_tstamp(now_ms),
        "vendor": vendor,
        "version": version,
        "messages": messages,
    }
    return FailedEvent(kind, failure, collector_payload(record))


def event_failure(
    kind: str,
    messages: list[Message],
    raw: dict[str, Any],
    enriched: dict[str, str | None],
    *,
    now_ms: int,
) -> FailedEvent:
    """A schema violation or enrichment failure of one event."""
    failure = {"timestamp": iso_tstamp(now_ms), "messages": messages}
    payload = {"raw": raw, "enriched": enriched}
    return FailedEvent(kind, failure, payload)


def generic_error(errors: list[str], payload: str, *, now_ms: int) -> FailedEvent:
    """Anything else that stopped an event, such as a store refusing a row."""
    failure = {"timestamp": iso_tstamp(now_ms), "errors": errors}
    return FailedEvent("generic_error", failure, payload)


_SIZES_RE = re.compile(r"([0-9]+) bytes.*?([0-9]+) bytes")


def size_violation(record: RawRecord, error: str, *, now_ms: int) -> FailedEvent:
    """A request the collector refused for its size: only its start was kept."""
    sizes = _SIZES_RE.search(error)
    failure = {
        "timestamp": iso_tstamp(now_ms),
        "maximumAllowedSizeBytes": int(sizes[2]) if sizes else None,
        "actualSizeBytes": int(sizes[1]) if sizes else None,
        "expectation": error,
    }
    return FailedEvent("size_violation", failure, collector_payload(record))
