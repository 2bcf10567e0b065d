"""Bot labelling: events from crawlers, monitors and automated browsers get a
context saying so. Events are labelled, never dropped.

Two enrichments live here:

``bot_detection_config`` (Plowline, ``io.plowline/bot_detection_config``) matches
the user agent against the crawler-user-agents list (the ``crawler-user-agents``
package: about 1,500 regular expressions, each with a description and tags)
plus patterns of your own, and also takes the signals other enrichments leave:
Snowplow's client-side detection context, the IAB context and the ASN context's
``likelyBot``. It adds ``io.plowline/bot_detection`` {bot, category, indicators}
to every event; each indicator names the rule that fired.

``bot_detection_enrichment_config`` (Snowplow's) only combines the YAUAA, IAB,
ASN and client-side signals into ``com.snowplowanalytics.snowplow/bot_detection``
{bot, indicators}, as Snowplow does.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson

from plowline.enrich.enrichments.base import Enrichment, EnrichmentInput, Event
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

SCHEMA = "iglu:io.plowline/bot_detection/jsonschema/1-0-0"
SNOWPLOW_SCHEMA = "iglu:com.snowplowanalytics.snowplow/bot_detection/jsonschema/1-0-1"
CLIENT_SIDE_PREFIX = "iglu:com.snowplowanalytics.snowplow/client_side_bot_detection/"
IAB_PREFIX = "iglu:com.iab.snowplow/spiders_and_robots/"
ASN_PREFIX = "iglu:com.snowplowanalytics.snowplow/asn/"
YAUAA_PREFIX = "iglu:nl.basjes/yauaa_context/"
YAUAA_ROBOT_DEVICES = frozenset({"Robot", "Robot Mobile", "Robot Imitator"})
YAUAA_ROBOT_AGENTS = frozenset({"Robot", "Robot Mobile"})
LIST_NAME = "crawler-user-agents"
# The list's tags, most telling first, and the category each gives.
TAG_CATEGORIES = (
    ("ai-crawler", "ai_crawler"),
    ("search-engine", "search_crawler"),
    ("monitoring", "monitor"),
    ("browser-automation", "headless_browser"),
    ("http-library", "http_client"),
    ("social-preview", "link_preview"),
    ("feed-reader", "feed_reader"),
    ("archiver", "archiver"),
    ("scanner", "security_scanner"),
    ("academic", "research_crawler"),
    ("advertising", "ad_crawler"),
    ("seo", "seo_crawler"),
)
CATEGORIES = frozenset(c for _, c in TAG_CATEGORIES) | {"other_crawler"}
# What entities() looks for in the contexts' text before reading their JSON.
_CLIENT_SIDE_MARK = CLIENT_SIDE_PREFIX[5:]
# The derived contexts that bot_detection_config reads.
_SIGNAL_PREFIXES = (IAB_PREFIX, ASN_PREFIX)
SCHEMAS_KEPT = 1024  # schemas of other derived contexts remembered
_CHUNK = 64  # patterns per combined regex: one search rejects 64 at once


@dataclass(frozen=True, slots=True)
class Rule:
    """One user-agent pattern and what a match means."""

    pattern: str
    category: str
    source: str  # "user_agent_list" or "custom_pattern"
    description: str | None = None
    tags: tuple[str, ...] = ()

    def indicator(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rule": self.pattern,
            "detail": self.description,
            "tags": list(self.tags),
        }


def category_of(tags: tuple[str, ...]) -> str:
    return next((c for tag, c in TAG_CATEGORIES if tag in tags), "other_crawler")


def list_rules(path: Path | None = None) -> list[Rule]:
    """The crawler-user-agents list as rules: the installed package's file, or
    a file in the same format (a JSON array of {pattern, description, tags})."""
    if path is None:
        text = (
            importlib.resources.files("crawleruseragents")
            .joinpath("crawler-user-agents.json")
            .read_text("utf-8")
        )
    else:
        text = path.read_text("utf-8")
    rules = []
    for entry in json.loads(text):
        tags = tuple(entry.get("tags") or ())
        rules.append(
            Rule(entry["pattern"], category_of(tags), "user_agent_list",
                 entry.get("description"), tags)
        )  # fmt: skip
    return rules


class UserAgentMatcher:
    """The first rule whose pattern is found in a user agent (rules in order),
    with a cache per user agent."""

    def __init__(
        self, rules: list[Rule], ignore: list[re.Pattern[str]], cache_size: int
    ) -> None:
        self.ignore = ignore
        # Each pattern alone first, so that a bad one is named in the error.
        single = [(re.compile(rule.pattern), rule) for rule in rules]
        self.chunks = [
            (re.compile("|".join(f"(?:{r.pattern})" for _, r in part)), part)
            for part in (single[i : i + _CHUNK] for i in range(0, len(single), _CHUNK))
        ]
        self.match: Callable[[str], Rule | None] = functools.lru_cache(
            maxsize=cache_size
        )(self._match)

    def _match(self, useragent: str) -> Rule | None:
        if any(pattern.search(useragent) for pattern in self.ignore):
            return None
        for combined, members in self.chunks:
            if combined.search(useragent):
                for pattern, rule in members:
                    if pattern.search(useragent):
                        return rule
        return None


def entities(text: str | None, prefix: str) -> Iterator[dict[str, Any]]:
    """The data of the entities in a contexts column whose schema starts with
    ``prefix``; the JSON is read only when the prefix occurs in it."""
    if not text or prefix[5:] not in text:
        return
    for entity in orjson.loads(text).get("data") or []:
        if isinstance(entity, dict) and str(entity.get("schema")).startswith(prefix):
            data = entity.get("data")
            if isinstance(data, dict):
                yield data


# Beyond this, the cache's size no longer fits the cache (an OverflowError).
MAX_CACHE_SIZE = 10**9


def derived(inp: EnrichmentInput, prefix: str) -> Iterator[dict[str, Any]]:
    for entity in inp.derived_contexts:
        if str(entity.get("schema")).startswith(prefix):
            data = entity.get("data")
            if isinstance(data, dict):
                yield data


def _flag(parameters: dict[str, Any], name: str, default: bool, source: str) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise ConfigurationError(
            f"{source}: parameters.{name} must be true or false; found {value!r}."
        )
    return value


def _regex(text: Any, where: str, source: str) -> re.Pattern[str]:
    if not isinstance(text, str):
        raise ConfigurationError(
            f"{source}: {where} must be a regular expression (a string); "
            f"found {text!r}."
        )
    try:
        return re.compile(text)
    except re.error as exc:
        raise ConfigurationError(
            f"{source}: {where} {text!r} is not a valid regular expression: {exc}."
        ) from exc


def _custom_rule(entry: Any, where: str, source: str) -> Rule:
    if not isinstance(entry, dict):
        raise ConfigurationError(
            f"{source}: {where} must be an object {{pattern, category, "
            f"description}}; found {entry!r}."
        )
    pattern = _regex(entry.get("pattern"), f"{where}.pattern", source).pattern
    category = entry.get("category", "other_crawler")
    if category not in CATEGORIES:
        raise ConfigurationError(
            f"{source}: {where}.category must be one of "
            f"{', '.join(sorted(CATEGORIES))}; found {category!r}."
        )
    description = entry.get("description")
    return Rule(pattern, category, "custom_pattern", description)


def _list(parameters: dict[str, Any], name: str, source: str) -> list[Any]:
    value = parameters.get(name, [])
    if not isinstance(value, list):
        raise ConfigurationError(
            f"{source}: parameters.{name} must be a list; found {value!r}."
        )
    return value


class BotDetection(Enrichment):
    name: ClassVar[str] = "bot_detection_config"
    accepts: ClassVar[tuple[str, ...]] = ("1-0-*",)

    def __init__(
        self,
        matcher: UserAgentMatcher | None,
        *,
        client_side: bool = True,
        iab: bool = True,
        asn: bool = True,
    ) -> None:
        self.matcher = matcher
        self.client_side = client_side
        self.iab = iab
        self.asn = asn
        self._built_from: tuple[dict[str, Any], str] = ({}, "<defaults>")
        # Schemas of derived contexts that carry no signal: a few, on every
        # event (ua_parser_context, http_header...).
        self._quiet_schemas: set[str] = set()

    def __reduce__(self) -> tuple[Any, ...]:
        # The per-user-agent cache does not pickle: a worker process builds
        # the enrichment again from the same parameters.
        return (_rebuild, self._built_from)

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> BotDetection:
        rules = [
            _custom_rule(entry, f"parameters.extraPatterns[{i}]", source)
            for i, entry in enumerate(_list(parameters, "extraPatterns", source))
        ]
        ignore = [
            _regex(text, f"parameters.ignorePatterns[{i}]", source)
            for i, text in enumerate(_list(parameters, "ignorePatterns", source))
        ]
        if _flag(parameters, "useUserAgentList", True, source):
            rules += _load_list(parameters.get("userAgentListFile"), source)
        size = parameters.get("cacheSize", 10_000)
        if (
            not isinstance(size, int)
            or isinstance(size, bool)
            or not 0 <= size <= MAX_CACHE_SIZE
        ):
            raise ConfigurationError(
                f"{source}: parameters.cacheSize must be a whole number of user "
                f"agents from 0 to {MAX_CACHE_SIZE}; found {size!r}."
            )
        try:
            matcher = UserAgentMatcher(rules, ignore, size) if rules else None
        except re.error as exc:
            raise ConfigurationError(
                f"{source}: a pattern of the user-agent list "
                f"({parameters.get('userAgentListFile') or LIST_NAME}), "
                f"{exc.pattern!r}, is not a valid regular expression: {exc}."
            ) from exc
        enrichment = cls(
            matcher,
            client_side=_flag(parameters, "useClientSideDetection", True, source),
            iab=_flag(parameters, "useIab", True, source),
            asn=_flag(parameters, "useAsnLookups", True, source),
        )
        enrichment._built_from = (parameters, source)
        return enrichment

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        indicators: list[dict[str, Any]] = []
        category = None
        useragent = event.get("useragent")
        if self.matcher is not None and useragent:
            rule = self.matcher.match(useragent)
            if rule is not None:
                indicators.append(rule.indicator())
                category = rule.category
        self._add_other_signals(event, inp, indicators)
        if indicators and category is None:
            category = "headless_browser" if _automated(indicators) else "other_crawler"
        data = {"bot": bool(indicators), "category": category, "indicators": indicators}
        inp.derived_contexts.append({"schema": SCHEMA, "data": data})

    def _add_other_signals(
        self, event: Event, inp: EnrichmentInput, found: list[dict[str, Any]]
    ) -> None:
        """The client-side signals, then the IAB ones, then the ASN ones,
        appended to ``found``, from one pass over the derived contexts."""
        if self.client_side:
            # entities() reads the JSON only when the prefix occurs in it: the
            # test is made here first, which spares a generator per event.
            text = event.get("contexts")
            if text and _CLIENT_SIDE_MARK in text:
                for data in entities(text, CLIENT_SIDE_PREFIX):
                    if data.get("bot") is True:
                        found.append(
                            _signal("client_side_detection", "bot", data.get("kind"))
                        )
        if not (self.iab or self.asn):
            return
        quiet = self._quiet_schemas
        asn: list[dict[str, Any]] = []
        for entity in inp.derived_contexts:
            schema = entity.get("schema")
            if type(schema) is str and schema in quiet:
                continue  # one of the few schemas of every event, no signal
            schema = str(schema)
            if not schema.startswith(_SIGNAL_PREFIXES):
                if len(quiet) < SCHEMAS_KEPT:
                    quiet.add(schema)
                continue
            values = entity.get("data")
            if not isinstance(values, dict):
                continue
            if schema.startswith(IAB_PREFIX):
                if self.iab and values.get("spiderOrRobot") is True:
                    found.append(_signal("iab", "spiderOrRobot", values.get("reason")))
            elif self.asn and values.get("likelyBot") is True:
                number = str(values.get("number"))
                asn.append(_signal("asn_lookups", "likelyBot", number))
        found += asn


def _rebuild(parameters: dict[str, Any], source: str) -> BotDetection:
    return BotDetection.from_parameters(parameters, source=source)


def _signal(source: str, rule: str, detail: Any) -> dict[str, Any]:
    return {"source": source, "rule": rule, "detail": detail, "tags": []}


def _automated(indicators: list[dict[str, Any]]) -> bool:
    return any(i["source"] == "client_side_detection" for i in indicators)


def _load_list(path: Any, source: str) -> list[Rule]:
    if path is not None and not isinstance(path, str):
        raise ConfigurationError(
            f"{source}: parameters.userAgentListFile must be a file path; "
            f"found {path!r}."
        )
    try:
        return list_rules(Path(path) if path else None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        where = path or f"the installed {LIST_NAME} package"
        raise ConfigurationError(
            f"{source}: cannot read the user-agent list from {where}: it must be "
            f"a JSON array of {{pattern, description, tags}} objects ({exc})."
        ) from exc


class SnowplowBotDetection(Enrichment):
    """Snowplow's ``bot_detection_enrichment_config``: the verdicts of other
    enrichments (YAUAA, IAB, ASN) and of the tracker's client-side plugin."""

    name: ClassVar[str] = "bot_detection_enrichment_config"
    accepts: ClassVar[tuple[str, ...]] = ("1-0-*",)
    FLAGS: ClassVar[tuple[str, ...]] = (
        "useYauaa", "useIab", "useAsnLookups", "useClientSideDetection",
    )  # fmt: skip

    def __init__(self, enabled: frozenset[str]) -> None:
        self.enabled = enabled

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> SnowplowBotDetection:
        for required in cls.FLAGS[:3]:
            if required not in parameters:
                raise ConfigurationError(
                    f"{source}: parameters.{required} is required (true or false)."
                )
        return cls(
            frozenset(f for f in cls.FLAGS if _flag(parameters, f, False, source))
        )

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        signals = {
            "yauaa": "useYauaa" in self.enabled
            and any(_yauaa_robot(d) for d in derived(inp, YAUAA_PREFIX)),
            "iab": "useIab" in self.enabled
            and any(d.get("spiderOrRobot") is True for d in derived(inp, IAB_PREFIX)),
            "asnLookups": "useAsnLookups" in self.enabled
            and any(d.get("likelyBot") is True for d in derived(inp, ASN_PREFIX)),
            "clientSideDetection": "useClientSideDetection" in self.enabled
            and any(
                d.get("bot") is True
                for d in entities(event.get("contexts"), CLIENT_SIDE_PREFIX)
            ),
        }
        indicators = [name for name, fired in signals.items() if fired]
        inp.derived_contexts.append(
            {
                "schema": SNOWPLOW_SCHEMA,
                "data": {"bot": bool(indicators), "indicators": indicators},
            }
        )


def _yauaa_robot(data: dict[str, Any]) -> bool:
    return (
        data.get("deviceClass") in YAUAA_ROBOT_DEVICES
        or data.get("agentClass") in YAUAA_ROBOT_AGENTS
    )
