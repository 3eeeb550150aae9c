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
#include <stdbool.h>
#include <stddef.h>
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

void cz_iq4_nl_from_f32_scalar(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  uint8_t idx[QK_32] = {0};
  for (int64_t i = 0; i < n / QK_32; i++) {
    blk_iq4_nl b;
    iq4_nl_block(src + i * QK_32, NULL, -1, idx, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

size_t cz_iq4_nl_quantize_scalar(const float *src, void *dst, int64_t nrows,
                                 int64_t n_per_row, const float *imatrix) {
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

/* The super-block part of iq4_xs shared by iq4_xs_block and its AVX2 twin: d = -max_scale/32
 * from the group scale of largest magnitude (the first on a tie), each group's 6-bit multiplier
 * l (stored +32: low 4 bits in scales_l, high 2 in scales_h), and idl[g] = 1 / (d * l) (0 for
 * a zero d * l), the inverse the group's codes are redone against. Plain C: the vector caller
 * clears the upper register halves first. */
static void iq4_xs_set_scales(const float scales[QK_256 / QK_32], blk_iq4_xs *b,
                              float idl[QK_256 / QK_32]) {
  const int ng = QK_256 / QK_32;
  float max_scale = 0, amax_scale = 0;
  for (int g = 0; g < ng; g++) {
    if (fabsf(scales[g]) > amax_scale) {
      amax_scale = fabsf(scales[g]);
      max_scale = scales[g];
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
    idl[g] = dl ? 1 / dl : 0.f;
    l += 32;
    if (g % 2 == 0)
      b->scales_l[g / 2] = (uint8_t)(l & 0xf);
    else
      b->scales_l[g / 2] |= (uint8_t)((l & 0xf) << 4);
    b->scales_h |= (uint16_t)((l >> 4) << (2 * g));
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
  for (int g = 0; g < ng; g++) {
    float w[QK_32];
    iq4_weights(x + g * QK_32, imp ? imp + g * QK_32 : NULL, sigma2, w);
    scales[g] = iq4_group_scale(x + g * QK_32, w, 7, idx);
  }
  float idl[QK_256 / QK_32];
  iq4_xs_set_scales(scales, b, idl);
  for (int g = 0; g < ng; g++) {
    const float *xg = x + g * QK_32;
    for (int j = 0; j < QK_32; j++) idx[j] = (uint8_t)iq4_index(idl[g] * xg[j]);
    iq4_pack(idx, b->qs + g * (QK_32 / 2));
  }
}

size_t cz_iq4_xs_quantize_scalar(const float *src, void *dst, int64_t nrows,
                                 int64_t n_per_row, const float *imatrix) {
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

/* ---- iq4 AVX2 twins ------------------------------------------------------------------------ */

/* Nearly all of iq4's time goes to iq4_group_scale: 16 candidate scales, each a codebook search
 * and two serial sums over 32 weights. The twins run eight groups of 32 at once, one per lane
 * (eight consecutive iq4_nl blocks of a row, or the eight groups of one iq4_xs super-block):
 * element j of the eight groups sits in one vector, and each lane does its group's scalar
 * operations in the scalar order, with compares and blends where the scalar code branches; no
 * reduction crosses lanes, no fused multiply-add (target avx2 only, -ffp-contract=off), and
 * division and square root are IEEE-exact in both, so every lane computes the scalar floats
 * bit for bit. The model is cz_quants_k.c's twins. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define CZ_AVX2 __attribute__((target("avx2")))

static bool have_avx2(void) { return __builtin_cpu_supports("avx2"); }

/* cz_fp32_to_fp16 behind a vzeroupper, which GCC does not always put before the call (SSE code
 * after dirty upper halves stalls). */
CZ_AVX2 static inline uint16_t f2h_avx2(float f) {
  _mm256_zeroupper();
  return cz_fp32_to_fp16(f);
}

/* kIQ4[i] as floats, per lane, for i in [0, 15]: two 8-entry permutes and a blend on bit 3. */
CZ_AVX2 static inline __m256 v_iq4_value(__m256i i) {
  const __m256 lo = _mm256_setr_ps(-127, -104, -83, -65, -49, -35, -22, -10);
  const __m256 hi = _mm256_setr_ps(1, 13, 25, 38, 53, 69, 89, 113);
  const __m256 upper = _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)); /* bit 3 to the sign */
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, i), _mm256_permutevar8x32_ps(hi, i), upper);
}

/* iq4_index per lane. Inside (kIQ4[0], kIQ4[15]) the bisection ends at lo = the largest i with
 * kIQ4[i] <= v, which is the count of such i in [1, 15]; then the same tie rule. v <= kIQ4[0]
 * gives lo = 0 and the rule picks 0, as the scalar's first test; v >= kIQ4[15] (and NaN, which
 * fails every scalar compare and so bisects up to 15) is forced to 15. */
CZ_AVX2 static inline __m256i v_iq4_index(__m256 v) {
  static const float kIQ4f[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                  1,    13,   25,  38,  53,  69,  89,  113};
  __m256i lo = _mm256_setzero_si256();
  for (int i = 1; i < 15; i++) /* a broadcast load each, not a conversion of kIQ4[i] */
    lo = _mm256_sub_epi32(
        lo, _mm256_castps_si256(_mm256_cmp_ps(_mm256_broadcast_ss(&kIQ4f[i]), v, _CMP_LE_OQ)));
  /* lo <= 14 here: kIQ4[15] is left out, v at or above it is handled below */
  const __m256i hi = _mm256_add_epi32(lo, _mm256_set1_epi32(1));
  const __m256 below = _mm256_cmp_ps(_mm256_sub_ps(v, v_iq4_value(lo)),
                                     _mm256_sub_ps(v_iq4_value(hi), v), _CMP_LT_OQ);
  const __m256i r = _mm256_blendv_epi8(hi, lo, _mm256_castps_si256(below));
  const __m256 top = _mm256_cmp_ps(v, _mm256_set1_ps(kIQ4[15]), _CMP_NLT_UQ);
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(15), _mm256_castps_si256(top));
}

/* t[j] lane g = x[stride·g + j], j < 32. */
CZ_AVX2 static inline void v_transpose32(const float *x, int stride, __m256 t[QK_32]) {
  const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                         _mm256_set1_epi32(stride));
  for (int j = 0; j < QK_32; j++) t[j] = _mm256_i32gather_ps(x + j, idx, 4);
}

/* iq4_weights per lane; sigma2 per lane too (iq4_nl's is per block, iq4_xs's shared). */
CZ_AVX2 static inline void iq4_weights8(const __m256 x[QK_32], const __m256 *imp, __m256 sigma2,
                                        __m256 w[QK_32]) {
  for (int j = 0; j < QK_32; j++) {
    const __m256 x2 = _mm256_mul_ps(x[j], x[j]);
    w[j] = imp ? _mm256_mul_ps(imp[j], _mm256_sqrt_ps(_mm256_add_ps(sigma2, x2))) : x2;
  }
}

/* Σ w·q·x and Σ w·q² of one candidate inverse scale, in the scalar's order. */
CZ_AVX2 static inline void iq4_sums8(const __m256 x[QK_32], const __m256 w[QK_32], __m256 id,
                                     __m256 *sumqx, __m256 *sumq2) {
  __m256 sqx = _mm256_setzero_ps(), sq2 = _mm256_setzero_ps();
  for (int j = 0; j < QK_32; j++) {
    const __m256 q = v_iq4_value(v_iq4_index(_mm256_mul_ps(id, x[j])));
    const __m256 wq = _mm256_mul_ps(w[j], q);
    sqx = _mm256_add_ps(sqx, _mm256_mul_ps(wq, x[j]));
    sq2 = _mm256_add_ps(sq2, _mm256_mul_ps(wq, q));
  }
  *sumqx = sqx;
  *sumq2 = sq2;
}

/* Per lane, the largest |x[j]| of a group of 32 and the signed x[j] where it first occurs (the
 * scalar's strict "greater than" scan). */
CZ_AVX2 static inline void signed_absmax8(const __m256 x[QK_32], __m256 *amax_out,
                                          __m256 *max_out) {
  __m256 amax = _mm256_setzero_ps(), max = amax;
  for (int j = 0; j < QK_32; j++) {
    const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x[j]);
    const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
    amax = _mm256_blendv_ps(amax, ax, gt);
    max = _mm256_blendv_ps(max, x[j], gt);
  }
  *amax_out = amax;
  *max_out = max;
}

