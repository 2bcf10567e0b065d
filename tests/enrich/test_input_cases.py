"""Inputs from public bug reports (fixtures/input_cases.jsonl), each case's
expectation as a test. B01 and B02 (CloudFront lines) are in test_loaders.py;
B03, B25 and the body limits of B29 are checked against the collector in
tests/collector; B30 (duplicate event ids) belongs to loading (issue 6)."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from dataclasses import replace
from typing import Any

import orjson
import pytest

from fixture_traffic import SHARED
from plowline.enrich.failed import FailedEvent
from plowline.enrich.loaders import loader_for
from plowline.enrich.pipeline import EnrichedEvent, Enricher, Outcome
from plowline.rawlog.record import RawRecord

CASES_FILE = SHARED / "fixtures" / "input_cases.jsonl"
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"


def case(case_id: str) -> dict[str, Any]:
    if not CASES_FILE.is_file():
        pytest.skip(f"{CASES_FILE} not found")
    for line in CASES_FILE.read_text("utf-8").splitlines():
        found = json.loads(line)
        if found["id"] == case_id:
            return dict(found)
    raise AssertionError(f"no case {case_id}")


def record(
    query: str | None,
    *,
    body: bytes | None = None,
    path: str = "/i",
    collector: str = "plowline-test",
    tstamp: int = 1796398150600,
    headers: tuple[tuple[str, str], ...] = (),
    content_type: str | None = None,
) -> RawRecord:
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=tstamp,
        collector=collector,
        method="POST" if body else "GET",
        path=path,
        querystring=query.encode() if query else None,
        body=body,
        content_type=content_type,
        headers=headers,
        ip="10.1.2.3",
        useragent="test-agent",
    )


def one(outcomes: list[Outcome]) -> Outcome:
    assert len(outcomes) == 1, outcomes
    return outcomes[0]


def good(outcome: Outcome) -> EnrichedEvent:
    assert isinstance(outcome, EnrichedEvent), outcome
    return outcome


def failed(outcome: Outcome) -> FailedEvent:
    assert isinstance(outcome, FailedEvent), outcome
    return outcome


def enrich_query(case_id: str, **kwargs: Any) -> Outcome:
    return one(Enricher().enrich_record(record(case(case_id)["input"], **kwargs)))


def request_parts(text: str) -> tuple[str, str, dict[str, str], str]:
    head, _, body = text.partition("\r\n\r\n")
    request_line, *header_lines = head.split("\r\n")
    method, target, _ = request_line.split(" ")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return method, target, headers, body


def test_b03_bad_percent_escapes_are_kept_as_text() -> None:
    _, target, _, _ = request_parts(case("B03")["input"])
    event = good(one(Enricher().enrich_record(record(target.split("?", 1)[1]))))
    assert event["page_title"] == "50%off"
    assert event["app_id"] == "site1"


def test_b04_stray_percent_in_a_referer_keeps_the_event() -> None:
    event = good(enrich_query("B04"))
    assert (
        event["page_referrer"] == "http://shop.example.org/category/20%-off-selected/"
    )
    assert event["refr_urlhost"] == "shop.example.org"
    assert event["refr_urlpath"] == "/category/20%-off-selected/"


def test_b06_decoded_breaks_never_break_the_row() -> None:
    event = good(enrich_query("B06"))
    assert event["page_title"] == "Spring Sale"
    fields = event.to_tsv().split("\t")
    assert len(fields) == 131
    assert not any(c in event.to_tsv() for c in "\n\r")


def test_b07_only_tabs_separate_fields() -> None:
    line = case("B07")["input"].encode()
    event = good(
        one(
            Enricher().enrich_line(
                line, loader=loader_for("clj-tomcat"), loader_name="clj-tomcat"
            )
        )
    )
    assert event["user_ipaddress"] == "203.0.113.7"
    assert event["useragent"] == "Mozilla/5.0 (Windows NT 6.1)"
    assert event["page_url"] == "http://www.example.com/"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("203.0.113.9:51234, 10.0.0.6", "203.0.113.9"),
        ("[2001:db8::5]:443", "2001:db8::5"),
        ("2001:db8::5", "2001:db8::5"),
    ],
)
def test_b08_ports_are_stripped_from_forwarded_addresses(
    forwarded: str, expected: str
) -> None:
    _, target, _, _ = request_parts(case("B08")["input"])
    raw = record(
        target.split("?", 1)[1],
        collector="ssc-2.9.0",
        headers=(("X-Forwarded-For", forwarded),),
    )
    assert good(one(Enricher().enrich_record(raw)))["user_ipaddress"] == expected


def test_b10_upper_case_event_id_is_stored_lower_case() -> None:
    assert good(enrich_query("B10"))["event_id"] == (
        "c6f7c5e3-3d51-47f2-8f96-44d9c13f37fb"
    )


def test_b12_year_10013_is_a_failed_event_naming_dtm() -> None:
    outcome = failed(enrich_query("B12"))
    assert outcome.failure["messages"][0]["field"] == "dtm"
    assert outcome.payload["raw"]["parameters"]


def test_b13_seconds_sent_as_milliseconds_do_not_skew_the_event_time() -> None:
    collector_ms = 1551398401500  # 2019-03-01T00:00:01.500Z
    event = good(enrich_query("B13", tstamp=collector_ms))
    assert event["dvce_created_tstamp"] == "1970-01-18 22:56:38.400"  # as sent
    assert event["derived_tstamp"] == "2019-03-01 00:00:01.500"


def test_b15_fast_device_clock_is_corrected_by_the_send_delay() -> None:
    collector_ms = 1586520000000  # 2020-04-10T12:00:00.000Z
    event = good(enrich_query("B15", tstamp=collector_ms))
    assert event["dvce_created_tstamp"] == "2020-04-12 12:00:00.000"
    assert event["derived_tstamp"] == "2020-04-10 11:59:55.000"


def test_b17_negative_viewport_fails_and_zero_is_fine() -> None:
    outcome = failed(enrich_query("B17"))
    assert [m["field"] for m in outcome.failure["messages"]] == ["vp"]
    query = case("B17")["input"].replace("vp=0x-56", "vp=0x0")
    event = good(one(Enricher().enrich_record(record(query))))
    assert (event["br_viewwidth"], event["br_viewheight"]) == ("0", "0")


def test_b18_url_safe_base64_without_padding() -> None:
    event = good(enrich_query("B18"))
    contexts = orjson.loads(event["contexts"] or "{}")
    [entity] = contexts["data"]
    assert entity["schema"].startswith("iglu:com.example/product/jsonschema/1-0-0")
    assert entity["data"]["name"] == "Můj produkt ž?>!"


def test_b19_base64_text_is_read_as_utf8() -> None:
    event = good(enrich_query("B19"))
    document = orjson.loads(event["unstruct_event"] or "{}")
    assert document["data"]["data"]["term"] == "épinard ž?>"
    bad = base64.urlsafe_b64encode(b'{"schema": "\xff"}').decode()
    outcome = failed(
        one(Enricher().enrich_record(record(f"e=ue&p=web&tv=t&ue_px={bad}")))
    )
    assert outcome.failure["messages"][0]["field"] == "ue_px"


def test_b23_huge_user_agent_is_cut_to_its_column() -> None:
    _, target, headers, _ = request_parts(case("B23")["input"])
    raw = replace(record(target.split("?", 1)[1]), useragent=headers["User-Agent"])
    event = good(one(Enricher().enrich_record(raw)))
    assert event["useragent"] == headers["User-Agent"][:1000]


def test_b27_json_under_a_form_content_type_is_a_failed_event_keeping_the_body() -> (
    None
):
    _, _, _, body = request_parts(case("B27")["input"])
    raw = record(
        None,
        body=body.encode(),
        path=TP2,
        content_type="application/x-www-form-urlencoded",
    )
    outcome = failed(one(Enricher().enrich_record(raw)))
    assert outcome.failure["messages"][0]["field"] == "contentType"
    assert outcome.payload["body"] == body


def test_b28_gzip_body_is_inflated() -> None:
    _, _, _, body = request_parts(case("B28")["input"])
    compressed = base64.b64decode(body.strip())
    assert gzip.decompress(compressed)  # the case's body is a real gzip stream
    raw = record(
        None, body=compressed, path=TP2, content_type="application/json; charset=utf-8"
    )
    assert good(one(Enricher().enrich_record(raw)))["event"] == "page_view"


def test_b29_thousands_of_events_in_one_post() -> None:
    # The case describes its body: 2000 page views, each with a fresh id and a
    # ~600-character base64 context (1.5 MB: the collector answers 413 and keeps
    # a size-violation record). Under the limit, each event gives one row.
    assert "2000 copies" in case("B29")["input"]
    entity = {
        "schema": "iglu:com.example/filler/jsonschema/1-0-0",
        "data": {"text": "x" * 420},
    }
    contexts = orjson.dumps({"schema": CONTEXTS, "data": [entity]})
    cx = base64.urlsafe_b64encode(contexts).decode().rstrip("=")
    assert len(cx) > 550
    events = [
        {
            "e": "pv",
            "aid": "site1",
            "p": "web",
            "tv": "js-2.5.0",
            "eid": str(uuid.uuid4()),
            "url": "https://www.example.com/",
            "cx": cx,
        }
        for _ in range(1000)
    ]
    body = orjson.dumps({"schema": PAYLOAD_DATA, "data": events})
    assert len(body) < 1024 * 1024
    outcomes = Enricher().enrich_record(
        record(None, body=body, path=TP2, content_type="application/json")
    )
    assert len(outcomes) == 1000
    assert {good(o)["event_id"] for o in outcomes} == {e["eid"] for e in events}


def test_b33_unknown_time_zone_is_kept_as_sent() -> None:
    assert good(enrich_query("B33"))["os_timezone"] == "Etc/Unknown"


def test_b34_https_without_a_port_is_443() -> None:
    event = good(enrich_query("B34"))
    assert (
        event["page_urlscheme"],
        event["page_urlhost"],
        event["page_urlport"],
        event["page_urlpath"],
    ) == ("https", "www.example.com", "443", "/checkout")
    assert event["refr_urlport"] == "8080"
