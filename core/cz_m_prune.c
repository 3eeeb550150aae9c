/* cz_m_prune: the "prune" methods (whole-tensor transforms): magnitude (per tensor or global),
 * N:M semi-structured, structured (whole rows or columns by L2 norm) and Wanda
 * (|W_ij| * sqrt(E[x_j^2]) per output row, also N:M); and the sparse storage layouts of
 * compressed-tensors (sparse-bitmask, sparse-24-bitmask) that a prune step may ask for.
 *
 * Exactness: a sparsity s over N candidates prunes exactly round(s * N) of them (the
 * smallest by score); ties at the threshold are broken by position, earlier first (row-major
 * order within a tensor, file order across tensors for scope "global"). N:M keeps in every
 * group of m consecutive inputs of a row the n largest scores, the earlier on a tie.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz_linalg.h"
#include "cz_method.h"

enum { P_MAGNITUDE, P_NM, P_STRUCTURED, P_WANDA };
enum { L_DENSE, L_BITMASK, L_24 };
static const char *const layout_names[] = {"dense", "sparse-bitmask", "sparse-24-bitmask", NULL};
static const char *const scope_names[] = {"tensor", "global", NULL};
static const char *const axis_names[] = {"rows", "cols", NULL};

extern const cz_method cz_m_prune_magnitude;

typedef struct {
  int kind;
  double sparsity;
  bool by_nm;          /* N:M groups instead of a sparsity */
  int n, m;            /* keep n of every m */
  bool global;
  int axis;            /* structured: 0 rows (output channels), 1 columns (inputs) */
  int layout;
} prune_params;

static void prune_free(void *p) { free(p); }

static bool method_is(const json_t *step, const char *name, bool is_default) {
  const json_t *m = json_object_get(step, "method");
  if (m == NULL) return is_default;
  return json_is_string(m) && strcmp(json_string_value(m), name) == 0;
}

static bool match_magnitude(const json_t *s) { return method_is(s, "magnitude", true); }
static bool match_nm(const json_t *s) { return method_is(s, "nm", false); }
static bool match_structured(const json_t *s) { return method_is(s, "structured", false); }
static bool match_wanda(const json_t *s) { return method_is(s, "wanda", false); }

static cz_err_code parse_nm(const json_t *step, int idx, prune_params *p, cz_error *err) {
  int64_t n, m;
  cz_err_code rc;
  if ((rc = cz_param_int(step, idx, "n", 1, 63, 2, &n, NULL, err)) ||
      (rc = cz_param_int(step, idx, "m", 2, 64, 4, &m, NULL, err)))
    return rc;
  if (n >= m)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].n must be less than steps[%d].m (n of every m are kept)", idx, idx);
  p->n = (int)n;
  p->m = (int)m;
  p->by_nm = true;
  return CZ_E_OK;
}

static cz_err_code parse_layout(const json_t *step, int idx, prune_params *p, cz_error *err) {
  cz_err_code rc = cz_param_enum(step, idx, "layout", layout_names, L_DENSE, &p->layout, err);
  if (rc) return rc;
  if (p->layout == L_24 && !(p->by_nm && p->m == 4 && p->n <= 2))
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].layout: \"sparse-24-bitmask\" needs n:m pruning with m = 4 and "
                      "n <= 2", idx);
  return CZ_E_OK;
}

