"""What the vendor webhook adapters share: reading form, multipart and JSON
bodies, renaming keys, turning epoch seconds into ISO-8601 text, and building
the self-describing event each vendor payload becomes.

An adapter that cannot read its input raises :class:`Rejected` with messages
``{field, value, expectation}``; the dispatcher turns that into one
``adapter_failures`` failed event, so no vendor payload ever raises further.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

import orjson

from plowline.enrich.adapters import RawEvent
from plowline.enrich.failed import Message
from plowline.enrich.selfdesc import MAX_JSON_DEPTH, UNSTRUCT_SCHEMA, too_deep
from plowline.enrich.urls import querystring_params
from plowline.enrich.webhooks import PASS_THROUGH
from plowline.rawlog.record import RawRecord

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JSON = "application/json"
PREVIEW_CHARS = 200
# Epoch seconds accepted as timestamps: 1970 up to the end of year 9999, the
# range a warehouse TIMESTAMP column holds.
MAX_EPOCH_SECONDS = 253402300800
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEPARATORS = re.compile(r"[-_]+")
_PART_NAME = re.compile(r'(?:^|;)\s*name\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)
_BOUNDARY = re.compile(r'(?:^|;)\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.I)


class Rejected(Exception):
    """The payload cannot become events; ``messages`` say which field and why."""

    def __init__(self, messages: list[Message]) -> None:
        super().__init__("; ".join(str(m) for m in messages))
        self.messages = messages


def reject(field: str, value: Any, expectation: str) -> Rejected:
    return Rejected([{"field": field, "value": value, "expectation": expectation}])


def preview(value: str | bytes | None) -> str | None:
    """At most PREVIEW_CHARS characters of ``value`` for a failure message."""
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "..."


def json_preview(value: Any) -> str | None:
    """``value`` (parsed JSON) as JSON text for a failure message; None stays."""
    return None if value is None else preview(orjson.dumps(value))


def media_type(record: RawRecord) -> str:
    """The content type without its parameters, lower case ("" when absent)."""
    return (record.content_type or "").split(";")[0].strip().lower()


def query_of(record: RawRecord) -> dict[str, str]:
    if not record.querystring:
        return {}
    return querystring_params(record.querystring.decode("utf-8", "replace"))


def require_content_type(record: RawRecord, *allowed: str) -> str:
    found = media_type(record)
    if found not in allowed:
        raise reject("contentType", record.content_type, " or ".join(allowed))
    return found


def require_body(record: RawRecord) -> bytes:
    if not record.body:
        raise reject("body", None, "a request body; this request has none")
    return record.body


def form_fields(record: RawRecord) -> dict[str, str]:
    """The fields of a urlencoded or multipart form body (the last of a
    repeated name wins)."""
    body = require_body(record)
    if media_type(record) == MULTIPART:
        return multipart_fields(body, record.content_type or "")
    return querystring_params(body.decode("utf-8", "replace"))


def multipart_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The text of each part of a ``multipart/form-data`` body by its name.

    Values are stripped of surrounding white space, which holds the line break a
    file part ends with. File parts are kept as text like any other part.
    """
    match = _BOUNDARY.search(content_type.split(";", 1)[-1])
    if match is None:
        raise reject("contentType", content_type, "multipart/form-data; boundary=...")
    boundary = (match[1] or match[2]).encode()
    # The collector stores the content type in lower case: the body keeps the
    # boundary as the client wrote it.
    first_line = body.split(b"\n", 1)[0].rstrip(b"\r")
    delimiter = b"--" + boundary
    if first_line.lower() == delimiter.lower():
        delimiter = first_line
    chunks = re.split(rb"(?:^|\r?\n)" + re.escape(delimiter), body)
    if len(chunks) < 2:
        raise reject(
            "body", preview(body), f"multipart parts separated by --{boundary.decode()}"
        )
    fields: dict[str, str] = {}
    for index, chunk in enumerate(chunks[1:]):
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        head, separator, content = re.sub(rb"^[ \t]*\r?\n", b"", chunk).partition(
            b"\r\n\r\n"
        )
        if not separator:
            head, separator, content = head.partition(b"\n\n")
        name = _part_name(head.decode("utf-8", "replace"))
        if not separator or name is None:
            raise reject(
                f"body.part[{index}]",
                preview(chunk),
                "a part with a Content-Disposition header naming the field",
            )
        fields[name] = content.decode("utf-8", "replace").strip()
    return fields


