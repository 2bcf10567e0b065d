"""Checking data against schemas: the messages, paths, keywords and targets."""

from __future__ import annotations

from typing import Any

import pytest
from iglu_registry import DATA, IGLU_CENTRAL, require_shared

from plowline.iglu import (
    LocalRepository,
    Resolver,
    SchemaKey,
    check,
    check_self_describing,
)
from plowline.iglu.draft4 import MAX_REPORTS, json_path

CLICK = "iglu:com.acme/click/jsonschema/1-0-0"


@pytest.fixture(scope="module")
def resolver() -> Resolver:
    return Resolver([LocalRepository("B", 0, (), root=DATA / "local_b")])


def reports(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    assert message is not None
    assert message["error"]["error"] == "ValidationError"
    return list(message["error"]["dataReports"])


def test_valid_data_gives_no_message(resolver: Resolver) -> None:
    data = {"target": "home", "count": 2, "tags": ["a"], "when": "2026-01-02T03:04:05Z"}
    assert check(resolver, SchemaKey.parse(CLICK), data) is None


def test_nested_error_names_json_path(resolver: Resolver) -> None:
    data = {"target": "home", "tags": ["a", 7], "nested": {"weird key": 1}}
    message = check(resolver, SchemaKey.parse(CLICK), data)
    assert message is not None and message["schemaKey"] == CLICK
    assert reports(message) == [
        {
            "message": "$.nested['weird key']: 1 is not of type 'string'",
            "path": "$.nested['weird key']",
            "keyword": "type",
            "targets": ["string"],
        },
        {
            "message": "$.tags[1]: 7 is not of type 'string'",
            "path": "$.tags[1]",
            "keyword": "type",
            "targets": ["string"],
        },
    ]


def test_missing_and_extra_properties_are_targets(resolver: Resolver) -> None:
    message = check(resolver, SchemaKey.parse(CLICK), {"count": -1, "colour": "red"})
    assert reports(message) == [
        {
            "message": "$: Additional properties are not allowed "
            "('colour' was unexpected)",
            "path": "$",
            "keyword": "additionalProperties",
            "targets": ["colour"],
        },
        {
            "message": "$.target: is missing but required",
            "path": "$",
            "keyword": "required",
            "targets": ["target"],
        },
        {
            "message": "$.count: -1 is less than the minimum of 0",
            "path": "$.count",
            "keyword": "minimum",
            "targets": None,
        },
    ]


@pytest.mark.parametrize(
    "when",
    ["2026-13-01T00:00:00Z", "yesterday", "2026-01-01T00:00:00"],
)
def test_date_time_format_is_checked(resolver: Resolver, when: str) -> None:
    message = check(resolver, SchemaKey.parse(CLICK), {"target": "x", "when": when})
    [report] = reports(message)
    assert (report["path"], report["keyword"]) == ("$.when", "format")
    assert report["message"] == f"$.when: {when!r} is not a 'date-time'"


def test_ref_to_registry_address_uses_the_resolver(resolver: Resolver) -> None:
    key = SchemaKey.parse("iglu:com.acme/refers/jsonschema/1-0-0")
    assert check(resolver, key, {"click": {"target": "ok"}}) is None
    [report] = reports(check(resolver, key, {"click": {"target": 3}}))
    assert report["path"] == "$.click.target"


def test_ref_outside_registries_is_a_schema_issue(resolver: Resolver) -> None:
    key = SchemaKey.parse("iglu:com.acme/remote_ref/jsonschema/1-0-0")
    message = check(resolver, key, {"x": 1})
    assert message == {
        "schemaKey": str(key),
        "error": {
            "error": "ValidationError",
            "schemaIssues": [
                {
                    "path": "$",
                    "message": "cannot resolve $ref "
                    "'http://example.invalid/elsewhere.json#'",
                }
            ],
        },
    }


def test_invalid_schema_gives_schema_issues(resolver: Resolver) -> None:
    key = SchemaKey.parse("iglu:com.acme/invalid_schema/jsonschema/1-0-0")
    message = check(resolver, key, {})
    assert message is not None
    [issue] = message["error"]["schemaIssues"]
    assert issue["path"] == "$.type"
    assert "'objekt' is not valid" in issue["message"]


def test_missing_schema_gives_resolution_error(resolver: Resolver) -> None:
    key = SchemaKey.parse("iglu:com.acme/absent/jsonschema/1-0-0")
    message = check(resolver, key, {})
    assert message is not None
    assert message["schemaKey"] == str(key)
    assert message["error"]["error"] == "ResolutionError"
    assert [e["repository"] for e in message["error"]["lookupHistory"]] == [
        "Plowline embedded",
        "B",
    ]


@pytest.mark.parametrize(
    ("instance", "error"),
    [
        ("text", "INVALID_DATA_PAYLOAD"),
        ({"data": {}}, "INVALID_SCHEMA"),
        (
            {"schema": "iglu:com.acme/click/jsonschema/1-0", "data": {}},
            "INVALID_SCHEMAVER",
        ),
        ({"schema": "http://acme/click", "data": {}}, "INVALID_IGLUURI"),
        ({"schema": CLICK}, "INVALID_DATA_PAYLOAD"),
    ],
)
def test_not_self_describing_is_not_iglu(
    resolver: Resolver, instance: Any, error: str
) -> None:
    assert check_self_describing(resolver, instance) == {
        "json": instance,
        "error": error,
    }


def test_many_errors_are_capped_and_counted(resolver: Resolver) -> None:
    data = {"target": "x", "tags": list(range(MAX_REPORTS + 7))}
    found = reports(check(resolver, SchemaKey.parse(CLICK), data))
    assert len(found) == MAX_REPORTS + 1
    assert found[-1]["message"] == "$: 7 more errors not listed"


@pytest.mark.parametrize(
    ("parts", "path"),
    [([], "$"), (["a", 0, "b_c"], "$.a[0].b_c"), (["it's"], "$['it\\'s']")],
)
def test_json_path_text(parts: list[str | int], path: str) -> None:
    assert json_path(parts) == path


def test_iglu_central_link_click_is_enforced() -> None:
    resolver = Resolver(
        [LocalRepository("Iglu Central", 0, (), root=require_shared(IGLU_CENTRAL))]
    )
    key = SchemaKey.parse(
        "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
    )
    assert check(resolver, key, {"targetUrl": "https://example.com/a"}) is None
    [report] = reports(check(resolver, key, {"elementId": "x"}))
    assert report == {
        "message": "$.targetUrl: is missing but required",
        "path": "$",
        "keyword": "required",
        "targets": ["targetUrl"],
    }
