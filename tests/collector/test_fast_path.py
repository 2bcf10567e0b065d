"""The collector's quick ways must give what the general ways give.

The pixel request has a straight path (``CollectorApp._plain_pixel``), its
headers are encoded to JSON from the bytes, its line is encoded without a
``RawRecord`` and its ids come in batches: each is checked here against the
general way it shortcuts, on fixed cases and on random ones.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any
from unittest import mock

import orjson
import pytest
from asgi_client import MemoryWriter, scope_for, send_request
from hypothesis import given, settings
from hypothesis import strategies as st

from plowline.collector import app as app_module
from plowline.collector import plainpath
from plowline.collector.app import PIXEL, CollectorApp
from plowline.collector.config import CollectorConfig
from plowline.collector.lines import encode_line
from plowline.ids import RandomIds
from plowline.rawlog.record import RawRecord, decode_record, encode_record

NOW = 1796398275.5
BROWSER_HEADERS = [
    (b"host", b"collector.example.com"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0"),
    (b"sec-ch-ua", b'"Chromium";v="124", "Not-A.Brand";v="99"'),
    (b"origin", b"https://shop.example.com"),
    (b"referer", b"https://shop.example.com/"),
    (b"cookie", b"_sp_id.1fff=abc.1.2; sp=5d7c0b9e-0001-4000-8000-00000000beef"),
    (b"x-path", b"C:\\temp\\a"),
]


def _run(app: CollectorApp, scope: dict[str, Any], *, general: bool) -> Any:
    """One request, by the straight path or by the general one."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    async def go() -> None:
        if general:
            await app._track(scope, receive, send, "pixel")
        else:
            assert await app._plain_pixel(scope, send)

    asyncio.run(go())
    return sent


def _both_ways(
    config: CollectorConfig, scope: dict[str, Any]
) -> tuple[tuple[RawRecord, Any], tuple[RawRecord, Any]]:
    results = []
    for general in (False, True):
        writer = MemoryWriter()
        app = CollectorApp(config, writer, clock=lambda: NOW)
        sent = _run(app, scope, general=general)
        [record] = writer.records
        results.append((record, sent))
    return results[0], results[1]


def _without_ids(record: RawRecord) -> dict[str, Any]:
    data = orjson.loads(encode_record(record))
    del data["id"]
    return dict(data)


def test_plain_pixel_answers_and_records_as_the_general_path() -> None:
    scope = scope_for("GET", b"/i?e=pv&page=Home%20page", BROWSER_HEADERS)
    (fast, fast_sent), (general, general_sent) = _both_ways(CollectorConfig(), scope)

    assert _without_ids(fast) == _without_ids(general)
    assert fast_sent == general_sent
    assert fast_sent[0]["status"] == 200
    assert fast_sent[1]["body"] == PIXEL
    assert fast.network_userid == "5d7c0b9e-0001-4000-8000-00000000beef"
    assert fast.header("sec-ch-ua") == '"Chromium";v="124", "Not-A.Brand";v="99"'
    assert fast.header("x-path") == "C:\\temp\\a"
    assert fast.ip == "203.0.113.9"
    assert fast.tstamp == 1796398275500


def test_plain_pixel_behind_a_trusted_proxy_takes_the_forwarded_address() -> None:
    config = CollectorConfig(trusted_proxies=("203.0.113.0/24",))
    headers = [*BROWSER_HEADERS, (b"x-forwarded-for", b"198.51.100.7")]
    scope = scope_for("HEAD", b"/ice.png", headers)
    (fast, fast_sent), (general, general_sent) = _both_ways(config, scope)

    assert fast.ip == general.ip == "198.51.100.7"
    assert _without_ids(fast) == _without_ids(general)
    assert fast_sent == general_sent
    assert fast_sent[1]["body"] == b""


@pytest.mark.parametrize(
    ("headers", "http_version"),
    [
        ([(b"content-length", b"3")], "1.1"),  # a body to read
        ([(b"transfer-encoding", b"chunked")], "1.1"),
        ([(b"sp-anonymous", b"*")], "1.1"),  # the anonymous record
        ([(b"user-agent", b"caf\xc3\xa9")], "1.1"),  # not ASCII
        ([(b"x-a", b"1"), (b"x-a", b"2")], "1.1"),  # a name twice
        ([(b"User-Agent", b"x")], "1.1"),  # not lower-cased
        ([(b"x-tab", b"a\tb")], "1.1"),  # a control character
        ([(b"host", b"h")], "2"),  # HTTP/2 says nothing about a body
        ([], "1.1"),
    ],
)
def test_other_pixel_requests_take_the_general_path(
    headers: list[tuple[bytes, bytes]], http_version: str
) -> None:
    scope = scope_for("GET", b"/i?e=pv", [])
    scope.update(headers=headers, http_version=http_version)  # names as given
    app = CollectorApp(CollectorConfig(), MemoryWriter())

    async def send(message: Any) -> None:
        raise AssertionError("the straight path must not answer")

    assert asyncio.run(app._plain_pixel(scope, send)) is False


