/* cz_quants_legacy: ggml's 32-element "legacy" block types q4_0, q4_1, q5_0, q5_1.
 *
 * Algorithms as described in quant-formats.md 1.5 (reference quantizers) and 1.6 (the
 * importance-weighted ones), reproducing ggml's bytes: every floating-point expression below
 * is evaluated in the same order and with the same operand types as ggml's, the rounding
 * primitives are the ones ggml uses at each place (a truncating cast after adding 0.5 in the
 * reference quantizers, cz_nearest_int in the weighted searches), and the file is compiled
 * with -ffp-contract=off. Reordering a sum or merging a multiply and an add changes bytes.
 *
 * Layout of a block (all little-endian, no padding):
 *   q4_0: half d;          u8 qs[16]            element j < 16 in the low nibble of qs[j],
 *   q4_1: half d; half m;  u8 qs[16]            element j + 16 in its high nibble;
 *   q5_0: half d;          u8 qh[4]; u8 qs[16]  q5 keeps bit 4 of element j in bit j of the
 *   q5_1: half d; half m;  u8 qh[4]; u8 qs[16]  little-endian u32 qh, low 4 bits as in q4.
 *
 * Blocks are assembled in aligned locals and copied out with memcpy, so destinations and
 * sources may sit at any alignment inside a file buffer.
 */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "cz_quants.h"
#include "cz_type.h"

#define QK 32 /* elements per block, all four types */

typedef struct {
  uint16_t d;
  uint8_t qs[QK / 2];
} blk_q4_0;

typedef struct {
  uint16_t d, m;
  uint8_t qs[QK / 2];
} blk_q4_1;

typedef struct {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[QK / 2];
} blk_q5_0;

typedef struct {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[QK / 2];
} blk_q5_1;

_Static_assert(sizeof(blk_q4_0) == 18, "q4_0 block is 18 bytes");
_Static_assert(sizeof(blk_q4_1) == 20, "q4_1 block is 20 bytes");
_Static_assert(sizeof(blk_q5_0) == 22, "q5_0 block is 22 bytes");
_Static_assert(sizeof(blk_q5_1) == 24, "q5_1 block is 24 bytes");

/* ---- shared pieces ------------------------------------------------------------------------ */

/* The value of largest magnitude, keeping its sign; the first one wins a tie (strict <). */
static float signed_absmax(const float *x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; j++) {
    if (amax < fabsf(x[j])) {
      amax = fabsf(x[j]);
      max = x[j];
    }
  }
  return max;
}

/* Smallest and largest value, starting from +-FLT_MAX as ggml does. */
static void min_max(const float *x, int n, float *lo, float *hi) {
  float mn = FLT_MAX, mx = -FLT_MAX;
  for (int j = 0; j < n; j++) {
    if (x[j] < mn) mn = x[j];
    if (x[j] > mx) mx = x[j];
  }
  *lo = mn;
  *hi = mx;
}

/* Five-bit codes: low nibbles paired as in q4, bit 4 of element j into bit j of qh. */
static void pack5(const uint8_t q[QK], uint8_t qs[QK / 2], uint8_t qh_bytes[4]) {
  uint32_t qh = 0;
  for (int j = 0; j < QK / 2; j++) {
    const uint8_t lo = q[j], hi = q[j + QK / 2];
    qs[j] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
    qh |= ((lo & 0x10u) >> 4) << j;
    qh |= ((hi & 0x10u) >> 4) << (j + QK / 2);
  }
  memcpy(qh_bytes, &qh, 4);
}

