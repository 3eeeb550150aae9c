/* cz_model_impl: private helpers shared by the format readers (cz_safetensors.c, cz_gguf.c),
 * the dispatcher (cz_model.c) and the writer (cz_layout.c). Not part of the contract. */
#ifndef CZ_MODEL_IMPL_H
#define CZ_MODEL_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "cz_model.h"

/* ---- format constants ---- */

#define CZ_ST_N_LEN 8                /* safetensors: bytes of the little-endian header length */
#define CZ_GGUF_MAGIC "GGUF"         /* bytes 47 47 55 46 at offset 0 */
#define CZ_GGUF_DEFAULT_ALIGNMENT 32 /* when general.alignment is absent (GGUF_DEFAULT_ALIGNMENT) */
/* ggml bounds general.alignment only by "power of two"; a huge one makes every pad step a
 * seek of gigabytes and, on 32-bit, wraps (GHSA-96jg-mvhq-q7q7). 1 MiB is far above any real
 * file and keeps the padding we write bounded. */
#define CZ_GGUF_MAX_ALIGNMENT (1u << 20)
#define CZ_GGUF_MAX_KEY 65535        /* spec: key length fits in a u16 */
/* Each KV costs two small allocations; real files have tens. This bounds the memory an
 * adversarial file full of one-byte KVs could make us spend. */
#define CZ_GGUF_MAX_KV 1000000
/* Arrays of arrays are legal GGUF; the recursion that walks them stops here. Real files nest
 * at most once. */
#define CZ_GGUF_MAX_NESTING 8
#define CZ_GGUF_ALIGNMENT_KEY "general.alignment"

/* Smallest serialized tensor info: name length (8) + a 1-byte name + n_dims (4) + one ne (8)
 * + type (4) + offset (8). A claimed tensor count above remaining/this cannot be real. */
#define CZ_GGUF_MIN_TENSOR_INFO 33
/* Smallest serialized KV: key length (8) + a 1-byte key + type (4) + a 1-byte value. */
#define CZ_GGUF_MIN_KV 14

/* ---- little-endian access (the formats are little-endian, whatever the host) ---- */

static inline uint32_t cz__le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t cz__le64(const uint8_t *p) {
  return (uint64_t)cz__le32(p) | (uint64_t)cz__le32(p + 4) << 32;
}

static inline void cz__put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void cz__put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- checked arithmetic on untrusted numbers ---- */

static inline bool cz__is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* x rounded up to a multiple of align (a power of two); false if that does not fit. */
static inline bool cz__pad(uint64_t x, uint64_t align, uint64_t *out) {
  uint64_t r;
  if (__builtin_add_overflow(x, align - 1, &r)) return false;
  *out = r & ~(align - 1);
  return true;
}

/* ---- shared checks ---- */

/* Byte size of a GGUF tensor (ggml block arithmetic) and its element count. Fails with
 * invalid_tensor_info when ne[0] is not a multiple of the block size, size_overflow when the
 * element count leaves int64 or the byte count leaves uint64. ne[i] >= 0 is the caller's. */
cz_err_code cz__gguf_nbytes(const cz_type_traits *tr, int n_dims, const int64_t *ne,
                            uint64_t *nbytes, cz_error *err, const char *name);

/* Byte size of a safetensors tensor the way the reference computes it: the element count
 * multiplied in shape order (outermost first, so ne[] backwards), then times the dtype's bits,
 * each step checked (size_overflow); whole bytes only (misaligned_slice). */
cz_err_code cz__st_nbytes(const cz_type_traits *tr, int n_dims, const int64_t *ne,
                          uint64_t *nbytes, cz_error *err, const char *name);

/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). */
bool cz__utf8_valid(const uint8_t *s, size_t n);

/* Index of one name that occurs twice in names[0..n), -1 when all differ, -2 when out of
 * memory. O(n log n): tensor and key counts come from files and may be large. */
long cz__find_duplicate(const char *const *names, size_t n);

/* ---- readers: fill m's format fields from the mapped bytes [buf, buf+size) ---- */

cz_err_code cz__st_parse(cz_model *m, const uint8_t *buf, uint64_t size, cz_error *err);
cz_err_code cz__gguf_parse(cz_model *m, const uint8_t *buf, uint64_t size, cz_error *err);

/* Frees an array of owned KVs. */
void cz__kv_free(cz_gguf_kv *kv, size_t n);

#endif
