"""Bugs found by a hostile/careless tester of configurable enrichments and Iglu
validation. Each test fails while the bug is there; the comment says what is
wrong and what should happen."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from plowline.enrich.enrichments.anon_ip import AnonIp
from plowline.enrich.enrichments.base import EnrichmentError, EnrichmentInput
from plowline.enrich.enrichments.config import load_enrichments
from plowline.enrich.enrichments.currency import CurrencyConversion
from plowline.enrich.failed import FailedEvent
from plowline.enrich.pipeline import EnrichedEvent
from plowline.enrich.settings import EnrichSettings
from plowline.errors import ConfigurationError
from plowline.iglu.config import load_resolver
from plowline.rawlog.record import RawRecord, encode_record

REPO = Path(__file__).resolve().parent.parent.parent
PLOWLINE = Path(sys.executable).parent / "plowline"

PY_CONFIG = {
    "schema": "iglu:io.plowline/python_enrichment_config/jsonschema/1-0-0",
    "data": {
        "vendor": "io.plowline",
        "name": "python_enrichment_config",
        "enabled": True,
        "parameters": {"file": "enrich.py", "function": "process"},
    },
}


def record(i: int = 0, ip: str = "1.2.3.4", **params: str) -> RawRecord:
    query = {
        "e": "pv",
        "p": "web",
        "tv": "js-3.0.0",
        "aid": "shop",
        "url": "https://www.example.com/a",
        "eid": str(uuid.UUID(int=i + 1)),
        **params,
    }
    return RawRecord(
        id=str(uuid.UUID(int=1000 + i)),
        tstamp=1709300000000 + i,
        collector="plowline-0.1.0",
        method="GET",
        path="/i",
        querystring=urlencode(query).encode(),
        headers=(("Host", "t.example.com"),),
        ip=ip,
        useragent="Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
        host="t.example.com",
        network_userid=str(uuid.UUID(int=2000 + i)),
    )


def write_config(folder: Path, name: str, document: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(document))


def python_enrichment(folder: Path, code: str) -> Path:
    # A unique folder per test: the module is cached per path in sys.modules.
    write_config(folder, "py.json", PY_CONFIG)
    (folder / "enrich.py").write_text(code)
    return folder


def outcomes(
    folder: Path, *records: RawRecord, resolver: str | None = None
) -> list[Any]:
    enricher = EnrichSettings(str(folder), resolver).build()
    out = []
    for r in records:
        out.extend(enricher.enrich_record(r))
    return out


# --- Python enrichment -------------------------------------------------------


def test_python_enrichment_unserialisable_result_is_an_enrichment_failure(
    tmp_path: Path,
) -> None:
    # A function returning data that is not JSON (a set here) fails the event
    # as generic_error "Plowline could not enrich this event (TypeError...)",
    # with a traceback logged as a Plowline fault. docs/enrichments-more.md says
    # anything else than a list of {schema, data} fails the event with a message
    # naming the file and the function: it should be an enrichment_failures
    # naming enrich.py:process.
    folder = python_enrichment(
        tmp_path / "unserialisable",
        "def process(event, config):\n"
        "    return [{'schema': 'iglu:com.acme/x/jsonschema/1-0-0', 'data': {1, 2}}]\n",
    )
    [outcome] = outcomes(folder, record())
    assert isinstance(outcome, FailedEvent)
    assert outcome.type == "enrichment_failures", outcome.reason
    assert "enrich.py:process" in outcome.reason


def test_python_enrichment_sys_exit_at_import_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    # A file whose top level calls sys.exit(3) makes `plowline enrich` exit
    # with status 3 and no message at all (only Exception is caught around
    # the import). It should be a ConfigurationError naming the file.
    folder = python_enrichment(
        tmp_path / "exit_at_import",
        "import sys\nsys.exit(3)\ndef process(event, config):\n    return None\n",
    )
    with pytest.raises(ConfigurationError, match=r"enrich\.py"):
        try:
            load_enrichments(folder)
        except SystemExit as exc:  # what happens now
            pytest.fail(f"SystemExit({exc.code}) escaped from loading the file")


def test_python_enrichment_raising_system_exit_fails_only_that_event(
    tmp_path: Path,
) -> None:
    # A function that raises SystemExit (or calls sys.exit/exit()) stops
    # `plowline enrich` silently with status 1 and truncated outputs. It
    # should fail that event like any other exception from the function.
    folder = python_enrichment(
        tmp_path / "exit_in_function",
        "import sys\ndef process(event, config):\n    sys.exit(1)\n",
    )
    try:
        [outcome] = outcomes(folder, record())
    except SystemExit:
        pytest.fail("SystemExit from the user's function escaped the pipeline")
    assert isinstance(outcome, FailedEvent)
    assert "enrich.py:process" in outcome.reason


def test_python_enrichment_infinite_loop_does_not_hang_enrich(tmp_path: Path) -> None:
    # `while True: pass` in the function hangs `plowline enrich` forever with
    # no output and no log line. There should be a time limit per call (a
    # parameter with a default) that fails the event naming the function, so
    # the run ends with input = enriched + failed.
    folder = python_enrichment(
        tmp_path / "loop",
        "def process(event, config):\n    while True:\n        pass\n",
    )
    # A short limit keeps the test quick (the default is 5 s).
    short = json.loads(json.dumps(PY_CONFIG))
    short["schema"] = short["schema"].replace("1-0-0", "1-0-1")
    short["data"]["parameters"]["timeoutSeconds"] = 0.5
    write_config(folder, "py.json", short)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "raw-1.jsonl").write_bytes(encode_record(record()))
    command = [str(PLOWLINE), "-q", "enrich", "--enrichments", str(folder),
               "--good", str(tmp_path / "good.tsv"), "--bad",
               str(tmp_path / "bad.jsonl"), str(raw)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("plowline enrich still running after 60 s on one event")
    assert done.returncode == 0
    assert len((tmp_path / "bad.jsonl").read_text().splitlines()) == 1


def test_pii_does_not_rehash_a_context_object_the_python_function_reuses(
    tmp_path: Path,
) -> None:
    # PII pseudonymisation hashes derived contexts in place, and the Python
    # enrichment's result is not copied: a function returning a module-level
    # list gets it hashed again on every event (hash of hash of ...), so the
    # value depends on how many events the process saw before (and differs
    # between --workers 1 and 2), and the pii_transformation event's
    # "originalValue" is a hash. Every event should get sha256(email + salt).
    folder = python_enrichment(
        tmp_path / "shared",
        "CONTEXT = [{'schema': 'iglu:com.acme/person/jsonschema/1-0-0',\n"
        "            'data': {'email': 'alice@example.com'}}]\n"
        "def process(event, config):\n    return CONTEXT\n",
    )
    write_config(folder, "pii.json", {
        "schema": "iglu:com.snowplowanalytics.snowplow.enrichments/"
                  "pii_enrichment_config/jsonschema/2-0-0",
        "data": {
            "vendor": "com.snowplowanalytics.snowplow.enrichments",
            "name": "pii_enrichment_config", "enabled": True,
            "parameters": {
                "pii": [{"json": {"field": "derived_contexts",
                                  "schemaCriterion":
                                      "iglu:com.acme/person/jsonschema/1-*-*",
                                  "jsonPath": "$.email"}}],
                "strategy": {"pseudonymize": {"hashFunction": "SHA-256", "salt": "s"}},
            },
        },
    })  # fmt: skip
    expected = hashlib.sha256(b"alice@example.coms").hexdigest()
    results = outcomes(folder, record(0), record(1), record(2))
    emails = []
    for outcome in results:
        assert isinstance(outcome, EnrichedEvent)
        entities = json.loads(outcome["derived_contexts"] or "{}")["data"]
        emails += [e["data"]["email"] for e in entities if "person" in e["schema"]]
    assert emails == [expected] * 3


# --- IP anonymisation and lookups ------------------------------------------------


@pytest.mark.parametrize(
    ("address", "secret"),
    [("1.2.3.4:8080", "1.2.3.4"), ("[2001:db8::1]:443", "2001:db8::1")],
)
def test_anon_ip_does_not_keep_the_whole_address_when_a_port_is_attached(
    address: str, secret: str
) -> None:
    # user_ipaddress can carry a port (the `ip` tracker parameter, other
    # collectors' records; ip_lookups documents stripping it). anon_ip then
    # takes the text as "not an address" and splits it on ':', keeping the
    # whole address: "1.2.3.4:8080" -> "1.2.3.4:8080:x:x:x:x:x:x",
    # "[2001:db8::1]:443" -> "[2001:db8::1]:443:x:x:x". The enriched TSV leaks
    # the full IP with anonymisation on. The port (and brackets) should be
    # removed as ip_lookups does, then the address masked ("1.2.3.x").
    # (Snowplow's masking of invalid text is the same; the leak is still a leak.)
    masked = AnonIp(1, 2).anonymise(address)
    assert secret not in masked, masked


def test_ip_lookups_with_a_non_maxmind_layout_mmdb_does_not_fail_events(
    tmp_path: Path,
) -> None:
    # docs/enrichments.md: "Any MaxMind-format file (..., or another vendor's
    # .mmdb) replaces it" and "A lookup that fails ... never fails the event".
    # An IPinfo-style .mmdb ({"country": "US", ...}: flat strings) makes every
    # event whose address is in it a generic_error
    # (AttributeError: 'str' object has no attribute 'get') with a traceback.
    # Fields it cannot read should stay empty and the event be enriched.
    mmdb_writer = pytest.importorskip("mmdb_writer")
    netaddr = pytest.importorskip("netaddr")
    writer = mmdb_writer.MMDBWriter(
        ip_version=6, database_type="ipinfo country.mmdb", ipv4_compatible=True
    )
    writer.insert_network(
        netaddr.IPSet(["1.2.3.0/24"]),
        {"continent": "NA", "country": "US", "country_name": "United States"},
    )
    writer.to_db_file(str(tmp_path / "country.mmdb"))
    write_config(tmp_path / "conf", "ip_lookups.json", {
        "schema": "iglu:com.snowplowanalytics.snowplow/ip_lookups/jsonschema/2-0-0",
        "data": {"vendor": "com.snowplowanalytics.snowplow", "name": "ip_lookups",
                 "enabled": True,
                 "parameters": {"geo": {"database": "country.mmdb",
                                        "uri": str(tmp_path)}}},
    })  # fmt: skip
    [outcome] = outcomes(tmp_path / "conf", record(ip="1.2.3.4"))
    assert isinstance(outcome, EnrichedEvent), outcome.reason


# --- Configuration mistakes that end in a traceback ----------------------------------


def referer_config(uri: str, database: str) -> dict[str, Any]:
    return {
        "schema": "iglu:com.snowplowanalytics.snowplow/referer_parser/jsonschema/2-0-0",
        "data": {
            "vendor": "com.snowplowanalytics.snowplow",
            "name": "referer_parser",
            "enabled": True,
            "parameters": {"internalDomains": [], "uri": uri, "database": database},
        },
    }


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_unreadable_referer_database_is_a_configuration_error(tmp_path: Path) -> None:
    # A referer database that exists but cannot be read (permission denied,
    # I/O error: /proc/self/mem here) makes `plowline enrich` die with an
    # OSError traceback: load_database's read_text is not guarded and
    # _instantiate catches only KeyError/TypeError/ValueError. ip_lookups,
    # ua_parser and bots report the same case as a clear ConfigurationError.
    write_config(tmp_path, "referer.json", referer_config("/proc/self", "mem"))
    with pytest.raises(ConfigurationError, match="mem"):
        load_enrichments(tmp_path)


def test_json_referer_database_beside_its_configuration_is_accepted(
    tmp_path: Path,
) -> None:
    # docs: a relative uri is taken from the folder of the configuration file,
    # and the database may be JSON (Snowplow's referers-latest.json). Putting
    # it there ("uri": ".") stops start-up: the loader reads every *.json of
    # the folder as an enrichment configuration ("referers.json: schema:
    # missing; expected an Iglu URI"). Data files named by a configuration
    # should be skipped (or the docs should say to keep them elsewhere).
    write_config(tmp_path, "referer_parser.json", referer_config(".", "referers.json"))
    write_config(tmp_path, "referers.json", {
        "search": {"Google": {"domains": ["google.com"], "parameters": ["q"]}}
    })  # fmt: skip
    [enrichment] = load_enrichments(tmp_path)
    assert enrichment.name == "referer_parser"


def test_infinite_anon_octets_is_a_configuration_error(tmp_path: Path) -> None:
    # "anonOctets": 1e400 (JSON's way to say a huge number; Python reads it as
    # inf) ends `plowline enrich` with an OverflowError traceback from
    # int(value) in anon_ip._count. It should be the usual one-line
    # "parameters.anonOctets must be a whole number from 1 to 4".
    (tmp_path / "anon_ip.json").write_text(
        '{"schema": "iglu:com.snowplowanalytics.snowplow/anon_ip/jsonschema/1-0-1",'
        ' "data": {"vendor": "com.snowplowanalytics.snowplow", "name": "anon_ip",'
        ' "enabled": true, "parameters": {"anonOctets": 1e400}}}'
    )
    with pytest.raises(ConfigurationError, match="anonOctets"):
        load_enrichments(tmp_path)


def test_huge_max_rate_age_days_is_a_configuration_error(tmp_path: Path) -> None:
    # "maxRateAgeDays": 99999999999 passes the check (a whole number >= 0) and
    # then dt.timedelta(days=...) raises OverflowError: a traceback at start-up.
    # It should be refused with a message naming parameters.maxRateAgeDays.
    (tmp_path / "rates.csv").write_text("date,currency,rate\n2024-02-29,EUR,1\n")
    write_config(tmp_path, "currency.json", {
        "schema": "iglu:io.plowline/currency_conversion_config/jsonschema/1-0-0",
        "data": {"vendor": "com.snowplowanalytics.snowplow",
                 "name": "currency_conversion_config", "enabled": True,
                 "parameters": {"baseCurrency": "EUR", "rateAt": "EOD_PRIOR",
                                "ratesFile": "rates.csv",
                                "maxRateAgeDays": 99999999999}},
    })  # fmt: skip
    with pytest.raises(ConfigurationError, match="maxRateAgeDays"):
        load_enrichments(tmp_path)


def test_infinite_resolver_cache_size_is_a_configuration_error(tmp_path: Path) -> None:
    # "cacheSize": 1e400 in a resolver file passes the ">= 0 number" check and
    # int(inf) raises OverflowError: `plowline enrich --iglu-resolver` dies with
    # a traceback. It should name data.cacheSize like the other mistakes.
    path = tmp_path / "resolver.json"
    path.write_text(
        '{"schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",'
        ' "data": {"cacheSize": 1e400, "repositories": []}}'
    )
    with pytest.raises(ConfigurationError, match="cacheSize"):
        load_resolver(path)


# --- Events that become generic errors instead of named failures ---------------------


def test_currency_conversion_on_the_first_day_of_year_one_fails_cleanly() -> None:
    # collector_tstamp 0001-01-01 is within the accepted range, but EOD_PRIOR
    # subtracts a day and date arithmetic raises OverflowError, which the
    # pipeline turns into a generic_error with a traceback. It should be the
    # enrichment failure "no rates for that date" (field collector_tstamp).
    enrichment = CurrencyConversion(
        "EUR", {__import__("datetime").date(2024, 1, 1): {}}
    )
    event: dict[str, str | None] = {"collector_tstamp": "0001-01-01 00:00:00.000",
             "tr_total": "1", "tr_currency": "USD"}  # fmt: skip
    inp = EnrichmentInput({}, record())
    with pytest.raises(EnrichmentError):
        enrichment.enrich(event, inp)


def test_self_referencing_schema_is_reported_as_a_schema_issue(tmp_path: Path) -> None:
    # A registry schema {"$ref": "#"} makes validation recurse until
    # RecursionError: the event becomes a generic_error ("Plowline could not
    # enrich this event (RecursionError...)") with a traceback. An unusable
    # schema should give a schema_violations failure with schemaIssues, as a
    # schema with a bad "type" does.
    folder = tmp_path / "reg" / "schemas" / "com.acme" / "loop" / "jsonschema"
    folder.mkdir(parents=True)
    (folder / "1-0-0").write_text('{"$ref": "#"}')
    resolver = tmp_path / "resolver.json"
    resolver.write_text(json.dumps({
        "schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",
        "data": {"cacheSize": 10, "repositories": [
            {"name": "local", "priority": 0, "vendorPrefixes": ["com.acme"],
             "connection": {"embedded": {"path": "reg"}}}]},
    }))  # fmt: skip
    contexts = json.dumps({
        "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
        "data": [{"schema": "iglu:com.acme/loop/jsonschema/1-0-0", "data": {"a": 1}}],
    })  # fmt: skip
    enricher = EnrichSettings(None, str(resolver)).build()
    [outcome] = enricher.enrich_record(record(co=contexts))
    assert isinstance(outcome, FailedEvent)
    assert outcome.type == "schema_violations", outcome.reason