static void unpack5(const uint8_t qs[QK / 2], const uint8_t qh_bytes[4], int q[QK]) {
  uint32_t qh;
  memcpy(&qh, qh_bytes, 4);
  for (int j = 0; j < QK / 2; j++) {
    q[j] = (qs[j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
    q[j + QK / 2] = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
  }
}

static void pack4(const uint8_t q[QK], uint8_t qs[QK / 2]) {
  for (int j = 0; j < QK / 2; j++) qs[j] = (uint8_t)(q[j] | (q[j + QK / 2] << 4));
}

/* sigma2 of the weighted quantizers: the mean square of the whole row. */
static float row_mean_square(const float *x, int64_t n) {
  float s = 0;
  for (int64_t j = 0; j < n; j++) s += x[j] * x[j];
  return s / n;
}

/* Per-element weights of a block: importance * sqrt(sigma2 + x^2). */
static void block_weights(const float *x, const float *imp, float sigma2, float w[QK]) {
  for (int j = 0; j < QK; j++) w[j] = imp[j] * sqrtf(sigma2 + x[j] * x[j]);
}

/* ggml's make_qx_quants with explicit weights (the only form the legacy types use): a
 * symmetric scale searched over 19 candidate inverse scales around -nmax/max, each scored by
 * the weighted least-squares fit sum(w x l)^2 / sum(w l^2). Codes l + nmax in [0, 2 nmax)
 * go to q; returns the signed scale. */
static float symmetric_fit(int n, int nmax, const float *x, const float *w, uint8_t *q) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; i++) {
    const float ax = fabsf(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) { /* ggml's GROUP_MAX_EPS: an all-zero group */
    memset(q, 0, (size_t)n);
    return 0.f;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; i++) {
    int l = cz_nearest_int(iscale * x[i]);
    l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
    q[i] = (uint8_t)(l + nmax);
    sumlx += w[i] * x[i] * l;
    suml2 += w[i] * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; is++) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; i++) {
      int l = cz_nearest_int(iscale * x[i]);
      l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
      sumlx += w[i] * x[i] * l;
      suml2 += w[i] * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; i++) {
        int l = cz_nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        q[i] = (uint8_t)(l + nmax);
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/* ggml's make_qkx3_quants with explicit weights, squared error, rmin -0.9, rdelta 0.05,
 * 36 steps (the settings of the weighted q4_1/q5_1): an affine fit scale * q + min with
 * min <= 0. For each candidate inverse scale the codes are rounded and (scale, min) solved by
 * weighted least squares; the candidate with the least weighted squared error wins. Returns
 * the scale and stores the (non-positive) min in *min_out. */
static float affine_fit(int n, int nmax, const float *x, const float *w, uint8_t *q,
                        float *min_out) {
  const float rmin = -0.9f, rdelta = 0.05f;
  const int nstep = 36;
  uint8_t cand[QK];
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
    memset(q, 0, (size_t)n);
    *min_out = min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_err = 0;
  for (int i = 0; i < n; i++) {
    int l = cz_nearest_int(iscale * (x[i] - min));
    q[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
    float diff = scale * q[i] + min - x[i];
    diff = diff * diff;
    best_err += w[i] * diff;
  }
  for (int is = 0; is <= nstep; is++) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; i++) {
      int l = cz_nearest_int(iscale * (x[i] - min));
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      cand[i] = (uint8_t)l;
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float err = 0;
      for (int i = 0; i < n; i++) {
        float diff = this_scale * cand[i] + this_min - x[i];
        diff = diff * diff;
        err += w[i] * diff;
      }
      if (err < best_err) {
        memcpy(q, cand, (size_t)n);
        best_err = err;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *min_out = min;
  return scale;
}

/* The fits of a weighted row's blocks from block 0 of x on (nleft blocks left): eight at once
 * through the AVX2 twins of the fits (cz_quants_k.c) when simd and eight are left, else one
 * by the scalar code. Codes to L (QK per block), scales to scale, mins (affine) to min.
 * Returns how many blocks were fitted. */
static int fit_blocks(const float *x, const float *imp, float sigma2, int64_t nleft, int nmax,
                      bool affine, bool simd, uint8_t L[8 * QK], float scale[8], float min[8]) {
  float w[8 * QK];
  if (simd && nleft >= 8) {
    for (int g = 0; g < 8; g++) block_weights(x + g * QK, imp + g * QK, sigma2, w + g * QK);
    if (affine) {
      float neg_min[8];
      if (cz_fit_affine32_x8(nmax, x, w, L, scale, neg_min)) {
        for (int g = 0; g < 8; g++) min[g] = -neg_min[g];
        return 8;
      }
    } else if (cz_fit_symmetric32_x8(nmax, x, w, L, scale)) {
      return 8;
    }
  }
  block_weights(x, imp, sigma2, w);
  if (affine)
    scale[0] = affine_fit(QK, nmax, x, w, L, &min[0]);
  else
    scale[0] = symmetric_fit(QK, nmax, x, w, L);
  return 1;
}

/* Rows of the file path: nrows rows of n_per_row elements, one weighted row at a time.
 * Without importance the blocks do not depend on rows: one pass of the reference, or of its
 * AVX2 twin (same bytes) when simd and the CPU has AVX2. */
typedef void (*weighted_row_fn)(const float *x, uint8_t *dst, int64_t n, const float *imp,
                                bool simd);
typedef bool (*fast_ref_fn)(const float *x, void *dst, int64_t n);

static size_t quantize_rows(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                            const float *imatrix, size_t block_bytes, cz_from_f32_fn ref,
                            fast_ref_fn fast, weighted_row_fn weighted, bool simd) {
  const size_t row_bytes = (size_t)(n_per_row / QK) * block_bytes;
  uint8_t *out = dst;
  if (imatrix == NULL) {
    if (!simd || !fast(src, out, nrows * n_per_row)) ref(src, out, nrows * n_per_row);
  } else {
    for (int64_t r = 0; r < nrows; r++)
      weighted(src + r * n_per_row, out + (size_t)r * row_bytes, n_per_row, imatrix, simd);
  }
  return (size_t)nrows * row_bytes;
}

/* ---- q4_0 ---------------------------------------------------------------------------------- */

static void q4_0_block(const float *x, blk_q4_0 *b) {
  const float max = signed_absmax(x, QK);
  const float d = max / -8;
  const float id = d ? 1.0f / d : 0.0f;
  uint8_t q[QK];
  b->d = cz_fp32_to_fp16(d);
  for (int j = 0; j < QK; j++) {
    const int8_t v = (int8_t)(x[j] * id + 8.5f); /* >= 0: truncation rounds half up */
    q[j] = (uint8_t)(v < 15 ? v : 15);
  }
  pack4(q, b->qs);
}

void cz_q4_0_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / QK; i++) {
    blk_q4_0 b;
    q4_0_block(src + i * QK, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

static void q4_0_weighted_row(const float *x, uint8_t *dst, int64_t n, const float *imp,
                             bool simd) {
  const float sigma2 = row_mean_square(x, n);
  const int64_t nb = n / QK;
  for (int64_t i = 0; i < nb;) {
    uint8_t L[8 * QK];
    float scale[8], min[8];
    const int k = fit_blocks(x + i * QK, imp + i * QK, sigma2, nb - i, 8, false, simd, L, scale,
                             min);
    for (int g = 0; g < k; g++, i++) {
      blk_q4_0 b;
      b.d = cz_fp32_to_fp16(scale[g]);
      pack4(L + g * QK, b.qs);
      memcpy(dst + i * (int64_t)sizeof b, &b, sizeof b);
    }
  }
}

size_t cz_q4_0_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix) {
  return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q4_0), cz_q4_0_from_f32,
                       cz_q4_0_from_f32_avx2, q4_0_weighted_row, false);
}

bool cz_q4_0_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix) {
  if (!cz_q4_0_from_f32_avx2(src, dst, 0)) return false; /* n = 0: asks only whether the CPU has AVX2 */
  quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q4_0), cz_q4_0_from_f32,
                cz_q4_0_from_f32_avx2, q4_0_weighted_row, true);
  return true;
}