static cz_err_code prune_parse_common(const json_t *step, int idx, int kind, void **out,
                                      cz_error *err) {
  static const char *const k_mag[] = {"op", "method", "sparsity", "scope", "layout", NULL};
  static const char *const k_nm[] = {"op", "method", "n", "m", "layout", NULL};
  static const char *const k_st[] = {"op", "method", "sparsity", "axis", NULL};
  static const char *const k_wa[] = {"op", "method", "sparsity", "n", "m", "layout", NULL};
  static const char *const *const keys[] = {k_mag, k_nm, k_st, k_wa};
  cz_err_code rc = cz_param_keys(step, idx, keys[kind], err);
  if (rc) return rc;
  prune_params *p = calloc(1, sizeof *p);
  if (!p) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  p->kind = kind;
  bool has_s = false;
  int scope = 0;
  switch (kind) {
    case P_MAGNITUDE:
      if ((rc = cz_param_real(step, idx, "sparsity", 0, false, 1, 0, &p->sparsity, &has_s, err)) ||
          (rc = cz_param_enum(step, idx, "scope", scope_names, 0, &scope, err)))
        break;
      p->global = scope == 1;
      if (!has_s)
        rc = cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].sparsity is required", idx);
      break;
    case P_NM:
      rc = parse_nm(step, idx, p, err);
      break;
    case P_STRUCTURED:
      if ((rc = cz_param_real(step, idx, "sparsity", 0, false, 1, 0, &p->sparsity, &has_s, err)) ||
          (rc = cz_param_enum(step, idx, "axis", axis_names, 0, &p->axis, err)))
        break;
      if (!has_s)
        rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d].sparsity (the share of rows or columns removed) is required",
                        idx);
      else if (p->sparsity >= 1)
        rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d].sparsity must be below 1 (at least one row or column stays)", idx);
      break;
    case P_WANDA: {
      bool has_n = json_object_get(step, "n") || json_object_get(step, "m");
      if ((rc = cz_param_real(step, idx, "sparsity", 0, false, 1, 0, &p->sparsity, &has_s, err)))
        break;
      if (has_n && has_s)
        rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d]: give either sparsity or n and m, not both", idx);
      else if (has_n)
        rc = parse_nm(step, idx, p, err);
      else if (!has_s)
        rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d].sparsity (or n and m) is required", idx);
      break;
    }
  }
  if (!rc && kind != P_STRUCTURED) rc = parse_layout(step, idx, p, err);
  if (rc) {
    free(p);
    return rc;
  }
  *out = p;
  return CZ_E_OK;
}

static cz_err_code parse_magnitude(const json_t *s, int i, void **o, cz_error *e) {
  return prune_parse_common(s, i, P_MAGNITUDE, o, e);
}
static cz_err_code parse_nm_row(const json_t *s, int i, void **o, cz_error *e) {
  return prune_parse_common(s, i, P_NM, o, e);
}
static cz_err_code parse_structured(const json_t *s, int i, void **o, cz_error *e) {
  return prune_parse_common(s, i, P_STRUCTURED, o, e);
}
static cz_err_code parse_wanda(const json_t *s, int i, void **o, cz_error *e) {
  return prune_parse_common(s, i, P_WANDA, o, e);
}

static json_t *prune_describe(const void *params) {
  const prune_params *p = params;
  static const char *const names[] = {"magnitude", "nm", "structured", "wanda"};
  json_t *d = json_pack("{s:s, s:s}", "op", "prune", "method", names[p->kind]);
  if (p->by_nm) {
    json_object_set_new(d, "n", json_integer(p->n));
    json_object_set_new(d, "m", json_integer(p->m));
  } else {
    json_object_set_new(d, "sparsity", json_real(p->sparsity));
  }
  if (p->kind == P_MAGNITUDE) json_object_set_new(d, "scope", json_string(scope_names[p->global]));
  if (p->kind == P_STRUCTURED) json_object_set_new(d, "axis", json_string(axis_names[p->axis]));
  else json_object_set_new(d, "layout", json_string(layout_names[p->layout]));
  return d;
}

static bool prune_supports(const void *params, cz_format f) {
  const prune_params *p = params;
  /* the compressed layouts are compressed-tensors' (safetensors); GGUF takes dense tensors */
  return p->layout == L_DENSE || f == CZ_FORMAT_SAFETENSORS;
}

static const char *prune_refuse(const void *params, const cz_wt *w, bool named) {
  const prune_params *p = params;
  const char *why = cz_method_wt_refuse(w, named, false);
  if (why) return why;
  if (p->by_nm && w->cols % p->m != 0) return "row length is not a multiple of m (n:m pruning)";
  if ((p->kind == P_STRUCTURED || p->layout != L_DENSE) && w->n_dims != 2)
    return "needs a 2-D matrix";
  if (p->kind == P_WANDA && w->importance == NULL)
    return "no importance data for this tensor (wanda)";
  return NULL;
}

static cz_err_code wanda_check(const void *params, const cz_plan_ctx *ctx, cz_error *err) {
  if (ctx->importance == NULL)
    return cz_err_set(err, CZ_E_INVALID_RECIPE,
                      "steps[%d]: wanda needs the job's importance matrix (calibration)",
                      ctx->step_index);
  return CZ_E_OK;
}

/* ---- masks ---- */

static inline uint32_t abs_key(float v) {
  union {
    float f;
    uint32_t u;
  } x = {v};
  return x.u & 0x7fffffffu;  /* |v| as bits: monotone for non-negative floats */
}

/* Zero the k smallest |w| of x[0..n) (ties by position); keys: scratch of n. With a
 * global threshold t (ties quota tq), uses it instead of selecting. */
