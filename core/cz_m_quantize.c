/* cz_m_quantize: the "quantize" methods: ggml block types for GGUF, int8 per channel for
 * safetensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz_imatrix.h"
#include "cz_method.h"
#include "cz_mixture.h"

/* ---- shared ---- */

typedef struct {
  cz_type type;      /* quantize.gguf: the ggml type; quantize.int8: CZ_TYPE_I8 */
  cz_mixture *mx;    /* quantize.gguf with a llama.cpp preset: the mixture (type unused) */
  cz_budget *budget; /* quantize.gguf with target_bpw / target_bytes (type unused) */
} quant_params;

static void quant_free(void *p) {
  if (p) {
    cz_mixture_free(((quant_params *)p)->mx);
    cz_budget_free(((quant_params *)p)->budget);
  }
  free(p);
}

/* Input element types we decode to float for quantization. Anything else (already
 * quantized, integer) is passed through. */
static bool is_float_input(cz_type t) {
  return t == CZ_TYPE_F32 || t == CZ_TYPE_F16 || t == CZ_TYPE_BF16;
}

static void plan_copy(const cz_tensor *t, const char *note, cz_tensor_plan *p) {
  memset(p, 0, sizeof *p);
  p->transform = false;
  p->note = note;
  p->n_out = 1;
  snprintf(p->out[0].name, sizeof p->out[0].name, "%s", t->name);
  p->out[0].type = t->type;
  p->out[0].n_dims = t->n_dims;
  memcpy(p->out[0].ne, t->ne, sizeof t->ne);
  p->out[0].row_bytes = cz_type_row_size(t->type, t->ne[0]);
  p->out_type_name = cz_type_get(t->type)->name;
}

static int64_t rows_of(const cz_tensor *t) {
  int64_t r = 1;
  for (int i = 1; i < t->n_dims; i++) r *= t->ne[i];
  return r;
}

/* ---- quantize.gguf: any ggml type we can encode, bit-exact with ggml ---- */

/* Can this build write type t into a GGUF file? */
static bool producible(int t) {
  const cz_type_traits *tr = cz_type_get(t);
  return tr && tr->in_gguf && tr->to_f32 != NULL && (tr->quantize != NULL || tr->from_f32 != NULL);
}

static int gguf_type_of(const json_t *step) {
  const char *name = json_string_value(json_object_get(step, "type"));
  if (name == NULL) return -1;
  int t = cz_type_from_name(name);
  return producible(t) ? t : -1;
}

/* "q8_0, f16, ..." : the types this build produces, for error messages. */
static void producible_list(char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = 0;
  for (int t = 0; t < CZ_TYPE_GGML_END && n < cap; t++)
    if (producible(t))
      n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", cz_type_get(t)->name);
}

static bool gguf_match(const json_t *step) {
  if (json_object_get(step, "preset") != NULL || json_object_get(step, "target_bpw") != NULL ||
      json_object_get(step, "target_bytes") != NULL)
    return true;
  return json_string_value(json_object_get(step, "type")) != NULL &&
         strcmp(json_string_value(json_object_get(step, "type")), "int8") != 0;
}

static cz_err_code check_keys(const json_t *step, int idx, const char *const *allowed,
                              cz_error *err) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)step, key, v) {
    bool ok = false;
    for (int i = 0; allowed[i]; i++) ok |= strcmp(key, allowed[i]) == 0;
    if (!ok)
      return cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].%s: unknown parameter", idx, key);
  }
  return CZ_E_OK;
}

