"""`plowline up` serves the dashboard, reading its DuckDB file through the query
socket (up owns the file), when asked with `--dashboard-port`."""

from __future__ import annotations

import re
import signal
import socket
import uuid
from pathlib import Path

import httpx
import pytest

from up_process import free_port, start_up

pytestmark = pytest.mark.slow


def page_view(client: httpx.Client, base_url: str, path: str) -> None:
    query = {
        "e": "pv", "p": "web", "tv": "test-1", "aid": "site", "duid": "d1",
        "sid": str(uuid.uuid4()), "vid": "1", "eid": str(uuid.uuid4()),
        "url": f"https://shop.example{path}", "page": path,
    }  # fmt: skip
    assert client.get(f"{base_url}/i", params=query).status_code == 200


def card(html: str, metric: str) -> str:
    found = re.search(
        rf'data-metric="{metric}">\s*<div class="label">[^<]*</div>\s*'
        r'<div class="value">([^<]*)</div>',
        html,
    )
    assert found, html
    return found.group(1)


def test_up_serves_the_dashboard_through_its_socket(tmp_path: Path) -> None:
    port = free_port()
    up = start_up(tmp_path, "--dashboard-port", str(port), "--models-every", "0.5")
    base = f"http://127.0.0.1:{port}"
    try:
        assert f"Dashboard       {base}/" in up.stdout()
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            up.wait_for(lambda: _answers(client, f"{base}/health"), timeout=30)
            page_view(client, up.base_url, "/home")
            page_view(client, up.base_url, "/cart")
            up.wait_for(
                lambda: (
                    up.tables_exist("derived", "sessions")
                    and up.scalar("select count(*) from derived.sessions") == 2
                ),
                timeout=30,
            )
            live = client.get(f"{base}/live")
            assert live.status_code == 200
            assert (card(live.text, "page_views"), card(live.text, "events")) == (
                "2",
                "2",
            )
            overview = client.get(f"{base}/")
            assert overview.status_code == 200
            assert card(overview.text, "sessions") == "2"
    finally:
        assert up.stop(signal.SIGTERM) == 0, up.stderr()
    # Stopped with up: the port is free again.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_without_models_the_pages_say_so(tmp_path: Path) -> None:
    port = free_port()
    up = start_up(tmp_path, "--dashboard-port", str(port), "--models-every", "0")
    try:
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            up.wait_for(
                lambda: _answers(client, f"http://127.0.0.1:{port}/health"),
                timeout=30,
            )
            page = client.get(f"http://127.0.0.1:{port}/pages")
            assert page.status_code == 503
            assert "plowline models" in page.text
    finally:
        assert up.stop(signal.SIGTERM) == 0, up.stderr()


def test_no_dashboard_unless_asked(tmp_path: Path) -> None:
    up = start_up(tmp_path)
    try:
        assert "Dashboard" not in up.stdout()
    finally:
        assert up.stop(signal.SIGTERM) == 0, up.stderr()


def test_a_busy_dashboard_port_leaves_up_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = start_up(tmp_path, "--dashboard-port", str(port))
        try:
            assert "Dashboard" not in up.stdout()
            assert "Running without the dashboard" in up.stderr()
        finally:
            assert up.stop(signal.SIGTERM) == 0, up.stderr()


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False
