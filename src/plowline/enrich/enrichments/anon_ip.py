"""IP anonymisation (``anon_ip``): mask the end of ``user_ipaddress``.

IPv4 keeps its first ``4 - anonOctets`` octets and writes ``x`` for the rest;
IPv6 is first written out in full as Java prints it (eight groups, lower case,
no leading zeros, no ``::``) and keeps its first ``8 - anonSegments`` groups.
Snowplow also masks text that is not an address (spec/enrichment.md 3.2):
anything with a ``.`` is split on dots and masked like IPv4, anything with a
``:`` is split on colons and masked like IPv6 padded to eight groups, and the
rest is left alone. Unlike Snowplow, an address with a port
(``1.2.3.4:8080``, ``[2001:db8::1]:443``) loses the port (and brackets) and is
masked as an address, ``1.2.3.x``: masked as text, it would keep the whole
address. The step runs last among the enrichments that read the
address, so geo lookups and bot checks still see the full one.
"""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache
from typing import Any

from plowline.enrich.enrichments.addresses import without_port
from plowline.enrich.enrichments.base import Enrichment, EnrichmentInput, Event
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

MASK = "x"
_CACHE_SIZE = 65536


def _java_split(text: str, separator: str) -> list[str]:
    # Java's String.split drops trailing empty strings (but "" stays [""]);
    # Snowplow's masking of invalid addresses counts groups that way.
    parts = text.split(separator)
    if len(parts) == 1:
        return parts
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def mask_ipv4_text(text: str, octets: int) -> str:
    """Keep the first ``4 - octets`` dot-separated groups, mask the others
    (the number of groups stays what it was)."""
    groups = _java_split(text, ".")
    keep = min(4 - octets, len(groups))
    return ".".join(groups[:keep] + [MASK] * (len(groups) - keep))


def mask_ipv6_groups(groups: list[str], segments: int) -> str:
    """Keep the first ``8 - segments`` groups and pad with masks to eight."""
    kept = groups[: 8 - segments]
    return ":".join(kept + [MASK] * (8 - len(kept)))


class AnonIp(Enrichment):
    name = "anon_ip"
    accepts = ("1-0-*",)

    def __init__(self, octets: int, segments: int) -> None:
        self.octets = octets
        self.segments = segments
        self.anonymise = lru_cache(maxsize=_CACHE_SIZE)(self._anonymise)

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any], *, source: str) -> AnonIp:
        octets = _count(parameters, "anonOctets", 4, source)
        if octets is None:
            raise ConfigurationError(
                f"{source}: anon_ip needs parameters.anonOctets, a whole number "
                "from 1 to 4; it is missing."
            )
        segments = _count(parameters, "anonSegments", 8, source)
        return cls(octets, segments if segments is not None else octets)

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        ip = event.get("user_ipaddress")
        if ip is not None:
            event["user_ipaddress"] = self.anonymise(ip)

    def _anonymise(self, text: str) -> str:
        if ":" not in text and not text.startswith("["):
            # No colon and no bracket: no IPv6 and no port, and then an IPv4
            # address and text that is not an address both end in the same
            # mask (see _anonymise_parsed), with no need to parse the text.
            if "." in text or text == "":
                return mask_ipv4_text(text, self.octets)
            return text
        return self._anonymise_parsed(text)

    def _anonymise_parsed(self, text: str) -> str:
        """What ``_anonymise`` gives, from the address parsed (any text)."""
        try:
            # A zone ("fe80::1%eth0") names a local interface: it is dropped.
            address = ipaddress.ip_address(text.partition("%")[0])
        except ValueError:
            # An address with a port ("1.2.3.4:8080", "[2001:db8::1]:443"):
            # Snowplow masks it as text that is not an address, which keeps
            # the whole address; Plowline masks the address without the port.
            bare = without_port(text)
            if bare != text and _is_address(bare):
                return self._anonymise(bare)
            return self._anonymise_invalid(text)

        if isinstance(address, ipaddress.IPv4Address):
            return mask_ipv4_text(text, self.octets)
        mapped = address.ipv4_mapped
        if mapped is not None:
            # Java reads ::ffff:a.b.c.d as an IPv4 address: Snowplow keeps the
            # prefix as written and masks the IPv4 part with anonOctets.
            prefix = text[: text.rfind(":") + 1] if "." in text else "::ffff:"
            return prefix + mask_ipv4_text(str(mapped), self.octets)
        groups = [format(int(g, 16), "x") for g in address.exploded.split(":")]
        return mask_ipv6_groups(groups, self.segments)

    def _anonymise_invalid(self, text: str) -> str:
        if ":" in text:
            return mask_ipv6_groups(_java_split(text, ":"), self.segments)
        if "." in text or text == "":
            return mask_ipv4_text(text, self.octets)
        return text


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return False
    return True


def _count(parameters: dict[str, Any], key: str, top: int, source: str) -> int | None:
    value = parameters.get(key)
    if value is None:
        return None
    # The 1-0-1 schema types anonOctets as "number": 2.0 is accepted, 2.5 is not.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{source}: parameters.{key} must be a whole number from 1 to {top}, "
            f"not {value!r}."
        )
    # Also refuses inf and nan (what JSON's 1e400 and the like become).
    whole = isinstance(value, int) or value.is_integer()
    if not whole or not 1 <= value <= top:
        raise ConfigurationError(
            f"{source}: parameters.{key} must be a whole number from 1 to {top}, "
            f"not {value!r}."
        )
    return int(value)
