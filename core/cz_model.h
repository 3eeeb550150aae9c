/* cz_model: a weight file opened read-only over mmap, in either format, and the layout of
 * a file to be written.
 *
 * Reading: cz_model_open() maps the file, detects its format by content (not by name) and
 * validates every header field before it trusts it: sizes from the file are checked against
 * the bytes actually present before anything is allocated, arithmetic on them is
 * overflow-checked. The tensors' data stay in the mapping (zero copy).
 *
 * Shapes: for both formats, ne[] is in ggml order: ne[0] is the contiguous (fastest) axis.
 * A safetensors tensor of shape [out, in] therefore has ne = {in, out}; the safetensors code
 * reverses on the way in and out.
 *
 * Writing: cz_layout describes an output file whose tensor sizes are all known in advance.
 * cz_layout_finish() computes the header bytes and every tensor's absolute file offset, so
 * that tensors can be written independently and in parallel with pwrite() at their offsets.
 *
 * Ownership: a cz_model owns its mapping, descriptor, tensor array and strings; everything
 * points into it and dies with cz_model_close(). A cz_layout copies what it is given.
 * Thread: a cz_model is immutable after open and may be read from any number of threads.
 */
#ifndef CZ_MODEL_H
#define CZ_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cz_err.h"
#include "cz_type.h"

#define CZ_MAX_DIMS 4                 /* GGUF's limit; safetensors tensors with more dims are refused */
#define CZ_MAX_TENSORS 1000000        /* far above any real model; bounds the tensor array */
#define CZ_MAX_NAME 4096              /* bytes in a tensor name; GGUF itself allows only 64 */
#define CZ_ST_MAX_HEADER 100000000ULL /* safetensors reference limit (decimal, not MiB) */
#define CZ_GGUF_MAX_NAME 63           /* bytes in a GGUF tensor name: ggml's GGML_MAX_NAME (64)
                                       * counts the NUL, and gguf.cpp refuses longer names */

typedef enum { CZ_FORMAT_SAFETENSORS = 1, CZ_FORMAT_GGUF = 2 } cz_format;

/* "safetensors" / "gguf"; and the reverse (returns 0 when unknown). */
const char *cz_format_name(cz_format f);
cz_format cz_format_from_name(const char *name);

typedef struct {
  const char *name;        /* NUL-terminated, owned by the model */
  cz_type type;
  int n_dims;              /* 0..CZ_MAX_DIMS; 0 is a scalar */
  int64_t ne[CZ_MAX_DIMS]; /* ggml order, unused dims are 1 */
  uint64_t nbytes;
  const uint8_t *data;     /* inside the model's mapping */
} cz_tensor;

/* GGUF value types (GGUF-stable numbers). */
typedef enum {
  CZ_GGUF_U8 = 0, CZ_GGUF_I8 = 1, CZ_GGUF_U16 = 2, CZ_GGUF_I16 = 3, CZ_GGUF_U32 = 4,
  CZ_GGUF_I32 = 5, CZ_GGUF_F32 = 6, CZ_GGUF_BOOL = 7, CZ_GGUF_STRING = 8, CZ_GGUF_ARRAY = 9,
  CZ_GGUF_U64 = 10, CZ_GGUF_I64 = 11, CZ_GGUF_F64 = 12
} cz_gguf_vtype;

/* One GGUF key/value, kept as its serialized value bytes so that a writer reproduces any
 * value (arrays of arrays included) byte for byte without understanding it. */
typedef struct {
  char *key;               /* owned */
  cz_gguf_vtype type;
  uint8_t *raw;            /* owned copy of the serialized value (after the type field) */
  size_t raw_len;
} cz_gguf_kv;

typedef struct {
  cz_format format;
  uint64_t file_size;
  size_t n_tensors;
  cz_tensor *tensors;      /* in file order */
  /* GGUF only */
  uint32_t gguf_version;
  uint32_t alignment;
  size_t n_kv;
  cz_gguf_kv *kv;          /* in file order */
  /* safetensors only: __metadata__ as parallel arrays of strings, in file order */
  size_t n_meta;
  char **meta_keys;
  char **meta_values;
  /* private */
  int fd;
  void *map;
  size_t map_len;
} cz_model;

/* Open and validate path. On success *out owns a model; on failure err says why (with the
 * offending tensor or key named) and nothing is left open. */
cz_err_code cz_model_open(const char *path, cz_model **out, cz_error *err);
/* The same, but the caller says which format the file must be (the hardening rule: decide
 * the format from the endpoint or a parameter when there is one). A file without the GGUF
 * magic fails with bad_magic when f is GGUF; f == 0 detects, exactly like cz_model_open. */