static void mask_magnitude(float *x, size_t n, size_t k, uint32_t *keys, bool global, uint32_t t,
                           size_t tq) {
  size_t quota = tq;
  if (!global) {
    if (k == 0) return;
    for (size_t i = 0; i < n; i++) keys[i] = abs_key(x[i]);
    size_t below;
    t = cz_select_u32(keys, n, k >= n ? n - 1 : k, &below);
    if (k >= n) {  /* everything */
      memset(x, 0, sizeof(float) * n);
      return;
    }
    quota = k - below;
  }
  for (size_t i = 0; i < n; i++) {
    uint32_t a = abs_key(x[i]);
    if (a < t) x[i] = 0;
    else if (a == t && quota > 0) {
      x[i] = 0;
      quota--;
    }
  }
}

/* In every group of m of row (len cols), keep the n largest scores (earlier on a tie). */
static void mask_nm_row(float *row, const double *score, int64_t cols, int n, int m) {
  for (int64_t g = 0; g + m <= cols; g += m) {
    bool keep[64];
    for (int a = 0; a < m; a++) {
      int better = 0;
      for (int b = 0; b < m; b++)
        better += score[g + b] > score[g + a] || (score[g + b] == score[g + a] && b < a);
      keep[a] = better < n;
    }
    for (int a = 0; a < m; a++)
      if (!keep[a]) row[g + a] = 0;
  }
}

/* Zero the k lowest scores of a row (ties by position); tmp: scratch of cols doubles. */
static void mask_lowest_row(float *row, const double *score, int64_t cols, int64_t k, double *tmp) {
  if (k <= 0) return;
  if (k >= cols) {
    memset(row, 0, sizeof(float) * (size_t)cols);
    return;
  }
  size_t below;
  double t = cz_select_f64(score, (size_t)cols, (size_t)k, tmp, &below);
  size_t quota = (size_t)k - below;
  for (int64_t j = 0; j < cols; j++) {
    if (score[j] < t) row[j] = 0;
    else if (score[j] == t && quota > 0) {
      row[j] = 0;
      quota--;
    }
  }
}

static size_t count_zeros(const float *x, size_t n) {
  size_t z = 0;
  for (size_t i = 0; i < n; i++) z += x[i] == 0.0f;
  return z;
}

/* ---- global magnitude threshold ---- */

typedef struct {
  uint32_t t;         /* |w| bits at the threshold */
  size_t *tie_quota;  /* per input tensor: how many |w| == t it prunes */
  uint64_t k, total;
} global_state;

static void global_free(void *g) {
  global_state *s = g;
  if (!s) return;
  free(s->tie_quota);
  free(s);
}

/* Visit every |w| key of the selected tensors in file order, in chunks. */
typedef void (*key_visitor)(void *ud, size_t tensor, const uint32_t *keys, size_t n);

