"""PII pseudonymisation: spec section 3.10, CFG-SPARK-R117's settings, and the
pii_transformation event checked against Iglu Central's schemas."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft4Validator

from fixture_traffic import SHARED
from plowline.enrich.enrichments.base import EnrichmentInput, Event
from plowline.enrich.enrichments.pii import JsonPath, JsonPathError, PiiPseudonymizer
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

CASES_FILE = SHARED / "fixtures" / "snowplow_cases.jsonl"
IGLU_CENTRAL = SHARED / "data" / "iglu-central" / "schemas"
CONFIG_FILE = (
    Path(__file__).parent.parent
    / "data"
    / "enrichments-more"
    / "configs"
    / "pii_enrichment_config.json"
)
UE = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CX = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"


@dataclass(slots=True)
class Input(EnrichmentInput):
    """EnrichmentInput with the list emitted events go to (until base.py has it)."""

    extra_events: list[Event] = field(default_factory=list)


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def config_parameters() -> dict[str, Any]:
    """The example file's parameters, with emitEvent and anonymousOnly moved in
    from ``data`` as the configuration loader does."""
    data = json.loads(CONFIG_FILE.read_text())["data"]
    return data["parameters"] | {
        "emitEvent": data["emitEvent"],
        "anonymousOnly": data["anonymousOnly"],
    }


def make(pii: list[dict[str, Any]], **extra: Any) -> PiiPseudonymizer:
    strategy = {"pseudonymize": {"hashFunction": "SHA-1", "salt": "pink123"}}
    parameters = {"pii": pii, "strategy": strategy} | extra
    return PiiPseudonymizer.from_parameters(parameters, source="pii.json")


def run(
    enrichment: PiiPseudonymizer,
    event: Event,
    headers: tuple[tuple[str, str], ...] = (),
) -> Input:
    record = RawRecord(
        id="r1", tstamp=0, collector="t", method="GET", path="/i", headers=headers
    )
    inp = Input({}, record)
    enrichment.enrich(event, inp)
    return inp


def unstruct(schema: str, data: Any) -> str:
    return orjson.dumps(
        {"schema": UE, "data": {"schema": schema, "data": data}}
    ).decode()


def json_rule(column: str, criterion: str, path: str) -> dict[str, Any]:
    return {"json": {"field": column, "schemaCriterion": criterion, "jsonPath": path}}


def test_anonymised_ip_hash_matches_the_spec_check() -> None:
    enrichment = make([{"pojo": {"field": "user_ipaddress"}}])
    event: Event = {"user_ipaddress": "216.160.83.x", "user_id": "kept"}
    run(enrichment, event)
    assert event == {
        "user_ipaddress": "a56b2a47752ef6dac5d5c2d9cbebf2fd69fd1f36",
        "user_id": "kept",
    }


def test_mailgun_recipient_as_in_snowplow_row_s008() -> None:
    if not CASES_FILE.is_file():
        pytest.skip(f"{CASES_FILE} not found")
    rows = [json.loads(line) for line in CASES_FILE.read_text("utf-8").splitlines()]
    expected = next(r for r in rows if r["id"] == "S008")["expected"]["unstruct_event"]
    hashed = "b4a671bd13d37fef13b4aa170f22bf6d5bf2f6a3"
    event: Event = {"unstruct_event": expected.replace(hashed, "alice@example.com")}
    run(PiiPseudonymizer.from_parameters(config_parameters(), source="p"), event)
    assert json.loads(event["unstruct_event"] or "") == json.loads(expected)


def test_mailchimp_union_path_hashes_strings_in_arrays() -> None:
    schema = "iglu:com.mailchimp/subscribe/jsonschema/1-0-0"
    data = {"data": {"email": "a@b.c", "ip_opt": ["1.2.3.4", 7], "merges": {}}}
    event: Event = {"unstruct_event": unstruct(schema, data), "user_id": "bob"}
    inp = run(PiiPseudonymizer.from_parameters(config_parameters(), source="p"), event)
    inner = json.loads(event["unstruct_event"] or "")["data"]["data"]["data"]
    assert inner == {
        "email": sha1("a@b.cpink123"),
        "ip_opt": [sha1("1.2.3.4pink123"), 7],
        "merges": {},
    }
    assert event["user_id"] == sha1("bobpink123")
    assert len(inp.extra_events) == 1


def test_contexts_only_matching_schemas_and_no_keys_added() -> None:
    enrichment = make(
        [json_rule("contexts", "iglu:com.acme/user/jsonschema/1-*-*", "$..email")]
    )
    entities = [
        {"schema": "iglu:com.acme/user/jsonschema/1-2-0", "data": {"email": "x@y"}},
        {"schema": "iglu:com.acme/user/jsonschema/2-0-0", "data": {"email": "x@y"}},
        {"schema": "iglu:com.acme/user/jsonschema/1-0-0", "data": {"name": "n"}},
        {
            "schema": "iglu:com.acme/user/jsonschema/1-0-1",
            "data": {"emails": [{"email": "p@q"}], "email": None},
        },
    ]
    event: Event = {"contexts": orjson.dumps({"schema": CX, "data": entities}).decode()}
    run(enrichment, event)
    after = json.loads(event["contexts"] or "")["data"]
    assert [e["data"] for e in after] == [
        {"email": sha1("x@ypink123")},
        {"email": "x@y"},
        {"name": "n"},
        {"emails": [{"email": sha1("p@qpink123")}], "email": None},
    ]


def test_derived_contexts_are_hashed_in_place() -> None:
    enrichment = make(
        [json_rule("derived_contexts", "iglu:org.ietf/http_cookie/jsonschema/1-0-0",
                   "$.value")]
    )  # fmt: skip
    record = RawRecord(id="r", tstamp=0, collector="t", method="GET", path="/i")
    inp = Input({}, record)
    inp.derived_contexts.append(
        {"schema": "iglu:org.ietf/http_cookie/jsonschema/1-0-0",
         "data": {"name": "sp", "value": "abc"}}
    )  # fmt: skip
    enrichment.enrich({}, inp)
    assert inp.derived_contexts[0]["data"] == {
        "name": "sp",
        "value": sha1("abcpink123"),
    }


def test_emitted_event_is_valid_for_iglu_central() -> None:
    schema_dir = IGLU_CENTRAL / "com.snowplowanalytics.snowplow"
    if not schema_dir.is_dir():
        pytest.skip(f"{schema_dir} not found")
    event: Event = {
        "event_id": "0b0b0b0b-1111-4222-8333-444444444444",
        "app_id": "shop",
        "etl_tstamp": "2024-03-02 10:00:00.000",
        "collector_tstamp": "2024-03-02 09:59:59.000",
        "user_id": "bob",
        "unstruct_event": unstruct(
            "iglu:com.mailgun/message_delivered/jsonschema/1-0-0", {"recipient": "r@s"}
        ),
    }
    inp = run(PiiPseudonymizer.from_parameters(config_parameters(), source="p"), event)
    (emitted,) = inp.extra_events
    assert emitted["platform"] == "srv"
    assert emitted["event_name"] == "pii_transformation"
    assert emitted["app_id"] == "shop"
    assert emitted["derived_tstamp"] == emitted["true_tstamp"] == event["etl_tstamp"]
    pii = json.loads(emitted["unstruct_event"] or "")["data"]["data"]
    parent = json.loads(emitted["contexts"] or "")["data"][0]
    for name, document in (
        ("pii_transformation", pii),
        ("parent_event", parent["data"]),
    ):
        schema = json.loads((schema_dir / name / "jsonschema" / "1-0-0").read_text())
        Draft4Validator(schema).validate(document)
    assert parent["data"] == {"parentEventId": event["event_id"]}
    assert pii["pii"]["pojo"] == [
        {"fieldName": "user_id", "originalValue": "bob",
         "modifiedValue": sha1("bobpink123")}
    ]  # fmt: skip
    assert pii["pii"]["json"][0]["originalValue"] == "r@s"
    assert pii["strategy"] == {"pseudonymize": {"hashFunction": "SHA-1"}}


def test_no_event_emitted_when_nothing_changed_or_not_asked() -> None:
    quiet = make([{"pojo": {"field": "user_id"}}])
    assert run(quiet, {"user_id": "bob"}).extra_events == []
    loud = make([{"pojo": {"field": "user_id"}}], emitEvent=True)
    assert run(loud, {"user_id": None}).extra_events == []


def test_anonymous_only_needs_the_sp_anonymous_header() -> None:
    enrichment = make([{"pojo": {"field": "user_id"}}], anonymousOnly=True)
    plain: Event = {"user_id": "bob"}
    run(enrichment, plain, (("Cookie", "sp=1"),))
    assert plain["user_id"] == "bob"
    anonymous: Event = {"user_id": "bob"}
    run(enrichment, anonymous, (("sp-anonymous", "*"),))
    assert anonymous["user_id"] == sha1("bobpink123")


@pytest.mark.parametrize(
    ("function", "name"),
    [
        ("MD5", "md5"),
        ("SHA-256", "sha256"),
        ("SHA-384", "sha384"),
        ("SHA-512", "sha512"),
    ],
)
def test_other_hash_functions(function: str, name: str) -> None:
    strategy = {"pseudonymize": {"hashFunction": function, "salt": "s"}}
    enrichment = PiiPseudonymizer.from_parameters(
        {"pii": [{"pojo": {"field": "se_label"}}], "strategy": strategy}, source="p"
    )
    event: Event = {"se_label": "v"}
    run(enrichment, event)
    assert event["se_label"] == hashlib.new(name, b"vs").hexdigest()


@pytest.mark.parametrize(
    ("path", "data", "expected"),
    [
        ("$.a.b", {"a": {"b": "x"}}, [("b", "x")]),
        (
            "$.a[*].b",
            {"a": [{"b": "x"}, {"c": "y"}, {"b": "z"}]},
            [("b", "x"), ("b", "z")],
        ),
        ("$..b", {"b": "x", "a": {"b": "y"}}, [("b", "x"), ("b", "y")]),
        ("$['a','c']", {"a": "x", "b": "y", "c": "z"}, [("a", "x"), ("c", "z")]),
        ("$.a[-1]", {"a": ["x", "y"]}, [(1, "y")]),
        ("$.a.*", {"a": {"p": "x", "q": "y"}}, [("p", "x"), ("q", "y")]),
        ("$.missing.b", {"a": 1}, []),
    ],
)
def test_jsonpath_subset_selects(path: str, data: Any, expected: list[Any]) -> None:
    found = [
        (key, container[key]) for container, key in JsonPath.parse(path).locate([data])
    ]
    assert found == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("a.b", "a path starting with $"),
        ("$.a[?(@.b)]", "[?(@.b)] is not supported: use names, indexes or *"),
        ("$.a[1:3]", "[1:3] is not a list of names or indexes"),
        ("$.a[", "cannot read '['"),
    ],
)
def test_jsonpath_outside_the_subset_is_refused(path: str, message: str) -> None:
    with pytest.raises(JsonPathError) as error:
        JsonPath.parse(path)
    assert str(error.value) == message


PREFIX = "pii.json: "
STRATEGY = {"pseudonymize": {"hashFunction": "SHA-1", "salt": ""}}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"strategy": STRATEGY}, "parameters.pii must be a list of {pojo} or {json} "
         "objects; found None."),
        ({"pii": [{"pojo": {"field": "page_url"}}], "strategy": STRATEGY},
         "parameters.pii[0].pojo.field must be one of domain_sessionid, "
         "domain_userid, ip_domain, ip_organization, mkt_clickid, mkt_content, "
         "mkt_term, network_userid, refr_domain_userid, se_action, se_category, "
         "se_label, se_property, ti_orderid, tr_orderid, user_fingerprint, user_id, "
         "user_ipaddress; found 'page_url'."),
        ({"pii": [{"pojo": {"field": "user_id"}, "json": {}}], "strategy": STRATEGY},
         "parameters.pii[0] must be an object with exactly one of pojo, json; "
         "found {'pojo': {'field': 'user_id'}, 'json': {}}."),
        ({"pii": [json_rule("page_url", "iglu:a/b/jsonschema/1-0-0", "$.a")],
          "strategy": STRATEGY},
         "parameters.pii[0].json.field must be one of contexts, derived_contexts, "
         "unstruct_event; found 'page_url'."),
        ({"pii": [json_rule("contexts", "iglu:a/b/jsonschema/0-0-0", "$.a")],
          "strategy": STRATEGY},
         "parameters.pii[0].json.schemaCriterion must be an Iglu schema criterion "
         "such as iglu:com.acme/user/jsonschema/1-*-*; found "
         "'iglu:a/b/jsonschema/0-0-0'."),
        ({"pii": [json_rule("contexts", "iglu:a/b/jsonschema/1-0-0", "$.a[?(@)]")],
          "strategy": STRATEGY},
         "parameters.pii[0].json.jsonPath must be a JSONPath ([?(@)] is not "
         "supported: use names, indexes or *); found '$.a[?(@)]'."),
        ({"pii": [], "strategy": {"hash": "SHA-1"}},
         "parameters.strategy must be an object {pseudonymize: {hashFunction, "
         "salt}}; found {'hash': 'SHA-1'}."),
        ({"pii": [], "strategy": {"pseudonymize": {"hashFunction": "SHA-1"}}},
         "parameters.strategy.pseudonymize.salt must be a string; found None."),
        ({"pii": [], "strategy": {"pseudonymize": {"hashFunction": "SHA1",
                                                   "salt": ""}}},
         "parameters.strategy.pseudonymize.hashFunction must be one of MD2, MD5, "
         "SHA-1, SHA-256, SHA-384, SHA-512; found 'SHA1'."),
        ({"pii": [], "strategy": STRATEGY, "emitEvent": "yes"},
         "emitEvent must be true or false; found 'yes'."),
    ],
    ids=["pii-missing", "pojo-field", "both-kinds", "json-field", "criterion",
         "jsonpath", "strategy", "salt", "hash-name", "emit-event"],
)  # fmt: skip
def test_bad_configuration_is_refused(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        PiiPseudonymizer.from_parameters(parameters, source="pii.json")
    assert str(error.value) == PREFIX + message


def test_md2_is_refused_where_hashlib_lacks_it() -> None:
    import hashlib as lib

    if "md2" in lib.algorithms_available:
        pytest.skip("this Python's hashlib has MD2")
    strategy = {"pseudonymize": {"hashFunction": "MD2", "salt": ""}}
    with pytest.raises(ConfigurationError) as error:
        PiiPseudonymizer.from_parameters({"pii": [], "strategy": strategy}, source="p")
    assert str(error.value) == (
        "p: hashFunction MD2 is not available in this Python's hashlib (OpenSSL 3 "
        "no longer provides it); choose SHA-256 or another."
    )


def test_example_configuration_is_valid_for_iglu_central() -> None:
    document = json.loads(CONFIG_FILE.read_text())
    schema_path = IGLU_CENTRAL / document["schema"][5:]
    if not schema_path.is_file():
        pytest.skip(f"{schema_path} not found")
    Draft4Validator(json.loads(schema_path.read_text())).validate(document["data"])
