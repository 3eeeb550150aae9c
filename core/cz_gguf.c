/* cz_gguf: the GGUF (v2, v3, little-endian) reader. Every count and length is checked against
 * the bytes left in the file before it is used to allocate or loop (the defence that closed
 * most llama.cpp GGUF CVEs), and every size computed from the file is overflow-checked. */
#include <stdlib.h>
#include <string.h>

#include "cz_model.h"
#include "cz_model_impl.h"

/* A cursor over the mapped file. pos <= size always holds. */
typedef struct {
  const uint8_t *buf;
  uint64_t size;
  uint64_t pos;
} reader;

static uint64_t remaining(const reader *r) { return r->size - r->pos; }

/* Claims n bytes; what names the field for the error message. */
static cz_err_code take(reader *r, uint64_t n, const uint8_t **p, const char *what,
                        cz_error *err) {
  if (n > remaining(r))
    return cz_err_set(err, CZ_E_TRUNCATED, "file ends inside %s (offset %llu)", what,
                      (unsigned long long)r->pos);
  if (p) *p = r->buf + r->pos;
  r->pos += n;
  return CZ_E_OK;
}

static cz_err_code read_u32(reader *r, uint32_t *v, const char *what, cz_error *err) {
  const uint8_t *p = NULL;
  cz_err_code rc = take(r, 4, &p, what, err);
  if (rc == CZ_E_OK) *v = cz__le32(p);
  return rc;
}

static cz_err_code read_u64(reader *r, uint64_t *v, const char *what, cz_error *err) {
  const uint8_t *p = NULL;
  cz_err_code rc = take(r, 8, &p, what, err);
  if (rc == CZ_E_OK) *v = cz__le64(p);
  return rc;
}

/* A GGUF string: u64 length, then the bytes (no NUL). The length is checked against the file
 * before anything else looks at it. */
static cz_err_code read_str(reader *r, const uint8_t **s, uint64_t *len, const char *what,
                            cz_error *err) {
  cz_err_code rc = read_u64(r, len, what, err);
  if (rc == CZ_E_OK) rc = take(r, *len, s, what, err);
  return rc;
}

/* Owned NUL-terminated copy; the caller has checked that s has no NUL inside. */
static char *dup_bytes(const uint8_t *s, uint64_t len) {
  char *c = malloc((size_t)len + 1);
  if (c == NULL) return NULL;
  memcpy(c, s, (size_t)len);
  c[len] = '\0';
  return c;
}

/* ---- values ---- */

/* Serialized size of a fixed-size value type, 0 for STRING and ARRAY. Indexed by the
 * GGUF-stable type number. */
static const uint8_t scalar_size[] = {
    [CZ_GGUF_U8] = 1,  [CZ_GGUF_I8] = 1,  [CZ_GGUF_U16] = 2, [CZ_GGUF_I16] = 2,
    [CZ_GGUF_U32] = 4, [CZ_GGUF_I32] = 4, [CZ_GGUF_F32] = 4, [CZ_GGUF_BOOL] = 1,
    [CZ_GGUF_STRING] = 0, [CZ_GGUF_ARRAY] = 0, [CZ_GGUF_U64] = 8, [CZ_GGUF_I64] = 8,
    [CZ_GGUF_F64] = 8,
};

#define N_VTYPES (sizeof scalar_size / sizeof scalar_size[0])

/* Fewest bytes one element of type t takes: a string is at least its length field, an
 * array at least its element type and count. */
static uint64_t min_size(uint32_t t) {
  if (t == CZ_GGUF_STRING) return 8;
  if (t == CZ_GGUF_ARRAY) return 12;
  return scalar_size[t];
}

static cz_err_code skip_value(reader *r, uint32_t type, int depth, const char *key,
                              cz_error *err);

/* ARRAY: u32 element type, u64 count, elements. The count is bounded by the bytes left
 * divided by the smallest element, so neither the loop nor a skip can run past the file. */
