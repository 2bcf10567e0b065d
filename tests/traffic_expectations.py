"""The values the captured trackers sent (fixtures/traffic/README.md), as checks.

Events are compared as dicts of field name -> normalised value, so the same
checks run on enriched TSV and on rows read back from a store: integers as int,
money as Decimal, booleans as bool, timestamps as text, JSON columns parsed.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

from plowline.enrich.fields import FIELDS

Event = dict[str, Any]

KINDS = {field.name: field.kind for field in FIELDS}

PY_UA = "Mozilla/5.0 (X11; Linux x86_64) AcceptanceTest/1.0 (python tracker subject)"
JS_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/156.0.0.0 Safari/537.36"
)
PY_URL = "http://www.example.com/acceptance/python?utm_source=acc&utm_medium=py"
PY_PAGE_CONTEXT = {"pageType": "acceptance", "section": "python", "version": 1}
USER_CONTEXT = {"tier": "gold", "loggedIn": True, "score": 9.5}
BUTTON_PRESS = {
    "buttonId": "buy-now",
    "clicks": 3,
    "premium": True,
    "text": 'Café ✓ "quoted" & <tag>',
}
SP = "iglu:com.snowplowanalytics.snowplow"
PY_SCENARIOS = {
    "py-get": 17,
    "py-post": 17,
    "py-post-batch": 17,
    "py-get-plain": 17,
}


def normalise(name: str, value: Any) -> Any:
    """One field's value from TSV text or a store, in a comparable form."""
    if value is None or value == "":
        return None
    kind = KINDS[name]
    if kind == "int":
        return int(value)
    if kind in ("dec", "float"):
        return Decimal(str(value))
    if kind == "bool":
        return value in (True, "1", 1, "true")
    if kind == "json":
        return json.loads(value) if isinstance(value, str) else value
    if kind == "tstamp" and not isinstance(value, str):
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    return value


def event_from_tsv(line: str) -> Event:
    values = line.rstrip("\n").split("\t")
    assert len(values) == 131, f"expected 131 fields, got {len(values)}"
    return {f.name: normalise(f.name, v) for f, v in zip(FIELDS, values, strict=True)}


def contexts_of(event: Event) -> list[tuple[str, Any]]:
    document = event["contexts"]
    if document is None:
        return []
    assert document["schema"].startswith(f"{SP}/contexts/jsonschema/1-0-")
    return [(entity["schema"], entity["data"]) for entity in document["data"]]


def unstruct_of(event: Event) -> tuple[str, Any]:
    document = event["unstruct_event"]
    assert document["schema"] == f"{SP}/unstruct_event/jsonschema/1-0-0"
    return document["data"]["schema"], document["data"]["data"]


def event_kind(event: Event) -> str:
    if event["event"] == "unstruct":
        return event["event_name"]
    return str(event["event"])


def check_python_tracker(events: list[Event]) -> None:
    """All 68 events of the four Python tracker scenarios."""
    by_tracker: dict[str, list[Event]] = {}
    for event in events:
        by_tracker.setdefault(event["name_tracker"], []).append(event)
    assert {k: len(v) for k, v in by_tracker.items()} == PY_SCENARIOS
    for scenario_events in by_tracker.values():
        scenario_events.sort(key=lambda e: e["dvce_created_tstamp"])
        check_python_scenario(scenario_events)


