/* methods_util: helpers shared by test_prune, test_factorize and test_palettize: a
 * safetensors writer for float matrices, a job runner (recipe -> plan -> tasks -> report) with
 * an optional importance array, tensor readers and a few numeric checks. Header-only (static
 * functions): each test program includes it once. */
#ifndef CZ_METHODS_UTIL_H
#define CZ_METHODS_UTIL_H

#define _GNU_SOURCE /* nftw's FTW_DEPTH|FTW_PHYS */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cz_model.h"
#include "cz_pipeline.h"
#include "cz_test.h"
#include "cz_type.h"

static char tmpdir[256];

static inline void tmp_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", tmpdir, name);
}

static inline int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static inline void tmp_setup(const char *prefix) {
  snprintf(tmpdir, sizeof tmpdir, "%s/%s.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
           prefix);
  if (!mkdtemp(tmpdir)) {
    printf("Bail out! mkdtemp: %s\n", strerror(errno));
    exit(1);
  }
}

static inline void tmp_cleanup(void) { nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* |got - want| <= tol * max(|want|, floor) */
#define CHECK_NEAR(got, want, tol)                                                        \
  do {                                                                                    \
    double _g = (got), _w = (want);                                                       \
    if (!(isfinite(_g) && isfinite(_w) && fabs(_g - _w) <= (tol) * fmax(fabs(_w), 1e-30))) { \
      cz_test_failures++;                                                                 \
      printf("# %s:%d: %s ~= %s failed: %.17g vs %.17g\n", __FILE__, __LINE__, #got,     \
             #want, _g, _w);                                                              \
    }                                                                                     \
  } while (0)

#define CHECK_CONTAINS(hay, needle)                                                       \
  do {                                                                                    \
    const char *_h = (hay), *_n = (needle);                                               \
    if (!_h || !_n || !strstr(_h, _n)) {                                                  \
      cz_test_failures++;                                                                 \
      printf("# %s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,             \
             _h ? _h : "(null)", _n ? _n : "(null)");                                     \
    }                                                                                     \
  } while (0)

/* ---- random numbers (independent of the library's RNG) ---- */

static uint64_t t_rng = 88172645463325252ULL;
static inline void t_seed(uint64_t s) { t_rng = s * 2685821657736338717ULL + 1; }
static inline double t_unit(void) { /* [0, 1) */
  t_rng ^= t_rng << 13;
  t_rng ^= t_rng >> 7;
  t_rng ^= t_rng << 17;
  return (double)(t_rng >> 11) * 0x1.0p-53;
}
static inline double t_normal(void) {
  double u = t_unit(), v = t_unit();
  if (u < 1e-300) u = 1e-300;
  return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- a safetensors input ---- */

typedef struct {
  const char *name;
  cz_type type;        /* F32, F16 or BF16 */
  int64_t rows, cols;  /* 2-D [rows, cols]; rows == 0: 1-D of cols */
  float *v;            /* values, exactly representable in type (rounded by t_round) */
} t_tensor;

static inline float t_round(cz_type type, float x) {
  if (type == CZ_TYPE_F16) return cz_fp16_to_fp32(cz_fp32_to_fp16(x));
  if (type == CZ_TYPE_BF16) return cz_bf16_to_fp32(cz_fp32_to_bf16(x));
  return x;
}

static inline int64_t t_n(const t_tensor *t) { return (t->rows ? t->rows : 1) * t->cols; }

/* Gaussian values of scale sd, rounded to the tensor's type. */
static inline void t_fill_normal(t_tensor *t, double sd, uint64_t seed) {
  t_seed(seed);
  t->v = malloc(sizeof(float) * (size_t)t_n(t));
  for (int64_t i = 0; i < t_n(t); i++) t->v[i] = t_round(t->type, (float)(sd * t_normal()));
}

static inline bool t_write(const char *path, const t_tensor *ts, int n) {
  cz_error err = {0};
  cz_layout *l = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  bool ok = l != NULL;
  for (int i = 0; ok && i < n; i++) {
    int64_t ne[CZ_MAX_DIMS] = {ts[i].cols, ts[i].rows ? ts[i].rows : 1, 1, 1};
    ok = cz_layout_add_tensor(l, ts[i].name, ts[i].type, ts[i].rows ? 2 : 1, ne, &err) == CZ_E_OK;
  }
  ok = ok && cz_layout_finish(l, &err) == CZ_E_OK;
  int fd = ok ? open(path, O_RDWR | O_CREAT | O_TRUNC, 0644) : -1;
  ok = ok && fd >= 0 && cz_layout_write_frame(l, fd, &err) == CZ_E_OK;
  for (int i = 0; ok && i < n; i++) {
    const cz_type_traits *tr = cz_type_get(ts[i].type);
    size_t nb = (size_t)l->tensors[i].nbytes;
    uint8_t *buf = malloc(nb ? nb : 1);
    tr->from_f32(ts[i].v, buf, t_n(&ts[i]));
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

static inline cz_model *t_open(const char *path) {
  cz_model *m = NULL;
  cz_error err = {0};
  if (cz_model_open(path, &m, &err) != CZ_E_OK) {
    printf("# %s does not open: %s: %s\n", path, cz_err_name(err.code), err.msg);
    cz_test_failures++;
    return NULL;
  }
  return m;
}

/* Write ts to tmpdir/file and open it. */
static inline cz_model *t_model(const char *file, const t_tensor *ts, int n) {
  char path[512];
  tmp_path(path, sizeof path, file);
  return t_write(path, ts, n) ? t_open(path) : NULL;
}

/* ---- jobs ---- */

typedef enum { RUN_EXEC2, RUN_REVERSE } run_mode;

typedef struct {
  cz_recipe *recipe;
  cz_run *run;
  json_t *report;
  cz_model *out;      /* the output, opened */
  cz_error err;
  cz_err_code rc;
  const char *stage;
} job;

static inline void job_free(job *j) {
  json_decref(j->report);
  cz_run_free(j->run);
  cz_recipe_free(j->recipe);
  cz_model_close(j->out);
  memset(j, 0, sizeof *j);
}

/* Importance for the tests: one array for every tensor whose column count (or column count
 * times experts) matches. */
typedef struct {
  const float *v;
  int64_t n;
} t_importance;

static inline const float *t_importance_fn(const void *ud, const char *name, int64_t ncols) {
  const t_importance *im = ud;
  (void)name;
  return im && im->n == ncols ? im->v : NULL;
}

static inline cz_err_code run_job_im(const cz_model *in, const char *recipe_text, const char *out_file,
                              run_mode mode, const t_importance *im, job *j) {
  memset(j, 0, sizeof *j);
  json_error_t je;
  json_t *body = json_loads(recipe_text, 0, &je);
  if (!body) {
    printf("# test bug: bad JSON %s: %s\n", recipe_text, je.text);
    j->stage = "json";
    return j->rc = CZ_E_INTERNAL;
  }
  j->stage = "parse";
  j->rc = cz_recipe_parse(body, NULL, &j->recipe, &j->err);
  json_decref(body);
  if (j->rc) return j->rc;
  if (im) cz_recipe_set_importance(j->recipe, t_importance_fn, im);
  j->stage = "plan";
  if ((j->rc = cz_run_plan(j->recipe, in, "00112233", &j->run, &j->err))) return j->rc;
  char path[512];
  tmp_path(path, sizeof path, out_file);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    j->stage = "open";
    return j->rc = cz_err_set(&j->err, CZ_E_IO, "open %s: %s", path, strerror(errno));
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
  if (j->rc) return j->rc;
  j->report = cz_run_report(j->run, 0.25);
  j->stage = "reopen";
  cz_error e = {0};
  if ((j->rc = cz_model_open(path, &j->out, &e))) j->err = e;
  return j->rc;
}

static inline cz_err_code run_job(const cz_model *in, const char *recipe, const char *out_file,
                           job *j) {
  return run_job_im(in, recipe, out_file, RUN_EXEC2, NULL, j);
}

static inline bool job_ok(const job *j) {
  if (j->rc == CZ_E_OK) return true;
  cz_test_failures++;
  printf("# job failed at %s: %s: %s\n", j->stage, cz_err_name(j->rc), j->err.msg);
  return false;
}

static inline const json_t *report_tensor(const json_t *report, const char *name) {
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(report, "tensors"), i, t) {
    if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0) return t;
  }
  printf("# report has no tensor %s\n", name);
  cz_test_failures++;
  return NULL;
}

static inline double rnum(const json_t *t, const char *key) {
  const json_t *v = json_object_get(t, key);
  if (!json_is_number(v)) {
    printf("# report entry has no number %s\n", key);
    cz_test_failures++;
    return NAN;
  }
  return json_number_value(v);
}

/* A tensor of m decoded to float (heap, *n elements), NULL (with a failure) if absent. */
static inline float *t_read(const cz_model *m, const char *name, int64_t *n) {
  const cz_tensor *t = m ? cz_model_find(m, name) : NULL;
  if (n) *n = 0;
  if (!t) {
    printf("# tensor %s is not in the output\n", name);
    cz_test_failures++;
    return NULL;
  }
  int64_t k = cz_tensor_nelements(t);
  float *v = malloc(sizeof(float) * (size_t)(k ? k : 1));
  cz_type_get(t->type)->to_f32(t->data, v, k);
  if (n) *n = k;
  return v;
}

/* Raw bytes of a tensor (in the mapping), NULL if absent. */
static inline const uint8_t *t_bytes(const cz_model *m, const char *name, const cz_tensor **out) {
  const cz_tensor *t = m ? cz_model_find(m, name) : NULL;
  if (!t) {
    printf("# tensor %s is not in the output\n", name);
    cz_test_failures++;
    return NULL;
  }
  if (out) *out = t;
  return t->data;
}

/* ||x - y||_2 / ||x||_2 in double, and max |x - y|. */
static inline double rel_l2_of(const float *x, const double *y, int64_t n, double *max_abs) {
  double r2 = 0, e2 = 0, mx = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)x[i] - y[i];
    r2 += (double)x[i] * x[i];
    e2 += d * d;
    mx = fmax(mx, fabs(d));
  }
  if (max_abs) *max_abs = mx;
  return e2 == 0 ? 0 : sqrt(e2 / r2);
}

/* Expect the recipe to fail at parse or plan with code, the message naming field. */
static inline void expect_refused(const cz_model *in, const char *recipe, cz_err_code code,
                           const char *field, const t_importance *im) {
  job j;
  cz_err_code rc = run_job_im(in, recipe, "refused.out", RUN_EXEC2, im, &j);
  if (rc != code || !strstr(j.err.msg, field)) {
    printf("# %s: got %s \"%s\" at %s, want %s naming %s\n", recipe, cz_err_name(rc), j.err.msg,
           j.stage ? j.stage : "?", cz_err_name(code), field);
    cz_test_failures++;
  }
  job_free(&j);
}

#endif
