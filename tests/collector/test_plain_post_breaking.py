"""Hostile tests of the plain POST path (CollectorApp.plain_post through
http1.HttpConnection._post_plain and ServerState.flush_plain).

Each request is run twice in process, through the collector's own HTTP server
on a fake transport: once with the plain POST path on, once with it off (the
ASGI way, CollectorApp._track). Both must give the same records (but the record
id), the same answer (but the Date header) and the same metrics. A few checks
run against a real ``plowline collector`` (durability os and fsync).

The three bugs it found (an Upgrade POST losing its body; a pipelined Upgrade
request dropping those queued before it; a 100 Continue sent for a body already
received) are fixed; their tests are at the end of the file.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import errno
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from collector_process import RunningCollector, start_collector
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raw_http import FakeTransport, feed_reads, raw_log_lines

from plowline.collector import plainpath
from plowline.collector.app import CollectorApp
from plowline.collector.config import CollectorConfig
from plowline.collector.http1 import ServerState
from plowline.rawlog.record import RawRecord, decode_record, encode_record
from plowline.rawlog.writer import RawLogWriter

NOW = 1796398275.5
TP2 = b"/com.snowplowanalytics.snowplow/tp2"
PEER = ("198.51.100.4", 40000)
UUID4 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
BASE = [(b"Host", b"c.example"), (b"Content-Type", b"application/json")]


# --- harness ----------------------------------------------------------------


class _FailingWriter(RawLogWriter):
    def write_line(self, line: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@dataclasses.dataclass
class Outcome:
    answer: bytes  # without the date header
    records: list[RawRecord]
    taken: int  # requests plain_post took
    closed: bool
    received: dict[str, int]
    written: int
    write_errors: int
    metrics: str


def run(
    reads: bytes | list[bytes],
    *,
    direct: bool,
    peer: tuple[Any, ...] = PEER,
    failing: bool = False,
    **config: Any,
) -> Outcome:
    """Feed ``reads`` (one data_received each) to one connection."""
    chunks = [reads] if isinstance(reads, bytes) else reads

    async def exchange(folder: Path) -> Outcome:
        writer = (_FailingWriter if failing else RawLogWriter)(folder)
        app = CollectorApp(
            CollectorConfig(raw_dir=folder, **config), writer, clock=lambda: NOW
        )
        state = ServerState(app, asyncio.get_running_loop())
        taken: list[bool] = []
        original = app.plain_post

        def spy(*request: Any) -> Any:
            record = original(*request)
            taken.append(record is not None)
            return record

        state.plain_post = spy if direct else None  # type: ignore[assignment]
        connection = state.protocol()
        transport = FakeTransport(peer)
        connection.connection_made(transport)  # type: ignore[arg-type]
        await feed_reads(state, connection, chunks)
        closed = transport.closed
        metrics = app.metrics
        outcome = Outcome(
            b"",
            [],
            sum(taken),
            closed,
            dict(metrics.received),
            metrics.records_written,
            metrics.write_errors,
            metrics.render().decode(),
        )
        state.close()
        writer.close()
        outcome.answer = transport.answer_without_date()
        return outcome

    with tempfile.TemporaryDirectory() as temp:
        outcome = asyncio.run(exchange(Path(temp)))
        lines = raw_log_lines(Path(temp))
    sent = b"".join(chunks)
    records = [decode_record(line) for line in lines]
    # New network user ids are random: name them by position, in the answer too.
    for index, record in enumerate(records):
        userid = record.network_userid or ""
        if UUID4.fullmatch(userid) and userid.encode() not in sent:
            outcome.answer = outcome.answer.replace(userid.encode(), b"UID%d" % index)
            records[index] = dataclasses.replace(record, network_userid=f"UID{index}")
    outcome.records = records
    return outcome


def without_id(record: RawRecord) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(encode_record(record))
    del data["id"]
    return data


def both_ways(reads: bytes | list[bytes], **kwargs: Any) -> tuple[Outcome, Outcome]:
    """The plain way and the ASGI way, checked to agree."""
    direct = run(reads, direct=True, **kwargs)
    general = run(reads, direct=False, **kwargs)
    assert direct.answer == general.answer
    assert [without_id(r) for r in direct.records] == [
        without_id(r) for r in general.records
    ]
    for a, b in zip(direct.records, general.records, strict=True):
        assert a.id != b.id
    assert direct.closed == general.closed
    assert direct.received == general.received
    assert (direct.written, direct.write_errors) == (
        general.written,
        general.write_errors,
    )
    assert direct.metrics == general.metrics
    return direct, general


def post(
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    path: bytes = TP2,
    *,
    version: bytes = b"1.1",
    length: bool = True,
) -> bytes:
    head = b"POST " + path + b" HTTP/" + version + b"\r\n"
    head += b"".join(n + b": " + v + b"\r\n" for n, v in (headers or BASE))
    if length:
        head += b"content-length: %d\r\n" % len(body)
    return head + b"\r\n" + body


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def set_cookie(answer: bytes) -> bytes | None:
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"set-cookie:"):
            return line.partition(b":")[2].strip()
    return None


# --- bodies -----------------------------------------------------------------

UTF8_BODIES = {
    "json": b'{"schema":"iglu:x","data":[{"e":"pv"}]}',
    "quotes_backslashes": b'"\\"\\\\\\u0000\\n" \\',
    "all_controls": bytes(range(0x20)),
    "nul_del": b"a\x00b\x7fc",
    "line_separators": "\u2028x\u2029\u0085".encode(),
    "bom": b"\xef\xbb\xbf{}",
    "astral": "\U0001f600\U0010ffff".encode(),
    "noncharacters": "\ufffe\uffff\ufdd0".encode(),
    "html_like": b"</script><!-- & ' `",
    "one_space": b" ",
    "crlf": b"\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(UTF8_BODIES))
def test_utf8_bodies_take_the_plain_way_and_agree(name: str) -> None:
    body = UTF8_BODIES[name]
    direct, _ = both_ways(post(body))
    assert direct.taken == 1
    assert status(direct.answer) == 200
    assert direct.answer.endswith(b"\r\n\r\nok")
    [record] = direct.records
    assert record.body == body
    assert "body_base64" not in orjson.loads(encode_record(record))


INVALID_BODIES = {
    "lone_surrogate": b"\xed\xa0\x80",
    "surrogate_pair_cesu": b"\xed\xa0\xbd\xed\xb8\x80",
    "overlong_slash": b"\xc0\xaf",
    "overlong_nul": b"\xc0\x80",
    "latin1": b"caf\xe9",
    "truncated": b"\xe2\x82",
    "above_10ffff": b"\xf4\x90\x80\x80",
    "gzip": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
}


@pytest.mark.parametrize("name", sorted(INVALID_BODIES))
def test_invalid_utf8_bodies_go_the_asgi_way_as_base64(name: str) -> None:
    body = INVALID_BODIES[name]
    direct, _ = both_ways(post(body))
    assert direct.taken == 0
    assert status(direct.answer) == 200
    [record] = direct.records
    data = orjson.loads(encode_record(record))
    assert "body" not in data
    assert base64.b64decode(data["body_base64"]) == body


def test_empty_bodies_are_recorded_as_null_both_ways() -> None:
    for request, taken in (
        (post(b""), int(plainpath.COMPILED)),
        (post(b"", length=False), 0),
    ):
        direct, _ = both_ways(request)
        # Without Content-Length, llhttp reads it; it has no body, and plain
        # POSTs are only those with one. With "content-length: 0", the
        # compiled reader takes it straight.
        assert direct.taken == taken
        [record] = direct.records
        assert record.body is None
        assert status(direct.answer) == 200


@pytest.mark.parametrize(
    ("body", "taken", "code"),
    [
        (b"x" * 9, 1, 200),
        (b"x" * 10, 1, 200),
        (b"x" * 11, 0, 413),
        ("\u00e9".encode() * 5, 1, 200),  # 10 bytes, 5 characters
        ("\u00e9".encode() * 5 + b"x", 0, 413),
        ("\U0001f600".encode() * 3, 0, 413),  # 12 bytes, 3 characters
    ],
)
def test_body_limit_counts_bytes_at_and_over_it(
    body: bytes, taken: int, code: int
) -> None:
    direct, _ = both_ways(post(body), max_body_bytes=10)
    assert direct.taken == taken
    assert status(direct.answer) == code
    [record] = direct.records
    assert record.body == body
    if code == 413:
        assert record.extra["error"] == (
            f"size_violation: body of {len(body)} bytes exceeds the limit of 10 bytes"
        )
    else:
        assert "error" not in record.extra


def test_header_limit_boundary() -> None:
    # x: <pad> (5 + pad) and content-length: 2 (19): 40 at pad 16.
    for pad, taken, code in ((16, 1, 200), (17, 0, 431)):
        request = post(b"{}", [(b"X", b"v" * pad)])
        direct, _ = both_ways(request, max_header_bytes=40)
        assert (direct.taken, status(direct.answer)) == (taken, code)
        assert len(direct.records) == 1


def test_querystring_limit_boundary() -> None:
    for size, taken, code in ((10, 1, 200), (11, 0, 414)):
        request = post(b"{}", path=TP2 + b"?" + b"a" * size)
        direct, _ = both_ways(request, max_querystring_bytes=10)
        assert (direct.taken, status(direct.answer)) == (taken, code)
        assert direct.records[0].querystring == b"a" * size


# --- content types, paths, querystrings ------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        b"Application/JSON; Charset=UTF-8",
        b"APPLICATION/X-WWW-FORM-URLENCODED",
        b'text/plain; charset="a\\"b"',
        b"",
        b"  spaced  ",
    ],
)
def test_content_type_is_lower_cased_the_same_way(content_type: bytes) -> None:
    direct, _ = both_ways(post(b"{}", [(b"Content-Type", content_type)]))
    assert direct.taken == 1
    [record] = direct.records
    # As the parser gave the value (leading spaces dropped), lower-cased.
    assert record.content_type == content_type.lstrip().decode().lower()
    assert record.content_type == dict(record.headers)["content-type"].lower()


def test_no_content_type_is_null() -> None:
    direct, _ = both_ways(post(b"{}", [(b"Host", b"h")]))
    assert direct.records[0].content_type is None


@pytest.mark.parametrize(
    ("target", "taken", "code", "path"),
    [
        (b"/a/b", 1, 200, "/a/b"),
        (b"/a/b/", 0, 404, None),
        (b"//b", 0, 404, None),
        (b"/a//", 0, 404, None),
        (b"/a%2Fb/c", 0, 404, None),  # three segments once decoded
        (b"/com.acme/v%31", 0, 200, "/com.acme/v%31"),
        (b"/r/tp2", 0, 200, "/r/tp2"),
        (b"/a/b;p=1", 1, 200, "/a/b;p=1"),
        (b"/a/b#frag", 1, 200, "/a/b#frag"),
        (b"/caf\xc3\xa9/v1", 0, 200, "/caf\u00e9/v1"),
        (b"http://h.example/a/b", 1, 200, "/a/b"),
        (b"/i", 0, 404, None),
        (b"/health", 0, 404, None),
    ],
)
def test_paths(target: bytes, taken: int, code: int, path: str | None) -> None:
    direct, _ = both_ways(post(b'{"e":1}', path=target))
    assert direct.taken == taken
    assert status(direct.answer) == code
    if path is None:
        assert direct.records == []
    else:
        [record] = direct.records
        assert record.path == path
        assert record.body == b'{"e":1}'


@pytest.mark.parametrize(
    ("query", "taken", "querystring", "nuid"),
    [
        (b"?x=1", 1, b"x=1", None),
        (b"?", 1, None, None),
        (b"?nuid=abc", 1, b"nuid=abc", "abc"),
        (b"?a=1&nuid=x%2Dy", 1, b"a=1&nuid=x%2Dy", "x-y"),
        (b"?nuid=a%22b", 1, b"nuid=a%22b", None),  # a quote: not usable
        (b"?nuid=&nuid=z", 1, b"nuid=&nuid=z", None),  # the first one decides
        (b"?x=50%off&y=+", 1, b"x=50%off&y=+", None),
        (b'?x="', 0, b'x="', None),
        (b"?x=\\", 0, b"x=\\", None),
        (b"?q=caf\xc3\xa9", 0, "q=caf\u00e9".encode(), None),
    ],
)
def test_querystrings_on_post(
    query: bytes, taken: int, querystring: bytes | None, nuid: str | None
) -> None:
    direct, _ = both_ways(post(b"{}", path=TP2 + query))
    assert direct.taken == taken
    [record] = direct.records
    assert record.querystring == querystring
    if nuid is not None:
        assert record.network_userid == nuid
        assert set_cookie(direct.answer).startswith(b"sp=" + nuid.encode() + b";")
    else:
        assert record.network_userid == "UID0"


# --- headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "taken"),
    [
        ([(b"X", b"a"), (b"x", b"b")], 0),  # duplicate name
        ([(b"Host", b"a"), (b"HOST", b"b")], 0),
        ([(b"X", b"a\tb")], 0),  # tab: not printable
        ([(b"X", b"caf\xc3\xa9")], 0),  # UTF-8 value
        ([(b"X", b"caf\xe9")], 0),  # Latin-1 value
        ([(b"X", b'a"b\\c')], 1),
        ([(b"X", b"")], 1),
        ([(b"User-Agent", b'ua "x"'), (b"Referer", b"r\\")], 1),
        ([(b"Host", b"")], 1),
        ([(b"SP-Anonymous", b"*"), (b"Cookie", b"sp=zz")], 0),
    ],
)
def test_header_forms(headers: list[tuple[bytes, bytes]], taken: int) -> None:
    direct, _ = both_ways(post(b"{}", headers))
    assert direct.taken == taken
    assert status(direct.answer) == 200
    [record] = direct.records
    names = [name for name, _ in record.headers]
    sent = [name.decode().lower() for name, _ in headers]
    if "sp-anonymous" in sent:  # anonymous: the cookie is left out
        sent.remove("cookie")
        assert record.network_userid == "00000000-0000-0000-0000-000000000000"
        assert record.ip is None
    assert names[:-1] == sent
    assert record.body == b"{}"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [(None, b"*"), (b"", b"*"), (b"null", b"null"), (b"https://o.example", None)],
)
def test_origin(origin: bytes | None, allowed: bytes | None) -> None:
    headers = [(b"Host", b"h")] + ([(b"Origin", origin)] if origin is not None else [])
    direct, _ = both_ways(post(b"{}", headers))
    assert direct.taken == 1
    expected = allowed if allowed is not None else origin
    assert b"\r\naccess-control-allow-origin: " + expected + b"\r\n" in direct.answer


@pytest.mark.parametrize(
    ("cookies", "userid"),
    [
        ([b"sp=abc; x=1"], "abc"),
        ([b'sp="abc"'], "abc"),
        ([b"  sp = abc  "], "abc"),
        ([b"sp=a b"], None),  # a space: not usable
        ([b"sp=" + b"a" * 129], None),  # too long
        ([b"x=1", b"sp=zz"], "zz"),  # two cookie headers: the ASGI way
        ([b"sp=a;sp=b"], "a"),
        ([b"sp=a,b"], None),
    ],
)
def test_sp_cookie_forms(cookies: list[bytes], userid: str | None) -> None:
    headers = [(b"Host", b"h")] + [(b"Cookie", c) for c in cookies]
    direct, _ = both_ways(post(b"{}", headers))
    assert direct.taken == (1 if len(cookies) == 1 else 0)
    [record] = direct.records
    assert record.network_userid == (userid or "UID0")
    assert set_cookie(direct.answer).startswith(
        b"sp=" + record.network_userid.encode() + b";"
    )


def test_cookie_settings() -> None:
    direct, _ = both_ways(post(b"{}"), cookie_enabled=False)
    assert set_cookie(direct.answer) is None
    direct, _ = both_ways(post(b"{}", [(b"Cookie", b"uid=abc")]), cookie_name="uid")
    assert direct.records[0].network_userid == "abc"
    host = [(b"Host", b"A.Shop.Example.:8080")]
    direct, _ = both_ways(post(b"{}", host), cookie_domains=("shop.example",))
    assert b"Domain=shop.example" in set_cookie(direct.answer)
    direct, _ = both_ways(post(b"{}"), cookie_secure=True, cookie_same_site="None")
    assert b"Secure" in set_cookie(direct.answer)


@pytest.mark.parametrize(
    ("cookie", "tracked"),
    [
        (b"dnt=1", False),
        (b"x=1; dnt=1", False),
        (b'dnt="1"', False),
        (b"dnt=0", True),
        (b"dnt=", True),
        (b"dnt1=1", True),
    ],
)
def test_do_not_track_cookie(cookie: bytes, tracked: bool) -> None:
    direct, _ = both_ways(
        post(b"{}", [(b"Cookie", cookie)]),
        do_not_track_cookie_name="dnt",
        do_not_track_cookie_value="1",
    )
    assert direct.taken == (1 if tracked else 0)
    assert len(direct.records) == (1 if tracked else 0)
    assert status(direct.answer) == 200
    assert (set_cookie(direct.answer) is not None) == tracked


def test_do_not_track_any_value_and_regex() -> None:
    request = post(b"{}", [(b"Cookie", b"dnt=yes")])
    direct, _ = both_ways(request, do_not_track_cookie_name="dnt")
    assert direct.records == []
    direct, _ = both_ways(
        request,
        do_not_track_cookie_name="dnt",
        do_not_track_cookie_value="y.*",
        do_not_track_cookie_regex=True,
    )
    assert direct.records == []


@pytest.mark.parametrize(
    ("headers", "peer", "ip"),
    [
        ([(b"X-Forwarded-For", b"203.0.113.7")], PEER, "203.0.113.7"),
        ([(b"X-Forwarded-For", b"203.0.113.7, 198.51.100.9")], PEER, "203.0.113.7"),
        ([(b"X-Forwarded-For", b"garbage")], PEER, "198.51.100.4"),
        ([(b"X-Forwarded-For", b'"[2001:db8::1]:80"')], PEER, "2001:db8::1"),
        ([(b"X-Forwarded-For", b"")], PEER, "198.51.100.4"),
        ([(b"X-Forwarded-For", b"203.0.113.7")], ("203.0.113.50", 1), "203.0.113.50"),
        (
            [(b"X-Forwarded-For", b"203.0.113.7")],
            ("::ffff:198.51.100.4", 1, 0, 0),
            "203.0.113.7",
        ),
        (
            [(b"X-Forwarded-For", b"203.0.113.7"), (b"x-forwarded-for", b"10.1.1.1")],
            PEER,
            "10.1.1.1",
        ),
    ],
)
def test_trusted_proxies(
    headers: list[tuple[bytes, bytes]], peer: tuple[Any, ...], ip: str
) -> None:
    direct, _ = both_ways(
        post(b"{}", headers), peer=peer, trusted_proxies=("198.51.100.0/24",)
    )
    assert direct.records[0].ip == ip


def test_forwarded_header_proxy() -> None:
    request = post(b"{}", [(b"Forwarded", b"for=203.0.113.9;proto=http")])
    direct, _ = both_ways(
        request, trusted_proxies=("198.51.100.0/24",), proxy_header="forwarded"
    )
    assert direct.taken == 1
    assert direct.records[0].ip == "203.0.113.9"


# --- connections ------------------------------------------------------------


def test_http10_and_connection_close() -> None:
    direct, _ = both_ways(post(b"{}", [(b"Host", b"h")], version=b"1.0"))
    assert direct.taken == 1
    assert b"\r\nconnection: close\r\n" in direct.answer
    assert direct.closed
    keep = [(b"Host", b"h"), (b"Connection", b"keep-alive")]
    direct, _ = both_ways(post(b"{}", keep, version=b"1.0"))
    assert b"\r\nconnection: keep-alive\r\n" in direct.answer
    assert not direct.closed
    direct, _ = both_ways(post(b"{}", [(b"Connection", b"close")]))
    assert b"\r\nconnection: close\r\n" in direct.answer
    assert direct.closed


P = post(b'{"e":1}', [(b"Host", b"h"), (b"Cookie", b"sp=u1")])
NOT_UTF8 = post(b"\xff", [(b"Host", b"h"), (b"Cookie", b"sp=u1")])
PIXEL = b"GET /i?e=pv HTTP/1.1\r\nHost: h\r\nCookie: sp=u1\r\n\r\n"
CHUNKED = (
    b"POST /a/b HTTP/1.1\r\nHost: h\r\nCookie: sp=u1\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
)


@pytest.mark.parametrize(
    "sequence",
    [
        [P, P],
        [PIXEL, P],
        [P, PIXEL],
        [P, NOT_UTF8, P, PIXEL, CHUNKED, P],
        [CHUNKED, P, P],
    ],
)
def test_pipelined_mixes_are_answered_in_order(sequence: list[bytes]) -> None:
    direct, _ = both_ways(b"".join(sequence))
    assert direct.answer.count(b"HTTP/1.1 200 OK") == len(sequence)
    assert len(direct.records) == len(sequence)
    assert [r.method for r in direct.records] == [
        req.split(b" ")[0].decode() for req in sequence
    ]


def test_pipelined_post_then_garbage() -> None:
    garbage = b"GARBAGE\x01\r\n\r\n"
    direct = run(P + garbage, direct=True)
    general = run(P + garbage, direct=False)
    for outcome in (direct, general):
        assert status(outcome.answer) == 200
        assert b"400 Bad Request" in outcome.answer
        assert len(outcome.records) == 2
        assert outcome.closed
        assert without_id(outcome.records[0])["body"] == '{"e":1}'
        assert outcome.records[1].extra["error"].startswith("unparsable_request")
    if plainpath.COMPILED:
        # Read without llhttp, the POST is not in the garbage's record.
        assert direct.records[1].body == garbage
    else:
        # llhttp gives no offsets: the record holds the whole read.
        assert direct.records[1].body == P + garbage
    assert general.records[1].body == P + garbage


def test_body_in_two_reads_goes_the_asgi_way_and_is_right() -> None:
    head_end = P.index(b"\r\n\r\n") + 4
    for cut in range(head_end, len(P)):
        direct, _ = both_ways([P[:cut], P[cut:]])
        assert direct.taken == 0
        [record] = direct.records
        assert record.body == b'{"e":1}'
        assert status(direct.answer) == 200


def test_head_split_anywhere_with_body_whole_in_the_last_read() -> None:
    reference = run(P, direct=False)
    head_end = P.index(b"\r\n\r\n") + 4
    for cut in range(1, head_end):
        direct = run([P[:cut], P[cut:]], direct=True)
        assert direct.taken == 1, cut
        assert direct.answer == reference.answer, cut
        assert [without_id(r) for r in direct.records] == [
            without_id(r) for r in reference.records
        ], cut


def test_big_body_in_one_read_then_a_pipelined_post() -> None:
    big = post(b"x" * 300_000, [(b"Host", b"h"), (b"Cookie", b"sp=u1")])
    direct, _ = both_ways(big + P, max_body_bytes=400_000)
    assert direct.taken == 1
    assert [len(r.body or b"") for r in direct.records] == [300_000, 7]
    assert direct.answer.count(b"200 OK") == 2


def test_client_gone_after_a_whole_post() -> None:
    direct = run(P, direct=True)
    assert direct.taken == 1
    assert len(direct.records) == 1


def test_metrics_count_posts_in_group_post() -> None:
    requests = P + post(b"x" * 11, [(b"Host", b"h")]) + P
    direct, _ = both_ways(requests, max_body_bytes=10)
    assert 'requests_total{group="post",status="200"} 2.0' in direct.metrics
    assert 'requests_total{group="post",status="413"} 1.0' in direct.metrics
    assert direct.received["body"] == 7 + 11 + 7
    assert direct.written == 3


def test_a_failed_store_answers_503_both_ways() -> None:
    request = post(b"{}", [(b"Host", b"h"), (b"Origin", b"https://o")])
    direct, _ = both_ways(request + request, failing=True)
    assert direct.taken == 1
    assert direct.answer.count(b"HTTP/1.1 503 Service Unavailable") == 2
    assert direct.records == []
    assert direct.write_errors == 2
    assert b"access-control-allow-origin: https://o" in direct.answer


# --- random requests ----------------------------------------------------------

_VALUE = st.binary(max_size=12).filter(
    lambda v: all(b >= 0x20 and b != 0x7F for b in v) and v.strip() == v
)
_NAMES = st.sampled_from(
    [
        *(b"x-a", b"User-Agent", b"Referer", b"SP-Anonymous", b"Origin", b"Cookie"),
        *(b"Host", b"Content-Type", b"X-Forwarded-For", b"Connection"),
    ]
)
_SPECIAL = st.sampled_from(
    [b"sp=abc", b"dnt=1", b"close", b"203.0.113.1, 198.51.100.9", b"A/B; C=D"]
)
_QUERY = st.binary(max_size=15).filter(
    lambda v: all(0x21 <= b < 0x7F and b not in b"#?" for b in v)
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(st.binary(max_size=30), st.text(max_size=20).map(str.encode)),
    headers=st.lists(st.tuples(_NAMES, st.one_of(_VALUE, _SPECIAL)), max_size=5),
    path=st.sampled_from([TP2, b"/a/b", b"/r/tp2", b"/a/b/", b"/a%2Fb/c"]),
    query=st.one_of(st.just(b""), _QUERY.map(lambda q: b"?" + q)),
    version=st.sampled_from([b"1.1", b"1.0"]),
)
def test_random_posts_agree(
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    path: bytes,
    query: bytes,
    version: bytes,
) -> None:
    both_ways(
        post(body, headers, path + query, version=version),
        max_body_bytes=20,
        trusted_proxies=("198.51.100.0/24",),
        do_not_track_cookie_name="dnt",
        do_not_track_cookie_value="1",
    )


# --- the bugs this pass found, fixed ---------------------------------------------


def test_expect_continue_answer_is_the_same_both_ways() -> None:
    request = post(b"{}", [(b"Host", b"h"), (b"Expect", b"100-continue")])
    direct = run(request, direct=True)
    general = run(request, direct=False)
    assert direct.taken == 1
    assert direct.answer == general.answer


UPGRADE_PIXEL = (
    b"GET /i?e=pv HTTP/1.1\r\nHost: h\r\nCookie: sp=u1\r\n"
    b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
)


def test_pipelined_upgrade_after_a_plain_post() -> None:
    direct = run(P + PIXEL + UPGRADE_PIXEL, direct=True)
    general = run(P + PIXEL + UPGRADE_PIXEL, direct=False)
    assert direct.taken == 1
    assert direct.answer == general.answer
    # All three answered, the last with connection: close; all recorded.
    assert direct.answer.count(b"HTTP/1.1 200 OK") == 3
    assert len(direct.records) == len(general.records) == 3


def test_upgrade_post_keeps_its_body() -> None:
    headers = [
        (b"Host", b"h"),
        (b"Connection", b"Upgrade, HTTP2-Settings"),
        (b"Upgrade", b"h2c"),
        (b"HTTP2-Settings", b"AAMAAABkAAQCAAAAAAIAAAAA"),
    ]
    body = b'{"e":"pv"}'
    for direct in (True, False):
        outcome = run(post(body, headers), direct=direct)
        [record] = outcome.records
        # Not taken as stored: a 400, and every byte read kept for replay.
        assert status(outcome.answer) == 400
        assert record.extra["error"].startswith("unparsable_request: ")
        assert record.body is not None and record.body.endswith(body)


# --- a real collector ---------------------------------------------------------


def _talk(port: int, chunks: list[bytes], pause: float = 0.15) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for index, chunk in enumerate(chunks):
            if index:
                time.sleep(pause)
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            got = sock.recv(65536)
            if not got:
                return data
            data += got


@pytest.fixture(scope="module", params=["os", "fsync"])
def real(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningCollector]:
    running = start_collector(
        tmp_path_factory.mktemp(f"plain_post_{request.param}"),
        env={
            "PLOWLINE_COLLECTOR_DURABILITY": request.param,
            "PLOWLINE_COLLECTOR_MAX_BODY_BYTES": "10",
        },
    )
    yield running
    assert running.stop() == 0, running.log()


def test_real_collector_records_and_answers_posts(real: RunningCollector) -> None:
    tag = real.raw_dir.parent.name.encode()
    bodies = [b'{"e":"1"}', b"\xff\xfe", b"x" * 11, '\u2028"\\'.encode()]
    requests = [
        post(body, [(b"Host", b"h"), (b"x-test-id", tag + b"-%d" % i)])
        for i, body in enumerate(bodies)
    ]
    # All pipelined in one read, then one whose body comes in a second read.
    split = post(b'{"e":"5"}', [(b"Host", b"h"), (b"x-test-id", tag + b"-split")])
    answers = _talk(real.port, [b"".join(requests)])
    answers += _talk(real.port, [split[:-4], split[-4:]])
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)]
    assert statuses == [200, 200, 413, 200, 200]
    for index, body in enumerate(bodies):
        assert real.record_for(f"{tag.decode()}-{index}").body == body
    assert real.record_for(f"{tag.decode()}-split").body == b'{"e":"5"}'
    metrics = _talk(real.port, [b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n"])
    assert b'requests_total{group="post",status="200"} 4.0' in metrics
    assert b'requests_total{group="post",status="413"} 1.0' in metrics
