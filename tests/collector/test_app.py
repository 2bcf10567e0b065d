"""The collector's HTTP behaviour, through a real ``plowline collector`` process.

Every test tags its requests with a unique ``x-test-id`` header and finds its
records in the shared collector's raw log by that tag.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_process import TEST_ID_HEADER, RunningCollector, new_test_id

from fixture_traffic import require_traffic
from plowline.collector.app import CollectorApp
from plowline.collector.config import CollectorConfig
from plowline.rawlog.record import RawRecord, decode_record
from plowline.rawlog.writer import RawLogWriter

pytestmark = pytest.mark.slow

# protocol.md §2.2, variant A, as printed in the spec.
GIF_A = bytes.fromhex(
    "47 49 46 38 39 61 01 00 01 00 f0 00 00 ff ff ff"
    "00 00 00 21 f9 04 01 00 00 00 00 2c 00 00 00 00"
    "01 00 01 00 00 02 02 44 01 00 3b"
)
TP2 = "/com.snowplowanalytics.snowplow/tp2"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
ONE_MIB = 1024 * 1024


def tag(**headers: str) -> tuple[str, dict[str, str]]:
    test_id = new_test_id()
    return test_id, {TEST_ID_HEADER: test_id, **headers}


def sp_cookie(response: httpx.Response) -> str | None:
    values = response.headers.get_list("set-cookie")
    assert len(values) <= 1
    return values[0] if values else None


def cookie_value(set_cookie: str) -> str:
    name, _, rest = set_cookie.partition("=")
    assert name == "sp"
    return rest.split(";")[0]


def raw_exchange(collector: RunningCollector, request: bytes) -> bytes:
    """Send bytes as they are (no client library tidying them) and read the reply."""
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


# --- pixel -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/i", "/ice.png", TP2, "/com.acme/v1"], ids=["i", "ice", "tp2", "vendor"]
)
def test_get_pixel_answers_exact_gif(
    client: httpx.Client, collector: RunningCollector, path: str
) -> None:
    test_id, headers = tag()
    response = client.get(path + "?e=pv", headers=headers)

    assert response.status_code == 200
    assert response.content == GIF_A
    assert response.headers["content-type"] == "image/gif"
    assert response.headers["content-length"] == "43"
    assert response.headers["cache-control"] == "no-cache, no-store, must-revalidate"
    assert collector.record_for(test_id).path == path


def test_head_pixel_has_headers_no_body_and_is_recorded(
    client: httpx.Client, collector: RunningCollector
) -> None:
    test_id, headers = tag()
    response = client.head("/i?e=pv", headers=headers)

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == "image/gif"
    assert response.headers["content-length"] == "43"
    assert sp_cookie(response) is not None
    assert collector.record_for(test_id).method == "HEAD"


def test_record_holds_the_request_fields(
    client: httpx.Client, collector: RunningCollector
) -> None:
    test_id, headers = tag(**{"User-Agent": "UA/1.0", "Referer": "http://r.example/"})
    before = int(time.time() * 1000)
    client.get("/com.acme/v%31?e=pv&x=1", headers=headers)
    after = int(time.time() * 1000)

    record = collector.record_for(test_id)
    assert uuid.UUID(record.id).version == 4
    assert before <= record.tstamp <= after
    assert record.collector == "plowline-0.1.0"
    assert record.method == "GET"
    assert record.path == "/com.acme/v%31"
    assert record.querystring == b"e=pv&x=1"
    assert record.body is None
    assert record.content_type is None
    assert record.ip == "127.0.0.1"
    assert record.useragent == "UA/1.0"
    assert record.referer == "http://r.example/"
    assert record.host == f"127.0.0.1:{collector.port}"
    assert record.header("referer") == "http://r.example/"
    assert record.extra == {}


def test_empty_querystring_is_recorded_as_none(
    client: httpx.Client, collector: RunningCollector
) -> None:
    test_id, headers = tag()
    client.get("/i?", headers=headers)

    assert collector.record_for(test_id).querystring is None


@pytest.mark.parametrize(
    "query",
    ["e=pv&page=50%off&a=%b", "x=%ff%fe&y=%", "a=1&&b==2&;c", "url=http%3A%2F%2Fa%2F"],
    ids=["bad-percent", "invalid-utf8-escapes", "odd-separators", "encoded-url"],
)
def test_malformed_querystring_is_kept_exactly(
    client: httpx.Client, collector: RunningCollector, query: str
) -> None:
    test_id, headers = tag()
    response = client.get("/i?" + query, headers=headers)

    assert response.status_code == 200
    assert collector.record_for(test_id).querystring == query.encode()


def test_raw_utf8_querystring_and_header_bytes_are_kept(
    collector: RunningCollector,
) -> None:
    test_id = new_test_id()
    reply = raw_exchange(
        collector,
        b"GET /i?page=caf\xc3\xa9&x=%ZZ HTTP/1.1\r\nHost: h\r\n"
        b"X-Latin: \xe9t\xe9\r\n"
        + f"{TEST_ID_HEADER}: {test_id}\r\nConnection: close\r\n\r\n".encode(),
    )

    assert reply.startswith(b"HTTP/1.1 200 ")
    record = collector.record_for(test_id)
    assert record.querystring == b"page=caf\xc3\xa9&x=%ZZ"
    # Not UTF-8, so decoded as Latin-1: every byte is still there.
    assert record.header("x-latin") == "\xe9t\xe9"


# --- POST --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            b'{"schema":"iglu:x","data":[{"e":"pv",'
            b'"page":"Caf\xc3\xa9 \xe2\x9c\x93"}]}',
            "application/json; charset=UTF-8",
        ),
        (gzip.compress(b'{"data":[{"e":"pv"}]}'), "application/json"),
        (b"\xff\xfe\x00 not UTF-8 \x80", "application/octet-stream"),
        (b"e=pv&page=50%off", "Application/X-WWW-Form-URLencoded"),
    ],
    ids=["json", "gzip", "invalid-utf8", "form"],
)
def test_post_answers_ok_and_keeps_body_bytes(
    client: httpx.Client, collector: RunningCollector, body: bytes, content_type: str
) -> None:
    test_id, headers = tag(**{"Content-Type": content_type})
    response = client.post(TP2, content=body, headers=headers)

    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["content-type"] == "text/plain"
    record = collector.record_for(test_id)
    assert record.body == body
    assert record.content_type == content_type.lower()
    assert record.method == "POST"


def test_post_querystring_is_recorded(
    client: httpx.Client, collector: RunningCollector
) -> None:
    test_id, headers = tag()
    target = TP2 + "?schema=iglu:a/b/jsonschema/1-0-0"
    client.post(target, content=b"{}", headers=headers)

    assert collector.record_for(test_id).querystring == (
        b"schema=iglu:a/b/jsonschema/1-0-0"
    )


def test_empty_post_body_is_recorded_as_none(
    client: httpx.Client, collector: RunningCollector
) -> None:
    test_id, headers = tag()
    assert client.post(TP2, headers=headers).status_code == 200

    assert collector.record_for(test_id).body is None


def test_chunked_post_body_is_kept(
    client: httpx.Client, collector: RunningCollector
) -> None:
    parts = [b"a" * 70_000, b"\xff" * 10, b"z"]
    test_id, headers = tag()
    response = client.post(TP2, content=iter(parts), headers=headers)

    assert response.status_code == 200
    assert collector.record_for(test_id).body == b"".join(parts)


def test_oversized_body_gets_413_and_a_size_violation_record(
    client: httpx.Client, collector: RunningCollector
) -> None:
    body = bytes(range(256)) * (ONE_MIB // 256) + b"tail"
    test_id, headers = tag(Origin="http://shop.example")
    response = client.post(TP2, content=body, headers=headers)

    assert response.status_code == 413
    assert response.headers["access-control-allow-origin"] == "http://shop.example"
    record = collector.record_for(test_id)
    assert record.body == body[: 64 * 1024]
    assert record.extra == {
        "error": f"size_violation: body of {ONE_MIB + 4} bytes exceeds the limit "
        f"of {ONE_MIB} bytes"
    }


def test_oversized_chunked_body_gets_413_with_its_size(
    client: httpx.Client, collector: RunningCollector
) -> None:
    chunks = [b"x" * 65536] * 17
    test_id, headers = tag()
    response = client.post(TP2, content=iter(chunks), headers=headers)

    assert response.status_code == 413
    record = collector.record_for(test_id)
    assert record.extra["error"] == (
        f"size_violation: body of {17 * 65536} bytes exceeds the limit of "
        f"{ONE_MIB} bytes"
    )


def test_body_at_the_limit_is_accepted(
    client: httpx.Client, collector: RunningCollector
) -> None:
    test_id, headers = tag()
    response = client.post(TP2, content=b"y" * ONE_MIB, headers=headers)

    assert response.status_code == 200
    assert len(collector.record_for(test_id).body or b"") == ONE_MIB


# --- network user id cookie --------------------------------------------------


def test_cookie_is_set_when_absent(
    client: httpx.Client, collector: RunningCollector
) -> None:
    test_id, headers = tag()
    response = client.get("/i", headers=headers)

    set_cookie = sp_cookie(response)
    assert set_cookie is not None
    userid = cookie_value(set_cookie)
    assert uuid.UUID(userid).version == 4
    assert collector.record_for(test_id).network_userid == userid
    attributes = set_cookie.split("; ")[1:]
    assert attributes[:2] == ["Path=/", "Max-Age=31536000"]
    assert attributes[2].startswith("Expires=") and attributes[2].endswith(" GMT")
    # Plain http: Secure would make the browser drop the cookie.
    assert attributes[3:] == ["SameSite=Lax", "HttpOnly"]


def test_each_new_visitor_gets_a_different_id(client: httpx.Client) -> None:
    ids = set()
    for _ in range(5):
        client.cookies.clear()
        ids.add(cookie_value(sp_cookie(client.get("/i")) or ""))

    assert len(ids) == 5


def test_incoming_cookie_is_kept(
    client: httpx.Client, collector: RunningCollector
) -> None:
    userid = "5d7c0b9e-0001-4000-8000-00000000beef"
    test_id, headers = tag(Cookie=f"_sp_id.1=abc; sp={userid}")
    response = client.post(TP2, content=b"{}", headers=headers)

    assert cookie_value(sp_cookie(response) or "") == userid
    assert collector.record_for(test_id).network_userid == userid
    assert collector.record_for(test_id).header("cookie") == (
        f"_sp_id.1=abc; sp={userid}"
    )


def test_nuid_parameter_overrides_cookie(
    client: httpx.Client, collector: RunningCollector
) -> None:
    test_id, headers = tag(Cookie="sp=old-id")
    response = client.get("/i?e=pv&nuid=new%2Did&tv=x", headers=headers)

    assert cookie_value(sp_cookie(response) or "") == "new-id"
    assert collector.record_for(test_id).network_userid == "new-id"


@pytest.mark.parametrize(
    "query",
    ["nuid=x%3B%20Domain%3Devil.example", "nuid=", "nuid=a%0d%0ab"],
    ids=["attribute-injection", "empty", "crlf"],
)
def test_unsafe_nuid_is_not_echoed_into_cookie(
    client: httpx.Client, collector: RunningCollector, query: str
) -> None:
    test_id, headers = tag()
    response = client.get("/i?" + query, headers=headers)

    set_cookie = sp_cookie(response) or ""
    assert "evil" not in set_cookie
    userid = cookie_value(set_cookie)
    assert uuid.UUID(userid).version == 4
    assert collector.record_for(test_id).network_userid == userid


def test_sp_anonymous_hides_the_sender(
    client: httpx.Client, collector: RunningCollector
) -> None:
    test_id, headers = tag(
        **{
            "SP-Anonymous": "*",
            "Cookie": "sp=known-user",
            "X-Forwarded-For": "203.0.113.9",
            "X-Real-Ip": "203.0.113.9",
            "Forwarded": "for=203.0.113.9",
            "User-Agent": "UA/anon",
        }
    )
    response = client.get("/i?e=pv&nuid=also-known", headers=headers)

    assert response.status_code == 200
    assert sp_cookie(response) is None
    record = collector.record_for(test_id)
    assert record.network_userid == ZERO_UUID
    assert record.ip is None
    names = [name for name, _ in record.headers]
    for dropped in ("cookie", "x-forwarded-for", "x-real-ip", "forwarded"):
        assert dropped not in names
    assert record.useragent == "UA/anon"
    assert record.header("sp-anonymous") == "*"


# --- CORS --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "expected"),
    [("http://shop.example:8000", "http://shop.example:8000"), (None, "*")],
    ids=["echo-origin", "no-origin"],
)
def test_preflight_answers_any_path_and_is_not_recorded(
    client: httpx.Client,
    collector: RunningCollector,
    origin: str | None,
    expected: str,
) -> None:
    test_id, headers = tag()
    if origin:
        headers["Origin"] = origin
    response = client.options("/any/path/at/all", headers=headers)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == expected
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-allow-headers"] == (
        "Content-Type, SP-Anonymous"
    )
    assert response.headers["access-control-max-age"] == "3600"
    assert "set-cookie" not in response.headers
    assert collector.records_for(test_id) == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_tracking_responses_carry_cors_headers(
    client: httpx.Client, method: str
) -> None:
    response = client.request(
        method, TP2, headers={"Origin": "https://www.shop.example"}
    )

    assert response.headers["access-control-allow-origin"] == (
        "https://www.shop.example"
    )
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["vary"] == "Origin"


def test_no_origin_allows_any(client: httpx.Client) -> None:
    response = client.get("/i")

    assert response.headers["access-control-allow-origin"] == "*"


# --- other routes ------------------------------------------------------------


def test_health_answers_ok(client: httpx.Client) -> None:
    response = client.get("/health")

    assert (response.status_code, response.text) == (200, "ok")


def test_robots_txt_disallows_everything(client: httpx.Client) -> None:
    response = client.get("/robots.txt")

    assert response.status_code == 200
    assert response.text == "User-agent: *\nDisallow: /\n"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/com.acme/v1/extra"),
        ("GET", "/com.acme/"),
        ("GET", "//v1"),
        ("GET", "/favicon.ico"),
        ("POST", "/i"),
        ("POST", "/com.acme/v1/extra"),
        ("PUT", TP2),
        ("DELETE", "/i"),
        ("PATCH", TP2),
    ],
    ids=lambda value: str(value),
)
def test_other_requests_get_404_and_are_not_recorded(
    client: httpx.Client, collector: RunningCollector, method: str, path: str
) -> None:
    test_id, headers = tag()
    response = client.request(method, path, headers=headers, content=b"x")

    assert (response.status_code, response.text) == (404, "not found")
    assert collector.records_for(test_id) == []


def test_record_ids_are_unique(
    client: httpx.Client, collector: RunningCollector
) -> None:
    test_id, headers = tag()
    for n in range(30):
        client.get(f"/i?n={n}", headers=headers)

    ids = [record.id for record in collector.records_for(test_id)]
    assert len(ids) == 30
    assert len(set(ids)) == 30


# --- captured tracker traffic ------------------------------------------------


def fixture_requests(name: str) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in (require_traffic() / name).read_text().splitlines()
    ]


@pytest.mark.parametrize(
    "name", ["python_tracker.jsonl", "js_tracker_get.jsonl", "js_tracker_post.jsonl"]
)
def test_captured_tracker_requests_are_recorded_as_sent(
    collector: RunningCollector, name: str
) -> None:
    requests = fixture_requests(name)
    connection = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=10)
    tags = []
    for request in requests:
        tags.append(_replay(connection, request))
    connection.close()

    for request, test_id in zip(requests, tags, strict=True):
        _check_replayed(collector, request, test_id)


def _replay(connection: http.client.HTTPConnection, request: dict[str, Any]) -> str:
    # http.client sends the target and headers exactly as given.
    test_id = new_test_id()
    connection.putrequest(
        request["method"], request["target"], skip_host=True, skip_accept_encoding=True
    )
    for name, value in request["headers"]:
        connection.putheader(name, value)
    connection.putheader(TEST_ID_HEADER, test_id)
    body = request["body"].encode("utf-8") if request["body"] is not None else None
    connection.endheaders(body)
    response = connection.getresponse()
    content = response.read()
    assert response.status == 200
    expected = {"GET": GIF_A, "POST": b"ok", "OPTIONS": b""}[request["method"]]
    assert content == expected
    return test_id


def _check_replayed(
    collector: RunningCollector, request: dict[str, Any], test_id: str
) -> None:
    found = collector.records_for(test_id)
    if request["method"] == "OPTIONS":
        assert found == []
        return
    assert len(found) == 1
    record = found[0]
    query = request["query_string"]
    assert record.path == request["path"]
    assert record.querystring == (query.encode() if query else None)
    body = request["body"]
    assert record.body == (body.encode() if body is not None else None)
    sent = [(n.lower(), v) for n, v in request["headers"]]
    recorded = [(n.lower(), v) for n, v in record.headers]
    assert recorded == [*sent, (TEST_ID_HEADER, test_id)]


# --- directly through ASGI: what real HTTP here cannot reach -----------------


class Exchange:
    """Drives one ASGI request through the app and collects what it sends."""

    def __init__(self, body_parts: list[bytes]) -> None:
        self.incoming = [
            {"type": "http.request", "body": part, "more_body": i < len(body_parts) - 1}
            for i, part in enumerate(body_parts)
        ]
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.incoming:
            return self.incoming.pop(0)
        return {"type": "http.disconnect"}

    async def send(self, message: Any) -> None:
        self.sent.append(dict(message))


def asgi_scope(scheme: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": scheme,
        "path": "/i",
        "raw_path": b"/i",
        "query_string": b"e=pv",
        "headers": headers,
        "client": ("::1", 5555),
        "server": ("::1", 443),
    }


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[RawLogWriter]:
    with RawLogWriter(tmp_path / "raw") as raw_writer:
        yield raw_writer


def written(writer: RawLogWriter) -> list[RawRecord]:
    assert writer.path is not None
    return [decode_record(line) for line in writer.path.read_bytes().splitlines()]


def test_https_cookie_is_samesite_none_and_secure(writer: RawLogWriter) -> None:
    config = CollectorConfig(cookie_domain=".shop.example")
    app = CollectorApp(config, writer, clock=lambda: 1796398275.5)
    exchange = Exchange([b""])
    asyncio.run(app(asgi_scope("https", []), exchange.receive, exchange.send))

    headers = dict(exchange.sent[0]["headers"])
    userid = written(writer)[0].network_userid
    assert headers[b"set-cookie"].decode() == (
        f"sp={userid}; Path=/; Max-Age=31536000; "
        "Expires=Sat, 04 Dec 2027 15:31:15 GMT; Domain=.shop.example; "
        "SameSite=None; Secure; HttpOnly"
    )
    record = written(writer)[0]
    assert record.ip == "::1"
    assert record.tstamp == 1796398275500


def test_disabled_cookie_is_not_set_but_id_is_recorded(writer: RawLogWriter) -> None:
    app = CollectorApp(CollectorConfig(cookie_enabled=False), writer)
    exchange = Exchange([b""])
    scope = asgi_scope("http", [(b"cookie", b"sp=abc")])
    asyncio.run(app(scope, exchange.receive, exchange.send))

    assert b"set-cookie" not in dict(exchange.sent[0]["headers"])
    assert written(writer)[0].network_userid == "abc"


def test_body_that_ends_early_is_kept_and_answered_400(writer: RawLogWriter) -> None:
    app = CollectorApp(CollectorConfig(), writer)
    exchange = Exchange([b"part", b"more"])
    exchange.incoming[-1]["more_body"] = True
    # A GET has a body over HTTP/1 only with Content-Length or Transfer-Encoding.
    scope = asgi_scope("http", [(b"transfer-encoding", b"chunked")])
    asyncio.run(app(scope, exchange.receive, exchange.send))

    assert exchange.sent[0]["status"] == 400
    [record] = written(writer)
    assert record.body == b"partmore"
    assert record.extra["error"].startswith("incomplete_body: the body ended after 8")


def test_endless_body_is_cut_off_and_reported_as_more_than(
    writer: RawLogWriter,
) -> None:
    # 16 times the limit is read to let the client see the 413; then it stops.
    app = CollectorApp(CollectorConfig(max_body_bytes=10), writer)
    exchange = Exchange([b"x" * 100] * 50)
    exchange.incoming[-1]["more_body"] = True
    scope = asgi_scope("http", [])
    scope.update(method="POST", path="/com.acme/v1", raw_path=b"/com.acme/v1")
    asyncio.run(app(scope, exchange.receive, exchange.send))

    assert exchange.sent[0]["status"] == 413
    assert len(exchange.incoming) == 48
    assert written(writer)[0].extra == {
        "error": "size_violation: body of more than 200 bytes exceeds the limit "
        "of 10 bytes"
    }


def test_lifespan_shutdown_closes_the_writer(writer: RawLogWriter) -> None:
    app = CollectorApp(CollectorConfig(), writer)
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    replies: list[str] = []

    async def receive() -> Any:
        return messages.pop(0)

    async def send(message: Any) -> None:
        replies.append(message["type"])

    writer.write(RawRecord(id="1", tstamp=1, collector="c", method="GET", path="/i"))
    asyncio.run(app({"type": "lifespan"}, receive, send))

    assert replies == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert not writer.is_open
    assert [record.id for record in written(writer)] == ["1"]
