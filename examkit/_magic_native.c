/* examkit._magic_native: the check of examkit.magic_subset, compiled.
 *
 * possible(program, head) -> bool: whether some rule that the smaller magic database
 * leaves out may match the head, i.e. whether one of the rules' clauses has all its
 * literals in the head (case-folded). It gives the answer of
 * examkit.magic_subset.possible() (tests/test_magic_subset.py compares them); a pair
 * table of the head rejects most literals before any search. Every read of the
 * program is bounds-checked; a malformed program raises ValueError.
 *
 * which(program, head) -> int gives the same for each rule as a bitmask (at most 62
 * rules: examkit.magic_subset's keyed copies), matching(program, head) -> list[int] the
 * indices of every rule that may match (examkit.magic_binary's copies).
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { ANYWHERE = 0, AT_OFFSET = 1, LINE_START = 2 };

typedef struct {
    const unsigned char *p, *end;
    int bad;
} Reader;

static uint32_t take(Reader *r, int size) {
    uint32_t v = 0;
    if (r->end - r->p < size) {
        r->bad = 1;
        r->p = r->end;
        return 0;
    }
    for (int i = 0; i < size; i++) v |= (uint32_t)r->p[i] << (8 * i);
    r->p += size;
    return v;
}

static int pairs_present(const uint8_t *pairs, const unsigned char *lit, Py_ssize_t len) {
    for (Py_ssize_t i = 0; i + 1 < len; i++) {
        unsigned idx = ((unsigned)lit[i] << 8) | lit[i + 1];
        if (!(pairs[idx >> 3] & (1u << (idx & 7)))) return 0;
    }
    return 1;
}

/* The head as the literals are compared: case-folded, with a table of its byte pairs;
 * both made on first need (a program of literals at fixed offsets needs neither). */
typedef struct {
    const unsigned char *src;
    unsigned char *buf;
    uint8_t *pairs;
    Py_ssize_t n;
    int ready, failed;
} Head;

