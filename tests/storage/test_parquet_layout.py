"""The Parquet store's folder as other readers see it: Hive partitions, types,
schema growth, and what a crash leaves behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.dataset as ds  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from store_support import make_row, write_tsv

from plowline.errors import StoreUnavailableError
from plowline.storage import loader
from plowline.storage.batch import rows_to_table
from plowline.storage.parquet import ParquetStore

X = "c6ef3124-b53a-4b13-a233-0088f79dcbcb"
Y = "0d1e2f30-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
Z = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
CTX = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
UE = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CART = "com_acme_cart_item_1"


def unstruct(version: str, data: dict[str, Any]) -> str:
    schema = f"iglu:com.acme/cart_item/jsonschema/{version}"
    return orjson.dumps(
        {"schema": UE, "data": {"schema": schema, "data": data}}
    ).decode()


def write(store: ParquetStore, rows: list[list[str]]) -> loader.Written:
    with store.transaction():
        return loader.write_events(store, rows_to_table(rows))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def store(folder: Path) -> Any:
    made = ParquetStore(folder)
    made.ensure_schema()
    yield made
    made.close()


def two_days(store: ParquetStore) -> None:
    write(
        store,
        [
            make_row(X, collector_tstamp="2026-12-04 23:59:59.999", app_id="a"),
            make_row(Y, collector_tstamp="2026-12-05 00:00:00.000", app_id="b"),
            make_row(
                Z,
                collector_tstamp="2026-12-05 08:00:00.000",
                app_id="c",
                unstruct_event=unstruct("1-0-0", {"qty": 2}),
            ),
        ],
    )


def parquet_files(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*.parquet") if p.is_file()
    )


def test_hive_layout_one_file_per_partition_named_by_commit(
    store: ParquetStore, folder: Path
) -> None:
    two_days(store)
    files = parquet_files(folder)
    (commit,) = {Path(f).stem for f in files}
    assert commit.startswith("tx-")
    assert files == [
        f"{CART}/collector_date=2026-12-05/{commit}.parquet",
        f"events/collector_date=2026-12-04/{commit}.parquet",
        f"events/collector_date=2026-12-05/{commit}.parquet",
    ]
    assert (folder / "_manifest" / f"{commit}.json").is_file()
    assert not any((folder / "_staging").iterdir())


def test_duckdb_reads_events_with_hive_partitions(
    store: ParquetStore, folder: Path
) -> None:
    two_days(store)
    rows = duckdb.execute(
        f"SELECT event_id, app_id, collector_date::VARCHAR, collector_tstamp::VARCHAR "
        f"FROM read_parquet('{folder}/events/**/*.parquet', hive_partitioning=true) "
        "ORDER BY collector_tstamp"
    ).fetchall()
    assert rows == [
        (X, "a", "2026-12-04", "2026-12-04 23:59:59.999"),
        (Y, "b", "2026-12-05", "2026-12-05 00:00:00"),
        (Z, "c", "2026-12-05", "2026-12-05 08:00:00"),
    ]
    joined = duckdb.execute(
        f"SELECT e.app_id, c.qty, c.collector_date::VARCHAR "
        f"FROM read_parquet('{folder}/events/**/*.parquet', hive_partitioning=true) e "
        f"JOIN read_parquet('{folder}/{CART}/**/*.parquet', hive_partitioning=true) c "
        "ON c.root_id = e.event_id AND c.root_tstamp = e.collector_tstamp"
    ).fetchall()
    assert joined == [("c", 2, "2026-12-05")]


def test_pyarrow_dataset_reads_events_with_hive_partitions(
    store: ParquetStore, folder: Path
) -> None:
    two_days(store)
    dataset = ds.dataset(folder / "events", format="parquet", partitioning="hive")
    table = dataset.to_table(columns=["event_id", "collector_date"])
    got = sorted(zip(*table.to_pydict().values(), strict=True))
    assert [(event_id, str(day)) for event_id, day in got] == sorted(
        [(X, "2026-12-04"), (Y, "2026-12-05"), (Z, "2026-12-05")]
    )
    only = dataset.to_table(filter=ds.field("collector_date") == "2026-12-04")
    assert only.column("event_id").to_pylist() == [X]


def test_column_types_in_the_files(store: ParquetStore, folder: Path) -> None:
    write(store, [make_row(X, tr_total="12.5", txn_id="7", br_cookies="1")])
    (path,) = (folder / "events").rglob("*.parquet")
    meta = pq.ParquetFile(path).metadata
    schema = meta.schema
    columns = {schema.column(i).name: schema.column(i) for i in range(len(schema))}
    tstamp = columns["collector_tstamp"]
    assert tstamp.physical_type == "INT64"
    logical = orjson.loads(tstamp.logical_type.to_json())
    assert (logical["Type"], logical["isAdjustedToUTC"], logical["timeUnit"]) == (
        "Timestamp",
        False,
        "microseconds",
    )

    assert str(columns["tr_total"].logical_type) == "Decimal(precision=18, scale=2)"
    assert columns["txn_id"].physical_type == "INT32"
    assert columns["br_cookies"].physical_type == "BOOLEAN"
    assert columns["event_id"].max_definition_level == 0  # REQUIRED
    assert columns["app_id"].max_definition_level == 1  # OPTIONAL
    assert meta.row_group(0).column(0).compression == "ZSTD"
    stored = ParquetStore(folder).read_events().to_pylist()[0]
    assert (str(stored["tr_total"]), stored["txn_id"]) == ("12.50", 7)


def test_new_minor_version_adds_a_column_old_files_lack(
    store: ParquetStore, folder: Path
) -> None:
    write(store, [make_row(X, unstruct_event=unstruct("1-0-0", {"qty": 1}))])
    write(
        store,
        [make_row(Y, unstruct_event=unstruct("1-0-1", {"qty": 2, "skuCode": "S"}))],
    )
    files = sorted((folder / CART).rglob("*.parquet"))
    assert {tuple(pq.read_schema(f).names[-2:]) for f in files} == {
        ("ref_parent", "qty"),
        ("qty", "sku_code"),
    }
    rows = duckdb.execute(
        f"SELECT schema_version, qty, sku_code FROM read_parquet("
        f"'{folder}/{CART}/**/*.parquet', union_by_name=true) ORDER BY schema_version"
    ).fetchall()
    assert rows == [("1-0-0", 1, None), ("1-0-1", 2, "S")]
    assert store.child_columns(CART) == {"qty": "int", "sku_code": "text"}
    # A new store object reads the kinds back from _tables.
    assert ParquetStore(folder).child_columns(CART) == {
        "qty": "int",
        "sku_code": "text",
    }


def test_widening_rewrites_older_files_to_the_wider_type(
    store: ParquetStore, folder: Path
) -> None:
    write(store, [make_row(X, unstruct_event=unstruct("1-0-0", {"qty": 1}))])
    write(store, [make_row(Y, unstruct_event=unstruct("1-0-0", {"qty": 2.5}))])
    write(store, [make_row(Z, unstruct_event=unstruct("1-0-0", {"qty": True}))])
    files = sorted((folder / CART).rglob("*.parquet"))
    assert len(files) == 3
    assert {str(pq.read_schema(f).field("qty").type) for f in files} == {"string"}
    # No union_by_name needed: every file has one type per column.
    rows = duckdb.execute(
        f"SELECT root_id, qty FROM read_parquet('{folder}/{CART}/**/*.parquet') "
        "ORDER BY qty"
    ).fetchall()
    assert rows == [(X, "1.0"), (Y, "2.5"), (Z, "true")]
    assert store.child_columns(CART) == {"qty": "text"}


def test_natural_duplicate_found_by_a_new_store_object(folder: Path) -> None:
    first = ParquetStore(folder)
    first.ensure_schema()
    write(first, [make_row(X, app_id="shop"), make_row(Y)])
    first.close()
    again = ParquetStore(folder)
    again.ensure_schema()
    written = write(again, [make_row(X, app_id="shop", v_etl="later"), make_row(Z)])
    assert (written.events, written.natural_duplicates) == (1, 1)
    assert again.read_events().column("event_id").to_pylist() == sorted([X, Y, Z])
    again.close()


def test_second_writer_is_refused(store: ParquetStore, folder: Path) -> None:
    other = ParquetStore(folder)
    with pytest.raises(StoreUnavailableError, match="another process"):
        other.ensure_schema()
    store.close()
    other.ensure_schema()  # free once the first writer closes
    other.close()


def test_crash_before_the_manifest_record_leaves_nothing(
    store: ParquetStore, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_tsv(tmp_path / "e.tsv", [make_row(X), make_row(Y)])

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr("plowline.storage.parquet.store.write_json_atomically", crash)
    with pytest.raises(KeyboardInterrupt):
        loader.load_files(store, [str(path)])
    monkeypatch.undo()
    # Rolling back removed the staged files; simulate a hard kill's leftovers.
    staged = folder / "_staging" / "0123abcd-0" / "events" / "collector_date=2026-12-04"
    staged.mkdir(parents=True)
    (staged / "0123abcd-0.parquet.tmp").write_bytes(b"partial")
    stray = folder / "events" / "collector_date=2026-12-04" / "0123abcd-0.parquet"
    stray.parent.mkdir()
    stray.write_bytes(b"partial")
    assert parquet_files(folder) == [
        "events/collector_date=2026-12-04/0123abcd-0.parquet"
    ]

    store.close()
    reopened = ParquetStore(folder)
    reopened.ensure_schema()
    assert parquet_files(folder) == []
    assert not any((folder / "_staging").iterdir())
    result = loader.load_files(reopened, [str(path)])
    assert (result.events, result.skipped_batches) == (2, 0)
    assert reopened.read_events().num_rows == 2
    reopened.close()


def test_crash_after_the_manifest_record_is_finished_at_start_up(
    store: ParquetStore, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_tsv(
        tmp_path / "e.tsv",
        [make_row(X, unstruct_event=unstruct("1-0-0", {"qty": 1})), make_row(Y)],
    )

    def crash(self: ParquetStore, staged: Path) -> int:
        raise KeyboardInterrupt  # committed, but nothing is in place yet

    monkeypatch.setattr(ParquetStore, "_publish", crash)
    with pytest.raises(KeyboardInterrupt):
        loader.load_files(store, [str(path)])
    monkeypatch.undo()
    assert parquet_files(folder) == []  # readers see nothing of the batch yet
    store.close()

    reopened = ParquetStore(folder)
    reopened.ensure_schema()
    assert len(parquet_files(folder)) == 2
    assert reopened.child_tables() == [CART]
    again = loader.load_files(reopened, [str(path)])
    assert (again.events, again.skipped_batches) == (0, 1)
    assert reopened.read_events().column("event_id").to_pylist() == sorted([X, Y])
    assert reopened.read_manifest().column("events").to_pylist() == [2]
    reopened.close()


def test_failed_events_partitioned_by_failure_date(
    store: ParquetStore, folder: Path, tmp_path: Path
) -> None:
    record = {
        "schema": "iglu:com.snowplowanalytics.snowplow.badrows/schema_violations"
        "/jsonschema/2-0-0",
        "data": {
            "failure": {"timestamp": "2026-12-04T15:29:10.526Z", "messages": ["bad"]},
            "payload": {"raw": 1},
        },
    }
    path = tmp_path / "failed.jsonl"
    path.write_bytes(orjson.dumps(record) + b"\n")
    loader.load_failed_files(store, [str(path)])
    rows = duckdb.execute(
        f"SELECT failure_type, message, failed_date::VARCHAR FROM read_parquet("
        f"'{folder}/failed_events/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert rows == [("schema_violations", "bad", "2026-12-04")]
    assert store.read_failed().column("failure_type").to_pylist() == [
        "schema_violations"
    ]


def test_events_table_read_back_has_the_store_neutral_schema(
    store: ParquetStore,
) -> None:
    two_days(store)
    from plowline.storage.batch import EVENTS_SCHEMA

    assert store.read_events().schema.equals(EVENTS_SCHEMA)
    assert store.read_manifest().schema.field("loaded_at").type == pa.timestamp("us")
