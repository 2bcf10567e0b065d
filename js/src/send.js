// The emitter: a queue in localStorage shared by the site's tabs, sent by GET
// (one event per pixel request) or POST (payload_data batches under
// maxPostBytes), retried with backoff, and handed to sendBeacon when the page
// is hidden or closed. An event leaves the queue only once a request that
// carried it got a 2xx answer (or a 4xx refusal for good), so a reload or a
// collector outage loses nothing; a beacon gets no answer, so its events stay.
//
// Each event is stored under a key of its own (prefix + event id), so adding,
// claiming and removing one touch that key only and no tab's write can drop
// another tab's event; the queue is the set of such keys, in tracking order.
// A tab sending events marks them (`_f`: until when they are claimed) so that
// no other tab sends them meanwhile; `_b` marks an event handed to a beacon,
// `_a` one tracked anonymously, `_o` gives the order. Whether the collector
// is failing is stored too, for every tab to know.
import { now, on, safe, warn } from "./util.js";

const PAYLOAD_DATA =
  "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4";
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
  const prefix = "plowline_queue_" + cfg.namespace + ":";
  const failKey = "plowline_failing_" + cfg.namespace;
  const cap = cfg.maxQueueSize || 1000;
  const mem = new Map(); // key -> event: this tab's events that storage refused
  let store;
  try {
    if (cfg.localStorage !== false)
      (localStorage.getItem(failKey), (store = localStorage)); // throws where blocked
  } catch (e) {
    /* then the queue lives in memory only */
  }
  // eid -> sent with keepalive, for this tab's request in flight
  const flying = new Map();
  const tooLong = new Map(); // eid -> 1: GET without entities, 2: POST (after a 414)
  let busy = false;
  let failing = false;
  let delay = 0;
  let timer = 0; // the retry timer, while backing off
  let drain = 0; // events still to send of those waiting when sending started
  let left = false; // pagehide: the page is being unloaded
  let order = 0;

  const ls = (fn) => {
    try {
      return store && fn(store);
    } catch (e) {
      /* full or blocked */
    }
  };
  /** The queue: stored events and those only this tab holds, oldest first. */
  const read = () => {
    const found = new Map(mem);
    ls((s) => {
      for (let i = 0; i < s.length; i++) {
        const k = s.key(i);
        if (k.startsWith(prefix) && !found.has(k)) {
          try {
            found.set(k, JSON.parse(s.getItem(k)));
          } catch (e) {
            /* unreadable: skipped */
          }
        }
      }
    });
    return [...found.values()].filter((e) => e && e.eid).sort((x, y) => x._o - y._o);
  };
  const get = (e) => {
    const k = prefix + e.eid;
    return mem.get(k) || ls((s) => JSON.parse(s.getItem(k)));
  };
  /** Store one event; where storage is full, this tab keeps it in memory. */
  const put = (e) => {
    const k = prefix + e.eid;
    ls((s) => (s.setItem(k, JSON.stringify(e)), mem.delete(k), 1)) || mem.set(k, e);
  };
  const drop = (e) => {
    mem.delete(prefix + e.eid);
    ls((s) => s.removeItem(prefix + e.eid));
  };
  const setFailing = (on) => {
    failing = on;
    ls((s) => (on ? s.setItem(failKey, now()) : s.removeItem(failKey)));
  };
  // A queue of the previous version (one key holding a list) joins this one.
  ls((s) => {
    const old = "plowline_queue_" + cfg.namespace;
    (JSON.parse(s.getItem(old)) || []).forEach((e, i) => put({ ...e, _o: i }));
    s.removeItem(old);
  });
  const claim = (events, until, marks) =>
    events.forEach((e) => {
      const stored = get(e);
      if (stored) put({ ...stored, ...marks, _f: until });
    });
  const free = (e) => !(e._f > now());

  const bytes = (s) => new TextEncoder().encode(s).length;
  const clean = ({ _a, _f, _b, _o, ...e }) => e;
  const noEntities = ({ co, cx, ...e }) => e;
  const bodyOf = (events) => {
    const stm = "" + now();
    return JSON.stringify({
      schema: PAYLOAD_DATA,
      data: events.map((e) => ({ ...clean(e), stm })),
    });
  };
  // The events at the head of `list` that go in one POST: tracked alike
  // (anonymously or not), within maxPostBytes; one event at least.
  const batchOf = (list) => {
    let n = 0,
      size = 100;
    while (
      n < list.length &&
      list[n]._a == list[0]._a &&
      (size += bytes(JSON.stringify(list[n])) + 30) <= maxBytes
    )
      n++;
    return list.slice(0, n || 1);
  };

  /** One request for `events`; resolves to the response, rejects on a network
   * error or timeout. */
  const request = (events) => {
    const anonymous = events[0]._a;
    const ctl = new AbortController();
    const init = {
      signal: ctl.signal,
      credentials: anonymous ? "omit" : "include",
      headers: anonymous ? { "SP-Anonymous": "*" } : {},
    };
    const level = tooLong.get(events[0].eid);
    const get = (e) =>
      collector +
      "/i?" +
      Object.entries({ stm: now(), ...clean(e) })
        .map(([k, v]) => k + "=" + encodeURIComponent(v))
        .join("&");
    let url, body;
    if (!post) {
      let e = events[0];
      url = get(e);
      if (level || url.length > maxGet) {
        // Too long for GET: the entities go first; too long even without
        // them, it goes by POST (with the entities when they fit maxPostBytes).
        const rest = noEntities(e);
        if (level > 1 || get(rest).length > maxGet)
          body = bodyOf([bytes(bodyOf(events)) > maxBytes ? (e = rest) : e]);
        else url = get((e = rest));
        if (e == rest && (events[0].co || events[0].cx))
          warn("GET request too long, entities left out", e.eid);
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
    events.forEach((e) => (flying.delete(e.eid), drop(e)));
    busy = false;
    if (failing) setFailing(false);
    delay = 0;
    drain -= events.length;
    flush(drain > 0);
  };
  const retry = (events, again) => {
    events.forEach((e) => flying.delete(e.eid));
    claim(events, 0); // released (unless another tab confirmed them meanwhile)
    busy = false;
    if (again) return flush(true);
    setFailing(true);
    delay = Math.min(delay ? delay * 2 : 1000, maxDelay);
    timer = setTimeout(
      safe(() => {
        timer = 0;
        flush(true);
      }),
      delay,
    );
  };

  /** Send what is queued, one request at a time; nothing while backing off. */
  function flush(force) {
    if (busy || timer) return;
    const waiting = read().filter(free);
    if (!waiting.length || (!force && waiting.length < bufferSize && !failing)) return;
    const events = post ? batchOf(waiting) : waiting.slice(0, 1);
    drain = waiting.length;
    claim(events, now() + timeout + 1000);
    if (!events.length) return;
    busy = true;
    // Unloading rejects the page's side of a keepalive request, which goes on
    // without it: its events are left to it, not sent again.
    const failed = safe(() =>
      left && flying.get(events[0].eid)
        ? events.forEach((e) => flying.delete(e.eid))
        : retry(events),
    );
    try {
      request(events).then(
        safe((r) => {
          // Too long for GET: again at once, without entities, then by POST.
          const level = tooLong.get(events[0].eid) || 0;
          if (r.status == 414 && level < 2)
            return (tooLong.set(events[0].eid, level + 1), retry(events, 1));
          // 4xx but timeouts and rate limits: the collector will never take these.
          const refused =
            r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429;
          r.ok || refused ? done(events) : retry(events);
        }),
        failed,
      );
    } catch (e) {
      failed();
    }
  }

  // Hidden or closing: hand what waits to the browser (sendBeacon, or fetch
  // keepalive for anonymous events, as a beacon would carry cookies), unless
  // the collector is failing (known to any tab): then it waits for the next
  // page. Neither answers the page, so those events stay stored, claimed for
  // a while (long enough for the answer's `sp` cookie to be set), then sent
  // again by fetch until one is answered 2xx. Events of a keepalive request
  // in flight are left to it, and stay stored the same way.
  const leave = () => {
    if (failing || ls((s) => s.getItem(failKey))) return;
    let list = read().filter(free);
    while (list.length) {
      const events = batchOf(list);
      const body = bodyOf(events);
      list = list.slice(events.length);
      // Too big to outlive the page: the next page sends it.
      if (bytes(body) >= KEEPALIVE_BYTES) continue;
      const ok = events[0]._a
        ? (fetch(postUrl, {
            method: "POST",
            body,
            keepalive: true,
            credentials: "omit",
            headers: {
              "SP-Anonymous": "*",
              "Content-Type": "application/json; charset=UTF-8",
            },
          }).catch(() => {}),
          true)
        : navigator.sendBeacon(postUrl, new Blob([body], { type: "application/json" }));
      if (!ok) break;
      claim(events, now() + timeout + 1000, { _b: now() });
    }
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
      const list = read();
      // The oldest go first.
      list.slice(0, Math.max(0, list.length + 1 - cap)).forEach(drop);
      put({ ...event, _o: now() * 1000 + (order++ % 1000) });
      flush();
    },
    flush,
  };
}
