/* test_type: the type table and the fp16/bf16/Q8_0 primitives against independent references;
 * the AVX2 twins of Q8_0 (cz_type.c's quantizer, cz_quants_legacy.c's quantizer and
 * dequantizer) and the F16C twin of F16 -> F32 against the scalar code. */
#include <math.h>
#include <stdint.h>

#include "cz_quants.h"
#include "cz_type.h"
#include "cz_test.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_F16C_REF 1
#else
#define HAVE_F16C_REF 0
#endif

/* ---- helpers ------------------------------------------------------------------------------- */

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* splitmix64: a small deterministic generator, so that a failure reproduces. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Report at most a few mismatches per check, then only count them. */
static int report_budget;
#define CHECK_BITS(what, x, got, want)                                                    \
  do {                                                                                    \
    if ((got) != (want)) {                                                                \
      cz_test_failures++;                                                                 \
      if (report_budget-- > 0)                                                            \
        printf("# %s: input 0x%08x: got 0x%04x, want 0x%04x\n", what, (unsigned)(x),      \
               (unsigned)(got), (unsigned)(want));                                        \
    }                                                                                     \
  } while (0)

/* ---- independent references ----------------------------------------------------------------- */

/* Value of a binary16 from its definition (IEEE 754 3.4), in double. */
static double half_value(uint16_t h) {
  int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  double v;
  if (exp == 31) v = mant ? NAN : INFINITY;
  else if (exp == 0) v = ldexp(mant, -24);
  else v = ldexp(1024 + mant, exp - 25);
  return sign ? -v : v;
}

/* Round a finite non-negative double a to a binary format with p significant bits (implicit
 * bit included) and minimum normal exponent emin, to nearest even, without overflow handling:
 * the quantum is 2^(E-p+1) with E = max(exponent of a, emin), and rint rounds half to even in
 * the default rounding mode. */
static double round_to_precision(double a, int p, int emin) {
  if (a == 0) return 0;
  int e;
  frexp(a, &e); /* a = m * 2^e, m in [0.5, 1): the leading bit is 2^(e-1) */
  int E = e - 1 < emin ? emin : e - 1;
  int q = E - (p - 1);
  return ldexp(rint(ldexp(a, -q)), q);
}

/* IEEE round-to-nearest-even of float f to binary16, as a double value (inf on overflow). */
static double ref_half_round(float f) {
  double r = round_to_precision(fabs((double)f), 11, -14);
  if (r > 65504.0) r = INFINITY;
  return signbit(f) ? -r : r;
}

/* The same for bfloat16: 8 significant bits, float's exponent range. */
static double ref_bf16_round(float f) {
  double r = round_to_precision(fabs((double)f), 8, -126);
  if (r > 0x1.FEp127) r = INFINITY;
  return signbit(f) ? -r : r;
}

/* bf16 by explicit integer round-half-even on the 16 dropped bits. */
static uint16_t ref_bf16_bits(uint32_t u) {
  uint32_t hi = u >> 16, lo = u & 0xFFFFu;
  if (lo > 0x8000u || (lo == 0x8000u && (hi & 1u))) hi++;
  return (uint16_t)hi;
}

