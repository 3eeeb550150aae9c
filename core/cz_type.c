/* cz_type: the element-type table, fp16/bf16 conversions and the Q8_0 reference codec. */
#include "cz_type.h"

#include "cz_cpu.h"
#include "cz_quants.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* Row converters read and write through memcpy: tensor data comes from mmapped files where a
 * safetensors offset need not be aligned to the element size, and the code assumes a
 * little-endian host, as both file formats are little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "compressd assumes a little-endian host"
#endif

/* ---- bit casts ---------------------------------------------------------------------------- */

static inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* ---- fp16 ---------------------------------------------------------------------------------- */

/* Exact: every binary16 value is representable in binary32. Subnormal halves are renormalised
 * by shifting the mantissa up until its implicit bit appears. */
float cz_fp16_to_fp32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return f32_from_bits(sign | 0x7F800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return f32_from_bits(sign);
    int32_t e = 113; /* biased fp32 exponent of 2^-14, the subnormal half scale, plus one */
    do {
      mant <<= 1;
      e--;
    } while ((mant & 0x400u) == 0);
    return f32_from_bits(sign | ((uint32_t)e << 23) | ((mant & 0x3FFu) << 13));
  }
  return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* ggml's conversion (quant-formats.md 1.3): let the FPU do the rounding. |f| is first scaled so
 * that values too large for binary16 overflow to infinity and the rest land at the right
 * magnitude; then a power of two chosen from f's exponent is added, so that the float
 * addition itself rounds the mantissa to the 10 bits a half keeps (round to nearest even, and
 * for tiny values to the fixed 2^-24 grid of half subnormals). The half's exponent and
 * mantissa are then read straight out of the sum's bits. NaN becomes the quiet 0x7E00 with
 * the sign kept, as in ggml. Needs FLT_EVAL_METHOD 0 and no FMA contraction. */
