/*
 * _core.c: the only file of vaecore that speaks the CPython and NumPy C APIs.
 *
 * It defines one type, vaecore._core.Model, that owns a model's flat
 * parameter array (a NumPy array: the live buffer), its gradient and work
 * buffers, its random number generator and its lock, and calls the plain-C
 * kernels of vae.h. Every argument is checked here before C touches memory
 * (type, dtype, contiguity, alignment, shape, NaN/Inf, aliasing), and every C
 * error code becomes a Python exception whose message names the argument, what
 * was expected and what was given.
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
#include <time.h>

#include <numpy/arrayobject.h>
/* NumPy pulls in <complex.h>, whose I macro would clash with the layer width I of vae.h */
#undef I

#include "vae.h"

/* rows per chunk for the read-only calls, so their buffers stay small */
#define CHUNK_ROWS 256

static const char *ACT_NAMES[ACT_COUNT] = {"tanh", "relu", "leaky_relu", "sigmoid", "elu"};
static const char *LIK_NAMES[LIK_COUNT] = {"gaussian", "bernoulli"};

typedef struct {
    PyObject_HEAD
    VaeLayout L;
    int typenum;             /* NPY_FLOAT or NPY_DOUBLE */
    size_t itemsize;
    PyArrayObject *params;   /* (P,) the live parameter buffer */
    void *grads;             /* (P,) train_step's gradient, allocated on first use */
    void *ws;                /* train_step's work buffer */
    size_t ws_len;           /* its capacity in elements */
    Rng rng;
    PyThread_type_lock lock;
} ModelObject;

/* the instruction set whose kernels run (vae_isa() at import; settable for
 * tests) and the threads gemm may use (vaecore.set_num_threads) */
static int g_isa = ISA_DEFAULT;
static int g_threads = 1;

