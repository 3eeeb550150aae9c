/* cz_quants_k: ggml's K-quants q2_K, q3_K, q4_K, q5_K and q6_K, byte-identical to ggml.
 *
 * A super-block holds 256 weights split into sub-blocks of 16 (q2_K, q3_K, q6_K) or 32 (q4_K,
 * q5_K). Each sub-block gets its own scale (and for q2/q4/q5 a min) found by a small search;
 * those sub-block scales are themselves quantized to 4, 6 or 8 bits against one fp16 super
 * scale. Every weight is then re-rounded with the scale as it will be decoded (fp16 super
 * scale times the quantized sub-scale), so encoder and decoder agree exactly.
 *
 * The layouts, searches and their constants follow quant-formats.md 1.2, 1.5 and 1.6. Bit
 * exactness with ggml depends on doing every float operation in ggml's order with float
 * (not double) intermediates and no fused multiply-add: expressions below are written in the
 * same association as ggml's, and the file is compiled with -ffp-contract=off.
 */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "cz_cpu.h"
#include "cz_quants.h"
#include "cz_type.h"

#define QK 256           /* weights per super-block */
#define ZERO_EPS 1e-15f  /* ggml's GROUP_MAX_EPS: a group below this is all zero */

/* ---- block layouts (ggml-common.h) --------------------------------------------------------- */

typedef struct {
  uint8_t scales[16]; /* low nibble: scale, high nibble: min, per 16 */
  uint8_t qs[64];     /* 2-bit levels */
  uint16_t d, dmin;   /* fp16 */
} q2k_block;

typedef struct {
  uint8_t hmask[32];  /* bit 2 of each level */
  uint8_t qs[64];     /* bits 0-1 of each level */
  uint8_t scales[12]; /* 16 six-bit scales, biased by 32 */
  uint16_t d;
} q3k_block;

typedef struct {
  uint16_t d, dmin;
  uint8_t scales[12]; /* 8 six-bit scales and 8 six-bit mins (see k4_put) */
  uint8_t qs[128];
} q4k_block;

typedef struct {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];     /* bit 4 of each level */
  uint8_t qs[128];    /* bits 0-3 */
} q5k_block;

typedef struct {
  uint8_t ql[128];    /* bits 0-3 */
  uint8_t qh[64];     /* bits 4-5 */
  int8_t scales[16];
  uint16_t d;
} q6k_block;

_Static_assert(sizeof(q2k_block) == 84, "wrong q2_K block size");
_Static_assert(sizeof(q3k_block) == 110, "wrong q3_K block size");
_Static_assert(sizeof(q4k_block) == 144, "wrong q4_K block size");
_Static_assert(sizeof(q5k_block) == 176, "wrong q5_K block size");
_Static_assert(sizeof(q6k_block) == 210, "wrong q6_K block size");

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static inline float h2f(uint16_t h) { return cz_fp16_to_fp32(h); }

/* ---- scale searches ------------------------------------------------------------------------ */

/* Symmetric levels l in [-nmax, nmax) for one inverse scale; stores l + nmax and returns the
 * weighted sums Σw·x·l and Σw·l². Weights are qw when given, else x². */
static void sym_levels(int n, int nmax, const float *x, const float *qw, float iscale,
                       int8_t *L, float *sumlx, float *suml2) {
  float slx = 0.0f, sl2 = 0.0f;
  for (int i = 0; i < n; i++) {
    const int l = clampi(cz_nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = (int8_t)(l + nmax);
    const float w = qw ? qw[i] : x[i] * x[i];
    slx += w * x[i] * l;
    sl2 += w * l * l;
  }
  *sumlx = slx;
  *suml2 = sl2;
}

/* ggml's make_qx_quants with rmse_type 1: a signed scale anchored at the element of largest
 * magnitude, then 18 nearby inverse scales tried, keeping the one with the best weighted
 * least-squares fit (largest (Σwxl)²/Σwl²). L gets l + nmax. Returns the (signed) scale. */
static float fit_symmetric(int n, int nmax, const float *x, const float *qw, int8_t *L) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; i++) {
    const float ax = fabsf(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < ZERO_EPS) {
    memset(L, 0, (size_t)n);
    return 0.0f;
  }
  float sumlx, suml2;
  sym_levels(n, nmax, x, qw, -nmax / max, L, &sumlx, &suml2);
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  int8_t cand[32];
  for (int is = -9; is <= 9; is++) {
    if (is == 0) continue;
    sym_levels(n, nmax, x, qw, -(nmax + 0.1f * is) / max, cand, &sumlx, &suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      memcpy(L, cand, (size_t)n);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/* ggml's make_q3_quants with do_rmse: round at the anchored scale, then up to 5 sweeps of
 * coordinate descent on the weighted (w = x²) least-squares fit. L gets l + nmax. */
static float fit_q3(int n, int nmax, const float *x, int8_t *L) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; i++) {
    const float ax = fabsf(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < ZERO_EPS) {
    memset(L, 0, (size_t)n);
    return 0.0f;
  }
  const float iscale = -nmax / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; i++) {
    const int l = clampi(cz_nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = (int8_t)l;
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int sweep = 0; sweep < 5; sweep++) {
    int changed = 0;
    for (int i = 0; i < n; i++) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (!(slx > 0)) continue;
      float sl2 = suml2 - w * L[i] * L[i];
      const int nl = clampi(cz_nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (nl == L[i]) continue;
      slx += w * x[i] * nl;
      sl2 += w * nl * nl;
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = (int8_t)nl;
        sumlx = slx;
        suml2 = sl2;
        changed++;
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ggml's make_qkx2_quants / make_qkx3_quants (with explicit weights they differ only in the
 * constants their callers pass): an affine fit x ≈ scale·l − min with l in [0, nmax] and a
 * min ≤ 0 kept at 0 when x is all positive. Starting from the full range, nstep+1 inverse
 * scales (rmin + rdelta·is + nmax)/(max − min) are tried; for each rounding the scale and min
 * are solved by weighted least squares, and the one with the least weighted error (absolute
 * with mad, squared otherwise) wins. *neg_min receives −min (≥ 0). Returns the scale. */
static float fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L,
                        float *neg_min, float rmin, float rdelta, int nstep, bool mad) {
  float min = x[0], max = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max <= min) {
    memset(L, 0, (size_t)n);
    *neg_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_err = 0;
  for (int i = 0; i < n; i++) {
    L[i] = (uint8_t)clampi(cz_nearest_int(iscale * (x[i] - min)), 0, nmax);
    float diff = scale * L[i] + min - x[i];
    diff = mad ? fabsf(diff) : diff * diff;
    best_err += w[i] * diff;
  }
  uint8_t cand[32];
  for (int is = 0; is <= nstep; is++) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; i++) {
      const int l = clampi(cz_nearest_int(iscale * (x[i] - min)), 0, nmax);
      cand[i] = (uint8_t)l;
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (!(D > 0)) continue;
    float s = (sum_w * sum_xl - sum_x * sum_l) / D;
    float m = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (m > 0) {
      m = 0;
      s = sum_xl / sum_l2;
    }
    float err = 0;
    for (int i = 0; i < n; i++) {
      float diff = s * cand[i] + m - x[i];
      diff = mad ? fabsf(diff) : diff * diff;
      err += w[i] * diff;
    }
    if (err < best_err) {
      memcpy(L, cand, (size_t)n);
      best_err = err;
      scale = s;
      min = m;
    }
  }
  *neg_min = -min;
  return scale;
}

/* ggml's make_qp_quants: quantize non-negative values (sub-block scales or mins) to levels
 * in [0, nmax] under weights w: the best of 9 inverse scales by weighted squared error, then
 * up to 5 sweeps of coordinate descent on the least-squares fit. Returns the scale. L is
 * uint8_t as in ggml (a negative rounding would wrap; kept for identical bytes). */
static float fit_positive(int n, int nmax, const float *x, const float *w, uint8_t *L) {
  float max = 0;
  for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
  if (max < ZERO_EPS) {
    memset(L, 0, (size_t)n);
    return 0.0f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; i++) L[i] = (uint8_t)cz_nearest_int(iscale * x[i]);
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; i++) {
    const float diff = x[i] - scale * L[i];
    best_mse += w[i] * diff * diff;
  }
  for (int is = -4; is <= 4; is++) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * is + nmax) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; i++) {
      int l = cz_nearest_int(iscale_is * x[i]);
      l = nmax < l ? nmax : l;
      const float diff = x[i] - scale_is * l;
      mse += w[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; i++) {
    int l = cz_nearest_int(iscale * x[i]);
    l = nmax < l ? nmax : l;
    L[i] = (uint8_t)l;
    sumlx += w[i] * x[i] * l;
    suml2 += w[i] * l * l;
  }
  for (int sweep = 0; sweep < 5; sweep++) {
    int changed = 0;
    for (int i = 0; i < n; i++) {
      float slx = sumlx - w[i] * x[i] * L[i];
      float sl2 = suml2 - w[i] * L[i] * L[i];
      if (!(slx > 0 && sl2 > 0)) continue;
      int nl = cz_nearest_int(x[i] * sl2 / slx);
      nl = nmax < nl ? nmax : nl;
      if (nl == L[i]) continue;
      slx += w[i] * x[i] * nl;
      sl2 += w[i] * nl * nl;
      if (slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = (uint8_t)nl;
        sumlx = slx;
        suml2 = sl2;
        changed++;
      }
    }
    if (!changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Σx² over a super-block, in element order (the imatrix paths' sigma²). */
static float sum_squares(const float *x, int n) {
  float s = 0;
  for (int j = 0; j < n; j++) s += x[j] * x[j];
  return s;
}

/* Four 2-bit levels per byte: byte l of each 32-byte group takes elements l, l+32, l+64,
 * l+96 of the group's 128 (q2_K and the low bits of q3_K). */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
  for (int j = 0; j < QK; j += 128)
    for (int l = 0; l < 32; l++)
      qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                (L[j + l + 96] << 6));
}

/* ---- q2_K ---------------------------------------------------------------------------------- */

/* Re-round every weight with the decoded scale and min of its sub-block (a sub-block whose
 * scale decodes to 0 keeps its search levels), then pack. */
static void q2k_finish(const float *x, uint8_t *L, q2k_block *y) {
  for (int j = 0; j < 16; j++) {
    const float d = h2f(y->d) * (y->scales[j] & 0xF);
    if (!d) continue;
    const float dm = h2f(y->dmin) * (y->scales[j] >> 4);
    for (int i = 0; i < 16; i++)
      L[16 * j + i] = (uint8_t)clampi(cz_nearest_int((x[16 * j + i] + dm) / d), 0, 3);
  }
  pack_2bit(L, y->qs);
}

static void q2k_encode(const float *x, q2k_block *y) {
  uint8_t L[QK];
  float w[16], scales[16], mins[16];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 16; j++) {
    for (int i = 0; i < 16; i++) w[i] = fabsf(x[16 * j + i]);
    scales[j] = fit_affine(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0) {
    const float iscale = 15.f / max_scale;
    for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)cz_nearest_int(iscale * scales[j]);
    y->d = cz_fp32_to_fp16(max_scale / 15.f);
  } else {
    memset(y->scales, 0, sizeof y->scales);
    y->d = cz_fp32_to_fp16(0.f);
  }
  if (max_min > 0) {
    const float iscale = 15.f / max_min;
    for (int j = 0; j < 16; j++)
      y->scales[j] |= (uint8_t)(cz_nearest_int(iscale * mins[j]) << 4);
    y->dmin = cz_fp32_to_fp16(max_min / 15.f);
  } else {
    y->dmin = cz_fp32_to_fp16(0.f);
  }
  q2k_finish(x, L, y);
}

/* quantize_row_q2_K_impl: weights qw·sqrt(σ² + x²) with σ² = Σx²/256; sub-block scales and
 * mins quantized to 4 bits by fit_positive under the sub-blocks' total weights. */
static void q2k_encode_weighted(const float *x, const float *qw, q2k_block *y) {
  uint8_t L[QK], Ls[16], Lm[16];
  float w[16], sw[16], scales[16], mins[16];
  const float sigma2 = sum_squares(x, QK) / QK;
  for (int j = 0; j < 16; j++) {
    float sumw = 0;
    for (int i = 0; i < 16; i++) {
      const float v = x[16 * j + i];
      w[i] = qw[16 * j + i] * sqrtf(sigma2 + v * v);
    }
    for (int i = 0; i < 16; i++) sumw += w[i];
    sw[j] = sumw;
    scales[j] = fit_affine(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.9f, 0.05f, 36, false);
  }
  const float dm = fit_positive(16, 15, scales, sw, Ls);
  const float mm = fit_positive(16, 15, mins, sw, Lm);
  y->d = cz_fp32_to_fp16(dm);
  y->dmin = cz_fp32_to_fp16(mm);
  for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
  q2k_finish(x, L, y);
}

static void q2k_decode(const q2k_block *b, float *y) {
  const float d = h2f(b->d), min = h2f(b->dmin);
  const uint8_t *q = b->qs;
  int is = 0;
  for (int n = 0; n < QK; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; half++) {
        const uint8_t sc = b->scales[is++];
        const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
        for (int l = 0; l < 16; l++) *y++ = dl * ((int8_t)((q[16 * half + l] >> shift) & 3)) - ml;
      }
    }
    q += 32;
  }
}

