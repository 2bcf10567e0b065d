"""The time limit on Python enrichment calls: stops runaway Python code in any
thread, never leaves an exception behind for the code that runs after."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import pytest

from plowline.enrich.enrichments.time_limit import (
    TIME_LIMIT,
    TimeLimit,
    TimeLimitExceeded,
)


def spin(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


def forever() -> None:
    while True:
        pass


def test_a_quick_call_returns_its_value() -> None:
    assert TIME_LIMIT.run(1.0, lambda a, b: a + b, 2, 3) == 5


def test_an_endless_loop_is_stopped_near_its_limit() -> None:
    start = time.monotonic()
    with pytest.raises(TimeLimitExceeded):
        TIME_LIMIT.run(0.2, forever)
    assert 0.2 <= time.monotonic() - start < 2.0


def test_exceptions_of_the_call_go_through() -> None:
    def fail() -> None:
        raise ValueError("mine")

    with pytest.raises(ValueError, match="mine"):
        TIME_LIMIT.run(1.0, fail)


def test_except_exception_in_user_code_does_not_swallow_it() -> None:
    def stubborn() -> None:
        while True:
            with contextlib.suppress(Exception):  # what careless code does
                forever()

    with pytest.raises(TimeLimitExceeded):
        TIME_LIMIT.run(0.1, stubborn)


def test_a_call_that_swallows_it_still_counts_as_too_long() -> None:
    def swallow() -> str:
        try:
            forever()
        except BaseException:
            return "swallowed"
        return "unreachable"

    with pytest.raises(TimeLimitExceeded):
        TIME_LIMIT.run(0.1, swallow)


def test_works_outside_the_main_thread() -> None:
    outcome: list[Any] = []

    def worker() -> None:
        try:
            TIME_LIMIT.run(0.1, forever)
        except TimeLimitExceeded as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], TimeLimitExceeded)


def test_works_inside_an_asyncio_event_loop() -> None:
    async def main() -> str:
        try:
            TIME_LIMIT.run(0.1, forever)
        except TimeLimitExceeded:
            return "stopped"
        return "not stopped"

    assert asyncio.run(main()) == "stopped"


def test_keyboard_interrupt_goes_through() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TIME_LIMIT.run(1.0, interrupted)


def test_no_exception_is_left_behind_for_the_code_after_the_call() -> None:
    # Calls that end around their deadline, many times: whatever happens inside
    # run(), the code after it never sees a stray TimeLimitExceeded.
    limit = TimeLimit()
    outcomes = {"done": 0, "stopped": 0}
    for index in range(24):
        try:
            limit.run(0.01, spin, 0.005 + (index % 8) * 0.01)
            outcomes["done"] += 1
        except TimeLimitExceeded:
            outcomes["stopped"] += 1
        spin(0.06)  # plain code, long enough for the watchdog to act again
    assert outcomes["done"] > 0 and outcomes["stopped"] > 0
    assert sum(outcomes.values()) == 24
