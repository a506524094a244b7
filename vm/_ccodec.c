/* The term codec's common terms in C (vm/codec.py holds the format and every other case).
 *
 * encode / encode_batch write the bytes vm/codec.py would write for a term made only of
 * None, the two Lisp booleans and Python's, machine-size ints, floats, strings, symbols, pids,
 * and tuples, lists and cons lists of fewer than PACK_MIN elements (longer ones may take a
 * packed form: Python's to choose); for anything else they answer None and the caller takes
 * the Python encoder, which also says every error (too large, unknown type).
 *
 * decode reads the same kinds (any length) and answers NotImplemented for any other tag and
 * for anything malformed: the Python decoder then reads the whole message again and refuses
 * it with its own error. So hostile bytes here only have to be read safely: every length is
 * checked against the bytes left before it is used, and nesting deeper than MAX_DEPTH goes
 * to Python (whose walk does not recurse).
 *
 * Nothing here runs Python code but the constructors vm/codec.py names in setup (Cons, Pid,
 * intern).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* PyMemberDef; its T_ names that clash with the tags below are dropped */
#include <stdint.h>

#define OBJECT_EX_MEMBER T_OBJECT_EX
#undef T_NONE
#undef T_FLOAT
#include <string.h>

#if PY_BIG_ENDIAN
#error "the codec's C path is written for little-endian hosts"
#endif

enum {
    T_NONE = 0, T_PTRUE = 1, T_PFALSE = 2, T_TRUE = 3, T_FALSE = 4,
    T_I32 = 6, T_I64 = 7, T_FLOAT = 9, T_STR = 10, T_SYM = 12, T_PID = 13,
    T_TUPLE = 16, T_LIST = 17, T_CONS = 18,
};
#define VERSION 1
#define SMALL_MIN (-32)
#define SMALL_MAX (SMALL_MIN + 127)
#define PACK_MIN 8 /* vm/codec.py's _PACK_MIN: a sequence this long may be packed */
#define MAX_DEPTH 200
#define HEADER 8

static PyObject *ConsType, *SymType, *PidType, *LispTrue, *LispFalse;
static PyObject *Symbols, *Intern, *Pids;
static Py_ssize_t CacheMax = 4096;
static PyObject *s_head, *s_tail, *s_name, *s_key, *s_node;
/* Where a Cons keeps head and tail, a Sym its name and a Pid its key and node: the offsets of
 * their slots (member descriptors, in C or from __slots__), read straight from the object; -1
 * where a class has no such slot (then the attribute is looked up). A generic attribute lookup
 * per cell was most of the cost of writing or checking a small message. */
static Py_ssize_t off_head = -1, off_tail = -1, off_name = -1, off_key = -1, off_node = -1;

static Py_ssize_t slot_offset(PyObject *type, PyObject *name) {
    if (!PyType_Check(type))
        return -1;
    PyObject *d = _PyType_Lookup((PyTypeObject *)type, name);
    if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type) || PyDescr_TYPE(d) != (PyTypeObject *)type)
        return -1;
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    return m->type == OBJECT_EX_MEMBER ? m->offset : -1;
}

/* x's attribute `name` (a new reference), from its slot at `off` when it has one and it is set;
 * else looked up (which raises AttributeError for an empty slot, as Python would). */
static inline PyObject *slot(PyObject *x, Py_ssize_t off, PyObject *name) {
    if (off >= 0) {
        PyObject *v = *(PyObject **)((char *)x + off);
        if (v != NULL) {
            Py_INCREF(v);
            return v;
        }
    }
    return PyObject_GetAttr(x, name);
}

/* ---- encoding ---------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    Py_ssize_t len, cap, limit; /* limit: bytes the whole output may take */
} Out;

