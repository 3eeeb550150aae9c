/* cz_method: the registry of compression methods, one table row per method.
 *
 * A recipe step ({"op": "quantize", "type": "q8_0"}) is matched to exactly one row by its
 * "op" and the row's selector (e.g. the "type" value); the row then parses and validates the
 * step's parameters, decides per tensor what to do (plan), and encodes/decodes row chunks
 * (run). Adding a method is adding a row to the table in cz_method.c plus its functions.
 *
 * Three kinds of rows (cz_method_kind):
 *  - CZ_METHOD_ROWS (quantize): row-wise encoding. Every method of this kind turns a chunk of
 *    whole rows of float input into the bytes of up to CZ_MAX_OUTPUTS output tensors (e.g.
 *    int8 weights + one scale per row), and can decode those bytes back to floats for the
 *    quality report. Rows are independent, so a tensor can be split across threads by row
 *    ranges. It is the last step of a recipe.
 *  - CZ_METHOD_TRANSFORM (prune, factorize): a whole tensor in float32 becomes one or more
 *    float32 tensors (W -> W masked; W -> A [m x r], B [r x n]) whose shapes may be known only
 *    after computing. Transforms come before the final step.
 *  - CZ_METHOD_TENSOR (palettize): a final encoding that needs every value of the tensor at
 *    once (a k-means codebook).
 * A recipe with a transform or a whole-tensor encoder runs in the pipeline's whole-tensor
 * mode (see cz_pipeline.h); an encode-only recipe keeps the row-chunked direct path.
 *
 * Ids are stable: they are stored with jobs. Never renumber or reuse one.
 * Thread: the table is immutable; parse/plan run on the caller's thread, encode/decode and
 * the whole-tensor functions on any worker thread with the params shared read-only.
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
/* Importance of the input columns of tensor `name`: E[x_j^2], n values (the imatrix values:
 * ne[0] of them, or ne[0] per expert for a stack of experts), or NULL when the calibration
 * has no entry for it or its length is not n. */
typedef const float *(*cz_importance_fn)(const void *ud, const char *name, int64_t n);
typedef struct {
  const cz_model *model;
  size_t index;               /* of the tensor in model->tensors */
  cz_format out_format;
  const cz_imatrix *imatrix;  /* NULL without calibration */
  void *state;                /* from plan_begin, NULL if the method has none */
  cz_importance_fn importance;/* NULL without calibration */
  const void *importance_ud;
  int step_index;             /* of the step in the recipe (for error messages) */
} cz_plan_ctx;

/* ---- whole-tensor mode ---- */

typedef struct cz_method cz_method;

typedef enum {
  CZ_METHOD_ROWS = 0,       /* row-wise final encoder (encode/decode) */
  CZ_METHOD_TRANSFORM = 1,  /* whole-tensor float -> float tensor(s), before the final step */
  CZ_METHOD_TENSOR = 2,     /* whole-tensor final encoder (encode_tensor) */
} cz_method_kind;

#define CZ_WT_MAX 6           /* tensors one transform or whole-tensor encoding may produce */
#define CZ_WT_NAME (CZ_MAX_NAME + 64)

/* A tensor in flight in whole-tensor mode: float32, row-major [rows][cols] with ne[0] = cols
 * and rows the product of the other dims; or, when f is NULL, a raw tensor of final bytes
 * (e.g. the kept indices of a structured prune) that later steps pass through. */
typedef struct {
  char name[CZ_WT_NAME];
  int n_dims;
  int64_t ne[CZ_MAX_DIMS];
  int64_t rows, cols;
  float *f;                   /* owned by whoever holds the cz_wt */
  cz_type raw_type;           /* raw tensors: type and bytes */
  uint8_t *raw;
  uint64_t raw_bytes;
  const float *importance;    /* E[x_j^2] per column (cols of them), NULL if unknown; */
  int64_t importance_rows;    /* 0: one vector for every row; k > 0: one per k rows (a stack
                               * of experts [n_expert][k][cols] has one per expert) */
  bool sparse;                /* holds pruned zeros: a later encoder keeps zero exact */
  const cz_method *layout;    /* a storage layout a transform chose (sparse formats), which */
  const void *layout_params;  /* replaces the final encoding of this tensor; NULL: none */
} cz_wt;

