"""A tester's pass over the loader's fast paths (commits f3fa8dd, d964ce8,
5b0373b): the compiled TSV splitter (``_columns.split_tsv``) against Arrow's
reader, the reading thread, the id counts made ahead, PostgreSQL's COPY text
made on the preparing thread and its hash index, DuckDB's count-first lookup.

Seven cases found faults, since fixed: lines over Arrow's block size read by
one path only, the splitter's size estimate (sampling biased towards lines
after long ones, scaled by lines rather than bytes), padding that made every
small table pin 4 MB, a corrupt gzip input raising zlib's error instead of
naming the file, and buffers from an ``allocate`` callback trusted for their
size (the splitter has since gone back to memory of its own, and takes no
callback).
Risky calls of the C extension run in a subprocess, so a crash fails one test
instead of the session.
"""

from __future__ import annotations

import array
import gc
import gzip
import json
import mmap
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_support import (
    STORE_KINDS,
    cli_args,
    make_row,
    make_store,
    write_tsv,
)

from plowline.errors import BadInputError
from plowline.storage import batch, loader
from plowline.storage.batch import WIDTH, parse_tsv
from plowline.storage.loader import load_files
from plowline.storage.tsv import count_lines
from script_runs import run_plowline as plowline
from script_runs import run_python

columns = pytest.importorskip("plowline.storage._columns")

X = "c6ef3124-b53a-4b13-a233-0088f79dcbcb"
Y = "0d1e2f30-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
CTX = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"

needs_postgres = pytest.mark.skipif(
    "postgres" not in STORE_KINDS, reason="no PostgreSQL store"
)


def event_id(n: int) -> str:
    return f"{n:08d}-aaaa-4bbb-8ccc-dddddddddddd"


def tsv_line(event: str = X, **values: str) -> bytes:
    return "\t".join(make_row(event, **values)).encode()


def lines_of(*lines: bytes, final_lf: bool = True) -> bytes:
    return b"\n".join(lines) + (b"\n" if final_lf else b"")


def arrow_or_error(data: Any) -> pa.Table | Exception:
    try:
        return parse_tsv(data)
    except pa.ArrowInvalid as exc:
        return exc


def assert_split_as_arrow(data: Any, rows: int | None = None) -> pa.Table:
    """The splitter's table equals Arrow's; both exist."""
    rows = count_lines(bytes(data)) if rows is None else rows
    split = batch._split_tsv(data, rows)
    assert split is not None, "the splitter left plain input to Arrow"
    split.validate(full=True)
    arrow = parse_tsv(data)
    assert split.num_rows == arrow.num_rows == rows
    assert split.equals(arrow.combine_chunks())
    return split


# ---------------------------------------------------------------------------
# The splitter against Arrow's reader: byte-level differential (held)

_PIECES = [
    b"a",
    b"bc",
    b" ",
    b"\t",
    b"\n",
    b"\r",
    b"\x00",
    b'"',
    b"\\",
    b"NULL",
    b"\xc3\xa9",  # U+00E9
    b"\xe2\x9c\x93",  # U+2713
    b"\xef\xbb\xbf",  # U+FEFF
    b"\xef\xbf\xbf",  # U+FFFF
    b"\xed\x9f\xbf",  # U+D7FF, just below the surrogates
    b"\xee\x80\x80",  # U+E000, just above them
    b"\xf0\x9f\x98\x80",  # plane 1
    b"\xf3\xa0\x80\x81",  # plane 14
    b"\xf4\x8f\xbf\xbf",  # U+10FFFF
    b"\xc3",  # cut
    b"\xa9",  # lone continuation
    b"\xed\xa0\x80",  # surrogate
    b"\xc0\xaf",  # overlong
    b"\xe0\x9f\xbf",  # overlong
    b"\xf0\x8f\xbf\xbf",  # overlong
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # five bytes
    b"\xff",
]

_FIELD = st.lists(st.sampled_from(_PIECES), max_size=4).map(b"".join)
_PLAIN_FIELD = st.lists(st.sampled_from(_PIECES[:1] + _PIECES[10:19]), max_size=3).map(
    b"".join
)


