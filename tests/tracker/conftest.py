"""Fixtures of the tracker tests: one Chromium per session, one ``plowline up``
and one test site per module, a fresh browser context per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_env import Site, Tab, chromium, start_up_at

from up_process import RunningUp


# One browser per test module: Playwright's sync API holds an event loop in
# this thread while it runs, and tests elsewhere need to start their own
# (asyncio.run), as does the other folder's browser.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUp]:
    running = start_up_at(tmp_path_factory.mktemp("up"))
    yield running
    assert running.stop() == 0, running.stderr()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, up: RunningUp) -> Iterator[Site]:
    served = Site(tmp_path_factory.mktemp("site"), up)
    yield served
    served.close()


@pytest.fixture
def new_tab(browser: Any) -> Iterator[Callable[..., Tab]]:
    """Opens pages in fresh contexts (own cookies and storage); closes them after."""
    contexts: list[Any] = []

    def open_tab(**options: Any) -> Tab:
        context = browser.new_context(**options)
        contexts.append(context)
        return Tab(context, context.new_page())

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture
def app_id(request: pytest.FixtureRequest) -> str:
    """An app id of the test's own, to find its events."""
    return "t-" + request.node.name.replace("[", "-").rstrip("]")[:60]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.slow)
