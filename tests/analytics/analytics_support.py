"""Stores for the model tests: a DuckDB file and a PostgreSQL database each,
loaded through the real loader."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from plowline.analytics import Warehouse
from plowline.analytics.simulate import write_tsv
from plowline.storage.loader import load_files
from plowline.storage.stores import open_store
from postgres_server import POSTGRES_SERVER, postgres_available

_PREFIX = "plowline_analytics_"
_CREATED: list[str] = []


def postgres_database(folder: Path) -> str:
    """A new, empty database for ``folder``, dropped when the session ends."""
    import psycopg

    name = _PREFIX + hashlib.sha1(str(folder).encode()).hexdigest()[:16]
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    _CREATED.append(name)
    return f"{POSTGRES_SERVER}/{name}"


class Target:
    """A store of one kind in a test's folder: load rows, open a warehouse."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        if kind == "duckdb":
            self.where = str(folder / "events.duckdb")
        else:
            if not postgres_available():
                pytest.skip(f"no PostgreSQL server at {POSTGRES_SERVER}")
            self.where = postgres_database(folder)
        self._files = 0

    def load(self, rows: list[list[str]]) -> int:
        self._files += 1
        path = self.folder / f"part-{self._files}.tsv"
        write_tsv(rows, str(path))
        store = open_store(self.kind, self.where)
        try:
            store.ensure_schema()
            return load_files(store, [str(path)]).events
        finally:
            store.close()

    def warehouse(self) -> Warehouse:
        if self.kind == "duckdb":
            return Warehouse.open_duckdb(self.where)
        return Warehouse.open_postgres(self.where)

    def cli_args(self) -> list[str]:
        return [f"--{self.kind}", self.where]


def drop_created_databases() -> None:
    """Drop the databases ``postgres_database`` made in this session."""
    if not _CREATED:
        return
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as conn:
        for name in _CREATED:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
