"""Reading raw logs: files, folders of files, gzip, and standard input.

A folder gives its closed raw logs only: files the collector is still writing
(``.jsonl.open``), torn tails set aside at recovery (``.jsonl.torn``) and spool
files already sent to a stream (``.jsonl.forwarded``) are left out. A file named
on its own is always read, but the last line of an active file is taken only
once it has its newline.
"""

from __future__ import annotations

import gzip
import logging
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from plowline.errors import BadInputError
from plowline.rawlog.writer import OPEN_SUFFIX

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
# Raw-log files in a folder that hold no closed records (docs/raw-log.md).
_NOT_CLOSED = (".jsonl" + OPEN_SUFFIX, ".jsonl.torn", ".jsonl.forwarded")


def _in_folder(path: Path, folder: Path) -> bool:
    hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
    return path.is_file() and not hidden and not path.name.endswith(_NOT_CLOSED)


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Files as given, folders replaced by the files in them (sorted, recursive,
    hidden files skipped), ``-`` kept for standard input."""
    paths: list[str] = []
    for item in inputs:
        if item == "-":
            paths.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if _in_folder(p, path))
            paths.extend(str(p) for p in found)
            _note_open_files(path)
        elif path.is_file():
            paths.append(item)
        else:
            raise BadInputError(f"Input {item!r} does not exist.", source=item)
    return paths


def _note_open_files(folder: Path) -> None:
    active = sum(1 for _ in folder.rglob("*.jsonl" + OPEN_SUFFIX))
    if active:
        logger.warning(
            "Left out %d raw log(s) in %s that are still being written (.open): "
            "they are read once the collector closes them (at rotation or when it "
            "stops), or name such a file to read it now.",
            active,
            folder,
        )


def _open(path: str) -> BinaryIO:
    if path == "-":
        stream: BinaryIO = sys.stdin.buffer
        head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
        if head == GZIP_MAGIC:
            return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
        return stream
    handle = open(path, "rb")  # noqa: SIM115 - closed by the caller
    if handle.read(2) == GZIP_MAGIC:
        handle.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    handle.seek(0)
    return handle


def iter_lines(inputs: Iterable[str]) -> Iterator[tuple[str, int, bytes]]:
    """(source, line number, line without its newline) for every non-blank line.

    A final line with no newline is returned too: in a finished file it is a
    record like any other, and enrich reports it as failed if it is torn. In an
    active raw log (``.open``) it is still being written, or torn, and is left.
    """
    for source in expand_inputs(inputs):
        name = "<stdin>" if source == "-" else source
        logger.info("Reading %s", name)
        active = source.endswith(OPEN_SUFFIX)
        handle = _open(source)
        try:
            for number, line in enumerate(handle, start=1):
                if active and not line.endswith(b"\n"):
                    logger.warning("Left the unfinished last line of %s", name)
                    break
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield name, number, line
        except (OSError, EOFError) as exc:
            raise BadInputError(f"Could not read {name}: {exc}", source=name) from exc
        finally:
            if source != "-":
                handle.close()


def iter_blocks(
    inputs: Iterable[str], block_bytes: int
) -> Iterator[tuple[str, int, bytes]]:
    """(source, number of the first line, whole lines) in blocks of about
    ``block_bytes``: the lines :func:`iter_lines` gives, left as they are in the
    file (line breaks, blank lines), for a worker process to split.

    The parent process reads and cuts; it does no work per line. Each block ends
    with a line break, but a finished file's last line may have none; an active
    raw log's unfinished last line is left, as by :func:`iter_lines`.
    """
    for source in expand_inputs(inputs):
        name = "<stdin>" if source == "-" else source
        logger.info("Reading %s", name)
        active = source.endswith(OPEN_SUFFIX)
        handle = _open(source)
        number = 1
        # What was read and not given yet, in the pieces read: joined once
        # into a block (one copy of the bytes, however many pieces). The
        # first ``searched`` pieces hold no line break.
        pieces: list[bytes] = []
        size = searched = 0
        try:
            while True:
                try:
                    data = _read_some(handle, block_bytes)
                except (OSError, EOFError) as exc:
                    # Damage (a torn gzip): the whole lines read before it count,
                    # as they do line by line.
                    block, _ = _cut(pieces, 0)
                    if block:
                        yield name, number, block
                    raise BadInputError(
                        f"Could not read {name}: {exc}", source=name
                    ) from exc
                if not data:
                    break
                pieces.append(data)
                size += len(data)
                if size < block_bytes:
                    continue
                block, rest = _cut(pieces, searched)
                if not block:
                    searched = len(pieces)  # one long line, still arriving
                    continue
                pieces, size, searched = rest, sum(map(len, rest)), len(rest)
                yield name, number, block
                number += block.count(b"\n")
            tail = b"".join(pieces)
            if active and tail and not tail.endswith(b"\n"):
                logger.warning("Left the unfinished last line of %s", name)
                tail = tail[: tail.rfind(b"\n") + 1]
            if tail:
                yield name, number, tail
        finally:
            if source != "-":
                handle.close()


def _cut(pieces: list[bytes], searched: int) -> tuple[bytes, list[bytes]]:
    """The pieces up to their last line break, joined, and the pieces after
    it; (b"", pieces) when none after the first ``searched`` holds a break."""
    for index in range(len(pieces) - 1, searched - 1, -1):
        piece = pieces[index]
        cut = piece.rfind(b"\n") + 1
        if cut:
            block = b"".join([*pieces[:index], memoryview(piece)[:cut]])
            rest = [piece[cut:]] if cut < len(piece) else []
            return block, rest + pieces[index + 1 :]
    return b"", pieces


def _read_some(handle: BinaryIO, size: int) -> bytes:
    # What is there, up to size: from standard input, lines as they come.
    read1 = getattr(handle, "read1", None)
    return read1(size) if read1 is not None else handle.read(size)


def block_lines(number: int, block: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its line break) for the non-blank lines of a
    block from :func:`iter_blocks` whose first line is ``number``."""
    return _numbered(block.split(b"\n"), number)


