"""Timing and delivery: page pings, sendBeacon on leaving, and the localStorage
queue that outlives a stopped collector and a reload."""

from __future__ import annotations

import shutil
from datetime import datetime
from typing import Any

from browser_env import (
    REPO,
    STORED_QUEUE,
    Site,
    events,
    start_up_at,
    wait_for_events,
)

from plowline.rawlog.record import RawRecord, decode_record

TRACKER = REPO / "src" / "plowline" / "collector" / "static" / "plowline.js"
SCROLLING = "window.scroller = setInterval(() => scrollBy(0, 40), 150)"
STOP = "clearInterval(window.scroller)"


def seconds(later: Any, earlier: Any) -> float:
    parse = datetime.fromisoformat
    return (parse(str(later)) - parse(str(earlier))).total_seconds()


def raw_records(up: Any) -> list[RawRecord]:
    lines = b"\n".join(p.read_bytes() for p in sorted(up.raw_dir.iterdir()))
    return [decode_record(line) for line in lines.split(b"\n") if line]


def set_hidden(page: Any, hidden: bool) -> None:
    """Headless Chromium keeps every page visible: the test flips what the page
    sees (document.hidden, visibilityState) and fires visibilitychange."""
    page.evaluate(
        """hidden => {
            Object.defineProperty(document, 'hidden',
                {configurable: true, get: () => hidden});
            Object.defineProperty(document, 'visibilityState', {configurable: true,
                get: () => hidden ? 'hidden' : 'visible'});
            document.dispatchEvent(new Event('visibilitychange'));
        }""",
        hidden,
    )


def test_page_pings_follow_activity_timing_and_visibility(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    url = site.page(
        "pings.html",
        f'plowline("init", {{appId: "{app_id}"}});'
        'plowline("enableActivityTracking",'
        " {minimumVisitLength: 2, heartbeatDelay: 1});"
        'plowline("trackPageView");',
        body='<div style="height: 20000px">tall</div>',
    )
    tab = new_tab()
    tab.page.goto(url)
    tab.page.evaluate(SCROLLING)
    tab.page.wait_for_timeout(3500)  # pings at 2 s and 3 s
    tab.page.evaluate(STOP)
    tab.page.wait_for_timeout(2600)  # one at 4 s (scrolled until 3.5), none at 5 or 6
    set_hidden(tab.page, True)
    tab.page.evaluate(SCROLLING)
    tab.page.wait_for_timeout(2000)  # hidden: none at 7 or 8
    tab.page.evaluate(STOP)
    set_hidden(tab.page, False)
    tab.page.mouse.move(10, 10)
    tab.page.wait_for_timeout(1200)  # visible again, and active: one at 9 s

    page_view, *pings = wait_for_events(up, app_id, 5)
    assert page_view["event"] == "page_view"
    assert [p["event"] for p in pings] == ["page_ping"] * 4
    at = [
        seconds(p["dvce_created_tstamp"], page_view["dvce_created_tstamp"])
        for p in pings
    ]
    assert 1.9 <= at[0] <= 2.6, at
    assert 0.8 <= at[1] - at[0] <= 1.3 and 0.8 <= at[2] - at[1] <= 1.3, at
    assert 4.5 <= at[3] - at[2] <= 6.5, at  # the idle and hidden seconds sent nothing
    first, second, third, _ = pings
    assert first["pp_yoffset_min"] == 0 and first["pp_yoffset_max"] > 400
    # Offsets reset after each ping: the next range starts where the last one ended.
    assert second["pp_yoffset_min"] >= first["pp_yoffset_max"] - 40
    assert second["pp_yoffset_max"] > second["pp_yoffset_min"]
    assert third["pp_yoffset_min"] >= second["pp_yoffset_max"] - 40
    assert all(p["pp_xoffset_min"] == 0 == p["pp_xoffset_max"] for p in pings)


def test_beacon_sends_the_buffer_when_the_page_is_left(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    url = site.page(
        "beacon.html",
        f'plowline("init", {{appId: "{app_id}", bufferSize: 10}});'
        "for (let i = 0; i < 3; i++)"
        ' plowline("trackStructEvent", {category: "buffered", action: "a" + i});',
    )
    site.page("next.html", "")
    tab = new_tab()
    tab.page.goto(url)
    tab.page.wait_for_timeout(300)
    assert events(up, app_id) == []  # waiting for 10 events
    tab.page.goto(f"{site.url}/next.html")

    found = wait_for_events(up, app_id, 3)
    assert [e["se_action"] for e in found] == ["a0", "a1", "a2"]
    # One request, made by navigator.sendBeacon: its Blob is typed plain
    # application/json, where fetch sends "; charset=UTF-8".
    [request] = [r for r in raw_records(up) if r.body and app_id.encode() in r.body]
    assert request.content_type == "application/json"
    # A beacon gets no answer: its events stay stored, marked, to be sent again
    # (the loader drops the identical copy) unless a fetch confirms them first.
    stored = tab.page.evaluate(STORED_QUEUE)
    assert [e["se_ac"] for e in stored] == ["a0", "a1", "a2"]
    assert all(e["_b"] and e["_f"] for e in stored)


def test_events_wait_for_a_stopped_collector_and_arrive_once(
    tmp_path: Any, new_tab: Any, app_id: str
) -> None:
    up = start_up_at(tmp_path / "up")
    site = Site(tmp_path / "site", up)
    try:
        (tmp_path / "site").mkdir(exist_ok=True)
        shutil.copy(TRACKER, tmp_path / "site" / "plowline.js")
        url = site.page(
            "outage.html",
            f'plowline("init", {{appId: "{app_id}", collector: "{up.base_url}",'
            " maxRetryDelay: 1});"
            'plowline("trackPageView");',
            tracker_url=f"{site.url}/plowline.js",
        )
        tab = new_tab()
        tab.page.goto(url)
        tab.wait_idle()
        wait_for_events(up, app_id, 1, settle=0)
        assert up.stop() == 0

        track = 'plowline("trackStructEvent", {category: "outage", action: "%s"})'
        for action in ("down-1", "down-2", "down-3"):
            tab.page.evaluate(track % action)
        tab.page.wait_for_timeout(1500)  # a few failed tries
        tab.page.reload()  # adds a page view; the queue survives in localStorage
        tab.page.evaluate(track % "after-reload")
        tab.page.wait_for_timeout(500)
        queued = len(tab.page.evaluate(STORED_QUEUE))
        assert queued == 5

        up = start_up_at(tmp_path / "up", up.port)
        site.up = up
        tab.wait_idle()
        found = wait_for_events(up, app_id, 6, settle=2.5)
        assert [e["event"] for e in found].count("page_view") == 2
        assert [e["se_action"] for e in found if e["event"] == "struct"] == [
            "down-1", "down-2", "down-3", "after-reload"]  # fmt: skip
        assert len({e["event_id"] for e in found}) == 6
    finally:
        site.close()
        up.stop()
