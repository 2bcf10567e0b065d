"""The official Snowplow browser tracker (3.x and 4.x, npm test dependencies)
runs the same page against Plowline's collector, and a site that switches
between it and plowline.js keeps its users and sessions (same cookies)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_env import build_tracker, entities, unstruct, wait_for_events

BUTTON = "iglu:io.plowline.test/button/jsonschema/1-0-0"
PAGE_KIND = "iglu:io.plowline.test/page_kind/jsonschema/1-0-0"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Snowplow's trackers bundled for the browser by js/build.mjs --snowplow."""
    outdir = tmp_path_factory.mktemp("bundles")
    build_tracker(outdir, "--snowplow")
    yield outdir


def snowplow_page(site: Any, bundles: Path, major: int, app_id: str) -> str:
    (site.root / f"snowplow-{major}.js").write_bytes(
        (bundles / f"snowplow-{major}.js").read_bytes()
    )
    calls = f"""
const sp = window.snowplowTracker;
sp.newTracker("sp", "{site.up.base_url}", {{appId: "{app_id}", platform: "web",
  cookieSameSite: "Lax", cookieSecure: false, eventMethod: "post", bufferSize: 1}});
sp.setUserId("grace@example.com");
sp.trackPageView();
sp.trackStructEvent({{category: "video", action: "play", label: "intro",
  property: "hd", value: 2.5}});
sp.trackSelfDescribingEvent({{event: {{schema: "{BUTTON}",
  data: {{label: "buy", count: 3}}}}, context: [{{schema: "{PAGE_KIND}",
  data: {{kind: "product"}}}}]}});
"""
    html = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Snowplow page</title>'
        f'<link rel="icon" href="data:,"><script src="snowplow-{major}.js"></script>'
        f"<script>{calls}</script></head><body></body></html>"
    )
    (site.root / f"snowplow-{major}.html").write_text(html)
    return f"{site.url}/snowplow-{major}.html"


@pytest.mark.parametrize("major", [3, 4])
def test_snowplow_tracker_events_come_out_right(
    site: Any, up: Any, new_tab: Any, bundles: Path, app_id: str, major: int
) -> None:
    url = snowplow_page(site, bundles, major, app_id)
    tab = new_tab()
    tab.page.goto(url)

    found = wait_for_events(up, app_id, 3)
    by_event = {e["event"]: e for e in found}
    assert set(by_event) == {"page_view", "struct", "unstruct"}
    for e in found:
        assert e["v_tracker"].startswith(f"js-{major}.")
        assert e["page_url"] == url and e["user_id"] == "grace@example.com"
        assert e["domain_userid"] and e["domain_sessionidx"] == 1
        assert e["domain_sessionid"] == found[0]["domain_sessionid"]
    assert by_event["page_view"]["page_title"] == "Snowplow page"
    struct = by_event["struct"]
    assert (struct["se_category"], struct["se_action"], struct["se_label"],
            struct["se_property"]) == ("video", "play", "intro", "hd")  # fmt: skip
    assert unstruct(by_event["unstruct"]) == (BUTTON, {"label": "buy", "count": 3})
    assert entities(by_event["unstruct"], PAGE_KIND) == [{"kind": "product"}]


@pytest.mark.parametrize("major", [3, 4])
def test_switching_trackers_keeps_users_and_sessions(
    site: Any, up: Any, new_tab: Any, bundles: Path, app_id: str, major: int
) -> None:
    snowplow = snowplow_page(site, bundles, major, app_id)
    plowline = site.page(
        f"switch-{major}.html",
        f'plowline("init", {{appId: "{app_id}"}}); plowline("trackPageView");',
    )
    tab = new_tab()
    tab.page.goto(snowplow)
    wait_for_events(up, app_id, 3, settle=0)
    tab.page.goto(plowline)
    tab.wait_idle()
    wait_for_events(up, app_id, 4, settle=0)
    tab.page.goto(snowplow)

    found = wait_for_events(up, app_id, 7)
    trackers = [e["v_tracker"].split("-")[0] for e in found]
    assert trackers == ["js"] * 3 + ["plowline"] + ["js"] * 3
    assert len({e["domain_userid"] for e in found}) == 1
    assert len({e["domain_sessionid"] for e in found}) == 1
    assert {e["domain_sessionidx"] for e in found} == {1}
