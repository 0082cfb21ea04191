/* examkit._magic_native: the check of examkit.magic_subset, compiled.
 *
 * possible(program, head) -> bool: whether some rule that the smaller magic database
 * leaves out may match the head, i.e. whether one of the rules' clauses has all its
 * literals in the head (case-folded). It gives the answer of
 * examkit.magic_subset.possible() (tests/test_magic_subset.py compares them); tables of
 * the head's byte pairs and (hashed) triples reject most literals before any search.
 * Every read of the program is bounds-checked; a malformed program raises ValueError.
 *
 * which(program, head) -> int gives the same for each rule as a bitmask (at most 62
 * rules: examkit.magic_subset's keyed copies), matching(program, head) -> list[int] the
 * indices of every rule that may match (examkit.magic_binary's copies).
 *
 * Program(program) reads a program once into an index, and each of the three takes it in
 * place of the bytes, with the same answers: a clause with a literal at a fixed offset is
 * looked at only when the head's byte at that offset is the literal's first, so a head is
 * checked against the handful of clauses it may satisfy, not the thousands of the program
 * (a binary head: 61 -> a few microseconds). The bytes form reads the program on every
 * call; tests compare the two.
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

/* A head's tables of byte pairs and of (hashed) byte triples: one byte per entry, which
 * holds the head's mark when the head has it. A byte per entry is written with a plain
 * store (bits took a read, an OR and a write each: half of the time of a check), and a
 * new head takes the next mark instead of clearing the table (cleared once in 255). */
enum { TABLE = 1 << 16 };

static int pairs_present(const uint8_t *pairs, uint8_t mark, const unsigned char *lit,
                         Py_ssize_t len) {
    for (Py_ssize_t i = 0; i + 1 < len; i++) {
        unsigned idx = ((unsigned)lit[i] << 8) | lit[i + 1];
        if (pairs[idx] != mark) return 0;
    }
    return 1;
}

static inline unsigned triple(const unsigned char *s) { /* 16 bits of a byte triple */
    uint32_t v = ((uint32_t)s[0] << 16) | ((uint32_t)s[1] << 8) | s[2];
    return (v * 2654435761u) >> 16;
}

static int triples_present(const uint8_t *tris, uint8_t mark, const unsigned char *lit,
                           Py_ssize_t len) {
    for (Py_ssize_t i = 0; i + 2 < len; i++) {
        if (tris[triple(lit + i)] != mark) return 0;
    }
    return 1;
}

/* The next mark of a table: a table whose marks are used up is cleared first. */
static uint8_t next_mark(uint8_t *table, uint8_t *mark) {
    if (++*mark == 0) {
        memset(table, 0, TABLE);
        *mark = 1;
    }
    return *mark;
}

/* The head as the literals are compared: case-folded, with a table of its byte pairs and
 * one of its byte triples (hashed to 16 bits: a literal of three bytes or more is looked
 * for only when each of its triples is marked, which most that a text head lacks are
 * not, while a pair of common letters is in most text); made on first need (a program
 * of literals at fixed offsets needs none of them). */
typedef struct {
    const unsigned char *src;
    const unsigned char *buf;
    const uint8_t *pairs, *tris;
    uint8_t pair_mark, tri_mark;
    Py_ssize_t n;
    int ready, failed;
    unsigned char *own_buf; /* a head too long for the kept one: its own, freed after */
    uint8_t *own_pairs, *own_tris;
} Head;

static inline unsigned char fold(unsigned char c) { /* ASCII lower case */
    return (unsigned char)(c - 'A') < 26u ? (unsigned char)(c + 32) : c;
}

/* The last head prepared, kept: each head is checked by two programs in a row (the binary
 * guards, then the candidates; the ASCII check, then the keyed rules), and the second call
 * finds its folded copy and pair table made. Reused only for the very same bytes; every
 * call holds the GIL, so one at a time. */
