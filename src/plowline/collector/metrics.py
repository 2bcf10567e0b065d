"""The collector's counters, exported for Prometheus on ``/metrics``.

Counting happens on the request path, so the counters are plain integers of
one worker process: a worker runs the application on a single event loop, so no
lock is needed, and prometheus-client is only asked to write the exposition
text when a scrape comes.

Every worker is a process of its own. With a shared folder
(``metrics_dir``) each worker writes its totals to a file of its own there, at
most once a second and only after it counted something, and a scrape adds up
every worker's file, so it sees the whole collector at most about a second late.
Without one, a scrape sees the counters of the worker that answered it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode("ascii")
# Path groups: a label per group keeps the number of series small and fixed.
GROUPS = ("pixel", "post", "redirect", "preflight", "health", "other")
PARTS = ("querystring", "headers", "body")
SHARE_INTERVAL = 1.0
_PREFIX = "plowline_collector"


class CollectorMetrics:
    """Counters of one worker; :meth:`render` exports them (and, with a shared
    folder, every other worker's)."""

    def __init__(self, share_dir: Path | None = None, *, worker: int = 0) -> None:
        """``worker`` names this worker's file; 0 means the process id."""
        self.requests: dict[tuple[str, int], int] = {}
        self.received = dict.fromkeys(PARTS, 0)
        self.records_written = 0
        self.write_errors = 0
        self.do_not_track = 0
        self._share_dir = share_dir
        self._own_file = (
            share_dir / f"worker-{worker or os.getpid()}.json"
            if share_dir is not None
            else None
        )
        self._share_pending: asyncio.TimerHandle | None = None
        self._share_failed = False

    def count(self, group: str, status: int) -> None:
        key = (group, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if self._own_file is not None and self._share_pending is None:
            self._share_pending = asyncio.get_running_loop().call_later(
                SHARE_INTERVAL, self.share
            )

    def snapshot(self) -> dict[str, Any]:
        """The totals as plain data (what a worker writes to its file)."""
        return {
            "requests": [[g, s, n] for (g, s), n in self.requests.items()],
            "received": dict(self.received),
            "records_written": self.records_written,
            "write_errors": self.write_errors,
            "do_not_track": self.do_not_track,
        }

    def share(self) -> None:
        """Write this worker's totals to its file in the shared folder, if any."""
        self._share_pending = None
        if self._own_file is None:
            return
        partial = self._own_file.with_suffix(".tmp")
        try:
            partial.write_bytes(orjson.dumps(self.snapshot()))
            # Renaming is atomic: a scrape reads the old file or the new one.
            partial.replace(self._own_file)
        except OSError as exc:
            if not self._share_failed:
                logger.warning("Cannot share collector metrics in %s: %s", partial, exc)
            self._share_failed = True
        else:
            self._share_failed = False

    def stop(self) -> None:
        """Cancel the pending write and write the final totals."""
        if self._share_pending is not None:
            self._share_pending.cancel()
        self.share()

    def render(self) -> bytes:
        """The exposition text for a scrape."""
        snapshots = [self.snapshot(), *self._other_workers()]
        return generate_latest(_Exporter(snapshots))

    def _other_workers(self) -> Iterator[dict[str, Any]]:
        if self._share_dir is None:
            return
        for path in sorted(self._share_dir.glob("worker-*.json")):
            if path == self._own_file:
                continue
            try:
                data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # a worker's file being replaced or removed
            if isinstance(data, dict):
                yield data


class _Exporter:
    """A prometheus-client collector over worker snapshots, summed."""

    def __init__(self, snapshots: list[dict[str, Any]]) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            f"{_PREFIX}_requests",
            "HTTP requests answered by the collector application, by path group "
            "and status.",
            labels=["group", "status"],
        )
        for (group, status), total in sorted(self._requests().items()):
            requests.add_metric([group, str(status)], total)
        yield requests

        received = CounterMetricFamily(
            f"{_PREFIX}_received_bytes",
            "Bytes of tracking requests received, by part of the request.",
            labels=["part"],
        )
        for part in PARTS:
            received.add_metric([part], self._total("received", part))
        yield received

        for key, text in (
            ("records_written", "Raw records written."),
            ("write_errors", "Raw records that could not be written (answered 503)."),
            ("do_not_track", "Tracking requests not recorded: do-not-track cookie."),
        ):
            family = CounterMetricFamily(f"{_PREFIX}_{key}", text)
            family.add_metric([], self._total(key))
            yield family

        workers = GaugeMetricFamily(
            f"{_PREFIX}_workers_reporting", "Worker processes counted in this scrape."
        )
        workers.add_metric([], len(self._snapshots))
        yield workers

    def _requests(self) -> dict[tuple[str, int], int]:
        totals: dict[tuple[str, int], int] = {}
        for snapshot in self._snapshots:
            for row in snapshot.get("requests", ()):
                try:
                    group, status, count = str(row[0]), int(row[1]), int(row[2])
                except (IndexError, TypeError, ValueError):
                    continue  # a file from another version of Plowline
                totals[(group, status)] = totals.get((group, status), 0) + count
        return totals

    def _total(self, key: str, part: str | None = None) -> int:
        total = 0
        for snapshot in self._snapshots:
            value = snapshot.get(key)
            if part is not None:
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, int):
                total += value
        return total
