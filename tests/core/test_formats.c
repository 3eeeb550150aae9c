/* test_formats: the safetensors and GGUF readers and the layout writer: round trips, the
 * golden files, and one test per class of malformed input, each of which must fail cleanly
 * with its exact error code. */
#define _GNU_SOURCE /* mkdtemp */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cz_model.h"
#include "cz_model_impl.h"
#include "cz_test.h"

/* ==== scratch files ==================================================================== */

static char tmpdir[4096];
static unsigned file_seq;
static cz_error last_err; /* of the latest open, printed when a code is not the expected one */

static void tmp_setup(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/cz_formats_XXXXXX", base && *base ? base : "/tmp");
  if (mkdtemp(tmpdir) == NULL) {
    perror("mkdtemp");
    exit(99); /* automake's "hard error" */
  }
}

static void tmp_cleanup(void) {
  DIR *d = opendir(tmpdir);
  struct dirent *e;
  char p[8192];
  while (d && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
    unlink(p);
  }
  if (d) closedir(d);
  rmdir(tmpdir);
}

static void tmp_name(char *out, size_t size) {
  snprintf(out, size, "%s/f%u", tmpdir, file_seq++);
}

static void write_file(const char *path, const void *p, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  if (fd < 0) return;
  CHECK_EQ_INT(write(fd, p, n), n);
  close(fd);
}

/* Writes bytes to a scratch file and opens it as format f (0: detect). The file is unlinked
 * at once: a mapping outlives its name. */
static cz_err_code open_bytes(const void *p, size_t n, cz_format f, cz_model **out) {
  char path[8192];
  tmp_name(path, sizeof path);
  write_file(path, p, n);
  cz_model *m = NULL;
  memset(&last_err, 0, sizeof last_err);
  cz_err_code rc = cz_model_open_as(path, f, &m, &last_err);
  unlink(path);
  if (rc != CZ_E_OK) {
    CHECK(m == NULL);
    CHECK(last_err.code == rc && last_err.msg[0] != '\0'); /* every failure says why */
  }
  if (out) *out = m;
  else cz_model_close(m);
  return rc;
}

/* The same bytes parsed straight from an exact-size heap copy: unlike a page-rounded
 * mapping, ASan sees any read one byte past the end. */
static cz_err_code parse_mem(const uint8_t *p, size_t n, cz_format f) {
  uint8_t *copy = malloc(n ? n : 1);
  memcpy(copy, p, n);
  cz_model *m = calloc(1, sizeof *m);
  m->fd = -1;
  m->format = f;
  cz_error e;
  cz_err_code rc = f == CZ_FORMAT_GGUF ? cz__gguf_parse(m, copy, n, &e)
                                       : cz__st_parse(m, copy, n, &e);
  /* What a reader accepts must lie inside the buffer. */
  for (size_t i = 0; rc == CZ_E_OK && i < m->n_tensors; i++) {
    const cz_tensor *t = &m->tensors[i];
    CHECK(t->data >= copy && t->nbytes <= n && t->data - copy <= (ptrdiff_t)(n - t->nbytes));
  }
  cz_model_close(m);
  free(copy);
  return rc;
}

/* ==== byte builder ===================================================================== */

typedef struct {
  uint8_t *p;
  size_t n, cap;
} buf;

static void b_bytes(buf *b, const void *s, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
  }
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
}

static void b_u8(buf *b, uint8_t v) { b_bytes(b, &v, 1); }

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

/* n bytes of a recognisable pattern (the tensor data of test files) */
static void b_data(buf *b, size_t n) {
  for (size_t i = 0; i < n; i++) b_u8(b, (uint8_t)(i * 7 + 1));
}

static void b_pad(buf *b, size_t align) {
  while (b->n % align) b_u8(b, 0);
}

static void b_free(buf *b) {
  free(b->p);
  *b = (buf){0};
}

/* ==== GGUF pieces ====================================================================== */

static void gguf_head(buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  b_bytes(b, "GGUF", 4);
  b_u32(b, version);
  b_u64(b, n_tensors);
  b_u64(b, n_kv);
}

static void kv_u32(buf *b, const char *key, uint32_t v) {
  b_str(b, key);
  b_u32(b, CZ_GGUF_U32);
  b_u32(b, v);
}

static void kv_str(buf *b, const char *key, const char *s) {
  b_str(b, key);
  b_u32(b, CZ_GGUF_STRING);
  b_str(b, s);
}

static void tinfo(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                  uint64_t offset) {
  b_str(b, name);
  b_u32(b, n_dims);
  for (uint32_t i = 0; i < n_dims; i++) b_u64(b, ne[i]);
  b_u32(b, type);
  b_u64(b, offset);
}

/* The small valid file the rejection tests start from: two KVs, "a" F32 [4,2] (32 bytes) at
 * 0 and "b" F16 [8] (16 bytes) at 32, the last padded to 32. Returns where "b" ends. */
static size_t gguf_small(buf *b) {
  gguf_head(b, 3, 2, 2);
  kv_str(b, "general.architecture", "llama");
  kv_u32(b, "general.file_type", 1);
  tinfo(b, "a", 2, (uint64_t[]){4, 2}, CZ_TYPE_F32, 0);
  tinfo(b, "b", 1, (uint64_t[]){8}, CZ_TYPE_F16, 32);
  b_pad(b, 32);
  b_data(b, 48);
  size_t end = b->n;
  b_pad(b, 32);
  return end;
}

/* A file with no KV and one tensor, followed by data_len bytes of data. */
static void gguf_one(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                     uint32_t type, uint64_t offset, size_t data_len) {
  gguf_head(b, 3, 1, 0);
  tinfo(b, name, n_dims, ne, type, offset);
  b_pad(b, 32);
  b_data(b, data_len);
}

/* ==== safetensors pieces =============================================================== */

static void st_file(buf *b, const char *json, size_t data_len) {
  b_u64(b, strlen(json));
  b_bytes(b, json, strlen(json));
  b_data(b, data_len);
}

/* The tensors of the small valid safetensors file: F32 [2,2] and U8 [3], 19 bytes. */
#define ST_SMALL_TENSORS                                                           \
  "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"             \
  "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]}"
#define ST_SMALL "{" ST_SMALL_TENSORS "}"

/* The file made of one header and data_len bytes must fail with code. */
static void st_expect(const char *json, size_t data_len, cz_err_code code, int line) {
  buf b = {0};
  st_file(&b, json, data_len);
  cz_err_code rc = open_bytes(b.p, b.n, 0, NULL);
  if (rc != code) {
    cz_test_failures++;
    printf("# line %d: got %s (%s), want %s\n", line, cz_err_name(rc), last_err.msg,
           cz_err_name(code));
  }
  CHECK_EQ_INT(parse_mem(b.p, b.n, CZ_FORMAT_SAFETENSORS), code);
  b_free(&b);
}

#define ST_EXPECT(json, data_len, code) st_expect(json, data_len, code, __LINE__)

static void gguf_expect(buf *b, cz_err_code code, int line) {
  cz_err_code rc = open_bytes(b->p, b->n, CZ_FORMAT_GGUF, NULL);
  if (rc != code) {
    cz_test_failures++;
    printf("# line %d: got %s (%s), want %s\n", line, cz_err_name(rc), last_err.msg,
           cz_err_name(code));
  }
  CHECK_EQ_INT(parse_mem(b->p, b->n, CZ_FORMAT_GGUF), code);
  b_free(b);
}

#define GGUF_EXPECT(b, code) gguf_expect(b, code, __LINE__)

/* ==== file helpers ===================================================================== */

static uint8_t *read_all(const char *path, size_t *n) {
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0) close(fd);
    return NULL;
  }
  uint8_t *p = malloc((size_t)st.st_size + 1);
  *n = (size_t)read(fd, p, (size_t)st.st_size);
  close(fd);
  return p;
}

/* Finishes l, writes its frame and each tensor's bytes (src[i], nbytes long) to a new
 * scratch file; returns its path in out. */
static void write_layout(cz_layout *l, const uint8_t *const *src, char *out, size_t size) {
  cz_error e;
  tmp_name(out, size);
  int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  CHECK_EQ_INT(cz_layout_write_frame(l, fd, &e), CZ_E_OK);
  for (size_t i = 0; i < l->n_tensors; i++)
    CHECK_EQ_INT(pwrite(fd, src[i], l->tensors[i].nbytes, (off_t)l->tensors[i].file_offset),
                 l->tensors[i].nbytes);
  struct stat st;
  CHECK(fstat(fd, &st) == 0 && (uint64_t)st.st_size == l->total_size);
  close(fd);
}

static void golden_path(char *out, size_t size, const char *name) {
  snprintf(out, size, "%s/tests/data/%s", cz_test_srcdir(), name);
}

/* ==== names ============================================================================ */

static void test_format_names(void) {
  CHECK_EQ_STR(cz_format_name(CZ_FORMAT_GGUF), "gguf");
  CHECK_EQ_STR(cz_format_name(CZ_FORMAT_SAFETENSORS), "safetensors");
  CHECK_EQ_INT(cz_format_from_name("gguf"), CZ_FORMAT_GGUF);
  CHECK_EQ_INT(cz_format_from_name("safetensors"), CZ_FORMAT_SAFETENSORS);
  CHECK_EQ_INT(cz_format_from_name("onnx"), 0);
  CHECK_EQ_INT(cz_format_from_name(NULL), 0);
}

/* ==== golden files ===================================================================== */

