"""Settings of the collector, from command-line options or the environment.

The order is: a command-line option, then the environment variable
``PLOWLINE_COLLECTOR_<FIELD>`` (for example ``PLOWLINE_COLLECTOR_PORT``), then the
default written here.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from plowline.errors import ConfigurationError
from plowline.rawlog.writer import Durability

ENV_PREFIX = "PLOWLINE_COLLECTOR_"

# RFC 6265 cookie-name is an RFC 7230 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Everything one collector process needs; every field has a usable default."""

    host: str = "127.0.0.1"
    port: int = 8080
    raw_dir: Path = Path("plowline-data/raw")
    workers: int = 1
    cookie_enabled: bool = True
    cookie_name: str = "sp"
    cookie_domain: str | None = None
    cookie_path: str = "/"
    cookie_max_age: int = 365 * 24 * 3600
    max_body_bytes: int = 1024 * 1024
    rotate_max_bytes: int = 64 * 1024 * 1024
    rotate_max_age_seconds: float = 3600.0
    # --- Where records go and when they count as stored (docs/raw-log.md) ---
    # rawlog, stdout or nats; with nats the raw log is the spool for outages.
    sink: str = "rawlog"
    # os: answer once the record is handed to the system; fsync: once on disk.
    durability: str = "os"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = "PLOWLINE_RAW"
    nats_subject: str = "plowline.raw"
    nats_timeout_seconds: float = 2.0
    # --- HTTP behaviour: cookie, do-not-track, redirects, client address, limits,
    # metrics and the tracker script (documented in docs/collector.md) ---
    # Domains matched against the request's Host; cookie_domain is the fallback.
    cookie_domains: tuple[str, ...] = ()
    # None follows the scheme: Secure and SameSite=None over https, Lax over http.
    cookie_secure: bool | None = None
    cookie_same_site: str | None = None
    cookie_http_only: bool = True
    do_not_track_cookie_name: str | None = None
    do_not_track_cookie_value: str | None = None
    do_not_track_cookie_regex: bool = False
    redirect_allowed_hosts: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    proxy_header: str = "x-forwarded-for"
    max_querystring_bytes: int = 20480
    max_header_bytes: int = 40960
    metrics_enabled: bool = True
    metrics_dir: Path | None = None
    tracker_max_age: int = 24 * 3600

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"Collector port {self.port} is not in 0-65535.")
        if self.workers < 1:
            raise ConfigurationError(
                f"Collector workers must be at least 1, not {self.workers}."
            )
        if not _TOKEN.fullmatch(self.cookie_name):
            raise ConfigurationError(
                f"Cookie name {self.cookie_name!r} is not a valid HTTP token."
            )
        self._check_cookie_attribute("cookie_domain", self.cookie_domain)
        self._check_cookie_attribute("cookie_path", self.cookie_path)
        for name in ("max_body_bytes", "rotate_max_bytes", "rotate_max_age_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(
                    f"Collector setting {name} must be positive, not "
                    f"{getattr(self, name)!r}."
                )
        self._check_http_settings()
        _check_sink_settings(self)

    @staticmethod
    def _check_cookie_attribute(name: str, value: str | None) -> None:
        # These values go verbatim into Set-Cookie; a ';' would add attributes.
        if value is not None and (
            ";" in value or not value.isprintable() or not value.isascii()
        ):
            raise ConfigurationError(
                f"Collector setting {name} = {value!r} may not contain ';', "
                "control characters or non-ASCII characters."
            )

    def _check_http_settings(self) -> None:
        for name in ("max_querystring_bytes", "max_header_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(
                    f"Collector setting {name} must be positive, not "
                    f"{getattr(self, name)!r}."
                )
        if self.tracker_max_age < 0:
            raise ConfigurationError(
                f"Collector setting tracker_max_age must be 0 or more, not "
                f"{self.tracker_max_age!r}."
            )
        for domain in self.cookie_domains:
            self._check_cookie_attribute("cookie_domains", domain)
        _check_same_site(self.cookie_same_site, self.cookie_secure)
        _check_do_not_track(self)
        for host in self.redirect_allowed_hosts:
            _check_redirect_host(host)
        for proxy in self.trusted_proxies:
            _check_trusted_proxy(proxy)
        if self.proxy_header.lower() not in _PROXY_HEADERS:
            raise ConfigurationError(
                f"Collector setting proxy_header = {self.proxy_header!r} must be "
                "x-forwarded-for or forwarded."
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CollectorConfig:
        """Settings from ``PLOWLINE_COLLECTOR_*`` variables, defaults for the rest."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            key = ENV_PREFIX + item.name.upper()
            if key in env:
                values[item.name] = _parse(key, env[key], _PARSERS[item.name])
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment variables that :meth:`from_env` turns back into self."""
        env: dict[str, str] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, tuple):
                value = ",".join(value)
            env[ENV_PREFIX + item.name.upper()] = str(value)
        return env


def _optional_str(text: str) -> str | None:
    return text or None


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected one of true/false, yes/no, on/off, 1/0")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "host": str,
    "port": int,
    "raw_dir": Path,
    "workers": int,
    "cookie_enabled": _parse_bool,
    "cookie_name": str,
    "cookie_domain": _optional_str,
    "cookie_path": str,
    "cookie_max_age": int,
    "max_body_bytes": int,
    "rotate_max_bytes": int,
    "rotate_max_age_seconds": float,
}


# --- parsing and checking the HTTP-behaviour settings ---

