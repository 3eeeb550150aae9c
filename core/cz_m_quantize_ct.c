/* cz_m_quantize_ct: the safetensors quantization schemes in compressed-tensors' layout:
 * integers of 2, 3, 4 or 8 bits per group or per channel, symmetric or asymmetric, packed into
 * int32 as compressed-tensors' pack_to_int32 does ("pack-quantized", optionally with HQQ's
 * data-free scale and zero-point optimization, never worse than RTN in L2); NF4 in
 * bitsandbytes' serialization (code values, absmax per block, optional double quantization of
 * the absmax with bitsandbytes' 8-bit dynamic map); FP8 E4M3 with one scale per output channel or
 * per 128x128 block ("float-quantized"). Whole-tensor encoders (CZ_METHOD_TENSOR): each
 * writes its tensors, its decoded values and a layout leaf (docs/formats.md 4.9-4.12).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz_method.h"
#include "cz_quant_ct.h"

/* ==== shared ==== */

static bool scheme_is(const json_t *step, const char *const *names) {
  const char *s = json_string_value(json_object_get(step, "scheme"));
  for (int i = 0; s && names[i]; i++)
    if (strcmp(s, names[i]) == 0) return true;
  return false;
}

/* Only 2-D matrices: compressed-tensors' weight_shape and its packing are defined for
 * [out, in] Linear weights. Embeddings are quantized like any matrix (as int8 does). */
static const char *refuse_2d(const cz_wt *w, bool named) {
  const char *why = cz_method_wt_refuse(w, named, true);
  if (why) return why;
  if (w->n_dims != 2) return "not a 2-D matrix (compressed-tensors layouts are [out, in])";
  return NULL;
}

static bool st_only(const void *params, cz_format f) { return f == CZ_FORMAT_SAFETENSORS; }

static void set_out(cz_wenc *enc, int k, cz_type type, int64_t ne0, int64_t ne1, int n_dims,
                    void *data, uint64_t nbytes) {
  enc->t[k].type = type;
  enc->t[k].n_dims = n_dims;
  enc->t[k].ne[0] = ne0, enc->t[k].ne[1] = ne1, enc->t[k].ne[2] = enc->t[k].ne[3] = 1;
  enc->t[k].data = data;
  enc->t[k].nbytes = nbytes;
}

/* "<name>_<suffix>" for every output, in order; false if a name does not fit. */
static bool name_outs(cz_wenc *enc, const char *name, const char *const *suffixes, int n) {
  for (int k = 0; k < n; k++)
    if (!cz_suffixed_name(enc->t[k].name, sizeof enc->t[k].name, name, "_", suffixes[k]))
      return false;
  enc->n = n;
  return true;
}

static void free_outs(cz_wenc *enc, int n) {
  for (int k = 0; k < n; k++) {
    free(enc->t[k].data);
    enc->t[k].data = NULL;
  }
}

static int64_t *shape_tensor(int64_t R, int64_t C) {
  int64_t *s = malloc(2 * sizeof *s);
  if (s) s[0] = R, s[1] = C;
  return s;
}

/* ==== quantize.int_packed (id 10): pack-quantized integers ==== */

static const char *const int_schemes[] = {"int2", "int3", "int4", "int8", NULL};
static const int int_bits[] = {2, 3, 4, 8};
enum { GR_GROUP, GR_CHANNEL };
static const char *const int_gran[] = {"group", "channel", NULL};

typedef struct {
  int bits;
  int64_t group_size;  /* 0: one group per row (channel) */
  bool symmetric;
  bool hqq;
} int_params;

static bool int_match(const json_t *step) { return scheme_is(step, int_schemes); }
static void plain_free(void *p) { free(p); }

