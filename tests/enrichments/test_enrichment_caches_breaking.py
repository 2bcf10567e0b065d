# ruff: noqa: E501 - long literal inputs and strategies
"""Tester's cases against 5ebaf82 (caches and shortcuts in the enrichments).

The claim under test: for any input and configuration the output is what the
code before 5ebaf82 gave (fields and their order, derived contexts, failure
messages, PII events), caches stay bounded, no cache answers for an input or a
configuration it was not filled with, and the time limit on a user's Python
function still stops a runaway call without hitting a later call or thread.

The code before 5ebaf82 is read from git (``git show 5ebaf82~1:...``, which
changes nothing in the work tree): each changed enrichment module is loaded
under another name, next to the installed one, and both are given the same
inputs. Instances are kept across examples (two configurations each, used in
turn) so that the new caches are filled and then asked.

The tester's pass found three faults, all fixed since: the referrer cache kept
page hosts of any length and the IP lookup cache addresses with ports of any
length (both now look such text up each time, uncached), and settings changed
after building were answered from the old cache (they are now fixed when an
enrichment is built, and changing one raises AttributeError; PII's salt stays
settable and is honoured).
"""

from __future__ import annotations

import copy
import gc
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import tracemalloc
import types
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_enrichment_caches import CAMPAIGN

from plowline.enrich.enrichments import (
    anon_ip,
    bots,
    campaign,
    currency,
    custom,
    extractors,
    fingerprint,
    ip_lookups,
    pii,
    referer_parser,
    time_limit,
    user_agent_utils,
)
from plowline.enrich.enrichments.base import EnrichmentError, EnrichmentInput
from plowline.enrich.enrichments.time_limit import TimeLimit, TimeLimitExceeded
from plowline.rawlog.record import RawRecord

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
MORE = TESTS / "data" / "enrichments-more"
REFERERS = TESTS / "data" / "enrichments"
SHARED = Path(os.environ.get("PLOWLINE_SHARED", REPO.parent / "shared"))
BEFORE = "5ebaf82~1"  # the commit before the caches
PROPERTY = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


# ---- the code before 5ebaf82, loaded from git under other names ----


def _git_show(path: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{BEFORE}:{path}"],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the code before 5ebaf82 is not readable from git: {exc}")
    return done.stdout


def old(name: str) -> types.ModuleType:
    """plowline.enrich.enrichments.<name> as it was before 5ebaf82 (its imports
    of unchanged modules resolve to the installed ones)."""
    key = f"plowline_before_caches_{name}"
    module = sys.modules.get(key)
    if module is None:
        source = _git_show(f"src/plowline/enrich/enrichments/{name}.py")
        module = types.ModuleType(key)
        module.__file__ = f"<{BEFORE}>/{name}.py"
        module.__package__ = "plowline.enrich.enrichments"
        sys.modules[key] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def record(headers: Any = ()) -> RawRecord:
    return RawRecord(
        id="r", tstamp=0, collector="c", method="GET", path="/i", headers=tuple(headers)
    )


def outcome(
    enrichment: Any,
    event: dict[str, Any],
    params: dict[str, str] | None = None,
    headers: Any = (),
    derived: list[Any] | None = None,
) -> Any:
    """Everything an enrichment changes or says for one event: the fields in
    order, the derived contexts, the emitted events, or its failure."""
    inp = EnrichmentInput(dict(params or {}), record(headers))
    if derived:
        inp.derived_contexts.extend(copy.deepcopy(derived))
    fields = dict(event)
    try:
        enrichment.enrich(fields, inp)
    except EnrichmentError as exc:
        return ("failed", json.dumps(exc.message), list(fields.items()))
    except Exception as exc:  # the same unexpected error, if any, both sides
        return ("raised", type(exc).__name__, str(exc))
    emitted = []
    for extra in inp.extra_events:
        emitted.append({**extra, "event_id": "<uuid4>"})
    return list(fields.items()), inp.derived_contexts, emitted


# ---- anon_ip: the IPv4 shortcut ----

ADDRESS_TEXT = st.one_of(
    st.text(alphabet="0123456789.:[]%afx \u0663\x00-", max_size=24),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
).flatmap(
    lambda a: st.sampled_from(
        [
            a,
            a + ":80",
            f"[{a}]:443",
            f"[{a}]",
            a + "%eth0",
            " " + a,
            a + ".",
            a + ":1:2",
        ]
    )
)


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, 2), ADDRESS_TEXT), min_size=1, max_size=12))
def test_anon_ip_is_what_it_was(inputs: list[tuple[int, str]]) -> None:
    configs = [(1, 1), (2, 3), (4, 8)]
    new = [anon_ip.AnonIp(*c) for c in configs]
    before = [old("anon_ip").AnonIp(*c) for c in configs]
    for index, text in inputs * 2:
        event = {"user_ipaddress": text}
        assert outcome(new[index], event) == outcome(before[index], event), text


# ---- campaign attribution: kept per querystring, two click-id mappings ----

CAMPAIGNS = [
    CAMPAIGN,  # the engineer's own tests' configuration
    {
        "fields": {
            "mktMedium": ["medium"],
            "mktSource": ["src", "utm_source"],
            "mktTerm": [],
            "mktContent": [],
            "mktCampaign": ["cid"],
            "mktClickId": {"gclid": "G2", "fbclid": "FB2"},
        }
    },
]
QUERY_PART = st.tuples(
    st.sampled_from(
        [
            "utm_medium",
            "medium",
            "utm_source",
            "src",
            "utm_campaign",
            "cid",
            "gclid",
            "fbclid",
            "msclkid",
            "utm%5Fterm",
            "utm_term",
            "x",
            "utm_content",
            "",
        ]
    ),
    st.sampled_from(["=", "", "=="]),
    st.text(alphabet="ab%20+\t\n;&=\u20ac", max_size=6),
)


@PROPERTY
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.lists(QUERY_PART, max_size=5)),
        min_size=1,
        max_size=10,
    )
)
def test_campaign_is_what_it_was_for_two_mappings(queries: list[Any]) -> None:
    new = [
        campaign.CampaignAttribution.from_parameters(c, source="c") for c in CAMPAIGNS
    ]
    before = [
        old("campaign").CampaignAttribution.from_parameters(c, source="c")
        for c in CAMPAIGNS
    ]
    for index, parts in queries * 2:
        query = "&".join(name + sep + value for name, sep, value in parts)
        event = {"page_urlquery": query, "mkt_source": "before", "mkt_network": "n"}
        assert outcome(new[index], event) == outcome(before[index], event), query
        # The same querystring, the other mapping: not the first one's fields.
        other = 1 - index
        assert outcome(new[other], event) == outcome(before[other], event), query


