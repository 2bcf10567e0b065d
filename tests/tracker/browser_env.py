"""The tracker tests' world: Debian's Chromium driven by Playwright, pages served
from 127.0.0.1, the real ``plowline up`` (collector, enrich, DuckDB) on another
loopback port, and the tracker built from js/ by esbuild.

Chromium, Playwright, Node.js and the npm packages are needed: when one is
missing the tests are skipped, saying which and how to get it, except under CI
(``CI=true``), where a missing tool fails them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from up_process import START_TIMEOUT, RunningUp, free_port, plowline_command

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# No network beyond 127.0.0.1: nothing in the background, no QUIC, no sync.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHARED = Path(os.environ.get("PLOWLINE_SHARED", REPO.parent / "shared"))
IGLU_CENTRAL = SHARED / "data" / "iglu-central"
TEST_SCHEMAS = Path(__file__).parent / "schemas"
SNIPPET_DOC = REPO / "docs" / "tracker.md"
EXAMPLE_COLLECTOR = "https://collector.example.com"


def missing(message: str) -> None:
    """Skip, or fail under CI, where every tool must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_node() -> None:
    if shutil.which("node") is None:
        missing("Node.js is not installed: the tracker is built with esbuild (npm ci)")
    if not (REPO / "node_modules" / "esbuild").is_dir():
        missing("node_modules/ is missing: run `npm ci` (./dev test does)")


def build_tracker(outdir: Path, *extra: str) -> None:
    """``node js/build.mjs --outdir OUTDIR``: the build that made the committed file."""
    require_node()
    subprocess.run(
        ["node", str(REPO / "js" / "build.mjs"), "--outdir", str(outdir), *extra],
        check=True,
        capture_output=True,
        cwd=REPO,
    )


# --- the site: test pages on their own loopback port ---------------------------


