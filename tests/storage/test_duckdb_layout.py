"""How Plowline lays out a DuckDB file: per-column compression and block size.

These choices change bytes on disk only: the tests check that they are applied
to new files, that values and types read back the same, and that files made
before them (no compression clause, DuckDB's default block size) still load.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from plowline.enrich.fields import FIELD_NAMES
from plowline.errors import ConfigurationError
from plowline.storage.duckdb import (
    DuckDBStore,
    connect,
    ensure_schema,
    events_ddl,
    load_files,
)
from plowline.storage.duckdb.schema import NEW_FILE_BLOCK_SIZE, ZSTD_COLUMNS

DUCKDB_DEFAULT_BLOCK_SIZE = 256 * 1024
CLAUSE = " USING COMPRESSION zstd"


def enriched_line(n: int) -> str:
    values = {
        "collector_tstamp": "2026-12-04 15:29:10.526",
        "event_id": f"{n:08x}-1111-4222-8333-{n * 7919:012x}",
        "v_collector": "ssc-3.2.0-kinesis",
        "v_etl": "plowline-0.1.0",
        "app_id": "shop",
        "page_url": f"https://shop.example.com/item/{n}?ref=mail#n{n}",
        "page_title": "Item",
    }
    return "\t".join(values.get(name, "") for name in FIELD_NAMES) + "\n"


def write_events(path: Path, start: int, count: int) -> Path:
    path.write_text("".join(enriched_line(n) for n in range(start, start + count)))
    return path


def compressions(conn: duckdb.DuckDBPyConnection, column: str) -> set[str]:
    rows = conn.execute(
        "SELECT DISTINCT compression FROM pragma_storage_info('atomic.events') "
        "WHERE column_name = ? AND segment_type <> 'VALIDITY'",
        [column],
    ).fetchall()
    return {str(name) for (name,) in rows}


def block_size(conn: duckdb.DuckDBPyConnection) -> int:
    rows = conn.execute("SELECT block_size FROM pragma_database_size()").fetchall()
    return int(rows[0][0])


def events_sql(conn: duckdb.DuckDBPyConnection) -> str:
    rows = conn.execute(
        "SELECT sql FROM duckdb_tables() "
        "WHERE schema_name = 'atomic' AND table_name = 'events'"
    ).fetchall()
    return str(rows[0][0])


def page_urls(conn: duckdb.DuckDBPyConnection) -> list[str]:
    rows = conn.execute(
        "SELECT page_url FROM atomic.events ORDER BY event_id"
    ).fetchall()
    return [str(url) for (url,) in rows]


def expected_urls(start: int, count: int) -> list[str]:
    return [
        f"https://shop.example.com/item/{n}?ref=mail#n{n}"
        for n in range(start, start + count)
    ]


def test_only_page_url_is_declared_with_zstd() -> None:
    ddl = events_ddl()
    assert {"page_url"} == ZSTD_COLUMNS
    assert '"page_url" VARCHAR USING COMPRESSION zstd,' in ddl
    assert ddl.count(CLAUSE) == 1
    # The NOT NULL of required columns is unchanged.
    assert '"event_id" UUID NOT NULL' in ddl


def test_new_file_stores_page_url_with_zstd_and_reads_it_back(tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    source = write_events(tmp_path / "events.tsv", 0, 3000)

    assert load_files(db, [str(source)]).events == 3000

    with connect(db, read_only=True) as conn:
        assert compressions(conn, "page_url") == {"ZSTD"}
        # Text with few values keeps DuckDB's own choice.
        assert "ZSTD" not in compressions(conn, "page_title")
        assert "ZSTD" not in compressions(conn, "app_id")
        assert "page_url VARCHAR USING COMPRESSION ZSTD" in events_sql(conn)
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE "
                "table_name = 'events' AND column_name IN ('page_url', 'event_id')"
            ).fetchall()
        )
        assert types == {"page_url": "VARCHAR", "event_id": "UUID"}
        assert page_urls(conn) == expected_urls(0, 3000)
        assert block_size(conn) == NEW_FILE_BLOCK_SIZE != DUCKDB_DEFAULT_BLOCK_SIZE


def test_store_reads_the_same_events_from_both_layouts(tmp_path: Path) -> None:
    source = write_events(tmp_path / "events.tsv", 0, 500)
    new, old = tmp_path / "new.duckdb", tmp_path / "old.duckdb"
    _make_old_layout_file(old)
    load_files(new, [str(source)])
    load_files(old, [str(source)])

    tables = []
    for path in (new, old):
        store = DuckDBStore(path, read_only=True)
        try:
            tables.append(store.read_events())
        finally:
            store.close()

    assert tables[0].num_rows == 500
    assert tables[0].equals(tables[1])
    assert tables[0].schema == tables[1].schema


def _make_old_layout_file(path: Path) -> None:
    """A file as an older Plowline made it: DuckDB's default block size and
    ``atomic.events`` without any compression clause."""
    old_ddl = events_ddl().replace(CLAUSE, "")
    assert old_ddl != events_ddl()
    conn = duckdb.connect(str(path))
    try:
        conn.execute("CREATE SCHEMA atomic")
        conn.execute(old_ddl)
        ensure_schema(conn)  # the other tables; atomic.events stays as it is
    finally:
        conn.close()


def test_old_layout_file_keeps_its_layout_and_still_loads(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    _make_old_layout_file(db)
    first = write_events(tmp_path / "first.tsv", 0, 2000)
    second = write_events(tmp_path / "second.tsv", 2000, 1000)

    assert load_files(db, [str(first)]).events == 2000
    assert load_files(db, [str(second)]).events == 1000

    with connect(db, read_only=True) as conn:
        assert block_size(conn) == DUCKDB_DEFAULT_BLOCK_SIZE
        assert "USING COMPRESSION" not in events_sql(conn)
        assert compressions(conn, "page_url")
        assert "ZSTD" not in compressions(conn, "page_url")
        assert page_urls(conn) == expected_urls(0, 3000)


def test_existing_file_keeps_its_block_size(tmp_path: Path) -> None:
    db = tmp_path / "made-elsewhere.duckdb"
    duckdb.connect(str(db)).close()

    conn = connect(db)
    try:
        ensure_schema(conn)
        assert block_size(conn) == DUCKDB_DEFAULT_BLOCK_SIZE
    finally:
        conn.close()


def test_read_only_open_of_missing_file_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.duckdb"

    with pytest.raises(ConfigurationError, match="There is no DuckDB database"):
        connect(missing, read_only=True)

    assert not missing.exists()


def test_in_memory_database_makes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    conn = connect(":memory:")
    try:
        ensure_schema(conn)
        assert conn.execute("SELECT count(*) FROM atomic.events").fetchall() == [(0,)]
    finally:
        conn.close()

    assert list(tmp_path.iterdir()) == []
