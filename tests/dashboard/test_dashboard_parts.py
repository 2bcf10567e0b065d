"""The dashboard's parts without a browser: the chart geometry, the roll-ups,
the series' empty buckets, value display, and the headers that forbid scripts
and other hosts."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx

from plowline.analytics.reports import Filters
from plowline.dashboard import DashboardSource, build_app
from plowline.dashboard.app import show
from plowline.dashboard.charts import bar_chart
from plowline.dashboard.data import _fill_gaps, rollup


def test_bars_scale_to_a_round_top() -> None:
    rows = [
        {"bucket": datetime(2026, 3, d), "sessions": n, "page_views": 2 * n}
        for d, n in ((1, 3), (2, 0), (3, 7))
    ]
    chart = bar_chart("Sessions", rows, "day", "sessions", "sessions", "page_views")
    assert chart.top_value == 10
    heights = [bar.height for bar in chart.bars]
    plot = chart.baseline - chart.top
    assert heights == [round(plot * 0.3, 2), 0, round(plot * 0.7, 2)]
    assert [bar.y + bar.height for bar in chart.bars] == [chart.baseline] * 3
    assert [bar.extra for bar in chart.bars] == [6, 0, 14]
    assert [t[1:] for t in chart.ticks] == [
        ("2026-03-01", "start"),
        ("2026-03-02", "middle"),
        ("2026-03-03", "end"),
    ]
    assert chart.bars[-1].x + chart.bars[-1].width <= chart.width


def test_empty_buckets_are_zeros_within_the_range() -> None:
    rows = [{"bucket": "2026-03-02 00:00:00", "sessions": 2, "page_views": "5"}]
    filters = Filters(since=datetime(2026, 3, 1), until=datetime(2026, 3, 4))
    filled = _fill_gaps("day", rows, filters)
    assert [(r["bucket"].day, r["sessions"], r["page_views"]) for r in filled] == [
        (1, 0, 0),
        (2, 2, 5),
        (3, 0, 0),
    ]
    assert _fill_gaps("day", [], Filters()) == []


def test_rollup_sums_sessions_by_one_column() -> None:
    rows = [
        {"dvce_type": "Mobile", "sessions": 2, "page_views": 3, "transactions": 0,
         "revenue": "0.00"},
        {"dvce_type": "Computer", "sessions": 1, "page_views": 1, "transactions": 1,
         "revenue": "10.50"},
        {"dvce_type": "Computer", "sessions": 4, "page_views": 9, "transactions": 1,
         "revenue": "2.25"},
    ]  # fmt: skip
    assert rollup(rows, "dvce_type") == [
        {"dvce_type": "Computer", "sessions": 5, "page_views": 10,
         "transactions": 2, "revenue": "12.75"},
        {"dvce_type": "Mobile", "sessions": 2, "page_views": 3, "transactions": 0,
         "revenue": "0.00"},
    ]  # fmt: skip


def test_values_are_shown_plainly() -> None:
    assert [show(v) for v in (None, "", 1234567, "12.50", True)] == [
        "–",
        "–",
        "1,234,567",
        "12.50",
        "yes",
    ]


def test_pages_forbid_scripts_and_other_hosts(tmp_path: object) -> None:
    missing = DashboardSource("duckdb", f"{tmp_path}/none.duckdb")
    transport = httpx.ASGITransport(app=build_app(missing))

    async def fetch() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/"), await c.get("/dashboard.css")

    # In a thread of its own: Playwright's tests leave an event loop running here.
    with ThreadPoolExecutor(1) as pool:
        page, css = pool.submit(lambda: asyncio.run(fetch())).result()
    # No database there: the page says why instead of failing.
    assert page.status_code == 503
    assert 'class="error"' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert css.headers["content-type"].startswith("text/css")
