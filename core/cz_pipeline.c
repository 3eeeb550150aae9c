/* cz_pipeline: plans a recipe over a model and runs it as independent, row-chunked tasks. */
#include "cz_pipeline.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cz_imatrix.h"
#include "cz_method.h"
#include "cz_report.h"

#ifndef CZ_VERSION
#define CZ_VERSION "dev"
#endif

/* Elements converted per chunk inside a task: 64 Ki floats (256 KiB) keeps the working set
 * in L2 and memory per task small whatever the tensor size. */
#define CHUNK_ELEMS ((int64_t)1 << 16)
/* Rows of one tensor go to separate tasks once a tensor exceeds this many elements, so that
 * one large matrix keeps every core busy. */
#define TASK_ELEMS ((int64_t)1 << 22)

typedef struct {
  const cz_method *method;
  void *params;
} step_t;

struct cz_recipe {
  int n_steps;
  step_t steps[CZ_MAX_STEPS];
  cz_format format;    /* 0: not given */
  const cz_imatrix *imatrix;  /* borrowed calibration, NULL if none */
};

typedef struct {
  const cz_tensor *in;
  cz_tensor_plan plan;
  int64_t nrows, ncols;
  size_t out_index[CZ_MAX_OUTPUTS];   /* index in the layout's tensors */
  pthread_mutex_t lock;               /* guards stat */
  cz_errstat stat;
  atomic_int chunks_left;             /* tasks of this tensor still to finish */
} tensor_state;

typedef struct {
  size_t tensor;
  int64_t row_begin, row_end;
} task_t;

struct cz_run {
  const cz_recipe *recipe;
  const cz_model *in;
  const step_t *step;                 /* the step that encodes (NULL: copy everything) */
  char input_sha256[65];
  cz_format format;
  cz_layout *layout;
  size_t n_tensors;
  tensor_state *ts;
  size_t n_tasks;
  task_t *tasks;
  int fd;
  void *plan_state;                   /* the encoding method's, between plan_begin and plan_end */
  atomic_int canceled;
  atomic_uint_fast64_t tensors_done, bytes_done;
  uint64_t bytes_total;
};

/* ---- recipe ---- */

static cz_err_code parse_output(const json_t *out, cz_recipe *r, cz_error *err) {
  if (out == NULL) return CZ_E_OK;
  if (!json_is_object(out))
    return cz_err_set(err, CZ_E_INVALID_RECIPE, "output must be an object");
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)out, key, v) {
    if (strcmp(key, "format") != 0)
      return cz_err_set(err, CZ_E_INVALID_RECIPE, "output.%s: unknown field", key);
  }
  json_t *f = json_object_get(out, "format");
  if (f == NULL) return CZ_E_OK;
  r->format = json_is_string(f) ? cz_format_from_name(json_string_value(f)) : 0;
  if (r->format == 0)
    return cz_err_set(err, CZ_E_INVALID_RECIPE,
                      "output.format must be \"gguf\" or \"safetensors\"");
  return CZ_E_OK;
}

static cz_err_code check_top_keys(const json_t *body, const char *const *extra, cz_error *err) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)body, key, v) {
    if (!strcmp(key, "steps") || !strcmp(key, "output")) continue;
    bool ok = false;
    for (int i = 0; extra && extra[i]; i++) ok |= strcmp(extra[i], key) == 0;
    if (!ok) return cz_err_set(err, CZ_E_INVALID_RECIPE, "%s: unknown field", key);
  }
  return CZ_E_OK;
}

