/* examkit._hashset_native: compiled helpers of the hash-set library.
 *
 * tsv(): the bulk lookup of `examkit hashset lookup`. One call reads the query lines, binary-searches each digest in the set's
 * memory-mapped sorted tables and writes the tab-separated answer, so that a
 * lookup needs neither numpy nor a Python loop over the queries. It gives the
 * same answer, byte for byte, as the numpy path in examkit.hashdb and
 * examkit.cli.lookup_output (tests/test_hashset_native.py compares them), and
 * declines (returns None) whenever that path would do something it does not:
 * a name that must pass the display gate, or an index whose files disagree.
 *
 * compact(): the names an import keeps, without the source lines around them.
 *
 * Every read of a table is bounds-checked against the length of its buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ALGORITHMS 3
#define MAX_PER_DIGEST 16 /* examkit.hashdb.MAX_ENTRIES_PER_DIGEST */

static const char *const NAMES[ALGORITHMS] = {"md5", "sha1", "sha256"};
static const Py_ssize_t SIZES[ALGORITHMS] = {16, 20, 32};
static const char WITHHELD[] = "<withheld>"; /* examkit.display.WITHHELD */

typedef struct {
    const unsigned char *digests, *entries; /* sorted digests; each one's entry (uint32) */
    Py_ssize_t count;
} Table;

static signed char HEX[256]; /* a character's value as a hex digit, or -1 */

static void init_hex(void) {
    memset(HEX, -1, sizeof HEX);
    for (int i = 0; i < 10; i++) HEX['0' + i] = (signed char)i;
    for (int i = 0; i < 6; i++) HEX['a' + i] = HEX['A' + i] = (signed char)(10 + i);
}

/* Decodes 2 * size hex characters; 0 when one is not hex. */
static int decode(const unsigned char *hex, Py_ssize_t size, unsigned char *digest) {
    int bad = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        int hi = HEX[hex[2 * i]], lo = HEX[hex[2 * i + 1]];
        bad |= hi | lo; /* negative when either is not a hex digit */
        digest[i] = (unsigned char)((unsigned)hi << 4 | ((unsigned)lo & 15));
    }
    return bad >= 0;
}

