/* cz_imatrix: llama.cpp importance matrices, GGUF and legacy .dat (see cz_imatrix.h). */
#include "cz_imatrix.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cz_model.h"
#include "cz_model_impl.h"

/* Bounds on what a calibration file may claim, far above real files (a 400B-parameter MoE
 * has a few thousand weights): they keep a hostile count from driving allocations. */
#define MAX_ENTRIES 1000000
#define MAX_DATASETS 4096

typedef struct {
  char *name;
  float *values;
  int64_t n;
} entry;

struct cz_imatrix {
  cz_imatrix_format format;
  size_t n_entries;
  entry *entries;       /* sorted by name */
  uint32_t chunk_count, chunk_size;
  size_t n_datasets;
  char **datasets;
  char *label;
};

/* ---- common ---- */

void cz_imatrix_free(cz_imatrix *im) {
  if (!im) return;
  for (size_t i = 0; i < im->n_entries; i++) {
    free(im->entries[i].name);
    free(im->entries[i].values);
  }
  free(im->entries);
  for (size_t i = 0; i < im->n_datasets; i++) free(im->datasets[i]);
  free(im->datasets);
  free(im->label);
  free(im);
}

static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

/* Sort the entries and refuse a name given twice (llama.cpp would keep one silently). */
static cz_err_code finish_entries(cz_imatrix *im, cz_error *err) {
  if (im->n_entries == 0)
    return cz_err_set(err, CZ_E_INVALID_METADATA, "the file holds no importance matrix entry");
  qsort(im->entries, im->n_entries, sizeof *im->entries, entry_cmp);
  for (size_t i = 1; i < im->n_entries; i++)
    if (strcmp(im->entries[i - 1].name, im->entries[i].name) == 0)
      return cz_err_set(err, CZ_E_DUPLICATE_TENSOR, "entry '%s' appears twice",
                        im->entries[i].name);
  return CZ_E_OK;
}

static cz_err_code add_dataset(cz_imatrix *im, const char *s, size_t len, cz_error *err) {
  if (!cz__utf8_valid((const uint8_t *)s, len) || memchr(s, 0, len))
    return cz_err_set(err, CZ_E_INVALID_UTF8, "a dataset name is not UTF-8 text");
  char **d = realloc(im->datasets, (im->n_datasets + 1) * sizeof *d);
  if (!d) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  im->datasets = d;
  if (!(d[im->n_datasets] = strndup(s, len))) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  im->n_datasets++;
  return CZ_E_OK;
}

static cz_err_code check_finite(const float *v, int64_t n, const char *what, const char *name,
                                cz_error *err) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(v[i]))
      return cz_err_set(err, CZ_E_NON_FINITE, "entry '%s': %s[%lld] is not finite", name, what,
                        (long long)i);
  return CZ_E_OK;
}

/* ---- GGUF ---- */

static bool strip_suffix(const char *s, const char *suffix, size_t *stem) {
  size_t n = strlen(s), k = strlen(suffix);
  if (n <= k || memcmp(s + n - k, suffix, k) != 0) return false;
  *stem = n - k;
  return true;
}

static const cz_tensor *find_sibling(const cz_model *m, const char *stem, size_t len,
                                     const char *suffix) {
  char name[CZ_MAX_NAME + 16];
  if (len + strlen(suffix) >= sizeof name) return NULL;
  memcpy(name, stem, len);
  strcpy(name + len, suffix);
  return cz_model_find(m, name);
}

/* imatrix.datasets: an array of strings (raw: u32 element type, u64 count, then per string a
 * u64 length and the bytes; cz_model_open checked that the lengths fit). */
static cz_err_code read_datasets(cz_imatrix *im, const cz_gguf_kv *kv, cz_error *err) {
  if (kv->type != CZ_GGUF_ARRAY || kv->raw_len < 12 || cz__le32(kv->raw) != CZ_GGUF_STRING)
    return cz_err_set(err, CZ_E_INVALID_METADATA, "imatrix.datasets must be an array of strings");
  uint64_t n = cz__le64(kv->raw + 4);
  if (n > MAX_DATASETS)
    return cz_err_set(err, CZ_E_INVALID_METADATA, "imatrix.datasets: more than %d names",
                      MAX_DATASETS);
  size_t pos = 12;
  for (uint64_t i = 0; i < n; i++) {
    if (kv->raw_len - pos < 8) return cz_err_set(err, CZ_E_TRUNCATED, "imatrix.datasets is cut short");
    uint64_t len = cz__le64(kv->raw + pos);
    pos += 8;
    if (len > kv->raw_len - pos) return cz_err_set(err, CZ_E_TRUNCATED, "imatrix.datasets is cut short");
    cz_err_code rc = add_dataset(im, (const char *)kv->raw + pos, (size_t)len, err);
    if (rc) return rc;
    pos += (size_t)len;
  }
  return CZ_E_OK;
}