static cz_err_code int_parse(const json_t *step, int idx, void **out, cz_error *err) {
  static const char *const keys[] = {"op", "scheme", "granularity", "group_size", "symmetric",
                                     "hqq", NULL};
  cz_err_code rc = cz_param_keys(step, idx, keys, err);
  if (rc) return rc;
  int scheme, gran;
  int64_t gs;
  bool g_gs, sym, g_sym, hqq;
  if ((rc = cz_param_enum(step, idx, "scheme", int_schemes, 0, &scheme, err)) ||
      (rc = cz_param_enum(step, idx, "granularity", int_gran, GR_GROUP, &gran, err)) ||
      (rc = cz_param_int(step, idx, "group_size", 32, 128, 128, &gs, &g_gs, err)) ||
      (rc = cz_param_bool(step, idx, "hqq", false, &hqq, NULL, err)) ||
      (rc = cz_param_bool(step, idx, "symmetric", !hqq, &sym, &g_sym, err)))
    return rc;
  if (gs != 32 && gs != 64 && gs != 128)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].group_size must be 32, 64 or 128",
                      idx);
  if (g_gs && gran == GR_CHANNEL)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].group_size applies only with \"granularity\": \"group\"", idx);
  if (hqq && sym)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].hqq optimizes the zero point: it needs \"symmetric\": false", idx);
  if (hqq && int_bits[scheme] == 8)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].hqq: only for int2, int3 and int4 (8 bits gain nothing)", idx);
  int_params *p = calloc(1, sizeof *p);
  if (!p) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  p->bits = int_bits[scheme];
  p->group_size = gran == GR_CHANNEL ? 0 : gs;
  p->symmetric = sym;
  p->hqq = hqq;
  *out = p;
  return CZ_E_OK;
}

static json_t *int_describe(const void *params) {
  const int_params *p = params;
  char scheme[8];
  snprintf(scheme, sizeof scheme, "int%d", p->bits);
  json_t *d = json_pack("{s:s, s:s, s:s, s:b, s:b}", "op", "quantize", "scheme", scheme,
                        "granularity", p->group_size ? "group" : "channel", "symmetric",
                        p->symmetric, "hqq", p->hqq);
  if (p->group_size) json_object_set_new(d, "group_size", json_integer(p->group_size));
  return d;
}

static const char *int_refuse(const void *params, const cz_wt *w, bool named) {
  const int_params *p = params;
  const char *why = refuse_2d(w, named);
  if (why) return why;
  if (p->group_size && w->cols % p->group_size != 0)
    return p->group_size == 32   ? "row length is not a multiple of the group size 32"
           : p->group_size == 64 ? "row length is not a multiple of the group size 64"
                                 : "row length is not a multiple of the group size 128";
  return NULL;
}

