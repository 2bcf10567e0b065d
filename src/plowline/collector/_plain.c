/*
 * The collector's straight path for plain requests, compiled.
 *
 * Two functions, each the compiled twin of Python code in
 * plowline/collector/plainpath.py, which is used when this module was not
 * built. Tests check that both give the same results.
 *
 * parse_head(data, lines_limit)
 *     Reads one request from the start of ``data`` when it is of the plain
 *     kind a tracker sends: GET, HEAD, or POST with a Content-Length whose
 *     body is all in ``data``; a target of URL characters only; header lines
 *     of token names and printable ASCII values. It accepts only what llhttp
 *     accepts and reads it the same way; for anything else (and anything it
 *     is unsure of) it gives None and the server's llhttp parser reads the
 *     bytes instead.
 *     Gives (bytes used, method, target, HTTP version, keep-alive,
 *     [(lower-case name, value), ...], body or None).
 *
 * scan_headers(headers, post, proxy_header, cookie_name)
 *     For a request's header list: None unless the headers are plain (at
 *     least one, names lower-case and distinct, none of Transfer-Encoding and
 *     SP-Anonymous, nor Content-Length for a request without a body, every
 *     byte printable ASCII); else (the headers as the raw-log record's JSON,
 *     their size on the wire, then the values of Cookie, Host, Origin and the
 *     proxy header or None, then User-Agent, Referer and Host as JSON strings
 *     or null, then Content-Type lower-cased as a JSON string or null, then
 *     the value of the cookie called ``cookie_name`` or None).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* What a header line costs besides its name and value: ": " and CRLF. */
#define LINE_OVERHEAD 4
/* More header lines than this go the Python way (duplicates are looked for
 * pair by pair). */
#define MAX_SCANNED 64

static unsigned char token_char[256];
static unsigned char target_char[256];

static void
init_tables(void)
{
    const char *token = "!#$%&'*+-.^_`|~";
    /* RFC 3986's unreserved and reserved characters but '#' and the
     * brackets, and '%': all of them llhttp takes in a target as they are. */
    const char *target = "-._~!$&'()*+,;=:@/?%";
    int c;
    for (c = 0; c < 256; c++) {
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                    (c >= 'A' && c <= 'Z');
        token_char[c] = alnum || (c && strchr(token, c) != NULL);
        target_char[c] = alnum || (c && strchr(target, c) != NULL);
    }
}

static int
lower_equals(const char *data, Py_ssize_t size, const char *word)
{
    Py_ssize_t i;
    if ((Py_ssize_t)strlen(word) != size)
        return 0;
    for (i = 0; i < size; i++) {
        char c = data[i];
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if (c != word[i])
            return 0;
    }
    return 1;
}

