"""The store matrix: every loading test runs against each kind of store.

The helpers are in store_support.py (a module of its own, so that test
folders collected together do not import each other's conftest).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import STORE_KINDS, drop_test_databases, make_store

from plowline.storage.base import Store


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    drop_test_databases()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(store_kind: str, tmp_path: Path) -> Iterator[Store]:
    made = make_store(store_kind, tmp_path)
    made.ensure_schema()
    yield made
    made.close()