static cz_err_code int_encode(const void *params, const cz_wctx *ctx, const cz_wt *in,
                              cz_wenc *enc, double *y, json_t *info, json_t **node,
                              cz_error *err) {
  const int_params *p = params;
  const int b = p->bits, pf = 32 / b;
  const int64_t R = in->rows, C = in->cols, G = p->group_size ? p->group_size : C;
  const int64_t NG = C / G, PW = (C + pf - 1) / pf, ZW = (R + pf - 1) / pf;
  const int nout = p->symmetric ? 3 : 4;
  static const char *const sfx_sym[] = {"packed", "scale", "shape"};
  static const char *const sfx_asym[] = {"packed", "scale", "zero_point", "shape"};
  int32_t *packed = calloc((size_t)(R * PW), sizeof *packed);
  float *scale = malloc(sizeof(float) * (size_t)(R * NG));
  int32_t *zpk = p->symmetric ? NULL : calloc((size_t)(ZW * NG), sizeof *zpk);
  int64_t *shape = shape_tensor(R, C);
  int8_t *q = malloc((size_t)G);
  float *yg = malloc(sizeof(float) * (size_t)G);
  int64_t improved = 0;
  if (!packed || !scale || (!p->symmetric && !zpk) || !shape || !q || !yg) {
    free(packed), free(scale), free(zpk), free(shape), free(q), free(yg);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  for (int64_t r = 0; r < R; r++)
    for (int64_t g = 0; g < NG; g++) {
      const float *x = in->f + r * C + g * G;
      int zp;
      float s;
      cz_qct_group_rtn(x, G, b, p->symmetric, &s, &zp, q);
      if (p->hqq) improved += cz_qct_group_hqq(x, G, b, &s, &zp, q, NULL);
      scale[r * NG + g] = s;
      cz_qct_dequant(q, G, s, zp, yg);
      for (int64_t j = 0; j < G; j++) {
        const int64_t c = g * G + j;
        packed[r * PW + c / pf] |= (int32_t)((uint32_t)(q[j] + (1 << (b - 1))) << (b * (c % pf)));
        y[r * C + c] = yg[j];
      }
      if (zpk) zpk[(r / pf) * NG + g] |= (int32_t)((uint32_t)(zp + (1 << (b - 1))) << (b * (r % pf)));
    }
  free(q);
  free(yg);
  const char *const *sfx = p->symmetric ? sfx_sym : sfx_asym;
  set_out(enc, 0, CZ_TYPE_I32, PW, R, 2, packed, sizeof(int32_t) * (uint64_t)(R * PW));
  set_out(enc, 1, CZ_TYPE_F32, NG, R, 2, scale, sizeof(float) * (uint64_t)(R * NG));
  if (zpk) set_out(enc, 2, CZ_TYPE_I32, NG, ZW, 2, zpk, sizeof(int32_t) * (uint64_t)(ZW * NG));
  set_out(enc, nout - 1, CZ_TYPE_I64, 2, 1, 1, shape, 2 * sizeof(int64_t));
  if (!name_outs(enc, in->name, sfx, nout)) {
    free_outs(enc, nout);
    enc->n = 0;
    return cz_err_set(err, CZ_E_UNSUPPORTED_INPUT, "tensor %s: name too long", in->name);
  }
  json_object_set_new(info, "groups", json_integer(R * NG));
  if (p->hqq) json_object_set_new(info, "hqq_groups_improved", json_integer(improved));
  *node = json_pack("{s:s, s:i, s:I, s:b, s:[I, I], s:s, s:s, s:s}", "encoding",
                    "pack-quantized", "bits", b, "group_size", (json_int_t)G, "symmetric",
                    p->symmetric, "shape", (json_int_t)R, (json_int_t)C, "packed",
                    enc->t[0].name, "scale", enc->t[1].name, "weight_shape",
                    enc->t[nout - 1].name);
  if (zpk) json_object_set_new(*node, "zero_point", json_string(enc->t[2].name));
  return CZ_E_OK;
}

/* compressed-tensors' quantization_config for this step (the pipeline adds quant_method,
 * quantization_status and ignore). */
static json_t *int_quant_config(const void *params) {
  const int_params *p = params;
  json_t *w = json_pack("{s:i, s:s, s:b, s:s, s:b}", "num_bits", p->bits, "type", "int",
                        "symmetric", p->symmetric, "strategy", p->group_size ? "group" : "channel",
                        "dynamic", 0);
  json_object_set_new(w, "group_size", p->group_size ? json_integer(p->group_size) : json_null());
  if (p->hqq) json_object_set_new(w, "observer", json_string("hqq"));
  else json_object_set_new(w, "observer", json_string("minmax"));
  return json_pack("{s:s, s:{s:{s:[s], s:o, s:n, s:n}}}", "format", "pack-quantized",
                   "config_groups", "group_0", "targets", "Linear", "weights", w,
                   "input_activations", "output_activations");
}

static json_t *int_schema(void) {
  json_t *p = json_array();
  json_array_append_new(p, cz_schema_param("scheme", "string", true, NULL,
                                           json_pack("[s, s, s, s]", "int2", "int3", "int4", "int8"),
                                           NAN, NAN, "integer width of every weight"));
  json_array_append_new(p, cz_schema_param("granularity", "string", false, json_string("group"),
                                           json_pack("[s, s]", "group", "channel"), NAN, NAN,
                                           "one scale (and zero point) per group_size consecutive "
                                           "weights of a row, or per output channel (row)"));
  /* no "default" key: a form that sends every default would send it with granularity
   * channel, which parse refuses */
  json_array_append_new(p, cz_schema_param("group_size", "integer", false, NULL,
                                           json_pack("[i, i, i]", 32, 64, 128), 32, 128,
                                           "weights per group (granularity group; default 128); "
                                           "the row length must be a multiple of it"));
  json_array_append_new(p, cz_schema_param("symmetric", "boolean", false, NULL, NULL, NAN, NAN,
                                           "true (default without hqq): scale = max|w| / "
                                           "(2^(bits-1) - 1), no zero point; false: scale = "
                                           "(max - min) / (2^bits - 1) and an integer zero point"));
  json_array_append_new(p, cz_schema_param("hqq", "boolean", false, json_false(), NULL, NAN, NAN,
                                           "asymmetric int2/int3/int4: optimize each group's scale "
                                           "and zero point with HQQ's search and half-quadratic "
                                           "solver, then a least-squares scale for the integer "
                                           "zero point (no data needed); kept only where it "
                                           "lowers the group's L2 error below round to nearest"));
  cz_schema_add_selectors(p);
  return json_pack("{s:o, s:[s], s:s}", "params", p, "output_formats", "safetensors", "layout",
                   "compressed-tensors pack-quantized");
}

const cz_method cz_m_quantize_int_packed = {
    .id = 10,
    .name = "quantize.int_packed",
    .op = "quantize",
    .summary = "int2/int3/int4/int8 per group (32/64/128) or per channel, symmetric or "
               "asymmetric (optionally HQQ-optimized zero points), packed into int32 as "
               "compressed-tensors pack-quantized (safetensors)",
    .match = int_match,
    .parse = int_parse,
    .free_params = plain_free,
    .describe = int_describe,
    .supports_format = st_only,
    .kind = CZ_METHOD_TENSOR,
    .refuse = int_refuse,
    .encode_tensor = int_encode,
    .schema = int_schema,
    .quant_config = int_quant_config,
};

/* ==== quantize.nf4 (id 11): bitsandbytes' NF4 codes, absmax per block ==== */

static const char *const nf4_schemes[] = {"nf4", NULL};
#define DQ_CHUNK 256  /* absmax values per second-level scale (bitsandbytes' nested block) */

typedef struct {
  int64_t block;
  bool double_quant;
} nf4_params;

static bool nf4_match(const json_t *step) { return scheme_is(step, nf4_schemes); }

static cz_err_code nf4_parse(const json_t *step, int idx, void **out, cz_error *err) {
  static const char *const keys[] = {"op", "scheme", "block_size", "double_quant", NULL};
  cz_err_code rc = cz_param_keys(step, idx, keys, err);
  if (rc) return rc;
  int64_t bs;
  bool dq;
  if ((rc = cz_param_int(step, idx, "block_size", 32, 256, 64, &bs, NULL, err)) ||
      (rc = cz_param_bool(step, idx, "double_quant", false, &dq, NULL, err)))
    return rc;
  if (bs != 32 && bs != 64 && bs != 128 && bs != 256)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].block_size must be 32, 64, 128 or 256", idx);
  nf4_params *p = calloc(1, sizeof *p);
  if (!p) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  p->block = bs;
  p->double_quant = dq;
  *out = p;
  return CZ_E_OK;
}

