/*
 * vq.c: the parts of the VQ-VAE that do not depend on the float type:
 * checking a configuration and laying out the parameter buffer (vq_layout),
 * the work buffer (vq_work), and the whole calls on n rows with their
 * allocations (encoding, searching, decoding and the loss in chunks of
 * VAE_CHUNK_ROWS, the training step with the buffers a model keeps between
 * steps), and the stats from a loss's sums (vq_finish_stats).
 *
 * What this is not: arithmetic (vq.inc, through the kernel table) or Python
 * (csrc/_core.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vq.h"

static int add_rows(size_t *acc, size_t a, size_t b)
{
    if (a != 0 && b > (SIZE_MAX - *acc) / a) return VAE_ERR_OVERFLOW;
    *acc += a * b;
    return VAE_OK;
}

static int ok_size(long long v) { return v >= 1 && v <= VAE_MAX_WIDTH; }

int vq_layout(VqLayout *L, const VqConfig *cfg)
{
    const VaeShape x = cfg->input;
    if (!(x.rank == 1 && x.h == 1 && x.w == 1) && x.rank != 3) return VAE_ERR_CONFIG;
    if (!ok_size(x.c) || !ok_size(x.h) || !ok_size(x.w) || vae_shape_size(x) > VAE_MAX_WIDTH) return VAE_ERR_CONFIG;
    if (!ok_size(cfg->K) || !ok_size(cfg->d) || (size_t)cfg->K * (size_t)cfg->d > VAE_MAX_WIDTH) return VAE_ERR_CONFIG;
    if (cfg->lik < 0 || cfg->lik >= LIK_COUNT || (cfg->ema != 0 && cfg->ema != 1)) return VAE_ERR_CONFIG;
    L->cfg = *cfg;
    L->num_params = 0;
    L->D = vae_shape_size(x);
    L->max_row = L->D;
    int err = vae_build_stack(&L->enc, cfg->enc, cfg->n_enc, x, &L->code, &L->num_params, &L->max_row);
    if (err) return err;
    /* the encoder gives one code per example (d) or a grid of them (d, h, w) */
    if (L->code.c != cfg->d || (L->code.rank == 1 && (L->code.h != 1 || L->code.w != 1))) return VAE_ERR_CONFIG;
    L->E = vae_shape_size(L->code);
    L->S = L->E / (size_t)cfg->d;
    L->codebook = L->num_params;
    if (add_rows(&L->num_params, (size_t)cfg->K, (size_t)cfg->d)) return VAE_ERR_OVERFLOW;
    VaeShape out;
    if ((err = vae_build_stack(&L->dec, cfg->dec, cfg->n_dec, L->code, &out, &L->num_params, &L->max_row)))
        return err;
    /* the decoder must give back the data: the same image shape, or a flat row of D values */
    if (vae_shape_size(out) != L->D) return VAE_ERR_CONFIG;
    if (out.rank == 3 && (x.rank != 3 || out.c != x.c || out.h != x.h || out.w != x.w)) return VAE_ERR_CONFIG;
    if (L->E > L->max_row) L->max_row = L->E;
    L->dec_logvar = L->num_params;
    if (cfg->lik == LIK_GAUSSIAN_LEARNED && add_rows(&L->num_params, L->D, 1)) return VAE_ERR_OVERFLOW;
    return VAE_OK;
}

int vq_work(VqWork *W, const VqLayout *L, size_t B, int threads)
{
    const size_t K = (size_t)L->cfg.K, d = (size_t)L->cfg.d;
    size_t n = 0, scratch = 0, M = 0;
    int err = add_rows(&M, B, L->S);
    W->B = B;
    err |= vae_place_stack(W->enc, &n, &L->enc, B, &scratch);
    W->zt = n;     err |= add_rows(&n, M, d);
    W->zq = n;     err |= add_rows(&n, B, L->E);
    err |= vae_place_stack(W->dec, &n, &L->dec, B, &scratch);
    W->idx = n;    err |= add_rows(&n, M, 1);   /* int32 codes in (at least) 4-byte elements */
    W->scores = n; err |= add_rows(&n, VQ_SEARCH_ROWS, K);
    W->enorm = n;  err |= add_rows(&n, K, 1);
    n += n & 1;    /* doubles: at an even offset, 8-byte aligned for either real */
    W->counts = n; err |= add_rows(&n, K, 2);
    W->sums = n;   err |= add_rows(&n, K, d);
    W->ga = n;     err |= add_rows(&n, B, L->max_row);
    W->gb = n;     err |= add_rows(&n, B, L->max_row);
    W->scratch_len = scratch;
    /* the search multiplies by the codebook's K columns too */
    err |= vae_work_tail(&n, scratch, L->max_row > K ? L->max_row : K, threads, &W->scratch, &W->pack, &W->pack_len,
                         &W->threads);
    W->total = n;
    return err ? VAE_ERR_OVERFLOW : VAE_OK;
}

/* a work buffer for B rows, or NULL with *err set */
static void *alloc_work(const VaeKernels *k, VqWork *W, const VqLayout *L, size_t B, int threads, int *err)
{
    *err = vq_work(W, L, B, threads);
    return vae_alloc_items(W->total, k->itemsize, err);
}

static size_t chunk(size_t n) { return n < VAE_CHUNK_ROWS ? n : VAE_CHUNK_ROWS; }

