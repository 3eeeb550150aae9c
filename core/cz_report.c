/* cz_report: float64 error accumulators for the quality report. */
#include "cz_report.h"

#include <math.h>

/* Four interleaved partial sums (and maxima) per quantity, in registers: one serial double
 * sum is a chain of dependent additions (4 cycles an element), which cost whole-model runs
 * more than a Q8_0 encoder. The totals differ from a serial sum's only by rounding (and
 * chunks already merge in any order); the maximum is the same. */
void cz_errstat_add(cz_errstat *s, const float *ref, const float *got, int64_t n) {
  double r0 = 0, r1 = 0, r2 = 0, r3 = 0, e0 = 0, e1 = 0, e2 = 0, e3 = 0;
  double m0 = s->max_abs, m1 = m0, m2 = m0, m3 = m0;
  uint64_t bad = 0;
  int64_t i = 0;
  /* a NaN would poison every sum: count it and leave it out */
#define CZ_ERRSTAT_ACC(k)                          \
  do {                                             \
    const double x = ref[i + k], y = got[i + k];  \
    if (!isfinite(x)) {                            \
      bad++;                                       \
    } else {                                       \
      const double d = x - y;                      \
      r##k += x * x;                               \
      e##k += d * d;                               \
      if (fabs(d) > m##k) m##k = fabs(d);          \
    }                                              \
  } while (0)
  for (; i + 4 <= n; i += 4) {
    CZ_ERRSTAT_ACC(0);
    CZ_ERRSTAT_ACC(1);
    CZ_ERRSTAT_ACC(2);
    CZ_ERRSTAT_ACC(3);
  }
  for (; i < n; i++) CZ_ERRSTAT_ACC(0);
#undef CZ_ERRSTAT_ACC
  s->sum_ref2 += (r0 + r1) + (r2 + r3);
  s->sum_err2 += (e0 + e1) + (e2 + e3);
  m0 = m0 > m1 ? m0 : m1;
  m2 = m2 > m3 ? m2 : m3;
  s->max_abs = m0 > m2 ? m0 : m2;
  s->count += (uint64_t)n;
  s->nonfinite += bad;
}

void cz_errstat_merge(cz_errstat *into, const cz_errstat *from) {
  into->sum_ref2 += from->sum_ref2;
  into->sum_err2 += from->sum_err2;
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

json_t *cz_json_real_or_null(double v) {
  return isfinite(v) ? json_real(v) : json_null();
}
