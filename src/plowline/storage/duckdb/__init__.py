"""Load enriched events and failed events into a DuckDB file.

The store itself is :class:`DuckDBStore`; the functions here are the calls the
CLI, ``plowline up`` and scripts use, on a path or an open connection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path

import duckdb

from plowline.iglu.resolver import Resolver
from plowline.storage import loader
from plowline.storage.batch import rows_to_table
from plowline.storage.duckdb.schema import (
    EVENTS_TABLE,
    FAILED_EVENTS_TABLE,
    MANIFEST_TABLE,
    connect,
    ensure_schema,
    events_ddl,
)
from plowline.storage.duckdb.store import DuckDBStore
from plowline.storage.failed import failed_batch
from plowline.storage.loader import LoadResult
from plowline.storage.tsv import read_tsv

__all__ = [
    "EVENTS_TABLE",
    "FAILED_EVENTS_TABLE",
    "MANIFEST_TABLE",
    "DuckDBStore",
    "LoadResult",
    "connect",
    "ensure_schema",
    "events_ddl",
    "load_failed",
    "load_failed_files",
    "load_files",
    "load_rows",
    "read_tsv",
]

log = logging.getLogger(__name__)


def load_rows(
    conn: duckdb.DuckDBPyConnection,
    rows: Sequence[Sequence[str]],
    *,
    transaction: bool = True,
    resolver: Resolver | None = None,
) -> int:
    """Insert enriched rows (131 TSV strings each, ``""`` for NULL): typed,
    de-duplicated and shredded, all or none.

    Returns the number of events written (duplicates dropped are not counted).
    Raises BadInputError naming the row (1-based), field and value when a row
    does not fit. The transaction is this function's own unless
    ``transaction=False``, for callers that write more in the same transaction.
    """
    store = DuckDBStore(conn)
    table = rows_to_table(rows)
    with store.transaction() if transaction else nullcontext():
        return loader.write_events(store, table, resolver=resolver).events


def load_failed(
    conn: duckdb.DuckDBPyConnection,
    failed: Iterable[bytes | str],
    *,
    transaction: bool = True,
) -> int:
    """Insert failed-event JSON lines into ``atomic.failed_events``, all or none.

    Blank lines are skipped; line numbers in errors count them. ``transaction``
    is as for :func:`load_rows`.
    """
    store = DuckDBStore(conn)
    batch = failed_batch(failed)
    with store.transaction() if transaction else nullcontext():
        store.insert_failed(batch)
    return int(batch.num_rows)


def load_files(
    db_path: str | Path,
    inputs: Sequence[str],
    *,
    batch_bytes: int | None = None,
    resolver: Resolver | None = None,
) -> LoadResult:
    """Load enriched TSV inputs into a DuckDB file, exactly once per batch."""
    store = DuckDBStore(db_path)
    try:
        return loader.load_files(
            store, inputs, batch_bytes=batch_bytes, resolver=resolver
        )
    finally:
        store.close()


def load_failed_files(
    db_path: str | Path, inputs: Sequence[str], *, batch_bytes: int | None = None
) -> LoadResult:
    """Load failed-event JSON-lines inputs into a DuckDB file, exactly once."""
    store = DuckDBStore(db_path)
    try:
        return loader.load_failed_files(store, inputs, batch_bytes=batch_bytes)
    finally:
        store.close()
