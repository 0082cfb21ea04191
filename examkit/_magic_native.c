/* examkit._magic_native: the check of examkit.magic_subset, compiled.
 *
 * possible(program, head) -> bool: whether some rule that the smaller magic database
 * leaves out may match the head, i.e. whether one of the rules' clauses has all its
 * literals in the head (case-folded). It gives the answer of
 * examkit.magic_subset.possible() (tests/test_magic_subset.py compares them); a pair
 * table of the head rejects most literals before any search. Every read of the
 * program is bounds-checked; a malformed program raises ValueError.
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

static int found(int mode, uint32_t offset, const unsigned char *lit, Py_ssize_t len,
                 const unsigned char *buf, Py_ssize_t n, const uint8_t *pairs) {
    if (mode == AT_OFFSET)
        return (Py_ssize_t)offset <= n && len <= n - (Py_ssize_t)offset &&
               memcmp(buf + offset, lit, (size_t)len) == 0;
    if (len == 0) return 1;
    if (len > n || !pairs_present(pairs, lit, len)) return 0;
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

/* Bit i of the result: rule i of the program may match; with first_only, only the first
 * such rule is found. -1 on a malformed program, or one of more than 62 rules without
 * first_only. */
static int64_t scan(Py_buffer *prog, const unsigned char *buf, Py_ssize_t n,
                    const uint8_t *pairs, int first_only) {
    uint64_t mask = 0;
    Reader r = {prog->buf, (const unsigned char *)prog->buf + prog->len, 0};
    uint32_t rules = take(&r, 4);
    if (!first_only && rules > 62) return -1;
    for (uint32_t rule = 0; rule < rules && !r.bad; rule++) {
        uint32_t clauses = take(&r, 2);
        int hit = 0;
        for (uint32_t c = 0; c < clauses && !r.bad; c++) {
            uint32_t literals = take(&r, 2);
            int all = !hit; /* once the rule may match, its other clauses are only read */
            for (uint32_t l = 0; l < literals && !r.bad; l++) {
                int mode = (int)take(&r, 1);
                uint32_t offset = take(&r, 4);
                Py_ssize_t len = (Py_ssize_t)take(&r, 2);
                if (r.bad || r.end - r.p < len) {
                    r.bad = 1;
                    break;
                }
                if (all && !found(mode, offset, r.p, len, buf, n, pairs)) all = 0;
                r.p += len;
            }
            if (all && !r.bad) hit = 1;
        }
        if (hit && !r.bad) {
            if (first_only) return 1;
            mask |= (uint64_t)1 << rule;
        }
    }
    return r.bad ? -1 : (int64_t)mask;
}

/* The head case-folded, and its table of byte pairs; then the program's rules. */
static PyObject *check(PyObject *args, int first_only) {
    Py_buffer prog, head;
    if (!PyArg_ParseTuple(args, "y*y*", &prog, &head)) return NULL;
    Py_ssize_t n = head.len;
    unsigned char local[8192];
    unsigned char *buf = n <= (Py_ssize_t)sizeof local ? local : PyMem_Malloc((size_t)n);
    uint8_t *pairs = PyMem_Calloc(8192, 1); /* one bit per byte pair */
    int64_t result = -1;
    if (buf != NULL && pairs != NULL) {
        const unsigned char *src = head.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char c = src[i];
            buf[i] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
        }
        for (Py_ssize_t i = 0; i + 1 < n; i++) {
            unsigned idx = ((unsigned)buf[i] << 8) | buf[i + 1];
            pairs[idx >> 3] |= (uint8_t)(1u << (idx & 7));
        }
        result = scan(&prog, buf, n, pairs, first_only);
    }
    int no_memory = buf == NULL || pairs == NULL;
    if (buf != local) PyMem_Free(buf);
    PyMem_Free(pairs);
    PyBuffer_Release(&prog);
    PyBuffer_Release(&head);
    if (no_memory) return PyErr_NoMemory();
    if (result < 0) {
        PyErr_SetString(PyExc_ValueError, "malformed magic-subset program");
        return NULL;
    }
    return first_only ? PyBool_FromLong(result != 0) : PyLong_FromLongLong(result);
}

static PyObject *possible(PyObject *self, PyObject *args) {
    (void)self;
    return check(args, 1);
}

static PyObject *which(PyObject *self, PyObject *args) {
    (void)self;
    return check(args, 0);
}

static PyMethodDef methods[] = {
    {"possible", possible, METH_VARARGS,
     "possible(program, head) -> bool: whether a left-out magic rule may match head."},
    {"which", which, METH_VARARGS,
     "which(program, head) -> int: bit i set when rule i may match head (i < 62)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_magic_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__magic_native(void) { return PyModule_Create(&module); }
