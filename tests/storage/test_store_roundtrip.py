"""Random enriched events written to each store and read back equal."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_support import STORE_KINDS, make_store

from plowline.enrich.fields import FIELDS, REQUIRED_FIELDS, Field
from plowline.storage import loader
from plowline.storage.batch import rows_to_table
from plowline.storage.shred import snake_case

CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
# Text the enriched TSV can carry: no tabs, line breaks or lone surrogates.
_CHARS = st.characters(
    blacklist_categories=["Cs"],
    # U+0000 too: enrich never writes it (control characters are removed) and
    # PostgreSQL text cannot hold it (that store refuses it, naming the field).
    blacklist_characters="\x00\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
)
_TSTAMP = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
_DEC = st.decimals(
    min_value=Decimal("-9999999999999999.99"),
    max_value=Decimal("9999999999999999.99"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)
_PROPERTY = st.one_of(
    st.text(_CHARS, max_size=30),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.integers(-5, 5), max_size=3),
)


def _text(field: Field) -> st.SearchStrategy[tuple[str, Any]]:
    limit = min(field.max_length or 12, 12)
    return st.text(_CHARS, min_size=1, max_size=limit).map(lambda text: (text, text))


def _value(field: Field) -> st.SearchStrategy[tuple[str, Any]]:
    kind = field.kind
    if kind == "str":
        return _text(field)
    if kind == "int":
        return st.integers(-(2**31), 2**31 - 1).map(lambda n: (str(n), n))
    if kind == "bool":
        return st.sampled_from([("1", True), ("0", False)])
    if kind == "tstamp":
        return _TSTAMP.map(lambda m: (m.isoformat(sep=" ", timespec="milliseconds"), m))
    if kind == "dec":
        return _DEC.map(lambda number: (format(number, "f"), number))
    if kind == "float":
        return st.floats(allow_nan=False, allow_infinity=False).map(
            lambda number: (repr(number), number)
        )
    return st.just(("", None))  # JSON columns: drawn apart, below


@st.composite
def random_events(draw: st.DrawFn) -> list[tuple[list[str], list[Any], dict[str, Any]]]:
    """Rows, the typed values each should read back as, and its one entity."""
    out = []
    for number in range(draw(st.integers(1, 3))):
        texts, expected = [], []
        for field in FIELDS:
            text, value = draw(_value(field))
            if field.name == "event_id":
                text = value = f"{number:02d}{draw(st.text(_CHARS, max_size=34))}"
            elif field.name not in REQUIRED_FIELDS and draw(st.booleans()):
                text, value = "", None
            texts.append(text)
            expected.append(value)
        # One string field at its maximum length, in characters.
        longest = draw(
            st.sampled_from(
                [
                    i
                    for i, f in enumerate(FIELDS)
                    if f.kind == "str" and f.name != "event_id"
                ]
            )
        )
        size = FIELDS[longest].max_length or 1
        filler = draw(st.sampled_from(["x", "é", "✓", "😀"])) * size
        texts[longest] = expected[longest] = filler
        props = draw(
            st.dictionaries(
                st.from_regex(r"[a-z][a-zA-Z0-9]{0,10}", fullmatch=True),
                _PROPERTY,
                max_size=4,
            )
        )
        entity = {"schema": "iglu:com.acme/random/jsonschema/1-0-0", "data": props}
        document = orjson.dumps({"schema": CONTEXTS, "data": [entity]}).decode()
        index = [f.name for f in FIELDS].index("contexts")
        texts[index] = expected[index] = document
        out.append((texts, expected, props))
    return out


@pytest.mark.parametrize("kind", STORE_KINDS)
@settings(
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(events=random_events())
def test_random_events_read_back_equal(
    kind: str, events: list[tuple[list[str], list[Any], dict[str, Any]]]
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="plowline-roundtrip-"))
    store = make_store(kind, folder)
    try:
        store.ensure_schema()
        with store.transaction():
            loader.write_events(store, rows_to_table([texts for texts, _, _ in events]))
        stored = store.read_events().to_pylist()
        wanted = sorted(events, key=lambda event: event[1][6])
        assert len(stored) == len(wanted)
        for row, (_, expected, _) in zip(stored, wanted, strict=True):
            for field, want in zip(FIELDS, expected, strict=True):
                assert row[field.name] == want, field.name

        shredded = store.read_child_table("com_acme_random_1").to_pylist()
        by_root = {r["root_id"]: r for r in shredded}
        for _, expected, props in events:
            got = by_root[expected[6]]
            for prop, value in props.items():
                column = snake_case(prop)
                if isinstance(value, list):
                    assert orjson.loads(got[column]) == value
                elif isinstance(got[column], str) and not isinstance(value, str):
                    # Mixed kinds in one column are stored as JSON text.
                    assert orjson.loads(got[column]) == value
                else:
                    assert got[column] == value, column
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)