def _part_name(head: str) -> str | None:
    for line in head.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            match = _PART_NAME.search(value.split(";", 1)[-1])
            if match is not None:
                return match[1] if match[1] is not None else match[2]
    return None


def parse_json(text: str | bytes, field: str) -> Any:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise reject(field, preview(text), f"JSON ({exc})") from None
    if too_deep(document):
        raise reject(field, None, f"JSON nested at most {MAX_JSON_DEPTH} levels")
    return document


def json_body(record: RawRecord) -> Any:
    require_content_type(record, JSON)
    return parse_json(require_body(record), "body")


def json_field(fields: dict[str, str], name: str, kind: type) -> Any:
    """Form field ``name`` parsed as JSON of type ``kind`` (dict or list)."""
    if name not in fields:
        raise reject(name, None, f"a form field {name} holding JSON")
    document = parse_json(fields[name], name)
    if not isinstance(document, kind):
        expected = "a JSON object" if kind is dict else "a JSON array"
        raise reject(name, preview(fields[name]), expected)
    return document


def camel_case(key: str) -> str:
    """``my-var_1`` -> ``myVar1``, ``Message-Id`` -> ``messageId``; keys without
    ``-`` or ``_`` are kept as they are."""
    parts = [part for part in _SEPARATORS.split(key) if part]
    if not parts or parts == [key]:
        return key
    head = parts[0][:1].lower() + parts[0][1:]
    return head + "".join(part[:1].upper() + part[1:] for part in parts[1:])


def camel_keys(value: Any) -> Any:
    """``value`` with every object key in it camel-cased."""
    if isinstance(value, dict):
        return {camel_case(key): camel_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [camel_keys(item) for item in value]
    return value


def iso_from_seconds(value: Any, field: str) -> str:
    """Epoch seconds (a number, or text such as ``"1473774819.263083"``) as
    ``2016-09-13T13:53:39.263Z``; fractions below the millisecond are dropped."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise reject(field, value, "epoch seconds")
    try:
        seconds = Decimal(str(value).strip())
    except InvalidOperation:
        raise reject(field, value, "epoch seconds") from None
    if not seconds.is_finite() or not 0 <= seconds < MAX_EPOCH_SECONDS:
        raise reject(field, value, f"epoch seconds from 0 to {MAX_EPOCH_SECONDS}")
    millis = int((seconds * 1000).to_integral_value(rounding=ROUND_FLOOR))
    moment = _EPOCH + timedelta(milliseconds=millis)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}."
        f"{moment.microsecond // 1000:03d}Z"
    )


def webhook_event(
    record: RawRecord,
    api: tuple[str, str],
    query: dict[str, str],
    schema: str,
    data: Any,
) -> RawEvent:
    """The tracker-protocol event of one vendor payload: a self-describing event
    with platform ``srv`` (unless ``p`` says otherwise) and tracker
    ``{vendor}-{version}``; ``aid``, ``nuid``, ``cv``... pass through."""
    params = {name: query[name] for name in PASS_THROUGH if name in query}
    unstruct = {"schema": UNSTRUCT_SCHEMA, "data": {"schema": schema, "data": data}}
    params.update(
        e="ue",
        p=query.get("p", "srv"),
        tv=f"{api[0]}-{api[1]}",
        ue_pr=orjson.dumps(unstruct).decode(),
    )
    return RawEvent(api[0], api[1], params, record)
