"""JSON Schema draft 4, the dialect of Iglu schemas: compiling and reporting.

Schemas are checked against the draft 4 meta-schema once, when compiled; an
instance's errors become Snowplow "data reports": a message, the JSON path of
the faulty value (``$.items[0].sku``), the keyword that failed and its targets.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import fastjsonschema
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import (
    SchemaError,
    ValidationError,
)
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT4

from plowline.errors import PlowlineError

logger = logging.getLogger(__name__)

Schema = dict[str, Any]
Retrieve = Callable[[str], Schema]

# More reports than this for one entity help nobody; the rest are counted.
MAX_REPORTS = 50
MAX_MESSAGE = 300  # jsonschema quotes the whole faulty value

_IDENTIFIER_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_DATE_TIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s]*")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.?"
)


RECURSION_MESSAGE = (
    "validation does not end: the schema refers to itself ($ref) without "
    "checking anything first, or the data is nested too deeply for it"
)


class InvalidSchemaError(PlowlineError):
    """A schema that is not valid draft 4 JSON Schema: nothing can be checked
    against it. ``issues`` are ``{path, message}`` pairs."""

    def __init__(self, issues: list[dict[str, str]]) -> None:
        text = "; ".join(f"{issue['path']}: {issue['message']}" for issue in issues)
        super().__init__(f"invalid JSON Schema: {text}")
        self.issues = issues


@dataclass(frozen=True, slots=True)
class DataReport:
    """One reason an instance fails its schema."""

    message: str
    path: str
    keyword: str | None
    targets: list[str] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "path": self.path,
            "keyword": self.keyword,
            "targets": self.targets,
        }


def _checks(pattern: re.Pattern[str]) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return not isinstance(value, str) or pattern.fullmatch(value) is not None

    return check


def _date_time(value: object) -> bool:
    if not isinstance(value, str) or not _DATE_TIME_RE.fullmatch(value):
        return not isinstance(value, str)
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        return bool(_DATE_RE.fullmatch(value)) and bool(date.fromisoformat(value))
    except ValueError:
        return False


def _ip(version: int) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if not isinstance(value, str):
            return True
        try:
            return ipaddress.ip_address(value).version == version
        except ValueError:
            return False

    return check


def _format_checker() -> FormatChecker:
    """The formats Iglu schemas use, checked without optional dependencies."""
    checker = FormatChecker(formats=())
    checks: dict[str, Callable[[object], bool]] = {
        "date-time": _date_time,
        "date": _date,
        "uuid": _checks(_UUID_RE),
        "uri": _checks(_URI_RE),
        "hostname": _checks(_HOSTNAME_RE),
        "ipv4": _ip(4),
        "ipv6": _ip(6),
        "email": lambda v: not isinstance(v, str) or "@" in v,
    }
    for name, check in checks.items():
        checker.checks(name)(check)
    return checker


FORMAT_CHECKER = _format_checker()


def compile_schema(schema: Schema, retrieve: Retrieve | None = None) -> Draft4Validator:
    """A validator for ``schema``; ``retrieve`` gives the documents of remote
    ``$ref`` URIs (nothing is fetched from the network here)."""
    try:
        Draft4Validator.check_schema(schema)
    except SchemaError as exc:
        issues = [{"path": json_path(exc.absolute_path), "message": exc.message}]
        raise InvalidSchemaError(issues) from exc
    except RecursionError:
        issues = [{"path": "$", "message": "the schema is nested too deeply"}]
        raise InvalidSchemaError(issues) from None
    fetch = _retriever(retrieve)
    registry: Registry[Any] = Registry(retrieve=fetch)  # type: ignore[call-arg]
    return Draft4Validator(schema, registry=registry, format_checker=FORMAT_CHECKER)


FastCheck = Callable[[Any], Any]
_DRAFT4_META = "http://json-schema.org/draft-04/schema#"
_FAST_FORMATS: dict[str, Callable[[object], bool]] = {
    "date-time": _date_time,
    "date": _date,
    "uuid": _checks(_UUID_RE),
    "uri": _checks(_URI_RE),
    "hostname": _checks(_HOSTNAME_RE),
    "ipv4": _ip(4),
    "ipv6": _ip(6),
    "email": lambda v: not isinstance(v, str) or "@" in v,
}


def compile_fast(schema: Schema, retrieve: Retrieve | None = None) -> FastCheck | None:
    """A fast yes/no check of ``schema`` (fastjsonschema compiles it to Python),
    or None when it cannot compile it. It only says whether an instance is
    valid: the reports of an invalid one come from the jsonschema validator,
    which has the last word. Same draft (4), formats and ``$ref`` lookups."""

    def fetch(uri: str) -> Any:
        if retrieve is None:
            raise LookupError(uri)
        return retrieve(uri)

    # Iglu schemas name Iglu's meta-schema, not a draft: say draft 4 outright.
    definition = {**schema, "$schema": _DRAFT4_META}
    try:
        return fastjsonschema.compile(
            definition,
            handlers={"http": fetch, "https": fetch},
            formats=_FAST_FORMATS,
            use_default=False,  # never fill defaults into the event's data
        )
    except Exception as exc:  # any schema it cannot compile: the slow path
        logger.debug("fastjsonschema cannot compile a schema (%s)", exc)
        return None


def fast_says_valid(check: FastCheck, instance: Any) -> bool:
    try:
        check(instance)
    except Exception:  # JsonSchemaValueException, or a fault: ask jsonschema
        return False
    return True


def _retriever(retrieve: Retrieve | None) -> Callable[[str], Resource[Any]]:
    def fetch(uri: str) -> Resource[Any]:
        if retrieve is None:
            raise NoSuchResource(ref=uri)  # type: ignore[call-arg]
        try:
            document = retrieve(uri)
        except LookupError as exc:
            raise NoSuchResource(ref=uri) from exc  # type: ignore[call-arg]
        return DRAFT4.create_resource(document)

    return fetch


def data_reports(validator: Draft4Validator, instance: Any) -> list[DataReport]:
    """Why ``instance`` fails the validator's schema; empty when it passes."""
    try:
        errors = sorted(
            validator.iter_errors(instance),
            key=lambda e: (_sort_path(e.path), str(e.validator)),
        )
    except Unresolvable as exc:
        raise InvalidSchemaError(
            [{"path": "$", "message": f"cannot resolve $ref {exc.ref!r}"}]
        ) from exc
    except RecursionError:
        # {"$ref": "#"}, or a schema whose $ref leads back to itself through a
        # registry address, never reaches a check; a recursive schema with data
        # nested deeper than Python's stack ends the same way.
        raise InvalidSchemaError(
            [{"path": "$", "message": RECURSION_MESSAGE}]
        ) from None
    reports: list[DataReport] = []
    seen: set[tuple[str, str]] = set()
    for error in errors:
        for report in _reports(error):
            if (report.path, report.message) not in seen:
                seen.add((report.path, report.message))
                reports.append(report)
    if len(reports) > MAX_REPORTS:
        more = len(reports) - MAX_REPORTS
        reports[MAX_REPORTS:] = [
            DataReport(f"$: {more} more errors not listed", "$", None, None)
        ]
    return reports


