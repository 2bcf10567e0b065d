/* The per-event loops of enrichment and raw-record reading, compiled.
 *
 * Each function does what a Python function of plowline.enrich or
 * plowline.rawlog does, for the values that are common and plain; anything
 * else it hands back (None, or the names it left), and the Python code deals
 * with it as before. Messages for bad values are written in Python only, so
 * that they stay in one place.
 *
 * - querystring_params(text): urls.querystring_params for ASCII text (str,
 *   or bytes as the str they decode to); None otherwise.
 * - apply_params(event, params, rules, late): the field of each parameter
 *   that has a rule, for values that convert on the plain path, in the order
 *   the Python code sets them; returns the parameters it left to
 *   transform.apply_params's Python path.
 * - ms_text(ms): convert.ms_to_tstamp's text, or None out of range.
 * - has_control(text): whether convert.tsv_safe would change text.
 * - decode_base64(text): selfdesc.decode_base64, both alphabets, lenient.
 * - split_url(url): the seven parts of urls.split_url, as a tuple.
 * - wrap_entities(document, prefix, known, single): the entities of a
 *   contexts or unstruct_event envelope, re-wrapped as selfdesc does.
 * - lengths_ok(event, limits): whether no value is longer than its field's
 *   limit.
 * - tsv_row(fields, index): the enriched TSV line, as UTF-8 bytes.
 * - record_from_dict(data, cls, slots, known): rawlog.record._record_from_dict
 *   for a plain record; None otherwise.
 * - record_from_line(line, loads, cls, slots, known): rawlog.record's
 *   decode_record for a plain line; None otherwise.
 * - count_brackets(data): selfdesc.json_brackets.
 * - base_event(head, referer_url, collector_ms, params): the base steps of
 *   Enricher.enrich_event for one plain event, in one call, using the
 *   functions above and what configure_base was given; None for any other
 *   event, which the Python steps then take from the start.
 *
 * Dicts are taken only when all their keys are exact str: then no lookup or
 * store here can run Python code that would change them mid-loop. Where a
 * lookup in a dict of the caller's may still run such code (the schema cache
 * of wrap_entities), what is read from the document is held meanwhile.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Kinds of parameter rule; the numbers are transform.py's too. */
enum {
    K_TEXT = 0,
    K_INT = 1,
    K_DECIMAL = 2,
    K_MONEY = 3,
    K_BOOL = 4,
    K_UUID = 5,
    K_TSTAMP = 6,
    K_DIMENSIONS = 7,
    K_CHOICE = 8, /* one of the keys of a dict, set as its value */
    K_ADDRESS = 9, /* the first address of a list */
    K_LATE_TEXT = 10, /* text applied after the others (tnuid) */
};

static const int64_t MS_MIN = -62135596800000LL;
static const int64_t MS_MAX = 253402300799999LL;
static const int64_t INT32_LIMIT = 2147483647LL;

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One name or value of a querystring: '+' is a space, %XX a byte (a '%'
 * without two hex digits stays as it is), the bytes read as UTF-8 with bad
 * sequences replaced, as urllib's unquote(errors="replace") does. */
static PyObject *decode_part(const char *s, Py_ssize_t n, char *scratch)
{
    Py_ssize_t i, plain = 1;
    for (i = 0; i < n; i++) {
        if (s[i] == '%' || s[i] == '+') {
            plain = 0;
            break;
        }
    }
    if (plain)
        return PyUnicode_DecodeASCII(s, n, NULL);
    Py_ssize_t out = 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            scratch[out++] = ' ';
        } else if (c == '%' && i + 2 < n) {
            int hi = hex_value((unsigned char)s[i + 1]);
            int lo = hex_value((unsigned char)s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                scratch[out++] = (char)(hi * 16 + lo);
                i += 2;
            } else {
                scratch[out++] = c;
            }
        } else {
            scratch[out++] = c;
        }
    }
    return PyUnicode_DecodeUTF8(scratch, out, "replace");
}

/* Parameter names seen, kept as interned str: trackers send the same few
 * dozen names in every request, and a name made once keeps its hash. */
#define NAME_SLOTS 1024
#define NAME_LONGEST 24
static PyObject *name_slots[NAME_SLOTS];

static PyObject *param_name(const char *s, Py_ssize_t n, char *scratch)
{
    if (n > NAME_LONGEST || memchr(s, '%', n) != NULL || memchr(s, '+', n) != NULL)
        return decode_part(s, n, scratch);
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    PyObject **slot = &name_slots[h % NAME_SLOTS];
    PyObject *name = *slot;
    if (name != NULL && PyUnicode_GET_LENGTH(name) == n
        && memcmp(PyUnicode_DATA(name), s, n) == 0) {
        Py_INCREF(name);
        return name;
    }
    name = PyUnicode_DecodeASCII(s, n, NULL);
    if (name == NULL)
        return NULL;
    PyUnicode_InternInPlace(&name);
    Py_INCREF(name);
    Py_XSETREF(*slot, name);
    return name;
}

static PyObject *querystring_params(PyObject *self, PyObject *arg)
{
    const char *text;
    Py_ssize_t size;
    if (PyBytes_Check(arg)) {
        /* ASCII bytes read as the str they decode to; others are None */
        text = PyBytes_AS_STRING(arg);
        size = PyBytes_GET_SIZE(arg);
        for (Py_ssize_t i = 0; i < size; i++)
            if ((unsigned char)text[i] >= 0x80)
                Py_RETURN_NONE;
    } else if (PyUnicode_Check(arg)) {
        if (PyUnicode_READY(arg) < 0)
            return NULL;
        if (!PyUnicode_IS_ASCII(arg))
            Py_RETURN_NONE;
        text = (const char *)PyUnicode_DATA(arg);
        size = PyUnicode_GET_LENGTH(arg);
    } else {
        PyErr_SetString(PyExc_TypeError, "querystring_params takes a str or bytes");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030D0000
    PyObject *params = _PyDict_NewPresized(32); /* a tracker's usual number */
#else
    PyObject *params = PyDict_New();
#endif
    if (params == NULL)
        return NULL;
    char *scratch = PyMem_Malloc(size + 1);
    if (scratch == NULL) {
        Py_DECREF(params);
        return PyErr_NoMemory();
    }
    Py_ssize_t start = 0;
    while (start <= size) {
        Py_ssize_t end = start;
        while (end < size && text[end] != '&' && text[end] != ';')
            end++;
        if (end > start) {
            const char *token = text + start;
            Py_ssize_t length = end - start;
            const char *eq = memchr(token, '=', length);
            if (eq != NULL) {
                PyObject *name = param_name(token, eq - token, scratch);
                PyObject *value = name == NULL ? NULL
                    : decode_part(eq + 1, length - (eq - token) - 1, scratch);
                if (value == NULL || PyDict_SetItem(params, name, value) < 0) {
                    Py_XDECREF(name);
                    Py_XDECREF(value);
                    PyMem_Free(scratch);
                    Py_DECREF(params);
                    return NULL;
                }
                Py_DECREF(name);
                Py_DECREF(value);
            }
        }
        start = end + 1;
    }
    PyMem_Free(scratch);
    return params;
}

/* ---- timestamps ---- */

/* Days since 1970-01-01 to a civil date (proleptic Gregorian). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t year = (int64_t)yoe + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = year + (*m <= 2);
}

static void put_digits(char *out, int64_t value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + value % 10);
        value /= 10;
    }
}

/* A str of n ASCII characters. */
static PyObject *ascii_text(const char *s, Py_ssize_t n)
{
    PyObject *text = PyUnicode_New(n, 127);
    if (text != NULL)
        memcpy(PyUnicode_DATA(text), s, n);
    return text;
}

/* A whole number in decimal, as str(int) writes it. */
static PyObject *int_text(int64_t value)
{
    char out[24];
    int at = sizeof out;
    uint64_t rest = value < 0 ? -(uint64_t)value : (uint64_t)value;
    do {
        out[--at] = (char)('0' + rest % 10);
        rest /= 10;
    } while (rest);
    if (value < 0)
        out[--at] = '-';
    return ascii_text(out + at, sizeof out - at);
}

/* "yyyy-MM-dd HH:mm:ss.SSS" for ms in [MS_MIN, MS_MAX]. */
static PyObject *tstamp_text(int64_t ms)
{
    int64_t seconds = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int64_t millis = ms - seconds * 1000;
    int64_t days = seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
    int64_t rest = seconds - days * 86400;
    int64_t year;
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);
    char out[23];
    put_digits(out, year, 4);
    out[4] = '-';
    put_digits(out + 5, month, 2);
    out[7] = '-';
    put_digits(out + 8, day, 2);
    out[10] = ' ';
    put_digits(out + 11, rest / 3600, 2);
    out[13] = ':';
    put_digits(out + 14, rest / 60 % 60, 2);
    out[16] = ':';
    put_digits(out + 17, rest % 60, 2);
    out[19] = '.';
    put_digits(out + 20, millis, 3);
    return ascii_text(out, 23);
}