static cz_err_code skip_array(reader *r, int depth, const char *key, cz_error *err) {
  if (depth >= CZ_GGUF_MAX_NESTING)
    return cz_err_set(err, CZ_E_INVALID_KV, "key '%s': arrays nested deeper than %d", key,
                      CZ_GGUF_MAX_NESTING);
  uint32_t et = 0;
  uint64_t count = 0;
  cz_err_code rc = read_u32(r, &et, "an array type", err);
  if (rc == CZ_E_OK) rc = read_u64(r, &count, "an array count", err);
  if (rc != CZ_E_OK) return rc;
  if (et >= N_VTYPES)
    return cz_err_set(err, CZ_E_INVALID_KV, "key '%s': invalid array element type %u", key, et);
  if (count > remaining(r) / min_size(et))
    return cz_err_set(err, CZ_E_TRUNCATED,
                      "key '%s': array of %llu elements does not fit in the file", key,
                      (unsigned long long)count);
  if (scalar_size[et]) return take(r, count * scalar_size[et], NULL, "an array", err);
  for (uint64_t i = 0; i < count && rc == CZ_E_OK; i++) rc = skip_value(r, et, depth + 1, key, err);
  return rc;
}

/* Moves past one value of type `type` (already known to be < N_VTYPES). */
static cz_err_code skip_value(reader *r, uint32_t type, int depth, const char *key,
                              cz_error *err) {
  if (type == CZ_GGUF_ARRAY) return skip_array(r, depth, key, err);
  if (type == CZ_GGUF_STRING) {
    const uint8_t *s = NULL;
    uint64_t len = 0;
    return read_str(r, &s, &len, "a string value", err);
  }
  return take(r, scalar_size[type], NULL, "a value", err);
}

/* ---- key/values ---- */

static cz_err_code read_key(reader *r, char **key, cz_error *err) {
  const uint8_t *s = NULL;
  uint64_t len = 0;
  cz_err_code rc = read_str(r, &s, &len, "a key", err);
  if (rc != CZ_E_OK) return rc;
  if (len == 0) return cz_err_set(err, CZ_E_INVALID_KV, "empty key at offset %llu",
                                  (unsigned long long)(r->pos - 8));
  if (len > CZ_GGUF_MAX_KEY)
    return cz_err_set(err, CZ_E_INVALID_KV, "key of %llu bytes (at most %d)",
                      (unsigned long long)len, CZ_GGUF_MAX_KEY);
  /* A NUL would make the C string differ from the key (two keys could compare equal). */
  if (memchr(s, 0, (size_t)len))
    return cz_err_set(err, CZ_E_INVALID_KV, "key with a NUL byte at offset %llu",
                      (unsigned long long)(r->pos - len));
  *key = dup_bytes(s, len);
  return *key ? CZ_E_OK : cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
}

