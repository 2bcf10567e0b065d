"""Opening a store by kind: ``duckdb`` (a file), ``postgres`` (a libpq DSN)
or ``parquet`` (a folder). Each store's module is imported only when used."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import cast

from plowline.errors import ConfigurationError
from plowline.storage.base import Store

# kind -> (module under plowline.storage, class, whether it takes a path)
_STORES = {
    "duckdb": ("duckdb", "DuckDBStore", True),
    "postgres": ("postgres", "PostgresStore", False),
    "parquet": ("parquet", "ParquetStore", True),
}
STORE_KINDS = tuple(_STORES)


def open_store(kind: str, where: str) -> Store:
    """The store of ``kind`` at ``where``, ready for ``ensure_schema``."""
    if kind not in _STORES:
        raise ConfigurationError(
            f"Unknown store kind {kind!r}: expected one of {', '.join(STORE_KINDS)}."
        )
    module_name, class_name, takes_path = _STORES[kind]
    module = importlib.import_module(f"plowline.storage.{module_name}")
    store_class = getattr(module, class_name)
    return cast(Store, store_class(Path(where) if takes_path else where))