static cz_err_code read_u32_key(const cz_model *m, const char *key, uint32_t *v, cz_error *err) {
  long k = cz_gguf_find_kv(m, key);
  if (k < 0)
    return cz_err_set(err, CZ_E_INVALID_METADATA,
                      "missing %s: llama-quantize refuses an imatrix GGUF without imatrix.datasets, "
                      "imatrix.chunk_count and imatrix.chunk_size", key);
  if (!cz_gguf_kv_u32(&m->kv[k], v))
    return cz_err_set(err, CZ_E_INVALID_METADATA, "%s must be a u32", key);
  return CZ_E_OK;
}

static cz_err_code gguf_entry(cz_imatrix *im, const cz_model *m, const cz_tensor *sums,
                              size_t stem, cz_error *err) {
  char name[CZ_MAX_NAME + 1];
  snprintf(name, sizeof name, "%.*s", (int)stem, sums->name);
  const cz_tensor *counts = find_sibling(m, sums->name, stem, ".counts");
  const cz_tensor *in_sum = find_sibling(m, sums->name, stem, ".in_sum");
  if (counts == NULL)
    return cz_err_set(err, CZ_E_INVALID_TENSOR_INFO, "entry '%s' has sums but no counts", name);
  if (sums->type != CZ_TYPE_F32 || counts->type != CZ_TYPE_F32 ||
      (in_sum && in_sum->type != CZ_TYPE_F32))
    return cz_err_set(err, CZ_E_UNKNOWN_DTYPE, "entry '%s': sums and counts must be F32", name);
  int64_t nval = cz_tensor_nelements(sums), ncounts = cz_tensor_nelements(counts);
  if (in_sum && cz_tensor_nelements(in_sum) != nval)
    return cz_err_set(err, CZ_E_SIZE_MISMATCH, "entry '%s': in_sum and in_sum2 differ in size",
                      name);
  if (ncounts == 0 || nval == 0) return CZ_E_OK;  /* llama-quantize skips such an entry */
  if (nval % ncounts != 0)
    return cz_err_set(err, CZ_E_SIZE_MISMATCH,
                      "entry '%s': %lld sums are not a whole number of rows for %lld counts",
                      name, (long long)nval, (long long)ncounts);
  const int64_t ne0 = nval / ncounts;
  float *s = malloc((size_t)nval * sizeof *s), *c = malloc((size_t)ncounts * sizeof *c);
  float *v = malloc((size_t)nval * sizeof *v);
  cz_err_code rc = CZ_E_OK;
  if (!s || !c || !v) {
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    goto done;
  }
  memcpy(s, sums->data, (size_t)nval * sizeof *s);  /* the mapping need not be aligned */
  memcpy(c, counts->data, (size_t)ncounts * sizeof *c);
  if ((rc = check_finite(s, nval, "in_sum2", name, err)) ||
      (rc = check_finite(c, ncounts, "counts", name, err)))
    goto done;
  for (int64_t j = 0; j < ncounts; j++) {
    /* common/imatrix-loader.cpp rounds the counts to integers; tools/quantize divides by
     * that count as a float */
    const float count = fabsf(c[j]) < 8388608.0f ? (float)llroundf(c[j]) : c[j]; /* >= 2^23: whole */
    for (int64_t i = 0; i < ne0; i++)
      v[j * ne0 + i] = count > 0.0f ? s[j * ne0 + i] / count : 1.0f;
  }
  if ((rc = check_finite(v, nval, "mean", name, err))) goto done;
  entry *e = &im->entries[im->n_entries];
  if (!(e->name = strdup(name))) {
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    goto done;
  }
  e->values = v;
  e->n = nval;
  v = NULL;
  im->n_entries++;
done:
  free(s);
  free(c);
  free(v);
  return rc;
}

