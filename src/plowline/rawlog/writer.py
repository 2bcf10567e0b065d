"""Append raw records to rotating raw-log files, one ``os.write`` per record.

Each record is handed to the operating system before the collector answers the
request, so a crash of the collector process loses nothing that was
acknowledged. A file is written under its *active* name, ``<name>.jsonl.open``,
and renamed to ``<name>.jsonl`` once it is complete: the rename is how readers
know a file is closed (docs/raw-log.md).

Nothing is synced to disk on the write path. A writer made with ``durable=True``
keeps what :meth:`RawLogWriter.sync` needs to make every record written so far
durable, and a caller (the collector's group commit) calls it from another
thread, so that one ``fdatasync`` covers many records.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from plowline.rawlog.record import RawRecord, encode_record

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_AGE_SECONDS = 3600.0
# A file that is still being written carries this after its closed name.
OPEN_SUFFIX = ".open"

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


class Durability(StrEnum):
    """When a record counts as stored, and so when the collector may answer 2xx."""

    # Handed to the operating system: survives a crash of the collector.
    OS = "os"
    # Synced to disk as well: survives a power cut too.
    FSYNC = "fsync"


def raw_log_name(started_us: int, pid: int) -> str:
    """The closed name of the raw log that process ``pid`` opened at ``started_us``.

    ``started_us`` is in microseconds since the epoch; the name shows it in UTC.
    """
    seconds, micros = divmod(started_us, 1_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)
    return f"raw-{moment:%Y%m%dT%H%M%S%f}-{pid}.jsonl"


def closed_path(path: Path) -> Path:
    """``path`` without its active-file suffix (unchanged when it has none)."""
    if path.name.endswith(OPEN_SUFFIX):
        return path.with_name(path.name[: -len(OPEN_SUFFIX)])
    return path


def sync_directory(directory: Path) -> None:
    """Make the names in ``directory`` (files created, renamed) durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one :meth:`RawLogWriter.sync` covered: writes up to ``ticket``.

    With an ``error`` those writes are not known to be on disk.
    """

    ticket: int
    error: OSError | None = None


@dataclass(slots=True)
class _File:
    fd: int
    path: Path
    generation: int
    # A write failed part-way and its bytes could not be cut off again.
    torn: bool = False


class RawLogWriter:
    """Appends raw-log lines to ``raw_dir``, starting a new file when one is full.

    A file is full when the next line would take it past ``max_bytes`` or when it
    was opened ``max_age_seconds`` ago or more; the check is made when a record
    arrives and when :meth:`rotate_if_due` is called. The first file is opened at
    the first write. One writer per process: the pid in the file name keeps the
    files of several collector processes apart, and the writer holds an
    exclusive ``flock`` on its open file so that start-up recovery can tell a
    live writer's file from a dead one's (:mod:`plowline.rawlog.recovery`).
    """

    def __init__(
        self,
        raw_dir: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
        durable: bool = False,
    ) -> None:
        self.raw_dir = Path(raw_dir)
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self.durable = durable
        self._clock = clock
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._file: _File | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._last_started_us = -1
        self._generation = 0
        self._ticket = 0
        # Durable mode: files closed for writing whose data is not synced yet.
        self._retired: list[int] = []
        self._dir_dirty = False
        self.raw_dir.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path | None:
        """The current file (its closed name once closed), ``None`` before a write."""
        return self._path

    @property
    def is_open(self) -> bool:
        """Whether a file is open; false before the first write and after close."""
        return self._file is not None

    @property
    def ticket(self) -> int:
        """How many lines were written so far; :meth:`write_line` returns each one's."""
        return self._ticket

    def write(self, record: RawRecord) -> None:
        """Append ``record``; raise :class:`OSError` when it could not be written."""
        self.write_line(encode_record(record))

    def write_line(self, line: bytes) -> int:
        """Append one already-encoded raw-log line (it must end with a newline).

        Returns the line's ticket: :meth:`sync` reports the tickets it covered.
        """
        with self._lock:
            file = self._file_for(len(line))
            start = self._size
            try:
                self._write_all(file.fd, line)
            except OSError:
                self._cut_back(file, start)
                if self._size == 0 and not file.torn:
                    # Nothing in it: removed, or a full disk would leave an
                    # empty closed file behind for every failed write.
                    self._discard_empty_file()
                else:
                    self._close_file()
                raise
            self._ticket += 1
            return self._ticket

    def rotate(self) -> None:
        """Close the current file now; the next record starts a new one."""
        with self._lock:
            self._close_file()

    def rotate_if_due(self) -> bool:
        """Close the current file if it is old enough; true when one was closed."""
        with self._lock:
            if self._file is None or not self._is_full(self._clock(), 0):
                return False
            self._close_file()
            return True

    def sync(self) -> SyncResult:
        """Make every line written so far durable (``durable=True`` writers only).

        Safe to call from another thread while records are written: the data is
        synced on duplicates of the descriptors, outside the write lock. When a
        sync fails, the current file is closed, so that later records go to a
        new file whose state is known.
        """
        with self._sync_lock:
            with self._lock:
                ticket = self._ticket
                file = self._file
                try:
                    current = os.dup(file.fd) if file is not None else None
                except OSError as exc:
                    return SyncResult(ticket, exc)
                retired, self._retired = self._retired, []
                dir_dirty, self._dir_dirty = self._dir_dirty, False
            error = self._sync_descriptors([*retired, current], dir_dirty)
            if error is not None and file is not None:
                self._abandon(file.generation)
        return SyncResult(ticket, error)

    def close(self) -> None:
        """Close the current file (renaming it to its closed name); a durable
        writer then syncs what it wrote. A later write starts a new file."""
        with self._lock:
            self._close_file()
        if self.durable:
            result = self.sync()
            if result.error is not None:
                logger.error("Could not sync the raw log: %s", result.error)

    def __enter__(self) -> RawLogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _file_for(self, incoming: int) -> _File:
        now = self._clock()
        if self._file is not None and self._is_full(now, incoming):
            self._close_file()
        if self._file is None:
            return self._open_file(now)
        return self._file

    def _is_full(self, now: float, incoming: int) -> bool:
        too_big = self._size > 0 and self._size + incoming > self.max_bytes
        return too_big or now - self._opened_at >= self.max_age_seconds

    def _open_file(self, now: float) -> _File:
        # Names must sort in write order even when the clock stands still or
        # steps back, so a start time never repeats or goes backwards.
        started_us = max(int(now * 1_000_000), self._last_started_us + 1)
        name = raw_log_name(started_us, os.getpid()) + OPEN_SUFFIX
        path = self.raw_dir / name
        fd = os.open(path, _OPEN_FLAGS, 0o644)
        _lock_file(fd, path)
        self._generation += 1
        self._file = _File(fd, path, self._generation)
        self._path = path
        self._size = os.fstat(fd).st_size
        self._opened_at = now
        self._last_started_us = started_us
        # The new name must reach the disk before records in it are synced.
        self._dir_dirty = self.durable
        return self._file

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            self._size += written
            view = view[written:]

    def _cut_back(self, file: _File, size: int) -> None:
        # A line cut short must never be read as a record: take its bytes off
        # again, or, when even that fails, leave the file under its active name
        # for start-up recovery to move the torn tail aside.
        if self._size == size:
            return
        try:
            os.ftruncate(file.fd, size)
            self._size = size
        except OSError as exc:
            logger.error("Could not cut a torn line off %s: %s", file.path, exc)
            file.torn = True

    def _close_file(self, *, sync_later: bool = True) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        if not file.torn:
            self._path = self._rename_closed(file.path)
        if self.durable and sync_later:
            # Synced and closed by the next sync(). Under its closed name it
            # needs no lock any more; under its active name it keeps it.
            if self._path != file.path:
                _unlock_file(file.fd)
            self._retired.append(file.fd)
            return
        try:
            os.close(file.fd)
        except OSError:
            logger.warning("Could not close raw log %s cleanly.", file.path)

    def _discard_empty_file(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        try:
            os.unlink(file.path)
            self._dir_dirty = self.durable
        except OSError as exc:
            logger.warning("Could not remove the empty raw log %s: %s", file.path, exc)
        try:
            os.close(file.fd)
        except OSError:
            logger.warning("Could not close raw log %s cleanly.", file.path)

    def _rename_closed(self, path: Path) -> Path:
        target = closed_path(path)
        try:
            os.rename(path, target)
        except OSError as exc:
            # Left under its active name: recovery closes it at the next start.
            logger.warning("Could not rename raw log %s on close: %s", path, exc)
            return path
        self._dir_dirty = self.durable
        return target

    def _sync_descriptors(
        self, descriptors: list[int | None], dir_dirty: bool
    ) -> OSError | None:
        error: OSError | None = None
        for fd in descriptors:
            if fd is None:
                continue
            try:
                if error is None:
                    os.fdatasync(fd)
            except OSError as exc:
                error = exc
            finally:
                os.close(fd)
        if dir_dirty and error is None:
            try:
                sync_directory(self.raw_dir)
            except OSError as exc:
                error = exc
        return error

    def _abandon(self, generation: int) -> None:
        with self._lock:
            if self._file is not None and self._file.generation == generation:
                logger.error(
                    "Syncing %s failed; later records go to a new file.",
                    self._file.path,
                )
                self._close_file(sync_later=False)


def _unlock_file(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError as exc:
        logger.warning("Could not unlock a closed raw log: %s", exc)


def _lock_file(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        # Without the lock, recovery would take this file for a dead writer's.
        os.close(fd)
        raise OSError(
            exc.errno, f"Cannot lock the new raw log {path}: {exc.strerror}"
        ) from exc