static int is_blank(unsigned char c) { /* what bytes.strip() removes */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static uint64_t load_le64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static uint64_t load_be64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static uint32_t load_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The first 8 bytes of row `row`'s digest, as a number that sorts as the digests do. */
static uint64_t row_key(const Table *t, Py_ssize_t size, Py_ssize_t row) {
    return load_be64(t->digests + size * row);
}

/* Rows of `t` whose digest is `digest` (`key`: its first 8 bytes), searched from row
 * `*from` on: queries come nearly in ascending order, so a search gallops forward from
 * the last one's place (and starts over for the rare key below the last). The first
 * MAX_PER_DIGEST rows in table order, their entry numbers sorted; returns how many. */
static int find(const Table *t, const unsigned char *digest, Py_ssize_t size, uint64_t key,
                Py_ssize_t *from, uint32_t *found) {
    Py_ssize_t lo = *from, step = 1, hi;
    if (lo > 0 && row_key(t, size, lo - 1) >= key) lo = 0; /* not above the last key */
    while (lo + step < t->count && row_key(t, size, lo + step) < key) {
        lo += step; /* still below the key */
        step *= 2;
    }
    hi = lo + step < t->count ? lo + step : t->count;
    while (lo < hi) { /* first row whose prefix is not below the key */
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (row_key(t, size, mid) < key) lo = mid + 1;
        else hi = mid;
    }
    *from = lo;
    int n = 0;
    for (Py_ssize_t row = lo; row < t->count && row_key(t, size, row) == key; row++) {
        if (memcmp(t->digests + size * row, digest, (size_t)size) == 0) {
            if (n < MAX_PER_DIGEST) found[n++] = load_le32(t->entries + 4 * row);
        } else if (n) {
            break; /* equal digests are adjacent: the run has ended */
        }
    }
    for (int i = 1; i < n; i++) { /* insertion sort: at most 16 */
        uint32_t v = found[i];
        int j = i - 1;
        while (j >= 0 && found[j] > v) { found[j + 1] = found[j]; j--; }
        found[j + 1] = v;
    }
    return n;
}

typedef struct { /* a valid query line: its digest prefix, its number, its algorithm */
    uint64_t key;
    uint32_t seq, algorithm;
} Query;

typedef struct { /* one (query, entry) found, and the entry's name in the blob */
    uint32_t seq, entry;
    uint64_t name_at, name_end; /* name_end == name_at: no name */
} Hit;

/* Stable LSD radix sorts, 8 bits a pass, of `n` items through `tmp`. */
#define RADIX_SORT(NAME, TYPE, FIELD, FIRST, BYTES)                                       \
    static void NAME(TYPE *a, TYPE *tmp, Py_ssize_t n) {                                 \
        if (n < 2) return;                                                               \
        for (int pass = (FIRST); pass < (BYTES); pass++) {                               \
            Py_ssize_t count[257] = {0};                                                 \
            int shift = 8 * pass;                                                        \
            for (Py_ssize_t i = 0; i < n; i++) count[((a[i].FIELD >> shift) & 255) + 1]++; \
            if (count[1 + ((a[0].FIELD >> shift) & 255)] == n) continue; /* one value */ \
            for (int b = 0; b < 256; b++) count[b + 1] += count[b];                      \
            for (Py_ssize_t i = 0; i < n; i++) tmp[count[(a[i].FIELD >> shift) & 255]++] = a[i]; \
            memcpy(a, tmp, sizeof(TYPE) * (size_t)n);                                    \
        }                                                                                 \
    }
RADIX_SORT(sort_queries, Query, key, 5, 8) /* the top 24 bits: enough to read in order */
RADIX_SORT(sort_hits_by_entry, Hit, entry, 0, 4)
RADIX_SORT(sort_hits_by_seq, Hit, seq, 0, 4)

/* The valid query lines of `buf` in order (their hex starts in `starts`); counts the
 * non-blank lines in *given. NULL when out of memory. */
static Query *parse(const unsigned char *buf, Py_ssize_t len, Py_ssize_t **starts,
                    Py_ssize_t *valid, Py_ssize_t *given) {
    Py_ssize_t cap = len / 33 + 1, n = 0, pos = 0; /* a valid line takes 32 bytes and a \n */
    Query *queries = PyMem_Malloc(sizeof(Query) * (size_t)cap);
    *starts = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)cap);
    if (queries == NULL || *starts == NULL) {
        PyMem_Free(queries);
        return NULL;
    }
    unsigned char digest[32];
    *given = 0;
    while (pos < len) {
        const unsigned char *nl = memchr(buf + pos, '\n', (size_t)(len - pos));
        Py_ssize_t end = nl ? nl - buf : len, start = pos;
        pos = end + 1;
        while (start < end && is_blank(buf[start])) start++;
        while (end > start && is_blank(buf[end - 1])) end--;
        if (start == end) continue;
        (*given)++;
        Py_ssize_t width = end - start;
        int algorithm = width == 32 ? 0 : width == 40 ? 1 : width == 64 ? 2 : -1;
        if (algorithm < 0 || n == cap || !decode(buf + start, width / 2, digest)) continue;
        queries[n] = (Query){load_be64(digest), (uint32_t)n, (uint32_t)algorithm};
        (*starts)[n++] = start;
    }
    *valid = n;
    return queries;
}

typedef struct {
    Py_buffer view[ALGORITHMS][2], spans, blob, data;
    int tables[ALGORITHMS], has_names, has_blob, has_data;
    int fd;              /* the names file, read with pread, when given as a descriptor */
    Py_ssize_t blob_len; /* its size (or the blob buffer's) */
} Buffers;

static void release(Buffers *b) {
    for (int a = 0; a < ALGORITHMS; a++)
        if (b->tables[a])
            for (int k = 0; k < 2; k++) PyBuffer_Release(&b->view[a][k]);
    if (b->has_names) PyBuffer_Release(&b->spans);
    if (b->has_blob) PyBuffer_Release(&b->blob);
    if (b->has_data) PyBuffer_Release(&b->data);
}

/* Takes the buffers; 1 when the tables agree with each other, 0 when they do not (the
 * numpy path decides), -1 on error. */
