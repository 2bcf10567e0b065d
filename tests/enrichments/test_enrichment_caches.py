"""The caches and fast paths of the enrichments: each gives what the work it
spares would give, stays bounded, and never answers for an input it was not
filled with."""

from __future__ import annotations

import gc
import hashlib
import json
import threading
import time
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plowline.enrich.enrichments import (
    anon_ip,
    bots,
    campaign,
    currency,
    custom,
    extractors,
    ip_lookups,
    pii,
    referer_parser,
    time_limit,
)
from plowline.enrich.enrichments.anon_ip import AnonIp
from plowline.enrich.enrichments.base import EnrichmentError, EnrichmentInput, Event
from plowline.enrich.enrichments.bots import BotDetection
from plowline.enrich.enrichments.campaign import CampaignAttribution
from plowline.enrich.enrichments.currency import CENT, CurrencyConversion
from plowline.enrich.enrichments.custom import PythonEnrichment, PythonEvent
from plowline.enrich.enrichments.extractors import CookieExtractor, HttpHeaderExtractor
from plowline.enrich.enrichments.fingerprint import EventFingerprint
from plowline.enrich.enrichments.ip_lookups import IpLookups, java_float_text
from plowline.enrich.enrichments.pii import PiiPseudonymizer
from plowline.enrich.enrichments.referer_parser import RefererParser
from plowline.enrich.enrichments.time_limit import TimeLimit, TimeLimitExceeded
from plowline.enrich.enrichments.user_agent_utils import (
    FIELDS as LEGACY_FIELDS,
)
from plowline.enrich.enrichments.user_agent_utils import (
    UserAgentUtils,
    legacy_fields,
)
from plowline.rawlog.record import RawRecord

TESTS = Path(__file__).resolve().parent.parent
MORE = TESTS / "data" / "enrichments-more"
REFERERS = TESTS / "data" / "enrichments"
RECORD = RawRecord(id="r", tstamp=0, collector="c", method="GET", path="/i")
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (compatible; Googlebot/2.{v}; +http://www.google.com/bot.html)",
    "python-requests/2.{v}",
    "",
    "{v}",
]


def inp(params: dict[str, str] | None = None, record: RawRecord = RECORD) -> Any:
    return EnrichmentInput(params or {}, record)


def enriched(enrichment: Any, event: Event, given_inp: Any = None) -> Event:
    enrichment.enrich(event, given_inp or inp())
    return event


# PII: digests kept per salted text.


def pii_enrichment(salt: str = "pepper", **flags: bool) -> PiiPseudonymizer:
    return PiiPseudonymizer.from_parameters(
        {
            "pii": [{"pojo": {"field": "user_id"}}, {"pojo": {"field": "ip_domain"}}],
            "strategy": {"pseudonymize": {"hashFunction": "SHA-256", "salt": salt}},
            **flags,
        },
        source="pii.json",
    )


@PROPERTY
@given(st.lists(st.text(max_size=300), min_size=1, max_size=20))
def test_pii_kept_digests_are_the_digests(values: list[str]) -> None:
    enrichment = pii_enrichment()
    for value in values * 2:  # the second round is answered from the cache
        expected = hashlib.sha256((value + "pepper").encode()).hexdigest()
        assert enrichment.hash(value) == expected


def test_pii_digest_follows_a_changed_salt() -> None:
    enrichment = pii_enrichment()
    first = enrichment.hash("alice")
    enrichment.salt = "other"
    assert enrichment.hash("alice") == hashlib.sha256(b"aliceother").hexdigest()
    assert enrichment.hash("alice") != first


def test_pii_cache_stays_bounded_and_long_values_stay_out() -> None:
    enrichment = pii_enrichment()
    for n in range(pii.DIGESTS_KEPT + 500):
        enrichment.hash(f"user-{n}")
    info = enrichment._kept_digest.cache_info()
    assert info.currsize == pii.DIGESTS_KEPT
    enrichment._kept_digest.cache_clear()
    long_value = "x" * pii.DIGESTED_TEXT_KEPT
    assert enrichment.hash(long_value) == (
        hashlib.sha256((long_value + "pepper").encode()).hexdigest()
    )
    assert enrichment._kept_digest.cache_info().currsize == 0