def _sort_path(parts: Iterable[str | int]) -> list[tuple[int, int, str]]:
    return [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in parts]


def _reports(error: ValidationError) -> list[DataReport]:
    path = json_path(error.absolute_path)
    keyword = str(error.validator) if error.validator is not None else None
    instance = error.instance
    if keyword == "required" and isinstance(instance, dict):
        # jsonschema reports each missing name alone but without the name;
        # one report per name, each with the path it should have been at.
        return [
            DataReport(
                f"{json_path([*error.absolute_path, name])}: is missing but required",
                path,
                keyword,
                [name],
            )
            for name in _listed(error.validator_value)
            if isinstance(name, str) and name not in instance
        ]
    return [_report(error, path, keyword)]


def _listed(value: object) -> list[Any]:
    """A keyword's value that should be a list (``required``, ``enum``)."""
    return list(value) if isinstance(value, list | tuple) else []


def _report(error: ValidationError, path: str, keyword: str | None) -> DataReport:
    targets: list[str] | None = None
    instance = error.instance
    if keyword == "additionalProperties" and isinstance(instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        known = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        targets = [
            name
            for name in instance
            if name not in known and not any(re.search(p, name) for p in patterns)
        ]
    elif keyword == "type":
        expected = error.validator_value
        targets = (
            [str(t) for t in expected]
            if isinstance(expected, list)
            else [str(expected)]
        )
    elif keyword == "enum":
        targets = [str(v) for v in _listed(error.validator_value)]
    message = error.message
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return DataReport(f"{path}: {message}", path, keyword, targets)


def json_path(parts: Iterable[str | int]) -> str:
    """``$.a[0].b``; names that are not identifiers in ``['...']``."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER_RE.fullmatch(part):
            text += f".{part}"
        else:
            escaped = part.replace("\\", "\\\\").replace("'", "\\'")
            text += f"['{escaped}']"
    return text
