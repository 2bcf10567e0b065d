// First-party identity in Snowplow's cookie layout (spec section 4), so a site
// switching trackers keeps its users and sessions:
//   _sp_id.<hash>  duid.createTs.visitCount.visitTs.lastVisitTs.sessionId.
//                  previousSessionId.firstEventId.firstEventTsMs.eventIndex
//   _sp_ses.<hash> "*", expiring after the session timeout; its absence starts
//                  a new session.
// <hash> is the first 4 hex digits of SHA-1(cookie domain or host + cookie path).
import { sha1, uuid } from "./util.js";

export function createIdentity(cfg) {
  const path = cfg.cookiePath || "/";
  const domain = cfg.cookieDomain;
  const hash = sha1((domain || location.hostname) + path).slice(0, 4);
  const prefix = cfg.cookieName || "_sp_";
  const idName = prefix + "id." + hash;
  const sesName = prefix + "ses." + hash;
  const secure = cfg.cookieSecure ?? location.protocol == "https:";
  const sessionSeconds = cfg.sessionTimeout ?? 1800;
  let id = null;
  // Whether the cookies written last time could be read back: where cookies
  // are blocked, the ids and the session live in memory for the page's life.
  let stick = true;
  let lastTs = 0;

  const read = (name) => {
    const m = document.cookie.match(
      "(?:^|; )" + name.replace(/\./g, "\\.") + "=([^;]*)",
    );
    return m && decodeURIComponent(m[1]);
  };
  const write = (name, value, seconds) => {
    document.cookie =
      name +
      "=" +
      value +
      "; Max-Age=" +
      seconds +
      "; Path=" +
      path +
      (domain ? "; Domain=" + domain : "") +
      "; SameSite=" +
      (cfg.cookieSameSite || "Lax") +
      (secure ? "; Secure" : "");
  };
  const load = () => {
    const f = (read(idName) || "").split(".");
    return f[0]
      ? {
          duid: f[0],
          created: +f[1] || 0,
          visits: +f[2] || 0,
          visitTs: +f[3] || 0,
          lastVisitTs: +f[4] || 0,
          sid: f[5] || "",
          prevSid: f[6] || "",
          firstEventId: f[7] || "",
          firstEventTs: f[8] || "",
          index: +f[9] || 0,
        }
      : null;
  };
  const save = () => {
    write(
      idName,
      [
        id.duid,
        id.created,
        id.visits,
        id.visitTs,
        id.lastVisitTs,
        id.sid,
        id.prevSid,
        id.firstEventId,
        id.firstEventTs,
        id.index,
      ].join("."),
      cfg.cookieLifetime ?? 63072000,
    );
    write(sesName, "*", sessionSeconds);
  };

  return {
    /**
     * The identifiers of one new event, moving the session on: a new session
     * when the session cookie has run out (or was never set).
     */
    forEvent(eventId, dtm) {
      const seconds = Math.floor(dtm / 1000);
      const expired =
        !read(sesName) && (stick || !id || dtm - lastTs > sessionSeconds * 1000);
      id = load() || id;
      if (!id)
        id = {
          duid: uuid(),
          created: seconds,
          visits: 0,
          visitTs: seconds,
          lastVisitTs: 0,
          sid: "",
          prevSid: "",
          index: 0,
        };
      if (expired || !id.sid) {
        id.visits++;
        id.prevSid = id.sid;
        id.sid = uuid();
        id.lastVisitTs = id.visits > 1 ? id.visitTs : 0;
        id.visitTs = seconds;
        id.firstEventId = eventId;
        id.firstEventTs = dtm;
        id.index = 0;
      }
      id.index++;
      save();
      stick = !!read(sesName);
      lastTs = dtm;
      return id;
    },
    /** The domain user id, for cross-domain links. */
    duid: () => (load() || id || {}).duid,
    /** Forget everything: delete both cookies and the ids in memory. */
    clear() {
      write(idName, "", 0);
      write(sesName, "", 0);
      id = null;
      stick = true;
    },
  };
}