# ---- referer parser: kept per (referrer, page host), two internal lists ----

REFERRER = st.builds(
    lambda scheme, host, path, query: scheme + host + path + query,
    st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "android-app://", ""]),
    st.sampled_from(
        [
            "www.google.com",
            "google.co.uk",
            "shop.example",
            "acme.com",
            "www.internaldomain.com",
            "bing.com",
            "",
            "SHOP.example",
            "shop.example:8080",
            "user@shop.example",
            "shop.example.",
        ]
    ),
    st.sampled_from(["", "/", "/search", "/a/b"]),
    st.sampled_from(["", "?q=shoes", "?q=a%20b&x=1", "?p=1+2", "?", "#x"]),
)
PAGE_HOST = st.sampled_from(
    ["shop.example", "google.co.uk", None, "", "SHOP.EXAMPLE", "acme.com"]
)


def _referer(module: Any, internal: list[str]) -> Any:
    return module.RefererParser.from_parameters(
        {
            "internalDomains": internal,
            "uri": str(REFERERS),
            "database": "referer-tests.json",
            "referrers": {"search": {"Acme": {"domains": ["acme.com"]}}},
        },
        source="r.json",
    )


INTERNALS = (["www.internaldomain.com"], ["shop.example", "acme.com"])


@pytest.fixture(scope="module")
def referer_pairs() -> list[tuple[Any, Any]]:
    return [
        (_referer(referer_parser, i), _referer(old("referer_parser"), i))
        for i in INTERNALS
    ]


@PROPERTY
@given(
    st.lists(st.tuples(st.integers(0, 1), REFERRER, PAGE_HOST), min_size=1, max_size=10)
)
def test_referer_is_what_it_was_for_two_internal_lists(
    referer_pairs: list[tuple[Any, Any]], visits: list[Any]
) -> None:
    for index, referrer, host in visits * 2:
        event = {"page_referrer": referrer, "page_urlhost": host}
        for new, before in (referer_pairs[index], referer_pairs[1 - index]):
            assert outcome(new, event) == outcome(before, event), (referrer, host)


# ---- event fingerprint: the template with separators, two exclusions ----

PARAMS = st.dictionaries(
    st.sampled_from(
        [
            "e",
            "eid",
            "url",
            "aid",
            "p",
            "\u00fc",
            "\U0001f600",
            "\uffff",
            "a%",
            "stm",
            "",
            "\x1f",
        ]
    ),
    st.text(max_size=4),
    max_size=6,
)


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, 2), PARAMS), min_size=1, max_size=8))
def test_fingerprint_is_what_it_was(events: list[Any]) -> None:
    configs = [(["eid", "stm"], "MD5"), (["e", "url"], "SHA256"), ([], "SHA1")]
    new = [fingerprint.EventFingerprint(frozenset(x), a) for x, a in configs]
    before = [old("fingerprint").EventFingerprint(frozenset(x), a) for x, a in configs]
    for index, params in events * 2:
        for k in (index, (index + 1) % 3):
            assert outcome(new[k], {}, params) == outcome(before[k], {}, params), params


# ---- currency: rates per date, conversions per (amount, currency, day) ----


@pytest.fixture(scope="module")
def currency_pairs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, Any]]:
    folder = tmp_path_factory.mktemp("rates")
    one = folder / "one.csv"
    one.write_text(
        (MORE / "rates.csv").read_text("utf-8")
        + "2024-03-04,JPY,0.0000000000000000000000001\n2024-03-05,USD,1\n"
        "2024-03-05,EUR,0.9\n",
        "utf-8",
    )
    two = folder / "two.csv"
    two.write_text(
        "date,currency,rate\n2024-03-01,USD,2\n2024-03-01,EUR,1\n2024-03-01,GBP,3\n"
        "2024-03-04,USD,2\n2024-03-04,GBP,3\n2024-03-04,EUR,1.5\n",
        "utf-8",
    )
    configs = [
        {"baseCurrency": "EUR", "ratesFile": str(one), "maxRateAgeDays": 3},
        {"baseCurrency": "USD", "ratesFile": str(one), "maxRateAgeDays": 3},
        {"baseCurrency": "EUR", "ratesFile": str(two), "maxRateAgeDays": 0},
        {"baseCurrency": "GBP", "ratesFile": str(two), "maxRateAgeDays": 30},
    ]
    return [
        (
            currency.CurrencyConversion.from_parameters(c, source="x"),
            old("currency").CurrencyConversion.from_parameters(c, source="x"),
        )
        for c in configs
    ]


AMOUNT = st.sampled_from(
    [
        "100",
        "12.345",
        "0.005",
        "-3",
        "1e30",
        "x",
        "1e3",
        "-0",
        "0.0",
        "0",
        "99999999999999999",
        "1E-400",
        "NaN",
        "Infinity",
        " 5",
        "1_000",
        "0.015",
        "0.025",
        "9999999999999999.995",
        "5e-1",
        "0E+3",
    ]
) | st.decimals(allow_nan=False, allow_infinity=False).map(str)
SALE = st.fixed_dictionaries(
    {},
    optional={
        "collector_tstamp": st.sampled_from(
            [
                "2024-03-02 09:00:00.000",
                "2024-03-02 23:59:59.999",
                "2024-03-05 00:00:00.000",
                "2024-03-06 00:00:00.000",
                "2024-02-01 10:00:00.000",
                "2024-3-2",
                "",
                "0001-01-01 00:00:00",
                "20240302",
                "2024-03-02",
                "2024-W09-6 x",
            ]
        ),
        "tr_currency": st.sampled_from(["USD", "GBP", "JPY", "XYZ", "", "EUR"]),
        "tr_total": AMOUNT,
        "tr_tax": AMOUNT,
        "tr_shipping": AMOUNT,
        "ti_currency": st.sampled_from(["EUR", "GBP", "JPY", ""]),
        "ti_price": AMOUNT,
    },
)


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, 3), SALE), min_size=1, max_size=10))
def test_currency_is_what_it_was_for_four_configurations(
    currency_pairs: list[tuple[Any, Any]], sales: list[Any]
) -> None:
    for index, sale in sales * 2:
        for k in (index, 3 - index):
            new, before = currency_pairs[k]
            assert outcome(new, sale) == outcome(before, sale), (k, sale)


# ---- PII: digests per salted text, the short path without emitted events ----


