/* cz_quant_ct: numeric kernels of the safetensors quantization schemes (docs/formats.md
 * 4.9-4.12): integer groups (round to nearest, HQQ), NF4 code values, and the int32 packing of
 * compressed-tensors. Shared by the encoders (cz_m_quantize_ct.c), the decoder
 * (cz_decompress.c), the tests and the bench, so that every one of them computes the same
 * values from the same definition.
 *
 * Thread: pure functions on caller-owned buffers; safe from any thread.
 */
#ifndef CZ_QUANT_CT_H
#define CZ_QUANT_CT_H

#include <stdbool.h>
#include <stdint.h>

/* ---- integer groups ---- */

/* Round-to-nearest quantization of one group of n weights to signed `bits`-bit integers
 * q in [-2^(bits-1), 2^(bits-1) - 1], decoded as (q - zp) * scale:
 *   symmetric:  scale = max|x| / (2^(bits-1) - 1), zp = 0
 *   asymmetric: lo = min(min x, 0), hi = max(max x, 0), scale = (hi - lo) / (2^bits - 1),
 *               zp = clamp(roundf(qmin - lo / scale), qmin, qmax)
 *   q = clamp(roundf(x / scale) + zp, qmin, qmax); a zero scale gives q = zp = 0.
 * All in float32 (roundf: half away from zero). */
void cz_qct_group_rtn(const float *x, int64_t n, int bits, bool symmetric, float *scale, int *zp,
                      int8_t *q);

/* y[i] = (float)(q[i] - zp) * scale. */
void cz_qct_dequant(const int8_t *q, int64_t n, float scale, int zp, float *y);

/* HQQ's objective of a decoding: sum |x - y|^0.7 (in double). */
double cz_qct_hqq_objective(const float *x, const float *y, int64_t n);

/* HQQ-style data-free optimization of an asymmetric group, then a closed-form refit in L2
 * (docs/formats.md 4.9). compressed-tensors stores an integer zero point, so the grid is always
 * the multiples of the scale and HQQ's real-valued zero point cannot be kept as it is.
 * (1) HQQ v2's scale search, widened: 15 scales from 0.70 to 1.05 times the RTN scale (0.025
 * apart), each with its RTN zero point, then the best one's zero point +-1, in HQQ's objective
 * (sum |error|^0.7, mobiusml/hqq); (2) HQQ's half-quadratic solver (legacy: p = 0.7, beta =
 * 10, kappa = 1.01, at most 20 iterations, early stop when the mean |error| stops improving)
 * on the zero point at that scale, every rounded zero point it passes tried, the best in the
 * objective kept; (3) for that integer zero point, its neighbours +-1 and RTN's zero point,
 * the scale is refitted by least squares over the codes (s = sum x (q - zp) / sum (q - zp)^2,
 * codes re-rounded, at most 6 alternations while the L2 error falls). Of RTN, the result of
 * (2) and the refits, the one with the lowest L2 error of the stored reconstruction (float32
 * scale, integer zero point, the codes below) is kept, RTN winning ties: never worse than RTN
 * in L2 (it may be in HQQ's objective). In: *scale, *zp, q from cz_qct_group_rtn
 * (asymmetric). Out: the chosen scale, zero point and codes (clamp(roundf(x / scale) + zp)).
 * Returns 1 if it changed them, else 0. obj (may be NULL): {RTN squared L2 error, final
 * squared L2 error}, both sum (x - decoded)^2 in double. */
int cz_qct_group_hqq(const float *x, int64_t n, int bits, float *scale, int *zp, int8_t *q,
                     double obj[2]);

/* Element i of a row packed as compressed-tensors pack_to_int32 does: 32 / bits values per
 * little-endian int32 word, value i in bits (i % pf) * bits of word i / pf. Returns the stored
 * unsigned field (signed value + 2^(bits-1) for the integer schemes). */
unsigned cz_qct_unpack(const uint8_t *words, int64_t i, int bits);

/* ---- NF4 ---- */

/* bitsandbytes' 16 NF4 code values, ascending (quant-formats.md 3). */
extern const float cz_nf4_code[16];
/* Index of the code value nearest to v (v is clamped to [-1, 1]); a value exactly halfway
 * between two codes takes the lower index (bitsandbytes' bucketize). */
int cz_nf4_index(float v);

/* ---- bitsandbytes' 8-bit dynamic map (NF4 double quantization, formats.md 4.11) ---- */

#define CZ_DYN_N 256
#define CZ_DYN_ZERO 127  /* index of the code value 0 */
/* bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), ascending:
 * for i = 0..6, with 2^i + 1 boundaries b_j = 0.1 + 0.9 j / 2^i (linspace(0.1, 1, 2^i + 1)),
 * the 2^i means (b_j + b_(j+1)) / 2 times +-10^(i - 6); plus 0 and 1.0 (127 negative values,
 * 0 at index 127, 127 positive values, 1.0 at index 255). Each value is the formula in
 * double rounded once to float32 (torch computes it in float32 steps, so a value may differ
 * from bitsandbytes' in the last bit; the table is stored in the artifact and decoders use the
 * stored one). */
void cz_dyn_map(float code[CZ_DYN_N]);
/* Index of the code value nearest to u (exact distance; code ascending); a value exactly
 * halfway between two codes takes the lower index. */
int cz_dyn_index(const float code[CZ_DYN_N], float u);

#endif
