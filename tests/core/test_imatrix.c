/* test_imatrix: importance matrices in llama.cpp's GGUF and legacy .dat formats: the values
 * quantize uses (mean squared activation = in_sum2 / count, or the .dat values / ncall),
 * the metadata, and one test per rejection class of a damaged or hostile file. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH|FTW_PHYS */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "cz_imatrix.h"
#include "cz_model.h"
#include "cz_test.h"

static char tmpdir[256];

static void tmp_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", tmpdir, name);
}

static void golden_path(char *buf, size_t n) {
  snprintf(buf, n, "%s/tests/data/tiny-llama-imatrix.gguf", cz_test_srcdir());
}

static float f32_at(const cz_tensor *t, int64_t i) {
  float v;
  memcpy(&v, t->data + 4 * i, 4);
  return v;
}

static bool same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The golden imatrix: every entry is in_sum2 / counts, in float, as tools/quantize does. */
static void test_gguf_golden(void) {
  char path[512];
  golden_path(path, sizeof path);
  cz_imatrix *im = NULL;
  cz_model *m = NULL;
  cz_error err = {0};
  CHECK_EQ_INT(cz_imatrix_open(path, &im, &err), CZ_E_OK);
  CHECK_EQ_INT(cz_model_open(path, &m, &err), CZ_E_OK);
  if (!im || !m) goto done;
  CHECK_EQ_INT(cz_imatrix_get_format(im), CZ_IMATRIX_GGUF);
  CHECK_EQ_INT(cz_imatrix_n_entries(im), m->n_tensors / 2);
  CHECK_EQ_INT(cz_imatrix_chunk_count(im), 10);
  CHECK_EQ_INT(cz_imatrix_chunk_size(im), 512);
  CHECK_EQ_INT(cz_imatrix_n_datasets(im), 1);
  CHECK_EQ_STR(cz_imatrix_dataset(im, 0), "synthetic");
  CHECK_EQ_STR(cz_imatrix_label(im), path);
  size_t checked = 0, bad = 0;
  for (size_t i = 0; i < m->n_tensors; i++) {
    const cz_tensor *s = &m->tensors[i];
    const char *dot = strstr(s->name, ".in_sum2");
    if (!dot) continue;
    char name[256], cname[300];
    snprintf(name, sizeof name, "%.*s", (int)(dot - s->name), s->name);
    snprintf(cname, sizeof cname, "%s.counts", name);
    const cz_tensor *c = cz_model_find(m, cname);
    int64_t n = 0;
    const float *v = cz_imatrix_find(im, name, &n);
    CHECK(c != NULL && v != NULL);
    if (!c || !v) continue;
    CHECK_EQ_INT(n, cz_tensor_nelements(s));
    const int64_t ne0 = s->ne[0];
    for (int64_t j = 0; j < n; j++) {
      float count = f32_at(c, j / ne0);
      float want = count > 0 ? f32_at(s, j) / count : 1.0f;
      bad += !same_bits(v[j], want);
    }
    checked++;
  }
  CHECK_EQ_INT(checked, cz_imatrix_n_entries(im));
  CHECK_EQ_INT(bad, 0);
  int64_t n;
  CHECK(cz_imatrix_find(im, "blk.0.attn_norm.weight", &n) == NULL);
  CHECK(cz_imatrix_find(im, "blk.0.attn_q.weight.in_sum2", &n) == NULL);
  /* entries are listed sorted */
  for (size_t i = 1; i < cz_imatrix_n_entries(im); i++)
    CHECK(strcmp(cz_imatrix_entry_name(im, i - 1), cz_imatrix_entry_name(im, i)) < 0);
  json_t *sum = cz_imatrix_summary(im);
  CHECK_EQ_STR(json_string_value(json_object_get(sum, "format")), "gguf");
  CHECK_EQ_INT(json_integer_value(json_object_get(sum, "entries")), cz_imatrix_n_entries(im));
  json_decref(sum);
  cz_imatrix_set_label(im, "calib.gguf");
  CHECK_EQ_STR(cz_imatrix_label(im), "calib.gguf");
done:
  cz_imatrix_free(im);
  cz_model_close(m);
}

/* ---- legacy .dat ---- */

typedef struct {
  uint8_t *b;
  size_t n, cap;
} buf;

