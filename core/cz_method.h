/* cz_method: the registry of compression methods, one table row per method.
 *
 * A recipe step ({"op": "quantize", "type": "q8_0"}) is matched to exactly one row by its
 * "op" and the row's selector (e.g. the "type" value); the row then parses and validates the
 * step's parameters, decides per tensor what to do (plan), and encodes/decodes row chunks
 * (run). Adding a method is adding a row to the table in cz_method.c plus its functions.
 *
 * Row-wise encoding: every method here turns a chunk of whole rows of float input into the
 * bytes of up to CZ_MAX_OUTPUTS output tensors (e.g. int8 weights + one scale per row), and
 * can decode those bytes back to floats for the quality report. Rows are independent, so a
 * tensor can be split across threads by row ranges.
 *
 * Ids are stable: they are stored with jobs. Never renumber or reuse one.
 * Thread: the table is immutable; parse/plan run on the caller's thread, encode/decode on any
 * worker thread with the params shared read-only.
 */
#ifndef CZ_METHOD_H
#define CZ_METHOD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cz_err.h"
#include "cz_model.h"
#include "cz_type.h"

#define CZ_MAX_OUTPUTS 2

/* What the plan decided for one input tensor. */
typedef struct {
  bool transform;             /* false: copied through unchanged */
  const char *note;           /* why it was left alone (static string), NULL otherwise */
  int n_out;                  /* output tensors produced from it (1 when copied) */
  struct {
    char name[CZ_MAX_NAME + 16];
    cz_type type;
    int n_dims;
    int64_t ne[CZ_MAX_DIMS];  /* ggml order */
    uint64_t row_bytes;       /* bytes per input row in this output */
  } out[CZ_MAX_OUTPUTS];
  const char *out_type_name;  /* reported output type ("q8_0", "int8", or the input's) */
  const float *imatrix;       /* importance weights (ne[0] of them) for this tensor, or NULL */
} cz_tensor_plan;

/* What a plan sees besides the tensor: the whole input (mixtures depend on the model's
 * architecture and on the tensor's position among its kind), the output format, the
 * importance matrix of the job if any, and per-run state from plan_begin. */
typedef struct cz_imatrix cz_imatrix;
typedef struct {
  const cz_model *model;
  size_t index;               /* of the tensor in model->tensors */
  cz_format out_format;
  const cz_imatrix *imatrix;  /* NULL without calibration */
  void *state;                /* from plan_begin, NULL if the method has none */
} cz_plan_ctx;

typedef struct cz_method cz_method;
struct cz_method {
  int id;                     /* stable numeric id */
  const char *name;           /* stable name, e.g. "quantize.gguf" */
  const char *op;             /* recipe "op" */
  const char *summary;        /* one line for GET /v1/methods and docs */
  /* Does this row handle the step? (op already matched) */
  bool (*match)(const json_t *step);
  /* Validate the step and build params (heap, freed by free_params). Errors name the
   * field as "steps[i].field"; step_index is for that message. */
  cz_err_code (*parse)(const json_t *step, int step_index, void **params, cz_error *err);
  void (*free_params)(void *params);
  /* Normalized JSON of params (new reference) for reports and provenance. */
  json_t *(*describe)(const void *params);
  /* Only output formats this method can write. */
  bool (*supports_format)(const void *params, cz_format f);
  /* Optional: set up per-run planning state before the first tensor (e.g. layer counters
   * of a mixture); plan_end frees it. Both may be NULL. */
  cz_err_code (*plan_begin)(const void *params, const cz_plan_ctx *ctx, void **state,
                            cz_error *err);
  void (*plan_end)(void *state);
  /* Decide for one tensor, called in file order. */
  cz_err_code (*plan)(const void *params, const cz_plan_ctx *ctx, const cz_tensor *t,
                      cz_tensor_plan *p, cz_error *err);
  /* Encode nrows rows of ncols floats into out[k] (nrows * p->out[k].row_bytes each). */
  void (*encode)(const void *params, const cz_tensor_plan *p, const float *x, int64_t nrows,
                 int64_t ncols, uint8_t *const out[CZ_MAX_OUTPUTS]);
  /* Decode what encode wrote back into nrows * ncols floats. */
  void (*decode)(const void *params, const cz_tensor_plan *p, const uint8_t *const in[CZ_MAX_OUTPUTS],
                 int64_t nrows, int64_t ncols, float *y);
  /* Optional: what a client may put in the step, for GET /v1/methods (new reference). Shape:
   * {"params": [{"name", "type": "string"|"integer"|"number"|"boolean"|"array"|"object",
   * "required": bool, "default"?, "enum"?, "minimum"?, "maximum"? (numbers), "min_items"?,
   * "max_items"? (arrays), "description"}],
   * "output_formats": ["gguf", ...]} plus any keys of the method's own (documented there).
   * The dashboard builds its forms from it, so every parameter parse accepts is listed. */
  json_t *(*schema)(void);
};

/* The registry (for GET /v1/methods) and lookup of the row for a step. */
const cz_method *const *cz_method_table(int *count);
const cz_method *cz_method_by_id(int id);
/* Find the row for step i; err names the field when nothing matches. */
cz_err_code cz_method_for_step(const json_t *step, int step_index, const cz_method **m,
                               cz_error *err);

/* Shared eligibility rule (llama-quantize's tensor_allows_quantization, for the names it
 * knows, extended to Hugging Face names): NULL if the tensor may be quantized, else the reason. */
const char *cz_method_ineligible(const cz_tensor *t);

#endif
