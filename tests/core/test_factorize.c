/* test_factorize: low-rank factorization W ~ A.B against independent references: the
 * Eckart-Young optimum computed here with LAPACK's sgesvd (QR iteration; the library uses
 * sgesdd) on the same matrix, randomized SVD within 1 % of it, rank criteria recomputed from
 * that spectrum, the activation-aware variant against the optimum of the scaled matrix, and
 * factorize-then-quantize through the pipeline with every figure recomputed in double. */
#include "methods_util.h"

#include <lapacke.h>

/* ---- references ---- */

/* Singular values of w [m x n] by sgesvd (descending), in s[min(m, n)]. */
static void ref_singular_values(const float *w, int64_t m, int64_t n, float *s) {
  int64_t k = m < n ? m : n;
  float *a = malloc(sizeof(float) * (size_t)(m * n)), *sup = malloc(sizeof(float) * (size_t)k);
  memcpy(a, w, sizeof(float) * (size_t)(m * n));
  lapack_int info = LAPACKE_sgesvd(LAPACK_ROW_MAJOR, 'N', 'N', (lapack_int)m, (lapack_int)n, a,
                                   (lapack_int)n, s, NULL, 1, NULL, 1, sup);
  if (info != 0) {
    printf("# sgesvd failed: %d\n", (int)info);
    cz_test_failures++;
  }
  free(a);
  free(sup);
}

/* sqrt(sum_{i >= r} s_i^2): the Frobenius error of the best rank-r approximation. */
static double eckart_young(const float *s, int64_t k, int64_t r) {
  double e = 0;
  for (int64_t i = r; i < k; i++) e += (double)s[i] * s[i];
  return sqrt(e);
}

/* Random orthonormal columns: q [rows x cols] (rows >= cols), by QR of a Gaussian matrix. */
static void random_orthonormal(double *q, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows * cols; i++) q[i] = t_normal();
  double *tau = malloc(sizeof(double) * (size_t)cols);
  LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, (lapack_int)rows, (lapack_int)cols, q, (lapack_int)cols, tau);
  LAPACKE_dorgqr(LAPACK_ROW_MAJOR, (lapack_int)rows, (lapack_int)cols, (lapack_int)cols, q,
                 (lapack_int)cols, tau);
  free(tau);
}

/* W = U diag(sigma) V^T with sigma_i = f(i) and random orthonormal U, V. */
static float *matrix_with_spectrum(int64_t m, int64_t n, double (*f)(int64_t), uint64_t seed) {
  int64_t k = m < n ? m : n;
  t_seed(seed);
  double *u = malloc(sizeof(double) * (size_t)(m * k)), *v = malloc(sizeof(double) * (size_t)(n * k));
  random_orthonormal(u, m, k);
  random_orthonormal(v, n, k);
  float *w = malloc(sizeof(float) * (size_t)(m * n));
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double acc = 0;
      for (int64_t c = 0; c < k; c++) acc += u[i * k + c] * f(c) * v[j * k + c];
      w[i * n + j] = (float)acc;
    }
  free(u);
  free(v);
  return w;
}

static double spec_harmonic(int64_t i) { return 1.0 / (double)(i + 1); }
static double spec_geometric(int64_t i) { return pow(0.9, (double)i); }
static double spec_square(int64_t i) { return 1.0 / ((double)(i + 1) * (double)(i + 1)); }

/* A.B in double from the output's two factors (any decodable type). */
static double *product(const cz_model *out, const char *a_name, const char *b_name, int64_t m,
                       int64_t n, int64_t *rank) {
  const cz_tensor *ta = out ? cz_model_find(out, a_name) : NULL;
  const cz_tensor *tb = out ? cz_model_find(out, b_name) : NULL;
  if (!ta || !tb) {
    printf("# factors %s / %s missing\n", a_name, b_name);
    cz_test_failures++;
    return NULL;
  }
  int64_t r = ta->ne[0];
  CHECK_EQ_INT(ta->ne[1], m);
  CHECK_EQ_INT(tb->ne[0], n);
  CHECK_EQ_INT(tb->ne[1], r);
  float *a = t_read(out, a_name, NULL), *b = t_read(out, b_name, NULL);
  double *y = calloc((size_t)(m * n), sizeof(double));
  for (int64_t i = 0; i < m; i++)
    for (int64_t c = 0; c < r; c++) {
      double av = a[i * r + c];
      for (int64_t j = 0; j < n; j++) y[i * n + j] += av * b[c * n + j];
    }
  free(a);
  free(b);
  if (rank) *rank = r;
  return y;
}

