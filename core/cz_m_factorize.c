/* cz_m_factorize: the "factorize" methods (whole-tensor transforms): W [m x n] ~ A [m x r] .
 * B [r x n] by truncated SVD (LAPACK sgesdd, "svd") or randomized SVD (Halko et al., "rsvd"),
 * each factor absorbing sqrt(sigma). The rank comes from "rank", "rank_ratio" (of min(m, n)),
 * "param_ratio" (of the break-even rank mn/(m+n), as ASVD and SVD-LLM count it) or "energy"
 * (the kept share of sum sigma^2); "only_if_smaller" (default true) leaves a matrix whole when
 * the factors would not be smaller (r >= mn/(m+n)). With "activation_aware", the input columns
 * are scaled by s_j = E[x_j^2]^(alpha/2) before the SVD and B is divided by s afterwards (ASVD's
 * scaling; with alpha = 1 the truncation minimizes sum_j E[x_j^2] sum_i dW_ij^2).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz_linalg.h"
#include "cz_method.h"

enum { R_RANK, R_RANK_RATIO, R_PARAM_RATIO, R_ENERGY };
static const char *const crit_names[] = {"rank", "rank_ratio", "param_ratio", "energy"};

typedef struct {
  bool randomized;
  int crit;
  int64_t rank;
  double value;
  int64_t multiple;
  bool only_if_smaller;
  bool activation_aware;
  double alpha;
  int64_t oversample, power_iters, seed;
} fact_params;

static void fact_free(void *p) { free(p); }

static bool match_svd(const json_t *step) {
  const json_t *m = json_object_get(step, "method");
  return m == NULL || (json_is_string(m) && strcmp(json_string_value(m), "svd") == 0);
}

static bool match_rsvd(const json_t *step) {
  const json_t *m = json_object_get(step, "method");
  return json_is_string(m) && strcmp(json_string_value(m), "rsvd") == 0;
}

static cz_err_code parse_common(const json_t *step, int idx, bool randomized, void **out,
                                cz_error *err) {
  static const char *const k_svd[] = {"op", "method", "rank", "rank_ratio", "param_ratio",
                                      "energy", "rank_multiple", "only_if_smaller",
                                      "activation_aware", "alpha", NULL};
  static const char *const k_rsvd[] = {"op", "method", "rank", "rank_ratio", "param_ratio",
                                       "energy", "rank_multiple", "only_if_smaller",
                                       "activation_aware", "alpha", "oversample",
                                       "power_iters", "seed", NULL};
  cz_err_code rc = cz_param_keys(step, idx, randomized ? k_rsvd : k_svd, err);
  if (rc) return rc;
  fact_params *p = calloc(1, sizeof *p);
  if (!p) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  p->randomized = randomized;
  int given = 0;
  p->crit = -1;
  for (int c = 0; c < 4; c++)
    if (json_object_get(step, crit_names[c])) {
      given++;
      p->crit = c;
    }
  bool g_alpha = false;
  if (given != 1) {
    rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                    "steps[%d]: exactly one of rank, rank_ratio, param_ratio, energy is required",
                    idx);
  } else if (p->crit == R_RANK) {
    rc = cz_param_int(step, idx, "rank", 1, (int64_t)1 << 30, 1, &p->rank, NULL, err);
  } else {
    rc = cz_param_real(step, idx, crit_names[p->crit], 0, true, 1, 1, &p->value, NULL, err);
  }
  if (!rc) rc = cz_param_int(step, idx, "rank_multiple", 1, 4096, 1, &p->multiple, NULL, err);
  if (!rc) rc = cz_param_bool(step, idx, "only_if_smaller", true, &p->only_if_smaller, NULL, err);
  if (!rc)
    rc = cz_param_bool(step, idx, "activation_aware", false, &p->activation_aware, NULL, err);
  if (!rc) rc = cz_param_real(step, idx, "alpha", 0, true, 4, 1, &p->alpha, &g_alpha, err);
  if (!rc && g_alpha && !p->activation_aware)
    rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                    "steps[%d].alpha applies only with \"activation_aware\": true", idx);
  if (!rc) rc = cz_param_int(step, idx, "oversample", 0, 1024, 10, &p->oversample, NULL, err);
  if (!rc) rc = cz_param_int(step, idx, "power_iters", 0, 32, 4, &p->power_iters, NULL, err);
  if (!rc)
    rc = cz_param_int(step, idx, "seed", 0, (int64_t)1 << 53, 0, &p->seed, NULL, err);
  if (rc) {
    free(p);
    return rc;
  }
  *out = p;
  return CZ_E_OK;
}

static cz_err_code parse_svd(const json_t *s, int i, void **o, cz_error *e) {
  return parse_common(s, i, false, o, e);
}
static cz_err_code parse_rsvd(const json_t *s, int i, void **o, cz_error *e) {
  return parse_common(s, i, true, o, e);
}

static json_t *fact_describe(const void *params) {
  const fact_params *p = params;
  json_t *d = json_pack("{s:s, s:s}", "op", "factorize", "method", p->randomized ? "rsvd" : "svd");
  json_object_set_new(d, crit_names[p->crit],
                      p->crit == R_RANK ? json_integer(p->rank) : json_real(p->value));
  json_object_set_new(d, "rank_multiple", json_integer(p->multiple));
  json_object_set_new(d, "only_if_smaller", json_boolean(p->only_if_smaller));
  json_object_set_new(d, "activation_aware", json_boolean(p->activation_aware));
  if (p->activation_aware) json_object_set_new(d, "alpha", json_real(p->alpha));
  if (p->randomized) {
    json_object_set_new(d, "oversample", json_integer(p->oversample));
    json_object_set_new(d, "power_iters", json_integer(p->power_iters));
    json_object_set_new(d, "seed", json_integer(p->seed));
  }
  return d;
}

static bool fact_supports(const void *params, cz_format f) { return true; }

static const char *fact_refuse(const void *params, const cz_wt *w, bool named) {
  const fact_params *p = params;
  const char *why = cz_method_wt_refuse(w, named, false);
  if (why) return why;
  if (w->n_dims != 2) return "needs a 2-D matrix";
  if (w->rows < 2 || w->cols < 2) return "matrix too small to factorize";
  if (p->activation_aware && w->importance == NULL)
    return "no importance data for this tensor (activation-aware factorization)";
  return NULL;
}

static cz_err_code fact_check(const void *params, const cz_plan_ctx *ctx, cz_error *err) {
  const fact_params *p = params;
  if (p->activation_aware && ctx->importance == NULL)
    return cz_err_set(err, CZ_E_INVALID_RECIPE,
                      "steps[%d].activation_aware needs the job's importance matrix (calibration)",
                      ctx->step_index);
  return CZ_E_OK;
}

/* Rank from a criterion that does not need the spectrum. */
static int64_t rank_fixed(const fact_params *p, int64_t m, int64_t n) {
  int64_t mn = m < n ? m : n, r;
  switch (p->crit) {
    case R_RANK: r = p->rank; break;
    case R_RANK_RATIO: r = llround(p->value * (double)mn); break;
    default: r = (int64_t)floor(p->value * (double)m * (double)n / (double)(m + n)); break;
  }
  return r < 1 ? 1 : r > mn ? mn : r;
}

