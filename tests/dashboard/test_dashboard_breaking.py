"""The dashboard against hostile and careless use: odd filters, script in every
value an event brings, other methods and paths, hundreds of requests at once,
stores that are not there, and the same figures from DuckDB and PostgreSQL.

Each test names what it tries; the ones for a bug fail until it is fixed. One
DuckDB store and one PostgreSQL database of the same events serve the module:
the simulated site of known shape, the live visitor of dashboard_support, and a
hostile visitor (app, page, title, referrer, campaign, device, place and
product all carrying markup) browsing now.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from dashboard_support import (
    RunningDashboard,
    build_store,
    site_rows,
    start_dashboard,
)

from plowline.analytics import simulate as sim
from plowline.enrich.fields import FIELD_NAMES
from postgres_server import POSTGRES_SERVER, postgres_available
from up_process import free_port, plowline_command

log = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

PAGES = ("/", "/pages", "/sources", "/devices", "/countries", "/ecommerce", "/live")
POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

# Markup in every event value the dashboard shows; the short ones fit the
# atomic columns' maximum lengths (refr_medium 25, geo_country 2, br_family 50).
XSS = '"><svg onload=alert(1)><script>alert(2)</script>'
SHORT_XSS = '"><svg onload=alert(1)>'
COUNTRY = '<"'
HOSTILE_APP = "app" + XSS
HOSTILE_PATH = "/h" + XSS
HOSTILE_TITLE = "title" + XSS
JAVASCRIPT_URL = "javascript:alert(3)"

# The known site's sessions of the app "shop" on 2026-03-02 (UTC): alice at
# 09:00, carol at 14:00 and bob at 20:00 (the crawler at 03:00 is a bot).
SHOP_SESSIONS_ON_MARCH_2 = 3
# Fits the atomic columns (DECIMAL(18,2)); two of them together do not.
BIG_PRICE = Decimal("9000000000000000.00")


def hostile_visitor(now: datetime) -> sim.Visitor:
    device = sim.Device(XSS, "b", XSS, "o", XSS, False, 800)
    place = sim.Place(COUNTRY, "city" + XSS, "region")
    acquisition = sim.Acquisition(
        "Other Campaigns",
        "javascript://evil/" + XSS,
        SHORT_XSS,
        "s" + XSS,
        "term" + XSS,
        mkt={
            "mkt_medium": "mm" + XSS,
            "mkt_source": "ms" + XSS,
            "mkt_campaign": "camp" + XSS,
        },
    )
    item = sim.Item("sku" + XSS, "name" + XSS, "cat" + XSS, Decimal("5.00"), 1)
    visits = (
        sim.Visit(HOSTILE_PATH, pings=1, dwell_s=20),
        sim.Visit("/buy", purchase=sim.Purchase("X-1", (item,))),
    )
    session = sim.Session(now - timedelta(minutes=5), acquisition, visits)
    return sim.Visitor("d-hostile", device, place, (session,), app_id=HOSTILE_APP)


def module_rows(now: datetime) -> list[list[str]]:
    rows = site_rows(now) + list(sim.events([hostile_visitor(now)], seed=5))
    app = FIELD_NAMES.index("app_id")
    title, url = FIELD_NAMES.index("page_title"), FIELD_NAMES.index("page_url")
    for row in rows:
        if row[app] == HOSTILE_APP:
            row[title] = HOSTILE_TITLE
            row[url] = JAVASCRIPT_URL
    return rows


# -- the module's stores and servers -------------------------------------------


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def stopped(running: RunningDashboard) -> str:
    """Stop it (it must stop cleanly); its log."""
    code = running.stop()
    text = running.log.read_text(errors="replace")
    assert code in (0, -signal.SIGTERM), text
    return text


@pytest.fixture(scope="module")
def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def rows(now: datetime) -> list[list[str]]:
    return module_rows(now)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard-breaking")


@pytest.fixture(scope="module")
def dash(rows: list[list[str]], folder: Path) -> Iterator[RunningDashboard]:
    where = build_store(folder, rows)
    running = start_dashboard(where, folder)
    yield running
    stopped(running)


@pytest.fixture(scope="module")
def pg_dash(rows: list[list[str]], folder: Path) -> Iterator[RunningDashboard]:
    if not postgres_available():
        pytest.skip(f"no PostgreSQL server at {POSTGRES_SERVER}")
    name = "plowline_dashbrk_" + hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    dsn = f"{POSTGRES_SERVER}/{name}"
    try:
        build_store(folder, rows, dsn)
        running = start_dashboard(dsn, folder, ["--postgres", dsn])
        try:
            yield running
        finally:
            stopped(running)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def odd_rows() -> list[list[str]]:
    """App ``nul``: one page view whose path holds a NUL character (the loader
    takes it). App ``big``: two customers with an order of 9e15 each, the
    largest the atomic columns (DECIMAL(18,2)) hold with room to spare."""
    when = datetime(2026, 3, 2, 10)
    nul = sim.Visitor(
        "d-nul",
        sim.DESKTOP,
        sim.LONDON,
        (sim.Session(when, sim.DIRECT, (sim.Visit("/a"),)),),
        app_id="nul",
    )
    big = [
        sim.Visitor(
            f"d-big-{n}",
            sim.DESKTOP,
            sim.LONDON,
            (
                sim.Session(
                    when + timedelta(hours=n),
                    sim.DIRECT,
                    (
                        sim.Visit(
                            "/thank-you",
                            purchase=sim.Purchase(
                                f"B-{n}",
                                (sim.Item("GOLD", "Gold", "metal", BIG_PRICE, 1),),
                            ),
                        ),
                    ),
                ),
            ),
            app_id="big",
        )
        for n in (1, 2)
    ]
    rows = list(sim.events([nul, *big], seed=9))
    app, path = FIELD_NAMES.index("app_id"), FIELD_NAMES.index("page_urlpath")
    for row in rows:
        if row[app] == "nul":
            row[path] = "/a\x00b"
    return rows


@pytest.fixture(scope="module")
def odd_dash(folder: Path) -> Iterator[RunningDashboard]:
    odd = folder / "odd"
    odd.mkdir()
    running = start_dashboard(build_store(odd, odd_rows()), odd)
    yield running
    stopped(running)


# -- reading the pages ---------------------------------------------------------


def get(base: RunningDashboard, path: str, **params: str) -> httpx.Response:
    return httpx.get(base.url + path, params=params, timeout=30)


def card(text: str, metric: str) -> str:
    found = re.search(
        rf'data-metric="{metric}">\s*<div class="label">[^<]*</div>\s*'
        r'<div class="value">([^<]*)</div>',
        text,
    )
    assert found, text
    return html.unescape(found.group(1))


def cells(text: str) -> list[tuple[str, str]]:
    """Every table cell and share name, as (column, the text shown)."""
    return [
        (col, html.unescape(value))
        for col, value in re.findall(r'data-col="(\w+)"[^>]*>([^<]*)<', text)
    ]


def chart_total(text: str) -> int:
    """The sum of the chart's bars, read from its table."""
    values = re.findall(r'data-col="value">([^<]*)<', text)
    return sum(int(v.replace(",", "")) for v in values)