#if HAVE_F16C_REF
__attribute__((target("f16c"))) static uint16_t f16c_from_f32(float f) {
  return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float f16c_to_f32(uint16_t h) { return _cvtsh_ss(h); }
#if defined(__clang__)
#include <cpuid.h>
/* Older clang has no "f16c" for __builtin_cpu_supports: ask CPUID leaf 1 (ECX bit 29). */
static int have_f16c(void) {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#else
static int have_f16c(void) { return __builtin_cpu_supports("f16c"); }
#endif
#else
static uint16_t f16c_from_f32(float f) { return 0; }
static float f16c_to_f32(uint16_t h) { return 0; }
static int have_f16c(void) { return 0; }
#endif

/* ---- fp16 ----------------------------------------------------------------------------------- */

static int half_is_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0; }

/* All 65,536 halves: fp16->fp32 equals the definition (and F16C); fp32->fp16 gives the half
 * back, except that a NaN comes back as a NaN (ggml's quiet 0x7E00 with the sign kept). */
static void test_fp16_exhaustive(void) {
  report_budget = 10;
  int f16c = have_f16c();
  for (uint32_t i = 0; i < 65536; i++) {
    uint16_t h = (uint16_t)i;
    float f = cz_fp16_to_fp32(h);
    double want = half_value(h);
    if (half_is_nan(h)) {
      CHECK(isnan(f));
      CHECK_BITS("fp16 NaN round trip", h, cz_fp32_to_fp16(f), (h & 0x8000) | 0x7E00);
      continue;
    }
    if ((double)f != want || !signbit(f) != !signbit(want)) {
      cz_test_failures++;
      if (report_budget-- > 0) printf("# fp16_to_fp32(0x%04x) = %a, want %a\n", h, f, want);
    }
    if (f16c) CHECK_BITS("fp16_to_fp32 vs F16C", h, bits_of(f), bits_of(f16c_to_f32(h)));
    CHECK_BITS("fp16 round trip", h, cz_fp32_to_fp16(f), h);
  }
  if (!f16c) printf("# no F16C on this machine: hardware cross-check skipped\n");
}

/* One float through both references; F16C only for finite values (its NaN differs). */
static void check_fp32_to_fp16(float f, int f16c) {
  uint16_t got = cz_fp32_to_fp16(f);
  uint32_t u = bits_of(f);
  if (isnan(f)) {
    CHECK_BITS("fp32_to_fp16 NaN", u, got, ((u >> 16) & 0x8000) | 0x7E00);
    return;
  }
  if (f16c && isfinite(f)) CHECK_BITS("fp32_to_fp16 vs F16C", u, got, f16c_from_f32(f));
  double want = ref_half_round(f);
  double have = half_value(got);
  if (have != want || !signbit(have) != !signbit(want)) {
    cz_test_failures++;
    if (report_budget-- > 0)
      printf("# fp32_to_fp16(%a = 0x%08x) = 0x%04x (%a), want %a\n", f, u, got, have, want);
  }
}

/* Every float whose 13 bits below the half mantissa are one of the patterns that decide the
 * rounding (exact, just above/below a tie, the tie itself, all ones) - that is every sign and
 * exponent and every half mantissa - plus 10 million random bit patterns. */
static void test_fp32_to_fp16_sweep(void) {
  static const uint32_t low13[] = {0x0000, 0x0001, 0x0002, 0x0800, 0x0FFF,
                                   0x1000, 0x1001, 0x1800, 0x1FFE, 0x1FFF};
  report_budget = 10;
  int f16c = have_f16c();
  for (uint32_t hi = 0; hi < (1u << 19); hi++)
    for (size_t k = 0; k < sizeof low13 / sizeof low13[0]; k++)
      check_fp32_to_fp16(float_of(hi << 13 | low13[k]), f16c);
  for (int i = 0; i < 10000000; i++) check_fp32_to_fp16(float_of((uint32_t)rng_next()), f16c);
}

/* The exact midpoints between neighbouring halves (ties: where round-half-even matters, and
 * where subnormal halves drop more than 13 bits) and the floats just either side of them. */
static void test_fp32_to_fp16_ties(void) {
  report_budget = 10;
  int f16c = have_f16c();
  for (uint32_t h = 0; h < 0x7C00; h++) {
    float mid = (float)((half_value((uint16_t)h) + half_value((uint16_t)(h + 1))) / 2);
    float probes[] = {mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
    for (int k = 0; k < 3; k++) {
      check_fp32_to_fp16(probes[k], f16c);
      check_fp32_to_fp16(-probes[k], f16c);
    }
  }
  CHECK_EQ_INT(cz_fp32_to_fp16(65519.99f), 0x7BFF);
  CHECK_EQ_INT(cz_fp32_to_fp16(65520.0f), 0x7C00);
  CHECK_EQ_INT(cz_fp32_to_fp16(INFINITY), 0x7C00);
  CHECK_EQ_INT(cz_fp32_to_fp16(-INFINITY), 0xFC00);
  CHECK_EQ_INT(cz_fp32_to_fp16(0x1p-25f), 0x0000);         /* tie with even 0 */
  CHECK_EQ_INT(cz_fp32_to_fp16(0x1.8p-24f), 0x0002);       /* tie with even 2 */
  CHECK_EQ_INT(cz_fp32_to_fp16(-0.0f), 0x8000);
  CHECK_EQ_INT(cz_fp32_to_fp16(float_of(0xFFC00001u)), 0xFE00);
}

/* ---- bf16 ----------------------------------------------------------------------------------- */

static void test_bf16_exhaustive(void) {
  report_budget = 10;
  for (uint32_t i = 0; i < 65536; i++) {
    uint16_t h = (uint16_t)i;
    float f = cz_bf16_to_fp32(h);
    CHECK_BITS("bf16_to_fp32", h, bits_of(f), i << 16);
    if ((h & 0x7F80) == 0x7F80 && (h & 0x7F)) {
      CHECK(isnan(f));
      uint16_t back = cz_fp32_to_bf16(f);
      CHECK((back & 0x7F80) == 0x7F80 && (back & 0x40));
      CHECK_BITS("bf16 NaN keeps top bits", h, back, h | 0x40);
    } else {
      CHECK_BITS("bf16 round trip", h, cz_fp32_to_bf16(f), h);
    }
  }
}

static void check_fp32_to_bf16(uint32_t u) {
  float f = float_of(u);
  uint16_t got = cz_fp32_to_bf16(f);
  if (isnan(f)) {
    CHECK_BITS("fp32_to_bf16 NaN", u, got, (u >> 16) | 0x40);
    return;
  }
  CHECK_BITS("fp32_to_bf16 vs integer RNE", u, got, ref_bf16_bits(u));
  double want = ref_bf16_round(f);
  double have = cz_bf16_to_fp32(got);
  if (have != want || !signbit(have) != !signbit(want)) {
    cz_test_failures++;
    if (report_budget-- > 0)
      printf("# fp32_to_bf16(%a = 0x%08x) = 0x%04x (%a), want %a\n", f, u, got, have, want);
  }
}

/* Every upper half with the decisive low-16 patterns, plus 10 million random floats. */
static void test_fp32_to_bf16_sweep(void) {
  static const uint32_t low16[] = {0x0000, 0x0001, 0x4000, 0x7FFF, 0x8000, 0x8001, 0xC000, 0xFFFF};
  report_budget = 10;
  for (uint32_t hi = 0; hi < 65536; hi++)
    for (size_t k = 0; k < sizeof low16 / sizeof low16[0]; k++) check_fp32_to_bf16(hi << 16 | low16[k]);
  for (int i = 0; i < 10000000; i++) check_fp32_to_bf16((uint32_t)rng_next());
  CHECK_EQ_INT(cz_fp32_to_bf16(float_of(0x7F7F8000u)), 0x7F80); /* tie to even overflows */
  CHECK_EQ_INT(cz_fp32_to_bf16(float_of(0x7F7E8000u)), 0x7F7E);
  CHECK_EQ_INT(cz_fp32_to_bf16(INFINITY), 0x7F80);
  CHECK_EQ_INT(cz_fp32_to_bf16(float_of(0x7F800001u)), 0x7FC0); /* signalling NaN stays NaN */
}

/* ---- Q8_0 ----------------------------------------------------------------------------------- */

/* Hand-checkable blocks: amax 127 makes d = 1 exactly, so the codes are roundf(x) - which
 * rounds halves away from zero (2.5 -> 3, -2.5 -> -3), unlike rint. */
static void test_q8_0_known_block(void) {
  float x[CZ_QK8_0] = {0};
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 0.49f;
  x[4] = -127.0f;
  x[5] = 1.5f;
  cz_block_q8_0 b;
  cz_quantize_row_q8_0(x, &b, CZ_QK8_0);
  CHECK_EQ_INT(b.d, 0x3C00);
  CHECK_EQ_INT(b.qs[0], 127);
  CHECK_EQ_INT(b.qs[1], 3);
  CHECK_EQ_INT(b.qs[2], -3);
  CHECK_EQ_INT(b.qs[3], 0);
  CHECK_EQ_INT(b.qs[4], -127);
  CHECK_EQ_INT(b.qs[5], 2);
  CHECK_EQ_INT(b.qs[6], 0);

  float zero[CZ_QK8_0] = {0}, y[CZ_QK8_0];
  cz_quantize_row_q8_0(zero, &b, CZ_QK8_0);
  CHECK_EQ_INT(b.d, 0);
  for (int j = 0; j < CZ_QK8_0; j++) CHECK_EQ_INT(b.qs[j], 0);
  cz_dequantize_row_q8_0(&b, y, CZ_QK8_0);
  for (int j = 0; j < CZ_QK8_0; j++) CHECK(y[j] == 0.0f);
}

/* Random rows: each element comes back within half a step (plus the fp16 rounding of d), and
 * the table's unaligned byte-buffer entry points agree with the struct ones. */
static void test_q8_0_random_rows(void) {
  enum { N = 32 * 64 };
  static float x[N], y[N], z[N];
  static cz_block_q8_0 q[N / CZ_QK8_0];
  static unsigned char raw[sizeof q + 1];
  for (int i = 0; i < N; i++)
    x[i] = (float)((double)(int64_t)rng_next() / 0x1p63 * ldexp(1, (int)(rng_next() % 20) - 10));
  cz_quantize_row_q8_0(x, q, N);
  cz_dequantize_row_q8_0(q, y, N);
  for (int b = 0; b < N / CZ_QK8_0; b++) {
    double d = cz_fp16_to_fp32(q[b].d);
    for (int j = 0; j < CZ_QK8_0; j++) {
      double err = fabs((double)x[b * 32 + j] - y[b * 32 + j]);
      CHECK(err <= 0.5 * d * 1.01 + fabs(x[b * 32 + j]) * 1e-3);
    }
  }
  const cz_type_traits *tr = cz_type_get(CZ_TYPE_Q8_0);
  tr->from_f32(x, raw + 1, N);
  CHECK(memcmp(raw + 1, q, sizeof q) == 0);
  tr->to_f32(raw + 1, z, N);
  CHECK(memcmp(y, z, sizeof y) == 0);
}

/* ---- the table ------------------------------------------------------------------------------ */

typedef struct {
  int id;
  const char *name, *st_name;
  int in_gguf;
  int64_t blck;
  size_t size;
  uint32_t bits;
} expected_row;

/* quant-formats.md 1.1-1.2 and the safetensors dtype list. */
static const expected_row expected[] = {
    {CZ_TYPE_F32, "f32", "F32", 1, 1, 4, 32},          {CZ_TYPE_F16, "f16", "F16", 1, 1, 2, 16},
    {CZ_TYPE_Q4_0, "q4_0", NULL, 1, 32, 18, 0},        {CZ_TYPE_Q4_1, "q4_1", NULL, 1, 32, 20, 0},
    {CZ_TYPE_Q5_0, "q5_0", NULL, 1, 32, 22, 0},        {CZ_TYPE_Q5_1, "q5_1", NULL, 1, 32, 24, 0},
    {CZ_TYPE_Q8_0, "q8_0", NULL, 1, 32, 34, 0},        {CZ_TYPE_Q8_1, "q8_1", NULL, 0, 32, 36, 0},
    {CZ_TYPE_Q2_K, "q2_K", NULL, 1, 256, 84, 0},       {CZ_TYPE_Q3_K, "q3_K", NULL, 1, 256, 110, 0},
    {CZ_TYPE_Q4_K, "q4_K", NULL, 1, 256, 144, 0},      {CZ_TYPE_Q5_K, "q5_K", NULL, 1, 256, 176, 0},
    {CZ_TYPE_Q6_K, "q6_K", NULL, 1, 256, 210, 0},      {CZ_TYPE_Q8_K, "q8_K", NULL, 0, 256, 292, 0},
    {CZ_TYPE_IQ2_XXS, "iq2_xxs", NULL, 1, 256, 66, 0}, {CZ_TYPE_IQ2_XS, "iq2_xs", NULL, 1, 256, 74, 0},
    {CZ_TYPE_IQ3_XXS, "iq3_xxs", NULL, 1, 256, 98, 0}, {CZ_TYPE_IQ1_S, "iq1_s", NULL, 1, 256, 50, 0},
    {CZ_TYPE_IQ4_NL, "iq4_nl", NULL, 1, 32, 18, 0},    {CZ_TYPE_IQ3_S, "iq3_s", NULL, 1, 256, 110, 0},
    {CZ_TYPE_IQ2_S, "iq2_s", NULL, 1, 256, 82, 0},     {CZ_TYPE_IQ4_XS, "iq4_xs", NULL, 1, 256, 136, 0},
    {CZ_TYPE_I8, "i8", "I8", 1, 1, 1, 8},              {CZ_TYPE_I16, "i16", "I16", 1, 1, 2, 16},
    {CZ_TYPE_I32, "i32", "I32", 1, 1, 4, 32},          {CZ_TYPE_I64, "i64", "I64", 1, 1, 8, 64},
    {CZ_TYPE_F64, "f64", "F64", 1, 1, 8, 64},          {CZ_TYPE_IQ1_M, "iq1_m", NULL, 1, 256, 56, 0},
    {CZ_TYPE_BF16, "bf16", "BF16", 1, 1, 2, 16},       {CZ_TYPE_TQ1_0, "tq1_0", NULL, 1, 256, 54, 0},
    {CZ_TYPE_TQ2_0, "tq2_0", NULL, 1, 256, 66, 0},     {CZ_TYPE_MXFP4, "mxfp4", NULL, 1, 32, 17, 0},
    {CZ_TYPE_BOOL, NULL, "BOOL", 0, 1, 1, 8},          {CZ_TYPE_U8, NULL, "U8", 0, 1, 1, 8},
    {CZ_TYPE_U16, NULL, "U16", 0, 1, 2, 16},           {CZ_TYPE_U32, NULL, "U32", 0, 1, 4, 32},
    {CZ_TYPE_U64, NULL, "U64", 0, 1, 8, 64},           {CZ_TYPE_F8_E4M3, NULL, "F8_E4M3", 0, 1, 1, 8},
    {CZ_TYPE_F8_E5M2, NULL, "F8_E5M2", 0, 1, 1, 8},    {CZ_TYPE_F8_E8M0, NULL, "F8_E8M0", 0, 1, 1, 8},
    {CZ_TYPE_F8_E4M3FNUZ, NULL, "F8_E4M3FNUZ", 0, 1, 1, 8},
    {CZ_TYPE_F8_E5M2FNUZ, NULL, "F8_E5M2FNUZ", 0, 1, 1, 8},
    {CZ_TYPE_F4, NULL, "F4", 0, 1, 0, 4},              {CZ_TYPE_F6_E2M3, NULL, "F6_E2M3", 0, 1, 0, 6},
    {CZ_TYPE_F6_E3M2, NULL, "F6_E3M2", 0, 1, 0, 6},    {CZ_TYPE_C64, NULL, "C64", 0, 1, 8, 64},
};
enum { N_EXPECTED = sizeof expected / sizeof expected[0] };

static const expected_row *expected_for(int id) {
  for (int i = 0; i < N_EXPECTED; i++)
    if (expected[i].id == id) return &expected[i];
  return NULL;
}

/* Every id from -1 past the end: listed ids have the expected row, every other id is a hole. */
/* The AVX2 Q8_0 twin writes the scalar reference's bytes: random magnitudes over 20 binades,
 * blocks aimed at roundf's halves (x * id landing on k + 0.5 of both signs), zeros of both
 * signs, a lone value, subnormals, large values, ties for the maximum; and the table's
 * quantize, which takes the twin on an AVX2 CPU. */
static void test_q8_0_avx2(void) {
  enum { NB = 4096, N = NB * CZ_QK8_0 };
  static float x[N];
  static cz_block_q8_0 want[NB];
  static unsigned char got[sizeof want + 2];
  for (int b = 0; b < NB; b++) {
    float *y = x + b * CZ_QK8_0;
    const int pos = (int)(rng_next() % 32);
    for (int j = 0; j < 32; j++)
      y[j] = (float)((double)(int64_t)rng_next() / 0x1p63 * ldexp(1, (int)(rng_next() % 20) - 10));
    switch (b % 8) {
      case 0: /* halves: amax 127 gives id 1 exactly, so x * id = k + 0.5 */
        for (int j = 0; j < 32; j++) y[j] = (float)((int)(rng_next() % 253) - 126) + (j % 2 ? 0.5f : -0.5f);
        y[pos] = b % 16 ? 127.0f : -127.0f;
        break;
      case 1: for (int j = 0; j < 32; j++) y[j] = j % 2 ? 0.0f : -0.0f; break;
      case 2: for (int j = 0; j < 32; j++) y[j] = 0.0f; y[pos] = -3.0f; break;
      case 3: for (int j = 0; j < 32; j++) y[j] *= 1e-40f; break;
      case 4: for (int j = 0; j < 32; j++) y[j] *= 1e30f; break;
      case 5: y[pos] = 2.0f; y[(pos + 5) % 32] = -2.0f; break;
      default: break;
    }
  }
  cz_quantize_row_q8_0(x, want, N);
  if (!__builtin_cpu_supports("avx2")) {
    CHECK(!cz_q8_0_from_f32_avx2(x, got, N));
    printf("# no AVX2: only the fallback checked\n");
    return;
  }
  memset(got, 0x5A, sizeof got);
  CHECK(cz_q8_0_from_f32_avx2(x, got + 1, N));
  CHECK(memcmp(got + 1, want, sizeof want) == 0);
  CHECK(got[0] == 0x5A && got[sizeof want + 1] == 0x5A);
  size_t bad = 0;
  for (size_t i = 0; i < sizeof want; i++) bad += got[1 + i] != ((unsigned char *)want)[i];
  if (bad) printf("# q8_0 avx2: %zu bytes differ\n", bad);
  memset(got, 0, sizeof got);
  CHECK_EQ_INT(cz_type_get(CZ_TYPE_Q8_0)->quantize(x, got, NB / 32, 32 * CZ_QK8_0, NULL),
               sizeof want);
  CHECK(memcmp(got, want, sizeof want) == 0);
}

/* The eight-block Q8_0 twin of cz_quants_legacy.c writes the scalar reference's bytes: the
 * inputs of test_q8_0_avx2 plus exact halves at other scales (amax 127 * 2^e: id = 2^-e, so
 * x * id = k + 0.5 of both signs), a maximum of either sign, -0.0 blocks, one subnormal or
 * huge lane, d subnormal with 1 / d finite or infinite; every block count 1 .. 40 (whole
 * groups of eight and a padded rest) from odd addresses, and a long row. */
static void test_q8_0_avx2_x8(void) {
  enum { NB = 4099, N = NB * CZ_QK8_0 };
  static float x[N + 1];
  static cz_block_q8_0 want[NB];
  static unsigned char got[sizeof want + 2];
  float *xs = x + 1; /* a source that is not 32-byte aligned */
  for (int b = 0; b < NB; b++) {
    float *y = xs + b * CZ_QK8_0;
    const int pos = (int)(rng_next() % 32), e = (int)(rng_next() % 60) - 30;
    for (int j = 0; j < 32; j++)
      y[j] = (float)((double)(int64_t)rng_next() / 0x1p63 * ldexp(1, (int)(rng_next() % 20) - 10));
    switch (b % 13) {
      case 0: case 1: /* halves at scale 2^e */
        for (int j = 0; j < 32; j++)
          y[j] = ldexpf((float)((int)(rng_next() % 253) - 126) + (j % 2 ? 0.5f : -0.5f), e);
        y[pos] = ldexpf(b % 2 ? 127.0f : -127.0f, e);
        break;
      case 2: for (int j = 0; j < 32; j++) y[j] = -0.0f; break;
      case 3: for (int j = 0; j < 32; j++) y[j] = j % 3 ? 0.0f : -0.0f; break;
      case 4: for (int j = 0; j < 32; j++) y[j] = 0.0f; y[pos] = b % 2 ? 1e-42f : -3e38f; break;
      case 5: for (int j = 0; j < 32; j++) y[j] *= 1e-40f; break; /* 1 / d infinite */
      case 6: for (int j = 0; j < 32; j++) y[j] *= 4e-37f; break; /* d subnormal, 1 / d finite */
      case 7: for (int j = 0; j < 32; j++) y[j] *= 3e37f; break;
      case 8: y[pos] = 5.0f; y[(pos + 3) % 32] = -5.0f; break;
      case 9: for (int j = 0; j < 32; j++) y[j] = (float)(j - 16) * 0.5f; break;
      default: break;
    }
  }
  cz_quantize_row_q8_0(xs, want, N);
  if (!__builtin_cpu_supports("avx2") || !have_f16c()) {
    CHECK(!cz_q8_0_from_f32_avx2(xs, got, N));
    printf("# no AVX2 and F16C: only the fallback checked\n");
    return;
  }
  for (int nb = 1; nb <= 41; nb++) {
    const int blocks = nb == 41 ? NB : nb, start = nb == 41 ? 0 : (nb * 97) % (NB - 40);
    const size_t bytes = (size_t)blocks * sizeof(cz_block_q8_0);
    memset(got, 0x5A, sizeof got);
    CHECK(cz_q8_0_from_f32_avx2(xs + start * CZ_QK8_0, got + 1, (int64_t)blocks * CZ_QK8_0));
    size_t bad = 0;
    for (size_t i = 0; i < bytes; i++) bad += got[1 + i] != ((unsigned char *)(want + start))[i];
    if (bad) printf("# q8_0 avx2 x8, %d blocks from %d: %zu bytes differ\n", blocks, start, bad);
    CHECK_EQ_INT(bad, 0);
    CHECK(got[0] == 0x5A && got[bytes + 1] == 0x5A); /* nothing written around */
  }
}

/* The Q8_0 dequantizer twin gives cz_dequantize_row_q8_0's bits for blocks of random bytes
 * whose scales are zeros of both signs, subnormal, huge, infinite, NaN (signaling and quiet)
 * and random halves, codes -128 .. 127; every block count 1 .. 40 and a long row, from odd
 * addresses. */
static void test_q8_0_to_f32_avx2(void) {
  enum { NB = 2051, N = NB * CZ_QK8_0 };
  static cz_block_q8_0 q[NB];
  static unsigned char raw[sizeof q + 1];
  static float want[N], got[N + 1];
  for (int b = 0; b < NB; b++) {
    for (int j = 0; j < 32; j++) q[b].qs[j] = (int8_t)(rng_next() & 0xFF);
    static const uint16_t special[] = {0x0000, 0x8000, 0x0001, 0x83FF, 0x7BFF, 0xFBFF,
                                       0x7C00, 0xFC00, 0x7C01, 0xFE00, 0x3C00, 0x0400};
    q[b].d = b % 3 ? (uint16_t)(rng_next() & 0xFFFF) : special[(b / 3) % 12];
  }
  memcpy(raw + 1, q, sizeof q);
  cz_dequantize_row_q8_0(q, want, N);
  if (!__builtin_cpu_supports("avx2") || !have_f16c()) {
    CHECK(!cz_q8_0_to_f32_avx2(raw + 1, got, N));
    printf("# no AVX2 and F16C: only the fallback checked\n");
    return;
  }
  for (int nb = 1; nb <= 41; nb++) {
    const int blocks = nb == 41 ? NB : nb, start = nb == 41 ? 0 : (nb * 89) % (NB - 40);
    const int64_t n = (int64_t)blocks * CZ_QK8_0;
    for (int64_t i = 0; i <= n; i++) got[i] = float_of(0x5A5A5A5Au);
    CHECK(cz_q8_0_to_f32_avx2(raw + 1 + start * sizeof(cz_block_q8_0), got, n));
    size_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += bits_of(got[i]) != bits_of(want[start * CZ_QK8_0 + i]);
    if (bad) printf("# q8_0 to_f32 avx2, %d blocks from %d: %zu floats differ\n", blocks, start, bad);
    CHECK_EQ_INT(bad, 0);
    CHECK(bits_of(got[n]) == 0x5A5A5A5Au);
  }
}

/* The F16C converter gives cz_fp16_to_fp32's bits for all 65536 halves, NaNs included, at
 * every offset (odd byte addresses, lengths that leave a scalar tail); so does the table. */
static void test_f16_to_f32_f16c(void) {
  static unsigned char h[2 * 65536 + 1];
  static float got[65536], want[65536];
  for (uint32_t i = 0; i < 65536; i++) {
    const uint16_t v = (uint16_t)i;
    memcpy(h + 1 + 2 * i, &v, 2);
    want[i] = cz_fp16_to_fp32(v);
  }
  if (!have_f16c() || !__builtin_cpu_supports("avx2")) {
    CHECK(!cz_f16_to_f32_f16c(h + 1, got, 65536));
    printf("# no F16C: only the fallback checked\n");
    return;
  }
  for (int tail = 0; tail < 8; tail++) {
    const int64_t n = 65536 - tail;
    memset(got, 0, sizeof got);
    CHECK(cz_f16_to_f32_f16c(h + 1, got, n));
    size_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += bits_of(got[i]) != bits_of(want[i]);
    CHECK_EQ_INT(bad, 0);
    CHECK(bits_of(got[n - 1]) == bits_of(want[n - 1]));
  }
  memset(got, 0, sizeof got);
  cz_type_get(CZ_TYPE_F16)->to_f32(h + 1, got, 65536);
  CHECK(memcmp(got, want, sizeof got) == 0);
}

/* cz_f16_to_f32_finite (the pipeline's converter), best, AVX2 and AVX-512: on the 63,488 finite halves, all in one
 * buffer from an odd address with every tail length, cz_fp16_to_fp32's bits and 1; with a
 * single Inf or NaN (each of the 2,048) put at a vector position or in the scalar tail, 0. */
static void test_f16_to_f32_finite(void) {
  static unsigned char h[2 * 65536 + 1];
  static float got[65536], want[65536];
  int64_t nf = 0;
  for (uint32_t i = 0; i < 65536; i++) {
    const uint16_t v = (uint16_t)i;
    if ((v & 0x7c00) == 0x7c00) continue;
    memcpy(h + 1 + 2 * nf, &v, 2);
    want[nf++] = cz_fp16_to_fp32(v);
  }
  CHECK_EQ_INT(nf, 63488);
  if (!have_f16c() || !__builtin_cpu_supports("avx2")) {
    CHECK(cz_f16_to_f32_finite(h + 1, got, nf) == -1);
    printf("# no F16C: only the fallback checked\n");
    return;
  }
  for (int isa = CZ_ISA_BEST; isa <= CZ_ISA_AVX512; isa++) {
    if (isa == CZ_ISA_SCALAR) continue;
    if (cz_f16_to_f32_finite_isa(h + 1, got, 16, (cz_isa)isa) < 0) {
      CHECK(isa == CZ_ISA_AVX512);
      printf("# no AVX-512: its loop not checked\n");
      continue;
    }
    for (int tail = 0; tail < 17; tail++) {
      const int64_t n = nf - tail;
      memset(got, 0, sizeof got);
      CHECK(cz_f16_to_f32_finite_isa(h + 1, got, n, (cz_isa)isa) == 1);
      size_t bad = 0;
      for (int64_t i = 0; i < n; i++) bad += bits_of(got[i]) != bits_of(want[i]);
      CHECK_EQ_INT(bad, 0);
    }
    size_t missed = 0;
    const int64_t n = 1000; /* 62 groups of 16 (125 of 8) and a tail of 8 */
    for (uint32_t v = 0x7c00; v <= 0xffff; v++) {
      if ((v & 0x7c00) != 0x7c00) continue;
      static const int64_t at[] = {0, 7, 8, 15, 16, 500, 991, 992, 995, 999};
      for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        unsigned char save[2];
        memcpy(save, h + 1 + 2 * at[k], 2);
        const uint16_t hv = (uint16_t)v;
        memcpy(h + 1 + 2 * at[k], &hv, 2);
        missed += cz_f16_to_f32_finite_isa(h + 1, got, n, (cz_isa)isa) != 0;
        memcpy(h + 1 + 2 * at[k], save, 2);
      }
    }
    CHECK_EQ_INT(missed, 0);
  }
}

static void test_table_rows(void) {
  for (int id = -2; id < CZ_TYPE_COUNT + 3; id++) {
    const cz_type_traits *tr = cz_type_get(id);
    const expected_row *e = expected_for(id);
    if (e == NULL) {
      if (tr != NULL) printf("# id %d should be a hole\n", id);
      CHECK(tr == NULL);
      continue;
    }
    CHECK(tr != NULL);
    if (tr == NULL) continue;
    if (e->name) CHECK_EQ_STR(tr->name, e->name);
    CHECK(tr->name != NULL && tr->name[0] != '\0');
    if (e->st_name) CHECK_EQ_STR(tr->st_name, e->st_name);
    else CHECK(tr->st_name == NULL);
    CHECK_EQ_INT(tr->in_gguf, e->in_gguf);
    CHECK_EQ_INT(tr->blck_size, e->blck);
    CHECK_EQ_INT(tr->type_size, e->size);
    CHECK_EQ_INT(tr->bits, e->bits);
    CHECK_EQ_INT(tr->is_quantized, e->blck > 1);
    /* Internal consistency: plain types have whole-byte or sub-byte elements of `bits`. */
    if (tr->blck_size == 1) CHECK(tr->type_size * 8 == tr->bits || (tr->type_size == 0 && tr->bits < 8));
    if (id >= CZ_TYPE_GGML_END) CHECK(!tr->in_gguf);
  }
}

static void test_table_converters(void) {
  static const int with_to[] = {CZ_TYPE_F32, CZ_TYPE_F16, CZ_TYPE_BF16, CZ_TYPE_F64, CZ_TYPE_I8,
                                CZ_TYPE_I16, CZ_TYPE_I32, CZ_TYPE_U8, CZ_TYPE_Q8_0};
  static const int with_from[] = {CZ_TYPE_F32, CZ_TYPE_F16, CZ_TYPE_BF16, CZ_TYPE_Q8_0};
  for (int i = 0; i < (int)(sizeof with_to / sizeof *with_to); i++)
    CHECK(cz_type_get(with_to[i])->to_f32 != NULL);
  for (int i = 0; i < (int)(sizeof with_from / sizeof *with_from); i++)
    CHECK(cz_type_get(with_from[i])->from_f32 != NULL);

  /* Plain decoders from an odd address (safetensors data need not be aligned). */
  unsigned char buf[1 + 4 * 8];
  float out[4];
  const int8_t i8[4] = {-128, -1, 0, 127};
  memcpy(buf + 1, i8, sizeof i8);
  cz_type_get(CZ_TYPE_I8)->to_f32(buf + 1, out, 4);
  CHECK(out[0] == -128 && out[1] == -1 && out[2] == 0 && out[3] == 127);
  const int16_t i16[4] = {-32768, -2, 3, 32767};
  memcpy(buf + 1, i16, sizeof i16);
  cz_type_get(CZ_TYPE_I16)->to_f32(buf + 1, out, 4);
  CHECK(out[0] == -32768 && out[1] == -2 && out[2] == 3 && out[3] == 32767);
  const int32_t i32[4] = {-7, 1 << 24, 5, -(1 << 20)};
  memcpy(buf + 1, i32, sizeof i32);
  cz_type_get(CZ_TYPE_I32)->to_f32(buf + 1, out, 4);
  CHECK(out[0] == -7 && out[1] == 16777216.0f && out[2] == 5 && out[3] == -1048576.0f);
  const uint8_t u8[4] = {0, 1, 200, 255};
  memcpy(buf + 1, u8, sizeof u8);
  cz_type_get(CZ_TYPE_U8)->to_f32(buf + 1, out, 4);
  CHECK(out[0] == 0 && out[1] == 1 && out[2] == 200 && out[3] == 255);
  const double f64[4] = {0.1, -2.5, 1e300, 3.0};
  memcpy(buf + 1, f64, sizeof f64);
  cz_type_get(CZ_TYPE_F64)->to_f32(buf + 1, out, 4);
  CHECK(out[0] == 0.1f && out[1] == -2.5f && isinf(out[2]) && out[3] == 3.0f);

  /* f32/f16/bf16 encoders and decoders through the table, unaligned. */
  const float vals[4] = {1.0f, -0.333333f, 65504.0f, 1e-6f};
  static const int kinds[] = {CZ_TYPE_F32, CZ_TYPE_F16, CZ_TYPE_BF16};
  for (int k = 0; k < 3; k++) {
    const cz_type_traits *tr = cz_type_get(kinds[k]);
    tr->from_f32(vals, buf + 1, 4);
    tr->to_f32(buf + 1, out, 4);
    for (int i = 0; i < 4; i++) {
      float want = kinds[k] == CZ_TYPE_F32   ? vals[i]
                   : kinds[k] == CZ_TYPE_F16 ? cz_fp16_to_fp32(cz_fp32_to_fp16(vals[i]))
                                             : cz_bf16_to_fp32(cz_fp32_to_bf16(vals[i]));
      CHECK(bits_of(out[i]) == bits_of(want));
    }
  }
}

static void test_name_lookups(void) {
  for (int i = 0; i < N_EXPECTED; i++) {
    const expected_row *e = &expected[i];
    if (e->name) {
      CHECK_EQ_INT(cz_type_from_name(e->name), e->id);
      char upper[32];
      size_t n = strlen(e->name);
      for (size_t j = 0; j <= n; j++)
        upper[j] = (char)(e->name[j] >= 'a' && e->name[j] <= 'z' ? e->name[j] - 32 : e->name[j]);
      CHECK_EQ_INT(cz_type_from_name(upper), e->id);
    }
    if (e->st_name) {
      CHECK_EQ_INT(cz_type_from_st_name(e->st_name), e->id);
      char lower[32];
      size_t n = strlen(e->st_name);
      for (size_t j = 0; j <= n; j++)
        lower[j] = (char)(e->st_name[j] >= 'A' && e->st_name[j] <= 'Z' ? e->st_name[j] + 32
                                                                        : e->st_name[j]);
      CHECK_EQ_INT(cz_type_from_st_name(lower), -1); /* safetensors dtypes are case-exact */
    }
  }
  CHECK_EQ_INT(cz_type_from_name("Q4_k"), CZ_TYPE_Q4_K);
  CHECK_EQ_INT(cz_type_from_name("q4_2"), -1);
  CHECK_EQ_INT(cz_type_from_name(""), -1);
  CHECK_EQ_INT(cz_type_from_name("q8_0 "), -1);
  CHECK_EQ_INT(cz_type_from_name(NULL), -1);
  CHECK_EQ_INT(cz_type_from_name("bool"), -1); /* only ggml's names */
  CHECK_EQ_INT(cz_type_from_st_name("Q8_0"), -1);
  CHECK_EQ_INT(cz_type_from_st_name("F8_E4M3FN"), -1);
  CHECK_EQ_INT(cz_type_from_st_name(""), -1);
  CHECK_EQ_INT(cz_type_from_st_name(NULL), -1);
}

static void test_row_size(void) {
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_Q8_0, 64), 68);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_Q8_0, 33), 0);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_Q4_K, 256), 144);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_Q4_K, 4096), 16 * 144);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_Q4_K, 128), 0);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_F16, 7), 14);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_F32, 0), 0);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_C64, 3), 24);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_F4, 4), 2);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_F4, 3), 0);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_F6_E2M3, 4), 3);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_F6_E3M2, 5), 0);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_F32, -4), 0);
  CHECK_EQ_INT(cz_type_row_size((cz_type)4, 32), 0);
  CHECK_EQ_INT(cz_type_row_size((cz_type)CZ_TYPE_COUNT, 32), 0);
  /* Overflow: the product would wrap 64 bits. */
  CHECK(cz_type_row_size(CZ_TYPE_F32, INT64_C(1) << 61) == UINT64_C(1) << 63);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_F32, INT64_C(1) << 62), 0);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_F64, INT64_MAX), 0);
  /* A block type with more bytes than elements per block still fits for any int64 n. */
  CHECK(cz_type_row_size(CZ_TYPE_Q8_K, INT64_MAX - INT64_MAX % 256) ==
        (uint64_t)(INT64_MAX / 256) * 292);
  CHECK(cz_type_row_size(CZ_TYPE_Q8_0, INT64_C(1) << 40) == (UINT64_C(1) << 35) * 34);
  CHECK_EQ_INT(cz_type_row_size(CZ_TYPE_F4, INT64_MAX), 0);
  CHECK(cz_type_row_size(CZ_TYPE_I8, INT64_MAX) == (uint64_t)INT64_MAX);
}


