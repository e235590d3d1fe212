/*
 * model.c: whole calls on n rows, for any float type (through a VaeKernels
 * table): encoding, decoding and the loss in chunks of VAE_CHUNK_ROWS rows, so
 * that their work buffers stay small, and the training step with the buffers a
 * model keeps between steps. The binding (_core.c) checks arguments and calls
 * these with the GIL released.
 *
 * What this is not: a training step's inner loop (that is optim.inc, which
 * never allocates); the functions here allocate their chunk buffers, since
 * they run outside a step.
 */
#define _DEFAULT_SOURCE   /* posix_memalign and madvise */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "vae.h"

/* n bytes for a buffer that lives across calls (a model's work buffer and gradient): from
 * 2 MiB on, aligned to 2 MiB and marked for transparent huge pages where the system has them,
 * as NumPy does for its arrays. A step reads megabytes of weights, gradients and activations
 * scattered over thousands of 4 KiB pages; in 2 MiB pages they need far fewer TLB entries.
 * The buffer is touched at once, so that it is resident from the first step on (the kernel
 * would otherwise fill in huge pages later, and the resident size would grow under a running
 * model). Freed with free(). */
void *vae_alloc(size_t n)
{
    const size_t huge = (size_t)2 << 20;
    if (n < huge) return malloc(n);
    void *p = NULL;
    if (posix_memalign(&p, huge, n)) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE);   /* advice only: a refusal changes nothing but speed */
#endif
    memset(p, 0, n);
    return p;
}

void *vae_alloc_items(size_t n, size_t itemsize, int *err)
{
    if (*err || n > (SIZE_MAX - 1) / itemsize) {
        *err = VAE_ERR_OVERFLOW;
        return NULL;
    }
    void *p = malloc(n * itemsize + 1);
    if (!p) *err = VAE_ERR_NOMEM;
    return p;
}

/* a work buffer for up to `rows` rows, or NULL with *err set */
static void *alloc_work(const VaeKernels *k, VaeWork *W, const VaeLayout *L, size_t rows, int threads, int *err)
{
    *err = vae_work(W, L, rows, threads);
    return vae_alloc_items(W->total, k->itemsize, err);
}

static size_t chunk(size_t n) { return n < VAE_CHUNK_ROWS ? n : VAE_CHUNK_ROWS; }

static char *row(const void *a, size_t r, size_t width, size_t itemsize)
{
    return (char *)a + r * width * itemsize;
}

int vae_encode_rows(const VaeKernels *k, const VaeLayout *L, int threads, const void *params, const void *x,
                    size_t n, void *mu, void *logvar)
{
    VaeWork W;
    int err;
    char *ws = alloc_work(k, &W, L, chunk(n), threads, &err);
    if (!ws) return err;
    const size_t K = (size_t)L->cfg.K, isz = k->itemsize;
    for (size_t r = 0; r < n; r += VAE_CHUNK_ROWS) {
        size_t rows = chunk(n - r);
        vae_work(&W, L, rows, threads);
        k->encode(L, &W, ws, params, row(x, r, L->D, isz), rows);
        memcpy(row(mu, r, K, isz), ws + W.mu * isz, rows * K * isz);
        if (logvar) memcpy(row(logvar, r, K, isz), ws + W.logvar * isz, rows * K * isz);
    }
    free(ws);
    return VAE_OK;
}

int vae_decode_rows(const VaeKernels *k, const VaeLayout *L, int threads, const void *params, const void *z,
                    size_t n, void *out, int probs)
{
    VaeWork W;
    int err;
    char *ws = alloc_work(k, &W, L, chunk(n), threads, &err);
    if (!ws) return err;
    const size_t K = (size_t)L->cfg.K, D = L->D, isz = k->itemsize;
    for (size_t r = 0; r < n; r += VAE_CHUNK_ROWS) {
        size_t rows = chunk(n - r);
        vae_work(&W, L, rows, threads);
        memcpy(ws + W.z * isz, row(z, r, K, isz), rows * K * isz);
        k->decode(L, &W, ws, params, rows);
        void *dst = row(out, r, D, isz);
        memcpy(dst, k->output(L, &W, ws), rows * D * isz);
        if (probs) k->sigmoid(dst, rows * D);
    }
    free(ws);
    return VAE_OK;
}

int vae_loss_rows(const VaeKernels *k, const VaeLayout *L, int threads, const void *params, const void *x,
                  const void *eps, size_t n, double beta, VaeStats *st, void *grads)
{
    VaeWork W;
    int err;
    char *ws = alloc_work(k, &W, L, chunk(n), threads, &err);
    if (!ws) return err;
    const size_t K = (size_t)L->cfg.K, D = L->D, isz = k->itemsize;
    st->recon = st->kl = 0;
    for (size_t r = 0; r < n; r += VAE_CHUNK_ROWS) {
        size_t rows = chunk(n - r);
        const void *xr = row(x, r, D, isz);
        vae_work(&W, L, rows, threads);
        if (eps) memcpy(ws + W.eps * isz, row(eps, r, K, isz), rows * K * isz);
        k->forward(L, &W, ws, params, xr, rows);
        k->loss(st, L, &W, ws, params, xr, rows);
        /* the gradient of the mean over all n rows: written by the first chunk, added by the rest */
        if (grads) k->backward(grads, L, &W, ws, params, xr, rows, beta, 1.0 / (double)n, r > 0, NULL);
    }
    free(ws);
    st->recon /= (double)n;
    st->kl /= (double)n;
    st->loss = st->recon + beta * st->kl;
    return VAE_OK;
}

void vae_step_buffers_free(VaeStepBuffers *sb)
{
    free(sb->grads);
    free(sb->ws);
    sb->grads = sb->ws = NULL;
    sb->ws_len = 0;
}

/* grads on the first step; the work buffer grown for a larger batch only */
static int grow(const VaeKernels *k, const VaeLayout *L, VaeStepBuffers *sb, const VaeWork *W)
{
    if (W->total > SIZE_MAX / k->itemsize || L->num_params > SIZE_MAX / k->itemsize) return VAE_ERR_OVERFLOW;
    if (!sb->grads && !(sb->grads = vae_alloc(L->num_params * k->itemsize + 1))) return VAE_ERR_NOMEM;
    if (sb->ws_len < W->total) {
        void *bigger = vae_alloc(W->total * k->itemsize);
        if (!bigger) return VAE_ERR_NOMEM;
        free(sb->ws);
        sb->ws = bigger;
        sb->ws_len = W->total;
    }
    return VAE_OK;
}

int vae_train_rows(const VaeKernels *k, const VaeLayout *L, VaeStepBuffers *sb, int threads, void *params,
                   void *s1, void *s2, int64_t *t, const VaeOptim *opt, const void *x, const void *eps,
                   Rng *rng, size_t n, double beta, VaeStats *st)
{
    VaeWork W;
    int err = vae_work(&W, L, n, threads);
    if (err) return err;
    if ((err = grow(k, L, sb, &W))) return err;
    const size_t nk = n * (size_t)L->cfg.K, isz = k->itemsize;
    char *ws_eps = (char *)sb->ws + W.eps * isz;
    Rng before = *rng;
    double t0 = prof_start();
    if (eps) memcpy(ws_eps, eps, nk * isz);
    else if (L->logvar.nw) k->normal(ws_eps, nk, rng);
    prof_add(&vae_profile.total[PROF_NOISE], t0);
    err = k->train_step(st, L, &W, sb->ws, params, sb->grads, s1, s2, t, opt, x, n, beta);
    if (err) *rng = before;   /* a step that is not applied does not use up its noise either */
    return err;
}
