"""Input that cannot be enriched becomes a failed event that says why."""

from __future__ import annotations

import gzip
import uuid
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plowline.enrich import files
from plowline.enrich.failed import FailedEvent
from plowline.enrich.pipeline import EnrichedEvent, Enricher
from plowline.rawlog.record import RawRecord, decode_record, encode_record

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def record(
    path: str = "/i",
    query: str | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
) -> RawRecord:
    return RawRecord(
        id=str(uuid.uuid4()),
        tstamp=1796398150600,
        collector="plowline-test",
        method="POST" if body is not None else "GET",
        path=path,
        querystring=query.encode() if query is not None else None,
        body=body,
        content_type=content_type,
        ip="203.0.113.9",
        useragent="test-agent",
        network_userid="c5f3a09f-75f8-4309-bec5-fea560f78455",
    )


def post(*events: object, content_type: str = "application/json") -> RawRecord:
    body = orjson.dumps({"schema": PAYLOAD_DATA, "data": list(events)})
    return record(TP2, body=body, content_type=content_type)


def enrich(raw: RawRecord) -> list[EnrichedEvent | FailedEvent]:
    return Enricher().enrich_record(raw)


def only_failure(raw: RawRecord) -> FailedEvent:
    [outcome] = enrich(raw)
    assert isinstance(outcome, FailedEvent)
    return outcome


def test_bad_field_values_are_all_named() -> None:
    failed = only_failure(record(query="e=pv&p=web&tv=t&vid=a&res=76xEE&eid=nope"))
    assert failed.type == "schema_violations"
    fields = {m["field"]: m["value"] for m in failed.failure["messages"]}
    assert fields == {"vid": "a", "res": "76xEE", "eid": "nope"}
    assert "vid" in failed.reason and "'a'" in failed.reason
    assert failed.payload["raw"]["parameters"][0] == {"name": "e", "value": "pv"}


def test_unknown_event_type_is_a_schema_violation() -> None:
    failed = only_failure(record(query="e=lol&p=web&tv=t"))
    assert failed.type == "schema_violations"
    assert failed.failure["messages"][0]["field"] == "e"
    assert failed.failure["messages"][0]["value"] == "lol"


def test_unsupported_platform_is_rejected() -> None:
    failed = only_failure(record(query="e=pv&p=mobile&tv=t"))
    assert failed.failure["messages"][0] == {
        "field": "p",
        "value": "mobile",
        "expectation": failed.failure["messages"][0]["expectation"],
    }


def test_missing_event_type_fails_enrichment() -> None:
    failed = only_failure(record(query="p=web&tv=t&aid=x"))
    assert failed.type == "enrichment_failures"
    # enrichment_failures 2-0-1: each message says which enrichment failed
    # (none: a base step) and how.
    assert failed.failure["messages"] == [
        {
            "enrichment": None,
            "message": {
                "field": "e",
                "value": None,
                "expectation": "an event type: the e parameter is missing",
            },
        }
    ]
    assert failed.payload["enriched"]["app_id"] == "x"


def test_retired_ad_impression_fails_enrichment() -> None:
    failed = only_failure(record(query="e=ad&p=web&tv=t"))
    assert failed.type == "enrichment_failures"
    assert failed.payload["enriched"]["event"] == "ad_impression"


def test_broken_base64_context_names_the_parameter() -> None:
    failed = only_failure(record(query="e=pv&p=web&tv=t&cx=%%%%"))
    assert failed.failure["messages"][0]["field"] == "cx"


def test_contexts_that_are_not_self_describing_fail() -> None:
    failed = only_failure(record(query='e=pv&p=web&tv=t&co={"data":[1]}'))
    assert failed.type == "schema_violations"
    assert failed.failure["messages"][0]["field"] == "co"


def test_unstruct_event_without_payload_fails() -> None:
    failed = only_failure(record(query="e=ue&p=web&tv=t"))
    assert failed.type == "enrichment_failures"


def test_unknown_path_is_an_adapter_failure() -> None:
    failed = only_failure(record(path="/not-ice.png/x/y", query="e=pv"))
    assert failed.type == "adapter_failures"
    assert failed.payload["rawRecord"]["path"] == "/not-ice.png/x/y"


def test_pixel_without_querystring_is_an_adapter_failure() -> None:
    failed = only_failure(record(path="/i"))
    assert failed.type == "adapter_failures"
    assert "querystring is empty" in failed.reason


def test_post_with_html_content_type_is_a_protocol_violation() -> None:
    event = {"e": "pv", "p": "web", "tv": "t"}
    failed = only_failure(post(event, content_type="text/html"))
    assert failed.type == "tracker_protocol_violations"
    assert failed.failure["messages"][0]["field"] == "contentType"


def test_post_body_that_is_not_json_keeps_the_body() -> None:
    failed = only_failure(
        record(TP2, body=b"{not json", content_type="application/json")
    )
    assert failed.type == "tracker_protocol_violations"
    assert failed.payload["body"] == "{not json"
    assert decode_record(orjson.dumps(failed.payload["rawRecord"])).body == b"{not json"


def test_one_bad_event_in_a_batch_fails_alone() -> None:
    good = {"e": "pv", "p": "web", "tv": "t", "page": "ok"}
    bad = {"e": "pv", "p": "web", "tv": "t", "vid": 3}
    outcomes = enrich(post(good, bad, good))
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["EnrichedEvent", "FailedEvent", "EnrichedEvent"]
    failed = outcomes[1]
    assert isinstance(failed, FailedEvent)
    assert failed.failure["messages"] == [
        {"field": "data[1].vid", "value": 3, "expectation": "a string"}
    ]
    # The failed event carries only its own event, ready to replay alone.
    assert orjson.loads(failed.payload["body"])["data"] == [bad]


