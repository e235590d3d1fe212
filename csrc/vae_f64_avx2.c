/*
 * vae_f64_avx2.c: the kernels for real = double, AVX2 with FMA (chosen at run time). This file only instantiates
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
#define real double
#define REAL_IS_DOUBLE 1
#define VBYTES 32
#define GEMM_MR 6
#define S(name) name##_f64_avx2

#include "kernels.inc"
#endif
