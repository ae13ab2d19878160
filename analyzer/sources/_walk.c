/* Native record walk for the capture reader: absorbs the packets the TCP reassembler would
 * only count, so that bulk transfers never reach Python.
 *
 * A GrantTable holds, per TCP direction (IPv4 4-tuple), a "grant" made by the reassembler:
 * the sequence number it expects next and how many upcoming bytes its consumer skips. The
 * walk functions step over capture records while each one is an in-order segment of a granted
 * direction whose bytes are all skipped, or a bare ACK (see analyzer.flows.tcp, which owns the
 * contract), and stop at the first record Python must see. What a grant absorbed is handed back
 * with take() / take_all() before the reassembler touches that direction again.
 *
 * Only the frames the Python fast path decodes inline are walked here (Ethernet or raw IP,
 * IPv4 with a 20-byte header, not a fragment, TCP); everything else stops the walk. Timestamps
 * are computed with the same floating-point operations as the Python reader, so results are
 * bit-identical with or without this module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define KEY_LEN 12 /* source address, destination address, source port, destination port */
#define TWO_53 (1ULL << 53)

/* a / b correctly rounded (half to even), as Python's int / int; 0 when not computed here. */
static inline int exact_ratio(uint64_t a, uint64_t b, double *out) {
    if (a <= TWO_53 && b <= TWO_53) { /* both exact as doubles: one IEEE division */
        *out = (double)a / (double)b;
        return 1;
    }
#ifdef __SIZEOF_INT128__
    uint64_t q = a / b;
    if (q == 0)
        return 0;
    int shift = 52 - (63 - __builtin_clzll(q)); /* scale the quotient into [2^52, 2^53) */
    if (shift < 0)
        return 0;
    unsigned __int128 num = (unsigned __int128)a << shift;
    uint64_t n = (uint64_t)(num / b), rem = (uint64_t)(num % b);
    if (rem > b - rem || (rem == b - rem && (n & 1)))
        n++;
    *out = ldexp((double)n, -shift);
    return 1;
#else
    return 0;
#endif
}

typedef struct {
    uint8_t key[KEY_LEN];
    uint8_t used;
    uint8_t dead;      /* the consumer gave up: in-order bytes of any length are absorbed */
    uint8_t seen;      /* absorbed at least one packet since the grant */
    uint32_t next_seq; /* sequence number of the next byte expected */
    uint64_t skip;     /* bytes the consumer still skips (unused when dead) */
    uint64_t consumed; /* payload bytes absorbed since the grant */
    double last_ts;    /* capture time of the last absorbed packet */
} Grant;

typedef struct {
    PyObject_HEAD
    Grant *slots;
    Py_ssize_t cap; /* a power of two */
    Py_ssize_t count;
} GrantTable;

static inline uint32_t rd32(const uint8_t *p, int big) {
    uint32_t v;
    memcpy(&v, p, 4);
#if PY_BIG_ENDIAN
    return big ? v : __builtin_bswap32(v);
#else
    return big ? __builtin_bswap32(v) : v;
#endif
}

static inline uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline size_t slot_of(const uint8_t *key, Py_ssize_t cap) {
    uint64_t a;
    uint32_t b;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 4);
    uint64_t h = (a ^ ((uint64_t)b << 21) ^ b) * 0x9E3779B97F4A7C15ULL;
    return (size_t)((h ^ (h >> 31)) & (uint64_t)(cap - 1));
}

static Grant *find(GrantTable *t, const uint8_t *key) {
    size_t mask = (size_t)t->cap - 1;
    for (size_t i = slot_of(key, t->cap);; i = (i + 1) & mask) {
        Grant *g = &t->slots[i];
        if (!g->used)
            return NULL;
        if (memcmp(g->key, key, KEY_LEN) == 0)
            return g;
    }
}

/* Remove the grant in slot g, shifting later members of its probe run back (no tombstones). */
static void erase(GrantTable *t, Grant *g) {
    size_t mask = (size_t)t->cap - 1;
    size_t hole = (size_t)(g - t->slots);
    for (size_t i = (hole + 1) & mask; t->slots[i].used; i = (i + 1) & mask) {
        size_t home = slot_of(t->slots[i].key, t->cap);
        /* Move slot i into the hole unless its home lies cyclically in (hole, i]. */
        int stays = (hole <= i) ? (hole < home && home <= i) : (hole < home || home <= i);
        if (!stays) {
            t->slots[hole] = t->slots[i];
            hole = i;
        }
    }
    t->slots[hole].used = 0;
    t->count--;
}