/* tiny-llama-f16.gguf: 13 KVs, 39 tensors (F16 2-D weights, F32 norms), header of 2826
 * bytes padded to 2848, last tensor ending at the end of the file. */
static void test_read_tiny_llama(void) {
  char path[8192];
  golden_path(path, sizeof path, "tiny-llama-f16.gguf");
  cz_model *m = NULL;
  cz_error e;
  CHECK_EQ_INT(cz_model_open(path, &m, &e), CZ_E_OK);
  if (m == NULL) return;
  CHECK_EQ_INT(m->format, CZ_FORMAT_GGUF);
  CHECK_EQ_INT(m->gguf_version, 3);
  CHECK_EQ_INT(m->alignment, 32);
  CHECK_EQ_INT(m->n_kv, 13);
  CHECK_EQ_INT(m->n_tensors, 39);
  CHECK_EQ_INT(m->file_size, 7876384);
  const char *s;
  uint64_t len;
  uint32_t v;
  CHECK(cz_gguf_kv_str(&m->kv[0], &s, &len) && len == 5 && memcmp(s, "llama", 5) == 0);
  CHECK_EQ_STR(m->kv[0].key, "general.architecture");
  long i = cz_gguf_find_kv(m, "llama.block_count");
  CHECK(i >= 0 && cz_gguf_kv_u32(&m->kv[i], &v) && v == 4);
  CHECK(!cz_gguf_kv_str(&m->kv[i], &s, &len)); /* type mismatch */
  CHECK(!cz_gguf_kv_u32(&m->kv[0], &v));
  CHECK_EQ_INT(cz_gguf_find_kv(m, "no.such.key"), -1);
  const cz_tensor *t = &m->tensors[0];
  CHECK_EQ_STR(t->name, "token_embd.weight");
  CHECK(t->type == CZ_TYPE_F16 && t->n_dims == 2 && t->ne[0] == 256 && t->ne[1] == 1024);
  CHECK(t->ne[2] == 1 && t->ne[3] == 1);
  CHECK_EQ_INT(t->nbytes, 524288);
  CHECK_EQ_INT(t->data - (const uint8_t *)m->map, 2848);
  CHECK_EQ_INT(cz_tensor_nelements(t), 256 * 1024);
  t = cz_model_find(m, "blk.0.attn_norm.weight");
  CHECK(t && t->type == CZ_TYPE_F32 && t->n_dims == 1 && t->ne[0] == 256 && t->nbytes == 1024);
  CHECK(t && t->data - (const uint8_t *)m->map == 2848 + 524288);
  t = cz_model_find(m, "output.weight");
  CHECK(t && t->data + t->nbytes == (const uint8_t *)m->map + m->file_size);
  CHECK(cz_model_find(m, "missing") == NULL);
  int n_f16 = 0, n_f32 = 0;
  for (size_t k = 0; k < m->n_tensors; k++) {
    n_f16 += m->tensors[k].type == CZ_TYPE_F16 && m->tensors[k].n_dims == 2;
    n_f32 += m->tensors[k].type == CZ_TYPE_F32 && m->tensors[k].n_dims == 1;
  }
  CHECK_EQ_INT(n_f16 + n_f32, 39);
  CHECK_EQ_INT(n_f32, 9); /* two norms per layer, and the output norm */
  cz_model_close(m);
}

static void test_read_ggml_quants(void) {
  char path[8192];
  golden_path(path, sizeof path, "ggml-quants.safetensors");
  cz_model *m = NULL;
  cz_error e;
  CHECK_EQ_INT(cz_model_open(path, &m, &e), CZ_E_OK);
  if (m == NULL) return;
  CHECK_EQ_INT(m->format, CZ_FORMAT_SAFETENSORS);
  CHECK_EQ_INT(m->n_tensors, 290);
  CHECK_EQ_INT(m->n_meta, 4);
  CHECK_EQ_INT(m->n_kv, 0);
  CHECK_EQ_STR(m->meta_keys[0], "producer");
  CHECK_EQ_STR(m->meta_keys[1], "ggml_commit");
  CHECK_EQ_STR(m->meta_values[1], "3f545beccee69d9975f466ec7e45fd9aacd8ba90");
  CHECK_EQ_STR(m->meta_keys[2], "nrows");
  CHECK_EQ_STR(m->meta_keys[3], "n_per_row");
  CHECK_EQ_STR(m->meta_values[3], "512");
  const cz_tensor *t = &m->tensors[0];
  CHECK_EQ_STR(t->name, "input.gauss");
  /* shape [4, 512] in the file is ne {512, 4} */
  CHECK(t->type == CZ_TYPE_F32 && t->n_dims == 2 && t->ne[0] == 512 && t->ne[1] == 4);
  CHECK_EQ_INT(t->nbytes, 8192);
  t = cz_model_find(m, "q8_0.gauss.quant");
  CHECK(t && t->type == CZ_TYPE_U8 && t->n_dims == 1 && t->ne[0] == 2176);
  /* file order: each tensor starts where the previous ended, the last ends the file */
  for (size_t i = 1; i < m->n_tensors; i++)
    CHECK(m->tensors[i].data == m->tensors[i - 1].data + m->tensors[i - 1].nbytes);
  t = &m->tensors[m->n_tensors - 1];
  CHECK(t->data + t->nbytes == (const uint8_t *)m->map + m->file_size);
  cz_model_close(m);
}

/* Rewriting a golden file through a layout (all KVs / metadata copied, tensors in file
 * order) reproduces it byte for byte: the writer lays files out the way the tools that
 * made them do. */
static void rewrite_golden(const char *name) {
  char path[8192], out[8192];
  golden_path(path, sizeof path, name);
  cz_model *m = NULL;
  cz_error e;
  CHECK_EQ_INT(cz_model_open(path, &m, &e), CZ_E_OK);
  if (m == NULL) return;
  cz_layout *l = cz_layout_new(m->format);
  if (m->format == CZ_FORMAT_GGUF) CHECK_EQ_INT(cz_layout_copy_kv(l, m, &e), CZ_E_OK);
  for (size_t i = 0; i < m->n_meta; i++)
    CHECK_EQ_INT(cz_layout_set_meta(l, m->meta_keys[i], m->meta_values[i], &e), CZ_E_OK);
  const uint8_t **src = malloc(m->n_tensors * sizeof *src);
  for (size_t i = 0; i < m->n_tensors; i++) {
    const cz_tensor *t = &m->tensors[i];
    CHECK_EQ_INT(cz_layout_add_tensor(l, t->name, t->type, t->n_dims, t->ne, &e), CZ_E_OK);
    CHECK_EQ_INT(l->tensors[i].nbytes, t->nbytes);
    src[i] = t->data;
  }
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_OK);
  CHECK_EQ_INT(l->total_size, m->file_size);
  write_layout(l, src, out, sizeof out);
  size_t n = 0;
  uint8_t *got = read_all(out, &n);
  CHECK(got && n == m->file_size && memcmp(got, m->map, n) == 0);
  free(got);
  free(src);
  unlink(out);
  cz_layout_free(l);
  cz_model_close(m);
}

static void test_rewrite_tiny_llama(void) { rewrite_golden("tiny-llama-f16.gguf"); }
static void test_rewrite_ggml_quants(void) { rewrite_golden("ggml-quants.safetensors"); }
/* llama.cpp's imatrix GGUF: a string array KV and 1-D F32 tensors. */
static void test_rewrite_imatrix(void) { rewrite_golden("tiny-llama-imatrix.gguf"); }

/* ==== GGUF round trip ================================================================== */

/* A hand-made GGUF with every kind of value, arrays of strings and of arrays included, and
 * tensors laid out as llama.cpp lays them: contiguous, each padded to 32. */
static size_t gguf_rich(buf *b) {
  gguf_head(b, 3, 5, 9);
  kv_str(b, "general.architecture", "llama");
  kv_str(b, "general.name", "round trip \xc3\xa9");
  kv_u32(b, "test.u32", 7);
  b_str(b, "test.f32");
  b_u32(b, CZ_GGUF_F32);
  b_u32(b, 0x3f800000);
  b_str(b, "test.bool");
  b_u32(b, CZ_GGUF_BOOL);
  b_u8(b, 1);
  b_str(b, "test.i64");
  b_u32(b, CZ_GGUF_I64);
  b_u64(b, (uint64_t)-5);
  b_str(b, "test.strings"); /* ["a", "bc", ""] */
  b_u32(b, CZ_GGUF_ARRAY);
  b_u32(b, CZ_GGUF_STRING);
  b_u64(b, 3);
  b_str(b, "a");
  b_str(b, "bc");
  b_str(b, "");
  b_str(b, "test.nested"); /* [[1, 2], [3]] as i32 */
  b_u32(b, CZ_GGUF_ARRAY);
  b_u32(b, CZ_GGUF_ARRAY);
  b_u64(b, 2);
  b_u32(b, CZ_GGUF_I32);
  b_u64(b, 2);
  b_u32(b, 1);
  b_u32(b, 2);
  b_u32(b, CZ_GGUF_I32);
  b_u64(b, 1);
  b_u32(b, 3);
  b_str(b, "test.empty");
  b_u32(b, CZ_GGUF_ARRAY);
  b_u32(b, CZ_GGUF_U8);
  b_u64(b, 0);
  tinfo(b, "tok", 2, (uint64_t[]){8, 3}, CZ_TYPE_F16, 0);    /* 48 bytes, padded to 64 */
  tinfo(b, "norm", 1, (uint64_t[]){8}, CZ_TYPE_F32, 64);     /* 32 */
  tinfo(b, "q", 2, (uint64_t[]){64, 2}, CZ_TYPE_Q8_0, 96);   /* 136, padded to 160 */
  tinfo(b, "z", 2, (uint64_t[]){0, 4}, CZ_TYPE_F32, 256);    /* empty */
  tinfo(b, "s", 1, (uint64_t[]){1}, CZ_TYPE_I32, 256);       /* 4, padded to 32 */
  b_pad(b, 32);
  size_t data_start = b->n;
  b_data(b, 48);
  b_pad(b, 32);
  b_data(b, 32);
  b_data(b, 136);
  b_pad(b, 32);
  b_data(b, 4);
  b_pad(b, 32);
  return data_start;
}

