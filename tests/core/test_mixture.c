/* test_mixture: llama.cpp presets ("preset": "Q4_K_M", ...) against llama-quantize itself.
 *
 * The reference is tests/data/tiny-llama-manifest.json: llama-quantize's output on
 * tiny-llama-f16.gguf for 26 runs (every preset, the options, --imatrix). For every run the
 * equivalent step is built from the run's flags and, for every tensor, the type must be the
 * same (always checked: that is the mixture logic alone), and the sha256 of the bytes must
 * be the same wherever this build has the kernel for the type (the pipeline runs the whole
 * recipe when every chosen type has one; otherwise each tensor it can produce is quantized on
 * its own, the way the pipeline's encode does). The counts of matched and skipped tensors are
 * printed as TAP comments.
 *
 * Then synthetic GGUFs check what the manifest cannot: fallbacks for row lengths that are not
 * a multiple of 256, tied embeddings, tensor order, MoE rules, option semantics and errors. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH|FTW_PHYS */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <strings.h>
#include <unistd.h>

#include "cz_imatrix.h"
#include "cz_mixture.h"
#include "cz_model.h"
#include "cz_pipeline.h"
#include "cz_sha256.h"
#include "cz_test.h"
#include "cz_type.h"

static char tmpdir[256];

static void tmp_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", tmpdir, name);
}

static void data_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/tests/data/%s", cz_test_srcdir(), name);
}

static void sha256_hex_of(const void *data, size_t n, char hex[65]) {
  cz_sha256 c;
  uint8_t d[32];
  cz_sha256_init(&c);
  cz_sha256_update(&c, data, n);
  cz_sha256_final(&c, d);
  cz_sha256_hex(d, hex);
}

static cz_model *open_model(const char *path) {
  cz_model *m = NULL;
  cz_error err = {0};
  if (cz_model_open(path, &m, &err) != CZ_E_OK) {
    printf("# cannot open %s: %s: %s\n", path, cz_err_name(err.code), err.msg);
    cz_test_failures++;
    return NULL;
  }
  return m;
}

static json_t *parse_json(const char *text) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  if (!j) printf("# test bug: bad JSON %s: %s\n", text, je.text);
  return j;
}

/* Can this build write type t the way llama-quantize does? */
static bool producible(cz_type t) {
  const cz_type_traits *tr = cz_type_get(t);
  return tr && tr->to_f32 && (tr->quantize || tr->from_f32);
}

/* ------------------------------------------------------------------------------------------ */
/* the manifest runs                                                                          */
/* ------------------------------------------------------------------------------------------ */

/* The step equivalent to a run's llama-quantize flags; *imatrix says whether it used one. */
static json_t *step_of_run(const json_t *run, bool *imatrix) {
  json_t *step = json_pack("{s:s, s:s}", "op", "quantize", "preset",
                           json_string_value(json_object_get(run, "ftype")));
  const json_t *opts = json_object_get(run, "options");
  *imatrix = false;
  for (size_t i = 0; i < json_array_size(opts); i++) {
    const char *o = json_string_value(json_array_get(opts, i));
    const char *v = json_string_value(json_array_get(opts, i + 1));
    if (strcmp(o, "--pure") == 0) {
      json_object_set_new(step, "pure", json_true());
    } else if (strcmp(o, "--leave-output-tensor") == 0) {
      json_object_set_new(step, "leave_output_tensor", json_true());
    } else if (strcmp(o, "--output-tensor-type") == 0 && v) {
      json_object_set_new(step, "output_tensor_type", json_string(v));
      i++;
    } else if (strcmp(o, "--token-embedding-type") == 0 && v) {
      json_object_set_new(step, "token_embedding_type", json_string(v));
      i++;
    } else if (strcmp(o, "--tensor-type") == 0 && v && strchr(v, '=')) {
      json_t *tt = json_object_get(step, "tensor_types");
      if (!tt) json_object_set_new(step, "tensor_types", tt = json_object());
      char pat[256];
      snprintf(pat, sizeof pat, "%.*s", (int)(strchr(v, '=') - v), v);
      json_object_set_new(tt, pat, json_string(strchr(v, '=') + 1));
      i++;
    } else if (strcmp(o, "--imatrix") == 0 && v) {
      *imatrix = true;
      i++;
    } else {
      printf("# test bug: unknown llama-quantize option %s\n", o);
      cz_test_failures++;
    }
  }
  return step;
}

static void run_label(const json_t *run, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "%s", json_string_value(json_object_get(run, "ftype")));
  const json_t *opts = json_object_get(run, "options");
  for (size_t i = 0; i < json_array_size(opts) && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, " %s", json_string_value(json_array_get(opts, i)));
}

typedef struct {
  int runs, runs_piped, types_ok, types_bad, sha_ok, sha_bad, skipped;
} totals;

/* Quantize one input tensor to `type` by hand, the way the pipeline's encode does. */
static uint8_t *quantize_tensor(const cz_tensor *t, cz_type type, const float *imatrix,
                                size_t *nbytes) {
  const cz_type_traits *in = cz_type_get(t->type), *tr = cz_type_get(type);
  const int64_t ncols = t->ne[0], nrows = cz_tensor_nelements(t) / ncols;
  const uint64_t row = cz_type_row_size(type, ncols);
  float *x = malloc(sizeof(float) * (size_t)(ncols * nrows));
  uint8_t *out = malloc((size_t)(row * (uint64_t)nrows));
  in->to_f32(t->data, x, ncols * nrows);
  if (tr->quantize) {
    tr->quantize(x, out, nrows, ncols, imatrix);
  } else {
    for (int64_t r = 0; r < nrows; r++) tr->from_f32(x + r * ncols, out + (uint64_t)r * row, ncols);
  }
  free(x);
  *nbytes = (size_t)(row * (uint64_t)nrows);
  return out;
}

