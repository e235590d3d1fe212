/*
 * vae.c: the parts of the core that do not depend on the float type: checking
 * a configuration, laying out the flat parameter buffer, and laying out the
 * per-batch work buffer. Every size is computed with overflow checks, so an
 * impossible model or batch is an error code, never a wrapped-around size.
 */
#include "vae.h"

/* *acc += a * b, failing on size_t overflow */
static int add_mul(size_t *acc, size_t a, size_t b)
{
    if (a != 0 && b > (SIZE_MAX - *acc) / a) return VAE_ERR_OVERFLOW;
    *acc += a * b;
    return VAE_OK;
}

static int check_width(int w) { return w >= 1 && w <= VAE_MAX_WIDTH; }

/* append a linear layer (I, O) at the end of the buffer */
static int push_layer(VaeLayout *L, int I, int O)
{
    LinearSlot *s = &L->layer[L->n_layers++];
    s->I = I;
    s->O = O;
    s->w = L->num_params;
    if (add_mul(&L->num_params, (size_t)I, (size_t)O)) return VAE_ERR_OVERFLOW;
    s->b = L->num_params;
    if (add_mul(&L->num_params, (size_t)O, 1)) return VAE_ERR_OVERFLOW;
    if (I > L->max_width) L->max_width = I;
    if (O > L->max_width) L->max_width = O;
    return VAE_OK;
}

int vae_layout(VaeLayout *L, const VaeConfig *cfg)
{
    if (!check_width(cfg->D) || !check_width(cfg->K)) return VAE_ERR_CONFIG;
    if (cfg->n_enc < 0 || cfg->n_enc > VAE_MAX_HIDDEN) return VAE_ERR_CONFIG;
    if (cfg->n_dec < 0 || cfg->n_dec > VAE_MAX_HIDDEN) return VAE_ERR_CONFIG;
    if (cfg->act < 0 || cfg->act >= ACT_COUNT) return VAE_ERR_CONFIG;
    if (cfg->lik < 0 || cfg->lik >= LIK_COUNT) return VAE_ERR_CONFIG;
    for (int l = 0; l < cfg->n_enc; l++) if (!check_width(cfg->enc_h[l])) return VAE_ERR_CONFIG;
    for (int l = 0; l < cfg->n_dec; l++) if (!check_width(cfg->dec_h[l])) return VAE_ERR_CONFIG;

    L->cfg = *cfg;
    L->n_layers = 0;
    L->num_params = 0;
    L->max_width = 0;
    int err = VAE_OK;
    /* encoder: D -> enc_h[0] -> ... -> enc_h[n_enc-1], then the heads */
    int width = cfg->D;
    for (int l = 0; l < cfg->n_enc; l++) {
        err |= push_layer(L, width, cfg->enc_h[l]);
        width = cfg->enc_h[l];
    }
    L->mu = L->n_layers;
    err |= push_layer(L, width, cfg->K);
    L->logvar = -1;
    if (cfg->variational) {
        L->logvar = L->n_layers;
        err |= push_layer(L, width, cfg->K);
    }
    /* decoder: K -> dec_h[0] -> ... -> D */
    L->dec0 = L->n_layers;
    width = cfg->K;
    for (int l = 0; l < cfg->n_dec; l++) {
        err |= push_layer(L, width, cfg->dec_h[l]);
        width = cfg->dec_h[l];
    }
    L->out = L->n_layers;
    err |= push_layer(L, width, cfg->D);
    return err ? VAE_ERR_OVERFLOW : VAE_OK;
}

/* one thread's packing buffer for products with at most max_n columns */
size_t vae_pack_len(size_t max_n)
{
    size_t nc = max_n < GEMM_NC_MAX ? max_n : GEMM_NC_MAX;
    nc = (nc + GEMM_NR_MAX - 1) / GEMM_NR_MAX * GEMM_NR_MAX;
    return (size_t)GEMM_MC_MAX * GEMM_KC + (size_t)GEMM_KC * nc + VAE_PACK_SLACK;
}

int vae_work(VaeWork *W, const VaeLayout *L, size_t B, int threads)
{
    const VaeConfig *c = &L->cfg;
    size_t n = 0;
    int err = VAE_OK;
    W->B = B;
    for (int l = 0; l < c->n_enc; l++) { W->enc[l] = n; err |= add_mul(&n, B, (size_t)c->enc_h[l]); }
    W->mu = n;      err |= add_mul(&n, B, (size_t)c->K);
    W->logvar = n;  err |= add_mul(&n, B, (size_t)c->K);
    W->eps = n;     err |= add_mul(&n, B, (size_t)c->K);
    W->z = n;       err |= add_mul(&n, B, (size_t)c->K);
    for (int l = 0; l < c->n_dec; l++) { W->dec[l] = n; err |= add_mul(&n, B, (size_t)c->dec_h[l]); }
    W->out = n;     err |= add_mul(&n, B, (size_t)c->D);
    W->ga = n;      err |= add_mul(&n, B, (size_t)L->max_width);
    W->gb = n;      err |= add_mul(&n, B, (size_t)L->max_width);
    W->gmu = n;     err |= add_mul(&n, B, (size_t)c->K);
    W->glogvar = n; err |= add_mul(&n, B, (size_t)c->K);
    if (threads < 1) threads = 1;
    if (threads > VAE_MAX_THREADS) threads = VAE_MAX_THREADS;
    W->threads = threads;
    W->pack_len = vae_pack_len((size_t)L->max_width);
    W->pack = n;    err |= add_mul(&n, (size_t)threads, W->pack_len);
    W->total = n;
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
