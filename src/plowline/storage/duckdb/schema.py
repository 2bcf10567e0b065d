"""DuckDB connections and the tables Plowline creates in a DuckDB file.

Column types per field kind are in ``SQL_TYPES``. Strings are plain VARCHAR:
DuckDB accepts ``VARCHAR(n)`` but does not enforce the length, so the lengths
of the atomic schema are checked before insert (:mod:`plowline.storage.batch`)
instead of declared. ``event_id`` and the child tables' ``root_id`` are UUID
(16 bytes instead of 36 characters) until an id arrives that is not a
lower-case canonical UUID; then they become VARCHAR (:func:`widen_ids`).

Two storage choices only change bytes on disk, never a type or a value:
columns in ``ZSTD_COLUMNS`` are declared ``USING COMPRESSION zstd``, and a file
that :func:`connect` creates gets blocks of ``NEW_FILE_BLOCK_SIZE`` bytes.
Files made before either choice keep their own layout and load as before.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from plowline.enrich.fields import FIELDS, REQUIRED_FIELDS, Field, Kind
from plowline.errors import ConfigurationError, StoreUnavailableError
from plowline.storage.shred import FIXED_COLUMNS, ShredKind

log = logging.getLogger(__name__)

EVENTS_TABLE = "atomic.events"
FAILED_EVENTS_TABLE = "atomic.failed_events"
# Not "plowline": the default database file plowline.duckdb is a catalog of that name.
META_SCHEMA = "plowline_meta"
MANIFEST_TABLE = f"{META_SCHEMA}.load_manifest"

SQL_TYPES: dict[Kind, str] = {
    "str": "VARCHAR",
    "int": "INTEGER",
    "bool": "BOOLEAN",
    "tstamp": "TIMESTAMP",
    "dec": "DECIMAL(18,2)",
    "float": "DOUBLE",
    "json": "JSON",
}
CHILD_TYPES: dict[ShredKind, str] = {
    "bool": "BOOLEAN",
    "int": "BIGINT",
    "float": "DOUBLE",
    "text": "VARCHAR",
}
KINDS_OF_CHILD_TYPES: dict[str, ShredKind] = {v: k for k, v in CHILD_TYPES.items()}
_FIXED_TYPES = {"root_tstamp": "TIMESTAMP"}
# event_id and root_id: UUID while every id is one (see widen_ids).
ID_TYPE = "UUID"
TEXT_ID_TYPE = "VARCHAR"
# Settings for a connection that loads in bulk (DuckDBStore on a path): rows
# may be stored out of insertion order (every read orders explicitly); one
# DuckDB thread writes a batch as whole row groups, which compress better (42
# against 50 bytes/event measured for one 128 MiB batch) at about the same
# speed; the write-ahead log is folded into the file every 256 MiB instead of
# every 16 MiB. `plowline up` keeps DuckDB's defaults on its own connection.
LOAD_SETTINGS = {
    "preserve_insertion_order": "false",
    "threads": "1",
    "checkpoint_threshold": "'256MiB'",
}
# Once a load writes batches of at least this many events (half a DuckDB row
# group), its connection stops checkpoints from "vacuuming": merging the small
# row group each batch leaves at its end into its neighbours by rewriting them.
# For big batches that rewrite cost 3 to 4 s per 500,000 events and left the
# replaced blocks free inside the file, which DuckDB does not give back (97.5
# MB for 62 MB of data after a million events). Loads of small batches keep it:
# without it each of them would leave a row group of its own (20 loads of 2,000
# events: 20 row groups in 331 blocks, against 2 in 54).
NO_VACUUM_ROWS = 61_440
NO_VACUUM = {"max_vacuum_tasks": "0"}
# Columns stored with DuckDB's zstd instead of its own choice (dictionary and
# FSST for text): only text that is nearly unique per event gains. Measured on
# bench/load.py's 1,000,000 events: page_url 13.8 -> 5.5 bytes/event; on a
# column with few distinct values zstd costs 4 to 5 bytes/event more than the
# dictionary's 0.1 to 0.6 (page_referrer, contexts, unstruct_event, useragent,
# network_userid and domain_userid tried, each with page_url).
ZSTD_COLUMNS = frozenset({"page_url"})
# Block size of the files connect() creates (DuckDB's default is 256 KiB).
# DuckDB starts a new block once one is 80 % full and gives a segment over 80 %
# of a block a block of its own, so each row group's last segment of every
# column leaves space unused: 9 bytes/event of 74 with 256 KiB blocks, 3 with
# 64 KiB (bench/load.py); 32 and 16 KiB cost more than they save (per-segment
# headers and FSST symbol tables). The size is fixed in a file when it is made.
NEW_FILE_BLOCK_SIZE = 64 * 1024

FAILED_DDL = f"""
CREATE TABLE IF NOT EXISTS {FAILED_EVENTS_TABLE} (
    failed_at TIMESTAMP NOT NULL,
    failure_type VARCHAR NOT NULL,
    failure_schema VARCHAR NOT NULL,
    message VARCHAR,
    payload JSON,
    failed_event JSON NOT NULL
)"""

MANIFEST_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {META_SCHEMA};
CREATE TABLE IF NOT EXISTS {MANIFEST_TABLE} (
    batch_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    batch_index INTEGER NOT NULL,
    first_line BIGINT NOT NULL,
    lines INTEGER NOT NULL,
    events INTEGER NOT NULL,
    natural_duplicates INTEGER NOT NULL,
    synthetic_duplicates INTEGER NOT NULL,
    loaded_at TIMESTAMP NOT NULL
)"""


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def child_table(name: str) -> str:
    return f"atomic.{quote(name)}"


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file, turning DuckDB's open errors into Plowline's.

    A file that does not exist yet is made first, with blocks of
    ``NEW_FILE_BLOCK_SIZE`` bytes.
    """
    try:
        if not read_only:
            _create_if_missing(path)
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if read_only and "does not exist" in text:
            raise ConfigurationError(f"There is no DuckDB database at {path}.") from exc
        if "lock" in text.lower():
            raise StoreUnavailableError(_locked_message(path, text)) from exc
        raise StoreUnavailableError(
            f"Cannot open the DuckDB file {path}: {text}"
        ) from exc
    except duckdb.ConnectionException as exc:
        raise StoreUnavailableError(
            f"The DuckDB file {path} is already open in this process with other "
            f"settings (read-only or not); use that connection: {exc}"
        ) from exc


def _create_if_missing(path: str | Path) -> None:
    """Make an empty DuckDB file with Plowline's block size where none is.

    Made by a connection of its own, closed at once: DuckDB refuses a second
    connection to an open file with another configuration, so the connection
    returned to callers keeps DuckDB's defaults.
    """
    name = str(path)
    if not name or name.startswith(":memory:") or Path(name).exists():
        return
    duckdb.connect(name, config={"default_block_size": NEW_FILE_BLOCK_SIZE}).close()
    log.debug("Created %s with %d-byte blocks", name, NEW_FILE_BLOCK_SIZE)


def _locked_message(path: str | Path, detail: str) -> str:
    # DuckDB's own text names the process that holds the lock, with its PID.
    detail = detail.split(". See also", 1)[0]
    return (
        f"The DuckDB file {path} is locked by another process ({detail}). DuckDB "
        "lets one process write to a file and no other process open it meanwhile: "
        "wait for that process to finish or stop it. While `plowline up` owns the "
        f"file, `plowline query` asks it through its socket {path}.sock."
    )


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create ``atomic.events``, ``atomic.failed_events`` and the manifest
    unless they exist."""
    # Known limitation: tables that already exist are not compared with FIELDS;
    # a file made with another layout fails on the first insert.
    for sql in ("CREATE SCHEMA IF NOT EXISTS atomic", events_ddl(), FAILED_DDL):
        conn.execute(sql).fetchall()
    for sql in MANIFEST_DDL.split(";"):
        conn.execute(sql).fetchall()


