"""Whole enriched rows from Snowplow's Spark Enrich tests (snowplow_cases.jsonl),
from the CloudFront and Clojure-collector lines they start from.

Those rows were made with configurable enrichments on (geo-IP, user-agent
parsing, referer and campaign attribution, PII hashing, fingerprint, currency).
The first test runs without enrichments and checks every other field
(``ENRICHMENT_FIELDS`` aside); the second runs with that configuration written
as Snowplow enrichment files (tests/data/cfg-spark-r117, spec section 8.1) and
checks every field. ``NOT_YET`` lists skipped cases with why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from fixture_traffic import SHARED
from plowline.enrich.enrichments.config import load_enrichments
from plowline.enrich.failed import FailedEvent
from plowline.enrich.fields import FIELD_NAMES
from plowline.enrich.loaders import loader_for
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.iglu.repositories import LocalRepository
from plowline.iglu.resolver import Resolver

CASES_FILE = SHARED / "fixtures" / "snowplow_cases.jsonl"
ENRICHMENT_FIELDS = frozenset(
    {
        "geo_country", "geo_region", "geo_city", "geo_zipcode", "geo_latitude",
        "geo_longitude", "geo_region_name", "geo_timezone", "ip_isp", "ip_organization",
        "ip_domain", "ip_netspeed", "br_name", "br_family", "br_version", "br_type",
        "br_renderengine", "os_name", "os_family", "os_manufacturer", "dvce_type",
        "dvce_ismobile", "refr_medium", "refr_source", "refr_term", "mkt_medium",
        "mkt_source", "mkt_term", "mkt_content", "mkt_campaign", "mkt_clickid",
        "mkt_network", "user_ipaddress", "user_id", "event_fingerprint",
        "derived_contexts", "tr_total_base", "tr_tax_base", "tr_shipping_base",
        "ti_price_base", "base_currency",
    }
)  # fmt: skip
# Differ by design: the run's clock and version, and a random id when none is sent.
RUN_FIELDS = frozenset({"etl_tstamp", "v_etl", "event_id"})
# Snowplow's 2019 enrich kept txn_id as sent ("028288"); current Snowplow enrich
# and Plowline store the integer.
LEGACY_FIELDS = frozenset({"txn_id"})
NOT_YET: dict[str, str] = {}
# Fields the PII enrichment hashed in Snowplow's row (its Mailgun recipient): the
# first test runs without enrichments, the second checks them.
PII_HASHED = {"S008": frozenset({"unstruct_event"})}


def load_cases() -> list[Any]:
    if not CASES_FILE.is_file():
        return []
    cases = [json.loads(line) for line in CASES_FILE.read_text("utf-8").splitlines()]
    return [
        pytest.param(
            case,
            id=case["id"],
            marks=[pytest.mark.skip(reason=NOT_YET[case["id"]])]
            if case["id"] in NOT_YET
            else [],
        )
        for case in cases
        if case["input_format"] in ("cloudfront", "clj-tomcat")
    ]


CASES = load_cases()


def enrich(case: dict[str, Any]) -> list[EnrichedEvent | FailedEvent]:
    loader = loader_for(case["input_format"])
    return Enricher().enrich_line(
        case["input"].encode(), loader=loader, loader_name=case["input_format"]
    )


JSON_FIELDS = ("contexts", "unstruct_event", "derived_contexts")


def same_json(expected: str, got: str | None, name: str) -> bool:
    if got is None:
        return False
    want, have = json.loads(expected), json.loads(got)
    if name in ("contexts", "derived_contexts"):
        # Snowplow's 2019 enrich copied the tracker's envelope (contexts 1-0-0,
        # keys in its order); current enrich and Plowline re-wrap the entities.
        return sorted(json.dumps(e, sort_keys=True) for e in want["data"]) == sorted(
            json.dumps(e, sort_keys=True) for e in have["data"]
        )
    return bool(want == have)


@pytest.mark.parametrize("case", CASES)
def test_enriched_row_matches_snowplow(case: dict[str, Any]) -> None:
    expected = case["expected"]
    outcomes = enrich(case)
    if "good_events" in expected:
        good = [o for o in outcomes if isinstance(o, EnrichedEvent)]
        assert len(good) == expected["good_events"]
        failed = [o for o in outcomes if isinstance(o, FailedEvent)]
        assert len(failed) == expected.get("bad_rows", 1)
        for item in failed:
            assert item.reason
        return

    candidates = [o for o in outcomes if isinstance(o, EnrichedEvent)]
    assert candidates, [o.reason for o in outcomes if isinstance(o, FailedEvent)]

    # A batch holds several events; the test states one of them.
    def agreement(event: EnrichedEvent) -> int:
        return sum(event[k] == v for k, v in expected.items() if k in FIELD_NAMES)

    event = max(candidates, key=agreement)
    skipped = ENRICHMENT_FIELDS | RUN_FIELDS | LEGACY_FIELDS
    skipped |= PII_HASHED.get(case["id"], frozenset())
    for name, value in expected.items():
        if name not in FIELD_NAMES or name in skipped:
            continue
        got = event[name]
        if name in ("contexts", "unstruct_event") and value is not None:
            assert same_json(value, got, name), name
        else:
            assert got == value, (name, value, got)


def test_rows_were_found() -> None:
    if not CASES:
        pytest.skip(f"{CASES_FILE} not found")
    assert len(CASES) >= 30


# The same rows with the enrichments Snowplow's tests ran with (spec section 8.1,
# CFG-SPARK-R117), expressed as Snowplow enrichment files in tests/data: anon_ip
# and ip_lookups differ per case (their notes say how) and are written per case.
R117_CONFIG = Path(__file__).resolve().parent.parent / "data" / "cfg-spark-r117"
MAXMIND = SHARED / "data" / "maxmind-test"
IGLU_CENTRAL = SHARED / "data" / "iglu-central"
R117_ETL_SECONDS = 1_000_000_000  # --etl-timestamp 1000000000000
MAXMIND_FILES = {  # database name in the configuration -> MaxMind's test file
    "geo": ("GeoIP2-City.mmdb", "GeoIP2-City-Test.mmdb"),
    "isp": ("GeoIP2-ISP.mmdb", "GeoIP2-ISP-Test.mmdb"),
    "domain": ("GeoIP2-Domain.mmdb", "GeoIP2-Domain-Test.mmdb"),
    "connectionType": (
        "GeoIP2-Connection-Type.mmdb",
        "GeoIP2-Connection-Type-Test.mmdb",
    ),
}
_SETTINGS_RE = re.compile(
    r"anon_ip anonOctets=(\d) enabled=(true|false); ip_lookups=\[([^\]]*)\]"
)
# Enrichments only some specs ran with (their notes' positional flags), in
# tests/data/cfg-spark-r117/per-spec: currency conversion with stand-in rates,
# and the JavaScript enrichment of Core2015RefreshSpec as a Python one.
R117_PER_SPEC = {
    "CurrencyConversionTransactionSpec": "currency_conversion_config.json",
    "CurrencyConversionTransactionItemSpec": "currency_conversion_config.json",
    "Core2015RefreshSpec": "python_enrichment_config.json",
}
# Fields that depend on data that differs here, by the case's spec name.
R117_DIFFERENT = {
    # MaxMind's Connection-Type test database of today lists 216.160.83.56 as
    # "Corporate"; the one Snowplow's 2019 tests read left the field empty.
    "TransactionCfLineSpec": {"ip_netspeed"},
}
R117_OTHER_CONTEXTS = ("ApiRequest", "SqlQuery", "Iab", "Yauaa", "Javascript")


def write_r117_config(case: dict[str, Any], folder: Path) -> None:
    match = _SETTINGS_RE.search(case["notes"])
    assert match is not None, case["notes"][:200]
    octets, anon_enabled, lookups = match.groups()
    for source in R117_CONFIG.glob("*.json"):
        shutil.copy(source, folder / source.name)
    extra = R117_PER_SPEC.get(case["notes"].split(" ", 1)[0])
    if extra is not None:
        shutil.copytree(R117_CONFIG / "per-spec", folder / "per-spec")
        shutil.copy(R117_CONFIG / "per-spec" / extra, folder / extra)
    databases = folder / "maxmind"
    databases.mkdir()
    geo: dict[str, Any] = {}
    for name in (part.strip() for part in lookups.split(",")):
        configured, test_file = MAXMIND_FILES[name]
        (databases / configured).symlink_to(MAXMIND / test_file)
        geo[name] = {"database": configured, "uri": databases.as_uri()}
    write_enrichment(folder, "ip_lookups", "2-0-0", True, geo)
    write_enrichment(
        folder, "anon_ip", "1-0-0", anon_enabled == "true", {"anonOctets": int(octets)}
    )


def write_enrichment(
    folder: Path, name: str, version: str, enabled: bool, parameters: dict[str, Any]
) -> None:
    vendor = "com.snowplowanalytics.snowplow"
    document = {
        "schema": f"iglu:{vendor}/{name}/jsonschema/{version}",
        "data": {
            "vendor": vendor,
            "name": name,
            "enabled": enabled,
            "parameters": parameters,
        },
    }
    (folder / f"{name}.json").write_text(json.dumps(document))


@pytest.mark.parametrize("case", CASES)
def test_enriched_row_with_snowplows_configuration(
    case: dict[str, Any], tmp_path: Path
) -> None:
    if not (MAXMIND.is_dir() and IGLU_CENTRAL.is_dir()):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{MAXMIND} or {IGLU_CENTRAL} is missing")
        pytest.skip(f"needs {MAXMIND} and {IGLU_CENTRAL}")
    expected = case["expected"]
    if "good_events" in expected:
        return  # counts only: checked without enrichments above
    write_r117_config(case, tmp_path)
    # Iglu Central's schemas check that the files are valid Snowplow files.
    resolver = Resolver(
        [LocalRepository("Iglu Central", priority=1, root=IGLU_CENTRAL)]
    )
    enricher = Enricher(
        enrichments=load_enrichments(tmp_path, resolver),
        clock=lambda: R117_ETL_SECONDS,
    )
    outcomes = enricher.enrich_line(
        case["input"].encode(),
        loader=loader_for(case["input_format"]),
        loader_name=case["input_format"],
    )
    candidates = [o for o in outcomes if isinstance(o, EnrichedEvent)]
    assert candidates, [o.reason for o in outcomes if isinstance(o, FailedEvent)]

    def agreement(event: EnrichedEvent) -> int:
        return sum(event[k] == v for k, v in expected.items() if k in FIELD_NAMES)

    event = max(candidates, key=agreement)
    spec = case["notes"].split(" ", 1)[0]
    skipped = {"v_etl"} | LEGACY_FIELDS
    if expected.get("event_id") is None:
        skipped.add("event_id")
    skipped |= R117_DIFFERENT.get(spec, set())
    if spec.startswith(R117_OTHER_CONTEXTS):
        skipped.add("derived_contexts")
    for name, value in expected.items():
        if name not in FIELD_NAMES or name in skipped:
            continue
        got = event[name]
        if name in JSON_FIELDS and value is not None:
            assert same_json(value, got, name), (name, value, got)
        else:
            assert got == value, (name, value, got)
