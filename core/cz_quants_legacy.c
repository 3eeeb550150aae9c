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

#include "cz_cpu.h"
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

void cz_q4_0_to_f32_scalar(const void *src, float *dst, int64_t n) {
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

void cz_q4_1_to_f32_scalar(const void *src, float *dst, int64_t n) {
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

void cz_q5_0_to_f32_scalar(const void *src, float *dst, int64_t n) {
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

void cz_q5_1_to_f32_scalar(const void *src, float *dst, int64_t n) {
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

/* ---- the file path's entry points --------------------------------------------------------- */

/* The file path of the four types in its three entry points (cz_quants.h): _scalar never takes
 * an AVX2 twin, _avx2 (false, writing nothing, without AVX2) always does, the table's quantize
 * takes them where the CPU has them. */
#define CZ_LEGACY_ROW_FUNCS(tn)                                                                   \
  size_t cz_##tn##_quantize_scalar(const float *src, void *dst, int64_t nrows,                   \
                                   int64_t n_per_row, const float *imatrix) {                    \
    return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_##tn),                  \
                         cz_##tn##_from_f32, cz_##tn##_from_f32_avx2, tn##_weighted_row, false); \
  }                                                                                              \
  bool cz_##tn##_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,    \
                               const float *imatrix) {                                           \
    if (!cz_##tn##_from_f32_avx2(src, dst, 0)) return false; /* n = 0: is there AVX2? */        \
    quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_##tn), cz_##tn##_from_f32,     \
                  cz_##tn##_from_f32_avx2, tn##_weighted_row, true);                             \
    return true;                                                                                 \
  }                                                                                              \
  size_t cz_##tn##_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,       \
                            const float *imatrix) {                                              \
    return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(blk_##tn),                  \
                         cz_##tn##_from_f32, cz_##tn##_from_f32_avx2, tn##_weighted_row, true);  \
  }

CZ_LEGACY_ROW_FUNCS(q4_0)
CZ_LEGACY_ROW_FUNCS(q4_1)
CZ_LEGACY_ROW_FUNCS(q5_0)
CZ_LEGACY_ROW_FUNCS(q5_1)
#undef CZ_LEGACY_ROW_FUNCS

/* ---- AVX2 twins: the reference quantizers (and q8_0's), and the dequantizers ---------------- */

/* Same bytes (and floats) as the scalar code for finite input (the pipeline rejects anything
 * else), eight blocks per iteration, each block spread over four vectors of eight floats.
 * Every per-element expression is the scalar one, lane by lane, without fused multiply-adds
 * (target avx2 and f16c only, no fma; -ffp-contract=off anyway), and the conversions
 * truncate as the scalar casts do. The only reductions are a block's extremes: max and min
 * are exact in any order, and the scalar scans keep the first element that attains them
 * (strict comparisons), which matters for the sign of the signed maximum of q4_0/q5_0 and
 * for -0.0 versus +0.0 in the min and max of q4_1/q5_1; so the vector code reduces first and
 * looks for the first element equal to the extreme only where the extreme alone does not
 * decide (a zero, or a maximum |x| of both signs). The eight blocks' extremes are
 * reduced into one vector (lane b = block b), so the scales, their inverses (vdivps is
 * correctly rounded, as the scalar divisions) and their fp16 (vcvtps2ph rounds to nearest
 * even, as cz_fp32_to_fp16, for every non-NaN float: checked over all 2^32 bit patterns) take
 * one instruction for the eight. A row whose block count is not a multiple of eight ends with
 * one padded group in a local buffer. The dequantizers read each scale with vcvtph2ps, exact
 * as cz_fp16_to_fp32 for every half but NaN (it quiets a signaling one): blocks with a NaN
 * scale or min go through the scalar code. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define CZ_AVX2 __attribute__((target("avx2,f16c")))
#define CZ_AVX2_INLINE CZ_AVX2 static inline __attribute__((always_inline))
#define CZ_UNROLL _Pragma("GCC unroll 8")

enum { GROUP = 8 }; /* blocks per iteration: one lane of the scale vectors each */

/* Every AVX2 CPU has F16C; a virtual machine that hides it gets the scalar code. */
static bool have_avx2(void) { return __builtin_cpu_supports("avx2") && cz_cpu_has_f16c(); }

/* Lane b of the result: the largest (smallest) of the eight lanes of m[b]. */
CZ_AVX2_INLINE __m256 reduce_max8(const __m256 m[GROUP]) {
  __m256 a[4], c[2];
  CZ_UNROLL for (int i = 0; i < 4; i++)
    a[i] = _mm256_max_ps(_mm256_unpacklo_ps(m[2 * i], m[2 * i + 1]),
                         _mm256_unpackhi_ps(m[2 * i], m[2 * i + 1]));
  CZ_UNROLL for (int i = 0; i < 2; i++)
    c[i] = _mm256_max_ps(_mm256_shuffle_ps(a[2 * i], a[2 * i + 1], 0x44),
                         _mm256_shuffle_ps(a[2 * i], a[2 * i + 1], 0xEE));
  return _mm256_max_ps(_mm256_permute2f128_ps(c[0], c[1], 0x20),
                       _mm256_permute2f128_ps(c[0], c[1], 0x31));
}

CZ_AVX2_INLINE __m256 reduce_min8(const __m256 m[GROUP]) {
  __m256 a[4], c[2];
  CZ_UNROLL for (int i = 0; i < 4; i++)
    a[i] = _mm256_min_ps(_mm256_unpacklo_ps(m[2 * i], m[2 * i + 1]),
                         _mm256_unpackhi_ps(m[2 * i], m[2 * i + 1]));
  CZ_UNROLL for (int i = 0; i < 2; i++)
    c[i] = _mm256_min_ps(_mm256_shuffle_ps(a[2 * i], a[2 * i + 1], 0x44),
                         _mm256_shuffle_ps(a[2 * i], a[2 * i + 1], 0xEE));
  return _mm256_min_ps(_mm256_permute2f128_ps(c[0], c[1], 0x20),
                       _mm256_permute2f128_ps(c[0], c[1], 0x31));
}

/* Lane b of v in all eight lanes. */
CZ_AVX2_INLINE __m256 lane(__m256 v, int b) {
  return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(b));
}

/* Per block b: max over its 32 elements of |x|. */
CZ_AVX2_INLINE void block_absmax(const float *x, __m256 m[GROUP]) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  CZ_UNROLL for (int b = 0; b < GROUP; b++) {
    const float *y = x + QK * b;
    m[b] = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(y)),
                                       _mm256_andnot_ps(sign, _mm256_loadu_ps(y + 8))),
                         _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(y + 16)),
                                       _mm256_andnot_ps(sign, _mm256_loadu_ps(y + 24))));
  }
}

