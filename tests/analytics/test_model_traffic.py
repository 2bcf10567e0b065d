"""The captured tracker traffic (../shared/fixtures/traffic) through enrich,
load and the models: the figures its README implies."""

from __future__ import annotations

from decimal import Decimal

import pytest
from analytics_support import Target
from helpers_analytics import KEYS, table

from fixture_traffic import enriched_traffic_rows
from plowline.analytics import ModelSettings, build_models

PY_SESSION = "5e5e5e5e-6666-4777-8888-999999999999"


@pytest.fixture(scope="module")
def traffic_rows() -> list[list[str]]:
    return enriched_traffic_rows()


def test_traffic_models(target: Target, traffic_rows: list[list[str]]) -> None:
    assert target.load(traffic_rows) == 98
    wh = target.warehouse()
    # The JS page ran activity tracking with a 2-second heartbeat.
    build_models(wh, ModelSettings(heartbeat_s=2))

    sessions = table(wh, "sessions", KEYS["sessions"])
    # One session per JS capture, one shared by the four Python scenarios.
    assert len(sessions) == 3
    py = sessions.pop(PY_SESSION)
    # The Python tracker sends no web_page context: each page view is its own.
    assert (py["page_views"], py["engaged_time_s"], py["channel"]) == (4, 0, "Referral")
    assert py["page_referrer"] == "http://referrer.example.org/search?q=snowplow"
    for js in sessions.values():
        # One page view with the web_page context, five pings of it.
        assert (js["page_views"], js["engaged_time_s"], js["is_bounce"]) == (
            1,
            10,
            True,
        )
        assert js["stitched_user_id"] == "js-user-42"
        assert js["entry_page_path"] == "/acceptance.html"

    transactions = table(wh, "transactions", KEYS["transactions"])
    # Each order was sent several times (every scenario, GET and POST): once.
    assert {
        k: (v["revenue"], v["tax"], v["shipping"], v["currency"])
        for k, v in transactions.items()
    } == {
        "order-js-2001": (Decimal("59.97"), Decimal("5.00"), Decimal("3.50"), "GBP"),
        "order-py-1001": (Decimal("59.97"), Decimal("5.00"), Decimal("3.50"), "GBP"),
    }
    items = table(wh, "transaction_items", KEYS["transaction_items"])
    assert {k: (v["price"], v["quantity"]) for k, v in items.items()} == {
        ("order-js-2001", "SKU-JS-1"): (Decimal("19.99"), 2),
        ("order-js-2001", "SKU-JS-2"): (Decimal("11.49"), 1),
        ("order-py-1001", "SKU-PY-1"): (Decimal("19.99"), 2),
        ("order-py-1001", "SKU-PY-2"): (Decimal("11.49"), 1),
    }
    users = table(wh, "users", KEYS["users"])
    js_user = users["js-user-42"]
    assert (js_user["sessions"], js_user["page_views"], js_user["transactions"]) == (
        2,
        2,
        1,
    )
    wh.close()
