// Plowline's browser tracker. The page talks to it through one global function:
//   plowline("init", {appId: "shop", collector: "https://c.example.com"});
//   plowline("trackPageView");
// Calls made before this script loaded wait in plowline.q (the loader snippet
// puts them there) and run in order once it has.
import { VERSION, createTracker } from "./tracker.js";
import { attr, classesOf, cut, hasClass, list, now, on, safe, warn } from "./util.js";

const IGLU = "iglu:com.snowplowanalytics.snowplow/";
const script = document.currentScript;
let tracker;
let activity; // {minimumVisitLength, heartbeatDelay} once enabled
let pingTimer;
let lastActive = 0;
let lastCheck = 0;
let scroll;

const selfDescribing = (name, version, data, context) =>
  tracker.track("ue", {}, context, {
    schema: IGLU + name + "/jsonschema/" + version,
    data,
  });

// --- page views and page pings ------------------------------------------------

const offsets = () => [Math.round(scrollX), Math.round(scrollY)];
const resetScroll = () => {
  const [x, y] = offsets();
  scroll = [x, x, y, y];
};

function checkActivity() {
  if (document.hidden) return;
  if (lastActive > lastCheck) {
    const [mix, max, miy, may] = scroll;
    tracker.track(
      "pp",
      { pp_mix: mix, pp_max: max, pp_miy: miy, pp_may: may },
      activity.context,
    );
    resetScroll();
  }
  lastCheck = now();
}

function startPings() {
  clearTimeout(pingTimer);
  if (!activity) return;
  lastActive = 0;
  lastCheck = now();
  resetScroll();
  const heartbeat = (activity.heartbeatDelay ?? 10) * 1000;
  pingTimer = setTimeout(
    safe(() => {
      pingTimer = setInterval(safe(checkActivity), heartbeat);
      checkActivity();
    }),
    (activity.minimumVisitLength ?? 5) * 1000 || heartbeat,
  );
}

function noteActivity(event) {
  lastActive = now();
  if (event.type == "scroll" && scroll) {
    const [x, y] = offsets();
    scroll = [
      Math.min(scroll[0], x),
      Math.max(scroll[1], x),
      Math.min(scroll[2], y),
      Math.max(scroll[3], y),
    ];
  }
}

// --- links ---------------------------------------------------------------------

// The link clicked, also inside open shadow roots (event.target is the host there).
const linkOf = (event) =>
  (event.composedPath ? event.composedPath() : [event.target]).find(
    (n) => n.matches && n.matches("a[href],area[href]"),
  );

function decorate(link) {
  const domains = tracker.cfg.crossDomainLinker;
  const duid = tracker.duid();
  if (!domains || !duid || link.hostname == location.hostname) return;
  const wanted =
    typeof domains == "function"
      ? domains(link)
      : list(domains).includes(link.hostname);
  if (!wanted) return;
  const url = new URL(link.href);
  url.searchParams.set("_sp", duid + "." + now());
  link.href = url.href;
}

function linkClick(event, options) {
  const link = linkOf(event);
  if (!link || (event.type == "auxclick" && event.button != 1)) return;
  if (
    options.allowlist
      ? !hasClass(link, options.allowlist)
      : hasClass(link, options.denylist)
  )
    return;
  const data = { targetUrl: link.href };
  if (link.id) data.elementId = link.id;
  if (classesOf(link).length) data.elementClasses = classesOf(link);
  if (link.target) data.elementTarget = link.target;
  if (options.trackContent && link.innerText)
    data.elementContent = cut(link.innerText.trim(), 1000);
  selfDescribing("link_click", "1-0-1", data, options.context);
}

// --- forms ---------------------------------------------------------------------

const FIELD_NODES = ["INPUT", "TEXTAREA", "SELECT"];
// Fields that are or ever were password fields ("show password" buttons make
// them type=text), or look like one: never captured.
const secret = new WeakSet();
const SECRET_NAME = /passw|passcode|pwd|secret/i;
let observer;
const seen = (changes) =>
  changes.forEach((c) => c.oldValue == "password" && secret.add(c.target));
