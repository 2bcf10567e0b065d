"""Running the collector: start-up, settings in workers, failures and shutdown."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from collector_process import TEST_ID_HEADER, CollectorFactory, new_test_id

from plowline.collector.config import CollectorConfig
from plowline.collector.server import wait_until_ready
from plowline.errors import ConfigurationError

pytestmark = pytest.mark.slow

TP2 = "/com.snowplowanalytics.snowplow/tp2"


def test_startup_line_names_address_and_raw_dir(
    collector_factory: CollectorFactory,
) -> None:
    running = collector_factory()

    expected = (
        f"Plowline collector listening on http://127.0.0.1:{running.port}, "
        f"raw log in {running.raw_dir}"
    )
    assert expected in running.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_stops_collector_with_exit_code_zero(
    collector_factory: CollectorFactory, sig: int
) -> None:
    running = collector_factory()
    with httpx.Client(base_url=running.base_url, trust_env=False) as client:
        assert client.get("/i").status_code == 200

    assert running.stop(sig) == 0
    assert len(running.records()) == 1


def test_every_acknowledged_request_is_logged_once_across_sigterm(
    collector_factory: CollectorFactory,
) -> None:
    running = collector_factory()
    acknowledged: list[str] = []
    sent: list[str] = []
    lock = threading.Lock()

    def send_until_refused() -> None:
        with httpx.Client(base_url=running.base_url, trust_env=False) as client:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                test_id = new_test_id()
                with lock:
                    sent.append(test_id)
                try:
                    response = client.get("/i?e=pv", headers={TEST_ID_HEADER: test_id})
                except httpx.TransportError:
                    return
                if response.is_success:
                    with lock:
                        acknowledged.append(test_id)

    threads = [threading.Thread(target=send_until_refused) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    exit_code = running.stop(signal.SIGTERM)
    for thread in threads:
        thread.join()

    assert exit_code == 0
    records = running.records()
    logged = [record.header(TEST_ID_HEADER) for record in records]
    assert len(acknowledged) > 20
    assert all(logged.count(test_id) == 1 for test_id in acknowledged)
    assert set(logged) <= set(sent)
    assert len({record.id for record in records}) == len(records)


def test_request_in_flight_at_sigterm_is_finished_and_logged(
    collector_factory: CollectorFactory,
) -> None:
    running = collector_factory()
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        head = f"POST {TP2} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
        sock.sendall(head.encode() + b"first")
        time.sleep(0.2)
        running.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(b"-half")
        reply = sock.recv(4096)

    assert reply.startswith(b"HTTP/1.1 200 ")
    assert running.stop() == 0
    assert [record.body for record in running.records()] == [b"first-half"]


def test_failed_write_answers_503_and_later_writes_recover(
    collector_factory: CollectorFactory,
) -> None:
    # A 1-byte rotation limit makes every record open a new file, so taking the
    # folder away makes the next write fail.
    running = collector_factory({"PLOWLINE_COLLECTOR_ROTATE_MAX_BYTES": "1"})
    with httpx.Client(base_url=running.base_url, trust_env=False) as client:
        assert client.get("/i?n=1").status_code == 200
        running.raw_dir.rename(running.raw_dir.with_name("moved"))
        running.raw_dir.write_text("not a folder")
        failed = client.post(TP2, content=b"{}")
        running.raw_dir.unlink()
        running.raw_dir.mkdir()
        recovered = client.get("/i?n=3")

    assert failed.status_code == 503
    assert "set-cookie" not in failed.headers
    assert recovered.status_code == 200
    assert [record.querystring for record in running.records()] == [b"n=3"]
    assert "Could not append to the raw log" in running.log()


def test_environment_settings_reach_the_workers(
    collector_factory: CollectorFactory,
) -> None:
    running = collector_factory(
        {
            "PLOWLINE_COLLECTOR_MAX_BODY_BYTES": "10",
            "PLOWLINE_COLLECTOR_COOKIE_NAME": "nuid_cookie",
            "PLOWLINE_COLLECTOR_COOKIE_DOMAIN": ".shop.example",
        }
    )
    with httpx.Client(base_url=running.base_url, trust_env=False) as client:
        too_big = client.post(TP2, content=b"x" * 11)
        cookie = {"Cookie": "nuid_cookie=u1"}
        small = client.post(TP2, content=b"x" * 10, headers=cookie)

    assert too_big.status_code == 413
    assert small.headers["set-cookie"].startswith("nuid_cookie=u1; ")
    assert "; Domain=.shop.example; " in small.headers["set-cookie"]
    assert [r.extra.get("error") is None for r in running.records()] == [False, True]


def test_unusable_raw_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from plowline.cli import main; main()",
            "collector",
            "--port",
            "1",
            "--raw-dir",
            str(blocker / "raw"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 1
    assert "Cannot create the raw-log folder" in result.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from plowline.cli import main; main()",
                "collector",
                "--port",
                str(port),
                "--raw-dir",
                str(tmp_path / "raw"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert result.returncode == 1
    assert f"Error: Cannot listen on 127.0.0.1:{port}: " in result.stderr
    assert "Traceback" not in result.stderr


def test_wait_until_ready_gives_up_on_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(TimeoutError):
            wait_until_ready(f"http://127.0.0.1:{port}", timeout=0.3)


# --- settings ----------------------------------------------------------------


def test_config_survives_the_environment_round_trip() -> None:
    config = CollectorConfig(
        host="::1",
        port=9999,
        raw_dir=Path("/data/raw"),
        workers=3,
        cookie_enabled=False,
        cookie_domain=".acme.example",
        max_body_bytes=5,
        rotate_max_age_seconds=1.5,
    )

    assert CollectorConfig.from_env(config.to_env()) == config


def test_missing_environment_means_defaults() -> None:
    assert CollectorConfig.from_env({}) == CollectorConfig()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PLOWLINE_COLLECTOR_PORT": "http"}, "PLOWLINE_COLLECTOR_PORT='http'"),
        ({"PLOWLINE_COLLECTOR_COOKIE_ENABLED": "maybe"}, "COOKIE_ENABLED='maybe'"),
        ({"PLOWLINE_COLLECTOR_WORKERS": "0"}, "at least 1"),
        ({"PLOWLINE_COLLECTOR_COOKIE_NAME": "a b"}, "not a valid HTTP token"),
        ({"PLOWLINE_COLLECTOR_COOKIE_PATH": "/; Domain=x"}, "may not contain ';'"),
        ({"PLOWLINE_COLLECTOR_MAX_BODY_BYTES": "0"}, "must be positive"),
    ],
    ids=["port", "bool", "workers", "cookie-name", "cookie-path", "body-limit"],
)
def test_bad_setting_names_the_variable_or_field(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        CollectorConfig.from_env(env)


def test_malformed_chunked_body_is_answered_and_kept(
    collector_factory: CollectorFactory,
) -> None:
    running = collector_factory()
    request = (
        b"POST /com.snowplowanalytics.snowplow/tp2 HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as conn:
        conn.sendall(request)
        answer = conn.recv(4096)
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer
    assert running.stop() == 0
    records = running.records()
    assert [r.extra.get("error", "")[:15] for r in records] == ["incomplete_body"]