/* Run the whole recipe through the pipeline; returns the output model or NULL. */
static cz_model *run_pipeline(const cz_model *in, json_t *step, const cz_imatrix *im,
                              const char *out_path, cz_recipe **rec_out, cz_run **run_out) {
  json_t *body = json_pack("{s:[O], s:{s:s}}", "steps", step, "output", "format", "gguf");
  cz_recipe *rec = NULL;
  cz_run *run = NULL;
  cz_error err = {0};
  cz_model *out = NULL;
  const char *stage = "parse";
  int fd = -1;
  if (cz_recipe_parse(body, NULL, &rec, &err)) goto done;
  cz_recipe_set_imatrix(rec, im);
  stage = "plan";
  if (cz_run_plan(rec, in, NULL, &run, &err)) goto done;
  stage = "run";
  fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || cz_run_begin(run, fd, &err) || cz_run_exec(run, 2, &err)) goto done;
  out = open_model(out_path);
done:
  if (!out) {
    printf("# pipeline failed at %s: %s: %s\n", stage, cz_err_name(err.code), err.msg);
    cz_test_failures++;
  }
  if (fd >= 0) close(fd);
  *run_out = run;
  *rec_out = rec; /* the run borrows it */
  json_decref(body);
  return out;
}

static void check_run(const cz_model *in, const cz_imatrix *im, const json_t *run, totals *tot) {
  char label[256];
  run_label(run, label, sizeof label);
  bool use_im;
  json_t *step = step_of_run(run, &use_im);
  cz_mixture *mx = NULL;
  cz_error err = {0};
  tot->runs++;
  if (cz_mixture_parse(step, 0, &mx, &err)) {
    printf("# %s: %s\n", label, err.msg);
    cz_test_failures++;
    json_decref(step);
    return;
  }
  CHECK_EQ_INT(cz_mixture_file_type(mx), json_integer_value(json_object_get(run, "file_type")));
  cz_mixture_choice *ch = calloc(in->n_tensors, sizeof *ch);
  if (cz_mixture_plan(mx, in, use_im, ch, &err)) {
    printf("# %s: plan: %s\n", label, err.msg);
    cz_test_failures++;
    goto done;
  }

  /* 1. types, from the mixture alone */
  const json_t *mt = json_object_get(run, "tensors");
  CHECK_EQ_INT(json_array_size(mt), in->n_tensors);
  bool all_producible = true;
  int types_bad = 0;
  for (size_t i = 0; i < json_array_size(mt); i++) {
    const json_t *e = json_array_get(mt, i);
    const char *name = json_string_value(json_object_get(e, "name"));
    const cz_tensor *t = cz_model_find(in, name);
    if (!t) {
      printf("# %s: the input has no tensor %s\n", label, name);
      cz_test_failures++;
      continue;
    }
    const cz_mixture_choice *c = &ch[t - in->tensors];
    const char *want = json_string_value(json_object_get(e, "type"));
    if (strcasecmp(cz_type_get(c->type)->name, want) != 0) {
      printf("# %s: %s: type %s, llama-quantize %s\n", label, name, cz_type_get(c->type)->name,
             want);
      types_bad++;
    }
    if (c->quantize && !producible(c->type)) all_producible = false;
  }
  tot->types_ok += (int)json_array_size(mt) - types_bad;
  tot->types_bad += types_bad;
  if (types_bad) cz_test_failures++;

  /* 2. bytes */
  int sha_ok = 0, sha_bad = 0, skipped = 0;
  cz_model *out = NULL;
  cz_run *prun = NULL;
  cz_recipe *prec = NULL;
  if (all_producible) {
    char out_path[512];
    tmp_path(out_path, sizeof out_path, "run.gguf");
    out = run_pipeline(in, step, use_im ? im : NULL, out_path, &prec, &prun);
    tot->runs_piped++;
    if (out) {
      uint32_t ft = 0;
      long k = cz_gguf_find_kv(out, "general.file_type");
      CHECK(k >= 0 && cz_gguf_kv_u32(&out->kv[k], &ft));
      CHECK_EQ_INT(ft, json_integer_value(json_object_get(run, "file_type")));
      CHECK_EQ_INT(cz_gguf_find_kv(out, "quantize.imatrix.file") >= 0, use_im);
      json_t *plan = cz_run_plan_json(prun);
      CHECK_EQ_INT(json_integer_value(json_object_get(plan, "bytes")), out->file_size);
      json_decref(plan);
    }
  }
  for (size_t i = 0; i < json_array_size(mt); i++) {
    const json_t *e = json_array_get(mt, i);
    const char *name = json_string_value(json_object_get(e, "name"));
    const char *want = json_string_value(json_object_get(e, "sha256"));
    const cz_tensor *t = cz_model_find(in, name);
    if (!t) continue;
    const cz_mixture_choice *c = &ch[t - in->tensors];
    char hex[65] = "";
    if (all_producible) {
      const cz_tensor *o = out ? cz_model_find(out, name) : NULL;
      if (!o) {
        sha_bad++;
        continue;
      }
      if (strcasecmp(cz_type_get(o->type)->name, json_string_value(json_object_get(e, "type"))))
        printf("# %s: %s written as %s\n", label, name, cz_type_get(o->type)->name);
      sha256_hex_of(o->data, (size_t)o->nbytes, hex);
    } else if (!c->quantize) {
      sha256_hex_of(t->data, (size_t)t->nbytes, hex);
    } else if (producible(c->type)) {
      int64_t n = 0;
      const float *w = use_im ? cz_imatrix_find(im, name, &n) : NULL;
      if (w && n != t->ne[0]) w = NULL;
      size_t nb;
      uint8_t *q = quantize_tensor(t, c->type, w, &nb);
      sha256_hex_of(q, nb, hex);
      free(q);
    } else {
      skipped++;
      continue;
    }
    if (strcmp(hex, want) == 0) {
      sha_ok++;
    } else {
      sha_bad++;
      printf("# %s: %s (%s): sha256 %s, llama-quantize %s\n", label, name,
             cz_type_get(c->type)->name, hex, want);
    }
  }
  tot->sha_ok += sha_ok;
  tot->sha_bad += sha_bad;
  tot->skipped += skipped;
  if (sha_bad) cz_test_failures++;
  printf("# %-62s types %d/%zu, sha256 %d matched, %d differ, %d without kernel%s\n", label,
         (int)json_array_size(mt) - types_bad, json_array_size(mt), sha_ok, sha_bad, skipped,
         all_producible ? " (pipeline)" : "");
  cz_model_close(out);
  cz_run_free(prun);
  cz_recipe_free(prec);
done:
  free(ch);
  cz_mixture_free(mx);
  json_decref(step);
}

