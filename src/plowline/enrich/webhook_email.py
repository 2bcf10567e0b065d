"""Webhooks of e-mail services: Mailgun, Mandrill and SendGrid.

Each function reads one request and returns the (schema, data) pairs of the
events in it, or raises :class:`Rejected`. A batch (Mandrill, SendGrid) is
taken whole or not at all: one unreadable item rejects the request with a
message per bad item, so replaying the failed event cannot duplicate events.
"""

from __future__ import annotations

from typing import Any

from plowline.enrich.failed import Message
from plowline.enrich.webhook_support import (
    FORM,
    MULTIPART,
    Rejected,
    camel_case,
    form_fields,
    iso_from_seconds,
    json_body,
    json_field,
    json_preview,
    reject,
    require_content_type,
)
from plowline.rawlog.record import RawRecord

Event = tuple[str, Any]

# Mailgun's legacy (form) webhooks: the "event" field -> schema name.
MAILGUN_EVENTS = {
    "bounced": "message_bounced",
    "clicked": "message_clicked",
    "complained": "message_complained",
    "delivered": "message_delivered",
    "dropped": "message_dropped",
    "opened": "message_opened",
    "unsubscribed": "recipient_unsubscribed",
}
MAILGUN_INTEGERS = frozenset({"attachmentCount"})

# Mandrill's "event" -> schema name and version. 1-0-1 where that revision
# accepts what Mandrill sends today (subaccount, null locations) and 1-0-0
# did not; message_sent and message_rejected 1-0-1 only add descriptions.
MANDRILL_EVENTS = {
    "send": ("message_sent", "1-0-0"),
    "deferral": ("message_delayed", "1-0-1"),
    "hard_bounce": ("message_bounced", "1-0-1"),
    "soft_bounce": ("message_soft_bounced", "1-0-1"),
    "delivered": ("message_delivered", "1-0-0"),
    "open": ("message_opened", "1-0-1"),
    "click": ("message_clicked", "1-0-1"),
    "spam": ("message_marked_as_spam", "1-0-1"),
    "unsub": ("recipient_unsubscribed", "1-0-1"),
    "reject": ("message_rejected", "1-0-0"),
}

# SendGrid's event webhook (v3): the "event" field is the schema name.
SENDGRID_EVENTS = frozenset(
    {
        "processed",
        "dropped",
        "delivered",
        "deferred",
        "bounce",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    }
)
SENDGRID_VERSION = "2-0-0"


def _one_of(names: Any) -> str:
    return "one of " + ", ".join(sorted(names))


def mailgun(record: RawRecord) -> list[Event]:
    """One event per request, from a urlencoded or multipart form. Keys become
    camelCase, empty fields are left out, ``timestamp`` becomes ISO-8601 and
    ``attachment-count`` a number; ``message-headers`` stays JSON text."""
    require_content_type(record, FORM, MULTIPART)
    fields = form_fields(record)
    kind = fields.get("event")
    if kind not in MAILGUN_EVENTS:
        raise reject("event", kind, _one_of(MAILGUN_EVENTS))
    data: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "event" or value == "":
            continue
        key = camel_case(name)
        if key == "timestamp":
            data[key] = iso_from_seconds(value, name)
        elif key in MAILGUN_INTEGERS:
            if not value.isdigit():
                raise reject(name, value, "a whole number")
            data[key] = int(value)
        else:
            data[key] = value
    return [(f"iglu:com.mailgun/{MAILGUN_EVENTS[kind]}/jsonschema/1-0-0", data)]


def mandrill(record: RawRecord) -> list[Event]:
    """One event per item of the ``mandrill_events`` form field (a JSON
    array); every ``ts`` (epoch seconds), nested ones too, becomes ISO-8601."""
    require_content_type(record, FORM)
    items = json_field(form_fields(record), "mandrill_events", list)
    if not items:
        raise reject("mandrill_events", "[]", "at least one event")
    events: list[Event] = []
    problems: list[Message] = []
    for index, item in enumerate(items):
        where = f"mandrill_events[{index}]"
        try:
            events.append(_mandrill_event(item, where))
        except Rejected as exc:
            problems.extend(exc.messages)
    if problems:
        raise Rejected(problems)
    return events


def _mandrill_event(item: Any, where: str) -> Event:
    if not isinstance(item, dict):
        raise reject(where, json_preview(item), "a JSON object")
    kind = item.get("event")
    if not isinstance(kind, str) or kind not in MANDRILL_EVENTS:
        raise reject(f"{where}.event", kind, _one_of(MANDRILL_EVENTS))
    name, version = MANDRILL_EVENTS[kind]
    data = {key: value for key, value in item.items() if key != "event"}
    return f"iglu:com.mandrill/{name}/jsonschema/{version}", _iso_ts(data, where)


def _iso_ts(value: Any, where: str) -> Any:
    """``value`` with each numeric ``ts`` in it as ISO-8601 text."""
    if isinstance(value, dict):
        return {
            key: iso_from_seconds(item, f"{where}.{key}")
            if key == "ts" and isinstance(item, int | float)
            else _iso_ts(item, f"{where}.{key}")
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_iso_ts(item, f"{where}[{i}]") for i, item in enumerate(value)]
    return value


def sendgrid(record: RawRecord) -> list[Event]:
    """One event per object of the JSON array SendGrid posts; ``event`` picks
    the schema and is left out of the data, ``timestamp`` becomes ISO-8601,
    other keys and values are kept as sent."""
    items = json_body(record)
    if not isinstance(items, list) or not items:
        raise reject("body", json_preview(items), "a non-empty JSON array of events")
    events: list[Event] = []
    problems: list[Message] = []
    for index, item in enumerate(items):
        try:
            events.append(_sendgrid_event(item, f"body[{index}]"))
        except Rejected as exc:
            problems.extend(exc.messages)
    if problems:
        raise Rejected(problems)
    return events


def _sendgrid_event(item: Any, where: str) -> Event:
    if not isinstance(item, dict):
        raise reject(where, json_preview(item), "a JSON object")
    kind = item.get("event")
    if not isinstance(kind, str) or kind not in SENDGRID_EVENTS:
        raise reject(f"{where}.event", kind, _one_of(SENDGRID_EVENTS))
    data = {key: value for key, value in item.items() if key != "event"}
    if "timestamp" in data:
        data["timestamp"] = iso_from_seconds(data["timestamp"], f"{where}.timestamp")
    return f"iglu:com.sendgrid/{kind}/jsonschema/{SENDGRID_VERSION}", data