cz_err_code cz_recipe_parse(const json_t *body, const char *const *allowed_extra,
                            cz_recipe **out, cz_error *err) {
  if (!json_is_object(body))
    return cz_err_set(err, CZ_E_INVALID_RECIPE, "the recipe must be a JSON object");
  cz_err_code rc = check_top_keys(body, allowed_extra, err);
  if (rc) return rc;
  json_t *steps = json_object_get(body, "steps");
  if (!json_is_array(steps) || json_array_size(steps) == 0)
    return cz_err_set(err, CZ_E_INVALID_RECIPE, "steps must be a non-empty array");
  if (json_array_size(steps) > CZ_MAX_STEPS)
    return cz_err_set(err, CZ_E_INVALID_RECIPE, "steps: at most %d steps", CZ_MAX_STEPS);
  cz_recipe *r = calloc(1, sizeof *r);
  if (!r) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  for (size_t i = 0; i < json_array_size(steps); i++) {
    const json_t *s = json_array_get(steps, i);
    const cz_method *m;
    if ((rc = cz_method_for_step(s, (int)i, &m, err))) goto fail;
    void *params = NULL;
    if ((rc = m->parse(s, (int)i, &params, err))) goto fail;
    r->steps[r->n_steps].method = m;
    r->steps[r->n_steps].params = params;
    r->n_steps++;
  }
  /* Every method so far encodes the final bytes, so only one of them can stand in a
   * recipe; the transforming families (prune, factorize) will come before it. */
  if (r->n_steps > 1) {
    rc = cz_err_set(err, CZ_E_INVALID_RECIPE,
                    "steps[1]: only one quantize step per recipe (it produces the final bytes)");
    goto fail;
  }
  if ((rc = parse_output(json_object_get(body, "output"), r, err))) goto fail;
  if (r->format && !r->steps[0].method->supports_format(r->steps[0].params, r->format)) {
    rc = cz_err_set(err, CZ_E_INVALID_RECIPE, "output.format: %s cannot hold the output of %s",
                    cz_format_name(r->format), r->steps[0].method->name);
    goto fail;
  }
  *out = r;
  return CZ_E_OK;
fail:
  cz_recipe_free(r);
  return rc;
}

void cz_recipe_free(cz_recipe *r) {
  if (!r) return;
  for (int i = 0; i < r->n_steps; i++) r->steps[i].method->free_params(r->steps[i].params);
  free(r);
}

json_t *cz_recipe_normalized(const cz_recipe *r) {
  json_t *steps = json_array();
  for (int i = 0; i < r->n_steps; i++)
    json_array_append_new(steps, r->steps[i].method->describe(r->steps[i].params));
  json_t *out = json_object();
  if (r->format) json_object_set_new(out, "format", json_string(cz_format_name(r->format)));
  return json_pack("{s:o, s:o}", "steps", steps, "output", out);
}

cz_format cz_recipe_format(const cz_recipe *r) { return r->format; }

void cz_recipe_set_imatrix(cz_recipe *r, const cz_imatrix *im) { r->imatrix = im; }

void cz_recipe_set_default_format(cz_recipe *r, cz_format f) {
  if (r->format == 0) r->format = f;
}

/* ---- plan ---- */

static cz_format choose_format(const cz_recipe *r, const cz_model *in) {
  if (r->format) return r->format;
  const step_t *s = &r->steps[0];
  if (s->method->supports_format(s->params, in->format)) return in->format;
  return in->format == CZ_FORMAT_GGUF ? CZ_FORMAT_SAFETENSORS : CZ_FORMAT_GGUF;
}

/* llama_ftype of a whole-file type (include/llama.h), written as general.file_type. */
static const struct {
  const char *type;
  int ftype;
} llama_ftypes[] = {
    {"f32", 0},   {"f16", 1},   {"q4_0", 2},  {"q4_1", 3},   {"q8_0", 7},   {"q5_0", 8},
    {"q5_1", 9},  {"q2_K", 10}, {"q3_K", 12}, {"q4_K", 15},  {"q5_K", 17},  {"q6_K", 18},
    {"iq4_nl", 25}, {"iq4_xs", 30}, {"bf16", 32}, {"tq1_0", 36}, {"tq2_0", 37}, {"mxfp4", 38},
};

