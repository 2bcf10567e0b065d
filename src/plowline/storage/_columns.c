/* Enriched TSV into the buffers of Arrow string columns, for the loader.
 *
 * split_tsv(data, width, rows, allocate) cuts whole lines of enriched TSV
 * (fields split by tabs, lines ending in LF, the last one perhaps without)
 * into `width` columns and returns, for each, the buffers of an Arrow string
 * array and its null count: (validity or None when no value is empty,
 * offsets, values, nulls). An empty field is NULL, as the loader reads it.
 * Every buffer comes from allocate(size), which must return a resizable Arrow
 * buffer (pyarrow.allocate_buffer(size, resizable=True)): Arrow's memory pool
 * keeps freed memory for the next batch, where memory fresh from the system
 * costs a page fault per 4 KiB on its first touch (a third of the time the
 * splitting took with malloc'd buffers here). Value buffers are sized from
 * lines spread over the data and grown when that falls short; the buffers
 * handed back are slices of larger ones.
 *
 * It returns None, and the caller then parses with Arrow's reader, whose
 * errors it reports, for anything but the plain case: a line with another
 * number of fields, a carriage return anywhere, text that is not UTF-8, a
 * row count other than `rows`, a column over 2 GiB, or a byte-order mark at
 * the start. The cutting runs without the GIL, so the loader's other threads
 * go on meanwhile.
 */

#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memrchr */
#endif
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Lines measured to size the value buffers, spread over the data. */
#define SAMPLES 256
#define MIN_CAPACITY 64

typedef struct {
    PyObject *buffer; /* the values' resizable Arrow buffer */
    size_t skip;      /* where in it they start */
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

enum { SPLIT_OK = 0, SPLIT_OTHER = 1, SPLIT_ERROR = 2 };

/* The writable memory of an Arrow buffer, from its address. */
static void *address_of(PyObject *buffer)
{
    PyObject *address = PyObject_GetAttrString(buffer, "address");
    if (address == NULL)
        return NULL;
    void *memory = PyLong_AsVoidPtr(address);
    Py_DECREF(address);
    return memory;
}

/* Whether an Arrow buffer is writable and has at least `size` bytes; -1
 * (with an exception) if not. */
static int holds(PyObject *buffer, size_t size)
{
    PyObject *mutable = PyObject_GetAttrString(buffer, "is_mutable");
    if (mutable == NULL)
        return -1;
    int writable = PyObject_IsTrue(mutable);
    Py_DECREF(mutable);
    if (writable < 0)
        return -1;
    if (!writable) {
        PyErr_SetString(PyExc_ValueError, "allocate gave a read-only buffer");
        return -1;
    }
    PyObject *given = PyObject_GetAttrString(buffer, "size");
    if (given == NULL)
        return -1;
    Py_ssize_t bytes = PyLong_AsSsize_t(given);
    Py_DECREF(given);
    if (bytes == -1 && PyErr_Occurred())
        return -1;
    if (bytes < 0 || (size_t)bytes < size) {
        PyErr_SetString(PyExc_ValueError, "allocate gave a buffer smaller than asked");
        return -1;
    }
    return 1;
}

/* A new resizable buffer of allocate's, with its memory; NULL on error. */
static PyObject *allocated(PyObject *allocate, size_t size, void **memory)
{
    PyObject *buffer = PyObject_CallFunction(allocate, "n", (Py_ssize_t)size);
    if (buffer == NULL)
        return NULL;
    if (holds(buffer, size) < 0) {
        Py_DECREF(buffer);
        return NULL;
    }
    *memory = address_of(buffer);
    if (*memory == NULL && (size || PyErr_Occurred())) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "allocate gave a buffer without memory");
        Py_DECREF(buffer);
        return NULL;
    }
    return buffer;
}

/* Room in a column's values for `more` bytes more: the buffer is resized,
 * with the GIL taken back for the call. */
static int make_room(column_t *column, size_t more, PyThreadState **state)
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
    capacity += column->skip;
    int status = SPLIT_ERROR;
    PyEval_RestoreThread(*state);
    PyObject *done = PyObject_CallMethod(column->buffer, "resize", "n",
                                         (Py_ssize_t)capacity);
    if (done != NULL) {
        Py_DECREF(done);
        char *memory = NULL;
        if (holds(column->buffer, capacity) > 0)
            memory = address_of(column->buffer);
        if (memory != NULL) {
            column->data = memory + column->skip;
            column->capacity = capacity - column->skip;
            status = SPLIT_OK;
        }
    }
    *state = PyEval_SaveThread();
    return status;
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

/* `size` rounded up to an odd number of 64-byte cache lines. */
static size_t odd_lines(size_t size)
{
    size_t lines = (size + 63) / 64;
    return (lines | 1) * 64;
}

/* The cutting itself, without the GIL (taken back only to grow a buffer). */
static int split(const char *start, size_t length, Py_ssize_t width,
                 Py_ssize_t rows, column_t *columns, PyThreadState **state)
{
    const char *end = start + length;
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
                int status = make_room(column, n, state);
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
    return row == rows ? SPLIT_OK : SPLIT_OTHER;
}

