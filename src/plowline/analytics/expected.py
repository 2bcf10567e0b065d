"""What the models must say about a simulated site, worked out from the
site's description alone (plowline.analytics.simulate), never from the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from plowline.analytics.simulate import (
    HEARTBEAT_S,
    Purchase,
    Session,
    Visitor,
    page_view_id,
    session_id,
)


@dataclass
class Expected:
    page_views: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def expected(
    visitors: list[Visitor],
    include_bots: bool = False,
    heartbeat_s: int = HEARTBEAT_S,
) -> Expected:
    """Every model figure, from the site's description alone."""
    out = Expected()
    latest_user: dict[str, str] = {}
    for visitor in visitors:
        if visitor.is_bot and not include_bots:
            continue
        for session in visitor.sessions:
            for visit in session.visits:
                if visit.login:
                    latest_user[visitor.domain_userid] = visit.login
    for visitor in visitors:
        if visitor.is_bot and not include_bots:
            continue
        stitched = latest_user.get(visitor.domain_userid, visitor.domain_userid)
        user_id: str | None = None
        for index, session in enumerate(visitor.sessions, start=1):
            user_id = _expect_session(
                out, visitor, index, session, stitched, user_id, heartbeat_s
            )
    _expect_users(out)
    return out


def _expect_session(
    out: Expected,
    visitor: Visitor,
    index: int,
    session: Session,
    stitched: str,
    user_id: str | None,
    heartbeat_s: int,
) -> str | None:
    sid = session_id(visitor, index)
    at = session.start
    end = at
    visits = session.visits
    revenue = Decimal("0")
    orders = 0
    for number, visit in enumerate(visits, start=1):
        if visit.login:
            user_id = visit.login
        pv_id = page_view_id(visitor, index, number)
        last = at + timedelta(seconds=HEARTBEAT_S * visit.pings)
        if visit.event:
            last = max(last, at + timedelta(seconds=3))
        if visit.purchase:
            sends = 2 if visit.purchase.sent_twice else 1
            last = max(last, at + timedelta(seconds=1 + (sends - 1) * 2))
            _expect_purchase(out, visit.purchase, sid, at + timedelta(seconds=1))
            revenue += visit.purchase.revenue
            orders += 1
        end = max(end, last)
        scroll = None
        if visit.pings:
            seen = visit.y_max + visitor.device.view_height
            scroll = min(100, seen * 100 // visit.doc_height)
        out.page_views[pv_id] = {
            "session_id": sid,
            "page_urlpath": visit.path,
            "page_view_in_session_index": number,
            "page_pings": visit.pings,
            "engaged_time_s": visit.pings * heartbeat_s,
            "scroll_depth_pct": scroll,
            "is_entry": number == 1,
            "is_exit": number == len(visits),
            "stitched_user_id": stitched,
            "user_id": user_id,
            "start_tstamp": at,
            "end_tstamp": at + timedelta(seconds=HEARTBEAT_S * visit.pings),
            "refr_medium": session.acquisition.refr_medium
            if number == 1
            else "internal",
            "geo_country": visitor.place.country,
            "br_family": visitor.device.br_family,
        }
        at += timedelta(seconds=visit.dwell_s)
    engaged = sum(v.pings for v in visits) * heartbeat_s
    out.sessions[sid] = {
        "domain_userid": visitor.domain_userid,
        "stitched_user_id": stitched,
        "user_id": user_id,
        "app_id": visitor.app_id,
        "start_tstamp": session.start,
        "end_tstamp": end,
        "duration_s": (end - session.start).total_seconds(),
        "page_views": len(visits),
        "engaged_time_s": engaged,
        "entry_page_path": visits[0].path,
        "exit_page_path": visits[-1].path,
        "channel": session.acquisition.channel,
        "refr_source": session.acquisition.refr_source,
        "mkt_campaign": session.acquisition.mkt.get("mkt_campaign"),
        "is_bounce": len(visits) == 1,
        "transactions": orders,
        "revenue": revenue,
        "dvce_type": visitor.device.dvce_type,
        "geo_city": visitor.place.city,
    }
    return user_id


def _expect_purchase(out: Expected, purchase: Purchase, sid: str, at: datetime) -> None:
    out.transactions[purchase.order_id] = {
        "session_id": sid,
        "revenue": purchase.revenue,
        "tax": purchase.tax,
        "shipping": purchase.shipping,
        "currency": "EUR",
        "source": "tr" if purchase.kind == "tr" else "snowplow_ecommerce",
        "tstamp": at,
    }
    for item in purchase.items:
        out.items[(purchase.order_id, item.sku)] = {
            "name": item.name,
            "category": item.category,
            "price": item.price,
            "quantity": item.quantity,
            "item_revenue": item.price * item.quantity,
        }


def _expect_users(out: Expected) -> None:
    for session in out.sessions.values():
        key = session["stitched_user_id"]
        user = out.users.setdefault(
            key,
            {
                "user_id": None,
                "cookies": set(),
                "first_seen": session["start_tstamp"],
                "last_seen": session["end_tstamp"],
                "sessions": 0,
                "page_views": 0,
                "engaged_time_s": 0,
                "transactions": 0,
                "revenue": Decimal("0"),
                "first_channel": session["channel"],
            },
        )
        if session["user_id"] is not None:
            user["user_id"] = key
        user["cookies"].add(session["domain_userid"])
        if session["start_tstamp"] < user["first_seen"]:
            user["first_seen"] = session["start_tstamp"]
            user["first_channel"] = session["channel"]
        user["last_seen"] = max(user["last_seen"], session["end_tstamp"])
        for name in ("sessions", "page_views", "engaged_time_s", "transactions"):
            user[name] += 1 if name == "sessions" else session[name]
        user["revenue"] += session["revenue"]
    for user in out.users.values():
        user["domain_userids"] = len(user.pop("cookies"))