def _pii(module: Any, salt: str, emit: bool, function: str, json_fields: bool) -> Any:
    fields: list[Any] = [
        {"pojo": {"field": "user_id"}},
        {"pojo": {"field": "user_ipaddress"}},
    ]
    if json_fields:
        criterion = "iglu:com.acme/x/jsonschema/1-*-*"
        fields += [
            {
                "json": {
                    "field": "contexts",
                    "schemaCriterion": criterion,
                    "jsonPath": "$.email",
                }
            },
            {
                "json": {
                    "field": "derived_contexts",
                    "schemaCriterion": criterion,
                    "jsonPath": "$.email",
                }
            },
        ]
    return module.PiiPseudonymizer.from_parameters(
        {
            "pii": fields,
            "strategy": {"pseudonymize": {"hashFunction": function, "salt": salt}},
            "emitEvent": emit,
        },
        source="p.json",
    )


PII_CONFIGS = [
    ("s1", False, "SHA-256", False),
    ("s2", False, "SHA-256", False),
    ("s1", True, "MD5", True),
    ("", False, "SHA-1", True),
    ("s1", True, "SHA-256", False),
    ("1", False, "SHA-256", False),  # "a"+"1" and "a1"+"" are one salted text
]
PII_VALUE = (
    st.text(max_size=6)
    | st.text(min_size=250, max_size=260)
    | st.sampled_from(["a", "a1", "", "\ud800"])
)


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(PII_CONFIGS) - 1), PII_VALUE, PII_VALUE, PII_VALUE
        ),
        min_size=1,
        max_size=8,
    )
)
def test_pii_is_what_it_was_for_six_configurations(events: list[Any]) -> None:
    new = [_pii(pii, *c) for c in PII_CONFIGS]
    before = [_pii(old("pii"), *c) for c in PII_CONFIGS]
    for index, user, address, email in events * 2:
        entity = {
            "schema": "iglu:com.acme/x/jsonschema/1-0-0",
            "data": {"email": email},
        }
        contexts = json.dumps(
            {
                "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
                "data": [entity],
            }
        )
        event = {
            "user_id": user,
            "user_ipaddress": address,
            "contexts": contexts,
            "event_id": "E",
        }
        for k in (index, (index + 1) % len(PII_CONFIGS)):
            got = outcome(new[k], event, derived=[entity])
            assert got == outcome(before[k], event, derived=[entity]), (k, event)


# ---- bot detection: one pass over the derived contexts, quiet schemas ----

SCHEMA = st.sampled_from(
    [
        "iglu:com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0",
        "iglu:com.snowplowanalytics.snowplow/asn/jsonschema/1-0-0",
        "iglu:com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0",
        "iglu:com.iab.snowplow/spiders_and_robots/",
        "iglu:com.snowplowanalytics.snowplow/asn/",
        "iglu:com.iab.snowplow/x",
        None,
        5,
        "",
        "None",
    ]
)
SIGNAL_DATA = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "spiderOrRobot": st.sampled_from([True, False, "true", 1]),
            "reason": st.sampled_from(["r", None, 3]),
            "likelyBot": st.sampled_from([True, False, 1]),
            "number": st.sampled_from([1, "x", None, 2.5]),
        },
    ),
    st.none(),
    st.just([1]),
)
ENTITY = st.builds(
    lambda schema, data, drop: {
        k: v for k, v in (("schema", schema), ("data", data)) if k != drop
    },
    SCHEMA,
    SIGNAL_DATA,
    st.sampled_from([None, None, "schema", "data"]),
)
CLIENT_SIDE = (
    "iglu:com.snowplowanalytics.snowplow/client_side_bot_detection/jsonschema/1-0-0"
)
CONTEXTS = st.sampled_from(
    [
        None,
        "",
        json.dumps(
            {"data": [{"schema": CLIENT_SIDE, "data": {"bot": True, "kind": "s"}}]}
        ),
        json.dumps({"data": [{"schema": CLIENT_SIDE, "data": {"bot": False}}]}),
    ]
)
BOT_UA = st.sampled_from(
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "curl/8",
        "HeadlessChrome/1",
        "Mozilla/5.0 Firefox",
        None,
    ]
)


@pytest.fixture(scope="module")
def bot_pairs() -> list[tuple[Any, Any]]:
    configs: list[dict[str, Any]] = [
        {
            "useUserAgentList": False,
            "useIab": a,
            "useAsnLookups": b,
            "useClientSideDetection": c,
        }
        for a in (True, False)
        for b in (True, False)
        for c in (True, False)
    ]
    configs.append({"useUserAgentList": True})
    return [
        (
            bots.BotDetection.from_parameters(c, source="b"),
            old("bots").BotDetection.from_parameters(c, source="b"),
        )
        for c in configs
    ]


@PROPERTY
@given(
    st.lists(
        st.tuples(st.integers(0, 8), st.lists(ENTITY, max_size=6), CONTEXTS, BOT_UA),
        min_size=1,
        max_size=8,
    )
)
def test_bot_signals_are_what_they_were(
    bot_pairs: list[tuple[Any, Any]], events: list[Any]
) -> None:
    for index, derived, contexts, ua in events * 2:
        event = {k: v for k, v in (("contexts", contexts), ("useragent", ua)) if v}
        new, before = bot_pairs[index]
        assert outcome(new, event, derived=derived) == outcome(
            before, event, derived=derived
        ), (index, derived, contexts, ua)


# ---- extractors: header names sorted into sets ----

HEADER = st.tuples(
    st.sampled_from(
        [
            "Cookie",
            "cookie",
            " Cookie ",
            "COOKIE",
            "Cookie2",
            "X-Forwarded-For",
            "x-forwarded-for",
            "Accept-Language",
            "",
            " ",
            "Set-Cookie",
            "\tcookie",
        ]
    ),
    st.sampled_from(
        ["sp=1; _ga=2", "sp2=x", "sp=1;sp=2", "", "a=b; sp", '_ga="q"; sp2=  y ', " x "]
    ),
)


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, 5), st.lists(HEADER, max_size=5)), min_size=1))
def test_extractors_are_what_they_were(requests: list[Any]) -> None:
    before_x = old("extractors")
    new: list[Any] = [
        extractors.CookieExtractor(frozenset(c)) for c in (["sp", "_ga"], ["sp2"])
    ]
    before: list[Any] = [
        before_x.CookieExtractor(frozenset(c)) for c in (["sp", "_ga"], ["sp2"])
    ]
    for pattern in ("X-Forwarded-For|Accept-Language", "(?i)cookie", ".*", ""):
        new.append(extractors.HttpHeaderExtractor(re.compile(pattern)))
        before.append(before_x.HttpHeaderExtractor(re.compile(pattern)))
    for _, headers in requests * 2:
        for k in range(len(new)):
            assert outcome(new[k], {}, headers=headers) == outcome(
                before[k], {}, headers=headers
            ), (k, headers)