uint16_t cz_fp32_to_fp16(float f) {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  float base = (fabsf(f) * scale_to_inf) * scale_to_zero;

  const uint32_t w = f32_bits(f);
  const uint32_t shl1_w = w + w; /* exponent and mantissa, sign shifted out */
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u; /* below 2^-14 the half grid is fixed */

  base = f32_from_bits((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = f32_bits(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

/* ---- bf16 ---------------------------------------------------------------------------------- */

float cz_bf16_to_fp32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

/* Round to nearest even on the 16 dropped bits; a NaN keeps its top bits and is forced quiet
 * (bit 6 of the bf16) so that truncation cannot turn it into infinity. */
uint16_t cz_fp32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 64u);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* ---- Q8_0 ---------------------------------------------------------------------------------- */

/* One block, as ggml's quantize_row_q8_0_ref: the max uses ggml's MAX(a, b) = a > b ? a : b in
 * element order (so a NaN propagates the same way), and roundf rounds half away from zero.
 * Inputs are expected finite: the caller rejects non-finite weights before quantizing. */
static void q8_0_quantize_block(const float *x, cz_block_q8_0 *y) {
  float amax = 0.0f;
  for (int j = 0; j < CZ_QK8_0; j++) {
    const float v = fabsf(x[j]);
    amax = amax > v ? amax : v;
  }
  const float d = amax / 127;
  const float id = d ? 1.0f / d : 0.0f;
  y->d = cz_fp32_to_fp16(d);
  for (int j = 0; j < CZ_QK8_0; j++) y->qs[j] = (int8_t)roundf(x[j] * id);
}

void cz_quantize_row_q8_0(const float *x, cz_block_q8_0 *y, int64_t k) {
  for (int64_t i = 0; i < k / CZ_QK8_0; i++) q8_0_quantize_block(x + i * CZ_QK8_0, &y[i]);
}

void cz_dequantize_row_q8_0(const cz_block_q8_0 *x, float *y, int64_t k) {
  for (int64_t i = 0; i < k / CZ_QK8_0; i++) {
    const float d = cz_fp16_to_fp32(x[i].d);
    for (int j = 0; j < CZ_QK8_0; j++) y[i * CZ_QK8_0 + j] = x[i].qs[j] * d;
  }
}

/* ---- row converters for the table --------------------------------------------------------- */

/* Each converter moves one element at a time through memcpy (see the top of the file). */
#define CZ_DEFINE_TO_F32(fname, ctype, expr)                                 \
  static void fname(const void *src, float *dst, int64_t n) {               \
    const unsigned char *s = src;                                            \
    for (int64_t i = 0; i < n; i++) {                                        \
      ctype v;                                                               \
      memcpy(&v, s + i * (int64_t)sizeof v, sizeof v);                       \
      dst[i] = (expr);                                                       \
    }                                                                        \
  }

CZ_DEFINE_TO_F32(f32_to_f32, float, v)
CZ_DEFINE_TO_F32(f16_to_f32, uint16_t, cz_fp16_to_fp32(v))
CZ_DEFINE_TO_F32(bf16_to_f32, uint16_t, cz_bf16_to_fp32(v))
CZ_DEFINE_TO_F32(f64_to_f32, double, (float)v)
CZ_DEFINE_TO_F32(i8_to_f32, int8_t, (float)v)
CZ_DEFINE_TO_F32(i16_to_f32, int16_t, (float)v)
CZ_DEFINE_TO_F32(i32_to_f32, int32_t, (float)v)
CZ_DEFINE_TO_F32(u8_to_f32, uint8_t, (float)v)
#undef CZ_DEFINE_TO_F32

static void f32_from_f32(const float *src, void *dst, int64_t n) {
  memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_from_f32(const float *src, void *dst, int64_t n) {
  unsigned char *d = dst;
  for (int64_t i = 0; i < n; i++) {
    uint16_t h = cz_fp32_to_fp16(src[i]);
    memcpy(d + 2 * i, &h, 2);
  }
}

static void bf16_from_f32(const float *src, void *dst, int64_t n) {
  unsigned char *d = dst;
  for (int64_t i = 0; i < n; i++) {
    uint16_t h = cz_fp32_to_bf16(src[i]);
    memcpy(d + 2 * i, &h, 2);
  }
}

/* The table entries go block by block through an aligned local copy, since a destination
 * inside a file buffer need not be 2-byte aligned. */
static void q8_0_to_f32(const void *src, float *dst, int64_t n) {
  if (cz_q8_0_to_f32_avx2(src, dst, n)) return; /* cz_quants_legacy.c: same floats */
  const unsigned char *s = src;
  for (int64_t i = 0; i < n / CZ_QK8_0; i++) {
    cz_block_q8_0 b;
    memcpy(&b, s + i * (int64_t)sizeof b, sizeof b);
    cz_dequantize_row_q8_0(&b, dst + i * CZ_QK8_0, CZ_QK8_0);
  }
}

static void q8_0_from_f32(const float *src, void *dst, int64_t n) {
  unsigned char *d = dst;
  for (int64_t i = 0; i < n / CZ_QK8_0; i++) {
    cz_block_q8_0 b;
    q8_0_quantize_block(src + i * CZ_QK8_0, &b);
    memcpy(d + i * (int64_t)sizeof b, &b, sizeof b);
  }
}

/* ---- 8-bit floats ---------------------------------------------------------------------- */

float cz_f8e4m3_to_fp32(uint8_t v) {
  const float sign = (v & 0x80) ? -1.0f : 1.0f;
  const int e = (v >> 3) & 0xF, m = v & 7;
  if (e == 15 && m == 7) return sign * NAN;
  if (e == 0) return sign * ldexpf((float)m, -9);  /* subnormal: m/8 * 2^-6 */
  return sign * ldexpf((float)(8 + m), e - 10);     /* (1 + m/8) * 2^(e-7) */
}

/* Both encoders add a rounding bias to the float's bits (round to nearest even on the
 * mantissa cut), and for results below the smallest normal let the FPU round by adding a
 * power of two whose ulp is the format's subnormal step. */
uint8_t cz_fp32_to_f8e4m3(float f) {
  uint32_t w = f32_bits(f);
  const uint8_t sign = (uint8_t)((w >> 24) & 0x80);
  w &= 0x7FFFFFFFu;
  uint8_t r;
  if (w >= 0x43F00000u) {                 /* >= 480 (what rounds past 448), Inf, NaN */
    r = 0x7F;
  } else if (w < (121u << 23)) {          /* below 2^-6: subnormal or zero */
    const uint32_t bias = 141u << 23;     /* 2^14, whose ulp is 2^-9 */
    r = (uint8_t)(f32_bits(f32_from_bits(w) + f32_from_bits(bias)) - bias);
  } else {
    const uint32_t odd = (w >> 20) & 1;
    w += ((uint32_t)(7 - 127) << 23) + 0x7FFFFu + odd;
    r = (uint8_t)(w >> 20);
  }
  return r | sign;
}

float cz_f8e5m2_to_fp32(uint8_t v) {
  const float sign = (v & 0x80) ? -1.0f : 1.0f;
  const int e = (v >> 2) & 0x1F, m = v & 3;
  if (e == 31) return m ? sign * NAN : sign * INFINITY;
  if (e == 0) return sign * ldexpf((float)m, -16);  /* m/4 * 2^-14 */
  return sign * ldexpf((float)(4 + m), e - 17);      /* (1 + m/4) * 2^(e-15) */
}

uint8_t cz_fp32_to_f8e5m2(float f) {
  uint32_t w = f32_bits(f);
  const uint8_t sign = (uint8_t)((w >> 24) & 0x80);
  w &= 0x7FFFFFFFu;
  uint8_t r;
  if (w >= (143u << 23)) {                /* >= 65536, Inf, NaN */
    r = w > 0x7F800000u ? 0x7F : 0x7C;
  } else if (w < (113u << 23)) {          /* below 2^-14 */
    const uint32_t bias = 134u << 23;     /* 2^7, whose ulp is 2^-16 */
    r = (uint8_t)(f32_bits(f32_from_bits(w) + f32_from_bits(bias)) - bias);
  } else {
    const uint32_t odd = (w >> 21) & 1;
    w += ((uint32_t)(15 - 127) << 23) + 0xFFFFFu + odd;
    r = (uint8_t)(w >> 21);
  }
  return r | sign;
}

static void f8e4m3_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *s = src;
  for (int64_t i = 0; i < n; i++) dst[i] = cz_f8e4m3_to_fp32(s[i]);
}

static void f8e5m2_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *s = src;
  for (int64_t i = 0; i < n; i++) dst[i] = cz_f8e5m2_to_fp32(s[i]);
}

static void f8e4m3_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *d = dst;
  for (int64_t i = 0; i < n; i++) d[i] = cz_fp32_to_f8e4m3(src[i]);
}

static void f8e5m2_from_f32(const float *src, void *dst, int64_t n) {
  uint8_t *d = dst;
  for (int64_t i = 0; i < n; i++) d[i] = cz_fp32_to_f8e5m2(src[i]);
}

/* ---- F16C twin: F16 -> F32 ---------------------------------------------------------------- */

/* F16 -> F32: vcvtph2ps is exact, as cz_fp16_to_fp32, for every half but NaNs (it quiets a
 * signaling NaN, the scalar keeps its bits): groups of 8 holding a NaN take the scalar. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define CZ_F16C __attribute__((target("avx2,f16c")))

CZ_F16C static void f16_to_f32_f16c(const unsigned char *s, float *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128((const __m128i *)(s + 2 * i));
    /* NaN: exponent all ones and a nonzero mantissa, i.e. (h & 0x7fff) > 0x7c00 */
    const __m128i mag = _mm_and_si128(h, _mm_set1_epi16(0x7fff));
    if (_mm_movemask_epi8(_mm_cmpgt_epi16(mag, _mm_set1_epi16(0x7c00)))) {
      for (int k = 0; k < 8; k++) {
        uint16_t v;
        memcpy(&v, s + 2 * (i + k), sizeof v);
        dst[i + k] = cz_fp16_to_fp32(v);
      }
      continue;
    }
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; i++) {
    uint16_t v;
    memcpy(&v, s + 2 * i, sizeof v);
    dst[i] = cz_fp16_to_fp32(v);
  }
}