def events_ddl() -> str:
    """The ``CREATE TABLE`` statement of ``atomic.events``, derived from FIELDS."""
    columns = ",\n".join(f"    {_column_ddl(field)}" for field in FIELDS)
    return f"CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (\n{columns}\n)"


def _column_ddl(field: Field) -> str:
    kind = ID_TYPE if field.name == "event_id" else SQL_TYPES[field.kind]
    ddl = f"{quote(field.name)} {kind}"
    if field.name in ZSTD_COLUMNS:
        ddl += " USING COMPRESSION zstd"
    return f"{ddl} NOT NULL" if field.name in REQUIRED_FIELDS else ddl


def child_ddl(name: str, columns: dict[str, ShredKind], id_type: str = ID_TYPE) -> str:
    """A child table's ``CREATE TABLE``; ``root_id`` has the events' id type."""
    types = {**_FIXED_TYPES, "root_id": id_type}
    fixed = [
        f"{quote(column)} {types.get(column, 'VARCHAR')} NOT NULL"
        for column, _ in FIXED_COLUMNS
    ]
    props = [f"{quote(column)} {CHILD_TYPES[kind]}" for column, kind in columns.items()]
    body = ",\n    ".join(fixed + props)
    return f"CREATE TABLE {child_table(name)} (\n    {body}\n)"


def id_type(conn: duckdb.DuckDBPyConnection) -> str:
    """The type of ``atomic.events.event_id``: UUID, or VARCHAR in files that
    hold other ids (or were made before ids were UUIDs)."""
    rows = conn.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = "
        "'atomic' AND table_name = 'events' AND column_name = 'event_id'"
    ).fetchall()
    return str(rows[0][0]) if rows else ID_TYPE


def widen_ids(conn: duckdb.DuckDBPyConnection) -> None:
    """Make ``event_id`` and every child table's ``root_id`` VARCHAR, in the
    open transaction (once per file, when a non-UUID id arrives)."""
    conn.execute(
        f"ALTER TABLE {EVENTS_TABLE} ALTER COLUMN event_id TYPE {TEXT_ID_TYPE}"
    ).fetchall()
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = "
        f"'atomic' AND column_name = 'root_id' AND data_type = '{ID_TYPE}'"
    ).fetchall()
    for (table,) in rows:
        conn.execute(
            f"ALTER TABLE {child_table(table)} ALTER COLUMN root_id TYPE {TEXT_ID_TYPE}"
        ).fetchall()
