"""The calls behind ``plowline models`` and ``plowline report``, on a DuckDB
file or a PostgreSQL DSN.

Reports on DuckDB go through :func:`plowline.storage.query.run_query`: through
``plowline up``'s query socket while it owns the file, else the file opened
read-only. Building the models writes, so on DuckDB it needs the file to
itself.
"""

from __future__ import annotations

import logging
from typing import Literal

from plowline.analytics.models import (
    MODEL_COLUMNS_SQL,
    ModelResult,
    ModelSettings,
    build_models,
    outdated_tables,
)
from plowline.analytics.reports import Filters, report_sql
from plowline.analytics.tables import SCHEMA
from plowline.analytics.warehouse import Warehouse
from plowline.errors import (
    BadInputError,
    ConfigurationError,
    StoreUnavailableError,
)
from plowline.storage.query import QueryResult, run_query, to_json_value

log = logging.getLogger(__name__)

StoreKind = Literal["duckdb", "postgres"]


def open_warehouse(kind: StoreKind, where: str) -> Warehouse:
    """A writable connection for building the models."""
    if kind == "postgres":
        return Warehouse.open_postgres(where)
    try:
        return Warehouse.open_duckdb(where)
    except StoreUnavailableError as exc:
        raise StoreUnavailableError(
            f"{exc} Building the models writes to the file: run `plowline models` "
            "while `plowline up` is stopped (reports work while it runs)."
        ) from exc


def update_models(
    kind: StoreKind, where: str, settings: ModelSettings | None = None
) -> ModelResult:
    """Build or update the models in the store at ``where``."""
    wh = open_warehouse(kind, where)
    try:
        return build_models(wh, settings)
    finally:
        wh.close()


_MODELS_BUILT = (
    "SELECT COUNT(*) FROM information_schema.tables "
    f"WHERE table_schema = '{SCHEMA}' AND table_name = 'model_state'"
)


def run_report(
    kind: StoreKind,
    where: str,
    name: str,
    filters: Filters,
    steps: list[str] | None = None,
) -> QueryResult:
    """One report's table."""
    sql = report_sql(name, filters, steps)
    if kind == "duckdb":
        if not run_query(where, _MODELS_BUILT).rows[0][0]:
            raise ConfigurationError(_NO_MODELS.format(where=f"--duckdb {where}"))
        try:
            return run_query(where, sql)
        except BadInputError as exc:
            if outdated_tables(run_query(where, MODEL_COLUMNS_SQL).rows):
                raise ConfigurationError(
                    _OUTDATED.format(where=f"--duckdb {where}")
                ) from exc
            raise

    wh = Warehouse.open_postgres(where)
    try:
        if not wh.scalar(_MODELS_BUILT):
            raise ConfigurationError(_NO_MODELS.format(where="--postgres DSN"))
        try:
            columns, found = wh.query(sql)
        except BadInputError as exc:
            if outdated_tables(wh.query(MODEL_COLUMNS_SQL)[1]):
                raise ConfigurationError(
                    _OUTDATED.format(where="--postgres DSN")
                ) from exc
            raise
        rows = [[to_json_value(value) for value in row] for row in found]
    finally:
        wh.close()
    return QueryResult(columns, _types(rows, len(columns)), rows)


_OUTDATED = (
    "The models here were built by an earlier version of Plowline: run "
    "`plowline models {where}` to rebuild them (`plowline up` does it at its "
    "next model update)."
)


_NO_MODELS = "The models are not built here yet: run `plowline models {where}` first."


def _types(rows: list[list[object]], width: int) -> list[str]:
    """Type names for the table output: numbers right-aligned."""
    types = ["VARCHAR"] * width
    for row in rows:
        for i, value in enumerate(row):
            if isinstance(value, bool):
                types[i] = "BOOLEAN"
            elif isinstance(value, int | float):
                types[i] = "DOUBLE"
            elif isinstance(value, str) and _numeric(value):
                types[i] = "DECIMAL"
    return types


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
