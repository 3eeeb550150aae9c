/* cz_m_palettize: "palettize" (weight sharing), a whole-tensor final encoding: every weight is
 * replaced by the nearest entry of a k-means codebook (LUT) of 2^bits float32 entries, one
 * codebook per tensor, per output channel or per group of output channels, and stored as its
 * bit-packed index. The codebook comes from exact 1-D k-means by dynamic programming (the
 * global optimum; coremltools uses the same through kmeans1d) or, for very many distinct
 * values, Lloyd's algorithm from a seeded k-means++ start. With keep_zero (the default after a
 * prune step), exact zeros get LUT entry 0 = 0.0 and the other values share the rest, so a
 * pruned weight stays exactly zero.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz_linalg.h"
#include "cz_method.h"

enum { G_TENSOR, G_CHANNEL, G_GROUP };
enum { A_AUTO, A_EXACT, A_KMEANS };
static const char *const gran_names[] = {"tensor", "channel", "group", NULL};
static const char *const algo_names[] = {"auto", "exact", "kmeans", NULL};

/* auto picks the exact DP while (distinct values) x (clusters) stays below this: about a
 * second of work; exact refuses above EXACT_MAX (its k x n table of int32). */
#define AUTO_EXACT_MAX ((double)(1 << 26))
#define EXACT_MAX ((double)(1 << 28))

typedef struct {
  int bits;
  int gran;
  int64_t group_size;
  int algo;
  int64_t seed, max_iter;
  int keep_zero;  /* -1: after a prune step; 0 / 1 */
} pal_params;

static void pal_free(void *p) { free(p); }
static bool pal_match(const json_t *step) { return true; }

static cz_err_code pal_parse(const json_t *step, int idx, void **out, cz_error *err) {
  static const char *const keys[] = {"op", "bits", "granularity", "group_size", "algorithm",
                                     "seed", "max_iter", "keep_zero", NULL};
  cz_err_code rc = cz_param_keys(step, idx, keys, err);
  if (rc) return rc;
  pal_params *p = calloc(1, sizeof *p);
  if (!p) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  int64_t bits = 0;
  bool g_bits = false, g_gs = false, g_kz = false, kz = false;
  if (!(rc = cz_param_int(step, idx, "bits", 1, 8, 0, &bits, &g_bits, err)) && !g_bits)
    rc = cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].bits (1..8) is required", idx);
  if (!rc) rc = cz_param_enum(step, idx, "granularity", gran_names, G_TENSOR, &p->gran, err);
  if (!rc) rc = cz_param_int(step, idx, "group_size", 1, (int64_t)1 << 30, 32, &p->group_size,
                             &g_gs, err);
  if (!rc && g_gs && p->gran != G_GROUP)
    rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                    "steps[%d].group_size applies only with \"granularity\": \"group\"", idx);
  if (!rc) rc = cz_param_enum(step, idx, "algorithm", algo_names, A_AUTO, &p->algo, err);
  if (!rc) rc = cz_param_int(step, idx, "seed", 0, (int64_t)1 << 53, 0, &p->seed, NULL, err);
  if (!rc) rc = cz_param_int(step, idx, "max_iter", 1, 10000, 100, &p->max_iter, NULL, err);
  if (!rc) rc = cz_param_bool(step, idx, "keep_zero", false, &kz, &g_kz, err);
  if (rc) {
    free(p);
    return rc;
  }
  p->bits = (int)bits;
  if (p->gran == G_CHANNEL) p->group_size = 1;
  p->keep_zero = g_kz ? kz : -1;
  *out = p;
  return CZ_E_OK;
}

static json_t *pal_describe(const void *params) {
  const pal_params *p = params;
  json_t *d = json_pack("{s:s, s:i, s:s, s:s, s:I, s:I}", "op", "palettize", "bits", p->bits,
                        "granularity", gran_names[p->gran], "algorithm", algo_names[p->algo],
                        "seed", (json_int_t)p->seed, "max_iter", (json_int_t)p->max_iter);
  if (p->gran == G_GROUP) json_object_set_new(d, "group_size", json_integer(p->group_size));
  if (p->keep_zero >= 0) json_object_set_new(d, "keep_zero", json_boolean(p->keep_zero));
  return d;
}

static bool pal_supports(const void *params, cz_format f) { return f == CZ_FORMAT_SAFETENSORS; }