/* Smallest r whose sigma^2 share reaches tau of total; 0 if the k given do not reach it. */
static int64_t rank_energy(const float *s, int64_t k, double total, double tau) {
  if (total <= 0) return 1;
  double acc = 0;
  for (int64_t i = 0; i < k; i++) {
    acc += (double)s[i] * s[i];
    if (acc >= tau * total) return i + 1;
  }
  return 0;
}

static int64_t round_up(int64_t r, int64_t mult, int64_t mn) {
  r = (r + mult - 1) / mult * mult;
  return r > mn ? mn : r;
}

static cz_err_code fact_transform(const void *params, const cz_wctx *ctx, const cz_wt *in,
                                  cz_wt *out, int *n_out, void **undo, json_t *info,
                                  const char **note, cz_error *err) {
  const fact_params *p = params;
  const int64_t m = in->rows, n = in->cols, mn = m < n ? m : n;
  *n_out = 0;
  *undo = NULL;
  float *a = malloc(sizeof(float) * (size_t)(m * n));
  float *sc = p->activation_aware ? malloc(sizeof(float) * (size_t)n) : NULL;
  float *u = NULL, *s = NULL, *vt = NULL, *fa = NULL, *fb = NULL;
  cz_err_code rc = CZ_E_OK;
  if (!a || (p->activation_aware && !sc)) goto oom;
  if (p->activation_aware) {
    /* s_j = E[x_j^2]^(alpha/2); columns that never saw input get a small floor so that B
     * can be divided back */
    double mx = 0;
    for (int64_t j = 0; j < n; j++) mx = fmax(mx, in->importance[j]);
    double floor_v = mx > 0 ? mx * 1e-6 : 1;
    for (int64_t j = 0; j < n; j++)
      sc[j] = (float)pow(fmax(in->importance[j], floor_v), p->alpha / 2);
  }
  double total = 0;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      float v = in->f[i * n + j] * (sc ? sc[j] : 1.0f);
      a[i * n + j] = v;
      total += (double)v * v;
    }
  int64_t r = 0, k = 0;  /* k: singular triplets computed */
  if (!p->randomized) {
    u = malloc(sizeof(float) * (size_t)(m * mn));
    s = malloc(sizeof(float) * (size_t)mn);
    vt = malloc(sizeof(float) * (size_t)(mn * n));
    if (!u || !s || !vt) goto oom;
    if ((rc = cz_svd(a, m, n, u, s, vt, err))) goto done;
    k = mn;
    total = 0;
    for (int64_t i = 0; i < mn; i++) total += (double)s[i] * s[i];
    r = p->crit == R_ENERGY ? rank_energy(s, mn, total, p->value) : rank_fixed(p, m, n);
    if (r == 0) r = mn;
    r = round_up(r, p->multiple, mn);
  } else {
    int64_t q = p->crit == R_ENERGY ? (mn < 64 ? mn : 64) : round_up(rank_fixed(p, m, n), p->multiple, mn);
    for (;;) {
      free(u);
      free(s);
      free(vt);
      u = malloc(sizeof(float) * (size_t)(m * q));
      s = malloc(sizeof(float) * (size_t)q);
      vt = malloc(sizeof(float) * (size_t)(q * n));
      if (!u || !s || !vt) goto oom;
      if ((rc = cz_rsvd(a, m, n, q, (int)p->oversample, (int)p->power_iters, (uint64_t)p->seed, u,
                        s, vt, err)))
        goto done;
      k = q;
      if (p->crit != R_ENERGY) {
        r = q;
        break;
      }
      r = rank_energy(s, q, total, p->value);
      if (r > 0 || q == mn) {
        if (r == 0) r = mn;
        int64_t rr = round_up(r, p->multiple, mn);
        if (rr <= q) {
          r = rr;
          break;
        }
        q = rr;  /* rounding up needs more triplets than computed */
        continue;
      }
      q = q * 2 > mn ? mn : q * 2;
    }
  }
  if (p->only_if_smaller && r * (m + n) >= m * n) {
    *note = "the factors would not be smaller (rank >= mn/(m+n)); left whole";
    json_object_set_new(info, "rank_needed", json_integer(r));
    goto done;
  }
  double kept = 0;
  for (int64_t i = 0; i < r; i++) kept += (double)s[i] * s[i];
  fa = malloc(sizeof(float) * (size_t)(m * r));
  fb = malloc(sizeof(float) * (size_t)(r * n));
  if (!fa || !fb) goto oom;
  for (int64_t i = 0; i < m; i++)
    for (int64_t c = 0; c < r; c++) fa[i * r + c] = u[i * k + c] * sqrtf(s[c]);
  for (int64_t c = 0; c < r; c++)
    for (int64_t j = 0; j < n; j++)
      fb[c * n + j] = sqrtf(s[c]) * vt[c * n + j] / (sc ? sc[j] : 1.0f);
  memset(out, 0, 2 * sizeof *out);
  if (!cz_derived_name(out[0].name, sizeof out[0].name, in->name, "lowrank_a", true) ||
      !cz_derived_name(out[1].name, sizeof out[1].name, in->name, "lowrank_b", true)) {
    rc = cz_err_set(err, CZ_E_UNSUPPORTED_INPUT, "tensor %s: name too long", in->name);
    goto done;
  }
  out[0].n_dims = out[1].n_dims = 2;
  out[0].ne[0] = r, out[0].ne[1] = m;
  out[1].ne[0] = n, out[1].ne[1] = r;
  out[0].ne[2] = out[0].ne[3] = out[1].ne[2] = out[1].ne[3] = 1;
  out[0].rows = m, out[0].cols = r, out[0].f = fa;
  out[1].rows = r, out[1].cols = n, out[1].f = fb;
  out[1].importance = in->importance;  /* B reads the same inputs as W */
  fa = fb = NULL;
  *n_out = 2;
  json_object_set_new(info, "rank", json_integer(r));
  json_object_set_new(info, "energy_kept", json_real(total > 0 ? kept / total : 1.0));
  json_object_set_new(info, "params_ratio", json_real((double)(r * (m + n)) / (double)(m * n)));
  goto done;
