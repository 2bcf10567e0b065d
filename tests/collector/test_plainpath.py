"""The collector's compiled straight path (plowline/collector/_plain.c) against
what it stands in for: ``parse_head`` against llhttp (through httptools, the
server's parser for everything else), ``scan_headers`` against its Python twin.

``parse_head`` may turn down anything, but what it accepts must be what llhttp
reads from the same bytes: the same method, target, version, keep-alive,
headers and body, ending at the same byte.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httptools
import orjson
import pytest
from collector_process import start_collector
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fixture_traffic import all_captured_requests
from plowline.collector import plainpath
from plowline.collector.cookies import cookie_value
from plowline.rawlog.record import encode_record

if os.environ.get("CI") and not plainpath.COMPILED:
    # CI's machine has a C compiler: an unbuilt module there is a broken install.
    pytest.fail("plowline.collector._plain was not built", pytrace=False)
compiled = pytest.mark.skipif(
    not plainpath.COMPILED, reason="plowline.collector._plain is not built"
)

Parsed = tuple[int, bytes, bytes, str, bool, list[tuple[bytes, bytes]], bytes | None]


class _Llhttp:
    """What llhttp makes of the first request in some bytes."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: bytes | None = None
        self.complete = False
        self.parser = httptools.HttpRequestParser(self)
        self.seen: tuple[bytes, str, bool] | None = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body = (self.body or b"") + body

    def on_message_complete(self) -> None:
        # Read as the server reads them: inside this callback.
        parser = self.parser
        self.seen = (
            parser.get_method(),
            parser.get_http_version(),
            parser.should_keep_alive() and not parser.should_upgrade(),
        )
        self.complete = True


def llhttp_reading(data: bytes, used: int) -> Parsed | None:
    """llhttp's reading of ``data[:used]``, None unless it ends a request at
    exactly its last byte (and not one byte before)."""
    reader = _Llhttp()
    try:
        if used > 1:
            reader.parser.feed_data(data[: used - 1])
            if reader.complete:
                return None
        reader.parser.feed_data(data[used - 1 : used])
    except httptools.HttpParserError:
        return None
    if not reader.complete or reader.seen is None:
        return None
    method, version, keep_alive = reader.seen
    body = reader.body
    if method == b"POST" and body is None:
        body = b""
    return (used, method, reader.url, version, keep_alive, reader.headers, body)


def check_against_llhttp(data: bytes) -> Parsed | None:
    """parse_head against llhttp, and read_plain against parse_head and the
    Python twin of scan_headers."""
    assert plainpath.parse_head is not None
    parsed = plainpath.parse_head(data, 2000)
    if parsed is not None:
        assert 0 < parsed[0] <= len(data)
        assert llhttp_reading(data, parsed[0]) == parsed
    for proxy, cookie in ((b"", b"sp"), (b"x-forwarded-for", b"a")):
        assert plainpath.read_plain is not None
        read = plainpath.read_plain(data, 2000, proxy, cookie)
        if parsed is None:
            assert read is None
            continue
        used, method, target, version, keep_alive, headers, body = parsed
        scanned = plainpath.scan_headers_py(headers, body is not None, proxy, cookie)
        if scanned is None:
            assert read is None
        else:
            assert read == (used, method, target, version, keep_alive, body, scanned)
    return parsed


def request(
    method: bytes = b"GET",
    target: bytes = b"/i?e=pv&p=web",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    version: bytes = b"1.1",
) -> bytes:
    if headers is None:
        headers = [(b"Host", b"c.example"), (b"User-Agent", b"Mozilla/5.0 (X11)")]
        if method == b"POST":
            headers.append((b"Content-Length", b"%d" % len(body)))
    head = method + b" " + target + b" HTTP/" + version + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + body


# --- parse_head ------------------------------------------------------------


@compiled
def test_a_tracker_get_is_read_as_llhttp_reads_it() -> None:
    data = request(headers=[(b"Host", b"c.example:8080"), (b"Cookie", b"sp=1")])
    parsed = check_against_llhttp(data + b"GET /i HTTP/1.1\r\n")
    assert parsed == (
        len(data),
        b"GET",
        b"/i?e=pv&p=web",
        "1.1",
        True,
        [(b"host", b"c.example:8080"), (b"cookie", b"sp=1")],
        None,
    )


