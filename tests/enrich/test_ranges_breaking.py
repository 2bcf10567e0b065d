"""Attempts to make ``plowline enrich`` reading plain files in ranges part from
reading them line by line.

The workers read their range of a plain file themselves (by path) and number
lines from their chunk's first; the parent renumbers the failed events that
name a line. These tests compare the output (good TSV, failed events, counts)
with what :func:`iter_lines` implies, across one and two workers, plain, gzip
and standard input, and files that change while they are read. Tests marked
``xfail(strict=True)`` show a bug; the others show what holds.
"""

from __future__ import annotations

import gzip
import io
import itertools
import logging
import os
import subprocess
import sys
import textwrap
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plowline.cli import cli
from plowline.enrich import files
from plowline.enrich.fields import FIELD_NAMES
from plowline.enrich.loaders import detect_format, loader_for
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.errors import BadInputError
from plowline.rawlog import reader
from plowline.rawlog.reader import FileRange, file_ranges, iter_lines, read_range
from plowline.rawlog.record import RawRecord, encode_record
from plowline.rawlog.writer import OPEN_SUFFIX

PYTHON = sys.executable
RAW_FORMATS = Path(__file__).resolve().parent.parent / "data" / "raw_formats"
FIXED_TIME = 1796398160.5
_ETL = FIELD_NAMES.index("etl_tstamp")
_EID = FIELD_NAMES.index("event_id")
_COLLECTOR = FIELD_NAMES.index("collector_tstamp")
_DERIVED = FIELD_NAMES.index("derived_tstamp")


def raw_line(n: int) -> bytes:
    """A Plowline raw record (with its newline) that enriches to one event."""
    return encode_record(
        RawRecord(
            id=str(uuid.UUID(int=n + 1)),
            tstamp=1796398150600,
            collector="ranges-test",
            method="GET",
            path="/i",
            querystring=(
                f"e=pv&p=web&tv=t&aid=r&eid=0b0b0b0b-1111-4222-8333-{n:012d}"
            ).encode(),
            body=None,
            content_type=None,
            ip="203.0.113.9",
            useragent="ranges-agent",
            network_userid="c5f3a09f-75f8-4309-bec5-fea560f78455",
        )
    )


def raw_log(count: int, broken_every: int = 0) -> bytes:
    """``count`` raw lines; every ``broken_every``-th one cannot be read."""
    return b"".join(
        b"broken %d\n" % n if broken_every and n % broken_every == 3 else raw_line(n)
        for n in range(count)
    )


def fixed_enricher() -> Enricher:
    return Enricher(clock=lambda: FIXED_TIME)


def run(
    tmp_path: Path,
    inputs: list[str],
    *,
    workers: int = 1,
    input_format: str = "auto",
    tag: str = "",
) -> tuple[bytes, list[bytes], tuple[int, int, int]]:
    """(good TSV, failed-event lines, (lines, enriched, failed)) of one run."""
    good, bad = tmp_path / f"good{tag}.tsv", tmp_path / f"bad{tag}.jsonl"
    enricher = fixed_enricher() if workers == 1 else None
    stats = files.enrich_files(
        inputs,
        str(good),
        str(bad),
        enricher,
        input_format=input_format,
        workers=workers,
    )
    counts = (stats.lines, stats.enriched, stats.failed)
    return good.read_bytes(), bad.read_bytes().splitlines(), counts


def reference(inputs: list[str]) -> tuple[bytes, list[bytes], tuple[int, int, int]]:
    """What line-by-line reading (``iter_lines``) implies, format judged per
    file by its first non-blank line."""
    enricher = fixed_enricher()
    by_source: dict[str, list[bytes]] = {}
    for source, _, line in iter_lines(inputs):
        by_source.setdefault(source, []).append(line)
    good: list[bytes] = []
    bad: list[bytes] = []
    lines = enriched = failed = 0
    for source, number, line in iter_lines(inputs):
        name = detect_format(by_source[source])
        outcomes = enricher.enrich_line(
            line,
            source=source,
            line_number=number,
            loader=loader_for(name),
            loader_name=name,
        )
        if not outcomes:
            continue
        lines += 1
        for outcome in outcomes:
            if isinstance(outcome, EnrichedEvent):
                enriched += 1
                good.append(outcome.to_tsv_bytes())
            else:
                failed += 1
                bad.append(outcome.to_json())
    text = b"".join(row + b"\n" for row in good)
    return text, bad, (lines, enriched, failed)


