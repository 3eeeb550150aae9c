/* cz_linalg: SVD / randomized SVD on LAPACKE + CBLAS, 1-D k-means, selection, radix sort. */
#include "cz_linalg.h"

#include <cblas.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- RNG ---- */

void cz_rng_seed(cz_rng *r, uint64_t seed) { r->s = seed; }

uint64_t cz_rng_u64(cz_rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double cz_rng_unit(cz_rng *r) { return (double)(cz_rng_u64(r) >> 11) * 0x1.0p-53; }

double cz_rng_normal(cz_rng *r) {
  double u1 = cz_rng_unit(r), u2 = cz_rng_unit(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- SVD ---- */

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX / 2; }

static cz_err_code lapack_err(lapack_int info, const char *what, cz_error *err) {
  if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR)
    return cz_err_set(err, CZ_E_NO_MEMORY, "%s: out of memory", what);
  if (info > 0) return cz_err_set(err, CZ_E_INTERNAL, "%s did not converge (info %d)", what, (int)info);
  return cz_err_set(err, CZ_E_INTERNAL, "%s: argument %d rejected", what, (int)-info);
}

cz_err_code cz_svd(float *a, int64_t m, int64_t n, float *u, float *s, float *vt, cz_error *err) {
  if (!fits_int(m) || !fits_int(n) || m == 0 || n == 0)
    return cz_err_set(err, CZ_E_UNSUPPORTED, "SVD of a %lld x %lld matrix is not supported",
                      (long long)m, (long long)n);
  int64_t k = m < n ? m : n;
  /* sgesdd may fail to converge on rare inputs; sgesvd (QR iteration) is the fallback, on a
   * copy because sgesdd destroys its input either way. */
  float *copy = malloc(sizeof(float) * (size_t)(m * n));
  if (!copy) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  memcpy(copy, a, sizeof(float) * (size_t)(m * n));
  lapack_int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)m, (lapack_int)n, a,
                                   (lapack_int)n, s, u, (lapack_int)k, vt, (lapack_int)n);
  if (info > 0) {
    float *superb = malloc(sizeof(float) * (size_t)(k > 1 ? k : 2));
    if (!superb) {
      free(copy);
      return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    }
    info = LAPACKE_sgesvd(LAPACK_ROW_MAJOR, 'S', 'S', (lapack_int)m, (lapack_int)n, copy,
                          (lapack_int)n, s, u, (lapack_int)k, vt, (lapack_int)n, superb);
    free(superb);
  }
  free(copy);
  return info == 0 ? CZ_E_OK : lapack_err(info, "SVD", err);
}

/* Orthonormal basis of the columns of y [rows x cols] (rows >= cols), in place (QR). */
static cz_err_code orthonormalize(float *y, int64_t rows, int64_t cols, float *tau,
                                  cz_error *err) {
  lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, (lapack_int)rows, (lapack_int)cols, y,
                                   (lapack_int)cols, tau);
  if (info == 0)
    info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, (lapack_int)rows, (lapack_int)cols,
                          (lapack_int)cols, y, (lapack_int)cols, tau);
  return info == 0 ? CZ_E_OK : lapack_err(info, "QR", err);
}

