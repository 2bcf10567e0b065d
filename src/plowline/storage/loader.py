"""Loading into any store: the steps in order, the same for every store.

For each batch of an input: open the store's transaction; skip the batch if
the manifest has it; parse and type it (:mod:`~plowline.storage.batch`);
de-duplicate it against itself and the store (:mod:`~plowline.storage.dedupe`);
shred its self-describing JSON (:mod:`~plowline.storage.shred`); insert events
and child rows, creating or widening child tables; record the manifest entry;
commit. A crash at any point leaves whole batches only, and a re-run loads the
missing ones.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa  # type: ignore[import-untyped]

from plowline.errors import BadInputError
from plowline.iglu.resolver import Resolver
from plowline.storage.base import Store
from plowline.storage.batch import parse_tsv, typed_batch
from plowline.storage.dedupe import dedupe
from plowline.storage.failed import failed_batch
from plowline.storage.manifest import BatchIds, BatchKind, BatchRef, entry
from plowline.storage.shred import plan_columns, shred
from plowline.storage.tsv import count_lines, line_chunks, line_problem, open_binary

log = logging.getLogger(__name__)

BATCH_BYTES_ENV = "PLOWLINE_LOAD_BATCH_BYTES"
# About 120,000 realistic events: one DuckDB row group, few commits.
DEFAULT_BATCH_BYTES = 128 << 20


def batch_bytes_setting(value: int | None = None) -> int:
    """The batch size in bytes: the argument, else $PLOWLINE_LOAD_BATCH_BYTES,
    else 128 MiB."""
    if value is None:
        text = os.environ.get(BATCH_BYTES_ENV)
        value = int(text) if text else DEFAULT_BATCH_BYTES
    if value < 1:
        raise ValueError("the batch size must be at least 1 byte")
    return value


@dataclass(frozen=True, slots=True)
class Written:
    """What one batch put into a store."""

    events: int
    natural_duplicates: int = 0
    synthetic_duplicates: int = 0
    child_rows: int = 0


@dataclass(frozen=True, slots=True)
class InputResult:
    source: str
    batches: int
    skipped_batches: int  # already in the manifest
    lines: int
    events: int  # rows written (events, or failed events)
    natural_duplicates: int = 0
    synthetic_duplicates: int = 0


@dataclass(frozen=True, slots=True)
class LoadResult:
    inputs: tuple[InputResult, ...]

    @property
    def events(self) -> int:
        return sum(i.events for i in self.inputs)

    @property
    def skipped_batches(self) -> int:
        return sum(i.skipped_batches for i in self.inputs)

    @property
    def natural_duplicates(self) -> int:
        return sum(i.natural_duplicates for i in self.inputs)

    @property
    def synthetic_duplicates(self) -> int:
        return sum(i.synthetic_duplicates for i in self.inputs)


def write_events(
    store: Store,
    text: pa.Table,
    *,
    source: str | None = None,
    first_line: int = 1,
    resolver: Resolver | None = None,
) -> Written:
    """Type, de-duplicate, shred and insert a string table of enriched events
    (from :func:`~plowline.storage.batch.parse_tsv`), in the store's open
    transaction. Raises BadInputError naming the first bad line."""
    typed = typed_batch(text, source=source, first_line=first_line)
    # Shredding a first time checks the JSON columns with the input's line
    # numbers before de-duplication can drop or change rows.
    tables = shred(typed, resolver=resolver, source=source, first_line=first_line)
    deduped = dedupe(typed, store.existing_events)
    events = deduped.events
    if deduped.natural_duplicates or deduped.synthetic_duplicates:
        tables = shred(events, resolver=resolver, source=source, first_line=first_line)
    store.insert_events(events)
    child_rows = 0
    for name in sorted(tables):
        table = tables[name]
        plan = plan_columns(store.child_columns(name), table.kinds)
        if plan.create:
            store.create_child_table(name, plan.final)
        elif plan.add or plan.widen:
            store.alter_child_table(name, plan.add, plan.widen)
        store.insert_child_rows(name, table.to_arrow(events, plan.final))
        child_rows += table.num_rows
    return Written(
        events.num_rows,
        deduped.natural_duplicates,
        deduped.synthetic_duplicates,
        child_rows,
    )


def parse_chunk(
    chunk: bytes, source: str, first_line: int, lines: int | None = None
) -> pa.Table:
    """Whole lines of one input into a string table; errors name the line.
    ``lines`` is the chunk's line count, if the caller has counted them."""
    expected = count_lines(chunk) if lines is None else lines
    try:
        table = parse_tsv(chunk)
    except pa.ArrowInvalid as exc:
        raise _chunk_problem(chunk, source, first_line, str(exc)) from exc
    # Arrow also ends a line at a lone CR, which the line rules reject.
    if table.num_rows != expected:
        raise _chunk_problem(chunk, source, first_line, "line count differs")
    return table


