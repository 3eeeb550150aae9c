/* test_pipeline: the recipe -> plan -> run pipeline, checked against independent references:
 * llama-quantize's Q8_0 output (tests/data/tiny-llama-manifest.json), ggml's row quantizer
 * applied by hand, and int8 / error statistics recomputed here in double precision. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH|FTW_PHYS */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cz_model.h"
#include "cz_pipeline.h"
#include "cz_report.h"
#include "cz_sha256.h"
#include "cz_test.h"
#include "cz_type.h"

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static char tmpdir[256];

static void tmp_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", tmpdir, name);
}

static void input_gguf_path(char *buf, size_t n) {
  snprintf(buf, n, "%s/tests/data/tiny-llama-f16.gguf", cz_test_srcdir());
}

static bool contains(const char *hay, const char *needle) {
  return hay != NULL && needle != NULL && strstr(hay, needle) != NULL;
}

#define CHECK_CONTAINS(hay, needle)                                                       \
  do {                                                                                    \
    const char *_h = (hay), *_n = (needle);                                               \
    if (!contains(_h, _n)) {                                                              \
      cz_test_failures++;                                                                 \
      printf("# %s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,             \
             _h ? _h : "(null)", _n ? _n : "(null)");                                     \
    }                                                                                     \
  } while (0)

/* |got - want| <= rel * |want| (both finite) */
#define CHECK_CLOSE(got, want, rel)                                                       \
  do {                                                                                    \
    double _g = (got), _w = (want);                                                       \
    if (!(isfinite(_g) && isfinite(_w) && fabs(_g - _w) <= (rel) * fabs(_w))) {         \
      cz_test_failures++;                                                                 \
      printf("# %s:%d: %s ~= %s failed: %.17g vs %.17g\n", __FILE__, __LINE__, #got,     \
             #want, _g, _w);                                                              \
    }                                                                                     \
  } while (0)

static void sha256_hex_of(const void *data, size_t n, char hex[65]) {
  cz_sha256 c;
  uint8_t d[32];
  cz_sha256_init(&c);
  cz_sha256_update(&c, data, n);
  cz_sha256_final(&c, d);
  cz_sha256_hex(d, hex);
}

/* Whole file into a heap buffer (NULL on error). */
static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
  if (b && n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  if (b) *len = (size_t)n;
  return b;
}

static uint64_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

static json_t *parse_json(const char *text) {
  json_error_t je;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
  if (!j) printf("# test bug: bad JSON %s: %s\n", text, je.text);
  return j;
}

/* A job from recipe text to an output file, kept together so that tests can look at every
 * stage. Modes: exec on 2 threads, or every task on this thread in reverse order. */
typedef enum { RUN_EXEC2, RUN_REVERSE } run_mode;

typedef struct {
  cz_recipe *recipe;
  cz_run *run;
  json_t *report;
  cz_error err;
  cz_err_code rc;        /* first failure, CZ_E_OK when everything ran */
  const char *stage;     /* where rc came from */
} job;

static void job_free(job *j) {
  json_decref(j->report);
  cz_run_free(j->run);
  cz_recipe_free(j->recipe);
  memset(j, 0, sizeof *j);
}

static cz_err_code run_job(const cz_model *in, const char *recipe_text, const char *out_path,
                           run_mode mode, job *j) {
  memset(j, 0, sizeof *j);
  json_t *body = parse_json(recipe_text);
  j->stage = "parse";
  j->rc = cz_recipe_parse(body, NULL, &j->recipe, &j->err);
  json_decref(body);
  if (j->rc) return j->rc;
  j->stage = "plan";
  if ((j->rc = cz_run_plan(j->recipe, in, "00112233", &j->run, &j->err))) return j->rc;
  int fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    j->stage = "open";
    return j->rc = cz_err_set(&j->err, CZ_E_IO, "open %s: %s", out_path, strerror(errno));
  }
  j->stage = "begin";
  if ((j->rc = cz_run_begin(j->run, fd, &j->err)) == CZ_E_OK) {
    j->stage = "run";
    if (mode == RUN_EXEC2) {
      j->rc = cz_run_exec(j->run, 2, &j->err);
    } else {
      for (size_t i = cz_run_n_tasks(j->run); i-- > 0 && j->rc == CZ_E_OK;)
        j->rc = cz_run_task(j->run, i, &j->err);
    }
  }
  close(fd);
  if (j->rc == CZ_E_OK) j->report = cz_run_report(j->run, 0.5);
  return j->rc;
}

/* CHECK that the job ran; prints the failure. */
static bool job_ok(const job *j) {
  if (j->rc == CZ_E_OK) return true;
  cz_test_failures++;
  printf("# job failed at %s: %s: %s\n", j->stage, cz_err_name(j->rc), j->err.msg);
  return false;
}

static const json_t *report_tensor(const json_t *report, const char *name) {
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(report, "tensors"), i, t) {
    if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0) return t;
  }
  return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* a safetensors input written with cz_layout                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
  const char *name;
  cz_type type;           /* F32, F16 or BF16 */
  int n_dims;
  int64_t shape[CZ_MAX_DIMS]; /* safetensors order: outermost first */
  float *values;          /* the floats the file holds, after rounding to type */
  int64_t n;
} st_tensor;

static uint64_t rng_state;
static uint32_t rng_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 11);
}
/* uniform in [-1, 1) */
static float rng_unit(void) { return (float)((double)rng_u32() / 2147483648.0 - 1.0); }

static int64_t st_nelem(const st_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->n_dims; d++) n *= t->shape[d];
  return n;
}

/* Fill values with rows of different magnitudes (one scale per row) and one all-zero row,
 * then round them to the tensor's type so that values[] is exactly what the file holds. */
static void st_fill(st_tensor *t, uint64_t seed) {
  t->n = st_nelem(t);
  t->values = calloc((size_t)(t->n ? t->n : 1), sizeof(float));
  rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
  int64_t cols = t->n_dims ? t->shape[t->n_dims - 1] : 1;
  for (int64_t i = 0; i < t->n; i++) {
    int64_t row = cols ? i / cols : 0;
    float mag = ldexpf(1.0f, (int)(row % 9) - 4);
    t->values[i] = row == 3 ? 0.0f : rng_unit() * mag;
  }
  for (int64_t i = 0; i < t->n; i++) {
    if (t->type == CZ_TYPE_F16) t->values[i] = cz_fp16_to_fp32(cz_fp32_to_fp16(t->values[i]));
    if (t->type == CZ_TYPE_BF16) t->values[i] = cz_bf16_to_fp32(cz_fp32_to_bf16(t->values[i]));
  }
}

static void st_encode(const st_tensor *t, uint8_t *out) {
  for (int64_t i = 0; i < t->n; i++) {
    if (t->type == CZ_TYPE_F32) {
      memcpy(out + 4 * i, &t->values[i], 4);
    } else {
      uint16_t h = t->type == CZ_TYPE_F16 ? cz_fp32_to_fp16(t->values[i])
                                          : cz_fp32_to_bf16(t->values[i]);
      memcpy(out + 2 * i, &h, 2);
    }
  }
}