@PROPERTY
@given(
    st.lists(
        st.fixed_dictionaries(
            {"user_id": st.sampled_from(["", "a", "bob", None]) | st.text(max_size=5)},
            optional={"ip_domain": st.text(max_size=5)},
        ),
        min_size=1,
        max_size=10,
    )
)
def test_pii_short_path_changes_the_event_as_the_full_one(
    events: list[Event],
) -> None:
    # Without emitEvent and JSON fields nothing is recorded for an event to
    # emit; with emitEvent the same fields are hashed the same way.
    short, full = pii_enrichment(), pii_enrichment(emitEvent=True)
    for event in events:
        assert enriched(short, dict(event)) == enriched(full, dict(event))


# Fingerprint: the text from its template.


def reference_text(params: dict[str, str], exclude: frozenset[str]) -> str:
    names = sorted(set(params) - exclude, key=lambda n: n.encode("utf-16-be"))
    return "".join(f"{name}\x1f{params[name]}\x1f" for name in names)


@PROPERTY
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["e", "eid", "url", "aid", "p", "ü", "\U0001f600", "a%"])
            | st.text(min_size=1, max_size=4),
            st.text(max_size=6),
            max_size=8,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_fingerprint_text_is_the_sorted_pairs(events: list[dict[str, str]]) -> None:
    exclude = frozenset({"eid", "stm"})
    enrichment = EventFingerprint(exclude, "MD5")
    for params in events * 2:  # the second round uses the plans kept
        event: Event = {}
        enrichment.enrich(event, inp(params))
        text = reference_text(params, exclude)
        assert event["event_fingerprint"] == hashlib.md5(text.encode()).hexdigest()


# Campaign attribution: fields kept per querystring.

CAMPAIGN = {
    "fields": {
        "mktMedium": ["utm_medium", "medium"],
        "mktSource": ["utm_source"],
        "mktTerm": ["utm_term"],
        "mktContent": ["utm_content"],
        "mktCampaign": ["utm_campaign", "cid"],
        "mktClickId": {"fbclid": "Facebook"},
    }
}
QUERY_PART = st.tuples(
    st.sampled_from(["utm_medium", "medium", "utm_source", "utm_campaign", "cid",
                     "gclid", "fbclid", "utm%5Fterm", "other", "utm_content"]),
    st.sampled_from(["=", "", "=="]),
    st.text(alphabet="ab%20+\t;&=", max_size=6),
)  # fmt: skip


@PROPERTY
@given(st.lists(st.lists(QUERY_PART, max_size=6), min_size=1, max_size=10))
def test_campaign_kept_fields_are_the_fields(queries: list[Any]) -> None:
    kept = CampaignAttribution.from_parameters(CAMPAIGN, source="c.json")
    for parts in queries * 2:
        query = "&".join(name + sep + value for name, sep, value in parts)
        fresh = CampaignAttribution.from_parameters(CAMPAIGN, source="c.json")
        event: Event = {"page_urlquery": query}
        assert enriched(kept, dict(event)) == enriched(fresh, dict(event))
        assert kept.fields_for(query) == fresh.fields_for(query)


def test_campaign_cache_stays_bounded_and_long_queries_stay_out() -> None:
    enrichment = CampaignAttribution.from_parameters(CAMPAIGN, source="c.json")
    for n in range(campaign.QUERIES_KEPT + 100):
        enriched(enrichment, {"page_urlquery": f"utm_source=s{n}"})
    info = enrichment._kept_fields.cache_info()
    assert info.currsize == campaign.QUERIES_KEPT
    enrichment._kept_fields.cache_clear()
    query = "utm_source=long&pad=" + "x" * campaign.QUERY_LENGTH_KEPT
    assert enriched(enrichment, {"page_urlquery": query})["mkt_source"] == "long"
    assert enrichment._kept_fields.cache_info().currsize == 0


