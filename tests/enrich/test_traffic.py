"""Enrichment of the requests captured from the official Snowplow trackers."""

from __future__ import annotations

import json

import pytest
from snowplow_analytics_sdk.event_transformer import transform

from fixture_traffic import EVENTS_PER_FILE, captured_requests, record_from_capture
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from traffic_expectations import (
    BUTTON_PRESS,
    check_js_tracker,
    check_python_tracker,
    event_from_tsv,
)


def enrich_capture(name: str) -> list[EnrichedEvent]:
    enricher = Enricher()
    events: list[EnrichedEvent] = []
    for request in captured_requests(name):
        if request["method"] == "OPTIONS":
            continue
        for outcome in enricher.enrich_record(record_from_capture(request)):
            assert isinstance(outcome, EnrichedEvent), outcome.reason
            events.append(outcome)
    return events


@pytest.mark.parametrize("name", sorted(EVENTS_PER_FILE))
def test_every_captured_event_is_enriched_once(name: str) -> None:
    events = enrich_capture(name)
    assert len(events) == EVENTS_PER_FILE[name]
    assert len({e["event_id"] for e in events}) == len(events)


def test_python_tracker_values_survive_enrichment() -> None:
    events = [
        event_from_tsv(e.to_tsv()) for e in enrich_capture("python_tracker.jsonl")
    ]
    check_python_tracker(events)


@pytest.mark.parametrize("method", ["get", "post"])
def test_js_tracker_values_survive_enrichment(method: str) -> None:
    events = enrich_capture(f"js_tracker_{method}.jsonl")
    check_js_tracker([event_from_tsv(e.to_tsv()) for e in events], method)


def test_analytics_sdk_reads_every_enriched_event() -> None:
    lines = [e.to_tsv() for name in EVENTS_PER_FILE for e in enrich_capture(name)]
    documents = [transform(line) for line in lines]
    assert len(documents) == 98

    buttons = [
        d
        for d in documents
        if "unstruct_event_com_example_acceptance_button_press_1" in d
    ]
    assert len(buttons) == 4 + 2
    for document in buttons:
        assert (
            document["unstruct_event_com_example_acceptance_button_press_1"]
            == BUTTON_PRESS
        )
        assert document["contexts_com_example_acceptance_user_context_1"] == [
            {"tier": "gold", "loggedIn": True, "score": 9.5}
        ]
    transactions = [d for d in documents if d["event"] == "transaction"]
    assert (
        sorted(d["tr_orderid"] for d in transactions)
        == ["order-js-2001", "order-js-2001"] + ["order-py-1001"] * 4
    )
    assert {d["tr_total"] for d in transactions} == {59.97}
    page_views = [d for d in documents if d["event"] == "page_view"]
    assert all(d["collector_tstamp"].endswith("Z") for d in page_views)
    assert {d["page_urlport"] for d in page_views} == {80, 8000}
    # The SDK's own JSON must be serialisable and keep the unicode text.
    assert "Café ✓" in json.dumps(buttons[0], ensure_ascii=False)