class Site:
    """A folder of test pages served on 127.0.0.1 by the standard library."""

    def __init__(self, root: Path, up: RunningUp) -> None:
        self.root = root
        self.up = up
        handler = partial(_QuietHandler, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(
        self,
        name: str,
        calls: str,
        *,
        body: str = "",
        title: str = "Test page",
        tracker_url: str | None = None,
    ) -> str:
        """Write a page loading the tracker with the documented snippet, then
        making ``calls`` (JavaScript); its URL."""
        snippet = loader_snippet().replace(
            f"{EXAMPLE_COLLECTOR}/plowline.js",
            tracker_url or f"{self.up.base_url}/plowline.js",
        )
        html = (
            f'<!doctype html><html><head><meta charset="utf-8">'
            f"<title>{title}</title>\n{snippet}\n<script>{calls}</script>"
            f'<link rel="icon" href="data:,"></head><body>{body}</body></html>'
        )
        (self.root / name).write_text(html)
        return f"{self.url}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def loader_snippet() -> str:
    """The loader snippet exactly as docs/tracker.md shows it (between markers)."""
    text = SNIPPET_DOC.read_text()
    start = text.index("<!-- snippet -->")
    block = text[start:].split("```html\n", 1)[1].split("```", 1)[0]
    return block.strip()


# --- plowline up with the schemas the tests' events use ------------------------


def resolver_file(folder: Path) -> Path:
    if not IGLU_CENTRAL.is_dir():
        missing(f"Iglu Central not found in {IGLU_CENTRAL} (set PLOWLINE_SHARED)")
    config = {
        "schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",
        "data": {
            "cacheSize": 500,
            "repositories": [
                {
                    "name": "Iglu Central copy",
                    "priority": 0,
                    "vendorPrefixes": ["com.snowplowanalytics"],
                    "connection": {"embedded": {"path": str(IGLU_CENTRAL)}},
                },
                {
                    "name": "Test schemas",
                    "priority": 0,
                    "vendorPrefixes": ["io.plowline.test"],
                    "connection": {"embedded": {"path": str(Path(__file__).parent)}},
                },
            ],
        },
    }
    path = folder / "resolver.json"
    path.write_text(json.dumps(config))
    return path


def start_up_at(workdir: Path, port: int | None = None) -> RunningUp:
    """``plowline up`` validating entities, on ``port`` (a free one by default)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    resolver = resolver_file(workdir)
    out, err = workdir / "up.stdout", workdir / "up.stderr"
    # A restart in the same folder appends to the same files.
    starts = (out.read_text().count("Plowline is up") if out.exists() else 0) + 1
    with open(out, "ab") as stdout, open(err, "ab") as stderr:
        process = subprocess.Popen(
            [*plowline_command(), "up", "--port", str(port),
             "--iglu-resolver", str(resolver)],
            cwd=workdir, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    running = RunningUp(process, port, workdir, out, err)
    deadline = time.monotonic() + START_TIMEOUT
    while running.stdout().count("Plowline is up") < starts:
        if process.poll() is not None or time.monotonic() > deadline:
            running.stop(signal.SIGKILL)
            raise AssertionError(f"plowline up did not start:\n{running.stderr()}")
        time.sleep(0.05)
    return running


# --- reading what arrived ------------------------------------------------------

EVENT_COLUMNS = (
    "event, event_id, app_id, v_tracker, name_tracker, platform, page_url, "
    "page_title, page_referrer, domain_userid, domain_sessionid, domain_sessionidx, "
    "user_id, network_userid, user_ipaddress, se_category, se_action, se_label, "
    "se_property, se_value, tr_orderid, tr_affiliation, tr_total, tr_tax, "
    "tr_shipping, tr_city, tr_state, tr_country, tr_currency, ti_orderid, ti_sku, "
    "ti_name, ti_category, ti_price, ti_quantity, ti_currency, pp_xoffset_min, "
    "pp_xoffset_max, pp_yoffset_min, pp_yoffset_max, dvce_created_tstamp, "
    "collector_tstamp, dvce_sent_tstamp, br_viewwidth, dvce_screenwidth, "
    "os_timezone, br_lang, doc_charset, "
    "cast(unstruct_event as varchar) as unstruct_event, "
    "cast(contexts as varchar) as contexts"
)


def events(up: RunningUp, app_id: str) -> list[dict[str, Any]]:
    """The events of one app id, in the order they were created."""
    rows = up.rows(
        f"select {EVENT_COLUMNS} from atomic.events where app_id = '{app_id}' "
        "order by dvce_created_tstamp, event_id"
    )
    for row in rows:
        for column in ("unstruct_event", "contexts"):
            row[column] = json.loads(row[column]) if row[column] else None
    return rows


def wait_for_events(
    up: RunningUp,
    app_id: str,
    count: int,
    *,
    timeout: float = 20.0,
    settle: float = 1.0,
) -> list[dict[str, Any]]:
    """The events of ``app_id`` once ``count`` have arrived, and then ``settle``
    seconds more in which no further one did (so duplicates would show)."""
    deadline = time.monotonic() + timeout
    found = events(up, app_id)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        found = events(up, app_id)
    time.sleep(settle)
    found = events(up, app_id)
    assert len(found) == count, (
        f"{len(found)} events for {app_id}, expected {count}: "
        f"{[e['event'] for e in found]}\nfailed: {failed_events(up)}"
    )
    return found


def failed_events(up: RunningUp) -> list[dict[str, Any]]:
    return up.rows("select failure_type, message from atomic.failed_events")


def unstruct(event: dict[str, Any]) -> tuple[str, Any]:
    inner = event["unstruct_event"]["data"]
    return inner["schema"], inner["data"]


def entities(event: dict[str, Any], schema: str) -> list[Any]:
    found = event["contexts"]["data"] if event["contexts"] else []
    return [e["data"] for e in found if e["schema"] == schema]


# --- the browser ----------------------------------------------------------------


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, with a fresh profile (Playwright's launch)."""
    if not CHROMIUM.exists():
        missing(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python is missing: pip install playwright")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """One browser context (its own cookies and storage) and one page in it."""

    context: Any
    page: Any

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.context.cookies()}

    def tracker_cookies(self) -> dict[str, str]:
        return {k: v for k, v in self.cookies().items() if k.startswith("_sp_")}

    def wait_idle(self) -> None:
        """Until the tracker's queue in localStorage is empty."""
        self.page.wait_for_function(
            "() => Object.keys(localStorage)"
            ".every(k => !k.startsWith('plowline_queue'))",
            timeout=15000,
        )


# The tracker's stored queue: one localStorage key per event, in tracking order.
STORED_QUEUE = (
    "Object.keys(localStorage).filter(k => k.startsWith('plowline_queue_pl:'))"
    ".map(k => JSON.parse(localStorage[k])).sort((a, b) => a._o - b._o)"
)


def collect_console(page: Any) -> list[str]:
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    return messages


Js = Callable[..., Any]
