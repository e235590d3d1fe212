/*
 * vae.h: the plain-C core of vaecore. One header for the whole core: the
 * model configuration (an encoder stack and a decoder stack of layers), the
 * layout of the flat parameter buffer, the layout of the per-batch work
 * buffer, error codes, and the table of typed kernels (one set per float type
 * and instruction set, all compiled from the same template files).
 *
 * What this is NOT: it knows nothing of Python or NumPy (csrc/_core.c is the
 * only file that does), it never allocates inside a training step, never
 * prints and never exits. Every function that can fail returns an int error
 * code (VAE_OK on success).
 *
 * Dimension letters, used in every signature and shape comment:
 *   B = batch (rows), D = input size (C*H*W for images), K = latent width,
 *   F = width of the encoder's flattened output (the heads' input),
 *   I = a layer's input size per example, O = its output size per example,
 *   P = number of parameters (the length of the flat buffer);
 *   images are NCHW: (B, C, H, W).
 * All arrays are row-major and contiguous; a linear layer computes
 * out = inp @ W + b with W of shape (I, O).
 */
#ifndef VAECORE_VAE_H
#define VAECORE_VAE_H

#include <stddef.h>
#include <stdint.h>

#include "conv.h"
#include "rng.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define VAE_X86 1   /* compile the AVX2 and AVX-512 kernels, chosen at run time */
#endif

/*
 * Subnormal numbers (below 2^-126 in float32) are flushed to zero in every
 * kernel: a result that would be subnormal is 0, and a subnormal input reads
 * as 0 (x86's FTZ and DAZ modes, as TensorFlow's CPU kernels set them). On x86
 * an operation on a subnormal takes a microcode assist of about a hundred
 * cycles, and they are not rare in training: Adam's first moment of a weight
 * whose gradient stays 0 decays by beta1 per step into the subnormals and
 * stays there (0.9 times the smallest subnormal rounds back to it), which made
 * the digits step 1.9x slower after 1,600 steps. Flushing changes only values
 * below 2^-126 (2^-1022 in float64). The mode is per thread: every entry of the
 * kernel tables sets it for the calling thread (FLUSH_SUBNORMALS) and every
 * OpenMP region for each of its threads (gemm.inc), so that the result stays
 * bitwise the same for any thread count. On leaving, the calling thread gets
 * its own mode back and a pool thread is left without flushing, so NumPy,
 * Python and other users of the thread or the OpenMP pool are not affected.
 */
#define FLUSH_SUBNORMALS_BITS 0x8040u   /* MXCSR's FTZ (bit 15) | DAZ (bit 6) */
#if defined(__GNUC__) && defined(__SSE__)
#include <xmmintrin.h>
static inline unsigned int flush_subnormals_begin(void)
{
    unsigned int saved = _mm_getcsr();
    _mm_setcsr(saved | FLUSH_SUBNORMALS_BITS);
    return saved;
}
static inline void flush_subnormals_end(unsigned int *saved) { _mm_setcsr(*saved); }
#else
static inline unsigned int flush_subnormals_begin(void) { return 0; }
static inline void flush_subnormals_end(unsigned int *saved) { (void)saved; }
#endif
/* the mode on from here to the end of the enclosing block (GCC's cleanup attribute restores it) */
#define FLUSH_SUBNORMALS \
    unsigned int flush_subnormals_saved __attribute__((cleanup(flush_subnormals_end), unused)) = \
        flush_subnormals_begin()

/* error codes; csrc/_core.c turns each into a Python exception */
enum {
    VAE_OK = 0,
    VAE_ERR_CONFIG,           /* a size or name in the configuration is invalid */
    VAE_ERR_OVERFLOW,         /* a size computation would overflow size_t */
    VAE_ERR_NOMEM,            /* malloc failed (only outside a training step) */
    VAE_ERR_NONFINITE_LOSS,   /* the loss of a step is NaN or Inf */
    VAE_ERR_NONFINITE_GRAD,   /* the gradient of a step holds a NaN or Inf */
    VAE_ERR_NONFINITE_UPDATE  /* the update would leave a NaN or Inf in the parameters or optimizer state */
};