static const char *pal_refuse(const void *params, const cz_wt *w, bool named) {
  return cz_method_wt_refuse(w, named, false);
}

/* Write the low `bits` bits of v at bit position j * bits of row (LSB first). */
static void put_bits(uint8_t *row, int64_t j, int bits, unsigned v) {
  uint64_t p = (uint64_t)j * (uint64_t)bits;
  for (int b = 0; b < bits;) {
    int off = (int)(p % 8), take = 8 - off < bits - b ? 8 - off : bits - b;
    row[p / 8] |= (uint8_t)(((v >> b) & ((1u << take) - 1)) << off);
    p += (uint64_t)take;
    b += take;
  }
}

static cz_err_code pal_encode(const void *params, const cz_wctx *ctx, const cz_wt *in,
                              cz_wenc *enc, double *y, json_t *info, json_t **node,
                              cz_error *err) {
  const pal_params *p = params;
  const int K = 1 << p->bits;
  const int64_t R = in->rows, C = in->cols;
  const int64_t G = p->gran == G_TENSOR ? R : p->group_size;
  const int64_t ng = (R + G - 1) / G;
  const int64_t rb = (C * p->bits + 7) / 8;
  const bool kz = p->keep_zero < 0 ? in->sparse : p->keep_zero;
  float *lut = calloc((size_t)(ng * K), sizeof(float));
  uint8_t *idx = calloc((size_t)(R * rb) + 1, 1);
  float *nz = kz ? malloc(sizeof(float) * (size_t)(G * C)) : NULL;
  double c[256], lv[256];
  int used_max = 0, n_exact = 0, n_lloyd = 0;
  cz_err_code rc = CZ_E_OK;
  if (!lut || !idx || (kz && !nz)) {
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    goto fail;
  }
  for (int64_t g = 0; g < ng; g++) {
    const int64_t r0 = g * G, r1 = r0 + G < R ? r0 + G : R;
    const float *v = in->f + r0 * C;
    size_t cnt = (size_t)((r1 - r0) * C), nv = cnt;
    const float *cl = v;
    bool zero_slot = false;
    if (kz) {
      nv = 0;
      for (size_t i = 0; i < cnt; i++)
        if (v[i] != 0.0f) nz[nv++] = v[i];
      zero_slot = nv < cnt;
      cl = nz;
    }
    const int kc = K - zero_slot;
    double *vals = NULL, *w = NULL;
    size_t u = nv ? cz_unique_counts(cl, nv, &vals, &w) : 0;
    if (u == (size_t)-1) {
      rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
      goto fail;
    }
    int ku = 0;
    double cost = 0;
    bool exact = p->algo == A_EXACT || (p->algo == A_AUTO && (double)u * kc <= AUTO_EXACT_MAX);
    if (exact && (double)u * kc > EXACT_MAX) {
      free(vals);
      free(w);
      rc = cz_err_set(err, CZ_E_UNSUPPORTED,
                      "tensor %s: exact k-means over %zu distinct values would need too much "
                      "memory; use \"algorithm\": \"kmeans\"",
                      in->name, u);
      goto fail;
    }
    if (u > 0 && kc > 0) {
      cost = exact ? cz_kmeans1d_exact(vals, w, u, kc, c, &ku)
                   : cz_kmeans1d_lloyd(vals, w, u, kc, (uint64_t)p->seed, (int)p->max_iter, c, &ku);
      n_exact += exact;
      n_lloyd += !exact;
    }
    free(vals);
    free(w);
    if (cost < 0) {
      rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
      goto fail;
    }
    const int base = zero_slot;
    float *L = lut + g * K;
    for (int i = 0; i < ku; i++) {
      L[base + i] = (float)c[i];
      lv[i] = (double)L[base + i];  /* assign against the stored (float) entries */
    }
    if (ku + base > used_max) used_max = ku + base;
    for (int64_t r = r0; r < r1; r++)
      for (int64_t j = 0; j < C; j++) {
        float x = in->f[r * C + j];
        int k = (zero_slot && x == 0.0f) || ku == 0 ? 0 : base + cz_nearest_sorted(lv, ku, x);
        put_bits(idx + r * rb, j, p->bits, (unsigned)k);
        y[r * C + j] = L[k];
      }
  }
  if (!cz_suffixed_name(enc->t[0].name, sizeof enc->t[0].name, in->name, "_", "lut") ||
      !cz_suffixed_name(enc->t[1].name, sizeof enc->t[1].name, in->name, "_", "indices")) {
    rc = cz_err_set(err, CZ_E_UNSUPPORTED_INPUT, "tensor %s: name too long", in->name);
    goto fail;
  }
  enc->t[0].type = CZ_TYPE_F32;
  enc->t[0].n_dims = 2;
  enc->t[0].ne[0] = K, enc->t[0].ne[1] = ng, enc->t[0].ne[2] = enc->t[0].ne[3] = 1;
  enc->t[0].data = (uint8_t *)lut;
  enc->t[0].nbytes = sizeof(float) * (size_t)(ng * K);
  enc->t[1].type = CZ_TYPE_U8;
  enc->t[1].n_dims = 2;
  enc->t[1].ne[0] = rb, enc->t[1].ne[1] = R, enc->t[1].ne[2] = enc->t[1].ne[3] = 1;
  enc->t[1].data = idx;
  enc->t[1].nbytes = (uint64_t)(R * rb);
  enc->n = 2;
  json_object_set_new(info, "codebook_size", json_integer(K));
  json_object_set_new(info, "codebooks", json_integer(ng));
  json_object_set_new(info, "clusters_used", json_integer(used_max));
  json_object_set_new(info, "kmeans", json_string(n_lloyd == 0 ? "exact" : n_exact == 0 ? "lloyd" : "mixed"));
  *node = json_pack("{s:s, s:i, s:I, s:[I, I], s:s, s:s, s:b}", "encoding", "palette", "bits",
                    p->bits, "group_size", (json_int_t)G, "shape", (json_int_t)R, (json_int_t)C,
                    "lut", enc->t[0].name, "indices", enc->t[1].name, "keep_zero", kz);
  free(nz);
  return CZ_E_OK;
fail:
  free(lut);
  free(idx);
  free(nz);
  return rc;
}