static PyObject *
lower_bytes(const char *data, Py_ssize_t size)
{
    PyObject *result = PyBytes_FromStringAndSize(NULL, size);
    char *out;
    Py_ssize_t i;
    if (result == NULL)
        return NULL;
    out = PyBytes_AS_STRING(result);
    for (i = 0; i < size; i++) {
        char c = data[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    return result;
}

/* Appends (name, value) to ``list``; takes both references, either NULL. */
static int
append_pair(PyObject *list, PyObject *name, PyObject *value)
{
    PyObject *pair;
    int failed;
    if (name == NULL || value == NULL) {
        Py_XDECREF(name);
        Py_XDECREF(value);
        return -1;
    }
    pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(name);
        Py_DECREF(value);
        return -1;
    }
    PyTuple_SET_ITEM(pair, 0, name);
    PyTuple_SET_ITEM(pair, 1, value);
    failed = PyList_Append(list, pair);
    Py_DECREF(pair);
    return failed;
}

static PyObject *
parse_head(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t lines_limit;
    const char *data, *end, *p, *line_end;
    const char *method, *target;
    Py_ssize_t method_size, target_size;
    int is_post = 0, version_10, keep_alive, connection_seen = 0;
    long long content_length = -1;
    PyObject *headers = NULL, *result = NULL, *body = NULL;

    if (!PyArg_ParseTuple(args, "y*n", &view, &lines_limit))
        return NULL;
    data = view.buf;
    end = data + view.len;
    p = data;

    /* The request line. */
    if (end - p >= 4 && memcmp(p, "GET ", 4) == 0) {
        method_size = 3;
    }
    else if (end - p >= 5 && memcmp(p, "HEAD ", 5) == 0) {
        method_size = 4;
    }
    else if (end - p >= 5 && memcmp(p, "POST ", 5) == 0) {
        method_size = 4;
        is_post = 1;
    }
    else {
        goto not_plain;
    }
    method = p;
    p += method_size + 1;
    target = p;
    if (p >= end || *p != '/')
        goto not_plain;
    while (p < end && target_char[(unsigned char)*p])
        p++;
    target_size = p - target;
    if (end - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 || p[9] != '\r' ||
        p[10] != '\n')
        goto not_plain;
    if (p[8] == '1')
        version_10 = 0;
    else if (p[8] == '0')
        version_10 = 1;
    else
        goto not_plain;
    keep_alive = !version_10;
    p += 11;

    /* The header lines. */
    headers = PyList_New(0);
    if (headers == NULL)
        goto error;
    for (;;) {
        const char *name = p, *value;
        Py_ssize_t name_size, value_size;
        PyObject *pair;

        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
            p += 2;
            break;
        }
        while (p < end && token_char[(unsigned char)*p])
            p++;
        name_size = p - name;
        if (name_size == 0 || p >= end || *p != ':')
            goto not_plain;
        p++;
        while (p < end && *p == ' ')
            p++;
        value = p;
        while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f)
            p++;
        value_size = p - value;
        line_end = p;
        /* A value of its own (llhttp reports none for an empty one), ended by
         * CRLF, with no white space at its end (which llhttp would drop). */
        if (value_size == 0 || end - p < 2 || p[0] != '\r' || p[1] != '\n' ||
            line_end[-1] == ' ')
            goto not_plain;
        p += 2;
        if (PyList_GET_SIZE(headers) >= lines_limit)
            goto not_plain;

        /* The headers llhttp acts on. */
        switch (name_size) {
        case 6:
            if (lower_equals(name, name_size, "expect"))
                goto not_plain;
            break;
        case 7:
            if (lower_equals(name, name_size, "upgrade"))
                goto not_plain;
            break;
        case 10:
            if (lower_equals(name, name_size, "connection")) {
                if (connection_seen)
                    goto not_plain;
                connection_seen = 1;
                if (lower_equals(value, value_size, "keep-alive"))
                    keep_alive = 1;
                else if (lower_equals(value, value_size, "close"))
                    keep_alive = 0;
                else
                    goto not_plain;
            }
            break;
        case 14:
            if (lower_equals(name, name_size, "content-length")) {
                Py_ssize_t i;
                if (!is_post || content_length >= 0 || value_size > 9)
                    goto not_plain;
                content_length = 0;
                for (i = 0; i < value_size; i++) {
                    if (value[i] < '0' || value[i] > '9')
                        goto not_plain;
                    content_length = content_length * 10 + (value[i] - '0');
                }
            }
            break;
        case 16:
            if (lower_equals(name, name_size, "proxy-connection"))
                goto not_plain;
            break;
        case 17:
            if (lower_equals(name, name_size, "transfer-encoding"))
                goto not_plain;
            break;
        }
        if (append_pair(headers, lower_bytes(name, name_size),
                        PyBytes_FromStringAndSize(value, value_size)) < 0)
            goto error;
    }

    if (is_post) {
        if (content_length < 0 || end - p < content_length)
            goto not_plain;
        body = PyBytes_FromStringAndSize(p, (Py_ssize_t)content_length);
        if (body == NULL)
            goto error;
        p += content_length;
    }
    else {
        body = Py_NewRef(Py_None);
    }
    result = Py_BuildValue(
        "(ny#y#sONN)", (Py_ssize_t)(p - data), method, method_size, target,
        target_size, version_10 ? "1.0" : "1.1", keep_alive ? Py_True : Py_False,
        headers, body);
    headers = NULL;
    PyBuffer_Release(&view);
    return result;

not_plain:
    Py_XDECREF(headers);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
error:
    Py_XDECREF(headers);
    PyBuffer_Release(&view);
    return NULL;
}

/* Appends ``size`` bytes of ``data`` to ``out`` with '"' and '\' escaped. */
static char *
put_escaped(char *out, const char *data, Py_ssize_t size)
{
    Py_ssize_t i;
    for (i = 0; i < size; i++) {
        char c = data[i];
        if (c == '"' || c == '\\')
            *out++ = '\\';
        *out++ = c;
    }
    return out;
}

