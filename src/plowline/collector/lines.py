"""Raw-log lines and random ids, made the cheap way for the request path.

:func:`encode_line` writes the same line as
:func:`plowline.rawlog.record.encode_record` (same keys, same order, same
``_base64`` fallbacks) without building a :class:`RawRecord` first: the
collector has the parts of a request at hand and needs only the line.

:class:`RandomIds` gives version-4 UUIDs as ``str(uuid.uuid4())`` would, from
the same source (``os.urandom``), but draws the random bytes for many ids at
once: one system call and one ``hex()`` per batch instead of a ``UUID`` object
per id. A process started by ``fork`` starts with an empty batch, so two workers
never hand out the same ids.
"""

from __future__ import annotations

import base64
import os
import weakref
from typing import Any

import orjson

from plowline.rawlog.record import FORMAT_VERSION

# How many ids one os.urandom call provides.
BATCH = 256

# The variant nibble of an RFC 9562 UUID is 10xx: 8, 9, a or b.
_VARIANT = str.maketrans("0123456789abcdef", "89ab89ab89ab89ab")
_live: weakref.WeakSet[RandomIds] = weakref.WeakSet()


class RandomIds:
    """Random (version 4) UUIDs as text, drawn in batches."""

    def __init__(self, batch: int = BATCH) -> None:
        self._batch = batch
        self._ready: list[str] = []
        _live.add(self)

    def next(self) -> str:
        """A new random UUID, e.g. ``c8009e74-2125-4b6d-9f9b-d95ba8309fa2``."""
        try:
            return self._ready.pop()
        except IndexError:
            self._ready = self._draw()
            return self._ready.pop()

    def forget(self) -> None:
        """Drop the ids drawn but not handed out yet."""
        self._ready = []

    def _draw(self) -> list[str]:
        digits = os.urandom(16 * self._batch).hex()
        ids = []
        for start in range(0, len(digits), 32):
            h = digits[start : start + 32]
            variant = h[16].translate(_VARIANT)
            ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
        return ids


def _forget_all() -> None:
    for ids in list(_live):
        ids.forget()


os.register_at_fork(after_in_child=_forget_all)


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
