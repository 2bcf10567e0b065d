"""``plowline up``: the collector, live enrichment and loading into DuckDB.

The collector runs as a child process (with its workers) and writes the
raw log. This process follows the raw log, enriches new records and loads them
into DuckDB in one transaction together with the raw-log offsets they came from,
so a restart neither loses nor repeats a record. Because DuckDB lets only one
process open a database for writing, this process also answers live queries on
a Unix socket next to the database (see :mod:`plowline.storage.query`).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import duckdb

from plowline.collector.server import check_address_free, wait_until_ready
from plowline.enrich.failed import generic_error
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.enrich.settings import EnrichSettings
from plowline.errors import (
    BadInputError,
    ConfigurationError,
    PlowlineError,
    StoreUnavailableError,
)
from plowline.rawlog.follow import Batch, RawLogFollower
from plowline.storage import duckdb as store
from plowline.storage.query import QueryServer, socket_path_for

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
RETRY_SECONDS = 5.0
HEALTH_POLL_SECONDS = 0.5

# Not "plowline": the default database file plowline.duckdb is a catalog of that name.
OFFSETS_DDL = """
CREATE SCHEMA IF NOT EXISTS plowline_meta;
CREATE TABLE IF NOT EXISTS plowline_meta.raw_offsets (
    raw_file VARCHAR PRIMARY KEY,
    byte_offset BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
"""


@dataclass(frozen=True, slots=True)
class UpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("plowline-data")
    duckdb_path: Path = Path("plowline.duckdb")
    workers: int = 1
    enrich: EnrichSettings = field(default_factory=EnrichSettings)
    # Update the analytics models (plowline models) this often while new events
    # arrive, and once at the stop; 0 never.
    models_seconds: float = 60.0
    # The dashboard (plowline dashboard) on 127.0.0.1 at this port; 0 none.
    dashboard_port: int = 0
    poll_seconds: float = 0.5
    startup_timeout: float = 30.0

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"


class LiveLoader:
    """Moves new raw records into DuckDB: follow, enrich, load, remember offsets."""

    def __init__(
        self,
        conn: duckdb.DuckDBPyConnection,
        raw_dir: Path,
        enricher: Enricher | None = None,
    ) -> None:
        self.conn = conn
        self.enricher = enricher or Enricher()
        conn.execute(OFFSETS_DDL)
        offsets = dict(
            conn.execute(
                "SELECT raw_file, byte_offset FROM plowline_meta.raw_offsets"
            ).fetchall()
        )
        self.follower = RawLogFollower(raw_dir, offsets)
        self.events_loaded = 0
        self.failed_loaded = 0

    def step(self) -> int:
        """Load what is new; return the number of raw records taken."""
        batch = self.follower.poll()
        if not batch:
            return 0
        rows, failed = self._enrich(batch)
        while True:
            try:
                self._load(rows, failed, batch)
                break
            except BadInputError as exc:
                # A row the store refuses must not block every later event: it
                # becomes a failed event with the store's reason, and the rest loads.
                if exc.line is None or not 1 <= exc.line <= len(rows):
                    raise
                row = rows.pop(exc.line - 1)
                logger.warning("DuckDB refused an enriched event: %s", exc)
                failure = generic_error(
                    [f"DuckDB refused the enriched event: {exc}"],
                    "\t".join(row),
                    now_ms=self.enricher.now_ms(),
                )
                failed.append(failure.to_json())
        self.follower.commit(batch)
        self.events_loaded += len(rows)
        self.failed_loaded += len(failed)
        logger.info(
            "Loaded %d events and %d failed events from %d raw records",
            len(rows),
            len(failed),
            len(batch),
        )
        return len(batch)

    def _load(self, rows: list[list[str]], failed: list[bytes], batch: Batch) -> None:
        """Events, failed events and the new offsets, in one transaction.

        Raises BadInputError for a row the store refuses (its ``line`` is the row
        number) and StoreUnavailableError when the store cannot write now.
        """
        stage = "events"
        self.conn.begin()
        try:
            store.load_rows(
                self.conn, rows, transaction=False, resolver=self.enricher.resolver
            )
            stage = "failed events"
            store.load_failed(self.conn, failed, transaction=False)
            self.conn.executemany(
                "INSERT OR REPLACE INTO plowline_meta.raw_offsets "
                "(raw_file, byte_offset, updated_at) VALUES (?, ?, current_timestamp)",
                list(batch.offsets.items()),
            )
            stage = "commit"
            self.conn.commit()
        except BaseException as exc:
            # After a failed commit DuckDB has no transaction left to roll back.
            with suppress(duckdb.Error):
                self.conn.rollback()
            if isinstance(exc, BadInputError) and stage == "failed events":
                # Its line number counts failed events, not rows.
                raise PlowlineError(f"Could not load failed events: {exc}") from exc
            if isinstance(exc, duckdb.Error):
                raise StoreUnavailableError(
                    f"DuckDB could not store the batch ({exc}); its raw records "
                    "stay in the raw log and are loaded again later."
                ) from exc
            raise

    def _enrich(self, batch: Batch) -> tuple[list[list[str]], list[bytes]]:
        rows: list[list[str]] = []
        failed: list[bytes] = []
        for name, offset, line in batch.lines:
            for outcome in self.enricher.enrich_line(line, source=f"{name}@{offset}"):
                if isinstance(outcome, EnrichedEvent):
                    rows.append(outcome.to_row())
                else:
                    failed.append(outcome.to_json())
        return rows, failed

    def drain(self) -> None:
        while self.step():
            pass


class Stopper:
    """Turns SIGTERM and SIGINT into a flag the main loop checks."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        logger.info("Received %s: stopping", signal.Signals(signum).name)
        self.event.set()


def start_collector(config: UpConfig) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "plowline",
        "collector",
        "--host",
        config.host,
        "--port",
        str(config.port),
        "--raw-dir",
        str(config.raw_dir),
        "--workers",
        str(config.workers),
    ]
    # Its own process group: a Ctrl-C in the terminal reaches only this process,
    # which then stops the collector first and loads what it received. If this
    # process dies without stopping it, the kernel stops it (parent-death signal).
    return subprocess.Popen(
        command, start_new_session=True, preexec_fn=_stop_with_parent
    )


