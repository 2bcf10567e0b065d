"""Amazon CloudFront access logs, as the CloudFront collector produced them.

Every format generation is read by position (12, 15, 18, 19, 23, 24, 26 and 33
fields; further trailing fields are ignored). Fields are separated by tabs in
real files and by runs of spaces in some test fixtures: any whitespace splits.
"""

from __future__ import annotations

import uuid
from urllib.parse import unquote, unquote_plus

from plowline.enrich.loaders.common import (
    log_tstamp,
    nullable,
    single_encode,
    split_fields,
)
from plowline.errors import BadInputError
from plowline.rawlog.record import RawRecord

COLLECTOR = "cloudfront"
KNOWN_WIDTHS = (12, 15, 18, 19, 23, 24, 26, 33)
X_FORWARDED_FOR = 19  # 0-based position of x-forwarded-for, from 23 fields on


def load(line: bytes) -> RawRecord | None:
    text = line.decode("utf-8", "replace")
    if text.startswith(("#Version:", "#Fields:")):
        return None
    fields = split_fields(text)
    width = len(fields)
    if width not in KNOWN_WIDTHS and width <= KNOWN_WIDTHS[-1]:
        raise BadInputError(
            f"Line does not match CloudFront header or data row formats: it has "
            f"{width} fields, CloudFront writes "
            + ", ".join(map(str, KNOWN_WIDTHS))
            + " (or more)."
        )
    date, clock, _, _, client_ip, method, _, path, _, referer, agent, query = fields[
        :12
    ]
    if method != "GET":
        raise BadInputError(
            f"Only GET operations supported for CloudFront Collector, not {method}."
        )
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=log_tstamp(date, clock),
        collector=COLLECTOR,
        method=method,
        path=path,
        querystring=_querystring(query),
        ip=_client_ip(fields, client_ip),
        useragent=_useragent(agent),
        referer=_referer(referer),
    )


def _querystring(field: str) -> bytes | None:
    value = nullable(field)
    return single_encode(value).encode() if value is not None else None


def _useragent(field: str) -> str | None:
    value = nullable(field)
    # The log holds the header percent-encoded; the event holds the header.
    return unquote_plus(single_encode(value)) if value is not None else None


def _referer(field: str) -> str | None:
    value = nullable(field)
    if value is None:
        return None
    # CloudFront sometimes appends a stray % to the referer.
    return single_encode(value).removesuffix("%") or None


def _client_ip(fields: list[str], client_ip: str) -> str:
    if len(fields) > X_FORWARDED_FOR + 3:
        forwarded = nullable(fields[X_FORWARDED_FOR])
        if forwarded is not None:
            first = unquote(single_encode(forwarded)).split(",")[0].strip()
            if first:
                return first
    return client_ip