static PyObject *ms_text(PyObject *self, PyObject *arg)
{
    int overflow = 0;
    long long ms = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (ms == -1 && PyErr_Occurred())
        return NULL;
    if (overflow || ms < MS_MIN || ms > MS_MAX)
        Py_RETURN_NONE;
    return tstamp_text(ms);
}

/* Whether every key of a dict is an exact str: lookups and stores with such
 * keys run no Python code, so the dicts cannot change under the loops here
 * (a str subclass's __eq__ or __hash__ could). */
static int exact_keys(PyObject *dict)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &pos, &key, &value))
        if (!PyUnicode_CheckExact(key))
            return 0;
    return 1;
}

/* ---- parameter values ---- */

/* The ASCII bytes of a str, or NULL (no exception) when it has other
 * characters. */
static const char *ascii_of(PyObject *value, Py_ssize_t *size)
{
    if (PyUnicode_READY(value) < 0) {
        PyErr_Clear();
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(value))
        return NULL;
    *size = PyUnicode_GET_LENGTH(value);
    return (const char *)PyUnicode_DATA(value);
}

/* Whether a str holds a character that convert.tsv_safe changes (C0 controls
 * and DEL). */
static int has_control(PyObject *value)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    if (kind == PyUnicode_1BYTE_KIND) {
        const unsigned char *s = data;
        for (Py_ssize_t i = 0; i < n; i++)
            if (s[i] < 0x20 || s[i] == 0x7f)
                return 1;
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c < 0x20 || c == 0x7f)
            return 1;
    }
    return 0;
}

static PyObject *has_control_py(PyObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "has_control takes a str");
        return NULL;
    }
    if (PyUnicode_READY(arg) < 0)
        return NULL;
    return PyBool_FromLong(has_control(arg));
}

static int all_digits(const char *s, Py_ssize_t n)
{
    if (n == 0)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int64_t digits_value(const char *s, Py_ssize_t n)
{
    int64_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* A whole number as convert.to_int writes it, from at most ten digits and an
 * optional '-'; NULL (no exception) for anything else. */
static PyObject *plain_int(PyObject *value, const char *s, Py_ssize_t n)
{
    int negative = n > 0 && s[0] == '-';
    const char *digits = s + negative;
    Py_ssize_t count = n - negative;
    if (count > 10 || !all_digits(digits, count))
        return NULL;
    int64_t v = digits_value(digits, count);
    if (v > INT32_LIMIT + negative)
        return NULL;
    if ((digits[0] != '0' || count == 1) && !(negative && v == 0)) {
        Py_INCREF(value); /* already written as str(int(value)) would */
        return value;
    }
    return int_text(negative ? -v : v);
}

/* A decimal that convert.to_decimal (and to_money, when money) gives back as
 * it is: an optional '-', an integer part without leading zeros (or a single
 * 0), and an optional fraction of at most 20 digits; at most 15 integer digits
 * so that any amount is within DECIMAL(18,2). NULL for anything else. */
static PyObject *plain_decimal(PyObject *value, const char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    if (n > 0 && s[0] == '-')
        i = 1;
    Py_ssize_t start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    Py_ssize_t whole = i - start;
    if (whole == 0 || whole > 15 || (whole > 1 && s[start] == '0'))
        return NULL;
    if (i < n) {
        if (s[i] != '.')
            return NULL;
        Py_ssize_t fraction_start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i != n || i == fraction_start || i - fraction_start > 20)
            return NULL;
    }
    Py_INCREF(value);
    return value;
}

static PyObject *plain_uuid(PyObject *value, const char *s, Py_ssize_t n)
{
    if (n != 36)
        return NULL;
    int upper = 0;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return NULL;
        } else if (hex_value((unsigned char)c) < 0) {
            return NULL;
        } else if (c >= 'A' && c <= 'F') {
            upper = 1;
        }
    }
    if (!upper) {
        Py_INCREF(value);
        return value;
    }
    char out[36];
    for (int i = 0; i < 36; i++)
        out[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] + 32) : s[i];
    return PyUnicode_DecodeASCII(out, 36, NULL);
}

static PyObject *plain_tstamp(const char *s, Py_ssize_t n)
{
    if (n > 15 || !all_digits(s, n))
        return NULL;
    int64_t ms = digits_value(s, n);
    if (ms > MS_MAX)
        return NULL;
    return tstamp_text(ms);
}

/* WIDTHxHEIGHT, each at most ten digits within the 32-bit range. */
static int plain_dimensions(const char *s, Py_ssize_t n, PyObject **width,
                            PyObject **height)
{
    const char *x = memchr(s, 'x', n);
    if (x == NULL)
        return 0;
    Py_ssize_t wn = x - s, hn = n - wn - 1;
    if (wn > 10 || hn > 10 || !all_digits(s, wn) || !all_digits(x + 1, hn))
        return 0;
    int64_t w = digits_value(s, wn), h = digits_value(x + 1, hn);
    if (w > INT32_LIMIT || h > INT32_LIMIT)
        return 0;
    *width = int_text(w);
    if (*width == NULL)
        return -1;
    *height = int_text(h);
    if (*height == NULL) {
        Py_CLEAR(*width);
        return -1;
    }
    return 1;
}

/* Leaves a parameter to Python, holding its field's place. */
static int leave(PyObject *event, PyObject *field, PyObject *param, PyObject *left,
                 long kind)
{
    if (PyList_Append(left, param) < 0)
        return -1;
    if (kind >= K_DIMENSIONS)
        return 0; /* set last, if at all: no place to hold */
    int present = PyDict_Contains(event, field);
    if (present < 0)
        return -1;
    return present ? 0 : PyDict_SetItem(event, field, Py_None);
}

/* Applies one parameter's rule (see apply_params); 0, or -1 on error.
 * A value left to Python goes to left, and its field gets a None in event
 * (where it has none) so that fields keep the order Python sets them in; the
 * Python code removes the None again if the value does not convert. */
static int apply_rule(PyObject *event, PyObject *params, PyObject *rule,
                      PyObject *param, PyObject *value, PyObject *left, int late);

static int apply_one(PyObject *event, PyObject *params, PyObject *rules,
                     PyObject *param, PyObject *value, PyObject *left, int late)
{
    PyObject *rule = PyDict_GetItemWithError(rules, param);
    if (rule == NULL) {
        if (PyErr_Occurred())
            return -1;
        return 0;
    }
    /* held: code that hashing or converting its parts runs may drop it */
    Py_INCREF(rule);
    int result = apply_rule(event, params, rule, param, value, left, late);
    Py_DECREF(rule);
    return result;
}

