"""Iglu: schema keys, the resolver that finds schemas, and validation against them."""

from plowline.iglu.config import load_resolver, parse_resolver_config
from plowline.iglu.core import IgluSyntaxError, SchemaCriterion, SchemaKey, SchemaVer
from plowline.iglu.draft4 import DataReport, InvalidSchemaError
from plowline.iglu.repositories import (
    EmbeddedRepository,
    HttpRepository,
    LocalRepository,
    Repository,
)
from plowline.iglu.resolver import (
    RegistryUnreachableError,
    ResolutionError,
    Resolver,
    SchemaNotFoundError,
)
from plowline.iglu.validation import check, check_self_describing, is_unreachable

__all__ = [
    "DataReport",
    "EmbeddedRepository",
    "HttpRepository",
    "IgluSyntaxError",
    "InvalidSchemaError",
    "LocalRepository",
    "RegistryUnreachableError",
    "Repository",
    "ResolutionError",
    "Resolver",
    "SchemaCriterion",
    "SchemaKey",
    "SchemaNotFoundError",
    "SchemaVer",
    "check",
    "check_self_describing",
    "is_unreachable",
    "load_resolver",
    "parse_resolver_config",
]