/* ---- 8-bit floats, against a brute-force reference ---- */

/* Value of an 8-bit float code from the format's definition, in double. */
static double f8_ref_value(unsigned v, int ebits, int mbits, int bias) {
  int e = (int)(v >> mbits) & ((1 << ebits) - 1), m = (int)v & ((1 << mbits) - 1);
  double mag = e == 0 ? ldexp((double)m, 1 - bias - mbits)
                      : ldexp((double)((1 << mbits) + m), e - bias - mbits);
  return (v & 0x80) ? -mag : mag;
}

/* Nearest code among candidates (ties to the even code), the encoders' contract. cand holds
 * positive codes with their values; the result takes x's sign. */
static unsigned f8_ref_encode(double x, const unsigned *codes, const double *vals, int n) {
  double a = fabs(x);
  int best = 0;
  for (int i = 1; i < n; i++) {
    double db = fabs(vals[best] - a), di = fabs(vals[i] - a);
    if (di < db || (di == db && (codes[i] & 1) == 0 && (codes[best] & 1))) best = i;
  }
  return codes[best] | (signbit(x) ? 0x80u : 0u);
}

static void check_f8(const char *name, int ebits, int mbits, int bias, float (*dec)(uint8_t),
                     uint8_t (*enc)(float), bool e4m3) {
  unsigned codes[130];
  double vals[130];
  int n = 0;
  for (unsigned v = 0; v < 128; v++) {
    int e = (int)(v >> mbits);
    bool special = e4m3 ? v == 0x7F : e == (1 << ebits) - 1;
    double ref = f8_ref_value(v, ebits, mbits, bias);
    for (unsigned s = 0; s < 2; s++) {
      unsigned c = v | (s << 7);
      float got = dec((uint8_t)c);
      if (special) {
        bool inf = !e4m3 && (v & ((1u << mbits) - 1)) == 0;
        if (inf ? !isinf(got) : !isnan(got)) { CHECK(!"special code decodes wrong"); printf("# %s %02x\n", name, c); }
        continue;
      }
      double want = s ? -ref : ref;
      if ((double)got != want || (signbit(got) != 0) != (s != 0)) {
        CHECK(!"decode differs from the definition");
        printf("# %s code %02x: %g != %g\n", name, c, got, want);
      }
      if (enc(got) != c) { CHECK(!"round trip"); printf("# %s code %02x -> %02x\n", name, c, enc(got)); }
    }
    if (!special) {
      codes[n] = v;
      vals[n++] = ref;
    }
  }
  /* the code just past the largest finite value: NaN for E4M3 (480), Inf for E5M2 */
  codes[n] = e4m3 ? 0x7F : 0x7C;
  vals[n++] = e4m3 ? 480.0 : 65536.0;
  uint64_t rng = 0x9E3779B97F4A7C15ull;
  int bad = 0;
  for (int i = 0; i < 2000000 + 4 * n; i++) {
    float x;
    if (i < 4 * n) {  /* every midpoint, and one float either side of it */
      int k = i / 4 % (n - 1), side = i % 4;
      double mid = (vals[k] + vals[k + 1]) / 2;
      x = (float)mid;
      if (side == 1) x = nextafterf(x, 0);
      if (side == 2) x = nextafterf(x, INFINITY);
      if (side == 3) x = -x;
    } else {
      rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
      uint32_t u = (uint32_t)rng;
      /* exponents spread over the format's range and a little beyond */
      u = (u & 0x807FFFFFu) | ((uint32_t)(127 - bias - mbits - 3 + (int)((rng >> 40) % (uint64_t)(bias * 2 + mbits + 8))) << 23);
      memcpy(&x, &u, sizeof x);
    }
    unsigned want = f8_ref_encode(x, codes, vals, n);
    unsigned got = enc(x);
    if (got != want && bad++ < 5) printf("# %s encode(%a) = %02x, want %02x\n", name, x, got, want);
  }
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(enc(NAN) & 0x7F, 0x7F);
  CHECK_EQ_INT(enc(INFINITY), e4m3 ? 0x7F : 0x7C);
  CHECK_EQ_INT(enc(-INFINITY), e4m3 ? 0xFF : 0xFC);
  CHECK_EQ_INT(enc(1e30f), e4m3 ? 0x7F : 0x7C);
}

