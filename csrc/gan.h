/*
 * gan.h: a generative adversarial network on the same layer catalogue as the
 * VAE (Goodfellow et al. 2014, "Generative Adversarial Nets"; the
 * non-saturating generator loss of that paper and the Adam betas (0.5, 0.999)
 * of Radford et al. 2016, DCGAN).
 *
 *   generator      x_fake = G(z)              z (B, K) ~ N(0, I), x_fake (B, D)
 *   discriminator  l = D(x)                   x (N, D), l (N, 1) logits
 *   d_loss = mean_i softplus(-D(x_i)) + mean_j softplus(D(G(z_j)))
 *   g_loss = mean_j softplus(-D(G(z_j)))
 *
 * The flat parameter buffer holds the generator's layers with parameters in
 * order (W, b each), then the discriminator's. Gradients and optimizer
 * moments share that layout; each network has its own optimizer settings and
 * its own step counter.
 *
 * Dimension letters as in vae.h, plus R = real rows of a discriminator batch
 * and N = R + B, the rows the discriminator sees in one pass.
 *
 * What this is not: a second set of layers or optimizers. The stacks run
 * through vae.inc's stack_forward / stack_backward and optim.inc's updates;
 * gan.inc only wires the two networks and the two losses together, gan.c
 * lays out the buffers and loops over chunks of rows.
 */
#ifndef VAECORE_GAN_H
#define VAECORE_GAN_H

#include "vae.h"

typedef struct {
    VaeShape data;                   /* the data's shape; D = c * h * w */
    int K;                           /* latent width (the generator's input) */
    int n_gen, n_disc;               /* layers in the two stacks */
    LayerSpec gen[VAE_MAX_LAYERS];
    LayerSpec disc[VAE_MAX_LAYERS];
} GanConfig;

typedef struct {
    GanConfig cfg;
    VaeStack gen, disc;
    size_t D;                        /* data size */
    size_t num_gen;                  /* the generator's parameters are [0, num_gen) */
    size_t num_params;               /* P; the discriminator's are [num_gen, P) */
    size_t max_row;                  /* the largest per-example size of any layer's input or output */
} GanLayout;

/* Offsets (in elements) inside one work buffer, for a discriminator batch of R real
 * and B fake rows (the generator runs on B rows). */
typedef struct {
    size_t R, B;
    size_t gen[VAE_MAX_LAYERS];      /* (B, O) output of each generator layer (or VAE_AT_INPUT: z) */
    size_t z;                        /* (B, K) the noise */
    size_t xd;                       /* (N, D) the discriminator's input: R real rows, then B fake */
    size_t disc[VAE_MAX_LAYERS];     /* (N, O) output of each discriminator layer (or VAE_AT_INPUT: xd) */
    size_t ga, gb;                   /* (N, max_row) two scratch gradients, ping-pong */
    size_t scratch, scratch_len;     /* the conv layers' scratch */
    size_t pack, pack_len;           /* gemm's packing buffers, threads x pack_len */
    int threads;
    size_t total;                    /* elements in the whole buffer */
} GanWork;

/* batch means; acc_real / acc_fake: the share of real rows with logit > 0 and of fake rows with logit < 0 */
typedef struct { double d_loss, g_loss, acc_real, acc_fake; } GanStats;

/* one network's optimizer: its settings, its state s1, s2 (P) (Adam: m, v; SGD: the momentum
 * buffer in s1, s2 unused), of which only the network's own part is read and written, and its
 * step counter */
typedef struct {
    VaeOptim opt;
    void *s1, *s2;
    int64_t *t;
} GanOptState;

/* The typed GAN kernels of one float type and instruction set (gan.inc), reached
 * through VaeKernels.gan. Arrays are void * holding `real`s. */
typedef struct GanKernels {
    /* the generator's output (B, D) for z (B, K); every layer's output in the work buffer */
    const void *(*generate)(const GanLayout *L, const GanWork *W, void *ws, const void *params, const void *z,
                            size_t B);
    /* the discriminator's logits (N, 1) for x (N, D) */
    const void *(*discriminate)(const GanLayout *L, const GanWork *W, void *ws, const void *params, const void *x,
                                size_t N);
    /* st->d_loss, acc_real, acc_fake of real rows x (R, D) and fakes G(z), z (B, K); when grads (P) is
     * not NULL it is written: d d_loss / d params on the discriminator's part, 0 on the generator's */
    void (*d_loss_grad)(GanStats *st, const GanLayout *L, const GanWork *W, void *ws, const void *params,
                        void *grads, const void *x, size_t R, const void *z, size_t B);
    /* st->g_loss of z (B, K); grads (P) when not NULL: d g_loss / d params on the generator's
     * part (through D), 0 on the discriminator's */
    void (*g_loss_grad)(GanStats *st, const GanLayout *L, const GanWork *W, void *ws, const void *params,
                        void *grads, const void *z, size_t B);
    /* one training step (gan.inc): k discriminator updates, each on B real rows of x (k B, D) and
     * B fakes from fresh noise, then one generator update on the last fakes, each network with its
     * own optimizer og, od. backup (3 P) saves params and each optimizer's state on its own part, so
     * that a step that fails anywhere changes nothing (rng included). */
    int (*train_step)(GanStats *st, const GanLayout *L, const GanWork *W, void *ws, void *params, void *grads,
                      void *backup, const GanOptState *og, const GanOptState *od, const void *x, size_t B, int k,
                      Rng *rng);
} GanKernels;

int gan_layout(GanLayout *L, const GanConfig *cfg);
int gan_work(GanWork *W, const GanLayout *L, size_t R, size_t B, int threads);

/* gan.c: whole calls on n rows (chunked where rows are independent); each allocates its buffers */
int gan_generate_rows(const VaeKernels *k, const GanLayout *L, int threads, const void *params, const void *z,
                      size_t n, void *out);
int gan_discriminate_rows(const VaeKernels *k, const GanLayout *L, int threads, const void *params, const void *x,
                          size_t n, void *out);
/* the losses over whole batches (one pass, not chunked: the means couple the rows); grads (P) or NULL */
int gan_d_loss_rows(const VaeKernels *k, const GanLayout *L, int threads, const void *params, const void *x,
                    size_t R, const void *z, size_t B, GanStats *st, void *grads);
int gan_g_loss_rows(const VaeKernels *k, const GanLayout *L, int threads, const void *params, const void *z,
                    size_t B, GanStats *st, void *grads);

/* a GAN's training buffers, allocated on its first step and grown for larger batches only */
typedef struct {
    void *grads;                     /* (P) */
    void *backup;                    /* (3 P) */
    void *ws;
    size_t ws_len;
} GanStepBuffers;
void gan_step_buffers_free(GanStepBuffers *sb);
/* one training step on x (k B, D), n = k B rows */
int gan_train_rows(const VaeKernels *k, const GanLayout *L, GanStepBuffers *sb, int threads, void *params,
                   const GanOptState *og, const GanOptState *od, const void *x, size_t n, int steps_d, Rng *rng,
                   GanStats *st);

#endif
