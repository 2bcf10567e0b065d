"""The reports of ``plowline report``: SQL over the derived tables, the same
text for DuckDB and PostgreSQL.

Each report is one SELECT, so that it can go through ``plowline up``'s query
socket (which serves only reading statements). Filters are written into the
SQL as literals, quoted by :func:`~plowline.analytics.warehouse.literal`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from plowline.analytics.tables import SCHEMA, SESSION_GROUPS, previous_session_column
from plowline.analytics.warehouse import literal
from plowline.errors import BadInputError

REPORTS = (
    "overview",
    "pages",
    "referrers",
    "campaigns",
    "devices",
    "geo",
    "ecommerce",
    "funnel",
)
_D = SCHEMA


@dataclass(frozen=True)
class Filters:
    """Which sessions a report counts: started in [since, until), of app_id."""

    since: datetime | None = None
    until: datetime | None = None
    app_id: str | None = None
    limit: int = 50

    def where(self, tstamp: str, app: str = "app_id") -> str:
        tests = ["TRUE"]
        if self.since is not None:
            tests.append(f"{tstamp} >= {_tstamp(self.since)}")
        if self.until is not None:
            tests.append(f"{tstamp} < {_tstamp(self.until)}")
        if self.app_id is not None:
            tests.append(f"{app} = {literal(self.app_id)}")
        return " AND ".join(tests)


def _tstamp(value: datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}.*")


def parse_time(text: str, *, end: bool = False) -> datetime:
    """``2026-03-02`` or ``2026-03-02T10:00[:00[.000]]``, in UTC unless it
    carries an offset (``Z``, ``+05:00``), which is converted to UTC. A date
    given as the end of a range includes that whole day (the last day of the
    calendar up to its last microsecond)."""
    problem = (
        f"{text!r} is not a date (2026-03-02) or a time (2026-03-02T10:00, "
        "UTC unless it ends with an offset such as +05:00)."
    )
    try:
        if _DAY.fullmatch(text):
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day)
            if not end:
                return moment
            if day == date.max:
                return datetime.max
            return moment + timedelta(days=1)
        if not _TIME.fullmatch(text):
            raise BadInputError(problem)
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return moment
    except (ValueError, OverflowError) as exc:
        raise BadInputError(problem) from exc


def _pct(part: str, whole: str) -> str:
    # NUMERIC so that ROUND(x, 1) exists in PostgreSQL too.
    return (
        f"CAST(ROUND(CAST(100.0 * {part} / NULLIF({whole}, 0) AS NUMERIC), 1)"
        " AS DECIMAL(6,1))"
    )


def _avg(value: str) -> str:
    return f"CAST(ROUND(CAST(AVG({value}) AS NUMERIC), 1) AS DECIMAL(18,1))"


def _users(group: str, f: Filters) -> str:
    """The distinct stitched users of the sessions in range, by the previous
    session of the same user in the group (tables.SESSION_GROUPS): exact, and
    cheaper than COUNT(DISTINCT ...). A session's stitched_user_id is never
    NULL."""
    previous = previous_session_column(group, f.app_id is not None)
    return f"CAST(COALESCE(SUM({_first_in_range(previous, f)}), 0) AS BIGINT)"


def overview(f: Filters) -> str:
    where = f.where("start_tstamp")
    return f"""SELECT {_users("any", f)} AS users,
        COUNT(*) AS sessions,
        COALESCE(SUM(page_views), 0) AS page_views,
        {_pct("SUM(CASE WHEN is_bounce THEN 1 ELSE 0 END)", "COUNT(*)")}
            AS bounce_rate_pct,
        {_avg("duration_s")} AS avg_session_s,
        {_avg("engaged_time_s")} AS avg_engaged_s,
        COALESCE(SUM(transactions), 0) AS transactions,
        CAST(COALESCE(SUM(revenue), 0) AS DECIMAL(38,2)) AS revenue,
        {_pct("SUM(CASE WHEN transactions > 0 THEN 1 ELSE 0 END)", "COUNT(*)")}
            AS conversion_rate_pct
    FROM {_D}.sessions WHERE {where}"""


def _first_in_range(previous: str, f: Filters) -> str:
    """1 for the first row of its group (a session's or a user's views of a
    path, a user's sessions in a report's group) in the filter's range, else
    0: the one whose previous row in the group (the column ``previous``) is
    none or before the range. Summed, the exact count of distinct groups,
    without a COUNT(DISTINCT ...)."""
    test = f"{previous} IS NULL"
    if f.since is not None:
        test += f" OR {previous} < {_tstamp(f.since)}"
    return f"CASE WHEN {test} THEN 1 ELSE 0 END"


def pages(f: Filters) -> str:
    where = f.where("start_tstamp")
    app = "_app" if f.app_id is not None else ""
    sessions = _first_in_range(f"prev_path_view_in_session{app}", f)
    users = _first_in_range(f"prev_path_view_by_user{app}", f)
    return f"""SELECT page_urlpath AS page, COUNT(*) AS page_views,
        CAST(SUM({sessions}) AS BIGINT) AS sessions,
        CAST(SUM(CASE WHEN stitched_user_id IS NULL THEN 0 ELSE {users} END)
            AS BIGINT) AS users,
        {_avg("engaged_time_s")} AS avg_engaged_s,
        {_avg("scroll_depth_pct")} AS avg_scroll_pct,
        SUM(CASE WHEN is_entry THEN 1 ELSE 0 END) AS entries,
        SUM(CASE WHEN is_exit THEN 1 ELSE 0 END) AS exits,
        {_pct("SUM(CASE WHEN is_exit THEN 1 ELSE 0 END)", "COUNT(*)")}
            AS exit_rate_pct
    FROM {_D}.page_views WHERE {where}
    GROUP BY page_urlpath ORDER BY page_views DESC, page LIMIT {f.limit}"""


def _by_session(group: str, f: Filters) -> str:
    names = ", ".join(SESSION_GROUPS[group])
    where = f.where("start_tstamp")
    return f"""SELECT {names}, COUNT(*) AS sessions,
        {_users(group, f)} AS users,
        COALESCE(SUM(page_views), 0) AS page_views,
        {_pct("SUM(CASE WHEN is_bounce THEN 1 ELSE 0 END)", "COUNT(*)")}
            AS bounce_rate_pct,
        COALESCE(SUM(transactions), 0) AS transactions,
        CAST(COALESCE(SUM(revenue), 0) AS DECIMAL(38,2)) AS revenue
    FROM {_D}.sessions WHERE {where}
    GROUP BY {names} ORDER BY sessions DESC, {names} LIMIT {f.limit}"""


def referrers(f: Filters) -> str:
    return _by_session("referrer", f)


def campaigns(f: Filters) -> str:
    inner = Filters(f.since, f.until, f.app_id, f.limit)
    sql = _by_session("campaign", inner)
    return sql.replace("WHERE TRUE", "WHERE mkt_campaign IS NOT NULL AND TRUE", 1)


def devices(f: Filters) -> str:
    return _by_session("device", f)


def geo(f: Filters) -> str:
    return _by_session("place", f)


def ecommerce(f: Filters) -> str:
    where = f.where("t.tstamp", "t.app_id")
    return f"""SELECT i.sku, i.name, i.category,
        COUNT(DISTINCT i.order_id) AS orders,
        SUM(i.quantity) AS quantity,
        CAST(SUM(i.item_revenue) AS DECIMAL(38,2)) AS item_revenue
    FROM {_D}.transaction_items i
    JOIN {_D}.transactions t ON t.order_id = i.order_id
    WHERE {where}
    GROUP BY i.sku, i.name, i.category
    ORDER BY item_revenue DESC, i.sku LIMIT {f.limit}"""


@dataclass(frozen=True)
class Step:
    """A funnel step: a page (path, ``*`` a wildcard) or an event."""

    kind: str  # "page" or "event"
    value: str

    @classmethod
    def parse(cls, text: str) -> Step:
        if text.startswith("event:") and len(text) > 6:
            return cls("event", text[6:])
        if text.startswith("page:") and len(text) > 5:
            return cls("page", text[5:])
        if text.startswith("/"):
            return cls("page", text)
        raise BadInputError(
            f"Funnel step {text!r} is neither a page (/path, page:/path*) nor an "
            "event (event:NAME)."
        )

    @property
    def label(self) -> str:
        return self.value if self.kind == "page" else f"event:{self.value}"

    def test(self) -> str:
        """A boolean over a page view (page steps) or over atomic.events
        ``e`` (event steps): this step was reached there."""
        if self.kind == "page":
            return _path_test(self.value)
        name = literal(self.value)
        return (
            f"(e.event_name = {name} OR (e.event = 'struct' AND e.se_action = {name}))"
        )


def _like(path: str) -> str:
    escaped = re.sub(r"([!%_])", r"!\1", path)
    return escaped.replace("*", "%")


def _path_test(path: str) -> str:
    """page_urlpath matches ``path`` (``*`` a wildcard). Equality, or LIKE
    without ESCAPE, where the path allows: DuckDB filters the table scan
    with those, and not with LIKE ... ESCAPE (4 to 6 times slower)."""
    if "*" not in path:
        return f"page_urlpath = {literal(path)}"
    if not re.search(r"[%_\\]", path):
        return f"page_urlpath LIKE {literal(path.replace('*', '%'))}"
    return f"page_urlpath LIKE {literal(_like(path))} ESCAPE '!'"


def funnel(f: Filters, steps: list[Step]) -> str:
    """Sessions that reached each step in order (each step at or after the
    one before), and the conversion between steps."""
    if len(steps) < 2:
        raise BadInputError("A funnel needs at least two steps.")
    where = f.where("start_tstamp")
    ctes = [
        f"_funnel_sessions AS (SELECT session_id FROM {_D}.sessions WHERE {where})",
        f"hits AS ({_funnel_hits(steps)})",
    ]
    # Without a filter every session counts, and every page view is of a
    # session of derived.sessions (the event hits are of _funnel_sessions):
    # the first step needs no join then.
    join = "JOIN _funnel_sessions fs ON fs.session_id = h.session_id "
    if f.since is None and f.until is None and f.app_id is None:
        join = ""
    for n in range(1, len(steps) + 1):
        if n == 1:
            ctes.append(
                "s1 AS (SELECT h.session_id, MIN(h.tstamp) AS tstamp FROM hits h "
                f"{join}WHERE h.m1 GROUP BY h.session_id)"
            )
        else:
            ctes.append(
                f"s{n} AS (SELECT h.session_id, MIN(h.tstamp) AS tstamp FROM hits h "
                f"JOIN s{n - 1} p ON p.session_id = h.session_id "
                f"AND h.tstamp >= p.tstamp WHERE h.m{n} GROUP BY h.session_id)"
            )
    counts = " UNION ALL ".join(
        f"SELECT {n} AS step, {literal(step.label)} AS name, COUNT(*) AS sessions "
        f"FROM s{n}"
        for n, step in enumerate(steps, start=1)
    )
    return f"""WITH {", ".join(ctes)}, counts AS ({counts})
    SELECT c.step, c.name, c.sessions,
        {_pct("c.sessions", "p.sessions")} AS from_previous_pct,
        {_pct("c.sessions", "f.sessions")} AS from_first_pct
    FROM counts c
    LEFT JOIN counts p ON p.step = c.step - 1
    JOIN counts f ON f.step = 1
    ORDER BY c.step"""


def _funnel_hits(steps: list[Step]) -> str:
    """One row per page view or event that reaches any step: session_id,
    tstamp, and m1..mN, which steps it reaches. One scan of page_views for
    all the page steps (a scan per step took twice as long at 10M events)."""
    parts = []
    for kind in ("page", "event"):
        tests = [step.test() for step in steps if step.kind == kind]
        if not tests:
            continue
        flags = ", ".join(
            f"{step.test() if step.kind == kind else 'FALSE'} AS m{n}"
            for n, step in enumerate(steps, start=1)
        )
        if kind == "page":
            parts.append(
                f"SELECT session_id, start_tstamp AS tstamp, {flags} "
                f"FROM {_D}.page_views WHERE {' OR '.join(tests)}"
            )
        else:
            parts.append(
                "SELECT e.domain_sessionid AS session_id, "
                f"COALESCE(e.derived_tstamp, e.collector_tstamp) AS tstamp, {flags} "
                "FROM atomic.events e WHERE e.domain_sessionid IN "
                f"(SELECT session_id FROM _funnel_sessions) AND ({' OR '.join(tests)})"
            )
    return " UNION ALL ".join(parts)


def report_sql(name: str, filters: Filters, steps: list[str] | None = None) -> str:
    """The SQL of the report ``name``."""
    if name == "funnel":
        return funnel(filters, [Step.parse(text) for text in steps or []])
    builders = {
        "overview": overview,
        "pages": pages,
        "referrers": referrers,
        "campaigns": campaigns,
        "devices": devices,
        "geo": geo,
        "ecommerce": ecommerce,
    }
    if name not in builders:
        raise BadInputError(f"Unknown report {name!r}: one of {', '.join(REPORTS)}.")
    if steps:
        raise BadInputError("Only the funnel report takes steps.")
    return builders[name](filters)
