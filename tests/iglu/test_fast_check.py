"""The fast yes/no check (fastjsonschema) and the jsonschema validator that
writes the reports must agree on every instance: the fast one decides the
common case, so a disagreement would let an invalid entity through."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iglu_registry import FIXTURE_SCHEMAS, IGLU_CENTRAL, require_shared

from fixture_traffic import all_captured_requests, record_from_capture
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.iglu import LocalRepository, Resolver, SchemaKey
from plowline.iglu.draft4 import data_reports, fast_says_valid

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        ["2026-12-04T10:00:00Z", "not-a-date", "https://a.example/x", "::1", ""]
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def captured_entities() -> list[dict[str, Any]]:
    entities = []
    for request in all_captured_requests():
        if request["method"] == "OPTIONS":
            continue
        for outcome in Enricher().enrich_record(record_from_capture(request)):
            assert isinstance(outcome, EnrichedEvent)
            if outcome["contexts"]:
                entities += orjson.loads(outcome["contexts"])["data"]
            if outcome["unstruct_event"]:
                entities.append(orjson.loads(outcome["unstruct_event"])["data"])
    return entities


@pytest.fixture(scope="module")
def setup() -> tuple[Resolver, list[dict[str, Any]]]:
    resolver = Resolver(
        [
            LocalRepository("Iglu Central", 1, root=require_shared(IGLU_CENTRAL)),
            LocalRepository("Acceptance", 2, root=require_shared(FIXTURE_SCHEMAS)),
        ]
    )
    return resolver, captured_entities()


def agree(resolver: Resolver, entity: dict[str, Any]) -> None:
    key = SchemaKey.parse(entity["schema"])
    fast = resolver.fast_check(key)
    assert fast is not None, f"fastjsonschema cannot compile {key}"
    slow = data_reports(resolver.validator(key), entity["data"])
    assert fast_says_valid(fast, entity["data"]) == (not slow), (key, slow)


def test_captured_entities_are_valid_to_both(
    setup: tuple[Resolver, list[dict[str, Any]]],
) -> None:
    resolver, entities = setup
    assert len(entities) > 50
    for entity in entities:
        agree(resolver, entity)
        key = SchemaKey.parse(entity["schema"])
        fast = resolver.fast_check(key)
        assert fast is not None and fast_says_valid(fast, entity["data"])


def mutate(data: Any, choice: int, value: Any) -> Any:
    """``data`` with one of its leaves or members replaced, removed or added."""
    data = copy.deepcopy(data)
    if not isinstance(data, dict) or not data:
        return value
    keys = sorted(data)
    key = keys[choice % len(keys)]
    if choice % 3 == 0:
        del data[key]
    elif choice % 3 == 1:
        data[key] = value
    else:
        data[f"extra{choice}"] = value
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(0, 1_000), JSON_VALUES)
def test_mutated_entities_get_the_same_verdict(
    setup: tuple[Resolver, list[dict[str, Any]]],
    which: int,
    choice: int,
    value: Any,
) -> None:
    resolver, entities = setup
    entity = entities[which % len(entities)]
    agree(resolver, {**entity, "data": mutate(entity["data"], choice, value)})
