"""Tester's pass over the compiled TSV splitter (``_columns.split_tsv``) alone:
bounds near guard pages, widths other than 131, the rows argument, the
estimate's sample points, buffer growth and shrinking, lifetimes, threads,
and Arrow's reader as the oracle for every table it gives.

Cases that might crash run in a subprocess, so a fault shows as a failed
test, not a dead run. Found and since fixed: input changed during the cut
(a bytearray written by another thread, a mapped file rewritten in place)
gave strings of invalid UTF-8, as the text was checked before it was copied;
a row count the data cannot hold raised MemoryError instead of giving None."""

from __future__ import annotations

import gc
import os
import random
import threading
import time
import tracemalloc

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pcsv  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plowline.storage import batch
from plowline.storage.batch import WIDTH, parse_tsv
from plowline.storage.tsv import count_lines
from script_runs import run_python

columns = pytest.importorskip("plowline.storage._columns")


def arrow_read(data: bytes, width: int) -> pa.Table:
    """Arrow's reader with the loader's options, for any width."""
    names = [f"c{j}" for j in range(width)]
    return pcsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=pcsv.ReadOptions(column_names=names),
        parse_options=batch._TSV_PARSE,
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=True,
            null_values=[""],
        ),
    )


def to_table(cut: list, rows: int) -> pa.Table:
    arrays = []
    for valid, offsets, values, nulls in cut:
        buffers = [
            None if valid is None else pa.foreign_buffer(*valid),
            pa.foreign_buffer(*offsets),
            pa.foreign_buffer(*values),
        ]
        arrays.append(pa.Array.from_buffers(pa.string(), rows, buffers, nulls))
    return pa.Table.from_arrays(arrays, names=[f"c{j}" for j in range(len(cut))])


def split_table(data: object, width: int, rows: int) -> pa.Table | None:
    cut = columns.split_tsv(data, width, rows)
    if cut is None:
        return None
    table = to_table(cut, rows)
    table.validate(full=True)
    return table


def assert_as_arrow(data: bytes, width: int, rows: int | None = None) -> pa.Table:
    rows = count_lines(data) if rows is None else rows
    split = split_table(data, width, rows)
    assert split is not None, "the splitter left plain input to Arrow"
    arrow = arrow_read(data, width)
    assert split.num_rows == arrow.num_rows == rows
    assert split.equals(arrow.combine_chunks())
    assert split.to_pylist() == arrow.to_pylist()
    return split


# ---------------------------------------------------------------------------
# Bounds: data against guard pages (a read past either end faults)

_GUARDED = """
    import ctypes, itertools, mmap, random
    from plowline.storage import _columns
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

    def guarded(data, at_start):
        body = max(4096, -(-len(data) // 4096) * 4096)
        mapped = mmap.mmap(-1, body + 8192)
        off = 4096 if at_start else 4096 + body - len(data)
        mapped[off : off + len(data)] = data
        addr = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
        assert libc.mprotect(addr, 4096, 0) == 0
        assert libc.mprotect(addr + 4096 + body, 4096, 0) == 0
        return mapped, memoryview(mapped)[off : off + len(data)]

    def count(data):
        return data.count(b"\\n") + (not data.endswith(b"\\n"))

    runs = split = 0

    def both_sides(data, width):
        global runs, split
        for at_start in (True, False):
            mapped, view = guarded(data, at_start)
            split += _columns.split_tsv(view, width, count(data)) is not None
            view.release()
            mapped.close()
            runs += 1

    for size in range(1, 7):
        pieces = [b"a", b"\\t", b"\\n", b"\\xc3\\xa9"]
        for parts in itertools.product(pieces, repeat=size):
            data = b"".join(parts)
            for width in (1, 2, 3):
                both_sides(data, width)
    rnd = random.Random(7)
    for _ in range(1500):
        size = rnd.choice([rnd.randint(1, 40), rnd.randint(1, 600), 4095, 4096, 4097])
        width = rnd.randint(1, 4)
        spacing = rnd.choice([1, 7, 8, 9, size // 256 or 1, size // 256 + 1])
        text = b""
        while len(text) < size:
            text += b"\\t".join(b"x" * rnd.randint(0, spacing) for _ in range(width))
            text += b"\\n"
        both_sides(text[:size], width)
    print("runs", runs, "split", split)
"""


def test_data_against_guard_pages_is_read_within_bounds() -> None:
    """Every input of up to 6 bytes of a, tab, LF and é, and random ones up to
    a page, placed against an inaccessible page on either side: the SWAR tab
    and UTF-8 scans and the estimate's memrchr/memchr stay inside."""
    done = run_python(_GUARDED)
    assert done.returncode == 0, f"rc {done.returncode}: {done.stderr[-400:]}"
    runs, split = (int(x) for x in done.stdout.split()[1::2])
    assert runs == 6 * sum(4**n for n in range(1, 7)) + 3000
    assert split > runs // 10


