"""Iglu's vocabulary: schema keys, SchemaVer versions and schema criteria.

A schema key names one schema, ``iglu:vendor/name/format/MODEL-REVISION-ADDITION``.
A criterion names a family of them, with ``*`` standing for any number in one
or more places of the version (``iglu:com.acme/click/jsonschema/1-*-*``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from plowline.errors import PlowlineError

# Iglu's own pattern for keys (the "schema" of contexts and events uses it).
_KEY_RE = re.compile(
    r"iglu:([a-zA-Z0-9\-_.]+)/([a-zA-Z0-9\-_]+)/([a-zA-Z0-9\-_]+)/"
    r"([0-9]+-[0-9]+-[0-9]+)"
)
_LOOSE_KEY_RE = re.compile(r"iglu:([^/]+)/([^/]+)/([^/]+)/([^/]+)")
_VERSION_RE = re.compile(r"([1-9][0-9]*)-(0|[1-9][0-9]*)-(0|[1-9][0-9]*)")
_CRITERION_VERSION_RE = re.compile(r"([0-9]+|\*)-([0-9]+|\*)-([0-9]+|\*)")


class IgluSyntaxError(PlowlineError, ValueError):
    """Text that is not a schema key, SchemaVer version or criterion.

    ``code`` is the Snowplow NotIglu error name that fits (``INVALID_IGLUURI``
    or ``INVALID_SCHEMAVER``).
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, order=True)
class SchemaVer:
    """A ``MODEL-REVISION-ADDITION`` version."""

    model: int
    revision: int
    addition: int

    @classmethod
    def parse(cls, text: str) -> SchemaVer:
        match = _VERSION_RE.fullmatch(text)
        if match is None:
            raise IgluSyntaxError(
                f"{text!r} is not a SchemaVer version: expected "
                "MODEL-REVISION-ADDITION such as 1-0-0 "
                "(numbers without leading zeros, the model from 1)",
                code="INVALID_SCHEMAVER",
            )
        model, revision, addition = (int(part) for part in match.groups())
        return cls(model, revision, addition)

    def __str__(self) -> str:
        return f"{self.model}-{self.revision}-{self.addition}"


@dataclass(frozen=True, slots=True)
class SchemaKey:
    """The coordinates of one schema in a registry."""

    vendor: str
    name: str
    format: str
    version: SchemaVer

    @classmethod
    def parse(cls, uri: str) -> SchemaKey:
        """Read ``iglu:vendor/name/format/M-R-A``."""
        return _parse_key(uri) if isinstance(uri, str) else cls._parse(uri)

    @classmethod
    def _parse(cls, uri: str) -> SchemaKey:
        match = _KEY_RE.fullmatch(uri) if isinstance(uri, str) else None
        if match is None:
            loose = _LOOSE_KEY_RE.fullmatch(uri) if isinstance(uri, str) else None
            if loose is not None and _KEY_RE.fullmatch(
                f"iglu:{loose[1]}/{loose[2]}/{loose[3]}/1-0-0"
            ):
                SchemaVer.parse(loose[4])  # raises the SchemaVer error
            raise IgluSyntaxError(
                f"{uri!r} is not an Iglu schema URI: expected "
                "iglu:vendor/name/format/MODEL-REVISION-ADDITION",
                code="INVALID_IGLUURI",
            )
        vendor, name, fmt, version = match.groups()
        return cls(vendor, name, fmt, SchemaVer.parse(version))

    @property
    def path(self) -> str:
        """Where a static registry keeps it, below ``schemas/``."""
        return f"{self.vendor}/{self.name}/{self.format}/{self.version}"

    def __str__(self) -> str:
        return f"iglu:{self.path}"


@lru_cache(maxsize=4096)
def _parse_key(uri: str) -> SchemaKey:
    # Events name the same few schemas over and over: parse each once.
    return SchemaKey._parse(uri)


@dataclass(frozen=True, slots=True)
class SchemaCriterion:
    """A vendor, name and format with a version in which parts may be ``*``."""

    vendor: str
    name: str
    format: str
    model: int | None
    revision: int | None
    addition: int | None

    @classmethod
    def parse(cls, uri: str) -> SchemaCriterion:
        """Read ``iglu:vendor/name/format/1-*-*`` (any part may be ``*``)."""
        match = _LOOSE_KEY_RE.fullmatch(uri)
        version = _CRITERION_VERSION_RE.fullmatch(match[4]) if match else None
        if match is None or version is None:
            raise IgluSyntaxError(
                f"{uri!r} is not an Iglu schema criterion: expected "
                "iglu:vendor/name/format/M-R-A with * for any part of the version",
                code="INVALID_IGLUURI",
            )
        parts = [None if part == "*" else int(part) for part in version.groups()]
        return cls(match[1], match[2], match[3], *parts)

    @classmethod
    def for_version(cls, key: SchemaKey, version: str) -> SchemaCriterion:
        """The criterion of ``key``'s vendor, name and format with ``version``
        (``1-0-*``)."""
        return cls.parse(f"iglu:{key.vendor}/{key.name}/{key.format}/{version}")

    def matches(self, key: SchemaKey) -> bool:
        version = key.version
        return (
            key.vendor == self.vendor
            and key.name == self.name
            and key.format == self.format
            and self.model in (None, version.model)
            and self.revision in (None, version.revision)
            and self.addition in (None, version.addition)
        )

    @property
    def version_text(self) -> str:
        parts = (self.model, self.revision, self.addition)
        return "-".join("*" if part is None else str(part) for part in parts)

    def __str__(self) -> str:
        return f"iglu:{self.vendor}/{self.name}/{self.format}/{self.version_text}"
