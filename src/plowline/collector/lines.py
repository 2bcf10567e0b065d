"""Raw-log lines, made the cheap way for the request path.

:func:`encode_line` writes the same line as
:func:`plowline.rawlog.record.encode_record` (same keys, same order, same
``_base64`` fallbacks) without building a :class:`RawRecord` first: the
collector has the parts of a request at hand and needs only the line.

Record ids come from :class:`plowline.ids.RandomIds`.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from plowline.rawlog.record import FORMAT_VERSION


def _put_bytes(out: dict[str, Any], key: str, value: bytes | None) -> None:
    # As encode_record: text when the bytes are UTF-8, else key_base64.
    if not value:
        out[key] = None
        return
    try:
        out[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        out[key + "_base64"] = base64.b64encode(value).decode("ascii")


def encode_line(
    record_id: str,
    tstamp: int,
    collector: str,
    method: str,
    path: str,
    querystring: bytes,
    body: bytes,
    content_type: str | None,
    headers: list[tuple[str, str]] | orjson.Fragment,
    ip: str | None,
    useragent: str | None,
    referer: str | None,
    host: str | None,
    network_userid: str,
    error: str | None = None,
) -> bytes:
    """The raw-log line (ending with a newline) of one request.

    An empty ``querystring`` or ``body`` is recorded as ``null``; ``headers`` may
    come encoded already, as an ``orjson.Fragment``; ``error``, when given, is the
    record's ``error`` key (docs/raw-log.md).
    """
    out: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "id": record_id,
        "tstamp": tstamp,
        "collector": collector,
        "method": method,
        "path": path,
    }
    _put_bytes(out, "querystring", querystring)
    _put_bytes(out, "body", body)
    out["content_type"] = content_type
    out["headers"] = headers
    out["ip"] = ip
    out["useragent"] = useragent
    out["referer"] = referer
    out["host"] = host
    out["network_userid"] = network_userid
    if error is not None:
        out["error"] = error
    return orjson.dumps(out, option=orjson.OPT_APPEND_NEWLINE)
