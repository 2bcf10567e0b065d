"""Regression tests from an adversarial review: input that once crashed enrichment
or produced rows a store refuses now gives a failed event or a storable row."""

from __future__ import annotations

import gzip
import time
import uuid
from dataclasses import replace

import orjson
import pytest

from plowline.enrich.failed import FailedEvent
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.rawlog.record import RawRecord

TP2 = "/com.snowplowanalytics.snowplow/tp2"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def record(
    query: str = "",
    body: bytes | None = None,
    path: str = "/i",
    headers: tuple[tuple[str, str], ...] = (),
    **extra: object,
) -> RawRecord:
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=1796398150600,
        collector="plowline-test",
        method="POST" if body else "GET",
        path=path,
        querystring=query.encode() or None,
        body=body,
        content_type="application/json" if body else None,
        headers=headers,
        ip="10.0.0.1",
        extra=dict(extra),
    )


def one(raw: RawRecord) -> EnrichedEvent | FailedEvent:
    [outcome] = Enricher().enrich_record(raw)
    return outcome


@pytest.mark.parametrize(
    "query",
    [
        "tr_tt=1e28",
        "se_va=1e-999999999999999999",
        "se_va=1e-50000000",
        "vid=" + "1" * 5000,
        "dtm=" + "9" * 5000,
        "res=" + "1" * 5000 + "x1",
        "se_va=0E-999999",
    ],
    ids=[
        "huge-money",
        "tiny-exponent",
        "long-exponent",
        "long-int",
        "long-tstamp",
        "long-dimension",
        "zero-tiny-exponent",
    ],
)
def test_extreme_numbers_fail_the_event_not_enrichment(query: str) -> None:
    outcome = one(record(f"e=se&p=web&tv=t&{query}"))
    assert isinstance(outcome, FailedEvent)
    assert outcome.type == "schema_violations"
    assert len(outcome.to_json()) < 20_000


def test_large_decimal_is_written_out_in_full() -> None:
    outcome = one(record("e=se&p=web&tv=t&se_va=1e29"))
    assert isinstance(outcome, EnrichedEvent)
    assert outcome["se_value"] == "1" + "0" * 29


def test_json_nested_too_deep_is_a_failed_event() -> None:
    deep = "[" * 300 + "]" * 300
    contexts = (
        orjson.dumps(
            {
                "schema": CONTEXTS,
                "data": [{"schema": "iglu:a/b/jsonschema/1-0-0", "data": "X"}],
            }
        )
        .decode()
        .replace('"X"', deep)
    )
    outcome = one(record(query="e=pv&p=web&tv=t&co=" + contexts.replace("&", "%26")))
    assert isinstance(outcome, FailedEvent)
    assert "deeper than 50" in outcome.reason
    body = orjson.dumps({"schema": PAYLOAD_DATA, "data": [{"e": "pv"}]})
    body = body.replace(b'"pv"', b'"pv","x":' + deep.encode())
    outcome = one(record(body=body, path=TP2))
    assert isinstance(outcome, FailedEvent)
    orjson.loads(outcome.to_json())


def test_ports_that_fit_no_column_are_left_empty() -> None:
    for url in ("http://a.com:99999999999/", "http://[::1]:١٢/"):
        outcome = one(record("e=pv&p=web&tv=t&url=" + url.replace(":", "%3A")))
        assert isinstance(outcome, EnrichedEvent)
        assert outcome["page_urlport"] is None
        assert outcome["page_url"] == url


def test_empty_collector_name_fails_the_event() -> None:
    outcome = one(record("e=pv&p=web&tv=t&cv="))
    assert isinstance(outcome, FailedEvent)
    assert outcome.type == "enrichment_failures"


def test_gzip_bomb_is_refused() -> None:
    payload = orjson.dumps(
        {"schema": PAYLOAD_DATA, "data": [{"e": "pv", "p": "web", "tv": "t"}]}
    )
    bomb = gzip.compress(payload + b" " * (50 * 1024 * 1024))
    outcome = one(record(body=bomb, path=TP2))
    assert isinstance(outcome, FailedEvent)
    assert "inflates to more than" in outcome.reason


