/* cz_api_methods: GET /v1/methods, the method registry as data for clients and the
 * dashboard's forms: every row of core/cz_method.c with its parameters (from the row's
 * schema callback), plus the shape of the job body around the steps. */
#include "cz_api_service.h"
#include "cz_method.h"
#include "cz_pipeline.h"

/* The job body around the steps: what POST /v1/jobs accepts besides them. */
static json_t *job_schema(void) {
  return json_pack(
      "{s:[{s:s, s:s, s:b, s:s}, {s:s, s:s, s:b, s:i, s:i, s:s},"
      " {s:s, s:s, s:b, s:[s, s], s:s}]}",
      "params", "name", "model", "type", "string", "required", 1, "description",
      "id of an uploaded model (mdl_...)", "name", "steps", "type", "array", "required", 1,
      "min_items", 1, "max_items", CZ_MAX_STEPS, "description",
      "the steps, in order; each an object with \"op\" and the parameters of one of the "
      "methods, plus optional \"include\"/\"exclude\" glob lists. Transforms (prune, "
      "factorize) come first; at most one encoding step (quantize or palettize), last", "name",
      "output.format", "type", "string", "required", 0, "enum", "gguf", "safetensors",
      "description",
      "file format of the artifact; default: the input's format when the method can write "
      "it, otherwise the other one");
}

enum MHD_Result cz_api_methods(cz_req *r) {
  int n;
  const cz_method *const *table = cz_method_table(&n);
  json_t *methods = json_array();
  for (int i = 0; i < n; i++) {
    const cz_method *m = table[i];
    json_t *o = json_pack("{s:i, s:s, s:s, s:s}", "id", m->id, "name", m->name, "op", m->op,
                          "summary", m->summary ? m->summary : "");
    json_t *s = m->schema ? m->schema() : NULL;
    if (json_is_object(s)) json_object_update(o, s);
    else json_object_set_new(o, "params", json_null());  /* undescribed: accepted as is */
    json_decref(s);
    json_array_append_new(methods, o);
  }
  return cz_reply_json(r, 200, json_pack("{s:o, s:o}", "methods", methods, "job", job_schema()));
}