enum { KEPT_MAX = 8192 };
static unsigned char kept_src[KEPT_MAX], kept_buf[KEPT_MAX];
static uint8_t kept_pairs[TABLE], kept_tris[TABLE], kept_pair_mark, kept_tri_mark;
static Py_ssize_t kept_n = -1;
static int kept_tris_made; /* the triples of the kept head are marked (made on first need:
                            * a binary head's pairs reject most literals alone) */

static void fold_and_pair(const unsigned char *restrict src, Py_ssize_t n, unsigned char *restrict buf,
                          uint8_t *restrict pairs, uint8_t mark) {
    for (Py_ssize_t i = 0; i < n; i++) buf[i] = fold(src[i]); /* vectorised at -O3 */
    for (Py_ssize_t i = 0; i + 1 < n; i++) pairs[((unsigned)buf[i] << 8) | buf[i + 1]] = mark;
}

static void mark_triples(const unsigned char *restrict buf, Py_ssize_t n, uint8_t *restrict tris,
                         uint8_t mark) {
    for (Py_ssize_t i = 0; i + 2 < n; i++) tris[triple(buf + i)] = mark;
}

static int prepare(Head *h) {
    if (h->ready) return !h->failed;
    h->ready = 1;
    if (h->n <= KEPT_MAX) {
        if (h->n != kept_n || memcmp(h->src, kept_src, (size_t)h->n) != 0) {
            kept_n = -1; /* (never left half made) */
            kept_tris_made = 0;
            fold_and_pair(h->src, h->n, kept_buf, kept_pairs, next_mark(kept_pairs, &kept_pair_mark));
            memcpy(kept_src, h->src, (size_t)h->n);
            kept_n = h->n;
        }
        h->buf = kept_buf;
        h->pairs = kept_pairs;
        h->pair_mark = kept_pair_mark;
        return 1;
    }
    h->own_buf = PyMem_Malloc((size_t)h->n);
    h->own_pairs = PyMem_Calloc(TABLE, 1);
    if (h->own_buf == NULL || h->own_pairs == NULL) {
        h->failed = 1;
        return 0;
    }
    h->pair_mark = 1;
    fold_and_pair(h->src, h->n, h->own_buf, h->own_pairs, h->pair_mark);
    h->buf = h->own_buf;
    h->pairs = h->own_pairs;
    return 1;
}

/* The triple table of a prepared head, marked on first need. */
static const uint8_t *triples(Head *h) {
    if (h->tris != NULL) return h->tris;
    if (h->buf == kept_buf) {
        if (!kept_tris_made) {
            mark_triples(kept_buf, h->n, kept_tris, next_mark(kept_tris, &kept_tri_mark));
            kept_tris_made = 1;
        }
        h->tri_mark = kept_tri_mark;
        return h->tris = kept_tris;
    }
    h->own_tris = PyMem_Calloc(TABLE, 1);
    if (h->own_tris == NULL) return NULL;
    h->tri_mark = 1;
    mark_triples(h->buf, h->n, h->own_tris, h->tri_mark);
    return h->tris = h->own_tris;
}

