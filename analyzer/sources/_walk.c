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
 * Walked here: IPv4 TCP with a 20-byte header, not a fragment, on Ethernet (after any VLAN tags)
 * or raw IP; and the same inside the common mirror and overlay tunnels: VXLAN (UDP 4789, 8472
 * and the ports set with set_vxlan_ports), GENEVE (6081), GRE carrying IPv4 or Ethernet, ERSPAN types I,
 * II and III, and IP-in-IP, one layer deep under an outer IPv4 (20-byte header) or IPv6 (no
 * extension headers; Ethernet links only) header. Everything else stops the walk and Python
 * decodes it (analyzer.sources.linklayer, which keys tunnelled flows the same way: the inner
 * 4-tuple plus a 5-byte tag of the tunnel id, see TAG_LEN). The walk only absorbs packets whose
 * every length field agrees with the bytes captured, so Python would read them alike. Tunnelled
 * packets absorbed are tallied per shape (encapsulated()) for the capture's counters.
 * Timestamps are computed with the same floating-point operations as the Python reader, so
 * results are bit-identical with or without this module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

/* source address, destination address, source port, destination port, tunnel tag: a kind byte
 * (0: none) and a 32-bit id, as analyzer.sources.linklayer appends to each packed address */
#define TAG_LEN 5
#define KEY_LEN (12 + TAG_LEN)
#define TWO_53 (1ULL << 53)
#define MAX_VXLAN_PORTS 16

enum { TAG_NONE, TAG_GRE_KEY, TAG_ERSPAN, TAG_VXLAN, TAG_GENEVE }; /* as in linklayer */
/* Shapes of absorbed tunnelled packets; pcapfile._WALK_SHAPES names them. */
enum { PLAIN, VXLAN, GENEVE, GRE, ERSPAN1, ERSPAN2, ERSPAN3, IPIP, N_SHAPES };

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
    uint8_t acked;     /* an absorbed packet carried an ACK since the grant */
    uint32_t next_seq; /* sequence number of the next byte expected */
    uint32_t ack;      /* the furthest acknowledgement number absorbed */
    uint64_t skip;     /* bytes the consumer still skips (unused when dead) */
    uint64_t consumed; /* payload bytes absorbed since the grant */
    double last_ts;    /* capture time of the last absorbed packet */
} Grant;

typedef struct {
    PyObject_HEAD
    Grant *slots;
    Py_ssize_t cap; /* a power of two */
    Py_ssize_t count;
    uint16_t vxlan_ports[MAX_VXLAN_PORTS];
    int n_vxlan;
    uint64_t shapes[2][N_SHAPES]; /* tunnelled packets absorbed, by outer IPv4 / IPv6 */
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
    uint32_t b, c;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 4);
    memcpy(&c, key + 13, 4);
    uint64_t h = (a ^ ((uint64_t)b << 21) ^ b ^ ((uint64_t)c << 35) ^ ((uint64_t)key[12] << 29)) *
                 0x9E3779B97F4A7C15ULL;
    h ^= c;
    h *= 0x9E3779B97F4A7C15ULL;
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

/* Key of a flow given as Python (src, sport, dst, dport); 0 when it is not an IPv4 flow with
 * at most one tunnel tag (the same on both addresses). */
static int make_key(PyObject *const *args, uint8_t *key) {
    PyObject *src = args[0], *dst = args[2];
    if (!PyBytes_Check(src) || !PyBytes_Check(dst))
        return 0;
    Py_ssize_t len = PyBytes_GET_SIZE(src);
    if ((len != 4 && len != 4 + TAG_LEN) || PyBytes_GET_SIZE(dst) != len)
        return 0;
    const char *s = PyBytes_AS_STRING(src), *d = PyBytes_AS_STRING(dst);
    if (len > 4 && (s[4] == TAG_NONE || memcmp(s + 4, d + 4, TAG_LEN) != 0))
        return 0;
    long sport = PyLong_AsLong(args[1]);
    long dport = PyLong_AsLong(args[3]);
    if ((sport == -1 || dport == -1) && PyErr_Occurred())
        return -1;
    memcpy(key, s, 4);
    memcpy(key + 4, d, 4);
    if (len > 4)
        memcpy(key + 12, s + 4, TAG_LEN);
    else
        memset(key + 12, 0, TAG_LEN);
    key[8] = (uint8_t)(sport >> 8);
    key[9] = (uint8_t)sport;
    key[10] = (uint8_t)(dport >> 8);
    key[11] = (uint8_t)dport;
    return 1;
}