static bool write_safetensors(const char *path, const st_tensor *ts, int n) {
  cz_error err = {0};
  cz_layout *l = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  bool ok = l && cz_layout_set_meta(l, "format", "pt", &err) == CZ_E_OK;
  for (int i = 0; ok && i < n; i++) {
    int64_t ne[CZ_MAX_DIMS];
    for (int d = 0; d < ts[i].n_dims; d++) ne[d] = ts[i].shape[ts[i].n_dims - 1 - d];
    ok = cz_layout_add_tensor(l, ts[i].name, ts[i].type, ts[i].n_dims, ne, &err) == CZ_E_OK;
  }
  ok = ok && cz_layout_finish(l, &err) == CZ_E_OK;
  int fd = ok ? open(path, O_RDWR | O_CREAT | O_TRUNC, 0644) : -1;
  ok = ok && fd >= 0 && cz_layout_write_frame(l, fd, &err) == CZ_E_OK;
  for (int i = 0; ok && i < n; i++) {
    size_t nb = (size_t)l->tensors[i].nbytes;
    uint8_t *buf = malloc(nb ? nb : 1);
    st_encode(&ts[i], buf);
    ok = pwrite(fd, buf, nb, (off_t)l->tensors[i].file_offset) == (ssize_t)nb;
    free(buf);
  }
  if (fd >= 0) close(fd);
  if (!ok) {
    printf("# test bug: cannot write %s: %s\n", path, err.msg);
    cz_test_failures++;
  }
  cz_layout_free(l);
  return ok;
}

/* The model used by the safetensors tests: three 2-D weights of each float type, a 1-D norm,
 * a weight whose rows (40) are not a multiple of 32, and a 3-D weight. */
enum { ST_N = 6 };
static st_tensor st_model[ST_N] = {
    {"blk.0.ffn_up.weight", CZ_TYPE_F32, 2, {64, 96}, NULL, 0},
    {"blk.0.attn_q.weight", CZ_TYPE_F16, 2, {64, 96}, NULL, 0},
    {"blk.0.attn_k.weight", CZ_TYPE_BF16, 2, {64, 96}, NULL, 0},
    {"blk.0.attn_norm.weight", CZ_TYPE_F32, 1, {96}, NULL, 0},
    {"blk.0.odd.weight", CZ_TYPE_F32, 2, {16, 40}, NULL, 0},
    {"blk.0.ffn_exps.weight", CZ_TYPE_F16, 3, {2, 8, 64}, NULL, 0},
};

static cz_model *open_st_model(const char *file) {
  char path[512];
  tmp_path(path, sizeof path, file);
  for (int i = 0; i < ST_N; i++)
    if (st_model[i].values == NULL) st_fill(&st_model[i], (uint64_t)i + 1);
  if (!write_safetensors(path, st_model, ST_N)) return NULL;
  cz_model *m = NULL;
  cz_error err = {0};
  if (cz_model_open(path, &m, &err) != CZ_E_OK) {
    printf("# cannot reopen %s: %s\n", path, err.msg);
    cz_test_failures++;
    return NULL;
  }
  return m;
}

static cz_model *open_output(const char *path) {
  cz_model *m = NULL;
  cz_error err = {0};
  if (cz_model_open(path, &m, &err) != CZ_E_OK) {
    printf("# output %s does not open: %s: %s\n", path, cz_err_name(err.code), err.msg);
    cz_test_failures++;
    return NULL;
  }
  return m;
}

/* ------------------------------------------------------------------------------------------ */
/* golden: Q8_0 of tiny-llama against llama-quantize                                           */
/* ------------------------------------------------------------------------------------------ */

static const char *const Q8_GGUF = "{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"}],"
                                   "\"output\":{\"format\":\"gguf\"}}";

static json_t *manifest_q8_0_run(json_t **root) {
  char path[512];
  snprintf(path, sizeof path, "%s/tests/data/tiny-llama-manifest.json", cz_test_srcdir());
  json_error_t je;
  *root = json_load_file(path, 0, &je);
  if (!*root) {
    printf("# cannot load %s: %s\n", path, je.text);
    return NULL;
  }
  size_t i;
  json_t *run;
  json_array_foreach(json_object_get(*root, "runs"), i, run) {
    if (json_is_string(json_object_get(run, "ftype")) &&
        strcmp(json_string_value(json_object_get(run, "ftype")), "Q8_0") == 0 &&
        json_array_size(json_object_get(run, "options")) == 0)
      return run;
  }
  printf("# no Q8_0 run in %s\n", path);
  return NULL;
}

static void test_golden_q8_0(void) {
  char in_path[512], out_path[512];
  input_gguf_path(in_path, sizeof in_path);
  tmp_path(out_path, sizeof out_path, "golden-q8_0.gguf");
  cz_model *in = NULL, *out = NULL;
  cz_error err = {0};
  json_t *root = NULL;
  job j = {0};
  if (cz_model_open(in_path, &in, &err) != CZ_E_OK) {
    printf("# cannot open %s: %s\n", in_path, err.msg);
    cz_test_failures++;
    return;
  }
  json_t *mrun = manifest_q8_0_run(&root);
  CHECK(mrun != NULL);
  if (mrun == NULL) goto done;
  run_job(in, Q8_GGUF, out_path, RUN_EXEC2, &j);
  if (!job_ok(&j)) goto done;
  CHECK_EQ_INT(cz_run_output_format(j.run), CZ_FORMAT_GGUF);
  CHECK_EQ_INT(file_size(out_path), cz_run_output_size(j.run));
  if (!(out = open_output(out_path))) goto done;
  CHECK_EQ_INT(out->format, CZ_FORMAT_GGUF);
  CHECK_EQ_INT(out->file_size, cz_run_output_size(j.run));

  /* every tensor: type, shape, size and sha256 of the data bytes */
  json_t *mt = json_object_get(mrun, "tensors");
  CHECK_EQ_INT(out->n_tensors, json_array_size(mt));
  size_t i, mismatched = 0;
  json_t *e;
  json_array_foreach(mt, i, e) {
    const char *name = json_string_value(json_object_get(e, "name"));
    const cz_tensor *t = cz_model_find(out, name);
    if (t == NULL) {
      printf("# output lacks tensor %s\n", name);
      cz_test_failures++;
      continue;
    }
    char hex[65];
    sha256_hex_of(t->data, (size_t)t->nbytes, hex);
    const char *want_type = json_string_value(json_object_get(e, "type"));
    const char *want_sha = json_string_value(json_object_get(e, "sha256"));
    bool same = strcmp(cz_type_get(t->type)->name, want_type) == 0 &&
                strcmp(hex, want_sha) == 0 &&
                (json_int_t)t->nbytes == json_integer_value(json_object_get(e, "nbytes"));
    json_t *ne = json_object_get(e, "ne");
    same = same && (size_t)t->n_dims == json_array_size(ne);
    for (int d = 0; same && d < t->n_dims; d++)
      same = t->ne[d] == json_integer_value(json_array_get(ne, (size_t)d));
    if (!same) {
      mismatched++;
      printf("# %s: got %s %s, llama-quantize %s %s\n", name, cz_type_get(t->type)->name, hex,
             want_type, want_sha);
    }
  }
  CHECK_EQ_INT(mismatched, 0);

  /* metadata: every input KV carried over byte for byte (file_type is the one that changes) */
  for (size_t k = 0; k < in->n_kv; k++) {
    const cz_gguf_kv *a = &in->kv[k];
    long o = cz_gguf_find_kv(out, a->key);
    if (o < 0) {
      printf("# output lacks KV %s\n", a->key);
      cz_test_failures++;
      continue;
    }
    if (strcmp(a->key, "general.file_type") == 0) continue;
    const cz_gguf_kv *b = &out->kv[o];
    if (a->type != b->type || a->raw_len != b->raw_len || memcmp(a->raw, b->raw, a->raw_len)) {
      printf("# KV %s differs (type %d/%d, %zu/%zu bytes)\n", a->key, (int)a->type,
             (int)b->type, a->raw_len, b->raw_len);
      cz_test_failures++;
    }
  }
  uint32_t v = 0;
  long k = cz_gguf_find_kv(out, "general.file_type");
  CHECK(k >= 0 && cz_gguf_kv_u32(&out->kv[k], &v));
  CHECK_EQ_INT(v, 7);
  CHECK_EQ_INT(v, json_integer_value(json_object_get(mrun, "file_type")));
  v = 0;
  k = cz_gguf_find_kv(out, "general.quantization_version");
  CHECK(k >= 0 && cz_gguf_kv_u32(&out->kv[k], &v));
  CHECK_EQ_INT(v, 2);
  CHECK_EQ_INT(out->n_kv, in->n_kv + 1);
  CHECK_EQ_INT(out->alignment, in->alignment);

  /* the dry-run plan agrees with what was written */
  json_t *plan = cz_run_plan_json(j.run);
  CHECK_EQ_INT(json_integer_value(json_object_get(plan, "bytes")), cz_run_output_size(j.run));
  CHECK_EQ_STR(json_string_value(json_object_get(plan, "format")), "gguf");
  json_decref(plan);
done:
  job_free(&j);
  cz_model_close(out);
  cz_model_close(in);
  json_decref(root);
}

