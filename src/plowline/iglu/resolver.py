"""The Iglu resolver: which repository to ask for a schema, and what to remember.

Repositories are asked in Snowplow's order: those whose vendor prefixes match
the schema's vendor first, then embedded before HTTP, then by ``priority``
(lower first), then as configured. The exact version asked for is the one
resolved: SchemaVer does not let 1-0-1 stand in for 1-0-0.

Found schemas (and their compiled validators) stay in an LRU cache of
``cacheSize`` entries, for ``cacheTtl`` seconds when that is set. A failed
lookup is remembered too, but only for ``retry_after`` seconds, so a registry
that was down is asked again once that time has passed.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft4Validator

from plowline.errors import PlowlineError, StoreUnavailableError
from plowline.iglu.core import IgluSyntaxError, SchemaKey
from plowline.iglu.draft4 import (
    FastCheck,
    InvalidSchemaError,
    Schema,
    compile_fast,
    compile_schema,
)
from plowline.iglu.repositories import (
    EmbeddedRepository,
    NotFound,
    Repository,
    RepositoryFailure,
)

logger = logging.getLogger(__name__)

EMBEDDED_NAME = "Plowline embedded"
DEFAULT_CACHE_SIZE = 500
DEFAULT_RETRY_AFTER = 30.0
# Verdicts of valid data remembered (see Resolver.known_valid), and the largest
# data (as JSON) that is remembered: at most about 4 MB in all, nearer 1 MB for
# the usual entities of a few hundred bytes.
VALID_CACHE_SIZE = 4096
VALID_CACHE_MAX_BYTES = 1024
# Snowplow caps the message of one lookup error at 256 characters.
_MAX_ERROR_MESSAGE = 256
# A $ref to another schema by its static-registry address.
_REF_RE = re.compile(
    r"https?://[^#]*/schemas/([^/#]+)/([^/#]+)/([^/#]+)/([0-9]+-[0-9]+-[0-9]+)#?"
)


class ResolutionError(PlowlineError):
    """No repository gave the schema. ``lookup_history`` says, per repository,
    what went wrong, in the shape of Snowplow's ResolutionError."""

    def __init__(self, key: SchemaKey, lookup_history: list[dict[str, Any]]) -> None:
        self.key = key
        self.lookup_history = lookup_history
        super().__init__(self._describe())

    def _describe(self) -> str:
        names = ", ".join(entry["repository"] for entry in self.lookup_history)
        return f"schema {self.key} not found in {names or 'no repository'}"

    def to_json(self) -> dict[str, Any]:
        return {"error": "ResolutionError", "lookupHistory": self.lookup_history}


class SchemaNotFoundError(ResolutionError):
    """Every repository answered that it has no such schema."""


class RegistryUnreachableError(ResolutionError, StoreUnavailableError):
    """At least one repository could not answer: the schema may exist. Events
    failed for this can be replayed once the registry is back."""

    def _describe(self) -> str:
        failures = [
            f"{entry['repository']}: {error.get('message', error['error'])}"
            for entry in self.lookup_history
            for error in entry["errors"]
            if error["error"] != "NotFound"
        ]
        return f"schema {self.key} could not be resolved; " + "; ".join(failures)


@dataclass(slots=True)
class _Entry:
    schema: Schema | None
    error: ResolutionError | None
    expires: float | None
    validator: Draft4Validator | InvalidSchemaError | None = None
    fast: FastCheck | None = None
    fast_tried: bool = False


