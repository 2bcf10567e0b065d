"""SQL for what the models read from ``atomic``: the bot flag, the page view
id, and the two kinds of ecommerce events.

Shredded tables exist only once an event has brought their schema, and their
columns only once a value has brought them (without an Iglu resolver), so each
piece of SQL is built for the tables and columns this database has.
"""

from __future__ import annotations

from dataclasses import dataclass

from plowline.analytics.tables import MONEY
from plowline.analytics.warehouse import Warehouse

WEB_PAGE = "com_snowplowanalytics_snowplow_web_page_1"
# (table, column, the value that means "a bot")
BOT_TABLES = (
    ("io_plowline_bot_detection_1", "bot"),
    ("com_snowplowanalytics_snowplow_bot_detection_1", "bot"),
    ("com_iab_snowplow_spiders_and_robots_1", "spider_or_robot"),
)
ECOMMERCE_ACTION = (
    "com_snowplowanalytics_snowplow_ecommerce_snowplow_ecommerce_action_1"
)
ECOMMERCE_TRANSACTION = "com_snowplowanalytics_snowplow_ecommerce_transaction_1"
ECOMMERCE_PRODUCT = "com_snowplowanalytics_snowplow_ecommerce_product_1"


def _joined(child: str, event: str) -> str:
    return (
        f"{child}.root_id = {event}.event_id "
        f"AND {child}.root_tstamp = {event}.collector_tstamp"
    )


def _since(column: str, lower_bound: str | None) -> str:
    return "" if lower_bound is None else f" AND {column} >= {lower_bound}"


@dataclass(frozen=True)
class Sources:
    """The SQL pieces for one database, as it is now."""

    wh: Warehouse

    def is_bot(self, event: str, lower_bound: str | None = None) -> str:
        """A boolean expression: the event ``event`` (an alias of
        atomic.events) was labelled a bot by an enrichment or is a robot by
        its user agent. ``lower_bound`` limits the child rows read to
        ``root_tstamp >= lower_bound`` (an SQL expression)."""
        tests = [f"COALESCE({event}.br_type = 'Robot', FALSE)"]
        for table, column in BOT_TABLES:
            columns = self.wh.columns(table)
            if columns is None or column not in columns:
                continue
            child = self.wh.child_table(table)
            tests.append(
                f"EXISTS (SELECT 1 FROM {child} b WHERE {_joined('b', event)} "
                f"AND CAST(b.{column} AS VARCHAR) = 'true'"
                f"{_since('b.root_tstamp', lower_bound)})"
            )
        return "(" + " OR ".join(tests) + ")"

    def page_view_join(
        self, event: str, lower_bound: str | None, only: str | None = None
    ) -> tuple[str, str]:
        """A LEFT JOIN clause bringing the web_page context's id as ``wp.id``,
        and the page view id expression (the event id where there is none).
        ``only``, a SELECT of event ids, limits the contexts read to those
        events' (else all since ``lower_bound`` are grouped before the join)."""
        own_id = f"CAST({event}.event_id AS VARCHAR)"
        columns = self.wh.columns(WEB_PAGE)
        if columns is None or "id" not in columns:
            return "", own_id
        child = self.wh.child_table(WEB_PAGE)
        restrict = "" if only is None else f" AND root_id IN ({only})"
        # One web_page context per event is the rule; MIN() keeps one if not.
        join = (
            f"LEFT JOIN (SELECT root_id, root_tstamp, "
            f"MIN(CAST(id AS VARCHAR)) AS id FROM {child} "
            f"WHERE TRUE{_since('root_tstamp', lower_bound)}{restrict} "
            f"GROUP BY root_id, root_tstamp) wp ON {_joined('wp', event)}"
        )
        return join, f"COALESCE(wp.id, {own_id})"

    def _column(self, table: str, alias: str, column: str, cast: str) -> str:
        columns = self.wh.columns(table) or {}
        if column not in columns:
            return f"CAST(NULL AS {cast})"
        value = f"{alias}.{column}"
        if cast == MONEY:
            # An amount too large for the money type is unknown, not an error
            # that would stop the models.
            return (
                f"CASE WHEN ABS(CAST({value} AS FLOAT8)) < 1e36 "
                f"THEN CAST({value} AS {cast}) END"
            )
        return f"CAST({value} AS {cast})"

    def has_ecommerce(self) -> bool:
        action = self.wh.columns(ECOMMERCE_ACTION) or {}
        transaction = self.wh.columns(ECOMMERCE_TRANSACTION) or {}
        return "type" in action and "transaction_id" in transaction

    def ecommerce_transactions(self, entities: str | None = None) -> str:
        """Rows (event alias e, transaction entity t) of the self-describing
        ecommerce transactions: a snowplow_ecommerce_action of type
        ``transaction`` with its transaction entity. ``entities`` is a table
        holding some of the transaction entities' rows, to read instead of
        them all."""
        action = self.wh.child_table(ECOMMERCE_ACTION)
        txn = entities or self.wh.child_table(ECOMMERCE_TRANSACTION)
        return (
            f"{txn} t JOIN atomic.events e ON {_joined('t', 'e')} "
            f"JOIN {action} a ON a.root_id = t.root_id "
            "AND a.root_tstamp = t.root_tstamp AND a.type = 'transaction'"
        )

    def ecommerce_transaction_columns(self) -> dict[str, str]:
        col = self._column
        table = ECOMMERCE_TRANSACTION
        return {
            "revenue": col(table, "t", "revenue", MONEY),
            "currency": col(table, "t", "currency", "VARCHAR"),
            "tax": col(table, "t", "tax", MONEY),
            "shipping": col(table, "t", "shipping", MONEY),
            "payment_method": col(table, "t", "payment_method", "VARCHAR"),
        }

    def has_ecommerce_products(self) -> bool:
        product = self.wh.columns(ECOMMERCE_PRODUCT) or {}
        return self.has_ecommerce() and "id" in product

    def ecommerce_products(self, entities: str | None = None) -> str:
        """Product entities (alias p) on the transaction events of
        :meth:`ecommerce_transactions`."""
        product = self.wh.child_table(ECOMMERCE_PRODUCT)
        return (
            f"{self.ecommerce_transactions(entities)} "
            f"JOIN {product} p ON p.root_id = t.root_id "
            "AND p.root_tstamp = t.root_tstamp"
        )

    def ecommerce_product_columns(self) -> dict[str, str]:
        col = self._column
        table = ECOMMERCE_PRODUCT
        return {
            "sku": col(table, "p", "id", "VARCHAR"),
            "name": col(table, "p", "name", "VARCHAR"),
            "category": col(table, "p", "category", "VARCHAR"),
            "price": col(table, "p", "price", MONEY),
            "quantity": f"COALESCE({col(table, 'p', 'quantity', 'INTEGER')}, 1)",
            "currency": col(table, "p", "currency", "VARCHAR"),
        }