def check_python_scenario(events: list[Event]) -> None:
    assert [event_kind(e) for e in events] == [
        "page_view",
        "page_ping",
        "struct",
        "button_press",
        "screen_view",
        "screen_view",
        "timing",
        "transaction",
        "transaction_item",
        "transaction_item",
        "link_click",
        "add_to_cart",
        "remove_from_cart",
        "change_form",
        "submit_form",
        "site_search",
        "struct",
    ]
    for event in events:
        assert event["app_id"] == "acc-py"
        assert event["v_tracker"] == "py-1.1.0"
        assert event["user_ipaddress"] == "198.51.100.23"
        assert event["useragent"] == PY_UA
        assert event["network_userid"] == "ecdff4d0-9175-40ac-a8bb-325c49733607"
        assert event["domain_userid"] == "0b0b0b0b-1111-4222-8333-444444444444"
        assert event["domain_sessionid"] == "5e5e5e5e-6666-4777-8888-999999999999"
        assert event["domain_sessionidx"] == 3
        assert event["os_timezone"] == "Europe/London"
        assert event["br_lang"] == "en-GB"
        assert (event["dvce_screenwidth"], event["dvce_screenheight"]) == (1920, 1080)
        assert (event["br_viewwidth"], event["br_viewheight"]) == (1280, 720)
        assert event["br_colordepth"] == "24"
        assert len(event["event_id"]) == 36
    for event in events[:16]:
        assert event["platform"] == "srv"
        assert event["user_id"] == "py-user-001"

    page_view, page_ping, struct = events[0], events[1], events[2]
    for event in (page_view, page_ping):
        assert event["page_url"] == PY_URL
        assert event["page_urlscheme"] == "http"
        assert event["page_urlhost"] == "www.example.com"
        assert event["page_urlport"] == 80
        assert event["page_urlpath"] == "/acceptance/python"
        assert event["page_urlquery"] == "utm_source=acc&utm_medium=py"
        assert event["page_urlfragment"] is None
        assert event["page_title"] == "Python acceptance page"
        assert event["page_referrer"] == "http://referrer.example.org/search?q=snowplow"
        assert event["refr_urlhost"] == "referrer.example.org"
        assert event["refr_urlpath"] == "/search"
        assert event["refr_urlquery"] == "q=snowplow"
    assert page_view["event_vendor"] == "com.snowplowanalytics.snowplow"
    assert page_view["event_name"] == "page_view"
    assert contexts_of(page_view) == [
        ("iglu:com.example.acceptance/page_context/jsonschema/1-0-0", PY_PAGE_CONTEXT)
    ]
    assert (
        page_ping["pp_xoffset_min"],
        page_ping["pp_xoffset_max"],
        page_ping["pp_yoffset_min"],
        page_ping["pp_yoffset_max"],
    ) == (0, 1280, 10, 900)
    assert (
        struct["se_category"],
        struct["se_action"],
        struct["se_label"],
        struct["se_property"],
        struct["se_value"],
    ) == ("acc-category", "acc-action", "acc-label", "acc-property", Decimal("42.5"))
    assert (struct["event_vendor"], struct["event_name"]) == (
        "com.google.analytics",
        "event",
    )

    button = events[3]
    assert unstruct_of(button) == (
        "iglu:com.example.acceptance/button_press/jsonschema/1-0-0",
        BUTTON_PRESS,
    )
    assert (
        button["event_vendor"],
        button["event_name"],
        button["event_format"],
        button["event_version"],
    ) == ("com.example.acceptance", "button_press", "jsonschema", "1-0-0")
    assert contexts_of(button) == [
        ("iglu:com.example.acceptance/page_context/jsonschema/1-0-0", PY_PAGE_CONTEXT),
        ("iglu:com.example.acceptance/user_context/jsonschema/1-0-0", USER_CONTEXT),
    ]
    assert unstruct_of(events[4]) == (
        "iglu:com.snowplowanalytics.mobile/screen_view/jsonschema/1-0-0",
        {
            "id": "2c5a4a36-6f5c-4a4e-9a5e-0d7e7c1f0a01",
            "name": "acc-screen",
            "type": "feed",
            "previousName": "acc-home",
            "previousId": "2c5a4a36-6f5c-4a4e-9a5e-0d7e7c1f0a00",
            "previousType": "home",
            "transitionType": "push",
        },
    )
    assert unstruct_of(events[5]) == (
        f"{SP}/screen_view/jsonschema/1-0-0",
        {"name": "acc-legacy-screen", "id": "acc-legacy-screen-id"},
    )
    assert unstruct_of(events[6]) == (
        f"{SP}/timing/jsonschema/1-0-0",
        {
            "category": "acc-timing-category",
            "variable": "acc-timing-variable",
            "timing": 1234,
            "label": "acc-timing-label",
        },
    )

    transaction, item1, item2 = events[7], events[8], events[9]
    assert (
        transaction["tr_orderid"],
        transaction["tr_total"],
        transaction["tr_affiliation"],
        transaction["tr_tax"],
        transaction["tr_shipping"],
        transaction["tr_city"],
        transaction["tr_state"],
        transaction["tr_country"],
        transaction["tr_currency"],
    ) == (
        "order-py-1001",
        Decimal("59.97"),
        "acc-store",
        Decimal("5.0"),
        Decimal("3.5"),
        "London",
        "England",
        "GB",
        "GBP",
    )
    assert (
        item1["ti_orderid"],
        item1["ti_sku"],
        item1["ti_name"],
        item1["ti_category"],
        item1["ti_price"],
        item1["ti_quantity"],
        item1["ti_currency"],
    ) == (
        "order-py-1001",
        "SKU-PY-1",
        "Acceptance Widget",
        "widgets",
        Decimal("19.99"),
        2,
        "GBP",
    )
    assert (
        item2["ti_sku"],
        item2["ti_name"],
        item2["ti_category"],
        item2["ti_price"],
        item2["ti_quantity"],
    ) == ("SKU-PY-2", "Acceptance Gadget", "gadgets", Decimal("11.49"), 1)

    assert unstruct_of(events[10]) == (
        f"{SP}/link_click/jsonschema/1-0-1",
        {
            "targetUrl": "http://www.example.com/target-page",
            "elementId": "acc-link",
            "elementClasses": ["btn", "primary"],
            "elementTarget": "_blank",
            "elementContent": "Acceptance link",
        },
    )
    assert unstruct_of(events[11])[1] == {
        "sku": "SKU-PY-1",
        "quantity": 2,
        "name": "Acceptance Widget",
        "category": "widgets",
        "unitPrice": 19.99,
        "currency": "GBP",
    }
    assert unstruct_of(events[12])[1]["sku"] == "SKU-PY-2"
    assert unstruct_of(events[13])[1] == {
        "formId": "acc-form",
        "elementId": "acc-email",
        "nodeName": "INPUT",
        "value": "user@example.com",
        "type": "email",
        "elementClasses": ["field", "email"],
    }
    assert unstruct_of(events[14])[1]["elements"] == [
        {
            "name": "email",
            "value": "user@example.com",
            "nodeName": "INPUT",
            "type": "email",
        }
    ]
    assert unstruct_of(events[15]) == (
        f"{SP}/site_search/jsonschema/1-0-0",
        {
            "terms": ["acceptance", "widget"],
            "filters": {"category": "widgets", "inStock": True},
            "totalResults": 12,
            "pageResults": 10,
        },
    )

    last = events[16]
    assert (last["se_category"], last["se_action"], last["se_value"]) == (
        "acc-ttm",
        "acc-true-timestamp",
        Decimal("7"),
    )
    assert last["user_id"] == "py-user-override"
    assert last["platform"] == "pc"
    assert last["true_tstamp"] == "2023-11-14 22:13:20.000"
    assert last["derived_tstamp"] == "2023-11-14 22:13:20.000"