/* iq4_group_scale with ntry = 7 for eight groups (the codes are recomputed by the callers). */
CZ_AVX2 static __m256 iq4_group_scale8(const __m256 x[QK_32], const __m256 w[QK_32]) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 amax, max;
  signed_absmax8(x, &amax, &max);
  const __m256 tiny = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
  const __m256 d0 = _mm256_div_ps(_mm256_xor_ps(max, _mm256_set1_ps(-0.0f)),
                                  _mm256_set1_ps(kIQ4[0]));
  __m256 sumqx, sumq2;
  iq4_sums8(x, w, _mm256_div_ps(_mm256_set1_ps(1.0f), d0), &sumqx, &sumq2);
  __m256 d = _mm256_blendv_ps(zero, _mm256_div_ps(sumqx, sumq2),
                              _mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ));
  __m256 best = _mm256_mul_ps(d, sumqx);
  for (int itry = -7; itry <= 7; itry++) {
    iq4_sums8(x, w, _mm256_div_ps(_mm256_set1_ps((float)(itry + kIQ4[0])), max), &sumqx, &sumq2);
    const __m256 take = _mm256_and_ps(
        _mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ),
        _mm256_cmp_ps(_mm256_mul_ps(sumqx, sumqx), _mm256_mul_ps(best, sumq2), _CMP_GT_OQ));
    const __m256 dn = _mm256_div_ps(sumqx, sumq2);
    d = _mm256_blendv_ps(d, dn, take);
    best = _mm256_blendv_ps(best, _mm256_mul_ps(dn, sumqx), take);
  }
  return _mm256_blendv_ps(d, zero, tiny);
}

