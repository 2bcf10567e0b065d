// Small helpers shared by the tracker's modules.

export const now = () => Date.now();

/** A random version 4 UUID (crypto.randomUUID is missing on plain-http pages). */
export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 15) | 64;
  b[8] = (b[8] & 63) | 128;
  const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join("");
  return [
    h.slice(0, 8),
    h.slice(8, 12),
    h.slice(12, 16),
    h.slice(16, 20),
    h.slice(20),
  ].join("-");
}

/** URL-safe base64 of the UTF-8 bytes of `s`, padding stripped (the JS
 * trackers' form). */
export function base64url(s) {
  let bin = "";
  for (const c of new TextEncoder().encode(s)) bin += String.fromCharCode(c);
  return btoa(bin).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

const rol = (x, n) => (x << n) | (x >>> (32 - n));

/** Hex SHA-1 of a string: only used to name the cookies the way Snowplow's
 * tracker does. */
export function sha1(s) {
  const b = Array.from(new TextEncoder().encode(s));
  const bits = b.length * 8;
  b.push(128);
  while (b.length % 64 != 56) b.push(0);
  for (let i = 7; i >= 0; i--) b.push(i > 3 ? 0 : (bits >>> (i * 8)) & 255);
  let h = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0];
  for (let o = 0; o < b.length; o += 64) {
    const w = [];
    for (let i = 0; i < 80; i++) {
      const j = o + 4 * i;
      w[i] =
        i < 16
          ? (b[j] << 24) | (b[j + 1] << 16) | (b[j + 2] << 8) | b[j + 3]
          : rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }
    let [a, x, c, d, e] = h;
    for (let i = 0; i < 80; i++) {
      const f =
        i < 20
          ? ((x & c) | (~x & d)) + 0x5a827999
          : i < 40
            ? (x ^ c ^ d) + 0x6ed9eba1
            : i < 60
              ? ((x & c) | (x & d) | (c & d)) + 0x8f1bbcdc
              : (x ^ c ^ d) + 0xca62c1d6;
      const t = (rol(a, 5) + f + e + w[i]) | 0;
      e = d;
      d = c;
      c = rol(x, 30);
      x = a;
      a = t;
    }
    h = h.map((v, i) => (v + [a, x, c, d, e][i]) | 0);
  }
  return h.map((v) => (v >>> 0).toString(16).padStart(8, "0")).join("");
}

/** Warn in the console: the tracker never throws into the page. */
export const warn = (...a) => console.warn("plowline:", ...a);

/** `fn` with every exception caught and logged instead of reaching the page. */
export const safe =
  (fn) =>
  (...a) => {
    try {
      return fn(...a);
    } catch (e) {
      warn(e);
    }
  };

/** An attribute read with the DOM's own method, so form fields named like it
 * cannot shadow it. */
export const attr = (el, name) => Element.prototype.getAttribute.call(el, name);

/** An element's class names as an array. */
export const classesOf = (el) => (attr(el, "class") || "").split(/\s+/).filter(Boolean);

/** True when the element has one of `names` among its classes. */
export const hasClass = (el, names) =>
  classesOf(el).some((c) => (names || []).includes(c));

/** A list option given as one value (or nothing) as a list (or undefined). */
export const list = (v) => (v == null ? v : [].concat(v));

/** At most `n` UTF-16 units of `s`, never cutting an emoji (a surrogate pair)
 * in two. */
export const cut = (s, n) => {
  s = "" + s;
  const c = s.charCodeAt(n - 1);
  return s.slice(0, c > 0xd7ff && c < 0xdc00 ? n - 1 : n);
};

export const on = (target, type, fn, capture = true) =>
  target.addEventListener(type, safe(fn), { capture, passive: true });