/* calls the kernel for the model's dtype and the chosen instruction set */
#ifdef VAE_X86
#define DISPATCH(m, fn, ...)                                                            \
    ((m)->typenum == NPY_FLOAT                                                          \
         ? (g_isa == ISA_AVX512 ? fn##_f32_avx512(__VA_ARGS__)                          \
            : g_isa == ISA_AVX2 ? fn##_f32_avx2(__VA_ARGS__) : fn##_f32(__VA_ARGS__))   \
         : (g_isa == ISA_AVX512 ? fn##_f64_avx512(__VA_ARGS__)                          \
            : g_isa == ISA_AVX2 ? fn##_f64_avx2(__VA_ARGS__) : fn##_f64(__VA_ARGS__)))
#else
#define DISPATCH(m, fn, ...) \
    ((m)->typenum == NPY_FLOAT ? fn##_f32(__VA_ARGS__) : fn##_f64(__VA_ARGS__))
#endif

/* ---------------------------------------------------------------- errors */

static PyObject *set_core_error(int err, const char *what)
{
    switch (err) {
    case VAE_ERR_CONFIG:
        PyErr_Format(PyExc_ValueError, "%s: invalid model configuration", what); break;
    case VAE_ERR_OVERFLOW:
        PyErr_Format(PyExc_MemoryError, "%s: the requested size is too large to address", what); break;
    case VAE_ERR_NOMEM:
        PyErr_Format(PyExc_MemoryError, "%s: out of memory", what); break;
    case VAE_ERR_NONFINITE_LOSS:
        PyErr_Format(PyExc_FloatingPointError,
                     "%s: the loss is NaN or Inf; the update was not applied "
                     "(lower the learning rate, clip gradients, or check the data)", what); break;
    case VAE_ERR_NONFINITE_GRAD:
        PyErr_Format(PyExc_FloatingPointError,
                     "%s: the gradient holds NaN or Inf; the update was not applied "
                     "(lower the learning rate, clip gradients, or check the data)", what); break;
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
static PyArrayObject *check_matrix(ModelObject *m, PyObject *obj, const char *name,
                                   npy_intp rows, npy_intp cols)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %.200s",
                     name, Py_TYPE(obj)->tp_name);
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
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous and aligned "
                     "(use numpy.ascontiguousarray)", name);
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

static int check_finite(ModelObject *m, PyArrayObject *a, const char *name)
{
    size_t n = (size_t)PyArray_SIZE(a);
    ptrdiff_t bad = DISPATCH(m, vae_find_nonfinite, PyArray_DATA(a), n);
    if (bad >= 0) {
        npy_intp cols = PyArray_DIM(a, 1);
        PyErr_Format(PyExc_ValueError, "%s must be finite, got NaN or Inf at [%zd, %zd]",
                     name, (Py_ssize_t)(bad / cols), (Py_ssize_t)(bad % cols));
        return -1;
    }
    return 0;
}

/* x must be finite, and in [0, 1] for a Bernoulli likelihood */
static int check_targets(ModelObject *m, PyArrayObject *x)
{
    if (check_finite(m, x, "x")) return -1;
    if (m->L.cfg.lik == LIK_BERNOULLI) {
        ptrdiff_t bad = DISPATCH(m, vae_find_outside_unit, PyArray_DATA(x), (size_t)PyArray_SIZE(x));
        if (bad >= 0) {
            npy_intp cols = PyArray_DIM(x, 1);
            PyErr_Format(PyExc_ValueError, "x must lie in [0, 1] for the bernoulli likelihood, "
                         "got a value outside at [%zd, %zd]",
                         (Py_ssize_t)(bad / cols), (Py_ssize_t)(bad % cols));
            return -1;
        }
    }
    return 0;
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

/* malloc a work buffer for `rows` rows; sets MemoryError on failure */
static void *alloc_work(ModelObject *m, VaeWork *W, size_t rows)
{
    int err = vae_work(W, &m->L, rows, g_threads);
    if (err || W->total > SIZE_MAX / m->itemsize) {
        set_core_error(VAE_ERR_OVERFLOW, "work buffer");
        return NULL;
    }
    void *ws = malloc(W->total * m->itemsize + 1);
    if (!ws) PyErr_NoMemory();
    return ws;
}

/* --------------------------------------------------------- construction */

static int parse_widths(PyObject *seq, int *out, int *n, const char *name)
{
    PyObject *fast = PySequence_Fast(seq, "");
    if (!fast) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of positive ints, got %.200s",
                     name, Py_TYPE(seq)->tp_name);
        return -1;
    }
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    if (len > VAE_MAX_HIDDEN) {
        PyErr_Format(PyExc_ValueError, "%s may have at most %d layers, got %zd",
                     name, VAE_MAX_HIDDEN, len);
        Py_DECREF(fast);
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        long v = PyLong_Check(item) && !PyBool_Check(item) ? PyLong_AsLong(item) : -1;
        if (v == -1 && PyErr_Occurred()) PyErr_Clear();
        if (v < 1 || v > VAE_MAX_WIDTH) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be an int in [1, %d], got %R",
                         name, i, VAE_MAX_WIDTH, item);
            Py_DECREF(fast);
            return -1;
        }
        out[i] = (int)v;
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
    PyErr_Format(PyExc_ValueError, "%s must be one of %U, got '%s'", what,
                 choices ? choices : Py_None, s);
    Py_XDECREF(choices);
    return -1;
}

static PyObject *Model_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"input_dim", "latent_dim", "enc_hidden", "dec_hidden",
                             "activation", "likelihood", "variational", "dtype", "seed", NULL};
    int D, K, variational;
    PyObject *enc, *dec;
    const char *act, *lik, *dtype;
    PyObject *seed_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiOOsspsO:Model", kwlist, &D, &K, &enc, &dec,
                                     &act, &lik, &variational, &dtype, &seed_obj))
        return NULL;
    unsigned long long seed = PyLong_Check(seed_obj) ? PyLong_AsUnsignedLongLong(seed_obj) : (unsigned long long)-1;
    if (!PyLong_Check(seed_obj) || PyErr_Occurred()) {
        PyErr_Clear();
        return PyErr_Format(PyExc_ValueError, "seed must be an int in [0, 2**64), got %R", seed_obj);
    }
    VaeConfig cfg = {0};
    if (D < 1 || D > VAE_MAX_WIDTH) return PyErr_Format(PyExc_ValueError, "input_dim must be in [1, %d], got %d", VAE_MAX_WIDTH, D);
    if (K < 1 || K > VAE_MAX_WIDTH) return PyErr_Format(PyExc_ValueError, "latent_dim must be in [1, %d], got %d", VAE_MAX_WIDTH, K);
    cfg.D = D;
    cfg.K = K;
    cfg.variational = variational;
    if (parse_widths(enc, cfg.enc_h, &cfg.n_enc, "enc_hidden")) return NULL;
    if (parse_widths(dec, cfg.dec_h, &cfg.n_dec, "dec_hidden")) return NULL;
    if ((cfg.act = lookup_name(act, ACT_NAMES, ACT_COUNT, "activation")) < 0) return NULL;
    if ((cfg.lik = lookup_name(lik, LIK_NAMES, LIK_COUNT, "likelihood")) < 0) return NULL;
    int typenum;
    if (strcmp(dtype, "float32") == 0) typenum = NPY_FLOAT;
    else if (strcmp(dtype, "float64") == 0) typenum = NPY_DOUBLE;
    else return PyErr_Format(PyExc_ValueError, "dtype must be 'float32' or 'float64', got '%s'", dtype);

    VaeLayout L;
    int err = vae_layout(&L, &cfg);
    if (err) return set_core_error(err, "Model");
    if (L.num_params > (size_t)NPY_MAX_INTP / 8)
        return set_core_error(VAE_ERR_OVERFLOW, "Model parameters");

    ModelObject *m = (ModelObject *)type->tp_alloc(type, 0);
    if (!m) return NULL;
    m->L = L;
    m->typenum = typenum;
    m->itemsize = typenum == NPY_FLOAT ? sizeof(float) : sizeof(double);
    rng_seed(&m->rng, (uint64_t)seed);
    m->lock = PyThread_allocate_lock();
    if (!m->lock) {
        Py_DECREF(m);
        return PyErr_NoMemory();
    }
    npy_intp P = (npy_intp)L.num_params;
    m->params = (PyArrayObject *)PyArray_ZEROS(1, &P, typenum, 0);
    if (!m->params) {
        Py_DECREF(m);
        return NULL;
    }
    return (PyObject *)m;
}