static int grow(GrantTable *t) {
    Py_ssize_t cap = t->cap * 2;
    Grant *slots = PyMem_Calloc((size_t)cap, sizeof(Grant));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Grant *old = t->slots;
    Py_ssize_t old_cap = t->cap;
    t->slots = slots;
    t->cap = cap;
    for (Py_ssize_t i = 0; i < old_cap; i++) {
        if (old[i].used) {
            size_t mask = (size_t)cap - 1;
            size_t j = slot_of(old[i].key, cap);
            while (slots[j].used)
                j = (j + 1) & mask;
            slots[j] = old[i];
        }
    }
    PyMem_Free(old);
    return 0;
}

/* Key of a flow given as Python (src, sport, dst, dport); 0 when it is not an IPv4 flow. */
static int make_key(PyObject *const *args, uint8_t *key) {
    PyObject *src = args[0], *dst = args[2];
    if (!PyBytes_Check(src) || !PyBytes_Check(dst) || PyBytes_GET_SIZE(src) != 4 ||
        PyBytes_GET_SIZE(dst) != 4)
        return 0;
    long sport = PyLong_AsLong(args[1]);
    long dport = PyLong_AsLong(args[3]);
    if ((sport == -1 || dport == -1) && PyErr_Occurred())
        return -1;
    memcpy(key, PyBytes_AS_STRING(src), 4);
    memcpy(key + 4, PyBytes_AS_STRING(dst), 4);
    key[8] = (uint8_t)(sport >> 8);
    key[9] = (uint8_t)sport;
    key[10] = (uint8_t)(dport >> 8);
    key[11] = (uint8_t)dport;
    return 1;
}

static PyObject *settled(const Grant *g) {
    if (g->seen)
        return Py_BuildValue("(kKdO)", (unsigned long)g->next_seq, (unsigned long long)g->consumed,
                             g->last_ts, g->dead ? Py_True : Py_False);
    return Py_BuildValue("(kKOO)", (unsigned long)g->next_seq, (unsigned long long)g->consumed,
                         Py_None, g->dead ? Py_True : Py_False);
}

/* grant(src, sport, dst, dport, next_seq, skip, dead) */
static PyObject *GrantTable_grant(GrantTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "grant() takes 7 arguments");
        return NULL;
    }
    uint8_t key[KEY_LEN];
    int ok = make_key(args, key);
    if (ok <= 0) {
        if (ok == 0)
            PyErr_SetString(PyExc_ValueError, "grant() needs an IPv4 flow");
        return NULL;
    }
    unsigned long long seq = PyLong_AsUnsignedLongLong(args[4]);
    unsigned long long skip = PyLong_AsUnsignedLongLong(args[5]);
    int dead = PyObject_IsTrue(args[6]);
    if (PyErr_Occurred() || dead < 0)
        return NULL;
    if ((t->count + 1) * 2 > t->cap && grow(t) < 0)
        return NULL;
    Grant *g = find(t, key);
    if (g == NULL) {
        size_t mask = (size_t)t->cap - 1;
        size_t i = slot_of(key, t->cap);
        while (t->slots[i].used)
            i = (i + 1) & mask;
        g = &t->slots[i];
        memcpy(g->key, key, KEY_LEN);
        g->used = 1;
        t->count++;
    }
    g->next_seq = (uint32_t)seq;
    g->skip = skip;
    g->dead = (uint8_t)dead;
    g->seen = 0;
    g->consumed = 0;
    g->last_ts = 0.0;
    Py_RETURN_NONE;
}

/* take(src, sport, dst, dport) -> None | (next_seq, consumed, last_ts | None, dead) */
static PyObject *GrantTable_take(GrantTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "take() takes 4 arguments");
        return NULL;
    }
    if (t->count == 0)
        Py_RETURN_NONE;
    uint8_t key[KEY_LEN];
    int ok = make_key(args, key);
    if (ok < 0)
        return NULL;
    Grant *g = ok ? find(t, key) : NULL;
    if (g == NULL)
        Py_RETURN_NONE;
    PyObject *result = settled(g);
    if (result != NULL)
        erase(t, g);
    return result;
}

