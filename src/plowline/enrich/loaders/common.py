"""What the access-log loaders share: timestamps, nulls and percent-encoding."""

from __future__ import annotations

import calendar
import re
import time

from plowline.errors import BadInputError

_DOUBLE_ENCODED_RE = re.compile(r"%25([0-9a-fA-F]{2})")


def split_fields(text: str) -> list[str]:
    """Access-log fields: on tabs when the line has any (real files), else on
    runs of spaces (as in some test fixtures). Splitting a tabbed line on every
    space would cut values such as ``203.0.113.7, 198.51.100.2`` in two."""
    if "\t" in text:
        return [field.strip(" ") for field in text.strip("\r\n").split("\t")]
    return text.split()


def nullable(value: str) -> str | None:
    """Access logs write ``-`` for an empty value."""
    return None if value in ("-", "") else value


def single_encode(text: str) -> str:
    """Undo CloudFront's extra layer of percent-encoding, exactly once.

    ``%2520`` becomes ``%20``; a ``%25`` not followed by two hex digits is a
    literal ``%`` and stays. ``%2588`` is read as a double-encoded ``%88``.
    """
    return _DOUBLE_ENCODED_RE.sub(r"%\1", text)


def log_tstamp(date: str, clock: str) -> int:
    """``YYYY-MM-DD`` and ``HH:MM:SS[.sss]`` (UTC) as milliseconds."""
    seconds_text, _, fraction = clock.partition(".")
    try:
        parsed = time.strptime(f"{date} {seconds_text}", "%Y-%m-%d %H:%M:%S")
        millis = int((fraction + "000")[:3]) if fraction else 0
    except ValueError as exc:
        raise BadInputError(
            f"Date {date!r} and time {clock!r} are not a timestamp "
            "(expected YYYY-MM-DD and HH:MM:SS)."
        ) from exc
    return calendar.timegm(parsed) * 1000 + millis
