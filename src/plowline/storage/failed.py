"""Failed-event records (self-describing bad rows, JSON lines) into a batch.

A batch of failed events is a pyarrow table with ``FAILED_SCHEMA``: when it
failed, the bad-row type, its schema, a short reason, the raw payload and the
whole record (so it can be replayed).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa  # type: ignore[import-untyped]

from plowline.errors import BadInputError
from plowline.storage.batch import show as _show

log = logging.getLogger(__name__)

FAILED_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("failed_at", pa.timestamp("us"), nullable=False),
        pa.field("failure_type", pa.string(), nullable=False),
        pa.field("failure_schema", pa.string(), nullable=False),
        pa.field("message", pa.string()),
        pa.field("payload", pa.string()),
        pa.field("failed_event", pa.string(), nullable=False),
    ]
)

_BADROW_SCHEMA = re.compile(
    r"iglu:com\.snowplowanalytics\.snowplow\.badrows/([A-Za-z0-9_]+)"
    r"/jsonschema/\d+-\d+-\d+"
)
_MESSAGE_CHARS = 300


def failed_batch(
    lines: Iterable[bytes | str], *, first_line: int = 1, source: str | None = None
) -> pa.Table:
    """Failed-event JSON lines into a table; blank lines are skipped, but
    counted in the line numbers of errors, which name ``source`` if given."""
    try:
        records = [
            _failed_record(line, number)
            for number, line in enumerate(lines, start=first_line)
            if line.strip()
        ]
    except BadInputError as exc:
        if source is None:
            raise
        raise BadInputError(
            f"{source}, line {exc.line}: {exc}", source=source, line=exc.line
        ) from exc
    if not records:
        return FAILED_SCHEMA.empty_table()
    columns = list(zip(*records, strict=True))
    return pa.Table.from_arrays(
        [
            pa.array(values, f.type)
            for values, f in zip(columns, FAILED_SCHEMA, strict=True)
        ],
        schema=FAILED_SCHEMA,
    )


_FailedRecord = tuple[datetime, str, str, str | None, str | None, str]


def _failed_record(line: bytes | str, number: int) -> _FailedRecord:
    try:
        text = (line.decode("utf-8") if isinstance(line, bytes) else line).strip()
        document = orjson.loads(text)
    except UnicodeDecodeError as exc:
        raise _failed_problem(number, f"is not UTF-8 ({exc.reason})") from exc
    except orjson.JSONDecodeError as exc:
        raise _failed_problem(number, f"is not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise _failed_problem(number, "is not a JSON object")

    schema = document.get("schema")
    match = _BADROW_SCHEMA.fullmatch(schema) if isinstance(schema, str) else None
    if match is None:
        raise _failed_problem(
            number,
            f"has schema {_show(schema)}, not iglu:com.snowplowanalytics.snowplow"
            ".badrows/<type>/jsonschema/<version>",
        )
    data = document.get("data")
    failure = data.get("failure") if isinstance(data, dict) else None
    if not isinstance(failure, dict):
        raise _failed_problem(number, "has no data.failure object")

    failed_at = _parse_timestamp(failure.get("timestamp"), number)
    payload = data.get("payload") if isinstance(data, dict) else None
    try:
        raw = None if payload is None else _dumps(payload)
        message = _failure_text(failure)
    except RecursionError as exc:
        raise _failed_problem(number, "is nested too deeply to store") from exc
    return failed_at, match.group(1), str(schema), message, raw, text


def _failed_problem(number: int, problem: str) -> BadInputError:
    return BadInputError(
        f"Failed event {number} {problem}. Its batch was not loaded.", line=number
    )


def _parse_timestamp(value: object, number: int) -> datetime:
    if not isinstance(value, str):
        raise _failed_problem(number, "has no data.failure.timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _failed_problem(
            number, f"has a failure timestamp that is not ISO 8601: {_show(value)}"
        ) from exc
    if parsed.tzinfo is None:
        return parsed
    try:
        return parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError as exc:
        raise _failed_problem(
            number, f"has a failure timestamp out of range in UTC: {_show(value)}"
        ) from exc


def _dumps(value: object) -> str:
    """Compact JSON text; orjson writes at most 254 levels, the standard
    library deeper (to its recursion limit, then RecursionError)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _failure_text(failure: dict[str, Any]) -> str | None:
    """A short text for the failure: its first message, whatever its shape."""
    for key in ("messages", "errors"):
        items = failure.get(key)
        if isinstance(items, list) and items:
            return _shorten(_render(items[0]))
    for key in ("message", "expectation", "error"):
        if failure.get(key) is not None:
            return _shorten(_render(failure[key]))
    return None


def _render(value: object) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return _dumps(value)

    label = _label(value)
    reports = value.get("dataReports")
    if isinstance(reports, list) and reports:
        return _join_label(label, _render(reports[0]))
    for key in ("message", "error", "expectation"):
        if value.get(key) is not None:
            return _join_label(label, _render(value[key]))
    return _dumps(value)


def _label(message: dict[str, Any]) -> str | None:
    """Which field, schema or enrichment a bad-row message is about."""
    field = message.get("field") or message.get("payloadField")
    if isinstance(field, str):
        if "value" in message:
            shown = _dumps(message["value"])
            return f"{field} {_shorten(shown, 60)}"
        return field
    enrichment = message.get("enrichment")
    if isinstance(enrichment, dict) and isinstance(enrichment.get("identifier"), str):
        return str(enrichment["identifier"])
    schema = message.get("schemaKey") or message.get("schema")
    return schema if isinstance(schema, str) else None


def _join_label(label: str | None, text: str) -> str:
    return text if label is None else f"{label}: {text}"


def _shorten(text: str, limit: int = _MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
