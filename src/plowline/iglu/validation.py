"""Checking self-describing JSON against its schema, with Snowplow's messages.

``check`` validates ``data`` against the schema of ``key``; ``check_self_describing``
does the same for a ``{"schema": ..., "data": ...}`` instance. Both return
the failure message to put in a ``schema_violations`` failed event, or None:

- ``{"json": ..., "error": "INVALID_IGLUURI"}`` and its kin (NotIglu) when the
  instance is not self-describing;
- ``{"schemaKey": ..., "error": {"error": "ValidationError", "dataReports": [...]}}``
  when the data does not match its schema (``schemaIssues`` instead when the
  schema itself is broken);
- ``{"schemaKey": ..., "error": {"error": "ResolutionError", "lookupHistory": [...]}}``
  when no repository gave the schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from plowline.iglu.core import IgluSyntaxError, SchemaKey
from plowline.iglu.draft4 import InvalidSchemaError, data_reports, fast_says_valid
from plowline.iglu.resolver import RegistryUnreachableError, ResolutionError, Resolver

Message = dict[str, Any]


def check(resolver: Resolver, key: SchemaKey, data: Any) -> Message | None:
    """The IgluError message for ``data`` against ``key``'s schema, or None."""
    try:
        fast = resolver.fast_check(key)
        if fast is not None and fast_says_valid(fast, data):
            return None  # the common case, without building any report
        validator = resolver.validator(key)
        reports = data_reports(validator, data)
    except ResolutionError as exc:
        return {"schemaKey": str(key), "error": exc.to_json()}
    except InvalidSchemaError as exc:
        return {
            "schemaKey": str(key),
            "error": {"error": "ValidationError", "schemaIssues": exc.issues},
        }
    if not reports:
        return None
    return {
        "schemaKey": str(key),
        "error": {
            "error": "ValidationError",
            "dataReports": [report.to_json() for report in reports],
        },
    }


def not_iglu(instance: Any) -> Message | None:
    """The NotIglu message when ``instance`` is not ``{schema, data}`` with an
    Iglu URI, else None."""
    if not isinstance(instance, dict):
        return {"json": instance, "error": "INVALID_DATA_PAYLOAD"}
    schema = instance.get("schema")
    if not isinstance(schema, str):
        return {"json": instance, "error": "INVALID_SCHEMA"}
    try:
        SchemaKey.parse(schema)
    except IgluSyntaxError as exc:
        return {"json": instance, "error": exc.code}
    if "data" not in instance:
        return {"json": instance, "error": "INVALID_DATA_PAYLOAD"}
    return None


def check_self_describing(resolver: Resolver, instance: Any) -> Message | None:
    """The failure message of a self-describing ``instance``, or None."""
    uri = instance.get("schema") if isinstance(instance, dict) else None
    data_json = None
    if isinstance(uri, str) and "data" in instance:
        data_json = _json_text(instance["data"])
        if data_json is not None and resolver.known_valid(uri, data_json):
            return None  # the same data was valid against this schema before
    problem = not_iglu(instance)
    if problem is not None:
        return problem
    key = SchemaKey.parse(instance["schema"])
    problem = check(resolver, key, instance["data"])
    if problem is None and data_json is not None and isinstance(uri, str):
        resolver.remember_valid(uri, data_json, key)
    return problem


def _json_text(data: Any) -> bytes | None:
    try:
        return orjson.dumps(data)
    except TypeError:  # not JSON data (orjson's JSONEncodeError included)
        return None


def is_unreachable(message: Message) -> bool:
    """Whether a message says a registry could not answer (rather than that
    the schema does not exist or the data is wrong): the event can be replayed."""
    error = message.get("error")
    if not isinstance(error, dict) or error.get("error") != "ResolutionError":
        return False
    return any(
        failure.get("error") != "NotFound"
        for entry in error.get("lookupHistory", [])
        for failure in entry.get("errors", [])
    )


def any_unreachable(messages: Iterable[Message]) -> bool:
    return any(is_unreachable(message) for message in messages)


__all__ = [
    "RegistryUnreachableError",
    "any_unreachable",
    "check",
    "check_self_describing",
    "is_unreachable",
    "not_iglu",
]