static int apply_rule(PyObject *event, PyObject *params, PyObject *rule,
                      PyObject *param, PyObject *value, PyObject *left, int late)
{
    if (!PyTuple_Check(rule) || PyTuple_GET_SIZE(rule) != 4) {
        PyErr_SetString(PyExc_TypeError, "a rule is (field, kind, preferred, field2)");
        return -1;
    }
    PyObject *field = PyTuple_GET_ITEM(rule, 0);
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(rule, 1));
    PyObject *preferred = PyTuple_GET_ITEM(rule, 2);
    if (kind == -1 && PyErr_Occurred())
        return -1;
    if ((kind >= K_DIMENSIONS) != late)
        return 0; /* applied in the other pass */
    if (preferred != Py_None) {
        int present = PyDict_Contains(params, preferred);
        if (present < 0)
            return -1;
        if (present)
            return 0;
    }
    if (!PyUnicode_CheckExact(value)) {
        return leave(event, field, param, left, kind);
    }
    if (PyUnicode_READY(value) < 0)
        return -1;
    if (kind == K_TEXT || kind == K_LATE_TEXT) {
        if (has_control(value)) {
            if (leave(event, field, param, left, kind) < 0)
                return -1;
        } else if (PyDict_SetItem(event, field, PyUnicode_GET_LENGTH(value)
                                  ? value : Py_None) < 0) {
            return -1;
        }
        return 0;
    }
    Py_ssize_t n = 0;
    const char *s = ascii_of(value, &n);
    PyObject *result = NULL;
    if (s != NULL) {
        switch (kind) {
        case K_INT:
            result = plain_int(value, s, n);
            break;
        case K_DECIMAL:
        case K_MONEY:
            result = plain_decimal(value, s, n);
            break;
        case K_BOOL:
            if (n == 1 && (s[0] == '0' || s[0] == '1')) {
                Py_INCREF(value);
                result = value;
            }
            break;
        case K_UUID:
            result = plain_uuid(value, s, n);
            break;
        case K_TSTAMP:
            result = plain_tstamp(s, n);
            break;
        case K_CHOICE: {
            PyObject *choices = PyTuple_GET_ITEM(rule, 3);
            if (PyDict_Check(choices)) {
                result = PyDict_GetItemWithError(choices, value);
                Py_XINCREF(result);
            }
            break;
        }
        case K_ADDRESS: {
            /* The text before the first ',', '|' or ' ', as
             * transform.first_ip_token cuts it, when it is printable
             * ASCII (nothing to strip or clean). */
            Py_ssize_t end = 0;
            while (end < n && s[end] != ',' && s[end] != '|' && s[end] != ' ')
                end++;
            int printable = 1;
            for (Py_ssize_t i = 0; i < end && printable; i++)
                printable = s[i] > 0x20 && s[i] < 0x7f;
            if (printable) {
                if (end == 0) {
                    result = Py_NewRef(Py_None);
                } else if (end == n) {
                    result = Py_NewRef(value);
                } else {
                    result = PyUnicode_Substring(value, 0, end);
                }
            }
            break;
        }
        case K_DIMENSIONS: {
            PyObject *width = NULL, *height = NULL;
            int done = plain_dimensions(s, n, &width, &height);
            if (done < 0)
                return -1;
            if (done) {
                PyObject *second = PyTuple_GET_ITEM(rule, 3);
                int bad = PyDict_SetItem(event, field, width) < 0
                    || PyDict_SetItem(event, second, height) < 0;
                Py_DECREF(width);
                Py_DECREF(height);
                if (bad)
                    return -1;
                return 0;
            }
            break;
        }
        default:
            break;
        }
        if (result == NULL && PyErr_Occurred())
            return -1;
    }
    if (result == NULL) {
        return leave(event, field, param, left, kind);
    }
    int bad = PyDict_SetItem(event, field, result) < 0;
    Py_DECREF(result);
    if (bad)
        return -1;

    return 0;
}

/* apply_params(event, params, rules, late) -> list of the parameters left, or
 * None when the dicts are not plain (Python then does all of it).
 *
 * rules maps a parameter name to (field, kind, preferred, extra): preferred,
 * when not None, is the current name that wins over this legacy one when both
 * were sent; extra is the height's field of dimensions and the dict of values
 * of a choice. Parameters are applied in the order sent, except those named
 * in late (dimensions, the event type, the platform, ip and tnuid), which come
 * after the others in late's order, as in the Python code. */
/* Applies every parameter with a rule (see apply_params) to event, the
 * parameters it leaves to Python appended to left; 0, or -1 on error. Both
 * dicts have exact str keys. */
static int apply_all(PyObject *event, PyObject *params, PyObject *rules,
                     PyObject *late, PyObject *left)
{
    Py_ssize_t pos = 0;
    PyObject *param, *value;
    while (PyDict_Next(params, &pos, &param, &value))
        if (apply_one(event, params, rules, param, value, left, 0) < 0)
            return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(late); i++) {
        param = PyTuple_GET_ITEM(late, i);
        value = PyDict_GetItemWithError(params, param);
        if (value == NULL) {
            if (PyErr_Occurred())
                return -1;
            continue;
        }
        if (apply_one(event, params, rules, param, value, left, 1) < 0)
            return -1;
    }
    return 0;
}

static PyObject *apply_params(PyObject *self, PyObject *args)
{
    PyObject *event, *params, *rules, *late;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &PyDict_Type, &event, &PyDict_Type,
                          &params, &PyDict_Type, &rules, &PyTuple_Type, &late))
        return NULL;
    if (!PyDict_CheckExact(params) || !PyDict_CheckExact(event)
        || !exact_keys(params) || !exact_keys(event))
        Py_RETURN_NONE; /* all of it to Python */
    PyObject *left = PyList_New(0);
    if (left == NULL)
        return NULL;
    if (apply_all(event, params, rules, late, left) < 0) {
        Py_DECREF(left);
        return NULL;
    }
    return left;
}

/* ---- lengths and the TSV row ---- */

/* lengths_ok(event, limits): False when a str value is longer than the limit
 * that limits (field -> int) gives its field, or when event is not a plain
 * dict with str keys. */
static PyObject *lengths_ok(PyObject *self, PyObject *args)
{
    PyObject *event, *limits;
    if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &event, &PyDict_Type, &limits))
        return NULL;
    if (!PyDict_CheckExact(event) || !exact_keys(event))
        Py_RETURN_FALSE; /* for Python to look at */
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(event, &pos, &name, &value)) {
        if (!PyUnicode_Check(value))
            continue;
        PyObject *limit = PyDict_GetItemWithError(limits, name);
        if (limit == NULL) {
            if (PyErr_Occurred())
                return NULL;
            continue;
        }
        Py_ssize_t most = PyLong_AsSsize_t(limit);
        if (most == -1 && PyErr_Occurred())
            return NULL;
        if (PyUnicode_GET_LENGTH(value) > most)
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* tsv_row(fields, index) -> bytes: the values of fields, each at the place
 * that index (field name -> place, 0 to len(index) - 1) gives its name, None
 * or absent as empty, tab-separated, UTF-8. A key of fields that index does
 * not hold raises KeyError. */
static PyObject *tsv_row(PyObject *self, PyObject *args)
{
    PyObject *fields, *index;
    if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &fields, &PyDict_Type, &index))
        return NULL;
    Py_ssize_t count = PyDict_GET_SIZE(index);
    if (count > 256) {
        PyErr_SetString(PyExc_ValueError, "at most 256 fields");
        return NULL;
    }
    if (!PyDict_CheckExact(fields) || !exact_keys(fields)) {
        PyErr_SetString(PyExc_TypeError, "fields must be a dict with str keys");
        return NULL;
    }
    const char *parts[256];
    Py_ssize_t sizes[256];
    memset(sizes, 0, sizeof sizes);
    Py_ssize_t total = count > 0 ? count - 1 : 0;
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(fields, &pos, &name, &value)) {
        PyObject *place = PyDict_GetItemWithError(index, name);
        if (place == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, name);
            return NULL;
        }
        Py_ssize_t i = PyLong_AsSsize_t(place);
        if (i < 0 || i >= count) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a place outside the row");
            return NULL;
        }
        if (value == Py_None)
            continue;
        if (!PyUnicode_Check(value)) {
            PyErr_Format(PyExc_TypeError, "field %R holds %R, not text", name, value);
            return NULL;
        }
        parts[i] = PyUnicode_AsUTF8AndSize(value, &sizes[i]);
        if (parts[i] == NULL)
            return NULL;
        total += sizes[i];
    }
    PyObject *row = PyBytes_FromStringAndSize(NULL, total);
    if (row == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(row);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i > 0)
            *out++ = '\t';
        if (sizes[i]) {
            memcpy(out, parts[i], sizes[i]);
            out += sizes[i];
        }
    }
    return row;
}

/* ---- base64 ---- */

static signed char base64_values[256];

static void init_base64(void)
{
    memset(base64_values, -1, sizeof base64_values);
    const char *alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; i++)
        base64_values[(unsigned char)alphabet[i]] = (signed char)i;
    base64_values['-'] = 62; /* the URL-safe alphabet */
    base64_values['_'] = 63;
}

/* decode_base64(text) -> bytes: every character of either alphabet, in
 * order, six bits each; anything else (padding, spaces, line breaks) is
 * skipped, and bits short of a byte at the end are dropped, as
 * selfdesc.decode_base64 does. */
static PyObject *base64_bytes(PyObject *arg);

static PyObject *decode_base64(PyObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "decode_base64 takes a str");
        return NULL;
    }
    return base64_bytes(arg);
}

/* decode_base64 of a str. */
static PyObject *base64_bytes(PyObject *arg)
{
    if (PyUnicode_READY(arg) < 0)
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    int kind = PyUnicode_KIND(arg);
    const void *data = PyUnicode_DATA(arg);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * 3 / 4 + 3);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    Py_ssize_t used = 0;
    uint32_t bits = 0;
    int count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c > 0xff || base64_values[c] < 0)
            continue;
        bits = (bits << 6) | (uint32_t)base64_values[c];
        count += 6;
        if (count >= 8) {
            count -= 8;
            o[used++] = (unsigned char)(bits >> count);
            bits &= (1u << count) - 1;
        }
    }
    if (_PyBytes_Resize(&out, used) < 0)
        return NULL;
    return out;
}