int vq_encode_rows(const VaeKernels *k, const VqLayout *L, int threads, const void *params, const void *x,
                   size_t n, void *ze)
{
    VqWork W;
    int err;
    char *ws = alloc_work(k, &W, L, chunk(n), threads, &err);
    if (!ws) return err;
    const size_t D = L->D, E = L->E, isz = k->itemsize;
    for (size_t r = 0; r < n; r += VAE_CHUNK_ROWS) {
        size_t rows = chunk(n - r);
        const void *o = k->vq->encode(L, &W, ws, params, (const char *)x + r * D * isz, rows);
        memcpy((char *)ze + r * E * isz, o, rows * E * isz);
    }
    free(ws);
    return VAE_OK;
}

int vq_nearest_rows(const VaeKernels *k, const VqLayout *L, int threads, const void *params, const void *ze,
                    size_t n, int32_t *codes, void *dist)
{
    VqWork W;
    int err;
    char *ws = alloc_work(k, &W, L, chunk(n), threads, &err);
    if (!ws) return err;
    const size_t E = L->E, S = L->S, isz = k->itemsize;
    for (size_t r = 0; r < n; r += VAE_CHUNK_ROWS) {
        size_t rows = chunk(n - r);
        k->vq->nearest(L, &W, ws, params, (const char *)ze + r * E * isz, rows, codes + r * S,
                       dist ? (char *)dist + r * S * isz : NULL);
    }
    free(ws);
    return VAE_OK;
}

int vq_decode_rows(const VaeKernels *k, const VqLayout *L, int threads, const void *params, const int32_t *codes,
                   size_t n, void *out, int probs)
{
    VqWork W;
    int err;
    char *ws = alloc_work(k, &W, L, chunk(n), threads, &err);
    if (!ws) return err;
    const size_t D = L->D, S = L->S, isz = k->itemsize;
    for (size_t r = 0; r < n; r += VAE_CHUNK_ROWS) {
        size_t rows = chunk(n - r);
        const void *o = k->vq->decode(L, &W, ws, params, codes + r * S, rows);
        memcpy((char *)out + r * D * isz, o, rows * D * isz);
    }
    free(ws);
    if (probs) k->sigmoid(out, n * D);
    return VAE_OK;
}

void vq_finish_stats(VqStats *st, const VqSums *s, size_t n, size_t S, size_t K, const VqHyper *h, int ema)
{
    const double M = (double)n * (double)S;   /* positions (as a double: no product of sizes to overflow) */
    double entropy = 0;
    for (size_t k = 0; k < K; k++)
        if (s->counts[k] > 0) {
            double p = s->counts[k] / M;
            entropy -= p * log(p);
        }
    st->recon = s->recon / (double)n;
    st->commitment = h->commitment * s->sq / (double)n;
    st->codebook = ema ? 0 : s->sq / (double)n;
    st->loss = st->recon + st->commitment + st->codebook;
    st->perplexity = exp(entropy);
}

int vq_loss_rows(const VaeKernels *k, const VqLayout *L, int threads, const void *params, const void *x, size_t n,
                 const VqHyper *h, VqStats *st, void *grads)
{
    VqWork W;
    int err;
    char *ws = alloc_work(k, &W, L, chunk(n), threads, &err);
    if (!ws) return err;
    const size_t K = (size_t)L->cfg.K, D = L->D, isz = k->itemsize;
    VqSums s = {0, 0, calloc(K, sizeof(double))};
    if (!s.counts) {
        free(ws);
        return VAE_ERR_NOMEM;
    }
    /* the gradient of the mean over all n rows: written by the first chunk, added by the rest */
    for (size_t r = 0; r < n; r += VAE_CHUNK_ROWS)
        k->vq->loss_chunk(&s, L, &W, ws, params, grads, (const char *)x + r * D * isz, chunk(n - r), h, (double)n,
                          r > 0);
    vq_finish_stats(st, &s, n, L->S, K, h, L->cfg.ema);
    free(s.counts);
    free(ws);
    return VAE_OK;
}

void vq_step_buffers_free(VqStepBuffers *sb)
{
    free(sb->grads);
    free(sb->ws);
    sb->grads = sb->ws = NULL;
    sb->ws_len = 0;
}

int vq_train_rows(const VaeKernels *k, const VqLayout *L, VqStepBuffers *sb, int threads, void *params, void *s1,
                  void *s2, int64_t *t, const VaeOptim *opt, void *ema, int64_t *usage, const void *x, size_t n,
                  const VqHyper *h, VqStats *st)
{
    VqWork W;
    int err = vq_work(&W, L, n, threads);
    if (err) return err;
    const size_t isz = k->itemsize, P = L->num_params;
    if (W.total > SIZE_MAX / isz || P > SIZE_MAX / isz) return VAE_ERR_OVERFLOW;
    if (!sb->grads && !(sb->grads = vae_alloc(P * isz + 1))) return VAE_ERR_NOMEM;
    if (sb->ws_len < W.total) {
        void *bigger = vae_alloc(W.total * isz);
        if (!bigger) return VAE_ERR_NOMEM;
        free(sb->ws);
        sb->ws = bigger;
        sb->ws_len = W.total;
    }
    return k->vq->train_step(st, L, &W, sb->ws, params, sb->grads, s1, s2, t, opt, ema, usage, x, n, h);
}
