"""The collector's routes and settings, through the ASGI application in-process.

Each test builds a :class:`CollectorApp` with the settings it is about and an
in-memory record writer; test_endpoints_server.py checks the same through a
real ``plowline collector`` where the HTTP server matters.
"""

from __future__ import annotations

import gzip
import re
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from asgi_client import MemoryWriter, Response, call

from plowline.collector.app import PIXEL, SNIPPET_BYTES, CollectorApp
from plowline.collector.config import CollectorConfig
from plowline.collector.metrics import CollectorMetrics
from plowline.enrich.adapters import RawEvent, to_raw_events
from plowline.enrich.failed import FailedEvent
from plowline.rawlog.record import decode_record, encode_record

TP2 = "/com.snowplowanalytics.snowplow/tp2"
IGLU = "/com.snowplowanalytics.iglu/v1"
NOW = 1796398275.5


def make_app(
    tmp_path: Path | None = None, script: bytes | None = None, **settings: Any
) -> tuple[CollectorApp, MemoryWriter]:
    writer = MemoryWriter()
    tracker = (tmp_path or Path("/nonexistent")) / "plowline.js"
    if script is not None:
        tracker.write_bytes(script)
    app = CollectorApp(
        CollectorConfig(**settings), writer, clock=lambda: NOW, tracker_script=tracker
    )
    return app, writer


def cookie_attributes(response: Response) -> list[str]:
    value = response.header("set-cookie")
    assert value is not None
    return value.split("; ")


# --- pixel, POST and webhooks ---------------------------------------------------


@pytest.mark.parametrize("path", ["/i", "/ice.png", TP2])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_pixel_paths_answer_the_gif_and_record(path: str, method: str) -> None:
    app, writer = make_app()
    response = call(app, method, path + "?e=pv")

    assert response.status == 200
    assert response.body == (PIXEL if method == "GET" else b"")
    assert response.header("content-type") == "image/gif"
    [record] = writer.records
    assert (record.method, record.path, record.querystring) == (method, path, b"e=pv")


def test_iglu_webhook_get_is_recorded_and_adapted_by_enrich() -> None:
    app, writer = make_app()
    schema = "iglu:com.acme/signup/jsonschema/1-0-0"
    response = call(app, "GET", f"{IGLU}?schema={schema}&plan=gold")

    assert response.status == 200
    [outcome] = to_raw_events(writer.records[0], now_ms=0)
    assert isinstance(outcome, RawEvent)
    assert (outcome.vendor, outcome.version) == ("com.snowplowanalytics.iglu", "v1")


def test_iglu_webhook_post_is_recorded_and_adapted_by_enrich() -> None:
    app, writer = make_app()
    headers = {"content-type": "application/json"}
    target = f"{IGLU}?schema=iglu:com.acme/signup/jsonschema/1-0-0"
    response = call(app, "POST", target, headers, b'[{"plan":"gold"},{"plan":"x"}]')

    assert (response.status, response.text) == (200, "ok")
    outcomes = to_raw_events(writer.records[0], now_ms=0)
    assert [type(o) for o in outcomes] == [RawEvent, RawEvent]


@pytest.mark.parametrize("path", [TP2, IGLU, "/com.mailchimp/v1", "/r/tp2"])
def test_preflight_answers_every_post_path(path: str) -> None:
    app, writer = make_app()
    response = call(app, "OPTIONS", path, {"origin": "https://shop.example"})

    assert response.status == 200
    assert response.header("access-control-allow-origin") == "https://shop.example"
    assert response.header("access-control-allow-headers") == (
        "Content-Type, SP-Anonymous"
    )
    assert writer.records == []


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_health_and_robots_answer_without_recording(method: str) -> None:
    app, writer = make_app()
    health = call(app, method, "/health")
    robots = call(app, method, "/robots.txt")

    assert (health.status, robots.status) == (200, 200)
    if method == "GET":
        assert robots.text == "User-agent: *\nDisallow: /\n"
    assert writer.records == []


