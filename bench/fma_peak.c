/*
 * fma_peak.c: measures one core's single-precision multiply-add peak.
 *
 * It runs CHAINS independent chains of vector fused multiply-adds
 * (acc = acc * a + b on VW floats at once) for a fixed number of iterations
 * and prints the rate as GFLOP/s, counting 2 flops per lane per FMA. With
 * enough independent chains (latency x FMA units: 4 cycles x 2 units = 8 on
 * recent x86 cores; we use 12) the FMA units never wait, so the rate is the
 * core's peak at the vector width the compiler was told to use.
 *
 * bench/peak.py compiles it at run time: `cc -O2 -mavx2 -mfma` (8-wide,
 * VW=8), `cc -O2 -mavx512f` (16-wide, VW=16) where the CPU has AVX-512, or
 * plain `cc -O2` as a fallback (the vectors then become whatever the target
 * has, which is what "peak" means for a portable build).
 *
 * What it is not: a memory or matrix benchmark; every operand lives in a
 * register.
 *
 * usage: fma_peak [seconds]   prints "<GFLOP/s> <lanes> <chains>"
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef VW
#define VW 8                    /* floats per vector */
#endif
#define CHAINS 12

/* run() is pure arithmetic, which a compiler may move across the clock calls:
 * reading its input from and writing its result to volatile globals pins it
 * between them */
static volatile float g_seed = 1.0f;
static volatile float g_sink;

typedef float vec __attribute__((vector_size(VW * sizeof(float))));

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* n iterations of CHAINS independent FMAs; the result is returned so nothing is dead code.
 * The chains are twelve named variables, not an array, so that they live in registers. */
static float run(long n, float seed)
{
    vec a, b, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11;
    for (int v = 0; v < VW; v++) {
        a[v] = 0.999999f;       /* |a| < 1 and a small b keep every chain bounded and normal */
        b[v] = 1e-7f * seed;
        c0[v] = seed + v;
    }
    c1 = c0 + 1; c2 = c0 + 2; c3 = c0 + 3; c4 = c0 + 4; c5 = c0 + 5;
    c6 = c0 + 6; c7 = c0 + 7; c8 = c0 + 8; c9 = c0 + 9; c10 = c0 + 10; c11 = c0 + 11;
    /* each chain is loop-carried and float arithmetic is not reassociated without
       -ffast-math, so the compiler can neither fold nor shorten the chains; it contracts
       c * a + b into one vfmadd (-ffp-contract=fast is GCC's default in GNU C) */
    for (long i = 0; i < n; i++) {
        c0 = c0 * a + b; c1 = c1 * a + b; c2 = c2 * a + b; c3 = c3 * a + b;
        c4 = c4 * a + b; c5 = c5 * a + b; c6 = c6 * a + b; c7 = c7 * a + b;
        c8 = c8 * a + b; c9 = c9 * a + b; c10 = c10 * a + b; c11 = c11 * a + b;
    }
    vec s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
    float out = 0;
    for (int v = 0; v < VW; v++) out += s[v];
    return out;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.3;
    long n = 1 << 16;
    double t, best = 0;
    /* grow n until one run takes a tenth of the budget, then keep the best of the rest */
    for (;;) {
        t = now();
        g_sink = run(n, g_seed);
        t = now() - t;
        if (t > seconds / 10) break;
        n *= 2;
    }
    double start = now();
    while (now() - start < seconds) {
        t = now();
        g_sink = run(n, g_seed);
        t = now() - t;
        double gflops = 2.0 * VW * CHAINS * (double)n / t * 1e-9;
        if (gflops > best) best = gflops;
    }
    printf("%.3f %d %d %g\n", best, VW, CHAINS, (double)g_sink);
    return 0;
}
