/*
 * stack.c: the parts of a lone layer stack (stack.h) that do not depend on
 * the float type: checking a configuration and laying out the parameter
 * buffer (stack_layout), the work buffer (stack_work), and the whole calls on
 * n rows with their allocations (forward and backward in chunks of
 * VAE_CHUNK_ROWS, the Adam step with its finiteness checks).
 *
 * What this is not: arithmetic (stack.inc, through the kernel table) or
 * Python (csrc/_core.c).
 */
#include <stdlib.h>
#include <string.h>

#include "stack.h"

static int add_rows(size_t *acc, size_t a, size_t b)
{
    if (a != 0 && b > (SIZE_MAX - *acc) / a) return VAE_ERR_OVERFLOW;
    *acc += a * b;
    return VAE_OK;
}

int stack_layout(StackLayout *L, VaeShape in, const LayerSpec *specs, int n)
{
    if (!(in.rank == 1 && in.h == 1 && in.w == 1) && in.rank != 3) return VAE_ERR_CONFIG;
    if (in.c < 1 || in.h < 1 || in.w < 1 || in.c > VAE_MAX_WIDTH || in.h > VAE_MAX_WIDTH || in.w > VAE_MAX_WIDTH ||
        vae_shape_size(in) > VAE_MAX_WIDTH)
        return VAE_ERR_CONFIG;
    if (n < 0 || n > VAE_MAX_LAYERS) return VAE_ERR_CONFIG;
    L->in = in;
    L->n = n;
    memcpy(L->spec, specs, (size_t)n * sizeof *specs);
    L->D = vae_shape_size(in);
    L->num_params = 0;
    L->max_row = L->D;
    int err = vae_build_stack(&L->st, specs, n, in, &L->out, &L->num_params, &L->max_row);
    L->O = vae_shape_size(L->out);
    return err;
}

int stack_work(StackWork *W, const StackLayout *L, size_t B, int threads)
{
    size_t n = 0, scratch = 0;
    int err = VAE_OK;
    W->B = B;
    err |= vae_place_stack(W->off, &n, &L->st, B, &scratch);
    W->ga = n; err |= add_rows(&n, B, L->max_row);
    W->gb = n; err |= add_rows(&n, B, L->max_row);
    W->scratch_len = scratch;
    err |= vae_work_tail(&n, scratch, L->max_row, threads, &W->scratch, &W->pack, &W->pack_len, &W->threads);
    W->total = n;
    return err ? VAE_ERR_OVERFLOW : VAE_OK;
}

/* a work buffer for B rows, or NULL with *err set */
static void *alloc_work(const VaeKernels *k, StackWork *W, const StackLayout *L, size_t B, int threads, int *err)
{
    *err = stack_work(W, L, B, threads);
    return vae_alloc_items(W->total, k->itemsize, err);
}

static size_t chunk(size_t n) { return n < VAE_CHUNK_ROWS ? n : VAE_CHUNK_ROWS; }

int stack_forward_rows(const VaeKernels *k, const StackLayout *L, int threads, const void *params, const void *x,
                       size_t n, void *out)
{
    StackWork W;
    int err;
    char *ws = alloc_work(k, &W, L, chunk(n), threads, &err);
    if (!ws) return err;
    const size_t D = L->D, O = L->O, isz = k->itemsize;
    for (size_t r = 0; r < n; r += VAE_CHUNK_ROWS) {
        size_t rows = chunk(n - r);
        const void *o = k->stack->forward(L, &W, ws, params, (const char *)x + r * D * isz, rows);
        memcpy((char *)out + r * O * isz, o, rows * O * isz);
    }
    free(ws);
    return VAE_OK;
}

int stack_backward_rows(const VaeKernels *k, const StackLayout *L, int threads, const void *params, const void *x,
                        const void *dout, size_t n, void *grads)
{
    StackWork W;
    int err;
    char *ws = alloc_work(k, &W, L, chunk(n), threads, &err);
    if (!ws) return err;
    const size_t D = L->D, O = L->O, isz = k->itemsize;
    /* a stack without parameters, or no rows: the gradient is all zero */
    memset(grads, 0, L->num_params * isz);
    for (size_t r = 0; r < n; r += VAE_CHUNK_ROWS)
        k->stack->backward(L, &W, ws, params, grads, (const char *)x + r * D * isz,
                           (const char *)dout + r * O * isz, chunk(n - r), r > 0);
    free(ws);
    return VAE_OK;
}

int stack_adam_step(const VaeKernels *k, const StackLayout *L, int threads, void *params, void *m, void *v,
                    const void *grads, int64_t *t, const VaeOptim *opt)
{
    if (k->find_nonfinite(grads, L->num_params) >= 0) return VAE_ERR_NONFINITE_GRAD;
    if (k->stack->adam(params, m, v, grads, L->num_params, opt, *t, vae_threads(threads))) return VAE_ERR_NONFINITE_UPDATE;
    *t += 1;
    return VAE_OK;
}
