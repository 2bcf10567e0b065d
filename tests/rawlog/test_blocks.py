"""Raw logs read in blocks (for worker processes) give the lines, numbers and
sources that reading them line by line gives."""

from __future__ import annotations

import gzip
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plowline.rawlog.reader import (
    block_lines,
    file_ranges,
    is_plain_file,
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
@given(CONTENT, st.integers(1, 50), st.booleans())
@example(b"one\n\ntwo\r\n   \nthree", 4, False)
@example(b"a" * 100 + b"\nb\n", 7, False)
@example(b"first\nunfinished", 3, True)
@example(b"no break at all", 4, True)
def test_ranges_give_the_lines_of_the_file(
    tmp_path: Path, content: bytes, block_bytes: int, active: bool
) -> None:
    """Ranges of a plain file, read where they are enriched, hold the lines
    (and line numbers) that reading it line by line gives."""
    path = tmp_path / ("raw.jsonl" + (OPEN_SUFFIX if active else ""))
    path.write_bytes(content)
    assert is_plain_file(str(path))
    found = []
    first = 1
    for piece in file_ranges(str(path), block_bytes):
        block = read_range(piece)
        assert len(block) == piece.length > 0
        found += [(str(path), n, line) for n, line in block_lines(first, block)]
        first += block.count(b"\n")
    assert found == list(iter_lines([str(path)]))


def test_gzip_and_standard_input_are_not_read_in_ranges(tmp_path: Path) -> None:
    packed = tmp_path / "raw.jsonl.gz"
    packed.write_bytes(gzip.compress(b"x\n"))
    assert not is_plain_file(str(packed))
    assert not is_plain_file("-")
