"""Loading into any store: the steps in order, the same for every store.

For each batch of an input: open the store's transaction; skip the batch if
the manifest has it; parse and type it (:mod:`~plowline.storage.batch`);
de-duplicate it against itself and the store (:mod:`~plowline.storage.dedupe`);
shred its self-describing JSON (:mod:`~plowline.storage.shred`); insert events
and child rows, creating or widening child tables; record the manifest entry;
commit. A crash at any point leaves whole batches only, and a re-run loads the
missing ones.

Reading, parsing, typing and the first shredding of a batch do not depend on
the store, so a thread prepares the next batch (:func:`prefetched`), and
another reads and hashes the one after, while the store writes the current
one; the store's own steps (the manifest check, de-duplication against stored
events, the inserts, the commit) stay in order on the caller's thread. Arrow,
hashlib, the compiled splitter, DuckDB and psycopg release the GIL in their
long calls, so the threads share both cores. A batch that fails to parse is
reported only once the batches before it are committed, as without the thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from plowline.errors import BadInputError
from plowline.iglu.resolver import Resolver
from plowline.storage.base import Store
from plowline.storage.batch import parse_tsv, typed_batch
from plowline.storage.dedupe import dedupe, id_counts
from plowline.storage.failed import failed_batch
from plowline.storage.manifest import BatchIds, BatchKind, BatchRef, entry
from plowline.storage.shred import ChildTable, plan_columns, shred
from plowline.storage.tsv import Chunk, count_lines, input_chunks, line_problem

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_BYTES_ENV = "PLOWLINE_LOAD_BATCH_BYTES"
# About 120,000 realistic events: one DuckDB row group, few commits.
DEFAULT_BATCH_BYTES = 128 << 20
# Batches prepared ahead of the one being written (each holds its text and
# its typed table: about 2.5 times the batch size in memory).
PREFETCH_BATCHES = 1


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


@dataclass(frozen=True, slots=True)
class Prepared:
    """A typed batch and its child-table rows, before de-duplication: the
    store-neutral work, which :func:`write_prepared` then writes."""

    events: pa.Table
    tables: dict[str, ChildTable]
    # Each child table's rows as Arrow, of the kinds this batch alone gives.
    rows: dict[str, pa.Table]
    # How often each event id occurs (dedupe.id_counts).
    counts: pa.StructArray | None = None
    # What the store made of the batch's enriched TSV (Store.batch_text), for
    # stores that take it.
    text: object = None


def prepare_events(
    text: pa.Table,
    *,
    source: str | None = None,
    first_line: int = 1,
    resolver: Resolver | None = None,
) -> Prepared:
    """Type and shred a string table of enriched events (from
    :func:`~plowline.storage.batch.parse_tsv`). Raises BadInputError naming the
    first bad line."""
    typed = typed_batch(text, source=source, first_line=first_line)
    # Shredding before de-duplication checks the JSON columns with the input's
    # line numbers, before rows can be dropped or changed.
    tables = shred(typed, resolver=resolver, source=source, first_line=first_line)
    rows = {name: table.to_arrow(typed) for name, table in tables.items()}
    return Prepared(typed, tables, rows, id_counts(typed))


def write_prepared(
    store: Store,
    prepared: Prepared,
    *,
    source: str | None = None,
    first_line: int = 1,
    resolver: Resolver | None = None,
) -> Written:
    """De-duplicate a prepared batch against itself and the store, and insert
    its events and child rows, in the store's open transaction."""
    deduped = dedupe(prepared.events, store.existing_events, prepared.counts)
    events = deduped.events
    tables = prepared.tables
    built = prepared.rows
    if deduped.natural_duplicates or deduped.synthetic_duplicates:
        tables = shred(events, resolver=resolver, source=source, first_line=first_line)
        built = {}
    unchanged = events is prepared.events
    store.insert_events(events, prepared.text if unchanged else None)
    child_rows = 0
    for name in sorted(tables):
        table = tables[name]
        kinds = table.kinds
        plan = plan_columns(store.child_columns(name), kinds)
        if plan.create:
            store.create_child_table(name, plan.final)
        elif plan.add or plan.widen:
            store.alter_child_table(name, plan.add, plan.widen)
        rows = built.get(name)
        if rows is None or any(plan.final[column] != kinds[column] for column in kinds):
            # The table holds some column in a wider kind than this batch.
            rows = table.to_arrow(events, plan.final)
        store.insert_child_rows(name, rows)
        child_rows += table.num_rows
    return Written(
        events.num_rows,
        deduped.natural_duplicates,
        deduped.synthetic_duplicates,
        child_rows,
    )


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
    prepared = prepare_events(
        text, source=source, first_line=first_line, resolver=resolver
    )
    return write_prepared(
        store, prepared, source=source, first_line=first_line, resolver=resolver
    )


def parse_chunk(
    chunk: Chunk, source: str, first_line: int, lines: int | None = None
) -> pa.Table:
    """Whole lines of one input into a string table; errors name the line.
    ``lines`` is the chunk's line count, if the caller has counted them."""
    expected = count_lines(chunk) if lines is None else lines
    try:
        table = parse_tsv(chunk, expected)
    except pa.ArrowInvalid as exc:
        raise _chunk_problem(chunk, source, first_line, str(exc)) from exc
    # Arrow also ends a line at a lone CR, which the line rules reject.
    if table.num_rows != expected:
        raise _chunk_problem(chunk, source, first_line, "line count differs")
    return table


_BOM = b"\xef\xbb\xbf"


