/*
 * vae_f64.c: the kernels for real = double, baseline x86-64 (SSE2) or any other CPU. This file only instantiates
 * the templates (kernels.inc); float and double, and every instruction set,
 * share one source.
 */
#include <stdint.h>
#include <string.h>
#include <tgmath.h>
#undef I /* <complex.h>, pulled in by <tgmath.h>, defines I; here I is a layer's input width */

#include "vae.h"


#define real double
#define REAL_IS_DOUBLE 1
#define VBYTES 16
#define GEMM_MR 6
#define S(name) name##_f64

#include "kernels.inc"