static void Model_dealloc(ModelObject *m)
{
    PyTypeObject *tp = Py_TYPE(m);
    Py_XDECREF(m->params);
    free(m->grads);
    free(m->ws);
    if (m->lock) PyThread_free_lock(m->lock);
    tp->tp_free((PyObject *)m);
    Py_DECREF(tp);
}

/* ------------------------------------------------------------- methods */

PyDoc_STRVAR(layout_doc,
"layout($self, /)\n--\n\n"
"The parameter layout: a list of (name, offset, shape) in buffer order.");

static PyObject *Model_layout(ModelObject *m, PyObject *Py_UNUSED(ignored))
{
    const VaeLayout *L = &m->L;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    for (int l = 0; l < L->n_layers; l++) {
        const LinearSlot *s = &L->layer[l];
        char base[32];
        if (l < L->mu) snprintf(base, sizeof base, "enc.%d", l);
        else if (l == L->mu) snprintf(base, sizeof base, "enc.mu");
        else if (l == L->logvar) snprintf(base, sizeof base, "enc.logvar");
        else if (l < L->out) snprintf(base, sizeof base, "dec.%d", l - L->dec0);
        else snprintf(base, sizeof base, "dec.out");
        PyObject *w = Py_BuildValue("(s#n(ii))", NULL, (Py_ssize_t)0, (Py_ssize_t)s->w, s->I, s->O);
        PyObject *b = Py_BuildValue("(s#n(i))", NULL, (Py_ssize_t)0, (Py_ssize_t)s->b, s->O);
        PyObject *wn = PyUnicode_FromFormat("%s.W", base), *bn = PyUnicode_FromFormat("%s.b", base);
        int bad = !w || !b || !wn || !bn;
        if (!bad) {
            PyTuple_SetItem(w, 0, wn); wn = NULL;   /* steals; replaces the None */
            PyTuple_SetItem(b, 0, bn); bn = NULL;
            bad = PyList_Append(list, w) || PyList_Append(list, b);
        }
        Py_XDECREF(w); Py_XDECREF(b); Py_XDECREF(wn); Py_XDECREF(bn);
        if (bad) { Py_DECREF(list); return NULL; }
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
    if (n < 1) return PyErr_Format(PyExc_ValueError, "n must be a positive int, got %zd", n);
    Rng local;
    if (seed != Py_None) {
        unsigned long long s = PyLong_Check(seed) ? PyLong_AsUnsignedLongLong(seed) : (unsigned long long)-1;
        if (PyErr_Occurred() || !PyLong_Check(seed)) {
            PyErr_Clear();
            return PyErr_Format(PyExc_ValueError, "seed must be None or an int in [0, 2**64), got %R", seed);
        }
        rng_seed(&local, s);
    }
    PyArrayObject *out = new_matrix(m, n, m->L.cfg.K);
    if (!out) return NULL;
    size_t count = (size_t)PyArray_SIZE(out);
    void *data = PyArray_DATA(out);
    if (seed == Py_None) {
        lock_model(m);
        Py_BEGIN_ALLOW_THREADS
        DISPATCH(m, vae_normal, data, count, &m->rng);
        Py_END_ALLOW_THREADS
        unlock_model(m);
    } else {
        Py_BEGIN_ALLOW_THREADS
        DISPATCH(m, vae_normal, data, count, &local);
        Py_END_ALLOW_THREADS
    }
    return (PyObject *)out;
}

PyDoc_STRVAR(encode_doc,
"encode($self, x, /)\n--\n\n"
"(mu, logvar) for x (n, input_dim), each (n, latent_dim); logvar is None for\n"
"a plain autoencoder.");

static PyObject *Model_encode(ModelObject *m, PyObject *x_obj)
{
    const VaeLayout *L = &m->L;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, L->cfg.D);
    if (!x || check_finite(m, x, "x")) return NULL;
    npy_intp n = PyArray_DIM(x, 0);
    PyArrayObject *mu = NULL, *lv = NULL;
    VaeWork W;
    void *ws = NULL;
    mu = new_matrix(m, n, L->cfg.K);
    if (!mu) goto fail;
    if (L->logvar >= 0 && !(lv = new_matrix(m, n, L->cfg.K))) goto fail;
    if (!(ws = alloc_work(m, &W, n < CHUNK_ROWS ? (size_t)n : CHUNK_ROWS))) goto fail;
    Py_BEGIN_ALLOW_THREADS
    const size_t D = (size_t)L->cfg.D, K = (size_t)L->cfg.K;
    for (size_t r = 0; r < (size_t)n; r += CHUNK_ROWS) {
        size_t rows = (size_t)n - r < CHUNK_ROWS ? (size_t)n - r : CHUNK_ROWS;
        vae_work(&W, L, rows, W.threads);
        DISPATCH(m, vae_encode, L, &W, ws, PyArray_DATA(m->params),
                 (void *)((char *)PyArray_DATA(x) + r * D * m->itemsize), rows);
        memcpy((char *)PyArray_DATA(mu) + r * K * m->itemsize,
               (char *)ws + W.mu * m->itemsize, rows * K * m->itemsize);
        if (lv)
            memcpy((char *)PyArray_DATA(lv) + r * K * m->itemsize,
                   (char *)ws + W.logvar * m->itemsize, rows * K * m->itemsize);
    }
    Py_END_ALLOW_THREADS
    free(ws);
    if (!lv) { Py_INCREF(Py_None); lv = (PyArrayObject *)Py_None; }
    return Py_BuildValue("NN", mu, lv);
fail:
    free(ws);
    Py_XDECREF(mu);
    Py_XDECREF(lv);
    return NULL;
}

