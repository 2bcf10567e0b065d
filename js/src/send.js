// The emitter: a queue in localStorage shared by the site's tabs, sent by GET
// (one event per pixel request) or POST (payload_data batches under
// maxPostBytes), retried with backoff, and flushed with sendBeacon when the
// page is hidden or closed. An event leaves the queue only once the collector
// answered 2xx for it (or refused it for good with a 4xx), so a reload or a
// collector outage loses nothing.
//
// The stored queue is the truth: every change reads it, changes it and writes
// it back at once (no tab overwrites another's events). A tab sending events
// marks them in it (`_f`: until when they are claimed) so that no other tab
// sends them meanwhile; `_a` marks an event tracked anonymously.
import { now, on, safe, warn } from "./util.js";

const PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4";
// Browsers refuse keepalive requests (and beacons) whose bodies add up to
// more than 64 KiB: larger ones go without keepalive.
const KEEPALIVE_BYTES = 60000;

export function createEmitter(cfg) {
  const post = (cfg.method || "post") != "get";
  const collector = cfg.collector.replace(/\/$/, "");
  const postUrl = collector + "/com.snowplowanalytics.snowplow/tp2";
  const maxBytes = cfg.maxPostBytes || 40000;
  const maxGet = cfg.maxGetBytes || 8000;
  const bufferSize = post ? cfg.bufferSize || 1 : 1;
  const maxDelay = (cfg.maxRetryDelay ?? 60) * 1000;
  const timeout = (cfg.requestTimeout ?? 10) * 1000;
  const key = "plowline_queue_" + cfg.namespace;
  let mem = "[]";
  const memory = { getItem: () => mem, setItem: (k, v) => (mem = v) };
  let store = memory;
  try {
    if (cfg.localStorage !== false) localStorage.getItem(key), (store = localStorage); // throws where blocked
  } catch (e) { /* then the queue lives in memory only */ }
  const flying = new Map(); // eid -> sent with keepalive, for this tab's request in flight
  const tooLong = new Map(); // eid -> 1: GET without entities, 2: POST (after a 414)
  let busy = false;
  let failing = false;
  let delay = 0;
  let timer = 0; // the retry timer, while backing off
  let drain = 0; // events still to send of those waiting when sending started
  let left = false; // pagehide: the page is being unloaded

  const read = () => {
    try {
      return JSON.parse(store.getItem(key)) || [];
    } catch (e) {
      return []; // unreadable: start empty
    }
  };
  /** Read-modify-write of the stored queue. */
  const update = (change) => {
    const text = JSON.stringify(change(read()).slice(-(cfg.maxQueueSize || 1000)));
    try {
      store.setItem(key, text);
    } catch (e) { // full or blocked storage: the queue lives in memory from now on
      store = memory;
      mem = text;
    }
  };
  const ids = (events) => new Set(events.map((e) => e.eid));
  const free = (e) => !(e._f > now());

  const bytes = (s) => new TextEncoder().encode(s).length;
  const clean = ({ _a, _f, ...e }) => e;
  const noEntities = ({ co, cx, ...e }) => e;
  const bodyOf = (events) => {
    const stm = "" + now();
    return JSON.stringify({ schema: PAYLOAD_DATA, data: events.map((e) => ({ ...clean(e), stm })) });
  };
  // The events at the head of `list` that go in one POST: tracked alike
  // (anonymously or not), within maxPostBytes; one event at least.
  const batchOf = (list) => {
    let n = 0, size = 100;
    while (n < list.length && list[n]._a == list[0]._a
      && (size += bytes(JSON.stringify(list[n])) + 30) <= maxBytes) n++;
    return list.slice(0, n || 1);
  };

  /** One request for `events`; resolves to the response, rejects on a network error or timeout. */
  const request = (events) => {
    const anonymous = events[0]._a;
    const ctl = new AbortController();
    const init = {
      signal: ctl.signal,
      credentials: anonymous ? "omit" : "include",
      headers: anonymous ? { "SP-Anonymous": "*" } : {},
    };
    const level = tooLong.get(events[0].eid);
    const get = (e) => collector + "/i?" + Object.entries({ stm: now(), ...clean(e) })
      .map(([k, v]) => k + "=" + encodeURIComponent(v)).join("&");
    let url, body;
    if (!post) {
      let e = events[0];
      url = get(e);
      if (level || url.length > maxGet) {
        // Too long for GET: the entities go first; too long even without
        // them, it goes by POST (with the entities when they fit maxPostBytes).
        const rest = noEntities(e);
        if (level > 1 || get(rest).length > maxGet) body = bodyOf([bytes(bodyOf(events)) > maxBytes ? (e = rest) : e]);
        else url = get((e = rest));
        if (e == rest && (events[0].co || events[0].cx)) warn("GET request too long, entities left out", e.eid);
      }
    }
    if (post || body) {
      url = postUrl;
      init.method = "POST";
      init.body = body || bodyOf(events);
      init.headers["Content-Type"] = "application/json; charset=UTF-8";
    }
    init.keepalive = !init.body || bytes(init.body) < KEEPALIVE_BYTES;
    events.forEach((e) => flying.set(e.eid, init.keepalive));
    const t = setTimeout(() => ctl.abort(), timeout);
    return fetch(url, init).finally(() => clearTimeout(t));
  };

  const done = (events) => {
    const gone = ids(events);
    gone.forEach((id) => flying.delete(id));
    update((list) => list.filter((e) => !gone.has(e.eid)));
    busy = failing = false;
    delay = 0;
    drain -= events.length;
    flush(drain > 0);
  };
  const retry = (events, again) => {
    const mine = ids(events);
    mine.forEach((id) => flying.delete(id));
    // Release the claim; put back those that page-hiding handed to the request.
    update((list) => [...events.filter((e) => !list.some((x) => x.eid == e.eid)), ...list]
      .map((e) => (mine.has(e.eid) ? { ...e, _f: 0 } : e)));
    busy = false;
    if (again) return flush(true);
    failing = true;
    delay = Math.min(delay ? delay * 2 : 1000, maxDelay);
    timer = setTimeout(safe(() => {
      timer = 0;
      flush(true);
    }), delay);
  };

  /** Send what is queued, one request at a time; nothing while backing off. */
  function flush(force) {
    if (busy || timer) return;
    let events = [];
    update((list) => {
      const waiting = list.filter(free);
      if (!waiting.length || (!force && waiting.length < bufferSize && !failing)) return list;
      events = post ? batchOf(waiting) : waiting.slice(0, 1);
      drain = waiting.length;
      const mine = ids(events);
      const until = now() + timeout + 1000;
      return list.map((e) => (mine.has(e.eid) ? { ...e, _f: until } : e));
    });
    if (!events.length) return;
    busy = true;
    // Unloading rejects the page's side of a keepalive request, which goes on
    // without it: its events are left to it, not sent again.
    const failed = safe(() => (left && flying.get(events[0].eid)
      ? events.forEach((e) => flying.delete(e.eid)) : retry(events)));
    try {
      request(events).then(safe((r) => {
        // Too long for GET: again at once, without entities, then by POST.
        const level = tooLong.get(events[0].eid) || 0;
        if (r.status == 414 && level < 2) return tooLong.set(events[0].eid, level + 1), retry(events, 1);
        // 4xx but timeouts and rate limits: the collector will never take these.
        const refused = r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429;
        r.ok || refused ? done(events) : retry(events);
      }), failed);
    } catch (e) {
      failed();
    }
  }

  // Hidden or closing: hand what waits to the browser (sendBeacon, or fetch
  // keepalive for anonymous events, as a beacon would carry cookies). Events
  // of a keepalive request in flight are left to it: it outlives the page.
  // While the collector fails, everything stays stored for the next page, and
  // the events in flight are released, their outcome unknown.
  const leave = () => {
    const gone = new Set();
    if (failing) {
      flying.forEach((k, id) => gone.add(id));
      return update((list) => list.map((e) => (gone.has(e.eid) ? { ...e, _f: 0 } : e)));
    }
    let list = read().filter(free);
    while (list.length) {
      const events = batchOf(list);
      const body = bodyOf(events);
      list = list.slice(events.length);
      if (bytes(body) >= KEEPALIVE_BYTES) continue; // too big to outlive the page: next page
      const ok = events[0]._a
        ? (fetch(postUrl, {
          method: "POST", body, keepalive: true, credentials: "omit",
          headers: { "SP-Anonymous": "*", "Content-Type": "application/json; charset=UTF-8" },
        }).catch(() => {}), true)
        : navigator.sendBeacon(postUrl, new Blob([body], { type: "application/json" }));
      if (!ok) break;
      events.forEach((e) => gone.add(e.eid));
    }
    flying.forEach((keep, id) => keep && gone.add(id));
    update((list) => list.filter((e) => !gone.has(e.eid)));
  };
  on(document, "visibilitychange", () => document.hidden && leave());
  on(window, "pagehide", () => {
    left = true;
    leave();
  });
  on(window, "pageshow", () => (left = false));
  on(window, "online", () => {
    if (!failing) return;
    clearTimeout(timer);
    timer = 0;
    flush(true);
  });
  flush(true);

  return {
    add(event) {
      if (bytes(bodyOf([post ? event : noEntities(event)])) > maxBytes) {
        return warn("event dropped, over maxPostBytes:", event.e, event.eid);
      }
      update((list) => [...list, event]);
      flush();
    },
    flush,
  };
}
