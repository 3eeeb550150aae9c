/* cz_pipeline: plans a recipe over a model and runs it as independent tasks: row-chunked
 * straight into the output for encode-only recipes, in two phases through a scratch file for
 * recipes with whole-tensor steps (see cz_pipeline.h). */
#define _GNU_SOURCE /* O_TMPFILE, copy_file_range */
#include "cz_pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cz_imatrix.h"
#include "cz_quants.h"
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
/* Input pages are handed back (madvise) once this many bytes are consumed, not per chunk:
 * each madvise of a shared mapping interrupts the other cores to flush their TLBs, which
 * cost a whole-model run 5 % of its CPU at 256 KiB. Peak RSS grows by this per thread. */
#define RELEASE_BYTES ((uint64_t)8 << 20)

typedef struct {
  const cz_method *method;
  void *params;
  json_t *include, *exclude;  /* arrays of glob patterns, NULL when not given */
} step_t;

struct cz_recipe {
  int n_steps;
  step_t steps[CZ_MAX_STEPS];
  cz_format format;    /* 0: not given */
  const cz_imatrix *imatrix;  /* borrowed calibration, NULL if none */
  cz_importance_fn importance;  /* importance lookup: the imatrix's or the caller's; NULL if none */
  const void *importance_ud;
  bool importance_explicit;     /* set by cz_recipe_set_importance (wins over the imatrix) */
  bool whole;          /* a transform or whole-tensor encoder: whole-tensor mode */
};

/* One output tensor of whole-tensor mode, computed in phase 1 into the scratch file. */
typedef struct {
  char *name;
  cz_type type;
  int n_dims;
  int64_t ne[CZ_MAX_DIMS];
  uint64_t scratch_off, nbytes;
  size_t layout_index;
} wout;

typedef struct {
  const cz_tensor *in;
  cz_tensor_plan plan;
  int64_t nrows, ncols;
  size_t out_index[CZ_MAX_OUTPUTS];   /* index in the layout's tensors */
  pthread_mutex_t lock;               /* guards stat */
  cz_errstat stat;
  atomic_int chunks_left;             /* tasks of this tensor still to finish */
  /* whole-tensor mode */
  bool touched;                       /* a step selects it: phase 1 computes it */
  wout *outs;                         /* its output tensors */
  int n_outs;
  json_t *info;                       /* figures for the report (object) */
  json_t *notes;                      /* why steps left it alone (array of strings) */
  json_t *node;                       /* its layout (docs/formats.md) */
  double aw_err;                      /* sum_j E[x_j^2] sum_i dW_ij^2, when has_aw */
  bool has_aw;
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
  atomic_uint_fast64_t unflushed;  /* output bytes written since writeback was last started */
  uint64_t bytes_total;
  /* whole-tensor mode */
  bool whole;
  const step_t *enc;                  /* the final encoding step, NULL: dense outputs */
  int enc_index;
  size_t *order;                      /* task -> tensor (SIZE_MAX: nothing but phase 2) */
  atomic_size_t pending;              /* phase-1 tasks still to finish */
  int scratch_fd;
  atomic_uint_fast64_t scratch_end;
  bool finished;                      /* phase 2 done: the layout and the file are complete */
  pthread_mutex_t glock;              /* guards the lazy global pre-pass below */
  bool gdone;
  void *gstate;
  bool *gsel;                         /* input tensors the first step selects */
  cz_error gerr;
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

/* "include" / "exclude": lists of fnmatch(3) patterns over tensor names. They are the
 * pipeline's, for every step: the method sees the step without them. */
static cz_err_code parse_patterns(const json_t *v, int idx, const char *key, json_t **out,
                                  cz_error *err) {
  *out = NULL;
  if (v == NULL) return CZ_E_OK;
  size_t i;
  json_t *p;
  if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 4096)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].%s must be a non-empty list of glob patterns", idx, key);
  json_array_foreach(v, i, p) {
    if (!json_is_string(p) || json_string_length(p) == 0 || json_string_length(p) > CZ_MAX_NAME)
      return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d].%s[%zu] must be a non-empty glob pattern (string)", idx, key, i);
  }
  *out = json_incref((json_t *)v);
  return CZ_E_OK;
}

