"""Which enrichment classes exist: ``data.name`` of a configuration -> class."""

from __future__ import annotations

import importlib
import inspect
import logging

from plowline.enrich.enrichments.base import Enrichment
from plowline.errors import PlowlineError

logger = logging.getLogger(__name__)

PACKAGE = "plowline.enrich.enrichments"
MODULES: tuple[str, ...] = (
    "anon_ip",
    "ip_lookups",
    "ua_parser",
    "user_agent_utils",
    "referer_parser",
    "campaign",
    "fingerprint",
    "extractors",
    "cross_navigation",
    "pii",
    "bots",
    "currency",
    "custom",
)


def enrichment_classes(
    modules: tuple[str, ...] = MODULES,
) -> dict[str, type[Enrichment]]:
    """Every concrete Enrichment subclass of the enrichment modules, by name.

    A module that does not exist is left out (debug log); a module that exists
    but fails to import raises, since its enrichments would silently vanish.
    """
    classes: dict[str, type[Enrichment]] = {}
    for short in modules:
        module_name = f"{PACKAGE}.{short}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            logger.debug("Enrichment module %s does not exist; skipped", module_name)
            continue
        for cls in vars(module).values():
            if not _is_enrichment(cls, module_name):
                continue
            other = classes.get(cls.name)
            if other is not None and other is not cls:
                raise PlowlineError(
                    f"Two enrichment classes are named {cls.name!r}: "
                    f"{other.__module__}.{other.__qualname__} and "
                    f"{cls.__module__}.{cls.__qualname__}"
                )
            classes[cls.name] = cls
    return classes


def _is_enrichment(value: object, module_name: str) -> bool:
    return (
        inspect.isclass(value)
        and issubclass(value, Enrichment)
        and value is not Enrichment
        and value.__module__ == module_name
        and isinstance(getattr(value, "name", None), str)
    )