/* ---- q3_K ---------------------------------------------------------------------------------- */

/* Sub-block j's 6-bit scale (biased by 32): low 4 bits in the nibbles of bytes 0-7, high 2
 * bits in bytes 8-11. */
static void q3k_put_scale(uint8_t *sc, int j, int l) {
  if (j < 8)
    sc[j] = (uint8_t)(l & 0xF);
  else
    sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
  sc[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
}

static int q3k_get_scale(const uint8_t *sc, int j) {
  const int lo = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
  return (int8_t)(lo | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

/* Re-round with the decoded sub-block scales, split off bit 2 into hmask (bit j/32 of byte
 * j%32) and pack the low 2 bits. */
static void q3k_finish(const float *x, int8_t *L, q3k_block *y) {
  for (int j = 0; j < 16; j++) {
    const int8_t s = (int8_t)q3k_get_scale(y->scales, j);
    const float d = h2f(y->d) * s;
    if (!d) continue;
    for (int i = 0; i < 16; i++)
      L[16 * j + i] = (int8_t)(clampi(cz_nearest_int(x[16 * j + i] / d), -4, 3) + 4);
  }
  uint8_t low[QK];
  memset(y->hmask, 0, sizeof y->hmask);
  for (int j = 0; j < QK; j++) {
    int l = L[j];
    if (l > 3) {
      y->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
      l -= 4;
    }
    low[j] = (uint8_t)l;
  }
  pack_2bit(low, y->qs);
}

static void q3k_encode(const float *x, q3k_block *y) {
  int8_t L[QK];
  float scales[16];
  float max_scale = 0, amax = 0;
  for (int j = 0; j < 16; j++) {
    scales[j] = fit_q3(16, 4, x + 16 * j, L + 16 * j);
    const float a = fabsf(scales[j]);
    if (a > amax) {
      amax = a;
      max_scale = scales[j];
    }
  }
  memset(y->scales, 0, sizeof y->scales);
  if (max_scale) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < 16; j++) {
      const int8_t l = (int8_t)cz_nearest_int(iscale * scales[j]);
      q3k_put_scale(y->scales, j, clampi(l, -32, 31) + 32);
    }
    y->d = cz_fp32_to_fp16(1 / iscale);
  } else {
    y->d = cz_fp32_to_fp16(0.f);
  }
  q3k_finish(x, L, y);
}

/* quantize_row_q3_K_impl: weights qw·sqrt(σ² + x²) with σ² = 2Σx²/256; levels and then the
 * 16 sub-block scales by fit_symmetric under those weights. */
static void q3k_encode_weighted(const float *x, const float *qw, q3k_block *y) {
  int8_t L[QK], Ls[16];
  float w[16], sw[16], scales[16];
  const float sigma2 = 2 * sum_squares(x, QK) / QK;
  for (int j = 0; j < 16; j++) {
    for (int i = 0; i < 16; i++) {
      const float v = x[16 * j + i];
      w[i] = qw[16 * j + i] * sqrtf(sigma2 + v * v);
    }
    float sumw = 0;
    for (int i = 0; i < 16; i++) sumw += w[i];
    sw[j] = sumw;
    scales[j] = fit_symmetric(16, 4, x + 16 * j, w, L + 16 * j);
  }
  memset(y->scales, 0, sizeof y->scales);
  const float d_block = fit_symmetric(16, 32, scales, sw, Ls);
  for (int j = 0; j < 16; j++) q3k_put_scale(y->scales, j, Ls[j]);
  y->d = cz_fp32_to_fp16(d_block);
  q3k_finish(x, L, y);
}

static void q3k_decode(const q3k_block *b, float *y) {
  const float d_all = h2f(b->d);
  const uint8_t *q = b->qs;
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < QK; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; half++) {
        const float dl = d_all * q3k_get_scale(b->scales, is++);
        for (int l = 0; l < 16; l++) {
          const int k = 16 * half + l;
          *y++ = dl * ((int8_t)((q[k] >> shift) & 3) - ((b->hmask[k] & m) ? 0 : 4));
        }
      }
      m = (uint8_t)(m << 1);
    }
    q += 32;
  }
}

/* ---- q4_K and q5_K: shared scale/min search ------------------------------------------------ */

/* 8 six-bit scales and mins in 12 bytes, as ggml's get_scale_min_k4 reads them: j < 4 in the
 * low 6 bits of bytes j (scale) and j+4 (min); j >= 4 in the nibbles of byte j+4 with their
 * top 2 bits in the high bits of bytes j-4 (scale) and j (min). */
static void k4_put(uint8_t *q, int j, uint8_t ls, uint8_t lm) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] |= (uint8_t)((ls >> 4) << 6);
    q[j] |= (uint8_t)((lm >> 4) << 6);
  }
}

