/* cz_mixture: llama-quantize's type mixtures ("presets": Q4_K_M, Q3_K_S, ...), deciding the
 * ggml type of every tensor of a llama.cpp GGUF exactly as llama-quantize does.
 *
 * The decision follows src/llama-quant.cpp (llama_tensor_get_type and its helpers, as of
 * ggml-org/llama.cpp@007dbbf3, quant-formats.md 1.8):
 *   - eligibility: tensor_allows_quantization (2-D and 3-D tensors named *weight, minus norms,
 *     the MoE router, positional/token-type embeddings and the small arch-specific tensors;
 *     output.weight only without leave_output_tensor);
 *   - token_embedding_type / output_tensor_type, when given, win for their tensor outright;
 *   - then the first tensor_types pattern that matches the name (a regular expression searched
 *     anywhere in the name, lower-cased like llama-quantize does) picks the type; otherwise,
 *     unless pure, the per-category rules of the preset (output and tied embeddings -> Q6_K,
 *     attn_v / ffn_down bumps with use_more_bits over the layer counters, ...);
 *   - finally the fallback for rows that are not a multiple of the block size (Q4_K -> Q5_0,
 *     Q6_K -> Q8_0, Q2_K/Q3_K/TQ -> Q4_0, IQ4_XS -> IQ4_NL, ... and F16 if even that fails).
 * Tensors are visited in llama.cpp's order (by layer number, then name), which is what the
 * layer counters count in, whatever the order of the input file.
 *
 * Regular expressions: llama-quantize uses std::regex (ECMAScript); here they are POSIX
 * extended expressions (regcomp) with \d and \D also understood, which covers the patterns
 * people write (names, alternations, classes, anchors, \.).
 *
 * Thread: a parsed cz_mixture is immutable; cz_mixture_plan may run on any thread.
 */
#ifndef CZ_MIXTURE_H
#define CZ_MIXTURE_H

#include <jansson.h>
#include <stdbool.h>

#include "cz_err.h"
#include "cz_model.h"
#include "cz_type.h"

typedef struct cz_mixture cz_mixture;

/* Parse the preset part of a step: "preset" (a llama-quantize type name, any case; the
 * aliases Q3_K, Q4_K, Q5_K mean the _M mixes), "pure", "leave_output_tensor",
 * "output_tensor_type", "token_embedding_type", "tensor_types" {PATTERN: TYPE}, and
 * "file_type" (accepted when it is the preset's own, so that a normalized recipe parses
 * again). Other keys of the step are the caller's to check. Types are ggml type names; the
 * caller decides whether it can produce them. Errors name "steps[idx].field". */
cz_err_code cz_mixture_parse(const json_t *step, int idx, cz_mixture **out, cz_error *err);
void cz_mixture_free(cz_mixture *mx);

/* The presets offered, i in [0, cz_mixture_n_presets()): name, general.file_type and the
 * default tensor type. */
int cz_mixture_n_presets(void);
const char *cz_mixture_preset_at(int i, int *file_type, cz_type *default_type);

/* Normalized step {"op": "quantize", "preset": ..., options that differ from the defaults,
 * "file_type": N} (new reference). */
json_t *cz_mixture_describe(const cz_mixture *mx);
const char *cz_mixture_preset_name(const cz_mixture *mx);
/* llama_ftype of the preset, the general.file_type llama-quantize writes. */
int cz_mixture_file_type(const cz_mixture *mx);

/* Types the step names explicitly (output/token embedding types, tensor_types values), for
 * the caller's availability check: fills up to max, returns how many there are. */
int cz_mixture_explicit_types(const cz_mixture *mx, cz_type *types, int max);

/* What the mixture decided for one tensor. */
typedef struct {
  bool quantize;          /* false: kept as it is (type == the input's) */
  cz_type type;           /* the output type */
  const char *note;       /* static: why kept, or that a fallback type was used; NULL else */
  bool requires_imatrix;  /* llama-quantize would refuse to write it without an imatrix */
} cz_mixture_choice;

/* Decide every tensor of m (choices[i] for m->tensors[i]). has_imatrix: whether the job has
 * calibration data (a few rules depend on it). Fails (unsupported_input / invalid_parameter)
 * where llama-quantize fails: a row length with no fallback, an explicit type that does not
 * fit a tensor's rows, an expert tensor without a layer number. */
cz_err_code cz_mixture_plan(const cz_mixture *mx, const cz_model *m, bool has_imatrix,
                            cz_mixture_choice *choices, cz_error *err);

/* llama-quantize's tensor_allows_quantization: NULL if t may be quantized, else why not
 * (static string). quantize_output: false for leave_output_tensor. */
const char *cz_mixture_ineligible(const cz_tensor *t, bool quantize_output);

/* ---- size budget: {"op": "quantize", "target_bpw": 4.5} or {"target_bytes": N} ----
 *
 * Picks a type per tensor, among candidate types ("types", default q2_K q3_K q4_K q5_K q6_K
 * q8_0 q4_0 q5_0), so that the output fits the budget with the least total error: the error
 * of a tensor under a type is measured by quantizing and dequantizing a sample of its rows
 * (squared error, each column weighted by its importance relative to the tensor's mean
 * importance when the job has a calibration), and the choice is a multiple-choice knapsack
 * solved greedily on each tensor's lower convex hull of (bytes, error). Eligibility is
 * llama-quantize's; a tensor whose rows fit no candidate is kept as it is. docs/methods.md
 * gives the method and measured results. */
typedef struct cz_budget cz_budget;
struct cz_imatrix;

/* Parse "target_bpw" (0 < x <= 32, bits per weight over every tensor's elements, as
 * llama-quantize reports it) or "target_bytes" (the whole output file), and "types". */
cz_err_code cz_budget_parse(const json_t *step, int idx, cz_budget **out, cz_error *err);
void cz_budget_free(cz_budget *b);
json_t *cz_budget_describe(const cz_budget *b);
/* The candidate types, for the caller's availability check. */
int cz_budget_types(const cz_budget *b, cz_type *types, int max);

/* What the choice came to (for reports and tests). */
typedef struct {
  uint64_t budget_bytes;   /* tensor data allowed */
  uint64_t chosen_bytes;   /* tensor data chosen */
  uint64_t min_bytes;      /* the smallest the candidates allow */
  double error;            /* estimated total weighted squared error of the choice */
} cz_budget_result;

/* Decide every tensor of m (choices[i] for m->tensors[i]); header_bytes: what the output
 * file spends besides tensor data, an upper bound (for target_bytes). Fails with
 * invalid_parameter when even the smallest candidates exceed the budget. */
cz_err_code cz_budget_plan(const cz_budget *b, const cz_model *m, const struct cz_imatrix *im,
                           uint64_t header_bytes, cz_mixture_choice *choices,
                           cz_budget_result *res, cz_error *err);

#endif
