"""Fixtures of the model tests; the ``Target`` stores they use are in
analytics_support.py (a module of its own, so that test folders collected
together do not import each other's conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from analytics_support import Target, drop_created_databases


@pytest.fixture(scope="session", autouse=True)
def _drop_created_databases() -> Iterator[None]:
    yield
    drop_created_databases()


@pytest.fixture(params=["duckdb", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return Target(str(request.param), tmp_path)
