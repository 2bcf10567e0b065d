/* Enriched TSV into the buffers of Arrow string columns, for the loader.
 *
 * split_tsv(data, width, rows) cuts whole lines of enriched TSV (fields split
 * by tabs, lines ending in LF, the last one perhaps without) into `width`
 * columns and returns, for each, the three buffers of an Arrow string array
 * and its null count: (validity or None when no value is empty, offsets,
 * values, nulls), each buffer as (address, size, owner) for
 * pyarrow.foreign_buffer; the owner frees the memory when the last buffer
 * made over it goes. An empty field is NULL, as the loader reads it. Value
 * buffers are sized from the lines around points spread over the data, grown
 * when that falls short, and cut to their size at the end.
 *
 * The memory is the C library's (PyMem_Raw*). Tried and not kept: buffers
 * from Arrow's memory pool, which keeps freed memory for the next batch. A
 * 1,000,000-event Parquet load took 4.8 to 5.2 s with them, 3.9 to 4.0 s with
 * malloc, whose big blocks are reused from the heap once the first is freed.
 *
 * It returns None, and the caller then parses with Arrow's reader, whose
 * errors it reports, for anything but the plain case: a line with another
 * number of fields, a carriage return anywhere, text that is not UTF-8, a
 * row count other than `rows`, a column over 2 GiB, or a byte-order mark at
 * the start. The text is checked as copied into the columns, so a table is
 * valid even if the input changes meanwhile. The work runs without the GIL,
 * so the loader's other threads go on meanwhile.
 */

#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memrchr */
#endif
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define OWNER_NAME "plowline.storage._columns.buffer"
/* Lines measured to size the value buffers, spread over the data. */
#define SAMPLES 256
#define MIN_CAPACITY 64
/* A value buffer with more room than this left over is cut to its size. */
#define SLACK_KEPT (64 * 1024)

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
    int32_t *offsets;
    uint8_t *valid;
    Py_ssize_t nulls;
} column_t;

/* Whether s[0..n) is UTF-8 as Arrow accepts it: no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
static int utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* Eight ASCII bytes at a time. */
        while (i + 8 <= n) {
            uint64_t word;
            memcpy(&word, s + i, 8);
            if (word & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char low = 0x80, high = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                low = 0xA0;
            else if (c == 0xED)
                high = 0x9F;
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                low = 0x90;
            else if (c == 0xF4)
                high = 0x8F;
        }
        else
            return 0;
        if (n - i <= need)
            return 0; /* the sequence is cut short */
        if (s[i + 1] < low || s[i + 1] > high)
            return 0;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += need + 1;
    }
    return 1;
}

/* The first tab in [q, end), or end: eight bytes at a time, where the
 * lowest byte flagged by the zero-byte test is the first tab. */