PyDoc_STRVAR(decode_doc,
"decode($self, z, logits=False, /)\n--\n\n"
"The decoder output for z (n, latent_dim), (n, input_dim): the mean (gaussian),\n"
"or the probabilities (bernoulli; the logits with logits=True).");

static PyObject *Model_decode(ModelObject *m, PyObject *args)
{
    PyObject *z_obj;
    int logits = 0;
    if (!PyArg_ParseTuple(args, "O|p:decode", &z_obj, &logits)) return NULL;
    const VaeLayout *L = &m->L;
    PyArrayObject *z = check_matrix(m, z_obj, "z", -1, L->cfg.K);
    if (!z || check_finite(m, z, "z")) return NULL;
    npy_intp n = PyArray_DIM(z, 0);
    VaeWork W;
    void *ws = NULL;
    PyArrayObject *out = new_matrix(m, n, L->cfg.D);
    if (!out) return NULL;
    if (!(ws = alloc_work(m, &W, n < CHUNK_ROWS ? (size_t)n : CHUNK_ROWS))) {
        Py_DECREF(out);
        return NULL;
    }
    int probs = L->cfg.lik == LIK_BERNOULLI && !logits;
    Py_BEGIN_ALLOW_THREADS
    const size_t D = (size_t)L->cfg.D, K = (size_t)L->cfg.K, isz = m->itemsize;
    for (size_t r = 0; r < (size_t)n; r += CHUNK_ROWS) {
        size_t rows = (size_t)n - r < CHUNK_ROWS ? (size_t)n - r : CHUNK_ROWS;
        vae_work(&W, L, rows, W.threads);
        memcpy((char *)ws + W.z * isz, (char *)PyArray_DATA(z) + r * K * isz, rows * K * isz);
        DISPATCH(m, vae_decode, L, &W, ws, PyArray_DATA(m->params), rows);
        char *dst = (char *)PyArray_DATA(out) + r * D * isz;
        memcpy(dst, (char *)ws + W.out * isz, rows * D * isz);
        if (probs) DISPATCH(m, vae_sigmoid, (void *)dst, rows * D);
    }
    Py_END_ALLOW_THREADS
    free(ws);
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
    DISPATCH(m, vae_reparameterize, PyArray_DATA(z), PyArray_DATA(mu), PyArray_DATA(lv),
             PyArray_DATA(eps), (size_t)(n * K));
    Py_END_ALLOW_THREADS
    return (PyObject *)z;
}