size_t cz_q4_0_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix) {
  return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q4_0), cz_q4_0_from_f32,
                       cz_q4_0_from_f32_avx2, q4_0_weighted_row, true);
}

void cz_q4_0_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *in = src;
  for (int64_t i = 0; i < n / QK; i++) {
    blk_q4_0 b;
    memcpy(&b, in + i * (int64_t)sizeof b, sizeof b);
    const float d = cz_fp16_to_fp32(b.d);
    float *y = dst + i * QK;
    for (int j = 0; j < QK / 2; j++) {
      y[j] = ((b.qs[j] & 0x0F) - 8) * d;
      y[j + QK / 2] = ((b.qs[j] >> 4) - 8) * d;
    }
  }
}

/* ---- q4_1 ---------------------------------------------------------------------------------- */

static void q4_1_block(const float *x, blk_q4_1 *b) {
  float min, max;
  min_max(x, QK, &min, &max);
  const float d = (max - min) / 15;
  const float id = d ? 1.0f / d : 0.0f;
  uint8_t q[QK];
  b->d = cz_fp32_to_fp16(d);
  b->m = cz_fp32_to_fp16(min);
  for (int j = 0; j < QK; j++) {
    const int8_t v = (int8_t)((x[j] - min) * id + 0.5f);
    q[j] = (uint8_t)(v < 15 ? v : 15);
  }
  pack4(q, b->qs);
}

