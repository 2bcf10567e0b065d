"""Fixtures: real collector processes on free loopback ports, each with its own dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from collector_process import CollectorFactory, RunningCollector, start_collector


@pytest.fixture
def collector_factory(tmp_path: Path) -> Iterator[CollectorFactory]:
    factory = CollectorFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    """One collector shared by the tests of a module; tag requests to find them."""
    running = start_collector(tmp_path_factory.mktemp("collector"))
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture
def client(collector: RunningCollector) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=collector.base_url, trust_env=False, timeout=10.0
    ) as http:
        yield http