static void test_manifest_runs(void) {
  char in_path[512], im_path[512], man_path[512];
  data_path(in_path, sizeof in_path, "tiny-llama-f16.gguf");
  data_path(im_path, sizeof im_path, "tiny-llama-imatrix.gguf");
  data_path(man_path, sizeof man_path, "tiny-llama-manifest.json");
  cz_model *in = open_model(in_path);
  cz_imatrix *im = NULL;
  cz_error err = {0};
  if (cz_imatrix_open(im_path, &im, &err)) {
    printf("# %s: %s\n", im_path, err.msg);
    cz_test_failures++;
  }
  json_error_t je;
  json_t *root = json_load_file(man_path, 0, &je);
  CHECK(root != NULL);
  if (!in || !im || !root) goto done;
  totals tot = {0};
  const json_t *runs = json_object_get(root, "runs");
  CHECK_EQ_INT(json_array_size(runs), 26);
  for (size_t i = 0; i < json_array_size(runs); i++) check_run(in, im, json_array_get(runs, i), &tot);
  printf("# manifest: %d runs (%d through the pipeline); types %d matched, %d differ; sha256 %d "
         "matched, %d differ, %d skipped (no kernel yet)\n", tot.runs, tot.runs_piped,
         tot.types_ok, tot.types_bad, tot.sha_ok, tot.sha_bad, tot.skipped);
done:
  json_decref(root);
  cz_imatrix_free(im);
  cz_model_close(in);
}

/* ------------------------------------------------------------------------------------------ */
/* synthetic llama GGUFs                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
  const char *name;
  int n_dims;
  int64_t ne[3];
} tdesc;

static uint64_t rng = 1;
static float rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5) * 0.05f;
}

/* A llama GGUF with F16 tensors (F32 for 1-D) and the given hyperparameters. */
static cz_model *write_gguf(const char *file, const tdesc *ts, int n, int n_layer, int n_head,
                            int n_head_kv, int n_expert, const char *arch) {
  char path[512];
  tmp_path(path, sizeof path, file);
  cz_error err = {0};
  cz_layout *l = cz_layout_new(CZ_FORMAT_GGUF);
  char key[128];
  bool ok = cz_layout_set_str(l, "general.architecture", arch, &err) == CZ_E_OK;
  snprintf(key, sizeof key, "%s.block_count", arch);
  ok = ok && cz_layout_set_u32(l, key, (uint32_t)n_layer, &err) == CZ_E_OK;
  snprintf(key, sizeof key, "%s.attention.head_count", arch);
  ok = ok && cz_layout_set_u32(l, key, (uint32_t)n_head, &err) == CZ_E_OK;
  snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
  ok = ok && cz_layout_set_u32(l, key, (uint32_t)n_head_kv, &err) == CZ_E_OK;
  if (n_expert) {
    snprintf(key, sizeof key, "%s.expert_count", arch);
    ok = ok && cz_layout_set_u32(l, key, (uint32_t)n_expert, &err) == CZ_E_OK;
  }
  for (int i = 0; ok && i < n; i++) {
    int64_t ne[CZ_MAX_DIMS] = {ts[i].ne[0], ts[i].ne[1], ts[i].ne[2], 1};
    ok = cz_layout_add_tensor(l, ts[i].name, ts[i].n_dims == 1 ? CZ_TYPE_F32 : CZ_TYPE_F16,
                              ts[i].n_dims, ne, &err) == CZ_E_OK;
  }
  ok = ok && cz_layout_finish(l, &err) == CZ_E_OK;
  int fd = ok ? open(path, O_RDWR | O_CREAT | O_TRUNC, 0644) : -1;
  ok = ok && fd >= 0 && cz_layout_write_frame(l, fd, &err) == CZ_E_OK;
  for (int i = 0; ok && i < n; i++) {
    size_t nb = (size_t)l->tensors[i].nbytes;
    uint8_t *buf = malloc(nb ? nb : 1);
    if (l->tensors[i].type == CZ_TYPE_F32) {
      for (size_t k = 0; k < nb / 4; k++) {
        float v = 1.0f;
        memcpy(buf + 4 * k, &v, 4);
      }
    } else {
      for (size_t k = 0; k < nb / 2; k++) {
        uint16_t h = cz_fp32_to_fp16(rnd());
        memcpy(buf + 2 * k, &h, 2);
      }
    }
    ok = pwrite(fd, buf, nb, (off_t)l->tensors[i].file_offset) == (ssize_t)nb;
    free(buf);
  }
  if (fd >= 0) close(fd);
  cz_layout_free(l);
  if (!ok) {
    printf("# test bug: cannot write %s: %s\n", path, err.msg);
    cz_test_failures++;
    return NULL;
  }
  return open_model(path);
}

/* Types the step gives m, by tensor index; NULL on error (err filled). */
static cz_mixture_choice *types_of(const cz_model *m, const char *step_text, bool has_im,
                                   cz_error *err) {
  json_t *step = parse_json(step_text);
  cz_mixture *mx = NULL;
  cz_mixture_choice *ch = NULL;
  if (step && cz_mixture_parse(step, 0, &mx, err) == CZ_E_OK) {
    ch = calloc(m->n_tensors, sizeof *ch);
    if (cz_mixture_plan(mx, m, has_im, ch, err)) {
      free(ch);
      ch = NULL;
    }
  }
  cz_mixture_free(mx);
  json_decref(step);
  return ch;
}

static const char *type_of(const cz_model *m, const cz_mixture_choice *ch, const char *name) {
  const cz_tensor *t = cz_model_find(m, name);
  return t && ch ? cz_type_get(ch[t - m->tensors].type)->name : "(none)";
}

#define CHECK_TYPE(m, ch, name, want) CHECK_EQ_STR(type_of(m, ch, name), want)

/* One layer of a llama with a given width; 8 layers so that use_more_bits varies. */
static const tdesc odd_model[] = {
    {"token_embd.weight", 2, {96, 64, 1}},    {"output_norm.weight", 1, {96, 1, 1}},
    {"output.weight", 2, {96, 64, 1}},        {"blk.0.attn_q.weight", 2, {96, 96, 1}},
    {"blk.0.attn_v.weight", 2, {96, 96, 1}},  {"blk.0.ffn_down.weight", 2, {100, 96, 1}},
    {"blk.0.ffn_up.weight", 2, {512, 100, 1}}, {"blk.0.attn_norm.weight", 1, {96, 1, 1}},
};