/* The importance of row r's columns (cols values), or NULL when w has none. */
static inline const float *cz_wt_importance_row(const cz_wt *w, int64_t r) {
  if (w->importance == NULL || w->importance_rows <= 0) return w->importance;
  return w->importance + (r / w->importance_rows) * w->cols;
}

/* Context of a whole-tensor call, for the input tensor the work came from. */
typedef struct {
  const cz_model *model;
  size_t index;               /* of the input tensor */
  cz_format out_format;
  cz_type dense_type;         /* type a dense float output is written in (the input's) */
  const void *global;         /* the step's global_prepare state, NULL if none */
  int step_index;
} cz_wctx;

/* The tensors a whole-tensor encoding wrote for one cz_wt. */
typedef struct {
  int n;
  struct {
    char name[CZ_WT_NAME];
    cz_type type;
    int n_dims;
    int64_t ne[CZ_MAX_DIMS];  /* ggml order */
    uint8_t *data;            /* heap, nbytes; the pipeline frees it */
    uint64_t nbytes;
  } t[CZ_WT_MAX];
} cz_wenc;

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


  /* ---- whole-tensor rows (kind TRANSFORM or TENSOR); ROWS rows leave these NULL ---- */
  cz_method_kind kind;
  /* May this tensor be processed? `named`: the step's "include" list chose it by name, so
   * only structural rules apply (not the default name rules). NULL if yes, else why not (a
   * static string for the report's note). */
  const char *(*refuse)(const void *params, const cz_wt *w, bool named);
  /* Optional, at plan time (after every step parsed): refuse the run (e.g. wanda without an
   * importance matrix). ctx->index is 0 and ctx->step_index names the step. */
  cz_err_code (*plan_check)(const void *params, const cz_plan_ctx *ctx, cz_error *err);
  /* Optional: one pass over the selected input tensors before any is transformed (a global
   * threshold). selected[i] for model->tensors[i]. Runs once, on the first worker thread that
   * needs it; the others wait. *global is freed with global_free. */
  cz_err_code (*global_prepare)(const void *params, const cz_model *m, const bool *selected,
                                void **global, cz_error *err);
  void (*global_free)(void *global);
  /* TRANSFORM: in -> out[0..*n_out) (float buffers allocated here, owned by the caller
   * afterwards; in is not modified). *undo is what untransform needs (NULL if nothing), freed
   * with free_undo. info: a JSON object for the tensor's report (sparsity, rank, ...). When
   * the tensor is left as it is, set *n_out = 0 and *note (static string). */
  cz_err_code (*transform)(const void *params, const cz_wctx *ctx, const cz_wt *in, cz_wt *out,
                           int *n_out, void **undo, json_t *info, const char **note,
                           cz_error *err);
  /* Rebuild in's rows * cols values (double) from the decoded outputs (double, row-major,
   * outs[k] for out[k]; raw outputs have NULL). */
  void (*untransform)(const void *params, const void *undo, const cz_wt *in,
                      const cz_wt *out, const double *const *outs, int n_out, double *y);
  /* The layout node of in (docs/formats.md "compressd.layout"), given the children's nodes
   * (stolen). New reference. */
  json_t *(*layout_node)(const void *params, const void *undo, const cz_wt *in,
                         const cz_wt *out, json_t **children, int n_out);
  void (*free_undo)(void *undo);
  /* TENSOR (and layouts chosen by a transform through cz_wt.layout): encode in into enc,
   * write the decoded values (rows * cols doubles) to y, add figures to info, and return the
   * layout leaf (new reference) in *node. */
  cz_err_code (*encode_tensor)(const void *params, const cz_wctx *ctx, const cz_wt *in,
                               cz_wenc *enc, double *y, json_t *info, json_t **node,
                               cz_error *err);
  /* Optional (final encoding steps whose layout a loader knows): the step's part of the
   * "quantization_config" a safetensors output records in __metadata__ (docs/formats.md
   * 4.10): compressed-tensors' {"format", "config_groups"}, to which the pipeline adds
   * quant_method, quantization_status and the ignore list; or a block that names its own
   * quant_method "bitsandbytes" (transformers' BitsAndBytesConfig), to which it adds the
   * skipped modules as llm_int8_skip_modules. New reference. NULL: no quantization_config. */
  json_t *(*quant_config)(const void *params);
};

