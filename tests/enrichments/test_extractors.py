"""Cookie and HTTP header extractors: spec section 3.8 and Snowplow's cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fixture_traffic import SHARED
from plowline.enrich.enrichments.base import EnrichmentInput
from plowline.enrich.enrichments.extractors import (
    CookieExtractor,
    HttpHeaderExtractor,
    parse_cookies,
)
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

CASES_FILE = SHARED / "fixtures" / "snowplow_cases.jsonl"
CONFIGS = Path(__file__).parent.parent / "data" / "enrichments-more" / "configs"


def run(
    enrichment: CookieExtractor | HttpHeaderExtractor, headers: list[str]
) -> list[dict[str, Any]]:
    """The contexts for the collector's raw ``Name: value`` header lines."""
    pairs = tuple(
        (name, value) for name, _, value in (line.partition(":") for line in headers)
    )
    record = RawRecord(
        id="r1", tstamp=0, collector="test", method="GET", path="/i", headers=pairs
    )
    inp = EnrichmentInput({}, record)
    enrichment.enrich({}, inp)
    return inp.derived_contexts


def extractor_cases() -> list[Any]:
    if not CASES_FILE.is_file():
        return []
    cases = [json.loads(line) for line in CASES_FILE.read_text("utf-8").splitlines()]
    return [
        pytest.param(case, id=case["id"])
        for case in cases
        if case["input_format"] == "collector_headers"
        and "derived_contexts_added" in case["expected"]
    ]


@pytest.mark.parametrize("case", extractor_cases())
def test_snowplow_extractor_cases(case: dict[str, Any]) -> None:
    given = json.loads(case["input"])
    if "cookies_config" in given:
        enrichment: Any = CookieExtractor.from_parameters(
            {"cookies": given["cookies_config"]}, source="case"
        )
    else:
        enrichment = HttpHeaderExtractor.from_parameters(
            {"headersPattern": given["headersPattern"]}, source="case"
        )
    assert (
        run(enrichment, given["headers"]) == case["expected"]["derived_contexts_added"]
    )


def test_cookie_values_quotes_and_missing_equals() -> None:
    assert parse_cookies(' a=1; b="two words" ;c; =d; e=;;') == [
        ("a", "1"),
        ("b", "two words"),
        ("c", None),
        ("", "d"),
        ("e", ""),
    ]


def test_cookies_come_in_header_order_from_every_cookie_header() -> None:
    enrichment = CookieExtractor.from_parameters({"cookies": ["sp", "_ga"]}, source="t")
    contexts = run(
        enrichment,
        ["Host: example.com", "COOKIE: _ga=GA1.2; other=1", "cookie: sp=abc-123"],
    )
    assert [c["data"] for c in contexts] == [
        {"name": "_ga", "value": "GA1.2"},
        {"name": "sp", "value": "abc-123"},
    ]
    assert {c["schema"] for c in contexts} == {
        "iglu:org.ietf/http_cookie/jsonschema/1-0-0"
    }


def test_header_pattern_must_match_the_whole_name() -> None:
    enrichment = HttpHeaderExtractor.from_parameters(
        {"headersPattern": "X-.*-For|Accept"}, source="t"
    )
    contexts = run(
        enrichment,
        ["X-Forwarded-For:  1.2.3.4 ", "Accept-Language: en", "Accept: */*"],
    )
    assert [c["data"] for c in contexts] == [
        {"name": "X-Forwarded-For", "value": "1.2.3.4"},
        {"name": "Accept", "value": "*/*"},
    ]


def test_header_pattern_is_case_sensitive_unless_told() -> None:
    exact = HttpHeaderExtractor.from_parameters(
        {"headersPattern": "accept"}, source="t"
    )
    assert run(exact, ["Accept: */*"]) == []
    folded = HttpHeaderExtractor.from_parameters(
        {"headersPattern": "(?i)accept"}, source="t"
    )
    assert len(run(folded, ["Accept: */*"])) == 1


def test_example_configurations_build() -> None:
    for name, cls in (
        ("cookie_extractor_config.json", CookieExtractor),
        ("http_header_extractor_config.json", HttpHeaderExtractor),
    ):
        path = CONFIGS / name
        data = json.loads(path.read_text())["data"]
        assert data["name"] == cls.name
        cls.from_parameters(data["parameters"], source=str(path))


@pytest.mark.parametrize(
    ("cls", "parameters", "message"),
    [
        (
            CookieExtractor,
            {"cookies": "sp"},
            "c.json: parameters.cookies must be a list of cookie names (strings); "
            "found 'sp'.",
        ),
        (
            CookieExtractor,
            {"cookies": ["sp", 1]},
            "c.json: parameters.cookies must be a list of cookie names (strings); "
            "found ['sp', 1].",
        ),
        (
            HttpHeaderExtractor,
            {},
            "c.json: parameters.headersPattern must be a regular expression "
            "(a string); found None.",
        ),
        (
            HttpHeaderExtractor,
            {"headersPattern": "X-(Forwarded"},
            "c.json: parameters.headersPattern 'X-(Forwarded' is not a valid "
            "regular expression: missing ), unterminated subpattern at position 2.",
        ),
    ],
    ids=["cookies-string", "cookie-not-string", "pattern-missing", "pattern-bad"],
)
def test_bad_configuration_is_refused(
    cls: Any, parameters: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as error:
        cls.from_parameters(parameters, source="c.json")
    assert str(error.value) == message


def test_header_verdicts_remembered_per_spelling_give_the_same_contexts() -> None:
    # Each spelling of a name is judged once and then remembered: the second
    # request must get exactly what the first got, spaces around names included.
    enrichment = HttpHeaderExtractor.from_parameters(
        {"headersPattern": "(?i)accept-language"}, source="t"
    )
    headers = [" Accept-Language : fr ", "accept-language: en", "Accept: */*"]
    expected = [
        {"name": "Accept-Language", "value": "fr"},
        {"name": "accept-language", "value": "en"},
    ]
    for _ in range(2):
        assert [c["data"] for c in run(enrichment, headers)] == expected


def test_header_pattern_matching_an_empty_name_still_extracts_it() -> None:
    enrichment = HttpHeaderExtractor.from_parameters(
        {"headersPattern": ".*"}, source="t"
    )
    for _ in range(2):
        contexts = run(enrichment, [": orphan value", "Host: a.example"])
        assert [c["data"] for c in contexts] == [
            {"name": "", "value": "orphan value"},
            {"name": "Host", "value": "a.example"},
        ]


def test_cookie_header_without_a_configured_name_gives_nothing() -> None:
    enrichment = CookieExtractor.from_parameters({"cookies": ["_ga"]}, source="t")
    assert run(enrichment, ["Cookie: _sp_id.1=abc; _sp_ses.1=*"]) == []
    # The name inside another cookie's value is a candidate, not a cookie.
    assert run(enrichment, ["Cookie: ref=_ga; x=1"]) == []
    assert [c["data"] for c in run(enrichment, ["Cookie: x=1; _ga=GA1.2.3"])] == [
        {"name": "_ga", "value": "GA1.2.3"}
    ]
