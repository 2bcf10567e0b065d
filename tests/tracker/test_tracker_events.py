"""Every kind of event plowline.js tracks arrives once, with the values the page sent.

One page makes every call, then Playwright clicks, types and submits as a user
would; ``plowline up`` collects, enriches (validating each entity against its
schema) and loads them, and the test reads them back from DuckDB.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from browser_env import collect_console, entities, unstruct, wait_for_events

IGLU = "iglu:com.snowplowanalytics.snowplow/"
BUTTON = "iglu:io.plowline.test/button/jsonschema/1-0-0"
PAGE_KIND = "iglu:io.plowline.test/page_kind/jsonschema/1-0-0"
WEB_PAGE = IGLU + "web_page/jsonschema/1-0-0"

FORM = """
<a id="tracked" class="nav main" href="#details" target="_self">Read the details</a>
<a id="ignored" class="no-track" href="#other">Not this one</a>
<form id="signup" class="wide" onsubmit="return false">
  <input id="name" name="name" class="big">
  <input id="pw" name="password" type="password">
  <input id="note" name="secret_note">
  <select name="plan"><option value="basic">Basic</option></select>
  <input id="news" type="checkbox" name="news" value="yes">
  <button id="go" type="submit">Go</button>
</form>
<div id="details" style="height: 3000px">details</div>
"""


def calls(app_id: str, method: str) -> str:
    return f"""
plowline("init", {{appId: "{app_id}", namespace: "shop", method: "{method}"}});
plowline("setUserId", "ada@example.com");
plowline("addGlobalContexts", [{{schema: "{PAGE_KIND}", data: {{kind: "product"}}}}]);
plowline("enableLinkClickTracking", {{denylist: ["no-track"], trackContent: true}});
plowline("enableFormTracking", {{fields: {{denylist: ["secret_note"]}}}});
plowline("enableErrorTracking");
plowline("trackPageView", {{title: "Custom title",
  context: [{{schema: "{BUTTON}", data: {{label: "hero", count: 0}}}}]}});
plowline("trackStructEvent", {{category: "video", action: "play", label: "intro",
  property: "hd", value: 2.5}});
plowline("trackSelfDescribingEvent", {{event: {{schema: "{BUTTON}",
  data: {{label: "buy ✓ \\"now\\"", count: 3}}}},
  context: [{{schema: "{PAGE_KIND}", data: {{kind: "checkout & more"}}}}]}});
plowline("trackTransaction", {{orderId: "order-1", affiliation: "web", total: 27.5,
  tax: 2.5, shipping: 4, city: "Lyon", state: "ARA", country: "FR", currency: "EUR",
  items: [{{sku: "hat-1", name: "Hat", category: "clothes", price: 10.25, quantity: 2}},
          {{sku: "mug-2", name: "Mug", category: "home", price: 3, quantity: 1}}]}});
