"""Loaders: one line of a raw log, in any supported format, to a raw record.

Plowline's own raw log, Amazon CloudFront access logs (the CloudFront collector),
Tomcat access logs of the Clojure collector, and bare querystrings. A loader
returns None for lines that are not requests (headers, preflights) and raises
:class:`~plowline.errors.BadInputError` for lines it cannot read; enrich turns
those into failed events that keep the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from plowline.enrich.loaders import cloudfront, querystring, tomcat
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord, decode_record

Loader = Callable[[bytes], RawRecord | None]

LOADERS: dict[str, Loader] = {
    "plowline": decode_record,
    "cloudfront": cloudfront.load,
    "clj-tomcat": tomcat.load,
    "querystring": querystring.load,
}
INPUT_FORMATS = ("auto", *LOADERS)

_DATE_TIME_RE = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2}\s+[0-9]{2}:[0-9]{2}:[0-9]{2}")


def loader_for(name: str) -> Loader:
    try:
        return LOADERS[name]
    except KeyError:
        known = ", ".join(INPUT_FORMATS)
        raise ConfigurationError(
            f"Unknown input format {name!r}; use one of {known}."
        ) from None


def detect_format(lines: Sequence[bytes]) -> str:
    """The format of a file, judged from its first lines (plowline when unsure)."""
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith((b"#Version:", b"#Fields:")):
            return "cloudfront"
        if stripped.startswith(b"{"):
            return "plowline"
        if _DATE_TIME_RE.match(stripped):
            fields = stripped.split()
            # The Clojure collector writes a literal "-" where CloudFront writes
            # its edge location.
            return (
                "clj-tomcat" if len(fields) > 2 and fields[2] == b"-" else "cloudfront"
            )
        if b"=" in stripped and not any(c in stripped for c in b" \t"):
            return "querystring"
        return "plowline"
    return "plowline"
