/* parse-bench: times cz_model_open + cz_model_close of one file (the header parse and
 * validation, the mmap and munmap) and reports the process's peak RSS.
 * Usage: parse-bench FILE [ITERATIONS]   (built by bench/parse-bench.sh against libczcore.a)
 * Prints one line: format tensors file_bytes iterations min_ms median_ms max_ms maxrss_kb
 * ITERATIONS 0 only reports the peak RSS of a process that opened nothing (the baseline). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "cz_model.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: parse-bench FILE [ITERATIONS]\n");
    return 2;
  }
  int iters = argc > 2 ? atoi(argv[2]) : 20;
  double *t = calloc(iters > 0 ? (size_t)iters : 1, sizeof *t);
  const char *fmt = "-";
  size_t n_tensors = 0;
  unsigned long long size = 0;
  for (int i = 0; i < iters; i++) {
    cz_model *m = NULL;
    cz_error e;
    double t0 = now_ms();
    if (cz_model_open(argv[1], &m, &e) != CZ_E_OK) {
      fprintf(stderr, "parse-bench: %s: %s (%s)\n", argv[1], e.msg, cz_err_name(e.code));
      return 1;
    }
    fmt = cz_format_name(m->format);
    n_tensors = m->n_tensors;
    size = (unsigned long long)m->file_size;
    cz_model_close(m);
    t[i] = now_ms() - t0;
  }
  qsort(t, (size_t)iters, sizeof *t, cmp_d);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("%s %zu %llu %d %.3f %.3f %.3f %ld\n", fmt, n_tensors, size, iters,
         iters ? t[0] : 0.0, iters ? t[iters / 2] : 0.0, iters ? t[iters - 1] : 0.0,
         ru.ru_maxrss);
  free(t);
  return 0;
}