/* A method that knows its file type says so in describe()'s "file_type" (llama.cpp presets);
 * otherwise it follows from the one "type" of the step. */
static int llama_ftype_of(json_t *(*describe)(const void *), const void *params) {
  json_t *d = describe(params);
  const char *t = json_string_value(json_object_get(d, "type"));
  const json_t *ft = json_object_get(d, "file_type");
  int ftype = json_is_integer(ft) ? (int)json_integer_value(ft) : -1;
  for (size_t i = 0; t && i < sizeof llama_ftypes / sizeof llama_ftypes[0]; i++)
    if (strcmp(llama_ftypes[i].type, t) == 0) ftype = llama_ftypes[i].ftype;
  json_decref(d);
  return ftype;
}

/* llama-quantize records the importance matrix it used (as --override-kv entries, after
 * general.file_type): the file it was given and its first dataset, both cut to 127 bytes,
 * the number of entries and the chunk count. */
/* s cut to 127 bytes, backing off to the start of a UTF-8 sequence the cut would split. */
static void cut_127(char v[128], const char *s) {
  size_t n = strnlen(s, 127);
  if (n == 127 && ((unsigned char)s[127] & 0xC0) == 0x80)
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
  memcpy(v, s, n);
  v[n] = 0;
}

static cz_err_code imatrix_metadata(cz_layout *l, const cz_imatrix *im, cz_error *err) {
  char v[128];
  cz_err_code rc;
  cut_127(v, cz_imatrix_label(im));
  if ((rc = cz_layout_set_str(l, "quantize.imatrix.file", v, err))) return rc;
  if (cz_imatrix_n_datasets(im)) {
    cut_127(v, cz_imatrix_dataset(im, 0));
    if ((rc = cz_layout_set_str(l, "quantize.imatrix.dataset", v, err))) return rc;
  }
  if ((rc = cz_layout_set_u32(l, "quantize.imatrix.entries_count",
                              (uint32_t)cz_imatrix_n_entries(im), err)))
    return rc;
  if (cz_imatrix_chunk_count(im) > 0 &&
      (rc = cz_layout_set_u32(l, "quantize.imatrix.chunks_count", cz_imatrix_chunk_count(im), err)))
    return rc;
  return CZ_E_OK;
}

