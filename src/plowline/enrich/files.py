"""``plowline enrich``: raw logs in, enriched TSV and failed-event JSON lines out."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]

from plowline.enrich.failed import FailedEvent
from plowline.enrich.loaders import detect_format, loader_for
from plowline.enrich.pipeline import (
    Enricher,
    EnrichStats,
    require_pii_output,
)
from plowline.enrich.settings import EnrichSettings
from plowline.rawlog.reader import (
    FileRange,
    block_lines,
    can_read_in_ranges,
    check_readable,
    counted_block_lines,
    expand_inputs,
    file_ranges,
    iter_blocks,
    read_range,
)

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 100_000
# Bytes of raw log per chunk: about 600 lines of the Plowline format.
CHUNK_BYTES = 1 << 20
IN_FLIGHT_PER_WORKER = 3
# The pipe that brings results back holds this much (Linux's default is 64
# KiB): a chunk's result, about as big as the chunk, then goes through in a
# few reads instead of dozens, each a switch between the two processes.
RESULT_PIPE_BYTES = 1 << 20


@contextmanager
def open_output(path: str | None) -> Iterator[BinaryIO]:
    """The file at ``path`` for writing, standard output for ``-``, and a sink
    that keeps nothing for None (an output nobody asked for)."""
    if path is None:
        with open(os.devnull, "wb") as nowhere:
            yield nowhere
        return
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as handle:
        yield handle


# (loader name, source, whether it is the source's first chunk, whole lines:
# as read, or the range of a plain file that the worker reads itself)
Chunk = tuple[str, str, bool, bytes | FileRange]


@dataclass(slots=True)
class ChunkResult:
    """Enriched TSV and failed-event lines of one chunk, ready to write.

    Lines are numbered from the chunk's first (the parent, which does not read
    plain files, learns where a chunk starts only from the ones before it):
    ``bad`` keeps the failed events that name their line as objects, for
    :meth:`bad_text` to number once that is known."""

    source: str
    starts_source: bool
    line_breaks: int
    good: bytes
    bad: list[bytes | FailedEvent]
    pii: bytes
    stats: EnrichStats

    def bad_text(self, lines_before: int) -> bytes:
        """The failed-event lines, for a chunk that ``lines_before`` lines of
        its source come before."""
        parts = []
        for item in self.bad:
            if isinstance(item, FailedEvent):
                item.failure["source"]["line"] += lines_before
                item = item.to_json()
            parts.append(item)
        return _lines(parts)


def enrich_chunk(enricher: Enricher, chunk: Chunk) -> ChunkResult:
    """Enrich the lines of one chunk, read with the loader it names."""
    name, source, starts_source, data = chunk
    block = data if isinstance(data, bytes) else read_range(data, source)
    loader = loader_for(name)
    good: list[bytes] = []
    bad: list[bytes | FailedEvent] = []
    pii: list[bytes] = []
    stats = EnrichStats()
    enrich_line = enricher.enrich_line
    records = 0
    lines, line_breaks = counted_block_lines(1, block)
    for number, line in lines:
        outcomes = enrich_line(
            line, source=source, line_number=number, loader=loader, loader_name=name
        )
        if not outcomes:
            continue  # a header line, a preflight: not a record
        records += 1
        for outcome in outcomes:
            if isinstance(outcome, FailedEvent):
                # An unreadable line names its line: numbered by the parent.
                bad.append(
                    outcome if "source" in outcome.failure else outcome.to_json()
                )
            elif outcome.stream == "pii":
                pii.append(outcome.to_tsv_bytes())
            else:
                good.append(outcome.to_tsv_bytes())
    stats.lines = records
    stats.enriched, stats.failed, stats.pii = len(good), len(bad), len(pii)
    return ChunkResult(
        source, starts_source, line_breaks, _lines(good), bad, _lines(pii), stats
    )


def _lines(items: Sequence[bytes]) -> bytes:
    return b"\n".join(items) + b"\n" if items else b""


def _in_ranges(workers: int) -> bool:
    """Whether regular files go to the workers as ranges, for each to read its
    own: with worker processes, so that the parent does not read everything.
    One process reads them in blocks through one handle, which keeps reading
    the file it opened if the file is renamed or replaced meanwhile."""
    return workers > 1


def _chunks(sources: list[str], input_format: str, ranges: bool) -> Iterator[Chunk]:
    """The chunks of every source in input order; ``auto`` judges each file by
    its first line that is not blank. With ``ranges`` (worker processes), the
    parent reads regular files only around the cuts (and until it knows their
    format): the workers read the rest. Otherwise it reads them in blocks."""
    for source in sources:
        shown = "<stdin>" if source == "-" else source
        name = None if input_format == "auto" else input_format
        if name is not None:
            logger.info("Reading %s as %s", shown, name)
        pieces: Iterator[bytes | FileRange]
        if ranges and can_read_in_ranges(source):
            pieces = file_ranges(source, CHUNK_BYTES)
        else:
            pieces = (block for _, _, block in iter_blocks([source], CHUNK_BYTES))
        starts = True
        for piece in pieces:
            if name is None:
                block = piece if isinstance(piece, bytes) else read_range(piece, shown)
                first = next((line for _, line in block_lines(1, block)), None)
                if first is not None:
                    name = detect_format([first])
                    logger.info("Reading %s as %s", shown, name)
                # Blank lines only, so far: they give nothing whatever the format.
                yield name or "plowline", shown, starts, block
            else:
                yield name, shown, starts, piece
            starts = False


_worker_enricher: Enricher | None = None


# How the parent logs (level, format, date format), for its worker processes:
# a spawned process starts with logging unconfigured.
LogSetup = tuple[int, str, str | None] | None


def _log_setup() -> LogSetup:
    root = logging.getLogger()
    if not root.handlers:
        return None
    formatter = root.handlers[0].formatter
    if formatter is None or formatter._fmt is None:
        return root.level, logging.BASIC_FORMAT, None
    return root.level, formatter._fmt, formatter.datefmt


def _start_worker(settings: EnrichSettings | None, log_setup: LogSetup = None) -> None:
    global _worker_enricher
    if log_setup is not None:
        level, fmt, datefmt = log_setup
        logging.basicConfig(level=level, format=fmt, datefmt=datefmt)
    # The parent built the same enricher and logged its warnings already
    # (deprecated settings and the like): a worker does not repeat them.
    logging.disable(logging.WARNING)
    try:
        _worker_enricher = settings.build() if settings is not None else Enricher()
    finally:
        logging.disable(logging.NOTSET)


def _enrich_in_worker(chunk: Chunk) -> ChunkResult:
    assert _worker_enricher is not None
    return enrich_chunk(_worker_enricher, chunk)


def _results(
    chunks: Iterator[Chunk], enricher: Enricher, workers: int
) -> Iterator[ChunkResult]:
    """Chunk results in input order, from this process or from ``workers``
    processes with a bounded number of chunks in flight (memory stays flat)."""
    if workers <= 1:
        for chunk in chunks:
            yield enrich_chunk(enricher, chunk)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(enricher.settings, _log_setup()),
    ) as pool:
        _widen_result_pipe(pool)
        pending: deque[Future[ChunkResult]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_enrich_in_worker, chunk))
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _widen_result_pipe(pool: ProcessPoolExecutor) -> None:
    """Make the pool's result pipe hold RESULT_PIPE_BYTES, where the system
    allows it (Linux; up to /proc/sys/fs/pipe-max-size). It is the pool's own
    pipe, reached through an attribute that is not public API: when it is
    not there, or the size is refused, the pipe stays as it is (only slower)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    reader = getattr(getattr(pool, "_result_queue", None), "_reader", None)
    if set_size is None or reader is None:
        return
    try:
        fcntl.fcntl(reader.fileno(), set_size, RESULT_PIPE_BYTES)
    except (OSError, ValueError) as exc:
        logger.debug("Result pipe left at its size (%s)", exc)


