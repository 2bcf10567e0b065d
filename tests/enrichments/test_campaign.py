"""campaign_attribution: mkt_* fields from the page URL's querystring."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlencode

import pytest

from fixture_traffic import SHARED
from plowline.enrich.enrichments.base import EnrichmentInput
from plowline.enrich.enrichments.campaign import FIELDS, CampaignAttribution
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

RECORD = RawRecord(id="r", tstamp=0, collector="c", method="GET", path="/i")
MKT = [field for _, field in FIELDS] + ["mkt_clickid", "mkt_network"]
# The configuration Snowplow's Spark tests ran with (spec 8.1 / 3.5).
LEGACY = {
    "mapping": "static",
    "fields": {
        "mktMedium": ["utm_medium", "medium"],
        "mktSource": ["utm_source", "source"],
        "mktTerm": ["utm_term", "legacy_term"],
        "mktContent": ["utm_content"],
        "mktCampaign": ["utm_campaign", "cid", "legacy_campaign"],
    },
}


def run(enrichment: CampaignAttribution, query: str | None) -> dict[str, str | None]:
    event: dict[str, str | None] = {"page_urlquery": query}
    enrichment.enrich(event, EnrichmentInput(params={}, record=RECORD))
    return {name: event.get(name) for name in MKT}


def legacy(query: str | None) -> dict[str, str | None]:
    return run(CampaignAttribution.from_parameters(LEGACY, source="c.json"), query)


def test_golden_rows_of_snowplow_cases() -> None:
    path = SHARED / "fixtures" / "snowplow_cases.jsonl"
    if not path.is_file():
        message = f"Snowplow cases not found: {path} (set PLOWLINE_SHARED)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    checked = 0
    for line in path.read_text("utf-8").splitlines():
        case = json.loads(line)
        if "CampaignAttributionEnrichmentSpec" not in case["source"]:
            continue
        given = json.loads(case["input"])
        config = given["config"]
        names = {field: tuple(config[key]) for key, field in FIELDS}
        clicks = tuple((p, n) for p, n in config["clickIds"])
        enrichment = CampaignAttribution(names, clicks)
        pairs = [(name, value) for name, value in given["querystring"]]
        assert run(enrichment, urlencode(pairs)) == case["expected"]
        checked += 1
    assert checked >= 3


def test_utm_parameters_with_gclid() -> None:
    query = (
        "utm_source=GoogleSearch&utm_medium=cpc&utm_term=native+american+tarot+deck"
        "&utm_content=39254295088&utm_campaign=uk-tarot--native-american"
        "&gclid=CI6thtbxhboCFTMctAod0FcAdQ"
    )
    assert legacy(query) == {
        "mkt_medium": "cpc",
        "mkt_source": "GoogleSearch",
        "mkt_term": "native american tarot deck",
        "mkt_content": "39254295088",
        "mkt_campaign": "uk-tarot--native-american",
        "mkt_clickid": "CI6thtbxhboCFTMctAod0FcAdQ",
        "mkt_network": "Google",
    }


def test_first_configured_name_wins_not_first_in_query() -> None:
    found = legacy("legacy_campaign=old&cid=new&medium=m1&utm_medium=m2")
    assert found["mkt_campaign"] == "new"
    assert found["mkt_medium"] == "m2"


def test_repeated_name_gives_last_value() -> None:
    assert legacy("utm_source=a&utm_source=b")["mkt_source"] == "b"


def test_present_but_empty_stops_the_search() -> None:
    found = legacy("utm_medium=&medium=email&utm_source&source=x")
    assert found["mkt_medium"] is None and found["mkt_source"] is None


def test_semicolons_and_control_characters() -> None:
    found = legacy("utm_source=a%09b;utm_term=line%0Abreak")
    assert found["mkt_source"] == "a    b"
    assert found["mkt_term"] == "line break"


@pytest.mark.parametrize(
    ("query", "clickid", "network"),
    [
        ("msclkid=m1&gclid=g1", "g1", "Google"),
        ("dclid=d1&msclkid=m1", "m1", "Microsoft"),
        ("dclid=d1", "d1", "DoubleClick"),
        ("fbclid=f1", None, None),
    ],
)
def test_default_click_ids_in_their_order(
    query: str, clickid: str | None, network: str | None
) -> None:
    found = legacy(query)
    assert (found["mkt_clickid"], found["mkt_network"]) == (clickid, network)


def test_configured_click_ids_extend_and_override() -> None:
    config = json.loads(json.dumps(LEGACY))
    config["fields"]["mktClickId"] = {"fbclid": "Facebook", "gclid": "Google Ads"}
    enrichment = CampaignAttribution.from_parameters(config, source="c.json")
    assert enrichment.click_ids == (
        ("gclid", "Google Ads"),
        ("msclkid", "Microsoft"),
        ("dclid", "DoubleClick"),
        ("fbclid", "Facebook"),
    )
    found = run(enrichment, "fbclid=f1")
    assert (found["mkt_clickid"], found["mkt_network"]) == ("f1", "Facebook")


@pytest.mark.parametrize(
    "query", [None, "", "&&&", "=", "%", "utm_source=%zz", "x=" + "y" * 200_000]
)
def test_bad_querystrings(query: str | None) -> None:
    found = legacy(query)
    if query == "utm_source=%zz":
        assert found["mkt_source"] == "%zz"
    else:
        assert found == dict.fromkeys(MKT)


def test_huge_value_is_kept_whole() -> None:
    assert legacy("utm_term=" + "t" * 100_000)["mkt_term"] == "t" * 100_000


def with_fields(**changes: Any) -> dict[str, Any]:
    config = json.loads(json.dumps(LEGACY))
    config["fields"].update(changes)
    return config


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"fields": {}, "script": "x"},
            "c.json: campaign_attribution has unknown parameters ['script']; "
            "expected fields and optionally mapping.",
        ),
        (
            {"mapping": "dynamic", "fields": LEGACY["fields"]},
            'c.json: parameters.mapping must be "static", "script" or null, '
            "not 'dynamic'.",
        ),
        (
            {"mapping": "static"},
            "c.json: campaign_attribution needs parameters.fields, an object with "
            "mktMedium, mktSource, mktTerm, mktContent and mktCampaign (lists of "
            "parameter names), not None.",
        ),
        (
            with_fields(mktSource="utm_source"),
            "c.json: parameters.fields.mktSource must be a list of querystring "
            "parameter names (may be empty), not 'utm_source'.",
        ),
        (
            {"fields": {k: v for k, v in LEGACY["fields"].items() if k != "mktTerm"}},
            "c.json: parameters.fields.mktTerm must be a list of querystring "
            "parameter names (may be empty), not None.",
        ),
        (
            with_fields(mktClickId=["gclid"]),
            "c.json: parameters.fields.mktClickId must map querystring parameter "
            "names to network names, not ['gclid'].",
        ),
        (
            with_fields(mktNetwork=[]),
            "c.json: parameters.fields has unknown keys ['mktNetwork'].",
        ),
    ],
)
def test_bad_configuration_is_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        CampaignAttribution.from_parameters(params, source="c.json")
    assert str(caught.value) == message