static inline const char *next_tab(const char *q, const char *end)
{
    while (q + 8 <= end) {
        uint64_t word;
        memcpy(&word, q, 8);
        uint64_t x = word ^ 0x0909090909090909ULL;
        uint64_t found = (x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL;
        if (found)
            return q + (__builtin_ctzll(found) >> 3);
        q += 8;
    }
    while (q < end && *q != '\t')
        q++;
    return q;
}

static void free_columns(column_t *columns, Py_ssize_t width)
{
    if (columns == NULL)
        return;
    for (Py_ssize_t j = 0; j < width; j++) {
        PyMem_RawFree(columns[j].data);
        PyMem_RawFree(columns[j].offsets);
        PyMem_RawFree(columns[j].valid);
    }
    PyMem_RawFree(columns);
}

static void free_owned(PyObject *capsule)
{
    PyMem_RawFree(PyCapsule_GetPointer(capsule, OWNER_NAME));
}

/* (address, size, owner) of memory this module allocated; the owner takes
 * it over (and frees it if this fails). */
static PyObject *handed(void *memory, size_t size)
{
    PyObject *owner = PyCapsule_New(memory, OWNER_NAME, free_owned);
    if (owner == NULL) {
        PyMem_RawFree(memory);
        return NULL;
    }
    PyObject *address = PyLong_FromVoidPtr(memory);
    if (address == NULL) {
        Py_DECREF(owner);
        return NULL;
    }
    return Py_BuildValue("(NnN)", address, (Py_ssize_t)size, owner);
}

enum { SPLIT_OK = 0, SPLIT_OTHER = 1, SPLIT_MEMORY = 2 };

/* Grow a column's value bytes to hold `more` bytes more. */
static int make_room(column_t *column, size_t more)
{
    size_t wanted = column->size + more;
    if (wanted <= column->capacity)
        return SPLIT_OK;
    if (wanted > (size_t)INT32_MAX)
        return SPLIT_OTHER; /* Arrow's string offsets are 32-bit */
    size_t capacity = column->capacity > MIN_CAPACITY ? column->capacity : MIN_CAPACITY;
    while (capacity < wanted)
        capacity *= 2;
    if (capacity > (size_t)INT32_MAX)
        capacity = (size_t)INT32_MAX;
    char *data = PyMem_RawRealloc(column->data, capacity);
    if (data == NULL)
        return SPLIT_MEMORY;
    column->data = data;
    column->capacity = capacity;
    return SPLIT_OK;
}

/* Each column's value bytes, estimated into sizes[]: the lines that hold
 * points spread evenly over the data are measured (a line is hit in
 * proportion to its length), and each column's share of their bytes is
 * taken of the whole, with a quarter more; never more than the data. */
static void estimate(const char *start, size_t length, Py_ssize_t width,
                     size_t *sizes)
{
    const char *end = start + length;
    const char *floor = start; /* a line start at or before the points left */
    const char *measured_end = start; /* end of the line measured last */
    size_t *last = sizes + width; /* that line's fields (scratch) */
    size_t line_bytes = 0, total = 0;
    for (int k = 0; k < SAMPLES; k++) {
        const char *point = start + length / SAMPLES * (size_t)k;
        if (point < measured_end || measured_end == end) {
            /* In the line measured last: count it again. */
            for (Py_ssize_t j = 0; j < width; j++)
                sizes[j] += last[j];
            total += line_bytes;
            continue;
        }
        const char *before = memrchr(floor, '\n', (size_t)(point - floor));
        const char *p = before ? before + 1 : floor;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        memset(last, 0, (size_t)width * sizeof(size_t));
        const char *s = p;
        for (Py_ssize_t j = 0; j < width; j++) {
            const char *q = next_tab(s, line_end);
            last[j] = (size_t)(q - s);
            sizes[j] += last[j];
            if (q >= line_end)
                break;
            s = q + 1;
        }
        line_bytes = (size_t)(line_end - p) + 1;
        total += line_bytes;
        /* At the end of the data, every later point is in this line. */
        measured_end = floor = eol ? eol + 1 : end;
    }
    for (Py_ssize_t j = 0; j < width; j++) {
        double share = total ? (double)sizes[j] / (double)total : 0;
        double wanted = share * (double)length * 1.25 + MIN_CAPACITY;
        if (wanted > (double)length + MIN_CAPACITY)
            wanted = (double)length + MIN_CAPACITY;
        sizes[j] = wanted > (double)INT32_MAX ? (size_t)INT32_MAX : (size_t)wanted;
    }
}

/* The cutting itself, without the GIL. */
static int split(const char *start, size_t length, Py_ssize_t width,
                 Py_ssize_t rows, column_t *columns)
{
    const char *end = start + length;
    size_t *sizes = PyMem_RawCalloc((size_t)width * 2, sizeof(size_t));
    if (sizes == NULL)
        return SPLIT_MEMORY;
    estimate(start, length, width, sizes);
    size_t bitmap = (size_t)(rows + 7) / 8;
    for (Py_ssize_t j = 0; j < width; j++) {
        columns[j].offsets = PyMem_RawMalloc(((size_t)rows + 1) * sizeof(int32_t));
        columns[j].valid = PyMem_RawCalloc(bitmap ? bitmap : 1, 1);
        columns[j].data = PyMem_RawMalloc(sizes[j]);
        if (columns[j].offsets == NULL || columns[j].valid == NULL
            || columns[j].data == NULL) {
            PyMem_RawFree(sizes);
            return SPLIT_MEMORY;
        }
        columns[j].capacity = sizes[j];
        columns[j].offsets[0] = 0;
    }
    PyMem_RawFree(sizes);

    const char *p = start;
    Py_ssize_t row = 0;
    while (p < end) {
        if (row >= rows)
            return SPLIT_OTHER;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *s = p;
        for (Py_ssize_t j = 0; j < width; j++) {
            const char *q = next_tab(s, line_end);
            int last = j == width - 1;
            if (last != (q == line_end))
                return SPLIT_OTHER; /* too few or too many fields */
            column_t *column = &columns[j];
            size_t n = (size_t)(q - s);
            if (n) {
                int status = make_room(column, n);
                if (status != SPLIT_OK)
                    return status;
                memcpy(column->data + column->size, s, n);
                column->size += n;
                column->valid[row >> 3] |= (uint8_t)(1u << (row & 7));
            }
            else
                column->nulls++;
            column->offsets[row + 1] = (int32_t)column->size;
            s = q + 1;
        }
        row++;
        p = eol ? eol + 1 : end;
    }
    if (row != rows)
        return SPLIT_OTHER;
    /* What was copied is checked, not the input, which another thread or
     * process may change meanwhile (a mapped file rewritten in place): no
     * carriage return, which Arrow's reader takes for a line end, and
     * UTF-8, which Arrow's strings must be. */
    for (Py_ssize_t j = 0; j < width; j++) {
        column_t *column = &columns[j];
        if (memchr(column->data, '\r', column->size) != NULL
            || !utf8_ok((const unsigned char *)column->data, column->size))
            return SPLIT_OTHER;
    }
    /* Room left over from the estimate goes back. */
    for (Py_ssize_t j = 0; j < width; j++) {
        column_t *column = &columns[j];
        if (column->capacity - column->size > SLACK_KEPT) {
            char *data = PyMem_RawRealloc(column->data,
                                          column->size ? column->size : 1);
            if (data != NULL) {
                column->data = data;
                column->capacity = column->size;
            }
        }
    }
    return SPLIT_OK;
}

static PyObject *split_tsv(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t width, rows;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &width, &rows))
        return NULL;
    /* A line holds width - 1 tabs, and there are at most len + 1 lines. */
    if (width < 1 || rows < 1 || view.len < 1 || width > view.len + 1
        || rows > view.len + 1
        || (view.len >= 3 && memcmp(view.buf, "\xef\xbb\xbf", 3) == 0)) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    column_t *columns = PyMem_RawCalloc((size_t)width, sizeof(column_t));
    if (columns == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = split(view.buf, (size_t)view.len, width, rows, columns);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (status != SPLIT_OK) {
        free_columns(columns, width);
        if (status == SPLIT_MEMORY)
            return PyErr_NoMemory();
        Py_RETURN_NONE;
    }

    PyObject *out = PyList_New(width);
    if (out == NULL) {
        free_columns(columns, width);
        return NULL;
    }
    for (Py_ssize_t j = 0; j < width; j++) {
        column_t *column = &columns[j];
        PyObject *valid = NULL, *offsets = NULL, *data = NULL, *item = NULL;
        if (column->nulls)
            valid = handed(column->valid, (size_t)(rows + 7) / 8);
        else {
            PyMem_RawFree(column->valid);
            valid = Py_NewRef(Py_None);
        }
        column->valid = NULL;
        if (valid != NULL)
            offsets = handed(column->offsets, ((size_t)rows + 1) * sizeof(int32_t));
        else
            PyMem_RawFree(column->offsets);
        column->offsets = NULL;
        if (offsets != NULL)
            data = handed(column->data, column->size);
        else
            PyMem_RawFree(column->data);
        column->data = NULL;
        if (data != NULL)
            item = Py_BuildValue("(OOOn)", valid, offsets, data, column->nulls);
        Py_XDECREF(valid);
        Py_XDECREF(offsets);
        Py_XDECREF(data);
        if (item == NULL) {
            Py_DECREF(out);
            free_columns(columns, width);
            return NULL;
        }
        PyList_SET_ITEM(out, j, item);
    }
    free_columns(columns, width);
    return out;
}