def enrich_files(
    inputs: Sequence[str],
    good: str,
    bad: str,
    enricher: Enricher | None = None,
    *,
    input_format: str = "auto",
    workers: int = 1,
    pii: str | None = None,
) -> EnrichStats:
    """Enrich every raw record in ``inputs``: enriched events as TSV lines to
    ``good``, failed events as JSON lines to ``bad`` (``-`` is standard output).

    ``input_format`` is ``auto`` or a loader name (:data:`INPUT_FORMATS`).
    ``workers`` > 1 enriches in that many processes, each with an enricher
    built from ``enricher.settings`` (an enricher made by hand, without
    settings, gives workers the default enricher); the output order is the
    input order either way.
    ``pii`` receives the events PII pseudonymisation emits, when it is
    configured to.
    """
    enricher = enricher or Enricher()
    require_pii_output(enricher, pii)
    if input_format != "auto":
        loader_for(input_format)  # an unknown format fails before any output
    stats = EnrichStats()
    # Inputs are checked before the outputs are opened (and emptied).
    sources = expand_inputs(inputs)
    check_readable(sources)
    with (
        open_output(good) as good_out,
        open_output(bad) as bad_out,
        open_output(pii) as pii_out,
    ):
        chunks = _chunks(sources, input_format, ranges=_in_ranges(workers))
        lines_before = 0  # of the current source, before the chunk
        for result in _results(chunks, enricher, workers):
            if result.starts_source:
                lines_before = 0
            good_out.write(result.good)
            bad_out.write(result.bad_text(lines_before))
            pii_out.write(result.pii)
            lines_before += result.line_breaks
            before = stats.lines // PROGRESS_EVERY
            stats.merge(result.stats)
            if stats.lines // PROGRESS_EVERY > before:
                logger.info("Enriched %d raw records so far", stats.lines)
    logger.info(
        "Read %d raw records: %d enriched events, %d failed events",
        stats.lines,
        stats.enriched,
        stats.failed,
    )
    return stats
