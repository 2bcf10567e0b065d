"""Adapters: from one collected request to the tracker-protocol events in it.

The request path names the API: ``/i`` and ``/ice.png`` are the pixel (tp1),
``/{vendor}/{version}`` anything else. The Snowplow tracker protocol 2 carries one
event in a GET querystring or a batch in a POST ``payload_data`` body, where the
querystring is merged into every event and wins. ``/r/tp2`` is a click redirect.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import orjson

from plowline.compiled import core
from plowline.enrich.failed import (
    FailedEvent,
    Message,
    request_failure,
    size_violation,
)
from plowline.enrich.selfdesc import (
    MAX_JSON_DEPTH,
    decode_contexts_param,
    json_brackets,
    too_deep,
)
from plowline.enrich.urls import querystring_params
from plowline.rawlog.record import RawRecord

SNOWPLOW = "com.snowplowanalytics.snowplow"
PAYLOAD_DATA_RE = re.compile(
    r"iglu:com\.snowplowanalytics\.snowplow/payload_data/jsonschema/1-0-([0-9]+)"
)
URI_REDIRECT = "iglu:com.snowplowanalytics.snowplow/uri_redirect/jsonschema/1-0-0"
PAYLOAD_DATA_1_0_4 = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
UNSTRUCT_EVENT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"

# payload_data 1-0-4 allows exactly these keys (its additionalProperties is false).
# fmt: off
_PAYLOAD_KEYS_1_0_0 = frozenset(
    {
        "tna", "aid", "p", "dtm", "tz", "e", "tid", "eid", "tv", "duid", "nuid", "uid",
        "vid", "ip", "res", "url", "page", "refr", "fp", "ctype", "cookie", "lang",
        "f_pdf", "f_qt", "f_realp", "f_wma", "f_dir", "f_fla", "f_java", "f_gears",
        "f_ag", "cd", "ds", "cs", "vp", "mac", "pp_mix", "pp_max", "pp_miy", "pp_may",
        "ad_ba", "ad_ca", "ad_ad", "ad_uid", "tr_id", "tr_af", "tr_tt", "tr_tx",
        "tr_sh", "tr_ci", "tr_st", "tr_co", "tr_cu", "ti_id", "ti_sk", "ti_nm", "ti_na",
        "ti_ca", "ti_pr", "ti_qu", "ti_cu", "sa", "sn", "st", "sp", "se_ca", "se_ac",
        "se_la", "se_pr", "se_va", "ue_na", "ue_pr", "ue_px", "co", "cx",
    }
)
# fmt: on
PAYLOAD_KEYS = {
    0: _PAYLOAD_KEYS_1_0_0,
    1: _PAYLOAD_KEYS_1_0_0 | {"ua"},
    2: _PAYLOAD_KEYS_1_0_0 | {"ua", "tnuid"},
    3: _PAYLOAD_KEYS_1_0_0 | {"ua", "tnuid", "stm", "sid"},
    4: _PAYLOAD_KEYS_1_0_0 | {"ua", "tnuid", "stm", "sid", "ttm"},
}
REQUIRED_PAYLOAD_KEYS = ("tv", "p", "e")
# A gzip body may inflate to this much (a 1 MiB body of zeros would be a gigabyte).
MAX_DECOMPRESSED_BYTES = 10 * 1024 * 1024


@dataclass(slots=True)
class RawEvent:
    """One tracker-protocol event: its parameters and the request it came in."""

    vendor: str
    version: str
    params: dict[str, str]
    record: RawRecord


Outcome = RawEvent | FailedEvent


@lru_cache(maxsize=256)  # a collector's few paths, over and over
def api_of(path: str) -> tuple[str, str] | None:
    """The (vendor, version) a request path addresses, or None."""
    path = unquote(path)  # the collector routes on the decoded path too
    if path == "/i" or path.startswith("/ice.png"):
        return SNOWPLOW, "tp1"
    parts = path.strip("/").split("/")
    if len(parts) == 2 and all(parts) and path.count("//") == 0:
        return parts[0], parts[1]
    return None


def to_raw_events(record: RawRecord, now_ms: int) -> list[Outcome]:
    """Every event in ``record``, or the failure that stops reading it."""
    error = record.extra.get("error")
    if error is not None:
        # The collector refused the request (413, 400) and kept what it got.
        if str(error).startswith("size_violation"):
            return [size_violation(record, str(error), now_ms=now_ms)]
        return [
            request_failure(
                "collector_payload_format_violation",
                record,
                [{"error": str(error)}],
                now_ms=now_ms,
            )
        ]
    api = api_of(record.path)
    if api is None:
        message = {
            "field": "path",
            "value": record.path,
            "expectation": "/i, /ice.png or a /vendor/version path",
        }
        return [request_failure("adapter_failures", record, [message], now_ms=now_ms)]
    adapter = _ADAPTERS.get(api)
    if adapter is None:
        message = {
            "field": "path",
            "value": record.path,
            "expectation": f"a supported vendor/version; {api[0]}/{api[1]} is not",
        }
        return [request_failure("adapter_failures", record, [message], now_ms=now_ms)]
    return adapter(record, api, now_ms)


def _querystring(record: RawRecord) -> dict[str, str]:
    if not record.querystring:
        return {}
    if core is not None:
        # ASCII (nearly always) read from the bytes, without decoding first.
        params: dict[str, str] | None = core.querystring_params(record.querystring)
        if params is not None:
            return params
    return querystring_params(record.querystring.decode("utf-8", "replace"))


def _tp1(record: RawRecord, api: tuple[str, str], now_ms: int) -> list[Outcome]:
    params = _querystring(record)
    if not params:
        message = {
            "field": "querystring",
            "value": None,
            "expectation": "tracker-protocol parameters; the querystring is empty",
        }
        return [request_failure("adapter_failures", record, [message], now_ms=now_ms)]
    return [RawEvent(api[0], api[1], params, record)]


def _tp2(record: RawRecord, api: tuple[str, str], now_ms: int) -> list[Outcome]:
    params = _querystring(record)
    if not record.body:
        if not params:
            message = {
                "field": "body",
                "value": None,
                "expectation": "a payload_data body or a querystring; "
                "the request has neither",
            }
            return [
                request_failure(
                    "tracker_protocol_violations", record, [message], now_ms=now_ms
                )
            ]
        return [RawEvent(api[0], api[1], params, record)]

    items, allowed, problem = _payload_items(record)
    if problem is not None:
        return [
            request_failure(
                "tracker_protocol_violations", record, [problem], now_ms=now_ms
            )
        ]
    vendor, version = api
    outcomes: list[Outcome] = []
    for index, item in enumerate(items):
        if _plain_item(item, allowed):
            # The querystring's parameters win; without any, the item itself
            # (nothing changes the parameters of an event).
            merged = {**item, **params} if params else item
            outcomes.append(RawEvent(vendor, version, merged, record))
            continue
        messages = _item_problems(item, allowed, index)
        if messages:
            outcomes.append(_item_failure(record, item, messages, now_ms))
        else:
            outcomes.append(RawEvent(vendor, version, {**item, **params}, record))
    return outcomes


# payload_data schema URI -> the keys its revision allows (None: not one).
_ALLOWED_BY_SCHEMA: dict[str, frozenset[str] | None] = {}
SCHEMAS_KEPT = 256


def _allowed_keys(schema: str) -> frozenset[str] | None:
    """The keys a payload_data schema allows, None for another schema."""
    exact = type(schema) is str  # only exact str in the cache
    if exact and schema in _ALLOWED_BY_SCHEMA:
        return _ALLOWED_BY_SCHEMA[schema]
    match = PAYLOAD_DATA_RE.fullmatch(schema)
    allowed = (
        None if match is None else PAYLOAD_KEYS.get(int(match[1]), PAYLOAD_KEYS[4])
    )
    if exact:
        if len(_ALLOWED_BY_SCHEMA) >= SCHEMAS_KEPT:
            _ALLOWED_BY_SCHEMA.clear()
        _ALLOWED_BY_SCHEMA[schema] = allowed
    return allowed


_NO_KEYS: frozenset[str] = frozenset()


def _payload_items(
    record: RawRecord,
) -> tuple[list[Any], frozenset[str], Message | None]:
    content_type = (record.content_type or "").split(";")[0].strip().lower()
    # Snowplow accepts only application/json; beacons send text/plain.
    if content_type not in ("application/json", "text/plain"):
        return (
            [],
            _NO_KEYS,
            {
                "field": "contentType",
                "value": record.content_type,
                "expectation": "application/json (or text/plain from a beacon)",
            },
        )
    body = _decompressed(record.body or b"")
    if body is None:
        return (
            [],
            _NO_KEYS,
            {
                "field": "body",
                "value": None,
                "error": "the gzip body inflates to more than "
                f"{MAX_DECOMPRESSED_BYTES} bytes",
            },
        )
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return (
            [],
            _NO_KEYS,
            {
                "field": "body",
                "value": _preview(body),
                "error": f"the body is not JSON: {exc}",
            },
        )
    # Each level of nesting needs an opening bracket: a body with few of them
    # cannot be too deep, and needs no walk.
    if json_brackets(body) > MAX_JSON_DEPTH and too_deep(document):
        return (
            [],
            _NO_KEYS,
            {
                "field": "body",
                "value": _preview(body),
                "error": f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
            },
        )
    if not isinstance(document, dict):
        return (
            [],
            _NO_KEYS,
            {
                "field": "body",
                "value": _preview(body),
                "expectation": "a payload_data self-describing JSON object",
            },
        )
    schema = document.get("schema")
    allowed = _allowed_keys(schema) if isinstance(schema, str) else None
    if allowed is None:
        return (
            [],
            _NO_KEYS,
            {
                "field": "schema",
                "value": schema,
                "expectation": "iglu:com.snowplowanalytics.snowplow/payload_data/"
                "jsonschema/1-0-*",
            },
        )
    data = document.get("data")
    if not isinstance(data, list) or not data:
        return (
            [],
            _NO_KEYS,
            {
                "field": "data",
                "value": _preview(orjson.dumps(data)),
                "expectation": "a non-empty array of events",
            },
        )
    return data, allowed, None


def _decompressed(body: bytes) -> bytes | None:
    """The body, gunzipped when it is gzip; None when it inflates past the limit."""
    if body[:2] != b"\x1f\x8b":
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_DECOMPRESSED_BYTES)
    except zlib.error:
        return body  # not gzip after all: read as it is
    if inflater.unconsumed_tail:
        return None
    return data


def _preview(data: bytes, limit: int = 200) -> str:
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def _plain_item(item: Any, allowed: frozenset[str]) -> bool:
    """Whether ``item`` surely has no problem: the usual event, checked in C
    (``_item_problems`` says what is wrong with the others)."""
    return (
        type(item) is dict
        and "tv" in item  # REQUIRED_PAYLOAD_KEYS
        and "p" in item
        and "e" in item
        and allowed.issuperset(item)
        and set(map(type, item.values())) == _STR_ONLY
    )


_STR_ONLY = {str}


def _item_problems(item: Any, allowed: frozenset[str], index: int) -> list[Message]:
    where = f"data[{index}]"
    if not isinstance(item, dict):
        return [
            {
                "field": where,
                "value": _preview(orjson.dumps(item)),
                "expectation": "an object of string parameters",
            }
        ]
    messages: list[Message] = []
    for key, value in item.items():
        if not isinstance(value, str):
            messages.append(
                {"field": f"{where}.{key}", "value": value, "expectation": "a string"}
            )
        elif key not in allowed:
            messages.append(
                {
                    "field": f"{where}.{key}",
                    "value": value,
                    "expectation": "a parameter that payload_data allows",
                }
            )
    for key in REQUIRED_PAYLOAD_KEYS:
        if key not in item:
            messages.append(
                {
                    "field": f"{where}.{key}",
                    "value": None,
                    "expectation": "a value: this parameter is required",
                }
            )
    return messages


def _item_failure(
    record: RawRecord, item: Any, messages: list[Message], now_ms: int
) -> FailedEvent:
    # A batch may hold good and bad events: the failed event carries a request
    # holding only this one event, so a replay does not duplicate the good ones,
    # and its cost does not grow with the size of the batch.
    body = orjson.dumps({"schema": PAYLOAD_DATA_1_0_4, "data": [item]})
    single = replace(record, body=body)
    return request_failure(
        "tracker_protocol_violations", single, messages, now_ms=now_ms
    )


def _redirect(record: RawRecord, api: tuple[str, str], now_ms: int) -> list[Outcome]:
    params = _querystring(record)
    target = params.pop("u", None)
    if not target:
        message = {
            "field": "u",
            "value": None,
            "expectation": "the redirect target URL in parameter u",
        }
        return [
            request_failure(
                "tracker_protocol_violations", record, [message], now_ms=now_ms
            )
        ]
    redirect = {"schema": URI_REDIRECT, "data": {"uri": target}}
    if "e" in params:
        params["co"] = _add_context(params, redirect)
        params.pop("cx", None)
    else:
        params["e"] = "ue"
        params["ue_pr"] = orjson.dumps(
            {"schema": UNSTRUCT_EVENT, "data": redirect}
        ).decode()
    params["tv"] = "r-tp2"
    params.setdefault("p", "web")
    return [RawEvent(api[0], api[1], params, record)]


def _add_context(params: dict[str, str], entity: dict[str, Any]) -> str:
    contexts = decode_contexts_param(params) or {
        "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
        "data": [],
    }
    if isinstance(contexts.get("data"), list):
        contexts["data"].append(entity)
    return orjson.dumps(contexts).decode()


def _iglu(record: RawRecord, api: tuple[str, str], now_ms: int) -> list[Outcome]:
    # Imported here: the webhooks module builds on this one.
    from plowline.enrich.webhooks import iglu_events

    return iglu_events(record, api, now_ms)


def _vendor_webhook(
    record: RawRecord, api: tuple[str, str], now_ms: int
) -> list[Outcome]:
    from plowline.enrich.webhook_vendors import vendor_events

    return vendor_events(record, api, now_ms)


# Third-party webhooks (plowline.enrich.webhook_vendors, docs/webhooks.md).
VENDOR_WEBHOOKS = (
    ("com.mailgun", "v1"),
    ("com.mandrill", "v1"),
    ("com.olark", "v1"),
    ("com.pagerduty", "v1"),
    ("com.pingdom", "v1"),
    ("com.sendgrid", "v3"),
    ("com.statusgator", "v1"),
    ("com.unbounce", "v1"),
)

Adapter = Callable[[RawRecord, tuple[str, str], int], list[Outcome]]

_ADAPTERS: dict[tuple[str, str], Adapter] = {
    (SNOWPLOW, "tp1"): _tp1,
    (SNOWPLOW, "tp2"): _tp2,
    ("r", "tp2"): _redirect,
    ("com.snowplowanalytics.iglu", "v1"): _iglu,
    **{api: _vendor_webhook for api in VENDOR_WEBHOOKS},
}