/* d ? 1 / d : 0, lane by lane (+0.0 for a zero of either sign, as the scalar). */
CZ_AVX2_INLINE __m256 inverse(__m256 d) {
  return _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d),
                       _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ));
}

/* The first of the 32 elements equal to t (the scalar scans' choice between -0.0 and +0.0). */
static float first_equal(const float *y, float t) {
  for (int j = 0; j < QK; j++)
    if (y[j] == t) return y[j];
  return t;
}

/* Four vectors of int32 codes to 32 bytes in element order (signed saturation; codes that
 * matter fit a byte, and 0x80000000 from a NaN or infinite product becomes 0x80, whose low
 * five bits are those of the scalar cast's 0). */
CZ_AVX2_INLINE __m256i pack_codes(const __m256i c[4]) {
  const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* qs[j] = low 4 bits of code j | low 4 bits of code j + 16 << 4. */
CZ_AVX2_INLINE void store_nibbles(__m256i q, uint8_t *qs) {
  const __m128i m = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(_mm256_castsi256_si128(q), m);
  const __m128i hi = _mm_and_si128(_mm256_extracti128_si256(q, 1), m);
  _mm_storeu_si128((__m128i *)qs, _mm_or_si128(lo, _mm_slli_epi16(hi, 4)));
}

/* Bit 4 of code j into bit j (movemask reads bit 7 of each byte after a shift by 3). */
CZ_AVX2_INLINE void store_high_bits(__m256i q, uint8_t *qh) {
  const uint32_t bits = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(q, 3));
  memcpy(qh, &bits, 4);
}

