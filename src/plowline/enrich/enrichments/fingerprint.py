"""Event fingerprint (``event_fingerprint_config``): a hash of the tracker
parameters, so that duplicates of one event can be found downstream.

The parameters of the event (after the POST body and querystring are merged,
values decoded) are sorted by name, the excluded names dropped, and each
remaining pair written as ``name US value US`` (US = U+001F, the unit
separator). The hex digest of that text, in lower case, is the fingerprint.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any, ClassVar

from plowline.enrich.enrichments.base import Enrichment, EnrichmentInput, Event
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

SEPARATOR = "\x1f"
# The configuration's names for the algorithms (Iglu Central's enum).
ALGORITHMS: dict[str, str] = {
    "MD5": "md5",
    "SHA1": "sha1",
    "SHA256": "sha256",
    "SHA384": "sha384",
    "SHA512": "sha512",
}


def _utf16_order(name: str) -> bytes:
    # Snowplow sorts JVM strings, which compare by UTF-16 code unit; that order
    # differs from Python's code-point order only past U+FFFF.
    return name.encode("utf-16-be")


# The names to hash, in order, as a template of the text's parts and the
# getter of the values: each name with the separators around it, then a
# placeholder for its value (the name again, until filled), then a last US.
Plan = tuple[list[str], "itemgetter[Any] | None"]
# How many parameter lists (names in the order sent) the enrichment keeps the
# plan of: events of one tracker send the same names in the same order.
PLANS_KEPT = 1024


def text_plan(names: Iterable[str], exclude: frozenset[str]) -> Plan:
    """How to write the text for parameters named ``names``."""
    kept = sorted(set(names) - exclude)
    if not "".join(kept).isascii():
        kept.sort(key=_utf16_order)
    if not kept:
        return [], None
    template: list[str] = []
    for index, name in enumerate(kept):
        template.append((SEPARATOR if index else "") + name + SEPARATOR)
        template.append(name)
    template.append(SEPARATOR)
    return template, itemgetter(*kept)


def planned_text(plan: Plan, params: dict[str, str]) -> str:
    """The text to hash for ``params``, whose names ``plan`` was made for."""
    template, getter = plan
    if getter is None:
        return ""
    # The values put in their places by slice assignment and the parts
    # joined, all in C: this runs for every event, and a loop over the pairs
    # cost twice as much. The separators are in the template's parts: a join
    # with none is the cheapest.
    parts = template.copy()
    values = getter(params)
    parts[1:-1:2] = values if len(template) > 3 else (values,)
    return "".join(parts)


def fingerprint_text(params: dict[str, str], exclude: frozenset[str]) -> str:
    """The text that is hashed: sorted ``name US value US`` pairs."""
    return planned_text(text_plan(params, exclude), params)


class EventFingerprint(Enrichment):
    name: ClassVar[str] = "event_fingerprint_config"
    accepts: ClassVar[tuple[str, ...]] = ("1-0-*",)

    def __init__(self, exclude: frozenset[str], algorithm: str) -> None:
        self.exclude = exclude
        self.algorithm = algorithm
        self._hash: Callable[[bytes], Any] = getattr(hashlib, ALGORITHMS[algorithm])
        # Parameter names in the order sent -> the plan of their text: sorting
        # the names was half the cost of a fingerprint.
        self._plans: dict[tuple[str, ...], Plan] = {}

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> EventFingerprint:
        algorithm = parameters.get("hashAlgorithm")
        if algorithm not in ALGORITHMS:
            raise ConfigurationError(
                f"{source}: parameters.hashAlgorithm must be one of "
                f"{', '.join(ALGORITHMS)}; found {algorithm!r}."
            )
        exclude = parameters.get("excludeParameters")
        if not isinstance(exclude, list) or not all(
            isinstance(item, str) for item in exclude
        ):
            raise ConfigurationError(
                f"{source}: parameters.excludeParameters must be a list of "
                f"tracker parameter names (strings); found {exclude!r}."
            )
        return cls(frozenset(exclude), algorithm)

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        params = inp.params
        names = tuple(params)
        plan = self._plans.get(names)
        if plan is None:
            plan = text_plan(names, self.exclude)
            if len(self._plans) >= PLANS_KEPT:
                self._plans.clear()
            self._plans[names] = plan
        text = planned_text(plan, params)
        event["event_fingerprint"] = self._hash(text.encode()).hexdigest()
