"""``plowline enrich --from-nats``: raw records from a NATS JetStream stream in,
enriched TSV and failed-event JSON lines appended to files.

The stream is the one the collector's NATS sink publishes to, one raw-log line
per message. A durable pull consumer keeps the position on the server, so a
restart goes on where the last run stopped. Each batch is enriched, written,
flushed and synced, and only then acknowledged: a crash loses nothing, and at
worst a batch is delivered again and its events written twice (loaders remove
duplicates by event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from plowline.enrich.pipeline import (
    Enricher,
    EnrichStats,
    output_line,
    require_pii_output,
)
from plowline.errors import ConfigurationError, StoreUnavailableError

logger = logging.getLogger(__name__)

DEFAULT_DURABLE = "plowline-enrich"
CONNECT_SECONDS = 10.0
FETCH_SECONDS = 1.0
# How long a delivered message may stay unacknowledged before it is sent again.
ACK_WAIT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class StreamSource:
    """A JetStream stream to read, through the durable consumer ``durable``."""

    url: str
    stream: str
    durable: str = DEFAULT_DURABLE
    batch: int = 500


@contextmanager
def _appending(path: str | None) -> Iterator[BinaryIO]:
    # Appended to, not replaced: a consumer that restarts goes on writing.
    if path is None:  # an output nobody asked for
        with open(os.devnull, "ab") as nowhere:
            yield nowhere
        return
    if path == "-":
        yield sys.stdout.buffer
        return
    with open(path, "ab") as handle:
        yield handle


def _persist(handle: BinaryIO) -> None:
    handle.flush()
    # Standard output and the sink of an output nobody asked for cannot sync.
    if handle is not sys.stdout.buffer and handle.name != os.devnull:
        os.fsync(handle.fileno())


def enrich_stream(
    source: StreamSource,
    good: str,
    bad: str,
    *,
    enricher: Enricher | None = None,
    until_idle: bool = False,
    pii: str | None = None,
) -> EnrichStats:
    """Enrich what the stream holds and receives, until SIGTERM or SIGINT (or,
    with ``until_idle``, until the consumer has nothing left to read)."""
    from plowline.collector.nats_sink import import_nats

    nats = import_nats()
    enricher = enricher or Enricher()
    require_pii_output(enricher, pii)
    reader = _StreamEnricher(nats, source, enricher)
    with (
        _appending(good) as good_out,
        _appending(bad) as bad_out,
        _appending(pii) as pii_out,
    ):
        outputs = {"good": good_out, "bad": bad_out, "pii": pii_out}
        asyncio.run(reader.run(outputs, until_idle=until_idle))
    logger.info(
        "Read %d raw records from %s: %d enriched events, %d failed events",
        reader.stats.lines,
        source.stream,
        reader.stats.enriched,
        reader.stats.failed,
    )
    return reader.stats


class _StreamEnricher:
    def __init__(self, nats: Any, source: StreamSource, enricher: Enricher) -> None:
        self.nats = nats
        self.source = source
        self.enricher = enricher
        self.stats = EnrichStats()
        self.stop = asyncio.Event()

    async def run(self, outputs: dict[str, BinaryIO], *, until_idle: bool) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError, NotImplementedError):
                loop.add_signal_handler(signum, self.stop.set)
        connection = await self._connect()
        try:
            subscription = await self._subscribe(connection.jetstream())
            while not self.stop.is_set():
                messages = await self._fetch(subscription)
                if messages:
                    self._write(messages, outputs)
                    for message in messages:
                        await message.ack()
                    await connection.flush()
                elif until_idle and await self._drained(subscription):
                    return
        finally:
            with contextlib.suppress(self.nats.errors.Error, asyncio.TimeoutError):
                await asyncio.wait_for(connection.close(), timeout=5)

    async def _connect(self) -> Any:
        try:
            return await asyncio.wait_for(
                self.nats.connect(
                    self.source.url,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                ),
                timeout=CONNECT_SECONDS,
            )
        except (TimeoutError, OSError, self.nats.errors.Error) as exc:
            raise StoreUnavailableError(
                f"Cannot reach NATS at {self.source.url} ({exc!r}); is the server "
                "running?"
            ) from exc

    async def _subscribe(self, js: Any) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        errors = self.nats.js.errors
        try:
            await js.stream_info(self.source.stream)
        except errors.NotFoundError:
            raise ConfigurationError(
                f"The NATS stream {self.source.stream!r} does not exist at "
                f"{self.source.url}; start the collector with --sink nats first, "
                "or pass the stream it writes to."
            ) from None
        config = ConsumerConfig(
            durable_name=self.source.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ACK_WAIT_SECONDS,
        )
        with contextlib.suppress(errors.BadRequestError):  # it exists already
            await js.add_consumer(self.source.stream, config)
        return await js.pull_subscribe_bind(
            consumer=self.source.durable, stream=self.source.stream
        )

    async def _fetch(self, subscription: Any) -> list[Any]:
        try:
            messages: list[Any] = await subscription.fetch(
                self.source.batch, timeout=FETCH_SECONDS
            )
        except self.nats.errors.TimeoutError:
            return []
        return messages

    async def _drained(self, subscription: Any) -> bool:
        info = await subscription.consumer_info()
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    def _write(self, messages: list[Any], outputs: dict[str, BinaryIO]) -> None:
        for message in messages:
            sequence = message.metadata.sequence.stream
            outcomes = self.enricher.enrich_line(
                message.data, source=f"nats:{self.source.stream}#{sequence}"
            )
            self.stats.lines += 1
            for outcome in outcomes:
                self.stats.add(outcome)
                stream, text = output_line(outcome)
                outputs[stream].write(text + b"\n")
        for handle in outputs.values():
            _persist(handle)
