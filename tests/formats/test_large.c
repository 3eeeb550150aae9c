/* test_large: files above 4 GiB (sparse temporary files), with headers written byte by byte
 * here rather than by cz_layout (test_formats' large-file tests go through the writer, which
 * would hide a bug the reader and the writer share):
 *   - tensors at offsets of 2^32 and above are found where they are, in both formats; a
 *     tensor whose offset is right only in its low 32 bits, or that overlaps across the 2^32
 *     boundary, is refused;
 *   - opening costs memory independent of the file's size: the same 512-tensor header over a
 *     1 GiB and over a 64 GiB file adds the same few MiB of RSS (nothing is read or copied but
 *     the header; the mapping is only touched where a test reads). */
#define _GNU_SOURCE /* mkdtemp */
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cz_model.h"
#include "cz_model_impl.h"
#include "cz_test.h"

#define GIB (UINT64_C(1) << 30)

static char tmpdir[4096];

typedef struct {
  uint8_t *p;
  size_t n, cap;
} buf;

static void b_bytes(buf *b, const void *s, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
}
static void b_u32(buf *b, uint32_t v) {
  uint8_t x[4];
  cz__put32(x, v);
  b_bytes(b, x, 4);
}
static void b_u64(buf *b, uint64_t v) {
  uint8_t x[8];
  cz__put64(x, v);
  b_bytes(b, x, 8);
}
static void b_str(buf *b, const char *s) {
  b_u64(b, strlen(s));
  b_bytes(b, s, strlen(s));
}
static void b_pad(buf *b, size_t a) {
  static const uint8_t z[64];
  if (b->n % a) b_bytes(b, z, a - b->n % a);
}

/* A sparse file of size bytes: header at 0, then each (offset, bytes) patch. */
static void sparse_file(const char *path, const buf *hdr, uint64_t size, const uint64_t *at,
                        const uint8_t *const *patch, const size_t *len, int n_patch) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  CHECK_EQ_INT(pwrite(fd, hdr->p, hdr->n, 0), hdr->n);
  CHECK_EQ_INT(ftruncate(fd, (off_t)size), 0);
  for (int i = 0; i < n_patch; i++) CHECK_EQ_INT(pwrite(fd, patch[i], len[i], (off_t)at[i]), len[i]);
  close(fd);
}

static void path_of(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s", tmpdir, name);
}

/* ---- GGUF ---- */

/* "a": I8 [2^32] at 0; "b" and "c": F32 [16] at b_off and c_off (relative to the data). */
static uint64_t gguf_big(buf *b, uint64_t b_off, uint64_t c_off) {
  b_bytes(b, "GGUF", 4);
  b_u32(b, 3);
  b_u64(b, 3);
  b_u64(b, 1);
  b_str(b, "general.architecture");
  b_u32(b, CZ_GGUF_STRING);
  b_str(b, "llama");
  b_str(b, "a");
  b_u32(b, 1);
  b_u64(b, UINT64_C(1) << 32);
  b_u32(b, CZ_TYPE_I8);
  b_u64(b, 0);
  b_str(b, "b");
  b_u32(b, 1);
  b_u64(b, 16);
  b_u32(b, CZ_TYPE_F32);
  b_u64(b, b_off);
  b_str(b, "c");
  b_u32(b, 1);
  b_u64(b, 16);
  b_u32(b, CZ_TYPE_F32);
  b_u64(b, c_off);
  b_pad(b, 32);
  return b->n; /* data start */
}

