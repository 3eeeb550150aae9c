/* cz_type: the table of tensor element types compressd reads and writes.
 *
 * One enum covers both worlds: ggml's types keep ggml's numeric ids (they are GGUF-stable, so
 * a GGUF type field maps to a cz_type with no translation), and element types that only
 * safetensors knows get ids from 64 up. Ids are never reused. Each row of the table gives the
 * names in both formats, the block geometry and the row conversion functions; a query is a
 * lookup, never a switch elsewhere in the code.
 *
 * Thread: every function here is pure and may run on any thread.
 */
#ifndef CZ_TYPE_H
#define CZ_TYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  CZ_TYPE_F32 = 0,
  CZ_TYPE_F16 = 1,
  CZ_TYPE_Q4_0 = 2,
  CZ_TYPE_Q4_1 = 3,
  /* 4, 5: ggml's removed Q4_2, Q4_3 */
  CZ_TYPE_Q5_0 = 6,
  CZ_TYPE_Q5_1 = 7,
  CZ_TYPE_Q8_0 = 8,
  CZ_TYPE_Q8_1 = 9,
  CZ_TYPE_Q2_K = 10,
  CZ_TYPE_Q3_K = 11,
  CZ_TYPE_Q4_K = 12,
  CZ_TYPE_Q5_K = 13,
  CZ_TYPE_Q6_K = 14,
  CZ_TYPE_Q8_K = 15,
  CZ_TYPE_IQ2_XXS = 16,
  CZ_TYPE_IQ2_XS = 17,
  CZ_TYPE_IQ3_XXS = 18,
  CZ_TYPE_IQ1_S = 19,
  CZ_TYPE_IQ4_NL = 20,
  CZ_TYPE_IQ3_S = 21,
  CZ_TYPE_IQ2_S = 22,
  CZ_TYPE_IQ4_XS = 23,
  CZ_TYPE_I8 = 24,
  CZ_TYPE_I16 = 25,
  CZ_TYPE_I32 = 26,
  CZ_TYPE_I64 = 27,
  CZ_TYPE_F64 = 28,
  CZ_TYPE_IQ1_M = 29,
  CZ_TYPE_BF16 = 30,
  /* 31..33: ggml's removed Q4_0_4_4, Q4_0_4_8, Q4_0_8_8 */
  CZ_TYPE_TQ1_0 = 34,
  CZ_TYPE_TQ2_0 = 35,
  /* 36..38: ggml's removed IQ4_NL_4_4, IQ4_NL_4_8, IQ4_NL_8_8 */
  CZ_TYPE_MXFP4 = 39,
  CZ_TYPE_GGML_END = 40, /* ids below this are ggml's; GGUF files may use only those */
  /* safetensors-only element types */
  CZ_TYPE_BOOL = 64,
  CZ_TYPE_U8 = 65,
  CZ_TYPE_U16 = 66,
  CZ_TYPE_U32 = 67,
  CZ_TYPE_U64 = 68,
  CZ_TYPE_F8_E4M3 = 69,
  CZ_TYPE_F8_E5M2 = 70,
  CZ_TYPE_F8_E8M0 = 71,
  CZ_TYPE_F8_E4M3FNUZ = 72,
  CZ_TYPE_F8_E5M2FNUZ = 73,
  CZ_TYPE_F4 = 74,
  CZ_TYPE_F6_E2M3 = 75,
  CZ_TYPE_F6_E3M2 = 76,
  CZ_TYPE_C64 = 77,
  CZ_TYPE_COUNT = 78
} cz_type;

/* ggml_quantize_chunk's contract for one type: quantize nrows rows of n_per_row floats into
 * dst (rows back to back) exactly as llama-quantize writes them; imatrix, when not NULL,
 * holds n_per_row importance weights (mean squared activations) and selects the weighted
 * quantizer. Returns the bytes written. Pure, any thread. */
typedef size_t (*cz_quantize_fn)(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                                 const float *imatrix);

/* Converts n elements (n a multiple of the block size) of a row. */
typedef void (*cz_to_f32_fn)(const void *src, float *dst, int64_t n);
typedef void (*cz_from_f32_fn)(const float *src, void *dst, int64_t n);

typedef struct {
  const char *name;       /* ggml's lower-case name ("q8_0", "f16"), or ours for st-only types */
  const char *st_name;    /* safetensors dtype string ("F16"), NULL if safetensors has none */
  bool in_gguf;           /* a GGUF tensor may have this type */
  int64_t blck_size;      /* elements per block (1 for plain types) */
  size_t type_size;       /* bytes per block */
  uint32_t bits;          /* bits per element for plain types (safetensors validation), 0 for blocks */
  bool is_quantized;
  cz_to_f32_fn to_f32;        /* NULL when we cannot decode it */
  cz_from_f32_fn from_f32;    /* reference encoder (ggml's *_ref), NULL when we cannot produce it */
  cz_quantize_fn quantize;    /* the file-writing path (ggml_quantize_chunk), NULL if none */
  bool requires_imatrix;      /* refuses to run without importance weights */
} cz_type_traits;

/* Traits of t, or NULL if t is not a valid id (a hole or out of range). */
const cz_type_traits *cz_type_get(int t);

/* Lookup by name; returns -1 when unknown. st: safetensors dtype strings ("BF16"), exact case.
 * name: ggml names, case-insensitive ("Q8_0" == "q8_0"). */
int cz_type_from_st_name(const char *st_name);
int cz_type_from_name(const char *name);

/* Bytes of a row of n elements of t, or 0 if n is not a multiple of the block size or t is
 * invalid. Overflow-checked: returns 0 rather than wrap. */
uint64_t cz_type_row_size(cz_type t, int64_t n);

/* IEEE half and bfloat16 conversions, bit-exact with ggml (round to nearest even, NaN kept). */
float cz_fp16_to_fp32(uint16_t h);
uint16_t cz_fp32_to_fp16(float f);
float cz_bf16_to_fp32(uint16_t h);
uint16_t cz_fp32_to_bf16(float f);
/* 8-bit floats as safetensors' F8_E4M3 (OCP E4M3FN: no infinities, NaN = S.1111.111, max
 * 448) and F8_E5M2 (IEEE-like, with infinities). Encoding rounds to nearest even like
 * PyTorch's casts: E4M3 turns NaN, Inf and anything that rounds past 448 into NaN; E5M2 turns
 * what rounds past 57344 into Inf. Decoding is exact. */
float cz_f8e4m3_to_fp32(uint8_t v);
uint8_t cz_fp32_to_f8e4m3(float f);
float cz_f8e5m2_to_fp32(uint8_t v);
uint8_t cz_fp32_to_f8e5m2(float f);

/* Q8_0: ggml's block of 32 int8 with one fp16 scale. */
#define CZ_QK8_0 32
typedef struct {
  uint16_t d;
  int8_t qs[CZ_QK8_0];
} cz_block_q8_0;
_Static_assert(sizeof(cz_block_q8_0) == 2 + CZ_QK8_0, "wrong q8_0 block size");

/* ggml's quantize_row_q8_0_ref and dequantize_row_q8_0: k a multiple of 32. */
void cz_quantize_row_q8_0(const float *x, cz_block_q8_0 *y, int64_t k);
void cz_dequantize_row_q8_0(const cz_block_q8_0 *x, float *y, int64_t k);

#endif
