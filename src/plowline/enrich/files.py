"""``plowline enrich``: raw logs in, enriched TSV and failed-event JSON lines out."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, groupby, islice
from operator import itemgetter
from typing import BinaryIO

from plowline.enrich.loaders import detect_format, loader_for
from plowline.enrich.pipeline import EnrichedEvent, Enricher, EnrichStats, Outcome
from plowline.rawlog.reader import expand_inputs, iter_lines

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 100_000
DETECT_LINES = 20


@contextmanager
def open_output(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as handle:
        yield handle


def enrich_files(
    inputs: Sequence[str],
    good: str,
    bad: str,
    enricher: Enricher | None = None,
    *,
    input_format: str = "auto",
) -> EnrichStats:
    """Enrich every raw record in ``inputs``: enriched events as TSV lines to
    ``good``, failed events as JSON lines to ``bad`` (``-`` is standard output).

    ``input_format`` is one of :data:`INPUT_FORMATS`; ``auto`` judges each file
    by its first lines.
    """
    enricher = enricher or Enricher()
    fixed = None if input_format == "auto" else loader_for(input_format)
    stats = EnrichStats()
    # Inputs are checked before the outputs are opened (and emptied).
    sources = expand_inputs(inputs)
    with open_output(good) as good_out, open_output(bad) as bad_out:
        for source, group in groupby(iter_lines(sources), key=itemgetter(0)):
            head = list(islice(group, DETECT_LINES))
            name = input_format
            if fixed is None:
                name = detect_format([line for _, _, line in head])
            logger.info("Reading %s as %s", source, name)
            loader = fixed or loader_for(name)
            for _, number, line in chain(head, group):
                outcomes = enricher.enrich_line(
                    line,
                    source=source,
                    line_number=number,
                    loader=loader,
                    loader_name=name,
                )
                _write(outcomes, stats, good_out, bad_out)
    logger.info(
        "Read %d raw records: %d enriched events, %d failed events",
        stats.lines,
        stats.enriched,
        stats.failed,
    )
    return stats


def _write(
    outcomes: list[Outcome], stats: EnrichStats, good_out: BinaryIO, bad_out: BinaryIO
) -> None:
    if not outcomes:
        return  # a header line, a preflight: not a record
    stats.lines += 1
    for outcome in outcomes:
        stats.add(outcome)
        if isinstance(outcome, EnrichedEvent):
            good_out.write(outcome.to_tsv().encode("utf-8") + b"\n")
        else:
            bad_out.write(outcome.to_json() + b"\n")
    if stats.lines % PROGRESS_EVERY == 0:
        logger.info("Enriched %d raw records so far", stats.lines)
