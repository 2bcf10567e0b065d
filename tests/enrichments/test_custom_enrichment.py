"""Python enrichment: a user's function from a file, its results as derived
contexts, and its faults as failed events."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft4Validator

from plowline.enrich.enrichments.base import EnrichmentError, EnrichmentInput, Event
from plowline.enrich.enrichments.custom import PythonEnrichment
from plowline.errors import ConfigurationError
from plowline.rawlog.record import RawRecord

REPO = Path(__file__).resolve().parent.parent.parent
DATA = REPO / "tests" / "data" / "enrichments-more"
CONFIG = DATA / "configs" / "python_enrichment_config.json"
USER_FILE = str(DATA / "enrich_ok.py")
EMBEDDED = REPO / "src" / "plowline" / "iglu" / "embedded" / "schemas"
RECORD = RawRecord(
    id="r1", tstamp=0, collector="t", method="GET", path="/i",
    headers=(("Host", "t.example.com"), ("Cookie", "sp=1")),
)  # fmt: skip
CX = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
UE = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"


def build(function: str = "process", **config: Any) -> PythonEnrichment:
    parameters = {"file": USER_FILE, "function": function, "config": config}
    return PythonEnrichment.from_parameters(parameters, source="py.json")


def run(enrichment: PythonEnrichment, event: Event) -> EnrichmentInput:
    inp = EnrichmentInput({}, RECORD)
    enrichment.enrich(event, inp)
    return inp


def sample_event() -> Event:
    entity = {"schema": "iglu:com.acme/user/jsonschema/1-0-0", "data": {"id": 1}}
    inner = {"schema": "iglu:com.acme/signup/jsonschema/1-0-0", "data": {}}
    return {
        "app_id": "shop",
        "contexts": orjson.dumps({"schema": CX, "data": [entity, entity]}).decode(),
        "unstruct_event": orjson.dumps({"schema": UE, "data": inner}).decode(),
    }


def test_example_configuration_adds_a_context() -> None:
    document = json.loads(CONFIG.read_text())
    schema_path = EMBEDDED / document["schema"].removeprefix("iglu:")
    Draft4Validator(json.loads(schema_path.read_text())).validate(document["data"])
    enrichment = PythonEnrichment.from_parameters(
        document["data"]["parameters"], source=str(CONFIG)
    )
    inp = run(enrichment, sample_event())
    assert inp.derived_contexts == [
        {
            "schema": "iglu:com.acme/app_id/jsonschema/1-0-0",
            "data": {
                "appIdUpper": "SHOP-WEB",
                "contexts": 2,
                "unstruct": "iglu:com.acme/signup/jsonschema/1-0-0",
                "headers": ["Host", "Cookie"],
            },
        }
    ]


def test_returning_none_adds_nothing() -> None:
    assert run(build(), {"app_id": None}).derived_contexts == []


def test_function_cannot_change_what_it_was_given() -> None:
    enrichment = build("tamper", keep="me")
    event = sample_event()
    before = dict(event)
    inp = EnrichmentInput(
        {}, RECORD, [{"schema": "iglu:a/b/jsonschema/1-0-0", "data": {}}]
    )
    with pytest.raises(EnrichmentError) as error:
        enrichment.enrich(event, inp)
    # Writing to the read-only fields is what stops it.
    assert error.value.message == {
        "error": "enrich_ok.py:tamper raised TypeError: 'mappingproxy' object does "
        "not support item assignment"
    }
    assert event == before
    assert len(inp.derived_contexts) == 1
    assert enrichment.config == {"keep": "me"}


@pytest.mark.parametrize(
    ("function", "error"),
    [
        ("fails", "enrich_ok.py:fails raised ZeroDivisionError: division by zero"),
        ("wrong_shape", 'enrich_ok.py:wrong_shape must return None or a list of '
         '{"schema": "iglu:...", "data": ...} objects; item 0 is '
         "{'schema': 'not an iglu uri', 'data': {}}"),
        ("not_a_list", 'enrich_ok.py:not_a_list must return None or a list of '
         '{"schema": "iglu:...", "data": ...} objects; returned dict'),
    ],
)  # fmt: skip
def test_user_faults_fail_the_event_not_the_pipeline(function: str, error: str) -> None:
    with pytest.raises(EnrichmentError) as raised:
        run(build(function), sample_event())
    assert raised.value.message == {"error": error}


def test_module_is_loaded_once_per_process() -> None:
    first, second = build(), build()
    assert first.function is second.function


def test_enrichment_pickles_for_worker_processes() -> None:
    copy = pickle.loads(pickle.dumps(build(suffix="!")))
    assert copy.config == {"suffix": "!"}
    assert run(copy, {"app_id": "a"}).derived_contexts[0]["data"]["appIdUpper"] == "A!"


P = "py.json: "


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, P + "parameters.file must be the path of a .py file; found None."),
        ({"file": str(DATA / "rates.csv")}, P + "parameters.file must be the path "
         "of a .py file; found '" + str(DATA / "rates.csv") + "'."),
        ({"file": "/nonexistent/enrich.py"}, P + "the Python file "
         "'/nonexistent/enrich.py' does not exist."),
        ({"file": USER_FILE, "function": "not a name"}, P + "parameters.function "
         "must be a Python function name; found 'not a name'."),
        ({"file": USER_FILE, "function": "missing"}, P + USER_FILE + " defines no "
         "function 'missing' (parameters.function names the function to call)."),
        ({"file": USER_FILE, "function": "not_callable"}, P + USER_FILE + " defines "
         "no function 'not_callable' (parameters.function names the function to "
         "call)."),
        ({"file": USER_FILE, "config": [1]}, P + "parameters.config must be an "
         "object; found [1]."),
        ({"file": str(DATA / "enrich_broken.py")}, P + "loading " +
         str(DATA / "enrich_broken.py") + " failed: RuntimeError: bad import-time "
         "code"),
    ],
    ids=["no-file", "not-python", "missing-file", "bad-function-name",
         "missing-function", "not-callable", "config-not-object", "import-fails"],
)  # fmt: skip
def test_bad_configuration_is_refused(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        PythonEnrichment.from_parameters(parameters, source="py.json")
    assert str(error.value) == message


VIEW_FILE = """
SEEN = []

