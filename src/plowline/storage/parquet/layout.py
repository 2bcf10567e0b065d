"""Where a Parquet store keeps what, and how its files are written and read.

A store is a folder::

    DIR/events/collector_date=YYYY-MM-DD/<commit-id>.parquet
    DIR/<child_table>/collector_date=YYYY-MM-DD/<commit-id>.parquet
    DIR/failed_events/failed_date=YYYY-MM-DD/<commit-id>.parquet
    DIR/_tables/<child_table>.json      column kinds of each child table
    DIR/_manifest/<commit-id>.json      one record per committed transaction
    DIR/_staging/<commit-id>/...         files of a commit not yet in place
    DIR/_lock                            held by the one writer

A commit id is the batch id of the manifest entry the transaction recorded,
else ``tx-`` and a random hex string. Names starting with ``_`` or ``.`` are
skipped by Hive, Spark and Trino, and the staged files end in ``.tmp``, so no
reader's glob of ``DIR/<table>/**/*.parquet`` sees anything uncommitted.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from plowline.errors import PlowlineError
from plowline.storage.manifest import MANIFEST_COLUMNS, ManifestEntry
from plowline.storage.shred import ARROW_KINDS, FIXED_COLUMNS, ShredKind

log = logging.getLogger(__name__)

EVENTS_DIR = "events"
FAILED_DIR = "failed_events"
TABLES_DIR = "_tables"
MANIFEST_DIR = "_manifest"
STAGING_DIR = "_staging"
LOCK_FILE = "_lock"
EVENTS_PARTITION = "collector_date"
FAILED_PARTITION = "failed_date"
STAGED_SUFFIX = ".tmp"

# Commit ids are file names: batch ids are hex with a dash and an index.
_COMMIT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_TABLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,254}$")

# zstd; data pages of format 1.0 with PLAIN, dictionary and RLE encodings only,
# and no Arrow schema in the footer, which every Parquet reader understands.
# Timestamps are INT64 TIMESTAMP(MICROS, isAdjustedToUTC=false): UTC wall-clock
# values without a zone, like atomic.events' TIMESTAMP columns. Dictionary
# encoding is chosen per column and file (``dictionary_columns``).
WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 1,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
    "store_schema": False,
}

_MANIFEST_TYPES = {
    "str": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "tstamp": pa.timestamp("us"),
}
MANIFEST_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field(name, _MANIFEST_TYPES[kind], nullable=False)
        for name, kind in MANIFEST_COLUMNS
    ]
)


def check_commit_id(commit_id: str) -> str:
    if not _COMMIT_ID.match(commit_id):
        raise PlowlineError(
            f"Batch id {commit_id!r} cannot name a Parquet file: expected letters, "
            "digits, '-' and '_' only"
        )
    return commit_id


def check_table_name(table: str) -> str:
    if not _TABLE_NAME.match(table) or table in (EVENTS_DIR, FAILED_DIR):
        raise PlowlineError(f"{table!r} cannot be a child table of a Parquet store")
    return table


def child_schema(columns: Mapping[str, ShredKind]) -> pa.Schema:
    """A child table's Arrow schema: the fixed columns (NOT NULL), then these."""
    fixed = [pa.field(name, kind, nullable=False) for name, kind in FIXED_COLUMNS]
    props = [pa.field(name, ARROW_KINDS[kind]) for name, kind in columns.items()]
    return pa.schema(fixed + props)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: missing ones NULL, narrower
    kinds widened (int to float by cast, anything to text as JSON text, the
    form the shredder gives mixed values)."""
    columns = []
    for field in schema:
        index = table.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(index)
        if column.type != field.type:
            column = widen(column, field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def widen(column: pa.ChunkedArray, to: pa.DataType) -> pa.ChunkedArray:
    if pa.types.is_string(to) and not pa.types.is_string(column.type):
        texts = [
            None if value is None else orjson.dumps(value).decode()
            for value in column.to_pylist()
        ]
        return pa.chunked_array([pa.array(texts, pa.string())], pa.string())
    return pc.cast(column, to)


def partitions(table: pa.Table, tstamp_column: str) -> list[tuple[str, pa.Table]]:
    """The rows of each UTC date of a timestamp column, as (YYYY-MM-DD, rows)."""
    if table.num_rows == 0:
        return []
    days = pc.cast(table.column(tstamp_column), pa.date32())
    distinct = pc.unique(days)
    if len(distinct) == 1:
        return [(_day_text(distinct[0].as_py()), table)]
    out = []
    for day in sorted(distinct.to_pylist()):
        out.append(
            (_day_text(day), table.filter(pc.equal(days, pa.scalar(day, pa.date32()))))
        )
    return out


def _day_text(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


# Dictionary-encode a column unless most values of a sample differ: a
# dictionary of unique values (ids, millisecond timestamps) costs more than it
# saves, and the writer's fallback to plain pages keeps that cost.
_SAMPLE_ROWS = 2048
_DISTINCT_SHARE = 0.5


def dictionary_columns(table: pa.Table) -> list[str]:
    sample = table.slice(0, _SAMPLE_ROWS)
    chosen = []
    for name, column in zip(sample.column_names, sample.columns, strict=True):
        if pa.types.is_boolean(column.type):
            continue  # RLE of bits is smaller than any dictionary
        valid = len(column) - column.null_count
        if valid == 0 or pc.count_distinct(column).as_py() <= valid * _DISTINCT_SHARE:
            chosen.append(name)
    return chosen


def write_parquet(table: pa.Table, path: Path, *, durable: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table, path, use_dictionary=dictionary_columns(table), **WRITE_OPTIONS
    )
    if durable:
        fsync_file(path)


def read_parquet(path: Path) -> pa.Table:
    """One file, without partition columns from its path."""
    return pq.ParquetFile(path).read()


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomically(path: Path, document: object, *, durable: bool) -> None:
    """Write to a dot-file beside ``path``, then rename it into place."""
    temporary = path.with_name(f".{path.name}{STAGED_SUFFIX}")
    with open(temporary, "wb") as out:
        out.write(orjson.dumps(document))
        if durable:
            out.flush()
            os.fsync(out.fileno())
    os.replace(temporary, path)
    if durable:
        fsync_dir(path.parent)


def manifest_record(
    commit_id: str, entry: ManifestEntry | None, files: list[str]
) -> dict[str, object]:
    row = None
    if entry is not None:
        row = entry.as_row()
        row["loaded_at"] = entry.loaded_at.isoformat(sep=" ", timespec="microseconds")
    return {"commit": commit_id, "batch": row, "files": files}


def manifest_rows(records: list[dict[str, Any]]) -> pa.Table:
    """The batch entries of manifest records, as ``MANIFEST_SCHEMA`` rows."""
    rows = [record["batch"] for record in records if record.get("batch")]
    if not rows:
        return MANIFEST_SCHEMA.empty_table()
    columns = []
    for field in MANIFEST_SCHEMA:
        values = [row[field.name] for row in rows]
        if pa.types.is_timestamp(field.type):
            columns.append(pc.cast(pa.array(values, pa.string()), field.type))
        else:
            columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=MANIFEST_SCHEMA)