def error_of(text: str) -> str:
    found = re.search(r'<p class="error" role="alert">([^<]*)</p>', text)
    return html.unescape(found.group(1)) if found else ""


def figures(base: RunningDashboard, path: str, query: str) -> tuple[int, list[object]]:
    """A page's status, cards and cells (the live page's times left out)."""
    response = httpx.get(base.url + path + query, timeout=30)
    cards = re.findall(
        r'data-metric="(\w+)">\s*<div class="label">[^<]*</div>\s*'
        r'<div class="value">([^<]*)</div>',
        response.text,
    )
    shown = [c for c in cells(response.text) if c[0] != "time"]
    if path == "/live":
        # The bars of events per minute move with the clock; the totals do not.
        shown = [c for c in shown if c[0] not in ("bucket", "value")]
    return response.status_code, [*cards, *shown]


# -- script in event values ----------------------------------------------------


EXPECTED_TEXT = {
    "/pages": {("page", HOSTILE_PATH), ("title", HOSTILE_TITLE)},
    "/sources": {
        ("refr_medium", SHORT_XSS),
        ("refr_source", "s" + XSS),
        ("refr_term", "term" + XSS),
        ("mkt_campaign", "camp" + XSS),
        ("mkt_source", "ms" + XSS),
        ("mkt_medium", "mm" + XSS),
    },
    "/devices": {("dvce_type", XSS), ("br_family", XSS), ("os_family", XSS)},
    "/countries": {("geo_country", COUNTRY), ("geo_city", "city" + XSS)},
    "/ecommerce": {
        ("sku", "sku" + XSS),
        ("name", "name" + XSS),
        ("category", "cat" + XSS),
    },
    "/live": {
        ("title", HOSTILE_TITLE),
        ("page", HOSTILE_PATH),
        ("app_id", HOSTILE_APP),
        ("country", COUNTRY),
        ("device", XSS),
    },
}


