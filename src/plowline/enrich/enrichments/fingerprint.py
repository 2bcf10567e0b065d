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
from collections.abc import Callable
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


def fingerprint_text(params: dict[str, str], exclude: frozenset[str]) -> str:
    """The text that is hashed: sorted ``name US value US`` pairs."""
    names = [name for name in params if name not in exclude]
    if all(name.isascii() for name in names):
        names.sort()
    else:
        names.sort(key=_utf16_order)
    return "".join(f"{name}{SEPARATOR}{params[name]}{SEPARATOR}" for name in names)


class EventFingerprint(Enrichment):
    name: ClassVar[str] = "event_fingerprint_config"
    accepts: ClassVar[tuple[str, ...]] = ("1-0-*",)

    def __init__(self, exclude: frozenset[str], algorithm: str) -> None:
        self.exclude = exclude
        self.algorithm = algorithm
        self._hash: Callable[[bytes], Any] = getattr(hashlib, ALGORITHMS[algorithm])

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
        text = fingerprint_text(inp.params, self.exclude)
        event["event_fingerprint"] = self._hash(text.encode("utf-8")).hexdigest()
