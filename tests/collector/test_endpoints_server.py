"""Routes, settings and limits through a real ``plowline collector``.

The in-process tests (test_endpoints.py) cover the behaviour in detail; these
check what only the real server shows: settings reaching the workers through
the environment, and where the HTTP server's own limits stop a request before
the application sees it.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from collector_process import (
    TEST_ID_HEADER,
    CollectorFactory,
    RunningCollector,
    new_test_id,
    start_collector,
)

from plowline.collector.tracker_script import TRACKER_SCRIPT

pytestmark = pytest.mark.slow

SETTINGS = {
    "PLOWLINE_COLLECTOR_REDIRECT_ALLOWED_HOSTS": "shop.example,*.brand.example",
    "PLOWLINE_COLLECTOR_TRUSTED_PROXIES": "127.0.0.0/8",
    "PLOWLINE_COLLECTOR_DO_NOT_TRACK_COOKIE_NAME": "optout",
    "PLOWLINE_COLLECTOR_DO_NOT_TRACK_COOKIE_VALUE": "1",
    "PLOWLINE_COLLECTOR_COOKIE_DOMAINS": "shop.example",
}


@pytest.fixture(scope="module")
def configured(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningCollector]:
    running = start_collector(tmp_path_factory.mktemp("configured"), env=SETTINGS)
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture
def http(configured: RunningCollector) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=configured.base_url, trust_env=False, timeout=10.0
    ) as client:
        yield client


def tagged(**headers: str) -> tuple[str, dict[str, str]]:
    test_id = new_test_id()
    return test_id, {TEST_ID_HEADER: test_id, **headers}


def exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, read the whole answer (the request says Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def get_with(test_id: str, target: bytes, extra_headers: bytes = b"") -> bytes:
    return (
        b"GET "
        + target
        + b" HTTP/1.1\r\nHost: t.example\r\n"
        # First, so that the record of an oversized head still has it.
        + f"{TEST_ID_HEADER}: {test_id}\r\n".encode()
        + extra_headers
        + b"Connection: close\r\n\r\n"
    )


# --- settings from the environment -----------------------------------------------


def test_redirect_follows_the_allow_list(
    http: httpx.Client, configured: RunningCollector
) -> None:
    test_id, headers = tagged()
    allowed = http.get("/r/tp2?u=https%3A%2F%2Fa.brand.example%2Fp", headers=headers)
    refused = http.get("/r/tp2?u=https%3A%2F%2Fevil.example%2F", headers=headers)

    assert allowed.status_code == 302
    assert allowed.headers["location"] == "https://a.brand.example/p"
    assert refused.status_code == 400
    assert "allow-list" in refused.text
    assert len(configured.records_for(test_id)) == 2


def test_client_address_comes_from_the_trusted_proxy_header(
    http: httpx.Client, configured: RunningCollector
) -> None:
    test_id, headers = tagged(**{"X-Forwarded-For": "6.6.6.6, 198.51.100.7"})
    http.get("/i", headers=headers)

    record = configured.record_for(test_id)
    assert record.ip == "198.51.100.7"
    assert record.header("x-forwarded-for") == "6.6.6.6, 198.51.100.7"


def test_do_not_track_cookie_records_nothing(
    http: httpx.Client, configured: RunningCollector
) -> None:
    test_id, headers = tagged(Cookie="optout=1")
    response = http.get("/i?e=pv", headers=headers)

    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert configured.records_for(test_id) == []


def test_cookie_domain_matches_the_host(http: httpx.Client) -> None:
    response = http.get("/i", headers={"Host": "t.shop.example"})

    assert "; Domain=shop.example; " in response.headers["set-cookie"]


def test_tracker_script_or_a_404_saying_it_is_not_built(http: httpx.Client) -> None:
    response = http.get("/plowline.js")

    if TRACKER_SCRIPT.exists():
        assert response.status_code == 200
        assert response.headers["etag"]
    else:
        assert response.status_code == 404
        assert "tracker is not built" in response.text


def test_metrics_answer_in_prometheus_text(http: httpx.Client) -> None:
    http.get("/i")
    response = http.get("/metrics")

    assert response.status_code == 200
    assert re.search(
        r'^plowline_collector_requests_total\{group="pixel",status="200"\} [1-9]',
        response.text,
        re.MULTILINE,
    )


def test_metrics_add_up_every_worker(
    collector_factory: CollectorFactory, tmp_path: Path
) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    running = collector_factory(
        {
            "PLOWLINE_COLLECTOR_WORKERS": "2",
            "PLOWLINE_COLLECTOR_METRICS_DIR": str(shared),
        }
    )
    with httpx.Client(base_url=running.base_url, trust_env=False) as client:
        # New connections, so that both workers take some.
        for _ in range(30):
            client.get("/i", headers={"Connection": "close"})
        time.sleep(1.5)  # each worker shares its counts within a second
        text = client.get("/metrics").text

    line = re.search(
        r"^plowline_collector_records_written_total (\S+)$", text, re.MULTILINE
    )
    assert line is not None and float(line[1]) == 30
    assert len(list(shared.glob("worker-*.json"))) == 2


# --- limits: the application's, and the server's far above them -----------------


def test_querystring_over_our_limit_is_recorded_with_414(
    configured: RunningCollector,
) -> None:
    test_id = new_test_id()
    reply = exchange(configured.port, get_with(test_id, b"/i?q=" + b"a" * 30_000))

    assert status_of(reply) == 414
    assert b"querystring of 30002 bytes exceeds the limit of 20480 bytes" in reply
    record = configured.record_for(test_id)
    assert record.extra["error"].startswith("size_violation: querystring of 30002")


def test_headers_over_our_limit_are_recorded_with_431(
    configured: RunningCollector,
) -> None:
    test_id = new_test_id()
    padding = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"p" * 1000) for n in range(50))
    reply = exchange(configured.port, get_with(test_id, b"/i?e=pv", padding))

    assert status_of(reply) == 431
    assert b"exceed the limit of 40960 bytes" in reply
    assert (
        configured.record_for(test_id)
        .extra["error"]
        .startswith("size_violation: headers of ")
    )


@pytest.mark.parametrize(
    ("target", "headers", "status", "error"),
    [
        (b"/i?q=" + b"a" * 65_600, b"", 414, "querystring of 65602 bytes"),
        (
            b"/i?e=pv",
            b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 30) for n in range(1500)),
            431,
            "headers of ",
        ),
        (b"/i?e=pv", b"X-Big: " + b"v" * 600_000 + b"\r\n", 431, "headers of "),
    ],
    ids=["target-of-65600-bytes", "1500-header-lines", "head-of-600-kib"],
)
def test_big_requests_reach_the_application_and_are_recorded(
    configured: RunningCollector,
    target: bytes,
    headers: bytes,
    status: int,
    error: str,
) -> None:
    # granian refused these on its own, unrecorded; Plowline's server hands
    # them on, and the application records their start with the reason.
    test_id = new_test_id()
    reply = exchange(configured.port, get_with(test_id, target, headers))

    assert status_of(reply) == status
    record = configured.record_for(test_id)
    assert record.extra["error"].startswith("size_violation: " + error)


@pytest.mark.parametrize(
    ("target", "headers", "status", "reason"),
    [
        (b"/i?q=" + b"a" * 1_100_000, b"", 414, b"request line over 1048576 bytes"),
        (
            b"/i?e=pv",
            b"X-Big: " + b"v" * 1_100_000 + b"\r\n",
            431,
            b"request head over 1048576 bytes",
        ),
        (
            b"/i?e=pv",
            b"".join(b"X-H%d: v\r\n" % n for n in range(2001)),
            431,
            b"more than 2000 header lines",
        ),
    ],
    ids=["target-over-1-mib", "head-over-1-mib", "over-2000-header-lines"],
)
def test_the_servers_own_limits_answer_without_a_record(
    configured: RunningCollector,
    target: bytes,
    headers: bytes,
    status: int,
    reason: bytes,
) -> None:
    test_id = new_test_id()
    reply = exchange(configured.port, get_with(test_id, target, headers))

    assert status_of(reply) == status
    assert reason in reply.partition(b"\r\n\r\n")[2]
    assert configured.records_for(test_id) == []
    # The collector goes on serving.
    with httpx.Client(base_url=configured.base_url, trust_env=False) as client:
        assert client.get("/health").status_code == 200