/* Codes of eight groups at inverse scales id (per lane), packed into each group's qs. */
CZ_AVX2 static void iq4_codes8(const __m256 x[QK_32], __m256 id, uint8_t *qs[8]) {
  int32_t t[QK_32][8];
  for (int j = 0; j < QK_32; j++)
    _mm256_storeu_si256((__m256i *)t[j], v_iq4_index(_mm256_mul_ps(id, x[j])));
  for (int g = 0; g < 8; g++) {
    uint8_t idx[QK_32];
    for (int j = 0; j < QK_32; j++) idx[j] = (uint8_t)t[j][g];
    iq4_pack(idx, qs[g]);
  }
}

/* d ? 1 / d : 0 per lane. */
CZ_AVX2 static inline __m256 v_inverse_or_zero(__m256 d) {
  const __m256 zero = _mm256_setzero_ps();
  return _mm256_blendv_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d), zero,
                          _mm256_cmp_ps(d, zero, _CMP_EQ_OQ));
}

/* Eight consecutive iq4_nl blocks (file path, ntry 7); imp NULL or their importance. */
CZ_AVX2 static void iq4_nl_block8(const float *x, const float *imp, blk_iq4_nl b[8]) {
  __m256 xt[QK_32], it[QK_32], w[QK_32];
  v_transpose32(x, QK_32, xt);
  if (imp) v_transpose32(imp, QK_32, it);
  __m256 s = _mm256_setzero_ps();
  for (int j = 0; j < QK_32; j++) s = _mm256_add_ps(s, _mm256_mul_ps(xt[j], xt[j]));
  s = _mm256_mul_ps(s, _mm256_set1_ps(2.f / QK_32));
  iq4_weights8(xt, imp ? it : NULL, s, w);
  const __m256 d = iq4_group_scale8(xt, w);
  uint8_t *qs[8];
  for (int g = 0; g < 8; g++) qs[g] = b[g].qs;
  iq4_codes8(xt, v_inverse_or_zero(d), qs);
  float df[8];
  _mm256_storeu_ps(df, d);
  for (int g = 0; g < 8; g++) b[g].d = f2h_avx2(df[g]);
}

/* iq4_xs_block with the eight group scales and the eight code searches in lanes; the steps
 * across groups (largest scale, 6-bit multipliers, packing) stay scalar. */
CZ_AVX2 static void iq4_xs_block_avx2(const float *x, const float *imp, blk_iq4_xs *b) {
  const int ng = QK_256 / QK_32;
  __m256 xt[QK_32], it[QK_32], w[QK_32];
  const float sigma2 = iq4_sigma2(x, QK_256);
  v_transpose32(x, QK_32, xt);
  if (imp) v_transpose32(imp, QK_32, it);
  iq4_weights8(xt, imp ? it : NULL, _mm256_set1_ps(sigma2), w);
  float scales[QK_256 / QK_32];
  _mm256_storeu_ps(scales, iq4_group_scale8(xt, w));
  float idl[QK_256 / QK_32];
  _mm256_zeroupper();
  iq4_xs_set_scales(scales, b, idl);
  uint8_t *qs[QK_256 / QK_32];
  for (int g = 0; g < ng; g++) qs[g] = b->qs + g * (QK_32 / 2);
  iq4_codes8(xt, _mm256_loadu_ps(idl), qs);
}

