"""What every enrichment is: its configuration entry point and its per-event call.

An enrichment is built once from the ``data.parameters`` object of its
Snowplow configuration file (``from_parameters``) and then called for every
event (``enrich``).  It changes the event's fields in place, appends the
self-describing contexts it derives to ``EnrichmentInput.derived_contexts``,
and raises ``EnrichmentError`` for a failure that must fail the event (an
``enrichment_failures`` failed event naming the field and the value).
Anything else it raises is a fault of Plowline: the pipeline turns it into a
generic failed event and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from plowline.enrich.failed import Message, field_message
from plowline.rawlog.record import RawRecord

# Fields of the enriched event by name, values as their TSV text (None = empty).
Event = dict[str, str | None]

# Snowplow's order inside one event (spec/enrichment.md section 2.2); the
# names are the ``data.name`` of the configuration files.
ORDER: tuple[str, ...] = (
    "iab_spiders_and_robots_enrichment",
    "user_agent_utils_config",
    "ua_parser_config",
    "currency_conversion_config",
    "referer_parser",
    "campaign_attribution",
    "cross_navigation_config",
    "event_fingerprint_config",
    "cookie_extractor_config",
    "http_header_extractor_config",
    "ip_lookups",
    "asn_lookups",
    "bot_detection_enrichment_config",
    "bot_detection_config",
    "python_enrichment_config",
    "anon_ip",
    "pii_enrichment_config",
)


@dataclass(slots=True)
class EnrichmentInput:
    """What an enrichment may read besides the event's own fields."""

    params: dict[str, str]  # the event's tracker parameters, after the POST merge
    record: RawRecord  # the request it came in (headers, IP, user agent...)
    derived_contexts: list[dict[str, Any]] = field(default_factory=list)
    # Events an enrichment emits besides this one (PII's pii_transformation
    # event, with the original values): each a dict of enriched fields, enriched
    # no further, for the separate PII output (never the enriched one).
    extra_events: list[Event] = field(default_factory=list)


class EnrichmentError(Exception):
    """The event cannot be enriched: it becomes an enrichment failure."""

    def __init__(self, message: Message) -> None:
        super().__init__(message.get("expectation") or str(message))
        self.message = message

    @classmethod
    def for_field(
        cls, name: str, value: str | None, expectation: str
    ) -> EnrichmentError:
        return cls(field_message(name, value, expectation))


class Enrichment:
    """Base class: subclasses set ``name`` and implement both methods."""

    name: ClassVar[str]  # data.name in the configuration file
    # How enrichment_failures name it (Snowplow's identifiers, e.g.
    # "ua-parser"); ``name`` when not set.
    identifier: ClassVar[str | None] = None
    # The schema versions accepted (SchemaVer with "*" as wildcard), as Snowplow
    # accepts them, e.g. ("1-0-*",).
    accepts: ClassVar[tuple[str, ...]] = ("1-0-*",)
    # The Iglu URI of the configuration it was built from (set by the loader).
    schema_key: str | None = None

    def identity(self) -> dict[str, str] | None:
        """Who failed, in the shape of an enrichment_failures message."""
        if self.schema_key is None:
            return None
        return {
            "schemaKey": self.schema_key,
            "identifier": self.identifier or self.name,
        }

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any], *, source: str) -> Enrichment:
        """Build from ``data.parameters``; raise ``ConfigurationError`` naming
        ``source`` (the file), the field and what was expected."""
        raise NotImplementedError

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        raise NotImplementedError

    @property
    def emits_events(self) -> bool:
        """Whether it may add to ``EnrichmentInput.extra_events``."""
        return False


class FixedSettings:
    """For an enrichment that caches what its settings give: the settings
    named in ``fixed`` are set once, when it is built (as an Enricher's
    configuration is); setting one again raises AttributeError, where a cache
    would otherwise go on answering from the old value. Build a new
    enrichment instead."""

    fixed: ClassVar[frozenset[str]] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.fixed and name in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.{name} is fixed when the enrichment is "
                "built (its results are cached); build a new one instead"
            )
        object.__setattr__(self, name, value)