# ---- user_agent_utils and ip_lookups: kept per user agent, per address text ----

UA_TEMPLATES = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.{v}; +http://www.google.com/bot.html)",
    "{v}",
    "curl/{v}",
]


@PROPERTY
@given(
    st.lists(st.tuples(st.sampled_from(UA_TEMPLATES), st.text(max_size=4)), min_size=1)
)
def test_user_agent_utils_is_what_it_was(agents: list[Any]) -> None:
    new = user_agent_utils.UserAgentUtils()
    before = old("user_agent_utils").UserAgentUtils()
    for template, version in agents * 2:
        event = {"useragent": template.replace("{v}", version), "br_name": "before"}
        assert outcome(new, event) == outcome(before, event)


@pytest.fixture(scope="module")
def geo_pair() -> tuple[Any, Any]:
    config = {"geo": {"database": "GeoLite2-City.mmdb", "uri": "builtin:"}}
    return (
        ip_lookups.IpLookups.from_parameters(config, source="ip.json"),
        old("ip_lookups").IpLookups.from_parameters(config, source="ip.json"),
    )


GEO_ADDRESS = st.one_of(
    ADDRESS_TEXT,
    st.sampled_from(
        [
            "81.2.69.160",
            "2.125.160.216",
            "89.160.20.112",
            "216.160.83.56",
            "2001:4860:4860::8888",
            "::ffff:81.2.69.160",
            "x",
            ":",
            "[",
        ]
    ).flatmap(
        lambda a: st.sampled_from([a, a + ":80", a + ":0", f"[{a}]:443", a + "%e"])
    ),
)


@PROPERTY
@given(st.lists(GEO_ADDRESS, min_size=1, max_size=10))
def test_ip_lookups_are_what_they_were(
    geo_pair: tuple[Any, Any], addresses: list[str]
) -> None:
    new, before = geo_pair
    for address in addresses * 2:
        event = {"user_ipaddress": address, "geo_city": "before"}
        assert outcome(new, event) == outcome(before, event), address


def test_float_texts_are_what_they_were() -> None:
    before = old("ip_lookups").java_float_text
    values = [
        0.0,
        -0.0,
        1.0,
        -1.5,
        51.5142,
        -0.0931,
        1e-3,
        9.999e-4,
        1e7,
        12345678.9,
        float("inf"),
        float("-inf"),
        3.4e38,
        1e-45,
        5e-324,
        2.0**-149,
    ]
    values += [i / 7.0 - 90 for i in range(3000)]
    values += [float("nan")]

    def text(function: Any, value: float) -> Any:
        try:
            return function(value)
        except Exception as exc:  # inf fails both sides (OverflowError, TypeError)
            return ("raised", type(exc).__name__)

    for value in values * 2:
        assert text(ip_lookups.java_float_text, value) == text(before, value), value


# ---- the Python enrichment: the view filled directly, valid results kept ----

USER_FILE = """
import json
GOOD = {"schema": "iglu:com.acme/ok/jsonschema/1-0-0", "data": {"n": 1}}
SHARED_LIST = [GOOD]

def process(event, config):
    mode = event.fields.get("app_id") or ""
    if mode == "none":
        return None
    if mode == "shared":
        SHARED_LIST[0]["data"]["n"] += 0
        return SHARED_LIST
    if mode == "view":
        seen = {
            "contexts": event.contexts,
            "again": event.contexts is event.contexts,
            "unstruct": event.unstruct_event,
            "derived": event.derived_contexts,
            "headers": [list(h) for h in event.headers],
            "fields": sorted(k for k, v in event.fields.items() if v is not None),
            "config": config,
        }
        event.derived_contexts.append({"mutated": True})
        config["changed"] = True
        return [{"schema": "iglu:com.acme/view/jsonschema/1-0-0", "data": seen}]
    if mode == "tuple":
        return (GOOD,)
    if mode == "three_keys":
        return [{"schema": GOOD["schema"], "data": 1, "x": 2}]
    if mode == "bad_schema":
        return [{"schema": "iglu:nope", "data": 1}]
    if mode == "not_json":
        return [{"schema": GOOD["schema"], "data": {1, 2}}]
    if mode == "big":
        return [{"schema": GOOD["schema"], "data": "x" * 2000}]
    if mode.startswith("echo:"):
        return json.loads(mode[5:])
    if mode == "raise":
        raise SystemExit(3)
    if mode == "bad_contexts":
        try:
            event.contexts
        except Exception as exc:
            first = type(exc).__name__
        try:
            event.contexts
        except Exception as exc:
            return [{"schema": GOOD["schema"], "data": [first, type(exc).__name__]}]
        return [{"schema": GOOD["schema"], "data": "no error"}]
    return [GOOD]
"""

MODES = st.sampled_from(
    [
        "",
        "none",
        "shared",
        "view",
        "tuple",
        "three_keys",
        "bad_schema",
        "not_json",
        "big",
        "raise",
        "bad_contexts",
        'echo:[{"schema": "iglu:com.acme/ok/jsonschema/1-0-0", "data": null}]',
        'echo:[{"schema": "iglu:com.acme/ok/jsonschema/1-0-0", "data": 1}, 5]',
        'echo:[{"data": 1, "schema": "iglu:com.acme/ok/jsonschema/1-0-0"}]',
        'echo:[{"schema": "iglu:com.acme/ok/jsonschema/1-0-0", "data": 1, "data2": 1}]',
        "echo:[]",
        'echo:{"schema": 1}',
        "echo:[null]",
    ]
)
CONTEXT_TEXT = st.sampled_from(
    [
        None,
        "",
        '{"data": [{"schema": "iglu:a/b/jsonschema/1-0-0", "data": {}}]}',
        '{"data": {"not": "a list"}}',
        "[1]",
        "{bad",
        '{"data": null}',
    ]
)
UNSTRUCT_TEXT = st.sampled_from(
    [
        None,
        "",
        '{"data": {"schema": "iglu:a/b/jsonschema/1-0-0", "data": {"k": 1}}}',
        '{"data": "text"}',
        '{"data": null}',
    ]
)


