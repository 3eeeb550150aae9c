/* cz_report: error statistics of a compressed tensor against its input, in float64.
 *
 * A tensor is compared chunk by chunk (the pipeline never holds a whole dequantized model),
 * so the statistics are sums that merge: accumulate each chunk, merge the per-chunk results
 * of one tensor, then derive the figures. Thread: a cz_errstat belongs to one thread;
 * merging is the caller's to serialize.
 */
#ifndef CZ_REPORT_H
#define CZ_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cz_cpu.h"

typedef struct {
  double sum_ref2;   /* sum of x^2 over the input */
  double sum_err2;   /* sum of (x - y)^2 */
  double max_abs;    /* max |x - y| */
  uint64_t count;    /* elements seen */
  uint64_t nonfinite;/* input elements that were NaN or Inf */
  double sum_dot;    /* sum of x*y over the finite x, for the cosine similarity */
  double sum_got2;   /* sum of y^2 over the finite x */
} cz_errstat;

/* Adds n elements: every sum above in one pass over ref and got (a whole-model run reads each
 * chunk once for all of them, instead of once per figure). */
void cz_errstat_add(cz_errstat *s, const float *ref, const float *got, int64_t n);
/* The same on a chosen instruction set, for tests and benchmarks (cz_errstat_add takes the
 * best the CPU has): returns false, touching nothing, when the CPU or the build lacks it. */
bool cz_errstat_add_isa(cz_errstat *s, const float *ref, const float *got, int64_t n,
                        cz_isa isa);
void cz_errstat_merge(cz_errstat *into, const cz_errstat *from);

/* Relative L2 error ||x-y|| / ||x|| (0 when both are zero). */
double cz_errstat_rel_l2(const cz_errstat *s);
/* SNR in dB, 10 log10(sum x^2 / sum (x-y)^2); returns +INFINITY when the error is zero. */
double cz_errstat_snr_db(const cz_errstat *s);
/* Cosine similarity of x and y: 1 when the error is zero, NaN when either is all zero. */
double cz_errstat_cosine(const cz_errstat *s);

/* A JSON number, or null for a non-finite value (JSON has no Inf). New reference. */
json_t *cz_json_real_or_null(double v);

#endif
