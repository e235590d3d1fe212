/*
 * vq.h: a vector-quantised autoencoder (VQ-VAE: van den Oord, Vinyals and
 * Kavukcuoglu 2017, "Neural Discrete Representation Learning") on the same
 * layer catalogue as the VAE and the GAN.
 *
 *   encoder    z_e = enc(x)                  (B, d) flat, or (B, d, h, w): S = h w positions
 *   quantise   k_s = argmin_k |z_e,s - e_k|^2 for every position s (ties: the lowest k),
 *              computed as |e_k|^2 - 2 z_e,s . e_k with one gemm; z_q,s = e_{k_s}
 *   decoder    out = dec(z_q)                (B, D), the likelihood's parameters as in the VAE
 *   loss       mean over the batch of recon(x, out) + commitment sum_s |z_e,s - sg(e)|^2
 *              (+ sum_s |sg(z_e,s) - e|^2 when the codebook learns by gradient)
 *   gradient   straight through: d loss / d z_e = d loss / d z_q + the commitment term's
 *
 * With codebook updates by exponential moving averages (appendix A.1 of the
 * paper) the codebook gets no gradient; after the optimizer's update each code
 * k takes, with N (K) the averaged counts and M (K, d) the averaged sums:
 *   N_k <- decay N_k + (1 - decay) n_k,  M_k <- decay M_k + (1 - decay) sum_{s: k_s = k} z_e,s
 *   e_k  = M_k / Ntilde_k,  Ntilde_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j   (eps = 1e-5)
 * where n_k counts the batch's positions assigned to k.
 *
 * Parameter layout: the encoder's layers with parameters (W, b each), the
 * codebook (K, d), the decoder's layers, [dec.logvar (D,) for gaussian_learned].
 *
 * Dimension letters as in vae.h, plus K = codebook size, d = code width,
 * S = positions per example, E = d S (the encoder's output per example) and
 * M = B S (the positions of a batch).
 *
 * What this is not: a second set of layers, likelihoods or optimizers; vq.inc
 * wires vae.inc's stacks and likelihoods and optim.inc's updates around the
 * quantiser, vq.c lays out the buffers and loops over chunks of rows.
 */
#ifndef VAECORE_VQ_H
#define VAECORE_VQ_H

#include "vae.h"

#define VQ_EMA_EPS 1e-5              /* the Laplace smoothing of the averaged counts */
#define VQ_SEARCH_ROWS 256           /* positions searched per gemm (the scores are VQ_SEARCH_ROWS x K) */

typedef struct {
    VaeShape input;                  /* the data's shape; D = c * h * w */
    int K;                           /* codebook size */
    int d;                           /* code width */
    int n_enc, n_dec;
    LayerSpec enc[VAE_MAX_LAYERS];
    LayerSpec dec[VAE_MAX_LAYERS];
    int lik;                         /* LIK_* */
    int ema;                         /* 1: the codebook follows moving averages; 0: it learns by gradient */
} VqConfig;

typedef struct {
    VqConfig cfg;
    VaeStack enc, dec;
    VaeShape code;                   /* the encoder's output shape: (d) or (d, h, w) */
    size_t D, E, S;                  /* data size, encoder output size, positions per example */
    size_t codebook;                 /* offset of the codebook (K, d) */
    size_t dec_logvar;               /* offset of dec.logvar (D), gaussian_learned only */
    size_t num_params;
    size_t max_row;                  /* the largest per-example size of any layer's input or output */
} VqLayout;

/* offsets (in elements) inside one work buffer of B rows */
typedef struct {
    size_t B;
    size_t enc[VAE_MAX_LAYERS];      /* (B, O) each encoder layer's output (VAE_AT_INPUT: x) */
    size_t dec[VAE_MAX_LAYERS];      /* (B, O) each decoder layer's output (VAE_AT_INPUT: zq) */
    size_t zt;                       /* (M, d) z_e one row per position */
    size_t zq;                       /* (B, E) the decoder's input, z_e's layout */
    size_t idx;                      /* M int32 codes (in the real buffer: ceil(4 M / sizeof(real)) elements) */
    size_t scores;                   /* (VQ_SEARCH_ROWS, K) */
    size_t enorm;                    /* (K) |e_k|^2 */
    size_t counts;                   /* K doubles (2 K elements at an even offset, so 8-byte aligned for
                                      * either real; twice the room a double work buffer needs): the
                                      * batch's assignments */
    size_t sums;                     /* (K, d): the sums of the batch's z_e per code, for EMA */
    size_t ga, gb;                   /* (B, max_row) two scratch gradients, ping-pong */
    size_t scratch, scratch_len;     /* the conv layers' scratch */
    size_t pack, pack_len;           /* gemm's packing buffers, threads x pack_len */
    int threads;
    size_t total;
} VqWork;