# Currency: rates kept per collector date, conversions per amount and day.


def to_eur() -> CurrencyConversion:
    config = MORE / "configs" / "currency_conversion_config.json"
    parameters = json.loads(config.read_text())["data"]["parameters"]
    return CurrencyConversion.from_parameters(parameters, source=str(config))


def convert(enrichment: CurrencyConversion, event: Event) -> Event | str:
    try:
        return enriched(enrichment, dict(event))
    except EnrichmentError as exc:
        return json.dumps(exc.message)


SALE = st.fixed_dictionaries(
    {
        "collector_tstamp": st.sampled_from(
            ["2024-03-02 09:00:00.000", "2024-03-02 23:59:59.999",
             "2024-03-05 00:00:00.000", "2024-02-01 10:00:00.000", "2024-3-2", ""]
        ),
        "tr_currency": st.sampled_from(["USD", "GBP", "JPY", "XYZ", ""]),
        "tr_total": st.sampled_from(["100", "12.345", "0.005", "-3", "1e30", "x"]),
        "ti_currency": st.sampled_from(["EUR", "GBP", None]),
        "ti_price": st.sampled_from(["19.99", "1E-400", None]),
    }
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(SALE, min_size=1, max_size=12))
def test_currency_kept_rates_and_conversions_are_the_conversions(
    events: list[Event],
) -> None:
    kept = to_eur()
    for event in events * 2:
        assert convert(kept, event) == convert(to_eur(), event)


def test_currency_failure_quotes_each_timestamp_of_one_date() -> None:
    enrichment = to_eur()
    messages = []
    for tstamp in ("2023-01-01 01:00:00.000", "2023-01-01 02:00:00.000"):
        event: Event = {"collector_tstamp": tstamp, "tr_currency": "USD",
                        "tr_total": "1"}  # fmt: skip
        with pytest.raises(EnrichmentError) as error:
            enrichment.enrich(event, inp())
        messages.append(error.value.message["value"])
    assert messages == ["2023-01-01 01:00:00.000", "2023-01-01 02:00:00.000"]


def test_currency_caches_stay_bounded() -> None:
    enrichment = to_eur()
    for n in range(currency.CONVERSIONS_KEPT + 100):
        event: Event = {"collector_tstamp": "2024-03-02 09:00:00.000",
                        "tr_currency": "USD", "tr_total": f"{n}.5"}  # fmt: skip
        assert enriched(enrichment, event)["tr_total_base"] == str(
            (Decimal(f"{n}.5") * Decimal("0.925")).quantize(CENT, ROUND_HALF_EVEN)
        )
    assert len(enrichment._converted) <= currency.CONVERSIONS_KEPT
    for n in range(currency.DATES_KEPT + 10):
        enrichment.rates_for(f"2024-03-02T{n}")
    assert len(enrichment._dates) <= currency.DATES_KEPT


# Referer parser: classifications kept per referrer and page host.

REFERRER = st.builds(
    lambda scheme, host, path, query: f"{scheme}{host}{path}{query}",
    st.sampled_from(["http://", "https://", "ftp://", "android-app://", ""]),
    st.sampled_from(["www.google.com", "google.co.uk", "shop.example", "acme.com",
                     "www.internaldomain.com", "bing.com", ""]),
    st.sampled_from(["", "/", "/search", "/a/b"]),
    st.sampled_from(["", "?q=shoes", "?q=a%20b&x=1", "?p=1+2", "?"]),
)  # fmt: skip


def make_referer_parser() -> RefererParser:
    return RefererParser.from_parameters(
        {
            "internalDomains": ["www.internaldomain.com"],
            "uri": str(REFERERS),
            "database": "referer-tests.json",
            "referrers": {"search": {"Acme": {"domains": ["acme.com"]}}},
        },
        source="r.json",
    )


