"""Property tests: whatever arrives, the collector answers below 500, raises
nothing, and records every tracking request or says why it refused it.

Most run against the ASGI application in-process, with random and mutated
querystrings, headers and bodies; a few send random requests to a real
``plowline collector``.
"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import unquote

import pytest
from asgi_client import MemoryWriter, Response, scope_for, send_request
from collector_process import TEST_ID_HEADER, RunningCollector, new_test_id
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from plowline.collector.app import CollectorApp
from plowline.collector.config import CollectorConfig
from plowline.enrich.adapters import to_raw_events
from plowline.rawlog.record import RawRecord, decode_record, encode_record

SMALL_LIMITS = CollectorConfig(
    max_querystring_bytes=200,
    max_header_bytes=400,
    max_body_bytes=300,
    redirect_allowed_hosts=("shop.example", "*.brand.example"),
    trusted_proxies=("10.0.0.0/8", "::1"),
)
CONFIGS = [SMALL_LIMITS, CollectorConfig(trusted_proxies=("203.0.113.0/24",))]

TRACKER_QUERIES = [
    b"e=pv&url=http%3A%2F%2Fshop.example%2F&page=Home&tv=js-3.0.0&p=web&nuid=abc",
    b"u=https%3A%2F%2Fshop.example%2Fsale&e=se&se_ca=c&se_ac=a",
    b"schema=iglu%3Acom.acme%2Fx%2Fjsonschema%2F1-0-0&plan=gold&aid=a",
    b"e=ue&ue_px=eyJzY2hlbWEiOiJ4In0&cx=e30&stm=1796398275500&eid=1-2-3",
]
PATHS = [
    "/i",
    "/ice.png",
    "/com.snowplowanalytics.snowplow/tp2",
    "/com.snowplowanalytics.iglu/v1",
    "/r/tp2",
    "/com.acme/v%31",
    "/health",
    "/robots.txt",
    "/plowline.js",
    "/metrics",
    "/",
    "/a/b/c",
    "//v1",
]
HEADER_NAMES = [
    b"cookie",
    b"origin",
    b"content-type",
    b"content-length",
    b"user-agent",
    b"referer",
    b"host",
    b"x-forwarded-for",
    b"forwarded",
    b"sp-anonymous",
    b"if-none-match",
]
TOKEN = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~", min_size=1)
INTERESTING_VALUES = [
    b"sp=5d7c0b9e-0001-4000-8000-00000000beef",
    b'sp="quoted"; other=1',
    b"10.0.0.1, 198.51.100.7",
    b"[2001:db8::1]:80, unknown, 10.0.0.9",
    b'for="[::1]";proto=https, for=_hidden',
    b"application/json; charset=utf-8",
    b"t.brand.example:8080",
    b"*",
    b"-1",
    b"99999999999999999999",
]


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` after a few insertions, deletions and byte changes."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 4))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        if action == "insert":
            junk = draw(
                st.sampled_from([b"%", b"%zz", b"&", b"=", b";", b"%00", b"\xff"])
            )
            data[where:where] = junk
        elif action == "delete":
            del data[where : where + draw(st.integers(1, 10))]
        elif action == "replace" and data:
            data[min(where, len(data) - 1)] = draw(st.integers(0, 255))
        else:
            data[where:where] = data[: draw(st.integers(0, 400))]
    return bytes(data)


querystrings = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(TRACKER_QUERIES).flatmap(mutated),
)
paths = st.one_of(
    st.sampled_from(PATHS),
    # A raw "?" would start the querystring and "#" a fragment (which clients
    # never send): in a path they travel percent-encoded.
    st.lists(st.text(max_size=8), max_size=4).map(
        lambda parts: ("/" + "/".join(parts)).replace("?", "%3F").replace("#", "%23")
    ),
)
header_values = st.one_of(
    st.binary(max_size=200), st.sampled_from(INTERESTING_VALUES).flatmap(mutated)
)
headers = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(HEADER_NAMES), TOKEN.map(str.encode)), header_values
    ),
    max_size=12,
)
methods = st.sampled_from(["GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "X"])
bodies = st.lists(st.binary(max_size=200), min_size=1, max_size=4)
clients = st.sampled_from([("203.0.113.9", 1), ("10.0.0.5", 2), ("::1", 3), None])


def is_tracking(method: str, path: str) -> bool:
    two_segments = path.count("/") == 2 and all(path.split("/")[1:])
    if method in ("GET", "HEAD"):
        return path in ("/i", "/ice.png") or two_segments
    return method == "POST" and two_segments


def run(
    app: CollectorApp,
    method: str,
    target: bytes,
    header_list: list[tuple[bytes, bytes]],
    body: list[bytes],
    client: tuple[str, int] | None,
    *,
    disconnect_early: bool = False,
) -> Response:
    if any(body) or disconnect_early:
        # Over HTTP/1 a request carries a body only when its headers say so; a
        # chunked one may be of any length (and Transfer-Encoding overrides a
        # Content-Length), as a server hands it over.
        header_list = [*header_list, (b"transfer-encoding", b"chunked")]
    scope = scope_for(method, target, header_list, client=client)
    coroutine = send_request(app, scope, body, disconnect_early=disconnect_early)
    return asyncio.run(coroutine)


def check_record_line(record: RawRecord) -> None:
    """The record fits in a raw-log line, reads back equal, and enrich copes."""
    again = decode_record(encode_record(record))
    assert again == record
    assert again.extra == record.extra
    assert isinstance(to_raw_events(again, now_ms=0), list)


@settings(max_examples=200, deadline=None)
@given(
    config=st.sampled_from(CONFIGS),
    method=methods,
    path=paths,
    query=querystrings,
    header_list=headers,
    body=bodies,
    client=clients,
    disconnect_early=st.booleans(),
)
def test_any_request_is_recorded_or_refused_with_a_reason(
    config: CollectorConfig,
    method: str,
    path: str,
    query: bytes,
    header_list: list[tuple[bytes, bytes]],
    body: list[bytes],
    client: tuple[str, int] | None,
    disconnect_early: bool,
) -> None:
    writer = MemoryWriter()
    app = CollectorApp(config, writer)
    target = path.encode("utf-8") + (b"?" + query if query else b"")
    response = run(
        app,
        method,
        target,
        header_list,
        body,
        client,
        disconnect_early=disconnect_early,
    )

    assert 200 <= response.status < 500
    if not is_tracking(method, unquote(path)):
        assert writer.records == []
        assert response.status in (200, 304, 404)
        return
    [record] = writer.records
    check_record_line(record)
    error = record.extra.get("error")
    if response.status < 400:
        assert response.status in (200, 302)
        assert error is None
        assert record.querystring == (query or None)
        assert record.body == (b"".join(body) or None)
        return
    # A refusal says why, in the answer and (except for redirects) in the record.
    assert response.body or method == "HEAD"
    if response.status == 400 and error is None:
        assert unquote(path).startswith("/r/")
        assert method == "HEAD" or response.text.startswith("redirect refused: ")
    elif response.status == 400:
        assert error.startswith("incomplete_body: ")
    else:
        assert response.status in (413, 414, 431)
        assert error.startswith("size_violation: ")
        if method != "HEAD":
            assert error.removeprefix("size_violation: ") in response.text


DO_NOT_TRACK = CollectorConfig(
    do_not_track_cookie_name="optout",
    do_not_track_cookie_value="1",
    redirect_allowed_hosts=("shop.example",),
    max_querystring_bytes=200,
)


@settings(max_examples=100, deadline=None)
@given(method=methods, path=paths, query=querystrings, header_list=headers)
def test_do_not_track_answers_as_usual_and_records_nothing(
    method: str, path: str, query: bytes, header_list: list[tuple[bytes, bytes]]
) -> None:
    target = path.encode("utf-8") + (b"?" + query if query else b"")
    tracked_writer, optout_writer = MemoryWriter(), MemoryWriter()
    tracked = run(
        CollectorApp(DO_NOT_TRACK, tracked_writer),
        method,
        target,
        header_list,
        [b""],
        None,
    )
    optout = run(
        CollectorApp(DO_NOT_TRACK, optout_writer),
        method,
        target,
        [(b"cookie", b"optout=1"), *header_list],
        [b""],
        None,
    )

    assert optout.status == tracked.status
    assert optout_writer.records == []
    assert optout.header("set-cookie") is None
    if optout.status == 200:
        assert optout.body == tracked.body


# --- against a real collector ----------------------------------------------------

TRACKING_ROUTES = [
    ("GET", b"/i"),
    ("HEAD", b"/ice.png"),
    ("GET", b"/com.snowplowanalytics.snowplow/tp2"),
    ("POST", b"/com.snowplowanalytics.snowplow/tp2"),
    ("GET", b"/r/tp2"),
    ("POST", b"/com.snowplowanalytics.iglu/v1"),
]
VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "#")
raw_queries = st.one_of(
    st.text(VISIBLE, max_size=300).map(str.encode),
    st.sampled_from(TRACKER_QUERIES)
    .flatmap(mutated)
    .map(lambda q: bytes(b for b in q if 0x21 <= b < 0x7F and b != 0x23)),
)
raw_header_values = st.binary(max_size=300).map(
    lambda v: bytes(b for b in v if b >= 0x20 and b != 0x7F).strip()
)


def raw_request(
    test_id: str,
    method: str,
    path: bytes,
    query: bytes,
    header_list: list[tuple[bytes, bytes]],
    body: bytes,
) -> bytes:
    lines = [method.encode() + b" " + path + (b"?" + query if query else b"")]
    lines[0] += b" HTTP/1.1"
    lines.append(b"Host: t.example")
    lines.extend(name + b": " + value for name, value in header_list)
    lines.append(f"{TEST_ID_HEADER}: {test_id}".encode())
    lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    route=st.sampled_from(TRACKING_ROUTES),
    query=raw_queries,
    header_list=st.lists(
        st.tuples(TOKEN.map(str.encode), raw_header_values), max_size=6
    ),
    body=st.binary(max_size=2000),
)
def test_real_collector_records_or_refuses_random_requests(
    collector: RunningCollector,
    route: tuple[str, bytes],
    query: bytes,
    header_list: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    method, path = route
    header_list = [
        (name, value)
        for name, value in header_list
        if name.lower() not in (b"content-length", b"transfer-encoding", b"host")
    ]
    test_id = new_test_id()
    request = raw_request(test_id, method, path, query, header_list, body)
    with socket.create_connection(("127.0.0.1", collector.port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk

    status = int(reply.split(b" ", 2)[1])
    event(f"status {status}")
    assert status < 500, reply
    records = collector.records_for(test_id)
    if status < 400:
        assert len(records) == 1
        check_record_line(records[0])
        assert records[0].querystring == (query or None)
        assert records[0].body == (body or None)
    else:
        # The application's 4xx keep a record and say why in the body;
        # granian's own 400 keeps none and says why in its status line.
        status_line, _, rest = reply.partition(b"\r\n")
        if records:
            assert len(records) == 1
            assert rest.partition(b"\r\n\r\n")[2] or method == "HEAD"
        else:
            assert status == 400
            assert status_line.strip() == b"HTTP/1.1 400 Bad Request"