@compiled
def test_a_post_with_its_whole_body_is_read_with_it() -> None:
    body = b'{"schema":"iglu:x","data":[]}'
    data = request(b"POST", b"/com.snowplowanalytics.snowplow/tp2", body=body)
    parsed = check_against_llhttp(data)
    assert parsed is not None
    assert parsed[0] == len(data)
    assert parsed[6] == body
    # Part of the body still to come: llhttp reads it.
    assert plainpath.parse_head is not None
    assert plainpath.parse_head(data[:-1], 2000) is None


@compiled
@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"Close", False),
        (b"1.1", b"keep-alive", True),
        (b"1.0", None, False),
        (b"1.0", b"Keep-Alive", True),
        (b"1.0", b"close", False),
    ],
)
def test_keep_alive_is_llhttps(
    version: bytes, connection: bytes | None, keep_alive: bool
) -> None:
    headers = [(b"Host", b"h")]
    if connection is not None:
        headers.append((b"Connection", connection))
    parsed = check_against_llhttp(request(headers=headers, version=version))
    assert parsed is not None
    assert parsed[3] == version.decode()
    assert parsed[4] is keep_alive


@compiled
@pytest.mark.parametrize(
    "data",
    [
        # Framing llhttp acts on, or that is not plain.
        request(headers=[(b"Transfer-Encoding", b"chunked")]),
        request(headers=[(b"Content-Length", b"0")]),  # on a GET
        request(b"POST", b"/a/b", [(b"Content-Length", b"2")] * 2, b"{}"),
        request(b"POST", b"/a/b", [(b"Content-Length", b"+2")], b"{}"),
        request(b"POST", b"/a/b", [(b"Content-Length", b"2 ")], b"{}"),
        request(b"POST", b"/a/b", [(b"Host", b"h")], b""),  # no length
        request(b"POST", b"/a/b", [(b"Content-Length", b"9" * 10)], b"{}"),
        request(headers=[(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")]),
        request(headers=[(b"Connection", b"keep-alive, Upgrade")]),
        request(headers=[(b"Connection", b"close")] * 2),
        request(headers=[(b"Proxy-Connection", b"close")]),
        request(
            b"POST",
            b"/a/b",
            [(b"Content-Length", b"2"), (b"Expect", b"100-continue")],
            b"{}",
        ),
        # Methods and versions.
        request(b"OPTIONS"),
        request(b"get"),
        request(b"PUT"),
        request(version=b"2.0"),
        request(version=b"1.2"),
        b"GET /i HTTP/1.1\r\n",  # head not complete
        b"GET /i HTTP/1.1\r\nHost: h\r\n",
        b"GET  /i HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /i  HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\r\nGET /i HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET i HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET http://h/i HTTP/1.1\r\nHost: h\r\n\r\n",
        # Targets with bytes llhttp may treat otherwise.
        request(target=b"/i#frag"),
        request(target=b"/i?q=\xc3\xa9"),
        request(target=b"/i?q=a\tb"),
        request(target=b"/i?q=[1]"),
        request(target=b'/i?q="x"'),
        request(target=b"/i?q={x}|^`<>\\"),
        # Header lines.
        b"GET /i HTTP/1.1\nHost: h\n\n",
        b"GET /i HTTP/1.1\r\nHost: h\n\r\n",
        b"GET /i HTTP/1.1\r\nHost : h\r\n\r\n",
        b"GET /i HTTP/1.1\r\nHost:\th\r\n\r\n",
        b"GET /i HTTP/1.1\r\nHost: h \r\n\r\n",
        b"GET /i HTTP/1.1\r\nHost: \r\n\r\n",
        b"GET /i HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET /i HTTP/1.1\r\nX: a\r\n b\r\n\r\n",  # obs-fold
        b"GET /i HTTP/1.1\r\n: v\r\n\r\n",
        b"GET /i HTTP/1.1\r\nX(y): v\r\n\r\n",
        b"GET /i HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",
        b"GET /i HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
        b"GET /i HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    ],
)
def test_what_is_not_plain_is_left_to_llhttp(data: bytes) -> None:
    assert plainpath.parse_head is not None
    assert plainpath.parse_head(data, 2000) is None


@compiled
def test_a_head_over_the_line_limit_is_left_to_llhttp() -> None:
    assert plainpath.parse_head is not None
    headers = [(b"X-%d" % i, b"v") for i in range(5)]
    assert plainpath.parse_head(request(headers=headers), 5) is not None
    assert plainpath.parse_head(request(headers=headers), 4) is None


@compiled
def test_every_captured_tracker_request_is_read_as_llhttp_reads_it() -> None:
    taken = 0
    for captured in all_captured_requests():
        body = captured["body"]
        data = (
            f"{captured['method']} {captured['target']} {captured['http_version']}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in captured["headers"])
            + "\r\n"
        ).encode("utf-8") + (body.encode("utf-8") if body else b"")
        parsed = check_against_llhttp(data)
        if captured["method"] in ("GET", "POST"):
            assert parsed is not None, captured["seq"]
            taken += 1
    assert taken >= 70  # 55 + 15 + 11 requests, less the preflights


_TOKEN = st.text("abcXYZ-_.!#$%&'*+^`|~019", min_size=0, max_size=8).map(str.encode)
_VALUE = st.text('"\\;=,abcAZ:/%-', min_size=1, max_size=12).map(str.encode) | (
    st.binary(max_size=12) | st.text(" \t;=", max_size=3).map(str.encode)
)
_NAMES = (
    st.sampled_from(
        [
            b"Host",
            b"Content-Length",
            b"content-length",
            b"Connection",
            b"Transfer-Encoding",
            b"Upgrade",
            b"Expect",
            b"Cookie",
            b"Proxy-Connection",
            b"HOST",
            b"X-Forwarded-For",
            b"SP-Anonymous",
            b"User-Agent",
            b"Referer",
            b"Origin",
            b"Content-Type",
        ]
    )
    | _TOKEN
)
_VALUES = (
    st.sampled_from(
        [
            b"close",
            b"keep-alive",
            b"Upgrade",
            b"chunked",
            b"0",
            b"3",
            b"03",
            b" 3",
            b"h",
            b'a=1; sp="x" ;sp=2',
            b"sp = u1",
            b"Text/Plain",
        ]
    )
    | _VALUE
)


@st.composite
def mutated_requests(draw: Any) -> bytes:
    """Requests that are mostly well formed, with a few odd parts and, now and
    then, a byte changed."""
    odd = st.integers(0, 9).map(lambda n: n == 0)  # one time in ten
    method = (
        draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"GE"]))
        if draw(odd)
        else draw(st.sampled_from([b"GET", b"HEAD", b"POST"]))
    )
    target = draw(st.sampled_from([b"/i", b"/com.snowplowanalytics.snowplow/tp2"]))
    if draw(odd):
        target = draw(st.sampled_from([b"*", b"", b"i", b"http://h/i"]))
    tail = st.text("?&=%/:@!$'()*+,;~abcAZ09-._", max_size=12).map(str.encode)
    target += draw(st.binary(max_size=10) if draw(odd) else tail)
    version = (
        draw(st.sampled_from([b"2.0", b"1.1 ", b"1.2"]))
        if draw(odd)
        else (draw(st.sampled_from([b"1.1", b"1.0"])))
    )
    lines = draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=6))
    body = draw(st.binary(max_size=8))
    if method == b"POST" and not draw(odd):
        lines.append((b"Content-Length", b"%d" % len(body)))
    lines = draw(st.permutations(lines))

    def separator() -> bytes:
        odd_one: bytes = draw(st.sampled_from([b":", b":  ", b" : ", b":\t", b""]))
        return odd_one if draw(odd) else b": "

    def ending() -> bytes:
        odd_one: bytes = draw(st.sampled_from([b"\n", b"\r", b"\r\r\n"]))
        return odd_one if draw(odd) else b"\r\n"

    head = method + b" " + target + b" HTTP/" + version + ending()
    for name, value in lines:
        head += name + separator() + value + ending()
    data: bytes = head + ending() + body + draw(st.binary(max_size=4))
    if draw(odd):
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    return data


