/* cz_quants_iq: ggml's non-linear 4-bit types iq4_nl and iq4_xs, the microscaling mxfp4 and
 * the ternary tq1_0 and tq2_0.
 *
 * Algorithms as described in quant-formats.md 1.4-1.6, reproducing ggml's bytes: floating-point
 * expressions keep ggml's order and operand types, rounding uses the primitive ggml uses at
 * each place (cz_nearest_int, lroundf, nearest-codebook search), and the file is compiled with
 * -ffp-contract=off.
 *
 * Block layouts (little-endian, no padding):
 *   iq4_nl (32):  half d; u8 qs[16]                         4-bit indices into kIQ4 values,
 *   iq4_xs (256): half d; u16 scales_h; u8 scales_l[4];     paired like q4_0 per 32
 *                 u8 qs[128]                                (element j low, j + 16 high);
 *   mxfp4 (32):   u8 e (E8M0); u8 qs[16]                    E2M1 codes, same pairing;
 *   tq1_0 (256):  u8 qs[48]; u8 qh[4]; half d               base-3 digits, 5 (4 in qh) a byte;
 *   tq2_0 (256):  u8 qs[64]; half d                         2-bit codes, 4 a byte.
 *
 * Which path writes files (1.4): iq4_nl's file quantizer searches 15 scales even without an
 * importance matrix while its reference quantizer does not, so the two give different bytes;
 * iq4_xs's reference is its file quantizer; mxfp4, tq1_0 and tq2_0 ignore importance weights.
 */
#include <math.h>
#include <string.h>

#include "cz_quants.h"
#include "cz_type.h"

#define QK_32 32
#define QK_256 256

/* ggml's kvalues_iq4nl: the 16 code points of iq4_nl / iq4_xs, ascending. */
static const int8_t kIQ4[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                1,    13,   25,  38,  53,  69,  89,  113};

/* E2M1 values doubled (ggml's kvalues_mxfp4); the scale is halved to match. */
static const int8_t kFP4x2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

typedef struct {
  uint16_t d;
  uint8_t qs[QK_32 / 2];
} blk_iq4_nl;

typedef struct {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[QK_256 / 64];
  uint8_t qs[QK_256 / 2];
} blk_iq4_xs;

typedef struct {
  uint8_t e;
  uint8_t qs[QK_32 / 2];
} blk_mxfp4;

typedef struct {
  uint8_t qs[48];
  uint8_t qh[4];
  uint16_t d;
} blk_tq1_0;

typedef struct {
  uint8_t qs[64];
  uint16_t d;
} blk_tq2_0;

_Static_assert(sizeof(blk_iq4_nl) == 18, "iq4_nl block is 18 bytes");
_Static_assert(sizeof(blk_iq4_xs) == 136, "iq4_xs block is 136 bytes");
_Static_assert(sizeof(blk_mxfp4) == 17, "mxfp4 block is 17 bytes");
_Static_assert(sizeof(blk_tq1_0) == 54, "tq1_0 block is 54 bytes");
_Static_assert(sizeof(blk_tq2_0) == 66, "tq2_0 block is 66 bytes");

/* ---- iq4 ----------------------------------------------------------------------------------- */

/* Index of the code point nearest to v (ggml's best_index_int8): clamp to the ends, bisect,
 * and between two neighbours take the lower one only when strictly nearer. */
