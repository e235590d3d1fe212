/*
 * hooks.c: timing for the benchmarks, kept out of the model's code paths.
 * vae_gemm_bench times the fast gemm alone on buffers allocated and touched
 * once, so that no allocation or page fault is timed; vae_profile is the
 * per-phase profile of training steps (vae.h), off unless vae_profile_on.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vae.h"

VaeProfile vae_profile;
int vae_profile_on;

double vae_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double vae_gemm_bench(const VaeKernels *k, size_t M, size_t N, size_t K, int trans_a, int trans_b, int repeats,
                      int threads)
{
    size_t isz = k->itemsize, pack_len = vae_pack_len(N);
    size_t na = M * K, nb = K * N, nc = M * N;
    char *buf = malloc((na + nb + nc + pack_len * (size_t)threads) * isz);
    if (!buf) return -1;
    Rng rng;
    rng_seed(&rng, 1);
    k->normal(buf, na + nb, &rng);
    memset(buf + (na + nb) * isz, 0, (nc + pack_len * (size_t)threads) * isz);
    void *A = buf, *B = buf + na * isz, *C = buf + (na + nb) * isz, *pack = buf + (na + nb + nc) * isz;
    double best = 1e300;
    for (int r = 0; r <= repeats; r++) {
        double t0 = vae_seconds();
        k->matmul(C, A, B, M, N, K, trans_a, trans_b, 0, pack, pack_len, threads);
        double dt = vae_seconds() - t0;
        if (r > 0 && dt < best) best = dt;   /* r = 0 warms the caches up */
    }
    free(buf);
    return best;
}
