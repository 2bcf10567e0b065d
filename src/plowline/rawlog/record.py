"""The raw record: one HTTP request exactly as the collector received it.

A raw log is a text file of raw records, one JSON object per line (UTF-8, ``\\n``
terminated). The format is documented in ``docs/raw-log.md``; in short::

    {"v": 1, "id": "<uuid>", "tstamp": 1796398150523, "collector": "plowline-0.1.0",
     "method": "GET", "path": "/i", "querystring": "e=pv&...", "body": null,
     "content_type": null, "headers": [["Host", "t.example.com"], ...],
     "ip": "203.0.113.9", "useragent": "...", "referer": "...",
     "host": "t.example.com", "network_userid": "<uuid>"}

``querystring`` and ``body`` hold the raw bytes as text when they are valid UTF-8;
otherwise the key is ``querystring_base64`` / ``body_base64`` holding standard
base64 of the bytes, so no request is ever altered or dropped. Header names and
values are decoded as UTF-8, falling back to Latin-1 (which maps every byte).
Readers ignore keys they do not know, so later versions may add keys.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from plowline.compiled import core
from plowline.errors import BadInputError

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One collected request. ``tstamp`` is milliseconds since the epoch (UTC)."""

    id: str
    tstamp: int
    collector: str
    method: str
    path: str
    querystring: bytes | None = None
    body: bytes | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    ip: str | None = None
    useragent: str | None = None
    referer: str | None = None
    host: str | None = None
    network_userid: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), if any."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


def _put_bytes(out: dict[str, Any], key: str, value: bytes | None) -> None:
    if value is None:
        out[key] = None
        return
    try:
        out[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        out[key + "_base64"] = base64.b64encode(value).decode("ascii")


def _get_bytes(data: dict[str, Any], key: str) -> bytes | None:
    text = data.get(key)
    if text is not None:
        if not isinstance(text, str):
            raise ValueError(f"'{key}' must be a string or null, not {text!r}")
        return text.encode("utf-8")
    encoded = data.get(key + "_base64")
    if encoded is None:
        return None
    return base64.b64decode(encoded, validate=True)


def encode_record(record: RawRecord) -> bytes:
    """The raw-log line for ``record``, ending with a newline."""
    out: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "id": record.id,
        "tstamp": record.tstamp,
        "collector": record.collector,
        "method": record.method,
        "path": record.path,
    }
    _put_bytes(out, "querystring", record.querystring)
    _put_bytes(out, "body", record.body)
    out["content_type"] = record.content_type
    out["headers"] = [list(pair) for pair in record.headers]
    out["ip"] = record.ip
    out["useragent"] = record.useragent
    out["referer"] = record.referer
    out["host"] = record.host
    out["network_userid"] = record.network_userid
    out.update(record.extra)
    return orjson.dumps(out) + b"\n"


_KNOWN_KEYS = frozenset(
    {
        "v",
        "id",
        "tstamp",
        "collector",
        "method",
        "path",
        "querystring",
        "querystring_base64",
        "body",
        "body_base64",
        "content_type",
        "headers",
        "ip",
        "useragent",
        "referer",
        "host",
        "network_userid",
    }
)


# RawRecord's slots in field order, which the compiled reader of plain records
# sets as the dataclass's own __init__ does (plowline.compiled).
_SLOTS = tuple(RawRecord.__dict__[f.name] for f in fields(RawRecord))


def decode_record(line: bytes | str) -> RawRecord:
    """Parse one raw-log line; raise :class:`BadInputError` saying what is wrong."""
    if core is not None:
        try:
            # A plain record in one call of C; any other line below, which
            # says what is wrong with it.
            record: RawRecord | None = core.record_from_line(
                line, orjson.loads, RawRecord, _SLOTS, _KNOWN_KEYS
            )
        except Exception:
            record = None
        if record is not None:
            return record
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadInputError(f"Raw-log line is not JSON: {exc}.") from exc
    if not isinstance(data, dict):
        raise BadInputError("Raw-log line is JSON but not an object.")
    version = data.get("v")
    if version != FORMAT_VERSION:
        raise BadInputError(
            f"Raw-log line has format version {version!r}; this reader knows "
            f"version {FORMAT_VERSION}."
        )
    try:
        return _record_from_dict(data)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise BadInputError(f"Raw-log line is not a valid record: {exc}.") from exc


def _record_from_dict(data: dict[str, Any]) -> RawRecord:
    if core is not None:
        record: RawRecord | None = core.record_from_dict(
            data, RawRecord, _SLOTS, _KNOWN_KEYS
        )
        if record is not None:
            return record
    return _record_from_dict_py(data)


def _record_from_dict_py(data: dict[str, Any]) -> RawRecord:
    for key in ("id", "tstamp", "collector", "method", "path"):
        if data.get(key) is None:
            raise ValueError(f"required key '{key}' is missing")
    tstamp = data["tstamp"]
    if not isinstance(tstamp, int) or isinstance(tstamp, bool):
        raise ValueError(f"'tstamp' must be an integer, not {tstamp!r}")
    headers = tuple(
        (str(name), str(value)) for name, value in data.get("headers") or ()
    )
    return RawRecord(
        id=str(data["id"]),
        tstamp=tstamp,
        collector=str(data["collector"]),
        method=str(data["method"]),
        path=str(data["path"]),
        querystring=_get_bytes(data, "querystring"),
        body=_get_bytes(data, "body"),
        content_type=data.get("content_type"),
        headers=headers,
        ip=data.get("ip"),
        useragent=data.get("useragent"),
        referer=data.get("referer"),
        host=data.get("host"),
        network_userid=data.get("network_userid"),
        extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
    )
