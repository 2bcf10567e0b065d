"""Benchmark of the dashboard's queries on a DuckDB file with the models built
(for instance the one ``bench/analytics.py --dir DIR`` leaves in
DIR/bench.duckdb).

Times every query a dashboard page makes, the way the dashboard makes it
(through :class:`plowline.dashboard.DashboardSource`: the file opened
read-only for each query, as when no ``plowline up`` serves it), best of
--repeat, unfiltered and for 7 days of one app; then each whole page through
the ASGI application. Goal (issue 8): each query under 300 ms.

    .venv/bin/python bench/dashboard.py --duckdb /tmp/bench/bench.duckdb
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

import httpx

from plowline.analytics import Filters
from plowline.dashboard import DashboardSource, build_app
from plowline.dashboard.data import ROLLUP_LIMIT, with_limit

log = logging.getLogger("bench.dashboard")

PAGES = ["/", "/pages", "/sources", "/devices", "/countries", "/ecommerce", "/live"]


def best(repeat: int, action: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        started = monotonic()
        action()
        times.append(monotonic() - started)
    return min(times)


def queries(source: DashboardSource, f: Filters) -> dict[str, Callable[[], Any]]:
    wide = with_limit(f, ROLLUP_LIMIT)
    pages = [str(r["page"]) for r in source.report("pages", f)]
    return {
        "apps (filter list)": source.apps,
        "overview": lambda: source.report("overview", f),
        "series (sessions per day)": lambda: source.series(f),
        "pages": lambda: source.report("pages", f),
        "page titles": lambda: source.page_titles(f, pages),
        "referrers (all rows)": lambda: source.report("referrers", wide),
        "campaigns": lambda: source.report("campaigns", f),
        "devices (all rows)": lambda: source.report("devices", wide),
        "geo (all rows)": lambda: source.report("geo", wide),
        "ecommerce": lambda: source.report("ecommerce", f),
        "live (3 queries)": lambda: source.live(f.app_id),
    }


async def _pages(source: DashboardSource, repeat: int, query: str) -> dict[str, float]:
    transport = httpx.ASGITransport(app=build_app(source))
    out: dict[str, float] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
        for path in PAGES:
            times = []
            for _ in range(repeat):
                started = monotonic()
                response = await c.get(path + query)
                times.append(monotonic() - started)
                response.raise_for_status()
            out[path] = min(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duckdb", required=True, help="a file with the models")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--app", default="shop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    source = DashboardSource("duckdb", args.duckdb)
    (first,) = source.select("SELECT MIN(start_tstamp) AS t FROM derived.sessions")
    start = datetime.fromisoformat(str(first["t"])) + timedelta(days=9)
    week = Filters(since=start, until=start + timedelta(days=7), app_id=args.app)
    query = f"?since={week.since:%Y-%m-%d}&until={start + timedelta(days=6):%Y-%m-%d}"
    query += f"&app={args.app}"
    for label, filters, page_query in (
        ("no filter", Filters(), ""),
        ("7 days, one app", week, query),
    ):
        print(f"\nqueries, {label} (best of {args.repeat}):")
        for name, action in queries(source, filters).items():
            seconds = best(args.repeat, action)
            mark = "ok" if seconds < 0.3 else "OVER 300 ms"
            print(f"  {name:<28} {seconds * 1000:8.1f} ms  {mark}")
        print(f"whole pages, {label}:")
        for path, seconds in asyncio.run(
            _pages(source, args.repeat, page_query)
        ).items():
            print(f"  {path:<28} {seconds * 1000:8.1f} ms")
    print(
        "load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(
            *os.getloadavg()
        )
    )


if __name__ == "__main__":
    main()
