"""Where the collector puts raw records: the local raw log, stdout, or a stream.

Every sink has the shape the application expects of a record writer:
``write(record)`` hands the record over and returns ``None`` when it is stored
already, or an awaitable that ends once it is (and raises :class:`OSError` if it
could not be), and ``close()``. ``store(line, record_id)`` does the same with a
record the application has encoded itself (the request path does that). The
application answers 2xx only after that.

With ``durability = fsync`` the raw log answers once the record is on disk. The
fsync is a group commit: records are written to the file at once, and a thread
runs ``fdatasync`` whenever records wait for one; everything written while one
sync runs is covered by the next, so concurrent requests share a sync and a
request waits at most about two sync times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from plowline.collector.config import CollectorConfig
from plowline.rawlog.record import RawRecord, encode_record
from plowline.rawlog.writer import Durability, RawLogWriter, SyncResult

logger = logging.getLogger(__name__)

# How often an idle raw log is checked for its age limit.
ROTATE_CHECK_SECONDS = 1.0

_Waiter = tuple[int, "asyncio.Future[None]"]


class Sink(Protocol):
    """What the application writes records to (its ``RecordWriter``)."""

    def write(self, record: RawRecord) -> Awaitable[None] | None: ...

    def store(self, line: bytes, record_id: str) -> Awaitable[None] | None: ...

    def close(self) -> None: ...


class GroupCommit:
    """Runs ``sync`` on a thread of its own for the records that wait for one.

    :meth:`wait_for` is called on the event loop with the ticket of a record just
    written; the future it returns ends when a sync covering that ticket ends.
    """

    def __init__(self, sync: Callable[[], SyncResult]) -> None:
        self._sync = sync
        self._lock = threading.Lock()
        self._waiters: list[_Waiter] = []
        self._wake = threading.Event()
        self._stopping = False
        self.syncs = 0
        self._thread = threading.Thread(
            target=self._run, name="plowline-group-commit", daemon=True
        )
        self._thread.start()

    def wait_for(self, ticket: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiters.append((ticket, future))
        self._wake.set()
        return future

    def close(self) -> None:
        """Sync for whoever still waits, then stop the thread."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            # Cleared before the sync: a record written during it wakes us again.
            self._wake.clear()
            with self._lock:
                if not self._waiters:
                    if self._stopping:
                        return
                    continue
            result = self._sync()
            self.syncs += 1
            self._settle(result)

    def _settle(self, result: SyncResult) -> None:
        with self._lock:
            done = [w for w in self._waiters if w[0] <= result.ticket]
            self._waiters = [w for w in self._waiters if w[0] > result.ticket]
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, future in done:
            by_loop.setdefault(future.get_loop(), []).append(future)
        for loop, futures in by_loop.items():
            # A closed loop has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_futures, futures, result.error)


def _settle_futures(futures: list[asyncio.Future[None]], error: OSError | None) -> None:
    for future in futures:
        if future.done():
            continue  # the request was cancelled
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class _Ticker:
    """Calls ``action`` every ``seconds`` on a thread until stopped."""

    def __init__(self, seconds: float, action: Callable[[], object]) -> None:
        self._seconds = seconds
        self._action = action
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="plowline-rotation", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            try:
                self._action()
            except OSError as exc:
                logger.warning("Raw-log housekeeping failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class RawLogSink:
    """The local raw log: the default sink, and the spool of the NATS sink.

    A file past its age limit is closed within about a second even when no
    record arrives, so that readers of closed files are not kept waiting.
    """

    def __init__(
        self,
        writer: RawLogWriter,
        *,
        durability: Durability = Durability.OS,
        rotate_check_seconds: float = ROTATE_CHECK_SECONDS,
    ) -> None:
        if durability is Durability.FSYNC and not writer.durable:
            raise ValueError("fsync durability needs a RawLogWriter(durable=True)")
        self.writer = writer
        self.durability = durability
        self.commit = (
            GroupCommit(writer.sync) if durability is Durability.FSYNC else None
        )
        self._ticker = _Ticker(rotate_check_seconds, writer.rotate_if_due)

    def write(self, record: RawRecord) -> Awaitable[None] | None:
        return self.write_line(encode_record(record))

    def store(self, line: bytes, record_id: str) -> Awaitable[None] | None:
        return self.write_line(line)

    def write_line(self, line: bytes) -> Awaitable[None] | None:
        """Append one encoded line; with fsync durability, await the result."""
        ticket = self.writer.write_line(line)
        if self.commit is None:
            return None
        return self.commit.wait_for(ticket)

    def close(self) -> None:
        self._ticker.stop()
        if self.commit is not None:
            self.commit.close()
        self.writer.close()


class StdoutSink:
    """One raw-log line per record on standard output, for a process reading it.

    A record counts as stored once the operating system took the line (a pipe
    that is full makes the collector wait). ``durability`` does not apply.
    """

    def __init__(self, fd: int | None = None) -> None:
        self._fd = sys.stdout.fileno() if fd is None else fd
        self._lock = threading.Lock()

    def write(self, record: RawRecord) -> None:
        self.store(encode_record(record), record.id)

    def store(self, line: bytes, record_id: str) -> None:
        view = memoryview(line)
        # Known limitation: with several workers, lines longer than the pipe's
        # atomic size (4 KiB on Linux) from two workers may interleave.
        with self._lock:
            while view:
                view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        return None


def raw_log_writer(
    config: CollectorConfig, raw_dir: Path | None = None
) -> RawLogWriter:
    """The raw-log writer the settings ask for."""
    return RawLogWriter(
        raw_dir or config.raw_dir,
        max_bytes=config.rotate_max_bytes,
        max_age_seconds=config.rotate_max_age_seconds,
        durable=Durability(config.durability) is Durability.FSYNC,
    )


def build_sink(config: CollectorConfig) -> Sink:
    """The sink ``config.sink`` names, ready for one worker process."""
    if config.sink == "stdout":
        return StdoutSink()
    spool = RawLogSink(raw_log_writer(config), durability=Durability(config.durability))
    if config.sink == "nats":
        from plowline.collector.nats_sink import NatsSettings, NatsSink

        return NatsSink(NatsSettings.from_config(config), spool)
    return spool
