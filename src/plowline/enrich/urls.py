"""Querystrings and URLs, read the way Snowplow reads them.

Querystrings: both ``&`` and ``;`` separate pairs, ``+`` is a space, ``%XX`` is
UTF-8; a ``%`` not followed by two hex digits is kept as it is (browsers send
``50%off``), and a name without ``=`` has no value.

URLs are split into scheme, host, port, path, query and fragment. Path, query
and fragment stay percent-encoded, as in Snowplow's ``page_url*`` columns; a
missing port is 443 for https and 80 otherwise.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import unquote

from plowline.compiled import core

_PAIR_SEPARATORS = re.compile(r"[&;]")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.DOTALL)


def parse_querystring(querystring: str) -> list[tuple[str, str | None]]:
    """Name-value pairs in order; repeated names are kept."""
    pairs: list[tuple[str, str | None]] = []
    if not querystring:
        return pairs
    tokens = querystring.split("&")
    if ";" in querystring:
        tokens = _PAIR_SEPARATORS.split(querystring)
    append = pairs.append
    for token in tokens:
        if not token:
            continue
        # Most names and many values need no decoding: the check is inlined
        # because this loop runs for every parameter of every event.
        if "%" in token or "+" in token:
            name, sep, value = token.partition("=")
            append((_decode(name), _decode(value) if sep else None))
        else:
            name, sep, value = token.partition("=")
            append((name, value if sep else None))
    return pairs


def _decode(text: str) -> str:
    # Most names and many values need no decoding: skip the call (the hot path).
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    if text.isascii():
        # Every %XX turned into \xXX and decoded by the unicode_escape codec, in
        # C: several times faster than unquote's loop over the escapes, with the
        # same result (backslashes are doubled first, so that they stay).
        escaped = text.replace("\\", "\\\\").replace("%", "\\x").encode("ascii")
        try:
            latin = escaped.decode("unicode_escape")
        except UnicodeDecodeError:
            pass  # a % not followed by two hex digits: unquote keeps it as it is
        else:
            return latin.encode("latin-1").decode("utf-8", "replace")
    return unquote(text, errors="replace")


def querystring_params(querystring: str) -> dict[str, str]:
    """The querystring as a map: the last occurrence of a name wins and names
    without a value are dropped."""
    if core is not None:
        params: dict[str, str] | None = core.querystring_params(querystring)
        if params is not None:  # None: not ASCII, read below
            return params
    pairs = parse_querystring(querystring)
    return {name: value for name, value in pairs if value is not None}


class UrlParts(NamedTuple):
    url: str
    scheme: str | None
    host: str | None
    port: str | None
    path: str | None
    query: str | None
    fragment: str | None


@lru_cache(maxsize=4096)
def split_url(url: str) -> UrlParts:
    """Split ``url`` without decoding any part of it.

    Browsers and trackers send URLs that strict parsers refuse (raw spaces, ``|``,
    unescaped ``%``); none of that stops the split. Spaces are encoded as ``%20``
    first, as Snowplow does, and the result is what ``page_url`` stores.
    """
    if core is not None:
        return UrlParts._make(core.split_url(url))
    return _split_url_py(url)


def _split_url_py(url: str) -> UrlParts:
    url = url.replace(" ", "%20")
    rest, has_fragment, fragment = url.partition("#")
    rest, has_query, query = rest.partition("?")

    scheme: str | None = None
    match = _SCHEME_RE.fullmatch(rest)
    if match is not None:
        scheme, rest = match[1], match[2]

    host: str | None = None
    port: str | None = None
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        path = slash + path
        host, port_text = _split_authority(authority)
        if port_text:
            port = _port(port_text)
        elif scheme is not None and host is not None:
            port = "443" if scheme.lower() == "https" else "80"
    else:
        path = rest

    return UrlParts(
        url=url,
        scheme=scheme,
        host=host,
        port=port,
        path=path or None,
        query=query if has_query and query else None,
        fragment=fragment if has_fragment and fragment else None,
    )


def _split_authority(authority: str) -> tuple[str | None, str | None]:
    """Host and port text (None when the URL names no port)."""
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        # An IPv6 literal keeps its brackets, as in Snowplow's output.
        end = hostport.find("]")
        if end != -1:
            host, after = hostport[: end + 1], hostport[end + 1 :]
            return host, after[1:] if after.startswith(":") else None
    host, colon, port = hostport.partition(":")
    return host or None, port if colon else None


def _port(text: str) -> str | None:
    # Only a real TCP port goes into the integer column; anything else (a port
    # of 99999999999, Arabic-Indic digits) leaves it empty and keeps the URL.
    if text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535:
        return str(int(text))
    return None
