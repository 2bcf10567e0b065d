"""The dashboard's web application: one page per panel, each filtered by the
date range and the app in its query string (``?since=&until=&app=``).

Pages are rendered on the server; the responses forbid every script and
every resource from another origin (Content-Security-Policy), on top of the
templates' escaping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from jinja2 import DictLoader, Environment, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from plowline.analytics.reports import Filters, parse_time
from plowline.dashboard import charts
from plowline.dashboard.data import (
    LIVE_MINUTES,
    ROLLUP_LIMIT,
    DashboardSource,
    Row,
    rollup,
    with_limit,
)
from plowline.dashboard.templates import CSS, TEMPLATES
from plowline.errors import BadInputError, PlowlineError

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

PAGES = (
    ("overview", "/", "Overview"),
    ("pages", "/pages", "Pages"),
    ("sources", "/sources", "Referrers & campaigns"),
    ("devices", "/devices", "Devices"),
    ("countries", "/countries", "Countries"),
    ("ecommerce", "/ecommerce", "Ecommerce"),
    ("live", "/live", "Live"),
)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "num"  # or "text"


def _text(key: str, label: str) -> Column:
    return Column(key, label, "text")


SESSION_COLUMNS = [
    Column("sessions", "Sessions"),
    Column("users", "Visitors"),
    Column("page_views", "Page views"),
    Column("bounce_rate_pct", "Bounce %"),
    Column("transactions", "Orders"),
    Column("revenue", "Revenue"),
]
PAGE_COLUMNS = [
    _text("page", "Page"),
    _text("title", "Title"),
    Column("page_views", "Page views"),
    Column("sessions", "Sessions"),
    Column("users", "Visitors"),
    Column("avg_engaged_s", "Avg engaged s"),
    Column("avg_scroll_pct", "Avg scroll %"),
    Column("entries", "Entries"),
    Column("exits", "Exits"),
    Column("exit_rate_pct", "Exit %"),
]
ITEM_COLUMNS = [
    _text("sku", "SKU"),
    _text("name", "Product"),
    _text("category", "Category"),
    Column("orders", "Orders"),
    Column("quantity", "Quantity"),
    Column("item_revenue", "Revenue"),
]
LIVE_COLUMNS = [
    _text("time", "Time (UTC)"),
    _text("title", "Title"),
    _text("page", "Page"),
    _text("app_id", "App"),
    _text("country", "Country"),
    _text("device", "Device"),
]


def show(value: Any) -> str:
    """A value as the page shows it: whole numbers grouped by thousands,
    other values as the report gives them, a dash for none."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def environment() -> Environment:
    env = Environment(
        loader=DictLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["show"] = show
    return env


@dataclass(frozen=True)
class FilterForm:
    """The filters as given in the query string, and as Filters."""

    since: str
    until: str
    app: str
    filters: Filters

    @classmethod
    def parse(cls, request: Request) -> FilterForm:
        given = {
            name: request.query_params.get(name, "").strip()
            for name in ("since", "until", "app")
        }
        for name, value in given.items():
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                raise BadInputError(
                    f"The {name} filter holds a control character: {value!r}."
                )
        since, until, app = given["since"], given["until"], given["app"]
        filters = Filters(
            since=parse_time(since) if since else None,
            until=parse_time(until, end=True) if until else None,
            app_id=app or None,
        )
        if (
            filters.since is not None
            and filters.until is not None
            and filters.until <= filters.since
        ):
            raise BadInputError(
                f"The range ends ({until}) before it starts ({since}): swap the dates."
            )
        return cls(since, until, app, filters)

    def query(self) -> str:
        given = {"since": self.since, "until": self.until, "app": self.app}
        kept = {k: v for k, v in given.items() if v}
        return "?" + urlencode(kept) if kept else ""

    def scope(self) -> str:
        if self.since and self.until:
            when = f"From {self.since} to {self.until}"
        elif self.since:
            when = f"From {self.since}"
        elif self.until:
            when = f"Up to {self.until}"
        else:
            when = "All time"
        return f"{when} · {'app ' + self.app if self.app else 'all apps'} (UTC)"


class Dashboard:
    """The pages, over one store."""

    def __init__(self, source: DashboardSource) -> None:
        self.source = source
        self.env = environment()

    def render(
        self,
        request: Request,
        page: str,
        template: str,
        build: Callable[[FilterForm], dict[str, Any]],
    ) -> HTMLResponse:
        try:
            form = FilterForm.parse(request)
        except PlowlineError as exc:
            empty = FilterForm("", "", "", Filters())
            return self._page(page, "tables.html", empty, 400, error=str(exc))
        try:
            context = build(form)
        except PlowlineError as exc:
            log.warning("Dashboard page %s failed: %s", page, exc)
            return self._page(page, template, form, 503, error=str(exc))
        except Exception:
            log.exception("Dashboard page %s failed unexpectedly", page)
            return self._page(
                page,
                template,
                form,
                500,
                error="This page failed: an unexpected error, written to the "
                "dashboard's log.",
            )
        return self._page(page, template, form, 200, **context)

    def _page(
        self, page: str, template: str, form: FilterForm, status: int, **context: Any
    ) -> HTMLResponse:
        query = form.query()
        nav = [
            {"url": path + query, "label": label, "current": key == page}
            for key, path, label in PAGES
        ]
        heading = dict((k, label) for k, _, label in PAGES)[page]
        try:
            apps = self.source.apps()
        except PlowlineError:
            apps = []
        context.setdefault("scope", form.scope())
        html = self.env.get_template(template).render(
            heading=heading,
            nav=nav,
            form=form,
            apps=apps,
            css_url="/dashboard.css",
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    # -- the pages --------------------------------------------------------------

    def overview(self, form: FilterForm) -> dict[str, Any]:
        (row,) = self.source.report("overview", form.filters)
        unit, series = self.source.series(form.filters)
        return {
            "cards": _overview_cards(row),
            "chart": charts.bar_chart(
                f"Sessions per {unit}",
                series,
                unit,
                "sessions",
                "sessions",
                "page_views",
                "page views",
            ),
        }

    def pages(self, form: FilterForm) -> dict[str, Any]:
        rows = self.source.report("pages", form.filters)
        titles = self.source.page_titles(form.filters, [str(r["page"]) for r in rows])
        for row in rows:
            row["title"] = titles.get(str(row["page"]))
        return {"tables": [_table("top-pages", "Top pages", PAGE_COLUMNS, rows)]}

    def sources(self, form: FilterForm) -> dict[str, Any]:
        f = form.filters
        referrers = self.source.report("referrers", with_limit(f, ROLLUP_LIMIT))
        campaigns = self.source.report("campaigns", f)
        return {
            "shares": [_share("channels", "Channels", "channel", referrers)],
            "tables": [
                _table(
                    "referrers",
                    "Referrers",
                    [
                        _text("channel", "Channel"),
                        _text("refr_medium", "Medium"),
                        _text("refr_source", "Source"),
                        _text("refr_term", "Term"),
                        *SESSION_COLUMNS,
                    ],
                    referrers[: f.limit],
                ),
                _table(
                    "campaigns",
                    "Campaigns",
                    [
                        _text("mkt_campaign", "Campaign"),
                        _text("mkt_source", "Source"),
                        _text("mkt_medium", "Medium"),
                        *SESSION_COLUMNS,
                    ],
                    campaigns,
                ),
            ],
        }

    def devices(self, form: FilterForm) -> dict[str, Any]:
        f = form.filters
        rows = self.source.report("devices", with_limit(f, ROLLUP_LIMIT))
        return {
            "shares": [
                _share("device-types", "Device types", "dvce_type", rows),
                _share("browsers", "Browsers", "br_family", rows),
                _share("operating-systems", "Operating systems", "os_family", rows),
            ],
            "tables": [
                _table(
                    "devices",
                    "Devices, browsers and operating systems",
                    [
                        _text("dvce_type", "Device"),
                        _text("br_family", "Browser"),
                        _text("os_family", "OS"),
                        *SESSION_COLUMNS,
                    ],
                    rows[: f.limit],
                )
            ],
        }

    def countries(self, form: FilterForm) -> dict[str, Any]:
        f = form.filters
        rows = self.source.report("geo", with_limit(f, ROLLUP_LIMIT))
        return {
            "shares": [_share("by-country", "Countries", "geo_country", rows)],
            "tables": [
                _table(
                    "cities",
                    "Countries and cities",
                    [
                        _text("geo_country", "Country"),
                        _text("geo_city", "City"),
                        *SESSION_COLUMNS,
                    ],
                    rows[: f.limit],
                )
            ],
        }

    def ecommerce(self, form: FilterForm) -> dict[str, Any]:
        (row,) = self.source.report("overview", form.filters)
        items = self.source.report("ecommerce", form.filters)
        cards = [
            {
                "key": "transactions",
                "label": "Orders",
                "value": show(row["transactions"]),
            },
            {"key": "revenue", "label": "Revenue", "value": show(row["revenue"])},
            {
                "key": "conversion_rate_pct",
                "label": "Sessions with an order",
                "value": _pct(row["conversion_rate_pct"]),
            },
        ]
        return {
            "cards": cards,
            "tables": [_table("products", "Products", ITEM_COLUMNS, items)],
        }

    def live(self, form: FilterForm) -> dict[str, Any]:
        live = self.source.live(form.filters.app_id)
        totals = live.totals
        cards = [
            {"key": key, "label": label, "value": show(totals[key])}
            for key, label in (
                ("visitors", "Visitors"),
                ("sessions", "Sessions"),
                ("page_views", "Page views"),
                ("events", "Events"),
            )
        ]
        app = f"app {form.app}" if form.app else "all apps"
        return {
            "cards": cards,
            "chart": charts.bar_chart(
                "Events per minute", live.minutes, "minute", "events", "events"
            ),
            "tables": [
                _table("latest", "Latest page views", LIVE_COLUMNS, live.latest)
            ],
            "scope": (
                f"The last {LIVE_MINUTES} minutes, {live.since:%H:%M} to "
                f"{live.now:%H:%M} UTC · {app} · every event as it arrived, "
                "bots included; the date range does not apply here. "
                "The page reloads every 30 s."
            ),
        }


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value} %"


def _seconds(value: Any) -> str:
    return "–" if value is None else f"{value} s"


def _overview_cards(row: Row) -> list[dict[str, str]]:
    return [
        {"key": "users", "label": "Visitors", "value": show(row["users"])},
        {"key": "sessions", "label": "Sessions", "value": show(row["sessions"])},
        {"key": "page_views", "label": "Page views", "value": show(row["page_views"])},
        {
            "key": "bounce_rate_pct",
            "label": "Bounce rate",
            "value": _pct(row["bounce_rate_pct"]),
        },
        {
            "key": "avg_engaged_s",
            "label": "Engaged time per session",
            "value": _seconds(row["avg_engaged_s"]),
        },
        {
            "key": "avg_session_s",
            "label": "Session length",
            "value": _seconds(row["avg_session_s"]),
        },
        {"key": "transactions", "label": "Orders", "value": show(row["transactions"])},
        {"key": "revenue", "label": "Revenue", "value": show(row["revenue"])},
    ]


def _table(id: str, caption: str, columns: list[Column], rows: list[Row]) -> Any:
    return {"id": id, "caption": caption, "columns": columns, "rows": rows}


def _share(id: str, caption: str, key: str, rows: list[Row]) -> Any:
    return {"id": id, "caption": caption, "key": key, "rows": rollup(rows, key)}


def build_app(source: DashboardSource) -> SecurityHeaders:
    """The dashboard over ``source`` as an ASGI application."""
    dashboard = Dashboard(source)

    def page(name: str, template: str) -> Any:
        build = getattr(dashboard, name)

        # A plain function: Starlette runs it in its thread pool, so a slow
        # query does not hold up the event loop.
        def endpoint(request: Request) -> Response:
            return dashboard.render(request, name, template, build=build)

        return endpoint

    def css(request: Request) -> Response:
        return Response(
            CSS,
            media_type="text/css",
            headers={
                "Cache-Control": "max-age=300",
                "X-Content-Type-Options": "nosniff",
            },
        )

    def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    templates = {"overview": "overview.html", "live": "live.html"}
    routes = [
        Route(path, page(key, templates.get(key, "tables.html")), methods=["GET"])
        for key, path, _ in PAGES
    ]
    routes += [
        Route("/dashboard.css", css, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    return SecurityHeaders(Starlette(routes=routes))


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response that lacks them: Starlette's
    own 404, 405 and 500 answers too. Wraps the whole application, so it sees
    the 500 of an exception that escaped it; it logs that exception once."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.added = [
            (name.lower().encode(), value.encode())
            for name, value in SECURITY_HEADERS.items()
        ]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in self.added if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except Exception:
            # Starlette has answered 500 already (through with_headers).
            log.exception("Dashboard request %s failed", scope.get("path"))
