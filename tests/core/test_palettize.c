/* test_palettize: exact 1-D k-means against brute force (every labelling of small inputs) and
 * never worse than Lloyd's on large ones; palettized artifacts decoded here bit by bit (LUT
 * and packed indices), every weight at its nearest codebook entry, errors recomputed. */
#include "methods_util.h"

#include "cz_linalg.h"

/* Minimum weighted SSE over all k^n labellings (labels may leave clusters empty). */
static double brute_force(const double *x, const double *w, int n, int k) {
  int lab[16] = {0};
  double best = INFINITY;
  for (;;) {
    double sw[8] = {0}, sx[8] = {0}, sse = 0;
    for (int i = 0; i < n; i++) sw[lab[i]] += w[i], sx[lab[i]] += w[i] * x[i];
    for (int i = 0; i < n; i++) {
      double d = x[i] - sx[lab[i]] / sw[lab[i]];
      sse += w[i] * d * d;
    }
    best = fmin(best, sse);
    int p = 0;
    while (p < n && ++lab[p] == k) lab[p++] = 0;
    if (p == n) break;
  }
  return best;
}

static void test_exact_vs_brute_force(void) {
  t_seed(5);
  size_t bad = 0, cases = 0;
  for (int trial = 0; trial < 300; trial++) {
    int n = 1 + (int)(t_unit() * 8), k = 1 + (int)(t_unit() * 4);
    double x[16], w[16], c[8];
    for (int i = 0; i < n; i++) x[i] = (i ? x[i - 1] : -1) + 0.01 + t_unit() * (trial % 3 ? 1 : 0.05);
    for (int i = 0; i < n; i++) w[i] = 1 + (int)(t_unit() * 5);
    int used;
    double got = cz_kmeans1d_exact(x, w, (size_t)n, k, c, &used);
    double want = brute_force(x, w, n, k);
    double recomputed = cz_kmeans1d_cost(x, w, (size_t)n, c, used);
    cases++;
    if (fabs(got - want) > 1e-9 * fmax(1, want) || fabs(recomputed - want) > 1e-9 * fmax(1, want) ||
        used != (n < k ? n : k)) {
      if (bad < 5) printf("# n=%d k=%d: dp %.17g, brute force %.17g, centroids' cost %.17g\n", n, k, got, want, recomputed);
      bad++;
    }
    for (int i = 1; i < used; i++) bad += c[i] <= c[i - 1];
  }
  printf("# %zu random cases against brute force\n", cases);
  CHECK_EQ_INT(bad, 0);
}

static void test_exact_not_worse_than_lloyd(void) {
  const size_t n = 20000;
  float *v = malloc(sizeof(float) * n);
  t_seed(17);
  for (size_t i = 0; i < n; i++) v[i] = (float)(t_normal() * (i % 3 ? 1 : 4));
  double *x, *w;
  size_t u = cz_unique_counts(v, n, &x, &w);
  CHECK(u > 19000 && u <= n);
  static const int ks[] = {2, 4, 16, 64, 256};
  double c1[256], c2[256], c3[256];
  for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
    int u1, u2, u3;
    double e = cz_kmeans1d_exact(x, w, u, ks[i], c1, &u1);
    double best_l = INFINITY;
    for (uint64_t seed = 0; seed < 3; seed++) {
      double l = cz_kmeans1d_lloyd(x, w, u, ks[i], seed, 300, c2, &u2);
      double l2 = cz_kmeans1d_lloyd(x, w, u, ks[i], seed, 300, c3, &u3);
      CHECK(l == l2 && memcmp(c2, c3, sizeof(double) * (size_t)u2) == 0); /* deterministic */
      CHECK(e <= l * (1 + 1e-12));
      best_l = fmin(best_l, l);
    }
    printf("# k=%d over %zu values: exact %.6g, best Lloyd of 3 seeds %.6g (+%.3f %%)\n", ks[i], u, e,
           best_l, 100 * (best_l / e - 1));
  }
  free(x);
  free(w);
  free(v);
}