static void test_gguf_read_rich(void) {
  buf b = {0};
  size_t data_start = gguf_rich(&b);
  cz_model *m = NULL;
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, &m), CZ_E_OK);
  CHECK_EQ_INT(parse_mem(b.p, b.n, CZ_FORMAT_GGUF), CZ_E_OK);
  if (m == NULL) {
    b_free(&b);
    return;
  }
  CHECK_EQ_INT(m->n_kv, 9);
  CHECK_EQ_INT(m->n_tensors, 5);
  long i = cz_gguf_find_kv(m, "test.nested");
  CHECK(i == 7 && m->kv[i].type == CZ_GGUF_ARRAY);
  /* raw: elem type, count, then [type, count, 1, 2], [type, count, 3] */
  CHECK_EQ_INT(m->kv[i].raw_len, 4 + 8 + (4 + 8 + 8) + (4 + 8 + 4));
  i = cz_gguf_find_kv(m, "test.strings");
  CHECK(i == 6 && m->kv[i].raw_len == 4 + 8 + 9 + 10 + 8);
  i = cz_gguf_find_kv(m, "test.bool");
  CHECK(i == 4 && m->kv[i].raw_len == 1 && m->kv[i].raw[0] == 1);
  const cz_tensor *t = cz_model_find(m, "q");
  CHECK(t && t->type == CZ_TYPE_Q8_0 && t->nbytes == 136);
  CHECK(t && t->data == (const uint8_t *)m->map + data_start + 96);
  t = cz_model_find(m, "z");
  CHECK(t && t->nbytes == 0 && cz_tensor_nelements(t) == 0);
  cz_model_close(m);
  b_free(&b);
}

/* Read the rich file, copy its KVs into a layout with the same tensors, write: the output
 * is the input byte for byte; then reopen it and compare every KV's raw bytes. */
static void test_gguf_roundtrip(void) {
  buf b = {0};
  gguf_rich(&b);
  cz_model *m = NULL;
  cz_error e;
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, &m), CZ_E_OK);
  if (m == NULL) {
    b_free(&b);
    return;
  }
  cz_layout *l = cz_layout_new(CZ_FORMAT_GGUF);
  CHECK_EQ_INT(cz_layout_copy_kv(l, m, &e), CZ_E_OK);
  const uint8_t *src[5];
  for (size_t i = 0; i < m->n_tensors; i++) {
    const cz_tensor *t = &m->tensors[i];
    CHECK_EQ_INT(cz_layout_add_tensor(l, t->name, t->type, t->n_dims, t->ne, &e), CZ_E_OK);
    src[i] = t->data;
  }
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_OK);
  CHECK_EQ_INT(l->total_size, b.n);
  CHECK(l->header_len <= b.n && memcmp(l->header, b.p, l->header_len) == 0);
  char out[8192];
  write_layout(l, src, out, sizeof out);
  size_t n = 0;
  uint8_t *got = read_all(out, &n);
  CHECK(got && n == b.n && memcmp(got, b.p, n) == 0);
  free(got);
  cz_model *m2 = NULL;
  CHECK_EQ_INT(cz_model_open(out, &m2, &e), CZ_E_OK);
  for (size_t i = 0; m2 && i < m->n_kv; i++) {
    CHECK_EQ_STR(m2->kv[i].key, m->kv[i].key);
    CHECK(m2->kv[i].type == m->kv[i].type && m2->kv[i].raw_len == m->kv[i].raw_len &&
          memcmp(m2->kv[i].raw, m->kv[i].raw, m->kv[i].raw_len) == 0);
  }
  for (size_t i = 0; m2 && i < m->n_tensors; i++) {
    const cz_tensor *t = &m2->tensors[i];
    CHECK_EQ_STR(t->name, m->tensors[i].name);
    CHECK(t->type == m->tensors[i].type && t->n_dims == m->tensors[i].n_dims);
    CHECK(memcmp(t->ne, m->tensors[i].ne, sizeof t->ne) == 0);
    CHECK(t->nbytes == m->tensors[i].nbytes && memcmp(t->data, src[i], t->nbytes) == 0);
  }
  cz_model_close(m2);
  unlink(out);
  cz_layout_free(l);
  cz_model_close(m);
  b_free(&b);
}

/* ==== safetensors round trip =========================================================== */

static void test_st_roundtrip(void) {
  cz_error e;
  cz_layout *l = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  CHECK_EQ_INT(cz_layout_set_meta(l, "format", "pt", &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_set_meta(l, "note", "first", &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_set_meta(l, "format", "np", &e), CZ_E_OK); /* replaced in place */
  static const struct {
    const char *name;
    cz_type type;
    int n_dims;
    int64_t ne[4];
    uint64_t nbytes;
  } ts[] = {
      {"w", CZ_TYPE_F32, 2, {3, 2}, 24},      {"b16", CZ_TYPE_BF16, 1, {4}, 8},
      {"scalar", CZ_TYPE_U8, 0, {0}, 1},      {"empty", CZ_TYPE_F16, 2, {5, 0}, 0},
      {"f4", CZ_TYPE_F4, 1, {4}, 2},          {"\xc3\xa9t\xc3\xa9", CZ_TYPE_I64, 3, {1, 1, 2}, 16},
  };
  size_t nt = sizeof ts / sizeof ts[0];
  uint8_t data[6][32];
  const uint8_t *src[6];
  for (size_t i = 0; i < nt; i++) {
    CHECK_EQ_INT(cz_layout_add_tensor(l, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, &e),
                 CZ_E_OK);
    CHECK_EQ_INT(l->tensors[i].nbytes, ts[i].nbytes);
    for (size_t k = 0; k < sizeof data[i]; k++) data[i][k] = (uint8_t)(i * 31 + k);
    src[i] = data[i];
  }
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_OK);
  CHECK_EQ_INT(l->header_len % 8, 0);
  CHECK_EQ_INT(cz__le64(l->header), l->header_len - 8);
  char out[8192];
  write_layout(l, src, out, sizeof out);
  cz_model *m = NULL;
  CHECK_EQ_INT(cz_model_open(out, &m, &e), CZ_E_OK);
  if (m) {
    CHECK_EQ_INT(m->n_meta, 2);
    CHECK_EQ_STR(m->meta_keys[0], "format");
    CHECK_EQ_STR(m->meta_values[0], "np");
    CHECK_EQ_STR(m->meta_keys[1], "note");
    CHECK_EQ_INT(m->n_tensors, nt);
    for (size_t i = 0; i < m->n_tensors && i < nt; i++) {
      const cz_tensor *t = &m->tensors[i];
      CHECK_EQ_STR(t->name, ts[i].name);
      CHECK_EQ_INT(t->type, ts[i].type);
      CHECK_EQ_INT(t->n_dims, ts[i].n_dims);
      for (int d = 0; d < CZ_MAX_DIMS; d++)
        CHECK_EQ_INT(t->ne[d], d < ts[i].n_dims ? ts[i].ne[d] : 1);
      CHECK_EQ_INT(t->nbytes, ts[i].nbytes);
      CHECK(memcmp(t->data, data[i], t->nbytes) == 0);
      CHECK_EQ_INT(t->data - (const uint8_t *)m->map, l->tensors[i].file_offset);
    }
    CHECK_EQ_INT(cz_tensor_nelements(cz_model_find(m, "scalar")), 1);
  }
  cz_model_close(m);
  unlink(out);
  cz_layout_free(l);
}

/* The exact header bytes: compact JSON, metadata first, shape outermost first, spaces to
 * a multiple of 8. */
static void test_st_header_bytes(void) {
  cz_error e;
  cz_layout *l = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  CHECK_EQ_INT(cz_layout_set_meta(l, "k", "v", &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_add_tensor(l, "w", CZ_TYPE_F16, 2, (int64_t[]){3, 2}, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_add_tensor(l, "v", CZ_TYPE_F32, 1, (int64_t[]){2}, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_OK);
  const char *want = "{\"__metadata__\":{\"k\":\"v\"},"
                     "\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                     "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}";
  size_t n = strlen(want), padded = (n + 7) / 8 * 8;
  CHECK_EQ_INT(l->header_len, 8 + padded);
  CHECK(l->header_len == 8 + padded && memcmp(l->header + 8, want, n) == 0);
  for (size_t i = 8 + n; i < l->header_len; i++) CHECK_EQ_INT(l->header[i], ' ');
  CHECK_EQ_INT(l->tensors[0].file_offset, 8 + padded);
  CHECK_EQ_INT(l->tensors[1].file_offset, 8 + padded + 12);
  CHECK_EQ_INT(l->total_size, 8 + padded + 20);
  cz_layout_free(l);
  /* no metadata: no __metadata__ key at all */
  l = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_OK);
  CHECK(l->header_len == 16 && memcmp(l->header + 8, "{}      ", 8) == 0);
  cz_layout_free(l);
}

/* ==== safetensors rejections =========================================================== */

/* Every proper prefix of a valid file fails, with the code of the first check it breaks. */
static void test_st_truncated_prefixes(void) {
  buf b = {0};
  st_file(&b, ST_SMALL, 19);
  size_t hdr_end = 8 + strlen(ST_SMALL);
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, NULL), CZ_E_OK);
  for (size_t len = 0; len < b.n; len++) {
    cz_err_code want = len < 8 ? CZ_E_HEADER_TOO_SMALL
                       : len < hdr_end ? CZ_E_INVALID_HEADER_LENGTH
                                       : CZ_E_TRUNCATED;
    CHECK_EQ_INT(open_bytes(b.p, len, 0, NULL), want);
    CHECK_EQ_INT(parse_mem(b.p, len, CZ_FORMAT_SAFETENSORS), want);
  }
  b_free(&b);
}