static Py_ssize_t
escapes_in(const char *data, Py_ssize_t size)
{
    Py_ssize_t i, count = 0;
    for (i = 0; i < size; i++)
        count += data[i] == '"' || data[i] == '\\';
    return count;
}

/* A value as a JSON string, or null for NULL; lower-cased if ``lower``. */
static PyObject *
json_text(PyObject *value, int lower)
{
    const char *data;
    Py_ssize_t size, i;
    PyObject *result;
    char *out, *start;

    if (value == NULL)
        return PyBytes_FromStringAndSize("null", 4);
    data = PyBytes_AS_STRING(value);
    size = PyBytes_GET_SIZE(value);
    result = PyBytes_FromStringAndSize(NULL, size + escapes_in(data, size) + 2);
    if (result == NULL)
        return NULL;
    out = PyBytes_AS_STRING(result);
    *out++ = '"';
    start = out;
    out = put_escaped(out, data, size);
    if (lower) {
        for (i = 0; start + i < out; i++) {
            if (start[i] >= 'A' && start[i] <= 'Z')
                start[i] += 32;
        }
    }
    *out = '"';
    return result;
}

/* The value of the first cookie called ``name`` in a Cookie header of
 * printable ASCII, without the spaces around it and the quotes at its ends
 * (as cookies.cookie_value); NULL with no error when there is none. */
static PyObject *
cookie_value(PyObject *header, const char *name, Py_ssize_t name_size)
{
    const char *p = PyBytes_AS_STRING(header);
    const char *end = p + PyBytes_GET_SIZE(header);

    while (p <= end) {
        const char *part_end = memchr(p, ';', end - p);
        const char *start = p, *stop, *equals;
        if (part_end == NULL)
            part_end = end;
        p = part_end + 1;
        stop = part_end;
        while (start < stop && *start == ' ')
            start++;
        while (stop > start && stop[-1] == ' ')
            stop--;
        equals = memchr(start, '=', stop - start);
        if (equals == NULL)
            continue;
        {
            const char *key_end = equals, *value = equals + 1;
            while (key_end > start && key_end[-1] == ' ')
                key_end--;
            if (key_end - start != name_size ||
                memcmp(start, name, name_size) != 0)
                continue;
            while (value < stop && *value == ' ')
                value++;
            while (value < stop && *value == '"')
                value++;
            while (stop > value && stop[-1] == '"')
                stop--;
            return PyBytes_FromStringAndSize(value, stop - value);
        }
    }
    return NULL;
}

