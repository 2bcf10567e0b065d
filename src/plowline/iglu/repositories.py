"""Where schemas come from: a local folder, an HTTP registry, or Plowline itself.

Every repository answers one question, "the schema of this key?", with the
schema, ``NotFound``, or a ``RepositoryFailure`` (the registry could not say).
The distinction matters downstream: an event whose schema does not exist is bad
data, while an event whose registry was down can be replayed later.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, ClassVar

from plowline import __version__
from plowline.iglu.core import SchemaKey

logger = logging.getLogger(__name__)

Schema = dict[str, Any]

# Failure kinds, as Snowplow's lookup history names them.
REPO_FAILURE = "RepoFailure"  # the registry did not answer properly (down, 5xx)
CLIENT_FAILURE = "ClientFailure"  # the registry refused us (401, 403, other 4xx)


class NotFound(Exception):
    """The repository answered: it has no schema of that key."""


class RepositoryFailure(Exception):
    """The repository could not answer; asking again later may work."""

    def __init__(self, message: str, *, kind: str = REPO_FAILURE) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(eq=False)
class Repository:
    """One entry of a resolver configuration."""

    name: str
    priority: float = 0
    vendor_prefixes: tuple[str, ...] = ()
    # Snowplow asks embedded repositories before HTTP ones of equal standing.
    class_priority: ClassVar[int] = 1

    def matches_vendor(self, key: SchemaKey) -> bool:
        return any(key.vendor.startswith(prefix) for prefix in self.vendor_prefixes)

    def lookup(self, key: SchemaKey) -> Schema:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


def parse_schema(text: str | bytes, where: str) -> Schema:
    """A schema document, or a RepositoryFailure saying why it is unusable."""
    try:
        schema = json.loads(text)
    except (ValueError, UnicodeError) as exc:
        raise RepositoryFailure(f"{where} is not JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise RepositoryFailure(f"{where} is not a JSON object")
    return schema


@dataclass(eq=False)
class LocalRepository(Repository):
    """A folder laid out as a static registry: ``<root>/schemas/<vendor>/...``."""

    root: Path = field(default_factory=Path)

    def __post_init__(self) -> None:
        if not (self.root / "schemas").is_dir():
            logger.warning(
                "Iglu repository %r: %s has no schemas/ folder; "
                "no schema will be found there",
                self.name,
                self.root,
            )

    def lookup(self, key: SchemaKey) -> Schema:
        path = self.root / "schemas" / key.path
        try:
            text = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(str(path)) from exc
        except OSError as exc:
            raise RepositoryFailure(f"cannot read {path}: {exc}") from exc
        return parse_schema(text, str(path))

    def describe(self) -> str:
        return f"{self.name} ({self.root})"


@dataclass(eq=False)
class EmbeddedRepository(Repository):
    """Plowline's own schemas, shipped inside the package."""

    class_priority: ClassVar[int] = 0
    root: Traversable = field(
        default_factory=lambda: resources.files("plowline.iglu") / "embedded"
    )

    def lookup(self, key: SchemaKey) -> Schema:
        resource = self.root.joinpath("schemas", *key.path.split("/"))
        if not resource.is_file():
            raise NotFound(str(key))
        return parse_schema(resource.read_bytes(), f"embedded schema {key}")


@dataclass(eq=False)
class HttpRepository(Repository):
    """A static registry or Iglu Server: ``GET <uri>/schemas/<vendor>/...``."""

    class_priority: ClassVar[int] = 100
    uri: str = ""
    apikey: str | None = None
    timeout: float = 5.0

    def __post_init__(self) -> None:
        self.uri = self.uri.rstrip("/")
        # Environment proxies never apply to a registry on this machine.
        host = urllib.parse.urlsplit(self.uri).hostname or ""
        proxies: dict[str, str] | None = {} if _is_loopback(host) else None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))

    def lookup(self, key: SchemaKey) -> Schema:
        url = f"{self.uri}/schemas/{key.path}"
        headers = {
            "User-Agent": f"plowline/{__version__}",
            "Accept": "application/json",
        }
        if self.apikey:
            headers["apikey"] = self.apikey
        request = urllib.request.Request(url, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _http_failure(exc.code, url) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise RepositoryFailure(f"registry unreachable: {url}: {reason}") from exc
        return parse_schema(body, url)

    def describe(self) -> str:
        return f"{self.name} ({self.uri})"


def _http_failure(status: int, url: str) -> Exception:
    if status == 404:
        return NotFound(url)
    if 400 <= status < 500:
        return RepositoryFailure(f"{url} answered HTTP {status}", kind=CLIENT_FAILURE)
    return RepositoryFailure(f"registry unavailable: {url} answered HTTP {status}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