def test_tnuid_does_not_change_the_network_user_id() -> None:
    # tnuid is the tracker's word to enrich; the collector's id is nuid or cookie.
    app, writer = make_app()
    response = call(app, "GET", "/i?tnuid=tracker-set", {"cookie": "sp=from-cookie"})

    assert writer.records[0].network_userid == "from-cookie"
    assert cookie_attributes(response)[0] == "sp=from-cookie"


# --- click redirects -------------------------------------------------------------


def test_redirect_to_an_allowed_host_answers_302_and_records() -> None:
    app, writer = make_app(redirect_allowed_hosts=("shop.example",))
    target = "https://shop.example/sale?x=1&y=2"
    encoded = "https%3A%2F%2Fshop.example%2Fsale%3Fx%3D1%26y%3D2"
    response = call(app, "GET", "/r/tp2?e=se&u=" + encoded)

    assert response.status == 302
    assert response.header("location") == target
    assert response.header("cache-control") == "no-cache, no-store, must-revalidate"
    assert response.body == b""
    assert cookie_attributes(response)[0].startswith("sp=")
    [record] = writer.records
    assert record.path == "/r/tp2"
    assert record.extra == {}


def test_redirect_record_becomes_a_uri_redirect_event() -> None:
    app, writer = make_app(redirect_allowed_hosts=("shop.example",))
    call(app, "GET", "/r/tp2?u=https%3A%2F%2Fshop.example%2F")

    [outcome] = to_raw_events(writer.records[0], now_ms=0)
    assert isinstance(outcome, RawEvent)
    assert "uri_redirect" in outcome.params["ue_pr"]


def test_head_redirect_answers_302_without_body() -> None:
    app, writer = make_app(redirect_allowed_hosts=("shop.example",))
    response = call(app, "HEAD", "/r/tp2?u=http://shop.example/")

    assert (response.status, response.body) == (302, b"")
    assert response.header("location") == "http://shop.example/"
    assert len(writer.records) == 1


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("https://a.shop.example/", True),
        ("https://b.a.shop.example/x", True),
        ("https://shop.example/", False),
        ("https://evilshop.example/", False),
        ("https://a.shop.example.evil.example/", False),
    ],
    ids=["subdomain", "deeper", "apex", "suffix-lookalike", "prefix-lookalike"],
)
def test_wildcard_allows_subdomains_only(target: str, allowed: bool) -> None:
    app, _ = make_app(redirect_allowed_hosts=("*.shop.example",))
    response = call(app, "GET", "/r/tp2?u=" + target)

    assert response.status == (302 if allowed else 400)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("e=pv", "no u parameter"),
        ("u=", "not an absolute http or https URL"),
        ("u=javascript:alert(1)", "not an absolute http or https URL"),
        ("u=ftp://shop.example/", "not an absolute http or https URL"),
        ("u=//shop.example/", "not an absolute http or https URL"),
        ("u=https:shop.example", "not an absolute http or https URL"),
        ("u=https://evil.example/", "not on the collector's allow-list"),
        ("u=https://shop.example@evil.example/", "not on the collector's allow-list"),
        ("u=https://evil.example%5C@shop.example/", "not an absolute http"),
        ("u=https://evil.example%09.shop.example/", "not an absolute http"),
        ("u=https://shop.example/%0d%0aSet-Cookie:x=1", "not an absolute http"),
        ("u=https://sh%C3%B6p.example/", "not an absolute http"),
        ("u=https://shop.example:99999/", "not an absolute http"),
    ],
    ids=[
        "missing",
        "empty",
        "javascript",
        "ftp",
        "scheme-relative",
        "no-slashes",
        "other-host",
        "userinfo-trick",
        "backslash-trick",
        "tab-in-host",
        "header-injection",
        "non-ascii",
        "bad-port",
    ],
)
def test_refused_redirect_answers_400_and_is_still_recorded(
    query: str, reason: str
) -> None:
    app, writer = make_app(redirect_allowed_hosts=("shop.example",))
    response = call(app, "GET", "/r/tp2?" + query, {"origin": "https://shop.example"})

    assert response.status == 400
    assert reason in response.text
    assert response.header("location") is None
    assert response.header("set-cookie") is None
    assert response.header("access-control-allow-origin") == "https://shop.example"
    [record] = writer.records
    assert record.querystring == query.encode()
    assert record.extra == {}


