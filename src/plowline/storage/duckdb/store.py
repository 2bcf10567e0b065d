"""The DuckDB store: :class:`~plowline.storage.base.Store` on one connection.

Arrow tables are handed to DuckDB by registering them as views, so inserts run
in DuckDB's C++ without a copy through Python.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import ClassVar

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]

from plowline.errors import PlowlineError, StoreUnavailableError
from plowline.storage.base import Store
from plowline.storage.batch import EVENTS_SCHEMA
from plowline.storage.duckdb.schema import (
    CHILD_TYPES,
    EVENTS_TABLE,
    FAILED_EVENTS_TABLE,
    KINDS_OF_CHILD_TYPES,
    MANIFEST_TABLE,
    child_ddl,
    child_table,
    connect,
    ensure_schema,
    quote,
)
from plowline.storage.failed import FAILED_SCHEMA
from plowline.storage.manifest import ManifestEntry
from plowline.storage.shred import FIXED_NAMES, ShredKind

log = logging.getLogger(__name__)

_views = itertools.count()


class DuckDBStore(Store):
    """Events in a DuckDB file (or an open connection, which stays the caller's)."""

    kind: ClassVar[str] = "duckdb"

    def __init__(
        self, target: str | Path | duckdb.DuckDBPyConnection, *, read_only: bool = False
    ) -> None:
        if isinstance(target, duckdb.DuckDBPyConnection):
            self.conn = target
            self._owned = False
        else:
            self.conn = connect(target, read_only=read_only)
            self._owned = True
        self._children: dict[str, dict[str, ShredKind]] | None = None
        self._in_transaction = False

    def close(self) -> None:
        if self._owned:
            self.conn.close()

    def ensure_schema(self) -> None:
        ensure_schema(self.conn)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction:
            raise PlowlineError("DuckDBStore transactions do not nest")
        self.conn.begin()
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._children = None  # tables made in this transaction are gone
            # After a failed commit DuckDB has no transaction left to roll back.
            with suppress(duckdb.Error):
                self.conn.rollback()
            raise
        finally:
            self._in_transaction = False
        try:
            self.conn.commit()
        except duckdb.Error as exc:
            self._children = None
            raise StoreUnavailableError(f"Could not commit to DuckDB: {exc}") from exc

    @contextmanager
    def _view(self, table: pa.Table) -> Iterator[str]:
        name = f"plowline_batch_{next(_views)}"
        self.conn.register(name, table)
        try:
            yield name
        finally:
            with suppress(duckdb.Error):
                self.conn.unregister(name)

    def _run(self, sql: str, table: pa.Table | None = None) -> None:
        try:
            if table is None:
                self.conn.execute(sql).fetchall()
                return
            with self._view(table) as view:
                self.conn.execute(sql.replace("{view}", view)).fetchall()
        except duckdb.IOException as exc:
            raise StoreUnavailableError(f"Could not write to DuckDB: {exc}") from exc
        except duckdb.Error as exc:
            raise PlowlineError(f"DuckDB refused the batch: {exc}") from exc

    # The manifest

    def batch_loaded(self, batch_id: str) -> bool:
        rows = self.conn.execute(
            f"SELECT count(*) FROM {MANIFEST_TABLE} WHERE batch_id = ?", [batch_id]
        ).fetchall()
        return bool(rows[0][0])

    def record_batch(self, entry: ManifestEntry) -> None:
        row = entry.as_row()
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.conn.execute(
            f"INSERT INTO {MANIFEST_TABLE} ({columns}) VALUES ({marks})",
            list(row.values()),
        ).fetchall()

    # Events

    def existing_events(self, event_ids: pa.Array) -> pa.Table:
        ids = pa.table({"event_id": pa.array(event_ids, pa.string())})
        with self._view(ids) as view:
            found = self.conn.sql(
                f"SELECT * FROM {EVENTS_TABLE} "
                f"WHERE event_id IN (SELECT event_id FROM {view})"
            ).to_arrow_table()
        return _as_schema(found, EVENTS_SCHEMA)

    def insert_events(self, events: pa.Table) -> None:
        self._run(f"INSERT INTO {EVENTS_TABLE} SELECT * FROM {{view}}", events)

    # Child tables

    def _child_map(self) -> dict[str, dict[str, ShredKind]]:
        if self._children is None:
            rows = self.conn.execute(
                "SELECT table_name, column_name, data_type "
                "FROM information_schema.columns WHERE table_schema = 'atomic' "
                "AND table_name NOT IN ('events', 'failed_events') "
                "ORDER BY table_name, ordinal_position"
            ).fetchall()
            children: dict[str, dict[str, ShredKind]] = {}
            for table, column, data_type in rows:
                columns = children.setdefault(table, {})
                if column not in FIXED_NAMES:
                    columns[column] = KINDS_OF_CHILD_TYPES.get(data_type, "text")
            self._children = children
        return self._children

    def child_columns(self, table: str) -> dict[str, ShredKind] | None:
        columns = self._child_map().get(table)
        return None if columns is None else dict(columns)

    def create_child_table(self, table: str, columns: Mapping[str, ShredKind]) -> None:
        self._run(child_ddl(table, dict(columns)))
        self._child_map()[table] = dict(columns)
        log.info("Created child table atomic.%s", table)

    def alter_child_table(
        self,
        table: str,
        add: Mapping[str, ShredKind],
        widen: Mapping[str, ShredKind],
    ) -> None:
        known = self._child_map().setdefault(table, {})
        for column, kind in add.items():
            self._run(
                f"ALTER TABLE {child_table(table)} ADD COLUMN {quote(column)} "
                f"{CHILD_TYPES[kind]}"
            )
            known[column] = kind
        for column, kind in widen.items():
            self._run(
                f"ALTER TABLE {child_table(table)} ALTER COLUMN {quote(column)} "
                f"TYPE {CHILD_TYPES[kind]}"
            )
            known[column] = kind
        log.info(
            "Child table atomic.%s: added %s, widened %s",
            table,
            sorted(add) or "nothing",
            sorted(widen) or "nothing",
        )

    def insert_child_rows(self, table: str, rows: pa.Table) -> None:
        columns = ", ".join(quote(name) for name in rows.column_names)
        self._run(
            f"INSERT INTO {child_table(table)} ({columns}) "
            f"SELECT {columns} FROM {{view}}",
            rows,
        )

    # Failed events

    def insert_failed(self, failed: pa.Table) -> None:
        if failed.num_rows:
            columns = ", ".join(failed.column_names)
            self._run(
                f"INSERT INTO {FAILED_EVENTS_TABLE} ({columns}) "
                f"SELECT {columns} FROM {{view}}",
                failed,
            )

    # Reading back

    def read_events(self) -> pa.Table:
        table = self.conn.sql(
            f"SELECT * FROM {EVENTS_TABLE} ORDER BY event_id"
        ).to_arrow_table()
        return _as_schema(table, EVENTS_SCHEMA)

    def child_tables(self) -> list[str]:
        return sorted(self._child_map())

    def read_child_table(self, table: str) -> pa.Table:
        return self.conn.sql(
            f"SELECT * FROM {child_table(table)} ORDER BY ALL"
        ).to_arrow_table()

    def read_failed(self) -> pa.Table:
        table = self.conn.sql(
            f"SELECT * FROM {FAILED_EVENTS_TABLE} ORDER BY failed_at, failed_event"
        ).to_arrow_table()
        return _as_schema(table, FAILED_SCHEMA)

    def read_manifest(self) -> pa.Table:
        return self.conn.sql(
            f"SELECT * FROM {MANIFEST_TABLE} ORDER BY loaded_at, batch_id"
        ).to_arrow_table()


def _as_schema(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """DuckDB's Arrow output as the store-neutral schema (its JSON columns
    arrive as an extension type over strings)."""
    columns = []
    for column, field in zip(table.columns, schema, strict=True):
        if isinstance(column.type, pa.ExtensionType):
            column = column.cast(column.type.storage_type)
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)
