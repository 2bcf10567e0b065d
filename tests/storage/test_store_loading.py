"""Loading into every store: exactly once, de-duplication, shredding, schema growth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from store_support import make_row, make_store, write_tsv

from plowline.errors import BadInputError
from plowline.storage import loader
from plowline.storage.base import Store
from plowline.storage.batch import rows_to_table
from plowline.storage.dedupe import DUPLICATE_SCHEMA, dedupe_key, synthetic_id

X = "c6ef3124-b53a-4b13-a233-0088f79dcbcb"
Y = "0d1e2f30-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
CTX = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
UE = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"


def contexts(*entities: tuple[str, dict[str, Any]]) -> str:
    data = [{"schema": schema, "data": data} for schema, data in entities]
    return orjson.dumps({"schema": CTX, "data": data}).decode()


def unstruct(schema: str, data: dict[str, Any]) -> str:
    document = {"schema": UE, "data": {"schema": schema, "data": data}}
    return orjson.dumps(document).decode()


def write(store: Store, rows: list[list[str]]) -> loader.Written:
    with store.transaction():
        return loader.write_events(store, rows_to_table(rows))


def events(store: Store) -> list[dict[str, Any]]:
    return list(store.read_events().to_pylist())


def child(store: Store, table: str) -> list[dict[str, Any]]:
    return list(store.read_child_table(table).to_pylist())


# Exactly once


def test_same_file_loaded_twice_is_loaded_once(store: Store, tmp_path: Path) -> None:
    rows = [make_row(f"{n:08d}-0000-4000-8000-000000000000") for n in range(40)]
    path = write_tsv(tmp_path / "events.tsv", rows)

    first = loader.load_files(store, [str(path)], batch_bytes=2000)
    again = loader.load_files(store, [str(path)], batch_bytes=2000)

    assert first.events == 40 and first.inputs[0].batches > 3
    assert first.skipped_batches == 0
    assert again.events == 0
    assert again.skipped_batches == first.inputs[0].batches
    assert len(events(store)) == 40
    manifest = store.read_manifest().to_pylist()
    assert len(manifest) == first.inputs[0].batches
    assert sum(entry["events"] for entry in manifest) == 40
    assert manifest[0]["first_line"] == 1


def test_same_content_under_another_name_is_skipped(
    store: Store, tmp_path: Path
) -> None:
    rows = [make_row(X), make_row(Y)]
    loader.load_files(store, [str(write_tsv(tmp_path / "a.tsv", rows))])
    again = loader.load_files(store, [str(write_tsv(tmp_path / "b.tsv", rows))])
    assert (again.events, again.skipped_batches) == (0, 1)


def test_grown_file_loads_only_its_new_batches(store: Store, tmp_path: Path) -> None:
    rows = [make_row(f"{n:08d}-0000-4000-8000-000000000000") for n in range(30)]
    path = write_tsv(tmp_path / "events.tsv", rows[:20])
    size = len(path.read_bytes()) // 4  # whole batches end at line ends
    loader.load_files(store, [str(path)], batch_bytes=size)
    write_tsv(path, rows)

    result = loader.load_files(store, [str(path)], batch_bytes=size)

    assert result.skipped_batches >= 2
    assert len(events(store)) == 30


def test_bad_line_loads_nothing_of_its_batch(store: Store, tmp_path: Path) -> None:
    rows = [make_row(X), make_row(Y, txn_id="many")]
    path = write_tsv(tmp_path / "events.tsv", rows)
    with pytest.raises(BadInputError, match="line 2: field txn_id"):
        loader.load_files(store, [str(path)])
    assert events(store) == []
    assert store.read_manifest().num_rows == 0


def tricky_rows() -> list[list[str]]:
    """Rows whose text and typed values differ: backslashes, escaped JSON,
    money to round, zoned and T-separated timestamps, empty fields."""
    title = "C:\\new\\table \\. 100% \\N «ünï»"
    ctx = contexts(
        ("iglu:com.acme/quote/jsonschema/1-0-0", {"text": 'say "hi"\\there'})
    )
    rows = []
    for n in range(30):
        rows.append(
            make_row(
                f"{n:08d}-0000-4000-8000-000000000000",
                page_title=title if n % 3 else "",
                se_label="\\" * (n % 4),
                tr_total=["12.345", "-0.125", "7", ""][n % 4],
                ti_price="0.005",
                dvce_created_tstamp="2026-12-04T15:29:10.5Z",
                true_tstamp="" if n % 2 else "2026-12-04 15:29:10.123456",
                br_cookies=["1", "0", ""][n % 3],
                se_value=["1e-7", "2.5", "-0.0", "", "1e400", "1e-400"][n % 6],
                dvce_screenwidth=["12", "0", "-2147483648", ""][n % 4],
                contexts=ctx,
            )
        )
    return rows


def test_file_load_stores_what_a_row_load_stores(
    store: Store, store_kind: str, tmp_path: Path
) -> None:
    rows = tricky_rows()
    # A retried copy in the second batch: that batch goes in de-duplicated.
    path = write_tsv(tmp_path / "events.tsv", [*rows[:20], rows[3], *rows[20:]])
    size = len(path.read_bytes()) // 2 + 1

    result = loader.load_files(store, [str(path)], batch_bytes=size)
    (tmp_path / "rows").mkdir()
    by_rows = make_store(store_kind, tmp_path / "rows")
    by_rows.ensure_schema()
    try:
        write(by_rows, rows)
        expected = events(by_rows)
        expected_child = child(by_rows, "com_acme_quote_1")
    finally:
        by_rows.close()

    assert result.inputs[0].batches >= 2 and result.natural_duplicates == 1
    assert events(store) == expected
    assert child(store, "com_acme_quote_1") == expected_child
    first = expected[1]
    assert first["page_title"] == "C:\\new\\table \\. 100% \\N «ünï»"
    assert str(first["tr_total"]) == "-0.13" and str(first["ti_price"]) == "0.01"
    assert str(expected[0]["tr_total"]) == "12.35"
    assert first["dvce_screenwidth"] == 0 and expected[2]["dvce_screenwidth"] == (
        -2147483648
    )
    assert first["dvce_created_tstamp"].isoformat() == "2026-12-04T15:29:10.500000"
    assert [e["br_cookies"] for e in expected[:3]] == [True, False, None]
    assert [e["se_label"] for e in expected[:3]] == [None, "\\", "\\\\"]
    assert expected_child[0]["text"] == 'say "hi"\\there'


def test_bad_line_in_a_later_batch_keeps_the_batches_before(
    store: Store, tmp_path: Path
) -> None:
    rows = [make_row(f"{n:08d}-0000-4000-8000-000000000000") for n in range(40)]
    rows[33] = make_row(Y, txn_id="many")
    path = write_tsv(tmp_path / "events.tsv", rows)
    size = len(path.read_bytes()) // 4 + 1

    with pytest.raises(BadInputError, match="line 34: field txn_id"):
        loader.load_files(store, [str(path)], batch_bytes=size)

    loaded = store.read_manifest().to_pylist()
    assert [entry["batch_index"] for entry in loaded] == [0, 1, 2]
    assert len(events(store)) == sum(entry["lines"] for entry in loaded)
    assert 20 < len(events(store)) < 34


# De-duplication


def test_natural_duplicates_in_a_batch_load_once(store: Store) -> None:
    first = make_row(X, app_id="shop", se_action="buy")
    retry = make_row(
        X,
        app_id="shop",
        se_action="buy",
        collector_tstamp="2026-12-04 15:29:11.000",
        etl_tstamp="2026-12-04 15:30:00.000",
    )
    written = write(store, [first, retry, make_row(Y)])
    assert (written.events, written.natural_duplicates) == (2, 1)
    stored = events(store)
    assert [e["event_id"] for e in stored] == sorted([X, Y])
    assert {str(e["collector_tstamp"]) for e in stored if e["event_id"] == X} == {
        "2026-12-04 15:29:10.526000"
    }


def test_natural_duplicate_of_a_stored_event_is_dropped(store: Store) -> None:
    write(store, [make_row(X, app_id="shop")])
    written = write(store, [make_row(X, app_id="shop", v_etl="plowline-0.2.0")])
    assert (written.events, written.natural_duplicates) == (0, 1)
    assert len(events(store)) == 1


def test_same_fingerprint_is_a_natural_duplicate_whatever_the_content(
    store: Store,
) -> None:
    write(store, [make_row(X, event_fingerprint="f1", page_title="a")])
    written = write(store, [make_row(X, event_fingerprint="f1", page_title="b")])
    assert written.natural_duplicates == 1
    assert [e["page_title"] for e in events(store)] == ["a"]


def test_synthetic_duplicate_in_a_batch_gets_a_new_id_and_a_mark(
    store: Store,
) -> None:
    one = make_row(X, se_action="buy")
    other = make_row(X, se_action="sell")
    written = write(store, [one, other])

    assert (written.events, written.synthetic_duplicates) == (2, 1)
    new_id = synthetic_id(X, dedupe_key(dict(zip(*_named(other), strict=True))))
    stored = {e["event_id"]: e for e in events(store)}
    assert set(stored) == {X, new_id}
    assert stored[X]["se_action"] == "buy" and stored[X]["derived_contexts"] is None
    assert stored[new_id]["se_action"] == "sell"
    marks = orjson.loads(stored[new_id]["derived_contexts"])["data"]
    assert marks == [{"schema": DUPLICATE_SCHEMA, "data": {"originalEventId": X}}]
    (row,) = child(store, "com_snowplowanalytics_snowplow_duplicate_1")
    assert (row["root_id"], row["original_event_id"]) == (new_id, X)


def _named(row: list[str]) -> tuple[list[str], list[str | None]]:
    from plowline.enrich.fields import FIELD_NAMES

    typed = rows_to_table([row])
    from plowline.storage.batch import typed_batch

    values = typed_batch(typed).to_pylist()[0]
    return list(FIELD_NAMES), [values[name] for name in FIELD_NAMES]


def test_synthetic_duplicate_across_loads_and_its_retry(store: Store) -> None:
    write(store, [make_row(X, event_fingerprint="f1")])
    written = write(store, [make_row(X, event_fingerprint="f2")])
    assert written.synthetic_duplicates == 1
    # The tracker retries the second event: same id, same fingerprint.
    retried = write(store, [make_row(X, event_fingerprint="f2", v_etl="later")])
    assert (retried.events, retried.natural_duplicates) == (0, 1)
    stored = events(store)
    assert sorted(e["event_fingerprint"] for e in stored) == ["f1", "f2"]
    assert len({e["event_id"] for e in stored}) == 2


# Shredding


def test_entities_shred_into_one_table_per_schema(store: Store) -> None:
    link = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
    page = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
    row = make_row(
        X,
        unstruct_event=unstruct(
            link, {"targetUrl": "https://e.com/ä", "elementClasses": ["a", "b"]}
        ),
        contexts=contexts((page, {"id": "p1"}), (page, {"id": "p2"})),
        derived_contexts=contexts(
            ("iglu:org.w3/PerformanceTiming/jsonschema/1-0-0", {"loadEventEnd": 5})
        ),
    )
    assert write(store, [row]).child_rows == 4
    assert store.child_tables() == [
        "com_snowplowanalytics_snowplow_link_click_1",
        "com_snowplowanalytics_snowplow_web_page_1",
        "org_w3_performance_timing_1",
    ]
    (click,) = child(store, "com_snowplowanalytics_snowplow_link_click_1")
    assert click == {
        "schema_vendor": "com.snowplowanalytics.snowplow",
        "schema_name": "link_click",
        "schema_format": "jsonschema",
        "schema_version": "1-0-1",
        "root_id": X,
        "root_tstamp": click["root_tstamp"],
        "ref_root": "events",
        "ref_tree": '["events","link_click"]',
        "ref_parent": "events",
        "target_url": "https://e.com/ä",
        "element_classes": '["a","b"]',
    }
    assert str(click["root_tstamp"]) == "2026-12-04 15:29:10.526000"
    pages = child(store, "com_snowplowanalytics_snowplow_web_page_1")
    assert sorted(p["id"] for p in pages) == ["p1", "p2"]
    (timing,) = child(store, "org_w3_performance_timing_1")
    assert timing["load_event_end"] == 5
    # The JSON columns stay for ad-hoc use.
    assert orjson.loads(events(store)[0]["contexts"])["data"][1]["data"] == {"id": "p2"}


def test_new_minor_version_adds_columns_and_kinds_widen(store: Store) -> None:
    v100 = "iglu:com.acme/cart_item/jsonschema/1-0-0"
    v101 = "iglu:com.acme/cart_item/jsonschema/1-0-1"
    write(store, [make_row(X, unstruct_event=unstruct(v100, {"qty": 1}))])
    assert store.child_columns("com_acme_cart_item_1") == {"qty": "int"}

    write(
        store,
        [make_row(Y, unstruct_event=unstruct(v101, {"qty": 2.5, "skuCode": "S"}))],
    )

    assert store.child_columns("com_acme_cart_item_1") == {
        "qty": "float",
        "sku_code": "text",
    }
    rows = sorted(
        child(store, "com_acme_cart_item_1"), key=lambda r: r["schema_version"]
    )
    assert [(r["schema_version"], r["qty"], r["sku_code"]) for r in rows] == [
        ("1-0-0", 1.0, None),
        ("1-0-1", 2.5, "S"),
    ]
    # A new major version is a table of its own.
    v200 = "iglu:com.acme/cart_item/jsonschema/2-0-0"
    write(store, [make_row(X[:-1] + "0", unstruct_event=unstruct(v200, {"qty": "3"}))])
    assert "com_acme_cart_item_2" in store.child_tables()


def test_bad_json_names_the_line(store: Store, tmp_path: Path) -> None:
    rows = [make_row(X), make_row(Y, contexts='{"schema":')]
    path = write_tsv(tmp_path / "events.tsv", rows)
    with pytest.raises(BadInputError, match="line 2: field contexts is not valid JSON"):
        loader.load_files(store, [str(path)])