static void release(Head *h) {
    PyMem_Free(h->own_buf);
    PyMem_Free(h->own_pairs);
    PyMem_Free(h->own_tris);
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
    if (!pairs_present(h->pairs, h->pair_mark, lit, len)) return 0;
    if (len >= 3) {
        const uint8_t *tris = triples(h);
        if (tris == NULL) return -1;
        if (!triples_present(tris, h->tri_mark, lit, len)) return 0;
    }
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
    Head h = {.src = head.buf, .n = head.len};
    int64_t result = scan(&prog, &h, mode, hits);
    release(&h);
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

/* -- the compiled program ---------------------------------------------------------- */

typedef struct {
    int kind;
    uint32_t offset;
    Py_ssize_t len;
    const unsigned char *lit; /* into the program's bytes, kept alive by the object */
} Lit;

typedef struct {
    uint32_t rule, first, count; /* lits[first .. first + count) */
} Clause;

typedef struct {
    PyObject_HEAD
    PyObject *bytes;
    uint32_t rules, nclauses;
    Lit *lits;
    Clause *clauses;
    /* clauses keyed by a literal at a fixed offset: key k's offset is offsets[k] (ascending)
     * and the clauses whose literal there begins with byte b are
     * keyed[starts[k * 256 + b] .. starts[k * 256 + b + 1]) */
    uint32_t nkeys;
    uint32_t *offsets, *starts, *keyed;
    uint32_t *always, nalways; /* clauses without such a literal: checked on every head */
} Program;

static void program_free(Program *p) {
    PyMem_Free(p->lits);
    PyMem_Free(p->clauses);
    PyMem_Free(p->offsets);
    PyMem_Free(p->starts);
    PyMem_Free(p->keyed);
    PyMem_Free(p->always);
    p->lits = NULL;
    p->clauses = NULL;
    p->offsets = p->starts = p->keyed = p->always = NULL;
}

static void program_dealloc(Program *p) {
    program_free(p);
    Py_XDECREF(p->bytes);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int by_offset(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The literal a clause is keyed by: its first at a fixed offset with at least one byte. */
static Py_ssize_t key_literal(const Program *p, const Clause *c) {
    for (uint32_t i = 0; i < c->count; i++) {
        const Lit *l = &p->lits[c->first + i];
        if (l->kind == AT_OFFSET && l->len > 0) return (Py_ssize_t)(c->first + i);
    }
    return -1;
}

static int program_build(Program *p, const unsigned char *buf, Py_ssize_t size) {
    Reader r = {buf, buf + size, 0};
    size_t nlits = 0, nclauses = 0;
    /* first pass: count, and check every bound */
    uint32_t rules = take(&r, 4);
    for (uint32_t rule = 0; rule < rules && !r.bad; rule++) {
        uint32_t clauses = take(&r, 2);
        for (uint32_t c = 0; c < clauses && !r.bad; c++, nclauses++) {
            uint32_t literals = take(&r, 2);
            for (uint32_t l = 0; l < literals && !r.bad; l++, nlits++) {
                take(&r, 1);
                take(&r, 4);
                Py_ssize_t len = (Py_ssize_t)take(&r, 2);
                if (r.end - r.p < len) r.bad = 1;
                else r.p += len;
            }
        }
    }
    if (r.bad) { /* as the bytes form, trailing bytes are not read */
        PyErr_SetString(PyExc_ValueError, "malformed magic-subset program");
        return -1;
    }
    p->rules = rules;
    p->lits = PyMem_Calloc(nlits ? nlits : 1, sizeof(Lit));
    p->clauses = PyMem_Calloc(nclauses ? nclauses : 1, sizeof(Clause));
    if (p->lits == NULL || p->clauses == NULL) goto nomem;
    /* second pass: fill */
    r = (Reader){buf, buf + size, 0};
    take(&r, 4);
    uint32_t li = 0, ci = 0;
    for (uint32_t rule = 0; rule < rules; rule++) {
        uint32_t clauses = take(&r, 2);
        for (uint32_t c = 0; c < clauses; c++) {
            uint32_t literals = take(&r, 2);
            p->clauses[ci] = (Clause){rule, li, literals};
            for (uint32_t l = 0; l < literals; l++) {
                Lit *lit = &p->lits[li++];
                lit->kind = (int)take(&r, 1);
                lit->offset = take(&r, 4);
                lit->len = (Py_ssize_t)take(&r, 2);
                lit->lit = r.p;
                r.p += lit->len;
            }
            ci++;
        }
    }
    p->nclauses = ci;
    /* the index: distinct key offsets, then clauses bucketed by offset and first byte */
    uint32_t *all = PyMem_Calloc(ci ? ci : 1, sizeof(uint32_t));
    if (all == NULL) goto nomem;
    uint32_t nkeyed = 0;
    for (uint32_t c = 0; c < ci; c++) {
        Py_ssize_t k = key_literal(p, &p->clauses[c]);
        if (k >= 0) all[nkeyed++] = p->lits[k].offset;
    }
    qsort(all, nkeyed, sizeof(uint32_t), by_offset);
    uint32_t nkeys = 0;
    for (uint32_t i = 0; i < nkeyed; i++)
        if (nkeys == 0 || all[nkeys - 1] != all[i]) all[nkeys++] = all[i];
    p->nkeys = nkeys;
    p->offsets = all;
    p->starts = PyMem_Calloc((size_t)nkeys * 256 + 1, sizeof(uint32_t));
    p->keyed = PyMem_Calloc(nkeyed ? nkeyed : 1, sizeof(uint32_t));
    p->always = PyMem_Calloc(ci - nkeyed ? ci - nkeyed : 1, sizeof(uint32_t));
    if (p->starts == NULL || p->keyed == NULL || p->always == NULL) goto nomem;
    for (int pass = 0; pass < 2; pass++) { /* count per bucket, then place */
        uint32_t nalways = 0;
        for (uint32_t c = 0; c < ci; c++) {
            Py_ssize_t k = key_literal(p, &p->clauses[c]);
            if (k < 0) {
                if (pass) p->always[nalways] = c;
                nalways++;
                continue;
            }
            const Lit *l = &p->lits[k];
            uint32_t lo = 0, hi = nkeys; /* the key of its offset */
            while (lo < hi) {
                uint32_t mid = (lo + hi) / 2;
                if (all[mid] < l->offset) lo = mid + 1;
                else hi = mid;
            }
            size_t bucket = (size_t)lo * 256 + l->lit[0];
            p->starts[bucket + 1] += pass ? 0 : 1;
            if (pass) p->keyed[p->starts[bucket + 1]++] = c;
        }
        p->nalways = nalways;
        if (!pass) { /* counts -> starts[b + 1] = where bucket b begins; placing its
                      * clauses then moves starts[b + 1] to its end, the next one's start */
            size_t buckets = (size_t)nkeys * 256;
            uint32_t sum = 0;
            for (size_t b = 0; b <= buckets; b++) {
                uint32_t n = p->starts[b];
                p->starts[b] = sum;
                sum += n;
            }
        }
    }
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

static PyObject *program_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *bytes;
    static char *kwlist[] = {"program", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "S", kwlist, &bytes)) return NULL;
    Program *p = (Program *)type->tp_alloc(type, 0);
    if (p == NULL) return NULL;
    Py_INCREF(bytes);
    p->bytes = bytes;
    if (program_build(p, (const unsigned char *)PyBytes_AS_STRING(bytes),
                      PyBytes_GET_SIZE(bytes)) < 0) {
        Py_DECREF(p);
        return NULL;
    }
    return (PyObject *)p;
}

static PyObject *program_rules(Program *p, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLong(p->rules);
}

static PyObject *program_bytes(Program *p, void *closure) {
    (void)closure;
    Py_INCREF(p->bytes);
    return p->bytes;
}

static PyGetSetDef program_getset[] = {
    {"rules", (getter)program_rules, NULL, "number of rules", NULL},
    {"program", (getter)program_bytes, NULL, "the program's bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "examkit._magic_native.Program",
    .tp_basicsize = sizeof(Program),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Program(program: bytes): a magic-subset program read once, with its index.",
    .tp_new = program_new,
    .tp_dealloc = (destructor)program_dealloc,
    .tp_getset = program_getset,
};

/* 1 if every literal of the clause is in the head, 0 if not, -1 on no memory. */
static int clause_holds(const Program *p, const Clause *c, Head *h) {
    for (uint32_t i = 0; i < c->count; i++) {
        const Lit *l = &p->lits[c->first + i];
        int got = found(l->kind, l->offset, l->lit, l->len, h);
        if (got <= 0) return got;
    }
    return 1;
}

/* One clause: skipped if its rule already may match, else checked and recorded. */
static int visit(const Program *p, uint32_t c, Head *h, uint8_t *hit, int *any) {
    const Clause *clause = &p->clauses[c];
    if (hit[clause->rule]) return 0;
    int got = clause_holds(p, clause, h);
    if (got < 0) return -1;
    if (got) {
        hit[clause->rule] = 1;
        *any = 1;
    }
    return 0;
}

static PyObject *check_program(Program *p, PyObject *head_obj, int mode) {
    Py_buffer head;
    if (mode == MASK && p->rules > 62) {
        PyErr_SetString(PyExc_ValueError, "which() takes at most 62 rules");
        return NULL;
    }
    if (PyObject_GetBuffer(head_obj, &head, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t n = head.len;
    uint8_t hits_local[4096];
    Head h = {.src = head.buf, .n = n};
    uint8_t *hit = p->rules <= sizeof hits_local ? hits_local : PyMem_Malloc(p->rules);
    PyObject *result = NULL;
    if (hit == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memset(hit, 0, p->rules);
    int any = 0, failed = 0;
    const unsigned char *src = head.buf;
    for (uint32_t k = 0; k < p->nkeys && !failed && !(any && mode == FIRST); k++) {
        uint32_t offset = p->offsets[k];
        if ((Py_ssize_t)offset >= n) break; /* ascending: no later key fits either */
        size_t bucket = (size_t)k * 256 + fold(src[offset]);
        for (uint32_t i = p->starts[bucket]; i < p->starts[bucket + 1]; i++)
            if (visit(p, p->keyed[i], &h, hit, &any) < 0) {
                failed = 1;
                break;
            }
    }
    for (uint32_t i = 0; i < p->nalways && !failed && !(any && mode == FIRST); i++)
        if (visit(p, p->always[i], &h, hit, &any) < 0) failed = 1;
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    if (mode == FIRST) {
        result = PyBool_FromLong(any);
    } else if (mode == MASK) {
        uint64_t mask = 0;
        for (uint32_t r = 0; r < p->rules; r++)
            if (hit[r]) mask |= (uint64_t)1 << r;
        result = PyLong_FromUnsignedLongLong(mask);
    } else {
        result = PyList_New(0);
        for (uint32_t r = 0; r < p->rules && result != NULL && any; r++) {
            if (!hit[r]) continue;
            PyObject *index = PyLong_FromUnsignedLong(r);
            if (index == NULL || PyList_Append(result, index) < 0) Py_CLEAR(result);
            Py_XDECREF(index);
        }
    }
done:
    if (hit != hits_local) PyMem_Free(hit);
    release(&h);
    PyBuffer_Release(&head);
    return result;
}

static PyObject *dispatch(PyObject *args, int mode) {
    if (PyTuple_GET_SIZE(args) == 2 && PyObject_TypeCheck(PyTuple_GET_ITEM(args, 0), &ProgramType))
        return check_program((Program *)PyTuple_GET_ITEM(args, 0), PyTuple_GET_ITEM(args, 1), mode);
    return check(args, mode);
}

static PyObject *possible(PyObject *self, PyObject *args) {
    (void)self;
    return dispatch(args, FIRST);
}

static PyObject *which(PyObject *self, PyObject *args) {
    (void)self;
    return dispatch(args, MASK);
}

static PyObject *matching(PyObject *self, PyObject *args) {
    (void)self;
    return dispatch(args, LIST);
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

PyMODINIT_FUNC PyInit__magic_native(void) {
    if (PyType_Ready(&ProgramType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&ProgramType);
    if (PyModule_AddObject(m, "Program", (PyObject *)&ProgramType) < 0) {
        Py_DECREF(&ProgramType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