bool cz_f16_to_f32_f16c(const void *src, float *dst, int64_t n) {
  if (!__builtin_cpu_supports("avx2") || !cz_cpu_has_f16c()) return false;
  f16_to_f32_f16c(src, dst, n);
  return true;
}

/* F16 -> F32 for an input that must be finite: no per-group NaN branch (a NaN's bits do not
 * matter, the caller refuses the chunk), the exponent test ORed into one mask per chunk; the
 * AVX-512 loop converts sixteen halves an instruction. */
__attribute__((target("avx512f"))) static bool f16_finite_avx512(const unsigned char *s,
                                                                  float *dst, int64_t n,
                                                                  int64_t *done) {
  const __m512i ex = _mm512_set1_epi32(0x7c00);
  __mmask16 bad = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256((const __m256i *)(s + 2 * i));
    const __m512i w = _mm512_cvtepu16_epi32(h);
    bad |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(w, ex), ex);
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
  }
  *done = i;
  return bad == 0;
}

CZ_F16C static bool f16_finite_avx2(const unsigned char *s, float *dst, int64_t n,
                                    int64_t *done) {
  const __m128i ex = _mm_set1_epi16(0x7c00);
  __m128i bad = _mm_setzero_si128();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128((const __m128i *)(s + 2 * i));
    bad = _mm_or_si128(bad, _mm_cmpeq_epi16(_mm_and_si128(h, ex), ex));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  *done = i;
  return _mm_testz_si128(bad, bad);
}

