/* lispvm.vm._speedups: the cons cell and the list walkers in C.
 *
 * Owns: `Cons`, a drop-in for the pure-Python class of vm/values.py (read-only `head` and
 * `tail`, construction through vectorcall, equality, hashing, printing and pickling delegated to
 * the Python functions values.py registers with `_register`), and the list functions that gain
 * from running without a Python frame per cell: from_list, to_pylist, reverse, append, length,
 * nth.
 *
 * Must never: recurse in C along a list's spine (lists are a million cells long: deallocation
 * goes through CPython's trashcan, every walker is a loop), leave a cell's head or tail NULL
 * (the walkers and the members read them without checks), or untrack a cell that may be part of
 * a reference cycle.
 *
 * The collector: a cell is tracked by CPython's cyclic GC only when its head or its tail may be
 * tracked, the rule CPython applies to tuples (_PyObject_GC_MAY_BE_TRACKED): objects of non-GC
 * types (int, float, str, None), exact tuples the collector has untracked and untracked cells
 * cannot hold a reference back to the cell, so a list of numbers or strings is never walked by
 * the collector. values.py adds a few "atom" types whose instances hold only such values (the
 * symbol, the booleans, pids and refs): a cell holding one is untracked too.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *head;
    PyObject *tail;
} ConsObject;

static PyTypeObject ConsType;
static PyTypeObject ConsIterType;

#define Cons_Check(o) Py_IS_TYPE((o), &ConsType)
#define HEAD(o) (((ConsObject *)(o))->head)
#define TAIL(o) (((ConsObject *)(o))->tail)

/* What values.py registers (module state of a single-phase module: one interpreter). */
static PyObject *fn_eq = NULL;       /* lisp_eq(a, b) -> bool */
static PyObject *fn_hash = NULL;     /* lisp_hash(x) -> int */
static PyObject *fn_repr = NULL;     /* to_repr(x) -> str */
static PyObject *fn_rebuild = NULL;  /* _rebuild_list(items, last): the unpickling side */

#define MAX_ATOMS 8
static PyTypeObject *atom_types[MAX_ATOMS];
static int n_atoms = 0;

/* Whether `o` may be (now or later) tracked by the cyclic GC: CPython's tuple rule, plus cells
 * and the registered atom types. */
static inline int
may_be_tracked(PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    if (!PyType_IS_GC(t)) {
        return 0;
    }
    if (t == &ConsType || t == &PyTuple_Type) {
        return PyObject_GC_IsTracked(o);
    }
    for (int i = 0; i < n_atoms; i++) {
        if (t == atom_types[i]) {
            return 0;
        }
    }
    if (t->tp_is_gc != NULL && !t->tp_is_gc(o)) {
        return 0;  /* a static type object */
    }
    return 1;
}

/* Freed cells kept for the next ones, as CPython keeps tuples: a list program frees and makes
 * cells at the same pace (a filter, a merge, a map drop one list while building the next), and
 * a cell from this stack costs neither the allocator nor the collector's count of allocations
 * (a cell taken here was never given back to it, so the count stays balanced). Holds at most
 * FREE_MAX cells (48 bytes each, 6 MB at most): enough for a merge or a reverse of a 100,000-cell
 * list, whose cells a 16,384 stack sent back to the allocator (mergesort of 100,000 integers:
 * 3% fewer instructions); builds that count or share references between threads do without
 * it. A cell here is untracked, with no references: its `tail` links the stack. */
#if !defined(Py_REF_DEBUG) && !defined(Py_GIL_DISABLED) && !defined(Py_TRACE_REFS)
#define FREE_MAX 131072
static ConsObject *free_cells = NULL;
static int n_free = 0;
#endif

static inline ConsObject *
cons_alloc(void)
{
#ifdef FREE_MAX
    ConsObject *op = free_cells;
    if (op != NULL) {
        free_cells = (ConsObject *)op->tail;
        n_free--;
        return (ConsObject *)PyObject_Init((PyObject *)op, &ConsType);
    }
#endif
    return PyObject_GC_New(ConsObject, &ConsType);
}

/* Gives back an untracked cell whose references were released. */
static inline void
cons_free(ConsObject *op)
{
#ifdef FREE_MAX
    if (n_free < FREE_MAX) {
        op->tail = (PyObject *)free_cells;
        free_cells = op;
        n_free++;
        return;
    }
#endif
    PyObject_GC_Del(op);
}

/* A new cell; steals nothing. `tracked_tail` is -1 when unknown, else whether `tail` may be
 * tracked (the builders know it from the cell they made just before). */
static inline PyObject *
cons_make(PyObject *head, PyObject *tail, int tracked_tail)
{
    ConsObject *op = cons_alloc();
    if (op == NULL) {
        return NULL;
    }
    Py_INCREF(head);
    op->head = head;
    Py_INCREF(tail);
    op->tail = tail;
    if (tracked_tail < 0) {
        tracked_tail = may_be_tracked(tail);
    }
    if (tracked_tail || may_be_tracked(head)) {
        PyObject_GC_Track(op);
    }
    return (PyObject *)op;
}

static PyObject *
cons_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"head", "tail", NULL};
    PyObject *head, *tail;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Cons", kwlist, &head, &tail)) {
        return NULL;
    }
    return cons_make(head, tail, -1);
}

static PyObject *
cons_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && n == 2) {
        return cons_make(args[0], args[1], -1);
    }
    /* keywords or a wrong count: the tuple-and-dict path, for its argument errors */
    PyObject *tup = PyTuple_New(n);
    if (tup == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(tup, i, args[i]);
    }
    PyObject *kw = NULL;
    if (kwnames != NULL) {
        kw = PyDict_New();
        if (kw == NULL) {
            Py_DECREF(tup);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            if (PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0) {
                Py_DECREF(tup);
                Py_DECREF(kw);
                return NULL;
            }
        }
    }
    PyObject *r = cons_new((PyTypeObject *)type, tup, kw);
    Py_DECREF(tup);
    Py_XDECREF(kw);
    return r;
}

static int
cons_traverse(ConsObject *op, visitproc visit, void *arg)
{
    Py_VISIT(op->head);
    Py_VISIT(op->tail);
    return 0;
}

/* Breaking a cycle: head and tail become nil rather than NULL, so a finalizer that still sees
 * the cell reads a short list instead of crashing a walker. */