/* The registry (for GET /v1/methods) and lookup of the row for a step. */
const cz_method *const *cz_method_table(int *count);
const cz_method *cz_method_by_id(int id);
/* Find the row for step i; err names the field when nothing matches. */
cz_err_code cz_method_for_step(const json_t *step, int step_index, const cz_method **m,
                               cz_error *err);

/* ---- parameter helpers for parse functions; errors name the field "steps[i].key" ---- */

/* Every key of step must be in allowed (NULL-terminated). */
cz_err_code cz_param_keys(const json_t *step, int idx, const char *const *allowed, cz_error *err);
/* A number in [lo, hi] (lo excluded when lo_open); absent: *out = def, *given = false. */
cz_err_code cz_param_real(const json_t *step, int idx, const char *key, double lo, bool lo_open,
                          double hi, double def, double *out, bool *given, cz_error *err);
/* An integer in [lo, hi]; absent: def. */
cz_err_code cz_param_int(const json_t *step, int idx, const char *key, int64_t lo, int64_t hi,
                         int64_t def, int64_t *out, bool *given, cz_error *err);
cz_err_code cz_param_bool(const json_t *step, int idx, const char *key, bool def, bool *out,
                          bool *given, cz_error *err);
/* One of names[] (NULL-terminated); *out its index; absent: def. */
cz_err_code cz_param_enum(const json_t *step, int idx, const char *key,
                          const char *const *names, int def, int *out, cz_error *err);

/* Name of a derived tensor: base + suffix where base is name without a trailing ".weight"
 * (compressed-tensors' convention: "x.weight" -> "x.compressed"); with keep_weight,
 * ".weight" is put back after the suffix ("x.weight" -> "x.lowrank_a.weight"). */
bool cz_derived_name(char *out, size_t n, const char *name, const char *suffix, bool keep_weight);
/* name + sep + suffix ("x.weight" + "." + "kept_rows"); false when it does not fit in n. */
bool cz_suffixed_name(char *out, size_t n, const char *name, const char *sep, const char *suffix);

/* Schema helpers (see cz_method.schema): one parameter entry; the include/exclude entries
 * every whole-tensor method accepts (the pipeline handles them for every step). */
json_t *cz_schema_param(const char *name, const char *type, bool required, json_t *def,
                        json_t *enum_, double minimum, double maximum, const char *description);
void cz_schema_add_selectors(json_t *params);

/* Default selection of the whole-tensor methods: a matrix (2-D or more, not empty) that
 * cz_method_ineligible accepts; with embeddings=false also not a token embedding. named:
 * chosen by an include list, so only the structural part applies. (Raw and non-float tensors
 * are the pipeline's to leave out; w->f may be NULL here, at plan time.) */
const char *cz_method_wt_refuse(const cz_wt *w, bool named, bool embeddings);

/* Shared eligibility rule (llama-quantize's tensor_allows_quantization, for the names it
 * knows, extended to Hugging Face names): NULL if the tensor may be quantized, else the reason. */
const char *cz_method_ineligible(const cz_tensor *t);

#endif