/* ------------------------------------------------------------------------------------------ */
/* order independence                                                                          */
/* ------------------------------------------------------------------------------------------ */

static void check_same_file(const char *a, const char *b) {
  size_t la = 0, lb = 0;
  uint8_t *pa = slurp(a, &la), *pb = slurp(b, &lb);
  CHECK(pa != NULL && pb != NULL);
  if (pa && pb) {
    CHECK_EQ_INT(la, lb);
    size_t n = la < lb ? la : lb, first = SIZE_MAX, bad = 0;
    for (size_t i = 0; i < n; i++)
      if (pa[i] != pb[i] && bad++ == 0) first = i;
    if (bad) {
      printf("# %s and %s: %zu bytes differ, first at %zu\n", a, b, bad, first);
      cz_test_failures++;
    }
  }
  free(pa);
  free(pb);
}

static void test_order_independence(void) {
  char in_path[512], a[512], b[512];
  input_gguf_path(in_path, sizeof in_path);
  tmp_path(a, sizeof a, "order-exec.gguf");
  tmp_path(b, sizeof b, "order-reverse.gguf");
  cz_model *in = NULL;
  cz_error err = {0};
  if (cz_model_open(in_path, &in, &err) != CZ_E_OK) {
    printf("# cannot open %s: %s\n", in_path, err.msg);
    cz_test_failures++;
    return;
  }
  job ja, jb;
  run_job(in, Q8_GGUF, a, RUN_EXEC2, &ja);
  run_job(in, Q8_GGUF, b, RUN_REVERSE, &jb);
  if (job_ok(&ja) && job_ok(&jb)) {
    CHECK(cz_run_n_tasks(jb.run) > 1);
    check_same_file(a, b);
  }
  job_free(&ja);
  job_free(&jb);

  /* and an int8 safetensors job (two outputs per tensor, header with metadata) */
  cz_model *st = open_st_model("order-in.safetensors");
  const char *int8 = "{\"steps\":[{\"op\":\"quantize\",\"type\":\"int8\"}],"
                     "\"output\":{\"format\":\"safetensors\"}}";
  tmp_path(a, sizeof a, "order-exec.safetensors");
  tmp_path(b, sizeof b, "order-reverse.safetensors");
  if (st) {
    run_job(st, int8, a, RUN_EXEC2, &ja);
    run_job(st, int8, b, RUN_REVERSE, &jb);
    if (job_ok(&ja) && job_ok(&jb)) check_same_file(a, b);
    job_free(&ja);
    job_free(&jb);
  }
  cz_model_close(st);
  cz_model_close(in);
}

/* ------------------------------------------------------------------------------------------ */
/* the input's digest handed over after the run (the CLI hashes while the pipeline runs)        */
/* ------------------------------------------------------------------------------------------ */

/* Plan with plan_sha, run on 2 threads, then (late_sha != NULL) cz_run_set_input_sha256;
 * returns the report (NULL on failure, counted). */
static json_t *sha_job(const cz_model *in, const char *recipe_text, const char *out_path,
                       const char *plan_sha, const char *late_sha) {
  job j = {0};
  json_t *body = parse_json(recipe_text), *report = NULL;
  cz_error err = {0};
  int fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  cz_err_code rc = cz_recipe_parse(body, NULL, &j.recipe, &err);
  json_decref(body);
  if (!rc) rc = cz_run_plan(j.recipe, in, plan_sha, &j.run, &err);
  if (!rc && late_sha && cz_run_output_format(j.run) == CZ_FORMAT_SAFETENSORS)
    /* the header is not final before the run */
    CHECK_EQ_INT(cz_run_set_input_sha256(j.run, late_sha, &err), CZ_E_INVALID_ARGUMENT);
  if (!rc) rc = fd < 0 ? CZ_E_IO : cz_run_begin(j.run, fd, &err);
  if (!rc) rc = cz_run_exec(j.run, 2, &err);
  if (!rc && late_sha) {
    /* not a digest: refused, nothing touched */
    CHECK_EQ_INT(cz_run_set_input_sha256(j.run, "00112233", &err), CZ_E_INVALID_ARGUMENT);
    char upper[65];
    snprintf(upper, sizeof upper, "%s", late_sha);
    upper[0] = 'A';
    CHECK_EQ_INT(cz_run_set_input_sha256(j.run, upper, &err), CZ_E_INVALID_ARGUMENT);
    rc = cz_run_set_input_sha256(j.run, late_sha, &err);
  }
  if (fd >= 0) close(fd);
  if (rc) {
    printf("# %s: %s: %s\n", out_path, cz_err_name(rc), err.msg);
    cz_test_failures++;
  } else {
    report = cz_run_report(j.run, 0.5);
  }
  job_free(&j);
  return report;
}

static void test_late_sha256(void) {
  cz_model *st = open_st_model("late-sha-in.safetensors");
  if (!st) return;
  char in_path[512], hex[65];
  size_t len = 0;
  tmp_path(in_path, sizeof in_path, "late-sha-in.safetensors");
  uint8_t *bytes = slurp(in_path, &len);
  CHECK(bytes != NULL);
  if (!bytes) goto done;
  sha256_hex_of(bytes, len, hex);
  free(bytes);
  /* direct path (header written by cz_run_begin), whole-tensor mode (written by the last
   * task), and a GGUF output (the digest only in the report) */
  static const char *const recipes[] = {
      "{\"steps\":[{\"op\":\"quantize\",\"type\":\"int8\"}],\"output\":{\"format\":\"safetensors\"}}",
      "{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5},{\"op\":\"quantize\",\"type\":\"int8\"}],"
      "\"output\":{\"format\":\"safetensors\"}}",
      "{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"}],\"output\":{\"format\":\"gguf\"}}",
  };
  for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++) {
    char a[512], b[512], name[64];
    snprintf(name, sizeof name, "late-sha-%zu-known.out", i);
    tmp_path(a, sizeof a, name);
    snprintf(name, sizeof name, "late-sha-%zu-late.out", i);
    tmp_path(b, sizeof b, name);
    json_t *ra = sha_job(st, recipes[i], a, hex, NULL);
    json_t *rb = sha_job(st, recipes[i], b, CZ_RUN_SHA256_PENDING, hex);
    if (ra && rb) {
      check_same_file(a, b); /* the same bytes as with the digest known at plan time */
      CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(rb, "input"), "sha256")), hex);
      if (i < 2) {
        cz_model *out = open_output(b);
        const char *v = NULL;
        for (size_t k = 0; out && k < out->n_meta; k++)
          if (!strcmp(out->meta_keys[k], "compressd.source_sha256")) v = out->meta_values[k];
        CHECK_EQ_STR(v, hex);
        cz_model_close(out);
      }
    }
    json_decref(ra);
    json_decref(rb);
  }
  /* no digest planned: nothing to replace */
  {
    char c[512];
    tmp_path(c, sizeof c, "late-sha-none.out");
    job j = {0};
    cz_error err = {0};
    json_t *body = parse_json(recipes[0]);
    int fd = open(c, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (!cz_recipe_parse(body, NULL, &j.recipe, &err) &&
        !cz_run_plan(j.recipe, st, NULL, &j.run, &err) && fd >= 0 &&
        !cz_run_begin(j.run, fd, &err) && !cz_run_exec(j.run, 2, &err))
      CHECK_EQ_INT(cz_run_set_input_sha256(j.run, hex, &err), CZ_E_INVALID_ARGUMENT);
    else
      CHECK(!"the run without a digest failed");
    if (fd >= 0) close(fd);
    json_decref(body);
    job_free(&j);
  }
done:
  cz_model_close(st);
}

