"""Enrich's validation of contexts and self-describing events (spec 4.2)."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from iglu_registry import (
    DATA,
    FIXTURE_SCHEMAS,
    IGLU_CENTRAL,
    closed_port,
    require_shared,
)

from fixture_traffic import all_captured_requests, record_from_capture
from plowline.enrich.failed import FailedEvent
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.enrich.validation import (
    registry_unreachable,
    validate_derived_contexts,
    validate_entities,
)
from plowline.iglu import HttpRepository, LocalRepository, Resolver, SchemaKey
from plowline.rawlog.record import RawRecord

CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CLICK = "iglu:com.acme/click/jsonschema/1-0-0"


@pytest.fixture(scope="module")
def resolver() -> Resolver:
    return Resolver([LocalRepository("A", 0, (), root=DATA / "local_a")])


def contexts(*entities: Any, schema: str = CONTEXTS) -> str:
    return orjson.dumps({"schema": schema, "data": list(entities)}).decode()


def unstruct(inner: Any, schema: str = UNSTRUCT) -> str:
    return orjson.dumps({"schema": schema, "data": inner}).decode()


def test_valid_entities_give_no_messages(resolver: Resolver) -> None:
    good = {"schema": CLICK, "data": {"target": "a"}}
    assert validate_entities(resolver, contexts(good, good), unstruct(good)) == []
    assert validate_entities(resolver, None, None) == []


def test_each_bad_context_gives_one_message(resolver: Resolver) -> None:
    good = {"schema": CLICK, "data": {"target": "a"}}
    bad = {"schema": CLICK, "data": {"target": 5}}
    missing = {"schema": "iglu:com.acme/unknown/jsonschema/1-0-0", "data": {}}
    messages = validate_entities(resolver, contexts(good, bad, missing), None)
    assert [m["schemaKey"] for m in messages] == [CLICK, missing["schema"]]
    assert messages[0]["error"]["dataReports"][0]["path"] == "$.target"
    assert messages[1]["error"]["error"] == "ResolutionError"
    assert not registry_unreachable(messages)


def test_unstruct_inner_data_is_validated(resolver: Resolver) -> None:
    inner = {"schema": CLICK, "data": {"target": "a", "colour": "red"}}
    [message] = validate_entities(resolver, None, unstruct(inner))
    assert message["schemaKey"] == CLICK
    [report] = message["error"]["dataReports"]
    assert (report["keyword"], report["targets"]) == (
        "additionalProperties",
        ["colour"],
    )


def test_wrong_wrapper_is_criterion_mismatch(resolver: Resolver) -> None:
    wrapper = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/2-0-0"
    inner = {"schema": CLICK, "data": {"target": "a"}}
    assert validate_entities(resolver, contexts(inner, schema=wrapper), None) == [
        {
            "schemaKey": wrapper,
            "schemaCriterion": "iglu:com.snowplowanalytics.snowplow/contexts/"
            "jsonschema/1-0-*",
        }
    ]
    [message] = validate_entities(resolver, None, unstruct(inner, schema=CONTEXTS))
    assert message["schemaCriterion"].endswith("/unstruct_event/jsonschema/1-0-*")


def test_wrapper_schema_itself_is_enforced(resolver: Resolver) -> None:
    empty_v100 = contexts(schema=CONTEXTS.replace("1-0-1", "1-0-0"))
    [message] = validate_entities(resolver, empty_v100, None)
    assert message["schemaKey"].endswith("/contexts/jsonschema/1-0-0")
    assert message["error"]["dataReports"][0]["keyword"] == "minItems"

    extra = {"schema": CLICK, "data": {"target": "a"}, "more": 1}
    [message] = validate_entities(resolver, None, unstruct(extra))
    assert message["schemaKey"] == UNSTRUCT
    assert message["error"]["dataReports"][0]["targets"] == ["more"]


def test_not_json_and_not_iglu_are_reported(resolver: Resolver) -> None:
    [not_json] = validate_entities(resolver, "{oops", None)
    assert (not_json["field"], not_json["value"]) == ("contexts", "{oops")
    assert not_json["error"]
    [not_iglu] = validate_entities(resolver, None, '{"data": {}}')
    assert not_iglu == {"json": {"data": {}}, "error": "INVALID_SCHEMA"}


def test_parsed_wrappers_are_accepted(resolver: Resolver) -> None:
    wrapper = {"schema": UNSTRUCT, "data": {"schema": CLICK, "data": {}}}
    [message] = validate_entities(resolver, None, wrapper)
    assert message["error"]["dataReports"][0]["targets"] == ["target"]


def test_derived_contexts_are_validated(resolver: Resolver) -> None:
    derived = [
        {"schema": CLICK, "data": {"target": "a"}},
        {"schema": CLICK, "data": {}},
    ]
    [message] = validate_derived_contexts(resolver, derived)
    assert message["error"]["dataReports"][0]["message"] == (
        "$.target: is missing but required"
    )


def test_unreachable_registry_marks_messages_for_replay() -> None:
    down = HttpRepository("Down", 0, (), uri=f"http://127.0.0.1:{closed_port()}")
    resolver = Resolver([down])
    messages = validate_entities(
        resolver, contexts({"schema": CLICK, "data": {"target": "a"}}), None
    )
    assert registry_unreachable(messages)
    [entry] = [
        e for e in messages[0]["error"]["lookupHistory"] if e["repository"] == "Down"
    ]
    assert entry["errors"][0]["error"] == "RepoFailure"
    assert "registry unreachable" in entry["errors"][0]["message"]


class CountingRepository(LocalRepository):
    """A local folder that remembers how often each schema was read."""

    def lookup(self, key: SchemaKey) -> dict[str, Any]:
        self.reads: Counter[str] = getattr(self, "reads", Counter())
        self.reads[str(key)] += 1
        return super().lookup(key)


def test_captured_traffic_validates_against_real_schemas() -> None:
    central = CountingRepository(
        "Iglu Central", 1, (), root=require_shared(IGLU_CENTRAL)
    )
    acceptance = CountingRepository(
        "Acceptance", 5, ("com.example",), root=require_shared(FIXTURE_SCHEMAS)
    )
    resolver = Resolver([central, acceptance])
    checked = 0
    for request in all_captured_requests():
        if request["method"] == "OPTIONS":
            continue
        for outcome in Enricher().enrich_record(record_from_capture(request)):
            assert isinstance(outcome, EnrichedEvent)
            messages = validate_entities(
                resolver, outcome["contexts"], outcome["unstruct_event"]
            )
            assert messages == [], (request["seq"], messages)
            checked += bool(outcome["contexts"] or outcome["unstruct_event"])

    assert checked == 78
    assert set(acceptance.reads) == {
        "iglu:com.example.acceptance/button_press/jsonschema/1-0-0",
        "iglu:com.example.acceptance/page_context/jsonschema/1-0-0",
        "iglu:com.example.acceptance/user_context/jsonschema/1-0-0",
    }
    assert "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0" in (
        central.reads
    )
    # Each schema read once, however many events used it; the wrappers come
    # from Plowline's embedded set.
    assert set(acceptance.reads.values()) == {1}
    assert set(central.reads.values()) == {1}
    assert len(central.reads) == 11


def test_pipeline_validates_what_it_wrote(resolver: Resolver) -> None:
    # The pipeline checks the documents it wrote the columns from: a bad
    # context and a bad event fail with the messages their text would give,
    # each time (valid data is remembered; invalid data never is).
    good = {"schema": CLICK, "data": {"target": "a", "count": 1}}
    bad = {"schema": CLICK, "data": {"target": "far too long a target"}}
    enricher = Enricher(resolver=resolver, clock=lambda: 1_796_398_151.0)

    def enrich(cx: Any, ue: Any) -> Any:
        query = "e=ue&p=web&tv=t-1&ue_pr=" + quote(unstruct(ue))
        query += "&co=" + quote(contexts(*cx))
        record = RawRecord(
            id="r", tstamp=1_796_398_150_000, collector="c", method="GET",
            path="/i", querystring=query.encode(),
        )  # fmt: skip
        [outcome] = enricher.enrich_record(record)
        return outcome

    for _ in range(2):
        assert isinstance(enrich([good, good], good), EnrichedEvent)
        failed = enrich([good, bad], bad)
        assert isinstance(failed, FailedEvent)
        assert failed.type == "schema_violations"
        expected = validate_entities(resolver, contexts(good, bad), unstruct(bad))
        assert failed.failure["messages"] == expected
        assert [m["error"]["dataReports"][0]["path"] for m in expected] == [
            "$.target",
            "$.target",
        ]