def test_querystring_wins_over_body_in_a_post() -> None:
    body = orjson.dumps(
        {
            "schema": PAYLOAD_DATA,
            "data": [{"e": "pv", "p": "web", "tv": "t", "aid": "body"}],
        }
    )
    raw = record(TP2, query="aid=query", body=body, content_type="application/json")
    [event] = enrich(raw)
    assert isinstance(event, EnrichedEvent)
    assert event["app_id"] == "query"


def test_gzip_post_body_is_read() -> None:
    body = gzip.compress(
        orjson.dumps(
            {"schema": PAYLOAD_DATA, "data": [{"e": "pv", "p": "web", "tv": "t"}]}
        )
    )
    [event] = enrich(record(TP2, body=body, content_type="text/plain;charset=UTF-8"))
    assert isinstance(event, EnrichedEvent)
    assert event["event"] == "page_view"


def test_line_that_is_not_a_record_keeps_its_text() -> None:
    [failed] = Enricher().enrich_line(
        b"garbage\tline", source="raw.jsonl", line_number=7
    )
    assert isinstance(failed, FailedEvent)
    assert failed.type == "collector_payload_format_violation"
    document = orjson.loads(failed.to_json())
    assert document["data"]["payload"] == "garbage\tline"
    assert document["data"]["failure"]["source"] == {"file": "raw.jsonl", "line": 7}
    assert document["schema"].startswith(
        "iglu:com.snowplowanalytics.snowplow.badrows/"
        "collector_payload_format_violation/"
    )


events_strategy = st.lists(
    st.dictionaries(
        st.sampled_from(
            [
                "e",
                "p",
                "tv",
                "aid",
                "vid",
                "res",
                "se_va",
                "eid",
                "dtm",
                "ue_pr",
                "cx",
                "url",
                "zz",
            ]
        ),
        st.one_of(
            st.text(max_size=20),
            st.integers(-(2**63), 2**63 - 1),
            st.none(),
            st.sampled_from(["pv", "se", "web", "1", "3x4", "1700000000000"]),
        ),
        max_size=8,
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(events=events_strategy)
def test_each_event_of_a_batch_gives_one_outcome(events: list[dict]) -> None:
    outcomes = enrich(post(*events))
    assert len(outcomes) == len(events)
    for outcome in outcomes:
        if isinstance(outcome, EnrichedEvent):
            assert len(outcome.to_tsv().split("\t")) == 131
        else:
            assert outcome.reason


@settings(max_examples=150, deadline=None)
@given(
    line=st.binary(max_size=300),
    query=st.text(max_size=80),
    path=st.sampled_from(["/i", TP2, "/r/tp2", "/x", "/a/b/c"]),
)
def test_any_input_gives_outcomes_and_never_raises(
    line: bytes, query: str, path: str
) -> None:
    assert len(Enricher().enrich_line(line)) == 1
    raw = record(path, query=query, body=line or None, content_type="application/json")
    outcomes = enrich(raw)
    assert outcomes
    for outcome in outcomes:
        if isinstance(outcome, EnrichedEvent):
            fields = outcome.to_tsv().split("\t")
            assert len(fields) == 131
            assert not any("\n" in f or "\r" in f for f in fields)
        else:
            orjson.loads(outcome.to_json())
    assert decode_record(encode_record(raw)) == raw


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_lines_name_their_line_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, packed: bool, workers: int
) -> None:
    """Chunks are numbered from their first line where they are enriched (a
    worker reading a range of a file does not know how many lines came
    before); the failed events still name each line of each file."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 700)
    good = encode_record(record("/i", query="e=pv&p=web&tv=t&aid=x"))
    expected: dict[str, list[int]] = {}
    inputs = []
    for name in ("a", "b"):
        lines = [b"", b"  "]  # blank lines first: the format is judged later
        for n in range(40):
            lines.append(b"broken %s %d" % (name.encode(), n) if n % 7 == 3 else good)
        text = b"\n".join(line.rstrip(b"\n") for line in lines) + b"\n"
        path = tmp_path / f"{name}.jsonl"
        if packed:
            path = path.with_suffix(".jsonl.gz")
            path.write_bytes(gzip.compress(text))
        else:
            path.write_bytes(text)
        inputs.append(str(path))
        expected[str(path)] = [
            i + 1 for i, line in enumerate(lines) if line.startswith(b"broken")
        ]
    bad = tmp_path / "bad.jsonl"
    stats = files.enrich_files(
        inputs, str(tmp_path / "good.tsv"), str(bad), workers=workers
    )
    found: dict[str, list[int]] = {}
    for line in bad.read_bytes().splitlines():
        source = orjson.loads(line)["data"]["failure"]["source"]
        found.setdefault(source["file"], []).append(source["line"])
    assert found == expected
    assert stats.failed == 12 and stats.enriched == 68
    assert (tmp_path / "good.tsv").read_bytes().count(b"\n") == 68


@pytest.mark.skipif(
    not hasattr(__import__("fcntl"), "F_GETPIPE_SZ"), reason="Linux pipes only"
)
def test_worker_results_come_back_through_a_wide_pipe() -> None:
    """The pool's result pipe is widened (a chunk's result in a few reads):
    checked on the pool itself, so that a Python whose pool has no such pipe
    any more shows here rather than as a slower run."""
    import fcntl
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from plowline.enrich import files

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        reader = pool._result_queue._reader  # type: ignore[attr-defined]
        before = fcntl.fcntl(reader.fileno(), fcntl.F_GETPIPE_SZ)
        files._widen_result_pipe(pool)
        after = fcntl.fcntl(reader.fileno(), fcntl.F_GETPIPE_SZ)
    limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    assert before < files.RESULT_PIPE_BYTES
    assert after == min(files.RESULT_PIPE_BYTES, limit)
