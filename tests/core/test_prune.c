/* test_prune: the prune methods through the pipeline, checked from the artifacts: exact
 * sparsity (per tensor and global, ties by position), N:M masks verified group by group,
 * Wanda's scores recomputed here, structured pruning against row norms computed here, the
 * compressed-tensors sparse layouts decoded by hand, composition with int8 and GGUF output. */
#include "methods_util.h"

#include "cz_decompress.h"
#include "cz_imatrix.h"

/* Values from a small set so that many |w| tie (exact in F16 and F32). */
static void fill_ties(t_tensor *t, uint64_t seed) {
  t_seed(seed);
  t->v = malloc(sizeof(float) * (size_t)t_n(t));
  for (int64_t i = 0; i < t_n(t); i++) {
    int k = 1 + (int)(t_unit() * 5);
    t->v[i] = (t_unit() < 0.5 ? -1.0f : 1.0f) * (float)k / 64.0f;
  }
}

static size_t zeros(const float *v, int64_t n) {
  size_t z = 0;
  for (int64_t i = 0; i < n; i++) z += v[i] == 0.0f;
  return z;
}

/* Pruned entries are the smallest |w| and, at the threshold, the earliest; kept entries keep
 * their exact value. `order` gives the global position of element i (file order). */
static void check_magnitude_mask(const float *in, const float *out, int64_t n, int64_t k) {
  CHECK_EQ_INT(zeros(out, n), k);
  float max_pruned = 0, min_kept = INFINITY;
  for (int64_t i = 0; i < n; i++) {
    if (out[i] == 0.0f) max_pruned = fmaxf(max_pruned, fabsf(in[i]));
    else {
      min_kept = fminf(min_kept, fabsf(in[i]));
      if (out[i] != in[i]) {
        printf("# element %lld changed: %g -> %g\n", (long long)i, in[i], out[i]);
        cz_test_failures++;
        return;
      }
    }
  }
  CHECK(max_pruned <= min_kept);
  /* ties: no kept element at the threshold comes before a pruned one */
  int64_t last_pruned = -1, first_kept = n;
  for (int64_t i = 0; i < n; i++)
    if (fabsf(in[i]) == max_pruned) {
      if (out[i] == 0.0f) last_pruned = i;
      else if (first_kept == n) first_kept = i;
    }
  if (max_pruned == min_kept) CHECK(last_pruned < first_kept);
}

static void test_magnitude_exact(void) {
  static const double sp[] = {0, 0.1, 0.5, 0.731, 1};
  for (int ties = 0; ties < 2; ties++) {
    t_tensor t = {"blk.0.ffn_up.weight", ties ? CZ_TYPE_F16 : CZ_TYPE_F32, 64, 100, NULL};
    if (ties) fill_ties(&t, 4);
    else t_fill_normal(&t, 1, 4);
    cz_model *in = t_model("mag.safetensors", &t, 1);
    for (size_t c = 0; in && c < sizeof sp / sizeof sp[0]; c++) {
      char recipe[160];
      snprintf(recipe, sizeof recipe, "{\"steps\":[{\"op\":\"prune\",\"sparsity\":%.17g}]}", sp[c]);
      job j;
      if (run_job_im(in, recipe, "mag.out.safetensors", c % 2 ? RUN_REVERSE : RUN_EXEC2, NULL,
                     &j) == CZ_E_OK) {
        int64_t n = 0;
        float *o = t_read(j.out, "blk.0.ffn_up.weight", &n);
        int64_t k = llround(sp[c] * (double)n);
        if (o) check_magnitude_mask(t.v, o, n, k);
        const json_t *rt = report_tensor(j.report, "blk.0.ffn_up.weight");
        CHECK_NEAR(rnum(rt, "sparsity"), (double)k / (double)n, 1e-12);
        CHECK_EQ_STR(json_string_value(json_object_get(rt, "output_type")), ties ? "f16" : "f32");
        /* error: the pruned weights exactly */
        double e2 = 0, r2 = 0;
        for (int64_t i = 0; o && i < n; i++) {
          r2 += (double)t.v[i] * t.v[i];
          if (o[i] == 0.0f) e2 += (double)t.v[i] * t.v[i];
        }
        CHECK_NEAR(rnum(rt, "rel_l2") + 1, sqrt(e2 / r2) + 1, 1e-12);
        free(o);
      } else {
        job_ok(&j);
      }
      job_free(&j);
    }
    cz_model_close(in);
    free(t.v);
  }
}

/* scope "global": one threshold over the selected tensors, exact total count, ties in file
 * order; a norm and an embedding are not selected by default and stay byte-identical. */
static void test_global(void) {
  t_tensor t[5] = {{"token_embd.weight", CZ_TYPE_F16, 32, 64, NULL},
                   {"blk.0.attn_q.weight", CZ_TYPE_F16, 48, 64, NULL},
                   {"blk.0.attn_norm.weight", CZ_TYPE_F32, 0, 64, NULL},
                   {"blk.0.ffn_up.weight", CZ_TYPE_F16, 96, 64, NULL},
                   {"blk.0.ffn_down.weight", CZ_TYPE_F16, 64, 96, NULL}};
  fill_ties(&t[0], 1);
  fill_ties(&t[1], 2);
  t_fill_normal(&t[2], 1, 3);
  fill_ties(&t[3], 4);
  fill_ties(&t[4], 5);
  for (int64_t i = 0; i < t_n(&t[4]); i++) t[4].v[i] *= 4;  /* a larger scale: pruned less */
  cz_model *in = t_model("glob.safetensors", t, 5);
  job j;
  if (in && run_job(in, "{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.37,\"scope\":\"global\"}]}",
                    "glob.out.safetensors", &j) == CZ_E_OK) {
    /* concatenate the selected tensors in file order */
    const int sel[] = {1, 3, 4};
    int64_t N = 0;
    for (int s = 0; s < 3; s++) N += t_n(&t[sel[s]]);
    float *a = malloc(sizeof(float) * (size_t)N), *b = malloc(sizeof(float) * (size_t)N);
    int64_t off = 0;
    for (int s = 0; s < 3; s++) {
      int64_t n = t_n(&t[sel[s]]);
      float *o = t_read(j.out, t[sel[s]].name, NULL);
      memcpy(a + off, t[sel[s]].v, sizeof(float) * (size_t)n);
      if (o) memcpy(b + off, o, sizeof(float) * (size_t)n);
      free(o);
      const json_t *rt = report_tensor(j.report, t[sel[s]].name);
      printf("# %s: sparsity %.4f\n", t[sel[s]].name, rnum(rt, "sparsity"));
      off += n;
    }
    check_magnitude_mask(a, b, N, llround(0.37 * (double)N));
    CHECK(rnum(report_tensor(j.report, "blk.0.ffn_down.weight"), "sparsity") <
          rnum(report_tensor(j.report, "blk.0.ffn_up.weight"), "sparsity"));
    for (int u = 0; u < 3; u += 2) {  /* embedding and norm: untouched */
      const cz_tensor *ti = cz_model_find(in, t[u].name), *to = cz_model_find(j.out, t[u].name);
      CHECK(ti && to && ti->nbytes == to->nbytes && memcmp(ti->data, to->data, ti->nbytes) == 0);
      CHECK(json_object_get(report_tensor(j.report, t[u].name), "note") != NULL);
    }
    free(a);
    free(b);
  } else {
    job_ok(&j);
  }
  job_free(&j);
  cz_model_close(in);
  for (int i = 0; i < 5; i++) free(t[i].v);
}