/* Per block b: the smallest and the largest of its 32 elements. */
CZ_AVX2_INLINE void block_min_max(const float *x, __m256 lo[GROUP], __m256 hi[GROUP]) {
  CZ_UNROLL for (int b = 0; b < GROUP; b++) {
    const float *y = x + QK * b;
    const __m256 v0 = _mm256_loadu_ps(y), v1 = _mm256_loadu_ps(y + 8);
    const __m256 v2 = _mm256_loadu_ps(y + 16), v3 = _mm256_loadu_ps(y + 24);
    lo[b] = _mm256_min_ps(_mm256_min_ps(v0, v1), _mm256_min_ps(v2, v3));
    hi[b] = _mm256_max_ps(_mm256_max_ps(v0, v1), _mm256_max_ps(v2, v3));
  }
}

/* The scalar signed_absmax of a block whose max and -min are equal: +0.0 when they are zero
 * (the strict < never fires), else the first element of largest |x|. */
static float tied_absmax(const float *y, float amax) {
  if (amax == 0.0f) return 0.0f;
  for (int j = 0; j < QK; j++)
    if (fabsf(y[j]) == amax) return y[j];
  return amax;
}

/* q4_0 (nmax 8) and q5_0 (nmax 16): GROUP blocks of x to out, bytes blocks apart. d = max /
 * -nmax with max the first element of largest |x|: the block's max when it exceeds -min, its
 * min when -min exceeds the max (equal nonzero floats have equal bits, so either is that
 * element), and when they tie (opposite signs, or a block of zeros) the scalar's choice;
 * codes (int)(x * id + nmax + 0.5) clamped to 2 nmax - 1. */
CZ_AVX2_INLINE void symmetric_group(const float *x, uint8_t *out, size_t bytes, int nmax) {
  __m256 lo[GROUP], hi[GROUP];
  block_min_max(x, lo, hi);
  const __m256 mn = reduce_min8(lo), mx = reduce_max8(hi);
  const __m256 neg_mn = _mm256_xor_ps(mn, _mm256_set1_ps(-0.0f));
  __m256 max = _mm256_blendv_ps(mn, mx, _mm256_cmp_ps(mx, neg_mn, _CMP_GT_OQ));
  const int ties = _mm256_movemask_ps(_mm256_cmp_ps(mx, neg_mn, _CMP_EQ_OQ));
  if (ties) {
    float fmax[GROUP], fmx[GROUP];
    _mm256_storeu_ps(fmax, max);
    _mm256_storeu_ps(fmx, mx);
    for (int b = 0; b < GROUP; b++)
      if ((ties >> b) & 1) fmax[b] = tied_absmax(x + QK * b, fabsf(fmx[b]));
    max = _mm256_loadu_ps(fmax);
  }
  const __m256 d = _mm256_div_ps(max, _mm256_set1_ps((float)-nmax));
  const __m256 id = inverse(d);
  uint16_t hd[GROUP];
  _mm_storeu_si128((__m128i *)hd, _mm256_cvtps_ph(d, 0));
  const __m256 add = _mm256_set1_ps((float)nmax + 0.5f);
  const __m256i top = _mm256_set1_epi32(2 * nmax - 1);
  CZ_UNROLL for (int b = 0; b < GROUP; b++) {
    const float *y = x + QK * b;
    const __m256 idb = lane(id, b);
    __m256i c[4];
    CZ_UNROLL for (int k = 0; k < 4; k++)
      c[k] = _mm256_min_epi32(
          _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(y + 8 * k), idb), add)), top);
    const __m256i q = pack_codes(c);
    uint8_t *o = out + b * bytes;
    memcpy(o, &hd[b], 2);
    if (nmax == 16) {
      store_high_bits(q, o + 2);
      store_nibbles(q, o + 6);
    } else {
      store_nibbles(q, o + 2);
    }
  }
}

/* q4_1 (nmax 15, clamped) and q5_1 (nmax 31, not clamped, as the scalar): d = (max - min) /
 * nmax, codes (int)((x - min) * id + 0.5). */