def test_redirects_are_refused_when_no_host_is_allowed() -> None:
    app, writer = make_app()
    response = call(app, "GET", "/r/tp2?u=https://shop.example/")

    assert response.status == 400
    assert "redirects are turned off" in response.text
    assert len(writer.records) == 1


@pytest.mark.parametrize(
    ("allowed", "target"),
    [
        ("[::1]", "http://[0:0::1]:8000/"),
        ("shop.example.", "http://SHOP.example/"),
        ("Shop.Example", "http://shop.example./"),
    ],
    ids=["ipv6", "trailing-dot-entry", "case-and-trailing-dot-target"],
)
def test_redirect_hosts_compare_as_browsers_do(allowed: str, target: str) -> None:
    app, _ = make_app(redirect_allowed_hosts=(allowed,))

    assert call(app, "GET", "/r/tp2?u=" + target).status == 302


def test_post_to_the_redirect_path_is_an_ordinary_post() -> None:
    app, writer = make_app()
    response = call(app, "POST", "/r/tp2?u=https://evil.example/", body=b"{}")

    assert (response.status, response.text) == (200, "ok")
    assert len(writer.records) == 1


# --- the tracker script ----------------------------------------------------------


def test_missing_tracker_script_is_a_404_that_says_so() -> None:
    app, writer = make_app()
    response = call(app, "GET", "/plowline.js")

    assert response.status == 404
    assert "tracker is not built" in response.text
    assert writer.records == []


def test_tracker_script_is_served_with_long_caching(tmp_path: Path) -> None:
    script = b"window.plowline = function () {};\n"
    app, writer = make_app(tmp_path, script, tracker_max_age=604800)
    response = call(app, "GET", "/plowline.js")

    assert response.status == 200
    assert response.body == script
    assert response.header("content-type") == "application/javascript; charset=utf-8"
    assert response.header("cache-control") == "public, max-age=604800"
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.header("etag") or "")
    assert writer.records == []


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [
        ("{etag}", 304),
        ("W/{etag}", 304),
        ('"other", {etag}', 304),
        ("*", 304),
        ('"other"', 200),
    ],
    ids=["same", "weak", "in-list", "star", "other"],
)
def test_tracker_script_revalidates_with_its_etag(
    tmp_path: Path, if_none_match: str, status: int
) -> None:
    app, _ = make_app(tmp_path, b"var x;")
    etag = call(app, "GET", "/plowline.js").header("etag") or ""
    headers = {"if-none-match": if_none_match.format(etag=etag)}
    response = call(app, "GET", "/plowline.js", headers)

    assert response.status == status
    assert response.header("etag") == etag
    assert response.body == (b"" if status == 304 else b"var x;")


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("*", True),
        ("gzip;q=0", False),
        ("br", False),
        (None, False),
    ],
)
def test_tracker_script_is_sent_gzipped_to_who_accepts_it(
    tmp_path: Path, accept_encoding: str | None, gzipped: bool
) -> None:
    script = b"window.plowline = function () { return 'plough'; };\n" * 50
    app, _ = make_app(tmp_path, script)
    headers = {"accept-encoding": accept_encoding} if accept_encoding else {}
    response = call(app, "GET", "/plowline.js", headers)

    assert response.status == 200
    assert response.header("vary") == "Accept-Encoding"
    if gzipped:
        assert response.header("content-encoding") == "gzip"
        assert gzip.decompress(response.body) == script
        assert len(response.body) < len(script) // 10
    else:
        assert response.header("content-encoding") is None
        assert response.body == script
    assert response.header("content-length") == str(len(response.body))


def test_head_of_the_tracker_script_has_no_body(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, b"var x;")
    response = call(app, "HEAD", "/plowline.js")

    assert (response.status, response.body) == (200, b"")
    assert response.header("content-length") == "6"


# --- the network-user cookie -----------------------------------------------------

DOMAINS = ("shop.example", ".brand.example")