/* ---- Timestamps: the text of a plain UTC timestamp as microseconds ---- */

static int number(const char *s, int n, int *out)
{
    int value = 0;
    for (int k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9')
            return 0;
        value = value * 10 + (s[k] - '0');
    }
    *out = value;
    return 1;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
        return 29;
    return days[month - 1];
}

/* Days from 1970-01-01 to a date of the proleptic Gregorian calendar. */
static int64_t days_from_civil(int year, int month, int day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t of_era = year - era * 400;
    int64_t of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t of_cycle = of_era * 365 + of_era / 4 - of_era / 100 + of_year;
    return era * 146097 + of_cycle - 719468;
}

/* yyyy-MM-dd[ T]HH:mm:ss[.f{1,6}][Z] of a real date and time, years 1 to
 * 9999, as microseconds since 1970; 0 for any other text. */
static int plain_micros(const char *s, size_t n, int64_t *out)
{
    if (n && s[n - 1] == 'Z')
        n--;
    if (n < 19 || n == 20 || n > 26)
        return 0;
    int year, month, day, hour, minute, second, fraction = 0;
    if (s[4] != '-' || s[7] != '-' || (s[10] != ' ' && s[10] != 'T')
        || s[13] != ':' || s[16] != ':')
        return 0;
    if (!number(s, 4, &year) || !number(s + 5, 2, &month) || !number(s + 8, 2, &day)
        || !number(s + 11, 2, &hour) || !number(s + 14, 2, &minute)
        || !number(s + 17, 2, &second))
        return 0;
    if (n > 19) {
        int places = (int)n - 20;
        if (s[19] != '.' || !number(s + 20, places, &fraction))
            return 0;
        for (int k = places; k < 6; k++)
            fraction *= 10;
    }
    if (year < 1 || month < 1 || month > 12 || day < 1
        || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59)
        return 0;
    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600
                      + minute * 60 + second;
    *out = seconds * 1000000 + fraction;
    return 1;
}