static void test_gguf_offsets_above_4g(void) {
  char path[8192];
  path_of(path, sizeof path, "big.gguf");
  buf h = {0};
  uint64_t ds = gguf_big(&h, UINT64_C(1) << 32, (UINT64_C(1) << 32) + 64);
  uint8_t pb[64], pc[64];
  memset(pb, 0xb1, sizeof pb);
  memset(pc, 0xc2, sizeof pc);
  const uint8_t *patch[] = {pb, pc};
  uint64_t at[] = {ds + (UINT64_C(1) << 32), ds + (UINT64_C(1) << 32) + 64};
  size_t len[] = {64, 64};
  sparse_file(path, &h, ds + (UINT64_C(1) << 32) + 128, at, patch, len, 2);
  cz_model *m = NULL;
  cz_error e = {0};
  CHECK_EQ_INT(cz_model_open(path, &m, &e), CZ_E_OK);
  if (m) {
    const uint8_t *base = m->map;
    const cz_tensor *a = cz_model_find(m, "a"), *tb = cz_model_find(m, "b"),
                    *tc = cz_model_find(m, "c");
    CHECK(a && a->nbytes == UINT64_C(1) << 32 && a->data == base + ds);
    CHECK(tb && (uint64_t)(tb->data - base) == at[0] && tb->data[0] == 0xb1 && tb->data[63] == 0xb1);
    CHECK(tc && (uint64_t)(tc->data - base) == at[1] && tc->data[0] == 0xc2 && tc->data[63] == 0xc2);
  }
  cz_model_close(m);
  free(h.p);
  /* "b" across the end of "a", and "b" at 0 (the low 32 bits of where it belongs): both
   * refused, since ggml's rule puts "b" at exactly 2^32 and the comparison is 64-bit */
  uint64_t wrong[] = {(UINT64_C(1) << 32) - 32, 0};
  for (int i = 0; i < 2; i++) {
    h = (buf){0};
    ds = gguf_big(&h, wrong[i], (UINT64_C(1) << 32) + 64);
    sparse_file(path, &h, ds + (UINT64_C(1) << 32) + 128, NULL, NULL, NULL, 0);
    CHECK_EQ_INT(cz_model_open(path, &m, &e), CZ_E_INVALID_OFFSETS);
    CHECK(strstr(e.msg, "expected 4294967296") != NULL);
    free(h.p);
  }
  /* the file one byte short of "c": the end check is 64-bit too */
  h = (buf){0};
  ds = gguf_big(&h, UINT64_C(1) << 32, (UINT64_C(1) << 32) + 64);
  sparse_file(path, &h, ds + (UINT64_C(1) << 32) + 127, NULL, NULL, NULL, 0);
  CHECK_EQ_INT(cz_model_open(path, &m, &e), CZ_E_TRUNCATED);
  CHECK(strstr(e.msg, "'c'") != NULL);
  free(h.p);
  unlink(path);
}

/* ---- safetensors ---- */

static void st_header(buf *b, const char *json) {
  size_t n = strlen(json), padded = (n + 7) / 8 * 8;
  b_u64(b, padded);
  b_bytes(b, json, n);
  while (b->n < 8 + padded) b_bytes(b, " ", 1);
}

static void test_st_offsets_above_4g(void) {
  char path[8192];
  path_of(path, sizeof path, "big.safetensors");
  buf h = {0};
  st_header(&h, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296],\"data_offsets\":[0,4294967296]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[4294967296,4294967360]},"
                "\"c\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[4294967360,4294967424]}}");
  uint64_t ds = h.n;
  uint8_t pb[64], pc[64];
  memset(pb, 0xb1, sizeof pb);
  memset(pc, 0xc2, sizeof pc);
  const uint8_t *patch[] = {pb, pc};
  uint64_t at[] = {ds + (UINT64_C(1) << 32), ds + (UINT64_C(1) << 32) + 64};
  size_t len[] = {64, 64};
  sparse_file(path, &h, ds + (UINT64_C(1) << 32) + 128, at, patch, len, 2);
  cz_model *m = NULL;
  cz_error e = {0};
  CHECK_EQ_INT(cz_model_open(path, &m, &e), CZ_E_OK);
  if (m) {
    const uint8_t *base = m->map;
    const cz_tensor *tb = cz_model_find(m, "b"), *tc = cz_model_find(m, "c");
    CHECK(tb && (uint64_t)(tb->data - base) == at[0] && tb->data[0] == 0xb1 && tb->data[63] == 0xb1);
    CHECK(tc && (uint64_t)(tc->data - base) == at[1] && tc->data[0] == 0xc2);
    CHECK(tc && tc->ne[0] == 4 && tc->ne[1] == 4);
  }
  cz_model_close(m);
  free(h.p);
  /* "b" begins 4 bytes before the end of "a" */
  h = (buf){0};
  st_header(&h, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296],\"data_offsets\":[0,4294967296]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[4294967292,4294967356]}}");
  sparse_file(path, &h, h.n + (UINT64_C(1) << 32) + 60, NULL, NULL, NULL, 0);
  CHECK_EQ_INT(cz_model_open(path, &m, &e), CZ_E_INVALID_OFFSETS);
  CHECK(strstr(e.msg, "'b'") != NULL);
  free(h.p);
  /* offsets whose low 32 bits are those of a valid file: [0, 2^32+16) described, 16 present */
  h = (buf){0};
  st_header(&h, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1073741828],\"data_offsets\":[0,4294967312]}}");
  sparse_file(path, &h, h.n + 16, NULL, NULL, NULL, 0);
  CHECK_EQ_INT(cz_model_open(path, &m, &e), CZ_E_TRUNCATED);
  free(h.p);
  unlink(path);
}