def _drop_line_boms(text: pa.Table, chunk: Chunk) -> tuple[pa.Table, bool]:
    """The table without a byte-order mark at the start of any line, and
    whether there was one. Arrow drops the mark at the start of the text it
    parses, so at the start of a batch only: dropping it at every line start
    makes the stored value the same whatever the batch size, in every store
    (a store that takes the batch's own text gets the table instead)."""
    first = text.column(0)
    starts = pc.starts_with(first, "\ufeff")
    inside = bool(pc.any(starts).as_py())
    if inside:
        cleaned = pc.replace_substring_regex(first, "^\ufeff", "")
        cleaned = pc.if_else(pc.equal(cleaned, ""), None, cleaned)
        text = text.set_column(0, text.field(0), cleaned)
    return text, inside or bytes(chunk[:3]) == _BOM


def _chunk_problem(
    chunk: Chunk, source: str, first_line: int, detail: str
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


@dataclass(frozen=True, slots=True)
class _Batch:
    """One batch of an input, as the preparing thread hands it over: parsed,
    or the error that stops the load there, or neither when the manifest had
    it already when the load began."""

    ref: BatchRef
    known: bool = False
    events: Prepared | None = None
    failed: pa.Table | None = None
    error: BadInputError | None = None


def _prepare_chunk(
    chunk: Chunk,
    ref: BatchRef,
    kind: BatchKind,
    resolver: Resolver | None,
    batch_text: Callable[[bytes], object] | None = None,
) -> _Batch:
    if kind == "failed":
        data = chunk if isinstance(chunk, bytes) else chunk.tobytes()
        # Lines end at \n only: a CR may stand between JSON tokens.
        lines = data.split(b"\n")
        if data.endswith(b"\n"):
            lines.pop()
        failed = failed_batch(lines, first_line=ref.first_line, source=ref.source)
        return _Batch(ref, failed=failed)
    text = parse_chunk(chunk, ref.source, ref.first_line, ref.lines)
    text, had_bom = _drop_line_boms(text, chunk)
    try:
        prepared = prepare_events(
            text, source=ref.source, first_line=ref.first_line, resolver=resolver
        )
    except BadInputError:
        # Arrow reads a blank line as a row of nulls; the line rules name the
        # real fault.
        problem = line_problem(chunk, ref.source, ref.first_line)
        if problem is not None:
            raise problem from None
        raise
    if batch_text is not None and not had_bom:
        text = chunk if isinstance(chunk, bytes) else chunk.tobytes()
        prepared = dataclasses.replace(prepared, text=batch_text(text))
    return _Batch(ref, events=prepared)


def _batches(
    source: str,
    kind: BatchKind,
    batch_bytes: int,
    resolver: Resolver | None,
    known: frozenset[str],
    batch_text: Callable[[bytes], object] | None,
) -> Iterator[_Batch]:
    """An input's batches, prepared; the first bad one ends them. A thread of
    its own reads the input and hashes each batch for its id (hashlib and
    gzip let go of the GIL) while the batch before is parsed."""
    read = prefetched(
        _identified(source, kind, batch_bytes),
        wait=source != "-",
        name="plowline-load-read",
    )
    for chunk, ref in read:
        if ref.batch_id in known:
            yield _Batch(ref, known=True)
            continue
        try:
            batch = _prepare_chunk(chunk, ref, kind, resolver, batch_text)
        except BadInputError as exc:
            yield _Batch(ref, error=exc)
            return
        del chunk
        yield batch


def _identified(
    source: str, kind: BatchKind, batch_bytes: int
) -> Iterator[tuple[Chunk, BatchRef]]:
    """An input's chunks with their batch references (ids and lines)."""
    ids = BatchIds(kind, source)
    for chunk, lines in input_chunks(source, batch_bytes):
        yield chunk, ids.next(chunk, lines)


def prefetched(
    items: Iterator[T],
    depth: int = PREFETCH_BATCHES,
    *,
    wait: bool = True,
    name: str = "plowline-load-prepare",
) -> Iterator[T]:
    """``items``, computed by a thread of their own up to ``depth`` ahead of the
    caller. An exception of the thread is raised in its place in the sequence.
    When the caller stops early, the thread stops at its next hand-over; the
    caller waits for that unless ``wait`` is false (for a thread that may be
    blocked reading standard input: a daemon, it ends with the process)."""
    handed: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def hand(tag: str, value: object) -> bool:
        while not stop.is_set():
            try:
                handed.put((tag, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not hand("item", item):
                    return
            hand("end", None)
        except BaseException as exc:  # handed to the caller, who raises it
            hand("error", exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            tag, value = handed.get()
            if tag == "end":
                return
            if tag == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        if wait:
            thread.join()


def _write_batch(
    store: Store, batch: _Batch, resolver: Resolver | None
) -> Written | None:
    """Write one prepared batch in one transaction with its manifest entry;
    None if the manifest has it."""
    if batch.known:
        return None
    ref = batch.ref
    with store.transaction():
        if store.batch_loaded(ref.batch_id):
            return None
        if batch.error is not None:
            raise batch.error
        if batch.failed is not None:
            store.insert_failed(batch.failed)
            written = Written(batch.failed.num_rows)
        else:
            assert batch.events is not None
            written = write_prepared(
                store,
                batch.events,
                source=ref.source,
                first_line=ref.first_line,
                resolver=resolver,
            )
        store.record_batch(
            entry(
                ref,
                written.events,
                written.natural_duplicates,
                written.synthetic_duplicates,
            )
        )
    return written


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
        # Batches in the manifest now are not parsed again; the check in each
        # batch's transaction stays the one that counts.
        known = frozenset(store.loaded_batches())
        batches = skipped = lines = events = natural = synthetic = 0
        prepared = _batches(
            source,
            kind,
            batch_bytes,
            resolver,
            known,
            store.batch_text if store.takes_source_text else None,
        )
        for batch in prefetched(prepared, wait=source != "-"):
            ref = batch.ref
            written = _write_batch(store, batch, resolver)
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
