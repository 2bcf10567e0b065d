"""Loading enrichment configuration folders: order, skips, and every error named."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from fixture_traffic import SHARED
from plowline.enrich.enrichments.base import Enrichment, EnrichmentInput, Event
from plowline.enrich.enrichments.config import EnrichmentConfigError, load_enrichments
from plowline.enrich.enrichments.registry import enrichment_classes
from plowline.errors import ConfigurationError
from plowline.iglu import LocalRepository, Resolver

IGLU_CENTRAL = SHARED / "data" / "iglu-central"
SP = "iglu:com.snowplowanalytics.snowplow"
SPE = "iglu:com.snowplowanalytics.snowplow.enrichments"


class TestEnrichment(Enrichment):
    __test__ = False  # not a pytest class

    def __init__(self, parameters: dict[str, Any], source: str) -> None:
        self.parameters = parameters
        self.source = source

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> TestEnrichment:
        return cls(parameters, source)

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        pass


class AnonIp(TestEnrichment):
    name = "anon_ip"

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any], *, source: str) -> AnonIp:
        octets = parameters.get("anonOctets")
        if octets not in (1, 2, 3, 4):
            raise ConfigurationError(
                f"{source}: data.parameters.anonOctets: expected 1 to 4, "
                f"found {octets!r}"
            )
        return cls(parameters, source)


class Campaign(TestEnrichment):
    name = "campaign_attribution"


class UaParser(TestEnrichment):
    name = "ua_parser_config"


class Pii(TestEnrichment):
    name = "pii_enrichment_config"
    accepts = ("2-0-*",)


class Careless(TestEnrichment):
    name = "event_fingerprint_config"

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any], *, source: str) -> Careless:
        parameters["hashAlgorithm"].upper()
        return cls(parameters, source)


CLASSES: dict[str, type[Enrichment]] = {
    c.name: c for c in (AnonIp, Campaign, UaParser, Pii, Careless)
}


def config(schema: str, name: str, parameters: Any, enabled: bool = True) -> Any:
    return {
        "schema": schema,
        "data": {
            "vendor": "com.snowplowanalytics.snowplow",
            "name": name,
            "enabled": enabled,
            "parameters": parameters,
        },
    }


def write(folder: Path, filename: str, document: Any) -> Path:
    path = folder / filename
    text = document if isinstance(document, str) else json.dumps(document, indent=2)
    path.write_text(text)
    return path


def problems(folder: Path, resolver: Resolver | None = None) -> list[str]:
    with pytest.raises(EnrichmentConfigError) as caught:
        load_enrichments(folder, resolver, classes=CLASSES)
    assert isinstance(caught.value, ConfigurationError)
    return caught.value.problems


@pytest.fixture
def central() -> Resolver:
    if not IGLU_CENTRAL.is_dir():
        message = (
            f"Iglu Central schemas not found in {IGLU_CENTRAL} (set PLOWLINE_SHARED)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Resolver([LocalRepository("Iglu Central", 0, (), root=IGLU_CENTRAL)])


def test_enabled_enrichments_in_snowplow_order(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a_anon.json",
        config(f"{SP}/anon_ip/jsonschema/1-0-1", "anon_ip", {"anonOctets": 2}),
    )
    write(
        tmp_path,
        "b_campaign.json",
        config(
            f"{SP}/campaign_attribution/jsonschema/1-0-0", "campaign_attribution", {}
        ),
    )
    write(
        tmp_path,
        "c_ua.json",
        config(f"{SP}/ua_parser_config/jsonschema/1-0-0", "ua_parser_config", {}),
    )
    write(tmp_path, "notes.txt", "not a configuration")
    loaded = load_enrichments(tmp_path, classes=CLASSES)
    assert [e.name for e in loaded] == [
        "ua_parser_config",
        "campaign_attribution",
        "anon_ip",
    ]
    anon = loaded[-1]
    assert isinstance(anon, AnonIp)
    assert anon.parameters == {"anonOctets": 2}
    assert anon.source == str(tmp_path / "a_anon.json")


def test_disabled_and_unknown_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(
        tmp_path,
        "anon.json",
        config(
            f"{SP}/anon_ip/jsonschema/1-0-0",
            "anon_ip",
            {"anonOctets": 9},
            enabled=False,
        ),
    )
    write(
        tmp_path,
        "weather.json",
        config(
            f"{SPE}/weather_enrichment_config/jsonschema/1-0-0",
            "weather_enrichment_config",
            {},
        ),
    )
    with caplog.at_level(logging.WARNING):
        assert load_enrichments(tmp_path, classes=CLASSES) == []
    [record] = caplog.records
    assert record.getMessage().startswith(
        f"{tmp_path / 'weather.json'}: unknown enrichment "
        "'weather_enrichment_config' is ignored"
    )


def test_combined_enrichments_file(tmp_path: Path) -> None:
    combined = {
        "schema": f"{SP}/enrichments/jsonschema/1-0-0",
        "data": [
            config(f"{SP}/anon_ip/jsonschema/1-0-0", "anon_ip", {"anonOctets": 1}),
            config(
                f"{SPE}/pii_enrichment_config/jsonschema/2-0-0",
                "pii_enrichment_config",
                {},
            ),
        ],
    }
    write(tmp_path, "enrichments.json", combined)
    loaded = load_enrichments(tmp_path, classes=CLASSES)
    assert [e.name for e in loaded] == ["anon_ip", "pii_enrichment_config"]
    assert isinstance(loaded[1], Pii)
    assert loaded[1].source == f"{tmp_path / 'enrichments.json'} data[1]"


def test_broken_json_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "anon.json", '{\n  "schema": "x",\n  "data": {\n}')
    assert problems(tmp_path) == [
        f"{path}: not valid JSON: Expecting ',' delimiter at line 4, column 2"
    ]


BAD_ENTRIES = [
    pytest.param(
        {"data": {"name": "anon_ip", "enabled": True}},
        "schema: missing; expected an Iglu URI such as "
        "iglu:com.snowplowanalytics.snowplow/anon_ip/jsonschema/1-0-1",
        id="schema-missing",
    ),
    pytest.param(
        config("iglu:com.snowplowanalytics.snowplow/anon_ip/1-0-0", "anon_ip", {}),
        "schema: 'iglu:com.snowplowanalytics.snowplow/anon_ip/1-0-0' is not an Iglu "
        "schema URI: expected iglu:vendor/name/format/MODEL-REVISION-ADDITION",
        id="schema-without-format",
    ),
    pytest.param(
        {
            "schema": f"{SP}/anon_ip/jsonschema/1-0-0",
            "data": {"enabled": True, "parameters": {}},
        },
        "data.name: missing; expected the enrichment name, a string",
        id="name-missing",
    ),
    pytest.param(
        {
            "schema": f"{SP}/anon_ip/jsonschema/1-0-0",
            "data": {"name": "anon_ip", "enabled": "yes"},
        },
        'data.enabled: expected true or false, found "yes"',
        id="enabled-text",
    ),
    pytest.param(
        {"schema": f"{SP}/anon_ip/jsonschema/1-0-0", "data": {"name": "anon_ip"}},
        "data.enabled: missing; expected true or false",
        id="enabled-missing",
    ),
    pytest.param(
        config(f"{SP}/anon_ip/jsonschema/1-0-0", "anon_ip", [1, 2]),
        "data.parameters: expected an object, found [1, 2]",
        id="parameters-array",
    ),
    pytest.param(
        config(f"{SP}/anon_ip/jsonschema/1-0-0", "ua_parser_config", {}),
        f"schema: {SP}/anon_ip/jsonschema/1-0-0 is the schema of 'anon_ip', "
        "but data.name is 'ua_parser_config'",
        id="schema-of-another-enrichment",
    ),
    pytest.param(
        config(f"{SP}/anon_ip/jsonschema/2-0-0", "anon_ip", {"anonOctets": 1}),
        "schema: version 2-0-0 of anon_ip is not supported; expected 1-0-*",
        id="version-not-accepted",
    ),
    pytest.param(
        config(
            f"{SPE}/pii_enrichment_config/jsonschema/1-0-0", "pii_enrichment_config", {}
        ),
        "schema: version 1-0-0 of pii_enrichment_config is not supported; "
        "expected 2-0-*",
        id="old-pii-version",
    ),
    pytest.param(
        config(f"{SP}/anon_ip/jsonschema/1-0-0", "anon_ip", {"anonOctets": 7}),
        "data.parameters.anonOctets: expected 1 to 4, found 7",
        id="enrichment-own-check",
    ),
    pytest.param(
        config(
            f"{SP}/event_fingerprint_config/jsonschema/1-0-0",
            "event_fingerprint_config",
            {},
        ),
        "data.parameters: rejected by event_fingerprint_config: "
        "KeyError: 'hashAlgorithm'",
        id="enrichment-unexpected-error",
    ),
]


@pytest.mark.parametrize(("document", "message"), BAD_ENTRIES)
def test_bad_configuration_is_named(
    tmp_path: Path, document: Any, message: str
) -> None:
    path = write(tmp_path, "conf.json", document)
    assert problems(tmp_path) == [f"{path}: {message}"]


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path, "a.json", "{")
    write(
        tmp_path,
        "b.json",
        config(f"{SP}/anon_ip/jsonschema/1-0-0", "anon_ip", {"anonOctets": 0}),
    )
    write(
        tmp_path,
        "c.json",
        config(f"{SP}/anon_ip/jsonschema/1-0-1", "anon_ip", {"anonOctets": 1}),
    )
    with pytest.raises(EnrichmentConfigError) as caught:
        load_enrichments(tmp_path, classes=CLASSES)
    text = str(caught.value)
    assert text.startswith(f"Enrichment configuration in {tmp_path}: 3 problems\n  ")
    assert f"{tmp_path / 'a.json'}: not valid JSON" in text
    assert f"{tmp_path / 'b.json'}: data.parameters.anonOctets: expected 1 to 4" in text
    assert (
        f"{tmp_path / 'c.json'}: data.name: 'anon_ip' is configured twice "
        f"(also in {tmp_path / 'b.json'})"
    ) in text


def test_data_is_checked_against_iglu_central(
    tmp_path: Path, central: Resolver
) -> None:
    path = write(
        tmp_path,
        "anon.json",
        config(
            f"{SP}/anon_ip/jsonschema/1-0-1",
            "anon_ip",
            {"anonOctets": 2, "anonSegments": 12, "x": 1},
        ),
    )
    assert problems(tmp_path, central) == [
        f"{path}: data.parameters: Additional properties are not allowed ('x' was "
        f"unexpected) (schema {SP}/anon_ip/jsonschema/1-0-1)",
        f"{path}: data.parameters.anonSegments: 12 is greater than the maximum of 8 "
        f"(schema {SP}/anon_ip/jsonschema/1-0-1)",
    ]


def test_missing_required_parameter_names_its_path(
    tmp_path: Path, central: Resolver
) -> None:
    path = write(
        tmp_path, "anon.json", config(f"{SP}/anon_ip/jsonschema/1-0-0", "anon_ip", {})
    )
    assert problems(tmp_path, central) == [
        f"{path}: data.parameters.anonOctets: is missing but required "
        f"(schema {SP}/anon_ip/jsonschema/1-0-0)"
    ]


def test_valid_files_pass_iglu_central(tmp_path: Path, central: Resolver) -> None:
    write(
        tmp_path,
        "anon.json",
        config(
            f"{SP}/anon_ip/jsonschema/1-0-1",
            "anon_ip",
            {"anonOctets": 3, "anonSegments": 3},
        ),
    )
    write(
        tmp_path,
        "ua.json",
        config(f"{SP}/ua_parser_config/jsonschema/1-0-0", "ua_parser_config", {}),
    )
    loaded = load_enrichments(tmp_path, central, classes=CLASSES)
    assert [e.name for e in loaded] == ["ua_parser_config", "anon_ip"]


def test_missing_folder_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist or is not a folder"):
        load_enrichments(tmp_path / "absent", classes=CLASSES)


def test_empty_folder_gives_no_enrichments(tmp_path: Path) -> None:
    assert load_enrichments(tmp_path, classes=CLASSES) == []


def test_registry_maps_names_to_classes() -> None:
    classes = enrichment_classes()
    for name, cls in classes.items():
        assert issubclass(cls, Enrichment) and cls.name == name
    assert enrichment_classes(("no_such_module",)) == {}
    assert enrichment_classes(("base",)) == {}