static void k4_get(const uint8_t *q, int j, uint8_t *sc, uint8_t *m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/* The scale part of a q4_K/q5_K super-block, independent of the level packing. */
typedef struct {
  uint16_t d, dmin;
  uint8_t scales[12];
} k45_head;

/* Reference path: weights av + |x| per sub-block of 32 (av = rms of the sub-block), affine fit
 * with the type's (nmax, rmin, nstep); scales and mins to 6 bits against their maxima. */
static void k45_search(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                       k45_head *h) {
  float w[32], scales[8], mins[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; j++) {
    const float *xb = x + 32 * j;
    float sum_x2 = 0;
    for (int i = 0; i < 32; i++) sum_x2 += xb[i] * xb[i];
    const float av_x = sqrtf(sum_x2 / 32);
    for (int i = 0; i < 32; i++) w[i] = av_x + fabsf(xb[i]);
    scales[j] = fit_affine(32, nmax, xb, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < 8; j++) {
    uint8_t ls = (uint8_t)cz_nearest_int(inv_scale * scales[j]);
    uint8_t lm = (uint8_t)cz_nearest_int(inv_min * mins[j]);
    ls = ls < 63 ? ls : 63;
    lm = lm < 63 ? lm : 63;
    k4_put(h->scales, j, ls, lm);
  }
  h->d = cz_fp32_to_fp16(max_scale / 63.f);
  h->dmin = cz_fp32_to_fp16(max_min / 63.f);
}

/* Weighted path (quantize_row_q4_K_impl / q5_K_impl): weights qw·sqrt(σ² + x²) with
 * σ² = 2Σx²/256, affine fit (-0.9, 0.05, 36), scales and mins to 6 bits by fit_positive.
 * ggml's q5_K clamps the 6-bit values to 63 once more, q4_K does not (clamp63). */
static void k45_search_weighted(const float *x, const float *qw, int nmax, bool clamp63,
                                uint8_t *L, k45_head *h) {
  float w[32], sw[8], scales[8], mins[8];
  uint8_t Ls[8], Lm[8];
  const float sigma2 = 2 * sum_squares(x, QK) / QK;
  for (int j = 0; j < 8; j++) {
    for (int i = 0; i < 32; i++) {
      const float v = x[32 * j + i];
      w[i] = qw[32 * j + i] * sqrtf(sigma2 + v * v);
    }
    float sumw = 0;
    for (int i = 0; i < 32; i++) sumw += w[i];
    sw[j] = sumw;
    scales[j] =
        fit_affine(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], -0.9f, 0.05f, 36, false);
  }
  const float d_block = fit_positive(8, 63, scales, sw, Ls);
  const float m_block = fit_positive(8, 63, mins, sw, Lm);
  for (int j = 0; j < 8; j++) {
    uint8_t ls = Ls[j], lm = Lm[j];
    if (clamp63) {
      ls = ls < 63 ? ls : 63;
      lm = lm < 63 ? lm : 63;
    }
    k4_put(h->scales, j, ls, lm);
  }
  h->d = cz_fp32_to_fp16(d_block);
  h->dmin = cz_fp32_to_fp16(m_block);
}

/* Re-round every weight in [0, nmax] with its sub-block's decoded scale and min. */
static void k45_requantize(const float *x, int nmax, const k45_head *h, uint8_t *L) {
  for (int j = 0; j < 8; j++) {
    uint8_t sc, m;
    k4_get(h->scales, j, &sc, &m);
    const float d = h2f(h->d) * sc;
    if (!d) continue;
    const float dm = h2f(h->dmin) * m;
    for (int i = 0; i < 32; i++)
      L[32 * j + i] = (uint8_t)clampi(cz_nearest_int((x[32 * j + i] + dm) / d), 0, nmax);
  }
}

/* ---- q4_K ---------------------------------------------------------------------------------- */

static void q4k_store(const k45_head *h, const uint8_t *L, q4k_block *y) {
  y->d = h->d;
  y->dmin = h->dmin;
  memcpy(y->scales, h->scales, sizeof y->scales);
  uint8_t *q = y->qs;
  for (int j = 0; j < QK; j += 64) {
    for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    q += 32;
  }
}

static void q4k_encode(const float *x, q4k_block *y) {
  uint8_t L[QK];
  k45_head h = {0};
  k45_search(x, 15, -1.f, 20, L, &h);
  k45_requantize(x, 15, &h, L);
  q4k_store(&h, L, y);
}

static void q4k_encode_weighted(const float *x, const float *qw, q4k_block *y) {
  uint8_t L[QK];
  k45_head h = {0};
  k45_search_weighted(x, qw, 15, false, L, &h);
  k45_requantize(x, 15, &h, L);
  q4k_store(&h, L, y);
}

static void q4k_decode(const q4k_block *b, float *y) {
  const float d = h2f(b->d), min = h2f(b->dmin);
  const uint8_t *q = b->qs;
  for (int j = 0, is = 0; j < QK; j += 64, is += 2) {
    uint8_t sc, m;
    k4_get(b->scales, is, &sc, &m);
    const float d1 = d * sc, m1 = min * m;
    k4_get(b->scales, is + 1, &sc, &m);
    const float d2 = d * sc, m2 = min * m;
    for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
    for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
    q += 32;
  }
}

/* ---- q5_K ---------------------------------------------------------------------------------- */

/* Low 4 bits as in q4_K; bit 4 of element 64c+j goes to bit 2c of qh[j], of 64c+32+j to bit
 * 2c+1. */
static void q5k_store(const k45_head *h, const uint8_t *L, q5k_block *y) {
  y->d = h->d;
  y->dmin = h->dmin;
  memcpy(y->scales, h->scales, sizeof y->scales);
  memset(y->qh, 0, sizeof y->qh);
  uint8_t *ql = y->qs;
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < QK; n += 64) {
    for (int j = 0; j < 32; j++) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) {
        l1 -= 16;
        y->qh[j] |= m1;
      }
      if (l2 > 15) {
        l2 -= 16;
        y->qh[j] |= m2;
      }
      ql[j] = (uint8_t)(l1 | (l2 << 4));
    }
    m1 = (uint8_t)(m1 << 2);
    m2 = (uint8_t)(m2 << 2);
    ql += 32;
  }
}

static void q5k_encode(const float *x, q5k_block *y) {
  uint8_t L[QK];
  k45_head h = {0};
  k45_search(x, 31, -0.5f, 15, L, &h);
  k45_requantize(x, 31, &h, L);
  q5k_store(&h, L, y);
}

static void q5k_encode_weighted(const float *x, const float *qw, q5k_block *y) {
  uint8_t L[QK];
  k45_head h = {0};
  k45_search_weighted(x, qw, 31, true, L, &h);
  k45_requantize(x, 31, &h, L);
  q5k_store(&h, L, y);
}

static void q5k_decode(const q5k_block *b, float *y) {
  const float d = h2f(b->d), min = h2f(b->dmin);
  const uint8_t *ql = b->qs;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < QK; j += 64, is += 2) {
    uint8_t sc, m;
    k4_get(b->scales, is, &sc, &m);
    const float d1 = d * sc, m1 = min * m;
    k4_get(b->scales, is + 1, &sc, &m);
    const float d2 = d * sc, m2 = min * m;
    for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (b->qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (b->qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    u1 = (uint8_t)(u1 << 2);
    u2 = (uint8_t)(u2 << 2);
  }
}

/* ---- q6_K ---------------------------------------------------------------------------------- */

/* Reference (qw NULL: weights x²) and weighted (qw used directly as the weights, as ggml's
 * quantize_row_q6_K_impl does) share everything: signed sub-block scales by fit_symmetric,
 * quantized to int8 against the one of largest magnitude. */
static void q6k_pack(const int8_t *L, q6k_block *y);

/* The super-block part of q6_K shared by the scalar encoder and its twins: the signed scale of
 * largest magnitude (the first on a tie), d and the sixteen int8 sub-block scales. Returns
 * false for a super-block whose scales are all below ZERO_EPS, which is then written whole
 * (zero, d = +0). Plain C: the vector callers clear the upper register halves first. */
static bool q6k_set_scales(const float scales[16], q6k_block *y) {
  float max_scale = 0, max_abs = 0;
  for (int ib = 0; ib < 16; ib++) {
    const float a = fabsf(scales[ib]);
    if (a > max_abs) {
      max_abs = a;
      max_scale = scales[ib];
    }
  }
  if (max_abs < ZERO_EPS) {
    memset(y, 0, sizeof *y);
    y->d = cz_fp32_to_fp16(0.f);
    return false;
  }
  const float iscale = -128.f / max_scale;
  y->d = cz_fp32_to_fp16(1 / iscale);
  for (int ib = 0; ib < 16; ib++) {
    const int v = cz_nearest_int(iscale * scales[ib]);
    y->scales[ib] = (int8_t)(127 < v ? 127 : v);
  }
  return true;
}

static void q6k_encode_with(const float *x, const float *qw, q6k_block *y) {
  int8_t L[QK];
  float scales[16];
  for (int ib = 0; ib < 16; ib++)
    scales[ib] = fit_symmetric(16, 32, x + 16 * ib, qw ? qw + 16 * ib : NULL, L + 16 * ib);
  if (!q6k_set_scales(scales, y)) return;
  for (int j = 0; j < 16; j++) {
    const float d = h2f(y->d) * y->scales[j];
    if (!d) continue;
    for (int i = 0; i < 16; i++)
      L[16 * j + i] = (int8_t)(clampi(cz_nearest_int(x[16 * j + i] / d), -32, 31) + 32);
  }
  q6k_pack(L, y);
}

/* per 128: ql byte l holds elements l (low) and l+64 (high), byte l+32 holds l+32 and l+96;
 * qh byte l holds the top 2 bits of l, l+32, l+64, l+96 */
static void q6k_pack(const int8_t *L, q6k_block *y) {
  for (int j = 0; j < QK; j += 128) {
    uint8_t *ql = y->ql + j / 2, *qh = y->qh + j / 4;
    for (int l = 0; l < 32; l++) {
      const int a = L[j + l], b = L[j + l + 32], c = L[j + l + 64], e = L[j + l + 96];
      ql[l] = (uint8_t)((a & 0xF) | ((c & 0xF) << 4));
      ql[l + 32] = (uint8_t)((b & 0xF) | ((e & 0xF) << 4));
      qh[l] = (uint8_t)((a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6));
    }
  }
}

static void q6k_encode(const float *x, q6k_block *y) { q6k_encode_with(x, NULL, y); }

static void q6k_encode_weighted(const float *x, const float *qw, q6k_block *y) {
  q6k_encode_with(x, qw, y);
}

static void q6k_decode(const q6k_block *b, float *y) {
  const float d = h2f(b->d);
  const uint8_t *ql = b->ql, *qh = b->qh;
  const int8_t *sc = b->scales;
  for (int n = 0; n < QK; n += 128) {
    for (int l = 0; l < 32; l++) {
      const int is = l / 16;
      const int8_t q1 = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int8_t q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

/* ---- AVX2 twins of the encoders ------------------------------------------------------------ */

/* The searches above spend nearly all of a K-quant's time in short serial float reductions
 * (Σw·l, Σw·l², Σw·l·x, Σw·err over 16 or 32 elements, for every candidate scale), each one a
 * chain of dependent additions. The twins run eight sub-blocks at once, one per AVX2 lane:
 * element i of the eight sub-blocks sits in one vector (a transposed copy), and every lane
 * performs its sub-block's scalar operations in the scalar order, with compares and blends
 * where the scalar code branches. No reduction crosses lanes, there are no fused multiply-adds
 * (target avx2 only, and -ffp-contract=off), and division and square root are IEEE-exact in
 * both, so every lane computes the scalar code's floats bit for bit. The per-super-block steps
 * (sub-block scales to 6/8 bits, fit_positive, the fp16 conversions, packing) stay scalar.
 * Finite input only (the pipeline rejects anything else). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define CZ_AVX2 __attribute__((target("avx2,f16c")))

static bool have_avx2(void) {
  return __builtin_cpu_supports("avx2") && cz_cpu_has_f16c();
}

/* h2f without a call into SSE code (which stalls on dirty upper halves): vcvtph2ps gives
 * cz_fp16_to_fp32's bits for every half but a signaling NaN, and the halves decoded here are
 * the encoder's own scales, from cz_fp32_to_fp16, which writes only the quiet 0x7E00. */
CZ_AVX2 static inline float h2f_avx2(uint16_t h) { return _cvtsh_ss(h); }

/* cz_fp32_to_fp16 (NaN and rounding exactly as ggml's scalar) behind a vzeroupper, which GCC
 * does not always put before the call. */
CZ_AVX2 static inline uint16_t f2h_avx2(float f) {
  _mm256_zeroupper();
  return cz_fp32_to_fp16(f);
}

CZ_AVX2 static inline __m256i v_nearest(__m256 f) {
  const __m256 v = _mm256_add_ps(f, _mm256_set1_ps(12582912.f));
  return _mm256_sub_epi32(
      _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x007fffff)),
      _mm256_set1_epi32(0x00400000));
}

CZ_AVX2 static inline __m256i v_clamp(__m256i v, int lo, int hi) {
  return _mm256_min_epi32(_mm256_max_epi32(v, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi));
}

CZ_AVX2 static inline __m256 v_abs(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

CZ_AVX2 static inline __m256 v_gt(__m256 a, __m256 b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
CZ_AVX2 static inline __m256 v_lt(__m256 a, __m256 b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }

/* t[i] lane j = x[stride·j + i] for i < n: element i of eight sub-blocks of stride floats. */
CZ_AVX2 static inline void v_transpose(const float *x, int n, int stride, __m256 *t) {
  const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                         _mm256_set1_epi32(stride));
  for (int i = 0; i < n; i++) t[i] = _mm256_i32gather_ps(x + i, idx, 4);
}

/* L[stride·j + i] = lane j of l[i] + add. */
CZ_AVX2 static inline void v_untranspose8(const __m256i *l, int n, int stride, int add,
                                          uint8_t *L) {
  int32_t t[32][8];
  for (int i = 0; i < n; i++) _mm256_storeu_si256((__m256i *)t[i], l[i]);
  for (int j = 0; j < 8; j++)
    for (int i = 0; i < n; i++) L[stride * j + i] = (uint8_t)(t[i][j] + add);
}

/* fit_affine for eight sub-blocks of n, one per lane: the same floats, levels in l[]. */
CZ_AVX2 static void fit_affine8(int n, int nmax, const __m256 *x, const __m256 *w, __m256i *l,
                                float *scale_out, float *neg_min_out, float rmin, float rdelta,
                                int nstep, bool mad) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 min = x[0], max = x[0];
  __m256 sum_w = w[0];
  __m256 sum_x = _mm256_mul_ps(sum_w, x[0]);
  for (int i = 1; i < n; i++) {
    min = _mm256_blendv_ps(min, x[i], v_lt(x[i], min));
    max = _mm256_blendv_ps(max, x[i], v_gt(x[i], max));
    sum_w = _mm256_add_ps(sum_w, w[i]);
    sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w[i], x[i]));
  }
  min = _mm256_blendv_ps(min, zero, v_gt(min, zero));
  const __m256 min0 = min;
  const __m256 flat = _mm256_cmp_ps(max, min, _CMP_LE_OQ); /* the scalar's early return */
  const __m256 fnmax = _mm256_set1_ps((float)nmax);
  __m256 iscale = _mm256_div_ps(fnmax, _mm256_sub_ps(max, min));
  __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
  __m256 best_err = zero;
  for (int i = 0; i < n; i++) {
    l[i] = v_clamp(v_nearest(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min))), 0, nmax);
    __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(l[i])), min), x[i]);
    diff = mad ? v_abs(diff) : _mm256_mul_ps(diff, diff);
    best_err = _mm256_add_ps(best_err, _mm256_mul_ps(w[i], diff));
  }
  __m256i cand[32];
  for (int is = 0; is <= nstep; is++) {
    iscale = _mm256_div_ps(_mm256_set1_ps(rmin + rdelta * is + nmax), _mm256_sub_ps(max, min));
    __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
    for (int i = 0; i < n; i++) {
      cand[i] = v_clamp(v_nearest(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min))), 0, nmax);
      const __m256 lf = _mm256_cvtepi32_ps(cand[i]);
      const __m256 wl = _mm256_mul_ps(w[i], lf);
      sum_l = _mm256_add_ps(sum_l, wl);
      sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, lf));
      sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, x[i]));
    }
    const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
    const __m256 ok = v_gt(D, zero);
    if (_mm256_movemask_ps(ok) == 0) continue;
    __m256 s = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
    __m256 m = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
    const __m256 mpos = v_gt(m, zero);
    m = _mm256_blendv_ps(m, zero, mpos);
    s = _mm256_blendv_ps(s, _mm256_div_ps(sum_xl, sum_l2), mpos);
    __m256 err = zero;
    for (int i = 0; i < n; i++) {
      __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(s, _mm256_cvtepi32_ps(cand[i])), m), x[i]);
      diff = mad ? v_abs(diff) : _mm256_mul_ps(diff, diff);
      err = _mm256_add_ps(err, _mm256_mul_ps(w[i], diff));
    }
    const __m256 take = _mm256_and_ps(ok, v_lt(err, best_err));
    if (_mm256_movemask_ps(take) == 0) continue;
    const __m256i takei = _mm256_castps_si256(take);
    for (int i = 0; i < n; i++) l[i] = _mm256_blendv_epi8(l[i], cand[i], takei);
    best_err = _mm256_blendv_ps(best_err, err, take);
    scale = _mm256_blendv_ps(scale, s, take);
    min = _mm256_blendv_ps(min, m, take);
  }
  const __m256i flati = _mm256_castps_si256(flat);
  for (int i = 0; i < n; i++) l[i] = _mm256_andnot_si256(flati, l[i]);
  scale = _mm256_blendv_ps(scale, zero, flat);
  min = _mm256_blendv_ps(min, min0, flat);
  _mm256_storeu_ps(scale_out, scale);
  _mm256_storeu_ps(neg_min_out, _mm256_xor_ps(min, _mm256_set1_ps(-0.0f)));
}

