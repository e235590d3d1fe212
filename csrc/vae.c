/*
 * vae.c: the parts of the core that do not depend on the float type: checking
 * a configuration, deriving every layer's shape, laying out the flat parameter
 * buffer and the per-batch work buffer, and choosing a table of kernels. Every
 * size is computed with overflow checks, so an impossible model or batch is an
 * error code, never a wrapped-around size.
 *
 * What this is not: a place for messages. vaecore/layers.py checks a stack
 * first and names the layer that does not fit; the checks here are the C
 * core's own guard (any configuration that reaches it is safe to run).
 */
#include "vae.h"

/* *acc += a * b, failing on size_t overflow */
static int add_mul(size_t *acc, size_t a, size_t b)
{
    if (a != 0 && b > (SIZE_MAX - *acc) / a) return VAE_ERR_OVERFLOW;
    *acc += a * b;
    return VAE_OK;
}

static int ok_size(long long v) { return v >= 1 && v <= VAE_MAX_WIDTH; }

size_t vae_shape_size(VaeShape s) { return (size_t)s.c * (size_t)s.h * (size_t)s.w; }

static VaeShape flat(int n) { VaeShape s = {1, n, 1, 1}; return s; }

/* derive l's output shape from its spec and input shape; VAE_ERR_CONFIG if it does not fit */
static int derive(Layer *l, const LayerSpec *spec, VaeShape in)
{
    const int *a = spec->arg;
    l->kind = spec->kind;
    l->in = in;
    l->nw = l->nb = 0;
    l->alias = 0;
    switch (spec->kind) {
    case LAYER_LINEAR:
        if (in.rank != 1 || !ok_size(a[0])) return VAE_ERR_CONFIG;
        l->out = flat(a[0]);
        l->nw = (size_t)in.c * (size_t)a[0];
        l->nb = (size_t)a[0];
        return VAE_OK;
    case LAYER_CONV2D:
    case LAYER_CONVT2D: {
        if (in.rank != 3) return VAE_ERR_CONFIG;
        for (int i = 0; i < 5; i++) if (!ok_size(a[i])) return VAE_ERR_CONFIG;   /* O, KH, KW, SH, SW */
        if (a[5] < 0 || a[6] < 0 || a[5] > VAE_MAX_WIDTH || a[6] > VAE_MAX_WIDTH) return VAE_ERR_CONFIG;
        ConvShape *s = &l->conv;
        s->C = in.c; s->H = in.h; s->W = in.w; s->O = a[0];
        s->KH = a[1]; s->KW = a[2]; s->SH = a[3]; s->SW = a[4]; s->PH = a[5]; s->PW = a[6];
        long long ho, wo;
        if (spec->kind == LAYER_CONV2D) {
            /* torch.nn.functional.conv2d: floor((H + 2 PH - KH) / SH) + 1, the kernel inside the padded input */
            long long hp = (long long)in.h + 2LL * s->PH, wp = (long long)in.w + 2LL * s->PW;
            if (hp < s->KH || wp < s->KW) return VAE_ERR_CONFIG;
            ho = (hp - s->KH) / s->SH + 1;
            wo = (wp - s->KW) / s->SW + 1;
        } else {
            /* torch.nn.functional.conv_transpose2d, output_padding 0: (H - 1) SH - 2 PH + KH */
            ho = ((long long)in.h - 1) * s->SH - 2LL * s->PH + s->KH;
            wo = ((long long)in.w - 1) * s->SW - 2LL * s->PW + s->KW;
        }
        if (!ok_size(ho) || !ok_size(wo)) return VAE_ERR_CONFIG;
        s->HO = (int)ho;
        s->WO = (int)wo;
        VaeShape out = {3, s->O, s->HO, s->WO};
        if (vae_shape_size(out) > VAE_MAX_WIDTH) return VAE_ERR_CONFIG;
        l->out = out;
        l->nw = (size_t)s->O * (size_t)s->C * (size_t)s->KH * (size_t)s->KW;
        l->nb = (size_t)s->O;
        return VAE_OK;
    }
    case LAYER_ACT:
        if (a[0] < 0 || a[0] >= ACT_COUNT) return VAE_ERR_CONFIG;
        l->act = a[0];
        l->out = in;
        return VAE_OK;
    case LAYER_FLATTEN:
        if (in.rank != 3) return VAE_ERR_CONFIG;
        l->out = flat((int)vae_shape_size(in));
        l->alias = 1;
        return VAE_OK;
    case LAYER_RESHAPE: {
        if (in.rank != 1 || !ok_size(a[0]) || !ok_size(a[1]) || !ok_size(a[2])) return VAE_ERR_CONFIG;
        VaeShape out = {3, a[0], a[1], a[2]};
        if (vae_shape_size(out) != (size_t)in.c) return VAE_ERR_CONFIG;
        l->out = out;
        l->alias = 1;
        return VAE_OK;
    }
    }
    return VAE_ERR_CONFIG;
}