/* ---- tests ---- */

/* Truncated SVD through the pipeline (F32 in, F32 factors out): the error is the optimum. */
static void test_svd_eckart_young(void) {
  static const struct {
    int64_t m, n, r;
  } cases[] = {{64, 48, 8}, {48, 64, 16}, {96, 96, 20}, {40, 120, 1}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int64_t m = cases[c].m, n = cases[c].n, r = cases[c].r, k = m < n ? m : n;
    t_tensor t = {"blk.0.ffn_up.weight", CZ_TYPE_F32, m, n,
                  matrix_with_spectrum(m, n, spec_harmonic, 11 + c)};
    cz_model *in = t_model("ey.safetensors", &t, 1);
    float *s = malloc(sizeof(float) * (size_t)k);
    ref_singular_values(t.v, m, n, s);
    char recipe[256];
    snprintf(recipe, sizeof recipe,
             "{\"steps\":[{\"op\":\"factorize\",\"method\":\"svd\",\"rank\":%lld,"
             "\"only_if_smaller\":false}]}",
             (long long)r);
    job j;
    if (in && run_job(in, recipe, "ey.out.safetensors", &j) == CZ_E_OK) {
      int64_t rank = 0;
      double *y = product(j.out, "blk.0.ffn_up.lowrank_a.weight", "blk.0.ffn_up.lowrank_b.weight",
                          m, n, &rank);
      CHECK_EQ_INT(rank, r);
      double ref2 = 0;
      for (int64_t i = 0; i < m * n; i++) ref2 += (double)t.v[i] * t.v[i];
      double opt = eckart_young(s, k, r), mx = NAN;
      double got = y ? rel_l2_of(t.v, y, m * n, &mx) * sqrt(ref2) : NAN;
      CHECK_NEAR(got, opt, 1e-3);
      const json_t *rt = report_tensor(j.report, "blk.0.ffn_up.weight");
      CHECK_EQ_INT(rnum(rt, "rank"), r);
      CHECK_NEAR(rnum(rt, "rel_l2"), got / sqrt(ref2), 1e-9);
      CHECK_NEAR(rnum(rt, "max_abs_err"), mx, 1e-9);
      double kept = 0, all = 0;
      for (int64_t i = 0; i < k; i++) all += (double)s[i] * s[i], kept += i < r ? (double)s[i] * s[i] : 0;
      CHECK_NEAR(rnum(rt, "energy_kept"), kept / all, 1e-4);
      CHECK_EQ_INT(rnum(rt, "bytes_out"), 4 * r * (m + n));
      CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(rt, "layout"), "transform")),
                   "lowrank");
      free(y);
    } else {
      job_ok(&j);
    }
    job_free(&j);
    cz_model_close(in);
    free(s);
    free(t.v);
  }
}

/* Randomized SVD: within 1 % of the Eckart-Young optimum on decaying spectra; same seed,
 * same bytes. */