void cz_q4_1_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / QK; i++) {
    blk_q4_1 b;
    q4_1_block(src + i * QK, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

static void q4_1_weighted_row(const float *x, uint8_t *dst, int64_t n, const float *imp,
                             bool simd) {
  const float sigma2 = row_mean_square(x, n);
  const int64_t nb = n / QK;
  for (int64_t i = 0; i < nb;) {
    uint8_t L[8 * QK];
    float scale[8], min[8];
    const int k = fit_blocks(x + i * QK, imp + i * QK, sigma2, nb - i, 15, true, simd, L, scale,
                             min);
    for (int g = 0; g < k; g++, i++) {
      blk_q4_1 b;
      b.d = cz_fp32_to_fp16(scale[g]);
      b.m = cz_fp32_to_fp16(min[g]);
      pack4(L + g * QK, b.qs);
      memcpy(dst + i * (int64_t)sizeof b, &b, sizeof b);
    }
  }
}

size_t cz_q4_1_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix) {
  return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q4_1), cz_q4_1_from_f32,
                       cz_q4_1_from_f32_avx2, q4_1_weighted_row, false);
}

bool cz_q4_1_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix) {
  if (!cz_q4_1_from_f32_avx2(src, dst, 0)) return false; /* n = 0: asks only whether the CPU has AVX2 */
  quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q4_1), cz_q4_1_from_f32,
                cz_q4_1_from_f32_avx2, q4_1_weighted_row, true);
  return true;
}

size_t cz_q4_1_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix) {
  return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q4_1), cz_q4_1_from_f32,
                       cz_q4_1_from_f32_avx2, q4_1_weighted_row, true);
}

void cz_q4_1_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *in = src;
  for (int64_t i = 0; i < n / QK; i++) {
    blk_q4_1 b;
    memcpy(&b, in + i * (int64_t)sizeof b, sizeof b);
    const float d = cz_fp16_to_fp32(b.d), m = cz_fp16_to_fp32(b.m);
    float *y = dst + i * QK;
    for (int j = 0; j < QK / 2; j++) {
      y[j] = (b.qs[j] & 0x0F) * d + m;
      y[j + QK / 2] = (b.qs[j] >> 4) * d + m;
    }
  }
}

/* ---- q5_0 ---------------------------------------------------------------------------------- */

static void q5_0_block(const float *x, blk_q5_0 *b) {
  const float max = signed_absmax(x, QK);
  const float d = max / -16;
  const float id = d ? 1.0f / d : 0.0f;
  uint8_t q[QK];
  b->d = cz_fp32_to_fp16(d);
  for (int j = 0; j < QK; j++) {
    const int8_t v = (int8_t)(x[j] * id + 16.5f);
    q[j] = (uint8_t)(v < 31 ? v : 31);
  }
  pack5(q, b->qs, b->qh);
}