def counted_block_lines(
    number: int, block: bytes
) -> tuple[Iterator[tuple[int, bytes]], int]:
    """:func:`block_lines`, and how many line breaks the block holds."""
    parts = block.split(b"\n")
    return _numbered(parts, number), len(parts) - 1


def _numbered(parts: list[bytes], number: int) -> Iterator[tuple[int, bytes]]:
    for offset, line in enumerate(parts, number):
        if line and not line.isspace():  # blank lines are no records
            yield offset, line.rstrip(b"\r")


class FileRange(NamedTuple):
    """Whole lines of a plain (not compressed) file: ``length`` bytes from
    ``offset``, for a worker process to read itself. ``path`` is the file's
    real path; ``device`` and ``inode`` say which file it was when the range
    was cut, so that a reader can tell it was replaced meanwhile."""

    path: str
    offset: int
    length: int
    device: int
    inode: int


def check_readable(sources: Iterable[str]) -> None:
    """Raise :class:`BadInputError` naming the first source that cannot be
    opened (before any output is opened, and emptied)."""
    for source in sources:
        if source == "-":
            continue
        try:
            with open(source, "rb"):
                pass
        except OSError as exc:
            raise BadInputError(
                f"Could not read {source}: {exc.strerror or exc}", source=source
            ) from exc


def can_read_in_ranges(source: str) -> bool:
    """Whether ``source`` can be read in ranges by other processes: a regular
    file, not compressed, and not an active raw log (the collector renames
    those when it closes them)."""
    if source == "-" or source.endswith(OPEN_SUFFIX):
        return False
    try:
        if not stat.S_ISREG(os.stat(source).st_mode):
            return False  # a pipe or a device: read once, in order
        with open(source, "rb") as handle:
            return handle.read(2) != GZIP_MAGIC
    except OSError as exc:
        raise BadInputError(
            f"Could not read {source}: {exc.strerror or exc}", source=source
        ) from exc


# How much is read at a time to find where a range ends.
_WINDOW = 1 << 16


def file_ranges(path: str, block_bytes: int) -> Iterator[FileRange]:
    """The ranges of about ``block_bytes`` (whole lines each) that cover a
    regular file as it is now, without reading it: only the bytes around each
    cut are read."""
    logger.info("Reading %s", path)
    with open(path, "rb") as handle:
        fd = handle.fileno()
        facts = os.fstat(fd)
        real = os.path.realpath(path)  # /dev/fd/3 names another file elsewhere
        size = facts.st_size
        start = 0
        while start < size:
            end = size
            if start + block_bytes < size:
                end = _last_break(fd, start, start + block_bytes)
                if end == start:  # a line longer than a block: it ends later
                    end = _next_break(fd, start + block_bytes, size)
            yield FileRange(real, start, end - start, facts.st_dev, facts.st_ino)
            start = end


def _last_break(fd: int, start: int, end: int) -> int:
    """The offset after the last line break in [start, end), or start."""
    while end > start:
        low = max(start, end - _WINDOW)
        found = os.pread(fd, end - low, low).rfind(b"\n")
        if found != -1:
            return low + found + 1
        end = low
    return start


def _next_break(fd: int, start: int, size: int) -> int:
    """The offset after the first line break at or after start, or the end
    (size, or where the file ends now if it was cut short meanwhile)."""
    while start < size:
        window = os.pread(fd, min(_WINDOW, size - start), start)
        if not window:
            return start  # truncated meanwhile: the reader will say so
        found = window.find(b"\n")
        if found != -1:
            return start + found + 1
        start += len(window)
    return size


def read_range(piece: FileRange, name: str) -> bytes:
    """The bytes of a range, read by whoever enriches them; a file that was
    replaced, moved or cut short since the range was cut is an error naming
    it (``name``), never other bytes."""
    try:
        with open(piece.path, "rb") as handle:
            facts = os.fstat(handle.fileno())
            if (facts.st_dev, facts.st_ino) != (piece.device, piece.inode):
                raise BadInputError(
                    f"Could not read {name}: it was replaced or moved while it "
                    "was being read; enrich it again",
                    source=name,
                )
            data = os.pread(handle.fileno(), piece.length, piece.offset)
    except OSError as exc:
        raise BadInputError(
            f"Could not read {name}: {exc.strerror or exc}", source=name
        ) from exc
    if len(data) != piece.length:
        raise BadInputError(
            f"Could not read {name}: it was cut short while it was being read; "
            "enrich it again",
            source=name,
        )
    return data
