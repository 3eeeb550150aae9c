/* quants-bench: single-core throughput of every GGUF block quantizer in the type table, in GB/s
 * of f32 input, scalar against optimized:
 *   ref      from_f32 (ggml's *_ref, scalar), row by row
 *   scalar   the file path (quantize, imatrix = NULL) in its scalar implementation
 *   opt      the same path in its optimized implementation (AVX2 twins: q4_0 q4_1 q5_0 q5_1 q8_0,
 *            q2_K..q6_K, iq4_nl, iq4_xs, mxfp4, tq1_0, tq2_0), which the type table's quantize takes when the CPU has AVX2;
 *            "same" says whether it wrote the scalar path's bytes (it must)
 *   imatrix  the path with importance weights, scalar and optimized where both exist
 * Types without an optimized kernel show "-" in the opt columns. The row q6_K/512 times
 * q6_K's AVX-512 twin (cz_q6_K_quantize_avx512; "-" without AVX-512F), which the type table
 * takes before the AVX2 one where the CPU has it. The row iq4_nl/ref times
 * iq4_nl's reference (not its file path) in its two implementations, cz_iq4_nl_from_f32_scalar
 * and cz_iq4_nl_from_f32_avx2, row by row; the iq4_nl row's ref column is the table's
 * from_f32, which takes the AVX2 one.
 *
 * Build against a configured tree's libczcore.a (a sanitizer build measures ASan, not code):
 *   cc -std=gnu11 -O2 -Icore bench/quants-bench.c BUILD/libczcore.a \
 *      $(pkg-config --libs jansson lapacke openblas) -lpthread -lm -o /tmp/quants-bench
 * Usage: quants-bench [MIB_OF_F32 (default 64)] [REPETITIONS (default 5)] [TYPE ...]
 * Data: N(0, 0.02) weights with 0.5 % outliers at 10x, rows of 4096; the best of the
 * repetitions is reported. Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall
 * time: GB/s per core, which time-slicing on a shared machine does not dilute (cache and
 * memory contention from other processes still can; the best of N is the least disturbed). */