/* ---- URLs ---- */

static Py_ssize_t find_char(PyObject *text, Py_UCS4 c, Py_ssize_t start,
                            Py_ssize_t end, int direction)
{
    Py_ssize_t at = PyUnicode_FindChar(text, c, start, end, direction);
    return at; /* -1: absent; -2: error */
}

static int scheme_char(Py_UCS4 c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        || c == '+' || c == '.' || c == '-';
}

/* A port as urls._port keeps it: ASCII digits, at most five, at most 65535,
 * written without leading zeros; None otherwise. */
static PyObject *port_text(PyObject *url, Py_ssize_t start, Py_ssize_t end)
{
    if (end - start < 1 || end - start > 5)
        Py_RETURN_NONE;
    long value = 0;
    for (Py_ssize_t i = start; i < end; i++) {
        Py_UCS4 c = PyUnicode_READ_CHAR(url, i);
        if (c < '0' || c > '9')
            Py_RETURN_NONE;
        value = value * 10 + (long)(c - '0');
    }
    if (value > 65535)
        Py_RETURN_NONE;
    return int_text(value);
}

/* url[start:end], or None when empty. */
static PyObject *part_or_none(PyObject *url, Py_ssize_t start, Py_ssize_t end)
{
    if (end <= start)
        Py_RETURN_NONE;
    return PyUnicode_Substring(url, start, end);
}

/* split_url(url) -> (url, scheme, host, port, path, query, fragment), as
 * urls.split_url splits it (spaces written as %20 first). */
static PyObject *split_url(PyObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "split_url takes a str");
        return NULL;
    }
    if (PyUnicode_READY(arg) < 0)
        return NULL;
    PyObject *url;
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    Py_ssize_t space = find_char(arg, ' ', 0, n, 1);
    if (space == -2)
        return NULL;
    if (space >= 0) {
        PyObject *from = PyUnicode_FromString(" "), *to = PyUnicode_FromString("%20");
        url = (from && to) ? PyUnicode_Replace(arg, from, to, -1) : NULL;
        Py_XDECREF(from);
        Py_XDECREF(to);
        if (url == NULL)
            return NULL;
        n = PyUnicode_GET_LENGTH(url);
    } else {
        Py_INCREF(arg);
        url = arg;
    }
    PyObject *parts[7] = {NULL};
    PyObject *result = NULL;
    /* rest, #fragment; then rest, ?query */
    Py_ssize_t hash = find_char(url, '#', 0, n, 1);
    if (hash == -2)
        goto done;
    Py_ssize_t rest_end = hash >= 0 ? hash : n;
    Py_ssize_t mark = find_char(url, '?', 0, rest_end, 1);
    if (mark == -2)
        goto done;
    Py_ssize_t query_start = -1;
    if (mark >= 0) {
        query_start = mark + 1;
        parts[5] = part_or_none(url, query_start, rest_end);
        rest_end = mark;
    } else {
        parts[5] = Py_NewRef(Py_None);
    }
    parts[6] = hash >= 0 ? part_or_none(url, hash + 1, n) : Py_NewRef(Py_None);
    if (parts[5] == NULL || parts[6] == NULL)
        goto done;

    Py_ssize_t rest = 0;
    Py_ssize_t scheme_end = -1;
    if (rest_end > 0) {
        Py_UCS4 first = PyUnicode_READ_CHAR(url, 0);
        if ((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z')) {
            Py_ssize_t i = 1;
            while (i < rest_end && scheme_char(PyUnicode_READ_CHAR(url, i)))
                i++;
            if (i < rest_end && PyUnicode_READ_CHAR(url, i) == ':')
                scheme_end = i;
        }
    }
    if (scheme_end >= 0) {
        parts[1] = PyUnicode_Substring(url, 0, scheme_end);
        rest = scheme_end + 1;
    } else {
        parts[1] = Py_NewRef(Py_None);
    }
    if (parts[1] == NULL)
        goto done;

    if (rest_end - rest >= 2 && PyUnicode_READ_CHAR(url, rest) == '/'
        && PyUnicode_READ_CHAR(url, rest + 1) == '/') {
        Py_ssize_t auth = rest + 2;
        Py_ssize_t slash = find_char(url, '/', auth, rest_end, 1);
        if (slash == -2)
            goto done;
        Py_ssize_t auth_end = slash >= 0 ? slash : rest_end;
        parts[4] = slash >= 0 ? part_or_none(url, slash, rest_end) : Py_NewRef(Py_None);
        if (parts[4] == NULL)
            goto done;
        Py_ssize_t at = find_char(url, '@', auth, auth_end, -1);
        if (at == -2)
            goto done;
        Py_ssize_t host_start = at >= 0 ? at + 1 : auth;
        Py_ssize_t host_end = auth_end, port_start = -1;
        int bracketed = 0;
        if (host_start < auth_end && PyUnicode_READ_CHAR(url, host_start) == '[') {
            Py_ssize_t close = find_char(url, ']', host_start, auth_end, 1);
            if (close == -2)
                goto done;
            if (close >= 0) {
                bracketed = 1;
                host_end = close + 1;
                if (host_end < auth_end && PyUnicode_READ_CHAR(url, host_end) == ':')
                    port_start = host_end + 1;
            }
        }
        if (!bracketed) {
            Py_ssize_t colon = find_char(url, ':', host_start, auth_end, 1);
            if (colon == -2)
                goto done;
            if (colon >= 0) {
                host_end = colon;
                port_start = colon + 1;
            }
        }
        parts[2] = part_or_none(url, host_start, host_end);
        if (parts[2] == NULL)
            goto done;
        if (port_start >= 0 && port_start < auth_end) {
            parts[3] = port_text(url, port_start, auth_end);
        } else if (parts[1] != Py_None && parts[2] != Py_None) {
            int https = PyUnicode_GET_LENGTH(parts[1]) == 5;
            const char *want = "https";
            for (Py_ssize_t i = 0; https && i < 5; i++) {
                Py_UCS4 c = PyUnicode_READ_CHAR(parts[1], i);
                if (c >= 'A' && c <= 'Z')
                    c += 32;
                https = c == (Py_UCS4)want[i];
            }
            parts[3] = PyUnicode_FromString(https ? "443" : "80");
        } else {
            parts[3] = Py_NewRef(Py_None);
        }
        if (parts[3] == NULL)
            goto done;
    } else {
        parts[2] = Py_NewRef(Py_None);
        parts[3] = Py_NewRef(Py_None);
        parts[4] = part_or_none(url, rest, rest_end);
        if (parts[4] == NULL)
            goto done;
    }
    parts[0] = Py_NewRef(url);
    result = PyTuple_New(7);
    if (result != NULL) {
        for (int i = 0; i < 7; i++) {
            PyTuple_SET_ITEM(result, i, parts[i]);
            parts[i] = NULL;
        }
    }
done:
    for (int i = 0; i < 7; i++)
        Py_XDECREF(parts[i]);
    Py_DECREF(url);
    return result;
}

/* ---- self-describing JSON ---- */

/* Whether text is prefix followed by one or more ASCII digits, and nothing
 * else (selfdesc's CONTEXTS_RE and UNSTRUCT_RE). */
static int prefix_and_digits(PyObject *text, PyObject *prefix)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text)
        || !PyUnicode_IS_ASCII(prefix))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), p = PyUnicode_GET_LENGTH(prefix);
    const char *s = (const char *)PyUnicode_DATA(text);
    if (n <= p || memcmp(s, PyUnicode_DATA(prefix), p) != 0)
        return 0;
    return all_digits(s + p, n - p);
}

/* {"schema": entity's schema, "data": entity's data} for an entity that
 * selfdesc._entity_problem passes and whose schema known (the cache of
 * valid Iglu URIs) holds; NULL otherwise (with an exception only on error).
 * The caller holds a reference to entity; schema and data are held here
 * while known is searched (a lookup may run a str subclass's __eq__). */
