"""The dashboard in headless Chromium: each panel shows the figures of
``plowline report`` (run_report), the filters change them, a phone's width
needs no sideways scrolling, a page title holding a script shows as text and
runs nothing, and nothing loads from another host. A screenshot of each page
is saved (conftest.ARTIFACTS)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import SCRIPT_TITLE, RunningDashboard

from plowline.analytics import Filters, run_report
from plowline.analytics.reports import parse_time

pytestmark = pytest.mark.slow

PAGES = ["/", "/pages", "/sources", "/devices", "/countries", "/ecommerce", "/live"]
# The known site's own sessions all started in March 2026; the live visitor's now.
MARCH = "since=2026-03-01&until=2026-03-31"


@pytest.fixture
def tab(browser: Any, dashboard: RunningDashboard) -> Iterator[Any]:
    """A fresh context whose every request and dialog are recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.requests = []  # type: ignore[attr-defined]
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()


def shown(value: Any) -> str:
    """How the dashboard is meant to write a report's value."""
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def report(
    where: str, name: str, *, since: str = "", until: str = "", app: str = "",
    limit: int = 50,
) -> list[dict[str, Any]]:  # fmt: skip
    filters = Filters(
        since=parse_time(since) if since else None,
        until=parse_time(until, end=True) if until else None,
        app_id=app or None,
        limit=limit,
    )
    result = run_report("duckdb", where, name, filters)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def cards(page: Any) -> dict[str, str]:
    found: dict[str, str] = page.eval_on_selector_all(
        "[data-metric]",
        "els => Object.fromEntries(els.map(e => "
        "[e.dataset.metric, e.querySelector('.value').textContent.trim()]))",
    )
    return found


def table(page: Any, name: str) -> list[dict[str, str]]:
    """The rows of a table or share list: {data-col: text}."""
    rows: list[dict[str, str]] = page.eval_on_selector_all(
        f'[data-table="{name}"] tbody tr, [data-table="{name}"] > li',
        "rows => rows.map(r => Object.fromEntries([...r.querySelectorAll("
        "'[data-col]')].map(c => [c.dataset.col, c.textContent])))",
    )
    return rows


def expected_rows(
    rows: list[dict[str, Any]], columns: list[str]
) -> list[dict[str, str]]:
    return [{c: shown(row[c]) for c in columns} for row in rows]


def sums(rows: list[dict[str, Any]], key: str) -> list[dict[str, str]]:
    """Sessions by one column, most first then by name: the share lists."""
    totals: dict[Any, int] = {}
    for row in rows:
        totals[row[key]] = totals.get(row[key], 0) + row["sessions"]
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1], str(kv[0] or "")))
    return [{key: shown(k), "sessions": shown(v)} for k, v in ordered]


SESSION_COLS = ["sessions", "users", "page_views", "bounce_rate_pct", "transactions",
                "revenue"]  # fmt: skip


def test_overview_shows_the_overview_report(
    tab: Any, dashboard: RunningDashboard
) -> None:
    tab.goto(f"{dashboard.url}/?{MARCH}")
    got = cards(tab)
    # The known site: 9 sessions, 21 page views, 3 orders (tests/analytics).
    assert (got["sessions"], got["page_views"], got["transactions"]) == ("9", "21", "3")
    (row,) = report(dashboard.where, "overview", since="2026-03-01", until="2026-03-31")
    assert got == {
        "users": shown(row["users"]),
        "sessions": shown(row["sessions"]),
        "page_views": shown(row["page_views"]),
        "bounce_rate_pct": f"{row['bounce_rate_pct']} %",
        "avg_engaged_s": f"{row['avg_engaged_s']} s",
        "avg_session_s": f"{row['avg_session_s']} s",
        "transactions": shown(row["transactions"]),
        "revenue": shown(row["revenue"]),
    }
    # The chart: one bar per day from 1 to 31 March, sessions adding up.
    series = table(tab, "over-time")
    assert len(series) == 31
    assert series[0]["bucket"] == "2026-03-01"
    assert sum(int(r["value"]) for r in series) == 9
    assert sum(int(r["extra"]) for r in series) == 21
    assert tab.locator("#over-time svg rect").count() == 31


