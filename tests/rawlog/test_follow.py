"""Following raw logs that are still being written, and reading finished ones."""

from __future__ import annotations

import gzip
import uuid
from pathlib import Path

import pytest

from plowline.errors import BadInputError
from plowline.rawlog.follow import RawLogFollower
from plowline.rawlog.reader import iter_lines
from plowline.rawlog.record import RawRecord, decode_record, encode_record


def line(n: int) -> bytes:
    record = RawRecord(
        id=str(uuid.uuid4()),
        tstamp=1_700_000_000_000 + n,
        collector="plowline-test",
        method="GET",
        path="/i",
        querystring=f"e=pv&n={n}".encode(),
    )
    return encode_record(record)


def test_follower_takes_only_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "raw-1.jsonl"
    first, second = line(1), line(2)
    log.write_bytes(first + second[:10])
    follower = RawLogFollower(tmp_path)

    batch = follower.poll()
    assert [decode_record(x).tstamp for _, _, x in batch.lines] == [1_700_000_000_001]
    follower.commit(batch)
    assert follower.poll().lines == []

    with open(log, "ab") as handle:
        handle.write(second[10:])
    batch = follower.poll()
    assert [(name, offset) for name, offset, _ in batch.lines] == [
        ("raw-1.jsonl", len(first))
    ]
    assert batch.offsets == {"raw-1.jsonl": len(first) + len(second)}


def test_follower_resumes_from_stored_offsets(tmp_path: Path) -> None:
    (tmp_path / "raw-1.jsonl").write_bytes(line(1) + line(2))
    (tmp_path / "raw-2.jsonl").write_bytes(line(3))
    (tmp_path / ".hidden.jsonl").write_bytes(line(9))
    (tmp_path / "notes.txt").write_bytes(b"not a raw log\n")
    follower = RawLogFollower(tmp_path, {"raw-1.jsonl": len(line(1))})
    batch = follower.poll()
    assert [decode_record(x).tstamp % 1000 for _, _, x in batch.lines] == [2, 3]


def test_poll_budget_splits_large_backlogs(tmp_path: Path) -> None:
    (tmp_path / "raw-1.jsonl").write_bytes(b"".join(line(n) for n in range(100)))
    follower = RawLogFollower(tmp_path, max_bytes_per_poll=2000)
    seen = []
    while batch := follower.poll():
        seen.extend(decode_record(x).tstamp % 1000 for _, _, x in batch.lines)
        follower.commit(batch)
    assert seen == list(range(100))


def test_reader_takes_files_folders_and_gzip(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(line(1) + b"\n" + line(2))
    nested = tmp_path / "sub"
    nested.mkdir()
    (nested / "b.jsonl.gz").write_bytes(gzip.compress(line(3)))
    found = [
        (Path(source).name, number) for source, number, _ in iter_lines([str(tmp_path)])
    ]
    assert found == [("a.jsonl", 1), ("a.jsonl", 3), ("b.jsonl.gz", 1)]


def test_reader_names_a_missing_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="nope"):
        list(iter_lines([str(tmp_path / "nope")]))


def test_record_longer_than_the_poll_budget_is_taken(tmp_path: Path) -> None:
    big = b'{"v": 1, "pad": "' + b"x" * 5000 + b'"}\n'
    (tmp_path / "raw-1.jsonl").write_bytes(big + line(1))
    follower = RawLogFollower(tmp_path, max_bytes_per_poll=1000)
    first = follower.poll()
    assert [x for _, _, x in first.lines] == [big.rstrip(b"\n")]
    follower.commit(first)
    second = follower.poll()
    assert [decode_record(x).tstamp % 1000 for _, _, x in second.lines] == [1]


def test_offsets_hold_when_the_active_file_is_renamed_closed(tmp_path: Path) -> None:
    active = tmp_path / "raw-1.jsonl.open"
    active.write_bytes(line(1) + line(2))
    follower = RawLogFollower(tmp_path)
    batch = follower.poll()
    follower.commit(batch)
    with open(active, "ab") as handle:
        handle.write(line(3))
    active.rename(tmp_path / "raw-1.jsonl")

    again = follower.poll()
    assert list(batch.offsets) == ["raw-1.jsonl"]
    assert [decode_record(x).tstamp % 1000 for _, _, x in again.lines] == [3]
    assert [name for name, _, _ in again.lines] == ["raw-1.jsonl"]


def test_follower_skips_torn_and_forwarded_files(tmp_path: Path) -> None:
    (tmp_path / "raw-1.jsonl.torn").write_bytes(b'{"v":1,"id"\n')
    (tmp_path / "raw-2.jsonl.forwarded").write_bytes(line(2))
    (tmp_path / "raw-3.jsonl.open").write_bytes(line(3) + b'{"v":1')

    batch = RawLogFollower(tmp_path).poll()
    assert [decode_record(x).tstamp % 1000 for _, _, x in batch.lines] == [3]


def test_folder_gives_closed_raw_logs_only(tmp_path: Path) -> None:
    for name in ("raw-1.jsonl", "raw-2.jsonl.open", "raw-1.jsonl.torn"):
        (tmp_path / name).write_bytes(line(1))
    (tmp_path / "raw-0.jsonl.forwarded").write_bytes(line(0))

    found = [Path(source).name for source, _, _ in iter_lines([str(tmp_path)])]
    assert found == ["raw-1.jsonl"]


def test_named_active_file_leaves_its_unfinished_last_line(tmp_path: Path) -> None:
    active = tmp_path / "raw-2.jsonl.open"
    active.write_bytes(line(1) + b'{"v":1,"id":"half')

    found = [decode_record(x).tstamp % 1000 for _, _, x in iter_lines([str(active)])]
    assert found == [1]