static void put(buf *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->b = realloc(b->b, b->cap);
  }
  memcpy(b->b + b->n, p, n);
  b->n += n;
}

static void put_i32(buf *b, int32_t v) { put(b, &v, 4); }

static void put_entry(buf *b, const char *name, int32_t ncall, const float *v, int32_t n) {
  put_i32(b, (int32_t)strlen(name));
  put(b, name, strlen(name));
  put_i32(b, ncall);
  put_i32(b, n);
  put(b, v, (size_t)n * 4);
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK_EQ_INT(fwrite(p, 1, n, f), n);
  fclose(f);
}

static cz_err_code open_bytes(const buf *b, const char *file, cz_imatrix **im, cz_error *err) {
  char path[512];
  tmp_path(path, sizeof path, file);
  write_file(path, b->b, b->n);
  *im = NULL;
  return cz_imatrix_open(path, im, err);
}

static void test_dat(void) {
  float a[8], c[3];
  for (int i = 0; i < 8; i++) a[i] = (float)(i + 1) * 0.37f;
  for (int i = 0; i < 3; i++) c[i] = 5.0f + (float)i;
  buf b = {0};
  put_i32(&b, 2);
  put_entry(&b, "blk.1.ffn_up.weight", 7, a, 8);
  put_entry(&b, "blk.0.attn_q.weight", 0, c, 3); /* ncall 0: values kept as they are */
  put_i32(&b, 42);
  put_i32(&b, 4);
  put(&b, "wiki", 4);
  cz_imatrix *im;
  cz_error err = {0};
  CHECK_EQ_INT(open_bytes(&b, "ok.dat", &im, &err), CZ_E_OK);
  if (im) {
    CHECK_EQ_INT(cz_imatrix_get_format(im), CZ_IMATRIX_DAT);
    CHECK_EQ_INT(cz_imatrix_n_entries(im), 2);
    CHECK_EQ_STR(cz_imatrix_entry_name(im, 0), "blk.0.attn_q.weight");
    CHECK_EQ_INT(cz_imatrix_chunk_count(im), 42);
    CHECK_EQ_INT(cz_imatrix_chunk_size(im), 0);
    CHECK_EQ_STR(cz_imatrix_dataset(im, 0), "wiki");
    int64_t n = 0;
    const float *v = cz_imatrix_find(im, "blk.1.ffn_up.weight", &n);
    CHECK_EQ_INT(n, 8);
    for (int i = 0; v && i < 8; i++) CHECK(same_bits(v[i], a[i] / 7.0f));
    v = cz_imatrix_find(im, "blk.0.attn_q.weight", &n);
    for (int i = 0; v && i < 3; i++) CHECK(same_bits(v[i], c[i]));
    cz_imatrix_free(im);
  }
  /* the trailer is optional, and so is its dataset name */
  buf t = {0};
  put_i32(&t, 1);
  put_entry(&t, "w", 1, a, 1);
  CHECK_EQ_INT(open_bytes(&t, "notrailer.dat", &im, &err), CZ_E_OK);
  cz_imatrix_free(im);
  put_i32(&t, 3);
  CHECK_EQ_INT(open_bytes(&t, "chunks.dat", &im, &err), CZ_E_OK);
  if (im) CHECK_EQ_INT(cz_imatrix_n_datasets(im), 0);
  cz_imatrix_free(im);
  free(t.b);
  free(b.b);
}