static int
cons_clear(ConsObject *op)
{
    PyObject *h = op->head, *t = op->tail;
    if (h != Py_None) {
        Py_INCREF(Py_None);
        op->head = Py_None;
        Py_DECREF(h);
    }
    if (t != Py_None) {
        Py_INCREF(Py_None);
        op->tail = Py_None;
        Py_DECREF(t);
    }
    return 0;
}

static void
cons_dealloc(ConsObject *op)
{
    PyObject_GC_UnTrack(op);
    /* the trashcan defers cells past a small nesting depth (lists nested through their heads) */
    Py_TRASHCAN_BEGIN(op, cons_dealloc)
    PyObject *tail = op->tail;
    Py_XDECREF(op->head);
    cons_free(op);
    /* The spine in a loop: each following cell that only this one held (nobody else can see
     * it) is freed here, and the walk goes on with its tail, so a long list does not nest. */
    while (tail != NULL && Cons_Check(tail) && Py_REFCNT(tail) == 1) {
        ConsObject *c = (ConsObject *)tail;
        tail = c->tail;
#if defined(Py_REF_DEBUG) || defined(Py_GIL_DISABLED)
        /* builds that count references or share them between threads: the public way, the
         * cell cut from its tail and released (it then ends in nil and does not recurse) */
        Py_INCREF(Py_None);
        c->tail = Py_None;
        Py_DECREF(c);
#else
        /* what Py_DECREF to zero does in a release build (call tp_dealloc), inlined */
        Py_SET_REFCNT(c, 0);
        PyObject_GC_UnTrack(c);
        Py_XDECREF(c->head);
        cons_free(c);
#endif
    }
    Py_XDECREF(tail);
    Py_TRASHCAN_END
}

static PyObject *
cons_richcompare(PyObject *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || fn_eq == NULL) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *args[2] = {a, b};
    PyObject *r = PyObject_Vectorcall(fn_eq, args, 2, NULL);
    if (r == NULL || op == Py_EQ) {
        return r;
    }
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (t < 0) {
        return NULL;
    }
    return PyBool_FromLong(!t);
}

static Py_hash_t
cons_hash(PyObject *self)
{
    if (fn_hash == NULL) {
        PyErr_SetString(PyExc_TypeError, "lispvm.vm._speedups: values.py registered no hash");
        return -1;
    }
    PyObject *r = PyObject_CallOneArg(fn_hash, self);
    if (r == NULL) {
        return -1;
    }
    if (!PyLong_Check(r)) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TypeError, "lisp_hash must return an int");
        return -1;
    }
    /* as CPython's slot for a Python-level __hash__ does */
    Py_hash_t h = PyLong_AsSsize_t(r);
    if (h == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        h = PyLong_Type.tp_hash(r);
    }
    else if (h == -1) {
        h = -2;
    }
    Py_DECREF(r);
    return h;
}

static PyObject *
cons_repr(PyObject *self)
{
    if (fn_repr == NULL) {
        return PyUnicode_FromFormat("<Cons at %p>", self);
    }
    return PyObject_CallOneArg(fn_repr, self);
}

static PyObject *
cons_iter(PyObject *self)
{
    /* a GC type: an iterator held by a value that the list holds is a cycle the collector must see */
    PyObject *it = (PyObject *)PyObject_GC_New(ConsObject, &ConsIterType);
    if (it == NULL) {
        return NULL;
    }
    Py_INCREF(self);
    ((ConsObject *)it)->head = self;  /* the cell whose head comes next */
    ((ConsObject *)it)->tail = NULL;
    PyObject_GC_Track(it);
    return it;
}

/* The elements of the chain from `x` as a new list; *last gets the value after the last cell
 * (borrowed: nil for a proper list). Two passes: counting first sizes the list once. */
static PyObject *
heads_of(PyObject *x, PyObject **last)
{
    Py_ssize_t n = 0;
    PyObject *c = x;
    while (Cons_Check(c)) {
        n++;
        c = TAIL(c);
    }
    *last = c;
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        return NULL;
    }
    c = x;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(HEAD(c));
        PyList_SET_ITEM(out, i, HEAD(c));
        c = TAIL(c);
    }
    return out;
}

/* Flat, so that pickling a million-element list does not recurse a million deep. */
static PyObject *
cons_reduce(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (fn_rebuild == NULL) {
        PyErr_SetString(PyExc_TypeError, "lispvm.vm._speedups: values.py registered no rebuild");
        return NULL;
    }
    PyObject *last;
    PyObject *items = heads_of(self, &last);
    if (items == NULL) {
        return NULL;
    }
    return Py_BuildValue("O(NO)", fn_rebuild, items, last);
}

static PyMemberDef cons_members[] = {
    {"head", T_OBJECT_EX, offsetof(ConsObject, head), READONLY, "the first element"},
    {"tail", T_OBJECT_EX, offsetof(ConsObject, tail), READONLY,
     "the rest: another Cons, None (nil) or any value (an improper list)"},
    {NULL},
};

static PyMethodDef cons_methods[] = {
    {"__reduce__", (PyCFunction)cons_reduce, METH_NOARGS, "flat pickling: (rebuild, (items, last))"},
    {NULL},
};

static PyTypeObject ConsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lispvm.vm._speedups.Cons",
    .tp_doc = "A cons cell. Lists are chains of cells ending in None (nil).",
    .tp_basicsize = sizeof(ConsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = cons_new,
    .tp_vectorcall = cons_vectorcall,
    .tp_dealloc = (destructor)cons_dealloc,
    .tp_traverse = (traverseproc)cons_traverse,
    .tp_clear = (inquiry)cons_clear,
    .tp_richcompare = cons_richcompare,
    .tp_hash = cons_hash,
    .tp_repr = cons_repr,
    .tp_iter = cons_iter,
    .tp_members = cons_members,
    .tp_methods = cons_methods,
};

/* --- iteration over a list's elements (stops at the first non-cell, as the Python class) --- */

static void
consiter_dealloc(ConsObject *it)
{
    PyObject_GC_UnTrack(it);
    Py_XDECREF(it->head);
    PyObject_GC_Del(it);
}

static int
consiter_traverse(ConsObject *it, visitproc visit, void *arg)
{
    Py_VISIT(it->head);
    return 0;
}

