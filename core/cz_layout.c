/* cz_layout: the writer side. A layout collects KVs/metadata and tensor shapes, then
 * cz_layout_finish computes the header bytes and each tensor's absolute offset, so that the
 * tensor data can be written independently (and in parallel) with pwrite. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cz_model.h"
#include "cz_model_impl.h"

/* ---- lifetime ---- */

cz_layout *cz_layout_new(cz_format f) {
  if (f != CZ_FORMAT_GGUF && f != CZ_FORMAT_SAFETENSORS) return NULL;
  cz_layout *l = calloc(1, sizeof *l);
  if (l == NULL) return NULL;
  l->format = f;
  l->alignment = CZ_GGUF_DEFAULT_ALIGNMENT;
  return l;
}

void cz_layout_free(cz_layout *l) {
  if (l == NULL) return;
  cz__kv_free(l->kv, l->n_kv);
  for (size_t i = 0; i < l->n_meta; i++) {
    free(l->meta_keys[i]);
    free(l->meta_values[i]);
  }
  free(l->meta_keys);
  free(l->meta_values);
  for (size_t i = 0; i < l->n_tensors; i++) free(l->tensors[i].name);
  free(l->tensors);
  free(l->header);
  free(l);
}

/* Makes room for one more element in *arr (capacity *cap, length n): doubling keeps appends
 * amortized O(1) for layouts of many tensors. */
static bool grow(void **arr, size_t *cap, size_t n, size_t elem) {
  if (n < *cap) return true;
  size_t c = *cap ? *cap * 2 : 16;
  void *p = realloc(*arr, c * elem);
  if (p == NULL) return false;
  *arr = p;
  *cap = c;
  return true;
}

static cz_err_code check_open(const cz_layout *l, cz_format f, const char *what,
                              cz_error *err) {
  if (l == NULL) return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%s: NULL layout", what);
  if (l->finished)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%s: layout already finished", what);
  if (f && l->format != f)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%s: not for a %s layout", what,
                      cz_format_name(l->format));
  return CZ_E_OK;
}

/* ---- GGUF key/values ---- */

static void remove_kv(cz_layout *l, const char *key) {
  for (size_t i = 0; i < l->n_kv; i++) {
    if (strcmp(l->kv[i].key, key) != 0) continue;
    free(l->kv[i].key);
    free(l->kv[i].raw);
    memmove(&l->kv[i], &l->kv[i + 1], (l->n_kv - i - 1) * sizeof *l->kv);
    l->n_kv--;
    return; /* keys are unique in a layout */
  }
}

/* gguf_set_val_* semantics: drop the key wherever it is, append the new value at the end. */
static cz_err_code set_raw(cz_layout *l, const char *key, cz_gguf_vtype type,
                           const uint8_t *raw, size_t raw_len, cz_error *err) {
  cz_err_code rc = check_open(l, CZ_FORMAT_GGUF, "set KV", err);
  if (rc != CZ_E_OK) return rc;
  size_t klen = key ? strlen(key) : 0;
  if (klen == 0 || klen > CZ_GGUF_MAX_KEY)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "KV key of %zu bytes (1..%d)", klen,
                      CZ_GGUF_MAX_KEY);
  remove_kv(l, key);
  if (!grow((void **)&l->kv, &l->cap_kv, l->n_kv, sizeof *l->kv))
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz_gguf_kv kv = {.key = strdup(key), .type = type, .raw = malloc(raw_len ? raw_len : 1),
                   .raw_len = raw_len};
  if (kv.key == NULL || kv.raw == NULL) {
    free(kv.key);
    free(kv.raw);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  memcpy(kv.raw, raw, raw_len);
  l->kv[l->n_kv++] = kv;
  return CZ_E_OK;
}

cz_err_code cz_layout_set_u32(cz_layout *l, const char *key, uint32_t v, cz_error *err) {
  uint8_t raw[4];
  cz__put32(raw, v);
  return set_raw(l, key, CZ_GGUF_U32, raw, sizeof raw, err);
}

cz_err_code cz_layout_set_str(cz_layout *l, const char *key, const char *v, cz_error *err) {
  if (v == NULL) return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "KV '%s': NULL string", key);
  size_t n = strlen(v);
  uint8_t *raw = malloc(8 + n);
  if (raw == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz__put64(raw, n);
  memcpy(raw + 8, v, n);
  cz_err_code rc = set_raw(l, key, CZ_GGUF_STRING, raw, 8 + n, err);
  free(raw);
  return rc;
}

