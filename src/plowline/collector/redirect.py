"""Click redirects (``GET /r/tp2?u=...``, protocol.md §2.7): which targets may be
answered with a ``302``.

A collector that redirects anywhere is an open redirect: a link on a trusted
domain that sends people to any site. So only http and https targets on hosts
of the configured allow-list are followed, and with an empty list (the default)
none is. The request is recorded either way: the click happened.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

# Host names as browsers resolve them, after urlsplit lower-cased them.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# Visible ASCII without '\': browsers read '\' as '/' in http(s) URLs, which
# urlsplit does not, so the two could disagree about the host.
_TARGET_BYTES = re.compile(rb"[\x21-\x5b\x5d-\x7e]+")

MISSING = "redirect refused: the querystring has no u parameter naming the target"
INVALID = (
    "redirect refused: the target in u is not an absolute http or https URL "
    "of visible ASCII characters"
)
OFF_LIST = "redirect refused: the target's host is not on the collector's allow-list"
DISABLED = (
    "redirect refused: redirects are turned off (no host is allowed; see "
    "PLOWLINE_COLLECTOR_REDIRECT_ALLOWED_HOSTS)"
)


@dataclass(frozen=True, slots=True)
class Decision:
    """Either a ``location`` to answer 302 with, or the ``refusal`` for a 400."""

    location: bytes | None
    refusal: str | None = None


class RedirectPolicy:
    """The allow-list: ``shop.example`` allows that host only, ``*.shop.example``
    every host below it (not ``shop.example`` itself)."""

    def __init__(self, allowed_hosts: Iterable[str]) -> None:
        exact, suffixes = set(), []
        for entry in allowed_hosts:
            host = _bare_host(entry.lower())
            if host.startswith("["):
                host = _bracketed(host[1:-1]) or host
            if host.startswith("*."):
                suffixes.append(host[1:])
            else:
                exact.add(host)
        self._exact = frozenset(exact)
        self._suffixes = tuple(suffixes)
        self._enabled = bool(exact or suffixes)

    def decide(self, target: bytes | None) -> Decision:
        """What to answer for ``target``, the percent-decoded ``u`` parameter."""
        if target is None:
            return Decision(None, MISSING)
        host = _target_host(target)
        if host is None:
            return Decision(None, INVALID)
        if not self._enabled:
            return Decision(None, DISABLED)
        if host in self._exact or host.endswith(self._suffixes):
            return Decision(target)
        return Decision(None, OFF_LIST)


def _bare_host(host: str) -> str:
    # 'shop.example.' and 'shop.example' are the same host to a browser.
    return host[:-1] if host.endswith(".") else host


def _bracketed(address: str) -> str | None:
    # One spelling per IPv6 address, so that '[0::1]' matches '[::1]'.
    try:
        return "[" + str(ipaddress.IPv6Address(address)) + "]"
    except ValueError:
        return None


def _target_host(target: bytes) -> str | None:
    """The host of an absolute http(s) URL, or None for anything else."""
    if not _TARGET_BYTES.fullmatch(target):
        return None
    try:
        parts = urlsplit(target.decode("ascii"))
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    if ":" in host:
        return _bracketed(host)
    if not _HOST_NAME.fullmatch(host):
        return None
    return _bare_host(host)
