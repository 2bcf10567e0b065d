"""Cutting inputs into batches: a mapped file and a stream cut at the same places."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from store_support import make_row, write_tsv

from plowline.storage import loader
from plowline.storage.base import Store
from plowline.storage.tsv import count_lines, input_chunks, line_chunks

LINES = [b"a" * n + b"\tx" for n in (3, 40, 0, 7, 120, 5, 2, 64, 9, 1)]


@pytest.mark.parametrize("ending", [b"\n", b""])
@pytest.mark.parametrize("chunk_bytes", [1, 8, 30, 50, 100, 1000])
def test_mapped_file_is_cut_as_a_stream_is(
    tmp_path: Path, ending: bytes, chunk_bytes: int
) -> None:
    data = b"\n".join(LINES) + ending
    path = tmp_path / "input.tsv"
    path.write_bytes(data)

    pieces = input_chunks(str(path), chunk_bytes)
    mapped = [(bytes(chunk), lines) for chunk, lines in pieces]
    streamed = list(line_chunks(io.BytesIO(data), "stream", chunk_bytes))

    assert [chunk for chunk, _ in mapped] == streamed
    assert [lines for _, lines in mapped] == [count_lines(c) for c in streamed]
    assert b"".join(streamed) == data
    assert sum(lines for _, lines in mapped) == len(LINES)
    # Every piece but the last ends at a line end.
    assert all(chunk.endswith(b"\n") for chunk in streamed[:-1])


def test_empty_file_has_no_chunks(tmp_path: Path) -> None:
    path = tmp_path / "empty.tsv"
    path.write_bytes(b"")
    assert list(input_chunks(str(path), 100)) == []


def test_gzip_copy_of_a_loaded_file_is_skipped(store: Store, tmp_path: Path) -> None:
    rows = [make_row(f"{n:08d}-0000-4000-8000-000000000000") for n in range(25)]
    path = write_tsv(tmp_path / "events.tsv", rows)
    packed = tmp_path / "events.tsv.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    size = len(path.read_bytes()) // 5

    first = loader.load_files(store, [str(path)], batch_bytes=size)
    again = loader.load_files(store, [str(packed)], batch_bytes=size)

    assert first.events == 25 and first.inputs[0].batches >= 5
    assert again.events == 0
    assert again.skipped_batches == first.inputs[0].batches