_SAME_SITE = frozenset({"none", "lax", "strict"})
_PROXY_HEADERS = frozenset({"x-forwarded-for", "forwarded"})
# A host name (labels of letters, digits, '-' and '_'), an IPv4 address, or an
# IPv6 address in brackets; '*.' in front allows every subdomain.
_REDIRECT_HOST = re.compile(
    r"(\*\.)?([a-z0-9_-]+(\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])", re.IGNORECASE
)


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _optional_bool(text: str) -> bool | None:
    if text.strip().lower() in ("", "auto"):
        return None
    return _parse_bool(text)


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def _check_same_site(same_site: str | None, secure: bool | None) -> None:
    if same_site is None:
        return
    if same_site.lower() not in _SAME_SITE:
        raise ConfigurationError(
            f"Collector setting cookie_same_site = {same_site!r} must be None, Lax "
            "or Strict (or unset to follow the scheme)."
        )
    if same_site.lower() == "none" and secure is False:
        raise ConfigurationError(
            "Collector settings cookie_same_site = 'None' and cookie_secure = false "
            "do not go together: browsers drop SameSite=None cookies without Secure."
        )


def _check_do_not_track(config: CollectorConfig) -> None:
    name = config.do_not_track_cookie_name
    value = config.do_not_track_cookie_value
    if name is None:
        if value is not None or config.do_not_track_cookie_regex:
            raise ConfigurationError(
                "Collector setting do_not_track_cookie_value or _regex is set but "
                "do_not_track_cookie_name is not; set the cookie name too."
            )
        return
    if not _TOKEN.fullmatch(name):
        raise ConfigurationError(
            f"Do-not-track cookie name {name!r} is not a valid HTTP token."
        )
    if config.do_not_track_cookie_regex:
        if value is None:
            raise ConfigurationError(
                "Collector setting do_not_track_cookie_regex is true but "
                "do_not_track_cookie_value holds no pattern."
            )
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigurationError(
                f"Collector setting do_not_track_cookie_value = {value!r} is not a "
                f"valid regular expression: {exc}."
            ) from exc


def _check_redirect_host(host: str) -> None:
    if not _REDIRECT_HOST.fullmatch(host):
        raise ConfigurationError(
            f"Collector setting redirect_allowed_hosts has {host!r}, which is not a "
            "host name: write 'shop.example' or '*.shop.example', without scheme, "
            "port or path."
        )


def _check_trusted_proxy(proxy: str) -> None:
    try:
        ipaddress.ip_network(proxy, strict=False)
    except ValueError as exc:
        raise ConfigurationError(
            f"Collector setting trusted_proxies has {proxy!r}, which is not an IP "
            f"address or network (such as 10.0.0.0/8 or fd00::/8): {exc}."
        ) from exc


_PARSERS.update(
    {
        "cookie_domains": _parse_list,
        "cookie_secure": _optional_bool,
        "cookie_same_site": _optional_str,
        "cookie_http_only": _parse_bool,
        "do_not_track_cookie_name": _optional_str,
        "do_not_track_cookie_value": _optional_str,
        "do_not_track_cookie_regex": _parse_bool,
        "redirect_allowed_hosts": _parse_list,
        "trusted_proxies": _parse_list,
        "proxy_header": str,
        "max_querystring_bytes": int,
        "max_header_bytes": int,
        "metrics_enabled": _parse_bool,
        "metrics_dir": _optional_path,
        "tracker_max_age": int,
    }
)


def _parse(key: str, text: str, parser: Callable[[str], Any]) -> Any:
    try:
        return parser(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"Environment variable {key}={text!r} is not valid: {exc}."
        ) from exc


# --- checking the sink settings ---

SINKS = ("rawlog", "stdout", "nats")
# JetStream stream names may not hold these (nor spaces or control characters).
_STREAM_NAME = re.compile(r"[^.*>/\\\s]+")
_SUBJECT = re.compile(r"[^.*>\s]+(\.[^.*>\s]+)*")


def _check_sink_settings(config: CollectorConfig) -> None:
    if config.sink not in SINKS:
        raise ConfigurationError(
            f"Collector setting sink = {config.sink!r} must be one of "
            f"{', '.join(SINKS)}."
        )
    durabilities = [item.value for item in Durability]
    if config.durability not in durabilities:
        raise ConfigurationError(
            f"Collector setting durability = {config.durability!r} must be one of "
            f"{', '.join(durabilities)}."
        )
    if not _STREAM_NAME.fullmatch(config.nats_stream):
        raise ConfigurationError(
            f"Collector setting nats_stream = {config.nats_stream!r} is not a "
            "JetStream stream name (no spaces, '.', '*', '>', '/' or '\\')."
        )
    if not _SUBJECT.fullmatch(config.nats_subject):
        raise ConfigurationError(
            f"Collector setting nats_subject = {config.nats_subject!r} is not a "
            "NATS subject to publish to, such as plowline.raw (no wildcards)."
        )
    if config.sink == "stdout" and config.durability != "os":
        raise ConfigurationError(
            f"Collector setting durability = {config.durability!r} applies to the "
            "raw log and the NATS spool, not to sink = 'stdout'; use durability os."
        )
    if config.nats_timeout_seconds <= 0:
        raise ConfigurationError(
            "Collector setting nats_timeout_seconds must be positive, not "
            f"{config.nats_timeout_seconds!r}."
        )


_PARSERS.update(
    {
        "sink": str,
        "durability": str,
        "nats_url": str,
        "nats_stream": str,
        "nats_subject": str,
        "nats_timeout_seconds": float,
    }
)