@pytest.mark.parametrize(
    ("host", "fallback", "domain"),
    [
        ("shop.example", None, "shop.example"),
        ("t.shop.example:8443", None, "shop.example"),
        ("A.B.Brand.Example", None, ".brand.example"),
        ("brand.example.", None, ".brand.example"),
        ("notshop.example", None, None),
        ("other.example", ".fallback.example", ".fallback.example"),
        ("[::1]:8080", ".fallback.example", ".fallback.example"),
        (None, None, None),
    ],
    ids=[
        "equal",
        "child-with-port",
        "case-insensitive",
        "trailing-dot",
        "lookalike",
        "fallback",
        "ipv6-host",
        "no-host",
    ],
)
def test_cookie_domain_is_the_first_that_matches_the_host(
    host: str | None, fallback: str | None, domain: str | None
) -> None:
    app, _ = make_app(cookie_domains=DOMAINS, cookie_domain=fallback)
    headers = {"host": host} if host else {}
    response = call(app, "GET", "/i", headers)

    domains = [a for a in cookie_attributes(response) if a.startswith("Domain=")]
    assert domains == ([f"Domain={domain}"] if domain else [])


def test_first_configured_domain_wins_over_a_later_closer_one() -> None:
    app, _ = make_app(cookie_domains=("example", "shop.example"))
    response = call(app, "GET", "/i", {"host": "t.shop.example"})

    assert "Domain=example" in cookie_attributes(response)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_configured_cookie_attributes_replace_the_defaults(scheme: str) -> None:
    app, _ = make_app(
        cookie_name="nid",
        cookie_path="/t",
        cookie_max_age=60,
        cookie_secure=True,
        cookie_same_site="strict",
        cookie_http_only=False,
    )
    response = call(app, "GET", "/i", scheme=scheme)

    attributes = cookie_attributes(response)
    assert attributes[0].startswith("nid=")
    assert attributes[1:3] == ["Path=/t", "Max-Age=60"]
    assert attributes[3] == "Expires=" + formatdate(int(NOW) + 60, usegmt=True)
    assert attributes[4:] == ["SameSite=Strict", "Secure"]


def test_secure_can_be_turned_off_over_https() -> None:
    app, _ = make_app(cookie_secure=False, cookie_same_site="Lax")
    response = call(app, "GET", "/i", scheme="https")

    assert cookie_attributes(response)[-2:] == ["SameSite=Lax", "HttpOnly"]


@pytest.mark.parametrize(
    ("scheme", "tail"),
    [
        ("http", ["SameSite=Lax", "HttpOnly"]),
        ("https", ["SameSite=None", "Secure", "HttpOnly"]),
    ],
)
def test_default_cookie_attributes_follow_the_scheme(
    scheme: str, tail: list[str]
) -> None:
    app, _ = make_app()
    response = call(app, "GET", "/i", scheme=scheme)

    assert cookie_attributes(response)[-len(tail) :] == tail


# --- do not track ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "cookie", "tracked"),
    [
        ({"do_not_track_cookie_value": "1"}, "optout=1", False),
        ({"do_not_track_cookie_value": "1"}, "optout=10", True),
        ({"do_not_track_cookie_value": "1"}, 'a=b; optout="1"', False),
        ({}, "optout=anything", False),
        ({}, "other=1", True),
        (
            {
                "do_not_track_cookie_value": "yes|true",
                "do_not_track_cookie_regex": True,
            },
            "optout=true",
            False,
        ),
        (
            {
                "do_not_track_cookie_value": "yes|true",
                "do_not_track_cookie_regex": True,
            },
            "optout=yes-please",
            True,
        ),
        ({"do_not_track_cookie_value": "a.c"}, "optout=abc", True),
    ],
    ids=[
        "exact",
        "exact-is-whole-value",
        "quoted",
        "any-value",
        "other-cookie",
        "regex",
        "regex-is-full-match",
        "exact-is-not-regex",
    ],
)
def test_do_not_track_cookie_decides_recording(
    settings: dict[str, Any], cookie: str, tracked: bool
) -> None:
    app, writer = make_app(do_not_track_cookie_name="optout", **settings)
    response = call(app, "GET", "/i?e=pv", {"cookie": cookie})

    assert (response.status, response.body) == (200, PIXEL)
    assert len(writer.records) == (1 if tracked else 0)
    assert (response.header("set-cookie") is not None) == tracked