static cz_err_code layout_metadata(cz_run *run, cz_error *err) {
  cz_layout *l = run->layout;
  cz_err_code rc = CZ_E_OK;
  if (run->format == CZ_FORMAT_GGUF) {
    if (run->in->format == CZ_FORMAT_GGUF && (rc = cz_layout_copy_kv(l, run->in, err))) return rc;
    bool quantized = false;
    for (size_t i = 0; i < l->n_tensors; i++)
      quantized |= cz_type_get(l->tensors[i].type)->is_quantized;
    /* llama.cpp sets these two after copying the input's keys (which moves them last) */
    if (quantized && (rc = cz_layout_set_u32(l, "general.quantization_version", 2, err))) return rc;
    int ftype = run->step ? llama_ftype_of(run->step->method->describe, run->step->params) : -1;
    if (ftype >= 0 && (rc = cz_layout_set_u32(l, "general.file_type", (uint32_t)ftype, err)))
      return rc;
    if (run->recipe->imatrix) return imatrix_metadata(l, run->recipe->imatrix, err);
    return CZ_E_OK;
  }
  for (size_t i = 0; i < run->in->n_meta; i++)
    if ((rc = cz_layout_set_meta(l, run->in->meta_keys[i], run->in->meta_values[i], err))) return rc;
  json_t *recipe = cz_recipe_normalized(run->recipe);
  char *rs = json_dumps(recipe, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(recipe);
  if (!rs) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  if (!(rc = cz_layout_set_meta(l, "compressd.producer", "compressd", err)) &&
      !(rc = cz_layout_set_meta(l, "compressd.version", CZ_VERSION, err)) &&
      !(rc = cz_layout_set_meta(l, "compressd.recipe", rs, err)) && run->input_sha256[0])
    rc = cz_layout_set_meta(l, "compressd.source_sha256", run->input_sha256, err);
  free(rs);
  return rc;
}

static void shape_json_reversed(json_t *arr, int n_dims, const int64_t *ne) {
  for (int d = n_dims - 1; d >= 0; d--) json_array_append_new(arr, json_integer(ne[d]));
}

static cz_err_code plan_tensor(cz_run *run, size_t i, cz_error *err) {
  tensor_state *s = &run->ts[i];
  const cz_tensor *t = &run->in->tensors[i];
  s->in = t;
  s->ncols = t->n_dims ? t->ne[0] : 1;
  s->nrows = 1;
  for (int d = 1; d < t->n_dims; d++) s->nrows *= t->ne[d];
  cz_err_code rc;
  if (run->step) {
    cz_plan_ctx ctx = {run->in, i, run->format, run->recipe->imatrix, run->plan_state};
    if ((rc = run->step->method->plan(run->step->params, &ctx, t, &s->plan, err))) return rc;
  } else {
    memset(&s->plan, 0, sizeof s->plan);
  }
  for (int k = 0; k < s->plan.n_out; k++) {
    const cz_type_traits *tr = cz_type_get(s->plan.out[k].type);
    if (run->format == CZ_FORMAT_GGUF && !tr->in_gguf)
      return cz_err_set(err, CZ_E_UNSUPPORTED_INPUT,
                        "tensor %s: type %s cannot be stored in GGUF", t->name, tr->name);
    if (run->format == CZ_FORMAT_SAFETENSORS && tr->st_name == NULL)
      return cz_err_set(err, CZ_E_UNSUPPORTED_INPUT,
                        "tensor %s: type %s cannot be stored in safetensors", t->name, tr->name);
    s->out_index[k] = run->layout->n_tensors;
    if ((rc = cz_layout_add_tensor(run->layout, s->plan.out[k].name, s->plan.out[k].type,
                                   s->plan.out[k].n_dims, s->plan.out[k].ne, err)))
      return rc;
  }
  pthread_mutex_init(&s->lock, NULL);
  run->bytes_total += t->nbytes;
  return CZ_E_OK;
}

static cz_err_code plan_tasks(cz_run *run, cz_error *err) {
  size_t n = 0;
  for (int pass = 0; pass < 2; pass++) {
    n = 0;
    for (size_t i = 0; i < run->n_tensors; i++) {
      tensor_state *s = &run->ts[i];
      int64_t rows_per = s->plan.transform ? TASK_ELEMS / (s->ncols ? s->ncols : 1) : s->nrows;
      if (rows_per < 1) rows_per = 1;
      int chunks = 0;
      for (int64_t r = 0; r < s->nrows || (r == 0 && s->nrows == 0); r += rows_per) {
        if (pass == 1) {
          run->tasks[n].tensor = i;
          run->tasks[n].row_begin = r;
          run->tasks[n].row_end = r + rows_per < s->nrows ? r + rows_per : s->nrows;
        }
        n++;
        chunks++;
        if (s->nrows == 0) break;
      }
      if (pass == 1) atomic_init(&s->chunks_left, chunks);
    }
    if (pass == 0) {
      run->tasks = calloc(n ? n : 1, sizeof *run->tasks);
      if (!run->tasks) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    }
  }
  run->n_tasks = n;
  return CZ_E_OK;
}

cz_err_code cz_run_plan(const cz_recipe *r, const cz_model *in, const char *input_sha256,
                        cz_run **out, cz_error *err) {
  cz_run *run = calloc(1, sizeof *run);
  if (!run) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  run->recipe = r;
  run->in = in;
  run->fd = -1;
  run->step = r->n_steps ? &r->steps[0] : NULL;
  snprintf(run->input_sha256, sizeof run->input_sha256, "%s", input_sha256 ? input_sha256 : "");
  run->format = choose_format(r, in);
  cz_err_code rc = CZ_E_OK;
  if (run->step && !run->step->method->supports_format(run->step->params, run->format)) {
    rc = cz_err_set(err, CZ_E_INVALID_RECIPE, "output.format: %s cannot hold the output of %s",
                    cz_format_name(run->format), run->step->method->name);
    goto fail;
  }
  run->layout = cz_layout_new(run->format);
  run->n_tensors = in->n_tensors;
  run->ts = calloc(in->n_tensors ? in->n_tensors : 1, sizeof *run->ts);
  if (!run->layout || !run->ts) {
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    goto fail;
  }
  if (run->format == CZ_FORMAT_GGUF && in->format == CZ_FORMAT_GGUF)
    run->layout->alignment = in->alignment;
  if (run->step && run->step->method->plan_begin) {
    cz_plan_ctx ctx = {in, 0, run->format, r->imatrix, NULL};
    if ((rc = run->step->method->plan_begin(run->step->params, &ctx, &run->plan_state, err)))
      goto fail;
  }
  for (size_t i = 0; i < in->n_tensors; i++)
    if ((rc = plan_tensor(run, i, err))) goto fail;
  if ((rc = layout_metadata(run, err)) || (rc = cz_layout_finish(run->layout, err)) ||
      (rc = plan_tasks(run, err)))
    goto fail;
  *out = run;
  return CZ_E_OK;
fail:
  cz_run_free(run);
  return rc;
}

void cz_run_free(cz_run *run) {
  if (!run) return;
  if (run->plan_state && run->step->method->plan_end) run->step->method->plan_end(run->plan_state);
  if (run->ts)
    for (size_t i = 0; i < run->n_tensors; i++)
      if (run->ts[i].in) pthread_mutex_destroy(&run->ts[i].lock);
  free(run->ts);
  free(run->tasks);
  cz_layout_free(run->layout);
  free(run);
}

size_t cz_run_n_tasks(const cz_run *run) { return run->n_tasks; }
uint64_t cz_run_output_size(const cz_run *run) { return run->layout->total_size; }
cz_format cz_run_output_format(const cz_run *run) { return run->format; }

static uint64_t plan_bytes_out(const cz_run *run, const tensor_state *s) {
  uint64_t b = 0;
  for (int k = 0; k < s->plan.n_out; k++) b += run->layout->tensors[s->out_index[k]].nbytes;
  return b;
}

json_t *cz_run_plan_json(const cz_run *run) {
  json_t *arr = json_array();
  for (size_t i = 0; i < run->n_tensors; i++) {
    const tensor_state *s = &run->ts[i];
    json_t *shape = json_array();
    shape_json_reversed(shape, s->in->n_dims, s->in->ne);
    json_array_append_new(
        arr, json_pack("{s:s, s:o, s:s, s:s, s:I, s:I, s:s?}", "name", s->in->name, "shape",
                       shape, "input_dtype", cz_type_get(s->in->type)->name, "output_type",
                       s->plan.out_type_name, "bytes_in", (json_int_t)s->in->nbytes,
                       "bytes_out", (json_int_t)plan_bytes_out(run, s), "note", s->plan.note));
  }
  return json_pack("{s:s, s:I, s:o}", "format", cz_format_name(run->format), "bytes",
                   (json_int_t)run->layout->total_size, "tensors", arr);
}

/* ---- run ---- */

cz_err_code cz_run_begin(cz_run *run, int fd, cz_error *err) {
  run->fd = fd;
  return cz_layout_write_frame(run->layout, fd, err);
}

static cz_err_code pwrite_all(int fd, const void *buf, size_t len, uint64_t off, cz_error *err) {
  const uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return cz_err_set(err, errno == ENOSPC || errno == EDQUOT ? CZ_E_NO_SPACE : CZ_E_IO,
                        "writing the output: %s", strerror(errno));
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return CZ_E_OK;
}

/* Copy a tensor's bytes unchanged, in bounded chunks so that the page cache, not the heap,
 * carries a large tensor. */
static cz_err_code task_copy(cz_run *run, tensor_state *s, cz_error *err) {
  const uint64_t step = (uint64_t)CHUNK_ELEMS * 16;
  uint64_t off = run->layout->tensors[s->out_index[0]].file_offset;
  for (uint64_t done = 0; done < s->in->nbytes; done += step) {
    if (atomic_load(&run->canceled)) return cz_err_set(err, CZ_E_CANCELED, "canceled");
    uint64_t n = s->in->nbytes - done < step ? s->in->nbytes - done : step;
    cz_err_code rc = pwrite_all(run->fd, s->in->data + done, n, off + done, err);
    if (rc) return rc;
    cz_model_release(run->in, s->in->data + done, n);
    atomic_fetch_add(&run->bytes_done, n);
  }
  pthread_mutex_lock(&s->lock);
  s->stat.count += (uint64_t)cz_tensor_nelements(s->in);
  pthread_mutex_unlock(&s->lock);
  return CZ_E_OK;
}

static int count_nonfinite(const float *x, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; i++) bad += !isfinite(x[i]);
  return bad;
}