/* the layers of one stack from its specs, their parameters appended to the buffer */
int vae_build_stack(VaeStack *st, const LayerSpec *specs, int n, VaeShape in, VaeShape *out, size_t *num_params,
                    size_t *max_row)
{
    if (n < 0 || n > VAE_MAX_LAYERS) return VAE_ERR_CONFIG;
    st->n = n;
    st->first_param = n;
    int produced_by_params = 0;   /* is the current tensor the output of a layer with parameters? */
    for (int i = 0; i < n; i++) {
        Layer *l = &st->layer[i];
        int err = derive(l, &specs[i], in);
        if (err) return err;
        if (l->nw) {
            if (st->first_param == n) st->first_param = i;
            l->w = *num_params;
            if (add_mul(num_params, l->nw, 1)) return VAE_ERR_OVERFLOW;
            l->b = *num_params;
            if (add_mul(num_params, l->nb, 1)) return VAE_ERR_OVERFLOW;
        }
        /* an activation works in place on a linear or conv output (their backward needs only
         * their input); after the stack's input or another activation it needs its own memory,
         * since the backward of what came before still reads that */
        if (l->kind == LAYER_ACT) l->alias = produced_by_params;
        if (l->nw) produced_by_params = 1;
        else if (l->kind == LAYER_ACT) produced_by_params = 0;
        size_t rin = vae_shape_size(l->in), rout = vae_shape_size(l->out);
        if (rin > *max_row) *max_row = rin;
        if (rout > *max_row) *max_row = rout;
        in = l->out;
    }
    *out = in;
    return VAE_OK;
}

static int build_stack(VaeLayout *L, VaeStack *st, const LayerSpec *specs, int n, VaeShape in, VaeShape *out)
{
    return vae_build_stack(st, specs, n, in, out, &L->num_params, &L->max_row);
}

static int linear_head(VaeLayout *L, Layer *l, size_t F, int K)
{
    l->kind = LAYER_LINEAR;
    l->in = flat((int)F);
    l->out = flat(K);
    l->nw = F * (size_t)K;
    l->nb = (size_t)K;
    l->alias = 0;
    l->w = L->num_params;
    if (add_mul(&L->num_params, l->nw, 1)) return VAE_ERR_OVERFLOW;
    l->b = L->num_params;
    return add_mul(&L->num_params, l->nb, 1);
}

int vae_layout(VaeLayout *L, const VaeConfig *cfg)
{
    const VaeShape x = cfg->input;
    if (!(x.rank == 1 && x.h == 1 && x.w == 1) && x.rank != 3) return VAE_ERR_CONFIG;
    if (!ok_size(x.c) || !ok_size(x.h) || !ok_size(x.w) || vae_shape_size(x) > VAE_MAX_WIDTH) return VAE_ERR_CONFIG;
    if (!ok_size(cfg->K)) return VAE_ERR_CONFIG;
    if (cfg->lik < 0 || cfg->lik >= LIK_COUNT) return VAE_ERR_CONFIG;

    L->cfg = *cfg;
    L->num_params = 0;
    L->D = vae_shape_size(x);
    L->max_row = L->D > (size_t)cfg->K ? L->D : (size_t)cfg->K;
    VaeShape h, out;
    int err = build_stack(L, &L->enc, cfg->enc, cfg->n_enc, x, &h);
    if (err) return err;
    L->F = vae_shape_size(h);   /* the heads read the encoder's output flattened */
    if ((err = linear_head(L, &L->mu, L->F, cfg->K))) return err;
    L->logvar.nw = L->logvar.nb = 0;
    if (cfg->variational && (err = linear_head(L, &L->logvar, L->F, cfg->K))) return err;
    if ((err = build_stack(L, &L->dec, cfg->dec, cfg->n_dec, flat(cfg->K), &out))) return err;
    /* the decoder must give back the data: the same image shape, or a flat row of D values */
    if (vae_shape_size(out) != L->D) return VAE_ERR_CONFIG;
    if (out.rank == 3 && (x.rank != 3 || out.c != x.c || out.h != x.h || out.w != x.w)) return VAE_ERR_CONFIG;
    L->dec_logvar = L->num_params;
    if (cfg->lik == LIK_GAUSSIAN_LEARNED && add_mul(&L->num_params, L->D, 1)) return VAE_ERR_OVERFLOW;
    return VAE_OK;
}