CZ_AVX2 static void iq4_nl_rows_avx2(const float *src, void *dst, int64_t nrows,
                                     int64_t n_per_row, const float *imatrix) {
  const int64_t nb = n_per_row / QK_32;
  uint8_t *out = dst;
  for (int64_t r = 0; r < nrows; r++) {
    const float *x = src + r * n_per_row;
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
      blk_iq4_nl b[8];
      iq4_nl_block8(x + i * QK_32, imatrix ? imatrix + i * QK_32 : NULL, b);
      for (int g = 0; g < 8; g++)
        memcpy(out + (r * nb + i + g) * (int64_t)sizeof b[g], &b[g], sizeof b[g]);
    }
    _mm256_zeroupper();
    for (; i < nb; i++) { /* fewer than eight left in the row */
      blk_iq4_nl b;
      uint8_t idx[QK_32] = {0};
      iq4_nl_block(x + i * QK_32, imatrix ? imatrix + i * QK_32 : NULL, 7, idx, &b);
      memcpy(out + (r * nb + i) * (int64_t)sizeof b, &b, sizeof b);
    }
  }
}

/* The reference's iq4_group_scale (ntry -1, weights x², codes of the first guess kept) for
 * eight consecutive blocks, one per lane: d = max / kIQ4[0], codes at 1/d, and the
 * least-squares scale of those codes; lanes whose largest magnitude is below GROUP_MAX_EPS get
 * scale 0 and tiny set. idx[j] lane g is the code of element j of block g. */
CZ_AVX2 static __m256 iq4_ref_scale8(const __m256 x[QK_32], __m256i idx[QK_32], __m256 *tiny) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 amax, max;
  signed_absmax8(x, &amax, &max);
  *tiny = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
  const __m256 d0 = _mm256_div_ps(max, _mm256_set1_ps(kIQ4[0]));
  const __m256 id = _mm256_div_ps(_mm256_set1_ps(1.0f), d0);
  __m256 sqx = zero, sq2 = zero;
  for (int j = 0; j < QK_32; j++) {
    idx[j] = v_iq4_index(_mm256_mul_ps(id, x[j]));
    const __m256 q = v_iq4_value(idx[j]);
    const __m256 wq = _mm256_mul_ps(_mm256_mul_ps(x[j], x[j]), q);
    sqx = _mm256_add_ps(sqx, _mm256_mul_ps(wq, x[j]));
    sq2 = _mm256_add_ps(sq2, _mm256_mul_ps(wq, q));
  }
  const __m256 d = _mm256_blendv_ps(zero, _mm256_div_ps(sqx, sq2), _mm256_cmp_ps(sq2, zero, _CMP_GT_OQ));
  return _mm256_blendv_ps(d, zero, *tiny);
}

/* iq4_pack for eight blocks: idx[j] lane g is code j of block g; qs[g] receives block g's 16
 * bytes, idx[j] | idx[j + 16] << 4. Four bytes j = 4k..4k+3 of the eight blocks go to one
 * vector (packs, then a byte shuffle makes each 32-bit lane one block's four bytes), and a 4x4
 * transpose of 32-bit lanes in each 128-bit half gathers a block's 16 bytes. */
CZ_AVX2 static void iq4_pack8(const __m256i idx[QK_32], uint8_t qs[8][QK_32 / 2]) {
  const __m256i by_block = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                            0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  __m256i v[4];
  for (int k = 0; k < 4; k++) {
    __m256i q[4];
    for (int m = 0; m < 4; m++)
      q[m] = _mm256_or_si256(idx[4 * k + m], _mm256_slli_epi32(idx[4 * k + m + 16], 4));
    v[k] = _mm256_shuffle_epi8(
        _mm256_packus_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3])),
        by_block);
  }
  const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpacklo_epi32(v[2], v[3]);
  const __m256i t2 = _mm256_unpackhi_epi32(v[0], v[1]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
  const __m256i r[4] = {_mm256_unpacklo_epi64(t0, t1), _mm256_unpackhi_epi64(t0, t1),
                        _mm256_unpacklo_epi64(t2, t3), _mm256_unpackhi_epi64(t2, t3)};
  for (int g = 0; g < 4; g++) {
    _mm_storeu_si128((__m128i *)qs[g], _mm256_castsi256_si128(r[g]));
    _mm_storeu_si128((__m128i *)qs[g + 4], _mm256_extracti128_si256(r[g], 1));
  }
}

/* cz_iq4_nl_from_f32 eight blocks at a time, the rest (fewer than eight) through the scalar
 * block. carry holds the packed codes of the last block with a scale, the scalar's idx: a
 * block below GROUP_MAX_EPS is written with them (ggml's reference leaves its codes as the
 * previous block's; its scale is 0, so they decode to zeros either way). */
