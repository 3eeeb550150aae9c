/* cz_method: the method registry table and the lookup of a recipe step's row. */
#include "cz_method.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Rows live in the method files; the table only lists them. */
extern const cz_method cz_m_quantize_gguf;
extern const cz_method cz_m_quantize_int8;
extern const cz_method cz_m_prune_magnitude;
extern const cz_method cz_m_prune_nm;
extern const cz_method cz_m_prune_structured;
extern const cz_method cz_m_prune_wanda;
extern const cz_method cz_m_factorize_svd;
extern const cz_method cz_m_factorize_rsvd;
extern const cz_method cz_m_palettize;
extern const cz_method cz_m_quantize_int_packed;
extern const cz_method cz_m_quantize_nf4;
extern const cz_method cz_m_quantize_fp8;

static const cz_method *const registry[] = {
    &cz_m_quantize_gguf,    /* id 1 */
    &cz_m_quantize_int8,    /* id 2 */
    &cz_m_prune_magnitude,  /* id 3 */
    &cz_m_prune_nm,         /* id 4 */
    &cz_m_prune_structured, /* id 5 */
    &cz_m_prune_wanda,      /* id 6 */
    &cz_m_factorize_svd,    /* id 7 */
    &cz_m_factorize_rsvd,   /* id 8 */
    &cz_m_palettize,        /* id 9 */
    &cz_m_quantize_int_packed, /* id 10 */
    &cz_m_quantize_nf4,     /* id 11 */
    &cz_m_quantize_fp8,     /* id 12 */
};
#define REGISTRY_LEN ((int)(sizeof registry / sizeof registry[0]))

const cz_method *const *cz_method_table(int *count) {
  *count = REGISTRY_LEN;
  return registry;
}

const cz_method *cz_method_by_id(int id) {
  for (int i = 0; i < REGISTRY_LEN; i++)
    if (registry[i]->id == id) return registry[i];
  return NULL;
}

cz_err_code cz_method_for_step(const json_t *step, int step_index, const cz_method **m,
                               cz_error *err) {
  if (!json_is_object(step))
    return cz_err_set(err, CZ_E_INVALID_RECIPE, "steps[%d] must be an object", step_index);
  const char *op = json_string_value(json_object_get(step, "op"));
  if (op == NULL)
    return cz_err_set(err, CZ_E_INVALID_RECIPE, "steps[%d].op is required (a string)",
                      step_index);
  bool op_known = false;
  for (int i = 0; i < REGISTRY_LEN; i++) {
    if (strcmp(registry[i]->op, op) != 0) continue;
    op_known = true;
    if (registry[i]->match(step)) {
      *m = registry[i];
      return CZ_E_OK;
    }
  }
  if (!op_known)
    return cz_err_set(err, CZ_E_UNKNOWN_METHOD, "steps[%d].op: unknown operation \"%s\"",
                      step_index, op);
  const json_t *method = json_object_get(step, "method");
  if (method && !json_is_string(method))
    return cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].method must be a string", step_index);
  if (method)
    return cz_err_set(err, CZ_E_UNKNOWN_METHOD,
                      "steps[%d].method: \"%s\" is not a \"%s\" method (see GET /v1/methods)",
                      step_index, json_string_value(method), op);
  return cz_err_set(err, CZ_E_UNKNOWN_METHOD,
                    "steps[%d]: no \"%s\" method matches these parameters (see GET /v1/methods)",
                    step_index, op);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

const char *cz_method_ineligible(const cz_tensor *t) {
  if (t->n_dims < 2) return "1-D tensor (norms and biases are kept as they are)";
  for (int d = 0; d < t->n_dims; d++)
    if (t->ne[d] == 0) return "tensor has no elements";
  if (!ends_with(t->name, "weight")) return "not a weight matrix";
  /* llama-quantize's exclusions: norms, the MoE router, position and token-type embeddings */
  static const char *const excluded[] = {"_norm.weight", "ffn_gate_inp.weight",
                                         "position_embd", "token_types", "layernorm", NULL};
  for (int i = 0; excluded[i]; i++)
    if (strstr(t->name, excluded[i])) return "excluded by name (norm, router or position tensor)";
  return NULL;
}

/* Token embeddings are looked up, not multiplied: pruning or factorizing them is rarely what
 * anyone wants, so the whole-tensor methods leave them out unless an include names them. */
static bool is_embedding(const char *name) {
  static const char *const emb[] = {"token_embd", "embed_tokens", "tok_embeddings", "wte.",
                                    "word_embeddings", "embed_in.", NULL};
  for (int i = 0; emb[i]; i++)
    if (strstr(name, emb[i])) return true;
  return false;
}

