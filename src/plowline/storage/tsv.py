"""Reading enriched TSV inputs: files, ``.gz`` files and standard input.

Inputs are read in chunks of whole lines (:func:`line_chunks`), which become
the batches of a load; :func:`read_tsv` yields single rows for small callers.
"""

from __future__ import annotations

import gzip
import io
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from plowline.errors import BadInputError
from plowline.storage.batch import WIDTH

log = logging.getLogger(__name__)

ByteStream = IO[bytes] | io.BufferedIOBase


def read_tsv(path_or_dash: str | Path) -> Iterator[list[str]]:
    """Yield the rows of an enriched TSV file (``-`` for stdin, ``.gz`` unpacked).

    A line ends with LF or CRLF; a line without 131 fields, or with a carriage
    return inside, raises BadInputError naming the file and line.
    """
    source = str(path_or_dash)
    with open_binary(source) as stream:
        for number, raw in enumerate(_read_or_fail(stream, source), start=1):
            yield split_line(decode_line(raw, source, number), source, number)


@contextmanager
def open_binary(source: str) -> Iterator[ByteStream]:
    """Open an input for reading bytes; ``-`` is standard input."""
    if source == "-":
        yield sys.stdin.buffer
        return

    # Opened apart from the with below so that only opening errors are translated.
    try:
        if source.endswith(".gz"):
            stream: ByteStream = gzip.open(source, "rb")  # noqa: SIM115
        else:
            stream = open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise BadInputError(
            f"Cannot read {source}: {exc.strerror or exc}.", source=source
        ) from exc
    with stream:
        yield stream


def _read_or_fail(stream: ByteStream, source: str) -> Iterator[bytes]:
    try:
        yield from stream
    except (OSError, EOFError) as exc:
        raise BadInputError(f"Cannot read {source}: {exc}.", source=source) from exc


def decode_line(raw: bytes, source: str, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"{source}, line {number}: not valid UTF-8 ({exc.reason} at byte "
            f"{exc.start}).",
            source=source,
            line=number,
        ) from exc


def split_line(line: str, source: str, number: int) -> list[str]:
    line = line.removesuffix("\n").removesuffix("\r")
    if "\r" in line:
        raise BadInputError(
            f"{source}, line {number}: a field contains a carriage return, which "
            "the enriched TSV never carries.",
            source=source,
            line=number,
        )
    fields = line.split("\t")
    if len(fields) != WIDTH:
        hint = ""
        if line.startswith("{"):
            hint = " It looks like JSON: load failed events with --failed."
        raise BadInputError(
            f"{source}, line {number} has {len(fields)} fields; an enriched event "
            f"has {WIDTH}.{hint}",
            source=source,
            line=number,
        )
    return fields


def line_chunks(stream: ByteStream, source: str, chunk_bytes: int) -> Iterator[bytes]:
    """Yield the stream in pieces of about ``chunk_bytes`` that end at a line end
    (the last piece may lack its final newline). The cut points depend only on
    the content and ``chunk_bytes``, so a re-read gives the same pieces."""
    rest = b""
    while True:
        try:
            block = stream.read(max(chunk_bytes - len(rest), chunk_bytes // 4, 1))
        except (OSError, EOFError) as exc:
            raise BadInputError(f"Cannot read {source}: {exc}.", source=source) from exc
        if not block:
            break
        data = rest + block
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            yield data[:cut]
    if rest:
        yield rest


def count_lines(chunk: bytes) -> int:
    return chunk.count(b"\n") + (not chunk.endswith(b"\n"))


def line_problem(chunk: bytes, source: str, first_line: int) -> BadInputError | None:
    """Check a chunk line by line, as read_tsv would, for the first bad line."""
    lines = chunk.split(b"\n")
    if chunk.endswith(b"\n"):
        lines.pop()
    for offset, raw in enumerate(lines):
        number = first_line + offset
        try:
            split_line(decode_line(raw, source, number), source, number)
        except BadInputError as exc:
            return exc
    return None
