/* cz_quants: private declarations of the GGUF block-quantization kernels (not an API; the
 * type table in cz_type.c and the tests are the callers).
 *
 * Every type has three entry points with the signatures of cz_type.h's table:
 *   cz_<t>_to_f32(src, dst, n)       dequantize n elements (n a multiple of the block);
 *   cz_<t>_from_f32(src, dst, n)     ggml's quantize_row_<t>_ref on n elements;
 *   cz_<t>_quantize(src, dst, nrows, n_per_row, imatrix)
 *                                    ggml_quantize_chunk's file path for nrows rows, with
 *                                    imatrix NULL or n_per_row importance weights.
 * Block pointers are void: quantized bytes may sit at any alignment inside a file buffer, so
 * kernels go through memcpy or byte access. Everything here is pure and thread-safe, and
 * reproduces ggml's bytes only when compiled with -ffp-contract=off (libczcore is).
 */
#ifndef CZ_QUANTS_H
#define CZ_QUANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cz_cpu.h"

/* ---- shared numeric helpers ---------------------------------------------------------------- */

/* ggml's nearest_int: adding 1.5 * 2^23 leaves the rounded integer in the low mantissa bits,
 * so this rounds half to even (default rounding mode). Valid for |f| <= 4194303. */
static inline int cz_nearest_int(float f) {
  float v = f + 12582912.f;
  int32_t bits;
  memcpy(&bits, &v, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

/* ---- legacy 32-element quants: q4_0 q4_1 q5_0 q5_1 (cz_quants_legacy.c) -------------------- */

void cz_q4_0_to_f32(const void *src, float *dst, int64_t n);
void cz_q4_0_from_f32(const float *src, void *dst, int64_t n);
size_t cz_q4_0_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix);

void cz_q4_1_to_f32(const void *src, float *dst, int64_t n);
void cz_q4_1_from_f32(const float *src, void *dst, int64_t n);
size_t cz_q4_1_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix);

void cz_q5_0_to_f32(const void *src, float *dst, int64_t n);
void cz_q5_0_from_f32(const float *src, void *dst, int64_t n);
size_t cz_q5_0_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix);

void cz_q5_1_to_f32(const void *src, float *dst, int64_t n);
void cz_q5_1_from_f32(const float *src, void *dst, int64_t n);
size_t cz_q5_1_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix);

/* AVX2 twins of cz_q4_0_from_f32 .. cz_q5_1_from_f32 (same bytes for finite input), used by
 * the quantize functions without importance weights. Exposed for tests and benchmarks: they
 * return false, writing nothing, when the build or the CPU has no AVX2. */
bool cz_q4_0_from_f32_avx2(const float *src, void *dst, int64_t n);
bool cz_q4_1_from_f32_avx2(const float *src, void *dst, int64_t n);
bool cz_q5_0_from_f32_avx2(const float *src, void *dst, int64_t n);
bool cz_q5_1_from_f32_avx2(const float *src, void *dst, int64_t n);

/* The dequantizers of q4_0 .. q5_1 in their two implementations (cz_<t>_to_f32, the type
 * table's, takes the AVX2 twin when the CPU has it): same floats, bit for bit, for every
 * block; the twins return false, writing nothing, without AVX2 and F16C. */
void cz_q4_0_to_f32_scalar(const void *src, float *dst, int64_t n);
void cz_q4_1_to_f32_scalar(const void *src, float *dst, int64_t n);
void cz_q5_0_to_f32_scalar(const void *src, float *dst, int64_t n);
void cz_q5_1_to_f32_scalar(const void *src, float *dst, int64_t n);
bool cz_q4_0_to_f32_avx2(const void *src, float *dst, int64_t n);
bool cz_q4_1_to_f32_avx2(const void *src, float *dst, int64_t n);
bool cz_q5_0_to_f32_avx2(const void *src, float *dst, int64_t n);
bool cz_q5_1_to_f32_avx2(const void *src, float *dst, int64_t n);

/* q8_0 twins in cz_quants_legacy.c (eight blocks per iteration, as the four above), which the
 * type table's q8_0 quantize and to_f32 take (cz_type.c): cz_q8_0_from_f32_avx2 writes the
 * bytes of cz_quantize_row_q8_0 for finite input, cz_q8_0_to_f32_avx2 the floats of
 * cz_dequantize_row_q8_0 (n elements, bytes of whole blocks at any alignment). Both return
 * false, writing nothing, without AVX2 and F16C. */
