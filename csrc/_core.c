/*
 * _core.c: the only file of vaecore that speaks the CPython and NumPy C APIs.
 *
 * It defines one type, vaecore._core.Model, that owns a model's flat
 * parameter array (a NumPy array: the live buffer), its training buffers, its
 * random number generator, its lock and its table of kernels, and calls the
 * plain-C core (vae.h). Its job is to parse, convert, dispatch and raise:
 * every argument is checked here before C touches memory (type, dtype,
 * contiguity, alignment, shape, NaN/Inf, aliasing), and every C error code
 * becomes a Python exception whose message names the argument, what was
 * expected and what was given. The loops over chunks of rows and the buffers
 * live in model.c, the timing hooks in hooks.c.
 *
 * Threads: calls that mutate the model (train_step, anything that draws from
 * the model's generator) take the model's lock; read-only calls (encode,
 * decode, loss with a given eps) use their own buffers. Both release the GIL
 * while C computes.
 *
 * What this file is not: the Python API. Friendly conversion of array-likes,
 * defaults and documentation live in vaecore/model.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <string.h>

#include <numpy/arrayobject.h>
/* NumPy pulls in <complex.h>, whose I macro would clash with the layer width I of vae.h */
#undef I

#include "gan.h"
#include "stack.h"
#include "vae.h"
#include "vq.h"

static const char *ACT_NAMES[ACT_COUNT] = {"tanh", "relu", "leaky_relu", "sigmoid", "elu"};
static const char *LIK_NAMES[LIK_COUNT] = {"gaussian", "bernoulli", "gaussian_learned"};
/* ints after the kind in a layer tuple (vae.h's LayerSpec), by LAYER_* kind */
static const int LAYER_NARGS[LAYER_KIND_COUNT] = {1, 7, 7, 1, 0, 3};

typedef struct {
    PyObject_HEAD
    VaeLayout L;
    int typenum;             /* NPY_FLOAT or NPY_DOUBLE */
    const VaeKernels *k;     /* the kernels of its dtype and instruction set, chosen at construction */
    PyArrayObject *params;   /* (P,) the live parameter buffer */
    VaeStepBuffers sb;       /* train_step's gradient and work buffer, allocated on first use */
    Rng rng;
    PyThread_type_lock lock;
} ModelObject;

/* the instruction set whose kernels new models use (vae_isa() at import;
 * settable for tests) and the threads gemm may use (vaecore.set_num_threads) */
static int g_isa = ISA_DEFAULT;
static int g_threads = 1;

/* ---------------------------------------------------------------- errors */

static PyObject *set_core_error(int err, const char *what)
{
    const char *advice = "(lower the learning rate, clip gradients, or check the data)";
    switch (err) {
    case VAE_ERR_CONFIG:
        PyErr_Format(PyExc_ValueError, "%s: invalid model configuration", what); break;
    case VAE_ERR_OVERFLOW:
        PyErr_Format(PyExc_MemoryError, "%s: the requested size is too large to address", what); break;
    case VAE_ERR_NOMEM:
        PyErr_Format(PyExc_MemoryError, "%s: out of memory", what); break;
    case VAE_ERR_NONFINITE_LOSS:
        PyErr_Format(PyExc_FloatingPointError,
                     "%s: the loss is NaN or Inf; the update was not applied %s", what, advice); break;
    case VAE_ERR_NONFINITE_GRAD:
        PyErr_Format(PyExc_FloatingPointError,
                     "%s: the gradient holds NaN or Inf; the update was not applied %s", what, advice); break;
    case VAE_ERR_NONFINITE_UPDATE:
        PyErr_Format(PyExc_FloatingPointError,
                     "%s: the update would leave NaN or Inf in the parameters or the optimizer state "
                     "(it overflows); the update was not applied %s", what, advice); break;
    default:
        PyErr_Format(PyExc_RuntimeError, "%s: internal error %d", what, err);
    }
    return NULL;
}

/* ------------------------------------------------------ argument checks */

static const char *dtype_name(int typenum) { return typenum == NPY_FLOAT ? "float32" : "float64"; }

/* obj must be a C-contiguous, aligned ndarray of the model's dtype with shape
 * (rows, cols) (rows < 0: any positive count). Returns it borrowed, or NULL
 * with TypeError / ValueError set. */
static PyArrayObject *check_matrix(ModelObject *m, PyObject *obj, const char *name, npy_intp rows, npy_intp cols)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %.200s", name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != m->typenum || !PyArray_ISNOTSWAPPED(a)) {
        PyObject *got = PyObject_Str((PyObject *)PyArray_DESCR(a));
        PyErr_Format(PyExc_TypeError, "%s must have dtype %s (the model's), got %S",
                     name, dtype_name(m->typenum), got ? got : Py_None);
        Py_XDECREF(got);
        return NULL;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous and aligned (use numpy.ascontiguousarray)", name);
        return NULL;
    }
    if (PyArray_NDIM(a) != 2) {
        PyErr_Format(PyExc_ValueError, "%s must be 2-D of shape (n, %zd), got %d-D",
                     name, (Py_ssize_t)cols, PyArray_NDIM(a));
        return NULL;
    }
    npy_intp r = PyArray_DIM(a, 0), c = PyArray_DIM(a, 1);
    if (c != cols || (rows >= 0 && r != rows)) {
        if (rows >= 0)
            PyErr_Format(PyExc_ValueError, "%s must have shape (%zd, %zd), got (%zd, %zd)",
                         name, (Py_ssize_t)rows, (Py_ssize_t)cols, (Py_ssize_t)r, (Py_ssize_t)c);
        else
            PyErr_Format(PyExc_ValueError, "%s must have shape (n, %zd), got (%zd, %zd)",
                         name, (Py_ssize_t)cols, (Py_ssize_t)r, (Py_ssize_t)c);
        return NULL;
    }
    if (r < 1) {
        PyErr_Format(PyExc_ValueError, "%s must have at least one row, got 0", name);
        return NULL;
    }
    return a;
}

/* element i of a (the model's dtype) as a Python float, for messages */
static PyObject *element(ModelObject *m, PyArrayObject *a, size_t i)
{
    const char *p = (const char *)PyArray_DATA(a);
    return PyFloat_FromDouble(m->typenum == NPY_FLOAT ? (double)((const float *)p)[i] : ((const double *)p)[i]);
}

static int check_finite(ModelObject *m, PyArrayObject *a, const char *name)
{
    ptrdiff_t bad = m->k->find_nonfinite(PyArray_DATA(a), (size_t)PyArray_SIZE(a));
    if (bad >= 0) {
        npy_intp cols = PyArray_DIM(a, 1);
        PyObject *v = element(m, a, (size_t)bad);
        if (v) PyErr_Format(PyExc_ValueError, "%s must be finite: row %zd, column %zd has %R",
                            name, (Py_ssize_t)(bad / cols), (Py_ssize_t)(bad % cols), v);
        Py_XDECREF(v);
        return -1;
    }
    return 0;
}

/* x must be finite, and in [0, 1] for a Bernoulli likelihood (one pass when it is: values
 * in [0, 1] are finite; a NaN or Inf gets the message of check_finite) */
static int check_targets(ModelObject *m, PyArrayObject *x)
{
    if (m->L.cfg.lik != LIK_BERNOULLI) return check_finite(m, x, "x");
    size_t n = (size_t)PyArray_SIZE(x);
    ptrdiff_t bad = m->k->find_outside_unit(PyArray_DATA(x), n);
    if (bad < 0) return 0;
    if (check_finite(m, x, "x")) return -1;
    /* the likely fix: data on another scale (0..255, 0..16) divided by its maximum */
    double top = 0;
    const char *p = (const char *)PyArray_DATA(x);
    for (size_t i = 0; i < n; i++) {
        double v = m->typenum == NPY_FLOAT ? (double)((const float *)p)[i] : ((const double *)p)[i];
        if (v > top) top = v;
    }
    npy_intp cols = PyArray_DIM(x, 1);
    PyObject *v = element(m, x, (size_t)bad), *mx = PyFloat_FromDouble(top);
    if (v && mx) {
        if (top > 1)
            PyErr_Format(PyExc_ValueError, "x must lie in [0, 1] for the bernoulli likelihood: row %zd, column %zd "
                         "has %R (divide x by its maximum (%R here), or use likelihood='gaussian')",
                         (Py_ssize_t)(bad / cols), (Py_ssize_t)(bad % cols), v, mx);
        else
            PyErr_Format(PyExc_ValueError, "x must lie in [0, 1] for the bernoulli likelihood: row %zd, column %zd "
                         "has %R (rescale x into [0, 1], or use likelihood='gaussian')",
                         (Py_ssize_t)(bad / cols), (Py_ssize_t)(bad % cols), v);
    }
    Py_XDECREF(v);
    Py_XDECREF(mx);
    return -1;
}

static int overlaps(const void *a, size_t na, const void *b, size_t nb)
{
    const char *pa = a, *pb = b;
    return na && nb && pa < pb + nb && pb < pa + na;
}

static size_t nbytes(PyArrayObject *a) { return (size_t)PyArray_NBYTES(a); }

/* ------------------------------------------------------------- locking */

static void lock_model(ModelObject *m)
{
    if (!PyThread_acquire_lock(m->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(m->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

static void unlock_model(ModelObject *m) { PyThread_release_lock(m->lock); }

/* a new (rows, cols) array of the model's dtype */
static PyArrayObject *new_matrix(ModelObject *m, npy_intp rows, npy_intp cols)
{
    npy_intp dims[2] = {rows, cols};
    return (PyArrayObject *)PyArray_EMPTY(2, dims, m->typenum, 0);
}

/* --------------------------------------------------------- construction */

/* an int from a Python int (not a bool), or -1 with no exception when it is not one */
static long long as_int(PyObject *o)
{
    if (!PyLong_Check(o) || PyBool_Check(o)) return -1;
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) PyErr_Clear();
    return v;
}

/* a stack: a sequence of tuples of ints (kind, args...), as vaecore/layers.py encodes them */
static int parse_stack(PyObject *seq, LayerSpec *out, int *n, const char *name)
{
    PyObject *fast = PySequence_Fast(seq, "");
    if (!fast) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of layer tuples, got %.200s", name, Py_TYPE(seq)->tp_name);
        return -1;
    }
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    if (len > VAE_MAX_LAYERS) {
        PyErr_Format(PyExc_ValueError, "%s may have at most %d layers, got %zd", name, VAE_MAX_LAYERS, len);
        Py_DECREF(fast);
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        Py_ssize_t k = PyTuple_Check(item) ? PyTuple_GET_SIZE(item) : 0;
        if (k < 1 || k > 8) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be a tuple of 1 to 8 ints (kind, args...), got %R",
                         name, i, item);
            Py_DECREF(fast);
            return -1;
        }
        memset(&out[i], 0, sizeof out[i]);
        long long kind = as_int(PyTuple_GET_ITEM(item, 0));
        if (kind < 0 || kind >= LAYER_KIND_COUNT || k != 1 + LAYER_NARGS[kind]) {
            if (kind >= 0 && kind < LAYER_KIND_COUNT)
                PyErr_Format(PyExc_ValueError, "%s[%zd] of kind %lld must be a tuple of %d ints, got %R",
                             name, i, kind, 1 + LAYER_NARGS[kind], item);
            else
                PyErr_Format(PyExc_ValueError, "%s[%zd] must start with a layer kind in [0, %d], got %R",
                             name, i, LAYER_KIND_COUNT - 1, item);
            Py_DECREF(fast);
            return -1;
        }
        for (Py_ssize_t j = 0; j < k; j++) {
            long long v = as_int(PyTuple_GET_ITEM(item, j));
            if (v < 0 || v > VAE_MAX_WIDTH) {
                PyErr_Format(PyExc_ValueError, "%s[%zd] must hold ints in [0, %d], got %R",
                             name, i, VAE_MAX_WIDTH, item);
                Py_DECREF(fast);
                return -1;
            }
            if (j == 0) out[i].kind = (int)v;
            else out[i].arg[j - 1] = (int)v;
        }
    }
    *n = (int)len;
    Py_DECREF(fast);
    return 0;
}

static int lookup_name(const char *s, const char **names, int count, const char *what)
{
    for (int i = 0; i < count; i++)
        if (strcmp(s, names[i]) == 0) return i;
    PyObject *choices = PyUnicode_FromString("");
    for (int i = 0; choices && i < count; i++) {
        PyObject *next = PyUnicode_FromFormat("%U%s'%s'", choices, i ? ", " : "", names[i]);
        Py_SETREF(choices, next);
    }
    PyErr_Format(PyExc_ValueError, "%s must be one of %U, got '%s'", what, choices ? choices : Py_None, s);
    Py_XDECREF(choices);
    return -1;
}

static int parse_seed(PyObject *obj, uint64_t *seed, const char *what)
{
    unsigned long long s = PyLong_Check(obj) ? PyLong_AsUnsignedLongLong(obj) : (unsigned long long)-1;
    if (!PyLong_Check(obj) || PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be an int in [0, 2**64), got %R", what, obj);
        return -1;
    }
    *seed = (uint64_t)s;
    return 0;
}

