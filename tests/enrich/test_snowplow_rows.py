"""Whole enriched rows from Snowplow's Spark Enrich tests (snowplow_cases.jsonl),
from the CloudFront and Clojure-collector lines they start from.

Those rows were made with configurable enrichments on (geo-IP, user-agent
parsing, referer and campaign attribution, PII hashing, fingerprint, currency):
the fields those set (``ENRICHMENT_FIELDS``) are checked with the enrichments
themselves; every other field here. ``NOT_YET`` lists skipped cases with why.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fixture_traffic import SHARED
from plowline.enrich.failed import FailedEvent
from plowline.enrich.fields import FIELD_NAMES
from plowline.enrich.loaders import loader_for
from plowline.enrich.pipeline import EnrichedEvent, Enricher

CASES_FILE = SHARED / "fixtures" / "snowplow_cases.jsonl"
ENRICHMENT_FIELDS = frozenset(
    {
        "geo_country", "geo_region", "geo_city", "geo_zipcode", "geo_latitude",
        "geo_longitude", "geo_region_name", "geo_timezone", "ip_isp", "ip_organization",
        "ip_domain", "ip_netspeed", "br_name", "br_family", "br_version", "br_type",
        "br_renderengine", "os_name", "os_family", "os_manufacturer", "dvce_type",
        "dvce_ismobile", "refr_medium", "refr_source", "refr_term", "mkt_medium",
        "mkt_source", "mkt_term", "mkt_content", "mkt_campaign", "mkt_clickid",
        "mkt_network", "user_ipaddress", "user_id", "event_fingerprint",
        "derived_contexts", "tr_total_base", "tr_tax_base", "tr_shipping_base",
        "ti_price_base", "base_currency",
    }
)  # fmt: skip
# Differ by design: the run's clock and version, and a random id when none is sent.
RUN_FIELDS = frozenset({"etl_tstamp", "v_etl", "event_id"})
# Snowplow's 2019 enrich kept txn_id as sent ("028288"); current Snowplow enrich
# and Plowline store the integer.
LEGACY_FIELDS = frozenset({"txn_id"})
WEBHOOK = "the {} webhook adapter is not built yet (only the Iglu webhook is)"
NOT_YET = {
    "S008": WEBHOOK.format("Mailgun"),
    "S009": WEBHOOK.format("Mailgun"),
    "S010": WEBHOOK.format("Mandrill"),
    "S012": WEBHOOK.format("Olark"),
    "S013": WEBHOOK.format("PagerDuty"),
    "S014": WEBHOOK.format("Pingdom"),
    "S015": WEBHOOK.format("SendGrid"),
    "S016": WEBHOOK.format("StatusGator"),
    "S022": WEBHOOK.format("Unbounce"),
}


def load_cases() -> list[Any]:
    if not CASES_FILE.is_file():
        return []
    cases = [json.loads(line) for line in CASES_FILE.read_text("utf-8").splitlines()]
    return [
        pytest.param(
            case,
            id=case["id"],
            marks=[pytest.mark.skip(reason=NOT_YET[case["id"]])]
            if case["id"] in NOT_YET
            else [],
        )
        for case in cases
        if case["input_format"] in ("cloudfront", "clj-tomcat")
    ]


CASES = load_cases()


def enrich(case: dict[str, Any]) -> list[EnrichedEvent | FailedEvent]:
    loader = loader_for(case["input_format"])
    return Enricher().enrich_line(
        case["input"].encode(), loader=loader, loader_name=case["input_format"]
    )


def same_json(expected: str, got: str | None, name: str) -> bool:
    if got is None:
        return False
    want, have = json.loads(expected), json.loads(got)
    if name == "contexts":
        # Snowplow's 2019 enrich copied the tracker's envelope (contexts 1-0-0,
        # keys in its order); current enrich and Plowline re-wrap the entities.
        return sorted(json.dumps(e, sort_keys=True) for e in want["data"]) == sorted(
            json.dumps(e, sort_keys=True) for e in have["data"]
        )
    return bool(want == have)


@pytest.mark.parametrize("case", CASES)
def test_enriched_row_matches_snowplow(case: dict[str, Any]) -> None:
    expected = case["expected"]
    outcomes = enrich(case)
    if "good_events" in expected:
        good = [o for o in outcomes if isinstance(o, EnrichedEvent)]
        assert len(good) == expected["good_events"]
        failed = [o for o in outcomes if isinstance(o, FailedEvent)]
        assert len(failed) == expected.get("bad_rows", 1)
        for item in failed:
            assert item.reason
        return

    candidates = [o for o in outcomes if isinstance(o, EnrichedEvent)]
    assert candidates, [o.reason for o in outcomes if isinstance(o, FailedEvent)]

    # A batch holds several events; the test states one of them.
    def agreement(event: EnrichedEvent) -> int:
        return sum(event[k] == v for k, v in expected.items() if k in FIELD_NAMES)

    event = max(candidates, key=agreement)
    skipped = ENRICHMENT_FIELDS | RUN_FIELDS | LEGACY_FIELDS
    for name, value in expected.items():
        if name not in FIELD_NAMES or name in skipped:
            continue
        got = event[name]
        if name in ("contexts", "unstruct_event") and value is not None:
            assert same_json(value, got, name), name
        else:
            assert got == value, (name, value, got)


def test_rows_were_found() -> None:
    if not CASES:
        pytest.skip(f"{CASES_FILE} not found")
    assert len(CASES) >= 30