static int take(Buffers *b, Table *table, PyObject *tables, PyObject *spans, PyObject *blob) {
    if (PyTuple_GET_SIZE(tables) != ALGORITHMS) {
        PyErr_SetString(PyExc_TypeError, "one table per algorithm");
        return -1;
    }
    int consistent = 1;
    for (int a = 0; a < ALGORITHMS; a++) {
        PyObject *item = PyTuple_GET_ITEM(tables, a);
        if (item == Py_None) continue;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "a table is (digests, entries)");
            return -1;
        }
        for (int k = 0; k < 2; k++) {
            if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, k), &b->view[a][k], PyBUF_SIMPLE) < 0) {
                for (int j = 0; j < k; j++) PyBuffer_Release(&b->view[a][j]);
                return -1;
            }
        }
        b->tables[a] = 1;
        Table *t = &table[a];
        t->digests = b->view[a][0].buf;
        t->entries = b->view[a][1].buf;
        t->count = b->view[a][0].len / SIZES[a];
        if (b->view[a][0].len % SIZES[a] || b->view[a][1].len != 4 * t->count)
            consistent = 0;
    }
    if (spans != Py_None) {
        if (PyObject_GetBuffer(spans, &b->spans, PyBUF_SIMPLE) < 0) return -1;
        b->has_names = 1;
        if (PyLong_Check(blob)) { /* a file descriptor: names are read with pread */
            struct stat st;
            b->fd = (int)PyLong_AsLong(blob);
            if (PyErr_Occurred()) return -1;
            if (fstat(b->fd, &st) < 0) {
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }
            b->blob_len = (Py_ssize_t)st.st_size;
        } else {
            if (PyObject_GetBuffer(blob, &b->blob, PyBUF_SIMPLE) < 0) return -1;
            b->has_blob = 1;
            b->blob_len = b->blob.len;
        }
    }
    return consistent;
}

/* Reads each hit's name (hits in entry order: the files are read in order) into the
 * arena, and checks that a shown name is plain; 1 when one is not or a span is out of
 * range, -1 on error. A hidden name is not read: only whether there is one matters. */
static int names_of(Hit *hits, Py_ssize_t n, const Buffers *b, int hide, char **arena) {
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t at = 16 * (Py_ssize_t)hits[i].entry;
        if (at + 16 > b->spans.len) return 1;
        const unsigned char *span = (const unsigned char *)b->spans.buf + at;
        uint64_t start = load_le64(span), end = load_le64(span + 8);
        if (end <= start) continue; /* no name */
        if (end > (uint64_t)b->blob_len) return 1;
        hits[i].name_at = start;
        hits[i].name_end = end;
        total += (Py_ssize_t)(end - start);
    }
    if (hide) return 0;
    *arena = PyMem_Malloc((size_t)total + 1);
    if (*arena == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t pos = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Hit *h = &hits[i];
        size_t len = (size_t)(h->name_end - h->name_at);
        if (len == 0) continue;
        char *name = *arena + pos;
        if (b->has_blob) {
            memcpy(name, (const char *)b->blob.buf + h->name_at, len);
        } else if ((errno = 0, pread(b->fd, name, len, (off_t)h->name_at)) != (ssize_t)len) {
            if (errno) PyErr_SetFromErrno(PyExc_OSError);
            else PyErr_SetString(PyExc_OSError, "the names file is shorter than its spans");
            return -1;
        }
        for (size_t c = 0; c < len; c++) { /* printable ASCII, no backslash */
            unsigned char ch = (unsigned char)name[c];
            if (ch < 0x20 || ch > 0x7e || ch == '\\') return 1;
        }
        h->name_at = (uint64_t)pos; /* from now on: the name's place in the arena */
        h->name_end = (uint64_t)(pos + (Py_ssize_t)len);
        pos += (Py_ssize_t)len;
    }
    return 0;
}

/* The answer's lines, written into one bytes object of the exact size. */
static PyObject *answer(const Hit *hits, Py_ssize_t n, const Py_ssize_t *starts,
                        const Query *by_seq, const unsigned char *data,
                        const unsigned char *blob, int hide) {
    Py_ssize_t size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const Hit *h = &hits[i];
        uint32_t a = by_seq[h->seq].algorithm;
        Py_ssize_t name = h->name_end == h->name_at ? 0
                          : hide ? (Py_ssize_t)sizeof WITHHELD - 1
                                 : (Py_ssize_t)(h->name_end - h->name_at);
        size += 2 * SIZES[a] + (Py_ssize_t)strlen(NAMES[a]) + name + 5;
    }
    PyObject *text = PyBytes_FromStringAndSize(NULL, size);
    if (text == NULL) return NULL;
    char *out = PyBytes_AS_STRING(text);
    for (Py_ssize_t i = 0; i < n; i++) {
        const Hit *h = &hits[i];
        uint32_t a = by_seq[h->seq].algorithm;
        const unsigned char *hex = data + starts[h->seq];
        for (Py_ssize_t c = 0; c < 2 * SIZES[a]; c++) /* lower case, as given otherwise */
            *out++ = (char)(hex[c] >= 'A' && hex[c] <= 'F' ? hex[c] + 32 : hex[c]);
        *out++ = '\t';
        size_t len = strlen(NAMES[a]);
        memcpy(out, NAMES[a], len);
        out += len;
        *out++ = '\t';
        if (h->name_end != h->name_at) {
            len = hide ? sizeof WITHHELD - 1 : (size_t)(h->name_end - h->name_at);
            memcpy(out, hide ? (const unsigned char *)WITHHELD : blob + h->name_at, len);
            out += len;
        }
        memcpy(out, "\t\t\n", 3); /* no size, no metadata: this path is for such sets */
        out += 3;
    }
    return text;
}

