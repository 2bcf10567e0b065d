"""Cookie and HTTP header extractors: request headers as derived contexts.

``cookie_extractor_config`` reads every ``Cookie`` header of the request and
adds one ``org.ietf/http_cookie`` context per cookie whose name is in the
configured list. ``http_header_extractor_config`` adds one ``org.ietf/http_header``
context per header whose whole name matches the configured regular expression.
Both keep the order of the headers as the collector received them.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar

from plowline.enrich.enrichments.base import Enrichment, EnrichmentInput, Event
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

COOKIE_SCHEMA = "iglu:org.ietf/http_cookie/jsonschema/1-0-0"
HEADER_SCHEMA = "iglu:org.ietf/http_header/jsonschema/1-0-0"
# How many distinct header names the extractors remember their verdict on
# (requests send a few dozen; arbitrary names are not remembered past this).
_NAMES_REMEMBERED = 1024


def parse_cookies(header: str) -> list[tuple[str, str | None]]:
    """The ``(name, value)`` pairs of one Cookie header, in order.

    RFC 6265 style: pairs split on ``;``, name and value trimmed, one pair of
    surrounding double quotes removed from the value; a pair without ``=`` has
    no value (None), and ``=value`` is a cookie with an empty name.
    """
    cookies: list[tuple[str, str | None]] = []
    for token in header.split(";"):
        token = token.strip()
        if not token:
            continue
        name, sep, value = token.partition("=")
        if not sep:
            cookies.append((name.strip(), None))
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies.append((name.strip(), value))
    return cookies


class CookieExtractor(Enrichment):
    name: ClassVar[str] = "cookie_extractor_config"
    accepts: ClassVar[tuple[str, ...]] = ("1-0-*",)

    def __init__(self, cookies: frozenset[str]) -> None:
        self.cookies = cookies
        # Header names as requests spelled them, sorted into "Cookie" and the
        # others: the same few spellings come with every request, and a test
        # of membership is the cheapest step of a loop over every header.
        self._cookie_names: set[str] = set()
        self._other_names: set[str] = set()

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> CookieExtractor:
        cookies = parameters.get("cookies")
        if not isinstance(cookies, list) or not all(
            isinstance(name, str) for name in cookies
        ):
            raise ConfigurationError(
                f"{source}: parameters.cookies must be a list of cookie names "
                f"(strings); found {cookies!r}."
            )
        return cls(frozenset(cookies))

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        cookie_names, other_names = self._cookie_names, self._other_names
        for header, value in inp.record.headers:
            if header in other_names:
                continue
            if header not in cookie_names and not self._is_cookie(header):
                continue
            # A cookie's name is part of the header's text: a header that holds
            # none of the configured names has nothing to extract.
            if not any(map(value.__contains__, self.cookies)):
                continue
            for name, cookie in parse_cookies(value):
                if name in self.cookies:
                    inp.derived_contexts.append(
                        {
                            "schema": COOKIE_SCHEMA,
                            "data": {"name": name, "value": cookie},
                        }
                    )

    def _is_cookie(self, header: str) -> bool:
        """Whether ``header`` names the Cookie header; remembered for the
        first ``_NAMES_REMEMBERED`` spellings."""
        found = header.strip().lower() == "cookie"
        if len(self._cookie_names) + len(self._other_names) < _NAMES_REMEMBERED:
            (self._cookie_names if found else self._other_names).add(header)
        return found


class HttpHeaderExtractor(Enrichment):
    name: ClassVar[str] = "http_header_extractor_config"
    accepts: ClassVar[tuple[str, ...]] = ("1-0-*",)

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        # Header names as requests spelled them: those the pattern matches,
        # with the name to report, and the others (see CookieExtractor).
        self._matched: dict[str, str] = {}
        self._unmatched: set[str] = set()

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> HttpHeaderExtractor:
        text = parameters.get("headersPattern")
        if not isinstance(text, str):
            raise ConfigurationError(
                f"{source}: parameters.headersPattern must be a regular expression "
                f"(a string); found {text!r}."
            )
        try:
            pattern = re.compile(text)
        except re.error as exc:
            raise ConfigurationError(
                f"{source}: parameters.headersPattern {text!r} is not a valid "
                f"regular expression: {exc}."
            ) from exc
        return cls(pattern)

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        # Like Java's String.matches, the pattern must match the whole name
        # (case-sensitively: write (?i) in the pattern to ignore case).
        matched, unmatched = self._matched, self._unmatched
        for header, value in inp.record.headers:
            if header in unmatched:
                continue
            name = matched.get(header) or self._match(header)
            if name is not None:
                inp.derived_contexts.append(
                    {
                        "schema": HEADER_SCHEMA,
                        "data": {"name": name, "value": value.strip()},
                    }
                )

    def _match(self, header: str) -> str | None:
        """The name to report for ``header`` if the pattern matches it;
        remembered for the first ``_NAMES_REMEMBERED`` spellings."""
        stripped = header.strip()
        name = stripped if self.pattern.fullmatch(stripped) else None
        if len(self._matched) + len(self._unmatched) < _NAMES_REMEMBERED:
            if name is None:
                self._unmatched.add(header)
            else:
                self._matched[header] = name
        return name