/* Index j of a row packed LSB-first at `bits` bits each. */
static unsigned get_bits(const uint8_t *row, int64_t j, int bits) {
  unsigned v = 0;
  for (int b = 0; b < bits; b++) {
    uint64_t p = (uint64_t)j * (uint64_t)bits + (uint64_t)b;
    v |= (unsigned)(row[p / 8] >> (p % 8) & 1) << b;
  }
  return v;
}

/* Decode a palettized tensor; check shapes, nearest-entry assignment, zero padding bits;
 * return the values (rows x cols, double). */
static double *decode_palette(const cz_model *out, const char *name, int64_t rows, int64_t cols,
                              int bits, int64_t group, const float *w) {
  char ln[256], in_[256];
  snprintf(ln, sizeof ln, "%s_lut", name);
  snprintf(in_, sizeof in_, "%s_indices", name);
  const cz_tensor *tl = NULL, *ti = NULL;
  const uint8_t *lb = t_bytes(out, ln, &tl), *ib = t_bytes(out, in_, &ti);
  if (!lb || !ib) return NULL;
  const int K = 1 << bits;
  const int64_t ng = (rows + group - 1) / group, rb = (cols * bits + 7) / 8;
  CHECK(tl->type == CZ_TYPE_F32 && tl->ne[0] == K && tl->ne[1] == ng);
  CHECK(ti->type == CZ_TYPE_U8 && ti->ne[0] == rb && ti->ne[1] == rows);
  CHECK(cz_model_find(out, name) == NULL);
  if (!(tl->ne[0] == K && tl->ne[1] == ng && ti->ne[0] == rb && ti->ne[1] == rows)) return NULL;
  float *lut = malloc(sizeof(float) * (size_t)(K * ng));
  memcpy(lut, lb, sizeof(float) * (size_t)(K * ng));
  double *y = malloc(sizeof(double) * (size_t)(rows * cols));
  size_t bad = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float *L = lut + (r / group) * K;
    /* the entries this group uses */
    bool used[256] = {0};
    for (int64_t rr = (r / group) * group; rr < rows && rr < (r / group + 1) * group; rr++)
      for (int64_t j = 0; j < cols; j++) used[get_bits(ib + rr * rb, j, bits)] = true;
    for (int64_t j = 0; j < cols; j++) {
      unsigned k = get_bits(ib + r * rb, j, bits);
      y[r * cols + j] = L[k];
      double d = fabs((double)w[r * cols + j] - L[k]);
      for (int e = 0; e < K; e++)
        if (used[e] && fabs((double)w[r * cols + j] - L[e]) < d) bad++;
    }
    for (int64_t p = cols * bits; p < rb * 8; p++) bad += ib[r * rb + p / 8] >> (p % 8) & 1;
  }
  if (bad) printf("# %s: %zu weights not at their nearest entry or stray padding bits\n", name, bad);
  CHECK_EQ_INT(bad, 0);
  free(lut);
  return y;
}

