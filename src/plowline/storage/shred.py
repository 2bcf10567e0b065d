"""Shredding: self-describing JSON of a batch into one child table per schema.

Every entity of ``unstruct_event``, ``contexts`` and ``derived_contexts``
becomes one row of the table ``<vendor>_<name>_<model>`` (see
:func:`table_name`), with Snowplow's fixed columns (``FIXED_COLUMNS``) and one
column per top-level property of the entity, named in snake_case. Nested
objects and arrays are stored as JSON text. A column's kind (``ShredKind``) is
taken from the JSON Schema when an Iglu resolver is given, else from the values
seen; :func:`plan_columns` reconciles it with the columns a store already has
(a new minor version adds columns; a kind that no longer fits is widened).

Each distinct JSON text of a column is parsed once per batch, and its rows are
expanded with Arrow ``take``, so repeated contexts cost little. A child table's
rows come out in the order of their events.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from plowline.errors import BadInputError, PlowlineError
from plowline.iglu.core import IgluSyntaxError, SchemaKey
from plowline.iglu.resolver import Resolver
from plowline.storage.batch import show, where

log = logging.getLogger(__name__)

ShredKind = Literal["bool", "int", "float", "text"]

FIXED_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("schema_vendor", pa.string()),
    ("schema_name", pa.string()),
    ("schema_format", pa.string()),
    ("schema_version", pa.string()),
    ("root_id", pa.string()),
    ("root_tstamp", pa.timestamp("us")),
    ("ref_root", pa.string()),
    ("ref_tree", pa.string()),
    ("ref_parent", pa.string()),
)
FIXED_NAMES = frozenset(name for name, _ in FIXED_COLUMNS)
ARROW_KINDS: dict[ShredKind, pa.DataType] = {
    "bool": pa.bool_(),
    "int": pa.int64(),
    "float": pa.float64(),
    "text": pa.string(),
}
JSON_COLUMNS = ("unstruct_event", "contexts", "derived_contexts")
_INT64 = (-(2**63), 2**63 - 1)
_CAMEL = re.compile(r"([^A-Z_])([A-Z])")
_OTHER = re.compile(r"[^a-z0-9_]")
_SCHEMA_TYPES: dict[str, ShredKind] = {
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "string": "text",
    "object": "text",
    "array": "text",
}


def snake_case(name: str) -> str:
    """``targetUrl`` -> ``target_url``, ``WebPage`` -> ``web_page``."""
    return _OTHER.sub("_", _CAMEL.sub(r"\1_\2", name).lower())


def table_name(vendor: str, name: str, model: int) -> str:
    """Snowplow's child-table name: ``com_snowplowanalytics_snowplow_link_click_1``."""
    return f"{_OTHER.sub('_', vendor.lower())}_{snake_case(name)}_{model}"


def column_name(prop: str) -> str:
    """The column of property ``prop``; the empty name, which no database
    takes as a column name, becomes ``data_``."""
    name = snake_case(prop)
    return f"data_{name}" if name in FIXED_NAMES or not name else name


def json_text(value: object) -> str:
    """Compact JSON text of a value read from JSON. orjson writes at most 254
    levels; deeper values go through the standard library."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except RecursionError:
            raise BadInputError(
                "A JSON value is nested too deeply to be stored."
            ) from None


def join_kinds(a: ShredKind | None, b: ShredKind | None) -> ShredKind | None:
    """The narrowest kind holding both: int and float make float, other
    mixtures make text."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if {a, b} == {"int", "float"}:
        return "float"
    return "text"


def value_kind(value: Any) -> ShredKind | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value <= _INT64[1] else "text"
    if isinstance(value, float):
        return "float"
    return "text"


def convert(value: Any, kind: ShredKind) -> Any:
    """A property value as its column's kind holds it."""
    if value is None:
        return None
    if kind == "text":
        return value if isinstance(value, str) else json_text(value)
    if kind == "float":
        return float(value)
    return value