# ---------------------------------------------------------------------------
# Widths, rows and the estimate's sample points, against Arrow's reader


def test_width_one_with_blank_lines_splits_as_arrow_reads_it() -> None:
    for data in (
        b"\n",
        b"\n\n",
        b"a\n\nb",
        b"a\n\nb\n",
        b"\n\na",
        b"x" * 300 + b"\n\n",
    ):
        split = assert_as_arrow(data, 1)
        assert split.column(0).to_pylist() == [
            line or None for line in data.decode().split("\n")[: split.num_rows]
        ]


@pytest.mark.parametrize("width", [1, 2, 3, 8, 9, 64, WIDTH, 200])
def test_other_widths_split_as_arrow_reads_them(width: int) -> None:
    rnd = random.Random(width)
    lines = [
        b"\t".join(
            rnd.choice([b"", b"v", "é✓".encode() * rnd.randint(1, 4), b"z" * 600])
            for _ in range(width)
        )
        for _ in range(37)
    ]
    for end in (b"", b"\n"):
        assert_as_arrow(b"\n".join(lines) + end, width)


def test_widths_other_than_the_fields_are_left_to_arrow() -> None:
    line = b"a\tb\tc"
    for width in (1, 2, 4, 5, 131):
        assert columns.split_tsv(line + b"\n", width, 1) is None
        assert columns.split_tsv(line, width, 1) is None
    assert columns.split_tsv(line, 3, 1) is not None


@pytest.mark.parametrize("rows", [8, 9, 15, 16, 17, 63, 64, 65])
def test_validity_bitmap_for_any_row_count(rows: int) -> None:
    values = [b"" if n % 3 == 0 or n == rows - 1 else b"%d" % n for n in range(rows)]
    data = b"\n".join(b"x\t" + v for v in values)
    cut = columns.split_tsv(data, 2, rows)
    assert cut is not None
    assert cut[0][0] is None and cut[0][3] == 0
    valid, offsets, _, nulls = cut[1]
    assert nulls == sum(not v for v in values)
    assert valid[1] == (rows + 7) // 8 and offsets[1] == 4 * (rows + 1)
    bits = pa.foreign_buffer(*valid).to_pybytes()
    for n, value in enumerate(values):
        assert bool(bits[n >> 3] >> (n & 7) & 1) == bool(value), n
    # Bits past the last row are clear.
    assert bits[-1] >> (rows - 1 & 7) + 1 == 0 or rows % 8 == 0
    assert_as_arrow(data, 2)


def test_one_row_offsets_and_values() -> None:
    for data, width in ((b"a", 1), (b"\t", 2), (b"ab\t\tc\n", 3)):
        cut = columns.split_tsv(data, width, 1)
        assert cut is not None
        for _, offsets, values, _ in cut:
            assert offsets[1] == 8
            ends = pa.foreign_buffer(*offsets).to_pybytes()
            assert int.from_bytes(ends[4:], "little") == values[1]
        assert_as_arrow(data, width)