bool cz_q8_0_from_f32_avx2(const float *src, void *dst, int64_t n);
bool cz_q8_0_to_f32_avx2(const void *src, float *dst, int64_t n);

/* The file path of q4_0 .. q5_1 in its two implementations: _scalar never takes an AVX2 twin;
 * _avx2 (false, writing nothing, without AVX2) takes the from_f32 twins above without
 * importance and, with importance, fits eight blocks of a row at once through
 * cz_fit_symmetric32_x8 / cz_fit_affine32_x8. Same bytes for finite input. */
size_t cz_q4_0_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix);
size_t cz_q4_1_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix);
size_t cz_q5_0_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix);
size_t cz_q5_1_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix);
bool cz_q4_0_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);
bool cz_q4_1_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);
bool cz_q5_0_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);
bool cz_q5_1_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);

/* Internal to libczcore (cz_quants_k.c, used by cz_quants_legacy.c): ggml's make_qx_quants
 * (weighted, rmse_type 1) and make_qkx3_quants (rmin -0.9, rdelta 0.05, 36 steps, squared
 * error) for eight groups of 32 at once, one per AVX2 lane, the scalar floats bit for bit.
 * x and w hold the eight groups one after another (8 x 32 floats); L receives 8 x 32 codes
 * (l + nmax for the symmetric fit), scale 8 scales, neg_min 8 negated mins. They return
 * false, writing nothing, without AVX2. */
bool cz_fit_symmetric32_x8(int nmax, const float *x, const float *w, uint8_t *L, float *scale);
bool cz_fit_affine32_x8(int nmax, const float *x, const float *w, uint8_t *L, float *scale,
                        float *neg_min);

/* The F16C twin of the F16 -> F32 row converter (cz_type.c; same floats for every half; the
 * type table's to_f32 for F16 uses it). Returns false, writing nothing, without the CPU
 * feature. */
bool cz_f16_to_f32_f16c(const void *src, float *dst, int64_t n);
/* F16 -> F32 of an input that must hold finite values only (the pipeline's): 1 when every
 * half was finite (dst then holds cz_fp16_to_fp32's floats), 0 when one was Inf or NaN (dst is
 * then unspecified), -1 without F16C (nothing done). AVX-512 where the CPU has it. */
int cz_f16_to_f32_finite(const void *src, float *dst, int64_t n);
/* The same on one instruction set (CZ_ISA_AVX2 or CZ_ISA_AVX512; -1 when the CPU lacks it),
 * for tests. */
int cz_f16_to_f32_finite_isa(const void *src, float *dst, int64_t n, cz_isa isa);

/* ---- non-linear and ternary: iq4_nl iq4_xs mxfp4 tq1_0 tq2_0 (cz_quants_iq.c) -------------- */

void cz_iq4_nl_to_f32(const void *src, float *dst, int64_t n);
void cz_iq4_nl_from_f32(const float *src, void *dst, int64_t n);
size_t cz_iq4_nl_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                          const float *imatrix);

void cz_iq4_xs_to_f32(const void *src, float *dst, int64_t n);
void cz_iq4_xs_from_f32(const float *src, void *dst, int64_t n);
size_t cz_iq4_xs_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                          const float *imatrix);

void cz_mxfp4_to_f32(const void *src, float *dst, int64_t n);
void cz_mxfp4_from_f32(const float *src, void *dst, int64_t n);
size_t cz_mxfp4_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                         const float *imatrix);

void cz_tq1_0_to_f32(const void *src, float *dst, int64_t n);
void cz_tq1_0_from_f32(const float *src, void *dst, int64_t n);
size_t cz_tq1_0_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                         const float *imatrix);

void cz_tq2_0_to_f32(const void *src, float *dst, int64_t n);
void cz_tq2_0_from_f32(const float *src, void *dst, int64_t n);
size_t cz_tq2_0_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                         const float *imatrix);

/* ---- K-quants: q2_K .. q6_K (cz_quants_k.c) ------------------------------------------------ */

/* Super-blocks of 256 elements. With an imatrix, each row goes through ggml's weighted
 * quantize_row_<t>_impl; without one, quantize equals from_f32 row by row. */
