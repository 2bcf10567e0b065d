"""Vendor webhooks (docs/webhooks.md): what each vendor posts, the events it
becomes, and the adapter failure a payload it cannot read becomes.

When Iglu Central's schemas are at hand every event is also validated against
its vendor schema, so a mapping that drifts from the schema fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixture_traffic import SHARED
from plowline.enrich.adapters import VENDOR_WEBHOOKS
from plowline.enrich.failed import FailedEvent
from plowline.enrich.fields import FIELD_NAMES
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.enrich.webhook_support import Rejected, camel_case, iso_from_seconds
from plowline.enrich.webhook_vendors import VENDOR_READERS
from plowline.iglu.repositories import LocalRepository
from plowline.iglu.resolver import Resolver
from plowline.rawlog.record import RawRecord

IGLU_CENTRAL = SHARED / "data" / "iglu-central"
FORM = "application/x-www-form-urlencoded"
ENRICHER = (
    Enricher(
        resolver=Resolver(
            [LocalRepository("Iglu Central", priority=1, root=IGLU_CENTRAL)]
        )
    )
    if IGLU_CENTRAL.is_dir()
    else Enricher()
)


def record(
    path: str,
    body: bytes | None = None,
    content_type: str | None = None,
    query: str = "aid=ops&nuid=nu-1",
) -> RawRecord:
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=1796398150600,
        collector="plowline-test",
        method="POST",
        path=path,
        querystring=query.encode(),
        body=body,
        content_type=content_type,
        ip="203.0.113.9",
    )


def form(path: str, fields: dict[str, str], query: str = "aid=ops") -> RawRecord:
    return record(path, urlencode(fields).encode(), FORM, query)


def events(raw: RawRecord) -> list[tuple[str, Any]]:
    """(schema, data) of each event; fails on any failed event."""
    found = []
    for outcome in ENRICHER.enrich_record(raw):
        assert isinstance(outcome, EnrichedEvent), outcome.reason
        inner = orjson.loads(outcome["unstruct_event"] or "null")["data"]
        found.append((inner["schema"], inner["data"]))
    return found


def failure(raw: RawRecord) -> list[dict[str, Any]]:
    """The messages of the one adapter failure ``raw`` becomes."""
    [outcome] = ENRICHER.enrich_record(raw)
    assert isinstance(outcome, FailedEvent)
    assert outcome.type == "adapter_failures"
    vendor, version = raw.path.strip("/").split("/")
    assert (outcome.failure["vendor"], outcome.failure["version"]) == (vendor, version)
    # The request is kept whole, so it can be replayed once the adapter knows it.
    assert outcome.payload["body"] == (raw.body.decode() if raw.body else None)
    messages: list[dict[str, Any]] = outcome.failure["messages"]
    return messages


def test_every_vendor_path_is_dispatched() -> None:
    assert set(VENDOR_WEBHOOKS) == set(VENDOR_READERS)


def test_tracker_fields_of_a_vendor_event() -> None:
    raw = form("/com.statusgator/v1", {"service_name": "GitHub"}, "aid=ops&cv=c-1")
    [event] = ENRICHER.enrich_record(raw)
    assert isinstance(event, EnrichedEvent)
    assert (
        event["platform"],
        event["app_id"],
        event["v_tracker"],
        event["event"],
        event["event_vendor"],
        event["event_name"],
    ) == (
        "srv",
        "ops",
        "com.statusgator-v1",
        "unstruct",
        "com.statusgator",
        "status_change",
    )
    raw = form("/com.statusgator/v1", {"service_name": "GitHub"}, "p=web")
    [event] = ENRICHER.enrich_record(raw)
    assert isinstance(event, EnrichedEvent) and event["platform"] == "web"


@pytest.mark.parametrize(
    ("key", "camel"),
    [
        ("Message-Id", "messageId"),
        ("my_var_1", "myVar1"),
        ("X-Mailgun-Sid", "xMailgunSid"),
        ("attachment-count", "attachmentCount"),
        ("data.json", "data.json"),
        ("operatorId", "operatorId"),
        ("Subject", "Subject"),
    ],
)
def test_camel_case(key: str, camel: str) -> None:
    assert camel_case(key) == camel


@pytest.mark.parametrize(
    ("seconds", "iso"),
    [
        (1510161827, "2017-11-08T17:23:47.000Z"),
        ("1510161827", "2017-11-08T17:23:47.000Z"),
        ("1473774819.263983", "2016-09-13T13:53:39.263Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (253402300799.9999, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_epoch_seconds_become_iso_text(seconds: Any, iso: str) -> None:
    assert iso_from_seconds(seconds, "ts") == iso


@pytest.mark.parametrize("bad", ["soon", -1, 253402300800, True, None, "nan"])
def test_bad_epoch_seconds_name_the_field(bad: Any) -> None:
    with pytest.raises(Rejected) as caught:
        iso_from_seconds(bad, "msg.ts")
    assert caught.value.messages[0]["field"] == "msg.ts"
    assert caught.value.messages[0]["value"] == bad


# Mailgun ------------------------------------------------------------------------

MAILGUN = "/com.mailgun/v1"
TOKEN = "5" * 50  # Mailgun tokens are 50 characters


def test_mailgun_opened() -> None:
    fields = {
        "event": "opened",
        "recipient": "alice@example.com",
        "domain": "mg.example.com",
        "ip": "198.51.100.7",
        "country": "US",
        "client-name": "Thunderbird",
        "device-type": "desktop",
        "user-agent": "Mozilla/5.0",
        "message-id": "<20240101.1@mg.example.com>",
        "timestamp": "1704067200",
        "token": TOKEN,
        "signature": "s1g",
        "tag": "",
    }
    assert events(form(MAILGUN, fields)) == [
        (
            "iglu:com.mailgun/message_opened/jsonschema/1-0-0",
            {
                "recipient": "alice@example.com",
                "domain": "mg.example.com",
                "ip": "198.51.100.7",
                "country": "US",
                "clientName": "Thunderbird",
                "deviceType": "desktop",
                "userAgent": "Mozilla/5.0",
                "messageId": "<20240101.1@mg.example.com>",
                "timestamp": "2024-01-01T00:00:00.000Z",
                "token": TOKEN,
                "signature": "s1g",
            },
        )
    ]


def test_mailgun_multipart_bounce_with_an_upper_case_boundary() -> None:
    boundary = "AbC123"
    parts = [("event", "bounced"), ("code", "550"), ("attachment-count", "2")]
    parts.append(("recipient", "bob@example.com"))
    body = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        f"{value}\r\n"
        for name, value in parts
    )
    body += f"--{boundary}--\r\n"
    # The collector stores content types in lower case; the body keeps the case.
    raw = record(
        MAILGUN, body.encode(), f"multipart/form-data; boundary={boundary}".lower()
    )
    assert events(raw) == [
        (
            "iglu:com.mailgun/message_bounced/jsonschema/1-0-0",
            {"code": "550", "attachmentCount": 2, "recipient": "bob@example.com"},
        )
    ]


def test_mailgun_unsubscribed_is_a_recipient_event() -> None:
    [(schema, _)] = events(form(MAILGUN, {"event": "unsubscribed", "tag": "news"}))
    assert schema == "iglu:com.mailgun/recipient_unsubscribed/jsonschema/1-0-0"


@pytest.mark.parametrize(
    ("fields", "field", "value"),
    [
        ({"event": "stored"}, "event", "stored"),
        ({"recipient": "a@example.com"}, "event", None),
        ({"event": "delivered", "timestamp": "yesterday"}, "timestamp", "yesterday"),
        ({"event": "dropped", "attachment-count": "two"}, "attachment-count", "two"),
    ],
)
def test_mailgun_bad_payloads(fields: dict[str, str], field: str, value: Any) -> None:
    [message] = failure(form(MAILGUN, fields))
    assert (message["field"], message["value"]) == (field, value)


def test_mailgun_json_body_is_refused_by_content_type() -> None:
    raw = record(MAILGUN, b'{"event-data": {}}', "application/json")
    [message] = failure(raw)
    assert message == {
        "field": "contentType",
        "value": "application/json",
        "expectation": f"{FORM} or multipart/form-data",
    }


def test_mailgun_multipart_part_without_a_name() -> None:
    body = b"--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1--\r\n"
    [message] = failure(record(MAILGUN, body, "multipart/form-data; boundary=b1"))
    assert message["field"] == "body.part[0]"


# Mandrill -----------------------------------------------------------------------

MANDRILL = "/com.mandrill/v1"
MANDRILL_MSG = {
    "ts": 1365109999,
    "email": "bob@example.com",
    "sender": "shop@example.com",
    "subject": "Your order",
    "state": "sent",
    "tags": [],
    "metadata": {"user_id": 7},
    "_id": "abc",
    "_version": "v1",
}


def mandrill_form(*items: Any) -> RawRecord:
    return form(MANDRILL, {"mandrill_events": json.dumps(list(items))})


def test_mandrill_batch_gives_one_event_each_with_every_ts_converted() -> None:
    opened = {
        "event": "open",
        "_id": "abc",
        "ts": 1415692035,
        "ip": "198.51.100.7",
        "location": None,
        "user_agent": "Mozilla/5.0",
        "msg": {
            **MANDRILL_MSG,
            "opens": [{"ts": 1415692036, "ip": "198.51.100.7", "ua": "Mozilla/5.0"}],
            "clicks": [],
        },
    }
    bounced = {
        "event": "hard_bounce",
        "_id": "abd",
        "ts": 1415692040,
        "msg": {**MANDRILL_MSG, "state": "bounced", "subaccount": None},
    }
    found = events(mandrill_form(opened, bounced))
    assert [schema for schema, _ in found] == [
        "iglu:com.mandrill/message_opened/jsonschema/1-0-1",
        "iglu:com.mandrill/message_bounced/jsonschema/1-0-1",
    ]
    data = found[0][1]
    assert "event" not in data
    assert data["ts"] == "2014-11-11T07:47:15.000Z"
    assert data["msg"]["ts"] == "2013-04-04T21:13:19.000Z"
    assert data["msg"]["opens"][0]["ts"] == "2014-11-11T07:47:16.000Z"
    assert data["msg"]["metadata"] == {"user_id": 7}  # keys kept as sent
    assert found[1][1]["msg"]["subaccount"] is None


def test_mandrill_one_unknown_event_rejects_the_whole_batch() -> None:
    good = {"event": "send", "_id": "a", "ts": 1415692035, "msg": MANDRILL_MSG}
    bad = {"event": "whitelist", "_id": "b", "ts": 1415692035}
    messages = failure(mandrill_form(good, bad, ["not", "an", "object"]))
    assert [(m["field"], m["value"]) for m in messages] == [
        ("mandrill_events[1].event", "whitelist"),
        ("mandrill_events[2]", '["not","an","object"]'),
    ]
    assert "message_sent" not in messages[0]["expectation"]
    assert "send" in messages[0]["expectation"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"mandrill_events": "[{broken"}, "mandrill_events"),
        ({"mandrill_events": "{}"}, "mandrill_events"),
        ({"mandrill_events": "[]"}, "mandrill_events"),
        ({"events": "[]"}, "mandrill_events"),
    ],
)
def test_mandrill_bad_payloads(fields: dict[str, str], field: str) -> None:
    [message] = failure(form(MANDRILL, fields))
    assert message["field"] == field


# SendGrid -----------------------------------------------------------------------

SENDGRID = "/com.sendgrid/v3"


def test_sendgrid_batch_of_several_event_types() -> None:
    sent = {"email": "a@example.com", "smtp-id": "<1@x>"}
    items = [
        {**sent, "timestamp": 1704067200, "event": "delivered", "response": "250 OK",
         "sg_event_id": "sZROwMGMagFgnOEmSdvhig=="},
        {**sent, "timestamp": 1704067260, "event": "click", "ip": "198.51.100.7",
         "url": "https://example.com/a", "useragent": "Mozilla/5.0"},
        {**sent, "timestamp": 1704067320, "event": "group_unsubscribe",
         "asm_group_id": 42},
    ]  # fmt: skip
    found = events(record(SENDGRID, orjson.dumps(items), "application/json"))
    assert [schema for schema, _ in found] == [
        "iglu:com.sendgrid/delivered/jsonschema/2-0-0",
        "iglu:com.sendgrid/click/jsonschema/2-0-0",
        "iglu:com.sendgrid/group_unsubscribe/jsonschema/2-0-0",
    ]
    assert found[0][1] == {
        "email": "a@example.com",
        "smtp-id": "<1@x>",
        "timestamp": "2024-01-01T00:00:00.000Z",
        "response": "250 OK",
        "sg_event_id": "sZROwMGMagFgnOEmSdvhig==",
    }
    assert found[2][1]["asm_group_id"] == 42


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        (b'[{"event": "blocked", "timestamp": 1}]', "body[0].event", "blocked"),
        (b'[{"event": "open", "timestamp": "later"}]', "body[0].timestamp", "later"),
        (b'{"event": "open"}', "body", '{"event":"open"}'),
        (b"[]", "body", "[]"),
        (b"[{", "body", "[{"),
    ],
)
def test_sendgrid_bad_payloads(body: bytes, field: str, value: Any) -> None:
    [message] = failure(record(SENDGRID, body, "application/json; charset=utf-8"))
    assert (message["field"], message["value"]) == (field, value)


def test_sendgrid_form_body_is_refused() -> None:
    [message] = failure(record(SENDGRID, b"event=open", FORM))
    assert (message["field"], message["value"]) == ("contentType", FORM)


# Olark --------------------------------------------------------------------------

OLARK = "/com.olark/v1"


def test_olark_offline_message() -> None:
    data = {
        "kind": "Conversation",
        "id": "T1",
        "items": [
            {"kind": "OfflineMessage", "timestamp": "1704067200.5", "body": "Call me"}
        ],
        "visitor": {"kind": "Visitor", "id": "V1", "country_code": "FR",
                    "emailAddress": "v@example.com"},
    }  # fmt: skip
    assert events(form(OLARK, {"data": json.dumps(data)})) == [
        (
            "iglu:com.olark/offline_message/jsonschema/1-0-0",
            {
                "kind": "Conversation",
                "id": "T1",
                "items": [
                    {
                        "kind": "OfflineMessage",
                        "timestamp": "2024-01-01T00:00:00.500Z",
                        "body": "Call me",
                    }
                ],
                "visitor": {
                    "kind": "Visitor",
                    "id": "V1",
                    "countryCode": "FR",
                    "emailAddress": "v@example.com",
                },
            },
        )
    ]


@pytest.mark.parametrize(
    ("fields", "field", "value"),
    [
        ({"data": "{not json"}, "data", "{not json"),
        ({"data": "[1, 2]"}, "data", "[1, 2]"),
        ({"transcript": "{}"}, "data", None),
        (
            {"data": '{"items": [{"timestamp": "noon"}]}'},
            "data.items[0].timestamp",
            "noon",
        ),
    ],
)
def test_olark_bad_payloads(fields: dict[str, str], field: str, value: Any) -> None:
    [message] = failure(form(OLARK, fields))
    assert (message["field"], message["value"]) == (field, value)


# PagerDuty ----------------------------------------------------------------------

PAGERDUTY = "/com.pagerduty/v1"


def pagerduty_message(kind: str, number: int) -> dict[str, Any]:
    return {
        "type": kind,
        "id": f"m-{number}",
        "created_on": "2024-01-01T10:00:00Z",
        "data": {
            "incident": {
                "id": f"P{number}",
                "incident_number": number,
                "created_on": "2024-01-01T09:59:00 00:00",
                "status": "triggered",
                "assigned_to": [{"at": "2024-01-01T09:59:30 00:00"}],
            }
        },
    }


def test_pagerduty_messages_give_one_incident_event_each() -> None:
    body = {"messages": [pagerduty_message("incident.trigger", 1),
                         pagerduty_message("incident.acknowledge", 2)]}  # fmt: skip
    found = events(record(PAGERDUTY, orjson.dumps(body), "application/json"))
    assert [schema for schema, _ in found] == [
        "iglu:com.pagerduty/incident/jsonschema/1-0-0"
    ] * 2
    assert [data["type"] for _, data in found] == ["trigger", "acknowledge"]
    incident = found[0][1]["data"]["incident"]
    assert incident["created_on"] == "2024-01-01T09:59:00+00:00"
    assert incident["assigned_to"] == [{"at": "2024-01-01T09:59:30+00:00"}]
    assert found[0][1]["created_on"] == "2024-01-01T10:00:00Z"


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        ({"messages": [pagerduty_message("incident.snooze", 1)]},
         "messages[0].type", "incident.snooze"),
        ({"messages": [pagerduty_message("service.update", 1)]},
         "messages[0].type", "service.update"),
        ({"messages": []}, "messages", "[]"),
        ({"events": [1]}, "messages", None),
    ],
)  # fmt: skip
def test_pagerduty_bad_payloads(body: Any, field: str, value: Any) -> None:
    [message] = failure(record(PAGERDUTY, orjson.dumps(body), "application/json"))
    assert (message["field"], message["value"]) == (field, value)


def test_pagerduty_body_that_is_not_json() -> None:
    [message] = failure(record(PAGERDUTY, b"messages=1", "application/json"))
    assert (message["field"], message["value"]) == ("body", "messages=1")
    assert message["expectation"].startswith("JSON")


# Pingdom ------------------------------------------------------------------------

PINGDOM = "/com.pingdom/v1"


def pingdom_query(message: str) -> str:
    return urlencode({"p": "srv", "message": message, "aid": "uptime"})


def test_pingdom_notify_of_close() -> None:
    message = {"check": "42", "checkname": "Home", "host": "example.com",
               "action": "notify_of_close", "incidentid": 7,
               "description": "up"}  # fmt: skip
    raw = record(PINGDOM, query=pingdom_query(json.dumps(message)))
    del message["action"]
    assert events(raw) == [
        ("iglu:com.pingdom/incident_notify_of_close/jsonschema/1-0-0", message)
    ]


@pytest.mark.parametrize(
    ("query", "field", "value"),
    [
        (pingdom_query('{"action": "pause", "check": "1"}'), "message.action", "pause"),
        (pingdom_query('{"check": "1"}'), "message.action", None),
        (pingdom_query("{oops"), "message", "{oops"),
        ("aid=uptime", "message", None),
    ],
)
def test_pingdom_bad_payloads(query: str, field: str, value: Any) -> None:
    [message] = failure(record(PINGDOM, query=query))
    assert (message["field"], message["value"]) == (field, value)


# StatusGator --------------------------------------------------------------------

STATUSGATOR = "/com.statusgator/v1"


def test_statusgator_status_change_down() -> None:
    fields = {
        "service_name": "GitHub",
        "status_page_url": "https://www.githubstatus.com/",
        "current_status": "down",
        "last_status": "warn",
        "occurred_at": "2024-01-01T10:00:00+00:00",
        "component_name": "Actions",
    }
    assert events(form(STATUSGATOR, fields)) == [
        (
            "iglu:com.statusgator/status_change/jsonschema/1-0-0",
            {
                "serviceName": "GitHub",
                "statusPageUrl": "https://www.githubstatus.com/",
                "currentStatus": "down",
                "lastStatus": "warn",
                "occurredAt": "2024-01-01T10:00:00+00:00",
                "componentName": "Actions",
            },
        )
    ]


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (b'{"service_name": "x"}', "application/json", "contentType"),
        (None, FORM, "body"),
        (b"&&", FORM, "body"),
    ],
)
def test_statusgator_bad_payloads(
    body: bytes | None, content_type: str, field: str
) -> None:
    [message] = failure(record(STATUSGATOR, body, content_type))
    assert message["field"] == field


# Unbounce -----------------------------------------------------------------------

UNBOUNCE = "/com.unbounce/v1"


def test_unbounce_form_post() -> None:
    answers = {"email": ["ann@example.com"], "ip_address": ["198.51.100.7"],
               "opt_in": ["yes"], "page_uuid": ["u-1"]}  # fmt: skip
    fields = {
        "page_id": "u-1",
        "page_name": "Spring sale",
        "page_url": "https://unbouncepages.com/spring/",
        "variant": "b",
        "data.json": json.dumps(answers),
        "data.xml": "<form_data/>",
    }
    assert events(form(UNBOUNCE, fields)) == [
        (
            "iglu:com.unbounce/form_post/jsonschema/1-0-0",
            {
                "pageId": "u-1",
                "pageName": "Spring sale",
                "pageUrl": "https://unbouncepages.com/spring/",
                "variant": "b",
                "data.json": {
                    "email": ["ann@example.com"],
                    "ipAddress": ["198.51.100.7"],
                    "optIn": ["yes"],
                    "pageUuid": ["u-1"],
                },
            },
        )
    ]


@pytest.mark.parametrize(
    ("fields", "value"),
    [({"page_id": "u-1"}, None), ({"data.json": "<xml/>"}, "<xml/>")],
)
def test_unbounce_bad_payloads(fields: dict[str, str], value: Any) -> None:
    [message] = failure(form(UNBOUNCE, fields))
    assert (message["field"], message["value"]) == ("data.json", value)


# Any input: events or failed events, never an exception --------------------------

KEYS = st.sampled_from(
    ["event", "ts", "timestamp", "type", "action", "messages", "items", "msg",
     "operators", "data", "created_on", "attachment-count", "a_b", "-", ""]
)  # fmt: skip
VALUES = st.sampled_from(
    ["send", "open", "delivered", "bounced", "processed", "incident.trigger",
     "assign", "1704067200", "1.5e3", "-1", "x", "2024-01-01T10:00:00 00:00"]
)  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | VALUES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(KEYS | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=20,
)
FIELDS = st.dictionaries(KEYS | st.text(max_size=5), VALUES | st.text(max_size=8))


def as_form(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


def shaped(vendor: str, value: Any, fields: dict[str, str]) -> RawRecord:
    text = json.dumps(value)
    if vendor == "mandrill":
        return record(MANDRILL, as_form({**fields, "mandrill_events": text}), FORM)
    if vendor == "olark":
        return record(OLARK, as_form({**fields, "data": text}), FORM)
    if vendor == "unbounce":
        return record(UNBOUNCE, as_form({**fields, "data.json": text}), FORM)
    if vendor == "pingdom":
        return record(PINGDOM, query=urlencode({"message": text}))
    if vendor == "pagerduty":
        body = json.dumps({"messages": value}).encode()  # any size of integer
        return record(PAGERDUTY, body, "application/json")
    if vendor == "sendgrid":
        return record(SENDGRID, text.encode(), "application/json")
    path = MAILGUN if vendor == "mailgun" else STATUSGATOR
    return record(path, as_form(fields), FORM)


@settings(max_examples=300, deadline=None)
@given(
    vendor=st.sampled_from(
        [
            "mailgun",
            "mandrill",
            "olark",
            "unbounce",
            "pingdom",
            "pagerduty",
            "sendgrid",
            "statusgator",
        ]
    ),
    value=JSON_VALUES,
    fields=FIELDS,
)
def test_any_vendor_payload_gives_events_or_adapter_failures(
    vendor: str, value: Any, fields: dict[str, str]
) -> None:
    outcomes = Enricher().enrich_record(shaped(vendor, value, fields))
    assert outcomes
    for outcome in outcomes:
        if isinstance(outcome, FailedEvent):
            assert outcome.type in ("adapter_failures", "schema_violations"), (
                outcome.reason
            )
            assert outcome.reason
            orjson.loads(outcome.to_json())
        else:
            assert len(outcome.to_tsv().split("\t")) == 131


@settings(max_examples=150, deadline=None)
@given(
    path=st.sampled_from(
        [f"/{vendor}/{version}" for vendor, version in VENDOR_WEBHOOKS]
    ),
    body=st.binary(max_size=200),
    content_type=st.sampled_from(
        [
            None,
            FORM,
            "application/json",
            "multipart/form-data; boundary=b",
            "multipart/form-data",
            "text/plain",
        ]
    ),
)
def test_any_bytes_to_a_vendor_path_never_raise(
    path: str, body: bytes, content_type: str | None
) -> None:
    raw = record(path, body or None, content_type)
    for outcome in Enricher().enrich_record(raw):
        if isinstance(outcome, FailedEvent):
            assert outcome.type in ("adapter_failures", "schema_violations"), (
                outcome.reason
            )


# End to end: the collector records the webhook, enrich makes the event ----------


def test_mailgun_post_through_collector_and_enrich(tmp_path: Path) -> None:
    from collector.collector_process import start_collector

    (tmp_path / "collector").mkdir()
    running = start_collector(tmp_path / "collector")
    try:
        fields = {"event": "delivered", "recipient": "alice@example.com",
                  "domain": "mg.example.com", "timestamp": "1510161827",
                  "Message-Id": "<1@mg.example.com>", "my_var_1": "v1"}  # fmt: skip
        with httpx.Client(trust_env=False, timeout=10.0) as http:
            response = http.post(
                f"{running.base_url}/com.mailgun/v1?aid=mail",
                content=urlencode(fields).encode(),
                headers={"Content-Type": FORM},
            )
        assert response.status_code == 200
    finally:
        assert running.stop() == 0, running.log()
    good, bad = tmp_path / "good.tsv", tmp_path / "bad.jsonl"
    command = [sys.executable, "-c", "from plowline.cli import main; main()",
               "enrich", str(running.raw_dir),
               "--good", str(good), "--bad", str(bad)]  # fmt: skip
    if IGLU_CENTRAL.is_dir():
        resolver = tmp_path / "resolver.json"
        resolver.write_text(json.dumps(resolver_config(IGLU_CENTRAL)))
        command += ["--iglu-resolver", str(resolver)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert bad.read_text() == ""
    [line] = good.read_text().splitlines()
    row = dict(zip(FIELD_NAMES, line.split("\t"), strict=True))
    assert (row["app_id"], row["platform"], row["v_tracker"], row["event_name"]) == (
        "mail",
        "srv",
        "com.mailgun-v1",
        "message_delivered",
    )
    assert row["network_userid"]  # the collector's cookie id
    assert json.loads(row["unstruct_event"])["data"] == {
        "schema": "iglu:com.mailgun/message_delivered/jsonschema/1-0-0",
        "data": {
            "recipient": "alice@example.com",
            "domain": "mg.example.com",
            "timestamp": "2017-11-08T17:23:47.000Z",
            "messageId": "<1@mg.example.com>",
            "myVar1": "v1",
        },
    }


def resolver_config(root: Path) -> dict[str, Any]:
    repository = {
        "name": "Iglu Central (local copy)",
        "priority": 1,
        "vendorPrefixes": [],
        "connection": {"embedded": {"path": str(root)}},
    }
    return {
        "schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",
        "data": {"cacheSize": 500, "repositories": [repository]},
    }
