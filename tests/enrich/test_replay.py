"""``plowline replay``: failed events enriched again from the input they carry."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import orjson

from plowline.enrich.enrichments.base import Enrichment, EnrichmentInput, Event
from plowline.enrich.failed import FailedEvent
from plowline.enrich.pipeline import EnrichedEvent, Enricher, Outcome
from plowline.enrich.replay import replay_failed
from plowline.rawlog.record import RawRecord

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def record(query: str = "", body: bytes | None = None, path: str = "/i") -> RawRecord:
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=1796398150600,
        collector="plowline-test",
        method="POST" if body else "GET",
        path=path,
        querystring=query.encode() or None,
        body=body,
        content_type="application/json" if body else None,
        ip="198.51.100.7",
        useragent="agent/1.0",
        network_userid="c5f3a09f-75f8-4309-bec5-fea560f78455",
    )


def failed_document(outcome: Outcome) -> dict:
    assert isinstance(outcome, FailedEvent)
    document: dict = orjson.loads(outcome.to_json())
    return document


def test_fixed_schema_violation_replays_with_its_first_event_id() -> None:
    [first] = Enricher().enrich_record(record("e=pv&p=web&tv=t&aid=shop&vid=a"))
    document = failed_document(first)
    first_id = document["data"]["payload"]["enriched"]["event_id"]
    # A person fixes the bad value in the failed event, then replays it.
    for parameter in document["data"]["payload"]["raw"]["parameters"]:
        if parameter["name"] == "vid":
            parameter["value"] = "3"

    [again] = replay_failed(document, Enricher())
    assert isinstance(again, EnrichedEvent)
    assert again["event_id"] == first_id
    assert (again["app_id"], again["domain_sessionidx"]) == ("shop", "3")
    assert again["collector_tstamp"] == "2026-12-04 15:29:10.600"
    assert (again["user_ipaddress"], again["useragent"]) == (
        "198.51.100.7",
        "agent/1.0",
    )
    assert again["network_userid"] == "c5f3a09f-75f8-4309-bec5-fea560f78455"


def test_unfixed_event_fails_again_the_same_way() -> None:
    [first] = Enricher().enrich_record(record("e=zz&p=web&tv=t"))
    [again] = replay_failed(failed_document(first), Enricher())
    assert isinstance(again, FailedEvent)
    assert (
        again.failure["messages"]
        == failed_document(first)["data"]["failure"]["messages"]
    )


class FaultyEnrichment(Enrichment):
    """Fails on structured events, as a bug in an enrichment might."""

    name = "faulty"

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        if event.get("event") == "struct":
            raise RuntimeError("bug in an enrichment")


def FaultyEnricher() -> Enricher:
    return Enricher(enrichments=[FaultyEnrichment()])


def test_events_hit_by_a_fault_replay_once_it_is_fixed() -> None:
    body = orjson.dumps(
        {
            "schema": PAYLOAD_DATA,
            "data": [
                {
                    "e": "pv",
                    "p": "web",
                    "tv": "t",
                    "eid": "11111111-1111-4111-8111-111111111111",
                },
                {
                    "e": "se",
                    "p": "web",
                    "tv": "t",
                    "se_ca": "c",
                    "se_ac": "a",
                    "eid": "22222222-2222-4222-8222-222222222222",
                },
            ],
        }
    )
    first = FaultyEnricher().enrich_record(record(body=body, path=TP2))
    assert [type(o).__name__ for o in first] == ["EnrichedEvent", "FailedEvent"]
    assert isinstance(first[1], FailedEvent) and first[1].type == "generic_error"

    again = replay_failed(failed_document(first[1]), Enricher())
    # The whole request is replayed: the loader's de-duplication by event id
    # (issue 6) keeps the page view from loading twice.
    assert sorted(e["event_id"] for e in again if isinstance(e, EnrichedEvent)) == [
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
    ]


def test_bad_batch_item_replays_alone_after_a_fix() -> None:
    body = orjson.dumps(
        {
            "schema": PAYLOAD_DATA,
            "data": [
                {"e": "pv", "p": "web", "tv": "t"},
                {"e": "se", "p": "web", "tv": "t", "se_ca": "c", "se_ac": 5},
            ],
        }
    )
    outcomes = Enricher().enrich_record(record(body=body, path=TP2))
    document = failed_document(outcomes[1])
    raw_record = document["data"]["payload"]["rawRecord"]
    batch = orjson.loads(raw_record["body"])
    batch["data"][0]["se_ac"] = "5"
    raw_record["body"] = orjson.dumps(batch).decode()

    [again] = replay_failed(document, Enricher())
    assert isinstance(again, EnrichedEvent)
    assert (again["event"], again["se_action"]) == ("struct", "5")


def test_replay_command(tmp_path: Path) -> None:
    failed = [
        Enricher().enrich_record(record("e=pv&p=web&tv=t&aid=replayed"))[0],
        Enricher().enrich_record(record("e=zz&p=web&tv=t"))[0],
        Enricher().enrich_line(b"not a record")[0],
    ]
    # The first is fine today: it stands for an event that failed on a
    # configuration since fixed.
    first = failed_document(failed[1])
    first["data"]["payload"]["raw"]["parameters"][0]["value"] = "pv"
    lines = [orjson.dumps(first)] + [
        o.to_json() for o in failed[1:] if isinstance(o, FailedEvent)
    ]
    (tmp_path / "failed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "plowline",
            "replay",
            "--good",
            "good.tsv",
            "--bad",
            "bad.jsonl",
            "failed.jsonl",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Replayed 3 failed events: 1 enriched events, 2 failed again." in done.stderr
    assert len((tmp_path / "good.tsv").read_text().splitlines()) == 1
    assert len((tmp_path / "bad.jsonl").read_text().splitlines()) == 2
