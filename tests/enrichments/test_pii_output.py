"""PII events (emitEvent) hold the original values: they go to --pii and never
join the enriched events; without somewhere to go, nothing starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plowline.enrich.fields import FIELD_INDEX
from plowline.enrich.settings import EnrichSettings
from plowline.errors import ConfigurationError
from plowline.up import UpConfig, run_up

PII_CONFIG = {
    "schema": "iglu:com.snowplowanalytics.snowplow.enrichments/"
    "pii_enrichment_config/jsonschema/2-0-0",
    "data": {
        "vendor": "com.snowplowanalytics.snowplow.enrichments",
        "name": "pii_enrichment_config",
        "enabled": True,
        "emitEvent": True,
        "parameters": {
            "pii": [{"pojo": {"field": "user_id"}}],
            "strategy": {"pseudonymize": {"hashFunction": "SHA-1", "salt": "pink123"}},
        },
    },
}


def plowline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plowline", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture()
def setup(tmp_path: Path) -> Path:
    (tmp_path / "enrichments").mkdir()
    (tmp_path / "enrichments" / "pii.json").write_text(json.dumps(PII_CONFIG))
    (tmp_path / "in.txt").write_text(
        "e=pv&p=web&tv=t&aid=a&uid=alice%40example.com\ne=pv&p=web&tv=t&aid=a\n"
    )
    return tmp_path


def column(line: str, name: str) -> str:
    return line.split("\t")[FIELD_INDEX[name]]


def test_pii_events_go_to_their_own_output(setup: Path) -> None:
    done = plowline(
        "enrich", "--input-format", "querystring",
        "--enrichments", str(setup / "enrichments"),
        "--good", str(setup / "good.tsv"), "--bad", str(setup / "bad.jsonl"),
        "--pii", str(setup / "pii.tsv"), str(setup / "in.txt"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 enriched events, 0 failed events (1 PII events)." in done.stderr
    good = (setup / "good.tsv").read_text().splitlines()
    assert [column(row, "event") for row in good] == ["page_view", "page_view"]
    hashed = column(good[0], "user_id")
    assert len(hashed) == 40 and "alice" not in "".join(good)
    [pii] = (setup / "pii.tsv").read_text().splitlines()
    assert column(pii, "event_name") == "pii_transformation"
    assert "alice@example.com" in column(pii, "unstruct_event")
    assert hashed in column(pii, "unstruct_event")


def test_without_a_pii_output_nothing_starts(setup: Path) -> None:
    done = plowline(
        "enrich", "--input-format", "querystring",
        "--enrichments", str(setup / "enrichments"),
        "--good", str(setup / "good.tsv"), "--bad", str(setup / "bad.jsonl"),
        str(setup / "in.txt"),
    )  # fmt: skip
    assert done.returncode == 1
    assert "emitEvent on" in done.stderr and "--pii FILE" in done.stderr
    assert not (setup / "good.tsv").exists()


def test_up_refuses_pii_events(setup: Path) -> None:
    config = UpConfig(
        port=1,  # never bound: the configuration is refused before
        data_dir=setup / "data",
        duckdb_path=setup / "events.duckdb",
        enrich=EnrichSettings(enrichments=str(setup / "enrichments")),
    )
    with pytest.raises(ConfigurationError, match="no output"):
        run_up(config, announce=False)
    assert not (setup / "data").exists()