/* batch means: loss = recon + commitment + codebook (each term as it enters the loss: commitment
 * is weighted, codebook is 0 with EMA); perplexity = exp(entropy of the batch's code frequencies) */
typedef struct { double loss, recon, commitment, codebook, perplexity; } VqStats;

/* what the stats of many rows are made of, added up chunk by chunk: the sum over the rows of the
 * reconstruction term, the sum of |z_e - z_q|^2, and the positions coded k in counts (K) */
typedef struct { double recon, sq; double *counts; } VqSums;

/* the settings of a step beyond the optimizer's */
typedef struct {
    double commitment;               /* the weight of the commitment term */
    double decay;                    /* EMA decay in [0, 1) */
} VqHyper;

/* The typed VQ kernels of one float type and instruction set (vq.inc), reached through
 * VaeKernels.vq. Arrays are void * holding `real`s; codes are int32. */
typedef struct VqKernels {
    /* z_e (B, E) of x (B, D): the encoder's output in the work buffer */
    const void *(*encode)(const VqLayout *L, const VqWork *W, void *ws, const void *params, const void *x, size_t B);
    /* codes (M) and |z - e|^2 (M) (dist may be NULL) of z_e (B, E) */
    void (*nearest)(const VqLayout *L, const VqWork *W, void *ws, const void *params, const void *ze, size_t B,
                    int32_t *codes, void *dist);
    /* the decoder's output (B, D) for codes (M) */
    const void *(*decode)(const VqLayout *L, const VqWork *W, void *ws, const void *params, const int32_t *codes,
                          size_t B);
    /* acc += the sums of x (B, D); when grads (P) is not NULL, also the gradient of the sum of the
     * loss over these rows divided by n (the rows of the whole mean; the codebook's part 0 with EMA),
     * added to grads when accumulate, else written over them */
    void (*loss_chunk)(VqSums *acc, const VqLayout *L, const VqWork *W, void *ws, const void *params, void *grads,
                       const void *x, size_t B, const VqHyper *h, double n, int accumulate);
    /* one training step: forward, backward, clipping, the optimizer's update, then the EMA update of
     * the codebook (ema (K + K d): N then M); usage (K) += the batch's counts unless NULL. A step
     * whose loss, gradient or update is not finite changes nothing. */
    int (*train_step)(VqStats *st, const VqLayout *L, const VqWork *W, void *ws, void *params, void *grads,
                      void *s1, void *s2, int64_t *t, const VaeOptim *opt, void *ema, int64_t *usage,
                      const void *x, size_t B, const VqHyper *h);
} VqKernels;

int vq_layout(VqLayout *L, const VqConfig *cfg);
int vq_work(VqWork *W, const VqLayout *L, size_t B, int threads);

/* vq.c: whole calls on n rows, in chunks of VAE_CHUNK_ROWS; each allocates its buffers */
/* z_e (n, E) of x (n, D) */
int vq_encode_rows(const VaeKernels *k, const VqLayout *L, int threads, const void *params, const void *x,
                   size_t n, void *ze);
/* codes (n S) and dist (n S) (or NULL) of z_e (n, E) */
int vq_nearest_rows(const VaeKernels *k, const VqLayout *L, int threads, const void *params, const void *ze,
                    size_t n, int32_t *codes, void *dist);
/* out (n, D) for codes (n S); probabilities instead of logits when probs */
int vq_decode_rows(const VaeKernels *k, const VqLayout *L, int threads, const void *params, const int32_t *codes,
                   size_t n, void *out, int probs);
/* the stats of n rows of S positions each from their sums */
void vq_finish_stats(VqStats *st, const VqSums *s, size_t n, size_t S, size_t K, const VqHyper *h, int ema);
/* the batch's stats of x (n, D), and its gradient into grads (P) unless NULL: one pass over the rows in
 * chunks of VAE_CHUNK_ROWS, their sums and their gradients added up */
int vq_loss_rows(const VaeKernels *k, const VqLayout *L, int threads, const void *params, const void *x, size_t n,
                 const VqHyper *h, VqStats *st, void *grads);

typedef struct {
    void *grads;                     /* (P) */
    void *ws;
    size_t ws_len;
} VqStepBuffers;
void vq_step_buffers_free(VqStepBuffers *sb);
int vq_train_rows(const VaeKernels *k, const VqLayout *L, VqStepBuffers *sb, int threads, void *params, void *s1,
                  void *s2, int64_t *t, const VaeOptim *opt, void *ema, int64_t *usage, const void *x, size_t n,
                  const VqHyper *h, VqStats *st);

#endif