/* {"op": "quantize", "preset": "Q4_K_M", options...}: a llama.cpp mixture. */
static cz_err_code preset_parse(const json_t *step, int idx, quant_params *p, cz_error *err) {
  static const char *const allowed[] = {"op", "preset", "pure", "leave_output_tensor",
                                        "output_tensor_type", "token_embedding_type",
                                        "tensor_types", "file_type", NULL};
  if (json_object_get(step, "type"))
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].type: give either \"type\" (one type for every tensor) or "
                      "\"preset\" (a llama.cpp mixture), not both", idx);
  cz_err_code rc = check_keys(step, idx, allowed, err);
  if (rc || (rc = cz_mixture_parse(step, idx, &p->mx, err))) return rc;
  /* types named explicitly must be ones we can write; the preset's own are checked per tensor
   * at plan time, where the error can say which tensor needs what */
  cz_type types[2 + 256];
  int n = cz_mixture_explicit_types(p->mx, types, (int)(sizeof types / sizeof types[0]));
  for (int i = 0; i < n; i++)
    if (!producible(types[i])) {
      char list[512];
      producible_list(list, sizeof list);
      return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d]: \"%s\" is not a type this server can produce (supported: %s)",
                        idx, cz_type_get(types[i])->name, list);
    }
  return CZ_E_OK;
}

/* {"op": "quantize", "target_bpw": 4.5} / {"target_bytes": N}, optional "types": a size
 * budget met with the least error. */
static cz_err_code budget_parse(const json_t *step, int idx, quant_params *p, cz_error *err) {
  static const char *const allowed[] = {"op", "target_bpw", "target_bytes", "types", NULL};
  if (json_object_get(step, "type") || json_object_get(step, "preset"))
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d]: a size budget (target_bpw / target_bytes) picks the types "
                      "itself: give it without \"type\" or \"preset\"", idx);
  cz_err_code rc = check_keys(step, idx, allowed, err);
  if (rc || (rc = cz_budget_parse(step, idx, &p->budget, err))) return rc;
  cz_type types[32];
  int n = cz_budget_types(p->budget, types, 32);
  for (int i = 0; i < n; i++)
    if (!producible(types[i])) {
      char list[512];
      producible_list(list, sizeof list);
      return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d].types: \"%s\" is not a type this server can produce "
                        "(supported: %s)", idx, cz_type_get(types[i])->name, list);
    }
  return CZ_E_OK;
}

static cz_err_code gguf_parse(const json_t *step, int idx, void **params, cz_error *err) {
  /* a form may send the preset switches at their default (false) with a plain type */
  static const char *const allowed[] = {"op", "type", "pure", "leave_output_tensor", NULL};
  static const char *const preset_only[] = {"pure", "leave_output_tensor", NULL};
  quant_params *p = calloc(1, sizeof *p);
  if (!p) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz_err_code rc;
  if (json_object_get(step, "target_bpw") != NULL || json_object_get(step, "target_bytes") != NULL) {
    rc = budget_parse(step, idx, p, err);
  } else if (json_object_get(step, "preset") != NULL) {
    rc = preset_parse(step, idx, p, err);
  } else if (!(rc = check_keys(step, idx, allowed, err))) {
    for (int i = 0; preset_only[i] && !rc; i++)
      if (json_object_get(step, preset_only[i]) && !json_is_false(json_object_get(step, preset_only[i])))
        rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d].%s: only with \"preset\" (a plain \"type\" already gives every "
                        "eligible tensor that type)", idx, preset_only[i]);
  }
  if (!rc && !p->mx && !p->budget) {
    int t = gguf_type_of(step);
    if (t < 0) {
      char list[512];
      producible_list(list, sizeof list);
      rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].type: \"%s\" is not a type this server can produce "
                      "(supported: %s, int8; or a llama.cpp mixture with \"preset\")",
                      idx, json_string_value(json_object_get(step, "type")), list);
    }
    p->type = (cz_type)t;
  }
  if (rc) {
    quant_free(p);
    return rc;
  }
  *params = p;
  return CZ_E_OK;
}

static json_t *gguf_describe(const void *params) {
  const quant_params *p = params;
  if (p->mx) return cz_mixture_describe(p->mx);
  if (p->budget) return cz_budget_describe(p->budget);
  return json_pack("{s:s, s:s}", "op", "quantize", "type", cz_type_get(p->type)->name);
}