def test_do_not_track_still_redirects_and_answers_posts() -> None:
    app, writer = make_app(
        do_not_track_cookie_name="optout", redirect_allowed_hosts=("shop.example",)
    )
    optout = {"cookie": "optout=1"}
    redirect = call(app, "GET", "/r/tp2?u=https://shop.example/", optout)
    post = call(app, "POST", TP2, optout, b"{}")

    assert (redirect.status, post.status) == (302, 200)
    assert writer.records == []


# --- client address --------------------------------------------------------------

PROXY = ("10.0.0.0/8", "fd00::/8")


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("10.0.0.5", ["198.51.100.7"], "198.51.100.7"),
        ("10.0.0.5", ["1.1.1.1, 198.51.100.7, 10.0.0.9"], "198.51.100.7"),
        ("10.0.0.5", ["1.1.1.1", "198.51.100.7, 10.0.0.9"], "198.51.100.7"),
        ("10.0.0.5", ["10.0.0.1, 10.0.0.9"], "10.0.0.1"),
        ("10.0.0.5", ["1.1.1.1, garbage, 10.0.0.9"], "10.0.0.9"),
        ("10.0.0.5", ["[2001:db8::1]:4711"], "2001:db8::1"),
        ("10.0.0.5", ["198.51.100.7:4711"], "198.51.100.7"),
        ("fd00::1", ["2001:db8::2"], "2001:db8::2"),
        ("::ffff:10.0.0.5", ["198.51.100.7"], "198.51.100.7"),
        ("10.0.0.5", [], "10.0.0.5"),
        ("203.0.113.9", ["198.51.100.7"], "203.0.113.9"),
    ],
    ids=[
        "one-hop",
        "rightmost-untrusted",
        "several-lines",
        "all-trusted",
        "garbled-entry",
        "ipv6-bracket-port",
        "ipv4-port",
        "ipv6-peer",
        "mapped-peer",
        "no-header",
        "untrusted-peer",
    ],
)
def test_client_address_behind_trusted_proxies(
    peer: str, xff: list[str], expected: str
) -> None:
    app, writer = make_app(trusted_proxies=PROXY)
    headers = [(b"x-forwarded-for", v.encode()) for v in xff]
    call(app, "GET", "/i", headers, client=(peer, 1234))

    [record] = writer.records
    assert record.ip == expected
    assert [v for k, v in record.headers if k == "x-forwarded-for"] == xff


def test_proxy_headers_are_ignored_without_trusted_proxies() -> None:
    app, writer = make_app()
    call(app, "GET", "/i", {"x-forwarded-for": "198.51.100.7"}, client=("10.0.0.5", 1))

    assert writer.records[0].ip == "10.0.0.5"


def test_forwarded_header_when_configured() -> None:
    app, writer = make_app(trusted_proxies=PROXY, proxy_header="Forwarded")
    headers = {
        "forwarded": 'for=1.1.1.1;proto=https, for="[2001:db8::7]:80";by=x',
        "x-forwarded-for": "6.6.6.6",
    }
    call(app, "GET", "/i", headers, client=("10.0.0.5", 1))

    assert writer.records[0].ip == "2001:db8::7"


def test_anonymous_request_records_no_address_behind_proxies() -> None:
    app, writer = make_app(trusted_proxies=PROXY)
    headers = {"x-forwarded-for": "198.51.100.7", "sp-anonymous": "*"}
    response = call(app, "GET", "/i", headers, client=("10.0.0.5", 1))

    assert response.header("set-cookie") is None
    assert writer.records[0].ip is None
    assert writer.records[0].header("x-forwarded-for") is None


def test_request_without_client_records_no_address() -> None:
    app, writer = make_app(trusted_proxies=PROXY)
    call(app, "GET", "/i", client=None)

    assert writer.records[0].ip is None


# --- limits ------------------------------------------------------------------------