@pytest.mark.parametrize("path", PAGES)
def test_markup_from_events_is_shown_as_text(dash: RunningDashboard, path: str) -> None:
    """Every value an event brings is shown as the characters it is: no element,
    attribute or javascript: link comes out of it, in tables, share bars, the
    app menu and the SVG charts."""
    response = get(dash, path)
    assert response.status_code == 200, response.text
    page = response.text
    for raw in ("<svg onload", "<script>alert", "onload=alert(1)>"):
        assert raw not in page
    assert not re.search(r'(href|src|action)="\s*javascript', page, re.I)
    shown = set(cells(page))
    assert EXPECTED_TEXT.get(path, set()) <= shown
    # The app menu lists the hostile app as text, on every page.
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', page)
    assert (HOSTILE_APP, HOSTILE_APP) in [
        (html.unescape(v), html.unescape(t)) for v, t in options
    ]
    # The only markup in the page is the dashboard's own: one svg per chart
    # and share bar, each opened by the template.
    assert page.count("<svg") == page.count('<svg class="')


def test_hostile_app_filter_is_escaped_in_links_and_scope(
    dash: RunningDashboard,
) -> None:
    response = get(dash, "/sources", app=HOSTILE_APP)
    assert response.status_code == 200
    assert "<svg onload" not in response.text
    scope = re.search(r'<p class="scope">([^<]*)</p>', response.text)
    assert (
        scope and html.unescape(scope.group(1)) == f"All time · app {HOSTILE_APP} (UTC)"
    )
    # The links between pages keep the filter, whole.
    links = re.findall(r'<a href="(/[^"]*)"', response.text)
    assert len(links) == len(PAGES)
    for link in links:
        query = parse_qs(urlsplit(html.unescape(link)).query)
        assert query == {"app": [HOSTILE_APP]}, link
    # The hostile visitor's session, and only it.
    assert ("mkt_campaign", "camp" + XSS) in cells(response.text)
    assert [v for c, v in cells(response.text) if c == "sessions"][:1] == ["1"]


# -- headers, methods, paths ---------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_the_policy_for_get_and_head(
    dash: RunningDashboard, path: str
) -> None:
    with httpx.Client(base_url=dash.url, timeout=30) as client:
        got, head = client.get(path), client.head(path)
    for response in (got, head):
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert head.content == b""
    assert int(head.headers["content-length"]) > 1000


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no-such-page", 404),
        ("GET", "/pages/", 307),  # to /pages
        ("POST", "/", 405),
        ("DELETE", "/pages", 405),
        ("GET", "/health", 200),
    ],
)
def test_every_response_sends_the_policy(
    dash: RunningDashboard, method: str, path: str, status: int
) -> None:
    """docs/dashboard.md: "every response says so to the browser". Once a bug: the
    not-found, method-not-allowed and health responses (Starlette's own) carry
    no Content-Security-Policy and no nosniff."""
    response = httpx.request(method, dash.url + path, timeout=30)
    assert response.status_code == status
    assert response.headers.get("content-security-policy") == POLICY
    assert response.headers.get("x-content-type-options") == "nosniff"


def test_other_methods_are_refused(dash: RunningDashboard) -> None:
    with httpx.Client(base_url=dash.url, timeout=30) as client:
        for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"):
            response = client.request(method, "/pages", content=b"since=2026-03-02")
            assert response.status_code == 405, method
            assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


def raw_get(base: RunningDashboard, target: str) -> bytes:
    """One HTTP/1.1 request with the path sent exactly as written."""
    host, port = base.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        conn.sendall(request.encode() + b"\r\n")
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize(
    "target",
    [
        "/../../../../etc/passwd",
        "/dashboard.css/../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "//etc/passwd",
        "/dashboard.css%00.html",
    ],
)
def test_no_path_reaches_a_file(dash: RunningDashboard, target: str) -> None:
    reply = raw_get(dash, target)
    status = reply.split(b"\r\n", 1)[0]
    assert status in (b"HTTP/1.1 404 Not Found", b"HTTP/1.1 400 Bad Request"), reply
    assert b"root:" not in reply