def check_js_tracker(events: list[Event], method: str) -> None:
    """The 15 events of one JavaScript tracker (v3) capture."""
    counts = Counter(event_kind(e) for e in events)
    assert counts == {
        "page_view": 1,
        "struct": 1,
        "button_press": 1,
        "transaction": 1,
        "transaction_item": 2,
        "page_ping": 5,
        "link_click": 1,
        "focus_form": 1,
        "change_form": 1,
        "submit_form": 1,
    }
    page_url = (
        f"http://127.0.0.1:8000/acceptance.html?method={method}&utm_source="
        "acceptance&utm_medium=browser&utm_campaign=js-capture"
    )
    page_context = (
        "iglu:com.example.acceptance/page_context/jsonschema/1-0-0",
        {"pageType": "acceptance", "section": "js", "version": 3},
    )
    for event in events:
        assert event["app_id"] == "acc-js"
        assert event["platform"] == "web"
        assert event["name_tracker"] == "sp"
        assert event["v_tracker"] == "js-3.24.6"
        assert event["user_id"] == "js-user-42"
        assert event["useragent"] == JS_UA
        assert event["br_lang"] == "en-US"
        assert (event["dvce_screenwidth"], event["dvce_screenheight"]) == (1280, 720)
        assert (event["doc_width"], event["doc_height"]) == (2008, 3161)
        assert event["doc_charset"] == "UTF-8"
        assert event["br_cookies"] is True
        assert event["domain_sessionidx"] == 1
        assert event["page_url"] in (page_url, page_url + "#acc-anchor")
        assert event["page_urlhost"] == "127.0.0.1"
        assert event["page_urlport"] == 8000
        assert event["page_urlpath"] == "/acceptance.html"
    assert len({e["domain_userid"] for e in events}) == 1
    assert len({e["domain_sessionid"] for e in events}) == 1

    by_kind = {event_kind(e): e for e in events}
    page_view = by_kind["page_view"]
    assert page_view["page_title"] == "Acceptance page view"
    assert page_view["page_referrer"] == (
        "http://search.example.org/results?q=snowplow+acceptance"
    )
    assert page_view["refr_urlhost"] == "search.example.org"
    assert page_view["refr_urlquery"] == "q=snowplow+acceptance"
    schemas = [schema for schema, _ in contexts_of(page_view)]
    assert schemas == [page_context[0], f"{SP}/web_page/jsonschema/1-0-0"]
    assert contexts_of(page_view)[0] == page_context
    for event in events:
        if event["event"] == "page_ping":
            assert contexts_of(event)[0] == page_context
            assert event["pp_yoffset_max"] is not None

    struct = by_kind["struct"]
    assert (
        struct["se_category"],
        struct["se_action"],
        struct["se_label"],
        struct["se_property"],
        struct["se_value"],
    ) == ("acc-category", "acc-action", "acc-label", "acc-property", Decimal("42.5"))
    button = by_kind["button_press"]
    assert unstruct_of(button)[1] == BUTTON_PRESS
    assert (
        "iglu:com.example.acceptance/user_context/jsonschema/1-0-0",
        USER_CONTEXT,
    ) in contexts_of(button)
    transaction = by_kind["transaction"]
    assert (
        transaction["tr_orderid"],
        transaction["tr_total"],
        transaction["tr_tax"],
        transaction["tr_shipping"],
        transaction["tr_affiliation"],
        transaction["tr_city"],
        transaction["tr_state"],
        transaction["tr_country"],
        transaction["tr_currency"],
    ) == (
        "order-js-2001",
        Decimal("59.97"),
        Decimal("5"),
        Decimal("3.5"),
        "acc-store",
        "London",
        "England",
        "GB",
        "GBP",
    )
    items = sorted(
        (e for e in events if e["event"] == "transaction_item"),
        key=lambda e: e["ti_sku"],
    )
    assert [
        (
            i["ti_orderid"],
            i["ti_sku"],
            i["ti_name"],
            i["ti_category"],
            i["ti_price"],
            i["ti_quantity"],
            i["ti_currency"],
        )
        for i in items
    ] == [
        (
            "order-js-2001",
            "SKU-JS-1",
            "Acceptance Widget",
            "widgets",
            Decimal("19.99"),
            2,
            "GBP",
        ),
        (
            "order-js-2001",
            "SKU-JS-2",
            "Acceptance Gadget",
            "gadgets",
            Decimal("11.49"),
            1,
            "GBP",
        ),
    ]
    assert unstruct_of(by_kind["link_click"])[1] == {
        "targetUrl": page_url + "#acc-anchor",
        "elementId": "acc-link",
        "elementClasses": ["acc-link", "nav-link"],
        "elementTarget": "",
        "elementContent": "Acceptance link",
    }
    change = unstruct_of(by_kind["change_form"])[1]
    assert (change["value"], change["type"], change["elementId"]) == (
        "user@example.com",
        "email",
        "email",
    )
    submit = unstruct_of(by_kind["submit_form"])[1]
    assert submit["formClasses"] == ["acc-form", "signup"]
    assert submit["elements"] == [
        {
            "name": "email",
            "value": "user@example.com",
            "nodeName": "INPUT",
            "type": "email",
        }
    ]
    assert unstruct_of(by_kind["focus_form"])[1]["elementId"] == "email"
