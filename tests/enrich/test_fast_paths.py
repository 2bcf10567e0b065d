"""The shortcuts of enrichment's hot path give what the plain way gives.

Each fast path (querystring decoding, the control-character scan, base64,
the batch item check, the URL columns) is compared with the general code it
stands in for, on generated input that reaches both sides of every branch."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import unquote_plus

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from plowline.enrich import adapters, selfdesc
from plowline.enrich.convert import _TSV_UNSAFE_RE, has_control_characters
from plowline.enrich.pipeline import Enricher, _url_columns
from plowline.enrich.urls import _decode, split_url
from plowline.rawlog.record import RawRecord

# Querystring text: escapes (good and broken), plus signs, backslashes (which
# the fast decoder must keep) and some characters past ASCII.
QUERY_TEXT = st.text(
    alphabet=st.sampled_from([*"%+\\=&aAfF09zx ~.", "é", "€", "\U0001f600"]),
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(QUERY_TEXT)
@example("http%3A%2F%2Fexample.com%2Fa%3Fb%3D1")
@example("50%off")
@example("%E2%82%AC+%C3")
@example("a\\x41%41\\n")
@example("%41%")
@example("%0A%00%7F")
def test_querystring_decoding_is_unquote_plus(text: str) -> None:
    assert _decode(text) == unquote_plus(text, errors="replace")


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            ["a", " ", "~", "\t", "\n", "\x00", "\x1f", "\x7f", "\x80", "é"]
        ),
        min_size=60,
        max_size=120,
    )
)
def test_control_character_scan_agrees_with_the_expression(text: str) -> None:
    assert has_control_characters(text) == (_TSV_UNSAFE_RE.search(text) is not None)


def test_control_character_scan_on_long_text() -> None:
    clean = "Mozilla/5.0 (X11; Linux x86_64) " * 4
    assert not has_control_characters(clean)
    assert has_control_characters(clean + "\t")
    assert has_control_characters("\x7f" + clean)
    assert not has_control_characters(clean + "é")
    assert has_control_characters(clean + "é\x01")


_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/\-_]")


def _reference_base64(text: str) -> bytes:
    # The general way: every character outside both alphabets dropped.
    data = (
        _NOT_BASE64.sub("", text).encode("ascii").translate(b"".maketrans(b"-_", b"+/"))
    )
    data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
    return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.sampled_from(["std", "url", "bare"]), st.data())
def test_base64_fast_path_decodes_as_the_general_way(
    raw: bytes, alphabet: str, data: st.DataObject
) -> None:
    if alphabet == "url":
        text = base64.urlsafe_b64encode(raw).decode()
    else:
        text = base64.b64encode(raw).decode()
    if alphabet == "bare":
        text = text.rstrip("=")
    decoded = selfdesc.decode_base64(text)
    assert decoded == raw
    # With characters that must be skipped (spaces, line breaks, stray padding).
    at = data.draw(st.integers(0, len(text)))
    stray = data.draw(st.sampled_from([" ", "\n", "=", "é", ".", "=="]))
    text = text[:at] + stray + text[at:]
    assert selfdesc.decode_base64(text) == _reference_base64(text)


ITEM_VALUES = st.one_of(st.text(max_size=3), st.integers(), st.none(), st.booleans())


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["e", "p", "tv", "aid", "ua", "nope", "ttm", "eid"]),
            ITEM_VALUES,
        ),
        st.lists(st.text(max_size=2), max_size=2),
        st.text(max_size=3),
    ),
    st.sampled_from(sorted(adapters.PAYLOAD_KEYS)),
)
def test_plain_batch_items_are_those_without_problems(item: Any, version: int) -> None:
    allowed = adapters.PAYLOAD_KEYS[version]
    plain = adapters._plain_item(item, allowed)
    problems = adapters._item_problems(item, allowed, 0)
    # Plain means no problem; and an item with no problem is plain.
    assert plain == (problems == [])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        [
            "https://shop.example.com:8443/a b/c?x=1&y=%zz#top",
            "http://[2001:db8::1]/p",
            "//no-scheme.example/x",
            "mailto:someone@example.com",
            "https://example.com",
            "relative/path?q#",
            "http://host:99999999/x",
            "https://tab.example/\tx?a=\x01",
        ]
    ),
    st.sampled_from([("page_url", "page_url"), ("page_referrer", "refr_url")]),
)
def test_url_columns_are_the_parts_of_the_url(url: str, names: tuple[str, str]) -> None:
    full, stem = names
    columns = dict(_url_columns(url, full, stem))
    parts = split_url(url)
    assert list(columns) == [full] + [
        stem + p for p in ("scheme", "host", "port", "path", "query", "fragment")
    ]
    assert columns[full] == parts.url
    assert columns[stem + "host"] == parts.host
    assert columns[stem + "port"] == parts.port
    # Parts are TSV-safe: no tab or control character reaches a column.
    assert not any(
        value is not None and _TSV_UNSAFE_RE.search(value)
        for value in columns.values()
        if value is not parts.url
    )


def test_batch_with_good_and_bad_items_keeps_both_outcomes() -> None:
    body = orjson.dumps(
        {
            "schema": adapters.PAYLOAD_DATA_1_0_4,
            "data": [
                {"e": "pv", "p": "web", "tv": "js-3", "url": "http://a.example/%7Ex"},
                {"e": "pv", "p": "web", "tv": 3},
                {"e": "pv", "p": "web", "tv": "js-3", "bogus": "1"},
            ],
        }
    )
    record = RawRecord(
        id="r1", tstamp=1_796_398_150_000, collector="c", method="POST",
        path="/com.snowplowanalytics.snowplow/tp2", body=body,
        content_type="application/json",
    )  # fmt: skip
    outcomes = Enricher(clock=lambda: 1_796_398_151.0).enrich_record(record)
    assert [type(o).__name__ for o in outcomes] == [
        "EnrichedEvent",
        "FailedEvent",
        "FailedEvent",
    ]
    assert outcomes[0]["page_urlpath"] == "/%7Ex"
    messages = [o.failure["messages"] for o in outcomes[1:]]  # type: ignore[union-attr]
    assert messages == [
        [{"field": "data[1].tv", "value": 3, "expectation": "a string"}],
        [
            {
                "field": "data[2].bogus",
                "value": "1",
                "expectation": "a parameter that payload_data allows",
            }
        ],
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.builds(
            "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-{}".format,
            st.sampled_from(["0", "1", "2", "3", "4", "5", "40", "", "x", "4 "]),
        ),
        st.text(max_size=20),
    )
)
def test_payload_schemas_allow_the_keys_of_their_revision(schema: str) -> None:
    """The cache of payload_data schemas gives the keys that the schema's own
    revision allows (the newest known for a later one), twice in a row, and
    None for any other schema."""
    match = adapters.PAYLOAD_DATA_RE.fullmatch(schema)
    expected = (
        None
        if match is None
        else adapters.PAYLOAD_KEYS.get(int(match[1]), adapters.PAYLOAD_KEYS[4])
    )
    assert adapters._allowed_keys(schema) == expected
    assert adapters._allowed_keys(schema) == expected  # from the cache


def test_payload_schema_cache_stays_bounded() -> None:
    for n in range(adapters.SCHEMAS_KEPT * 3):
        adapters._allowed_keys(f"iglu:com.acme/payload_data/jsonschema/1-0-{n}")
    assert len(adapters._ALLOWED_BY_SCHEMA) <= adapters.SCHEMAS_KEPT


def test_json_brackets_count_both_kinds_in_text_and_bytes() -> None:
    for text in ["", "{}", '{"a":[1,{"b":"[{"}]}', "x" * 100, "é{[€"]:
        expected = text.count("{") + text.count("[")
        assert selfdesc.json_brackets(text) == expected
        assert selfdesc.json_brackets(text.encode()) == expected
        assert selfdesc._json_brackets_py(text) == expected
        assert selfdesc._json_brackets_py(text.encode()) == expected