/* One damaged .dat per rejection class. */
static void test_dat_rejections(void) {
  float one = 1.0f, nan = NAN;
  static const struct {
    const char *what;
    cz_err_code rc;
  } cases[] = {
      {"empty", CZ_E_HEADER_TOO_SMALL},        {"no entries", CZ_E_INVALID_HEADER},
      {"count too large", CZ_E_TRUNCATED},     {"name past the end", CZ_E_TRUNCATED},
      {"zero-length name", CZ_E_INVALID_HEADER}, {"no values", CZ_E_INVALID_HEADER},
      {"values past the end", CZ_E_TRUNCATED}, {"NaN", CZ_E_NON_FINITE},
      {"duplicate", CZ_E_DUPLICATE_TENSOR},    {"not UTF-8", CZ_E_INVALID_UTF8},
      {"trailing bytes", CZ_E_TRAILING_DATA},  {"dataset past the end", CZ_E_TRUNCATED},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    buf b = {0};
    switch (k) {
      case 0: put(&b, "\0\0", 2); break;
      case 1: put_i32(&b, 0); put_i32(&b, 0); put_i32(&b, 0); put_i32(&b, 0); put_i32(&b, 0); break;
      case 2: put_i32(&b, 1000); put_entry(&b, "w", 1, &one, 1); break;
      case 3: put_i32(&b, 1); put_i32(&b, 50); put(&b, "abcdefghijklmnopq", 17); break;
      case 4: put_i32(&b, 1); put_i32(&b, 0); put_i32(&b, 1); put_i32(&b, 1); put(&b, &one, 4);
              put(&b, &one, 4); break;
      case 5: put_i32(&b, 1); put_i32(&b, 1); put(&b, "w", 1); put_i32(&b, 1); put_i32(&b, 0);
              put(&b, &one, 4); break;
      case 6: put_i32(&b, 1); put_i32(&b, 1); put(&b, "w", 1); put_i32(&b, 1); put_i32(&b, 9);
              put(&b, &one, 4); break;
      case 7: put_i32(&b, 1); put_entry(&b, "w", 1, &nan, 1); break;
      case 8: put_i32(&b, 2); put_entry(&b, "w", 1, &one, 1); put_entry(&b, "w", 1, &one, 1); break;
      case 9: put_i32(&b, 1); put_entry(&b, "w\xff", 1, &one, 1); break;
      case 10: put_i32(&b, 1); put_entry(&b, "w", 1, &one, 1); put_i32(&b, 1); put_i32(&b, 1);
               put(&b, "dx", 2); break;
      case 11: put_i32(&b, 1); put_entry(&b, "w", 1, &one, 1); put_i32(&b, 1); put_i32(&b, 50);
               put(&b, "data", 4); break;
    }
    cz_imatrix *im = NULL;
    cz_error err = {0};
    cz_err_code rc = open_bytes(&b, "bad.dat", &im, &err);
    if (rc != cases[k].rc) {
      printf("# %s: got %s (%s), want %s\n", cases[k].what, cz_err_name(rc), err.msg,
             cz_err_name(cases[k].rc));
      cz_test_failures++;
    }
    CHECK(im == NULL);
    cz_imatrix_free(im);
    free(b.b);
  }
}

/* ---- GGUF rejections: files written with cz_layout, KVs copied from the golden file ---- */

typedef struct {
  const char *name;
  cz_type type;
  int n_dims;
  int64_t ne[2];
  float fill;
} gt;

static cz_err_code open_gguf(const gt *ts, int n, bool with_kv, cz_error *err) {
  char gpath[512], path[512];
  golden_path(gpath, sizeof gpath);
  tmp_path(path, sizeof path, "bad.gguf");
  cz_model *g = NULL;
  cz_error e2 = {0};
  if (cz_model_open(gpath, &g, &e2)) return cz_err_set(err, CZ_E_INTERNAL, "golden");
  cz_layout *l = cz_layout_new(CZ_FORMAT_GGUF);
  bool ok = !with_kv || cz_layout_copy_kv(l, g, &e2) == CZ_E_OK;
  for (int i = 0; ok && i < n; i++) {
    int64_t ne[CZ_MAX_DIMS] = {ts[i].ne[0], ts[i].ne[1], 1, 1};
    ok = cz_layout_add_tensor(l, ts[i].name, ts[i].type, ts[i].n_dims, ne, &e2) == CZ_E_OK;
  }
  ok = ok && cz_layout_finish(l, &e2) == CZ_E_OK;
  int fd = ok ? open(path, O_RDWR | O_CREAT | O_TRUNC, 0644) : -1;
  ok = ok && fd >= 0 && cz_layout_write_frame(l, fd, &e2) == CZ_E_OK;
  for (int i = 0; ok && i < n; i++) {
    size_t nb = (size_t)l->tensors[i].nbytes;
    uint8_t *b = calloc(1, nb ? nb : 1);
    if (ts[i].type == CZ_TYPE_F32)
      for (size_t k = 0; k < nb / 4; k++) memcpy(b + 4 * k, &ts[i].fill, 4);
    ok = pwrite(fd, b, nb, (off_t)l->tensors[i].file_offset) == (ssize_t)nb;
    free(b);
  }
  if (fd >= 0) close(fd);
  cz_layout_free(l);
  cz_model_close(g);
  if (!ok) {
    printf("# test bug: %s\n", e2.msg);
    return cz_err_set(err, CZ_E_INTERNAL, "test bug");
  }
  cz_imatrix *im = NULL;
  cz_err_code rc = cz_imatrix_open(path, &im, err);
  cz_imatrix_free(im);
  return rc;
}