static PyObject *wrapped_entity(PyObject *entity, PyObject *known)
{
    if (!PyDict_CheckExact(entity) || !exact_keys(entity))
        return NULL;
    PyObject *schema = PyDict_GetItemString(entity, "schema");
    PyObject *data = PyDict_GetItemString(entity, "data");
    if (schema == NULL || data == NULL || !PyUnicode_CheckExact(schema))
        return NULL;
    Py_INCREF(schema);
    Py_INCREF(data);
    PyObject *wrapped = NULL;
    int valid = PyDict_Contains(known, schema);
    if (valid > 0 && (wrapped = PyDict_New()) != NULL
        && (PyDict_SetItemString(wrapped, "schema", schema) < 0
            || PyDict_SetItemString(wrapped, "data", data) < 0))
        Py_CLEAR(wrapped);
    Py_DECREF(schema);
    Py_DECREF(data);
    return wrapped;
}

/* wrap_entities(document, prefix, known, single) -> list | dict | None.
 *
 * document is a parsed contexts (single false) or unstruct_event (single
 * true) envelope whose schema must be prefix and a revision number. Gives the
 * entities re-wrapped as {schema, data} (a list; for single, the one entity),
 * or None when anything is not the plain case: a wrong envelope, a bad
 * entity, a schema that known (selfdesc's cache of valid Iglu URIs) lacks, a
 * list that changed while it was read. The Python code then says what is
 * wrong, or checks the schema and fills the cache. Documents from orjson hold
 * exact dicts, lists and strs only.
 *
 * wrapped_entities is its body: a new reference, or NULL when not the plain
 * case (with an exception only on error). */
static PyObject *wrapped_entities(PyObject *document, PyObject *prefix,
                                  PyObject *known, int single)
{
    if (!PyDict_CheckExact(document) || !exact_keys(document))
        return NULL;
    PyObject *schema = PyDict_GetItemString(document, "schema");
    PyObject *data = PyDict_GetItemString(document, "data");
    if (schema == NULL || data == NULL || !prefix_and_digits(schema, prefix))
        return NULL;
    Py_INCREF(data); /* held: searching known may change the document */
    PyObject *result = NULL;
    if (single) {
        result = wrapped_entity(data, known);
    } else if (PyList_CheckExact(data)) {
        Py_ssize_t count = PyList_GET_SIZE(data);
        result = PyList_New(count);
        for (Py_ssize_t i = 0; result != NULL && i < count; i++) {
            if (PyList_GET_SIZE(data) != count) {
                Py_CLEAR(result); /* changed under the loop: Python's way */
                break;
            }
            PyObject *entity = PyList_GET_ITEM(data, i);
            Py_INCREF(entity);
            PyObject *wrapped = wrapped_entity(entity, known);
            Py_DECREF(entity);
            if (wrapped == NULL) {
                Py_CLEAR(result);
                break;
            }
            PyList_SET_ITEM(result, i, wrapped);
        }
        if (result != NULL && PyList_GET_SIZE(data) != count)
            Py_CLEAR(result);
    }
    Py_DECREF(data);
    return result;
}

static PyObject *wrap_entities(PyObject *self, PyObject *args)
{
    PyObject *document, *prefix, *known;
    int single;
    if (!PyArg_ParseTuple(args, "OO!O!p", &document, &PyUnicode_Type, &prefix,
                          &PyDict_Type, &known, &single))
        return NULL;
    PyObject *result = wrapped_entities(document, prefix, known, single);
    if (result == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return result;
}

/* ---- raw records ---- */

/* The keys of a raw-log record, in RawRecord's field order. */
static const char *RECORD_KEYS[] = {
    "id", "tstamp", "collector", "method", "path", "querystring", "body",
    "content_type", "headers", "ip", "useragent", "referer", "host",
    "network_userid",
};
#define RECORD_FIELDS 15 /* the keys above, then extra */

static PyObject *record_key_objects[RECORD_FIELDS - 1];

/* A str value turned into its UTF-8 bytes; NULL (no exception) when it is not
 * a str or has no UTF-8 form (lone surrogates). */
static PyObject *utf8_bytes(PyObject *text)
{
    if (!PyUnicode_Check(text))
        return NULL;
    PyObject *data = PyUnicode_AsUTF8String(text);
    if (data == NULL)
        PyErr_Clear();
    return data;
}

/* [[name, value], ...] of str as ((name, value), ...); NULL (no exception)
 * for anything else. */
static PyObject *header_pairs(PyObject *headers)
{
    if (headers == Py_None)
        return PyTuple_New(0);
    if (!PyList_Check(headers))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(headers);
    PyObject *pairs = PyTuple_New(count);
    if (pairs == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(headers, i);
        if (!PyList_Check(item) || PyList_GET_SIZE(item) != 2
            || !PyUnicode_CheckExact(PyList_GET_ITEM(item, 0))
            || !PyUnicode_CheckExact(PyList_GET_ITEM(item, 1))) {
            Py_DECREF(pairs);
            return NULL;
        }
        PyObject *pair = PyTuple_Pack(2, PyList_GET_ITEM(item, 0),
                                      PyList_GET_ITEM(item, 1));
        if (pair == NULL) {
            Py_DECREF(pairs);
            return NULL;
        }
        PyTuple_SET_ITEM(pairs, i, pair);
    }
    return pairs;
}

/* record_from_dict(data, cls, slots, known) -> RawRecord | None.
 *
 * cls is RawRecord, slots its slot descriptors in field order; known is the frozenset of the keys that are not extra.
 * A record whose required keys are str (tstamp an int), whose querystring and
 * body are text, and whose headers are pairs of str is made here, its slots
 * set as the dataclass's own __init__ sets them; anything else gives None,
 * for the Python code to read or refuse with its messages. */
static PyObject *record_of(PyObject *data, PyTypeObject *cls, PyObject *slots,
                           PyObject *known);

static PyObject *record_from_dict(PyObject *self, PyObject *args)
{
    PyObject *data, *slots, *known;
    PyTypeObject *cls;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &PyDict_Type, &data, &PyType_Type,
                          &cls, &PyTuple_Type, &slots, &PyFrozenSet_Type, &known))
        return NULL;
    return record_of(data, cls, slots, known);
}

/* record_from_line(line, loads, cls, slots, known): rawlog.record's
 * decode_record for a line that is a plain record of format version 1 (JSON
 * read by loads, orjson's); None for any other line, which the Python code
 * then reads or refuses with its message. */
static PyObject *record_from_line(PyObject *self, PyObject *args)
{
    PyObject *line, *loads, *slots, *known;
    PyTypeObject *cls;
    if (!PyArg_ParseTuple(args, "OOO!O!O!", &line, &loads, &PyType_Type, &cls,
                          &PyTuple_Type, &slots, &PyFrozenSet_Type, &known))
        return NULL;
    PyObject *data = PyObject_CallOneArg(loads, line);
    if (data == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *result = NULL;
    if (PyDict_CheckExact(data) && exact_keys(data)) {
        PyObject *version = PyDict_GetItemString(data, "v");
        if (version != NULL && PyLong_CheckExact(version)
            && PyLong_AsLong(version) == 1)
            result = record_of(data, cls, slots, known);
        else if (PyErr_Occurred())
            PyErr_Clear(); /* a version too big for a long: not 1 */
    }
    Py_DECREF(data);
    if (result == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return result;
}

/* record_from_dict's body: a new RawRecord, None, or NULL on error. */
static PyObject *record_of(PyObject *data, PyTypeObject *cls, PyObject *slots,
                           PyObject *known)
{
    if (PyTuple_GET_SIZE(slots) != RECORD_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "RawRecord has 15 fields");
        return NULL;
    }
    if (record_key_objects[0] == NULL) {
        for (int i = 0; i < RECORD_FIELDS - 1; i++) {
            record_key_objects[i] = PyUnicode_InternFromString(RECORD_KEYS[i]);
            if (record_key_objects[i] == NULL)
                return NULL;
        }
    }
    if (!PyDict_CheckExact(data) || !exact_keys(data))
        Py_RETURN_NONE;
    PyObject *values[RECORD_FIELDS] = {NULL};
    PyObject *result = NULL;
    for (int i = 0; i < RECORD_FIELDS - 1; i++) {
        PyObject *value = PyDict_GetItemWithError(data, record_key_objects[i]);
        if (value == NULL && PyErr_Occurred())
            goto done;
        if (value == NULL)
            value = Py_None;
        if (i < 5) { /* required: id, tstamp, collector, method, path */
            int ok = i == 1 ? PyLong_CheckExact(value) : PyUnicode_CheckExact(value);
            if (!ok)
                goto plain_no;
            Py_INCREF(value);
            values[i] = value;
        } else if (i == 5 || i == 6) { /* querystring, body */
            if (value == Py_None) {
                static const char *encoded[] = {"querystring_base64", "body_base64"};
                PyObject *other = PyDict_GetItemString(data, encoded[i - 5]);
                if (other != NULL && other != Py_None)
                    goto plain_no;
                Py_INCREF(Py_None);
                values[i] = Py_None;
            } else if ((values[i] = utf8_bytes(value)) == NULL) {
                goto plain_no;
            }
        } else if (i == 8) { /* headers */
            if ((values[i] = header_pairs(value)) == NULL) {
                if (PyErr_Occurred())
                    goto done;
                goto plain_no;
            }
        } else {
            Py_INCREF(value);
            values[i] = value;
        }
    }
    PyObject *extra = values[RECORD_FIELDS - 1] = PyDict_New();
    if (extra == NULL)
        goto done;
    Py_ssize_t pos = 0, size = PyDict_GET_SIZE(data);
    PyObject *key, *value;
    while (PyDict_Next(data, &pos, &key, &value)) {
        /* held: a str subclass in known may run code that changes data */
        Py_INCREF(key);
        Py_INCREF(value);
        int in = PySet_Contains(known, key);
        int bad = in < 0 || (!in && PyDict_SetItem(extra, key, value) < 0);
        Py_DECREF(key);
        Py_DECREF(value);
        if (bad)
            goto done;
        if (PyDict_GET_SIZE(data) != size)
            goto plain_no; /* changed under the loop: Python's way */
    }
    PyObject *record = cls->tp_alloc(cls, 0);
    if (record == NULL)
        goto done;
    for (int i = 0; i < RECORD_FIELDS; i++) {
        PyObject *slot = PyTuple_GET_ITEM(slots, i);
        descrsetfunc set = Py_TYPE(slot)->tp_descr_set;
        if (set == NULL || set(slot, record, values[i]) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "a slot that cannot be set");
            Py_DECREF(record);
            goto done;
        }
    }
    result = record;
    goto done;
plain_no:
    Py_INCREF(Py_None);
    result = Py_None;
done:
    for (int i = 0; i < RECORD_FIELDS; i++)
        Py_XDECREF(values[i]);
    return result;
}