static PyObject *
consiter_next(ConsObject *it)
{
    PyObject *c = it->head;
    if (c == NULL) {
        return NULL;
    }
    if (!Cons_Check(c)) {
        it->head = NULL;
        Py_DECREF(c);
        return NULL;
    }
    PyObject *h = HEAD(c);
    Py_INCREF(h);
    it->head = TAIL(c);
    Py_INCREF(it->head);
    Py_DECREF(c);
    return h;
}

static PyTypeObject ConsIterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lispvm.vm._speedups.ConsIterator",
    .tp_basicsize = sizeof(ConsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)consiter_dealloc,
    .tp_traverse = (traverseproc)consiter_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)consiter_next,
};

/* --- module functions ---------------------------------------------------------------------- */

/* Puts a new cell holding `h` in front of *out, whose reference the cell takes over. *tracked
 * says whether a cell behind it is tracked by the collector, and becomes whether this one is
 * (a cell in front of a tracked one is tracked: it can reach what that one reaches). On no
 * memory: -1, with *out released. `h` must stay alive across the allocation (which may run a
 * collection, so finalizers): the caller holds it. */
static int
push_cell(PyObject *h, PyObject **out, int *tracked)
{
    ConsObject *op = cons_alloc();
    if (op == NULL) {
        Py_CLEAR(*out);
        return -1;
    }
    op->head = Py_NewRef(h);
    op->tail = *out;
    *tracked = *tracked || may_be_tracked(h);
    if (*tracked) {
        PyObject_GC_Track(op);
    }
    *out = (PyObject *)op;
    return 0;
}

/* Builds the list items[0..n) ending in `tail`, from the end. `items` must stay valid while
 * cells are allocated: a C array the caller owns or the items of a tuple (never a Python list,
 * which a finalizer run by an allocation could change). */
static PyObject *
build(PyObject *const *items, Py_ssize_t n, PyObject *tail)
{
    PyObject *out = Py_NewRef(tail);
    int tracked = may_be_tracked(tail);
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        if (push_cell(items[i], &out, &tracked) < 0) {
            return NULL;
        }
    }
    return out;
}

PyDoc_STRVAR(from_list_doc,
"from_list(items, tail=None)\n--\n\n"
"A Lisp list of the elements of a Python sequence or iterable, ending in `tail`.");

static PyObject *
sp_from_list(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "from_list takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *seq = args[0];
    PyObject *tail = nargs == 2 ? args[1] : Py_None;
    if (PyTuple_CheckExact(seq)) {
        return build(((PyTupleObject *)seq)->ob_item, PyTuple_GET_SIZE(seq), tail);
    }
    /* lists (a snapshot: finalizers run by an allocation could change a list), ranges,
     * iterators, generators: a tuple we own */
    PyObject *tup = PySequence_Tuple(seq);
    if (tup == NULL) {
        return NULL;
    }
    PyObject *r = build(((PyTupleObject *)tup)->ob_item, PyTuple_GET_SIZE(tup), tail);
    Py_DECREF(tup);
    return r;
}

PyDoc_STRVAR(to_pylist_doc,
"to_pylist(x)\n--\n\n"
"The elements of a proper Lisp list as a Python list, or None if `x` is not one.");

static PyObject *
sp_to_pylist(PyObject *Py_UNUSED(module), PyObject *x)
{
    PyObject *last;
    PyObject *items = heads_of(x, &last);
    if (items == NULL) {
        return NULL;
    }
    if (last != Py_None) {
        Py_DECREF(items);
        Py_RETURN_NONE;
    }
    return items;
}

PyDoc_STRVAR(reverse_doc,
"reverse(x)\n--\n\n"
"The proper list `x` reversed; ValueError if `x` is not a proper list.");

static PyObject *
sp_reverse(PyObject *Py_UNUSED(module), PyObject *x)
{
    PyObject *out = Py_NewRef(Py_None);
    int tracked = 0;
    PyObject *c = x;
    while (Cons_Check(c)) {
        if (push_cell(HEAD(c), &out, &tracked) < 0) {  /* (x, held by the caller, holds the heads) */
            return NULL;
        }
        c = TAIL(c);
    }
    if (c != Py_None) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_ValueError, "not a proper list");
        return NULL;
    }
    return out;
}

/* The heads of the proper list `x` into a new C array (borrowed references: `x` keeps them
 * alive); *n gets the count. NULL with ValueError if `x` is not a proper list. */
static PyObject **
borrowed_heads(PyObject *x, Py_ssize_t *n)
{
    Py_ssize_t k = 0;
    PyObject *c = x;
    while (Cons_Check(c)) {
        k++;
        c = TAIL(c);
    }
    if (c != Py_None) {
        PyErr_SetString(PyExc_ValueError, "not a proper list");
        return NULL;
    }
    PyObject **buf = PyMem_Malloc((k ? k : 1) * sizeof(PyObject *));
    if (buf == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    c = x;
    for (Py_ssize_t i = 0; i < k; i++) {
        buf[i] = HEAD(c);
        c = TAIL(c);
    }
    *n = k;
    return buf;
}

PyDoc_STRVAR(append_doc,
"append(*lists)\n--\n\n"
"The lists joined; the last argument is shared, not copied (and may be any value). "
"ValueError(i) if argument i (not the last) is not a proper list (the rightmost such i).");

static PyObject *
sp_append(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 0) {
        Py_RETURN_NONE;
    }
    /* every argument but the last must be a proper list: check them all before building,
     * from the right as the builder goes (the error names the rightmost bad one) */
    for (Py_ssize_t a = nargs - 2; a >= 0; a--) {
        PyObject *c = args[a];
        while (Cons_Check(c)) {
            c = TAIL(c);
        }
        if (c != Py_None) {
            PyObject *i = PyLong_FromSsize_t(a);
            if (i != NULL) {
                PyErr_SetObject(PyExc_ValueError, i);
                Py_DECREF(i);
            }
            return NULL;
        }
    }
    PyObject *out = args[nargs - 1];
    Py_INCREF(out);
    for (Py_ssize_t a = nargs - 2; a >= 0; a--) {
        if (args[a] == Py_None) {
            continue;
        }
        Py_ssize_t n;
        PyObject **heads = borrowed_heads(args[a], &n);
        if (heads == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyObject *next = build(heads, n, out);
        PyMem_Free(heads);
        Py_DECREF(out);
        if (next == NULL) {
            return NULL;
        }
        out = next;
    }
    return out;
}

PyDoc_STRVAR(length_doc,
"length(x)\n--\n\n"
"The number of cells of the proper list `x` (0 for nil), or None if `x` is not one.");

static PyObject *
sp_length(PyObject *Py_UNUSED(module), PyObject *x)
{
    Py_ssize_t n = 0;
    while (Cons_Check(x)) {
        n++;
        x = TAIL(x);
    }
    if (x != Py_None) {
        Py_RETURN_NONE;
    }
    return PyLong_FromSsize_t(n);
}

PyDoc_STRVAR(nth_doc,
"nth(xs, i)\n--\n\n"
"Element `i` (an int >= 0) of the list `xs`; IndexError when the list is shorter, "
"ValueError when the walk ends at something other than nil.");

static PyObject *
sp_nth(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "nth takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (i < 0) {
        PyErr_SetString(PyExc_IndexError, "negative index");
        return NULL;
    }
    PyObject *c = args[0];
    while (Cons_Check(c)) {
        if (i == 0) {
            Py_INCREF(HEAD(c));
            return HEAD(c);
        }
        i--;
        c = TAIL(c);
    }
    PyErr_SetNone(c == Py_None ? PyExc_IndexError : PyExc_ValueError);
    return NULL;
}

