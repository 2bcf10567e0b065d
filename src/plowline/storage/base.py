"""What every store implements: the I/O half of loading.

The store-neutral half (parsing, typing, de-duplication, shredding, the
manifest and the order of the steps) lives in :mod:`plowline.storage.loader`
and the modules it calls; a store only creates its tables, runs a
transaction, and reads and writes Arrow tables. Tables a store must provide:

- ``atomic.events``: ``EVENTS_SCHEMA`` (:mod:`plowline.storage.batch`), one
  column per enriched field, in TSV order, NOT NULL for the required fields.
- ``atomic.failed_events``: ``FAILED_SCHEMA`` (:mod:`plowline.storage.failed`).
- one child table per shredded schema (:mod:`plowline.storage.shred`): the
  ``FIXED_COLUMNS``, then property columns of the ``ShredKind`` kinds.
- a manifest of loaded batches with ``MANIFEST_COLUMNS``
  (:mod:`plowline.storage.manifest`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import ClassVar

import pyarrow as pa  # type: ignore[import-untyped]

from plowline.storage.manifest import ManifestEntry
from plowline.storage.shred import ShredKind


class Store(ABC):
    """One destination of enriched events. Writes happen only between
    ``transaction()``'s enter and exit: all of them persist, or none."""

    kind: ClassVar[str]

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create the events, failed-events and manifest tables if missing."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Begin; commit on a normal exit, roll back on an exception."""

    # The manifest

    @abstractmethod
    def batch_loaded(self, batch_id: str) -> bool:
        """Whether a batch of that id is in the manifest (committed)."""

    @abstractmethod
    def record_batch(self, entry: ManifestEntry) -> None:
        """Add a manifest entry, in the open transaction."""

    def loaded_batches(self) -> set[str]:
        """The ids of every batch in the manifest (committed). A loader reads
        them once, to skip preparing batches loaded before; ``batch_loaded``
        in the batch's transaction stays the check that counts."""
        return set(self.read_manifest().column("batch_id").to_pylist())

    # Events

    @abstractmethod
    def existing_events(self, event_ids: pa.Array) -> pa.Table:
        """The stored events (``EVENTS_SCHEMA``) whose event_id is one of these."""

    # Whether insert_events can use the enriched TSV the events were read from
    # (the loader then keeps what batch_text makes of each batch's text until
    # the batch is written).
    takes_source_text: ClassVar[bool] = False

    def batch_text(self, text: bytes) -> object:
        """What insert_events is to be given of a batch's enriched TSV (whole
        lines, unchanged), for a store that ``takes_source_text``. The loader
        calls it on its preparing thread, while the store writes the batch
        before, so it must not touch the store's connection."""
        return text

    @abstractmethod
    def insert_events(self, events: pa.Table, source_text: object = None) -> None:
        """Append typed events (``EVENTS_SCHEMA``). ``source_text``, when given,
        is what :meth:`batch_text` made of the enriched TSV the events were
        parsed from, line for line (no duplicate dropped or re-keyed); a store
        may load it instead of ``events``."""

    # Shredded child tables

    @abstractmethod
    def child_columns(self, table: str) -> dict[str, ShredKind] | None:
        """A child table's property columns and kinds, in order; None if the
        table does not exist."""

    @abstractmethod
    def create_child_table(self, table: str, columns: Mapping[str, ShredKind]) -> None:
        """Create a child table: the fixed columns, then these."""

    @abstractmethod
    def alter_child_table(
        self,
        table: str,
        add: Mapping[str, ShredKind],
        widen: Mapping[str, ShredKind],
    ) -> None:
        """Add columns (at the end) and change columns to a wider kind."""

    @abstractmethod
    def insert_child_rows(self, table: str, rows: pa.Table) -> None:
        """Append rows; ``rows`` has the fixed columns and some property columns,
        of the table's kinds; missing columns are NULL."""

    # Failed events

    @abstractmethod
    def insert_failed(self, failed: pa.Table) -> None:
        """Append failed events (``FAILED_SCHEMA``)."""

    # Reading back (tests, tools)

    @abstractmethod
    def read_events(self) -> pa.Table:
        """All events, ordered by event_id."""

    @abstractmethod
    def child_tables(self) -> list[str]:
        """The names of the child tables, sorted."""

    @abstractmethod
    def read_child_table(self, table: str) -> pa.Table:
        """A child table's rows, ordered by root_id, then by every column."""

    @abstractmethod
    def read_failed(self) -> pa.Table:
        """All failed events, ordered by failed_at."""

    @abstractmethod
    def read_manifest(self) -> pa.Table:
        """The manifest, ordered by loaded_at then batch_id."""

    def close(self) -> None:  # noqa: B027 - optional for stores
        """Release the store's connection."""
