"""The Parquet store: :class:`~plowline.storage.base.Store` on a folder.

A transaction keeps its writes in memory. Committing it

1. writes every file under ``_staging/<commit-id>/`` (names ending in ``.tmp``),
   including rewrites of older files of a child table whose column widened;
2. writes ``_manifest/<commit-id>.json`` (to a dot-file, then renamed): this
   is the commit point;
3. renames each staged file into its place and removes the staging folder.

Start-up (``ensure_schema``) finishes step 3 for a commit whose manifest record
exists and deletes the staging folder of one whose record does not, so after a
crash readers only ever see committed batches. One process writes at a time
(``_lock``, a ``flock``).

``existing_events`` looks ids up in an in-memory index of the stored event ids
(read from the event files' ``event_id`` column on first use) and reads only the
files that hold a match.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from plowline.errors import PlowlineError, StoreUnavailableError
from plowline.storage.base import Store
from plowline.storage.batch import EVENTS_SCHEMA
from plowline.storage.failed import FAILED_SCHEMA
from plowline.storage.manifest import ManifestEntry
from plowline.storage.parquet.layout import (
    EVENTS_DIR,
    EVENTS_PARTITION,
    FAILED_DIR,
    FAILED_PARTITION,
    LOCK_FILE,
    MANIFEST_DIR,
    STAGED_SUFFIX,
    STAGING_DIR,
    TABLES_DIR,
    check_commit_id,
    check_table_name,
    child_schema,
    conform,
    fsync_dir,
    manifest_record,
    manifest_rows,
    partitions,
    read_parquet,
    write_json_atomically,
    write_parquet,
)
from plowline.storage.shred import ShredKind

log = logging.getLogger(__name__)

_WRITERS = 2


@dataclass
class _Pending:
    """One open transaction's writes."""

    children: dict[str, dict[str, ShredKind]]  # every table's columns, as changed
    events: list[pa.Table] = field(default_factory=list)
    child_rows: dict[str, list[pa.Table]] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)  # tables created or altered
    widened: set[str] = field(default_factory=set)  # tables whose files are rewritten
    failed: list[pa.Table] = field(default_factory=list)
    entry: ManifestEntry | None = None


@dataclass
class _Index:
    """The stored event ids, one chunk per events file."""

    files: list[Path] = field(default_factory=list)
    ids: list[pa.Array] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # cumulative row counts

    def add(self, path: Path, ids: pa.Array) -> None:
        self.files.append(path)
        self.ids.append(ids)
        self.ends.append((self.ends[-1] if self.ends else 0) + len(ids))


