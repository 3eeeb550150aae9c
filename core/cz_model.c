/* cz_model: opening a weight file (mmap, format detection, dispatch to a reader), lookups on
 * an open model, and the checks both readers and the writer share. */
#define _GNU_SOURCE /* O_CLOEXEC on older libcs */
#include "cz_model.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cz_model_impl.h"

/* ---- format names ---- */

static const struct {
  cz_format f;
  const char *name;
} format_names[] = {
    {CZ_FORMAT_SAFETENSORS, "safetensors"},
    {CZ_FORMAT_GGUF, "gguf"},
};

#define N_FORMATS (sizeof format_names / sizeof format_names[0])

const char *cz_format_name(cz_format f) {
  for (size_t i = 0; i < N_FORMATS; i++)
    if (format_names[i].f == f) return format_names[i].name;
  return "unknown";
}

cz_format cz_format_from_name(const char *name) {
  if (name == NULL) return 0;
  for (size_t i = 0; i < N_FORMATS; i++)
    if (strcmp(format_names[i].name, name) == 0) return format_names[i].f;
  return 0;
}

/* ---- open / close ---- */

/* Maps fd's size bytes read-only. A zero-length file gets no mapping (mmap refuses length
 * 0); the readers then see an empty buffer and fail with their "too small" error. */
static cz_err_code map_file(cz_model *m, const char *path, cz_error *err) {
  struct stat st;
  if (fstat(m->fd, &st) != 0)
    return cz_err_set(err, CZ_E_IO, "%s: fstat: %s", path, strerror(errno));
  /* A FIFO or device has no fixed size to validate offsets against. */
  if (!S_ISREG(st.st_mode))
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%s: not a regular file", path);
  if ((uint64_t)st.st_size > SIZE_MAX)
    return cz_err_set(err, CZ_E_TOO_LARGE, "%s: file too large to map", path);
  m->file_size = (uint64_t)st.st_size;
  if (m->file_size == 0) return CZ_E_OK;
  void *p = mmap(NULL, (size_t)m->file_size, PROT_READ, MAP_PRIVATE, m->fd, 0);
  if (p == MAP_FAILED)
    return cz_err_set(err, errno == ENOMEM ? CZ_E_NO_MEMORY : CZ_E_IO, "%s: mmap: %s", path,
                      strerror(errno));
  m->map = p;
  m->map_len = (size_t)m->file_size;
  return CZ_E_OK;
}

static cz_err_code open_fd(cz_model *m, const char *path, cz_error *err) {
  m->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (m->fd >= 0) return CZ_E_OK;
  cz_err_code code = errno == ENOENT ? CZ_E_NOT_FOUND : CZ_E_IO;
  return cz_err_set(err, code, "%s: %s", path, strerror(errno));
}

static bool has_gguf_magic(const uint8_t *buf, uint64_t size) {
  return size >= 4 && memcmp(buf, CZ_GGUF_MAGIC, 4) == 0;
}

cz_err_code cz_model_open_as(const char *path, cz_format f, cz_model **out, cz_error *err) {
  if (out == NULL || path == NULL)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "cz_model_open: NULL argument");
  *out = NULL;
  if (f != 0 && f != CZ_FORMAT_GGUF && f != CZ_FORMAT_SAFETENSORS)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "cz_model_open: unknown format %d", (int)f);
  cz_model *m = calloc(1, sizeof *m);
  if (m == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  m->fd = -1;
  cz_err_code rc = open_fd(m, path, err);
  if (rc == CZ_E_OK) rc = map_file(m, path, err);
  if (rc == CZ_E_OK) {
    /* An empty file has no mapping; a static byte gives the readers a valid pointer. */
    static const uint8_t empty[1];
    const uint8_t *buf = m->map ? m->map : empty;
    /* Safetensors has no magic: a file is GGUF when it says so, safetensors otherwise. A
     * safetensors file cannot start with "GGUF": that header length exceeds the 100 MB cap. */
    if (f == 0) f = has_gguf_magic(buf, m->file_size) ? CZ_FORMAT_GGUF : CZ_FORMAT_SAFETENSORS;
    m->format = f;
    rc = f == CZ_FORMAT_GGUF ? cz__gguf_parse(m, buf, m->file_size, err)
                             : cz__st_parse(m, buf, m->file_size, err);
  }
  if (rc != CZ_E_OK) {
    cz_model_close(m);
    return rc;
  }
  *out = m;
  return CZ_E_OK;
}

