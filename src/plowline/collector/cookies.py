"""The network-user cookie (protocol.md §2.4) and the do-not-track cookie (§2.5).

Everything that does not depend on the request is built once: the attribute
tail of ``Set-Cookie`` for each (domain, scheme) pair, and the do-not-track
pattern.
"""

from __future__ import annotations

import re
from email.utils import formatdate

from plowline.collector.config import CollectorConfig


def cookie_value(cookie_headers: list[bytes], name: bytes) -> bytes | None:
    """The value of the first cookie called ``name``, without its quotes."""
    for header in cookie_headers:
        for part in header.split(b";"):
            key, sep, value = part.strip().partition(b"=")
            if sep and key.strip() == name:
                return value.strip().strip(b'"')
    return None


def request_host(host_header: str) -> str:
    """The host of a ``Host`` header, lower-cased, without port or final dot."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0].rstrip(".")


class CookieSetter:
    """Builds the ``Set-Cookie`` value of the network-user cookie."""

    def __init__(self, config: CollectorConfig) -> None:
        self._name = config.cookie_name
        self._head = f"Path={config.cookie_path}; Max-Age={config.cookie_max_age}"
        self._max_age = config.cookie_max_age
        # (matched host, ".host" suffix) per configured domain, in order.
        self._domains = tuple(
            (bare, "." + bare)
            for bare in (d.strip().lstrip(".").lower() for d in config.cookie_domains)
        )
        choices = [*config.cookie_domains, config.cookie_domain]
        # _tails[i][secure]: domain i of cookie_domains, the last one the fallback.
        self._tails = tuple(
            (_attributes(config, domain, False), _attributes(config, domain, True))
            for domain in choices
        )
        self._expires_cache: tuple[int, str] = (-1, "")

    def header(
        self, userid: str, now: float, *, https: bool, host: str | None
    ) -> bytes:
        """The header value for ``userid``; ``host`` is the request's Host header."""
        expires = self._expires(int(now) + self._max_age)
        tail = self._tails[self._domain_index(host)][https]
        cookie = f"{self._name}={userid}; {self._head}; Expires={expires}; {tail}"
        return cookie.encode("ascii")

    def _domain_index(self, host: str | None) -> int:
        # The first configured domain that is the host or a parent of it.
        if self._domains and host:
            bare_host = request_host(host)
            for index, (bare, suffix) in enumerate(self._domains):
                if bare_host == bare or bare_host.endswith(suffix):
                    return index
        return len(self._domains)

    def _expires(self, moment: int) -> str:
        # Formatting an HTTP date costs more than the rest of the cookie; it
        # changes once a second.
        cached_moment, text = self._expires_cache
        if cached_moment != moment:
            text = formatdate(moment, usegmt=True)
            self._expires_cache = (moment, text)
        return text


def _attributes(config: CollectorConfig, domain: str | None, https: bool) -> str:
    parts = []
    if domain:
        parts.append(f"Domain={domain}")
    same_site = config.cookie_same_site
    if same_site is None:
        # Browsers drop SameSite=None without Secure, and drop Secure cookies
        # that arrive over plain http: so by default both follow the scheme.
        same_site = "None" if https else "Lax"
    parts.append(f"SameSite={same_site.capitalize()}")
    secure = https if config.cookie_secure is None else config.cookie_secure
    if secure:
        parts.append("Secure")
    if config.cookie_http_only:
        parts.append("HttpOnly")
    return "; ".join(parts)


class DoNotTrack:
    """Matches the do-not-track cookie: its value equal to the configured one,
    or matching it in full as a regular expression, or any value when none is
    configured."""

    def __init__(self, name: str, value: str | None, *, regex: bool) -> None:
        self._name = name.encode("ascii")
        self._exact = None if value is None or regex else value
        self._pattern = re.compile(value) if regex and value is not None else None

    @classmethod
    def from_config(cls, config: CollectorConfig) -> DoNotTrack | None:
        if config.do_not_track_cookie_name is None:
            return None
        return cls(
            config.do_not_track_cookie_name,
            config.do_not_track_cookie_value,
            regex=config.do_not_track_cookie_regex,
        )

    def matches(self, cookie_headers: list[bytes]) -> bool:
        if not cookie_headers:
            return False
        raw = cookie_value(cookie_headers, self._name)
        if raw is None:
            return False
        value = raw.decode("utf-8", "replace")
        if self._pattern is not None:
            return self._pattern.fullmatch(value) is not None
        return self._exact is None or value == self._exact
