"""The DuckDB store: :class:`~plowline.storage.base.Store` on one connection.

Arrow tables are handed to DuckDB by registering them as views, so inserts run
in DuckDB's C++ without a copy through Python. Event ids are stored as UUID
while every id is a canonical lower-case UUID (the enricher always writes
one); the first batch with another id turns the id columns into VARCHAR, in
its own transaction (:func:`~plowline.storage.duckdb.schema.widen_ids`).
Reads give the ids back as the same text either way.
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
import pyarrow.compute as pc  # type: ignore[import-untyped]

from plowline.errors import PlowlineError, StoreUnavailableError
from plowline.storage.base import Store
from plowline.storage.batch import EVENTS_SCHEMA
from plowline.storage.duckdb.schema import (
    CHILD_TYPES,
    EVENTS_TABLE,
    FAILED_EVENTS_TABLE,
    ID_TYPE,
    KINDS_OF_CHILD_TYPES,
    LOAD_SETTINGS,
    MANIFEST_TABLE,
    NO_VACUUM,
    NO_VACUUM_ROWS,
    child_ddl,
    child_table,
    connect,
    ensure_schema,
    id_type,
    quote,
    widen_ids,
)
from plowline.storage.failed import FAILED_SCHEMA
from plowline.storage.manifest import ManifestEntry
from plowline.storage.shred import FIXED_NAMES, ShredKind

log = logging.getLogger(__name__)

_views = itertools.count()
UUID_TEXT = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# Every events column, with the id as text whatever its stored type.
_EVENT_COLUMNS = ", ".join(
    "event_id::VARCHAR AS event_id" if name == "event_id" else quote(name)
    for name in EVENTS_SCHEMA.names
)


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
            if not read_only:
                for name, value in LOAD_SETTINGS.items():
                    self.conn.execute(f"SET {name} = {value}").fetchall()
        self._children: dict[str, dict[str, ShredKind]] | None = None
        self._id_type: str | None = None
        self._in_transaction = False
        # Big batches stop vacuuming on a connection of this store's own.
        self._may_stop_vacuum = self._owned and not read_only

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
            self._id_type = None
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
            self._id_type = None
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

    def loaded_batches(self) -> set[str]:
        rows = self.conn.execute(f"SELECT batch_id FROM {MANIFEST_TABLE}").fetchall()
        return {str(batch_id) for (batch_id,) in rows}

    def record_batch(self, entry: ManifestEntry) -> None:
        row = entry.as_row()
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.conn.execute(
            f"INSERT INTO {MANIFEST_TABLE} ({columns}) VALUES ({marks})",
            list(row.values()),
        ).fetchall()

    # Events

    def _ids(self) -> str:
        """The stored type of event ids, UUID or VARCHAR."""
        if self._id_type is None:
            self._id_type = id_type(self.conn)
        return self._id_type

    def existing_events(self, event_ids: pa.Array) -> pa.Table:
        """A semi-join inside DuckDB: only the (rare) stored matches come back."""
        ids = pa.array(event_ids, pa.string())
        match = "SELECT event_id FROM {view}"
        if self._ids() == ID_TYPE:
            # Other text cannot be in a UUID column (and 'ABC…' must not match 'abc…').
            ids = ids.filter(pc.match_substring_regex(ids, UUID_TEXT))
            match = "SELECT event_id::UUID FROM {view}"
        if not len(ids):
            return EVENTS_SCHEMA.empty_table()
        with self._view(pa.table({"event_id": ids})) as view:
            # The ids first: DuckDB reads every column of the rows it scans
            # for a filter, and matches are rare.
            where = f"WHERE event_id IN ({match.format(view=view)})"
            count = self.conn.sql(
                f"SELECT count(*) FROM {EVENTS_TABLE} {where}"
            ).fetchall()[0][0]
            if not count:
                return EVENTS_SCHEMA.empty_table()
            found = self.conn.sql(
                f"SELECT {_EVENT_COLUMNS} FROM {EVENTS_TABLE} {where}"
            ).to_arrow_table()
        return _as_schema(found, EVENTS_SCHEMA)

    def insert_events(self, events: pa.Table, source_text: object = None) -> None:
        if self._ids() == ID_TYPE and events.num_rows:
            ids = events.column("event_id")
            if not pc.all(pc.match_substring_regex(ids, UUID_TEXT)).as_py():
                log.warning(
                    "An event id is not a lower-case UUID: event_id and root_id "
                    "columns become VARCHAR"
                )
                self._run_widen()
        if self._may_stop_vacuum and events.num_rows >= NO_VACUUM_ROWS:
            for name, value in NO_VACUUM.items():
                self.conn.execute(f"SET {name} = {value}").fetchall()
            self._may_stop_vacuum = False
        self._run(f"INSERT INTO {EVENTS_TABLE} SELECT * FROM {{view}}", events)

    def _run_widen(self) -> None:
        try:
            widen_ids(self.conn)
        except duckdb.Error as exc:
            raise PlowlineError(
                f"DuckDB could not widen the id columns: {exc}"
            ) from exc
        self._id_type = "VARCHAR"
        self._children = None

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
        self._run(child_ddl(table, dict(columns), self._ids()))
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
            f"SELECT {_EVENT_COLUMNS} FROM {EVENTS_TABLE} ORDER BY event_id"
        ).to_arrow_table()
        return _as_schema(table, EVENTS_SCHEMA)

    def child_tables(self) -> list[str]:
        return sorted(self._child_map())

    def read_child_table(self, table: str) -> pa.Table:
        # UUIDs order as their text does, so ORDER BY ALL is the same either way.
        return self.conn.sql(
            f"SELECT * REPLACE (root_id::VARCHAR AS root_id) "
            f"FROM {child_table(table)} ORDER BY ALL"
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
