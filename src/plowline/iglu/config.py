"""Reading an Iglu resolver configuration file, as Snowplow writes them.

The file is self-describing JSON with schema
``iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-0`` to
``1-0-3``. Each repository connects either over ``http`` (``uri``, optional
``apikey``) or ``embedded`` (``path``). Plowline reads both kinds of path as a
local folder in static-registry layout, and so is an ``http.uri`` that is a
``file://`` URI or has no scheme at all. Relative paths are taken from the
folder of the configuration file.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from plowline.errors import ConfigurationError
from plowline.iglu.core import IgluSyntaxError, SchemaCriterion, SchemaKey
from plowline.iglu.repositories import HttpRepository, LocalRepository, Repository
from plowline.iglu.resolver import DEFAULT_RETRY_AFTER, Resolver

logger = logging.getLogger(__name__)

RESOLVER_CONFIG = SchemaCriterion.parse(
    "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-*"
)
MAX_ADDITION = 3  # 1-0-0 ... 1-0-3
_TOP_KEYS = {"cacheSize", "cacheTtl", "repositories"}
_REPO_KEYS = {"name", "priority", "vendorPrefixes", "connection"}
MISSING: Any = object()
# Bounds that keep numbers usable (JSON's 1e400 is read as infinity, and a
# huge cacheTtl would overflow the clock arithmetic).
MAX_CACHE_SIZE = 10**9
MAX_TTL = 10**10  # seconds: some 300 years


def read_json(path: Path) -> Any:
    """A JSON file, or a ConfigurationError saying where it is broken."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{path}: file not found") from exc
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read the file: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}"
        ) from exc
    except (ValueError, RecursionError) as exc:  # a number too long, too deep
        raise ConfigurationError(f"{path}: not usable JSON: {exc}") from exc


def load_resolver(
    path: str | Path | None,
    *,
    retry_after: float = DEFAULT_RETRY_AFTER,
    timeout: float = 5.0,
    clock: Callable[[], float] | None = None,
) -> Resolver:
    """The resolver of a configuration file, or Plowline's embedded schemas
    alone when ``path`` is None."""
    if path is None:
        return Resolver.default()
    path = Path(path)
    document = read_json(path)
    return parse_resolver_config(
        document,
        source=str(path),
        base_dir=path.parent,
        retry_after=retry_after,
        timeout=timeout,
        clock=clock,
    )


def parse_resolver_config(
    document: Any,
    *,
    source: str,
    base_dir: Path,
    retry_after: float = DEFAULT_RETRY_AFTER,
    timeout: float = 5.0,
    clock: Callable[[], float] | None = None,
) -> Resolver:
    """A resolver from the parsed configuration ``document`` (read from
    ``source``); every mistake is a ConfigurationError naming the field."""
    data = _check_envelope(document, source)
    size = data.get("cacheSize", MISSING)
    if not _number(size) or not 0 <= size <= MAX_CACHE_SIZE:
        _fail(
            source,
            "data.cacheSize",
            f"a number of schemas from 0 to {MAX_CACHE_SIZE}",
            size,
        )
    ttl = data.get("cacheTtl")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL
    ):
        _fail(
            source,
            "data.cacheTtl",
            f"an integer number of seconds from 0 to {MAX_TTL}, or null",
            ttl,
        )
    entries = data.get("repositories", MISSING)
    if not isinstance(entries, list):
        _fail(source, "data.repositories", "an array of repositories", entries)

    repositories = [
        _repository(entry, f"data.repositories[{index}]", source, base_dir, timeout)
        for index, entry in enumerate(entries)
    ]
    names = [repository.name for repository in repositories]
    for name in {n for n in names if names.count(n) > 1}:
        _fail(source, "data.repositories", "unique repository names", name)
    logger.info(
        "Iglu resolver from %s: %s",
        source,
        ", ".join(r.describe() for r in repositories) or "no repositories",
    )
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    return Resolver(
        repositories,
        cache_size=int(size),
        cache_ttl=ttl,
        retry_after=retry_after,
        **extra,
    )


