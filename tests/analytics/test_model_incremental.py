"""Incremental updates: events loaded in parts give the models a build from
scratch gives, and a re-run with nothing new changes nothing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from analytics_support import Target
from helpers_analytics import snapshot

from plowline.analytics import ModelSettings, build_models
from plowline.analytics import simulate as sim
from plowline.enrich.fields import FIELD_INDEX

COLLECTED = FIELD_INDEX["collector_tstamp"]
ETL = FIELD_INDEX["etl_tstamp"]


def _rows() -> list[list[str]]:
    return sorted(sim.events(sim.known_site()), key=lambda row: row[COLLECTED])


def _split(rows: list[list[str]], *cuts: str) -> list[list[list[str]]]:
    """Parts by collector time; a cut inside a session splits it."""
    parts: list[list[list[str]]] = [[] for _ in range(len(cuts) + 1)]
    for row in rows:
        parts[sum(row[COLLECTED] >= cut for cut in cuts)].append(row)
    return parts


def _from_scratch(tmp_path: Path, kind: str) -> dict[str, list[tuple[object, ...]]]:
    folder = tmp_path / "scratch"
    folder.mkdir()
    whole = Target(kind, folder)
    whole.load(_rows())
    wh = whole.warehouse()
    build_models(wh)
    result = snapshot(wh)
    wh.close()
    return result


# 09:01 cuts alice's first session after its first page; day 4 separates bob's
# anonymous session from the one where he logs in; 12:01 on day 4 cuts the
# session with the self-describing purchase.
CUTS = ("2026-03-02 09:01:00.000", "2026-03-04 00:00:00.000", "2026-03-04 12:01:00.000")


def test_parts_give_the_build_from_scratch(target: Target, tmp_path: Path) -> None:
    for part in _split(_rows(), *CUTS):
        target.load(part)
        wh = target.warehouse()
        result = build_models(wh)
        assert not result.full or result.new_events == len(part)
        wh.close()

    wh = target.warehouse()
    assert snapshot(wh) == _from_scratch(tmp_path, target.kind)
    wh.close()


def test_rerun_changes_nothing(target: Target) -> None:
    target.load(_rows())
    wh = target.warehouse()
    build_models(wh)
    before = snapshot(wh)
    state = wh.execute("SELECT * FROM derived.model_state")
    result = build_models(wh)
    assert (result.new_events, result.sessions, result.users) == (0, 0, 0)
    assert snapshot(wh) == before
    assert wh.execute("SELECT * FROM derived.model_state") == state
    wh.close()


def test_update_touches_only_affected_sessions(tmp_path: Path) -> None:
    target = Target("duckdb", tmp_path)
    first, second = _split(_rows(), "2026-03-06 00:00:00.000")
    target.load(first)
    wh = target.warehouse()
    build_models(wh)
    wh.close()
    target.load(second)
    wh = target.warehouse()
    result = build_models(wh)
    # Day 6 holds bob's second session and erin's only one.
    assert (result.new_events, result.sessions, result.orders) == (len(second), 2, 1)
    # Bob logged in then: his first, anonymous session is stitched to him.
    (stitched,) = wh.execute(
        "SELECT stitched_user_id FROM derived.sessions "
        "WHERE domain_userid = 'd-bob' AND domain_sessionidx = 1"
    )
    assert stitched == ("bob",)
    wh.close()


def test_late_load_within_the_lookback_is_found(tmp_path: Path) -> None:
    # The later half is loaded first: its events arrived later but were loaded
    # before the earlier ones, as when enriched files are loaded out of order.
    target = Target("duckdb", tmp_path)
    early, late = _split(_rows(), "2026-03-04 00:00:00.000")
    target.load(late)
    wh = target.warehouse()
    build_models(wh, ModelSettings(lookback_s=7 * 86400))
    wh.close()
    target.load(early)
    wh = target.warehouse()
    result = build_models(wh, ModelSettings(lookback_s=7 * 86400))
    assert result.new_events == len(early)
    assert snapshot(wh) == _from_scratch(tmp_path, "duckdb")
    wh.close()


def test_late_load_beyond_the_lookback_needs_a_full_refresh(tmp_path: Path) -> None:
    target = Target("duckdb", tmp_path)
    early, late = _split(_rows(), "2026-03-04 00:00:00.000")
    assert max(row[ETL] for row in early) < min(row[ETL] for row in late)
    target.load(late)
    wh = target.warehouse()
    build_models(wh, ModelSettings(lookback_s=3600))
    wh.close()
    target.load(early)
    wh = target.warehouse()
    assert build_models(wh, ModelSettings(lookback_s=3600)).new_events == 0
    rebuilt = build_models(wh, ModelSettings(lookback_s=3600, full_refresh=True))
    assert rebuilt.full
    assert snapshot(wh) == _from_scratch(tmp_path, "duckdb")
    wh.close()


@pytest.mark.parametrize("include_bots", [False, True])
def test_changed_settings_rebuild(tmp_path: Path, include_bots: bool) -> None:
    target = Target("duckdb", tmp_path)
    target.load(_rows())
    wh = target.warehouse()
    build_models(wh, ModelSettings(include_bots=not include_bots))
    result = build_models(wh, ModelSettings(include_bots=include_bots))
    assert result.full
    assert result.new_events == len(_rows())
    assert datetime(2026, 3, 2) <= wh.scalar(
        "SELECT MIN(start_tstamp) FROM derived.sessions"
    )
    wh.close()


def test_tables_of_another_version_are_rebuilt(target: Target, tmp_path: Path) -> None:
    # Model tables made by a version without some of today's columns (as the
    # ones before the prev_* columns): the next build starts from scratch.
    target.load(_rows())
    wh = target.warehouse()
    build_models(wh)
    wh.execute("DROP TABLE derived.page_views")
    wh.execute("CREATE TABLE derived.page_views (page_view_id VARCHAR)")
    wh.execute("ALTER TABLE derived.sessions DROP COLUMN prev_user_session_any")
    result = build_models(wh)
    assert result.full
    assert result.new_events == len(_rows())
    assert snapshot(wh) == _from_scratch(tmp_path, target.kind)
    wh.close()
