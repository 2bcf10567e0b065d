"""Cross-navigation context: spec section 3.9 and Snowplow's _sp cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from fixture_traffic import SHARED
from plowline.enrich.enrichments.base import EnrichmentError, EnrichmentInput
from plowline.enrich.enrichments.config import load_enrichments
from plowline.enrich.enrichments.cross_navigation import CrossNavigation
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

CASES_FILE = SHARED / "fixtures" / "snowplow_cases.jsonl"
CONFIGS = Path(__file__).parent.parent / "data" / "enrichments-more" / "configs"
RECORD = RawRecord(id="r1", tstamp=0, collector="test", method="GET", path="/i")
SCHEMA = "iglu:com.snowplowanalytics.snowplow/cross_navigation/jsonschema/1-0-0"


def contexts_for(query: str | None) -> list[dict[str, Any]]:
    inp = EnrichmentInput({}, RECORD)
    enrichment = CrossNavigation.from_parameters({}, source="t")
    enrichment.enrich({"page_urlquery": query}, inp)
    return inp.derived_contexts


def sp_cases() -> list[Any]:
    if not CASES_FILE.is_file():
        return []
    cases = [json.loads(line) for line in CASES_FILE.read_text("utf-8").splitlines()]
    return [
        pytest.param(case, id=case["id"])
        for case in cases
        if case["input_format"] == "page_url_querystring_params"
        and "_sp" in json.loads(case["input"])
        and "Enrichment enabled=True" in case["notes"]
    ]


@pytest.mark.parametrize("case", sp_cases())
def test_snowplow_sp_cases(case: dict[str, Any]) -> None:
    query = urlencode(json.loads(case["input"]))
    expected = case["expected"]
    if "enrichment_failure" in expected:
        with pytest.raises(EnrichmentError) as error:
            contexts_for(query)
        assert error.value.message == expected["enrichment_failure"]["message"]
        return
    context = expected["derived_context"]
    assert contexts_for(query) == ([context] if context else [])


def test_extended_sp_in_a_longer_querystring() -> None:
    (context,) = contexts_for(
        "utm_source=x&_sp=d-1.1700000000000.4b0c2a8e-1111-4222-8333-444444444444"
        ".dXNlcg.c3Jj.mob&q=1"
    )
    assert context == {
        "schema": SCHEMA,
        "data": {
            "domain_user_id": "d-1",
            "timestamp": "2023-11-14T22:13:20.000Z",
            "session_id": "4b0c2a8e-1111-4222-8333-444444444444",
            "user_id": "user",
            "source_id": "src",
            "source_platform": "mob",
            "reason": None,
        },
    }


@pytest.mark.parametrize(
    "query",
    [None, "", "a=1", "_sp=", "_sp=abc", "_sp=.1697175843762", "_spx=abc.1"],
    ids=["no-query", "empty", "no-sp", "empty-sp", "no-tstamp", "no-user", "other"],
)
def test_no_context_without_user_and_time(query: str | None) -> None:
    assert contexts_for(query) == []


def test_undecodable_base64_part_fails_the_event() -> None:
    with pytest.raises(EnrichmentError) as error:
        contexts_for("_sp=abc.1697175843762..__8")
    assert error.value.message == {
        "field": "_sp.user_id",
        "value": "__8",
        "expectation": "URL-safe base64 of UTF-8 text",
    }


def test_example_configuration_builds(tmp_path: Path) -> None:
    # Snowplow's schema for this file allows no parameters at all.
    shutil.copy(CONFIGS / "cross_navigation_config.json", tmp_path)
    [enrichment] = load_enrichments(tmp_path)
    assert isinstance(enrichment, CrossNavigation)
    assert enrichment.schema_key == (
        "iglu:com.snowplowanalytics.snowplow.enrichments/cross_navigation_config/"
        "jsonschema/1-0-0"
    )


def test_parameters_that_are_not_an_object_are_refused() -> None:
    with pytest.raises(ConfigurationError) as error:
        CrossNavigation.from_parameters([], source="cfg.json")  # type: ignore[arg-type]
    assert str(error.value) == (
        "cfg.json: parameters must be an object (this enrichment has none, so {}); "
        "found []."
    )