int cz_f16_to_f32_finite_isa(const void *src, float *dst, int64_t n, cz_isa isa) {
  const bool f16c = cz_cpu_has_f16c(), has512 = f16c && __builtin_cpu_supports("avx512f");
  const bool has2 = f16c && __builtin_cpu_supports("avx2");
  int64_t i;
  bool ok;
  if (has512 && (isa == CZ_ISA_BEST || isa == CZ_ISA_AVX512))
    ok = f16_finite_avx512(src, dst, n, &i);
  else if (has2 && (isa == CZ_ISA_BEST || isa == CZ_ISA_AVX2))
    ok = f16_finite_avx2(src, dst, n, &i);
  else
    return -1;
  const unsigned char *s = src;
  for (; i < n && ok; i++) {
    uint16_t v;
    memcpy(&v, s + 2 * i, sizeof v);
    ok = (v & 0x7c00) != 0x7c00;
    dst[i] = cz_fp16_to_fp32(v);
  }
  return ok;
}
#else
int cz_f16_to_f32_finite_isa(const void *src, float *dst, int64_t n, cz_isa isa) {
  (void)src, (void)dst, (void)n, (void)isa;
  return -1;
}
#endif

int cz_f16_to_f32_finite(const void *src, float *dst, int64_t n) {
  return cz_f16_to_f32_finite_isa(src, dst, n, CZ_ISA_BEST);
}
#if !(defined(__x86_64__) && defined(__GNUC__))

bool cz_f16_to_f32_f16c(const void *src, float *dst, int64_t n) {
  (void)src, (void)dst, (void)n;
  return false;
}
#endif

/* The table's F16 converter: the F16C twin when the CPU has it. */
static void f16_to_f32_fast(const void *src, float *dst, int64_t n) {
  if (!cz_f16_to_f32_f16c(src, dst, n)) f16_to_f32(src, dst, n);
}

/* The file path equals the reference for Q8_0, which has no weighted variant; it runs the
 * AVX2 twin (same bytes) when the CPU has AVX2. */
static size_t q8_0_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                            const float *imatrix) {
  (void)imatrix;
  const size_t row = (size_t)(n_per_row / CZ_QK8_0) * sizeof(cz_block_q8_0);
  if (cz_q8_0_from_f32_avx2(src, dst, nrows * n_per_row)) return (size_t)nrows * row;
  for (int64_t r = 0; r < nrows; r++)
    q8_0_from_f32(src + r * n_per_row, (unsigned char *)dst + (size_t)r * row, n_per_row);
  return (size_t)nrows * row;
}

/* ---- the table ----------------------------------------------------------------------------- */

/* Row helpers keep the table one line per type. */
#define PLAIN(nm, st, gguf, bytes, nbits, to, from) \
  { .name = nm, .st_name = st, .in_gguf = gguf, .blck_size = 1, .type_size = bytes, \
    .bits = nbits, .is_quantized = false, .to_f32 = to, .from_f32 = from }
#define BLOCK(nm, gguf, blck, bytes, to, from) BLOCKQ(nm, gguf, blck, bytes, to, from, NULL, false)
/* A block type with its file-writing quantizer and whether that needs an imatrix. */
#define BLOCKQ(nm, gguf, blck, bytes, to, from, quant, needs_im) \
  { .name = nm, .st_name = NULL, .in_gguf = gguf, .blck_size = blck, .type_size = bytes, \
    .bits = 0, .is_quantized = true, .to_f32 = to, .from_f32 = from, .quantize = quant, \
    .requires_imatrix = needs_im }
/* Safetensors-only types. Names are ours: the lower-case dtype string. F4 and F6 pack
 * elements below a byte, so type_size is 0 for them (a per-element byte count does not
 * exist) and sizes come from bits; see cz_type_row_size. */
#define STONLY(nm, st, nbits, to) PLAIN(nm, st, false, (nbits) / 8, nbits, to, NULL)

