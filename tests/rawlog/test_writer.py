"""RawLogWriter: one line per record, files that rotate and sort by time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plowline.rawlog.record import RawRecord, decode_record, encode_record
from plowline.rawlog.writer import RawLogWriter, raw_log_name

# 2026-12-04T15:31:15.792000Z
T0 = 1796398275.792


class SteppedClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_record(n: int, body: bytes | None = None) -> RawRecord:
    return RawRecord(
        id=f"00000000-0000-4000-8000-{n:012d}",
        tstamp=1796398275792 + n,
        collector="plowline-test",
        method="GET",
        path="/i",
        querystring=f"e=pv&n={n}".encode(),
        body=body,
        headers=(("host", "t.example.com"),),
    )


def read_dir(raw_dir: Path) -> list[list[RawRecord]]:
    """The records of every file, files in name order."""
    return [
        [decode_record(line) for line in path.read_bytes().splitlines()]
        for path in sorted(raw_dir.iterdir())
    ]


def test_records_decode_back_unchanged(tmp_path: Path) -> None:
    records = [make_record(1), make_record(2, body=b"\xff\xfe not utf-8")]
    with RawLogWriter(tmp_path) as writer:
        for record in records:
            writer.write(record)

    assert read_dir(tmp_path) == [records]


def test_file_name_is_utc_start_time_and_pid(tmp_path: Path) -> None:
    writer = RawLogWriter(tmp_path, clock=SteppedClock())
    writer.write(make_record(1))
    writer.close()

    expected = f"raw-20261204T153115792000-{os.getpid()}.jsonl"
    assert [p.name for p in tmp_path.iterdir()] == [expected]


def test_no_file_is_created_before_the_first_write(tmp_path: Path) -> None:
    writer = RawLogWriter(tmp_path / "raw")
    writer.close()

    assert writer.path is None
    assert list((tmp_path / "raw").iterdir()) == []


def test_missing_raw_dir_is_created(tmp_path: Path) -> None:
    raw_dir = tmp_path / "a" / "b" / "raw"
    with RawLogWriter(raw_dir) as writer:
        writer.write(make_record(1))

    assert len(list(raw_dir.iterdir())) == 1


def test_rotates_before_a_line_would_pass_max_bytes(tmp_path: Path) -> None:
    line_size = len(encode_record(make_record(1)))
    clock = SteppedClock()
    with RawLogWriter(tmp_path, max_bytes=2 * line_size + 1, clock=clock) as writer:
        for n in range(1, 6):
            writer.write(make_record(n))
            clock.now += 0.001

    files = read_dir(tmp_path)
    assert [len(records) for records in files] == [2, 2, 1]
    assert all(p.stat().st_size <= 2 * line_size + 1 for p in tmp_path.iterdir())


def test_a_record_bigger_than_max_bytes_gets_a_file_of_its_own(
    tmp_path: Path,
) -> None:
    with RawLogWriter(tmp_path, max_bytes=100) as writer:
        writer.write(make_record(1))
        writer.write(make_record(2, body=b"x" * 500))
        writer.write(make_record(3))

    assert [[r.id[-1] for r in records] for records in read_dir(tmp_path)] == [
        ["1"],
        ["2"],
        ["3"],
    ]


def test_rotates_once_the_file_reaches_max_age(tmp_path: Path) -> None:
    clock = SteppedClock()
    with RawLogWriter(tmp_path, max_age_seconds=60, clock=clock) as writer:
        writer.write(make_record(1))
        clock.now += 59.9
        writer.write(make_record(2))
        clock.now += 0.1
        writer.write(make_record(3))

    assert [len(records) for records in read_dir(tmp_path)] == [2, 1]


def test_names_sort_in_write_order_when_clock_stands_still(tmp_path: Path) -> None:
    # A frozen clock must still give every new file a later name.
    with RawLogWriter(tmp_path, max_bytes=1, clock=SteppedClock()) as writer:
        for n in range(1, 6):
            writer.write(make_record(n))

    files = read_dir(tmp_path)
    assert [records[0].tstamp for records in files] == [
        1796398275792 + n for n in range(1, 6)
    ]


def test_names_sort_in_write_order_when_clock_steps_back(tmp_path: Path) -> None:
    clock = SteppedClock()
    with RawLogWriter(tmp_path, max_bytes=1, clock=clock) as writer:
        writer.write(make_record(1))
        clock.now -= 3600
        writer.write(make_record(2))

    assert [records[0].tstamp for records in read_dir(tmp_path)] == [
        1796398275793,
        1796398275794,
    ]


def test_write_after_close_starts_a_new_file(tmp_path: Path) -> None:
    clock = SteppedClock()
    writer = RawLogWriter(tmp_path, clock=clock)
    writer.write(make_record(1))
    first = writer.path
    writer.close()
    writer.write(make_record(2))
    writer.close()

    assert writer.path != first
    assert [len(records) for records in read_dir(tmp_path)] == [1, 1]


def test_raw_log_name_keeps_microseconds() -> None:
    assert raw_log_name(1_796_398_275_000_001, 42) == (
        "raw-20261204T153115000001-42.jsonl"
    )


# Lone surrogates cannot come from decoded bytes, so they are left out.
_header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=50, deadline=None)
@given(
    querystring=st.none() | st.binary(min_size=1, max_size=64),
    body=st.none() | st.binary(min_size=1, max_size=64),
    headers=st.lists(st.tuples(_header_text, _header_text), max_size=4),
)
def test_any_record_reads_back_equal(
    tmp_path_factory: pytest.TempPathFactory,
    querystring: bytes | None,
    body: bytes | None,
    headers: list[tuple[str, str]],
) -> None:
    raw_dir = tmp_path_factory.mktemp("raw")
    record = RawRecord(
        id="r",
        tstamp=1,
        collector="plowline-test",
        method="POST",
        path="/com.acme/v1",
        querystring=querystring,
        body=body,
        headers=tuple(headers),
    )
    with RawLogWriter(raw_dir) as writer:
        writer.write(record)

    assert read_dir(raw_dir) == [[record]]


# --- closed files, durable writers ---------------------------------------------


def test_open_file_has_active_name_until_closed(tmp_path: Path) -> None:
    writer = RawLogWriter(tmp_path, clock=SteppedClock())
    writer.write(make_record(1))
    active = [p.name for p in tmp_path.iterdir()]
    writer.close()

    closed = f"raw-20261204T153115792000-{os.getpid()}.jsonl"
    assert active == [closed + ".open"]
    assert [p.name for p in tmp_path.iterdir()] == [closed]
    assert writer.path == tmp_path / closed


def test_rotation_closes_the_full_file_under_its_closed_name(tmp_path: Path) -> None:
    clock = SteppedClock()
    with RawLogWriter(tmp_path, max_bytes=1, clock=clock) as writer:
        writer.write(make_record(1))
        clock.now += 0.001
        writer.write(make_record(2))
        names = sorted(p.name for p in tmp_path.iterdir())

    assert [name.endswith(".jsonl") for name in names] == [True, False]


def test_idle_file_past_its_age_is_closed_on_check(tmp_path: Path) -> None:
    clock = SteppedClock()
    writer = RawLogWriter(tmp_path, max_age_seconds=60, clock=clock)
    writer.write(make_record(1))
    assert not writer.rotate_if_due()
    clock.now += 60

    assert writer.rotate_if_due()
    assert not writer.is_open
    assert [p.suffix for p in tmp_path.iterdir()] == [".jsonl"]


def test_sync_covers_every_ticket_written_before_it(tmp_path: Path) -> None:
    clock = SteppedClock()
    with RawLogWriter(tmp_path, max_bytes=1, clock=clock, durable=True) as writer:
        tickets = [writer.write_line(encode_record(make_record(n))) for n in (1, 2)]
        result = writer.sync()
        assert result.error is None
        assert result.ticket == tickets[-1] == 2
        assert writer.sync().ticket == 2

    assert [len(records) for records in read_dir(tmp_path)] == [1, 1]


def test_durable_writer_releases_closed_files_at_sync(tmp_path: Path) -> None:
    writer = RawLogWriter(tmp_path, max_bytes=1, durable=True)
    writer.write(make_record(1))
    writer.write(make_record(2))
    descriptors_before = len(os.listdir("/proc/self/fd"))
    writer.sync()

    assert len(os.listdir("/proc/self/fd")) == descriptors_before - 1
    writer.close()