static void test_st_header_length(void) {
  buf b = {0};
  b_u64(&b, CZ_ST_MAX_HEADER + 1);
  b_bytes(&b, "{}", 2);
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, NULL), CZ_E_HEADER_TOO_LARGE);
  b_free(&b);
  b_u64(&b, UINT64_MAX); /* 8 + n would wrap */
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, NULL), CZ_E_HEADER_TOO_LARGE);
  b_free(&b);
  b_u64(&b, CZ_ST_MAX_HEADER); /* allowed, but not in this file */
  b_bytes(&b, "{}", 2);
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, NULL), CZ_E_INVALID_HEADER_LENGTH);
  b_free(&b);
  /* an empty file is simply too small (mmap of 0 bytes is never attempted) */
  CHECK_EQ_INT(open_bytes("", 0, 0, NULL), CZ_E_HEADER_TOO_SMALL);
}

static void test_st_invalid_utf8(void) {
  ST_EXPECT("{\"\xff\":{}}", 0, CZ_E_INVALID_UTF8);
  ST_EXPECT("{\"\xc0\xaf\":{}}", 0, CZ_E_INVALID_UTF8);         /* overlong '/' */
  ST_EXPECT("{\"\xed\xa0\x80\":{}}", 0, CZ_E_INVALID_UTF8);     /* surrogate */
  ST_EXPECT("{\"\xf4\x90\x80\x80\":{}}", 0, CZ_E_INVALID_UTF8); /* above U+10FFFF */
  ST_EXPECT("{\"\xe2\x82\":{}}", 0, CZ_E_INVALID_UTF8);         /* cut sequence */
  /* an escaped lone surrogate is valid UTF-8 text but not valid JSON for jansson */
  ST_EXPECT("{\"\\ud800\":{}}", 0, CZ_E_INVALID_HEADER);
  /* valid multi-byte names pass */
  ST_EXPECT("{\"\xe2\x82\xac\xf0\x9f\x98\x80\":{\"dtype\":\"U8\",\"shape\":[1],"
            "\"data_offsets\":[0,1]}}",
            1, CZ_E_OK);
}

static void test_st_invalid_header(void) {
  ST_EXPECT("", 0, CZ_E_INVALID_HEADER);
  ST_EXPECT("not json", 0, CZ_E_INVALID_HEADER);
  ST_EXPECT("[]", 0, CZ_E_INVALID_HEADER);
  ST_EXPECT("{} x", 0, CZ_E_INVALID_HEADER);    /* garbage after the object */
  ST_EXPECT("{}\0   ", 0, CZ_E_OK);              /* strlen stops at the NUL: "{}" */
  ST_EXPECT("\t\n{}\r   ", 0, CZ_E_OK);          /* JSON whitespace around it is fine */
  ST_EXPECT("{\"a\":1}", 0, CZ_E_INVALID_HEADER);
  ST_EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, CZ_E_INVALID_HEADER);
  ST_EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
            CZ_E_INVALID_HEADER); /* unknown field */
  ST_EXPECT("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
            CZ_E_INVALID_HEADER);
  ST_EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4,
            CZ_E_INVALID_HEADER);
  ST_EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
            CZ_E_INVALID_HEADER);
  ST_EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
            CZ_E_INVALID_HEADER);
  ST_EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
            CZ_E_INVALID_HEADER);
  ST_EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
            CZ_E_INVALID_HEADER);
  ST_EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
            CZ_E_INVALID_HEADER);
  ST_EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}",
            4, CZ_E_INVALID_HEADER); /* beyond int64: jansson refuses the number */
  /* a raw NUL inside the header is not JSON */
  buf b = {0};
  b_u64(&b, 4);
  b_bytes(&b, "{\0}\n", 4);
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, NULL), CZ_E_INVALID_HEADER);
  b_free(&b);
}

static void test_st_metadata(void) {
  ST_EXPECT("{\"__metadata__\":{\"a\":\"b\",\"c\":\"\"}}", 0, CZ_E_OK);
  ST_EXPECT("{\"__metadata__\":{\"a\":1}}", 0, CZ_E_INVALID_METADATA);
  ST_EXPECT("{\"__metadata__\":{\"a\":null}}", 0, CZ_E_INVALID_METADATA);
  ST_EXPECT("{\"__metadata__\":[\"a\"]}", 0, CZ_E_INVALID_METADATA);
  ST_EXPECT("{\"__metadata__\":\"x\"}", 0, CZ_E_INVALID_METADATA);
}

static void test_st_duplicate_key(void) {
  ST_EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
            "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
            2, CZ_E_DUPLICATE_KEY);
  ST_EXPECT("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
            1, CZ_E_DUPLICATE_KEY);
  ST_EXPECT("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, CZ_E_DUPLICATE_KEY);
  ST_EXPECT("{\"__metadata__\":{},\"__metadata__\":{}}", 0, CZ_E_DUPLICATE_KEY);
}

static void test_st_unknown_dtype(void) {
  ST_EXPECT("{\"weight\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16,
            CZ_E_UNKNOWN_DTYPE);
  CHECK(strstr(last_err.msg, "weight") != NULL && strstr(last_err.msg, "F128") != NULL);
  ST_EXPECT("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
            CZ_E_UNKNOWN_DTYPE); /* dtype strings are case-sensitive */
  ST_EXPECT("{\"w\":{\"dtype\":\"Q8_0\",\"shape\":[32],\"data_offsets\":[0,34]}}", 34,
            CZ_E_UNKNOWN_DTYPE); /* a ggml block type is not a safetensors dtype */
}

static void test_st_limits(void) {
  ST_EXPECT("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
            CZ_E_UNSUPPORTED);
  ST_EXPECT("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1],\"data_offsets\":[0,1]}}", 1, CZ_E_OK);
  /* names: CZ_MAX_NAME bytes pass, one more is refused */
  for (size_t len = CZ_MAX_NAME; len <= CZ_MAX_NAME + 1; len++) {
    buf j = {0};
    b_bytes(&j, "{\"", 2);
    for (size_t i = 0; i < len; i++) b_u8(&j, 'n');
    const char *rest = "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    b_bytes(&j, rest, strlen(rest) + 1);
    ST_EXPECT((const char *)j.p, 1, len == CZ_MAX_NAME ? CZ_E_OK : CZ_E_UNSUPPORTED);
    b_free(&j);
  }
}

static void test_st_offsets_start(void) {
  /* not starting at 0 */
  ST_EXPECT("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
            CZ_E_INVALID_OFFSETS);
  CHECK(strstr(last_err.msg, "'w'") != NULL);
}

static void test_st_offsets_gap(void) {
  /* a gap between two tensors */
  ST_EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
            "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
            3, CZ_E_INVALID_OFFSETS);
}

static void test_st_offsets_overlap(void) {
  /* overlap */
  ST_EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
            "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}",
            3, CZ_E_INVALID_OFFSETS);
  /* the same range twice */
  ST_EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
            "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
            2, CZ_E_INVALID_OFFSETS);
  /* end before begin */
  ST_EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
            "\"b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
            "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,0]}}",
            0, CZ_E_INVALID_OFFSETS);
}

static void test_st_file_order(void) {
  /* header order is not file order: sorted by offsets, and kept in that order */
  buf b = {0};
  st_file(&b,
          "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]},"
          "\"e\":{\"dtype\":\"F16\",\"shape\":[0,7],\"data_offsets\":[1,1]},"
          "\"a\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}",
          3);
  cz_model *m = NULL;
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, &m), CZ_E_OK);
  if (m) {
    CHECK_EQ_INT(m->n_tensors, 3);
    CHECK_EQ_STR(m->tensors[0].name, "a");
    CHECK_EQ_INT(m->tensors[0].n_dims, 0);
    CHECK_EQ_INT(cz_tensor_nelements(&m->tensors[0]), 1);
    CHECK_EQ_STR(m->tensors[1].name, "e");
    CHECK_EQ_INT(m->tensors[1].nbytes, 0);
    CHECK(m->tensors[1].ne[0] == 7 && m->tensors[1].ne[1] == 0);
    CHECK_EQ_STR(m->tensors[2].name, "b");
    CHECK(m->tensors[2].data == m->tensors[0].data + 1);
  }
  cz_model_close(m);
  b_free(&b);
}

static void test_st_size_mismatch(void) {
  /* F32 [2] is 8 bytes, not 4 */
  ST_EXPECT("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
            CZ_E_SIZE_MISMATCH);
  CHECK(strstr(last_err.msg, "'w'") != NULL);
}