CZ_AVX2_INLINE void affine_group(const float *x, uint8_t *out, size_t bytes, int nmax) {
  __m256 lo[GROUP], hi[GROUP];
  block_min_max(x, lo, hi);
  __m256 mn = reduce_min8(lo), mx = reduce_max8(hi);
  /* equal nonzero floats have equal bits: only a zero extreme needs the scalar's choice */
  const __m256 zero = _mm256_setzero_ps();
  const int zeros = _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(mn, zero, _CMP_EQ_OQ),
                                                    _mm256_cmp_ps(mx, zero, _CMP_EQ_OQ)));
  if (zeros) {
    float fmn[GROUP], fmx[GROUP];
    _mm256_storeu_ps(fmn, mn);
    _mm256_storeu_ps(fmx, mx);
    for (int b = 0; b < GROUP; b++) {
      if (fmn[b] == 0.0f) fmn[b] = first_equal(x + QK * b, fmn[b]);
      if (fmx[b] == 0.0f) fmx[b] = first_equal(x + QK * b, fmx[b]);
    }
    mn = _mm256_loadu_ps(fmn);
    mx = _mm256_loadu_ps(fmx);
  }
  const __m256 d = _mm256_div_ps(_mm256_sub_ps(mx, mn), _mm256_set1_ps((float)nmax));
  const __m256 id = inverse(d);
  uint16_t hd[GROUP], hm[GROUP];
  _mm_storeu_si128((__m128i *)hd, _mm256_cvtps_ph(d, 0));
  _mm_storeu_si128((__m128i *)hm, _mm256_cvtps_ph(mn, 0));
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256i top = _mm256_set1_epi32(nmax);
  CZ_UNROLL for (int b = 0; b < GROUP; b++) {
    const float *y = x + QK * b;
    const __m256 idb = lane(id, b), mnb = lane(mn, b);
    __m256i c[4];
    CZ_UNROLL for (int k = 0; k < 4; k++) {
      c[k] = _mm256_cvttps_epi32(
          _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(y + 8 * k), mnb), idb), half));
      if (nmax == 15) c[k] = _mm256_min_epi32(c[k], top);
    }
    const __m256i q = pack_codes(c);
    uint8_t *o = out + b * bytes;
    memcpy(o, &hd[b], 2);
    memcpy(o + 2, &hm[b], 2);
    if (nmax == 31) {
      store_high_bits(q, o + 4);
      store_nibbles(q, o + 8);
    } else {
      store_nibbles(q, o + 4);
    }
  }
}

/* q8_0: d = amax / 127, codes roundf(x * id) with roundf's half away from zero: truncate, and
 * step one away from zero when the remainder (exact) is at least a half; the low byte of the
 * int32, as the scalar (int8_t) cast keeps it (also of the 0x80000000 that cvttps gives for
 * the infinite or NaN x * id of a block whose d is subnormal, where 1 / d overflows). */