enum { ACT_TANH = 0, ACT_RELU, ACT_LEAKY_RELU, ACT_SIGMOID, ACT_ELU, ACT_COUNT };
/* gaussian: squared error (a Gaussian of variance 1/2); bernoulli: logits;
 * gaussian_learned: a Gaussian with a learned per-dimension log-variance dec.logvar (D,) */
enum { LIK_GAUSSIAN = 0, LIK_BERNOULLI, LIK_GAUSSIAN_LEARNED, LIK_COUNT };
enum { OPT_SGD = 0, OPT_ADAM };

/* the kinds of layer; vaecore/layers.py uses the same numbers */
enum { LAYER_LINEAR = 0, LAYER_CONV2D, LAYER_CONVT2D, LAYER_ACT, LAYER_FLATTEN, LAYER_RESHAPE, LAYER_KIND_COUNT };

#define VAE_MAX_LAYERS 72                        /* layers per stack */
#define VAE_MAX_HIDDEN 32                        /* hidden layers per side of the MLP form (vaecore.VAE(input_dim, ...)) */
#define VAE_MAX_WIDTH (1 << 24)                  /* any one size (a width, a channel count, C*H*W) */

/* a layer as the configuration gives it: its kind and up to 7 ints
 *   LAYER_LINEAR   out
 *   LAYER_CONV2D   O, KH, KW, SH, SW, PH, PW   (LAYER_CONVT2D the same)
 *   LAYER_ACT      ACT_*
 *   LAYER_FLATTEN  -
 *   LAYER_RESHAPE  C, H, W */
typedef struct {
    int kind;
    int arg[7];
} LayerSpec;

/* the shape of one example: flat (rank 1: c = width, h = w = 1) or an image (rank 3) */
typedef struct { int rank, c, h, w; } VaeShape;

typedef struct {
    VaeShape input;                  /* the data's shape; D = c * h * w */
    int K;                           /* latent width */
    int n_enc, n_dec;                /* layers in the encoder and decoder stacks */
    LayerSpec enc[VAE_MAX_LAYERS];
    LayerSpec dec[VAE_MAX_LAYERS];
    int lik;                         /* LIK_* of the decoder output */
    int variational;                 /* 1: VAE (mu, logvar, noise, KL); 0: plain AE (z = mu) */
} VaeConfig;

/* one layer of a stack, with everything derived from the configuration */
typedef struct {
    int kind;                        /* LAYER_* */
    int act;                         /* LAYER_ACT: ACT_* */
    VaeShape in, out;                /* per example */
    ConvShape conv;                  /* LAYER_CONV2D, LAYER_CONVT2D */
    size_t w, b;                     /* offsets of W and b in the parameter buffer (layers with parameters) */
    size_t nw, nb;                   /* their lengths (0 for layers without parameters) */
    int alias;                       /* 1: the output is the input's memory (flatten, reshape, or an
                                        activation applied in place to a linear or conv output) */
} Layer;

/* a stack of layers */
typedef struct {
    int n;
    Layer layer[VAE_MAX_LAYERS];
    int first_param;                 /* index of the first layer with parameters, or n */
} VaeStack;

/* The parameter layout (gradients and optimizer moments share it):
 * encoder layers with parameters in order (W, b each), enc.mu, [enc.logvar],
 * decoder layers with parameters in order, [dec.logvar (D,) for gaussian_learned] */
typedef struct {
    VaeConfig cfg;
    VaeStack enc, dec;
    Layer mu, logvar;                /* the linear heads (F, K); logvar.nw = 0 for an AE */
    size_t dec_logvar;               /* offset of dec.logvar (D,), gaussian_learned only */
    size_t D, F;                     /* input size, the heads' input width */
    size_t num_params;               /* P */
    size_t max_row;                  /* the largest per-example size of any layer's input or output */
} VaeLayout;

/* where a layer's output lives in the work buffer: an offset, or VAE_AT_INPUT
 * for the stack's own input (x for the encoder, z for the decoder) */
#define VAE_AT_INPUT SIZE_MAX