void cz_q5_0_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / QK; i++) {
    blk_q5_0 b;
    q5_0_block(src + i * QK, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

static void q5_0_weighted_row(const float *x, uint8_t *dst, int64_t n, const float *imp,
                             bool simd) {
  const float sigma2 = row_mean_square(x, n);
  const int64_t nb = n / QK;
  for (int64_t i = 0; i < nb;) {
    uint8_t L[8 * QK];
    float scale[8], min[8];
    const int k = fit_blocks(x + i * QK, imp + i * QK, sigma2, nb - i, 16, false, simd, L, scale,
                             min);
    for (int g = 0; g < k; g++, i++) {
      blk_q5_0 b;
      b.d = cz_fp32_to_fp16(scale[g]);
      pack5(L + g * QK, b.qs, b.qh);
      memcpy(dst + i * (int64_t)sizeof b, &b, sizeof b);
    }
  }
}

size_t cz_q5_0_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix) {
  return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q5_0), cz_q5_0_from_f32,
                       cz_q5_0_from_f32_avx2, q5_0_weighted_row, false);
}

bool cz_q5_0_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix) {
  if (!cz_q5_0_from_f32_avx2(src, dst, 0)) return false; /* n = 0: asks only whether the CPU has AVX2 */
  quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q5_0), cz_q5_0_from_f32,
                cz_q5_0_from_f32_avx2, q5_0_weighted_row, true);
  return true;
}

size_t cz_q5_0_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix) {
  return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q5_0), cz_q5_0_from_f32,
                       cz_q5_0_from_f32_avx2, q5_0_weighted_row, true);
}

void cz_q5_0_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *in = src;
  for (int64_t i = 0; i < n / QK; i++) {
    blk_q5_0 b;
    int q[QK];
    memcpy(&b, in + i * (int64_t)sizeof b, sizeof b);
    unpack5(b.qs, b.qh, q);
    const float d = cz_fp16_to_fp32(b.d);
    float *y = dst + i * QK;
    for (int j = 0; j < QK; j++) y[j] = (q[j] - 16) * d;
  }
}

/* ---- q5_1 ---------------------------------------------------------------------------------- */

static void q5_1_block(const float *x, blk_q5_1 *b) {
  float min, max;
  min_max(x, QK, &min, &max);
  const float d = (max - min) / 31;
  const float id = d ? 1.0f / d : 0.0f;
  uint8_t q[QK];
  b->d = cz_fp32_to_fp16(d);
  b->m = cz_fp32_to_fp16(min);
  for (int j = 0; j < QK; j++) q[j] = (uint8_t)((x[j] - min) * id + 0.5f); /* no clamp */
  pack5(q, b->qs, b->qh);
}

void cz_q5_1_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / QK; i++) {
    blk_q5_1 b;
    q5_1_block(src + i * QK, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

static void q5_1_weighted_row(const float *x, uint8_t *dst, int64_t n, const float *imp,
                             bool simd) {
  const float sigma2 = row_mean_square(x, n);
  const int64_t nb = n / QK;
  for (int64_t i = 0; i < nb;) {
    uint8_t L[8 * QK];
    float scale[8], min[8];
    const int k = fit_blocks(x + i * QK, imp + i * QK, sigma2, nb - i, 31, true, simd, L, scale,
                             min);
    for (int g = 0; g < k; g++, i++) {
      blk_q5_1 b;
      b.d = cz_fp32_to_fp16(scale[g]);
      b.m = cz_fp32_to_fp16(min[g]);
      pack5(L + g * QK, b.qs, b.qh);
      memcpy(dst + i * (int64_t)sizeof b, &b, sizeof b);
    }
  }
}

size_t cz_q5_1_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix) {
  return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q5_1), cz_q5_1_from_f32,
                       cz_q5_1_from_f32_avx2, q5_1_weighted_row, false);
}

bool cz_q5_1_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix) {
  if (!cz_q5_1_from_f32_avx2(src, dst, 0)) return false; /* n = 0: asks only whether the CPU has AVX2 */
  quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q5_1), cz_q5_1_from_f32,
                cz_q5_1_from_f32_avx2, q5_1_weighted_row, true);
  return true;
}