static void test_palettize_tensor(void) {
  t_tensor t = {"blk.0.ffn_up.weight", CZ_TYPE_F16, 64, 96, NULL};
  t_fill_normal(&t, 0.03, 51);
  cz_model *in = t_model("pal.safetensors", &t, 1);
  job j;
  if (in && run_job(in, "{\"steps\":[{\"op\":\"palettize\",\"bits\":4}]}", "pal.out.safetensors", &j) == CZ_E_OK) {
    double *y = decode_palette(j.out, t.name, 64, 96, 4, 64, t.v);
    const json_t *rt = report_tensor(j.report, t.name);
    double mx = NAN, rel = y ? rel_l2_of(t.v, y, 64 * 96, &mx) : NAN;
    CHECK_NEAR(rnum(rt, "rel_l2"), rel, 1e-9);
    CHECK_NEAR(rnum(rt, "max_abs_err"), mx, 1e-9);
    CHECK_EQ_INT(rnum(rt, "codebook_size"), 16);
    CHECK_EQ_STR(json_string_value(json_object_get(rt, "output_type")), "palette4");
    CHECK_EQ_STR(json_string_value(json_object_get(rt, "kmeans")), "exact");
    CHECK_EQ_INT(rnum(rt, "bytes_out"), 16 * 4 + 64 * 48);
    /* optimal: no worse than Lloyd from any of 5 starts on the same values */
    double *x, *w;
    size_t u = cz_unique_counts(t.v, 64 * 96, &x, &w);
    double sse = 0, c[16];
    for (int64_t i = 0; y && i < 64 * 96; i++) sse += (t.v[i] - y[i]) * (t.v[i] - y[i]);
    for (uint64_t seed = 0; seed < 5; seed++) {
      int used;
      double l = cz_kmeans1d_lloyd(x, w, u, 16, seed, 1000, c, &used);
      CHECK(sse <= l * (1 + 1e-6));
    }
    printf("# 4-bit per-tensor palette of a 64x96 F16 Gaussian: rel_l2 %.4f, SNR %.2f dB\n", rel,
           rnum(rt, "snr_db"));
    free(x);
    free(w);
    free(y);
  } else {
    job_ok(&j);
  }
  job_free(&j);
  cz_model_close(in);
  free(t.v);
}

/* odd shapes, every bit width, groups of rows (the last one short), channel granularity */
static void test_bits_and_groups(void) {
  t_tensor t = {"blk.0.attn_v.weight", CZ_TYPE_F32, 23, 37, NULL};
  t_fill_normal(&t, 1, 61);
  cz_model *in = t_model("bits.safetensors", &t, 1);
  static const int bits[] = {1, 2, 3, 5, 7, 8};
  for (size_t b = 0; in && b < sizeof bits / sizeof bits[0]; b++)
    for (int g = 0; g < 3; g++) {
      static const char *gran[] = {"\"granularity\":\"group\",\"group_size\":5",
                                   "\"granularity\":\"channel\"", "\"granularity\":\"tensor\""};
      static const int64_t gs[] = {5, 1, 23};
      char recipe[256];
      snprintf(recipe, sizeof recipe, "{\"steps\":[{\"op\":\"palettize\",\"bits\":%d,%s,\"algorithm\":\"%s\"}]}",
               bits[b], gran[g], b % 2 ? "kmeans" : "exact");
      job j;
      if (run_job(in, recipe, "bits.out.safetensors", &j) == CZ_E_OK) {
        double *y = decode_palette(j.out, t.name, 23, 37, bits[b], gs[g], t.v);
        double rel = y ? rel_l2_of(t.v, y, 23 * 37, NULL) : NAN;
        CHECK_NEAR(rnum(report_tensor(j.report, t.name), "rel_l2"), rel, 1e-9);
        free(y);
      } else {
        job_ok(&j);
      }
      job_free(&j);
    }
  cz_model_close(in);
  free(t.v);
}

