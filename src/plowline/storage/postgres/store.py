"""The PostgreSQL store: :class:`~plowline.storage.base.Store` on one psycopg
connection.

Batches go in with ``COPY ... FROM STDIN`` in PostgreSQL's text format, made
by Arrow compute kernels from the typed Arrow tables
(:mod:`~plowline.storage.postgres.encode`), so no value passes through Python
one by one. A batch of events that the loader read from enriched TSV and that
de-duplication left as it was is sent as that TSV instead (``NULL ''``,
backslashes doubled): the same values, as the loader's checks have passed,
for a third of the Python time and less parsing on the server. Each store
transaction is one PostgreSQL transaction and takes a transaction-level
advisory lock first, so two loads into one database run their batches one
after the other and de-duplicate against each other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit

import psycopg
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from psycopg.types.string import TextLoader

from plowline.errors import (
    BadInputError,
    ConfigurationError,
    PlowlineError,
    StoreUnavailableError,
)
from plowline.storage.base import Store
from plowline.storage.batch import EVENTS_SCHEMA
from plowline.storage.failed import FAILED_SCHEMA
from plowline.storage.manifest import MANIFEST_COLUMNS, ManifestEntry
from plowline.storage.postgres.encode import (
    copy_text,
    nul_rows,
    pieces,
    tsv_as_copy_text,
)
from plowline.storage.postgres.schema import (
    ATOMIC,
    CHILD_TYPES,
    EVENTS,
    FAILED_EVENTS,
    KINDS_OF_TYPES,
    MANIFEST,
    NOT_CHILDREN,
    child_ddl,
    child_table,
    column,
    column_comments,
    pg_name,
    schema_statements,
)
from plowline.storage.shred import ARROW_KINDS, FIXED_COLUMNS, FIXED_NAMES, ShredKind

log = logging.getLogger(__name__)

# The key of the advisory lock every write transaction takes ("plowline").
LOCK_KEY = 0x706C6F776C696E65
_MANIFEST_ARROW = {
    "str": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "tstamp": pa.timestamp("us"),
}
MANIFEST_SCHEMA: pa.Schema = pa.schema(
    [pa.field(name, _MANIFEST_ARROW[kind]) for name, kind in MANIFEST_COLUMNS]
)


def _shown(dsn: str) -> str:
    """A DSN for messages, without its password."""
    parts = urlsplit(dsn)
    if parts.scheme and parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return dsn if "password" not in dsn else "the given PostgreSQL database"


class PostgresStore(Store):
    """Events in a PostgreSQL database (a libpq DSN, or an open connection,
    which stays the caller's and must be in autocommit mode)."""

    kind: ClassVar[str] = "postgres"
    takes_source_text: ClassVar[bool] = True

    def __init__(self, target: str | psycopg.Connection[Any]) -> None:
        if isinstance(target, psycopg.Connection):
            if not target.autocommit:
                raise PlowlineError("PostgresStore needs an autocommit connection")
            self.conn = target
            self._owned = False
            self._where = "the given connection"
        else:
            self._where = _shown(target)
            try:
                self.conn = psycopg.connect(
                    target, autocommit=True, client_encoding="utf8"
                )
            except psycopg.Error as exc:
                detail = str(exc).strip()
                if "does not exist" in detail and "database" in detail:
                    # Plowline creates its schemas and tables, not the database.
                    raise ConfigurationError(
                        f"Cannot connect to PostgreSQL at {self._where}: {detail} "
                        "Create it first (createdb NAME, or CREATE DATABASE NAME in "
                        "psql); Plowline then creates its schemas and tables."
                    ) from exc
                raise StoreUnavailableError(
                    f"Cannot connect to PostgreSQL at {self._where}: {detail}"
                ) from exc
            self._owned = True
        # JSON columns come back as the text that was stored, not parsed.
        for name in ("json", "jsonb"):
            self.conn.adapters.register_loader(name, TextLoader)
        self._children: dict[str, dict[str, ShredKind]] | None = None
        self._in_transaction = False

    def close(self) -> None:
        if self._owned:
            self.conn.close()

    # Running statements

    def _execute(
        self, statement: sql.SQL | sql.Composed, params: Sequence[Any] | None = None
    ) -> list[tuple[Any, ...]]:
        try:
            cursor = self.conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise self._problem(exc) from exc

    def _problem(self, exc: psycopg.Error) -> PlowlineError:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return StoreUnavailableError(f"PostgreSQL at {self._where} failed: {exc}")
        return PlowlineError(f"PostgreSQL refused the batch: {exc}")

    def ensure_schema(self) -> None:
        with self.conn.transaction():
            # Serialised, as CREATE ... IF NOT EXISTS may race another loader.
            self._execute(sql.SQL("SELECT pg_advisory_xact_lock(%s)"), [LOCK_KEY])
            for statement in schema_statements():
                self._execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction:
            raise PlowlineError("PostgresStore transactions do not nest")
        self._in_transaction = True
        try:
            with self.conn.transaction():
                self._execute(sql.SQL("SELECT pg_advisory_xact_lock(%s)"), [LOCK_KEY])
                # Another loader may have made or widened child tables since
                # this map was read: read it again under the lock.
                self._children = None
                yield
        except BaseException as exc:
            self._children = None  # tables made or altered in it are gone
            if isinstance(exc, psycopg.Error):
                raise self._problem(exc) from exc
            raise
        finally:
            self._in_transaction = False

    def _copy(
        self,
        table: sql.Identifier,
        columns: Sequence[sql.Identifier],
        rows: pa.Table,
    ) -> None:
        """Append an Arrow table's rows with COPY (text format). A thread
        sends the data while the next piece is made."""
        if rows.num_rows == 0:
            return
        rows = _without_nul(rows, table.as_string(self.conn), refuse=table == EVENTS)
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            table, sql.SQL(", ").join(columns)
        )
        try:
            with self.conn.cursor() as cursor:
                writer = QueuedLibpqWriter(cursor)
                with cursor.copy(statement, writer=writer) as copy:
                    for piece in copy_text(rows):
                        copy.write(piece)
        except psycopg.Error as exc:
            raise self._problem(exc) from exc

    # The manifest

    def batch_loaded(self, batch_id: str) -> bool:
        rows = self._execute(
            sql.SQL("SELECT 1 FROM {} WHERE batch_id = %s").format(MANIFEST),
            [batch_id],
        )
        return bool(rows)

    def loaded_batches(self) -> set[str]:
        rows = self._execute(sql.SQL("SELECT batch_id FROM {}").format(MANIFEST))
        return {str(batch_id) for (batch_id,) in rows}

    def record_batch(self, entry: ManifestEntry) -> None:
        row = entry.as_row()
        self._execute(
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                MANIFEST,
                sql.SQL(", ").join(map(sql.Identifier, row)),
                sql.SQL(", ").join(sql.Placeholder() * len(row)),
            ),
            list(row.values()),
        )

    # Events

    def existing_events(self, event_ids: pa.Array) -> pa.Table:
        # One text parameter, split by the server: adapting a list of strings
        # costs a Python step per id. Event ids hold no line feed (they come
        # from the TSV, or are UUIDs).
        ids = [i for i in pa.array(event_ids, pa.string()).to_pylist() if i]
        if not ids:
            return EVENTS_SCHEMA.empty_table()
        return self._read(
            sql.SQL(
                "SELECT * FROM {} WHERE event_id = ANY(string_to_array(%s, E'\\n'))"
            ).format(EVENTS),
            EVENTS_SCHEMA,
            ["\n".join(ids)],
        )

    def batch_text(self, text: bytes) -> bytes | None:
        """The batch as COPY text (:func:`tsv_as_copy_text`), made on the
        loader's preparing thread; None: the typed events go in instead."""
        return tsv_as_copy_text(text)

    def insert_events(self, events: pa.Table, source_text: object = None) -> None:
        names = [sql.Identifier(name) for name in events.column_names]
        data = None
        if (
            isinstance(source_text, bytes)
            and events.column_names == EVENTS_SCHEMA.names
        ):
            data = source_text
        if data is None:
            self._copy(EVENTS, names, events)
            return
        statement = sql.SQL("COPY {} ({}) FROM STDIN (NULL '')").format(
            EVENTS, sql.SQL(", ").join(names)
        )
        try:
            # A savepoint: PostgreSQL refuses some text Arrow reads (1e400 is
            # infinite to Arrow, out of range to PostgreSQL); the typed values
            # then go the Arrow way, as they always did.
            with self.conn.transaction(), self.conn.cursor() as cursor:
                writer = QueuedLibpqWriter(cursor)
                with cursor.copy(statement, writer=writer) as copy:
                    for piece in pieces(data):
                        copy.write(piece)
        except psycopg.errors.DataError as exc:
            log.info("The batch's text went in through Arrow instead: %s", exc)
            self._copy(EVENTS, names, events)
        except psycopg.Error as exc:
            raise self._problem(exc) from exc

    # Child tables

    def _child_map(self) -> dict[str, dict[str, ShredKind]]:
        if self._children is None:
            rows = self._execute(
                sql.SQL(
                    "SELECT c.relname, obj_description(c.oid, 'pg_class'), "
                    "a.attname, col_description(c.oid, a.attnum), "
                    "format_type(a.atttypid, a.atttypmod) "
                    "FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_attribute a ON a.attrelid = c.oid "
                    "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') "
                    "AND a.attnum > 0 AND NOT a.attisdropped "
                    "AND NOT c.relname = ANY(%s) "
                    "ORDER BY c.relname, a.attnum"
                ),
                [ATOMIC, list(NOT_CHILDREN)],
            )
            children: dict[str, dict[str, ShredKind]] = {}
            for relname, table_note, attname, column_note, type_name in rows:
                table = _full_name(relname, table_note)
                columns = children.setdefault(table, {})
                name = _full_name(attname, column_note)
                if name not in FIXED_NAMES:
                    columns[name] = KINDS_OF_TYPES.get(type_name, "text")
            self._children = children
        return self._children

    def child_columns(self, table: str) -> dict[str, ShredKind] | None:
        columns = self._child_map().get(table)
        return None if columns is None else dict(columns)

    def create_child_table(self, table: str, columns: Mapping[str, ShredKind]) -> None:
        for statement in child_ddl(table, dict(columns)):
            self._execute(statement)
        self._child_map()[table] = dict(columns)
        log.info("Created child table %s.%s", ATOMIC, pg_name(table))

    def alter_child_table(
        self,
        table: str,
        add: Mapping[str, ShredKind],
        widen: Mapping[str, ShredKind],
    ) -> None:
        known = self._child_map().setdefault(table, {})
        target = child_table(table)
        for name, kind in add.items():
            self._execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                    target, column(name), sql.SQL(CHILD_TYPES[kind])
                )
            )
            known[name] = kind
        for statement in column_comments(table, dict(add)):
            self._execute(statement)
        for name, kind in widen.items():
            # bigint -> double precision, anything -> its text: 1, 2.5, true.
            self._execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}::{}").format(
                    target,
                    column(name),
                    sql.SQL(CHILD_TYPES[kind]),
                    column(name),
                    sql.SQL(CHILD_TYPES[kind]),
                )
            )
            known[name] = kind
        log.info(
            "Child table %s.%s: added %s, widened %s",
            ATOMIC,
            pg_name(table),
            sorted(add) or "nothing",
            sorted(widen) or "nothing",
        )

    def insert_child_rows(self, table: str, rows: pa.Table) -> None:
        self._copy(
            child_table(table), [column(name) for name in rows.column_names], rows
        )

    # Failed events

    def insert_failed(self, failed: pa.Table) -> None:
        names = [sql.Identifier(name) for name in failed.column_names]
        self._copy(FAILED_EVENTS, names, failed)

    # Reading back

    def _read(
        self,
        statement: sql.SQL | sql.Composed,
        schema: pa.Schema,
        params: Sequence[Any] | None = None,
    ) -> pa.Table:
        rows = self._execute(statement, params)
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
        return pa.Table.from_arrays(
            [
                pa.array(values, field.type)
                for values, field in zip(columns, schema, strict=True)
            ],
            schema=schema,
        )

    def read_events(self) -> pa.Table:
        return self._read(
            sql.SQL('SELECT * FROM {} ORDER BY event_id COLLATE "C"').format(EVENTS),
            EVENTS_SCHEMA,
        )

    def child_tables(self) -> list[str]:
        return sorted(self._child_map())

    def read_child_table(self, table: str) -> pa.Table:
        kinds = self._child_map().get(table)
        if kinds is None:
            raise PlowlineError(f"There is no child table {ATOMIC}.{pg_name(table)}")
        fields = [pa.field(name, type_) for name, type_ in FIXED_COLUMNS]
        fields += [pa.field(name, ARROW_KINDS[kind]) for name, kind in kinds.items()]
        names = [pg_name(field.name) for field in fields]
        order = [sql.SQL('root_id COLLATE "C"')] + [
            sql.SQL('{} COLLATE "C"').format(sql.Identifier(name))
            if field.type == pa.string()
            else sql.Identifier(name)
            for name, field in zip(names, fields, strict=True)
        ]
        return self._read(
            sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                sql.SQL(", ").join(map(sql.Identifier, names)),
                child_table(table),
                sql.SQL(", ").join(order),
            ),
            pa.schema(fields),
        )

    def read_failed(self) -> pa.Table:
        return self._read(
            sql.SQL(
                'SELECT {} FROM {} ORDER BY failed_at, failed_event::text COLLATE "C"'
            ).format(
                sql.SQL(", ").join(sql.Identifier(f.name) for f in FAILED_SCHEMA),
                FAILED_EVENTS,
            ),
            FAILED_SCHEMA,
        )

    def read_manifest(self) -> pa.Table:
        return self._read(
            sql.SQL(
                'SELECT {} FROM {} ORDER BY loaded_at, batch_id COLLATE "C"'
            ).format(
                sql.SQL(", ").join(sql.Identifier(f.name) for f in MANIFEST_SCHEMA),
                MANIFEST,
            ),
            MANIFEST_SCHEMA,
        )


