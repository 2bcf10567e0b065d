"""The tracker under adverse conditions, beside the tester's cases: sizes it
cannot send, texts it has to cut, and tabs sharing one stored queue."""

from __future__ import annotations

from typing import Any

from browser_env import collect_console, unstruct, wait_for_events
from test_found_by_tester import Proxy, struct


def test_an_event_over_max_post_bytes_is_dropped_with_a_warning(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    big = "x" * 10000
    url = site.page(
        "too-big.html",
        f'plowline("init", {{appId: "{app_id}", maxPostBytes: 5000}});'
        'plowline("trackStructEvent",'
        f' {{category: "c", action: "big", label: "{big}"}});'
        'plowline("trackPageView");',
    )
    tab = new_tab()
    console = collect_console(tab.page)
    tab.page.goto(url)
    [page_view] = wait_for_events(up, app_id, 1)
    assert page_view["event"] == "page_view"
    assert any("over maxPostBytes" in m for m in console), console


def test_error_messages_are_cut_between_code_points(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    message = "a" * 2047 + "\U0001f600" + "b"
    url = site.page(
        "emoji-error.html",
        f'plowline("init", {{appId: "{app_id}"}});'
        f'plowline("trackError", {{error: new Error("{message}")}});',
    )
    tab = new_tab()
    tab.page.goto(url)
    [error] = wait_for_events(up, app_id, 1)
    assert unstruct(error)[1]["message"] == "a" * 2047


def test_two_open_tabs_send_each_event_once(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # Both tabs read the one stored queue: each must leave alone the events
    # the other one is sending.
    slow = ("delay", 0.2, "forward")
    proxy = Proxy(up.port, lambda m, p: slow if m == "POST" else "forward")
    try:
        url = site.page(
            "two-tabs.html",
            f'plowline("init", {{appId: "{app_id}", collector: "{proxy.url}"}});',
        )
        tab = new_tab()
        a = tab.page
        a.goto(url)
        b = tab.context.new_page()
        b.goto(url)
        for i in range(5):
            a.evaluate(struct(f"a{i}"))
            b.evaluate(struct(f"b{i}"))
            a.wait_for_timeout(50)
        found = wait_for_events(up, app_id, 10, settle=2)
        assert len(found) == 10
        for event in found:
            action = event["se_action"].encode()
            field = b'"se_ac":"' + action + b'"'
            assert sum(field in body for body in proxy.posts()) == 1
    finally:
        proxy.close()
