/*
 * conv.h: the geometry of a 2-D convolution layer and the sizes derived from
 * it, independent of the float type. The layers themselves (conv2d and
 * conv_transpose2d, forward and backward) are in conv.inc.
 *
 * Letters, used in every shape comment of conv.h and conv.inc:
 *   B batch, C input channels, H x W input size, O output channels,
 *   HO x WO output size, KH x KW kernel, SH, SW strides, PH, PW zero padding.
 * Images are NCHW: (B, C, H, W) row-major and contiguous.
 *
 * What this is not: a general convolution library (no dilation, no groups,
 * no output_padding for the transposed convolution, no other layouts).
 */
#ifndef VAECORE_CONV_H
#define VAECORE_CONV_H

#include <stddef.h>
#include <stdint.h>

/* one 2-D convolution's geometry; letters: B batch, C input channels, H x W input size,
   O output channels, HO x WO output size, KH x KW kernel, SH, SW strides, PH, PW zero padding.
   For a transposed convolution too, C, H, W describe the layer's input and O, HO, WO its output. */
typedef struct { int C, H, W, O, HO, WO, KH, KW, SH, SW, PH, PW; } ConvShape;

/* elements of scratch to aim for in one chunk of examples (1 MB of floats, so that the
 * column matrix a gemm packs from stays in a core's L2 cache; 8 MB chunks ran 20% slower):
 * conv.inc works through a batch in chunks of as many examples as fit, at least one */
#ifndef CONV_SCRATCH_TARGET   /* a test may shrink it to make every batch many chunks */
#define CONV_SCRATCH_TARGET ((size_t)1 << 18)
#endif

/* a * b, or SIZE_MAX when it overflows size_t (SIZE_MAX in gives SIZE_MAX out) */
static inline size_t conv_mul(size_t a, size_t b)
{
    if (a == SIZE_MAX || b == SIZE_MAX) return SIZE_MAX;
    if (a != 0 && b > SIZE_MAX / a) return SIZE_MAX;
    return a * b;
}

/* a + b, or SIZE_MAX when it overflows size_t */
static inline size_t conv_add(size_t a, size_t b)
{
    return b > SIZE_MAX - a ? SIZE_MAX : a + b;
}

/* every size at least 1, padding at least 0 */
static inline int conv_shape_ok(const ConvShape *s)
{
    return s->C > 0 && s->H > 0 && s->W > 0 && s->O > 0 && s->HO > 0 && s->WO > 0 && s->KH > 0 &&
           s->KW > 0 && s->SH > 0 && s->SW > 0 && s->PH >= 0 && s->PW >= 0;
}

/* Scratch one example needs (SIZE_MAX on overflow):
 *   conv2d:            im2col of its input (C*KH*KW, HO*WO) + its output by channel (O, HO*WO)
 *   conv_transpose2d:  im2col of its output (O*KH*KW, H*W)  + its input by channel (C, H*W)
 * The shape does not say which of the two it is for, so the larger. */
static inline size_t conv_example_len(const ConvShape *s)
{
    size_t P = conv_mul((size_t)s->HO, (size_t)s->WO), Q = conv_mul((size_t)s->H, (size_t)s->W);
    size_t kk = conv_mul((size_t)s->KH, (size_t)s->KW);
    size_t conv = conv_mul(conv_add(conv_mul((size_t)s->C, kk), (size_t)s->O), P);
    size_t convt = conv_mul(conv_add(conv_mul((size_t)s->O, kk), (size_t)s->C), Q);
    return conv > convt ? conv : convt;
}

/* elements of scratch the conv functions below need for a batch of B examples (see conv.inc):
 * the scratch of one example times the examples in a chunk, min(B, max(1, CONV_SCRATCH_TARGET /
 * that)). SIZE_MAX when the size overflows or the shape is invalid; 0 for B = 0. */
static inline size_t conv_scratch_len(const ConvShape *s, size_t B)
{
    if (!conv_shape_ok(s)) return SIZE_MAX;
    if (B == 0) return 0;
    size_t e = conv_example_len(s);
    if (e == SIZE_MAX) return SIZE_MAX;
    size_t chunk = CONV_SCRATCH_TARGET / e;
    if (chunk < 1) chunk = 1;
    if (chunk > B) chunk = B;
    return conv_mul(chunk, e);
}

/* one output size of a convolution, or -1 when it would be < 1 or overflow int */
static inline int conv_out_len(long long n)
{
    return n >= 1 && n <= INT32_MAX ? (int)n : -1;
}

/* s->HO, s->WO of torch.nn.functional.conv2d: HO = floor((H + 2 PH - KH) / SH) + 1.
 * Returns 0, or -1 (HO, WO untouched) when a size is invalid or the output would be empty. */
static inline int conv2d_out_size(ConvShape *s)
{
    if (s->H < 1 || s->W < 1 || s->KH < 1 || s->KW < 1 || s->SH < 1 || s->SW < 1 || s->PH < 0 || s->PW < 0)
        return -1;
    long long h = (long long)s->H + 2LL * s->PH - s->KH, w = (long long)s->W + 2LL * s->PW - s->KW;
    if (h < 0 || w < 0) return -1;   /* the kernel is larger than the padded image */
    int HO = conv_out_len(h / s->SH + 1), WO = conv_out_len(w / s->SW + 1);
    if (HO < 0 || WO < 0) return -1;
    s->HO = HO;
    s->WO = WO;
    return 0;
}

/* s->HO, s->WO of torch.nn.functional.conv_transpose2d with output_padding 0:
 * HO = (H - 1) SH - 2 PH + KH. Returns 0, or -1 (HO, WO untouched) when a size is invalid or
 * the output would be empty. */
static inline int conv_transpose2d_out_size(ConvShape *s)
{
    if (s->H < 1 || s->W < 1 || s->KH < 1 || s->KW < 1 || s->SH < 1 || s->SW < 1 || s->PH < 0 || s->PW < 0)
        return -1;
    int HO = conv_out_len(((long long)s->H - 1) * s->SH - 2LL * s->PH + s->KH);
    int WO = conv_out_len(((long long)s->W - 1) * s->SW - 2LL * s->PW + s->KW);
    if (HO < 0 || WO < 0) return -1;
    s->HO = HO;
    s->WO = WO;
    return 0;
}

#endif