cz_err_code cz_layout_copy_kv(cz_layout *l, const cz_model *m, cz_error *err) {
  if (m == NULL) return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "copy KV: NULL model");
  cz_err_code rc = CZ_E_OK;
  for (size_t i = 0; i < m->n_kv && rc == CZ_E_OK; i++)
    rc = set_raw(l, m->kv[i].key, m->kv[i].type, m->kv[i].raw, m->kv[i].raw_len, err);
  return rc;
}

/* ---- safetensors metadata ---- */

cz_err_code cz_layout_set_meta(cz_layout *l, const char *key, const char *value,
                               cz_error *err) {
  cz_err_code rc = check_open(l, CZ_FORMAT_SAFETENSORS, "set metadata", err);
  if (rc != CZ_E_OK) return rc;
  if (key == NULL || value == NULL)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "set metadata: NULL key or value");
  char *v = strdup(value);
  if (v == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  for (size_t i = 0; i < l->n_meta; i++)
    if (strcmp(l->meta_keys[i], key) == 0) {
      free(l->meta_values[i]);
      l->meta_values[i] = v;
      return CZ_E_OK;
    }
  size_t cap = l->cap_meta;
  char *k = strdup(key);
  if (k == NULL || !grow((void **)&l->meta_keys, &cap, l->n_meta, sizeof *l->meta_keys) ||
      !grow((void **)&l->meta_values, &l->cap_meta, l->n_meta, sizeof *l->meta_values)) {
    free(k);
    free(v);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  l->meta_keys[l->n_meta] = k;
  l->meta_values[l->n_meta++] = v;
  return CZ_E_OK;
}

/* ---- tensors ---- */

/* The format-specific rules a tensor must meet to be written; computes its byte size. */
static cz_err_code check_tensor(const cz_layout *l, const char *name, const cz_type_traits *tr,
                                int n_dims, const int64_t *ne, uint64_t *nbytes,
                                cz_error *err) {
  size_t len = strlen(name);
  if (l->format == CZ_FORMAT_GGUF) {
    if (len == 0 || len > CZ_GGUF_MAX_NAME)
      return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "tensor '%s': GGUF names are 1..%d bytes",
                        name, CZ_GGUF_MAX_NAME);
    if (!tr->in_gguf)
      return cz_err_set(err, CZ_E_UNKNOWN_DTYPE, "tensor '%s': %s cannot be stored in GGUF",
                        name, tr->name);
    return cz__gguf_nbytes(tr, n_dims, ne, nbytes, err, name);
  }
  /* The name becomes a JSON key next to __metadata__, and JSON text must be UTF-8. */
  if (len > CZ_MAX_NAME || strcmp(name, "__metadata__") == 0 ||
      !cz__utf8_valid((const uint8_t *)name, len))
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "tensor '%.64s': not a usable safetensors "
                      "name", name);
  if (tr->st_name == NULL)
    return cz_err_set(err, CZ_E_UNKNOWN_DTYPE, "tensor '%s': %s has no safetensors dtype",
                      name, tr->name);
  return cz__st_nbytes(tr, n_dims, ne, nbytes, err, name);
}

cz_err_code cz_layout_add_tensor(cz_layout *l, const char *name, cz_type type, int n_dims,
                                 const int64_t *ne, cz_error *err) {
  cz_err_code rc = check_open(l, 0, "add tensor", err);
  if (rc != CZ_E_OK) return rc;
  if (name == NULL || n_dims < 0 || n_dims > CZ_MAX_DIMS || (n_dims > 0 && ne == NULL))
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "add tensor: bad name or n_dims %d", n_dims);
  cz_layout_tensor t = {.type = type, .n_dims = n_dims};
  for (int i = 0; i < CZ_MAX_DIMS; i++) t.ne[i] = i < n_dims ? ne[i] : 1;
  for (int i = 0; i < n_dims; i++)
    if (ne[i] < 0)
      return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "tensor '%s': ne[%d] < 0", name, i);
  const cz_type_traits *tr = cz_type_get((int)type);
  if (tr == NULL)
    return cz_err_set(err, CZ_E_UNKNOWN_DTYPE, "tensor '%s': invalid type %d", name, (int)type);
  if ((rc = check_tensor(l, name, tr, n_dims, t.ne, &t.nbytes, err)) != CZ_E_OK) return rc;
  if (!grow((void **)&l->tensors, &l->cap_tensors, l->n_tensors, sizeof *l->tensors) ||
      (t.name = strdup(name)) == NULL)
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  l->tensors[l->n_tensors++] = t;
  return CZ_E_OK;
}

