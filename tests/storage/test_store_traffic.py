"""The captured tracker traffic, enriched and loaded into each store: the
shredded tables hold the values the captures' README lists."""

from __future__ import annotations

from typing import Any

import pytest

from fixture_traffic import enriched_traffic_rows
from plowline.storage import loader
from plowline.storage.base import Store
from plowline.storage.batch import rows_to_table

ACME = "com_example_acceptance"
SP = "com_snowplowanalytics_snowplow"


@pytest.fixture(scope="module")
def traffic_rows() -> list[list[str]]:
    return enriched_traffic_rows()


@pytest.fixture
def loaded(store: Store, traffic_rows: list[list[str]]) -> Store:
    with store.transaction():
        written = loader.write_events(store, rows_to_table(traffic_rows))
    assert written.events == len(traffic_rows) == 98
    return store


def rows_of(store: Store, table: str) -> list[dict[str, Any]]:
    return list(store.read_child_table(table).to_pylist())


def test_button_press_values(loaded: Store) -> None:
    rows = rows_of(loaded, f"{ACME}_button_press_1")
    # 4 Python scenarios and the two JS captures (GET and POST).
    assert len(rows) == 6
    assert {(r["button_id"], r["clicks"], r["premium"], r["text"]) for r in rows} == {
        ("buy-now", 3, True, 'Café ✓ "quoted" & <tag>')
    }
    assert {r["ref_tree"] for r in rows} == {'["events","button_press"]'}


def test_user_and_page_contexts(loaded: Store) -> None:
    users = rows_of(loaded, f"{ACME}_user_context_1")
    assert {(r["tier"], r["logged_in"], r["score"]) for r in users} == {
        ("gold", True, 9.5)
    }
    pages = rows_of(loaded, f"{ACME}_page_context_1")
    assert {(r["page_type"], r["section"]) for r in pages} == {
        ("acceptance", "python"),
        ("acceptance", "js"),
    }
    assert {r["version"] for r in pages} == {1, 3}


def test_python_tracker_self_describing_events(loaded: Store) -> None:
    clicks = rows_of(loaded, f"{SP}_link_click_1")
    python = [r for r in clicks if r["target_url"].endswith("/target-page")]
    assert len(python) == 4
    assert {
        (r["element_id"], r["element_classes"], r["element_target"]) for r in python
    } == {("acc-link", '["btn","primary"]', "_blank")}
    carts = rows_of(loaded, f"{SP}_add_to_cart_1")
    assert {(r["sku"], r["quantity"], r["unit_price"]) for r in carts} == {
        ("SKU-PY-1", 2, 19.99)
    }
    search = rows_of(loaded, f"{SP}_site_search_1")
    assert {(r["terms"], r["filters"], r["total_results"]) for r in search} == {
        ('["acceptance","widget"]', '{"category":"widgets","inStock":true}', 12)
    }
    timing = rows_of(loaded, f"{SP}_timing_1")
    assert {(r["category"], r["timing"]) for r in timing} == {
        ("acc-timing-category", 1234)
    }
    screens = rows_of(loaded, "com_snowplowanalytics_mobile_screen_view_1")
    assert {(r["name"], r["previous_name"], r["transition_type"]) for r in screens} == {
        ("acc-screen", "acc-home", "push")
    }


def test_js_tracker_link_and_form_events(loaded: Store) -> None:
    clicks = rows_of(loaded, f"{SP}_link_click_1")
    js = [r for r in clicks if r["target_url"].endswith("#acc-anchor")]
    assert len(js) == 2
    assert {(r["element_id"], r["element_classes"]) for r in js} == {
        ("acc-link", '["acc-link","nav-link"]')
    }
    assert {r["schema_version"] for r in clicks} == {"1-0-1"}
    focus = rows_of(loaded, f"{SP}_focus_form_1")
    assert {(r["form_id"], r["element_id"]) for r in focus} == {("acc-form", "email")}
    changes = rows_of(loaded, f"{SP}_change_form_1")
    assert {(r["value"], r["type"]) for r in changes} == {("user@example.com", "email")}
    assert len(changes) == 6


def test_every_child_row_joins_its_event(loaded: Store) -> None:
    events = {
        e["event_id"]: e["collector_tstamp"] for e in loaded.read_events().to_pylist()
    }
    for table in loaded.child_tables():
        for row in rows_of(loaded, table):
            assert events[row["root_id"]] == row["root_tstamp"], table
            assert (row["ref_root"], row["ref_parent"]) == ("events", "events")


def test_reloading_the_traffic_changes_nothing(
    loaded: Store, traffic_rows: list[list[str]]
) -> None:
    before = {t: len(rows_of(loaded, t)) for t in loaded.child_tables()}
    with loaded.transaction():
        again = loader.write_events(loaded, rows_to_table(traffic_rows))
    assert (again.events, again.natural_duplicates) == (0, 98)
    assert {t: len(rows_of(loaded, t)) for t in loaded.child_tables()} == before