@PROPERTY
@given(
    st.lists(
        st.tuples(REFERRER, st.sampled_from(["shop.example", "google.co.uk", None])),
        min_size=1,
        max_size=10,
    )
)
def test_referer_kept_classification_is_the_classification(
    visits: list[tuple[str, str | None]],
) -> None:
    kept = make_referer_parser()
    for referrer, page_host in visits * 2:
        event: Event = {"page_referrer": referrer, "page_urlhost": page_host}
        assert enriched(kept, dict(event)) == enriched(
            make_referer_parser(), dict(event)
        )


def test_referer_same_referrer_other_page_host_is_not_internal() -> None:
    enrichment = make_referer_parser()
    referrer = "https://shop.example/cart"
    here = enriched(
        enrichment, {"page_referrer": referrer, "page_urlhost": "shop.example"}
    )
    there = enriched(
        enrichment, {"page_referrer": referrer, "page_urlhost": "b.example"}
    )
    assert here["refr_medium"] == "internal"
    assert there["refr_medium"] == "unknown"


# user-agent-utils: the fields kept per user agent.


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(UAS), st.integers(0, 140)), max_size=10))
def test_user_agent_utils_kept_fields_are_the_fields(
    agents: list[tuple[str, int]],
) -> None:
    enrichment = UserAgentUtils()
    for template, version in agents * 2:
        ua = template.format(v=version)
        event = enriched(enrichment, {"useragent": ua})
        expected = (
            dict(zip(LEGACY_FIELDS, legacy_fields(ua), strict=True)) if ua else {}
        )
        assert event == {"useragent": ua, **expected}


def test_user_agent_utils_kept_fields_are_not_changed_by_the_event() -> None:
    enrichment = UserAgentUtils()
    ua = UAS[0].format(v=120)
    first = enriched(enrichment, {"useragent": ua})
    first["br_name"] = "changed"
    assert enriched(enrichment, {"useragent": ua})["br_name"] == "Chrome 120"


# IP lookups: kept per address as sent; coordinates' texts kept per value.


@pytest.fixture(scope="module")
def geo() -> IpLookups:
    return IpLookups.from_parameters(
        {"geo": {"database": "GeoLite2-City.mmdb", "uri": "builtin:"}}, source="ip.json"
    )


@pytest.mark.parametrize(
    "address",
    ["81.2.69.160", "81.2.69.160:8080", "[2001:4860:4860::8888]:443",
     "2001:4860:4860::8888", "not an address", "1.2.3.4:5:6"],
)  # fmt: skip
def test_ip_lookup_kept_per_address_as_sent(geo: IpLookups, address: str) -> None:
    fresh = IpLookups(geo.readers)
    for _ in range(2):
        event = enriched(geo, {"user_ipaddress": address})
        assert event == enriched(fresh, {"user_ipaddress": address})
    bare = ip_lookups.lookup_key(address)
    assert enriched(geo, {"user_ipaddress": address}) | {"user_ipaddress": bare} == (
        enriched(geo, {"user_ipaddress": bare})
    )


def test_ip_lookup_kept_fields_are_not_changed_by_the_event(geo: IpLookups) -> None:
    event = enriched(geo, {"user_ipaddress": "81.2.69.160"})
    assert event["geo_country"] == "GB"
    event["geo_country"] = "changed"
    assert enriched(geo, {"user_ipaddress": "81.2.69.160"})["geo_country"] == "GB"


def uncached_float_text(value: float) -> str:
    ip_lookups._nonzero_float_text.cache_clear()
    return java_float_text(value)


@PROPERTY
@given(st.lists(st.floats(-200, 200, width=32), min_size=1, max_size=20))
def test_kept_float_texts_are_the_texts(values: list[float]) -> None:
    expected = [uncached_float_text(value) for value in values]
    assert [java_float_text(value) for value in values] == expected


def test_float_texts_keep_the_sign_of_zero() -> None:
    assert [java_float_text(v) for v in (0.0, -0.0, 0.0, -0.0)] == [
        "0.0", "-0.0", "0.0", "-0.0",
    ]  # fmt: skip


