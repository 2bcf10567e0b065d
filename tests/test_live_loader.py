"""The live loader of ``plowline up``: offsets, restarts and rows a store refuses."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import pytest

from plowline.enrich.pipeline import EnrichedEvent, Enricher, Outcome
from plowline.rawlog.record import RawRecord, encode_record
from plowline.storage.duckdb import connect, ensure_schema
from plowline.up import LiveLoader


def raw_line(query: str) -> bytes:
    record = RawRecord(
        id=str(uuid.uuid4()),
        tstamp=1_796_398_150_600,
        collector="plowline-test",
        method="GET",
        path="/i",
        querystring=query.encode(),
    )
    return encode_record(record)


@pytest.fixture
def conn(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = connect(tmp_path / "events.duckdb")
    ensure_schema(connection)
    return connection


def count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_loader_resumes_where_it_stopped(
    tmp_path: Path, conn: duckdb.DuckDBPyConnection
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    log = raw / "raw-1.jsonl"
    log.write_bytes(raw_line("e=pv&p=web&tv=t") + raw_line("e=zz&p=web&tv=t"))
    assert LiveLoader(conn, raw).step() == 2
    assert (count(conn, "atomic.events"), count(conn, "atomic.failed_events")) == (1, 1)

    with open(log, "ab") as handle:
        handle.write(raw_line("e=se&p=web&tv=t") + b'{"torn": ')
    again = LiveLoader(conn, raw)
    again.drain()
    assert (count(conn, "atomic.events"), count(conn, "atomic.failed_events")) == (2, 1)


class OverflowingEnricher(Enricher):
    """Emits an amount no DECIMAL(18,2) column holds, as a faulty enrichment might."""

    def enrich_line(
        self, line: bytes, *, source: str | None = None, line_number: int | None = None
    ) -> list[Outcome]:
        outcomes = super().enrich_line(line, source=source, line_number=line_number)
        for outcome in outcomes:
            if isinstance(outcome, EnrichedEvent) and outcome["app_id"] == "huge":
                outcome.fields["tr_total"] = "1" + "0" * 30
        return outcomes


def test_row_the_store_refuses_becomes_a_failed_event(
    tmp_path: Path, conn: duckdb.DuckDBPyConnection
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "raw-1.jsonl").write_bytes(
        raw_line("e=tr&p=web&tv=t&aid=ok&tr_tt=5")
        + raw_line("e=tr&p=web&tv=t&aid=huge&tr_tt=6")
        + raw_line("e=tr&p=web&tv=t&aid=ok&tr_tt=7")
    )
    loader = LiveLoader(conn, raw, OverflowingEnricher())
    assert loader.step() == 3
    totals = conn.execute(
        "SELECT tr_total FROM atomic.events ORDER BY tr_total"
    ).fetchall()
    assert [float(t) for (t,) in totals] == [5.0, 7.0]
    row = conn.execute(
        "SELECT failure_type, message FROM atomic.failed_events"
    ).fetchone()
    assert row is not None
    assert row[0] == "generic_error"
    assert "tr_total" in row[1]
    assert LiveLoader(conn, raw).step() == 0