/* the shape of one example: (D,) or (C, H, W) of positive ints, at most VAE_MAX_WIDTH values in all */
static int parse_shape(PyObject *shape, VaeShape *out, const char *name)
{
    Py_ssize_t rank = PyTuple_Check(shape) ? PyTuple_GET_SIZE(shape) : 0;
    long long dims[3] = {1, 1, 1};
    for (Py_ssize_t i = 0; i < rank && i < 3; i++) dims[i] = as_int(PyTuple_GET_ITEM(shape, i));
    if ((rank != 1 && rank != 3) || dims[0] < 1 || dims[1] < 1 || dims[2] < 1 ||
        dims[0] * dims[1] * dims[2] > VAE_MAX_WIDTH) {
        PyErr_Format(PyExc_ValueError, "%s must be (D,) or (C, H, W) of positive ints with at most %d "
                     "values in all, got %R", name, VAE_MAX_WIDTH, shape);
        return -1;
    }
    out->rank = (int)rank;
    out->c = (int)dims[0];
    out->h = (int)dims[1];
    out->w = (int)dims[2];
    return 0;
}

static int parse_dtype(const char *dtype, int *typenum)
{
    if (strcmp(dtype, "float32") == 0) *typenum = NPY_FLOAT;
    else if (strcmp(dtype, "float64") == 0) *typenum = NPY_DOUBLE;
    else {
        PyErr_Format(PyExc_ValueError, "dtype must be 'float32' or 'float64', got '%s'", dtype);
        return -1;
    }
    return 0;
}

/* the parts of a new model object that do not depend on its kind: kernels, generator, lock and a
 * zero parameter buffer of P values */
static int init_model(ModelObject *m, int typenum, uint64_t seed, size_t P)
{
    m->typenum = typenum;
    m->k = vae_kernels(typenum == NPY_DOUBLE, g_isa);
    rng_seed(&m->rng, seed);
    m->lock = PyThread_allocate_lock();
    if (!m->lock) {
        PyErr_NoMemory();
        return -1;
    }
    npy_intp n = (npy_intp)P;
    m->params = (PyArrayObject *)PyArray_ZEROS(1, &n, typenum, 0);
    return m->params ? 0 : -1;
}

static PyObject *Model_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"input_shape", "latent_dim", "encoder", "decoder", "likelihood", "variational",
                             "dtype", "seed", NULL};
    int K, variational;
    PyObject *shape, *enc, *dec, *seed_obj;
    const char *lik, *dtype;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiOOspsO:Model", kwlist, &shape, &K, &enc, &dec, &lik,
                                     &variational, &dtype, &seed_obj))
        return NULL;
    uint64_t seed;
    if (parse_seed(seed_obj, &seed, "seed")) return NULL;
    VaeConfig *cfg = PyMem_Calloc(1, sizeof(VaeConfig));
    VaeLayout *L = PyMem_Calloc(1, sizeof(VaeLayout));
    ModelObject *m = NULL;
    if (!cfg || !L) { PyErr_NoMemory(); goto fail; }
    if (parse_shape(shape, &cfg->input, "input_shape")) goto fail;
    if (K < 1 || K > VAE_MAX_WIDTH) {
        PyErr_Format(PyExc_ValueError, "latent_dim must be in [1, %d], got %d", VAE_MAX_WIDTH, K);
        goto fail;
    }
    cfg->K = K;
    cfg->variational = variational;
    if (parse_stack(enc, cfg->enc, &cfg->n_enc, "encoder") || parse_stack(dec, cfg->dec, &cfg->n_dec, "decoder"))
        goto fail;
    if ((cfg->lik = lookup_name(lik, LIK_NAMES, LIK_COUNT, "likelihood")) < 0) goto fail;
    int typenum;
    if (parse_dtype(dtype, &typenum)) goto fail;
    int err = vae_layout(L, cfg);
    if (err) { set_core_error(err, "Model"); goto fail; }
    if (L->num_params > (size_t)NPY_MAX_INTP / 8) { set_core_error(VAE_ERR_OVERFLOW, "Model parameters"); goto fail; }

    m = (ModelObject *)type->tp_alloc(type, 0);
    if (!m) goto fail;
    m->L = *L;
    if (init_model(m, typenum, seed, L->num_params)) goto fail;
    PyMem_Free(cfg);
    PyMem_Free(L);
    return (PyObject *)m;
fail:
    PyMem_Free(cfg);
    PyMem_Free(L);
    Py_XDECREF(m);
    return NULL;
}

static void Model_dealloc(ModelObject *m)
{
    PyTypeObject *tp = Py_TYPE(m);
    Py_XDECREF(m->params);
    vae_step_buffers_free(&m->sb);
    if (m->lock) PyThread_free_lock(m->lock);
    tp->tp_free((PyObject *)m);
    Py_DECREF(tp);
}

/* ------------------------------------------------------------- methods */

/* append (name, offset, shape) to list; shape is a tuple of n ints */
static int add_entry(PyObject *list, const char *name, size_t offset, int n, const int *shape)
{
    PyObject *dims = PyTuple_New(n);
    if (!dims) return -1;
    for (int i = 0; i < n; i++) PyTuple_SET_ITEM(dims, i, PyLong_FromLong(shape[i]));
    PyObject *e = PyErr_Occurred() ? NULL : Py_BuildValue("(snN)", name, (Py_ssize_t)offset, dims);
    if (!e) { if (!PyErr_Occurred()) Py_DECREF(dims); return -1; }
    int bad = PyList_Append(list, e);
    Py_DECREF(e);
    return bad;
}

/* W and b of a layer with parameters, named prefix.W and prefix.b */
static int add_layer(PyObject *list, const char *prefix, const Layer *l)
{
    char wn[48], bn[48];
    snprintf(wn, sizeof wn, "%s.W", prefix);
    snprintf(bn, sizeof bn, "%s.b", prefix);
    const ConvShape *c = &l->conv;
    int lin[2] = {l->in.c, l->out.c}, conv[4] = {c->O, c->C, c->KH, c->KW}, convt[4] = {c->C, c->O, c->KH, c->KW};
    int bias[1] = {(int)l->nb};
    int bad = l->kind == LAYER_LINEAR   ? add_entry(list, wn, l->w, 2, lin)
              : l->kind == LAYER_CONV2D ? add_entry(list, wn, l->w, 4, conv)
                                        : add_entry(list, wn, l->w, 4, convt);
    return bad || add_entry(list, bn, l->b, 1, bias);
}

static int add_stack(PyObject *list, const char *side, const VaeStack *st)
{
    for (int i = 0; i < st->n; i++) {
        if (!st->layer[i].nw) continue;
        char prefix[32];
        snprintf(prefix, sizeof prefix, "%s.%d", side, i);
        if (add_layer(list, prefix, &st->layer[i])) return -1;
    }
    return 0;
}

PyDoc_STRVAR(layout_doc,
"layout($self, /)\n--\n\n"
"The parameter layout: a list of (name, offset, shape) in buffer order: enc.i.W and\n"
"enc.i.b for each encoder layer i with parameters, enc.mu, enc.logvar, dec.i for the\n"
"decoder layers, and dec.logvar for the learned variance.");

static PyObject *Model_layout(ModelObject *m, PyObject *Py_UNUSED(ignored))
{
    const VaeLayout *L = &m->L;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    int D[1] = {(int)L->D};
    if (add_stack(list, "enc", &L->enc) || add_layer(list, "enc.mu", &L->mu) ||
        (L->logvar.nw && add_layer(list, "enc.logvar", &L->logvar)) || add_stack(list, "dec", &L->dec) ||
        (L->cfg.lik == LIK_GAUSSIAN_LEARNED && add_entry(list, "dec.logvar", L->dec_logvar, 1, D))) {
        Py_DECREF(list);
        return NULL;
    }
    return list;
}

PyDoc_STRVAR(normal_doc,
"normal($self, n, seed=None, /)\n--\n\n"
"An (n, latent_dim) array of N(0, 1) draws: from the model's generator when seed\n"
"is None (advancing it), else from a fresh generator seeded with seed.");

static PyObject *Model_normal(ModelObject *m, PyObject *args)
{
    Py_ssize_t n;
    PyObject *seed = Py_None;
    if (!PyArg_ParseTuple(args, "n|O:normal", &n, &seed)) return NULL;
    if (n < 0) return PyErr_Format(PyExc_ValueError, "n must be an int >= 0, got %zd", n);
    Rng local;
    if (seed != Py_None) {
        uint64_t s;
        if (parse_seed(seed, &s, "seed")) return NULL;
        rng_seed(&local, s);
    }
    PyArrayObject *out = new_matrix(m, n, m->L.cfg.K);
    if (!out) return NULL;
    size_t count = (size_t)PyArray_SIZE(out);
    void *data = PyArray_DATA(out);
    if (seed == Py_None) {
        lock_model(m);
        Py_BEGIN_ALLOW_THREADS
        m->k->normal(data, count, &m->rng);
        Py_END_ALLOW_THREADS
        unlock_model(m);
    } else {
        Py_BEGIN_ALLOW_THREADS
        m->k->normal(data, count, &local);
        Py_END_ALLOW_THREADS
    }
    return (PyObject *)out;
}

PyDoc_STRVAR(encode_doc,
"encode($self, x, /)\n--\n\n"
"(mu, logvar) for x (n, D), each (n, latent_dim); logvar is None for a plain\n"
"autoencoder.");

static PyObject *Model_encode(ModelObject *m, PyObject *x_obj)
{
    const VaeLayout *L = &m->L;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, (npy_intp)L->D);
    if (!x || check_finite(m, x, "x")) return NULL;
    npy_intp n = PyArray_DIM(x, 0);
    PyArrayObject *mu = new_matrix(m, n, L->cfg.K), *lv = NULL;
    if (!mu || (L->logvar.nw && !(lv = new_matrix(m, n, L->cfg.K)))) {
        Py_XDECREF(mu);
        return NULL;
    }
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = vae_encode_rows(m->k, L, g_threads, PyArray_DATA(m->params), PyArray_DATA(x), (size_t)n,
                          PyArray_DATA(mu), lv ? PyArray_DATA(lv) : NULL);
    Py_END_ALLOW_THREADS
    if (err) {
        Py_DECREF(mu);
        Py_XDECREF(lv);
        return set_core_error(err, "encode");
    }
    if (!lv) return Py_BuildValue("NO", mu, Py_None);
    return Py_BuildValue("NN", mu, lv);
}

PyDoc_STRVAR(decode_doc,
"decode($self, z, logits=False, /)\n--\n\n"
"The decoder output for z (n, latent_dim), (n, D): the mean (gaussian), or the\n"
"probabilities (bernoulli; the logits with logits=True).");

static PyObject *Model_decode(ModelObject *m, PyObject *args)
{
    PyObject *z_obj;
    int logits = 0;
    if (!PyArg_ParseTuple(args, "O|p:decode", &z_obj, &logits)) return NULL;
    const VaeLayout *L = &m->L;
    PyArrayObject *z = check_matrix(m, z_obj, "z", -1, L->cfg.K);
    if (!z || check_finite(m, z, "z")) return NULL;
    npy_intp n = PyArray_DIM(z, 0);
    PyArrayObject *out = new_matrix(m, n, (npy_intp)L->D);
    if (!out) return NULL;
    int err, probs = L->cfg.lik == LIK_BERNOULLI && !logits;
    Py_BEGIN_ALLOW_THREADS
    err = vae_decode_rows(m->k, L, g_threads, PyArray_DATA(m->params), PyArray_DATA(z), (size_t)n,
                          PyArray_DATA(out), probs);
    Py_END_ALLOW_THREADS
    if (err) {
        Py_DECREF(out);
        return set_core_error(err, "decode");
    }
    return (PyObject *)out;
}

PyDoc_STRVAR(reparameterize_doc,
"reparameterize($self, mu, logvar, eps, /)\n--\n\n"
"z = mu + exp(logvar / 2) * eps, all (n, latent_dim).");

static PyObject *Model_reparameterize(ModelObject *m, PyObject *args)
{
    PyObject *a, *b, *c;
    if (!PyArg_ParseTuple(args, "OOO:reparameterize", &a, &b, &c)) return NULL;
    npy_intp K = m->L.cfg.K;
    PyArrayObject *mu = check_matrix(m, a, "mu", -1, K);
    if (!mu || check_finite(m, mu, "mu")) return NULL;
    npy_intp n = PyArray_DIM(mu, 0);
    PyArrayObject *lv = check_matrix(m, b, "logvar", n, K);
    if (!lv || check_finite(m, lv, "logvar")) return NULL;
    PyArrayObject *eps = check_matrix(m, c, "eps", n, K);
    if (!eps || check_finite(m, eps, "eps")) return NULL;
    PyArrayObject *z = new_matrix(m, n, K);
    if (!z) return NULL;
    Py_BEGIN_ALLOW_THREADS
    m->k->reparameterize(PyArray_DATA(z), PyArray_DATA(mu), PyArray_DATA(lv), PyArray_DATA(eps), (size_t)(n * K));
    Py_END_ALLOW_THREADS
    return (PyObject *)z;
}

static int check_beta(double beta)
{
    if (isfinite(beta) && beta >= 0) return 0;
    PyObject *b = PyFloat_FromDouble(beta);
    if (b) {
        PyErr_Format(PyExc_ValueError, "beta must be a finite number >= 0, got %R", b);
        Py_DECREF(b);
    }
    return -1;
}

