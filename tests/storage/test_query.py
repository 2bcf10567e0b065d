"""Queries through the owning process's Unix socket, and on the file read-only."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pytest

from plowline.enrich.fields import FIELD_NAMES
from plowline.errors import BadInputError, ConfigurationError, StoreUnavailableError
from plowline.storage.duckdb import connect, ensure_schema, load_rows
from plowline.storage.query import (
    QueryResult,
    QueryServer,
    format_csv,
    format_json,
    run_query,
    socket_path_for,
    to_json_value,
)

REQUIRED = {
    "collector_tstamp": "2026-12-04 15:29:10.526",
    "v_collector": "ssc-3.2.0-kinesis",
    "v_etl": "plowline-0.1.0",
}


def enriched_row(event_id: str, **values: str) -> list[str]:
    given = {**REQUIRED, "event_id": event_id, **values}
    return [given.get(name, "") for name in FIELD_NAMES]


ROWS = [
    enriched_row(
        "e1",
        tr_total="59.97",
        app_id="Café ✓",
        contexts='{"schema":"iglu:a/b/jsonschema/1-0-0","data":[]}',
    ),
    enriched_row("e2", tr_total="0.10"),
]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "plowline.duckdb"


@pytest.fixture
def owner(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The write connection of the process that owns the file, as `plowline up`."""
    conn = connect(db_path)
    ensure_schema(conn)
    load_rows(conn, ROWS)
    yield conn
    conn.close()


@pytest.fixture
def server(owner: duckdb.DuckDBPyConnection, db_path: Path) -> Iterator[QueryServer]:
    with QueryServer(owner, socket_path_for(db_path)) as running:
        yield running


def closed_database(db_path: Path) -> None:
    conn = connect(db_path)
    ensure_schema(conn)
    load_rows(conn, ROWS)
    conn.close()


def ask_raw(path: Path, request: bytes) -> object:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))
        client.sendall(request)
        client.shutdown(socket.SHUT_WR)
        return orjson.loads(b"".join(iter(lambda: client.recv(65536), b"")))


# Through the socket


def test_query_goes_through_socket_while_file_is_open(
    server: QueryServer, db_path: Path
) -> None:
    result = run_query(
        db_path,
        "SELECT event_id, collector_tstamp, tr_total, app_id, contexts ->> 'schema' "
        "AS schema FROM atomic.events ORDER BY event_id",
    )

    assert result.via == "socket"
    assert result.columns == [
        "event_id",
        "collector_tstamp",
        "tr_total",
        "app_id",
        "schema",
    ]
    assert result.types == [
        "VARCHAR",
        "TIMESTAMP",
        "DECIMAL(18,2)",
        "VARCHAR",
        "VARCHAR",
    ]
    assert result.rows == [
        [
            "e1",
            "2026-12-04 15:29:10.526",
            "59.97",
            "Café ✓",
            "iglu:a/b/jsonschema/1-0-0",
        ],
        ["e2", "2026-12-04 15:29:10.526", "0.10", None, None],
    ]


def test_socket_file_is_private_and_removed_on_stop(
    owner: duckdb.DuckDBPyConnection, db_path: Path
) -> None:
    path = socket_path_for(db_path)
    assert path.name == "plowline.duckdb.sock"
    server = QueryServer(owner, path)

    server.start()
    mode = path.stat().st_mode
    server.stop()

    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert not path.exists()
    assert [p.name for p in db_path.parent.iterdir() if p.name.startswith(".")] == []


def test_uncommitted_rows_stay_invisible(
    server: QueryServer, owner: duckdb.DuckDBPyConnection, db_path: Path
) -> None:
    owner.begin()
    owner.execute("DELETE FROM atomic.events")

    during = run_query(db_path, "SELECT count(*) AS n FROM atomic.events")
    owner.commit()
    after = run_query(db_path, "SELECT count(*) AS n FROM atomic.events")

    assert (during.rows, after.rows) == ([[2]], [[0]])


def test_rows_loaded_while_serving_are_seen(
    server: QueryServer, owner: duckdb.DuckDBPyConnection, db_path: Path
) -> None:
    load_rows(owner, [enriched_row("e3")])

    result = run_query(db_path, "SELECT count(*) FROM atomic.events")

    assert result.rows == [[3]]


