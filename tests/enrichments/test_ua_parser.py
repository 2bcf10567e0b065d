"""ua_parser_config: the ua_parser_context entity, built-in and custom rules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ua_parser.loaders import load_yaml

from fixture_traffic import SHARED
from plowline.enrich.enrichments.base import EnrichmentInput
from plowline.enrich.enrichments.ua_parser import SCHEMA, UaParser
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

DATA = Path(__file__).resolve().parent.parent / "data" / "enrichments"
RECORD = RawRecord(id="r", tstamp=0, collector="c", method="GET", path="/i")
FIREFOX_12 = "Mozilla/5.0 (Windows NT 6.1; WOW64; rv:12.0) Gecko/20100101 Firefox/12.0"


def contexts(enrichment: UaParser, ua: str | None) -> list[dict[str, Any]]:
    inp = EnrichmentInput(params={}, record=RECORD)
    enrichment.enrich({"useragent": ua}, inp)
    return inp.derived_contexts


def data(ua: str | None, enrichment: UaParser | None = None) -> dict[str, Any]:
    found = contexts(enrichment or UaParser.from_parameters({}, source="u.json"), ua)
    assert len(found) == 1 and found[0]["schema"] == SCHEMA
    return found[0]["data"]


def test_firefox_on_windows_7() -> None:
    assert data(FIREFOX_12) == {
        "useragentFamily": "Firefox",
        "useragentMajor": "12",
        "useragentMinor": "0",
        "useragentPatch": None,
        "useragentVersion": "Firefox 12.0",
        "osFamily": "Windows",
        "osMajor": "7",
        "osMinor": None,
        "osPatch": None,
        "osPatchMinor": None,
        "osVersion": "Windows 7",
        "deviceFamily": "Other",
    }


def test_chrome_on_mac_has_every_version_part() -> None:
    found = data(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_6_8) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/31.0.1650.8 Safari/537.36"
    )
    assert found["useragentVersion"] == "Chrome 31.0.1650"
    assert found["osVersion"] == "Mac OS X 10.6.8"
    assert found["useragentPatch"] == "1650"


def test_unknown_agent_is_other_everywhere() -> None:
    found = data("Ruby")
    assert found["useragentFamily"] == found["osFamily"] == "Other"
    assert found["useragentVersion"] == found["osVersion"] == "Other"
    assert found["deviceFamily"] == "Other" and found["useragentMajor"] is None


@pytest.mark.parametrize("ua", [None, ""])
def test_no_user_agent_gives_no_context(ua: str | None) -> None:
    assert contexts(UaParser.from_parameters({}, source="u.json"), ua) == []


@pytest.mark.parametrize(
    "ua", ["\x00\x01garbage", "x" * 200_000, "(" * 5000, "Mozilla/5.0 (" + "é" * 9000]
)
def test_garbage_and_huge_agents_still_parse(ua: str) -> None:
    assert data(ua)["useragentFamily"] == "Other"


def test_contexts_are_fresh_dicts() -> None:
    enrichment = UaParser.from_parameters({}, source="u.json")
    data(FIREFOX_12, enrichment)["osFamily"] = "changed"
    assert data(FIREFOX_12, enrichment)["osFamily"] == "Windows"


def test_golden_contexts_of_snowplow_cases() -> None:
    path = SHARED / "fixtures" / "snowplow_cases.jsonl"
    if not path.is_file():
        message = f"Snowplow cases not found: {path} (set PLOWLINE_SHARED)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    checked = 0
    for line in path.read_text("utf-8").splitlines():
        expected = json.loads(line)["expected"]
        text = expected.get("derived_contexts") or ""
        if "ua_parser_context" not in text:
            continue
        wanted = [c["data"] for c in json.loads(text)["data"] if c["schema"] == SCHEMA]
        assert data(expected["useragent"]) == wanted[0]
        checked += 1
    assert checked >= 3


def custom(database: str) -> UaParser:
    return UaParser.from_parameters(
        {"database": database, "uri": f"file://{DATA}"}, source="u.json"
    )


def test_custom_rules_file() -> None:
    enrichment = custom("ua-rules.json")
    found = data("PlowBot/3.1.4 (PlowOS 9.8.7.6; PlowPhone)", enrichment)
    assert found["useragentVersion"] == "PlowBot 3.1.4"
    assert found["osVersion"] == "PlowOS 9.8.7.6"
    assert found["osPatchMinor"] == "6"
    assert found["deviceFamily"] == "Plow Phone"
    assert data("Furrow/2", enrichment)["useragentFamily"] == "Furrow Browser"
    # Only the custom rules apply.
    assert data(FIREFOX_12, enrichment)["useragentFamily"] == "Other"


def test_yaml_rules_need_pyyaml(tmp_path: Path) -> None:
    rules = tmp_path / "regexes.yaml"
    rules.write_text(
        "user_agent_parsers:\n  - regex: '(Harrow)/(\\d+)'\n"
        "os_parsers: []\ndevice_parsers: []\n"
    )
    params = {"database": "regexes.yaml", "uri": str(tmp_path)}
    if load_yaml is None:
        with pytest.raises(ConfigurationError) as caught:
            UaParser.from_parameters(params, source="u.json")
        assert str(caught.value) == (
            f"u.json: the ua-parser rules file '{rules}' is YAML, which needs "
            "PyYAML (pip install pyyaml); or give the same rules as JSON."
        )
    else:
        enrichment = UaParser.from_parameters(params, source="u.json")
        assert data("Harrow/5", enrichment)["useragentVersion"] == "Harrow 5"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"regexes": "x"},
            "u.json: ua_parser_config has unknown parameters ['regexes']; "
            "expected none, or database and uri of a custom rules file.",
        ),
        (
            {"database": "regexes.yaml"},
            "u.json: ua_parser_config needs both database and uri to use a custom "
            "rules file, or neither to use the built-in rules.",
        ),
        (
            {"database": "regexes.yaml", "uri": "https://example.com/uap"},
            "remote databases must be downloaded first and uri set to their "
            "directory (a path or a file:// URI).",
        ),
        (
            {"database": "missing.json", "uri": "/nonexistent"},
            "u.json: the ua-parser rules file '/nonexistent/missing.json' does "
            "not exist.",
        ),
    ],
)
def test_bad_configuration_is_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        UaParser.from_parameters(params, source="u.json")
    assert str(caught.value).endswith(message)


@pytest.mark.parametrize(
    ("database", "error"),
    [
        ("ua-rules-bad-regex.json", "(error: missing ), unterminated subpattern"),
        ("ua-rules-wrong-layout.json", "(KeyError: 'user_agent_parsers')."),
    ],
)
def test_unusable_rules_file_is_refused(database: str, error: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        custom(database)
    assert f"u.json: the ua-parser rules file '{DATA / database}' is not usable" in (
        str(caught.value)
    )
    assert error in str(caught.value)