static cz_err_code open_gguf(const char *path, cz_imatrix *im, cz_error *err) {
  cz_model *m;
  cz_err_code rc = cz_model_open_as(path, CZ_FORMAT_GGUF, &m, err);
  if (rc) return rc;
  long k = cz_gguf_find_kv(m, "imatrix.datasets");
  if (k < 0) {
    rc = cz_err_set(err, CZ_E_INVALID_METADATA,
                    "missing imatrix.datasets: llama-quantize refuses an imatrix GGUF without "
                    "imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size");
    goto done;
  }
  if ((rc = read_datasets(im, &m->kv[k], err)) ||
      (rc = read_u32_key(m, "imatrix.chunk_count", &im->chunk_count, err)) ||
      (rc = read_u32_key(m, "imatrix.chunk_size", &im->chunk_size, err)))
    goto done;
  im->entries = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *im->entries);
  if (!im->entries) {
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < m->n_tensors && !rc; i++) {
    const cz_tensor *t = &m->tensors[i];
    size_t stem;
    if (strip_suffix(t->name, ".in_sum2", &stem)) {
      rc = gguf_entry(im, m, t, stem, err);
    } else if (strip_suffix(t->name, ".counts", &stem) &&
               !find_sibling(m, t->name, stem, ".in_sum2")) {
      rc = cz_err_set(err, CZ_E_INVALID_TENSOR_INFO, "entry '%.*s' has counts but no sums",
                      (int)stem, t->name);
    } else if (strip_suffix(t->name, ".in_sum", &stem) &&
               !find_sibling(m, t->name, stem, ".in_sum2")) {
      rc = cz_err_set(err, CZ_E_INVALID_TENSOR_INFO, "entry '%.*s' has in_sum but no in_sum2",
                      (int)stem, t->name);
    }
  }
  if (!rc) rc = finish_entries(im, err);
done:
  cz_model_close(m);
  return rc;
}

/* ---- legacy .dat ---- */

typedef struct {
  const uint8_t *p;
  size_t n, pos;
} reader;

static bool rd_i32(reader *r, int32_t *v) {
  if (r->n - r->pos < 4) return false;
  *v = (int32_t)cz__le32(r->p + r->pos);
  r->pos += 4;
  return true;
}

static cz_err_code parse_dat(const uint8_t *buf, size_t size, cz_imatrix *im, cz_error *err) {
  reader r = {buf, size, 0};
  int32_t n_entries;
  if (!rd_i32(&r, &n_entries))
    return cz_err_set(err, CZ_E_TRUNCATED, "the file is too short for an importance matrix");
  /* every entry takes at least 17 bytes (len, a 1-byte name, ncall, nval, one value) */
  if (n_entries < 1 || n_entries > MAX_ENTRIES || (size_t)n_entries > (size - 4) / 17)
    return cz_err_set(err, n_entries < 1 ? CZ_E_INVALID_HEADER : CZ_E_TRUNCATED,
                      "entry count %d does not fit a file of %zu bytes", n_entries, size);
  im->entries = calloc((size_t)n_entries, sizeof *im->entries);
  if (!im->entries) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  for (int32_t i = 0; i < n_entries; i++) {
    int32_t len, ncall, nval;
    if (!rd_i32(&r, &len))
      return cz_err_set(err, CZ_E_TRUNCATED, "entry %d: cut short before its name", i);
    if (len < 1 || len > CZ_MAX_NAME || (size_t)len > r.n - r.pos)
      return cz_err_set(err, len < 1 || len > CZ_MAX_NAME ? CZ_E_INVALID_HEADER : CZ_E_TRUNCATED,
                        "entry %d: name length %d is out of range", i, len);
    const char *name = (const char *)r.p + r.pos;
    if (memchr(name, 0, (size_t)len) || !cz__utf8_valid((const uint8_t *)name, (size_t)len))
      return cz_err_set(err, CZ_E_INVALID_UTF8, "entry %d: the name is not UTF-8 text", i);
    r.pos += (size_t)len;
    char nm[CZ_MAX_NAME + 1];
    snprintf(nm, sizeof nm, "%.*s", (int)len, name);
    if (!rd_i32(&r, &ncall) || !rd_i32(&r, &nval))
      return cz_err_set(err, CZ_E_TRUNCATED, "entry '%s': cut short before its values", nm);
    if (nval < 1)
      return cz_err_set(err, CZ_E_INVALID_HEADER, "entry '%s': %d values", nm, nval);
    if ((size_t)nval > (r.n - r.pos) / 4)
      return cz_err_set(err, CZ_E_TRUNCATED, "entry '%s': %d values do not fit in the file", nm,
                        nval);
    entry *e = &im->entries[im->n_entries];
    e->values = malloc((size_t)nval * sizeof(float));
    e->name = strdup(nm);
    if (!e->values || !e->name) {
      free(e->values);
      free(e->name);
      e->values = NULL;
      e->name = NULL;
      return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    }
    e->n = nval;
    im->n_entries++;
    memcpy(e->values, r.p + r.pos, (size_t)nval * sizeof(float));
    r.pos += (size_t)nval * sizeof(float);
    cz_err_code rc = check_finite(e->values, nval, "values", nm, err);
    if (rc) return rc;
    /* stored values are mean * ncall; the loader divides it back out */
    if (ncall > 0)
      for (int32_t j = 0; j < nval; j++) e->values[j] /= (float)ncall;
  }
  /* optional trailer: chunk count, then the dataset name */
  int32_t chunks, len;
  if (rd_i32(&r, &chunks)) {
    im->chunk_count = chunks > 0 ? (uint32_t)chunks : 0;
    if (rd_i32(&r, &len) && len > 0) {
      if ((size_t)len > r.n - r.pos)
        return cz_err_set(err, CZ_E_TRUNCATED, "the dataset name is cut short");
      cz_err_code rc = add_dataset(im, (const char *)r.p + r.pos, (size_t)len, err);
      if (rc) return rc;
      r.pos += (size_t)len;
    }
  }
  if (r.pos != r.n)
    return cz_err_set(err, CZ_E_TRAILING_DATA, "%zu bytes after the importance matrix", r.n - r.pos);
  return finish_entries(im, err);
}

