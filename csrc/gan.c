/*
 * gan.c: the parts of the GAN that do not depend on the float type: checking
 * a configuration and laying out the parameter buffer (gan_layout), the work
 * buffer (gan_work), and the whole calls on n rows with their allocations
 * (generation and discrimination in chunks of VAE_CHUNK_ROWS, the losses, the
 * training step with the buffers a GAN keeps between steps).
 *
 * What this is not: arithmetic (gan.inc, through the kernel table) or Python
 * (csrc/_core.c).
 */
#include <stdlib.h>
#include <string.h>

#include "gan.h"

static int add_rows(size_t *acc, size_t a, size_t b)
{
    if (a != 0 && b > (SIZE_MAX - *acc) / a) return VAE_ERR_OVERFLOW;
    *acc += a * b;
    return VAE_OK;
}

int gan_layout(GanLayout *L, const GanConfig *cfg)
{
    const VaeShape x = cfg->data;
    if (!(x.rank == 1 && x.h == 1 && x.w == 1) && x.rank != 3) return VAE_ERR_CONFIG;
    if (x.c < 1 || x.h < 1 || x.w < 1 || x.c > VAE_MAX_WIDTH || x.h > VAE_MAX_WIDTH || x.w > VAE_MAX_WIDTH ||
        vae_shape_size(x) > VAE_MAX_WIDTH)
        return VAE_ERR_CONFIG;
    if (cfg->K < 1 || cfg->K > VAE_MAX_WIDTH) return VAE_ERR_CONFIG;
    L->cfg = *cfg;
    L->D = vae_shape_size(x);
    L->num_params = 0;
    L->max_row = L->D > (size_t)cfg->K ? L->D : (size_t)cfg->K;
    VaeShape zin = {1, cfg->K, 1, 1}, g_out, d_out;
    int err = vae_build_stack(&L->gen, cfg->gen, cfg->n_gen, zin, &g_out, &L->num_params, &L->max_row);
    if (err) return err;
    /* the generator must give data: the same image shape, or a flat row of D values */
    if (vae_shape_size(g_out) != L->D) return VAE_ERR_CONFIG;
    if (g_out.rank == 3 && (x.rank != 3 || g_out.c != x.c || g_out.h != x.h || g_out.w != x.w)) return VAE_ERR_CONFIG;
    L->num_gen = L->num_params;
    if ((err = vae_build_stack(&L->disc, cfg->disc, cfg->n_disc, x, &d_out, &L->num_params, &L->max_row)))
        return err;
    /* one logit per example */
    return vae_shape_size(d_out) == 1 ? VAE_OK : VAE_ERR_CONFIG;
}

int gan_work(GanWork *W, const GanLayout *L, size_t R, size_t B, int threads)
{
    const size_t K = (size_t)L->cfg.K;
    size_t n = 0, scratch = 0, N = R + B;
    int err = N < R ? VAE_ERR_OVERFLOW : VAE_OK;
    W->R = R;
    W->B = B;
    err |= vae_place_stack(W->gen, &n, &L->gen, B, &scratch);
    W->z = n;  err |= add_rows(&n, B, K);
    W->xd = n; err |= add_rows(&n, N, L->D);
    err |= vae_place_stack(W->disc, &n, &L->disc, N, &scratch);
    W->ga = n; err |= add_rows(&n, N, L->max_row);
    W->gb = n; err |= add_rows(&n, N, L->max_row);
    W->scratch_len = scratch;
    err |= vae_work_tail(&n, scratch, L->max_row, threads, &W->scratch, &W->pack, &W->pack_len, &W->threads);
    W->total = n;
    return err ? VAE_ERR_OVERFLOW : VAE_OK;
}

/* a work buffer for R real and B fake rows, or NULL with *err set */
static void *alloc_work(const VaeKernels *k, GanWork *W, const GanLayout *L, size_t R, size_t B, int threads,
                        int *err)
{
    *err = gan_work(W, L, R, B, threads);
    return vae_alloc_items(W->total, k->itemsize, err);
}

static size_t chunk(size_t n) { return n < VAE_CHUNK_ROWS ? n : VAE_CHUNK_ROWS; }