/* The `n` characters of `part` written at `at` into the new string `r` (its kind and data
 * given): a copy of bytes where both have the same kind (most joins), else CPython's
 * conversion to the wider kind. */
static inline int
copy_text(PyObject *r, int kind, char *data, Py_ssize_t at, PyObject *part, Py_ssize_t n)
{
    if (PyUnicode_KIND(part) == kind) {
        memcpy(data + at * kind, PyUnicode_DATA(part), (size_t)(n * kind));
        return 0;
    }
    return PyUnicode_CopyCharacters(r, at, part, 0, n) < 0 ? -1 : 0;
}

PyDoc_STRVAR(join_strs_doc,
"join_strs(sep, xs, limit)\n--\n\n"
"The strings of the proper list `xs` joined by the string `sep`, or None when an element is not "
"a string, the list is improper, or the result would pass `limit` characters (the caller's "
"general path then says which).");

static PyObject *
sp_join_strs(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyUnicode_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "join_strs(sep: str, xs, limit: int)");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *sep = args[0];
    Py_ssize_t count = 0, total = 0, seplen = PyUnicode_GET_LENGTH(sep);
    PyObject *c = args[1];
    /* one pass to test and measure (nothing is allocated, so nothing can change the cells) */
    for (; Cons_Check(c); c = TAIL(c)) {
        PyObject *h = HEAD(c);
        if (!PyUnicode_CheckExact(h)) {
            Py_RETURN_NONE;
        }
        total += PyUnicode_GET_LENGTH(h) + (count ? seplen : 0);
        count++;
        if (total > limit) {
            Py_RETURN_NONE;
        }
    }
    if (c != Py_None) {
        Py_RETURN_NONE;
    }
    /* the text written straight into its string (PyUnicode_Join would want a list of the
     * items, made and freed here, and would measure them again). The widest kind any part
     * has is the result's: CPython's strings are canonical, so that is the narrowest that holds
     * every character. */
    Py_UCS4 maxchar = count > 1 ? PyUnicode_MAX_CHAR_VALUE(sep) : 0;
    for (c = args[1]; Cons_Check(c); c = TAIL(c)) {
        Py_UCS4 m = PyUnicode_MAX_CHAR_VALUE(HEAD(c));
        maxchar = m > maxchar ? m : maxchar;
    }
    PyObject *r = PyUnicode_New(total, maxchar);
    if (r == NULL) {
        return NULL;
    }
    /* the caller holds the list, and cells never change, so the walk is the one measured */
    Py_ssize_t at = 0;
    int kind = PyUnicode_KIND(r);
    char *data = PyUnicode_DATA(r);
    c = args[1];
    for (Py_ssize_t i = 0; i < count; i++, c = TAIL(c)) {
        if (i > 0 && seplen > 0 && copy_text(r, kind, data, at, sep, seplen) < 0) {
            Py_DECREF(r);
            return NULL;
        }
        at += i > 0 ? seplen : 0;
        Py_ssize_t n = PyUnicode_GET_LENGTH(HEAD(c));
        if (n > 0 && copy_text(r, kind, data, at, HEAD(c), n) < 0) {
            Py_DECREF(r);
            return NULL;
        }
        at += n;
    }
    return r;
}

/* --- the closure ---------------------------------------------------------------------------
 *
 * `Closure`: vm/values.py's Closure class in C (a prototype, its captured values, the fast
 * tier's function for it, a name), so that making one, which compiled code does for every `fn`
 * it evaluates, runs no Python frame. Attributes read and written as the pure class's slots;
 * `Closure.__new__(Closure)` gives one whose attributes are all None (vm/codec.py fills them);
 * identity equality and hashing; pickled through values.py's _closure without `fast`. Always
 * tracked by the collector: its upvalues and its fast function can lead back to it. */

typedef struct {
    PyObject_HEAD
    PyObject *proto;
    PyObject *upvals;
    PyObject *fast;
    PyObject *name;
} ClosureObject;

static PyTypeObject ClosureType;
static PyObject *fn_closure = NULL;  /* values._closure(proto, upvals, name): the unpickling side */
static PyObject *str_name = NULL;    /* "name" */
static PyObject *str_fast = NULL;    /* "fast" */

/* A prototype's `name` or `fast` read without the generic attribute lookup (a closure is made
 * for every `fn` compiled code evaluates, and the lookup cost more than the rest of the making):
 * vm/lbc.py's Proto keeps them in __slots__, so each is a member descriptor at a fixed offset.
 * The cache holds the type last seen and the offset of its descriptor, valid while the type's
 * version tag is (any change to the class gives it a new one); any other object, an empty slot
 * or a descriptor of another kind takes PyObject_GetAttr, so results and errors are its. */
typedef struct {
    PyObject *name;       /* the attribute (str_name or str_fast) */
    PyTypeObject *type;   /* a strong reference, or NULL */
    unsigned int version;
    Py_ssize_t offset;    /* 0: that type's attribute is not a plain object slot */
} SlotCache;

static SlotCache slot_name = {NULL, NULL, 0, 0};
static SlotCache slot_fast = {NULL, NULL, 0, 0};