/* the shared body of loss and loss_and_grad: x (n, D), eps (n, K) or None
 * (an autoencoder), grads (P) or NULL. Returns 0 or -1 with an exception. */
static int loss_impl(ModelObject *m, PyObject *x_obj, double beta, PyObject *eps_obj,
                     VaeStats *st, void *grads)
{
    const VaeLayout *L = &m->L;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, L->cfg.D);
    if (!x || check_targets(m, x)) return -1;
    npy_intp n = PyArray_DIM(x, 0);
    PyArrayObject *eps = NULL;
    if (L->logvar >= 0) {
        if (eps_obj == Py_None) {
            PyErr_SetString(PyExc_TypeError, "eps must be an array for a VAE, got None");
            return -1;
        }
        eps = check_matrix(m, eps_obj, "eps", n, L->cfg.K);
        if (!eps || check_finite(m, eps, "eps")) return -1;
    } else if (eps_obj != Py_None) {
        PyErr_SetString(PyExc_TypeError, "eps must be None for a plain autoencoder (it has no noise)");
        return -1;
    }
    if (!isfinite(beta) || beta < 0) {
        PyObject *b = PyFloat_FromDouble(beta);
        if (b) {
            PyErr_Format(PyExc_ValueError, "beta must be a finite number >= 0, got %R", b);
            Py_DECREF(b);
        }
        return -1;
    }
    VaeWork W;
    void *ws = alloc_work(m, &W, n < CHUNK_ROWS ? (size_t)n : CHUNK_ROWS);
    if (!ws) return -1;
    st->recon = st->kl = 0;
    Py_BEGIN_ALLOW_THREADS
    const size_t D = (size_t)L->cfg.D, K = (size_t)L->cfg.K, isz = m->itemsize;
    const void *params = PyArray_DATA(m->params);
    for (size_t r = 0; r < (size_t)n; r += CHUNK_ROWS) {
        size_t rows = (size_t)n - r < CHUNK_ROWS ? (size_t)n - r : CHUNK_ROWS;
        const void *xr = (char *)PyArray_DATA(x) + r * D * isz;
        vae_work(&W, L, rows, W.threads);
        if (eps) memcpy((char *)ws + W.eps * isz, (char *)PyArray_DATA(eps) + r * K * isz, rows * K * isz);
        DISPATCH(m, vae_forward, L, &W, ws, params, xr, rows);
        DISPATCH(m, vae_loss, st, L, &W, ws, xr, rows, beta);
        if (grads) DISPATCH(m, vae_backward, grads, L, &W, ws, params, xr, rows, beta, 1.0 / (double)n,
                            r > 0, NULL);
    }
    Py_END_ALLOW_THREADS
    free(ws);
    st->recon /= (double)n;
    st->kl /= (double)n;
    st->loss = st->recon + beta * st->kl;
    return 0;
}

PyDoc_STRVAR(loss_doc,
"loss($self, x, beta, eps, /)\n--\n\n"
"(loss, recon, kl), batch means, for x (n, input_dim) and eps (n, latent_dim)\n"
"(None for a plain autoencoder).");

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

PyDoc_STRVAR(train_step_doc,
"train_step($self, x, beta, eps, kind, lr, beta1, beta2, adam_eps, momentum, clip_norm, t, s1, s2, /)\n--\n\n"
"One fused training step on x (n, input_dim): forward, backward, optional\n"
"global-norm clipping (clip_norm > 0) and an optimizer update of params and its\n"
"state arrays s1, s2 (Adam, kind 1: m and v; SGD, kind 0: the momentum buffer in\n"
"s1, s2 None). t is the number of steps taken before. eps None draws the noise\n"
"from the model's generator. Returns (loss, recon, kl) before the update; raises\n"
"FloatingPointError, updating nothing, if the loss or gradient is not finite.");

