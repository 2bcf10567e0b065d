"""Self-describing JSON: the ``co``/``cx`` contexts and ``ue_pr``/``ue_px`` events.

The tracker sends each either as plain JSON or as base64 of the same JSON. Both
alphabets occur (the JavaScript tracker uses the URL-safe one without padding,
the Python tracker keeps the padding), so decoding accepts all of them.
Entities are checked for the self-describing shape here; checking them against
their JSON Schemas is the job of schema validation.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from plowline.compiled import core
from plowline.enrich.failed import Message

CONTEXTS_RE = re.compile(
    r"iglu:com\.snowplowanalytics\.snowplow/contexts/jsonschema/1-0-[0-9]+"
)
UNSTRUCT_RE = re.compile(
    r"iglu:com\.snowplowanalytics\.snowplow/unstruct_event/jsonschema/1-0-[0-9]+"
)
IGLU_URI_RE = re.compile(
    r"iglu:([a-zA-Z0-9\-_.]+)/([a-zA-Z0-9\-_]+)/([a-zA-Z0-9\-_]+)/"
    r"([0-9]+-[0-9]+-[0-9]+)"
)
CONTEXTS_SCHEMA = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
# What CONTEXTS_RE and UNSTRUCT_RE take before the revision's digits.
_CONTEXTS_PREFIX = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-"
_UNSTRUCT_PREFIX = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-"
UNSTRUCT_SCHEMA = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"

_BASE64_URLSAFE = bytes.maketrans(b"-_", b"+/")
_NOT_BASE64_RE = re.compile(r"[^A-Za-z0-9+/\-_]")
_BASE64_OR_PADDING = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="
)

# Snowplow enrich refuses JSON nested deeper than its maxJsonDepth (40 to 50);
# orjson also cannot write back more than 254 levels of what it reads.
MAX_JSON_DEPTH = 50


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in ``value`` nest more than ``limit`` levels."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)


class SelfDescribingError(ValueError):
    def __init__(self, message: Message) -> None:
        super().__init__(str(message))
        self.message = message


def decode_base64(text: str) -> bytes:
    """Base64 in either alphabet, with or without ``=`` padding.

    Like the decoder Snowplow enrich uses, characters outside both alphabets
    are skipped, and a dangling last character carries no byte.
    """
    if core is not None:
        decoded: bytes = core.decode_base64(text)
        return decoded
    return _decode_base64_py(text)


def json_brackets(data: bytes | str) -> int:
    """How many ``{`` and ``[`` the JSON text ``data`` holds: each level of
    nesting needs one, so a text with few cannot be deep, and needs no walk."""
    if core is not None:
        count: int = core.count_brackets(data)
        return count
    return _json_brackets_py(data)


def _json_brackets_py(data: bytes | str) -> int:
    if isinstance(data, bytes):
        return data.count(b"{") + data.count(b"[")
    return data.count("{") + data.count("[")


def _decode_base64_py(text: str) -> bytes:
    data = text.encode("ascii") if text.isascii() else b""
    if data and not data.translate(None, _BASE64_OR_PADDING):
        # Only alphabet and padding (nearly always): the padding is what goes.
        data = data.replace(b"=", b"")
    else:
        data = _NOT_BASE64_RE.sub("", text).encode("ascii")
    data = data.translate(_BASE64_URLSAFE)
    data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
    data += b"=" * (-len(data) % 4)
    return base64.b64decode(data, validate=True)


def _load(params: dict[str, str], plain: str, encoded: str, field: str) -> Any:
    if encoded in params:
        name, text = encoded, params[encoded]
        try:
            raw = decode_base64(text)
            text = raw.decode("utf-8")
        except (UnicodeError, binascii.Error, ValueError) as exc:
            raise SelfDescribingError(
                {
                    "field": name,
                    "value": text,
                    "error": f"not valid base64 UTF-8: {exc}",
                }
            ) from exc
    elif plain in params:
        name, text = plain, params[plain]
    else:
        return None
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SelfDescribingError(
            {"field": name, "value": text, "error": f"not valid JSON: {exc}"}
        ) from exc
    # Nesting needs an opening bracket per level: most documents have too few
    # brackets to be deep, and need no walk.
    if json_brackets(text) > MAX_JSON_DEPTH and too_deep(document):
        raise SelfDescribingError(
            {
                "field": name,
                "value": text[:200],
                "error": f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
            }
        )
    return document


def decode_contexts_param(params: dict[str, str]) -> dict[str, Any] | None:
    """The contexts envelope as sent, without checks; None when absent or broken."""
    try:
        value = _load(params, "co", "cx", "contexts")
    except SelfDescribingError:
        return None
    return value if isinstance(value, dict) else None


# Schema URIs seen valid -> their parts (vendor, name, format, version): events
# carry the same few schemas over and over.
_SCHEMA_PARTS: dict[str, tuple[str, ...]] = {}
SCHEMAS_KEPT = 4096


def schema_parts(schema: str) -> tuple[str, ...] | None:
    """The parts of an Iglu URI ``iglu:vendor/name/format/M-R-A``, or None."""
    parts = _SCHEMA_PARTS.get(schema)
    if parts is None:
        match = IGLU_URI_RE.fullmatch(schema)
        if match is None:
            return None
        if len(_SCHEMA_PARTS) >= SCHEMAS_KEPT:
            _SCHEMA_PARTS.clear()
        parts = _SCHEMA_PARTS[schema] = match.groups()
    return parts


def _entity_problem(entity: Any, where: str) -> Message | None:
    if not isinstance(entity, dict) or "schema" not in entity or "data" not in entity:
        return {
            "field": where,
            "value": _short(entity),
            "expectation": "a self-describing JSON object {schema, data}",
        }
    schema = entity["schema"]
    if not isinstance(schema, str) or schema_parts(schema) is None:
        return {
            "field": f"{where}.schema",
            "value": schema,
            "expectation": "an Iglu URI iglu:vendor/name/format/M-R-A",
        }
    return None


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 200 else text[:200] + "..."


def _check_envelope(
    document: Any, field: str, schema_re: re.Pattern[str], name: str
) -> None:
    schema = document.get("schema") if isinstance(document, dict) else None
    if not isinstance(schema, str) or not schema_re.fullmatch(schema):
        raise SelfDescribingError(
            {
                "field": field,
                "value": _short(document),
                "expectation": f"a {name} envelope with schema "
                f"iglu:com.snowplowanalytics.snowplow/{name}/jsonschema/1-0-*",
            }
        )


def contexts(params: dict[str, str]) -> str | None:
    """The enriched ``contexts`` column: the entities re-wrapped in contexts 1-0-1."""
    column = contexts_column(params)
    return None if column is None else column[0]


def contexts_column(params: dict[str, str]) -> tuple[str, dict[str, Any]] | None:
    """The ``contexts`` column and the document it is the JSON of (schema
    validation checks the document rather than read the text again)."""
    document = _load(params, "co", "cx", "contexts")
    if document is None:
        return None
    if core is not None:
        # The usual envelope in C; anything else below, which says what is wrong.
        wrapped = core.wrap_entities(document, _CONTEXTS_PREFIX, _SCHEMA_PARTS, False)
        if wrapped is not None:
            if not wrapped:
                return None
            column = {"schema": CONTEXTS_SCHEMA, "data": wrapped}
            return orjson.dumps(column).decode(), column
    field = "cx" if "cx" in params else "co"
    _check_envelope(document, field, CONTEXTS_RE, "contexts")
    entities = document.get("data")
    if not isinstance(entities, list):
        raise SelfDescribingError(
            {
                "field": f"{field}.data",
                "value": _short(entities),
                "expectation": "an array of self-describing entities",
            }
        )
    for index, entity in enumerate(entities):
        problem = _entity_problem(entity, f"{field}.data[{index}]")
        if problem is not None:
            raise SelfDescribingError(problem)
    if not entities:
        return None
    wrapped = [{"schema": e["schema"], "data": e["data"]} for e in entities]
    column = {"schema": CONTEXTS_SCHEMA, "data": wrapped}
    return orjson.dumps(column).decode(), column


def unstruct_event(params: dict[str, str]) -> tuple[str, tuple[str, ...]] | None:
    """The enriched ``unstruct_event`` column and the inner event's schema parts
    (vendor, name, format, version)."""
    column = unstruct_column(params)
    return None if column is None else (column[0], column[1])


def unstruct_column(
    params: dict[str, str],
) -> tuple[str, tuple[str, ...], dict[str, Any]] | None:
    """As ``unstruct_event``, and the document the column is the JSON of."""
    document = _load(params, "ue_pr", "ue_px", "unstruct_event")
    if document is None:
        return None
    if core is not None:
        entity = core.wrap_entities(document, _UNSTRUCT_PREFIX, _SCHEMA_PARTS, True)
        if entity is not None:
            event = {"schema": UNSTRUCT_SCHEMA, "data": entity}
            known = _SCHEMA_PARTS[entity["schema"]]
            return orjson.dumps(event).decode(), known, event
    field = "ue_px" if "ue_px" in params else "ue_pr"
    _check_envelope(document, field, UNSTRUCT_RE, "unstruct_event")
    inner: Any = document.get("data")
    problem = _entity_problem(inner, f"{field}.data")
    if problem is not None:
        raise SelfDescribingError(problem)
    parts = schema_parts(inner["schema"])
    assert parts is not None
    wrapped = {
        "schema": UNSTRUCT_SCHEMA,
        "data": {"schema": inner["schema"], "data": inner["data"]},
    }
    return orjson.dumps(wrapped).decode(), parts, wrapped