def _chunk_problem(
    chunk: bytes, source: str, first_line: int, detail: str
) -> BadInputError:
    problem = line_problem(chunk, source, first_line)
    if problem is not None:
        return problem
    last_line = first_line + count_lines(chunk) - 1
    return BadInputError(
        f"{source}, lines {first_line} to {last_line} could not be read as "
        f"enriched events ({detail}).",
        source=source,
        line=first_line,
    )


def load_event_batch(
    store: Store, chunk: bytes, ref: BatchRef, *, resolver: Resolver | None = None
) -> Written | None:
    """One batch in one transaction with its manifest entry; None if the
    manifest already has it."""
    with store.transaction():
        if store.batch_loaded(ref.batch_id):
            return None
        text = parse_chunk(chunk, ref.source, ref.first_line, ref.lines)
        try:
            written = write_events(
                store,
                text,
                source=ref.source,
                first_line=ref.first_line,
                resolver=resolver,
            )
        except BadInputError:
            # Arrow reads a blank line as a row of nulls; the line rules name
            # the real fault.
            problem = line_problem(chunk, ref.source, ref.first_line)
            if problem is not None:
                raise problem from None
            raise
        store.record_batch(
            entry(
                ref,
                written.events,
                written.natural_duplicates,
                written.synthetic_duplicates,
            )
        )
    return written


def load_failed_batch(store: Store, chunk: bytes, ref: BatchRef) -> Written | None:
    with store.transaction():
        if store.batch_loaded(ref.batch_id):
            return None
        failed = failed_batch(chunk.splitlines(), first_line=ref.first_line)
        store.insert_failed(failed)
        store.record_batch(entry(ref, failed.num_rows))
    return Written(failed.num_rows)


def load_files(
    store: Store,
    inputs: Sequence[str],
    *,
    batch_bytes: int | None = None,
    resolver: Resolver | None = None,
) -> LoadResult:
    """Load enriched TSV inputs (``.gz`` too, ``-`` for standard input), one
    transaction per batch; batches already loaded are skipped."""
    return _load(store, inputs, "events", batch_bytes_setting(batch_bytes), resolver)


def load_failed_files(
    store: Store, inputs: Sequence[str], *, batch_bytes: int | None = None
) -> LoadResult:
    """Load failed-event JSON-lines inputs, as :func:`load_files` does events."""
    return _load(store, inputs, "failed", batch_bytes_setting(batch_bytes), None)


def _load(
    store: Store,
    inputs: Sequence[str],
    kind: BatchKind,
    batch_bytes: int,
    resolver: Resolver | None,
) -> LoadResult:
    if not inputs:
        raise BadInputError("No input files were given.")
    store.ensure_schema()
    results = []
    for source in inputs:
        started = time.perf_counter()
        ids = BatchIds(kind, source)
        batches = skipped = lines = events = natural = synthetic = 0
        with open_binary(source) as stream:
            for chunk in line_chunks(stream, source, batch_bytes):
                ref = ids.next(chunk, count_lines(chunk))
                if kind == "events":
                    written = load_event_batch(store, chunk, ref, resolver=resolver)
                else:
                    written = load_failed_batch(store, chunk, ref)
                batches += 1
                lines += ref.lines
                if written is None:
                    skipped += 1
                    log.info(
                        "%s: batch %d (lines %d-%d) was loaded before; skipped",
                        source,
                        ref.index,
                        ref.first_line,
                        ref.first_line + ref.lines - 1,
                    )
                    continue
                events += written.events
                natural += written.natural_duplicates
                synthetic += written.synthetic_duplicates
                log.info(
                    "%s: batch %d (lines %d-%d): %d %s written, %d child rows "
                    "(%.0f lines/s so far)",
                    source,
                    ref.index,
                    ref.first_line,
                    ref.first_line + ref.lines - 1,
                    written.events,
                    "events" if kind == "events" else "failed events",
                    written.child_rows,
                    lines / max(time.perf_counter() - started, 1e-9),
                )
        results.append(
            InputResult(source, batches, skipped, lines, events, natural, synthetic)
        )
        log.info(
            "%s: %d lines in %d batches (%d skipped): %d written, %d natural and "
            "%d synthetic duplicates, in %.2f s",
            source,
            lines,
            batches,
            skipped,
            events,
            natural,
            synthetic,
            time.perf_counter() - started,
        )
    return LoadResult(tuple(results))