/* In every group of m of a row: the n largest scores kept (earlier on a tie), the rest 0. */
static void check_nm(const float *in, const float *out, const double *score, int64_t rows,
                     int64_t cols, int n, int m) {
  size_t bad = 0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < cols; g += m) {
      int kept = 0;
      for (int a = 0; a < m; a++) {
        int64_t i = r * cols + g + a;
        int better = 0;
        for (int b = 0; b < m; b++) {
          int64_t k = r * cols + g + b;
          better += score[k] > score[i] || (score[k] == score[i] && b < a);
        }
        bool keep = better < n;
        kept += out[i] != 0.0f;
        if (keep ? out[i] != in[i] : out[i] != 0.0f) bad++;
      }
      if (kept > n) bad++;
    }
  if (bad) printf("# %zu wrong entries or groups (n=%d, m=%d)\n", bad, n, m);
  CHECK_EQ_INT(bad, 0);
}

static void test_nm_exhaustive(void) {
  static const int nm[][2] = {{2, 4}, {1, 4}, {4, 8}, {3, 8}, {1, 2}, {5, 16}};
  for (int ties = 0; ties < 2; ties++) {
    t_tensor t = {"blk.0.attn_v.weight", ties ? CZ_TYPE_F16 : CZ_TYPE_F32, 24, 64, NULL};
    if (ties) fill_ties(&t, 8);
    else t_fill_normal(&t, 1, 8);
    cz_model *in = t_model("nm.safetensors", &t, 1);
    double *score = malloc(sizeof(double) * (size_t)t_n(&t));
    for (int64_t i = 0; i < t_n(&t); i++) score[i] = fabs((double)t.v[i]);
    for (size_t c = 0; in && c < sizeof nm / sizeof nm[0]; c++) {
      char recipe[160];
      snprintf(recipe, sizeof recipe, "{\"steps\":[{\"op\":\"prune\",\"method\":\"nm\",\"n\":%d,\"m\":%d}]}",
               nm[c][0], nm[c][1]);
      job j;
      if (run_job(in, recipe, "nm.out.safetensors", &j) == CZ_E_OK) {
        float *o = t_read(j.out, t.name, NULL);
        if (o) check_nm(t.v, o, score, t.rows, t.cols, nm[c][0], nm[c][1]);
        CHECK_NEAR(rnum(report_tensor(j.report, t.name), "sparsity"),
                   1.0 - (double)nm[c][0] / nm[c][1], 1e-12);
        free(o);
      } else {
        job_ok(&j);
      }
      job_free(&j);
    }
    /* a row length that is not a multiple of m: left alone, with the reason */
    job j;
    if (in && run_job(in, "{\"steps\":[{\"op\":\"prune\",\"method\":\"nm\",\"n\":2,\"m\":24}]}",
                      "nm.odd.safetensors", &j) == CZ_E_OK) {
      CHECK_CONTAINS(json_string_value(json_object_get(report_tensor(j.report, t.name), "note")),
                     "multiple of m");
      CHECK_EQ_INT(rnum(report_tensor(j.report, t.name), "rel_l2"), 0);
    } else {
      job_ok(&j);
    }
    job_free(&j);
    free(score);
    cz_model_close(in);
    free(t.v);
  }
}

/* Wanda: score |W_ij| sqrt(E[x_j^2]) computed here; per-row exact counts; N:M by score. */
static void test_wanda(void) {
  t_tensor t[2] = {{"blk.0.ffn_gate.weight", CZ_TYPE_F16, 40, 64, NULL},
                   {"blk.0.ffn_down.weight", CZ_TYPE_F16, 64, 40, NULL}};
  fill_ties(&t[0], 12);
  t_fill_normal(&t[1], 0.1, 13);
  cz_model *in = t_model("wanda.safetensors", t, 2);
  float *e = malloc(sizeof(float) * 64);
  t_seed(77);
  for (int j = 0; j < 64; j++) e[j] = (float)exp(1.5 * t_normal());
  e[5] = 0;  /* a column that never saw input: everything in it is pruned first */
  t_importance im = {e, 64};
  double *score = malloc(sizeof(double) * (size_t)t_n(&t[0]));
  for (int64_t i = 0; i < t_n(&t[0]); i++)
    score[i] = fabs((double)t[0].v[i]) * sqrt((double)e[i % 64]);
  job j;
  if (in && run_job_im(in, "{\"steps\":[{\"op\":\"prune\",\"method\":\"wanda\",\"sparsity\":0.45}]}",
                       "wanda.out.safetensors", RUN_EXEC2, &im, &j) == CZ_E_OK) {
    float *o = t_read(j.out, t[0].name, NULL);
    const int64_t k = llround(0.45 * 64);
    size_t bad = 0;
    for (int64_t r = 0; o && r < t[0].rows; r++) {
      const float *ro = o + r * 64;
      const double *sc = score + r * 64;
      bad += zeros(ro, 64) != (size_t)k;
      double maxp = -1, mink = INFINITY;
      int64_t lastp = -1, firstk = 64;
      for (int c = 0; c < 64; c++) {
        if (ro[c] == 0.0f) maxp = fmax(maxp, sc[c]);
        else mink = fmin(mink, sc[c]), bad += ro[c] != t[0].v[r * 64 + c];
      }
      for (int c = 0; c < 64; c++)
        if (sc[c] == maxp) {
          if (ro[c] == 0.0f) lastp = c;
          else if (firstk == 64) firstk = c;
        }
      bad += maxp > mink;
      bad += maxp == mink && lastp > firstk;
      bad += ro[5] != 0.0f;
    }
    CHECK_EQ_INT(bad, 0);
    /* ffn_down has 40 columns: the 64-long importance does not apply, so it is left alone */
    CHECK_CONTAINS(json_string_value(json_object_get(report_tensor(j.report, t[1].name), "note")),
                   "no importance data");
    CHECK(json_is_number(json_object_get(report_tensor(j.report, t[0].name), "act_weighted_err")));
    free(o);
  } else {
    job_ok(&j);
  }
  job_free(&j);
  if (in && run_job_im(in, "{\"steps\":[{\"op\":\"prune\",\"method\":\"wanda\",\"n\":2,\"m\":4}]}",
                       "wanda24.out.safetensors", RUN_EXEC2, &im, &j) == CZ_E_OK) {
    float *o = t_read(j.out, t[0].name, NULL);
    if (o) check_nm(t[0].v, o, score, t[0].rows, 64, 2, 4);
    free(o);
  } else {
    job_ok(&j);
  }
  job_free(&j);
  expect_refused(in, "{\"steps\":[{\"op\":\"prune\",\"method\":\"wanda\",\"sparsity\":0.5}]}",
                 CZ_E_INVALID_RECIPE, "importance", NULL);
  free(score);
  free(e);
  cz_model_close(in);
  free(t[0].v);
  free(t[1].v);
}