static cz_err_code visit_keys(const cz_model *m, const bool *sel, key_visitor fn, void *ud,
                              cz_error *err) {
  enum { CHUNK = 1 << 16 };
  float *x = malloc(sizeof(float) * CHUNK);
  uint32_t *k = malloc(sizeof(uint32_t) * CHUNK);
  if (!x || !k) {
    free(x);
    free(k);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  for (size_t i = 0; i < m->n_tensors; i++) {
    if (!sel[i]) continue;
    const cz_tensor *t = &m->tensors[i];
    const cz_type_traits *tr = cz_type_get(t->type);
    size_t esz = tr->type_size;
    size_t n = (size_t)cz_tensor_nelements(t);
    for (size_t done = 0; done < n; done += CHUNK) {
      size_t c = n - done < CHUNK ? n - done : CHUNK;
      tr->to_f32(t->data + done * esz, x, (int64_t)c);
      for (size_t j = 0; j < c; j++) k[j] = abs_key(x[j]);
      fn(ud, i, k, c);
    }
  }
  free(x);
  free(k);
  return CZ_E_OK;
}

typedef struct {
  size_t *hist;      /* 65536 buckets */
  bool low;          /* second pass: low 16 bits of keys whose high 16 bits are hi */
  uint32_t hi, t;
  size_t *eq;        /* third pass: per tensor count of keys == t */
} gpass;

static void gvisit(void *ud, size_t tensor, const uint32_t *keys, size_t n) {
  gpass *g = ud;
  if (g->eq) {
    size_t c = 0;
    for (size_t j = 0; j < n; j++) c += keys[j] == g->t;
    g->eq[tensor] += c;
  } else if (!g->low) {
    for (size_t j = 0; j < n; j++) g->hist[keys[j] >> 16]++;
  } else {
    for (size_t j = 0; j < n; j++)
      if ((keys[j] >> 16) == g->hi) g->hist[keys[j] & 0xffff]++;
  }
}

static cz_err_code global_prepare(const void *params, const cz_model *m, const bool *sel,
                                  void **out, cz_error *err) {
  const prune_params *p = params;
  global_state *s = calloc(1, sizeof *s);
  gpass g = {0};
  g.hist = calloc((size_t)1 << 16, sizeof(size_t));
  if (s) s->tie_quota = calloc(m->n_tensors ? m->n_tensors : 1, sizeof(size_t));
  if (!s || !g.hist || !s->tie_quota) {
    free(g.hist);
    global_free(s);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  for (size_t i = 0; i < m->n_tensors; i++)
    if (sel[i]) s->total += (uint64_t)cz_tensor_nelements(&m->tensors[i]);
  s->k = (uint64_t)llround(p->sparsity * (double)s->total);
  if (s->k > s->total) s->k = s->total;
  cz_err_code rc = CZ_E_OK;
  if (s->k == 0) {
    s->t = 0;  /* nothing below 0, quota 0: nothing pruned */
    goto done;
  }
  /* the (k-1)-th smallest key is the last one pruned: t = it, below = keys < t */
  uint64_t want = s->k - 1, acc = 0;
  if ((rc = visit_keys(m, sel, gvisit, &g, err))) goto done;
  for (uint32_t b = 0; b < (1u << 16); b++) {
    if (acc + g.hist[b] > want) {
      g.hi = b;
      break;
    }
    acc += g.hist[b];
  }
  memset(g.hist, 0, sizeof(size_t) << 16);
  g.low = true;
  if ((rc = visit_keys(m, sel, gvisit, &g, err))) goto done;
  uint32_t lo = 0;
  for (uint32_t b = 0; b < (1u << 16); b++) {
    if (acc + g.hist[b] > want) {
      lo = b;
      break;
    }
    acc += g.hist[b];
  }
  s->t = g.hi << 16 | lo;
  /* acc = keys strictly below t; the rest of k are ties at t, taken in file order */
  g.t = s->t;
  g.eq = s->tie_quota;
  if ((rc = visit_keys(m, sel, gvisit, &g, err))) goto done;
  uint64_t left = s->k - acc;
  for (size_t i = 0; i < m->n_tensors; i++) {
    size_t e = s->tie_quota[i];
    s->tie_quota[i] = e < left ? e : (size_t)left;
    left -= s->tie_quota[i];
  }
done:
  free(g.hist);
  if (rc) {
    global_free(s);
    return rc;
  }
  *out = s;
  return CZ_E_OK;
}

/* ---- transforms ---- */

typedef struct {
  int axis;
  int64_t rows, cols;  /* of the input */
} struct_undo;

static void fill_out_like(cz_wt *o, const cz_wt *in) {
  memset(o, 0, sizeof *o);
  snprintf(o->name, sizeof o->name, "%s", in->name);
  o->n_dims = in->n_dims;
  memcpy(o->ne, in->ne, sizeof o->ne);
  o->rows = in->rows;
  o->cols = in->cols;
  o->importance = in->importance;
  o->importance_rows = in->importance_rows;
}

static cz_err_code transform_mask(const prune_params *p, const cz_wctx *ctx, const cz_wt *in,
                                  cz_wt *out, int *n_out, json_t *info, cz_error *err) {
  const size_t n = (size_t)(in->rows * in->cols);
  fill_out_like(&out[0], in);
  float *x = malloc(sizeof(float) * n);
  if (!x) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  memcpy(x, in->f, sizeof(float) * n);
  cz_err_code rc = CZ_E_OK;
  if (p->kind == P_MAGNITUDE && !p->by_nm) {
    uint32_t *keys = p->global ? NULL : malloc(sizeof(uint32_t) * n);
    if (!p->global && !keys) {
      free(x);
      return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    }
    const global_state *g = ctx->global;
    size_t k = (size_t)llround(p->sparsity * (double)n);
    mask_magnitude(x, n, k > n ? n : k, keys, p->global, g ? g->t : 0,
                   g ? g->tie_quota[ctx->index] : 0);
    free(keys);
  } else {
    double *score = malloc(sizeof(double) * (size_t)in->cols);
    double *tmp = malloc(sizeof(double) * (size_t)in->cols);
    if (!score || !tmp) {
      rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    } else {
      int64_t k = llround(p->sparsity * (double)in->cols);
      for (int64_t r = 0; r < in->rows; r++) {
        float *row = x + r * in->cols;
        const float *imp = cz_wt_importance_row(in, r);
        for (int64_t j = 0; j < in->cols; j++)
          score[j] = p->kind == P_WANDA ? fabs((double)row[j]) * sqrt((double)imp[j])
                                        : fabs((double)row[j]);
        if (p->by_nm) mask_nm_row(row, score, in->cols, p->n, p->m);
        else mask_lowest_row(row, score, in->cols, k, tmp);
      }
    }
    free(score);
    free(tmp);
  }
  if (rc) {
    free(x);
    return rc;
  }
  out[0].f = x;
  out[0].sparse = true;
  if (p->layout != L_DENSE) {
    out[0].layout = &cz_m_prune_magnitude;  /* any prune row encodes the layouts */
    out[0].layout_params = p;
  }
  *n_out = 1;
  json_object_set_new(info, "sparsity", json_real((double)count_zeros(x, n) / (double)n));
  return CZ_E_OK;
}

typedef struct {
  double norm;
  int64_t idx;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  if (x->norm != y->norm) return x->norm > y->norm ? -1 : 1;  /* larger first */
  return x->idx < y->idx ? -1 : x->idx > y->idx;             /* earlier first */
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static cz_err_code transform_structured(const prune_params *p, const cz_wt *in, cz_wt *out,
                                        int *n_out, void **undo, json_t *info, cz_error *err) {
  const int64_t R = in->rows, C = in->cols, cnt = p->axis == 0 ? R : C;
  int64_t remove = llround(p->sparsity * (double)cnt);
  if (remove >= cnt) remove = cnt - 1;
  const int64_t keep = cnt - remove;
  ranked *rk = malloc(sizeof(ranked) * (size_t)cnt);
  int64_t *kept = malloc(sizeof(int64_t) * (size_t)keep);
  float *x = malloc(sizeof(float) * (size_t)(p->axis == 0 ? keep * C : R * keep));
  struct_undo *u = malloc(sizeof *u);
  if (!rk || !kept || !x || !u) {
    free(rk);
    free(kept);
    free(x);
    free(u);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  for (int64_t i = 0; i < cnt; i++) rk[i] = (ranked){0, i};
  for (int64_t r = 0; r < R; r++)
    for (int64_t c = 0; c < C; c++) {
      double v = in->f[r * C + c];
      rk[p->axis == 0 ? r : c].norm += v * v;
    }
  qsort(rk, (size_t)cnt, sizeof *rk, cmp_ranked);
  for (int64_t i = 0; i < keep; i++) kept[i] = rk[i].idx;
  qsort(kept, (size_t)keep, sizeof *kept, cmp_i64);
  free(rk);
  if (p->axis == 0) {
    for (int64_t i = 0; i < keep; i++)
      memcpy(x + i * C, in->f + kept[i] * C, sizeof(float) * (size_t)C);
  } else {
    for (int64_t r = 0; r < R; r++)
      for (int64_t i = 0; i < keep; i++) x[r * keep + i] = in->f[r * C + kept[i]];
  }
  fill_out_like(&out[0], in);
  out[0].f = x;
  if (p->axis == 0) {
    out[0].rows = keep;
    out[0].ne[1] = keep;
  } else {
    out[0].cols = keep;
    out[0].ne[0] = keep;
    out[0].importance = NULL;  /* the columns moved */
  }
  memset(&out[1], 0, sizeof out[1]);
  if (!cz_suffixed_name(out[1].name, sizeof out[1].name, in->name, ".",
                        p->axis == 0 ? "kept_rows" : "kept_cols")) {
    free(x);
    free(kept);
    free(u);
    return cz_err_set(err, CZ_E_UNSUPPORTED_INPUT, "tensor %s: name too long", in->name);
  }
  out[1].n_dims = 1;
  out[1].ne[0] = keep;
  out[1].ne[1] = out[1].ne[2] = out[1].ne[3] = 1;
  out[1].rows = 1;
  out[1].cols = keep;
  out[1].raw_type = CZ_TYPE_I64;
  out[1].raw = (uint8_t *)kept;  /* little-endian host, as everywhere in compressd */
  out[1].raw_bytes = sizeof(int64_t) * (size_t)keep;
  *n_out = 2;
  u->axis = p->axis;
  u->rows = R;
  u->cols = C;
  *undo = u;
  json_object_set_new(info, p->axis == 0 ? "rows_kept" : "cols_kept", json_integer(keep));
  json_object_set_new(info, "sparsity", json_real((double)remove / (double)cnt));
  json_object_set_new(info, "shape_changed", json_true());
  return CZ_E_OK;
}

static cz_err_code prune_transform(const void *params, const cz_wctx *ctx, const cz_wt *in,
                                   cz_wt *out, int *n_out, void **undo, json_t *info,
                                   const char **note, cz_error *err) {
  const prune_params *p = params;
  *n_out = 0;
  *undo = NULL;
  if (p->kind == P_STRUCTURED) return transform_structured(p, in, out, n_out, undo, info, err);
  return transform_mask(p, ctx, in, out, n_out, info, err);
}

static void prune_untransform(const void *params, const void *undo, const cz_wt *in,
                              const cz_wt *out, const double *const *outs, int n_out,
                              double *y) {
  const prune_params *p = params;
  if (p->kind != P_STRUCTURED) {
    memcpy(y, outs[0], sizeof(double) * (size_t)(in->rows * in->cols));
    return;
  }
  const int64_t *kept = (const int64_t *)out[1].raw;
  const int64_t keep = out[1].cols, C = in->cols;
  memset(y, 0, sizeof(double) * (size_t)(in->rows * C));
  if (p->axis == 0) {
    for (int64_t i = 0; i < keep; i++)
      memcpy(y + kept[i] * C, outs[0] + i * C, sizeof(double) * (size_t)C);
  } else {
    for (int64_t r = 0; r < in->rows; r++)
      for (int64_t i = 0; i < keep; i++) y[r * C + kept[i]] = outs[0][r * keep + i];
  }
}

static json_t *prune_layout_node(const void *params, const void *undo, const cz_wt *in,
                                 const cz_wt *out, json_t **children, int n_out) {
  const prune_params *p = params;
  if (p->kind != P_STRUCTURED) return children[0];  /* a mask does not change the layout */
  json_decref(children[1]);                       /* the raw kept tensor: named below */
  return json_pack("{s:s, s:s, s:I, s:s, s:o}", "transform",
                   p->axis == 0 ? "select_rows" : "select_cols", "axis",
                   axis_names[p->axis], "size", (json_int_t)(p->axis == 0 ? in->rows : in->cols),
                   "kept", out[1].name, "child", children[0]);
}

/* ---- sparse layouts (compressed-tensors) ---- */

static void set_out(cz_wenc *e, int k, const char *name, cz_type type, int n_dims,
                    int64_t ne0, int64_t ne1, uint8_t *data, uint64_t nbytes) {
  snprintf(e->t[k].name, sizeof e->t[k].name, "%s", name);
  e->t[k].type = type;
  e->t[k].n_dims = n_dims;
  e->t[k].ne[0] = ne0;
  e->t[k].ne[1] = ne1;
  e->t[k].ne[2] = e->t[k].ne[3] = 1;
  e->t[k].data = data;
  e->t[k].nbytes = nbytes;
}

static cz_err_code sparse_encode(const void *params, const cz_wctx *ctx, const cz_wt *in,
                                 cz_wenc *enc, double *y, json_t *info, json_t **node,
                                 cz_error *err) {
  const prune_params *p = params;
  const cz_type_traits *tr = cz_type_get(ctx->dense_type);
  const int64_t R = in->rows, C = in->cols, n = R * C, bpr = (C + 7) / 8;
  const size_t esz = tr->type_size;
  /* the tensor as it would be stored densely, and its values back: zero is decided there,
   * as compressed-tensors decides it on the dtype tensor */
  uint8_t *dense = malloc(esz * (size_t)n);
  float *back = malloc(sizeof(float) * (size_t)n);
  uint8_t *bits = calloc((size_t)(R * bpr) + 1, 1);
  int64_t *shape = malloc(2 * sizeof(int64_t));
  int64_t *offs = p->layout == L_BITMASK ? malloc(sizeof(int64_t) * (size_t)(R ? R : 1)) : NULL;
  uint8_t *vals = NULL;
  cz_err_code rc = CZ_E_OK;
  if (!dense || !back || !bits || !shape || (p->layout == L_BITMASK && !offs)) {
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    goto fail;
  }
  tr->from_f32(in->f, dense, n);
  tr->to_f32(dense, back, n);
  int64_t nnz = 0;
  if (p->layout == L_24) {
    /* exactly 2 of every 4: the non-zeros, completed with the first zeros of the group */
    for (int64_t r = 0; r < R; r++)
      for (int64_t g = 0; g < C; g += 4) {
        int nz = 0;
        for (int a = 0; a < 4; a++) nz += back[r * C + g + a] != 0.0f;
        if (nz > 2) {
          rc = cz_err_set(err, CZ_E_INTERNAL, "tensor %s: row %lld is not 2:4 sparse", in->name,
                          (long long)r);
          goto fail;
        }
        int fill = 2 - nz;
        for (int a = 0; a < 4; a++) {
          int64_t j = g + a;
          bool on = back[r * C + j] != 0.0f || (fill > 0 && (fill--, true));
          if (on) bits[r * bpr + j / 8] |= (uint8_t)(1u << (j % 8));
        }
      }
    nnz = n / 2;
  } else {
    for (int64_t r = 0; r < R; r++) {
      offs[r] = nnz;
      for (int64_t j = 0; j < C; j++)
        if (back[r * C + j] != 0.0f) {
          bits[r * bpr + j / 8] |= (uint8_t)(1u << (j % 8));
          nnz++;
        }
    }
  }
  vals = malloc(esz * (size_t)(nnz ? nnz : 1));
  if (!vals) {
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    goto fail;
  }
  int64_t v = 0;
  for (int64_t i = 0; i < n; i++) {
    bool on = bits[(i / C) * bpr + (i % C) / 8] >> ((i % C) % 8) & 1;
    if (on) memcpy(vals + esz * (size_t)v++, dense + esz * (size_t)i, esz);
    y[i] = on ? (double)back[i] : 0.0;
  }
  shape[0] = R;
  shape[1] = C;
  char nm[4][CZ_WT_NAME];
  if (!cz_derived_name(nm[0], sizeof nm[0], in->name, "compressed", false) ||
      !cz_derived_name(nm[1], sizeof nm[1], in->name, "bitmask", false) ||
      !cz_derived_name(nm[2], sizeof nm[2], in->name, "shape", false) ||
      !cz_derived_name(nm[3], sizeof nm[3], in->name, "row_offsets", false)) {
    rc = cz_err_set(err, CZ_E_UNSUPPORTED_INPUT, "tensor %s: name too long", in->name);
    goto fail;
  }
  if (p->layout == L_24) {
    set_out(enc, 0, nm[0], ctx->dense_type, 2, C / 2, R, vals, esz * (size_t)nnz);
    set_out(enc, 1, nm[1], CZ_TYPE_U8, 2, bpr, R, bits, (uint64_t)(R * bpr));
    set_out(enc, 2, nm[2], CZ_TYPE_I64, 2, 1, 2, (uint8_t *)shape, 2 * sizeof(int64_t));
    enc->n = 3;
    *node = json_pack("{s:s, s:s, s:s, s:s, s:s}", "encoding", "sparse-24-bitmask", "type",
                      tr->name, "compressed", nm[0], "bitmask", nm[1], "shape", nm[2]);
  } else {
    set_out(enc, 0, nm[0], ctx->dense_type, 1, nnz, 1, vals, esz * (size_t)nnz);
    set_out(enc, 1, nm[1], CZ_TYPE_U8, 2, bpr, R, bits, (uint64_t)(R * bpr));
    set_out(enc, 2, nm[2], CZ_TYPE_I64, 1, 2, 1, (uint8_t *)shape, 2 * sizeof(int64_t));
    set_out(enc, 3, nm[3], CZ_TYPE_I64, 1, R, 1, (uint8_t *)offs, sizeof(int64_t) * (size_t)R);
    enc->n = 4;
    *node = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "encoding", "sparse-bitmask", "type",
                      tr->name, "compressed", nm[0], "bitmask", nm[1], "shape", nm[2],
                      "row_offsets", nm[3]);
  }
  json_object_set_new(info, "nonzeros", json_integer(nnz));
  free(dense);
  free(back);
  return CZ_E_OK;
fail:
  free(dense);
  free(back);
  free(bits);
  free(shape);
  free(offs);
  free(vals);
  return rc;
}

/* ---- schemas (GET /v1/methods) ---- */

static json_t *layout_param(void) {
  return cz_schema_param("layout", "string", false, json_string("dense"),
                         json_pack("[s, s, s]", "dense", "sparse-bitmask", "sparse-24-bitmask"),
                         NAN, NAN,
                         "dense: zeros in place; sparse-bitmask / sparse-24-bitmask: "
                         "compressed-tensors' layouts (safetensors only, last step, the latter "
                         "for n:m with m = 4, n <= 2)");
}

static json_t *method_param(const char *name, bool required) {
  return cz_schema_param("method", "string", required, required ? NULL : json_string(name),
                         json_pack("[s]", name), NAN, NAN, "prune method");
}

static json_t *nm_params(json_t *params, bool required) {
  json_array_append_new(params, cz_schema_param("n", "integer", required, json_integer(2), NULL, 1,
                                                63, "weights kept in every group of m"));
  json_array_append_new(params, cz_schema_param("m", "integer", required, json_integer(4), NULL, 2,
                                                64, "group length along the input dimension"));
  return params;
}

static json_t *schema_of(json_t *params, bool gguf) {
  cz_schema_add_selectors(params);
  return json_pack("{s:o, s:o}", "params", params, "output_formats",
                   gguf ? json_pack("[s, s]", "gguf", "safetensors") : json_pack("[s]", "safetensors"));
}

static json_t *schema_magnitude(void) {
  json_t *p = json_array();
  json_array_append_new(p, method_param("magnitude", false));
  json_array_append_new(p, cz_schema_param("sparsity", "number", true, NULL, NULL, 0, 1,
                                           "share of weights set to zero (exactly round(s * n); "
                                           "ties at the threshold: earlier positions first)"));
  json_array_append_new(p, cz_schema_param("scope", "string", false, json_string("tensor"),
                                           json_pack("[s, s]", "tensor", "global"), NAN, NAN,
                                           "tensor: each tensor to the sparsity; global: one "
                                           "threshold over every selected tensor (first step only)"));
  json_array_append_new(p, layout_param());
  return schema_of(p, true);
}

static json_t *schema_nm(void) {
  json_t *p = json_array();
  json_array_append_new(p, method_param("nm", true));
  nm_params(p, false);
  json_array_append_new(p, layout_param());
  return schema_of(p, true);
}

static json_t *schema_structured(void) {
  json_t *p = json_array();
  json_array_append_new(p, method_param("structured", true));
  json_array_append_new(p, cz_schema_param("sparsity", "number", true, NULL, NULL, 0, 1,
                                           "share of rows (or columns) removed, below 1"));
  json_array_append_new(p, cz_schema_param("axis", "string", false, json_string("rows"),
                                           json_pack("[s, s]", "rows", "cols"), NAN, NAN,
                                           "rows: output channels; cols: input columns; the kept "
                                           "indices are stored as <name>.kept_rows / kept_cols"));
  return schema_of(p, true);
}

static json_t *schema_wanda(void) {
  json_t *p = json_array();
  json_array_append_new(p, method_param("wanda", true));
  json_array_append_new(p, cz_schema_param("sparsity", "number", false, NULL, NULL, 0, 1,
                                           "share pruned in every output row (or give n and m)"));
  nm_params(p, false);
  json_array_append_new(p, layout_param());
  json_t *s = schema_of(p, true);
  json_object_set_new(s, "requires_importance_matrix", json_true());
  return s;
}

#define PRUNE_ROW(ID, NAME, MATCH, PARSE, SUMMARY, CHECK, GLOBAL, SCHEMA)               \
  {                                                                                     \
    .id = ID, .name = NAME, .op = "prune", .summary = SUMMARY, .match = MATCH,          \
    .parse = PARSE, .free_params = prune_free, .describe = prune_describe,              \
    .supports_format = prune_supports, .kind = CZ_METHOD_TRANSFORM,                     \
    .refuse = prune_refuse, .plan_check = CHECK, .global_prepare = GLOBAL,              \
    .global_free = global_free, .transform = prune_transform,                          \
    .untransform = prune_untransform, .layout_node = prune_layout_node,                 \
    .free_undo = free, .encode_tensor = sparse_encode, .schema = SCHEMA,                \
  }

/* The pipeline calls global_prepare once for the step; only "scope": "global" needs it. */
static cz_err_code magnitude_global(const void *params, const cz_model *m, const bool *sel,
                                    void **out, cz_error *err) {
  const prune_params *p = params;
  if (!p->global) {
    *out = NULL;
    return CZ_E_OK;
  }
  return global_prepare(params, m, sel, out, err);
}

const cz_method cz_m_prune_magnitude = PRUNE_ROW(
    3, "prune.magnitude", match_magnitude, parse_magnitude,
    "zero the smallest |w| (exact count), per tensor or across the selected tensors", NULL,
    magnitude_global, schema_magnitude);
const cz_method cz_m_prune_nm = PRUNE_ROW(
    4, "prune.nm", match_nm, parse_nm_row,
    "N:M semi-structured: keep the n largest |w| of every m consecutive inputs", NULL, NULL,
    schema_nm);
const cz_method cz_m_prune_structured = PRUNE_ROW(
    5, "prune.structured", match_structured, parse_structured,
    "remove whole output rows or input columns with the smallest L2 norm (shape changes)", NULL,
    NULL, schema_structured);
const cz_method cz_m_prune_wanda = PRUNE_ROW(
    6, "prune.wanda", match_wanda, parse_wanda,
    "Wanda: prune by |w| * sqrt(E[x^2]) per output row (or n:m), from the importance matrix",
    wanda_check, NULL, schema_wanda);
