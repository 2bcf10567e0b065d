"""Fixtures of the dashboard tests; the helpers they share are in
dashboard_support.py (a module of its own, so that test folders collected
together do not import each other's conftest)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import (
    ARTIFACTS,
    RunningDashboard,
    build_store,
    site_rows,
    start_dashboard,
)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    now = datetime.now(UTC).replace(tzinfo=None)
    return build_store(tmp_path_factory.mktemp("dashboard-store"), site_rows(now))


@pytest.fixture(scope="session")
def dashboard(
    store: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningDashboard]:
    running = start_dashboard(store, tmp_path_factory.mktemp("dashboard"))
    yield running
    assert running.stop() in (0, -signal.SIGTERM), running.log.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from tracker.browser_env import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