def test_hundreds_of_requests_at_once(dash: RunningDashboard) -> None:
    """240 requests at once over every page: all answered, all with the same
    figures."""

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=240, max_keepalive_connections=240)
        async with httpx.AsyncClient(
            base_url=dash.url, timeout=120, limits=limits
        ) as client:
            return await asyncio.gather(
                *(client.get(PAGES[n % 6], params={"app": "shop"}) for n in range(240))
            )

    started = time.monotonic()
    responses = asyncio.run(burst())
    log.info("240 requests in %.1f s", time.monotonic() - started)
    assert Counter(r.status_code for r in responses) == {200: 240}
    overview = {card(r.text, "sessions") for r in responses if r.url.path == "/"}
    assert overview == {str(len(_shop_sessions()))}


def _shop_sessions() -> list[sim.Session]:
    return [
        s
        for v in sim.known_site()
        if v.app_id == "shop" and not v.is_bot
        for s in v.sessions
    ]


# -- the filters ---------------------------------------------------------------


def test_sql_in_the_app_filter_matches_nothing(dash: RunningDashboard) -> None:
    for app in ("shop' OR '1'='1", "shop'--", "shop\\", "shop%", "' UNION SELECT 1--"):
        response = get(dash, "/", app=app)
        assert response.status_code == 200, app
        assert card(response.text, "sessions") == "0", app
    shop = card(get(dash, "/", app="shop").text, "sessions")
    assert shop == str(len(_shop_sessions())) == "8"


def test_repeated_parameters_use_the_last_one_throughout(
    dash: RunningDashboard,
) -> None:
    response = httpx.get(
        f"{dash.url}/?app=blog&app=shop&until=2026-03-01&until=2026-03-02"
    )
    assert response.status_code == 200
    assert "Up to 2026-03-02 · app shop (UTC)" in response.text
    assert card(response.text, "sessions") == str(SHOP_SESSIONS_ON_MARCH_2)


def test_a_long_app_value_is_answered(dash: RunningDashboard) -> None:
    response = get(dash, "/pages", app="x" * 8000)
    assert response.status_code == 200
    assert "Nothing in this range." in response.text


def test_hours_are_utc_hours(dash: RunningDashboard) -> None:
    """A one-day range is drawn by hour, in UTC: bob's session at 10:00 and
    erin's at 23:50 on 2026-03-06 in their own hours."""
    response = get(dash, "/", since="2026-03-06", until="2026-03-06", app="shop")
    assert response.status_code == 200
    buckets = re.findall(
        r'data-col="bucket">([^<]*)</td><td class="num" data-col="value">([^<]*)<',
        response.text,
    )
    assert len(buckets) == 24
    assert [b for b in buckets if b[1] != "0"] == [
        ("2026-03-06 10:00", "1"),
        ("2026-03-06 23:00", "1"),
    ]
    assert card(response.text, "sessions") == "2"


def test_an_unreadable_date_is_a_bad_request(dash: RunningDashboard) -> None:
    for since in ("yesterday", "2026-02-30", "2026-03-02T25:00", "２０２６-03-02"):
        response = get(dash, "/pages", since=since)
        assert response.status_code == 400, since
        assert "is not a date" in error_of(response.text)
        assert response.headers["content-security-policy"] == POLICY


@pytest.mark.parametrize(
    "query",
    [
        {"until": "9999-12-31"},
        {"since": "0001-01-01", "until": "0001-01-01T00:00"},
        {"since": "9999-12-31T23:00", "until": "9999-12-31T23:59"},
    ],
    ids=["until-9999-12-31", "until-year-1-midnight", "last-hour-of-9999"],
)
def test_dates_at_the_ends_of_the_calendar_are_not_a_server_error(
    dash: RunningDashboard, query: dict[str, str]
) -> None:
    """Once a bug: ``until=9999-12-31`` overflows adding its day (parse_time) and the
    other two overflow while the series steps past year 1 or 9999
    (_fill_gaps): status 500, a plain-text page without the policy, and a
    traceback in the log. Expected: the page (or a 400 that says why)."""
    response = get(dash, "/", **query)
    assert response.status_code in (200, 400), response.text
    assert response.headers.get("content-security-policy") == POLICY
    if response.status_code == 200:
        everything = card(get(dash, "/").text, "sessions")
        expected = everything if query.get("until") == "9999-12-31" else "0"
        assert card(response.text, "sessions") == expected