static PyObject *
slot_get(SlotCache *sc, PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    if (t != sc->type || !PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG) || t->tp_version_tag != sc->version) {
        PyObject *d = _PyType_Lookup(t, sc->name);  /* borrowed; gives the type a version tag */
        Py_ssize_t offset = 0;
        /* only where getattr would read that slot: a generic lookup, and a descriptor made for
         * t or a base of it (one copied onto an unrelated class has an offset into another layout) */
        if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) && t->tp_getattro == PyObject_GenericGetAttr
                && PyType_IsSubtype(t, PyDescr_TYPE(d))) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            if (m->type == T_OBJECT_EX && !(m->flags & PY_AUDIT_READ) && m->offset > 0) {
                offset = m->offset;
            }
        }
        if (!PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG)) {
            offset = 0;  /* nothing would tell a change: the generic lookup every time */
        }
        Py_INCREF(t);
        Py_XSETREF(sc->type, t);
        sc->version = t->tp_version_tag;
        sc->offset = offset;
    }
    if (sc->offset > 0) {
        PyObject *v = *(PyObject **)((char *)o + sc->offset);
        if (v != NULL) {
            return Py_NewRef(v);
        }
    }
    return PyObject_GetAttr(o, sc->name);
}

/* A new closure; steals nothing. `name` NULL or false: the prototype's name, as the pure
 * class's `name or proto.name`. */
static PyObject *
closure_make(PyTypeObject *type, PyObject *proto, PyObject *upvals, PyObject *name)
{
    PyObject *nm;
    if (name != NULL) {
        int truth = PyObject_IsTrue(name);
        if (truth < 0) {
            return NULL;
        }
        nm = truth ? Py_NewRef(name) : NULL;
    }
    else {
        nm = NULL;
    }
    if (nm == NULL) {
        nm = slot_get(&slot_name, proto);
        if (nm == NULL) {
            return NULL;
        }
    }
    ClosureObject *op = PyObject_GC_New(ClosureObject, type);
    if (op == NULL) {
        Py_DECREF(nm);
        return NULL;
    }
    op->proto = Py_NewRef(proto);
    op->upvals = Py_NewRef(upvals);
    op->fast = Py_NewRef(Py_None);
    op->name = nm;
    PyObject_GC_Track(op);
    return (PyObject *)op;
}

/* Closure.__new__(cls, *args): every attribute None; __init__ fills them. */
static PyObject *
closure_tp_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    ClosureObject *op = (ClosureObject *)type->tp_alloc(type, 0);
    if (op == NULL) {
        return NULL;
    }
    op->proto = Py_NewRef(Py_None);
    op->upvals = Py_NewRef(Py_None);
    op->fast = Py_NewRef(Py_None);
    op->name = Py_NewRef(Py_None);
    return (PyObject *)op;
}

static int
closure_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"proto", "upvals", "name", NULL};
    PyObject *proto, *upvals, *name = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:Closure", kwlist, &proto, &upvals, &name)) {
        return -1;
    }
    int truth = PyObject_IsTrue(name);
    if (truth < 0) {
        return -1;
    }
    PyObject *nm = truth ? Py_NewRef(name) : slot_get(&slot_name, proto);
    if (nm == NULL) {
        return -1;
    }
    ClosureObject *op = (ClosureObject *)self;
    Py_XSETREF(op->proto, Py_NewRef(proto));
    Py_XSETREF(op->upvals, Py_NewRef(upvals));
    Py_XSETREF(op->fast, Py_NewRef(Py_None));
    Py_XSETREF(op->name, nm);
    return 0;
}

static PyObject *
closure_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && (n == 2 || n == 3)) {
        return closure_make((PyTypeObject *)type, args[0], args[1], n == 3 ? args[2] : NULL);
    }
    /* keywords or a wrong count: __new__ and __init__ through a tuple, for their errors */
    PyObject *tup = PyTuple_New(n);
    if (tup == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(tup, i, Py_NewRef(args[i]));
    }
    PyObject *kw = NULL;
    if (kwnames != NULL) {
        kw = PyDict_New();
        for (Py_ssize_t i = 0; kw != NULL && i < PyTuple_GET_SIZE(kwnames); i++) {
            if (PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0) {
                Py_CLEAR(kw);
            }
        }
        if (kw == NULL) {
            Py_DECREF(tup);
            return NULL;
        }
    }
    PyObject *r = closure_tp_new((PyTypeObject *)type, tup, kw);
    if (r != NULL && closure_init(r, tup, kw) < 0) {
        Py_CLEAR(r);
    }
    Py_DECREF(tup);
    Py_XDECREF(kw);
    return r;
}

static int
closure_traverse(ClosureObject *op, visitproc visit, void *arg)
{
    Py_VISIT(op->proto);
    Py_VISIT(op->upvals);
    Py_VISIT(op->fast);
    Py_VISIT(op->name);
    return 0;
}

static int
closure_clear(ClosureObject *op)
{
    Py_CLEAR(op->proto);
    Py_CLEAR(op->upvals);
    Py_CLEAR(op->fast);
    Py_CLEAR(op->name);
    return 0;
}

static void
closure_dealloc(ClosureObject *op)
{
    PyObject_GC_UnTrack(op);
    /* closures nest through their upvalues: the trashcan bounds the C recursion */
    Py_TRASHCAN_BEGIN(op, closure_dealloc)
    closure_clear(op);
    Py_TYPE(op)->tp_free((PyObject *)op);
    Py_TRASHCAN_END
}

static PyObject *
closure_repr(PyObject *self)
{
    PyObject *name = ((ClosureObject *)self)->name;
    if (name == NULL) {
        PyErr_SetString(PyExc_AttributeError, "name");
        return NULL;
    }
    return PyUnicode_FromFormat("#<fn %S>", name);
}

static PyObject *
closure_reduce(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    ClosureObject *op = (ClosureObject *)self;
    if (fn_closure == NULL || op->proto == NULL || op->upvals == NULL || op->name == NULL) {
        PyErr_SetString(PyExc_TypeError, "Closure: cannot pickle this closure");
        return NULL;
    }
    /* `fast` is a Python function of this OS process: the receiver makes its own */
    return Py_BuildValue("O(OOO)", fn_closure, op->proto, op->upvals, op->name);
}

