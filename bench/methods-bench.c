/* methods-bench: the kernels of the whole-tensor methods on LLM-sized matrices.
 *
 *   methods-bench svd M N RANK     full SVD (sgesdd) vs randomized SVD (oversample 10, power
 *                                  iterations 4, the method's defaults): seconds and Frobenius error of the rank-RANK
 *                                  truncation, rSVD's against the optimum from the full SVD
 *   methods-bench kmeans M N BITS  palettization codebook of an F16-rounded M x N Gaussian
 *                                  tensor with 0.5 % outliers: exact DP vs Lloyd/k-means++,
 *                                  seconds (distinct values + clustering) and relative error
 *
 * The test matrix of `svd` is W = G1 diag(d) G2 + 0.01 * noise, G1 [M x 512], G2 [512 x N]
 * Gaussian, d_i = (1 + i)^-0.7: a decaying spectrum over a flat floor, as LLM weights have.
 * OpenBLAS runs on one thread and on the kernels compressd picks (as compressd does).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cz_blas.h"
#include "cz_linalg.h"
#include "cz_type.h"

extern void openblas_set_num_threads(int);

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static float *gaussian(int64_t n, cz_rng *g, double sd) {
  float *x = malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < n; i++) x[i] = (float)(sd * cz_rng_normal(g));
  return x;
}

/* ||W - U_r S_r Vt_r||_F, in double, from float factors. */
static double trunc_error(const float *w, const float *u, int64_t ldu, const float *s,
                          const float *vt, int64_t m, int64_t n, int64_t r) {
  float *us = malloc(sizeof(float) * (size_t)(m * r)), *y = malloc(sizeof(float) * (size_t)(m * n));
  for (int64_t i = 0; i < m; i++)
    for (int64_t c = 0; c < r; c++) us[i * r + c] = u[i * ldu + c] * s[c];
  cz_matmul_f32(us, vt, y, m, r, n);
  double e = 0;
  for (int64_t i = 0; i < m * n; i++) e += ((double)w[i] - y[i]) * ((double)w[i] - y[i]);
  free(us);
  free(y);
  return sqrt(e);
}

static int bench_svd(int64_t m, int64_t n, int64_t r) {
  cz_rng g;
  cz_rng_seed(&g, 1);
  const int64_t k = 512, mn = m < n ? m : n;
  float *g1 = gaussian(m * k, &g, 1), *g2 = gaussian(k * n, &g, 1);
  for (int64_t i = 0; i < m; i++)
    for (int64_t c = 0; c < k; c++) g1[i * k + c] *= (float)pow(1.0 + (double)c, -0.7);
  float *w = malloc(sizeof(float) * (size_t)(m * n));
  cz_matmul_f32(g1, g2, w, m, k, n);
  for (int64_t i = 0; i < m * n; i++) w[i] = w[i] / sqrtf((float)k) + 0.01f * (float)cz_rng_normal(&g);
  free(g1);
  free(g2);
  cz_error err = {0};
  float *a = malloc(sizeof(float) * (size_t)(m * n));
  memcpy(a, w, sizeof(float) * (size_t)(m * n));
  float *u = malloc(sizeof(float) * (size_t)(m * mn)), *s = malloc(sizeof(float) * (size_t)mn);
  float *vt = malloc(sizeof(float) * (size_t)(mn * n));
  double t0 = now();
  if (cz_svd(a, m, n, u, s, vt, &err)) return fprintf(stderr, "svd: %s\n", err.msg), 1;
  double t_full = now() - t0;
  double opt = 0, all = 0;
  for (int64_t i = 0; i < mn; i++) {
    all += (double)s[i] * s[i];
    if (i >= r) opt += (double)s[i] * s[i];
  }
  opt = sqrt(opt);
  double e_full = trunc_error(w, u, mn, s, vt, m, n, r);
  float *ur = malloc(sizeof(float) * (size_t)(m * r)), *sr = malloc(sizeof(float) * (size_t)r);
  float *vr = malloc(sizeof(float) * (size_t)(r * n));
  t0 = now();
  const int over = getenv("RSVD_OVERSAMPLE") ? atoi(getenv("RSVD_OVERSAMPLE")) : 10;
  const int iters = getenv("RSVD_POWER_ITERS") ? atoi(getenv("RSVD_POWER_ITERS")) : 4;
  if (cz_rsvd(w, m, n, r, over, iters, 0, ur, sr, vr, &err)) return fprintf(stderr, "rsvd: %s\n", err.msg), 1;
  double t_r = now() - t0;
  double e_r = trunc_error(w, ur, r, sr, vr, m, n, r);
  printf("svd %lldx%lld rank %lld: sgesdd %.2f s (error %.6g, optimum %.6g, kept energy %.4f); "
         "rsvd (oversample %d, power iterations %d) %.2f s (error %.6g, %+.3f %% of optimum); "
         "speed-up %.1fx\n",
         (long long)m, (long long)n, (long long)r, t_full, e_full, opt, 1 - opt * opt / all, over,
         iters, t_r,
         e_r, 100 * (e_r / opt - 1), t_full / t_r);
  return 0;
}

static int bench_kmeans(int64_t m, int64_t n, int bits) {
  cz_rng g;
  cz_rng_seed(&g, 2);
  const int64_t cnt = m * n;
  float *w = malloc(sizeof(float) * (size_t)cnt);
  for (int64_t i = 0; i < cnt; i++) {
    double v = 0.02 * cz_rng_normal(&g) * (cz_rng_unit(&g) < 0.005 ? 8 : 1);
    w[i] = cz_fp16_to_fp32(cz_fp32_to_fp16((float)v));
  }
  double r2 = 0;
  for (int64_t i = 0; i < cnt; i++) r2 += (double)w[i] * w[i];
  const int k = 1 << bits;
  double c[256];
  for (int algo = 0; algo < 2; algo++) {
    double t0 = now(), *x, *wt;
    size_t u = cz_unique_counts(w, (size_t)cnt, &x, &wt);
    double t1 = now();
    int used;
    double sse = algo ? cz_kmeans1d_lloyd(x, wt, u, k, 0, 100, c, &used)
                      : cz_kmeans1d_exact(x, wt, u, k, c, &used);
    double t2 = now();
    printf("kmeans %lldx%lld, %d bits, %zu distinct values: %s %.3f s (distinct values %.3f s, "
           "clustering %.3f s), rel_l2 %.5f\n",
           (long long)m, (long long)n, bits, u, algo ? "Lloyd/k-means++" : "exact DP", t2 - t0,
           t1 - t0, t2 - t1, sqrt(sse / r2));
    free(x);
    free(wt);
  }
  free(w);
  return 0;
}

int main(int argc, char **argv) {
  cz_blas_pick_core(argv); /* the kernels compressd runs on (daemon/cz_blas.h) */
  openblas_set_num_threads(1);
  printf("openblas kernels: %s\n", cz_blas_core());
  if (argc == 5 && !strcmp(argv[1], "svd")) return bench_svd(atoll(argv[2]), atoll(argv[3]), atoll(argv[4]));
  if (argc == 5 && !strcmp(argv[1], "kmeans")) return bench_kmeans(atoll(argv[2]), atoll(argv[3]), atoi(argv[4]));
  fprintf(stderr, "usage: methods-bench svd M N RANK | kmeans M N BITS\n");
  return 2;
}