def failure_lines(bad: list[bytes]) -> list[tuple[str, int]]:
    """(file, line) of every failed event that names its line."""
    found = []
    for line in bad:
        source = orjson.loads(line)["data"]["failure"].get("source")
        if source is not None:
            found.append((source["file"], source["line"]))
    return found


def normal_good(text: bytes) -> list[list[bytes]]:
    """TSV rows without the fields that differ between runs (the clock, ids
    drawn for events that have none)."""
    rows = []
    for row in text.splitlines():
        fields = row.split(b"\t")
        for index in _VARYING_FIELDS:
            fields[index] = b""
        rows.append(fields)
    return rows


_VARYING_KEYS = {
    "timestamp",
    "tstamp",
    "id",
    "etl_tstamp",
    "collector_tstamp",
    "event_id",
    "derived_tstamp",
    "rawRecordId",
}
# Querystring lines carry no time or id: they get the clock's and a drawn one.
_VARYING_FIELDS = (_ETL, _COLLECTOR, _EID, _DERIVED)


def _without_varying(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: None if key in _VARYING_KEYS else _without_varying(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_without_varying(item) for item in value]
    return value


def normal_bad(lines: list[bytes]) -> list[Any]:
    """Failed events without the values that differ between runs."""
    return [_without_varying(orjson.loads(line)) for line in lines]


# ---- what holds ----

PIECES = st.sampled_from(
    [
        raw_line(1),
        raw_line(2).replace(b"\n", b"\r\n"),
        b"broken\n",
        b"{not json\r\n",
        b"\n",
        b"   \n",
        b"\r\n",
        b"x" * 300 + b"\n",
        raw_line(3)[:-1],  # a record without its newline (mid-file: joins the next)
    ]
)
CONTENT = st.lists(PIECES, max_size=25).map(b"".join)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(CONTENT, st.integers(1, 900), st.booleans())
@example(b"\n\n\n" + raw_line(1) + b"broken\n" * 3, 5, False)
@example(raw_line(1) + b"half a line", 64, True)
@example(b"x" * 5000 + b"\nbroken\n", 100, False)
def test_chunks_give_what_line_by_line_reading_gives(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: bytes,
    chunk_bytes: int,
    active: bool,
) -> None:
    """Any mix of lines, cut at any chunk size, enriches as line by line does."""
    monkeypatch.setattr(files, "CHUNK_BYTES", chunk_bytes)
    path = tmp_path / ("raw.jsonl" + (OPEN_SUFFIX if active else ""))
    path.write_bytes(content)
    assert run(tmp_path, [str(path)]) == reference([str(path)])


def test_ranges_cover_the_file_in_whole_lines(tmp_path: Path) -> None:
    """Ranges cover the file contiguously in whole lines, long lines included."""
    content = b"a\n" * 10 + b"L" * 10_000 + b"\n" + b"b\n" * 10 + b"tail"
    path = tmp_path / "raw.jsonl"
    path.write_bytes(content)
    for block in (1, 7, 100, 4096, 20_000):
        ranges = list(file_ranges(str(path), block))
        assert b"".join(read_range(r, "raw.jsonl") for r in ranges) == content
        assert all(
            a.offset + a.length == b.offset for a, b in itertools.pairwise(ranges)
        )
        assert all(read_range(r, "raw.jsonl").endswith(b"\n") for r in ranges[:-1])
        assert all(r.length > 0 for r in ranges)


def test_plain_gzip_and_stdin_give_the_same_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain, gzip and stdin copies give the same rows, failures and numbers."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 1000)
    content = b"\n \r\n" + raw_log(120, broken_every=9).replace(b"\n", b"\r\n", 5)
    content += b"no final newline"
    plain = tmp_path / "raw.jsonl"
    plain.write_bytes(content)
    packed = tmp_path / "raw.jsonl.gz"
    packed.write_bytes(gzip.compress(content))
    results = [run(tmp_path, [str(plain)]), run(tmp_path, [str(packed)])]
    raw = io.BufferedReader(io.BytesIO(content))  # type: ignore[arg-type]
    stdin = io.TextIOWrapper(raw)
    monkeypatch.setattr(sys, "stdin", stdin)
    results.append(run(tmp_path, ["-"]))
    names = [str(plain), str(packed), "<stdin>"]
    expected = reference([str(plain)])
    for (good, bad, counts), name in zip(results, names, strict=True):
        assert good == expected[0]
        assert counts == expected[2] == (121, 107, 14)
        shown = [line.replace(name.encode(), b"F") for line in bad]
        assert shown == [
            line.replace(str(plain).encode(), b"F") for line in expected[1]
        ]


def _mixed_inputs(tmp_path: Path) -> list[str]:
    folder = tmp_path / "in"
    (folder / "sub" / "inner-dir").mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(raw_log(60, broken_every=7))
    (folder / "b.jsonl.gz").write_bytes(gzip.compress(raw_log(40, broken_every=5)))
    (folder / "c-empty.jsonl").write_bytes(b"")
    (folder / "d-blank.jsonl").write_bytes(b"\n  \n\r\n" * 500)
    cloudfront = (RAW_FORMATS / "cloudfront_15_fields.log").read_bytes()
    good_cf = [line for line in cloudfront.splitlines() if line and line[:1] != b"#"]
    cf_lines = [b"#Version: 1.0", b"#Fields: date time"]
    for n in range(30):
        cf_lines.append(b"too\tfew\tfields %d" % n if n % 6 == 2 else good_cf[0])
    (folder / "sub" / "e.log").write_bytes(b"\n".join(cf_lines) + b"\n")
    tomcat = (RAW_FORMATS / "tomcat_15_fields.log").read_bytes().strip()
    (folder / "sub" / "f.log").write_bytes((tomcat + b"\n") * 20 + b"2026-01-01 bad\n")
    queries = b"".join(b"e=se&p=web&tv=t&se_ca=c&se_ac=a%d\n" % n for n in range(50))
    (folder / "sub" / "g.txt").write_bytes(b"\n\n" + queries + b"e=zz&p=web\n")
    (folder / "z.jsonl.open").write_bytes(raw_line(1))  # left out of a folder
    active = tmp_path / "active.jsonl.open"
    active.write_bytes(raw_log(30, broken_every=4) + raw_line(99)[:50])
    again = str(folder / "a.jsonl")
    return [str(folder), str(active), again, again]


def test_mixed_inputs_match_line_by_line_with_one_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mixed formats, odd files and a file named twice match line by line."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 700)
    inputs = _mixed_inputs(tmp_path)
    good, bad, counts = run(tmp_path, inputs)
    expected = reference(inputs)
    assert counts == expected[2] == (352, 303, 49)
    assert normal_good(good) == normal_good(expected[0])
    assert normal_bad(bad) == normal_bad(expected[1])
    named = failure_lines(bad)
    a_jsonl = str(tmp_path / "in" / "a.jsonl")
    a_lines = [line for file, line in named if file == a_jsonl]
    assert a_lines == [n + 1 for n in range(60) if n % 7 == 3] * 3


def test_two_workers_give_what_one_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers give one worker's output on the mixed inputs, with warnings."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 700)
    inputs = _mixed_inputs(tmp_path)
    caplog.set_level(logging.WARNING)
    one = run(tmp_path, inputs, tag="1")
    two = run(tmp_path, inputs, workers=2, tag="2")
    assert one[2] == two[2]
    assert normal_good(one[0]) == normal_good(two[0])
    assert normal_bad(one[1]) == normal_bad(two[1])
    unfinished = [r for r in caplog.records if "unfinished last line" in r.message]
    assert len(unfinished) == 2


def test_finished_open_file_has_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A finished .open log is read whole silently; a torn-only one gives nothing."""
    whole = tmp_path / "w.jsonl.open"
    whole.write_bytes(raw_log(5))
    torn = tmp_path / "t.jsonl.open"
    torn.write_bytes(raw_line(1)[:-1])
    caplog.set_level(logging.WARNING)
    assert run(tmp_path, [str(whole)])[2] == (5, 5, 0)
    assert not [r for r in caplog.records if "unfinished" in r.message]
    assert run(tmp_path, [str(torn)]) == (b"", [], (0, 0, 0))
    assert [r for r in caplog.records if "unfinished" in r.message]


def test_worker_read_error_reaches_the_parent_as_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's read error reaches the parent as a BadInputError naming the file."""
    path = tmp_path / "gone.jsonl"
    path.write_bytes(raw_log(20))
    real = files.file_ranges

    def vanishing(name: str, block_bytes: int) -> Iterator[FileRange]:
        for piece in real(name, block_bytes):
            path.unlink(missing_ok=True)
            yield piece

    monkeypatch.setattr(files, "file_ranges", vanishing)
    with pytest.raises(BadInputError, match=r"gone\.jsonl"):
        run(tmp_path, [str(path)], workers=2, input_format="plowline")


def test_parent_memory_stays_flat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enriching 3 MB in 32 KiB chunks in-process keeps the peak memory small."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 32 * 1024)
    path = tmp_path / "big.jsonl"
    path.write_bytes(raw_log(8000, broken_every=100))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        good, bad = tmp_path / "g.tsv", tmp_path / "b.jsonl"
        stats = files.enrich_files([str(path)], str(good), str(bad))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (stats.lines, stats.failed) == (8000, 80)
    assert peak < 1_500_000


def test_growing_file_is_read_as_it_was_when_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file appended to mid-run, read in ranges, gives its first lines once
    each, none torn."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 2000)
    monkeypatch.setattr(files, "_in_ranges", lambda workers: True)
    path = tmp_path / "raw.jsonl"
    path.write_bytes(raw_log(50, broken_every=10))
    real_read = files.read_range
    reads = []

    def growing(piece: FileRange, name: str) -> bytes:
        reads.append(piece)
        with path.open("ab") as handle:
            handle.write(raw_line(7) + b"broken-late\n" + b"torn")
        return real_read(piece, name)

    monkeypatch.setattr(files, "read_range", growing)
    _, bad, counts = run(tmp_path, [str(path)], input_format="plowline")
    assert len(reads) > 3  # the ranges were read, and the file grew meanwhile
    assert counts == (50, 45, 5)
    assert [line for _, line in failure_lines(bad)] == [4, 14, 24, 34, 44]


# ---- bugs ----

_TRUNCATE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from plowline.enrich import files
    from plowline.rawlog import reader

    path = sys.argv[1]
    files.CHUNK_BYTES = 4096
    files._in_ranges = lambda workers: True
    real = reader.read_range
    def read_then_truncate(piece, name):
        data = real(piece, name)
        os.truncate(path, 1000)  # copytruncate-style rotation, mid-run
        return data
    files.read_range = read_then_truncate
    stats = files.enrich_files([path], os.devnull, os.devnull,
                               input_format="plowline")
    print(stats.lines)
    """
)


def test_file_truncated_while_read_in_ranges_is_a_clear_error(tmp_path: Path) -> None:
    """A file cut short while its ranges are read ends the run with an error
    naming it, instead of hanging or enriching torn lines."""
    path = tmp_path / "access.jsonl"
    path.write_bytes(raw_log(200))
    try:
        done = subprocess.run(
            [PYTHON, "-c", _TRUNCATE_SCRIPT, str(path)],
            capture_output=True,
            timeout=8,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("plowline enrich hung on a file truncated while it was read")
    assert done.returncode == 1
    assert b"access.jsonl: it was cut short while it was being read" in done.stderr


def _rotating_blocks(path: Path, after: int, action: Callable[[], None]) -> Any:
    """iter_blocks that calls ``action`` once ``after`` blocks were given."""
    real = files.iter_blocks

    def blocks(names: list[str], block_bytes: int) -> Iterator[Any]:
        for index, item in enumerate(real(names, block_bytes)):
            yield item
            if index + 1 == after and names == [str(path)]:
                action()

    return blocks


def _rotating(path: Path, after: int, action: Callable[[], None]) -> Any:
    """file_ranges that calls ``action`` once ``after`` ranges were given."""
    real = files.file_ranges

    def ranges(name: str, block_bytes: int) -> Iterator[FileRange]:
        for index, piece in enumerate(real(name, block_bytes)):
            yield piece
            if index + 1 == after and name == str(path):
                action()

    return ranges


@pytest.mark.parametrize("workers", [1, 2])
def test_active_log_rotated_mid_run_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """An .open log the collector renames to .jsonl mid-run is still read whole."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 4000)
    path = tmp_path / ("raw-20261204T153115792000-4242.jsonl" + OPEN_SUFFIX)
    path.write_bytes(raw_log(100, broken_every=10))
    closed = path.with_name(path.name.removesuffix(OPEN_SUFFIX))
    monkeypatch.setattr(
        files, "iter_blocks", _rotating_blocks(path, 1, lambda: path.rename(closed))
    )
    counts = run(tmp_path, [str(path)], workers=workers)[2]
    assert counts == (100, 90, 10)


def _replacing(path: Path) -> Callable[[], None]:
    """What replaces ``path`` with another file (logrotate's create mode)."""

    def replace() -> None:
        fresh = path.with_name("fresh")
        fresh.write_bytes(b"e=pv&p=web&tv=t&aid=other-file\n" * 3000)
        fresh.replace(path)

    return replace


def test_file_replaced_mid_run_gives_only_its_own_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file replaced at its path mid-run gives only its own lines."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 4000)
    path = tmp_path / "access.jsonl"
    path.write_bytes(raw_log(100, broken_every=10))

    replace = _replacing(path)
    monkeypatch.setattr(files, "iter_blocks", _rotating_blocks(path, 1, replace))
    good, bad, counts = run(tmp_path, [str(path)])
    assert b"other-file" not in good + b"".join(bad)
    assert counts == (100, 90, 10)


def test_file_replaced_while_read_in_ranges_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers reading ranges of a file replaced at its path mid-run stop the
    run with an error naming it: never the other file's lines as its own."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 4000)
    monkeypatch.setattr(files, "_in_ranges", lambda workers: True)
    path = tmp_path / "access.jsonl"
    path.write_bytes(raw_log(100, broken_every=10))

    replace = _replacing(path)
    monkeypatch.setattr(files, "file_ranges", _rotating(path, 1, replace))
    good = tmp_path / "good.tsv"
    with pytest.raises(BadInputError, match="it was replaced or moved"):
        files.enrich_files([str(path)], str(good), os.devnull, fixed_enricher())
    assert b"other-file" not in good.read_bytes()


def test_file_named_by_descriptor_reads_the_same_with_two_workers(
    tmp_path: Path,
) -> None:
    """An input named /dev/fd/N gives the same counts with two workers as one."""
    path = tmp_path / "raw.jsonl"
    path.write_bytes(raw_log(40, broken_every=10))
    with path.open("rb") as handle:
        name = f"/dev/fd/{handle.fileno()}"
        one = run(tmp_path, [name], input_format="plowline", tag="1")
        assert one[2] == (40, 36, 4)
        two = run(tmp_path, [name], workers=2, input_format="plowline", tag="2")
    assert two[2] == one[2]


def test_unreadable_input_is_a_clear_error_that_keeps_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreadable input is a one-line error that leaves the outputs alone."""
    secret = tmp_path / "secret.jsonl"
    secret.write_bytes(raw_log(3))
    os.chmod(secret, 0)
    if os.geteuid() == 0:  # root reads any file: its opening is refused here
        real_open = open

        def refusing(file: Any, *args: Any, **kwargs: Any) -> Any:
            if str(file) == str(secret):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(reader, "open", refusing, raising=False)
    good, bad = tmp_path / "good.tsv", tmp_path / "bad.jsonl"
    for output in (good, bad):
        output.write_bytes(b"kept\n")
    command = ["enrich", "--good", str(good), "--bad", str(bad), str(secret)]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 1
    assert not isinstance(result.exception, OSError), result.exception
    assert "Could not read" in result.output
    assert good.read_bytes() == bad.read_bytes() == b"kept\n"


def test_unreadable_line_in_a_file_with_a_non_utf8_name(tmp_path: Path) -> None:
    """An unreadable line of a non-UTF-8-named file is a failed event, no crash."""
    folder = os.fsencode(tmp_path / "in")
    os.mkdir(folder)
    with open(os.path.join(folder, b"caf\xe9.jsonl"), "wb") as handle:
        handle.write(raw_line(1) + b"broken\n")
    assert run(tmp_path, [os.fsdecode(folder)])[2] == (2, 1, 1)