/* After a prune step zeros get LUT entry 0 = 0.0 and stay exact. */
static void test_keep_zero_after_prune(void) {
  t_tensor t = {"blk.0.attn_q.weight", CZ_TYPE_F16, 32, 64, NULL};
  t_fill_normal(&t, 0.02, 71);
  cz_model *in = t_model("kz.safetensors", &t, 1);
  job j;
  if (in && run_job(in, "{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5},{\"op\":\"palettize\",\"bits\":2}]}",
                    "kz.out.safetensors", &j) == CZ_E_OK) {
    const cz_tensor *tl = NULL, *ti = NULL;
    const uint8_t *lb = t_bytes(j.out, "blk.0.attn_q.weight_lut", &tl);
    const uint8_t *ib = t_bytes(j.out, "blk.0.attn_q.weight_indices", &ti);
    if (lb && ib) {
      float lut[4];
      memcpy(lut, lb, sizeof lut);
      CHECK(lut[0] == 0.0f);
      size_t zeros = 0;
      for (int64_t i = 0; i < 32 * 64; i++) zeros += lut[get_bits(ib + (i / 64) * 16, i % 64, 2)] == 0.0f;
      CHECK_EQ_INT(zeros, 1024);
      const json_t *rt = report_tensor(j.report, t.name);
      CHECK_NEAR(rnum(rt, "sparsity"), 0.5, 1e-12);
      char *layout = json_dumps(json_object_get(rt, "layout"), JSON_SORT_KEYS | JSON_COMPACT);
      CHECK_CONTAINS(layout, "\"keep_zero\":true");
      free(layout);
    }
  } else {
    job_ok(&j);
  }
  job_free(&j);
  cz_model_close(in);
  free(t.v);
}

static void test_validation(void) {
  t_tensor t = {"blk.0.attn_q.weight", CZ_TYPE_F32, 8, 8, NULL};
  t_fill_normal(&t, 1, 3);
  cz_model *in = t_model("val.safetensors", &t, 1);
  static const struct {
    const char *recipe;
    cz_err_code code;
    const char *field;
  } cases[] = {
      {"{\"steps\":[{\"op\":\"palettize\"}]}", CZ_E_INVALID_PARAMETER, "steps[0].bits"},
      {"{\"steps\":[{\"op\":\"palettize\",\"bits\":0}]}", CZ_E_INVALID_PARAMETER, "steps[0].bits"},
      {"{\"steps\":[{\"op\":\"palettize\",\"bits\":9}]}", CZ_E_INVALID_PARAMETER, "steps[0].bits"},
      {"{\"steps\":[{\"op\":\"palettize\",\"bits\":4,\"group_size\":8}]}", CZ_E_INVALID_PARAMETER, "steps[0].group_size"},
      {"{\"steps\":[{\"op\":\"palettize\",\"bits\":4,\"granularity\":\"block\"}]}", CZ_E_INVALID_PARAMETER, "steps[0].granularity"},
      {"{\"steps\":[{\"op\":\"palettize\",\"bits\":4,\"algorithm\":\"sgd\"}]}", CZ_E_INVALID_PARAMETER, "steps[0].algorithm"},
      {"{\"steps\":[{\"op\":\"palettize\",\"bits\":4,\"keep_zero\":1}]}", CZ_E_INVALID_PARAMETER, "steps[0].keep_zero"},
      {"{\"steps\":[{\"op\":\"palettize\",\"bits\":4}],\"output\":{\"format\":\"gguf\"}}", CZ_E_INVALID_RECIPE, "output.format"},
      {"{\"steps\":[{\"op\":\"palettize\",\"bits\":4},{\"op\":\"prune\",\"sparsity\":0.5}]}", CZ_E_INVALID_RECIPE, "steps[1]"},
      {"{\"steps\":[{\"op\":\"palettize\",\"bits\":4},{\"op\":\"quantize\",\"type\":\"int8\"}]}", CZ_E_INVALID_RECIPE, "steps[1]"},
  };
  for (size_t i = 0; in && i < sizeof cases / sizeof cases[0]; i++)
    expect_refused(in, cases[i].recipe, cases[i].code, cases[i].field, NULL);
  cz_model_close(in);
  free(t.v);
}

int main(void) {
  tmp_setup("cz-palettize");
  static const cz_test_case cases[] = {
      CZ_TEST(test_exact_vs_brute_force), CZ_TEST(test_exact_not_worse_than_lloyd),
      CZ_TEST(test_palettize_tensor),     CZ_TEST(test_bits_and_groups),
      CZ_TEST(test_keep_zero_after_prune), CZ_TEST(test_validation),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  tmp_cleanup();
  return rc;
}
