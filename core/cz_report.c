/* cz_report: float64 error accumulators for the quality report. */
#include "cz_report.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

/* The scalar accumulation of one element into partial sum k (see cz_errstat_add). */
#define CZ_ERRSTAT_ACC(k, i)                       \
  do {                                             \
    const double x = ref[i], y = got[i];           \
    if (!isfinite(x)) {                            \
      bad++;                                       \
    } else {                                       \
      const double d = x - y;                      \
      r##k += x * x;                               \
      e##k += d * d;                               \
      p##k += x * y;                               \
      g##k += y * y;                               \
      if (fabs(d) > m##k) m##k = fabs(d);          \
    }                                              \
  } while (0)

/* AVX2: eight elements at a time in double lanes (the float -> double products are exact, as
 * in the scalar); a group of eight holding a non-finite reference goes through the scalar
 * code. max(|d|, m) keeps m when |d| is NaN, as the scalar comparison does. Returns the
 * number of elements done (a multiple of 8), adding into the scalar partial sums (the five
 * sums in s0[]: x², (x-y)², max |x-y|, x·y, y²). Fused multiply-adds: x², x·y and y² of
 * floats are exact in double, so only (x-y)² rounds differently from a multiply then add
 * (once, not twice); it halves the arithmetic of a pass that cost a Q4_0 run 15 % of its CPU. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx2,fma"))) static int64_t errstat_avx2(const float *ref, const float *got,
                                                             int64_t n, double s0[5],
                                                             uint64_t *badp) {
  __m256d ra = _mm256_setzero_pd(), rb = ra, ea = ra, eb = ra, pa = ra, pb = ra, ga = ra, gb = ra;
  __m256d ma = _mm256_set1_pd(s0[2]), mb = ma;
  const __m256d sign = _mm256_set1_pd(-0.0);
  double r1 = 0, e1 = 0, m1 = s0[2], p1 = 0, g1 = 0;
  uint64_t bad = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xf = _mm256_loadu_ps(ref + i), yf = _mm256_loadu_ps(got + i);
    const __m256i ex = _mm256_and_si256(_mm256_castps_si256(xf), _mm256_set1_epi32(0x7f800000));
    if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(ex, _mm256_set1_epi32(0x7f800000)))) {
      for (int k = 0; k < 8; k++) CZ_ERRSTAT_ACC(1, i + k);
      continue;
    }
    const __m256d xa = _mm256_cvtps_pd(_mm256_castps256_ps128(xf));
    const __m256d xb = _mm256_cvtps_pd(_mm256_extractf128_ps(xf, 1));
    const __m256d ya = _mm256_cvtps_pd(_mm256_castps256_ps128(yf));
    const __m256d yb = _mm256_cvtps_pd(_mm256_extractf128_ps(yf, 1));
    const __m256d da = _mm256_sub_pd(xa, ya), db = _mm256_sub_pd(xb, yb);
    ra = _mm256_fmadd_pd(xa, xa, ra);
    rb = _mm256_fmadd_pd(xb, xb, rb);
    ea = _mm256_fmadd_pd(da, da, ea);
    eb = _mm256_fmadd_pd(db, db, eb);
    pa = _mm256_fmadd_pd(xa, ya, pa);
    pb = _mm256_fmadd_pd(xb, yb, pb);
    ga = _mm256_fmadd_pd(ya, ya, ga);
    gb = _mm256_fmadd_pd(yb, yb, gb);
    ma = _mm256_max_pd(_mm256_andnot_pd(sign, da), ma);
    mb = _mm256_max_pd(_mm256_andnot_pd(sign, db), mb);
  }
  double t[4], u[4];
  _mm256_storeu_pd(t, _mm256_add_pd(ra, rb));
  s0[0] += ((t[0] + t[1]) + (t[2] + t[3])) + r1;
  _mm256_storeu_pd(t, _mm256_add_pd(ea, eb));
  s0[1] += ((t[0] + t[1]) + (t[2] + t[3])) + e1;
  _mm256_storeu_pd(t, _mm256_add_pd(pa, pb));
  s0[3] += ((t[0] + t[1]) + (t[2] + t[3])) + p1;
  _mm256_storeu_pd(t, _mm256_add_pd(ga, gb));
  s0[4] += ((t[0] + t[1]) + (t[2] + t[3])) + g1;
  _mm256_storeu_pd(t, ma);
  _mm256_storeu_pd(u, mb);
  for (int k = 0; k < 4; k++) {
    if (t[k] > m1) m1 = t[k];
    if (u[k] > m1) m1 = u[k];
  }
  s0[2] = m1;
  *badp += bad;
  return i;
}

/* The same with AVX-512: sixteen elements an iteration in two eight-double registers per sum,
 * a third of the AVX2 loop's instructions per element (its conversions and multiply-adds
 * made the report 15 % of a whole-model Q4_0 run's CPU). */
__attribute__((target("avx512f"))) static int64_t errstat_avx512(const float *ref,
                                                                  const float *got, int64_t n,
                                                                  double s0[5], uint64_t *badp) {
  __m512d ra = _mm512_setzero_pd(), rb = ra, ea = ra, eb = ra, pa = ra, pb = ra, ga = ra, gb = ra;
  __m512d ma = _mm512_set1_pd(s0[2]), mb = ma;
  const __m512i ex = _mm512_set1_epi32(0x7f800000);
  double r1 = 0, e1 = 0, m1 = s0[2], p1 = 0, g1 = 0;
  uint64_t bad = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 xf = _mm512_loadu_ps(ref + i), yf = _mm512_loadu_ps(got + i);
    if (_mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(xf), ex), ex)) {
      for (int k = 0; k < 16; k++) CZ_ERRSTAT_ACC(1, i + k);
      continue;
    }
    const __m512d xa = _mm512_cvtps_pd(_mm512_castps512_ps256(xf));
    const __m512d xb = _mm512_cvtps_pd(
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xf), 1)));
    const __m512d ya = _mm512_cvtps_pd(_mm512_castps512_ps256(yf));
    const __m512d yb = _mm512_cvtps_pd(
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(yf), 1)));
    const __m512d da = _mm512_sub_pd(xa, ya), db = _mm512_sub_pd(xb, yb);
    ra = _mm512_fmadd_pd(xa, xa, ra);
    rb = _mm512_fmadd_pd(xb, xb, rb);
    ea = _mm512_fmadd_pd(da, da, ea);
    eb = _mm512_fmadd_pd(db, db, eb);
    pa = _mm512_fmadd_pd(xa, ya, pa);
    pb = _mm512_fmadd_pd(xb, yb, pb);
    ga = _mm512_fmadd_pd(ya, ya, ga);
    gb = _mm512_fmadd_pd(yb, yb, gb);
    ma = _mm512_max_pd(_mm512_abs_pd(da), ma);
    mb = _mm512_max_pd(_mm512_abs_pd(db), mb);
  }
  double t[8], u[8];
  double *const out[4] = {&s0[0], &s0[1], &s0[3], &s0[4]};
  const __m512d sums[4] = {_mm512_add_pd(ra, rb), _mm512_add_pd(ea, eb), _mm512_add_pd(pa, pb),
                           _mm512_add_pd(ga, gb)};
  const double tails[4] = {r1, e1, p1, g1};
  for (int k = 0; k < 4; k++) {
    _mm512_storeu_pd(t, sums[k]);
    *out[k] += (((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))) + tails[k];
  }
  _mm512_storeu_pd(t, ma);
  _mm512_storeu_pd(u, mb);
  for (int k = 0; k < 8; k++) {
    if (t[k] > m1) m1 = t[k];
    if (u[k] > m1) m1 = u[k];
  }
  s0[2] = m1;
  *badp += bad;
  return i;
}
#endif