/* eps for x's n rows: an (n, K) array for a VAE, None for a plain autoencoder; sets *eps (NULL for None) */
static int check_eps(ModelObject *m, PyObject *eps_obj, npy_intp n, int required, PyArrayObject **eps)
{
    *eps = NULL;
    if (!m->L.logvar.nw) {
        if (eps_obj == Py_None) return 0;
        PyErr_SetString(PyExc_TypeError, "eps must be None for a plain autoencoder (it has no noise)");
        return -1;
    }
    if (eps_obj == Py_None) {
        if (!required) return 0;
        PyErr_SetString(PyExc_TypeError, "eps must be an array for a VAE, got None");
        return -1;
    }
    *eps = check_matrix(m, eps_obj, "eps", n, m->L.cfg.K);
    return !*eps || check_finite(m, *eps, "eps") ? -1 : 0;
}

/* the shared body of loss and loss_and_grad; grads (P) or NULL. Returns 0 or -1 with an exception. */
static int loss_impl(ModelObject *m, PyObject *x_obj, double beta, PyObject *eps_obj, VaeStats *st, void *grads)
{
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, (npy_intp)m->L.D), *eps;
    if (!x || check_targets(m, x)) return -1;
    if (check_eps(m, eps_obj, PyArray_DIM(x, 0), 1, &eps) || check_beta(beta)) return -1;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = vae_loss_rows(m->k, &m->L, g_threads, PyArray_DATA(m->params), PyArray_DATA(x),
                        eps ? PyArray_DATA(eps) : NULL, (size_t)PyArray_DIM(x, 0), beta, st, grads);
    Py_END_ALLOW_THREADS
    if (err) {
        set_core_error(err, "loss");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(loss_doc,
"loss($self, x, beta, eps, /)\n--\n\n"
"(loss, recon, kl), batch means, for x (n, D) and eps (n, latent_dim) (None for a\n"
"plain autoencoder).");

static PyObject *Model_loss(ModelObject *m, PyObject *args)
{
    PyObject *x, *eps;
    double beta;
    if (!PyArg_ParseTuple(args, "OdO:loss", &x, &beta, &eps)) return NULL;
    VaeStats st;
    if (loss_impl(m, x, beta, eps, &st, NULL)) return NULL;
    return Py_BuildValue("(ddd)", st.loss, st.recon, st.kl);
}

PyDoc_STRVAR(loss_and_grad_doc,
"loss_and_grad($self, x, beta, eps, /)\n--\n\n"
"((loss, recon, kl), grad) with grad (num_params,) in the layout of params.");

static PyObject *Model_loss_and_grad(ModelObject *m, PyObject *args)
{
    PyObject *x, *eps;
    double beta;
    if (!PyArg_ParseTuple(args, "OdO:loss_and_grad", &x, &beta, &eps)) return NULL;
    npy_intp P = (npy_intp)m->L.num_params;
    PyArrayObject *grad = (PyArrayObject *)PyArray_EMPTY(1, &P, m->typenum, 0);
    if (!grad) return NULL;
    VaeStats st;
    if (loss_impl(m, x, beta, eps, &st, PyArray_DATA(grad))) {
        Py_DECREF(grad);
        return NULL;
    }
    return Py_BuildValue("(ddd)N", st.loss, st.recon, st.kl, grad);
}

/* an optimizer state array: (P,) of the model's dtype, contiguous, writeable,
 * sharing no memory with the parameters */
static PyArrayObject *check_state(ModelObject *m, PyObject *obj, const char *name)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %.200s", name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != m->typenum || !PyArray_ISNOTSWAPPED(a) || PyArray_NDIM(a) != 1 ||
        PyArray_DIM(a, 0) != (npy_intp)m->L.num_params || !PyArray_IS_C_CONTIGUOUS(a) ||
        !PyArray_ISALIGNED(a) || !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be a writeable, contiguous, native-byte-order %s array of shape (%zd,)",
                     name, dtype_name(m->typenum), (Py_ssize_t)m->L.num_params);
        return NULL;
    }
    if (overlaps(PyArray_DATA(a), nbytes(a), PyArray_DATA(m->params), nbytes(m->params))) {
        PyErr_Format(PyExc_ValueError, "%s must not share memory with the model's parameters", name);
        return NULL;
    }
    return a;
}

/* the step counter: a writeable int64 array of shape (1,) holding a count >= 0 */
static PyArrayObject *check_counter(PyObject *obj)
{
    PyArrayObject *a = PyArray_Check(obj) ? (PyArrayObject *)obj : NULL;
    if (!a || PyArray_TYPE(a) != NPY_INT64 || !PyArray_ISNOTSWAPPED(a) || PyArray_NDIM(a) != 1 ||
        PyArray_DIM(a, 0) != 1 || !PyArray_ISALIGNED(a) || !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_TypeError, "t must be a writeable numpy int64 array of shape (1,) (the step count), "
                     "got %.200s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    int64_t t = *(int64_t *)PyArray_DATA(a);
    if (t < 0 || t == INT64_MAX) {   /* the step writes t + 1: it must not wrap */
        PyErr_Format(PyExc_ValueError, "t must be in [0, 2**63 - 2] (the step advances it by one), got %lld",
                     (long long)t);
        return NULL;
    }
    return a;
}

/* the optimizer settings o, parsed from the tuple `items` whose lr, beta1, beta2, eps and momentum
 * start at index lr_at (for the messages); prefix starts each message ("" or "opt_g: ") */
static int check_optim(const VaeOptim *o, PyObject *items, Py_ssize_t lr_at, const char *prefix)
{
    PyObject *const *it = &PySequence_Fast_ITEMS(items)[lr_at];   /* lr, beta1, beta2, eps, momentum */
    if (o->kind != OPT_SGD && o->kind != OPT_ADAM)
        PyErr_Format(PyExc_ValueError, "%skind must be 0 (SGD) or 1 (Adam), got %d", prefix, o->kind);
    else if (!(isfinite(o->lr) && o->lr >= 0))
        PyErr_Format(PyExc_ValueError, "%slr must be a finite number >= 0, got %R", prefix, it[0]);
    else if (o->kind == OPT_ADAM && !(o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 && o->beta2 < 1 &&
                                      o->eps > 0 && isfinite(o->eps)))
        PyErr_Format(PyExc_ValueError, "%sAdam needs 0 <= beta1, beta2 < 1 and eps > 0, got %R, %R, %R", prefix,
                     it[1], it[2], it[3]);
    else if (!(o->momentum >= 0 && isfinite(o->momentum)))
        PyErr_Format(PyExc_ValueError, "%smomentum must be a finite number >= 0, got %R", prefix, it[4]);
    else if (isnan(o->clip_norm))
        PyErr_Format(PyExc_ValueError, "%sclip_norm must be a number (<= 0: no clipping), got nan", prefix);
    else
        return 0;
    return -1;
}

PyDoc_STRVAR(train_step_doc,
"train_step($self, x, beta, eps, kind, lr, beta1, beta2, adam_eps, momentum, clip_norm, t, s1, s2, /)\n--\n\n"
"One fused training step on x (n, D): forward, backward, optional global-norm\n"
"clipping (clip_norm > 0) and an optimizer update of params and its state arrays\n"
"s1, s2 (Adam, kind 1: m and v; SGD, kind 0: the momentum buffer in s1, s2 None).\n"
"t is the step counter, an int64 array of shape (1,) that the step advances. eps\n"
"None draws the noise from the model's generator. Returns (loss, recon, kl) before\n"
"the update; raises FloatingPointError, changing nothing, if the loss, the gradient\n"
"or the update is not finite.");

static PyObject *Model_train_step(ModelObject *m, PyObject *args)
{
    PyObject *x_obj, *eps_obj, *s1_obj, *s2_obj, *t_obj;
    VaeOptim opt;
    double beta;
    if (!PyArg_ParseTuple(args, "OdOiddddddOOO:train_step", &x_obj, &beta, &eps_obj, &opt.kind, &opt.lr,
                          &opt.beta1, &opt.beta2, &opt.eps, &opt.momentum, &opt.clip_norm, &t_obj, &s1_obj, &s2_obj))
        return NULL;
    const VaeLayout *L = &m->L;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, (npy_intp)L->D), *eps, *s1 = NULL, *s2 = NULL, *t;
    if (!x || check_targets(m, x)) return NULL;
    npy_intp n = PyArray_DIM(x, 0);
    if (check_eps(m, eps_obj, n, 0, &eps) || check_beta(beta)) return NULL;
    if (check_optim(&opt, args, 4, "")) return NULL;
    if (!(t = check_counter(t_obj))) return NULL;
    if (opt.kind == OPT_ADAM || s1_obj != Py_None) {
        if (!(s1 = check_state(m, s1_obj, "s1"))) return NULL;
    }
    if (opt.kind == OPT_ADAM) {
        if (!(s2 = check_state(m, s2_obj, "s2"))) return NULL;
        if (overlaps(PyArray_DATA(s1), nbytes(s1), PyArray_DATA(s2), nbytes(s2)))
            return PyErr_Format(PyExc_ValueError, "s1 and s2 must not share memory");
    }
    /* x, eps and t are read or written while the parameters change: they must alias none of them */
    PyArrayObject *inputs[3] = {x, eps, t}, *states[3] = {m->params, s1, s2};
    const char *names[3] = {"x", "eps", "t"};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (inputs[i] && states[j] &&
                overlaps(PyArray_DATA(inputs[i]), nbytes(inputs[i]), PyArray_DATA(states[j]), nbytes(states[j])))
                return PyErr_Format(PyExc_ValueError,
                                    "%s must not share memory with the parameters or optimizer state", names[i]);

    VaeStats st;
    int err;
    lock_model(m);
    Py_BEGIN_ALLOW_THREADS
    err = vae_train_rows(m->k, L, &m->sb, g_threads, PyArray_DATA(m->params), s1 ? PyArray_DATA(s1) : NULL,
                         s2 ? PyArray_DATA(s2) : NULL, (int64_t *)PyArray_DATA(t), &opt, PyArray_DATA(x),
                         eps ? PyArray_DATA(eps) : NULL, &m->rng, (size_t)n, beta, &st);
    Py_END_ALLOW_THREADS
    unlock_model(m);
    if (err) return set_core_error(err, "train_step");
    return Py_BuildValue("(ddd)", st.loss, st.recon, st.kl);
}

/* ------------------------------------------------------------ getters */

static PyObject *Model_get_params(ModelObject *m, void *Py_UNUSED(c))
{
    Py_INCREF(m->params);
    return (PyObject *)m->params;
}

static PyObject *Model_get_num_params(ModelObject *m, void *Py_UNUSED(c))
{
    return PyLong_FromSize_t(m->L.num_params);
}

static PyObject *Model_get_dtype(ModelObject *m, void *Py_UNUSED(c))
{
    return PyUnicode_FromString(dtype_name(m->typenum));
}

static PyObject *Model_get_rng_state(ModelObject *m, void *Py_UNUSED(c))
{
    Rng r;
    lock_model(m);
    r = m->rng;
    unlock_model(m);
    return Py_BuildValue("(KKKK)", (unsigned long long)r.s[0], (unsigned long long)r.s[1],
                         (unsigned long long)r.s[2], (unsigned long long)r.s[3]);
}

static int Model_set_rng_state(ModelObject *m, PyObject *value, void *Py_UNUSED(c))
{
    Rng r;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "rng_state cannot be deleted");
        return -1;
    }
    if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 4) {
        PyErr_Format(PyExc_ValueError, "rng_state must be a tuple of 4 ints in [0, 2**64), not all zero, got %R", value);
        return -1;
    }
    uint64_t any = 0;
    for (int i = 0; i < 4; i++) {
        PyObject *item = PyTuple_GET_ITEM(value, i);
        unsigned long long v = PyLong_Check(item) ? PyLong_AsUnsignedLongLong(item) : 0;
        if (!PyLong_Check(item) || PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "rng_state must be a tuple of 4 ints in [0, 2**64), not all zero, got %R", value);
            return -1;
        }
        r.s[i] = v;
        any |= v;
    }
    if (!any) {
        PyErr_SetString(PyExc_ValueError, "rng_state must not be all zero (xoshiro256** would stay at zero)");
        return -1;
    }
    lock_model(m);
    m->rng = r;
    unlock_model(m);
    return 0;
}

/* a stack's layer specs as a tuple of int tuples, as the constructor takes them */
static PyObject *stack_specs(const LayerSpec *specs, int n)
{
    PyObject *out = PyTuple_New(n);
    for (int i = 0; out && i < n; i++) {
        int k = specs[i].kind;
        PyObject *t = PyTuple_New(1 + LAYER_NARGS[k]);
        if (!t) { Py_CLEAR(out); break; }
        PyTuple_SET_ITEM(t, 0, PyLong_FromLong(k));
        for (int j = 0; j < LAYER_NARGS[k]; j++) PyTuple_SET_ITEM(t, j + 1, PyLong_FromLong(specs[i].arg[j]));
        PyTuple_SET_ITEM(out, i, t);
    }
    if (out && PyErr_Occurred()) Py_CLEAR(out);
    return out;
}