/* The first element of largest magnitude of each lane (fit_symmetric's and fit_q3's anchor). */
CZ_AVX2 static inline void v_signed_absmax(int n, const __m256 *x, __m256 *max, __m256 *amax) {
  __m256 mx = _mm256_setzero_ps(), am = _mm256_setzero_ps();
  for (int i = 0; i < n; i++) {
    const __m256 ax = v_abs(x[i]);
    const __m256 gt = v_gt(ax, am);
    am = _mm256_blendv_ps(am, ax, gt);
    mx = _mm256_blendv_ps(mx, x[i], gt);
  }
  *max = mx;
  *amax = am;
}

/* sym_levels for eight lanes, given each element's weight w[i] and w[i]·x[i] (the same
 * products the scalar forms, computed once for all candidate scales). */
CZ_AVX2 static inline void sym_levels8(int n, int nmax, const __m256 *x, const __m256 *w,
                                       const __m256 *wx, __m256 iscale, __m256i *l,
                                       __m256 *sumlx, __m256 *suml2) {
  __m256 slx = _mm256_setzero_ps(), sl2 = _mm256_setzero_ps();
  for (int i = 0; i < n; i++) {
    l[i] = v_clamp(v_nearest(_mm256_mul_ps(iscale, x[i])), -nmax, nmax - 1);
    const __m256 lf = _mm256_cvtepi32_ps(l[i]);
    slx = _mm256_add_ps(slx, _mm256_mul_ps(wx[i], lf));
    sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w[i], lf), lf));
  }
  *sumlx = slx;
  *suml2 = sl2;
}

/* fit_symmetric for eight lanes (n <= 32; qw NULL means x²); l[] gets the stored levels
 * (l + nmax, or 0 for a zero lane). The candidate inverse scales depend only on each lane's
 * anchor, so all 19 divisions are issued before the searches instead of one per candidate. */
CZ_AVX2 static void fit_symmetric8(int n, int nmax, const __m256 *x, const __m256 *qw,
                                   __m256i *l, float *scale_out) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 max, amax, w[32], wx[32], iscales[19];
  v_signed_absmax(n, x, &max, &amax);
  const __m256 tiny = v_lt(amax, _mm256_set1_ps(ZERO_EPS));
  for (int i = 0; i < n; i++) {
    w[i] = qw ? qw[i] : _mm256_mul_ps(x[i], x[i]);
    wx[i] = _mm256_mul_ps(w[i], x[i]);
  }
  iscales[0] = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
  for (int is = -9, k = 1; is <= 9; is++)
    if (is != 0) iscales[k++] = _mm256_div_ps(_mm256_set1_ps(-(nmax + 0.1f * is)), max);
  __m256 sumlx, suml2;
  sym_levels8(n, nmax, x, w, wx, iscales[0], l, &sumlx, &suml2);
  __m256 scale = _mm256_blendv_ps(zero, _mm256_div_ps(sumlx, suml2),
                                  _mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ));
  __m256 best = _mm256_mul_ps(scale, sumlx);
  __m256i cand[32];
  for (int k = 1; k < 19; k++) {
    sym_levels8(n, nmax, x, w, wx, iscales[k], cand, &sumlx, &suml2);
    const __m256 take = _mm256_and_ps(v_gt(suml2, zero), v_gt(_mm256_mul_ps(sumlx, sumlx),
                                                                 _mm256_mul_ps(best, suml2)));
    if (_mm256_movemask_ps(take) == 0) continue;
    const __m256i takei = _mm256_castps_si256(take);
    for (int i = 0; i < n; i++) l[i] = _mm256_blendv_epi8(l[i], cand[i], takei);
    const __m256 s = _mm256_div_ps(sumlx, suml2);
    scale = _mm256_blendv_ps(scale, s, take);
    best = _mm256_blendv_ps(best, _mm256_mul_ps(s, sumlx), take);
  }
  const __m256i tinyi = _mm256_castps_si256(tiny);
  for (int i = 0; i < n; i++)
    l[i] = _mm256_andnot_si256(tinyi, _mm256_add_epi32(l[i], _mm256_set1_epi32(nmax)));
  _mm256_storeu_ps(scale_out, _mm256_blendv_ps(scale, zero, tiny));
}

/* fit_q3 for eight lanes (n 16, nmax 4), one sub-block per lane, every lane doing its
 * sub-block's scalar operations in the scalar order. The scalar's coordinate descent
 *   slx = sumlx - w·x·L;  sl2 = suml2 - w·L·L;  nl = clamp(nearest(x·sl2 / slx));
 *   take nl when slx > 0, nl != L and the fit improves
 * runs element after element, sweep after sweep, with p = w·x·L and q = w·L·L of each element
 * kept beside L (the products the scalar forms, so its subtractions see the same floats) and
 * sumlx² kept beside sumlx. Most steps take nothing in any lane; the branch on that lets the
 * core run the next steps ahead instead of waiting for each step's chain (a division, a
 * rounding, products) through the running sums.
 *
 * Stopping: the scalar stops after a sweep without a change, or after 5 sweeps. A lane's state
 * is final once 16 consecutive steps (one of each element) took nothing, as its later steps
 * would make the same decisions again; so the lanes stop 16 steps after the last step in which
 * any of them took something (or after 80 steps, the scalar's 5 sweeps): each lane ends in the
 * state where its scalar fit ends, without the rest of the confirming sweep. */
