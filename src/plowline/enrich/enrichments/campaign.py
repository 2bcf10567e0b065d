"""Campaign attribution (``campaign_attribution`` 1-0-*): the mkt_* fields.

Reads the page URL's querystring (``page_urlquery``, not the tracker
parameters; spec/enrichment.md 3.5). For each of mkt_medium, mkt_source,
mkt_term, mkt_content and mkt_campaign the configured parameter names are
tried in order and the first one present in the querystring gives the value
(present with an empty value still counts; a repeated name gives its last
value). Click ids: Snowplow's default map (gclid Google, msclkid Microsoft,
dclid DoubleClick) extended or overridden by ``mktClickId`` (1-0-1); the first
listed parameter present gives mkt_clickid (its value) and mkt_network.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from plowline.enrich.convert import tsv_safe
from plowline.enrich.enrichments.base import (
    Enrichment,
    EnrichmentInput,
    Event,
    FixedSettings,
)
from plowline.enrich.urls import parse_querystring
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

DEFAULT_CLICK_IDS: tuple[tuple[str, str], ...] = (
    ("gclid", "Google"),
    ("msclkid", "Microsoft"),
    ("dclid", "DoubleClick"),
)
# The fields of this many page querystrings are kept, of querystrings up to
# this length: pages are viewed again and again with the same querystring.
QUERIES_KEPT = 4096
QUERY_LENGTH_KEPT = 512
# Configuration key -> enriched field.
FIELDS = (
    ("mktMedium", "mkt_medium"),
    ("mktSource", "mkt_source"),
    ("mktTerm", "mkt_term"),
    ("mktContent", "mkt_content"),
    ("mktCampaign", "mkt_campaign"),
)


class CampaignAttribution(FixedSettings, Enrichment):
    fixed = frozenset({"names", "click_ids", "wanted"})
    name = "campaign_attribution"
    accepts = ("1-0-*",)

    def __init__(
        self,
        names: dict[str, tuple[str, ...]],
        click_ids: tuple[tuple[str, str], ...] = DEFAULT_CLICK_IDS,
    ) -> None:
        # names: enriched field -> querystring parameter names, in precedence order
        self.names = names
        self.click_ids = click_ids
        self.wanted = frozenset(
            [n for group in names.values() for n in group] + [p for p, _ in click_ids]
        )
        self._kept_fields = lru_cache(maxsize=QUERIES_KEPT)(self.fields_for)

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> CampaignAttribution:
        unknown = sorted(set(parameters) - {"mapping", "fields"})
        if unknown:
            raise ConfigurationError(
                f"{source}: campaign_attribution has unknown parameters {unknown}; "
                "expected fields and optionally mapping."
            )
        mapping = parameters.get("mapping")
        if mapping not in (None, "static", "script"):
            raise ConfigurationError(
                f'{source}: parameters.mapping must be "static", "script" or '
                f"null, not {mapping!r}."
            )
        fields = parameters.get("fields")
        if not isinstance(fields, dict):
            raise ConfigurationError(
                f"{source}: campaign_attribution needs parameters.fields, an object "
                "with mktMedium, mktSource, mktTerm, mktContent and mktCampaign "
                f"(lists of parameter names), not {fields!r}."
            )
        extra = sorted(set(fields) - {key for key, _ in FIELDS} - {"mktClickId"})
        if extra:
            raise ConfigurationError(
                f"{source}: parameters.fields has unknown keys {extra}."
            )
        names = {field: _names(fields, key, source) for key, field in FIELDS}
        return cls(names, _click_ids(fields.get("mktClickId"), source))

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        query = event.get("page_urlquery")
        if not query:
            return
        if len(query) <= QUERY_LENGTH_KEPT:
            event.update(self._kept_fields(query))
        else:
            event.update(self.fields_for(query))

    def fields_for(self, query: str) -> tuple[tuple[str, str | None], ...]:
        """The mkt_* fields that the page querystring ``query`` gives, in the
        order they are set."""
        # Only the names some rule asks for are kept; the last occurrence wins.
        present = {n: v for n, v in parse_querystring(query) if n in self.wanted}
        if not present:
            return ()

        found: list[tuple[str, str | None]] = []
        for field, names in self.names.items():
            for name in names:
                if name in present:
                    found.append((field, _text(present[name])))
                    break
        for param, network in self.click_ids:
            if param in present:
                found.append(("mkt_clickid", _text(present[param])))
                found.append(("mkt_network", network))
                break
        return tuple(found)


def _text(value: str | None) -> str | None:
    return tsv_safe(value) if value else None


def _names(fields: dict[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = fields.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(
            f"{source}: parameters.fields.{key} must be a list of querystring "
            f"parameter names (may be empty), not {value!r}."
        )
    return tuple(value)


def _click_ids(value: Any, source: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return DEFAULT_CLICK_IDS
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigurationError(
            f"{source}: parameters.fields.mktClickId must map querystring "
            f"parameter names to network names, not {value!r}."
        )
    merged = dict(DEFAULT_CLICK_IDS)
    merged.update(value)  # an override keeps its place; new names come last
    return tuple(merged.items())
