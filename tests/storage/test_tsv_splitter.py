"""The compiled TSV splitter (``_columns.split_tsv``) against Arrow's reader:
the same table for plain input, and Arrow's reader (with its errors) for the
rest."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_support import make_row

from fixture_traffic import enriched_traffic_rows
from plowline.enrich.fields import FIELD_NAMES
from plowline.storage import batch, loader
from plowline.storage.batch import WIDTH, parse_tsv
from plowline.storage.tsv import count_lines

columns = pytest.importorskip("plowline.storage._columns")

X = "c6ef3124-b53a-4b13-a233-0088f79dcbcb"


def _line(row: list[str]) -> bytes:
    return "\t".join(row).encode()


def _both(data: bytes) -> tuple[pa.Table, pa.Table]:
    """The splitter's table and Arrow's, for the same text."""
    lines = count_lines(data)
    split = batch._split_tsv(data, lines)
    assert split is not None, "the splitter left plain input to Arrow"
    split.validate(full=True)
    return split, parse_tsv(data)


def _same(split: pa.Table, arrow: pa.Table) -> None:
    assert split.schema == arrow.schema
    assert split.num_rows == arrow.num_rows
    assert split.equals(arrow.combine_chunks())
    assert split.to_pylist() == arrow.to_pylist()


def test_captured_traffic_splits_as_arrow_reads_it() -> None:
    rows = enriched_traffic_rows()
    data = b"\n".join(_line(row) for row in rows) + b"\n"
    split, arrow = _both(data)
    _same(split, arrow)
    assert split.num_rows == len(rows)
    # Values read back are the text of the fields, empty ones NULL.
    first = split.slice(0, 1).to_pylist()[0]
    for name, value in zip(FIELD_NAMES, rows[0], strict=True):
        assert first[name] == (value or None)


def test_last_line_without_its_line_feed() -> None:
    data = _line(make_row(X, app_id="a")) + b"\n" + _line(make_row(X, app_id="b"))
    split, arrow = _both(data)
    _same(split, arrow)
    assert split.column("app_id").to_pylist() == ["a", "b"]


def test_column_of_only_empty_values_is_all_null_and_full_has_no_bitmap() -> None:
    rows = [make_row(X, app_id=f"app{n}") for n in range(20)]
    data = b"\n".join(_line(row) for row in rows) + b"\n"
    split, arrow = _both(data)
    _same(split, arrow)
    assert split.column("page_url").null_count == 20
    app = split.column("app_id").chunk(0)
    assert app.null_count == 0 and app.buffers()[0] is None


def test_unicode_of_every_width_splits_as_arrow_reads_it() -> None:
    text = "é ✓ 𝄞 \u00a0 \ufeff inside ok"
    data = _line(make_row(X, page_title=text, se_label="日本語")) + b"\n"
    split, arrow = _both(data)
    _same(split, arrow)
    assert split.column("page_title").to_pylist() == [text]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xef\xbb\xbf", id="byte-order mark at the start"),
        pytest.param(b"\r", id="carriage return"),
        pytest.param(b"\xff", id="not UTF-8"),
        pytest.param(b"\xc3", id="cut UTF-8 sequence"),
        pytest.param(b"\xed\xa0\x80", id="surrogate"),
        pytest.param(b"\xc0\xaf", id="overlong"),
        pytest.param(b"\xf4\x90\x80\x80", id="above U+10FFFF"),
    ],
)
def test_unusual_text_is_left_to_arrow(data: bytes) -> None:
    line = _line(make_row(X, page_title="x"))
    if data == b"\xef\xbb\xbf":
        text = data + line + b"\n"
    else:
        text = line.replace(b"\tx\t", b"\tx" + data + b"\t") + b"\n"
    assert columns.split_tsv(text, WIDTH, 1) is None


def test_wrong_widths_and_counts_are_left_to_arrow() -> None:
    good = _line(make_row(X))
    assert columns.split_tsv(good + b"\n", WIDTH, 1) is not None
    assert columns.split_tsv(good + b"\textra\n", WIDTH, 1) is None
    assert columns.split_tsv(good.rsplit(b"\t", 1)[0] + b"\n", WIDTH, 1) is None
    assert columns.split_tsv(good + b"\n\n", WIDTH, 2) is None  # blank line
    assert columns.split_tsv(good + b"\n" + good + b"\n", WIDTH, 1) is None
    assert columns.split_tsv(good + b"\n", WIDTH, 2) is None
    assert columns.split_tsv(b"", WIDTH, 1) is None


def test_bad_lines_keep_the_messages_arrow_gives(tmp_path: Path) -> None:
    """A load names the line whether or not the splitter is built."""
    good = _line(make_row(X))
    short = good.rsplit(b"\t", 1)[0]
    chunk = good + b"\n" + short + b"\n"
    with pytest.raises(Exception) as caught:
        loader.parse_chunk(chunk, "input.tsv", 10)
    assert "input.tsv, line 11 has 130 fields" in str(caught.value)


def test_buffers_outlive_the_call_and_are_freed_with_the_table() -> None:
    rows = [make_row(X, app_id="a" * n, page_title="t") for n in range(1, 300)]
    data = b"\n".join(_line(row) for row in rows) + b"\n"
    table = batch._split_tsv(data, len(rows))
    assert table is not None
    del data
    gc.collect()
    assert table.column("app_id").to_pylist() == ["a" * n for n in range(1, 300)]
    sliced = table.column("app_id").slice(100, 2)
    del table
    gc.collect()
    assert sliced.to_pylist() == ["a" * 101, "a" * 102]


def test_values_longer_than_the_estimate_grow_their_buffer() -> None:
    """Lines around points spread over the data size each column; a long
    value in a line no point falls in (the last, shorter than the spacing)
    is more than its column was given, which then grows."""
    rows = [make_row(X, app_id="a") for _ in range(10_000)]
    rows[-1][1] = "p" * 5_000  # platform, in the last line only
    data = b"\n".join(_line(row) for row in rows) + b"\n"
    assert len(_line(rows[-1])) < len(data) // 256
    split, arrow = _both(data)
    _same(split, arrow)
    assert split.column("platform").to_pylist()[-2:] == [None, "p" * 5_000]


def test_splitter_lets_other_threads_run() -> None:
    rows = [make_row(X, page_title="p" * 400) for _ in range(20_000)]
    data = b"\n".join(_line(row) for row in rows) + b"\n"
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        for _ in range(5):
            assert columns.split_tsv(data, WIDTH, len(rows)) is not None
    finally:
        done.set()
        counter.join()
    assert ticks > 0


def test_pure_python_switch_leaves_every_batch_to_arrow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _line(make_row(X, app_id="a")) + b"\n"
    monkeypatch.setattr(batch, "_columns", None)
    table = parse_tsv(data, 1)
    assert table.column("app_id").to_pylist() == ["a"]


_FIELD_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"),
    max_size=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(_FIELD_TEXT, min_size=WIDTH, max_size=WIDTH), min_size=1, max_size=12
    ),
    st.booleans(),
)
def test_random_rows_split_as_arrow_reads_them(
    rows: list[list[str]], final_line_feed: bool
) -> None:
    data = b"\n".join("\t".join(row).encode() for row in rows)
    if final_line_feed:
        data += b"\n"
    if data.startswith(b"\xef\xbb\xbf"):
        assert columns.split_tsv(data, WIDTH, len(rows)) is None
        return
    split, arrow = _both(data)
    _same(split, arrow)
    for row, got in zip(rows, split.to_pylist(), strict=True):
        assert [got[name] for name in FIELD_NAMES] == [v or None for v in row]


def test_rows_go_through_the_splitter_and_bad_ones_still_name_the_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from plowline.errors import BadInputError
    from plowline.storage.batch import rows_to_table

    calls: list[int] = []
    split = batch._split_tsv

    def counted(data: bytes | memoryview, lines: int) -> pa.Table | None:
        calls.append(lines)
        return split(data, lines)

    monkeypatch.setattr(batch, "_split_tsv", counted)
    table = rows_to_table([make_row(X, app_id="a"), make_row(X, app_id="b")])
    assert table.column("app_id").to_pylist() == ["a", "b"]
    assert calls == [2]
    forged = make_row(X, app_id="a\nb")
    with pytest.raises(BadInputError, match="Row 2: field app_id contains a tab"):
        rows_to_table([make_row(X), forged])