CZ_AVX2 static void fit_q3_8(const __m256 *x, __m256i *l, float *scale_out) {
  enum { n = 16, nmax = 4 };
  const __m256 zero = _mm256_setzero_ps();
  __m256 max, amax, w[16], wx[16], p[16], q[16];
  v_signed_absmax(n, x, &max, &amax);
  const __m256 tiny = v_lt(amax, _mm256_set1_ps(ZERO_EPS));
  const __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
  __m256 sumlx = zero, suml2 = zero;
  for (int i = 0; i < n; i++) {
    l[i] = v_clamp(v_nearest(_mm256_mul_ps(iscale, x[i])), -nmax, nmax - 1);
    const __m256 lf = _mm256_cvtepi32_ps(l[i]);
    w[i] = _mm256_mul_ps(x[i], x[i]);
    wx[i] = _mm256_mul_ps(w[i], x[i]);
    p[i] = _mm256_mul_ps(wx[i], lf);
    q[i] = _mm256_mul_ps(_mm256_mul_ps(w[i], lf), lf);
    sumlx = _mm256_add_ps(sumlx, p[i]);
    suml2 = _mm256_add_ps(suml2, q[i]);
  }
  __m256 sumlx2 = _mm256_mul_ps(sumlx, sumlx);
  for (int t = 0, last = -1; t < 5 * n && t - last <= n; t++) {
    const int i = t % n;
    const __m256 slx = _mm256_sub_ps(sumlx, p[i]);
    const __m256 sl2 = _mm256_sub_ps(suml2, q[i]);
    const __m256i nl = v_clamp(v_nearest(_mm256_div_ps(_mm256_mul_ps(x[i], sl2), slx)), -nmax,
                               nmax - 1);
    const __m256 nlf = _mm256_cvtepi32_ps(nl);
    const __m256 np = _mm256_mul_ps(wx[i], nlf);
    const __m256 nq = _mm256_mul_ps(_mm256_mul_ps(w[i], nlf), nlf);
    const __m256 nslx = _mm256_add_ps(slx, np);
    const __m256 nsl2 = _mm256_add_ps(sl2, nq);
    const __m256 better = v_gt(_mm256_mul_ps(_mm256_mul_ps(nslx, nslx), suml2),
                               _mm256_mul_ps(sumlx2, nsl2));
    const __m256 same = _mm256_castsi256_ps(_mm256_cmpeq_epi32(nl, l[i]));
    const __m256 take = _mm256_andnot_ps(
        same, _mm256_and_ps(_mm256_and_ps(v_gt(slx, zero), v_gt(nsl2, zero)), better));
    if (_mm256_movemask_ps(take) == 0) continue;
    last = t;
    l[i] = _mm256_blendv_epi8(l[i], nl, _mm256_castps_si256(take));
    p[i] = _mm256_blendv_ps(p[i], np, take);
    q[i] = _mm256_blendv_ps(q[i], nq, take);
    sumlx = _mm256_blendv_ps(sumlx, nslx, take);
    suml2 = _mm256_blendv_ps(suml2, nsl2, take);
    sumlx2 = _mm256_mul_ps(sumlx, sumlx);
  }
  const __m256i tinyi = _mm256_castps_si256(tiny);
  for (int i = 0; i < n; i++)
    l[i] = _mm256_andnot_si256(tinyi, _mm256_add_epi32(l[i], _mm256_set1_epi32(nmax)));
  const __m256 scale = _mm256_blendv_ps(zero, _mm256_div_ps(sumlx, suml2), v_gt(suml2, zero));
  _mm256_storeu_ps(scale_out, _mm256_blendv_ps(scale, zero, tiny));
}

/* L[i] = clamp(nearest((x[i] + dm) / d), lo, hi) + add for n (a multiple of 8) elements:
 * the element-wise re-rounding with a decoded scale, as the scalar finish steps write it.
 * dm = 0 stands for the scalar's plain x / d: x + 0.0f is x for every x but -0.0, and
 * -0.0 / d and +0.0 / d round to the same level. */
CZ_AVX2 static inline void v_reround(const float *x, int n, float dm, float d, int lo, int hi,
                                     int add, uint8_t *L) {
  const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(dm);
  for (int i = 0; i < n; i += 8) {
    __m256i q = v_clamp(v_nearest(_mm256_div_ps(_mm256_add_ps(_mm256_loadu_ps(x + i), vm), vd)), lo, hi);
    q = _mm256_add_epi32(q, _mm256_set1_epi32(add));
    int32_t t[8];
    _mm256_storeu_si256((__m256i *)t, q);
    for (int k = 0; k < 8; k++) L[i + k] = (uint8_t)t[k];
  }
}

/* pack_2bit on 32 bytes at a time (levels 0..3: the 16-bit shifts keep every bit in its byte). */
CZ_AVX2 static inline void pack_2bit_avx2(const uint8_t *L, uint8_t *qs) {
  for (int j = 0; j < QK; j += 128) {
    const __m256i a = _mm256_loadu_si256((const __m256i *)(L + j));
    const __m256i b = _mm256_loadu_si256((const __m256i *)(L + j + 32));
    const __m256i c = _mm256_loadu_si256((const __m256i *)(L + j + 64));
    const __m256i d = _mm256_loadu_si256((const __m256i *)(L + j + 96));
    const __m256i q = _mm256_or_si256(_mm256_or_si256(a, _mm256_slli_epi16(b, 2)),
                                      _mm256_or_si256(_mm256_slli_epi16(c, 4), _mm256_slli_epi16(d, 6)));
    _mm256_storeu_si256((__m256i *)(qs + j / 4), q);
  }
}

/* ---- q2_K ---- */

CZ_AVX2 static void q2k_finish_avx2(const float *x, uint8_t *L, q2k_block *y) {
  for (int j = 0; j < 16; j++) {
    const float d = h2f_avx2(y->d) * (y->scales[j] & 0xF);
    if (!d) continue;
    const float dm = h2f_avx2(y->dmin) * (y->scales[j] >> 4);
    v_reround(x + 16 * j, 16, dm, d, 0, 3, 0, L + 16 * j);
  }
  pack_2bit_avx2(L, y->qs);
}

/* The sixteen sub-block fits of q2_K, eight at a time; w == NULL means |x|. */
CZ_AVX2 static void q2k_fits_avx2(const float *x, const float *w, float *scales, float *mins,
                                  uint8_t *L, float rmin, float rdelta, int nstep, bool mad) {
  for (int g = 0; g < 2; g++) {
    __m256 xt[16], wt[16];
    __m256i l[16];
    v_transpose(x + 128 * g, 16, 16, xt);
    if (w)
      v_transpose(w + 128 * g, 16, 16, wt);
    else
      for (int i = 0; i < 16; i++) wt[i] = v_abs(xt[i]);
    fit_affine8(16, 3, xt, wt, l, scales + 8 * g, mins + 8 * g, rmin, rdelta, nstep, mad);
    v_untranspose8(l, 16, 16, 0, L + 128 * g);
  }
}

CZ_AVX2 static void q2k_encode_avx2(const float *x, q2k_block *y) {
  uint8_t L[QK];
  float scales[16], mins[16];
  float max_scale = 0, max_min = 0;
  q2k_fits_avx2(x, NULL, scales, mins, L, -0.5f, 0.1f, 15, true);
  for (int j = 0; j < 16; j++) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0) {
    const float iscale = 15.f / max_scale;
    for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)cz_nearest_int(iscale * scales[j]);
    y->d = f2h_avx2(max_scale / 15.f);
  } else {
    memset(y->scales, 0, sizeof y->scales);
    y->d = f2h_avx2(0.f);
  }
  if (max_min > 0) {
    const float iscale = 15.f / max_min;
    for (int j = 0; j < 16; j++)
      y->scales[j] |= (uint8_t)(cz_nearest_int(iscale * mins[j]) << 4);
    y->dmin = f2h_avx2(max_min / 15.f);
  } else {
    y->dmin = f2h_avx2(0.f);
  }
  q2k_finish_avx2(x, L, y);
}

/* Weights qw·sqrt(σ² + x²) for a super-block (element-wise, as the scalar loops), and their
 * sums per sub-block of sub in element order. */
CZ_AVX2 static void weights_avx2(const float *x, const float *qw, float sigma2, int sub,
                                 float *w, float *sw) {
  const __m256 s2 = _mm256_set1_ps(sigma2);
  for (int i = 0; i < QK; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(w + i, _mm256_mul_ps(_mm256_loadu_ps(qw + i),
                                          _mm256_sqrt_ps(_mm256_add_ps(s2, _mm256_mul_ps(v, v)))));
  }
  for (int j = 0; j < QK / sub; j++) {
    float sumw = 0;
    for (int i = 0; i < sub; i++) sumw += w[sub * j + i];
    sw[j] = sumw;
  }
}

CZ_AVX2 static void q2k_encode_weighted_avx2(const float *x, const float *qw, q2k_block *y) {
  uint8_t L[QK], Ls[16], Lm[16];
  float w[QK], sw[16], scales[16], mins[16];
  weights_avx2(x, qw, sum_squares(x, QK) / QK, 16, w, sw);
  q2k_fits_avx2(x, w, scales, mins, L, -0.9f, 0.05f, 36, false);
  const float dm = fit_positive(16, 15, scales, sw, Ls);
  const float mm = fit_positive(16, 15, mins, sw, Lm);
  y->d = f2h_avx2(dm);
  y->dmin = f2h_avx2(mm);
  for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
  q2k_finish_avx2(x, L, y);
}

/* ---- q3_K ---- */

/* Re-round with the decoded sub-block scales, 32 elements (two sub-blocks) a vector of bytes;
 * a sub-block whose scale decodes to 0 keeps its search levels, fl[j / 8][i][j % 8] for
 * element i of sub-block j (lane j % 8 of the fits' level vectors). Then bit 2 to hmask (bit c
 * of byte i for element 32c + i) and the low 2 bits packed as pack_2bit: levels are 0..7, so
 * L & 3 is the scalar's l - 4 for l > 3, and the 16-bit shifts keep every bit in its byte. */