class Resolver:
    """Finds schemas in an ordered set of repositories and caches them."""

    def __init__(
        self,
        repositories: Iterable[Repository] = (),
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_ttl: float | None = None,
        retry_after: float = DEFAULT_RETRY_AFTER,
        clock: Callable[[], float] = time.time,
        embedded: bool = True,
    ) -> None:
        configured = list(repositories)
        if embedded:
            configured.insert(0, EmbeddedRepository(EMBEDDED_NAME, priority=0))
        self.repositories: tuple[Repository, ...] = tuple(configured)
        self.cache_size = max(0, cache_size)
        self.cache_ttl = cache_ttl
        self.retry_after = (
            retry_after if cache_ttl is None else min(retry_after, cache_ttl)
        )
        self.clock = clock
        self._cache: OrderedDict[SchemaKey, _Entry] = OrderedDict()
        self._attempts: dict[tuple[SchemaKey, str], int] = {}
        self._lock = threading.Lock()
        # (schema URI, data as JSON) found valid -> until when that holds (the
        # expiry of the schema's cache entry then; inf without cacheTtl).
        self._valid: dict[tuple[str, bytes], float] = {}

    @classmethod
    def default(cls) -> Resolver:
        """Plowline's embedded schemas only: no network, no files."""
        return cls()

    def ordered(self, key: SchemaKey) -> list[Repository]:
        """The repositories to ask for ``key``, in the order they are asked."""
        indexed = list(enumerate(self.repositories))
        indexed.sort(
            key=lambda item: (
                not item[1].matches_vendor(key),
                item[1].class_priority,
                item[1].priority,
                item[0],
            )
        )
        return [repository for _, repository in indexed]

    def lookup(self, key: SchemaKey) -> Schema:
        """The schema of exactly ``key``; raises ``SchemaNotFoundError`` or
        ``RegistryUnreachableError``."""
        entry = self._entry(key)
        if entry.error is not None:
            raise entry.error
        assert entry.schema is not None
        return entry.schema

    def validator(self, key: SchemaKey) -> Draft4Validator:
        """The compiled validator of ``key``'s schema, compiled once while the
        schema is cached; raises ``ResolutionError`` or ``InvalidSchemaError``."""
        entry = self._entry(key)
        if entry.error is not None:
            raise entry.error
        if entry.validator is None:
            assert entry.schema is not None
            try:
                entry.validator = compile_schema(entry.schema, self.retrieve)
            except InvalidSchemaError as exc:
                entry.validator = exc
        if isinstance(entry.validator, InvalidSchemaError):
            raise entry.validator
        return entry.validator

    def fast_check(self, key: SchemaKey) -> FastCheck | None:
        """A fast yes/no check of ``key``'s schema, compiled once while the
        schema is cached (None when it cannot be compiled); raises
        ``ResolutionError`` as ``validator`` does."""
        entry = self._entry(key)
        if entry.error is not None:
            raise entry.error
        if not entry.fast_tried:
            assert entry.schema is not None
            entry.fast = compile_fast(entry.schema, self.retrieve)
            entry.fast_tried = True
        return entry.fast

    def known_valid(self, uri: str, data_json: bytes) -> bool:
        """Whether ``data_json`` (data as JSON text) was found valid against the
        schema ``uri`` names, while its schema is still the one cached then.

        The same entities come again and again (a page's context with each of
        its pings, the contexts derived from one user agent): a verdict costs a
        dictionary lookup where a validation costs microseconds."""
        return self._valid.get((uri, data_json), 0.0) > self.clock()

    def remember_valid(self, uri: str, data_json: bytes, key: SchemaKey) -> None:
        """Note that ``data_json`` is valid against the schema of ``key`` (which
        ``uri`` names), for as long as that schema stays cached."""
        if not self.cache_size or len(data_json) > VALID_CACHE_MAX_BYTES:
            return
        with self._lock:
            entry = self._cache.get(key)
            if entry is None or entry.schema is None:
                return
            if len(self._valid) >= VALID_CACHE_SIZE:
                self._valid.clear()
            expires = math.inf if entry.expires is None else entry.expires
            self._valid[(uri, data_json)] = expires

    def retrieve(self, uri: str) -> Schema:
        """The document of a ``$ref`` to a registry address, such as
        ``http://iglucentral.com/schemas/<vendor>/<name>/jsonschema/1-0-0#``,
        taken from this resolver's repositories rather than from that host."""
        match = _REF_RE.fullmatch(uri)
        if match is None:
            raise LookupError(f"$ref {uri!r} is not a registry address")
        try:
            key = SchemaKey.parse("iglu:" + "/".join(match.groups()))
            return self.lookup(key)
        except (IgluSyntaxError, ResolutionError) as exc:
            raise LookupError(str(exc)) from exc

    def _entry(self, key: SchemaKey) -> _Entry:
        now = self.clock()
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and (entry.expires is None or entry.expires > now):
                self._cache.move_to_end(key)
                return entry
        entry = self._resolve(key, now)
        if self.cache_size:
            with self._lock:
                self._cache[key] = entry
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return entry

    def _resolve(self, key: SchemaKey, now: float) -> _Entry:
        history: list[dict[str, Any]] = []
        for repository in self.ordered(key):
            try:
                schema = repository.lookup(key)
            except NotFound:
                error: dict[str, str] = {"error": "NotFound"}
            except RepositoryFailure as exc:
                error = {"error": exc.kind, "message": str(exc)[:_MAX_ERROR_MESSAGE]}
                logger.warning(
                    "Iglu repository %s failed for %s: %s",
                    repository.describe(),
                    key,
                    exc,
                )
            else:
                self._forget_attempts(key)
                expires = None if self.cache_ttl is None else now + self.cache_ttl
                logger.debug("Resolved %s from %s", key, repository.name)
                return _Entry(schema, None, expires)
            history.append(self._history_entry(key, repository, error, now))

        failed = any(e["errors"][0]["error"] != "NotFound" for e in history)
        cls = RegistryUnreachableError if failed else SchemaNotFoundError
        return _Entry(None, cls(key, history), now + self.retry_after)

    def _history_entry(
        self, key: SchemaKey, repository: Repository, error: dict[str, str], now: float
    ) -> dict[str, Any]:
        with self._lock:
            attempts = self._attempts.get((key, repository.name), 0) + 1
            if len(self._attempts) > 10 * max(self.cache_size, 100):
                self._attempts.clear()
            self._attempts[(key, repository.name)] = attempts
        return {
            "repository": repository.name,
            "errors": [error],
            "attempts": attempts,
            "lastAttempt": _iso(now),
        }

    def _forget_attempts(self, key: SchemaKey) -> None:
        with self._lock:
            for repository in self.repositories:
                self._attempts.pop((key, repository.name), None)


def _iso(seconds: float) -> str:
    millis = int(seconds * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
