/*
 * vae.h: the plain-C core of vaecore. One header for the whole core: the
 * model configuration, the layout of the flat parameter buffer, the layout
 * of the per-batch work buffer, error codes, and the typed kernels (one set
 * for float, one for double, both compiled from the same template files).
 *
 * What this is NOT: it knows nothing of Python or NumPy (csrc/_core.c is the
 * only file that does), it never allocates inside a training step, never
 * prints and never exits. Every function that can fail returns an int error
 * code (VAE_OK on success).
 *
 * Dimension letters, used in every signature and shape comment:
 *   B = batch (rows), D = input width, K = latent width,
 *   I = a layer's input width, O = a layer's output width,
 *   P = number of parameters (the length of the flat buffer).
 * All matrices are row-major and contiguous; a linear layer computes
 * out = inp @ W + b with W of shape (I, O).
 */
#ifndef VAECORE_VAE_H
#define VAECORE_VAE_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define VAE_X86 1   /* compile the AVX2 and AVX-512 kernels, chosen at run time */
#endif

/* error codes; csrc/_core.c turns each into a Python exception */
enum {
    VAE_OK = 0,
    VAE_ERR_CONFIG,        /* a size or name in the configuration is invalid */
    VAE_ERR_OVERFLOW,      /* a size computation would overflow size_t */
    VAE_ERR_NOMEM,         /* malloc failed (only outside a training step) */
    VAE_ERR_NONFINITE_LOSS,/* the loss of a step is NaN or Inf */
    VAE_ERR_NONFINITE_GRAD /* the gradient of a step holds a NaN or Inf */
};

enum { ACT_TANH = 0, ACT_RELU, ACT_LEAKY_RELU, ACT_SIGMOID, ACT_ELU, ACT_COUNT };
enum { LIK_GAUSSIAN = 0, LIK_BERNOULLI, LIK_COUNT };
enum { OPT_SGD = 0, OPT_ADAM };

#define VAE_MAX_HIDDEN 32                        /* hidden layers per side */
#define VAE_MAX_LAYERS (2 * VAE_MAX_HIDDEN + 3)  /* + mu, logvar, out */
#define VAE_MAX_WIDTH (1 << 24)                  /* any one layer's width */

typedef struct {
    int D, K;                        /* input width, latent width */
    int n_enc, n_dec;                /* hidden layers in encoder, decoder */
    int enc_h[VAE_MAX_HIDDEN];       /* encoder hidden widths */
    int dec_h[VAE_MAX_HIDDEN];       /* decoder hidden widths */
    int act;                         /* ACT_* for every hidden layer */
    int lik;                         /* LIK_* of the decoder output */
    int variational;                 /* 1: VAE (mu, logvar, noise, KL); 0: plain AE (z = mu) */
} VaeConfig;

/* one linear layer inside the flat parameter buffer */
typedef struct {
    size_t w;      /* offset of W, shape (I, O) */
    size_t b;      /* offset of b, shape (O,) */
    int I, O;
} LinearSlot;

/* The parameter layout (gradients and optimizer moments share it):
 * enc.0 .. enc.{n_enc-1}, enc.mu, [enc.logvar], dec.0 .. dec.{n_dec-1}, dec.out */
typedef struct {
    VaeConfig cfg;
    int n_layers;
    LinearSlot layer[VAE_MAX_LAYERS];
    int mu, logvar, dec0, out;       /* indices into layer[]; logvar = -1 for an AE */
    size_t num_params;               /* P */
    int max_width;                   /* widest layer output or input, for scratch rows */
} VaeLayout;

/* Offsets (in elements) of every activation inside one work buffer of B rows. */
typedef struct {
    size_t B;
    size_t enc[VAE_MAX_HIDDEN];      /* (B, enc_h[l]) hidden outputs, after the activation */
    size_t mu, logvar, eps, z;       /* (B, K) each */
    size_t dec[VAE_MAX_HIDDEN];      /* (B, dec_h[l]) */
    size_t out;                      /* (B, D) mean (gaussian) or logits (bernoulli) */
    size_t ga, gb;                   /* (B, max_width) two scratch gradients, ping-pong */
    size_t gmu, glogvar;             /* (B, K) */
    size_t pack;                     /* threads x pack_len: gemm's packing buffers */
    size_t pack_len;                 /* elements of one thread's packing buffer */
    int threads;                     /* threads gemm may use */
    size_t total;                    /* elements in the whole buffer */
} VaeWork;