/* ---- one event, start to end of the base steps ---- */

/* What base_event uses besides its arguments: pipeline.py hands it over once
 * (configure_base), so that the rules, the caches and the Python functions
 * for the unusual parts are the ones the Python code uses. */
static struct {
    PyObject *rules, *late;   /* transform._CORE_RULES, _LATE */
    PyObject *finish_params;  /* transform's way with the parameters C left */
    PyObject *new_event_id;   /* () -> a random event id */
    PyObject *json_loads, *json_dumps;
    PyObject *contexts_prefix, *unstruct_prefix, *known; /* as wrap_entities */
    PyObject *contexts_schema, *unstruct_schema;
    PyObject *event_schemas;  /* event type -> (vendor, name, format, version) */
    Py_ssize_t max_depth;
    long long plausible_ms;
} base;

/* Field and parameter names; a URL's seven fields in split_url's order. */
enum {
    N_EVENT_ID, N_CONTEXTS, N_UNSTRUCT_EVENT,
    N_PAGE_URL, N_PAGE_URLSCHEME, N_PAGE_URLHOST, N_PAGE_URLPORT, N_PAGE_URLPATH,
    N_PAGE_URLQUERY, N_PAGE_URLFRAGMENT,
    N_PAGE_REFERRER, N_REFR_URLSCHEME, N_REFR_URLHOST, N_REFR_URLPORT,
    N_REFR_URLPATH, N_REFR_URLQUERY, N_REFR_URLFRAGMENT,
    N_DERIVED_TSTAMP, N_EVENT, N_UNSTRUCT,
    N_V_COLLECTOR, N_EVENT_VENDOR, N_EVENT_NAME, N_EVENT_FORMAT, N_EVENT_VERSION,
    N_CX, N_CO, N_UE_PX, N_UE_PR, N_TTM, N_DTM, N_STM, N_SP, NAMES,
};
static const char *NAME_TEXT[NAMES] = {
    "event_id", "contexts", "unstruct_event",
    "page_url", "page_urlscheme", "page_urlhost", "page_urlport", "page_urlpath",
    "page_urlquery", "page_urlfragment",
    "page_referrer", "refr_urlscheme", "refr_urlhost", "refr_urlport",
    "refr_urlpath", "refr_urlquery", "refr_urlfragment",
    "derived_tstamp", "event", "unstruct",
    "v_collector", "event_vendor", "event_name", "event_format", "event_version",
    "cx", "co", "ue_px", "ue_pr", "ttm", "dtm", "stm", "_sp=",
};
static PyObject *names[NAMES];

#define NOT_PLAIN (-2) /* a step's answer: leave the whole event to Python */
#define EVENT_FIELDS 80 /* about as many as the base steps set, at most */

/* After a Python function failed: an Exception leaves the event to the
 * Python code, which fails the same way and says so as it always does;
 * anything else (KeyboardInterrupt) goes on up. */
static int left_to_python(void)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyErr_Clear();
    return NOT_PLAIN;
}

/* The number of '{' and '[' in a str or bytes. */
static Py_ssize_t brackets(PyObject *text)
{
    Py_ssize_t count = 0;
    if (PyBytes_Check(text)) {
        const char *s = PyBytes_AS_STRING(text);
        for (Py_ssize_t i = 0; i < PyBytes_GET_SIZE(text); i++)
            count += s[i] == '{' || s[i] == '[';
        return count;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        count += c == '{' || c == '[';
    }
    return count;
}

static PyObject *count_brackets(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg) && !PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "count_brackets takes bytes or a str");
        return NULL;
    }
    if (PyUnicode_Check(arg) && PyUnicode_READY(arg) < 0)
        return NULL;
    return PyLong_FromSsize_t(brackets(arg));
}

/* selfdesc._load: the document of the encoded parameter (base64) or else the
 * plain one. 1 with *document set, 0 when neither was sent, NOT_PLAIN, or -1
 * on error. The decoded bytes go to orjson as they are: bytes that are not
 * UTF-8 fail there, and the Python code then says so. */
static int load_document(PyObject *params, PyObject *plain, PyObject *encoded,
                         PyObject **document)
{
    PyObject *source;
    PyObject *text = PyDict_GetItemWithError(params, encoded);
    if (text != NULL) {
        if (!PyUnicode_CheckExact(text))
            return NOT_PLAIN;
        source = base64_bytes(text);
    } else {
        if (PyErr_Occurred())
            return -1;
        text = PyDict_GetItemWithError(params, plain);
        if (text == NULL)
            return PyErr_Occurred() ? -1 : 0;
        if (!PyUnicode_CheckExact(text) || PyUnicode_READY(text) < 0)
            return NOT_PLAIN;
        source = Py_NewRef(text);
    }
    if (source == NULL)
        return -1;
    if (brackets(source) > base.max_depth) {
        Py_DECREF(source); /* maybe too deep: Python walks it */
        return NOT_PLAIN;
    }
    *document = PyObject_CallOneArg(base.json_loads, source);
    Py_DECREF(source);
    if (*document == NULL)
        return left_to_python();
    return 1;
}

/* orjson.dumps(value).decode() */
static PyObject *json_text(PyObject *value)
{
    PyObject *raw = PyObject_CallOneArg(base.json_dumps, value);
    if (raw == NULL)
        return NULL;
    PyObject *text = NULL;
    if (PyBytes_Check(raw))
        text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw),
                                    NULL);
    else
        PyErr_SetString(PyExc_TypeError, "dumps gave no bytes");
    Py_DECREF(raw);
    return text;
}

/* {"schema": schema, "data": data} */
static PyObject *envelope(PyObject *schema, PyObject *data)
{
    PyObject *result = PyDict_New();
    if (result != NULL && (PyDict_SetItemString(result, "schema", schema) < 0
                           || PyDict_SetItemString(result, "data", data) < 0))
        Py_CLEAR(result);
    return result;
}

/* Sets field in event to the JSON text of {"schema": schema, "data": data}
 * and *document (which holds None) to that document: 0, NOT_PLAIN or -1. */
static int set_column(PyObject *event, PyObject *field, PyObject *schema,
                      PyObject *data, PyObject **document)
{
    PyObject *column = envelope(schema, data);
    if (column == NULL)
        return -1;
    PyObject *text = json_text(column);
    if (text == NULL) {
        Py_DECREF(column);
        return left_to_python();
    }
    int bad = PyDict_SetItem(event, field, text) < 0;
    Py_DECREF(text);
    Py_SETREF(*document, column);
    return bad ? -1 : 0;
}