def test_get_without_a_body_is_answered_without_receive() -> None:
    app = CollectorApp(CollectorConfig(), MemoryWriter())

    async def receive() -> dict[str, Any]:
        raise AssertionError("receive() called for a request without a body")

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = scope_for("GET", b"/com.acme/v1?a=1", [(b"sp-anonymous", b"*")])
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200


@pytest.mark.parametrize("http_version", ["1.1", "2"])
def test_a_get_body_is_read_when_the_request_may_have_one(http_version: str) -> None:
    writer = MemoryWriter()
    app = CollectorApp(CollectorConfig(), writer)
    headers = [(b"content-length", b"4")] if http_version == "1.1" else []
    scope = scope_for("GET", b"/i", headers)
    scope["http_version"] = http_version
    response = asyncio.run(send_request(app, scope, [b"da", b"ta"]))
    assert response.status == 200
    assert writer.records[0].body == b"data"


names = st.one_of(
    st.sampled_from([b"host", b"cookie", b"user-agent", b"x-a", b"X-B", b"origin"]),
    st.binary(min_size=1, max_size=6),
)
header_lists = st.lists(st.tuples(names, st.binary(max_size=40)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(header_lists)
def test_headers_json_is_what_the_general_encoding_writes(
    headers: list[tuple[bytes, bytes]],
) -> None:
    found = app_module._read_headers(headers, b"")
    expected = orjson.dumps(app_module._RequestHeaders(headers).pairs)
    if found.json is not None:
        assert found.json == expected
    assert found.size == sum(len(n) + len(v) + 4 for n, v in headers)


@settings(max_examples=200, deadline=None)
@given(
    header_list=st.lists(
        st.tuples(
            st.sampled_from(
                [b"host", b"cookie", b"user-agent", b"referer", b"origin", b"x-a"]
            ),
            st.text("abc;= \"'\\/%:.-", max_size=30).map(str.encode),
        ),
        max_size=6,
        unique_by=lambda pair: pair[0],
    ),
    query=st.binary(max_size=60),
    head=st.booleans(),
    python_twin=st.booleans(),
)
def test_straight_and_general_paths_agree_on_random_pixels(
    header_list: list[tuple[bytes, bytes]], query: bytes, head: bool, python_twin: bool
) -> None:
    headers = [(b"cookie", b"sp=fixed-id"), *header_list]
    scope = scope_for("HEAD" if head else "GET", b"/i", headers)
    scope["query_string"] = query
    app = CollectorApp(CollectorConfig(), MemoryWriter())

    async def ignore(message: Any) -> None:
        return None

    # The compiled header scan where it is built, and its Python twin.
    scan = plainpath.scan_headers_py if python_twin else plainpath.scan_headers
    with mock.patch.object(app_module, "scan_headers", scan):
        if not asyncio.run(app._plain_pixel(scope, ignore)):
            return  # a case for the general path alone
        (fast, fast_sent), (general, general_sent) = _both_ways(
            CollectorConfig(), scope
        )
    assert _without_ids(fast) == _without_ids(general)
    assert fast_sent == general_sent


@settings(max_examples=300, deadline=None)
@given(
    query=st.binary(max_size=50),
    body=st.binary(max_size=50),
    error=st.one_of(st.none(), st.text(max_size=20)),
    pairs=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=4),
)
def test_encode_line_writes_what_encode_record_writes(
    query: bytes,
    body: bytes,
    error: str | None,
    pairs: list[tuple[str, str]],
) -> None:
    line = encode_line(
        "c8009e74-2125-4b6d-9f9b-d95ba8309fa2",
        1796398275500,
        "plowline-test",
        "POST",
        "/com.acme/v1",
        query,
        body,
        "text/plain",
        pairs,
        "203.0.113.9",
        "UA",
        None,
        "h",
        "5d7c0b9e-0001-4000-8000-00000000beef",
        error,
    )
    record = RawRecord(
        id="c8009e74-2125-4b6d-9f9b-d95ba8309fa2",
        tstamp=1796398275500,
        collector="plowline-test",
        method="POST",
        path="/com.acme/v1",
        querystring=query or None,
        body=body or None,
        content_type="text/plain",
        headers=tuple(pairs),
        ip="203.0.113.9",
        useragent="UA",
        referer=None,
        host="h",
        network_userid="5d7c0b9e-0001-4000-8000-00000000beef",
        extra={} if error is None else {"error": error},
    )
    assert line == encode_record(record)
    assert decode_record(line) == record


def test_random_ids_are_version_4_uuids_and_do_not_repeat() -> None:
    ids = RandomIds(batch=8)
    drawn = [ids.next() for _ in range(1000)]
    assert len(set(drawn)) == 1000
    for text in drawn:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_a_forked_child_does_not_reuse_its_parents_ids() -> None:
    ids = RandomIds()
    ids.next()  # a batch is drawn and waits in the parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write_end, ids.next().encode())
        os._exit(0)
    os.close(write_end)
    child_id = os.read(read_end, 100).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child_id) == 36
    assert child_id != ids.next()