/* ------------------------------------------------------------------------------------------ */
/* safetensors -> q8_0 GGUF                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void test_safetensors_q8_0(void) {
  char out_path[512];
  tmp_path(out_path, sizeof out_path, "st-q8_0.gguf");
  cz_model *in = open_st_model("st-q8-in.safetensors"), *out = NULL;
  job j = {0};
  if (!in) return;
  run_job(in, Q8_GGUF, out_path, RUN_EXEC2, &j);
  if (!job_ok(&j) || !(out = open_output(out_path))) goto done;
  CHECK_EQ_INT(out->format, CZ_FORMAT_GGUF);
  CHECK_EQ_INT(out->n_tensors, ST_N);
  CHECK_EQ_INT(out->file_size, cz_run_output_size(j.run));
  for (int i = 0; i < ST_N; i++) {
    const st_tensor *s = &st_model[i];
    const cz_tensor *t = cz_model_find(out, s->name);
    if (t == NULL) {
      printf("# output lacks %s\n", s->name);
      cz_test_failures++;
      continue;
    }
    /* GGUF ne is the safetensors shape reversed */
    CHECK_EQ_INT(t->n_dims, s->n_dims);
    for (int d = 0; d < s->n_dims; d++) {
      if (t->ne[d] != s->shape[s->n_dims - 1 - d]) {
        printf("# %s: ne[%d] = %lld, want %lld\n", s->name, d, (long long)t->ne[d],
               (long long)s->shape[s->n_dims - 1 - d]);
        cz_test_failures++;
      }
    }
    int64_t cols = s->shape[s->n_dims - 1];
    bool quantize = s->n_dims >= 2 && cols % 32 == 0;
    const json_t *rt = report_tensor(j.report, s->name);
    CHECK(rt != NULL);
    const char *note = json_string_value(json_object_get(rt, "note"));
    if (quantize) {
      CHECK_EQ_INT(t->type, CZ_TYPE_Q8_0);
      size_t nb = (size_t)(s->n / 32) * sizeof(cz_block_q8_0);
      cz_block_q8_0 *want = malloc(nb);
      for (int64_t r = 0; r < s->n / cols; r++)
        cz_quantize_row_q8_0(s->values + r * cols, want + r * (cols / 32), cols);
      CHECK_EQ_INT(t->nbytes, nb);
      if (t->nbytes == nb && memcmp(t->data, want, nb) != 0) {
        printf("# %s: q8_0 bytes differ from cz_quantize_row_q8_0 on the input rows\n", s->name);
        cz_test_failures++;
      }
      free(want);
      CHECK(note == NULL);
      CHECK_EQ_STR(json_string_value(json_object_get(rt, "output_type")), "q8_0");
    } else {
      /* copied unchanged, with the reason in the report */
      CHECK_EQ_INT(t->type, s->type);
      CHECK_EQ_INT(t->nbytes, (uint64_t)s->n * 4);
      uint8_t *want = malloc((size_t)s->n * 4);
      st_encode(s, want);
      CHECK(t->nbytes == (uint64_t)s->n * 4 && memcmp(t->data, want, (size_t)s->n * 4) == 0);
      free(want);
      CHECK(note != NULL);
      if (s->n_dims < 2)
        CHECK_CONTAINS(note, "1-D");
      else
        CHECK_CONTAINS(note, "multiple of the block size 32");
      CHECK_EQ_STR(json_string_value(json_object_get(rt, "output_type")),
                   cz_type_get(s->type)->name);
    }
  }
  /* general.file_type / quantization_version are set even without input KVs */
  uint32_t v = 0;
  long k = cz_gguf_find_kv(out, "general.file_type");
  CHECK(k >= 0 && cz_gguf_kv_u32(&out->kv[k], &v) && v == 7);
  k = cz_gguf_find_kv(out, "general.quantization_version");
  CHECK(k >= 0 && cz_gguf_kv_u32(&out->kv[k], &v) && v == 2);
done:
  job_free(&j);
  cz_model_close(out);
  cz_model_close(in);
}

/* ------------------------------------------------------------------------------------------ */
/* int8 per channel -> safetensors                                                             */
/* ------------------------------------------------------------------------------------------ */

/* round half away from zero, in double */
static double round_away(double v) { return v < 0 ? -floor(-v + 0.5) : floor(v + 0.5); }

