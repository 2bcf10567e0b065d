"""examples/enrichments: valid Snowplow-format files, and every enrichment in
them working on one event once all are switched on."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import orjson
import pytest

from fixture_traffic import REPO, SHARED
from plowline.enrich.enrichments.config import load_enrichments
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.iglu.repositories import LocalRepository
from plowline.iglu.resolver import Resolver
from plowline.rawlog.record import RawRecord

EXAMPLES = REPO / "examples" / "enrichments"
IGLU_CENTRAL = SHARED / "data" / "iglu-central"


def iglu_central() -> Resolver:
    if not IGLU_CENTRAL.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{IGLU_CENTRAL} is missing")
        pytest.skip(f"needs Iglu Central's schemas in {IGLU_CENTRAL}")
    return Resolver([LocalRepository("Iglu Central", priority=1, root=IGLU_CENTRAL)])


def all_enabled(folder: Path) -> Path:
    shutil.copytree(EXAMPLES, folder, dirs_exist_ok=True)
    for path in folder.glob("*.json"):
        document = json.loads(path.read_text())
        document["data"]["enabled"] = True
        path.write_text(json.dumps(document))
    return folder


def test_examples_are_valid_and_load_in_snowplows_order() -> None:
    names = [e.name for e in load_enrichments(EXAMPLES, iglu_central())]
    assert names == [
        "ua_parser_config",
        "referer_parser",
        "campaign_attribution",
        "cross_navigation_config",
        "event_fingerprint_config",
        "ip_lookups",
        "bot_detection_config",
        "anon_ip",
    ]


def test_every_enrichment_works_on_one_event(tmp_path: Path) -> None:
    enrichments = load_enrichments(all_enabled(tmp_path), iglu_central())
    assert len(enrichments) == len(list(EXAMPLES.glob("*.json")))
    record = RawRecord(
        id=str(uuid.uuid4()),
        tstamp=1796398150600,  # 2026-12-04: the example rates are of the 3rd
        collector="plowline-test",
        method="GET",
        path="/i",
        querystring=(
            b"e=tr&p=web&tv=t&aid=shop&uid=someone&tr_id=o1&tr_tt=100&tr_cu=USD"
            b"&url=https%3A%2F%2Fshop.example%2Fshoes%2Fred%3Futm_source%3Dnews"
            b"&refr=https%3A%2F%2Fwww.google.com%2Fsearch%3Fq%3Dred%2Bshoes"
        ),
        headers=(("Cookie", "_ga=GA1.2.3"), ("Accept-Language", "en-GB")),
        ip="8.8.8.8",
        useragent="Mozilla/5.0 (compatible; Googlebot/2.1; "
        "+http://www.google.com/bot.html)",
    )
    [event, *emitted] = Enricher(enrichments=enrichments).enrich_record(record)
    assert isinstance(event, EnrichedEvent)
    assert emitted == []  # the example PII file does not emit its event
    assert event["geo_country"] == "US"  # the GeoLite2 file, before anonymising
    assert event["user_ipaddress"] == "8.8.8.x"
    assert (event["refr_medium"], event["refr_source"], event["refr_term"]) == (
        "search",
        "Google",
        "red shoes",
    )
    assert event["mkt_source"] == "news"
    assert event["tr_total_base"] == "95.00"
    assert event["base_currency"] == "EUR"
    assert event["br_family"] == "Robot/Spider"
    assert event["user_id"] is not None and len(event["user_id"]) == 64  # SHA-256
    assert event["event_fingerprint"] is not None
    contexts = orjson.loads(event["derived_contexts"] or "")["data"]
    by_schema = {c["schema"].split("/")[1]: c["data"] for c in contexts}
    assert by_schema["ua_parser_context"]["useragentFamily"] == "Googlebot"
    assert by_schema["http_cookie"] == {"name": "_ga", "value": "GA1.2.3"}
    assert by_schema["http_header"] == {"name": "Accept-Language", "value": "en-GB"}
    assert by_schema["bot_detection"]["bot"] is True
    assert by_schema["site_section"] == {"section": "shoes"}
