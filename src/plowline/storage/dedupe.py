"""De-duplication of enriched events by event id, Snowplow's way.

Two events with the same ``event_id`` are

- *natural duplicates* when they carry the same ``event_fingerprint`` (or, when
  the fingerprint enrichment is off, the same content: every field except the
  event id and the fields the pipeline sets when it handles a copy — see
  ``VOLATILE_FIELDS``). A tracker that retries sends these. One copy is kept.
- *synthetic duplicates* otherwise: different events that happen to share an
  id. Every one is kept; each copy after the first gets a new event id and a
  ``duplicate`` entity (``{"originalEventId": ...}``) in ``derived_contexts``.

This holds within a batch and against the events a store already has. The new
id is a UUID v5 of the original id and the copy's fingerprint, so the same
copy always gets the same new id, and a retried copy of a synthetic duplicate
is recognised as a natural duplicate of it.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from plowline.enrich.fields import FIELD_NAMES

log = logging.getLogger(__name__)

DUPLICATE_SCHEMA = "iglu:com.snowplowanalytics.snowplow/duplicate/jsonschema/1-0-0"
CONTEXTS_SCHEMA = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"

# Fields that differ between two copies of one tracker request (timestamps of
# receipt and processing, the versions of the components that handled them).
VOLATILE_FIELDS = frozenset(
    {
        "event_id",
        "etl_tstamp",
        "collector_tstamp",
        "dvce_sent_tstamp",
        "derived_tstamp",
        "v_collector",
        "v_etl",
    }
)
_CONTENT_FIELDS = tuple(name for name in FIELD_NAMES if name not in VOLATILE_FIELDS)
_NAMESPACE = uuid.UUID("5b0f3d2e-8c1a-4b7e-9f62-6a4c1d0e9b37")

# Given event ids, the rows a store already holds with those ids (EVENTS_SCHEMA).
Lookup = Callable[[pa.Array], pa.Table]


@dataclass(frozen=True, slots=True)
class Deduped:
    events: pa.Table
    natural_duplicates: int  # copies dropped
    synthetic_duplicates: int  # copies kept under a new id


def dedupe_key(row: Mapping[str, Any]) -> str:
    """What makes two events with one id the same event."""
    fingerprint = row.get("event_fingerprint")
    if fingerprint:
        return f"fingerprint:{fingerprint}"
    digest = hashlib.sha256()
    for name in _CONTENT_FIELDS:
        value = row.get(name)
        digest.update(b"\x00" if value is None else str(value).encode())
        digest.update(b"\x1f")
    return f"content:{digest.hexdigest()}"


def synthetic_id(original_id: str, key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{original_id}\x1f{key}"))


def add_duplicate_context(derived_contexts: str | None, original_id: str) -> str:
    """``derived_contexts`` with a duplicate entity naming the original id."""
    entity = {"schema": DUPLICATE_SCHEMA, "data": {"originalEventId": original_id}}
    if not derived_contexts:
        return orjson.dumps({"schema": CONTEXTS_SCHEMA, "data": [entity]}).decode()
    document = orjson.loads(derived_contexts)
    document.setdefault("data", []).append(entity)
    return orjson.dumps(document).decode()


def id_counts(events: pa.Table) -> pa.StructArray:
    """How often each event id occurs in a batch (``pc.value_counts``): the
    part of :func:`dedupe` that needs no store, which a loader can run
    beforehand, on another thread."""
    return pc.value_counts(events.column("event_id"))


def dedupe(
    events: pa.Table, lookup: Lookup, counts: pa.StructArray | None = None
) -> Deduped:
    """Drop natural duplicates and re-key synthetic ones (see the module text).

    ``lookup`` is called with the batch's distinct ids, and once more with the
    new ids of synthetic duplicates, if there are any. ``counts`` is
    :func:`id_counts` of ``events``, if the caller has it.
    """
    ids = events.column("event_id")
    if counts is None:
        counts = id_counts(events)
    distinct = counts.field("values")
    repeated = pc.filter(distinct, pc.greater(counts.field("counts"), 1))
    stored = lookup(distinct) if len(distinct) else events.schema.empty_table()
    candidates = set(repeated.to_pylist()) | set(stored.column("event_id").to_pylist())
    if not candidates:
        return Deduped(events, 0, 0)

    seen: dict[str, set[str]] = {}
    taken: set[str] = set()
    for row in stored.to_pylist():
        seen.setdefault(row["event_id"], set()).add(dedupe_key(row))
        taken.add(row["event_id"])

    mask = pc.is_in(ids, value_set=pa.array(sorted(candidates), pa.string()))
    positions = pc.indices_nonzero(mask).to_pylist()
    rows = events.take(positions).to_pylist()
    keys = [dedupe_key(row) for row in rows]
    new_ids = [
        synthetic_id(row["event_id"], key) for row, key in zip(rows, keys, strict=True)
    ]
    stored_new = set(
        lookup(pa.array(new_ids, pa.string())).column("event_id").to_pylist()
    )

    drop: list[int] = []
    rekey: dict[int, tuple[str, str]] = {}  # position -> (new id, original id)
    for position, row, key, new_id in zip(positions, rows, keys, new_ids, strict=True):
        event_id = row["event_id"]
        keys_seen = seen.setdefault(event_id, set())
        if key in keys_seen or new_id in stored_new:
            drop.append(position)
            continue
        keys_seen.add(key)
        if event_id not in taken:
            taken.add(event_id)
        else:
            rekey[position] = (new_id, event_id)
            taken.add(new_id)

    if rekey:
        events = _rekey(events, rekey)
    if drop:
        keep = pc.invert(
            pc.is_in(
                pa.array(range(events.num_rows), pa.int64()),
                value_set=pa.array(drop, pa.int64()),
            )
        )
        events = events.filter(keep)
    if drop or rekey:
        log.info(
            "De-duplication: %d natural duplicates dropped, %d synthetic "
            "duplicates given new ids",
            len(drop),
            len(rekey),
        )
    return Deduped(events, len(drop), len(rekey))


def _rekey(events: pa.Table, rekey: dict[int, tuple[str, str]]) -> pa.Table:
    event_ids = events.column("event_id").to_pylist()
    derived = events.column("derived_contexts").to_pylist()
    for position, (new_id, original) in rekey.items():
        event_ids[position] = new_id
        derived[position] = add_duplicate_context(derived[position], original)
    index = events.schema.get_field_index("event_id")
    events = events.set_column(
        index, events.schema.field(index), pa.array(event_ids, pa.string())
    )
    index = events.schema.get_field_index("derived_contexts")
    return events.set_column(
        index, events.schema.field(index), pa.array(derived, pa.string())
    )
