"""A simulated website of known shape: visitors with set paths, sessions,
timing and purchases, written as enriched events, with every model figure known
in advance.

The tests load these events through the real loader and compare the models
with ``plowline.analytics.expected``; ``bench/analytics.py`` uses
:func:`random_site` for volume. Timing follows the JavaScript tracker: a page
view, then a page ping every ``heartbeat`` seconds while the page is read,
pings carrying the deepest vertical offset reached so far.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from plowline.enrich.fields import FIELD_NAMES

SP = "iglu:com.snowplowanalytics.snowplow"
ECOM = "iglu:com.snowplowanalytics.snowplow.ecommerce"
HOST = "shop.example.com"
HEARTBEAT_S = 10


@dataclass(frozen=True)
class Device:
    br_family: str
    br_name: str
    os_family: str
    os_name: str
    dvce_type: str
    ismobile: bool
    view_height: int
    br_type: str = "Browser"


@dataclass(frozen=True)
class Place:
    country: str
    city: str
    region_name: str


@dataclass(frozen=True)
class Acquisition:
    """Where a session came from, and the channel the models must give it."""

    channel: str
    referrer: str | None = None
    refr_medium: str | None = None
    refr_source: str | None = None
    refr_term: str | None = None
    mkt: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    category: str
    price: Decimal
    quantity: int


@dataclass(frozen=True)
class Purchase:
    order_id: str
    items: tuple[Item, ...]
    kind: str = "tr"  # or "ecommerce": a snowplow_ecommerce_action
    tax: Decimal = Decimal("0")
    shipping: Decimal = Decimal("0")
    sent_twice: bool = False

    @property
    def revenue(self) -> Decimal:
        items = sum((i.price * i.quantity for i in self.items), Decimal("0"))
        return items + self.tax + self.shipping


@dataclass(frozen=True)
class Visit:
    """One page view: ``pings`` page pings, ``y_max`` the deepest offset."""

    path: str
    pings: int = 0
    dwell_s: int = 30
    doc_height: int = 2000
    y_max: int = 0
    login: str | None = None
    purchase: Purchase | None = None
    event: str | None = None  # a structured event's action on this page


@dataclass(frozen=True)
class Session:
    start: datetime
    acquisition: Acquisition
    visits: tuple[Visit, ...]


@dataclass(frozen=True)
class Visitor:
    domain_userid: str
    device: Device
    place: Place
    sessions: tuple[Session, ...]
    app_id: str = "shop"
    bot_context: bool = False  # labelled by the io.plowline bot_detection context

    @property
    def is_bot(self) -> bool:
        return self.bot_context or self.device.br_type == "Robot"


DESKTOP = Device(
    "Chrome", "Chrome 120", "Windows", "Windows 10", "Computer", False, 900
)
LINUX = Device("Firefox", "Firefox 121", "Linux", "Linux", "Computer", False, 1000)
PHONE = Device("Safari", "Mobile Safari", "iOS", "iOS 17 (iPhone)", "Mobile", True, 700)
CRAWLER = Device(
    "Robot/Spider", "Robot/Spider", "Unknown", "Unknown", "Unknown", False, 800, "Robot"
)
LONDON = Place("GB", "London", "England")
NEW_YORK = Place("US", "New York", "New York")
BERLIN = Place("DE", "Berlin", "Land Berlin")

DIRECT = Acquisition("Direct")
GOOGLE = Acquisition(
    "Organic Search",
    "https://www.google.com/search?q=garden+tools",
    "search",
    "Google",
    "garden tools",
)
FACEBOOK = Acquisition("Social", "https://www.facebook.com/", "social", "Facebook")
BLOGROLL = Acquisition("Referral", "https://blog.example.org/links", "unknown")
NEWSLETTER = Acquisition(
    "Email",
    mkt={"mkt_medium": "email", "mkt_source": "newsletter", "mkt_campaign": "spring"},
)
ADS = Acquisition(
    "Paid Search",
    "https://www.google.com/",
    "search",
    "Google",
    mkt={
        "mkt_medium": "cpc",
        "mkt_source": "google",
        "mkt_campaign": "spades",
        "mkt_term": "spade",
    },
)

SPADE = Item("SP-1", "Spade", "tools", Decimal("24.50"), 2)
GLOVES = Item("GL-2", "Gloves", "clothing", Decimal("9.99"), 1)
RAKE = Item("RK-3", "Rake", "tools", Decimal("31.00"), 1)


def _day(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute)


def known_site() -> list[Visitor]:
    """The site of the tests: eight visitors, two of them bots."""
    return [
        Visitor(
            "d-alice-desktop",
            DESKTOP,
            LONDON,
            (
                Session(
                    _day(2, 9),
                    GOOGLE,
                    (
                        Visit("/", pings=2, dwell_s=40, y_max=600),
                        Visit("/product/spade", pings=5, dwell_s=70, y_max=1100),
                        Visit("/cart", pings=1, dwell_s=20, doc_height=1200, y_max=300),
                        Visit("/checkout", pings=3, dwell_s=45, login="alice"),
                        Visit(
                            "/thank-you",
                            pings=0,
                            purchase=Purchase(
                                "O-1001",
                                (SPADE, GLOVES),
                                tax=Decimal("5.00"),
                                shipping=Decimal("4.95"),
                            ),
                        ),
                    ),
                ),
                Session(_day(3, 18), DIRECT, (Visit("/"),)),
            ),
        ),
        Visitor(
            "d-alice-phone",
            PHONE,
            LONDON,
            (
                Session(
                    _day(4, 12),
                    NEWSLETTER,
                    (
                        Visit(
                            "/product/rake",
                            pings=4,
                            dwell_s=60,
                            y_max=1300,
                            login="alice",
                            event="add_to_wishlist",
                        ),
                        Visit("/cart", pings=1, dwell_s=15),
                        Visit(
                            "/thank-you",
                            pings=2,
                            dwell_s=30,
                            purchase=Purchase(
                                "O-1002",
                                (RAKE, SPADE),
                                kind="ecommerce",
                                shipping=Decimal("3.50"),
                            ),
                        ),
                    ),
                ),
            ),
        ),
        Visitor(
            "d-carol",
            LINUX,
            NEW_YORK,
            (
                Session(
                    _day(2, 14),
                    ADS,
                    (Visit("/product/spade", pings=6, dwell_s=80, y_max=500),),
                ),
                Session(
                    _day(5, 8),
                    FACEBOOK,
                    (
                        Visit("/", pings=1, dwell_s=20, y_max=100),
                        Visit(
                            "/blog/soil",
                            pings=8,
                            dwell_s=100,
                            doc_height=4000,
                            y_max=3600,
                        ),
                        Visit("/product/spade", pings=2, dwell_s=30, y_max=400),
                        Visit("/cart", pings=0, dwell_s=10, event="remove_item"),
                    ),
                ),
            ),
        ),
        Visitor(
            "d-dieter",
            PHONE,
            BERLIN,
            (
                Session(
                    _day(3, 7),
                    BLOGROLL,
                    (
                        Visit(
                            "/blog/soil",
                            pings=3,
                            dwell_s=40,
                            doc_height=4000,
                            y_max=900,
                        ),
                    ),
                ),
            ),
            app_id="blog",
        ),
        Visitor(
            "d-bob",
            DESKTOP,
            NEW_YORK,
            (
                Session(
                    _day(2, 20),
                    DIRECT,
                    (
                        Visit("/", pings=1, dwell_s=15),
                        Visit("/product/rake", dwell_s=10),
                    ),
                ),
                Session(
                    _day(6, 10),
                    GOOGLE,
                    (
                        Visit("/product/rake", pings=2, dwell_s=25, login="bob"),
                        Visit(
                            "/thank-you",
                            pings=1,
                            dwell_s=12,
                            purchase=Purchase("O-1003", (RAKE,), sent_twice=True),
                        ),
                    ),
                ),
            ),
        ),
        Visitor(
            "d-erin",
            LINUX,
            LONDON,
            (
                Session(
                    _day(6, 23, 50),
                    DIRECT,
                    (Visit("/", pings=2, dwell_s=25), Visit("/cart", dwell_s=5)),
                ),
            ),
        ),
        Visitor(
            "d-crawler-1",
            DESKTOP,
            NEW_YORK,
            tuple(
                Session(
                    _day(2 + n, 3),
                    DIRECT,
                    (Visit("/"), Visit("/product/spade"), Visit("/cart")),
                )
                for n in range(3)
            ),
            bot_context=True,
        ),
        Visitor(
            "d-crawler-2",
            CRAWLER,
            BERLIN,
            (Session(_day(4, 4), DIRECT, (Visit("/"), Visit("/blog/soil"))),),
        ),
    ]


# -- events -----------------------------------------------------------------


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def _sd(schema: str, data: Any) -> dict[str, Any]:
    return {"schema": schema, "data": data}


def _contexts(entities: list[dict[str, Any]]) -> str:
    return json.dumps(_sd(f"{SP}/contexts/jsonschema/1-0-0", entities))


class _Ids:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def __call__(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))


def session_id(visitor: Visitor, index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{visitor.domain_userid}/{index}"))


def page_view_id(visitor: Visitor, index: int, visit: int) -> str:
    name = f"{visitor.domain_userid}/{index}/{visit}"
    return str(uuid.uuid5(uuid.NAMESPACE_OID, name))


def events(visitors: list[Visitor], seed: int = 1) -> Iterator[list[str]]:
    """Enriched rows (131 fields) of every visitor's sessions, per visitor in
    time order."""
    ids = _Ids(seed)
    for visitor in visitors:
        user_id: str | None = None
        for index, session in enumerate(visitor.sessions, start=1):
            writer = _SessionWriter(visitor, index, session, ids, user_id)
            yield from writer.rows()
            user_id = writer.user_id


class _SessionWriter:
    def __init__(
        self,
        visitor: Visitor,
        index: int,
        session: Session,
        ids: _Ids,
        user_id: str | None,
    ) -> None:
        self.visitor = visitor
        self.index = index
        self.session = session
        self.ids = ids
        self.user_id = user_id

    def base(self, at: datetime, event: str) -> dict[str, str]:
        visitor, device, place = self.visitor, self.visitor.device, self.visitor.place
        values = {
            "app_id": visitor.app_id,
            "platform": "web",
            "etl_tstamp": _ts(at + timedelta(seconds=2)),
            "collector_tstamp": _ts(at),
            "dvce_created_tstamp": _ts(at),
            "derived_tstamp": _ts(at),
            "event": event,
            "event_id": self.ids(),
            "v_tracker": "js-3.24.6",
            "v_collector": "plowline-sim",
            "v_etl": "plowline-sim",
            "domain_userid": visitor.domain_userid,
            "network_userid": "n-" + visitor.domain_userid,
            "domain_sessionid": session_id(visitor, self.index),
            "domain_sessionidx": str(self.index),
            "geo_country": place.country,
            "geo_city": place.city,
            "geo_region_name": place.region_name,
            "br_family": device.br_family,
            "br_name": device.br_name,
            "br_type": device.br_type,
            "os_family": device.os_family,
            "os_name": device.os_name,
            "dvce_type": device.dvce_type,
            "dvce_ismobile": "1" if device.ismobile else "0",
            "br_viewheight": str(device.view_height),
            "useragent": f"simulated {device.br_name}",
        }
        if self.user_id:
            values["user_id"] = self.user_id
        if visitor.bot_context:
            bot = {"bot": True, "category": "crawler", "indicators": []}
            values["derived_contexts"] = _contexts(
                [_sd("iglu:io.plowline/bot_detection/jsonschema/1-0-0", bot)]
            )
        return values

    def rows(self) -> Iterator[list[str]]:
        at = self.session.start
        previous: str | None = None
        for number, visit in enumerate(self.session.visits, start=1):
            if visit.login:
                self.user_id = visit.login
            pv_id = page_view_id(self.visitor, self.index, number)
            yield from self.visit_rows(at, visit, pv_id, previous, number == 1)
            previous = f"https://{HOST}{visit.path}"
            at += timedelta(seconds=visit.dwell_s)

    def visit_rows(
        self,
        at: datetime,
        visit: Visit,
        pv_id: str,
        previous: str | None,
        landing: bool,
    ) -> Iterator[list[str]]:
        page = {
            "page_url": f"https://{HOST}{visit.path}",
            "page_urlhost": HOST,
            "page_urlpath": visit.path,
            "page_urlscheme": "https",
            "page_title": visit.path.strip("/") or "home",
            "doc_height": str(visit.doc_height),
        }
        web_page = [_sd(f"{SP}/web_page/jsonschema/1-0-0", {"id": pv_id})]
        view = {**self.base(at, "page_view"), **page, **_event_name("page_view")}
        view["contexts"] = _contexts(web_page)
        acquisition = self.session.acquisition
        if landing:
            view.update(_acquisition_fields(acquisition))
        elif previous:
            view.update(
                page_referrer=previous, refr_urlhost=HOST, refr_medium="internal"
            )
        yield _row(view)

        for k in range(1, visit.pings + 1):
            ping = {**self.base(at + timedelta(seconds=HEARTBEAT_S * k), "page_ping")}
            ping.update(page, **_event_name("page_ping"))
            ping.update(
                contexts=_contexts(web_page),
                pp_xoffset_min="0",
                pp_xoffset_max="0",
                pp_yoffset_min="0",
                pp_yoffset_max=str(visit.y_max * k // visit.pings),
            )
            yield _row(ping)

        if visit.event:
            action = {**self.base(at + timedelta(seconds=3), "struct"), **page}
            action.update(
                _event_name("event"), se_category="shop", se_action=visit.event
            )
            action["contexts"] = _contexts(web_page)
            yield _row(action)
        if visit.purchase:
            sends = 2 if visit.purchase.sent_twice else 1
            for n in range(sends):
                when = at + timedelta(seconds=1 + n * 2)
                yield from self.purchase_rows(when, visit.purchase, page, web_page)

    def purchase_rows(
        self,
        at: datetime,
        purchase: Purchase,
        page: dict[str, str],
        web_page: list[dict[str, Any]],
    ) -> Iterator[list[str]]:
        if purchase.kind == "ecommerce":
            row = {**self.base(at, "unstruct"), **page}
            row.update(
                event_vendor="com.snowplowanalytics.snowplow.ecommerce",
                event_name="snowplow_ecommerce_action",
                event_format="jsonschema",
                event_version="1-0-2",
            )
            action = _sd(
                f"{ECOM}/snowplow_ecommerce_action/jsonschema/1-0-2",
                {"type": "transaction"},
            )
            row["unstruct_event"] = json.dumps(
                _sd(f"{SP}/unstruct_event/jsonschema/1-0-0", action)
            )
            transaction = {
                "transaction_id": purchase.order_id,
                "revenue": float(purchase.revenue),
                "currency": "EUR",
                "payment_method": "card",
                "total_quantity": sum(i.quantity for i in purchase.items),
                "tax": float(purchase.tax),
                "shipping": float(purchase.shipping),
            }
            products = [
                _sd(
                    f"{ECOM}/product/jsonschema/1-0-0",
                    {
                        "id": i.sku,
                        "name": i.name,
                        "category": i.category,
                        "price": float(i.price),
                        "quantity": i.quantity,
                        "currency": "EUR",
                    },
                )
                for i in purchase.items
            ]
            entities = [
                *web_page,
                _sd(f"{ECOM}/transaction/jsonschema/1-0-0", transaction),
                *products,
            ]
            row["contexts"] = _contexts(entities)
            yield _row(row)
            return

        row = {**self.base(at, "transaction"), **page, **_event_name("transaction")}
        row.update(
            contexts=_contexts(web_page),
            tr_orderid=purchase.order_id,
            tr_affiliation="web",
            tr_total=str(purchase.revenue),
            tr_tax=str(purchase.tax),
            tr_shipping=str(purchase.shipping),
            tr_currency="EUR",
            tr_city=self.visitor.place.city,
            tr_country=self.visitor.place.country,
        )
        yield _row(row)
        for item in purchase.items:
            line = {**self.base(at, "transaction_item"), **page}
            line.update(
                _event_name("transaction_item"),
                contexts=_contexts(web_page),
                ti_orderid=purchase.order_id,
                ti_sku=item.sku,
                ti_name=item.name,
                ti_category=item.category,
                ti_price=str(item.price),
                ti_quantity=str(item.quantity),
                ti_currency="EUR",
            )
            yield _row(line)


def _event_name(name: str) -> dict[str, str]:
    return {
        "event_vendor": "com.snowplowanalytics.snowplow",
        "event_name": name,
        "event_format": "jsonschema",
        "event_version": "1-0-0",
    }


def _acquisition_fields(acquisition: Acquisition) -> dict[str, str]:
    values = dict(acquisition.mkt)
    if acquisition.referrer:
        values["page_referrer"] = acquisition.referrer
        host = acquisition.referrer.split("/")[2]
        values["refr_urlhost"] = host
    for name in ("refr_medium", "refr_source", "refr_term"):
        value = getattr(acquisition, name)
        if value:
            values[name] = value
    return values


def _row(values: dict[str, str]) -> list[str]:
    return [values.get(name, "") for name in FIELD_NAMES]


def write_tsv(rows: Iterator[list[str]] | list[list[str]], path: str) -> int:
    """Write rows as enriched TSV; how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write("\t".join(row) + "\n")
            count += 1
    return count