/* One KV: key, u32 type, value; the value's bytes are copied as they are. */
static cz_err_code read_kv(reader *r, cz_gguf_kv *kv, cz_error *err) {
  cz_err_code rc = read_key(r, &kv->key, err);
  uint32_t type = 0;
  if (rc == CZ_E_OK) rc = read_u32(r, &type, "a value type", err);
  if (rc != CZ_E_OK) return rc;
  if (type >= N_VTYPES)
    return cz_err_set(err, CZ_E_INVALID_KV, "key '%s': invalid value type %u", kv->key, type);
  kv->type = (cz_gguf_vtype)type;
  uint64_t start = r->pos;
  rc = skip_value(r, type, 0, kv->key, err);
  if (rc != CZ_E_OK) return rc;
  kv->raw_len = (size_t)(r->pos - start);
  kv->raw = malloc(kv->raw_len ? kv->raw_len : 1);
  if (kv->raw == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  memcpy(kv->raw, r->buf + start, kv->raw_len);
  return CZ_E_OK;
}

static cz_err_code check_unique_keys(const cz_model *m, cz_error *err) {
  const char **names = malloc((m->n_kv ? m->n_kv : 1) * sizeof *names);
  if (names == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  for (size_t i = 0; i < m->n_kv; i++) names[i] = m->kv[i].key;
  long d = cz__find_duplicate(names, m->n_kv);
  free(names);
  if (d == -2) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  if (d >= 0) return cz_err_set(err, CZ_E_DUPLICATE_KEY, "duplicate key '%s'", m->kv[d].key);
  return CZ_E_OK;
}

/* general.alignment: u32, a power of two (ggml's rule), and not absurdly large (ours). */
static cz_err_code read_alignment(cz_model *m, cz_error *err) {
  m->alignment = CZ_GGUF_DEFAULT_ALIGNMENT;
  long i = cz_gguf_find_kv(m, CZ_GGUF_ALIGNMENT_KEY);
  if (i < 0) return CZ_E_OK;
  uint32_t a = 0;
  if (!cz_gguf_kv_u32(&m->kv[i], &a))
    return cz_err_set(err, CZ_E_INVALID_ALIGNMENT, "general.alignment is not a u32");
  if (!cz__is_pow2(a) || a > CZ_GGUF_MAX_ALIGNMENT)
    return cz_err_set(err, CZ_E_INVALID_ALIGNMENT,
                      "general.alignment %u is not a power of two up to %u", a,
                      CZ_GGUF_MAX_ALIGNMENT);
  m->alignment = a;
  return CZ_E_OK;
}

/* Arrays that llama.cpp's vocabulary loader casts to a fixed C type and indexes by token id
 * without looking at the declared element type or count: a scores array declared INT8[n] is
 * read as float[n] (hardening.md G10). A file we accept, and so every file we write from it,
 * must not carry such an array on to the next reader. */
static const struct {
  const char *key;
  uint32_t elem;
  bool per_token; /* one element per entry of tokenizer.ggml.tokens */
} typed_arrays[] = {
    {"tokenizer.ggml.tokens", CZ_GGUF_STRING, false},
    {"tokenizer.ggml.scores", CZ_GGUF_F32, true},
    {"tokenizer.ggml.token_type", CZ_GGUF_I32, true},
    {"tokenizer.ggml.merges", CZ_GGUF_STRING, false},
};

static cz_err_code check_typed_arrays(const cz_model *m, cz_error *err) {
  static const char *const vname[] = {[CZ_GGUF_STRING] = "STRING", [CZ_GGUF_F32] = "FLOAT32",
                                      [CZ_GGUF_I32] = "INT32"};
  long tok = cz_gguf_find_kv(m, typed_arrays[0].key);
  for (size_t i = 0; i < sizeof typed_arrays / sizeof typed_arrays[0]; i++) {
    long k = cz_gguf_find_kv(m, typed_arrays[i].key);
    if (k < 0) continue;
    const cz_gguf_kv *kv = &m->kv[k];
    /* raw of an array: u32 element type, u64 count, elements (read_kv checked the sizes) */
    if (kv->type != CZ_GGUF_ARRAY || kv->raw_len < 12 || cz__le32(kv->raw) != typed_arrays[i].elem)
      return cz_err_set(err, CZ_E_INVALID_KV, "key '%s': not an array of %s", kv->key,
                        vname[typed_arrays[i].elem]);
    if (typed_arrays[i].per_token && tok >= 0 && m->kv[tok].type == CZ_GGUF_ARRAY &&
        cz__le64(kv->raw + 4) != cz__le64(m->kv[tok].raw + 4))
      return cz_err_set(err, CZ_E_INVALID_KV, "key '%s': %llu elements for %llu tokens",
                        kv->key, (unsigned long long)cz__le64(kv->raw + 4),
                        (unsigned long long)cz__le64(m->kv[tok].raw + 4));
  }
  return CZ_E_OK;
}

static cz_err_code read_kvs(cz_model *m, reader *r, uint64_t n_kv, cz_error *err) {
  if (n_kv > CZ_GGUF_MAX_KV)
    return cz_err_set(err, CZ_E_INVALID_KV, "%llu key/values (at most %d)",
                      (unsigned long long)n_kv, CZ_GGUF_MAX_KV);
  if (n_kv > remaining(r) / CZ_GGUF_MIN_KV)
    return cz_err_set(err, CZ_E_TRUNCATED, "%llu key/values do not fit in the file",
                      (unsigned long long)n_kv);
  m->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *m->kv);
  if (m->kv == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  for (uint64_t i = 0; i < n_kv; i++) {
    m->n_kv++; /* counted first so that close frees a half-read KV */
    cz_err_code rc = read_kv(r, &m->kv[i], err);
    if (rc != CZ_E_OK) return rc;
  }
  cz_err_code rc = check_unique_keys(m, err);
  if (rc == CZ_E_OK) rc = read_alignment(m, err);
  if (rc == CZ_E_OK) rc = check_typed_arrays(m, err);
  return rc;
}

/* ---- tensor infos ---- */

/* Offsets of the tensors relative to the data section, kept apart until it is located. */
typedef struct {
  uint64_t offset;
  size_t index;
} tensor_pos;

static cz_err_code read_tensor_name(reader *r, cz_tensor *t, cz_error *err) {
  const uint8_t *s = NULL;
  uint64_t len = 0;
  cz_err_code rc = read_str(r, &s, &len, "a tensor name", err);
  if (rc != CZ_E_OK) return rc;
  if (len == 0 || len > CZ_GGUF_MAX_NAME)
    return cz_err_set(err, CZ_E_INVALID_TENSOR_INFO, "tensor name of %llu bytes (1..%d)",
                      (unsigned long long)len, CZ_GGUF_MAX_NAME);
  if (memchr(s, 0, (size_t)len))
    return cz_err_set(err, CZ_E_INVALID_TENSOR_INFO, "tensor name with a NUL byte");
  t->name = dup_bytes(s, len);
  return t->name ? CZ_E_OK : cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
}

static cz_err_code read_shape(reader *r, cz_tensor *t, cz_error *err) {
  uint32_t n_dims = 0;
  cz_err_code rc = read_u32(r, &n_dims, "a tensor's n_dims", err);
  if (rc != CZ_E_OK) return rc;
  if (n_dims < 1 || n_dims > CZ_MAX_DIMS)
    return cz_err_set(err, CZ_E_INVALID_TENSOR_INFO, "tensor '%s': n_dims %u (1..%d)", t->name,
                      n_dims, CZ_MAX_DIMS);
  t->n_dims = (int)n_dims;
  for (int i = 0; i < CZ_MAX_DIMS; i++) t->ne[i] = 1;
  for (uint32_t i = 0; i < n_dims; i++) {
    uint64_t ne = 0;
    if ((rc = read_u64(r, &ne, "a tensor's shape", err)) != CZ_E_OK) return rc;
    if (ne > (uint64_t)INT64_MAX) /* ggml reads int64: this is a negative dimension */
      return cz_err_set(err, CZ_E_INVALID_TENSOR_INFO, "tensor '%s': ne[%u] is negative",
                        t->name, i);
    t->ne[i] = (int64_t)ne;
  }
  return CZ_E_OK;
}

static cz_err_code read_type(reader *r, cz_tensor *t, const cz_type_traits **tr,
                             cz_error *err) {
  uint32_t type = 0;
  cz_err_code rc = read_u32(r, &type, "a tensor's type", err);
  if (rc != CZ_E_OK) return rc;
  /* type < GGML_END first: the traits table also holds safetensors-only ids. */
  *tr = type < CZ_TYPE_GGML_END ? cz_type_get((int)type) : NULL;
  if (*tr == NULL || !(*tr)->in_gguf)
    return cz_err_set(err, CZ_E_UNKNOWN_DTYPE, "tensor '%s': type id %u is not a GGUF type",
                      t->name, type);
  t->type = (cz_type)type;
  return CZ_E_OK;
}

static cz_err_code read_tensor_info(cz_model *m, reader *r, cz_tensor *t, uint64_t *offset,
                                    cz_error *err) {
  const cz_type_traits *tr = NULL;
  cz_err_code rc = read_tensor_name(r, t, err);
  if (rc == CZ_E_OK) rc = read_shape(r, t, err);
  if (rc == CZ_E_OK) rc = read_type(r, t, &tr, err);
  if (rc == CZ_E_OK) rc = read_u64(r, offset, "a tensor's offset", err);
  if (rc == CZ_E_OK) rc = cz__gguf_nbytes(tr, t->n_dims, t->ne, &t->nbytes, err, t->name);
  if (rc == CZ_E_OK && *offset % m->alignment != 0)
    rc = cz_err_set(err, CZ_E_INVALID_OFFSETS, "tensor '%s': offset %llu is not a multiple "
                    "of the alignment %u", t->name, (unsigned long long)*offset, m->alignment);
  return rc;
}

static cz_err_code check_unique_tensors(const cz_model *m, cz_error *err) {
  const char **names = malloc((m->n_tensors ? m->n_tensors : 1) * sizeof *names);
  if (names == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  for (size_t i = 0; i < m->n_tensors; i++) names[i] = m->tensors[i].name;
  long d = cz__find_duplicate(names, m->n_tensors);
  free(names);
  if (d == -2) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  if (d >= 0)
    return cz_err_set(err, CZ_E_DUPLICATE_TENSOR, "duplicate tensor '%s'", m->tensors[d].name);
  return CZ_E_OK;
}

static cz_err_code read_tensor_infos(cz_model *m, reader *r, uint64_t n, tensor_pos *pos,
                                     cz_error *err) {
  for (uint64_t i = 0; i < n; i++) {
    m->n_tensors++; /* counted first so that close frees a half-read name */
    pos[i].index = (size_t)i;
    cz_err_code rc = read_tensor_info(m, r, &m->tensors[i], &pos[i].offset, err);
    if (rc != CZ_E_OK) return rc;
  }
  return check_unique_tensors(m, err);
}

/* ---- data section ---- */

/* ggml's rule (gguf.cpp): in info order, each tensor starts exactly at the padded end of the
 * previous one, the first at 0. Anything else (gaps, another order, overlap) is refused with
 * the offset ggml expected, so that every file we accept is one llama.cpp loads too. */
static cz_err_code place_tensors(cz_model *m, const uint8_t *data, uint64_t data_size,
                                 const tensor_pos *pos, cz_error *err) {
  uint64_t expect = 0;
  for (size_t i = 0; i < m->n_tensors; i++) {
    cz_tensor *t = &m->tensors[pos[i].index];
    if (pos[i].offset != expect)
      return cz_err_set(err, CZ_E_INVALID_OFFSETS,
                        "tensor '%s': offset %llu, expected %llu (each tensor must start at the "
                        "padded end of the previous one)", t->name,
                        (unsigned long long)pos[i].offset, (unsigned long long)expect);
    uint64_t end = 0;
    if (__builtin_add_overflow(pos[i].offset, t->nbytes, &end) ||
        !cz__pad(end, m->alignment, &expect))
      return cz_err_set(err, CZ_E_INVALID_OFFSETS, "tensor '%s': offset + size overflows",
                        t->name);
    if (end > data_size)
      return cz_err_set(err, CZ_E_TRUNCATED,
                        "tensor '%s': data [%llu, %llu) runs past the end of the file", t->name,
                        (unsigned long long)pos[i].offset, (unsigned long long)end);
    t->data = data + pos[i].offset;
  }
  return CZ_E_OK;
}

static cz_err_code read_tensors(cz_model *m, reader *r, uint64_t n, cz_error *err) {
  /* Checked again here: the KVs have used up part of what remained at the header. */
  if (n > remaining(r) / CZ_GGUF_MIN_TENSOR_INFO)
    return cz_err_set(err, CZ_E_TRUNCATED, "%llu tensor infos do not fit in the file",
                      (unsigned long long)n);
  tensor_pos *pos = malloc((n ? n : 1) * sizeof *pos);
  m->tensors = calloc(n ? n : 1, sizeof *m->tensors);
  cz_err_code rc = CZ_E_OK;
  if (pos == NULL || m->tensors == NULL) rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  if (rc == CZ_E_OK) rc = read_tensor_infos(m, r, n, pos, err);
  /* The data section starts at the aligned end of the tensor infos. A file whose tensors
   * are all empty may end before that point (ggml seeks past EOF and reads nothing): it then
   * has an empty data section at its end. */
  uint64_t data_start = r->size;
  if (rc == CZ_E_OK && cz__pad(r->pos, m->alignment, &data_start) && data_start > r->size)
    data_start = r->size;
  if (rc == CZ_E_OK) rc = place_tensors(m, r->buf + data_start, r->size - data_start, pos, err);
  free(pos);
  return rc;
}

/* ---- header ---- */

static cz_err_code read_header(cz_model *m, reader *r, uint64_t *n_tensors, uint64_t *n_kv,
                               cz_error *err) {
  const uint8_t *magic = NULL;
  cz_err_code rc = take(r, 4, &magic, "the magic", err);
  if (rc != CZ_E_OK) return rc;
  if (memcmp(magic, CZ_GGUF_MAGIC, 4) != 0)
    return cz_err_set(err, CZ_E_BAD_MAGIC, "not a GGUF file (magic %02x %02x %02x %02x)",
                      magic[0], magic[1], magic[2], magic[3]);
  /* v1 had 32-bit counts; v2 and v3 are the same layout (v3 only allowed big-endian files,
   * which show up here as a byte-swapped version such as 0x03000000). */
  if ((rc = read_u32(r, &m->gguf_version, "the version", err)) != CZ_E_OK) return rc;
  if (m->gguf_version != 2 && m->gguf_version != 3)
    return cz_err_set(err, CZ_E_UNSUPPORTED_VERSION, "GGUF version %u (2 and 3 are supported)",
                      m->gguf_version);
  if ((rc = read_u64(r, n_tensors, "the tensor count", err)) != CZ_E_OK) return rc;
  if ((rc = read_u64(r, n_kv, "the key/value count", err)) != CZ_E_OK) return rc;
  if (*n_tensors > CZ_MAX_TENSORS)
    return cz_err_set(err, CZ_E_TOO_MANY_TENSORS, "%llu tensors (at most %d)",
                      (unsigned long long)*n_tensors, CZ_MAX_TENSORS);
  if (*n_tensors > remaining(r) / CZ_GGUF_MIN_TENSOR_INFO)
    return cz_err_set(err, CZ_E_TRUNCATED, "%llu tensor infos do not fit in the file",
                      (unsigned long long)*n_tensors);
  return CZ_E_OK;
}

cz_err_code cz__gguf_parse(cz_model *m, const uint8_t *buf, uint64_t size, cz_error *err) {
  reader r = {.buf = buf, .size = size, .pos = 0};
  uint64_t n_tensors = 0, n_kv = 0;
  cz_err_code rc = read_header(m, &r, &n_tensors, &n_kv, err);
  if (rc == CZ_E_OK) rc = read_kvs(m, &r, n_kv, err);
  if (rc == CZ_E_OK) rc = read_tensors(m, &r, n_tensors, err);
  return rc;
}
