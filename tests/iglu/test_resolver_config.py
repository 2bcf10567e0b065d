"""Resolver configuration files: Snowplow's format, and clear errors for bad ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from iglu_registry import DATA, closed_port, serve_registry

from plowline.errors import ConfigurationError
from plowline.iglu import (
    HttpRepository,
    LocalRepository,
    RegistryUnreachableError,
    SchemaKey,
    load_resolver,
)

CLICK = SchemaKey.parse("iglu:com.acme/click/jsonschema/1-0-0")


def repo(name: str, connection: dict[str, Any], priority: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "priority": priority,
        "vendorPrefixes": [],
        "connection": connection,
    }


def write(tmp_path: Path, data: Any, version: str = "1-0-3") -> Path:
    path = tmp_path / "resolver.json"
    schema = f"iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/{version}"
    path.write_text(json.dumps({"schema": schema, "data": data}))
    return path


def test_snowplow_resolver_file_with_every_kind(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    data = {
        "cacheSize": 10,
        "cacheTtl": 600,
        "repositories": [
            repo("Relative", {"embedded": {"path": "../.."}}),
            repo("File URI", {"http": {"uri": (DATA / "local_a").as_uri()}}),
            repo("Plain path", {"http": {"uri": str(DATA / "local_b")}}),
            repo(
                "Registry", {"http": {"uri": "http://127.0.0.1:9/api", "apikey": None}}
            ),
        ],
    }
    resolver = load_resolver(write(tmp_path, data))
    kinds = [type(r).__name__ for r in resolver.repositories]
    assert kinds == [
        "EmbeddedRepository",
        "LocalRepository",
        "LocalRepository",
        "LocalRepository",
        "HttpRepository",
    ]
    relative, file_uri, plain, http = resolver.repositories[1:]
    assert isinstance(relative, LocalRepository)
    assert relative.root.resolve() == tmp_path.parent.parent.resolve()
    assert isinstance(file_uri, LocalRepository) and file_uri.root == DATA / "local_a"
    assert isinstance(plain, LocalRepository) and plain.root == DATA / "local_b"
    assert isinstance(http, HttpRepository) and http.uri == "http://127.0.0.1:9/api"
    assert (resolver.cache_size, resolver.cache_ttl) == (10, 600)
    assert resolver.lookup(CLICK)["description"] == "click, from local_a"


@pytest.mark.parametrize("version", ["1-0-0", "1-0-1", "1-0-2"])
def test_older_resolver_versions_are_read(tmp_path: Path, version: str) -> None:
    data = {
        "cacheSize": 5,
        "repositories": [repo("B", {"embedded": {"path": str(DATA / "local_b")}})],
    }
    resolver = load_resolver(write(tmp_path, data, version))
    assert resolver.lookup(CLICK)["description"] == "click, from local_b"


def test_no_file_means_embedded_schemas_only() -> None:
    resolver = load_resolver(None)
    assert [r.name for r in resolver.repositories] == ["Plowline embedded"]


def test_configured_http_registry_is_used(tmp_path: Path) -> None:
    with serve_registry(DATA / "http_registry") as registry:
        data = {
            "cacheSize": 5,
            "repositories": [repo("H", {"http": {"uri": registry.url}})],
        }
        resolver = load_resolver(write(tmp_path, data))
        assert resolver.lookup(CLICK)["description"] == "click, from http_registry"
        assert registry.requests == {"/schemas/com.acme/click/jsonschema/1-0-0": 1}


def test_configured_closed_port_fails_quickly(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    data = {"cacheSize": 5, "repositories": [repo("Down", {"http": {"uri": uri}})]}
    resolver = load_resolver(write(tmp_path, data), timeout=2)
    with pytest.raises(RegistryUnreachableError, match="Down: registry unreachable"):
        resolver.lookup(CLICK)


BAD_DATA = [
    pytest.param(
        {"repositories": []},
        "data.cacheSize must be a number of schemas from 0 to 1000000000; "
        "found nothing (the field is missing)",
        id="cache-size-missing",
    ),
    pytest.param(
        {"cacheSize": "big", "repositories": []},
        "data.cacheSize must be a number of schemas from 0 to 1000000000; found 'big'",
        id="cache-size-text",
    ),
    pytest.param(
        {"cacheSize": 1, "cacheTtl": -5, "repositories": []},
        "data.cacheTtl must be an integer number of seconds from 0 to 10000000000, "
        "or null; found -5",
        id="negative-ttl",
    ),
    pytest.param(
        {"cacheSize": 1, "repositories": {}},
        "data.repositories must be an array of repositories; found {}",
        id="repositories-object",
    ),
    pytest.param(
        {"cacheSize": 1, "repositories": [], "cacheSise": 3},
        "data must be only the keys cacheSize, cacheTtl, repositories; "
        'found ["cacheSise"]',
        id="unknown-key",
    ),
    pytest.param(
        {
            "cacheSize": 1,
            "repositories": [{"name": "X", "priority": 0, "vendorPrefixes": []}],
        },
        "data.repositories[0].connection must be exactly one of",
        id="no-connection",
    ),
    pytest.param(
        {
            "cacheSize": 1,
            "repositories": [repo("X", {"http": {"uri": "ftp://host/x"}})],
        },
        "data.repositories[0].connection.http.uri must be an http://, https:// or "
        "file:// URI, or a path; found 'ftp://host/x'",
        id="ftp-uri",
    ),
    pytest.param(
        {"cacheSize": 1, "repositories": [repo("X", {"http": {"url": "http://h"}})]},
        "data.repositories[0].connection.http must be only the keys apikey, uri; "
        'found ["url"]',
        id="http-url-typo",
    ),
    pytest.param(
        {
            "cacheSize": 1,
            "repositories": [
                repo("X", {"embedded": {"path": "a"}, "http": {"uri": "http://h"}})
            ],
        },
        "data.repositories[0].connection must be exactly one of",
        id="two-connections",
    ),
    pytest.param(
        {
            "cacheSize": 1,
            "repositories": [
                {**repo("X", {"embedded": {"path": "a"}}), "priority": "high"}
            ],
        },
        "data.repositories[0].priority must be a number (lower is asked first); "
        "found 'high'",
        id="priority-text",
    ),
    pytest.param(
        {
            "cacheSize": 1,
            "repositories": [
                {**repo("X", {"embedded": {"path": "a"}}), "vendorPrefixes": "com.acme"}
            ],
        },
        "data.repositories[0].vendorPrefixes must be an array of strings; "
        "found 'com.acme'",
        id="prefixes-string",
    ),
    pytest.param(
        {
            "cacheSize": 1,
            "repositories": [
                repo("X", {"embedded": {"path": "a"}}),
                repo("X", {"embedded": {"path": "b"}}),
            ],
        },
        "data.repositories must be unique repository names; found 'X'",
        id="duplicate-names",
    ),
]


@pytest.mark.parametrize(("data", "message"), BAD_DATA)
def test_bad_resolver_data_is_named(tmp_path: Path, data: Any, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigurationError) as caught:
        load_resolver(path)
    assert str(caught.value).startswith(f"Iglu resolver configuration {path}: ")
    assert message in str(caught.value)


def test_resolver_file_with_broken_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "resolver.json"
    path.write_text('{"schema": "iglu:x",\n  "data": {,}}')
    with pytest.raises(ConfigurationError) as caught:
        load_resolver(path)
    assert str(caught.value) == (
        f"{path}: not valid JSON: Expecting property name enclosed in double quotes "
        "at line 2, column 12"
    )


def test_resolver_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"resolver\.json: file not found"):
        load_resolver(tmp_path / "resolver.json")


@pytest.mark.parametrize(
    "schema",
    [
        "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/2-0-0",
        "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-4",
        "iglu:com.snowplowanalytics.snowplow/enrichments/jsonschema/1-0-0",
        "resolver-config",
    ],
)
def test_resolver_file_with_wrong_schema(tmp_path: Path, schema: str) -> None:
    path = tmp_path / "resolver.json"
    path.write_text(
        json.dumps({"schema": schema, "data": {"cacheSize": 1, "repositories": []}})
    )
    with pytest.raises(ConfigurationError) as caught:
        load_resolver(path)
    assert ": schema must be " in str(caught.value)
    assert repr(schema) in str(caught.value)