void cz_q2_K_to_f32(const void *src, float *dst, int64_t n);
void cz_q2_K_from_f32(const float *src, void *dst, int64_t n);
size_t cz_q2_K_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix);

void cz_q3_K_to_f32(const void *src, float *dst, int64_t n);
void cz_q3_K_from_f32(const float *src, void *dst, int64_t n);
size_t cz_q3_K_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix);

void cz_q4_K_to_f32(const void *src, float *dst, int64_t n);
void cz_q4_K_from_f32(const float *src, void *dst, int64_t n);
size_t cz_q4_K_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix);

void cz_q5_K_to_f32(const void *src, float *dst, int64_t n);
void cz_q5_K_from_f32(const float *src, void *dst, int64_t n);
size_t cz_q5_K_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix);

void cz_q6_K_to_f32(const void *src, float *dst, int64_t n);
void cz_q6_K_from_f32(const float *src, void *dst, int64_t n);
size_t cz_q6_K_quantize(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                        const float *imatrix);

/* The K-quant file path in its two implementations (cz_<t>_quantize takes the AVX2 one when
 * the CPU has AVX2; q6_K has a third, AVX-512, below, which it takes first): the scalar
 * encoders, and their AVX2 twins, which run eight sub-blocks at once, one per lane, and write
 * the same bytes for finite input. Exposed for tests and
 * benchmarks; the _avx2 ones return false, writing nothing, when the build or the CPU has no
 * AVX2. */
size_t cz_q2_K_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix);
size_t cz_q3_K_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix);
size_t cz_q4_K_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix);
size_t cz_q5_K_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix);
size_t cz_q6_K_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                               const float *imatrix);
bool cz_q2_K_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);
bool cz_q3_K_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);
bool cz_q4_K_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);
bool cz_q5_K_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);
bool cz_q6_K_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);
/* q6_K's AVX-512 twin: all sixteen sub-blocks of a super-block in the lanes of one __m512, the
 * same bytes; false, writing nothing, without AVX-512F (cz_q6_K_quantize prefers it to the AVX2
 * twin). */
bool cz_q6_K_quantize_avx512(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                             const float *imatrix);
/* The scalar decoders (cz_<t>_to_f32 takes a vector one where there is one: q6_K, with AVX2,
 * computes the same floats); for tests and benchmarks. */
void cz_q2_K_to_f32_scalar(const void *src, float *dst, int64_t n);
void cz_q3_K_to_f32_scalar(const void *src, float *dst, int64_t n);
void cz_q4_K_to_f32_scalar(const void *src, float *dst, int64_t n);
void cz_q5_K_to_f32_scalar(const void *src, float *dst, int64_t n);
void cz_q6_K_to_f32_scalar(const void *src, float *dst, int64_t n);

/* iq4_nl's and iq4_xs's file path in its two implementations, as for the K-quants above: the
 * AVX2 twins run eight groups of 32 at once, one per lane (eight iq4_nl blocks of a row, or
 * one iq4_xs super-block), and write the scalar bytes for finite input. */
size_t cz_iq4_nl_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                                 const float *imatrix);
size_t cz_iq4_xs_quantize_scalar(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                                 const float *imatrix);
bool cz_iq4_nl_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                             const float *imatrix);
/* iq4_nl's reference (cz_iq4_nl_from_f32, the type table's from_f32, which takes the AVX2
 * twin when the CPU has AVX2) in its two implementations; the twin runs eight blocks at once,
 * one per lane, writes the scalar bytes for finite input, and returns false, writing nothing,
 * without AVX2. */
void cz_iq4_nl_from_f32_scalar(const float *src, void *dst, int64_t n);
bool cz_iq4_nl_from_f32_avx2(const float *src, void *dst, int64_t n);
bool cz_iq4_xs_quantize_avx2(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                             const float *imatrix);

/* AVX2 twins of mxfp4's, tq1_0's and tq2_0's references (their file paths; same bytes for
 * finite input), used by their quantize; false, writing nothing, without AVX2. */
bool cz_mxfp4_from_f32_avx2(const float *src, void *dst, int64_t n);
bool cz_tq1_0_from_f32_avx2(const float *src, void *dst, int64_t n);
bool cz_tq2_0_from_f32_avx2(const float *src, void *dst, int64_t n);

#endif
