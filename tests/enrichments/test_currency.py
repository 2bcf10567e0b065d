"""Currency conversion from a local rates file (spec section 3.11, with rates
read from tests/data/enrichments-more/rates.csv instead of Open Exchange Rates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

from fixture_traffic import SHARED
from plowline.enrich.enrichments.base import EnrichmentError, EnrichmentInput, Event
from plowline.enrich.enrichments.currency import CurrencyConversion
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

REPO = Path(__file__).resolve().parent.parent.parent
DATA = REPO / "tests" / "data" / "enrichments-more"
CONFIG = DATA / "configs" / "currency_conversion_config.json"
SNOWPLOW_CONFIG = DATA / "configs" / "currency_conversion_config_snowplow.json"
EMBEDDED = REPO / "src" / "plowline" / "iglu" / "embedded" / "schemas"
IGLU_CENTRAL = SHARED / "data" / "iglu-central" / "schemas"
RECORD = RawRecord(id="r1", tstamp=0, collector="t", method="GET", path="/i")


@pytest.fixture(scope="module")
def to_eur() -> CurrencyConversion:
    # Built from the example file: its ratesFile is relative to the file.
    parameters = json.loads(CONFIG.read_text())["data"]["parameters"]
    return CurrencyConversion.from_parameters(parameters, source=str(CONFIG))


def convert(enrichment: CurrencyConversion, **fields: str | None) -> Event:
    event: Event = dict(fields)
    enrichment.enrich(event, EnrichmentInput({}, RECORD))
    return event


def test_transaction_converted_with_prior_day_rates(to_eur: CurrencyConversion) -> None:
    event = convert(
        to_eur,
        collector_tstamp="2024-03-02 09:00:00.000",
        tr_currency="USD",
        tr_total="100",
        tr_tax="12.34",
        tr_shipping="0",
    )
    assert (
        event["tr_total_base"],
        event["tr_tax_base"],
        event["tr_shipping_base"],
    ) == (
        "92.50",
        "11.41",  # 12.34 * 0.925 = 11.4145
        "0.00",
    )
    assert event["base_currency"] == "EUR"


def test_item_price_uses_cross_rates(to_eur: CurrencyConversion) -> None:
    # 10 GBP = 10 / 0.79 USD = 10 * 0.925 / 0.79 EUR = 11.7088... EUR
    event = convert(
        to_eur, collector_tstamp="2024-03-02 23:59:59.999", ti_currency="GBP",
        ti_price="10",
    )  # fmt: skip
    assert event["ti_price_base"] == "11.71"


def test_base_currency_is_kept_as_is(to_eur: CurrencyConversion) -> None:
    event = convert(
        to_eur, collector_tstamp="2024-03-05 00:00:00.000", ti_currency="EUR",
        ti_price="19.99",
    )  # fmt: skip
    assert event["ti_price_base"] == "19.99"


def test_rounding_is_half_even(to_eur: CurrencyConversion) -> None:
    # 0.5 USD * 0.925 = 0.4625 -> 0.46; 0.7 USD -> 0.6475 -> 0.65
    low = convert(to_eur, collector_tstamp="2024-03-02 00:00:00.000",
                  tr_currency="USD", tr_total="0.5")  # fmt: skip
    high = convert(to_eur, collector_tstamp="2024-03-02 00:00:00.000",
                   tr_currency="USD", tr_total="0.7")  # fmt: skip
    assert (low["tr_total_base"], high["tr_total_base"]) == ("0.46", "0.65")


def test_latest_earlier_rates_within_the_age_limit(to_eur: CurrencyConversion) -> None:
    # Collected 2024-03-04: the prior day has no rates, 2024-03-01 (2 days
    # earlier, within maxRateAgeDays 3) is used; on 2024-03-05, 2024-03-04's.
    monday = convert(to_eur, collector_tstamp="2024-03-04 12:00:00.000",
                     tr_currency="USD", tr_total="100")  # fmt: skip
    tuesday = convert(to_eur, collector_tstamp="2024-03-05 12:00:00.000",
                      tr_currency="USD", tr_total="100")  # fmt: skip
    assert (monday["tr_total_base"], tuesday["tr_total_base"]) == ("92.50", "92.00")


def test_only_amounts_with_their_currency_are_converted(
    to_eur: CurrencyConversion,
) -> None:
    event = convert(to_eur, collector_tstamp="2024-03-02 00:00:00.000",
                    tr_total="100", ti_currency="USD")  # fmt: skip
    assert event == {
        "collector_tstamp": "2024-03-02 00:00:00.000",
        "tr_total": "100",
        "ti_currency": "USD",
        "base_currency": "EUR",
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"collector_tstamp": "2024-03-02 00:00:00.000", "tr_currency": "CHF",
          "tr_total": "1"},
         {"field": "tr_currency", "value": "CHF",
          "expectation": "a currency with a rate on 2024-03-01 in ../rates.csv"}),
        ({"collector_tstamp": "2024-03-05 00:00:00.000", "ti_currency": "JPY",
          "ti_price": "1"},
         {"field": "ti_currency", "value": "JPY",
          "expectation": "a currency with a rate on 2024-03-04 in ../rates.csv"}),
        ({"collector_tstamp": "2024-03-10 00:00:00.000", "tr_currency": "USD",
          "tr_total": "1"},
         {"field": "collector_tstamp", "value": "2024-03-10 00:00:00.000",
          "expectation": "a date with exchange rates in ../rates.csv: it has none "
          "for 2024-03-09 or the 3 days before"}),
        ({"collector_tstamp": "2024-03-01 00:00:00.000", "tr_currency": "USD",
          "tr_total": "1"},
         {"field": "collector_tstamp", "value": "2024-03-01 00:00:00.000",
          "expectation": "a date with exchange rates in ../rates.csv: it has none "
          "for 2024-02-29 or the 3 days before"}),
        ({"collector_tstamp": "2024-03-02 00:00:00.000", "tr_currency": "JPY",
          "tr_total": "9999999999999999999"},
         {"field": "tr_total_base", "value": "61625582944703530.97318454364",
          "expectation": "an amount below 10000000000000000 (DECIMAL(18,2))"}),
        ({"collector_tstamp": "2024-03-02 00:00:00.000", "tr_currency": "USD",
          "tr_total": "1" + "0" * 60},
         {"field": "tr_total_base", "value": "925" + "0" * 57,
          "expectation": "an amount below 10000000000000000 (DECIMAL(18,2))"}),
    ],
    ids=["unknown-currency", "currency-missing-that-day", "rates-too-old",
         "before-first-rates", "too-big", "far-too-big"],
)  # fmt: skip
def test_conversion_failures_fail_the_event(
    to_eur: CurrencyConversion, fields: dict[str, str], message: dict[str, Any]
) -> None:
    with pytest.raises(EnrichmentError) as error:
        convert(to_eur, **fields)
    assert error.value.message == message


def test_example_configurations_are_valid_for_their_schemas() -> None:
    for path, root in ((CONFIG, EMBEDDED), (SNOWPLOW_CONFIG, IGLU_CENTRAL)):
        document = json.loads(path.read_text())
        schema_path = root / document["schema"].removeprefix("iglu:")
        if not schema_path.is_file():
            pytest.skip(f"{schema_path} not found")
        Draft4Validator(json.loads(schema_path.read_text())).validate(document["data"])


def test_snowplow_file_without_rates_file_is_refused() -> None:
    parameters = json.loads(SNOWPLOW_CONFIG.read_text())["data"]["parameters"]
    with pytest.raises(ConfigurationError) as error:
        CurrencyConversion.from_parameters(parameters, source="cur.json")
    assert str(error.value) == (
        "cur.json: parameters.ratesFile must be the path of a CSV file of exchange "
        "rates (date,currency,rate); Plowline does not fetch rates from Open "
        "Exchange Rates; found None."
    )


RATES = str(DATA / "rates.csv")


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"baseCurrency": "eur", "ratesFile": RATES},
         "cur.json: parameters.baseCurrency must be an ISO 4217 code such as EUR; "
         "found 'eur'."),
        ({"baseCurrency": "EUR", "ratesFile": RATES, "rateAt": "NOW"},
         "cur.json: parameters.rateAt must be EOD_PRIOR; found 'NOW'."),
        ({"baseCurrency": "EUR", "ratesFile": RATES, "maxRateAgeDays": "3"},
         "cur.json: parameters.maxRateAgeDays must be a whole number of days "
         "from 0 to 999999999; found '3'."),
        ({"baseCurrency": "EUR", "ratesFile": "/nonexistent/rates.csv"},
         "cur.json: the rates file '/nonexistent/rates.csv' does not exist."),
    ],
    ids=["base-lower-case", "rate-at", "max-age", "no-file"],
)  # fmt: skip
def test_bad_configuration_is_refused(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        CurrencyConversion.from_parameters(parameters, source="cur.json")
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("day,currency,rate\n", "line 1: expected the header date,currency,rate, "
         "found 'day,currency,rate'"),
        ("date,currency,rate\n2024-13-01,USD,1\n", "line 2: expected a date such as "
         "2024-01-31, found '2024-13-01,USD,1'"),
        ("# c\ndate,currency,rate\n2024-01-01,usd,1\n", "line 3: expected a "
         "three-letter upper-case currency code, found '2024-01-01,usd,1'"),
        ("date,currency,rate\n2024-01-01,USD,-1\n", "line 2: expected a positive "
         "rate such as 0.9245, found '2024-01-01,USD,-1'"),
        ("date,currency,rate\n2024-01-01,USD,one\n", "line 2: expected a positive "
         "rate such as 0.9245, found '2024-01-01,USD,one'"),
        ("date,currency,rate\n2024-01-01,USD\n", "line 2: expected three columns "
         "date,currency,rate, found '2024-01-01,USD'"),
        ("date,currency,rate\n", "it holds no rates"),
    ],
    ids=["header", "date", "code", "negative", "not-a-number", "columns", "empty"],
)  # fmt: skip
def test_bad_rates_file_is_refused(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "rates.csv"
    path.write_text(content)
    with pytest.raises(ConfigurationError) as error:
        CurrencyConversion.from_parameters(
            {"baseCurrency": "EUR", "ratesFile": str(path)}, source="cur.json"
        )
    assert str(error.value) == f"cur.json: cannot use the rates file {path}: {problem}."