static cz_err_code check_unique(const cz_layout *l, cz_error *err) {
  const char **names = malloc((l->n_tensors ? l->n_tensors : 1) * sizeof *names);
  if (names == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  for (size_t i = 0; i < l->n_tensors; i++) names[i] = l->tensors[i].name;
  long d = cz__find_duplicate(names, l->n_tensors);
  free(names);
  if (d == -2) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  if (d >= 0)
    return cz_err_set(err, CZ_E_DUPLICATE_TENSOR, "duplicate tensor '%s'", l->tensors[d].name);
  return CZ_E_OK;
}

/* ---- GGUF header ---- */

/* The alignment the file will declare; see cz_layout_finish in the header. */
static cz_err_code gguf_alignment(cz_layout *l, uint32_t *align, cz_error *err) {
  for (size_t i = 0; i < l->n_kv; i++) {
    if (strcmp(l->kv[i].key, CZ_GGUF_ALIGNMENT_KEY) != 0) continue;
    if (!cz_gguf_kv_u32(&l->kv[i], align) || !cz__is_pow2(*align) ||
        *align > CZ_GGUF_MAX_ALIGNMENT)
      return cz_err_set(err, CZ_E_INVALID_ALIGNMENT, "general.alignment is not a u32 power "
                        "of two up to %u", CZ_GGUF_MAX_ALIGNMENT);
    return CZ_E_OK;
  }
  *align = l->alignment;
  if (!cz__is_pow2(*align) || *align > CZ_GGUF_MAX_ALIGNMENT)
    return cz_err_set(err, CZ_E_INVALID_ALIGNMENT, "alignment %u is not a power of two up "
                      "to %u", *align, CZ_GGUF_MAX_ALIGNMENT);
  if (*align == CZ_GGUF_DEFAULT_ALIGNMENT) return CZ_E_OK;
  return cz_layout_set_u32(l, CZ_GGUF_ALIGNMENT_KEY, *align, err);
}

/* GGUF writes scalars as one dimension of 1: its readers want n_dims >= 1. */
static int gguf_dims(const cz_layout_tensor *t) { return t->n_dims ? t->n_dims : 1; }

static size_t gguf_meta_size(const cz_layout *l) {
  size_t n = 4 + 4 + 8 + 8; /* magic, version, tensor count, KV count */
  for (size_t i = 0; i < l->n_kv; i++) n += 8 + strlen(l->kv[i].key) + 4 + l->kv[i].raw_len;
  for (size_t i = 0; i < l->n_tensors; i++)
    n += 8 + strlen(l->tensors[i].name) + 4 + 8 * (size_t)gguf_dims(&l->tensors[i]) + 4 + 8;
  return n;
}

/* Appends a GGUF string (u64 length + bytes) at *p. */
static uint8_t *put_str(uint8_t *p, const char *s) {
  size_t n = strlen(s);
  cz__put64(p, n);
  memcpy(p + 8, s, n);
  return p + 8 + n;
}

static void gguf_serialize(const cz_layout *l, const uint64_t *rel, uint8_t *p) {
  memcpy(p, CZ_GGUF_MAGIC, 4);
  cz__put32(p + 4, 3);
  cz__put64(p + 8, l->n_tensors);
  cz__put64(p + 16, l->n_kv);
  p += 24;
  for (size_t i = 0; i < l->n_kv; i++) {
    p = put_str(p, l->kv[i].key);
    cz__put32(p, (uint32_t)l->kv[i].type);
    memcpy(p + 4, l->kv[i].raw, l->kv[i].raw_len);
    p += 4 + l->kv[i].raw_len;
  }
  for (size_t i = 0; i < l->n_tensors; i++) {
    const cz_layout_tensor *t = &l->tensors[i];
    p = put_str(p, t->name);
    cz__put32(p, (uint32_t)gguf_dims(t));
    p += 4;
    for (int d = 0; d < gguf_dims(t); d++, p += 8) cz__put64(p, (uint64_t)t->ne[d]);
    cz__put32(p, (uint32_t)t->type);
    cz__put64(p + 4, rel[i]);
    p += 12;
  }
  /* the padding up to the data section is already zero (calloc) */
}

static cz_err_code gguf_finish(cz_layout *l, cz_error *err) {
  uint32_t align;
  cz_err_code rc = gguf_alignment(l, &align, err);
  if (rc != CZ_E_OK) return rc;
  uint64_t *rel = malloc((l->n_tensors ? l->n_tensors : 1) * sizeof *rel);
  if (rel == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  /* Each tensor starts at the padded end of the previous; the last is padded too, as
   * llama.cpp writes it. */
  uint64_t data = 0, header_len = 0, padded = 0;
  for (size_t i = 0; i < l->n_tensors && rc == CZ_E_OK; i++) {
    rel[i] = data;
    if (!cz__pad(l->tensors[i].nbytes, align, &padded) ||
        __builtin_add_overflow(data, padded, &data))
      rc = cz_err_set(err, CZ_E_SIZE_OVERFLOW, "data section size overflows");
  }
  cz__pad(gguf_meta_size(l), align, &header_len); /* in-memory size: cannot wrap */
  if (rc == CZ_E_OK && __builtin_add_overflow(header_len, data, &l->total_size))
    rc = cz_err_set(err, CZ_E_SIZE_OVERFLOW, "file size overflows");
  if (rc == CZ_E_OK && (l->header = calloc(1, (size_t)header_len)) == NULL)
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  if (rc == CZ_E_OK) {
    gguf_serialize(l, rel, l->header);
    l->header_len = (size_t)header_len;
    for (size_t i = 0; i < l->n_tensors; i++) l->tensors[i].file_offset = header_len + rel[i];
  }
  free(rel);
  return rc;
}

/* ---- safetensors header ---- */

static json_t *st_entry_json(const cz_layout_tensor *t, uint64_t begin) {
  json_t *shape = json_array();
  for (int d = t->n_dims - 1; shape && d >= 0; d--)
    if (json_array_append_new(shape, json_integer(t->ne[d])) != 0) {
      json_decref(shape);
      shape = NULL;
    }
  json_t *off = json_pack("[II]", (json_int_t)begin, (json_int_t)(begin + t->nbytes));
  const cz_type_traits *tr = cz_type_get((int)t->type);
  /* "o" steals the references, even when the pack fails. */
  return json_pack("{s:s, s:o, s:o}", "dtype", tr->st_name, "shape", shape, "data_offsets",
                   off);
}

/* The header object: __metadata__ first when there is any, then tensors in layout order
 * (jansson keeps insertion order). Offsets are contiguous from 0. */
static cz_err_code st_header_json(const cz_layout *l, json_t **out, cz_error *err) {
  json_t *root = json_object();
  cz_err_code rc = root ? CZ_E_OK : cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  if (rc == CZ_E_OK && l->n_meta > 0) {
    json_t *meta = json_object();
    for (size_t i = 0; meta && i < l->n_meta; i++)
      /* json_string refuses invalid UTF-8, which a JSON header cannot carry */
      if (json_object_set_new(meta, l->meta_keys[i], json_string(l->meta_values[i])) != 0) {
        json_decref(meta);
        meta = NULL;
      }
    if (meta == NULL || json_object_set_new(root, "__metadata__", meta) != 0)
      rc = cz_err_set(err, CZ_E_INVALID_ARGUMENT, "metadata is not UTF-8 text");
  }
  uint64_t begin = 0;
  for (size_t i = 0; i < l->n_tensors && rc == CZ_E_OK; i++) {
    const cz_layout_tensor *t = &l->tensors[i];
    if (t->nbytes > (uint64_t)INT64_MAX - begin) /* JSON integers are int64 */
      rc = cz_err_set(err, CZ_E_SIZE_OVERFLOW, "data section size overflows");
    else if (json_object_set_new(root, t->name, st_entry_json(t, begin)) != 0)
      rc = cz_err_set(err, CZ_E_NO_MEMORY, "tensor '%s': cannot build its header entry",
                      t->name);
    begin += t->nbytes;
  }
  if (rc != CZ_E_OK) {
    json_decref(root);
    return rc;
  }
  *out = root;
  return CZ_E_OK;
}

static cz_err_code st_finish(cz_layout *l, cz_error *err) {
  json_t *root;
  cz_err_code rc = st_header_json(l, &root, err);
  if (rc != CZ_E_OK) return rc;
  char *js = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(root);
  if (js == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "cannot serialize the header");
  size_t len = strlen(js);
  /* Spaces up to a multiple of 8, as the reference writer pads, so that the data (and
   * every 8-byte-aligned tensor) starts aligned. */
  size_t n = (len + 7) & ~(size_t)7;
  if (n > CZ_ST_MAX_HEADER) {
    free(js);
    return cz_err_set(err, CZ_E_HEADER_TOO_LARGE, "header of %zu bytes exceeds %llu", n,
                      CZ_ST_MAX_HEADER);
  }
  l->header = malloc(CZ_ST_N_LEN + n);
  if (l->header == NULL) {
    free(js);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  cz__put64(l->header, n);
  memcpy(l->header + CZ_ST_N_LEN, js, len);
  memset(l->header + CZ_ST_N_LEN + len, ' ', n - len);
  free(js);
  l->header_len = CZ_ST_N_LEN + n;
  uint64_t off = l->header_len;
  for (size_t i = 0; i < l->n_tensors; i++) {
    l->tensors[i].file_offset = off;
    off += l->tensors[i].nbytes;
  }
  l->total_size = off;
  return CZ_E_OK;
}

cz_err_code cz_layout_finish(cz_layout *l, cz_error *err) {
  cz_err_code rc = check_open(l, 0, "finish", err);
  if (rc != CZ_E_OK) return rc;
  if (l->n_tensors > CZ_MAX_TENSORS)
    return cz_err_set(err, CZ_E_TOO_MANY_TENSORS, "%zu tensors (at most %d)", l->n_tensors,
                      CZ_MAX_TENSORS);
  if ((rc = check_unique(l, err)) != CZ_E_OK) return rc;
  rc = l->format == CZ_FORMAT_GGUF ? gguf_finish(l, err) : st_finish(l, err);
  if (rc == CZ_E_OK) l->finished = true;
  return rc;
}

/* ---- writing the frame ---- */

static cz_err_code pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off, cz_error *err) {
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, (off_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = w < 0 ? errno : EIO;
      cz_err_code code = e == ENOSPC || e == EDQUOT ? CZ_E_NO_SPACE : CZ_E_IO;
      return cz_err_set(err, code, "write at offset %llu: %s", (unsigned long long)off,
                        strerror(e));
    }
    p += w;
    n -= (size_t)w;
    off += (uint64_t)w;
  }
  return CZ_E_OK;
}

/* n zero bytes at off; n is below the alignment, itself at most CZ_GGUF_MAX_ALIGNMENT. */
static cz_err_code write_zeros(int fd, uint64_t off, uint64_t n, cz_error *err) {
  static const uint8_t zeros[4096];
  cz_err_code rc = CZ_E_OK;
  while (n > 0 && rc == CZ_E_OK) {
    size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
    rc = pwrite_all(fd, zeros, k, off, err);
    off += k;
    n -= k;
  }
  return rc;
}

cz_err_code cz_layout_write_frame(const cz_layout *l, int fd, cz_error *err) {
  if (l == NULL || !l->finished)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "write frame: layout not finished");
  cz_err_code rc = pwrite_all(fd, l->header, l->header_len, 0, err);
  if (l->format != CZ_FORMAT_GGUF) return rc; /* safetensors data is contiguous */
  /* Each tensor's padding runs to the next tensor, or to the end of the file. */
  for (size_t i = 0; i < l->n_tensors && rc == CZ_E_OK; i++) {
    uint64_t end = l->tensors[i].file_offset + l->tensors[i].nbytes;
    uint64_t next = i + 1 < l->n_tensors ? l->tensors[i + 1].file_offset : l->total_size;
    rc = write_zeros(fd, end, next - end, err);
  }
  return rc;
}