static PyObject *
scan_headers(PyObject *module, PyObject *args)
{
    PyObject *headers, *proxy_header, *cookie_name, *found_cookie;
    int post;
    Py_ssize_t count, i, j, size = 0, json_size, escapes = 0;
    Py_ssize_t proxy_size;
    const char *proxy_name;
    PyObject *names[MAX_SCANNED], *values[MAX_SCANNED];
    PyObject *cookie = NULL, *host = NULL, *origin = NULL, *proxy = NULL;
    PyObject *agent = NULL, *referer = NULL, *content_type = NULL;
    int has_lower = 0;
    PyObject *json, *result;
    char *out;

    if (!PyArg_ParseTuple(args, "O!pSS", &PyList_Type, &headers, &post,
                          &proxy_header, &cookie_name))
        return NULL;
    proxy_name = PyBytes_AS_STRING(proxy_header);
    proxy_size = PyBytes_GET_SIZE(proxy_header);
    count = PyList_GET_SIZE(headers);
    if (count == 0 || count > MAX_SCANNED)
        Py_RETURN_NONE;
    for (i = 0; i < count; i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i), *name, *value;
        const char *n, *v;
        Py_ssize_t name_size, value_size, k;

        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2)
            Py_RETURN_NONE;
        name = PyTuple_GET_ITEM(pair, 0);
        value = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(value))
            Py_RETURN_NONE;
        n = PyBytes_AS_STRING(name);
        v = PyBytes_AS_STRING(value);
        name_size = PyBytes_GET_SIZE(name);
        value_size = PyBytes_GET_SIZE(value);
        for (k = 0; k < name_size; k++) {
            unsigned char c = (unsigned char)n[k];
            if (c < 0x20 || c > 0x7f || (c >= 'A' && c <= 'Z'))
                Py_RETURN_NONE;
            has_lower |= c >= 'a' && c <= 'z';
            escapes += c == '"' || c == '\\';
        }
        for (k = 0; k < value_size; k++) {
            unsigned char c = (unsigned char)v[k];
            if (c < 0x20 || c > 0x7f)
                Py_RETURN_NONE;
            escapes += c == '"' || c == '\\';
        }
        for (j = 0; j < i; j++) {
            if (PyBytes_GET_SIZE(names[j]) == name_size &&
                memcmp(PyBytes_AS_STRING(names[j]), n, name_size) == 0)
                Py_RETURN_NONE;
        }
        names[i] = name;
        values[i] = value;
        size += name_size + value_size + LINE_OVERHEAD;

        if (proxy_size && name_size == proxy_size &&
            memcmp(n, proxy_name, proxy_size) == 0)
            proxy = value;
        switch (name_size) {
        case 4:
            if (memcmp(n, "host", 4) == 0)
                host = value;
            break;
        case 6:
            if (memcmp(n, "cookie", 6) == 0)
                cookie = value;
            else if (memcmp(n, "origin", 6) == 0)
                origin = value;
            break;
        case 7:
            if (memcmp(n, "referer", 7) == 0)
                referer = value;
            break;
        case 10:
            if (memcmp(n, "user-agent", 10) == 0)
                agent = value;
            break;
        case 12:
            if (memcmp(n, "content-type", 12) == 0)
                content_type = value;
            else if (memcmp(n, "sp-anonymous", 12) == 0)
                Py_RETURN_NONE;
            break;
        case 14:
            if (!post && memcmp(n, "content-length", 14) == 0)
                Py_RETURN_NONE;
            break;
        case 17:
            if (memcmp(n, "transfer-encoding", 17) == 0)
                Py_RETURN_NONE;
            break;
        }
    }
    if (!has_lower)
        Py_RETURN_NONE;

    /* [["name","value"],...]: 2 brackets, and per header 2 brackets, 4
     * quotes and a comma inside, a comma between. */
    json_size = 2 + escapes;
    for (i = 0; i < count; i++)
        json_size += PyBytes_GET_SIZE(names[i]) + PyBytes_GET_SIZE(values[i]) + 7;
    json_size += count - 1;
    json = PyBytes_FromStringAndSize(NULL, json_size);
    if (json == NULL)
        return NULL;
    out = PyBytes_AS_STRING(json);
    *out++ = '[';
    for (i = 0; i < count; i++) {
        if (i)
            *out++ = ',';
        *out++ = '[';
        *out++ = '"';
        out = put_escaped(out, PyBytes_AS_STRING(names[i]),
                          PyBytes_GET_SIZE(names[i]));
        *out++ = '"';
        *out++ = ',';
        *out++ = '"';
        out = put_escaped(out, PyBytes_AS_STRING(values[i]),
                          PyBytes_GET_SIZE(values[i]));
        *out++ = '"';
        *out++ = ']';
    }
    *out++ = ']';
    assert(out == PyBytes_AS_STRING(json) + json_size);

    {
        PyObject *texts[4] = {json_text(agent, 0), json_text(referer, 0),
                              json_text(host, 0), json_text(content_type, 1)};
        int failed = !(texts[0] && texts[1] && texts[2] && texts[3]);
        found_cookie = NULL;
        if (cookie != NULL && !failed) {
            found_cookie = cookie_value(cookie, PyBytes_AS_STRING(cookie_name),
                                        PyBytes_GET_SIZE(cookie_name));
            failed = found_cookie == NULL && PyErr_Occurred();
        }
        if (failed) {
            Py_DECREF(json);
            Py_XDECREF(found_cookie);
            for (i = 0; i < 4; i++)
                Py_XDECREF(texts[i]);
            return NULL;
        }
        if (found_cookie == NULL)
            found_cookie = Py_NewRef(Py_None);
        /* "N" hands the references over, also when it fails. */
        result = Py_BuildValue(
            "(NnOOOONNNNN)", json, size, cookie ? cookie : Py_None,
            host ? host : Py_None, origin ? origin : Py_None,
            proxy ? proxy : Py_None, texts[0], texts[1], texts[2], texts[3],
            found_cookie);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"parse_head", parse_head, METH_VARARGS,
     "parse_head(data, lines_limit): a plain request at the start of data, "
     "or None."},
    {"scan_headers", scan_headers, METH_VARARGS,
     "scan_headers(headers, post, proxy_header, cookie_name): a plain request's headers "
     "for its raw-log line, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_plain",
    "The collector's straight path for plain requests, compiled.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__plain(void)
{
    init_tables();
    return PyModule_Create(&module_def);
}