@pytest.fixture(scope="module")
def python_pairs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, Any]]:
    folder = tmp_path_factory.mktemp("user")
    path = folder / "breaking_user.py"
    path.write_text(USER_FILE, "utf-8")
    pairs = []
    for config, timeout in (({"k": [1]}, None), ({"k": [2]}, 30)):
        parameters = {"file": str(path), "config": config, "timeoutSeconds": timeout}
        pairs.append(
            (
                custom.PythonEnrichment.from_parameters(parameters, source="py.json"),
                old("custom").PythonEnrichment.from_parameters(
                    parameters, source="py.json"
                ),
            )
        )
    return pairs


@PROPERTY
@given(
    st.lists(
        st.tuples(st.integers(0, 1), MODES, CONTEXT_TEXT, UNSTRUCT_TEXT),
        min_size=1,
        max_size=10,
    )
)
def test_python_enrichment_is_what_it_was(
    python_pairs: list[tuple[Any, Any]], calls: list[Any]
) -> None:
    derived = [{"schema": "iglu:com.acme/d/jsonschema/1-0-0", "data": {"v": [1]}}]
    headers = [("Cookie", "a=1"), ("X", " y ")]
    for index, mode, contexts, unstruct in calls * 2:
        event = {"app_id": mode, "contexts": contexts, "unstruct_event": unstruct}
        new, before = python_pairs[index]
        got = outcome(new, event, headers=headers, derived=derived)
        assert got == outcome(before, event, headers=headers, derived=derived), event


def test_python_valid_results_kept_are_per_enrichment(
    python_pairs: list[tuple[Any, Any]],
) -> None:
    """A result found valid by one enrichment says nothing to another: each
    checks its own (and an invalid result is still refused after many valid)."""
    first, second = python_pairs[0][0], python_pairs[1][0]
    for n in range(custom.RESULTS_KEPT + 10):
        text = json.dumps([{"schema": "iglu:com.acme/ok/jsonschema/1-0-0", "data": n}])
        assert outcome(first, {"app_id": "echo:" + text})[0]
    assert len(first._valid_results) <= custom.RESULTS_KEPT
    assert second._valid_results is not first._valid_results
    failed = outcome(first, {"app_id": "three_keys"})
    assert failed[0] == "failed" and "item 0 is" in failed[1]


# ---- end to end: old and new trees in subprocesses, two configurations ----

E2E_SCRIPT = r"""
import sys, uuid, itertools
import orjson
from plowline.enrich import pipeline
from plowline.enrich.pipeline import Enricher, EnrichedEvent
from plowline.enrich.enrichments.config import load_enrichments
counter = itertools.count()
uuid.uuid4 = lambda: uuid.UUID(int=next(counter))
pipeline._EVENT_IDS._ready = [f"ffffffff-ffff-4fff-bfff-{i:012d}" for i in range(400000)]
records, out, *folders = sys.argv[1:]
enrichers = [Enricher(clock=lambda: 1796398200.5, enrichments=load_enrichments(f))
             for f in folders]
with open(out, "wb") as h:
    for n, line in enumerate(open(records, "rb")):
        for k, enricher in enumerate(enrichers):
            for o in enricher.enrich_line(line.rstrip(b"\n")):
                head = f"{n} {k} ".encode()
                if isinstance(o, EnrichedEvent):
                    h.write(head + b"E " + o.stream.encode() + b" "
                            + orjson.dumps(list(o.fields.items())) + b"\n")
                else:
                    h.write(head + b"F " + o.to_json() + b"\n")
"""


def _enrichment_folder(parent: Path, name: str, **choice: Any) -> Path:
    folder = parent / name
    shutil.copytree(REPO / "examples" / "enrichments", folder)
    for path in folder.glob("*.json"):
        document = json.loads(path.read_text("utf-8"))
        data = document["data"]
        data["enabled"] = True
        parameters = data.setdefault("parameters", {})
        kind = data["name"]
        if kind == "pii_enrichment_config":
            data["emitEvent"] = choice["emit"]
            parameters["pii"] = [
                {"pojo": {"field": "user_id"}},
                {"pojo": {"field": "domain_userid"}},
                {
                    "json": {
                        "field": "contexts",
                        "schemaCriterion": "iglu:com.example.acceptance/page_context/jsonschema/1-*-*",
                        "jsonPath": "$.section",
                    }
                },
                {
                    "json": {
                        "field": "derived_contexts",
                        "schemaCriterion": "iglu:com.example/site_section/jsonschema/1-*-*",
                        "jsonPath": "$.section",
                    }
                },
                {
                    "json": {
                        "field": "unstruct_event",
                        "schemaCriterion": "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-*-*",
                        "jsonPath": "$.targetUrl",
                    }
                },
            ]
            parameters["strategy"] = {
                "pseudonymize": {"hashFunction": choice["hash"], "salt": choice["salt"]}
            }
        elif kind == "referer_parser":
            parameters["internalDomains"] = choice["internal"]
        elif kind == "currency_conversion_config":
            parameters["baseCurrency"] = choice["base"]
        elif kind == "event_fingerprint_config":
            parameters["excludeParameters"] = choice["exclude"]
        elif kind == "cookie_extractor_config":
            parameters["cookies"] = choice["cookies"]
        elif kind == "http_header_extractor_config":
            parameters["headersPattern"] = choice["headers"]
        elif kind == "campaign_attribution":
            parameters.setdefault("fields", {})["mktClickId"] = choice["click_ids"]
        elif kind == "anon_ip":
            parameters["anonOctets"] = choice["octets"]
            parameters["anonSegments"] = choice["octets"] + 1
        path.write_text(json.dumps(document), "utf-8")
    rates = folder / "files" / "rates.csv"
    days = {
        line.split(",")[0]
        for line in rates.read_text("utf-8").splitlines()
        if line[:1].isdigit()
    }
    with open(rates, "a", encoding="utf-8") as out:
        for day in sorted(days):
            out.write(f"{day},GBP,0.79\n{day},JPY,150.5\n{day},USD,1\n")
    return folder


