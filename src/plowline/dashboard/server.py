"""Serving the dashboard with granian (``plowline dashboard``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels

from plowline.analytics.run import StoreKind
from plowline.collector.server import check_address_free, event_loop
from plowline.errors import ConfigurationError

if TYPE_CHECKING:
    from plowline.dashboard.app import SecurityHeaders

log = logging.getLogger(__name__)

DEFAULT_PORT = 8090


@dataclass(frozen=True)
class DashboardConfig:
    kind: StoreKind
    where: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def load_app(config: DashboardConfig) -> SecurityHeaders:
    from plowline.dashboard.app import build_app
    from plowline.dashboard.data import DashboardSource

    return build_app(DashboardSource(config.kind, config.where))


def serve(config: DashboardConfig) -> None:
    """Serve until SIGTERM or SIGINT. Raises ConfigurationError when the
    address cannot be listened on."""
    check_address_free(config.host, config.port)
    server = Granian(
        "plowline.dashboard.server:load_app",
        address=config.host,
        port=config.port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=event_loop(),
        websockets=False,
        log_level=LogLevels.warning,
    )
    listening: list[bool] = []

    def announce() -> None:
        listening.append(True)
        log.info("Plowline dashboard on %s", config.url)
        print(f"Plowline dashboard on {config.url}", flush=True)

    server.on_startup(announce)
    try:
        server.serve(target_loader=partial(load_app, config), wrap_loader=False)
    except RuntimeError as exc:
        if listening:
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigurationError(
            f"Cannot listen on {config.host}:{config.port}: {reason}."
        ) from None
