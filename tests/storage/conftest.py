"""The store matrix: every loading test runs against each kind of store.

A new store adds its kind to ``STORE_KINDS`` and a branch to ``make_store`` and
``cli_args``; the tests stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plowline.enrich.fields import FIELD_NAMES
from plowline.storage.base import Store

STORE_KINDS = ["duckdb"]


def make_store(kind: str, folder: Path) -> Store:
    """A fresh, empty store of ``kind`` whose data lives in ``folder``."""
    if kind == "duckdb":
        from plowline.storage.duckdb import DuckDBStore

        return DuckDBStore(folder / "events.duckdb")
    raise AssertionError(f"unknown store kind {kind}")


def cli_args(kind: str, folder: Path) -> list[str]:
    """The ``plowline load`` options that load into ``make_store``'s store."""
    if kind == "duckdb":
        return ["--duckdb", str(folder / "events.duckdb")]
    raise AssertionError(f"unknown store kind {kind}")


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(store_kind: str, tmp_path: Path) -> Iterator[Store]:
    made = make_store(store_kind, tmp_path)
    made.ensure_schema()
    yield made
    made.close()


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
