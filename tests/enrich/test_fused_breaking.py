# ruff: noqa: E501 - generated cases and long literal inputs
"""Trying to make the fused C steps part from their Python reference.

``core.base_event`` (the base steps of one event, used by
``Enricher.enrich_event`` when ``pipeline.FUSED``) and ``core.record_from_line``
(the start of ``rawlog.record.decode_record``) must give what the Python code
gives, for any input, with and without enrichments and schema validation, and
must never crash or leak. The tester's pass found three crashes through
hostile callers of the C functions (a page URL whose ``__bool__`` drops it from
the event, a rule dropped while its preferred name is hashed, a known key whose
``__eq__`` empties the record); the tests of them pass since the fixes.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixture_traffic import SHARED, all_captured_requests, record_from_capture
from plowline import compiled
from plowline.enrich import pipeline, selfdesc, transform
from plowline.enrich.failed import FailedEvent
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.rawlog import record as rec
from plowline.rawlog.record import RawRecord

pytestmark = pytest.mark.skipif(
    not compiled.COMPILED, reason="plowline._core is not built"
)
core = compiled.core
ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
NOW = 1_700_000_000.0
TSTAMP = 1_700_000_000_123
THING = "iglu:com.acme/thing/jsonschema/1-0-0"
CP = selfdesc._CONTEXTS_PREFIX
UP = selfdesc._UNSTRUCT_PREFIX
# The ids handed out for events sent without one: recognisable, and replaced
# by a placeholder before outcomes are compared (the fused path may draw one
# more than the Python path when it hands an event over).
FAKE_ID = "ffffffff-ffff-4fff-bfff-{:012d}"
FAKE_ID_RE = re.compile(rb"ffffffff-ffff-4fff-bfff-[0-9]{12}")


# ---- the comparison ----


class Counting:
    """``core`` as pipeline.py sees it, counting the events base_event took."""

    def __init__(self) -> None:
        self.taken = 0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(core, name)

    def base_event(self, *args: Any) -> Any:
        self.calls += 1
        done = core.base_event(*args)
        self.taken += done is not None
        return done


def _fresh_ids() -> None:
    pipeline._EVENT_IDS._ready = [FAKE_ID.format(i) for i in range(20000)]


def _shape(outcome: Any) -> tuple[Any, ...]:
    if isinstance(outcome, EnrichedEvent):
        fields = orjson.dumps(list(outcome.fields.items()))
        return (
            "enriched",
            outcome.stream,
            FAKE_ID_RE.sub(b"<id>", fields),
            FAKE_ID_RE.sub(b"<id>", outcome.to_tsv_bytes()),
        )
    assert isinstance(outcome, FailedEvent), outcome
    return ("failed", FAKE_ID_RE.sub(b"<id>", outcome.to_json()))


def _run(
    enricher: Enricher, records: list[RawRecord], fused: bool
) -> tuple[list[Any], Counting]:
    counting = Counting()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "FUSED", fused)
        patch.setattr(pipeline, "core", counting)
        enricher._last_head = (None, 0, None)
        _fresh_ids()
        shapes = [_shape(o) for r in records for o in enricher.enrich_record(r)]
    return shapes, counting


def _same(enricher: Enricher, records: list[RawRecord]) -> tuple[list[Any], int]:
    """The outcomes with and without the fused steps, which must be equal;
    returns them and how many events base_event took."""
    fused, counting = _run(enricher, records, True)
    python, unused = _run(enricher, records, False)
    assert unused.calls == 0
    assert len(fused) == len(python)
    for a, b in zip(fused, python, strict=True):
        assert a == b
    return fused, counting.taken


def _enricher(**kwargs: Any) -> Enricher:
    return Enricher(clock=lambda: NOW, **kwargs)


def _record(
    query: str | None = None,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
    path: str = "/i",
    method: str = "GET",
    tstamp: int = TSTAMP,
    collector: str = "plowline-test",
    referer: str | None = None,
    useragent: str | None = "Mozilla/5.0 (X11; Linux x86_64)",
    headers: tuple[tuple[str, str], ...] = (),
    nuid: str | None = "11111111-2222-4333-8444-555555555555",
) -> RawRecord:
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=tstamp,
        collector=collector,
        method=method,
        path=path,
        querystring=query.encode("utf-8", "surrogatepass")
        if query is not None
        else None,
        body=body,
        content_type=content_type,
        headers=headers,
        ip="203.0.113.9",
        useragent=useragent,
        referer=referer,
        host="t.example.com",
        network_userid=nuid,
    )


def _query(params: dict[str, str] | list[tuple[str, str]]) -> str:
    items = params.items() if isinstance(params, dict) else params
    return "&".join(
        f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='', errors='surrogatepass')}"
        for k, v in items
    )


def _b64(document: Any, urlsafe: bool = True) -> str:
    raw = orjson.dumps(document)
    if urlsafe:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return base64.b64encode(raw).decode()


# ---- enrichers ----


def _bench() -> Any:
    """bench/enrich.py, for its _all_enabled and _iglu_central."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "fused_bench", ROOT / "bench" / "enrich.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fused")


@pytest.fixture(scope="module")
def every_enrichment(workdir: Path) -> list[Any]:
    bench = _bench()
    from plowline.enrich.enrichments.config import load_enrichments

    return load_enrichments(bench._all_enabled(workdir / "enrichments"))


