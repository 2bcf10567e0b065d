"""The resolver: which repository answers, what is cached, and how it fails."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from iglu_registry import DATA, Registry, closed_port, serve_registry

from plowline.errors import StoreUnavailableError
from plowline.iglu import (
    HttpRepository,
    LocalRepository,
    RegistryUnreachableError,
    Resolver,
    SchemaKey,
    SchemaNotFoundError,
)
from plowline.iglu.validation import check_self_describing

CLICK = SchemaKey.parse("iglu:com.acme/click/jsonschema/1-0-0")
SERVED = SchemaKey.parse("iglu:com.acme/served/jsonschema/1-0-0")
CLICK_PATH = "/schemas/com.acme/click/jsonschema/1-0-0"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> Iterator[Registry]:
    with serve_registry(DATA / "http_registry") as running:
        yield running


def local(name: str, folder: str, priority: int = 0, *prefixes: str) -> LocalRepository:
    return LocalRepository(name, priority, tuple(prefixes), root=DATA / folder)


def test_lower_priority_number_is_asked_first() -> None:
    resolver = Resolver([local("A", "local_a", 5), local("B", "local_b", 1)])
    assert resolver.lookup(CLICK)["description"] == "click, from local_b"


def test_configuration_order_breaks_priority_ties() -> None:
    resolver = Resolver([local("A", "local_a", 1), local("B", "local_b", 1)])
    assert resolver.lookup(CLICK)["description"] == "click, from local_a"


def test_vendor_prefix_match_beats_priority() -> None:
    resolver = Resolver(
        [local("B", "local_b", 0), local("A", "local_a", 9, "com.acme")]
    )
    assert resolver.lookup(CLICK)["description"] == "click, from local_a"
    assert [r.name for r in resolver.ordered(CLICK)] == ["A", "Plowline embedded", "B"]


def test_embedded_folders_come_before_http(registry: Registry) -> None:
    http = HttpRepository("H", 0, (), uri=registry.url)
    resolver = Resolver([http, local("A", "local_a", 10)])
    assert resolver.lookup(CLICK)["description"] == "click, from local_a"
    assert registry.requests == {}


def test_later_repository_answers_when_first_lacks_schema() -> None:
    resolver = Resolver([local("A", "local_a"), local("B", "local_b")])
    key = SchemaKey.parse("iglu:com.acme/only_b/jsonschema/1-0-0")
    assert resolver.lookup(key)["description"] == "only in local_b"


def test_exact_version_is_resolved_never_another() -> None:
    resolver = Resolver([local("A", "local_a")])
    newer = SchemaKey.parse("iglu:com.acme/click/jsonschema/1-0-1")
    assert resolver.lookup(newer)["self"]["version"] == "1-0-1"
    with pytest.raises(SchemaNotFoundError):
        resolver.lookup(SchemaKey.parse("iglu:com.acme/click/jsonschema/1-0-2"))


def test_http_registry_serves_and_is_cached(registry: Registry) -> None:
    resolver = Resolver([HttpRepository("H", 0, (), uri=registry.url + "/")])
    for _ in range(5):
        assert resolver.lookup(SERVED)["description"] == "served over HTTP"
        resolver.validator(SERVED)
    assert registry.requests == {"/schemas/com.acme/served/jsonschema/1-0-0": 1}


def test_apikey_is_sent_as_header(registry: Registry) -> None:
    registry.apikey = "secret-key"
    good = Resolver([HttpRepository("H", 0, (), uri=registry.url, apikey="secret-key")])
    assert good.lookup(SERVED)["type"] == "object"
    assert registry.headers[-1]["apikey"] == "secret-key"

    bad = Resolver([HttpRepository("H", 0, (), uri=registry.url, apikey="wrong")])
    with pytest.raises(RegistryUnreachableError) as caught:
        bad.lookup(SERVED)
    error = caught.value.lookup_history[-1]["errors"][0]
    assert error["error"] == "ClientFailure"
    assert "HTTP 401" in error["message"]


def test_missing_schema_is_not_found_everywhere(registry: Registry) -> None:
    resolver = Resolver(
        [local("A", "local_a"), HttpRepository("H", 0, (), uri=registry.url)]
    )
    key = SchemaKey.parse("iglu:com.acme/nothing/jsonschema/1-0-0")
    with pytest.raises(SchemaNotFoundError) as caught:
        resolver.lookup(key)
    history = caught.value.lookup_history
    assert [entry["repository"] for entry in history] == ["Plowline embedded", "A", "H"]
    assert all(entry["errors"] == [{"error": "NotFound"}] for entry in history)
    assert not isinstance(caught.value, StoreUnavailableError)
    assert str(caught.value) == (
        "schema iglu:com.acme/nothing/jsonschema/1-0-0 not found in "
        "Plowline embedded, A, H"
    )


def test_closed_port_is_unreachable_not_missing() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    resolver = Resolver([HttpRepository("Down", 0, (), uri=url)])
    with pytest.raises(RegistryUnreachableError) as caught:
        resolver.lookup(CLICK)
    assert isinstance(caught.value, StoreUnavailableError)
    entry = caught.value.lookup_history[-1]
    assert entry["repository"] == "Down"
    assert entry["errors"][0]["error"] == "RepoFailure"
    assert entry["errors"][0]["message"].startswith(f"registry unreachable: {url}")
    assert "Down: registry unreachable" in str(caught.value)


def test_server_error_is_a_repository_failure(registry: Registry) -> None:
    registry.status = 503
    resolver = Resolver([HttpRepository("H", 0, (), uri=registry.url)])
    with pytest.raises(RegistryUnreachableError, match="answered HTTP 503"):
        resolver.lookup(SERVED)


def test_failure_is_retried_after_the_delay(registry: Registry) -> None:
    clock = Clock()
    registry.status = 500
    http = HttpRepository("H", 0, (), uri=registry.url)
    resolver = Resolver([http], retry_after=30, clock=clock)
    served_path = "/schemas/com.acme/served/jsonschema/1-0-0"
    for _ in range(3):
        with pytest.raises(RegistryUnreachableError):
            resolver.lookup(SERVED)
    assert registry.requests[served_path] == 1

    clock.now += 31
    with pytest.raises(RegistryUnreachableError) as caught:
        resolver.lookup(SERVED)
    assert caught.value.lookup_history[-1]["attempts"] == 2
    assert registry.requests[served_path] == 2

    registry.status = None
    clock.now += 31
    assert resolver.lookup(SERVED)["description"] == "served over HTTP"
    assert registry.requests[served_path] == 3


def test_not_found_is_cached_for_the_delay_too(registry: Registry) -> None:
    clock = Clock()
    resolver = Resolver(
        [HttpRepository("H", 0, (), uri=registry.url)], retry_after=10, clock=clock
    )
    key = SchemaKey.parse("iglu:com.acme/later/jsonschema/1-0-0")
    path = "/schemas/com.acme/later/jsonschema/1-0-0"
    for _ in range(3):
        with pytest.raises(SchemaNotFoundError):
            resolver.lookup(key)
    clock.now += 11
    with pytest.raises(SchemaNotFoundError):
        resolver.lookup(key)
    assert registry.requests[path] == 2


def test_cache_ttl_expires_found_schemas(registry: Registry) -> None:
    clock = Clock()
    resolver = Resolver(
        [HttpRepository("H", 0, (), uri=registry.url)], cache_ttl=60, clock=clock
    )
    resolver.lookup(SERVED)
    clock.now += 59
    resolver.lookup(SERVED)
    clock.now += 2
    resolver.lookup(SERVED)
    assert sum(registry.requests.values()) == 2


def test_cache_keeps_the_most_recent_entries(registry: Registry) -> None:
    resolver = Resolver([HttpRepository("H", 0, (), uri=registry.url)], cache_size=1)
    resolver.lookup(SERVED)
    resolver.lookup(CLICK)  # evicts SERVED
    resolver.lookup(CLICK)
    resolver.lookup(SERVED)
    assert registry.requests == {
        CLICK_PATH: 1,
        "/schemas/com.acme/served/jsonschema/1-0-0": 2,
    }


def test_cache_size_zero_asks_every_time(registry: Registry) -> None:
    resolver = Resolver([HttpRepository("H", 0, (), uri=registry.url)], cache_size=0)
    for _ in range(3):
        resolver.lookup(SERVED)
    assert sum(registry.requests.values()) == 3


def test_schema_that_is_not_json_is_a_repository_failure() -> None:
    resolver = Resolver([local("B", "local_b")])
    with pytest.raises(RegistryUnreachableError, match="is not JSON"):
        resolver.lookup(SchemaKey.parse("iglu:com.acme/broken/jsonschema/1-0-0"))


def test_default_resolver_has_the_wrappers_only() -> None:
    resolver = Resolver.default()
    contexts = SchemaKey.parse(
        "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
    )
    assert resolver.lookup(contexts)["self"]["name"] == "contexts"
    with pytest.raises(SchemaNotFoundError):
        resolver.lookup(CLICK)
    assert [r.name for r in resolver.repositories] == ["Plowline embedded"]


SERVED_URI = "iglu:com.acme/served/jsonschema/1-0-0"
GOOD = {"schema": SERVED_URI, "data": {"id": "0b0b0b0b-1111-4222-8333-444444444444"}}


def test_valid_data_is_checked_once_while_its_schema_is_cached(
    registry: Registry,
) -> None:
    clock = Clock()
    resolver = Resolver(
        [HttpRepository("H", 0, (), uri=registry.url)], cache_ttl=60, clock=clock
    )
    data = orjson.dumps(GOOD["data"])
    assert not resolver.known_valid(SERVED_URI, data)
    assert check_self_describing(resolver, GOOD) is None
    assert resolver.known_valid(SERVED_URI, data)
    # Other data, or the same data under another schema, is not known.
    assert not resolver.known_valid(SERVED_URI, orjson.dumps({"id": "x"}))
    assert not resolver.known_valid("iglu:com.acme/click/jsonschema/1-0-0", data)
    clock.now += 61  # the schema's entry expired: so did the verdict
    assert not resolver.known_valid(SERVED_URI, data)
    assert check_self_describing(resolver, GOOD) is None
    assert sum(registry.requests.values()) == 2


def test_invalid_data_is_never_remembered(registry: Registry) -> None:
    resolver = Resolver([HttpRepository("H", 0, (), uri=registry.url)])
    bad = {"schema": SERVED_URI, "data": {"id": 42}}
    for _ in range(2):
        problem = check_self_describing(resolver, bad)
        assert problem is not None
        assert problem["error"]["error"] == "ValidationError"
    assert not resolver.known_valid(SERVED_URI, orjson.dumps(bad["data"]))
    # A schema that is not found is never a verdict either.
    missing = {"schema": "iglu:com.acme/missing/jsonschema/1-0-0", "data": {}}
    assert check_self_describing(resolver, missing) is not None
    assert not resolver.known_valid(missing["schema"], b"{}")


def test_cache_size_zero_remembers_no_verdict(registry: Registry) -> None:
    resolver = Resolver([HttpRepository("H", 0, (), uri=registry.url)], cache_size=0)
    for _ in range(2):
        assert check_self_describing(resolver, GOOD) is None
    assert not resolver.known_valid(SERVED_URI, orjson.dumps(GOOD["data"]))
    assert sum(registry.requests.values()) == 2
