"""The Iglu webhook: any system that can call a URL sends self-describing events."""

from __future__ import annotations

import uuid

import orjson
import pytest

from plowline.enrich.failed import FailedEvent
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.rawlog.record import RawRecord

PATH = "/com.snowplowanalytics.iglu/v1"
SCHEMA = "iglu:com.acme/signup/jsonschema/1-0-0"


def record(
    query: str, body: bytes | None = None, content_type: str | None = None
) -> RawRecord:
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=1796398150600,
        collector="plowline-test",
        method="POST" if body else "GET",
        path=PATH,
        querystring=query.encode(),
        body=body,
        content_type=content_type,
        ip="203.0.113.4",
    )


def enrich(raw: RawRecord) -> list[EnrichedEvent | FailedEvent]:
    return Enricher().enrich_record(raw)


def unstruct(event: EnrichedEvent | FailedEvent) -> dict:
    assert isinstance(event, EnrichedEvent), event.reason
    document = orjson.loads(event["unstruct_event"] or "null")
    return document["data"]


def test_get_parameters_become_the_event_data() -> None:
    [event] = enrich(record(f"schema={SCHEMA}&plan=pro&seats=3&aid=shop&nuid=n-1"))
    assert unstruct(event) == {"schema": SCHEMA, "data": {"plan": "pro", "seats": "3"}}
    assert isinstance(event, EnrichedEvent)
    assert (
        event["app_id"],
        event["network_userid"],
        event["platform"],
        event["v_tracker"],
    ) == ("shop", "n-1", "app", "com.snowplowanalytics.iglu-v1")
    assert (event["event_vendor"], event["event_name"]) == ("com.acme", "signup")


def test_post_array_gives_one_event_per_object() -> None:
    body = orjson.dumps([{"plan": "pro"}, {"plan": "free", "n": 2}])
    events = enrich(record(f"schema={SCHEMA}&p=srv", body, "application/json"))
    assert [unstruct(e)["data"] for e in events] == [
        {"plan": "pro"},
        {"plan": "free", "n": 2},
    ]
    assert {e["platform"] for e in events if isinstance(e, EnrichedEvent)} == {"srv"}


def test_post_form_body_becomes_string_data() -> None:
    [event] = enrich(
        record(
            f"schema={SCHEMA}", b"plan=pro&seats=3", "application/x-www-form-urlencoded"
        )
    )
    assert unstruct(event)["data"] == {"plan": "pro", "seats": "3"}
    assert isinstance(event, EnrichedEvent)
    assert event["platform"] == "srv"


def test_self_describing_body_needs_no_schema_parameter() -> None:
    body = orjson.dumps({"schema": SCHEMA, "data": {"plan": "team"}})
    [event] = enrich(record("aid=crm", body, "application/json; charset=utf-8"))
    assert unstruct(event) == {"schema": SCHEMA, "data": {"plan": "team"}}


@pytest.mark.parametrize(
    ("query", "body", "content_type", "field"),
    [
        ("plan=pro", None, None, "schema"),
        ("schema=not-an-iglu-uri", None, None, "schema"),
        (f"schema={SCHEMA}", b"{broken", "application/json", "body"),
        (f"schema={SCHEMA}", b"[1, 2]", "application/json", "body"),
        ("", b'{"plan": "pro"}', "application/json", "body"),
        (f"schema={SCHEMA}", b"plan=pro", "text/html", "contentType"),
    ],
    ids=[
        "no-schema",
        "bad-schema",
        "not-json",
        "not-objects",
        "not-self-describing",
        "content-type",
    ],
)
def test_unusable_webhook_calls_are_adapter_failures(
    query: str, body: bytes | None, content_type: str | None, field: str
) -> None:
    [failed] = enrich(record(query, body, content_type))
    assert isinstance(failed, FailedEvent)
    assert failed.type == "adapter_failures"
    assert failed.failure["messages"][0]["field"] == field
    assert failed.failure["vendor"] == "com.snowplowanalytics.iglu"