static cz_err_code open_dat(const char *path, cz_imatrix *im, cz_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cz_err_set(err, CZ_E_IO, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    cz_err_code rc = cz_err_set(err, CZ_E_IO, "%s: %s", path, strerror(errno));
    close(fd);
    return rc;
  }
  if (st.st_size < 4) {
    close(fd);
    return cz_err_set(err, CZ_E_HEADER_TOO_SMALL, "%lld bytes is too short for an importance matrix",
                      (long long)st.st_size);
  }
  void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return cz_err_set(err, CZ_E_IO, "%s: %s", path, strerror(errno));
  cz_err_code rc = parse_dat(map, (size_t)st.st_size, im, err);
  munmap(map, (size_t)st.st_size);
  return rc;
}

static bool has_gguf_magic(const char *path) {
  uint8_t magic[4] = {0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, magic, sizeof magic);
  close(fd);
  return n == 4 && memcmp(magic, CZ_GGUF_MAGIC, 4) == 0;
}

cz_err_code cz_imatrix_open(const char *path, cz_imatrix **out, cz_error *err) {
  cz_imatrix *im = calloc(1, sizeof *im);
  if (!im) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  im->format = has_gguf_magic(path) ? CZ_IMATRIX_GGUF : CZ_IMATRIX_DAT;
  cz_err_code rc = im->format == CZ_IMATRIX_GGUF ? open_gguf(path, im, err) : open_dat(path, im, err);
  if (!rc && !(im->label = strdup(path))) rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  if (rc) {
    cz_imatrix_free(im);
    return rc;
  }
  *out = im;
  return CZ_E_OK;
}

/* ---- queries ---- */

const float *cz_imatrix_find(const cz_imatrix *im, const char *name, int64_t *n) {
  entry key = {(char *)name, NULL, 0};
  const entry *e = bsearch(&key, im->entries, im->n_entries, sizeof *im->entries, entry_cmp);
  if (!e) return NULL;
  *n = e->n;
  return e->values;
}

cz_imatrix_format cz_imatrix_get_format(const cz_imatrix *im) { return im->format; }

const char *cz_imatrix_format_name(cz_imatrix_format f) {
  return f == CZ_IMATRIX_GGUF ? "gguf" : "dat";
}

size_t cz_imatrix_n_entries(const cz_imatrix *im) { return im->n_entries; }

const char *cz_imatrix_entry_name(const cz_imatrix *im, size_t i) {
  return i < im->n_entries ? im->entries[i].name : NULL;
}

uint32_t cz_imatrix_chunk_count(const cz_imatrix *im) { return im->chunk_count; }
uint32_t cz_imatrix_chunk_size(const cz_imatrix *im) { return im->chunk_size; }
size_t cz_imatrix_n_datasets(const cz_imatrix *im) { return im->n_datasets; }

const char *cz_imatrix_dataset(const cz_imatrix *im, size_t i) {
  return i < im->n_datasets ? im->datasets[i] : NULL;
}

void cz_imatrix_set_label(cz_imatrix *im, const char *label) {
  char *l = strdup(label ? label : "");
  if (!l) return;  /* keep the old label rather than lose it */
  free(im->label);
  im->label = l;
}

const char *cz_imatrix_label(const cz_imatrix *im) { return im->label ? im->label : ""; }

json_t *cz_imatrix_summary(const cz_imatrix *im) {
  json_t *ds = json_array();
  for (size_t i = 0; i < im->n_datasets; i++)
    json_array_append_new(ds, json_string(im->datasets[i]));
  return json_pack("{s:s, s:I, s:I, s:I, s:o}", "format", cz_imatrix_format_name(im->format),
                   "entries", (json_int_t)im->n_entries, "chunk_count",
                   (json_int_t)im->chunk_count, "chunk_size", (json_int_t)im->chunk_size,
                   "datasets", ds);
}