cz_err_code cz_rsvd(const float *a, int64_t m, int64_t n, int64_t r, int oversample,
                    int power_iters, uint64_t seed, float *u, float *s, float *vt,
                    cz_error *err) {
  int64_t mn = m < n ? m : n;
  if (!fits_int(m) || !fits_int(n) || m == 0 || n == 0 || r < 1 || r > mn)
    return cz_err_set(err, CZ_E_UNSUPPORTED, "randomized SVD of rank %lld of a %lld x %lld matrix",
                      (long long)r, (long long)m, (long long)n);
  int64_t q = r + (oversample > 0 ? oversample : 0);
  if (q > mn) q = mn;
  float *omega = malloc(sizeof(float) * (size_t)(n * q));
  float *y = malloc(sizeof(float) * (size_t)(m * q));
  float *z = malloc(sizeof(float) * (size_t)(n * q));
  float *b = malloc(sizeof(float) * (size_t)(q * n));
  float *ub = malloc(sizeof(float) * (size_t)(q * q));
  float *sb = malloc(sizeof(float) * (size_t)q);
  float *vtb = malloc(sizeof(float) * (size_t)(q * n));
  float *tau = malloc(sizeof(float) * (size_t)q);
  cz_err_code rc = CZ_E_OK;
  if (!omega || !y || !z || !b || !ub || !sb || !vtb || !tau) {
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    goto done;
  }
  cz_rng g;
  cz_rng_seed(&g, seed);
  for (int64_t i = 0; i < n * q; i++) omega[i] = (float)cz_rng_normal(&g);
  /* Y = A * Omega, Q = orth(Y) */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)q, (int)n, 1.0f, a, (int)n,
              omega, (int)q, 0.0f, y, (int)q);
  if ((rc = orthonormalize(y, m, q, tau, err))) goto done;
  for (int it = 0; it < power_iters; it++) {
    /* Z = orth(A^T Q); Q = orth(A Z) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)q, (int)m, 1.0f, a, (int)n,
                y, (int)q, 0.0f, z, (int)q);
    if ((rc = orthonormalize(z, n, q, tau, err))) goto done;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)q, (int)n, 1.0f, a,
                (int)n, z, (int)q, 0.0f, y, (int)q);
    if ((rc = orthonormalize(y, m, q, tau, err))) goto done;
  }
  /* B = Q^T A [q x n]; its SVD gives A ~ (Q Ub) S Vt */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)q, (int)n, (int)m, 1.0f, y, (int)q, a,
              (int)n, 0.0f, b, (int)n);
  if ((rc = cz_svd(b, q, n, ub, sb, vtb, err))) goto done;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)r, (int)q, 1.0f, y, (int)q,
              ub, (int)q, 0.0f, u, (int)r);
  memcpy(s, sb, sizeof(float) * (size_t)r);
  memcpy(vt, vtb, sizeof(float) * (size_t)(r * n));
done:
  free(omega);
  free(y);
  free(z);
  free(b);
  free(ub);
  free(sb);
  free(vtb);
  free(tau);
  return rc;
}

void cz_matmul_f32(const float *a, const float *b, float *c, int64_t m, int64_t k, int64_t n) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    memset(c, 0, sizeof(float) * (size_t)(m * n));
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)k,
              b, (int)n, 0.0f, c, (int)n);
}

void cz_matmul_f64(const double *a, const double *b, double *c, int64_t m, int64_t k,
                   int64_t n) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    memset(c, 0, sizeof(double) * (size_t)(m * n));
    return;
  }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0, a, (int)k,
              b, (int)n, 0.0, c, (int)n);
}

/* ---- ordering ---- */

void cz_sort_u32(uint32_t *k, size_t n, uint32_t *tmp) {
  enum { BITS = 11, B = 1 << BITS };
  size_t *cnt = malloc(sizeof(size_t) * B);
  if (!cnt) {  /* fall back to an in-place insertion-free sort */
    for (size_t i = 1; i < n; i++) {
      uint32_t v = k[i];
      size_t j = i;
      for (; j > 0 && k[j - 1] > v; j--) k[j] = k[j - 1];
      k[j] = v;
    }
    return;
  }
  uint32_t *src = k, *dst = tmp;
  for (int shift = 0; shift < 32; shift += BITS) {
    memset(cnt, 0, sizeof(size_t) * B);
    for (size_t i = 0; i < n; i++) cnt[(src[i] >> shift) & (B - 1)]++;
    size_t sum = 0;
    for (int b = 0; b < B; b++) {
      size_t c = cnt[b];
      cnt[b] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; i++) dst[cnt[(src[i] >> shift) & (B - 1)]++] = src[i];
    uint32_t *t = src;
    src = dst;
    dst = t;
  }
  /* three passes: the result is in tmp */
  if (src != k) memcpy(k, src, sizeof(uint32_t) * n);
  free(cnt);
}