static PyObject *settled(const Grant *g) {
    PyObject *last = g->seen ? PyFloat_FromDouble(g->last_ts) : Py_NewRef(Py_None);
    PyObject *ack = g->acked ? PyLong_FromUnsignedLong(g->ack) : Py_NewRef(Py_None);
    if (last == NULL || ack == NULL) {
        Py_XDECREF(last);
        Py_XDECREF(ack);
        return NULL;
    }
    return Py_BuildValue("(kKNON)", (unsigned long)g->next_seq, (unsigned long long)g->consumed,
                         last, g->dead ? Py_True : Py_False, ack);
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
            PyErr_SetString(PyExc_ValueError, "grant() needs an IPv4 flow (one tunnel tag at most)");
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
    g->acked = 0;
    g->consumed = 0;
    g->last_ts = 0.0;
    Py_RETURN_NONE;
}

/* take(src, sport, dst, dport) -> None | (next_seq, consumed, last_ts | None, dead, ack | None) */
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

/* take_all() -> [((src, sport, dst, dport), take() result), ...] */
static PyObject *GrantTable_take_all(GrantTable *t, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < t->cap; i++) {
        Grant *g = &t->slots[i];
        if (!g->used)
            continue;
        uint8_t src[4 + TAG_LEN], dst[4 + TAG_LEN];
        Py_ssize_t len = g->key[12] == TAG_NONE ? 4 : 4 + TAG_LEN;
        memcpy(src, g->key, 4);
        memcpy(dst, g->key + 4, 4);
        memcpy(src + 4, g->key + 12, TAG_LEN);
        memcpy(dst + 4, g->key + 12, TAG_LEN);
        PyObject *item = Py_BuildValue("((y#iy#i)N)", (const char *)src, len, be16(g->key + 8),
                                       (const char *)dst, len, be16(g->key + 10), settled(g));
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

/* Absorb one IPv4/TCP packet whose IP header starts at ip and whose bytes end at end (the
 * captured bytes, or the tunnel's bound), keyed with tag (TAG_LEN bytes; NULL: none).
 * Returns 1 when absorbed (the grant updated), 0 when Python must see it. */
static inline int absorb_tcp(GrantTable *t, const uint8_t *ip, const uint8_t *end,
                             const uint8_t *tag, double ts) {
    if (end - ip < 40 || ip[0] != 0x45 || ip[9] != 6 || (be16(ip + 6) & 0x3FFF) != 0)
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
    if (tag != NULL)
        memcpy(key + 12, tag, TAG_LEN);
    else
        memset(key + 12, 0, TAG_LEN);
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
    if (flags & 0x10) { /* ACK: the furthest one (a late duplicate does not take it back) */
        uint32_t ack = be32(tcp + 8);
        if (!g->acked || (uint32_t)(ack - g->ack) < 0x80000000u) {
            g->ack = ack;
            g->acked = 1;
        }
    }
    g->seen = 1;
    g->last_ts = ts;
    return 1;
}

/* An Ethernet frame in [p, end): step over VLAN tags; the byte after the EtherType (or NULL). */
static inline const uint8_t *ether(const uint8_t *p, const uint8_t *end, uint16_t *etype) {
    if (end - p < 14)
        return NULL;
    uint16_t type = be16(p + 12);
    p += 14;
    while (type == 0x8100 || type == 0x88A8 || type == 0x9100) {
        if (end - p < 4)
            return NULL;
        type = be16(p + 2);
        p += 4;
    }
    *etype = type;
    return p;
}

/* The IPv4 header of an Ethernet frame in [p, end), or NULL. */
static inline const uint8_t *ether_ipv4(const uint8_t *p, const uint8_t *end) {
    uint16_t etype;
    p = ether(p, end, &etype);
    return p != NULL && etype == 0x0800 ? p : NULL;
}

static inline void put_tag(uint8_t *tag, uint8_t kind, uint32_t id) {
    tag[0] = kind;
    tag[1] = (uint8_t)(id >> 24);
    tag[2] = (uint8_t)(id >> 16);
    tag[3] = (uint8_t)(id >> 8);
    tag[4] = (uint8_t)id;
}

static inline int is_vxlan_port(const GrantTable *t, uint16_t port) {
    for (int i = 0; i < t->n_vxlan; i++)
        if (t->vxlan_ports[i] == port)
            return 1;
    return 0;
}

/* Absorb a tunnelled IPv4/TCP packet: proto is the outer IP header's protocol, [p, bound) its
 * payload. Reads the layer as analyzer.sources.linklayer does and stops (0) wherever that would
 * count a problem, find another layer, or read a length differently. */
static int absorb_tunnel(GrantTable *t, int outer_v6, uint8_t proto, const uint8_t *p,
                         const uint8_t *bound, double ts) {
    const uint8_t *ip = NULL;
    uint8_t tag[TAG_LEN];
    int tagged = 0, shape;
    if (proto == 17) {
        if (bound - p < 8)
            return 0;
        uint16_t dport = be16(p + 2), ulen = be16(p + 4);
        if (ulen < 16 || ulen > bound - p)
            return 0;
        bound = p + ulen;
        const uint8_t *h = p + 8;
        if (is_vxlan_port(t, dport)) {
            if (!(h[0] & 0x08))
                return 0;
            put_tag(tag, TAG_VXLAN, be32(h + 4) >> 8);
            ip = ether_ipv4(h + 8, bound);
            shape = VXLAN;
        } else if (dport == 6081) {
            if (h[0] >> 6)
                return 0;
            const uint8_t *q = h + 8 + (h[0] & 0x3F) * 4;
            if (q > bound)
                return 0;
            uint16_t type = be16(h + 2);
            if (type == 0x6558)
                ip = ether_ipv4(q, bound);
            else if (type == 0x0800)
                ip = q;
            else
                return 0;
            put_tag(tag, TAG_GENEVE, be32(h + 4) >> 8);
            shape = GENEVE;
        } else {
            return 0;
        }
        tagged = 1;
    } else if (proto == 47) {
        if (bound - p < 4)
            return 0;
        uint16_t flags = be16(p), type = be16(p + 2);
        if (flags & 0x4007) /* source routing, or not version 0 */
            return 0;
        const uint8_t *h = p + 4 + ((flags & 0x8000) ? 4 : 0);
        if (flags & 0x2000) {
            if (bound - h < 4)
                return 0;
            put_tag(tag, TAG_GRE_KEY, be32(h));
            tagged = 1;
            h += 4;
        }
        if (flags & 0x1000)
            h += 4;
        if (h > bound)
            return 0;
        if (type == 0x0800) {
            ip = h;
            shape = GRE;
        } else if (type == 0x6558) {
            ip = ether_ipv4(h, bound);
            shape = GRE;
        } else if (type == 0x88BE && !(flags & 0x1000)) {
            ip = ether_ipv4(h, bound);
            shape = ERSPAN1;
        } else if (type == 0x88BE || type == 0x22EB) {
            if (tagged || bound - h < 12) /* with a GRE key: two tags, not walked */
                return 0;
            unsigned version = h[0] >> 4;
            put_tag(tag, TAG_ERSPAN, be16(h + 2) & 0x3FF);
            tagged = 1;
            if (version == 1) {
                ip = ether_ipv4(h + 8, bound);
                shape = ERSPAN2;
            } else if (version == 2 && type == 0x22EB) {
                uint16_t word = be16(h + 10);
                const uint8_t *q = h + ((word & 1) ? 20 : 12);
                unsigned frame_type = (word >> 10) & 0x1F;
                if (q > bound)
                    return 0;
                if (frame_type == 0)
                    ip = ether_ipv4(q, bound);
                else if (frame_type == 2)
                    ip = q;
                else
                    return 0;
                shape = ERSPAN3;
            } else {
                return 0;
            }
        } else {
            return 0;
        }
    } else if (proto == 4) {
        ip = p;
        shape = IPIP;
    } else {
        return 0;
    }
    if (ip == NULL || !absorb_tcp(t, ip, bound, tagged ? tag : NULL, ts))
        return 0;
    t->shapes[outer_v6][shape]++;
    return 1;
}

/* Absorb one captured frame: [frame, end) with the IP header at ip_at (14: Ethernet, 0: raw
 * IPv4). Plain IPv4/TCP first, exactly as before tunnels; then one tunnel layer. */
static inline int absorb(GrantTable *t, const uint8_t *frame, const uint8_t *end, int ip_at,
                         double ts) {
    const uint8_t *ip = frame;
    uint16_t etype = 0x0800;
    if (ip_at == 14) {
        if (frame[12] == 0x08 && frame[13] == 0x00) /* the common frame: no VLAN tag */
            ip = frame + 14;
        else if ((ip = ether(frame, end, &etype)) == NULL)
            return 0;
    }
    if (etype == 0x0800) {
        if (end - ip < 40 || ip[0] != 0x45)
            return 0;
        if (ip[9] == 6)
            return absorb_tcp(t, ip, end, NULL, ts);
        uint16_t total = be16(ip + 2);
        if ((be16(ip + 6) & 0x3FFF) != 0 || total < 20 || total > end - ip)
            return 0;
        return absorb_tunnel(t, 0, ip[9], ip + 20, ip + total, ts);
    }
    if (etype == 0x86DD) {
        if (end - ip < 40 || ip[0] >> 4 != 6)
            return 0;
        uint16_t plen = be16(ip + 4);
        if (plen == 0 || plen > end - ip - 40)
            return 0;
        return absorb_tunnel(t, 1, ip[6], ip + 40, ip + 40 + plen, ts);
    }
    return 0;
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
        double ts = (double)rd32(rec, big) + (double)rd32(rec + 4, big) / div;
        if (!absorb(t, frame, frame + caplen, ip_at, ts))
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
        if (!absorb(t, frame, frame + caplen, ip_at, ts))
            break;
        last = pos;
        pos += (Py_ssize_t)blen;
        nbytes += caplen;
        walked++;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nnnn)", pos, walked, nbytes, last);
}

