/*
 * The collector's straight path for plain requests, compiled.
 *
 * The compiled twins of parts of plowline/collector/plainpath.py; that module
 * says what each function gives, and tests check that the two agree.
 *
 * parse_head(data, lines_limit)
 *     Reads one request from the start of ``data`` when it is of the plain
 *     kind a tracker sends: GET, HEAD, or POST with a Content-Length whose
 *     body is all in ``data``; a target of URL characters only; at most 64
 *     header lines of token names and printable ASCII values. It accepts only
 *     what llhttp accepts and reads it the same way; for anything else (and
 *     anything it is unsure of) it gives None and the server's llhttp parser
 *     reads the bytes instead.
 *
 * scan_headers(headers, post, proxy_header, cookie_name)
 *     Checks a request's header list and gives what its raw-log line needs.
 *
 * read_plain(data, lines_limit, proxy_header, cookie_name)
 *     parse_head and scan_headers in one pass over the bytes, without
 *     making the header list: what the server runs for each request.
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

/* A header line of a request read by read_head: where its name and value are
 * in the request's bytes. */
typedef struct {
    const char *name;
    Py_ssize_t name_size;
    const char *value;
    Py_ssize_t value_size;
} span_t;

typedef struct {
    Py_ssize_t used;
    const char *method;
    Py_ssize_t method_size;
    const char *target;
    Py_ssize_t target_size;
    int version_10;
    int keep_alive;
    const char *body; /* NULL for a GET or HEAD */
    Py_ssize_t body_size;
    Py_ssize_t count;
    span_t lines[MAX_SCANNED];
} head_t;

/* Reads a plain request from the start of data into head: 1 if it is one,
 * 0 if not (what llhttp must read). */
static int
read_head(const char *data, Py_ssize_t size, Py_ssize_t lines_limit,
          head_t *head)
{
    const char *end = data + size, *p = data;
    int is_post = 0, connection_seen = 0;
    long long content_length = -1;

    /* The request line. */
    if (end - p >= 4 && memcmp(p, "GET ", 4) == 0) {
        head->method_size = 3;
    }
    else if (end - p >= 5 && memcmp(p, "HEAD ", 5) == 0) {
        head->method_size = 4;
    }
    else if (end - p >= 5 && memcmp(p, "POST ", 5) == 0) {
        head->method_size = 4;
        is_post = 1;
    }
    else {
        return 0;
    }
    head->method = p;
    p += head->method_size + 1;
    head->target = p;
    if (p >= end || *p != '/')
        return 0;
    while (p < end && target_char[(unsigned char)*p])
        p++;
    head->target_size = p - head->target;
    if (end - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 || p[9] != '\r' ||
        p[10] != '\n')
        return 0;
    if (p[8] == '1')
        head->version_10 = 0;
    else if (p[8] == '0')
        head->version_10 = 1;
    else
        return 0;
    head->keep_alive = !head->version_10;
    p += 11;

    /* The header lines. */
    head->count = 0;
    for (;;) {
        const char *name = p, *value;
        Py_ssize_t name_size, value_size;
        span_t *line;

        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
            p += 2;
            break;
        }
        while (p < end && token_char[(unsigned char)*p])
            p++;
        name_size = p - name;
        if (name_size == 0 || p >= end || *p != ':')
            return 0;
        p++;
        while (p < end && *p == ' ')
            p++;
        value = p;
        while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f)
            p++;
        value_size = p - value;
        /* A value of its own (llhttp reports none for an empty one), ended by
         * CRLF, with no white space at its end (which llhttp would drop). */
        if (value_size == 0 || end - p < 2 || p[0] != '\r' || p[1] != '\n' ||
            p[-1] == ' ')
            return 0;
        p += 2;
        if (head->count >= lines_limit || head->count >= MAX_SCANNED)
            return 0;

        /* The headers llhttp acts on. */
        switch (name_size) {
        case 6:
            if (lower_equals(name, name_size, "expect"))
                return 0;
            break;
        case 7:
            if (lower_equals(name, name_size, "upgrade"))
                return 0;
            break;
        case 10:
            if (lower_equals(name, name_size, "connection")) {
                if (connection_seen)
                    return 0;
                connection_seen = 1;
                if (lower_equals(value, value_size, "keep-alive"))
                    head->keep_alive = 1;
                else if (lower_equals(value, value_size, "close"))
                    head->keep_alive = 0;
                else
                    return 0;
            }
            break;
        case 14:
            if (lower_equals(name, name_size, "content-length")) {
                Py_ssize_t i;
                if (!is_post || content_length >= 0 || value_size > 9)
                    return 0;
                content_length = 0;
                for (i = 0; i < value_size; i++) {
                    if (value[i] < '0' || value[i] > '9')
                        return 0;
                    content_length = content_length * 10 + (value[i] - '0');
                }
            }
            break;
        case 16:
            if (lower_equals(name, name_size, "proxy-connection"))
                return 0;
            break;
        case 17:
            if (lower_equals(name, name_size, "transfer-encoding"))
                return 0;
            break;
        }
        line = &head->lines[head->count++];
        line->name = name;
        line->name_size = name_size;
        line->value = value;
        line->value_size = value_size;
    }

    head->body = NULL;
    head->body_size = 0;
    if (is_post) {
        if (content_length < 0 || end - p < content_length)
            return 0;
        head->body = p;
        head->body_size = (Py_ssize_t)content_length;
        p += content_length;
    }
    head->used = p - data;
    return 1;
}