/* Structured: the rows (columns) with the largest L2 norms stay, in order, with their
 * indices as I64; the error is exactly the removed rows. */
static void test_structured(void) {
  t_tensor t = {"blk.0.ffn_up.weight", CZ_TYPE_F32, 40, 32, NULL};
  t_fill_normal(&t, 1, 21);
  for (int64_t i = 0; i < t_n(&t); i++) t.v[i] *= (float)(1 + (i / 32) % 7); /* uneven rows */
  cz_model *in = t_model("st.safetensors", &t, 1);
  for (int axis = 0; in && axis < 2; axis++) {
    const int64_t cnt = axis ? t.cols : t.rows, keep = cnt - llround(0.25 * (double)cnt);
    double *norm = calloc((size_t)cnt, sizeof(double));
    for (int64_t r = 0; r < t.rows; r++)
      for (int64_t c = 0; c < t.cols; c++) norm[axis ? c : r] += (double)t.v[r * t.cols + c] * t.v[r * t.cols + c];
    char recipe[160];
    snprintf(recipe, sizeof recipe,
             "{\"steps\":[{\"op\":\"prune\",\"method\":\"structured\",\"sparsity\":0.25,\"axis\":\"%s\"}]}",
             axis ? "cols" : "rows");
    job j;
    if (run_job(in, recipe, "st.out.safetensors", &j) == CZ_E_OK) {
      const cz_tensor *w = cz_model_find(j.out, t.name), *kt = NULL;
      const uint8_t *kb = t_bytes(j.out, axis ? "blk.0.ffn_up.weight.kept_cols" : "blk.0.ffn_up.weight.kept_rows", &kt);
      CHECK(w && w->n_dims == 2 && w->ne[axis ? 0 : 1] == keep && w->ne[axis ? 1 : 0] == (axis ? t.rows : t.cols));
      CHECK(kt && kt->type == CZ_TYPE_I64 && kt->ne[0] == keep);
      if (w && kb && kt && kt->ne[0] == keep) {
        int64_t *kept = malloc(sizeof(int64_t) * (size_t)keep);
        memcpy(kept, kb, sizeof(int64_t) * (size_t)keep);
        double min_kept = INFINITY, max_removed = -1, removed2 = 0, all2 = 0;
        bool *is_kept = calloc((size_t)cnt, 1);
        for (int64_t i = 0; i < keep; i++) {
          CHECK(i == 0 || kept[i] > kept[i - 1]);
          if (kept[i] >= 0 && kept[i] < cnt) is_kept[kept[i]] = true;
        }
        for (int64_t i = 0; i < cnt; i++) {
          all2 += norm[i];
          if (is_kept[i]) min_kept = fmin(min_kept, norm[i]);
          else max_removed = fmax(max_removed, norm[i]), removed2 += norm[i];
        }
        CHECK(max_removed <= min_kept);
        float *o = t_read(j.out, t.name, NULL);
        size_t bad = 0;
        for (int64_t r = 0; o && r < (axis ? t.rows : keep); r++)
          for (int64_t c = 0; c < (axis ? keep : t.cols); c++) {
            int64_t sr = axis ? r : kept[r], sc = axis ? kept[c] : c;
            bad += o[r * (axis ? keep : t.cols) + c] != t.v[sr * t.cols + sc];
          }
        CHECK_EQ_INT(bad, 0);
        const json_t *rt = report_tensor(j.report, t.name);
        CHECK_NEAR(rnum(rt, "rel_l2"), sqrt(removed2 / all2), 1e-9);
        CHECK(json_is_true(json_object_get(rt, "shape_changed")));
        CHECK_EQ_INT(rnum(rt, axis ? "cols_kept" : "rows_kept"), keep);
        free(o);
        free(kept);
        free(is_kept);
      }
    } else {
      job_ok(&j);
    }
    job_free(&j);
    free(norm);
  }
  cz_model_close(in);
  free(t.v);
}

/* compressed-tensors layouts, decoded here from their definition: bits little-endian per
 * row, values in row-major order of the set bits, row_offsets, shape. */
