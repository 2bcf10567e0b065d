"""`plowline up` keeps the analytics models current itself, since it owns the
DuckDB file while it runs (``plowline models`` cannot open it then)."""

from __future__ import annotations

import re
import signal
import uuid
from pathlib import Path

import httpx

from up_process import start_up


def page_view(client: httpx.Client, base_url: str, session: str, path: str) -> None:
    query = {
        "e": "pv", "p": "web", "tv": "test-1", "aid": "site",
        "duid": "d1", "sid": session, "vid": "1", "eid": str(uuid.uuid4()),
        "url": f"https://shop.example{path}", "page": path,
    }  # fmt: skip
    assert client.get(f"{base_url}/i", params=query).status_code == 200


def test_up_updates_the_models_while_running_and_at_the_stop(tmp_path: Path) -> None:
    up = start_up(tmp_path, "--models-every", "0.5")
    try:
        session = str(uuid.uuid4())
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            page_view(client, up.base_url, session, "/home")
            up.wait_for(
                lambda: (
                    up.tables_exist("derived", "page_views")
                    and up.scalar("select count(*) from derived.page_views") == 1
                ),
                timeout=30,
            )
            page_view(client, up.base_url, session, "/cart")
            up.wait_for(
                lambda: up.scalar("select page_views from derived.sessions") == 2,
                timeout=30,
            )
            assert up.scalar("select count(*) from derived.sessions") == 1
    finally:
        assert up.stop(signal.SIGTERM) == 0
    # Logged once per update, with its figures.
    assert re.search(
        r"Models (built|updated): \d+ new events, \d+ sessions", up.stderr()
    )
    assert "ModelResult(" not in up.stderr()


def test_models_every_zero_builds_no_models(tmp_path: Path) -> None:
    up = start_up(tmp_path, "--models-every", "0")
    try:
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            page_view(client, up.base_url, str(uuid.uuid4()), "/home")
        up.wait_for(lambda: up.scalar("select count(*) from atomic.events") == 1)
    finally:
        assert up.stop(signal.SIGTERM) == 0
    assert not up.tables_exist("derived", "page_views")
