"""The manifest of loaded batches: what makes a load safe to run again.

An input is loaded in batches of whole lines. Each batch gets an id from the
content of the input up to and including that batch (a running SHA-256 over the
batches' bytes) and the batch's index. A store writes the batch and its
manifest entry in one transaction, so after a crash a re-run skips the batches
that committed and loads the rest; loading the same content again (under any
file name) skips every batch. Batch boundaries depend on the batch size, so a
re-run should use the same size; if it does not, de-duplication still keeps
each event once (see :mod:`plowline.storage.dedupe`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

BatchKind = Literal["events", "failed"]


@dataclass(frozen=True, slots=True)
class BatchRef:
    """One batch of one input: its id and where it came from."""

    batch_id: str
    kind: BatchKind
    source: str
    index: int  # 0-based position of the batch in its input
    first_line: int  # 1-based line number of its first line in the input
    lines: int


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What a store records, in the batch's own transaction, once it is written."""

    ref: BatchRef
    events: int  # rows written (events or failed events)
    natural_duplicates: int
    synthetic_duplicates: int
    loaded_at: datetime

    def as_row(self) -> dict[str, object]:
        return {
            "batch_id": self.ref.batch_id,
            "kind": self.ref.kind,
            "source": self.ref.source,
            "batch_index": self.ref.index,
            "first_line": self.ref.first_line,
            "lines": self.ref.lines,
            "events": self.events,
            "natural_duplicates": self.natural_duplicates,
            "synthetic_duplicates": self.synthetic_duplicates,
            "loaded_at": self.loaded_at,
        }


# The manifest table's columns and their kinds, for every store's DDL.
MANIFEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("batch_id", "str"),
    ("kind", "str"),
    ("source", "str"),
    ("batch_index", "int"),
    ("first_line", "bigint"),
    ("lines", "int"),
    ("events", "int"),
    ("natural_duplicates", "int"),
    ("synthetic_duplicates", "int"),
    ("loaded_at", "tstamp"),
)


class BatchIds:
    """Hands out the ids of an input's batches, in order."""

    def __init__(self, kind: BatchKind, source: str) -> None:
        self.kind = kind
        self.source = source
        self._hash = hashlib.sha256(kind.encode())
        self._index = 0
        self._next_line = 1

    def next(self, chunk: bytes | memoryview, lines: int) -> BatchRef:
        self._hash.update(chunk)
        ref = BatchRef(
            batch_id=f"{self._hash.hexdigest()[:40]}-{self._index}",
            kind=self.kind,
            source=self.source,
            index=self._index,
            first_line=self._next_line,
            lines=lines,
        )
        self._index += 1
        self._next_line += lines
        return ref


def entry(
    ref: BatchRef, events: int, natural: int = 0, synthetic: int = 0
) -> ManifestEntry:
    return ManifestEntry(
        ref, events, natural, synthetic, datetime.now(UTC).replace(tzinfo=None)
    )
