"""Converters from tracker-protocol text to enriched-field text.

Each converter takes the decoded parameter value and returns the text that goes
into the enriched TSV, or ``None`` for an empty field. A value that cannot be
converted raises :class:`ConversionError` carrying what was expected; the caller
turns it into a failed-event message naming the field and the value.
"""

from __future__ import annotations

import calendar
import functools
import re
import time
from decimal import Decimal, InvalidOperation

from plowline.compiled import core

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

# Snowplow enrich keeps timestamps that Redshift can hold: years 1 to 9999 here,
# because Python cannot represent year 0.
_MS_MIN = -62135596800000
_MS_MAX = 253402300799999

_INT_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
# The syntax of Java's BigDecimal(String): sign, digits with an optional point,
# optional exponent. Python's Decimal also takes "NaN", "Infinity" and "1_000".
_DECIMAL_RE = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII
)
_DIMENSIONS_RE = re.compile(r"([0-9]+)x([0-9]+)", re.ASCII)
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BREAK_BETWEEN_WORDS_RE = re.compile(r"(?<=\S)[\r\n]+(?=\S)")


_INT_DIGITS = 12  # a sign and ten digits are all a 32-bit integer needs
_MS_DIGITS = 20
DECIMAL_EXPONENT_LIMIT = 100


class ConversionError(ValueError):
    """A parameter value that does not have the form its field needs."""

    def __init__(self, expectation: str) -> None:
        super().__init__(expectation)
        self.expectation = expectation


_TSV_UNSAFE_RE = re.compile(r"[\x00-\x1f\x7f]")


_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))

# The compiled checks and formats, where plowline._core was built.
_ms_text = core.ms_text if core is not None else None
_has_control = core.has_control if core is not None else None


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a tab or another character ``tsv_safe`` changes."""
    if len(text) > 64 and text.isascii():
        # What is left once the printable bytes are deleted: a C loop, several
        # times faster than the regular expression on long text (such as every
        # value of an event at once); on short text the expression is faster.
        return bool(text.encode("ascii").translate(None, _PRINTABLE_ASCII))
    return _TSV_UNSAFE_RE.search(text) is not None


def tsv_safe(value: str) -> str | None:
    """Make free text fit in one TSV field: tabs become four spaces (as in
    Snowplow), a line break between two words becomes one space ("Spring\nSale"
    stays two words), other control characters are removed; empty means null."""
    if _has_control is not None and not _has_control(value):
        return value or None  # nearly always: one scan, in C
    if "\t" in value:
        value = value.replace("\t", "    ")
    if _CONTROL_RE.search(value):
        value = _BREAK_BETWEEN_WORDS_RE.sub(" ", value)
        value = _CONTROL_RE.sub("", value)
    return value or None


def to_int(value: str) -> str | None:
    """A 32-bit integer, as Java's ``Integer`` reads it; ``null`` means null."""
    if value == "null":
        return None
    if not _INT_RE.fullmatch(value):
        raise ConversionError("a whole number (32-bit integer)")
    # Python refuses to convert very long digit strings; none of them fits anyway.
    if len(value) > _INT_DIGITS or not INT_MIN <= int(value) <= INT_MAX:
        raise ConversionError("a whole number within the 32-bit integer range")
    return str(int(value))


def to_decimal(value: str) -> str | None:
    """A decimal number written out in plain notation (never ``1E+7``)."""
    if value == "null":
        return None
    if not _DECIMAL_RE.fullmatch(value):
        raise ConversionError("a decimal number such as 42.5")
    try:
        number = Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the regex guards this
        raise ConversionError("a decimal number such as 42.5") from exc
    # Written out in full, 1E-999999999 would take a gigabyte; no column (a SQL
    # double included) holds such magnitudes anyway.
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # not NaN or Infinity: the regex saw to it
    too_big = number and number.adjusted() > DECIMAL_EXPONENT_LIMIT
    if too_big or exponent < -DECIMAL_EXPONENT_LIMIT:
        raise ConversionError(
            f"a decimal number between 1E-{DECIMAL_EXPONENT_LIMIT} and "
            f"1E+{DECIMAL_EXPONENT_LIMIT} in size"
        )
    return format(number, "f")


# Money columns are DECIMAL(18,2) in the atomic schema's SQL tables.
MONEY_LIMIT = Decimal(10) ** 16


def to_money(value: str) -> str | None:
    """A decimal amount that fits DECIMAL(18,2): below 10^16 in magnitude."""
    text = to_decimal(value)
    if text is not None and abs(Decimal(text)) >= MONEY_LIMIT:
        raise ConversionError("an amount below 10000000000000000 (DECIMAL(18,2))")
    return text


def to_bool(value: str) -> str:
    """``1`` or ``0``, exactly."""
    if value not in ("1", "0"):
        raise ConversionError("1 or 0")
    return value


def to_dimensions(value: str) -> tuple[str, str]:
    """A ``WIDTHxHEIGHT`` pair of non-negative 32-bit integers."""
    match = _DIMENSIONS_RE.fullmatch(value)
    if match is None:
        raise ConversionError("two whole numbers as WIDTHxHEIGHT, such as 1280x720")
    if len(match[1]) > _INT_DIGITS or len(match[2]) > _INT_DIGITS:
        raise ConversionError("dimensions within the 32-bit integer range")
    width, height = int(match[1]), int(match[2])
    if width > INT_MAX or height > INT_MAX:
        raise ConversionError("dimensions within the 32-bit integer range")
    return str(width), str(height)


def to_uuid(value: str) -> str:
    """A UUID in its canonical 8-4-4-4-12 form, stored lower-case."""
    if not _UUID_RE.fullmatch(value):
        raise ConversionError("a UUID such as 0b0b0b0b-1111-4222-8333-444444444444")
    return value.lower()


def ms_to_tstamp(ms: int) -> str:
    """Milliseconds since the epoch as ``yyyy-MM-dd HH:mm:ss.SSS`` (UTC)."""
    if _ms_text is not None:
        text: str | None = _ms_text(ms)
        if text is None:
            raise ConversionError("a time between the years 1 and 9999")
        return text
    return _ms_to_tstamp_py(ms)


def _ms_to_tstamp_py(ms: int) -> str:
    if not _MS_MIN <= ms <= _MS_MAX:
        raise ConversionError("a time between the years 1 and 9999")
    seconds, millis = divmod(ms, 1000)
    return f"{_second_text(seconds)}.{millis:03d}"


@functools.lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    # Events of one request (and of one batch) share their seconds: formatting
    # each second once is a measurable part of enrichment's per-event cost.
    t = time.gmtime(seconds)
    # strftime's %Y does not zero-pad years below 1000 on every platform.
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


def to_tstamp(value: str) -> str:
    """A tracker timestamp: whole milliseconds since the epoch."""
    if not _INT_RE.fullmatch(value):
        raise ConversionError("milliseconds since the epoch, as a whole number")
    if len(value) > _MS_DIGITS:
        raise ConversionError("a time between the years 1 and 9999")
    return ms_to_tstamp(int(value))


def tstamp_to_ms(text: str) -> int:
    """The inverse of :func:`ms_to_tstamp`."""
    base, _, millis = text.partition(".")
    seconds = calendar.timegm(time.strptime(base, "%Y-%m-%d %H:%M:%S"))
    return seconds * 1000 + int(millis or 0)
