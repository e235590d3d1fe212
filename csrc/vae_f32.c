/*
 * vae_f32.c: the typed kernels for real = float. This file only instantiates the
 * templates; the math lives in layers.inc, vae.inc and optim.inc, so float
 * and double share one code path.
 */
#include <string.h>
#include <tgmath.h>
#undef I /* <complex.h>, pulled in by <tgmath.h>, defines I; here I is a layer's input width */

#include "vae.h"

#define real float
#define S(name) name##_f32

#include "layers.inc"
#include "vae.inc"
#include "optim.inc"