// The observer's callback runs only after the handler that changed the type
// ("pw.type = 'text'; pw.focus()"): its pending records are taken first.
const isSecret = (el) =>
  (observer && seen(observer.takeRecords()), secret.has(el)) ||
  el.type == "password" ||
  /(current|new)-password/.test(attr(el, "autocomplete")) ||
  SECRET_NAME.test(el.name + " " + el.id);
function watchPasswords() {
  if (observer) return;
  observer = new MutationObserver(safe(seen));
  observer.observe(document, {
    subtree: true,
    attributeFilter: ["type"],
    attributeOldValue: true,
  });
  document.querySelectorAll("input[type=password]").forEach((el) => secret.add(el));
}
const NOT_VALUES = ["submit", "button", "reset", "image"];

function formOptions(options, form) {
  const forms = options.forms || {};
  if (
    !form ||
    (forms.allowlist
      ? !hasClass(form, forms.allowlist)
      : hasClass(form, forms.denylist))
  )
    return false;
  return true;
}

/** False for fields that are never captured: passwords, and those the options
 * exclude. */
function fieldAllowed(options, el) {
  const fields = options.fields || {};
  const name = el.name || el.id;
  if (!FIELD_NODES.includes(el.nodeName)) return false;
  if (isSecret(el)) return (secret.add(el), false);
  if (fields.allowlist) return fields.allowlist.includes(name);
  return !(fields.denylist || []).includes(name);
}

// Fields named "id" or "elements" shadow form.id and form.elements: read them
// through the DOM's own getters.
const formId = (form) => attr(form, "id") || attr(form, "name") || "";
const elementsOf = (form) =>
  Object.getOwnPropertyDescriptor(HTMLFormElement.prototype, "elements").get.call(form);
// The schemas' type enums hold input types only (null is not among them).
const typeOf = (el) => (el.nodeName == "INPUT" ? el.type : undefined);
const valueOf = (el) =>
  /^(checkbox|radio)$/.test(el.type) && !el.checked ? null : el.value;

function formField(event, options) {
  const el = event.target;
  if (!el.form || !formOptions(options, el.form) || !fieldAllowed(options, el)) return;
  const focus = event.type == "focusin";
  const data = {
    formId: formId(el.form),
    elementId: el.id || el.name || "",
    nodeName: el.nodeName,
    [focus ? "elementType" : "type"]: typeOf(el),
    elementClasses: classesOf(el),
    value: valueOf(el),
  };
  selfDescribing(focus ? "focus_form" : "change_form", "1-0-0", data, options.context);
}

function formSubmit(event, options) {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !formOptions(options, form)) return;
  const elements = [];
  for (const el of elementsOf(form)) {
    if (
      !el.name ||
      !fieldAllowed(options, el) ||
      NOT_VALUES.includes(el.type) ||
      valueOf(el) == null
    )
      continue;
    elements.push({
      name: el.name,
      value: el.value,
      nodeName: el.nodeName,
      type: typeOf(el),
    });
  }
  selfDescribing(
    "submit_form",
    "1-0-0",
    { formId: formId(form), formClasses: classesOf(form), elements },
    options.context,
  );
}

// --- errors --------------------------------------------------------------------

function trackError(error, context, extra) {
  const e = error || {};
  const data = {
    programmingLanguage: "JAVASCRIPT",
    message: cut(e.message || error || "JavaScript error", 2048),
    stackTrace: e.stack ? cut(e.stack, 8192) : null,
    exceptionName: e.name ? cut(e.name, 1024) : null,
    isFatal: true,
    ...extra,
  };
  selfDescribing("application_error", "1-0-1", data, context);
}

// --- the commands --------------------------------------------------------------

