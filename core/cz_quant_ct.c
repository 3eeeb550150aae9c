/* cz_quant_ct: integer-group, HQQ and NF4 kernels of the safetensors schemes (see the header). */
#include "cz_quant_ct.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- integer groups ---- */

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Codes for a given scale and zero point (scale > 0). */
static void quant_with(const float *x, int64_t n, int qmin, int qmax, float scale, int zp,
                       int8_t *q) {
  for (int64_t i = 0; i < n; i++) {
    /* x / scale is finite (the pipeline refuses non-finite input); the clamp keeps the int
     * conversion defined whatever the scale (a refitted scale may be small) */
    float v = fminf(fmaxf(roundf(x[i] / scale), -512.0f), 512.0f);
    q[i] = (int8_t)clampi((int)v + zp, qmin, qmax);
  }
}

void cz_qct_group_rtn(const float *x, int64_t n, int bits, bool symmetric, float *scale, int *zp,
                      int8_t *q) {
  const int qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
  float s;
  int z = 0;
  if (symmetric) {
    float amax = 0;
    for (int64_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    s = amax / (float)qmax;
  } else {
    /* zero stays inside the range so that it is exact (compressed-tensors' observers) */
    float lo = 0, hi = 0;
    for (int64_t i = 0; i < n; i++) {
      lo = fminf(lo, x[i]);
      hi = fmaxf(hi, x[i]);
    }
    s = (hi - lo) / (float)((1 << bits) - 1);
    if (s > 0) z = clampi((int)roundf((float)qmin - lo / s), qmin, qmax);
  }
  *scale = s;
  *zp = s > 0 ? z : 0;
  if (!(s > 0)) {
    memset(q, 0, (size_t)n);
    *scale = 0;
    return;
  }
  quant_with(x, n, qmin, qmax, s, *zp, q);
}

void cz_qct_dequant(const int8_t *q, int64_t n, float scale, int zp, float *y) {
  for (int64_t i = 0; i < n; i++) y[i] = (float)(q[i] - zp) * scale;
}

#define HQQ_P 0.7       /* lp norm of the error: p < 1 models outliers (hyper-Laplacian) */
#define HQQ_BETA 10.0   /* initial penalty of the half-quadratic split */
#define HQQ_KAPPA 1.01  /* beta grows by this factor every iteration */
#define HQQ_ITERS 20    /* hqq's default for the legacy solver */
/* Scale search: HQQ_SCALE_STEPS + 1 scales from HQQ_SCALE_LO to HQQ_SCALE_HI times the RTN
 * scale, 0.025 apart (hqq's v2 searches +-5 %; low bit widths gain from clipping more). */
#define HQQ_SCALE_LO 0.70
#define HQQ_SCALE_HI 1.05
#define HQQ_SCALE_STEPS 14

double cz_qct_hqq_objective(const float *x, const float *y, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += pow(fabs((double)x[i] - (double)y[i]), HQQ_P);
  return s;
}

/* Objective of (scale, integer zp) on x, or any value above `bound` as soon as the partial
 * sum passes it (the terms are non-negative, so the candidate has lost): most candidates of
 * the search stop early. */
static double eval_zp(const float *x, int64_t n, int qmin, int qmax, float scale, int zp,
                      double bound) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    int q = clampi((int)fminf(fmaxf(roundf(x[i] / scale), -512.0f), 512.0f) + zp, qmin, qmax);
    float y = (float)(q - zp) * scale;
    s += pow(fabs((double)x[i] - (double)y), HQQ_P);
    if (s > bound) return s;
  }
  return s;
}

/* The zero point of a scale that keeps [lo, hi] in range (the RTN formula). */
static int zp_for(float lo, float s, int qmin, int qmax) {
  return clampi((int)roundf((float)qmin - lo / s), qmin, qmax);
}

/* Squared L2 error of the stored reconstruction of (scale, zp): the codes quant_with chooses,
 * decoded in float32 as cz_qct_dequant does, the error summed in double. */
static double l2_zp(const float *x, int64_t n, int qmin, int qmax, float scale, int zp) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    int q = clampi((int)fminf(fmaxf(roundf(x[i] / scale), -512.0f), 512.0f) + zp, qmin, qmax);
    double d = (double)x[i] - (double)((float)(q - zp) * scale);
    s += d * d;
  }
  return s;
}