@pytest.fixture(scope="module")
def resolver(workdir: Path) -> Any:
    if not (SHARED / "data" / "iglu-central").is_dir():
        pytest.skip("no Iglu Central in the shared folder")
    bench = _bench()
    os.environ.setdefault("PLOWLINE_SHARED", str(SHARED))
    (workdir / "iglu").mkdir(exist_ok=True)
    return bench._iglu_central(workdir / "iglu")


@pytest.fixture(scope="module")
def enrichers(every_enrichment: list[Any], resolver: Any) -> dict[str, Enricher]:
    return {
        "plain": _enricher(),
        "enrichments": _enricher(enrichments=every_enrichment),
        "validation": _enricher(resolver=resolver),
        "both": _enricher(enrichments=every_enrichment, resolver=resolver),
    }


KINDS = ("plain", "enrichments", "validation", "both")


# ---- captured traffic and the shared cases ----


def _traffic_records() -> list[RawRecord]:
    return [record_from_capture(request) for request in all_captured_requests()]


@pytest.mark.parametrize("kind", KINDS)
def test_captured_traffic_is_the_same_fused(
    enrichers: dict[str, Enricher], kind: str
) -> None:
    records = _traffic_records()
    outcomes, taken = _same(enrichers[kind], records)
    assert len(outcomes) >= 98
    # Nearly every captured event is a plain one that C takes.
    assert taken >= 75


# ---- generated parameters ----

WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
PARAM_NAMES = sorted(
    {
        *transform._CORE_RULES,
        "cx",
        "co",
        "ue_px",
        "ue_pr",
        "ttm",
        "dtm",
        "stm",
        "url",
        "refr",
        "e",
        "p",
        "eid",
        "tnuid",
        "nuid",
        "cv",
        "ip",
        "xyz",
    }
)
EDGE_VALUES = [
    "",
    "0",
    "1",
    "-0",
    "+5",
    "-5",
    "1e3",
    "1E3",
    "007",
    "00",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "1.50",
    "1.",
    ".5",
    "-.5",
    "0.000000000000000000001",
    "123456789012345",
    "1234567890123456",
    "\uff11\uff12",
    "\u0663",
    "1_000",
    " 1",
    "1 ",
    "null",
    "true",
    "0x10",
    "1700000000000",
    "1700000000001",
    "0001700000000000",
    "999999999999999",
    "253402300799999",
    "253402300800000",
    "-62135596800000",
    "-62135596800001",
    "946684800000",
    "946684799999",
    "1600000000000",
    "17000000000000000000",
    "\t",
    "a\tb",
    "a\nb",
    "a\r\nb",
    "\x7f",
    "x\x00y",
    "\x1f",
    "\x85",
    "\u2028",
    "\ufeff",
    "\u00e9t\u00e9",
    "\U0001f600",
    "\ud800",
    "  ",
    "%",
    "%zz",
    "1x1",
    "01x02",
    "1 x 2",
    "x",
    "1x",
    "2147483648x1",
    "0x0",
    "0B0B0B0B-1111-4222-8333-000000000001",
    "0b0b0b0b-1111-4222-8333-000000000001",
    "0b0b0b0b111142228333000000000001",
    "{0b0b0b0b-1111-4222-8333-000000000001}",
    "pv",
    "pp",
    "se",
    "ev",
    "ue",
    "tr",
    "ti",
    "ad",
    "PV",
    "zz",
    "web",
    "mob",
    "WEB",
    "srv",
    "iot",
    "203.0.113.1, 10.0.0.1",
    "|1.2.3.4",
    " 1.2.3.4",
    "1.2.3.4\t",
    "::1",
    "http://www.example.com/a?b=c#d",
    "http://a b/c?x=1#y",
    "//host/path",
    "host:80",
    "http://[::1]:8080/p",
    "https://h.example/?_sp=abc.1700000000000",
    "https://h.example/?x=1&_sp=abc",
    "https://h.example/?_sp=.17x",
    "HTTPS://X:0443/",
    "mailto:x@y",
    "http://h:99999/",
    "http://h:/",
    "http://u:p@h:81/p",
    "http://h\x7f/",
    "http://h/\u00e9?\u00e9#\u00e9",
    "?",
    "#",
    "http://",
    "http:",
    "https://h/p?",
    "javascript:alert(1)",
    "http://h/a b?c d#e f",
]
GOOD = {
    "e": ["pv", "pp", "se", "ue", "tr", "ti"],
    "p": ["web", "mob", "srv"],
    "eid": ["0b0b0b0b-1111-4222-8333-000000000001"],
    "dtm": ["1700000000000", "1699999999000"],
    "stm": ["1700000000500"],
    "ttm": ["1699999999999"],
    "url": ["http://www.example.com/a?b=c#d"],
    "refr": ["https://www.google.com/search?q=x"],
    "res": ["1280x720"],
    "vp": ["1280x720"],
    "ds": ["1280x3000"],
    "tid": ["123456"],
    "vid": ["3"],
    "se_va": ["1.5"],
    "tr_tt": ["12.00"],
    "cookie": ["1"],
    "sid": ["0b0b0b0b-1111-4222-8333-000000000002"],
}


def _value_of(name: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(GOOD.get(name, ["text", "x y"])),
        st.sampled_from(EDGE_VALUES),
        st.text(max_size=12),
    )