"""


def act_like_a_user(page: Any) -> None:
    page.click("#tracked")
    page.click("#ignored")
    page.click("#name")
    page.keyboard.type("Ada")
    page.click("#pw")
    page.keyboard.type("hunter2-secret")
    page.click("#note")
    page.keyboard.type("private-note")
    page.click("#news")
    page.click("#go")
    page.evaluate("setTimeout(() => { throw new TypeError('boom in test') }, 0)")


@pytest.mark.parametrize("method", ["post", "get"])
def test_every_event_type_arrives_once_with_its_values(
    site: Any, up: Any, new_tab: Any, app_id: str, method: str
) -> None:
    url = site.page(f"events-{method}.html", calls(app_id, method), body=FORM,
                    title="Shop page")  # fmt: skip
    tab = new_tab()
    console = collect_console(tab.page)
    tab.page.goto(url)
    tab.page.wait_for_function("() => window.plowline && !window.plowline.q")
    act_like_a_user(tab.page)
    tab.wait_idle()

    found = wait_for_events(up, app_id, 13)
    kinds = Counter(
        e["event"] if e["event"] != "unstruct" else unstruct(e)[0].split("/")[1]
        for e in found
    )
    assert kinds == {
        "page_view": 1, "struct": 1, "button": 1, "transaction": 1,
        "transaction_item": 2, "link_click": 1, "focus_form": 2, "change_form": 2,
        "submit_form": 1, "application_error": 1,
    }, console  # fmt: skip
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for e in found:
        name = e["event"] if e["event"] != "unstruct" else unstruct(e)[0].split("/")[1]
        by_kind.setdefault(name, []).append(e)

    # What every event carries: the tracker, the page, the user, one page view.
    [page_view] = by_kind["page_view"]
    page_view_id = entities(page_view, WEB_PAGE)
    assert len(page_view_id) == 1
    for e in found:
        assert e["v_tracker"] == "plowline-js-0.1.0"
        assert e["name_tracker"] == "shop"
        assert e["platform"] == "web"
        assert e["page_url"].startswith(url)
        assert e["user_id"] == "ada@example.com"
        assert e["domain_userid"] == page_view["domain_userid"]
        assert e["domain_sessionid"] == page_view["domain_sessionid"]
        assert e["domain_sessionidx"] == 1
        assert entities(e, WEB_PAGE) == page_view_id
        assert {"kind": "product"} in entities(e, PAGE_KIND)
        assert e["dvce_sent_tstamp"] >= e["dvce_created_tstamp"]
    assert page_view["page_title"] == "Custom title"
    assert page_view["br_viewwidth"] == 1280 and page_view["doc_charset"] == "UTF-8"
    assert entities(page_view, BUTTON) == [{"label": "hero", "count": 0}]
    assert by_kind["struct"][0]["page_title"] == "Shop page"

    [struct] = by_kind["struct"]
    assert (struct["se_category"], struct["se_action"], struct["se_label"],
            struct["se_property"], Decimal(struct["se_value"])) == (
        "video", "play", "intro", "hd", Decimal("2.5"))  # fmt: skip

    [button] = by_kind["button"]
    assert unstruct(button) == (BUTTON, {"label": 'buy ✓ "now"', "count": 3})
    assert {"kind": "checkout & more"} in entities(button, PAGE_KIND)

    [transaction] = by_kind["transaction"]
    assert (transaction["tr_orderid"], transaction["tr_affiliation"],
            *(Decimal(transaction[f"tr_{k}"]) for k in ("total", "tax", "shipping")),
            transaction["tr_city"], transaction["tr_state"], transaction["tr_country"],
            transaction["tr_currency"]) == (
        "order-1", "web", Decimal("27.5"), Decimal("2.5"), Decimal("4"), "Lyon",
        "ARA", "FR", "EUR")  # fmt: skip
    items = sorted(
        (i["ti_orderid"], i["ti_sku"], i["ti_name"], i["ti_category"],
         Decimal(i["ti_price"]),
         i["ti_quantity"], i["ti_currency"])
        for i in by_kind["transaction_item"]
    )  # fmt: skip
    assert items == [
        ("order-1", "hat-1", "Hat", "clothes", Decimal("10.25"), 2, "EUR"),
        ("order-1", "mug-2", "Mug", "home", Decimal("3"), 1, "EUR"),
    ]

    [link] = by_kind["link_click"]
    assert unstruct(link)[1] == {
        "targetUrl": url + "#details", "elementId": "tracked",
        "elementClasses": ["nav", "main"], "elementTarget": "_self",
        "elementContent": "Read the details",
    }  # fmt: skip

    focus = [unstruct(e)[1] for e in by_kind["focus_form"]]
    assert focus == [
        {"formId": "signup", "elementId": "name", "nodeName": "INPUT",
         "elementType": "text", "elementClasses": ["big"], "value": ""},
        {"formId": "signup", "elementId": "news", "nodeName": "INPUT",
         "elementType": "checkbox", "elementClasses": [], "value": None},
    ]  # fmt: skip
    change = [unstruct(e)[1] for e in by_kind["change_form"]]
    assert change == [
        {"formId": "signup", "elementId": "name", "nodeName": "INPUT", "type": "text",
         "elementClasses": ["big"], "value": "Ada"},
        {"formId": "signup", "elementId": "news", "nodeName": "INPUT",
         "type": "checkbox", "elementClasses": [], "value": "yes"},
    ]  # fmt: skip
    [submit] = by_kind["submit_form"]
    assert unstruct(submit)[1] == {
        "formId": "signup", "formClasses": ["wide"],
        "elements": [
            {"name": "name", "value": "Ada", "nodeName": "INPUT", "type": "text"},
            {"name": "plan", "value": "basic", "nodeName": "SELECT"},
            {"name": "news", "value": "yes", "nodeName": "INPUT", "type": "checkbox"},
        ],
    }  # fmt: skip

    [error] = by_kind["application_error"]
    data = unstruct(error)[1]
    assert data["programmingLanguage"] == "JAVASCRIPT"
    assert "boom in test" in data["message"]
    assert data["exceptionName"] == "TypeError"
    assert "boom in test" in data["stackTrace"]
    assert data["isFatal"] is True and data["lineNumber"] >= 1


def test_password_and_denied_fields_are_never_sent(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    url = site.page("password.html", calls(app_id, "post"), body=FORM)
    tab = new_tab()
    tab.page.goto(url)
    act_like_a_user(tab.page)
    tab.wait_idle()
    wait_for_events(up, app_id, 13, settle=0.5)

    # Not in the raw log (every request as received), nor in any loaded column.
    for path in up.raw_dir.iterdir():
        raw = path.read_bytes()
        assert b"hunter2" not in raw and b"private-note" not in raw
        assert b"secret_note" not in raw
    dump = json.dumps(up.rows("select * from atomic.events"), default=str)
    assert "hunter2" not in dump and "private-note" not in dump


def test_link_allowlist_tracks_only_its_classes(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    body = """<a id="a" class="track-me" href="#one">one</a>
              <a id="b" class="other" href="#two">two</a>
              <a id="c" href="#three"><span id="inner">three</span></a>"""
    url = site.page(
        "allow.html",
        f'plowline("init", {{appId: "{app_id}"}});'
        'plowline("enableLinkClickTracking", {allowlist: ["track-me"]});',
        body=body,
    )
    tab = new_tab()
    tab.page.goto(url)
    for selector in ("#a", "#b", "#inner", "#a"):
        tab.page.click(selector)
    tab.wait_idle()
    found = wait_for_events(up, app_id, 2)
    assert [unstruct(e)[1] for e in found] == [
        {"targetUrl": url + "#one", "elementId": "a", "elementClasses": ["track-me"]}
    ] * 2