def test_an_unknown_app_stays_chosen_in_the_menu(dash: RunningDashboard) -> None:
    """Once a usability bug: with ``app=nosuch`` the menu showed "All apps"
    chosen, so pressing Apply dropped the filter. The app given stays chosen,
    said to have no sessions, and the figures are zero."""
    response = get(dash, "/", app="no<such>")
    assert response.status_code == 200
    chosen = re.findall(r"<option value=\"([^\"]*)\" selected>", response.text)
    assert chosen == ["no&lt;such&gt;"]
    assert "no&lt;such&gt; (no sessions)</option>" in response.text
    assert card(response.text, "sessions") == "0"
    known = get(dash, "/", app="shop")
    assert re.findall(r"<option value=\"([^\"]*)\" selected>", known.text) == ["shop"]


def test_a_nul_in_the_app_filter_is_a_bad_request(dash: RunningDashboard) -> None:
    """Once a bug: ``app=%00`` answers 503 (the store "unavailable") with the SQL
    quoting's message, and logs a warning per request; it is the request that
    is bad (400), as for an unreadable date."""
    for path in ("/", "/live"):
        response = get(dash, path, app="shop\x00")
        assert response.status_code == 400, path
        assert "\x00" not in response.text


def test_a_compact_date_means_the_same_day(dash: RunningDashboard) -> None:
    """Once a bug: ``until=20260302`` (ISO 8601's basic form, which Python 3.11
    reads) is taken as the time 2026-03-02 00:00, while ``until=2026-03-02``
    includes the whole day: 0 sessions against 3. Expected: the same figures,
    or a 400 saying how to write it."""
    dashed = get(dash, "/", until="2026-03-02", app="shop")
    assert card(dashed.text, "sessions") == str(SHOP_SESSIONS_ON_MARCH_2)
    compact = get(dash, "/", until="20260302", app="shop")
    if compact.status_code != 400:
        assert card(compact.text, "sessions") == str(SHOP_SESSIONS_ON_MARCH_2)


def test_a_time_with_an_offset_is_read_as_that_instant(dash: RunningDashboard) -> None:
    """Once a bug: ``since=2026-03-02T10:00+05:00`` is 05:00 UTC, but the offset is
    dropped and 10:00 UTC used: alice's session at 09:00 UTC goes missing.
    Expected: the instant converted to UTC (or a 400)."""
    utc = get(dash, "/", since="2026-03-02T05:00", until="2026-03-02", app="shop")
    assert card(utc.text, "sessions") == str(SHOP_SESSIONS_ON_MARCH_2)
    offset = get(
        dash, "/", since="2026-03-02T10:00+05:00", until="2026-03-02", app="shop"
    )
    if offset.status_code != 400:
        assert card(offset.text, "sessions") == str(SHOP_SESSIONS_ON_MARCH_2)


def test_a_reversed_range_is_said_on_the_page(dash: RunningDashboard) -> None:
    """Once a usability bug: from 2026-03-05 to 2026-03-01 shows zeros and "Nothing
    in this range" as if the site had had no visitor, where the user swapped
    the dates. Expected: a 400 that says the range ends before it starts, as
    an unreadable date does."""
    response = get(dash, "/", since="2026-03-05", until="2026-03-01")
    assert response.status_code == 400
    assert "2026-03-05" in error_of(response.text)


def test_the_chart_holds_the_sessions_when_the_range_ends_later(
    dash: RunningDashboard,
) -> None:
    """Once a bug: with ``until`` years ahead (a user's "everything up to 2030"), the
    chart keeps the latest 400 days of the range — all empty, in the future —
    and drops every session, while the cards count them all. Expected: the
    chart's bars add up to the sessions card (the series ending at the data,
    or at today)."""
    response = get(dash, "/", until="2030-12-31", app="shop")
    assert response.status_code == 200
    sessions = int(card(response.text, "sessions"))
    assert sessions == len(_shop_sessions())
    assert chart_total(response.text) == sessions


# -- odd values in the store ---------------------------------------------------


def test_a_path_with_a_nul_does_not_break_the_pages_page(
    odd_dash: RunningDashboard,
) -> None:
    """Once a bug: one page view whose path holds a NUL character (the loader takes
    it, `plowline report pages` lists it) makes the Pages page answer 503 for
    every visitor: looking up the titles quotes the paths into SQL, and the
    quoting refuses NUL. Expected: the page, with the path's row."""
    response = get(odd_dash, "/pages", app="nul")
    assert response.status_code == 200, error_of(response.text)
    paths = [v for c, v in cells(response.text) if c == "page"]
    assert len(paths) == 1 and paths[0] in ("/a\x00b", "/a\ufffdb", "/ab"), paths