def look(event, config):
    SEEN.append(event)
    config["calls"] = config.get("calls", 0) + 1
    return [{"schema": "iglu:com.acme/seen/jsonschema/1-0-0", "data": {
        "same_contexts": event.contexts is event.contexts,
        "contexts": len(event.contexts),
        "derived": [d["schema"] for d in event.derived_contexts],
        "unstruct": (event.unstruct_event or {}).get("schema"),
        "calls": config["calls"],
    }}]

def keep(event, config):
    SEEN.append(event)  # reads nothing now
"""


def test_view_is_read_when_asked_and_fixed_at_the_call(tmp_path: Path) -> None:
    user_file = tmp_path / "view_enrichment.py"
    user_file.write_text(VIEW_FILE)
    enrichment = PythonEnrichment.from_parameters(
        {"file": str(user_file), "function": "look", "config": {"calls": 0}},
        source="py.json",
    )
    earlier = {"schema": "iglu:a/b/jsonschema/1-0-0", "data": {"k": 1}}
    for _ in range(2):
        event = sample_event()
        inp = EnrichmentInput({}, RECORD, [earlier])
        enrichment.enrich(event, inp)
        # A fresh copy of config per call: the function's change does not stay.
        assert inp.derived_contexts[1]["data"] == {
            "same_contexts": True,
            "contexts": 2,
            "derived": ["iglu:a/b/jsonschema/1-0-0"],
            "unstruct": "iglu:com.acme/signup/jsonschema/1-0-0",
            "calls": 1,
        }
    assert enrichment.config == {"calls": 0}
    # A view kept past its call, and read only then, shows the event as it was
    # at the call, whatever happened to the event afterwards.
    keeper = PythonEnrichment.from_parameters(
        {"file": str(user_file), "function": "keep"}, source="py.json"
    )
    event = sample_event()
    inp = EnrichmentInput({}, RECORD, [earlier])
    keeper.enrich(event, inp)
    module = __import__("sys").modules[keeper.function.__module__]
    kept = module.SEEN[-1]
    event["app_id"] = event["contexts"] = event["unstruct_event"] = None
    inp.derived_contexts.clear()
    assert kept.fields["app_id"] == "shop"
    assert len(kept.contexts) == 2
    assert kept.derived_contexts == [earlier]
    assert kept.derived_contexts[0] is not earlier  # a copy
    assert kept.unstruct_event["schema"] == "iglu:com.acme/signup/jsonschema/1-0-0"
    with pytest.raises(AttributeError):
        kept.contexts = []


def test_changed_config_reaches_the_next_call() -> None:
    enrichment = build(suffix="!")
    enrichment.config = {"suffix": "?"}
    assert run(enrichment, {"app_id": "a"}).derived_contexts[0]["data"][
        "appIdUpper"
    ] == ("A?")
