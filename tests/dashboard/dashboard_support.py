"""The dashboard tests' world: a DuckDB built from the simulated site of known
shape (plus one visitor of the app ``live`` browsing right now, on a page
titled with a script), ``plowline dashboard`` serving it on a loopback port,
and Debian's Chromium through Playwright (tests/tracker/browser_env.py).

Screenshots go to tests/dashboard/artifacts/ (ignored by git), or to the
folder in PLOWLINE_TEST_ARTIFACTS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from plowline.analytics import simulate as sim
from plowline.analytics.run import StoreKind, update_models
from plowline.enrich.fields import FIELD_NAMES
from plowline.storage.loader import load_files
from plowline.storage.stores import open_store
from up_process import free_port, plowline_command

SCRIPT_TITLE = "<script>alert(1)</script>"
ARTIFACTS = Path(
    os.environ.get("PLOWLINE_TEST_ARTIFACTS", Path(__file__).parent / "artifacts")
)


def live_visitor(now: datetime) -> sim.Visitor:
    """Browsing now: /live (one page ping), then /xss. Three events."""
    session = sim.Session(
        now - timedelta(minutes=10),
        sim.DIRECT,
        (sim.Visit("/live", pings=1, dwell_s=20), sim.Visit("/xss", dwell_s=30)),
    )
    return sim.Visitor("live-visitor", sim.PHONE, sim.BERLIN, (session,), "live")


def site_rows(now: datetime) -> list[list[str]]:
    rows = list(sim.events([*sim.known_site(), live_visitor(now)]))
    path, title = FIELD_NAMES.index("page_urlpath"), FIELD_NAMES.index("page_title")
    for row in rows:
        if row[path] == "/xss":
            row[title] = SCRIPT_TITLE
    return rows


def build_store(folder: Path, rows: list[list[str]], dsn: str | None = None) -> str:
    """A store with these events and the models built: a DuckDB file in
    ``folder``, or the PostgreSQL database ``dsn``; where it is."""
    kind: StoreKind = "duckdb" if dsn is None else "postgres"
    where = str(folder / "events.duckdb") if dsn is None else dsn
    tsv = folder / f"{kind}-events.tsv"
    sim.write_tsv(rows, str(tsv))
    store = open_store(kind, where)
    try:
        store.ensure_schema()
        load_files(store, [str(tsv)])
    finally:
        store.close()
    update_models(kind, where)
    return where


@dataclass
class RunningDashboard:
    process: subprocess.Popen[bytes]
    url: str
    where: str
    log: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start_dashboard(
    where: str, folder: Path, store_args: list[str] | None = None
) -> RunningDashboard:
    """``plowline dashboard`` over ``where`` (``store_args``, else the DuckDB
    file ``where``) on a free loopback port, once it answers."""
    port = free_port()
    log = folder / f"dashboard-{port}.log"
    args = ["--duckdb", where] if store_args is None else store_args
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [*plowline_command(), "dashboard", *args, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    running = RunningDashboard(process, f"http://127.0.0.1:{port}", where, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{running.url}/health", timeout=1).status_code == 200:
                return running
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            running.stop()
            raise AssertionError(
                f"plowline dashboard did not start:\n{log.read_text()}"
            )
        time.sleep(0.1)


# One browser per test module: Playwright's sync API holds an event loop in
# this thread while it runs, and tests elsewhere need to start their own
# (asyncio.run), as does the other folder's browser.
