"""Every model figure of the simulated site equals the value its description
gives, in DuckDB and in PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from analytics_support import Target
from helpers_analytics import KEYS, table

from plowline.analytics import ModelSettings, build_models
from plowline.analytics import simulate as sim
from plowline.analytics.expected import expected


def _built(target: Target, settings: ModelSettings | None = None) -> Any:
    target.load(list(sim.events(sim.known_site())))
    wh = target.warehouse()
    build_models(wh, settings)
    return wh


def _compare(
    actual: dict[Any, dict[str, Any]], expected: dict[Any, dict[str, Any]]
) -> None:
    assert set(actual) == set(expected)
    for key, values in expected.items():
        row = actual[key]
        got = {name: row[name] for name in values}
        assert got == values, key


def test_page_views_match_the_simulation(target: Target) -> None:
    wh = _built(target)
    want = expected(sim.known_site()).page_views
    _compare(table(wh, "page_views", KEYS["page_views"]), want)
    wh.close()


def test_sessions_match_the_simulation(target: Target) -> None:
    wh = _built(target)
    want = expected(sim.known_site()).sessions
    _compare(table(wh, "sessions", KEYS["sessions"]), want)
    wh.close()


def test_users_are_stitched_across_devices(target: Target) -> None:
    wh = _built(target)
    users = table(wh, "users", KEYS["users"])
    want = expected(sim.known_site()).users
    for values in want.values():
        values.pop("first_session_id", None)
    _compare(users, want)
    alice = users["alice"]
    assert (alice["domain_userids"], alice["sessions"], alice["revenue"]) == (
        2,
        3,
        Decimal("152.44"),
    )
    wh.close()


def test_transactions_and_items_match(target: Target) -> None:
    wh = _built(target)
    want = expected(sim.known_site())
    _compare(table(wh, "transactions", KEYS["transactions"]), want.transactions)
    _compare(table(wh, "transaction_items", KEYS["transaction_items"]), want.items)
    wh.close()


def test_bots_are_excluded_by_default(target: Target) -> None:
    wh = _built(target)
    domain_userids = {
        row[0]
        for row in wh.execute("SELECT DISTINCT domain_userid FROM derived.sessions")
    }
    assert not {"d-crawler-1", "d-crawler-2"} & domain_userids
    wh.close()


def test_bots_can_be_included(target: Target) -> None:
    wh = _built(target)
    build_models(wh, ModelSettings(include_bots=True))
    want = expected(sim.known_site(), include_bots=True)
    _compare(table(wh, "sessions", KEYS["sessions"]), want.sessions)
    _compare(table(wh, "page_views", KEYS["page_views"]), want.page_views)
    assert len(want.sessions) == len(expected(sim.known_site()).sessions) + 4
    wh.close()


@pytest.mark.parametrize("heartbeat", [5, 30])
def test_engaged_time_follows_the_heartbeat_setting(
    tmp_path: Any, heartbeat: int
) -> None:
    target = Target("duckdb", tmp_path)
    wh = _built(target, ModelSettings(heartbeat_s=heartbeat))
    want = expected(sim.known_site(), heartbeat_s=heartbeat).sessions
    got = table(wh, "sessions", KEYS["sessions"])
    assert {k: v["engaged_time_s"] for k, v in got.items()} == {
        k: v["engaged_time_s"] for k, v in want.items()
    }
    wh.close()