# -- a random site for volume --------------------------------------------------

_PATHS = (
    "/",
    "/products",
    "/product/spade",
    "/product/rake",
    "/product/gloves",
    "/blog/soil",
    "/blog/roses",
    "/cart",
    "/checkout",
    "/thank-you",
    "/about",
)
_ACQUISITIONS = (DIRECT, GOOGLE, FACEBOOK, BLOGROLL, NEWSLETTER, ADS)
_DEVICES = (DESKTOP, LINUX, PHONE)
_PLACES = (LONDON, NEW_YORK, BERLIN)


def random_site(
    visitors: int, seed: int = 7, start: datetime | None = None, days: int = 30
) -> list[Visitor]:
    """``visitors`` random visitors over ``days`` days (about 40 events
    each), one in fifty of them a labelled bot."""
    rng = random.Random(seed)
    start = start or datetime(2026, 1, 1)
    site = []
    for n in range(visitors):
        sessions: list[Session] = []
        first = start + timedelta(seconds=rng.randrange(days * 86400))
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            visits: list[Visit] = []
            for _ in range(rng.choice((1, 1, 2, 3, 4, 5, 6))):
                pings = rng.choice((0, 0, 1, 2, 3, 5, 8, 13))
                visits.append(
                    Visit(
                        rng.choice(_PATHS),
                        pings=pings,
                        dwell_s=pings * HEARTBEAT_S + rng.randrange(2, 30),
                        y_max=rng.randrange(0, 1500),
                        login=f"user-{n}" if rng.random() < 0.03 else None,
                    )
                )
            if rng.random() < 0.04:
                last = visits[-1]
                order = Purchase(
                    f"R-{n}-{len(sessions)}",
                    (SPADE,) if rng.random() < 0.5 else (RAKE, GLOVES),
                    kind="tr" if rng.random() < 0.5 else "ecommerce",
                )
                visits[-1] = Visit(
                    "/thank-you", pings=last.pings, dwell_s=last.dwell_s, purchase=order
                )
            sessions.append(Session(first, rng.choice(_ACQUISITIONS), tuple(visits)))
            first += timedelta(hours=rng.randrange(2, 72))
        site.append(
            Visitor(
                f"r-{n:08d}",
                rng.choice(_DEVICES),
                rng.choice(_PLACES),
                tuple(sessions),
                bot_context=rng.random() < 0.02,
            )
        )
    return site