int gan_generate_rows(const VaeKernels *k, const GanLayout *L, int threads, const void *params, const void *z,
                      size_t n, void *out)
{
    GanWork W;
    int err;
    char *ws = alloc_work(k, &W, L, 0, chunk(n), threads, &err);
    if (!ws) return err;
    const size_t K = (size_t)L->cfg.K, D = L->D, isz = k->itemsize;
    for (size_t r = 0; r < n; r += VAE_CHUNK_ROWS) {
        size_t rows = chunk(n - r);
        const void *o = k->gan->generate(L, &W, ws, params, (const char *)z + r * K * isz, rows);
        memcpy((char *)out + r * D * isz, o, rows * D * isz);
    }
    free(ws);
    return VAE_OK;
}

int gan_discriminate_rows(const VaeKernels *k, const GanLayout *L, int threads, const void *params, const void *x,
                          size_t n, void *out)
{
    GanWork W;
    int err;
    char *ws = alloc_work(k, &W, L, chunk(n), 0, threads, &err);
    if (!ws) return err;
    const size_t D = L->D, isz = k->itemsize;
    for (size_t r = 0; r < n; r += VAE_CHUNK_ROWS) {
        size_t rows = chunk(n - r);
        const void *o = k->gan->discriminate(L, &W, ws, params, (const char *)x + r * D * isz, rows);
        memcpy((char *)out + r * isz, o, rows * isz);
    }
    free(ws);
    return VAE_OK;
}

int gan_d_loss_rows(const VaeKernels *k, const GanLayout *L, int threads, const void *params, const void *x,
                    size_t R, const void *z, size_t B, GanStats *st, void *grads)
{
    GanWork W;
    int err;
    char *ws = alloc_work(k, &W, L, R, B, threads, &err);
    if (!ws) return err;
    k->gan->d_loss_grad(st, L, &W, ws, params, grads, x, R, z, B);
    free(ws);
    return VAE_OK;
}

int gan_g_loss_rows(const VaeKernels *k, const GanLayout *L, int threads, const void *params, const void *z,
                    size_t B, GanStats *st, void *grads)
{
    GanWork W;
    int err;
    char *ws = alloc_work(k, &W, L, 0, B, threads, &err);
    if (!ws) return err;
    k->gan->g_loss_grad(st, L, &W, ws, params, grads, z, B);
    free(ws);
    return VAE_OK;
}

void gan_step_buffers_free(GanStepBuffers *sb)
{
    free(sb->grads);
    free(sb->backup);
    free(sb->ws);
    sb->grads = sb->backup = sb->ws = NULL;
    sb->ws_len = 0;
}

/* grads and backup on the first step; the work buffer grown for a larger batch only */
static int grow(const VaeKernels *k, const GanLayout *L, GanStepBuffers *sb, const GanWork *W)
{
    const size_t isz = k->itemsize, P = L->num_params;
    if (W->total > SIZE_MAX / isz || P > SIZE_MAX / isz / 3) return VAE_ERR_OVERFLOW;
    if (!sb->grads && !(sb->grads = vae_alloc(P * isz + 1))) return VAE_ERR_NOMEM;
    if (!sb->backup && !(sb->backup = vae_alloc(3 * P * isz + 1))) return VAE_ERR_NOMEM;
    if (sb->ws_len < W->total) {
        void *bigger = vae_alloc(W->total * isz);
        if (!bigger) return VAE_ERR_NOMEM;
        free(sb->ws);
        sb->ws = bigger;
        sb->ws_len = W->total;
    }
    return VAE_OK;
}

int gan_train_rows(const VaeKernels *k, const GanLayout *L, GanStepBuffers *sb, int threads, void *params,
                   const GanOptState *og, const GanOptState *od, const void *x, size_t n, int steps_d, Rng *rng,
                   GanStats *st)
{
    if (steps_d < 1 || n % (size_t)steps_d) return VAE_ERR_CONFIG;
    size_t B = n / (size_t)steps_d;
    GanWork W;
    int err = gan_work(&W, L, B, B, threads);
    if (err) return err;
    if ((err = grow(k, L, sb, &W))) return err;
    return k->gan->train_step(st, L, &W, sb->ws, params, sb->grads, sb->backup, og, od, x, B, steps_d, rng);
}
