"""The collector's straight path for plain requests: the parts that run for
every such request, compiled where the C module ``_plain`` was built
(``_plain.c``), in Python where it was not.

- ``parse_head(data, lines_limit)`` reads one plain request (GET, HEAD, or a
  POST whose body is all there) from the start of a read, without llhttp's
  per-header callbacks; it accepts only what llhttp accepts, reads it as llhttp
  does, and gives None for anything else, which llhttp then reads. It gives
  the header list, so that tests can hold it against llhttp; the server runs
  ``read_plain``. C only: without the C module, every request goes through
  llhttp.
- ``scan_headers(headers, post, proxy_header, cookie_name)`` checks a plain
  request's header list and gives what its raw-log line needs from them. Its
  Python twin, ``scan_headers_py``, is below; tests check that both give the
  same.
- ``read_plain(data, lines_limit, proxy_header, cookie_name)`` does both in
  one pass over the bytes, without making the header list: (bytes used,
  method, target, HTTP version, keep-alive, body or None, what
  ``scan_headers`` gives), or None where either would give None. This is what
  the server runs for each request; it too is C only.

``COMPILED`` says which is in use. Setting the environment variable
``PLOWLINE_PURE_PYTHON`` (to anything) leaves the C module unused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from plowline.collector.cookies import cookie_value

logger = logging.getLogger(__name__)

# Bytes that stand for themselves inside a JSON string (printable ASCII but the
# quote and the backslash), and the separators headers are joined with.
_VERBATIM = bytes(b for b in range(0x20, 0x80) if b not in b'"\\')
_PAIR_SEP, _VALUE_SEP = b"\x00", b"\x01"
_ESCAPED = b'"\\'
# What a header line costs besides its name and value: ": " and CRLF.
_HEADER_LINE_OVERHEAD = 4
# Headers that take a request off the straight path; a POST's Content-Length
# gave the body the server holds.
_SPECIAL = frozenset({b"content-length", b"transfer-encoding", b"sp-anonymous"})
_SPECIAL_POST = frozenset({b"transfer-encoding", b"sp-anonymous"})

# (headers JSON, size on the wire, Cookie, Host, Origin, proxy header,
#  User-Agent JSON, Referer JSON, Host JSON, Content-Type JSON, the value of
#  the cookie asked for)
ScannedHeaders = tuple[
    bytes,
    int,
    "bytes | None",
    "bytes | None",
    "bytes | None",
    "bytes | None",
    bytes,
    bytes,
    bytes,
    bytes,
    "bytes | None",
]
# (bytes used, method, target, HTTP version, keep-alive, headers, body)
ParsedHead = tuple[
    int, bytes, bytes, str, bool, list[tuple[bytes, bytes]], "bytes | None"
]


def _headers_json(joined: bytes, count: int) -> bytes | None:
    """The record's ``headers`` as JSON, from ``count`` headers joined with
    separators; None when one holds anything but printable ASCII (the record is
    then encoded the general way)."""
    others = joined.translate(None, _VERBATIM)
    separators = others.translate(None, _ESCAPED)
    if len(separators) != 2 * count - 1 or separators.translate(None, b"\x00\x01"):
        return None  # control characters, non-ASCII, or a separator in a header
    if len(others) != len(separators):
        joined = joined.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return (
        b'[["'
        + joined.replace(_VALUE_SEP, b'","').replace(_PAIR_SEP, b'"],["')
        + b'"]]'
    )


def _json_escaped(value: bytes) -> bytes:
    """Printable ASCII as the inside of a JSON string."""
    # find() is quicker than ``in`` here (CPython 3.11).
    if value.find(b"\\") >= 0:
        value = value.replace(b"\\", b"\\\\")
    if value.find(b'"') >= 0:
        value = value.replace(b'"', b'\\"')
    return value


def _json_text(value: bytes | None) -> bytes:
    """Printable ASCII (or None) as a JSON string (or null)."""
    if value is None:
        return b"null"
    return b'"' + _json_escaped(value) + b'"'


def scan_headers_py(
    raw_headers: list[tuple[bytes, bytes]],
    post: bool,
    proxy_header: bytes,
    cookie_name: bytes,
) -> ScannedHeaders | None:
    """A plain request's headers, read for its raw-log line; None unless they
    are plain: at least one, names lower-case and distinct, no Transfer-Encoding
    or SP-Anonymous (nor Content-Length without a body), printable ASCII only."""
    count = len(raw_headers)
    if not count:
        return None
    headers = dict(raw_headers)
    if (
        len(headers) != count
        or not (_SPECIAL_POST if post else _SPECIAL).isdisjoint(headers)
        or not b"".join(headers).islower()
    ):
        return None
    joined = _PAIR_SEP.join(map(_VALUE_SEP.join, raw_headers))
    headers_json = _headers_json(joined, count)
    if headers_json is None:
        return None
    size = len(joined) + (_HEADER_LINE_OVERHEAD - 2) * count + 1
    host = headers.get(b"host")
    content_type = headers.get(b"content-type")
    cookie = headers.get(b"cookie")
    return (
        headers_json,
        size,
        cookie,
        host,
        headers.get(b"origin"),
        headers.get(proxy_header) if proxy_header else None,
        _json_text(headers.get(b"user-agent")),
        _json_text(headers.get(b"referer")),
        _json_text(host),
        b"null" if content_type is None else _json_text(content_type.lower()),
        None if cookie is None else cookie_value([cookie], cookie_name),
    )


# (bytes used, method, target, HTTP version, keep-alive, body, scanned)
ReadPlain = tuple[int, bytes, bytes, str, bool, "bytes | None", ScannedHeaders]

parse_head: Callable[[bytes, int], ParsedHead | None] | None
read_plain: Callable[[bytes, int, bytes, bytes], ReadPlain | None] | None
scan_headers: Callable[[list[tuple[bytes, bytes]], bool, bytes, bytes], Any]
try:
    if os.environ.get("PLOWLINE_PURE_PYTHON"):
        # Set to run as where the module could not be built (tests, debugging).
        raise ImportError("PLOWLINE_PURE_PYTHON is set")
    from plowline.collector import _plain  # type: ignore[attr-defined]
except ImportError as exc:  # not built (no C compiler at install time)
    COMPILED = False
    parse_head = read_plain = None
    scan_headers = scan_headers_py
    logger.debug("The collector's C straight path is not in use (%s)", exc)
else:
    COMPILED = True
    parse_head = _plain.parse_head
    read_plain = _plain.read_plain
    scan_headers = _plain.scan_headers
