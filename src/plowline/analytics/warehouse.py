"""The database the models are built in: DuckDB or PostgreSQL, behind one small
interface so that the model SQL is written once.

Only what differs between the two is here: running a statement, transactions,
how a child table is named (PostgreSQL shortens names over 63 bytes) and which
tables and columns exist. The SQL itself keeps to what both accept: standard
joins and window functions, ``CAST(... AS FLOAT8)``, ``EXTRACT(EPOCH FROM ...)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import duckdb

from plowline.errors import BadInputError, StoreUnavailableError

log = logging.getLogger(__name__)

Dialect = Literal["duckdb", "postgres"]


class Warehouse:
    """One open connection to DuckDB or PostgreSQL, used by the models and
    reports. It does not own a connection handed in; ``close`` closes only
    the ones it opened."""

    def __init__(self, conn: Any, dialect: Dialect, *, owned: bool = False) -> None:
        self.conn = conn
        self.dialect: Dialect = dialect
        self._owned = owned
        self._columns: dict[str, dict[str, str]] | None = None

    @classmethod
    def open_duckdb(cls, path: str, *, read_only: bool = False) -> Warehouse:
        from plowline.storage.duckdb import connect

        return cls(connect(path, read_only=read_only), "duckdb", owned=True)

    @classmethod
    def open_postgres(cls, dsn: str) -> Warehouse:
        import psycopg

        try:
            conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(
                f"Cannot connect to PostgreSQL: {str(exc).strip()}"
            ) from exc
        return cls(conn, "postgres", owned=True)

    def close(self) -> None:
        if self._owned:
            self.conn.close()

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns (none for DDL and DML)."""
        with self._refusals("A model statement"):
            cursor = self.conn.execute(sql)
            if self.dialect == "duckdb":
                return list(cursor.fetchall())
            return list(cursor.fetchall()) if cursor.description else []

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a SELECT; its column names and rows. A query the database
        refuses is a BadInputError, a lost connection a StoreUnavailableError."""
        with self._refusals("A query", lost_is_unavailable=True):
            cursor = self.conn.execute(sql)
            columns = [str(column[0]) for column in cursor.description]
            return columns, list(cursor.fetchall())

    @contextmanager
    def _refusals(
        self, what: str, *, lost_is_unavailable: bool = False
    ) -> Iterator[None]:
        """The database's errors as Plowline's: what it refuses is a
        BadInputError, and so is a lost PostgreSQL connection unless
        ``lost_is_unavailable`` makes it a StoreUnavailableError."""
        try:
            yield
        except duckdb.Error as exc:
            raise BadInputError(f"{what} failed in DuckDB: {exc}") from exc
        except Exception as exc:
            if not type(exc).__module__.startswith("psycopg"):
                raise
            import psycopg

            text = str(exc).strip()
            if lost_is_unavailable and isinstance(exc, psycopg.OperationalError):
                raise StoreUnavailableError(
                    f"PostgreSQL did not answer: {text}"
                ) from exc
            raise BadInputError(f"{what} failed in PostgreSQL: {text}") from exc

    def scalar(self, sql: str) -> Any:
        rows = self.execute(sql)
        return rows[0][0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All statements inside commit together, or none does."""
        if self.dialect == "duckdb":
            self.conn.execute("BEGIN TRANSACTION")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        else:
            with self.conn.transaction():
                yield
        self._columns = None

    def child_table(self, name: str) -> str:
        """The quoted, schema-qualified name of a shredded table."""
        if self.dialect == "postgres":
            from plowline.storage.postgres.schema import pg_name

            name = pg_name(name)
        return f'atomic."{name}"'

    def columns(self, table: str) -> dict[str, str] | None:
        """The columns of a shredded table (name -> type), None when it does
        not exist; ``table`` is the full child-table name."""
        if self._columns is None:
            rows = self.execute(
                "SELECT table_name, column_name, data_type "
                "FROM information_schema.columns WHERE table_schema = 'atomic'"
            )
            found: dict[str, dict[str, str]] = {}
            for table_name, column, data_type in rows:
                found.setdefault(str(table_name), {})[str(column)] = str(data_type)
            self._columns = found
        key = table
        if self.dialect == "postgres":
            from plowline.storage.postgres.schema import pg_name

            key = pg_name(table)
        return self._columns.get(key)

    def has_table(self, schema: str, table: str) -> bool:
        count = self.scalar(
            "SELECT COUNT(*) FROM information_schema.tables "
            f"WHERE table_schema = {literal(schema)} AND table_name = {literal(table)}"
        )
        return bool(count)


def literal(value: object) -> str:
    """An SQL literal for text, numbers, booleans and NULL."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if "\x00" in text:
        raise BadInputError("A value for an SQL literal holds a NUL character.")
    return "'" + text.replace("'", "''") + "'"