/* Rows that are not a multiple of 256 fall back as llama-quantize does. */
static void test_fallbacks(void) {
  cz_model *m = write_gguf("odd.gguf", odd_model, 8, 1, 4, 4, 0, "llama");
  if (!m) return;
  cz_error err = {0};
  cz_mixture_choice *ch = types_of(m, "{\"preset\":\"Q4_K_M\"}", false, &err);
  CHECK(ch != NULL);
  /* output: 96 % 256 != 0 -> Q8_0 directly */
  CHECK_TYPE(m, ch, "output.weight", "q8_0");
  CHECK_TYPE(m, ch, "token_embd.weight", "q5_0");       /* q4_K -> q5_0 */
  CHECK_TYPE(m, ch, "blk.0.attn_q.weight", "q5_0");
  CHECK_TYPE(m, ch, "blk.0.attn_v.weight", "q8_0");     /* use_more_bits: q6_K -> q8_0 */
  CHECK_TYPE(m, ch, "blk.0.ffn_down.weight", "f16");    /* 100: nothing fits -> F16 */
  CHECK_TYPE(m, ch, "blk.0.ffn_up.weight", "q4_K");
  CHECK_TYPE(m, ch, "blk.0.attn_norm.weight", "f32");
  if (ch) {
    const cz_tensor *t = cz_model_find(m, "blk.0.attn_q.weight");
    CHECK(ch[t - m->tensors].note != NULL);  /* the fallback is reported */
    t = cz_model_find(m, "blk.0.ffn_down.weight");
    CHECK(ch[t - m->tensors].quantize == false);  /* F16 input kept as F16 */
  }
  free(ch);
  ch = types_of(m, "{\"preset\":\"Q2_K\"}", false, &err);
  CHECK_TYPE(m, ch, "blk.0.attn_q.weight", "q4_0");     /* q2_K -> q4_0 */
  CHECK_TYPE(m, ch, "blk.0.attn_v.weight", "q4_0");     /* q3_K -> q4_0 */
  free(ch);
  ch = types_of(m, "{\"preset\":\"IQ4_XS\"}", false, &err);
  CHECK_TYPE(m, ch, "blk.0.attn_q.weight", "iq4_nl");
  CHECK_TYPE(m, ch, "blk.0.ffn_up.weight", "iq4_xs");
  free(ch);
  ch = types_of(m, "{\"preset\":\"Q5_K_S\"}", false, &err);
  CHECK_TYPE(m, ch, "blk.0.attn_q.weight", "q5_1");     /* q5_K -> q5_1 */
  free(ch);
  /* pure still falls back; an explicit output type does not, and must fit */
  ch = types_of(m, "{\"preset\":\"Q4_K_M\",\"pure\":true}", false, &err);
  CHECK_TYPE(m, ch, "output.weight", "q5_0");
  free(ch);
  ch = types_of(m, "{\"preset\":\"Q4_K_M\",\"output_tensor_type\":\"q4_K\"}", false, &err);
  CHECK(ch == NULL);
  CHECK_EQ_INT(err.code, CZ_E_INVALID_PARAMETER);
  CHECK(strstr(err.msg, "output_tensor_type") != NULL);
  free(ch);
  /* Q8_0 has no fallback for rows of 100 */
  ch = types_of(m, "{\"preset\":\"Q8_0\"}", false, &err);
  CHECK(ch == NULL);
  CHECK_EQ_INT(err.code, CZ_E_UNSUPPORTED_INPUT);
  free(ch);
  cz_model_close(m);
}