#include <math.h>
#include <stdbool.h>
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
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static double unit(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

typedef size_t (*quantize_fn)(const float *, void *, int64_t, int64_t, const float *);
typedef bool (*avx2_row_fn)(const float *, void *, int64_t);
typedef bool (*avx2_quantize_fn)(const float *, void *, int64_t, int64_t, const float *);

/* The scalar and optimized implementations of a type's file path, where both exist. */
typedef struct {
  int type;
  avx2_row_fn row_avx2;          /* legacy, q8_0, mxfp4, tq: twin of from_f32 (file path = ref) */
  quantize_fn k_scalar;          /* K, legacy and iq4 types: the scalar quantize */
  avx2_quantize_fn k_avx2;       /* K, legacy and iq4 types: the AVX2 quantize */
} impl;

static const impl IMPLS[] = {
    {CZ_TYPE_Q4_0, cz_q4_0_from_f32_avx2, cz_q4_0_quantize_scalar, cz_q4_0_quantize_avx2},
    {CZ_TYPE_Q4_1, cz_q4_1_from_f32_avx2, cz_q4_1_quantize_scalar, cz_q4_1_quantize_avx2},
    {CZ_TYPE_Q5_0, cz_q5_0_from_f32_avx2, cz_q5_0_quantize_scalar, cz_q5_0_quantize_avx2},
    {CZ_TYPE_Q5_1, cz_q5_1_from_f32_avx2, cz_q5_1_quantize_scalar, cz_q5_1_quantize_avx2},
    {CZ_TYPE_Q8_0, cz_q8_0_from_f32_avx2, NULL, NULL},
    {CZ_TYPE_Q2_K, NULL, cz_q2_K_quantize_scalar, cz_q2_K_quantize_avx2},
    {CZ_TYPE_Q3_K, NULL, cz_q3_K_quantize_scalar, cz_q3_K_quantize_avx2},
    {CZ_TYPE_Q4_K, NULL, cz_q4_K_quantize_scalar, cz_q4_K_quantize_avx2},
    {CZ_TYPE_Q5_K, NULL, cz_q5_K_quantize_scalar, cz_q5_K_quantize_avx2},
    {CZ_TYPE_Q6_K, NULL, cz_q6_K_quantize_scalar, cz_q6_K_quantize_avx2},
    {CZ_TYPE_MXFP4, cz_mxfp4_from_f32_avx2, NULL, NULL},
    {CZ_TYPE_TQ1_0, cz_tq1_0_from_f32_avx2, NULL, NULL},
    {CZ_TYPE_TQ2_0, cz_tq2_0_from_f32_avx2, NULL, NULL},
    {CZ_TYPE_IQ4_NL, NULL, cz_iq4_nl_quantize_scalar, cz_iq4_nl_quantize_avx2},
    {CZ_TYPE_IQ4_XS, NULL, cz_iq4_xs_quantize_scalar, cz_iq4_xs_quantize_avx2},
};

static const impl *impl_of(int t) {
  for (size_t i = 0; i < sizeof IMPLS / sizeof IMPLS[0]; i++)
    if (IMPLS[i].type == t) return &IMPLS[i];
  return NULL;
}

typedef enum { P_REF, P_SCALAR, P_OPT } path;

/* Best wall time of reps runs of one path over rows x COLS floats; < 0 when the path does not
 * exist (no optimized kernel, or the CPU lacks AVX2). */
static double best_time(const cz_type_traits *tr, const impl *im, path p, const float *x,
                        uint8_t *q, int64_t rows, const float *imp, int reps) {
  const size_t row_bytes = (size_t)cz_type_row_size((cz_type)(tr - cz_type_get(0)), COLS);
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    const double t0 = now_s();
    if (p == P_REF) {
      for (int64_t i = 0; i < rows; i++) tr->from_f32(x + i * COLS, q + (size_t)i * row_bytes, COLS);
    } else if (p == P_SCALAR) {
      if (im && im->k_scalar)
        im->k_scalar(x, q, rows, COLS, imp);
      else if (imp == NULL && im && im->row_avx2)
        tr->from_f32(x, q, rows * COLS); /* these types' file path is the reference */
      else
        tr->quantize(x, q, rows, COLS, imp);
    } else {
      bool ok = false;
      if (im && im->k_avx2) ok = im->k_avx2(x, q, rows, COLS, imp);
      else if (im && im->row_avx2 && imp == NULL) ok = im->row_avx2(x, q, rows * COLS);
      if (!ok) return -1;
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

static void gbs(char *buf, size_t n, double gb, double t) {
  if (t < 0) snprintf(buf, n, "-");
  else snprintf(buf, n, "%.3f", gb / t);
}

static void ratio(char *buf, size_t n, double slow, double fast) {
  if (slow < 0 || fast < 0) snprintf(buf, n, "-");
  else snprintf(buf, n, "%.2fx", slow / fast);
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
  memset(q, 0, (size_t)n * 2); /* fault the pages in before timing */
  memset(q2, 0, (size_t)n * 2);
  const double gb = (double)n * 4 / 1e9;
  FILE *la = fopen("/proc/loadavg", "r");
  char load[64] = "?";
  if (la) {
    if (!fgets(load, sizeof load, la)) snprintf(load, sizeof load, "?");
    fclose(la);
    char *end = load; /* the three load averages only */
    for (int f = 0; f < 3 && end; f++) end = strchr(end + (f > 0), ' ');
    if (end) *end = 0;
  }
  printf("# %lld rows x %d f32 (%.1f MB), best of %d, one thread, AVX2 %s, load %s\n",
         (long long)rows, COLS, gb * 1e3, reps, __builtin_cpu_supports("avx2") ? "yes" : "no", load);
  printf("# GB/s of f32 input per CPU-second of this thread; opt/sc = optimized over scalar; same = optimized wrote the scalar bytes\n");
  printf("%-8s %9s %9s %9s %7s %5s | %9s %9s %7s %5s\n", "type", "ref", "scalar", "opt", "opt/sc",
         "same", "imat sc", "imat opt", "opt/sc", "same");
  for (int t = 0; t < CZ_TYPE_GGML_END; t++) {
    const cz_type_traits *tr = cz_type_get(t);
    if (tr == NULL || !tr->is_quantized || tr->quantize == NULL || tr->from_f32 == NULL) continue;
    if (COLS % tr->blck_size != 0 || !wanted(tr->name, argc, argv)) continue;
    const impl *im = impl_of(t);
    const size_t nb = (size_t)cz_type_row_size((cz_type)t, COLS) * (size_t)rows;
    char c[8][32];
    const double tref = best_time(tr, im, P_REF, x, q2, rows, NULL, reps);
    const double tsc = best_time(tr, im, P_SCALAR, x, q2, rows, NULL, reps);
    const double topt = im ? best_time(tr, im, P_OPT, x, q, rows, NULL, reps) : -1;
    gbs(c[0], sizeof c[0], gb, tref);
    gbs(c[1], sizeof c[1], gb, tsc);
    gbs(c[2], sizeof c[2], gb, topt);
    ratio(c[3], sizeof c[3], tsc, topt);
    snprintf(c[4], sizeof c[4], "%s", topt < 0 ? "-" : memcmp(q, q2, nb) == 0 ? "yes" : "NO");
    snprintf(c[5], sizeof c[5], "-");
    snprintf(c[6], sizeof c[6], "-");
    snprintf(c[7], sizeof c[7], "-");
    char same_im[8] = "-";
    double tisc = -1;
    if (!ignores_imatrix(t)) {
      tisc = best_time(tr, im, P_SCALAR, x, q2, rows, imp, reps);
      const double tiopt = im && im->k_avx2 ? best_time(tr, im, P_OPT, x, q, rows, imp, reps) : -1;
      gbs(c[5], sizeof c[5], gb, tisc);
      gbs(c[6], sizeof c[6], gb, tiopt);
      ratio(c[7], sizeof c[7], tisc, tiopt);
      if (tiopt >= 0) snprintf(same_im, sizeof same_im, "%s", memcmp(q, q2, nb) == 0 ? "yes" : "NO");
    }
    printf("%-8s %9s %9s %9s %7s %5s | %9s %9s %7s %5s\n", tr->name, c[0], c[1], c[2], c[3], c[4],
           c[5], c[6], c[7], same_im);
    if (t == CZ_TYPE_Q6_K) { /* the AVX-512 twin, which the table takes first where it can */
      const impl i512 = {CZ_TYPE_Q6_K, NULL, cz_q6_K_quantize_scalar, cz_q6_K_quantize_avx512};
      char d[4][32], s0[8] = "-", s1[8] = "-";
      const double tio = best_time(tr, &i512, P_OPT, x, q, rows, imp, reps); /* q2: imatrix scalar */
      if (tio >= 0) snprintf(s1, sizeof s1, "%s", memcmp(q, q2, nb) == 0 ? "yes" : "NO");
      cz_q6_K_quantize_scalar(x, q2, rows, COLS, NULL);
      const double to = best_time(tr, &i512, P_OPT, x, q, rows, NULL, reps);
      if (to >= 0) snprintf(s0, sizeof s0, "%s", memcmp(q, q2, nb) == 0 ? "yes" : "NO");
      gbs(d[0], sizeof d[0], gb, to);
      ratio(d[1], sizeof d[1], tsc, to);
      gbs(d[2], sizeof d[2], gb, tio);
      ratio(d[3], sizeof d[3], tisc, tio);
      printf("%-8s %9s %9s %9s %7s %5s | %9s %9s %7s %5s\n", "q6_K/512", "", "", d[0], d[1], s0,
             "", d[2], d[3], s1);
    }
    if (t == CZ_TYPE_IQ4_NL) { /* the reference (from_f32), scalar and AVX2, row by row */
      const size_t row_bytes = (size_t)cz_type_row_size((cz_type)t, COLS);
      double ts = 1e30, to = 1e30;
      bool ok = true;
      for (int r = 0; r < reps && ok; r++) {
        double t0 = now_s();
        for (int64_t i = 0; i < rows; i++)
          cz_iq4_nl_from_f32_scalar(x + i * COLS, q2 + (size_t)i * row_bytes, COLS);
        const double t1 = now_s();
        for (int64_t i = 0; i < rows && ok; i++)
          ok = cz_iq4_nl_from_f32_avx2(x + i * COLS, q + (size_t)i * row_bytes, COLS);
        const double t2 = now_s();
        if (t1 - t0 < ts) ts = t1 - t0;
        if (t2 - t1 < to) to = t2 - t1;
      }
      if (!ok) to = -1;
      gbs(c[1], sizeof c[1], gb, ts);
      gbs(c[2], sizeof c[2], gb, to);
      ratio(c[3], sizeof c[3], ts, to);
      snprintf(c[4], sizeof c[4], "%s", to < 0 ? "-" : memcmp(q, q2, nb) == 0 ? "yes" : "NO");
      printf("%-8s %9s %9s %9s %7s %5s | %9s %9s %7s %5s\n", "iq4_nl/ref", "", c[1], c[2], c[3],
             c[4], "-", "-", "-", "-");
    }
  }
  free(x);
  free(imp);
  free(q);
  free(q2);
  return 0;
}