/* Partial sums (and maxima) in registers, vectorised with AVX2 when the CPU has it, else four
 * interleaved scalar ones: one serial double sum is a chain of dependent additions (4 cycles
 * an element), which cost whole-model runs more than a Q8_0 encoder. The totals differ from a
 * serial sum's only by rounding (and chunks already merge in any order); the maximum and
 * the non-finite count are the same. */
void cz_errstat_add(cz_errstat *s, const float *ref, const float *got, int64_t n) {
  cz_errstat_add_isa(s, ref, got, n, CZ_ISA_BEST);
}

bool cz_errstat_add_isa(cz_errstat *s, const float *ref, const float *got, int64_t n,
                        cz_isa isa) {
  double r0 = 0, r1 = 0, r2 = 0, r3 = 0, e0 = 0, e1 = 0, e2 = 0, e3 = 0;
  double p0 = 0, p1 = 0, p2 = 0, p3 = 0, g0 = 0, g1 = 0, g2 = 0, g3 = 0;
  double m0 = s->max_abs, m1 = m0, m2 = m0, m3 = m0;
  uint64_t bad = 0;
  int64_t i = 0;
  /* a NaN would poison every sum: count it and leave it out */
#if defined(__x86_64__) && defined(__GNUC__)
  const bool has512 = __builtin_cpu_supports("avx512f");
  const bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if ((isa == CZ_ISA_AVX512 && !has512) || (isa == CZ_ISA_AVX2 && !has2)) return false;
  if (isa != CZ_ISA_SCALAR && (has512 || has2)) {
    double v[5] = {0, 0, m0, 0, 0};
    i = has512 && isa != CZ_ISA_AVX2 ? errstat_avx512(ref, got, n, v, &bad)
                                     : errstat_avx2(ref, got, n, v, &bad);
    r0 = v[0], e0 = v[1], m0 = v[2], p0 = v[3], g0 = v[4];
  }
#else
  if (isa == CZ_ISA_AVX2 || isa == CZ_ISA_AVX512) return false;
#endif
  for (; i + 4 <= n; i += 4) {
    CZ_ERRSTAT_ACC(0, i);
    CZ_ERRSTAT_ACC(1, i + 1);
    CZ_ERRSTAT_ACC(2, i + 2);
    CZ_ERRSTAT_ACC(3, i + 3);
  }
  for (; i < n; i++) CZ_ERRSTAT_ACC(0, i);
  s->sum_ref2 += (r0 + r1) + (r2 + r3);
  s->sum_err2 += (e0 + e1) + (e2 + e3);
  s->sum_dot += (p0 + p1) + (p2 + p3);
  s->sum_got2 += (g0 + g1) + (g2 + g3);
  m0 = m0 > m1 ? m0 : m1;
  m2 = m2 > m3 ? m2 : m3;
  s->max_abs = m0 > m2 ? m0 : m2;
  s->count += (uint64_t)n;
  s->nonfinite += bad;
  return true;
}
#undef CZ_ERRSTAT_ACC

void cz_errstat_merge(cz_errstat *into, const cz_errstat *from) {
  into->sum_ref2 += from->sum_ref2;
  into->sum_err2 += from->sum_err2;
  into->sum_dot += from->sum_dot;
  into->sum_got2 += from->sum_got2;
  if (from->max_abs > into->max_abs) into->max_abs = from->max_abs;
  into->count += from->count;
  into->nonfinite += from->nonfinite;
}

double cz_errstat_rel_l2(const cz_errstat *s) {
  if (s->sum_err2 == 0) return 0;
  if (s->sum_ref2 == 0) return INFINITY;
  return sqrt(s->sum_err2 / s->sum_ref2);
}

double cz_errstat_snr_db(const cz_errstat *s) {
  if (s->sum_err2 == 0) return INFINITY;
  return 10.0 * log10(s->sum_ref2 / s->sum_err2);
}

double cz_errstat_cosine(const cz_errstat *s) {
  if (s->sum_err2 == 0) return 1.0;
  if (s->sum_ref2 == 0 || s->sum_got2 == 0) return NAN;
  return s->sum_dot / sqrt(s->sum_ref2 * s->sum_got2);
}

json_t *cz_json_real_or_null(double v) {
  return isfinite(v) ? json_real(v) : json_null();
}
