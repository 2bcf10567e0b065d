"""Currency conversion (``currency_conversion_config``): transaction amounts in
one base currency, from exchange rates in a local file (no network).

Reads ``tr_total``, ``tr_tax``, ``tr_shipping`` (in ``tr_currency``) and
``ti_price`` (in ``ti_currency``); writes ``tr_total_base``, ``tr_tax_base``,
``tr_shipping_base``, ``ti_price_base`` and, on every event, ``base_currency``.
An amount is converted only when it and its currency are both there.

The rates file is CSV with the header ``date,currency,rate``; each row says how
many units of ``currency`` one unit of the file's reference currency bought at
the end of ``date`` (as Open Exchange Rates publishes them, where USD is 1).
The reference currency itself needs a row with rate 1 when events use it.
Blank lines and lines starting with ``#`` are skipped. As Snowplow's
``EOD_PRIOR``, an event uses the rates of the day before its collector date, or
the latest earlier day in the file, at most ``maxRateAgeDays`` days before that.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import logging
import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar

from plowline.enrich.convert import MONEY_LIMIT
from plowline.enrich.enrichments.base import (
    Enrichment,
    EnrichmentError,
    EnrichmentInput,
    Event,
    FixedSettings,
)
from plowline.enrich.enrichments.databases import require_file
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

# (amount field, currency field, converted field), in Snowplow's order.
AMOUNTS = (
    ("tr_total", "tr_currency", "tr_total_base"),
    ("tr_tax", "tr_currency", "tr_tax_base"),
    ("tr_shipping", "tr_currency", "tr_shipping_base"),
    ("ti_price", "ti_currency", "ti_price_base"),
)
HEADER = ["date", "currency", "rate"]
CENT = Decimal("0.01")
# Remembered per enrichment: the rates of each collector date seen, and the
# converted text of each (amount, currency, day of rates) seen. Both repeat
# (one date for a day of events, a shop's few prices), and both are bounded.
DATES_KEPT = 1024
CONVERSIONS_KEPT = 8192
AMOUNT_TEXT_KEPT = 64  # longer amounts (rare and arbitrary) are not remembered
_CODE_RE = re.compile(r"[A-Z]{3}")

Rates = dict[dt.date, dict[str, Decimal]]


def _bad_row(line: int, expected: str, row: list[str]) -> ValueError:
    return ValueError(f"line {line}: expected {expected}, found {','.join(row)!r}")


def _parse_row(line: int, row: list[str]) -> tuple[dt.date, str, Decimal]:
    if len(row) != 3:
        raise _bad_row(line, "three columns date,currency,rate", row)
    try:
        day = dt.date.fromisoformat(row[0].strip())
    except ValueError:
        raise _bad_row(line, "a date such as 2024-01-31", row) from None
    code = row[1].strip()
    if not _CODE_RE.fullmatch(code):
        raise _bad_row(line, "a three-letter upper-case currency code", row)
    try:
        rate = Decimal(row[2].strip())
    except InvalidOperation:
        rate = Decimal(0)
    if not rate.is_finite() or rate <= 0:
        raise _bad_row(line, "a positive rate such as 0.9245", row)
    return day, code, rate


def read_rates(path: Path) -> Rates:
    """The rates in ``path`` by day, then by currency code; ValueError names
    the line that is wrong."""
    rates: Rates = {}
    with path.open(encoding="utf-8", newline="") as handle:
        lines = (
            (number, text)
            for number, text in enumerate(handle, 1)
            if text.strip() and not text.startswith("#")
        )
        header_seen = False
        for number, text in lines:
            row = next(csv.reader([text]))
            if not header_seen:
                if [cell.strip() for cell in row] != HEADER:
                    raise _bad_row(number, "the header date,currency,rate", row)
                header_seen = True
                continue
            day, code, rate = _parse_row(number, row)
            rates.setdefault(day, {})[code] = rate
    if not rates:
        raise ValueError("it holds no rates")
    return rates


# The most days a datetime.timedelta holds.
MAX_RATE_AGE_DAYS = dt.timedelta.max.days


def _fail(source: str, name: str, expected: str, found: Any) -> ConfigurationError:
    return ConfigurationError(
        f"{source}: parameters.{name} must be {expected}; found {found!r}."
    )


class CurrencyConversion(FixedSettings, Enrichment):
    fixed = frozenset({"base", "rates", "days", "max_age"})
    name: ClassVar[str] = "currency_conversion_config"
    accepts: ClassVar[tuple[str, ...]] = ("1-0-*",)

    def __init__(
        self, base: str, rates: Rates, *, max_age_days: int = 7, path: str = ""
    ) -> None:
        self.base = base
        self.rates = rates
        self.days = sorted(rates)
        self.max_age = dt.timedelta(days=max_age_days)
        self.path = path
        # Collector date (the timestamp's first ten characters, all that
        # rates_for reads) -> the day of rates found and its rates.
        self._dates: dict[str, tuple[dt.date, dict[str, Decimal]]] = {}
        # (amount text, currency, day of rates) -> the amount's text in base.
        self._converted: dict[tuple[str, str, dt.date], str] = {}

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> CurrencyConversion:
        base = parameters.get("baseCurrency")
        if not isinstance(base, str) or not _CODE_RE.fullmatch(base):
            raise _fail(source, "baseCurrency", "an ISO 4217 code such as EUR", base)
        if parameters.get("rateAt", "EOD_PRIOR") != "EOD_PRIOR":
            raise _fail(source, "rateAt", "EOD_PRIOR", parameters["rateAt"])
        max_age = parameters.get("maxRateAgeDays", 7)
        if (
            not isinstance(max_age, int)
            or isinstance(max_age, bool)
            or not 0 <= max_age <= MAX_RATE_AGE_DAYS
        ):
            raise _fail(
                source,
                "maxRateAgeDays",
                f"a whole number of days from 0 to {MAX_RATE_AGE_DAYS}",
                max_age,
            )
        path = _rates_path(parameters.get("ratesFile"), source)
        try:
            rates = read_rates(path)
        except (OSError, ValueError, csv.Error) as exc:
            raise ConfigurationError(
                f"{source}: cannot use the rates file {path}: {exc}."
            ) from exc
        return cls(
            base,
            rates,
            max_age_days=max_age,
            path=str(parameters.get("ratesFile")),
        )

    def rates_for(self, collector_tstamp: str) -> tuple[dt.date, dict[str, Decimal]]:
        """The rates an event collected at ``collector_tstamp`` converts with."""
        date = collector_tstamp[:10]
        found = self._dates.get(date)
        if found is None:
            # A failure is not remembered: its message quotes the timestamp.
            found = self._find_rates(collector_tstamp)
            if len(self._dates) >= DATES_KEPT:
                self._dates.clear()
            self._dates[date] = found
        return found

    def _find_rates(self, collector_tstamp: str) -> tuple[dt.date, dict[str, Decimal]]:
        try:
            day = dt.date.fromisoformat(collector_tstamp[:10])
            wanted = day - dt.timedelta(days=1)
        except (ValueError, OverflowError):  # 0001-01-01 has no day before
            raise EnrichmentError.for_field(
                "collector_tstamp",
                collector_tstamp,
                f"a date after 0001-01-01 with exchange rates in {self.path}",
            ) from None
        index = bisect.bisect_right(self.days, wanted) - 1
        if index < 0 or wanted - self.days[index] > self.max_age:
            raise EnrichmentError.for_field(
                "collector_tstamp",
                collector_tstamp,
                f"a date with exchange rates in {self.path}: it has none for "
                f"{wanted} or the {self.max_age.days} days before",
            )
        found = self.days[index]
        return found, self.rates[found]

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        event["base_currency"] = self.base
        if not (event.get("tr_currency") or event.get("ti_currency")):
            return  # no amount has a currency: the usual event, not a sale
        todo = [item for item in AMOUNTS if event.get(item[0]) and event.get(item[1])]
        if not todo:
            return
        day, rates = self.rates_for(event.get("collector_tstamp") or "")
        target = rates.get(self.base)
        if target is None:
            raise EnrichmentError.for_field(
                "base_currency", self.base, f"a currency with a rate on {day}"
            )
        for amount_field, currency_field, out_field in todo:
            code = event[currency_field]
            rate = rates.get(code or "")
            if rate is None:
                raise EnrichmentError.for_field(
                    currency_field,
                    code,
                    f"a currency with a rate on {day} in {self.path}",
                )
            amount = event[amount_field] or "0"
            key = (amount, code or "", day)
            text = self._converted.get(key)
            if text is None:
                # A failure is not remembered: its message names the field.
                text = self._convert(amount, target, rate, out_field)
                if len(amount) <= AMOUNT_TEXT_KEPT:
                    if len(self._converted) >= CONVERSIONS_KEPT:
                        self._converted.clear()
                    self._converted[key] = text
            event[out_field] = text

    def _convert(
        self, amount_text: str, target: Decimal, rate: Decimal, out_field: str
    ) -> str:
        """``amount_text`` (in the currency of ``rate``) in the base currency,
        rounded to cents."""
        try:
            amount = Decimal(amount_text) * target / rate
        except ArithmeticError:  # beyond Decimal's exponents (tiny rates)
            raise EnrichmentError.for_field(
                out_field,
                amount_text,
                f"an amount below {MONEY_LIMIT} (DECIMAL(18,2))",
            ) from None
        if abs(amount) < MONEY_LIMIT:
            amount = amount.quantize(CENT, ROUND_HALF_EVEN)
        if abs(amount) >= MONEY_LIMIT:  # also after rounding up
            raise EnrichmentError.for_field(
                out_field,
                format(amount, "f"),
                f"an amount below {MONEY_LIMIT} (DECIMAL(18,2))",
            )
        return str(amount)


def _rates_path(value: Any, source: str) -> Path:
    # Snowplow's own file has no ratesFile: Plowline never calls an exchange-rate
    # service, so a file of rates is the one way to convert.
    if not isinstance(value, str) or not value:
        raise _fail(
            source,
            "ratesFile",
            "the path of a CSV file of exchange rates (date,currency,rate); "
            "Plowline does not fetch rates from Open Exchange Rates",
            value,
        )
    path = Path(value)
    if not path.is_absolute() and Path(source).is_file():
        path = Path(source).parent / path  # relative to the configuration file
    require_file(path, source=source, what="the rates file")
    return path