size_t cz_unique_counts(const float *x, size_t n, double **vals, double **counts) {
  *vals = *counts = NULL;
  uint32_t *k = malloc(sizeof(uint32_t) * (n ? n : 1));
  uint32_t *t = malloc(sizeof(uint32_t) * (n ? n : 1));
  if (!k || !t) {
    free(k);
    free(t);
    return (size_t)-1;
  }
  for (size_t i = 0; i < n; i++) k[i] = cz_float_key(x[i] == 0.0f ? 0.0f : x[i]); /* -0 == +0 */
  cz_sort_u32(k, n, t);
  free(t);
  size_t u = 0;
  for (size_t i = 0; i < n; i++) u += (i == 0 || k[i] != k[i - 1]);
  double *v = malloc(sizeof(double) * (u ? u : 1)), *c = malloc(sizeof(double) * (u ? u : 1));
  if (!v || !c) {
    free(k);
    free(v);
    free(c);
    return (size_t)-1;
  }
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    if (i == 0 || k[i] != k[i - 1]) {
      v[j] = cz_key_float(k[i]);
      c[j] = 0;
      j++;
    }
    c[j - 1] += 1;
  }
  free(k);
  *vals = v;
  *counts = c;
  return u;
}

uint32_t cz_select_u32(const uint32_t *keys, size_t n, size_t k, size_t *below) {
  size_t *h = calloc((size_t)1 << 16, sizeof(size_t));
  if (!h) {  /* degrade to a slow but bounded scan: count for each candidate bit by bit */
    uint32_t lo = 0;
    size_t nb = 0;
    for (int bit = 31; bit >= 0; bit--) {
      uint32_t cand = lo | (1u << bit);
      size_t c = 0;
      for (size_t i = 0; i < n; i++) c += keys[i] < cand;
      if (c <= k) lo = cand, nb = c;
    }
    *below = nb;
    return lo;
  }
  for (size_t i = 0; i < n; i++) h[keys[i] >> 16]++;
  size_t acc = 0;
  uint32_t hi = 0;
  for (uint32_t b = 0; b < (1u << 16); b++) {
    if (acc + h[b] > k) {
      hi = b;
      break;
    }
    acc += h[b];
  }
  memset(h, 0, sizeof(size_t) << 16);
  for (size_t i = 0; i < n; i++)
    if ((keys[i] >> 16) == hi) h[keys[i] & 0xffff]++;
  uint32_t lo = 0;
  for (uint32_t b = 0; b < (1u << 16); b++) {
    if (acc + h[b] > k) {
      lo = b;
      break;
    }
    acc += h[b];
  }
  free(h);
  *below = acc;
  return hi << 16 | lo;
}

double cz_select_f64(const double *x, size_t n, size_t k, double *tmp, size_t *below) {
  memcpy(tmp, x, sizeof(double) * n);
  ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, kk = (ptrdiff_t)k;
  while (lo < hi) {
    /* median of three as the pivot, then a three-way partition (equal keys are common) */
    ptrdiff_t mid = lo + (hi - lo) / 2;
    double a = tmp[lo], b = tmp[mid], c = tmp[hi];
    double p = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
    ptrdiff_t lt = lo, i = lo, gt = hi;
    while (i <= gt) {
      double v = tmp[i];
      if (v < p) {
        tmp[i++] = tmp[lt];
        tmp[lt++] = v;
      } else if (v > p) {
        tmp[i] = tmp[gt];
        tmp[gt--] = v;
      } else {
        i++;
      }
    }
    if (kk < lt) hi = lt - 1;
    else if (kk > gt) lo = gt + 1;
    else break;
  }
  double v = tmp[kk];
  size_t cnt = 0;
  for (size_t i = 0; i < n; i++) cnt += x[i] < v;
  *below = cnt;
  return v;
}

/* ---- 1-D k-means ---- */

