"""What the dashboard shows, read from the store: the reports of
``plowline report`` (through :func:`~plowline.analytics.run.run_report`), a
series over time, and the live view of the last 30 minutes of
``atomic.events``.

Every query is one SELECT. On DuckDB it goes through
:func:`~plowline.storage.query.run_query`, so through ``plowline up``'s query
socket while ``up`` owns the file and read-only otherwise; on PostgreSQL it
uses a connection of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from plowline.analytics.reports import Filters
from plowline.analytics.run import StoreKind, run_report
from plowline.analytics.tables import SCHEMA
from plowline.analytics.warehouse import Warehouse, literal
from plowline.storage.query import QueryResult, run_query, to_json_value

log = logging.getLogger(__name__)

LIVE_MINUTES = 30
# Rows read for the roll-ups (sessions by device type, by country, ...): all of
# them in practice; the tables show the first Filters.limit.
ROLLUP_LIMIT = 5000
# A series by hour when the range is this short, else by day.
HOURLY_UP_TO = timedelta(days=3)
MAX_BUCKETS = 400


Row = dict[str, Any]


def rows_of(result: QueryResult) -> list[Row]:
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


@dataclass(frozen=True)
class DashboardSource:
    """The store the dashboard reads: a DuckDB file or a PostgreSQL DSN."""

    kind: StoreKind
    where: str

    def report(self, name: str, filters: Filters) -> list[Row]:
        return rows_of(run_report(self.kind, self.where, name, filters))

    def select(self, sql: str) -> list[Row]:
        if self.kind == "duckdb":
            return rows_of(run_query(self.where, sql))
        wh = Warehouse.open_postgres(self.where)
        try:
            columns, rows = wh.query(sql)
        finally:
            wh.close()
        return [
            {c: to_json_value(v) for c, v in zip(columns, row, strict=True)}
            for row in rows
        ]

    # -- beyond the reports ---------------------------------------------------

    def apps(self) -> list[str]:
        """The app ids of the sessions, for the app filter."""
        rows = self.select(
            f"SELECT DISTINCT app_id FROM {SCHEMA}.sessions "
            "WHERE app_id IS NOT NULL ORDER BY app_id"
        )
        return [str(row["app_id"]) for row in rows]

    def series(self, filters: Filters) -> tuple[str, list[Row]]:
        """Sessions and page views per day (per hour for a range of three days
        or less), counted like the overview: sessions by their start."""
        unit = "day"
        if (
            filters.since is not None
            and filters.until is not None
            and filters.until - filters.since <= HOURLY_UP_TO
        ):
            unit = "hour"
        rows = self.select(
            f"SELECT date_trunc('{unit}', start_tstamp) AS bucket, "
            "COUNT(*) AS sessions, COALESCE(SUM(page_views), 0) AS page_views "
            f"FROM {SCHEMA}.sessions WHERE {filters.where('start_tstamp')} "
            "GROUP BY 1 ORDER BY 1"
        )
        return unit, _fill_gaps(unit, rows, filters)

    def page_titles(self, filters: Filters, paths: list[str]) -> dict[str, str]:
        """A title for each page path (the greatest, in text order, when a
        page had several)."""
        # A path with a NUL (loaded from a TSV made elsewhere) cannot be
        # quoted into SQL: it is shown without a title.
        paths = [p for p in paths if "\x00" not in p]
        if not paths:
            return {}
        listed = ", ".join(literal(p) for p in paths)
        rows = self.select(
            "SELECT page_urlpath AS page, MAX(page_title) AS title "
            f"FROM {SCHEMA}.page_views WHERE {filters.where('start_tstamp')} "
            f"AND page_urlpath IN ({listed}) GROUP BY page_urlpath"
        )
        return {str(r["page"]): str(r["title"]) for r in rows if r["title"]}

    def live(self, app_id: str | None, now: datetime | None = None) -> Live:
        """The events of the last 30 minutes, as they arrived (bots included:
        the models' bot filter is not applied here)."""
        now = now or datetime.now(UTC).replace(tzinfo=None)
        since = now - timedelta(minutes=LIVE_MINUTES)
        window = Filters(since=since, app_id=app_id)
        where = window.where("collector_tstamp")
        (totals,) = self.select(
            "SELECT COUNT(*) AS events, "
            "COUNT(DISTINCT domain_userid) AS visitors, "
            "COUNT(DISTINCT domain_sessionid) AS sessions, "
            "COALESCE(SUM(CASE WHEN event = 'page_view' THEN 1 ELSE 0 END), 0) "
            "AS page_views "
            f"FROM atomic.events WHERE {where}"
        )
        per_minute = self.select(
            "SELECT date_trunc('minute', collector_tstamp) AS bucket, "
            "COUNT(*) AS events, "
            "COALESCE(SUM(CASE WHEN event = 'page_view' THEN 1 ELSE 0 END), 0) "
            f"AS page_views FROM atomic.events WHERE {where} GROUP BY 1 ORDER BY 1"
        )
        latest = self.select(
            "SELECT collector_tstamp AS time, app_id, event, page_urlpath AS page, "
            "page_title AS title, geo_country AS country, dvce_type AS device "
            f"FROM atomic.events WHERE {where} AND event = 'page_view' "
            "ORDER BY collector_tstamp DESC, event_id LIMIT 20"
        )
        first = since.replace(second=0, microsecond=0) + timedelta(minutes=1)
        minutes = _fill_gaps(
            "minute", per_minute, Filters(since=first, until=now), keys=("events",)
        )
        return Live(now, since, totals, minutes, latest)


@dataclass(frozen=True)
class Live:
    now: datetime
    since: datetime
    totals: Row
    minutes: list[Row]
    latest: list[Row]


_STEP = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}