/* The contexts column (pipeline._self_describing's first half): sets it in
 * event (None when no entity was sent) and *document to the column's
 * document or None. 0, NOT_PLAIN or -1. */
static int contexts_field(PyObject *event, PyObject *params, PyObject **document)
{
    PyObject *sent = NULL;
    int found = load_document(params, names[N_CO], names[N_CX], &sent);
    if (found < 0)
        return found;
    *document = Py_NewRef(Py_None);
    if (!found)
        return PyDict_SetItem(event, names[N_CONTEXTS], Py_None);
    PyObject *entities = wrapped_entities(sent, base.contexts_prefix, base.known, 0);
    Py_DECREF(sent);
    if (entities == NULL)
        return PyErr_Occurred() ? -1 : NOT_PLAIN;
    if (PyList_GET_SIZE(entities) == 0) {
        Py_DECREF(entities);
        return PyDict_SetItem(event, names[N_CONTEXTS], Py_None);
    }
    int step = set_column(event, names[N_CONTEXTS], base.contexts_schema, entities,
                          document);
    Py_DECREF(entities);
    return step;
}

/* The unstruct_event column (the second half): sets it in event when one was
 * sent, *document to its document or None, and *parts to the inner event's
 * schema parts (a new reference) or NULL. */
static int unstruct_field(PyObject *event, PyObject *params, PyObject **document,
                          PyObject **parts)
{
    PyObject *sent = NULL;
    int found = load_document(params, names[N_UE_PR], names[N_UE_PX], &sent);
    if (found < 0)
        return found;
    *document = Py_NewRef(Py_None);
    *parts = NULL;
    if (!found)
        return 0;
    PyObject *entity = wrapped_entities(sent, base.unstruct_prefix, base.known, 1);
    Py_DECREF(sent);
    if (entity == NULL)
        return PyErr_Occurred() ? -1 : NOT_PLAIN;
    /* The entity's schema is a str that the cache holds (wrapped_entity). */
    PyObject *schema = PyDict_GetItemString(entity, "schema");
    PyObject *known = schema ? PyDict_GetItemWithError(base.known, schema) : NULL;
    if (known == NULL || !PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 4) {
        Py_DECREF(entity);
        return PyErr_Occurred() ? -1 : NOT_PLAIN;
    }
    Py_INCREF(known); /* held: the cache may be cleared meanwhile */
    int step = set_column(event, names[N_UNSTRUCT_EVENT], base.unstruct_schema,
                          entity, document);
    Py_DECREF(entity);
    if (step < 0)
        Py_DECREF(known);
    else
        *parts = known;
    return step;
}

/* Sets the fields names[first], names[first + 1], ... to the items of the
 * tuple values, in order: 0, or -1 on error. */
static int set_fields(PyObject *event, int first, PyObject *values)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(values); i++)
        if (PyDict_SetItem(event, names[first + i], PyTuple_GET_ITEM(values, i)) < 0)
            return -1;
    return 0;
}

/* The columns of a URL, as pipeline._url_columns gives them: the whole URL
 * (spaces as %20) in the first of fields, then its scheme, host, port, path,
 * query and fragment. A URL without control characters (page URLs and
 * referers are made TSV-safe before) has none in its parts either, so that
 * tsv_safe would change nothing; any other goes to Python. */
static int url_fields(PyObject *event, PyObject *url, int first_field)
{
    if (!PyUnicode_CheckExact(url) || PyUnicode_READY(url) < 0 || has_control(url))
        return NOT_PLAIN;
    PyObject *parts = split_url(NULL, url);
    if (parts == NULL)
        return -1;
    int result = set_fields(event, first_field, parts);
    Py_DECREF(parts);
    return result;
}

/* A parameter's value (borrowed, or NULL when not sent) as milliseconds,
 * when it is plain digits: 0, or NOT_PLAIN (the Python code reads it with
 * int(), which takes other spellings too). */
static int plain_ms(PyObject *value, int64_t *ms)
{
    Py_ssize_t n = 0;
    const char *s = PyUnicode_CheckExact(value) ? ascii_of(value, &n) : NULL;
    if (s == NULL || n > 15 || !all_digits(s, n))
        return NOT_PLAIN;
    *ms = digits_value(s, n);
    return 0;
}

/* pipeline.derived_tstamp */
static int derived_tstamp_field(PyObject *event, PyObject *params, int64_t collector)
{
    int64_t ms = collector, created = 0, sent = 0;
    PyObject *true_value = PyDict_GetItemWithError(params, names[N_TTM]);
    if (true_value == NULL && PyErr_Occurred())
        return -1;
    if (true_value != NULL) {
        if (plain_ms(true_value, &ms) < 0 || ms > MS_MAX)
            return NOT_PLAIN;
    } else {
        PyObject *created_value = PyDict_GetItemWithError(params, names[N_DTM]);
        if (created_value == NULL && PyErr_Occurred())
            return -1;
        PyObject *sent_value = PyDict_GetItemWithError(params, names[N_STM]);
        if (sent_value == NULL && PyErr_Occurred())
            return -1;
        if (created_value != NULL && sent_value != NULL) {
            if (plain_ms(created_value, &created) < 0
                || plain_ms(sent_value, &sent) < 0)
                return NOT_PLAIN;
            int64_t least = created < sent ? created : sent;
            if (least >= base.plausible_ms && created < sent) {
                int64_t shifted = collector - (sent - created);
                if (shifted >= MS_MIN && shifted <= MS_MAX)
                    ms = shifted;
            }
        }
    }
    PyObject *text = tstamp_text(ms);
    if (text == NULL)
        return -1;
    int bad = PyDict_SetItem(event, names[N_DERIVED_TSTAMP], text) < 0;
    Py_DECREF(text);
    return bad ? -1 : 0;
}

/* A field's text (borrowed) in *value, or NULL when the field is absent,
 * None or empty: 0; NOT_PLAIN for a value of another type; -1 on error. */
