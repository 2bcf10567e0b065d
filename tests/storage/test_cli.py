"""`plowline load` and `plowline query`, through click's runner and as a process."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pytest
from click.testing import CliRunner, Result

from plowline.cli import cli
from plowline.enrich.fields import FIELD_NAMES
from plowline.storage.duckdb import connect, ensure_schema, load_rows
from plowline.storage.query import QueryServer, socket_path_for
from postgres_server import POSTGRES_SERVER

REQUIRED = {
    "collector_tstamp": "2026-12-04 15:29:10.526",
    "v_collector": "ssc-3.2.0-kinesis",
    "v_etl": "plowline-0.1.0",
}


def tsv_line(event_id: str, **values: str) -> str:
    given = {**REQUIRED, "event_id": event_id, **values}
    return "\t".join(given.get(name, "") for name in FIELD_NAMES) + "\n"


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


@pytest.fixture
def events_tsv(tmp_path: Path) -> Path:
    path = tmp_path / "enriched.tsv"
    path.write_text(
        tsv_line("e1", app_id="shop", tr_total="59.97")
        + tsv_line("e2", app_id="blog", br_cookies="1"),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def loaded_db(tmp_path: Path, events_tsv: Path) -> Path:
    db = tmp_path / "plowline.duckdb"
    assert run("load", "--duckdb", str(db), str(events_tsv)).exit_code == 0
    return db


def test_load_reports_count_and_file(tmp_path: Path, events_tsv: Path) -> None:
    db = tmp_path / "plowline.duckdb"

    result = run("load", "--duckdb", str(db), str(events_tsv))

    assert result.exit_code == 0
    assert result.output == f"Loaded 2 events into {db}\n"


def test_load_reads_stdin_and_gzip(tmp_path: Path) -> None:
    db = tmp_path / "plowline.duckdb"
    packed = tmp_path / "more.tsv.gz"
    packed.write_bytes(gzip.compress(tsv_line("e3").encode()))

    result = run("load", "--duckdb", str(db), "-", str(packed), stdin=tsv_line("e4"))

    assert result.output == f"Loaded 2 events into {db}\n"


def test_load_of_bad_line_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text(tsv_line("e1") + tsv_line("e2", txn_id="many"), encoding="utf-8")

    result = run("load", "--duckdb", str(tmp_path / "x.duckdb"), str(bad))

    assert result.exit_code == 1
    assert result.output == (
        f"Error: {bad}, line 2: field txn_id is not a whole number in the 32-bit "
        "range: 'many'. Its batch was not loaded.\n"
    )


def test_load_of_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    result = run("load", "--duckdb", str(tmp_path / "x.duckdb"), "nowhere.tsv")

    assert result.exit_code == 1
    assert result.output == (
        "Error: Cannot read nowhere.tsv: No such file or directory.\n"
    )


def test_query_csv_for_scripts(loaded_db: Path) -> None:
    result = run(
        "query",
        "--duckdb",
        str(loaded_db),
        "--format",
        "csv",
        "SELECT event_id, app_id, tr_total, br_cookies FROM atomic.events "
        "ORDER BY event_id",
    )

    assert result.exit_code == 0
    assert result.output == (
        "event_id,app_id,tr_total,br_cookies\ne1,shop,59.97,\ne2,blog,,true\n"
    )


def test_query_json_for_scripts(loaded_db: Path) -> None:
    result = run(
        "query",
        "--duckdb",
        str(loaded_db),
        "--format",
        "json",
        "SELECT event_id, collector_tstamp FROM atomic.events ORDER BY 1",
    )

    assert orjson.loads(result.output) == [
        {"event_id": "e1", "collector_tstamp": "2026-12-04 15:29:10.526"},
        {"event_id": "e2", "collector_tstamp": "2026-12-04 15:29:10.526"},
    ]


def test_query_table_for_people(loaded_db: Path) -> None:
    result = run(
        "query",
        "--duckdb",
        str(loaded_db),
        "SELECT app_id, tr_total FROM atomic.events ORDER BY event_id",
    )

    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert any("app_id" in line and "tr_total" in line for line in lines)
    assert any("shop" in line and "59.97" in line for line in lines)
    assert any("blog" in line and "NULL" in line for line in lines)
    assert "2 rows" in result.output


def test_query_table_prints_markup_literally(loaded_db: Path) -> None:
    result = run("query", "--duckdb", str(loaded_db), "SELECT '[bold]x[/bold]' AS v")

    assert "[bold]x[/bold]" in result.output


def test_query_defaults_to_plowline_duckdb_here(
    loaded_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(loaded_db.parent)

    result = run("query", "--format", "csv", "SELECT count(*) AS n FROM atomic.events")

    assert result.output == "n\n2\n"


def test_query_with_bad_sql_is_one_clear_error(loaded_db: Path) -> None:
    result = run("query", "--duckdb", str(loaded_db), "SELEKT 1")

    assert result.exit_code == 1
    assert result.output.startswith("Error: The query failed: Parser Error")
    assert result.output.count("\n") == 1


def test_query_of_missing_database_is_one_clear_error(tmp_path: Path) -> None:
    result = run("query", "--duckdb", str(tmp_path / "none.duckdb"), "SELECT 1")

    assert result.exit_code == 1
    assert result.output == (
        f"Error: There is no DuckDB database at {tmp_path / 'none.duckdb'}. Load "
        "events into it first (`plowline load` or `plowline up`), or name another "
        "database with --duckdb FILE.\n"
    )


@pytest.fixture
def served_db(loaded_db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The database held open for writing and served, as `plowline up` does."""
    conn = connect(loaded_db)
    with QueryServer(conn, socket_path_for(loaded_db)):
        yield conn
    conn.close()


def test_query_goes_through_running_server(
    served_db: duckdb.DuckDBPyConnection, loaded_db: Path
) -> None:
    ensure_schema(served_db)
    load_rows(served_db, [tsv_line("e3").rstrip("\n").split("\t")])

    result = run(
        "query",
        "--duckdb",
        str(loaded_db),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM atomic.events",
    )

    assert result.output == "n\n3\n"


@pytest.mark.slow
def test_installed_command_loads_and_queries(tmp_path: Path, events_tsv: Path) -> None:
    plowline = Path(sys.executable).with_name("plowline")
    db = tmp_path / "plowline.duckdb"

    loaded = subprocess.run(
        [str(plowline), "load", "--duckdb", str(db), str(events_tsv)],
        capture_output=True,
        text=True,
        check=True,
    )
    queried = subprocess.run(
        [
            str(plowline),
            "query",
            "--duckdb",
            str(db),
            "--format",
            "json",
            "SELECT sum(tr_total) AS total FROM atomic.events",
        ],
        capture_output=True,
        text=True,
        check=True,
    )

    assert loaded.stdout == f"Loaded 2 events into {db}\n"
    assert orjson.loads(queried.stdout) == [{"total": "59.97"}]


def test_load_into_a_missing_postgres_database_says_to_create_it(
    events_tsv: Path,
) -> None:
    missing = f"{POSTGRES_SERVER}/plowline_no_such_database"
    result = run("load", "--postgres", missing, str(events_tsv))

    assert result.exit_code == 1
    assert 'database "plowline_no_such_database" does not exist' in result.output
    assert "Create it first (createdb NAME" in result.output
