"""Schema keys, SchemaVer and criteria: parsing, printing, matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plowline.iglu import IgluSyntaxError, SchemaCriterion, SchemaKey, SchemaVer


def test_schema_key_parts_and_text() -> None:
    key = SchemaKey.parse("iglu:com.acme-corp/link_click/jsonschema/2-10-3")
    assert (key.vendor, key.name, key.format) == (
        "com.acme-corp",
        "link_click",
        "jsonschema",
    )
    assert key.version == SchemaVer(2, 10, 3)
    assert key.path == "com.acme-corp/link_click/jsonschema/2-10-3"
    assert str(key) == "iglu:com.acme-corp/link_click/jsonschema/2-10-3"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("com.acme/click/jsonschema/1-0-0", "INVALID_IGLUURI"),
        ("iglu:com.acme/click/1-0-0", "INVALID_IGLUURI"),
        ("iglu:com acme/click/jsonschema/1-0-0", "INVALID_IGLUURI"),
        ("iglu:com.acme/click/jsonschema/1-0", "INVALID_SCHEMAVER"),
        ("iglu:com.acme/click/jsonschema/0-1-0", "INVALID_SCHEMAVER"),
        ("iglu:com.acme/click/jsonschema/1-01-0", "INVALID_SCHEMAVER"),
        ("iglu:com.acme/click/jsonschema/1-x-0", "INVALID_SCHEMAVER"),
    ],
)
def test_bad_schema_keys_are_refused(text: str, code: str) -> None:
    with pytest.raises(IgluSyntaxError) as caught:
        SchemaKey.parse(text)
    assert caught.value.code == code
    assert repr(text.rsplit("/", 1)[-1]) in str(caught.value) or text in str(
        caught.value
    )


def test_schemaver_orders_numerically() -> None:
    assert SchemaVer.parse("1-0-10") > SchemaVer.parse("1-0-9")
    assert str(SchemaVer.parse("10-2-0")) == "10-2-0"


@pytest.mark.parametrize(
    ("criterion", "version", "matches"),
    [
        ("1-0-*", "1-0-0", True),
        ("1-0-*", "1-0-7", True),
        ("1-0-*", "1-1-0", False),
        ("1-*-*", "1-3-2", True),
        ("1-*-*", "2-0-0", False),
        ("2-0-1", "2-0-1", True),
        ("2-0-1", "2-0-0", False),
        ("*-*-*", "9-9-9", True),
    ],
)
def test_criterion_matches_versions(
    criterion: str, version: str, matches: bool
) -> None:
    parsed = SchemaCriterion.parse(f"iglu:com.acme/click/jsonschema/{criterion}")
    key = SchemaKey.parse(f"iglu:com.acme/click/jsonschema/{version}")
    assert parsed.matches(key) is matches
    assert str(parsed) == f"iglu:com.acme/click/jsonschema/{criterion}"


def test_criterion_needs_same_vendor_name_and_format() -> None:
    criterion = SchemaCriterion.parse("iglu:com.acme/click/jsonschema/1-*-*")
    for other in (
        "iglu:com.acme2/click/jsonschema/1-0-0",
        "iglu:com.acme/clicks/jsonschema/1-0-0",
        "iglu:com.acme/click/thrift/1-0-0",
    ):
        assert not criterion.matches(SchemaKey.parse(other))


def test_bad_criterion_is_refused() -> None:
    with pytest.raises(IgluSyntaxError, match="criterion"):
        SchemaCriterion.parse("iglu:com.acme/click/jsonschema/1-?-*")


@given(
    st.from_regex(r"[a-z][a-z0-9.\-_]{0,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9\-_]{1,20}", fullmatch=True),
    st.integers(1, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
)
def test_schema_key_text_round_trips(
    vendor: str, name: str, model: int, revision: int, addition: int
) -> None:
    key = SchemaKey(vendor, name, "jsonschema", SchemaVer(model, revision, addition))
    assert SchemaKey.parse(str(key)) == key
