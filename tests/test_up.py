"""The main job end to end: real tracker traffic through ``plowline up`` into DuckDB."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from snowplow_tracker import Emitter, SelfDescribingJson, Subject, Tracker
from snowplow_tracker.events import PageView, SelfDescribing, StructuredEvent

from fixture_traffic import EVENTS_PER_FILE, captured_requests
from plowline.enrich.fields import FIELD_NAMES
from traffic_expectations import (
    check_js_tracker,
    check_python_tracker,
    normalise,
)
from up_process import RunningUp, start_up

GIF_LENGTH = 43
# Headers the HTTP client sets itself for the new connection.
CLIENT_HEADERS = {"host", "content-length", "connection", "transfer-encoding"}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUp]:
    running = start_up(tmp_path_factory.mktemp("up"))
    yield running
    if running.process.poll() is None:
        assert running.stop() == 0, running.stderr()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10.0) as http:
        yield http


def replay(
    client: httpx.Client, base_url: str, request: dict[str, Any]
) -> httpx.Response:
    headers = [
        (name, value)
        for name, value in request["headers"]
        if name.lower() not in CLIENT_HEADERS
    ]
    body = request["body"].encode("utf-8") if request["body"] is not None else None
    return client.request(
        request["method"], base_url + request["target"], headers=headers, content=body
    )


def events_where(up: RunningUp, condition: str) -> list[dict[str, Any]]:
    columns = ", ".join(FIELD_NAMES)
    rows = up.rows(f"SELECT {columns} FROM atomic.events WHERE {condition}")
    return [{name: normalise(name, row[name]) for name in FIELD_NAMES} for row in rows]


def count(up: RunningUp, condition: str) -> int:
    return int(up.scalar(f"SELECT count(*) FROM atomic.events WHERE {condition}"))


def test_start_up_line_says_where_to_send_and_where_data_goes(up: RunningUp) -> None:
    banner = up.stdout()
    assert f"http://127.0.0.1:{up.port}" in banner
    assert "/com.snowplowanalytics.snowplow/tp2" in banner
    assert "plowline.duckdb" in banner
    assert "plowline query" in banner


def test_captured_traffic_arrives_once_with_its_values(
    up: RunningUp, client: httpx.Client
) -> None:
    for name in EVENTS_PER_FILE:
        for request in captured_requests(name):
            response = replay(client, up.base_url, request)
            assert response.status_code == 200, request["target"]
            if request["method"] == "GET":
                assert len(response.content) == GIF_LENGTH
    sent = time.monotonic()

    expected = sum(EVENTS_PER_FILE.values())
    waited = up.wait_for(
        lambda: count(up, "app_id IN ('acc-py', 'acc-js')") == expected
    )
    assert time.monotonic() - sent < 5.0, f"took {waited:.1f} s to be queryable"

    check_python_tracker(events_where(up, "app_id = 'acc-py'"))
    for method in ("get", "post"):
        check_js_tracker(
            events_where(
                up, f"app_id = 'acc-js' AND page_url LIKE '%method={method}%'"
            ),
            method,
        )
    duplicates = up.scalar(
        "SELECT count(*) - count(DISTINCT event_id) FROM atomic.events"
    )
    assert duplicates == 0


def test_collector_sets_and_keeps_the_network_user_id(
    up: RunningUp, client: httpx.Client
) -> None:
    first = client.get(f"{up.base_url}/i?e=pv&p=web&tv=t&aid=cookie-test&page=one")
    cookie = first.cookies.get("sp")
    assert cookie is not None and len(cookie) == 36
    second = client.get(
        f"{up.base_url}/i?e=pv&p=web&tv=t&aid=cookie-test&page=two",
        headers={"Cookie": f"sp={cookie}"},
    )
    assert second.cookies.get("sp") == cookie
    up.wait_for(lambda: count(up, "app_id = 'cookie-test'") == 2)
    ids = {row["network_userid"] for row in events_where(up, "app_id = 'cookie-test'")}
    assert ids == {cookie}


@pytest.mark.parametrize("method", ["get", "post"])
def test_snowplow_python_tracker_events_arrive(up: RunningUp, method: str) -> None:
    app_id = f"real-py-{method}"
    emitter = Emitter(
        "127.0.0.1", protocol="http", port=up.port, method=method, batch_size=2
    )
    subject = Subject().set_user_id("tracker-user").set_lang("fr-FR")
    tracker = Tracker(
        namespace=f"ns-{method}", emitters=emitter, app_id=app_id, subject=subject
    )
    tracker.track(
        PageView(
            page_url="https://shop.example.com/p?id=7#top", page_title="Une page é"
        )
    )
    tracker.track(StructuredEvent(category="cat", action="act", value=3.25))
    tracker.track(
        SelfDescribing(
            SelfDescribingJson(
                "iglu:com.example/thing/jsonschema/1-0-0", {"n": 1, "s": "x\ty"}
            )
        )
    )
    tracker.flush()

    up.wait_for(lambda: count(up, f"app_id = '{app_id}'") == 3)
    events = {e["event"]: e for e in events_where(up, f"app_id = '{app_id}'")}
    page_view = events["page_view"]
    assert page_view["page_title"] == "Une page é"
    assert (
        page_view["page_urlscheme"],
        page_view["page_urlhost"],
        page_view["page_urlport"],
        page_view["page_urlpath"],
        page_view["page_urlquery"],
        page_view["page_urlfragment"],
    ) == ("https", "shop.example.com", 443, "/p", "id=7", "top")
    assert page_view["user_id"] == "tracker-user"
    assert page_view["br_lang"] == "fr-FR"
    assert page_view["name_tracker"] == f"ns-{method}"
    assert page_view["useragent"].startswith("python-requests/")
    assert page_view["user_ipaddress"] == "127.0.0.1"
    assert str(events["struct"]["se_value"]) == "3.25"
    unstruct = events["unstruct"]["unstruct_event"]["data"]
    assert unstruct == {
        "schema": "iglu:com.example/thing/jsonschema/1-0-0",
        "data": {"n": 1, "s": "x\ty"},
    }
    assert events["unstruct"]["event_name"] == "thing"


def test_malformed_requests_are_answered_and_kept(
    up: RunningUp, client: httpx.Client
) -> None:
    before = int(up.scalar("SELECT count(*) FROM atomic.failed_events"))
    pixel = client.get(
        f"{up.base_url}/i?e=pv&aid=bad-input&p=web&tv=t&page=50%off&a=%b"
    )
    assert pixel.status_code == 200 and len(pixel.content) == GIF_LENGTH
    post = client.post(
        f"{up.base_url}/com.snowplowanalytics.snowplow/tp2",
        content=b'{"schema": broken',
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    assert post.status_code == 200
    unknown = client.get(f"{up.base_url}/i?e=zz&aid=bad-input&p=web&tv=t")
    assert unknown.status_code == 200

    up.wait_for(lambda: count(up, "app_id = 'bad-input'") == 1)
    [event] = events_where(up, "app_id = 'bad-input'")
    assert event["page_title"] == "50%off"
    up.wait_for(
        lambda: (
            int(up.scalar("SELECT count(*) FROM atomic.failed_events")) == before + 2
        )
    )
    failures = up.rows(
        "SELECT failure_type, message, failed_event->>'$.data.payload.body' AS body "
        "FROM atomic.failed_events ORDER BY failed_at DESC LIMIT 2"
    )
    by_type = {row["failure_type"]: row for row in failures}
    assert by_type["tracker_protocol_violations"]["body"] == '{"schema": broken'
    assert "zz" in by_type["schema_violations"]["message"]


def test_stop_loads_everything_received_and_restart_adds_nothing(
    up: RunningUp, client: httpx.Client, tmp_path: Path
) -> None:
    for n in range(50):
        response = client.get(
            f"{up.base_url}/i?e=pv&p=web&tv=t&aid=last-burst&page={n}"
        )
        assert response.status_code == 200
    assert up.stop(signal.SIGTERM) == 0, up.stderr()

    with duckdb.connect(str(up.duckdb_path), read_only=True) as conn:
        last = conn.execute(
            "SELECT count(*) FROM atomic.events WHERE app_id = 'last-burst'"
        ).fetchone()
        total = conn.execute("SELECT count(*) FROM atomic.events").fetchone()
    assert last == (50,)

    again = start_up(up.workdir)
    try:
        again.wait_for(
            lambda: again.scalar("SELECT count(*) FROM atomic.events") == total[0]
        )
        time.sleep(1.0)
        assert again.scalar("SELECT count(*) FROM atomic.events") == total[0]
    finally:
        assert again.stop(signal.SIGINT) == 0, again.stderr()