def _bucket_time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value)).replace(tzinfo=None)


def _truncate(moment: datetime, unit: str) -> datetime:
    moment = moment.replace(second=0, microsecond=0)
    if unit in ("hour", "day"):
        moment = moment.replace(minute=0)
    if unit == "day":
        moment = moment.replace(hour=0)
    return moment


def _fill_gaps(
    unit: str,
    rows: list[Row],
    filters: Filters,
    keys: tuple[str, ...] = ("sessions", "page_views"),
) -> list[Row]:
    """One row per bucket from the first to the last (or the filter's ends),
    empty buckets as zeros. Past MAX_BUCKETS, the empty buckets before the
    first and after the last one with data go first, then the earliest."""
    found = {_bucket_time(r["bucket"]): r for r in rows}
    if not found and (filters.since is None or filters.until is None):
        return []
    start = _truncate(filters.since, unit) if filters.since else min(found)
    if filters.until is not None and filters.until > datetime.min:
        end = _truncate(filters.until - timedelta(microseconds=1), unit)
    else:
        end = max(found) if found else start
    step = _STEP[unit]
    count = (end - start) // step + 1
    if count > MAX_BUCKETS and found:
        start, end = max(start, min(found)), min(end, max(found))
        count = (end - start) // step + 1
    if count > MAX_BUCKETS:
        start = end - step * (MAX_BUCKETS - 1)
        count = MAX_BUCKETS
    out: list[Row] = []
    # Counted, not stepped past ``end``: the last bucket may be in year 9999.
    for i in range(max(count, 0)):
        moment = start + step * i
        row = found.get(moment)
        values = {k: _number(row[k]) if row else 0 for k in keys}
        out.append({"bucket": moment, **values})
    return out


def _number(value: Any) -> int:
    try:
        return int(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return 0


def rollup(rows: list[Row], key: str) -> list[Row]:
    """Sessions, page views, orders and revenue summed by one column of a
    report's rows (users are not additive and are left out), most sessions
    first."""
    groups: dict[Any, Row] = {}
    for row in rows:
        group = groups.setdefault(
            row[key],
            {
                key: row[key],
                "sessions": 0,
                "page_views": 0,
                "transactions": 0,
                "revenue": Decimal("0"),
            },
        )
        group["sessions"] += _number(row["sessions"])
        group["page_views"] += _number(row["page_views"])
        group["transactions"] += _number(row["transactions"])
        group["revenue"] += Decimal(str(row["revenue"]))
    ordered = sorted(groups.values(), key=lambda g: (-g["sessions"], str(g[key] or "")))
    for group in ordered:
        group["revenue"] = format(group["revenue"], "f")
    return ordered


def with_limit(filters: Filters, limit: int) -> Filters:
    return replace(filters, limit=limit)