/* Whether the text can be split here at all: no carriage return, UTF-8. */
static int plain_text(const char *start, size_t length)
{
    return memchr(start, '\r', length) == NULL
           && utf8_ok((const unsigned char *)start, length);
}

static PyObject *split_tsv(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t width, rows;
    PyObject *allocate;
    if (!PyArg_ParseTuple(args, "y*nnO", &view, &width, &rows, &allocate))
        return NULL;
    const char *start = view.buf;
    size_t length = (size_t)view.len;
    PyObject *out = NULL;
    column_t *columns = NULL;
    PyObject *offsets = NULL, *valid = NULL; /* every column's, one buffer each */
    size_t *sizes = NULL;
    int plain = 0;

    if (width < 1 || rows < 1 || length < 1
        || (length >= 3 && memcmp(start, "\xef\xbb\xbf", 3) == 0))
        goto other;
    Py_BEGIN_ALLOW_THREADS
    plain = plain_text(start, length);
    Py_END_ALLOW_THREADS
    if (!plain)
        goto other;

    columns = PyMem_Calloc((size_t)width, sizeof(column_t));
    sizes = PyMem_Calloc((size_t)width * 2, sizeof(size_t));
    if (columns == NULL || sizes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    estimate(start, length, width, sizes);
    /* Each row writes an offset (and maybe a validity bit) of every column:
     * with the columns' parts of one buffer an odd number of cache lines
     * apart, those writes fall into different cache sets. Separate buffers
     * from Arrow's pool start at like addresses and made it three times as
     * slow. */
    size_t offsets_stride = odd_lines(((size_t)rows + 1) * sizeof(int32_t));
    size_t bitmap = (size_t)(rows + 7) / 8;
    size_t valid_stride = odd_lines(bitmap);
    char *offsets_memory, *valid_memory;
    void *memory;
    offsets = allocated(allocate, offsets_stride * (size_t)width, &memory);
    if (offsets == NULL)
        goto done;
    offsets_memory = memory;
    valid = allocated(allocate, valid_stride * (size_t)width, &memory);
    if (valid == NULL)
        goto done;
    valid_memory = memory;
    memset(valid_memory, 0, valid_stride * (size_t)width);
    for (Py_ssize_t j = 0; j < width; j++) {
        column_t *column = &columns[j];
        /* The values too start at unlike places in their buffers, which
         * the pool aligns alike. */
        column->skip = 64 * (((size_t)j * 97) % 1024);
        if (column->skip > sizes[j] / 8)
            column->skip = sizes[j] / 8 / 64 * 64; /* small columns: little */
        column->buffer = allocated(allocate, column->skip + sizes[j], &memory);
        if (column->buffer == NULL)
            goto done;
        column->data = (char *)memory + column->skip;
        column->capacity = sizes[j];
        column->offsets = (int32_t *)(offsets_memory + offsets_stride * (size_t)j);
        column->offsets[0] = 0;
        column->valid = (uint8_t *)(valid_memory + valid_stride * (size_t)j);
    }

    PyThreadState *state = PyEval_SaveThread();
    int status = split(start, length, width, rows, columns, &state);
    PyEval_RestoreThread(state);
    if (status == SPLIT_ERROR)
        goto done;
    if (status == SPLIT_OTHER)
        goto other;

    out = PyList_New(width);
    if (out == NULL)
        goto done;
    for (Py_ssize_t j = 0; j < width; j++) {
        column_t *column = &columns[j];
        PyObject *values = PyObject_CallMethod(column->buffer, "slice", "nn",
                                               (Py_ssize_t)column->skip,
                                               (Py_ssize_t)column->size);
        if (values == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyObject *column_offsets = PyObject_CallMethod(
            offsets, "slice", "nn", (Py_ssize_t)(offsets_stride * (size_t)j),
            (Py_ssize_t)(((size_t)rows + 1) * sizeof(int32_t)));
        PyObject *column_valid = NULL;
        if (column_offsets != NULL && column->nulls)
            column_valid = PyObject_CallMethod(
                valid, "slice", "nn", (Py_ssize_t)(valid_stride * (size_t)j),
                (Py_ssize_t)bitmap);
        PyObject *item = NULL;
        if (column_offsets != NULL && (column_valid != NULL || !column->nulls))
            item = Py_BuildValue("(OOOn)", column_valid ? column_valid : Py_None,
                                 column_offsets, values, column->nulls);
        Py_DECREF(values);
        Py_XDECREF(column_offsets);
        Py_XDECREF(column_valid);
        if (item == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, j, item);
    }
    goto done;

other:
    out = Py_NewRef(Py_None);
done:
    if (columns != NULL)
        for (Py_ssize_t j = 0; j < width; j++)
            Py_XDECREF(columns[j].buffer);
    Py_XDECREF(offsets);
    Py_XDECREF(valid);
    PyMem_Free(columns);
    PyMem_Free(sizes);
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"split_tsv", split_tsv, METH_VARARGS,
     "split_tsv(data, width, rows, allocate): for each of width columns, "
     "(validity, offsets, values, null count) of an Arrow string array, in "
     "buffers of allocate's; None for anything but plain UTF-8 lines of "
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