/* 8 layers in a shuffled file order: the counters follow llama.cpp's order (layer, name). */
static void test_layer_rules(void) {
  static tdesc ts[2 + 8 * 3];
  static char names[8 * 3][64];
  int n = 0;
  ts[n++] = (tdesc){"output.weight", 2, {256, 64, 1}};
  ts[n++] = (tdesc){"token_embd.weight", 2, {256, 64, 1}};
  for (int k = 0; k < 8; k++) {
    int l = (k * 5) % 8; /* 0 5 2 7 4 1 6 3 */
    snprintf(names[3 * k], 64, "blk.%d.ffn_down.weight", l);
    snprintf(names[3 * k + 1], 64, "blk.%d.attn_v.weight", l);
    snprintf(names[3 * k + 2], 64, "blk.%d.attn_output.weight", l);
    ts[n++] = (tdesc){names[3 * k], 2, {256, 256, 1}};
    ts[n++] = (tdesc){names[3 * k + 1], 2, {256, 256, 1}};
    ts[n++] = (tdesc){names[3 * k + 2], 2, {256, 256, 1}};
  }
  cz_model *m = write_gguf("layers.gguf", ts, n, 8, 8, 2, 0, "llama"); /* n_gqa 4 */
  if (!m) return;
  cz_error err = {0};
  char name[64];
  /* Q4_K_M: use_more_bits(i, 8) = i < 1 || i >= 7 || (i - 1) % 3 == 2 -> 0, 3, 6, 7 */
  cz_mixture_choice *ch = types_of(m, "{\"preset\":\"Q4_K_M\"}", false, &err);
  for (int l = 0; l < 8; l++) {
    bool more = l == 0 || l == 3 || l == 6 || l == 7;
    snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
    CHECK_TYPE(m, ch, name, more ? "q6_K" : "q4_K");
    snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
    CHECK_TYPE(m, ch, name, more ? "q6_K" : "q4_K");
  }
  free(ch);
  /* Q3_K_M: attn_v first 2 -> q5_K; ffn_down first 8/16 = 0 -> q4_K; attn_output -> q4_K */
  ch = types_of(m, "{\"preset\":\"Q3_K_M\"}", false, &err);
  for (int l = 0; l < 8; l++) {
    snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
    CHECK_TYPE(m, ch, name, l < 2 ? "q5_K" : "q4_K");
    snprintf(name, sizeof name, "blk.%d.attn_output.weight", l);
    CHECK_TYPE(m, ch, name, "q4_K");
  }
  free(ch);
  /* Q4_K_S: first 4 attn_v and first 8/8 = 1 ffn_down -> q5_K */
  ch = types_of(m, "{\"preset\":\"Q4_K_S\"}", false, &err);
  for (int l = 0; l < 8; l++) {
    snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
    CHECK_TYPE(m, ch, name, l < 4 ? "q5_K" : "q4_K");
    snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
    CHECK_TYPE(m, ch, name, l < 1 ? "q5_K" : "q4_K");
  }
  free(ch);
  /* n_gqa 4: Q2_K attn_v -> q4_K; IQ4_XS attn_v -> q5_K, first ffn_down q5_K only without
   * an imatrix; Q4_0 with an imatrix guards the first ffn_down with q4_1 */
  ch = types_of(m, "{\"preset\":\"Q2_K\"}", false, &err);
  CHECK_TYPE(m, ch, "blk.5.attn_v.weight", "q4_K");
  CHECK_TYPE(m, ch, "blk.5.ffn_down.weight", "q3_K");
  free(ch);
  ch = types_of(m, "{\"preset\":\"IQ4_XS\"}", false, &err);
  CHECK_TYPE(m, ch, "blk.3.attn_v.weight", "q5_K");
  CHECK_TYPE(m, ch, "blk.0.ffn_down.weight", "q5_K");
  CHECK_TYPE(m, ch, "blk.1.ffn_down.weight", "iq4_xs");
  free(ch);
  ch = types_of(m, "{\"preset\":\"IQ4_XS\"}", true, &err);
  CHECK_TYPE(m, ch, "blk.0.ffn_down.weight", "iq4_xs");
  free(ch);
  ch = types_of(m, "{\"preset\":\"Q4_0\"}", true, &err);
  CHECK_TYPE(m, ch, "blk.0.ffn_down.weight", "q4_1");
  CHECK_TYPE(m, ch, "blk.1.ffn_down.weight", "q4_0");
  free(ch);
  ch = types_of(m, "{\"preset\":\"Q5_0\"}", true, &err);
  CHECK_TYPE(m, ch, "blk.0.ffn_down.weight", "q5_1");
  free(ch);
  /* a manual type takes the tensor out of the counters: blk.0's attn_v is not counted, so
   * blk.1 becomes the first and gets q6_K */
  ch = types_of(m, "{\"preset\":\"Q4_K_M\",\"tensor_types\":{\"blk\\\\.0\\\\.attn_v\":\"q8_0\"}}",
                false, &err);
  CHECK_TYPE(m, ch, "blk.0.attn_v.weight", "q8_0");
  CHECK_TYPE(m, ch, "blk.1.attn_v.weight", "q6_K");
  free(ch);
  cz_model_close(m);
}

/* No output.weight: the token embedding stands for the output (Q6_K); MoE rules. */
static void test_tied_and_moe(void) {
  static const tdesc tied[] = {
      {"token_embd.weight", 2, {256, 64, 1}}, {"blk.0.attn_v.weight", 2, {256, 256, 1}},
      {"blk.0.attn_k.weight", 2, {256, 256, 1}}, {"blk.0.ffn_down_exps.weight", 3, {256, 256, 8}},
      {"blk.0.ffn_gate_inp.weight", 2, {256, 8, 1}}, {"blk.0.attn_output.weight", 2, {256, 256, 1}},
  };
  cz_model *m = write_gguf("tied.gguf", tied, 6, 1, 4, 4, 8, "llama");
  if (!m) return;
  cz_error err = {0};
  cz_mixture_choice *ch = types_of(m, "{\"preset\":\"Q4_K_M\"}", false, &err);
  CHECK_TYPE(m, ch, "token_embd.weight", "q6_K");
  CHECK_TYPE(m, ch, "blk.0.attn_v.weight", "q8_0");       /* 8 experts */
  CHECK_TYPE(m, ch, "blk.0.attn_k.weight", "q8_0");
  CHECK_TYPE(m, ch, "blk.0.attn_output.weight", "q5_K");
  CHECK_TYPE(m, ch, "blk.0.ffn_down_exps.weight", "q6_K"); /* layer 0 of 1: use_more_bits */
  CHECK_TYPE(m, ch, "blk.0.ffn_gate_inp.weight", "f16");   /* the router stays */
  free(ch);
  ch = types_of(m, "{\"preset\":\"MXFP4_MOE\"}", false, &err);
  CHECK_TYPE(m, ch, "blk.0.ffn_down_exps.weight", "mxfp4");
  CHECK_TYPE(m, ch, "blk.0.attn_v.weight", "q8_0");
  CHECK_TYPE(m, ch, "token_embd.weight", "q8_0");
  free(ch);
  /* output_tensor_type reaches a tied embedding through the mixture rules */
  ch = types_of(m, "{\"preset\":\"Q4_K_M\",\"output_tensor_type\":\"q5_K\"}", false, &err);
  CHECK_TYPE(m, ch, "token_embd.weight", "q5_K");
  free(ch);
  /* leave_output_tensor keeps output.weight only (not a tied embedding) */
  ch = types_of(m, "{\"preset\":\"Q4_K_M\",\"leave_output_tensor\":true}", false, &err);
  CHECK_TYPE(m, ch, "token_embd.weight", "q6_K");
  free(ch);
  cz_model_close(m);
}

