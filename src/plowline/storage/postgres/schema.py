"""The tables Plowline creates in a PostgreSQL database, and their names.

``atomic.events`` follows Snowplow's atomic schema: ``VARCHAR(n)`` with the
maximum length of each string field, ``INTEGER``, ``BOOLEAN``, ``TIMESTAMP``
(UTC, without a zone), ``DECIMAL(18,2)`` for money and ``DOUBLE PRECISION``.
The self-describing JSON columns are ``JSON``: PostgreSQL checks that they
parse and keeps the text exactly as the enricher wrote it (``JSONB`` would
reorder keys and drop white space, so de-duplication, which compares stored
events with new ones, and the read-back would see other text).

PostgreSQL names are at most 63 bytes long (``NAMEDATALEN - 1``); a longer
child-table or column name is shortened to a prefix and a hash
(:func:`pg_name`), and the full name is kept as the table's or column's
comment, from which the store reads it back.
"""

from __future__ import annotations

import hashlib

from psycopg import sql

from plowline.enrich.fields import FIELDS, REQUIRED_FIELDS, Field, Kind
from plowline.storage.manifest import MANIFEST_COLUMNS
from plowline.storage.shred import FIXED_COLUMNS, ShredKind

ATOMIC = "atomic"
META = "plowline_meta"
EVENTS = sql.Identifier(ATOMIC, "events")
FAILED_EVENTS = sql.Identifier(ATOMIC, "failed_events")
MANIFEST = sql.Identifier(META, "load_manifest")
EVENT_ID_INDEX = "events_event_id_idx"
# Tables of the atomic schema that are not child tables.
NOT_CHILDREN = ("events", "failed_events")

MAX_NAME_BYTES = 63
_HASH_CHARS = 10

SQL_TYPES: dict[Kind, str] = {
    "str": "VARCHAR",  # with (max_length)
    "int": "INTEGER",
    "bool": "BOOLEAN",
    "tstamp": "TIMESTAMP",
    "dec": "DECIMAL(18,2)",
    "float": "DOUBLE PRECISION",
    "json": "JSON",
}
CHILD_TYPES: dict[ShredKind, str] = {
    "bool": "BOOLEAN",
    "int": "BIGINT",
    "float": "DOUBLE PRECISION",
    "text": "TEXT",
}
# format_type() of each child column type, back to its kind.
KINDS_OF_TYPES: dict[str, ShredKind] = {
    "boolean": "bool",
    "bigint": "int",
    "double precision": "float",
    "text": "text",
}
_FIXED_TYPES = {"root_id": "VARCHAR(36)", "root_tstamp": "TIMESTAMP"}
_MANIFEST_TYPES = {
    "str": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "tstamp": "TIMESTAMP",
}


def pg_name(name: str) -> str:
    """``name`` as PostgreSQL can hold it: unchanged up to 63 bytes, else a
    prefix, ``_`` and a hash of the whole name (the same name every time)."""
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_CHARS]
    prefix = name.encode()[: MAX_NAME_BYTES - _HASH_CHARS - 1]
    return prefix.decode(errors="ignore") + "_" + digest


def child_table(name: str) -> sql.Identifier:
    return sql.Identifier(ATOMIC, pg_name(name))


def column(name: str) -> sql.Identifier:
    return sql.Identifier(pg_name(name))


def _column_ddl(field: Field) -> sql.Composed:
    if field.kind == "str" and field.max_length is not None:
        type_ = f"VARCHAR({field.max_length})"
    else:
        type_ = SQL_TYPES[field.kind]
    null = " NOT NULL" if field.name in REQUIRED_FIELDS else ""
    return sql.SQL("{} {}").format(sql.Identifier(field.name), sql.SQL(type_ + null))


def events_ddl() -> sql.Composed:
    """``CREATE TABLE`` of ``atomic.events``, from the enriched fields."""
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
        EVENTS, sql.SQL(", ").join(_column_ddl(field) for field in FIELDS)
    )


def failed_ddl() -> sql.Composed:
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ("
        "failed_at TIMESTAMP NOT NULL, "
        "failure_type VARCHAR NOT NULL, "
        "failure_schema VARCHAR NOT NULL, "
        "message VARCHAR, "
        "payload JSON, "
        "failed_event JSON NOT NULL)"
    ).format(FAILED_EVENTS)


def manifest_ddl() -> sql.Composed:
    columns = [
        sql.SQL("{} {} NOT NULL").format(
            sql.Identifier(name), sql.SQL(_MANIFEST_TYPES[kind])
        )
        for name, kind in MANIFEST_COLUMNS
    ]
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY (batch_id))").format(
        MANIFEST, sql.SQL(", ").join(columns)
    )


def schema_statements() -> list[sql.Composed]:
    """Everything :meth:`PostgresStore.ensure_schema` runs, in order."""
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(ATOMIC)),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(META)),
        events_ddl(),
        # De-duplication looks stored events up by id, batch after batch. A
        # hash index: event ids are random UUIDs, which a B-tree takes at
        # random places: its inserts took 30 % of a COPY of 1M events into
        # atomic.events, the hash index's 17 %. Lookups by id are all it
        # serves. Databases made before keep their B-tree of this name.
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hash (event_id)").format(
            sql.Identifier(EVENT_ID_INDEX), EVENTS
        ),
        failed_ddl(),
        manifest_ddl(),
    ]


def child_ddl(name: str, columns: dict[str, ShredKind]) -> list[sql.Composed]:
    """``CREATE TABLE`` of a child table, and the comments that keep names
    longer than PostgreSQL's limit."""
    fixed = [
        sql.SQL("{} {} NOT NULL").format(
            sql.Identifier(fixed_name), sql.SQL(_FIXED_TYPES.get(fixed_name, "VARCHAR"))
        )
        for fixed_name, _ in FIXED_COLUMNS
    ]
    props = [
        sql.SQL("{} {}").format(column(prop), sql.SQL(CHILD_TYPES[kind]))
        for prop, kind in columns.items()
    ]
    statements: list[sql.Composed] = [
        sql.SQL("CREATE TABLE {} ({})").format(
            child_table(name), sql.SQL(", ").join(fixed + props)
        )
    ]
    if pg_name(name) != name:
        statements.append(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                child_table(name), sql.Literal(name)
            )
        )
    statements.extend(column_comments(name, columns))
    return statements


def column_comments(name: str, columns: dict[str, ShredKind]) -> list[sql.Composed]:
    return [
        sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
            child_table(name), column(prop), sql.Literal(prop)
        )
        for prop in columns
        if pg_name(prop) != prop
    ]
