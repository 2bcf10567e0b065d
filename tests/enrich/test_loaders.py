"""Raw logs of Snowplow's legacy collectors: CloudFront and Clojure (Tomcat)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from snowplow_analytics_sdk.event_transformer import transform

from fixture_traffic import SHARED
from plowline.enrich.files import enrich_files
from plowline.enrich.loaders import detect_format

DATA = Path(__file__).resolve().parent.parent / "data" / "raw_formats"
INPUT_CASES = SHARED / "fixtures" / "input_cases.jsonl"


def enrich(
    tmp_path: Path, *inputs: Path, input_format: str = "auto"
) -> tuple[list[dict], list[dict]]:
    good, bad = tmp_path / "good.tsv", tmp_path / "bad.jsonl"
    enrich_files(
        [str(p) for p in inputs], str(good), str(bad), input_format=input_format
    )
    events = [transform(line) for line in good.read_text("utf-8").splitlines()]
    failed = [json.loads(line) for line in bad.read_text("utf-8").splitlines()]
    return events, failed


def input_case(case_id: str) -> dict:
    if not INPUT_CASES.is_file():
        pytest.skip(f"{INPUT_CASES} not found")
    for line in INPUT_CASES.read_text("utf-8").splitlines():
        case = json.loads(line)
        if case["id"] == case_id:
            return case
    raise AssertionError(f"no case {case_id}")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cloudfront_12_fields.log", "cloudfront"),
        ("cloudfront_23_fields.log", "cloudfront"),
        ("tomcat_15_fields.log", "clj-tomcat"),
        ("tomcat_post.log", "clj-tomcat"),
    ],
)
def test_format_is_recognised_per_file(name: str, expected: str) -> None:
    lines = (DATA / name).read_bytes().splitlines()
    assert detect_format(lines) == expected
    assert detect_format([b'{"v": 1}']) == "plowline"
    assert detect_format([b"e=pv&p=web"]) == "querystring"


def test_cloudfront_double_encoding_is_undone_once(tmp_path: Path) -> None:
    [event], [] = enrich(tmp_path, DATA / "cloudfront_18_fields.log")
    assert event["v_collector"] == "cloudfront"
    assert event["collector_tstamp"] == "2014-01-28T03:41:59.000Z"
    assert event["page_title"] == "Magdalene Oracle - Psychic Bazaar"
    assert event["os_timezone"] == "America/Havana"
    assert event["useragent"] == (
        "Mozilla/5.0 (Windows NT 6.1; Trident/7.0; rv:11.0) like Gecko"
    )
    # The referer's own url= parameter stays encoded once, as the tracker sent it.
    assert "url=http%3A%2F%2Fwww.psychicbazaar.com" in event["page_referrer"]
    assert event["user_ipaddress"] == "67.71.16.237"


def test_cloudfront_single_encoded_period_keeps_literal_percent(tmp_path: Path) -> None:
    [event], [] = enrich(tmp_path, DATA / "cloudfront_15_fields.log")
    assert event["page_title"] == "Introduction - Snowplow Analytics%"
    assert event["page_referrer"].startswith("http://www.metacrawler.com/search/web?")


def test_cloudfront_x_forwarded_for_gives_the_ip(tmp_path: Path) -> None:
    [event], [] = enrich(tmp_path, DATA / "cloudfront_23_fields.log")
    assert event["user_ipaddress"] == "67.71.16.237"
    assert event["name_tracker"] == "sb-cf-pv"
    assert event["event_id"] == "e3793bd1-fcf5-4fbb-bf4c-f0315a5821c3"


def test_cloudfront_bad_platform_is_a_failed_event(tmp_path: Path) -> None:
    [], [failed] = enrich(tmp_path, DATA / "cloudfront_12_fields.log")
    assert failed["data"]["failure"]["messages"][0]["value"] == "mobile"


def test_cloudfront_headers_and_gzip(tmp_path: Path) -> None:
    text = "#Version: 1.0\n#Fields: date time ...\n" + (
        DATA / "cloudfront_18_fields.log"
    ).read_text("utf-8")
    path = tmp_path / "E123.2014-01-28-03.abcd.gz"
    path.write_bytes(gzip.compress(text.encode()))
    events, failed = enrich(tmp_path, path)
    assert (len(events), len(failed)) == (1, 0)


@pytest.mark.parametrize("width", [13, 20, 22, 30])
def test_cloudfront_unknown_width_fails_only_that_line(
    tmp_path: Path, width: int
) -> None:
    good_line = (DATA / "cloudfront_15_fields.log").read_text("utf-8").strip()
    fields = good_line.split()
    odd = "\t".join((fields + ["-"] * 30)[:width])
    path = tmp_path / "mixed.log"
    path.write_text(f"{good_line}\n{odd}\n{good_line}\n")
    events, failed = enrich(tmp_path, path, input_format="cloudfront")
    assert len(events) == 2
    [bad] = failed
    assert bad["schema"].split("/")[1] == "collector_payload_format_violation"
    assert f"{width} fields" in bad["data"]["failure"]["message"]["error"]
    assert bad["data"]["payload"] == odd


def test_cloudfront_non_get_is_refused(tmp_path: Path) -> None:
    line = (
        (DATA / "cloudfront_15_fields.log").read_text("utf-8").replace(" GET ", " PUT ")
    )
    path = tmp_path / "put.log"
    path.write_text(line)
    [], [failed] = enrich(tmp_path, path, input_format="cloudfront")
    assert "not PUT" in failed["data"]["failure"]["message"]["error"]


@pytest.mark.parametrize("case_id", ["B01", "B02"])
def test_cloudfront_bug_report_lines(tmp_path: Path, case_id: str) -> None:
    case = input_case(case_id)
    path = tmp_path / "case.log"
    path.write_text(case["input"] + "\n")
    [event], [] = enrich(tmp_path, path)
    if case_id == "B01":
        assert event["page_title"] == "Home Page"
        assert event["page_url"] == "http://www.example.com/"
        assert event["useragent"] == "Mozilla/5.0 (Windows NT 6.1; WOW64)"
        # The normal, double-encoded form gives the same row.
        double = case["input"].replace("page=Home%20Page", "page=Home%2520Page")
        double = double.replace("url=http%3A%2F%2F", "url=http%253A%252F%252F")
        path.write_text(double + "\n")
        [again], [] = enrich(tmp_path, path)
        assert (again["page_title"], again["page_url"]) == (
            "Home Page",
            "http://www.example.com/",
        )
    else:
        assert event["user_ipaddress"] == "203.0.113.20"
        assert event["page_url"] == "https://www.example.com/pricing"
        assert event["page_title"] == "Pricing"
        assert event["event_id"] == "3f1b6c2e-8d4a-4e7b-9a51-0c2d7e9f1a23"
        assert event["useragent"] == "Mozilla/5.0 (X11; Linux x86_64)"


def test_tomcat_get_lines_of_both_generations(tmp_path: Path) -> None:
    events, failed = enrich(
        tmp_path, DATA / "tomcat_15_fields.log", DATA / "tomcat_17_fields.log"
    )
    assert failed == []
    assert [e["v_collector"] for e in events] == ["clj-tomcat", "clj-tomcat"]
    assert {e["user_ipaddress"] for e in events} == {"37.157.33.123"}
    assert {e["page_title"] for e in events} == {"Introduction - Snowplow Analytics%"}


def test_tomcat_post_body_and_collector_suffix(tmp_path: Path) -> None:
    events, failed = enrich(tmp_path, DATA / "tomcat_post.log")
    assert failed == []  # the OPTIONS preflight is not an event
    assert [e["event"] for e in events] == ["page_view", "struct"]
    for event in events:
        assert event["v_collector"] == "clj-0.7.0-tom-0.1.0"
        assert event["network_userid"] == "5c6c40e4-eff8-409b-9327-471f303e30b6"
        assert event["useragent"] == (
            "python-requests/2.2.1 CPython/3.3.5 Linux/3.2.0-61-generic"
        )
    assert events[1]["se_action"] == "buy"


def test_querystring_lines(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("e=pv&p=web&tv=t&page=One\n\ne=se&p=web&tv=t&se_ca=c&se_ac=a\n")
    events, failed = enrich(tmp_path, path)
    assert failed == []
    assert [e["event"] for e in events] == ["page_view", "struct"]
    assert events[0]["v_collector"] == "querystring"


def test_workers_give_the_same_output_in_the_same_order(tmp_path: Path) -> None:
    lines = [f"e=se&p=web&tv=t&se_ca=c&se_ac=a{n}" for n in range(5000)]
    lines[1234] = "e=zz&p=web&tv=t"
    path = tmp_path / "many.txt"
    path.write_text("\n".join(lines) + "\n")
    outputs = []
    for workers in (1, 2):
        good, bad = tmp_path / f"good{workers}", tmp_path / f"bad{workers}"
        stats = enrich_files([str(path)], str(good), str(bad), workers=workers)
        assert (stats.lines, stats.enriched, stats.failed) == (5000, 4999, 1)
        actions = [line.split("\t")[54] for line in good.read_text().splitlines()]
        outputs.append(actions)
    assert outputs[0] == outputs[1]
    assert outputs[0][:3] == ["a0", "a1", "a2"]