static json_t *nf4_describe(const void *params) {
  const nf4_params *p = params;
  return json_pack("{s:s, s:s, s:I, s:b}", "op", "quantize", "scheme", "nf4", "block_size",
                   (json_int_t)p->block, "double_quant", p->double_quant);
}

static const char *nf4_refuse(const void *params, const cz_wt *w, bool named) {
  const nf4_params *p = params;
  const char *why = refuse_2d(w, named);
  if (why) return why;
  if (w->cols % p->block != 0) return "row length is not a multiple of the NF4 block size";
  return NULL;
}

/* Double quantization of n absmax values a[] as bitsandbytes' compress_statistics
 * (docs/formats.md 4.11): offset = their mean, v = a - offset in float32, per chunk of DQ_CHUNK
 * values amax2 = max |v|, code = the nearest value of the dynamic map to v / amax2. Writes the
 * decoded absmax values, code[c] * amax2 + offset in float32, back into a[]. */
static void nf4_dq(float *a, int64_t n, const float *map, uint8_t *codes, float *amax2,
                   float *offset) {
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += a[i];
  const float off = n ? (float)(sum / (double)n) : 0.0f;
  *offset = off;
  for (int64_t c0 = 0; c0 < n; c0 += DQ_CHUNK) {
    const int64_t c1 = c0 + DQ_CHUNK < n ? c0 + DQ_CHUNK : n;
    float m = 0;
    for (int64_t i = c0; i < c1; i++) m = fmaxf(m, fabsf(a[i] - off));
    amax2[c0 / DQ_CHUNK] = m;
    for (int64_t i = c0; i < c1; i++) {
      const int k = m > 0 ? cz_dyn_index(map, (a[i] - off) / m) : CZ_DYN_ZERO;
      codes[i] = (uint8_t)k;
      const float d = map[k] * m;
      a[i] = d + off;
    }
  }
}

static const char *nf4_dtype(cz_type t) {
  return t == CZ_TYPE_F16 ? "float16" : t == CZ_TYPE_BF16 ? "bfloat16" : "float32";
}