DASHBOARD_HOST = "127.0.0.1"


def start_dashboard(config: UpConfig) -> subprocess.Popen[bytes] | None:
    """``plowline dashboard`` on this DuckDB file as a child process, on
    loopback only; None when turned off or when its port is taken (``up``
    goes on without it: collecting matters more)."""
    if not config.dashboard_port:
        return None
    try:
        check_address_free(DASHBOARD_HOST, config.dashboard_port)
    except ConfigurationError as exc:
        logger.warning("Running without the dashboard: %s", exc)
        return None
    command = [
        sys.executable,
        "-m",
        "plowline",
        "dashboard",
        "--duckdb",
        str(config.duckdb_path),
        "--host",
        DASHBOARD_HOST,
        "--port",
        str(config.dashboard_port),
    ]
    return subprocess.Popen(
        command, start_new_session=True, preexec_fn=_stop_with_parent
    )


def dashboard_url(config: UpConfig) -> str:
    return f"http://{DASHBOARD_HOST}:{config.dashboard_port}/"


def stop_dashboard(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        logger.error("The dashboard did not stop within 10 s; killing it")
        process.kill()
        process.wait()


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux
    return prctl


_PRCTL = _load_prctl()


def _stop_with_parent() -> None:
    # Runs in the child between fork and exec: only the system call itself.
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_until_healthy(config: UpConfig, process: subprocess.Popen[bytes]) -> None:
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    if ":" in host:
        host = f"[{host}]"
    base = f"http://{host}:{config.port}"
    deadline = time.monotonic() + config.startup_timeout
    while process.poll() is None:
        try:
            wait_until_ready(base, timeout=HEALTH_POLL_SECONDS)
            return
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise ConfigurationError(
                    f"The collector did not answer {base}/health within "
                    f"{config.startup_timeout:.0f} s."
                ) from None
    raise ConfigurationError(
        f"The collector exited with code {process.returncode} while "
        f"starting on {config.host}:{config.port}; is the port in use?"
    )


def stop_collector(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            logger.error("The collector did not stop within 30 s; killing it")
            process.kill()
            process.wait()
    if process.returncode not in (0, -signal.SIGTERM):
        logger.warning("The collector exited with code %s", process.returncode)


def banner(config: UpConfig, *, dashboard: bool = False) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    base = f"http://{host}:{config.port}"
    return (
        "Plowline is up.\n"
        f"  Send events to  {base}  (pixel GET {base}/i, "
        f"batches POST {base}/com.snowplowanalytics.snowplow/tp2)\n"
        f"  Raw log         {config.raw_dir}\n"
        f"  Events          {config.duckdb_path}  "
        "(tables atomic.events and atomic.failed_events)\n"
        "  Query live      plowline query "
        f'--duckdb {config.duckdb_path} "select count(*) from atomic.events"\n'
        + (f"  Dashboard       {dashboard_url(config)}\n" if dashboard else "")
        + "Stop with Ctrl-C; everything received is loaded before it exits."
    )


class _ModelUpdater:
    """Keeps the analytics models (``derived.*``) current while ``up`` owns the
    DuckDB file, where ``plowline models`` cannot open it: an update when
    events were loaded and ``every`` seconds have passed since the last one."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, every: float) -> None:
        self.conn = conn
        self.every = every
        self.pending = False
        self.last = time.monotonic()

    def update_if_due(self, *, force: bool = False) -> None:
        if self.every <= 0 or not self.pending:
            return
        if not force and time.monotonic() - self.last < self.every:
            return
        from plowline.analytics.models import build_models
        from plowline.analytics.warehouse import Warehouse

        self.last = time.monotonic()
        self.pending = False
        try:
            # It logs what it did ("Models updated: ...").
            build_models(Warehouse(self.conn, "duckdb"))
        except Exception:  # the models must never take loading down with them
            logger.exception("Updating the analytics models failed; retrying later")
            self.pending = True


def run_up(config: UpConfig, *, announce: bool = True) -> int:
    """Run until SIGTERM or SIGINT, then stop the collector and load the rest.

    Returns the exit code: 0 after a requested stop, 1 if the collector died."""
    stopper = Stopper()
    stopper.install()
    # Checked before anything is created, so a busy port leaves no files behind.
    check_address_free(config.host, config.port)
    if config.dashboard_port == config.port:
        raise ConfigurationError(
            f"The dashboard and the collector cannot share port {config.port}: "
            "pass another --dashboard-port (0 for no dashboard)."
        )
    enricher = config.enrich.build()  # a configuration error stops us here
    if enricher.emits_pii_events:
        raise ConfigurationError(
            "The PII enrichment has emitEvent on, and plowline up has no output "
            "for those events (they hold the original values): set emitEvent to "
            "false here, or run plowline enrich with --pii FILE."
        )
    config.raw_dir.mkdir(parents=True, exist_ok=True)
    conn = store.connect(config.duckdb_path)
    store.ensure_schema(conn)
    loader = LiveLoader(conn, config.raw_dir, enricher)
    loader.drain()
    # The collector starts before the query server's thread: forking a process
    # that has threads is best avoided.
    collector = start_collector(config)
    dashboard = start_dashboard(config)
    server = QueryServer(conn, socket_path_for(config.duckdb_path))
    models = _ModelUpdater(conn, config.models_seconds)
    code = 0
    try:
        server.start()
        wait_until_healthy(config, collector)
        if announce:
            print(banner(config, dashboard=dashboard is not None), flush=True)
        while not stopper.event.is_set():
            if collector.poll() is not None:
                logger.error(
                    "The collector stopped unexpectedly (exit code %s)",
                    collector.returncode,
                )
                code = 1
                break
            if dashboard is not None and dashboard.poll() is not None:
                logger.warning(
                    "The dashboard stopped (exit code %s); collecting goes on",
                    dashboard.returncode,
                )
                dashboard = None
            try:
                if loader.step():
                    models.pending = True
                    continue
            except StoreUnavailableError as exc:
                logger.error("%s Retrying in %.0f s.", exc, RETRY_SECONDS)
                stopper.event.wait(RETRY_SECONDS)
                continue
            models.update_if_due()
            stopper.event.wait(config.poll_seconds)
    finally:
        stop_dashboard(dashboard)
        stop_collector(collector)
        try:
            loader.drain()
            models.pending = True
            models.update_if_due(force=True)
        except StoreUnavailableError as exc:
            logger.error("%s Stopping with records still to load.", exc)
            code = 1
        server.stop()
        conn.close()
    logger.info(
        "Stopped: %d events and %d failed events loaded in this run",
        loader.events_loaded,
        loader.failed_loaded,
    )
    return code
