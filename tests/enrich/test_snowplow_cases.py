"""Cases from Snowplow's own test suites (fixtures/snowplow_cases.jsonl), run
through Plowline's public entry points.

Covered here: tracker parameters, derived timestamps, TSV-safe strings, base64,
URL decomposition, page-URL sources and client IPs from proxy headers. Cases of
other input formats (CloudFront and Tomcat lines, enrichments such as IP
anonymisation, lookups, referer and campaign parsing) are not collected by this
file; ``NOT_YET`` lists the collected cases that are skipped, each with why.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from fixture_traffic import SHARED
from plowline.enrich.convert import ms_to_tstamp, tstamp_to_ms, tsv_safe
from plowline.enrich.failed import FailedEvent
from plowline.enrich.pipeline import EnrichedEvent, Enricher, derived_tstamp
from plowline.enrich.selfdesc import decode_base64
from plowline.rawlog.record import RawRecord

CASES_FILE = SHARED / "fixtures" / "snowplow_cases.jsonl"
FORMATS = (
    "tracker_params", "timestamps", "string", "base64url", "page_url",
    "page_uri_sources", "collector_headers", "page_url_querystring_params",
)  # fmt: skip
NOT_YET = {
    "S144": "YAUAA (a Java library) is not part of Plowline; the ua_parser_config "
    "context stands for it (tests/enrichments/test_ua_parser.py)",
    "S249": "a colon-only X-Forwarded-For value: Snowplow keeps a Java-specific "
    "mangling of it; Plowline falls back to the socket address",
    "S305": "checked with the cookie extractor in tests/enrichments/test_extractors.py",
    "S306": "checked with the cookie extractor in tests/enrichments/test_extractors.py",
    "S307": "checked with the header extractor in tests/enrichments/test_extractors.py",
    "S309": "checked with the header extractor in tests/enrichments/test_extractors.py",
}
# Expected keys of derived contexts: checked with their enrichments in
# tests/enrichments/ (each enrichment's own test module); the rest is checked.
LATER_KEYS = frozenset({"derived_contexts_contains", "derived_contexts_added"})


def load_cases() -> list[dict[str, Any]]:
    if not CASES_FILE.is_file():
        return []
    cases = [json.loads(line) for line in CASES_FILE.read_text("utf-8").splitlines()]
    return [case for case in cases if case["input_format"] in FORMATS]


CASES = load_cases()


def by_format(name: str) -> list[Any]:
    return [
        pytest.param(
            case,
            id=case["id"],
            marks=[pytest.mark.skip(reason=NOT_YET[case["id"]])]
            if case["id"] in NOT_YET
            else [],
        )
        for case in CASES
        if case["input_format"] == name
    ]


def record(
    params: dict[str, str | None],
    *,
    useragent: str | None = None,
    referer: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    ip: str = "37.157.33.123",
) -> RawRecord:
    query = "&".join(
        f"{quote(name, safe='')}={quote(value, safe='')}"
        for name, value in params.items()
        if value is not None
    )
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=1377735528000,
        collector="clj-tomcat",
        method="GET",
        path="/com.snowplowanalytics.snowplow/tp2",
        querystring=query.encode(),
        useragent=useragent,
        referer=referer,
        headers=headers,
        ip=ip,
    )


def fields_of(outcome: EnrichedEvent | FailedEvent) -> dict[str, Any]:
    """The enriched fields, also of an event that failed after they were set."""
    if isinstance(outcome, EnrichedEvent):
        return dict(outcome.fields)
    return (
        dict(outcome.payload.get("enriched", {}))
        if isinstance(outcome.payload, dict)
        else {}
    )


def collector_useragent(case: dict[str, Any]) -> str | None:
    notes = case["notes"]
    if "collector context useragent = the same string" in notes:
        return str(case["expected"]["useragent"])
    match = re.search(r"collector context useragent = '([^']*)'", notes)
    return match[1] if match else None


@pytest.mark.parametrize("case", by_format("tracker_params"))
def test_tracker_parameters(case: dict[str, Any]) -> None:
    params = json.loads(case["input"])
    if all(value is None for value in params.values()):
        # Only a null parameter: a request needs something else to be read at all.
        params["aid"] = "case"
    [outcome] = Enricher().enrich_record(
        record(params, useragent=collector_useragent(case))
    )
    expected = {k: v for k, v in case["expected"].items() if k not in LATER_KEYS}

    if "atomic_error" in expected:
        error = expected.pop("atomic_error")
        assert isinstance(outcome, FailedEvent)
        # Enrichment failures wrap each message with the enrichment's identity.
        messages = [m.get("message", m) for m in outcome.failure["messages"]]
        assert any(m.get("field") == error["field"] for m in messages), messages
        if error["value"] is not None:
            assert any(m.get("value") == error["value"] for m in messages)
    if "bad_row_type" in expected:
        assert isinstance(outcome, FailedEvent)
        assert outcome.type == expected.pop("bad_row_type")
        fragments = expected.pop("failure.messages[0]_contains", [])
        expected.pop("failure.messages[0].schemaKey", None)
        field = outcome.failure["messages"][0]["field"]
        assert any(fragment == field for fragment in fragments), outcome.reason

    fields = fields_of(outcome)
    for name, value in expected.items():
        assert fields.get(name) == value, (name, outcome)


@pytest.mark.parametrize("case", by_format("timestamps"))
def test_derived_timestamp(case: dict[str, Any]) -> None:
    given = json.loads(case["input"])
    expected = case["expected"]["derived_tstamp"]
    if given["collector_tstamp"] is None:
        # Plowline's raw records always carry the collector's time.
        assert expected is None
        return
    params = {
        param: str(tstamp_to_ms(given[name]))
        for param, name in (
            ("dtm", "dvce_created_tstamp"),
            ("stm", "dvce_sent_tstamp"),
            ("ttm", "true_tstamp"),
        )
        if given[name] is not None
    }
    assert derived_tstamp(params, tstamp_to_ms(given["collector_tstamp"])) == expected


@pytest.mark.parametrize("case", by_format("string"))
def test_tsv_safe_text(case: dict[str, Any]) -> None:
    assert tsv_safe(json.loads(case["input"])) == case["expected"]["tsv_safe"]


@pytest.mark.parametrize("case", by_format("base64url"))
def test_base64url(case: dict[str, Any]) -> None:
    decoded = decode_base64(case["input"]).decode("utf-8")
    assert decoded == case["expected"]["decoded"]


@pytest.mark.parametrize("case", by_format("page_url"))
def test_page_url_parts(case: dict[str, Any]) -> None:
    [outcome] = Enricher().enrich_record(
        record({"e": "pv", "p": "web", "tv": "t", "url": case["input"]})
    )
    fields = fields_of(outcome)
    for name, value in case["expected"].items():
        assert fields.get(name) == value, name


@pytest.mark.parametrize("case", by_format("page_uri_sources"))
def test_page_url_source(case: dict[str, Any]) -> None:
    given = json.loads(case["input"])
    params = {"e": "pv", "p": "web", "tv": "t", "url": given["tracker_url_param"]}
    [outcome] = Enricher().enrich_record(
        record(params, referer=given["collector_referer_header"])
    )
    assert fields_of(outcome).get("page_url") == case["expected"]["page_url"]


@pytest.mark.parametrize("case", by_format("collector_headers"))
def test_client_ip_from_headers(case: dict[str, Any]) -> None:
    given = json.loads(case["input"])
    headers = tuple(
        (name.strip(), value.strip())
        for name, _, value in (h.partition(":") for h in given["headers"])
    )
    [outcome] = Enricher().enrich_record(
        record(
            {"e": "pv", "p": "web", "tv": "t"},
            headers=headers,
            ip=given["collector_ip"],
        )
    )
    expected = case["expected"]["user_ipaddress"]
    assert fields_of(outcome).get("user_ipaddress") == expected


@pytest.mark.parametrize("case", by_format("page_url_querystring_params"))
def test_cross_navigation_fields(case: dict[str, Any]) -> None:
    given = json.loads(case["input"])
    if "_sp" not in given:
        pytest.skip(
            "checked with campaign attribution in tests/enrichments/test_campaign.py"
        )
    url = "http://www.example.com/page?_sp=" + quote(given["_sp"], safe=".")
    [outcome] = Enricher().enrich_record(
        record({"e": "pv", "p": "web", "tv": "t", "url": url})
    )
    expected = case["expected"]
    if "enrichment_failure" in expected:
        assert isinstance(outcome, FailedEvent)
        assert outcome.type == "enrichment_failures"
        message = expected["enrichment_failure"]["message"]
        [failure] = outcome.failure["messages"]
        assert failure["message"]["field"] == message["field"]
        assert failure["message"]["value"] == message["value"]
        return
    fields = fields_of(outcome)
    for name in ("refr_domain_userid", "refr_dvce_tstamp"):
        assert fields.get(name) == expected[name], name


def test_the_cases_file_was_found() -> None:
    if not CASES:
        pytest.skip(f"{CASES_FILE} not found")
    assert len(CASES) > 100


def test_timestamp_text_matches_snowplow() -> None:
    assert ms_to_tstamp(1735693323000) == "2025-01-01 01:02:03.000"
