"""Append raw records to rotating raw-log files, one ``os.write`` per record.

Each record is handed to the operating system before the collector answers the
request, so a crash of the collector process loses nothing that was
acknowledged. Nothing is fsynced: a power loss can still lose what sits in the
page cache.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from plowline.rawlog.record import RawRecord, encode_record

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_AGE_SECONDS = 3600.0

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def raw_log_name(started_us: int, pid: int) -> str:
    """The name of the raw log that process ``pid`` opened at ``started_us``.

    ``started_us`` is in microseconds since the epoch; the name shows it in UTC.
    """
    seconds, micros = divmod(started_us, 1_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)
    return f"raw-{moment:%Y%m%dT%H%M%S%f}-{pid}.jsonl"


class RawLogWriter:
    """Appends raw-log lines to ``raw_dir``, starting a new file when one is full.

    A file is full when the next line would take it past ``max_bytes`` or when it
    was opened ``max_age_seconds`` ago or more; the check is made when a record
    arrives, so an idle writer keeps its file open. The first file is opened at
    the first write. One writer per process: the pid in the file name keeps the
    files of several collector processes apart.
    """

    def __init__(
        self,
        raw_dir: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.raw_dir = Path(raw_dir)
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._last_started_us = -1
        self.raw_dir.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path | None:
        """The file being appended to, or ``None`` before the first write."""
        return self._path

    @property
    def is_open(self) -> bool:
        """Whether a file is open; false before the first write and after close."""
        return self._fd is not None

    def write(self, record: RawRecord) -> None:
        """Append ``record``; raise :class:`OSError` when it could not be written."""
        self.write_line(encode_record(record))

    def write_line(self, line: bytes) -> None:
        """Append one already-encoded raw-log line (it must end with a newline)."""
        with self._lock:
            fd = self._file_for(len(line))
            try:
                self._write_all(fd, line)
            except OSError:
                # A line cut short must stay the last one of its file, so that
                # the next record starts a clean line in a new file.
                self._close_file()
                raise

    def close(self) -> None:
        """Close the current file. A later write starts a new file."""
        with self._lock:
            self._close_file()

    def __enter__(self) -> RawLogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _file_for(self, incoming: int) -> int:
        now = self._clock()
        if self._fd is not None and self._is_full(now, incoming):
            self._close_file()
        if self._fd is None:
            return self._open_file(now)
        return self._fd

    def _is_full(self, now: float, incoming: int) -> bool:
        too_big = self._size > 0 and self._size + incoming > self.max_bytes
        return too_big or now - self._opened_at >= self.max_age_seconds

    def _open_file(self, now: float) -> int:
        # Names must sort in write order even when the clock stands still or
        # steps back, so a start time never repeats or goes backwards.
        started_us = max(int(now * 1_000_000), self._last_started_us + 1)
        path = self.raw_dir / raw_log_name(started_us, os.getpid())
        fd = os.open(path, _OPEN_FLAGS, 0o644)
        self._fd, self._path = fd, path
        self._size = os.fstat(fd).st_size
        self._opened_at = now
        self._last_started_us = started_us
        return fd

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            self._size += written
            view = view[written:]

    def _close_file(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.close(fd)
        except OSError:
            logger.warning("Could not close raw log %s cleanly.", self._path)
