"""Reading the derived tables back as dicts, for comparisons."""

from __future__ import annotations

from typing import Any

from plowline.analytics import Warehouse
from plowline.analytics.tables import MODEL_TABLES


def table(wh: Warehouse, name: str, key: tuple[str, ...]) -> dict[Any, dict[str, Any]]:
    columns, rows = wh.query(f"SELECT * FROM derived.{name}")
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        index = tuple(record[k] for k in key)
        out[index[0] if len(index) == 1 else index] = record
    return out


KEYS = {
    "page_views": ("page_view_id",),
    "sessions": ("session_id",),
    "users": ("stitched_user_id",),
    "transactions": ("order_id",),
    "transaction_items": ("order_id", "sku"),
}


def snapshot(wh: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    """Every model table, rows sorted: for comparing two builds."""
    result = {}
    for name in MODEL_TABLES:
        _, rows = wh.query(f"SELECT * FROM derived.{name}")
        result[name] = sorted(rows, key=repr)
    return result