static void test_safetensors_int8(void) {
  char out_path[512];
  tmp_path(out_path, sizeof out_path, "st-int8.safetensors");
  cz_model *in = open_st_model("st-int8-in.safetensors"), *out = NULL;
  job j = {0};
  if (!in) return;
  run_job(in,
          "{\"steps\":[{\"op\":\"quantize\",\"type\":\"int8\",\"granularity\":\"channel\"}],"
          "\"output\":{\"format\":\"safetensors\"}}",
          out_path, RUN_EXEC2, &j);
  if (!job_ok(&j) || !(out = open_output(out_path))) goto done;
  CHECK_EQ_INT(out->format, CZ_FORMAT_SAFETENSORS);
  CHECK_EQ_INT(out->file_size, cz_run_output_size(j.run));
  int64_t total = 0, exact = 0, off_by_one = 0, worse = 0, err_bad = 0, scale_bad = 0;
  int n_out_tensors = 0;
  for (int i = 0; i < ST_N; i++) {
    const st_tensor *s = &st_model[i];
    const cz_tensor *t = cz_model_find(out, s->name);
    if (t == NULL) {
      printf("# output lacks %s\n", s->name);
      cz_test_failures++;
      continue;
    }
    n_out_tensors++;
    const json_t *rt = report_tensor(j.report, s->name);
    CHECK(rt != NULL);
    CHECK_EQ_INT(t->n_dims, s->n_dims);
    for (int d = 0; d < s->n_dims; d++) CHECK_EQ_INT(t->ne[d], s->shape[s->n_dims - 1 - d]);
    if (s->n_dims < 2) {
      CHECK_EQ_INT(t->type, s->type);
      uint8_t *want = malloc((size_t)s->n * 4);
      st_encode(s, want);
      CHECK(t->nbytes == (uint64_t)s->n * 4 && memcmp(t->data, want, t->nbytes) == 0);
      free(want);
      CHECK_CONTAINS(json_string_value(json_object_get(rt, "note")), "1-D");
      continue;
    }
    CHECK_EQ_STR(json_string_value(json_object_get(rt, "output_type")), "int8");
    CHECK_EQ_INT(t->type, CZ_TYPE_I8);
    int64_t cols = s->shape[s->n_dims - 1], rows = s->n / cols;
    char sname[128];
    snprintf(sname, sizeof sname, "%s_scale", s->name);
    const cz_tensor *sc = cz_model_find(out, sname);
    if (sc == NULL) {
      printf("# output lacks %s\n", sname);
      cz_test_failures++;
      continue;
    }
    n_out_tensors++;
    /* compressed-tensors' weight_scale: F32 of shape [rows, 1] */
    CHECK_EQ_INT(sc->type, CZ_TYPE_F32);
    CHECK_EQ_INT(sc->n_dims, 2);
    CHECK_EQ_INT(sc->ne[0], 1);
    CHECK_EQ_INT(sc->ne[1], rows);
    if (t->nbytes != (uint64_t)s->n || sc->nbytes != (uint64_t)rows * 4) {
      printf("# %s: sizes %llu / %llu\n", s->name, (unsigned long long)t->nbytes,
             (unsigned long long)sc->nbytes);
      cz_test_failures++;
      continue;
    }
    for (int64_t r = 0; r < rows; r++) {
      const float *x = s->values + r * cols;
      double amax = 0;
      for (int64_t c = 0; c < cols; c++) amax = fmax(amax, fabs((double)x[c]));
      float want_scale = (float)(amax / 127.0);
      float got_scale;
      memcpy(&got_scale, sc->data + 4 * r, 4);
      if (memcmp(&got_scale, &want_scale, 4) != 0) {
        if (scale_bad++ < 5)
          printf("# %s row %lld: scale %.9g, want %.9g\n", s->name, (long long)r,
                 (double)got_scale, (double)want_scale);
      }
      double d = (double)want_scale;
      for (int64_t c = 0; c < cols; c++) {
        int q = (int8_t)t->data[r * cols + c];
        double want_q = d != 0 ? round_away((double)x[c] / d) : 0.0;
        total++;
        if (q == (int)want_q) exact++;
        else if (fabs(q - want_q) <= 1) off_by_one++;
        else if (worse++ < 5)
          printf("# %s[%lld,%lld]: q %d, want %g\n", s->name, (long long)r, (long long)c, q,
                 want_q);
        /* dequantized error: half a step, up to the float rounding of x * (1/scale) */
        double e = fabs((double)x[c] - (double)q * (double)got_scale);
        double bound = (double)got_scale / 2 * (1 + 1e-6) + fabs((double)x[c]) * 0x1p-21 + 1e-37;
        if (e > bound && err_bad++ < 5)
          printf("# %s[%lld,%lld]: |x - q*scale| = %.9g > %.9g (x %.9g, q %d, scale %.9g)\n",
                 s->name, (long long)r, (long long)c, e, bound, (double)x[c], q,
                 (double)got_scale);
        if (q < -127 || q > 127) worse++;
      }
    }
  }
  CHECK_EQ_INT(out->n_tensors, n_out_tensors);
  printf("# int8: %lld elements, %lld equal to the double-precision rounding, %lld off by one\n",
         (long long)total, (long long)exact, (long long)off_by_one);
  CHECK_EQ_INT(scale_bad, 0);
  CHECK_EQ_INT(worse, 0);
  CHECK_EQ_INT(err_bad, 0);
  CHECK(total > 0 && exact * 1000 >= total * 999); /* the vast majority exactly */
  /* input __metadata__ carried over, provenance added */
  bool has_format = false, has_recipe = false;
  for (size_t m = 0; m < out->n_meta; m++) {
    has_format |= !strcmp(out->meta_keys[m], "format") && !strcmp(out->meta_values[m], "pt");
    has_recipe |= !strcmp(out->meta_keys[m], "compressd.recipe");
  }
  CHECK(has_format);
  CHECK(has_recipe);
done:
  job_free(&j);
  cz_model_close(out);
  cz_model_close(in);
}

/* ------------------------------------------------------------------------------------------ */
/* report numbers                                                                              */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
  double r2, e2, mx;
} ref_stat;

/* x = input as float, y = q8_0 bytes decoded with cz_dequantize_row_q8_0 */
static ref_stat q8_stat(const cz_tensor *tin, const cz_tensor *tout) {
  int64_t n = cz_tensor_nelements(tin), cols = tin->ne[0];
  float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
  cz_block_q8_0 *q = malloc((size_t)tout->nbytes);
  memcpy(q, tout->data, (size_t)tout->nbytes);
  for (int64_t i = 0; i < n; i++) {
    if (tin->type == CZ_TYPE_F32) {
      memcpy(&x[i], tin->data + 4 * i, 4);
    } else {
      uint16_t h;
      memcpy(&h, tin->data + 2 * i, 2);
      x[i] = tin->type == CZ_TYPE_F16 ? cz_fp16_to_fp32(h) : cz_bf16_to_fp32(h);
    }
  }
  for (int64_t r = 0; r < n / cols; r++)
    cz_dequantize_row_q8_0(q + r * (cols / 32), y + r * cols, cols);
  ref_stat s = {0, 0, 0};
  for (int64_t i = 0; i < n; i++) {
    double d = (double)x[i] - (double)y[i];
    s.r2 += (double)x[i] * (double)x[i];
    s.e2 += d * d;
    s.mx = fmax(s.mx, fabs(d));
  }
  free(x);
  free(y);
  free(q);
  return s;
}

static void check_report(const json_t *report, const cz_model *in, const cz_model *out,
                         uint64_t out_size) {
  uint64_t sum_in = 0, sum_out = 0, elems = 0;
  int checked = 0, transformed = 0;
  for (size_t i = 0; i < in->n_tensors; i++) {
    const cz_tensor *tin = &in->tensors[i];
    const cz_tensor *tout = cz_model_find(out, tin->name);
    const json_t *rt = report_tensor(report, tin->name);
    if (!tout || !rt) {
      printf("# %s missing from the output or the report\n", tin->name);
      cz_test_failures++;
      continue;
    }
    int64_t n = cz_tensor_nelements(tin);
    json_int_t bin = json_integer_value(json_object_get(rt, "bytes_in"));
    json_int_t bout = json_integer_value(json_object_get(rt, "bytes_out"));
    CHECK_EQ_INT(bin, tin->nbytes);
    CHECK_EQ_INT(bout, tout->nbytes);
    CHECK_CLOSE(json_number_value(json_object_get(rt, "bpw")), 8.0 * (double)tout->nbytes / (double)n,
                1e-12);
    sum_in += (uint64_t)bin;
    sum_out += (uint64_t)bout;
    elems += (uint64_t)n;
    const json_t *rel = json_object_get(rt, "rel_l2"), *snr = json_object_get(rt, "snr_db"),
                 *mx = json_object_get(rt, "max_abs_err");
    if (tout->type != CZ_TYPE_Q8_0) {
      /* copied: no error at all; SNR is infinite, which JSON spells null */
      CHECK(json_is_number(rel) && json_number_value(rel) == 0);
      CHECK(json_is_null(snr));
      CHECK(json_is_number(mx) && json_number_value(mx) == 0);
      continue;
    }
    transformed++;
    ref_stat s = q8_stat(tin, tout);
    if (s.e2 == 0) continue;
    CHECK(json_is_number(rel) && json_is_number(snr) && json_is_number(mx));
    CHECK_CLOSE(json_number_value(rel), sqrt(s.e2 / s.r2), 1e-9);
    CHECK_CLOSE(json_number_value(snr), 10.0 * log10(s.r2 / s.e2), 1e-9);
    CHECK_CLOSE(json_number_value(mx), s.mx, 1e-9);
    checked++;
  }
  CHECK(checked > 0);
  const json_t *tot = json_object_get(report, "totals");
  CHECK_EQ_INT(json_integer_value(json_object_get(tot, "bytes_in")), sum_in);
  CHECK_EQ_INT(json_integer_value(json_object_get(tot, "bytes_out")), sum_out);
  CHECK_CLOSE(json_number_value(json_object_get(tot, "ratio")), (double)sum_in / (double)sum_out,
              1e-12);
  CHECK_CLOSE(json_number_value(json_object_get(tot, "bpw")), 8.0 * (double)sum_out / (double)elems,
              1e-12);
  CHECK_EQ_INT(json_integer_value(json_object_get(tot, "file_bytes_in")), in->file_size);
  CHECK_EQ_INT(json_integer_value(json_object_get(tot, "file_bytes_out")), out_size);
  CHECK_EQ_INT(json_integer_value(json_object_get(tot, "tensors")), in->n_tensors);
  CHECK_EQ_INT(json_integer_value(json_object_get(tot, "tensors_transformed")), transformed);
  CHECK_EQ_INT(json_array_size(json_object_get(report, "tensors")), in->n_tensors);
  CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(report, "output"), "bytes")),
               out_size);
  CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(report, "input"), "sha256")),
               "00112233");
}