def test_revenue_beyond_decimal_18_2_in_total_is_shown(
    odd_dash: RunningDashboard,
) -> None:
    """Once a bug: two orders of 9,000,000,000,000,000.00 — each one fits the atomic
    column — add up past DECIMAL(18,2), and the reports' CAST of the sum fails:
    Overview, Referrers, Devices, Countries and Ecommerce answer 503 "The
    query failed: Conversion Error" for the whole site. Expected: the pages,
    with revenue 18000000000000000.00."""
    for path in ("/", "/sources", "/devices", "/countries", "/ecommerce"):
        response = get(odd_dash, path, app="big")
        assert response.status_code == 200, (path, error_of(response.text))
    overview = get(odd_dash, "/", app="big")
    assert card(overview.text, "transactions") == "2"
    assert Decimal(card(overview.text, "revenue").replace(",", "")) == 2 * BIG_PRICE


# -- stores that are not there -------------------------------------------------


def test_a_malformed_postgres_dsn_is_a_clear_error(folder: Path) -> None:
    """Once a bug: ``--postgres "not a dsn"`` starts a dashboard whose every page is
    a 500 "Internal Server Error" with a psycopg traceback in the log
    (ProgrammingError is not caught, only OperationalError). Expected: the
    command stops with an error naming the problem, or the pages say it
    (503), as for a server that does not answer."""
    port = free_port()
    log_path = folder / "bad-dsn.log"
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [*plowline_command(), "dashboard", "--postgres", "not a dsn",
             "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    running = RunningDashboard(process, f"http://127.0.0.1:{port}", "", log_path)
    try:
        deadline = time.monotonic() + 20
        page: httpx.Response | None = None
        while process.poll() is None and time.monotonic() < deadline:
            try:
                page = httpx.get(f"{running.url}/", timeout=10)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
    finally:
        running.stop()
    output = log_path.read_text(errors="replace")
    assert "Traceback" not in output, output
    if page is None:
        assert process.returncode not in (0, None)
        assert "Error:" in output, output
    else:
        assert page.status_code == 503, page.text
        assert error_of(page.text)


def test_a_postgres_server_that_does_not_answer_is_said(folder: Path) -> None:
    closed = free_port()
    dsn = f"postgresql://postgres@127.0.0.1:{closed}/none?connect_timeout=3"
    running = start_dashboard(dsn, folder, ["--postgres", dsn])
    try:
        for path in ("/", "/pages", "/live"):
            response = get(running, path)
            assert response.status_code == 503
            assert error_of(response.text).startswith("Cannot connect to PostgreSQL")
            assert response.headers["content-security-policy"] == POLICY
    finally:
        output = stopped(running)
    assert "Traceback" not in output


def test_a_file_that_is_not_duckdb_is_said(folder: Path) -> None:
    text = folder / "notes.duckdb"
    text.write_text("not a database\n")
    running = start_dashboard(str(text), folder)
    try:
        for path in ("/", "/live"):
            response = get(running, path)
            assert response.status_code == 503
            assert "not a valid DuckDB database file" in error_of(response.text)
    finally:
        output = stopped(running)
    assert "Traceback" not in output
    assert text.read_text() == "not a database\n"


def test_a_taken_port_is_a_clear_error(dash: RunningDashboard) -> None:
    port = dash.url.rsplit(":", 1)[1]
    result = subprocess.run(
        [*plowline_command(), "dashboard", "--duckdb", dash.where, "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    # The first one still serves.
    assert get(dash, "/health").text == "ok"


# -- the same pages from PostgreSQL --------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?since=2026-03-02&until=2026-03-04",
        "?since=2026-03-06&until=2026-03-06",
        "?app=shop",
        "?app=shop%27+OR+%271%27%3D%271",
        "?app=shop%5C",
        "?since=2026-03-02T05%3A30&until=2026-03-05T12%3A00&app=shop",
    ],
)
def test_postgres_shows_the_same_figures_as_duckdb(
    dash: RunningDashboard, pg_dash: RunningDashboard, query: str
) -> None:
    for path in PAGES:
        duck, pg = figures(dash, path, query), figures(pg_dash, path, query)
        assert duck[0] == 200, (path, duck)
        assert pg == duck, path