CZ_AVX2 static void iq4_nl_ref_avx2(const float *src, void *dst, int64_t n) {
  const int64_t nb = n / QK_32;
  uint8_t *out = dst;
  uint8_t carry[QK_32 / 2] = {0};
  int64_t i = 0;
  for (; i + 8 <= nb; i += 8) {
    __m256 xt[QK_32], tiny;
    __m256i idx[QK_32];
    uint8_t qs[8][QK_32 / 2];
    float df[8];
    v_transpose32(src + i * QK_32, QK_32, xt);
    _mm256_storeu_ps(df, iq4_ref_scale8(xt, idx, &tiny));
    const int tiny_mask = _mm256_movemask_ps(tiny);
    iq4_pack8(idx, qs);
    _mm256_zeroupper(); /* cz_fp32_to_fp16 is SSE code */
    for (int g = 0; g < 8; g++) {
      uint8_t *b = out + (i + g) * (int64_t)sizeof(blk_iq4_nl);
      const uint16_t h = cz_fp32_to_fp16(df[g]);
      memcpy(b + offsetof(blk_iq4_nl, d), &h, sizeof h);
      if (tiny_mask >> g & 1)
        memcpy(qs[g], carry, sizeof carry);
      else
        memcpy(carry, qs[g], sizeof carry);
      memcpy(b + offsetof(blk_iq4_nl, qs), qs[g], sizeof qs[g]);
    }
  }
  uint8_t idx[QK_32];
  for (int j = 0; j < QK_32 / 2; j++) {
    idx[j] = carry[j] & 0xf;
    idx[j + QK_32 / 2] = carry[j] >> 4;
  }
  for (; i < nb; i++) {
    blk_iq4_nl b;
    iq4_nl_block(src + i * QK_32, NULL, -1, idx, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

CZ_AVX2 static void iq4_xs_rows_avx2(const float *src, void *dst, int64_t nrows,
                                     int64_t n_per_row, const float *imatrix) {
  const int64_t nb = n_per_row / QK_256;
  uint8_t *out = dst;
  for (int64_t r = 0; r < nrows; r++) {
    for (int64_t i = 0; i < nb; i++) {
      blk_iq4_xs b;
      iq4_xs_block_avx2(src + r * n_per_row + i * QK_256,
                        imatrix ? imatrix + i * QK_256 : NULL, &b);
      memcpy(out + (r * nb + i) * (int64_t)sizeof b, &b, sizeof b);
    }
  }
  _mm256_zeroupper();
}
#else
static bool have_avx2(void) { return false; }
static void iq4_nl_rows_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                             const float *imatrix) {
  (void)src, (void)dst, (void)nrows, (void)n_per_row, (void)imatrix;
}
#define iq4_xs_rows_avx2 iq4_nl_rows_avx2
static void iq4_nl_ref_avx2(const float *src, void *dst, int64_t n) {
  (void)src, (void)dst, (void)n;
}
#endif

bool cz_iq4_nl_from_f32_avx2(const float *src, void *dst, int64_t n) {
  if (!have_avx2()) return false;
  iq4_nl_ref_avx2(src, dst, n);
  return true;
}

/* ggml's quantize_row_iq4_nl_ref: the AVX2 twin when the CPU has AVX2. */
void cz_iq4_nl_from_f32(const float *src, void *dst, int64_t n) {
  if (!cz_iq4_nl_from_f32_avx2(src, dst, n)) cz_iq4_nl_from_f32_scalar(src, dst, n);
}

bool cz_iq4_nl_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                             const float *imatrix) {
  if (!have_avx2()) return false;
  iq4_nl_rows_avx2(src, dst, nrows, n_per_row, imatrix);
  return true;
}

bool cz_iq4_xs_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                             const float *imatrix) {
  if (!have_avx2()) return false;
  iq4_xs_rows_avx2(src, dst, nrows, n_per_row, imatrix);
  return true;
}

size_t cz_iq4_nl_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                          const float *imatrix) {
  if (cz_iq4_nl_quantize_avx2(src, dst, nrows, n_per_row, imatrix))
    return (size_t)(nrows * (n_per_row / QK_32)) * sizeof(blk_iq4_nl);
  return cz_iq4_nl_quantize_scalar(src, dst, nrows, n_per_row, imatrix);
}