static bool gguf_supports(const void *params, cz_format f) {
  const quant_params *p = params;
  if (p->mx || p->budget) return f == CZ_FORMAT_GGUF;  /* a mixture of ggml block types */
  /* block types exist only in GGUF; plain float types are fine in both */
  return f == CZ_FORMAT_GGUF || cz_type_get(p->type)->st_name != NULL;
}

/* An upper bound of what a GGUF output of m spends besides tensor data. From a GGUF input:
 * its own header (the KVs and tensor infos are carried over with the same sizes), 1 KiB for
 * the keys we add and the alignment padding of every tensor. Otherwise the names and dims
 * of every tensor, a little for the keys and the padding. */
static uint64_t header_bound(const cz_model *m) {
  const uint64_t align = m->alignment ? m->alignment : 32;
  uint64_t data_start = UINT64_MAX, names = 4096;
  for (size_t i = 0; i < m->n_tensors; i++) {
    const cz_tensor *t = &m->tensors[i];
    names += strlen(t->name) + 8 + 4 + 8 * CZ_MAX_DIMS + 4 + 8;
    if (t->nbytes && (uint64_t)(t->data - (const uint8_t *)m->map) < data_start)
      data_start = (uint64_t)(t->data - (const uint8_t *)m->map);
  }
  uint64_t h = m->format == CZ_FORMAT_GGUF && data_start != UINT64_MAX ? data_start + 1024 : names;
  return h + m->n_tensors * align;
}

static cz_err_code budget_plan_begin(const quant_params *q, const cz_plan_ctx *ctx, void **state,
                                     cz_error *err) {
  size_t n = ctx->model->n_tensors;
  cz_mixture_choice *c = calloc(n ? n : 1, sizeof *c);
  if (!c) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz_budget_result res;
  cz_err_code rc = cz_budget_plan(q->budget, ctx->model, ctx->imatrix, header_bound(ctx->model),
                                  c, &res, err);
  if (rc) {
    free(c);
    return rc;
  }
  *state = c;
  return CZ_E_OK;
}

/* The mixture decides every tensor up front: its layer counters run in llama.cpp's tensor
 * order, not the file's. */
static cz_err_code gguf_plan_begin(const void *params, const cz_plan_ctx *ctx, void **state,
                                   cz_error *err) {
  const quant_params *q = params;
  *state = NULL;
  if (q->budget) return budget_plan_begin(q, ctx, state, err);
  if (!q->mx) return CZ_E_OK;
  if (ctx->model->format != CZ_FORMAT_GGUF)
    return cz_err_set(err, CZ_E_UNSUPPORTED_INPUT,
                      "preset %s: llama.cpp mixtures need a llama.cpp GGUF input (its tensor "
                      "names and hyperparameters); for other inputs use {\"type\": ...}",
                      cz_mixture_preset_name(q->mx));
  size_t n = ctx->model->n_tensors;
  cz_mixture_choice *c = calloc(n ? n : 1, sizeof *c);
  if (!c) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz_err_code rc = cz_mixture_plan(q->mx, ctx->model, ctx->imatrix != NULL, c, err);
  if (rc) {
    free(c);
    return rc;
  }
  *state = c;
  return CZ_E_OK;
}

static void gguf_plan_end(void *state) { free(state); }

static bool is_embd_or_output(const char *name) {
  return strcmp(name, "token_embd.weight") == 0 || strcmp(name, "per_layer_token_embd.weight") == 0 ||
         strcmp(name, "output.weight") == 0;
}

/* The importance weights of t from the job's calibration, as llama-quantize picks them: by
 * name, ne[0] values per expert; a size mismatch is an error except for the token embedding
 * (which imatrix files famously get wrong); a type that needs weights refuses to go without. */
