"""Helpers of the store matrix: make a store of each kind, rows, TSV files.

A new store adds its kind to ``STORE_KINDS`` and a branch to ``make_store`` and
``cli_args``; the tests stay as they are.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from plowline.enrich.fields import FIELD_NAMES
from plowline.storage.base import Store
from plowline.storage.stores import open_store
from postgres_server import POSTGRES_SERVER

# A kind joins the matrix once its module exists.
STORE_KINDS = [
    kind
    for kind in ("duckdb", "postgres", "parquet")
    if importlib.util.find_spec(f"plowline.storage.{kind}") is not None
]
_TEST_DATABASE_PREFIX = "plowline_test_"


def postgres_dsn(folder: Path) -> str:
    """The DSN of the test database that belongs to ``folder`` (created here,
    empty, on first use; dropped when the test session ends)."""
    import psycopg

    name = _TEST_DATABASE_PREFIX + hashlib.sha1(str(folder).encode()).hexdigest()[:16]
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_SERVER}/{name}"


def make_store(kind: str, folder: Path) -> Store:
    """A fresh, empty store of ``kind`` whose data lives in ``folder``."""
    if kind == "duckdb":
        return open_store(kind, str(folder / "events.duckdb"))
    if kind == "postgres":
        return open_store(kind, postgres_dsn(folder))
    if kind == "parquet":
        return open_store(kind, str(folder / "parquet"))
    raise AssertionError(f"unknown store kind {kind}")


def cli_args(kind: str, folder: Path) -> list[str]:
    """The ``plowline load`` options that load into ``make_store``'s store."""
    if kind == "duckdb":
        return ["--duckdb", str(folder / "events.duckdb")]
    if kind == "postgres":
        return ["--postgres", postgres_dsn(folder)]
    if kind == "parquet":
        return ["--parquet", str(folder / "parquet")]
    raise AssertionError(f"unknown store kind {kind}")


REQUIRED = {
    "collector_tstamp": "2026-12-04 15:29:10.526",
    "v_collector": "ssc-3.2.0-kinesis",
    "v_etl": "plowline-0.1.0",
}


def make_row(event_id: str, **values: str) -> list[str]:
    """A 131-field enriched row with the required fields and ``values``."""
    given = {**REQUIRED, "event_id": event_id, **values}
    unknown = set(given) - set(FIELD_NAMES)
    assert not unknown, f"not enriched fields: {unknown}"
    return [given.get(name, "") for name in FIELD_NAMES]


def write_tsv(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("".join("\t".join(row) + "\n" for row in rows), "utf-8")
    return path


def drop_test_databases() -> None:
    """Drop every test database ``postgres_dsn`` made."""
    if "postgres" not in STORE_KINDS:
        return
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as conn:
        names = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (_TEST_DATABASE_PREFIX + "%",),
        ).fetchall()
        for (name,) in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
