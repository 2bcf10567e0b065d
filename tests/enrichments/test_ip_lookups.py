"""ip_lookups: MaxMind's test databases and small ones built here."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MmdbF64, MMDBWriter
from netaddr import IPSet

from fixture_traffic import SHARED
from plowline.enrich.enrichments.base import EnrichmentInput
from plowline.enrich.enrichments.ip_lookups import (
    ASN_SCHEMA,
    IpLookups,
    java_float_text,
    lookup_key,
)
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

MAXMIND = SHARED / "data" / "maxmind-test"
RECORD = RawRecord(id="r", tstamp=0, collector="c", method="GET", path="/i")


def maxmind_dir() -> Path:
    if not MAXMIND.is_dir():
        message = f"MaxMind test databases not found: {MAXMIND} (set PLOWLINE_SHARED)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return MAXMIND


def run(enrichment: IpLookups, ip: str | None) -> tuple[dict[str, Any], list[Any]]:
    event: dict[str, str | None] = {"user_ipaddress": ip}
    inp = EnrichmentInput(params={}, record=RECORD)
    enrichment.enrich(event, inp)
    del event["user_ipaddress"]
    return event, inp.derived_contexts


def section(uri: str | Path, database: str) -> dict[str, str]:
    return {"uri": str(uri), "database": database}


@pytest.fixture(scope="module")
def test_dbs() -> IpLookups:
    d = maxmind_dir()
    return IpLookups.from_parameters(
        {
            "geo": section(d, "GeoIP2-City-Test.mmdb"),
            "isp": section(f"file://{d}", "GeoIP2-ISP-Test.mmdb"),
        },
        source="ip_lookups.json",
    )


def test_city_test_database_vector(test_dbs: IpLookups) -> None:
    fields, contexts = run(test_dbs, "175.16.199.0:8080")
    assert fields == {
        "geo_country": "CN",
        "geo_region": "22",
        "geo_city": "Changchun",
        "geo_latitude": "43.88",
        "geo_longitude": "125.3228",
        "geo_timezone": "Asia/Harbin",
        "geo_region_name": "Jilin Sheng",
    }
    assert contexts == []


def test_isp_and_asn_from_isp_database(test_dbs: IpLookups) -> None:
    fields, contexts = run(test_dbs, "18.11.120.0")
    assert fields["ip_isp"] == "Massachusetts Institute of Technology"
    mit = "Massachusetts Institute of Technology"
    assert contexts == [
        {"schema": ASN_SCHEMA, "data": {"number": 3, "organization": mit}}
    ]


def test_golden_rows_of_snowplow_cases(test_dbs: IpLookups) -> None:
    path = SHARED / "fixtures" / "snowplow_cases.jsonl"
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    rows = [r for r in rows if "IpLookupsEnrichmentSpec" in r["source"]]
    assert len(rows) >= 4
    for row in rows:
        fields, contexts = run(test_dbs, json.loads(row["input"]))
        for name, value in row["expected"].items():
            if name == "derived_context":
                assert contexts == [value], row["id"]
            elif name.startswith(("geo_", "ip_")):
                assert fields.get(name) == value, (row["id"], name)


@pytest.mark.parametrize(
    "ip",
    [
        "hello",
        "",
        None,
        "localhost",
        "::1",
        "1.2.3.4.5",
        "ä" * 100_000,
        "999.1.1.1",
        "[::1",
        "2001:db8::1",
    ],
)
def test_unknown_or_bad_addresses_leave_fields_empty(
    test_dbs: IpLookups, ip: str | None
) -> None:
    assert run(test_dbs, ip) == ({}, [])


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("1.2.3.4:8080", "1.2.3.4"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("1.2.3.4", "1.2.3.4"),
    ],
)
def test_port_and_brackets_are_stripped(ip: str, key: str) -> None:
    assert lookup_key(ip) == key


def build(path: Path, kind: str, networks: dict[str, dict[str, Any]]) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=kind)
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


CITY = {
    "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
    "city": {"names": {"en": "Newbury", "de": "Newbury"}},
    "postal": {"code": "RG14"},
    "location": {
        "latitude": MmdbF64(51.4),
        "longitude": MmdbF64(-1.3231),
        "time_zone": "Europe/London",
    },
    "subdivisions": [
        {"iso_code": "ENG", "names": {"en": "England"}},
        {"iso_code": "WBK", "names": {"en": "West Berkshire"}},
    ],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> IpLookups:
    d = tmp_path_factory.mktemp("mmdb")
    build(
        d / "GeoIP2-City.mmdb",
        "GeoIP2-City",
        {"10.1.0.0/16": CITY, "2001:db8::/32": CITY},
    )
    build(
        d / "GeoIP2-ISP.mmdb",
        "GeoIP2-ISP",
        {
            "10.1.0.0/16": {
                "isp": "Tab\tISP",
                "organization": "Org Ltd",
                "autonomous_system_number": 64500,
                "autonomous_system_organization": "From ISP",
            }
        },
    )
    build(
        d / "GeoIP2-Domain.mmdb",
        "GeoIP2-Domain",
        {"10.1.0.0/16": {"domain": "example.net"}},
    )
    build(
        d / "GeoIP2-Connection-Type.mmdb",
        "GeoIP2-Connection-Type",
        {"10.1.0.0/16": {"connection_type": "Cable/DSL"}},
    )
    build(
        d / "GeoLite2-ASN.mmdb",
        "GeoLite2-ASN",
        {
            "10.1.0.0/16": {
                "autonomous_system_number": 64501,
                "autonomous_system_organization": "From ASN",
            }
        },
    )
    config = d / "ip_lookups.json"
    config.write_text("{}")
    names = {
        "geo": "GeoIP2-City.mmdb",
        "isp": "GeoIP2-ISP.mmdb",
        "domain": "GeoIP2-Domain.mmdb",
        "connectionType": "GeoIP2-Connection-Type.mmdb",
        "asn": "GeoLite2-ASN.mmdb",
    }
    # "." is relative to the configuration file's folder.
    params = {key: section(".", name) for key, name in names.items()}
    return IpLookups.from_parameters(params, source=str(config))


def test_every_output_field_from_built_databases(built: IpLookups) -> None:
    fields, contexts = run(built, "10.1.2.3")
    assert fields == {
        "geo_country": "GB",
        "geo_region": "WBK",
        "geo_city": "Newbury",
        "geo_zipcode": "RG14",
        "geo_latitude": "51.4",
        "geo_longitude": "-1.3231",
        "geo_region_name": "West Berkshire",
        "geo_timezone": "Europe/London",
        "ip_isp": "Tab    ISP",
        "ip_organization": "Org Ltd",
        "ip_domain": "example.net",
        "ip_netspeed": "Cable/DSL",
    }
    # The ASN file wins over the AS fields of the ISP file.
    assert contexts == [
        {"schema": ASN_SCHEMA, "data": {"number": 64501, "organization": "From ASN"}}
    ]


def test_ipv6_address_with_port(built: IpLookups) -> None:
    fields, contexts = run(built, "[2001:db8::7]:443")
    assert fields["geo_city"] == "Newbury"
    assert "ip_isp" not in fields and contexts == []


def test_contexts_are_fresh_dicts(built: IpLookups) -> None:
    _, first = run(built, "10.1.2.3")
    first[0]["data"]["number"] = 0
    _, second = run(built, "10.1.2.3")
    assert second[0]["data"]["number"] == 64501


def test_builtin_geolite2_database() -> None:
    enrichment = IpLookups.from_parameters(
        {"geo": {"database": "GeoLite2-City.mmdb", "uri": "builtin:"}},
        source="ip_lookups.json",
    )
    fields, _ = run(enrichment, "81.2.69.160")
    assert fields["geo_country"] == "GB"
    assert run(enrichment, "127.0.0.1") == ({}, [])


def test_wrong_kind_of_database_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build(tmp_path / "x.mmdb", "GeoIP2-Domain", {"10.0.0.0/8": {"domain": "a.b"}})
    with caplog.at_level(logging.WARNING):
        IpLookups.from_parameters({"geo": section(tmp_path, "x.mmdb")}, source="c")
    assert "expected a City database" in caplog.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"city": {}},
            "c.json: ip_lookups has unknown parameters ['city']; "
            "expected some of ['geo', 'isp', 'domain', 'connectionType', 'asn'].",
        ),
        (
            {"geo": "GeoIP2-City.mmdb"},
            "c.json: ip_lookups parameter geo must be "
            'an object {"database": ..., "uri": ...}, not \'GeoIP2-City.mmdb\'.',
        ),
        (
            {"isp": {"database": "GeoIP2-ISP.mmdb"}},
            "c.json: isp.uri must be a non-empty string, not None.",
        ),
        (
            {"asn": {"uri": "/tmp", "database": ""}},
            "c.json: asn.database must be a non-empty string, not ''.",
        ),
        (
            {
                "geo": section(
                    "http://snowplow-hosted-assets.s3.amazonaws.com/x",
                    "GeoIP2-City.mmdb",
                )
            },
            "remote databases must be downloaded first and uri set to their "
            "directory (a path or a file:// URI).",
        ),
        (
            {"domain": section("ftp://host/dir", "GeoIP2-Domain.mmdb")},
            "c.json: domain.uri 'ftp://host/dir' has the scheme 'ftp'; expected a "
            "directory path or a file:// URI.",
        ),
        (
            {"geo": section("/nonexistent-dir", "GeoIP2-City.mmdb")},
            "c.json: the geo database '/nonexistent-dir/GeoIP2-City.mmdb' does not "
            "exist; download the MaxMind file there or change uri/database.",
        ),
    ],
)
def test_bad_configuration_is_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        IpLookups.from_parameters(params, source="c.json")
    assert str(caught.value).endswith(message)


def test_a_file_that_is_not_mmdb_is_refused(tmp_path: Path) -> None:
    (tmp_path / "GeoIP2-City.mmdb").write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigurationError, match="is not a readable MaxMind"):
        IpLookups.from_parameters(
            {"geo": section(tmp_path, "GeoIP2-City.mmdb")}, source="c.json"
        )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (43.88, "43.88"),
        (125.3228, "125.3228"),
        (-122.3149, "-122.3149"),
        (45.0, "45.0"),
        (0.0, "0.0"),
        (0.0001, "1.0E-4"),
        (12345678.0, "1.2345678E7"),
        (0.001, "0.001"),
        (-0.5, "-0.5"),
    ],
)
def test_coordinates_print_as_java_floats(value: float, text: str) -> None:
    assert java_float_text(value) == text