/* set_vxlan_ports(ports): the UDP destination ports read as VXLAN (the decoder's set). */
static PyObject *GrantTable_set_vxlan_ports(GrantTable *t, PyObject *ports) {
    uint16_t chosen[MAX_VXLAN_PORTS];
    int n = 0;
    PyObject *it = PyObject_GetIter(ports);
    if (it == NULL)
        return NULL;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        long port = PyLong_AsLong(item);
        Py_DECREF(item);
        if (port == -1 && PyErr_Occurred())
            break;
        if (port <= 0 || port > 65535 || n == MAX_VXLAN_PORTS) {
            PyErr_SetString(PyExc_ValueError, "set_vxlan_ports() takes up to 16 UDP ports");
            break;
        }
        chosen[n++] = (uint16_t)port;
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    memcpy(t->vxlan_ports, chosen, sizeof chosen);
    t->n_vxlan = n;
    Py_RETURN_NONE;
}

/* encapsulated() -> [(outer_v6, shape, packets), ...]: tunnelled packets absorbed since the
 * last call (pcapfile._WALK_SHAPES names the shapes). */
static PyObject *GrantTable_encapsulated(GrantTable *t, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (int v6 = 0; v6 < 2; v6++) {
        for (int shape = 1; shape < N_SHAPES; shape++) {
            uint64_t n = t->shapes[v6][shape];
            if (!n)
                continue;
            PyObject *item = Py_BuildValue("(iiK)", v6, shape, (unsigned long long)n);
            if (item == NULL || PyList_Append(out, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(item);
            t->shapes[v6][shape] = 0;
        }
    }
    return out;
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
    t->vxlan_ports[0] = 4789;
    t->vxlan_ports[1] = 8472; /* the Linux kernel's default, as linklayer.DEFAULT_VXLAN_PORTS */
    t->n_vxlan = 2;
    memset(t->shapes, 0, sizeof t->shapes);
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
     "take(src, sport, dst, dport): end the grant; None or (next_seq, consumed, last_ts, dead, ack)."},
    {"take_all", (PyCFunction)GrantTable_take_all, METH_NOARGS,
     "take_all(): end every grant; a list of (key, take() result)."},
    {"set_vxlan_ports", (PyCFunction)GrantTable_set_vxlan_ports, METH_O,
     "set_vxlan_ports(ports): the UDP destination ports read as VXLAN (default: 4789)."},
    {"encapsulated", (PyCFunction)GrantTable_encapsulated, METH_NOARGS,
     "encapsulated() -> [(outer_v6, shape, packets)]: tunnelled packets absorbed since last asked."},
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
    .tp_doc = "TCP directions (IPv4, tunnel tag) whose in-order skipped bytes and bare ACKs the "
              "walk absorbs.",
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
    /* what the Python side expects of it (analyzer.flows.tcp.WALK_ABI): raised with every
     * change to what grant/take/walk take or give back */
    if (PyModule_AddIntConstant(m, "ABI", 2) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