CZ_AVX2 static void q3k_finish_avx2(const float *x, const int32_t fl[2][16][8], q3k_block *y) {
  float d[16];
  const float d_all = h2f_avx2(y->d);
  for (int j = 0; j < 16; j++) d[j] = d_all * (int8_t)q3k_get_scale(y->scales, j);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  __m256i hm = _mm256_setzero_si256(), low[8];
  for (int c = 0; c < 8; c++) {
    __m256i q[4];
    for (int k = 0; k < 4; k++) {
      const __m256 v =
          _mm256_div_ps(_mm256_loadu_ps(x + 32 * c + 8 * k), _mm256_set1_ps(d[2 * c + k / 2]));
      q[k] = _mm256_add_epi32(v_clamp(v_nearest(v), -4, 3), _mm256_set1_epi32(4));
    }
    __m256i L = _mm256_permutevar8x32_epi32(
        _mm256_packus_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3])), order);
    if (!d[2 * c] || !d[2 * c + 1]) {
      uint8_t t[32];
      _mm256_storeu_si256((__m256i *)t, L);
      for (int h = 0; h < 2; h++) {
        const int j = 2 * c + h;
        if (d[j]) continue;
        for (int i = 0; i < 16; i++) t[16 * h + i] = (uint8_t)fl[j / 8][i][j % 8];
      }
      L = _mm256_loadu_si256((const __m256i *)t);
    }
    const __m256i hi = _mm256_cmpgt_epi8(L, _mm256_set1_epi8(3));
    hm = _mm256_or_si256(hm, _mm256_and_si256(hi, _mm256_set1_epi8((char)(1u << c))));
    low[c] = _mm256_and_si256(L, _mm256_set1_epi8(3));
  }
  _mm256_storeu_si256((__m256i *)y->hmask, hm);
  for (int h = 0; h < 2; h++) {
    const __m256i *a = low + 4 * h;
    const __m256i q =
        _mm256_or_si256(_mm256_or_si256(a[0], _mm256_slli_epi16(a[1], 2)),
                        _mm256_or_si256(_mm256_slli_epi16(a[2], 4), _mm256_slli_epi16(a[3], 6)));
    _mm256_storeu_si256((__m256i *)(y->qs + 32 * h), q);
  }
}

CZ_AVX2 static void q3k_encode_avx2(const float *x, q3k_block *y) {
  int32_t fl[2][16][8];
  float scales[16];
  float max_scale = 0, amax = 0;
  for (int g = 0; g < 2; g++) {
    __m256 xt[16];
    __m256i l[16];
    v_transpose(x + 128 * g, 16, 16, xt);
    fit_q3_8(xt, l, scales + 8 * g);
    for (int i = 0; i < 16; i++) _mm256_storeu_si256((__m256i *)fl[g][i], l[i]);
  }
  for (int j = 0; j < 16; j++) {
    const float a = fabsf(scales[j]);
    if (a > amax) {
      amax = a;
      max_scale = scales[j];
    }
  }
  memset(y->scales, 0, sizeof y->scales);
  if (max_scale) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < 16; j++) {
      const int8_t l = (int8_t)cz_nearest_int(iscale * scales[j]);
      q3k_put_scale(y->scales, j, clampi(l, -32, 31) + 32);
    }
    y->d = f2h_avx2(1 / iscale);
  } else {
    y->d = f2h_avx2(0.f);
  }
  q3k_finish_avx2(x, fl, y);
}

CZ_AVX2 static void q3k_encode_weighted_avx2(const float *x, const float *qw, q3k_block *y) {
  int8_t Ls[16];
  int32_t fl[2][16][8];
  float w[QK], sw[16], scales[16];
  weights_avx2(x, qw, 2 * sum_squares(x, QK) / QK, 16, w, sw);
  for (int g = 0; g < 2; g++) {
    __m256 xt[16], wt[16];
    __m256i l[16];
    v_transpose(x + 128 * g, 16, 16, xt);
    v_transpose(w + 128 * g, 16, 16, wt);
    fit_symmetric8(16, 4, xt, wt, l, scales + 8 * g);
    for (int i = 0; i < 16; i++) _mm256_storeu_si256((__m256i *)fl[g][i], l[i]);
  }
  memset(y->scales, 0, sizeof y->scales);
  const float d_block = fit_symmetric(16, 32, scales, sw, Ls);
  for (int j = 0; j < 16; j++) q3k_put_scale(y->scales, j, Ls[j]);
  y->d = f2h_avx2(d_block);
  q3k_finish_avx2(x, fl, y);
}

/* ---- q4_K and q5_K ---- */

CZ_AVX2 static void k45_search_avx2(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                                    k45_head *h) {
  __m256 xt[32], wt[32];
  __m256i l[32];
  float scales[8], mins[8];
  float max_scale = 0, max_min = 0;
  v_transpose(x, 32, 32, xt);
  __m256 sum_x2 = _mm256_setzero_ps();
  for (int i = 0; i < 32; i++) sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(xt[i], xt[i]));
  const __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.f)));
  for (int i = 0; i < 32; i++) wt[i] = _mm256_add_ps(av_x, v_abs(xt[i]));
  fit_affine8(32, nmax, xt, wt, l, scales, mins, rmin, 0.1f, nstep, false);
  v_untranspose8(l, 32, 32, 0, L);
  for (int j = 0; j < 8; j++) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < 8; j++) {
    uint8_t ls = (uint8_t)cz_nearest_int(inv_scale * scales[j]);
    uint8_t lm = (uint8_t)cz_nearest_int(inv_min * mins[j]);
    ls = ls < 63 ? ls : 63;
    lm = lm < 63 ? lm : 63;
    k4_put(h->scales, j, ls, lm);
  }
  h->d = f2h_avx2(max_scale / 63.f);
  h->dmin = f2h_avx2(max_min / 63.f);
}

CZ_AVX2 static void k45_search_weighted_avx2(const float *x, const float *qw, int nmax,
                                             bool clamp63, uint8_t *L, k45_head *h) {
  __m256 xt[32], wt[32];
  __m256i l[32];
  float w[QK], sw[8], scales[8], mins[8];
  uint8_t Ls[8], Lm[8];
  weights_avx2(x, qw, 2 * sum_squares(x, QK) / QK, 32, w, sw);
  v_transpose(x, 32, 32, xt);
  v_transpose(w, 32, 32, wt);
  fit_affine8(32, nmax, xt, wt, l, scales, mins, -0.9f, 0.05f, 36, false);
  v_untranspose8(l, 32, 32, 0, L);
  const float d_block = fit_positive(8, 63, scales, sw, Ls);
  const float m_block = fit_positive(8, 63, mins, sw, Lm);
  for (int j = 0; j < 8; j++) {
    uint8_t ls = Ls[j], lm = Lm[j];
    if (clamp63) {
      ls = ls < 63 ? ls : 63;
      lm = lm < 63 ? lm : 63;
    }
    k4_put(h->scales, j, ls, lm);
  }
  h->d = f2h_avx2(d_block);
  h->dmin = f2h_avx2(m_block);
}

CZ_AVX2 static void k45_requantize_avx2(const float *x, int nmax, const k45_head *h, uint8_t *L) {
  for (int j = 0; j < 8; j++) {
    uint8_t sc, m;
    k4_get(h->scales, j, &sc, &m);
    const float d = h2f_avx2(h->d) * sc;
    if (!d) continue;
    v_reround(x + 32 * j, 32, h2f_avx2(h->dmin) * m, d, 0, nmax, 0, L + 32 * j);
  }
}

CZ_AVX2 static void q4k_encode_avx2(const float *x, q4k_block *y) {
  uint8_t L[QK];
  k45_head h = {0};
  k45_search_avx2(x, 15, -1.f, 20, L, &h);
  k45_requantize_avx2(x, 15, &h, L);
  q4k_store(&h, L, y);
}

CZ_AVX2 static void q4k_encode_weighted_avx2(const float *x, const float *qw, q4k_block *y) {
  uint8_t L[QK];
  k45_head h = {0};
  k45_search_weighted_avx2(x, qw, 15, false, L, &h);
  k45_requantize_avx2(x, 15, &h, L);
  q4k_store(&h, L, y);
}

CZ_AVX2 static void q5k_encode_avx2(const float *x, q5k_block *y) {
  uint8_t L[QK];
  k45_head h = {0};
  k45_search_avx2(x, 31, -0.5f, 15, L, &h);
  k45_requantize_avx2(x, 31, &h, L);
  q5k_store(&h, L, y);
}

CZ_AVX2 static void q5k_encode_weighted_avx2(const float *x, const float *qw, q5k_block *y) {
  uint8_t L[QK];
  k45_head h = {0};
  k45_search_weighted_avx2(x, qw, 31, true, L, &h);
  k45_requantize_avx2(x, 31, &h, L);
  q5k_store(&h, L, y);
}

/* ---- q6_K ---- */

CZ_AVX2 static void q6k_encode_with_avx2(const float *x, const float *qw, q6k_block *y) {
  int8_t L[QK];
  float scales[16];
  for (int g = 0; g < 2; g++) {
    __m256 xt[16], wt[16];
    __m256i l[16];
    v_transpose(x + 128 * g, 16, 16, xt);
    if (qw) v_transpose(qw + 128 * g, 16, 16, wt);
    fit_symmetric8(16, 32, xt, qw ? wt : NULL, l, scales + 8 * g);
    v_untranspose8(l, 16, 16, 0, (uint8_t *)L + 128 * g);
  }
  _mm256_zeroupper();
  if (!q6k_set_scales(scales, y)) return;
  for (int j = 0; j < 16; j++) {
    const float d = h2f_avx2(y->d) * y->scales[j];
    if (!d) continue;
    v_reround(x + 16 * j, 16, 0.0f, d, -32, 31, 32, (uint8_t *)L + 16 * j);
  }
  q6k_pack(L, y);
}

CZ_AVX2 static void q6k_encode_avx2(const float *x, q6k_block *y) { q6k_encode_with_avx2(x, NULL, y); }

CZ_AVX2 static void q6k_encode_weighted_avx2(const float *x, const float *qw, q6k_block *y) {
  q6k_encode_with_avx2(x, qw, y);
}

CZ_AVX2 static void cz_fit_symmetric32_x8_avx2(int nmax, const float *x, const float *w,
                                                uint8_t *L, float *scale) {
  __m256 xt[32], wt[32];
  __m256i l[32];
  v_transpose(x, 32, 32, xt);
  v_transpose(w, 32, 32, wt);
  fit_symmetric8(32, nmax, xt, wt, l, scale);
  v_untranspose8(l, 32, 32, 0, L);
  _mm256_zeroupper();
}

/* make_qkx3's settings of the weighted q4_1 / q5_1: rmin -0.9, rdelta 0.05, 36 steps, squared
 * error. */
CZ_AVX2 static void cz_fit_affine32_x8_avx2(int nmax, const float *x, const float *w,
                                             uint8_t *L, float *scale, float *neg_min) {
  __m256 xt[32], wt[32];
  __m256i l[32];
  v_transpose(x, 32, 32, xt);
  v_transpose(w, 32, 32, wt);
  fit_affine8(32, nmax, xt, wt, l, scale, neg_min, -0.9f, 0.05f, 36, false);
  v_untranspose8(l, 32, 32, 0, L);
  _mm256_zeroupper();
}

/* The two searches for eight groups of 32, shared with the legacy types' weighted paths
 * (cz_quants.h): x and w hold the eight groups one after another. */