/* Offsets (in elements) of every activation inside one work buffer of B rows. */
typedef struct {
    size_t B;
    size_t enc[VAE_MAX_LAYERS];      /* (B, O) output of each encoder layer (or VAE_AT_INPUT) */
    size_t dec[VAE_MAX_LAYERS];      /* (B, O) output of each decoder layer (or VAE_AT_INPUT) */
    size_t mu, logvar, eps, z;       /* (B, K) each */
    size_t ga, gb;                   /* (B, max_row) two scratch gradients, ping-pong */
    size_t gmu, glogvar;             /* (B, K) */
    size_t scratch, scratch_len;     /* the conv layers' scratch (im2col columns) */
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
/* a product below VAE_SMALL_GEMM_MACS (an ISA may raise it: gemm.inc's GEMM_DIRECT_MAX_MACS)
 * with at most this many columns, or rows, leaves A unpacked */
#define VAE_DIRECT_GEMM_MAX_N 256
#define VAE_DIRECT_GEMM_MAX_M 16
/* a product with fewer multiply-adds than this uses the short micro-tile */
#define VAE_SMALL_GEMM_MACS (1 << 24)
/* a product with fewer multiply-adds than this runs on one thread */
#define VAE_PARALLEL_MIN_MACS (1 << 20)
/* elements a packing buffer keeps spare to align its start to 64 bytes */
#define VAE_PACK_SLACK 64
#define VAE_MAX_THREADS 256

/* batch means (or sums, inside the core) of the per-example losses */
typedef struct { double loss, recon, kl; } VaeStats;

typedef struct {
    int kind;                        /* OPT_SGD or OPT_ADAM */
    double lr;
    double beta1, beta2, eps;        /* Adam */
    double momentum;                 /* SGD */
    double clip_norm;                /* <= 0: no clipping */
} VaeOptim;

int vae_layout(VaeLayout *L, const VaeConfig *cfg);
int vae_work(VaeWork *W, const VaeLayout *L, size_t B, int threads);
size_t vae_pack_len(size_t max_n);
size_t vae_shape_size(VaeShape s);
/* one stack's layers from its specs for input shape `in`: their parameters appended at
 * *num_params (advanced), *max_row raised to the largest row seen, the output shape in *out */
int vae_build_stack(VaeStack *st, const LayerSpec *specs, int n, VaeShape in, VaeShape *out, size_t *num_params,
                    size_t *max_row);
/* offsets (from *n, advanced) of the outputs of a stack's layers for B rows that need memory of
 * their own (aliased ones get the previous offset, VAE_AT_INPUT at first); *scratch raised to the
 * conv scratch they need */
int vae_place_stack(size_t *off, size_t *n, const VaeStack *st, size_t B, size_t *scratch);
/* threads clamped to [1, VAE_MAX_THREADS] */
int vae_threads(int threads);
/* The end every work buffer shares, placed from *n (advanced): the conv scratch (scratch elements) at
 * *scratch_off, then one packing buffer per thread for products of up to `widest` columns (the widest
 * block when there is conv scratch) at *pack, each of *pack_len elements; *threads_out the clamped
 * threads. Returns VAE_OK or VAE_ERR_OVERFLOW. */
int vae_work_tail(size_t *n, size_t scratch, size_t widest, int threads, size_t *scratch_off, size_t *pack,
                  size_t *pack_len, int *threads_out);

/* instruction sets with their own compiled kernels; vae_isa() picks the best
 * one this CPU runs */
enum { ISA_DEFAULT = 0, ISA_AVX2, ISA_AVX512, ISA_COUNT };
int vae_isa(void);
const char *vae_isa_name(int isa);

/*
 * The typed kernels of one float type and instruction set. The template files
 * (gemm.inc, conv.inc, layers.inc, vae.inc, optim.inc, via kernels.inc) are
 * compiled once per pair: vae_f32.c (real = float, baseline), vae_f32_avx2.c,
 * vae_f32_avx512.c and the same for f64, each defining one VaeKernels table
 * (vae_kernels_f32, vae_kernels_f32_avx2, ...). Arrays are passed as void *
 * and hold `real`s of the table's type. A model picks its table once
 * (vae_kernels) and calls through it.
 */
typedef struct {
    size_t itemsize;                 /* sizeof(real) */
    /* x (B, D) -> the encoder's outputs, mu (B, K), logvar (B, K) in the work buffer */
    void (*encode)(const VaeLayout *L, const VaeWork *W, void *ws, const void *params, const void *x, size_t B);
    /* z (B, K) in the work buffer -> every decoder output, the last one (B, D) */
    void (*decode)(const VaeLayout *L, const VaeWork *W, void *ws, const void *params, size_t B);
    /* the whole forward pass of x (B, D), with eps (B, K) already in the work buffer */
    void (*forward)(const VaeLayout *L, const VaeWork *W, void *ws, const void *params, const void *x, size_t B);
    /* st->recon, st->kl += sums over the B rows of the forward pass in the work buffer */
    void (*loss)(VaeStats *st, const VaeLayout *L, const VaeWork *W, const void *ws, const void *params,
                 const void *x, size_t B);
    /* grads (P) (+)= d (scale * sum_i recon_i + beta kl_i) / d params */
    void (*backward)(void *grads, const VaeLayout *L, const VaeWork *W, void *ws, const void *params,
                     const void *x, size_t B, double beta, double scale, int accumulate, double *sq);
    /* one training step (optim.inc); *t counts steps and is advanced only when the step is applied */
    int (*train_step)(VaeStats *st, const VaeLayout *L, const VaeWork *W, void *ws, void *params, void *grads,
                      void *s1, void *s2, int64_t *t, const VaeOptim *opt, const void *x, size_t B, double beta);
    /* the decoder output (B, D) of the forward pass: where it is in the work buffer (or z) */
    const void *(*output)(const VaeLayout *L, const VaeWork *W, const void *ws);
    void (*reparameterize)(void *z, const void *mu, const void *logvar, const void *eps, size_t n);
    void (*normal)(void *out, size_t n, Rng *rng);
    ptrdiff_t (*find_nonfinite)(const void *a, size_t n);
    ptrdiff_t (*find_outside_unit)(const void *a, size_t n);
    void (*sigmoid)(void *a, size_t n);
    /* test and benchmark hooks (hooks.c) */
    void (*matmul)(void *C, const void *A, const void *B, size_t M, size_t N, size_t K, int trans_a,
                   int trans_b, int reference, void *pack, size_t pack_len, int threads);
    void (*activation)(void *a, size_t n, int act);
    const struct GanKernels *gan;    /* the GAN's kernels of the same type and instruction set (gan.h) */
    const struct VqKernels *vq;      /* the VQ-VAE's (vq.h) */
    const struct StackKernels *stack; /* a lone layer stack's kernels of the same type and set (stack.h) */
} VaeKernels;

extern const VaeKernels vae_kernels_f32, vae_kernels_f64;
#ifdef VAE_X86
extern const VaeKernels vae_kernels_f32_avx2, vae_kernels_f64_avx2, vae_kernels_f32_avx512, vae_kernels_f64_avx512;
#endif
/* the table for double (is_double = 1) or float, on instruction set isa */
const VaeKernels *vae_kernels(int is_double, int isa);

/*
 * model.c: whole calls on n rows, in chunks of VAE_CHUNK_ROWS so that their
 * work buffers stay small. Each allocates what it needs (these are not
 * training steps) and returns VAE_ERR_NOMEM / VAE_ERR_OVERFLOW on failure.
 */
#define VAE_CHUNK_ROWS 256
/* mu, logvar (n, K) of x (n, D); logvar may be NULL (an AE has none) */
int vae_encode_rows(const VaeKernels *k, const VaeLayout *L, int threads, const void *params, const void *x,
                    size_t n, void *mu, void *logvar);
/* out (n, D) = the decoder's output for z (n, K); probabilities instead of logits when probs */
int vae_decode_rows(const VaeKernels *k, const VaeLayout *L, int threads, const void *params, const void *z,
                    size_t n, void *out, int probs);
/* the batch means of loss, recon and kl of x (n, D) with noise eps (n, K) (NULL for an AE), and
 * their gradient into grads (P) unless grads is NULL */
int vae_loss_rows(const VaeKernels *k, const VaeLayout *L, int threads, const void *params, const void *x,
                  const void *eps, size_t n, double beta, VaeStats *st, void *grads);

/* n bytes for a buffer that lives across calls: on huge pages when n is large and the system
 * allows, all resident at once; release with free() */
void *vae_alloc(size_t n);
/* malloc of n items of itemsize bytes (and one spare byte), or NULL with *err set to
 * VAE_ERR_OVERFLOW or VAE_ERR_NOMEM. A nonzero *err on entry (a size that could not be
 * computed) allocates nothing and becomes VAE_ERR_OVERFLOW. */
void *vae_alloc_items(size_t n, size_t itemsize, int *err);

/* a model's training buffers, allocated on its first step and grown for larger batches only */
typedef struct {
    void *grads;                     /* (P) */
    void *ws;                        /* the work buffer */
    size_t ws_len;                   /* its capacity in elements */
} VaeStepBuffers;
void vae_step_buffers_free(VaeStepBuffers *sb);
/* One training step on x (n, D): noise from eps (n, K) if given, else drawn from rng (a step
 * that is refused leaves rng as it was), then forward, backward, clipping and the update of
 * params, s1, s2 and *t. */
int vae_train_rows(const VaeKernels *k, const VaeLayout *L, VaeStepBuffers *sb, int threads, void *params,
                   void *s1, void *s2, int64_t *t, const VaeOptim *opt, const void *x, const void *eps,
                   Rng *rng, size_t n, double beta, VaeStats *st);

/*
 * A per-phase profile of training steps, for the benchmark (hooks.c). While
 * vae_profile_on is set, train_step adds the wall time of each phase to
 * total[phase], and gemm adds its own time to gemm[phase] of the phase it runs
 * in and the time of its packing (on the first thread) to pack[phase]; what a
 * phase spends outside gemm (bias, activations, the loss, im2col/col2im,
 * clipping, the optimizer) is total - gemm. Two parts of that are timed on their
 * own: Adam's check pass (check, within the optimizer) and the gradient's squared
 * norm (norm, within the backward pass). One global profile, meant for one
 * model training at a time: concurrent steps of two models mix their times.
 */
enum { PROF_NOISE, PROF_FORWARD, PROF_LOSS, PROF_BACKWARD, PROF_OPTIMIZER, PROF_PHASES };
typedef struct {
    double total[PROF_PHASES], gemm[PROF_PHASES], pack[PROF_PHASES];   /* seconds */
    double check;                    /* of the optimizer's: Adam's finiteness check before it stores */
    double norm;                     /* of the backward's: the gradient's squared norm (add_norm) */
    long steps;                      /* training steps profiled */
    int phase;                       /* the phase running now */
} VaeProfile;
extern VaeProfile vae_profile;
extern int vae_profile_on;
double vae_seconds(void);            /* a monotonic clock */
/* the time now if profiling, else 0; then prof_add(&slot, t0) adds what has passed since */
static inline double prof_start(void) { return vae_profile_on ? vae_seconds() : 0; }
static inline void prof_add(double *slot, double t0)
{
    if (vae_profile_on) *slot += vae_seconds() - t0;
}
/* enter phase ph: *t0 (the previous phase's start) is closed and restarted */
static inline void prof_phase(int ph, double *t0)
{
    if (!vae_profile_on) return;
    double now = vae_seconds();
    vae_profile.total[vae_profile.phase] += now - *t0;
    vae_profile.phase = ph;
    *t0 = now;
}

/* hooks.c: seconds per call of the fast gemm C (M, N) = op(A) (M, K) @ op(B) (K, N) (A stored
 * (K, M) when trans_a, B (N, K) when trans_b), the best of `repeats` calls after one warm-up, or
 * a negative value when out of memory */
double vae_gemm_bench(const VaeKernels *k, size_t M, size_t N, size_t K, int trans_a, int trans_b, int repeats,
                      int threads);

#endif