static PyObject *Model_get_config(ModelObject *m, void *Py_UNUSED(c))
{
    const VaeConfig *c = &m->L.cfg;
    PyObject *shape = c->input.rank == 1 ? Py_BuildValue("(i)", c->input.c)
                                         : Py_BuildValue("(iii)", c->input.c, c->input.h, c->input.w);
    PyObject *enc = stack_specs(c->enc, c->n_enc), *dec = stack_specs(c->dec, c->n_dec);
    if (!shape || !enc || !dec) {
        Py_XDECREF(shape); Py_XDECREF(enc); Py_XDECREF(dec);
        return NULL;
    }
    return Py_BuildValue("{s:N,s:i,s:N,s:N,s:s,s:O,s:s}", "input_shape", shape, "latent_dim", c->K,
                         "encoder", enc, "decoder", dec, "likelihood", LIK_NAMES[c->lik],
                         "variational", c->variational ? Py_True : Py_False, "dtype", dtype_name(m->typenum));
}

static PyMethodDef Model_methods[] = {
    {"layout", (PyCFunction)Model_layout, METH_NOARGS, layout_doc},
    {"normal", (PyCFunction)Model_normal, METH_VARARGS, normal_doc},
    {"encode", (PyCFunction)Model_encode, METH_O, encode_doc},
    {"decode", (PyCFunction)Model_decode, METH_VARARGS, decode_doc},
    {"reparameterize", (PyCFunction)Model_reparameterize, METH_VARARGS, reparameterize_doc},
    {"loss", (PyCFunction)Model_loss, METH_VARARGS, loss_doc},
    {"loss_and_grad", (PyCFunction)Model_loss_and_grad, METH_VARARGS, loss_and_grad_doc},
    {"train_step", (PyCFunction)Model_train_step, METH_VARARGS, train_step_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Model_getset[] = {
    {"params", (getter)Model_get_params, NULL, "(num_params,) the live parameter buffer", NULL},
    {"num_params", (getter)Model_get_num_params, NULL, "number of parameters", NULL},
    {"dtype", (getter)Model_get_dtype, NULL, "'float32' or 'float64'", NULL},
    {"config", (getter)Model_get_config, NULL, "the configuration as a dict", NULL},
    {"rng_state", (getter)Model_get_rng_state, (setter)Model_set_rng_state,
     "the xoshiro256** state of the model's generator, a tuple of 4 ints", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Model_doc,
"Model(input_shape, latent_dim, encoder, decoder, likelihood, variational, dtype, seed)\n"
"--\n\n"
"The low-level VAE (or, variational=False, plain autoencoder) of vaecore's C core:\n"
"an encoder stack, two linear heads, a decoder stack. Stacks are sequences of int\n"
"tuples (kind, args...) as vaecore.layers encodes them. Parameters start at zero;\n"
"vaecore.VAE initialises them. Use vaecore.VAE, not this.");

static PyType_Slot Model_slots[] = {
    {Py_tp_new, Model_new},
    {Py_tp_dealloc, Model_dealloc},
    {Py_tp_methods, Model_methods},
    {Py_tp_getset, Model_getset},
    {Py_tp_doc, (void *)Model_doc},
    {0, NULL},
};

static PyType_Spec Model_spec = {
    .name = "vaecore._core.Model",
    .basicsize = sizeof(ModelObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Model_slots,
};

/* ------------------------------------------------------------------ GAN */

/*
 * vaecore._core.Gan: a generator and a discriminator stack (gan.h) in one flat
 * parameter buffer. Its object starts with a ModelObject, so the helpers above
 * (checks, locking, the generator, params and dtype) serve it too: of the
 * base's VAE layout only cfg.K, D and num_params are set (to the GAN's), the
 * rest stays zero and unused.
 */
typedef struct {
    ModelObject base;
    GanLayout G;
    GanStepBuffers gsb;      /* train_step's buffers, allocated on first use */
} GanObject;

static PyObject *Gan_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"data_shape", "latent_dim", "generator", "discriminator", "dtype", "seed", NULL};
    int K;
    PyObject *shape, *gen, *disc, *seed_obj;
    const char *dtype;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiOOsO:Gan", kwlist, &shape, &K, &gen, &disc, &dtype, &seed_obj))
        return NULL;
    uint64_t seed;
    if (parse_seed(seed_obj, &seed, "seed")) return NULL;
    GanConfig *cfg = PyMem_Calloc(1, sizeof(GanConfig));
    GanObject *g = NULL;
    if (!cfg) { PyErr_NoMemory(); goto fail; }
    if (parse_shape(shape, &cfg->data, "data_shape")) goto fail;
    if (K < 1 || K > VAE_MAX_WIDTH) {
        PyErr_Format(PyExc_ValueError, "latent_dim must be in [1, %d], got %d", VAE_MAX_WIDTH, K);
        goto fail;
    }
    cfg->K = K;
    if (parse_stack(gen, cfg->gen, &cfg->n_gen, "generator") ||
        parse_stack(disc, cfg->disc, &cfg->n_disc, "discriminator"))
        goto fail;
    int typenum;
    if (parse_dtype(dtype, &typenum)) goto fail;
    g = (GanObject *)type->tp_alloc(type, 0);
    if (!g) goto fail;
    int err = gan_layout(&g->G, cfg);
    if (err) { set_core_error(err, "Gan"); goto fail; }
    const GanLayout *L = &g->G;
    if (L->num_params > (size_t)NPY_MAX_INTP / 8) { set_core_error(VAE_ERR_OVERFLOW, "Gan parameters"); goto fail; }
    ModelObject *m = &g->base;
    m->L.cfg.K = K;
    m->L.D = L->D;
    m->L.num_params = L->num_params;
    if (init_model(m, typenum, seed, L->num_params)) goto fail;
    PyMem_Free(cfg);
    return (PyObject *)g;
fail:
    PyMem_Free(cfg);
    Py_XDECREF(g);
    return NULL;
}

static void Gan_dealloc(GanObject *g)
{
    gan_step_buffers_free(&g->gsb);
    Model_dealloc(&g->base);
}

PyDoc_STRVAR(gan_layout_doc,
"layout($self, /)\n--\n\n"
"The parameter layout: a list of (name, offset, shape) in buffer order: gen.i.W and\n"
"gen.i.b for each generator layer i with parameters, then disc.i.W and disc.i.b.");

static PyObject *Gan_layout(GanObject *g, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    if (add_stack(list, "gen", &g->G.gen) || add_stack(list, "disc", &g->G.disc)) {
        Py_DECREF(list);
        return NULL;
    }
    return list;
}

PyDoc_STRVAR(generate_doc,
"generate($self, z, /)\n--\n\n"
"The generator's output G(z), (n, D), for z (n, latent_dim).");

static PyObject *Gan_generate(GanObject *g, PyObject *z_obj)
{
    ModelObject *m = &g->base;
    PyArrayObject *z = check_matrix(m, z_obj, "z", -1, g->G.cfg.K);
    if (!z || check_finite(m, z, "z")) return NULL;
    npy_intp n = PyArray_DIM(z, 0);
    PyArrayObject *out = new_matrix(m, n, (npy_intp)g->G.D);
    if (!out) return NULL;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = gan_generate_rows(m->k, &g->G, g_threads, PyArray_DATA(m->params), PyArray_DATA(z), (size_t)n,
                            PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (err) {
        Py_DECREF(out);
        return set_core_error(err, "generate");
    }
    return (PyObject *)out;
}

PyDoc_STRVAR(discriminate_doc,
"discriminate($self, x, /)\n--\n\n"
"The discriminator's logits D(x), (n, 1), for x (n, D).");

static PyObject *Gan_discriminate(GanObject *g, PyObject *x_obj)
{
    ModelObject *m = &g->base;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, (npy_intp)g->G.D);
    if (!x || check_finite(m, x, "x")) return NULL;
    npy_intp n = PyArray_DIM(x, 0);
    PyArrayObject *out = new_matrix(m, n, 1);
    if (!out) return NULL;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = gan_discriminate_rows(m->k, &g->G, g_threads, PyArray_DATA(m->params), PyArray_DATA(x), (size_t)n,
                                PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (err) {
        Py_DECREF(out);
        return set_core_error(err, "discriminate");
    }
    return (PyObject *)out;
}

/* a new (P,) gradient array when want, else NULL with *ok = 1; NULL with *ok = 0 on failure */
static PyArrayObject *new_grad(GanObject *g, int want, int *ok)
{
    *ok = 1;
    if (!want) return NULL;
    npy_intp P = (npy_intp)g->G.num_params;
    PyArrayObject *grad = (PyArrayObject *)PyArray_EMPTY(1, &P, g->base.typenum, 0);
    *ok = grad != NULL;
    return grad;
}

/* (stats, grad) or (stats, None) */
static PyObject *stats_and_grad(PyObject *stats, PyArrayObject *grad)
{
    if (!stats) {
        Py_XDECREF(grad);
        return NULL;
    }
    if (!grad) return Py_BuildValue("NO", stats, Py_None);
    return Py_BuildValue("NN", stats, grad);
}

PyDoc_STRVAR(d_loss_doc,
"d_loss($self, x, z, grad, /)\n--\n\n"
"((d_loss, acc_real, acc_fake), grad) for real rows x (n, D) and noise z (m, latent_dim):\n"
"d_loss = mean_i softplus(-D(x_i)) + mean_j softplus(D(G(z_j))); grad (num_params,) is\n"
"d d_loss / d params (zero on the generator's part) when grad is true, else None.");

static PyObject *Gan_d_loss(GanObject *g, PyObject *args)
{
    PyObject *x_obj, *z_obj;
    int want;
    if (!PyArg_ParseTuple(args, "OOp:d_loss", &x_obj, &z_obj, &want)) return NULL;
    ModelObject *m = &g->base;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, (npy_intp)g->G.D);
    if (!x || check_finite(m, x, "x")) return NULL;
    PyArrayObject *z = check_matrix(m, z_obj, "z", -1, g->G.cfg.K);
    if (!z || check_finite(m, z, "z")) return NULL;
    int ok;
    PyArrayObject *grad = new_grad(g, want, &ok);
    if (!ok) return NULL;
    GanStats st;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = gan_d_loss_rows(m->k, &g->G, g_threads, PyArray_DATA(m->params), PyArray_DATA(x),
                          (size_t)PyArray_DIM(x, 0), PyArray_DATA(z), (size_t)PyArray_DIM(z, 0), &st,
                          grad ? PyArray_DATA(grad) : NULL);
    Py_END_ALLOW_THREADS
    if (err) {
        Py_XDECREF(grad);
        return set_core_error(err, "d_loss");
    }
    return stats_and_grad(Py_BuildValue("(ddd)", st.d_loss, st.acc_real, st.acc_fake), grad);
}

PyDoc_STRVAR(g_loss_doc,
"g_loss($self, z, grad, /)\n--\n\n"
"(g_loss, grad) for noise z (m, latent_dim): g_loss = mean_j softplus(-D(G(z_j))); grad\n"
"(num_params,) is d g_loss / d params (zero on the discriminator's part) when grad is\n"
"true, else None.");

static PyObject *Gan_g_loss(GanObject *g, PyObject *args)
{
    PyObject *z_obj;
    int want;
    if (!PyArg_ParseTuple(args, "Op:g_loss", &z_obj, &want)) return NULL;
    ModelObject *m = &g->base;
    PyArrayObject *z = check_matrix(m, z_obj, "z", -1, g->G.cfg.K);
    if (!z || check_finite(m, z, "z")) return NULL;
    int ok;
    PyArrayObject *grad = new_grad(g, want, &ok);
    if (!ok) return NULL;
    GanStats st;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = gan_g_loss_rows(m->k, &g->G, g_threads, PyArray_DATA(m->params), PyArray_DATA(z),
                          (size_t)PyArray_DIM(z, 0), &st, grad ? PyArray_DATA(grad) : NULL);
    Py_END_ALLOW_THREADS
    if (err) {
        Py_XDECREF(grad);
        return set_core_error(err, "g_loss");
    }
    return stats_and_grad(PyFloat_FromDouble(st.g_loss), grad);
}

/* one network's optimizer from the tuple (kind, lr, beta1, beta2, eps, momentum, clip_norm, t, s1, s2)
 * (vaecore.Adam/SGD._core_args()); s1 and s2 must be (P,) state arrays (s2 may be None for SGD) */
static int parse_gan_optim(ModelObject *m, PyObject *obj, const char *name, GanOptState *o, PyArrayObject **arrays)
{
    PyObject *t_obj, *s1_obj, *s2_obj;
    VaeOptim *opt = &o->opt;
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 10) {
        PyErr_Format(PyExc_TypeError, "%s must be a tuple (kind, lr, beta1, beta2, eps, momentum, clip_norm, t, "
                     "s1, s2), got %.200s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (!PyArg_ParseTuple(obj, "iddddddOOO", &opt->kind, &opt->lr, &opt->beta1, &opt->beta2, &opt->eps,
                          &opt->momentum, &opt->clip_norm, &t_obj, &s1_obj, &s2_obj))
        return -1;
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s: ", name);
    if (check_optim(opt, obj, 1, prefix)) return -1;
    PyArrayObject *t = check_counter(t_obj), *s1, *s2 = NULL;
    if (!t || !(s1 = check_state(m, s1_obj, "s1"))) return -1;
    if (opt->kind == OPT_ADAM || s2_obj != Py_None) {
        if (!(s2 = check_state(m, s2_obj, "s2"))) return -1;
    }
    o->t = (int64_t *)PyArray_DATA(t);
    o->s1 = PyArray_DATA(s1);
    o->s2 = s2 ? PyArray_DATA(s2) : NULL;
    arrays[0] = t;
    arrays[1] = s1;
    arrays[2] = s2;
    return 0;
}

PyDoc_STRVAR(gan_train_step_doc,
"train_step($self, x, k, opt_g, opt_d, /)\n--\n\n"
"One training step on x (k * b, D): k discriminator updates, each on b real rows and b\n"
"fakes from fresh noise of the GAN's generator, then one generator update on the last\n"
"fakes. opt_g and opt_d are the two networks' optimizers as tuples (kind, lr, beta1,\n"
"beta2, eps, momentum, clip_norm, t, s1, s2). Returns (d_loss, g_loss, acc_real,\n"
"acc_fake) before the updates; raises FloatingPointError, changing nothing, if a loss,\n"
"a gradient or an update is not finite.");

static PyObject *Gan_train_step(GanObject *g, PyObject *args)
{
    PyObject *x_obj, *og_obj, *od_obj;
    int k;
    if (!PyArg_ParseTuple(args, "OiOO:train_step", &x_obj, &k, &og_obj, &od_obj)) return NULL;
    ModelObject *m = &g->base;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, (npy_intp)g->G.D);
    if (!x || check_finite(m, x, "x")) return NULL;
    npy_intp n = PyArray_DIM(x, 0);
    if (k < 1 || n % k)
        return PyErr_Format(PyExc_ValueError, "k must be an int >= 1 that divides the rows of x (%zd), got %d",
                            (Py_ssize_t)n, k);
    GanOptState og, od;
    PyArrayObject *arr[7] = {NULL};
    if (parse_gan_optim(m, og_obj, "opt_g", &og, arr) || parse_gan_optim(m, od_obj, "opt_d", &od, arr + 3))
        return NULL;
    arr[6] = m->params;
    /* nothing that the step reads or writes may share memory with anything it writes */
    const char *names[7] = {"opt_g's t", "opt_g's s1", "opt_g's s2", "opt_d's t", "opt_d's s1", "opt_d's s2",
                            "params"};
    for (int i = 0; i < 7; i++) {
        if (arr[i] && overlaps(PyArray_DATA(x), nbytes(x), PyArray_DATA(arr[i]), nbytes(arr[i])))
            return PyErr_Format(PyExc_ValueError, "x must not share memory with %s", names[i]);
        for (int j = i + 1; j < 7; j++)
            if (arr[i] && arr[j] && overlaps(PyArray_DATA(arr[i]), nbytes(arr[i]), PyArray_DATA(arr[j]), nbytes(arr[j])))
                return PyErr_Format(PyExc_ValueError, "%s must not share memory with %s", names[i], names[j]);
    }
    GanStats st;
    int err;
    lock_model(m);
    Py_BEGIN_ALLOW_THREADS
    err = gan_train_rows(m->k, &g->G, &g->gsb, g_threads, PyArray_DATA(m->params), &og, &od, PyArray_DATA(x),
                         (size_t)n, k, &m->rng, &st);
    Py_END_ALLOW_THREADS
    unlock_model(m);
    if (err) return set_core_error(err, "train_step");
    return Py_BuildValue("(dddd)", st.d_loss, st.g_loss, st.acc_real, st.acc_fake);
}

