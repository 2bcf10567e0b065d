"""Tomcat access logs of Snowplow's Clojure collector.

Fifteen fields (collectors up to 0.6.0: GET only) or seventeen (from 0.7.0: the
request's content type, URL-encoded, and its body, URL-safe base64 without
padding). The querystring ends with ``&cv=<collector version>&nuid=<cookie>``,
which enrich reads as ordinary tracker parameters. Tomcat logs every request:
CORS preflights are not events and are skipped.
"""

from __future__ import annotations

import binascii
import uuid
from urllib.parse import unquote_plus

from plowline.enrich.loaders.common import log_tstamp, nullable, split_fields
from plowline.enrich.selfdesc import decode_base64
from plowline.errors import BadInputError
from plowline.rawlog.record import RawRecord

COLLECTOR = "clj-tomcat"
SKIPPED_METHODS = frozenset({"OPTIONS"})


def load(line: bytes) -> RawRecord | None:
    fields = split_fields(line.decode("utf-8", "replace"))
    if 12 <= len(fields) <= 15:  # 12, and up to three trailing "-" columns
        content_type, body = None, None
    elif len(fields) == 17:
        content_type, body = _content_type(fields[15]), _body(fields[16])
    else:
        raise BadInputError(
            f"Line does not match the raw event format of the Clojure collector: "
            f"it has {len(fields)} fields, the collector writes 12 to 15, or 17."
        )
    date, clock, _, _, client_ip, method, _, path, _, referer, agent, query = fields[
        :12
    ]
    if method in SKIPPED_METHODS:
        return None
    if body is not None and method != "POST":
        raise BadInputError(
            f"Operation must be POST if content type and/or body are provided, "
            f"not {method}."
        )
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=log_tstamp(date, clock),
        collector=COLLECTOR,
        method=method,
        path=path,
        querystring=query.encode() if nullable(query) is not None else None,
        body=body,
        content_type=content_type,
        # A proxy-aware valve may log "client, proxy": the client comes first.
        ip=client_ip.split(",")[0].strip(),
        useragent=_decoded(agent),
        referer=nullable(referer),
    )


def _decoded(field: str) -> str | None:
    value = nullable(field)
    return unquote_plus(value) if value is not None else None


def _content_type(field: str) -> str | None:
    value = _decoded(field)
    return value.lower() if value is not None else None


def _body(field: str) -> bytes | None:
    value = nullable(field)
    if value is None:
        return None
    try:
        return decode_base64(value)
    except (binascii.Error, ValueError) as exc:
        raise BadInputError(f"The body is not base64: {exc}.") from exc
