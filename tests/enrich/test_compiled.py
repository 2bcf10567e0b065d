"""The compiled per-event loops (``_core.c``) give what the Python code gives.

Each C function is held against the Python code it stands in for, on generated
values that reach both its plain path and every way out of it (values it must
leave to Python); then whole enrichment runs of the captured traffic, and of
mutated lines, are compared with the C module switched off.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from plowline import compiled
from plowline.enrich import convert, limits, pipeline, selfdesc, transform, urls
from plowline.enrich.fields import FIELD_INDEX, FIELD_NAMES
from plowline.enrich.pipeline import EnrichedEvent, Enricher

if os.environ.get("CI") and not compiled.COMPILED:
    # CI's machine has a C compiler: an unbuilt module there is a broken install.
    pytest.fail("plowline._core was not built", pytrace=False)
pytestmark = pytest.mark.skipif(
    not compiled.COMPILED, reason="plowline._core is not built"
)
core = compiled.core

# Every module that picks the C code, and the name it holds it under.
_SWITCHES = [
    (transform, "core"),
    (urls, "core"),
    (limits, "core"),
    (pipeline, "core"),
    (convert, "_ms_text"),
    (convert, "_has_control"),
    (selfdesc, "core"),
]


def _python_params(text: str) -> dict[str, str]:
    pairs = urls.parse_querystring(text)
    return {name: value for name, value in pairs if value is not None}


QUERY_ASCII = st.lists(
    st.sampled_from([*"%+=&;aAfF09zx ~.\\", "%C3", "%A9", "%E2%82%AC"]), max_size=40
).map("".join)


@settings(max_examples=600, deadline=None)
@given(QUERY_ASCII)
@example("e=pv&e=se&aid")
@example("=x&&;a=1;b")
@example("url=http%3A%2F%2Fexample.com%2F%3Fa%3D1&page=50%off+now")
@example("a=%C3&b=%C3%A9%zz%")
@example("%41%42=%4")
def test_querystrings_read_as_in_python(text: str) -> None:
    params = core.querystring_params(text)
    expected = _python_params(text)
    assert params == expected
    assert list(params) == list(expected)  # the order a name first came in


@settings(max_examples=300, deadline=None)
@given(QUERY_ASCII | st.text(max_size=12))
def test_querystring_bytes_read_as_their_text(text: str) -> None:
    """A record's querystring is read from its bytes: as the text they
    decode to when ASCII, and left to Python (None) otherwise."""
    data = text.encode("utf-8", "surrogatepass")
    params = core.querystring_params(data)
    if not text.isascii():
        assert params is None
        return
    expected = _python_params(text)
    assert params == expected
    assert list(params) == list(expected)


def test_querystrings_past_ascii_are_left_to_python() -> None:
    assert core.querystring_params("page=caf\u00e9") is None
    # ... and the public function reads them all the same.
    assert urls.querystring_params("page=caf\u00e9&x=%C3%A9") == {
        "page": "café",
        "x": "é",
    }


# Values per kind of parameter: plain ones and every spelling the C code must
# leave to Python (signs, leading zeros, exponents, out of range, spaces).
INTS = [
    "0",
    "7",
    "-12",
    "2147483647",
    "-2147483648",
    "2147483648",
    "-2147483649",
    "007",
    "-0",
    "+5",
    "null",
    "1e3",
    " 5",
    "",
    "12345678901",
    "٣",
    "-",
]
DECIMALS = [
    "0",
    "12.50",
    "-3.1",
    "0.000",
    "-0",
    "-0.0",
    "007.5",
    "1.",
    ".5",
    "+2",
    "1E+7",
    "3.57E7",
    "1e-05",
    "NaN",
    "null",
    "123456789012345",
    "1234567890123456",
    "99999999999999999",
    "1." + "0" * 25,
    "x",
    "",
]
UUIDS = [
    "0b0b0b0b-1111-4222-8333-444444444444",
    "0B0B0B0B-1111-4222-8333-44444444444A",
    "0b0b0b0b11114222833344444444444412ab",
    "0b0b0b0b-1111-4222-8333-44444444444g",
    "",
    "not-a-uuid",
]
TSTAMPS = [
    "0",
    "1700000000000",
    "253402300799999",
    "253402300800000",
    "-1",
    "+1700000000000",
    "01700000000000",
    "1.5",
    "",
    "99999999999999999999999",
    "1e12",
]
BOOLS = ["0", "1", "2", "true", "", "01"]
DIMS = [
    "1280x720",
    "0x0",
    "01x002",
    "2147483647x1",
    "2147483648x1",
    "x720",
    "1280x",
    "1280X720",
    "1x2x3",
    "12345678901x1",
    "",
]
TEXTS = [
    "",
    "Home page",
    "tab\there",
    "line\nbreak",
    "nul\x00",
    "caf\u00e9",
    "\x7f",
    "Spring\r\nSale",
]

_BY_CONVERTER = {
    convert.to_int: INTS,
    convert.to_decimal: DECIMALS,
    convert.to_money: DECIMALS,
    convert.to_bool: BOOLS,
    convert.to_uuid: UUIDS,
    convert.to_tstamp: TSTAMPS,
}
PARAM_VALUES = {
    **{p: TEXTS for p, _ in transform.STRING_PARAMS},
    **{p: _BY_CONVERTER[c] for p, _, c in transform.CONVERTED_PARAMS},
    **{p: DIMS for p, _, _ in transform.DIMENSION_PARAMS},
    "e": ["pv", "ue", "zz"],
    "p": ["web", "nope"],
    "ip": [
        "203.0.113.9, 10.0.0.1",
        "",
        " 1.2.3.4",
        "1.2.3.4|x",
        "\t1.2.3.4",
        "é,1",
        "::1",
        "a b",
        "1.2.3.4\x1c",
        "1.2.3.4,",
    ],
    "tnuid": ["c0ffee", "", "x\ty"],
    "unknown": ["x"],
}


@st.composite
def param_dicts(draw: st.DrawFn) -> dict[str, str]:
    names = draw(st.lists(st.sampled_from(sorted(PARAM_VALUES)), max_size=14))
    return {name: draw(st.sampled_from(PARAM_VALUES[name])) for name in names}


@settings(max_examples=800, deadline=None)
@given(param_dicts())
@example({"ev_ca": "old", "se_ca": "new", "ti_na": "a", "ti_nm": "b"})
@example({"res": "bad", "tid": "x", "vp": "1x", "dtm": "1e3"})
def test_parameters_map_to_fields_as_in_python(params: dict[str, str]) -> None:
    # The fields an event has before its parameters (pipeline.enrich_event).
    before = {"v_collector": "c", "network_userid": "n", "user_ipaddress": "1.2.3.4"}
    event_c: dict[str, str | None] = dict(before)
    event_py: dict[str, str | None] = dict(before)
    problems_c = transform.apply_params(event_c, params)
    problems_py = transform._apply_params_py(event_py, params)
    # The same fields in the same order (a Python enrichment sees the order).
    assert list(event_c.items()) == list(event_py.items())
    assert problems_c == problems_py


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.integers(convert._MS_MIN - 5, convert._MS_MAX + 5),
        st.integers(-(2**70), 2**70),
        st.sampled_from(
            [
                0,
                -1,
                999,
                -999,
                -1000,
                -1001,
                951782400000,
                951868799999,
                convert._MS_MIN,
                convert._MS_MAX,
            ]
        ),
    )
)
def test_timestamps_written_as_in_python(ms: int) -> None:
    try:
        expected: str | None = convert._ms_to_tstamp_py(ms)
    except convert.ConversionError:
        expected = None
    assert core.ms_text(ms) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            ["a", "\t", "\n", "\x00", "\x1f", "\x7f", "\x80", "\x9f", "é", "\U0001f600"]
        ),
        max_size=12,
    )
)
def test_control_check_agrees_with_tsv_safe(text: str) -> None:
    assert core.has_control(text) == (convert._TSV_UNSAFE_RE.search(text) is not None)
    assert convert.tsv_safe(text) == _tsv_safe_py(text)


def _tsv_safe_py(value: str) -> str | None:
    if "\t" in value:
        value = value.replace("\t", "    ")
    if convert._CONTROL_RE.search(value):
        value = convert._BREAK_BETWEEN_WORDS_RE.sub(" ", value)
        value = convert._CONTROL_RE.sub("", value)
    return value or None


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
        st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()),
        st.text(
            alphabet=st.sampled_from([*"AZaz09+/-_= \n.", "é", "\u0100", "\U0001f600"]),
            max_size=30,
        ),
    )
)
@example("eyJhIjoxfQ")
@example("e30=\n")
@example("QR")
@example("Q")
def test_base64_decoded_as_in_python(text: str) -> None:
    assert core.decode_base64(text) == selfdesc._decode_base64_py(text)


URL_PIECES = st.sampled_from(
    [*"aZ09:/?#@[]. %+-", "https", "HTTPS", "http", "//", "://", "[::1]", ":8080",
     ":99999", ":0080", "é", "\U0001f600", "\t", "user:pw@", "?q=1", "#top"]
)  # fmt: skip


@settings(max_examples=800, deadline=None)
@given(st.lists(URL_PIECES, max_size=14).map("".join))
@example("https://shop.example.com:8443/a b/c?x=1&y=%zz#top")
@example("http://[2001:db8::1]:8080/p")
@example("http://[2001:db8::1/p")
@example("HTTPS://example.com")
@example("mailto:someone@example.com")
@example("//no-scheme.example:/x")
@example("http://host:/x")
@example("http://a@b@c:12/x")
@example("1http://x")
def test_urls_split_as_in_python(url: str) -> None:
    assert urls.UrlParts._make(core.split_url(url)) == urls._split_url_py(url)


ENVELOPE_SCHEMAS = st.sampled_from(
    [
        "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
        "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-12",
        "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-",
        "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1x",
        "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/2-0-0",
        "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-\u0661",
    ]
)
ENTITY_SCHEMAS = st.sampled_from(
    [
        "iglu:com.acme/thing/jsonschema/1-0-0",
        "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
        "iglu:com.acme/th ing/jsonschema/1-0-0",
        "iglu:com.acme/thing/jsonschema/1-0",
        "iglu:com.acmé/thing/jsonschema/1-0-0",
    ]
)
JSON_LEAVES = st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=3), st.booleans()
)
ENTITIES = st.one_of(
    st.fixed_dictionaries(
        {"schema": ENTITY_SCHEMAS, "data": st.one_of(JSON_LEAVES, st.just({"a": 1}))},
        optional={"extra": JSON_LEAVES},
    ),
    st.fixed_dictionaries({"schema": st.one_of(ENTITY_SCHEMAS, JSON_LEAVES)}),
    st.fixed_dictionaries({"data": JSON_LEAVES}),
    JSON_LEAVES,
)
ENVELOPES = st.fixed_dictionaries(
    {},
    optional={
        "schema": st.one_of(ENVELOPE_SCHEMAS, JSON_LEAVES),
        "data": st.one_of(st.lists(ENTITIES, max_size=3), ENTITIES),
        "other": JSON_LEAVES,
    },
)


def _column_or_error(function: Any, params: dict[str, str]) -> Any:
    try:
        return function(params)
    except selfdesc.SelfDescribingError as exc:
        return ("error", exc.message)


@settings(max_examples=600, deadline=None)
@given(ENVELOPES, st.sampled_from(["co", "ue_pr"]))
@example(
    {
        "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
        "data": [{"schema": "iglu:com.acme/thing/jsonschema/1-0-0", "data": {}}],
    },
    "co",
)
@example(
    {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": "iglu:com.acme/thing/jsonschema/1-0-0", "data": None},
    },
    "ue_pr",
)
@example(
    {
        "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1x",
        "data": [{"schema": "iglu:com.acme/thing/jsonschema/1-0-0", "data": {}}],
    },
    "co",
)
@example(
    {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-",
        "data": {"schema": "iglu:com.acme/thing/jsonschema/1-0-0", "data": 1},
    },
    "ue_pr",
)
def test_self_describing_columns_as_in_python(
    envelope: dict[str, Any], param: str
) -> None:
    params = {param: orjson.dumps(envelope).decode()}
    function = selfdesc.contexts_column if param == "co" else selfdesc.unstruct_column
    # Twice: the second time the entities' schemas are known, and C wraps them.
    with_c = [_column_or_error(function, params) for _ in range(2)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(selfdesc, "core", None)
        without_c = _column_or_error(function, params)
    assert with_c == [without_c, without_c]


LONG_TEXT = st.sampled_from(["", "x", "x" * 35, "x" * 36, "x" * 101, "x" * 300])


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "page_url",
                "app_id",
                "br_lang",
                "tr_currency",
                "useragent",
                "v_etl",
                "user_ipaddress",
                "not_a_field",
            ]
        ),
        st.one_of(st.none(), LONG_TEXT),
    )
)
def test_length_check_agrees_with_enforce_lengths(event: dict[str, str | None]) -> None:
    before = dict(event)
    problems = limits.enforce_lengths(dict(event))
    copy = dict(event)
    changed = limits.enforce_lengths(copy) != [] or copy != before
    assert core.lengths_ok(event, limits.MAX_LENGTHS) == (not changed)
    assert problems == limits.enforce_lengths(dict(event))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(FIELD_NAMES),
        st.one_of(st.none(), st.text(max_size=8)),
    )
)
def test_tsv_rows_are_the_joined_fields(fields: dict[str, str | None]) -> None:
    # Surrogates cannot be written as UTF-8, by either way.
    try:
        expected = EnrichedEvent(fields).to_tsv().encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            core.tsv_row(fields, FIELD_INDEX)
        return
    assert core.tsv_row(fields, FIELD_INDEX) == expected
    assert EnrichedEvent(fields).to_tsv_bytes() == expected


RECORD_VALUES = st.one_of(
    st.none(), st.integers(), st.text(max_size=4), st.booleans(), st.just("\ud800")
)


@settings(max_examples=500, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "id": st.one_of(st.just("r1"), RECORD_VALUES),
            "tstamp": st.one_of(st.just(1_700_000_000_000), RECORD_VALUES),
            "collector": st.just("plowline-test"),
            "method": st.sampled_from(["GET", "POST"]),
            "path": st.one_of(st.just("/i"), RECORD_VALUES),
        },
        optional={
            "querystring": RECORD_VALUES,
            "querystring_base64": st.sampled_from(["ZT1wdg==", None]),
            "body": RECORD_VALUES,
            "body_base64": st.sampled_from(["e30=", None]),
            "headers": st.one_of(
                st.none(),
                st.lists(
                    st.lists(
                        st.one_of(st.text(max_size=3), st.integers()),
                        min_size=1,
                        max_size=3,
                    ),
                    max_size=3,
                ),
            ),
            "ip": RECORD_VALUES,
            "useragent": RECORD_VALUES,
            "error": st.just("size_violation: 2000000 bytes"),
            "later_key": RECORD_VALUES,
        },
    )
)
def test_records_read_as_in_python(data: dict) -> None:
    from plowline.rawlog import record as rec

    try:
        expected = rec._record_from_dict_py(data)
    except (KeyError, TypeError, ValueError) as exc:
        expected = exc
    made = core.record_from_dict(data, rec.RawRecord, rec._SLOTS, rec._KNOWN_KEYS)
    if made is None:
        return  # left to Python, which gave ``expected``
    assert not isinstance(expected, Exception), (
        f"C took a record Python refuses: {expected}"
    )
    assert made == expected
    assert made.extra == expected.extra
    assert type(made) is rec.RawRecord
    with pytest.raises(AttributeError):
        made.id = "changed"  # still frozen


def test_plain_records_are_read_in_c() -> None:
    from plowline.rawlog import record as rec

    data = {
        "v": 1, "id": "r", "tstamp": 5, "collector": "c", "method": "GET",
        "path": "/i", "querystring": "e=pv", "headers": [["Host", "h"]], "x": 1,
    }  # fmt: skip
    made = core.record_from_dict(data, rec.RawRecord, rec._SLOTS, rec._KNOWN_KEYS)
    assert made is not None
    assert made.querystring == b"e=pv"
    assert made.headers == (("Host", "h"),)
    assert made.extra == {"x": 1}


def test_a_key_that_is_no_field_is_named() -> None:
    event = EnrichedEvent({"app_id": "a", "not_a_field": "b"})
    with pytest.raises(ValueError, match="not_a_field"):
        event.to_tsv_bytes()


def _outputs(lines: list[bytes]) -> list[tuple[str, bytes]]:
    enricher = Enricher(clock=lambda: 1_700_000_000.0)
    out = []
    for number, line in enumerate(lines):
        for outcome in enricher.enrich_line(line, line_number=number):
            stream, text = pipeline.output_line(outcome)
            out.append((stream, _without_fresh_values(stream, text)))
    return out


def _without_fresh_values(stream: str, text: bytes) -> bytes:
    # Events sent without an id get a random one, and failed events carry the
    # time they failed: neither is what is compared.
    if stream == "bad":
        import orjson

        doc = orjson.loads(text)
        doc["data"].pop("failure", None)
        payload = doc["data"].get("payload", {})
        if isinstance(payload, dict) and isinstance(payload.get("enriched"), dict):
            payload["enriched"].pop("event_id", None)
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    fields = text.split(b"\t")
    fields[FIELD_NAMES.index("event_id")] = b""
    return b"\t".join(fields)


def test_captured_traffic_enriches_the_same_without_c(
    python_only_lines: tuple[list, list],
) -> None:
    with_c, without_c = python_only_lines
    assert len(with_c) == len(without_c) > 50
    assert with_c == without_c


@pytest.fixture
def python_only_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list, list]:
    bench = Path(__file__).resolve().parents[2] / "bench"
    monkeypatch.syspath_prepend(str(bench))
    import enrich as bench_enrich  # type: ignore[import-not-found]

    raw = tmp_path / "raw.jsonl"
    bench_enrich.build_input(raw, 3000)
    lines = raw.read_bytes().splitlines()
    # Mutations: control characters, bad numbers and long values in the
    # querystrings, which the C code must leave to Python.
    mutated = []
    for n, line in enumerate(lines[:600]):
        for old, new in [
            (b"&res=", b"&res=12x"),
            (b"&vid=", b"&vid=+"),
            (b"&tv=", b"&tv=%09tab%0A"),
            (b"&dtm=", b"&dtm=1e"),
            (b"&aid=", b"&aid=" + b"a" * 300),
            (b"&eid=", b"&eid=X"),
        ]:
            if old in line and n % 6 == [
                b"&res=",
                b"&vid=",
                b"&tv=",
                b"&dtm=",
                b"&aid=",
                b"&eid=",
            ].index(old):
                mutated.append(line.replace(old, new, 1))
    lines += mutated
    with_c = _outputs(lines)
    for module, name in _SWITCHES:
        monkeypatch.setattr(module, name, None)
    without_c = _outputs(lines)
    assert any(stream == "bad" for stream, _ in with_c)
    return with_c, without_c


def test_the_switch_leaves_the_c_module_unused() -> None:
    code = "from plowline import compiled; print(compiled.COMPILED, compiled.core)"
    env = {**os.environ, "PLOWLINE_PURE_PYTHON": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["False", "None"]