/* tstamps(validity, offsets, values, length): the int64 microseconds of a
 * string array's timestamps (0 under NULLs), or None if any value is not
 * plain (the caller's checks and Arrow's cast then deal with it). */
static PyObject *tstamps(PyObject *self, PyObject *args)
{
    PyObject *validity;
    Py_buffer offsets, values;
    Py_ssize_t length;
    if (!PyArg_ParseTuple(args, "Oy*y*n", &validity, &offsets, &values, &length))
        return NULL;
    Py_buffer bits = {0};
    int has_bits = validity != Py_None;
    PyObject *out = NULL;
    if (has_bits && PyObject_GetBuffer(validity, &bits, PyBUF_SIMPLE) < 0)
        goto done;
    if (length < 0 || (size_t)offsets.len < ((size_t)length + 1) * sizeof(int32_t)
        || (has_bits && (size_t)bits.len < ((size_t)length + 7) / 8)) {
        PyErr_SetString(PyExc_ValueError, "buffers too small for the length");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, length * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL)
        goto done;
    int64_t *micros = (int64_t *)PyBytes_AS_STRING(out);
    const int32_t *ends = offsets.buf;
    const char *text = values.buf;
    const uint8_t *valid = bits.buf;
    int plain = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < length; i++) {
        micros[i] = 0;
        if (has_bits && !(valid[i >> 3] & (1u << (i & 7))))
            continue;
        int32_t from = ends[i], to = ends[i + 1];
        if (from < 0 || to < from || (Py_ssize_t)to > values.len
            || !plain_micros(text + from, (size_t)(to - from), &micros[i])) {
            plain = 0;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (!plain)
        Py_SETREF(out, Py_NewRef(Py_None));
done:
    if (has_bits && bits.obj != NULL)
        PyBuffer_Release(&bits);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&values);
    return out;
}

static PyMethodDef methods[] = {
    {"tstamps", tstamps, METH_VARARGS,
     "tstamps(validity, offsets, values, length): int64 microseconds of "
     "plain UTC timestamps, as bytes, or None."},
    {"split_tsv", split_tsv, METH_VARARGS,
     "split_tsv(data, width, rows): for each of width columns, (validity, "
     "offsets, values, null count) of an Arrow string array, each buffer as "
     "(address, size, owner); None for anything but plain UTF-8 lines of "
     "width fields each, rows of them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_columns",
    "Enriched TSV into Arrow string columns, compiled.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__columns(void)
{
    return PyModule_Create(&module_def);
}
