"""Loading Snowplow enrichment configuration files from a folder.

Every ``*.json`` file of the folder that is an object with a ``schema`` or a
``data`` key at its top is a self-describing enrichment configuration
``{"schema": "iglu:<vendor>/<name>/jsonschema/<ver>", "data": {"vendor",
"name", "enabled", "parameters"}}``, or the combined form: a
``iglu:com.snowplowanalytics.snowplow/enrichments/jsonschema/1-0-0`` document
whose ``data`` is an array of them. Other JSON files (an array, an object with
neither key, such as a referer database kept beside its configuration) are
data files: skipped, with an info line naming them. A file with either key
that is not a valid configuration is an error, as is a file that is not JSON.
As in Snowplow, an unknown ``data.name`` is ignored (with a warning) and a
disabled enrichment is left out.

All mistakes are gathered and raised together, one line each, naming the file,
the field and what was expected, so a configuration is fixed in one pass.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plowline.enrich.enrichments.base import ORDER, Enrichment
from plowline.errors import ConfigurationError
from plowline.iglu.config import read_json
from plowline.iglu.core import IgluSyntaxError, SchemaCriterion, SchemaKey
from plowline.iglu.draft4 import InvalidSchemaError, data_reports
from plowline.iglu.resolver import (
    RegistryUnreachableError,
    Resolver,
    SchemaNotFoundError,
)

logger = logging.getLogger(__name__)

COMBINED = SchemaCriterion.parse(
    "iglu:com.snowplowanalytics.snowplow/enrichments/jsonschema/1-0-*"
)
_MISSING: Any = object()


class EnrichmentConfigError(ConfigurationError):
    """One or more enrichment configuration files are wrong; ``problems`` holds
    one line per mistake."""

    def __init__(self, directory: Path, problems: list[str]) -> None:
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"Enrichment configuration in {directory}: {count}\n{lines}")
        self.directory = directory
        self.problems = problems


@dataclass(frozen=True, slots=True)
class EnrichmentConfig:
    """One parsed configuration entry."""

    source: str  # the file, with "data[i]" for an entry of the combined form
    key: SchemaKey
    name: str
    enabled: bool
    data: dict[str, Any]

    @property
    def parameters(self) -> Any:
        return self.data.get("parameters", {})


def load_enrichments(
    directory: str | Path,
    resolver: Resolver | None = None,
    *,
    classes: Mapping[str, type[Enrichment]] | None = None,
) -> list[Enrichment]:
    """The enabled enrichments configured in ``directory``, in Snowplow's order.

    ``resolver`` validates each ``data`` against its configuration schema when
    it can find it; ``classes`` maps names to classes (by default every
    enrichment Plowline has, see ``registry.enrichment_classes``).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigurationError(
            f"Enrichment configuration folder {directory} does not exist "
            "or is not a folder"
        )
    if classes is None:
        from plowline.enrich.enrichments.registry import enrichment_classes

        classes = enrichment_classes()
    resolver = resolver if resolver is not None else Resolver.default()

    problems: list[str] = []
    configs: list[EnrichmentConfig] = []
    for path in sorted(directory.glob("*.json")):
        configs.extend(read_configs(path, resolver, problems))
    enrichments = _build(configs, resolver, classes, problems)
    if problems:
        raise EnrichmentConfigError(directory, problems)

    logger.info(
        "Enrichments from %s: %s",
        directory,
        ", ".join(e.name for e in enrichments) or "none enabled",
    )
    return sort_enrichments(enrichments)


def sort_enrichments(enrichments: list[Enrichment]) -> list[Enrichment]:
    """Snowplow's order (``base.ORDER``); names it does not list come last."""
    rank = {name: index for index, name in enumerate(ORDER)}
    return sorted(enrichments, key=lambda e: (rank.get(e.name, len(ORDER)), e.name))


def read_configs(
    path: Path, resolver: Resolver, problems: list[str]
) -> list[EnrichmentConfig]:
    """The entries of one file; its mistakes are appended to ``problems``."""
    try:
        document = read_json(path)
    except ConfigurationError as exc:
        problems.append(str(exc))
        return []
    source = str(path)
    if not _configuration_like(document):
        logger.info(
            '%s: skipped: not an enrichment configuration (no "schema" or "data" '
            "at its top), taken for a data file",
            source,
        )
        return []
    key = _schema_key(document, source, problems)
    if key is None:
        return []
    if not COMBINED.matches(key):
        entry = _entry(document, key, source, problems)
        return [] if entry is None else [entry]

    items = document.get("data")
    if not isinstance(items, list):
        problems.append(
            f"{source}: data: expected an array of enrichment configurations"
        )
        return []
    entries = []
    for index, item in enumerate(items):
        where = f"{source} data[{index}]"
        item_key = _schema_key(item, where, problems)
        entry = None if item_key is None else _entry(item, item_key, where, problems)
        if entry is not None:
            entries.append(entry)
    return entries


def _configuration_like(document: Any) -> bool:
    """Whether a JSON file of the folder is meant as a configuration: an object
    with a "schema" or a "data" key at its top. Anything else (an array, a
    referer database) is a data file kept beside the configurations."""
    return isinstance(document, dict) and ("schema" in document or "data" in document)