@st.composite
def _tsv(draw: st.DrawFn) -> tuple[bytes, int]:
    count = draw(st.integers(1, 5))
    lines = []
    for _ in range(count):
        width = draw(st.sampled_from([WIDTH] * 6 + [WIDTH - 1, WIDTH + 1, 1]))
        fields = draw(st.lists(_PLAIN_FIELD, min_size=width, max_size=width))
        # A few fields of any bytes, so that the splitter does not just give up.
        for index, value in draw(
            st.lists(st.tuples(st.integers(0, width - 1), _FIELD), max_size=2)
        ):
            fields[index] = value
        lines.append(b"\t".join(fields))
    data = b"\n".join(lines) + draw(st.sampled_from([b"\n", b""]))
    rows = count_lines(data) + draw(st.sampled_from([0, 0, 0, 0, 1, -1]))
    return data, rows


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_tsv())
def test_splitter_never_gives_a_table_arrow_would_not(case: tuple[bytes, int]) -> None:
    data, rows = case
    arrow = arrow_or_error(data)
    split = batch._split_tsv(data, rows) if rows > 0 else None
    if split is None:
        return
    split.validate(full=True)
    assert isinstance(arrow, pa.Table), f"Arrow refused what the splitter cut: {arrow}"
    assert rows == arrow.num_rows == split.num_rows
    assert split.equals(arrow.combine_chunks())


_BAD_UTF8 = [
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xa9",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xc1\xbf",
    b"\xe0\x80\xaf",
    b"\xf0\x80\x80\xaf",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xfe",
]


@pytest.mark.parametrize("bad", _BAD_UTF8, ids=lambda b: b.hex())
@pytest.mark.parametrize("where", ["first byte", "middle", "last byte", "before LF"])
def test_invalid_utf8_anywhere_is_left_to_arrow(bad: bytes, where: str) -> None:
    good = tsv_line()
    lines = [good] * 40
    if where == "first byte":
        data = bad + lines_of(*lines)
    elif where == "middle":
        lines[20] = lines[20].replace(b"ssc-", b"ss" + bad + b"c-")
        data = lines_of(*lines)
    elif where == "last byte":  # the last field of the last line, no LF
        data = lines_of(*lines, final_lf=False) + bad
    else:
        data = lines_of(*lines, final_lf=False) + bad + b"\n"
    assert columns.split_tsv(data, WIDTH, count_lines(data)) is None
    assert isinstance(arrow_or_error(data), pa.ArrowInvalid)


@pytest.mark.parametrize(
    "last",
    [b"\xc3\xa9", b"\xe2\x9c\x93", b"\xf0\x9f\x98\x80", b"\xf4\x8f\xbf\xbf", b"\x00"],
    ids=["2-byte", "3-byte", "4-byte", "U+10FFFF", "NUL"],
)
def test_valid_sequence_ending_the_data_is_split(last: bytes) -> None:
    data = lines_of(tsv_line(), tsv_line(), final_lf=False) + last
    split = assert_split_as_arrow(data)
    assert split.column(WIDTH - 1).to_pylist() == [None, last.decode()]


def test_lone_line_of_only_tabs_and_rows_off_by_one() -> None:
    tabs = b"\t" * (WIDTH - 1)
    for data in (tabs, tabs + b"\n"):
        split = assert_split_as_arrow(data, 1)
        assert all(split.column(j).null_count == 1 for j in range(WIDTH))
        assert split.column(0).chunk(0).buffers()[2].size == 0
        for rows in (2, 0):
            assert columns.split_tsv(data, WIDTH, rows) is None


@pytest.mark.parametrize("position", [0, 1, 499, 500, 998, 999])
@pytest.mark.parametrize("fault", ["short", "long", "blank", "cr"])
def test_width_and_line_faults_at_every_place_are_left_to_arrow(
    position: int, fault: str
) -> None:
    lines = [tsv_line(app_id=str(n)) for n in range(1000)]
    good = lines[position]
    lines[position] = {
        "short": good.rsplit(b"\t", 1)[0],
        "long": good + b"\tx",
        "blank": b"",
        "cr": good + b"\r",
    }[fault]
    data = lines_of(*lines)
    assert columns.split_tsv(data, WIDTH, count_lines(data)) is None