static void test_rsvd_within_one_percent(void) {
  static const struct {
    int64_t m, n, r;
    double (*f)(int64_t);
    const char *what;
  } cases[] = {
      {300, 200, 10, spec_geometric, "0.9^i"}, {200, 500, 40, spec_geometric, "0.9^i"},
      {256, 256, 16, spec_square, "1/i^2"},    {300, 200, 20, spec_harmonic, "1/i"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int64_t m = cases[c].m, n = cases[c].n, r = cases[c].r, k = m < n ? m : n;
    t_tensor t = {"blk.0.ffn_up.weight", CZ_TYPE_F32, m, n,
                  matrix_with_spectrum(m, n, cases[c].f, 23 + c)};
    cz_model *in = t_model("rsvd.safetensors", &t, 1);
    float *s = malloc(sizeof(float) * (size_t)k);
    ref_singular_values(t.v, m, n, s);
    double opt = eckart_young(s, k, r);
    char recipe[256];
    snprintf(recipe, sizeof recipe,
             "{\"steps\":[{\"op\":\"factorize\",\"method\":\"rsvd\",\"rank\":%lld,"
             "\"only_if_smaller\":false}]}",
             (long long)r);
    job j, j2;
    if (in && run_job(in, recipe, "rsvd.a.safetensors", &j) == CZ_E_OK &&
        run_job_im(in, recipe, "rsvd.b.safetensors", RUN_REVERSE, NULL, &j2) == CZ_E_OK) {
      double *y = product(j.out, "blk.0.ffn_up.lowrank_a.weight",
                          "blk.0.ffn_up.lowrank_b.weight", m, n, NULL);
      double ref2 = 0;
      for (int64_t i = 0; i < m * n; i++) ref2 += (double)t.v[i] * t.v[i];
      double got = y ? rel_l2_of(t.v, y, m * n, NULL) * sqrt(ref2) : NAN;
      printf("# rsvd %lldx%lld rank %lld, spectrum %s: error %.6g, optimum %.6g (%+.3f %%)\n",
             (long long)m, (long long)n, (long long)r, cases[c].what, got, opt,
             100 * (got / opt - 1));
      CHECK(got <= 1.01 * opt);
      CHECK(got >= opt * (1 - 1e-4));
      const cz_tensor *a1 = cz_model_find(j.out, "blk.0.ffn_up.lowrank_a.weight");
      const cz_tensor *a2 = cz_model_find(j2.out, "blk.0.ffn_up.lowrank_a.weight");
      CHECK(a1 && a2 && a1->nbytes == a2->nbytes && memcmp(a1->data, a2->data, a1->nbytes) == 0);
      free(y);
    } else {
      job_ok(&j);
    }
    job_free(&j);
    job_free(&j2);
    cz_model_close(in);
    free(s);
    free(t.v);
  }
}

/* "energy": the smallest rank whose sigma^2 share reaches tau (spectrum from sgesvd here);
 * rank_ratio, param_ratio and rank_multiple from their formulas; svd and rsvd agree. */
static void test_rank_criteria(void) {
  const int64_t m = 96, n = 64, k = 64;
  t_tensor t = {"blk.0.ffn_up.weight", CZ_TYPE_F32, m, n, matrix_with_spectrum(m, n, spec_geometric, 5)};
  cz_model *in = t_model("crit.safetensors", &t, 1);
  float *s = malloc(sizeof(float) * (size_t)k);
  ref_singular_values(t.v, m, n, s);
  double all = 0;
  for (int64_t i = 0; i < k; i++) all += (double)s[i] * s[i];
  static const double taus[] = {0.5, 0.9, 0.99};
  for (int ti = 0; ti < 3; ti++) {
    int64_t want = 0;
    double acc = 0;
    while (acc < taus[ti] * all) acc += (double)s[want] * s[want], want++;
    for (int meth = 0; meth < 2; meth++) {
      char recipe[256];
      snprintf(recipe, sizeof recipe,
               "{\"steps\":[{\"op\":\"factorize\",\"method\":\"%s\",\"energy\":%g,"
               "\"only_if_smaller\":false}]}",
               meth ? "rsvd" : "svd", taus[ti]);
      job j;
      if (in && run_job(in, recipe, "crit.out.safetensors", &j) == CZ_E_OK) {
        const json_t *rt = report_tensor(j.report, "blk.0.ffn_up.weight");
        CHECK_EQ_INT(rnum(rt, "rank"), want);
        CHECK(rnum(rt, "energy_kept") >= taus[ti] - 1e-6);
      } else {
        job_ok(&j);
      }
      job_free(&j);
    }
  }
  static const struct {
    const char *crit;
    int64_t want;
  } fixed[] = {
      {"\"rank_ratio\":0.25", 16},                    /* 0.25 * min(96, 64) */
      {"\"param_ratio\":0.5", 19},                    /* floor(0.5 * 96*64/160) = 19 */
      {"\"rank\":20,\"rank_multiple\":16", 32},       /* rounded up */
      {"\"rank\":500", 64},                           /* at most min(m, n) */
  };
  for (size_t c = 0; c < sizeof fixed / sizeof fixed[0]; c++) {
    char recipe[256];
    snprintf(recipe, sizeof recipe,
             "{\"steps\":[{\"op\":\"factorize\",%s,\"only_if_smaller\":false}]}", fixed[c].crit);
    job j;
    if (in && run_job(in, recipe, "crit.out.safetensors", &j) == CZ_E_OK) {
      CHECK_EQ_INT(rnum(report_tensor(j.report, "blk.0.ffn_up.weight"), "rank"), fixed[c].want);
    } else {
      job_ok(&j);
    }
    job_free(&j);
  }
  cz_model_close(in);
  free(s);
  free(t.v);
}

/* only_if_smaller (default): a rank at or above mn/(m+n) leaves the matrix whole, said so. */
static void test_only_if_smaller(void) {
  t_tensor t[2] = {{"blk.0.attn_q.weight", CZ_TYPE_F16, 64, 64, NULL},
                   {"blk.0.attn_k.weight", CZ_TYPE_F16, 64, 64, NULL}};
  t_fill_normal(&t[0], 0.02, 1);
  t_fill_normal(&t[1], 0.02, 2);
  cz_model *in = t_model("small.safetensors", t, 2);
  job j;
  /* 64x64: break-even at 32; rank 32 does not pay, 31 does */
  if (in && run_job(in,
                    "{\"steps\":[{\"op\":\"factorize\",\"rank\":32,\"include\":[\"*.attn_q.*\"]},"
                    "{\"op\":\"factorize\",\"rank\":31,\"include\":[\"*.attn_k.weight\"]}]}",
                    "small.out.safetensors", &j) == CZ_E_OK) {
    const json_t *q = report_tensor(j.report, "blk.0.attn_q.weight");
    const json_t *k = report_tensor(j.report, "blk.0.attn_k.weight");
    CHECK(cz_model_find(j.out, "blk.0.attn_q.weight") != NULL);
    CHECK(cz_model_find(j.out, "blk.0.attn_k.lowrank_a.weight") != NULL);
    CHECK(cz_model_find(j.out, "blk.0.attn_k.weight") == NULL);
    CHECK_EQ_INT(rnum(q, "rel_l2"), 0);
    char *notes = json_dumps(json_object_get(q, "notes"), 0);
    CHECK_CONTAINS(notes, "would not be smaller");
    free(notes);
    CHECK_EQ_INT(rnum(k, "rank"), 31);
    CHECK_EQ_INT(rnum(k, "bytes_out"), 2 * 31 * 128);
    /* f16 in, f16 factors: the input's float type is kept */
    const cz_tensor *a = cz_model_find(j.out, "blk.0.attn_k.lowrank_a.weight");
    CHECK(a && a->type == CZ_TYPE_F16);
  } else {
    job_ok(&j);
  }
  job_free(&j);
  cz_model_close(in);
  free(t[0].v);
  free(t[1].v);
}

/* Activation-aware (alpha 1): the activation-weighted error sum_j E_j sum_i dW_ij^2 is the
 * Eckart-Young optimum of W diag(sqrt(E)), and no larger than plain SVD's. */
static void test_activation_aware(void) {
  const int64_t m = 80, n = 64, r = 12;
  t_tensor t = {"blk.0.ffn_down.weight", CZ_TYPE_F32, m, n, matrix_with_spectrum(m, n, spec_harmonic, 9)};
  cz_model *in = t_model("aa.safetensors", &t, 1);
  float *e = malloc(sizeof(float) * (size_t)n);
  t_seed(99);
  for (int64_t j = 0; j < n; j++) e[j] = (float)exp(2.0 * t_normal());
  t_importance im = {e, n};
  float *ws = malloc(sizeof(float) * (size_t)(m * n)), *s = malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) ws[i * n + j] = t.v[i * n + j] * sqrtf(e[j]);
  ref_singular_values(ws, m, n, s);
  double opt = eckart_young(s, n, r);
  job ja, jp;
  char ra[256], rp[256];
  snprintf(ra, sizeof ra, "{\"steps\":[{\"op\":\"factorize\",\"rank\":%lld,\"activation_aware\":true}]}", (long long)r);
  snprintf(rp, sizeof rp, "{\"steps\":[{\"op\":\"factorize\",\"rank\":%lld}]}", (long long)r);
  if (in && run_job_im(in, ra, "aa.a.safetensors", RUN_EXEC2, &im, &ja) == CZ_E_OK &&
      run_job_im(in, rp, "aa.p.safetensors", RUN_EXEC2, &im, &jp) == CZ_E_OK) {
    const json_t *a = report_tensor(ja.report, "blk.0.ffn_down.weight");
    const json_t *p = report_tensor(jp.report, "blk.0.ffn_down.weight");
    double aw_a = rnum(a, "act_weighted_err"), aw_p = rnum(p, "act_weighted_err");
    printf("# activation-weighted error: aware %.6g (optimum %.6g), plain %.6g; rel_l2 aware "
           "%.4f, plain %.4f\n",
           aw_a, opt * opt, aw_p, rnum(a, "rel_l2"), rnum(p, "rel_l2"));
    CHECK_NEAR(aw_a, opt * opt, 2e-3);
    CHECK(aw_a < aw_p);
    CHECK(rnum(a, "rel_l2") >= rnum(p, "rel_l2")); /* plain SVD is optimal for the unweighted error */
    /* recompute the weighted error from the artifact */
    double *y = product(ja.out, "blk.0.ffn_down.lowrank_a.weight",
                        "blk.0.ffn_down.lowrank_b.weight", m, n, NULL);
    double aw = 0;
    for (int64_t i = 0; y && i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double d = t.v[i * n + j] - y[i * n + j];
        aw += e[j] * d * d;
      }
    CHECK_NEAR(aw, aw_a, 1e-9);
    free(y);
  } else {
    job_ok(&ja);
  }
  job_free(&ja);
  job_free(&jp);
  /* without an importance matrix the step is refused at plan time */
  expect_refused(in, ra, CZ_E_INVALID_RECIPE, "steps[0].activation_aware", NULL);
  cz_model_close(in);
  free(e);
  free(ws);
  free(s);
  free(t.v);
}