def test_float_text_cache_stays_bounded() -> None:
    for n in range(ip_lookups.FLOAT_TEXTS_KEPT + 100):
        java_float_text(n / 7)
    info = ip_lookups._nonzero_float_text.cache_info()
    assert info.currsize == ip_lookups.FLOAT_TEXTS_KEPT


# anon_ip: text with no colon and no bracket is masked without being parsed.

IPV4_TEXT = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", *[st.integers(0, 300)] * 4)
ADDRESS_TEXT = st.one_of(
    st.text(alphabet="0123456789abcdef.:%[]x ", max_size=24),
    IPV4_TEXT,
    st.builds(lambda a, port: f"[{a}]{port}", IPV4_TEXT, st.sampled_from(["", ":80"])),
    st.builds(lambda a, port: f"{a}:{port}", IPV4_TEXT, st.integers(0, 70000)),
    st.builds(lambda a, zone: f"{a}%{zone}", IPV4_TEXT, st.sampled_from(["", "eth0"])),
    st.sampled_from(["::ffff:1.2.3.4", "[2001:db8::1]:443", "fe80::1%eth0", "::1"]),
)


@PROPERTY
@given(ADDRESS_TEXT, st.integers(1, 4), st.integers(1, 8))
def test_anon_ip_short_path_masks_as_parsing_does(
    text: str, octets: int, segments: int
) -> None:
    enrichment = AnonIp(octets, segments)
    assert enrichment._anonymise(text) == enrichment._anonymise_parsed(text)


def test_anon_ip_short_path_is_taken_for_ipv4_only() -> None:
    enrichment = AnonIp(1, 2)
    assert anon_ip.mask_ipv4_text("1.2.3.4", 1) == enrichment._anonymise("1.2.3.4")
    assert enrichment._anonymise("[1.2.3.4]") == "1.2.3.x"  # brackets: parsed
    assert enrichment._anonymise("::ffff:1.2.3.4") == "::ffff:1.2.3.x"


# Bot detection: one pass over the derived contexts, quiet schemas kept.

IAB = "iglu:com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0"
ASN = "iglu:com.snowplowanalytics.snowplow/asn/jsonschema/1-0-1"
DERIVED = st.one_of(
    st.builds(
        lambda robot, reason: {"schema": IAB, "data": {"spiderOrRobot": robot,
                                                        "reason": reason}},
        st.sampled_from([True, False, "true"]), st.sampled_from(["A", None]),
    ),
    st.builds(
        lambda bot, number: {"schema": ASN, "data": {"likelyBot": bot,
                                                      "number": number}},
        st.booleans(), st.integers(1, 99),
    ),
    st.builds(lambda n: {"schema": f"iglu:com.acme/c{n}/jsonschema/1-0-0",
                         "data": {}}, st.integers(0, 3)),
    st.just({"schema": IAB, "data": "not an object"}),
    st.just({"schema": None, "data": {}}),
    st.just({"data": {}}),
)  # fmt: skip