static cz_err_code attach_imatrix(const cz_plan_ctx *ctx, const cz_tensor *t, bool requires,
                                  cz_tensor_plan *p, cz_error *err) {
  p->imatrix = NULL;
  if (ctx->imatrix) {
    int64_t n = 0;
    const float *w = cz_imatrix_find(ctx->imatrix, t->name, &n);
    const int64_t want = t->ne[0] * (t->n_dims >= 3 ? t->ne[2] : 1);
    if (w && n == want)
      p->imatrix = w;
    else if (w && strcmp(t->name, "token_embd.weight") != 0 &&
             strcmp(t->name, "per_layer_token_embd.weight") != 0)
      return cz_err_set(err, CZ_E_INVALID_ARGUMENT,
                        "calibration: the importance matrix of %s has %lld values, the tensor "
                        "needs %lld (ne[0] times the number of experts)", t->name, (long long)n,
                        (long long)want);
  }
  if (requires && !p->imatrix)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "tensor %s: type %s needs an importance matrix%s: upload one with POST "
                      "/v1/calibrations and name it in the job's \"calibration\" (CLI: "
                      "--calibration FILE)", t->name, cz_type_get(p->out[0].type)->name,
                      ctx->imatrix ? ", and the calibration has none for this tensor" : "");
  return CZ_E_OK;
}

static cz_err_code gguf_plan(const void *params, const cz_plan_ctx *ctx, const cz_tensor *t,
                             cz_tensor_plan *p, cz_error *err) {
  const quant_params *q = params;
  cz_type type = q->type;
  const char *note = NULL;
  bool requires;
  if (q->mx || q->budget) {
    const cz_mixture_choice *c = &((const cz_mixture_choice *)ctx->state)[ctx->index];
    if (!c->quantize) {
      plan_copy(t, c->note, p);
      return CZ_E_OK;
    }
    if (!is_float_input(t->type)) {
      plan_copy(t, "input type is not F32, F16 or BF16", p);
      return CZ_E_OK;
    }
    type = c->type;
    note = c->note;
    requires = c->requires_imatrix;
    if (!producible(type))
      return cz_err_set(err, CZ_E_UNSUPPORTED,
                        "tensor %s: %s chooses %s for it, which this server cannot "
                        "produce yet", t->name, q->mx ? cz_mixture_preset_name(q->mx) : "the budget",
                        cz_type_get(type)->name);
  } else {
    const cz_type_traits *tr = cz_type_get(q->type);
    const char *why = cz_method_ineligible(t);
    if (why) {
      plan_copy(t, why, p);
      return CZ_E_OK;
    }
    if (!is_float_input(t->type)) {
      plan_copy(t, "input type is not F32, F16 or BF16", p);
      return CZ_E_OK;
    }
    if (t->ne[0] % tr->blck_size != 0) {
      plan_copy(t, tr->blck_size == 32 ? "row length is not a multiple of the block size 32"
                                       : "row length is not a multiple of the block size 256",
                p);
      return CZ_E_OK;
    }
    requires = tr->requires_imatrix && !is_embd_or_output(t->name);
  }
  const cz_type_traits *tr = cz_type_get(type);
  memset(p, 0, sizeof *p);
  p->transform = true;
  p->note = note;
  p->n_out = 1;
  snprintf(p->out[0].name, sizeof p->out[0].name, "%s", t->name);
  p->out[0].type = type;
  p->out[0].n_dims = t->n_dims;
  memcpy(p->out[0].ne, t->ne, sizeof t->ne);
  p->out[0].row_bytes = cz_type_row_size(type, t->ne[0]);
  p->out_type_name = tr->name;
  return attach_imatrix(ctx, t, requires, p, err);
}