static PyObject *tsv(PyObject *self, PyObject *args) {
    PyObject *tables, *spans, *blob, *result = NULL, *text = NULL;
    int hide;
    Buffers b = {0};
    Table table[ALGORITHMS] = {{0}};
    Query *queries = NULL, *tmp = NULL;
    Py_ssize_t *starts = NULL, given = 0, valid = 0, found_lines = 0, nhits = 0, cap = 0;
    Hit *hits = NULL, *htmp = NULL;
    char *arena = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*O!OOp", &b.data, &PyTuple_Type, &tables, &spans, &blob,
                          &hide))
        return NULL;
    b.has_data = 1;
    int consistent = take(&b, table, tables, spans, blob);
    if (consistent < 0) goto done;
    const unsigned char *data = b.data.buf;
    queries = parse(data, b.data.len, &starts, &valid, &given);
    tmp = PyMem_Malloc(sizeof(Query) * (size_t)(valid + 1));
    if (queries == NULL || tmp == NULL) goto nomemory;
    if (!consistent) goto decline;
    sort_queries(queries, tmp, valid); /* by their top 24 bits: each table is read in order */

    Py_ssize_t from[ALGORITHMS] = {0};
    uint32_t found[MAX_PER_DIGEST];
    unsigned char digest[32];
    for (Py_ssize_t i = 0; i < valid; i++) {
        const Query *q = &queries[i];
        const Table *t = &table[q->algorithm];
        if (!b.tables[q->algorithm] || t->count == 0) continue;
        decode(data + starts[q->seq], SIZES[q->algorithm], digest);
        int n = find(t, digest, SIZES[q->algorithm], q->key, &from[q->algorithm], found);
        if (n == 0) continue;
        found_lines++;
        if (nhits + n > cap) {
            cap = cap ? 2 * cap : 4096;
            Hit *grown = PyMem_Realloc(hits, sizeof(Hit) * (size_t)cap);
            if (grown == NULL) goto nomemory;
            hits = grown;
        }
        for (int k = 0; k < n; k++) hits[nhits++] = (Hit){q->seq, found[k], 0, 0};
    }
    htmp = PyMem_Malloc(sizeof(Hit) * (size_t)(nhits + 1));
    if (htmp == NULL) goto nomemory;
    if (b.has_names) {
        sort_hits_by_entry(hits, htmp, nhits);
        int r = names_of(hits, nhits, &b, hide, &arena);
        if (r < 0) goto done;
        if (r > 0) goto decline;
    }
    sort_hits_by_seq(hits, htmp, nhits); /* line order; a line's entries stay sorted */
    for (Py_ssize_t i = 0; i < valid; i++) tmp[queries[i].seq] = queries[i];
    text = answer(hits, nhits, starts, tmp, data, (const unsigned char *)arena, hide);
    if (text == NULL) goto done;
    result = Py_BuildValue("(Nnnn)", text, found_lines, given, given - valid);
    goto done;
decline:
    result = Py_BuildValue("(Onnn)", Py_None, found_lines, given, given - valid);
    goto done;
nomemory:
    PyErr_NoMemory();
done:
    PyMem_Free(queries);
    PyMem_Free(tmp);
    PyMem_Free(starts);
    PyMem_Free(hits);
    PyMem_Free(htmp);
    PyMem_Free(arena);
    release(&b);
    return result;
}

/* compact(blob, spans): the bytes the spans pick out of blob, end to end, and their
 * spans in that new blob. spans: n (start, end) pairs of little-endian uint64. */