static void test_report_numbers(void) {
  char in_path[512], out_path[512];
  input_gguf_path(in_path, sizeof in_path);
  tmp_path(out_path, sizeof out_path, "report-q8_0.gguf");
  cz_model *in = NULL, *out = NULL;
  cz_error err = {0};
  job j = {0};
  /* the tiny llama (F16 input; ffn tensors span several 64 Ki chunks) */
  if (cz_model_open(in_path, &in, &err) != CZ_E_OK) {
    printf("# cannot open %s: %s\n", in_path, err.msg);
    cz_test_failures++;
    return;
  }
  run_job(in, Q8_GGUF, out_path, RUN_EXEC2, &j);
  if (job_ok(&j) && (out = open_output(out_path)))
    check_report(j.report, in, out, cz_run_output_size(j.run));
  job_free(&j);
  cz_model_close(out);
  cz_model_close(in);

  /* the safetensors model (F32, F16, BF16 inputs) */
  in = open_st_model("report-in.safetensors");
  out = NULL;
  tmp_path(out_path, sizeof out_path, "report-st.gguf");
  if (in) {
    run_job(in, Q8_GGUF, out_path, RUN_EXEC2, &j);
    if (job_ok(&j) && (out = open_output(out_path)))
      check_report(j.report, in, out, cz_run_output_size(j.run));
    job_free(&j);
  }
  cz_model_close(out);
  cz_model_close(in);
}

/* ------------------------------------------------------------------------------------------ */
/* recipe validation                                                                           */
/* ------------------------------------------------------------------------------------------ */