static PyObject *Gan_get_config(GanObject *g, void *Py_UNUSED(c))
{
    const GanConfig *c = &g->G.cfg;
    PyObject *shape = c->data.rank == 1 ? Py_BuildValue("(i)", c->data.c)
                                        : Py_BuildValue("(iii)", c->data.c, c->data.h, c->data.w);
    PyObject *gen = stack_specs(c->gen, c->n_gen), *disc = stack_specs(c->disc, c->n_disc);
    if (!shape || !gen || !disc) {
        Py_XDECREF(shape); Py_XDECREF(gen); Py_XDECREF(disc);
        return NULL;
    }
    return Py_BuildValue("{s:N,s:i,s:N,s:N,s:s}", "data_shape", shape, "latent_dim", c->K, "generator", gen,
                         "discriminator", disc, "dtype", dtype_name(g->base.typenum));
}

static PyObject *Gan_get_num_gen(GanObject *g, void *Py_UNUSED(c)) { return PyLong_FromSize_t(g->G.num_gen); }

static PyMethodDef Gan_methods[] = {
    {"layout", (PyCFunction)Gan_layout, METH_NOARGS, gan_layout_doc},
    {"normal", (PyCFunction)Model_normal, METH_VARARGS, normal_doc},
    {"generate", (PyCFunction)Gan_generate, METH_O, generate_doc},
    {"discriminate", (PyCFunction)Gan_discriminate, METH_O, discriminate_doc},
    {"d_loss", (PyCFunction)Gan_d_loss, METH_VARARGS, d_loss_doc},
    {"g_loss", (PyCFunction)Gan_g_loss, METH_VARARGS, g_loss_doc},
    {"train_step", (PyCFunction)Gan_train_step, METH_VARARGS, gan_train_step_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Gan_getset[] = {
    {"params", (getter)Model_get_params, NULL, "(num_params,) the live parameter buffer", NULL},
    {"num_params", (getter)Model_get_num_params, NULL, "number of parameters", NULL},
    {"num_gen_params", (getter)Gan_get_num_gen, NULL, "number of the generator's parameters (they come first)", NULL},
    {"dtype", (getter)Model_get_dtype, NULL, "'float32' or 'float64'", NULL},
    {"config", (getter)Gan_get_config, NULL, "the configuration as a dict", NULL},
    {"rng_state", (getter)Model_get_rng_state, (setter)Model_set_rng_state,
     "the xoshiro256** state of the GAN's generator of noise, a tuple of 4 ints", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Gan_doc,
"Gan(data_shape, latent_dim, generator, discriminator, dtype, seed)\n"
"--\n\n"
"The low-level GAN of vaecore's C core: a generator stack (latent_dim -> data) and a\n"
"discriminator stack (data -> one logit), in one flat parameter buffer (the\n"
"generator's first). Parameters start at zero; vaecore.GAN initialises them. Use\n"
"vaecore.GAN, not this.");

static PyType_Slot Gan_slots[] = {
    {Py_tp_new, Gan_new},
    {Py_tp_dealloc, Gan_dealloc},
    {Py_tp_methods, Gan_methods},
    {Py_tp_getset, Gan_getset},
    {Py_tp_doc, (void *)Gan_doc},
    {0, NULL},
};

static PyType_Spec Gan_spec = {
    .name = "vaecore._core.Gan",
    .basicsize = sizeof(GanObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Gan_slots,
};

/* ---------------------------------------------------------------- Stack */

/*
 * vaecore._core.Stack: one layer stack (stack.h) on its own flat parameter
 * buffer, with no loss attached: forward, the gradient for a given d loss /
 * d out, and Adam on the buffer. Its object starts with a ModelObject, as the
 * GAN's does, so the helpers above serve it too: of the base's VAE layout
 * only D and num_params are set, the rest stays zero and unused.
 */
typedef struct {
    ModelObject base;
    StackLayout S;
} StackObject;

static PyObject *Stack_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"input_shape", "layers", "dtype", "seed", NULL};
    PyObject *shape, *layers, *seed_obj;
    const char *dtype;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOsO:Stack", kwlist, &shape, &layers, &dtype, &seed_obj))
        return NULL;
    uint64_t seed;
    if (parse_seed(seed_obj, &seed, "seed")) return NULL;
    LayerSpec *specs = PyMem_Calloc(VAE_MAX_LAYERS, sizeof(LayerSpec));
    StackObject *s = NULL;
    VaeShape in;
    int n, typenum;
    if (!specs) { PyErr_NoMemory(); goto fail; }
    if (parse_shape(shape, &in, "input_shape") || parse_stack(layers, specs, &n, "layers") ||
        parse_dtype(dtype, &typenum))
        goto fail;
    s = (StackObject *)type->tp_alloc(type, 0);
    if (!s) goto fail;
    int err = stack_layout(&s->S, in, specs, n);
    if (err) { set_core_error(err, "Stack"); goto fail; }
    const StackLayout *L = &s->S;
    if (L->num_params > (size_t)NPY_MAX_INTP / 8) { set_core_error(VAE_ERR_OVERFLOW, "Stack parameters"); goto fail; }
    ModelObject *m = &s->base;
    m->L.D = L->D;
    m->L.num_params = L->num_params;
    if (init_model(m, typenum, seed, L->num_params)) goto fail;
    PyMem_Free(specs);
    return (PyObject *)s;
fail:
    PyMem_Free(specs);
    Py_XDECREF(s);
    return NULL;
}

PyDoc_STRVAR(stack_layout_doc,
"layout($self, /)\n--\n\n"
"The parameter layout: a list of (name, offset, shape) in buffer order: net.i.W and\n"
"net.i.b for each layer i with parameters.");

static PyObject *Stack_layout(StackObject *s, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(0);
    if (list && add_stack(list, "net", &s->S.st)) Py_CLEAR(list);
    return list;
}

PyDoc_STRVAR(stack_forward_doc,
"forward($self, x, /)\n--\n\n"
"The stack's output (n, output_dim) for x (n, input_dim) (images flattened).");

static PyObject *Stack_forward(StackObject *s, PyObject *x_obj)
{
    ModelObject *m = &s->base;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, (npy_intp)s->S.D);
    if (!x || check_finite(m, x, "x")) return NULL;
    npy_intp n = PyArray_DIM(x, 0);
    PyArrayObject *out = new_matrix(m, n, (npy_intp)s->S.O);
    if (!out) return NULL;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = stack_forward_rows(m->k, &s->S, g_threads, PyArray_DATA(m->params), PyArray_DATA(x), (size_t)n,
                             PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (err) {
        Py_DECREF(out);
        return set_core_error(err, "forward");
    }
    return (PyObject *)out;
}

PyDoc_STRVAR(stack_backward_doc,
"backward($self, x, dout, /)\n--\n\n"
"The gradient (num_params,) of a scalar loss whose gradient with respect to the\n"
"stack's output forward(x) is dout (n, output_dim): sum over the rows of\n"
"(d out_i / d params)^T dout_i. The forward pass of x (n, input_dim) is run anew.");

static PyObject *Stack_backward(StackObject *s, PyObject *args)
{
    PyObject *x_obj, *dout_obj;
    if (!PyArg_ParseTuple(args, "OO:backward", &x_obj, &dout_obj)) return NULL;
    ModelObject *m = &s->base;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, (npy_intp)s->S.D);
    if (!x || check_finite(m, x, "x")) return NULL;
    npy_intp n = PyArray_DIM(x, 0);
    PyArrayObject *dout = check_matrix(m, dout_obj, "dout", n, (npy_intp)s->S.O);
    if (!dout || check_finite(m, dout, "dout")) return NULL;
    npy_intp P = (npy_intp)s->S.num_params;
    PyArrayObject *grad = (PyArrayObject *)PyArray_EMPTY(1, &P, m->typenum, 0);
    if (!grad) return NULL;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = stack_backward_rows(m->k, &s->S, g_threads, PyArray_DATA(m->params), PyArray_DATA(x),
                              PyArray_DATA(dout), (size_t)n, PyArray_DATA(grad));
    Py_END_ALLOW_THREADS
    if (err) {
        Py_DECREF(grad);
        return set_core_error(err, "backward");
    }
    return (PyObject *)grad;
}

/* grads: a (P,) array of the stack's dtype, contiguous and aligned (it is only read) */
static PyArrayObject *check_grads(ModelObject *m, PyObject *obj)
{
    PyArrayObject *a = PyArray_Check(obj) ? (PyArrayObject *)obj : NULL;
    if (!a || PyArray_TYPE(a) != m->typenum || !PyArray_ISNOTSWAPPED(a) || PyArray_NDIM(a) != 1 ||
        PyArray_DIM(a, 0) != (npy_intp)m->L.num_params || !PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "grads must be a contiguous, native-byte-order %s numpy array of shape (%zd,), "
                     "got %.200s", dtype_name(m->typenum), (Py_ssize_t)m->L.num_params, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return a;
}

PyDoc_STRVAR(stack_adam_step_doc,
"adam_step($self, grads, m, v, t, lr, beta1, beta2, eps, /)\n--\n\n"
"One Adam step (Kingma & Ba 2015, with bias correction, as torch.optim.Adam) on the\n"
"parameters from grads (num_params,), with the moments m and v (num_params,) and the\n"
"step counter t (an int64 array of shape (1,)) updated in place. Raises\n"
"FloatingPointError, changing nothing, when grads holds a NaN or Inf or the update\n"
"would leave one.");

static PyObject *Stack_adam_step(StackObject *s, PyObject *args)
{
    PyObject *g_obj, *m_obj, *v_obj, *t_obj;
    VaeOptim opt = {OPT_ADAM, 0, 0, 0, 0, 0, 0};
    if (!PyArg_ParseTuple(args, "OOOOdddd:adam_step", &g_obj, &m_obj, &v_obj, &t_obj, &opt.lr, &opt.beta1,
                          &opt.beta2, &opt.eps))
        return NULL;
    ModelObject *mo = &s->base;
    if (check_optim(&opt, args, 4, "")) return NULL;   /* lr, beta1, beta2, eps at 4..7 (momentum is 0) */
    PyArrayObject *g = check_grads(mo, g_obj), *m, *v, *t;
    if (!g || !(m = check_state(mo, m_obj, "m")) || !(v = check_state(mo, v_obj, "v")) || !(t = check_counter(t_obj)))
        return NULL;
    /* grads, m, v and t are read or written while the parameters change: no two may share memory */
    PyArrayObject *arr[5] = {g, m, v, t, mo->params};
    const char *names[5] = {"grads", "m", "v", "t", "params"};
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (overlaps(PyArray_DATA(arr[i]), nbytes(arr[i]), PyArray_DATA(arr[j]), nbytes(arr[j])))
                return PyErr_Format(PyExc_ValueError, "%s must not share memory with %s", names[i], names[j]);
    int err;
    lock_model(mo);
    Py_BEGIN_ALLOW_THREADS
    err = stack_adam_step(mo->k, &s->S, g_threads, PyArray_DATA(mo->params), PyArray_DATA(m), PyArray_DATA(v),
                          PyArray_DATA(g), (int64_t *)PyArray_DATA(t), &opt);
    Py_END_ALLOW_THREADS
    unlock_model(mo);
    if (err) return set_core_error(err, "adam_step");
    Py_RETURN_NONE;
}

static PyObject *Stack_get_config(StackObject *s, void *Py_UNUSED(c))
{
    const StackLayout *L = &s->S;
    PyObject *shape = L->in.rank == 1 ? Py_BuildValue("(i)", L->in.c)
                                      : Py_BuildValue("(iii)", L->in.c, L->in.h, L->in.w);
    PyObject *layers = stack_specs(L->spec, L->n);
    if (!shape || !layers) {
        Py_XDECREF(shape); Py_XDECREF(layers);
        return NULL;
    }
    return Py_BuildValue("{s:N,s:N,s:s}", "input_shape", shape, "layers", layers, "dtype", dtype_name(s->base.typenum));
}

static PyObject *Stack_get_input_dim(StackObject *s, void *Py_UNUSED(c)) { return PyLong_FromSize_t(s->S.D); }
static PyObject *Stack_get_output_dim(StackObject *s, void *Py_UNUSED(c)) { return PyLong_FromSize_t(s->S.O); }

static PyMethodDef Stack_methods[] = {
    {"layout", (PyCFunction)Stack_layout, METH_NOARGS, stack_layout_doc},
    {"forward", (PyCFunction)Stack_forward, METH_O, stack_forward_doc},
    {"backward", (PyCFunction)Stack_backward, METH_VARARGS, stack_backward_doc},
    {"adam_step", (PyCFunction)Stack_adam_step, METH_VARARGS, stack_adam_step_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Stack_getset[] = {
    {"params", (getter)Model_get_params, NULL, "(num_params,) the live parameter buffer", NULL},
    {"num_params", (getter)Model_get_num_params, NULL, "number of parameters", NULL},
    {"input_dim", (getter)Stack_get_input_dim, NULL, "size of one input row (the input shape's product)", NULL},
    {"output_dim", (getter)Stack_get_output_dim, NULL, "size of one output row", NULL},
    {"dtype", (getter)Model_get_dtype, NULL, "'float32' or 'float64'", NULL},
    {"config", (getter)Stack_get_config, NULL, "the configuration as a dict", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Stack_doc,
"Stack(input_shape, layers, dtype, seed)\n"
"--\n\n"
"A lone layer stack of vaecore's C core on a flat parameter buffer, with no loss:\n"
"forward(x), backward(x, dout) -> the parameters' gradient, and adam_step. The\n"
"layers are tuples as vaecore.layers.encode gives them. Parameters start at zero.\n"
"vaecore.AutoregressivePrior uses it; use that, not this.");

static PyType_Slot Stack_slots[] = {
    {Py_tp_new, Stack_new},
    {Py_tp_dealloc, Model_dealloc},
    {Py_tp_methods, Stack_methods},
    {Py_tp_getset, Stack_getset},
    {Py_tp_doc, (void *)Stack_doc},
    {0, NULL},
};

static PyType_Spec Stack_spec = {
    .name = "vaecore._core.Stack",
    .basicsize = sizeof(StackObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Stack_slots,
};

/* ------------------------------------------------------------------ VQ-VAE */

/*
 * vaecore._core.VqVae: an encoder stack, a codebook and a decoder stack (vq.h)
 * in one flat parameter buffer. Like Gan, its object starts with a ModelObject
 * whose helpers serve it: of the base's VAE layout only D, num_params and
 * cfg.lik are set (to the VQ-VAE's), the rest stays zero and unused.
 */
typedef struct {
    ModelObject base;
    VqLayout V;
    VqStepBuffers vsb;       /* train_step's buffers, allocated on first use */
} VqObject;

static PyObject *Vq_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"input_shape", "codebook_size", "code_dim", "encoder", "decoder", "likelihood", "ema",
                             "dtype", "seed", NULL};
    int K, d, ema;
    PyObject *shape, *enc, *dec, *seed_obj;
    const char *lik, *dtype;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiiOOspsO:VqVae", kwlist, &shape, &K, &d, &enc, &dec, &lik, &ema,
                                     &dtype, &seed_obj))
        return NULL;
    uint64_t seed;
    if (parse_seed(seed_obj, &seed, "seed")) return NULL;
    VqConfig *cfg = PyMem_Calloc(1, sizeof(VqConfig));
    VqObject *q = NULL;
    if (!cfg) { PyErr_NoMemory(); goto fail; }
    if (parse_shape(shape, &cfg->input, "input_shape")) goto fail;
    if (K < 1 || K > VAE_MAX_WIDTH || d < 1 || d > VAE_MAX_WIDTH || (long long)K * d > VAE_MAX_WIDTH) {
        PyErr_Format(PyExc_ValueError, "codebook_size and code_dim must be in [1, %d] with a product of at most %d, "
                     "got %d and %d", VAE_MAX_WIDTH, VAE_MAX_WIDTH, K, d);
        goto fail;
    }
    cfg->K = K;
    cfg->d = d;
    cfg->ema = ema;
    if (parse_stack(enc, cfg->enc, &cfg->n_enc, "encoder") || parse_stack(dec, cfg->dec, &cfg->n_dec, "decoder"))
        goto fail;
    if ((cfg->lik = lookup_name(lik, LIK_NAMES, LIK_COUNT, "likelihood")) < 0) goto fail;
    int typenum;
    if (parse_dtype(dtype, &typenum)) goto fail;
    q = (VqObject *)type->tp_alloc(type, 0);
    if (!q) goto fail;
    int err = vq_layout(&q->V, cfg);
    if (err) { set_core_error(err, "VqVae"); goto fail; }
    const VqLayout *L = &q->V;
    if (L->num_params > (size_t)NPY_MAX_INTP / 8) { set_core_error(VAE_ERR_OVERFLOW, "VqVae parameters"); goto fail; }
    ModelObject *m = &q->base;
    m->L.D = L->D;
    m->L.num_params = L->num_params;
    m->L.cfg.lik = L->cfg.lik;
    if (init_model(m, typenum, seed, L->num_params)) goto fail;
    PyMem_Free(cfg);
    return (PyObject *)q;
fail:
    PyMem_Free(cfg);
    Py_XDECREF(q);
    return NULL;
}

static void Vq_dealloc(VqObject *q)
{
    vq_step_buffers_free(&q->vsb);
    Model_dealloc(&q->base);
}

PyDoc_STRVAR(vq_layout_doc,
"layout($self, /)\n--\n\n"
"The parameter layout: a list of (name, offset, shape) in buffer order: enc.i.W and\n"
"enc.i.b for each encoder layer i with parameters, vq.codebook (codebook_size,\n"
"code_dim), dec.i.W and dec.i.b, and dec.logvar for the learned variance.");

static PyObject *Vq_layout(VqObject *q, PyObject *Py_UNUSED(ignored))
{
    const VqLayout *L = &q->V;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    int cb[2] = {L->cfg.K, L->cfg.d}, D[1] = {(int)L->D};
    if (add_stack(list, "enc", &L->enc) || add_entry(list, "vq.codebook", L->codebook, 2, cb) ||
        add_stack(list, "dec", &L->dec) ||
        (L->cfg.lik == LIK_GAUSSIAN_LEARNED && add_entry(list, "dec.logvar", L->dec_logvar, 1, D))) {
        Py_DECREF(list);
        return NULL;
    }
    return list;
}

PyDoc_STRVAR(vq_encode_doc,
"encode($self, x, /)\n--\n\n"
"The encoder's output z_e, (n, E) with E = code_dim * positions, for x (n, D).");

static PyObject *Vq_encode(VqObject *q, PyObject *x_obj)
{
    ModelObject *m = &q->base;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, (npy_intp)q->V.D);
    if (!x || check_finite(m, x, "x")) return NULL;
    npy_intp n = PyArray_DIM(x, 0);
    PyArrayObject *out = new_matrix(m, n, (npy_intp)q->V.E);
    if (!out) return NULL;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = vq_encode_rows(m->k, &q->V, g_threads, PyArray_DATA(m->params), PyArray_DATA(x), (size_t)n,
                         PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (err) {
        Py_DECREF(out);
        return set_core_error(err, "encode");
    }
    return (PyObject *)out;
}

PyDoc_STRVAR(vq_nearest_doc,
"nearest($self, z_e, /)\n--\n\n"
"(codes, dist) for z_e (n, E): codes (n, positions) int64, the nearest codebook row of\n"
"every position (the lowest index on a tie), and dist (n, positions) its squared\n"
"Euclidean distance.");

static PyObject *Vq_nearest(VqObject *q, PyObject *z_obj)
{
    ModelObject *m = &q->base;
    const VqLayout *L = &q->V;
    PyArrayObject *ze = check_matrix(m, z_obj, "z_e", -1, (npy_intp)L->E);
    if (!ze || check_finite(m, ze, "z_e")) return NULL;
    npy_intp n = PyArray_DIM(ze, 0), dims[2] = {n, (npy_intp)L->S};
    PyArrayObject *codes = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_INT64, 0), *dist = new_matrix(m, n, dims[1]);
    int32_t *c32 = PyMem_Malloc((size_t)(n * dims[1]) * sizeof(int32_t) + 1);
    if (!codes || !dist || !c32) {
        Py_XDECREF(codes);
        Py_XDECREF(dist);
        PyMem_Free(c32);
        return c32 ? NULL : PyErr_NoMemory();
    }
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = vq_nearest_rows(m->k, L, g_threads, PyArray_DATA(m->params), PyArray_DATA(ze), (size_t)n, c32,
                          PyArray_DATA(dist));
    Py_END_ALLOW_THREADS
    int64_t *c64 = PyArray_DATA(codes);
    for (npy_intp i = 0; !err && i < n * dims[1]; i++) c64[i] = c32[i];
    PyMem_Free(c32);
    if (err) {
        Py_DECREF(codes);
        Py_DECREF(dist);
        return set_core_error(err, "nearest");
    }
    return Py_BuildValue("NN", codes, dist);
}

PyDoc_STRVAR(vq_decode_doc,
"decode($self, codes, logits=False, /)\n--\n\n"
"The decoder's output (n, D) for codes (n, positions), an int64 array of codebook\n"
"indices: the mean (gaussian), or the probabilities (bernoulli; the logits with\n"
"logits=True).");

static PyObject *Vq_decode(VqObject *q, PyObject *args)
{
    PyObject *c_obj;
    int logits = 0;
    if (!PyArg_ParseTuple(args, "O|p:decode", &c_obj, &logits)) return NULL;
    ModelObject *m = &q->base;
    const VqLayout *L = &q->V;
    PyArrayObject *c = PyArray_Check(c_obj) ? (PyArrayObject *)c_obj : NULL;
    if (!c || PyArray_TYPE(c) != NPY_INT64 || !PyArray_ISNOTSWAPPED(c) || PyArray_NDIM(c) != 2 ||
        PyArray_DIM(c, 1) != (npy_intp)L->S || PyArray_DIM(c, 0) < 1 || !PyArray_IS_C_CONTIGUOUS(c) ||
        !PyArray_ISALIGNED(c))
        return PyErr_Format(PyExc_TypeError, "codes must be a C-contiguous int64 numpy array of shape (n, %zd) with "
                            "n >= 1, got %R", (Py_ssize_t)L->S, c ? (PyObject *)PyArray_DESCR(c) : c_obj);
    npy_intp n = PyArray_DIM(c, 0), total = n * PyArray_DIM(c, 1);
    const int64_t *c64 = PyArray_DATA(c);
    for (npy_intp i = 0; i < total; i++)
        if (c64[i] < 0 || c64[i] >= L->cfg.K)
            return PyErr_Format(PyExc_ValueError, "codes must lie in [0, %d) (the codebook's rows): row %zd, "
                                "position %zd has %lld", L->cfg.K, (Py_ssize_t)(i / (npy_intp)L->S),
                                (Py_ssize_t)(i % (npy_intp)L->S), (long long)c64[i]);
    int32_t *c32 = PyMem_Malloc((size_t)total * sizeof(int32_t) + 1);
    PyArrayObject *out = c32 ? new_matrix(m, n, (npy_intp)L->D) : NULL;
    if (!out) {
        PyMem_Free(c32);
        return c32 ? NULL : PyErr_NoMemory();
    }
    for (npy_intp i = 0; i < total; i++) c32[i] = (int32_t)c64[i];
    int err, probs = L->cfg.lik == LIK_BERNOULLI && !logits;
    Py_BEGIN_ALLOW_THREADS
    err = vq_decode_rows(m->k, L, g_threads, PyArray_DATA(m->params), c32, (size_t)n, PyArray_DATA(out), probs);
    Py_END_ALLOW_THREADS
    PyMem_Free(c32);
    if (err) {
        Py_DECREF(out);
        return set_core_error(err, "decode");
    }
    return (PyObject *)out;
}

static int check_vq_hyper(const VqHyper *h)
{
    PyObject *a = PyFloat_FromDouble(h->commitment), *b = PyFloat_FromDouble(h->decay);
    int bad = 0;
    if (!a || !b) bad = 1;
    else if (!(isfinite(h->commitment) && h->commitment >= 0)) {
        PyErr_Format(PyExc_ValueError, "commitment must be a finite number >= 0, got %R", a);
        bad = 1;
    } else if (!(h->decay >= 0 && h->decay < 1)) {
        PyErr_Format(PyExc_ValueError, "decay must be in [0, 1), got %R", b);
        bad = 1;
    }
    Py_XDECREF(a);
    Py_XDECREF(b);
    return bad ? -1 : 0;
}

static PyObject *vq_stats(const VqStats *st)
{
    return Py_BuildValue("(ddddd)", st->loss, st->recon, st->commitment, st->codebook, st->perplexity);
}

PyDoc_STRVAR(vq_loss_doc,
"loss($self, x, commitment, grad, /)\n--\n\n"
"((loss, recon, commitment, codebook, perplexity), grad) for x (n, D): batch means of\n"
"recon + commitment * sum_s |z_e,s - sg(e)|^2 (+ sum_s |sg(z_e,s) - e|^2 when the\n"
"codebook learns by gradient), each term as it enters loss, and the perplexity of\n"
"the batch's codes; grad (num_params,) is d loss / d params (straight through z_q;\n"
"zero on the codebook with EMA) when grad is true, else None.");

static PyObject *Vq_loss(VqObject *q, PyObject *args)
{
    PyObject *x_obj;
    VqHyper h = {0, 0};
    int want;
    if (!PyArg_ParseTuple(args, "Odp:loss", &x_obj, &h.commitment, &want)) return NULL;
    ModelObject *m = &q->base;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, (npy_intp)q->V.D);
    if (!x || check_targets(m, x) || check_vq_hyper(&h)) return NULL;
    PyArrayObject *grad = NULL;
    if (want) {
        npy_intp P = (npy_intp)q->V.num_params;
        if (!(grad = (PyArrayObject *)PyArray_EMPTY(1, &P, m->typenum, 0))) return NULL;
    }
    VqStats st;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = vq_loss_rows(m->k, &q->V, g_threads, PyArray_DATA(m->params), PyArray_DATA(x), (size_t)PyArray_DIM(x, 0),
                       &h, &st, grad ? PyArray_DATA(grad) : NULL);
    Py_END_ALLOW_THREADS
    if (err) {
        Py_XDECREF(grad);
        return set_core_error(err, "loss");
    }
    return stats_and_grad(vq_stats(&st), grad);
}