def _check_envelope(document: Any, source: str) -> Mapping[str, Any]:
    if not isinstance(document, dict):
        _fail(source, "(top level)", "a JSON object {schema, data}", document)
    schema = document.get("schema", MISSING)
    try:
        key = SchemaKey.parse(schema)
    except IgluSyntaxError:
        key = None
    if key is None or not RESOLVER_CONFIG.matches(key):
        _fail(source, "schema", f"{RESOLVER_CONFIG} (addition 0 to 3)", schema)
    if key.version.addition > MAX_ADDITION:
        _fail(source, "schema", "resolver-config 1-0-0 to 1-0-3", schema)
    data = document.get("data", MISSING)
    if not isinstance(data, dict):
        _fail(source, "data", "an object", data)
    _no_unknown_keys(data, _TOP_KEYS, "data", source)
    return data


def _repository(
    entry: Any, where: str, source: str, base_dir: Path, timeout: float
) -> Repository:
    if not isinstance(entry, dict):
        _fail(source, where, "an object", entry)
    _no_unknown_keys(entry, _REPO_KEYS, where, source)
    name = entry.get("name", MISSING)
    if not isinstance(name, str) or not name:
        _fail(source, f"{where}.name", "a non-empty string", name)
    priority = entry.get("priority", MISSING)
    if not _number(priority) or not math.isfinite(priority):
        _fail(source, f"{where}.priority", "a number (lower is asked first)", priority)
    prefixes = entry.get("vendorPrefixes", MISSING)
    if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
        _fail(source, f"{where}.vendorPrefixes", "an array of strings", prefixes)
    common: dict[str, Any] = {
        "name": name,
        "priority": priority,
        "vendor_prefixes": tuple(prefixes),
    }

    connection = entry.get("connection", MISSING)
    if not isinstance(connection, dict) or sorted(connection) not in (
        ["http"],
        ["embedded"],
    ):
        _fail(
            source,
            f"{where}.connection",
            'exactly one of {"http": {"uri": ...}} or {"embedded": {"path": ...}}',
            connection,
        )
    if "embedded" in connection:
        return _embedded(
            connection["embedded"],
            f"{where}.connection.embedded",
            source,
            base_dir,
            common,
        )
    return _http(
        connection["http"],
        f"{where}.connection.http",
        source,
        base_dir,
        timeout,
        common,
    )


def _embedded(
    value: Any, where: str, source: str, base_dir: Path, common: dict[str, Any]
) -> Repository:
    if not isinstance(value, dict):
        _fail(source, where, 'an object {"path": ...}', value)
    _no_unknown_keys(value, {"path"}, where, source)
    path = value.get("path", MISSING)
    if not isinstance(path, str) or not path:
        _fail(source, f"{where}.path", "the path of a folder of schemas", path)
    return LocalRepository(**common, root=base_dir / Path(path))


def _http(
    value: Any,
    where: str,
    source: str,
    base_dir: Path,
    timeout: float,
    common: dict[str, Any],
) -> Repository:
    if not isinstance(value, dict):
        _fail(source, where, 'an object {"uri": ..., "apikey": ...}', value)
    _no_unknown_keys(value, {"uri", "apikey"}, where, source)
    uri = value.get("uri", MISSING)
    if not isinstance(uri, str) or not uri:
        _fail(source, f"{where}.uri", "the URI of a registry", uri)
    apikey = value.get("apikey")
    if apikey is not None and not isinstance(apikey, str):
        _fail(source, f"{where}.apikey", "a string or null", apikey)

    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            _fail(source, f"{where}.uri", "an http(s) URI with a host", uri)
        return HttpRepository(**common, uri=uri, apikey=apikey, timeout=timeout)
    if parts.scheme == "file":
        local = urllib.request.url2pathname(parts.path)
        return LocalRepository(**common, root=base_dir / Path(local))
    if parts.scheme == "" or len(parts.scheme) == 1:  # a path (C: on Windows)
        return LocalRepository(**common, root=base_dir / Path(uri))
    _fail(source, f"{where}.uri", "an http://, https:// or file:// URI, or a path", uri)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _no_unknown_keys(
    value: Mapping[str, Any], known: set[str], where: str, source: str
) -> None:
    unknown = sorted(set(value) - known)
    if unknown:
        _fail(source, where, f"only the keys {', '.join(sorted(known))}", unknown)


def _fail(source: str, field: str, expected: str, value: Any) -> NoReturn:
    if value is MISSING:
        shown = "nothing (the field is missing)"
    else:
        shown = repr(value) if isinstance(value, str) else json.dumps(value)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    raise ConfigurationError(
        f"Iglu resolver configuration {source}: {field} must be {expected}; "
        f"found {shown}"
    )