int cz_nearest_sorted(const double *c, int k, double v) {
  int lo = 0, hi = k; /* first index with c >= v */
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (c[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  if (lo == k) return k - 1;
  if (lo == 0) return 0;
  return (v - c[lo - 1] <= c[lo] - v) ? lo - 1 : lo;
}

double cz_kmeans1d_cost(const double *x, const double *w, size_t n, const double *c, int k) {
  double s = 0;
  int j = 0;
  for (size_t i = 0; i < n; i++) {
    while (j + 1 < k && x[i] - c[j] > c[j + 1] - x[i]) j++;
    double d = x[i] - c[j];
    s += w[i] * d * d;
  }
  return s;
}

typedef struct {
  const double *pw, *ps, *pq;  /* prefix sums of w, w*x, w*x^2 over centered x */
  const double *prev;          /* D[m-1][.] */
  double *cur;                 /* D[m][.] */
  int32_t *arg;                /* T[m][.] */
} dp_ctx;

static inline double range_cost(const dp_ctx *d, size_t i, size_t j) {
  double W = d->pw[j + 1] - d->pw[i];
  double S = d->ps[j + 1] - d->ps[i];
  double Q = d->pq[j + 1] - d->pq[i];
  double c = Q - S * S / W;
  return c > 0 ? c : 0;
}

/* Fill cur[i] for i in [lo, hi], knowing the optimal start j of the last cluster lies in
 * [jlo, jhi] (monotone in i). Cluster index m >= 1: j ranges over [m, i]. */
static void dp_solve(const dp_ctx *d, size_t m, size_t lo, size_t hi, size_t jlo, size_t jhi) {
  while (lo <= hi) {
    size_t mid = lo + (hi - lo) / 2;
    size_t a = jlo > m ? jlo : m, b = jhi < mid ? jhi : mid;
    double best = INFINITY;
    size_t bj = a;
    for (size_t j = a; j <= b; j++) {
      double v = d->prev[j - 1] + range_cost(d, j, mid);
      if (v < best) {
        best = v;
        bj = j;
      }
    }
    d->cur[mid] = best;
    d->arg[mid] = (int32_t)bj;
    /* left half recursively, right half by iteration (bounded stack depth log n) */
    if (mid > lo) dp_solve(d, m, lo, mid - 1, jlo, bj);
    lo = mid + 1;
    jlo = bj;
  }
}

double cz_kmeans1d_exact(const double *x, const double *w, size_t n, int k, double *c,
                         int *k_used) {
  if (n == 0) {
    *k_used = 0;
    return 0;
  }
  if ((size_t)k >= n) {
    for (size_t i = 0; i < n; i++) c[i] = x[i];
    *k_used = (int)n;
    return 0;
  }
  double *pw = malloc(sizeof(double) * (n + 1)), *ps = malloc(sizeof(double) * (n + 1));
  double *pq = malloc(sizeof(double) * (n + 1));
  double *d0 = malloc(sizeof(double) * n), *d1 = malloc(sizeof(double) * n);
  int32_t *t = malloc(sizeof(int32_t) * n * (size_t)k);
  double cost = -1;
  if (!pw || !ps || !pq || !d0 || !d1 || !t) goto done;
  /* center first: the prefix sums of squares stay small and Q - S^2/W keeps its precision */
  double sw = 0, sx = 0;
  for (size_t i = 0; i < n; i++) sw += w[i], sx += w[i] * x[i];
  double mu = sx / sw;
  pw[0] = ps[0] = pq[0] = 0;
  for (size_t i = 0; i < n; i++) {
    double y = x[i] - mu;
    pw[i + 1] = pw[i] + w[i];
    ps[i + 1] = ps[i] + w[i] * y;
    pq[i + 1] = pq[i] + w[i] * y * y;
  }
  dp_ctx d = {pw, ps, pq, d0, d1, NULL};
  for (size_t i = 0; i < n; i++) d0[i] = range_cost(&d, 0, i);
  for (int m = 1; m < k; m++) {
    d.prev = d0;
    d.cur = d1;
    d.arg = t + (size_t)m * n;
    dp_solve(&d, (size_t)m, (size_t)m, n - 1, (size_t)m, n - 1);
    double *tmp = d0;
    d0 = d1;
    d1 = tmp;
  }
  /* backtrack the k ranges; centroids are their weighted means */
  size_t end = n - 1;
  cost = 0;
  for (int m = k - 1; m >= 0; m--) {
    size_t start = m ? (size_t)t[(size_t)m * n + end] : 0;
    double W = pw[end + 1] - pw[start];
    c[m] = mu + (ps[end + 1] - ps[start]) / W;
    cost += range_cost(&d, start, end);
    if (m) end = start - 1;
  }
  *k_used = k;
done:
  free(pw);
  free(ps);
  free(pq);
  free(d0);
  free(d1);
  free(t);
  return cost;
}

double cz_kmeans1d_lloyd(const double *x, const double *w, size_t n, int k, uint64_t seed,
                         int max_iter, double *c, int *k_used) {
  if (n == 0) {
    *k_used = 0;
    return 0;
  }
  if ((size_t)k >= n) {
    for (size_t i = 0; i < n; i++) c[i] = x[i];
    *k_used = (int)n;
    return 0;
  }
  double *d2 = malloc(sizeof(double) * n);
  int32_t *lab = malloc(sizeof(int32_t) * n);
  double *sw = malloc(sizeof(double) * (size_t)k), *sx = malloc(sizeof(double) * (size_t)k);
  double cost = -1;
  if (!d2 || !lab || !sw || !sx) goto done;
  cz_rng g;
  cz_rng_seed(&g, seed);
  /* k-means++: the first centre by weight, each next one by weight * squared distance */
  double tot = 0;
  for (size_t i = 0; i < n; i++) tot += w[i];
  double r = cz_rng_unit(&g) * tot, acc = 0;
  size_t pick = n - 1;
  for (size_t i = 0; i < n; i++)
    if ((acc += w[i]) > r) {
      pick = i;
      break;
    }
  c[0] = x[pick];
  for (size_t i = 0; i < n; i++) d2[i] = w[i] * (x[i] - c[0]) * (x[i] - c[0]);
  for (int m = 1; m < k; m++) {
    tot = 0;
    for (size_t i = 0; i < n; i++) tot += d2[i];
    pick = n;
    if (tot > 0) {
      r = cz_rng_unit(&g) * tot;
      acc = 0;
      for (size_t i = 0; i < n; i++)
        if (d2[i] > 0 && (acc += d2[i]) > r) {
          pick = i;
          break;
        }
      if (pick == n)  /* rounding at the very end of the sum */
        for (size_t i = n; i-- > 0;)
          if (d2[i] > 0) {
            pick = i;
            break;
          }
    }
    if (pick == n) break;  /* cannot happen with n > k distinct points; be safe */
    c[m] = x[pick];
    for (size_t i = 0; i < n; i++) {
      double v = w[i] * (x[i] - c[m]) * (x[i] - c[m]);
      if (v < d2[i]) d2[i] = v;
    }
  }
  /* sort the centres (insertion sort, k <= 256) */
  for (int i = 1; i < k; i++) {
    double v = c[i];
    int j = i;
    for (; j > 0 && c[j - 1] > v; j--) c[j] = c[j - 1];
    c[j] = v;
  }
  for (size_t i = 0; i < n; i++) lab[i] = -1;
  for (int it = 0; it < max_iter; it++) {
    size_t changed = 0;
    int j = 0;
    for (int m = 0; m < k; m++) sw[m] = sx[m] = 0;
    for (size_t i = 0; i < n; i++) {
      while (j + 1 < k && x[i] - c[j] > c[j + 1] - x[i]) j++;
      changed += lab[i] != j;
      lab[i] = j;
      sw[j] += w[i];
      sx[j] += w[i] * x[i];
    }
    if (changed == 0) break;
    for (int m = 0; m < k; m++)
      if (sw[m] > 0) c[m] = sx[m] / sw[m];  /* an empty cluster keeps its centre */
    /* means of ordered, contiguous clusters stay ordered; sort anyway against rounding */
    for (int i = 1; i < k; i++) {
      double v = c[i];
      int q = i;
      for (; q > 0 && c[q - 1] > v; q--) c[q] = c[q - 1];
      c[q] = v;
    }
  }
  *k_used = k;
  cost = cz_kmeans1d_cost(x, w, n, c, k);
done:
  free(d2);
  free(lab);
  free(sw);
  free(sx);
  return cost;
}
