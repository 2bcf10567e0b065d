"""Schema validation of an event's contexts and self-describing event (spec 4.2).

Each wrapper is first held to its criterion (contexts 1-0-*, unstruct_event
1-0-*), then its data is checked against the wrapper's schema, then every
entity inside against its own schema. What fails becomes one message of a
``schema_violations`` failed event, in the shapes Snowplow uses: NotJson,
NotIglu, CriterionMismatch and IgluError (see ``plowline.iglu.validation``).

An IgluError whose lookup history holds a RepoFailure or ClientFailure means a
registry could not answer: ``registry_unreachable`` tells the caller so, and
such an event is worth replaying once the registry is back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from plowline.enrich.failed import Message
from plowline.iglu.core import SchemaCriterion, SchemaKey
from plowline.iglu.resolver import Resolver
from plowline.iglu.validation import (
    any_unreachable,
    check,
    check_self_describing,
    not_iglu,
)

CONTEXTS = SchemaCriterion.parse(
    "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-*"
)
UNSTRUCT_EVENT = SchemaCriterion.parse(
    "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-*"
)

UNSTRUCT_EVENT_1_0_0 = (
    "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
)
CONTEXTS_MIN_ITEMS = {
    "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0": 1,
    "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1": 0,
}
_ENTITY_URI_RE = re.compile(
    r"iglu:[a-zA-Z0-9\-_.]+/[a-zA-Z0-9\-_]+/[a-zA-Z0-9\-_]+/[0-9]+-[0-9]+-[0-9]+"
)

Json = str | bytes | Mapping[str, Any] | None


def validate_entities(
    resolver: Resolver, contexts: Json, unstruct_event: Json
) -> list[Message]:
    """The schema-violation messages of an event's ``contexts`` and
    ``unstruct_event`` columns (JSON text as enriched, or parsed); empty when
    both are absent or valid."""
    messages: list[Message] = []
    if contexts is not None:
        messages.extend(_validate_contexts(resolver, contexts))
    if unstruct_event is not None:
        messages.extend(_validate_unstruct(resolver, unstruct_event))
    return messages


def validate_derived_contexts(
    resolver: Resolver, entities: Iterable[Any]
) -> list[Message]:
    """The messages of entities that enrichments derived (each ``{schema, data}``)."""
    messages: list[Message] = []
    for entity in entities:
        problem = check_self_describing(resolver, entity)
        if problem is not None:
            messages.append(problem)
    return messages


def registry_unreachable(messages: Iterable[Message]) -> bool:
    """Whether any message is a schema that could not be looked up because a
    registry failed to answer: the failed event should be replayed later."""
    return any_unreachable(messages)


def _validate_contexts(resolver: Resolver, value: Json) -> list[Message]:
    wrapper, problem = _wrapper(resolver, value, "contexts", CONTEXTS)
    if problem is not None:
        return [problem]
    assert wrapper is not None
    messages: list[Message] = []
    for entity in wrapper["data"]:
        problem = check_self_describing(resolver, entity)
        if problem is not None:
            messages.append(problem)
    return messages


def _validate_unstruct(resolver: Resolver, value: Json) -> list[Message]:
    wrapper, problem = _wrapper(resolver, value, "unstruct", UNSTRUCT_EVENT)
    if problem is not None:
        return [problem]
    assert wrapper is not None
    problem = check_self_describing(resolver, wrapper["data"])
    return [] if problem is None else [problem]


def _wrapper(
    resolver: Resolver, value: Json, field: str, criterion: SchemaCriterion
) -> tuple[dict[str, Any] | None, Message | None]:
    """The parsed wrapper, or the one message that stops its entities from
    being checked (their place in it is unknown)."""
    if isinstance(value, str | bytes):
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            return None, {"field": field, "value": text, "error": str(exc)}
    else:
        document = dict(value) if isinstance(value, Mapping) else value

    problem = not_iglu(document)
    if problem is not None:
        return None, problem
    key = SchemaKey.parse(document["schema"])
    if not criterion.matches(key):
        return None, {"schemaKey": str(key), "schemaCriterion": str(criterion)}
    if not _plainly_valid(key, document["data"]):
        problem = check(resolver, key, document["data"])
        if problem is not None:
            return None, problem
    return document, None


def _plainly_valid(key: SchemaKey, data: Any) -> bool:
    """A quick check, stricter than the wrapper schemas, for the common case.

    JSON Schema validation costs tens of microseconds per document; the
    wrappers' schemas are fixed (Iglu schemas never change once published), so
    data passing this check passes them, and anything else gets the full check
    and its reports.
    """
    text = str(key)
    if text == UNSTRUCT_EVENT_1_0_0:
        return _plain_entity(data)
    if text in CONTEXTS_MIN_ITEMS:
        return (
            isinstance(data, list)
            and len(data) >= CONTEXTS_MIN_ITEMS[text]
            and all(_plain_entity(entity) for entity in data)
        )
    return False


def _plain_entity(entity: Any) -> bool:
    return (
        isinstance(entity, dict)
        and len(entity) == 2
        and "data" in entity
        and isinstance(entity.get("schema"), str)
        and _ENTITY_URI_RE.fullmatch(entity["schema"]) is not None
    )