CZ_AVX2_INLINE void q8_0_group(const float *x, uint8_t *out) {
  __m256 m[GROUP];
  block_absmax(x, m);
  const __m256 d = _mm256_div_ps(reduce_max8(m), _mm256_set1_ps(127.0f));
  const __m256 id = inverse(d);
  uint16_t hd[GROUP];
  _mm_storeu_si128((__m128i *)hd, _mm256_cvtps_ph(d, 0));
  const __m256 half = _mm256_set1_ps(0.5f), nhalf = _mm256_set1_ps(-0.5f);
  const __m256i low = _mm256_set1_epi32(0xFF);
  CZ_UNROLL for (int b = 0; b < GROUP; b++) {
    const float *y = x + QK * b;
    const __m256 idb = lane(id, b);
    __m256i q[4];
    CZ_UNROLL for (int k = 0; k < 4; k++) {
      const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(y + 8 * k), idb);
      const __m256 r = _mm256_sub_ps(p, _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
      __m256i t = _mm256_cvttps_epi32(p);
      t = _mm256_sub_epi32(t, _mm256_castps_si256(_mm256_cmp_ps(r, half, _CMP_GE_OQ)));
      t = _mm256_add_epi32(t, _mm256_castps_si256(_mm256_cmp_ps(r, nhalf, _CMP_LE_OQ)));
      q[k] = _mm256_and_si256(t, low);
    }
    const __m256i b8 = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
    uint8_t *o = out + b * sizeof(cz_block_q8_0);
    memcpy(o, &hd[b], 2);
    _mm256_storeu_si256((__m256i *)(o + 2),
                        _mm256_permutevar8x32_epi32(b8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
}

/* nb blocks of src to out: whole groups in place, the last nb % GROUP blocks through a
 * zero-padded local group. */
#define CZ_GROUPS(name, group_call, bytes)                                                  \
  CZ_AVX2 static void name(const float *src, uint8_t *out, int64_t nb) {                    \
    int64_t i = 0;                                                                          \
    for (; i + GROUP <= nb; i += GROUP) {                                                   \
      const float *x = src + i * QK;                                                        \
      uint8_t *o = out + i * (int64_t)(bytes);                                              \
      group_call;                                                                           \
    }                                                                                       \
    if (i < nb) {                                                                           \
      float xb[GROUP * QK] = {0};                                                           \
      uint8_t ob[GROUP * (bytes)];                                                          \
      memcpy(xb, src + i * QK, (size_t)(nb - i) * QK * sizeof(float));                      \
      const float *x = xb;                                                                  \
      uint8_t *o = ob;                                                                      \
      group_call;                                                                           \
      memcpy(out + i * (int64_t)(bytes), ob, (size_t)(nb - i) * (bytes));                   \
    }                                                                                       \
  }

CZ_GROUPS(q4_0_avx2, symmetric_group(x, o, sizeof(blk_q4_0), 8), sizeof(blk_q4_0))
CZ_GROUPS(q5_0_avx2, symmetric_group(x, o, sizeof(blk_q5_0), 16), sizeof(blk_q5_0))
CZ_GROUPS(q4_1_avx2, affine_group(x, o, sizeof(blk_q4_1), 15), sizeof(blk_q4_1))
CZ_GROUPS(q5_1_avx2, affine_group(x, o, sizeof(blk_q5_1), 31), sizeof(blk_q5_1))
CZ_GROUPS(q8_0_avx2, q8_0_group(x, o), sizeof(cz_block_q8_0))

/* ---- dequantizers ---- */

/* A half's float, or false for a NaN (the block then takes the scalar code). */
CZ_AVX2_INLINE bool scale_of(const uint8_t *p, __m256 *v) {
  uint16_t h;
  memcpy(&h, p, 2);
  if ((h & 0x7FFF) > 0x7C00) return false;
  *v = _mm256_set1_ps(_cvtsh_ss(h));
  return true;
}

/* Eight codes (int32) times d, plus m when affine, as the scalar: (float)q * d [+ m]. */
CZ_AVX2_INLINE void store_dq(float *y, __m256i q, __m256 d, const __m256 *m) {
  __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
  if (m) v = _mm256_add_ps(v, *m);
  _mm256_storeu_ps(y, v);
}

CZ_AVX2 static void q8_0_to_f32_avx2(const uint8_t *s, float *y, int64_t nb) {
  for (int64_t i = 0; i < nb; i++, s += sizeof(cz_block_q8_0), y += QK) {
    __m256 d;
    if (!scale_of(s, &d)) {
      cz_block_q8_0 b;
      memcpy(&b, s, sizeof b);
      cz_dequantize_row_q8_0(&b, y, QK);
      continue;
    }
    CZ_UNROLL for (int k = 0; k < 4; k++)
      store_dq(y + 8 * k, _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(s + 2 + 8 * k))), d, NULL);
  }
}

/* The low nibbles of qs are elements 0..15, the high ones 16..31; five-bit types add bit j of
 * qh as bit 4 of element j. bias: the code offset of the symmetric types (0 for affine). */
CZ_AVX2_INLINE void dq_block(const uint8_t *qs, const uint8_t *qh, float *y, __m256 d,
                             const __m256 *m, int bias) {
  const __m128i raw = _mm_loadu_si128((const __m128i *)qs), mask = _mm_set1_epi8(0x0F);
  const __m128i nib[2] = {_mm_and_si128(raw, mask), _mm_and_si128(_mm_srli_epi16(raw, 4), mask)};
  __m256i hv = _mm256_setzero_si256();
  if (qh) {
    uint32_t h;
    memcpy(&h, qh, 4);
    hv = _mm256_set1_epi32((int)h);
  }
  const __m256i bv = _mm256_set1_epi32(bias), one = _mm256_set1_epi32(1);
  CZ_UNROLL for (int g = 0; g < 4; g++) { /* elements 8 g .. 8 g + 7 */
    const __m128i src = (g & 1) ? _mm_srli_si128(nib[g >> 1], 8) : nib[g >> 1];
    __m256i q = _mm256_cvtepu8_epi32(src);
    if (qh) {
      const __m256i sh = _mm256_add_epi32(_mm256_set1_epi32(8 * g), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      q = _mm256_or_si256(q, _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(hv, sh), one), 4));
    }
    if (bias) q = _mm256_sub_epi32(q, bv);
    store_dq(y + 8 * g, q, d, m);
  }
}

