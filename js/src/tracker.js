// The tracker: builds Tracker Protocol events (spec section 1) and hands them
// to the emitter. Every value sent is a string; empty ones are left out.
import { createEmitter } from "./send.js";
import { createIdentity } from "./identity.js";
import { base64url, now, uuid, warn } from "./util.js";

export const VERSION = "plowline-js-0.1.0";
const IGLU = "iglu:com.snowplowanalytics.snowplow/";
const CONTEXTS = IGLU + "contexts/jsonschema/1-0-0";
const UNSTRUCT = IGLU + "unstruct_event/jsonschema/1-0-0";
const WEB_PAGE = IGLU + "web_page/jsonschema/1-0-0";

/** True when the browser asks not to be tracked (Do Not Track or Global Privacy
 * Control). */
const privacySignal = () =>
  [navigator.doNotTrack, window.doNotTrack, navigator.msDoNotTrack].some(
    (v) => v == "1" || v == "yes",
  ) || navigator.globalPrivacyControl === true;

export function createTracker(cfg) {
  cfg.namespace = cfg.namespace || "pl";
  const dnt = cfg.respectDoNotTrack && privacySignal();
  // respectDoNotTrack: true sends nothing; "anonymous" sends anonymously.
  const off = dnt && cfg.respectDoNotTrack != "anonymous";
  let anonymous = !!(cfg.anonymous || dnt);
  const identity = createIdentity(cfg);
  const emitter = createEmitter(cfg);
  const post = (cfg.method || "post") != "get";
  const base64 = cfg.encodeBase64 ?? !post;
  const globals = [];
  let userId = null;
  let pageViewId = uuid();
  let customUrl, customReferrer;
  if (anonymous) identity.clear();

  const entitiesFor = (payload, context) => {
    const list = [...(context || [])];
    for (const g of globals) {
      try {
        const found = typeof g == "function" ? g(payload) : g;
        if (found) list.push(...[].concat(found));
      } catch (e) {
        // the event goes without that context
        warn("global context failed", e);
      }
    }
    if (cfg.webPage !== false)
      list.push({ schema: WEB_PAGE, data: { id: pageViewId } });
    return list;
  };
  const json = (payload, plain, encoded, value) => {
    const text = JSON.stringify(value);
    if (base64) payload[encoded] = base64url(text);
    else payload[plain] = text;
  };

  /** Build one event of type `e` with its fields, stamp it and queue it. */
  function track(e, fields, context, selfDescribing) {
    if (off) return;
    const dtm = now();
    const eid = uuid();
    const doc = document.documentElement;
    const payload = {
      e,
      eid,
      dtm,
      tv: VERSION,
      tna: cfg.namespace,
      aid: cfg.appId,
      p: cfg.platform || "web",
      url: customUrl || location.href,
      page: document.title,
      refr: customReferrer || document.referrer,
      tz: Intl.DateTimeFormat().resolvedOptions().timeZone,
      lang: navigator.language,
      cs: document.characterSet,
      cookie: navigator.cookieEnabled ? 1 : 0,
      res: screen.width + "x" + screen.height,
      cd: screen.colorDepth,
      vp: innerWidth + "x" + innerHeight,
      ds: doc.scrollWidth + "x" + doc.scrollHeight,
      ...fields,
    };
    if (!anonymous) {
      const id = identity.forEvent(eid, dtm);
      Object.assign(payload, {
        duid: id.duid,
        sid: id.sid,
        vid: id.visits,
        uid: userId,
      });
    }
    if (selfDescribing)
      json(payload, "ue_pr", "ue_px", { schema: UNSTRUCT, data: selfDescribing });
    for (const k in payload) {
      if (payload[k] == null || payload[k] === "") delete payload[k];
      else payload[k] = "" + payload[k];
    }
    const entities = entitiesFor(payload, context);
    if (entities.length)
      json(payload, "co", "cx", { schema: CONTEXTS, data: entities });
    // Anonymity is the event's own: it is sent the way it was tracked.
    if (anonymous) payload._a = 1;
    emitter.add(payload);
    return payload;
  }

  const setAnonymous = (on) => {
    anonymous = !!(on || dnt);
    if (anonymous) {
      identity.clear();
      userId = null;
    }
  };

  return {
    track,
    emitter,
    duid: () => (anonymous ? null : identity.duid()),
    newPageView: () => (pageViewId = uuid()),
    setUserId: (id) => (userId = anonymous ? null : id),
    setAnonymous,
    setCustomUrl: (url) => (customUrl = url),
    setReferrerUrl: (url) => (customReferrer = url),
    addGlobalContexts: (list) => globals.push(...list),
    removeGlobalContexts: (list) =>
      list.forEach((g) => globals.includes(g) && globals.splice(globals.indexOf(g), 1)),
    clearGlobalContexts: () => (globals.length = 0),
  };
}