static void test_st_misaligned_slice(void) {
  /* F4 with an odd element count does not fill whole bytes */
  ST_EXPECT("{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
            CZ_E_MISALIGNED_SLICE);
  ST_EXPECT("{\"w\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[0,3]}}", 3, CZ_E_OK);
  ST_EXPECT("{\"w\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[0,3]}}", 3, CZ_E_OK);
}

static void test_st_size_overflow(void) {
  /* the safetensors-cpp PoC: the element count wraps to something small */
  ST_EXPECT("{\"w\":{\"dtype\":\"U8\",\"shape\":[4194305,4194305,211106198978564],"
            "\"data_offsets\":[0,1]}}",
            1, CZ_E_SIZE_OVERFLOW);
  /* the element count fits, the bit count does not */
  ST_EXPECT("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,1]}}",
            1, CZ_E_SIZE_OVERFLOW);
  /* multiplied outermost first like the reference: the overflow comes before the 0 */
  ST_EXPECT("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],"
            "\"data_offsets\":[0,0]}}",
            0, CZ_E_SIZE_OVERFLOW);
  buf b = {0};
  st_file(&b, "{\"w\":{\"dtype\":\"U8\",\"shape\":[0,4294967296,4294967296],"
              "\"data_offsets\":[0,0]}}", 0);
  cz_model *m = NULL;
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, &m), CZ_E_OK);
  if (m) CHECK_EQ_INT(cz_tensor_nelements(&m->tensors[0]), 0); /* and no int64 overflow */
  cz_model_close(m);
  b_free(&b);
}

static void test_st_trailing_data(void) {
  ST_EXPECT(ST_SMALL, 20, CZ_E_TRAILING_DATA);
  ST_EXPECT("{}", 1, CZ_E_TRAILING_DATA);
  ST_EXPECT("{}", 0, CZ_E_OK);
}

static void test_st_truncated(void) {
  ST_EXPECT(ST_SMALL, 18, CZ_E_TRUNCATED);
  ST_EXPECT(ST_SMALL, 0, CZ_E_TRUNCATED);
  ST_EXPECT(ST_SMALL, 19, CZ_E_OK);
}

/* ==== GGUF rejections ================================================================== */

static void test_gguf_truncated_prefixes(void) {
  buf b = {0};
  size_t end = gguf_small(&b);
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, NULL), CZ_E_OK);
  for (size_t len = 0; len < b.n; len++) {
    /* The padding after the last tensor is optional (llama.cpp reads such files). */
    cz_err_code want = len < end ? CZ_E_TRUNCATED : CZ_E_OK;
    CHECK_EQ_INT(open_bytes(b.p, len, CZ_FORMAT_GGUF, NULL), want);
    CHECK_EQ_INT(parse_mem(b.p, len, CZ_FORMAT_GGUF), want);
    if (len >= 4) CHECK_EQ_INT(open_bytes(b.p, len, 0, NULL), want);
  }
  b_free(&b);
}

static void test_gguf_bad_magic(void) {
  buf b = {0};
  gguf_small(&b);
  b.p[3] = 'G';
  cz_err_code rc = open_bytes(b.p, b.n, CZ_FORMAT_GGUF, NULL);
  CHECK_EQ_INT(rc, CZ_E_BAD_MAGIC);
  /* undetected, it is taken for safetensors, whose length prefix is then absurd */
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, NULL), CZ_E_HEADER_TOO_LARGE);
  b_free(&b);
}

static void test_gguf_version(void) {
  buf b = {0};
  static const uint32_t bad[] = {0, 1, 4, 0x03000000, UINT32_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gguf_small(&b);
    cz__put32(b.p + 4, bad[i]);
    GGUF_EXPECT(&b, CZ_E_UNSUPPORTED_VERSION);
  }
  gguf_small(&b);
  cz__put32(b.p + 4, 2); /* v2 has the same layout */
  GGUF_EXPECT(&b, CZ_E_OK);
}

static void test_gguf_huge_string(void) {
  buf b = {0};
  gguf_head(&b, 3, 0, 1); /* key length 2^64-1 */
  b_u64(&b, UINT64_MAX);
  b_data(&b, 64);
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
  gguf_head(&b, 3, 0, 1); /* key length one past the end */
  b_u64(&b, 17);
  b_data(&b, 16);
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
  gguf_head(&b, 3, 0, 1); /* string value of length 2^63 */
  b_str(&b, "k");
  b_u32(&b, CZ_GGUF_STRING);
  b_u64(&b, UINT64_C(1) << 63);
  b_data(&b, 64);
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
}

static void test_gguf_bad_key(void) {
  buf b = {0};
  gguf_head(&b, 3, 0, 1); /* empty key */
  b_str(&b, "");
  b_u32(&b, CZ_GGUF_U8);
  b_u8(&b, 0);
  b_pad(&b, 32);
  GGUF_EXPECT(&b, CZ_E_INVALID_KV);
  gguf_head(&b, 3, 0, 1); /* key above 65535 bytes, all present */
  b_u64(&b, 65536);
  for (int i = 0; i < 65536; i++) b_u8(&b, 'k');
  b_u32(&b, CZ_GGUF_U8);
  b_u8(&b, 0);
  GGUF_EXPECT(&b, CZ_E_INVALID_KV);
  gguf_head(&b, 3, 0, 1); /* NUL inside a key */
  b_u64(&b, 3);
  b_bytes(&b, "a\0b", 3);
  b_u32(&b, CZ_GGUF_U8);
  b_u8(&b, 0);
  GGUF_EXPECT(&b, CZ_E_INVALID_KV);
}

static void test_gguf_bad_kv_type(void) {
  static const uint32_t bad[] = {13, 255, UINT32_MAX};
  buf b = {0};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gguf_head(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, bad[i]);
    b_data(&b, 16);
    GGUF_EXPECT(&b, CZ_E_INVALID_KV);
  }
}

static void test_gguf_duplicate_key(void) {
  buf b = {0};
  gguf_head(&b, 3, 0, 2);
  kv_u32(&b, "general.file_type", 1);
  kv_u32(&b, "general.file_type", 2);
  GGUF_EXPECT(&b, CZ_E_DUPLICATE_KEY);
}

static void test_gguf_huge_tensor_count(void) {
  buf b = {0};
  static const uint64_t huge[] = {UINT64_MAX, UINT64_C(1) << 63, CZ_MAX_TENSORS + 1};
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    gguf_small(&b);
    cz__put64(b.p + 8, huge[i]);
    GGUF_EXPECT(&b, CZ_E_TOO_MANY_TENSORS);
  }
  gguf_small(&b); /* plausible, but more than the file could describe */
  cz__put64(b.p + 8, 1000);
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
}

static void test_gguf_huge_kv_count(void) {
  buf b = {0};
  gguf_small(&b);
  cz__put64(b.p + 16, UINT64_MAX);
  GGUF_EXPECT(&b, CZ_E_INVALID_KV);
  gguf_small(&b);
  cz__put64(b.p + 16, 1000);
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
}

/* A file with one array KV: elem type et, count, then filler bytes. */
static void gguf_array(buf *b, uint32_t et, uint64_t count, size_t filler) {
  gguf_head(b, 3, 0, 1);
  b_str(b, "k");
  b_u32(b, CZ_GGUF_ARRAY);
  b_u32(b, et);
  b_u64(b, count);
  b_data(b, filler);
}

static void test_gguf_huge_array_count(void) {
  buf b = {0};
  gguf_array(&b, CZ_GGUF_U8, UINT64_MAX, 64);
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
  gguf_array(&b, CZ_GGUF_U64, UINT64_C(1) << 61, 64); /* count * 8 would wrap to 0 */
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
  gguf_array(&b, CZ_GGUF_STRING, UINT64_C(1) << 60, 64);
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
  gguf_array(&b, CZ_GGUF_ARRAY, UINT64_MAX / 2, 64);
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
  gguf_array(&b, CZ_GGUF_U32, 5, 19); /* one byte short */
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
  gguf_array(&b, CZ_GGUF_U32, 5, 20);
  GGUF_EXPECT(&b, CZ_E_OK);
  gguf_array(&b, 13, 1, 16);
  GGUF_EXPECT(&b, CZ_E_INVALID_KV);
  /* strings whose lengths lie */
  gguf_array(&b, CZ_GGUF_STRING, 2, 0);
  b_str(&b, "ok");
  b_u64(&b, 1000);
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
  /* nesting: 8 levels of arrays are read, a 9th is refused */
  for (int levels = 8; levels <= 9; levels++) {
    gguf_head(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, CZ_GGUF_ARRAY);
    for (int i = 0; i < levels - 1; i++) {
      b_u32(&b, CZ_GGUF_ARRAY);
      b_u64(&b, 1);
    }
    b_u32(&b, CZ_GGUF_U8);
    b_u64(&b, 1);
    b_u8(&b, 42);
    GGUF_EXPECT(&b, levels == 8 ? CZ_E_OK : CZ_E_INVALID_KV);
  }
}