static void gguf_encode(const void *params, const cz_tensor_plan *p, const float *x,
                        int64_t nrows, int64_t ncols, uint8_t *const out[CZ_MAX_OUTPUTS]) {
  const cz_type_traits *tr = cz_type_get(p->out[0].type);
  if (tr->quantize) {
    tr->quantize(x, out[0], nrows, ncols, p->imatrix);
    return;
  }
  for (int64_t r = 0; r < nrows; r++)
    tr->from_f32(x + r * ncols, out[0] + (uint64_t)r * p->out[0].row_bytes, ncols);
}

static void gguf_decode(const void *params, const cz_tensor_plan *p,
                        const uint8_t *const in[CZ_MAX_OUTPUTS], int64_t nrows, int64_t ncols,
                        float *y) {
  const cz_type_traits *tr = cz_type_get(p->out[0].type);
  for (int64_t r = 0; r < nrows; r++)
    tr->to_f32(in[0] + (uint64_t)r * p->out[0].row_bytes, y + r * ncols, ncols);
}

/* Schema: "type" lists every ggml type this build writes, and "types" gives for each its
 * bits per weight, the output formats that can hold it and whether it needs importance
 * weights (derived from the type table, so new kernels appear without editing this). */
static bool schema_gguf_writable(int t) {
  const cz_type_traits *tr = cz_type_get(t);
  return tr && tr->in_gguf && tr->to_f32 && (tr->quantize || tr->from_f32);
}

static json_t *gguf_schema(void) {
  json_t *names = json_array(), *types = json_array();
  for (int t = 0; t < CZ_TYPE_GGML_END; t++) {
    if (!schema_gguf_writable(t)) continue;
    const cz_type_traits *tr = cz_type_get(t);
    json_array_append_new(names, json_string(tr->name));
    json_t *formats = json_pack("[s]", "gguf");
    if (tr->st_name) json_array_append_new(formats, json_string("safetensors"));
    json_array_append_new(
        types, json_pack("{s:s, s:f, s:o, s:b, s:b}", "name", tr->name, "bits_per_weight",
                         (double)tr->type_size * 8.0 / (double)tr->blck_size, "output_formats",
                         formats, "quantized", tr->is_quantized, "requires_importance_matrix",
                         tr->requires_imatrix));
  }
  json_t *preset_names = json_array(), *presets = json_array();
  for (int i = 0; i < cz_mixture_n_presets(); i++) {
    int ftype;
    cz_type def;
    const char *name = cz_mixture_preset_at(i, &ftype, &def);
    json_array_append_new(preset_names, json_string(name));
    json_array_append_new(presets, json_pack("{s:s, s:i, s:s}", "name", name, "file_type", ftype,
                                             "default_type", cz_type_get(def)->name));
  }
  /* "presets": each with general.file_type and the type most tensors get */
  json_t *schema = json_pack(
      "{s:[{s:s, s:s, s:b, s:o, s:s}, {s:s, s:s, s:b, s:o, s:s}, {s:s, s:s, s:b, s:s},"
      " {s:s, s:s, s:b, s:s}, {s:s, s:s, s:b, s:O, s:s}, {s:s, s:s, s:b, s:O, s:s},"
      " {s:s, s:s, s:b, s:s}], s:[s, s], s:o, s:o}",
      "params",
      "name", "type", "type", "string", "required", 0, "enum", names, "description",
      "ggml type for every eligible weight matrix (2-D, name ending in weight, not a norm); "
      "other tensors are copied. Give either type or preset",
      "name", "preset", "type", "string", "required", 0, "enum", preset_names, "description",
      "a llama-quantize type mixture: each tensor gets the type llama-quantize would give it "
      "(GGUF input and output only)",
      "name", "pure", "type", "boolean", "required", 0, "description",
      "preset only: no mixture, the preset's type for every eligible tensor (--pure)",
      "name", "leave_output_tensor", "type", "boolean", "required", 0, "description", "preset only: keep output.weight as it is (--leave-output-tensor)",
      "name", "output_tensor_type", "type", "string", "required", 0, "enum", names,
      "description", "preset only: type of output.weight (--output-tensor-type)",
      "name", "token_embedding_type", "type", "string", "required", 0, "enum", names,
      "description", "preset only: type of token_embd.weight (--token-embedding-type)",
      "name", "tensor_types", "type", "object", "required", 0, "description",
      "preset only: {\"REGEX\": \"type\"}; the first pattern found in a tensor's name gives "
      "its type (--tensor-type)",
      "output_formats", "gguf", "safetensors", "types", types, "presets", presets);
  json_t *params = json_object_get(schema, "params");
  json_array_append_new(
      params, json_pack("{s:s, s:s, s:b, s:f, s:f, s:s, s:s}", "name", "target_bpw", "type",
                        "number", "required", 0, "minimum", 0.0, "maximum", 32.0, "unit",
                        "bits per weight", "description",
                        "size budget: the types per tensor (among \"types\") with the least "
                        "error that fit this many bits per weight. Instead of type or preset"));
  json_array_append_new(
      params, json_pack("{s:s, s:s, s:b, s:i, s:s, s:s}", "name", "target_bytes", "type",
                        "integer", "required", 0, "minimum", 1, "unit", "bytes", "description",
                        "size budget as the whole output file's size. Instead of target_bpw"));
  json_array_append_new(
      params, json_pack("{s:s, s:s, s:b, s:i, s:i, s:s}", "name", "types", "type", "array",
                        "required", 0, "min_items", 1, "max_items", 16, "description",
                        "with a size budget: the candidate types (default q2_K, q3_K, q4_K, "
                        "q5_K, q6_K, q8_0, q4_0, q5_0)"));
  return schema;
}

