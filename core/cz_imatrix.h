/* cz_imatrix: an importance matrix (llama.cpp's "imatrix"), the calibration that weighted
 * quantization uses.
 *
 * Two file formats are read, both validated before anything is trusted (every count and size
 * checked against the bytes present, names checked as UTF-8, values finite):
 *   - the imatrix GGUF written by llama-imatrix: per weight W, F32 tensors W.in_sum2 (sums of
 *     squared activations, ne[0] x n_mat) and W.counts (n_mat token counts), optionally
 *     W.in_sum; keys imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size, which
 *     llama-quantize requires and so do we. Read with cz_model_open, so it gets every check a
 *     model gets.
 *   - the legacy .dat: i32 n_entries, then per entry {i32 len, name[len], i32 ncall, i32 nval,
 *     f32 values[nval]}, then an optional {i32 chunk_count, i32 len, dataset[len]}.
 *
 * What it gives is exactly what llama-quantize hands to ggml_quantize_chunk: per weight, the
 * mean squared activation of each input column (quant-formats.md section 5):
 *   GGUF:   value[j*ne0 + i] = in_sum2[j*ne0 + i] / (float)round(counts[j]), or 1 when that
 *           count is 0 (the weight never saw input);
 *   legacy: value[i] = stored[i] / (float)ncall when ncall > 0, else stored[i].
 * (float division, as llama.cpp's tools/quantize does). A weight with experts has n_mat
 * slices of ne0 values, expert e at value + e * ne0.
 *
 * Ownership: a cz_imatrix owns its arrays; pointers it returns live until cz_imatrix_free.
 * Thread: immutable after open; any number of threads may read it.
 */
#ifndef CZ_IMATRIX_H
#define CZ_IMATRIX_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cz_err.h"

typedef struct cz_imatrix cz_imatrix;

typedef enum { CZ_IMATRIX_GGUF = 1, CZ_IMATRIX_DAT = 2 } cz_imatrix_format;

/* Open and validate a file of either format (GGUF by its magic, otherwise legacy .dat).
 * Errors carry the model errors' codes (truncated, size_mismatch, ...) with the entry named,
 * non_finite_values for a NaN or Inf, invalid_metadata when the GGUF lacks the imatrix keys or
 * holds no entry. */
cz_err_code cz_imatrix_open(const char *path, cz_imatrix **out, cz_error *err);
void cz_imatrix_free(cz_imatrix *im);

/* The importance weights of weight tensor `name` (e.g. "blk.0.attn_q.weight"), *n of them,
 * or NULL when the file has no entry for it. */
const float *cz_imatrix_find(const cz_imatrix *im, const char *name, int64_t *n);

cz_imatrix_format cz_imatrix_get_format(const cz_imatrix *im);
const char *cz_imatrix_format_name(cz_imatrix_format f); /* "gguf" / "dat" */
size_t cz_imatrix_n_entries(const cz_imatrix *im);
const char *cz_imatrix_entry_name(const cz_imatrix *im, size_t i); /* sorted by name */
/* imatrix.chunk_count / chunk_size (0 when the file does not say) and the datasets. */
uint32_t cz_imatrix_chunk_count(const cz_imatrix *im);
uint32_t cz_imatrix_chunk_size(const cz_imatrix *im);
size_t cz_imatrix_n_datasets(const cz_imatrix *im);
const char *cz_imatrix_dataset(const cz_imatrix *im, size_t i);

/* A label for the quantize.imatrix.file key of outputs (llama-quantize writes the path it was
 * given); defaults to the opened path. Copied. */
void cz_imatrix_set_label(cz_imatrix *im, const char *label);
const char *cz_imatrix_label(const cz_imatrix *im);

/* {"format", "entries", "chunk_count", "chunk_size", "datasets"} (new reference). */
json_t *cz_imatrix_summary(const cz_imatrix *im);

#endif