const commands = {
  init(options = {}) {
    if (tracker) return;
    const cfg = {
      collector: script && script.src ? new URL(script.src).origin : "",
      ...options,
    };
    tracker = createTracker(cfg);
    tracker.cfg = cfg;
    [
      "mousedown",
      "mousemove",
      "keydown",
      "scroll",
      "touchstart",
      "wheel",
      "click",
      "focus",
    ].forEach((type) => on(window, type, noteActivity));
    on(document, "mousedown", (e) => linkOf(e) && decorate(linkOf(e)));
    on(document, "keydown", (e) => linkOf(e) && decorate(linkOf(e)));
  },
  trackPageView(options = {}) {
    tracker.newPageView();
    tracker.track("pv", options.title ? { page: options.title } : {}, options.context);
    startPings();
  },
  enableActivityTracking(options = {}) {
    activity = options;
  },
  trackStructEvent(o) {
    tracker.track(
      "se",
      {
        se_ca: o.category,
        se_ac: o.action,
        se_la: o.label,
        se_pr: o.property,
        se_va: o.value,
      },
      o.context,
    );
  },
  trackSelfDescribingEvent(o) {
    tracker.track("ue", {}, o.context, o.event);
  },
  trackTransaction(o) {
    tracker.track(
      "tr",
      {
        tr_id: o.orderId,
        tr_af: o.affiliation,
        tr_tt: o.total,
        tr_tx: o.tax,
        tr_sh: o.shipping,
        tr_ci: o.city,
        tr_st: o.state,
        tr_co: o.country,
        tr_cu: o.currency,
      },
      o.context,
    );
    for (const i of o.items || []) {
      tracker.track(
        "ti",
        {
          ti_id: o.orderId,
          ti_sk: i.sku,
          ti_nm: i.name,
          ti_ca: i.category,
          ti_pr: i.price,
          ti_qu: i.quantity,
          ti_cu: i.currency || o.currency,
        },
        i.context,
      );
    }
  },
  trackLinkClick(o) {
    selfDescribing("link_click", "1-0-1", o.data || o, o.context);
  },
  enableLinkClickTracking(options = {}) {
    options = {
      ...options,
      allowlist: list(options.allowlist),
      denylist: list(options.denylist),
    };
    on(document, "click", (e) => linkClick(e, options));
    on(document, "auxclick", (e) => linkClick(e, options));
  },
  enableFormTracking(options = {}) {
    const lists = (o = {}) => ({
      allowlist: list(o.allowlist),
      denylist: list(o.denylist),
    });
    options = {
      ...options,
      forms: lists(options.forms),
      fields: lists(options.fields),
    };
    watchPasswords();
    on(document, "focusin", (e) => formField(e, options));
    on(document, "change", (e) => formField(e, options));
    on(document, "submit", (e) => formSubmit(e, options));
  },
  enableErrorTracking(options = {}) {
    on(window, "error", (e) =>
      trackError(e.error || e.message, options.context, {
        lineNumber: e.lineno || null,
        lineColumn: e.colno || null,
        fileName: cut(e.filename || "", 1024) || null,
      }),
    );
    on(window, "unhandledrejection", (e) => trackError(e.reason, options.context));
  },
  trackError(o) {
    trackError(o.error, o.context, { isFatal: false });
  },
  setUserId: (id) => tracker.setUserId(id),
  setCustomUrl: (url) => tracker.setCustomUrl(url),
  setReferrerUrl: (url) => tracker.setReferrerUrl(url),
  addGlobalContexts: (list) => tracker.addGlobalContexts(list),
  removeGlobalContexts: (list) => tracker.removeGlobalContexts(list),
  clearGlobalContexts: () => tracker.clearGlobalContexts(),
  enableAnonymousTracking: () => tracker.setAnonymous(true),
  disableAnonymousTracking: () => tracker.setAnonymous(false),
  setConsent: (granted) => tracker.setAnonymous(!granted),
  flush: () => tracker.emitter.flush(true),
};

function run(args) {
  const [name, ...rest] = args;
  if (typeof name == "function") return name();
  const command = commands[name];
  if (!command) return warn("unknown command " + name);
  if (!tracker && name != "init") return warn("call init before " + name);
  try {
    return command(...rest);
  } catch (e) {
    warn(name + " failed", e);
  }
}

// A second copy of the script (page template and tag manager) finds the
// first one's plowline() and leaves it alone.
if (!(window.plowline && window.plowline.version)) {
  const waiting = (window.plowline && window.plowline.q) || [];
  const api = (...args) => run(args);
  api.version = VERSION;
  window.plowline = api;
  waiting.forEach(run);
}