/* The tensors, named as bitsandbytes' Params4bit serializes them through transformers
 * (QuantState.as_dict(packed=True) under "<name>."): <name> (U8 [R*C/2, 1], two indices a
 * byte, the first in the high nibble), <name>.absmax, <name>.quant_map, with double
 * quantization <name>.nested_absmax and <name>.nested_quant_map, and
 * <name>.quant_state.bitsandbytes__nf4 (the JSON of the other fields, as U8). */
static cz_err_code nf4_encode(const void *params, const cz_wctx *ctx, const cz_wt *in,
                              cz_wenc *enc, double *y, json_t *info, json_t **node,
                              cz_error *err) {
  const nf4_params *p = params;
  const bool dq = p->double_quant;
  const int64_t R = in->rows, C = in->cols, B = p->block, NB = C / B, NP = R * C / 2;
  const int64_t n = R * NB, nch = (n + DQ_CHUNK - 1) / DQ_CHUNK;
  uint8_t *packed = calloc((size_t)(NP > 0 ? NP : 1), 1);
  float *amax = malloc(sizeof(float) * (size_t)(n ? n : 1));
  float *qmap = malloc(sizeof(float) * 16);
  uint8_t *codes = dq ? malloc((size_t)(n ? n : 1)) : NULL;
  float *amax2 = dq ? malloc(sizeof(float) * (size_t)(nch ? nch : 1)) : NULL;
  float *dmap = dq ? malloc(sizeof(float) * CZ_DYN_N) : NULL;
  float off = 0;
  if (!packed || !amax || !qmap || (dq && (!codes || !amax2 || !dmap))) {
    free(packed), free(amax), free(qmap), free(codes), free(amax2), free(dmap);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  memcpy(qmap, cz_nf4_code, sizeof(float) * 16);
  for (int64_t i = 0; i < n; i++) {
    const float *x = in->f + i * B;  /* blocks run along rows; C % B == 0 */
    float m = 0;
    for (int64_t j = 0; j < B; j++) m = fmaxf(m, fabsf(x[j]));
    amax[i] = m;
  }
  /* with DQ the indices are chosen against the absmax the decoder will see */
  if (dq) {
    cz_dyn_map(dmap);
    nf4_dq(amax, n, dmap, codes, amax2, &off);
  }
  for (int64_t i = 0; i < n; i++) {
    const float a = amax[i];
    for (int64_t j = 0; j < B; j++) {
      const int64_t e = i * B + j;  /* element index in the row-major matrix */
      const int k = cz_nf4_index(a > 0 ? in->f[e] / a : 0.0f);
      packed[e / 2] |= (uint8_t)(e % 2 ? k : k << 4);
      y[e] = cz_nf4_code[k] * a;
    }
  }
  /* the quant_state JSON, keys in bitsandbytes' order; nested_offset with the digits that
   * give the float32 back */
  json_t *qs = json_pack("{s:s, s:I, s:s, s:[I, I]}", "quant_type", "nf4", "blocksize",
                         (json_int_t)B, "dtype", nf4_dtype(ctx->dense_type), "shape",
                         (json_int_t)R, (json_int_t)C);
  if (qs && dq) {
    json_object_set_new(qs, "nested_blocksize", json_integer(DQ_CHUNK));
    json_object_set_new(qs, "nested_dtype", json_string("float32"));
    json_object_set_new(qs, "nested_offset", json_real((double)off));
  }
  char *qs_text = qs ? json_dumps(qs, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) : NULL;
  json_decref(qs);
  const size_t qs_len = qs_text ? strlen(qs_text) : 0;
  uint8_t *qs_bytes = qs_text ? malloc(qs_len ? qs_len : 1) : NULL;
  if (!qs_bytes) {
    free(qs_text);
    free(packed), free(amax), free(qmap), free(codes), free(amax2), free(dmap);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  memcpy(qs_bytes, qs_text, qs_len);
  free(qs_text);
  int k = 0;
  set_out(enc, k++, CZ_TYPE_U8, 1, NP, 2, packed, (uint64_t)NP);
  if (dq) {
    free(amax);
    set_out(enc, k++, CZ_TYPE_U8, n, 1, 1, codes, (uint64_t)n);
  } else {
    set_out(enc, k++, CZ_TYPE_F32, n, 1, 1, amax, sizeof(float) * (uint64_t)n);
  }
  set_out(enc, k++, CZ_TYPE_F32, 16, 1, 1, qmap, sizeof(float) * 16);
  if (dq) {
    set_out(enc, k++, CZ_TYPE_F32, nch, 1, 1, amax2, sizeof(float) * (uint64_t)nch);
    set_out(enc, k++, CZ_TYPE_F32, CZ_DYN_N, 1, 1, dmap, sizeof(float) * CZ_DYN_N);
  }
  set_out(enc, k++, CZ_TYPE_U8, (int64_t)qs_len, 1, 1, qs_bytes, (uint64_t)qs_len);
  static const char *const sfx_plain[] = {"absmax", "quant_map", "quant_state.bitsandbytes__nf4"};
  static const char *const sfx_dq[] = {"absmax", "quant_map", "nested_absmax", "nested_quant_map",
                                       "quant_state.bitsandbytes__nf4"};
  const char *const *sfx = dq ? sfx_dq : sfx_plain;
  bool named = snprintf(enc->t[0].name, sizeof enc->t[0].name, "%s", in->name) <
               (int)sizeof enc->t[0].name;
  for (int t = 1; named && t < k; t++)
    named = cz_suffixed_name(enc->t[t].name, sizeof enc->t[t].name, in->name, ".", sfx[t - 1]);
  enc->n = k;
  if (!named) {
    free_outs(enc, k);
    enc->n = 0;
    return cz_err_set(err, CZ_E_UNSUPPORTED_INPUT, "tensor %s: name too long", in->name);
  }
  json_object_set_new(info, "blocks", json_integer(n));
  *node = json_pack("{s:s, s:I, s:b, s:[I, I], s:s, s:s, s:s, s:s}", "encoding", "nf4",
                    "block_size", (json_int_t)B, "double_quant", dq, "shape", (json_int_t)R,
                    (json_int_t)C, "weight", enc->t[0].name, "absmax", enc->t[1].name,
                    "quant_map", enc->t[2].name, "quant_state", enc->t[k - 1].name);
  if (dq) {
    json_object_set_new(*node, "nested_absmax", json_string(enc->t[3].name));
    json_object_set_new(*node, "nested_quant_map", json_string(enc->t[4].name));
  }
  return CZ_E_OK;
}

static json_t *nf4_schema(void) {
  json_t *p = json_array();
  json_array_append_new(p, cz_schema_param("scheme", "string", true, NULL, json_pack("[s]", "nf4"),
                                           NAN, NAN, "4-bit NormalFloat (bitsandbytes' 16 code "
                                           "values) with one absmax scale per block"));
  json_array_append_new(p, cz_schema_param("block_size", "integer", false, json_integer(64),
                                           json_pack("[i, i, i, i]", 32, 64, 128, 256), 32, 256,
                                           "weights per absmax block, along the row"));
  json_array_append_new(p, cz_schema_param("double_quant", "boolean", false, json_false(), NULL,
                                           NAN, NAN, "store the absmax values as 8-bit codes of "
                                           "bitsandbytes' dynamic map around their mean, one "
                                           "float32 absmax per 256 blocks (bitsandbytes' "
                                           "compress_statistics)"));
  cz_schema_add_selectors(p);
  return json_pack("{s:o, s:[s], s:s}", "params", p, "output_formats", "safetensors", "layout",
                   "bitsandbytes nf4 (Params4bit / QuantState tensors as transformers saves them)");
}

/* transformers' BitsAndBytesConfig for this step (its to_dict keys; the pipeline adds
 * llm_int8_skip_modules, the modules left dense). bnb_4bit_compute_dtype is left to the
 * loader (it is the matmul's type, not the file's). */
static json_t *nf4_quant_config(const void *params) {
  const nf4_params *p = params;
  return json_pack("{s:s, s:b, s:b, s:s, s:b, s:s}", "quant_method", "bitsandbytes",
                   "load_in_4bit", 1, "load_in_8bit", 0, "bnb_4bit_quant_type", "nf4",
                   "bnb_4bit_use_double_quant", p->double_quant, "bnb_4bit_quant_storage",
                   "uint8");
}

const cz_method cz_m_quantize_nf4 = {
    .id = 11,
    .name = "quantize.nf4",
    .op = "quantize",
    .summary = "NF4 (bitsandbytes' code values), absmax per block of 32..256 (default 64), "
               "optional double quantization of the absmax values (safetensors)",
    .match = nf4_match,
    .parse = nf4_parse,
    .free_params = plain_free,
    .describe = nf4_describe,
    .supports_format = st_only,
    .kind = CZ_METHOD_TENSOR,
    .refuse = nf4_refuse,
    .encode_tensor = nf4_encode,
    .schema = nf4_schema,
    .quant_config = nf4_quant_config,
};

/* ==== quantize.fp8 (id 12): F8_E4M3 with a scale per channel or per block ==== */

static const char *const fp8_schemes[] = {"fp8_e4m3", NULL};
#define FP8_MAX 448.0f       /* largest finite E4M3FN value */
#define FP8_BLOCK_MAX 4096   /* a block side; larger is per-tensor in all but name */

typedef struct {
  bool block;
  int64_t br, bc;  /* block rows and columns (block granularity) */
} fp8_params;

static bool fp8_match(const json_t *step) { return scheme_is(step, fp8_schemes); }

static cz_err_code fp8_parse(const json_t *step, int idx, void **out, cz_error *err) {
  static const char *const keys[] = {"op", "scheme", "granularity", "block", NULL};
  static const char *const gran[] = {"channel", "block", NULL};
  cz_err_code rc = cz_param_keys(step, idx, keys, err);
  if (rc) return rc;
  const json_t *blk = json_object_get(step, "block");
  int g;
  if ((rc = cz_param_enum(step, idx, "granularity", gran, blk ? 1 : 0, &g, err))) return rc;
  int64_t br = 128, bc = 128;
  if (blk) {
    if (g != 1)
      return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d].block applies only with \"granularity\": \"block\"", idx);
    const json_t *a = json_array_get(blk, 0), *b = json_array_get(blk, 1);
    if (!json_is_array(blk) || json_array_size(blk) != 2 || !json_is_integer(a) ||
        !json_is_integer(b) || json_integer_value(a) < 1 || json_integer_value(b) < 1 ||
        json_integer_value(a) > FP8_BLOCK_MAX || json_integer_value(b) > FP8_BLOCK_MAX)
      return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d].block must be [rows, cols], each an integer in [1, %d]", idx,
                        FP8_BLOCK_MAX);
    br = json_integer_value(a);
    bc = json_integer_value(b);
  }
  fp8_params *p = calloc(1, sizeof *p);
  if (!p) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  p->block = g == 1;
  p->br = br;
  p->bc = bc;
  *out = p;
  return CZ_E_OK;
}