@compiled
@settings(
    max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(mutated_requests())
@example(b"GET /i HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
@example(b"POST /a/b HTTP/1.1\r\nContent-Length: 03\r\n\r\nabc")
@example(b"POST /a/b HTTP/1.1\r\ncontent-length: 0\r\nConnection: Close\r\n\r\nGET")
def test_random_requests_are_read_as_llhttp_reads_them_or_left_to_it(
    data: bytes,
) -> None:
    check_against_llhttp(data)


@compiled
def test_the_property_test_meets_requests_that_are_taken() -> None:
    # The generator above must reach accepted requests too, or it tests little.
    accepted = 0
    for data in (
        b"GET /i HTTP/1.1\r\nHost:h\r\n\r\n",
        b"HEAD /i?x=%zz HTTP/1.0\r\nConnection: keep-alive\r\nX:  y z\r\n\r\n",
        b"POST /a/b HTTP/1.1\r\nContent-Length: 03\r\n\r\nabcGET",
    ):
        accepted += check_against_llhttp(data) is not None
    assert accepted == 3


# --- scan_headers ----------------------------------------------------------

_HEADER_NAMES = st.sampled_from(
    [
        b"host",
        b"cookie",
        b"user-agent",
        b"referer",
        b"origin",
        b"content-type",
        b"content-length",
        b"transfer-encoding",
        b"sp-anonymous",
        b"x-forwarded-for",
        b"Host",
        b"x-a",
        b"1-2",
    ]
) | st.binary(min_size=0, max_size=5)
_HEADER_VALUES = st.text(' "\\;=abcABC\x7f-', max_size=20).map(str.encode) | st.binary(
    max_size=10
)


@compiled
@settings(max_examples=2000, deadline=None)
@given(
    headers=st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=10),
    post=st.booleans(),
    proxy=st.sampled_from([b"", b"x-forwarded-for", b"host"]),
    cookie_name=st.sampled_from([b"sp", b"a", b"=", b" sp"]),
)
@example(
    headers=[(b"cookie", b' a=1; sp = " x " ;sp=2')],
    post=False,
    proxy=b"",
    cookie_name=b"sp",
)
@example(
    headers=[(b"cookie", b'sp="\\"q'), (b"Host", b"h")],
    post=False,
    proxy=b"",
    cookie_name=b"sp",
)
def test_scan_headers_gives_what_its_python_twin_gives(
    headers: list[tuple[bytes, bytes]], post: bool, proxy: bytes, cookie_name: bytes
) -> None:
    compiled_scan = plainpath.scan_headers(headers, post, proxy, cookie_name)
    assert compiled_scan == plainpath.scan_headers_py(headers, post, proxy, cookie_name)


@compiled
def test_scan_headers_reads_a_tracker_request() -> None:
    headers = [
        (b"host", b"c.example"),
        (b"user-agent", b'Mozilla "5.0"'),
        (b"cookie", b'a=1; sp="5d7c0b9e-0001"; b=2'),
        (b"content-type", b"Application/JSON"),
        (b"x-forwarded-for", b"203.0.113.9"),
    ]
    scanned = plainpath.scan_headers(headers, True, b"x-forwarded-for", b"sp")
    assert scanned == (
        b'[["host","c.example"],["user-agent","Mozilla \\"5.0\\""],'
        b'["cookie","a=1; sp=\\"5d7c0b9e-0001\\"; b=2"],'
        b'["content-type","Application/JSON"],["x-forwarded-for","203.0.113.9"]]',
        sum(len(n) + len(v) + 4 for n, v in headers),
        b'a=1; sp="5d7c0b9e-0001"; b=2',
        b"c.example",
        None,
        b"203.0.113.9",
        b'"Mozilla \\"5.0\\""',
        b"null",
        b'"c.example"',
        b'"application/json"',
        b"5d7c0b9e-0001",
    )
    assert scanned[-1] == cookie_value([headers[2][1]], b"sp")
    # A Content-Length takes a request without a body off the straight path.
    assert (
        plainpath.scan_headers([*headers, (b"content-length", b"1")], False, b"", b"sp")
        is None
    )


@compiled
def test_scan_headers_leaves_long_lists_to_python() -> None:
    headers = [(b"x-%d" % i, b"v") for i in range(65)]
    assert plainpath.scan_headers(headers, False, b"", b"sp") is None
    assert plainpath.scan_headers(headers[:64], False, b"", b"sp") is not None
    assert plainpath.scan_headers_py(headers, False, b"", b"sp") is not None


# --- without the C module ----------------------------------------------------


def test_a_collector_without_the_c_module_records_and_answers_alike(
    tmp_path: Path,
) -> None:
    """The same requests to a collector using the C module (where built) and
    to one told to do without (PLOWLINE_PURE_PYTHON, as where no C compiler
    was there at install time): the same answers and records."""
    page_view = request(
        target=b"/i?e=pv&page=Home&url=http%3A%2F%2Fshop.example%2F",
        headers=[
            (b"Host", b"c.example"),
            (b"User-Agent", b'Mozilla/5.0 "quoted"'),
            (b"Cookie", b"a=1; sp=5d7c0b9e-0001-4000-8000-00000000beef"),
            (b"Origin", b"https://shop.example"),
        ],
    )
    batch = request(
        b"POST",
        b"/com.snowplowanalytics.snowplow/tp2",
        [
            (b"Host", b"c.example"),
            (b"Content-Type", b"application/json; charset=UTF-8"),
            (b"Cookie", b"sp=5d7c0b9e-0001-4000-8000-00000000beef"),
            (b"Content-Length", b"%d" % len(BATCH)),
        ],
        BATCH,
    )
    outcomes = []
    for pure in (False, True):
        env = {"PLOWLINE_PURE_PYTHON": "1"} if pure else {}
        workdir = tmp_path / f"pure-{pure}"
        workdir.mkdir()
        collector = start_collector(workdir, env=env)
        try:
            with socket.create_connection(("127.0.0.1", collector.port)) as sock:
                sock.sendall(page_view + batch)
                answers = _read_answers(sock, 2)
        finally:
            assert collector.stop() == 0
        records = [
            {
                k: v
                for k, v in orjson.loads(encode_record(r)).items()
                if k not in ("id", "tstamp")
            }
            for r in collector.records()
        ]
        outcomes.append((answers, records))
    (answers, records), (pure_answers, pure_records) = outcomes
    assert answers == pure_answers
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 2
    assert records == pure_records
    assert [r["method"] for r in records] == ["GET", "POST"]
    assert records[0]["network_userid"] == "5d7c0b9e-0001-4000-8000-00000000beef"
    assert records[1]["body"] == BATCH.decode()


def test_the_switch_leaves_the_c_module_unused(tmp_path: Path) -> None:
    code = (
        "from plowline.collector import plainpath; "
        "print(plainpath.COMPILED, plainpath.read_plain, "
        "plainpath.scan_headers is plainpath.scan_headers_py)"
    )
    env = {**os.environ, "PLOWLINE_PURE_PYTHON": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["False", "None", "True"]


BATCH = (
    b'{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",'
    b'"data":[{"e":"pv","p":"web","tv":"js-3.24.6","eid":"2d1594ce-44c1-4c28-92c3-'
    b'de4ad68c2faa","url":"http://shop.example/"}]}'
)


def _read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` answers with a Content-Length each, without their Date and
    the cookie's Expires."""
    data = b""
    answers: list[bytes] = []
    sock.settimeout(10)
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "the collector closed the connection"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk
            rest += chunk
        lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"date:")]
        # The cookie's expiry moves with the clock's second.
        lines = [re.sub(rb"; Expires=[^;]*", b"", x) for x in lines]
        answers.append(b"\r\n".join(lines) + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return answers
