"""Identity and privacy: the first-party cookies, sessions, anonymous mode, the
consent switch, Do Not Track / Global Privacy Control and cross-domain links."""

from __future__ import annotations

import re
import time
from typing import Any

from browser_env import events, wait_for_events

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
ID_COOKIE = re.compile(r"^_sp_id\.[0-9a-f]{4}$")


def init(app_id: str, options: str = "") -> str:
    return f'plowline("init", {{appId: "{app_id}"{options}}});'


def test_reload_keeps_user_and_session_and_timeout_starts_another(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    url = site.page(
        "session.html",
        init(app_id, ", sessionTimeout: 3") + 'plowline("trackPageView");',
    )
    tab = new_tab()
    tab.page.goto(url)
    tab.wait_idle()
    tab.page.reload()
    tab.wait_idle()
    cookies = tab.tracker_cookies()
    time.sleep(3.5)  # the session cookie expires
    tab.page.reload()
    tab.wait_idle()

    first, reloaded, later = wait_for_events(up, app_id, 3)
    assert first["domain_userid"] == reloaded["domain_userid"] == later["domain_userid"]
    assert first["domain_sessionid"] == reloaded["domain_sessionid"]
    assert later["domain_sessionid"] != first["domain_sessionid"]
    assert [e["domain_sessionidx"] for e in (first, reloaded, later)] == [1, 1, 2]
    # The cookies in Snowplow's layout: duid.created.visits.visitTs.lastVisitTs.sid...
    [(id_name, id_value)] = [(k, v) for k, v in cookies.items() if ID_COOKIE.match(k)]
    assert cookies[id_name.replace("_sp_id", "_sp_ses")] == "*"
    fields = id_value.split(".")
    assert len(fields) == 10
    assert (fields[0], fields[2], fields[5]) == (
        first["domain_userid"],
        "1",
        first["domain_sessionid"],
    )
    assert fields[7] == str(first["event_id"]) and fields[9] == "2"
    after = tab.tracker_cookies()[id_name].split(".")
    assert (after[2], after[5], after[6]) == (
        "2",
        later["domain_sessionid"],
        first["domain_sessionid"],
    )


def test_anonymous_mode_sends_no_cookies_and_no_ids(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    url = site.page(
        "anonymous.html",
        init(app_id, ", anonymous: true")
        + 'plowline("setUserId", "ada@example.com"); plowline("trackPageView");'
        'plowline("trackStructEvent", {category: "c", action: "a"});',
    )
    tab = new_tab()
    requests: list[Any] = []
    tab.page.on("request", lambda r: requests.append(r))
    tab.page.goto(url)
    tab.wait_idle()

    found = wait_for_events(up, app_id, 2)
    for e in found:
        assert e["domain_userid"] is None and e["domain_sessionid"] is None
        assert e["domain_sessionidx"] is None and e["user_id"] is None
        assert e["network_userid"] == ZERO_UUID and e["user_ipaddress"] is None
    assert tab.cookies() == {}  # neither the tracker's nor the collector's
    sends = [r for r in requests if "/tp2" in r.url and r.method == "POST"]
    assert sends and all("cookie" not in r.all_headers() for r in sends)
    assert all(r.all_headers().get("sp-anonymous") == "*" for r in sends)


def test_consent_switch_moves_between_anonymous_and_identified(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    url = site.page("consent.html", init(app_id, ", anonymous: true"))
    tab = new_tab()
    tab.page.goto(url)
    track = 'plowline("trackStructEvent", {category: "consent", action: "%s"})'
    tab.page.evaluate(track % "before")
    tab.wait_idle()
    assert tab.tracker_cookies() == {}
    tab.page.evaluate('plowline("setConsent", true); plowline("setUserId", "u1");')
    tab.page.evaluate(track % "granted")
    tab.wait_idle()
    assert len(tab.tracker_cookies()) == 2
    tab.page.evaluate('plowline("setConsent", false)')
    tab.page.evaluate(track % "withdrawn")
    tab.wait_idle()
    assert tab.tracker_cookies() == {}

    before, granted, withdrawn = wait_for_events(up, app_id, 3)
    assert [e["se_action"] for e in (before, granted, withdrawn)] == [
        "before", "granted", "withdrawn"]  # fmt: skip
    assert before["domain_userid"] is None and withdrawn["domain_userid"] is None
    assert withdrawn["user_id"] is None and withdrawn["network_userid"] == ZERO_UUID
    assert granted["domain_userid"] and granted["domain_sessionidx"] == 1
    assert granted["user_id"] == "u1" and granted["network_userid"] != ZERO_UUID


def test_privacy_signals_are_honoured_when_asked(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    define = "Object.defineProperty(navigator, '%s', {get: () => %s})"
    signals = [
        define % ("globalPrivacyControl", "true"),
        define % ("doNotTrack", "'1'"),
    ]
    options = {
        "off": ", respectDoNotTrack: true",
        "anon": ', respectDoNotTrack: "anonymous"',
        "ignored": "",
    }
    pages = {
        name: site.page(
            f"dnt-{name}.html",
            init(f"{app_id}-{name}", option) + 'plowline("trackPageView");',
        )
        for name, option in options.items()
    }
    for script in signals:
        for page_url in pages.values():
            tab = new_tab()
            tab.context.add_init_script(script)
            tab.page.goto(page_url)
            tab.wait_idle()
            if "ignored" not in page_url:
                assert tab.cookies() == {}

    assert wait_for_events(up, app_id + "-ignored", 2)[0]["domain_userid"]
    anonymous = wait_for_events(up, app_id + "-anon", 2, settle=0)
    assert all(e["domain_userid"] is None for e in anonymous)
    assert events(up, app_id + "-off") == []


def test_cross_domain_links_carry_the_user_id(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    other = site.url.replace("127.0.0.1", "localhost")
    body = (
        f'<a id="partner" href="{other}/landing.html?a=1">partner</a>'
        f'<a id="elsewhere" href="{site.url}/landing.html">same host</a>'
    )
    url = site.page(
        "linker.html",
        init(app_id, ', crossDomainLinker: ["localhost"]')
        + 'plowline("trackPageView");',
        body=body,
    )
    site.page("landing.html", "")
    tab = new_tab()
    tab.page.goto(url)
    tab.wait_idle()
    [page_view] = wait_for_events(up, app_id, 1, settle=0)
    before = time.time() * 1000

    tab.page.click("#partner")
    tab.page.wait_for_url(f"{other}/landing.html**")
    query = dict(p.split("=") for p in tab.page.url.split("?")[1].split("&"))
    duid, stamp = query["_sp"].rsplit(".", 1)
    assert duid == page_view["domain_userid"] and query["a"] == "1"
    assert before - 5000 < int(stamp) <= time.time() * 1000
    tab.page.go_back()
    tab.page.click("#elsewhere")
    tab.page.wait_for_url(f"{site.url}/landing.html")
