"""Attempts to make the compiled loops (``_core.c``) part from their Python twins.

Each test feeds the C path and the pure Python path the same input: edge values
of every kind, str subclasses, dicts changed while C walks them, inputs built to
catch leaked references, and whole ``plowline enrich`` runs with and without
the module (``PLOWLINE_PURE_PYTHON``) and with one or two workers. Tests marked
``xfail(strict=True)`` show a difference that is a bug; the others show what
holds.
"""

from __future__ import annotations

import gc
import gzip
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from plowline import compiled
from plowline.enrich import convert, limits, pipeline, selfdesc, transform, urls
from plowline.enrich.fields import FIELD_NAMES
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.rawlog import record as rec
from plowline.rawlog.reader import block_lines, iter_blocks, iter_lines
from plowline.rawlog.writer import OPEN_SUFFIX
from script_runs import run_script

pytestmark = pytest.mark.skipif(
    not compiled.COMPILED, reason="plowline._core is not built"
)
core = compiled.core
PYTHON = sys.executable
EID = "0b0b0b0b-1111-4222-8333-{:012d}"


def _python_params(text: str) -> dict[str, str]:
    return {n: v for n, v in urls.parse_querystring(text) if v is not None}


# ---- querystrings ----

ASCII_QUERY = st.lists(
    st.one_of(
        st.characters(max_codepoint=127),
        st.sampled_from(["%", "%%", "%2", "%5C", "%00", "%C3%A9", "%ED%A0%80"]),
        st.sampled_from(["%F0%9F%98%80", "%C0%80", "\\x41", "+", "=", "&", ";"]),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(ASCII_QUERY)
@example("a=%%41&b=\\%41&c=%4\x00")
@example("%3D=%3D&%26=%26;%3B=+%2B+")
def test_any_ascii_querystring_reads_as_in_python(text: str) -> None:
    """Every ASCII character (NUL, controls, backslashes) and odd escapes read
    the same in C as in Python, in the same order."""
    got = core.querystring_params(text)
    expected = _python_params(text)
    assert got == expected
    assert list(got) == list(expected)


def test_querystrings_past_ascii_and_subclasses() -> None:
    """Surrogates and other non-ASCII text go to Python; a str subclass reads as
    a str."""

    class Text(str):
        pass

    for text in ["a=\ud800", "a=\x80", "é=1"]:
        assert core.querystring_params(text) is None
        assert urls.querystring_params(text) == _python_params(text)
    assert urls.querystring_params(Text("a=1&b=%41")) == {"a": "1", "b": "A"}
    assert core.querystring_params("x" * 1_000_000 + "=%41") == {"x" * 1_000_000: "A"}


URL_PIECES = st.sampled_from(
    [
        *"ab:/?#@[]. %+-09",
        *["http", "HTTPS", "//", "://", "é", "\u212a", "٣", "\ud800", "\n", "\x00"],
        *["65535", "65536", "00080", "[::1]", "u@h"],
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(URL_PIECES, max_size=14).map("".join))
@example("HTTPS://u@[::1]x:1/p a?q#f")
@example("http://h:/p")
def test_urls_split_as_in_python(url: str) -> None:
    """Schemes, user info, IPv6 brackets, odd ports, spaces and non-ASCII split
    the same way in C."""
    assert urls.UrlParts._make(core.split_url(url)) == urls._split_url_py(url)


# ---- parameters ----

PARAM_NAMES = [*sorted(transform._CORE_RULES), "e", "p", "ip", "tnuid", "other"]
VALUE_PIECES = st.sampled_from(
    [
        *"0123456789-+.eExXaAf _",
        *["\t", "\n", "\x00", "\x7f", "\x85", "é", "٣", "\ud800", "null", "NaN"],
        *["0b0b0b0b-1111-4222-8333-44444444444", "2147483648", "253402300799999"],
    ]
)
VALUES = st.lists(VALUE_PIECES, max_size=6).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(PARAM_NAMES), VALUES, max_size=8))
@example({"vid": "-0", "tid": "-00", "ti_qu": "-2147483648", "pp_mix": "0012"})
@example({"res": "0x0", "vp": "01x2147483647", "ds": "x1", "dtm": "000000000000001"})
@example({"eid": "0B0B0B0B-1111-4222-8333-44444444444A", "se_va": "-0.000"})
def test_parameters_of_any_spelling_convert_as_in_python(
    params: dict[str, str],
) -> None:
    """Fields set and problems reported agree for values mixing digits, signs,
    exponents, Unicode digits, surrogates and control characters."""
    event_c: dict[str, str | None] = {}
    event_py: dict[str, str | None] = {}
    problems_c = transform.apply_params(event_c, params)
    problems_py = transform._apply_params_py(event_py, params)
    assert event_c == event_py
    assert problems_c == problems_py


@pytest.mark.parametrize(
    "query",
    [
        "res=1920x1080&aid=shop&e=zz",  # a plain dimension before another field
        "tv=js%093.0&aid=shop&e=zz",  # a value with a tab (left to Python) first
    ],
)
def test_failed_events_list_fields_in_tsv_order(
    query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C code sets fields in another order than Python (plain values as it
    meets them, the rest after): a failed event lists them in TSV order either
    way, so both write the same bytes."""
    record = rec.RawRecord(
        id="r", tstamp=1_700_000_000_000, collector="plowline-t", method="GET",
        path="/i", querystring=query.encode(),
    )  # fmt: skip
    enricher = Enricher(clock=lambda: 1_700_000_000.0)
    [failed_c] = enricher.enrich_record(record)
    for module, name in [
        (transform, "core"), (urls, "core"), (pipeline, "core"), (selfdesc, "core"),
        (convert, "_ms_text"), (convert, "_has_control"), (limits, "core"),
    ]:  # fmt: skip
        monkeypatch.setattr(module, name, None)
    [failed_py] = enricher.enrich_record(record)
    enriched_c = orjson.loads(failed_c.to_json())["data"]["payload"]["enriched"]
    enriched_py = orjson.loads(failed_py.to_json())["data"]["payload"]["enriched"]
    enriched_c.pop("event_id"), enriched_py.pop("event_id")
    assert list(enriched_c.items()) == list(enriched_py.items())
    assert list(enriched_c) == sorted(enriched_c, key=FIELD_NAMES.index)


def test_converted_values_are_plain_str() -> None:
    """Converted fields hold exact str, whatever str type the parameter had."""

    class Text(str):
        pass

    params = {
        "tid": Text("7"),
        "se_va": Text("1.5"),
        "eid": Text(EID.format(1)),
    }
    event: dict[str, str | None] = {}
    transform.apply_params(event, params)
    assert {type(v) for v in event.values()} == {str}


# ---- timestamps ----


def test_timestamps_of_int_subclasses() -> None:
    """bool and int subclasses format as in Python; other types raise."""
    import enum

    class Ms(enum.IntEnum):
        EPOCH = 0
        LATER = 1_700_000_000_123

    for ms in [True, False, Ms.EPOCH, Ms.LATER]:
        assert convert.ms_to_tstamp(ms) == convert._ms_to_tstamp_py(ms)
    for wrong in ["1", 1.5, None]:
        with pytest.raises(TypeError):
            core.ms_text(wrong)


# ---- lengths and rows ----


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*sorted(limits.MAX_LENGTHS)[:40], "not_a_field"]),
        st.one_of(st.none(), st.text(max_size=300)),
    )
)
def test_length_problems_agree(event: dict[str, str | None]) -> None:
    """enforce_lengths gives the same problems and cuts with and without C."""
    with_c = dict(event)
    without_c = dict(event)
    problems = limits.enforce_lengths(with_c)
    saved = limits.core
    limits.core = None
    try:
        assert limits.enforce_lengths(without_c) == problems
    finally:
        limits.core = saved
    assert with_c == without_c


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(FIELD_NAMES),
        st.one_of(
            st.none(),
            st.text(st.characters(blacklist_categories=["Cs"]), max_size=6),
            st.sampled_from(["\x00", "a\tb", "\r\n", "\U0010ffff", "x" * 5000]),
        ),
    )
)
def test_rows_agree_for_any_text(fields: dict[str, str | None]) -> None:
    """The C row is the joined Python row for any text, NULs and tabs included."""
    event = EnrichedEvent(fields)
    assert event.to_tsv_bytes() == event.to_tsv().encode("utf-8")


def test_falsy_values_write_as_in_python() -> None:
    """An empty-ish value that is not text."""
    for value in (0, False):
        event = EnrichedEvent({"app_id": value})  # type: ignore[dict-item]
        assert event.to_tsv_bytes() == event.to_tsv().encode("utf-8")


# ---- raw records ----

JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False),
    st.sampled_from(["", "a", "é", "\ud800", "\x00", "ZT1wdg==", "!!"]),
    st.lists(
        st.one_of(
            st.lists(st.sampled_from(["Host", "h", "\ud800"]), max_size=3),
            st.lists(st.integers(0, 2), max_size=2),
            st.text(max_size=2),
        ),
        max_size=3,
    ),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
RECORD_KEYS = [
    *sorted(rec._KNOWN_KEYS - {"v"}),
    "extra",
    "zzz",
]


def _field_types(made: rec.RawRecord) -> list[tuple[str, Any]]:
    from dataclasses import fields

    return [
        (type(getattr(made, f.name)).__name__, getattr(made, f.name))
        for f in fields(made)
    ]


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(RECORD_KEYS), JSON_VALUES, max_size=6))
def test_records_of_any_json_agree(changes: dict[str, Any]) -> None:
    """Any JSON values under any keys: the same record (field types and extra
    order included) or the same refusal, with and without C."""
    data = {"v": 1, "id": "r", "tstamp": 5, "collector": "c", "method": "GET"}
    data |= {"path": "/i", **changes}
    try:
        expected: Any = rec._record_from_dict_py(data)
    except Exception as exc:
        expected = (type(exc), str(exc))
    try:
        got: Any = rec._record_from_dict(data)
    except Exception as exc:
        got = (type(exc), str(exc))
    if isinstance(expected, tuple) or isinstance(got, tuple):
        assert got == expected
        return
    assert _field_types(got) == _field_types(expected)
    assert list(got.extra.items()) == list(expected.extra.items())


# ---- references and memory ----


def _calls() -> list[Callable[[], object]]:
    params = urls.querystring_params(
        "e=pv&p=web&aid=a&tv=a%09b&res=01x02&vp=bad&tid=007&se_va=1.5&dtm=17&"
        "eid=0B0B0B0B-1111-4222-8333-44444444444A&f_pdf=1&ev_ca=a&se_ca=b&vid=-0"
    )
    data = {
        "v": 1, "id": "r", "tstamp": 5, "collector": "c", "method": "GET",
        "path": "/i", "querystring": "e=pv", "headers": [["Host", "h"]], "x": [1],
    }  # fmt: skip
    refused = dict(data, headers=[["Host", 5]], body="\ud800")
    long_event = {"app_id": "x" * 300, "page_url": "u" * 5000}
    row = {"app_id": "caf\u00e9", "page_url": "u", "event_id": None}

    def refused_record() -> object:
        try:
            return rec._record_from_dict(refused)
        except ValueError:
            return None

    return [
        lambda: urls.querystring_params("a=%C3%A9&b=%zz&c=+;d"),
        lambda: core.split_url("HTTPS://u@[::1]:0443/a b?q#f"),
        lambda: transform.apply_params({}, params),
        lambda: convert.ms_to_tstamp(1_700_000_000_123),
        lambda: limits.enforce_lengths(dict(long_event)),
        lambda: EnrichedEvent(row).to_tsv_bytes(),
        lambda: rec._record_from_dict(data),
        refused_record,
    ]


def test_no_references_or_memory_leak() -> None:
    """Many calls of every C path, plain and left to Python, keep the inputs'
    reference counts and the traced memory flat."""
    values = ["caf\u00e9", "007", "x" * 300]
    before_refs = [sys.getrefcount(v) for v in values]
    for call in _calls():
        for _ in range(2000):
            call()
        gc.collect()
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            for _ in range(20_000):
                call()
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        assert grown < 20_000, (call, grown)
    assert [sys.getrefcount(v) for v in values] == before_refs


def test_wrong_arguments_raise_and_never_system_error() -> None:
    """Bad argument types and malformed rules raise TypeError/ValueError: no
    NULL without an exception, no exception left set behind a result."""
    calls: list[Callable[[], object]] = [
        lambda: core.querystring_params(bytearray(b"a=1")),
        lambda: core.apply_params({}, {"tid": "1"}, {"tid": ("f", "1", None, None)}),
        lambda: core.apply_params({}, {"tid": "1"}, {"tid": ("f",)}),
        lambda: core.apply_params({}, {"tid": "1"}, {"tid": ("f", 2**80, None, None)}),
        lambda: core.apply_params([], {}, {}),
        lambda: core.ms_text("1"),
        lambda: core.lengths_ok({"a": "x"}, {"a": "1"}),
        lambda: core.lengths_ok({"a": "x"}, {"a": 2**80}),
        lambda: core.record_from_dict({}, rec.RawRecord, (), rec._KNOWN_KEYS),
        lambda: core.record_from_dict({}, rec.RawRecord, rec._SLOTS, set()),
    ]
    for call in calls:
        with pytest.raises((TypeError, ValueError, OverflowError)) as info:
            call()
        assert not isinstance(info.value, SystemError)


# ---- dicts changed while C walks them (run under the debug allocator) ----

_MUTATION_SCRIPTS = {
    "apply_params": """
        from plowline.enrich import transform
        params = {}
        class Clearing(str):  # equal-hash key: its __eq__ runs inside C's lookup
            def __hash__(self): return hash("se_ca")
            def __eq__(self, other):
                params.clear()
                return False
        params["ev_ca"] = "".join(["label-", "x" * 40])
        params[Clearing("zz")] = "y"
        try:
            event = {}
            transform.apply_params(event, params)
            print("ok", event)
        except Exception as exc:
            print("raised", type(exc).__name__)
    """,
    "tsv_row": """
        from plowline.enrich.pipeline import EnrichedEvent
        fields = {}
        class Clearing(str):
            def __hash__(self): return hash("page_url")
            def __eq__(self, other):
                fields.clear()
                return True
        fields["app_id"] = "".join(["app-", "y" * 60])
        fields[Clearing("page_url")] = None
        try:
            print("ok", EnrichedEvent(fields).to_tsv_bytes()[:70])
        except Exception as exc:
            print("raised", type(exc).__name__)
    """,
    "record_from_dict": """
        from plowline.rawlog import record
        data, armed = {}, []
        class Clearing(str):
            def __hash__(self): return hash("v")
            def __eq__(self, other):
                if armed:
                    data.clear()
                return False
        data.update(v=1, id="r", tstamp=5, collector="c", method="GET", path="/")
        data[Clearing("later")] = "".join(["later-", "z" * 50])
        armed.append(True)
        try:
            print("ok", record._record_from_dict(data).extra)
        except Exception as exc:
            print("raised", type(exc).__name__)
    """,
    "lengths_ok": """
        from plowline.enrich import limits
        event = {}
        class Clearing(str):
            def __hash__(self): return hash("app_id")
            def __eq__(self, other):
                event.clear()
                return True
        event[Clearing("app_id")] = "".join(["a", "x" * 300])
        try:
            print("ok", len(limits.enforce_lengths(event)))
        except Exception as exc:
            print("raised", type(exc).__name__)
    """,
}


@pytest.mark.parametrize("name", sorted(_MUTATION_SCRIPTS))
def test_dicts_changed_during_the_call_are_safe(name: str) -> None:
    """A str-subclass key whose __eq__ mutates the dict being walked: C must
    not touch freed objects, and must end as Python does."""
    script = _MUTATION_SCRIPTS[name]
    pure = run_script(script, pure=True)
    assert pure[0] == 0 and pure[1]
    assert run_script(script, pure=False) == pure


# ---- the block reader ----


def _by_blocks(path: Path, block_bytes: int) -> list[tuple[str, int, bytes]]:
    return [
        (source, number, line)
        for source, first, block in iter_blocks([str(path)], block_bytes)
        for number, line in block_lines(first, block)
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"a\r\r\n\r\nb\rc\n\x0c\x0b\n\x00\n  \t \nlast\r",
        b"x" * (3 << 20) + b"\r\nshort\n" + b"y" * (2 << 20),
        b"\n" * 5000 + b"deep\n",
    ],
)
@pytest.mark.parametrize("suffix", ["", OPEN_SUFFIX, ".gz"])
def test_blocks_match_lines_for_odd_files(
    tmp_path: Path, content: bytes, suffix: str
) -> None:
    """CR runs, form feeds, NULs, lines longer than a block, thousands of blank
    lines; plain, active and gzip files."""
    path = tmp_path / ("raw.jsonl" + suffix)
    path.write_bytes(gzip.compress(content, 1) if suffix == ".gz" else content)
    expected = list(iter_lines([str(path)]))
    # A line arriving in many small reads is scanned again at each read: the
    # long content is read in large blocks only.
    sizes = (1, 7, 1 << 20) if len(content) < 100_000 else (1 << 16, 1 << 20)
    for block_bytes in sizes:
        assert _by_blocks(path, block_bytes) == expected


def test_blocks_of_a_truncated_gzip_keep_the_lines_before_the_damage(
    tmp_path: Path,
) -> None:
    """A gzip raw log cut short (a copy that stopped): the lines before the cut."""
    from plowline.errors import BadInputError

    data = b"".join(b'{"n": %d}\n' % i for i in range(1000))
    packed = gzip.compress(data)
    path = tmp_path / "raw.jsonl.gz"
    path.write_bytes(packed[:-20])

    def collect(numbers: Iterator[int]) -> list[int]:
        got: list[int] = []
        with pytest.raises(BadInputError, match="Could not read"):
            got.extend(numbers)  # what came before the damage stays in got
        return got

    def by_lines() -> Iterator[int]:
        for _, number, _line in iter_lines([str(path)]):
            yield number

    def by_blocks() -> Iterator[int]:
        for _, first, block in iter_blocks([str(path)], 1 << 20):
            yield from (number for number, _ in block_lines(first, block))

    lines = collect(by_lines())
    assert len(lines) > 900
    assert collect(by_blocks()) == lines


# ---- whole runs of plowline enrich ----


def _raw(n: int, query: str | None, **more: Any) -> bytes:
    record = {
        "v": 1, "id": f"r{n}", "tstamp": 1_700_000_000_000 + n,
        "collector": "plowline-test", "method": "GET", "path": "/i",
        "querystring": query, "body": None, "content_type": None,
        "headers": [["Host", "t.example.com"]], "ip": "203.0.113.9",
        "useragent": "Mozilla/5.0 (X11; Linux x86_64) Test", "referer": None,
        "host": "t.example.com", "network_userid": EID.format(999),
    }  # fmt: skip
    record.update(more)
    return orjson.dumps(record)


_QUERIES = [
    "e=pv&p=web&res=1920x1080&vp=1280x720&aid=shop&page=Home&tid=12",
    "e=pv&p=web&res=1920x1080&aid=shop&tid=bad",  # fails, with dimensions
    "e=se&p=web&tv=js%093.0&aid=shop&se_ca=c&se_ac=a&se_va=1.50",
    "e=se&p=web&tv=js%093.0&aid=shop&se_va=1e3x",  # fails, text left to Python
    "e=pv&p=web&page=caf%C3%A9+%E2%82%AC&url=http%3A%2F%2Fx.example%2F%3Fq%3D1",
    "e=pv&p=web&page=caf\u00e9&ds=01x002&vid=-0&dtm=0001700000000000",
    "e=pv&p=web&aid=" + "a" * 300,  # too long: a schema violation
    "e=tr&p=web&tr_id=o1&tr_tt=999999999999999.99&tr_cu=EUR&ti_qu=+5",
    "e=pv&p=web&eid=NOT&vid=2147483648&res=1x&vp=x1&stm=253402300800000",
]


def _raw_log(copies: int) -> bytes:
    lines = []
    n = 0
    for copy in range(copies):
        for query in _QUERIES:
            n += 1
            lines.append(_raw(n, query + "&eid=" + EID.format(n)))
        n += 1
        lines.append(_raw(n, None, querystring_base64="ZT1wdiZwPXdlYg=="))
        lines.append(b"" if copy % 7 else b"   ")
    return b"\r\n".join(lines) + b"\n"


def _enrich(
    raw: Path, out: Path, *, pure: bool = False, workers: int = 1
) -> tuple[list[bytes], list[bytes]]:
    env = dict(os.environ)
    env.pop("PLOWLINE_PURE_PYTHON", None)
    if pure:
        env["PLOWLINE_PURE_PYTHON"] = "1"
    good, bad = out / "good.tsv", out / "bad.jsonl"
    command = [PYTHON, "-m", "plowline", "-q", "enrich", str(raw)]
    command += ["--good", str(good), "--bad", str(bad), "--workers", str(workers)]
    subprocess.run(
        command,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return _good_lines(good), _bad_lines(bad)


_ETL = FIELD_NAMES.index("etl_tstamp")
_EVENT_ID = FIELD_NAMES.index("event_id")


def _good_lines(path: Path) -> list[bytes]:
    rows = []
    for line in path.read_bytes().splitlines():
        fields = line.split(b"\t")
        fields[_ETL] = b""
        if not fields[_EVENT_ID].startswith(b"0b0b0b0b"):
            fields[_EVENT_ID] = b""  # drawn at random (no valid eid was sent)
        rows.append(b"\t".join(fields))
    return rows


def _bad_lines(path: Path) -> list[bytes]:
    # The time of failure and of enrichment change from run to run; the order of
    # keys is kept, since it is what the output file holds.
    rows = []
    for line in path.read_bytes().splitlines():
        doc = orjson.loads(line)
        doc["data"]["failure"]["timestamp"] = "T"
        enriched = doc["data"]["payload"].get("enriched")
        if isinstance(enriched, dict):
            enriched["etl_tstamp"] = "T"
            if not enriched["event_id"].startswith("0b0b0b0b"):
                enriched["event_id"] = "random"
        rows.append(orjson.dumps(doc))
    return rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("runs")
    raw = base / "raw.jsonl"
    raw.write_bytes(_raw_log(320))  # over 1 MiB: two chunks at least
    out = {}
    for name, pure, workers in [("c", False, 1), ("py", True, 1), ("c2", False, 2)]:
        folder = base / name
        folder.mkdir()
        out[name] = _enrich(raw, folder, pure=pure, workers=workers)
    out["raw"] = raw
    return out


def _sorted_json(lines: list[bytes]) -> list[bytes]:
    return [orjson.dumps(orjson.loads(x), option=orjson.OPT_SORT_KEYS) for x in lines]


@pytest.mark.slow
def test_enriched_rows_are_the_same_without_c(runs: dict[str, Any]) -> None:
    """Enriched TSV, and failed events read as JSON, agree with pure Python."""
    good_c, bad_c = runs["c"]
    good_py, bad_py = runs["py"]
    assert len(good_c) > 1000 and len(bad_c) > 1000
    assert good_c == good_py
    assert _sorted_json(bad_c) == _sorted_json(bad_py)


@pytest.mark.slow
def test_failed_event_lines_are_the_same_without_c(runs: dict[str, Any]) -> None:
    """The failed-event lines as written, compared byte for byte."""
    assert runs["c"][1] == runs["py"][1]


@pytest.mark.slow
def test_two_workers_write_what_one_writes(runs: dict[str, Any]) -> None:
    """Over several 1 MiB chunks with CRLF and blank lines, --workers 2 gives the
    same lines, in the same order, as --workers 1."""
    assert runs["raw"].stat().st_size > 1 << 20
    assert runs["c2"] == runs["c"]


@pytest.mark.slow
def test_gzip_input_enriches_as_plain(runs: dict[str, Any], tmp_path: Path) -> None:
    """The same raw log gzipped, read by two workers."""
    packed = tmp_path / "raw.jsonl.gz"
    packed.write_bytes(gzip.compress(runs["raw"].read_bytes(), 1))
    assert _enrich(packed, tmp_path, workers=2) == runs["c"]
