/*
 * vae_f32_avx512.c: the kernels for real = float, AVX-512F with FMA (chosen at run time). This file only instantiates
 * the templates (kernels.inc); float and double, and every instruction set,
 * share one source.
 */
#include <stdint.h>
#include <string.h>
#include <tgmath.h>
#undef I /* <complex.h>, pulled in by <tgmath.h>, defines I; here I is a layer's input width */

#include "vae.h"
#ifdef VAE_X86
#pragma GCC target("avx512f,fma")
#define real float
#define REAL_IS_DOUBLE 0
#define VBYTES 64
#define GEMM_MR 14
#define GEMM_MR_SMALL 8
#define S(name) name##_f32_avx512

#include "kernels.inc"
#endif