def _line(size: int) -> bytes:
    """A line of two fields, ``size`` bytes with its LF."""
    body = size - 2
    return b"k" * (body // 2) + b"\t" + b"m" * (body - body // 2) + b"\n"


@pytest.mark.parametrize("size", [4, 5, 255, 256, 257, 1024])
@pytest.mark.parametrize("where", ["line start", "line feed", "after start"])
def test_sample_points_on_line_starts_and_line_feeds(size: int, where: str) -> None:
    """256 lines as long as the spacing of the estimate's points; the first
    and last one byte shorter or longer, so that the points fall on each line
    start, on each LF, or one byte into each line."""
    first = last = size
    if where == "line feed":
        first, last = size - 1, size + 1
    elif where == "after start":
        first, last = size + 1, size - 1
    data = _line(first) + _line(size) * 254 + _line(last)
    assert len(data) == 256 * size
    assert_as_arrow(data, 2)
    assert_as_arrow(data[:-1], 2)  # no final LF
    # And a last line longer than all the others, which no point measures.
    assert_as_arrow(data + b"y" * 5000 + b"\t" + b"w" * 9000, 2)


def test_one_huge_line_and_many_tiny_ones() -> None:
    huge = b"h" * 300_000 + b"\t" + b"g" * 100_000
    assert_as_arrow(huge, 2)
    assert_as_arrow(huge + b"\n" + b"a\tb\n" * 5000, 2)
    assert_as_arrow(b"a\tb\n" * 5000 + huge, 2)
    assert_as_arrow(b"\n" * 1000 + b"z" * 100_000 + b"\n" * 1000, 1)


def test_data_sizes_around_the_point_spacing_and_no_final_line_feed() -> None:
    for size in [*range(1, 41), 255, 256, 257, 511, 512, 513, 600, 1023, 1024, 1025]:
        data = (b"abcd\n" * 300)[:size]
        assert_as_arrow(data, 1)
        data = (b"a\tb\n" * 300)[:size]
        if data.endswith(b"a"):  # a last line without its tab
            data = data[:-1] + b"\t"
        assert_as_arrow(data, 2)


def test_rows_that_do_not_match_are_left_to_arrow() -> None:
    data = b"a\tb\nc\td\n"
    for rows in (-(2**63), -1, 0, 1, 3, 4, 1000):
        assert columns.split_tsv(data, 2, rows) is None
    for width in (-(2**63), -1, 0):
        assert columns.split_tsv(data, width, 2) is None
    assert columns.split_tsv(data, 2, 2) is not None


@pytest.mark.parametrize("rows", [10**12, 2**62, 2**63 - 1])
def test_a_row_count_no_data_can_hold_is_none_not_memory_error(rows: int) -> None:
    assert columns.split_tsv(b"a\tb\n", 2, rows) is None


def test_wrong_line_count_under_an_address_space_limit_falls_back_to_arrow() -> None:
    done = run_python(
        """
        import resource
        from plowline.storage.batch import WIDTH, parse_tsv
        line = b"\\t".join([b"x"] * WIDTH) + b"\\n"
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        print("rows", parse_tsv(line, 10**7).num_rows)
        """
    )
    assert done.returncode == 0, done.stderr[-300:]
    assert "rows 1" in done.stdout


# ---------------------------------------------------------------------------
# Growth and the give-back of leftover room


def test_many_columns_far_over_the_estimate_grow_and_keep_their_values() -> None:
    """Sampled lines are all short; every 97th line (never on a point) has a
    long value in a different column."""
    width = 9
    lines = []
    for n in range(4000):
        fields = [b"s"] * width
        if n % 97 == 13:
            fields[n % width] = b"%d:" % n + b"L" * (20_000 + n)
        lines.append(b"\t".join(fields))
    split = assert_as_arrow(b"\n".join(lines), width)
    assert split.column(13 % width).to_pylist()[13] == "13:" + "L" * 20_013


def test_room_left_over_is_given_back_and_values_stay_intact() -> None:
    """A column given far more than it needs (its sampled lines are one long
    line, the rest of the data is in another column) is cut to its size."""
    big = b"A" * 400_000 + b"\t"
    rest = [b"\t" + b"b%05d" % n * 20 for n in range(3000)]
    data = b"\n".join([big, *rest]) + b"\n"
    cut = columns.split_tsv(data, 2, 3001)
    assert cut is not None
    sizes = [values[1] for _, _, values, _ in cut]
    assert sizes == [400_000, 3000 * 120]
    table = to_table(cut, 3001)
    table.validate(full=True)
    assert table.column(0).to_pylist()[0] == "A" * 400_000
    assert table.column(1).to_pylist()[2999] == "b02998" * 20
    assert table.equals(arrow_read(data, 2).combine_chunks())
    del cut, table
    # Traced memory pinned by a table is about its data, not the estimate.
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        kept = split_table(data, 2, 3001)
        gc.collect()
        pinned = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept is not None
    assert pinned < sum(sizes) + 2 * 4 * 3002 + 2 * 64 * 1024 + 4096, pinned


@pytest.mark.skipif(
    not os.environ.get("PLOWLINE_BIG_TESTS"),
    reason="needs ~4.5 GB of memory and ~20 s; set PLOWLINE_BIG_TESTS=1",
)
def test_column_of_exactly_two_gib_is_split_and_one_more_byte_is_not() -> None:
    done = run_python(
        """
        from plowline.storage import _columns
        for n in (2**31 - 1, 2**31):
            data = b"a" * n + b"\\tb\\n"
            cut = _columns.split_tsv(data, 2, 1)
            print(n, None if cut is None else cut[0][2][1])
            del data, cut
        """,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-300:]
    assert done.stdout.split("\n")[:2] == [f"{2**31 - 1} {2**31 - 1}", f"{2**31} None"]


# ---------------------------------------------------------------------------
# Lifetimes and memory


def test_raw_buffers_outlive_input_and_result_tuples() -> None:
    data = bytearray(b"\n".join(b"k%d\t\tv%d" % (n, n) for n in range(500)))
    cut = columns.split_tsv(data, 3, 500)
    assert cut is not None
    buffers = [
        [
            None if valid is None else pa.foreign_buffer(*valid),
            pa.foreign_buffer(*offsets),
            pa.foreign_buffer(*values),
        ]
        for valid, offsets, values, _ in cut
    ]
    nulls = [c[3] for c in cut]
    data[:] = b"\xff" * len(data)
    del cut, data
    gc.collect()
    arrays = [
        pa.Array.from_buffers(pa.string(), 500, b, n)
        for b, n in zip(buffers, nulls, strict=True)
    ]
    del buffers
    gc.collect()
    assert arrays[0].to_pylist()[499] == "k499"
    assert arrays[1].null_count == 500
    assert arrays[2].to_pylist()[:2] == ["v0", "v1"]


def test_tables_made_and_dropped_in_a_loop_free_their_memory() -> None:
    small = b"a\n\nbb\n" * 10
    grown = b"s\n" * 300 + b"G" * 200_000 + b"\n" + b"s\n" * 300
    shrunk = b"A" * 300_000 + b"\n" + b"b\n" * 10

    def once() -> None:
        for data in (small, grown, shrunk):
            table = split_table(data, 1, count_lines(data))
            assert table is not None
            table.column(0).slice(1, 1).to_pylist()
        assert columns.split_tsv(grown, 1, 5) is None

    for _ in range(20):
        once()
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(300):
            once()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024, f"{after - before} bytes kept"


# ---------------------------------------------------------------------------
# Threads


def test_many_threads_on_the_same_and_different_data() -> None:
    width = 5
    inputs = []
    for seed in range(6):
        rnd = random.Random(seed)
        lines = [
            b"\t".join(
                rnd.choice([b"", b"v", b"w" * rnd.choice([40, 3000, 70_000])])
                for _ in range(width)
            )
            for _ in range(rnd.randint(1, 150))
        ]
        inputs.append(b"\n".join(lines) + b"\n")
    expected = [arrow_read(d, width).combine_chunks() for d in inputs]
    shared = bytearray(inputs[0])
    wrong: list[tuple[int, int]] = []

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(12):
            k = rnd.randrange(len(inputs))
            data = shared if k == 0 and seed % 2 else inputs[k]
            table = split_table(data, width, count_lines(inputs[k]))
            if table is None or not table.equals(expected[k]):
                wrong.append((seed, k))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong


def test_input_changed_during_the_cut_never_gives_an_invalid_table() -> None:
    rows = 400_000
    data = bytearray(b"abcdefgh\tijklmnop\n" * rows)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            data[-5] = 0xFF
            data[-5] = ord("n")

    flipper = threading.Thread(target=flip)
    flipper.start()
    invalid = None
    try:
        deadline = time.monotonic() + 8
        while invalid is None and time.monotonic() < deadline:
            cut = columns.split_tsv(data, 2, rows)
            if cut is None:
                continue
            try:
                to_table(cut, rows).validate(full=True)
            except pa.ArrowInvalid as exc:
                invalid = exc
    finally:
        stop.set()
        flipper.join()
    assert invalid is None, f"the splitter gave an invalid table: {invalid}"


# ---------------------------------------------------------------------------
# Differential at any width: every table the splitter gives, Arrow gives


_PIECES = [
    b"a",
    b"\t",
    b"\n",
    b"\r",
    b"\x00",
    b"\xc3\xa9",
    b"\xef\xbb\xbf",
    b"\xf0\x9f\x98\x80",
    b"\xf4\x8f\xbf\xbf",
    b"\xed\x9f\xbf",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xe0\x9f\xbf",
    b"z" * 9,
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=60).map(b"".join),
    st.integers(1, 5),
    st.sampled_from([0, 0, 0, 1, -1]),
)
def test_any_bytes_any_width_split_only_as_arrow_reads_them(
    data: bytes, width: int, off: int
) -> None:
    rows = count_lines(data) + off
    split = split_table(data, width, rows) if rows > 0 else None
    if split is None:
        return
    arrow = arrow_read(data, width)
    assert rows == arrow.num_rows == split.num_rows
    assert split.equals(arrow.combine_chunks())


def test_parse_tsv_with_and_without_lines_agree_on_awkward_wide_data() -> None:
    tabs = b"\t" * (WIDTH - 1)
    lines = [tabs, b"x" + tabs + b"y", "é".encode() * 700 + tabs, tabs + b"\x00"]
    data = b"\n".join(lines * 50)
    split = parse_tsv(data, count_lines(data))
    assert split.equals(parse_tsv(data).combine_chunks())
    assert split.column(WIDTH - 1).to_pylist()[:4] == [None, "y", None, "\x00"]
