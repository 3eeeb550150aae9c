/* cz_cpu: CPU feature checks that __builtin_cpu_supports cannot make everywhere. */
#ifndef CZ_CPU_H
#define CZ_CPU_H

#include <stdatomic.h>
#include <stdbool.h>

/* An instruction set to run a kernel on, for the tests and benchmarks that compare a
 * kernel's implementations (the _isa functions); CZ_ISA_BEST is what callers get otherwise. */
typedef enum { CZ_ISA_BEST, CZ_ISA_SCALAR, CZ_ISA_AVX2, CZ_ISA_AVX512 } cz_isa;

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* clang 14 (Debian 12's, which builds the fuzzers) knows neither "f16c" nor "sha" as
 * __builtin_cpu_supports features, so these two read CPUID themselves. F16C is a VEX
 * encoding: it also needs the OS to save the AVX state, which "avx" checks (XGETBV). */
static inline bool cz_cpu_probe_f16c(void) {
  unsigned a, b, c, d;
  if (!__builtin_cpu_supports("avx") || !__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c & bit_F16C) != 0;
}

static inline bool cz_cpu_probe_sha(void) {
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, 0) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  return (b & bit_SHA) != 0;
}

/* The answers are cached (per translation unit; racing threads store the same value): in a
 * virtual machine CPUID traps to the hypervisor, 18 us a call here, and the kernels ask once
 * per chunk, SHA-256 once per update. */
static inline bool cz_cpu_has_f16c(void) {
  static _Atomic int known = -1;
  int v = atomic_load_explicit(&known, memory_order_relaxed);
  if (v < 0) atomic_store_explicit(&known, v = cz_cpu_probe_f16c(), memory_order_relaxed);
  return v;
}

static inline bool cz_cpu_has_sha(void) {
  static _Atomic int known = -1;
  int v = atomic_load_explicit(&known, memory_order_relaxed);
  if (v < 0) atomic_store_explicit(&known, v = cz_cpu_probe_sha(), memory_order_relaxed);
  return v;
}
#else
static inline bool cz_cpu_has_f16c(void) { return false; }
static inline bool cz_cpu_has_sha(void) { return false; }
#endif

#endif