static void test_recipe_validation(void) {
  static const struct {
    const char *json;
    cz_err_code code;
    const char *field; /* the message must name it */
  } cases[] = {
      {"[]", CZ_E_INVALID_RECIPE, "object"},
      {"\"q8_0\"", CZ_E_INVALID_RECIPE, "object"},
      {"{}", CZ_E_INVALID_RECIPE, "steps"},
      {"{\"steps\":[]}", CZ_E_INVALID_RECIPE, "steps"},
      {"{\"steps\":{}}", CZ_E_INVALID_RECIPE, "steps"},
      {"{\"steps\":[5]}", CZ_E_INVALID_RECIPE, "steps[0]"},
      {"{\"steps\":[{\"type\":\"q8_0\"}]}", CZ_E_INVALID_RECIPE, "steps[0].op"},
      {"{\"steps\":[{\"op\":\"distill\",\"ratio\":0.5}]}", CZ_E_UNKNOWN_METHOD, "steps[0].op"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q9_9\"}]}", CZ_E_INVALID_PARAMETER,
       "steps[0].type"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_1\"}]}", CZ_E_INVALID_PARAMETER,
       "steps[0].type"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\",\"bits\":8}]}",
       CZ_E_INVALID_PARAMETER, "steps[0].bits"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"int8\",\"granularity\":\"tensor\"}]}",
       CZ_E_INVALID_PARAMETER, "steps[0].granularity"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"int8\",\"group_size\":64}]}",
       CZ_E_INVALID_PARAMETER, "steps[0].group_size"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"},{\"op\":\"quantize\","
       "\"type\":\"bogus\"}]}",
       CZ_E_INVALID_PARAMETER, "steps[1].type"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"}],\"name\":\"x\"}",
       CZ_E_INVALID_RECIPE, "name"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"}],\"output\":{\"format\":\"onnx\"}}",
       CZ_E_INVALID_RECIPE, "output.format"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"}],\"output\":{\"format\":7}}",
       CZ_E_INVALID_RECIPE, "output.format"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"}],\"output\":\"gguf\"}",
       CZ_E_INVALID_RECIPE, "output"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"}],\"output\":{\"fmt\":\"gguf\"}}",
       CZ_E_INVALID_RECIPE, "output.fmt"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"}],"
       "\"output\":{\"format\":\"safetensors\"}}",
       CZ_E_INVALID_RECIPE, "output.format"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"int8\"}],\"output\":{\"format\":\"gguf\"}}",
       CZ_E_INVALID_RECIPE, "output.format"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *body = parse_json(cases[i].json);
    cz_recipe *r = NULL;
    cz_error err = {0};
    cz_err_code rc = cz_recipe_parse(body, NULL, &r, &err);
    if (rc != cases[i].code || !contains(err.msg, cases[i].field) || err.code != rc) {
      printf("# %s: got %s \"%s\", want %s naming %s\n", cases[i].json, cz_err_name(rc),
             err.msg, cz_err_name(cases[i].code), cases[i].field);
      cz_test_failures++;
    }
    if (rc == CZ_E_OK) cz_recipe_free(r);
    json_decref(body);
  }

  /* too many steps */
  json_t *steps = json_array();
  for (int i = 0; i <= CZ_MAX_STEPS; i++)
    json_array_append_new(steps, json_pack("{s:s, s:s}", "op", "quantize", "type", "q8_0"));
  json_t *body = json_pack("{s:o}", "steps", steps);
  cz_recipe *r = NULL;
  cz_error err = {0};
  CHECK_EQ_INT(cz_recipe_parse(body, NULL, &r, &err), CZ_E_INVALID_RECIPE);
  CHECK_CONTAINS(err.msg, "steps");
  json_decref(body);

  /* accepted: the caller's extra keys, case-insensitive ggml names, normalized output */
  static const char *const extra[] = {"name", "model_id", NULL};
  body = parse_json("{\"steps\":[{\"op\":\"quantize\",\"type\":\"Q8_0\"}],\"name\":\"x\","
                    "\"model_id\":\"m\"}");
  r = NULL;
  CHECK_EQ_INT(cz_recipe_parse(body, extra, &r, &err), CZ_E_OK);
  json_decref(body);
  if (r) {
    CHECK_EQ_INT(cz_recipe_format(r), 0);
    cz_recipe_set_default_format(r, CZ_FORMAT_GGUF);
    CHECK_EQ_INT(cz_recipe_format(r), CZ_FORMAT_GGUF);
    json_t *norm = cz_recipe_normalized(r);
    char *s = json_dumps(norm, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_EQ_STR(s, "{\"output\":{\"format\":\"gguf\"},\"steps\":[{\"op\":\"quantize\","
                    "\"type\":\"q8_0\"}]}");
    free(s);
    json_decref(norm);
    cz_recipe_free(r);
  }
  body = parse_json("{\"steps\":[{\"op\":\"quantize\",\"type\":\"int8\"}]}");
  r = NULL;
  CHECK_EQ_INT(cz_recipe_parse(body, NULL, &r, &err), CZ_E_OK);
  json_decref(body);
  if (r) {
    json_t *norm = cz_recipe_normalized(r);
    json_t *st0 = json_array_get(json_object_get(norm, "steps"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(st0, "type")), "int8");
    CHECK_EQ_STR(json_string_value(json_object_get(st0, "granularity")), "channel");
    json_decref(norm);
    cz_recipe_free(r);
  }
}

/* ------------------------------------------------------------------------------------------ */
/* non-finite input, cancel, progress                                                          */
/* ------------------------------------------------------------------------------------------ */

static void check_non_finite(const char *recipe, cz_type type, float bad, const char *file) {
  st_tensor ts[2] = {
      {"blk.0.good.weight", CZ_TYPE_F32, 2, {8, 64}, NULL, 0},
      {"blk.0.bad.weight", type, 2, {16, 64}, NULL, 0},
  };
  st_fill(&ts[0], 11);
  st_fill(&ts[1], 12);
  ts[1].values[5 * 64 + 7] = bad;
  char in_path[512], out_path[600];
  tmp_path(in_path, sizeof in_path, file);
  snprintf(out_path, sizeof out_path, "%s.out", in_path);
  cz_model *in = NULL;
  cz_error err = {0};
  if (write_safetensors(in_path, ts, 2) && cz_model_open(in_path, &in, &err) == CZ_E_OK) {
    job j;
    run_job(in, recipe, out_path, RUN_EXEC2, &j);
    CHECK_EQ_INT(j.rc, CZ_E_NON_FINITE);
    CHECK_EQ_STR(j.stage, "run");
    CHECK_CONTAINS(j.err.msg, "blk.0.bad.weight");
    CHECK(j.report == NULL);
    job_free(&j);
  } else {
    printf("# cannot open %s: %s\n", in_path, err.msg);
    cz_test_failures++;
  }
  cz_model_close(in);
  free(ts[0].values);
  free(ts[1].values);
}

static void test_non_finite(void) {
  check_non_finite(Q8_GGUF, CZ_TYPE_F32, NAN, "nan-f32.safetensors");
  check_non_finite(Q8_GGUF, CZ_TYPE_F16, INFINITY, "inf-f16.safetensors");
  check_non_finite("{\"steps\":[{\"op\":\"quantize\",\"type\":\"int8\"}]}", CZ_TYPE_BF16,
                   -INFINITY, "inf-bf16.safetensors");
}

static void test_cancel(void) {
  char in_path[512], out_path[512];
  input_gguf_path(in_path, sizeof in_path);
  tmp_path(out_path, sizeof out_path, "cancel.gguf");
  cz_model *in = NULL;
  cz_recipe *r = NULL;
  cz_run *run = NULL;
  cz_error err = {0};
  json_t *body = parse_json(Q8_GGUF);
  int fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (cz_model_open(in_path, &in, &err) || cz_recipe_parse(body, NULL, &r, &err) ||
      cz_run_plan(r, in, NULL, &run, &err) || fd < 0 || cz_run_begin(run, fd, &err)) {
    printf("# setup failed: %s\n", err.msg);
    cz_test_failures++;
  } else {
    cz_run_cancel(run);
    size_t n = cz_run_n_tasks(run), canceled = 0;
    CHECK(n > 0);
    for (size_t i = 0; i < n; i++) {
      cz_error e = {0};
      canceled += cz_run_task(run, i, &e) == CZ_E_CANCELED && e.code == CZ_E_CANCELED;
    }
    CHECK_EQ_INT(canceled, n);
    cz_error e = {0};
    CHECK_EQ_INT(cz_run_exec(run, 2, &e), CZ_E_CANCELED);
    CHECK_EQ_INT(e.code, CZ_E_CANCELED);
    uint64_t td, tt, bd, bt;
    cz_run_progress(run, &td, &tt, &bd, &bt);
    CHECK_EQ_INT(td, 0);
    CHECK_EQ_INT(bd, 0);
    CHECK_EQ_INT(tt, in->n_tensors);
  }
  if (fd >= 0) close(fd);
  json_decref(body);
  cz_run_free(run);
  cz_recipe_free(r);
  cz_model_close(in);
}

static void test_progress(void) {
  char in_path[512], out_path[512];
  input_gguf_path(in_path, sizeof in_path);
  cz_model *in = NULL;
  cz_error err = {0};
  if (cz_model_open(in_path, &in, &err) != CZ_E_OK) {
    printf("# cannot open %s: %s\n", in_path, err.msg);
    cz_test_failures++;
    return;
  }
  uint64_t in_bytes = 0;
  for (size_t i = 0; i < in->n_tensors; i++) in_bytes += in->tensors[i].nbytes;
  for (int mode = RUN_EXEC2; mode <= RUN_REVERSE; mode++) {
    tmp_path(out_path, sizeof out_path, mode == RUN_EXEC2 ? "progress-a.gguf" : "progress-b.gguf");
    job j;
    run_job(in, Q8_GGUF, out_path, (run_mode)mode, &j);
    if (job_ok(&j)) {
      uint64_t td, tt, bd, bt;
      cz_run_progress(j.run, &td, &tt, &bd, &bt);
      CHECK_EQ_INT(tt, in->n_tensors);
      CHECK_EQ_INT(td, tt);
      CHECK_EQ_INT(bt, in_bytes);
      CHECK_EQ_INT(bd, bt);
    }
    job_free(&j);
  }
  /* a plan that has not run reports nothing done */
  json_t *body = parse_json(Q8_GGUF);
  cz_recipe *r = NULL;
  cz_run *run = NULL;
  if (cz_recipe_parse(body, NULL, &r, &err) == CZ_E_OK &&
      cz_run_plan(r, in, NULL, &run, &err) == CZ_E_OK) {
    uint64_t td, tt, bd, bt;
    cz_run_progress(run, &td, &tt, &bd, &bt);
    CHECK_EQ_INT(td, 0);
    CHECK_EQ_INT(bd, 0);
    CHECK_EQ_INT(tt, in->n_tensors);
    CHECK_EQ_INT(bt, in_bytes);
  } else {
    CHECK(0);
  }
  cz_run_free(run);
  cz_recipe_free(r);
  json_decref(body);
  cz_model_close(in);
}

/* A tensor above the pipeline's per-task size (2^22 elements) is split into row ranges run
 * as separate tasks: the file, the statistics and the progress must not notice. */
static void test_split_tensor(void) {
  st_tensor ts[2] = {
      {"blk.0.big.weight", CZ_TYPE_F16, 2, {4100, 1024}, NULL, 0},
      {"blk.0.small.weight", CZ_TYPE_F32, 2, {8, 64}, NULL, 0},
  };
  st_fill(&ts[0], 31);
  st_fill(&ts[1], 32);
  char in_path[512], a[512], b[512];
  tmp_path(in_path, sizeof in_path, "split-in.safetensors");
  tmp_path(a, sizeof a, "split-exec.gguf");
  tmp_path(b, sizeof b, "split-reverse.gguf");
  cz_model *in = NULL, *out = NULL;
  cz_error err = {0};
  job ja = {0}, jb = {0};
  if (!write_safetensors(in_path, ts, 2) || cz_model_open(in_path, &in, &err) != CZ_E_OK) {
    printf("# setup: %s\n", err.msg);
    cz_test_failures++;
    goto done;
  }
  run_job(in, Q8_GGUF, a, RUN_EXEC2, &ja);
  run_job(in, Q8_GGUF, b, RUN_REVERSE, &jb);
  if (!job_ok(&ja) || !job_ok(&jb)) goto done;
  CHECK(cz_run_n_tasks(ja.run) > in->n_tensors); /* the big tensor was split */
  check_same_file(a, b);
  for (int k = 0; k < 2; k++) {
    uint64_t td, tt, bd, bt;
    cz_run_progress(k ? jb.run : ja.run, &td, &tt, &bd, &bt);
    CHECK_EQ_INT(tt, 2);
    CHECK_EQ_INT(td, tt);
    CHECK_EQ_INT(bt, in->tensors[0].nbytes + in->tensors[1].nbytes);
    CHECK_EQ_INT(bd, bt);
  }
  if (!(out = open_output(a))) goto done;
  const cz_tensor *t = cz_model_find(out, "blk.0.big.weight");
  size_t nb = (size_t)(ts[0].n / 32) * sizeof(cz_block_q8_0);
  cz_block_q8_0 *want = malloc(nb);
  for (int64_t r = 0; r < 4100; r++)
    cz_quantize_row_q8_0(ts[0].values + r * 1024, want + r * (1024 / 32), 1024);
  CHECK(t != NULL && t->type == CZ_TYPE_Q8_0 && t->nbytes == nb &&
        memcmp(t->data, want, nb) == 0);
  free(want);
  check_report(ja.report, in, out, cz_run_output_size(ja.run));
done:
  job_free(&ja);
  job_free(&jb);
  cz_model_close(out);
  cz_model_close(in);
  free(ts[0].values);
  free(ts[1].values);
}

/* ------------------------------------------------------------------------------------------ */
/* degenerate shapes (run in a child: a crash must fail this test, not end the program)        */
/* ------------------------------------------------------------------------------------------ */

/* Child: exit 0 when the job either refuses the input cleanly or writes a file that opens;
 * 3 when the output is broken, 2 on a setup problem. A sanitizer report exits with 1, a
 * crash is a signal. */
static int empty_tensor_child(const char *recipe, const int64_t shape[2], const char *file) {
  /* safetensors allows a 0 in a shape; such a tensor holds no data */
  st_tensor ts[2] = {
      {"blk.0.ok.weight", CZ_TYPE_F32, 2, {4, 64}, NULL, 0},
      {"blk.0.empty.weight", CZ_TYPE_F32, 2, {shape[0], shape[1]}, NULL, 0},
  };
  for (int i = 0; i < 2; i++) st_fill(&ts[i], (uint64_t)i + 20);
  char in_path[512], out_path[600];
  tmp_path(in_path, sizeof in_path, file);
  snprintf(out_path, sizeof out_path, "%s.out", in_path);
  cz_model *in = NULL;
  cz_error err = {0};
  if (!write_safetensors(in_path, ts, 2) || cz_model_open(in_path, &in, &err) != CZ_E_OK) {
    printf("# setup: %s\n", err.msg);
    return 2;
  }
  job j;
  cz_err_code rc = run_job(in, recipe, out_path, RUN_EXEC2, &j);
  int status = 0;
  if (rc != CZ_E_OK) {
    printf("# (refused at %s: %s: %s)\n", j.stage, cz_err_name(rc), j.err.msg);
  } else {
    cz_model *out = NULL;
    if (cz_model_open(out_path, &out, &err) != CZ_E_OK) {
      printf("# output does not open: %s\n", err.msg);
      status = 3;
    }
    cz_model_close(out);
  }
  job_free(&j);
  cz_model_close(in);
  fflush(stdout);
  return status;
}

static void test_empty_tensors(void) {
  static const char *const recipes[] = {
      "{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"}]}",
      "{\"steps\":[{\"op\":\"quantize\",\"type\":\"int8\"}]}",
  };
  static const int64_t shapes[][2] = {{0, 64}, {64, 0}};
  for (int k = 0; k < 2; k++) {
    for (int sh = 0; sh < 2; sh++) {
      fflush(stdout);
      fflush(stderr);
      pid_t pid = fork();
      if (pid == 0) {
        char file[64];
        snprintf(file, sizeof file, "empty-%d-%d.safetensors", k, sh);
        _exit(empty_tensor_child(recipes[k], shapes[sh], file));
      }
      int status = 0;
      CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("# %s on a tensor of shape [%lld, %lld]: child %s %d%s\n", recipes[k],
               (long long)shapes[sh][0], (long long)shapes[sh][1],
               WIFSIGNALED(status) ? "killed by signal" : "exited with",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
               WIFEXITED(status) && WEXITSTATUS(status) == 1 ? " (sanitizer report on stderr)"
                                                              : "");
        cz_test_failures++;
      }
    }
  }
}