#define REFIT_ITERS 6  /* code / least-squares scale alternations per integer zero point */

/* For an integer zero point, alternate the codes (round to nearest at scale s) and the scale
 * that minimizes the L2 error of those codes, s = sum x (q - zp) / sum (q - zp)^2 (in double,
 * rounded to float32), at most REFIT_ITERS times, stopping as soon as the stored L2 error does
 * not strictly decrease. Returns the best scale (s itself if no step helped) and its L2. */
static float refit_scale(const float *x, int64_t n, int qmin, int qmax, float s, int zp,
                         double *l2) {
  double best = l2_zp(x, n, qmin, qmax, s, zp);
  float best_s = s;
  for (int it = 0; it < REFIT_ITERS; it++) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
      int q = clampi((int)fminf(fmaxf(roundf(x[i] / best_s), -512.0f), 512.0f) + zp, qmin, qmax);
      num += (double)x[i] * (q - zp);
      den += (double)(q - zp) * (q - zp);
    }
    if (!(den > 0) || !(num > 0)) break;
    const float ns = (float)(num / den);
    if (!(ns > 0) || ns == best_s || !isfinite(ns)) break;
    const double e = l2_zp(x, n, qmin, qmax, ns, zp);
    if (!(e < best)) break;
    best = e, best_s = ns;
  }
  *l2 = best;
  return best_s;
}

int cz_qct_group_hqq(const float *x, int64_t n, int bits, float *scale, int *zp, int8_t *q,
                     double obj[2]) {
  const int qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
  if (!(*scale > 0)) {  /* a constant-zero group is exact already */
    if (obj) obj[0] = obj[1] = 0;
    return 0;
  }
  float lo = 0;
  for (int64_t i = 0; i < n; i++) lo = fminf(lo, x[i]);
  const double rtn = eval_zp(x, n, qmin, qmax, *scale, *zp, INFINITY);
  double best = rtn;
  float best_s = *scale;
  int best_zp = *zp;
  /* 1. the scale: HQQ v2's grid search, widened downwards (clipping the extremes pays at 2 and
   * 3 bits), in HQQ's objective, each scale with its RTN zero point; then the neighbours of
   * the best one's zero point */
  for (int k = 0; k <= HQQ_SCALE_STEPS; k++) {
    const float sc = *scale * (float)(HQQ_SCALE_LO + (HQQ_SCALE_HI - HQQ_SCALE_LO) * k / HQQ_SCALE_STEPS);
    const int z = zp_for(lo, sc, qmin, qmax);
    double o = eval_zp(x, n, qmin, qmax, sc, z, best);
    if (o < best) best = o, best_s = sc, best_zp = z;
  }
  for (int z = best_zp - 1, z0 = best_zp; z <= z0 + 1; z += 2) {
    if (z < qmin || z > qmax) continue;
    double o = eval_zp(x, n, qmin, qmax, best_s, z, best);
    if (o < best) best = o, best_zp = z;
  }
  /* 2. the zero point: HQQ's half-quadratic solver at that scale. It works with the inverse
   * scale, Wq = round(W * si + z), Wr = (Wq - z) / si, and a real z; every rounded z it passes
   * is tried */
  const double si = 1.0 / (double)best_s;
  double z = best_zp, beta = HQQ_BETA, best_err = INFINITY;
  for (int it = 0; it < HQQ_ITERS; it++) {
    double err = 0, zsum = 0;
    for (int64_t i = 0; i < n; i++) {
      double wq = fmin(fmax(nearbyint(x[i] * si + z), qmin), qmax);
      double wr = (wq - z) / si, e = x[i] - wr, ae = fabs(e);
      /* generalized soft threshold: shrink_p(e) = sign(e) relu(|e| - |e|^(p-1) / beta) */
      double we = ae > 0 ? fmax(ae - pow(ae, HQQ_P - 1) / beta, 0) * (e < 0 ? -1 : 1) : 0;
      zsum += wq - (x[i] - we) * si;
      err += ae;
    }
    err /= (double)n;
    if (!(err < best_err)) break;  /* hqq's early stop */
    best_err = err;
    z = zsum / (double)n;
    beta *= HQQ_KAPPA;
    int zi = clampi((int)nearbyint(fmin(fmax(z, qmin - 1.0), qmax + 1.0)), qmin, qmax);
    if (zi == best_zp) continue;
    double o = eval_zp(x, n, qmin, qmax, best_s, zi, best);
    if (o < best) best = o, best_zp = zi;
  }
  /* 3. the stored L2 error: the zero point is an integer, so refit the scale in closed form
   * for HQQ's integer zero point and its neighbours (and for RTN's), then keep, among RTN,
   * HQQ's raw result and the refits, the lowest L2 error of the reconstruction as stored
   * (first candidate wins ties, RTN first): never worse than RTN in L2 */
  const float rtn_s = *scale;
  const int rtn_zp = *zp;
  double l2_best = l2_zp(x, n, qmin, qmax, rtn_s, rtn_zp);
  const double l2_rtn = l2_best;
  float fin_s = rtn_s;
  int fin_zp = rtn_zp;
  struct { float s; int zp; bool refit; } cand[] = {
      {best_s, best_zp, false}, {best_s, best_zp, true},     {best_s, best_zp - 1, true},
      {best_s, best_zp + 1, true}, {rtn_s, rtn_zp, true},
  };
  for (size_t k = 0; k < sizeof cand / sizeof cand[0]; k++) {
    if (cand[k].zp < qmin || cand[k].zp > qmax) continue;
    double e;
    float sc = cand[k].s;
    if (cand[k].refit) sc = refit_scale(x, n, qmin, qmax, sc, cand[k].zp, &e);
    else e = l2_zp(x, n, qmin, qmax, sc, cand[k].zp);
    if (e < l2_best) l2_best = e, fin_s = sc, fin_zp = cand[k].zp;
  }
  int changed = fin_zp != rtn_zp || fin_s != rtn_s;
  *zp = fin_zp;
  *scale = fin_s;
  quant_with(x, n, qmin, qmax, fin_s, fin_zp, q);
  if (obj) obj[0] = l2_rtn, obj[1] = l2_best;
  return changed;
}