def _full_name(pg: str, comment: str | None) -> str:
    """A table's or column's Plowline name: its comment when the PostgreSQL
    name was shortened from it."""
    if comment is not None and comment != pg and pg_name(comment) == pg:
        return comment
    return pg


def _without_nul(rows: pa.Table, table: str, *, refuse: bool) -> pa.Table:
    """PostgreSQL text cannot hold U+0000. In ``atomic.events`` (where the
    enricher never writes it) a value with it stops the batch, naming the
    field and the event; elsewhere it becomes U+FFFD, with a warning: a child
    row's value is still whole in the event's JSON column, a failed event's
    in ``failed_event``."""
    for index, name in enumerate(rows.column_names):
        found = nul_rows(rows.column(index))
        if found is None:
            continue
        offset = found.to_pylist().index(True)
        which = ""
        for key in ("event_id", "root_id"):
            if key in rows.column_names:
                which = f" of event {rows.column(key)[offset].as_py()!r}"
                break
        if refuse:
            raise BadInputError(
                f"Field {name}{which} contains the character U+0000, which "
                f"PostgreSQL text cannot hold ({table}). Nothing of this batch "
                "was loaded."
            )
        log.warning(
            "%s.%s: %d values (the first%s) contain U+0000, which PostgreSQL text "
            "cannot hold; stored with U+FFFD instead",
            table,
            name,
            pc.sum(found).as_py(),
            which,
        )
        replaced = pc.replace_substring(rows.column(index), "\x00", "\ufffd")
        rows = rows.set_column(index, rows.field(index), replaced)
    return rows