def test_each_panel_shows_its_report(tab: Any, dashboard: RunningDashboard) -> None:
    where = dashboard.where
    tab.goto(f"{dashboard.url}/pages")
    pages = report(where, "pages")
    got = table(tab, "top-pages")
    cols = ["page", "page_views", "sessions", "users", "avg_engaged_s",
            "avg_scroll_pct", "entries", "exits", "exit_rate_pct"]  # fmt: skip
    assert [{c: r[c] for c in cols} for r in got] == expected_rows(pages, cols)
    assert {r["page"]: r["title"] for r in got}["/"] == "home"

    tab.goto(f"{dashboard.url}/sources")
    referrers = report(where, "referrers", limit=5000)
    ref_cols = ["channel", "refr_medium", "refr_source", "refr_term", *SESSION_COLS]
    assert table(tab, "referrers") == expected_rows(referrers[:50], ref_cols)
    assert table(tab, "channels") == sums(referrers, "channel")
    campaigns = report(where, "campaigns")
    assert campaigns, "the known site has campaigns"
    camp_cols = ["mkt_campaign", "mkt_source", "mkt_medium", *SESSION_COLS]
    assert table(tab, "campaigns") == expected_rows(campaigns, camp_cols)

    tab.goto(f"{dashboard.url}/devices")
    devices = report(where, "devices", limit=5000)
    dev_cols = ["dvce_type", "br_family", "os_family", *SESSION_COLS]
    assert table(tab, "devices") == expected_rows(devices[:50], dev_cols)
    assert table(tab, "device-types") == sums(devices, "dvce_type")
    assert table(tab, "browsers") == sums(devices, "br_family")
    assert table(tab, "operating-systems") == sums(devices, "os_family")
    assert {r["os_family"] for r in table(tab, "operating-systems")} >= {"iOS"}

    tab.goto(f"{dashboard.url}/countries")
    geo = report(where, "geo", limit=5000)
    assert table(tab, "cities") == expected_rows(
        geo[:50], ["geo_country", "geo_city", *SESSION_COLS]
    )
    assert table(tab, "by-country") == sums(geo, "geo_country")

    tab.goto(f"{dashboard.url}/ecommerce")
    items = report(where, "ecommerce")
    item_cols = ["sku", "name", "category", "orders", "quantity", "item_revenue"]
    assert table(tab, "products") == expected_rows(items, item_cols)
    (overview,) = report(where, "overview")
    got_cards = cards(tab)
    assert got_cards["transactions"] == shown(overview["transactions"]) == "3"
    assert got_cards["revenue"] == shown(overview["revenue"])
    assert Decimal(got_cards["revenue"]) > 0


def test_filters_apply_to_every_page(tab: Any, dashboard: RunningDashboard) -> None:
    tab.goto(f"{dashboard.url}/")
    all_sessions = int(cards(tab)["sessions"])
    tab.select_option("select[name=app]", "blog")
    tab.fill("input[name=since]", "2026-03-01")
    tab.fill("input[name=until]", "2026-03-31")
    tab.click("button[type=submit]")
    tab.wait_for_url("**app=blog**")
    got = cards(tab)
    assert (got["sessions"], got["page_views"]) == ("1", "1")  # blog's one visit
    assert all_sessions == 10  # the known site's 9, and the live visitor's
    # The navigation keeps the filters: the pages panel is blog's too.
    tab.click("nav >> text=Pages")
    assert "app=blog" in tab.url and "since=2026-03-01" in tab.url
    pages = report(dashboard.where, "pages", since="2026-03-01",
                   until="2026-03-31", app="blog")  # fmt: skip
    assert [r["page"] for r in table(tab, "top-pages")] == [p["page"] for p in pages]
    assert len(pages) == 1
    # Days of one week: fewer sessions than the month, as the report says.
    tab.goto(f"{dashboard.url}/?since=2026-03-03&until=2026-03-04")
    assert cards(tab)["sessions"] == "3"
    # By the hour for a short range.
    assert table(tab, "over-time")[0]["bucket"] == "2026-03-03 00:00"
    assert len(table(tab, "over-time")) == 48


def test_a_bad_date_is_an_error_on_the_page(
    tab: Any, dashboard: RunningDashboard
) -> None:
    response = tab.goto(f"{dashboard.url}/?since=yesterday")
    assert response.status == 400
    assert "is not a date" in tab.locator(".error").text_content()


def test_script_title_is_text_and_runs_nothing(
    tab: Any, dashboard: RunningDashboard, artifacts: Path
) -> None:
    tab.goto(f"{dashboard.url}/pages")
    titles = {r["page"]: r["title"] for r in table(tab, "top-pages")}
    assert titles["/xss"] == SCRIPT_TITLE
    tab.goto(f"{dashboard.url}/live")
    assert SCRIPT_TITLE in [r["title"] for r in table(tab, "latest")]
    tab.wait_for_timeout(300)
    assert tab.dialogs == []
    for path in ("/pages", "/live"):
        tab.goto(f"{dashboard.url}{path}")
        assert tab.locator("script").count() == 0
    assert tab.get_by_text(SCRIPT_TITLE, exact=True).count() == 1
    tab.screenshot(path=str(artifacts / "script-title-live.png"), full_page=True)


def test_live_view_counts_the_last_30_minutes(
    tab: Any, dashboard: RunningDashboard
) -> None:
    tab.goto(f"{dashboard.url}/live?app=live")
    # The live visitor: a page view, a page ping, a page view, 10 minutes ago.
    assert cards(tab) == {
        "visitors": "1",
        "sessions": "1",
        "page_views": "2",
        "events": "3",
    }
    minutes = table(tab, "per-minute")
    assert sum(int(m["value"]) for m in minutes) == 3
    assert 29 <= len(minutes) <= 31
    assert [r["page"] for r in table(tab, "latest")] == ["/xss", "/live"]
    # The known site is months old: nothing of it is live.
    tab.goto(f"{dashboard.url}/live?app=shop")
    assert cards(tab)["events"] == "0"


@pytest.mark.parametrize("width", [375, 1280])
def test_every_page_fits_and_loads_only_from_the_dashboard(
    browser: Any, dashboard: RunningDashboard, artifacts: Path, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 800})
    try:
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        for path in PAGES:
            response = page.goto(f"{dashboard.url}{path}")
            assert response.status == 200, path
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - "
                "document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways at {width} px"
            name = "overview" if path == "/" else path.strip("/")
            page.screenshot(
                path=str(artifacts / f"{name}-{width}px.png"), full_page=True
            )
        outside = [u for u in requests if not u.startswith((dashboard.url, "data:"))]
        assert outside == []
        assert any(u.endswith("/dashboard.css") for u in requests)
    finally:
        context.close()
