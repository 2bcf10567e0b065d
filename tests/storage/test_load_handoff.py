"""What the loader hands from its preparing thread to the store, and the
PostgreSQL index that de-duplication looks ids up in."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from store_support import STORE_KINDS, make_row, make_store, postgres_dsn, write_tsv

from plowline.enrich.fields import FIELD_INDEX
from plowline.storage import loader
from plowline.storage.base import Store
from plowline.storage.batch import rows_to_table, typed_batch
from plowline.storage.dedupe import dedupe, id_counts

X = "c6ef3124-b53a-4b13-a233-0088f79dcbcb"
Y = "0d1e2f30-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
Z = "5a1c9e3b-7d2f-4e8a-9b6c-0f1e2d3c4b5a"

needs_postgres = pytest.mark.skipif(
    "postgres" not in STORE_KINDS, reason="no PostgreSQL store"
)


def _stored_rows(store: Store) -> list[dict[str, object]]:
    return list(store.read_events().to_pylist())


# De-duplication with the counts made beforehand


def test_counts_given_beforehand_dedupe_as_counts_made_inside(
    store: Store,
) -> None:
    with store.transaction():
        loader.write_events(store, rows_to_table([make_row(Z, event_fingerprint="z")]))
    rows = [
        make_row(X, event_fingerprint="a"),
        make_row(X, event_fingerprint="a", v_etl="retry"),  # natural
        make_row(X, event_fingerprint="b"),  # synthetic
        make_row(Y, event_fingerprint="y"),
        make_row(Z, event_fingerprint="z"),  # natural, of the stored one
    ]
    batch = typed_batch(rows_to_table(rows))
    counts = id_counts(batch)
    with store.transaction():
        inside = dedupe(batch, store.existing_events)
        given = dedupe(batch, store.existing_events, counts)
    assert (inside.natural_duplicates, inside.synthetic_duplicates) == (2, 1)
    assert (given.natural_duplicates, given.synthetic_duplicates) == (2, 1)
    assert given.events.equals(inside.events)
    assert given.events.num_rows == 3


def test_id_counts_count_each_id() -> None:
    batch = typed_batch(rows_to_table([make_row(X), make_row(Y), make_row(X)]))
    counts = id_counts(batch)
    pairs = dict(
        zip(
            counts.field("values").to_pylist(),
            counts.field("counts").to_pylist(),
            strict=True,
        )
    )
    assert pairs == {X: 2, Y: 1}


# The store's text of a batch


class _Watched:
    """Wraps a store's batch_text: which threads called it, with what."""

    def __init__(self, store: Store) -> None:
        self.threads: list[str] = []
        self.sizes: list[int] = []
        made = store.batch_text

        def batch_text(text: bytes) -> object:
            self.threads.append(threading.current_thread().name)
            self.sizes.append(len(text))
            return made(text)

        store.batch_text = batch_text  # type: ignore[method-assign]


def test_batch_text_is_made_on_the_preparing_thread(
    store: Store, tmp_path: Path
) -> None:
    rows = [make_row(f"{n:08d}-0000-4000-8000-000000000000") for n in range(30)]
    path = write_tsv(tmp_path / "events.tsv", rows)
    watched = _Watched(store)

    result = loader.load_files(store, [str(path)], batch_bytes=1500)

    assert result.events == 30
    batches = result.inputs[0].batches
    assert batches > 2
    if store.takes_source_text:
        assert len(watched.threads) == batches
        assert set(watched.threads) == {"plowline-load-prepare"}
        assert sum(watched.sizes) == path.stat().st_size
    else:
        assert watched.threads == []
    assert [r["event_id"] for r in _stored_rows(store)] == sorted(
        row[FIELD_INDEX["event_id"]] for row in rows
    )


@needs_postgres
def test_postgres_batch_text_is_copy_text(tmp_path: Path) -> None:
    store = make_store("postgres", tmp_path)
    try:
        assert store.batch_text(b"a\\b\tc\n") == b"a\\\\b\tc\n"
        # A CR or U+0000 leaves the batch to the typed events.
        assert store.batch_text(b"a\tb\r\n") is None
        assert store.batch_text(b"a\x00b\n") is None
    finally:
        store.close()


@needs_postgres
def test_postgres_loads_backslashes_and_crlf_through_either_path(
    tmp_path: Path,
) -> None:
    plain = [make_row(X, page_title="C:\\temp\\n not a line break")]
    crlf = [make_row(Y, page_title="back\\slash")]
    store = make_store("postgres", tmp_path)
    try:
        store.ensure_schema()
        first = write_tsv(tmp_path / "plain.tsv", plain)
        second = tmp_path / "crlf.tsv"
        second.write_bytes(("\t".join(crlf[0]) + "\r\n").encode())
        loader.load_files(store, [str(first), str(second)])
        titles = {r["event_id"]: r["page_title"] for r in _stored_rows(store)}
    finally:
        store.close()
    assert titles == {X: "C:\\temp\\n not a line break", Y: "back\\slash"}


# The PostgreSQL index on event_id


def _index_definition(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'atomic' "
            "AND indexname = 'events_event_id_idx'"
        ).fetchone()
    assert row is not None
    return str(row[0])


@needs_postgres
def test_new_postgres_database_gets_a_hash_index_that_lookups_use(
    tmp_path: Path,
) -> None:
    import psycopg

    store = make_store("postgres", tmp_path)
    try:
        store.ensure_schema()
        with store.transaction():
            loader.write_events(
                store, rows_to_table([make_row(X, app_id="a"), make_row(Y)])
            )
        with store.transaction():
            found = store.existing_events(pa.array([X, Z]))
    finally:
        store.close()
    assert found.column("event_id").to_pylist() == [X]
    assert found.column("app_id").to_pylist() == ["a"]
    dsn = postgres_dsn(tmp_path)
    assert "USING hash (event_id)" in _index_definition(dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT * FROM atomic.events "
                "WHERE event_id = ANY(string_to_array(%s, E'\\n'))",
                [f"{X}\n{Z}"],
            ).fetchall()
        )
    assert "events_event_id_idx" in plan


@needs_postgres
def test_postgres_database_with_the_older_btree_keeps_it_and_dedupes(
    tmp_path: Path,
) -> None:
    import psycopg

    from plowline.storage.postgres.schema import events_ddl

    dsn = postgres_dsn(tmp_path)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA atomic")
        conn.execute(events_ddl())
        conn.execute("CREATE INDEX events_event_id_idx ON atomic.events (event_id)")
    store = make_store("postgres", tmp_path)
    try:
        store.ensure_schema()
        first = write_tsv(tmp_path / "a.tsv", [make_row(X, event_fingerprint="f")])
        again = write_tsv(
            tmp_path / "b.tsv", [make_row(X, event_fingerprint="f", v_etl="retry")]
        )
        loader.load_files(store, [str(first)])
        second = loader.load_files(store, [str(again)])
        stored = _stored_rows(store)
    finally:
        store.close()
    assert second.natural_duplicates == 1
    assert [r["event_id"] for r in stored] == [X]
    definition = _index_definition(dsn)
    assert "USING btree (event_id)" in definition