cz_err_code cz_model_open_as(const char *path, cz_format f, cz_model **out, cz_error *err);
void cz_model_close(cz_model *m);

/* Tell the kernel that [p, p+len) of the model's mapping has been consumed: the whole pages
 * inside it leave this process's resident set (they stay in the page cache and fault back in
 * if read again). Keeps the resident size of a pass over a model bounded by what is in flight
 * rather than by the model size. Thread-safe; a no-op for ranges outside the mapping. */
void cz_model_release(const cz_model *m, const void *p, uint64_t len);

/* Tensor by name, or NULL. Linear scan is fine: callers look up a handful of names. */
const cz_tensor *cz_model_find(const cz_model *m, const char *name);
/* Number of elements of t (validated at open, cannot overflow). Use it rather than
 * multiplying ne[] yourself: an empty tensor (a zero dim) may have other dims whose product
 * does not fit in int64. */
int64_t cz_tensor_nelements(const cz_tensor *t);

/* GGUF KV accessors: index of key or -1; typed readers return false on type mismatch. */
long cz_gguf_find_kv(const cz_model *m, const char *key);
bool cz_gguf_kv_u32(const cz_gguf_kv *kv, uint32_t *out);
/* String value: pointer into kv->raw (not NUL-terminated) and its length. */
bool cz_gguf_kv_str(const cz_gguf_kv *kv, const char **s, uint64_t *len);

/* ---- writing ---- */

typedef struct {
  char *name;
  cz_type type;
  int n_dims;
  int64_t ne[CZ_MAX_DIMS]; /* ggml order */
  uint64_t nbytes;
  uint64_t file_offset;    /* absolute, set by cz_layout_finish */
} cz_layout_tensor;

typedef struct {
  cz_format format;
  uint32_t alignment;       /* GGUF data alignment; safetensors ignores it */
  size_t n_kv;              /* GGUF key/values, written in this order */
  cz_gguf_kv *kv;
  size_t n_meta;            /* safetensors __metadata__ */
  char **meta_keys;
  char **meta_values;
  size_t n_tensors;
  cz_layout_tensor *tensors;
  /* results of cz_layout_finish */
  uint8_t *header;          /* bytes [0, header_len) of the file */
  size_t header_len;
  uint64_t total_size;      /* exact size of the finished file */
  /* private */
  size_t cap_kv, cap_meta, cap_tensors; /* allocated lengths of the arrays above */
  bool finished;
} cz_layout;

cz_layout *cz_layout_new(cz_format f);
void cz_layout_free(cz_layout *l);
/* The KV and metadata setters below refuse (invalid_argument) a layout of the other format:
 * GGUF KVs only go into a GGUF layout, __metadata__ only into a safetensors one. */
/* Copy every KV of a GGUF model in order (for carrying metadata over); each copy replaces an
 * existing key the way cz_layout_set_u32 does. A model without KVs copies nothing. */
cz_err_code cz_layout_copy_kv(cz_layout *l, const cz_model *m, cz_error *err);
/* Set a u32 KV the way gguf_set_val_u32 does: remove any existing key, append at the end. */
cz_err_code cz_layout_set_u32(cz_layout *l, const char *key, uint32_t v, cz_error *err);
cz_err_code cz_layout_set_str(cz_layout *l, const char *key, const char *v, cz_error *err);
/* safetensors __metadata__: set (replacing an existing key in place) */
cz_err_code cz_layout_set_meta(cz_layout *l, const char *key, const char *value, cz_error *err);
/* Append a tensor; its nbytes is computed here: the row size of type times the other dims.
 * Refused (invalid_argument / unknown_dtype / invalid_tensor_info / size_overflow /
 * misaligned_slice) when the output format cannot hold it: GGUF needs an in_gguf type, ne[0]
 * a multiple of the block size and a name of 1..CZ_GGUF_MAX_NAME bytes; safetensors needs a
 * type with a dtype string, whole bytes and a UTF-8 name other than "__metadata__". A 0-dim
 * (scalar) tensor is written to GGUF with n_dims 1. Duplicate names are detected by
 * cz_layout_finish (duplicate_tensor). */
cz_err_code cz_layout_add_tensor(cz_layout *l, const char *name, cz_type type, int n_dims,
                                 const int64_t *ne, cz_error *err);
/* Compute header bytes and offsets. After this, no more additions. GGUF: the alignment is
 * general.alignment's when that KV is set, else l->alignment; a non-default l->alignment
 * without the KV appends general.alignment (a reader would otherwise assume 32). */
cz_err_code cz_layout_finish(cz_layout *l, cz_error *err);
/* Write the header and the zero padding between tensors (everything but tensor data) to fd. */
cz_err_code cz_layout_write_frame(const cz_layout *l, int fd, cz_error *err);

#endif