static inline unsigned char fold(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static int prepare(Head *h) {
    if (h->ready) return !h->failed;
    h->ready = 1;
    if (h->buf == NULL || h->pairs == NULL) {
        h->failed = 1;
        return 0;
    }
    for (Py_ssize_t i = 0; i < h->n; i++) h->buf[i] = fold(h->src[i]);
    for (Py_ssize_t i = 0; i + 1 < h->n; i++) {
        unsigned idx = ((unsigned)h->buf[i] << 8) | h->buf[i + 1];
        h->pairs[idx >> 3] |= (uint8_t)(1u << (idx & 7));
    }
    return 1;
}

/* 1 if found, 0 if not, -1 if the head could not be prepared (no memory). */
static int found(int mode, uint32_t offset, const unsigned char *lit, Py_ssize_t len,
                 Head *h) {
    Py_ssize_t n = h->n;
    if (mode == AT_OFFSET) {
        if ((Py_ssize_t)offset > n || len > n - (Py_ssize_t)offset) return 0;
        const unsigned char *at = h->src + offset;
        for (Py_ssize_t i = 0; i < len; i++)
            if (fold(at[i]) != lit[i]) return 0;
        return 1;
    }
    if (len == 0) return 1;
    if (len > n) return 0;
    if (!prepare(h)) return -1;
    const unsigned char *buf = h->buf;
    if (!pairs_present(h->pairs, lit, len)) return 0;
    if (mode == ANYWHERE) return memmem(buf, (size_t)n, lit, (size_t)len) != NULL;
    /* LINE_START: at the start of the head or just after a newline */
    const unsigned char *at = buf, *last = buf + n;
    while (at < last) {
        const unsigned char *hit = memmem(at, (size_t)(last - at), lit, (size_t)len);
        if (hit == NULL) return 0;
        if (hit == buf || hit[-1] == '\n') return 1;
        at = hit + 1;
    }
    return 0;
}

enum { FIRST = 0, MASK = 1, LIST = 2 };

/* MASK: bit i of the result set when rule i of the program may match (at most 62 rules);
 * FIRST: 1 once one may match; LIST: each rule that may match appended to ``hits``.
 * -1 on a malformed program (or too many rules for MASK), -2 if ``hits`` cannot grow. */
static int64_t scan(Py_buffer *prog, Head *h, int mode, PyObject *hits) {
    uint64_t mask = 0;
    int first_only = mode == FIRST;
    Reader r = {prog->buf, (const unsigned char *)prog->buf + prog->len, 0};
    uint32_t rules = take(&r, 4);
    if (mode == MASK && rules > 62) return -1;
    for (uint32_t rule = 0; rule < rules && !r.bad; rule++) {
        uint32_t clauses = take(&r, 2);
        int hit = 0;
        for (uint32_t c = 0; c < clauses && !r.bad; c++) {
            uint32_t literals = take(&r, 2);
            int all = !hit; /* once the rule may match, its other clauses are only read */
            for (uint32_t l = 0; l < literals && !r.bad; l++) {
                int kind = (int)take(&r, 1);
                uint32_t offset = take(&r, 4);
                Py_ssize_t len = (Py_ssize_t)take(&r, 2);
                if (r.bad || r.end - r.p < len) {
                    r.bad = 1;
                    break;
                }
                if (all) {
                    int got = found(kind, offset, r.p, len, h);
                    if (got < 0) return -3;
                    all = got;
                }
                r.p += len;
            }
            if (all && !r.bad) hit = 1;
        }
        if (hit && !r.bad) {
            if (first_only) return 1;
            if (mode == LIST) {
                PyObject *index = PyLong_FromUnsignedLong(rule);
                int failed = index == NULL || PyList_Append(hits, index) < 0;
                Py_XDECREF(index);
                if (failed) return -2;
            } else {
                mask |= (uint64_t)1 << rule;
            }
        }
    }
    return r.bad ? -1 : (int64_t)mask;
}

/* The program's rules over the head (folded and paired only if a literal needs it). */
static PyObject *check(PyObject *args, int mode) {
    Py_buffer prog, head;
    if (!PyArg_ParseTuple(args, "y*y*", &prog, &head)) return NULL;
    PyObject *hits = mode == LIST ? PyList_New(0) : NULL;
    if (mode == LIST && hits == NULL) {
        PyBuffer_Release(&prog);
        PyBuffer_Release(&head);
        return NULL;
    }
    Py_ssize_t n = head.len;
    unsigned char local[8192];
    Head h = {head.buf, n <= (Py_ssize_t)sizeof local ? local : PyMem_Malloc((size_t)n),
              PyMem_Calloc(8192, 1) /* one bit per byte pair */, n, 0, 0};
    int64_t result = scan(&prog, &h, mode, hits);
    if (h.buf != local) PyMem_Free(h.buf);
    PyMem_Free(h.pairs);
    PyBuffer_Release(&prog);
    PyBuffer_Release(&head);
    if (result < 0) {
        Py_XDECREF(hits);
        if (result == -3) return PyErr_NoMemory();
        if (result == -1) PyErr_SetString(PyExc_ValueError, "malformed magic-subset program");
        return NULL; /* -2: the error of PyList_Append */
    }
    if (mode == LIST) return hits;
    return mode == FIRST ? PyBool_FromLong(result != 0) : PyLong_FromLongLong(result);
}

static PyObject *possible(PyObject *self, PyObject *args) {
    (void)self;
    return check(args, FIRST);
}

static PyObject *which(PyObject *self, PyObject *args) {
    (void)self;
    return check(args, MASK);
}

static PyObject *matching(PyObject *self, PyObject *args) {
    (void)self;
    return check(args, LIST);
}

static PyMethodDef methods[] = {
    {"possible", possible, METH_VARARGS,
     "possible(program, head) -> bool: whether a left-out magic rule may match head."},
    {"which", which, METH_VARARGS,
     "which(program, head) -> int: bit i set when rule i may match head (i < 62)."},
    {"matching", matching, METH_VARARGS,
     "matching(program, head) -> list[int]: the rules that may match head, in order."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_magic_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__magic_native(void) { return PyModule_Create(&module); }
