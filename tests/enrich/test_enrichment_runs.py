"""How the pipeline runs configured enrichments: in order, all of them, their
contexts in ``derived_contexts``, their failures named, their extra events out."""

from __future__ import annotations

import uuid

import orjson

from plowline.enrich.enrichments.base import (
    Enrichment,
    EnrichmentError,
    EnrichmentInput,
    Event,
)
from plowline.enrich.failed import FailedEvent
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.rawlog.record import RawRecord


def record(query: str) -> RawRecord:
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=1796398150600,
        collector="plowline-test",
        method="GET",
        path="/i",
        querystring=query.encode(),
        ip="198.51.100.7",
        useragent="agent/1.0",
    )


class Tagging(Enrichment):
    """Appends its tag to app_id and derives a context naming what it saw."""

    name = "tagging"

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        event["app_id"] = (event.get("app_id") or "") + self.tag
        inp.derived_contexts.append(
            {
                "schema": "iglu:com.example/tag/jsonschema/1-0-0",
                "data": {"tag": self.tag, "app_id": event["app_id"]},
            }
        )


class Refusing(Enrichment):
    name = "refusing"

    def __init__(self, field: str) -> None:
        self.field = field

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        raise EnrichmentError.for_field(self.field, event.get(self.field), "not this")


class Quiet(Enrichment):
    name = "quiet"

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        event["user_id"] = "seen"


class Emitting(Enrichment):
    name = "emitting"

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        inp.extra_events.append({**event, "event": "emitted", "event_id": "e2"})


def enrich(query: str, *enrichments: Enrichment) -> list:
    return Enricher(enrichments=enrichments).enrich_record(record(query))


def test_enrichments_run_in_the_given_order_and_their_contexts_are_kept() -> None:
    [event] = enrich("e=pv&p=web&aid=shop", Tagging("-a"), Tagging("-b"))
    assert isinstance(event, EnrichedEvent)
    assert event["app_id"] == "shop-a-b"
    derived = orjson.loads(event["derived_contexts"] or "")
    assert derived["schema"] == (
        "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
    )
    assert [c["data"] for c in derived["data"]] == [
        {"tag": "-a", "app_id": "shop-a"},
        {"tag": "-b", "app_id": "shop-a-b"},
    ]
    assert event.to_tsv().split("\t")[122] == event["derived_contexts"]


def test_no_derived_context_leaves_the_column_empty() -> None:
    [plain] = enrich("e=pv&p=web&aid=shop", Quiet())
    assert isinstance(plain, EnrichedEvent)
    assert plain["user_id"] == "seen"
    assert plain["derived_contexts"] is None


def test_every_failing_enrichment_is_named_and_the_others_still_run() -> None:
    [failed] = enrich(
        "e=pv&p=web&aid=shop&uid=u1",
        Refusing("app_id"),
        Tagging("-t"),
        Refusing("user_id"),
    )
    assert isinstance(failed, FailedEvent)
    document = orjson.loads(failed.to_json())
    assert document["schema"].startswith(
        "iglu:com.snowplowanalytics.snowplow.badrows/enrichment_failures/"
    )
    messages = document["data"]["failure"]["messages"]
    assert [(m["message"]["field"], m["message"]["value"]) for m in messages] == [
        ("app_id", "shop"),
        ("user_id", "u1"),
    ]
    # Enrichments built here came from no configuration file: no schema key.
    assert [m["enrichment"] for m in messages] == [None, None]
    # The raw input travels with it, ready to replay.
    params = {
        p["name"]: p["value"] for p in document["data"]["payload"]["raw"]["parameters"]
    }
    assert params["aid"] == "shop"


def test_emitted_events_follow_their_event_and_not_a_failed_one() -> None:
    outcomes = enrich("e=pv&p=web&aid=shop", Emitting())
    assert [type(o).__name__ for o in outcomes] == ["EnrichedEvent", "EnrichedEvent"]
    assert outcomes[1]["event"] == "emitted"
    assert outcomes[1]["app_id"] == "shop"
    [failed] = enrich("e=pv&p=web&aid=shop", Emitting(), Refusing("aid"))
    assert isinstance(failed, FailedEvent)


def test_events_sent_without_an_id_get_distinct_random_uuids() -> None:
    ids = [enrich("e=pv&p=web")[0]["event_id"] for _ in range(300)]
    assert len(set(ids)) == 300
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (
            text,
            4,
            uuid.RFC_4122,
        )