oom:
  rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
done:
  free(a);
  free(sc);
  free(u);
  free(s);
  free(vt);
  free(fa);
  free(fb);
  return rc;
}

static void fact_untransform(const void *params, const void *undo, const cz_wt *in,
                             const cz_wt *out, const double *const *outs, int n_out, double *y) {
  cz_matmul_f64(outs[0], outs[1], y, in->rows, out[0].cols, in->cols);
}

static json_t *fact_layout_node(const void *params, const void *undo, const cz_wt *in,
                                const cz_wt *out, json_t **children, int n_out) {
  return json_pack("{s:s, s:I, s:o, s:o}", "transform", "lowrank", "rank",
                   (json_int_t)out[0].cols, "a", children[0], "b", children[1]);
}

/* ---- schemas (GET /v1/methods) ---- */

static json_t *fact_schema(bool randomized) {
  json_t *p = json_array();
  json_array_append_new(p, cz_schema_param("method", "string", randomized,
                                           randomized ? NULL : json_string("svd"),
                                           json_pack("[s]", randomized ? "rsvd" : "svd"), NAN, NAN,
                                           "factorization method"));
  json_array_append_new(p, cz_schema_param("rank", "integer", false, NULL, NULL, 1, 1 << 30,
                                           "the rank r (exactly one of rank, rank_ratio, "
                                           "param_ratio, energy)"));
  json_array_append_new(p, cz_schema_param("rank_ratio", "number", false, NULL, NULL, 0, 1,
                                           "r = round(ratio * min(m, n))"));
  json_array_append_new(p, cz_schema_param("param_ratio", "number", false, NULL, NULL, 0, 1,
                                           "r = floor(ratio * m n / (m + n)): the factors hold "
                                           "that share of the matrix's parameters"));
  json_array_append_new(p, cz_schema_param("energy", "number", false, NULL, NULL, 0, 1,
                                           "smallest r keeping this share of sum sigma^2"));
  json_array_append_new(p, cz_schema_param("rank_multiple", "integer", false, json_integer(1), NULL,
                                           1, 4096, "round r up to a multiple (32 lets q8_0 "
                                           "take the A factor)"));
  json_array_append_new(p, cz_schema_param("only_if_smaller", "boolean", false, json_true(), NULL,
                                           NAN, NAN, "leave a matrix whole when r >= mn/(m+n)"));
  json_array_append_new(p, cz_schema_param("activation_aware", "boolean", false, json_false(),
                                           NULL, NAN, NAN,
                                           "scale input columns by E[x^2]^(alpha/2) before the "
                                           "SVD (needs the job's importance matrix)"));
  json_array_append_new(p, cz_schema_param("alpha", "number", false, json_real(1), NULL, 0, 4,
                                           "exponent of the activation-aware scaling"));
  if (randomized) {
    json_array_append_new(p, cz_schema_param("oversample", "integer", false, json_integer(10),
                                             NULL, 0, 1024, "extra sketch columns"));
    json_array_append_new(p, cz_schema_param("power_iters", "integer", false, json_integer(4), NULL,
                                             0, 32, "power (subspace) iterations; 4, as "
                                             "scikit-learn's default, keeps the error within 1 % "
                                             "of the optimum on matrices with a noise floor"));
    json_array_append_new(p, cz_schema_param("seed", "integer", false, json_integer(0), NULL, 0,
                                             9007199254740992.0, "seed of the Gaussian sketch"));
  }
  cz_schema_add_selectors(p);
  return json_pack("{s:o, s:[s, s]}", "params", p, "output_formats", "gguf", "safetensors");
}