static PyObject *Model_train_step(ModelObject *m, PyObject *args)
{
    PyObject *x_obj, *eps_obj, *s1_obj, *s2_obj;
    VaeOptim opt;
    long long t;
    double beta;
    if (!PyArg_ParseTuple(args, "OdOiddddddLOO:train_step", &x_obj, &beta, &eps_obj, &opt.kind,
                          &opt.lr, &opt.beta1, &opt.beta2, &opt.eps, &opt.momentum,
                          &opt.clip_norm, &t, &s1_obj, &s2_obj))
        return NULL;
    opt.t = t;
    const VaeLayout *L = &m->L;
    PyArrayObject *x = check_matrix(m, x_obj, "x", -1, L->cfg.D);
    if (!x || check_targets(m, x)) return NULL;
    npy_intp n = PyArray_DIM(x, 0);
    PyArrayObject *eps = NULL, *s1 = NULL, *s2 = NULL;
    if (eps_obj != Py_None) {
        if (L->logvar < 0)
            return PyErr_Format(PyExc_TypeError, "eps must be None for a plain autoencoder (it has no noise)");
        eps = check_matrix(m, eps_obj, "eps", n, L->cfg.K);
        if (!eps || check_finite(m, eps, "eps")) return NULL;
    }
    if (!isfinite(beta) || beta < 0)
        return PyErr_Format(PyExc_ValueError, "beta must be a finite number >= 0, got %R", PyTuple_GET_ITEM(args, 1));
    if (opt.kind != OPT_SGD && opt.kind != OPT_ADAM)
        return PyErr_Format(PyExc_ValueError, "kind must be 0 (SGD) or 1 (Adam), got %d", opt.kind);
    if (!(isfinite(opt.lr) && opt.lr >= 0))
        return PyErr_Format(PyExc_ValueError, "lr must be a finite number >= 0, got %R", PyTuple_GET_ITEM(args, 4));
    if (opt.kind == OPT_ADAM && !(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1 && opt.eps > 0 && isfinite(opt.eps)))
        return PyErr_Format(PyExc_ValueError, "Adam needs 0 <= beta1, beta2 < 1 and eps > 0, got %R, %R, %R",
                            PyTuple_GET_ITEM(args, 5), PyTuple_GET_ITEM(args, 6), PyTuple_GET_ITEM(args, 7));
    if (!(opt.momentum >= 0 && isfinite(opt.momentum)))
        return PyErr_Format(PyExc_ValueError, "momentum must be a finite number >= 0, got %R", PyTuple_GET_ITEM(args, 8));
    if (isnan(opt.clip_norm))
        return PyErr_Format(PyExc_ValueError, "clip_norm must be a number (<= 0: no clipping), got nan");
    if (t < 0) return PyErr_Format(PyExc_ValueError, "t must be >= 0, got %lld", t);
    if (opt.kind == OPT_ADAM || s1_obj != Py_None) {
        if (!(s1 = check_state(m, s1_obj, "s1"))) return NULL;
    }
    if (opt.kind == OPT_ADAM) {
        if (!(s2 = check_state(m, s2_obj, "s2"))) return NULL;
        if (overlaps(PyArray_DATA(s1), nbytes(s1), PyArray_DATA(s2), nbytes(s2)))
            return PyErr_Format(PyExc_ValueError, "s1 and s2 must not share memory");
    }
    /* x and eps are read after the parameters change only if they alias them */
    const void *pdata = PyArray_DATA(m->params);
    size_t pbytes = nbytes(m->params);
    if (overlaps(PyArray_DATA(x), nbytes(x), pdata, pbytes) ||
        (s1 && overlaps(PyArray_DATA(x), nbytes(x), PyArray_DATA(s1), nbytes(s1))) ||
        (s2 && overlaps(PyArray_DATA(x), nbytes(x), PyArray_DATA(s2), nbytes(s2))))
        return PyErr_Format(PyExc_ValueError, "x must not share memory with the parameters or optimizer state");
    if (eps && (overlaps(PyArray_DATA(eps), nbytes(eps), pdata, pbytes) ||
                (s1 && overlaps(PyArray_DATA(eps), nbytes(eps), PyArray_DATA(s1), nbytes(s1))) ||
                (s2 && overlaps(PyArray_DATA(eps), nbytes(eps), PyArray_DATA(s2), nbytes(s2)))))
        return PyErr_Format(PyExc_ValueError, "eps must not share memory with the parameters or optimizer state");

    VaeWork W;
    int err = vae_work(&W, L, (size_t)n, g_threads);
    if (err || W.total > SIZE_MAX / m->itemsize) return set_core_error(VAE_ERR_OVERFLOW, "train_step");

    lock_model(m);
    /* buffers are allocated on the first step and grown for a larger batch only */
    if (!m->grads) m->grads = malloc(L->num_params * m->itemsize + 1);
    if (m->grads && m->ws_len < W.total) {
        void *bigger = malloc(W.total * m->itemsize);
        if (bigger) {
            free(m->ws);
            m->ws = bigger;
            m->ws_len = W.total;
        }
    }
    if (!m->grads || m->ws_len < W.total) {
        unlock_model(m);
        return PyErr_NoMemory();
    }
    VaeStats st;
    Rng rng_before = m->rng;
    Py_BEGIN_ALLOW_THREADS
    const size_t nk = (size_t)n * (size_t)L->cfg.K, isz = m->itemsize;
    void *ws_eps = (char *)m->ws + W.eps * isz;
    if (eps) memcpy(ws_eps, PyArray_DATA(eps), nk * isz);
    else if (L->logvar >= 0) DISPATCH(m, vae_normal, ws_eps, nk, &m->rng);
    err = DISPATCH(m, vae_train_step, &st, L, &W, m->ws, PyArray_DATA(m->params), m->grads,
                   s1 ? PyArray_DATA(s1) : NULL, s2 ? PyArray_DATA(s2) : NULL, &opt,
                   PyArray_DATA(x), (size_t)n, beta);
    if (err) m->rng = rng_before;   /* a step that is not applied does not use up its noise either */
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

static PyObject *Model_get_config(ModelObject *m, void *Py_UNUSED(c))
{
    const VaeConfig *c = &m->L.cfg;
    PyObject *enc = PyTuple_New(c->n_enc), *dec = PyTuple_New(c->n_dec);
    if (!enc || !dec) goto fail;
    for (int i = 0; i < c->n_enc; i++) PyTuple_SET_ITEM(enc, i, PyLong_FromLong(c->enc_h[i]));
    for (int i = 0; i < c->n_dec; i++) PyTuple_SET_ITEM(dec, i, PyLong_FromLong(c->dec_h[i]));
    if (PyErr_Occurred()) goto fail;
    return Py_BuildValue("{s:i,s:i,s:N,s:N,s:s,s:s,s:O,s:s}", "input_dim", c->D, "latent_dim", c->K,
                         "enc_hidden", enc, "dec_hidden", dec, "activation", ACT_NAMES[c->act],
                         "likelihood", LIK_NAMES[c->lik], "variational", c->variational ? Py_True : Py_False,
                         "dtype", dtype_name(m->typenum));
fail:
    Py_XDECREF(enc);
    Py_XDECREF(dec);
    return NULL;
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
"Model(input_dim, latent_dim, enc_hidden, dec_hidden, activation, likelihood, variational, dtype, seed)\n"
"--\n\n"
"The low-level VAE (or, variational=False, plain autoencoder) of vaecore's C core.\n"
"Parameters start at zero; vaecore.VAE initialises them. Use vaecore.VAE, not this.");

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
"Run the kernels of another instruction set ('baseline' always works; the\n"
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
    if (PyArray_TYPE(a) != PyArray_TYPE(b))
        return PyErr_Format(PyExc_TypeError, "a and b must have the same dtype");
    npy_intp M = ta ? PyArray_DIM(a, 1) : PyArray_DIM(a, 0), K = ta ? PyArray_DIM(a, 0) : PyArray_DIM(a, 1);
    npy_intp Kb = tb ? PyArray_DIM(b, 1) : PyArray_DIM(b, 0), N = tb ? PyArray_DIM(b, 0) : PyArray_DIM(b, 1);
    if (K != Kb)
        return PyErr_Format(PyExc_ValueError, "inner dimensions differ: op(a) is (%zd, %zd), op(b) is (%zd, %zd)",
                            (Py_ssize_t)M, (Py_ssize_t)K, (Py_ssize_t)Kb, (Py_ssize_t)N);
    int tn = PyArray_TYPE(a);
    size_t isz = tn == NPY_FLOAT ? sizeof(float) : sizeof(double);
    npy_intp dims[2] = {M, N};
    PyArrayObject *c = (PyArrayObject *)PyArray_ZEROS(2, dims, tn, 0);
    if (!c) return NULL;
    int threads = g_threads;
    size_t pack_len = vae_pack_len((size_t)N);
    void *pack = malloc(pack_len * (size_t)threads * isz + 1);
    if (!pack) {
        Py_DECREF(c);
        return PyErr_NoMemory();
    }
    ModelObject fake;   /* DISPATCH reads only typenum */
    fake.typenum = tn;
    ModelObject *m = &fake;
    Py_BEGIN_ALLOW_THREADS
    DISPATCH(m, vae_matmul, PyArray_DATA(c), PyArray_DATA(a), PyArray_DATA(b), (size_t)M, (size_t)N, (size_t)K,
             ta, tb, ref, pack, pack_len, threads);
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
    ModelObject fake;
    fake.typenum = PyArray_TYPE(a);
    ModelObject *m = &fake;
    DISPATCH(m, vae_activation, PyArray_DATA(out), (size_t)PyArray_SIZE(out), act);
    return (PyObject *)out;
}

