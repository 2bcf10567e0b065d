// The emitter: a queue mirrored in localStorage, sent by GET (one event per
// pixel request) or POST (payload_data batches under maxPostBytes), retried
// with backoff, and flushed with sendBeacon when the page is hidden or closed.
// An event leaves the queue only once the collector answered 2xx for it (or
// refused it for good with a 4xx), so a reload or a collector outage loses nothing.
import { now, on } from "./util.js";

const PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4";

export function createEmitter(cfg, isAnonymous) {
  const post = (cfg.method || "post") != "get";
  const collector = cfg.collector.replace(/\/$/, "");
  const postUrl = collector + "/com.snowplowanalytics.snowplow/tp2";
  const maxBytes = cfg.maxPostBytes || 40000;
  const bufferSize = post ? cfg.bufferSize || 1 : 1;
  const maxDelay = (cfg.maxRetryDelay ?? 60) * 1000;
  const key = "plowline_queue_" + cfg.namespace;
  let store;
  try {
    store = cfg.localStorage !== false && localStorage; // throws where storage is blocked
  } catch (e) { /* then the queue lives in memory only */ }
  let queue = [];
  let inFlight = 0; // how many events at the head of the queue are being sent
  let failing = false;
  let delay = 0;
  let timer;

  const save = (events = queue) => {
    try {
      store && store.setItem(key, JSON.stringify(events.slice(-(cfg.maxQueueSize || 1000))));
    } catch (e) { /* full or blocked storage: the queue lives in memory only */ }
  };
  try {
    queue = (store && JSON.parse(store.getItem(key))) || [];
  } catch (e) { /* unreadable: start empty */ }

  const bodyOf = (events) => {
    const stm = "" + now();
    return JSON.stringify({ schema: PAYLOAD_DATA, data: events.map((e) => ({ ...e, stm })) });
  };
  // Events from `start` on whose batch fits maxPostBytes; one event at least.
  const batchFrom = (start) => {
    let end = start, bytes = 100;
    while (end < queue.length) {
      bytes += new TextEncoder().encode(JSON.stringify(queue[end])).length + 30;
      if (bytes > maxBytes && end > start) break;
      end++;
    }
    return queue.slice(start, end);
  };
  const request = (events, usePost = post) => {
    const anonymous = isAnonymous();
    const init = {
      keepalive: true,
      credentials: anonymous ? "omit" : "include",
      headers: anonymous ? { "SP-Anonymous": "*" } : {},
    };
    if (!usePost) {
      const qs = Object.entries({ stm: now(), ...events[0] })
        .map(([k, v]) => k + "=" + encodeURIComponent(v)).join("&");
      return fetch(collector + "/i?" + qs, init);
    }
    init.method = "POST";
    init.body = bodyOf(events);
    init.headers["Content-Type"] = "application/json; charset=UTF-8";
    return fetch(postUrl, init);
  };

  const sent = (n) => {
    queue.splice(0, n);
    inFlight = 0;
    failing = false;
    delay = 0;
    save();
    flush();
  };
  const retry = () => {
    inFlight = 0;
    failing = true;
    delay = Math.min(delay ? delay * 2 : 1000, maxDelay);
    clearTimeout(timer);
    timer = setTimeout(flush, delay);
  };

  /** Send what is queued, one request at a time. */
  function flush(force) {
    if (inFlight || !queue.length || (!force && queue.length < bufferSize && !failing)) return;
    clearTimeout(timer);
    const events = post ? batchFrom(0) : queue.slice(0, 1);
    inFlight = events.length;
    request(events).then((r) => {
      // 4xx but timeouts and rate limits: the collector will never take these.
      const refused = r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429;
      r.ok || refused ? sent(events.length) : retry();
    }, retry);
  }

  // Hidden or closing: hand what waits to the browser. Events of a request in
  // flight are left to it (fetch keepalive outlives the page); while the
  // collector fails, everything stays in localStorage for the next page.
  const leave = (closing) => {
    if (failing) return save();
    let start = inFlight;
    while (start < queue.length) {
      const events = batchFrom(start);
      const ok = isAnonymous()
        ? (request(events, true).catch(() => {}), true) // sendBeacon would send cookies
        : navigator.sendBeacon(postUrl, new Blob([bodyOf(events)], { type: "application/json" }));
      if (!ok) break;
      queue.splice(start, events.length);
    }
    save(closing ? queue.slice(inFlight) : queue);
  };
  on(document, "visibilitychange", () => document.hidden && leave());
  on(window, "pagehide", () => leave(true));
  on(window, "online", () => failing && flush(true));
  flush(true);

  return {
    add(event) {
      queue.push(event);
      save();
      flush();
    },
    flush,
  };
}
