"""Reading enriched TSV inputs: files, ``.gz`` files and standard input.

Inputs are read in chunks of whole lines (:func:`input_chunks`), which become
the batches of a load; :func:`read_tsv` yields single rows for small callers.
A plain file is mapped into memory and its chunks are views of the map, so its
bytes are not copied before Arrow parses them; compressed files and standard
input are read and copied (:func:`line_chunks`). Both cut at the same places.
"""

from __future__ import annotations

import gzip
import io
import logging
import mmap
import os
import re
import stat
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from plowline.errors import BadInputError
from plowline.storage.batch import WIDTH

log = logging.getLogger(__name__)

ByteStream = IO[bytes] | io.BufferedIOBase
# Whole lines of an input: bytes, or a view of a mapped file.
Chunk = bytes | memoryview
_LINE_END = re.compile(b"\n")


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
    except (OSError, EOFError, zlib.error) as exc:
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
    the content and ``chunk_bytes``, so a re-read gives the same pieces. Each
    piece is copied once after the read (the partial line carried over, then
    the block up to its last line end)."""
    rest = b""
    while True:
        try:
            block = stream.read(max(chunk_bytes - len(rest), chunk_bytes // 4, 1))
        except (OSError, EOFError, zlib.error) as exc:
            raise BadInputError(f"Cannot read {source}: {exc}.", source=source) from exc
        if not block:
            break
        # The carried-over part has no line end, so the cut is in the block.
        cut = block.rfind(b"\n") + 1
        if not cut:
            rest += block
            continue
        if rest:
            chunk = b"".join((rest, memoryview(block)[:cut]))
        else:
            chunk = block if cut == len(block) else block[:cut]
        rest = block[cut:]
        del block
        yield chunk
    if rest:
        yield rest


def input_chunks(source: str, chunk_bytes: int) -> Iterator[tuple[Chunk, int]]:
    """An input's chunks of whole lines (as :func:`line_chunks` cuts them) with
    their line counts. A plain file is mapped (a view per chunk, no copy); it
    must not shrink while it is read (the map would then fault)."""
    mapped = _map(source)
    if mapped is None:
        with open_binary(source) as stream:
            for chunk in line_chunks(stream, source, chunk_bytes):
                yield chunk, count_lines(chunk)
        return
    view = memoryview(mapped)
    size = len(view)
    start = 0  # of the chunk being gathered
    scanned = 0  # its bytes before this point hold no line end
    while scanned < size:
        wanted = max(chunk_bytes - (scanned - start), chunk_bytes // 4, 1)
        end = min(scanned + wanted, size)
        cut = mapped.rfind(b"\n", scanned, end) + 1
        scanned = end
        if cut:
            yield view[start:cut], len(_LINE_END.findall(mapped, start, cut))
            start = cut
    if start < size:
        yield view[start:size], len(_LINE_END.findall(mapped, start, size)) + 1


def _map(source: str) -> mmap.mmap | None:
    """A read-only map of a plain, non-empty file; None for anything else."""
    if source == "-" or source.endswith(".gz"):
        return None
    try:
        # stat before opening: opening a named pipe here and closing it again
        # would lose what a writer sent in between (open_binary reads it).
        if not stat.S_ISREG(os.stat(source).st_mode):
            return None
        with open(source, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
                return None
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None  # open_binary then names the problem, or reads it as a stream


def count_lines(chunk: Chunk) -> int:
    data = chunk if isinstance(chunk, bytes) else chunk.tobytes()
    return data.count(b"\n") + (not data.endswith(b"\n"))


def line_problem(chunk: Chunk, source: str, first_line: int) -> BadInputError | None:
    """Check a chunk line by line, as read_tsv would, for the first bad line."""
    if not isinstance(chunk, bytes):
        chunk = chunk.tobytes()
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
