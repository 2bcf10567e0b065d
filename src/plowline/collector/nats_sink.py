"""The NATS JetStream sink: records go to a stream, or to the local raw log while
the stream is away, and from there to the stream once it is back.

Each worker process keeps one connection, on a thread with its own event loop,
and is in one of two states:

* spooling (at start, and whenever the stream cannot be reached): records are
  appended to the local raw log, the *spool*, with the configured durability,
  and answered from there. A forwarder sends closed spool files to the stream,
  oldest first and in order within a file, remembers in a hidden progress file
  how far it got, and renames a file to ``<name>.jsonl.forwarded`` once all of it
  is in the stream.
* streaming: once this worker's spool is empty and the stream answers, records
  are published and answered after the stream acknowledged them. A publish that
  fails sends the record to the spool and the worker back to spooling.

So a record is answered 503 only when the stream is away and the local disk
fails too. Every message carries the record id as ``Nats-Msg-Id``: the stream
drops a record sent twice within its duplicate window, as happens when a publish
timed out after the stream had stored it and the record went to the spool too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

from plowline.collector.config import CollectorConfig
from plowline.collector.sinks import RawLogSink
from plowline.errors import ConfigurationError, StoreUnavailableError
from plowline.rawlog.record import RawRecord, encode_record

logger = logging.getLogger(__name__)

FORWARDED_SUFFIX = ".forwarded"
# Kept by a stream this sink creates; a longer window than the server's default
# two minutes lets it drop more of the duplicates an outage can cause.
DUPLICATE_WINDOW_SECONDS = 600.0
_READ_CHUNK = 1024 * 1024
_LOG_INTERVAL = 30.0


@dataclass(frozen=True, slots=True)
class NatsSettings:
    """Where the stream is; ``timeout_seconds`` bounds one publish."""

    url: str
    stream: str
    subject: str
    timeout_seconds: float = 2.0
    retry_seconds: float = 1.0

    @classmethod
    def from_config(cls, config: CollectorConfig) -> NatsSettings:
        return cls(
            url=config.nats_url,
            stream=config.nats_stream,
            subject=config.nats_subject,
            timeout_seconds=config.nats_timeout_seconds,
        )


def import_nats() -> ModuleType:
    """The ``nats`` package, or a :class:`ConfigurationError` naming its install."""
    try:
        import nats
        import nats.js.errors
    except ImportError as exc:
        raise ConfigurationError(
            "The NATS sink and stream enrichment need the nats-py package: "
            "pip install 'plowline[nats]'."
        ) from exc
    return nats


class NatsSink:
    """Records to a JetStream stream, with ``spool`` (a raw log) as the fallback."""

    def __init__(self, settings: NatsSettings, spool: RawLogSink) -> None:
        self._nats = import_nats()
        self._failures: tuple[type[BaseException], ...] = (
            self._nats.errors.Error,
            asyncio.TimeoutError,
            StoreUnavailableError,
            OSError,
        )
        self.settings = settings
        self.spool = spool
        self.raw_dir = spool.writer.raw_dir
        self._own = f"-{os.getpid()}.jsonl"
        # Spool writes and the switch to streaming happen under this lock, so
        # no record is left in the spool once records are streamed directly.
        self._lock = threading.Lock()
        self._streaming = False
        self._stopping = False
        self._stream_ready = False
        self._nc: Any = None
        self._js: Any = None
        self._last_log = float("-inf")
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._main = self._loop.create_task(self._serve())
        self._thread = threading.Thread(target=self._run, name="plowline-nats")
        self._thread.daemon = True
        self._thread.start()

    @property
    def streaming(self) -> bool:
        """Whether records go to the stream directly (else to the spool)."""
        return self._streaming

    # --- on the application's event loop ---

    def write(self, record: RawRecord) -> Awaitable[None] | None:
        return self.store(encode_record(record), record.id)

    def store(self, line: bytes, record_id: str) -> Awaitable[None] | None:
        with self._lock:
            if not self._streaming:
                return self.spool.write_line(line)
        return self._publish_or_spool(line, record_id)

    async def _publish_or_spool(self, line: bytes, record_id: str) -> None:
        published = asyncio.run_coroutine_threadsafe(
            self._publish(line[:-1], record_id), self._loop
        )
        try:
            await asyncio.wrap_future(published)
            return
        except self._failures as exc:
            reason = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._stop_streaming(f"a publish failed ({reason})")
            pending = self.spool.write_line(line)
        self._loop.call_soon_threadsafe(self._wake.set)
        if pending is not None:
            await pending

    def close(self) -> None:
        """Stop forwarding and close the connection and the spool.

        What is still in the spool is forwarded by the next collector started on
        the same folder.
        """
        self._stopping = True
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._main.cancel)
            self._thread.join(timeout=15)
        self.spool.close()

    # --- on the sink's own thread ---

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._main)
        self._loop.close()

    async def _serve(self) -> None:
        try:
            await self._connect_and_forward()
        except asyncio.CancelledError:
            pass  # close() asked
        except Exception:
            # A thread must not die silently: records keep going to the spool.
            logger.exception(
                "The NATS sink stopped; records stay in the spool in %s",
                self.raw_dir,
            )
        finally:
            if self._nc is not None:
                with contextlib.suppress(*self._failures):
                    await asyncio.wait_for(self._nc.close(), timeout=5)

    async def _connect_and_forward(self) -> None:
        nats = self._nats
        self._nc = await nats.connect(
            self.settings.url,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=self.settings.retry_seconds,
            connect_timeout=max(1, round(self.settings.timeout_seconds)),
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            error_cb=self._on_error,
        )
        self._js = self._nc.jetstream(timeout=self.settings.timeout_seconds)
        logger.info("Connected to NATS at %s", self.settings.url)
        while not self._stopping:
            try:
                await self._forward_step()
            except self._failures as exc:
                self._report(f"The stream {self.settings.stream} is unavailable: {exc}")
                await self._sleep(self.settings.retry_seconds)

    async def _forward_step(self) -> None:
        if not self._nc.is_connected:
            await self._sleep(self.settings.retry_seconds)
            return
        if not self._stream_ready:
            await self._ensure_stream()
        for path in self._closed_spool_files():
            if self._stopping:
                return
            await self._forward_file(path)
        if self._settle():
            await self._sleep(1.0)

    def _settle(self) -> bool:
        """Stream directly once this worker's spool is empty; true when idle."""
        with self._lock:
            if self.spool.writer.is_open:
                # Closed now, so that the next step forwards it.
                self.spool.writer.rotate()
                return False
            if any(self._own in path.name for path in self._closed_spool_files()):
                return False
            if not self._streaming and self._nc.is_connected:
                self._streaming = True
                logger.info(
                    "Streaming records to %s (subject %s)",
                    self.settings.stream,
                    self.settings.subject,
                )
        return True

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def _publish(self, payload: bytes, record_id: str | None) -> None:
        # Known limitation: a record sent again after the stream's duplicate
        # window has passed (a long outage, a crash mid-forwarding) is stored
        # twice; consumers drop the repeat by event id.
        if self._js is None or not self._nc.is_connected:
            raise StoreUnavailableError(
                f"Not connected to NATS at {self.settings.url}."
            )
        headers = {"Nats-Msg-Id": record_id} if record_id else None
        await self._js.publish(
            self.settings.subject,
            payload,
            timeout=self.settings.timeout_seconds,
            stream=self.settings.stream,
            headers=headers,
        )

    async def _ensure_stream(self) -> None:
        errors = self._nats.js.errors
        try:
            await self._js.stream_info(self.settings.stream)
        except errors.NotFoundError:
            from nats.js.api import StorageType

            with contextlib.suppress(errors.BadRequestError):  # made meanwhile
                await self._js.add_stream(
                    name=self.settings.stream,
                    subjects=[self.settings.subject],
                    storage=StorageType.FILE,
                    duplicate_window=DUPLICATE_WINDOW_SECONDS,
                )
                logger.info(
                    "Created the JetStream stream %s for subject %s",
                    self.settings.stream,
                    self.settings.subject,
                )
        self._stream_ready = True

    def _closed_spool_files(self) -> list[Path]:
        names = sorted(os.listdir(self.raw_dir))
        return [
            self.raw_dir / n
            for n in names
            if n.endswith(".jsonl") and not n.startswith(".")
        ]

    async def _forward_file(self, path: Path) -> None:
        # Known limitation: records are forwarded one publish at a time, to keep
        # their order simple to reason about; a large backlog drains at one
        # round trip per record (thousands a second on a local server).
        fd = _claim(path)
        if fd is None:
            return  # another worker forwards it, or it is gone
        try:
            progress = path.with_name(f".{path.name}.progress")
            offset = _read_progress(progress)
            size = os.fstat(fd).st_size
            sent = 0
            while offset < size and not self._stopping:
                chunk = _whole_lines(fd, offset, size)
                if not chunk:
                    break
                for line in chunk.split(b"\n")[:-1]:
                    if line.strip():
                        await self._publish(line, _record_id(line))
                        sent += 1
                offset += len(chunk)
                _write_progress(progress, offset)
            if offset >= size:
                os.rename(path, path.with_name(path.name + FORWARDED_SUFFIX))
                progress.unlink(missing_ok=True)
                logger.info("Forwarded %d spooled records from %s", sent, path.name)
        finally:
            os.close(fd)

    async def _on_disconnected(self) -> None:
        with self._lock:
            self._stop_streaming(f"the connection to {self.settings.url} was lost")

    async def _on_reconnected(self) -> None:
        self._stream_ready = False
        logger.info("Reconnected to NATS at %s", self.settings.url)
        self._wake.set()

    async def _on_error(self, exc: Exception) -> None:
        self._report(f"NATS connection error at {self.settings.url}: {exc!r}")

    def _stop_streaming(self, reason: str) -> None:
        # Called with the lock held.
        if self._streaming:
            self._streaming = False
            logger.warning(
                "Records go to the local spool in %s: %s. They are forwarded to "
                "the stream once it is back.",
                self.raw_dir,
                reason,
            )

    def _report(self, message: str) -> None:
        # One line per interval: an outage must not flood the log.
        now = time.monotonic()
        if now - self._last_log >= _LOG_INTERVAL:
            self._last_log = now
            logger.warning("%s", message)


def _claim(path: Path) -> int | None:
    """An open descriptor holding the forwarding lock of ``path``, or ``None``."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Renamed by the worker that held the lock before us?
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    os.close(fd)
    return None


def _whole_lines(fd: int, offset: int, size: int) -> bytes:
    chunk = os.pread(fd, min(_READ_CHUNK, size - offset), offset)
    end = chunk.rfind(b"\n") + 1
    if end == 0 and offset + len(chunk) < size:
        # A record longer than the chunk: read on to its newline.
        chunk = os.pread(fd, size - offset, offset)
        end = chunk.rfind(b"\n") + 1
    return chunk[:end]


def _record_id(line: bytes) -> str | None:
    try:
        value = orjson.loads(line).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _read_progress(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _write_progress(path: Path, offset: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{offset}\n")
    os.replace(temporary, path)