static json_t *pal_schema(void) {
  json_t *p = json_array();
  json_array_append_new(p, cz_schema_param("bits", "integer", true, NULL, NULL, 1, 8,
                                           "index bits: a codebook of 2^bits entries"));
  json_array_append_new(p, cz_schema_param("granularity", "string", false, json_string("tensor"),
                                           json_pack("[s, s, s]", "tensor", "channel", "group"),
                                           NAN, NAN, "one codebook per tensor, per output "
                                           "channel (row) or per group_size rows"));
  json_array_append_new(p, cz_schema_param("group_size", "integer", false, json_integer(32), NULL,
                                           1, 1 << 30, "rows per codebook (granularity group)"));
  json_array_append_new(p, cz_schema_param("algorithm", "string", false, json_string("auto"),
                                           json_pack("[s, s, s]", "auto", "exact", "kmeans"), NAN,
                                           NAN, "exact: optimal 1-D k-means (dynamic "
                                           "programming); kmeans: Lloyd from k-means++; auto: "
                                           "exact unless the tensor has very many distinct values"));
  json_array_append_new(p, cz_schema_param("seed", "integer", false, json_integer(0), NULL, 0,
                                           9007199254740992.0, "k-means++ seed"));
  json_array_append_new(p, cz_schema_param("max_iter", "integer", false, json_integer(100), NULL, 1,
                                           10000, "Lloyd iterations at most"));
  json_array_append_new(p, cz_schema_param("keep_zero", "boolean", false, NULL, NULL, NAN, NAN,
                                           "reserve entry 0 = 0.0 for exact zeros (default: true "
                                           "after a prune step)"));
  cz_schema_add_selectors(p);
  return json_pack("{s:o, s:[s]}", "params", p, "output_formats", "safetensors");
}

const cz_method cz_m_palettize = {
    .id = 9,
    .name = "palettize.kmeans",
    .op = "palettize",
    .summary = "k-means weight sharing: a 2^bits-entry codebook per tensor or group of output "
               "channels (exact 1-D DP or Lloyd/k-means++), bit-packed indices (safetensors)",
    .match = pal_match,
    .parse = pal_parse,
    .free_params = pal_free,
    .describe = pal_describe,
    .supports_format = pal_supports,
    .kind = CZ_METHOD_TENSOR,
    .refuse = pal_refuse,
    .encode_tensor = pal_encode,
    .schema = pal_schema,
};