size_t cz_iq4_xs_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                          const float *imatrix) {
  if (cz_iq4_xs_quantize_avx2(src, dst, nrows, n_per_row, imatrix))
    return (size_t)(nrows * (n_per_row / QK_256)) * sizeof(blk_iq4_xs);
  return cz_iq4_xs_quantize_scalar(src, dst, nrows, n_per_row, imatrix);
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

/* mxfp4's AVX2 twin: the code search is element-wise (16 candidate codes, the first strictly
 * nearest kept), so a lane is an element and computes the scalar's floats; the block's
 * largest magnitude (a max, the same whatever the order) and its scale stay scalar. */
#if defined(__x86_64__) && defined(__GNUC__)
CZ_AVX2 static void mxfp4_block_avx2(const float *x, blk_mxfp4 *b) {
  __m256 v[4];
  __m256 am = _mm256_setzero_ps();
  for (int k = 0; k < 4; k++) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    am = _mm256_max_ps(am, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v[k]));
  }
  float a8[8];
  _mm256_storeu_ps(a8, am);
  float amax = 0.0f;
  for (int k = 0; k < 8; k++)
    if (amax < a8[k]) amax = a8[k];
  _mm256_zeroupper(); /* log2f is SSE code */
  const uint8_t e = amax > 0.0f ? (uint8_t)(int)(floorf(log2f(amax)) - 2 + 127) : 0;
  const __m256 d = _mm256_set1_ps(e8m0_half(e));
  b->e = e;
  int32_t c[QK_32];
  for (int k = 0; k < 4; k++) {
    const __m256 xv = _mm256_loadu_ps(x + 8 * k);
    __m256i best = _mm256_setzero_si256();
    __m256 best_err = _mm256_andnot_ps(
        _mm256_set1_ps(-0.0f), _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(kFP4x2[0]), d), xv));
    for (int i = 1; i < 16; i++) {
      const __m256 err = _mm256_andnot_ps(
          _mm256_set1_ps(-0.0f), _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(kFP4x2[i]), d), xv));
      const __m256 lt = _mm256_cmp_ps(err, best_err, _CMP_LT_OQ);
      best = _mm256_blendv_epi8(best, _mm256_set1_epi32(i), _mm256_castps_si256(lt));
      best_err = _mm256_blendv_ps(best_err, err, lt);
    }
    _mm256_storeu_si256((__m256i *)(c + 8 * k), best);
  }
  for (int j = 0; j < QK_32 / 2; j++) b->qs[j] = (uint8_t)(c[j] | (c[j + QK_32 / 2] << 4));
}