/* Encode rows [r, r + nr) of a tensor. A tensor of experts (ne[2] > 1) with importance
 * weights has one slice of ne[0] weights per expert, and llama-quantize quantizes each
 * expert's matrix with its own slice: the rows are handed over expert by expert. */
static void encode_rows(const cz_run *run, const tensor_state *s, const float *x, int64_t r,
                        int64_t nr, uint8_t *const obuf[CZ_MAX_OUTPUTS]) {
  const cz_tensor_plan *p = &s->plan;
  const int64_t per_expert = s->in->n_dims >= 3 && s->in->ne[2] > 1 && p->imatrix ? s->in->ne[1] : 0;
  if (per_expert == 0) {
    run->step->method->encode(run->step->params, p, x, nr, s->ncols, obuf);
    return;
  }
  cz_tensor_plan sub = *p;
  for (int64_t done = 0; done < nr;) {
    const int64_t row = r + done, expert = row / per_expert;
    int64_t n = (expert + 1) * per_expert - row;
    if (n > nr - done) n = nr - done;
    sub.imatrix = p->imatrix + (expert % s->in->ne[2]) * s->ncols;
    uint8_t *o[CZ_MAX_OUTPUTS] = {0};
    for (int k = 0; k < p->n_out; k++) o[k] = obuf[k] + (uint64_t)done * p->out[k].row_bytes;
    run->step->method->encode(run->step->params, &sub, x + done * s->ncols, n, s->ncols, o);
    done += n;
  }
}