PyDoc_STRVAR(gemm_bench_doc,
"gemm_bench(M, N, K, repeats=10, dtype='float32', /)\n--\n\n"
"Seconds per call of the fast gemm C (M, N) = A (M, K) @ B (K, N), the best of\n"
"repeats calls on buffers allocated and touched once (so no allocation or page\n"
"fault is timed), with the current thread count. For benchmarks.");

static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static PyObject *core_gemm_bench(PyObject *Py_UNUSED(mod), PyObject *args)
{
    Py_ssize_t M, N, K, repeats = 10;
    const char *dtype = "float32";
    if (!PyArg_ParseTuple(args, "nnn|ns:gemm_bench", &M, &N, &K, &repeats, &dtype)) return NULL;
    if (M < 1 || N < 1 || K < 1 || M > 65536 || N > 65536 || K > 65536)
        return PyErr_Format(PyExc_ValueError, "M, N and K must be in [1, 65536], got %zd, %zd, %zd", M, N, K);
    if (repeats < 1) return PyErr_Format(PyExc_ValueError, "repeats must be >= 1, got %zd", repeats);
    ModelObject fake;
    if (strcmp(dtype, "float32") == 0) fake.typenum = NPY_FLOAT;
    else if (strcmp(dtype, "float64") == 0) fake.typenum = NPY_DOUBLE;
    else return PyErr_Format(PyExc_ValueError, "dtype must be 'float32' or 'float64', got '%s'", dtype);
    ModelObject *m = &fake;
    size_t isz = fake.typenum == NPY_FLOAT ? sizeof(float) : sizeof(double);
    int threads = g_threads;
    size_t pack_len = vae_pack_len((size_t)N);
    size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    char *buf = malloc((na + nb + nc + pack_len * (size_t)threads) * isz);
    if (!buf) return PyErr_NoMemory();
    double best = 1e300;
    Py_BEGIN_ALLOW_THREADS
    Rng rng;
    rng_seed(&rng, 1);
    DISPATCH(m, vae_normal, (void *)buf, na + nb, &rng);
    memset(buf + (na + nb) * isz, 0, (nc + pack_len * (size_t)threads) * isz);
    void *A = buf, *B = buf + na * isz, *C = buf + (na + nb) * isz, *pack = buf + (na + nb + nc) * isz;
    for (Py_ssize_t r = 0; r <= repeats; r++) {
        double t0 = monotonic_seconds();
        DISPATCH(m, vae_matmul, C, A, B, (size_t)M, (size_t)N, (size_t)K, 0, 0, 0, pack, pack_len, threads);
        double dt = monotonic_seconds() - t0;
        if (r > 0 && dt < best) best = dt;   /* r = 0 warms the caches up */
    }
    Py_END_ALLOW_THREADS
    free(buf);
    return PyFloat_FromDouble(best);
}