static PyMemberDef closure_members[] = {
    {"proto", T_OBJECT_EX, offsetof(ClosureObject, proto), 0, "the prototype (vm.lbc.Proto)"},
    {"upvals", T_OBJECT_EX, offsetof(ClosureObject, upvals), 0, "the captured values (a tuple)"},
    {"fast", T_OBJECT_EX, offsetof(ClosureObject, fast), 0, "the fast tier's function, or None"},
    {"name", T_OBJECT_EX, offsetof(ClosureObject, name), 0, "the name #<fn NAME> shows"},
    {NULL},
};

static PyMethodDef closure_methods[] = {
    {"__reduce__", (PyCFunction)closure_reduce, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject ClosureType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lispvm.vm._speedups.Closure",
    .tp_basicsize = sizeof(ClosureObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Closure(proto, upvals, name=None)\n--\n\n"
              "A Lisp function: a prototype plus its captured values (upvalues).",
    .tp_traverse = (traverseproc)closure_traverse,
    .tp_clear = (inquiry)closure_clear,
    .tp_dealloc = (destructor)closure_dealloc,
    .tp_repr = closure_repr,
    .tp_members = closure_members,
    .tp_methods = closure_methods,
    .tp_new = closure_tp_new,
    .tp_init = closure_init,
    .tp_vectorcall = closure_vectorcall,
};

PyDoc_STRVAR(closure0_doc,
"closure0(proto)\n--\n\n"
"A closure of a prototype without upvalues, its `fast` the prototype's own compiled function "
"(the fast tier's _mkclosure0).");

static PyObject *
sp_closure0(PyObject *Py_UNUSED(module), PyObject *proto)
{
    PyObject *fast = slot_get(&slot_fast, proto);
    if (fast == NULL) {
        return NULL;
    }
    PyObject *empty = PyTuple_New(0);
    PyObject *c = empty == NULL ? NULL : closure_make(&ClosureType, proto, empty, NULL);
    Py_XDECREF(empty);
    if (c == NULL) {
        Py_DECREF(fast);
        return NULL;
    }
    Py_SETREF(((ClosureObject *)c)->fast, fast);
    return c;
}

/* --- builtins in C, each with its pure definition behind it ---------------------------------
 *
 * str, reverse, append, nth and length as vm/builtins.py registers them when the extension is
 * there: each decides the usual case (strings and machine-size numbers; proper lists) here and
 * hands every other call, unchanged, to the Python definition registered with
 * _register_builtins, so that what those give (results, and every error with its message and
 * kind, a wrong argument count included) is the pure path's by construction. */

static PyObject *fb_str = NULL;      /* vm/builtins.py's b_str, b_reverse, b_append, b_nth, b_length */
static PyObject *fb_reverse = NULL;
static PyObject *fb_append = NULL;
static PyObject *fb_nth = NULL;
static PyObject *fb_length = NULL;
static PyObject *fb_split = NULL;    /* b_str_split (registered after the others, optional) */
static Py_ssize_t max_text = -1;     /* errors.MAX_TEXT: the longest string str may build */

static PyObject *
fallback(PyObject *fb, PyObject *const *args, Py_ssize_t nargs)
{
    if (fb == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups: builtins not registered");
        return NULL;
    }
    return PyObject_Vectorcall(fb, args, nargs, NULL);
}

/* repr of a machine-size int, written here: CPython's int repr allocates a scratch int for
 * its base-10**9 conversion at every call, which is most of what `str` of a small number costs
 * (list/map str of 10,000 ints). The digits are those of repr: an optional '-', no leading
 * zeros. */
static PyObject *
decimal_text(long long v)
{
    char buf[24];
    char *end = buf + sizeof buf, *p = end;
    /* the magnitude as unsigned, so that LLONG_MIN has one */
    unsigned long long m = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + (int)(m % 10));
        m /= 10;
    } while (m != 0);
    if (v < 0) {
        *--p = '-';
    }
    Py_ssize_t n = end - p;
    PyObject *r = PyUnicode_New(n, 127);
    if (r != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(r), p, (size_t)n);
    }
    return r;
}

/* What b_str gives a string, a float or an int of at most 64 bits without its careful walk
 * (the string itself or repr), as a new reference; NULL without an exception for anything else
 * (the caller asks the Python definition), NULL with one on no memory. Ints of 64 bits or more
 * (b_str's bound is 2**64 exclusive) also go to the Python side, which gives the same text. */
static inline PyObject *
plain_text(PyObject *x)
{
    if (PyUnicode_CheckExact(x)) {
        return PyUnicode_GET_LENGTH(x) <= max_text ? Py_NewRef(x) : NULL;
    }
    if (PyLong_CheckExact(x)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
        return overflow ? NULL : decimal_text(v);
    }
    if (PyFloat_CheckExact(x)) {
        return PyFloat_Type.tp_repr(x);
    }
    return NULL;
}

#define STR_ARGS 16  /* str of more arguments than this goes to the Python definition */

PyDoc_STRVAR(str_doc,
"str(*args)\n--\n\n"
"The builtin str: strings as they are, numbers as repr, joined; anything else, or a result "
"longer than the limit, by the registered Python definition.");

static PyObject *
sp_str(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > STR_ARGS || max_text < 0) {
        return fallback(fb_str, args, nargs);
    }
    PyObject *parts[STR_ARGS];
    Py_ssize_t k, total = 0;
    for (k = 0; k < nargs; k++) {
        PyObject *t = plain_text(args[k]);
        if (t == NULL) {
            break;
        }
        parts[k] = t;
        /* b_str's own measure, so that this decides exactly the calls its fast path decides:
         * a number counts 32 (the Python side's careful walk refuses some results that would
         * just fit, and must be the one to) */
        total += PyUnicode_CheckExact(args[k]) ? PyUnicode_GET_LENGTH(t) : 32;
    }
    if (k < nargs || total > max_text) {
        for (Py_ssize_t j = 0; j < k; j++) {
            Py_DECREF(parts[j]);
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
        return fallback(fb_str, args, nargs);
    }
    PyObject *r;
    if (nargs == 1) {
        return parts[0];
    }
    else if (nargs == 2) {
        r = PyUnicode_Concat(parts[0], parts[1]);
    }
    else {
        /* the parts written straight into the result, as join_strs does: the widest kind of a
         * part is the narrowest that holds the text (CPython's strings are canonical) */
        Py_ssize_t len = 0;
        Py_UCS4 maxchar = 0;
        for (Py_ssize_t j = 0; j < nargs; j++) {
            Py_UCS4 m = PyUnicode_MAX_CHAR_VALUE(parts[j]);
            maxchar = m > maxchar ? m : maxchar;
            len += PyUnicode_GET_LENGTH(parts[j]);
        }
        r = PyUnicode_New(len, maxchar);
        if (r != NULL) {
            int kind = PyUnicode_KIND(r);
            char *data = PyUnicode_DATA(r);
            Py_ssize_t at = 0;
            for (Py_ssize_t j = 0; j < nargs; j++) {
                Py_ssize_t n = PyUnicode_GET_LENGTH(parts[j]);
                if (n > 0 && copy_text(r, kind, data, at, parts[j], n) < 0) {
                    Py_CLEAR(r);
                    break;
                }
                at += n;
            }
        }
    }
    for (Py_ssize_t j = 0; j < nargs; j++) {
        Py_DECREF(parts[j]);
    }
    return r;
}

