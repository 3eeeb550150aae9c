/* cz_decompress: any compressd artifact (or any GGUF / safetensors file) back to dense float
 * tensors in a safetensors file, so that it can be evaluated in any framework.
 *
 * What is rebuilt:
 *   - tensors described by the artifact's compressd.layout (docs/formats.md 4.7): the layout
 *     tree is evaluated (plain, int8, palette, sparse-bitmask, sparse-24-bitmask,
 *     pack-quantized, nf4, fp8_e4m3 leaves;
 *     lowrank and select_rows/select_cols nodes) into the input tensor's name and shape;
 *   - every other tensor with a decoder in the type table (ggml block types, F16, BF16, F32,
 *     ...) is decoded under its own name and shape;
 *   - an I8 tensor X with a float32 X_scale of one value per row (quantize.int8 per channel)
 *     becomes X * scale;
 *   - anything else (integer tensors that are data, not weights) is copied as it is.
 * Decoded tensors are written as F32 (exact for every encoding here) or F16.
 *
 * Memory: a layout tensor is rebuilt whole (its float32 values plus its parts); other
 * tensors are converted in chunks of rows.
 * Thread: pure apart from writing fd; the model is only read.
 */
#ifndef CZ_DECOMPRESS_H
#define CZ_DECOMPRESS_H

#include <jansson.h>
#include <stdint.h>

#include "cz_err.h"
#include "cz_model.h"
#include "cz_type.h"

/* Write the dense safetensors file to fd (open for writing, at any position; written with
 * pwrite from offset 0). dtype: CZ_TYPE_F32 or CZ_TYPE_F16. *summary (may be NULL): {"bytes",
 * "tensors", "rebuilt_from_layout", "decoded", "copied"} (new reference). Errors name the
 * tensor or the layout node at fault (invalid_metadata for a layout that does not fit the
 * file). */
cz_err_code cz_decompress(const cz_model *in, cz_type dtype, int fd, json_t **summary,
                          cz_error *err);

#endif