/* a writeable, contiguous, aligned native array of typenum with n elements (any shape) */
static PyArrayObject *check_buffer(PyObject *obj, const char *name, int typenum, npy_intp n, const char *what)
{
    PyArrayObject *a = PyArray_Check(obj) ? (PyArrayObject *)obj : NULL;
    if (!a || PyArray_TYPE(a) != typenum || !PyArray_ISNOTSWAPPED(a) || PyArray_SIZE(a) != n ||
        !PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a) || !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be a writeable, contiguous, native-byte-order %s array of %zd "
                     "elements (%s)", name, typenum == NPY_INT64 ? "int64" : dtype_name(typenum), (Py_ssize_t)n,
                     what);
        return NULL;
    }
    return a;
}

PyDoc_STRVAR(vq_train_step_doc,
"train_step($self, x, commitment, decay, kind, lr, beta1, beta2, adam_eps, momentum, clip_norm, t, s1, s2,\n"
"           ema, usage, /)\n--\n\n"
"One fused training step on x (n, D): forward, backward, optional clipping, the\n"
"optimizer's update of params and its state (as Model.train_step), then, when the\n"
"codebook follows moving averages, their update: ema (codebook_size * (1 +\n"
"code_dim),) holds the averaged counts, then the averaged sums (codebook_size,\n"
"code_dim), and the codebook becomes their smoothed ratio (decay in [0, 1); ema\n"
"None without EMA). usage (codebook_size,) int64, or None, gets the batch's code\n"
"counts added. Returns the stats of loss() before the update; raises\n"
"FloatingPointError, changing nothing, if the loss, the gradient or an update is\n"
"not finite.");