size_t cz_q5_1_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix) {
  return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_q5_1), cz_q5_1_from_f32,
                       cz_q5_1_from_f32_avx2, q5_1_weighted_row, true);
}

void cz_q5_1_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *in = src;
  for (int64_t i = 0; i < n / QK; i++) {
    blk_q5_1 b;
    int q[QK];
    memcpy(&b, in + i * (int64_t)sizeof b, sizeof b);
    unpack5(b.qs, b.qh, q);
    const float d = cz_fp16_to_fp32(b.d), m = cz_fp16_to_fp32(b.m);
    float *y = dst + i * QK;
    for (int j = 0; j < QK; j++) y[j] = q[j] * d + m;
  }
}

/* ---- AVX2 twins of the four reference quantizers ------------------------------------------ */

/* Same bytes as the scalar references for finite input (the pipeline rejects anything else),
 * eight elements of a block at a time. Every per-element expression is the scalar one, lane by
 * lane, without fused multiply-adds (target avx2 only, no fma; -ffp-contract=off anyway), and
 * the conversions truncate as the scalar casts do. The only reductions are a block's extremes:
 * max and min are exact in any order, and the scalar scans keep the first element that
 * attains them (strict comparisons), which matters for the sign of the signed maximum of
 * q4_0/q5_0 and for -0.0 versus +0.0; so the vector code finds the extreme value, then the
 * first element equal to it, and takes that element's own bits. The scale, its inverse and
 * the fp16 conversions are the scalar code's. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define CZ_AVX2 __attribute__((target("avx2")))

CZ_AVX2 static inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

CZ_AVX2 static inline float hmin8(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

/* Index of the first of the 32 lanes where v[k] == t (one must exist). */
CZ_AVX2 static inline int first_equal(const __m256 v[4], float t) {
  const __m256 tv = _mm256_set1_ps(t);
  uint32_t mask = 0;
  for (int k = 0; k < 4; k++)
    mask |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v[k], tv, _CMP_EQ_OQ)) << (8 * k);
  return __builtin_ctz(mask);
}

/* The scalar signed_absmax: +0.0 when every |x| is 0, else the first x of largest |x|. */
CZ_AVX2 static inline float signed_absmax8(const float *x, const __m256 v[4]) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 a[4];
  for (int k = 0; k < 4; k++) a[k] = _mm256_andnot_ps(sign, v[k]);
  const float amax = hmax8(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
  return amax > 0.0f ? x[first_equal(a, amax)] : 0.0f;
}

/* The scalar min_max: the first element equal to the minimum, and to the maximum. Equal
 * nonzero floats have equal bits, so only a zero extreme needs the search (its sign). */
CZ_AVX2 static inline void min_max8(const float *x, const __m256 v[4], float *lo, float *hi) {
  const float mn = hmin8(_mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3])));
  const float mx = hmax8(_mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3])));
  *lo = mn != 0.0f ? mn : x[first_equal(v, mn)];
  *hi = mx != 0.0f ? mx : x[first_equal(v, mx)];
}

/* (int)trunc((v - sub) * id + add) for the 32 elements, as bytes in element order (every code
 * fits a byte; packs saturate, which never triggers). q4_0/q5_0 pass sub = +0.0: x - 0.0 is
 * x bit for bit, so that is the scalar x * id. */
CZ_AVX2 static inline __m256i codes8(const __m256 v[4], float sub, float id, float add,
                                     int clamp) {
  const __m256 s = _mm256_set1_ps(sub), m = _mm256_set1_ps(id), a = _mm256_set1_ps(add);
  __m256i c[4];
  for (int k = 0; k < 4; k++) {
    c[k] = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v[k], s), m), a));
    if (clamp) c[k] = _mm256_min_epi32(c[k], _mm256_set1_epi32(clamp));
  }
  const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* qs[j] = low 4 bits of code j | low 4 bits of code j + 16 << 4. */