/* ------------------------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* cz_errstat_add on each instruction set the CPU has (scalar, AVX2, AVX-512; vectorised,
 * partial sums) against one serial long-double pass: the five sums to
 * 1e-12 relative, the maximum, the count and the non-finite count exactly; with NaN and Inf in
 * the reference and in the decoded values, lengths that leave tails, and odd offsets. */
static void test_errstat_sums(void) {
  enum { N = 20011 };
  static float x[N], y[N];
  uint64_t st = 0x853C49E6748FEA9Bull;
  for (int i = 0; i < N; i++) {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    const double u = (double)(st >> 11) / 9007199254740992.0 - 0.5;
    x[i] = (float)(u * (i % 997 == 0 ? 300 : 1));
    y[i] = x[i] + (float)(u * u * 1e-2);
  }
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) {
      x[17] = NAN, x[4000] = INFINITY, x[4001] = -INFINITY, x[N - 1] = NAN;
      y[9001] = INFINITY; /* a decoded Inf: the error sum and maximum become Inf */
    }
    static const int offs[] = {0, 1, 3, 7}, lens[] = {N - 7, 8, 9, 15, 1, 0};
    for (size_t o = 0; o < sizeof offs / sizeof offs[0]; o++)
      for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        const int off = offs[o], n = lens[l] <= N - off ? lens[l] : N - off;
        long double r = 0, e = 0, dp = 0, g = 0;
        double m = 0.25; /* a maximum carried over from an earlier chunk */
        uint64_t bad = 0;
        for (int i = off; i < off + n; i++) {
          if (!isfinite(x[i])) {
            bad++;
            continue;
          }
          const double d = (double)x[i] - y[i];
          r += (long double)x[i] * x[i];
          e += (long double)d * d;
          dp += (long double)x[i] * y[i];
          g += (long double)y[i] * y[i];
          if (fabs(d) > m) m = fabs(d);
        }
        for (int isa = CZ_ISA_BEST; isa <= CZ_ISA_AVX512; isa++) {
          cz_errstat s = {0};
          s.max_abs = 0.25;
          if (!cz_errstat_add_isa(&s, x + off, y + off, n, (cz_isa)isa)) {
            CHECK(isa == CZ_ISA_AVX2 || isa == CZ_ISA_AVX512); /* only these may be missing */
            CHECK(s.count == 0);
            continue;
          }
          CHECK_EQ_INT(s.count, n);
          CHECK_EQ_INT(s.nonfinite, bad);
          CHECK(s.max_abs == m);
          CHECK(fabsl((long double)s.sum_ref2 - r) <= 1e-12L * r);
          if (isinf((double)e))
            CHECK(isinf(s.sum_err2));
          else
            CHECK(fabsl((long double)s.sum_err2 - e) <= 1e-12L * e);
          /* the cosine's sums: x·y can cancel, so its bound is relative to Σ|x·y| <= sqrt(r g) */
          if (isinf((double)g)) {
            CHECK(isinf(s.sum_got2));
          } else {
            CHECK(fabsl((long double)s.sum_got2 - g) <= 1e-12L * g);
            CHECK(fabsl((long double)s.sum_dot - dp) <= 1e-12L * sqrtl(r * g));
          }
        }
      }
  }
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "%s/cz_test_pipeline.XXXXXX",
           getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (mkdtemp(tmpdir) == NULL) {
    printf("Bail out! mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  static const cz_test_case cases[] = {
      CZ_TEST(test_golden_q8_0),       CZ_TEST(test_order_independence),
      CZ_TEST(test_errstat_sums),
      CZ_TEST(test_safetensors_q8_0),  CZ_TEST(test_safetensors_int8),
      CZ_TEST(test_report_numbers),    CZ_TEST(test_recipe_validation),
      CZ_TEST(test_non_finite),        CZ_TEST(test_cancel),
      CZ_TEST(test_progress),          CZ_TEST(test_split_tensor),
      CZ_TEST(test_empty_tensors),     CZ_TEST(test_late_sha256),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  for (int i = 0; i < ST_N; i++) free(st_model[i].values);
  nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}