static const cz_type_traits type_table[CZ_TYPE_COUNT] = {
    [CZ_TYPE_F32] = PLAIN("f32", "F32", true, 4, 32, f32_to_f32, f32_from_f32),
    [CZ_TYPE_F16] = PLAIN("f16", "F16", true, 2, 16, f16_to_f32_fast, f16_from_f32),
    [CZ_TYPE_Q4_0] = BLOCKQ("q4_0", true, 32, 18, cz_q4_0_to_f32, cz_q4_0_from_f32, cz_q4_0_quantize, false),
    [CZ_TYPE_Q4_1] = BLOCKQ("q4_1", true, 32, 20, cz_q4_1_to_f32, cz_q4_1_from_f32, cz_q4_1_quantize, false),
    [CZ_TYPE_Q5_0] = BLOCKQ("q5_0", true, 32, 22, cz_q5_0_to_f32, cz_q5_0_from_f32, cz_q5_0_quantize, false),
    [CZ_TYPE_Q5_1] = BLOCKQ("q5_1", true, 32, 24, cz_q5_1_to_f32, cz_q5_1_from_f32, cz_q5_1_quantize, false),
    [CZ_TYPE_Q8_0] = BLOCKQ("q8_0", true, 32, 34, q8_0_to_f32, q8_0_from_f32, q8_0_quantize, false),
    [CZ_TYPE_Q8_1] = BLOCK("q8_1", false, 32, 36, NULL, NULL),   /* activations only */
    [CZ_TYPE_Q2_K] = BLOCKQ("q2_K", true, 256, 84, cz_q2_K_to_f32, cz_q2_K_from_f32, cz_q2_K_quantize, false),
    [CZ_TYPE_Q3_K] = BLOCKQ("q3_K", true, 256, 110, cz_q3_K_to_f32, cz_q3_K_from_f32, cz_q3_K_quantize, false),
    [CZ_TYPE_Q4_K] = BLOCKQ("q4_K", true, 256, 144, cz_q4_K_to_f32, cz_q4_K_from_f32, cz_q4_K_quantize, false),
    [CZ_TYPE_Q5_K] = BLOCKQ("q5_K", true, 256, 176, cz_q5_K_to_f32, cz_q5_K_from_f32, cz_q5_K_quantize, false),
    [CZ_TYPE_Q6_K] = BLOCKQ("q6_K", true, 256, 210, cz_q6_K_to_f32, cz_q6_K_from_f32, cz_q6_K_quantize, false),
    [CZ_TYPE_Q8_K] = BLOCK("q8_K", false, 256, 292, NULL, NULL), /* dot products only */
    [CZ_TYPE_IQ2_XXS] = BLOCK("iq2_xxs", true, 256, 66, NULL, NULL),
    [CZ_TYPE_IQ2_XS] = BLOCK("iq2_xs", true, 256, 74, NULL, NULL),
    [CZ_TYPE_IQ3_XXS] = BLOCK("iq3_xxs", true, 256, 98, NULL, NULL),
    [CZ_TYPE_IQ1_S] = BLOCK("iq1_s", true, 256, 50, NULL, NULL),
    [CZ_TYPE_IQ4_NL] = BLOCKQ("iq4_nl", true, 32, 18, cz_iq4_nl_to_f32, cz_iq4_nl_from_f32, cz_iq4_nl_quantize, false),
    [CZ_TYPE_IQ3_S] = BLOCK("iq3_s", true, 256, 110, NULL, NULL),
    [CZ_TYPE_IQ2_S] = BLOCK("iq2_s", true, 256, 82, NULL, NULL),
    [CZ_TYPE_IQ4_XS] = BLOCKQ("iq4_xs", true, 256, 136, cz_iq4_xs_to_f32, cz_iq4_xs_from_f32, cz_iq4_xs_quantize, false),
    [CZ_TYPE_I8] = PLAIN("i8", "I8", true, 1, 8, i8_to_f32, NULL),
    [CZ_TYPE_I16] = PLAIN("i16", "I16", true, 2, 16, i16_to_f32, NULL),
    [CZ_TYPE_I32] = PLAIN("i32", "I32", true, 4, 32, i32_to_f32, NULL),
    [CZ_TYPE_I64] = PLAIN("i64", "I64", true, 8, 64, NULL, NULL),
    [CZ_TYPE_F64] = PLAIN("f64", "F64", true, 8, 64, f64_to_f32, NULL),
    [CZ_TYPE_IQ1_M] = BLOCK("iq1_m", true, 256, 56, NULL, NULL),
    [CZ_TYPE_BF16] = PLAIN("bf16", "BF16", true, 2, 16, bf16_to_f32, bf16_from_f32),
    [CZ_TYPE_TQ1_0] = BLOCKQ("tq1_0", true, 256, 54, cz_tq1_0_to_f32, cz_tq1_0_from_f32, cz_tq1_0_quantize, false),
    [CZ_TYPE_TQ2_0] = BLOCKQ("tq2_0", true, 256, 66, cz_tq2_0_to_f32, cz_tq2_0_from_f32, cz_tq2_0_quantize, false),
    [CZ_TYPE_MXFP4] = BLOCKQ("mxfp4", true, 32, 17, cz_mxfp4_to_f32, cz_mxfp4_from_f32, cz_mxfp4_quantize, false),

    [CZ_TYPE_BOOL] = STONLY("bool", "BOOL", 8, NULL),
    [CZ_TYPE_U8] = STONLY("u8", "U8", 8, u8_to_f32),
    [CZ_TYPE_U16] = STONLY("u16", "U16", 16, NULL),
    [CZ_TYPE_U32] = STONLY("u32", "U32", 32, NULL),
    [CZ_TYPE_U64] = STONLY("u64", "U64", 64, NULL),
    [CZ_TYPE_F8_E4M3] = PLAIN("f8_e4m3", "F8_E4M3", false, 1, 8, f8e4m3_to_f32, f8e4m3_from_f32),
    [CZ_TYPE_F8_E5M2] = PLAIN("f8_e5m2", "F8_E5M2", false, 1, 8, f8e5m2_to_f32, f8e5m2_from_f32),
    [CZ_TYPE_F8_E8M0] = STONLY("f8_e8m0", "F8_E8M0", 8, NULL),
    [CZ_TYPE_F8_E4M3FNUZ] = STONLY("f8_e4m3fnuz", "F8_E4M3FNUZ", 8, NULL),
    [CZ_TYPE_F8_E5M2FNUZ] = STONLY("f8_e5m2fnuz", "F8_E5M2FNUZ", 8, NULL),
    [CZ_TYPE_F4] = STONLY("f4", "F4", 4, NULL),
    [CZ_TYPE_F6_E2M3] = STONLY("f6_e2m3", "F6_E2M3", 6, NULL),
    [CZ_TYPE_F6_E3M2] = STONLY("f6_e3m2", "F6_E3M2", 6, NULL),
    [CZ_TYPE_C64] = STONLY("c64", "C64", 64, NULL),
};

