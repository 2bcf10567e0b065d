"""Parameter converters and URL handling, on values taken from Snowplow's tests and
from real bug reports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plowline.enrich.convert import (
    ConversionError,
    has_control_characters,
    ms_to_tstamp,
    to_decimal,
    to_dimensions,
    to_int,
    to_money,
    to_tstamp,
    to_uuid,
    tstamp_to_ms,
    tsv_safe,
)
from plowline.enrich.pipeline import EnrichedEvent
from plowline.enrich.selfdesc import decode_base64
from plowline.enrich.transform import apply_params
from plowline.enrich.urls import parse_querystring, querystring_params, split_url

FREE_TEXT_PARAMS = ("aid", "page", "se_ca", "se_la", "tr_ci", "url")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", "42"),
        ("-7", "-7"),
        ("+5", "5"),
        ("null", None),
        ("2147483647", "2147483647"),
    ],
)
def test_int_accepts_java_integers(text: str, expected: str | None) -> None:
    assert to_int(text) == expected


@pytest.mark.parametrize("text", ["a", "", "1.5", "2147483648", "٤٥", " 1"])
def test_int_rejects_non_integers(text: str) -> None:
    with pytest.raises(ConversionError):
        to_int(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42.5", "42.5"),
        ("5.0", "5.0"),
        ("1E7", "10000000"),
        ("3.57E7", "35700000"),
        ("1e-05", "0.00001"),
        ("-0.5", "-0.5"),
        (".5", "0.5"),
        ("null", None),
    ],
)
def test_decimals_are_written_in_plain_notation(
    text: str, expected: str | None
) -> None:
    assert to_decimal(text) == expected


@pytest.mark.parametrize("text", ["NaN", "Infinity", "1_000", "", "1,5", "abc"])
def test_decimal_rejects_what_java_rejects(text: str) -> None:
    with pytest.raises(ConversionError):
        to_decimal(text)


def test_timestamps_have_three_millisecond_digits() -> None:
    assert to_tstamp("1735693323000") == "2025-01-01 01:02:03.000"
    assert to_tstamp("1") == "1970-01-01 00:00:00.001"
    assert ms_to_tstamp(-1) == "1969-12-31 23:59:59.999"


def test_timestamp_past_year_9999_is_rejected() -> None:
    with pytest.raises(ConversionError, match="9999"):
        to_tstamp("1111111111111111")


@given(st.integers(min_value=-62135596800000, max_value=253402300799999))
def test_timestamp_text_round_trips(ms: int) -> None:
    assert tstamp_to_ms(ms_to_tstamp(ms)) == ms


def test_dimensions_and_uuid() -> None:
    assert to_dimensions("1920x1080") == ("1920", "1080")
    with pytest.raises(ConversionError):
        to_dimensions("760x3389336768")
    with pytest.raises(ConversionError):
        to_dimensions("-1x20")
    assert to_uuid("A729D278-110A-4AC6-845B-D1F12CE45AC7") == (
        "a729d278-110a-4ac6-845b-d1f12ce45ac7"
    )
    with pytest.raises(ConversionError):
        to_uuid("a729d278110a4ac6845bd1f12ce45ac7")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\t", "    "),
        ("\\\t", "\\    "),
        ("\b", None),
        ("Hello\n", "Hello"),
        ("\u0002", None),
        (" ", " "),
        ("\ufffd", "\ufffd"),
        ("a\r\nb", "a b"),
        ("line\n", "line"),
    ],
)
def test_tsv_safe_text(text: str, expected: str | None) -> None:
    assert tsv_safe(text) == expected


def test_base64_in_both_alphabets_with_or_without_padding() -> None:
    assert decode_base64("eyJhIjoiw6kifQ") == b'{"a":"\xc3\xa9"}'
    assert decode_base64("eyJhIjoiw6kifQ==") == b'{"a":"\xc3\xa9"}'
    assert decode_base64("-_-_") == decode_base64("+/+/")


def test_querystring_follows_snowplow_rules() -> None:
    pairs = parse_querystring("e=pv&page=50%off&a=%b;x=1+2&n&q=%E2%9C%93&e=pp")
    assert pairs == [
        ("e", "pv"),
        ("page", "50%off"),
        ("a", "%b"),
        ("x", "1 2"),
        ("n", None),
        ("q", "✓"),
        ("e", "pp"),
    ]
    assert querystring_params("e=pv&e=pp&n") == {"e": "pp"}


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        (
            "http://www.psychicbazaar.com/oracles/119-psycards-deck.html"
            "?view=print#detail",
            (
                "http",
                "www.psychicbazaar.com",
                "80",
                "/oracles/119-psycards-deck.html",
                "view=print",
                "detail",
            ),
        ),
        (
            "http://www.nbnz.co.nz:440/login.asp",
            ("http", "www.nbnz.co.nz", "440", "/login.asp", None, None),
        ),
        (
            "https://www.example.com",
            ("https", "www.example.com", "443", None, None, None),
        ),
        (
            "http://shop.example.org/category/20%-off-selected/",
            (
                "http",
                "shop.example.org",
                "80",
                "/category/20%-off-selected/",
                None,
                None,
            ),
        ),
        (
            "www.example.com/page",
            (None, None, None, "www.example.com/page", None, None),
        ),
    ],
)
def test_urls_split_without_decoding(url: str, parts: tuple) -> None:
    split = split_url(url)
    assert (
        split.scheme,
        split.host,
        split.port,
        split.path,
        split.query,
        split.fragment,
    ) == parts


def test_spaces_in_urls_are_encoded() -> None:
    assert split_url("http://a.example/x y|z").url == "http://a.example/x%20y|z"


def test_money_must_fit_the_sql_columns() -> None:
    assert to_money("9999999999999999.99") == "9999999999999999.99"
    with pytest.raises(ConversionError, match="DECIMAL"):
        to_money("1E16")


@given(st.text(max_size=40))
def test_control_check_agrees_with_tsv_safe(text: str) -> None:
    # apply_params copies free text unchanged when this check says it may.
    if not has_control_characters(text):
        assert tsv_safe(text) == (text or None)


@given(st.lists(st.text(max_size=20), min_size=1, max_size=6))
def test_free_text_parameters_never_break_a_row(values: list[str]) -> None:
    params = {
        "e": "pv",
        **{p: v for p, v in zip(FREE_TEXT_PARAMS, values, strict=False)},
    }
    event: dict[str, str | None] = {}
    apply_params(event, params)
    row = EnrichedEvent(event).to_tsv()
    assert row.count("\t") == 130
    assert not has_control_characters(row.replace("\t", ""))


def test_a_row_refuses_a_field_it_does_not_have() -> None:
    with pytest.raises(ValueError, match="not_a_field"):
        EnrichedEvent({"app_id": "a", "not_a_field": "x"}).to_tsv()