static void test_f8_e4m3_exhaustive(void) {
  check_f8("e4m3", 4, 3, 7, cz_f8e4m3_to_fp32, cz_fp32_to_f8e4m3, true);
  CHECK((double)cz_f8e4m3_to_fp32(0x7E) == 448.0);
}

static void test_f8_e5m2_exhaustive(void) {
  check_f8("e5m2", 5, 2, 15, cz_f8e5m2_to_fp32, cz_fp32_to_f8e5m2, false);
  CHECK((double)cz_f8e5m2_to_fp32(0x7B) == 57344.0);
}

int main(void) {
  static const cz_test_case cases[] = {
      CZ_TEST(test_fp16_exhaustive),    CZ_TEST(test_fp32_to_fp16_sweep),
      CZ_TEST(test_fp32_to_fp16_ties),  CZ_TEST(test_bf16_exhaustive),
      CZ_TEST(test_fp32_to_bf16_sweep), CZ_TEST(test_q8_0_known_block),
      CZ_TEST(test_q8_0_random_rows),   CZ_TEST(test_q8_0_avx2),
      CZ_TEST(test_q8_0_avx2_x8),       CZ_TEST(test_q8_0_to_f32_avx2),
      CZ_TEST(test_f16_to_f32_f16c),    CZ_TEST(test_f16_to_f32_finite), CZ_TEST(test_table_rows),
      CZ_TEST(test_table_converters),   CZ_TEST(test_name_lookups),
      CZ_TEST(test_row_size),           CZ_TEST(test_f8_e4m3_exhaustive),
      CZ_TEST(test_f8_e5m2_exhaustive),
  };
  return cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
}
