"""Raw logs read in blocks (for worker processes) give the lines, numbers and
sources that reading them line by line gives."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plowline.errors import BadInputError
from plowline.rawlog.reader import (
    block_lines,
    can_read_in_ranges,
    counted_block_lines,
    file_ranges,
    iter_blocks,
    iter_lines,
    read_range,
)
from plowline.rawlog.writer import OPEN_SUFFIX


def _by_blocks(inputs: list[str], block_bytes: int) -> list[tuple[str, int, bytes]]:
    return [
        (source, number, line)
        for source, first, block in iter_blocks(inputs, block_bytes)
        for number, line in block_lines(first, block)
    ]


CONTENT = st.lists(
    st.sampled_from([b"a", b"{}", b"\n", b"\r\n", b"\r", b" ", b"x" * 40, b"\t"]),
    max_size=60,
).map(b"".join)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(CONTENT, st.integers(1, 50), st.booleans(), st.booleans())
@example(b"one\n\ntwo\r\n   \nthree", 4, False, False)
@example(b"a" * 100 + b"\nb", 7, True, False)
@example(b"first\nunfinished", 3, False, True)
def test_blocks_give_the_lines_of_the_file(
    tmp_path: Path, content: bytes, block_bytes: int, compressed: bool, active: bool
) -> None:
    # An active raw log is never compressed (the collector writes plain text).
    active = active and not compressed
    name = "raw.jsonl" + (OPEN_SUFFIX if active else "") + (".gz" if compressed else "")
    path = tmp_path / name
    path.write_bytes(gzip.compress(content) if compressed else content)
    expected = list(iter_lines([str(path)]))
    assert _by_blocks([str(path)], block_bytes) == expected
    # Blocks are whole lines: only a finished file's last one may lack a break.
    blocks = [block for _, _, block in iter_blocks([str(path)], block_bytes)]
    finished = content[: content.rfind(b"\n") + 1] if active else content
    assert b"".join(blocks) == finished
    assert all(block.endswith(b"\n") for block in blocks[:-1])


def test_blocks_of_a_folder_keep_each_files_numbers(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"1\n2\n3\n")
    (tmp_path / "b.jsonl").write_bytes(b"\n\nx\ny")
    found = [(Path(s).name, n, line) for s, n, line in _by_blocks([str(tmp_path)], 2)]
    assert found == [
        ("a.jsonl", 1, b"1"),
        ("a.jsonl", 2, b"2"),
        ("a.jsonl", 3, b"3"),
        ("b.jsonl", 3, b"x"),
        ("b.jsonl", 4, b"y"),
    ]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(CONTENT, st.integers(1, 50))
@example(b"one\n\ntwo\r\n   \nthree", 4)
@example(b"a" * 100 + b"\nb\n", 7)
@example(b"no break at all", 4)
def test_ranges_give_the_lines_of_the_file(
    tmp_path: Path, content: bytes, block_bytes: int
) -> None:
    """Ranges of a regular file, read where they are enriched, hold the lines
    (and line numbers) that reading it line by line gives."""
    path = tmp_path / "raw.jsonl"
    path.write_bytes(content)
    assert can_read_in_ranges(str(path))
    found = []
    first = 1
    for piece in file_ranges(str(path), block_bytes):
        block = read_range(piece, "raw.jsonl")
        assert len(block) == piece.length > 0
        found += [(str(path), n, line) for n, line in block_lines(first, block)]
        first += block.count(b"\n")
    assert found == list(iter_lines([str(path)]))


def test_only_closed_regular_files_are_read_in_ranges(tmp_path: Path) -> None:
    """Gzip, standard input, pipes and active raw logs are read in order, by
    one process holding the file open."""
    packed = tmp_path / "raw.jsonl.gz"
    packed.write_bytes(gzip.compress(b"x\n"))
    active = tmp_path / ("raw.jsonl" + OPEN_SUFFIX)
    active.write_bytes(b"x\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert not can_read_in_ranges(str(packed))
    assert not can_read_in_ranges("-")
    assert not can_read_in_ranges(str(active))
    assert not can_read_in_ranges(str(fifo))


def test_a_range_of_a_file_replaced_or_cut_short_is_an_error(tmp_path: Path) -> None:
    """A range is read from the file it was cut from, or not at all."""
    path = tmp_path / "raw.jsonl"
    path.write_bytes(b"one\ntwo\n" * 100)
    first, second, *_ = file_ranges(str(path), 300)
    assert read_range(first, "raw.jsonl").startswith(b"one\ntwo\n")
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"other\n" * 200)
    fresh.replace(path)
    with pytest.raises(BadInputError, match=r"raw\.jsonl: it was replaced or moved"):
        read_range(second, "raw.jsonl")
    with open(path, "r+b") as handle:  # the same file, truncated
        handle.truncate(10)
    [only] = file_ranges(str(path), 300)
    cut = only._replace(length=only.length + 5)
    with pytest.raises(BadInputError, match=r"raw\.jsonl: it was cut short"):
        read_range(cut, "raw.jsonl")


@settings(max_examples=300, deadline=None)
@given(CONTENT, st.integers(1, 9))
def test_counted_block_lines_are_block_lines_and_their_breaks(
    block: bytes, first: int
) -> None:
    lines, breaks = counted_block_lines(first, block)
    assert list(lines) == list(block_lines(first, block))
    assert breaks == block.count(b"\n")
