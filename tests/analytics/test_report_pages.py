"""The distinct counts of the reports, which they take from each row's
previous view of the same path or previous session of the same user (no
COUNT(DISTINCT)): equal to the distinct counts worked out from the
simulation (pages) or with COUNT(DISTINCT) (the session reports), for ranges
that cut sessions in two and for one app, after a build in two parts whose
second part re-stitches a user; and the funnel's counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from analytics_support import Target

from plowline.analytics import Filters, build_models
from plowline.analytics import simulate as sim
from plowline.analytics.expected import expected
from plowline.analytics.reports import report_sql
from plowline.enrich.fields import FIELD_INDEX

COLLECTED = FIELD_INDEX["collector_tstamp"]


def _site() -> list[sim.Visitor]:
    # The known site (two apps, cross-device logins, bob's late login) and
    # random visitors over the same days, who view a path again in a session.
    randoms = sim.random_site(60, seed=11, start=datetime(2026, 3, 2), days=5)
    return sim.known_site() + randoms


def _want(f: Filters) -> dict[str, tuple[int, int, int]]:
    out = expected(_site())
    counts: dict[str, tuple[int, set[str], set[str]]] = {}
    for pv in out.page_views.values():
        session = out.sessions[pv["session_id"]]
        at = pv["start_tstamp"]
        if f.since is not None and at < f.since:
            continue
        if f.until is not None and at >= f.until:
            continue
        if f.app_id is not None and session["app_id"] != f.app_id:
            continue
        views, sessions, users = counts.get(pv["page_urlpath"], (0, set(), set()))
        sessions.add(pv["session_id"])
        users.add(pv["stitched_user_id"])
        counts[pv["page_urlpath"]] = (views + 1, sessions, users)
    return {p: (n, len(s), len(u)) for p, (n, s, u) in counts.items()}


FILTERS = [
    Filters(),
    Filters(app_id="shop"),
    Filters(app_id="blog"),
    Filters(since=datetime(2026, 3, 3, 10, 31)),
    Filters(until=datetime(2026, 3, 4, 12, 1)),
    Filters(since=datetime(2026, 3, 2, 9, 1), until=datetime(2026, 3, 5, 15, 7)),
    Filters(
        since=datetime(2026, 3, 3, 11, 3),
        until=datetime(2026, 3, 6, 10, 2),
        app_id="shop",
    ),
]


def _built_in_two_parts(kind: str, tmp_path: Any) -> Target:
    target = Target(kind, tmp_path)
    rows = sorted(sim.events(_site()), key=lambda row: row[COLLECTED])
    cut = "2026-03-06 00:00:00.000"
    for part in (
        [r for r in rows if r[COLLECTED] < cut],
        [r for r in rows if r[COLLECTED] >= cut],
    ):
        target.load(part)
        wh = target.warehouse()
        build_models(wh)
        wh.close()
    return target


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_pages_counts_distinct_sessions_and_users(kind: str, tmp_path: Any) -> None:
    target = _built_in_two_parts(kind, tmp_path)
    # Paths viewed twice in a session, and by a user in two sessions: the
    # distinct counts are not the page views.
    whole = _want(Filters()).values()
    assert any(n > s for n, s, _ in whole) and any(s > u for _, s, u in whole)
    wh = target.warehouse()
    try:
        # The second part re-stitched bob's anonymous session of day 5.
        restitched = wh.scalar(
            "SELECT COUNT(*) FROM derived.page_views "
            "WHERE domain_userid = 'd-bob' AND stitched_user_id = 'bob'"
        )
        assert restitched >= 2
        for f in FILTERS:
            columns, result = wh.query(report_sql("pages", f))
            got = {}
            for row in result:
                record = dict(zip(columns, row, strict=True))
                got[record["page"]] = (
                    record["page_views"],
                    record["sessions"],
                    record["users"],
                )
            assert got == _want(f), f
    finally:
        wh.close()


def _want_funnel(f: Filters, steps: list[str]) -> list[int]:
    out = expected(_site())
    views: dict[str, list[tuple[datetime, str]]] = {}
    for pv in out.page_views.values():
        views.setdefault(pv["session_id"], []).append(
            (pv["start_tstamp"], pv["page_urlpath"])
        )
    reached = [0] * len(steps)
    for sid, session in out.sessions.items():
        start = session["start_tstamp"]
        if (f.since is not None and start < f.since) or (
            f.until is not None and start >= f.until
        ):
            continue
        if f.app_id is not None and session["app_id"] != f.app_id:
            continue
        at: datetime | None = None
        for n, step in enumerate(steps):
            times = [
                t
                for t, path in views.get(sid, [])
                if (path.startswith(step[:-1]) if step.endswith("*") else path == step)
                and (at is None or t >= at)
            ]
            if not times:
                break
            at = min(times)
            reached[n] += 1
    return reached


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_funnel_counts_match_the_simulation(kind: str, tmp_path: Any) -> None:
    target = Target(kind, tmp_path)
    target.load(list(sim.events(_site())))
    wh = target.warehouse()
    try:
        build_models(wh)
        steps = ["/", "/product/*", "/cart", "/thank-you"]
        for f in (
            Filters(),
            Filters(since=datetime(2026, 3, 3, 10, 31), until=datetime(2026, 3, 6)),
            Filters(app_id="shop", until=datetime(2026, 3, 5, 12)),
        ):
            _, rows = wh.query(report_sql("funnel", f, steps))
            got = [row[2] for row in rows]
            want = _want_funnel(f, steps)
            assert got == want, f
            assert want[0] > want[1] > want[2] > 0, f
    finally:
        wh.close()


_GROUPS = {
    "overview": "",
    "referrers": "channel, refr_medium, refr_source, refr_term",
    "campaigns": "mkt_campaign, mkt_source, mkt_medium",
    "devices": "dvce_type, br_family, os_family",
    "geo": "geo_country, geo_city",
}


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_session_reports_count_distinct_users(kind: str, tmp_path: Any) -> None:
    target = _built_in_two_parts(kind, tmp_path)
    wh = target.warehouse()
    try:
        # Users with sessions in two groups, and groups with two sessions of
        # one user: the distinct users are neither the sessions nor additive.
        (spread,) = wh.execute(
            "SELECT COUNT(*) FROM (SELECT stitched_user_id FROM derived.sessions "
            "GROUP BY stitched_user_id HAVING COUNT(DISTINCT channel) > 1 "
            "AND COUNT(*) > COUNT(DISTINCT channel)) x"
        )[0]
        assert spread > 0
        for f in (*FILTERS, Filters(since=datetime(2027, 1, 1))):
            for name, group in _GROUPS.items():
                where = f.where("start_tstamp")
                if name == "campaigns":
                    where += " AND mkt_campaign IS NOT NULL"
                select = f"{group}, " if group else ""
                by = f" GROUP BY {group}" if group else ""
                _, rows = wh.query(
                    f"SELECT {select}COUNT(DISTINCT stitched_user_id) "
                    f"FROM derived.sessions WHERE {where}{by}"
                )
                want = {tuple(row[:-1]): row[-1] for row in rows}
                columns, result = wh.query(report_sql(name, f))
                width = len(group.split(", ")) if group else 0
                users = columns.index("users")
                got = {tuple(row[:width]): row[users] for row in result}
                assert got == want, (name, f)
    finally:
        wh.close()