def test_values_far_over_the_estimate_in_several_columns_grow_correctly() -> None:
    # The long line is one the sampling never measures (it follows a short
    # one no sample point falls in): each column grows many times.
    lines = [tsv_line(app_id=str(n)) for n in range(3000)]
    lines[1777] = tsv_line(
        app_id="A" * (3 << 19), page_title="é" * (1 << 20), se_label="z" * (3 << 20)
    )
    split = assert_split_as_arrow(lines_of(*lines))
    assert split.column("se_label").to_pylist()[1777] == "z" * (3 << 20)
    assert split.column("app_id").to_pylist()[1776] == "1776"


def test_long_last_line_without_line_feed() -> None:
    data = lines_of(*[tsv_line()] * 10) + tsv_line(page_title="q" * (7 << 20))
    split = assert_split_as_arrow(data)
    assert len(split.column("page_title").to_pylist()[-1]) == 7 << 20


def test_many_rows_of_empty_fields() -> None:
    data = (b"\t" * (WIDTH - 1) + b"\n") * 50_000
    split = assert_split_as_arrow(data)
    assert split.column(7).null_count == 50_000


def test_every_kind_of_bytes_like_input_gives_the_same_table(tmp_path: Path) -> None:
    data = lines_of(
        *[tsv_line(app_id=f"app{n}", page_title="é" * n) for n in range(60)]
    )
    expected = parse_tsv(data)
    path = tmp_path / "mapped.tsv"
    path.write_bytes(b"junk\n" + data + b"tail")
    with path.open("rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)
    inputs = {
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "mmap slice": view[5 : 5 + len(data)],
        "array": array.array("B", data),
    }
    tables = {name: batch._split_tsv(given, 60) for name, given in inputs.items()}
    for name, table in tables.items():
        assert table is not None, name
        assert table.equals(expected.combine_chunks()), name
    # The tables outlive the map they were cut from.
    del inputs, view
    gc.collect()
    mapped.close()
    assert tables["mmap slice"].column("page_title").to_pylist()[59] == "é" * 59


def test_tables_and_slices_outlive_everything_else() -> None:
    data = bytearray(lines_of(*[tsv_line(app_id="a" * n) for n in range(1, 500)]))
    table = batch._split_tsv(data, 499)
    assert table is not None
    kept = table.column("app_id").slice(300, 3)
    data[:] = b"x" * len(data)  # the input changed after the call
    del table, data
    gc.collect()
    pa.allocate_buffer(1 << 20).to_pybytes()  # reuse freed pool memory
    assert kept.to_pylist() == ["a" * 301, "a" * 302, "a" * 303]


def test_concurrent_calls_with_growing_buffers_give_right_tables() -> None:
    lines = [tsv_line(page_title="p" * (3000 if n % 2 == 0 else 1)) for n in range(300)]
    data = lines_of(*lines)
    expected = parse_tsv(data).combine_chunks()
    wrong: list[int] = []

    def work() -> None:
        for _ in range(15):
            table = batch._split_tsv(data, 300)
            if table is None or not table.equals(expected):
                wrong.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong


def _traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_repeated_calls_and_failures_leak_no_memory() -> None:
    lines = [tsv_line(page_title="p" * (2000 if n % 2 == 0 else 1)) for n in range(60)]
    data = lines_of(*lines)

    def once() -> None:
        assert batch._split_tsv(data, 60) is not None
        assert columns.split_tsv(data, WIDTH, 61) is None
        assert columns.split_tsv(data + b"\r", WIDTH, 61) is None

    for _ in range(50):
        once()
    refs = sys.getrefcount(data)
    tracemalloc.start()
    try:
        before = _traced_bytes()
        for _ in range(2000):
            once()
        after = _traced_bytes()
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024, f"{after - before} bytes kept"
    assert sys.getrefcount(data) == refs


# ---------------------------------------------------------------------------
# Faults: where the splitter's table and Arrow's reader part ways


def _nine_mib_line_file(path: Path, line_end: str = "\n") -> Path:
    context = {"schema": PAGE, "data": {"id": "x" * (9 << 20)}}
    big = json.dumps({"schema": CTX, "data": [context]})
    rows = [make_row(event_id(0)), make_row(event_id(1), contexts=big)]
    path.write_bytes("".join("\t".join(r) + line_end for r in rows).encode())
    return path


def test_line_over_twice_the_block_size_parses_alike_with_and_without_lines() -> None:
    data = lines_of(tsv_line(), tsv_line(contexts="c" * (9 << 20)), tsv_line())
    with_lines = parse_tsv(data, 3)
    assert with_lines.num_rows == 3  # the splitter cuts it
    without = arrow_or_error(data)
    assert isinstance(without, pa.Table), str(without)


def test_long_line_loads_whatever_the_line_ends(tmp_path: Path) -> None:
    results = {}
    for name, end in (("lf", "\n"), ("crlf", "\r\n")):
        source = _nine_mib_line_file(tmp_path / f"{name}.tsv", end)
        store = store_in("duckdb", tmp_path / name)
        try:
            results[name] = load_files(store, [str(source)]).events
        except BadInputError as exc:
            results[name] = str(exc).replace(str(source), "SOURCE")
        finally:
            store.close()
    assert results["lf"] == 2
    assert results["crlf"] == results["lf"]


def _clustered_big_contexts(rows: int = 20_000) -> bytes:
    """Realistic burst: 200 consecutive events carry a 50 KB context."""
    lines = [tsv_line(app_id="a")] * rows
    for n in range(5000, 5200):
        lines[n] = tsv_line(contexts="c" * 50_000)
    return lines_of(*lines)


def test_estimate_reserves_memory_in_proportion_to_the_data() -> None:
    data = _clustered_big_contexts()
    tracemalloc.start()
    try:
        before = _traced_bytes()
        table = parse_tsv(data, 20_000)
        pinned = _traced_bytes() - before
    finally:
        tracemalloc.stop()
    assert table.num_rows == 20_000
    assert pinned < 10 * len(data), f"{pinned / 1e6:.0f} MB for {len(data) / 1e6} MB"


def test_splitter_under_an_address_space_limit_parses_what_arrow_parses() -> None:
    done = run_python(
        """
        import resource, sys
        sys.path[:0] = ["tests/storage", "tests"]
        from store_support import make_row
        from plowline.storage.batch import parse_tsv
        big = "c" * (1 << 20)
        small = "\\t".join(make_row("x", app_id="a")).encode()
        heavy = "\\t".join(
            make_row("x", contexts=big, unstruct_event=big, derived_contexts=big)
        ).encode()
        lines = [small] * 50_000 + [heavy, heavy] + [small] * 50_000
        data = b"\\n".join(lines) + b"\\n"
        assert parse_tsv(data).num_rows == len(lines)
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        assert parse_tsv(data).num_rows == len(lines)  # Arrow: fine
        print("splitter", parse_tsv(data, len(lines)).num_rows)
        """,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-300:]
    assert "splitter 100002" in done.stdout


def test_small_batch_pins_little_memory() -> None:
    data = tsv_line() + b"\n"
    tracemalloc.start()
    try:
        before = _traced_bytes()
        tables = [parse_tsv(data, 1) for _ in range(20)]
        per_table = (_traced_bytes() - before) / len(tables)
    finally:
        tracemalloc.stop()
    assert per_table < 256 * 1024, f"{per_table / 1e6:.1f} MB per one-line table"


# ---------------------------------------------------------------------------
# The loader end to end, with and without the compiled splitter (held)


def store_in(kind: str, folder: Path) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    return make_store(kind, folder)


def _load_outcome(
    store_kind: str, folder: Path, source: Path, batch_bytes: int
) -> tuple[object, ...]:
    store = store_in(store_kind, folder)
    try:
        try:
            result = load_files(store, [str(source)], batch_bytes=batch_bytes)
            outcome: object = (
                result.events,
                result.natural_duplicates,
                result.synthetic_duplicates,
            )
        except BadInputError as exc:
            outcome = (str(exc), exc.line)
        events = sorted(
            (r["event_id"], r["app_id"], r["page_title"], r["derived_contexts"])
            for r in store.read_events().to_pylist()
        )
        manifest = sorted(
            (m["first_line"], m["lines"], m["events"])
            for m in store.read_manifest().to_pylist()
        )
    finally:
        store.close()
    return outcome, events, manifest


def _bad(line: bytes, fault: str) -> bytes:
    return {
        "short": line.rsplit(b"\t", 1)[0],
        "long": line + b"\tx",
        "cr": line.replace(b"ssc-", b"s\rsc-"),
        "utf8": line.replace(b"ssc-", b"ss\xffc-"),
        "cut utf8": line.replace(b"ssc-", b"ss\xe2\x82"),
        "bom": b"\xef\xbb\xbf" + line,
        "blank": b"",
        "nul": line.replace(b"ssc-", b"ss\x00c-"),
        "only tabs": b"\t" * (WIDTH - 1),
        "bad json": tsv_line(event_id(99), contexts="{"),
        "zone": line.replace(b"10.526", b"10.526+01:00"),
    }[fault]


@pytest.mark.parametrize(
    "fault",
    [
        "short",
        "long",
        "cr",
        "utf8",
        "cut utf8",
        "bom",
        "blank",
        "nul",
        "only tabs",
        "bad json",
        "zone",
    ],
)
def test_fault_in_third_batch_same_outcome_with_and_without_splitter(
    store_kind: str, tmp_path: Path, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        tsv_line(event_id(n % 9), page_title=f"é{n:03d}", event_fingerprint=f"f{n % 2}")
        for n in range(24)
    ]
    lines[17] = _bad(lines[17], fault)
    source = tmp_path / "events.tsv"
    source.write_bytes(lines_of(*lines))
    size = len(lines_of(*lines[:8]))  # batches of about 8 lines
    fast = _load_outcome(store_kind, tmp_path / "fast", source, size)
    monkeypatch.setattr(batch, "_columns", None)
    slow = _load_outcome(store_kind, tmp_path / "slow", source, size)
    assert fast == slow
    outcome, events, manifest = fast
    if fault == "bom":  # a mark at a line start is dropped, not an error
        # lines n and n + 18 are natural duplicates, n and n + 9 synthetic
        assert outcome[:2] == (18, 6)
    if isinstance(outcome[0], int):  # loaded (a mark; NUL where a store takes it)
        assert fault in ("bom", "nul")
        return
    message, line = outcome  # type: ignore[misc]
    if fault == "nul" and store_kind == "postgres":
        # PostgreSQL refuses U+0000 when it writes (no line number: the
        # message names the event id, here a re-keyed synthetic duplicate's).
        assert "U+0000" in str(message) and line is None
        assert [(first, n) for first, n, _ in manifest] == [(1, 8), (9, 8)]
        return
    assert line == 18, message
    assert f"{source}, line 18" in str(message)
    # The batches before the bad one stay committed: lines 1-8 and 9-16.
    assert [(first, n) for first, n, _ in manifest] == [(1, 8), (9, 8)]
    assert len(events) == 16  # ids 0-6 twice, with other fingerprints


def test_tiny_batches_duplicates_across_batches_same_as_one_batch(
    store_kind: str, tmp_path: Path
) -> None:
    rows = []
    for n in range(40):
        # ids repeat across batches; fingerprints make natural or synthetic ones
        rows.append(
            make_row(event_id(n % 7), event_fingerprint=f"f{n % 3}", app_id=f"a{n}")
        )
    source = write_tsv(tmp_path / "dups.tsv", rows)
    tiny = _load_outcome(store_kind, tmp_path / "tiny", source, 1)
    whole = _load_outcome(store_kind, tmp_path / "whole", source, 1 << 20)
    # Which row of a natural duplicate is kept may follow batch order, but
    # the counts and the ids kept must agree.
    assert tiny[0] == whole[0]
    assert [e[0] for e in tiny[1]] == [e[0] for e in whole[1]]
    assert len(tiny[2]) == 40 and len(whole[2]) == 1


def test_rerun_loads_each_batch_exactly_once(store_kind: str, tmp_path: Path) -> None:
    rows = [make_row(event_id(n), page_title=f"t{n}") for n in range(30)]
    source = write_tsv(tmp_path / "e.tsv", rows)
    store = store_in(store_kind, tmp_path / "s")
    try:
        first = load_files(store, [str(source)], batch_bytes=1500)
        again = load_files(store, [str(source), str(source)], batch_bytes=1500)
        assert first.events == 30
        assert again.events == 0
        assert again.skipped_batches == 2 * first.inputs[0].batches
        assert store.read_events().num_rows == 30
        assert store.read_manifest().num_rows == first.inputs[0].batches
    finally:
        store.close()


def test_truncated_gzip_keeps_the_batches_before_then_the_whole_loads_once(
    store_kind: str, tmp_path: Path
) -> None:
    rows = [make_row(event_id(n), page_title="t" * (n % 50)) for n in range(200)]
    plain = write_tsv(tmp_path / "e.tsv", rows).read_bytes()
    packed = gzip.compress(plain, mtime=0)
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(packed[: len(packed) * 2 // 3])
    whole = tmp_path / "whole.tsv.gz"
    whole.write_bytes(packed)
    store = store_in(store_kind, tmp_path / "s")
    try:
        with pytest.raises(BadInputError, match=r"Cannot read .*cut\.tsv\.gz"):
            load_files(store, [str(cut)], batch_bytes=3000)
        kept = store.read_manifest().num_rows
        assert kept > 2
        assert store.read_events().num_rows == sum(
            m["events"] for m in store.read_manifest().to_pylist()
        )
        result = load_files(store, [str(whole)], batch_bytes=3000)
        assert result.skipped_batches == kept
        ids = store.read_events().column("event_id").to_pylist()
        assert sorted(ids) == sorted(event_id(n) for n in range(200))
    finally:
        store.close()


def test_corrupt_gzip_is_a_clear_error(tmp_path: Path) -> None:
    rows = [make_row(event_id(n), page_title="t" * (n % 50)) for n in range(200)]
    packed = bytearray(gzip.compress(write_tsv(tmp_path / "e.tsv", rows).read_bytes()))
    for n in range(len(packed) // 2, len(packed) // 2 + 40):
        packed[n] ^= 0x55
    source = tmp_path / "corrupt.tsv.gz"
    source.write_bytes(bytes(packed))
    store = store_in("duckdb", tmp_path / "s")
    try:
        with pytest.raises(BadInputError, match="Cannot read"):
            load_files(store, [str(source)], batch_bytes=3000)
    finally:
        store.close()


def test_stdin_bad_line_in_third_batch_same_message_and_kept_batches(
    tmp_path: Path,
) -> None:
    lines = [tsv_line(event_id(n)) for n in range(30)]
    lines[25] = lines[25].rsplit(b"\t", 1)[0]
    data = lines_of(*lines)
    size = str(len(lines_of(*lines[:10])))
    source = tmp_path / "events.tsv"
    source.write_bytes(data)
    (tmp_path / "p").mkdir()
    (tmp_path / "f").mkdir()
    piped = plowline(
        "load",
        *cli_args("duckdb", tmp_path / "p"),
        "--batch-bytes",
        size,
        "-",
        input=data.decode(),
    )
    filed = plowline(
        "load", *cli_args("duckdb", tmp_path / "f"), "--batch-bytes", size, str(source)
    )
    for done, name in ((piped, "-"), (filed, str(source))):
        assert done.returncode == 1, done.stderr[-300:]
        assert "Traceback" not in done.stderr
        assert f"{name}, line 26 has 130 fields" in done.stderr
    store = store_in("duckdb", tmp_path / "p")
    try:
        assert store.read_events().num_rows == 20
    finally:
        store.close()


# ---------------------------------------------------------------------------
# PostgreSQL: the COPY text made on the preparing thread, the hash index (held)


@needs_postgres
def test_postgres_copy_text_path_and_arrow_path_store_the_same_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tricky = [
        dict(page_title="back\\slash \\N \\t \\\\ end\\", se_value="1e5"),
        dict(page_title="\\N", tr_total="-1.005", page_urlport="007"),
        dict(page_title="ünï 𝄞 \u2028 \x0b \x0c \x1b", tr_total="0.125"),
        dict(page_title=" both ", se_value="NaN", tr_total="9999999999999999.994"),
        dict(
            se_label="\\\\x41", se_value="-0", collector_tstamp="2026-12-04T15:29:10Z"
        ),
        dict(se_label="\\101", tr_total=".5", br_cookies="0"),
    ]
    text = "".join(
        "\t".join(make_row(event_id(n), **values)) + "\n"
        for n, values in enumerate(tricky)
    )
    lf = tmp_path / "lf.tsv"
    lf.write_text(text, "utf-8")
    crlf = tmp_path / "crlf.tsv"
    crlf.write_text(text.replace("\n", "\r\n"), "utf-8")
    from plowline.storage.postgres.store import PostgresStore as cls

    copied: list[object] = []
    original = cls.insert_events

    def spy(self: Any, events: pa.Table, source_text: object = None) -> None:
        copied.append(isinstance(source_text, bytes))
        original(self, events, source_text)

    monkeypatch.setattr(cls, "insert_events", spy)
    stored = {}
    for name, source in (("lf", lf), ("crlf", crlf)):
        store = store_in("postgres", tmp_path / name)
        try:
            load_files(store, [str(source)], batch_bytes=1)
            stored[name] = [
                {k: str(v) for k, v in row.items()}
                for row in store.read_events().to_pylist()
            ]
        finally:
            store.close()
    assert copied == [True] * 6 + [False] * 6  # both paths were taken
    assert stored["lf"] == stored["crlf"]
    assert stored["lf"][0]["page_title"] == "back\\slash \\N \\t \\\\ end\\"
    assert stored["lf"][1]["page_title"] == "\\N"
    assert stored["lf"][1]["tr_total"] == "-1.01"


@needs_postgres
def test_postgres_hash_index_dedupes_odd_ids_across_loads(tmp_path: Path) -> None:
    import psycopg
    from store_support import postgres_dsn

    ids = [X, X.upper(), "not-a-uuid", "", "x" * 36]
    rows = [make_row(i or Y, event_fingerprint="f") for i in ids]
    first = write_tsv(tmp_path / "a.tsv", rows)
    retried = [make_row(i or Y, event_fingerprint="f", v_etl="retry") for i in ids]
    again = write_tsv(tmp_path / "b.tsv", retried)  # same ids and fingerprints
    store = store_in("postgres", tmp_path / "s")
    try:
        loaded = load_files(store, [str(first)], batch_bytes=1)
        second = load_files(store, [str(again)], batch_bytes=1)
        stored = sorted(store.read_events().column("event_id").to_pylist())
    finally:
        store.close()
    assert loaded.events == 5
    assert (second.events, second.natural_duplicates) == (0, 5)
    assert stored == sorted([X, X.upper(), "not-a-uuid", Y, "x" * 36])
    with psycopg.connect(postgres_dsn(tmp_path / "s")) as conn:
        definition = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'events_event_id_idx'"
        ).fetchone()
    assert definition is not None and "USING hash (event_id)" in definition[0]


# ---------------------------------------------------------------------------
# existing_events in every store: none, some, all, odd ids (held)


def test_existing_events_none_some_all_and_widened_ids(store: Any) -> None:
    upper = X.upper()
    with store.transaction():
        loader.write_events(
            store,
            batch.rows_to_table([make_row(X, app_id="x"), make_row(Y, app_id="y")]),
        )
    with store.transaction():
        assert store.existing_events(pa.array(["nope", upper])).num_rows == 0
        assert store.existing_events(pa.array([X, upper, "z"])).column(
            "app_id"
        ).to_pylist() == ["x"]
        both = store.existing_events(pa.array([X, Y, X]))
        assert sorted(both.column("app_id").to_pylist()) == ["x", "y"]
        assert store.existing_events(pa.array([], pa.string())).num_rows == 0
        assert store.existing_events(pa.array([None, Y])).num_rows == 1
    with store.transaction():
        loader.write_events(
            store,
            batch.rows_to_table(
                [make_row(upper, app_id="U"), make_row("plain-id", app_id="p")]
            ),
        )
    with store.transaction():
        assert store.existing_events(pa.array([upper])).column(
            "app_id"
        ).to_pylist() == ["U"]
        assert store.existing_events(pa.array([X])).column("app_id").to_pylist() == [
            "x"
        ]
        found = store.existing_events(pa.array(["plain-id", "other", upper, Y]))
        assert sorted(found.column("app_id").to_pylist()) == ["U", "p", "y"]