/* ---- memory and time independent of the file size ---- */

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &v) == 1) break;
  if (f) fclose(f);
  return v;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 512 tensors of F16 [rows, 4096] tiling size_gib GiB (rows chosen so), as GGUF or
 * safetensors; returns the RSS growth of an open in kB and the open time in *secs. */
static long open_cost(cz_format f, uint64_t size_gib, double *secs) {
  enum { N = 512 };
  uint64_t rows = size_gib * GIB / N / 8192; /* 8192 bytes per F16 row of 4096 */
  uint64_t tbytes = rows * 8192;
  buf h = {0};
  if (f == CZ_FORMAT_GGUF) {
    b_bytes(&h, "GGUF", 4);
    b_u32(&h, 3);
    b_u64(&h, N);
    b_u64(&h, 0);
    char name[64];
    for (int i = 0; i < N; i++) {
      snprintf(name, sizeof name, "blk.%d.ffn_up.weight", i);
      b_str(&h, name);
      b_u32(&h, 2);
      b_u64(&h, 4096);
      b_u64(&h, rows);
      b_u32(&h, CZ_TYPE_F16);
      b_u64(&h, (uint64_t)i * tbytes);
    }
    b_pad(&h, 32);
  } else {
    buf j = {0};
    b_bytes(&j, "{", 1);
    char ent[256];
    for (int i = 0; i < N; i++) {
      int k = snprintf(ent, sizeof ent,
                       "%s\"blk.%d.ffn_up.weight\":{\"dtype\":\"F16\",\"shape\":[%llu,4096],"
                       "\"data_offsets\":[%llu,%llu]}",
                       i ? "," : "", i, (unsigned long long)rows,
                       (unsigned long long)(i * tbytes), (unsigned long long)((i + 1) * tbytes));
      b_bytes(&j, ent, (size_t)k);
    }
    b_bytes(&j, "}", 2); /* with the NUL, for st_header */
    st_header(&h, (const char *)j.p);
    free(j.p);
  }
  char path[8192];
  path_of(path, sizeof path, "cost.bin");
  sparse_file(path, &h, h.n + N * tbytes, NULL, NULL, NULL, 0);
  free(h.p);
  cz_model *m = NULL;
  cz_error e = {0};
  long r0 = rss_kb();
  double t0 = now_s();
  CHECK_EQ_INT(cz_model_open(path, &m, &e), CZ_E_OK);
  *secs = now_s() - t0;
  long r1 = rss_kb();
  CHECK(m && m->n_tensors == N && m->file_size > size_gib * GIB - GIB / 64);
  cz_model_close(m);
  unlink(path);
  return r1 - r0;
}

static void memory_independent(cz_format f) {
  double t_small = 0, t_big = 0;
  open_cost(f, 1, &t_small); /* warms up the allocator and the code */
  long small = open_cost(f, 1, &t_small), big = open_cost(f, 64, &t_big);
  printf("# %s, 512 tensors: open adds %ld kB of RSS for 1 GiB (%.1f ms), %ld kB for 64 GiB "
         "(%.1f ms)\n", cz_format_name(f), small, t_small * 1e3, big, t_big * 1e3);
  CHECK(big < 16 * 1024);
  CHECK(big - small < 2 * 1024);
  CHECK(t_big < 2.0);
}

static void test_gguf_memory_independent_of_size(void) { memory_independent(CZ_FORMAT_GGUF); }
static void test_st_memory_independent_of_size(void) {
  memory_independent(CZ_FORMAT_SAFETENSORS);
}

int main(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/cz_large_XXXXXX", base && *base ? base : "/tmp");
  if (mkdtemp(tmpdir) == NULL) {
    perror("mkdtemp");
    return 99;
  }
  static const cz_test_case cases[] = {
      CZ_TEST(test_gguf_offsets_above_4g),
      CZ_TEST(test_st_offsets_above_4g),
      CZ_TEST(test_gguf_memory_independent_of_size),
      CZ_TEST(test_st_memory_independent_of_size),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  rmdir(tmpdir);
  return rc;
}