static int text_field(PyObject *event, int name, PyObject **value)
{
    *value = PyDict_GetItemWithError(event, names[name]);
    if (*value == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (*value == Py_None || (PyUnicode_CheckExact(*value)
                              && PyUnicode_GET_LENGTH(*value) == 0)) {
        *value = NULL;
        return 0;
    }
    return PyUnicode_CheckExact(*value) ? 0 : NOT_PLAIN;
}

/* pipeline._derived_fields, for an event that has none of its problems and no
 * cross-navigation parameter. */
static int derived_fields(PyObject *event, PyObject *referer_url, int64_t collector,
                          PyObject *params, PyObject *unstruct_parts)
{
    int step;
    PyObject *value = PyDict_GetItemWithError(event, names[N_V_COLLECTOR]);
    if (value == NULL)
        return PyErr_Occurred() ? -1 : NOT_PLAIN;
    if (!PyUnicode_CheckExact(value) || PyUnicode_GET_LENGTH(value) == 0)
        return NOT_PLAIN; /* an empty collector name is a problem */

    /* Fields hold exact str or None: anything else goes to Python, and a
     * truth test here runs no code of another type. */
    PyObject *page_url, *query, *referrer;
    if ((step = text_field(event, N_PAGE_URL, &page_url)) < 0)
        return step;
    if (page_url == NULL)
        page_url = referer_url == Py_None ? NULL : referer_url; /* str (checked) */
    if (page_url != NULL && PyUnicode_GET_LENGTH(page_url) > 0) {
        Py_INCREF(page_url); /* the event's own is replaced meanwhile */
        step = url_fields(event, page_url, N_PAGE_URL);
        Py_DECREF(page_url);
        if (step < 0 || (step = text_field(event, N_PAGE_URLQUERY, &query)) < 0)
            return step;
        if (query != NULL) {
            Py_ssize_t at = PyUnicode_Find(query, names[N_SP], 0,
                                           PyUnicode_GET_LENGTH(query), 1);
            if (at != -1)
                return at == -2 ? -1 : NOT_PLAIN; /* cross-navigation: Python */
        }
    }
    if ((step = text_field(event, N_PAGE_REFERRER, &referrer)) < 0)
        return step;
    if (referrer != NULL) {
        Py_INCREF(referrer);
        step = url_fields(event, referrer, N_PAGE_REFERRER);
        Py_DECREF(referrer);
        if (step < 0)
            return step;
    }
    if ((step = derived_tstamp_field(event, params, collector)) < 0)
        return step;

    PyObject *kind = PyDict_GetItemWithError(event, names[N_EVENT]);
    if (kind == NULL || !PyUnicode_CheckExact(kind))
        return PyErr_Occurred() ? -1 : NOT_PLAIN;
    PyObject *parts;
    if (PyUnicode_Compare(kind, names[N_UNSTRUCT]) == 0) {
        parts = unstruct_parts;
    } else {
        parts = PyDict_GetItemWithError(base.event_schemas, kind);
        if (parts == NULL && PyErr_Occurred())
            return -1;
    }
    if (parts == NULL || !PyTuple_CheckExact(parts) || PyTuple_GET_SIZE(parts) != 4)
        return NOT_PLAIN; /* a retired event type, or ue without its event */
    Py_INCREF(parts);
    int result = set_fields(event, N_EVENT_VENDOR, parts);
    Py_DECREF(parts);
    return result;
}

/* base_event(head, referer_url, collector_ms, params) ->
 *     (event, contexts document, unstruct_event document) | None
 *
 * Enricher.enrich_event's base steps for one event, from the record's fields
 * (head, which the caller made once for the record: its first fields in the
 * Python code's order) to the event type's schema fields, with the same
 * fields in the same order as the Python code gives. None for any event that
 * has a problem or needs what only Python does (cross-navigation, deep JSON,
 * a schema seen for the first time): the caller then runs the Python code
 * on it from the start, which says what is wrong. Values that
 * apply_params leaves go to the Python function configure_base was given. */
static PyObject *base_event(PyObject *self, PyObject *args)
{
    PyObject *head, *referer_url, *collector_obj, *params;
    if (!PyArg_ParseTuple(args, "O!OO!O!", &PyDict_Type, &head, &referer_url,
                          &PyLong_Type, &collector_obj, &PyDict_Type, &params))
        return NULL;
    if (base.rules == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure_base was not called");
        return NULL;
    }
    if (!PyDict_CheckExact(head) || !PyDict_CheckExact(params) || !exact_keys(head)
        || !exact_keys(params) || (referer_url != Py_None
                                   && !PyUnicode_CheckExact(referer_url)))
        Py_RETURN_NONE;
    int overflow = 0;
    long long collector = PyLong_AsLongLongAndOverflow(collector_obj, &overflow);
    if (collector == -1 && PyErr_Occurred())
        return NULL;
    if (overflow || collector < MS_MIN || collector > MS_MAX)
        Py_RETURN_NONE;

    /* Room for the fields an event usually has, so that it is not resized
     * as they are set; then the head's, in order. */
#if PY_VERSION_HEX < 0x030D0000
    PyObject *event = _PyDict_NewPresized(EVENT_FIELDS);
#else
    PyObject *event = PyDict_New();
#endif
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (event != NULL && PyDict_Next(head, &pos, &name, &value))
        if (PyDict_SetItem(event, name, value) < 0)
            Py_CLEAR(event); /* not PyDict_Update: it would drop the room */
    PyObject *left = PyList_New(0);
    PyObject *contexts = NULL, *unstruct = NULL, *parts = NULL, *result = NULL;
    int step = -1;
    if (event == NULL || left == NULL)
        goto done;
    Py_INCREF(params); /* held: the Python functions called below get it */
    step = apply_all(event, params, base.rules, base.late, left);
    if (step == 0 && PyList_GET_SIZE(left) > 0) {
        PyObject *problems =
            PyObject_CallFunctionObjArgs(base.finish_params, event, params, left, NULL);
        if (problems == NULL)
            step = left_to_python();
        else if (!PyList_CheckExact(problems) || PyList_GET_SIZE(problems) > 0)
            step = NOT_PLAIN;
        Py_XDECREF(problems);
    }
    if (step == 0) {
        PyObject *id = PyDict_GetItemWithError(event, names[N_EVENT_ID]);
        if (id == NULL && PyErr_Occurred()) {
            step = -1;
        } else if (id == NULL || id == Py_None) {
            id = PyObject_CallNoArgs(base.new_event_id);
            if (id == NULL)
                step = left_to_python();
            else if (PyDict_SetItem(event, names[N_EVENT_ID], id) < 0)
                step = -1;
            Py_XDECREF(id);
        }
    }
    if (step == 0)
        step = contexts_field(event, params, &contexts);
    if (step == 0)
        step = unstruct_field(event, params, &unstruct, &parts);
    if (step == 0)
        step = derived_fields(event, referer_url, collector, params, parts);
    Py_DECREF(params);
    if (step == 0)
        result = PyTuple_Pack(3, event, contexts, unstruct);
    else if (step == NOT_PLAIN)
        result = Py_NewRef(Py_None);
done:
    Py_XDECREF(event);
    Py_XDECREF(left);
    Py_XDECREF(contexts);
    Py_XDECREF(unstruct);
    Py_XDECREF(parts);
    return result;
}

/* configure_base(rules, late, finish_params, new_event_id, loads, dumps,
 *                contexts_prefix, unstruct_prefix, known, contexts_schema,
 *                unstruct_schema, event_schemas, max_depth, plausible_ms) */
static PyObject *configure_base(PyObject *self, PyObject *args)
{
    PyObject *given[12];
    Py_ssize_t max_depth;
    long long plausible_ms;
    if (!PyArg_ParseTuple(args, "O!O!OOOOUUO!UUO!nL", &PyDict_Type, &given[0],
                          &PyTuple_Type, &given[1], &given[2], &given[3], &given[4],
                          &given[5], &given[6], &given[7], &PyDict_Type, &given[8],
                          &given[9], &given[10], &PyDict_Type, &given[11],
                          &max_depth, &plausible_ms))
        return NULL;
    PyObject **slots[12] = {
        &base.rules, &base.late, &base.finish_params, &base.new_event_id,
        &base.json_loads, &base.json_dumps, &base.contexts_prefix,
        &base.unstruct_prefix, &base.known, &base.contexts_schema,
        &base.unstruct_schema, &base.event_schemas,
    };
    for (int i = 0; i < 12; i++)
        Py_XSETREF(*slots[i], Py_NewRef(given[i]));
    base.max_depth = max_depth;
    base.plausible_ms = plausible_ms;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"querystring_params", querystring_params, METH_O,
     "querystring_params(text): the parameters of an ASCII querystring, the "
     "last of a name winning; None for other text."},
    {"apply_params", apply_params, METH_VARARGS,
     "apply_params(event, params, rules, late): set the fields of the parameters "
     "with plain values; return the parameters left."},
    {"ms_text", ms_text, METH_O,
     "ms_text(ms): milliseconds since the epoch as yyyy-MM-dd HH:mm:ss.SSS, "
     "or None outside the years 1 to 9999."},
    {"has_control", has_control_py, METH_O,
     "has_control(text): whether text holds a C0 control character or DEL."},
    {"decode_base64", decode_base64, METH_O,
     "decode_base64(text): the bytes of base64 in either alphabet, padding and "
     "other characters skipped."},
    {"split_url", split_url, METH_O,
     "split_url(url): (url, scheme, host, port, path, query, fragment)."},
    {"wrap_entities", wrap_entities, METH_VARARGS,
     "wrap_entities(document, prefix, known, single): the entities of a plain "
     "envelope re-wrapped as {schema, data}, or None."},
    {"lengths_ok", lengths_ok, METH_VARARGS,
     "lengths_ok(event, limits): whether every value is within its limit."},
    {"record_from_dict", record_from_dict, METH_VARARGS,
     "record_from_dict(data, cls, slots, known): a plain raw record, or None."},
    {"base_event", base_event, METH_VARARGS,
     "base_event(head, referer_url, collector_ms, params): one event's fields "
     "through the base steps, with the documents of its contexts and "
     "self-describing event; None for an event the Python code must see."},
    {"configure_base", configure_base, METH_VARARGS,
     "configure_base(...): the rules, caches and functions base_event uses."},
    {"record_from_line", record_from_line, METH_VARARGS,
     "record_from_line(line, loads, cls, slots, known): a plain raw record of "
     "format version 1 from its JSON line, or None."},
    {"count_brackets", count_brackets, METH_O,
     "count_brackets(data): how many '{' and '[' bytes or a str hold."},
    {"tsv_row", tsv_row, METH_VARARGS,
     "tsv_row(fields, index): the TSV line of the fields, as UTF-8 bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_core",
    "The per-event loops of enrichment, compiled.", -1, methods,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    init_base64();
    for (int i = 0; i < NAMES; i++) {
        names[i] = PyUnicode_InternFromString(NAME_TEXT[i]);
        if (names[i] == NULL)
            return NULL;
    }
    return PyModule_Create(&module_def);
}