static void test_options(void) {
  char in_path[512];
  data_path(in_path, sizeof in_path, "tiny-llama-f16.gguf");
  cz_model *m = open_model(in_path);
  if (!m) return;
  cz_error err = {0};
  /* patterns: the first that matches wins (object order), searched anywhere, lower-cased */
  cz_mixture_choice *ch = types_of(
      m, "{\"preset\":\"Q4_K_M\",\"tensor_types\":{\"BLK\\\\.[13]\\\\.FFN_UP\":\"q8_0\","
         "\"ffn_(up|gate)\":\"q5_K\",\"blk\\\\.\\\\d\\\\.attn_q\":\"q6_K\"}}", false, &err);
  CHECK(ch != NULL);
  CHECK_TYPE(m, ch, "blk.1.ffn_up.weight", "q8_0");
  CHECK_TYPE(m, ch, "blk.0.ffn_up.weight", "q5_K");
  CHECK_TYPE(m, ch, "blk.2.ffn_gate.weight", "q5_K");
  CHECK_TYPE(m, ch, "blk.2.attn_q.weight", "q6_K");
  CHECK_TYPE(m, ch, "blk.2.attn_k.weight", "q4_K");
  free(ch);
  /* F16 preset: no mixture; the input is already F16, so nothing changes */
  ch = types_of(m, "{\"preset\":\"f16\"}", false, &err);
  CHECK(ch != NULL && !ch[0].quantize);
  CHECK_TYPE(m, ch, "blk.0.attn_q.weight", "f16");
  free(ch);
  /* aliases */
  ch = types_of(m, "{\"preset\":\"q4_k\"}", false, &err);
  CHECK_TYPE(m, ch, "blk.3.ffn_down.weight", "q6_K");
  free(ch);
  /* Q2_K_S: q2_K tensors need an imatrix (flagged), token_embd and output do not */
  ch = types_of(m, "{\"preset\":\"Q2_K_S\"}", false, &err);
  if (ch) {
    const cz_tensor *q = cz_model_find(m, "blk.0.attn_q.weight");
    const cz_tensor *e = cz_model_find(m, "token_embd.weight");
    CHECK(ch[q - m->tensors].requires_imatrix);
    CHECK(!ch[e - m->tensors].requires_imatrix);
  }
  free(ch);
  cz_model_close(m);
}