static cz_err_code parse_selectors(const json_t *s, int idx, step_t *st, json_t **stripped,
                                   cz_error *err) {
  st->include = st->exclude = NULL;
  if (!json_is_object(s)) {
    *stripped = json_incref((json_t *)s);
    return CZ_E_OK;
  }
  cz_err_code rc;
  if ((rc = parse_patterns(json_object_get(s, "include"), idx, "include", &st->include, err)) ||
      (rc = parse_patterns(json_object_get(s, "exclude"), idx, "exclude", &st->exclude, err))) {
    json_decref(st->include);
    st->include = NULL;
    return rc;
  }
  *stripped = json_copy((json_t *)s);
  if (!*stripped) {
    json_decref(st->include);
    json_decref(st->exclude);
    st->include = st->exclude = NULL;
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  json_object_del(*stripped, "include");
  json_object_del(*stripped, "exclude");
  return CZ_E_OK;
}

/* Transforms first, then at most one final encoding step; a global prune leads; a compressed
 * sparse layout is the last word on its tensors. */
static cz_err_code check_step_order(cz_recipe *r, cz_error *err) {
  int enc = -1;
  for (int i = 0; i < r->n_steps; i++) {
    const cz_method *m = r->steps[i].method;
    if (m->kind != CZ_METHOD_TRANSFORM) {
      if (enc >= 0)
        return cz_err_set(err, CZ_E_INVALID_RECIPE,
                          "steps[%d]: only one encoding step (quantize or palettize) per recipe: "
                          "steps[%d] already produces the final bytes", i, enc);
      enc = i;
    } else if (enc >= 0) {
      return cz_err_set(err, CZ_E_INVALID_RECIPE,
                        "steps[%d]: a %s step must come before the encoding step steps[%d]", i,
                        m->op, enc);
    }
    if (m->kind != CZ_METHOD_ROWS) r->whole = true;
    json_t *d = m->describe(r->steps[i].params);
    const char *scope = json_string_value(json_object_get(d, "scope"));
    const char *layout = json_string_value(json_object_get(d, "layout"));
    bool global = scope && strcmp(scope, "global") == 0;
    bool sparse = layout && strcmp(layout, "dense") != 0;
    json_decref(d);
    if (global && i != 0)
      return cz_err_set(err, CZ_E_INVALID_RECIPE,
                        "steps[%d].scope: \"global\" ranks the input tensors, so it must be the "
                        "first step", i);
    if (sparse && i != r->n_steps - 1)
      return cz_err_set(err, CZ_E_INVALID_RECIPE,
                        "steps[%d].layout: a compressed sparse layout stores the final values, so "
                        "its step must be the last one", i);
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
    json_t *stripped = NULL;
    step_t *st = &r->steps[r->n_steps];
    if ((rc = parse_selectors(s, (int)i, st, &stripped, err))) goto fail;
    const cz_method *m;
    void *params = NULL;
    rc = cz_method_for_step(stripped, (int)i, &m, err);
    if (!rc) rc = m->parse(stripped, (int)i, &params, err);
    json_decref(stripped);
    if (rc) {
      json_decref(st->include);
      json_decref(st->exclude);
      st->include = st->exclude = NULL;
      goto fail;
    }
    st->method = m;
    st->params = params;
    r->n_steps++;
  }
  if ((rc = check_step_order(r, err))) goto fail;
  if ((rc = parse_output(json_object_get(body, "output"), r, err))) goto fail;
  for (int i = 0; r->format && i < r->n_steps; i++)
    if (!r->steps[i].method->supports_format(r->steps[i].params, r->format)) {
      rc = cz_err_set(err, CZ_E_INVALID_RECIPE, "output.format: %s cannot hold the output of %s",
                      cz_format_name(r->format), r->steps[i].method->name);
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
  for (int i = 0; i < r->n_steps; i++) {
    r->steps[i].method->free_params(r->steps[i].params);
    json_decref(r->steps[i].include);
    json_decref(r->steps[i].exclude);
  }
  free(r);
}

json_t *cz_recipe_normalized(const cz_recipe *r) {
  json_t *steps = json_array();
  for (int i = 0; i < r->n_steps; i++) {
    json_t *d = r->steps[i].method->describe(r->steps[i].params);
    if (r->steps[i].include) json_object_set(d, "include", r->steps[i].include);
    if (r->steps[i].exclude) json_object_set(d, "exclude", r->steps[i].exclude);
    json_array_append_new(steps, d);
  }
  json_t *out = json_object();
  if (r->format) json_object_set_new(out, "format", json_string(cz_format_name(r->format)));
  return json_pack("{s:o, s:o}", "steps", steps, "output", out);
}

cz_format cz_recipe_format(const cz_recipe *r) { return r->format; }

/* The job's importance matrix as the whole-tensor methods' lookup: a weight's values when
 * there are n of them. */
static const float *imatrix_importance(const void *ud, const char *name, int64_t n) {
  int64_t have = 0;
  const float *v = cz_imatrix_find(ud, name, &have);
  return v && have == n ? v : NULL;
}

void cz_recipe_set_imatrix(cz_recipe *r, const cz_imatrix *im) {
  r->imatrix = im;
  if (!r->importance_explicit) {
    r->importance = im ? imatrix_importance : NULL;
    r->importance_ud = im;
  }
}

void cz_recipe_set_importance(cz_recipe *r, cz_importance_fn fn, const void *ud) {
  r->importance_explicit = fn != NULL;
  r->importance = fn ? fn : r->imatrix ? imatrix_importance : NULL;
  r->importance_ud = fn ? ud : r->imatrix;
}

void cz_recipe_set_default_format(cz_recipe *r, cz_format f) {
  if (r->format == 0) r->format = f;
}

/* ---- plan ---- */

/* The input's format when every step can write it, else the other one. */
static cz_format choose_format(const cz_recipe *r, const cz_model *in) {
  if (r->format) return r->format;
  const cz_format other = in->format == CZ_FORMAT_GGUF ? CZ_FORMAT_SAFETENSORS : CZ_FORMAT_GGUF;
  bool in_ok = true, other_ok = true;
  for (int i = 0; i < r->n_steps; i++) {
    in_ok &= r->steps[i].method->supports_format(r->steps[i].params, in->format);
    other_ok &= r->steps[i].method->supports_format(r->steps[i].params, other);
  }
  return in_ok || !other_ok ? in->format : other;
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

/* A step with no one type (a size budget) writes the file type of the ggml type that holds
 * most of the weights, the way llama.cpp calls a file "mostly Q4_K"; -1 if none has one. */
static int dominant_ftype(const cz_run *run) {
  uint64_t elems[sizeof llama_ftypes / sizeof llama_ftypes[0]] = {0};
  for (size_t i = 0; i < run->n_tensors; i++) {
    const tensor_state *s = &run->ts[i];
    if (!s->plan.transform || s->plan.n_out < 1) continue;
    const char *name = cz_type_get(s->plan.out[0].type)->name;
    for (size_t k = 0; k < sizeof llama_ftypes / sizeof llama_ftypes[0]; k++)
      if (strcmp(llama_ftypes[k].type, name) == 0) elems[k] += (uint64_t)cz_tensor_nelements(s->in);
  }
  int best = -1;
  for (size_t k = 0; k < sizeof llama_ftypes / sizeof llama_ftypes[0]; k++)
    if (elems[k] && (best < 0 || elems[k] > elems[best])) best = (int)k;
  return best < 0 ? -1 : llama_ftypes[best].ftype;
}

/* "quantization_config" (docs/formats.md 4.10): compressed-tensors' block (or bitsandbytes',
 * 4.11), with the modules the final step left unquantized (2-D "<module>.weight" tensors
 * stored otherwise) in "ignore" (llm_int8_skip_modules). Whole-tensor mode only (the methods with quant_config are whole-tensor encoders). */
static cz_err_code quant_config_metadata(cz_run *run, cz_error *err) {
  json_t *qc = run->enc->method->quant_config(run->enc->params);
  if (!qc) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  json_t *ignore = json_array();
  for (size_t i = 0; i < run->n_tensors; i++) {
    const tensor_state *s = &run->ts[i];
    const char *name = s->in->name, *enc = NULL;
    size_t len = strlen(name);
    if (s->in->n_dims != 2 || len <= 7 || strcmp(name + len - 7, ".weight") != 0) continue;
    if (s->touched && s->node) {
      enc = json_string_value(json_object_get(s->node, "encoding"));
      /* a transform (low rank, kept rows) replaced the module: its parts have other names */
      if (!enc) continue;
    }
    if (enc && strcmp(enc, "plain") != 0 && strcmp(enc, "raw") != 0) continue;
    json_array_append_new(ignore, json_stringn(name, len - 7));
  }
  /* a method names its loader's block (bitsandbytes) or gets compressed-tensors' */
  const char *qm = json_string_value(json_object_get(qc, "quant_method"));
  if (qm && strcmp(qm, "bitsandbytes") == 0) {
    json_object_set_new(qc, "llm_int8_skip_modules", ignore);
  } else {
    json_object_set_new(qc, "quant_method", json_string("compressed-tensors"));
    json_object_set_new(qc, "quantization_status", json_string("compressed"));
    json_object_set_new(qc, "ignore", ignore);
  }
  char *txt = json_dumps(qc, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(qc);
  if (!txt) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz_err_code rc = cz_layout_set_meta(run->layout, "quantization_config", txt, err);
  free(txt);
  return rc;
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
    if (ftype < 0 && quantized) ftype = dominant_ftype(run);
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
  if (!rc && run->enc && run->enc->method->quant_config) rc = quant_config_metadata(run, err);
  return rc;
}

static void shape_json_reversed(json_t *arr, int n_dims, const int64_t *ne) {
  for (int d = n_dims - 1; d >= 0; d--) json_array_append_new(arr, json_integer(ne[d]));
}

static bool match_any(const json_t *patterns, const char *name) {
  size_t i;
  json_t *p;
  json_array_foreach(patterns, i, p) {
    if (fnmatch(json_string_value(p), name, 0) == 0) return true;
  }
  return false;
}

/* Does the step's include/exclude let this name through? *why says why not. */
static bool names_selected(const step_t *st, const char *name, const char **why) {
  if (st->include && !match_any(st->include, name)) {
    *why = "not matched by the step's include patterns";
    return false;
  }
  if (st->exclude && match_any(st->exclude, name)) {
    *why = "matched by the step's exclude patterns";
    return false;
  }
  return true;
}

/* A tensor written as it is. */
static void plan_copy_of(const cz_tensor *t, const char *note, cz_tensor_plan *p) {
  memset(p, 0, sizeof *p);
  p->note = note;
  p->n_out = 1;
  snprintf(p->out[0].name, sizeof p->out[0].name, "%s", t->name);
  p->out[0].type = t->type;
  p->out[0].n_dims = t->n_dims;
  memcpy(p->out[0].ne, t->ne, sizeof t->ne);
  p->out[0].row_bytes = cz_type_row_size(t->type, t->ne[0]);
  p->out_type_name = cz_type_get(t->type)->name;
}

static cz_err_code plan_whole(cz_run *run, cz_error *err);

static cz_err_code plan_tensor(cz_run *run, size_t i, cz_error *err) {
  tensor_state *s = &run->ts[i];
  const cz_tensor *t = &run->in->tensors[i];
  s->in = t;
  s->ncols = t->n_dims ? t->ne[0] : 1;
  s->nrows = 1;
  for (int d = 1; d < t->n_dims; d++) s->nrows *= t->ne[d];
  cz_err_code rc;
  if (run->step) {
    cz_plan_ctx ctx = {.model = run->in, .index = i, .out_format = run->format,
                       .imatrix = run->recipe->imatrix, .state = run->plan_state,
                       .importance = run->recipe->importance,
                       .importance_ud = run->recipe->importance_ud};
    if ((rc = run->step->method->plan(run->step->params, &ctx, t, &s->plan, err))) return rc;
    const char *why = NULL;
    if (s->plan.transform && !names_selected(run->step, t->name, &why)) plan_copy_of(t, why, &s->plan);
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
  run->scratch_fd = -1;
  run->whole = r->whole;
  run->enc_index = -1;
  pthread_mutex_init(&run->glock, NULL);
  if (!run->whole) {
    run->step = r->n_steps ? &r->steps[0] : NULL;
  } else if (r->steps[r->n_steps - 1].method->kind != CZ_METHOD_TRANSFORM) {
    run->enc_index = r->n_steps - 1;
    run->enc = &r->steps[run->enc_index];
    if (run->enc->method->kind == CZ_METHOD_ROWS) run->step = run->enc;
  }
  snprintf(run->input_sha256, sizeof run->input_sha256, "%s", input_sha256 ? input_sha256 : "");
  run->format = choose_format(r, in);
  cz_err_code rc = CZ_E_OK;
  for (int i = 0; i < r->n_steps; i++)
    if (!r->steps[i].method->supports_format(r->steps[i].params, run->format)) {
      rc = cz_err_set(err, CZ_E_INVALID_RECIPE, "output.format: %s cannot hold the output of %s",
                      cz_format_name(run->format), r->steps[i].method->name);
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
    cz_plan_ctx ctx = {.model = in, .out_format = run->format, .imatrix = r->imatrix,
                       .importance = r->importance, .importance_ud = r->importance_ud,
                       .step_index = (int)(run->step - r->steps)};
    if ((rc = run->step->method->plan_begin(run->step->params, &ctx, &run->plan_state, err)))
      goto fail;
  }
  if (run->whole) {
    if ((rc = plan_whole(run, err))) goto fail;
    *out = run;
    return CZ_E_OK;
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
    for (size_t i = 0; i < run->n_tensors; i++) {
      tensor_state *s = &run->ts[i];
      if (s->in) pthread_mutex_destroy(&s->lock);
      for (int k = 0; k < s->n_outs; k++) free(s->outs[k].name);
      free(s->outs);
      json_decref(s->info);
      json_decref(s->notes);
      json_decref(s->node);
    }
  if (run->gstate) run->recipe->steps[0].method->global_free(run->gstate);
  free(run->gsel);
  free(run->order);
  if (run->scratch_fd >= 0) close(run->scratch_fd);
  pthread_mutex_destroy(&run->glock);
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
  if (run->whole) {
    if (!s->touched) return s->in->nbytes;
    for (int k = 0; k < s->n_outs; k++) b += s->outs[k].nbytes;
    return b;
  }
  for (int k = 0; k < s->plan.n_out; k++) b += run->layout->tensors[s->out_index[k]].nbytes;
  return b;
}

static bool step_selects(const cz_run *run, int k, const cz_wt *w, const char **why);
static bool item_plan(const cz_run *run, const tensor_state *s, const cz_wt *w,
                      cz_tensor_plan *p);
static void wt_of_input(const cz_run *run, size_t i, cz_wt *w);

/* Whole-tensor mode: sizes are known only after computing; the plan says which steps take
 * each tensor. */
static json_t *plan_json_whole(const cz_run *run) {
  json_t *arr = json_array();
  cz_wt *w = malloc(sizeof *w);
  for (size_t i = 0; w && i < run->n_tensors; i++) {
    const tensor_state *s = &run->ts[i];
    json_t *shape = json_array();
    shape_json_reversed(shape, s->in->n_dims, s->in->ne);
    json_t *t = json_pack("{s:s, s:o, s:s, s:I}", "name", s->in->name, "shape", shape,
                          "input_dtype", cz_type_get(s->in->type)->name, "bytes_in",
                          (json_int_t)s->in->nbytes);
    if (s->touched) {
      json_t *steps = json_array();
      wt_of_input(run, i, w);
      for (int k = 0; k < run->recipe->n_steps; k++) {
        const char *why;
        cz_tensor_plan p;
        bool sel = run->recipe->steps[k].method->kind == CZ_METHOD_ROWS
                       ? item_plan(run, s, w, &p)
                       : step_selects(run, k, w, &why);
        if (sel) json_array_append_new(steps, json_integer(k));
      }
      json_object_set_new(t, "steps", steps);
      json_object_set_new(t, "output_type", json_null());
      json_object_set_new(t, "bytes_out", json_null());
    } else {
      json_object_set_new(t, "output_type", json_string(s->plan.out_type_name));
      json_object_set_new(t, "bytes_out", json_integer((json_int_t)s->in->nbytes));
      json_object_set_new(t, "note", json_string(s->plan.note));
    }
    json_array_append_new(arr, t);
  }
  free(w);
  return json_pack("{s:s, s:n, s:s, s:o}", "format", cz_format_name(run->format), "bytes",
                   "mode", "whole-tensor", "tensors", arr);
}

json_t *cz_run_plan_json(const cz_run *run) {
  if (run->whole) return plan_json_whole(run);
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

static int open_scratch(int out_fd);

cz_err_code cz_run_begin(cz_run *run, int fd, cz_error *err) {
  run->fd = fd;
  if (run->whole) {
    /* phase 1 writes into an unnamed file beside the output; phase 2 lays the file out */
    if (run->scratch_fd < 0 && (run->scratch_fd = open_scratch(fd)) < 0)
      return cz_err_set(err, CZ_E_IO, "cannot create a scratch file: %s", strerror(errno));
    return CZ_E_OK;
  }
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

/* Start the kernel's writeback of the output every FLUSH_BYTES written (asynchronous, Linux's
 * sync_file_range): the caller's final fsync then waits for the tail only, instead of for the
 * whole artifact (0.6 s of serial wall time for a 900 MB Q8_0 model here). The data is not
 * durable until that fsync; this only moves the disk's work under the computation. */
#define FLUSH_BYTES ((uint64_t)32 << 20)

static void wrote(cz_run *run, uint64_t n) {
#ifdef SYNC_FILE_RANGE_WRITE
  if (atomic_fetch_add(&run->unflushed, n) + n >= FLUSH_BYTES &&
      atomic_exchange(&run->unflushed, 0) >= FLUSH_BYTES)
    (void)sync_file_range(run->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
  (void)run, (void)n;
#endif
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
    wrote(run, n);
    cz_model_release(run->in, s->in->data + done, n);
    atomic_fetch_add(&run->bytes_done, n);
  }
  pthread_mutex_lock(&s->lock);
  s->stat.count += (uint64_t)cz_tensor_nelements(s->in);
  pthread_mutex_unlock(&s->lock);
  return CZ_E_OK;
}

/* Whether x holds a NaN or an Inf, on the exponent bits (all ones). Only the answer matters
 * (the error names the row), so the AVX2 loop ORs compare masks and tests once per chunk:
 * isfinite() per element, or a count, cost a whole-model Q8_0 run 7 % of its CPU time. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx2"))) static int64_t nonfinite_avx2(const float *x, int64_t n,
                                                               bool *any) {
  const __m256i ex = _mm256_set1_epi32(0x7f800000);
  __m256i acc = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 32; k += 8) {
      const __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + k)), ex);
      acc = _mm256_or_si256(acc, _mm256_cmpeq_epi32(v, ex));
    }
  *any = !_mm256_testz_si256(acc, acc);
  return i;
}
#endif

static bool any_nonfinite(const float *x, int64_t n) {
  bool any = false;
  int64_t i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx2")) i = nonfinite_avx2(x, n, &any);
#endif
  for (; i < n && !any; i++) {
    uint32_t u;
    memcpy(&u, x + i, sizeof u);
    any = (u & 0x7f800000u) == 0x7f800000u;
  }
  return any;
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
  int64_t rel = r0;  /* first row not yet released */
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
    const uint8_t *src = s->in->data + (uint64_t)r * in_row;
    int finite = s->in->type == CZ_TYPE_F16 ? cz_f16_to_f32_finite(src, x, nr * s->ncols) : -1;
    if (finite < 0) {
      in_tr->to_f32(src, x, nr * s->ncols);
      finite = !any_nonfinite(x, nr * s->ncols);
    }
    if (!finite) {
      rc = cz_err_set(err, CZ_E_NON_FINITE, "tensor %s: row %lld holds NaN or Inf values",
                      s->in->name, (long long)r);
      break;
    }
    encode_rows(run, s, x, r, nr, obuf);
    for (int k = 0; k < s->plan.n_out && !rc; k++) {
      uint64_t off = run->layout->tensors[s->out_index[k]].file_offset +
                     (uint64_t)r * s->plan.out[k].row_bytes;
      rc = pwrite_all(run->fd, obuf[k], (size_t)(s->plan.out[k].row_bytes * (uint64_t)nr), off, err);
      if (!rc) wrote(run, s->plan.out[k].row_bytes * (uint64_t)nr);
    }
    if (rc) break;
    run->step->method->decode(run->step->params, &s->plan, (const uint8_t *const *)obuf, nr,
                              s->ncols, y);
    cz_errstat_add(&st, x, y, nr * s->ncols);
    if ((uint64_t)(r + nr - rel) * in_row >= RELEASE_BYTES || r + nr >= r1) {
      cz_model_release(run->in, s->in->data + (uint64_t)rel * in_row, (uint64_t)(r + nr - rel) * in_row);
      rel = r + nr;
    }
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

static cz_err_code task_whole(cz_run *run, size_t i, cz_error *err);

cz_err_code cz_run_task(cz_run *run, size_t i, cz_error *err) {
  if (i >= run->n_tasks) return cz_err_set(err, CZ_E_INTERNAL, "task %zu out of range", i);
  if (atomic_load(&run->canceled)) return cz_err_set(err, CZ_E_CANCELED, "canceled");
  if (run->whole) return task_whole(run, i, err);
  const task_t *t = &run->tasks[i];
  tensor_state *s = &run->ts[t->tensor];
  cz_err_code rc = s->plan.transform ? task_transform(run, s, t->row_begin, t->row_end, err)
                                     : task_copy(run, s, err);
  if (rc == CZ_E_OK && atomic_fetch_sub(&s->chunks_left, 1) == 1)
    atomic_fetch_add(&run->tensors_done, 1);
  return rc;
}

void cz_run_cancel(cz_run *run) { atomic_store(&run->canceled, 1); }
bool cz_run_canceled(const cz_run *run) { return atomic_load(&run->canceled) != 0; }

void cz_run_progress(const cz_run *run, uint64_t *tensors_done, uint64_t *tensors_total,
                     uint64_t *bytes_done, uint64_t *bytes_total) {
  *tensors_done = atomic_load(&((cz_run *)run)->tensors_done);
  *tensors_total = run->n_tensors;
  *bytes_done = atomic_load(&((cz_run *)run)->bytes_done);
  *bytes_total = run->bytes_total;
}

/* ---- whole-tensor mode ----
 *
 * Phase 1 (one task per selected tensor, any order, any thread): load the tensor as float32,
 * run the transform steps over it (a step may replace one tensor by several), encode every
 * resulting tensor (the final step, a layout a transform chose, or dense in the input's float
 * type), append the bytes to the scratch file, and measure the decoded result, recomposed
 * through the transforms, against the original tensor. Phase 2 (run by whichever task
 * finishes phase 1 last): lay the output out in file order, write its header, copy the
 * scratch bytes into place (copy_file_range) and the untouched tensors from the input. */

static bool is_float_type(cz_type t) {
  return t == CZ_TYPE_F32 || t == CZ_TYPE_F16 || t == CZ_TYPE_BF16;
}

/* The input tensor as a cz_wt without data (plan-time selection). */
static void wt_of_input(const cz_run *run, size_t i, cz_wt *w) {
  const cz_tensor *t = &run->in->tensors[i];
  memset(w, 0, sizeof *w);
  snprintf(w->name, sizeof w->name, "%s", t->name);
  w->n_dims = t->n_dims;
  memcpy(w->ne, t->ne, sizeof w->ne);
  w->cols = t->n_dims ? t->ne[0] : 1;
  w->rows = 1;
  for (int d = 1; d < t->n_dims; d++) w->rows *= t->ne[d];
  if (cz_tensor_nelements(t) == 0) w->rows = w->cols = 0;
  const cz_recipe *r = run->recipe;
  if (!r->importance || w->cols == 0) return;
  /* a stack of experts [n_expert][ne[1]][ne[0]]: llama.cpp's imatrix holds one vector per
   * expert, each row reads its own expert's */
  if (t->n_dims == 3 && t->ne[2] > 1) {
    w->importance = r->importance(r->importance_ud, t->name, w->cols * t->ne[2]);
    if (w->importance) {
      w->importance_rows = t->ne[1];
      return;
    }
  }
  w->importance = r->importance(r->importance_ud, t->name, w->cols);
}

/* Does step k select w? *why (static) says why not when a method refused it (NULL when the
 * include/exclude patterns did). */
static bool step_selects(const cz_run *run, int k, const cz_wt *w, const char **why) {
  const step_t *st = &run->recipe->steps[k];
  const char *dummy;
  *why = NULL;
  if (w->raw || !names_selected(st, w->name, &dummy)) return false;
  *why = st->method->refuse(st->params, w, st->include != NULL);
  return *why == NULL;
}

/* A row-wise final step's plan for a tensor derived from input tensor s: the plan made for
 * the input (its type choice, made in file order at plan time) with the names and shapes of
 * w. False when it does not fit (a row length that is not a multiple of the block size). */
static bool item_plan(const cz_run *run, const tensor_state *s, const cz_wt *w,
                      cz_tensor_plan *p) {
  const char *why;
  if (!s->plan.transform || !names_selected(run->enc, w->name, &why)) return false;
  *p = s->plan;
  const cz_tensor *t = s->in;
  const size_t len = strlen(t->name);
  for (int k = 0; k < p->n_out; k++) {
    if (strncmp(p->out[k].name, t->name, len) != 0) return false;
    char name[sizeof p->out[k].name];
    int n = snprintf(name, sizeof name, "%s%s", w->name, p->out[k].name + len);
    if (n < 0 || (size_t)n >= sizeof name) return false;
    memcpy(p->out[k].name, name, sizeof name);
    bool full = p->out[k].n_dims == t->n_dims && memcmp(p->out[k].ne, t->ne, sizeof t->ne) == 0;
    if (full) {
      p->out[k].n_dims = w->n_dims;
      memcpy(p->out[k].ne, w->ne, sizeof w->ne);
      if ((p->out[k].row_bytes = cz_type_row_size(p->out[k].type, w->cols)) == 0) return false;
    } else if (p->out[k].ne[0] == 1 && p->out[k].ne[1] == s->nrows) {
      p->out[k].ne[1] = w->rows;  /* one value per row (int8 scales) */
    } else {
      return false;
    }
  }
  /* importance weights belong to the input columns: kept when w still has them */
  p->imatrix = w->importance && w->cols == s->ncols ? s->plan.imatrix : NULL;
  return true;
}

static cz_err_code plan_whole(cz_run *run, cz_error *err) {
  const cz_recipe *r = run->recipe;
  const cz_model *in = run->in;
  cz_err_code rc;
  for (int k = 0; k < r->n_steps; k++) {
    const cz_method *m = r->steps[k].method;
    if (m->kind == CZ_METHOD_ROWS || !m->plan_check) continue;
    cz_plan_ctx ctx = {in, 0, run->format, r->imatrix, NULL, r->importance, r->importance_ud, k};
    if ((rc = m->plan_check(r->steps[k].params, &ctx, err))) return rc;
  }
  if (r->steps[0].method->global_prepare) {
    run->gsel = calloc(in->n_tensors ? in->n_tensors : 1, sizeof *run->gsel);
    if (!run->gsel) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  size_t n_touched = 0;
  for (size_t i = 0; i < in->n_tensors; i++) {
    tensor_state *s = &run->ts[i];
    const cz_tensor *t = &in->tensors[i];
    s->in = t;
    s->ncols = t->n_dims ? t->ne[0] : 1;
    s->nrows = 1;
    for (int d = 1; d < t->n_dims; d++) s->nrows *= t->ne[d];
    pthread_mutex_init(&s->lock, NULL);
    run->bytes_total += t->nbytes;
    if (run->step) {
      cz_plan_ctx ctx = {in, i, run->format, r->imatrix, run->plan_state, r->importance,
                         r->importance_ud, run->enc_index};
      if ((rc = run->step->method->plan(run->step->params, &ctx, t, &s->plan, err))) return rc;
    }
    const char *note = NULL;
    if (!is_float_type(t->type)) {
      note = "input type is not F32, F16 or BF16";
    } else {
      cz_wt w;
      wt_of_input(run, i, &w);
      for (int k = 0; k < r->n_steps && !s->touched; k++) {
        const char *why = NULL;
        if (r->steps[k].method->kind == CZ_METHOD_ROWS) {
          cz_tensor_plan p;
          s->touched = item_plan(run, s, &w, &p);
          if (!s->touched && !note) note = s->plan.note;
        } else {
          s->touched = step_selects(run, k, &w, &why);
          if (k == 0 && run->gsel) run->gsel[i] = s->touched;
        }
        if (!note && why) note = why;
      }
      if (!note) note = "not selected by any step";
    }
    if (s->touched) {
      n_touched++;
      continue;
    }
    plan_copy_of(t, note, &s->plan);
  }
  /* largest first, so that the longest tasks do not start last */
  size_t n = n_touched ? n_touched : 1;
  run->order = malloc(n * sizeof *run->order);
  if (!run->order) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  run->order[0] = SIZE_MAX;
  size_t j = 0;
  for (size_t i = 0; i < in->n_tensors; i++)
    if (run->ts[i].touched) run->order[j++] = i;
  for (size_t a = 1; a < j; a++) {
    size_t v = run->order[a], b = a;
    int64_t nv = cz_tensor_nelements(&in->tensors[v]);
    for (; b > 0 && cz_tensor_nelements(&in->tensors[run->order[b - 1]]) < nv; b--)
      run->order[b] = run->order[b - 1];
    run->order[b] = v;
  }
  run->n_tasks = n;
  atomic_init(&run->pending, n);
  return CZ_E_OK;
}

/* ---- phase 1 ---- */

typedef struct {
  cz_wt w;
  bool alive;      /* a leaf: not replaced by a transform */
  bool owns_f;
  double *dec;     /* decoded (leaves) or recomposed (replaced) values */
  json_t *node;
} witem;

typedef struct {
  int step, in, n_out, out[CZ_WT_MAX];
  void *undo;
} wrec;

typedef struct {
  witem *items;
  int n_items, cap_items;
  wrec *recs;
  int n_recs, cap_recs;
} wwork;

static void wwork_free(const cz_run *run, wwork *w) {
  for (int i = 0; i < w->n_items; i++) {
    if (w->items[i].owns_f) free(w->items[i].w.f);
    free(w->items[i].w.raw);
    free(w->items[i].dec);
    json_decref(w->items[i].node);
  }
  for (int i = 0; i < w->n_recs; i++)
    if (w->recs[i].undo) run->recipe->steps[w->recs[i].step].method->free_undo(w->recs[i].undo);
  free(w->items);
  free(w->recs);
}

static int push_item(wwork *w, const cz_wt *t, bool owns) {
  if (w->n_items == w->cap_items) {
    int c = w->cap_items ? 2 * w->cap_items : 8;
    witem *p = realloc(w->items, (size_t)c * sizeof *p);
    if (!p) return -1;
    w->items = p;
    w->cap_items = c;
  }
  witem *it = &w->items[w->n_items];
  memset(it, 0, sizeof *it);
  it->w = *t;
  it->alive = true;
  it->owns_f = owns;
  return w->n_items++;
}

static int push_rec(wwork *w, int step, int in) {
  if (w->n_recs == w->cap_recs) {
    int c = w->cap_recs ? 2 * w->cap_recs : 4;
    wrec *p = realloc(w->recs, (size_t)c * sizeof *p);
    if (!p) return -1;
    w->recs = p;
    w->cap_recs = c;
  }
  wrec *r = &w->recs[w->n_recs];
  memset(r, 0, sizeof *r);
  r->step = step;
  r->in = in;
  return w->n_recs++;
}

static cz_err_code ensure_global(cz_run *run, cz_error *err) {
  pthread_mutex_lock(&run->glock);
  if (!run->gdone) {
    const step_t *st = &run->recipe->steps[0];
    cz_error e = {0};
    if (st->method->global_prepare(st->params, run->in, run->gsel, &run->gstate, &e))
      run->gerr = e;
    run->gdone = true;
  }
  cz_err_code rc = run->gerr.code;
  if (rc && err) *err = run->gerr;
  pthread_mutex_unlock(&run->glock);
  return rc;
}

/* Figures of one step application or encoding go to the tensor's report directly when they
 * are about the tensor itself, under "parts" by name when about a tensor derived from it. */
static void merge_info(tensor_state *s, const char *part, json_t *info) {
  if (json_object_size(info) == 0) {
    json_decref(info);
    return;
  }
  if (part == NULL || strcmp(part, s->in->name) == 0) {
    json_object_update(s->info, info);
    json_decref(info);
    return;
  }
  json_t *parts = json_object_get(s->info, "parts");
  if (!parts) json_object_set_new(s->info, "parts", parts = json_object());
  json_t *prev = json_object_get(parts, part);
  if (prev) {
    json_object_update(prev, info);
    json_decref(info);
  } else {
    json_object_set_new(parts, part, info);
  }
}

static cz_err_code scratch_write(cz_run *run, tensor_state *s, const char *name, cz_type type,
                                 int n_dims, const int64_t *ne, const uint8_t *data,
                                 uint64_t nbytes, cz_error *err) {
  if (run->format == CZ_FORMAT_GGUF && strlen(name) > CZ_GGUF_MAX_NAME)
    return cz_err_set(err, CZ_E_UNSUPPORTED_INPUT,
                      "tensor %s: output name %s is longer than GGUF's %d bytes", s->in->name,
                      name, CZ_GGUF_MAX_NAME);
  wout *o = realloc(s->outs, (size_t)(s->n_outs + 1) * sizeof *o);
  if (!o) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  s->outs = o;
  o = &s->outs[s->n_outs];
  memset(o, 0, sizeof *o);
  if (!(o->name = strdup(name))) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  s->n_outs++;
  o->type = type;
  o->n_dims = n_dims;
  memcpy(o->ne, ne, sizeof o->ne);
  o->nbytes = nbytes;
  o->scratch_off = atomic_fetch_add(&run->scratch_end, nbytes);
  return nbytes ? pwrite_all(run->scratch_fd, data, (size_t)nbytes, o->scratch_off, err) : CZ_E_OK;
}

/* Dense in the input's float type. */
static cz_err_code encode_dense(const cz_wt *w, cz_type type, cz_wenc *enc, double *y,
                                json_t **node, cz_error *err) {
  const cz_type_traits *tr = cz_type_get(type);
  const int64_t n = w->rows * w->cols;
  uint8_t *b = malloc(tr->type_size * (size_t)n + 1);
  float *back = malloc(sizeof(float) * (size_t)n + 1);
  if (!b || !back) {
    free(b);
    free(back);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  tr->from_f32(w->f, b, n);
  tr->to_f32(b, back, n);
  for (int64_t i = 0; i < n; i++) y[i] = back[i];
  free(back);
  enc->n = 1;
  snprintf(enc->t[0].name, sizeof enc->t[0].name, "%s", w->name);
  enc->t[0].type = type;
  enc->t[0].n_dims = w->n_dims;
  memcpy(enc->t[0].ne, w->ne, sizeof w->ne);
  enc->t[0].data = b;
  enc->t[0].nbytes = tr->type_size * (uint64_t)n;
  *node = json_pack("{s:s, s:s, s:s}", "encoding", "plain", "type", tr->name, "tensor", w->name);
  return CZ_E_OK;
}

/* The row-wise final step over a whole tensor (experts with importance weights expert by
 * expert, as llama-quantize does). */
static cz_err_code encode_rows_whole(const cz_run *run, const cz_tensor_plan *p, const cz_wt *w,
                                     cz_wenc *enc, double *y, json_t **node, cz_error *err) {
  const cz_method *m = run->enc->method;
  const void *params = run->enc->params;
  uint8_t *ob[CZ_MAX_OUTPUTS] = {0};
  float *yf = malloc(sizeof(float) * (size_t)(w->rows * w->cols) + 1);
  bool oom = !yf;
  for (int k = 0; k < p->n_out; k++)
    oom |= !(ob[k] = malloc((size_t)(p->out[k].row_bytes * (uint64_t)w->rows) + 1));
  if (oom) {
    free(yf);
    for (int k = 0; k < CZ_MAX_OUTPUTS; k++) free(ob[k]);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  const int64_t per = w->n_dims >= 3 && w->ne[2] > 1 && p->imatrix ? w->ne[1] : w->rows;
  for (int64_t r = 0; r < w->rows; r += per) {
    cz_tensor_plan sub = *p;
    if (per != w->rows) sub.imatrix = p->imatrix + ((r / per) % w->ne[2]) * w->cols;
    uint8_t *o[CZ_MAX_OUTPUTS] = {0};
    for (int k = 0; k < p->n_out; k++) o[k] = ob[k] + (uint64_t)r * p->out[k].row_bytes;
    int64_t nr = r + per <= w->rows ? per : w->rows - r;
    m->encode(params, &sub, w->f + r * w->cols, nr, w->cols, o);
  }
  m->decode(params, p, (const uint8_t *const *)ob, w->rows, w->cols, yf);
  for (int64_t i = 0; i < w->rows * w->cols; i++) y[i] = yf[i];
  free(yf);
  enc->n = p->n_out;
  for (int k = 0; k < p->n_out; k++) {
    snprintf(enc->t[k].name, sizeof enc->t[k].name, "%s", p->out[k].name);
    enc->t[k].type = p->out[k].type;
    enc->t[k].n_dims = p->out[k].n_dims;
    memcpy(enc->t[k].ne, p->out[k].ne, sizeof enc->t[k].ne);
    enc->t[k].data = ob[k];
    enc->t[k].nbytes = p->out[k].row_bytes * (uint64_t)w->rows;
  }
  if (strcmp(m->name, "quantize.int8") == 0 && p->n_out == 2)
    *node = json_pack("{s:s, s:s, s:s}", "encoding", "int8", "tensor", p->out[0].name, "scale",
                      p->out[1].name);
  else if (p->n_out == 1)
    *node = json_pack("{s:s, s:s, s:s}", "encoding", "plain", "type",
                      cz_type_get(p->out[0].type)->name, "tensor", p->out[0].name);
  else {
    json_t *names = json_array();
    for (int k = 0; k < p->n_out; k++) json_array_append_new(names, json_string(p->out[k].name));
    *node = json_pack("{s:s, s:s, s:o}", "encoding", m->name, "type", p->out_type_name, "tensors",
                      names);
  }
  return CZ_E_OK;
}

static cz_err_code encode_leaf(cz_run *run, tensor_state *s, wwork *ww, int it, cz_error *err) {
  witem *item = &ww->items[it];
  cz_wt *w = &item->w;
  if (w->raw) {
    const cz_type_traits *tr = cz_type_get(w->raw_type);
    item->node = json_pack("{s:s, s:s, s:s}", "encoding", "raw", "type", tr->name, "tensor",
                           w->name);
    return scratch_write(run, s, w->name, w->raw_type, w->n_dims, w->ne, w->raw, w->raw_bytes,
                         err);
  }
  const int64_t n = w->rows * w->cols;
  double *y = malloc(sizeof(double) * (size_t)(n ? n : 1));
  if (!y) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz_wenc enc;
  memset(&enc, 0, sizeof enc);
  json_t *node = NULL, *info = json_object();
  cz_wctx ctx = {run->in, (size_t)(s - run->ts), run->format, s->in->type, NULL, run->enc_index};
  cz_tensor_plan p;
  const char *why = NULL;
  cz_err_code rc;
  if (w->layout) {
    rc = w->layout->encode_tensor(w->layout_params, &ctx, w, &enc, y, info, &node, err);
  } else if (run->enc && run->enc->method->kind == CZ_METHOD_TENSOR &&
             step_selects(run, run->enc_index, w, &why)) {
    rc = run->enc->method->encode_tensor(run->enc->params, &ctx, w, &enc, y, info, &node, err);
  } else if (run->step && item_plan(run, s, w, &p)) {
    rc = encode_rows_whole(run, &p, w, &enc, y, &node, err);
  } else {
    if (run->step && s->plan.transform && strcmp(w->name, s->in->name) != 0) {
      char msg[CZ_WT_NAME + 96];
      snprintf(msg, sizeof msg, "%s: the encoding step cannot take it (row length %lld); stored dense",
               w->name, (long long)w->cols);
      json_array_append_new(s->notes, json_string(msg));
    } else if (why && run->enc) {
      char msg[CZ_WT_NAME + 96];
      snprintf(msg, sizeof msg, "steps[%d] (%s): %s", run->enc_index, w->name, why);
      json_array_append_new(s->notes, json_string(msg));
    }
    rc = encode_dense(w, s->in->type, &enc, y, &node, err);
  }
  for (int k = 0; k < enc.n && rc == CZ_E_OK; k++)
    rc = scratch_write(run, s, enc.t[k].name, enc.t[k].type, enc.t[k].n_dims, enc.t[k].ne,
                       enc.t[k].data, enc.t[k].nbytes, err);
  for (int k = 0; k < enc.n; k++) free(enc.t[k].data);
  merge_info(s, w->name, info);
  if (rc) {
    free(y);
    json_decref(node);
    return rc;
  }
  item->dec = y;
  item->node = node;
  return CZ_E_OK;
}

static cz_err_code apply_transforms(cz_run *run, tensor_state *s, wwork *ww, cz_error *err) {
  const cz_recipe *r = run->recipe;
  for (int k = 0; k < r->n_steps; k++) {
    const step_t *st = &r->steps[k];
    if (st->method->kind != CZ_METHOD_TRANSFORM) continue;
    const int n_now = ww->n_items;
    for (int it = 0; it < n_now; it++) {
      if (atomic_load(&run->canceled)) return cz_err_set(err, CZ_E_CANCELED, "canceled");
      witem *item = &ww->items[it];
      const char *why;
      if (!item->alive || item->w.layout) continue;
      char msg[CZ_WT_NAME + 96];
      if (!step_selects(run, k, &item->w, &why)) {
        if (why) {
          snprintf(msg, sizeof msg, "steps[%d] (%s): %s", k, item->w.name, why);
          json_array_append_new(s->notes, json_string(msg));
        }
        continue;
      }
      const void *global = NULL;
      if (k == 0 && st->method->global_prepare) {
        cz_err_code rc = ensure_global(run, err);
        if (rc) return rc;
        global = run->gstate;
      }
      cz_wctx ctx = {run->in, (size_t)(s - run->ts), run->format, s->in->type, global, k};
      cz_wt out[CZ_WT_MAX];
      int n_out = 0;
      void *undo = NULL;
      const char *note = NULL;
      json_t *info = json_object();
      cz_err_code rc = st->method->transform(st->params, &ctx, &item->w, out, &n_out, &undo,
                                             info, &note, err);
      if (rc) {
        json_decref(info);
        return rc;
      }
      merge_info(s, item->w.name, info);
      if (n_out == 0) {
        if (note) {
          snprintf(msg, sizeof msg, "steps[%d] (%s): %s", k, item->w.name, note);
          json_array_append_new(s->notes, json_string(msg));
        }
        continue;
      }
      int rec = push_rec(ww, k, it);
      if (rec < 0) {
        for (int o = 0; o < n_out; o++) free(out[o].f), free(out[o].raw);
        if (undo) st->method->free_undo(undo);
        return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
      }
      ww->recs[rec].undo = undo;
      item = &ww->items[it];
      item->alive = false;
      if (item->owns_f) free(item->w.f);
      item->w.f = NULL;
      for (int o = 0; o < n_out; o++) {
        int idx = push_item(ww, &out[o], true);
        if (idx < 0) {
          for (int q = o; q < n_out; q++) free(out[q].f), free(out[q].raw);
          return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
        }
        ww->recs[rec].out[ww->recs[rec].n_out++] = idx;
      }
    }
  }
  return CZ_E_OK;
}

/* Recompose the input's values and layout from the leaves, last transform first. */
static cz_err_code recompose(const cz_run *run, wwork *ww, cz_error *err) {
  for (int q = ww->n_recs - 1; q >= 0; q--) {
    const wrec *rec = &ww->recs[q];
    const cz_method *m = run->recipe->steps[rec->step].method;
    const void *params = run->recipe->steps[rec->step].params;
    witem *parent = &ww->items[rec->in];
    cz_wt ow[CZ_WT_MAX];
    const double *decs[CZ_WT_MAX];
    json_t *nodes[CZ_WT_MAX];
    for (int o = 0; o < rec->n_out; o++) {
      ow[o] = ww->items[rec->out[o]].w;
      decs[o] = ww->items[rec->out[o]].dec;
      nodes[o] = ww->items[rec->out[o]].node;
      ww->items[rec->out[o]].node = NULL;
    }
    double *y = malloc(sizeof(double) * (size_t)(parent->w.rows * parent->w.cols) + 1);
    if (!y) {
      for (int o = 0; o < rec->n_out; o++) json_decref(nodes[o]);
      return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    }
    m->untransform(params, rec->undo, &parent->w, ow, decs, rec->n_out, y);
    parent->dec = y;
    parent->node = m->layout_node(params, rec->undo, &parent->w, ow, nodes, rec->n_out);
    for (int o = 0; o < rec->n_out; o++) {
      free(ww->items[rec->out[o]].dec);
      ww->items[rec->out[o]].dec = NULL;
    }
  }
  return CZ_E_OK;
}

static void measure(tensor_state *s, const float *x, const double *y, const cz_wt *w) {
  const int64_t rows = w->rows, cols = w->cols;
  double r2 = 0, e2 = 0, mx = 0, dot = 0, g2 = 0, aw = 0;
  for (int64_t i = 0; i < rows; i++) {
    const float *imp = cz_wt_importance_row(w, i);
    for (int64_t j = 0; j < cols; j++) {
      double a = x[i * cols + j], b = y[i * cols + j], d = a - b;
      r2 += a * a;
      e2 += d * d;
      dot += a * b;
      g2 += b * b;
      if (fabs(d) > mx) mx = fabs(d);
      if (imp) aw += (double)imp[j] * d * d;
    }
  }
  s->stat.sum_ref2 = r2;
  s->stat.sum_err2 = e2;
  s->stat.max_abs = mx;
  s->stat.count = (uint64_t)(rows * cols);
  s->stat.sum_dot = dot;
  s->stat.sum_got2 = g2;
  s->aw_err = aw;
  s->has_aw = w->importance != NULL;
}

static cz_err_code whole_tensor(cz_run *run, size_t i, cz_error *err) {
  tensor_state *s = &run->ts[i];
  const cz_tensor *t = s->in;
  cz_wt w0;
  wt_of_input(run, i, &w0);
  const int64_t n = w0.rows * w0.cols;
  float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
  if (!x) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz_type_get(t->type)->to_f32(t->data, x, n);
  cz_model_release(run->in, t->data, t->nbytes);
  if (any_nonfinite(x, n)) {
    free(x);
    return cz_err_set(err, CZ_E_NON_FINITE, "tensor %s holds NaN or Inf values", t->name);
  }
  s->info = json_object();
  s->notes = json_array();
  w0.f = x;
  wwork ww = {0};
  cz_err_code rc = CZ_E_OK;
  if (push_item(&ww, &w0, false) < 0) rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  if (!rc) rc = apply_transforms(run, s, &ww, err);
  for (int it = 0; !rc && it < ww.n_items; it++) {
    if (!ww.items[it].alive) continue;
    if (atomic_load(&run->canceled)) rc = cz_err_set(err, CZ_E_CANCELED, "canceled");
    else rc = encode_leaf(run, s, &ww, it, err);
  }
  if (!rc) rc = recompose(run, &ww, err);
  if (!rc) {
    measure(s, x, ww.items[0].dec, &w0);
    s->node = ww.items[0].node;
    ww.items[0].node = NULL;
    atomic_fetch_add(&run->tensors_done, 1);
    atomic_fetch_add(&run->bytes_done, t->nbytes);
  }
  wwork_free(run, &ww);
  free(x);
  return rc;
}

/* ---- phase 2 ---- */

static int open_scratch(int out_fd) {
  char link[64], path[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", out_fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  const char *dirs[4] = {NULL, getenv("TMPDIR"), "/var/tmp", "/tmp"};
  if (n > 0 && path[0] == '/') {
    path[n] = 0;
    char *slash = strrchr(path, '/');
    slash[slash == path] = 0;  /* "/x" -> "/" */
    dirs[0] = path;
  }
  for (int i = 0; i < 4; i++) {
    if (!dirs[i] || !*dirs[i]) continue;
    int fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) return fd;
    char tmpl[PATH_MAX];
    if (snprintf(tmpl, sizeof tmpl, "%s/.compressd-scratch-XXXXXX", dirs[i]) >= (int)sizeof tmpl)
      continue;
    fd = mkostemp(tmpl, O_CLOEXEC);
    if (fd >= 0) {
      unlink(tmpl);
      return fd;
    }
  }
  return -1;
}

static cz_err_code copy_range(int in_fd, uint64_t in_off, int out_fd, uint64_t out_off,
                              uint64_t n, cz_error *err) {
  while (n > 0) {
    loff_t a = (loff_t)in_off, b = (loff_t)out_off;
    size_t want = n > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)n;
    ssize_t c = copy_file_range(in_fd, &a, out_fd, &b, want, 0);
    if (c < 0 && errno == EINTR) continue;
    if (c <= 0) break;  /* not supported here (EXDEV, EINVAL, ...): copy by hand */
    in_off += (uint64_t)c;
    out_off += (uint64_t)c;
    n -= (uint64_t)c;
  }
  enum { BUF = 1 << 20 };
  uint8_t *buf = n ? malloc(BUF) : NULL;
  if (n && !buf) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz_err_code rc = CZ_E_OK;
  while (n > 0 && !rc) {
    ssize_t c = pread(in_fd, buf, n < BUF ? (size_t)n : BUF, (off_t)in_off);
    if (c < 0 && errno == EINTR) continue;
    if (c <= 0) {
      rc = cz_err_set(err, CZ_E_IO, "reading the scratch file: %s", c ? strerror(errno) : "short");
      break;
    }
    rc = pwrite_all(out_fd, buf, (size_t)c, out_off, err);
    in_off += (uint64_t)c;
    out_off += (uint64_t)c;
    n -= (uint64_t)c;
  }
  free(buf);
  return rc;
}

static json_t *shape_st(int n_dims, const int64_t *ne) {
  json_t *a = json_array();
  shape_json_reversed(a, n_dims, ne);
  return a;
}

/* "compressd.layout": how every computed tensor is stored (docs/formats.md). */
static cz_err_code layout_map(cz_run *run, cz_error *err) {
  json_t *tensors = json_object();
  for (size_t i = 0; i < run->n_tensors; i++) {
    const tensor_state *s = &run->ts[i];
    if (!s->touched) continue;
    const cz_type_traits *tr = cz_type_get(s->in->type);
    json_object_set_new(tensors, s->in->name,
                        json_pack("{s:o, s:s, s:O}", "shape", shape_st(s->in->n_dims, s->in->ne),
                                  "dtype", tr->name, "layout", s->node));
  }
  json_t *doc = json_pack("{s:i, s:o}", "version", 1, "tensors", tensors);
  char *txt = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(doc);
  if (!txt) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz_err_code rc = run->format == CZ_FORMAT_GGUF
                       ? cz_layout_set_str(run->layout, "compressd.layout", txt, err)
                       : cz_layout_set_meta(run->layout, "compressd.layout", txt, err);
  free(txt);
  return rc;
}

static cz_err_code finish_whole(cz_run *run, cz_error *err) {
  cz_layout *l = run->layout;
  cz_err_code rc = CZ_E_OK;
  for (size_t i = 0; i < run->n_tensors && !rc; i++) {
    tensor_state *s = &run->ts[i];
    if (!s->touched) {
      s->out_index[0] = l->n_tensors;
      rc = cz_layout_add_tensor(l, s->plan.out[0].name, s->plan.out[0].type, s->plan.out[0].n_dims,
                                s->plan.out[0].ne, err);
      continue;
    }
    for (int k = 0; k < s->n_outs && !rc; k++) {
      s->outs[k].layout_index = l->n_tensors;
      rc = cz_layout_add_tensor(l, s->outs[k].name, s->outs[k].type, s->outs[k].n_dims,
                                s->outs[k].ne, err);
    }
  }
  if (rc || (rc = layout_metadata(run, err)) || (rc = layout_map(run, err)) ||
      (rc = cz_layout_finish(l, err)) || (rc = cz_layout_write_frame(l, run->fd, err)))
    return rc;
  for (size_t i = 0; i < run->n_tensors && !rc; i++) {
    tensor_state *s = &run->ts[i];
    if (atomic_load(&run->canceled)) return cz_err_set(err, CZ_E_CANCELED, "canceled");
    if (!s->touched) {
      rc = pwrite_all(run->fd, s->in->data, (size_t)s->in->nbytes,
                      l->tensors[s->out_index[0]].file_offset, err);
      cz_model_release(run->in, s->in->data, s->in->nbytes);
      s->stat.count = (uint64_t)cz_tensor_nelements(s->in);
      atomic_fetch_add(&run->bytes_done, s->in->nbytes);
      atomic_fetch_add(&run->tensors_done, 1);
      continue;
    }
    for (int k = 0; k < s->n_outs && !rc; k++)
      rc = copy_range(run->scratch_fd, s->outs[k].scratch_off, run->fd,
                      l->tensors[s->outs[k].layout_index].file_offset, s->outs[k].nbytes, err);
  }
  if (rc) return rc;
  close(run->scratch_fd);
  run->scratch_fd = -1;
  run->finished = true;
  return CZ_E_OK;
}

static cz_err_code task_whole(cz_run *run, size_t i, cz_error *err) {
  if (run->scratch_fd < 0) return cz_err_set(err, CZ_E_INTERNAL, "cz_run_begin was not called");
  size_t tensor = run->order[i];
  cz_err_code rc = tensor == SIZE_MAX ? CZ_E_OK : whole_tensor(run, tensor, err);
  if (rc) return rc;
  if (atomic_fetch_sub(&run->pending, 1) == 1) rc = finish_whole(run, err);
  return rc;
}

cz_err_code cz_run_set_input_sha256(cz_run *run, const char *hex, cz_error *err) {
  enum { HEX = 64 }; /* a SHA-256 digest in hex */
  if (strlen(run->input_sha256) != HEX || hex == NULL || strlen(hex) != HEX ||
      strspn(hex, "0123456789abcdef") != HEX)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "set input sha256: not a digest, or none planned");
  cz_layout *l = run->layout;
  if (l->format == CZ_FORMAT_SAFETENSORS) {
    if (!l->finished || run->fd < 0) /* no header yet, or nowhere to write it */
      return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "set input sha256: the run has not finished");
    /* the compact JSON header holds "key":"value" once (metadata keys are unique) */
    char needle[128];
    int nl = snprintf(needle, sizeof needle, "\"compressd.source_sha256\":\"%s\"", run->input_sha256);
    uint8_t *at = memmem(l->header, l->header_len, needle, (size_t)nl);
    if (!at) return cz_err_set(err, CZ_E_INTERNAL, "set input sha256: not in the header");
    memcpy(at + nl - 1 - HEX, hex, HEX);
    cz_err_code rc = pwrite_all(run->fd, l->header, l->header_len, 0, err);
    if (rc) { /* the layout keeps describing what the file holds */
      memcpy(at + nl - 1 - HEX, run->input_sha256, HEX);
      return rc;
    }
  }
  memcpy(run->input_sha256, hex, HEX + 1);
  return CZ_E_OK;
}

/* ---- report ---- */

/* The encodings of a layout's leaves, distinct, in order, joined with '+'. */
static void leaf_types(const json_t *node, char *out, size_t n) {
  const char *enc = json_string_value(json_object_get(node, "encoding"));
  if (!enc) {
    const char *keys[] = {"child", "a", "b"};
    for (int i = 0; i < 3; i++)
      if (json_object_get(node, keys[i])) leaf_types(json_object_get(node, keys[i]), out, n);
    return;
  }
  char name[64];
  if (!strcmp(enc, "raw")) return;
  if (!strcmp(enc, "plain")) snprintf(name, sizeof name, "%s", json_string_value(json_object_get(node, "type")));
  else if (!strcmp(enc, "palette"))
    snprintf(name, sizeof name, "palette%d", (int)json_integer_value(json_object_get(node, "bits")));
  else snprintf(name, sizeof name, "%s", enc);
  size_t len = strlen(out), nl = strlen(name);
  for (const char *p = out; (p = strstr(p, name)) != NULL; p += nl)
    if ((p == out || p[-1] == '+') && (p[nl] == 0 || p[nl] == '+')) return;
  snprintf(out + len, n - len, "%s%s", len ? "+" : "", name);
}

static json_t *whole_extras(json_t *t, const tensor_state *s) {
  char types[256] = "";
  leaf_types(s->node, types, sizeof types);
  json_object_set_new(t, "output_type", json_string(types));
  json_object_update(t, s->info);
  if (s->has_aw) json_object_set_new(t, "act_weighted_err", json_real(s->aw_err));
  if (json_array_size(s->notes)) json_object_set(t, "notes", s->notes);
  json_t *outs = json_array();
  for (int k = 0; k < s->n_outs; k++) {
    const cz_type_traits *tr = cz_type_get(s->outs[k].type);
    json_array_append_new(outs, json_pack("{s:s, s:s, s:o, s:I}", "name", s->outs[k].name, "dtype",
                                          tr->st_name ? tr->st_name : tr->name, "shape",
                                          shape_st(s->outs[k].n_dims, s->outs[k].ne), "bytes",
                                          (json_int_t)s->outs[k].nbytes));
  }
  json_object_set_new(t, "outputs", outs);
  json_object_set(t, "layout", s->node);
  return t;
}

static json_t *tensor_report(const cz_run *run, const tensor_state *s) {
  json_t *shape = json_array();
  shape_json_reversed(shape, s->in->n_dims, s->in->ne);
  uint64_t out = plan_bytes_out(run, s);
  int64_t n = cz_tensor_nelements(s->in);
  json_t *t = json_pack("{s:s, s:o, s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:f, s:s?}", "name",
                   s->in->name, "shape", shape, "input_dtype",
                   cz_type_get(s->in->type)->st_name ? cz_type_get(s->in->type)->st_name
                                                     : cz_type_get(s->in->type)->name,
                   "output_type", run->whole && s->touched ? "" : s->plan.out_type_name,
                   "bytes_in", (json_int_t)s->in->nbytes, "bytes_out", (json_int_t)out, "bpw",
                   cz_json_real_or_null(n ? 8.0 * (double)out / (double)n : 0.0), "rel_l2",
                   cz_json_real_or_null(cz_errstat_rel_l2(&s->stat)), "snr_db",
                   cz_json_real_or_null(cz_errstat_snr_db(&s->stat)), "max_abs_err",
                   s->stat.max_abs, "note", run->whole && s->touched ? NULL : s->plan.note);
  json_object_set_new(t, "cosine", cz_json_real_or_null(cz_errstat_cosine(&s->stat)));
  return run->whole && s->touched ? whole_extras(t, s) : t;
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
    changed += run->whole ? s->touched : s->plan.transform;
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