/* gemm's blocking (gemm.inc): depth of a block, and upper bounds over the
 * instruction sets of its rows (MC = 24 MR, MR <= 16), of a micro-tile's
 * columns (NR) and of a block's columns */
#define GEMM_KC 256
#define GEMM_MC_MAX (24 * 16)
#define GEMM_NR_MAX 32
#define GEMM_NC_MAX 2048
/* a product with fewer multiply-adds than this skips packing where it can */
#define VAE_DIRECT_GEMM_MACS (1 << 19)
/* a product with fewer multiply-adds than this uses the short micro-tile */
#define VAE_SMALL_GEMM_MACS (1 << 24)
/* a product with fewer multiply-adds than this runs on one thread */
#define VAE_PARALLEL_MIN_MACS (1 << 20)
/* elements a packing buffer keeps spare to align its start to 64 bytes */
#define VAE_PACK_SLACK 64
#define VAE_MAX_THREADS 256

/* batch means of the per-example losses */
typedef struct { double loss, recon, kl; } VaeStats;

typedef struct {
    int kind;                        /* OPT_SGD or OPT_ADAM */
    double lr;
    double beta1, beta2, eps;        /* Adam */
    double momentum;                 /* SGD */
    double clip_norm;                /* <= 0: no clipping */
    int64_t t;                       /* steps taken so far; the update uses t + 1 */
} VaeOptim;

int vae_layout(VaeLayout *L, const VaeConfig *cfg);
int vae_work(VaeWork *W, const VaeLayout *L, size_t B, int threads);
size_t vae_pack_len(size_t max_n);

/* instruction sets with their own compiled kernels; vae_isa() picks the best
 * one this CPU runs */
enum { ISA_DEFAULT = 0, ISA_AVX2, ISA_AVX512, ISA_COUNT };
int vae_isa(void);
const char *vae_isa_name(int isa);

/* The typed kernels. The template files (gemm.inc, layers.inc, vae.inc,
 * optim.inc) are compiled once per float type and instruction set:
 * vae_f32.c (real = float, baseline), vae_f32_avx2.c, vae_f32_avx512.c and the
 * same for f64; S is the suffix (f32, f32_avx2, ...). */
#define VAE_DECLARE(real, S)                                                              \
    void vae_encode_##S(const VaeLayout *L, const VaeWork *W, real *ws, const real *params, \
                        const real *x, size_t B);                                         \
    void vae_reparameterize_##S(real *z, const real *mu, const real *logvar,              \
                                const real *eps, size_t n);                               \
    void vae_decode_##S(const VaeLayout *L, const VaeWork *W, real *ws, const real *params, \
                        size_t B);                                                        \
    void vae_loss_##S(VaeStats *st, const VaeLayout *L, const VaeWork *W, const real *ws, \
                      const real *x, size_t B, double beta);                              \
    void vae_backward_##S(real *grads, const VaeLayout *L, const VaeWork *W, real *ws,     \
                          const real *params, const real *x, size_t B, double beta,        \
                          double scale, int accumulate, double *sq);                      \
    void vae_forward_##S(const VaeLayout *L, const VaeWork *W, real *ws, const real *params, \
                         const real *x, size_t B);                                        \
    int vae_train_step_##S(VaeStats *st, const VaeLayout *L, const VaeWork *W, real *ws,   \
                           real *params, real *grads, real *s1, real *s2, VaeOptim *opt,  \
                           const real *x, size_t B, double beta);                         \
    void vae_normal_##S(real *out, size_t n, Rng *rng);                                   \
    ptrdiff_t vae_find_nonfinite_##S(const real *a, size_t n);                            \
    ptrdiff_t vae_find_outside_unit_##S(const real *a, size_t n);                         \
    void vae_sigmoid_##S(real *a, size_t n);                                              \
    void vae_matmul_##S(real *C, const real *A, const real *B, size_t M, size_t N, size_t K, \
                        int trans_a, int trans_b, int reference, real *pack, size_t pack_len, \
                        int threads);                                                     \
    void vae_activation_##S(real *a, size_t n, int act);

VAE_DECLARE(float, f32)
VAE_DECLARE(double, f64)
VAE_DECLARE(float, f32_avx2)
VAE_DECLARE(double, f64_avx2)
VAE_DECLARE(float, f32_avx512)
VAE_DECLARE(double, f64_avx512)

#endif
