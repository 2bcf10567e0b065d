"""Settings of the collector, from command-line options or the environment.

The order is: a command-line option, then the environment variable
``PLOWLINE_COLLECTOR_<FIELD>`` (for example ``PLOWLINE_COLLECTOR_PORT``), then the
default written here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from plowline.errors import ConfigurationError

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

    @staticmethod
    def _check_cookie_attribute(name: str, value: str | None) -> None:
        # These values go verbatim into Set-Cookie; a ';' would add attributes.
        if value is not None and (";" in value or not value.isprintable()):
            raise ConfigurationError(
                f"Collector setting {name} = {value!r} may not contain ';' or "
                "control characters."
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


def _parse(key: str, text: str, parser: Callable[[str], Any]) -> Any:
    try:
        return parser(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"Environment variable {key}={text!r} is not valid: {exc}."
        ) from exc