def test_queries_answer_while_a_loader_thread_inserts(
    server: QueryServer, owner: duckdb.DuckDBPyConnection, db_path: Path
) -> None:
    # As in `plowline up`: the owner's connection is busy loading in its thread.
    def keep_loading() -> None:
        for batch in range(20):
            load_rows(owner, [enriched_row(f"l{batch}-{n}") for n in range(200)])

    loader = threading.Thread(target=keep_loading)
    loader.start()
    counts = []
    while loader.is_alive():
        counts.append(run_query(db_path, "SELECT count(*) FROM atomic.events").rows)
    loader.join()

    final = run_query(db_path, "SELECT count(*) FROM atomic.events")
    assert counts
    assert all(2 <= rows[0][0] <= 4002 for rows in counts)
    assert final.rows == [[4002]]


def test_sql_error_comes_back_and_server_goes_on(
    server: QueryServer, db_path: Path
) -> None:
    with pytest.raises(BadInputError, match=r"The query failed: .*no_such_table"):
        run_query(db_path, "SELECT * FROM no_such_table")

    assert run_query(db_path, "SELECT 1 AS one").rows == [[1]]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE main.notes (text VARCHAR)",
        "DELETE FROM atomic.events",
        "SELECT 1; DROP TABLE atomic.events",
        "COPY atomic.events TO 'out.csv'",
    ],
    ids=["create", "delete", "select-then-drop", "copy"],
)
def test_socket_serves_only_reading_statements(
    server: QueryServer, db_path: Path, sql: str
) -> None:
    with pytest.raises(BadInputError, match="Only reading queries"):
        run_query(db_path, sql)

    assert run_query(db_path, "SELECT count(*) FROM atomic.events").rows[0][0] >= 0


@pytest.mark.parametrize(
    "request_bytes",
    [b"", b"not json", b'["sql"]', b'{"sql": 5}', b'{"query": "SELECT 1"}'],
    ids=["empty", "not-json", "list", "sql-not-text", "no-sql-key"],
)
def test_malformed_request_gets_error_reply(
    server: QueryServer, request_bytes: bytes
) -> None:
    assert ask_raw(server.socket_path, request_bytes) == {
        "error": 'Expected a JSON object {"sql": "..."}.'
    }


def test_values_json_cannot_carry_arrive_as_text(
    server: QueryServer, db_path: Path
) -> None:
    result = run_query(
        db_path,
        "SELECT TIMESTAMP '2026-12-04 15:29:10.526' AS ts, "
        "TIMESTAMP '2026-12-04 15:29:10.526001' AS ts_us, "
        "DATE '2026-12-04' AS d, 59.97::DECIMAL(18,2) AS dec, "
        "'c6ef3124-b53a-4b13-a233-0088f79dcbcb'::UUID AS id, "
        "INTERVAL 90 MINUTE AS span, 'nan'::DOUBLE AS nan, "
        "'\\xAA'::BLOB AS blob, 170141183460469231731687303715884105727::HUGEINT "
        "AS huge, [TIMESTAMP '2026-01-01 00:00:00'] AS list, {'x': 1.5} AS struct",
    )

    assert result.rows == [
        [
            "2026-12-04 15:29:10.526",
            "2026-12-04 15:29:10.526001",
            "2026-12-04",
            "59.97",
            "c6ef3124-b53a-4b13-a233-0088f79dcbcb",
            "1:30:00",
            "NaN",
            "\\xaa",
            "170141183460469231731687303715884105727",
            ["2026-01-01 00:00:00.000"],
            {"x": "1.5"},
        ]
    ]


