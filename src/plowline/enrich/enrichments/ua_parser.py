"""ua-parser (``ua_parser_config`` 1-0-*): the ``ua_parser_context`` entity.

The event's ``useragent`` is parsed with the ``ua-parser`` package (uap-core
rules, matched by its Rust accelerator ``ua-parser-rs`` when installed) into
``iglu:com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0``.
The ``ua`` tracker parameter has already replaced the collector's user agent
in that field. Version texts are composed as Snowplow composes them:
``family`` + `` major`` + ``.minor`` + ``.patch`` (+ ``.patchMinor`` for the
OS), each part left out with its separator when absent; absent parts are
JSON null and an unknown family is ``Other``.

Parameters (1-0-1): optional ``database`` + ``uri`` naming a custom rules file
in uap-core's ``regexes.yaml`` layout (YAML needs PyYAML; JSON with the same
keys always works).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import ua_parser
from ua_parser import Domain, Matchers, Result
from ua_parser.loaders import load_json, load_lazy_builtins, load_yaml

from plowline.enrich.enrichments.base import Enrichment, EnrichmentInput, Event
from plowline.enrich.enrichments.databases import require_file, resolve_database
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

SCHEMA = "iglu:com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0"
CACHE_SIZE = 16384

Parse = Callable[[str], Result]


def make_parser(matchers: Matchers) -> Parse:
    """A cached parse function over ``matchers`` (Rust-backed when possible)."""
    resolver_class = ua_parser.RegexResolver
    if resolver_class is None:
        logger.warning(
            "ua-parser-rs is not installed: user agents are parsed in pure Python,"
            " much more slowly (pip install ua-parser[regex])"
        )
        resolver_class = ua_parser.BasicResolver
    resolver = resolver_class(matchers)

    def parse(ua: str) -> Result:
        return resolver(ua, Domain.ALL).complete()

    return lru_cache(maxsize=CACHE_SIZE)(parse)


@lru_cache(maxsize=1)
def builtin_parse() -> Parse:
    """The parse function with ua-parser's own rules, shared by every user."""
    return make_parser(load_lazy_builtins())


def _joined(family: str, parts: tuple[str | None, ...]) -> str:
    # Snowplow: family, then " major", then ".minor" and so on; an absent part
    # is skipped together with its separator.
    text = family
    for index, part in enumerate(parts):
        if part is not None:
            text += (" " if index == 0 else ".") + part
    return text


def context_data(result: Result) -> dict[str, Any]:
    """The ua_parser_context data for one parse result."""
    full = result.with_defaults()
    agent, os, device = full.user_agent, full.os, full.device
    return {
        "useragentFamily": agent.family,
        "useragentMajor": agent.major,
        "useragentMinor": agent.minor,
        "useragentPatch": agent.patch,
        "useragentVersion": _joined(
            agent.family, (agent.major, agent.minor, agent.patch)
        ),
        "osFamily": os.family,
        "osMajor": os.major,
        "osMinor": os.minor,
        "osPatch": os.patch,
        "osPatchMinor": os.patch_minor,
        "osVersion": _joined(os.family, (os.major, os.minor, os.patch, os.patch_minor)),
        "deviceFamily": device.family,
    }


class UaParser(Enrichment):
    name = "ua_parser_config"
    accepts = ("1-0-*",)

    def __init__(self, parse: Parse) -> None:
        self.parse = parse
        self._data = lru_cache(maxsize=CACHE_SIZE)(self._context_data)

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any], *, source: str) -> UaParser:
        unknown = sorted(set(parameters) - {"database", "uri"})
        if unknown:
            raise ConfigurationError(
                f"{source}: ua_parser_config has unknown parameters {unknown}; "
                "expected none, or database and uri of a custom rules file."
            )
        if not parameters:
            return cls(builtin_parse())
        if set(parameters) != {"database", "uri"}:
            raise ConfigurationError(
                f"{source}: ua_parser_config needs both database and uri to use "
                "a custom rules file, or neither to use the built-in rules."
            )
        path = resolve_database(
            parameters["uri"], parameters["database"], source=source, section="rules"
        )
        return cls(make_parser(load_rules(path, source)))

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        ua = event.get("useragent")
        if not ua:
            return
        inp.derived_contexts.append({"schema": SCHEMA, "data": dict(self._data(ua))})

    def _context_data(self, ua: str) -> dict[str, Any]:
        return context_data(self.parse(ua))


def load_rules(path: Path, source: str) -> Matchers:
    """Custom uap-core rules from ``path`` (YAML or JSON)."""
    require_file(path, source=source, what="the ua-parser rules file")
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    if is_yaml and load_yaml is None:
        raise ConfigurationError(
            f"{source}: the ua-parser rules file {str(path)!r} is YAML, which "
            "needs PyYAML (pip install pyyaml); or give the same rules as JSON."
        )
    try:
        matchers = load_yaml(path) if is_yaml and load_yaml else load_json(path)
        make_parser(matchers)("")  # every rule is compiled here, not per event
    except Exception as exc:  # the loaders raise anything from KeyError to re.error
        raise ConfigurationError(
            f"{source}: the ua-parser rules file {str(path)!r} is not usable: it "
            "must follow uap-core's layout (user_agent_parsers, os_parsers, "
            "device_parsers: lists of rules with a valid regex) "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    logger.info("ua_parser_config: rules from %s", path)
    return matchers