static PyObject *Vq_train_step(VqObject *q, PyObject *args)
{
    PyObject *x_obj, *s1_obj, *s2_obj, *t_obj, *ema_obj, *usage_obj;
    VaeOptim opt;
    VqHyper h;
    if (!PyArg_ParseTuple(args, "OddiddddddOOOOO:train_step", &x_obj, &h.commitment, &h.decay, &opt.kind, &opt.lr,
                          &opt.beta1, &opt.beta2, &opt.eps, &opt.momentum, &opt.clip_norm, &t_obj, &s1_obj, &s2_obj,
                          &ema_obj, &usage_obj))
        return NULL;
    ModelObject *m = &q->base;
    const VqLayout *L = &q->V;
    const npy_intp K = L->cfg.K, d = L->cfg.d;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, (npy_intp)L->D), *s1 = NULL, *s2 = NULL, *t, *ema = NULL,
                  *usage = NULL;
    if (!x || check_targets(m, x) || check_vq_hyper(&h)) return NULL;
    if (check_optim(&opt, args, 4, "")) return NULL;
    if (!(t = check_counter(t_obj))) return NULL;
    if (opt.kind == OPT_ADAM || s1_obj != Py_None) {
        if (!(s1 = check_state(m, s1_obj, "s1"))) return NULL;
    }
    if (opt.kind == OPT_ADAM && !(s2 = check_state(m, s2_obj, "s2"))) return NULL;
    if (L->cfg.ema) {
        if (!(ema = check_buffer(ema_obj, "ema", m->typenum, K * (1 + d), "the averaged counts, then sums")))
            return NULL;
    } else if (ema_obj != Py_None) {
        return PyErr_Format(PyExc_TypeError, "ema must be None: this model's codebook learns by gradient");
    }
    if (usage_obj != Py_None && !(usage = check_buffer(usage_obj, "usage", NPY_INT64, K, "code counts")))
        return NULL;
    /* nothing the step reads or writes may share memory with anything it writes */
    PyArrayObject *arr[7] = {x, t, s1, s2, ema, usage, m->params};
    const char *names[7] = {"x", "t", "s1", "s2", "ema", "usage", "params"};
    for (int i = 0; i < 7; i++)
        for (int j = i + 1; j < 7; j++)
            if (arr[i] && arr[j] && overlaps(PyArray_DATA(arr[i]), nbytes(arr[i]), PyArray_DATA(arr[j]), nbytes(arr[j])))
                return PyErr_Format(PyExc_ValueError, "%s must not share memory with %s", names[i], names[j]);
    VqStats st;
    int err;
    lock_model(m);
    Py_BEGIN_ALLOW_THREADS
    err = vq_train_rows(m->k, L, &q->vsb, g_threads, PyArray_DATA(m->params), s1 ? PyArray_DATA(s1) : NULL,
                        s2 ? PyArray_DATA(s2) : NULL, (int64_t *)PyArray_DATA(t), &opt,
                        ema ? PyArray_DATA(ema) : NULL, usage ? (int64_t *)PyArray_DATA(usage) : NULL,
                        PyArray_DATA(x), (size_t)PyArray_DIM(x, 0), &h, &st);
    Py_END_ALLOW_THREADS
    unlock_model(m);
    if (err) return set_core_error(err, "train_step");
    return vq_stats(&st);
}

static PyObject *Vq_get_config(VqObject *q, void *Py_UNUSED(c))
{
    const VqConfig *c = &q->V.cfg;
    PyObject *shape = c->input.rank == 1 ? Py_BuildValue("(i)", c->input.c)
                                         : Py_BuildValue("(iii)", c->input.c, c->input.h, c->input.w);
    PyObject *enc = stack_specs(c->enc, c->n_enc), *dec = stack_specs(c->dec, c->n_dec);
    const VaeShape g = q->V.code;
    PyObject *grid = g.rank == 1 ? PyTuple_New(0) : Py_BuildValue("(ii)", g.h, g.w);
    if (!shape || !enc || !dec || !grid) {
        Py_XDECREF(shape); Py_XDECREF(enc); Py_XDECREF(dec); Py_XDECREF(grid);
        return NULL;
    }
    return Py_BuildValue("{s:N,s:i,s:i,s:N,s:N,s:s,s:O,s:s,s:N}", "input_shape", shape, "codebook_size", c->K,
                         "code_dim", c->d, "encoder", enc, "decoder", dec, "likelihood", LIK_NAMES[c->lik],
                         "ema", c->ema ? Py_True : Py_False, "dtype", dtype_name(q->base.typenum), "grid", grid);
}