def test_concurrent_queries_all_answer(server: QueryServer, db_path: Path) -> None:
    answers: list[int] = []

    def ask(number: int) -> None:
        result = run_query(db_path, f"SELECT {number} + count(*) FROM atomic.events")
        answers.append(int(result.rows[0][0]))

    # More at once than a listen queue of 5 (socketserver's default) holds.
    threads = [threading.Thread(target=ask, args=(n,)) for n in range(48)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == [n + 2 for n in range(48)]


def test_connection_factory_serves_too(
    owner: duckdb.DuckDBPyConnection, db_path: Path
) -> None:
    with QueryServer(owner.cursor, socket_path_for(db_path)):
        result = run_query(db_path, "SELECT count(*) FROM atomic.events")

    assert (result.via, result.rows) == ("socket", [[2]])


def test_second_server_on_same_socket_is_refused(
    server: QueryServer, owner: duckdb.DuckDBPyConnection, db_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="Another process already serves"):
        QueryServer(owner, server.socket_path).start()
    assert run_query(db_path, "SELECT 1").via == "socket"


def test_server_will_not_replace_a_regular_file(
    owner: duckdb.DuckDBPyConnection, db_path: Path
) -> None:
    path = socket_path_for(db_path)
    path.write_text("keep me")

    with pytest.raises(ConfigurationError, match="is not a socket"):
        QueryServer(owner, path).start()
    assert path.read_text() == "keep me"


def test_stale_socket_file_is_replaced(
    owner: duckdb.DuckDBPyConnection, db_path: Path
) -> None:
    path = socket_path_for(db_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))

    with QueryServer(owner, path):
        assert run_query(db_path, "SELECT 1").via == "socket"


# Without a server


def test_read_only_fallback_without_server(db_path: Path) -> None:
    closed_database(db_path)

    result = run_query(db_path, "SELECT count(*) AS n FROM atomic.events")

    assert (result.via, result.columns, result.rows) == ("file", ["n"], [[2]])


def test_stale_socket_falls_back_to_file(db_path: Path) -> None:
    closed_database(db_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(socket_path_for(db_path)))

    assert run_query(db_path, "SELECT 1").via == "file"


def test_read_only_fallback_refuses_writes(db_path: Path) -> None:
    closed_database(db_path)

    with pytest.raises(BadInputError, match="read-only"):
        run_query(db_path, "DELETE FROM atomic.events")


def test_missing_database_is_configuration_error(db_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="There is no DuckDB database"):
        run_query(db_path, "SELECT 1")


@pytest.mark.slow
def test_file_locked_by_other_process_says_how_to_query(db_path: Path) -> None:
    closed_database(db_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); print('open', "
            "flush=True); sys.stdin.read()",
            str(db_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "open\n"

            with pytest.raises(StoreUnavailableError) as caught:
                run_query(db_path, "SELECT 1")
        finally:
            holder.kill()

    message = str(caught.value)
    assert "locked by another process" in message
    assert "plowline up" in message
    assert str(socket_path_for(db_path)) in message


# Output formats


RESULT = QueryResult(
    ["n", "label", "ok", "tags"],
    ["INTEGER", "VARCHAR", "BOOLEAN", "VARCHAR[]"],
    [[1, 'say "hi", then go', True, ["a"]], [None, None, False, []]],
)


def test_csv_quotes_and_leaves_null_empty() -> None:
    assert format_csv(RESULT) == (
        'n,label,ok,tags\n1,"say ""hi"", then go",true,"[""a""]"\n,,false,[]\n'
    )


def test_json_is_one_object_per_row() -> None:
    assert orjson.loads(format_json(RESULT)) == [
        {"n": 1, "label": 'say "hi", then go', "ok": True, "tags": ["a"]},
        {"n": None, "label": None, "ok": False, "tags": []},
    ]


def test_plain_values_stay_as_they_are() -> None:
    assert [to_json_value(v) for v in (None, "x", True, 7, 1.5)] == [
        None,
        "x",
        True,
        7,
        1.5,
    ]


@pytest.mark.parametrize("sql", ["", "  ;  ", "\n"])
def test_empty_query_is_refused_plainly(
    server: QueryServer, db_path: Path, sql: str
) -> None:
    with pytest.raises(BadInputError, match="The query is empty"):
        run_query(db_path, sql)
    assert ask_raw(server.socket_path, orjson.dumps({"sql": sql})) == {
        "error": "The query is empty: give an SQL statement such as SELECT 1."
    }


def test_stop_interrupts_a_long_query(
    owner: duckdb.DuckDBPyConnection, db_path: Path
) -> None:
    server = QueryServer(owner, socket_path_for(db_path))
    server.start()
    errors: list[Exception] = []

    def long_query() -> None:
        try:
            run_query(db_path, "SELECT count(*) FROM range(20000000000)")
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=long_query)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    server.stop()
    thread.join(timeout=10)
    assert time.monotonic() - started < 6
    assert not thread.is_alive()
    assert len(errors) == 1
    assert owner.execute("SELECT count(*) FROM atomic.events").fetchone() is not None
