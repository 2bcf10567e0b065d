"""Running the collector: its own HTTP server, one sink per worker process.

``serve`` binds the listening socket, then runs the collector's HTTP server
(:mod:`plowline.collector.http1`) in this process, or with ``workers`` above 1
in that many child processes sharing the socket, which it restarts if they die.
Each worker builds its own application, so it opens its own raw-log files (the
pid is in the file name) and its own stream connection. Before it writes, a
worker closes the raw logs of collector processes that are gone
(:mod:`plowline.rawlog.recovery`).

The application is plain ASGI: ``create_app`` builds it from
``PLOWLINE_COLLECTOR_*`` variables for another ASGI server, e.g.::

    granian --interface asgi --factory plowline.collector.server:create_app
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from granian.constants import Loops

from plowline.collector.app import DRAIN_SECONDS, CollectorApp
from plowline.collector.config import CollectorConfig
from plowline.collector.http1 import DEFAULT_HEAD_LIMIT, ServerState
from plowline.collector.nats_sink import import_nats
from plowline.collector.sinks import build_sink
from plowline.errors import ConfigurationError
from plowline.rawlog.recovery import recover_raw_dir

logger = logging.getLogger(__name__)

APP_FACTORY = "plowline.collector.server:create_app"
# Connections waiting to be accepted, per listening socket.
BACKLOG = 2048
# A worker that dies this often within CRASH_WINDOW seconds is not restarted:
# the collector stops with exit code 1.
CRASH_LIMIT = 5
CRASH_WINDOW = 60.0
# How long a stopping worker waits for its connections' requests to finish.
STOP_SECONDS = DRAIN_SECONDS
_PR_SET_PDEATHSIG = 1


def build_app(config: CollectorConfig) -> CollectorApp:
    """The collector application with a sink of its own (``config.sink``)."""
    if config.sink != "stdout":
        try:
            recover_raw_dir(config.raw_dir)
        except OSError as exc:
            # Collecting goes on: the files stay as they are for the next start.
            logger.error("Could not close the raw logs of stopped collectors: %s", exc)
    return CollectorApp(config, build_sink(config))


def create_app() -> CollectorApp:
    """The application configured from ``PLOWLINE_COLLECTOR_*`` variables."""
    return build_app(CollectorConfig.from_env())


def serve(config: CollectorConfig) -> None:
    """Serve until SIGTERM or SIGINT, then let requests finish and return.

    Raise :class:`ConfigurationError` when the raw-log folder cannot be created
    or the address cannot be listened on. Exits the process with code 1 when
    workers keep dying (``CRASH_LIMIT`` times within ``CRASH_WINDOW`` seconds)
    or a worker could not stop cleanly.
    """
    if config.sink != "stdout":  # the raw log, or the stream's local spool
        config = replace(config, raw_dir=_prepare_raw_dir(config))
    if config.sink == "nats":
        import_nats()  # a missing package is one clear error, not dead workers
    listener = listen(config.host, config.port)
    try:
        _announce(config, listener)
        if config.workers == 1:
            code = run_worker(config, listener)
        else:
            code = _Supervisor(config, listener).run()
    finally:
        listener.close()
    logger.info("Plowline collector stopped")
    if code:
        sys.exit(code)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; ConfigurationError naming why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigurationError(f"Cannot listen on {host!r}: {exc.strerror}.") from exc
    family, kind, proto, _, address = infos[0]
    listener = socket.socket(family, kind, proto)
    try:
        # Lets a restarted collector bind past connections in TIME_WAIT; unlike
        # SO_REUSEPORT it still refuses a port another process listens on.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(address)
        listener.listen(BACKLOG)
    except OSError as exc:
        listener.close()
        raise ConfigurationError(
            f"Cannot listen on {host}:{port}: {exc.strerror}. Is another process "
            "(perhaps another Plowline) using the port? Pass another --port."
        ) from exc
    listener.setblocking(False)
    return listener


def run_worker(config: CollectorConfig, listener: socket.socket) -> int:
    """Serve on ``listener`` in this process until SIGTERM or SIGINT.

    Returns the exit code: 0 after a clean stop.
    """
    runner: Any
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    try:
        result: int = runner(_serve_worker(config, listener))
    except KeyboardInterrupt:
        return 0
    return result


async def _serve_worker(config: CollectorConfig, listener: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = build_app(config)
    lifespan = _Lifespan(app)
    await lifespan.startup()
    head_limit = max(
        DEFAULT_HEAD_LIMIT, 2 * (config.max_querystring_bytes + config.max_header_bytes)
    )
    state = ServerState(app, loop, head_limit=head_limit)
    server = await loop.create_server(state.protocol, sock=listener, backlog=BACKLOG)
    logger.debug("Collector worker %d serving", os.getpid())
    await stop.wait()

    # Stop: no new connections; idle ones closed; the rest after their answer.
    server.close()
    state.stop_accepting()
    deadline = loop.time() + STOP_SECONDS
    while state.connections and loop.time() < deadline:
        await asyncio.sleep(0.01)
    if state.connections:
        logger.warning(
            "Closing %d connection(s) still busy after %.0f s",
            len(state.connections),
            STOP_SECONDS,
        )
    state.close()
    ok = await lifespan.shutdown()
    return 0 if ok else 1


class _Lifespan:
    """The application's ASGI lifespan: start-up now, shutdown at the end."""

    def __init__(self, app: CollectorApp) -> None:
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        self._task = asyncio.ensure_future(
            app(scope, self._to_app.get, self._from_app.put)  # type: ignore[arg-type]
        )

    async def startup(self) -> None:
        if not await self._step("lifespan.startup"):
            raise RuntimeError("The collector application failed to start.")

    async def shutdown(self) -> bool:
        ok = await self._step("lifespan.shutdown")
        if not self._task.done():
            await asyncio.wait([self._task], timeout=STOP_SECONDS)
        return ok

    async def _step(self, message: str) -> bool:
        await self._to_app.put({"type": message})
        reply = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait([reply, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not reply.done():
            reply.cancel()
            error = self._task.exception() if not self._task.cancelled() else None
            logger.error("The collector's %s failed", message, exc_info=error)
            return False
        answer: str = reply.result()["type"]
        return answer == message + ".complete"


class _Supervisor:
    """Worker processes sharing one listening socket, restarted if they die."""

    def __init__(self, config: CollectorConfig, listener: socket.socket) -> None:
        self.config = config
        self.listener = listener
        self.context = multiprocessing.get_context("fork")
        self.workers: dict[int, multiprocessing.process.BaseProcess] = {}
        self.stopping = False
        self.failed = False
        self.deaths: list[float] = []

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._request_stop)
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for _ in range(self.config.workers):
                self._spawn()
            while self.workers:
                sentinels = {w.sentinel: pid for pid, w in self.workers.items()}
                for ready in multiprocessing.connection.wait(list(sentinels), 1.0):
                    assert isinstance(ready, int)
                    self._reap(sentinels[ready])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.failed else 0

    def _spawn(self) -> None:
        process = self.context.Process(
            target=_worker_process,
            args=(self.config, self.listener),
            name="plowline-collector-worker",
            daemon=False,
        )
        process.start()
        assert process.pid is not None
        self.workers[process.pid] = process

    def _reap(self, pid: int) -> None:
        process = self.workers.pop(pid)
        process.join()
        code = process.exitcode
        if self.stopping:
            if code != 0:
                logger.error("Collector worker %d stopped with exit code %s", pid, code)
                self.failed = True
            return
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < CRASH_WINDOW] + [now]
        if len(self.deaths) >= CRASH_LIMIT:
            logger.error(
                "Collector worker %d died (exit code %s), the %d-th within %.0f s: "
                "stopping the collector",
                pid,
                code,
                len(self.deaths),
                CRASH_WINDOW,
            )
            self.failed = True
            self._request_stop(signal.SIGTERM, None)
            return
        logger.error(
            "Collector worker %d died (exit code %s); starting another", pid, code
        )
        self._spawn()

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for pid, process in self.workers.items():
            if process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)