@dataclass
class ChildTable:
    """The rows of one child table from one batch, before they are typed."""

    name: str
    # Column kinds in column order: from the schema, then from the values seen.
    schema: dict[str, ShredKind] = field(default_factory=dict)
    seen: dict[str, ShredKind | None] = field(default_factory=dict)
    entities: list[tuple[SchemaKey, dict[str, Any]]] = field(default_factory=list)
    entity_take: list[int] = field(default_factory=list)
    row_take: list[int] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return len(self.row_take)

    @property
    def kinds(self) -> dict[str, ShredKind]:
        """Each property column's kind; a column only ever null is text."""
        kinds: dict[str, ShredKind] = {}
        for column in [*self.schema, *self.seen]:
            kind = join_kinds(self.schema.get(column), self.seen.get(column))
            kinds[column] = kind or "text"
        return kinds

    def to_arrow(
        self, events: pa.Table, kinds: Mapping[str, ShredKind] | None = None
    ) -> pa.Table:
        """The rows as a table: fixed columns, then one per property, each as
        ``kinds`` (the table's final column kinds) says."""
        mine = self.kinds
        kinds = kinds or mine
        # In the events' order (stable: an event's entities keep theirs), so
        # root_id and root_tstamp compress as well as in atomic.events.
        rows = pa.array(self.row_take, pa.int64())
        order = pc.sort_indices(rows)
        rows = rows.take(order)
        take = pa.array(self.entity_take, pa.int64()).take(order)
        keys = [key for key, _ in self.entities]
        names = [key.name for key in keys]
        columns: dict[str, pa.Array] = {
            "schema_vendor": pa.array([k.vendor for k in keys], pa.string()).take(take),
            "schema_name": pa.array(names, pa.string()).take(take),
            "schema_format": pa.array([k.format for k in keys], pa.string()).take(take),
            "schema_version": pa.array(
                [str(k.version) for k in keys], pa.string()
            ).take(take),
            "root_id": events.column("event_id").take(rows),
            "root_tstamp": events.column("collector_tstamp").take(rows),
            "ref_root": _constant("events", len(rows)),
            "ref_tree": pa.array(
                [orjson.dumps(["events", name]).decode() for name in names], pa.string()
            ).take(take),
            "ref_parent": _constant("events", len(rows)),
        }
        for column, kind in kinds.items():
            if column not in mine:
                continue
            values = [convert(data.get(column), kind) for _, data in self.entities]
            columns[column] = pa.array(values, ARROW_KINDS[kind]).take(take)
        return pa.table(columns)


def _constant(text: str, size: int) -> pa.Array:
    return pa.array([text], pa.string()).take(pa.array([0] * size, pa.int64()))


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """What a store does to a child table before inserting a batch's rows."""

    create: bool
    add: dict[str, ShredKind]
    widen: dict[str, ShredKind]
    final: dict[str, ShredKind]


def plan_columns(
    existing: Mapping[str, ShredKind] | None, incoming: Mapping[str, ShredKind]
) -> ColumnPlan:
    """Reconcile a batch's property columns with a table's (None: no table)."""
    if existing is None:
        return ColumnPlan(True, dict(incoming), {}, dict(incoming))
    final = dict(existing)
    add: dict[str, ShredKind] = {}
    widen: dict[str, ShredKind] = {}
    for column, kind in incoming.items():
        if column not in final:
            add[column] = final[column] = kind
            continue
        joined = join_kinds(final[column], kind)
        assert joined is not None
        if joined != final[column]:
            widen[column] = final[column] = joined
    return ColumnPlan(False, add, widen, final)


class _Schemas:
    """Column kinds from JSON Schemas, when a resolver is given."""

    def __init__(self, resolver: Resolver | None) -> None:
        self.resolver = resolver
        self.cache: dict[str, dict[str, ShredKind] | None] = {}

    def kinds(self, key: SchemaKey) -> dict[str, ShredKind] | None:
        if self.resolver is None:
            return None
        uri = str(key)
        if uri not in self.cache:
            try:
                schema = self.resolver.lookup(key)
            except PlowlineError as exc:
                log.warning("No schema for %s (%s): column kinds from values", uri, exc)
                self.cache[uri] = None
            else:
                self.cache[uri] = _kinds_from_schema(schema)
        return self.cache[uri]