PyDoc_STRVAR(map_str_doc,
"map_str(xs)\n--\n\n"
"list/map of str over the proper list `xs` (the registered Python str for any element that is "
"not a string or a machine-size number), or None if `xs` is not a proper list.");

static PyObject *
sp_map_str(PyObject *Py_UNUSED(module), PyObject *xs)
{
    if (fb_str == NULL || max_text < 0) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups: builtins not registered");
        return NULL;
    }
    Py_ssize_t n = 0;
    PyObject *c = xs;
    while (Cons_Check(c)) {
        n++;
        c = TAIL(c);
    }
    if (c != Py_None) {
        Py_RETURN_NONE;
    }
    PyObject **buf = PyMem_Malloc((n ? n : 1) * sizeof(PyObject *));
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    /* the caller holds `xs`, and cells never change, so the walk stays valid across the
     * Python calls for the elements this does not decide */
    Py_ssize_t i = 0;
    PyObject *out = NULL;
    for (c = xs; i < n; i++, c = TAIL(c)) {
        PyObject *t = plain_text(HEAD(c));
        if (t == NULL) {
            if (PyErr_Occurred()) {
                goto done;
            }
            t = PyObject_CallOneArg(fb_str, HEAD(c));
            if (t == NULL) {
                goto done;
            }
        }
        buf[i] = t;
    }
    out = build(buf, n, Py_None);
done:
    for (Py_ssize_t j = 0; j < i; j++) {
        Py_DECREF(buf[j]);
    }
    PyMem_Free(buf);
    return out;
}

PyDoc_STRVAR(b_reverse_doc,
"b_reverse(x)\n--\n\n"
"The builtin reverse: a proper list reversed here, any other call by the Python definition.");

static PyObject *
sp_b_reverse(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 1) {
        PyObject *r = sp_reverse(module, args[0]);
        if (r != NULL || !PyErr_ExceptionMatches(PyExc_ValueError)) {
            return r;
        }
        PyErr_Clear();
    }
    return fallback(fb_reverse, args, nargs);
}

PyDoc_STRVAR(b_append_doc,
"b_append(*lists)\n--\n\n"
"The builtin append: proper lists joined here, any other call by the Python definition.");

static PyObject *
sp_b_append(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *r = sp_append(module, args, nargs);
    if (r != NULL || !PyErr_ExceptionMatches(PyExc_ValueError)) {
        return r;
    }
    PyErr_Clear();
    return fallback(fb_append, args, nargs);
}

PyDoc_STRVAR(b_nth_doc,
"b_nth(xs, i)\n--\n\n"
"The builtin nth: element i (an int) of a list that has it, here; any other call by the "
"Python definition.");

static PyObject *
sp_b_nth(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 2 && PyLong_CheckExact(args[1])) {
        int overflow;
        long long i = PyLong_AsLongLongAndOverflow(args[1], &overflow);
        if (!overflow && i >= 0) {
            for (PyObject *c = args[0]; Cons_Check(c); c = TAIL(c), i--) {
                if (i == 0) {
                    return Py_NewRef(HEAD(c));
                }
            }
        }
    }
    return fallback(fb_nth, args, nargs);
}

PyDoc_STRVAR(b_length_doc,
"b_length(x)\n--\n\n"
"The builtin length: a proper list's length here, any other call by the Python definition.");

static PyObject *
sp_b_length(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 1) {
        Py_ssize_t n = 0;
        PyObject *c = args[0];
        while (Cons_Check(c)) {
            n++;
            c = TAIL(c);
        }
        if (c == Py_None) {
            return PyLong_FromSsize_t(n);
        }
    }
    return fallback(fb_length, args, nargs);
}

PyDoc_STRVAR(b_str_split_doc,
"b_str_split(s, sep)\n--\n\n"
"The builtin str/split: a string split at a non-empty separator here, straight into cells; "
"any other call (an empty separator, a non-string) by the Python definition.");

static PyObject *
sp_b_str_split(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 2 && PyUnicode_CheckExact(args[0]) && PyUnicode_CheckExact(args[1])
            && PyUnicode_GET_LENGTH(args[1]) > 0) {
        PyObject *parts = PyUnicode_Split(args[0], args[1], -1);
        if (parts == NULL) {
            return NULL;
        }
        /* a list nobody else holds once the collector no longer sees it (a finalizer run by a
         * cell's allocation could find it with gc.get_objects and change it, and build reads
         * its items' array as it was): no snapshot needed, unlike from_list's. Its items are
         * strings, which the collector never needs to see through it. */
        PyObject_GC_UnTrack(parts);
        PyObject *r = build(((PyListObject *)parts)->ob_item, PyList_GET_SIZE(parts), Py_None);
        Py_DECREF(parts);
        return r;
    }
    return fallback(fb_split, args, nargs);
}

PyDoc_STRVAR(native_order_doc,
"native_order(items)\n--\n\n"
"Whether Python's own order of the Python list `items` is the term order: empty, all strings, "
"or all ints and floats with no NaN (exact types only).");