static void test_sparse_layouts(void) {
  t_tensor t = {"model.layers.0.mlp.up_proj.weight", CZ_TYPE_F16, 48, 44, NULL};
  t_fill_normal(&t, 0.05, 31);
  for (int64_t i = 0; i < t_n(&t); i += 37) t.v[i] = 0;  /* zeros already in the input */
  cz_model *in = t_model("sp.safetensors", &t, 1);
  const char *recipes[2] = {
      "{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.6,\"layout\":\"sparse-bitmask\","
      "\"include\":[\"*up_proj*\"]}]}",
      "{\"steps\":[{\"op\":\"prune\",\"method\":\"nm\",\"n\":2,\"m\":4,"
      "\"layout\":\"sparse-24-bitmask\",\"include\":[\"*up_proj*\"]}]}"};
  const char *dense[2] = {"{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.6,\"include\":[\"*up_proj*\"]}]}",
                          "{\"steps\":[{\"op\":\"prune\",\"method\":\"nm\",\"n\":2,\"m\":4,"
                          "\"include\":[\"*up_proj*\"]}]}"};
  for (int L = 0; in && L < 2; L++) {
    job j, d;
    if (run_job(in, recipes[L], "sp.out.safetensors", &j) == CZ_E_OK &&
        run_job(in, dense[L], "sp.dense.safetensors", &d) == CZ_E_OK) {
      float *ref = t_read(d.out, t.name, NULL);
      const cz_tensor *tv = NULL, *tb = NULL, *ts = NULL, *tr = NULL;
      const uint8_t *vals = t_bytes(j.out, "model.layers.0.mlp.up_proj.compressed", &tv);
      const uint8_t *bits = t_bytes(j.out, "model.layers.0.mlp.up_proj.bitmask", &tb);
      const uint8_t *shp = t_bytes(j.out, "model.layers.0.mlp.up_proj.shape", &ts);
      const uint8_t *ro = L == 0 ? t_bytes(j.out, "model.layers.0.mlp.up_proj.row_offsets", &tr) : NULL;
      CHECK(cz_model_find(j.out, t.name) == NULL);
      const int64_t R = 48, C = 44, bpr = 6;
      if (ref && vals && bits && shp && (L == 1 || ro)) {
        CHECK(tb->type == CZ_TYPE_U8 && tb->ne[0] == bpr && tb->ne[1] == R);
        CHECK(ts->type == CZ_TYPE_I64 && cz_tensor_nelements(ts) == 2);
        CHECK(L == 0 ? ts->n_dims == 1 : (ts->n_dims == 2 && ts->ne[0] == 1 && ts->ne[1] == 2));
        int64_t shape[2];
        memcpy(shape, shp, sizeof shape);
        CHECK(shape[0] == R && shape[1] == C);
        CHECK(tv->type == CZ_TYPE_F16);
        if (L == 1) CHECK(tv->n_dims == 2 && tv->ne[0] == C / 2 && tv->ne[1] == R);
        int64_t v = 0;
        size_t bad = 0;
        for (int64_t r = 0; r < R; r++) {
          int64_t off;
          if (L == 0) {
            memcpy(&off, ro + 8 * r, 8);
            bad += off != v;
          }
          int in_group = 0;
          for (int64_t c = 0; c < C; c++) {
            bool on = bits[r * bpr + c / 8] >> (c % 8) & 1;
            float x = 0;
            if (on) {
              uint16_t h;
              memcpy(&h, vals + 2 * v++, 2);
              x = cz_fp16_to_fp32(h);
            }
            bad += x != ref[r * C + c];
            bad += L == 0 && on && x == 0.0f;  /* bitmask: exactly the non-zeros */
            in_group += on;
            if (L == 1 && c % 4 == 3) {
              bad += in_group != 2;  /* 2:4: exactly two of every four */
              in_group = 0;
            }
          }
          for (int64_t c = C; c < bpr * 8; c++) bad += bits[r * bpr + c / 8] >> (c % 8) & 1;
        }
        CHECK_EQ_INT(v, cz_tensor_nelements(tv));
        CHECK_EQ_INT(bad, 0);
        const json_t *rt = report_tensor(j.report, t.name);
        CHECK_NEAR(rnum(rt, "rel_l2"), rnum(report_tensor(d.report, t.name), "rel_l2"), 1e-12);
        CHECK_EQ_STR(json_string_value(json_object_get(rt, "output_type")),
                     L ? "sparse-24-bitmask" : "sparse-bitmask");
        CHECK_EQ_INT(rnum(rt, "bytes_out"), tv->nbytes + tb->nbytes + ts->nbytes + (tr ? tr->nbytes : 0));
      }
      free(ref);
    } else {
      job_ok(&j);
    }
    job_free(&j);
    job_free(&d);
  }
  cz_model_close(in);
  free(t.v);
}

/* prune 2:4 then int8: the int8 values keep the pattern; the report's error (against the
 * original weights) recomputed from the int8 values and scales. */
static void test_prune_then_int8(void) {
  t_tensor t = {"blk.0.attn_output.weight", CZ_TYPE_BF16, 32, 64, NULL};
  t_fill_normal(&t, 0.02, 41);
  cz_model *in = t_model("pi.safetensors", &t, 1);
  job j;
  if (in && run_job(in, "{\"steps\":[{\"op\":\"prune\",\"method\":\"nm\"},"
                        "{\"op\":\"quantize\",\"type\":\"int8\"}]}",
                    "pi.out.safetensors", &j) == CZ_E_OK) {
    const cz_tensor *q = NULL, *s = NULL;
    const uint8_t *qb = t_bytes(j.out, t.name, &q);
    const uint8_t *sb = t_bytes(j.out, "blk.0.attn_output.weight_scale", &s);
    if (qb && sb && q->type == CZ_TYPE_I8 && s->type == CZ_TYPE_F32) {
      double *y = malloc(sizeof(double) * 32 * 64);
      size_t bad = 0;
      for (int r = 0; r < 32; r++) {
        float sc;
        memcpy(&sc, sb + 4 * r, 4);
        for (int c = 0; c < 64; c++) y[r * 64 + c] = (double)(float)((float)(int8_t)qb[r * 64 + c] * sc);
        for (int g = 0; g < 64; g += 4) {
          int nz = 0;
          for (int a = 0; a < 4; a++) nz += qb[r * 64 + g + a] != 0;
          bad += nz > 2;
        }
      }
      CHECK_EQ_INT(bad, 0);
      double mx, rel = rel_l2_of(t.v, y, 32 * 64, &mx);
      const json_t *rt = report_tensor(j.report, t.name);
      CHECK_NEAR(rnum(rt, "rel_l2"), rel, 1e-9);
      CHECK_NEAR(rnum(rt, "max_abs_err"), mx, 1e-9);
      CHECK_EQ_STR(json_string_value(json_object_get(rt, "output_type")), "int8");
      printf("# 2:4 + int8: rel_l2 %.4f, sparsity %.3f\n", rel, rnum(rt, "sparsity"));
      free(y);
    } else {
      CHECK(!"int8 output");
    }
  } else {
    job_ok(&j);
  }
  job_free(&j);
  cz_model_close(in);
  free(t.v);
}