static void test_gguf_rejections(void) {
  cz_error err = {0};
  /* a well-formed one first, with two experts and a zero count */
  const gt good[] = {{"w.in_sum2", CZ_TYPE_F32, 2, {4, 2}, 6.0f},
                     {"w.counts", CZ_TYPE_F32, 2, {1, 2}, 3.0f}};
  CHECK_EQ_INT(open_gguf(good, 2, true, &err), CZ_E_OK);
  /* a model is not an importance matrix */
  char path[512];
  snprintf(path, sizeof path, "%s/tests/data/tiny-llama-f16.gguf", cz_test_srcdir());
  cz_imatrix *im = NULL;
  CHECK_EQ_INT(cz_imatrix_open(path, &im, &err), CZ_E_INVALID_METADATA);
  CHECK(strstr(err.msg, "imatrix.datasets") != NULL);
  CHECK_EQ_INT(open_gguf(good, 2, false, &err), CZ_E_INVALID_METADATA);
  const gt no_counts[] = {{"w.in_sum2", CZ_TYPE_F32, 1, {4, 1}, 1.0f}};
  CHECK_EQ_INT(open_gguf(no_counts, 1, true, &err), CZ_E_INVALID_TENSOR_INFO);
  const gt no_sums[] = {{"w.counts", CZ_TYPE_F32, 1, {1, 1}, 1.0f}};
  CHECK_EQ_INT(open_gguf(no_sums, 1, true, &err), CZ_E_INVALID_TENSOR_INFO);
  const gt f16[] = {{"w.in_sum2", CZ_TYPE_F16, 1, {4, 1}, 0},
                    {"w.counts", CZ_TYPE_F32, 1, {1, 1}, 1.0f}};
  CHECK_EQ_INT(open_gguf(f16, 2, true, &err), CZ_E_UNKNOWN_DTYPE);
  const gt ragged[] = {{"w.in_sum2", CZ_TYPE_F32, 1, {5, 1}, 1.0f},
                       {"w.counts", CZ_TYPE_F32, 1, {2, 1}, 1.0f}};
  CHECK_EQ_INT(open_gguf(ragged, 2, true, &err), CZ_E_SIZE_MISMATCH);
  const gt inf[] = {{"w.in_sum2", CZ_TYPE_F32, 1, {4, 1}, INFINITY},
                    {"w.counts", CZ_TYPE_F32, 1, {1, 1}, 1.0f}};
  CHECK_EQ_INT(open_gguf(inf, 2, true, &err), CZ_E_NON_FINITE);
  const gt none[] = {{"other", CZ_TYPE_F32, 1, {4, 1}, 1.0f}};
  CHECK_EQ_INT(open_gguf(none, 1, true, &err), CZ_E_INVALID_METADATA);
  /* a damaged container fails like a damaged model */
  char gpath[512], bad[512];
  golden_path(gpath, sizeof gpath);
  tmp_path(bad, sizeof bad, "cut.gguf");
  FILE *f = fopen(gpath, "rb");
  uint8_t head[3000];
  size_t n = f ? fread(head, 1, sizeof head, f) : 0;
  if (f) fclose(f);
  write_file(bad, head, n);
  CHECK_EQ_INT(cz_imatrix_open(bad, &im, &err), CZ_E_TRUNCATED);
  CHECK(cz_imatrix_open("/nonexistent/x.gguf", &im, &err) != CZ_E_OK);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb;
  (void)flag;
  (void)f;
  return remove(p);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "%s/cz_test_imatrix.XXXXXX",
           getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (mkdtemp(tmpdir) == NULL) {
    printf("Bail out! mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  static const cz_test_case cases[] = {
      CZ_TEST(test_gguf_golden),
      CZ_TEST(test_dat),
      CZ_TEST(test_dat_rejections),
      CZ_TEST(test_gguf_rejections),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}
