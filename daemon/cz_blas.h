/* cz_blas: picks OpenBLAS's kernels when its own CPU detection gives up. */
#ifndef CZ_BLAS_H
#define CZ_BLAS_H

/* OpenBLAS chooses its kernels once, when the library loads, from the CPU model; a CPU newer
 * than the library (Debian 12 ships 0.3.21, which does not know Sapphire Rapids) gets its
 * slowest x86-64 kernels ("Prescott", SSE3): sgemm 2-4 times slower. When that fallback is in
 * use, OPENBLAS_CORETYPE is unset and the CPU and the OS support AVX-512 (SkylakeX kernels)
 * or AVX2 and FMA (Haswell kernels), this sets OPENBLAS_CORETYPE and re-executes the program
 * with the same argv, which must be main's. It returns when nothing is to be done, or when
 * the exec fails (the program then runs on as before). Call it first in main, before any
 * thread, descriptor or output exists. An operator's OPENBLAS_CORETYPE is always kept. */
void cz_blas_pick_core(char **argv);

/* The kernels OpenBLAS is using ("Haswell", "SkylakeX", ...): static, never NULL. */
const char *cz_blas_core(void);

#endif