static cz_err_code task_transform(cz_run *run, tensor_state *s, int64_t r0, int64_t r1,
                                  cz_error *err) {
  const cz_type_traits *in_tr = cz_type_get(s->in->type);
  const uint64_t in_row = cz_type_row_size(s->in->type, s->ncols);
  if (s->ncols <= 0 || r1 <= r0) return CZ_E_OK;  /* plans copy empty tensors; nothing to do */
  int64_t rows_per = CHUNK_ELEMS / s->ncols;
  if (rows_per < 1) rows_per = 1;
  if (rows_per > r1 - r0) rows_per = r1 - r0;
  float *x = malloc(sizeof(float) * (size_t)(rows_per * s->ncols));
  float *y = malloc(sizeof(float) * (size_t)(rows_per * s->ncols));
  uint8_t *obuf[CZ_MAX_OUTPUTS] = {0};
  cz_err_code rc = CZ_E_OK;
  cz_errstat st = {0};
  bool oom = !x || !y;
  for (int k = 0; k < s->plan.n_out; k++)
    oom |= !(obuf[k] = malloc((size_t)(s->plan.out[k].row_bytes * (uint64_t)rows_per)));
  if (oom) {
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    goto done;
  }
  for (int64_t r = r0; r < r1 && !rc; r += rows_per) {
    if (atomic_load(&run->canceled)) {
      rc = cz_err_set(err, CZ_E_CANCELED, "canceled");
      break;
    }
    int64_t nr = r + rows_per <= r1 ? rows_per : r1 - r;
    in_tr->to_f32(s->in->data + (uint64_t)r * in_row, x, nr * s->ncols);
    if (count_nonfinite(x, nr * s->ncols)) {
      rc = cz_err_set(err, CZ_E_NON_FINITE, "tensor %s: row %lld holds NaN or Inf values",
                      s->in->name, (long long)r);
      break;
    }
    encode_rows(run, s, x, r, nr, obuf);
    for (int k = 0; k < s->plan.n_out && !rc; k++) {
      uint64_t off = run->layout->tensors[s->out_index[k]].file_offset +
                     (uint64_t)r * s->plan.out[k].row_bytes;
      rc = pwrite_all(run->fd, obuf[k], (size_t)(s->plan.out[k].row_bytes * (uint64_t)nr), off, err);
    }
    if (rc) break;
    run->step->method->decode(run->step->params, &s->plan, (const uint8_t *const *)obuf, nr,
                              s->ncols, y);
    cz_errstat_add(&st, x, y, nr * s->ncols);
    cz_model_release(run->in, s->in->data + (uint64_t)r * in_row, (uint64_t)nr * in_row);
    atomic_fetch_add(&run->bytes_done, (uint64_t)nr * in_row);
  }
  if (!rc) {
    pthread_mutex_lock(&s->lock);
    cz_errstat_merge(&s->stat, &st);
    pthread_mutex_unlock(&s->lock);
  }
done:
  free(x);
  free(y);
  for (int k = 0; k < CZ_MAX_OUTPUTS; k++) free(obuf[k]);
  return rc;
}