/* GGUF: tiny-llama pruned 2:4 into GGUF (dense F16 with zeros); the same bytes whatever the
 * task order; untouched tensors byte-identical; the cancel flag stops the run. */
static void test_prune_gguf(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/tests/data/tiny-llama-f16.gguf", cz_test_srcdir());
  cz_model *in = t_open(path);
  if (!in) return;
  const char *recipe = "{\"steps\":[{\"op\":\"prune\",\"method\":\"nm\",\"n\":2,\"m\":4}],"
                       "\"output\":{\"format\":\"gguf\"}}";
  job a, b;
  if (run_job_im(in, recipe, "p.a.gguf", RUN_EXEC2, NULL, &a) == CZ_E_OK &&
      run_job_im(in, recipe, "p.b.gguf", RUN_REVERSE, NULL, &b) == CZ_E_OK) {
    char pa[512], pb[512];
    tmp_path(pa, sizeof pa, "p.a.gguf");
    tmp_path(pb, sizeof pb, "p.b.gguf");
    CHECK(a.out->file_size == b.out->file_size && a.out->file_size == cz_run_output_size(a.run));
    FILE *fa = fopen(pa, "rb"), *fb = fopen(pb, "rb");
    bool same = fa && fb;
    for (int ca = 0, cb = 0; same && ca != EOF;) {
      ca = fgetc(fa);
      cb = fgetc(fb);
      same = ca == cb;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    CHECK(same);
    size_t pruned = 0, untouched = 0;
    for (size_t i = 0; i < in->n_tensors; i++) {
      const cz_tensor *ti = &in->tensors[i], *to = cz_model_find(a.out, ti->name);
      if (!to || to->type != ti->type || to->nbytes != ti->nbytes) {
        printf("# %s: missing or changed type\n", ti->name);
        cz_test_failures++;
        continue;
      }
      bool eq = memcmp(ti->data, to->data, ti->nbytes) == 0;
      bool matrix = ti->n_dims == 2 && strstr(ti->name, "token_embd") == NULL;
      if (matrix && !eq) pruned++;
      if (!matrix && eq) untouched++;
    }
    CHECK_EQ_INT(pruned, 29);   /* 4 layers x 7 matrices + output.weight */
    CHECK_EQ_INT(untouched, 10); /* token_embd + 9 norms */
    long k = cz_gguf_find_kv(a.out, "general.architecture");
    CHECK(k >= 0);
    CHECK(cz_gguf_find_kv(a.out, "compressd.layout") >= 0);
    json_t *plan = cz_run_plan_json(a.run);
    CHECK(json_is_null(json_object_get(plan, "bytes")));
    json_decref(plan);
  } else {
    job_ok(&a);
  }
  job_free(&a);
  job_free(&b);
  /* cancel before the tasks: every task says canceled, nothing is laid out */
  json_t *body = json_loads(recipe, 0, NULL);
  cz_recipe *r = NULL;
  cz_run *run = NULL;
  cz_error err = {0};
  char out[512];
  tmp_path(out, sizeof out, "cancel.gguf");
  int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (cz_recipe_parse(body, NULL, &r, &err) == CZ_E_OK && cz_run_plan(r, in, NULL, &run, &err) == CZ_E_OK &&
      cz_run_begin(run, fd, &err) == CZ_E_OK) {
    cz_run_cancel(run);
    CHECK_EQ_INT(cz_run_task(run, 0, &err), CZ_E_CANCELED);
    CHECK_EQ_INT(cz_run_output_size(run), 0);
  } else {
    printf("# cancel setup: %s\n", err.msg);
    cz_test_failures++;
  }
  close(fd);
  cz_run_free(run);
  cz_recipe_free(r);
  json_decref(body);
  cz_model_close(in);
}

/* Wanda on a stack of experts [4][24][32]: llama.cpp's imatrix has one vector per expert
 * (4 x 32 values), and each row is scored with its own expert's, computed here. The
 * activation-weighted error is recomputed from the output with the same per-expert weights. */
static cz_model *experts_model(const char *file, const t_tensor *t, int64_t experts) {
  char path[512];
  tmp_path(path, sizeof path, file);
  cz_error err = {0};
  cz_layout *l = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  int64_t ne[CZ_MAX_DIMS] = {t->cols, t->rows / experts, experts, 1};
  bool ok = l && cz_layout_add_tensor(l, t->name, CZ_TYPE_F32, 3, ne, &err) == CZ_E_OK &&
            cz_layout_finish(l, &err) == CZ_E_OK;
  int fd = ok ? open(path, O_RDWR | O_CREAT | O_TRUNC, 0644) : -1;
  ok = ok && fd >= 0 && cz_layout_write_frame(l, fd, &err) == CZ_E_OK;
  size_t nb = sizeof(float) * (size_t)t_n(t);
  ok = ok && pwrite(fd, t->v, nb, (off_t)l->tensors[0].file_offset) == (ssize_t)nb;
  if (fd >= 0) close(fd);
  cz_layout_free(l);
  CHECK(ok);
  return ok ? t_open(path) : NULL;
}

static void test_wanda_experts(void) {
  enum { E = 4, R = 24, C = 32 };
  t_tensor t = {"blk.0.ffn_up_exps.weight", CZ_TYPE_F32, E * R, C, NULL};
  t_fill_normal(&t, 0.1, 21);
  cz_model *in = experts_model("wanda_exps.safetensors", &t, E);
  float *e = malloc(sizeof(float) * E * C);
  t_seed(78);
  for (int j = 0; j < E * C; j++) e[j] = (float)exp(2.0 * t_normal());
  t_importance im = {e, E * C};
  job j;
  if (in && run_job_im(in, "{\"steps\":[{\"op\":\"prune\",\"method\":\"wanda\",\"n\":2,\"m\":4}]}",
                       "wanda_exps.out.safetensors", RUN_EXEC2, &im, &j) == CZ_E_OK) {
    float *o = t_read(j.out, t.name, NULL);
    double *score = malloc(sizeof(double) * (size_t)t_n(&t));
    for (int64_t i = 0; i < t_n(&t); i++) {
      int64_t row = i / C, ex = row / R;
      score[i] = fabs((double)t.v[i]) * sqrt((double)e[ex * C + i % C]);
    }
    if (o) check_nm(t.v, o, score, (int64_t)E * R, C, 2, 4);
    double aw = 0;
    for (int64_t i = 0; o && i < t_n(&t); i++) {
      double d = (double)t.v[i] - o[i];
      aw += (double)e[(i / C / R) * C + i % C] * d * d;
    }
    const json_t *rt = report_tensor(j.report, t.name);
    CHECK(json_object_get(rt, "note") == NULL || json_is_null(json_object_get(rt, "note")));
    double got = json_number_value(json_object_get(rt, "act_weighted_err"));
    CHECK(o != NULL && fabs(got - aw) <= 1e-9 * fmax(1, aw));
    if (fabs(got - aw) > 1e-9 * fmax(1, aw)) printf("# act_weighted_err %.17g, recomputed %.17g\n", got, aw);
    free(score);
    free(o);
  } else {
    job_ok(&j);
  }
  job_free(&j);
  /* one vector for all experts (C values) is not llama.cpp's layout for experts, but a
   * column-count match still applies to every row */
  t_importance shared = {e, C};
  if (in && run_job_im(in, "{\"steps\":[{\"op\":\"prune\",\"method\":\"wanda\",\"n\":2,\"m\":4}]}",
                       "wanda_exps2.out.safetensors", RUN_EXEC2, &shared, &j) == CZ_E_OK) {
    float *o = t_read(j.out, t.name, NULL);
    double *score = malloc(sizeof(double) * (size_t)t_n(&t));
    for (int64_t i = 0; i < t_n(&t); i++) score[i] = fabs((double)t.v[i]) * sqrt((double)e[i % C]);
    if (o) check_nm(t.v, o, score, (int64_t)E * R, C, 2, 4);
    free(score);
    free(o);
  } else {
    job_ok(&j);
  }
  job_free(&j);
  free(e);
  free(t.v);
  cz_model_close(in);
}

/* Wanda from the job's importance matrix (llama-imatrix's GGUF): the pipeline looks each
 * weight up by name; masks checked against scores computed here from the same values. */
static void test_wanda_imatrix(void) {
  char path[512], impath[512];
  snprintf(path, sizeof path, "%s/tests/data/tiny-llama-f16.gguf", cz_test_srcdir());
  snprintf(impath, sizeof impath, "%s/tests/data/tiny-llama-imatrix.gguf", cz_test_srcdir());
  cz_model *in = t_open(path);
  cz_imatrix *im = NULL;
  cz_error err = {0};
  if (cz_imatrix_open(impath, &im, &err) != CZ_E_OK) {
    printf("# imatrix: %s\n", err.msg);
    cz_test_failures++;
  }
  json_t *body = json_loads("{\"steps\":[{\"op\":\"prune\",\"method\":\"wanda\",\"n\":2,\"m\":4,"
                            "\"include\":[\"blk.1.*\"]}],\"output\":{\"format\":\"gguf\"}}", 0, NULL);
  cz_recipe *r = NULL;
  cz_run *run = NULL;
  char out[512];
  tmp_path(out, sizeof out, "wim.gguf");
  int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (in && im && cz_recipe_parse(body, NULL, &r, &err) == CZ_E_OK) {
    cz_recipe_set_imatrix(r, im);
    if (cz_run_plan(r, in, NULL, &run, &err) || cz_run_begin(run, fd, &err) ||
        cz_run_exec(run, 2, &err)) {
      printf("# run: %s\n", err.msg);
      cz_test_failures++;
    } else {
      cz_model *o = t_open(out);
      json_t *rep = cz_run_report(run, 0);
      static const char *const names[] = {"blk.1.attn_q.weight", "blk.1.ffn_down.weight"};
      for (int k = 0; o && k < 2; k++) {
        const cz_tensor *t = cz_model_find(in, names[k]);
        int64_t n = 0;
        const float *e = cz_imatrix_find(im, names[k], &n);
        CHECK(t && e && n == t->ne[0]);
        if (!t || !e || n != t->ne[0]) continue;
        float *w = t_read(in, names[k], NULL), *p = t_read(o, names[k], NULL);
        double *sc = malloc(sizeof(double) * (size_t)cz_tensor_nelements(t));
        for (int64_t i = 0; i < cz_tensor_nelements(t); i++)
          sc[i] = fabs((double)w[i]) * sqrt((double)e[i % n]);
        if (p) check_nm(w, p, sc, t->ne[1], t->ne[0], 2, 4);
        const json_t *rt = report_tensor(rep, names[k]);
        CHECK(json_is_number(json_object_get(rt, "act_weighted_err")));
        free(w);
        free(p);
        free(sc);
      }
      /* other layers are not selected: byte-identical */
      const cz_tensor *a = cz_model_find(in, "blk.0.attn_q.weight"), *b = o ? cz_model_find(o, "blk.0.attn_q.weight") : NULL;
      CHECK(a && b && memcmp(a->data, b->data, a->nbytes) == 0);
      json_decref(rep);
      cz_model_close(o);
    }
  }
  close(fd);
  cz_run_free(run);
  cz_recipe_free(r);
  json_decref(body);
  cz_imatrix_free(im);
  cz_model_close(in);
}

/* ---- cz_decompress (core/cz_decompress.c) on hand-made artifacts: the example of
 * docs/formats.md 4.2, and layouts that lie (the artifact is untrusted input) ---- */

typedef struct {
  const char *name;
  cz_type type;
  int n_dims;
  int64_t ne[CZ_MAX_DIMS];
  const void *bytes;
} raw_tensor;

static bool write_raw_st(const char *path, const char *layout, const raw_tensor *ts, int n) {
  cz_error err = {0};
  cz_layout *l = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  bool ok = l && (!layout || cz_layout_set_meta(l, "compressd.layout", layout, &err) == CZ_E_OK);
  for (int i = 0; ok && i < n; i++)
    ok = cz_layout_add_tensor(l, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, &err) == CZ_E_OK;
  ok = ok && cz_layout_finish(l, &err) == CZ_E_OK;
  int fd = ok ? open(path, O_RDWR | O_CREAT | O_TRUNC, 0644) : -1;
  ok = ok && fd >= 0 && cz_layout_write_frame(l, fd, &err) == CZ_E_OK;
  for (int i = 0; ok && i < n; i++)
    ok = pwrite(fd, ts[i].bytes, (size_t)l->tensors[i].nbytes, (off_t)l->tensors[i].file_offset) ==
         (ssize_t)l->tensors[i].nbytes;
  if (fd >= 0) close(fd);
  if (!ok) printf("# test bug: %s\n", err.msg);
  cz_layout_free(l);
  return ok;
}

static cz_err_code decompress_file(const char *in_path, const char *out_path, cz_error *err) {
  cz_model *m = NULL;
  cz_err_code rc = cz_model_open(in_path, &m, err);
  if (rc) return rc;
  int fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  rc = cz_decompress(m, CZ_TYPE_F32, fd, NULL, err);
  close(fd);
  cz_model_close(m);
  return rc;
}

static void test_decompress_untrusted(void) {
  static const uint8_t vals[] = {0x00, 0x3e, 0x00, 0xc0}, bits[] = {0x02, 0x01},
                       bits_bad[] = {0x03, 0x01};
  static const int64_t shape[] = {2, 3}, offs[] = {0, 1}, offs_bad[] = {0, 2}, kept[] = {5};
  const char *node = "{\"version\":1,\"tensors\":{\"w.weight\":{\"shape\":[2,3],\"dtype\":\"f16\","
                     "\"layout\":{\"encoding\":\"sparse-bitmask\",\"type\":\"f16\",\"compressed\":"
                     "\"w.compressed\",\"bitmask\":\"w.bitmask\",\"shape\":\"w.shape\",\"row_offsets\":"
                     "\"w.row_offsets\"}}}}";
  raw_tensor ok_ts[] = {{"w.compressed", CZ_TYPE_F16, 1, {2, 1, 1, 1}, vals},
                        {"w.bitmask", CZ_TYPE_U8, 2, {1, 2, 1, 1}, bits},
                        {"w.shape", CZ_TYPE_I64, 1, {2, 1, 1, 1}, shape},
                        {"w.row_offsets", CZ_TYPE_I64, 1, {2, 1, 1, 1}, offs},
                        {"norm.weight", CZ_TYPE_F16, 1, {2, 1, 1, 1}, vals}};
  char in[512], out[512];
  tmp_path(in, sizeof in, "dz.in.safetensors");
  tmp_path(out, sizeof out, "dz.out.safetensors");
  cz_error err = {0};
  /* the example of 4.2: [[0, 1.5, 0], [-2, 0, 0]] */
  if (write_raw_st(in, node, ok_ts, 5) && decompress_file(in, out, &err) == CZ_E_OK) {
    cz_model *m = t_open(out);
    const cz_tensor *t = m ? cz_model_find(m, "w.weight") : NULL;
    CHECK(t && t->type == CZ_TYPE_F32 && t->ne[0] == 3 && t->ne[1] == 2 && m->n_tensors == 2);
    const cz_tensor *nt = m ? cz_model_find(m, "norm.weight") : NULL;  /* other floats: decoded */
    CHECK(nt && nt->type == CZ_TYPE_F32 && nt->ne[0] == 2);
    if (nt && nt->type == CZ_TYPE_F32) {
      float v[2];
      memcpy(v, nt->data, sizeof v);
      CHECK(v[0] == 1.5f && v[1] == -2);
    }
    if (t) {
      float v[6];
      memcpy(v, t->data, sizeof v);
      CHECK(v[0] == 0 && v[1] == 1.5f && v[2] == 0 && v[3] == -2 && v[4] == 0 && v[5] == 0);
    }
    for (size_t i = 0; m && i < m->n_meta; i++) CHECK(strcmp(m->meta_keys[i], "compressd.layout") != 0);
    cz_model_close(m);
  } else {
    printf("# the example does not decompress: %s\n", err.msg);
    cz_test_failures++;
  }
  /* lies */
  const struct {
    const char *what, *find, *repl;
    int tensor;        /* which tensor's bytes to swap (-1: none) */
    const void *bytes;
  } lies[] = {
      {"a bit too many", NULL, NULL, 1, bits_bad},
      {"row offsets that disagree", NULL, NULL, 3, offs_bad},
      {"a tensor that is not there", "w.row_offsets\"}", "w.nothing\"}", -1, NULL},
      {"an unknown encoding", "sparse-bitmask", "sparse-csr", -1, NULL},
      {"not JSON", "{\"version", "{version", -1, NULL},
      {"a kept index out of range", "*",
       "{\"version\":1,\"tensors\":{\"w.weight\":{\"shape\":[2,2],\"dtype\":\"f16\",\"layout\":"
       "{\"transform\":\"select_rows\",\"size\":2,\"kept\":\"w.kept\",\"child\":{\"encoding\":"
       "\"plain\",\"type\":\"f16\",\"tensor\":\"w.compressed\"}}}}}", -1, NULL},
      {"palette bits 9", "*",
       "{\"version\":1,\"tensors\":{\"w.weight\":{\"shape\":[2,3],\"dtype\":\"f16\",\"layout\":"
       "{\"encoding\":\"palette\",\"bits\":9,\"group_size\":1,\"shape\":[2,3],\"lut\":"
       "\"w.compressed\",\"indices\":\"w.bitmask\",\"keep_zero\":false}}}}", -1, NULL},
  };
  for (size_t c = 0; c < sizeof lies / sizeof lies[0]; c++) {
    char layout[2048];
    snprintf(layout, sizeof layout, "%s", node);
    if (lies[c].find && !strcmp(lies[c].find, "*")) {
      snprintf(layout, sizeof layout, "%s", lies[c].repl);  /* a whole layout document */
    } else if (lies[c].find) {
      char *p = strstr(layout, lies[c].find);
      char rest[2048];
      snprintf(rest, sizeof rest, "%s", p + strlen(lies[c].find));
      snprintf(p, sizeof layout - (size_t)(p - layout), "%s%s", lies[c].repl, rest);
    }
    raw_tensor ts[6];
    memcpy(ts, ok_ts, sizeof ok_ts);
    ts[5] = (raw_tensor){"w.kept", CZ_TYPE_I64, 1, {1, 1, 1, 1}, kept};
    if (lies[c].tensor >= 0) ts[lies[c].tensor].bytes = lies[c].bytes;
    cz_error e = {0};
    cz_err_code rc = write_raw_st(in, layout, ts, 6) ? decompress_file(in, out, &e) : CZ_E_INTERNAL;
    printf("# %s: %s\n", lies[c].what, e.msg);
    if (rc != CZ_E_INVALID_METADATA) {
      printf("# %s: got %s \"%s\", want invalid_metadata\n", lies[c].what, cz_err_name(rc), e.msg);
      cz_test_failures++;
    }
  }
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
      {"{\"steps\":[{\"op\":\"prune\"}]}", CZ_E_INVALID_PARAMETER, "steps[0].sparsity"},
      {"{\"steps\":[{\"op\":\"prune\",\"sparsity\":1.5}]}", CZ_E_INVALID_PARAMETER, "steps[0].sparsity"},
      {"{\"steps\":[{\"op\":\"prune\",\"sparsity\":\"half\"}]}", CZ_E_INVALID_PARAMETER, "steps[0].sparsity"},
      {"{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5,\"scope\":\"model\"}]}", CZ_E_INVALID_PARAMETER, "steps[0].scope"},
      {"{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5,\"n\":2}]}", CZ_E_INVALID_PARAMETER, "steps[0].n"},
      {"{\"steps\":[{\"op\":\"prune\",\"method\":\"nm\",\"n\":4,\"m\":4}]}", CZ_E_INVALID_PARAMETER, "steps[0].n"},
      {"{\"steps\":[{\"op\":\"prune\",\"method\":\"nm\",\"m\":65}]}", CZ_E_INVALID_PARAMETER, "steps[0].m"},
      {"{\"steps\":[{\"op\":\"prune\",\"method\":\"nm\",\"n\":3,\"m\":8,\"layout\":\"sparse-24-bitmask\"}]}", CZ_E_INVALID_PARAMETER, "steps[0].layout"},
      {"{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5,\"layout\":\"csr\"}]}", CZ_E_INVALID_PARAMETER, "steps[0].layout"},
      {"{\"steps\":[{\"op\":\"prune\",\"method\":\"structured\",\"sparsity\":1}]}", CZ_E_INVALID_PARAMETER, "steps[0].sparsity"},
      {"{\"steps\":[{\"op\":\"prune\",\"method\":\"structured\",\"sparsity\":0.5,\"axis\":\"depth\"}]}", CZ_E_INVALID_PARAMETER, "steps[0].axis"},
      {"{\"steps\":[{\"op\":\"prune\",\"method\":\"wanda\",\"sparsity\":0.5,\"n\":2,\"m\":4}]}", CZ_E_INVALID_PARAMETER, "steps[0]"},
      {"{\"steps\":[{\"op\":\"prune\",\"method\":\"random\",\"sparsity\":0.5}]}", CZ_E_UNKNOWN_METHOD, "steps[0].method"},
      {"{\"steps\":[{\"op\":\"prune\",\"method\":\"nm\"},{\"op\":\"prune\",\"sparsity\":0.5,\"scope\":\"global\"}]}", CZ_E_INVALID_RECIPE, "steps[1].scope"},
      {"{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5,\"layout\":\"sparse-bitmask\"},{\"op\":\"quantize\",\"type\":\"int8\"}]}", CZ_E_INVALID_RECIPE, "steps[0].layout"},
      {"{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5,\"layout\":\"sparse-bitmask\"}],\"output\":{\"format\":\"gguf\"}}", CZ_E_INVALID_RECIPE, "output.format"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"int8\"},{\"op\":\"prune\",\"sparsity\":0.5}]}", CZ_E_INVALID_RECIPE, "steps[1]"},
      {"{\"steps\":[{\"op\":\"quantize\",\"type\":\"q8_0\"},{\"op\":\"quantize\",\"type\":\"q8_0\"}]}", CZ_E_INVALID_RECIPE, "steps[1]"},
  };
  for (size_t i = 0; in && i < sizeof cases / sizeof cases[0]; i++)
    expect_refused(in, cases[i].recipe, cases[i].code, cases[i].field, NULL);
  cz_model_close(in);
  free(t.v);
}