def test_querystring_over_the_limit_gets_414_and_a_size_violation() -> None:
    app, writer = make_app(max_querystring_bytes=100)
    query = "e=pv&x=" + "a" * 200
    response = call(app, "GET", "/i?" + query, {"origin": "https://shop.example"})

    assert response.status == 414
    assert response.text == (
        "request too large: querystring of 207 bytes exceeds the limit of 100 bytes"
    )
    assert response.header("access-control-allow-origin") == "https://shop.example"
    assert response.header("set-cookie") is None
    [record] = writer.records
    assert record.querystring == query.encode()
    assert record.extra == {
        "error": "size_violation: querystring of 207 bytes exceeds the limit of "
        "100 bytes"
    }


def test_querystring_at_the_limit_is_accepted() -> None:
    app, writer = make_app(max_querystring_bytes=100)

    assert call(app, "GET", "/i?" + "q" * 100).status == 200
    assert writer.records[0].extra == {}


def test_long_querystring_keeps_its_first_64_kib() -> None:
    app, writer = make_app()
    query = b"e=pv&x=" + b"%41" * 40_000
    call(app, "GET", b"/i?" + query)

    assert writer.records[0].querystring == query[:SNIPPET_BYTES]


def test_headers_over_the_limit_get_431_and_a_size_violation() -> None:
    app, writer = make_app(max_header_bytes=100)
    headers = {"user-agent": "U" * 60, "x-pad": "p" * 30}
    response = call(app, "GET", "/i?e=pv", headers)

    # Each header counts name, value and 4 bytes for ": " and CRLF.
    size = len("user-agent") + 60 + 4 + len("x-pad") + 30 + 4
    assert response.status == 431
    assert f"headers of {size} bytes exceed the limit of 100 bytes" in response.text
    [record] = writer.records
    assert record.useragent == "U" * 60
    assert record.extra["error"] == (
        f"size_violation: headers of {size} bytes exceed the limit of 100 bytes"
    )


def test_huge_headers_are_cut_in_the_record() -> None:
    app, writer = make_app()
    headers = [(b"x-a", b"a" * 50_000), (b"user-agent", b"u" * 50_000), (b"x-c", b"c")]
    call(app, "GET", "/i", headers)

    record = writer.records[0]
    assert [name for name, _ in record.headers] == ["x-a", "user-agent"]
    assert len(record.headers[1][1]) == SNIPPET_BYTES - 50_000 - len("x-a") - 4
    assert record.useragent == "u" * 50_000
    assert len(encode_record(record)) < 3 * SNIPPET_BYTES


def test_querystring_limit_is_checked_before_the_body_limit() -> None:
    app, writer = make_app(max_querystring_bytes=10, max_body_bytes=10)
    response = call(app, "POST", TP2 + "?" + "q" * 20, body=b"b" * 20)

    assert response.status == 414
    assert writer.records[0].body == b"b" * 20


@pytest.mark.parametrize(
    ("settings", "target", "headers", "body", "actual", "limit"),
    [
        ({"max_querystring_bytes": 5}, "/i?abcdefgh", {}, b"", 8, 5),
        ({"max_header_bytes": 5}, "/i", {"x": "yz"}, b"", 7, 5),
        ({"max_body_bytes": 5}, TP2, {}, b"123456", 6, 5),
    ],
    ids=["querystring", "headers", "body"],
)
def test_size_violations_become_size_violation_failed_events(
    settings: dict[str, Any],
    target: str,
    headers: dict[str, str],
    body: bytes,
    actual: int,
    limit: int,
) -> None:
    app, writer = make_app(**settings)
    call(app, "POST" if body else "GET", target, headers, body)

    # Through the raw-log line, as enrich reads it.
    record = decode_record(encode_record(writer.records[0]))
    [failed] = to_raw_events(record, now_ms=0)
    assert isinstance(failed, FailedEvent)
    assert failed.type == "size_violation"
    assert failed.failure["actualSizeBytes"] == actual
    assert failed.failure["maximumAllowedSizeBytes"] == limit


