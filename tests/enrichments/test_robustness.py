"""Careless configurations, odd databases and hostile user code: each ends in a
named configuration error or a named failed event, never in a traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from plowline.enrich.enrichments.anon_ip import AnonIp
from plowline.enrich.enrichments.base import EnrichmentError, EnrichmentInput
from plowline.enrich.enrichments.config import load_enrichments
from plowline.enrich.enrichments.currency import CurrencyConversion
from plowline.enrich.enrichments.custom import PythonEnrichment
from plowline.enrich.enrichments.ip_lookups import IpLookups
from plowline.enrich.enrichments.pii import PiiPseudonymizer
from plowline.errors import ConfigurationError
from plowline.iglu import LocalRepository, Resolver
from plowline.iglu.config import load_resolver
from plowline.iglu.core import SchemaKey
from plowline.iglu.validation import check
from plowline.rawlog.record import RawRecord

RECORD = RawRecord(id="r", tstamp=0, collector="c", method="GET", path="/i")
SP = "iglu:com.snowplowanalytics.snowplow"
PY = "iglu:io.plowline/python_enrichment_config/jsonschema/1-0-1"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def envelope(schema: str, name: str, parameters: Any) -> str:
    vendor = schema.removeprefix("iglu:").split("/")[0]
    return json.dumps(
        {
            "schema": schema,
            "data": {
                "vendor": vendor,
                "name": name,
                "enabled": True,
                "parameters": parameters,
            },
        }
    )


def python_enrichment(folder: Path, code: str, **parameters: Any) -> PythonEnrichment:
    write(folder, "user.py", code)
    config = write(folder, "py.json", "{}")
    return PythonEnrichment.from_parameters(
        {"file": "user.py", **parameters}, source=str(config)
    )


def run(enrichment: Any, event: dict[str, str | None] | None = None) -> Any:
    inp = EnrichmentInput({}, RECORD)
    enrichment.enrich(event if event is not None else {}, inp)
    return inp


# --- Python enrichment --------------------------------------------------------


def test_endless_function_fails_its_event_naming_the_limit(tmp_path: Path) -> None:
    enrichment = python_enrichment(
        tmp_path,
        "def process(event, config):\n    while True:\n        pass\n",
        timeoutSeconds=0.2,
    )
    with pytest.raises(EnrichmentError) as caught:
        run(enrichment)
    error = caught.value.message["error"]
    assert "user.py:process" in error and "time limit of 0.2 s" in error


def test_time_limit_is_configured_in_the_1_0_1_schema(tmp_path: Path) -> None:
    write(tmp_path, "user.py", "def process(event, config):\n    return None\n")
    parameters = {"file": "user.py", "timeoutSeconds": 2}
    write(tmp_path, "py.json", envelope(PY, "python_enrichment_config", parameters))
    [enrichment] = load_enrichments(tmp_path)
    assert isinstance(enrichment, PythonEnrichment) and enrichment.timeout == 2.0
    parameters["timeoutSeconds"] = None
    write(tmp_path, "py.json", envelope(PY, "python_enrichment_config", parameters))
    [enrichment] = load_enrichments(tmp_path)
    assert isinstance(enrichment, PythonEnrichment) and enrichment.timeout is None


@pytest.mark.parametrize("value", [0, -1, "5", True, 1e400, 3601])
def test_bad_time_limit_is_a_configuration_error(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"parameters\.timeoutSeconds"):
        python_enrichment(
            tmp_path, "def process(e, c):\n    return None\n", timeoutSeconds=value
        )


def test_keyboard_interrupt_in_the_function_is_not_swallowed(tmp_path: Path) -> None:
    enrichment = python_enrichment(
        tmp_path, "def process(event, config):\n    raise KeyboardInterrupt\n"
    )
    with pytest.raises(KeyboardInterrupt):
        run(enrichment)


def test_exit_in_the_function_fails_its_event(tmp_path: Path) -> None:
    enrichment = python_enrichment(
        tmp_path, "def process(event, config):\n    exit(4)\n"
    )
    with pytest.raises(EnrichmentError, match=r"user\.py:process raised SystemExit"):
        run(enrichment)


@pytest.mark.parametrize(
    "value",
    [
        "object()",
        "{1, 2}",
        "{1: 'a'}",
        "2 ** 70",
        "__import__('datetime').date(2024, 1, 1)",
    ],
)
def test_result_that_is_not_json_fails_its_event(tmp_path: Path, value: str) -> None:
    enrichment = python_enrichment(
        tmp_path,
        "def process(event, config):\n"
        "    return [{'schema': 'iglu:com.acme/x/jsonschema/1-0-0',\n"
        f"             'data': {value}}}]\n",
    )
    with pytest.raises(EnrichmentError, match=r"user\.py:process must return"):
        run(enrichment)


def test_result_is_copied(tmp_path: Path) -> None:
    enrichment = python_enrichment(
        tmp_path,
        "SHARED = [{'schema': 'iglu:com.acme/x/jsonschema/1-0-0', 'data': {'n': 1}}]\n"
        "def process(event, config):\n    return SHARED\n",
    )
    first = run(enrichment).derived_contexts
    first[0]["data"]["n"] = 99  # what a later enrichment might do
    assert run(enrichment).derived_contexts[0]["data"] == {"n": 1}


def test_unprintable_exception_still_names_the_function(tmp_path: Path) -> None:
    enrichment = python_enrichment(
        tmp_path,
        "class Odd(Exception):\n    def __str__(self):\n        raise ValueError\n"
        "def process(event, config):\n    raise Odd()\n",
    )
    with pytest.raises(EnrichmentError, match=r"user\.py:process raised Odd"):
        run(enrichment)


# --- PII -------------------------------------------------------------------------


def test_pii_hashes_a_copy_of_a_derived_context(tmp_path: Path) -> None:
    pii = PiiPseudonymizer.from_parameters(
        {
            "pii": [
                {
                    "json": {
                        "field": "derived_contexts",
                        "schemaCriterion": "iglu:com.acme/person/jsonschema/1-*-*",
                        "jsonPath": "$.email",
                    }
                }
            ],
            "strategy": {"pseudonymize": {"hashFunction": "SHA-256", "salt": "s"}},
        },
        source="pii.json",
    )
    owned = {"schema": "iglu:com.acme/person/jsonschema/1-0-0", "data": {"email": "a"}}
    other = {"schema": "iglu:com.acme/other/jsonschema/1-0-0", "data": {"email": "b"}}
    inp = EnrichmentInput({}, RECORD, [owned, other])
    pii.enrich({}, inp)
    assert owned["data"] == {"email": "a"}  # the owner's object is untouched
    assert inp.derived_contexts[0]["data"]["email"] == pii.hash("a")
    assert inp.derived_contexts[1] is other


# --- IP addresses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("1.2.3.4:8080", "1.2.x.x"),
        ("[1.2.3.4]:80", "1.2.x.x"),
        ("[2001:db8::1]:443", "2001:db8:0:0:0:0:x:x"),
        ("[2001:db8::1]", "2001:db8:0:0:0:0:x:x"),
        ("2001:db8::1", "2001:db8:0:0:0:0:x:x"),
        # Not an address even without the port: Snowplow's text masking.
        ("host.example:80", "host.example:80:x:x:x:x:x:x"),
    ],
)
def test_anon_ip_masks_an_address_with_a_port(address: str, masked: str) -> None:
    assert AnonIp(2, 2).anonymise(address) == masked


@pytest.mark.parametrize(
    "value", ["1e400", "-1e400", "NaN", "Infinity", "2.5", "100000000000000000000"]
)
def test_anon_ip_numbers_that_are_not_whole_counts(tmp_path: Path, value: str) -> None:
    schema = f"{SP}/anon_ip/jsonschema/1-0-1"
    for key in ("anonOctets", "anonSegments"):
        text = envelope(schema, "anon_ip", {"anonOctets": 1, "anonSegments": 1})
        text = text.replace(f'"{key}": 1', f'"{key}": {value}')
        write(tmp_path, "anon_ip.json", text)
        with pytest.raises(ConfigurationError, match=key):
            load_enrichments(tmp_path)


class FakeReader:
    """A geo database answering every address with one record."""

    def __init__(self, record: Any) -> None:
        self.record = record

    def get(self, key: str) -> Any:
        return self.record


@pytest.mark.parametrize(
    ("record", "fields"),
    [
        ({"country": "US", "city": "Paris", "location": "x"}, {}),
        ({"subdivisions": []}, {}),
        ({"subdivisions": "CA"}, {}),
        ({"subdivisions": [{"iso_code": ["CA"]}]}, {}),
        ({"country": {"iso_code": {"a": 1}}, "postal": {"code": 75001}},
         {"geo_zipcode": "75001"}),
        ({"city": {"names": ["Paris"]}}, {}),
        ({"location": {"latitude": "1", "longitude": float("nan")}}, {}),
        ({"location": {"latitude": 1e300, "longitude": True}}, {}),
        ({"location": {"latitude": 48.5, "longitude": 2}},
         {"geo_latitude": "48.5", "geo_longitude": "2.0"}),
    ],
)  # fmt: skip
def test_geo_records_of_another_layout_leave_fields_empty(
    record: Any, fields: dict[str, str]
) -> None:
    event: dict[str, str | None] = {"user_ipaddress": "1.2.3.4"}
    IpLookups({"geo": FakeReader(record)}).enrich(event, EnrichmentInput({}, RECORD))
    del event["user_ipaddress"]
    assert event == fields


def test_asn_organisation_that_is_not_text_is_left_out() -> None:
    reader = FakeReader(
        {"autonomous_system_number": 64500, "autonomous_system_organization": [1]}
    )
    inp = EnrichmentInput({}, RECORD)
    IpLookups({"asn": reader}).enrich({"user_ipaddress": "1.2.3.4"}, inp)
    assert inp.derived_contexts[0]["data"] == {"number": 64500, "organization": None}


# --- Databases and data files ------------------------------------------------------


def referer(uri: str, database: str) -> str:
    return envelope(
        f"{SP}/referer_parser/jsonschema/2-0-0",
        "referer_parser",
        {"internalDomains": [], "uri": uri, "database": database},
    )


def test_a_directory_given_as_database_is_named_a_directory(tmp_path: Path) -> None:
    (tmp_path / "db.json").mkdir()
    write(tmp_path, "referer.json", referer(str(tmp_path), "db.json"))
    with pytest.raises(ConfigurationError, match=r"db\.json' is a directory"):
        load_enrichments(tmp_path)


def test_a_missing_database_still_does_not_exist(tmp_path: Path) -> None:
    write(tmp_path, "referer.json", referer(str(tmp_path), "nothing.json"))
    with pytest.raises(ConfigurationError, match=r"nothing\.json' does not exist"):
        load_enrichments(tmp_path)


def test_a_referer_database_nested_too_deeply(tmp_path: Path) -> None:
    write(tmp_path / "db", "deep.json", "[" * 100_000 + "]" * 100_000)
    write(tmp_path / "conf", "referer.json", referer(str(tmp_path / "db"), "deep.json"))
    with pytest.raises(ConfigurationError, match=r"deep\.json"):
        load_enrichments(tmp_path / "conf")


def test_json_data_files_beside_configurations_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, "anon_ip.json", envelope(f"{SP}/anon_ip/jsonschema/1-0-1",
                                             "anon_ip", {"anonOctets": 1}))  # fmt: skip
    write(tmp_path, "crawlers.json", '[{"pattern": "bot"}]')
    write(tmp_path, "referers.json", '{"search": {}}')
    with caplog.at_level(logging.INFO):
        [enrichment] = load_enrichments(tmp_path)
    assert enrichment.name == "anon_ip"
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2
    assert "crawlers.json" in skipped[0] and "referers.json" in skipped[1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"data": {"name": "anon_ip"}}', "schema: missing"),
        ('{"schema": "iglu:com.acme/x/jsonschema/1-0-0"}', "data: missing"),
        ('{"schema": 3, "data": {}}', "schema"),
        ("[1, 2", "not valid JSON"),
        ("1" * 5000, "not usable JSON"),
    ],
)
def test_files_meant_as_configurations_are_still_checked(
    tmp_path: Path, text: str, message: str
) -> None:
    write(tmp_path, "conf.json", text)
    with pytest.raises(ConfigurationError, match=message):
        load_enrichments(tmp_path)


# --- Numbers out of range ------------------------------------------------------------


def test_huge_bot_cache_size_is_a_configuration_error(tmp_path: Path) -> None:
    write(tmp_path, "bots.json", envelope(
        "iglu:io.plowline/bot_detection_config/jsonschema/1-0-0",
        "bot_detection_config", {"cacheSize": 10**30},
    ))  # fmt: skip
    with pytest.raises(ConfigurationError, match="cacheSize"):
        load_enrichments(tmp_path)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ('"cacheSize": -1e400', "cacheSize"),
        ('"cacheSize": NaN', "cacheSize"),
        ('"cacheSize": 10, "cacheTtl": 100000000000000000000000000000', "cacheTtl"),
    ],
)
def test_resolver_numbers_out_of_range(tmp_path: Path, data: str, field: str) -> None:
    path = write(tmp_path, "resolver.json", (
        '{"schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",'
        f' "data": {{{data}, "repositories": []}}}}'
    ))  # fmt: skip
    with pytest.raises(ConfigurationError, match=f"data.{field}"):
        load_resolver(path)


def test_resolver_priority_must_be_finite(tmp_path: Path) -> None:
    path = write(tmp_path, "resolver.json", (
        '{"schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",'
        ' "data": {"cacheSize": 5, "repositories": [{"name": "a", "priority": NaN,'
        ' "vendorPrefixes": [], "connection": {"embedded": {"path": "x"}}}]}}'
    ))  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"repositories\[0\].priority"):
        load_resolver(path)


# --- Currency ------------------------------------------------------------


def test_currency_with_a_tiny_rate_fails_its_event_cleanly() -> None:
    from datetime import date
    from decimal import Decimal

    rates = {date(2024, 1, 1): {"EUR": Decimal(1), "XTS": Decimal("1e-999999")}}
    enrichment = CurrencyConversion("EUR", rates)
    event: dict[str, str | None] = {"collector_tstamp": "2024-01-02 00:00:00.000",
             "tr_total": "1e10", "tr_currency": "XTS"}  # fmt: skip
    with pytest.raises(EnrichmentError):
        enrichment.enrich(event, EnrichmentInput({}, RECORD))


def test_largest_max_rate_age_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, "rates.csv", "date,currency,rate\n2024-02-29,EUR,1\n")
    write(tmp_path, "currency.json", envelope(
        "iglu:io.plowline/currency_conversion_config/jsonschema/1-0-0",
        "currency_conversion_config",
        {"baseCurrency": "EUR", "ratesFile": "rates.csv", "maxRateAgeDays": 999999999},
    ))  # fmt: skip
    [enrichment] = load_enrichments(tmp_path)
    assert isinstance(enrichment, CurrencyConversion)


# --- Schemas that refer to themselves ----------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$ref": "http://iglucentral.com/schemas/com.acme/loop/jsonschema/1-0-0#"},
        {"properties": {"a": {"$ref": "#/definitions/b"}},
         "definitions": {"b": {"$ref": "#/definitions/b"}}},
    ],
)  # fmt: skip
def test_schema_loop_is_a_schema_issue(tmp_path: Path, schema: Any) -> None:
    folder = tmp_path / "schemas" / "com.acme" / "loop" / "jsonschema"
    folder.mkdir(parents=True)
    (folder / "1-0-0").write_bytes(orjson.dumps(schema))
    resolver = Resolver([LocalRepository("local", 0, (), root=tmp_path)])
    key = SchemaKey.parse("iglu:com.acme/loop/jsonschema/1-0-0")
    message = check(resolver, key, {"a": 1})
    assert message is not None
    [issue] = message["error"]["schemaIssues"]
    assert "refers to itself" in issue["message"]
