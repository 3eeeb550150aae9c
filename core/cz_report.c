/* cz_report: float64 error accumulators for the quality report. */
#include "cz_report.h"

#include <math.h>

void cz_errstat_add(cz_errstat *s, const float *ref, const float *got, int64_t n) {
  double r2 = 0, e2 = 0, mx = s->max_abs;
  uint64_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    double x = ref[i], y = got[i];
    if (!isfinite(x)) {  /* a NaN would poison every sum; count it and leave it out */
      bad++;
      continue;
    }
    double d = x - y;
    r2 += x * x;
    e2 += d * d;
    if (fabs(d) > mx) mx = fabs(d);
  }
  s->sum_ref2 += r2;
  s->sum_err2 += e2;
  s->max_abs = mx;
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