static json_t *fp8_describe(const void *params) {
  const fp8_params *p = params;
  json_t *d = json_pack("{s:s, s:s, s:s}", "op", "quantize", "scheme", "fp8_e4m3", "granularity",
                        p->block ? "block" : "channel");
  if (p->block) json_object_set_new(d, "block", json_pack("[I, I]", (json_int_t)p->br, (json_int_t)p->bc));
  return d;
}

static const char *fp8_refuse(const void *params, const cz_wt *w, bool named) {
  return refuse_2d(w, named);
}

static cz_err_code fp8_encode(const void *params, const cz_wctx *ctx, const cz_wt *in,
                              cz_wenc *enc, double *y, json_t *info, json_t **node,
                              cz_error *err) {
  const fp8_params *p = params;
  const int64_t R = in->rows, C = in->cols;
  const int64_t br = p->block ? p->br : 1, bc = p->block ? p->bc : C;
  const int64_t NR = (R + br - 1) / br, NC = (C + bc - 1) / bc;
  uint8_t *q = malloc((size_t)(R * C > 0 ? R * C : 1));
  float *scale = malloc(sizeof(float) * (size_t)(NR * NC));
  if (!q || !scale) {
    free(q), free(scale);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  for (int64_t bi = 0; bi < NR; bi++)
    for (int64_t bj = 0; bj < NC; bj++) {
      const int64_t r0 = bi * br, r1 = r0 + br < R ? r0 + br : R;
      const int64_t c0 = bj * bc, c1 = c0 + bc < C ? c0 + bc : C;
      float amax = 0;
      for (int64_t r = r0; r < r1; r++)
        for (int64_t c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(in->f[r * C + c]));
      const float s = amax / FP8_MAX;
      scale[bi * NC + bj] = s;
      for (int64_t r = r0; r < r1; r++)
        for (int64_t c = c0; c < c1; c++) {
          /* |x / s| <= 448 up to one rounding; the clamp keeps it off E4M3's NaN overflow */
          float v = s > 0 ? in->f[r * C + c] / s : 0.0f;
          v = fminf(fmaxf(v, -FP8_MAX), FP8_MAX);
          q[r * C + c] = cz_fp32_to_f8e4m3(v);
          y[r * C + c] = cz_f8e4m3_to_fp32(q[r * C + c]) * s;
        }
    }
  snprintf(enc->t[0].name, sizeof enc->t[0].name, "%s", in->name);
  if (!cz_suffixed_name(enc->t[1].name, sizeof enc->t[1].name, in->name, "_", "scale")) {
    free(q), free(scale);
    return cz_err_set(err, CZ_E_UNSUPPORTED_INPUT, "tensor %s: name too long", in->name);
  }
  set_out(enc, 0, CZ_TYPE_F8_E4M3, C, R, 2, q, (uint64_t)(R * C));
  set_out(enc, 1, CZ_TYPE_F32, NC, NR, 2, scale, sizeof(float) * (uint64_t)(NR * NC));
  enc->n = 2;
  *node = json_pack("{s:s, s:s, s:s, s:[I, I], s:[I, I]}", "encoding", "fp8_e4m3", "tensor",
                    enc->t[0].name, "scale", enc->t[1].name, "block", (json_int_t)br,
                    (json_int_t)bc, "shape", (json_int_t)R, (json_int_t)C);
  return CZ_E_OK;
}

static json_t *fp8_quant_config(const void *params) {
  const fp8_params *p = params;
  json_t *w = json_pack("{s:i, s:s, s:b, s:s, s:b, s:n, s:s}", "num_bits", 8, "type", "float",
                        "symmetric", 1, "strategy", p->block ? "block" : "channel", "dynamic", 0,
                        "group_size", "observer", "minmax");
  json_object_set_new(w, "block_structure", p->block ? json_pack("[I, I]", (json_int_t)p->br,
                                                                 (json_int_t)p->bc)
                                                     : json_null());
  return json_pack("{s:s, s:{s:{s:[s], s:o, s:n, s:n}}}", "format", "float-quantized",
                   "config_groups", "group_0", "targets", "Linear", "weights", w,
                   "input_activations", "output_activations");
}

static json_t *fp8_schema(void) {
  json_t *p = json_array();
  json_array_append_new(p, cz_schema_param("scheme", "string", true, NULL,
                                           json_pack("[s]", "fp8_e4m3"), NAN, NAN,
                                           "8-bit float E4M3 (OCP E4M3FN, max 448) with float32 "
                                           "scales = max|w| / 448"));
  json_array_append_new(p, cz_schema_param("granularity", "string", false, json_string("channel"),
                                           json_pack("[s, s]", "channel", "block"), NAN, NAN,
                                           "one scale per output channel (row), or per block"));
  /* no "default" key, as group_size of quantize.int_packed: it applies to one granularity */
  json_t *b = cz_schema_param("block", "array", false, NULL, NULL, NAN, NAN,
                              "[rows, cols] of a block (granularity block; default [128, 128], "
                              "as DeepSeek-V3 and compressed-tensors); edge blocks are smaller");
  json_object_set_new(b, "min_items", json_integer(2));
  json_object_set_new(b, "max_items", json_integer(2));
  json_array_append_new(p, b);
  cz_schema_add_selectors(p);
  return json_pack("{s:o, s:[s], s:s}", "params", p, "output_formats", "safetensors", "layout",
                   "compressed-tensors float-quantized");
}

const cz_method cz_m_quantize_fp8 = {
    .id = 12,
    .name = "quantize.fp8",
    .op = "quantize",
    .summary = "FP8 E4M3 weights with a float32 scale per output channel or per block "
               "(e.g. 128x128), as compressed-tensors float-quantized (safetensors)",
    .match = fp8_match,
    .parse = fp8_parse,
    .free_params = plain_free,
    .describe = fp8_describe,
    .supports_format = st_only,
    .kind = CZ_METHOD_TENSOR,
    .refuse = fp8_refuse,
    .encode_tensor = fp8_encode,
    .schema = fp8_schema,
    .quant_config = fp8_quant_config,
};
