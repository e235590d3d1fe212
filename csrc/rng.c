/*
 * rng.c: xoshiro256** and Box-Muller normals; see rng.h.
 * The generator must never be all zeros; SplitMix64 seeding guarantees that
 * for every 64-bit seed.
 */
#include <math.h>

#include "rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_seed(Rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(Rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(Rng *r)
{
    /* the top 53 bits, shifted by one so that 0 never occurs and log() is finite */
    return (double)((rng_next(r) >> 11) + 1) * 0x1.0p-53;
}

void rng_normal(double *out, uint64_t n, Rng *r)
{
    const double two_pi = 6.283185307179586476925286766559;
    for (uint64_t i = 0; i < n; i += 2) {
        /* Box-Muller: radius from one uniform, angle from the other */
        double radius = sqrt(-2.0 * log(rng_uniform(r)));
        double angle = two_pi * rng_uniform(r);
        out[i] = radius * cos(angle);
        if (i + 1 < n) out[i + 1] = radius * sin(angle);
    }
}