def _worker_process(config: CollectorConfig, listener: socket.socket) -> None:
    # Told to stop if the supervisor is killed, so no worker outlives it.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    sys.exit(run_worker(config, listener))


def event_loop() -> Loops:
    """uvloop when it is installed, else asyncio's own loop.

    Measured on the pixel request (docs/benchmarks.md), uvloop took a tenth to
    a quarter off the server's CPU time per request; granian's ``auto`` would
    prefer rloop, which did not beat uvloop there.
    """
    if importlib.util.find_spec("uvloop") is not None:
        return Loops.uvloop
    return Loops.asyncio


def _prepare_raw_dir(config: CollectorConfig) -> Path:
    # Checked here, before any worker starts, so that a bad folder is one clear
    # error rather than a worker that dies at start-up.
    raw_dir = config.raw_dir.resolve()
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot create the raw-log folder {str(raw_dir)!r}: {exc.strerror}. "
            "Pass another --raw-dir or fix its permissions."
        ) from exc
    return raw_dir


def check_address_free(host: str, port: int) -> None:
    """Refuse an address another process listens on.

    granian binds with SO_REUSEPORT, so a second collector on a busy port would
    start and silently share its traffic with the first. A probe bind without
    SO_REUSEPORT fails when anything listens there.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigurationError(f"Cannot listen on {host!r}: {exc.strerror}.") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # SO_REUSEADDR only lets the probe past connections still in TIME_WAIT.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot listen on {host}:{port}: {exc.strerror}. Is another "
                "process (perhaps another Plowline) using the port? Pass another "
                "--port."
            ) from exc


def _announce(config: CollectorConfig, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    if config.sink == "stdout":
        logger.info("Plowline collector listening on http://%s:%s", config.host, port)
    else:
        logger.info(
            "Plowline collector listening on http://%s:%s, raw log in %s",
            config.host,
            port,
            config.raw_dir,
        )
    if config.workers > 1:
        logger.info("%d worker processes", config.workers)
    if config.sink == "nats":
        logger.info(
            "Records go to the NATS stream %s (subject %s) at %s, durability %s",
            config.nats_stream,
            config.nats_subject,
            config.nats_url,
            config.durability,
        )
    elif config.sink == "stdout":
        logger.info("Records go to standard output, one line each")
    elif config.durability != "os":
        logger.info("Records are acknowledged once synced to disk (fsync)")


def wait_until_ready(url: str, *, timeout: float = 10.0) -> None:
    """Block until ``GET {url}/health`` answers 200; raise TimeoutError if not.

    ``url`` is the collector's base address, e.g. ``http://127.0.0.1:8080``.
    """
    # No proxies: a readiness check must reach the collector itself.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(url.rstrip("/") + "/health", timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"The collector at {url} was not ready in {timeout} s.")
        time.sleep(0.05)
