"""referer_parser: spec/enrichment.md 3.4 with a test database and the shipped one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from fixture_traffic import SHARED
from plowline.enrich.enrichments.base import EnrichmentInput
from plowline.enrich.enrichments.referer_parser import RefererParser
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

DATA = Path(__file__).resolve().parent.parent / "data" / "enrichments"
RECORD = RawRecord(id="r", tstamp=0, collector="c", method="GET", path="/i")
MY_DOMAIN = {"search": {"MyDomain": {"domains": ["acme.com"]}}}


def parser(**overrides: Any) -> RefererParser:
    params: dict[str, Any] = {
        "internalDomains": [" www.internaldomain.com "],
        "uri": str(DATA),
        "database": "referer-tests.json",
        "referrers": MY_DOMAIN,
    }
    params.update(overrides)
    return RefererParser.from_parameters(params, source="r.json")


def refr(
    enrichment: RefererParser, referrer: str | None, page_host: str = "shop.example"
) -> tuple[str | None, str | None, str | None]:
    event: dict[str, str | None] = {
        "page_referrer": referrer,
        "page_urlhost": page_host,
    }
    enrichment.enrich(event, EnrichmentInput(params={}, record=RECORD))
    return event.get("refr_medium"), event.get("refr_source"), event.get("refr_term")


def test_golden_rows_of_snowplow_cases() -> None:
    path = SHARED / "fixtures" / "snowplow_cases.jsonl"
    if not path.is_file():
        message = f"Snowplow cases not found: {path} (set PLOWLINE_SHARED)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    enrichment, checked = parser(), 0
    for line in path.read_text("utf-8").splitlines():
        case = json.loads(line)
        if case["input_format"] != "referer_uri":
            continue
        given, expected = json.loads(case["input"]), case["expected"]
        got = refr(enrichment, given["page_referrer"], given["page_urlhost"])
        wanted = (
            expected["refr_medium"],
            expected["refr_source"],
            expected["refr_term"],
        )
        assert got == wanted, case["id"]
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        ("http://www.google.com/search?q=gateway+oracle+cards+denise+linn&hl=en",
         ("search", "Google", "gateway oracle cards denise linn")),
        ("https://www.google.co.uk/url?sa=t&query=first&q=second",
         ("search", "Google", "first")),
        ("https://google.com/?hl=en", ("search", "Google", None)),
        ("https://google.com/?q=", ("search", "Google", None)),
        ("https://google.com/?q=caf%C3%A9%20au+lait",
         ("search", "Google", "café au lait")),
        ("https://google.com/?q=50%off", ("search", "Google", "50%off")),
        ("https://google.com/imgres/x/y?q=cat", ("search", "Google Images", "cat")),
        ("https://a.b.google.com/", ("search", "Google", None)),
        ("https://support.google.com/a", ("unknown", None, None)),
        ("https://m.facebook.com:8443/story?id=1", ("social", "Facebook", None)),
        ("android-app://chatgpt.com/x", ("chatbot", "ChatGPT", None)),
        ("http://www.acme.com?whatever", ("search", "MyDomain", None)),
        ("http://shop.example/cart", ("internal", None, None)),
        ("http://www.internaldomain.com/", ("internal", None, None)),
        ("http://unknown.example/page", ("unknown", None, None)),
        ("http://[2001:db8::1]/", ("unknown", None, None)),
    ],
)  # fmt: skip
def test_classification(
    referrer: str, expected: tuple[str | None, str | None, str | None]
) -> None:
    assert refr(parser(), referrer) == expected


@pytest.mark.parametrize(
    "referrer",
    [None, "", "ftp://www.google.com/", "www.google.com/search?q=x", "mailto:a@b",
     "http:///path-only", "not a url at all", "\x00\x01"],
)  # fmt: skip
def test_unclassifiable_referrers_set_nothing(referrer: str | None) -> None:
    assert refr(parser(), referrer) == (None, None, None)


def test_huge_referrer() -> None:
    long_host = "a." * 20_000 + "google.com"
    assert refr(parser(), f"https://{long_host}/?q=" + "x" * 100_000)[:2] == (
        "search",
        "Google",
    )


def test_extra_referrers_win_over_the_database() -> None:
    extra = {"paid": {"Google Ads": {"domains": ["google.com"]}}}
    assert refr(parser(referrers=extra), "https://google.com/?q=a") == (
        "paid",
        "Google Ads",
        None,
    )


def test_builtin_database() -> None:
    shipped = parser(uri="builtin:", database="referers.json", referrers=None)
    assert refr(shipped, "http://www.google.com/search?q=plough") == (
        "search",
        "Google",
        "plough",
    )
    assert refr(shipped, "https://www.facebook.com/")[:2] == ("social", "Facebook")
    assert refr(shipped, "http://x.c.yom.mail.yahoo.net/om/api")[:2] == (
        "email",
        "Yahoo! Mail",
    )


def test_yaml_database_needs_pyyaml(tmp_path: Path) -> None:
    (tmp_path / "referers.yml").write_text("search: {}\n")
    try:
        import yaml  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigurationError) as caught:
            parser(uri=str(tmp_path), database="referers.yml")
        assert str(caught.value).endswith(
            "is YAML, which needs PyYAML (pip install pyyaml); or give it as JSON."
        )
    else:
        assert refr(parser(uri=str(tmp_path), database="referers.yml"), "http://a.b/")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"internalDomains": None}, "r.json: referer_parser needs parameters."
         "internalDomains, a list of host names (may be empty), not None."),
        ({"internalDomains": "a.com"}, "not 'a.com'."),
        ({"extra": 1}, "r.json: referer_parser has unknown parameters ['extra']; "
         "expected internalDomains, database, uri and referrers."),
        ({"uri": "http://snowplow-hosted-assets.s3.amazonaws.com/third-party/"},
         "remote databases must be downloaded first and uri set to their "
         "directory (a path or a file:// URI)."),
        ({"database": "missing.json"}, "/missing.json' does not exist; use "
         "\"uri\": \"builtin:\" for the one installed with Plowline, or download one."),
        ({"database": "ua-rules.json"}, "ua-rules.json: medium "
         "'user_agent_parsers': expected medium -> source -> "
         "{\"domains\": [strings], \"parameters\": [strings]}."),
        ({"referrers": {"search": {"X": {"domains": []}}}},
         "r.json: parameters.referrers: search/X: expected medium"),
        ({"referrers": {"search": {"X": {"domains": ["a"], "params": ["q"]}}}},
         "r.json: parameters.referrers: search/X: expected medium"),
        ({"referrers": ["a"]}, "r.json: parameters.referrers: not an object; "
         "expected medium"),
    ],
)  # fmt: skip
def test_bad_configuration_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parser(**overrides)
    text = str(caught.value)
    assert text.startswith("r.json") and message in text


def test_invalid_json_database(tmp_path: Path) -> None:
    (tmp_path / "referers.json").write_text("{not json")
    with pytest.raises(ConfigurationError) as caught:
        parser(uri=str(tmp_path), database="referers.json")
    assert f"the referer database '{tmp_path}/referers.json' is not valid JSON" in str(
        caught.value
    )