static void test_parse_errors(void) {
  static const struct {
    const char *step, *field;
  } bad[] = {
      {"{\"preset\":\"Q4_K_X\"}", "steps[0].preset"},
      {"{\"preset\":\"IQ2_XXS\"}", "steps[0].preset"},
      {"{\"preset\":7}", "steps[0].preset"},
      {"{\"preset\":\"Q4_K_M\",\"pure\":1}", "steps[0].pure"},
      {"{\"preset\":\"Q4_K_M\",\"output_tensor_type\":\"q9\"}", "steps[0].output_tensor_type"},
      {"{\"preset\":\"Q4_K_M\",\"token_embedding_type\":\"q8_K\"}", "steps[0].token_embedding_type"},
      {"{\"preset\":\"Q4_K_M\",\"tensor_types\":[\"a=q8_0\"]}", "steps[0].tensor_types"},
      {"{\"preset\":\"Q4_K_M\",\"tensor_types\":{\"a(\":\"q8_0\"}}", "steps[0].tensor_types.a("},
      {"{\"preset\":\"Q4_K_M\",\"tensor_types\":{\"a\":\"q8\"}}", "steps[0].tensor_types.a"},
      {"{\"preset\":\"Q4_K_M\",\"tensor_types\":{\"\":\"q8_0\"}}", "steps[0].tensor_types"},
      {"{\"preset\":\"Q4_K_M\",\"file_type\":7}", "steps[0].file_type"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *s = parse_json(bad[i].step);
    cz_mixture *mx = NULL;
    cz_error err = {0};
    cz_err_code rc = cz_mixture_parse(s, 0, &mx, &err);
    if (rc != CZ_E_INVALID_PARAMETER || strstr(err.msg, bad[i].field) == NULL) {
      printf("# %s: %s %s\n", bad[i].step, cz_err_name(rc), err.msg);
      cz_test_failures++;
    }
    cz_mixture_free(mx);
    json_decref(s);
  }
  /* the normalized form parses again to the same thing */
  json_t *s = parse_json("{\"op\":\"quantize\",\"preset\":\"q5_k\",\"pure\":false,"
                         "\"tensor_types\":{\"attn_v\":\"Q8_0\"},\"token_embedding_type\":\"q4_0\"}");
  cz_mixture *mx = NULL, *mx2 = NULL;
  cz_error err = {0};
  CHECK_EQ_INT(cz_mixture_parse(s, 0, &mx, &err), CZ_E_OK);
  if (mx) {
    json_t *d = cz_mixture_describe(mx);
    char *txt = json_dumps(d, JSON_COMPACT);
    CHECK_EQ_STR(txt, "{\"op\":\"quantize\",\"preset\":\"Q5_K_M\",\"token_embedding_type\":"
                      "\"q4_0\",\"tensor_types\":{\"attn_v\":\"q8_0\"},\"file_type\":17}");
    CHECK_EQ_INT(cz_mixture_parse(d, 0, &mx2, &err), CZ_E_OK);
    if (mx2) {
      json_t *d2 = cz_mixture_describe(mx2);
      CHECK(json_equal(d, d2));
      json_decref(d2);
    }
    free(txt);
    json_decref(d);
  }
  cz_mixture_free(mx);
  cz_mixture_free(mx2);
  json_decref(s);
}

/* Through the pipeline: recipe validation, file type, the imatrix requirement and its KVs. */
static void test_pipeline_presets(void) {
  char in_path[512], im_path[512];
  data_path(in_path, sizeof in_path, "tiny-llama-f16.gguf");
  data_path(im_path, sizeof im_path, "tiny-llama-imatrix.gguf");
  cz_model *m = open_model(in_path);
  cz_imatrix *im = NULL;
  cz_error err = {0};
  CHECK_EQ_INT(cz_imatrix_open(im_path, &im, &err), CZ_E_OK);
  if (!m || !im) goto done;
  static const struct {
    const char *recipe;
    cz_err_code rc;
    const char *needle;
  } bad[] = {
      {"{\"steps\":[{\"op\":\"quantize\",\"preset\":\"Q4_K_M\",\"type\":\"q8_0\"}]}",
       CZ_E_INVALID_PARAMETER, "steps[0].type"},
      {"{\"steps\":[{\"op\":\"quantize\",\"preset\":\"Q4_K_M\",\"bits\":4}]}",
       CZ_E_INVALID_PARAMETER, "steps[0].bits"},
      {"{\"steps\":[{\"op\":\"quantize\",\"preset\":\"Q4_K_M\"}],\"output\":{\"format\":"
       "\"safetensors\"}}", CZ_E_INVALID_RECIPE, "output.format"},
      {"{\"steps\":[{\"op\":\"quantize\",\"preset\":\"Q8_0\",\"output_tensor_type\":\"iq2_xxs\"}]}",
       CZ_E_INVALID_PARAMETER, "iq2_xxs"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\",\"pure\":true}]}",
       CZ_E_INVALID_PARAMETER, "steps[0].pure"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\",\"tensor_types\":{}}]}",
       CZ_E_INVALID_PARAMETER, "steps[0].tensor_types"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *b = parse_json(bad[i].recipe);
    cz_recipe *r = NULL;
    cz_err_code rc = cz_recipe_parse(b, NULL, &r, &err);
    if (rc != bad[i].rc || !strstr(err.msg, bad[i].needle)) {
      printf("# %s: %s %s\n", bad[i].recipe, cz_err_name(rc), err.msg);
      cz_test_failures++;
    }
    cz_recipe_free(r);
    json_decref(b);
  }
  /* the preset switches at their defaults are accepted with a plain type (forms send them) */
  json_t *b = parse_json("{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\",\"pure\":false,"
                         "\"leave_output_tensor\":false}]}");
  cz_recipe *r = NULL;
  CHECK_EQ_INT(cz_recipe_parse(b, NULL, &r, &err), CZ_E_OK);
  cz_recipe_free(r);
  json_decref(b);
  /* Q2_K_S needs an imatrix for its q2_K tensors: refused at plan time without one */
  b = parse_json("{\"steps\":[{\"op\":\"quantize\",\"preset\":\"Q2_K_S\"}]}");
  r = NULL;
  cz_run *run = NULL;
  CHECK_EQ_INT(cz_recipe_parse(b, NULL, &r, &err), CZ_E_OK);
  if (r && producible(CZ_TYPE_Q2_K)) {
    cz_err_code rc = cz_run_plan(r, m, NULL, &run, &err);
    CHECK_EQ_INT(rc, CZ_E_INVALID_PARAMETER);
    CHECK_EQ_INT(cz_err_http_status(rc), 400);
    CHECK(strstr(err.msg, "importance matrix") && strstr(err.msg, "calibration"));
    cz_run_free(run);
    run = NULL;
    cz_recipe_set_imatrix(r, im);
    CHECK_EQ_INT(cz_run_plan(r, m, NULL, &run, &err), CZ_E_OK);
    json_t *plan = run ? cz_run_plan_json(run) : NULL;
    CHECK(json_integer_value(json_object_get(plan, "bytes")) > 0);
    json_decref(plan);
    cz_run_free(run);
  }
  cz_recipe_free(r);
  json_decref(b);
  /* normalized recipes carry the file type and parse again */
  b = parse_json("{\"steps\":[{\"op\":\"quantize\",\"preset\":\"Q3_K\"}]}");
  r = NULL;
  CHECK_EQ_INT(cz_recipe_parse(b, NULL, &r, &err), CZ_E_OK);
  if (r) {
    json_t *norm = cz_recipe_normalized(r);
    json_t *st = json_array_get(json_object_get(norm, "steps"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(st, "preset")), "Q3_K_M");
    CHECK_EQ_INT(json_integer_value(json_object_get(st, "file_type")), 12);
    cz_recipe *r2 = NULL;
    CHECK_EQ_INT(cz_recipe_parse(norm, NULL, &r2, &err), CZ_E_OK);
    cz_recipe_free(r2);
    json_decref(norm);
  }
  cz_recipe_free(r);
  json_decref(b);
done:
  cz_imatrix_free(im);
  cz_model_close(m);
}

/* ---- size budget ---- */

/* Run a recipe on tiny-llama through the pipeline; returns the output model (NULL on error,
 * with err filled and nothing counted as a failure) and the report. */
static cz_model *budget_run(const cz_model *in, const char *recipe_text, const char *file,
                            json_t **report, cz_error *err) {
  json_t *body = parse_json(recipe_text);
  cz_recipe *rec = NULL;
  cz_run *run = NULL;
  cz_model *out = NULL;
  char path[512];
  tmp_path(path, sizeof path, file);
  int fd = -1;
  *report = NULL;
  if (cz_recipe_parse(body, NULL, &rec, err) || cz_run_plan(rec, in, NULL, &run, err)) goto done;
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || cz_run_begin(run, fd, err) || cz_run_exec(run, 2, err)) goto done;
  *report = cz_run_report(run, 0);
  out = open_model(path);
done:
  if (fd >= 0) close(fd);
  cz_run_free(run);
  cz_recipe_free(rec);
  json_decref(body);
  return out;
}

/* Sum of squared errors of a run, from the report's rel_l2 and the input's norms. */
static double report_sse(const cz_model *in, const json_t *report) {
  double sse = 0;
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(report, "tensors"), i, t) {
    const json_t *rel = json_object_get(t, "rel_l2");
    if (!json_is_number(rel)) continue;
    const cz_tensor *x = cz_model_find(in, json_string_value(json_object_get(t, "name")));
    int64_t n = cz_tensor_nelements(x);
    float *v = malloc(sizeof(float) * (size_t)n);
    cz_type_get(x->type)->to_f32(x->data, v, n);
    double norm = 0;
    for (int64_t k = 0; k < n; k++) norm += (double)v[k] * v[k];
    free(v);
    sse += json_number_value(rel) * json_number_value(rel) * norm;
  }
  return sse;
}

