"""Webhook adapters: requests from other systems turned into self-describing events.

The Iglu webhook (``/com.snowplowanalytics.iglu/v1``) takes any JSON (or form) that
names its schema, so any system able to call a URL can send events:

- ``GET ?schema=iglu:...&a=1&b=2``: one event whose data holds the other
  parameters as strings;
- ``POST ?schema=iglu:...`` with a JSON object (one event) or an array of objects
  (one event each), or a form body (one event, its fields as strings);
- ``POST`` with a self-describing JSON body and no ``schema`` parameter.

Tracker parameters that mean something to the pipeline (``aid``, ``nuid``,
``cv``, ``eid``, ``ttm``, ``url``, ``p``) pass through instead of becoming data.
"""

from __future__ import annotations

from typing import Any

import orjson

from plowline.enrich.adapters import Outcome, RawEvent
from plowline.enrich.failed import Message, request_failure
from plowline.enrich.selfdesc import IGLU_URI_RE, UNSTRUCT_SCHEMA, too_deep
from plowline.enrich.urls import querystring_params
from plowline.rawlog.record import RawRecord

IGLU_TRACKER = "com.snowplowanalytics.iglu-v1"
PASS_THROUGH = ("aid", "nuid", "cv", "eid", "ttm", "url")
NOT_DATA = frozenset({"schema", "p", *PASS_THROUGH})
FORM_TYPE = "application/x-www-form-urlencoded"


def _failure(
    record: RawRecord, field: str, value: Any, expectation: str, now_ms: int
) -> list[Outcome]:
    message: Message = {"field": field, "value": value, "expectation": expectation}
    return [request_failure("adapter_failures", record, [message], now_ms=now_ms)]


def _event(
    record: RawRecord,
    api: tuple[str, str],
    query: dict[str, str],
    schema: str,
    data: Any,
    default_platform: str,
) -> RawEvent:
    params = {name: query[name] for name in PASS_THROUGH if name in query}
    unstruct = {"schema": UNSTRUCT_SCHEMA, "data": {"schema": schema, "data": data}}
    params.update(
        e="ue",
        p=query.get("p", default_platform),
        tv=IGLU_TRACKER,
        ue_pr=orjson.dumps(unstruct).decode(),
    )
    return RawEvent(api[0], api[1], params, record)


def iglu_events(record: RawRecord, api: tuple[str, str], now_ms: int) -> list[Outcome]:
    query = (
        querystring_params(record.querystring.decode("utf-8", "replace"))
        if record.querystring
        else {}
    )
    schema = query.get("schema")
    if schema is not None and not IGLU_URI_RE.fullmatch(schema):
        return _failure(
            record,
            "schema",
            schema,
            "an Iglu URI such as iglu:com.acme/event/jsonschema/1-0-0",
            now_ms,
        )
    if not record.body:
        if schema is None:
            return _failure(
                record,
                "schema",
                None,
                "a schema parameter (or a self-describing JSON body)",
                now_ms,
            )
        data = {k: v for k, v in query.items() if k not in NOT_DATA}
        return [_event(record, api, query, schema, data, "app")]
    return _from_body(record, api, query, schema, now_ms)


def _from_body(
    record: RawRecord,
    api: tuple[str, str],
    query: dict[str, str],
    schema: str | None,
    now_ms: int,
) -> list[Outcome]:
    content_type = (record.content_type or "").split(";")[0].strip().lower()
    body = record.body or b""
    if content_type == FORM_TYPE and schema is not None:
        form = querystring_params(body.decode("utf-8", "replace"))
        return [_event(record, api, query, schema, form, "srv")]
    if content_type != "application/json":
        return _failure(
            record,
            "contentType",
            record.content_type,
            f"application/json, or {FORM_TYPE} with a schema parameter",
            now_ms,
        )
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _failure(
            record,
            "body",
            body[:200].decode("utf-8", "replace"),
            f"JSON ({exc})",
            now_ms,
        )
    if too_deep(document):
        return _failure(record, "body", None, "JSON nested at most 50 levels", now_ms)
    if schema is not None:
        items = document if isinstance(document, list) else [document]
        if not items or not all(isinstance(item, dict) for item in items):
            return _failure(
                record, "body", None, "a JSON object, or an array of objects", now_ms
            )
        return [_event(record, api, query, schema, item, "app") for item in items]
    return _self_describing_body(record, api, query, document, now_ms)


def _self_describing_body(
    record: RawRecord,
    api: tuple[str, str],
    query: dict[str, str],
    document: Any,
    now_ms: int,
) -> list[Outcome]:
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("schema"), str)
        or not IGLU_URI_RE.fullmatch(document["schema"])
        or "data" not in document
    ):
        return _failure(
            record,
            "body",
            None,
            "a self-describing JSON {schema, data} when there is no schema parameter",
            now_ms,
        )
    return [_event(record, api, query, document["schema"], document["data"], "app")]
