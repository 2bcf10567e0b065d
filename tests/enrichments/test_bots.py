"""Bot labelling: real user agents, the signals of other enrichments, and the
contexts checked against their JSON Schemas."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft4Validator

from fixture_traffic import SHARED
from plowline.enrich.enrichments.base import EnrichmentInput, Event
from plowline.enrich.enrichments.bots import BotDetection, SnowplowBotDetection
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

REPO = Path(__file__).resolve().parent.parent.parent
DATA = REPO / "tests" / "data" / "enrichments-more"
EMBEDDED = REPO / "src" / "plowline" / "iglu" / "embedded" / "schemas"
IGLU_CENTRAL = SHARED / "data" / "iglu-central" / "schemas"
RECORD = RawRecord(id="r1", tstamp=0, collector="t", method="GET", path="/i")
CX = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
CLIENT_SIDE = (
    "iglu:com.snowplowanalytics.snowplow/client_side_bot_detection/jsonschema/1-0-0"
)
IAB = "iglu:com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0"
ASN = "iglu:com.snowplowanalytics.snowplow/asn/jsonschema/1-0-1"

HUMANS = {
    "chrome-windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "firefox-linux": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 "
    "Firefox/133.0",
    "safari-mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "safari-iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "chrome-android": "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "edge": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
}
BOTS = [
    ("googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; "
     "+http://www.google.com/bot.html)", "search_crawler", "Googlebot\\/"),
    ("bingbot", "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; "
     "bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 "
     "Safari/537.36", "search_crawler", "bingbot"),
    ("uptimerobot", "Mozilla/5.0+(compatible; UptimeRobot/2.0; "
     "http://www.uptimerobot.com/)", "monitor", "UptimeRobot"),
    ("headless-chrome", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, "
     "like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36", "headless_browser",
     "HeadlessChrome"),
    ("gptbot", "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; "
     "GPTBot/1.2; +https://openai.com/gptbot)", "ai_crawler", "GPTBot"),
    ("claudebot", "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; "
     "ClaudeBot/1.0; +claudebot@anthropic.com)", "ai_crawler", "[cC]laude[bB]ot"),
    ("perplexitybot", "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; "
     "PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)", "ai_crawler",
     "PerplexityBot\\/"),
    ("curl", "curl/8.5.0", "http_client", "^curl"),
]  # fmt: skip


def schema(root: Path, uri: str) -> Draft4Validator:
    path = root / uri.removeprefix("iglu:")
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return Draft4Validator(json.loads(path.read_text()))


def label(
    enrichment: BotDetection | SnowplowBotDetection,
    event: Event,
    derived: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    inp = EnrichmentInput({}, RECORD, list(derived or []))
    enrichment.enrich(event, inp)
    context = inp.derived_contexts[-1]
    root = (
        EMBEDDED if context["schema"].startswith("iglu:io.plowline") else IGLU_CENTRAL
    )
    schema(root, context["schema"]).validate(context["data"])
    return dict(context["data"])


@pytest.fixture(scope="module")
def detector() -> BotDetection:
    return BotDetection.from_parameters({}, source="bots.json")


@pytest.mark.parametrize("useragent", HUMANS.values(), ids=HUMANS.keys())
def test_browsers_of_people_are_not_bots(
    detector: BotDetection, useragent: str
) -> None:
    data = label(detector, {"useragent": useragent})
    assert data == {"bot": False, "category": None, "indicators": []}


@pytest.mark.parametrize(
    ("useragent", "category", "pattern"),
    [pytest.param(*case[1:], id=case[0]) for case in BOTS],
)
def test_bots_are_labelled_with_rule_and_category(
    detector: BotDetection, useragent: str, category: str, pattern: str
) -> None:
    data = label(detector, {"useragent": useragent})
    assert data["bot"] is True
    assert data["category"] == category
    (indicator,) = data["indicators"]
    assert indicator["source"] == "user_agent_list"
    assert indicator["rule"] == pattern
    assert indicator["detail"]


def test_client_side_detection_context_labels_the_event(detector: BotDetection) -> None:
    entity = {"schema": CLIENT_SIDE, "data": {"bot": True, "kind": "selenium"}}
    contexts = orjson.dumps({"schema": CX, "data": [entity]}).decode()
    data = label(
        detector, {"useragent": HUMANS["chrome-windows"], "contexts": contexts}
    )
    assert data == {
        "bot": True,
        "category": "headless_browser",
        "indicators": [
            {"source": "client_side_detection", "rule": "bot", "detail": "selenium",
             "tags": []}
        ],
    }  # fmt: skip


def test_iab_and_asn_signals_are_honoured(detector: BotDetection) -> None:
    derived = [
        {"schema": IAB, "data": {"spiderOrRobot": True, "category": "SPIDER_OR_ROBOT",
                                 "reason": "FAILED_IP_EXCLUDE",
                                 "primaryImpact": "UNKNOWN"}},
        {"schema": ASN, "data": {"number": 16509, "organization": "AMAZON-02",
                                 "likelyBot": True}},
    ]  # fmt: skip
    data = label(detector, {"useragent": HUMANS["edge"]}, derived)
    assert data["category"] == "other_crawler"
    assert [(i["source"], i["detail"]) for i in data["indicators"]] == [
        ("iab", "FAILED_IP_EXCLUDE"),
        ("asn_lookups", "16509"),
    ]


def test_own_list_extra_and_ignored_patterns() -> None:
    detector = BotDetection.from_parameters(
        {
            "userAgentListFile": str(DATA / "bot_list.json"),
            "extraPatterns": [{"pattern": "AcmeLoad/", "category": "monitor"}],
            "ignorePatterns": ["Scrapy/2\\.11 \\(internal\\)"],
            "cacheSize": 0,
        },
        source="bots.json",
    )
    assert label(detector, {"useragent": "AcmeLoad/1.0"})["indicators"][0] == {
        "source": "custom_pattern", "rule": "AcmeLoad/", "detail": None, "tags": []
    }  # fmt: skip
    monitor = label(detector, {"useragent": "AcmeInternalMonitor/3"})
    assert monitor["category"] == "monitor"
    other = label(detector, {"useragent": "scrapy/2.0"})
    assert other["category"] == "other_crawler"
    assert label(detector, {"useragent": "Scrapy/2.11 (internal)"})["bot"] is False
    # The list in the file replaces the installed one.
    assert label(detector, {"useragent": "curl/8.5.0"})["bot"] is False


def test_no_user_agent_gives_a_plain_label(detector: BotDetection) -> None:
    assert label(detector, {"useragent": None})["bot"] is False


def test_verdicts_are_cached_per_user_agent(detector: BotDetection) -> None:
    assert detector.matcher is not None
    detector.matcher.match("curl/1")
    detector.matcher.match("curl/1")
    assert detector.matcher.match.cache_info().hits >= 1  # type: ignore[attr-defined]


def test_detector_survives_pickling_for_worker_processes(
    detector: BotDetection,
) -> None:
    copy = pickle.loads(pickle.dumps(BotDetection.from_parameters({}, source="b")))
    assert label(copy, {"useragent": "curl/8.5.0"})["bot"] is True


def test_snowplow_enrichment_combines_other_signals() -> None:
    enrichment = SnowplowBotDetection.from_parameters(
        {"useYauaa": True, "useIab": False, "useAsnLookups": True,
         "useClientSideDetection": True},
        source="sp.json",
    )  # fmt: skip
    yauaa = {"schema": "iglu:nl.basjes/yauaa_context/jsonschema/1-0-5",
             "data": {"deviceClass": "Robot"}}  # fmt: skip
    iab = {"schema": IAB, "data": {"spiderOrRobot": True}}
    entity = {"schema": CLIENT_SIDE, "data": {"bot": True}}
    contexts = orjson.dumps({"schema": CX, "data": [entity]}).decode()
    data = label(enrichment, {"contexts": contexts}, [yauaa, iab])
    assert data == {"bot": True, "indicators": ["yauaa", "clientSideDetection"]}
    assert label(enrichment, {}) == {"bot": False, "indicators": []}


@pytest.mark.parametrize(
    ("name", "root"),
    [("bot_detection_config.json", EMBEDDED),
     ("bot_detection_enrichment_config.json", IGLU_CENTRAL)],
)  # fmt: skip
def test_example_configurations_are_valid(name: str, root: Path) -> None:
    document = json.loads((DATA / "configs" / name).read_text())
    schema(root, document["schema"]).validate(document["data"])
    cls = BotDetection if "plowline" in document["schema"] else SnowplowBotDetection
    assert document["data"]["name"] == cls.name
    cls.from_parameters(document["data"]["parameters"], source=name)


P = "bots.json: parameters."


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"useUserAgentList": "yes"}, P + "useUserAgentList must be true or false; "
         "found 'yes'."),
        ({"extraPatterns": {"a": 1}}, P + "extraPatterns must be a list; found "
         "{'a': 1}."),
        ({"extraPatterns": ["Bot"]}, P + "extraPatterns[0] must be an object "
         "{pattern, category, description}; found 'Bot'."),
        ({"extraPatterns": [{"pattern": "Bot("}]}, P + "extraPatterns[0].pattern "
         "'Bot(' is not a valid regular expression: missing ), unterminated "
         "subpattern at position 3."),
        ({"extraPatterns": [{"pattern": "Bot", "category": "robot"}]},
         P + "extraPatterns[0].category must be one of ad_crawler, ai_crawler, "
         "archiver, feed_reader, headless_browser, http_client, link_preview, "
         "monitor, other_crawler, research_crawler, search_crawler, "
         "security_scanner, seo_crawler; found 'robot'."),
        ({"ignorePatterns": [3]}, P + "ignorePatterns[0] must be a regular "
         "expression (a string); found 3."),
        ({"cacheSize": -1}, P + "cacheSize must be a whole number of user agents "
         "from 0 to 1000000000; found -1."),
        ({"userAgentListFile": str(DATA / "bot_list_bad_pattern.json")},
         "bots.json: a pattern of the user-agent list (" + str(DATA) +
         "/bot_list_bad_pattern.json), 'Acme(', is not a valid regular expression: "
         "missing ), unterminated subpattern at position 4."),
        ({"userAgentListFile": str(DATA / "rates.csv")},
         "bots.json: cannot read the user-agent list from " + str(DATA) +
         "/rates.csv: it must be a JSON array of {pattern, description, tags} "
         "objects (Expecting value: line 1 column 1 (char 0))."),
    ],
    ids=["flag", "extra-not-list", "extra-not-object", "extra-bad-regex",
         "extra-category", "ignore-not-string", "cache-size", "list-bad-regex",
         "list-not-json"],
)  # fmt: skip
def test_bad_configuration_is_refused(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        BotDetection.from_parameters(parameters, source="bots.json")
    assert str(error.value) == message


def test_snowplow_flags_are_required() -> None:
    with pytest.raises(ConfigurationError) as error:
        SnowplowBotDetection.from_parameters({"useYauaa": True}, source="sp.json")
    assert str(error.value) == (
        "sp.json: parameters.useIab is required (true or false)."
    )
