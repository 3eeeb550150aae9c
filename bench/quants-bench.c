/* quants-bench: single-core throughput of every GGUF block quantizer in the type table, in GB/s
 * of f32 input, for the paths a job uses:
 *   ref      from_f32 (ggml's *_ref, scalar), row by row
 *   file     quantize(imatrix = NULL), the path of a job without calibration (the AVX2 twin for
 *            q4_0 q4_1 q5_0 q5_1 when the CPU has AVX2)
 *   imatrix  quantize with importance weights (types whose ggml quantizer uses them)
 * and, for the four legacy types, the speed-up of file over ref with a check that the two
 * wrote the same bytes.
 *
 * Build against a configured tree's libczcore.a (a sanitizer build measures ASan, not code):
 *   cc -std=gnu11 -O2 -Icore bench/quants-bench.c BUILD/libczcore.a \
 *      $(pkg-config --libs jansson lapacke openblas) -lpthread -lm -o /tmp/quants-bench
 * Usage: quants-bench [MIB_OF_F32 (default 64)] [REPETITIONS (default 5)] [TYPE ...]
 * Data: N(0, 0.02) weights with 0.5 % outliers at 10x, rows of 4096; the best of the
 * repetitions is reported (the machine is shared; the best is the least disturbed). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cz_quants.h"
#include "cz_type.h"

enum { COLS = 4096 };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static double unit(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

typedef enum { P_REF, P_FILE, P_IMATRIX } path;

/* Best wall time of reps runs of one path over rows x COLS floats. */
static double best_time(const cz_type_traits *tr, path p, const float *x, uint8_t *q,
                        int64_t rows, const float *imp, int reps) {
  const size_t row_bytes = (size_t)cz_type_row_size((cz_type)(tr - cz_type_get(0)), COLS);
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    const double t0 = now_s();
    if (p == P_REF) {
      for (int64_t i = 0; i < rows; i++) tr->from_f32(x + i * COLS, q + (size_t)i * row_bytes, COLS);
    } else {
      tr->quantize(x, q, rows, COLS, p == P_IMATRIX ? imp : NULL);
    }
    const double t = now_s() - t0;
    if (t < best) best = t;
  }
  return best;
}

static bool wanted(const char *name, int argc, char **argv) {
  if (argc <= 3) return true;
  for (int i = 3; i < argc; i++)
    if (strcmp(argv[i], name) == 0) return true;
  return false;
}

/* Types whose ggml quantizer ignores importance weights: no imatrix column. */
static bool ignores_imatrix(int t) {
  return t == CZ_TYPE_Q8_0 || t == CZ_TYPE_MXFP4 || t == CZ_TYPE_TQ1_0 || t == CZ_TYPE_TQ2_0;
}

int main(int argc, char **argv) {
  const double mib = argc > 1 ? atof(argv[1]) : 64;
  const int reps = argc > 2 ? atoi(argv[2]) : 5;
  const int64_t rows = (int64_t)(mib * 1048576.0 / 4 / COLS) > 0 ? (int64_t)(mib * 1048576.0 / 4 / COLS) : 1;
  const int64_t n = rows * COLS;
  float *x = malloc((size_t)n * sizeof *x), *imp = malloc(COLS * sizeof *imp);
  uint8_t *q = malloc((size_t)n * 2), *q2 = malloc((size_t)n * 2);
  if (!x || !imp || !q || !q2) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  for (int64_t i = 0; i < n; i++) {
    const double g = sqrt(-2.0 * log(unit())) * cos(6.283185307179586 * unit());
    x[i] = (float)(g * 0.02 * (unit() < 0.005 ? 10 : 1));
  }
  for (int j = 0; j < COLS; j++) imp[j] = (float)(0.1 + 2.0 * unit());
  const double gb = (double)n * 4 / 1e9;
  printf("# %lld rows x %d f32 (%.1f MB), best of %d, one thread, AVX2 %s\n", (long long)rows,
         COLS, gb * 1e3, reps, __builtin_cpu_supports("avx2") ? "yes" : "no");
  printf("%-8s %10s %10s %10s %8s\n", "type", "ref GB/s", "file GB/s", "imat GB/s", "file/ref");
  for (int t = 0; t < CZ_TYPE_GGML_END; t++) {
    const cz_type_traits *tr = cz_type_get(t);
    if (tr == NULL || !tr->is_quantized || tr->quantize == NULL || tr->from_f32 == NULL) continue;
    if (COLS % tr->blck_size != 0 || !wanted(tr->name, argc, argv)) continue;
    const double tref = best_time(tr, P_REF, x, q2, rows, imp, reps);
    const double tfile = best_time(tr, P_FILE, x, q, rows, imp, reps);
    const size_t nb = (size_t)cz_type_row_size((cz_type)t, COLS) * (size_t)rows;
    const bool same = memcmp(q, q2, nb) == 0;
    char imcol[32] = "-";
    if (!ignores_imatrix(t))
      snprintf(imcol, sizeof imcol, "%.3f", gb / best_time(tr, P_IMATRIX, x, q, rows, imp, reps));
    printf("%-8s %10.3f %10.3f %10s %7.2fx%s\n", tr->name, gb / tref, gb / tfile, imcol,
           tref / tfile, same ? "" : "  (file path differs from ref, as in ggml)");
  }
  free(x);
  free(imp);
  free(q);
  free(q2);
  return 0;
}