static PyMethodDef Vq_methods[] = {
    {"layout", (PyCFunction)Vq_layout, METH_NOARGS, vq_layout_doc},
    {"encode", (PyCFunction)Vq_encode, METH_O, vq_encode_doc},
    {"nearest", (PyCFunction)Vq_nearest, METH_O, vq_nearest_doc},
    {"decode", (PyCFunction)Vq_decode, METH_VARARGS, vq_decode_doc},
    {"loss", (PyCFunction)Vq_loss, METH_VARARGS, vq_loss_doc},
    {"train_step", (PyCFunction)Vq_train_step, METH_VARARGS, vq_train_step_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Vq_getset[] = {
    {"params", (getter)Model_get_params, NULL, "(num_params,) the live parameter buffer", NULL},
    {"num_params", (getter)Model_get_num_params, NULL, "number of parameters", NULL},
    {"dtype", (getter)Model_get_dtype, NULL, "'float32' or 'float64'", NULL},
    {"config", (getter)Vq_get_config, NULL, "the configuration as a dict (grid: the code grid (h, w), or ())", NULL},
    {"rng_state", (getter)Model_get_rng_state, (setter)Model_set_rng_state,
     "the xoshiro256** state of the model's generator (unused by its steps), a tuple of 4 ints", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Vq_doc,
"VqVae(input_shape, codebook_size, code_dim, encoder, decoder, likelihood, ema, dtype, seed)\n"
"--\n\n"
"The low-level VQ-VAE of vaecore's C core: an encoder stack giving code_dim values per\n"
"position, a codebook (codebook_size, code_dim), a decoder stack, in one flat parameter\n"
"buffer. Parameters start at zero; vaecore.VQVAE initialises them. Use vaecore.VQVAE,\n"
"not this.");

static PyType_Slot Vq_slots[] = {
    {Py_tp_new, Vq_new},
    {Py_tp_dealloc, Vq_dealloc},
    {Py_tp_methods, Vq_methods},
    {Py_tp_getset, Vq_getset},
    {Py_tp_doc, (void *)Vq_doc},
    {0, NULL},
};

static PyType_Spec Vq_spec = {
    .name = "vaecore._core.VqVae",
    .basicsize = sizeof(VqObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Vq_slots,
};

/* ---------------------------------------------------- module functions */

PyDoc_STRVAR(set_num_threads_doc,
"set_num_threads(n, /)\n--\n\n"
"Let the matrix products of every model use up to n threads (1 to 256).\n"
"Results do not depend on n: threads split the columns of each product.");

static PyObject *core_set_num_threads(PyObject *Py_UNUSED(mod), PyObject *arg)
{
    long n = PyLong_Check(arg) && !PyBool_Check(arg) ? PyLong_AsLong(arg) : -1;
    if (n == -1 && PyErr_Occurred()) PyErr_Clear();
    if (n < 1 || n > VAE_MAX_THREADS)
        return PyErr_Format(PyExc_ValueError, "n must be an int in [1, %d], got %R", VAE_MAX_THREADS, arg);
#ifndef _OPENMP
    if (n > 1)
        return PyErr_Format(PyExc_ValueError, "this build of vaecore has no OpenMP: n must be 1, got %ld", n);
#endif
    g_threads = (int)n;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_num_threads_doc,
"get_num_threads($module, /)\n--\n\n"
"The number of threads the matrix products may use.");

static PyObject *core_get_num_threads(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(g_threads);
}

PyDoc_STRVAR(get_isa_doc,
"get_isa($module, /)\n--\n\n"
"The instruction set whose kernels run: 'baseline', 'avx2+fma' or 'avx512f+fma'.");

static PyObject *core_get_isa(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(ignored))
{
    return PyUnicode_FromString(vae_isa_name(g_isa));
}

PyDoc_STRVAR(set_isa_doc,
"set_isa(name, /)\n--\n\n"
"Make models created from now on (and matmul, activation, gemm_bench) run the kernels\n"
"of another instruction set ('baseline' always works; the\n"
"others only where the CPU has them). For tests and benchmarks.");

static PyObject *core_set_isa(PyObject *Py_UNUSED(mod), PyObject *arg)
{
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (!name) {
        PyErr_Clear();
        return PyErr_Format(PyExc_TypeError, "name must be a str, got %.200s", Py_TYPE(arg)->tp_name);
    }
    for (int isa = 0; isa < ISA_COUNT; isa++) {
        if (strcmp(name, vae_isa_name(isa)) == 0) {
            if (isa > vae_isa())
                return PyErr_Format(PyExc_ValueError, "this CPU cannot run '%s' (the best it has is '%s')",
                                    name, vae_isa_name(vae_isa()));
            g_isa = isa;
            Py_RETURN_NONE;
        }
    }
    return PyErr_Format(PyExc_ValueError, "name must be 'baseline', 'avx2+fma' or 'avx512f+fma', got '%s'", name);
}

/* a 2-D C-contiguous float32/float64 array, borrowed, or NULL with an exception */
static PyArrayObject *check_float_matrix(PyObject *obj, const char *name)
{
    if (!PyArray_Check(obj))
        return (PyArrayObject *)PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %.200s",
                                             name, Py_TYPE(obj)->tp_name);
    PyArrayObject *a = (PyArrayObject *)obj;
    int tn = PyArray_TYPE(a);
    if ((tn != NPY_FLOAT && tn != NPY_DOUBLE) || !PyArray_ISNOTSWAPPED(a) || PyArray_NDIM(a) != 2 ||
        !PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a))
        return (PyArrayObject *)PyErr_Format(PyExc_TypeError,
                                             "%s must be a 2-D C-contiguous, aligned, native-byte-order "
                                             "float32 or float64 array", name);
    return a;
}

PyDoc_STRVAR(matmul_doc,
"matmul(a, b, trans_a=False, trans_b=False, reference=False, /)\n--\n\n"
"op(a) @ op(b) by the C core's fast gemm, or by its plain triple loop with\n"
"reference=True (op transposes when trans_* is true). For tests and benchmarks.");

static PyObject *core_matmul(PyObject *Py_UNUSED(mod), PyObject *args)
{
    PyObject *ao, *bo;
    int ta = 0, tb = 0, ref = 0;
    if (!PyArg_ParseTuple(args, "OO|ppp:matmul", &ao, &bo, &ta, &tb, &ref)) return NULL;
    PyArrayObject *a = check_float_matrix(ao, "a"), *b = a ? check_float_matrix(bo, "b") : NULL;
    if (!a || !b) return NULL;
    if (PyArray_TYPE(a) != PyArray_TYPE(b)) return PyErr_Format(PyExc_TypeError, "a and b must have the same dtype");
    npy_intp M = ta ? PyArray_DIM(a, 1) : PyArray_DIM(a, 0), K = ta ? PyArray_DIM(a, 0) : PyArray_DIM(a, 1);
    npy_intp Kb = tb ? PyArray_DIM(b, 1) : PyArray_DIM(b, 0), N = tb ? PyArray_DIM(b, 0) : PyArray_DIM(b, 1);
    if (K != Kb)
        return PyErr_Format(PyExc_ValueError, "inner dimensions differ: op(a) is (%zd, %zd), op(b) is (%zd, %zd)",
                            (Py_ssize_t)M, (Py_ssize_t)K, (Py_ssize_t)Kb, (Py_ssize_t)N);
    int tn = PyArray_TYPE(a);
    const VaeKernels *k = vae_kernels(tn == NPY_DOUBLE, g_isa);
    npy_intp dims[2] = {M, N};
    PyArrayObject *c = (PyArrayObject *)PyArray_ZEROS(2, dims, tn, 0);
    if (!c) return NULL;
    int threads = g_threads;
    size_t pack_len = vae_pack_len((size_t)N);
    void *pack = malloc(pack_len * (size_t)threads * k->itemsize + 1);
    if (!pack) {
        Py_DECREF(c);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    k->matmul(PyArray_DATA(c), PyArray_DATA(a), PyArray_DATA(b), (size_t)M, (size_t)N, (size_t)K, ta, tb, ref,
              pack, pack_len, threads);
    Py_END_ALLOW_THREADS
    free(pack);
    return (PyObject *)c;
}

PyDoc_STRVAR(activation_doc,
"activation(a, name, /)\n--\n\n"
"A copy of the 2-D float array a passed through the named activation exactly as\n"
"the layers compute it (the vectorized exp-based versions). For tests.");

static PyObject *core_activation(PyObject *Py_UNUSED(mod), PyObject *args)
{
    PyObject *ao;
    const char *name;
    if (!PyArg_ParseTuple(args, "Os:activation", &ao, &name)) return NULL;
    PyArrayObject *a = check_float_matrix(ao, "a");
    if (!a) return NULL;
    int act = lookup_name(name, ACT_NAMES, ACT_COUNT, "name");
    if (act < 0) return NULL;
    PyArrayObject *out = (PyArrayObject *)PyArray_NewCopy(a, NPY_CORDER);
    if (!out) return NULL;
    vae_kernels(PyArray_TYPE(a) == NPY_DOUBLE, g_isa)->activation(PyArray_DATA(out), (size_t)PyArray_SIZE(out), act);
    return (PyObject *)out;
}

PyDoc_STRVAR(gemm_bench_doc,
"gemm_bench(M, N, K, repeats=10, dtype='float32', trans_a=False, trans_b=False, /)\n--\n\n"
"Seconds per call of the fast gemm C (M, N) = op(A) (M, K) @ op(B) (K, N), the best of\n"
"repeats calls on buffers allocated and touched once (so no allocation or page\n"
"fault is timed), with the current thread count; A is stored (K, M) when trans_a\n"
"and B (N, K) when trans_b, as matmul's. For benchmarks.");

static PyObject *core_gemm_bench(PyObject *Py_UNUSED(mod), PyObject *args)
{
    Py_ssize_t M, N, K, repeats = 10;
    const char *dtype = "float32";
    int ta = 0, tb = 0;
    if (!PyArg_ParseTuple(args, "nnn|nspp:gemm_bench", &M, &N, &K, &repeats, &dtype, &ta, &tb)) return NULL;
    if (M < 1 || N < 1 || K < 1 || M > 65536 || N > 65536 || K > 65536)
        return PyErr_Format(PyExc_ValueError, "M, N and K must be in [1, 65536], got %zd, %zd, %zd", M, N, K);
    if (repeats < 1 || repeats > 1000000)
        return PyErr_Format(PyExc_ValueError, "repeats must be in [1, 1000000], got %zd", repeats);
    int is_double;
    if (strcmp(dtype, "float32") == 0) is_double = 0;
    else if (strcmp(dtype, "float64") == 0) is_double = 1;
    else return PyErr_Format(PyExc_ValueError, "dtype must be 'float32' or 'float64', got '%s'", dtype);
    const VaeKernels *k = vae_kernels(is_double, g_isa);
    int threads = g_threads;
    double best;
    Py_BEGIN_ALLOW_THREADS
    best = vae_gemm_bench(k, (size_t)M, (size_t)N, (size_t)K, ta, tb, (int)repeats, threads);
    Py_END_ALLOW_THREADS
    if (best < 0) return PyErr_NoMemory();
    return PyFloat_FromDouble(best);
}

PyDoc_STRVAR(profile_doc,
"profile($module, on, /)\n--\n\n"
"Start (on=True, from zero) or stop the per-phase profile of training steps, and\n"
"return what it holds: {'steps': n, 'total': {phase: seconds}, 'gemm': {...},\n"
"'pack': {...}, 'check': seconds, 'norm': seconds} with phases 'noise', 'forward',\n"
"'loss', 'backward', 'optimizer'; check: Adam's finiteness check (part of the\n"
"optimizer), norm: the gradient's squared norm (part of backward) (vae.h's\n"
"VaeProfile). One profile for the process: meant for one model training at a\n"
"time. For benchmarks.");

static PyObject *core_profile(PyObject *Py_UNUSED(mod), PyObject *arg)
{
    static const char *phases[PROF_PHASES] = {"noise", "forward", "loss", "backward", "optimizer"};
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    VaeProfile p = vae_profile;
    if (on) {
        memset(&vae_profile, 0, sizeof vae_profile);
        vae_profile.phase = PROF_NOISE;
    }
    vae_profile_on = on;
    PyObject *parts[3] = {NULL, NULL, NULL}, *result = NULL;
    const double *src[3] = {p.total, p.gemm, p.pack};
    for (int k = 0; k < 3; k++) {
        if (!(parts[k] = PyDict_New())) goto done;
        for (int ph = 0; ph < PROF_PHASES; ph++) {
            PyObject *v = PyFloat_FromDouble(src[k][ph]);
            int err = v ? PyDict_SetItemString(parts[k], phases[ph], v) : -1;
            Py_XDECREF(v);
            if (err) goto done;
        }
    }
    result = Py_BuildValue("{s:l,s:O,s:O,s:O,s:d,s:d}", "steps", p.steps, "total", parts[0], "gemm", parts[1],
                           "pack", parts[2], "check", p.check, "norm", p.norm);
done:
    for (int k = 0; k < 3; k++) Py_XDECREF(parts[k]);
    return result;
}

static PyMethodDef core_methods[] = {
    {"gemm_bench", (PyCFunction)core_gemm_bench, METH_VARARGS, gemm_bench_doc},
    {"profile", (PyCFunction)core_profile, METH_O, profile_doc},
    {"set_num_threads", (PyCFunction)core_set_num_threads, METH_O, set_num_threads_doc},
    {"get_num_threads", (PyCFunction)core_get_num_threads, METH_NOARGS, get_num_threads_doc},
    {"get_isa", (PyCFunction)core_get_isa, METH_NOARGS, get_isa_doc},
    {"set_isa", (PyCFunction)core_set_isa, METH_O, set_isa_doc},
    {"matmul", (PyCFunction)core_matmul, METH_VARARGS, matmul_doc},
    {"activation", (PyCFunction)core_activation, METH_VARARGS, activation_doc},
    {NULL, NULL, 0, NULL},
};

/* -------------------------------------------------------------- module */

static int add_names(PyObject *module, const char *attr, const char **names, int n)
{
    PyObject *t = PyTuple_New(n);
    for (int i = 0; t && i < n; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s) { Py_CLEAR(t); break; }
        PyTuple_SET_ITEM(t, i, s);
    }
    if (!t) return -1;
    if (PyModule_AddObject(module, attr, t) < 0) { Py_DECREF(t); return -1; }
    return 0;
}

static int core_exec(PyObject *module)
{
    if (PyArray_ImportNumPyAPI() < 0) return -1;
    g_isa = vae_isa();
    PyObject *type = PyType_FromModuleAndSpec(module, &Model_spec, NULL);
    if (!type) return -1;
    if (PyModule_AddObject(module, "Model", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    PyObject *gan_type = PyType_FromModuleAndSpec(module, &Gan_spec, NULL);
    if (!gan_type) return -1;
    if (PyModule_AddObject(module, "Gan", gan_type) < 0) {
        Py_DECREF(gan_type);
        return -1;
    }
    PyObject *vq_type = PyType_FromModuleAndSpec(module, &Vq_spec, NULL);
    if (!vq_type) return -1;
    if (PyModule_AddObject(module, "VqVae", vq_type) < 0) {
        Py_DECREF(vq_type);
        return -1;
    }
    PyObject *stack_type = PyType_FromModuleAndSpec(module, &Stack_spec, NULL);
    if (!stack_type) return -1;
    if (PyModule_AddObject(module, "Stack", stack_type) < 0) {
        Py_DECREF(stack_type);
        return -1;
    }
    if (add_names(module, "ACTIVATIONS", ACT_NAMES, ACT_COUNT) || add_names(module, "LIKELIHOODS", LIK_NAMES, LIK_COUNT))
        return -1;
    if (PyModule_AddIntConstant(module, "MAX_HIDDEN_LAYERS", VAE_MAX_HIDDEN) < 0) return -1;
    if (PyModule_AddIntConstant(module, "MAX_LAYERS", VAE_MAX_LAYERS) < 0) return -1;
    if (PyModule_AddIntConstant(module, "MAX_WIDTH", VAE_MAX_WIDTH) < 0) return -1;
#ifdef _OPENMP
    if (PyModule_AddIntConstant(module, "HAVE_OPENMP", 1) < 0) return -1;
#else
    if (PyModule_AddIntConstant(module, "HAVE_OPENMP", 0) < 0) return -1;
#endif
    return 0;
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
    {0, NULL},
};

PyDoc_STRVAR(core_doc,
"vaecore._core: the C core of vaecore (forward, backward, reparameterized\n"
"sampling, losses and optimizers on contiguous float32/float64 arrays).");

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "vaecore._core",
    .m_doc = core_doc,
    .m_size = 0,
    .m_methods = core_methods,
    .m_slots = core_slots,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&core_module); }