#undef PLAIN
#undef BLOCK
#undef STONLY

/* ---- queries ------------------------------------------------------------------------------- */

/* A hole in the enum is a zeroed row, recognisable by its missing name. */
const cz_type_traits *cz_type_get(int t) {
  if (t < 0 || t >= CZ_TYPE_COUNT) return NULL;
  return type_table[t].name ? &type_table[t] : NULL;
}

int cz_type_from_st_name(const char *st_name) {
  if (st_name == NULL) return -1;
  for (int t = 0; t < CZ_TYPE_COUNT; t++) {
    const char *s = type_table[t].st_name;
    if (s && strcmp(s, st_name) == 0) return t;
  }
  return -1;
}

/* Only ggml's ids: our names for safetensors-only types are labels, not a vocabulary that
 * recipes or GGUF files use. */
int cz_type_from_name(const char *name) {
  if (name == NULL) return -1;
  for (int t = 0; t < CZ_TYPE_GGML_END; t++) {
    const char *s = type_table[t].name;
    if (s && strcasecmp(s, name) == 0) return t;
  }
  return -1;
}

uint64_t cz_type_row_size(cz_type t, int64_t n) {
  const cz_type_traits *tr = cz_type_get((int)t);
  if (tr == NULL || n < 0) return 0;
  uint64_t un = (uint64_t)n;
  if (tr->type_size == 0) { /* sub-byte element: whole bytes only */
    if (un > UINT64_MAX / tr->bits) return 0;
    uint64_t nbits = un * tr->bits;
    return nbits % 8 == 0 ? nbits / 8 : 0;
  }
  if (un % (uint64_t)tr->blck_size != 0) return 0;
  uint64_t blocks = un / (uint64_t)tr->blck_size;
  if (blocks > UINT64_MAX / tr->type_size) return 0;
  return blocks * tr->type_size;
}