bool cz_fit_symmetric32_x8(int nmax, const float *x, const float *w, uint8_t *L, float *scale) {
  if (!have_avx2()) return false;
  cz_fit_symmetric32_x8_avx2(nmax, x, w, L, scale);
  return true;
}

bool cz_fit_affine32_x8(int nmax, const float *x, const float *w, uint8_t *L, float *scale,
                        float *neg_min) {
  if (!have_avx2()) return false;
  cz_fit_affine32_x8_avx2(nmax, x, w, L, scale, neg_min);
  return true;
}

/* void-pointer wrappers for k_quantize_rows */
#define CZ_K_AVX2_WRAP(tn, blk, enc, enc_weighted)                                            \
  CZ_AVX2 static void tn##_enc_avx2(const float *x, void *y) { enc##_avx2(x, (blk *)y); }    \
  CZ_AVX2 static void tn##_encw_avx2(const float *x, const float *qw, void *y) {              \
    enc_weighted##_avx2(x, qw, (blk *)y);                                                     \
  }
CZ_K_AVX2_WRAP(q2_K, q2k_block, q2k_encode, q2k_encode_weighted)
CZ_K_AVX2_WRAP(q3_K, q3k_block, q3k_encode, q3k_encode_weighted)
CZ_K_AVX2_WRAP(q4_K, q4k_block, q4k_encode, q4k_encode_weighted)
CZ_K_AVX2_WRAP(q5_K, q5k_block, q5k_encode, q5k_encode_weighted)
CZ_K_AVX2_WRAP(q6_K, q6k_block, q6k_encode, q6k_encode_weighted)
#undef CZ_K_AVX2_WRAP

/* q6k_decode for whole rows: the same float products, d * sc first (one scalar product per
 * sixteen values, as the scalar's left-to-right d * sc[is] * q), then times q in vectors. It
 * was a tenth of a whole-model Q6_K run: the report decodes every block it writes. d goes
 * through the scalar h2f, as the block may come from a file (a signaling NaN stays one). */
CZ_AVX2 static void q6k_decode_rows_avx2(const unsigned char *s, float *y, int64_t nb) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
  for (int64_t i = 0; i < nb; i++, s += sizeof(q6k_block)) {
    uint16_t dh;
    memcpy(&dh, s + offsetof(q6k_block, d), sizeof dh);
    const float d = h2f(dh);
    const uint8_t *ql = s + offsetof(q6k_block, ql), *qh = s + offsetof(q6k_block, qh);
    const int8_t *sc = (const int8_t *)(s + offsetof(q6k_block, scales));
    for (int n = 0; n < QK; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      const __m256i lo = _mm256_loadu_si256((const __m256i *)ql);
      const __m256i hi = _mm256_loadu_si256((const __m256i *)(ql + 32));
      const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(lo, m4),
                             _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(hi, m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lo, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(hi, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
      for (int k = 0; k < 4; k++) {
        const __m256i v = _mm256_sub_epi8(q[k], k32);
        /* values 32k + 0..15 use sc[2k], 32k + 16..31 use sc[2k + 1] */
        const __m256 s0 = _mm256_set1_ps(d * sc[2 * k]), s1 = _mm256_set1_ps(d * sc[2 * k + 1]);
        const __m128i a = _mm256_castsi256_si128(v), c = _mm256_extracti128_si256(v, 1);
        float *o = y + 32 * k;
        _mm256_storeu_ps(o, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a))));
        _mm256_storeu_ps(o + 8, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(
                                                      _mm256_cvtepi8_epi32(_mm_srli_si128(a, 8)))));
        _mm256_storeu_ps(o + 16, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c))));
        _mm256_storeu_ps(o + 24, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(
                                                       _mm256_cvtepi8_epi32(_mm_srli_si128(c, 8)))));
      }
    }
  }
}

static bool q6_K_dec_fast(const void *src, float *dst, int64_t n) {
  if (!have_avx2()) return false;
  q6k_decode_rows_avx2(src, dst, n / QK);
  return true;
}

/* ---- AVX-512 twin of the q6_K encoder ------------------------------------------------------ */

/* q6k_encode_with_avx2 with all sixteen sub-blocks of a super-block in the sixteen lanes of one
 * __m512 (AVX-512F only, no FMA): fit_symmetric16 is fit_symmetric8 lane for lane, compares
 * giving masks where the AVX2 twin blends on vector masks, so every lane still performs its
 * sub-block's scalar operations in the scalar order and the bytes are the scalar's. The
 * per-super-block steps (the scale of largest magnitude, the int8 sub-scales, the fp16 d, the
 * packing) stay scalar as there; the re-rounding at the decoded scales takes one sub-block per
 * vector. Taken before the AVX2 twin where the CPU has AVX-512F. */
#define CZ_AVX512 __attribute__((target("avx512f,f16c")))

static bool have_avx512(void) {
  return __builtin_cpu_supports("avx512f") && cz_cpu_has_f16c();
}

CZ_AVX512 static inline __m512i w_nearest(__m512 f) {
  const __m512 v = _mm512_add_ps(f, _mm512_set1_ps(12582912.f));
  return _mm512_sub_epi32(
      _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x007fffff)),
      _mm512_set1_epi32(0x00400000));
}

CZ_AVX512 static inline __m512i w_clamp(__m512i v, int lo, int hi) {
  return _mm512_min_epi32(_mm512_max_epi32(v, _mm512_set1_epi32(lo)), _mm512_set1_epi32(hi));
}

CZ_AVX512 static inline __m512 w_abs(__m512 v) {
  return _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
}

CZ_AVX512 static inline __mmask16 w_gt(__m512 a, __m512 b) {
  return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ);
}
CZ_AVX512 static inline __mmask16 w_lt(__m512 a, __m512 b) {
  return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ);
}

/* t[i] lane j = r[j] lane i: a 16×16 transpose in registers (gathers are slow on the CPUs
 * with the gather-data-sampling microcode fix). Exact: it only moves bits. */
CZ_AVX512 static inline void w_transpose16x16(const __m512 *r, __m512 *t) {
  __m512 a[16], b[16];
  for (int k = 0; k < 16; k += 2) { /* lane q of 128 bits: r[k], r[k+1] interleaved */
    a[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
    a[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
  }
  for (int k = 0; k < 16; k += 4) { /* b[k + m] lane q: r[k..k+3] element 4q + m */
    b[k] = _mm512_shuffle_ps(a[k], a[k + 2], 0x44);
    b[k + 1] = _mm512_shuffle_ps(a[k], a[k + 2], 0xEE);
    b[k + 2] = _mm512_shuffle_ps(a[k + 1], a[k + 3], 0x44);
    b[k + 3] = _mm512_shuffle_ps(a[k + 1], a[k + 3], 0xEE);
  }
  for (int m = 0; m < 4; m++) {
    const __m512 p0 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0x88);
    const __m512 p1 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0xDD);
    const __m512 q0 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0x88);
    const __m512 q1 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0xDD);
    t[m] = _mm512_shuffle_f32x4(p0, q0, 0x88);
    t[4 + m] = _mm512_shuffle_f32x4(p1, q1, 0x88);
    t[8 + m] = _mm512_shuffle_f32x4(p0, q0, 0xDD);
    t[12 + m] = _mm512_shuffle_f32x4(p1, q1, 0xDD);
  }
}

/* t[i] lane j = x[16·j + i], i < 16: element i of the sixteen sub-blocks of 16. */
CZ_AVX512 static inline void w_transpose16(const float *x, __m512 *t) {
  __m512 r[16];
  for (int j = 0; j < 16; j++) r[j] = _mm512_loadu_ps(x + 16 * j);
  w_transpose16x16(r, t);
}

/* L[16·j + i] = lane j of l[i] (levels 0..63). */
CZ_AVX512 static inline void w_untranspose16(const __m512i *l, uint8_t *L) {
  __m512 c[16], r[16];
  for (int i = 0; i < 16; i++) c[i] = _mm512_castsi512_ps(l[i]);
  w_transpose16x16(c, r);
  for (int j = 0; j < 16; j++)
    _mm_storeu_si128((__m128i *)(L + 16 * j), _mm512_cvtepi32_epi8(_mm512_castps_si512(r[j])));
}

/* sym_levels8 for sixteen lanes (n 16), the levels kept as floats: (f + 1.5·2²³) - 1.5·2²³ is
 * the integer v_nearest rounds f to (|f| < 2²² here: |iscale·x| <= nmax + 0.9 but in the zero
 * lanes, whose results are dropped), exactly, and clamping it in floats gives the float
 * v_clamp's integer converts to; so the sums see the same floats without the conversions. */
CZ_AVX512 static inline void sym_levels16(int nmax, const __m512 *x, const __m512 *w,
                                          const __m512 *wx, __m512 iscale, __m512 *l,
                                          __m512 *sumlx, __m512 *suml2) {
  const __m512 magic = _mm512_set1_ps(12582912.f);
  const __m512 lo = _mm512_set1_ps((float)-nmax), hi = _mm512_set1_ps((float)(nmax - 1));
  __m512 slx = _mm512_setzero_ps(), sl2 = _mm512_setzero_ps();
  for (int i = 0; i < 16; i++) {
    const __m512 r = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(iscale, x[i]), magic), magic);
    const __m512 lf = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
    l[i] = lf;
    slx = _mm512_add_ps(slx, _mm512_mul_ps(wx[i], lf));
    sl2 = _mm512_add_ps(sl2, _mm512_mul_ps(_mm512_mul_ps(w[i], lf), lf));
  }
  *sumlx = slx;
  *suml2 = sl2;
}

/* fit_symmetric8 for sixteen lanes of n 16 (qw NULL means x²); l[] gets the stored levels
 * (l + nmax, or 0 for a zero lane), scale_out the sixteen scales. */