bool cz_mxfp4_from_f32_avx2(const float *src, void *dst, int64_t n) {
  if (!have_avx2()) return false;
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / QK_32; i++) {
    blk_mxfp4 b;
    mxfp4_block_avx2(src + i * QK_32, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
  return true;
}
#else
bool cz_mxfp4_from_f32_avx2(const float *src, void *dst, int64_t n) {
  (void)src, (void)dst, (void)n;
  return false;
}
#endif

size_t cz_mxfp4_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                         const float *imatrix) {
  (void)imatrix; /* ggml ignores it */
  if (!cz_mxfp4_from_f32_avx2(src, dst, nrows * n_per_row))
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

/* n trits t[0], t[stride], ..., most significant first; then spread over a byte by the
 * ceiling of q * 256 / 3^5, so that a digit is read back as the top of q * 3^k * 3. */
static uint8_t pack_trits(const uint8_t *t, int n, int stride) {
  uint8_t q = 0;
  for (int k = 0; k < n; k++) q = (uint8_t)(q * 3 + t[k * stride]);
  for (int k = n; k < 5; k++) q = (uint8_t)(q * 3);
  return (uint8_t)(((uint16_t)q * 256 + (243 - 1)) / 243);
}

/* Layout: qs[0..32) hold elements m + 32 k (k < 5) of the first 160, qs[32..48) elements
 * 160 + m + 16 k of the next 80, qh[0..4) elements 240 + j + 4 k (k < 4) of the last 16. */
static void tq1_0_pack(const uint8_t t[QK_256], blk_tq1_0 *b) {
  for (int m = 0; m < 32; m++) b->qs[m] = pack_trits(t + m, 5, 32);
  for (int m = 0; m < 16; m++) b->qs[32 + m] = pack_trits(t + 160 + m, 5, 16);
  for (int j = 0; j < 4; j++) b->qh[j] = pack_trits(t + 240 + j, 4, 4);
}

/* Layout: per 128 elements, byte m of 32 holds element m + 32 k in bits 2k, 2k+1. */
static void tq2_0_pack(const uint8_t t[QK_256], blk_tq2_0 *b) {
  for (int h = 0; h < 2; h++) {
    for (int m = 0; m < 32; m++) {
      uint8_t q = 0;
      for (int k = 0; k < 4; k++) q = (uint8_t)(q + ((t[128 * h + m + 32 * k] & 3) << (2 * k)));
      b->qs[32 * h + m] = q;
    }
  }
}

/* The scale and the trits of a ternary block. */
static float ternary_trits(const float *x, uint8_t t[QK_256]) {
  const float d = ternary_scale(x);
  const float id = d ? 1.0f / d : 0.0f;
  for (int j = 0; j < QK_256; j++) t[j] = (uint8_t)trit(x[j], id);
  return d;
}

/* The AVX2 twins of tq1_0's and tq2_0's reference, a block of 256 spread across the lanes: the
 * scale is the largest magnitude, a max (the same in any order), and the rest is element-wise.
 * |x| <= d makes v = x·(1/d) at most 1 plus a few ulps (1/d rounded, then the product), so
 * lroundf(v), rounding half away from zero, is 1 for v >= 0.5, -1 for v <= -0.5 and 0 in
 * between: two compares per element, no rounding. A d so small that 1/d overflows makes every
 * v·id infinite or NaN, which lroundf turns into LONG_MIN on x86-64, low 32 bits 0: trit 1
 * everywhere, which an inverse scale of 0 gives too (the tests check it). The trits are packed
 * in 16-bit lanes; the base-3 bytes of tq1_0, (q·256 + 242) / 243 for q < 243, divide by a
 * multiply-high: (n · 8631) >> 21 is n / 243 for every such n (at most 62194). */
#if defined(__x86_64__) && defined(__GNUC__)
/* The 256 trits of a block as sixteen vectors of 16-bit lanes, t[c] holding elements 16c..16c+15
 * in the order packs_epi32 leaves them, 0-3, 8-11 | 4-7, 12-15 (the same for every c, so
 * element-wise combinations of them are in that order too). Returns the scale d. */
CZ_AVX2 static float ternary_trits16(const float *x, __m256i t[16]) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 am[4];
  for (int k = 0; k < 4; k++) am[k] = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k));
  for (int j = 32; j < QK_256; j += 32)
    for (int k = 0; k < 4; k++)
      am[k] = _mm256_max_ps(am[k], _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j + 8 * k)));
  __m256 m = _mm256_max_ps(_mm256_max_ps(am[0], am[1]), _mm256_max_ps(am[2], am[3]));
  m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 1));
  m = _mm256_max_ps(m, _mm256_permute_ps(m, 0x4E));
  m = _mm256_max_ps(m, _mm256_permute_ps(m, 0xB1));
  const float d = _mm256_cvtss_f32(m);
  float id = d ? 1.0f / d : 0.0f;
  if (isinf(id)) id = 0.0f;
  const __m256 vid = _mm256_set1_ps(id), half = _mm256_set1_ps(0.5f),
               mhalf = _mm256_set1_ps(-0.5f);
  const __m256i one = _mm256_set1_epi32(1);
  for (int c = 0; c < 16; c++) {
    __m256i h[2];
    for (int k = 0; k < 2; k++) {
      const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 16 * c + 8 * k), vid);
      const __m256i ge = _mm256_castps_si256(_mm256_cmp_ps(v, half, _CMP_GE_OQ));
      const __m256i le = _mm256_castps_si256(_mm256_cmp_ps(v, mhalf, _CMP_LE_OQ));
      h[k] = _mm256_add_epi32(_mm256_sub_epi32(one, ge), le);
    }
    t[c] = _mm256_packs_epi32(h[0], h[1]);
  }
  return d;
}

/* Base-3 bytes of five trit vectors, most significant first, then ⌈q · 256 / 243⌉. */
CZ_AVX2 static inline __m256i tq1_bytes16(__m256i a, __m256i b, __m256i c, __m256i d, __m256i e) {
  __m256i q = _mm256_add_epi16(_mm256_mullo_epi16(a, _mm256_set1_epi16(81)),
                               _mm256_mullo_epi16(b, _mm256_set1_epi16(27)));
  q = _mm256_add_epi16(q, _mm256_add_epi16(_mm256_mullo_epi16(c, _mm256_set1_epi16(9)),
                                           _mm256_mullo_epi16(d, _mm256_set1_epi16(3))));
  q = _mm256_add_epi16(q, e);
  const __m256i n = _mm256_add_epi16(_mm256_slli_epi16(q, 8), _mm256_set1_epi16(242));
  return _mm256_srli_epi16(_mm256_mulhi_epu16(n, _mm256_set1_epi16((short)8631)), 5);
}

/* Two vectors of 16-bit values below 256, both in the 0-3, 8-11 | 4-7, 12-15 order, as 32
 * bytes in element order (a's 16, then b's). */
