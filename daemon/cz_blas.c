/* cz_blas: re-executes with OPENBLAS_CORETYPE when OpenBLAS fell back to its generic kernels. */
#include "cz_blas.h"

#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

extern char *openblas_get_corename(void);

const char *cz_blas_core(void) {
  const char *c = openblas_get_corename();
  return c ? c : "unknown";
}

/* The newest OpenBLAS kernel set the CPU and the OS (XSAVE state) can run; NULL: none better
 * than the fallback. gcc's cpu checks include the OS's enabling of the AVX/AVX-512 state. */
static const char *best_core(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return NULL;
}

void cz_blas_pick_core(char **argv) {
  /* set: the operator's choice, or this process is the re-executed one */
  if (getenv("OPENBLAS_CORETYPE") != NULL) return;
  if (strcasecmp(cz_blas_core(), "Prescott") != 0) return;
  const char *core = best_core();
  if (core == NULL) return;
  if (setenv("OPENBLAS_CORETYPE", core, 1) != 0) return;
  execv("/proc/self/exe", argv);
}
