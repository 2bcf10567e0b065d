"""Loading enriched and failed events into a real DuckDB file."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from plowline.enrich.fields import FIELD_INDEX, FIELD_NAMES, FIELDS, REQUIRED_FIELDS
from plowline.errors import BadInputError
from plowline.storage.batch import rows_to_table
from plowline.storage.duckdb import (
    DuckDBStore,
    connect,
    ensure_schema,
    load_failed,
    load_files,
    load_rows,
    read_tsv,
)
from plowline.storage.loader import write_events

REQUIRED = {
    "collector_tstamp": "2026-12-04 15:29:10.526",
    "event_id": "c6ef3124-b53a-4b13-a233-0088f79dcbcb",
    "v_collector": "ssc-3.2.0-kinesis",
    "v_etl": "plowline-0.1.0",
}

CONTEXTS = (
    '{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",'
    '"data":[{"schema":"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/'
    '1-0-0","data":{"id":"a1b2c3d4-web-page"}}]}'
)
UNSTRUCT = (
    '{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",'
    '"data":{"schema":"iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/'
    '1-0-1","data":{"targetUrl":"https://example.com/ä"}}}'
)


def enriched_row(values: dict[str, str] | None = None, **more: str) -> list[str]:
    """A 131-field enriched row: the required fields, then the given ones."""
    given_values = {**REQUIRED, **(values or {}), **more}
    unknown = set(given_values) - set(FIELD_NAMES)
    assert not unknown, f"not enriched fields: {unknown}"
    return [given_values.get(name, "") for name in FIELD_NAMES]


def tsv_line(row: list[str]) -> str:
    return "\t".join(row) + "\n"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(tmp_path / "plowline.duckdb")
    ensure_schema(connection)
    yield connection
    connection.close()


def event_count(conn: duckdb.DuckDBPyConnection) -> int:
    row = conn.execute("SELECT count(*) FROM atomic.events").fetchone()
    assert row is not None
    return int(row[0])


def fetch_one(conn: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row


# The schema


EXPECTED_TYPES = {
    "str": "VARCHAR",
    "int": "INTEGER",
    "bool": "BOOLEAN",
    "tstamp": "TIMESTAMP",
    "dec": "DECIMAL(18,2)",
    "float": "DOUBLE",
    "json": "JSON",
}


def test_events_table_has_every_field_in_order(conn: duckdb.DuckDBPyConnection) -> None:
    columns = conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'atomic' AND table_name = 'events' "
        "ORDER BY ordinal_position"
    ).fetchall()

    assert [name for name, _, _ in columns] == list(FIELD_NAMES)
    assert [kind for _, kind, _ in columns] == [
        "UUID" if field.name == "event_id" else EXPECTED_TYPES[field.kind]
        for field in FIELDS
    ]
    not_null = {name for name, _, nullable in columns if nullable == "NO"}
    assert not_null == REQUIRED_FIELDS == set(REQUIRED)


def test_failed_events_table_columns(conn: duckdb.DuckDBPyConnection) -> None:
    columns = conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'atomic' AND table_name = 'failed_events' "
        "ORDER BY ordinal_position"
    ).fetchall()

    assert columns == [
        ("failed_at", "TIMESTAMP", "NO"),
        ("failure_type", "VARCHAR", "NO"),
        ("failure_schema", "VARCHAR", "NO"),
        ("message", "VARCHAR", "YES"),
        ("payload", "JSON", "YES"),
        ("failed_event", "JSON", "NO"),
    ]


def test_ensure_schema_twice_keeps_rows(conn: duckdb.DuckDBPyConnection) -> None:
    load_rows(conn, [enriched_row()])
    ensure_schema(conn)
    assert event_count(conn) == 1


def test_json_extension_is_built_in() -> None:
    mode = fetch_one(
        duckdb.connect(),
        "SELECT install_mode FROM duckdb_extensions() WHERE extension_name = 'json'",
    )
    assert mode == ("STATICALLY_LINKED",)


# Values of every kind


def test_every_kind_round_trips(conn: duckdb.DuckDBPyConnection) -> None:
    row = enriched_row(
        app_id='Café ✓ "quoted" & <tag>',
        txn_id="2147483647",
        domain_sessionidx="-2147483648",
        br_features_pdf="1",
        br_cookies="0",
        dvce_created_tstamp="1970-01-01 00:00:00.001",
        true_tstamp="9999-12-31 23:59:59.999",
        tr_total="59.97",
        tr_tax="-0.05",
        geo_latitude="47.2513",
        se_value="1.0E-7",
        contexts=CONTEXTS,
        unstruct_event=UNSTRUCT,
    )

    assert load_rows(conn, [row]) == 1

    assert fetch_one(
        conn,
        "SELECT app_id, txn_id, domain_sessionidx, br_features_pdf, br_cookies, "
        "collector_tstamp, dvce_created_tstamp, true_tstamp, tr_total, tr_tax, "
        "geo_latitude, se_value FROM atomic.events",
    ) == (
        'Café ✓ "quoted" & <tag>',
        2147483647,
        -2147483648,
        True,
        False,
        datetime(2026, 12, 4, 15, 29, 10, 526000),
        datetime(1970, 1, 1, 0, 0, 0, 1000),
        datetime(9999, 12, 31, 23, 59, 59, 999000),
        Decimal("59.97"),
        Decimal("-0.05"),
        47.2513,
        1.0e-7,
    )


def test_json_columns_answer_json_operators(conn: duckdb.DuckDBPyConnection) -> None:
    load_rows(conn, [enriched_row(contexts=CONTEXTS, unstruct_event=UNSTRUCT)])

    assert fetch_one(
        conn,
        "SELECT contexts ->> '$.data[0].data.id', "
        "unstruct_event -> 'data' ->> '$.data.targetUrl', "
        "json_array_length(contexts -> 'data') FROM atomic.events",
    ) == ("a1b2c3d4-web-page", "https://example.com/ä", 1)


def test_empty_fields_load_as_null(conn: duckdb.DuckDBPyConnection) -> None:
    load_rows(conn, [enriched_row()])

    non_null = fetch_one(
        conn,
        "SELECT "
        + ", ".join(f'count("{name}")' for name in FIELD_NAMES)
        + " FROM atomic.events",
    )
    filled = {name for name, count in zip(FIELD_NAMES, non_null, strict=True) if count}
    assert filled == set(REQUIRED)


def test_timestamp_in_iso_form_with_z_is_utc(conn: duckdb.DuckDBPyConnection) -> None:
    load_rows(conn, [enriched_row(etl_tstamp="2026-12-04T15:29:10.526Z")])

    assert fetch_one(conn, "SELECT etl_tstamp FROM atomic.events") == (
        datetime(2026, 12, 4, 15, 29, 10, 526000),
    )


def test_load_of_no_rows_returns_zero(conn: duckdb.DuckDBPyConnection) -> None:
    assert load_rows(conn, []) == 0
    assert event_count(conn) == 0


def test_rows_across_batches_all_load(conn: duckdb.DuckDBPyConnection) -> None:
    rows = [enriched_row(txn_id=str(i)) for i in range(7)]

    assert load_rows(conn, rows) == 7
    assert fetch_one(conn, "SELECT sum(txn_id) FROM atomic.events") == (21,)


# Rejected rows: the message names row, field and value, and nothing is loaded


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("txn_id", "abc", "is not a whole number"),
        ("txn_id", "1.5", "is not a whole number"),
        ("txn_id", "2147483648", "is not a whole number in the 32-bit range"),
        ("br_cookies", "true", "is not 1 or 0"),
        ("dvce_created_tstamp", "2026-12-04 15:29:10+02:00", "is not a UTC timestamp"),
        ("dvce_created_tstamp", "yesterday", "is not a UTC timestamp"),
        ("tr_total", "ten", "is not a decimal number"),
        ("tr_total", "1E+20", "fits DECIMAL(18,2)"),
        ("geo_latitude", "north", "is not a number"),
        ("contexts", '{"schema": ', "is not valid JSON"),
    ],
    ids=[
        "int-text",
        "int-fraction",
        "int-overflow",
        "bool-word",
        "tstamp-offset",
        "tstamp-word",
        "dec-text",
        "dec-overflow",
        "float-text",
        "json-truncated",
    ],
)
def test_bad_value_names_row_field_and_value(
    conn: duckdb.DuckDBPyConnection, field: str, value: str, problem: str
) -> None:
    rows = [enriched_row(), enriched_row(), enriched_row({field: value})]

    with pytest.raises(BadInputError) as caught:
        load_rows(conn, rows)

    message = str(caught.value)
    assert message.startswith(f"Row 3: field {field} ")
    assert problem in message
    assert repr(value) in message
    assert caught.value.line == 3
    assert event_count(conn) == 0


@pytest.mark.parametrize("field", sorted(REQUIRED_FIELDS))
def test_missing_required_field_is_rejected(
    conn: duckdb.DuckDBPyConnection, field: str
) -> None:
    with pytest.raises(BadInputError, match=f"Row 2: field {field} is empty"):
        load_rows(conn, [enriched_row(), enriched_row({field: ""})])
    assert event_count(conn) == 0


def test_bad_row_late_in_the_rows_undoes_the_rest(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    load_rows(conn, [enriched_row(app_id="before")])
    rows = [enriched_row(txn_id=str(i)) for i in range(6)]
    rows.append(enriched_row(txn_id="seven"))

    with pytest.raises(BadInputError, match="Row 7: field txn_id") as caught:
        load_rows(conn, rows)

    assert caught.value.line == 7

    assert fetch_one(conn, "SELECT count(*), min(app_id) FROM atomic.events") == (
        1,
        "before",
    )


def test_row_with_wrong_field_count_is_rejected(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    short = enriched_row()[:-1]

    with pytest.raises(BadInputError, match=r"Row 2 has 130 fields; .* has 131"):
        load_rows(conn, [enriched_row(), short])
    assert event_count(conn) == 0


@pytest.mark.parametrize("separator", ["\t", "\n", "\r"], ids=["tab", "lf", "cr"])
def test_value_with_tab_or_line_break_is_rejected(
    conn: duckdb.DuckDBPyConnection, separator: str
) -> None:
    row = enriched_row(page_title=f"two{separator}parts")

    with pytest.raises(BadInputError, match="Row 1: field page_title contains a tab"):
        load_rows(conn, [row])
    assert event_count(conn) == 0


def test_tabs_and_newline_forging_two_rows_are_rejected(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    # Regression: 130 tabs and a newline inside one row's values make two lines
    # of 131 fields each, which must not load as two events.
    forged = enriched_row()
    forged[-1] = "\n" + "\t".join(enriched_row())

    with pytest.raises(BadInputError, match="Row 1: field true_tstamp"):
        load_rows(conn, [forged])
    assert event_count(conn) == 0


def test_value_that_is_not_text_is_rejected(conn: duckdb.DuckDBPyConnection) -> None:
    row: list[Any] = enriched_row()
    row[FIELD_INDEX["txn_id"]] = 5

    with pytest.raises(BadInputError, match="Row 1: field txn_id is not text but int"):
        load_rows(conn, [row])


# Reading enriched TSV files


def test_read_tsv_keeps_empty_trailing_fields(tmp_path: Path) -> None:
    path = tmp_path / "good.tsv"
    rows = [enriched_row(), enriched_row(app_id="shop", true_tstamp="")]
    path.write_text("".join(map(tsv_line, rows)), encoding="utf-8")

    assert list(read_tsv(path)) == rows


def test_read_tsv_unpacks_gzip_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "good.tsv.gz"
    row = enriched_row(page_title="Café ✓")
    with gzip.open(path, "wt", encoding="utf-8", newline="") as out:
        out.write("\t".join(row) + "\r\n")

    assert list(read_tsv(str(path))) == [row]


def test_read_tsv_names_file_and_line_of_short_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(tsv_line(enriched_row()) + "a\tb\n", encoding="utf-8")

    with pytest.raises(BadInputError, match=r"bad\.tsv, line 2 has 2 fields") as caught:
        list(read_tsv(path))
    assert (caught.value.source, caught.value.line) == (str(path), 2)


def test_read_tsv_of_missing_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"Cannot read .*missing\.tsv"):
        list(read_tsv(tmp_path / "missing.tsv"))


# Loading files


def write_tsv(path: Path, rows: list[list[str]]) -> Path:
    data = "".join(map(tsv_line, rows)).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_load_files_loads_plain_and_gzip(tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    first = write_tsv(
        tmp_path / "a.tsv",
        [enriched_row(app_id="a", event_id=f"a{n}") for n in range(2)],
    )
    second = write_tsv(
        tmp_path / "b.tsv.gz",
        [enriched_row(app_id="b", event_id=f"b{n}") for n in range(3)],
    )

    result = load_files(db, [str(first), str(second)])

    assert result.events == 5
    assert [(i.source, i.events) for i in result.inputs] == [
        (str(first), 2),
        (str(second), 3),
    ]
    with connect(db, read_only=True) as check:
        assert check.execute(
            "SELECT app_id, count(*) FROM atomic.events GROUP BY 1 ORDER BY 1"
        ).fetchall() == [("a", 2), ("b", 3)]


def test_load_files_names_file_and_line_of_bad_value(tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    good = write_tsv(tmp_path / "good.tsv", [enriched_row()])
    bad = write_tsv(
        tmp_path / "bad.tsv.gz",
        [enriched_row(), enriched_row(), enriched_row(br_cookies="yes")],
    )

    with pytest.raises(BadInputError) as caught:
        load_files(db, [str(good), str(bad)])

    assert str(caught.value) == (
        f"{bad}, line 3: field br_cookies is not 1 or 0: 'yes'. "
        "Its batch was not loaded."
    )
    assert (caught.value.source, caught.value.line) == (str(bad), 3)
    # Each batch is a transaction: the good file's batch stays loaded.
    with connect(db, read_only=True) as check:
        assert fetch_one(check, "SELECT count(*) FROM atomic.events") == (1,)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"a\tb\n", "line 2 has 2 fields"),
        (b"\n", "line 2 has 1 fields"),
        (b"\xff\xfe\n", "line 2: not valid UTF-8"),
        (b"x\ry\n", "line 2: a field contains a carriage return"),
    ],
    ids=["short", "blank", "not-utf8", "lone-cr"],
)
def test_load_files_names_line_arrow_cannot_read(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "bad.tsv"
    path.write_bytes(tsv_line(enriched_row()).encode() + content)

    with pytest.raises(BadInputError, match=f"bad.tsv, {problem}"):
        load_files(tmp_path / "events.duckdb", [str(path)])


def test_small_chunks_keep_line_numbers(tmp_path: Path) -> None:
    rows = [enriched_row(txn_id=str(i)) for i in range(9)]
    rows[7] = enriched_row(txn_id="8.5")
    path = write_tsv(tmp_path / "events.tsv", rows)

    # Chunks smaller than a line and chunks of a few lines both occur here.
    for chunk_bytes in (100, 1500):
        with pytest.raises(BadInputError, match="line 8: field txn_id") as caught:
            load_files(tmp_path / "x.duckdb", [str(path)], batch_bytes=chunk_bytes)
        assert caught.value.line == 8


def test_small_chunks_load_every_line(tmp_path: Path) -> None:
    rows = [enriched_row(txn_id=str(i)) for i in range(9)]
    path = write_tsv(tmp_path / "events.tsv", rows)

    result = load_files(tmp_path / "x.duckdb", [str(path)], batch_bytes=300)

    assert result.events == 9
    with connect(tmp_path / "x.duckdb", read_only=True) as check:
        assert fetch_one(check, "SELECT sum(txn_id) FROM atomic.events") == (36,)


def test_load_files_reads_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "events.tsv"
    path.write_text(
        tsv_line(enriched_row()) + "\t".join(enriched_row(app_id="last")),
        encoding="utf-8",
    )

    result = load_files(tmp_path / "events.duckdb", [str(path)])

    assert result.events == 2


# Failed events


def bad_row(kind: str, version: str, failure: dict[str, Any]) -> str:
    return orjson.dumps(
        {
            "schema": (
                f"iglu:com.snowplowanalytics.snowplow.badrows/{kind}/jsonschema/"
                f"{version}"
            ),
            "data": {
                "processor": {"artifact": "plowline", "version": "0.1.0"},
                "failure": failure,
                "payload": {"raw": {"vendor": "com.snowplowanalytics.snowplow"}},
            },
        }
    ).decode()


FAILED_EVENTS = [
    bad_row(
        "schema_violations",
        "2-0-1",
        {
            "timestamp": "2026-12-04T15:29:10.526Z",
            "messages": [
                {
                    "schemaKey": "iglu:com.acme/checkout/jsonschema/1-0-0",
                    "error": {
                        "error": "ValidationError",
                        "dataReports": [{"message": "$.total: is missing"}],
                    },
                }
            ],
        },
    ),
    bad_row(
        "adapter_failures",
        "1-0-0",
        {
            "timestamp": "2026-12-04T16:00:00.000+01:00",
            "vendor": "com.acme",
            "version": "v1",
            "messages": [
                {"field": "e", "value": "lol", "expectation": "not a known event"}
            ],
        },
    ),
    bad_row(
        "size_violation",
        "1-0-0",
        {
            "timestamp": "2026-12-04T15:29:11Z",
            "maximumAllowedSizeBytes": 10,
            "actualSizeBytes": 20,
            "expectation": "the event is too big",
        },
    ),
]


def test_failed_events_load_with_type_time_and_message(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    lines = [FAILED_EVENTS[0].encode(), "", *FAILED_EVENTS[1:]]

    assert load_failed(conn, lines) == 3

    assert conn.execute(
        "SELECT failure_type, failed_at, message, "
        "failed_event ->> '$.data.processor.artifact' "
        "FROM atomic.failed_events ORDER BY failed_at"
    ).fetchall() == [
        (
            "adapter_failures",
            datetime(2026, 12, 4, 15, 0),
            'e "lol": not a known event',
            "plowline",
        ),
        (
            "schema_violations",
            datetime(2026, 12, 4, 15, 29, 10, 526000),
            "iglu:com.acme/checkout/jsonschema/1-0-0: $.total: is missing",
            "plowline",
        ),
        (
            "size_violation",
            datetime(2026, 12, 4, 15, 29, 11),
            "the event is too big",
            "plowline",
        ),
    ]


def test_failed_event_json_is_kept_whole(conn: duckdb.DuckDBPyConnection) -> None:
    load_failed(conn, FAILED_EVENTS[:1])

    stored = fetch_one(conn, "SELECT failed_event FROM atomic.failed_events")[0]
    assert orjson.loads(stored) == orjson.loads(FAILED_EVENTS[0])


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "Failed event 2 is not JSON"),
        ('{"schema": "iglu:com.acme/x/jsonschema/1-0-0", "data": {}}', "has schema"),
        (bad_row("generic_error", "1-0-0", {"errors": ["x"]}), "has no data.failure.t"),
        (bad_row("generic_error", "1-0-0", {"timestamp": "soon"}), "not ISO 8601"),
    ],
    ids=["not-json", "not-badrow", "no-timestamp", "bad-timestamp"],
)
def test_bad_failed_event_loads_nothing(
    conn: duckdb.DuckDBPyConnection, line: str, problem: str
) -> None:
    with pytest.raises(BadInputError, match=problem):
        load_failed(conn, [FAILED_EVENTS[0], line])
    assert fetch_one(conn, "SELECT count(*) FROM atomic.failed_events") == (0,)


# Event ids: UUID columns until an id is not a lower-case UUID


def column_types(conn: duckdb.DuckDBPyConnection, column: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT table_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'atomic' AND column_name = ?",
        [column],
    ).fetchall()
    return {str(table): str(kind) for table, kind in rows}


def test_uuid_ids_stay_uuid_and_read_back_as_text(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    load_rows(conn, [enriched_row(contexts=CONTEXTS)])

    assert column_types(conn, "event_id") == {"events": "UUID"}
    assert column_types(conn, "root_id") == {
        "com_snowplowanalytics_snowplow_web_page_1": "UUID"
    }
    store = DuckDBStore(conn)
    assert store.read_events().column("event_id").to_pylist() == [REQUIRED["event_id"]]
    child = store.read_child_table("com_snowplowanalytics_snowplow_web_page_1")
    assert child.column("root_id").to_pylist() == [REQUIRED["event_id"]]


def test_first_id_that_is_not_a_uuid_widens_every_id_column(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    load_rows(conn, [enriched_row(contexts=CONTEXTS)])
    upper = REQUIRED["event_id"].upper()
    load_rows(
        conn,
        [
            enriched_row(event_id="e1", contexts=CONTEXTS),
            # Upper case is another id, not the stored lower-case one.
            enriched_row(event_id=upper, app_id="other"),
        ],
    )

    assert column_types(conn, "event_id") == {"events": "VARCHAR"}
    assert column_types(conn, "root_id") == {
        "com_snowplowanalytics_snowplow_web_page_1": "VARCHAR"
    }
    ids = conn.execute("SELECT event_id FROM atomic.events ORDER BY 1").fetchall()
    assert [i for (i,) in ids] == sorted([REQUIRED["event_id"], "e1", upper])
    roots = conn.execute(
        "SELECT root_id FROM atomic.com_snowplowanalytics_snowplow_web_page_1 "
        "ORDER BY 1"
    ).fetchall()
    assert [r for (r,) in roots] == sorted([REQUIRED["event_id"], "e1"])


def test_widening_is_undone_with_its_transaction(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    load_rows(conn, [enriched_row()])
    store = DuckDBStore(conn)
    with pytest.raises(RuntimeError), store.transaction():
        write_events(store, rows_to_table([enriched_row(event_id="e1")]))
        assert column_types(conn, "event_id") == {"events": "VARCHAR"}
        raise RuntimeError("stop")

    assert column_types(conn, "event_id") == {"events": "UUID"}
    assert event_count(conn) == 1
    other = "0b0b0b0b-1111-4222-8333-444444444444"
    with store.transaction():
        assert write_events(store, rows_to_table([enriched_row(event_id=other)]))
    assert column_types(conn, "event_id") == {"events": "UUID"}
    assert event_count(conn) == 2


def test_stored_uuid_is_found_again_as_a_natural_duplicate(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    assert load_rows(conn, [enriched_row(app_id="a")]) == 1
    assert load_rows(conn, [enriched_row(app_id="a")]) == 0
    assert event_count(conn) == 1


def _row_groups_and_blocks(path: Path) -> tuple[int, int]:
    conn = duckdb.connect(str(path), read_only=True)
    try:
        groups = conn.execute(
            "SELECT count(DISTINCT row_group_id) "
            "FROM pragma_storage_info('atomic.events')"
        ).fetchall()[0][0]
        blocks = conn.execute("SELECT total_blocks FROM pragma_database_size()")
        return int(groups), int(blocks.fetchall()[0][0])
    finally:
        conn.close()


def _numbered(start: int, count: int) -> list[list[str]]:
    return [
        enriched_row(event_id=f"{n:08x}-0000-4000-8000-000000000000", page_url=f"/{n}")
        for n in range(start, start + count)
    ]


def test_many_small_loads_share_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    for load in range(12):
        source = tmp_path / f"part{load}.tsv"
        source.write_text("".join(map(tsv_line, _numbered(load * 500, 500))))
        assert load_files(path, [str(source)]).events == 500

    groups, blocks = _row_groups_and_blocks(path)
    # Checkpoints merge the small row groups (one per load without it).
    assert groups <= 2
    assert blocks < 60
    conn = connect(path, read_only=True)
    try:
        rows = conn.execute("SELECT count(*) FROM atomic.events").fetchall()
        assert rows == [(6000,)]
    finally:
        conn.close()


def test_big_batches_stop_vacuuming_small_ones_do_not(tmp_path: Path) -> None:
    def vacuum_tasks(store: DuckDBStore) -> int:
        rows = store.conn.execute("SELECT current_setting('max_vacuum_tasks')")
        return int(rows.fetchall()[0][0])

    store = DuckDBStore(tmp_path / "events.duckdb")
    try:
        store.ensure_schema()
        default = vacuum_tasks(store)
        with store.transaction():
            write_events(store, rows_to_table(_numbered(0, 1000)))
        assert vacuum_tasks(store) == default > 0
        with store.transaction():
            write_events(store, rows_to_table(_numbered(1000, 61_440)))
        assert vacuum_tasks(store) == 0
        assert len(store.read_events()) == 62_440
    finally:
        store.close()