class ParquetStore(Store):
    """Events as Parquet files in a Hive-partitioned folder (see the module text)."""

    kind: ClassVar[str] = "parquet"

    def __init__(self, root: str | Path, *, durable: bool = True) -> None:
        self.root = Path(root)
        # fsync files, manifest records and folders before a commit returns.
        self.durable = durable
        self._lock: IO[bytes] | None = None
        self._children: dict[str, dict[str, ShredKind]] | None = None
        self._index: _Index | None = None
        self._pending: _Pending | None = None

    # Set-up, locking, recovery

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def ensure_schema(self) -> None:
        try:
            for name in (EVENTS_DIR, FAILED_DIR, TABLES_DIR, MANIFEST_DIR, STAGING_DIR):
                (self.root / name).mkdir(parents=True, exist_ok=True)
            self._acquire()
            self._recover()
        except OSError as exc:
            raise StoreUnavailableError(
                f"Cannot prepare the Parquet folder {self.root}: {exc}"
            ) from exc

    def _acquire(self) -> None:
        if self._lock is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / LOCK_FILE, "ab")  # noqa: SIM115 - held until close
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise StoreUnavailableError(
                f"The Parquet folder {self.root} is being written by another "
                "process (it holds _lock); one process writes to a folder at a time."
            ) from exc
        self._lock = handle

    def _committed(self, commit_id: str) -> bool:
        return (self.root / MANIFEST_DIR / f"{commit_id}.json").exists()

    def _recover(self) -> None:
        """Finish the commits a crash interrupted, drop the uncommitted ones."""
        committed = {p.stem for p in (self.root / MANIFEST_DIR).glob("*.json")}
        for folder in sorted((self.root / STAGING_DIR).iterdir()):
            self._index = None  # what is on disk changes
            if folder.name in committed:
                moved = self._publish(folder)
                log.warning(
                    "Parquet store %s: finished commit %s (%d files put in place)",
                    self.root,
                    folder.name,
                    moved,
                )
            else:
                shutil.rmtree(folder)
                log.warning(
                    "Parquet store %s: removed the files of uncommitted batch %s",
                    self.root,
                    folder.name,
                )
        for leftover in (self.root / MANIFEST_DIR).glob(f".*{STAGED_SUFFIX}"):
            leftover.unlink()
        # Files in the tables named like a commit that has no manifest record
        # (none are made by this store; a copy from elsewhere could be).
        self._children = None
        for table in self._table_dirs():
            for path in table.glob("*=*/*"):
                if path.name.startswith(".") and path.name.endswith(STAGED_SUFFIX):
                    path.unlink()
                elif path.suffix == ".parquet" and path.stem not in committed:
                    log.warning(
                        "Parquet store %s: removed %s, of no committed batch",
                        self.root,
                        path,
                    )
                    path.unlink()
                    self._index = None

    def _table_dirs(self) -> list[Path]:
        tables = [self.root / EVENTS_DIR, self.root / FAILED_DIR]
        tables += [self.root / name for name in self._child_map()]
        return [table for table in tables if table.is_dir()]

    def _publish(self, folder: Path) -> int:
        """Rename a commit's staged files into place; then remove its folder."""
        moved = 0
        targets: set[Path] = set()
        for staged in sorted(folder.rglob(f"*{STAGED_SUFFIX}")):
            relative = staged.relative_to(folder)
            target = self.root / str(relative)[: -len(STAGED_SUFFIX)]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            targets.add(target.parent)
            moved += 1
        if self.durable:
            for parent in targets:
                fsync_dir(parent)
        shutil.rmtree(folder)
        return moved

    # Transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._pending is not None:
            raise PlowlineError("ParquetStore transactions do not nest")
        try:
            self._acquire()
        except OSError as exc:
            raise StoreUnavailableError(f"Cannot lock {self.root}: {exc}") from exc
        children = {name: dict(cols) for name, cols in self._child_map().items()}
        self._pending = _Pending(children)
        try:
            yield
        except BaseException:
            self._pending = None
            raise
        pending, self._pending = self._pending, None
        try:
            self._commit(pending)
        except BaseException as exc:
            # Reload what is on disk; a commit whose record was written is
            # finished by the next ensure_schema().
            self._children = None
            self._index = None
            if not isinstance(exc, OSError):
                raise
            raise StoreUnavailableError(
                f"Could not write to the Parquet folder {self.root}: {exc}"
            ) from exc

    def _open(self) -> _Pending:
        if self._pending is None:
            raise PlowlineError("ParquetStore writes need an open transaction()")
        return self._pending

    def _commit(self, pending: _Pending) -> None:
        if not (
            pending.events
            or pending.child_rows
            or pending.changed
            or pending.failed
            or pending.entry
        ):
            return
        if pending.entry is not None:
            commit_id = check_commit_id(pending.entry.ref.batch_id)
            if self._committed(commit_id):
                raise PlowlineError(f"Batch {commit_id} is already in the manifest")
        else:
            commit_id = f"tx-{uuid.uuid4().hex}"
        folder = self.root / STAGING_DIR / commit_id
        if folder.exists():
            shutil.rmtree(folder)
        try:
            files, events_files = self._stage(pending, commit_id, folder)
            if self.durable:
                for path in {p.parent for p in folder.rglob("*")}:
                    fsync_dir(path)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        record = manifest_record(commit_id, pending.entry, files)
        (self.root / MANIFEST_DIR).mkdir(parents=True, exist_ok=True)
        write_json_atomically(
            self.root / MANIFEST_DIR / f"{commit_id}.json", record, durable=self.durable
        )
        # Committed: from here a crash is finished by the next start-up.
        if folder.exists():
            self._publish(folder)
        self._children = pending.children
        if self._index is not None:
            for path, ids in events_files:
                self._index.add(path, ids)
        log.debug(
            "Parquet store %s: committed %s (%d files)",
            self.root,
            commit_id,
            len(files),
        )

    def _stage(
        self, pending: _Pending, commit_id: str, folder: Path
    ) -> tuple[list[str], list[tuple[Path, pa.Array]]]:
        """Write a commit's files under its staging folder; returns their
        places (relative to the root) and the event ids of each events file."""
        jobs: list[tuple[pa.Table, str]] = []
        events_files: list[tuple[Path, pa.Array]] = []
        if pending.events:
            events = pa.concat_tables(pending.events)
            for day, rows in partitions(events, "collector_tstamp"):
                relative = f"{EVENTS_DIR}/{EVENTS_PARTITION}={day}/{commit_id}.parquet"
                jobs.append((rows, relative))
                ids = rows.column("event_id").combine_chunks()
                events_files.append((self.root / relative, ids))
        for table, pieces in pending.child_rows.items():
            schema = child_schema(pending.children[table])
            rows = pa.concat_tables([conform(piece, schema) for piece in pieces])
            for day, part in partitions(rows, "root_tstamp"):
                jobs.append(
                    (part, f"{table}/{EVENTS_PARTITION}={day}/{commit_id}.parquet")
                )
        if pending.failed:
            failed = pa.concat_tables(pending.failed)
            for day, rows in partitions(failed, "failed_at"):
                jobs.append(
                    (rows, f"{FAILED_DIR}/{FAILED_PARTITION}={day}/{commit_id}.parquet")
                )
        rewrites = [
            (table, path)
            for table in sorted(pending.widened)
            for path in sorted((self.root / table).glob("*=*/*.parquet"))
        ]

        def rewrite(table: str, path: Path) -> None:
            schema = child_schema(pending.children[table])
            relative = path.relative_to(self.root)
            write_parquet(
                conform(read_parquet(path), schema),
                folder / f"{relative}{STAGED_SUFFIX}",
                durable=self.durable,
            )

        def write(rows: pa.Table, relative: str) -> None:
            write_parquet(
                rows, folder / f"{relative}{STAGED_SUFFIX}", durable=self.durable
            )

        with ThreadPoolExecutor(_WRITERS) as pool:
            futures = [pool.submit(write, rows, relative) for rows, relative in jobs]
            futures += [pool.submit(rewrite, table, path) for table, path in rewrites]
            for future in futures:
                future.result()
        for table in sorted(pending.changed):
            columns = [[name, kind] for name, kind in pending.children[table].items()]
            target = folder / TABLES_DIR / f"{table}.json{STAGED_SUFFIX}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(orjson.dumps({"table": table, "columns": columns}))
        if rewrites:
            log.info(
                "Parquet store %s: rewrote %d files of %s for widened columns",
                self.root,
                len(rewrites),
                ", ".join(sorted(pending.widened)),
            )
        return [relative for _, relative in jobs], events_files

    # The manifest

    def batch_loaded(self, batch_id: str) -> bool:
        entry = self._pending.entry if self._pending is not None else None
        if entry is not None and entry.ref.batch_id == batch_id:
            return True
        return self._committed(check_commit_id(batch_id))

    def loaded_batches(self) -> set[str]:
        folder = self.root / MANIFEST_DIR
        if not folder.is_dir():
            return set()
        return {path.stem for path in folder.glob("*.json")}

    def record_batch(self, entry: ManifestEntry) -> None:
        pending = self._open()
        if pending.entry is not None:
            raise PlowlineError("A ParquetStore transaction records one batch")
        check_commit_id(entry.ref.batch_id)
        pending.entry = entry

    # Events

    def _event_index(self) -> _Index:
        if self._index is None:
            index = _Index()
            paths = sorted((self.root / EVENTS_DIR).glob("*=*/*.parquet"))

            def ids_of(path: Path) -> pa.Array:
                table = read_parquet_columns(path, ["event_id"])
                return table.column(0).combine_chunks()

            with ThreadPoolExecutor(_WRITERS) as pool:
                for path, ids in zip(paths, pool.map(ids_of, paths), strict=True):
                    index.add(path, ids)
            self._index = index
            log.debug(
                "Parquet store %s: %d event ids indexed",
                self.root,
                sum(map(len, index.ids)),
            )
        return self._index

    def existing_events(self, event_ids: pa.Array) -> pa.Table:
        wanted = pa.array(event_ids, pa.string())
        found: list[pa.Table] = []
        if len(wanted):
            index = self._event_index()
            if index.ids:
                stored = pa.chunked_array(index.ids, pa.string())
                hits = pc.indices_nonzero(
                    pc.is_in(stored, value_set=wanted)
                ).to_pylist()
                files = sorted({_chunk_of(index.ends, hit) for hit in hits})
                for number in files:
                    table = read_parquet(index.files[number])
                    mask = pc.is_in(index.ids[number], value_set=wanted)
                    found.append(conform(table.filter(mask), EVENTS_SCHEMA))
            if self._pending is not None:
                for table in self._pending.events:
                    mask = pc.is_in(table.column("event_id"), value_set=wanted)
                    found.append(table.filter(mask))
        if not found:
            return EVENTS_SCHEMA.empty_table()
        return pa.concat_tables(found)

    def insert_events(self, events: pa.Table, source_text: object = None) -> None:
        pending = self._open()
        if events.num_rows:
            pending.events.append(_as_schema(events, EVENTS_SCHEMA, "events"))

    # Child tables

    def _child_map(self) -> dict[str, dict[str, ShredKind]]:
        if self._children is None:
            children: dict[str, dict[str, ShredKind]] = {}
            folder = self.root / TABLES_DIR
            if folder.is_dir():
                for path in sorted(folder.glob("*.json")):
                    document = orjson.loads(path.read_bytes())
                    children[document["table"]] = {
                        name: kind for name, kind in document["columns"]
                    }
            self._children = children
        return self._children

    def _current(self) -> dict[str, dict[str, ShredKind]]:
        return (
            self._pending.children if self._pending is not None else self._child_map()
        )

    def child_columns(self, table: str) -> dict[str, ShredKind] | None:
        columns = self._current().get(table)
        return None if columns is None else dict(columns)

    def create_child_table(self, table: str, columns: Mapping[str, ShredKind]) -> None:
        pending = self._open()
        check_table_name(table)
        if table in pending.children:
            raise PlowlineError(f"Child table {table} exists already")
        pending.children[table] = dict(columns)
        pending.changed.add(table)
        log.info("Created child table %s", table)

    def alter_child_table(
        self,
        table: str,
        add: Mapping[str, ShredKind],
        widen: Mapping[str, ShredKind],
    ) -> None:
        pending = self._open()
        known = pending.children.get(table)
        if known is None:
            raise PlowlineError(f"There is no child table {table}")
        for column, kind in add.items():
            if column in known:
                raise PlowlineError(
                    f"Child table {table} has a column {column} already"
                )
            known[column] = kind
        for column, kind in widen.items():
            known[column] = kind
        pending.changed.add(table)
        if widen:
            pending.widened.add(table)
        log.info(
            "Child table %s: added %s, widened %s",
            table,
            sorted(add) or "nothing",
            sorted(widen) or "nothing",
        )

    def insert_child_rows(self, table: str, rows: pa.Table) -> None:
        pending = self._open()
        if table not in pending.children:
            raise PlowlineError(f"There is no child table {table}")
        if rows.num_rows:
            pending.child_rows.setdefault(table, []).append(rows)

    # Failed events

    def insert_failed(self, failed: pa.Table) -> None:
        pending = self._open()
        if failed.num_rows:
            pending.failed.append(_as_schema(failed, FAILED_SCHEMA, "failed events"))

    # Reading back

    def _read_all(self, folder: Path, schema: pa.Schema) -> pa.Table:
        paths = sorted(folder.glob("*=*/*.parquet")) if folder.is_dir() else []
        tables = [conform(read_parquet(path), schema) for path in paths]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def read_events(self) -> pa.Table:
        table = self._read_all(self.root / EVENTS_DIR, EVENTS_SCHEMA)
        return table.sort_by([("event_id", "ascending")])

    def child_tables(self) -> list[str]:
        return sorted(self._child_map())

    def read_child_table(self, table: str) -> pa.Table:
        columns = self._child_map().get(check_table_name(table))
        if columns is None:
            raise PlowlineError(f"There is no child table {table}")
        rows = self._read_all(self.root / table, child_schema(columns))
        order = ["root_id", *(name for name in rows.column_names if name != "root_id")]
        return rows.sort_by([(name, "ascending") for name in order])

    def read_failed(self) -> pa.Table:
        table = self._read_all(self.root / FAILED_DIR, FAILED_SCHEMA)
        return table.sort_by(
            [("failed_at", "ascending"), ("failed_event", "ascending")]
        )

    def read_manifest(self) -> pa.Table:
        folder = self.root / MANIFEST_DIR
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
        records: list[dict[str, Any]] = [orjson.loads(p.read_bytes()) for p in paths]
        table = manifest_rows(records)
        return table.sort_by([("loaded_at", "ascending"), ("batch_id", "ascending")])


def read_parquet_columns(path: Path, columns: list[str]) -> pa.Table:
    return pq.ParquetFile(path).read(columns=columns)


def _chunk_of(ends: list[int], position: int) -> int:
    """Which file holds the ``position``-th stored id."""
    return bisect.bisect_right(ends, position)


def _as_schema(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    if table.schema.equals(schema):
        return table
    if table.column_names != schema.names:
        raise PlowlineError(
            f"The {what} to insert do not have the columns of their table: "
            f"{table.column_names[:5]}…"
        )
    return pa.Table.from_arrays(
        [column.cast(f.type) for column, f in zip(table.columns, schema, strict=True)],
        schema=schema,
    )