static int iq4_index(float v) {
  if (v <= kIQ4[0]) return 0;
  if (v >= kIQ4[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (v < kIQ4[mid])
      hi = mid;
    else
      lo = mid;
  }
  return v - kIQ4[hi - 1] < kIQ4[hi] - v ? hi - 1 : hi;
}

/* Scale of one group of 32 (ggml's per-block step of quantize_row_iq4_nl_impl). The first
 * guess maps the value of largest magnitude to an end of the codebook (-max/-127 when
 * searching, max/-127 otherwise); codes for it give a weighted least-squares scale, and with
 * ntry > 0 the inverse scales (itry - 127) / max, itry in [-ntry, ntry], are tried too, the
 * best fit sum(w q x)^2 / sum(w q^2) winning. idx receives the codes of the first guess only
 * (callers that search recompute them from the final scale). Returns 0 for a group whose
 * largest magnitude is below ggml's GROUP_MAX_EPS, leaving idx untouched. */
static float iq4_group_scale(const float *x, const float *w, int ntry, uint8_t *idx) {
  float amax = 0, max = 0;
  for (int j = 0; j < QK_32; j++) {
    const float ax = fabsf(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (amax < 1e-15f) return 0;
  float d = ntry > 0 ? -max / kIQ4[0] : max / kIQ4[0];
  float id = 1 / d;
  float sumqx = 0, sumq2 = 0;
  for (int j = 0; j < QK_32; j++) {
    const int l = iq4_index(id * x[j]);
    idx[j] = (uint8_t)l;
    const float q = kIQ4[l];
    sumqx += w[j] * q * x[j];
    sumq2 += w[j] * q * q;
  }
  d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
  float best = d * sumqx;
  for (int itry = -ntry; itry <= ntry; itry++) {
    id = (itry + kIQ4[0]) / max;
    sumqx = sumq2 = 0;
    for (int j = 0; j < QK_32; j++) {
      const float q = kIQ4[iq4_index(id * x[j])];
      sumqx += w[j] * q * x[j];
      sumq2 += w[j] * q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

/* sigma2 of the iq4 weights: twice the mean square of the super-block (32 for iq4_nl). */
static float iq4_sigma2(const float *x, int n) {
  float s = 0;
  for (int j = 0; j < n; j++) s += x[j] * x[j];
  s *= 2.f / n;
  return s;
}

/* Weights of a group: importance * sqrt(sigma2 + x^2), or x^2 without importance. */
static void iq4_weights(const float *x, const float *imp, float sigma2, float w[QK_32]) {
  if (imp) {
    for (int j = 0; j < QK_32; j++) w[j] = imp[j] * sqrtf(sigma2 + x[j] * x[j]);
  } else {
    for (int j = 0; j < QK_32; j++) w[j] = x[j] * x[j];
  }
}

static void iq4_pack(const uint8_t idx[QK_32], uint8_t qs[QK_32 / 2]) {
  for (int j = 0; j < QK_32 / 2; j++) qs[j] = (uint8_t)(idx[j] | (idx[j + QK_32 / 2] << 4));
}

static void iq4_unpack(const uint8_t qs[QK_32 / 2], float dl, float *y) {
  for (int j = 0; j < QK_32 / 2; j++) {
    y[j] = dl * kIQ4[qs[j] & 0xf];
    y[j + QK_32 / 2] = dl * kIQ4[qs[j] >> 4];
  }
}

/* One iq4_nl block. ntry 7 is the file path (codes recomputed from the final scale), -1 the
 * reference (codes of the first guess kept). idx carries the codes between calls: ggml's
 * reference leaves an all-zero block's codes as the previous block's (its scale is 0, so they
 * decode to zeros either way); we keep that, starting from zeros. */
static void iq4_nl_block(const float *x, const float *imp, int ntry, uint8_t idx[QK_32],
                         blk_iq4_nl *b) {
  float w[QK_32];
  iq4_weights(x, imp, iq4_sigma2(x, QK_32), w);
  const float d = iq4_group_scale(x, w, ntry, idx);
  b->d = cz_fp32_to_fp16(d);
  if (ntry > 0) {
    const float id = d ? 1 / d : 0;
    for (int j = 0; j < QK_32; j++) idx[j] = (uint8_t)iq4_index(id * x[j]);
  }
  iq4_pack(idx, b->qs);
}

void cz_iq4_nl_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  uint8_t idx[QK_32] = {0};
  for (int64_t i = 0; i < n / QK_32; i++) {
    blk_iq4_nl b;
    iq4_nl_block(src + i * QK_32, NULL, -1, idx, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

size_t cz_iq4_nl_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                          const float *imatrix) {
  const int64_t nb = n_per_row / QK_32;
  uint8_t *out = dst;
  uint8_t idx[QK_32] = {0};
  for (int64_t r = 0; r < nrows; r++) {
    for (int64_t i = 0; i < nb; i++) {
      blk_iq4_nl b;
      iq4_nl_block(src + r * n_per_row + i * QK_32, imatrix ? imatrix + i * QK_32 : NULL, 7,
                   idx, &b);
      memcpy(out + (r * nb + i) * (int64_t)sizeof b, &b, sizeof b);
    }
  }
  return (size_t)(nrows * nb) * sizeof(blk_iq4_nl);
}

void cz_iq4_nl_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *in = src;
  for (int64_t i = 0; i < n / QK_32; i++) {
    blk_iq4_nl b;
    memcpy(&b, in + i * (int64_t)sizeof b, sizeof b);
    iq4_unpack(b.qs, cz_fp16_to_fp32(b.d), dst + i * QK_32);
  }
}

/* One iq4_xs super-block: a scale per group of 32 as for iq4_nl (with the search), then a
 * super-block scale d = -max_scale/32 where max_scale is the group scale of largest
 * magnitude, a 6-bit signed multiplier l in [-32, 31] per group (stored +32: low 4 bits in
 * scales_l, high 2 in scales_h), and the codes redone against d * l. */
static void iq4_xs_block(const float *x, const float *imp, blk_iq4_xs *b) {
  const int ng = QK_256 / QK_32;
  const float sigma2 = iq4_sigma2(x, QK_256);
  float scales[QK_256 / QK_32];
  uint8_t idx[QK_32];
  float max_scale = 0, amax_scale = 0;
  for (int g = 0; g < ng; g++) {
    float w[QK_32];
    iq4_weights(x + g * QK_32, imp ? imp + g * QK_32 : NULL, sigma2, w);
    const float d = iq4_group_scale(x + g * QK_32, w, 7, idx);
    scales[g] = d;
    if (fabsf(d) > amax_scale) {
      amax_scale = fabsf(d);
      max_scale = d;
    }
  }
  const float d = -max_scale / 32;
  const float id = d ? 1 / d : 0.f;
  b->d = cz_fp32_to_fp16(d);
  b->scales_h = 0;
  for (int g = 0; g < ng; g++) {
    int l = cz_nearest_int(id * scales[g]);
    l = l < -32 ? -32 : l > 31 ? 31 : l;
    const float dl = d * l;
    const float idl = dl ? 1 / dl : 0.f;
    const float *xg = x + g * QK_32;
    for (int j = 0; j < QK_32; j++) idx[j] = (uint8_t)iq4_index(idl * xg[j]);
    iq4_pack(idx, b->qs + g * (QK_32 / 2));
    l += 32;
    if (g % 2 == 0)
      b->scales_l[g / 2] = (uint8_t)(l & 0xf);
    else
      b->scales_l[g / 2] |= (uint8_t)((l & 0xf) << 4);
    b->scales_h |= (uint16_t)((l >> 4) << (2 * g));
  }
}

size_t cz_iq4_xs_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                          const float *imatrix) {
  const int64_t nb = n_per_row / QK_256;
  uint8_t *out = dst;
  for (int64_t r = 0; r < nrows; r++) {
    for (int64_t i = 0; i < nb; i++) {
      blk_iq4_xs b;
      iq4_xs_block(src + r * n_per_row + i * QK_256, imatrix ? imatrix + i * QK_256 : NULL, &b);
      memcpy(out + (r * nb + i) * (int64_t)sizeof b, &b, sizeof b);
    }
  }
  return (size_t)(nrows * nb) * sizeof(blk_iq4_xs);
}

/* ggml's quantize_row_iq4_xs_ref is its file quantizer on one row without importance. */
void cz_iq4_xs_from_f32(const float *src, void *dst, int64_t n) {
  cz_iq4_xs_quantize(src, dst, 1, n, NULL);
}

void cz_iq4_xs_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *in = src;
  for (int64_t i = 0; i < n / QK_256; i++) {
    blk_iq4_xs b;
    memcpy(&b, in + i * (int64_t)sizeof b, sizeof b);
    const float d = cz_fp16_to_fp32(b.d);
    for (int g = 0; g < QK_256 / QK_32; g++) {
      const int ls = ((b.scales_l[g / 2] >> 4 * (g % 2)) & 0xf) | (((b.scales_h >> 2 * g) & 3) << 4);
      iq4_unpack(b.qs + g * (QK_32 / 2), d * (ls - 32), dst + i * QK_256 + g * QK_32);
    }
  }
}

/* ---- mxfp4 --------------------------------------------------------------------------------- */

/* Half the E8M0 scale 2^(e-127), i.e. 2^(e-128), as ggml builds it from bits (e < 2 lands in
 * the subnormal range). */
static float e8m0_half(uint8_t e) {
  const uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* Nearest code to v at scale d; the first of equally near codes wins. */
static int fp4_index(float v, float d) {
  int best = 0;
  float best_err = fabsf(kFP4x2[0] * d - v);
  for (int i = 1; i < 16; i++) {
    const float err = fabsf(kFP4x2[i] * d - v);
    if (err < best_err) {
      best = i;
      best_err = err;
    }
  }
  return best;
}

/* e = floor(log2(amax)) - 2 + 127 in float, then truncated; a scale that would be negative
 * (amax below 2^-125, never reached by finite weights of any use) wraps to a byte the way
 * x86's conversion through int does, rather than being undefined. */
static void mxfp4_block(const float *x, blk_mxfp4 *b) {
  float amax = 0.0f;
  for (int j = 0; j < QK_32; j++)
    if (amax < fabsf(x[j])) amax = fabsf(x[j]);
  const uint8_t e = amax > 0.0f ? (uint8_t)(int)(floorf(log2f(amax)) - 2 + 127) : 0;
  const float d = e8m0_half(e);
  b->e = e;
  for (int j = 0; j < QK_32 / 2; j++)
    b->qs[j] = (uint8_t)(fp4_index(x[j], d) | (fp4_index(x[j + QK_32 / 2], d) << 4));
}

void cz_mxfp4_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / QK_32; i++) {
    blk_mxfp4 b;
    mxfp4_block(src + i * QK_32, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

size_t cz_mxfp4_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                         const float *imatrix) {
  (void)imatrix; /* ggml ignores it */
  cz_mxfp4_from_f32(src, dst, nrows * n_per_row);
  return (size_t)(nrows * (n_per_row / QK_32)) * sizeof(blk_mxfp4);
}

void cz_mxfp4_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *in = src;
  for (int64_t i = 0; i < n / QK_32; i++) {
    blk_mxfp4 b;
    memcpy(&b, in + i * (int64_t)sizeof b, sizeof b);
    const float d = e8m0_half(b.e);
    float *y = dst + i * QK_32;
    for (int j = 0; j < QK_32 / 2; j++) {
      y[j] = kFP4x2[b.qs[j] & 0x0F] * d;
      y[j + QK_32 / 2] = kFP4x2[b.qs[j] >> 4] * d;
    }
  }
}

/* ---- ternary ------------------------------------------------------------------------------- */

/* Scale of a ternary block: the largest magnitude (ggml's MAX in element order). */
static float ternary_scale(const float *x) {
  float amax = 0.0f;
  for (int j = 0; j < QK_256; j++) {
    const float v = fabsf(x[j]);
    amax = amax > v ? amax : v;
  }
  return amax;
}

/* -1, 0, 1 -> 0, 1, 2 */
static int trit(float v, float id) { return (int)lroundf(v * id) + 1; }

/* n trits, most significant first, of elements x[0], x[stride], ...; then spread over a byte
 * by the ceiling of q * 256 / 3^5, so that a digit is read back as the top of q * 3^k * 3. */
static uint8_t pack_trits(const float *x, int n, int stride, float id) {
  uint8_t q = 0;
  for (int k = 0; k < n; k++) q = (uint8_t)(q * 3 + trit(x[k * stride], id));
  for (int k = n; k < 5; k++) q = (uint8_t)(q * 3);
  return (uint8_t)(((uint16_t)q * 256 + (243 - 1)) / 243);
}

/* Layout: qs[0..32) hold elements m + 32 k (k < 5) of the first 160, qs[32..48) elements
 * 160 + m + 16 k of the next 80, qh[0..4) elements 240 + j + 4 k (k < 4) of the last 16. */
static void tq1_0_block(const float *x, blk_tq1_0 *b) {
  const float d = ternary_scale(x);
  const float id = d ? 1.0f / d : 0.0f;
  b->d = cz_fp32_to_fp16(d);
  for (int m = 0; m < 32; m++) b->qs[m] = pack_trits(x + m, 5, 32, id);
  for (int m = 0; m < 16; m++) b->qs[32 + m] = pack_trits(x + 160 + m, 5, 16, id);
  for (int j = 0; j < 4; j++) b->qh[j] = pack_trits(x + 240 + j, 4, 4, id);
}

void cz_tq1_0_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / QK_256; i++) {
    blk_tq1_0 b;
    tq1_0_block(src + i * QK_256, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

size_t cz_tq1_0_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                         const float *imatrix) {
  (void)imatrix; /* ggml ignores it */
  cz_tq1_0_from_f32(src, dst, nrows * n_per_row);
  return (size_t)(nrows * (n_per_row / QK_256)) * sizeof(blk_tq1_0);
}

/* Digit k of a packed byte: multiply by 3^k (mod 256), the top of 3 times that. */
static float trit_value(uint8_t packed, int k, float d) {
  static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
  const uint8_t q = (uint8_t)(packed * pow3[k]);
  const int16_t t = (int16_t)(((uint16_t)q * 3) >> 8);
  return (float)(t - 1) * d;
}

void cz_tq1_0_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *in = src;
  for (int64_t i = 0; i < n / QK_256; i++) {
    blk_tq1_0 b;
    memcpy(&b, in + i * (int64_t)sizeof b, sizeof b);
    const float d = cz_fp16_to_fp32(b.d);
    float *y = dst + i * QK_256;
    for (int k = 0; k < 5; k++)
      for (int m = 0; m < 32; m++) y[k * 32 + m] = trit_value(b.qs[m], k, d);
    for (int k = 0; k < 5; k++)
      for (int m = 0; m < 16; m++) y[160 + k * 16 + m] = trit_value(b.qs[32 + m], k, d);
    for (int k = 0; k < 4; k++)
      for (int j = 0; j < 4; j++) y[240 + k * 4 + j] = trit_value(b.qh[j], k, d);
  }
}

/* Layout: per 128 elements, byte m of 32 holds element m + 32 k in bits 2k, 2k+1. */
static void tq2_0_block(const float *x, blk_tq2_0 *b) {
  const float d = ternary_scale(x);
  const float id = d ? 1.0f / d : 0.0f;
  b->d = cz_fp32_to_fp16(d);
  for (int h = 0; h < 2; h++) {
    for (int m = 0; m < 32; m++) {
      uint8_t q = 0;
      for (int k = 0; k < 4; k++) q = (uint8_t)(q + ((trit(x[128 * h + m + 32 * k], id) & 3) << (2 * k)));
      b->qs[32 * h + m] = q;
    }
  }
}

void cz_tq2_0_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / QK_256; i++) {
    blk_tq2_0 b;
    tq2_0_block(src + i * QK_256, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

size_t cz_tq2_0_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                         const float *imatrix) {
  (void)imatrix; /* ggml ignores it */
  cz_tq2_0_from_f32(src, dst, nrows * n_per_row);
  return (size_t)(nrows * (n_per_row / QK_256)) * sizeof(blk_tq2_0);
}

void cz_tq2_0_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *in = src;
  for (int64_t i = 0; i < n / QK_256; i++) {
    blk_tq2_0 b;
    memcpy(&b, in + i * (int64_t)sizeof b, sizeof b);
    const float d = cz_fp16_to_fp32(b.d);
    float *y = dst + i * QK_256;
    for (int h = 0; h < 2; h++)
      for (int k = 0; k < 4; k++)
        for (int m = 0; m < 32; m++)
          y[128 * h + 32 * k + m] = (float)(((b.qs[32 * h + m] >> (2 * k)) & 3) - 1) * d;
  }
}
