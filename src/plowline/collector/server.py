"""Running the collector under granian, one sink per worker process.

granian starts its workers as separate processes and builds the application in
each of them, so each worker opens its own raw-log files (the pid is in the file
name) and its own stream connection. Before it writes, a worker closes the raw
logs of collector processes that are gone (:mod:`plowline.rawlog.recovery`).
``serve`` hands the configuration to the workers directly; ``create_app`` reads
it from ``PLOWLINE_COLLECTOR_*`` variables for use with granian's own command
line::

    granian --interface asgi --factory plowline.collector.server:create_app
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import time
import urllib.error
import urllib.request
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from granian import Granian
from granian.constants import Interfaces, Loops
from granian.log import LogLevels

from plowline.collector.app import CollectorApp
from plowline.collector.config import CollectorConfig
from plowline.collector.nats_sink import import_nats
from plowline.collector.sinks import build_sink
from plowline.errors import ConfigurationError
from plowline.rawlog.recovery import recover_raw_dir

logger = logging.getLogger(__name__)

APP_FACTORY = "plowline.collector.server:create_app"


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
    or the address cannot be listened on. Exits the process with code 1 (through
    granian) when a worker dies.
    """
    config = replace(config, raw_dir=_prepare_raw_dir(config))
    check_address_free(config.host, config.port)
    if config.sink == "nats":
        import_nats()  # a missing package is one clear error, not dead workers
    # Known limitation: granian answers 400 itself, before the application
    # sees the request, to a request target holding raw bytes that are not
    # UTF-8 or header values with control characters; such requests are not
    # recorded. Percent-encoded bytes (%ff) are accepted and kept.
    server = Granian(
        APP_FACTORY,
        address=config.host,
        port=config.port,
        interface=Interfaces.ASGI,
        workers=config.workers,
        loop=event_loop(),
        websockets=False,
        log_level=_granian_log_level(),
        log_dictconfig=_granian_log_config(config),
    )
    listening: list[bool] = []
    server.on_startup(partial(_announce, config, listening))
    try:
        # The loader runs inside each worker; passing the config this way
        # leaves the caller's environment alone.
        server.serve(target_loader=partial(build_app, config), wrap_loader=False)
        logger.info("Plowline collector stopped")
    except RuntimeError as exc:
        if listening:
            raise
        # granian reports a failed bind as a RuntimeError with a Rust trace.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigurationError(
            f"Cannot listen on {config.host}:{config.port}: {reason}. Is another "
            "process using the port?"
        ) from None


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


def _granian_log_config(config: CollectorConfig) -> dict[str, Any] | None:
    # granian logs to standard output, which the stdout sink keeps for records.
    if config.sink != "stdout":
        return None
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {
        "handlers": {
            "console": {**handler, "formatter": "generic"},
            "access": {**handler, "formatter": "access"},
        }
    }


def _granian_log_level() -> LogLevels:
    # granian's own lines (workers spawned, shutting down) only with -v.
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return LogLevels.info
    return LogLevels.warning


def _announce(config: CollectorConfig, listening: list[bool]) -> None:
    # Runs once the socket is bound: from here connections queue for a worker.
    listening.append(True)
    logger.info(
        "Plowline collector listening on http://%s:%s, raw log in %s",
        config.host,
        config.port,
        config.raw_dir,
    )
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
