/* cz_safetensors: the safetensors reader. It makes the reference reader's checks
 * (safetensors/src/tensor.rs, read_metadata + Metadata::validate) in the same order, plus
 * duplicate-key rejection and a few local limits (dims, name length, tensor count). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cz_model.h"
#include "cz_model_impl.h"

#define METADATA_KEY "__metadata__"

/* One tensor entry while the header is being validated; name points into the JSON tree. */
typedef struct {
  const char *name;
  size_t order; /* position in the header, to keep the sort deterministic on equal offsets */
  cz_type type;
  int n_dims;
  int64_t ne[CZ_MAX_DIMS];
  uint64_t begin, end; /* data_offsets, relative to the byte buffer */
} st_entry;

/* ---- header parsing ---- */

/* __metadata__ must be a string->string map ("arbitrary JSON is not allowed"). Kept in
 * header order: jansson objects iterate in insertion order (since 2.8). */
static cz_err_code parse_metadata(cz_model *m, json_t *meta, cz_error *err) {
  if (!json_is_object(meta))
    return cz_err_set(err, CZ_E_INVALID_METADATA, "__metadata__ is not an object");
  size_t n = json_object_size(meta);
  if (n == 0) return CZ_E_OK;
  m->meta_keys = calloc(n, sizeof *m->meta_keys);
  m->meta_values = calloc(n, sizeof *m->meta_values);
  if (m->meta_keys == NULL || m->meta_values == NULL)
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  const char *key;
  json_t *v;
  json_object_foreach(meta, key, v) {
    if (!json_is_string(v))
      return cz_err_set(err, CZ_E_INVALID_METADATA, "__metadata__ value of '%s' is not a string",
                        key);
    m->meta_keys[m->n_meta] = strdup(key);
    m->meta_values[m->n_meta] = strdup(json_string_value(v));
    m->n_meta++; /* counted before the check so that close frees a half-made pair */
    if (m->meta_keys[m->n_meta - 1] == NULL || m->meta_values[m->n_meta - 1] == NULL)
      return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  return CZ_E_OK;
}

/* JSON integer >= 0, or false (reals like 1.0 are refused: the schema says integer). */
static bool get_uint(json_t *v, uint64_t *out) {
  if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
  *out = (uint64_t)json_integer_value(v);
  return true;
}

/* "shape": outermost first in the file, stored reversed into ggml order. */
static cz_err_code parse_shape(st_entry *e, json_t *shape, cz_error *err) {
  if (!json_is_array(shape))
    return cz_err_set(err, CZ_E_INVALID_HEADER, "tensor '%s': shape is not an array", e->name);
  size_t n = json_array_size(shape);
  if (n > CZ_MAX_DIMS)
    return cz_err_set(err, CZ_E_UNSUPPORTED, "tensor '%s': %zu dimensions (at most %d supported)",
                      e->name, n, CZ_MAX_DIMS);
  e->n_dims = (int)n;
  for (int i = 0; i < CZ_MAX_DIMS; i++) e->ne[i] = 1;
  for (size_t i = 0; i < n; i++) {
    uint64_t d;
    if (!get_uint(json_array_get(shape, i), &d))
      return cz_err_set(err, CZ_E_INVALID_HEADER,
                        "tensor '%s': shape[%zu] is not a non-negative integer", e->name, i);
    e->ne[n - 1 - i] = (int64_t)d; /* d <= INT64_MAX: it came from a json_int_t */
  }
  return CZ_E_OK;
}

static cz_err_code parse_offsets(st_entry *e, json_t *off, cz_error *err) {
  if (!json_is_array(off) || json_array_size(off) != 2 ||
      !get_uint(json_array_get(off, 0), &e->begin) || !get_uint(json_array_get(off, 1), &e->end))
    return cz_err_set(err, CZ_E_INVALID_HEADER,
                      "tensor '%s': data_offsets is not [begin, end] of non-negative integers",
                      e->name);
  return CZ_E_OK;
}

static cz_err_code parse_dtype(st_entry *e, json_t *dtype, cz_error *err) {
  if (!json_is_string(dtype))
    return cz_err_set(err, CZ_E_INVALID_HEADER, "tensor '%s': dtype is not a string", e->name);
  int t = cz_type_from_st_name(json_string_value(dtype));
  if (t < 0)
    return cz_err_set(err, CZ_E_UNKNOWN_DTYPE, "tensor '%s': unknown dtype '%s'", e->name,
                      json_string_value(dtype));
  e->type = (cz_type)t;
  return CZ_E_OK;
}

/* One tensor entry: exactly the three fields of the format (the JSON schema has
 * additionalProperties: false; extra fields would be a place to hide data). */
static cz_err_code parse_entry(st_entry *e, json_t *v, cz_error *err) {
  /* Names are attacker data that end up in reports and logs: bound them. */
  if (strlen(e->name) > CZ_MAX_NAME)
    return cz_err_set(err, CZ_E_UNSUPPORTED, "tensor name of %zu bytes (at most %d)",
                      strlen(e->name), CZ_MAX_NAME);
  if (!json_is_object(v))
    return cz_err_set(err, CZ_E_INVALID_HEADER, "tensor '%s': entry is not an object", e->name);
  const char *field;
  json_t *fv;
  json_object_foreach(v, field, fv) {
    if (strcmp(field, "dtype") && strcmp(field, "shape") && strcmp(field, "data_offsets"))
      return cz_err_set(err, CZ_E_INVALID_HEADER, "tensor '%s': unknown field '%s'", e->name,
                        field);
  }
  json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
         *off = json_object_get(v, "data_offsets");
  if (dtype == NULL || shape == NULL || off == NULL)
    return cz_err_set(err, CZ_E_INVALID_HEADER,
                      "tensor '%s': entry needs dtype, shape and data_offsets", e->name);
  cz_err_code rc = parse_dtype(e, dtype, err);
  if (rc == CZ_E_OK) rc = parse_shape(e, shape, err);
  if (rc == CZ_E_OK) rc = parse_offsets(e, off, err);
  return rc;
}

/* Fills entries[] (sized by the caller) from the header object, in header order. */
static cz_err_code parse_entries(cz_model *m, json_t *root, st_entry *entries, size_t *n,
                                 cz_error *err) {
  const char *key;
  json_t *v;
  size_t k = 0;
  json_object_foreach(root, key, v) {
    cz_err_code rc;
    if (strcmp(key, METADATA_KEY) == 0) {
      rc = parse_metadata(m, v, err);
    } else {
      entries[k] = (st_entry){.name = key, .order = k};
      rc = parse_entry(&entries[k], v, err);
      k++;
    }
    if (rc != CZ_E_OK) return rc;
  }
  *n = k;
  return CZ_E_OK;
}

/* ---- validation (Metadata::validate) ---- */

static int cmp_offsets(const void *a, const void *b) {
  const st_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* Entries sorted by offsets must tile [0, data_end) exactly, each with the byte size its
 * dtype and shape imply. Holes would allow polyglot files; overlaps alias data. */
static cz_err_code validate(st_entry *e, size_t n, uint64_t *data_end, cz_error *err) {
  uint64_t start = 0;
  for (size_t i = 0; i < n; i++) {
    if (e[i].begin != start || e[i].end < e[i].begin)
      return cz_err_set(err, CZ_E_INVALID_OFFSETS,
                        "tensor '%s': data_offsets [%llu, %llu] do not continue at %llu",
                        e[i].name, (unsigned long long)e[i].begin,
                        (unsigned long long)e[i].end, (unsigned long long)start);
    start = e[i].end;
    uint64_t nbytes = 0;
    cz_err_code rc = cz__st_nbytes(cz_type_get(e[i].type), e[i].n_dims, e[i].ne, &nbytes, err,
                                   e[i].name);
    if (rc != CZ_E_OK) return rc;
    if (e[i].end - e[i].begin != nbytes)
      return cz_err_set(err, CZ_E_SIZE_MISMATCH,
                        "tensor '%s': data_offsets span %llu bytes, dtype and shape need %llu",
                        e[i].name, (unsigned long long)(e[i].end - e[i].begin),
                        (unsigned long long)nbytes);
  }
  *data_end = start;
  return CZ_E_OK;
}

/* ---- the model ---- */

static cz_err_code build_tensors(cz_model *m, const st_entry *e, size_t n, const uint8_t *data,
                                 cz_error *err) {
  if (n == 0) return CZ_E_OK;
  m->tensors = calloc(n, sizeof *m->tensors);
  if (m->tensors == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  for (size_t i = 0; i < n; i++) {
    cz_tensor *t = &m->tensors[i];
    t->name = strdup(e[i].name);
    m->n_tensors++;
    if (t->name == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    t->type = e[i].type;
    t->n_dims = e[i].n_dims;
    memcpy(t->ne, e[i].ne, sizeof t->ne);
    t->nbytes = e[i].end - e[i].begin;
    t->data = data + e[i].begin;
  }
  return CZ_E_OK;
}

/* Steps 1-3 of read_metadata: the length prefix and where the header ends. */
static cz_err_code check_prefix(const uint8_t *buf, uint64_t size, uint64_t *n, cz_error *err) {
  if (size < CZ_ST_N_LEN)
    return cz_err_set(err, CZ_E_HEADER_TOO_SMALL, "file of %llu bytes is shorter than the "
                      "8-byte header length", (unsigned long long)size);
  *n = cz__le64(buf);
  if (*n > CZ_ST_MAX_HEADER)
    return cz_err_set(err, CZ_E_HEADER_TOO_LARGE, "header length %llu exceeds %llu",
                      (unsigned long long)*n, CZ_ST_MAX_HEADER);
  if (*n > size - CZ_ST_N_LEN)
    return cz_err_set(err, CZ_E_INVALID_HEADER_LENGTH,
                      "header length %llu runs past the end of a %llu-byte file",
                      (unsigned long long)*n, (unsigned long long)size);
  return CZ_E_OK;
}

/* Step 5: the JSON itself. Duplicate keys are refused (the reference's serde rejects them
 * in a struct, and jansson would otherwise keep the last one: TOB-SFTN-7). No
 * JSON_DISABLE_EOF_CHECK (garbage after the object is an error, spaces are not), no
 * JSON_DECODE_ANY (the top level must be an object or array; arrays are refused below), no
 * JSON_ALLOW_NUL. */
static cz_err_code load_json(const uint8_t *hdr, size_t n, json_t **root, cz_error *err) {
  json_error_t jerr;
  *root = json_loadb((const char *)hdr, n, JSON_REJECT_DUPLICATES, &jerr);
  if (*root == NULL) {
    cz_err_code code =
        json_error_code(&jerr) == json_error_duplicate_key ? CZ_E_DUPLICATE_KEY
        : json_error_code(&jerr) == json_error_out_of_memory ? CZ_E_NO_MEMORY
                                                              : CZ_E_INVALID_HEADER;
    return cz_err_set(err, code, "header JSON at byte %d: %s", jerr.position, jerr.text);
  }
  if (!json_is_object(*root))
    return cz_err_set(err, CZ_E_INVALID_HEADER, "header is not a JSON object");
  return CZ_E_OK;
}

/* Step 7: the buffer is exactly the tensors, nothing after them (TOB-SFTN-1). */
static cz_err_code check_coverage(uint64_t n, uint64_t data_end, uint64_t size, cz_error *err) {
  uint64_t want = CZ_ST_N_LEN + n + data_end; /* cannot wrap: n <= 1e8, data_end < 2^63 */
  if (want < size)
    return cz_err_set(err, CZ_E_TRAILING_DATA, "%llu bytes after the last tensor",
                      (unsigned long long)(size - want));
  if (want > size)
    return cz_err_set(err, CZ_E_TRUNCATED, "file has %llu bytes, header describes %llu",
                      (unsigned long long)size, (unsigned long long)want);
  return CZ_E_OK;
}

static cz_err_code parse_header(cz_model *m, json_t *root, uint64_t n, const uint8_t *buf,
                                uint64_t size, cz_error *err) {
  size_t n_entries = json_object_size(root);
  if (json_object_get(root, METADATA_KEY)) n_entries--;
  if (n_entries > CZ_MAX_TENSORS)
    return cz_err_set(err, CZ_E_TOO_MANY_TENSORS, "%zu tensors (at most %d)", n_entries,
                      CZ_MAX_TENSORS);
  st_entry *entries = calloc(n_entries ? n_entries : 1, sizeof *entries);
  if (entries == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  uint64_t data_end = 0;
  cz_err_code rc = parse_entries(m, root, entries, &n_entries, err);
  if (rc == CZ_E_OK) {
    qsort(entries, n_entries, sizeof *entries, cmp_offsets);
    rc = validate(entries, n_entries, &data_end, err);
  }
  if (rc == CZ_E_OK) rc = check_coverage(n, data_end, size, err);
  if (rc == CZ_E_OK) rc = build_tensors(m, entries, n_entries, buf + CZ_ST_N_LEN + n, err);
  free(entries);
  return rc;
}

cz_err_code cz__st_parse(cz_model *m, const uint8_t *buf, uint64_t size, cz_error *err) {
  uint64_t n = 0;
  cz_err_code rc = check_prefix(buf, size, &n, err);
  if (rc != CZ_E_OK) return rc;
  const uint8_t *hdr = buf + CZ_ST_N_LEN;
  if (!cz__utf8_valid(hdr, (size_t)n))
    return cz_err_set(err, CZ_E_INVALID_UTF8, "header is not valid UTF-8");
  json_t *root;
  rc = load_json(hdr, (size_t)n, &root, err);
  if (rc == CZ_E_OK) rc = parse_header(m, root, n, buf, size, err);
  json_decref(root);
  return rc;
}