def _kinds_from_schema(schema: Any) -> dict[str, ShredKind] | None:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return None
    kinds: dict[str, ShredKind] = {}
    for prop, spec in properties.items():
        types = spec.get("type") if isinstance(spec, dict) else None
        listed = [types] if isinstance(types, str) else list(types or [])
        named = {t for t in listed if t != "null"}
        kind: ShredKind | None = None
        for name in sorted(named):
            kind = join_kinds(kind, _SCHEMA_TYPES.get(name, "text"))
        kinds.setdefault(column_name(prop), kind or "text")
    return kinds


def shred(
    events: pa.Table,
    *,
    resolver: Resolver | None = None,
    source: str | None = None,
    first_line: int = 1,
) -> dict[str, ChildTable]:
    """The child-table rows of a typed batch, by table name."""
    tables: dict[str, ChildTable] = {}
    schemas = _Schemas(resolver)
    for column_name_ in JSON_COLUMNS:
        column = events.column(column_name_)
        if column.null_count == len(column):
            continue
        encoded = pc.dictionary_encode(column).combine_chunks()
        indices = encoded.indices.to_pylist()
        rows_of: dict[int, list[int]] = {}
        for row, index in enumerate(indices):
            if index is not None:
                rows_of.setdefault(index, []).append(row)
        for index, text in enumerate(encoded.dictionary.to_pylist()):
            rows = rows_of.get(index)
            if not rows:
                continue
            try:
                entities = _entities(text, column_name_)
            except ValueError as exc:
                number = first_line + rows[0]
                raise BadInputError(
                    f"{where(source, number)}: field {column_name_} {exc}: "
                    f"{show(text)}. Its batch was not loaded.",
                    source=source,
                    line=number,
                ) from exc
            for key, data in entities:
                table = _table_for(tables, key, schemas)
                entity = len(table.entities)
                table.entities.append((key, _columns(data, table)))
                table.row_take.extend(rows)
                table.entity_take.extend([entity] * len(rows))
    return tables


def _table_for(
    tables: dict[str, ChildTable], key: SchemaKey, schemas: _Schemas
) -> ChildTable:
    name = table_name(key.vendor, key.name, key.version.model)
    table = tables.get(name)
    if table is None:
        table = tables[name] = ChildTable(name)
    from_schema = schemas.kinds(key)
    if from_schema:
        for column, kind in from_schema.items():
            table.schema[column] = join_kinds(table.schema.get(column), kind) or kind
    return table


def _columns(data: dict[str, Any], table: ChildTable) -> dict[str, Any]:
    """An entity's properties by column name; the first property wins when two
    names make one column."""
    out: dict[str, Any] = {}
    for prop, value in data.items():
        column = column_name(prop)
        if out.get(column) is not None:
            continue
        out[column] = value
        table.seen[column] = join_kinds(table.seen.get(column), value_kind(value))
    return out


def _entities(text: str, column: str) -> list[tuple[SchemaKey, dict[str, Any]]]:
    """The (schema, data) pairs of one JSON column's text."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError("is not valid JSON") from exc
    if not isinstance(document, dict) or "data" not in document:
        raise ValueError("is not self-describing JSON")
    items = [document["data"]] if column == "unstruct_event" else document["data"]
    if not isinstance(items, list):
        raise ValueError("has no list of entities in data")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("schema"), str):
            raise ValueError("holds an entity that is not self-describing JSON")
        try:
            key = SchemaKey.parse(item["schema"])
        except IgluSyntaxError as exc:
            raise ValueError(f"names a bad schema ({exc})") from exc
        data = item.get("data")
        out.append((key, data if isinstance(data, dict) else {"data": data}))
    return out
