/* cz_linalg: the numerical kernels of the whole-tensor methods: truncated and randomized SVD
 * (LAPACKE + CBLAS from OpenBLAS), exact and Lloyd 1-D k-means, selection of the k-th
 * smallest key, a radix sort of floats, and a small deterministic RNG.
 *
 * Matrices are row-major float [rows][cols] (a weight W[out][in], ggml ne = {in, out}).
 * Thread: every function is reentrant; callers run them on worker threads with OpenBLAS set
 * to one thread (the CLI and the daemon do), so parallelism comes from tensors, not BLAS.
 */
#ifndef CZ_LINALG_H
#define CZ_LINALG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cz_err.h"

/* ---- deterministic RNG (splitmix64): the same seed gives the same stream everywhere ---- */

typedef struct {
  uint64_t s;
} cz_rng;

void cz_rng_seed(cz_rng *r, uint64_t seed);
uint64_t cz_rng_u64(cz_rng *r);
double cz_rng_unit(cz_rng *r);    /* uniform in [0, 1), 53 bits */
double cz_rng_normal(cz_rng *r);  /* standard normal (Box-Muller, one value per call) */

/* ---- SVD ---- */

/* Thin SVD of a [m x n] (destroyed): u [m x k], s [k] descending, vt [k x n], k = min(m, n).
 * LAPACK's divide and conquer (sgesdd). */
cz_err_code cz_svd(float *a, int64_t m, int64_t n, float *u, float *s, float *vt, cz_error *err);

/* Randomized SVD (Halko, Martinsson & Tropp 2011, algorithms 4.4 + 5.1): the top r singular
 * triplets of a [m x n] from a Gaussian sketch of q = min(r + oversample, min(m, n)) columns
 * and `power_iters` orthonormalized power (subspace) iterations. u [m x r], s [r],
 * vt [r x n]. The sketch is drawn from cz_rng(seed): same inputs, same result. */
cz_err_code cz_rsvd(const float *a, int64_t m, int64_t n, int64_t r, int oversample,
                    int power_iters, uint64_t seed, float *u, float *s, float *vt,
                    cz_error *err);

/* c [m x n] = a [m x k] * b [k x n] (float, sgemm) and the same in double (dgemm). */
void cz_matmul_f32(const float *a, const float *b, float *c, int64_t m, int64_t k, int64_t n);
void cz_matmul_f64(const double *a, const double *b, double *c, int64_t m, int64_t k,
                   int64_t n);

/* ---- ordering ---- */

/* Order-preserving map of a float to uint32 (negative < positive, -0 < +0). NaN excluded. */
static inline uint32_t cz_float_key(float f) {
  union {
    float f;
    uint32_t u;
  } v = {f};
  return (v.u & 0x80000000u) ? ~v.u : (v.u | 0x80000000u);
}
static inline float cz_key_float(uint32_t k) {
  union {
    uint32_t u;
    float f;
  } v = {(k & 0x80000000u) ? (k & 0x7fffffffu) : ~k};
  return v.f;
}

/* Sort n keys ascending (LSD radix sort, three 11-bit passes, O(n)); tmp holds n keys. */
void cz_sort_u32(uint32_t *k, size_t n, uint32_t *tmp);

/* Distinct values of x[0..n) ascending with their counts: *vals and *counts (heap, freed by
 * the caller), returns how many. x is left unchanged. Returns (size_t)-1 when out of memory. */
size_t cz_unique_counts(const float *x, size_t n, double **vals, double **counts);

/* The k-th smallest (0-based) of n keys, with how many keys are strictly below it (*below).
 * Histogram (radix) selection over the 32-bit keys: two passes, no copy. */
uint32_t cz_select_u32(const uint32_t *keys, size_t n, size_t k, size_t *below);
/* The same for doubles (quickselect on a copy in tmp, n doubles). */
double cz_select_f64(const double *x, size_t n, size_t k, double *tmp, size_t *below);

/* ---- 1-D k-means on weighted points ---- */

/* Points x[0..n) strictly ascending with weights w > 0 (cz_unique_counts' output); at most
 * k clusters. Centroids go to c[0..*k_used) ascending; returns the within-cluster weighted sum
 * of squares. When n <= k every point is its own centroid (cost 0, k_used = n). */

/* Exact (globally optimal) by dynamic programming: the O(k n log n) divide-and-conquer form
 * of the Gronlund et al. / Ckmeans.1d.dp recurrence. Memory k * n int32. Returns -1 when out
 * of memory. */
double cz_kmeans1d_exact(const double *x, const double *w, size_t n, int k, double *c,
                         int *k_used);
/* Lloyd's algorithm from a k-means++ start (D^2 sampling from cz_rng(seed)); stops when no
 * assignment changes or after max_iter rounds. Returns -1 when out of memory. */
double cz_kmeans1d_lloyd(const double *x, const double *w, size_t n, int k, uint64_t seed,
                         int max_iter, double *c, int *k_used);
/* Weighted sum of squares of assigning every point to its nearest centroid c[0..k) (sorted). */
double cz_kmeans1d_cost(const double *x, const double *w, size_t n, const double *c, int k);
/* Index of the nearest of k ascending centroids (ties to the lower). */
int cz_nearest_sorted(const double *c, int k, double v);

#endif