CZ_AVX2 static inline __m256i bytes_in_order(__m256i a, __m256i b) {
  return _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b),
                                     _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* tq1_0_pack on the trit vectors: qs[m] (m < 32) from elements m + 32k, chunks 2k and 2k + 1;
 * qs[32 + m] (m < 16) from elements 160 + m + 16k, chunk 10 + k; qh[j] from elements
 * 240 + j + 4k of chunk 15, four digits and a zero. */
CZ_AVX2 static void tq1_0_block_avx2(const float *x, uint8_t *out) {
  __m256i t[16];
  const float d = ternary_trits16(x, t);
  const __m256i lo = tq1_bytes16(t[0], t[2], t[4], t[6], t[8]);
  const __m256i hi = tq1_bytes16(t[1], t[3], t[5], t[7], t[9]);
  const __m256i mid = tq1_bytes16(t[10], t[11], t[12], t[13], t[14]);
  _mm256_storeu_si256((__m256i *)out, bytes_in_order(lo, hi));
  _mm_storeu_si128((__m128i *)(out + 32), _mm256_castsi256_si128(bytes_in_order(mid, mid)));
  int16_t last[16]; /* chunk 15 in element order */
  _mm256_storeu_si256((__m256i *)last, _mm256_permute4x64_epi64(t[15], 0xD8));
  for (int j = 0; j < 4; j++) {
    uint8_t q = 0;
    for (int k = 0; k < 4; k++) q = (uint8_t)(q * 3 + last[j + 4 * k]);
    q = (uint8_t)(q * 3);
    out[48 + j] = (uint8_t)(((uint16_t)q * 256 + (243 - 1)) / 243);
  }
  const uint16_t h = f2h_avx2(d);
  memcpy(out + offsetof(blk_tq1_0, d), &h, sizeof h);
}

/* tq2_0_pack on the trit vectors: byte m of each 32 holds elements m + 32k, k < 4 (chunks
 * 8h + 2k and 8h + 2k + 1), two bits each. */
CZ_AVX2 static void tq2_0_block_avx2(const float *x, uint8_t *out) {
  __m256i t[16];
  const float d = ternary_trits16(x, t);
  for (int h = 0; h < 2; h++) {
    __m256i q[2];
    for (int s = 0; s < 2; s++) {
      const __m256i *c = t + 8 * h + s;
      q[s] = _mm256_or_si256(_mm256_or_si256(c[0], _mm256_slli_epi16(c[2], 2)),
                             _mm256_or_si256(_mm256_slli_epi16(c[4], 4), _mm256_slli_epi16(c[6], 6)));
    }
    _mm256_storeu_si256((__m256i *)(out + 32 * h), bytes_in_order(q[0], q[1]));
  }
  const uint16_t h = f2h_avx2(d);
  memcpy(out + offsetof(blk_tq2_0, d), &h, sizeof h);
}

static bool ternary_avx2_rows(const float *src, void *dst, int64_t n, bool tq1) {
  if (!have_avx2()) return false;
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / QK_256; i++) {
    if (tq1)
      tq1_0_block_avx2(src + i * QK_256, out + i * (int64_t)sizeof(blk_tq1_0));
    else
      tq2_0_block_avx2(src + i * QK_256, out + i * (int64_t)sizeof(blk_tq2_0));
  }
  return true;
}
#else
static bool ternary_avx2_rows(const float *src, void *dst, int64_t n, bool tq1) {
  (void)src, (void)dst, (void)n, (void)tq1;
  return false;
}
#endif

bool cz_tq1_0_from_f32_avx2(const float *src, void *dst, int64_t n) {
  return ternary_avx2_rows(src, dst, n, true);
}

bool cz_tq2_0_from_f32_avx2(const float *src, void *dst, int64_t n) {
  return ternary_avx2_rows(src, dst, n, false);
}

void cz_tq1_0_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / QK_256; i++) {
    blk_tq1_0 b;
    uint8_t t[QK_256];
    b.d = cz_fp32_to_fp16(ternary_trits(src + i * QK_256, t));
    tq1_0_pack(t, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

size_t cz_tq1_0_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                         const float *imatrix) {
  (void)imatrix; /* ggml ignores it */
  if (!cz_tq1_0_from_f32_avx2(src, dst, nrows * n_per_row))
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

void cz_tq2_0_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / QK_256; i++) {
    blk_tq2_0 b;
    uint8_t t[QK_256];
    b.d = cz_fp32_to_fp16(ternary_trits(src + i * QK_256, t));
    tq2_0_pack(t, &b);
    memcpy(out + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

size_t cz_tq2_0_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                         const float *imatrix) {
  (void)imatrix; /* ggml ignores it */
  if (!cz_tq2_0_from_f32_avx2(src, dst, nrows * n_per_row))
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