CZ_AVX512 static void fit_symmetric16(int nmax, const __m512 *x, const __m512 *qw, __m512i *l,
                                      float *scale_out) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 max = zero, amax = zero, w[16], wx[16], iscales[19];
  for (int i = 0; i < 16; i++) { /* the first element of largest magnitude */
    const __m512 ax = w_abs(x[i]);
    const __mmask16 gt = w_gt(ax, amax);
    amax = _mm512_mask_blend_ps(gt, amax, ax);
    max = _mm512_mask_blend_ps(gt, max, x[i]);
  }
  const __mmask16 tiny = w_lt(amax, _mm512_set1_ps(ZERO_EPS));
  for (int i = 0; i < 16; i++) {
    w[i] = qw ? qw[i] : _mm512_mul_ps(x[i], x[i]);
    wx[i] = _mm512_mul_ps(w[i], x[i]);
  }
  iscales[0] = _mm512_div_ps(_mm512_set1_ps((float)-nmax), max);
  for (int is = -9, k = 1; is <= 9; is++)
    if (is != 0) iscales[k++] = _mm512_div_ps(_mm512_set1_ps(-(nmax + 0.1f * is)), max);
  __m512 sumlx, suml2, lf[16], cand[16];
  sym_levels16(nmax, x, w, wx, iscales[0], lf, &sumlx, &suml2);
  __m512 scale = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(suml2, zero, _CMP_NEQ_UQ), zero,
                                      _mm512_div_ps(sumlx, suml2));
  __m512 best = _mm512_mul_ps(scale, sumlx);
  for (int k = 1; k < 19; k++) {
    sym_levels16(nmax, x, w, wx, iscales[k], cand, &sumlx, &suml2);
    const __mmask16 take = w_gt(suml2, zero) &
                           w_gt(_mm512_mul_ps(sumlx, sumlx), _mm512_mul_ps(best, suml2));
    if (take == 0) continue;
    for (int i = 0; i < 16; i++) lf[i] = _mm512_mask_blend_ps(take, lf[i], cand[i]);
    const __m512 s = _mm512_div_ps(sumlx, suml2);
    scale = _mm512_mask_blend_ps(take, scale, s);
    best = _mm512_mask_blend_ps(take, best, _mm512_mul_ps(s, sumlx));
  }
  for (int i = 0; i < 16; i++)
    l[i] = _mm512_maskz_add_epi32((__mmask16)~tiny, _mm512_cvtps_epi32(lf[i]),
                                  _mm512_set1_epi32(nmax));
  _mm512_storeu_ps(scale_out, _mm512_mask_blend_ps(tiny, scale, zero));
}

CZ_AVX512 static void q6k_encode_with_avx512(const float *x, const float *qw, q6k_block *y) {
  int8_t L[QK];
  float scales[16];
  {
    __m512 xt[16], wt[16];
    __m512i l[16];
    w_transpose16(x, xt);
    if (qw) w_transpose16(qw, wt);
    fit_symmetric16(32, xt, qw ? wt : NULL, l, scales);
    w_untranspose16(l, (uint8_t *)L);
  }
  _mm256_zeroupper();
  if (!q6k_set_scales(scales, y)) return;
  const float dh = _cvtsh_ss(y->d); /* h2f_avx2's: the encoder's own half, never a signaling NaN */
  for (int j = 0; j < 16; j++) {
    const float d = dh * y->scales[j];
    if (!d) continue;
    const __m512 q = _mm512_div_ps(_mm512_loadu_ps(x + 16 * j), _mm512_set1_ps(d));
    const __m512i l = _mm512_add_epi32(w_clamp(w_nearest(q), -32, 31), _mm512_set1_epi32(32));
    _mm_storeu_si128((__m128i *)(L + 16 * j), _mm512_cvtepi32_epi8(l));
  }
  _mm256_zeroupper();
  q6k_pack(L, y);
}

CZ_AVX512 static void q6_K_enc_avx512(const float *x, void *y) {
  q6k_encode_with_avx512(x, NULL, (q6k_block *)y);
}
CZ_AVX512 static void q6_K_encw_avx512(const float *x, const float *qw, void *y) {
  q6k_encode_with_avx512(x, qw, (q6k_block *)y);
}
#define CZ_Q6K_AVX512_ENC q6_K_enc_avx512
#define CZ_Q6K_AVX512_ENCW q6_K_encw_avx512
#define CZ_K_AVX2_ENC(tn) tn##_enc_avx2
#define CZ_K_AVX2_ENCW(tn) tn##_encw_avx2
#else
static bool have_avx2(void) { return false; }
bool cz_fit_symmetric32_x8(int nmax, const float *x, const float *w, uint8_t *L, float *scale) {
  (void)nmax, (void)x, (void)w, (void)L, (void)scale;
  return false;
}
bool cz_fit_affine32_x8(int nmax, const float *x, const float *w, uint8_t *L, float *scale,
                        float *neg_min) {
  (void)nmax, (void)x, (void)w, (void)L, (void)scale, (void)neg_min;
  return false;
}
#define CZ_K_AVX2_ENC(tn) NULL
#define CZ_K_AVX2_ENCW(tn) NULL
static bool have_avx512(void) { return false; }
#define CZ_Q6K_AVX512_ENC NULL
#define CZ_Q6K_AVX512_ENCW NULL
static bool q6_K_dec_fast(const void *src, float *dst, int64_t n) {
  (void)src, (void)dst, (void)n;
  return false;
}
#endif
/* The types without a vector decoder. */
static bool no_dec_fast(const void *src, float *dst, int64_t n) {
  (void)src, (void)dst, (void)n;
  return false;
}

/* ---- row entry points ---------------------------------------------------------------------- */

typedef void (*k_encode_fn)(const float *x, void *y);
typedef void (*k_encode_weighted_fn)(const float *x, const float *qw, void *y);

/* Room for one block of any K type, aligned for its fp16 fields. */
typedef union {
  q2k_block q2;
  q3k_block q3;
  q4k_block q4;
  q5k_block q5;
  q6k_block q6;
} k_any_block;

/* nrows rows through one pair of encoders. Blocks go through an aligned local copy: quantized
 * bytes in a file buffer need not be 2-byte aligned. Without an imatrix ggml runs the
 * reference over all rows (blocks are independent, so row by row is the same); with one, the
 * weighted encoder per block, the imatrix indexed by the column. */
static size_t k_quantize_rows(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                              const float *imatrix, size_t blk, k_encode_fn enc,
                              k_encode_weighted_fn enc_weighted) {
  k_any_block b;
  const size_t row = (size_t)(n_per_row / QK) * blk;
  unsigned char *d = dst;
  for (int64_t r = 0; r < nrows; r++) {
    const float *x = src + r * n_per_row;
    unsigned char *out = d + (size_t)r * row;
    for (int64_t i = 0; i < n_per_row / QK; i++) {
      if (imatrix == NULL)
        enc(x + i * QK, &b);
      else
        enc_weighted(x + i * QK, imatrix + i * QK, &b);
      memcpy(out + (size_t)i * blk, &b, blk);
    }
  }
  return (size_t)nrows * row;
}

/* q6_K's AVX-512 twin (cz_quants.h): false, writing nothing, without AVX-512F. */
bool cz_q6_K_quantize_avx512(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                             const float *imatrix) {
  if (!have_avx512()) return false;
  k_quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(q6k_block), CZ_Q6K_AVX512_ENC,
                  CZ_Q6K_AVX512_ENCW);
  return true;
}

/* The types without an AVX-512 twin. */
static bool no_quantize_avx512(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix) {
  (void)src, (void)dst, (void)nrows, (void)n_per_row, (void)imatrix;
  return false;
}

/* quantize: the AVX-512 twin (q6_K) when the CPU has AVX-512F, else the AVX2 twin when it has
 * AVX2, else the scalar encoders. */
#define CZ_K_ROW_FUNCS(tn, blk, enc, enc_weighted, dec, dec_fast, q512)                      \
  static void tn##_enc(const float *x, void *y) { enc(x, (blk *)y); }                         \
  static void tn##_encw(const float *x, const float *qw, void *y) {                          \
    enc_weighted(x, qw, (blk *)y);                                                           \
  }                                                                                          \
  void cz_##tn##_to_f32_scalar(const void *src, float *dst, int64_t n) {                     \
    const unsigned char *s = src;                                                            \
    for (int64_t i = 0; i < n / QK; i++) {                                                   \
      blk b;                                                                                 \
      memcpy(&b, s + i * (int64_t)sizeof b, sizeof b);                                       \
      dec(&b, dst + i * QK);                                                                 \
    }                                                                                        \
  }                                                                                          \
  void cz_##tn##_to_f32(const void *src, float *dst, int64_t n) {                            \
    if (!dec_fast(src, dst, n)) cz_##tn##_to_f32_scalar(src, dst, n);                        \
  }                                                                                          \
  void cz_##tn##_from_f32(const float *src, void *dst, int64_t n) {                          \
    unsigned char *d = dst;                                                                  \
    for (int64_t i = 0; i < n / QK; i++) {                                                   \
      blk b;                                                                                 \
      enc(src + i * QK, &b);                                                                 \
      memcpy(d + i * (int64_t)sizeof b, &b, sizeof b);                                       \
    }                                                                                        \
  }                                                                                          \
  size_t cz_##tn##_quantize_scalar(const float *src, void *dst, int64_t nrows,               \
                                   int64_t n_per_row, const float *imatrix) {                \
    return k_quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk), tn##_enc,       \
                           tn##_encw);                                                       \
  }                                                                                          \
  bool cz_##tn##_quantize_avx2(const float *src, void *dst, int64_t nrows,                   \
                               int64_t n_per_row, const float *imatrix) {                    \
    if (!have_avx2()) return false;                                                          \
    k_quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk), CZ_K_AVX2_ENC(tn),     \
                    CZ_K_AVX2_ENCW(tn));                                                     \
    return true;                                                                             \
  }                                                                                          \
  size_t cz_##tn##_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,   \
                            const float *imatrix) {                                          \
    if (q512(src, dst, nrows, n_per_row, imatrix) ||                                         \
        cz_##tn##_quantize_avx2(src, dst, nrows, n_per_row, imatrix))                        \
      return (size_t)nrows * (size_t)(n_per_row / QK) * sizeof(blk);                         \
    return cz_##tn##_quantize_scalar(src, dst, nrows, n_per_row, imatrix);                   \
  }

CZ_K_ROW_FUNCS(q2_K, q2k_block, q2k_encode, q2k_encode_weighted, q2k_decode, no_dec_fast,
               no_quantize_avx512)
CZ_K_ROW_FUNCS(q3_K, q3k_block, q3k_encode, q3k_encode_weighted, q3k_decode, no_dec_fast,
               no_quantize_avx512)
CZ_K_ROW_FUNCS(q4_K, q4k_block, q4k_encode, q4k_encode_weighted, q4k_decode, no_dec_fast,
               no_quantize_avx512)
CZ_K_ROW_FUNCS(q5_K, q5k_block, q5k_encode, q5k_encode_weighted, q5k_decode, no_dec_fast,
               no_quantize_avx512)
CZ_K_ROW_FUNCS(q6_K, q6k_block, q6k_encode, q6k_encode_weighted, q6k_decode, q6_K_dec_fast,
               cz_q6_K_quantize_avx512)

#undef CZ_K_ROW_FUNCS
