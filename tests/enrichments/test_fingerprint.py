"""Event fingerprint: spec section 3.7, checked against Snowplow's own rows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

from fixture_traffic import SHARED
from plowline.enrich.adapters import RawEvent, to_raw_events
from plowline.enrich.enrichments.base import EnrichmentInput
from plowline.enrich.enrichments.fingerprint import EventFingerprint, fingerprint_text
from plowline.enrich.loaders import loader_for
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

CASES_FILE = SHARED / "fixtures" / "snowplow_cases.jsonl"
CONFIGS = Path(__file__).parent.parent / "data" / "enrichments-more" / "configs"
IGLU_CENTRAL = SHARED / "data" / "iglu-central" / "schemas"
RECORD = RawRecord(id="r1", tstamp=0, collector="test", method="GET", path="/i")
# CFG-SPARK-R117: the configuration Snowplow's Spark rows were made with.
SPARK = {"excludeParameters": ["eid", "stm"], "hashAlgorithm": "MD5"}


def fingerprint(parameters: dict[str, Any], params: dict[str, str]) -> str | None:
    enrichment = EventFingerprint.from_parameters(parameters, source="test.json")
    event: dict[str, str | None] = {}
    enrichment.enrich(event, EnrichmentInput(params, RECORD))
    return event["event_fingerprint"]


def spark_cases() -> list[Any]:
    if not CASES_FILE.is_file():
        return []
    cases = [json.loads(line) for line in CASES_FILE.read_text("utf-8").splitlines()]
    return [
        pytest.param(case, id=case["id"])
        for case in cases
        if isinstance(case["expected"], dict)
        and case["expected"].get("event_fingerprint")
    ]


@pytest.mark.parametrize("case", spark_cases())
def test_fingerprint_matches_snowplow_rows(case: dict[str, Any]) -> None:
    record = loader_for(case["input_format"])(case["input"].encode())
    assert record is not None
    (raw,) = to_raw_events(record, 0)
    assert isinstance(raw, RawEvent)
    expected = case["expected"]["event_fingerprint"]
    assert fingerprint(SPARK, raw.params) == expected


def test_snowplow_rows_carry_fingerprints() -> None:
    # The spec counts 10 such CloudFront rows; the shared file keeps some back.
    if not CASES_FILE.is_file():
        pytest.skip(f"{CASES_FILE} not found")
    assert len(spark_cases()) >= 5


def test_text_is_sorted_pairs_with_unit_separators() -> None:
    params = {"e": "pv", "aid": "shop", "eid": "x", "tv": "js-3"}
    text = fingerprint_text(params, frozenset({"eid"}))
    assert text == "aid\x1fshop\x1fe\x1fpv\x1ftv\x1fjs-3\x1f"


@pytest.mark.parametrize(
    ("algorithm", "function"),
    [
        ("MD5", hashlib.md5),
        ("SHA1", hashlib.sha1),
        ("SHA256", hashlib.sha256),
        ("SHA384", hashlib.sha384),
        ("SHA512", hashlib.sha512),
    ],
)
def test_every_algorithm_hashes_the_utf8_text(algorithm: str, function: Any) -> None:
    params = {"e": "se", "se_ca": "Café ☕", "stm": "123"}
    parameters = {"excludeParameters": ["stm"], "hashAlgorithm": algorithm}
    expected = function("e\x1fse\x1fse_ca\x1fCafé ☕\x1f".encode()).hexdigest()
    assert fingerprint(parameters, params) == expected


def test_empty_values_count_and_exclusions_do_not() -> None:
    with_empty = fingerprint(SPARK, {"e": "pv", "url": ""})
    assert with_empty != fingerprint(SPARK, {"e": "pv"})
    assert fingerprint(SPARK, {"e": "pv", "eid": "1", "stm": "2"}) == fingerprint(
        SPARK, {"e": "pv", "eid": "3"}
    )


def test_keys_past_the_basic_plane_sort_as_utf16() -> None:
    # U+1F600 sorts after U+FF21 by code point but before it in UTF-16
    # (its surrogate pair starts with 0xD83D).
    text = fingerprint_text({"\uff21": "b", "\U0001f600": "a"}, frozenset())
    assert text.startswith("\U0001f600")


def test_example_configuration_is_valid_for_iglu_central() -> None:
    document = json.loads((CONFIGS / "event_fingerprint_config.json").read_text())
    schema_path = IGLU_CENTRAL / document["schema"][5:]
    if not schema_path.is_file():
        pytest.skip(f"{schema_path} not found")
    Draft4Validator(json.loads(schema_path.read_text())).validate(document["data"])
    parameters = document["data"]["parameters"]
    result = fingerprint(parameters, {"e": "pv", "nuid": "n", "cv": "c"})
    assert result == hashlib.sha256(b"e\x1fpv\x1f").hexdigest()


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"excludeParameters": [], "hashAlgorithm": "SHA-256"},
            "cfg.json: parameters.hashAlgorithm must be one of MD5, SHA1, SHA256, "
            "SHA384, SHA512; found 'SHA-256'.",
        ),
        (
            {"excludeParameters": "eid", "hashAlgorithm": "MD5"},
            "cfg.json: parameters.excludeParameters must be a list of tracker "
            "parameter names (strings); found 'eid'.",
        ),
        (
            {"hashAlgorithm": "MD5"},
            "cfg.json: parameters.excludeParameters must be a list of tracker "
            "parameter names (strings); found None.",
        ),
    ],
    ids=["dashed-algorithm", "exclude-not-a-list", "exclude-missing"],
)
def test_bad_configuration_is_refused(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        EventFingerprint.from_parameters(parameters, source="cfg.json")
    assert str(error.value) == message


def test_remembered_name_orders_give_the_text_of_each_event() -> None:
    # The enrichment keeps one plan per list of names as sent: events sending
    # the same names in another order, or other names, must not share a text.
    enrichment = EventFingerprint.from_parameters(SPARK, source="test.json")
    events = [
        {"e": "pv", "eid": "1", "aid": "shop", "url": "http://a.example/"},
        {"url": "http://a.example/", "aid": "shop", "e": "pv", "eid": "2"},
        {"e": "pv", "aid": "shop"},
        {"e": "pv", "aid": "other", "url": "http://a.example/"},
        {"eid": "3", "stm": "4"},  # nothing left to hash once excluded
        {"\U0001f600": "a", "\uff21": "b"},
    ]
    for params in events * 2:
        event: dict[str, str | None] = {}
        enrichment.enrich(event, EnrichmentInput(params, RECORD))
        text = fingerprint_text(params, frozenset(SPARK["excludeParameters"]))
        assert event["event_fingerprint"] == hashlib.md5(text.encode()).hexdigest()
    assert fingerprint_text(events[4], frozenset(SPARK["excludeParameters"])) == ""
    assert fingerprint_text(events[0], frozenset(SPARK["excludeParameters"])) == (
        "aid\x1fshop\x1fe\x1fpv\x1furl\x1fhttp://a.example/\x1f"
    )
