"""Benchmark of the data models and the report queries on DuckDB.

Generates a simulated site (plowline.analytics.simulate.random_site) of about
--events events over 30 days, loads it with the real loader, builds the
models, times every report query (best of --repeat runs), then loads about
--new-events more events (the next day's visitors) and times the incremental
update. Goals (issue 8): each query under 300 ms, an update for 100,000 new
events under 5 s.

    .venv/bin/python bench/analytics.py --events 10000000 --dir /tmp/a10m
    .venv/bin/python bench/analytics.py --dir /tmp/a10m --reuse   # again, faster
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from time import monotonic
from typing import TypeVar

from plowline.analytics import Filters, ModelSettings, Warehouse, build_models
from plowline.analytics import simulate as sim
from plowline.analytics.reports import REPORTS, report_sql
from plowline.storage.duckdb import DuckDBStore
from plowline.storage.loader import load_files

log = logging.getLogger("bench.analytics")
T = TypeVar("T")

FUNNEL = ["/", "/product/*", "/cart", "/thank-you"]
_CHUNK_VISITORS = 20_000


def generate(path: Path, events: int, seed: int, start: datetime, days: int) -> int:
    """Write visitors of the random site until ``events`` rows are written."""
    written = 0
    chunk = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < events:
            visitors = sim.random_site(
                _CHUNK_VISITORS, seed=seed + chunk, start=start, days=days
            )
            visitors = [_unique(v, f"-{seed}-{chunk}") for v in visitors]
            for row in sim.events(visitors, seed=seed + chunk):
                out.write("\t".join(row) + "\n")
                written += 1
                if written >= events:
                    break
            chunk += 1
    return written


def _unique(visitor: sim.Visitor, suffix: str) -> sim.Visitor:
    """The visitor with its cookie, logins and order ids made unique to its
    chunk (random_site numbers them from 0 in every chunk)."""
    sessions = []
    for session in visitor.sessions:
        visits = []
        for visit in session.visits:
            login = visit.login and visit.login + suffix
            purchase = visit.purchase and replace(
                visit.purchase, order_id=visit.purchase.order_id + suffix
            )
            visits.append(replace(visit, login=login, purchase=purchase))
        sessions.append(replace(session, visits=tuple(visits)))
    return replace(
        visitor,
        domain_userid=visitor.domain_userid + suffix,
        sessions=tuple(sessions),
    )


def timed(label: str, results: dict[str, float], action: Callable[[], T]) -> T:
    started = monotonic()
    value = action()
    results[label] = monotonic() - started
    log.info("%s: %.2f s", label, results[label])
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--new-events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, help="keep files here (default: temp)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --dir: reuse the loaded file (DIR/loaded.duckdb) and the new "
        "events (DIR/new.tsv) a former run left there instead of generating them",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    with tempfile.TemporaryDirectory(prefix="plowline-bench-") as temp:
        folder = args.dir or Path(temp)
        folder.mkdir(parents=True, exist_ok=True)
        run(folder, args)


def run(folder: Path, args: argparse.Namespace) -> None:
    times: dict[str, float] = {}
    db = folder / "bench.duckdb"
    base = folder / "base.tsv"
    new = folder / "new.tsv"
    loaded = folder / "loaded.duckdb"
    if args.reuse and loaded.exists():
        log.info("reusing %s", loaded)
        shutil.copyfile(loaded, db)
        count = _scalar(db, "SELECT COUNT(*) FROM atomic.events")
    else:
        db.unlink(missing_ok=True)
        count = timed(
            "generate",
            times,
            lambda: generate(base, args.events, args.seed, datetime(2026, 1, 1), 30),
        )
        timed("load", times, lambda: _load(db, base))
        if args.dir:
            shutil.copyfile(db, loaded)
    wh = Warehouse.open_duckdb(str(db))
    timed("build models (full)", times, lambda: build_models(wh, ModelSettings()))

    load = os.getloadavg()
    query_times = {}
    for name in REPORTS:
        sql = report_sql(name, Filters(), FUNNEL if name == "funnel" else None)
        best = min(_time_query(wh, sql) for _ in range(args.repeat))
        query_times[name] = best
    filtered = Filters(
        since=datetime(2026, 1, 10), until=datetime(2026, 1, 17), app_id="shop"
    )
    for name in ("overview", "pages"):
        sql = report_sql(name, filtered)
        query_times[f"{name} (7 days, app)"] = min(
            _time_query(wh, sql) for _ in range(args.repeat)
        )
    wh.close()

    if args.reuse and new.exists():
        with open(new, encoding="utf-8") as lines:
            added = sum(1 for _ in lines)
    else:
        added = timed(
            "generate new",
            times,
            lambda: generate(
                new, args.new_events, args.seed + 10_000, datetime(2026, 2, 10), 1
            ),
        )
    timed("load new", times, lambda: _load(db, new))
    wh = Warehouse.open_duckdb(str(db))
    result = timed("update models", times, lambda: build_models(wh))
    sessions = wh.scalar("SELECT COUNT(*) FROM derived.sessions")
    page_views = wh.scalar("SELECT COUNT(*) FROM derived.page_views")
    wh.close()

    print(
        f"\nevents {count:,} + {added:,} new; sessions {sessions:,}; "
        f"page views {page_views:,}; file {db.stat().st_size / 2**20:,.0f} MiB"
    )
    for label, seconds in times.items():
        print(f"  {label:<28} {seconds:8.2f} s")
    print(f"  update result: {result}")
    print(f"queries (best of {args.repeat}):")
    for name, seconds in query_times.items():
        mark = "ok" if seconds < 0.3 else "OVER 300 ms"
        print(f"  {name:<28} {seconds * 1000:8.1f} ms  {mark}")
    print(
        "load average (1, 5, 15 min) before the queries: {:.2f} {:.2f} {:.2f}".format(
            *load
        )
    )


def _load(db: Path, path: Path) -> None:
    store = DuckDBStore(db)
    try:
        load_files(store, [str(path)])
    finally:
        store.close()


def _scalar(db: Path, sql: str) -> int:
    wh = Warehouse.open_duckdb(str(db))
    try:
        return int(wh.scalar(sql))
    finally:
        wh.close()


def _time_query(wh: Warehouse, sql: str) -> float:
    started = monotonic()
    wh.query(sql)
    return monotonic() - started


if __name__ == "__main__":
    main()
