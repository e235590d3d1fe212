/*
 * vae_f64.c: the typed kernels for real = double. This file only instantiates the
 * templates; the math lives in layers.inc, vae.inc and optim.inc, so float
 * and double share one code path.
 */
#include <string.h>
#include <tgmath.h>
#undef I /* <complex.h>, pulled in by <tgmath.h>, defines I; here I is a layer's input width */

#include "vae.h"

#define real double
#define S(name) name##_f64

#include "layers.inc"
#include "vae.inc"
#include "optim.inc"