@pytest.mark.parametrize(
    "query",
    [b"e=pv&page=50%off&a=%b", b"x=%ff%fe&y=%", b"%%%&&==;;", b"a=\xff\xfe"],
    ids=["bad-percent", "invalid-utf8-escape", "only-separators", "raw-bytes"],
)
def test_malformed_querystring_is_answered_200_and_kept(query: bytes) -> None:
    app, writer = make_app()
    response = call(app, "GET", b"/i?" + query)

    assert response.status == 200
    assert writer.records[0].querystring == query


# --- metrics -----------------------------------------------------------------------


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = "^" + re.escape(name + ("{" + labels + "}" if labels else "")) + " (.+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, f"{name}{{{labels}}} not in:\n{text}"
    return float(match[1])


def test_metrics_count_requests_by_group_and_status() -> None:
    app, writer = make_app(redirect_allowed_hosts=("shop.example",))
    call(app, "GET", "/i?e=pv")
    call(app, "GET", "/i?e=pv")
    call(app, "POST", TP2, body=b"12345")
    call(app, "GET", "/r/tp2?u=https://shop.example/")
    call(app, "GET", "/r/tp2")
    call(app, "OPTIONS", TP2)
    call(app, "GET", "/health")
    call(app, "GET", "/nothing-here")
    writer.fail = True
    call(app, "GET", "/i")
    response = call(app, "GET", "/metrics")

    assert response.status == 200
    assert (response.header("content-type") or "").startswith("text/plain")
    text = response.text
    requests = "plowline_collector_requests_total"
    assert metric(text, requests, 'group="pixel",status="200"') == 2
    assert metric(text, requests, 'group="pixel",status="503"') == 1
    assert metric(text, requests, 'group="post",status="200"') == 1
    assert metric(text, requests, 'group="redirect",status="302"') == 1
    assert metric(text, requests, 'group="redirect",status="400"') == 1
    assert metric(text, requests, 'group="preflight",status="200"') == 1
    assert metric(text, requests, 'group="health",status="200"') == 1
    assert metric(text, requests, 'group="other",status="404"') == 1
    assert metric(text, "plowline_collector_records_written_total") == 5
    assert metric(text, "plowline_collector_write_errors_total") == 1
    received = "plowline_collector_received_bytes_total"
    assert metric(text, received, 'part="body"') == 5
    assert metric(text, received, 'part="querystring"') == len("e=pv") * 2 + len(
        "u=https://shop.example/"
    )


def test_metrics_count_do_not_track_requests() -> None:
    app, _ = make_app(do_not_track_cookie_name="optout")
    call(app, "GET", "/i", {"cookie": "optout=1"})

    text = call(app, "GET", "/metrics").text
    assert metric(text, "plowline_collector_do_not_track_total") == 1
    assert metric(text, "plowline_collector_records_written_total") == 0


def test_metrics_can_be_turned_off() -> None:
    app, _ = make_app(metrics_enabled=False)

    assert call(app, "GET", "/metrics").status == 404


def test_metrics_add_up_the_workers_sharing_a_folder(tmp_path: Path) -> None:
    first = CollectorMetrics(tmp_path, worker=1)
    second = CollectorMetrics(tmp_path, worker=2)
    first.requests[("pixel", 200)] = 3
    first.records_written = 3
    second.requests[("pixel", 200)] = 4
    second.requests[("post", 200)] = 1
    second.records_written = 5
    first.share()
    (tmp_path / "worker-3.json").write_bytes(b"{not json")

    text = second.render().decode()
    requests = "plowline_collector_requests_total"
    assert metric(text, requests, 'group="pixel",status="200"') == 7
    assert metric(text, requests, 'group="post",status="200"') == 1
    assert metric(text, "plowline_collector_records_written_total") == 8
    assert metric(text, "plowline_collector_workers_reporting") == 2


def test_lifespan_shutdown_shares_the_final_counts(tmp_path: Path) -> None:
    app, _ = make_app(metrics_dir=tmp_path)
    call(app, "GET", "/i")
    app.metrics.stop()

    [shared] = tmp_path.glob("worker-*.json")
    assert b'"records_written":1' in shared.read_bytes()