const cz_method cz_m_quantize_gguf = {
    .id = 1,
    .name = "quantize.gguf",
    .op = "quantize",
    .summary = "ggml block quantization, byte-identical to ggml: one type for every tensor, or a "
               "llama.cpp mixture (\"preset\": \"Q4_K_M\", ...) chosen per tensor as "
               "llama-quantize does",
    .match = gguf_match,
    .parse = gguf_parse,
    .free_params = quant_free,
    .describe = gguf_describe,
    .supports_format = gguf_supports,
    .plan_begin = gguf_plan_begin,
    .plan_end = gguf_plan_end,
    .plan = gguf_plan,
    .encode = gguf_encode,
    .decode = gguf_decode,
    .schema = gguf_schema,
};

/* ---- quantize.int8: symmetric, one float32 scale per output channel (row) ---- */

static bool int8_match(const json_t *step) {
  const char *t = json_string_value(json_object_get(step, "type"));
  return t && strcmp(t, "int8") == 0;
}

static cz_err_code int8_parse(const json_t *step, int idx, void **params, cz_error *err) {
  static const char *const allowed[] = {"op", "type", "granularity", "symmetric", NULL};
  cz_err_code rc = check_keys(step, idx, allowed, err);
  if (rc) return rc;
  json_t *sym = json_object_get(step, "symmetric");
  if (sym && !json_is_true(sym))
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].symmetric: only symmetric (true) int8 is supported", idx);
  json_t *g = json_object_get(step, "granularity");
  if (g && (!json_is_string(g) || strcmp(json_string_value(g), "channel") != 0))
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].granularity: only \"channel\" is supported for int8", idx);
  quant_params *p = calloc(1, sizeof *p);
  if (!p) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  p->type = CZ_TYPE_I8;
  *params = p;
  return CZ_E_OK;
}

static json_t *int8_describe(const void *params) {
  return json_pack("{s:s, s:s, s:s, s:b}", "op", "quantize", "type", "int8", "granularity",
                   "channel", "symmetric", 1);
}

static bool int8_supports(const void *params, cz_format f) { return f == CZ_FORMAT_SAFETENSORS; }