/* factorize then quantize q8_0 the factors, into GGUF, on tiny-llama: factor shapes and types,
 * the untouched tensors byte-identical to the plain q8_0 run, errors recomputed from the
 * decoded factors. */
static void test_factorize_then_q8_0(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/tests/data/tiny-llama-f16.gguf", cz_test_srcdir());
  cz_model *in = t_open(path);
  if (!in) return;
  job j, q;
  const char *recipe =
      "{\"steps\":[{\"op\":\"factorize\",\"method\":\"rsvd\",\"rank\":64,"
      "\"include\":[\"blk.0.attn_q.weight\",\"blk.1.ffn_up.weight\"]},"
      "{\"op\":\"quantize\",\"type\":\"q8_0\"}],\"output\":{\"format\":\"gguf\"}}";
  if (run_job(in, recipe, "fq.gguf", &j) == CZ_E_OK &&
      run_job(in, "{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"}],\"output\":{\"format\":\"gguf\"}}",
              "q.gguf", &q) == CZ_E_OK) {
    static const struct {
      const char *name, *a, *b;
      int64_t m, n;
    } f[] = {{"blk.0.attn_q.weight", "blk.0.attn_q.lowrank_a.weight", "blk.0.attn_q.lowrank_b.weight", 256, 256},
             {"blk.1.ffn_up.weight", "blk.1.ffn_up.lowrank_a.weight", "blk.1.ffn_up.lowrank_b.weight", 768, 256}};
    for (int i = 0; i < 2; i++) {
      const cz_tensor *a = cz_model_find(j.out, f[i].a), *b = cz_model_find(j.out, f[i].b);
      CHECK(a && a->type == CZ_TYPE_Q8_0 && a->ne[0] == 64 && a->ne[1] == f[i].m);
      CHECK(b && b->type == CZ_TYPE_Q8_0 && b->ne[0] == f[i].n && b->ne[1] == 64);
      CHECK(cz_model_find(j.out, f[i].name) == NULL);
      double *y = product(j.out, f[i].a, f[i].b, f[i].m, f[i].n, NULL);
      float *w = t_read(in, f[i].name, NULL);
      double mx = NAN, rel = y && w ? rel_l2_of(w, y, f[i].m * f[i].n, &mx) : NAN;
      const json_t *rt = report_tensor(j.report, f[i].name);
      CHECK_NEAR(rnum(rt, "rel_l2"), rel, 1e-9);
      CHECK_NEAR(rnum(rt, "max_abs_err"), mx, 1e-9);
      CHECK_EQ_STR(json_string_value(json_object_get(rt, "output_type")), "q8_0");
      CHECK_EQ_INT(rnum(rt, "bytes_out"), a && b ? (int64_t)(a->nbytes + b->nbytes) : -1);
      free(y);
      free(w);
    }
    /* everything else is what the plain q8_0 run wrote, byte for byte */
    size_t same = 0;
    for (size_t i = 0; i < q.out->n_tensors; i++) {
      const cz_tensor *tq = &q.out->tensors[i];
      if (!strcmp(tq->name, f[0].name) || !strcmp(tq->name, f[1].name)) continue;
      const cz_tensor *tj = cz_model_find(j.out, tq->name);
      bool eq = tj && tj->type == tq->type && tj->nbytes == tq->nbytes &&
                memcmp(tj->data, tq->data, tq->nbytes) == 0;
      if (!eq) printf("# %s differs from the q8_0 run\n", tq->name);
      same += eq;
    }
    CHECK_EQ_INT(same, q.out->n_tensors - 2);
    CHECK_EQ_INT(j.out->n_tensors, q.out->n_tensors + 2);
    long k = cz_gguf_find_kv(j.out, "general.file_type");
    uint32_t ft = 0;
    CHECK(k >= 0 && cz_gguf_kv_u32(&j.out->kv[k], &ft) && ft == 7);
    CHECK(cz_gguf_find_kv(j.out, "compressd.layout") >= 0);
  } else {
    job_ok(&j);
  }
  job_free(&j);
  job_free(&q);
  cz_model_close(in);
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
      {"{\"steps\":[{\"op\":\"factorize\"}]}", CZ_E_INVALID_PARAMETER, "steps[0]"},
      {"{\"steps\":[{\"op\":\"factorize\",\"rank\":4,\"energy\":0.9}]}", CZ_E_INVALID_PARAMETER, "steps[0]"},
      {"{\"steps\":[{\"op\":\"factorize\",\"rank\":0}]}", CZ_E_INVALID_PARAMETER, "steps[0].rank"},
      {"{\"steps\":[{\"op\":\"factorize\",\"energy\":1.5}]}", CZ_E_INVALID_PARAMETER, "steps[0].energy"},
      {"{\"steps\":[{\"op\":\"factorize\",\"rank_ratio\":0}]}", CZ_E_INVALID_PARAMETER, "steps[0].rank_ratio"},
      {"{\"steps\":[{\"op\":\"factorize\",\"rank\":2,\"oversample\":4}]}", CZ_E_INVALID_PARAMETER, "steps[0].oversample"},
      {"{\"steps\":[{\"op\":\"factorize\",\"rank\":2,\"alpha\":0.5}]}", CZ_E_INVALID_PARAMETER, "steps[0].alpha"},
      {"{\"steps\":[{\"op\":\"factorize\",\"method\":\"qr\",\"rank\":2}]}", CZ_E_UNKNOWN_METHOD, "steps[0].method"},
      {"{\"steps\":[{\"op\":\"factorize\",\"method\":\"rsvd\",\"rank\":2,\"power_iters\":-1}]}", CZ_E_INVALID_PARAMETER, "steps[0].power_iters"},
      {"{\"steps\":[{\"op\":\"factorize\",\"rank\":2,\"include\":\"*\"}]}", CZ_E_INVALID_PARAMETER, "steps[0].include"},
      {"{\"steps\":[{\"op\":\"factorize\",\"rank\":2,\"exclude\":[3]}]}", CZ_E_INVALID_PARAMETER, "steps[0].exclude[0]"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"},{\"op\":\"factorize\",\"rank\":2}]}", CZ_E_INVALID_RECIPE, "steps[1]"},
  };
  for (size_t i = 0; in && i < sizeof cases / sizeof cases[0]; i++)
    expect_refused(in, cases[i].recipe, cases[i].code, cases[i].field, NULL);
  /* the normalized recipe keeps the selectors and fills the defaults */
  json_t *body = json_loads("{\"steps\":[{\"op\":\"factorize\",\"method\":\"rsvd\",\"energy\":0.9,"
                            "\"include\":[\"blk.*\"]}]}", 0, NULL);
  cz_recipe *r = NULL;
  cz_error err = {0};
  CHECK_EQ_INT(cz_recipe_parse(body, NULL, &r, &err), CZ_E_OK);
  if (r) {
    json_t *norm = cz_recipe_normalized(r);
    char *s = json_dumps(json_array_get(json_object_get(norm, "steps"), 0), JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_EQ_STR(s, "{\"activation_aware\":false,\"energy\":0.90000000000000002,\"include\":[\"blk.*\"],"
                    "\"method\":\"rsvd\",\"only_if_smaller\":true,\"op\":\"factorize\","
                    "\"oversample\":10,\"power_iters\":4,\"rank_multiple\":1,\"seed\":0}");
    free(s);
    json_decref(norm);
  }
  cz_recipe_free(r);
  json_decref(body);
  cz_model_close(in);
  free(t.v);
}

int main(void) {
  tmp_setup("cz-factorize");
  static const cz_test_case cases[] = {
      CZ_TEST(test_svd_eckart_young), CZ_TEST(test_rsvd_within_one_percent),
      CZ_TEST(test_rank_criteria),    CZ_TEST(test_only_if_smaller),
      CZ_TEST(test_activation_aware), CZ_TEST(test_factorize_then_q8_0),
      CZ_TEST(test_validation),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  tmp_cleanup();
  return rc;
}