/* include/exclude on the direct (quantize-only) path: narrows quantize's selection. */
static void test_selectors_direct(void) {
  t_tensor t[2] = {{"blk.0.attn_q.weight", CZ_TYPE_F16, 8, 64, NULL},
                   {"blk.0.attn_k.weight", CZ_TYPE_F16, 8, 64, NULL}};
  t_fill_normal(&t[0], 1, 1);
  t_fill_normal(&t[1], 1, 2);
  cz_model *in = t_model("sel.safetensors", t, 2);
  job j;
  if (in && run_job(in, "{\"steps\":[{\"op\":\"quantize\",\"type\":\"int8\",\"exclude\":[\"*attn_k*\"]}]}",
                    "sel.out.safetensors", &j) == CZ_E_OK) {
    const cz_tensor *q = cz_model_find(j.out, "blk.0.attn_q.weight");
    const cz_tensor *k = cz_model_find(j.out, "blk.0.attn_k.weight");
    CHECK(q && q->type == CZ_TYPE_I8);
    CHECK(k && k->type == CZ_TYPE_F16);
    CHECK_CONTAINS(json_string_value(json_object_get(report_tensor(j.report, "blk.0.attn_k.weight"), "note")),
                   "exclude");
    CHECK_NEAR(rnum(report_tensor(j.report, "blk.0.attn_k.weight"), "cosine"), 1, 0);
    CHECK(rnum(report_tensor(j.report, "blk.0.attn_q.weight"), "cosine") > 0.999);
  } else {
    job_ok(&j);
  }
  job_free(&j);
  cz_model_close(in);
  free(t[0].v);
  free(t[1].v);
}

int main(void) {
  tmp_setup("cz-prune");
  static const cz_test_case cases[] = {
      CZ_TEST(test_magnitude_exact), CZ_TEST(test_global),          CZ_TEST(test_nm_exhaustive),
      CZ_TEST(test_wanda),           CZ_TEST(test_structured),      CZ_TEST(test_sparse_layouts),
      CZ_TEST(test_prune_then_int8), CZ_TEST(test_prune_gguf),      CZ_TEST(test_validation),
      CZ_TEST(test_selectors_direct), CZ_TEST(test_wanda_imatrix), CZ_TEST(test_wanda_experts),
      CZ_TEST(test_decompress_untrusted),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  tmp_cleanup();
  return rc;
}