static cz_err_code int8_plan(const void *params, const cz_plan_ctx *ctx, const cz_tensor *t,
                             cz_tensor_plan *p, cz_error *err) {
  const char *why = cz_method_ineligible(t);
  if (why) {
    plan_copy(t, why, p);
    return CZ_E_OK;
  }
  if (!is_float_input(t->type)) {
    plan_copy(t, "input type is not F32, F16 or BF16", p);
    return CZ_E_OK;
  }
  memset(p, 0, sizeof *p);
  p->transform = true;
  p->n_out = 2;
  snprintf(p->out[0].name, sizeof p->out[0].name, "%s", t->name);
  p->out[0].type = CZ_TYPE_I8;
  p->out[0].n_dims = t->n_dims;
  memcpy(p->out[0].ne, t->ne, sizeof t->ne);
  p->out[0].row_bytes = (uint64_t)t->ne[0];
  /* compressed-tensors' channel strategy: weight_scale of shape [rows, 1] */
  snprintf(p->out[1].name, sizeof p->out[1].name, "%s_scale", t->name);
  p->out[1].type = CZ_TYPE_F32;
  p->out[1].n_dims = 2;
  p->out[1].ne[0] = 1;
  p->out[1].ne[1] = rows_of(t);
  p->out[1].ne[2] = p->out[1].ne[3] = 1;
  p->out[1].row_bytes = sizeof(float);
  p->out_type_name = "int8";
  return CZ_E_OK;
}

static void int8_encode(const void *params, const cz_tensor_plan *p, const float *x,
                        int64_t nrows, int64_t ncols, uint8_t *const out[CZ_MAX_OUTPUTS]) {
  for (int64_t r = 0; r < nrows; r++) {
    const float *row = x + r * ncols;
    float amax = 0;
    for (int64_t j = 0; j < ncols; j++) amax = fmaxf(amax, fabsf(row[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int8_t *q = (int8_t *)(out[0] + r * ncols);
    for (int64_t j = 0; j < ncols; j++) q[j] = (int8_t)roundf(row[j] * id);
    memcpy(out[1] + r * sizeof(float), &d, sizeof d);
  }
}

static void int8_decode(const void *params, const cz_tensor_plan *p,
                        const uint8_t *const in[CZ_MAX_OUTPUTS], int64_t nrows, int64_t ncols,
                        float *y) {
  for (int64_t r = 0; r < nrows; r++) {
    float d;
    memcpy(&d, in[1] + r * sizeof(float), sizeof d);
    const int8_t *q = (const int8_t *)(in[0] + r * ncols);
    for (int64_t j = 0; j < ncols; j++) y[r * ncols + j] = (float)q[j] * d;
  }
}

static json_t *int8_schema(void) {
  return json_pack("{s:[{s:s, s:s, s:b, s:[s], s:s}, {s:s, s:s, s:b, s:s, s:[s], s:s},"
                   " {s:s, s:s, s:b, s:b, s:[b], s:s}], s:[s]}",
                   "params", "name", "type", "type", "string", "required", 1, "enum", "int8",
                   "description", "8-bit integers with one float32 scale per output channel",
                   "name", "granularity", "type", "string", "required", 0, "default", "channel",
                   "enum", "channel", "description", "one scale per output channel (row)",
                   "name", "symmetric", "type", "boolean", "required", 0, "default", 1, "enum",
                   1, "description", "zero maps to zero; the scale is max|w| / 127",
                   "output_formats", "safetensors");
}

const cz_method cz_m_quantize_int8 = {
    .id = 2,
    .name = "quantize.int8",
    .op = "quantize",
    .summary = "symmetric int8, one float32 scale per output channel (safetensors)",
    .match = int8_match,
    .parse = int8_parse,
    .free_params = quant_free,
    .describe = int8_describe,
    .supports_format = int8_supports,
    .plan = int8_plan,
    .encode = int8_encode,
    .decode = int8_decode,
    .schema = int8_schema,
};