static PyObject *
sp_native_order(PyObject *Py_UNUSED(module), PyObject *items)
{
    if (!PyList_CheckExact(items)) {
        PyErr_SetString(PyExc_TypeError, "native_order: expected a list");
        return NULL;
    }
    /* reads only: nothing runs Python code during the loop, so the list cannot change */
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (n == 0) {
        Py_RETURN_TRUE;
    }
    PyObject **v = ((PyListObject *)items)->ob_item;
    if (PyUnicode_CheckExact(v[0])) {
        for (Py_ssize_t i = 1; i < n; i++) {
            if (!PyUnicode_CheckExact(v[i])) {
                Py_RETURN_FALSE;
            }
        }
        Py_RETURN_TRUE;
    }
    if (!PyLong_CheckExact(v[0]) && !PyFloat_CheckExact(v[0])) {
        Py_RETURN_FALSE;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = v[i];
        if (PyLong_CheckExact(x)) {
            continue;
        }
        if (!PyFloat_CheckExact(x) || Py_IS_NAN(PyFloat_AS_DOUBLE(x))) {
            Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(register_closure_doc,
"_register_closure(rebuild)\n--\n\n"
"values.py's _closure(proto, upvals, name), which unpickles a closure.");

static PyObject *
sp_register_closure(PyObject *Py_UNUSED(module), PyObject *rebuild)
{
    Py_XSETREF(fn_closure, Py_NewRef(rebuild));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(register_builtins_doc,
"_register_builtins(str, reverse, append, nth, length, max_text, split=None)\n--\n\n"
"The Python definitions the C builtins hand what they do not decide to, and the longest "
"string str may build.");

static PyObject *
sp_register_builtins(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *s, *rev, *app, *nth, *len, *split = NULL;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "OOOOOn|O:_register_builtins", &s, &rev, &app, &nth, &len, &limit, &split)) {
        return NULL;
    }
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "_register_builtins: max_text must be >= 0");
        return NULL;
    }
    Py_XSETREF(fb_str, Py_NewRef(s));
    Py_XSETREF(fb_reverse, Py_NewRef(rev));
    Py_XSETREF(fb_append, Py_NewRef(app));
    Py_XSETREF(fb_nth, Py_NewRef(nth));
    Py_XSETREF(fb_length, Py_NewRef(len));
    Py_XSETREF(fb_split, Py_XNewRef(split));
    max_text = limit;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(register_doc,
"_register(eq, hash, repr, rebuild, atoms)\n--\n\n"
"values.py's functions that Cons delegates to, and the types whose instances hold no "
"reference a cell could be reached back through (cells holding them stay untracked).");

static PyObject *
sp_register(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *eq, *hash, *repr, *rebuild, *atoms;
    if (!PyArg_ParseTuple(args, "OOOOO!:_register", &eq, &hash, &repr, &rebuild,
                          &PyTuple_Type, &atoms)) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(atoms);
    if (n > MAX_ATOMS) {
        PyErr_SetString(PyExc_ValueError, "_register: too many atom types");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyType_Check(PyTuple_GET_ITEM(atoms, i))) {
            PyErr_SetString(PyExc_TypeError, "_register: atoms must be types");
            return NULL;
        }
    }
    /* only the cells made from now on use the new atoms: earlier untracked cells stay valid,
     * since types are only ever added */
    for (int i = 0; i < n_atoms; i++) {
        Py_DECREF(atom_types[i]);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        atom_types[i] = (PyTypeObject *)Py_NewRef(PyTuple_GET_ITEM(atoms, i));
    }
    n_atoms = (int)n;
    Py_XSETREF(fn_eq, Py_NewRef(eq));
    Py_XSETREF(fn_hash, Py_NewRef(hash));
    Py_XSETREF(fn_repr, Py_NewRef(repr));
    Py_XSETREF(fn_rebuild, Py_NewRef(rebuild));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"from_list", (PyCFunction)(void (*)(void))sp_from_list, METH_FASTCALL, from_list_doc},
    {"to_pylist", (PyCFunction)sp_to_pylist, METH_O, to_pylist_doc},
    {"reverse", (PyCFunction)sp_reverse, METH_O, reverse_doc},
    {"append", (PyCFunction)(void (*)(void))sp_append, METH_FASTCALL, append_doc},
    {"length", (PyCFunction)sp_length, METH_O, length_doc},
    {"nth", (PyCFunction)(void (*)(void))sp_nth, METH_FASTCALL, nth_doc},
    {"join_strs", (PyCFunction)(void (*)(void))sp_join_strs, METH_FASTCALL, join_strs_doc},
    {"_register", (PyCFunction)sp_register, METH_VARARGS, register_doc},
    {"str", (PyCFunction)(void (*)(void))sp_str, METH_FASTCALL, str_doc},
    {"map_str", (PyCFunction)sp_map_str, METH_O, map_str_doc},
    {"b_reverse", (PyCFunction)(void (*)(void))sp_b_reverse, METH_FASTCALL, b_reverse_doc},
    {"b_append", (PyCFunction)(void (*)(void))sp_b_append, METH_FASTCALL, b_append_doc},
    {"b_nth", (PyCFunction)(void (*)(void))sp_b_nth, METH_FASTCALL, b_nth_doc},
    {"b_length", (PyCFunction)(void (*)(void))sp_b_length, METH_FASTCALL, b_length_doc},
    {"b_str_split", (PyCFunction)(void (*)(void))sp_b_str_split, METH_FASTCALL, b_str_split_doc},
    {"native_order", (PyCFunction)sp_native_order, METH_O, native_order_doc},
    {"closure0", (PyCFunction)sp_closure0, METH_O, closure0_doc},
    {"_register_closure", (PyCFunction)sp_register_closure, METH_O, register_closure_doc},
    {"_register_builtins", (PyCFunction)sp_register_builtins, METH_VARARGS, register_builtins_doc},
    {NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lispvm.vm._speedups",
    .m_doc = "The cons cell and list walkers of vm/values.py in C (optional: values.py falls "
             "back to its pure-Python classes without it or with LISPVM_PURE=1).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&ConsType) < 0 || PyType_Ready(&ConsIterType) < 0 || PyType_Ready(&ClosureType) < 0) {
        return NULL;
    }
    str_name = PyUnicode_InternFromString("name");
    str_fast = PyUnicode_InternFromString("fast");
    slot_name.name = str_name;
    slot_fast.name = str_fast;
    if (str_name == NULL || str_fast == NULL) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&speedups_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&ConsType);
    if (PyModule_AddObject(m, "Cons", (PyObject *)&ConsType) < 0) {
        Py_DECREF(&ConsType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&ClosureType);
    if (PyModule_AddObject(m, "Closure", (PyObject *)&ClosureType) < 0) {
        Py_DECREF(&ClosureType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
