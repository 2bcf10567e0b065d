"""Build and update the data models: page views, sessions, users, transactions
and their items, in the schema ``derived`` of DuckDB or PostgreSQL.

An update is incremental and exact (docs/analytics.md, "Incremental updates"):

1. New events are those of ``atomic.events`` not yet in
   ``derived.processed_events``, looked for among events that arrived
   (``etl_tstamp``, else ``collector_tstamp``) after the watermark minus the
   lookback. Only the lookback's ids are kept, so the check stays cheap.
2. The units that the new events touch are re-derived whole from
   ``atomic.events``: their sessions (page views and sessions), their orders
   (transactions and items), their users (from ``derived.sessions``). A
   session is read from the earliest ``collector_tstamp`` it had, so the
   scan stays bounded by time.
3. A new ``user_id`` for a ``domain_userid`` re-stitches that cookie's older
   page views and sessions, and re-derives the users it moves between.
4. The previous page view of a path and the previous session in a report's
   group by the same user (for the reports' distinct users) are recomputed
   for the users whose page views or sessions changed.

Everything happens in one transaction, so a failed update leaves the models
as they were, and an update with no new events writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

from plowline.analytics.sources import ECOMMERCE_TRANSACTION, Sources
from plowline.analytics.tables import (
    MODEL_TABLES,
    MONEY,
    PAGE_VIEWS,
    SCHEMA,
    SESSION_GROUPS,
    SESSIONS,
    STATE_TABLES,
    TRANSACTION_ITEMS,
    TRANSACTIONS,
    USERS,
    channel_sql,
    ddl_statements,
    names,
    previous_session_column,
)
from plowline.analytics.warehouse import Warehouse, literal
from plowline.errors import ConfigurationError

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_S = 10
DEFAULT_LOOKBACK_S = 24 * 3600


@dataclass(frozen=True)
class ModelSettings:
    """How the models are built. A change of ``include_bots`` or
    ``heartbeat_s`` rebuilds them from scratch."""

    include_bots: bool = False
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    lookback_s: int = DEFAULT_LOOKBACK_S
    full_refresh: bool = False

    def __post_init__(self) -> None:
        if self.heartbeat_s < 1:
            raise ConfigurationError("The heartbeat must be at least 1 second.")
        if self.lookback_s < 0:
            raise ConfigurationError("The lookback cannot be negative.")


@dataclass(frozen=True)
class ModelResult:
    """What one build or update did."""

    new_events: int
    sessions: int
    orders: int
    users: int
    full: bool
    seconds: float


def build_models(wh: Warehouse, settings: ModelSettings | None = None) -> ModelResult:
    """Build the models, or bring them up to date with the new events."""
    settings = settings or ModelSettings()
    started = monotonic()
    if not wh.has_table("atomic", "events"):
        raise ConfigurationError(
            "There is no atomic.events table here: load events first "
            "(`plowline load` or `plowline up`)."
        )
    _drop_outdated(wh)
    for statement in ddl_statements():
        wh.execute(statement)

    with wh.transaction():
        run = _Run(wh, settings)
        result = run.update()
    seconds = monotonic() - started
    log.info(
        "Models %s: %d new events, %d sessions, %d orders, %d users in %.2f s",
        "built" if result.full else "updated",
        result.new_events,
        result.sessions,
        result.orders,
        result.users,
        seconds,
    )
    return ModelResult(
        result.new_events,
        result.sessions,
        result.orders,
        result.users,
        result.full,
        seconds,
    )


MONEY_PRECISION = 38
# The columns of the derived tables, as outdated_tables reads them.
MODEL_COLUMNS_SQL = (
    "SELECT table_name, column_name, numeric_precision "
    f"FROM information_schema.columns WHERE table_schema = '{SCHEMA}'"
)


def outdated_tables(rows: Iterable[Sequence[Any]]) -> list[str]:
    """The model tables made by a version with other columns or narrower money
    columns, from the rows of MODEL_COLUMNS_SQL."""
    found: dict[str, set[str]] = {}
    narrow: set[str] = set()
    money = {
        (table, name)
        for table, columns in MODEL_TABLES.items()
        for name, kind in columns
        if kind == MONEY
    }
    for table, column, precision in rows:
        found.setdefault(str(table), set()).add(str(column))
        if (str(table), str(column)) in money and precision != MONEY_PRECISION:
            narrow.add(str(table))
    return [
        table
        for table, columns in MODEL_TABLES.items()
        if table in found
        and (found[table] != {name for name, _ in columns} or table in narrow)
    ]


def _drop_outdated(wh: Warehouse) -> None:
    """Drop the model tables made by a version with other columns, and the
    state, so that they are built again from scratch."""
    rows = wh.execute(MODEL_COLUMNS_SQL)
    outdated = outdated_tables(rows)
    if not outdated:
        return
    log.info(
        "The tables %s have the columns of another version: building the "
        "models from scratch",
        ", ".join(f"{_D}.{table}" for table in outdated),
    )
    with wh.transaction():
        for table in outdated:
            wh.execute(f"DROP TABLE {_D}.{table}")
        if any(table == "model_state" for table, _, _ in rows):
            wh.execute(f"DELETE FROM {_D}.model_state")


def _tstamp(value: datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def _previous_by_user(alias: str) -> dict[str, str]:
    """The page_views columns of the previous view of the same path by the
    same stitched user (any app, same app), over the rows of ``alias``."""
    a = alias
    order = f"ORDER BY {a}.start_tstamp, {a}.session_id, {a}.page_view_id"
    partition = f"PARTITION BY {a}.stitched_user_id, {a}.page_urlpath"
    lag = f"CASE WHEN {a}.stitched_user_id IS NOT NULL THEN LAG({a}.start_tstamp)"
    return {
        "prev_path_view_by_user": f"{lag} OVER ({partition} {order}) END",
        "prev_path_view_by_user_app": (
            f"{lag} OVER ({partition}, {a}.app_id {order}) END"
        ),
    }


def _previous_session_by_user(alias: str) -> dict[str, str]:
    """The sessions columns of the previous session of the same stitched user
    in the same group of each session report (tables.SESSION_GROUPS), over
    the rows of ``alias``."""
    a = alias
    out = {}
    for group, columns in SESSION_GROUPS.items():
        for app in (False, True):
            keys = [f"{a}.stitched_user_id", *(f"{a}.{c}" for c in columns)]
            if app:
                keys.append(f"{a}.app_id")
            out[previous_session_column(group, app)] = (
                f"LAG({a}.start_tstamp) OVER (PARTITION BY {', '.join(keys)} "
                f"ORDER BY {a}.start_tstamp, {a}.session_id)"
            )
    return out


_SESSIONS_IN = "session_id IN (SELECT session_id FROM _pl_sessions)"
# A page view's stitched user (m: its cookie's row of derived.user_mapping).
_PV_STITCHED = "COALESCE(m.user_id, {pv}.domain_userid, {pv}.user_id)"
_ORDERS_IN = "IN (SELECT order_id FROM _pl_orders)"
_D = SCHEMA


class _Run:
    """One build or update, inside the caller's transaction."""

    def __init__(self, wh: Warehouse, settings: ModelSettings) -> None:
        self.wh = wh
        self.settings = settings
        self.src = Sources(wh)
        self.full = False
        self.lower_bound: str | None = None
        self.entities: str | None = None

    def sql(self, *statements: str) -> None:
        for statement in statements:
            started = monotonic()
            self.wh.execute(statement)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%7.3f s  %s",
                    monotonic() - started,
                    " ".join(statement.split())[:100],
                )

    def temp(self, name: str, select: str) -> None:
        self.sql(
            f"DROP TABLE IF EXISTS {name}", f"CREATE TEMP TABLE {name} AS {select}"
        )

    def count(self, table: str) -> int:
        return int(self.wh.scalar(f"SELECT COUNT(*) FROM {table}"))

    def not_bot(self, event: str, lower_bound: str | None = None) -> str:
        if self.settings.include_bots:
            return "TRUE"
        return f"NOT {self.src.is_bot(event, lower_bound)}"

    def update(self) -> ModelResult:
        watermark, processed = self.read_state()
        new_events = self.collect_new(watermark)
        if new_events == 0 and not self.full:
            self.cleanup()
            return ModelResult(0, 0, 0, 0, False, 0.0)

        self.map_users()
        orders = self.transactions()
        sessions = self.sessions_to_rebuild()
        self.page_views()
        self.sessions()
        self.stitch()
        self.order_by_user()
        users = self.users()
        self.mark_processed(watermark, processed + new_events)
        self.cleanup()
        return ModelResult(new_events, sessions, orders, users, self.full, 0.0)

    def read_state(self) -> tuple[datetime | None, int]:
        rows = self.wh.execute(
            "SELECT include_bots, heartbeat_s, watermark, events_processed "
            f"FROM {_D}.model_state"
        )
        settings = self.settings
        if rows:
            include_bots, heartbeat_s, watermark, processed = rows[0]
            same = (bool(include_bots), int(heartbeat_s)) == (
                settings.include_bots,
                settings.heartbeat_s,
            )
            if same and not settings.full_refresh:
                return watermark, int(processed)
            log.info("Rebuilding the models from scratch (settings changed or asked)")
        self.full = True
        for table in (*MODEL_TABLES, *STATE_TABLES):
            self.sql(f"DELETE FROM {_D}.{table}")
        return None, 0

    def collect_new(self, watermark: datetime | None) -> int:
        arrival = "COALESCE(e.etl_tstamp, e.collector_tstamp)"
        where = "TRUE"
        if watermark is not None:
            cutoff = _tstamp(watermark - timedelta(seconds=self.settings.lookback_s))
            # The arrival test spelled out rather than on the COALESCE, so
            # that DuckDB filters the scan on etl_tstamp before reading the
            # other columns (a third of the time at 10M events).
            where = (
                f"(e.etl_tstamp >= {cutoff} OR (e.etl_tstamp IS NULL "
                f"AND e.collector_tstamp >= {cutoff})) AND NOT EXISTS (SELECT 1 FROM "
                f"{_D}.processed_events p WHERE p.arrival >= {cutoff} "
                "AND p.event_id = CAST(e.event_id AS VARCHAR))"
            )
        self.temp(
            "_pl_new",
            f"""SELECT e.event_id AS root_id, CAST(e.event_id AS VARCHAR) AS event_id,
                e.collector_tstamp, {arrival} AS arrival,
                COALESCE(e.derived_tstamp, e.collector_tstamp) AS tstamp,
                e.event, e.domain_sessionid, e.domain_userid, e.user_id,
                e.tr_orderid, e.ti_orderid, {self.not_bot("e")} AS wanted
            FROM atomic.events e WHERE {where}""",
        )
        return self.count("_pl_new")

    def map_users(self) -> None:
        """The latest user_id of each domain_userid, and the cookies whose
        stitched id changes (``_pl_map``)."""
        self.temp(
            "_pl_map",
            f"""SELECT n.domain_userid, n.user_id AS new_user_id, n.tstamp,
                n.event_id, o.user_id AS old_user_id
            FROM (SELECT domain_userid, user_id, tstamp, event_id,
                    ROW_NUMBER() OVER (PARTITION BY domain_userid
                        ORDER BY tstamp DESC, event_id DESC) AS rn
                  FROM _pl_new WHERE user_id IS NOT NULL
                    AND domain_userid IS NOT NULL AND wanted) n
            LEFT JOIN {_D}.user_mapping o ON o.domain_userid = n.domain_userid
            WHERE n.rn = 1 AND (o.domain_userid IS NULL OR n.tstamp > o.mapped_tstamp
                OR (n.tstamp = o.mapped_tstamp AND n.event_id > o.mapped_event_id))""",
        )
        self.sql(
            f"DELETE FROM {_D}.user_mapping WHERE domain_userid IN "
            "(SELECT domain_userid FROM _pl_map)",
            f"INSERT INTO {_D}.user_mapping SELECT domain_userid, new_user_id, "
            "tstamp, event_id FROM _pl_map",
        )

    def transactions(self) -> int:
        orders = [
            "SELECT tr_orderid AS order_id FROM _pl_new "
            "WHERE event = 'transaction' AND tr_orderid IS NOT NULL",
            "SELECT ti_orderid FROM _pl_new "
            "WHERE event = 'transaction_item' AND ti_orderid IS NOT NULL",
        ]
        if self.src.has_ecommerce():
            orders.append(
                "SELECT CAST(t.transaction_id AS VARCHAR) FROM "
                f"{self.wh.child_table(ECOMMERCE_TRANSACTION)} t "
                "JOIN _pl_new n ON t.root_id = n.root_id "
                "AND t.root_tstamp = n.collector_tstamp"
            )
        self.temp("_pl_orders", " UNION ".join(orders))
        self.temp(
            "_pl_order_sessions",
            f"SELECT session_id FROM {_D}.transactions "
            f"WHERE session_id IS NOT NULL AND order_id {_ORDERS_IN}",
        )
        self.sql(
            f"DELETE FROM {_D}.transactions WHERE order_id {_ORDERS_IN}",
            f"DELETE FROM {_D}.transaction_items WHERE order_id {_ORDERS_IN}",
        )
        if self.src.has_ecommerce() and not self.full:
            # The transaction entities of these orders, first: joined to
            # atomic.events before the order filter, they all were (0.2 s of
            # scan at 10M events).
            self.temp(
                "_pl_txn",
                f"SELECT * FROM {self.wh.child_table(ECOMMERCE_TRANSACTION)} "
                f"WHERE CAST(transaction_id AS VARCHAR) {_ORDERS_IN}",
            )
            self.entities = "_pl_txn"
        self.sql(self._insert_transactions(), self._insert_items())
        self.sql(
            "INSERT INTO _pl_order_sessions SELECT session_id FROM "
            f"{_D}.transactions WHERE session_id IS NOT NULL AND order_id {_ORDERS_IN}"
        )
        return self.count("_pl_orders")

    def _insert_transactions(self) -> str:
        converted = "(e.base_currency IS NOT NULL AND e.tr_total_base IS NOT NULL)"
        common = (
            "CAST(e.event_id AS VARCHAR) AS event_id, "
            "COALESCE(e.derived_tstamp, e.collector_tstamp) AS tstamp, "
            "e.collector_tstamp, e.app_id, e.domain_sessionid AS session_id, "
            "e.domain_userid, e.user_id"
        )
        parts = [
            f"""SELECT e.tr_orderid AS order_id, 'tr' AS source, {common},
                CASE WHEN {converted} THEN e.tr_total_base ELSE e.tr_total END
                    AS revenue,
                CASE WHEN {converted} THEN e.base_currency ELSE e.tr_currency END
                    AS currency,
                CASE WHEN {converted} THEN e.tr_tax_base ELSE e.tr_tax END AS tax,
                CASE WHEN {converted} THEN e.tr_shipping_base ELSE e.tr_shipping END
                    AS shipping,
                e.tr_affiliation AS affiliation,
                CAST(NULL AS VARCHAR) AS payment_method,
                e.tr_city AS city, e.tr_state AS state, e.tr_country AS country
            FROM atomic.events e WHERE e.event = 'transaction'
                AND e.tr_orderid {_ORDERS_IN} AND {self.not_bot("e")}"""
        ]
        if self.src.has_ecommerce():
            c = self.src.ecommerce_transaction_columns()
            parts.append(
                f"""SELECT CAST(t.transaction_id AS VARCHAR), 'snowplow_ecommerce',
                    {common}, {c["revenue"]}, {c["currency"]}, {c["tax"]},
                    {c["shipping"]}, CAST(NULL AS VARCHAR), {c["payment_method"]},
                    CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR)
                FROM {self.src.ecommerce_transactions(self.entities)}
                WHERE CAST(t.transaction_id AS VARCHAR) {_ORDERS_IN}
                    AND {self.not_bot("e")}"""
            )
        # An order sent twice (a reloaded confirmation page) counts once:
        # its first event wins.
        return f"""INSERT INTO {_D}.transactions ({names(TRANSACTIONS)})
            SELECT {names(TRANSACTIONS)} FROM (
                SELECT x.*, ROW_NUMBER() OVER (PARTITION BY order_id
                    ORDER BY tstamp, event_id) AS rn
                FROM ({" UNION ALL ".join(parts)}) x) y
            WHERE rn = 1"""

    def _insert_items(self) -> str:
        converted = "(e.base_currency IS NOT NULL AND e.ti_price_base IS NOT NULL)"
        common = (
            "CAST(e.event_id AS VARCHAR) AS event_id, "
            "COALESCE(e.derived_tstamp, e.collector_tstamp) AS tstamp, "
            "e.domain_sessionid AS session_id"
        )
        parts = [
            f"""SELECT e.ti_orderid AS order_id, e.ti_sku AS sku, e.ti_name AS name,
                e.ti_category AS category,
                CASE WHEN {converted} THEN e.ti_price_base ELSE e.ti_price END AS price,
                COALESCE(e.ti_quantity, 1) AS quantity,
                CASE WHEN {converted} THEN e.base_currency ELSE e.ti_currency END
                    AS currency,
                'tr' AS source, {common}
            FROM atomic.events e WHERE e.event = 'transaction_item'
                AND e.ti_orderid {_ORDERS_IN} AND {self.not_bot("e")}"""
        ]
        if self.src.has_ecommerce_products():
            c = self.src.ecommerce_product_columns()
            parts.append(
                f"""SELECT CAST(t.transaction_id AS VARCHAR), {c["sku"]}, {c["name"]},
                    {c["category"]}, {c["price"]}, {c["quantity"]}, {c["currency"]},
                    'snowplow_ecommerce', {common}
                FROM {self.src.ecommerce_products(self.entities)}
                WHERE CAST(t.transaction_id AS VARCHAR) {_ORDERS_IN}
                    AND {self.not_bot("e")}"""
            )
        columns = [name for name, _ in TRANSACTION_ITEMS]
        select = ", ".join(
            f"CAST(price * quantity AS {MONEY})" if name == "item_revenue" else name
            for name in columns
        )
        return f"""INSERT INTO {_D}.transaction_items ({", ".join(columns)})
            SELECT {select} FROM (
                SELECT x.*, ROW_NUMBER() OVER (PARTITION BY order_id, sku
                    ORDER BY tstamp, event_id) AS rn
                FROM ({" UNION ALL ".join(parts)}) x) y
            WHERE rn = 1"""

    def sessions_to_rebuild(self) -> int:
        """``_pl_sessions``, their events in ``_pl_events``; their old rows
        deleted, their old users noted in ``_pl_users``."""
        self.temp(
            "_pl_sessions",
            "SELECT domain_sessionid AS session_id FROM _pl_new "
            "WHERE domain_sessionid IS NOT NULL "
            "UNION SELECT session_id FROM _pl_order_sessions",
        )
        if not self.full:
            self.lower_bound = self._earliest_event()
        self.temp(
            "_pl_users",
            f"SELECT stitched_user_id FROM {_D}.sessions WHERE {_SESSIONS_IN}",
        )
        self.temp(
            "_pl_pv_users",
            f"SELECT stitched_user_id FROM {_D}.page_views WHERE {_SESSIONS_IN}",
        )
        self.sql(
            f"DELETE FROM {_D}.sessions WHERE {_SESSIONS_IN}",
            f"DELETE FROM {_D}.page_views WHERE {_SESSIONS_IN}",
        )
        self._collect_session_events()
        return self.count("_pl_sessions")

    def _earliest_event(self) -> str | None:
        new = self.wh.scalar(
            "SELECT MIN(collector_tstamp) FROM _pl_new "
            "WHERE domain_sessionid IS NOT NULL"
        )
        old = self.wh.scalar(
            f"SELECT MIN(min_collector_tstamp) FROM {_D}.sessions WHERE {_SESSIONS_IN}"
        )
        found = [value for value in (new, old) if value is not None]
        return _tstamp(min(found)) if found else None

    def _collect_session_events(self) -> None:
        bound = self.lower_bound
        only = None
        if not self.full:
            # The web_page contexts of these events only: grouping all those
            # since the bound costs seconds when an old session is re-derived.
            only = (
                "SELECT k.event_id FROM atomic.events k "
                "WHERE k.domain_sessionid IN (SELECT session_id FROM _pl_sessions)"
            )
            if bound is not None:
                only += f" AND k.collector_tstamp >= {bound}"
        join, page_view_id = self.src.page_view_join("e", bound, only)
        where = ["e.domain_sessionid IS NOT NULL", self.not_bot("e", bound)]
        if bound is not None:
            where.append(f"e.collector_tstamp >= {bound}")
        if not self.full:
            where.append("e.domain_sessionid IN (SELECT session_id FROM _pl_sessions)")
        self.temp(
            "_pl_events",
            f"""SELECT CAST(e.event_id AS VARCHAR) AS event_id, e.collector_tstamp,
                COALESCE(e.derived_tstamp, e.collector_tstamp) AS tstamp, e.event,
                e.app_id, e.domain_sessionid AS session_id, e.domain_sessionidx,
                e.domain_userid, e.network_userid, e.user_id,
                {page_view_id} AS page_view_id,
                e.page_url, e.page_urlhost, e.page_urlpath, e.page_title,
                e.page_referrer, e.refr_medium, e.refr_source, e.refr_term,
                e.mkt_medium, e.mkt_source, e.mkt_term, e.mkt_content, e.mkt_campaign,
                e.pp_yoffset_max, e.doc_height, e.br_viewheight, e.br_family,
                e.br_name, e.os_family, e.os_name, e.dvce_type, e.dvce_ismobile,
                e.geo_country, e.geo_region_name, e.geo_city
            FROM atomic.events e {join}
            WHERE {" AND ".join(where)}""",
        )

    def page_views(self) -> None:
        heartbeat = self.settings.heartbeat_s
        self.temp(
            "_pl_pv",
            """SELECT * FROM (
                SELECT v.*, ROW_NUMBER() OVER (PARTITION BY session_id, page_view_id
                    ORDER BY tstamp, event_id) AS rn
                FROM _pl_events v WHERE event = 'page_view') x
            WHERE rn = 1""",
        )
        self.temp(
            "_pl_pings",
            """SELECT session_id, page_view_id, COUNT(*) AS pings,
                MAX(tstamp) AS last_ping, MAX(pp_yoffset_max) AS y_max,
                MAX(doc_height) AS doc_height, MAX(br_viewheight) AS view_height
            FROM _pl_events WHERE event = 'page_ping'
            GROUP BY session_id, page_view_id""",
        )
        values = {name: f"j.{name}" for name, _ in PAGE_VIEWS}
        values.update(
            session_id="j.session_id",
            stitched_user_id=_PV_STITCHED.format(pv="j"),
            page_view_in_session_index="j.idx",
            page_views_in_session="j.n_pv",
            start_tstamp="j.tstamp",
            end_tstamp="GREATEST(j.tstamp, COALESCE(j.last_ping, j.tstamp))",
            page_pings="j.n_pings",
            engaged_time_s=f"j.n_pings * {heartbeat}",
            doc_height="j.dh",
            scroll_depth_pct="""CASE WHEN j.n_pings > 0 AND j.dh > 0
                AND j.y_max IS NOT NULL THEN CAST(LEAST(100, FLOOR(
                    CAST(100 * (j.y_max + COALESCE(j.vh, 0)) AS FLOAT8) / j.dh))
                    AS INTEGER) END""",
            is_entry="j.idx = 1",
            is_exit="j.idx = j.n_pv",
            prev_path_view_in_session="j.prev_s",
            prev_path_view_in_session_app="j.prev_sa",
        )
        # The previous view of the path by the same user, among the rows
        # inserted here: all of them in a full build; an update corrects them
        # for its users afterwards (order_by_user).
        by_user = _previous_by_user("k")
        inner = [
            f"{values[name]} AS {name}" for name, _ in PAGE_VIEWS if name not in by_user
        ]
        outer = [by_user.get(name, f"k.{name}") for name, _ in PAGE_VIEWS]
        in_session = "PARTITION BY pv.session_id, pv.page_urlpath"
        order = "ORDER BY pv.tstamp, pv.page_view_id"
        self.sql(
            f"""INSERT INTO {_D}.page_views ({names(PAGE_VIEWS)})
            SELECT {", ".join(outer)} FROM (
            SELECT {", ".join(inner)}
            FROM (SELECT pv.*, COALESCE(p.pings, 0) AS n_pings, p.last_ping,
                    p.y_max, GREATEST(pv.doc_height, p.doc_height) AS dh,
                    COALESCE(p.view_height, pv.br_viewheight) AS vh,
                    ROW_NUMBER() OVER (PARTITION BY pv.session_id
                        ORDER BY pv.tstamp, pv.page_view_id) AS idx,
                    COUNT(*) OVER (PARTITION BY pv.session_id) AS n_pv,
                    LAG(pv.tstamp) OVER ({in_session} {order}) AS prev_s,
                    LAG(pv.tstamp) OVER ({in_session}, pv.app_id {order}) AS prev_sa
                  FROM _pl_pv pv LEFT JOIN _pl_pings p
                    ON p.session_id = pv.session_id
                    AND p.page_view_id = pv.page_view_id) j
            LEFT JOIN {_D}.user_mapping m ON m.domain_userid = j.domain_userid) k"""
        )

    def order_by_user(self) -> None:
        """Recompute the previous view of each path by the same user for the
        users whose page views changed (``_pl_pv_users``: the ones of the
        deleted, the inserted and the re-stitched page views), and the
        previous session in each report's group for the users whose sessions
        changed. A full build has nothing to do: its inserts saw every row,
        already stitched with the complete mapping, so stitching changed
        none."""
        if self.full:
            return
        self.sql(
            # Inserted: stitched as in page_views() (after map_users, so
            # stitch() changed none of them).
            "INSERT INTO _pl_pv_users SELECT "
            f"{_PV_STITCHED.format(pv='pv')} FROM _pl_pv pv "
            f"LEFT JOIN {_D}.user_mapping m ON m.domain_userid = pv.domain_userid",
            # Re-stitched: a page view of a remapped cookie was stitched to
            # its former user_id or to the cookie, and is now to the new one.
            "INSERT INTO _pl_pv_users SELECT COALESCE(old_user_id, domain_userid) "
            "FROM _pl_map",
            "INSERT INTO _pl_pv_users SELECT new_user_id FROM _pl_map",
        )
        self._correct_by_user(
            "page_views",
            ("session_id", "page_view_id"),
            _previous_by_user("v"),
            "_pl_pv_users",
        )
        # _pl_users: the users of the deleted, inserted and re-stitched
        # sessions (sessions_to_rebuild and stitch).
        self._correct_by_user(
            "sessions", ("session_id",), _previous_session_by_user("v"), "_pl_users"
        )

    def _correct_by_user(
        self, table: str, keys: tuple[str, ...], by_user: dict[str, str], users: str
    ) -> None:
        """Set the ``by_user`` columns (name -> window over alias ``v``) of
        ``table`` for the rows of the users in ``users``. The rows whose
        values change are found first: usually none (new visitors' rows were
        all in the insert), and then the UPDATE, which reads the whole table,
        is not run."""
        changed = " OR ".join(f"{name} IS DISTINCT FROM was_{name}" for name in by_user)
        values = ", ".join(
            f"{sql} AS {name}, v.{name} AS was_{name}" for name, sql in by_user.items()
        )
        found = f"_pl_{table}_order"
        self.temp(
            found,
            f"""SELECT * FROM (SELECT {", ".join(f"v.{k}" for k in keys)}, {values}
                FROM {_D}.{table} v WHERE v.stitched_user_id IN
                    (SELECT stitched_user_id FROM {users})) y
            WHERE {changed}""",
        )
        if self.count(found) == 0:
            return
        self.sql(
            f"""UPDATE {_D}.{table} AS x SET {
                ", ".join(f"{name} = y.{name}" for name in by_user)
            }
            FROM {found} y WHERE {" AND ".join(f"x.{k} = y.{k}" for k in keys)}"""
        )

    def sessions(self) -> None:
        landing = {name: f"l.{name}" for name, _ in SESSIONS}
        landing.update(
            user_id="u.user_id",
            stitched_user_id="COALESCE(m.user_id, l.domain_userid, u.user_id, "
            "a.session_id)",
            start_tstamp="a.start_tstamp",
            end_tstamp="a.end_tstamp",
            min_collector_tstamp="a.min_ct",
            duration_s="CAST(EXTRACT(EPOCH FROM a.end_tstamp - a.start_tstamp) "
            "AS FLOAT8)",
            events="a.events",
            page_views="COALESCE(p.page_views, 0)",
            engaged_time_s="COALESCE(p.engaged, 0)",
            entry_page_url="p.entry_url",
            entry_page_path="p.entry_path",
            exit_page_url="p.exit_url",
            exit_page_path="p.exit_path",
            channel=channel_sql("l"),
            is_bounce="COALESCE(p.page_views, 0) = 1",
            transactions="COALESCE(t.orders, 0)",
            revenue="COALESCE(t.revenue, 0)",
        )
        # The landing event: the session's first page view, or its first event
        # when it has none; acquisition and device come from it.
        # The previous session of the same user in each report's group,
        # among the sessions inserted here (order_by_user corrects them in an
        # update).
        by_user = _previous_session_by_user("k")
        inner = [
            f"{landing[name]} AS {name}" for name, _ in SESSIONS if name not in by_user
        ]
        outer = [by_user.get(name, f"k.{name}") for name, _ in SESSIONS]
        self.sql(
            f"""INSERT INTO {_D}.sessions ({names(SESSIONS)})
            SELECT {", ".join(outer)} FROM (
            SELECT {", ".join(inner)}
            FROM (SELECT session_id, MIN(tstamp) AS start_tstamp,
                    MAX(tstamp) AS end_tstamp, MIN(collector_tstamp) AS min_ct,
                    COUNT(*) AS events
                  FROM _pl_events GROUP BY session_id) a
            JOIN (SELECT v.*, ROW_NUMBER() OVER (PARTITION BY session_id
                    ORDER BY CASE WHEN event = 'page_view' THEN 0 ELSE 1 END,
                        tstamp, event_id) AS rn
                  FROM _pl_events v) l ON l.session_id = a.session_id AND l.rn = 1
            LEFT JOIN (SELECT session_id, user_id, ROW_NUMBER() OVER (
                    PARTITION BY session_id ORDER BY tstamp DESC, event_id DESC) AS rn
                  FROM _pl_events WHERE user_id IS NOT NULL) u
                ON u.session_id = a.session_id AND u.rn = 1
            LEFT JOIN (SELECT session_id, COUNT(*) AS page_views,
                    SUM(engaged_time_s) AS engaged,
                    MAX(CASE WHEN is_entry THEN page_url END) AS entry_url,
                    MAX(CASE WHEN is_entry THEN page_urlpath END) AS entry_path,
                    MAX(CASE WHEN is_exit THEN page_url END) AS exit_url,
                    MAX(CASE WHEN is_exit THEN page_urlpath END) AS exit_path
                  FROM {_D}.page_views WHERE {_SESSIONS_IN} GROUP BY session_id) p
                ON p.session_id = a.session_id
            LEFT JOIN (SELECT session_id, COUNT(*) AS orders, SUM(revenue) AS revenue
                  FROM {_D}.transactions WHERE {_SESSIONS_IN} GROUP BY session_id) t
                ON t.session_id = a.session_id
            LEFT JOIN {_D}.user_mapping m ON m.domain_userid = l.domain_userid) k"""
        )

    def stitch(self) -> None:
        """Older page views and sessions of cookies that got a user_id."""
        changed = (
            "_pl_map c WHERE {t}.domain_userid = c.domain_userid "
            "AND {t}.stitched_user_id IS DISTINCT FROM c.new_user_id"
        )
        for table in ("page_views", "sessions"):
            self.sql(
                f"UPDATE {_D}.{table} AS x SET stitched_user_id = c.new_user_id "
                f"FROM {changed.format(t='x')}"
            )
        self.sql(
            "INSERT INTO _pl_users SELECT COALESCE(old_user_id, domain_userid) "
            "FROM _pl_map",
            "INSERT INTO _pl_users SELECT new_user_id FROM _pl_map",
            f"INSERT INTO _pl_users SELECT stitched_user_id FROM {_D}.sessions "
            f"WHERE {_SESSIONS_IN}",
        )

    def users(self) -> int:
        keys = "stitched_user_id IN (SELECT stitched_user_id FROM _pl_users)"
        self.sql(
            f"DELETE FROM {_D}.users WHERE {keys}",
            f"""INSERT INTO {_D}.users ({names(USERS)})
            SELECT a.stitched_user_id,
                CASE WHEN a.logged_in THEN a.stitched_user_id END, a.cookies,
                a.first_seen, a.last_seen, a.sessions, a.page_views, a.engaged,
                a.orders, a.revenue, f.session_id, f.channel
            FROM (SELECT stitched_user_id, BOOL_OR(user_id IS NOT NULL) AS logged_in,
                    COUNT(DISTINCT domain_userid) AS cookies,
                    MIN(start_tstamp) AS first_seen, MAX(end_tstamp) AS last_seen,
                    COUNT(*) AS sessions, SUM(page_views) AS page_views,
                    SUM(engaged_time_s) AS engaged, SUM(transactions) AS orders,
                    SUM(revenue) AS revenue
                  FROM {_D}.sessions WHERE {keys} GROUP BY stitched_user_id) a
            JOIN (SELECT stitched_user_id, session_id, channel,
                    ROW_NUMBER() OVER (PARTITION BY stitched_user_id
                        ORDER BY start_tstamp, session_id) AS rn
                  FROM {_D}.sessions WHERE {keys}) f
                ON f.stitched_user_id = a.stitched_user_id AND f.rn = 1""",
        )
        return int(
            self.wh.scalar("SELECT COUNT(DISTINCT stitched_user_id) FROM _pl_users")
        )

    def mark_processed(self, watermark: datetime | None, processed: int) -> None:
        latest = self.wh.scalar("SELECT MAX(arrival) FROM _pl_new")
        if watermark is None or (latest is not None and latest > watermark):
            watermark = latest
        self.sql(
            f"INSERT INTO {_D}.processed_events SELECT event_id, arrival FROM _pl_new"
        )
        if watermark is not None:
            cutoff = watermark - timedelta(seconds=self.settings.lookback_s)
            self.sql(
                f"DELETE FROM {_D}.processed_events WHERE arrival < {_tstamp(cutoff)}"
            )
        settings = self.settings
        self.sql(
            f"DELETE FROM {_D}.model_state",
            f"INSERT INTO {_D}.model_state VALUES ("
            f"{literal(settings.include_bots)}, {settings.heartbeat_s}, "
            f"{settings.lookback_s}, "
            f"{_tstamp(watermark) if watermark else 'NULL'}, {processed}, "
            "CURRENT_TIMESTAMP)",
        )

    def cleanup(self) -> None:
        for name in (
            "_pl_new",
            "_pl_map",
            "_pl_orders",
            "_pl_txn",
            "_pl_order_sessions",
            "_pl_sessions",
            "_pl_users",
            "_pl_pv_users",
            "_pl_page_views_order",
            "_pl_sessions_order",
            "_pl_events",
            "_pl_pv",
            "_pl_pings",
        ):
            self.sql(f"DROP TABLE IF EXISTS {name}")