/* take_all() -> [((src, sport, dst, dport), (next_seq, consumed, last_ts | None, dead)), ...] */
static PyObject *GrantTable_take_all(GrantTable *t, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < t->cap; i++) {
        Grant *g = &t->slots[i];
        if (!g->used)
            continue;
        PyObject *item = Py_BuildValue("((y#iy#i)N)", (const char *)g->key, (Py_ssize_t)4,
                                       be16(g->key + 8), (const char *)g->key + 4, (Py_ssize_t)4,
                                       be16(g->key + 10), settled(g));
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    memset(t->slots, 0, (size_t)t->cap * sizeof(Grant));
    t->count = 0;
    return out;
}

/* Absorb one IPv4/TCP frame whose IP header starts at ip and whose captured bytes end at end.
 * Returns 1 when absorbed (the grant updated), 0 when Python must see it. */
static inline int absorb(GrantTable *t, const uint8_t *ip, const uint8_t *end, double ts) {
    if (ip[0] != 0x45 || ip[9] != 6 || (be16(ip + 6) & 0x3FFF) != 0)
        return 0;
    const uint8_t *tcp = ip + 20;
    uint8_t off = tcp[12];
    if (off < 0x50)
        return 0;
    const uint8_t *payload = tcp + ((off >> 2) & 0x3C);
    const uint8_t *stop = ip + be16(ip + 2);
    if (payload > stop || stop > end)
        return 0;
    uint8_t flags = tcp[13];
    if (flags & 7) /* FIN, SYN, RST */
        return 0;
    uint8_t key[KEY_LEN];
    memcpy(key, ip + 12, 8);
    memcpy(key + 8, tcp, 4);
    Grant *g = find(t, key);
    if (g == NULL || be32(tcp + 4) != g->next_seq)
        return 0;
    uint64_t n = (uint64_t)(stop - payload);
    if (n) {
        if (!g->dead) {
            if (g->skip < n)
                return 0;
            g->skip -= n;
        }
        g->next_seq += (uint32_t)n;
        g->consumed += n;
    }
    g->seen = 1;
    g->last_ts = ts;
    return 1;
}

/* walk_pcap(data, pos, lim, big_endian, ip_at, div) -> (pos, records)
 * Classic pcap: step over absorbable records from pos while each ends at or before lim. */
static PyObject *GrantTable_walk_pcap(GrantTable *t, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t pos, lim;
    int big, ip_at;
    double div;
    Py_buffer view;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "walk_pcap() takes 6 arguments");
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    lim = PyLong_AsSsize_t(args[2]);
    big = PyObject_IsTrue(args[3]);
    ip_at = (int)PyLong_AsLong(args[4]);
    div = PyFloat_AsDouble(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (t->count == 0)
        return Py_BuildValue("(ni)", pos, 0);
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *data = view.buf;
    if (lim > view.len)
        lim = view.len;
    Py_ssize_t walked = 0;
    Py_ssize_t min_len = ip_at + 40;
    while (pos >= 0 && pos + 16 <= lim) {
        const uint8_t *rec = data + pos;
        uint32_t caplen = rd32(rec + 8, big);
        if ((Py_ssize_t)caplen > lim - pos - 16 || caplen < rd32(rec + 12, big) ||
            (Py_ssize_t)caplen < min_len)
            break;
        const uint8_t *frame = rec + 16;
        const uint8_t *end = frame + caplen;
        if (ip_at == 14 && (frame[12] != 0x08 || frame[13] != 0x00))
            break;
        double ts = (double)rd32(rec, big) + (double)rd32(rec + 4, big) / div;
        if (!absorb(t, frame + ip_at, end, ts))
            break;
        pos += 16 + (Py_ssize_t)caplen;
        walked++;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nn)", pos, walked);
}

/* walk_pcapng(data, pos, lim, big_endian, ifid, ip_at, div) -> (pos, blocks, bytes, last)
 * pcapng: step over absorbable enhanced packet blocks of interface ifid; last is the offset of
 * the last block walked (-1 when none). div (timestamp units per second) is an integer, and
 * ticks / div is rounded exactly as Python's int / int. */