unsigned cz_qct_unpack(const uint8_t *words, int64_t i, int bits) {
  const int pf = 32 / bits;
  const uint8_t *w = words + 4 * (i / pf);
  uint32_t v = (uint32_t)w[0] | (uint32_t)w[1] << 8 | (uint32_t)w[2] << 16 | (uint32_t)w[3] << 24;
  return (v >> (bits * (i % pf))) & ((1u << bits) - 1);
}

/* ---- NF4 ---- */

const float cz_nf4_code[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

int cz_nf4_index(float v) {
  if (v > 1.0f) v = 1.0f;
  if (v < -1.0f) v = -1.0f;
  /* bucketize against the midpoints (float32, as torch computes them): the first midpoint
   * >= v gives the index, so a value on a midpoint goes to the lower code */
  int k = 0;
  while (k < 15 && v > (cz_nf4_code[k] + cz_nf4_code[k + 1]) / 2.0f) k++;
  return k;
}

/* ---- bitsandbytes' dynamic map ---- */

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

void cz_dyn_map(float code[CZ_DYN_N]) {
  int k = 0;
  for (int i = 0; i < 7; i++) {
    const int m = 1 << i;  /* means in this decade: 2^i + 1 boundaries */
    const double p = pow(10.0, i - 6);
    for (int j = 0; j < m; j++) {
      const double lo = 0.1 + 0.9 * j / m, hi = 0.1 + 0.9 * (j + 1) / m;
      const double v = p * ((lo + hi) / 2.0);
      code[k++] = (float)v;
      code[k++] = (float)-v;
    }
  }
  code[k++] = 0.0f;
  code[k++] = 1.0f;
  qsort(code, (size_t)k, sizeof *code, cmp_float);
}

int cz_dyn_index(const float code[CZ_DYN_N], float u) {
  /* the first code whose upper midpoint is >= u; midpoints of two float32 values are exact
   * in double (adjacent codes are within a few binades of each other) */
  int lo = 0, hi = CZ_DYN_N - 1;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if ((double)u > ((double)code[mid] + (double)code[mid + 1]) / 2.0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
