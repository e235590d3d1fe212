/*
 * rng.h: the random numbers of vaecore. xoshiro256** (Blackman & Vigna 2018,
 * "Scrambled linear pseudorandom number generators") seeded through
 * SplitMix64, and standard normals by the Box-Muller transform (Box & Muller
 * 1958), computed in double. The state is always passed explicitly, so that a
 * model's stream can be saved, restored and reproduced bitwise.
 * Not cryptographic, not thread-safe on a shared state (callers lock).
 */
#ifndef VAECORE_RNG_H
#define VAECORE_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } Rng;

void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
double rng_uniform(Rng *r);  /* in (0, 1], 53 random bits */
/* fills out[0..n) with N(0, 1) draws; consumes 2 uniforms per pair of draws */
void rng_normal(double *out, uint64_t n, Rng *r);

#endif
