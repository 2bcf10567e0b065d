"""Bugs in plowline.js found by breaking it on purpose: each test failed when it
was written and says, in its comment, what was wrong and what should happen.

Some tests put a small misbehaving proxy (``Proxy`` below) between the tracker
and the real ``plowline up``: it answers 503, hangs, or delays on request."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from browser_env import collect_console, unstruct, wait_for_events

IGLU = "iglu:com.snowplowanalytics.snowplow/"

# --- a misbehaving proxy in front of the collector ----------------------------

Action = Any  # "forward", "hang", an HTTP status, or ("delay", seconds, action)


class Proxy:
    """Loopback HTTP proxy to the collector; ``mode(method, path)`` picks what
    each request gets. Records every request it saw."""

    def __init__(self, target_port: int, mode: Callable[[str, str], Action]) -> None:
        self.target_port = target_port
        self.mode = mode
        self.seen: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.seen.append((self.command, self.path, body))
                action = proxy.mode(self.command, self.path)
                while isinstance(action, tuple):
                    time.sleep(action[1])
                    action = action[2]
                if action == "hang":
                    time.sleep(600)
                    return
                if isinstance(action, int):
                    self.send_response(action)
                    origin = self.headers.get("Origin")
                    if origin:
                        self.send_header("Access-Control-Allow-Origin", origin)
                        self.send_header("Access-Control-Allow-Credentials", "true")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(
                    "127.0.0.1", proxy.target_port, timeout=30
                )
                headers = {
                    k: v for k, v in self.headers.items()
                    if k.lower() not in ("host", "connection")
                }  # fmt: skip
                conn.request(
                    self.command, self.path, body=body or None, headers=headers
                )
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in (
                        "transfer-encoding",
                        "connection",
                        "content-length",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_OPTIONS = do_HEAD = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self) -> list[bytes]:
        with self.lock:
            return [body for method, _, body in self.seen if method == "POST"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def struct(action: str) -> str:
    return f'plowline("trackStructEvent", {{category: "c", action: "{action}"}});'


def page_errors(console: list[str]) -> list[str]:
    return [m for m in console if m.startswith("pageerror")]


# --- delivery -----------------------------------------------------------------


def test_event_over_the_keepalive_limit_does_not_block_the_queue(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # Every request is a fetch with keepalive: true, and Chromium refuses a
    # keepalive body over 64 KiB before sending anything. A single event with a
    # 70 KB context (under maxPostBytes "goes alone", and under the collector's
    # 1 MiB limit) is therefore retried with backoff forever at the head of the
    # queue, and nothing tracked after it is ever sent. It should be sent
    # without keepalive (or dropped), and the events behind it should arrive.
    big = "x" * 70000
    url = site.page(
        "big-event.html",
        f'plowline("init", {{appId: "{app_id}", maxRetryDelay: 1}});'
        f'plowline("trackStructEvent", {{category: "c", action: "huge", context: [{{'
        'schema: "iglu:io.plowline.test/nowhere/jsonschema/1-0-0", '
        f'data: {{s: "{big}"}}}}]}});'
        'plowline("trackPageView");',
    )
    tab = new_tab()
    tab.page.goto(url)
    # The huge event refers to an unknown schema: it can only become a failed
    # event, so the page view is the one event expected in atomic.events.
    [page_view] = wait_for_events(up, app_id, 1, timeout=15)
    assert page_view["event"] == "page_view"


def test_a_hanging_request_does_not_block_the_queue_forever(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # fetch() is made with no timeout and one request is in flight at a time:
    # when the collector (or a middlebox) accepts the connection and never
    # answers, the request stays pending and every later event waits behind it
    # for as long as the page lives (Snowplow's tracker gives up after a
    # connection timeout and retries). The hung request should be abandoned
    # after a few seconds and retried, so both events arrive once.
    hung = {"done": False}

    def mode(method: str, path: str) -> Action:
        if method == "POST" and not hung["done"]:
            hung["done"] = True
            return "hang"
        return "forward"

    proxy = Proxy(up.port, mode)
    try:
        url = site.page(
            "hanging.html",
            f'plowline("init", {{appId: "{app_id}", collector: "{proxy.url}",'
            " maxRetryDelay: 1});"
            'plowline("trackPageView");',
        )
        tab = new_tab()
        tab.page.goto(url)
        tab.page.wait_for_timeout(500)
        tab.page.evaluate(struct("after-the-hang"))
        found = wait_for_events(up, app_id, 2, timeout=30)
        assert sorted(e["event"] for e in found) == ["page_view", "struct"]
    finally:
        proxy.close()


def test_leaving_a_page_during_a_request_does_not_send_the_event_twice(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # When the page is left while a request is in flight, pagehide drops the
    # in-flight events from localStorage, but the visibilitychange (hidden) that
    # the browser fires right after it saves the whole queue again, in-flight
    # events included. The next page of the site sends them a second time while
    # the first request (keepalive) also completes. On a first visit the two
    # copies carry different network user ids, so the loader keeps both (a
    # synthetic duplicate) and atomic.events holds the event twice. The issue
    # asks for each event to be sent once: an event in flight must stay out of
    # the stored queue when the page goes away.
    state = {"posts": 0}

    def mode(method: str, path: str) -> Action:
        if method == "POST":
            state["posts"] += 1
            if state["posts"] == 1:
                return ("delay", 1.5, "forward")  # slow, but it succeeds
        return "forward"

    proxy = Proxy(up.port, mode)
    try:
        init = f'plowline("init", {{appId: "{app_id}", collector: "{proxy.url}"}});'
        url = site.page("leave-1.html", init + struct("only-once"))
        site.page("leave-2.html", init)
        tab = new_tab()
        tab.page.goto(url)
        tab.page.wait_for_timeout(300)  # the request is at the proxy, not answered
        tab.page.goto(f"{site.url}/leave-2.html")
        tab.page.wait_for_timeout(3000)

        [event] = wait_for_events(up, app_id, 1, settle=2)
        assert event["se_action"] == "only-once"
        assert sum(b"only-once" in body for body in proxy.posts()) == 1
    finally:
        proxy.close()


def test_two_tabs_during_an_outage_lose_no_event(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # Every tab keeps its own copy of the queue in memory and writes all of it
    # over the shared localStorage key on each change. With the collector down,
    # tab A tracks a1, tab B (which loads [a1]) tracks b1 -> [a1, b1], then tab A
    # tracks a2 and writes [a1, a2]: b1 is gone from storage. When both tabs are
    # closed during the outage, the next page finds only one tab's events.
    # docs/tracker.md admits duplicates with two tabs, not loss. Expected: every
    # event of every tab arrives once when the collector answers again.
    state = {"down": True}
    proxy = Proxy(
        up.port, lambda m, p: 503 if state["down"] and m == "POST" else "forward"
    )
    try:
        url = site.page(
            "tabs.html",
            f'plowline("init", {{appId: "{app_id}", collector: "{proxy.url}",'
            " maxRetryDelay: 1});",
        )
        tab = new_tab()
        a = tab.page
        a.goto(url)
        a.evaluate(struct("a1"))
        a.wait_for_timeout(300)
        b = tab.context.new_page()
        b.goto(url)
        b.evaluate(struct("b1"))
        b.wait_for_timeout(300)
        a.evaluate(struct("a2"))
        a.wait_for_timeout(1500)
        b.close()
        a.close()

        state["down"] = False
        later = tab.context.new_page()
        later.goto(url)
        found = wait_for_events(up, app_id, 3, timeout=15, settle=2)
        assert sorted(e["se_action"] for e in found) == ["a1", "a2", "b1"]
    finally:
        proxy.close()


def test_new_events_do_not_bypass_the_retry_backoff(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # After a failure the emitter schedules a retry in 1 s, 2 s, 4 s ..., but
    # add() calls flush(), which sends at once while `failing` is set and clears
    # the timer: every new event (a click, a ping) fires one more request at a
    # collector answering 503. Ten events 100 ms apart make ten requests within
    # a second. Backoff should hold: at most a few requests in that second.
    proxy = Proxy(up.port, lambda m, p: 503 if m == "POST" else "forward")
    try:
        url = site.page(
            "backoff.html",
            f'plowline("init", {{appId: "{app_id}", collector: "{proxy.url}"}});',
        )
        tab = new_tab()
        tab.page.goto(url)
        tab.page.wait_for_timeout(300)
        for i in range(10):
            tab.page.evaluate(struct(f"x{i}"))
            tab.page.wait_for_timeout(100)
        assert len(proxy.posts()) <= 3, len(proxy.posts())
    finally:
        proxy.close()


def test_get_event_too_long_loses_its_entities_not_the_event(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # tracker.js puts entities last "so a GET request that is too long loses
    # them first", but nothing ever drops them: a GET page view with a 25 KB
    # context is sent as a 34 KB query string, the collector answers 414 (over
    # its 20480-byte limit), the tracker counts that as a permanent refusal and
    # the page view is gone (only a size_violation failed event remains). The
    # page view should arrive, without the entities that made it too long (or
    # be sent by POST).
    big = "y" * 25000
    url = site.page(
        "long-get.html",
        f'plowline("init", {{appId: "{app_id}", method: "get"}});'
        'plowline("trackPageView", {context: [{schema: '
        '"iglu:io.plowline.test/page_kind/jsonschema/1-0-0", '
        f'data: {{kind: "{big}"}}}}]}});',
    )
    tab = new_tab()
    tab.page.goto(url)
    [page_view] = wait_for_events(up, app_id, 1, timeout=10)
    assert page_view["event"] == "page_view"


# --- loading and bad calls ----------------------------------------------------


def test_a_second_copy_of_the_script_keeps_the_initialised_tracker(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # Sites often load the tracker twice (page template and tag manager). The
    # second copy finds window.plowline already replaced (no .q), installs a new
    # plowline() bound to a fresh, uninitialised tracker, and every later call
    # is dropped with "call init before ...": after the page view nothing is
    # tracked any more. A second copy should leave the running tracker alone.
    url = site.page(
        "twice.html",
        f'plowline("init", {{appId: "{app_id}"}}); plowline("trackPageView");',
        body=f'<script async src="{up.base_url}/plowline.js"></script>',
    )
    tab = new_tab()
    console = collect_console(tab.page)
    tab.page.goto(url)
    tab.page.wait_for_timeout(1000)  # both copies have run
    tab.page.evaluate(struct("after-both-loaded"))
    found = wait_for_events(up, app_id, 2)
    assert [e["event"] for e in found] == ["page_view", "struct"], console


def test_a_throwing_global_context_never_throws_into_the_page(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # A global-context function is called while building every event; when it
    # throws during automatic tracking (a link click here; page pings, form and
    # error events likewise) the exception escapes the tracker's listener as an
    # uncaught error of the page, and the link click is lost. The tracker
    # should catch it, leave that context out and still send the event.
    url = site.page(
        "throwing-context.html",
        f'plowline("init", {{appId: "{app_id}"}}); plowline("enableLinkClickTracking");'
        'plowline("addGlobalContexts", [() => { throw new Error("context broke") }]);',
        body='<a id="l" href="#here">link</a>',
    )
    tab = new_tab()
    console = collect_console(tab.page)
    tab.page.goto(url)
    tab.page.wait_for_function("() => window.plowline && !window.plowline.q")
    tab.page.click("#l")
    tab.page.wait_for_timeout(500)
    assert page_errors(console) == []
    [click] = wait_for_events(up, app_id, 1)
    assert unstruct(click)[0] == IGLU + "link_click/jsonschema/1-0-1"


def test_a_wrongly_typed_option_does_not_throw_on_every_click(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # enableLinkClickTracking({allowlist: "track"}) (a class name instead of a
    # list of them) is accepted without a word, then every click anywhere on
    # the page raises "(t || []).some is not a function" from the tracker's
    # listener into the page. Bad arguments must not make the page throw: the
    # option should be validated or a single class name accepted.
    url = site.page(
        "string-allowlist.html",
        f'plowline("init", {{appId: "{app_id}"}});'
        'plowline("enableLinkClickTracking", {allowlist: "track"});',
        body='<a id="l" class="track" href="#here">link</a>',
    )
    tab = new_tab()
    console = collect_console(tab.page)
    tab.page.goto(url)
    tab.page.wait_for_function("() => window.plowline && !window.plowline.q")
    tab.page.click("#l")
    tab.page.wait_for_timeout(500)
    assert page_errors(console) == []


# --- forms, links ---------------------------------------------------------------


def test_forms_with_fields_named_id_or_elements_are_tracked(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # DOM clobbering: in a form, form.id and form.elements are shadowed by
    # fields named "id" and "elements" (a hidden <input name="id"> is in every
    # edit form of Rails or Django). formId() then returns the <input> element,
    # serialised as {}, so focus_form, change_form and submit_form of that form
    # all fail schema validation (atomic.failed_events: "$.formId: {} is not of
    # type 'string'"); and `for (el of form.elements)` throws "n.elements is not
    # iterable" into the page, losing the submit. Use getAttribute("id") and
    # HTMLFormElement.prototype getters instead.
    url = site.page(
        "clobbered-forms.html",
        f'plowline("init", {{appId: "{app_id}"}}); plowline("enableFormTracking");',
        body='<form id="edit" onsubmit="return false"><input type="hidden" name="id"'
        ' value="42"><input name="q" id="q1"><button id="b1">go</button></form>'
        '<form id="odd" onsubmit="return false"><input name="elements" id="q2">'
        '<button id="b2">go</button></form>',
    )
    tab = new_tab()
    console = collect_console(tab.page)
    tab.page.goto(url)
    tab.page.wait_for_function("() => window.plowline && !window.plowline.q")
    tab.page.fill("#q1", "hello")
    tab.page.click("#b1")
    tab.page.fill("#q2", "world")
    tab.page.click("#b2")
    tab.page.wait_for_timeout(500)
    assert page_errors(console) == []
    found = wait_for_events(up, app_id, 6)  # per form: focus, change, submit
    submits = [unstruct(e)[1] for e in found if "submit_form" in unstruct(e)[0]]
    assert sorted(s["formId"] for s in submits) == ["edit", "odd"]


def test_a_revealed_password_is_never_captured(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # "Password fields are never captured, whatever the options" is checked
    # only as el.type == "password" at the time of the event. Login forms with
    # a "show password" button switch the field to type="text": from then on its
    # focus_form, change_form and its submit_form entry carry the password in
    # clear (here "hunter2"). A field that is or was a password field (or has
    # autocomplete="current-password"/"new-password") must never be captured.
    url = site.page(
        "reveal.html",
        f'plowline("init", {{appId: "{app_id}"}}); plowline("enableFormTracking");',
        body='<form id="login" onsubmit="return false">'
        '<input name="user" id="user" autocomplete="username">'
        '<input type="password" name="pw" id="pw" autocomplete="current-password">'
        '<button type="button" id="show" onclick="pw.type=\'text\'">show</button>'
        '<button id="go">log in</button></form>',
    )
    tab = new_tab()
    tab.page.goto(url)
    tab.page.wait_for_function("() => window.plowline && !window.plowline.q")
    tab.page.fill("#user", "ann")
    tab.page.click("#show")
    tab.page.fill("#pw", "hunter2")
    tab.page.click("#go")
    tab.wait_idle()
    time.sleep(2)
    sent = up.rows(
        "select cast(unstruct_event as varchar) as u from atomic.events "
        f"where app_id = '{app_id}'"
    )
    assert sent, "no form events arrived"
    assert not [r for r in sent if "hunter2" in r["u"]]


def test_links_inside_an_open_shadow_root_are_tracked(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # Link clicks are found from event.target, which a document listener sees
    # retargeted to the shadow host: links inside web components (open shadow
    # roots) are never tracked (nor decorated for cross-domain linking). The
    # link should be found through event.composedPath().
    url = site.page(
        "shadow.html",
        f'plowline("init", {{appId: "{app_id}"}}); '
        'plowline("enableLinkClickTracking");',
        body='<div id="host"></div><script>document.getElementById("host")'
        ".attachShadow({mode: 'open'}).innerHTML = "
        '\'<a id="inside" href="#shadow">in the shadow</a>\'</script>',
    )
    tab = new_tab()
    tab.page.goto(url)
    tab.page.wait_for_function("() => window.plowline && !window.plowline.q")
    tab.page.click("#inside")  # Playwright's CSS pierces open shadow roots
    [click] = wait_for_events(up, app_id, 1)
    assert unstruct(click)[1]["targetUrl"].endswith("#shadow")


def test_truncated_link_text_does_not_split_an_emoji(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # trackContent keeps innerText.slice(0, 1000): UTF-16 code units. When the
    # 1000th unit is the first half of an emoji, the event carries a lone
    # surrogate ("\ud83d" in the JSON), which enrich rejects ("no low surrogate
    # in string"): the link click ends up in atomic.failed_events. The same
    # slicing is used for error messages, stack traces and file names. Cut on a
    # code-point boundary so the event arrives.
    text = "a" * 999 + "\U0001f600" + "b" * 10
    url = site.page(
        "emoji-link.html",
        f'plowline("init", {{appId: "{app_id}"}});'
        'plowline("enableLinkClickTracking", {trackContent: true});',
        body=f'<a id="l" href="#emoji">{text}</a>',
    )
    tab = new_tab()
    tab.page.goto(url)
    tab.page.wait_for_function("() => window.plowline && !window.plowline.q")
    tab.page.click("#l")
    [click] = wait_for_events(up, app_id, 1)
    assert unstruct(click)[1]["elementContent"].startswith("a" * 999)


# --- identity and privacy -----------------------------------------------------


def test_blocked_cookies_do_not_start_a_session_per_event(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # With cookies blocked for the site (document.cookie reads "" and ignores
    # writes, as in Chromium with cookies blocked, or a cross-site iframe under
    # third-party-cookie blocking), forEvent() finds no _sp_ses cookie for
    # every event and starts a new session each time: a page view and two
    # events get three session ids and domain_sessionidx 1, 2, 3. The identity
    # kept in memory should keep one session for the life of the page.
    tab = new_tab()
    tab.context.add_init_script(
        "Object.defineProperty(Document.prototype, 'cookie',"
        " {configurable: true, get() { return '' }, set(v) {}});"
    )
    url = site.page(
        "no-cookies.html",
        f'plowline("init", {{appId: "{app_id}"}}); plowline("trackPageView");'
        + struct("one")
        + struct("two"),
    )
    tab.page.goto(url)
    found = wait_for_events(up, app_id, 3)
    assert len({e["domain_userid"] for e in found}) == 1
    assert len({e["domain_sessionid"] for e in found}) == 1, [
        (e["domain_sessionid"], e["domain_sessionidx"]) for e in found
    ]


def test_events_tracked_anonymously_are_never_sent_with_cookies_or_ip(
    site: Any, up: Any, new_tab: Any, app_id: str
) -> None:
    # Anonymity is decided when a request is made (isAnonymous() in send.js),
    # not when the event was tracked. Events tracked in anonymous mode that
    # are still queued (bufferSize, or a collector outage) when the visitor
    # grants consent go out with credentials and without SP-Anonymous: the
    # collector sets and records its network user id and the IP address for
    # events the visitor had not consented to. Each event should be sent the
    # way it was tracked (anonymous events always anonymously).
    url = site.page(
        "consent-later.html",
        f'plowline("init", {{appId: "{app_id}", anonymous: true, bufferSize: 3}});'
        + struct("anon-1")
        + struct("anon-2")
        + 'plowline("setConsent", true);'
        + struct("consented"),
    )
    tab = new_tab()
    tab.page.goto(url)
    found = wait_for_events(up, app_id, 3)
    anonymous = [e for e in found if e["se_action"].startswith("anon")]
    assert len(anonymous) == 2
    for event in anonymous:
        assert event["domain_userid"] is None
        assert event["network_userid"] == "00000000-0000-0000-0000-000000000000", event
        assert event["user_ipaddress"] is None, event