cz_err_code cz_run_task(cz_run *run, size_t i, cz_error *err) {
  if (i >= run->n_tasks) return cz_err_set(err, CZ_E_INTERNAL, "task %zu out of range", i);
  if (atomic_load(&run->canceled)) return cz_err_set(err, CZ_E_CANCELED, "canceled");
  const task_t *t = &run->tasks[i];
  tensor_state *s = &run->ts[t->tensor];
  cz_err_code rc = s->plan.transform ? task_transform(run, s, t->row_begin, t->row_end, err)
                                     : task_copy(run, s, err);
  if (rc == CZ_E_OK && atomic_fetch_sub(&s->chunks_left, 1) == 1)
    atomic_fetch_add(&run->tensors_done, 1);
  return rc;
}

void cz_run_cancel(cz_run *run) { atomic_store(&run->canceled, 1); }

void cz_run_progress(const cz_run *run, uint64_t *tensors_done, uint64_t *tensors_total,
                     uint64_t *bytes_done, uint64_t *bytes_total) {
  *tensors_done = atomic_load(&((cz_run *)run)->tensors_done);
  *tensors_total = run->n_tensors;
  *bytes_done = atomic_load(&((cz_run *)run)->bytes_done);
  *bytes_total = run->bytes_total;
}

/* ---- report ---- */

static json_t *tensor_report(const cz_run *run, const tensor_state *s) {
  json_t *shape = json_array();
  shape_json_reversed(shape, s->in->n_dims, s->in->ne);
  uint64_t out = plan_bytes_out(run, s);
  int64_t n = cz_tensor_nelements(s->in);
  return json_pack("{s:s, s:o, s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:f, s:s?}", "name",
                   s->in->name, "shape", shape, "input_dtype",
                   cz_type_get(s->in->type)->st_name ? cz_type_get(s->in->type)->st_name
                                                     : cz_type_get(s->in->type)->name,
                   "output_type", s->plan.out_type_name, "bytes_in", (json_int_t)s->in->nbytes,
                   "bytes_out", (json_int_t)out, "bpw",
                   cz_json_real_or_null(n ? 8.0 * (double)out / (double)n : 0.0), "rel_l2",
                   cz_json_real_or_null(cz_errstat_rel_l2(&s->stat)), "snr_db",
                   cz_json_real_or_null(cz_errstat_snr_db(&s->stat)), "max_abs_err",
                   s->stat.max_abs, "note", s->plan.note);
}