CZ_AVX2 static inline void store_nibbles(__m256i q, uint8_t qs[QK / 2]) {
  const __m128i m = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(_mm256_castsi256_si128(q), m);
  const __m128i hi = _mm_and_si128(_mm256_extracti128_si256(q, 1), m);
  _mm_storeu_si128((__m128i *)qs, _mm_or_si128(lo, _mm_slli_epi16(hi, 4)));
}

/* Bit 4 of code j into bit j (movemask reads bit 7 of each byte after a shift by 3). */
CZ_AVX2 static inline void store_high_bits(__m256i q, uint8_t qh[4]) {
  const uint32_t bits = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(q, 3));
  memcpy(qh, &bits, 4);
}

CZ_AVX2 static inline void load8(const float *x, __m256 v[4]) {
  for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
}

static bool have_avx2(void) { return __builtin_cpu_supports("avx2"); }

CZ_AVX2 static void q4_0_avx2(const float *src, uint8_t *out, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    const float *x = src + i * QK;
    __m256 v[4];
    blk_q4_0 b;
    load8(x, v);
    const float d = signed_absmax8(x, v) / -8;
    const float id = d ? 1.0f / d : 0.0f;
    b.d = cz_fp32_to_fp16(d);
    store_nibbles(codes8(v, 0.0f, id, 8.5f, 15), b.qs);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

CZ_AVX2 static void q4_1_avx2(const float *src, uint8_t *out, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    const float *x = src + i * QK;
    __m256 v[4];
    blk_q4_1 b;
    float min, max;
    load8(x, v);
    min_max8(x, v, &min, &max);
    const float d = (max - min) / 15;
    const float id = d ? 1.0f / d : 0.0f;
    b.d = cz_fp32_to_fp16(d);
    b.m = cz_fp32_to_fp16(min);
    store_nibbles(codes8(v, min, id, 0.5f, 15), b.qs);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

CZ_AVX2 static void q5_0_avx2(const float *src, uint8_t *out, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    const float *x = src + i * QK;
    __m256 v[4];
    blk_q5_0 b;
    load8(x, v);
    const float d = signed_absmax8(x, v) / -16;
    const float id = d ? 1.0f / d : 0.0f;
    b.d = cz_fp32_to_fp16(d);
    const __m256i q = codes8(v, 0.0f, id, 16.5f, 31);
    store_nibbles(q, b.qs);
    store_high_bits(q, b.qh);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

CZ_AVX2 static void q5_1_avx2(const float *src, uint8_t *out, int64_t nb) {
  for (int64_t i = 0; i < nb; i++) {
    const float *x = src + i * QK;
    __m256 v[4];
    blk_q5_1 b;
    float min, max;
    load8(x, v);
    min_max8(x, v, &min, &max);
    const float d = (max - min) / 31;
    const float id = d ? 1.0f / d : 0.0f;
    b.d = cz_fp32_to_fp16(d);
    b.m = cz_fp32_to_fp16(min);
    const __m256i q = codes8(v, min, id, 0.5f, 0); /* no clamp, as the scalar */
    store_nibbles(q, b.qs);
    store_high_bits(q, b.qh);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

#define CZ_AVX2_ENTRY(t)                                                    \
  bool cz_##t##_from_f32_avx2(const float *src, void *dst, int64_t n) {     \
    if (!have_avx2()) return false;                                         \
    t##_avx2(src, dst, n / QK);                                             \
    return true;                                                            \
  }
#else
#define CZ_AVX2_ENTRY(t)                                                    \
  bool cz_##t##_from_f32_avx2(const float *src, void *dst, int64_t n) {     \
    (void)src;                                                              \
    (void)dst;                                                              \
    (void)n;                                                                \
    return false;                                                           \
  }
#endif

CZ_AVX2_ENTRY(q4_0)
CZ_AVX2_ENTRY(q4_1)
CZ_AVX2_ENTRY(q5_0)
CZ_AVX2_ENTRY(q5_1)