static PyObject *compact(PyObject *self, PyObject *args) {
    Py_buffer blob, spans;
    PyObject *names = NULL, *places = NULL, *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*", &blob, &spans)) return NULL;
    Py_ssize_t n = spans.len / 16, total = 0;
    const unsigned char *in = spans.buf;
    if (spans.len % 16) {
        PyErr_SetString(PyExc_ValueError, "spans are (start, end) pairs of uint64");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t start = load_le64(in + 16 * i), end = load_le64(in + 16 * i + 8);
        if (end > start) {
            if (end > (uint64_t)blob.len) {
                PyErr_SetString(PyExc_ValueError, "a span runs past the blob");
                goto done;
            }
            total += (Py_ssize_t)(end - start);
        }
    }
    names = PyBytes_FromStringAndSize(NULL, total);
    places = PyBytes_FromStringAndSize(NULL, spans.len);
    if (names == NULL || places == NULL) goto done;
    char *out = PyBytes_AS_STRING(names);
    unsigned char *at = (unsigned char *)PyBytes_AS_STRING(places);
    uint64_t pos = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t start = load_le64(in + 16 * i), end = load_le64(in + 16 * i + 8);
        uint64_t len = end > start ? end - start : 0, span[2] = {pos, pos + len};
        memcpy(out + pos, (const char *)blob.buf + start, (size_t)len);
        pos += len;
        for (int k = 0; k < 2; k++) /* little-endian, whatever the machine */
            for (int b = 0; b < 8; b++) at[16 * i + 8 * k + b] = (unsigned char)(span[k] >> (8 * b));
    }
    result = PyTuple_Pack(2, names, places);
done:
    Py_XDECREF(names);
    Py_XDECREF(places);
    PyBuffer_Release(&blob);
    PyBuffer_Release(&spans);
    return result;
}

/* lookup(digests, entries, size, queries) -> list of (query, entry): the entries of every
 * digest of `queries` (raw digests of `size` bytes, end to end) that the table lists, by
 * query and, for one query, by entry number (the first MAX_PER_DIGEST rows in table
 * order, as the numpy path of examkit.hashdb gives them). A scan's matcher calls it for
 * each batch of results: no numpy in the parent for exact matching. */
static PyObject *lookup(PyObject *self, PyObject *args) {
    Py_buffer digests, entries, queries;
    Py_ssize_t size;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*y*ny*", &digests, &entries, &size, &queries)) return NULL;
    if (size < 8 || size > 64 || digests.len % size || queries.len % size ||
        entries.len < 4 * (digests.len / size)) {
        PyErr_SetString(PyExc_ValueError, "tables or queries of the wrong size");
        goto done;
    }
    Table t = {digests.buf, entries.buf, digests.len / size};
    Py_ssize_t n = queries.len / size, from = 0;
    const unsigned char *q = queries.buf;
    uint32_t found[MAX_PER_DIGEST];
    if ((result = PyList_New(0)) == NULL) goto done;
    for (Py_ssize_t i = 0; i < n && t.count > 0; i++) {
        const unsigned char *digest = q + size * i;
        int hits = find(&t, digest, size, load_be64(digest), &from, found);
        for (int h = 0; h < hits; h++) {
            PyObject *pair = Py_BuildValue("(nk)", i, (unsigned long)found[h]);
            if (pair == NULL || PyList_Append(result, pair) < 0) {
                Py_XDECREF(pair);
                Py_CLEAR(result);
                goto done;
            }
            Py_DECREF(pair);
        }
    }
done:
    PyBuffer_Release(&digests);
    PyBuffer_Release(&entries);
    PyBuffer_Release(&queries);
    return result;
}

static PyMethodDef methods[] = {
    {"compact", compact, METH_VARARGS,
     "compact(blob, spans) -> (names, spans)\n\n"
     "The bytes that spans ((start, end) uint64 pairs) pick out of blob, end to end,\n"
     "and their spans in that new blob (an empty span stays empty)."},
    {"tsv", tsv, METH_VARARGS,
     "tsv(data, tables, spans, blob, hide) -> (text or None, found, given, invalid)\n\n"
     "Look up every line of data (one hex digest a line) in tables: per algorithm\n"
     "(md5, sha1, sha256) None or the (digests, entries) buffers of the\n"
     "index. spans/blob: the names column's buffers, or None. text is None when\n"
     "the answer needs the general path (a name to escape, inconsistent tables)."},
    {"lookup", lookup, METH_VARARGS,
     "lookup(digests, entries, size, queries) -> [(query, entry), ...]\n\n"
     "Every entry of each query digest (raw, size bytes each, end to end) in the\n"
     "sorted digests table (entries: its uint32 entry numbers), by query, then entry."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_hashset_native",
    .m_doc = "Compiled hash-set helpers (see examkit.native).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__hashset_native(void) {
    init_hex();
    return PyModule_Create(&module);
}
