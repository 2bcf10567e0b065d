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

from plowline.enrich.loaders import detect_format, loader_for
from plowline.enrich.pipeline import (
    Enricher,
    EnrichStats,
    output_line,
    require_pii_output,
)
from plowline.enrich.settings import EnrichSettings
from plowline.rawlog.reader import block_lines, expand_inputs, iter_blocks

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 100_000
# Bytes of raw log per chunk: about 600 lines of the Plowline format.
CHUNK_BYTES = 1 << 20
IN_FLIGHT_PER_WORKER = 3


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


# (loader name, source, number of the first line, whole lines as read)
Chunk = tuple[str, str, int, bytes]


@dataclass(slots=True)
class ChunkResult:
    """Enriched TSV and failed-event lines of one chunk, ready to write."""

    good: bytes
    bad: bytes
    pii: bytes
    stats: EnrichStats


def enrich_chunk(enricher: Enricher, chunk: Chunk) -> ChunkResult:
    """Enrich the lines of one chunk, read with the loader it names."""
    name, source, first, block = chunk
    loader = loader_for(name)
    outputs: dict[str, list[bytes]] = {"good": [], "bad": [], "pii": []}
    stats = EnrichStats()
    for number, line in block_lines(first, block):
        outcomes = enricher.enrich_line(
            line, source=source, line_number=number, loader=loader, loader_name=name
        )
        if not outcomes:
            continue  # a header line, a preflight: not a record
        stats.lines += 1
        for outcome in outcomes:
            stats.add(outcome)
            stream, text = output_line(outcome)
            outputs[stream].append(text)
    return ChunkResult(
        _lines(outputs["good"]), _lines(outputs["bad"]), _lines(outputs["pii"]), stats
    )


def _lines(items: list[bytes]) -> bytes:
    return b"\n".join(items) + b"\n" if items else b""


def _chunks(sources: list[str], input_format: str) -> Iterator[Chunk]:
    """The chunks of every source in input order; ``auto`` judges each file by
    its first line that is not blank."""
    name: str | None = None
    current = None
    for source, first, block in iter_blocks(sources, CHUNK_BYTES):
        if source != current:
            current, name = source, None
        if name is None:
            name = input_format
            if input_format == "auto":
                lines = [line for _, line in block_lines(first, block)]
                if not lines:
                    name = None  # only blank lines so far: judged on later ones
                    continue
                name = detect_format(lines)
            logger.info("Reading %s as %s", source, name)
        yield name, source, first, block


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
        pending: deque[Future[ChunkResult]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_enrich_in_worker, chunk))
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


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
    with (
        open_output(good) as good_out,
        open_output(bad) as bad_out,
        open_output(pii) as pii_out,
    ):
        chunks = _chunks(sources, input_format)
        for result in _results(chunks, enricher, workers):
            good_out.write(result.good)
            bad_out.write(result.bad)
            pii_out.write(result.pii)
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