static PyObject *GrantTable_walk_pcapng(GrantTable *t, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t pos, lim;
    int big, ip_at;
    unsigned long ifid;
    unsigned long long div;
    Py_buffer view;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "walk_pcapng() takes 7 arguments");
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    lim = PyLong_AsSsize_t(args[2]);
    big = PyObject_IsTrue(args[3]);
    ifid = PyLong_AsUnsignedLong(args[4]);
    ip_at = (int)PyLong_AsLong(args[5]);
    div = PyLong_AsUnsignedLongLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    if (div == 0) {
        PyErr_SetString(PyExc_ValueError, "walk_pcapng() needs a positive div");
        return NULL;
    }
    if (t->count == 0)
        return Py_BuildValue("(niii)", pos, 0, 0, -1);
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *data = view.buf;
    if (lim > view.len)
        lim = view.len;
    Py_ssize_t walked = 0, nbytes = 0, last = -1;
    Py_ssize_t min_len = ip_at + 40;
    while (pos >= 0 && pos + 28 <= lim) {
        const uint8_t *blk = data + pos;
        uint32_t blen = rd32(blk + 4, big);
        uint32_t caplen = rd32(blk + 20, big);
        if (rd32(blk, big) != 6 || (uint64_t)caplen + 32 > blen || (Py_ssize_t)blen > lim - pos ||
            rd32(blk + 8, big) != ifid || caplen < rd32(blk + 24, big) ||
            (Py_ssize_t)caplen < min_len)
            break;
        uint64_t ticks = ((uint64_t)rd32(blk + 12, big) << 32) | rd32(blk + 16, big);
        double ts;
        if (!exact_ratio(ticks, div, &ts))
            break;
        const uint8_t *frame = blk + 28;
        if (ip_at == 14 && (frame[12] != 0x08 || frame[13] != 0x00))
            break;
        if (!absorb(t, frame + ip_at, frame + caplen, ts))
            break;
        last = pos;
        pos += (Py_ssize_t)blen;
        nbytes += caplen;
        walked++;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nnnn)", pos, walked, nbytes, last);
}

static Py_ssize_t GrantTable_len(GrantTable *t) { return t->count; }

static PyObject *GrantTable_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "GrantTable() takes no arguments");
        return NULL;
    }
    GrantTable *t = (GrantTable *)type->tp_alloc(type, 0);
    if (t == NULL)
        return NULL;
    t->cap = 64;
    t->count = 0;
    t->slots = PyMem_Calloc((size_t)t->cap, sizeof(Grant));
    if (t->slots == NULL) {
        Py_DECREF(t);
        return PyErr_NoMemory();
    }
    return (PyObject *)t;
}

static void GrantTable_dealloc(GrantTable *t) {
    PyMem_Free(t->slots);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyMethodDef GrantTable_methods[] = {
    {"grant", (PyCFunction)(void (*)(void))GrantTable_grant, METH_FASTCALL,
     "grant(src, sport, dst, dport, next_seq, skip, dead): let the walk absorb this direction."},
    {"take", (PyCFunction)(void (*)(void))GrantTable_take, METH_FASTCALL,
     "take(src, sport, dst, dport): end the grant; None or (next_seq, consumed, last_ts, dead)."},
    {"take_all", (PyCFunction)GrantTable_take_all, METH_NOARGS,
     "take_all(): end every grant; a list of (key, take() result)."},
    {"walk_pcap", (PyCFunction)(void (*)(void))GrantTable_walk_pcap, METH_FASTCALL,
     "walk_pcap(data, pos, lim, big_endian, ip_at, div) -> (pos, records)"},
    {"walk_pcapng", (PyCFunction)(void (*)(void))GrantTable_walk_pcapng, METH_FASTCALL,
     "walk_pcapng(data, pos, lim, big_endian, ifid, ip_at, div: int) -> (pos, blocks, bytes, last)"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods GrantTable_as_sequence = {
    .sq_length = (lenfunc)GrantTable_len,
};

static PyTypeObject GrantTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "analyzer.sources._walk.GrantTable",
    .tp_basicsize = sizeof(GrantTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "TCP directions whose in-order skipped bytes and bare ACKs the walk absorbs.",
    .tp_new = GrantTable_new,
    .tp_dealloc = (destructor)GrantTable_dealloc,
    .tp_methods = GrantTable_methods,
    .tp_as_sequence = &GrantTable_as_sequence,
};

static struct PyModuleDef walk_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_walk",
    .m_doc = "Native record walk for analyzer.sources.pcapfile.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__walk(void) {
    if (PyType_Ready(&GrantTableType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&walk_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&GrantTableType);
    if (PyModule_AddObject(m, "GrantTable", (PyObject *)&GrantTableType) < 0) {
        Py_DECREF(&GrantTableType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