def _entity(valid_schema: bool = True) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(
            lambda i: {"schema": WEB_PAGE, "data": {"id": i}},
            st.sampled_from(["a2566010-a525-4765-9a12-e00fcfb71af1", "", "x"]),
        ),
        st.just({"schema": WEB_PAGE, "data": {"id": 5}}),
        st.just({"schema": THING, "data": {"a": 1}}),
        st.just({"schema": LINK_CLICK, "data": {"targetUrl": "http://x.example/"}}),
        st.just({"schema": LINK_CLICK, "data": {}}),
        st.just({"schema": "iglu:com.acme/x/jsonschema/1-0", "data": {}}),
        st.just({"schema": WEB_PAGE}),
        st.just({"data": {}}),
        st.just([]),
        st.just(
            {
                "schema": WEB_PAGE,
                "data": {"id": "a2566010-a525-4765-9a12-e00fcfb71af1"},
                "extra": 1,
            }
        ),
    )


def _document(unstruct: bool) -> st.SearchStrategy[Any]:
    prefix = UP if unstruct else CP
    schema = st.sampled_from(
        [
            prefix + "0",
            prefix + "1",
            prefix,
            prefix + "x",
            CP + "1" if unstruct else UP + "0",
        ]
    )
    data = _entity() if unstruct else st.lists(_entity(), max_size=3)
    return st.one_of(
        st.builds(lambda s, d: {"schema": s, "data": d}, schema, data),
        st.just({"schema": prefix + "0"}),
        st.just("just text"),
        st.just(None),
    )


def _encoded(document: Any, how: str) -> str:
    raw = orjson.dumps(document)
    if how == "plain":
        return raw.decode()
    if how == "urlsafe":
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    if how == "padded":
        return base64.b64encode(raw).decode()
    if how == "bom":
        return base64.b64encode(b"\xef\xbb\xbf" + raw).decode()
    if how == "latin1":
        return base64.b64encode(
            raw.decode().encode("latin-1", "replace") + b"\xe9"
        ).decode()
    if how == "spaces":
        return " " + base64.b64encode(raw).decode() + "\n"
    return raw.decode()[: len(raw) // 2]  # "cut": not JSON


HOWS = ["plain", "urlsafe", "padded", "bom", "latin1", "spaces", "cut"]


GOOD_WEB_PAGE = {
    "schema": WEB_PAGE,
    "data": {"id": "a2566010-a525-4765-9a12-e00fcfb71af1"},
}
GOOD_CLICK = {"schema": LINK_CLICK, "data": {"targetUrl": "http://x.example/"}}


@st.composite
def parameter_sets(draw: Any) -> list[tuple[str, str]]:
    """A plain event (mostly one that C takes), then a few changes."""
    kind = draw(st.sampled_from(["pv", "pv", "pp", "se", "ue", "tr", "ti"]))
    items: list[tuple[str, str]] = [("e", kind)]
    for name in draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=10, unique=True)):
        if name != "e":
            items.append((name, draw(st.sampled_from(GOOD[name]))))
    if kind == "ue" or draw(st.booleans()):
        how = draw(st.sampled_from(["urlsafe", "padded", "plain"]))
        document = {
            "schema": UP + "0",
            "data": draw(st.sampled_from([GOOD_CLICK, {"schema": THING, "data": {}}])),
        }
        items.append(("ue_px" if how != "plain" else "ue_pr", _encoded(document, how)))
    if draw(st.booleans()):
        how = draw(st.sampled_from(["urlsafe", "padded", "plain"]))
        entities = draw(
            st.lists(st.sampled_from([GOOD_WEB_PAGE, GOOD_CLICK]), max_size=3)
        )
        items.append(
            (
                "cx" if how != "plain" else "co",
                _encoded({"schema": CP + "0", "data": entities}, how),
            )
        )
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(PARAM_NAMES))
        if name in ("cx", "co", "ue_px", "ue_pr"):
            how = draw(st.sampled_from(HOWS))
            if name in ("co", "ue_pr"):
                how = "plain" if how != "cut" else how
            value = _encoded(draw(_document(name.startswith("ue"))), how)
        else:
            value = draw(_value_of(name))
        if draw(st.booleans()):  # in place of a value sent
            items = [(k, v) for k, v in items if k != name]
        items.insert(draw(st.integers(0, len(items))), (name, value))
    if draw(st.booleans()):
        items = [(k, v) for k, v in items if k != "eid"]
    return items


RECORD_FIELDS = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {},
        optional={
            "referer": st.sampled_from(
                [
                    "http://ref.example/x?y=1",
                    "",
                    "http://r.example/?_sp=a.1",
                    "r\te f",
                    "http://r.example/\x7f",
                    "no scheme",
                ]
            ),
            "useragent": st.sampled_from(["", "UA\twith tab", "Googlebot/2.1"]),
            "collector": st.sampled_from(["", "c"]),
            "tstamp": st.sampled_from(
                [
                    0,
                    -1,
                    253402300799999,
                    253402300800000,
                    -62135596800000,
                    -62135596800001,
                ]
            ),
            "nuid": st.sampled_from([None, "", "n\x01"]),
        },
    ),
)


def _generated_records(
    items: list[tuple[str, str]], extra: dict[str, Any]
) -> list[RawRecord]:
    return [_record(_query(items), **extra)]


# FUSED_EXAMPLES=5000 FUSED_RANDOM=1 explores further than the suite does.
EXAMPLES = int(os.environ.get("FUSED_EXAMPLES", "250"))
RANDOM = bool(os.environ.get("FUSED_RANDOM"))
TAKEN: list[int] = []


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=not RANDOM,
    database=None,
)
@given(
    items=parameter_sets(),
    extra=RECORD_FIELDS,
    kind=st.sampled_from(KINDS),
    clear=st.booleans(),
)
def test_generated_events_are_the_same_fused(
    enrichers: dict[str, Enricher],
    items: list[tuple[str, str]],
    extra: dict[str, Any],
    kind: str,
    clear: bool,
) -> None:
    records = _generated_records(items, extra)
    if clear:
        selfdesc._SCHEMA_PARTS.clear()
    TAKEN.append(_same(enrichers[kind], records)[1])


