"""Load benchmark: N enriched events into a store; events/s and bytes/event.

The captured tracker traffic (../shared/fixtures/traffic) is enriched once;
its rows are then repeated with a new event id (a random version-4 UUID, as
trackers send), shifted timestamps and a distinct page URL per row until there
are N of them, written to a TSV file, and loaded with the same library call as
``plowline load``.

    .venv/bin/python bench/load.py --events 1000000 --store duckdb

Other stores plug in through ``STORES`` (a factory from a work folder to a
Store, and the path whose size is the data on disk).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixture_traffic import enriched_traffic_rows  # noqa: E402
from plowline.enrich.fields import FIELD_INDEX  # noqa: E402
from plowline.storage import loader  # noqa: E402
from plowline.storage.base import Store  # noqa: E402

log = logging.getLogger("bench.load")


def _duckdb(folder: Path) -> tuple[Store, Path]:
    from plowline.storage.duckdb import DuckDBStore

    path = folder / "events.duckdb"
    for old in (path, path.with_name(path.name + ".wal")):
        old.unlink(missing_ok=True)
    return DuckDBStore(path), path


def _parquet(folder: Path) -> tuple[Store, Path]:
    from plowline.storage.parquet import ParquetStore

    path = folder / "parquet"
    shutil.rmtree(path, ignore_errors=True)
    return ParquetStore(path), path


# The PostgreSQL server of the benchmark; its database plowline_bench is made
# afresh for each run and dropped at exit.
POSTGRES_SERVER = os.environ.get(
    "PLOWLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432"
)
_BENCH_DATABASE = "plowline_bench"


def _postgres(folder: Path) -> tuple[Store, Callable[[], int]]:
    """A fresh database; its size is that of Plowline's tables (with indexes
    and TOAST), measured once the load is done."""
    import atexit

    import psycopg
    from psycopg import sql

    from plowline.storage.postgres import PostgresStore

    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(_BENCH_DATABASE)
    )

    def run(statement: sql.Composed) -> None:
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(statement)

    run(drop)
    run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_BENCH_DATABASE)))
    atexit.register(run, drop)
    dsn = f"{POSTGRES_SERVER}/{_BENCH_DATABASE}"

    def size() -> int:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname IN ('atomic', 'plowline_meta') AND c.relkind = 'r'"
            ).fetchone()
        return int(row[0] or 0) if row else 0

    return PostgresStore(dsn), size


# kind -> factory: (the store, its data's path or a function giving its size)
STORES: dict[str, Callable[[Path], tuple[Store, Path | Callable[[], int]]]] = {
    "duckdb": _duckdb,
    "parquet": _parquet,
    "postgres": _postgres,
}


def traffic_rows() -> list[list[str]]:
    return enriched_traffic_rows()


_TSTAMPS = [
    FIELD_INDEX[name]
    for name in (
        "collector_tstamp",
        "etl_tstamp",
        "dvce_created_tstamp",
        "derived_tstamp",
    )
]
_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def write_input(path: Path, count: int) -> int:
    """Write ``count`` varied enriched rows; returns the file's size."""
    base = traffic_rows()
    event_id, page_url = FIELD_INDEX["event_id"], FIELD_INDEX["page_url"]
    start = datetime(2026, 12, 4)
    with open(path, "w", encoding="utf-8") as out:
        lines = []
        for n in range(count):
            row = list(base[n % len(base)])
            # Random, like a tracker's ids: sequential ids would compress to
            # almost nothing, here and in every child table's root_id.
            row[event_id] = str(uuid.uuid4())
            moment = (start + timedelta(milliseconds=n)).strftime(_FORMAT)[:-3]
            for index in _TSTAMPS:
                if row[index]:
                    row[index] = moment
            if row[page_url]:
                row[page_url] = f"{row[page_url]}#n{n}"
            lines.append("\t".join(row))
            if len(lines) == 20_000:
                out.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            out.write("\n".join(lines) + "\n")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--store", choices=sorted(STORES), default="duckdb")
    parser.add_argument("--batch-bytes", type=int, default=None)
    parser.add_argument("--dir", type=Path, default=None, help="work folder")
    parser.add_argument(
        "--reuse-input",
        action="store_true",
        help="load the folder's events.tsv as it is if it exists (it must have "
        "been written by this script with the same --events)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    folder = args.dir or Path(tempfile.mkdtemp(prefix="plowline-bench-load-"))
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "events.tsv"
    started = time.perf_counter()
    if args.reuse_input and source.exists():
        size = source.stat().st_size
        built = "reused"
    else:
        size = write_input(source, args.events)
        built = f"{time.perf_counter() - started:.1f} s to build"
    print(f"input: {args.events} events, {size / 1e6:.0f} MB ({built})")

    store, on_disk = STORES[args.store](folder)
    started = time.perf_counter()
    try:
        result = loader.load_files(store, [str(source)], batch_bytes=args.batch_bytes)
        seconds = time.perf_counter() - started
    finally:
        # Closing can do work too (DuckDB's last checkpoint): counted apart.
        store.close()
    closed = time.perf_counter() - started
    disk = _size(on_disk) if isinstance(on_disk, Path) else on_disk()
    print(
        f"{args.store}: {result.events} events in {seconds:.2f} s = "
        f"{result.events / seconds:,.0f} events/s ({closed:.2f} s = "
        f"{result.events / closed:,.0f} events/s with closing the store); "
        f"{disk / 1e6:.1f} MB on disk = {disk / max(result.events, 1):.1f} bytes/event"
    )


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    wal = path.with_name(path.name + ".wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


if __name__ == "__main__":
    main()
