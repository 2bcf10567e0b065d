"""user_agent_utils_config: legacy br_*/os_*/dvce_* columns from ua-parser."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import pytest

from fixture_traffic import SHARED
from plowline.enrich.enrichments.base import EnrichmentInput
from plowline.enrich.enrichments.user_agent_utils import FIELDS, UserAgentUtils
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

RECORD = RawRecord(id="r", tstamp=0, collector="c", method="GET", path="/i")


def fields(ua: str | None) -> dict[str, str | None]:
    event: dict[str, str | None] = {"useragent": ua}
    enrichment = UserAgentUtils.from_parameters({}, source="uau.json")
    enrichment.enrich(event, EnrichmentInput(params={}, record=RECORD))
    return {name: event.get(name) for name in FIELDS}


def row(*values: str | None) -> dict[str, str | None]:
    return dict(zip(FIELDS, values, strict=True))


def test_golden_rows_of_snowplow_cases() -> None:
    path = SHARED / "fixtures" / "snowplow_cases.jsonl"
    if not path.is_file():
        message = f"Snowplow cases not found: {path} (set PLOWLINE_SHARED)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    checked = 0
    for line in path.read_text("utf-8").splitlines():
        case: dict[str, Any] = json.loads(line)
        expected = case["expected"]
        if not expected.get("br_family") or not expected.get("useragent"):
            continue
        wanted = {name: expected.get(name) for name in FIELDS}
        assert fields(expected["useragent"]) == wanted, case["id"]
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (
            "Mozilla/5.0 (Linux; Android 13; SM-S901B) AppleWebKit/537.36 (KHTML, "
            "like Gecko) Chrome/112.0.0.0 Mobile Safari/537.36",
            row("Chrome Mobile", "Chrome", "112.0.0.0", "Browser (mobile)", "WEBKIT",
                "Android 13.x", "Android", "Google Inc.", "Mobile", "1"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 12; SM-X700) AppleWebKit/537.36 (KHTML, "
            "like Gecko) Chrome/110.0.0.0 Safari/537.36",
            row("Chrome 110", "Chrome", "110.0.0.0", "Browser", "WEBKIT",
                "Android 12.x Tablet", "Android", "Google Inc.", "Tablet", "1"),
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 16_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/16.5 Mobile/15E148 Safari/604.1",
            row("Mobile Safari", "Safari", "16.5", "Browser (mobile)", "WEBKIT",
                "iOS 16 (iPad)", "iOS", "Apple Inc.", "Tablet", "1"),
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
            "like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
            row("Microsoft Edge 120", "Microsoft Edge", "120.0.0.0", "Browser",
                "WEBKIT", "Windows 10", "Windows", "Microsoft Corporation",
                "Computer", "0"),
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
            "like Gecko) Chrome/52.0.2743.116 Safari/537.36 Edge/15.15063",
            row("Microsoft Edge 15", "Microsoft Edge", "15.15063", "Browser",
                "EDGE_HTML", "Windows 10", "Windows", "Microsoft Corporation",
                "Computer", "0"),
        ),
        (
            "Opera/9.80 (Windows NT 6.1; U; en) Presto/2.10.289 Version/12.02",
            row("Opera 12", "Opera", "12.02", "Browser", "PRESTO", "Windows 7",
                "Windows", "Microsoft Corporation", "Computer", "0"),
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:75.0) Gecko/20100101 Firefox/75.0",
            row("Firefox 75", "Firefox", "75.0", "Browser", "GECKO", "Linux",
                "Linux", "Other", "Computer", "0"),
        ),
        (
            "curl/8.4.0",
            row("Robot/Spider", "Robot/Spider", None, "Robot", "OTHER", "Unknown",
                "Unknown", "Other", "Unknown", "0"),
        ),
    ],
)  # fmt: skip
def test_common_agents(ua: str, expected: dict[str, str | None]) -> None:
    assert fields(ua) == expected


@pytest.mark.parametrize("ua", [None, ""])
def test_no_user_agent_sets_nothing(ua: str | None) -> None:
    assert fields(ua) == dict.fromkeys(FIELDS)


@pytest.mark.parametrize("ua", ["\x01\x02", "z" * 300_000, "Mozilla/5.0 (((((("])
def test_garbage_is_unknown(ua: str) -> None:
    assert fields(ua) == row("Unknown", "Unknown", None, "unknown", "OTHER",
                             "Unknown", "Unknown", "Other", "Unknown", "0")  # fmt: skip


def test_deprecation_is_logged_at_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        UserAgentUtils.from_parameters({}, source="uau.json")
    assert "uau.json: user_agent_utils_config is deprecated" in caplog.text


def test_parameters_are_refused() -> None:
    with pytest.raises(ConfigurationError) as caught:
        UserAgentUtils.from_parameters({"cache": 1}, source="uau.json")
    assert str(caught.value) == (
        "uau.json: user_agent_utils_config takes no parameters, but ['cache'] "
        "were given."
    )
