/* cz_method: the method registry table and the lookup of a recipe step's row. */
#include "cz_method.h"

#include <string.h>

/* Rows live in the method files; the table only lists them. */
extern const cz_method cz_m_quantize_gguf;
extern const cz_method cz_m_quantize_int8;

static const cz_method *const registry[] = {
    &cz_m_quantize_gguf, /* id 1 */
    &cz_m_quantize_int8, /* id 2 */
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