def test_generated_events_were_taken_by_c() -> None:
    """The generated events are not all left to Python (else the comparison
    above would compare Python with itself)."""
    if not TAKEN:
        pytest.skip("the generated test did not run")
    print("taken", sum(TAKEN), "of", len(TAKEN))
    assert sum(TAKEN) >= len(TAKEN) // 10, (sum(TAKEN), len(TAKEN))


# ---- hostile callers of core.base_event (each in a process of its own) ----

PRELUDE = """
import gc, sys, orjson
from plowline.compiled import core
from plowline.enrich import pipeline, selfdesc, transform
T = 1_700_000_000_000
HEAD = {"v_collector": "c", "v_etl": "e", "etl_tstamp": "2023-11-14 22:13:20.000",
        "network_userid": None, "user_ipaddress": "1.2.3.4", "useragent": None,
        "collector_tstamp": "2023-11-14 22:13:20.000"}
def drop_me(obj):
    # Remove obj from every dict that holds it (the event base_event works on).
    for d in gc.get_referrers(obj):
        if isinstance(d, dict):
            for k in [k for k, v in list(d.items()) if v is obj]:
                del d[k]
"""


def _hostile(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONMALLOC="debug", PYTHONFAULTHANDLER="1")
    return subprocess.run(
        [PYTHON, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def test_a_page_url_that_leaves_the_event_in_its_bool_is_no_crash() -> None:
    done = _hostile(
        """
        class Evil:
            def __bool__(self):
                drop_me(self)
                return True
        head = dict(HEAD, page_url=Evil())
        result = core.base_event(head, None, T, {"e": "pv"})
        print("done", result is None)
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done True" in done.stdout


def test_a_rule_dropped_while_its_preferred_name_is_hashed_is_no_crash() -> None:
    done = _hostile(
        """
        rules = dict(transform._CORE_RULES)
        class Preferred:
            def __hash__(self):
                rules.clear()
                return 1
            def __eq__(self, other):
                return False
        rules["aid"] = (str(1000) + "field", 0, Preferred(), None)
        core.configure_base(rules, transform._LATE, transform.finish_params,
            lambda: "id", orjson.loads, orjson.dumps, selfdesc._CONTEXTS_PREFIX,
            selfdesc._UNSTRUCT_PREFIX, selfdesc._SCHEMA_PARTS, "a", "b",
            pipeline.EVENT_SCHEMAS, 50, 0)
        try:
            result = core.base_event(dict(HEAD), None, T, {"e": "pv", "aid": "x"})
        except Exception as exc:
            result = type(exc).__name__
        print("done", result)
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done" in done.stdout


def test_hostile_values_and_wrong_types_are_no_crash() -> None:
    """Wrong argument types raise TypeError or give None; odd values in head
    or params, values that change the event or the parameters while
    base_event runs, and a hostile configuration give None, a result or an
    exception, never a crash (PYTHONMALLOC=debug)."""
    done = _hostile(
        """
        outcomes = []
        def call(*args):
            try:
                r = core.base_event(*args)
                outcomes.append("none" if r is None else "event")
            except TypeError:
                outcomes.append("TypeError")
        class S(str):
            pass
        class DropsItself:
            def __bool__(self):
                drop_me(self)
                return True
        class Rebuilds(str):
            # tsv_safe's `value or None` runs this, in finish_params.
            def __bool__(self):
                for d in gc.get_referrers(self):
                    if isinstance(d, dict) and "v_etl" in d:
                        d.clear()
                        d[S("v_collector")] = S("c")
                        d["event"] = 5
                        d["page_referrer"] = DropsItself()
                return True
        class Mutates(str):
            def __bool__(self):
                params.clear()
                params[S("e")] = "pv"
                params[5] = 6
                return True
        for args in [
            (None, None, T, {}), (HEAD, 5, T, {}), (HEAD, None, "1", {}),
            (HEAD, None, T, None), (HEAD, None, True, {"e": "pv"}),
            (HEAD, None, 2**70, {"e": "pv"}), (HEAD, None, -2**70, {"e": "pv"}),
            ({1: 2}, None, T, {"e": "pv"}), (HEAD, None, T, {1: "x"}),
            ({S("v_collector"): "c"}, None, T, {"e": "pv"}),
            (HEAD, None, T, {S("e"): "pv"}), (HEAD, S("http://x/"), T, {"e": "pv"}),
            (HEAD, None, T, {"e": None}), (HEAD, None, T, {"e": S("pv")}),
            (HEAD, None, T, {"e": "pv", "url": 5}), (HEAD, None, T, {"e": "pv", "url": b"x"}),
            (HEAD, None, T, {"e": "pv", "url": S("http://x/")}),
            (dict(HEAD, v_collector=None), None, T, {"e": "pv"}), ({}, None, T, {"e": "pv"}),
            (dict(HEAD, event_id=5, page_url=7, page_referrer=8, event=9), None, T, {}),
            (dict(HEAD, page_referrer=DropsItself()), None, T, {"e": "pv"}),
            (HEAD, None, T, {"e": "pv", "ttm": 5}), (HEAD, None, T, {"e": "pv", "dtm": None, "stm": 3}),
            (HEAD, None, T, {"e": "pv", "cx": 5}), (HEAD, None, T, {"e": "pv", "co": b"{}"}),
            (HEAD, None, T, {"e": "pv", "cx": S("e30")}), (HEAD, None, T, {"e": "pv", "ue_pr": "[" * 10000}),
            (HEAD, None, T, {"e": "pv", "co": "[" * 60 + "]" * 60}),
            (HEAD, None, T, {"e": "pv", "aid": Rebuilds("x")}),
        ]:
            call(*args)
        params = {"e": "pv", "aid": Mutates("x"), "ttm": "1"}
        call(dict(HEAD), None, T, params)
        # A hostile configuration (configure_base is public too).
        class L(list):
            pass
        def finish(event, params, left):
            event.clear()
            return L()
        def finish_nothing(event, params, left):
            event.clear()
            return []
        def boom(*args):
            raise ValueError("boom")
        configs = [
            (finish, lambda: 5, orjson.loads, orjson.dumps, {}, -1),
            (finish_nothing, lambda: None, lambda x: {"schema": 1}, lambda x: "text", {"page_view": ("a",)}, 0),
            (finish_nothing, boom, boom, boom, {"page_view": 5}, 10**6),
            (boom, boom, lambda x: None, lambda x: b"\\xff", {}, 50),
        ]
        for fin, ids, loads, dumps, schemas, depth in configs:
            core.configure_base(transform._CORE_RULES, transform._LATE, fin, ids, loads,
                dumps, selfdesc._CONTEXTS_PREFIX, selfdesc._UNSTRUCT_PREFIX, {}, "a", "b",
                schemas, depth, 0)
            for params in [{"e": "pv", "aid": "a\\tb"}, {"e": "pv", "cx": "e30"},
                           {"e": "pv", "co": "{}"}, {"e": "pv"}, {"e": "ue", "ue_pr": "{}"}]:
                try:
                    call(dict(HEAD), None, T, params)
                except ValueError:
                    outcomes.append("ValueError")
        print("done", len(outcomes), sorted(set(outcomes)))
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "done 50 " in done.stdout, done.stdout


# ---- record_from_line against the Python reader ----


def _decoded(line: Any, with_c: bool) -> Any:
    from dataclasses import fields

    with pytest.MonkeyPatch.context() as patch:
        if not with_c:
            patch.setattr(rec, "core", None)
        try:
            made = rec.decode_record(line)
        except Exception as exc:
            return ("error", type(exc).__name__, str(exc))
    return [
        (f.name, type(getattr(made, f.name)).__name__, getattr(made, f.name))
        for f in fields(made)
    ] + [("extra order", list(made.extra.items()))]


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.sampled_from(["", "x", "\x00", "\ud800", "\u00e9", "GET", "1", "e=pv"]),
    st.text(max_size=6),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
LINE_KEYS = [*sorted(rec._KNOWN_KEYS), "extra", "zzz", "V", " v"]


def _line_text(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False)


@settings(max_examples=400, deadline=None, derandomize=not RANDOM, database=None)
@given(
    changes=st.dictionaries(st.sampled_from(LINE_KEYS), JSON_VALUES, max_size=5),
    version=st.sampled_from(
        [1, 1, 1, 1.0, True, "1", 2, 0, -1, 2**64 + 1, -(2**64) + 1, None, [1]]
    ),
    form=st.sampled_from(
        ["bytes", "str", "newline", "crlf", "spaces", "bom", "bytearray", "memoryview"]
    ),
)
def test_raw_log_lines_read_as_in_python(
    changes: dict[str, Any], version: Any, form: str
) -> None:
    data = {
        "v": version,
        "id": "r",
        "tstamp": 1700000000000,
        "collector": "c",
        "method": "GET",
        "path": "/i",
        "querystring": "e=pv",
        "headers": [["Host", "h"]],
    }
    data.update(changes)
    text = _line_text(data)
    line: Any = {
        "bytes": text.encode("utf-8", "surrogatepass"),
        "str": text,
        "newline": text.encode("utf-8", "surrogatepass") + b"\n",
        "crlf": text.encode("utf-8", "surrogatepass") + b"\r\n",
        "spaces": "  " + text + " \t",
        "bom": b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass"),
        "bytearray": bytearray(text.encode("utf-8", "surrogatepass")),
        "memoryview": memoryview(text.encode("utf-8", "surrogatepass")),
    }[form]
    assert _decoded(line, True) == _decoded(line, False)


@pytest.mark.parametrize(
    "line",
    [
        b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","v":2}',
        b'{"v":2,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","v":1}',
        b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","querystring":"\\ud800"}',
        b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","querystring":null,"querystring_base64":"ZT1wdg=="}',
        b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","body_base64":"!!"}',
        b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","headers":[["a","b","c"]]}',
        b'{"v":1,"id":"r","tstamp":5.0,"collector":"c","method":"GET","path":"/i"}',
        b'{"v":1,"id":"r","tstamp":true,"collector":"c","method":"GET","path":"/i"}',
        b'{"v":1,"id":"r","tstamp":99999999999999999999999,"collector":"c","method":"GET","path":"/i"}',
        b'{"v":1,"id":5,"tstamp":5,"collector":"c","method":"GET","path":"/i"}',
        b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","headers":{"a":"b"}}',
        b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","ip":5,"host":[1]}',
        b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","body":"\xff"}',
        b'{"v":1}',
        b"[1]",
        b"1",
        b"",
        b"   ",
        b"\xff",
        b"{",
        b'"v"',
        b"null",
        b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i"} x',
        '{"v":1,"id":"\u00e9","tstamp":5,"collector":"c","method":"GET","path":"/i"}',
    ],
)
def test_odd_raw_log_lines_read_as_in_python(line: Any) -> None:
    assert _decoded(line, True) == _decoded(line, False)


def test_record_from_line_takes_plain_lines() -> None:
    """The comparisons above are not vacuous: C reads a plain line itself."""
    line = orjson.dumps(
        {
            "v": 1,
            "id": "r",
            "tstamp": 5,
            "collector": "c",
            "method": "GET",
            "path": "/i",
            "querystring": "e=pv",
            "zz": [1],
        }
    )
    made = core.record_from_line(
        line, orjson.loads, RawRecord, rec._SLOTS, rec._KNOWN_KEYS
    )
    assert (
        isinstance(made, RawRecord)
        and made.querystring == b"e=pv"
        and made.extra == {"zz": [1]}
    )
    assert (
        core.record_from_line(
            b"{", orjson.loads, RawRecord, rec._SLOTS, rec._KNOWN_KEYS
        )
        is None
    )


def test_record_from_line_with_a_known_key_that_empties_the_record_is_no_crash() -> (
    None
):
    done = _hostile(
        """
        from plowline.rawlog import record as rec
        line = b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","zz":1}'
        stash = {}
        def loads(text):
            data = orjson.loads(text)
            data["zz"] = str(10**30)  # held by the dict alone
            stash["data"] = data
            return data
        class Known(str):
            def __hash__(self):
                return hash("zz")
            def __eq__(self, other):
                stash["data"].clear()
                return False
        try:
            made = core.record_from_line(line, loads, rec.RawRecord, rec._SLOTS, frozenset({Known("q")}))
        except Exception as exc:
            made = type(exc).__name__
        print("done", type(made).__name__)
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done" in done.stdout


def test_record_from_line_hostile_arguments_are_no_crash() -> None:
    done = _hostile(
        """
        from plowline.rawlog import record as rec
        from plowline.rawlog.record import RawRecord
        L = b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","zz":1}'
        out = []
        def call(*a):
            try:
                r = core.record_from_line(*a)
                out.append(type(r).__name__)
            except Exception as e:
                out.append(type(e).__name__)
        class S(str):
            pass
        class D(dict):
            pass
        def odd_values(x):
            d = orjson.loads(x)
            d["tstamp"] = S("5")
            d["headers"] = [[S("a"), "b"]]
            d["querystring"] = S("q")
            return d
        def subclass_values(x):
            d = orjson.loads(x)
            d["id"] = S("r")
            d["body"] = S("b")
            return d
        def huge_version(x):
            d = orjson.loads(x)
            d["v"] = 2**64 + 1
            return d
        K = rec._KNOWN_KEYS
        call(L, lambda x: {S("v"): 1}, RawRecord, rec._SLOTS, K)
        call(L, lambda x: D(v=1), RawRecord, rec._SLOTS, K)
        call(L, lambda x: None, RawRecord, rec._SLOTS, K)
        call(L, lambda x: 1 / 0, RawRecord, rec._SLOTS, K)
        call(L, 5, RawRecord, rec._SLOTS, K)
        call(L, orjson.loads, RawRecord, rec._SLOTS[:3], K)
        call(L, orjson.loads, RawRecord, (None,) * 15, K)
        call(L, orjson.loads, RawRecord, rec._SLOTS, frozenset({S("zz")}))
        call(L, lambda x: {"v": S("1")}, RawRecord, rec._SLOTS, K)
        call(L, odd_values, RawRecord, rec._SLOTS, K)
        call(L, subclass_values, RawRecord, rec._SLOTS, K)
        call(L, huge_version, RawRecord, rec._SLOTS, K)
        call(None, orjson.loads, RawRecord, rec._SLOTS, K)
        call(L, orjson.loads, 5, rec._SLOTS, K)
        call(L, orjson.loads, RawRecord, rec._SLOTS, {"v"})
        print("done", len(out), out)
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done 15 " in done.stdout, done.stdout
    # The record with str-subclass values is read as Python would (the checks
    # take PyUnicode_Check for querystring/body): no TypeError either way.
    assert "ZeroDivisionError" not in done.stdout


# ---- batches, other loaders, the shared cases ----


def _post(events: list[dict[str, str]], query: str | None = None) -> RawRecord:
    body = orjson.dumps(
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
            "data": events,
        }
    )
    return _record(
        query,
        body=body,
        content_type="application/json; charset=utf-8",
        path="/com.snowplowanalytics.snowplow/tp2",
        method="POST",
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=not RANDOM,
    database=None,
)
@given(
    batch=st.lists(parameter_sets(), min_size=1, max_size=5),
    query=st.sampled_from(
        [None, "", "aid=q", "e=pp&tv=x", "ttm=5", "cx=%%%", "url=http%3A%2F%2Fq%2F"]
    ),
    kind=st.sampled_from(KINDS),
)
def test_post_batches_are_the_same_fused(
    enrichers: dict[str, Enricher],
    batch: list[list[tuple[str, str]]],
    query: str | None,
    kind: str,
) -> None:
    events = [dict(items) for items in batch]
    _same(enrichers[kind], [_post(events, query)])


def test_a_plain_batch_is_taken_by_c(enrichers: dict[str, Enricher]) -> None:
    events = [
        {"e": "pv", "url": f"http://h.example/{i}", "p": "web", "tv": "t"}
        for i in range(5)
    ]
    outcomes, taken = _same(enrichers["plain"], [_post(events, "aid=from-query")])
    assert taken == 5 and len(outcomes) == 5


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def test_cloudfront_and_tomcat_records_are_the_same_fused(
    enrichers: dict[str, Enricher],
) -> None:
    from plowline.enrich.loaders import loader_for

    folder = ROOT / "tests" / "data" / "raw_formats"
    records: list[RawRecord] = []
    for name, loader in [
        ("cloudfront_12_fields.log", "cloudfront"),
        ("cloudfront_15_fields.log", "cloudfront"),
        ("cloudfront_18_fields.log", "cloudfront"),
        ("cloudfront_23_fields.log", "cloudfront"),
        ("tomcat_15_fields.log", "clj-tomcat"),
        ("tomcat_17_fields.log", "clj-tomcat"),
        ("tomcat_post.log", "clj-tomcat"),
    ]:
        for line in _lines(folder / name):
            try:
                made = loader_for(loader)(line)
            except Exception:
                continue
            if made is not None:
                records.append(made)
    cases = [
        json.loads(line)
        for line in (SHARED / "fixtures" / "snowplow_cases.jsonl")
        .read_text("utf-8")
        .splitlines()
    ]
    for case in cases:
        if case["input_format"] in ("cloudfront", "clj-tomcat"):
            try:
                made = loader_for(case["input_format"])(case["input"].encode())
            except Exception:
                continue
            if made is not None:
                records.append(made)
    assert len(records) >= 30
    taken = 0
    for kind in KINDS:
        taken += _same(enrichers[kind], records)[1]
    assert taken > 0


def test_shared_cases_are_the_same_fused(enrichers: dict[str, Enricher]) -> None:
    from plowline.enrich.loaders import loader_for

    records: list[RawRecord] = []
    for line in (
        (SHARED / "fixtures" / "snowplow_cases.jsonl").read_text("utf-8").splitlines()
    ):
        case = json.loads(line)
        given_input, form = case["input"], case["input_format"]
        base = {"e": "pv", "p": "web", "tv": "t"}
        if form == "tracker_params" and isinstance(given_input, dict):
            params = {k: v for k, v in given_input.items() if isinstance(v, str)}
            records.append(_record(_query(params)))
            records.append(_record(_query(base | params), referer="http://r.example/p"))
        elif (
            form in ("page_url", "string")
            and isinstance(given_input, str)
            and form == "page_url"
        ):
            records.append(_record(_query(base | {"url": given_input})))
            records.append(_record(_query(base), referer=given_input))
        elif form == "page_url_querystring_params" and isinstance(given_input, dict):
            url = "http://h.example/p?" + _query(
                {k: str(v) for k, v in given_input.items()}
            )
            records.append(_record(_query(base | {"url": url})))
        elif form == "page_uri_sources" and isinstance(given_input, dict):
            url = given_input.get("tracker_url_param")
            records.append(
                _record(
                    _query(base | ({"url": url} if url else {})),
                    referer=given_input.get("collector_referer_header"),
                )
            )
        elif form == "referer_uri" and isinstance(given_input, dict):
            records.append(
                _record(_query(base | {"refr": given_input["page_referrer"]}))
            )
        elif form == "string" and isinstance(given_input, str):
            records.append(
                _record(
                    _query(
                        base | {"page": given_input, "url": "http://h/" + given_input}
                    )
                )
            )
    for line in (
        (SHARED / "fixtures" / "input_cases.jsonl").read_text("utf-8").splitlines()
    ):
        case = json.loads(line)
        if case["kind"] == "querystring":
            records.append(_record(case["input"]))
        elif case["kind"] == "cloudfront_line":
            made = loader_for("cloudfront")(case["input"].encode())
            if made is not None:
                records.append(made)
    assert len(records) >= 12
    for kind in KINDS:
        _same(enrichers[kind], records)


# ---- schema validation and the schema cache ----


def _validation_records() -> list[RawRecord]:
    bad_context = {
        "schema": CP + "0",
        "data": [{"schema": WEB_PAGE, "data": {"id": 5}}],
    }
    bad_event = {"schema": UP + "0", "data": {"schema": LINK_CLICK, "data": {}}}
    good_context = {"schema": CP + "0", "data": [GOOD_WEB_PAGE]}
    return [
        _record(
            _query({"e": "pv", "url": "http://h.example/", "cx": _b64(bad_context)})
        ),
        _record(
            _query(
                {
                    "e": "ue",
                    "ue_px": _b64(bad_event),
                    "co": orjson.dumps(good_context).decode(),
                }
            )
        ),
        _record(
            _query(
                {
                    "e": "ue",
                    "ue_pr": orjson.dumps(bad_event).decode(),
                    "cx": _b64(bad_context),
                }
            )
        ),
        _record(
            _query(
                {
                    "e": "pv",
                    "cx": _b64(good_context),
                    "eid": "0b0b0b0b-1111-4222-8333-000000000009",
                }
            )
        ),
        _record(
            _query({"e": "ue", "ue_px": _b64({"schema": UP + "0", "data": GOOD_CLICK})})
        ),
        _record(
            _query(
                {
                    "e": "pv",
                    "cx": _b64(
                        {"schema": CP + "0", "data": [{"schema": THING, "data": {}}]}
                    ),
                }
            )
        ),
    ]


@pytest.mark.parametrize("kind", ["validation", "both"])
def test_failed_validation_is_the_same_and_asks_the_registry_once(
    enrichers: dict[str, Enricher], kind: str
) -> None:
    records = _validation_records()
    calls: list[int] = []
    real = pipeline.validate_entities

    def counted(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "validate_entities", counted)
        for record in records:  # the cache filled, so that C takes them
            enrichers[kind].enrich_record(record)
        per_mode = []
        for fused in (True, False):
            counts = []
            for record in records:
                calls.clear()
                _run(enrichers[kind], [record], fused)
                counts.append(len(calls))
            per_mode.append(counts)
        outcomes, taken = _same(enrichers[kind], records)
    assert per_mode[0] == per_mode[1] == [1] * len(records)
    assert taken == len(records)
    failed = [o for o in outcomes if o[0] == "failed"]
    assert len(failed) == 4  # three bad documents, one unknown schema (THING)
    assert all(b"schema_violations" in o[1] for o in failed)


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_schema_cache_then_a_full_one_give_the_same(
    enrichers: dict[str, Enricher], kind: str
) -> None:
    """The first event of a schema goes to Python (which fills the cache), the
    next to C: the same outcomes as Python alone, from an empty cache each
    time, and with the cache cleared before every event."""
    records = _traffic_records()[:40] + _validation_records()

    def run(fused: bool, clear_each: bool) -> list[Any]:
        selfdesc._SCHEMA_PARTS.clear()
        shapes: list[Any] = []
        for record in records:
            if clear_each:
                selfdesc._SCHEMA_PARTS.clear()
            shapes.extend(_run(enrichers[kind], [record], fused)[0])
        return shapes

    python = run(False, False)
    assert run(True, False) == python
    assert run(True, True) == python
    assert run(False, True) == python


# ---- memory ----


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_no_leak_over_many_calls() -> None:
    """base_event and record_from_line, on events they take and on events
    they leave (every way out), many times over: no growth."""
    selfdesc._SCHEMA_PARTS.clear()
    selfdesc.schema_parts(WEB_PAGE)
    selfdesc.schema_parts(LINK_CLICK)
    head = {
        "v_collector": "c",
        "v_etl": "e",
        "etl_tstamp": "2023-11-14 22:13:20.000",
        "network_userid": None,
        "user_ipaddress": "1.2.3.4",
        "useragent": None,
        "collector_tstamp": "2023-11-14 22:13:20.000",
    }
    cx = _b64({"schema": CP + "0", "data": [GOOD_WEB_PAGE, GOOD_CLICK]})
    ue = _b64({"schema": UP + "0", "data": GOOD_CLICK})
    params_list = [
        {
            "e": "pv",
            "url": "http://h.example/a b?c#d",
            "refr": "http://r/",
            "cx": cx,
            "dtm": "1700000000000",
            "stm": "1700000000500",
        },
        {"e": "ue", "ue_px": ue, "aid": "a\tb", "ttm": "1699999999999", "res": "1x1"},
        {"e": "pv", "url": "http://h.example/?_sp=a.1"},
        {"e": "pv", "cx": "!!!"},
        {"e": "pv", "co": "[" * 60},
        {"e": "ad"},
        {"e": "ue"},
        {"e": "pv", "tid": "x"},
        {
            "e": "pv",
            "ue_px": _b64({"schema": UP + "0", "data": {"schema": THING, "data": {}}}),
        },
        {"e": "pv", "ttm": "+5"},
        {"e": "pv", "dtm": "1", "stm": "x"},
        {"e": "pv", "aid": 5},
    ]
    lines = [
        b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","querystring":"e=pv","headers":[["a","b"]],"zz":[1]}',
        b'{"v":2}',
        b"{",
        b'{"v":1,"id":"r","tstamp":true,"collector":"c","method":"GET","path":"/i"}',
        b'{"v":1,"id":"r","tstamp":5,"collector":"c","method":"GET","path":"/i","body":"\\ud800"}',
    ]
    args = (orjson.loads, RawRecord, rec._SLOTS, rec._KNOWN_KEYS)

    def burst(times: int) -> None:
        for _ in range(times):
            for params in params_list:
                core.base_event(head, "http://ref.example/", TSTAMP, params)
            for line in lines:
                core.record_from_line(line, *args)

    burst(300)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    rss = _rss_kb()
    burst(3000)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 200_000, grown
    assert _rss_kb() - rss < 20_000


def test_traffic_and_generated_events_under_the_debug_allocator() -> None:
    """Captured traffic and odd events, fused and not, in a process with
    PYTHONMALLOC=debug: no memory error, and the same outcomes."""
    code = f"""
import sys
sys.path.insert(0, {str(ROOT / "tests")!r})
sys.path.insert(0, {str(ROOT / "tests" / "enrich")!r})
import test_fused_breaking as t
from plowline.enrich import pipeline
records = t._traffic_records() + t._validation_records()
for items in [[("e", "pv"), ("url", v)] for v in t.EDGE_VALUES] + [[(n, v)] for n in t.PARAM_NAMES for v in t.EDGE_VALUES[:40]]:
    records.append(t._record(t._query(items)))
e = t._enricher()
with t.pytest.MonkeyPatch.context() as patch:
    for fused in (True, False):
        patch.setattr(pipeline, "FUSED", fused)
        t._fresh_ids()
        out = [t._shape(o) for r in records for o in e.enrich_record(r)]
        if fused:
            first = out
print("same", first == out, len(out))
"""
    env = dict(os.environ, PYTHONMALLOC="debug", PLOWLINE_SHARED=str(SHARED))
    done = subprocess.run(
        [PYTHON, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "same True" in done.stdout, done.stdout