json_t *cz_run_report(const cz_run *run, double seconds) {
  json_t *tensors = json_array();
  uint64_t bin = 0, bout = 0, elems = 0, changed = 0;
  for (size_t i = 0; i < run->n_tensors; i++) {
    const tensor_state *s = &run->ts[i];
    json_array_append_new(tensors, tensor_report(run, s));
    bin += s->in->nbytes;
    bout += plan_bytes_out(run, s);
    elems += (uint64_t)cz_tensor_nelements(s->in);
    changed += s->plan.transform;
  }
  json_t *totals = json_pack(
      "{s:I, s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:f}", "bytes_in", (json_int_t)bin, "bytes_out",
      (json_int_t)bout, "ratio", cz_json_real_or_null(bout ? (double)bin / (double)bout : 0),
      "bpw", cz_json_real_or_null(elems ? 8.0 * (double)bout / (double)elems : 0),
      "file_bytes_in", (json_int_t)run->in->file_size, "file_bytes_out",
      (json_int_t)run->layout->total_size, "tensors", (json_int_t)run->n_tensors,
      "tensors_transformed", (json_int_t)changed, "seconds", seconds);
  return json_pack("{s:s, s:s, s:o, s:{s:s, s:s?, s:I}, s:{s:s, s:I}, s:o, s:o}", "producer",
                   "compressd", "version", CZ_VERSION, "recipe",
                   cz_recipe_normalized(run->recipe), "input", "format",
                   cz_format_name(run->in->format), "sha256",
                   run->input_sha256[0] ? run->input_sha256 : NULL, "bytes",
                   (json_int_t)run->in->file_size, "output", "format",
                   cz_format_name(run->format), "bytes", (json_int_t)run->layout->total_size,
                   "tensors", tensors, "totals", totals);
}

/* ---- self-threaded execution for the CLI ---- */

typedef struct {
  cz_run *run;
  atomic_size_t next;
  atomic_int failed;
  pthread_mutex_t lock;
  cz_error first;
} exec_ctx;

static void *exec_thread(void *arg) {
  exec_ctx *c = arg;
  for (;;) {
    size_t i = atomic_fetch_add(&c->next, 1);
    if (i >= c->run->n_tasks || atomic_load(&c->failed)) return NULL;
    cz_error e = {0};
    if (cz_run_task(c->run, i, &e) != CZ_E_OK) {
      pthread_mutex_lock(&c->lock);
      if (!atomic_load(&c->failed)) c->first = e;
      atomic_store(&c->failed, 1);
      pthread_mutex_unlock(&c->lock);
      cz_run_cancel(c->run);
      return NULL;
    }
  }
}

cz_err_code cz_run_exec(cz_run *run, int nthreads, cz_error *err) {
  enum { MAX_THREADS = 256 };
  if (nthreads < 1) nthreads = 1;
  if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
  exec_ctx c = {.run = run};
  atomic_init(&c.next, 0);
  atomic_init(&c.failed, 0);
  pthread_mutex_init(&c.lock, NULL);
  pthread_t th[MAX_THREADS];
  int started = 0;
  for (; started < nthreads; started++)
    if (pthread_create(&th[started], NULL, exec_thread, &c) != 0) break;
  if (started == 0) exec_thread(&c);
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  pthread_mutex_destroy(&c.lock);
  if (atomic_load(&c.failed)) {
    if (err) *err = c.first;
    return c.first.code;
  }
  return CZ_E_OK;
}
