"""A tester's pass over loading (prefetching thread, mapped inputs, PostgreSQL's
COPY of the batch's own text): what broke, and what held up.

Each store of a comparison lives in a folder of its own (``tmp_path / kind``),
so the PostgreSQL stores get databases of their own.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from store_support import (
    STORE_KINDS,
    cli_args,
    make_row,
    make_store,
    write_tsv,
)

from plowline.errors import BadInputError
from plowline.storage.loader import load_files
from script_runs import run_plowline as plowline

CTX = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
BOM = "\ufeff"


def event_id(n: int, group: str = "aaaa") -> str:
    return f"{n:08d}-{group}-4bbb-8ccc-dddddddddddd"


def line(n: int, **values: str) -> str:
    return "\t".join(make_row(event_id(n), **values)) + "\n"


def load_each(
    tmp_path: Path, inputs: list[Path], batch_bytes: int | None = None
) -> dict[str, list[dict[str, Any]] | Exception]:
    """Load ``inputs`` into a fresh store of each kind: its events, or the
    error that stopped the load."""
    found: dict[str, list[dict[str, Any]] | Exception] = {}
    for kind in STORE_KINDS:
        folder = tmp_path / kind
        folder.mkdir()
        store = make_store(kind, folder)
        try:
            load_files(store, [str(p) for p in inputs], batch_bytes=batch_bytes)
            found[kind] = store.read_events().to_pylist()
        except Exception as exc:  # compared below, store by store
            found[kind] = exc
        finally:
            store.close()
    return found


# Once bugs, found by that pass and fixed the same day.


def test_leading_bom_is_the_same_value_in_every_store(tmp_path: Path) -> None:
    """A file that starts with a UTF-8 BOM: Arrow's CSV reader drops it, so
    DuckDB and Parquet hold app_id 'web'; PostgreSQL's COPY of the batch's own
    text keeps it, so PostgreSQL holds '\\ufeffweb' (before today's COPY of
    the text it held 'web' too)."""
    source = tmp_path / "bom.tsv"
    source.write_text(BOM + line(0, app_id="web") + line(1, app_id="web"), "utf-8")
    found = load_each(tmp_path, [source])
    app_ids = {
        kind: [row["app_id"] for row in rows] if isinstance(rows, list) else rows
        for kind, rows in found.items()
    }
    first = app_ids[STORE_KINDS[0]]
    assert isinstance(first, list) and len(first) == 2
    assert first[1] == "web"
    for kind, values in app_ids.items():
        assert values == first, f"{kind} holds {values!r}, {STORE_KINDS[0]} {first!r}"


def test_line_starting_with_bom_loads_once_whatever_the_batch_size(
    tmp_path: Path,
) -> None:
    """A BOM at the start of a line is dropped only when that line starts a
    batch (Arrow drops it at the start of each buffer), so the stored app_id
    depends on --batch-bytes; and a re-load with another batch size, which
    the docs say keeps each event once, stores that event a second time as a
    synthetic duplicate."""
    source = tmp_path / "mid.tsv"
    lines = [line(n, app_id="web", page_title="x" * 400) for n in range(4)]
    lines[2] = BOM + lines[2]
    source.write_text("".join(lines), "utf-8")

    (tmp_path / "one").mkdir()
    (tmp_path / "small").mkdir()
    one = make_store("duckdb", tmp_path / "one")
    small = make_store("duckdb", tmp_path / "small")
    try:
        load_files(one, [str(source)])
        load_files(small, [str(source)], batch_bytes=1)
        one_ids = [row["app_id"] for row in one.read_events().to_pylist()]
        small_ids = [row["app_id"] for row in small.read_events().to_pylist()]
        assert one_ids == small_ids

        again = load_files(one, [str(source)], batch_bytes=1)
        assert again.events == 0
        assert again.synthetic_duplicates == 0
        assert one.read_events().num_rows == 4
    finally:
        one.close()
        small.close()


def test_year_zero_timestamp_is_treated_alike_by_every_store(tmp_path: Path) -> None:
    """dvce_created_tstamp '0000-01-01 00:00:00' passes the loader's checks:
    DuckDB and Parquet store it; PostgreSQL refuses the batch with its own
    message ('PostgreSQL refused the batch: date/time field value out of
    range'), which names neither the file nor the line. The docs: a value
    that does not fit stops the load naming the input, line and field, and
    every store refuses the same values."""
    source = write_tsv(
        tmp_path / "year0.tsv",
        [
            make_row(event_id(0)),
            make_row(event_id(1), dvce_created_tstamp="0000-01-01 00:00:00"),
        ],
    )
    outcomes: dict[str, str] = {}
    for kind in STORE_KINDS:
        folder = tmp_path / kind
        folder.mkdir()
        store = make_store(kind, folder)
        try:
            load_files(store, [str(source)])
            outcomes[kind] = "loaded"
        except BadInputError as exc:
            assert str(source) in str(exc) and "line 2" in str(exc), str(exc)
            assert "dvce_created_tstamp" in str(exc)
            outcomes[kind] = "refused"
        except Exception as exc:  # the unclear refusal
            outcomes[kind] = f"{type(exc).__name__}: {exc}"
        finally:
            store.close()
    assert len(set(outcomes.values())) == 1, outcomes


def test_stored_year_zero_event_does_not_break_a_later_load(tmp_path: Path) -> None:
    """Once DuckDB holds an event with a year-0 timestamp, every later batch
    that brings the same event id fails with a traceback (OverflowError: date
    value out of range): de-duplication reads the stored row into Python."""
    first = write_tsv(
        tmp_path / "a.tsv",
        [make_row(event_id(0), dvce_created_tstamp="0000-01-01 00:00:00")],
    )
    second = write_tsv(
        tmp_path / "b.tsv",
        [make_row(event_id(0), dvce_created_tstamp="0000-01-01 00:00:00", app_id="b")],
    )
    args = cli_args("duckdb", tmp_path)
    loaded = plowline("load", *args, str(first))
    assert "Traceback" not in loaded.stderr
    if loaded.returncode != 0:  # refused, as PostgreSQL does: nothing to break
        assert "line 1" in loaded.stderr
        return
    again = plowline("load", *args, str(second))
    assert "Traceback" not in again.stderr, again.stderr[-600:]
    assert again.returncode == 0, again.stderr[-600:]
    assert "1 events sharing an id given new ids" in again.stdout


def _nested_contexts(depth: int) -> str:
    entity = {"schema": "iglu:com.acme/deep/jsonschema/1-0-0", "data": {"a": 1}}
    text = json.dumps({"schema": CTX, "data": [entity]})
    return text.replace('"a": 1', '"a": ' + "[" * depth + "1" + "]" * depth)


def test_deeply_nested_property_is_no_traceback(tmp_path: Path) -> None:
    """A context property nested 300 deep is valid JSON (the loader's JSON
    check takes it) but the shredder's orjson.dumps stops at 254 levels: the
    load ends with 'TypeError: Recursion limit reached' and a traceback,
    instead of loading the property as JSON text or naming the line."""
    source = write_tsv(
        tmp_path / "deep.tsv",
        [make_row(event_id(0)), make_row(event_id(1), contexts=_nested_contexts(300))],
    )
    result = plowline("load", *cli_args("duckdb", tmp_path), str(source))
    assert "Traceback" not in result.stderr, result.stderr[-400:]
    if result.returncode != 0:
        assert f"{source}, line 2" in result.stderr
        return
    store = make_store("duckdb", tmp_path)
    try:
        rows = store.read_child_table("com_acme_deep_1").to_pylist()
        assert [json.loads(row["a"]) for row in rows] == [
            json.loads("[" * 300 + "1" + "]" * 300)
        ]
    finally:
        store.close()


def test_empty_property_name_is_treated_alike_by_every_store(tmp_path: Path) -> None:
    """A context with a property named "" (valid JSON): Parquet stores it in
    a column named ""; DuckDB and PostgreSQL refuse the batch with their SQL
    parser's message ('zero-length delimited identifier'), naming neither the
    file nor the line."""
    contexts = json.dumps(
        {"schema": CTX, "data": [{"schema": PAGE, "data": {"": 1, "id": "p"}}]}
    )
    source = write_tsv(
        tmp_path / "empty.tsv", [make_row(event_id(0), contexts=contexts)]
    )
    outcomes: dict[str, str] = {}
    for kind in STORE_KINDS:
        folder = tmp_path / kind
        folder.mkdir()
        store = make_store(kind, folder)
        try:
            load_files(store, [str(source)])
            outcomes[kind] = "loaded"
        except BadInputError as exc:
            assert f"{source}, line 1" in str(exc), str(exc)
            outcomes[kind] = "refused"
        except Exception as exc:  # a store's own refusal
            outcomes[kind] = f"{type(exc).__name__}: {exc}"
        finally:
            store.close()
    assert len(set(outcomes.values())) == 1, outcomes


def test_named_pipe_input_loses_nothing(tmp_path: Path) -> None:
    """A named pipe (mkfifo) as input: the new mapping step opens it, sees it
    is not a regular file and closes it, then the reader opens it again. A
    writer that writes in between gets EPIPE (BrokenPipeError), and the load
    reports success with 0 events; a writer already gone leaves the second
    open waiting forever (a watchdog here opens and closes a writer end to
    end that wait). The race is narrow: it shows within a few dozen tries."""
    lines = "".join(line(n, page_title="x" * 400) for n in range(40)).encode()
    store = make_store("duckdb", tmp_path)
    try:
        for attempt in range(40):
            fifo = tmp_path / f"pipe{attempt}"
            os.mkfifo(fifo)
            broken: list[BaseException] = []
            finished = threading.Event()

            def write(
                path: Path = fifo, failures: list[BaseException] = broken
            ) -> None:
                try:
                    with open(path, "wb", buffering=0) as out:
                        for start in range(0, len(lines), 4096):
                            out.write(lines[start : start + 4096])
                except BrokenPipeError as exc:
                    failures.append(exc)

            def unblock(path: Path = fifo, done: threading.Event = finished) -> None:
                if not done.wait(5):
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

            writer = threading.Thread(target=write)
            writer.start()
            threading.Thread(target=unblock, daemon=True).start()
            result = load_files(store, [str(fifo)])
            finished.set()
            writer.join()
            assert not broken, f"try {attempt}: the writer got {broken[0]!r}"
            assert result.inputs[0].lines == 40, f"try {attempt}: lines lost"
    finally:
        store.close()


BADROW = (
    "iglu:com.snowplowanalytics.snowplow.badrows/schema_violations/jsonschema/2-0-0"
)


def _bad_row(timestamp: str = "2026-12-04T15:29:10.526Z", payload: Any = 1) -> str:
    failure = {"timestamp": timestamp, "messages": ["bad"]}
    document = {"schema": BADROW, "data": {"failure": failure, "payload": payload}}
    return json.dumps(document) + "\n"


@pytest.mark.parametrize(
    ("name", "last"),
    [
        ("unparsable", "{not json\n"),
        # orjson reads 1,024 levels but writes only 254: TypeError, traceback.
        ("deep", _bad_row(payload=json.loads("[" * 300 + "]" * 300))),
        # An offset that moves the time before year 1: OverflowError, traceback.
        ("year0", _bad_row(timestamp="0001-01-01T00:30:00+01:00")),
    ],
)
def test_bad_failed_event_line_is_a_clear_error_naming_file_and_line(
    tmp_path: Path, name: str, last: str
) -> None:
    """The fourth line of a --failed file is bad. An unparsable line gives
    'Failed event 4 is not JSON', which does not say which of the --failed
    files it is in; a payload nested 300 deep or a failure timestamp whose
    offset moves it before year 1 end with a traceback."""
    source = tmp_path / f"{name}.jsonl"
    source.write_text(_bad_row() * 3 + last, "utf-8")
    result = plowline("load", *cli_args("duckdb", tmp_path), "--failed", str(source))
    assert "Traceback" not in result.stderr, result.stderr[-300:]
    if result.returncode == 0:  # loaded as it is: then all four are there
        assert "Loaded 4 failed events" in result.stdout
        return
    assert str(source) in result.stderr, result.stderr[-300:]
    assert "4" in result.stderr


# What held up.

# Text PostgreSQL's COPY might read otherwise than Arrow: each value in a file
# of its own, so a fallback to the Arrow path of one does not cover the others.
TRICKY: list[dict[str, str]] = [
    {"se_value": "1e400"},
    {"se_value": "-1e400"},
    {"se_value": "1e-400"},
    {"se_value": "-0"},
    {"se_value": "NaN"},
    {"se_value": "-inf"},
    {"se_value": "4.9e-324"},
    {"se_value": ".5"},
    {"se_value": "0.1000000000000000055511151231257827"},
    {"tr_total": "1.005"},
    {"tr_total": "-1.005"},
    {"tr_total": "1.23E+2"},
    {"tr_total": "-0.00"},
    {"txn_id": "0x10"},
    {"txn_id": "007"},
    {"txn_id": "-2147483648"},
    {"collector_tstamp": "2026-12-04T15:29:10.123456Z"},
    {"dvce_created_tstamp": "9999-12-31 23:59:59.999999"},
    {"dvce_created_tstamp": "0001-01-01 00:00:00"},
    {"dvce_created_tstamp": "2026-12-04 15:29:10.5Z"},
    {"app_id": "\\N"},
    {"app_id": "\\."},
    {"app_id": "\\"},
    {"app_id": "a\\tb\\nc\\r"},
    {"page_title": "\\\\N\\\\"},
    {"app_id": "é€😀\u2028\x0b"},
    {"app_id": " "},
    {"app_id": "x" + BOM},
    {"br_cookies": "0"},
    {
        "contexts": json.dumps(
            {"schema": CTX, "data": [{"schema": PAGE, "data": {"id": "\\N\\u0001"}}]}
        )
    },
]


@pytest.mark.skipif("postgres" not in STORE_KINDS, reason="needs PostgreSQL")
def test_postgres_holds_what_duckdb_holds_for_tricky_text(tmp_path: Path) -> None:
    files = [
        write_tsv(tmp_path / f"v{n}.tsv", [make_row(event_id(n), **values)])
        for n, values in enumerate(TRICKY)
    ]
    held: dict[str, list[dict[str, Any]]] = {}
    for kind in ("duckdb", "postgres"):
        folder = tmp_path / kind
        folder.mkdir()
        store = make_store(kind, folder)
        try:
            result = load_files(store, [str(f) for f in files])
            assert result.events == len(TRICKY)
            held[kind] = store.read_events().to_pylist()
        finally:
            store.close()
    duck, pg = held["duckdb"], held["postgres"]
    assert len(duck) == len(pg) == len(TRICKY)
    for ours, theirs in zip(duck, pg, strict=True):
        for name, value in ours.items():
            other = theirs[name]
            if isinstance(value, float) and math.isnan(value):
                assert isinstance(other, float) and math.isnan(other)
                continue
            assert value == other, (ours["event_id"], name, value, other)
            if isinstance(value, float) and value == 0:
                assert math.copysign(1, value) == math.copysign(1, other)
    by_id = {row["event_id"]: row for row in pg}
    assert by_id[event_id(0)]["se_value"] == math.inf
    assert by_id[event_id(2)]["se_value"] == 0.0
    assert str(by_id[event_id(10)]["tr_total"]) == "-1.01"
    assert by_id[event_id(13)]["txn_id"] == 16
    assert by_id[event_id(20)]["app_id"] == "\\N"
    assert by_id[event_id(21)]["app_id"] == "\\."
    assert by_id[event_id(26)]["app_id"] == " "


def _five_batches(path: Path, bad_line: int | None) -> int:
    """50 lines of one length: five batches of 10 lines at the size returned."""
    rows = []
    for n in range(50):
        port = "8x" if n + 1 == bad_line else "80"
        rows.append(make_row(event_id(n), page_title="t" * 360, page_urlport=port))
    write_tsv(path, rows)
    size = path.stat().st_size
    assert size % 50 == 0
    return size // 5


def test_bad_line_in_third_batch_keeps_the_two_before(
    store_kind: str, tmp_path: Path
) -> None:
    source = tmp_path / "events.tsv"
    size = _five_batches(source, bad_line=27)
    store = make_store(store_kind, tmp_path)
    try:
        with pytest.raises(BadInputError) as caught:
            load_files(store, [str(source)], batch_bytes=size)
        message = str(caught.value)
        assert message.startswith(f"{source}, line 27: field page_urlport"), message
        manifest = store.read_manifest().to_pylist()
        assert sorted(entry["first_line"] for entry in manifest) == [1, 11]
        assert store.read_events().num_rows == 20

        _five_batches(source, bad_line=None)
        result = load_files(store, [str(source)], batch_bytes=size)
        assert (result.skipped_batches, result.events) == (2, 30)
        events = store.read_events().column("event_id").to_pylist()
        assert events == sorted(event_id(n) for n in range(50))
    finally:
        store.close()


def test_bad_line_after_committed_batches_does_not_say_nothing_was_loaded(
    tmp_path: Path,
) -> None:
    """The error for line 27 ends with 'Nothing was loaded.' while the two
    batches before it (20 events) are committed, as the docs promise: the
    message contradicts the store."""
    source = tmp_path / "events.tsv"
    size = _five_batches(source, bad_line=27)
    result = plowline(
        "load", *cli_args("duckdb", tmp_path), "--batch-bytes", str(size), str(source)
    )
    assert result.returncode == 1
    assert f"{source}, line 27" in result.stderr
    store = make_store("duckdb", tmp_path)
    try:
        assert store.read_events().num_rows == 20
    finally:
        store.close()
    assert "Nothing was loaded" not in result.stderr, result.stderr[-300:]


@pytest.mark.parametrize(
    ("name", "broken", "expected"),
    [
        ("f130", lambda text: text.rsplit("\t", 1)[0], "line 3 has 130 fields"),
        ("f132", lambda text: text + "\tx", "line 3 has 132 fields"),
        ("blank", lambda text: "", "line 3 has 1 fields"),
        ("cr", lambda text: text.replace("ssc-", "s\rsc-"), "line 3: a field"),
        ("json", lambda text: text.replace("\t{}", "\t{"), "line 3: field contexts"),
    ],
)
def test_malformed_line_names_file_and_line(
    tmp_path: Path, name: str, broken: Any, expected: str
) -> None:
    lines = [line(n, contexts="{}" if n == 2 else "").rstrip("\n") for n in range(4)]
    lines[2] = broken(lines[2])
    source = tmp_path / f"{name}.tsv"
    source.write_text("\n".join(lines) + "\n", "utf-8")
    result = plowline("load", *cli_args("duckdb", tmp_path), str(source))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"Error: {source}, {expected}" in result.stderr


def test_invalid_utf8_names_file_line_and_byte(tmp_path: Path) -> None:
    data = (line(0) + line(1, app_id="ab")).encode().replace(b"ab", b"a\xff")
    source = tmp_path / "latin.tsv"
    source.write_bytes(data)
    store = make_store("duckdb", tmp_path)
    try:
        with pytest.raises(BadInputError, match=r"latin\.tsv, line 2: not valid UTF"):
            load_files(store, [str(source)])
        assert store.read_events().num_rows == 0
    finally:
        store.close()


def test_crlf_no_final_newline_and_empty_inputs(
    store_kind: str, tmp_path: Path
) -> None:
    plain = "".join(line(n, page_title=f"t{n}") for n in range(30))
    crlf = tmp_path / "crlf.tsv"
    crlf.write_bytes(plain.replace("\n", "\r\n").encode())
    bare = tmp_path / "bare.tsv"
    bare.write_bytes(plain.encode()[:-1])
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"")
    store = make_store(store_kind, tmp_path)
    try:
        result = load_files(store, [str(empty), str(crlf)], batch_bytes=2000)
        assert [i.events for i in result.inputs] == [0, 30]
        assert result.inputs[0].batches == 0
        events = store.read_events().to_pylist()
        assert [row["page_title"] for row in events] == [f"t{n}" for n in range(30)]
        # The same events without a final newline: all natural duplicates.
        again = load_files(store, [str(bare)], batch_bytes=2000)
        assert (again.events, again.natural_duplicates) == (0, 30)
        assert store.read_events().num_rows == 30
    finally:
        store.close()


def test_gz_and_stdin_have_the_batch_ids_of_the_plain_file(tmp_path: Path) -> None:
    rows = [make_row(event_id(n), page_title="p" * (n % 70)) for n in range(400)]
    plain = write_tsv(tmp_path / "events.tsv", rows)
    packed = tmp_path / "events.tsv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    store = make_store("duckdb", tmp_path)
    try:
        first = load_files(store, [str(plain)], batch_bytes=7000)
        assert first.events == 400 and first.inputs[0].batches > 10
        again = load_files(store, [str(packed)], batch_bytes=7000)
        assert again.events == 0
        assert again.skipped_batches == first.inputs[0].batches
    finally:
        store.close()
    piped = plowline(
        "load",
        *cli_args("duckdb", tmp_path),
        "--batch-bytes",
        "7000",
        "-",
        input=plain.read_text("utf-8"),
    )
    assert piped.returncode == 0, piped.stderr[-400:]
    assert "Loaded 0 events" in piped.stdout
    assert f"{first.inputs[0].batches} batches were loaded before" in piped.stdout


ROWS = 3000


def _crash_input(path: Path) -> Path:
    rows = []
    for n in range(ROWS):
        contexts = {"schema": CTX, "data": [{"schema": PAGE, "data": {"id": f"p{n}"}}]}
        # 300 ids come twice, in batches far apart, with different content.
        rows.append(
            make_row(
                event_id(n % (ROWS - 300)),
                page_title=f"title {n} " + "x" * 300,
                contexts=json.dumps(contexts),
            )
        )
    return write_tsv(path, rows)


def _killed_after(args: list[str], batches: int) -> None:
    env = {**os.environ, "PLOWLINE_LOAD_BATCH_BYTES": "40000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "plowline", "load", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    written = 0
    deadline = time.monotonic() + 60
    for text in process.stderr:
        if " written, " in text:
            written += 1
            if written == batches:
                process.send_signal(signal.SIGKILL)
                break
        assert time.monotonic() < deadline
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL, "the load ended before the kill"


def test_killed_twice_then_rerun_equals_a_clean_load(
    store_kind: str, tmp_path: Path
) -> None:
    source = _crash_input(tmp_path / "big.tsv")
    crashed = tmp_path / "crashed"
    clean = tmp_path / "clean"
    crashed.mkdir()
    clean.mkdir()
    args = [*cli_args(store_kind, crashed), str(source)]
    _killed_after(args, 2)
    _killed_after(args, 7)
    rerun = plowline(
        "load", *args, env={**os.environ, "PLOWLINE_LOAD_BATCH_BYTES": "40000"}
    )
    assert rerun.returncode == 0, rerun.stderr[-400:]
    assert "batches were loaded before: skipped" in rerun.stdout

    reference = make_store(store_kind, clean)
    got = make_store(store_kind, crashed)
    try:
        load_files(reference, [str(source)], batch_bytes=40000)
        want = reference.read_events()
        have = got.read_events()
        assert have.num_rows == ROWS
        assert (
            have.column("event_id").to_pylist() == want.column("event_id").to_pylist()
        )
        assert sorted(have.column("page_title").to_pylist()) == sorted(
            want.column("page_title").to_pylist()
        )
        name = "com_snowplowanalytics_snowplow_duplicate_1"
        assert got.read_child_table(name).num_rows == 300
        manifest = got.read_manifest().to_pylist()
        assert sum(entry["events"] for entry in manifest) == ROWS
        assert sum(entry["synthetic_duplicates"] for entry in manifest) == 300
        assert len({entry["batch_id"] for entry in manifest}) == len(manifest)
    finally:
        reference.close()
        got.close()


@pytest.mark.skipif("postgres" not in STORE_KINDS, reason="needs PostgreSQL")
def test_two_processes_load_one_file_into_postgres(tmp_path: Path) -> None:
    source = _crash_input(tmp_path / "big.tsv")
    args = [
        sys.executable,
        "-m",
        "plowline",
        "load",
        "--batch-bytes",
        "40000",
        *cli_args("postgres", tmp_path),
        str(source),
    ]
    both = [
        subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs
    store = make_store("postgres", tmp_path)
    try:
        ids = store.read_events().column("event_id").to_pylist()
        assert len(ids) == len(set(ids)) == ROWS
        manifest = store.read_manifest().to_pylist()
        assert sum(entry["events"] for entry in manifest) == ROWS
        assert len({entry["batch_id"] for entry in manifest}) == len(manifest)
    finally:
        store.close()