/* 0 ok, -1 bail (no error set), -2 Python error set */
static int grow(Out *o, Py_ssize_t need) {
    if (o->len + need > o->limit)
        return -1;
    if (o->len + need <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap * 2;
    if (cap < o->len + need)
        cap = o->len + need + 64;
    char *b = PyMem_Realloc(o->buf, cap);
    if (b == NULL) {
        PyErr_NoMemory();
        return -2;
    }
    o->buf = b;
    o->cap = cap;
    return 0;
}

static inline int put1(Out *o, unsigned char c) {
    int r = grow(o, 1);
    if (r)
        return r;
    o->buf[o->len++] = (char)c;
    return 0;
}

static inline int putn(Out *o, const void *p, Py_ssize_t n) {
    int r = grow(o, n);
    if (r)
        return r;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

static int put_uvarint(Out *o, uint64_t n) {
    unsigned char tmp[10];
    int k = 0;
    while (n >= 0x80) {
        tmp[k++] = (unsigned char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    tmp[k++] = (unsigned char)n;
    return putn(o, tmp, k);
}

static int put_text(Out *o, int tag, PyObject *s) {
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(s, &n);
    if (p == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) { /* lone surrogates: Python's */
            PyErr_Clear();
            return -1;
        }
        return -2;
    }
    int r = put1(o, tag);
    if (!r)
        r = put_uvarint(o, (uint64_t)n);
    if (!r)
        r = putn(o, p, n);
    return r;
}

static int enc(Out *o, PyObject *x, int depth);

static int enc_items(Out *o, PyObject *const *items, Py_ssize_t n, int depth) {
    for (Py_ssize_t i = 0; i < n; i++) {
        int r = enc(o, items[i], depth + 1);
        if (r)
            return r;
    }
    return 0;
}

static int get_int_attr(PyObject *x, Py_ssize_t off, PyObject *name, long long *v) {
    PyObject *a = slot(x, off, name);
    if (a == NULL)
        return -2;
    if (!PyLong_CheckExact(a)) {
        Py_DECREF(a);
        return -1;
    }
    int overflow;
    *v = PyLong_AsLongLongAndOverflow(a, &overflow);
    Py_DECREF(a);
    if (overflow || (*v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

static int enc(Out *o, PyObject *x, int depth) {
    PyTypeObject *t = Py_TYPE(x);
    int r;
    if (depth > MAX_DEPTH)
        return -1;
    if (t == &PyLong_Type) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
        if (overflow)
            return -1; /* a big integer: Python's */
        if (v == -1 && PyErr_Occurred())
            return -2;
        if (v >= SMALL_MIN && v <= SMALL_MAX)
            return put1(o, (unsigned char)(0x80 + v - SMALL_MIN));
        if (v >= INT32_MIN && v <= INT32_MAX) {
            int32_t w = (int32_t)v;
            if ((r = put1(o, T_I32)))
                return r;
            return putn(o, &w, 4);
        }
        if ((r = put1(o, T_I64)))
            return r;
        return putn(o, &v, 8);
    }
    if (x == Py_None)
        return put1(o, T_NONE);
    if ((PyObject *)t == SymType) {
        PyObject *name = slot(x, off_name, s_name);
        if (name == NULL)
            return -2;
        if (!PyUnicode_CheckExact(name))
            r = -1;
        else
            r = put_text(o, T_SYM, name);
        Py_DECREF(name);
        return r;
    }
    if (t == &PyUnicode_Type)
        return put_text(o, T_STR, x);
    if ((PyObject *)t == ConsType) {
        PyObject *heads[PACK_MIN + 1];
        Py_ssize_t n = 0;
        PyObject *c = x;
        Py_INCREF(c);
        while ((PyObject *)Py_TYPE(c) == ConsType) {
            if (n == PACK_MIN) { /* long: Python may pack it */
                Py_DECREF(c);
                r = -1;
                goto cons_done;
            }
            PyObject *h = slot(c, off_head, s_head);
            PyObject *tl = h ? slot(c, off_tail, s_tail) : NULL;
            Py_DECREF(c);
            if (tl == NULL) {
                Py_XDECREF(h);
                r = -2;
                goto cons_done;
            }
            heads[n++] = h;
            c = tl;
        }
        heads[n] = c; /* the tail: None for a proper list */
        n++;
        if (!(r = put1(o, T_CONS)) && !(r = put_uvarint(o, (uint64_t)(n - 1))))
            r = enc_items(o, heads, n, depth);
    cons_done:
        for (Py_ssize_t i = 0; i < n; i++)
            Py_DECREF(heads[i]);
        return r;
    }
    if (t == &PyTuple_Type || t == &PyList_Type) {
        Py_ssize_t n = Py_SIZE(x);
        if (n >= PACK_MIN)
            return -1;
        if ((r = put1(o, t == &PyTuple_Type ? T_TUPLE : T_LIST)) || (r = put1(o, (unsigned char)n)))
            return r;
        if (t == &PyTuple_Type)
            return enc_items(o, ((PyTupleObject *)x)->ob_item, n, depth);
        /* a list may change under a constructor's feet: hold its items while they are written */
        PyObject *held[PACK_MIN];
        for (Py_ssize_t i = 0; i < n; i++) {
            held[i] = PyList_GET_ITEM(x, i);
            Py_INCREF(held[i]);
        }
        r = enc_items(o, held, n, depth);
        for (Py_ssize_t i = 0; i < n; i++)
            Py_DECREF(held[i]);
        return r;
    }
    if (t == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(x);
        if ((r = put1(o, T_FLOAT)))
            return r;
        return putn(o, &d, 8);
    }
    if ((PyObject *)t == PidType) {
        long long node, key;
        if ((r = get_int_attr(x, off_node, s_node, &node)) || (r = get_int_attr(x, off_key, s_key, &key)))
            return r;
        long long num = key >> 12;
        if (node < 0 || node >= 4096 || key < 0 || num >= 0x100000000LL)
            return -1;
        unsigned char b[7];
        uint16_t nd = (uint16_t)node;
        uint32_t nm = (uint32_t)num;
        b[0] = T_PID;
        memcpy(b + 1, &nd, 2);
        memcpy(b + 3, &nm, 4);
        return putn(o, b, 7);
    }
    if (x == LispTrue)
        return put1(o, T_TRUE);
    if (x == LispFalse)
        return put1(o, T_FALSE);
    if (x == Py_True)
        return put1(o, T_PTRUE);
    if (x == Py_False)
        return put1(o, T_PFALSE);
    return -1;
}

static PyObject *finish(Out *o, int r) {
    PyObject *res = NULL;
    if (r == 0)
        res = PyBytes_FromStringAndSize(o->buf, o->len);
    else if (r == -1) {
        res = Py_None;
        Py_INCREF(res);
    }
    PyMem_Free(o->buf);
    return res;
}

static int out_init(Out *o, Py_ssize_t limit) {
    o->cap = 256;
    o->len = 0;
    o->limit = limit;
    o->buf = PyMem_Malloc(o->cap);
    if (o->buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* encode(obj, limit, framed) -> bytes | None: the message (VERSION byte first), with an 8-byte
 * length header first if `framed` (then `limit` does not count the header). */
static PyObject *c_encode(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "encode(obj, limit, framed)");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    int framed = PyObject_IsTrue(args[2]);
    if (framed < 0)
        return NULL;
    Out o;
    if (out_init(&o, limit + (framed ? HEADER : 0)) < 0)
        return NULL;
    if (framed)
        o.len = HEADER;
    int r = put1(&o, VERSION);
    if (!r)
        r = enc(&o, args[0], 0);
    if (!r && framed) {
        uint64_t n = (uint64_t)(o.len - HEADER);
        memcpy(o.buf, &n, 8);
    }
    return finish(&o, r);
}

/* One message event ("ev", pid, skey, seq, "m", item)'s header (mark, receiver's pid key,
 * sender's pid key, number: B Q Q Q) at p; 0, or -1 if it is not for this path. */
static int ev_head(PyObject *ev, char *p) {
    if (!PyTuple_CheckExact(ev) || PyTuple_GET_SIZE(ev) != 6)
        return -1;
    PyObject *pid = PyTuple_GET_ITEM(ev, 1), *skey = PyTuple_GET_ITEM(ev, 2), *seq = PyTuple_GET_ITEM(ev, 3);
    long long node, key;
    unsigned long long sk = 0, sq = 0;
    unsigned char mark;
    int r;
    if ((PyObject *)Py_TYPE(pid) != PidType)
        return -1;
    if ((r = get_int_attr(pid, off_node, s_node, &node)) || (r = get_int_attr(pid, off_key, s_key, &key)))
        return r;
    if (node < 0 || node >= 4096 || key < 0)
        return -1;
    if (skey == Py_None && seq == Py_None)
        mark = 0xF0;
    else if (PyLong_CheckExact(skey) && PyLong_CheckExact(seq)) {
        sk = PyLong_AsUnsignedLongLong(skey);
        if (sk == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        sq = PyLong_AsUnsignedLongLong(seq);
        if (sq == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        mark = 0xF1;
    } else
        return -1;
    uint64_t k = (uint64_t)key;
    p[0] = (char)mark;
    memcpy(p + 1, &k, 8);
    memcpy(p + 9, &sk, 8);
    memcpy(p + 17, &sq, 8);
    return 0;
}

/* A run of n message events from evs[i]: one message frame (8-byte length, header, the item's
 * term) when n is 1, else a batch frame (8-byte length, mark 0xF2 and the count as u32, the
 * headers, then one codec tuple of the items). */
static int write_run(Out *o, PyObject *evs, Py_ssize_t i, Py_ssize_t n) {
    Py_ssize_t start = o->len;
    int r;
    if (n == 1) {
        if ((r = grow(o, HEADER + 25)))
            return r;
        if ((r = ev_head(PyList_GET_ITEM(evs, i), o->buf + start + HEADER)))
            return r;
        o->len += HEADER + 25;
        if ((r = put1(o, VERSION)) || (r = enc(o, PyTuple_GET_ITEM(PyList_GET_ITEM(evs, i), 5), 0)))
            return r;
    } else {
        if ((r = grow(o, HEADER + 5 + 25 * n)))
            return r;
        char *p = o->buf + start + HEADER;
        uint32_t cnt = (uint32_t)n;
        p[0] = (char)0xF2;
        memcpy(p + 1, &cnt, 4);
        for (Py_ssize_t j = 0; j < n; j++) {
            if ((r = ev_head(PyList_GET_ITEM(evs, i + j), p + 5 + 25 * j)))
                return r;
        }
        o->len += HEADER + 5 + 25 * n;
        if ((r = put1(o, VERSION)) || (r = put1(o, T_TUPLE)) || (r = put_uvarint(o, (uint64_t)n)))
            return r;
        for (Py_ssize_t j = 0; j < n; j++) {
            if ((r = enc(o, PyTuple_GET_ITEM(PyList_GET_ITEM(evs, i + j), 5), 1)))
                return r;
        }
    }
    uint64_t len = (uint64_t)(o->len - start - HEADER);
    memcpy(o->buf + start, &len, 8);
    return 0;
}

/* encode_queued(queued, batch_max, limit) -> bytes | None: scheduler/framing.py's
 * encode_queued, the same frames (a batch's tuple of 8 or more items is never packed here, as
 * Python's encoder may pack it: the decoder reads both): frames already encoded (bytes) as they are, each run of small
 * message events between them as batch frames of up to batch_max (a lone one as a message
 * frame). None if any event or item is not for this path (the caller's Python does it all). */
static PyObject *c_encode_queued(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "encode_queued(list, batch_max, limit)");
        return NULL;
    }
    PyObject *q = args[0];
    Py_ssize_t batch_max = PyLong_AsSsize_t(args[1]);
    if (batch_max == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (batch_max < 1 || batch_max > 0xFFFFFFFFLL)
        Py_RETURN_NONE;
    Out o;
    if (out_init(&o, limit) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(q), run = 0;
    int r = 0;
    for (Py_ssize_t i = 0; i <= n && !r; i++) {
        PyObject *x = i < n ? PyList_GET_ITEM(q, i) : NULL;
        if (x != NULL && !PyBytes_CheckExact(x)) {
            if (++run == batch_max) {
                r = write_run(&o, q, i + 1 - run, run);
                run = 0;
            }
            continue;
        }
        if (run) {
            r = write_run(&o, q, i - run, run);
            run = 0;
        }
        if (x != NULL && !r)
            r = putn(&o, PyBytes_AS_STRING(x), PyBytes_GET_SIZE(x));
    }
    return finish(&o, r);
}

/* small(item) -> bool: scheduler/framing.py's small_item, the same answer: an atom (an int of
 * 64 bits, a float, a boolean, None, a pid, a string or symbol name of at most 256 characters)
 * or a proper cons list or a tuple of at most 8 atoms. */
static int small_atom(PyObject *x) {
    PyTypeObject *t = Py_TYPE(x);
    if (t == &PyLong_Type) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
        (void)v;
        return !overflow;
    }
    if ((PyObject *)t == SymType) {
        PyObject *name = slot(x, off_name, s_name);
        if (name == NULL)
            return -1;
        int ok = PyUnicode_CheckExact(name) && PyUnicode_GET_LENGTH(name) <= 256;
        Py_DECREF(name);
        return ok;
    }
    if (t == &PyUnicode_Type)
        return PyUnicode_GET_LENGTH(x) <= 256;
    return t == &PyFloat_Type || x == Py_None || (PyObject *)t == PidType || x == LispTrue || x == LispFalse ||
           t == &PyBool_Type;
}

/* 1 if x is small (c_small's answer), 0 if not, -1 with a Python error set. */
static int is_small(PyObject *x) {
    PyTypeObject *t = Py_TYPE(x);
    int ok;
    if ((PyObject *)t == ConsType) {
        int n = 0;
        PyObject *c = x;
        Py_INCREF(c);
        ok = 1;
        while ((PyObject *)Py_TYPE(c) == ConsType) {
            PyObject *h = n < 8 ? slot(c, off_head, s_head) : NULL;
            if (h == NULL) {
                ok = n < 8 ? -1 : 0;
                break;
            }
            ok = small_atom(h);
            Py_DECREF(h);
            if (ok != 1)
                break;
            PyObject *tl = slot(c, off_tail, s_tail);
            Py_DECREF(c);
            c = tl;
            if (c == NULL) {
                ok = -1;
                break;
            }
            n++;
        }
        if (ok == 1)
            ok = c == Py_None;
        Py_XDECREF(c);
    } else if (t == &PyTuple_Type) {
        Py_ssize_t n = PyTuple_GET_SIZE(x);
        ok = n <= 8;
        for (Py_ssize_t i = 0; ok == 1 && i < n; i++)
            ok = small_atom(PyTuple_GET_ITEM(x, i));
    } else
        ok = small_atom(x);
    return ok;
}

static PyObject *c_small(PyObject *self, PyObject *x) {
    int ok = is_small(x);
    if (ok < 0)
        return NULL;
    return PyBool_FromLong(ok);
}

/* queue_next(seqs, dest, skey, msg, procs, loc, moved, links, dead, sid) -> link | None:
 * scheduler/routing.py send_from's fast path with the link up, the same checks in the same
 * order: `dest` (a Pid) is not in `procs`, the pair is numbered (`seqs` has dest's key), the
 * scheduler it was last seen on (`loc`, else `moved`, else dest.node) has a link in `links` and
 * is neither `sid` nor in `dead`, the header can be written (dest.node < 4096, 0 <= key < 2**64)
 * and `msg` is small. Then the pair's next number is taken and ("ev", dest, skey, seq, "m", msg)
 * appended to the link's `out`, and the link is returned (its byte count is the caller's);
 * None, with nothing changed, when any check fails. */
static PyObject *s_out, *s_ev, *s_m, *One;
static PyTypeObject *OutType;
static Py_ssize_t off_out = -1;

static PyObject *c_queue_next(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "queue_next(seqs, dest, skey, msg, procs, loc, moved, links, dead, sid)");
        return NULL;
    }
    PyObject *seqs = args[0], *dest = args[1], *skey = args[2], *msg = args[3], *procs = args[4], *loc = args[5],
             *moved = args[6], *links = args[7], *dead = args[8], *sid = args[9];
    if (!PyDict_CheckExact(seqs) || !PyDict_CheckExact(procs) || !PyDict_CheckExact(loc) || !PyDict_CheckExact(moved) ||
        !PyDict_CheckExact(links) || !PyAnySet_CheckExact(dead) || (PyObject *)Py_TYPE(dest) != PidType)
        Py_RETURN_NONE;
    PyObject *key = slot(dest, off_key, s_key);
    if (key == NULL)
        return NULL;
    PyObject *node = NULL, *k = NULL, *out = NULL, *ev = NULL, *next = NULL, *result = NULL;
    int r;
    PyObject *seq = PyDict_GetItemWithError(seqs, key); /* borrowed, held below */
    if (seq == NULL)
        goto none_or_error;
    Py_INCREF(seq);
    if ((r = PyDict_Contains(procs, key)) != 0)
        goto none_or_error_r;
    node = slot(dest, off_node, s_node);
    if (node == NULL)
        goto error;
    k = PyDict_GetItemWithError(loc, key);
    if (k == NULL) {
        if (PyErr_Occurred())
            goto error;
        k = PyDict_GetItemWithError(moved, key);
        if (k == NULL) {
            if (PyErr_Occurred())
                goto error;
            k = node;
        }
    }
    Py_INCREF(k);
    PyObject *link = PyDict_GetItemWithError(links, k); /* borrowed: links holds it */
    if (link == NULL)
        goto none_or_error;
    if ((r = PyObject_RichCompareBool(k, sid, Py_EQ)) != 0 || (r = PySet_Contains(dead, k)) != 0)
        goto none_or_error_r;
    if (!PyLong_CheckExact(node) || !PyLong_CheckExact(key))
        goto none;
    int overflow;
    long long nd = PyLong_AsLongLongAndOverflow(node, &overflow);
    if (overflow > 0 || (overflow == 0 && nd >= 4096))
        goto none;
    if (nd == -1 && PyErr_Occurred())
        goto error;
    unsigned long long uk = PyLong_AsUnsignedLongLong(key);
    if (uk == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            goto error;
        PyErr_Clear(); /* negative, or past 64 bits */
        goto none;
    }
    if ((r = is_small(msg)) != 1)
        goto none_or_error_neg;
    if (Py_TYPE(link) != OutType) { /* the link's `out` slot, found once per class */
        PyObject *d = _PyType_Lookup(Py_TYPE(link), s_out);
        off_out = -1;
        if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) && PyType_IsSubtype(Py_TYPE(link), PyDescr_TYPE(d)) &&
            ((PyMemberDescrObject *)d)->d_member->type == OBJECT_EX_MEMBER)
            off_out = ((PyMemberDescrObject *)d)->d_member->offset;
        /* held, not borrowed: a class freed and another made at its address must not be taken
         * for it (the offset of another class's slot would be read) */
        Py_INCREF(Py_TYPE(link));
        Py_XSETREF(OutType, Py_TYPE(link));
    }
    out = slot(link, off_out, s_out);
    if (out == NULL)
        goto error;
    if (!PyList_CheckExact(out))
        goto none;
    ev = PyTuple_Pack(6, s_ev, dest, skey, seq, s_m, msg);
    next = ev ? PyNumber_Add(seq, One) : NULL;
    if (next == NULL || PyDict_SetItem(seqs, key, next) < 0 || PyList_Append(out, ev) < 0)
        goto error;
    Py_INCREF(link);
    result = link;
    goto done;
none_or_error_neg:
    if (r < 0)
        goto error;
    goto none;
none_or_error_r:
    if (r < 0)
        goto error;
    goto none;
none_or_error:
    if (PyErr_Occurred())
        goto error;
none:
    Py_INCREF(Py_None);
    result = Py_None;
    goto done;
error:
    result = NULL;
done:
    Py_DECREF(key);
    Py_XDECREF(seq);
    Py_XDECREF(node);
    Py_XDECREF(k);
    Py_XDECREF(out);
    Py_XDECREF(ev);
    Py_XDECREF(next);
    return result;
}

/* runs(payload, start, n) -> list: the n message headers (mark u8, receiver's key, sender's key,
 * number: u64 each, little-endian, 25 bytes) from payload[start:] as runs of consecutive
 * headers that only count up: tuples (mark, key, skey, seq, count), where a run's k-th header
 * is (mark, key, skey, seq + k) for the mark 0xF1 (numbered) and (mark, key, skey, seq) for any
 * other. scheduler/framing.py's py_runs gives the same list; ValueError if the headers do not
 * fit in the payload (the caller checked that they do). */
static PyObject *c_runs(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "runs(payload, start, n)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = NULL;
    if (start < 0 || n < 0 || n > (view.len - start) / 25 || start > view.len) {
        PyErr_SetString(PyExc_ValueError, "runs: the headers do not fit in the payload");
        goto done;
    }
    out = PyList_New(0);
    const unsigned char *p = (const unsigned char *)view.buf + start;
    Py_ssize_t i = 0;
    while (out != NULL && i < n) {
        unsigned char mark = p[25 * i];
        uint64_t key, skey, seq, k2, s2, q2;
        memcpy(&key, p + 25 * i + 1, 8);
        memcpy(&skey, p + 25 * i + 9, 8);
        memcpy(&seq, p + 25 * i + 17, 8);
        uint64_t count = 1;
        for (Py_ssize_t j = i + 1; j < n; j++, count++) {
            const unsigned char *h = p + 25 * j;
            memcpy(&k2, h + 1, 8);
            memcpy(&s2, h + 9, 8);
            memcpy(&q2, h + 17, 8);
            uint64_t want = seq;
            if (mark == 0xF1) {
                if (seq > UINT64_MAX - count)
                    break; /* (past 64 bits: Python's numbers do not wrap) */
                want = seq + count;
            }
            if (h[0] != mark || k2 != key || s2 != skey || q2 != want)
                break;
        }
        PyObject *run = Py_BuildValue("(BKKKK)", mark, (unsigned long long)key, (unsigned long long)skey,
                                      (unsigned long long)seq, (unsigned long long)count);
        if (run == NULL || PyList_Append(out, run) < 0)
            Py_CLEAR(out);
        Py_XDECREF(run);
        i += (Py_ssize_t)count;
    }
done:
    PyBuffer_Release(&view);
    return out;
}

/* ---- decoding ---------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    Py_ssize_t pos, end;
} In;

/* NULL with no error set: not for this path (Python decodes the message). */
static int get_uvarint(In *in, uint64_t *v) {
    uint64_t result = 0;
    int shift = 0;
    while (1) {
        if (in->pos >= in->end || shift >= 64)
            return -1;
        unsigned char b = in->p[in->pos++];
        if (shift == 63 && (b & 0x7F) > 1)
            return -1; /* past 64 bits: Python's decoder keeps the whole value (and refuses it) */
        result |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80)
            break;
        shift += 7;
    }
    *v = result;
    return 0;
}

static PyObject *dec(In *in, int depth);

static PyObject *dec_text(In *in, int tag) {
    uint64_t n;
    if (get_uvarint(in, &n) || n > (uint64_t)(in->end - in->pos))
        return NULL;
    PyObject *s = PyUnicode_DecodeUTF8((const char *)in->p + in->pos, (Py_ssize_t)n, "surrogatepass");
    if (s == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            PyErr_Clear(); /* Python's decoder says it */
        return NULL;
    }
    in->pos += (Py_ssize_t)n;
    if (tag == T_STR)
        return s;
    PyObject *y = PyDict_GetItemWithError(Symbols, s);
    if (y != NULL) {
        Py_INCREF(y);
        Py_DECREF(s);
        return y;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(s);
        return NULL;
    }
    y = PyObject_CallOneArg(Intern, s);
    Py_DECREF(s);
    return y;
}

static PyObject *dec_pid(In *in) {
    if (in->end - in->pos < 6)
        return NULL;
    PyObject *raw = PyBytes_FromStringAndSize((const char *)in->p + in->pos, 6);
    if (raw == NULL)
        return NULL;
    PyObject *y = PyDict_GetItemWithError(Pids, raw);
    if (y != NULL) {
        Py_INCREF(y);
        Py_DECREF(raw);
        in->pos += 6;
        return y;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(raw);
        return NULL;
    }
    uint16_t node;
    uint32_t num;
    memcpy(&node, in->p + in->pos, 2);
    memcpy(&num, in->p + in->pos + 2, 4);
    PyObject *a[2];
    a[0] = PyLong_FromLong(node);
    a[1] = a[0] ? PyLong_FromUnsignedLong(num) : NULL;
    if (a[1] == NULL) {
        Py_XDECREF(a[0]);
        Py_DECREF(raw);
        return NULL;
    }
    y = PyObject_Vectorcall(PidType, a, 2, NULL);
    Py_DECREF(a[0]);
    Py_DECREF(a[1]);
    if (y != NULL) {
        if (PyDict_GET_SIZE(Pids) >= CacheMax)
            PyDict_Clear(Pids);
        if (PyDict_SetItem(Pids, raw, y) < 0) {
            Py_DECREF(y);
            y = NULL;
        }
    }
    Py_DECREF(raw);
    in->pos += 6;
    return y;
}

static PyObject *dec_cons(In *in, Py_ssize_t n, int depth) {
    /* n heads, then the tail; built from the end */
    PyObject *small[16];
    PyObject **heads = small;
    if (n > 16) {
        heads = PyMem_Malloc(n * sizeof(PyObject *));
        if (heads == NULL)
            return PyErr_NoMemory();
    }
    Py_ssize_t got = 0;
    PyObject *v = NULL;
    for (; got < n; got++) {
        heads[got] = dec(in, depth + 1);
        if (heads[got] == NULL)
            goto done;
    }
    v = dec(in, depth + 1);
    for (Py_ssize_t i = n - 1; v != NULL && i >= 0; i--) {
        PyObject *a[2] = {heads[i], v};
        PyObject *c = PyObject_Vectorcall(ConsType, a, 2, NULL);
        Py_DECREF(v);
        v = c;
    }
done:
    for (Py_ssize_t i = 0; i < got; i++)
        Py_DECREF(heads[i]);
    if (heads != small)
        PyMem_Free(heads);
    return v;
}

static PyObject *dec(In *in, int depth) {
    if (depth > MAX_DEPTH || in->pos >= in->end)
        return NULL;
    unsigned char tag = in->p[in->pos++];
    if (tag >= 0x80)
        return PyLong_FromLong((long)tag - 0x80 + SMALL_MIN);
    switch (tag) {
    case T_NONE:
        Py_RETURN_NONE;
    case T_PTRUE:
        Py_RETURN_TRUE;
    case T_PFALSE:
        Py_RETURN_FALSE;
    case T_TRUE:
        Py_INCREF(LispTrue);
        return LispTrue;
    case T_FALSE:
        Py_INCREF(LispFalse);
        return LispFalse;
    case T_I32: {
        int32_t w;
        if (in->end - in->pos < 4)
            return NULL;
        memcpy(&w, in->p + in->pos, 4);
        in->pos += 4;
        return PyLong_FromLong(w);
    }
    case T_I64: {
        int64_t w;
        if (in->end - in->pos < 8)
            return NULL;
        memcpy(&w, in->p + in->pos, 8);
        in->pos += 8;
        return PyLong_FromLongLong(w);
    }
    case T_FLOAT: {
        double d;
        if (in->end - in->pos < 8)
            return NULL;
        memcpy(&d, in->p + in->pos, 8);
        in->pos += 8;
        return PyFloat_FromDouble(d);
    }
    case T_STR:
    case T_SYM:
        return dec_text(in, tag);
    case T_PID:
        return dec_pid(in);
    case T_TUPLE:
    case T_LIST:
    case T_CONS: {
        uint64_t n;
        if (get_uvarint(in, &n) || n > (uint64_t)(in->end - in->pos)) /* each child takes a byte */
            return NULL;
        if (tag == T_CONS)
            return dec_cons(in, (Py_ssize_t)n, depth);
        PyObject *seq = tag == T_TUPLE ? PyTuple_New((Py_ssize_t)n) : PyList_New((Py_ssize_t)n);
        if (seq == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < (Py_ssize_t)n; i++) {
            PyObject *y = dec(in, depth + 1);
            if (y == NULL) {
                Py_DECREF(seq);
                return NULL;
            }
            if (tag == T_TUPLE)
                PyTuple_SET_ITEM(seq, i, y);
            else
                PyList_SET_ITEM(seq, i, y);
        }
        return seq;
    }
    default:
        return NULL; /* a kind for Python's decoder */
    }
}

/* decode(data) -> value | NotImplemented: the term after the VERSION byte, which the caller has
 * checked, with nothing after it. */
static PyObject *c_decode(PyObject *self, PyObject *data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    In in = {(const unsigned char *)view.buf, 1, view.len};
    PyObject *v = view.len >= 1 ? dec(&in, 0) : NULL;
    if (v != NULL && in.pos != in.end)
        Py_CLEAR(v);
    PyBuffer_Release(&view);
    if (v == NULL && !PyErr_Occurred())
        Py_RETURN_NOTIMPLEMENTED;
    return v;
}

static PyObject *c_setup(PyObject *self, PyObject *args) {
    PyObject *cons, *sym, *pid, *t, *f, *syms, *intern, *pids;
    Py_ssize_t cache_max;
    if (!PyArg_ParseTuple(args, "OOOOOO!OO!n", &cons, &sym, &pid, &t, &f, &PyDict_Type, &syms, &intern,
                          &PyDict_Type, &pids, &cache_max))
        return NULL;
    PyObject **slots[] = {&ConsType, &SymType, &PidType, &LispTrue, &LispFalse, &Symbols, &Intern, &Pids};
    PyObject *vals[] = {cons, sym, pid, t, f, syms, intern, pids};
    for (int i = 0; i < 8; i++) {
        Py_INCREF(vals[i]);
        Py_XSETREF(*slots[i], vals[i]);
    }
    CacheMax = cache_max;
    off_head = slot_offset(cons, s_head);
    off_tail = slot_offset(cons, s_tail);
    off_name = slot_offset(sym, s_name);
    off_key = slot_offset(pid, s_key);
    off_node = slot_offset(pid, s_node);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", c_setup, METH_VARARGS, "setup(Cons, Sym, Pid, TRUE, FALSE, symbols, intern, pid cache, cache max)"},
    {"encode", (PyCFunction)(void (*)(void))c_encode, METH_FASTCALL, "encode(obj, limit, framed) -> bytes | None"},
    {"encode_queued", (PyCFunction)(void (*)(void))c_encode_queued, METH_FASTCALL,
     "encode_queued(queued, batch_max, limit) -> the frames | None"},
    {"runs", (PyCFunction)(void (*)(void))c_runs, METH_FASTCALL,
     "runs(payload, start, n) -> [(mark, key, skey, seq, count)]: a batch's headers as runs"},
    {"queue_next", (PyCFunction)(void (*)(void))c_queue_next, METH_FASTCALL,
     "queue_next(seqs, dest, skey, msg, procs, loc, moved, links, dead, sid) -> link | None (scheduler/routing.py)"},
    {"small", c_small, METH_O, "small(item) -> bool: a small message (scheduler/framing.py)"},
    {"decode", c_decode, METH_O, "decode(data) -> value | NotImplemented"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ccodec", "The term codec's common terms in C.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__ccodec(void) {
    s_head = PyUnicode_InternFromString("head");
    s_tail = PyUnicode_InternFromString("tail");
    s_name = PyUnicode_InternFromString("name");
    s_key = PyUnicode_InternFromString("key");
    s_node = PyUnicode_InternFromString("node");
    s_out = PyUnicode_InternFromString("out");
    s_ev = PyUnicode_InternFromString("ev");
    s_m = PyUnicode_InternFromString("m");
    One = PyLong_FromLong(1);
    if (!s_head || !s_tail || !s_name || !s_key || !s_node || !s_out || !s_ev || !s_m || !One)
        return NULL;
    return PyModule_Create(&module);
}