static void test_gguf_bad_alignment(void) {
  buf b = {0};
  /* 0, not a power of two, above our cap */
  static const uint32_t bad[] = {0, 13, 48, UINT32_C(1) << 31};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gguf_head(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", bad[i]);
    GGUF_EXPECT(&b, CZ_E_INVALID_ALIGNMENT);
  }
  gguf_head(&b, 3, 0, 1); /* right value, wrong type (i32) */
  b_str(&b, "general.alignment");
  b_u32(&b, CZ_GGUF_I32);
  b_u32(&b, 32);
  GGUF_EXPECT(&b, CZ_E_INVALID_ALIGNMENT);
  /* alignment 64: offsets are multiples of 64, the data section starts at one */
  gguf_head(&b, 3, 2, 1);
  kv_u32(&b, "general.alignment", 64);
  tinfo(&b, "a", 1, (uint64_t[]){8}, CZ_TYPE_F32, 0);
  tinfo(&b, "b", 1, (uint64_t[]){8}, CZ_TYPE_F32, 64);
  b_pad(&b, 64);
  size_t data_start = b.n;
  b_data(&b, 96);
  cz_model *m = NULL;
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, &m), CZ_E_OK);
  if (m) {
    CHECK_EQ_INT(m->alignment, 64);
    CHECK_EQ_INT(m->tensors[1].data - (const uint8_t *)m->map, data_start + 64);
  }
  cz_model_close(m);
  b_free(&b);
  gguf_head(&b, 3, 1, 1); /* offset 32 is not a multiple of 64 */
  kv_u32(&b, "general.alignment", 64);
  tinfo(&b, "a", 1, (uint64_t[]){8}, CZ_TYPE_F32, 32);
  b_pad(&b, 64);
  b_data(&b, 64);
  GGUF_EXPECT(&b, CZ_E_INVALID_OFFSETS);
}

static void test_gguf_duplicate_tensor(void) {
  buf b = {0};
  gguf_head(&b, 3, 2, 0);
  tinfo(&b, "w", 1, (uint64_t[]){8}, CZ_TYPE_F32, 0);
  tinfo(&b, "w", 1, (uint64_t[]){8}, CZ_TYPE_F32, 32);
  b_pad(&b, 32);
  b_data(&b, 64);
  GGUF_EXPECT(&b, CZ_E_DUPLICATE_TENSOR);
}

static void test_gguf_tensor_name_length(void) {
  buf b = {0};
  gguf_one(&b, "", 1, (uint64_t[]){8}, CZ_TYPE_F32, 0, 32);
  GGUF_EXPECT(&b, CZ_E_INVALID_TENSOR_INFO);
  char name[CZ_GGUF_MAX_NAME + 2];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = '\0'; /* 64 bytes: one too many */
  gguf_one(&b, name, 1, (uint64_t[]){8}, CZ_TYPE_F32, 0, 32);
  GGUF_EXPECT(&b, CZ_E_INVALID_TENSOR_INFO);
  name[CZ_GGUF_MAX_NAME] = '\0';
  gguf_one(&b, name, 1, (uint64_t[]){8}, CZ_TYPE_F32, 0, 32);
  GGUF_EXPECT(&b, CZ_E_OK);
  gguf_head(&b, 3, 1, 0); /* name length beyond the file */
  b_u64(&b, UINT64_MAX - 8);
  b_data(&b, 64);
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
}

static void test_gguf_n_dims(void) {
  buf b = {0};
  gguf_one(&b, "w", 5, (uint64_t[]){1, 1, 1, 1, 8}, CZ_TYPE_F32, 0, 32);
  GGUF_EXPECT(&b, CZ_E_INVALID_TENSOR_INFO);
  gguf_one(&b, "w", 0, NULL, CZ_TYPE_F32, 0, 32);
  GGUF_EXPECT(&b, CZ_E_INVALID_TENSOR_INFO);
  gguf_head(&b, 3, 1, 0); /* n_dims 2^32-1: must not read 4 G dimensions */
  tinfo(&b, "w", 0, NULL, CZ_TYPE_F32, 0);
  cz__put32(b.p + 24 + 8 + 1, UINT32_MAX);
  b_data(&b, 64);
  GGUF_EXPECT(&b, CZ_E_INVALID_TENSOR_INFO);
}

static void test_gguf_bad_ne(void) {
  buf b = {0};
  gguf_one(&b, "w", 2, (uint64_t[]){8, UINT64_MAX}, CZ_TYPE_F32, 0, 32); /* ne = -1 */
  GGUF_EXPECT(&b, CZ_E_INVALID_TENSOR_INFO);
  gguf_one(&b, "w", 2, (uint64_t[]){16, 1}, CZ_TYPE_Q8_0, 0, 64); /* half a block */
  GGUF_EXPECT(&b, CZ_E_INVALID_TENSOR_INFO);
}

static void test_gguf_size_overflow(void) {
  buf b = {0};
  /* elements fit in int64, bytes do not fit in uint64 (CVE-2026-33298 class) */
  gguf_one(&b, "w", 1, (uint64_t[]){UINT64_C(1) << 62}, CZ_TYPE_F32, 0, 32);
  GGUF_EXPECT(&b, CZ_E_SIZE_OVERFLOW);
  /* llama.cpp's DATA_MEM_SIZE_OVERFLOW: the element count itself overflows */
  gguf_one(&b, "w", 2, (uint64_t[]){UINT64_C(0x7FFFFFFFFFFFFFC0), 2}, CZ_TYPE_F32, 0, 32);
  GGUF_EXPECT(&b, CZ_E_SIZE_OVERFLOW);
}

static void test_gguf_zero_dim(void) {
  buf b = {0};
  /* a zero dimension makes an empty tensor, whatever the others say */
  gguf_one(&b, "w", 3, (uint64_t[]){8, 0, UINT64_C(1) << 62}, CZ_TYPE_F32, 0, 0);
  cz_model *m = NULL;
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, &m), CZ_E_OK);
  CHECK(m && m->tensors[0].nbytes == 0 && cz_tensor_nelements(&m->tensors[0]) == 0);
  cz_model_close(m);
  b_free(&b);
}

static void test_gguf_bad_type(void) {
  /* a removed id, the end of ggml's range, a safetensors-only id, a non-GGUF ggml type,
   * and all ones */
  static const uint32_t bad[] = {4, 31, CZ_TYPE_GGML_END, CZ_TYPE_U8, CZ_TYPE_Q8_1, UINT32_MAX};
  buf b = {0};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gguf_one(&b, "w", 1, (uint64_t[]){32}, bad[i], 0, 64);
    GGUF_EXPECT(&b, CZ_E_UNKNOWN_DTYPE);
  }
  gguf_one(&b, "w", 1, (uint64_t[]){32}, CZ_TYPE_Q8_0, 0, 34);
  GGUF_EXPECT(&b, CZ_E_OK);
}

static void test_gguf_tensor_beyond_end(void) {
  buf b = {0};
  gguf_one(&b, "w", 1, (uint64_t[]){8}, CZ_TYPE_F32, 0, 0); /* no data section at all */
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
  gguf_one(&b, "w", 1, (uint64_t[]){8}, CZ_TYPE_F32, 0, 31); /* one byte short */
  GGUF_EXPECT(&b, CZ_E_TRUNCATED);
}

static void test_gguf_bad_offsets(void) {
  buf b = {0};
  gguf_one(&b, "w", 1, (uint64_t[]){8}, CZ_TYPE_F32, UINT64_MAX - 31, 32); /* wraps */
  GGUF_EXPECT(&b, CZ_E_INVALID_OFFSETS);
  gguf_one(&b, "w", 1, (uint64_t[]){8}, CZ_TYPE_F32, 16, 64); /* not aligned */
  GGUF_EXPECT(&b, CZ_E_INVALID_OFFSETS);
}

static void test_gguf_overlap(void) {
  buf b = {0};
  gguf_head(&b, 3, 2, 0); /* two tensors on the same bytes */
  tinfo(&b, "a", 1, (uint64_t[]){8}, CZ_TYPE_F32, 0);
  tinfo(&b, "b", 1, (uint64_t[]){8}, CZ_TYPE_F32, 0);
  b_pad(&b, 32);
  b_data(&b, 32);
  GGUF_EXPECT(&b, CZ_E_INVALID_OFFSETS);
  gguf_head(&b, 3, 2, 0); /* partial overlap, infos out of order */
  tinfo(&b, "b", 1, (uint64_t[]){8}, CZ_TYPE_F32, 32);
  tinfo(&b, "a", 1, (uint64_t[]){16}, CZ_TYPE_F32, 0);
  b_pad(&b, 32);
  b_data(&b, 64);
  GGUF_EXPECT(&b, CZ_E_INVALID_OFFSETS);
}