#define CZ_DQ(name, blk, scalar, affine, five, bias)                                        \
  CZ_AVX2 static void name(const uint8_t *s, float *y, int64_t nb) {                        \
    for (int64_t i = 0; i < nb; i++, s += sizeof(blk), y += QK) {                           \
      __m256 d, m = _mm256_setzero_ps();                                                    \
      if (!scale_of(s, &d) || (affine && !scale_of(s + 2, &m))) {                           \
        scalar(s, y, QK);                                                                   \
        continue;                                                                           \
      }                                                                                     \
      const uint8_t *q = s + (affine ? 4 : 2);                                              \
      dq_block(q + (five ? 4 : 0), five ? q : NULL, y, d, affine ? &m : NULL, bias);        \
    }                                                                                       \
  }

CZ_DQ(q4_0_to_f32_avx2, blk_q4_0, cz_q4_0_to_f32_scalar, 0, 0, 8)
CZ_DQ(q4_1_to_f32_avx2, blk_q4_1, cz_q4_1_to_f32_scalar, 1, 0, 0)
CZ_DQ(q5_0_to_f32_avx2, blk_q5_0, cz_q5_0_to_f32_scalar, 0, 1, 16)
CZ_DQ(q5_1_to_f32_avx2, blk_q5_1, cz_q5_1_to_f32_scalar, 1, 1, 0)

#define CZ_AVX2_ENTRY(t)                                                    \
  bool cz_##t##_from_f32_avx2(const float *src, void *dst, int64_t n) {     \
    if (!have_avx2()) return false;                                         \
    t##_avx2(src, dst, n / QK);                                             \
    return true;                                                            \
  }                                                                         \
  bool cz_##t##_to_f32_avx2(const void *src, float *dst, int64_t n) {       \
    if (!have_avx2()) return false;                                         \
    t##_to_f32_avx2(src, dst, n / QK);                                      \
    return true;                                                            \
  }

bool cz_q8_0_from_f32_avx2(const float *src, void *dst, int64_t n) {
  if (!have_avx2()) return false;
  q8_0_avx2(src, dst, n / QK);
  return true;
}

bool cz_q8_0_to_f32_avx2(const void *src, float *dst, int64_t n) {
  if (!have_avx2()) return false;
  q8_0_to_f32_avx2(src, dst, n / QK);
  return true;
}
#else
#define CZ_AVX2_ENTRY(t)                                                    \
  bool cz_##t##_from_f32_avx2(const float *src, void *dst, int64_t n) {     \
    (void)src, (void)dst, (void)n;                                          \
    return false;                                                           \
  }                                                                         \
  bool cz_##t##_to_f32_avx2(const void *src, float *dst, int64_t n) {       \
    (void)src, (void)dst, (void)n;                                          \
    return false;                                                           \
  }

bool cz_q8_0_from_f32_avx2(const float *src, void *dst, int64_t n) {
  (void)src, (void)dst, (void)n;
  return false;
}

bool cz_q8_0_to_f32_avx2(const void *src, float *dst, int64_t n) {
  (void)src, (void)dst, (void)n;
  return false;
}
#endif

CZ_AVX2_ENTRY(q4_0)
CZ_AVX2_ENTRY(q4_1)
CZ_AVX2_ENTRY(q5_0)
CZ_AVX2_ENTRY(q5_1)

/* The type table's dequantizers: the AVX2 twin when the CPU has it. */
void cz_q4_0_to_f32(const void *src, float *dst, int64_t n) {
  if (!cz_q4_0_to_f32_avx2(src, dst, n)) cz_q4_0_to_f32_scalar(src, dst, n);
}

void cz_q4_1_to_f32(const void *src, float *dst, int64_t n) {
  if (!cz_q4_1_to_f32_avx2(src, dst, n)) cz_q4_1_to_f32_scalar(src, dst, n);
}

void cz_q5_0_to_f32(const void *src, float *dst, int64_t n) {
  if (!cz_q5_0_to_f32_avx2(src, dst, n)) cz_q5_0_to_f32_scalar(src, dst, n);
}

void cz_q5_1_to_f32(const void *src, float *dst, int64_t n) {
  if (!cz_q5_1_to_f32_avx2(src, dst, n)) cz_q5_1_to_f32_scalar(src, dst, n);
}