def reference_signals(contexts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The IAB then the ASN signals as bots.derived() finds them."""
    holder = EnrichmentInput({}, RECORD, contexts)
    iab = [
        bots._signal("iab", "spiderOrRobot", d.get("reason"))
        for d in bots.derived(holder, bots.IAB_PREFIX)
        if d.get("spiderOrRobot") is True
    ]
    asn = [
        bots._signal("asn_lookups", "likelyBot", str(d.get("number")))
        for d in bots.derived(holder, bots.ASN_PREFIX)
        if d.get("likelyBot") is True
    ]
    return iab + asn


@PROPERTY
@given(st.lists(st.lists(DERIVED, max_size=6), min_size=1, max_size=6))
def test_bot_signals_from_one_pass_are_the_signals(
    events: list[list[dict[str, Any]]],
) -> None:
    enrichment = BotDetection(None)
    for contexts in events * 2:
        holder = EnrichmentInput({}, RECORD, list(contexts))
        enrichment.enrich({"useragent": "Mozilla/5.0"}, holder)
        data = holder.derived_contexts[-1]["data"]
        assert data["indicators"] == reference_signals(contexts)
        assert data["bot"] == bool(data["indicators"])


def test_bot_quiet_schemas_stay_bounded_and_signals_still_count() -> None:
    enrichment = BotDetection(None)
    for n in range(bots.SCHEMAS_KEPT + 50):
        schema = f"iglu:com.acme/c{n}/jsonschema/1-0-0"
        enrichment.enrich({}, EnrichmentInput({}, RECORD, [{"schema": schema}]))
    assert len(enrichment._quiet_schemas) == bots.SCHEMAS_KEPT
    holder = EnrichmentInput(
        {}, RECORD, [{"schema": IAB, "data": {"spiderOrRobot": True, "reason": "r"}}]
    )
    enrichment.enrich({}, holder)
    assert holder.derived_contexts[-1]["data"]["bot"] is True


# Extractors: header names sorted once per spelling, within a bound.

HEADER_NAMES = st.sampled_from(
    [
        "Cookie",
        "cookie",
        " COOKIE ",
        "Cookies",
        "Accept",
        "Accept-Language",
        "accept-language ",
        "X-Other",
    ]
)
HEADERS = st.lists(
    st.tuples(HEADER_NAMES, st.sampled_from(["_ga=1; b=2", "a=b", "_ga", "x"])),
    max_size=6,
)  # fmt: skip


def reference_cookies(headers: Any, names: frozenset[str]) -> list[Any]:
    return [
        {"schema": extractors.COOKIE_SCHEMA, "data": {"name": name, "value": value}}
        for header, text in headers
        if header.strip().lower() == "cookie"
        for name, value in extractors.parse_cookies(text)
        if name in names
    ]


def reference_headers(headers: Any, pattern: str) -> list[Any]:
    import re

    return [
        {"schema": extractors.HEADER_SCHEMA,
         "data": {"name": header.strip(), "value": text.strip()}}
        for header, text in headers
        if re.fullmatch(pattern, header.strip())
    ]  # fmt: skip


@PROPERTY
@given(st.lists(HEADERS, min_size=1, max_size=6))
def test_extractors_give_the_headers_a_fresh_check_gives(requests: list[Any]) -> None:
    cookies = CookieExtractor(frozenset({"_ga", "b"}))
    headers = HttpHeaderExtractor.from_parameters(
        {"headersPattern": "(?i)accept-language"}, source="h.json"
    )
    for pairs in requests * 2:
        record = RawRecord(id="r", tstamp=0, collector="c", method="GET", path="/i",
                           headers=tuple(pairs))  # fmt: skip
        found = EnrichmentInput({}, record)
        cookies.enrich({}, found)
        assert found.derived_contexts == reference_cookies(pairs, cookies.cookies)
        found = EnrichmentInput({}, record)
        headers.enrich({}, found)
        assert found.derived_contexts == reference_headers(pairs, "(?i)accept-language")


def test_extractor_name_caches_stay_bounded() -> None:
    cookies = CookieExtractor(frozenset({"_ga"}))
    headers = HttpHeaderExtractor.from_parameters(
        {"headersPattern": "X-.*"}, source="h.json"
    )
    for n in range(extractors._NAMES_REMEMBERED + 100):
        record = RawRecord(id="r", tstamp=0, collector="c", method="GET", path="/i",
                           headers=((f"X-{n}", "v"), (f"Y-{n}", "v")))  # fmt: skip
        found = EnrichmentInput({}, record)
        cookies.enrich({}, found)
        headers.enrich({}, found)
        assert [c["data"]["name"] for c in found.derived_contexts] == [f"X-{n}"]
    assert len(cookies._cookie_names) + len(cookies._other_names) == (
        extractors._NAMES_REMEMBERED
    )
    assert len(headers._matched) + len(headers._unmatched) == (
        extractors._NAMES_REMEMBERED
    )
    late = RawRecord(id="r", tstamp=0, collector="c", method="GET", path="/i",
                     headers=(("cookie ", "_ga=late"),))  # fmt: skip
    found = EnrichmentInput({}, late)
    cookies.enrich({}, found)
    assert found.derived_contexts[0]["data"] == {"name": "_ga", "value": "late"}


# Python enrichment: the view made directly, valid results kept as text.

USER_CODE = """
RESULTS = {
    "ok": [{"schema": "iglu:com.acme/ok/jsonschema/1-0-0", "data": {"n": 1}}],
    "bad": [{"schema": "iglu:com.acme/ok/jsonschema/1-0-0", "data": {"n": 1},
             "extra": 1}],
}

def process(event, config):
    key = event.fields.get("app_id")
    if key == "many":
        return [{"schema": "iglu:com.acme/ok/jsonschema/1-0-0",
                 "data": {"n": event.fields["tr_total"]}}]
    return RESULTS.get(key)

def look(event, config):
    return [{"schema": "iglu:com.acme/seen/jsonschema/1-0-0", "data": {
        "contexts": event.contexts, "unstruct": event.unstruct_event,
        "derived": event.derived_contexts, "fields": dict(event.fields),
        "headers": [list(h) for h in event.headers],
    }}]
"""


@pytest.fixture(scope="module")
def user_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("user") / "cache_enrichment.py"
    path.write_text(USER_CODE)
    return str(path)


def python_enrichment(user_file: str, function: str = "process") -> PythonEnrichment:
    return PythonEnrichment.from_parameters(
        {"file": user_file, "function": function}, source="py.json"
    )


def test_python_valid_result_is_a_fresh_copy_each_time(user_file: str) -> None:
    enrichment = python_enrichment(user_file)
    first = EnrichmentInput({}, RECORD)
    enrichment.enrich({"app_id": "ok"}, first)
    first.derived_contexts[0]["data"]["n"] = 2  # a later change to one event
    second = EnrichmentInput({}, RECORD)
    enrichment.enrich({"app_id": "ok"}, second)
    assert second.derived_contexts == [
        {"schema": "iglu:com.acme/ok/jsonschema/1-0-0", "data": {"n": 1}}
    ]


def test_python_invalid_result_fails_after_valid_ones(user_file: str) -> None:
    enrichment = python_enrichment(user_file)
    enrichment.enrich({"app_id": "ok"}, EnrichmentInput({}, RECORD))
    with pytest.raises(EnrichmentError, match="item 0 is"):
        enrichment.enrich({"app_id": "bad"}, EnrichmentInput({}, RECORD))


def test_python_valid_results_kept_stay_bounded(user_file: str) -> None:
    enrichment = python_enrichment(user_file)
    for n in range(custom.RESULTS_KEPT + 50):
        enrichment.enrich({"app_id": "many", "tr_total": str(n)}, inp())
    assert 0 < len(enrichment._valid_results) <= custom.RESULTS_KEPT


EVENTS = st.fixed_dictionaries(
    {"app_id": st.text(max_size=3)},
    optional={
        "contexts": st.sampled_from([
            "", orjson.dumps({"schema": "c", "data": [{"schema": "s", "data": 1}]})
            .decode(), orjson.dumps({"schema": "c", "data": {}}).decode(),
        ]),
        "unstruct_event": st.sampled_from([
            "", orjson.dumps({"schema": "u", "data": {"schema": "e", "data": {}}})
            .decode(), orjson.dumps({"schema": "u", "data": [1]}).decode(),
        ]),
    },
)  # fmt: skip


@PROPERTY
@given(EVENTS, st.lists(st.just({"schema": "iglu:a/b/jsonschema/1-0-0", "data": {}})))
def test_python_view_shows_what_the_constructed_view_shows(
    user_file: str, event: Event, derived: list[dict[str, Any]]
) -> None:
    record = RawRecord(id="r", tstamp=0, collector="c", method="GET", path="/i",
                       headers=(("Host", "h"),))  # fmt: skip
    found = EnrichmentInput({}, record, list(derived))
    python_enrichment(user_file, "look").enrich(dict(event), found)
    view = PythonEvent(
        dict(event),
        record.headers,
        contexts=event.get("contexts"),
        unstruct_event=event.get("unstruct_event"),
        derived_contexts=derived,
    )
    assert found.derived_contexts[-1]["data"] == {
        "contexts": view.contexts,
        "unstruct": view.unstruct_event,
        "derived": view.derived_contexts,
        "fields": dict(view.fields),
        "headers": [["Host", "h"]],
    }


def test_python_view_decodes_each_attribute_once() -> None:
    text = orjson.dumps({"schema": "c", "data": [{"schema": "s", "data": 1}]}).decode()
    view = PythonEvent({}, (), contexts=text, unstruct_event=None)
    assert view.contexts is view.contexts
    assert view.unstruct_event is None and view.unstruct_event is None
    assert (
        view.derived_contexts == [] and view.derived_contexts is view.derived_contexts
    )


# Time limit: each thread's record reused, a call inside a call, sleep and wake.


def forever() -> None:
    while True:
        pass


def test_records_are_reused_and_a_stop_does_not_carry_over() -> None:
    limit = TimeLimit()
    with pytest.raises(TimeLimitExceeded):
        limit.run(0.1, forever)
    for _ in range(3):
        assert limit.run(1.0, lambda: "quick") == "quick"
    assert len(list(limit._calls)) == 1


def test_a_call_inside_a_call_has_its_own_limit() -> None:
    limit = TimeLimit()

    def outer() -> str:
        with pytest.raises(TimeLimitExceeded):
            limit.run(0.1, forever)
        return limit.run(1.0, lambda: "inner done")

    assert limit.run(5.0, outer) == "inner done"
    with pytest.raises(TimeLimitExceeded):
        limit.run(5.0, lambda: limit.run(0.1, forever))


def test_records_of_ended_threads_go_away() -> None:
    limit = TimeLimit()
    threads = [threading.Thread(target=limit.run, args=(1.0, time.sleep, 0))
               for _ in range(20)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()
    assert len(list(limit._calls)) == 0


def test_a_runaway_call_after_the_watchdog_slept_is_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time_limit, "IDLE_SECONDS", 0.05)
    limit = TimeLimit()
    for _ in range(3):
        limit.run(1.0, lambda: None)
        deadline = time.monotonic() + 5
        while not limit._sleeping and time.monotonic() < deadline:
            time.sleep(0.01)
        assert limit._sleeping
        started = time.monotonic()
        with pytest.raises(TimeLimitExceeded):
            limit.run(0.1, forever)
        assert time.monotonic() - started < 2.0


def test_calls_from_many_threads_are_each_stopped() -> None:
    limit = TimeLimit()
    outcomes: list[str] = []

    def worker(index: int) -> None:
        for _ in range(5):
            limit.run(1.0, lambda: None)
        try:
            limit.run(0.1, forever)
        except TimeLimitExceeded:
            outcomes.append(f"stopped {index}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == [f"stopped {n}" for n in range(4)]


def test_referrer_cache_stays_bounded() -> None:
    enrichment = make_referer_parser()
    for n in range(referer_parser.REFERRERS_KEPT + 50):
        enriched(enrichment, {"page_referrer": f"https://h{n}.example/",
                              "page_urlhost": "shop.example"})  # fmt: skip
    info = enrichment._kept_fields.cache_info()
    assert info.currsize == referer_parser.REFERRERS_KEPT
    long_referrer = "https://www.google.com/search?q=" + quote("a" * 2000)
    enrichment._kept_fields.cache_clear()
    event = enriched(enrichment, {"page_referrer": long_referrer})
    assert event["refr_medium"] == "search"
    assert enrichment._kept_fields.cache_info().currsize == 0