def _records(path: Path) -> int:
    """Raw log lines: the captured traffic, then generated requests."""
    import random

    sys.path.insert(0, str(TESTS))
    try:
        from fixture_traffic import all_captured_requests, record_from_capture
    finally:
        sys.path.remove(str(TESTS))
    from plowline.rawlog.record import encode_record

    rng = random.Random(5)
    lines = [encode_record(record_from_capture(r)) for r in all_captured_requests()]
    ips = [
        "127.0.0.1",
        "81.2.69.160",
        "81.2.69.160:8080",
        "[2001:4860:4860::8888]:443",
        "2001:4860:4860::8888",
        "::ffff:81.2.69.160",
        "junk",
        "1.2.3",
        "[::1]",
        "216.160.83.56:1",
        "2.125.160.216",
        "fe80::1%eth0",
        "1.2.3.4:5:6",
        None,
    ]
    agents = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Chrome/12{v}.0.0.0 Safari/537.36",
        "Mozilla/5.0 (compatible; Googlebot/2.{v}; +http://www.google.com/bot.html)",
        "curl/8.{v}",
        "HeadlessChrome/1{v}",
    ]
    referrers = [
        "http://search.example.org/results?q=snowplow",
        "https://www.google.com/search?q=shoes+red",
        "http://127.0.0.1:8000/other.html",
        "https://shop.example/cart",
        "https://www.bing.com/search?q=a%20b",
        "android-app://com.google.x/",
        "ftp://x/",
        "http://acme.com/?q=1",
    ]
    pages = [
        "http://127.0.0.1:8000/p/a.html",
        "https://shop.example/checkout?utm_source=news&utm_medium=email&gclid=G1",
        "https://shop.example/?fbclid=F{v}&msclkid=M&utm_campaign=c{v}",
        "https://search.example.org/x?utm_source=a&utm_source=b&utm_term=t%20x",
        "https://other.example/?utm_content=%E2%82%AC",
    ]
    cookies = ["sp=abc; _ga=GA1.2", "sp2=q; sp=1", "_ga=x;sp=y;sp=z", "nothing=here"]
    names = [
        "Cookie",
        "cookie",
        "COOKIE",
        " Cookie",
        "X-Forwarded-For",
        "x-forwarded-for",
        "Accept-Language",
        "Referer",
        "SP-Anonymous",
    ]
    amounts = ["100", "12.345", "0.005", "-3", "1e3", "-0", "0.0", "19.99", "0.015"]
    currencies = ["USD", "GBP", "JPY", "EUR", "XYZ", ""]
    for i in range(700):
        v = str(rng.randint(0, 4))
        params = {
            "e": rng.choice(["pv", "pp", "se", "tr", "ti", "ue"]),
            "p": "web",
            "tv": "js-3",
            "aid": "a",
            "url": rng.choice(pages).replace("{v}", v),
            "uid": rng.choice(["u1", "u2", "", "x" * 300, "\u00fc" + v]),
            "duid": rng.choice(["d1", "d2"]),
        }
        if rng.random() < 0.6:
            params["refr"] = rng.choice(referrers)
        if params["e"] == "tr":
            params.update(
                {
                    "tr_id": "o",
                    "tr_tt": rng.choice(amounts),
                    "tr_tx": rng.choice(amounts),
                    "tr_sh": rng.choice(amounts),
                    "tr_cu": rng.choice(currencies),
                }
            )
        elif params["e"] == "ti":
            params.update(
                {
                    "ti_id": "o",
                    "ti_sk": "s",
                    "ti_pr": rng.choice(amounts),
                    "ti_qu": "1",
                    "ti_cu": rng.choice(currencies),
                }
            )
        elif params["e"] == "se":
            params.update({"se_ca": "c", "se_ac": "a"})
        elif params["e"] == "ue":
            params["ue_pr"] = json.dumps(
                {
                    "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
                    "data": {
                        "schema": "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1",
                        "data": {"targetUrl": "http://t.example/" + v},
                    },
                }
            )
        if rng.random() < 0.3:
            params["co"] = json.dumps(
                {
                    "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
                    "data": [
                        {
                            "schema": "iglu:com.example.acceptance/page_context/jsonschema/1-0-0",
                            "data": {"pageType": "t", "section": "s" + v, "version": 3},
                        },
                        {"schema": CLIENT_SIDE, "data": {"bot": rng.random() < 0.5}},
                    ],
                }
            )
        headers = []
        for _ in range(rng.randint(0, 5)):
            name = rng.choice(names)
            value = (
                rng.choice(cookies)
                if "ook" in name.lower()
                else rng.choice(["1.2.3.4, 5.6.7.8", "en-US", "x", " v "])
            )
            headers.append((name, value))
        agent = rng.choice(agents).replace("{v}", v)
        headers.append(("User-Agent", agent))
        lines.append(
            encode_record(
                RawRecord(
                    id=str(uuid.UUID(int=i)),
                    tstamp=rng.choice([1796398150600, 1796484550600, 1793806150600]),
                    collector="c",
                    method="GET",
                    path="/i",
                    querystring=urllib.parse.urlencode(params).encode(),
                    headers=tuple(headers),
                    ip=rng.choice(ips),
                    useragent=agent,
                    referer=rng.choice(referrers) if rng.random() < 0.5 else None,
                )
            )
        )
    path.write_bytes(b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
    return len(lines)


def _tree_before(base: Path) -> Path:
    """src/ of 5ebaf82~1 (git archive: the work tree is not touched) with the
    compiled modules of the installed tree (the C core did not change)."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "archive", BEFORE, "src"],
        check=True,
        capture_output=True,
    )
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(base, filter="data")
    src = REPO / "src" / "plowline"
    for compiled in list(src.glob("*.so")) + list(src.glob("collector/*.so")):
        shutil.copy2(compiled, base / "src" / "plowline" / compiled.relative_to(src))
    return base / "src"


def test_captured_and_generated_traffic_is_what_it_was(tmp_path: Path) -> None:
    if not (SHARED / "fixtures" / "traffic").is_dir():
        pytest.skip(f"no captured traffic in {SHARED}")
    records = tmp_path / "records.log"
    count = _records(records)
    one = _enrichment_folder(
        tmp_path,
        "one",
        salt="salt-one",
        hash="SHA-256",
        emit=True,
        internal=["127.0.0.1", "shop.example"],
        base="EUR",
        exclude=["eid", "stm"],
        cookies=["sp", "_ga"],
        headers="(?i)x-forwarded-for|accept-language|cookie",
        click_ids={"gclid": "Google", "fbclid": "Facebook"},
        octets=2,
    )
    two = _enrichment_folder(
        tmp_path,
        "two",
        salt="salt-two",
        hash="MD5",
        emit=False,
        internal=["search.example.org"],
        base="USD",
        exclude=["eid", "url"],
        cookies=["sp2"],
        headers="User-Agent|Referer",
        click_ids={"fbclid": "FB", "msclkid": "MS"},
        octets=1,
    )
    script = tmp_path / "e2e.py"
    script.write_text(E2E_SCRIPT, "utf-8")
    before_src = _tree_before(tmp_path / "before")
    outputs = {}
    for name, pythonpath in (("before", str(before_src)), ("now", None)):
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        out = tmp_path / f"{name}.out"
        subprocess.run(
            [sys.executable, str(script), str(records), str(out), str(one), str(two)],
            check=True,
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=120,
        )
        outputs[name] = out.read_bytes().splitlines()
    before, now = outputs["before"], outputs["now"]
    assert count > 700 and len(before) > 2 * count  # two enrichers, PII events too
    assert sum(b" E pii " in line for line in now) > 100
    assert sum(b" E good " in line for line in now) > count
    for line_before, line_now in zip(before, now, strict=True):
        assert line_now == line_before


# ---- memory: caches bounded after many distinct inputs ----


def _retained(function: Any) -> int:
    """Bytes still allocated after ``function()`` and a collection."""
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        function()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()


def test_short_key_caches_stay_bounded_in_memory(
    currency_pairs: list[tuple[Any, Any]], tmp_path: Path
) -> None:
    """Many distinct inputs of the kinds each cache keeps: entries stop at the
    bound and long texts stay out (a few MB at most in all)."""
    referer = _referer(referer_parser, list(INTERNALS[0]))
    campaign_one = campaign.CampaignAttribution.from_parameters(
        CAMPAIGNS[0], source="c"
    )
    digests = _pii(pii, "s", False, "SHA-256", False)
    rates = currency.CurrencyConversion(
        "EUR",
        {
            currency.dt.date(2024, 3, 1): {
                "EUR": currency.Decimal("0.9"),
                "USD": currency.Decimal(1),
            }
        },
        max_age_days=10,
    )
    long = "y" * 5000

    def fill() -> None:
        for n in range(9000):
            outcome(campaign_one, {"page_urlquery": f"utm_source=s{n}&pad={long}"})
            digests.hash(f"{n}{long}")
            outcome(
                rates,
                {
                    "collector_tstamp": "2024-03-05 00:00:00",
                    "tr_currency": "USD",
                    "tr_total": f"{n}{'1' * 80}",
                },
            )
            digests.hash(f"short-{n}")
            outcome(campaign_one, {"page_urlquery": f"utm_source=s{n}"})
            outcome(
                rates,
                {
                    "collector_tstamp": f"2024-03-{5 + n % 20:02d} 00:00:00",
                    "tr_currency": "USD",
                    "tr_total": f"{n}.5",
                },
            )

    retained = _retained(fill)
    assert campaign_one._kept_fields.cache_info().currsize == campaign.QUERIES_KEPT
    assert digests._kept_digest.cache_info().currsize == pii.DIGESTS_KEPT
    assert len(rates._converted) <= currency.CONVERSIONS_KEPT
    assert len(rates._dates) <= currency.DATES_KEPT
    # 4096 short querystrings, 8192 digests, 8192 conversions: a few MB.
    assert retained < 12_000_000, retained
    # Long referrers stay out of the classification cache (urls.split_url has
    # a cache of its own, older than 5ebaf82: not measured here).
    for n in range(50):
        outcome(
            referer,
            {
                "page_referrer": f"https://r{n}.example/?q={long}",
                "page_urlhost": "shop.example",
            },
        )
    assert referer._kept_fields.cache_info().currsize == 0


def test_referer_cache_does_not_keep_long_page_hosts() -> None:
    enrichment = _referer(referer_parser, list(INTERNALS[0]))
    before = _referer(old("referer_parser"), list(INTERNALS[0]))
    host_length = 20_000

    def fill(parser: Any) -> None:
        for n in range(400):
            host = f"h{n}-" + "a" * host_length + ".example"
            outcome(
                parser,
                {
                    "page_referrer": "http://www.google.com/search?q=x",
                    "page_urlhost": host,
                },
            )

    retained_before = _retained(lambda: fill(before))
    retained_now = _retained(lambda: fill(enrichment))
    assert retained_before < 1_000_000
    # 400 hosts of 20 kB: 8 MB kept now; at 8192 entries, 160 MB.
    assert retained_now < 1_000_000, (retained_before, retained_now)


def test_ip_lookup_cache_does_not_keep_long_ports(geo_pair: tuple[Any, Any]) -> None:
    config = {"geo": {"database": "GeoLite2-City.mmdb", "uri": "builtin:"}}
    now = ip_lookups.IpLookups.from_parameters(config, source="ip.json")
    before = old("ip_lookups").IpLookups.from_parameters(config, source="ip.json")

    def fill(enrichment: Any) -> None:
        for n in range(400):
            address = f"81.2.69.160:{n}" + "9" * 20_000
            outcome(enrichment, {"user_ipaddress": address})

    retained_before = _retained(lambda: fill(before))
    retained_now = _retained(lambda: fill(now))
    assert retained_before < 1_000_000
    assert retained_now < 1_000_000, (retained_before, retained_now)


# ---- the time limit ----


def _spin() -> None:
    while True:
        pass


def _busy(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


@pytest.fixture
def limit(monkeypatch: pytest.MonkeyPatch) -> TimeLimit:
    """A time limit of its own, its watchdog quick to fall asleep."""
    monkeypatch.setattr(time_limit, "IDLE_SECONDS", 0.3)
    return TimeLimit()


RUNAWAY_FILE = """
def process(event, config):
    mode = event.fields.get("app_id")
    if mode == "loop":
        while True:
            pass
    if mode == "swallow":
        try:
            while True:
                pass
        except:  # noqa: E722 - a user's bare except
            pass
        return [{"schema": "iglu:com.acme/ok/jsonschema/1-0-0", "data": "swallowed"}]
    return [{"schema": "iglu:com.acme/ok/jsonschema/1-0-0", "data": mode}]
"""


@pytest.fixture(scope="module")
def runaway(tmp_path_factory: pytest.TempPathFactory) -> custom.PythonEnrichment:
    path = tmp_path_factory.mktemp("runaway") / "runaway_user.py"
    path.write_text(RUNAWAY_FILE, "utf-8")
    return custom.PythonEnrichment.from_parameters(
        {"file": str(path), "timeoutSeconds": 0.2}, source="py.json"
    )


def test_a_runaway_function_fails_its_event_and_the_next_succeed(
    runaway: custom.PythonEnrichment,
) -> None:
    for mode in ("loop", "swallow"):
        start = time.monotonic()
        failed = outcome(runaway, {"app_id": mode})
        assert failed[0] == "failed" and "time limit of 0.2 s" in failed[1]
        assert time.monotonic() - start < 2.0
        for n in range(50):
            done = outcome(runaway, {"app_id": f"ok{n}"})
            assert done[1] == [
                {"schema": "iglu:com.acme/ok/jsonschema/1-0-0", "data": f"ok{n}"}
            ]
        _busy(0.3)  # a stray exception would land here, outside any call


def test_runaway_functions_in_many_threads_each_fail_their_own_event(
    runaway: custom.PythonEnrichment,
) -> None:
    results: list[tuple[str, Any]] = []
    strays: list[str] = []

    def worker(k: int) -> None:
        try:
            for j in range(6):
                mode = "loop" if j % 3 == k % 3 else f"w{k}-{j}"
                results.append((mode, outcome(runaway, {"app_id": mode})))
            _busy(0.25)
        except BaseException as exc:  # a stray TimeLimitExceeded
            strays.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not strays
    assert len(results) == 24
    for mode, got in results:
        if mode == "loop":
            assert got[0] == "failed", got
        else:
            assert got[1][0]["data"] == mode, (mode, got)


def test_nested_calls_each_have_their_limit(limit: TimeLimit) -> None:
    # The inner call stops first; the outer goes on and returns.
    def outer_catching() -> str:
        try:
            limit.run(0.1, _spin)
        except TimeLimitExceeded:
            return "inner stopped"
        return "inner returned"

    assert limit.run(5, outer_catching) == "inner stopped"
    # The outer limit stops a call blocked in an inner call with a longer one.
    start = time.monotonic()
    with pytest.raises(TimeLimitExceeded):
        limit.run(0.15, lambda: limit.run(10, _spin))
    assert time.monotonic() - start < 1.5
    # Three deep, then plain calls: nothing is left over.
    assert (
        limit.run(5, lambda: limit.run(5, lambda: limit.run(5, _busy, 0.01))) == "done"
    )
    assert [limit.run(0.2, _busy, 0.001) for _ in range(20)] == ["done"] * 20
    _busy(0.3)


def test_near_misses_leave_no_exception_behind(limit: TimeLimit) -> None:
    """Calls ending just around their deadline (the watchdog may fire as they
    return) in two threads: each either returns or raises inside run, never
    later."""
    strays: list[Any] = []
    outcomes = {"returned": 0, "stopped": 0}

    def worker(k: int) -> None:
        for i in range(40):
            try:
                limit.run(0.03, _busy, 0.02 + 0.005 * ((i + k) % 5))
                outcomes["returned"] += 1
            except TimeLimitExceeded:
                outcomes["stopped"] += 1
            try:
                _busy(0.003)
                sum(range(500))
            except TimeLimitExceeded:
                strays.append((k, i))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not strays
    assert outcomes["returned"] and outcomes["stopped"]


def test_a_bare_except_does_not_make_a_late_call_succeed(limit: TimeLimit) -> None:
    def swallow() -> str:
        try:  # noqa: SIM105 - the user's code, as written
            _spin()
        except BaseException:  # what a bare except does
            pass
        return "swallowed"

    with pytest.raises(TimeLimitExceeded):
        limit.run(0.1, swallow)
    assert limit.run(1, lambda: "next") == "next"
    _busy(0.2)


def test_a_runaway_call_after_the_watchdog_slept_is_stopped(limit: TimeLimit) -> None:
    assert limit.run(1, lambda: 1) == 1
    deadline = time.monotonic() + 5
    while not limit._sleeping and time.monotonic() < deadline:
        time.sleep(0.05)
    assert limit._sleeping, "the watchdog did not fall asleep"
    for _ in range(2):  # asleep, woken, asleep again
        start = time.monotonic()
        with pytest.raises(TimeLimitExceeded):
            limit.run(0.1, _spin)
        assert time.monotonic() - start < 1.0
        time.sleep(0.5)
    assert limit.run(1, lambda: "after") == "after"


def test_records_of_ended_threads_go_away(limit: TimeLimit) -> None:
    def one_call() -> None:
        limit.run(1, lambda: None)
        limit.run(1, lambda: limit.run(1, lambda: None))

    for _ in range(3):
        threads = [threading.Thread(target=one_call) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    gc.collect()
    assert len(limit._calls) == 0
    limit.run(1, lambda: None)
    assert len(limit._calls) == 1  # this thread's own, reused
    for _ in range(10):
        limit.run(1, lambda: None)
    assert len(limit._calls) == 1


# ---- configuration changed after construction ----


def test_configuration_changed_later_is_refused_or_honoured(
    currency_pairs: list[tuple[Any, Any]],
) -> None:
    """A setting changed after an enrichment is built never leaves a cache
    answering from the old value: PII honours a new salt; referer_parser,
    currency and campaign, whose settings are fixed when they are built
    (FixedSettings), refuse the change, and keep their answers."""
    # PII (the engineer's own test of this): honoured.
    digests = _pii(pii, "pepper", False, "SHA-256", False)
    first = digests.hash("alice")
    digests.salt = "other"
    assert digests.hash("alice") != first
    # The referrer's host made internal after a first event.
    referer = _referer(referer_parser, [])
    visit = {
        "page_referrer": "https://www.google.com/search?q=x",
        "page_urlhost": "shop.example",
    }
    assert dict(outcome(referer, visit)[0])["refr_medium"] == "search"
    with pytest.raises(AttributeError, match="internal is fixed"):
        referer.internal = frozenset({"www.google.com"})
    assert dict(outcome(referer, visit)[0])["refr_medium"] == "search"
    # Another base currency after a first sale.
    rates = currency.CurrencyConversion(
        "EUR",
        {
            currency.dt.date(2024, 3, 1): {
                "EUR": currency.Decimal("0.5"),
                "USD": currency.Decimal(1),
            }
        },
    )
    sale = {
        "collector_tstamp": "2024-03-02 00:00:00",
        "tr_currency": "USD",
        "tr_total": "10",
    }
    assert dict(outcome(rates, sale)[0])["tr_total_base"] == "5.00"
    for name, value in [("base", "USD"), ("rates", {}), ("max_age", None)]:
        with pytest.raises(AttributeError, match=f"{name} is fixed"):
            setattr(rates, name, value)
    assert dict(outcome(rates, sale)[0])["tr_total_base"] == "5.00"
    # Another click id mapping after a first page view.
    attribution = campaign.CampaignAttribution.from_parameters(CAMPAIGNS[0], source="c")
    page = {"page_urlquery": "fbclid=1"}
    assert dict(outcome(attribution, page)[0])["mkt_network"] == "Facebook"
    with pytest.raises(AttributeError, match="click_ids is fixed"):
        attribution.click_ids = (("fbclid", "Meta"),)
    assert dict(outcome(attribution, page)[0])["mkt_network"] == "Facebook"
    # Other attributes stay free (the loader sets schema_key after building).
    attribution.schema_key = "iglu:x/y/jsonschema/1-0-0"
    assert attribution.schema_key == "iglu:x/y/jsonschema/1-0-0"