const char *cz_method_wt_refuse(const cz_wt *w, bool named, bool embeddings) {
  if (w->n_dims < 2) return "1-D tensor (norms and biases are kept as they are)";
  if (w->rows == 0 || w->cols == 0) return "tensor has no elements";
  if (named) return NULL;
  cz_tensor t = {.name = w->name, .type = CZ_TYPE_F32, .n_dims = w->n_dims};
  memcpy(t.ne, w->ne, sizeof t.ne);
  const char *why = cz_method_ineligible(&t);
  if (why) return why;
  if (!embeddings && is_embedding(w->name)) return "embedding (selected only by an include)";
  return NULL;
}

/* ---- parameter helpers ---- */

cz_err_code cz_param_keys(const json_t *step, int idx, const char *const *allowed, cz_error *err) {
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

cz_err_code cz_param_real(const json_t *step, int idx, const char *key, double lo, bool lo_open,
                          double hi, double def, double *out, bool *given, cz_error *err) {
  const json_t *v = json_object_get(step, key);
  if (given) *given = v != NULL;
  if (!v) {
    *out = def;
    return CZ_E_OK;
  }
  double d = json_number_value(v);
  if (!json_is_number(v) || !isfinite(d) || d < lo || (lo_open && d == lo) || d > hi)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].%s must be a number in %c%g, %g]",
                      idx, key, lo_open ? '(' : '[', lo, hi);
  *out = d;
  return CZ_E_OK;
}

cz_err_code cz_param_int(const json_t *step, int idx, const char *key, int64_t lo, int64_t hi,
                         int64_t def, int64_t *out, bool *given, cz_error *err) {
  const json_t *v = json_object_get(step, key);
  if (given) *given = v != NULL;
  if (!v) {
    *out = def;
    return CZ_E_OK;
  }
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].%s must be an integer in [%lld, %lld]",
                      idx, key, (long long)lo, (long long)hi);
  *out = json_integer_value(v);
  return CZ_E_OK;
}

cz_err_code cz_param_bool(const json_t *step, int idx, const char *key, bool def, bool *out,
                          bool *given, cz_error *err) {
  const json_t *v = json_object_get(step, key);
  if (given) *given = v != NULL;
  if (!v) {
    *out = def;
    return CZ_E_OK;
  }
  if (!json_is_boolean(v))
    return cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].%s must be true or false", idx, key);
  *out = json_is_true(v);
  return CZ_E_OK;
}

cz_err_code cz_param_enum(const json_t *step, int idx, const char *key,
                          const char *const *names, int def, int *out, cz_error *err) {
  const json_t *v = json_object_get(step, key);
  if (!v) {
    *out = def;
    return CZ_E_OK;
  }
  const char *s = json_string_value(v);
  for (int i = 0; s && names[i]; i++)
    if (strcmp(s, names[i]) == 0) {
      *out = i;
      return CZ_E_OK;
    }
  char list[256] = "";
  size_t used = 0;
  for (int i = 0; names[i] && used < sizeof list; i++)
    used += (size_t)snprintf(list + used, sizeof list - used, "%s\"%s\"", i ? ", " : "", names[i]);
  return cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].%s must be one of %s", idx, key, list);
}

bool cz_derived_name(char *out, size_t n, const char *name, const char *suffix, bool keep_weight) {
  size_t len = strlen(name);
  bool w = len >= 7 && strcmp(name + len - 7, ".weight") == 0;
  if (w) len -= 7;
  int k = snprintf(out, n, "%.*s.%s%s", (int)len, name, suffix, w && keep_weight ? ".weight" : "");
  return k >= 0 && (size_t)k < n;
}

bool cz_suffixed_name(char *out, size_t n, const char *name, const char *sep, const char *suffix) {
  size_t a = strlen(name), b = strlen(sep), c = strlen(suffix);
  if (a + b + c + 1 > n) return false;
  memcpy(out, name, a);
  memcpy(out + a, sep, b);
  memcpy(out + a + b, suffix, c + 1);
  return true;
}

/* ---- schema helpers ---- */

json_t *cz_schema_param(const char *name, const char *type, bool required, json_t *def,
                        json_t *enum_, double minimum, double maximum, const char *description) {
  json_t *p = json_pack("{s:s, s:s, s:b, s:s}", "name", name, "type", type, "required", required,
                        "description", description);
  if (def) json_object_set_new(p, "default", def);
  if (enum_) json_object_set_new(p, "enum", enum_);
  if (!isnan(minimum)) json_object_set_new(p, "minimum", json_real(minimum));
  if (!isnan(maximum)) json_object_set_new(p, "maximum", json_real(maximum));
  return p;
}

void cz_schema_add_selectors(json_t *params) {
  json_array_append_new(params, cz_schema_param(
      "include", "array", false, NULL, NULL, NAN, NAN,
      "glob patterns (fnmatch) over tensor names, including names earlier steps produced "
      "(\"*.lowrank_a.weight\"); when given, it replaces the default selection (2-D weight "
      "matrices, not norms, routers or embeddings)"));
  json_array_append_new(params, cz_schema_param("exclude", "array", false, NULL, NULL, NAN, NAN,
                                                "glob patterns of tensor names left out"));
}