cz_err_code cz_model_open(const char *path, cz_model **out, cz_error *err) {
  return cz_model_open_as(path, 0, out, err);
}

void cz__kv_free(cz_gguf_kv *kv, size_t n) {
  if (kv == NULL) return;
  for (size_t i = 0; i < n; i++) {
    free(kv[i].key);
    free(kv[i].raw);
  }
  free(kv);
}

static void free_strings(char **s, size_t n) {
  if (s == NULL) return;
  for (size_t i = 0; i < n; i++) free(s[i]);
  free(s);
}

void cz_model_close(cz_model *m) {
  if (m == NULL) return;
  if (m->tensors)
    for (size_t i = 0; i < m->n_tensors; i++) free((char *)m->tensors[i].name);
  free(m->tensors);
  cz__kv_free(m->kv, m->n_kv);
  free_strings(m->meta_keys, m->n_meta);
  free_strings(m->meta_values, m->n_meta);
  if (m->map) munmap(m->map, m->map_len);
  if (m->fd >= 0) close(m->fd);
  free(m);
}

/* ---- lookups ---- */

const cz_tensor *cz_model_find(const cz_model *m, const char *name) {
  if (m == NULL || name == NULL) return NULL;
  for (size_t i = 0; i < m->n_tensors; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
  return NULL;
}

/* A zero dimension is looked for first: the readers accept an empty tensor whatever its
 * other dimensions are, and their product may not fit in int64. */
void cz_model_release(const cz_model *m, const void *p, uint64_t len) {
  const uint8_t *base = m->map, *lo = p, *hi = (const uint8_t *)p + len;
  if (base == NULL || lo < base || hi > base + m->map_len || len == 0) return;
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  /* only pages wholly inside the range: a neighbour may still be reading the edges */
  uintptr_t a = ((uintptr_t)lo + page - 1) & ~(page - 1), b = (uintptr_t)hi & ~(page - 1);
  if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

int64_t cz_tensor_nelements(const cz_tensor *t) {
  for (int i = 0; i < t->n_dims; i++)
    if (t->ne[i] == 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < t->n_dims; i++) n *= t->ne[i];
  return n;
}

long cz_gguf_find_kv(const cz_model *m, const char *key) {
  if (m == NULL || key == NULL) return -1;
  for (size_t i = 0; i < m->n_kv; i++)
    if (strcmp(m->kv[i].key, key) == 0) return (long)i;
  return -1;
}

bool cz_gguf_kv_u32(const cz_gguf_kv *kv, uint32_t *out) {
  if (kv == NULL || kv->type != CZ_GGUF_U32 || kv->raw_len != 4) return false;
  *out = cz__le32(kv->raw);
  return true;
}

/* A string value is serialized as a u64 length and the bytes. */
bool cz_gguf_kv_str(const cz_gguf_kv *kv, const char **s, uint64_t *len) {
  if (kv == NULL || kv->type != CZ_GGUF_STRING || kv->raw_len < 8) return false;
  uint64_t n = cz__le64(kv->raw);
  if (n != kv->raw_len - 8) return false;
  *s = (const char *)kv->raw + 8;
  *len = n;
  return true;
}

/* ---- shared checks ---- */

cz_err_code cz__gguf_nbytes(const cz_type_traits *tr, int n_dims, const int64_t *ne,
                            uint64_t *nbytes, cz_error *err, const char *name) {
  if (ne[0] % tr->blck_size != 0)
    return cz_err_set(err, CZ_E_INVALID_TENSOR_INFO,
                      "tensor '%s': ne[0]=%lld is not a multiple of the %s block size %lld",
                      name, (long long)ne[0], tr->name, (long long)tr->blck_size);
  /* An empty tensor is empty whatever its other dims say (and ggml skips the check). */
  for (int i = 0; i < n_dims; i++)
    if (ne[i] == 0) {
      *nbytes = 0;
      return CZ_E_OK;
    }
  int64_t nel = 1;
  for (int i = 0; i < n_dims; i++)
    if (__builtin_mul_overflow(nel, ne[i], &nel))
      return cz_err_set(err, CZ_E_SIZE_OVERFLOW, "tensor '%s': element count overflows", name);
  uint64_t nb;
  if (__builtin_mul_overflow((uint64_t)(ne[0] / tr->blck_size), (uint64_t)tr->type_size, &nb))
    return cz_err_set(err, CZ_E_SIZE_OVERFLOW, "tensor '%s': row size overflows", name);
  for (int i = 1; i < n_dims; i++)
    if (__builtin_mul_overflow(nb, (uint64_t)ne[i], &nb))
      return cz_err_set(err, CZ_E_SIZE_OVERFLOW, "tensor '%s': byte size overflows", name);
  *nbytes = nb;
  return CZ_E_OK;
}

cz_err_code cz__st_nbytes(const cz_type_traits *tr, int n_dims, const int64_t *ne,
                          uint64_t *nbytes, cz_error *err, const char *name) {
  if (tr->bits == 0)
    return cz_err_set(err, CZ_E_UNKNOWN_DTYPE, "tensor '%s': %s has no safetensors dtype",
                      name, tr->name);
  /* Outermost dimension first, as the reference folds the shape: with a 0 late in the
   * shape, an overflow before it is still an overflow. */
  uint64_t nel = 1;
  for (int i = n_dims - 1; i >= 0; i--)
    if (__builtin_mul_overflow(nel, (uint64_t)ne[i], &nel))
      return cz_err_set(err, CZ_E_SIZE_OVERFLOW, "tensor '%s': element count overflows", name);
  uint64_t nbits;
  /* nel <= INT64_MAX keeps cz_tensor_nelements exact; with >= 4 bits per element the bit
   * count overflows first anyway. */
  if (nel > (uint64_t)INT64_MAX || __builtin_mul_overflow(nel, (uint64_t)tr->bits, &nbits))
    return cz_err_set(err, CZ_E_SIZE_OVERFLOW, "tensor '%s': bit size overflows", name);
  if (nbits % 8 != 0)
    return cz_err_set(err, CZ_E_MISALIGNED_SLICE,
                      "tensor '%s': %llu elements of %s do not fill whole bytes", name,
                      (unsigned long long)nel, tr->st_name);
  *nbytes = nbits / 8;
  return CZ_E_OK;
}

/* Length of the UTF-8 sequence starting at s[0..n), or 0 if it is not a valid one. The
 * ranges are those of RFC 3629's table, which exclude overlongs and surrogates. */
static size_t utf8_seq(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c == 0xE0) len = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC) len = 3;
  else if (c == 0xED) len = 3, hi = 0x9F;
  else if (c >= 0xEE && c <= 0xEF) len = 3;
  else if (c == 0xF0) len = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) len = 4;
  else if (c == 0xF4) len = 4, hi = 0x8F;
  else return 0;
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return len;
}

bool cz__utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t len = utf8_seq(s + i, n - i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

typedef struct {
  const char *name;
  size_t index;
} named;

static int cmp_named(const void *a, const void *b) {
  const named *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c) return c;
  return x->index < y->index ? -1 : x->index > y->index;
}

long cz__find_duplicate(const char *const *names, size_t n) {
  if (n < 2) return -1;
  named *v = malloc(n * sizeof *v);
  if (v == NULL) return -2;
  for (size_t i = 0; i < n; i++) v[i] = (named){names[i], i};
  qsort(v, n, sizeof *v, cmp_named);
  long dup = -1;
  for (size_t i = 1; i < n && dup < 0; i++)
    if (strcmp(v[i - 1].name, v[i].name) == 0) dup = (long)v[i].index;
  free(v);
  return dup;
}