static void test_budget(void) {
  static const struct {
    const char *step, *field;
  } bad[] = {
      {"{\"op\":\"quantize\",\"target_bpw\":4,\"target_bytes\":100}", "target_bpw"},
      {"{\"op\":\"quantize\",\"target_bpw\":0}", "steps[0].target_bpw"},
      {"{\"op\":\"quantize\",\"target_bpw\":40}", "steps[0].target_bpw"},
      {"{\"op\":\"quantize\",\"target_bpw\":\"4\"}", "steps[0].target_bpw"},
      {"{\"op\":\"quantize\",\"target_bytes\":-5}", "steps[0].target_bytes"},
      {"{\"op\":\"quantize\",\"target_bytes\":1.5}", "steps[0].target_bytes"},
      {"{\"op\":\"quantize\",\"target_bpw\":4,\"types\":[]}", "steps[0].types"},
      {"{\"op\":\"quantize\",\"target_bpw\":4,\"types\":[\"q4_K\",\"q4_K\"]}", "steps[0].types[1]"},
      {"{\"op\":\"quantize\",\"target_bpw\":4,\"types\":[\"int4\"]}", "steps[0].types[0]"},
      {"{\"op\":\"quantize\",\"target_bpw\":4,\"preset\":\"Q4_K_M\"}", "steps[0]"},
      {"{\"op\":\"quantize\",\"target_bpw\":4,\"pure\":true}", "steps[0].pure"},
      {"{\"op\":\"quantize\",\"target_bpw\":4,\"types\":[\"iq2_xxs\"]}", "iq2_xxs"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char text[512];
    snprintf(text, sizeof text, "{\"steps\":[%s]}", bad[i].step);
    json_t *b = parse_json(text);
    cz_recipe *r = NULL;
    cz_error err = {0};
    cz_err_code rc = cz_recipe_parse(b, NULL, &r, &err);
    if (rc != CZ_E_INVALID_PARAMETER || !strstr(err.msg, bad[i].field)) {
      printf("# %s: %s %s\n", bad[i].step, cz_err_name(rc), err.msg);
      cz_test_failures++;
    }
    cz_recipe_free(r);
    json_decref(b);
  }

  char in_path[512];
  data_path(in_path, sizeof in_path, "tiny-llama-f16.gguf");
  cz_model *in = open_model(in_path);
  if (!in) return;
  cz_error err = {0};
  json_t *rq = NULL, *rb = NULL, *rp = NULL, *rt = NULL;
  /* the same size as Q4_K_M, with less error */
  cz_model *q = budget_run(in, "{\"steps\":[{\"op\":\"quantize\",\"preset\":\"Q4_K_M\"}]}",
                           "b-q4km.gguf", &rq, &err);
  CHECK(q != NULL);
  if (q) {
    char text[256];
    snprintf(text, sizeof text, "{\"steps\":[{\"op\":\"quantize\",\"target_bytes\":%llu}]}",
             (unsigned long long)q->file_size);
    cz_model *o = budget_run(in, text, "b-bytes.gguf", &rb, &err);
    CHECK(o != NULL);
    if (o) {
      CHECK(o->file_size <= q->file_size);
      CHECK(o->file_size > q->file_size - q->file_size / 100);  /* the budget is used */
      double sq = report_sse(in, rq), sb = report_sse(in, rb);
      printf("# tiny-llama at Q4_K_M's %llu bytes: Q4_K_M error %.6g, budget %.6g (%llu bytes)\n",
             (unsigned long long)q->file_size, sq, sb, (unsigned long long)o->file_size);
      CHECK(sb < sq);
      /* the file type is the type that holds most weights */
      uint32_t ft = 0;
      long k = cz_gguf_find_kv(o, "general.file_type");
      CHECK(k >= 0 && cz_gguf_kv_u32(&o->kv[k], &ft));
      CHECK(ft == 15 || ft == 17);  /* q4_K or q5_K */
      cz_model_close(o);
    }
    cz_model_close(q);
  }
  /* bits per weight: over every tensor's elements, as llama-quantize counts them */
  cz_model *o = budget_run(in, "{\"steps\":[{\"op\":\"quantize\",\"target_bpw\":4.5}]}",
                           "b-bpw.gguf", &rp, &err);
  CHECK(o != NULL);
  double bpw = json_number_value(json_object_get(json_object_get(rp, "totals"), "bpw"));
  CHECK(bpw <= 4.5 && bpw > 4.4);
  cz_model_close(o);
  /* plenty of room: the best candidate everywhere; one candidate: that one */
  o = budget_run(in, "{\"steps\":[{\"op\":\"quantize\",\"target_bpw\":32,\"types\":[\"q4_0\",\"q6_K\"]}]}",
                 "b-top.gguf", &rt, &err);
  CHECK(o != NULL);
  if (o) {
    CHECK_EQ_INT(cz_model_find(o, "blk.0.attn_q.weight")->type, CZ_TYPE_Q6_K);
    CHECK_EQ_INT(cz_model_find(o, "output.weight")->type, CZ_TYPE_Q6_K);
    CHECK_EQ_INT(cz_model_find(o, "blk.0.attn_norm.weight")->type, CZ_TYPE_F32);
    cz_model_close(o);
  }
  /* too small a budget: the smallest possible is named */
  json_t *rx = NULL;
  o = budget_run(in, "{\"steps\":[{\"op\":\"quantize\",\"target_bpw\":1.5}]}", "b-small.gguf",
                 &rx, &err);
  CHECK(o == NULL);
  CHECK_EQ_INT(err.code, CZ_E_INVALID_PARAMETER);
  CHECK(strstr(err.msg, "raise target_bpw") != NULL);
  /* with a calibration the weights are used (and the run still fits) */
  char im_path[512];
  data_path(im_path, sizeof im_path, "tiny-llama-imatrix.gguf");
  cz_imatrix *im = NULL;
  if (cz_imatrix_open(im_path, &im, &err) == CZ_E_OK) {
    cz_mixture_choice *ch = calloc(in->n_tensors, sizeof *ch);
    json_t *step = parse_json("{\"op\":\"quantize\",\"target_bpw\":4.0}");
    cz_budget *b = NULL;
    cz_budget_result res;
    CHECK_EQ_INT(cz_budget_parse(step, 0, &b, &err), CZ_E_OK);
    if (b) {
      CHECK_EQ_INT(cz_budget_plan(b, in, im, 0, ch, &res, &err), CZ_E_OK);
      CHECK(res.chosen_bytes <= res.budget_bytes && res.min_bytes <= res.chosen_bytes);
      CHECK(res.error > 0);
    }
    cz_budget_free(b);
    json_decref(step);
    free(ch);
    cz_imatrix_free(im);
  }
  json_decref(rq);
  json_decref(rb);
  json_decref(rp);
  json_decref(rt);
  json_decref(rx);
  cz_model_close(in);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb;
  (void)flag;
  (void)f;
  return remove(p);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "%s/cz_test_mixture.XXXXXX",
           getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (mkdtemp(tmpdir) == NULL) {
    printf("Bail out! mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  static const cz_test_case cases[] = {
      CZ_TEST(test_manifest_runs), CZ_TEST(test_fallbacks),    CZ_TEST(test_layer_rules),
      CZ_TEST(test_tied_and_moe),  CZ_TEST(test_options),      CZ_TEST(test_parse_errors),
      CZ_TEST(test_pipeline_presets), CZ_TEST(test_budget),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}