static PyMethodDef core_methods[] = {
    {"gemm_bench", (PyCFunction)core_gemm_bench, METH_VARARGS, gemm_bench_doc},
    {"set_num_threads", (PyCFunction)core_set_num_threads, METH_O, set_num_threads_doc},
    {"get_num_threads", (PyCFunction)core_get_num_threads, METH_NOARGS, get_num_threads_doc},
    {"get_isa", (PyCFunction)core_get_isa, METH_NOARGS, get_isa_doc},
    {"set_isa", (PyCFunction)core_set_isa, METH_O, set_isa_doc},
    {"matmul", (PyCFunction)core_matmul, METH_VARARGS, matmul_doc},
    {"activation", (PyCFunction)core_activation, METH_VARARGS, activation_doc},
    {NULL, NULL, 0, NULL},
};

/* -------------------------------------------------------------- module */

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
    PyObject *acts = Py_BuildValue("(sssss)", ACT_NAMES[0], ACT_NAMES[1], ACT_NAMES[2], ACT_NAMES[3], ACT_NAMES[4]);
    if (PyModule_AddObject(module, "ACTIVATIONS", acts) < 0) { Py_XDECREF(acts); return -1; }
    PyObject *liks = Py_BuildValue("(ss)", LIK_NAMES[0], LIK_NAMES[1]);
    if (PyModule_AddObject(module, "LIKELIHOODS", liks) < 0) { Py_XDECREF(liks); return -1; }
    if (PyModule_AddIntConstant(module, "MAX_HIDDEN_LAYERS", VAE_MAX_HIDDEN) < 0) return -1;
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