/* one thread's packing buffer for products with at most max_n columns */
size_t vae_pack_len(size_t max_n)
{
    size_t nc = max_n < GEMM_NC_MAX ? max_n : GEMM_NC_MAX;
    nc = (nc + GEMM_NR_MAX - 1) / GEMM_NR_MAX * GEMM_NR_MAX;
    return (size_t)GEMM_MC_MAX * GEMM_KC + (size_t)GEMM_KC * nc + VAE_PACK_SLACK;
}

/* place every layer output of a stack that needs memory of its own */
int vae_place_stack(size_t *off, size_t *n, const VaeStack *st, size_t B, size_t *scratch)
{
    int err = VAE_OK;
    size_t prev = VAE_AT_INPUT;
    for (int i = 0; i < st->n; i++) {
        const Layer *l = &st->layer[i];
        if (l->alias) {
            off[i] = prev;
        } else {
            off[i] = *n;
            err |= add_mul(n, B, vae_shape_size(l->out));
        }
        if (l->kind == LAYER_CONV2D || l->kind == LAYER_CONVT2D) {
            size_t s = conv_scratch_len(&l->conv, B);
            if (s == SIZE_MAX) err |= VAE_ERR_OVERFLOW;
            if (s > *scratch) *scratch = s;
        }
        prev = off[i];
    }
    return err;
}

int vae_work(VaeWork *W, const VaeLayout *L, size_t B, int threads)
{
    const size_t K = (size_t)L->cfg.K;
    size_t n = 0, scratch = 0;
    int err = VAE_OK;
    W->B = B;
    err |= vae_place_stack(W->enc, &n, &L->enc, B, &scratch);
    W->mu = n;      err |= add_mul(&n, B, K);
    W->logvar = n;  err |= add_mul(&n, B, K);
    W->eps = n;     err |= add_mul(&n, B, K);
    W->z = n;       err |= add_mul(&n, B, K);
    err |= vae_place_stack(W->dec, &n, &L->dec, B, &scratch);
    W->ga = n;      err |= add_mul(&n, B, L->max_row);
    W->gb = n;      err |= add_mul(&n, B, L->max_row);
    W->gmu = n;     err |= add_mul(&n, B, K);
    W->glogvar = n; err |= add_mul(&n, B, K);
    W->scratch_len = scratch;
    err |= vae_work_tail(&n, scratch, L->max_row, threads, &W->scratch, &W->pack, &W->pack_len, &W->threads);
    W->total = n;
    return err ? VAE_ERR_OVERFLOW : VAE_OK;
}

int vae_threads(int threads)
{
    return threads < 1 ? 1 : threads > VAE_MAX_THREADS ? VAE_MAX_THREADS : threads;
}

int vae_work_tail(size_t *n, size_t scratch, size_t widest, int threads, size_t *scratch_off, size_t *pack,
                  size_t *pack_len, int *threads_out)
{
    int err = VAE_OK;
    *scratch_off = *n;
    err |= add_mul(n, scratch, 1);
    *threads_out = vae_threads(threads);
    /* conv layers multiply matrices of thousands of columns: give gemm its widest block */
    *pack_len = vae_pack_len(scratch ? (size_t)GEMM_NC_MAX : widest);
    *pack = *n;
    err |= add_mul(n, (size_t)*threads_out, *pack_len);
    return err ? VAE_ERR_OVERFLOW : VAE_OK;
}

int vae_isa(void)
{
#ifdef VAE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ISA_AVX2;
#endif
    return ISA_DEFAULT;
}

const char *vae_isa_name(int isa)
{
    static const char *names[ISA_COUNT] = {"baseline", "avx2+fma", "avx512f+fma"};
    return isa >= 0 && isa < ISA_COUNT ? names[isa] : "unknown";
}

const VaeKernels *vae_kernels(int is_double, int isa)
{
#ifdef VAE_X86
    if (isa == ISA_AVX512) return is_double ? &vae_kernels_f64_avx512 : &vae_kernels_f32_avx512;
    if (isa == ISA_AVX2) return is_double ? &vae_kernels_f64_avx2 : &vae_kernels_f32_avx2;
#else
    (void)isa;
#endif
    return is_double ? &vae_kernels_f64 : &vae_kernels_f32;
}
