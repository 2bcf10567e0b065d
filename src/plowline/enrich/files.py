"""``plowline enrich``: raw logs in, enriched TSV and failed-event JSON lines out."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from plowline.enrich.pipeline import EnrichedEvent, Enricher, EnrichStats
from plowline.rawlog.reader import expand_inputs, iter_lines

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 100_000


@contextmanager
def _output(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as handle:
        yield handle


def enrich_files(
    inputs: Sequence[str], good: str, bad: str, enricher: Enricher | None = None
) -> EnrichStats:
    """Enrich every raw record in ``inputs``: enriched events as TSV lines to
    ``good``, failed events as JSON lines to ``bad`` (``-`` is standard output)."""
    enricher = enricher or Enricher()
    stats = EnrichStats()
    # Inputs are checked before the outputs are opened (and emptied).
    sources = expand_inputs(inputs)
    with _output(good) as good_out, _output(bad) as bad_out:
        for source, number, line in iter_lines(sources):
            stats.lines += 1
            for outcome in enricher.enrich_line(
                line, source=source, line_number=number
            ):
                stats.add(outcome)
                if isinstance(outcome, EnrichedEvent):
                    good_out.write(outcome.to_tsv().encode("utf-8") + b"\n")
                else:
                    bad_out.write(outcome.to_json() + b"\n")
            if stats.lines % PROGRESS_EVERY == 0:
                logger.info("Enriched %d raw records so far", stats.lines)
    logger.info(
        "Read %d raw records: %d enriched events, %d failed events",
        stats.lines,
        stats.enriched,
        stats.failed,
    )
    return stats