static json_t *schema_svd(void) { return fact_schema(false); }
static json_t *schema_rsvd(void) { return fact_schema(true); }

#define FACT_ROW(ID, NAME, MATCH, PARSE, SUMMARY, SCHEMA)                                  \
  {                                                                                        \
    .id = ID, .name = NAME, .op = "factorize", .summary = SUMMARY, .match = MATCH,         \
    .parse = PARSE, .free_params = fact_free, .describe = fact_describe,                   \
    .supports_format = fact_supports, .kind = CZ_METHOD_TRANSFORM, .refuse = fact_refuse,  \
    .plan_check = fact_check, .transform = fact_transform,                                 \
    .untransform = fact_untransform, .layout_node = fact_layout_node, .free_undo = free,   \
    .schema = SCHEMA,                                                                      \
  }

const cz_method cz_m_factorize_svd =
    FACT_ROW(7, "factorize.svd", match_svd, parse_svd,
             "low rank W ~ A.B by truncated SVD (LAPACK sgesdd); rank, ratio or energy; "
             "optionally activation-aware",
             schema_svd);
const cz_method cz_m_factorize_rsvd =
    FACT_ROW(8, "factorize.rsvd", match_rsvd, parse_rsvd,
             "low rank W ~ A.B by randomized SVD (Halko et al.: oversampling, power "
             "iterations)",
             schema_rsvd);