/* ggml's placement rule: tensors in info order, each at the padded end of the previous one. */
static void test_gguf_offset_rule(void) {
  buf b = {0};
  gguf_head(&b, 3, 2, 0); /* in order, the second at the padded end of the first: accepted */
  tinfo(&b, "a", 1, (uint64_t[]){4}, CZ_TYPE_F32, 0);
  tinfo(&b, "b", 1, (uint64_t[]){8}, CZ_TYPE_F32, 32);
  b_pad(&b, 32);
  b_data(&b, 64);
  cz_model *m = NULL;
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, &m), CZ_E_OK);
  CHECK(m && strcmp(m->tensors[1].name, "b") == 0 && m->tensors[1].data == m->tensors[0].data + 32);
  cz_model_close(m);
  b_free(&b);
  gguf_head(&b, 3, 2, 0); /* the same bytes, infos in the other order: refused */
  tinfo(&b, "b", 1, (uint64_t[]){8}, CZ_TYPE_F32, 32);
  tinfo(&b, "a", 1, (uint64_t[]){8}, CZ_TYPE_F32, 0);
  b_pad(&b, 32);
  b_data(&b, 64);
  GGUF_EXPECT(&b, CZ_E_INVALID_OFFSETS);
  gguf_head(&b, 3, 2, 0); /* a gap of one alignment unit: refused */
  tinfo(&b, "a", 1, (uint64_t[]){8}, CZ_TYPE_F32, 0);
  tinfo(&b, "b", 1, (uint64_t[]){8}, CZ_TYPE_F32, 64);
  b_pad(&b, 32);
  b_data(&b, 96);
  GGUF_EXPECT(&b, CZ_E_INVALID_OFFSETS);
  gguf_head(&b, 3, 3, 0); /* empty tensors take no room: both sit at the end of "a" */
  tinfo(&b, "a", 1, (uint64_t[]){8}, CZ_TYPE_F32, 0);
  tinfo(&b, "e0", 2, (uint64_t[]){8, 0}, CZ_TYPE_F32, 32);
  tinfo(&b, "e1", 2, (uint64_t[]){0, 8}, CZ_TYPE_F32, 32);
  b_pad(&b, 32);
  b_data(&b, 32);
  GGUF_EXPECT(&b, CZ_E_OK);
  gguf_head(&b, 3, 2, 0); /* an empty tensor at the start of "a", which then starts at 0 */
  tinfo(&b, "e", 2, (uint64_t[]){8, 0}, CZ_TYPE_F32, 0);
  tinfo(&b, "a", 1, (uint64_t[]){8}, CZ_TYPE_F32, 0);
  b_pad(&b, 32);
  b_data(&b, 32);
  GGUF_EXPECT(&b, CZ_E_OK);
  gguf_head(&b, 3, 2, 0); /* an empty tensor inside "a": refused */
  tinfo(&b, "a", 1, (uint64_t[]){16}, CZ_TYPE_F32, 0);
  tinfo(&b, "e", 2, (uint64_t[]){8, 0}, CZ_TYPE_F32, 32);
  b_pad(&b, 32);
  b_data(&b, 64);
  GGUF_EXPECT(&b, CZ_E_INVALID_OFFSETS);
  gguf_small(&b); /* trailing bytes after the last tensor: accepted, as llama.cpp does */
  b_data(&b, 100);
  GGUF_EXPECT(&b, CZ_E_OK);
  gguf_head(&b, 3, 0, 1); /* no tensors, no padding at all: accepted */
  kv_str(&b, "general.architecture", "x");
  CHECK(b.n % 32 != 0);
  GGUF_EXPECT(&b, CZ_E_OK);
}

/* ==== layout =========================================================================== */

