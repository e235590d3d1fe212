/*
 * vae_f32_avx2.c: the kernels for real = float, AVX2 with FMA (chosen at run time). This file only instantiates
 * the templates (kernels.inc); float and double, and every instruction set,
 * share one source.
 */
#include <stdint.h>
#include <string.h>
#include <tgmath.h>
#undef I /* <complex.h>, pulled in by <tgmath.h>, defines I; here I is a layer's input width */

#include "vae.h"
#ifdef VAE_X86
#pragma GCC target("avx2,fma")
#define real float
#define REAL_IS_DOUBLE 0
#define VBYTES 32
#define GEMM_MR 6
/* products of up to 2^26 multiply-adds with few columns (or rows) leave A unpacked (gemm.inc's
 * gemm_path), 4x the common limit: on the EPYC (Zen 3) wide's latent heads, 256 x 128 x 1024,
 * ran 1.23x and their gradient 256 x 64 x 1024 (B transposed) 1.40x faster so; the Xeon keeps
 * the limit it was measured with. The paths sum in the same order, so C is bitwise the same. */
#define GEMM_DIRECT_MAX_MACS (1 << 26)
#define S(name) name##_f32_avx2

#include "kernels.inc"
#endif