static PyObject *
parse_head(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t lines_limit, i;
    head_t head;
    PyObject *headers, *body, *result;

    if (!PyArg_ParseTuple(args, "y*n", &view, &lines_limit))
        return NULL;
    if (!read_head(view.buf, view.len, lines_limit, &head)) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    headers = PyList_New(0);
    if (headers == NULL)
        goto error;
    for (i = 0; i < head.count; i++) {
        span_t *line = &head.lines[i];
        if (append_pair(headers, lower_bytes(line->name, line->name_size),
                        PyBytes_FromStringAndSize(line->value,
                                                  line->value_size)) < 0)
            goto error;
    }
    if (head.body != NULL) {
        body = PyBytes_FromStringAndSize(head.body, head.body_size);
        if (body == NULL)
            goto error;
    }
    else {
        body = Py_NewRef(Py_None);
    }
    result = Py_BuildValue("(ny#y#sONN)", head.used, head.method,
                           head.method_size, head.target, head.target_size,
                           head.version_10 ? "1.0" : "1.1",
                           head.keep_alive ? Py_True : Py_False, headers, body);
    PyBuffer_Release(&view);
    return result;
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

/* Bytes as a JSON string, or null for NULL; lower-cased if ``lower``. */
static PyObject *
json_text(const char *data, Py_ssize_t size, int lower)
{
    Py_ssize_t i;
    PyObject *result;
    char *out, *start;

    if (data == NULL)
        return PyBytes_FromStringAndSize("null", 4);
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
cookie_value(const char *p, Py_ssize_t size, const char *name,
             Py_ssize_t name_size)
{
    const char *end = p + size;

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

static int
lower_same(const char *a, const char *b, Py_ssize_t size)
{
    Py_ssize_t i;
    for (i = 0; i < size; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x += 32;
        if (y >= 'A' && y <= 'Z')
            y += 32;
        if (x != y)
            return 0;
    }
    return 1;
}

/* The value of the header line named ``name`` (lower-case), or NULL. */
static span_t *
find_line(head_t *head, const char *name, Py_ssize_t size)
{
    Py_ssize_t i;
    for (i = 0; i < head->count; i++) {
        span_t *line = &head->lines[i];
        if (line->name_size == size && lower_same(line->name, name, size))
            return line;
    }
    return NULL;
}

static PyObject *
value_or_none(span_t *line)
{
    if (line == NULL)
        return Py_NewRef(Py_None);
    return PyBytes_FromStringAndSize(line->value, line->value_size);
}

/* Appends a header name lower-cased, with '"' and '\\' escaped. */
static char *
put_lower_escaped(char *out, const char *data, Py_ssize_t size)
{
    Py_ssize_t i;
    for (i = 0; i < size; i++) {
        char c = data[i];
        if (c == '"' || c == '\\')
            *out++ = '\\';
        *out++ = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    return out;
}

static PyObject *
json_text_line(span_t *line, int lower)
{
    if (line == NULL)
        return json_text(NULL, 0, lower);
    return json_text(line->value, line->value_size, lower);
}

/* What scan_headers gives for the header lines of ``head``, whose bytes are
 * all printable ASCII: a new tuple, a new reference to None when they are not
 * plain, or NULL with an error set. Names are compared and written
 * lower-cased. */
static PyObject *
scan_lines(head_t *head, int post, PyObject *proxy_header, PyObject *cookie_name)
{
    Py_ssize_t i, j, size = 0, json_size, escapes = 0;
    PyObject *json, *parts[9] = {NULL};
    span_t *cookie, *host, *origin, *proxy = NULL, *agent, *referer, *type;
    int has_letter = 0;
    char *out;

    if (head->count == 0)
        Py_RETURN_NONE;
    for (i = 0; i < head->count; i++) {
        span_t *line = &head->lines[i];
        for (j = 0; j < line->name_size; j++) {
            char c = line->name[j];
            has_letter |= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        }
        escapes += escapes_in(line->name, line->name_size);
        escapes += escapes_in(line->value, line->value_size);
        for (j = 0; j < i; j++) {
            if (head->lines[j].name_size == line->name_size &&
                lower_same(head->lines[j].name, line->name, line->name_size))
                Py_RETURN_NONE;
        }
        size += line->name_size + line->value_size + LINE_OVERHEAD;
    }
    if (!has_letter || find_line(head, "sp-anonymous", 12) != NULL ||
        find_line(head, "transfer-encoding", 17) != NULL ||
        (!post && find_line(head, "content-length", 14) != NULL))
        Py_RETURN_NONE;
    cookie = find_line(head, "cookie", 6);
    host = find_line(head, "host", 4);
    origin = find_line(head, "origin", 6);
    if (PyBytes_GET_SIZE(proxy_header))
        proxy = find_line(head, PyBytes_AS_STRING(proxy_header),
                          PyBytes_GET_SIZE(proxy_header));
    agent = find_line(head, "user-agent", 10);
    referer = find_line(head, "referer", 7);
    type = find_line(head, "content-type", 12);

    /* [["name","value"],...]: 2 brackets, and per header 2 brackets, 4
     * quotes and a comma inside, a comma between. */
    json_size = 2 + escapes + head->count - 1;
    for (i = 0; i < head->count; i++)
        json_size += head->lines[i].name_size + head->lines[i].value_size + 7;
    json = PyBytes_FromStringAndSize(NULL, json_size);
    if (json == NULL)
        return NULL;
    out = PyBytes_AS_STRING(json);
    *out++ = '[';
    for (i = 0; i < head->count; i++) {
        span_t *line = &head->lines[i];
        if (i)
            *out++ = ',';
        *out++ = '[';
        *out++ = '"';
        out = put_lower_escaped(out, line->name, line->name_size);
        memcpy(out, "\",\"", 3);
        out += 3;
        out = put_escaped(out, line->value, line->value_size);
        *out++ = '"';
        *out++ = ']';
    }
    *out++ = ']';
    assert(out == PyBytes_AS_STRING(json) + json_size);

    parts[0] = value_or_none(cookie);
    parts[1] = value_or_none(host);
    parts[2] = value_or_none(origin);
    parts[3] = value_or_none(proxy);
    parts[4] = json_text_line(agent, 0);
    parts[5] = json_text_line(referer, 0);
    parts[6] = json_text_line(host, 0);
    parts[7] = json_text_line(type, 1);
    parts[8] = cookie ? cookie_value(cookie->value, cookie->value_size,
                                     PyBytes_AS_STRING(cookie_name),
                                     PyBytes_GET_SIZE(cookie_name))
                      : NULL;
    if (parts[8] == NULL && !PyErr_Occurred())
        parts[8] = Py_NewRef(Py_None);
    for (i = 0; i < 9; i++) {
        if (parts[i] == NULL) {
            Py_DECREF(json);
            for (j = 0; j < 9; j++)
                Py_XDECREF(parts[j]);
            return NULL;
        }
    }
    /* "N" hands the references over, also when it fails. */
    return Py_BuildValue("(NnNNNNNNNNN)", json, size, parts[0], parts[1],
                         parts[2], parts[3], parts[4], parts[5], parts[6],
                         parts[7], parts[8]);
}

static PyObject *
scan_headers(PyObject *module, PyObject *args)
{
    PyObject *headers, *proxy_header, *cookie_name;
    int post;
    Py_ssize_t count, i, k;
    head_t head;

    if (!PyArg_ParseTuple(args, "O!pSS", &PyList_Type, &headers, &post,
                          &proxy_header, &cookie_name))
        return NULL;
    count = PyList_GET_SIZE(headers);
    if (count > MAX_SCANNED)
        Py_RETURN_NONE;
    for (i = 0; i < count; i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i), *name, *value;
        span_t *line = &head.lines[i];

        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2)
            Py_RETURN_NONE;
        name = PyTuple_GET_ITEM(pair, 0);
        value = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(value))
            Py_RETURN_NONE;
        line->name = PyBytes_AS_STRING(name);
        line->name_size = PyBytes_GET_SIZE(name);
        line->value = PyBytes_AS_STRING(value);
        line->value_size = PyBytes_GET_SIZE(value);
        /* Printable ASCII only, and names already lower-case. */
        for (k = 0; k < line->name_size; k++) {
            unsigned char c = (unsigned char)line->name[k];
            if (c < 0x20 || c > 0x7f || (c >= 'A' && c <= 'Z'))
                Py_RETURN_NONE;
        }
        for (k = 0; k < line->value_size; k++) {
            unsigned char c = (unsigned char)line->value[k];
            if (c < 0x20 || c > 0x7f)
                Py_RETURN_NONE;
        }
    }
    head.count = count;
    /* The list holds the bytes the spans point into for the whole call. */
    return scan_lines(&head, post, proxy_header, cookie_name);
}

static PyObject *
read_plain(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t lines_limit;
    PyObject *proxy_header, *cookie_name, *scanned, *body, *result;
    head_t head;

    if (!PyArg_ParseTuple(args, "y*nSS", &view, &lines_limit, &proxy_header,
                          &cookie_name))
        return NULL;
    if (!read_head(view.buf, view.len, lines_limit, &head)) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    scanned = scan_lines(&head, head.body != NULL, proxy_header, cookie_name);
    if (scanned == NULL || scanned == Py_None) {
        PyBuffer_Release(&view);
        return scanned;
    }
    if (head.body != NULL)
        body = PyBytes_FromStringAndSize(head.body, head.body_size);
    else
        body = Py_NewRef(Py_None);
    if (body == NULL) {
        Py_DECREF(scanned);
        PyBuffer_Release(&view);
        return NULL;
    }
    /* The method and target are copied out of the buffer before it is let go. */
    result = Py_BuildValue("(ny#y#sONN)", head.used, head.method,
                           head.method_size, head.target, head.target_size,
                           head.version_10 ? "1.0" : "1.1",
                           head.keep_alive ? Py_True : Py_False, body, scanned);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"parse_head", parse_head, METH_VARARGS,
     "parse_head(data, lines_limit): a plain request at the start of data, "
     "or None."},
    {"scan_headers", scan_headers, METH_VARARGS,
     "scan_headers(headers, post, proxy_header, cookie_name): a plain request's headers "
     "for its raw-log line, or None."},
    {"read_plain", read_plain, METH_VARARGS,
     "read_plain(data, lines_limit, proxy_header, cookie_name): "
     "parse_head and scan_headers in one pass, or None."},
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