static void test_layout_kv(void) {
  cz_error e;
  cz_layout *l = cz_layout_new(CZ_FORMAT_GGUF);
  CHECK_EQ_INT(l->alignment, 32);
  CHECK_EQ_INT(cz_layout_set_u32(l, "a", 1, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_set_str(l, "b", "text", &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_set_u32(l, "a", 2, &e), CZ_E_OK); /* moves to the end */
  CHECK_EQ_INT(l->n_kv, 2);
  CHECK_EQ_STR(l->kv[0].key, "b");
  CHECK_EQ_STR(l->kv[1].key, "a");
  uint32_t v = 0;
  CHECK(cz_gguf_kv_u32(&l->kv[1], &v) && v == 2);
  const char *s;
  uint64_t len;
  CHECK(cz_gguf_kv_str(&l->kv[0], &s, &len) && len == 4 && memcmp(s, "text", 4) == 0);
  CHECK_EQ_INT(cz_layout_set_u32(l, "", 1, &e), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(cz_layout_set_meta(l, "k", "v", &e), CZ_E_INVALID_ARGUMENT);
  /* copy_kv replaces like set: a copied key moves to the end with the model's value */
  buf b = {0};
  gguf_small(&b);
  cz_model *m = NULL;
  CHECK_EQ_INT(open_bytes(b.p, b.n, 0, &m), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_set_u32(l, "general.file_type", 9, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_set_u32(l, "z", 9, &e), CZ_E_OK);
  if (m) CHECK_EQ_INT(cz_layout_copy_kv(l, m, &e), CZ_E_OK);
  CHECK_EQ_INT(l->n_kv, 5);
  CHECK_EQ_STR(l->kv[2].key, "z");
  CHECK_EQ_STR(l->kv[3].key, "general.architecture");
  CHECK_EQ_STR(l->kv[4].key, "general.file_type");
  CHECK(cz_gguf_kv_u32(&l->kv[4], &v) && v == 1);
  cz_model_close(m);
  b_free(&b);
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_set_u32(l, "c", 1, &e), CZ_E_INVALID_ARGUMENT); /* finished */
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_INVALID_ARGUMENT);
  cz_layout_free(l);
  l = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  CHECK_EQ_INT(cz_layout_set_u32(l, "a", 1, &e), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(cz_layout_set_meta(l, "k", "v", &e), CZ_E_OK);
  cz_layout_free(l);
  CHECK(cz_layout_new(0) == NULL);
}

static void test_layout_rejects(void) {
  cz_error e;
  cz_layout *g = cz_layout_new(CZ_FORMAT_GGUF), *st = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  int64_t ne[] = {32, 2};
  char name[CZ_GGUF_MAX_NAME + 2];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  CHECK_EQ_INT(cz_layout_add_tensor(g, name, CZ_TYPE_F32, 2, ne, &e), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(cz_layout_add_tensor(st, name, CZ_TYPE_F32, 2, ne, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_add_tensor(g, "", CZ_TYPE_F32, 2, ne, &e), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(cz_layout_add_tensor(g, "q", CZ_TYPE_Q8_0, 2, (int64_t[]){16, 2}, &e),
               CZ_E_INVALID_TENSOR_INFO);
  CHECK_EQ_INT(cz_layout_add_tensor(g, "u", CZ_TYPE_U8, 2, ne, &e), CZ_E_UNKNOWN_DTYPE);
  CHECK_EQ_INT(cz_layout_add_tensor(g, "x", (cz_type)4, 2, ne, &e), CZ_E_UNKNOWN_DTYPE);
  CHECK_EQ_INT(cz_layout_add_tensor(g, "n", CZ_TYPE_F32, 2, (int64_t[]){-1, 2}, &e),
               CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(cz_layout_add_tensor(g, "d", CZ_TYPE_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, &e),
               CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(cz_layout_add_tensor(g, "o", CZ_TYPE_F32, 2,
                                    (int64_t[]){INT64_C(1) << 62, 1}, &e),
               CZ_E_SIZE_OVERFLOW);
  CHECK_EQ_INT(cz_layout_add_tensor(st, "q", CZ_TYPE_Q8_0, 1, ne, &e), CZ_E_UNKNOWN_DTYPE);
  CHECK_EQ_INT(cz_layout_add_tensor(st, "f4", CZ_TYPE_F4, 1, (int64_t[]){3}, &e),
               CZ_E_MISALIGNED_SLICE);
  CHECK_EQ_INT(cz_layout_add_tensor(st, "__metadata__", CZ_TYPE_F32, 1, ne, &e),
               CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(cz_layout_add_tensor(st, "bad\xff", CZ_TYPE_F32, 1, ne, &e),
               CZ_E_INVALID_ARGUMENT);
  /* duplicates are found at finish */
  CHECK_EQ_INT(cz_layout_add_tensor(g, "w", CZ_TYPE_F32, 2, ne, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_add_tensor(g, "w", CZ_TYPE_F16, 2, ne, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_finish(g, &e), CZ_E_DUPLICATE_TENSOR);
  CHECK(strstr(e.msg, "'w'") != NULL);
  CHECK_EQ_INT(cz_layout_add_tensor(st, name, CZ_TYPE_F16, 2, ne, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_finish(st, &e), CZ_E_DUPLICATE_TENSOR);
  cz_layout_free(g);
  cz_layout_free(st);
  /* metadata that is not UTF-8 cannot go into JSON */
  st = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  CHECK_EQ_INT(cz_layout_set_meta(st, "k", "\xc0\xaf", &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_finish(st, &e), CZ_E_INVALID_ARGUMENT);
  cz_layout_free(st);
  /* write_frame before finish */
  g = cz_layout_new(CZ_FORMAT_GGUF);
  CHECK_EQ_INT(cz_layout_write_frame(g, -1, &e), CZ_E_INVALID_ARGUMENT);
  cz_layout_free(g);
}

/* GGUF offsets follow the alignment; a non-default alignment is declared in the file. */
static void test_layout_alignment(void) {
  cz_error e;
  cz_layout *l = cz_layout_new(CZ_FORMAT_GGUF);
  l->alignment = 64;
  CHECK_EQ_INT(cz_layout_set_str(l, "general.architecture", "x", &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_add_tensor(l, "a", CZ_TYPE_F32, 1, (int64_t[]){3}, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_add_tensor(l, "s", CZ_TYPE_F32, 0, NULL, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_add_tensor(l, "b", CZ_TYPE_Q8_0, 2, (int64_t[]){32, 3}, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_OK);
  CHECK_EQ_INT(l->n_kv, 2);
  CHECK_EQ_STR(l->kv[1].key, "general.alignment");
  CHECK_EQ_INT(l->header_len % 64, 0);
  CHECK_EQ_INT(l->tensors[0].file_offset, l->header_len);
  CHECK_EQ_INT(l->tensors[1].file_offset, l->header_len + 64);
  CHECK_EQ_INT(l->tensors[2].file_offset, l->header_len + 128);
  CHECK_EQ_INT(l->total_size, l->header_len + 128 + 128); /* 102 bytes padded to 128 */
  uint8_t data[3][128];
  memset(data, 0xab, sizeof data);
  const uint8_t *src[3] = {data[0], data[1], data[2]};
  char out[8192];
  write_layout(l, src, out, sizeof out);
  cz_model *m = NULL;
  CHECK_EQ_INT(cz_model_open(out, &m, &e), CZ_E_OK);
  if (m) {
    CHECK_EQ_INT(m->alignment, 64);
    CHECK_EQ_INT(m->tensors[1].n_dims, 1); /* a scalar is one dimension of 1 in GGUF */
    CHECK_EQ_INT(m->tensors[1].ne[0], 1);
    CHECK_EQ_INT(m->tensors[2].nbytes, 102);
    /* the padding between tensors is zeros */
    const uint8_t *p = (const uint8_t *)m->map;
    for (uint64_t i = l->tensors[0].file_offset + 12; i < l->tensors[1].file_offset; i++)
      CHECK_EQ_INT(p[i], 0);
    for (uint64_t i = l->tensors[2].file_offset + 102; i < l->total_size; i++) CHECK_EQ_INT(p[i], 0);
  }
  cz_model_close(m);
  unlink(out);
  cz_layout_free(l);
  /* an explicit general.alignment wins over l->alignment, and must be valid */
  l = cz_layout_new(CZ_FORMAT_GGUF);
  CHECK_EQ_INT(cz_layout_set_u32(l, "general.alignment", 128, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_add_tensor(l, "a", CZ_TYPE_F32, 1, (int64_t[]){3}, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_OK);
  CHECK_EQ_INT(l->header_len % 128, 0);
  CHECK_EQ_INT(l->total_size, l->header_len + 128);
  cz_layout_free(l);
  l = cz_layout_new(CZ_FORMAT_GGUF);
  CHECK_EQ_INT(cz_layout_set_u32(l, "general.alignment", 48, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_INVALID_ALIGNMENT);
  cz_layout_free(l);
  l = cz_layout_new(CZ_FORMAT_GGUF);
  l->alignment = 0;
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_INVALID_ALIGNMENT);
  cz_layout_free(l);
}

/* ==== files above 4 GiB ================================================================ */

/* A sparse file with a tensor above 4 GiB and one after it: offsets stay 64-bit all the
 * way (header, layout, mapping). Only the frame is written; the data are holes. */
static void large_file(cz_format f) {
  cz_error e;
  cz_layout *l = cz_layout_new(f);
  int64_t big = (INT64_C(1) << 30) + 8; /* F32: 4 GiB + 32 bytes */
  CHECK_EQ_INT(cz_layout_add_tensor(l, "big", CZ_TYPE_F32, 1, &big, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_add_tensor(l, "tail", CZ_TYPE_F32, 2, (int64_t[]){8, 2}, &e), CZ_E_OK);
  CHECK_EQ_INT(cz_layout_finish(l, &e), CZ_E_OK);
  CHECK(l->tensors[1].file_offset > (UINT64_C(1) << 32));
  char out[8192];
  tmp_name(out, sizeof out);
  int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK_EQ_INT(cz_layout_write_frame(l, fd, &e), CZ_E_OK);
  CHECK_EQ_INT(ftruncate(fd, (off_t)l->total_size), 0);
  uint8_t tail[64];
  memset(tail, 0x5a, sizeof tail);
  CHECK_EQ_INT(pwrite(fd, tail, 64, (off_t)l->tensors[1].file_offset), 64);
  close(fd);
  cz_model *m = NULL;
  CHECK_EQ_INT(cz_model_open(out, &m, &e), CZ_E_OK);
  if (m) {
    CHECK_EQ_INT(m->file_size, l->total_size);
    CHECK_EQ_INT(m->tensors[0].nbytes, (UINT64_C(1) << 32) + 32);
    const cz_tensor *t = cz_model_find(m, "tail");
    CHECK(t && (uint64_t)(t->data - (const uint8_t *)m->map) == l->tensors[1].file_offset);
    CHECK(t && t->nbytes == 64 && t->data[0] == 0x5a && t->data[63] == 0x5a);
  }
  cz_model_close(m);
  unlink(out);
  cz_layout_free(l);
}

static void test_large_gguf(void) { large_file(CZ_FORMAT_GGUF); }
static void test_large_safetensors(void) { large_file(CZ_FORMAT_SAFETENSORS); }

/* ==== mutations ======================================================================== */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void) { /* xorshift64: deterministic, so a failure reproduces */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Random damage to a valid file: a few bytes, sometimes a whole u64 set to an extreme.
 * Nothing may crash or read out of bounds (ASan), and what is accepted must be in bounds
 * (parse_mem checks). */
static void mutate(const buf *valid, cz_format f, int rounds) {
  const char *env = getenv("CZ_MUTATION_ROUNDS"); /* for a longer run by hand */
  if (env && atoi(env) > 0) rounds = atoi(env);
  uint8_t *p = malloc(valid->n);
  int accepted = 0;
  for (int r = 0; r < rounds; r++) {
    memcpy(p, valid->p, valid->n);
    size_t n = valid->n;
    int k = 1 + (int)(rng() % 4);
    for (int i = 0; i < k; i++) {
      size_t at = rng() % n;
      if (rng() % 4 == 0 && at + 8 <= n) {
        static const uint64_t extreme[] = {0, 1, UINT64_MAX, UINT64_MAX / 2, 1u << 31, 64};
        cz__put64(p + at, extreme[rng() % 6]);
      } else {
        p[at] = (uint8_t)rng();
      }
    }
    if (rng() % 8 == 0) n = rng() % n; /* and sometimes cut */
    accepted += parse_mem(p, n, f) == CZ_E_OK;
  }
  printf("# %d of %d mutated %s files accepted\n", accepted, rounds, cz_format_name(f));
  free(p);
}

static void test_gguf_mutations(void) {
  buf b = {0};
  gguf_rich(&b);
  mutate(&b, CZ_FORMAT_GGUF, 20000);
  b_free(&b);
  gguf_small(&b);
  mutate(&b, CZ_FORMAT_GGUF, 20000);
  b_free(&b);
}

static void test_st_mutations(void) {
  buf b = {0};
  st_file(&b, "{\"__metadata__\":{\"a\":\"b\"}," ST_SMALL_TENSORS "}", 19);
  CHECK_EQ_INT(parse_mem(b.p, b.n, CZ_FORMAT_SAFETENSORS), CZ_E_OK);
  mutate(&b, CZ_FORMAT_SAFETENSORS, 20000);
  b_free(&b);
}

/* ==== main ============================================================================= */

int main(void) {
  static const cz_test_case cases[] = {
      CZ_TEST(test_format_names),
      CZ_TEST(test_read_tiny_llama),
      CZ_TEST(test_read_ggml_quants),
      CZ_TEST(test_rewrite_tiny_llama),
      CZ_TEST(test_rewrite_ggml_quants),
      CZ_TEST(test_rewrite_imatrix),
      CZ_TEST(test_gguf_read_rich),
      CZ_TEST(test_gguf_roundtrip),
      CZ_TEST(test_st_roundtrip),
      CZ_TEST(test_st_header_bytes),
      CZ_TEST(test_st_truncated_prefixes),
      CZ_TEST(test_st_header_length),
      CZ_TEST(test_st_invalid_utf8),
      CZ_TEST(test_st_invalid_header),
      CZ_TEST(test_st_metadata),
      CZ_TEST(test_st_duplicate_key),
      CZ_TEST(test_st_unknown_dtype),
      CZ_TEST(test_st_limits),
      CZ_TEST(test_st_offsets_start),
      CZ_TEST(test_st_offsets_gap),
      CZ_TEST(test_st_offsets_overlap),
      CZ_TEST(test_st_file_order),
      CZ_TEST(test_st_size_mismatch),
      CZ_TEST(test_st_misaligned_slice),
      CZ_TEST(test_st_size_overflow),
      CZ_TEST(test_st_trailing_data),
      CZ_TEST(test_st_truncated),
      CZ_TEST(test_gguf_truncated_prefixes),
      CZ_TEST(test_gguf_bad_magic),
      CZ_TEST(test_gguf_version),
      CZ_TEST(test_gguf_huge_string),
      CZ_TEST(test_gguf_bad_key),
      CZ_TEST(test_gguf_bad_kv_type),
      CZ_TEST(test_gguf_duplicate_key),
      CZ_TEST(test_gguf_huge_tensor_count),
      CZ_TEST(test_gguf_huge_kv_count),
      CZ_TEST(test_gguf_huge_array_count),
      CZ_TEST(test_gguf_bad_alignment),
      CZ_TEST(test_gguf_duplicate_tensor),
      CZ_TEST(test_gguf_tensor_name_length),
      CZ_TEST(test_gguf_n_dims),
      CZ_TEST(test_gguf_bad_ne),
      CZ_TEST(test_gguf_size_overflow),
      CZ_TEST(test_gguf_zero_dim),
      CZ_TEST(test_gguf_bad_type),
      CZ_TEST(test_gguf_tensor_beyond_end),
      CZ_TEST(test_gguf_bad_offsets),
      CZ_TEST(test_gguf_overlap),
      CZ_TEST(test_gguf_offset_rule),
      CZ_TEST(test_layout_kv),
      CZ_TEST(test_layout_rejects),
      CZ_TEST(test_layout_alignment),
      CZ_TEST(test_large_gguf),
      CZ_TEST(test_large_safetensors),
      CZ_TEST(test_gguf_mutations),
      CZ_TEST(test_st_mutations),
  };
  tmp_setup();
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  tmp_cleanup();
  return rc;
}
