"""Start-up recovery: files of gone writers are closed, torn tails set aside."""

from __future__ import annotations

from pathlib import Path

from plowline.rawlog.record import RawRecord, decode_record, encode_record
from plowline.rawlog.recovery import recover_raw_dir
from plowline.rawlog.writer import RawLogWriter

ACTIVE = "raw-20261204T153115792000-4242.jsonl.open"
CLOSED = "raw-20261204T153115792000-4242.jsonl"


def line(n: int) -> bytes:
    record = RawRecord(
        id=f"id-{n}", tstamp=n, collector="plowline-test", method="GET", path="/i"
    )
    return encode_record(record)


def test_torn_tail_moves_to_a_torn_file_and_file_closes(tmp_path: Path) -> None:
    whole = line(1) + line(2)
    torn = line(3)[:25]
    (tmp_path / ACTIVE).write_bytes(whole + torn)

    [recovered] = recover_raw_dir(tmp_path)

    assert recovered.closed == tmp_path / CLOSED
    assert recovered.torn_bytes == len(torn)
    assert (tmp_path / CLOSED).read_bytes() == whole
    assert (tmp_path / (CLOSED + ".torn")).read_bytes() == torn
    assert sorted(p.name for p in tmp_path.iterdir()) == [CLOSED, CLOSED + ".torn"]


def test_file_ending_in_a_newline_is_only_renamed(tmp_path: Path) -> None:
    (tmp_path / ACTIVE).write_bytes(line(1))

    [recovered] = recover_raw_dir(tmp_path)

    assert recovered.torn_bytes == 0
    assert [p.name for p in tmp_path.iterdir()] == [CLOSED]


def test_file_holding_only_a_torn_line_is_removed(tmp_path: Path) -> None:
    (tmp_path / ACTIVE).write_bytes(b'{"v":1,"id":"x')

    [recovered] = recover_raw_dir(tmp_path)

    assert recovered.closed is None
    assert [p.name for p in tmp_path.iterdir()] == [CLOSED + ".torn"]
    assert (tmp_path / (CLOSED + ".torn")).read_bytes() == b'{"v":1,"id":"x'


def test_live_writers_file_is_left_alone(tmp_path: Path) -> None:
    with RawLogWriter(tmp_path) as writer:
        writer.write(decode_record(line(1)))
        recovered = recover_raw_dir(tmp_path)
        names = [p.name for p in tmp_path.iterdir()]

    assert recovered == []
    assert [name.endswith(".open") for name in names] == [True]


def test_recovery_twice_changes_nothing_more(tmp_path: Path) -> None:
    (tmp_path / ACTIVE).write_bytes(line(1) + b"{")
    recover_raw_dir(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    assert recover_raw_dir(tmp_path) == []
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_missing_folder_recovers_nothing(tmp_path: Path) -> None:
    assert recover_raw_dir(tmp_path / "nope") == []
