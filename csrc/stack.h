/*
 * stack.h: one layer stack on its own flat parameter buffer, with no loss
 * attached: out = f(x) forward, the gradient of any scalar loss whose
 * gradient dout = d loss / d out the caller supplies, and Adam on the buffer.
 * vaecore.AutoregressivePrior (MADE, Germain et al. 2015) is its user: its
 * masked MLP runs here, and its softmax cross-entropy and masks stay in
 * Python, where they are a few vectorized lines.
 *
 *   out = stack(x)                          x (B, D), out (B, O)
 *   grads = sum_i (d out_i / d params)^T dout_i      grads (P), dout (B, O)
 *
 * Dimension letters as in vae.h, plus O = the stack's output size per example.
 *
 * What this is not: a second set of layers or optimizers. The stack runs
 * through vae.inc's stack_forward / stack_backward and optim.inc's
 * adam_update; stack.inc only wires them, stack.c lays out the buffers and
 * loops over chunks of rows.
 */
#ifndef VAECORE_STACK_H
#define VAECORE_STACK_H

#include "vae.h"

typedef struct {
    VaeShape in, out;                /* per example: D = size(in), O = size(out) */
    int n;                           /* layers */
    LayerSpec spec[VAE_MAX_LAYERS];  /* as configured (for the binding's config) */
    VaeStack st;
    size_t D, O;
    size_t num_params;               /* P */
    size_t max_row;                  /* the largest per-example size of any layer's input or output */
} StackLayout;

/* Offsets (in elements) inside one work buffer of B rows. */
typedef struct {
    size_t B;
    size_t off[VAE_MAX_LAYERS];      /* (B, O) output of each layer (or VAE_AT_INPUT: x) */
    size_t ga, gb;                   /* (B, max_row) two scratch gradients, ping-pong */
    size_t scratch, scratch_len;     /* the conv layers' scratch */
    size_t pack, pack_len;           /* gemm's packing buffers, threads x pack_len */
    int threads;
    size_t total;                    /* elements in the whole buffer */
} StackWork;

/* The typed stack kernels of one float type and instruction set (stack.inc), reached
 * through VaeKernels.stack. Arrays are void * holding `real`s. */
typedef struct StackKernels {
    /* the output (B, O) of x (B, D); every layer's output in the work buffer */
    const void *(*forward)(const StackLayout *L, const StackWork *W, void *ws, const void *params, const void *x,
                           size_t B);
    /* grads (P) (+)= (d out / d params)^T dout for x (B, D), dout (B, O): the forward pass is run
     * first; added to grads when accumulate, else written over them */
    void (*backward)(const StackLayout *L, const StackWork *W, void *ws, const void *params, void *grads,
                     const void *x, const void *dout, size_t B, int accumulate);
    /* Adam step t + 1 (optim.inc's adam_update) on params (P) with moments m, v (P) */
    int (*adam)(void *params, void *m, void *v, const void *grads, size_t P, const VaeOptim *opt, int64_t t,
                int threads);
} StackKernels;

int stack_layout(StackLayout *L, VaeShape in, const LayerSpec *specs, int n);
int stack_work(StackWork *W, const StackLayout *L, size_t B, int threads);

/* stack.c: whole calls on n rows, in chunks of VAE_CHUNK_ROWS; each allocates its buffers */
/* out (n, O) = stack(x), x (n, D) */
int stack_forward_rows(const VaeKernels *k, const StackLayout *L, int threads, const void *params, const void *x,
                       size_t n, void *out);
/* grads (P) = sum over the n rows of (d out_i / d params)^T dout_i, x (n, D), dout (n, O) */
int stack_backward_rows(const VaeKernels *k, const StackLayout *L, int threads, const void *params, const void *x,
                        const void *dout, size_t n, void *grads);
/* One Adam step on params (P) with moments m, v (P), from grads (P): VAE_ERR_NONFINITE_GRAD when
 * grads holds a NaN or Inf, VAE_ERR_NONFINITE_UPDATE when the update would leave one; either
 * way nothing is changed. Otherwise *t += 1. */
int stack_adam_step(const VaeKernels *k, const StackLayout *L, int threads, void *params, void *m, void *v,
                    const void *grads, int64_t *t, const VaeOptim *opt);

#endif