def _schema_key(document: Any, source: str, problems: list[str]) -> SchemaKey | None:
    if not isinstance(document, dict):
        problems.append(f'{source}: expected a JSON object {{"schema", "data"}}')
        return None
    schema = document.get("schema", _MISSING)
    if schema is _MISSING:
        problems.append(
            f"{source}: schema: missing; expected an Iglu URI such as "
            "iglu:com.snowplowanalytics.snowplow/anon_ip/jsonschema/1-0-1"
        )
        return None
    try:
        return SchemaKey.parse(schema)
    except IgluSyntaxError as exc:
        problems.append(f"{source}: schema: {exc}")
        return None


def _entry(
    document: dict[str, Any], key: SchemaKey, source: str, problems: list[str]
) -> EnrichmentConfig | None:
    data = document.get("data", _MISSING)
    if not isinstance(data, dict):
        problems.append(f"{source}: data: {_expected('an object', data)}")
        return None
    name = data.get("name", _MISSING)
    enabled = data.get("enabled", _MISSING)
    parameters = data.get("parameters", {})
    count = len(problems)
    if not isinstance(name, str) or not name:
        problems.append(
            f"{source}: data.name: {_expected('the enrichment name, a string', name)}"
        )
    if not isinstance(enabled, bool):
        problems.append(
            f"{source}: data.enabled: {_expected('true or false', enabled)}"
        )
    if not isinstance(parameters, dict):
        problems.append(
            f"{source}: data.parameters: {_expected('an object', parameters)}"
        )
    if len(problems) > count:
        return None
    if key.name != name:
        problems.append(
            f"{source}: schema: {key} is the schema of {key.name!r}, "
            f"but data.name is {name!r}"
        )
        return None
    return EnrichmentConfig(source, key, name, enabled, data)


def _expected(what: str, value: Any) -> str:
    if value is _MISSING:
        return f"missing; expected {what}"
    shown = json.dumps(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"expected {what}, found {shown}"


def _build(
    configs: list[EnrichmentConfig],
    resolver: Resolver,
    classes: Mapping[str, type[Enrichment]],
    problems: list[str],
) -> list[Enrichment]:
    enrichments: list[Enrichment] = []
    seen: dict[str, str] = {}
    for config in configs:
        cls = classes.get(config.name)
        if cls is None:
            logger.warning(
                "%s: unknown enrichment %r is ignored (known: %s)",
                config.source,
                config.name,
                ", ".join(sorted(classes)) or "none",
            )
            continue
        if config.name in seen:
            problems.append(
                f"{config.source}: data.name: {config.name!r} is configured twice "
                f"(also in {seen[config.name]})"
            )
            continue
        seen[config.name] = config.source
        if not _accepted(config, cls, problems) or not _valid(
            config, resolver, problems
        ):
            continue
        if not config.enabled:
            logger.debug("%s: enrichment %s is disabled", config.source, config.name)
            continue
        enrichment = _instantiate(config, cls, problems)
        if enrichment is not None:
            enrichments.append(enrichment)
    return enrichments


def _accepted(
    config: EnrichmentConfig, cls: type[Enrichment], problems: list[str]
) -> bool:
    criteria = [SchemaCriterion.for_version(config.key, v) for v in cls.accepts]
    if any(criterion.matches(config.key) for criterion in criteria):
        return True
    problems.append(
        f"{config.source}: schema: version {config.key.version} of {config.name} "
        f"is not supported; expected {' or '.join(cls.accepts)}"
    )
    return False


def _valid(config: EnrichmentConfig, resolver: Resolver, problems: list[str]) -> bool:
    """Checks ``data`` against the configuration's schema where it is found."""
    try:
        validator = resolver.validator(config.key)
        reports = data_reports(validator, config.data)
    except SchemaNotFoundError:
        logger.debug(
            "%s: schema %s not found; data not validated", config.source, config.key
        )
        return True
    except (RegistryUnreachableError, InvalidSchemaError) as exc:
        logger.warning(
            "%s: data not validated against its schema: %s", config.source, exc
        )
        return True
    for report in reports:
        where, _, message = report.message.partition(": ")
        field = "data" + where[1:]
        problems.append(f"{config.source}: {field}: {message} (schema {config.key})")
    return not reports


_ENVELOPE_KEYS = frozenset({"vendor", "name", "enabled", "parameters"})


def _instantiate(
    config: EnrichmentConfig, cls: type[Enrichment], problems: list[str]
) -> Enrichment | None:
    parameters = config.parameters
    # Settings that Snowplow's files keep beside ``parameters`` (PII's
    # emitEvent and anonymousOnly) reach the enrichment with them.
    beside = {k: v for k, v in config.data.items() if k not in _ENVELOPE_KEYS}
    if beside and isinstance(parameters, dict):
        parameters = {**beside, **parameters}
    try:
        enrichment = cls.from_parameters(parameters, source=config.source)
    except ConfigurationError as exc:
        problems.append(str(exc))
        return None
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(
            f"{config.source}: data.parameters: rejected by {config.name}: "
            f"{type(exc).__name__}: {exc}"
        )
        return None
    enrichment.schema_key = str(config.key)
    return enrichment
