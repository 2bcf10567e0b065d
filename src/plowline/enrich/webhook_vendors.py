"""Vendor webhooks: what Olark, PagerDuty, Pingdom, StatusGator and Unbounce
post (the e-mail services are in ``webhook_email``), and the dispatch of every
vendor path to its adapter.

Each vendor's payload becomes self-describing events with the vendor's schemas
of Iglu Central, platform ``srv`` and tracker ``{vendor}-{version}`` (see
docs/webhooks.md). A payload that cannot be read becomes one
``adapter_failures`` failed event whose messages name the field and value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from plowline.enrich.adapters import Outcome
from plowline.enrich.failed import Message, request_failure
from plowline.enrich.webhook_email import Event, mailgun, mandrill, sendgrid
from plowline.enrich.webhook_support import (
    FORM,
    Rejected,
    camel_keys,
    form_fields,
    iso_from_seconds,
    json_body,
    json_field,
    json_preview,
    parse_json,
    preview,
    query_of,
    reject,
    require_content_type,
    webhook_event,
)
from plowline.rawlog.record import RawRecord

logger = logging.getLogger(__name__)

PAGERDUTY_TYPES = frozenset(
    {
        "trigger",
        "acknowledge",
        "unacknowledge",
        "resolve",
        "assign",
        "escalate",
        "delegate",
    }
)
PINGDOM_ACTIONS = frozenset({"assign", "notify_of_close", "notify_user"})
# PagerDuty's v1 webhooks wrote offsets as "+00:00" unescaped in a URL-encoded
# context, so "2014-12-17T17:02:51+00:00" arrives as "...17:02:51 00:00".
_SPACED_OFFSET = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?) (\d{2}:?\d{2})"
)


def olark(record: RawRecord) -> list[Event]:
    """The ``data`` form field (JSON): a chat transcript when it lists
    operators, else an offline message. Keys become camelCase; each item's
    ``timestamp`` (epoch seconds as text) becomes ISO-8601."""
    require_content_type(record, FORM)
    data = json_field(form_fields(record), "data", dict)
    items = data.get("items")
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict) and "timestamp" in item:
                item["timestamp"] = iso_from_seconds(
                    item["timestamp"], f"data.items[{index}].timestamp"
                )
    name = "transcript" if "operators" in data else "offline_message"
    return [(f"iglu:com.olark/{name}/jsonschema/1-0-0", camel_keys(data))]


def pagerduty(record: RawRecord) -> list[Event]:
    """One ``incident`` event per item of ``messages``: ``type``
    ``incident.resolve`` becomes ``resolve``; offsets written with a space are
    mended; keys are kept as sent."""
    body = json_body(record)
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        raise reject(
            "messages", json_preview(messages), "a non-empty array of messages"
        )
    events: list[Event] = []
    problems: list[Message] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        kind = message.get("type") if isinstance(message, dict) else None
        prefix, _, action = (
            kind.partition(".") if isinstance(kind, str) else ("", "", "")
        )
        if prefix != "incident" or action not in PAGERDUTY_TYPES:
            expected = "incident." + ", incident.".join(sorted(PAGERDUTY_TYPES))
            problems.append(
                {"field": f"{where}.type", "value": kind, "expectation": expected}
            )
            continue
        data = _mend_offsets({**message, "type": action})
        events.append(("iglu:com.pagerduty/incident/jsonschema/1-0-0", data))
    if problems:
        raise Rejected(problems)
    return events


def _mend_offsets(value: Any) -> Any:
    if isinstance(value, str):
        match = _SPACED_OFFSET.fullmatch(value)
        return f"{match[1]}+{match[2]}" if match else value
    if isinstance(value, dict):
        return {key: _mend_offsets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mend_offsets(item) for item in value]
    return value


def pingdom(record: RawRecord) -> list[Event]:
    """The ``message`` querystring parameter (JSON): ``action`` picks
    ``incident_{action}`` and is left out of the data; values are kept."""
    query = query_of(record)
    if "message" not in query:
        raise reject("message", None, "a querystring parameter message holding JSON")
    message = parse_json(query["message"], "message")
    if not isinstance(message, dict):
        raise reject("message", preview(query["message"]), "a JSON object")
    action = message.get("action")
    if not isinstance(action, str) or action not in PINGDOM_ACTIONS:
        raise reject(
            "message.action", action, "one of " + ", ".join(sorted(PINGDOM_ACTIONS))
        )
    data = {key: value for key, value in message.items() if key != "action"}
    return [(f"iglu:com.pingdom/incident_{action}/jsonschema/1-0-0", data)]


def statusgator(record: RawRecord) -> list[Event]:
    """One ``status_change`` per form: the fields, camelCase, as text."""
    require_content_type(record, FORM)
    fields = form_fields(record)
    if not fields:
        raise reject("body", preview(record.body), "form fields of a status change")
    return [("iglu:com.statusgator/status_change/jsonschema/1-0-0", camel_keys(fields))]


def unbounce(record: RawRecord) -> list[Event]:
    """One ``form_post`` per form: the page fields in camelCase and
    ``data.json`` (the visitor's answers) parsed, its keys camelCase too;
    ``data.xml`` repeats ``data.json`` and is left out."""
    require_content_type(record, FORM)
    fields = form_fields(record)
    answers = json_field(fields, "data.json", dict)
    data: dict[str, Any] = camel_keys(
        {k: v for k, v in fields.items() if k not in ("data.json", "data.xml")}
    )
    data["data.json"] = camel_keys(answers)
    return [("iglu:com.unbounce/form_post/jsonschema/1-0-0", data)]


Reader = Callable[[RawRecord], list[Event]]

VENDOR_READERS: dict[tuple[str, str], Reader] = {
    ("com.mailgun", "v1"): mailgun,
    ("com.mandrill", "v1"): mandrill,
    ("com.olark", "v1"): olark,
    ("com.pagerduty", "v1"): pagerduty,
    ("com.pingdom", "v1"): pingdom,
    ("com.sendgrid", "v3"): sendgrid,
    ("com.statusgator", "v1"): statusgator,
    ("com.unbounce", "v1"): unbounce,
}


def vendor_events(
    record: RawRecord, api: tuple[str, str], now_ms: int
) -> list[Outcome]:
    """The events of one vendor webhook request, or its one failed event."""
    try:
        reader = VENDOR_READERS.get(api)
        if reader is None:
            raise reject("path", record.path, "a vendor webhook path")
        found = reader(record)
    except Rejected as exc:
        logger.debug("%s/%s payload rejected: %s", api[0], api[1], exc)
        return [
            request_failure("adapter_failures", record, exc.messages, now_ms=now_ms)
        ]
    query = query_of(record)
    return [webhook_event(record, api, query, schema, data) for schema, data in found]