def test_many_bad_events_in_one_batch_cost_linear_time() -> None:
    body = orjson.dumps({"schema": PAYLOAD_DATA, "data": [{}] * 20_000})
    started = time.monotonic()
    outcomes = Enricher().enrich_record(record(body=body, path=TP2))
    elapsed = time.monotonic() - started
    assert len(outcomes) == 20_000
    assert all(isinstance(o, FailedEvent) for o in outcomes)
    first = outcomes[0]
    assert isinstance(first, FailedEvent)
    assert orjson.loads(first.payload["body"])["data"] == [{}]
    # Quadratic work took minutes here; linear work takes a few seconds at most.
    assert elapsed < 30


def test_collector_refusal_becomes_a_size_violation() -> None:
    error = "size_violation: body of 2097152 bytes exceeds the limit of 1048576 bytes"
    outcome = one(record(body=b'{"schema":', path=TP2, error=error))
    assert isinstance(outcome, FailedEvent)
    assert outcome.type == "size_violation"
    assert outcome.failure["actualSizeBytes"] == 2097152
    assert outcome.failure["maximumAllowedSizeBytes"] == 1048576


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((), "10.0.0.1"),
        ((("X-Forwarded-For", "129.78.138.66, 129.78.64.103"),), "129.78.138.66"),
        ((("x-forwarded-for", '"[2001:db8::7334]"'),), "2001:db8::7334"),
        ((("Forwarded", "for=2001:db8::1, for=129.78.138.56"),), "2001:db8::1"),
        ((("Forwarded", "for=2.2.2.2"), ("X-Forwarded-For", "1.1.1.1")), "1.1.1.1"),
        ((("X-Forwarded-For", "1.1.1.1:8080"),), "1.1.1.1"),
        ((("X-Forwarded-For", "unknown"),), "10.0.0.1"),
    ],
)
def test_client_ip_of_other_collectors_comes_from_proxy_headers(
    headers: tuple[tuple[str, str], ...], expected: str
) -> None:
    raw = replace(record("e=pv&p=web&tv=t", headers=headers), collector="ssc-2.9.0")
    outcome = one(raw)
    assert isinstance(outcome, EnrichedEvent)
    assert outcome["user_ipaddress"] == expected


def test_plowline_collector_address_is_not_second_guessed() -> None:
    # A Plowline collector trusts proxy headers only from configured proxies and
    # records the address it settled on.
    headers = (("X-Forwarded-For", "1.1.1.1"),)
    outcome = one(record("e=pv&p=web&tv=t", headers=headers))
    assert isinstance(outcome, EnrichedEvent)
    assert outcome["user_ipaddress"] == "10.0.0.1"


def test_ip_parameter_beats_proxy_headers() -> None:
    headers = (("X-Forwarded-For", "1.1.1.1"),)
    outcome = one(record("e=pv&p=web&tv=t&ip=203.0.113.5", headers=headers))
    assert isinstance(outcome, EnrichedEvent)
    assert outcome["user_ipaddress"] == "203.0.113.5"


def test_percent_encoded_path_reaches_its_adapter() -> None:
    outcome = one(record("e=pv&p=web&tv=t", path="/%69"))
    assert isinstance(outcome, EnrichedEvent)


def test_long_free_text_is_cut_and_long_identifiers_fail() -> None:
    title = "é" * 2500
    outcome = one(record("e=pv&p=web&tv=t&page=" + title))
    assert isinstance(outcome, EnrichedEvent)
    assert outcome["page_title"] == "é" * 2000
    outcome = one(record("e=pv&p=web&tv=t&aid=" + "a" * 256))
    assert isinstance(outcome, FailedEvent)
    assert outcome.type == "schema_violations"
    assert outcome.failure["messages"][0]["field"] == "app_id"
    assert "at most 255 characters; it has 256" in outcome.reason
