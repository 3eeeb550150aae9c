/* test_quant_ct: the safetensors quantization schemes (quantize.int_packed, nf4): closed-form
 * groups, compressed-tensors' int32 packing checked word by word, HQQ never worse than round
 * to nearest in the L2 error of the stored groups, NF4's nearest code by brute force, and artifacts decoded
 * here from the format description (docs/formats.md 4.9-4.12) against the report. */
#include "methods_util.h"

#include "cz_decompress.h"
#include "cz_quant_ct.h"

/* Field i of a row of little-endian int32 words, as docs/formats.md 4.9 states it (written
 * here again, not cz_qct_unpack). */
static unsigned field(const uint8_t *row, int64_t i, int bits) {
  const int64_t pf = 32 / bits, w = i / pf;
  uint32_t v = 0;
  for (int k = 0; k < 4; k++) v |= (uint32_t)row[4 * w + k] << (8 * k);
  return (v >> (bits * (i % pf))) & ((1u << bits) - 1);
}

static const char *meta(const cz_model *m, const char *key) {
  for (size_t i = 0; m && i < m->n_meta; i++)
    if (strcmp(m->meta_keys[i], key) == 0) return m->meta_values[i];
  return NULL;
}

/* asymmetric int4 of known values: lo -0.5, hi 7, scale 0.5 exactly, zp -7 */
static void test_asym_int4_closed_form(void) {
  const float x[8] = {-0.5f, 0, 0.2f, 1.0f, 3.3f, 7.0f, 6.74f, -0.26f};
  const int8_t want_q[8] = {-8, -7, -7, -5, 0, 7, 6, -8};
  const float want_y[8] = {-0.5f, 0, 0, 1.0f, 3.5f, 7.0f, 6.5f, -0.5f};
  int8_t q[8];
  float s, y[8];
  int zp;
  cz_qct_group_rtn(x, 8, 4, false, &s, &zp, q);
  CHECK(s == 0.5f);
  CHECK_EQ_INT(zp, -7);
  cz_qct_dequant(q, 8, s, zp, y);
  for (int i = 0; i < 8; i++) {
    CHECK_EQ_INT(q[i], want_q[i]);
    CHECK(y[i] == want_y[i]);
  }
  /* symmetric int3: amax 0.9, scale 0.9 / 3 */
  const float x3[4] = {0.9f, -0.3f, 0.31f, -0.0f};
  cz_qct_group_rtn(x3, 4, 3, true, &s, &zp, q);
  CHECK(s == 0.9f / 3.0f);
  CHECK_EQ_INT(zp, 0);
  CHECK_EQ_INT(q[0], 3);
  CHECK_EQ_INT(q[1], -1);
  CHECK_EQ_INT(q[2], 1);
  CHECK_EQ_INT(q[3], 0);
  /* an all-zero group: scale 0, codes 0 */
  const float z[4] = {0, 0, 0, 0};
  cz_qct_group_rtn(z, 4, 4, false, &s, &zp, q);
  CHECK(s == 0 && zp == 0 && q[0] == 0 && q[3] == 0);
  /* compressed-tensors' docstring example: 8 bits, [1, 2] -> 129 | 130 << 8 = 33409 */
  const uint8_t w[4] = {0x81, 0x82, 0, 0};
  CHECK_EQ_INT(33409, 0x8281);
  CHECK_EQ_INT(cz_qct_unpack(w, 0, 8), 129);
  CHECK_EQ_INT(cz_qct_unpack(w, 1, 8), 130);
  CHECK_EQ_INT(cz_qct_unpack(w, 2, 8), 0);
}

/* The independent L2 error of a stored group: decoded (q - zp) * scale in float32 (formats.md
 * 4.9), squared error summed in double. */
static double stored_l2(const float *x, const int8_t *q, float s, int zp, int n) {
  double e = 0;
  for (int i = 0; i < n; i++) {
    const double d = (double)x[i] - (double)((float)(q[i] - zp) * s);
    e += d * d;
  }
  return e;
}

/* One test group of distribution `dist`: 0 Gaussian, 1 Gaussian with 3 % outliers x8, 2
 * Laplace, 3 Student t with 2 degrees of freedom (heavy tails), 4 one-signed, 5 uniform, 6 one
 * huge outlier in an otherwise tiny group. */
static void hqq_group(float *x, int n, int dist) {
  for (int i = 0; i < n; i++) {
    double v = t_normal();
    switch (dist) {
      case 1: if (t_unit() < 0.03) v *= 8; break;
      case 2: { double u = t_unit() - 0.5; v = (u < 0 ? 1 : -1) * log(1 - 2 * fabs(u)); } break;
      case 3: {
        const double n1 = t_normal(), n2 = t_normal();
        v /= sqrt((n1 * n1 + n2 * n2) / 2 + 1e-6);  /* chi-square of 2 degrees over 2 */
      } break;
      case 4: v = fabs(v) + 0.5; break;
      case 5: v = 2 * t_unit() - 1; break;
      case 6: v = 0.01 * v + (i == n / 3 ? 6.0 : 0.0); break;
    }
    x[i] = (float)(0.02 * v);
  }
}

static void test_hqq_never_worse(void) {
  t_seed(11);
  int improved = 0, groups = 0, by_bits[3] = {0, 0, 0};
  double sum0[3] = {0, 0, 0}, sum1[3] = {0, 0, 0};
  static const int bits[] = {2, 3, 4};
  static const int sizes[] = {32, 64, 128};
  float x[128];
  int8_t q0[128], q1[128];
  for (int trial = 0; trial < 7 * 3 * 3 * 12; trial++) {
    const int dist = trial % 7, b = bits[(trial / 7) % 3], n = sizes[(trial / 21) % 3];
    hqq_group(x, n, dist);
    float s0, s1;
    int z0, z1;
    cz_qct_group_rtn(x, n, b, false, &s0, &z0, q0);
    s1 = s0, z1 = z0;
    memcpy(q1, q0, (size_t)n);
    double obj[2];
    const int changed = cz_qct_group_hqq(x, n, b, &s1, &z1, q1, obj);
    const double e0 = stored_l2(x, q0, s0, z0, n), e1 = stored_l2(x, q1, s1, z1, n);
    if (!(e1 <= e0)) {
      printf("# dist %d, int%d, n %d: HQQ L2 %.9g > RTN %.9g\n", dist, b, n, e1, e0);
      CHECK(e1 <= e0);
    }
    CHECK_NEAR(obj[0], e0, 1e-12 + 1e-9 * e0);
    CHECK_NEAR(obj[1], e1, 1e-12 + 1e-9 * e1);
    CHECK(changed == (s1 != s0 || z1 != z0));
    /* the codes are round to nearest for the chosen scale and zero point, which is an integer
     * in range */
    const int qmin = -(1 << (b - 1)), qmax = (1 << (b - 1)) - 1;
    CHECK(z1 >= qmin && z1 <= qmax && s1 > 0);
    for (int i = 0; i < n; i++) {
      int want = (int)roundf(x[i] / s1) + z1;
      want = want < qmin ? qmin : want > qmax ? qmax : want;
      if (q1[i] != want) {
        CHECK_EQ_INT(q1[i], want);
        break;
      }
    }
    /* deterministic: the same group gives the same result */
    float s2 = s0;
    int z2 = z0;
    int8_t q2[128];
    memcpy(q2, q0, (size_t)n);
    cz_qct_group_hqq(x, n, b, &s2, &z2, q2, NULL);
    CHECK(s2 == s1 && z2 == z1 && memcmp(q2, q1, (size_t)n) == 0);
    groups++;
    improved += e1 < e0;
    by_bits[b - 2]++;
    sum0[b - 2] += e0, sum1[b - 2] += e1;
  }
  for (int k = 0; k < 3; k++)
    printf("# int%d: HQQ's squared L2 %.4g of RTN's over %d groups\n", k + 2,
           sum1[k] / sum0[k], by_bits[k]);
  printf("# HQQ lowered the stored L2 error in %d of %d groups, never raised it\n", improved,
         groups);
  CHECK(improved > groups / 2);
  /* a constant-zero group stays exact */
  memset(x, 0, sizeof x);
  float s;
  int z;
  cz_qct_group_rtn(x, 64, 4, false, &s, &z, q0);
  CHECK_EQ_INT(cz_qct_group_hqq(x, 64, 4, &s, &z, q0, NULL), 0);
}

static void test_nf4_nearest(void) {
  /* brute force: the nearest code of clamp(v), the lower one on a tie */
  t_seed(3);
  int bad = 0;
  for (int i = 0; i < 20000; i++) {
    float v = (float)(t_unit() * 2.4 - 1.2);
    float c = v > 1 ? 1 : v < -1 ? -1 : v;
    int best = 0;
    for (int k = 1; k < 16; k++)
      if (fabs((double)c - cz_nf4_code[k]) < fabs((double)c - cz_nf4_code[best])) best = k;
    bad += cz_nf4_index(v) != best;
  }
  CHECK_EQ_INT(bad, 0);
  for (int k = 0; k < 16; k++) CHECK_EQ_INT(cz_nf4_index(cz_nf4_code[k]), k);
  /* a value exactly on a midpoint goes to the lower code (bitsandbytes' bucketize) */
  for (int k = 0; k < 15; k++)
    CHECK_EQ_INT(cz_nf4_index((cz_nf4_code[k] + cz_nf4_code[k + 1]) / 2.0f), k);
  CHECK(cz_nf4_code[7] == 0.0f && cz_nf4_code[0] == -1.0f && cz_nf4_code[15] == 1.0f);
}

/* bitsandbytes' create_dynamic_map(signed=True), recomputed here from its construction in
 * long double: decade i = 0..6 has the 2^i midpoints of linspace(0.1, 1, 2^i + 1) times
 * +-10^(i-6); then 0 and 1; sorted ascending. */
static void dyn_map_ref(float code[256]) {
  int k = 0;
  for (int i = 0; i <= 6; i++) {
    long double p = 1;
    for (int e = i; e < 6; e++) p /= 10;
    for (int j = 0; j < (1 << i); j++) {
      const long double v = p * (0.1L + 0.9L * (2 * j + 1) / (2.0L * (1 << i)));
      code[k++] = (float)v;
      code[k++] = (float)-v;
    }
  }
  code[k++] = 0;
  code[k++] = 1;
  for (int a = 1; a < k; a++)  /* insertion sort */
    for (int b = a; b > 0 && code[b - 1] > code[b]; b--) {
      const float tmp = code[b];
      code[b] = code[b - 1], code[b - 1] = tmp;
    }
}

/* The nearest code by brute force (exact distances in long double), the lowest index on a
 * tie. */
static int dyn_nearest(const float code[256], float u) {
  int best = 0;
  for (int k = 1; k < 256; k++)
    if (fabsl((long double)u - code[k]) < fabsl((long double)u - code[best])) best = k;
  return best;
}

static void test_dyn_map(void) {
  float got[256], want[256];
  cz_dyn_map(got);
  dyn_map_ref(want);
  int diff = 0;
  for (int k = 0; k < 256; k++) diff += memcmp(&got[k], &want[k], 4) != 0;
  CHECK_EQ_INT(diff, 0);
  /* the shape of the table, and values of bitsandbytes' map */
  CHECK(got[127] == 0.0f && got[255] == 1.0f && got[CZ_DYN_ZERO] == 0.0f);
  for (int k = 0; k < 255; k++) diff += !(got[k] < got[k + 1]);
  CHECK_EQ_INT(diff, 0);
  CHECK(got[128] == 5.5e-7f && got[126] == -5.5e-7f && got[129] == 3.25e-6f && got[130] == 7.75e-6f);
  CHECK(got[254] == 0.99296875f && got[0] == -0.99296875f && got[1] == -0.97890625f);
  /* nearest code: random values over every decade and sign, the codes themselves, and the
   * midpoints that are float32 values (they go to the lower code) */
  t_seed(5);
  int bad = 0;
  for (int i = 0; i < 200000; i++) {
    const float u = (float)((t_unit() < 0.5 ? -1 : 1) * pow(10.0, -8.0 * t_unit()));
    bad += cz_dyn_index(got, u) != dyn_nearest(got, u);
  }
  for (int i = 0; i < 20000; i++) {
    const float u = (float)(2 * t_unit() - 1);
    bad += cz_dyn_index(got, u) != dyn_nearest(got, u);
  }
  CHECK_EQ_INT(bad, 0);
  int ties = 0;
  for (int k = 0; k < 256; k++) {
    CHECK_EQ_INT(cz_dyn_index(got, got[k]), k);
    if (k < 255) {
      const long double m = ((long double)got[k] + got[k + 1]) / 2;
      if ((long double)(float)m == m) {
        ties++;
        bad += cz_dyn_index(got, (float)m) != k || dyn_nearest(got, (float)m) != k;
      }
      /* the float32 neighbours of a midpoint go to their nearer side */
      const float below = nextafterf((float)m, -2.0f), above = nextafterf((float)m, 2.0f);
      bad += cz_dyn_index(got, below) != dyn_nearest(got, below);
      bad += cz_dyn_index(got, above) != dyn_nearest(got, above);
    }
  }
  CHECK_EQ_INT(bad, 0);
  printf("# dynamic map: 256 values as the formula gives them, %d exact midpoints went to the "
         "lower code\n", ties);
}

/* A [2, 32] tensor whose rows repeat the closed-form group: the packed words, scales, zero
 * points, weight_shape and quantization_config are known exactly. */
static void test_int4_artifact_bytes(void) {
  const float g[8] = {-0.5f, 0, 0.2f, 1.0f, 3.3f, 7.0f, 6.74f, -0.26f};
  t_tensor t = {"blk.0.ffn_up.weight", CZ_TYPE_F32, 2, 32, malloc(64 * sizeof(float))};
  for (int i = 0; i < 64; i++) t.v[i] = g[i % 8];
  cz_model *in = t_model("i4.safetensors", &t, 1);
  job j;
  if (in && run_job(in, "{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int4\",\"group_size\":32,"
                        "\"symmetric\":false}]}", "i4.out.safetensors", &j) == CZ_E_OK) {
    const cz_tensor *pk = cz_model_find(j.out, "blk.0.ffn_up.weight_packed");
    const cz_tensor *sc = cz_model_find(j.out, "blk.0.ffn_up.weight_scale");
    const cz_tensor *zp = cz_model_find(j.out, "blk.0.ffn_up.weight_zero_point");
    const cz_tensor *sh = cz_model_find(j.out, "blk.0.ffn_up.weight_shape");
    CHECK(pk && sc && zp && sh && !cz_model_find(j.out, "blk.0.ffn_up.weight"));
    if (pk && sc && zp && sh) {
      CHECK_EQ_INT(pk->type, CZ_TYPE_I32);
      CHECK_EQ_INT(pk->ne[0], 4);
      CHECK_EQ_INT(pk->ne[1], 2);
      for (int w = 0; w < 8; w++) {
        uint32_t v;
        memcpy(&v, pk->data + 4 * w, 4);
        CHECK_EQ_INT(v, 0x0EF83110u);  /* nibbles 0 1 1 3 8 f e 0, first value lowest */
      }
      float s;
      memcpy(&s, sc->data, 4);
      CHECK(s == 0.5f && sc->type == CZ_TYPE_F32 && cz_tensor_nelements(sc) == 2);
      uint32_t z;
      memcpy(&z, zp->data, 4);
      CHECK_EQ_INT(z, 0x11u);  /* zp -7 + 8 = 1 for rows 0 and 1, packed down the column */
      CHECK_EQ_INT(zp->ne[0], 1);
      CHECK_EQ_INT(zp->ne[1], 1);
      int64_t d[2];
      memcpy(d, sh->data, 16);
      CHECK(sh->type == CZ_TYPE_I64 && d[0] == 2 && d[1] == 32);
    }
    json_t *qc = json_loads(meta(j.out, "quantization_config") ? meta(j.out, "quantization_config") : "", 0, NULL);
    json_t *w = json_object_get(json_object_get(json_object_get(qc, "config_groups"), "group_0"), "weights");
    CHECK_EQ_STR(json_string_value(json_object_get(qc, "format")), "pack-quantized");
    CHECK_EQ_STR(json_string_value(json_object_get(qc, "quant_method")), "compressed-tensors");
    CHECK_EQ_INT(json_integer_value(json_object_get(w, "num_bits")), 4);
    CHECK_EQ_INT(json_integer_value(json_object_get(w, "group_size")), 32);
    CHECK_EQ_STR(json_string_value(json_object_get(w, "strategy")), "group");
    CHECK(json_is_false(json_object_get(w, "symmetric")));
    CHECK_EQ_INT(json_array_size(json_object_get(qc, "ignore")), 0);
    json_decref(qc);
    /* decoded: 3.3 -> 3.5, 6.74 -> 6.5, 0.2 -> 0, -0.26 -> -0.5 */
    double e2 = 8 * (0.2 * 0.2 + 0.2 * 0.2 + 0.24 * 0.24 + 0.24 * 0.24), r2 = 0;
    for (int i = 0; i < 8; i++) r2 += 8.0 * g[i] * g[i];
    CHECK_NEAR(rnum(report_tensor(j.report, t.name), "rel_l2"), sqrt(e2 / r2), 1e-5);
    CHECK_EQ_STR(json_string_value(json_object_get(report_tensor(j.report, t.name), "output_type")),
                 "pack-quantized");
  } else {
    job_ok(&j);
  }
  job_free(&j);
  cz_model_close(in);
  free(t.v);
}

/* Random matrices under every width and granularity: each group decoded here; each code is
 * round-to-nearest for its group's stored scale and zero point; the scale and zero point are
 * the closed forms of docs/formats.md 4.9 (RTN) or, with HQQ, a scale and zero point no worse
 * than RTN's in the L2 error of the stored group; the report's rel_l2 is recomputed. A matrix whose rows do not split into groups
 * stays dense (ignore lists it). */
static void test_int_schemes(void) {
  t_tensor ts[2] = {{"blk.0.attn_q.weight", CZ_TYPE_F16, 24, 256, NULL},
                    {"blk.0.attn_k.weight", CZ_TYPE_F16, 8, 40, NULL}};
  t_fill_normal(&ts[0], 0.05, 21);
  t_fill_normal(&ts[1], 0.05, 22);
  cz_model *in = t_model("ints.safetensors", ts, 2);
  static const struct {
    const char *step;
    int bits;
    int64_t group;  /* 0: channel */
    bool sym, hqq;
  } cases[] = {
      {"\"scheme\":\"int2\",\"group_size\":32", 2, 32, true, false},
      {"\"scheme\":\"int3\",\"group_size\":64,\"symmetric\":false", 3, 64, false, false},
      {"\"scheme\":\"int4\"", 4, 128, true, false},
      {"\"scheme\":\"int4\",\"group_size\":64,\"symmetric\":false", 4, 64, false, false},
      {"\"scheme\":\"int8\",\"granularity\":\"channel\"", 8, 0, true, false},
      {"\"scheme\":\"int8\",\"group_size\":32,\"symmetric\":false", 8, 32, false, false},
      {"\"scheme\":\"int4\",\"group_size\":64,\"hqq\":true", 4, 64, false, true},
      {"\"scheme\":\"int3\",\"group_size\":64,\"hqq\":true", 3, 64, false, true},
      {"\"scheme\":\"int2\",\"group_size\":32,\"hqq\":true", 2, 32, false, true},
  };
  const int64_t R = 24, C = 256;
  for (size_t k = 0; in && k < sizeof cases / sizeof cases[0]; k++) {
    char recipe[256];
    snprintf(recipe, sizeof recipe, "{\"steps\":[{\"op\":\"quantize\",%s}]}", cases[k].step);
    job j;
    if (run_job(in, recipe, "ints.out.safetensors", &j) != CZ_E_OK) {
      job_ok(&j);
      job_free(&j);
      continue;
    }
    const int b = cases[k].bits, pf = 32 / b, off = 1 << (b - 1);
    const int64_t G = cases[k].group ? cases[k].group : C, NG = C / G, PW = (C + pf - 1) / pf;
    const cz_tensor *pk = cz_model_find(j.out, "blk.0.attn_q.weight_packed");
    const cz_tensor *sc = cz_model_find(j.out, "blk.0.attn_q.weight_scale");
    const cz_tensor *zp = cz_model_find(j.out, "blk.0.attn_q.weight_zero_point");
    CHECK(pk && sc && (cases[k].sym ? zp == NULL : zp != NULL));
    const bool k_dense = cases[k].group != 0;  /* 40 columns: no whole groups, stays dense */
    CHECK((cz_model_find(j.out, "blk.0.attn_k.weight") != NULL) == k_dense);
    if (!pk || !sc || (!cases[k].sym && !zp) || cz_tensor_nelements(pk) != R * PW ||
        cz_tensor_nelements(sc) != R * NG) {
      printf("# case %s: missing or mis-sized tensors\n", cases[k].step);
      cz_test_failures++;
      job_free(&j);
      continue;
    }
    double e2 = 0, r2 = 0;
    int bad_code = 0, bad_scale = 0, worse = 0;
    const int qmin = -off, qmax = off - 1;
    for (int64_t r = 0; r < R; r++)
      for (int64_t g = 0; g < NG; g++) {
        float s;
        memcpy(&s, sc->data + 4 * (r * NG + g), 4);
        int z = 0;
        if (zp) {
          uint32_t w;
          memcpy(&w, zp->data + 4 * ((r / pf) * NG + g), 4);
          z = (int)((w >> (b * (r % pf))) & ((1u << b) - 1)) - off;
        }
        const float *x = ts[0].v + r * C + g * G;
        /* the closed forms */
        float lo = 0, hi = 0, amax = 0;
        for (int64_t i = 0; i < G; i++)
          lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]), amax = fmaxf(amax, fabsf(x[i]));
        float ws = cases[k].sym ? amax / (float)(off - 1) : (hi - lo) / (float)((1 << b) - 1);
        int wz = cases[k].sym ? 0 : (int)roundf((float)qmin - lo / ws);
        wz = wz < qmin ? qmin : wz > qmax ? qmax : wz;
        bad_scale += !cases[k].hqq && (s != ws || z != wz);
        double l_rtn = 0, l_got = 0;
        for (int64_t i = 0; i < G; i++) {
          const int64_t c = g * G + i;
          int q = (int)field(pk->data + 4 * r * PW, c, b) - off;
          int want = (int)roundf(x[i] / s) + z;
          want = want < qmin ? qmin : want > qmax ? qmax : want;
          bad_code += q != want;
          int qr = (int)roundf(x[i] / ws) + wz;
          qr = qr < qmin ? qmin : qr > qmax ? qmax : qr;
          const float y = (float)(q - z) * s, yr = (float)(qr - wz) * ws;
          l_got += ((double)x[i] - y) * ((double)x[i] - y);
          l_rtn += ((double)x[i] - yr) * ((double)x[i] - yr);
          e2 += ((double)x[i] - y) * ((double)x[i] - y);
          r2 += (double)x[i] * x[i];
        }
        worse += l_got > l_rtn;
      }
    if (bad_code || bad_scale || worse)
      printf("# %s: %d codes not nearest, %d scales/zero points off, %d groups worse than RTN\n",
             cases[k].step, bad_code, bad_scale, worse);
    CHECK_EQ_INT(bad_code + bad_scale + worse, 0);
    const json_t *rt = report_tensor(j.report, ts[0].name);
    CHECK_NEAR(rnum(rt, "rel_l2"), sqrt(e2 / r2), 1e-6);
    CHECK_EQ_INT(rnum(rt, "bytes_out"), 4 * (R * PW + R * NG + (zp ? ((R + pf - 1) / pf) * NG : 0)) + 16);
    printf("# %s: rel_l2 %.4f\n", cases[k].step, sqrt(e2 / r2));
    json_t *qc = json_loads(meta(j.out, "quantization_config") ? meta(j.out, "quantization_config") : "", 0, NULL);
    if (k_dense)
      CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(qc, "ignore"), 0)), "blk.0.attn_k");
    else
      CHECK_EQ_INT(json_array_size(json_object_get(qc, "ignore")), 0);
    json_decref(qc);
    job_free(&j);
  }
  cz_model_close(in);
  free(ts[0].v);
  free(ts[1].v);
}

/* NF4 artifacts decoded here, in bitsandbytes' serialization (formats.md 4.11): absmax per
 * block of 64 along the rows (closed form), every index the nearest code by brute force
 * (lower on a tie), two a byte with the first in the high nibble; with double quantization
 * the absmax codes are the nearest values of the dynamic map (recomputed here) to
 * (absmax - mean) / the absmax of their 256, and the indices are nearest against the absmax
 * the decoder sees. The linear int8 code this replaced is computed alongside for the figures. */
static void test_nf4_artifact(void) {
  t_tensor t = {"blk.0.ffn_down.weight", CZ_TYPE_F32, 160, 128, NULL};
  t_fill_normal(&t, 0.02, 31);
  for (int j = 0; j < 64; j++) t.v[5 * 128 + j] = 0;  /* an all-zero block */
  for (int j = 0; j < 128; j++) t.v[7 * 128 + j] *= 6;  /* a row of large weights */
  cz_model *in = t_model("nf4.safetensors", &t, 1);
  const int64_t R = 160, C = 128, B = 64, NB = 2, n = R * NB, nch = (n + 255) / 256;
  float dmap[256];
  dyn_map_ref(dmap);
  for (int dq = 0; in && dq < 2; dq++) {
    job j;
    if (run_job(in, dq ? "{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"nf4\",\"double_quant\":true}]}"
                       : "{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"nf4\"}]}",
                "nf4.out.safetensors", &j) != CZ_E_OK) {
      job_ok(&j);
      job_free(&j);
      continue;
    }
    const cz_tensor *pk = cz_model_find(j.out, "blk.0.ffn_down.weight");
    const cz_tensor *am = cz_model_find(j.out, "blk.0.ffn_down.weight.absmax");
    const cz_tensor *qm = cz_model_find(j.out, "blk.0.ffn_down.weight.quant_map");
    const cz_tensor *na = cz_model_find(j.out, "blk.0.ffn_down.weight.nested_absmax");
    const cz_tensor *nm = cz_model_find(j.out, "blk.0.ffn_down.weight.nested_quant_map");
    const cz_tensor *qs = cz_model_find(j.out, "blk.0.ffn_down.weight.quant_state.bitsandbytes__nf4");
    CHECK(pk && am && qm && qs && (dq ? na && nm : !na && !nm));
    if (!pk || !am || !qm || !qs || (dq && (!na || !nm)) || pk->type != CZ_TYPE_U8 ||
        cz_tensor_nelements(pk) != R * C / 2 || pk->n_dims != 2 || pk->ne[0] != 1 ||
        am->type != (dq ? CZ_TYPE_U8 : CZ_TYPE_F32) || cz_tensor_nelements(am) != n ||
        qm->type != CZ_TYPE_F32 || cz_tensor_nelements(qm) != 16 || qs->type != CZ_TYPE_U8 ||
        (dq && (na->type != CZ_TYPE_F32 || cz_tensor_nelements(na) != nch ||
                nm->type != CZ_TYPE_F32 || cz_tensor_nelements(nm) != 256))) {
      printf("# nf4 dq=%d: missing or mis-sized tensors\n", dq);
      cz_test_failures++;
      job_free(&j);
      continue;
    }
    CHECK(memcmp(qm->data, cz_nf4_code, sizeof cz_nf4_code) == 0);
    if (dq) CHECK(memcmp(nm->data, dmap, sizeof dmap) == 0);
    /* the quant_state, as transformers' QuantState.from_dict reads it */
    json_t *st = json_loadb((const char *)qs->data, (size_t)cz_tensor_nelements(qs), 0, NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(st, "quant_type")), "nf4");
    CHECK_EQ_STR(json_string_value(json_object_get(st, "dtype")), "float32");
    CHECK_EQ_INT(json_integer_value(json_object_get(st, "blocksize")), B);
    CHECK_EQ_INT(json_integer_value(json_array_get(json_object_get(st, "shape"), 0)), R);
    CHECK_EQ_INT(json_integer_value(json_array_get(json_object_get(st, "shape"), 1)), C);
    CHECK_EQ_INT(json_integer_value(json_object_get(st, "nested_blocksize")), dq ? 256 : 0);
    if (dq) CHECK_EQ_STR(json_string_value(json_object_get(st, "nested_dtype")), "float32");
    /* the quantization_config: transformers' BitsAndBytesConfig keys; no module left dense */
    json_t *qc = json_loads(meta(j.out, "quantization_config") ? meta(j.out, "quantization_config") : "", 0, NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(qc, "quant_method")), "bitsandbytes");
    CHECK(json_is_true(json_object_get(qc, "load_in_4bit")));
    CHECK(json_is_false(json_object_get(qc, "load_in_8bit")));
    CHECK_EQ_STR(json_string_value(json_object_get(qc, "bnb_4bit_quant_type")), "nf4");
    CHECK(json_is_boolean(json_object_get(qc, "bnb_4bit_use_double_quant")) &&
          json_boolean_value(json_object_get(qc, "bnb_4bit_use_double_quant")) == (dq != 0));
    CHECK_EQ_STR(json_string_value(json_object_get(qc, "bnb_4bit_quant_storage")), "uint8");
    CHECK(json_is_array(json_object_get(qc, "llm_int8_skip_modules")) &&
          json_array_size(json_object_get(qc, "llm_int8_skip_modules")) == 0);
    CHECK(json_object_get(qc, "ignore") == NULL && json_object_get(qc, "format") == NULL);
    json_decref(qc);
    const float off = (float)json_number_value(json_object_get(st, "nested_offset"));
    json_decref(st);
    float amax[320], dec[320];
    double mean = 0;
    for (int64_t i = 0; i < n; i++) {
      amax[i] = 0;
      for (int64_t k = 0; k < B; k++) amax[i] = fmaxf(amax[i], fabsf(t.v[i * B + k]));
      mean += amax[i];
    }
    int bad_scale = 0, bad_idx = 0;
    if (dq) {
      CHECK(off == (float)(mean / (double)n));
      double e_dyn = 0, e_lin = 0, a2 = 0;
      for (int64_t c0 = 0; c0 < n; c0 += 256) {
        float m = 0, s;
        for (int64_t i = c0; i < n && i < c0 + 256; i++) m = fmaxf(m, fabsf(amax[i] - off));
        memcpy(&s, na->data + 4 * (c0 / 256), 4);
        bad_scale += s != m;
        for (int64_t i = c0; i < n && i < c0 + 256; i++) {
          const int want = s > 0 ? dyn_nearest(dmap, (amax[i] - off) / s) : 127;
          bad_scale += am->data[i] != want;
          const float d = dmap[am->data[i]] * s;
          dec[i] = d + off;
          /* the linear int8 code of before: (a - off) / (m / 127) rounded */
          const float ls = m / 127.0f;
          const float lin = ls > 0 ? roundf((amax[i] - off) / ls) * ls + off : off;
          e_dyn += ((double)dec[i] - amax[i]) * ((double)dec[i] - amax[i]);
          e_lin += ((double)lin - amax[i]) * ((double)lin - amax[i]);
          a2 += (double)amax[i] * amax[i];
        }
      }
      printf("# nf4 double quantization: absmax relative L2 error %.3g (dynamic map), %.3g "
             "(linear int8 code)\n", sqrt(e_dyn / a2), sqrt(e_lin / a2));
    } else {
      CHECK(off == 0.0f);
      for (int64_t i = 0; i < n; i++) {
        memcpy(&dec[i], am->data + 4 * i, 4);
        bad_scale += dec[i] != amax[i];
      }
    }
    double e2 = 0, r2 = 0;
    for (int64_t e = 0; e < R * C; e++) {
      const float a = dec[e / B], v = a > 0 ? t.v[e] / a : 0;
      const float cv = v > 1 ? 1 : v < -1 ? -1 : v;
      int best = 0;
      for (int k = 1; k < 16; k++)
        if (fabs((double)cv - cz_nf4_code[k]) < fabs((double)cv - cz_nf4_code[best])) best = k;
      const int got = e % 2 ? pk->data[e / 2] & 15 : pk->data[e / 2] >> 4;
      bad_idx += got != best;
      const float y = cz_nf4_code[got] * a;
      e2 += ((double)t.v[e] - y) * ((double)t.v[e] - y);
      r2 += (double)t.v[e] * t.v[e];
    }
    if (bad_scale || bad_idx) printf("# nf4 dq=%d: %d absmax values off, %d indices not nearest\n", dq, bad_scale, bad_idx);
    CHECK_EQ_INT(bad_scale + bad_idx, 0);
    const json_t *rt = report_tensor(j.report, t.name);
    CHECK_NEAR(rnum(rt, "rel_l2"), sqrt(e2 / r2), 1e-6);
    CHECK_EQ_INT(rnum(rt, "bytes_out"), R * C / 2 + (dq ? n + 4 * nch + 4 * 256 : 4 * n) + 64 +
                                            cz_tensor_nelements(qs));
    CHECK_EQ_STR(json_string_value(json_object_get(rt, "output_type")), "nf4");
    printf("# nf4 block 64%s: rel_l2 %.4f, %.4f bits per weight (%.4f without the per-tensor "
           "maps and quant_state)\n", dq ? " + double quantization" : "", sqrt(e2 / r2),
           rnum(rt, "bytes_out") * 8.0 / (double)(R * C),
           (R * C / 2 + (dq ? n + 4 * nch : 4 * n)) * 8.0 / (double)(R * C));
    job_free(&j);
  }
  cz_model_close(in);
  free(t.v);
}

/* FP8 E4M3 artifacts: scales max|w| / 448 per row or per 128x128 block (edge blocks smaller),
 * every weight the nearest of the 256 E4M3 values (the exhaustive table; ties to the even
 * mantissa), quantization_config float-quantized. */
static void test_fp8_artifact(void) {
  t_tensor t = {"blk.0.ffn_gate.weight", CZ_TYPE_BF16, 200, 300, NULL};
  t_fill_normal(&t, 0.03, 41);
  t.v[7] = t_round(CZ_TYPE_BF16, 0.9f);  /* an outlier in block (0, 0) */
  cz_model *in = t_model("fp8.safetensors", &t, 1);
  float table[256];
  for (int c = 0; c < 256; c++) table[c] = cz_f8e4m3_to_fp32((uint8_t)c);
  const int64_t R = 200, C = 300;
  for (int blk = 0; in && blk < 2; blk++) {
    job j;
    if (run_job(in, blk ? "{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"fp8_e4m3\",\"block\":[128,128]}]}"
                        : "{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"fp8_e4m3\"}]}",
                "fp8.out.safetensors", &j) != CZ_E_OK) {
      job_ok(&j);
      job_free(&j);
      continue;
    }
    const int64_t br = blk ? 128 : 1, bc = blk ? 128 : C, NR = (R + br - 1) / br, NC = (C + bc - 1) / bc;
    const cz_tensor *q = cz_model_find(j.out, "blk.0.ffn_gate.weight");
    const cz_tensor *sc = cz_model_find(j.out, "blk.0.ffn_gate.weight_scale");
    if (!q || !sc || q->type != CZ_TYPE_F8_E4M3 || sc->type != CZ_TYPE_F32 ||
        cz_tensor_nelements(sc) != NR * NC || sc->ne[0] != NC) {
      printf("# fp8 block=%d: missing or mis-typed tensors\n", blk);
      cz_test_failures++;
      job_free(&j);
      continue;
    }
    int bad_scale = 0, bad_code = 0;
    double e2 = 0, r2 = 0;
    for (int64_t bi = 0; bi < NR; bi++)
      for (int64_t bj = 0; bj < NC; bj++) {
        float amax = 0, s;
        for (int64_t r = bi * br; r < R && r < (bi + 1) * br; r++)
          for (int64_t c = bj * bc; c < C && c < (bj + 1) * bc; c++) amax = fmaxf(amax, fabsf(t.v[r * C + c]));
        memcpy(&s, sc->data + 4 * (bi * NC + bj), 4);
        bad_scale += s != amax / 448.0f;
        for (int64_t r = bi * br; r < R && r < (bi + 1) * br; r++)
          for (int64_t c = bj * bc; c < C && c < (bj + 1) * bc; c++) {
            const double v = (double)(t.v[r * C + c] / s);
            int best = -1;
            for (int k = 0; k < 256; k++) {
              if (isnan(table[k])) continue;
              double d = fabs(v - table[k]), db = best < 0 ? INFINITY : fabs(v - table[best]);
              if (best < 0 || d < db || (d == db && (k & 1) == 0 && (best & 1) == 1)) best = k;
            }
            const uint8_t got = q->data[r * C + c];
            bad_code += table[got] != table[best];
            const float y = table[got] * s;
            e2 += ((double)t.v[r * C + c] - y) * ((double)t.v[r * C + c] - y);
            r2 += (double)t.v[r * C + c] * t.v[r * C + c];
          }
      }
    if (bad_scale || bad_code) printf("# fp8 block=%d: %d scales off, %d codes not nearest\n", blk, bad_scale, bad_code);
    CHECK_EQ_INT(bad_scale + bad_code, 0);
    const json_t *rt = report_tensor(j.report, t.name);
    CHECK_NEAR(rnum(rt, "rel_l2"), sqrt(e2 / r2), 1e-6);
    json_t *qc = json_loads(meta(j.out, "quantization_config") ? meta(j.out, "quantization_config") : "", 0, NULL);
    json_t *w = json_object_get(json_object_get(json_object_get(qc, "config_groups"), "group_0"), "weights");
    CHECK_EQ_STR(json_string_value(json_object_get(qc, "format")), "float-quantized");
    CHECK_EQ_STR(json_string_value(json_object_get(w, "strategy")), blk ? "block" : "channel");
    CHECK_EQ_INT(json_integer_value(json_array_get(json_object_get(w, "block_structure"), 1)), blk ? 128 : 0);
    json_decref(qc);
    printf("# fp8_e4m3 %s: rel_l2 %.5f\n", blk ? "128x128 blocks" : "per channel", sqrt(e2 / r2));
    job_free(&j);
  }
  cz_model_close(in);
  free(t.v);
}

/* ---- compressd decompress on artifacts whose layout lies (the artifact is untrusted) ---- */

/* Rewrite art into path with every tensor as it is and compressd.layout replaced by layout. */
static bool rewrite(const cz_model *art, const char *path, const char *layout) {
  cz_error err = {0};
  cz_layout *l = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  bool ok = l && cz_layout_set_meta(l, "compressd.layout", layout, &err) == CZ_E_OK;
  for (size_t i = 0; ok && i < art->n_tensors; i++)
    ok = cz_layout_add_tensor(l, art->tensors[i].name, art->tensors[i].type, art->tensors[i].n_dims,
                              art->tensors[i].ne, &err) == CZ_E_OK;
  ok = ok && cz_layout_finish(l, &err) == CZ_E_OK;
  int fd = ok ? open(path, O_RDWR | O_CREAT | O_TRUNC, 0644) : -1;
  ok = ok && fd >= 0 && cz_layout_write_frame(l, fd, &err) == CZ_E_OK;
  for (size_t i = 0; ok && i < art->n_tensors; i++)
    ok = pwrite(fd, art->tensors[i].data, (size_t)l->tensors[i].nbytes,
                (off_t)l->tensors[i].file_offset) == (ssize_t)l->tensors[i].nbytes;
  if (fd >= 0) close(fd);
  if (!ok) printf("# test bug: %s\n", err.msg);
  cz_layout_free(l);
  return ok;
}

static cz_err_code decompress_path(const char *in_path, cz_error *err) {
  char out[512];
  tmp_path(out, sizeof out, "lie.dense.safetensors");
  cz_model *m = NULL;
  cz_err_code rc = cz_model_open(in_path, &m, err);
  if (rc) return rc;
  int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
  rc = cz_decompress(m, CZ_TYPE_F32, fd, NULL, err);
  close(fd);
  cz_model_close(m);
  return rc;
}

static void test_decompress_lies(void) {
  t_tensor t = {"blk.0.attn_q.weight", CZ_TYPE_F32, 4, 128, NULL};
  t_fill_normal(&t, 0.1, 9);
  cz_model *in = t_model("lie.safetensors", &t, 1);
  static const struct {
    const char *step, *find, *repl;
  } lies[] = {
      {"\"scheme\":\"int4\",\"group_size\":32,\"symmetric\":false", "\"bits\":4", "\"bits\":3"},
      {"\"scheme\":\"int4\",\"group_size\":32,\"symmetric\":false", "\"bits\":4", "\"bits\":16"},
      {"\"scheme\":\"int4\",\"group_size\":32,\"symmetric\":false", "\"group_size\":32", "\"group_size\":0"},
      {"\"scheme\":\"int4\",\"group_size\":32,\"symmetric\":false", "\"group_size\":32", "\"group_size\":64"},
      {"\"scheme\":\"int4\",\"group_size\":32,\"symmetric\":false", "\"shape\":[4,128]", "\"shape\":[4,256]"},
      {"\"scheme\":\"int4\",\"group_size\":32,\"symmetric\":false", "weight_zero_point\"", "weight_nothing\""},
      {"\"scheme\":\"int2\",\"group_size\":32", "\"weight_shape\":\"blk.0.attn_q.weight_shape\"", "\"weight_shape\":\"blk.0.attn_q.weight_scale\""},
      {"\"scheme\":\"nf4\",\"double_quant\":true", "\"double_quant\":true", "\"double_quant\":false"},
      {"\"scheme\":\"nf4\",\"double_quant\":true", "\"block_size\":64", "\"block_size\":0"},
      {"\"scheme\":\"nf4\"", "\"block_size\":64", "\"block_size\":32"},
      {"\"scheme\":\"nf4\"", "\"shape\":[4,128]", "\"shape\":[4,256]"},
      {"\"scheme\":\"nf4\",\"double_quant\":true", "\"quant_state\":\"blk.0.attn_q.weight.quant_state", "\"quant_state\":\"blk.0.attn_q.weight.absmax\",\"x\":\"x"},
      {"\"scheme\":\"nf4\"", "\"quant_state\":\"blk.0.attn_q.weight.quant_state", "\"quant_state\":\"blk.0.attn_q.weight.absmax\",\"x\":\"x"},
      {"\"scheme\":\"nf4\",\"double_quant\":true", "\"nested_quant_map\":\"blk.0.attn_q.weight.nested_quant_map\"", "\"nested_quant_map\":\"blk.0.attn_q.weight.quant_map\""},
      {"\"scheme\":\"fp8_e4m3\",\"block\":[2,64]", "\"block\":[2,64]", "\"block\":[0,64]"},
      {"\"scheme\":\"fp8_e4m3\",\"block\":[2,64]", "\"block\":[2,64]", "\"block\":[2,32]"},
      {"\"scheme\":\"fp8_e4m3\"", "\"scale\":\"blk.0.attn_q.weight_scale\"", "\"scale\":\"blk.0.attn_q.weight\""},
  };
  char path[512];
  tmp_path(path, sizeof path, "lie.art.safetensors");
  for (size_t c = 0; in && c < sizeof lies / sizeof lies[0]; c++) {
    char recipe[256];
    snprintf(recipe, sizeof recipe, "{\"steps\":[{\"op\":\"quantize\",%s}]}", lies[c].step);
    job j;
    if (run_job(in, recipe, "lie.out.safetensors", &j) != CZ_E_OK) {
      job_ok(&j);
      job_free(&j);
      continue;
    }
    const char *layout = meta(j.out, "compressd.layout");
    char text[4096];
    snprintf(text, sizeof text, "%s", layout ? layout : "");
    cz_error e = {0};
    /* the untouched layout decompresses: the rewrite itself is sound */
    cz_err_code rc = rewrite(j.out, path, text) ? decompress_path(path, &e) : CZ_E_INTERNAL;
    if (rc) printf("# %s: the honest rewrite fails: %s\n", lies[c].step, e.msg);
    CHECK_EQ_INT(rc, CZ_E_OK);
    char *p = strstr(text, lies[c].find);
    if (!p) {
      printf("# test bug: %s not in %s\n", lies[c].find, text);
      cz_test_failures++;
      job_free(&j);
      continue;
    }
    char rest[4096];
    snprintf(rest, sizeof rest, "%s", p + strlen(lies[c].find));
    snprintf(p, sizeof text - (size_t)(p - text), "%s%s", lies[c].repl, rest);
    rc = rewrite(j.out, path, text) ? decompress_path(path, &e) : CZ_E_INTERNAL;
    printf("# %s -> %s: %s\n", lies[c].find, lies[c].repl, e.msg);
    CHECK_EQ_INT(rc, CZ_E_INVALID_METADATA);
    job_free(&j);
  }
  cz_model_close(in);
  free(t.v);
}

static void test_validation(void) {
  t_tensor t = {"blk.0.attn_q.weight", CZ_TYPE_F32, 8, 64, NULL};
  t_fill_normal(&t, 1, 3);
  cz_model *in = t_model("val.safetensors", &t, 1);
  static const struct {
    const char *recipe;
    cz_err_code code;
    const char *field;
  } cases[] = {
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int5\"}]}", CZ_E_UNKNOWN_METHOD, "steps[0]"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int4\",\"group_size\":48}]}", CZ_E_INVALID_PARAMETER, "steps[0].group_size"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int4\",\"group_size\":256}]}", CZ_E_INVALID_PARAMETER, "steps[0].group_size"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int4\",\"granularity\":\"channel\",\"group_size\":32}]}", CZ_E_INVALID_PARAMETER, "steps[0].group_size"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int4\",\"hqq\":true,\"symmetric\":true}]}", CZ_E_INVALID_PARAMETER, "steps[0].hqq"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int8\",\"hqq\":true}]}", CZ_E_INVALID_PARAMETER, "steps[0].hqq"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int4\",\"bits\":4}]}", CZ_E_INVALID_PARAMETER, "steps[0].bits"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int4\"}],\"output\":{\"format\":\"gguf\"}}", CZ_E_INVALID_RECIPE, "output.format"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"nf4\",\"block_size\":48}]}", CZ_E_INVALID_PARAMETER, "steps[0].block_size"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"nf4\",\"double_quant\":1}]}", CZ_E_INVALID_PARAMETER, "steps[0].double_quant"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"fp8_e4m3\",\"block\":[128]}]}", CZ_E_INVALID_PARAMETER, "steps[0].block"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"fp8_e4m3\",\"block\":[0,128]}]}", CZ_E_INVALID_PARAMETER, "steps[0].block"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"fp8_e4m3\",\"granularity\":\"channel\",\"block\":[128,128]}]}", CZ_E_INVALID_PARAMETER, "steps[0].block"},
      {"{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"fp8_e5m2\"}]}", CZ_E_UNKNOWN_METHOD, "steps[0]"},
  };
  for (size_t i = 0; in && i < sizeof cases / sizeof cases[0]; i++) {
    job j;
    cz_err_code rc = run_job(in, cases[i].recipe, "val.out.safetensors", &j);
    if (rc != cases[i].code || !strstr(j.err.msg, cases[i].field))
      printf("# %s: got %s \"%s\"\n", cases[i].recipe, cz_err_name(rc), j.err.msg);
    CHECK_EQ_INT(rc, cases[i].code);
    CHECK_CONTAINS(j.err.msg, cases[i].field);
    job_free(&j);
  }
  cz_model_close(in);
  free(t.v);
}

int main(void) {
  tmp_setup("test_quant_ct");
  static const cz_test_case cases[] = {
      CZ_TEST(test_asym_int4_closed_form), CZ_TEST(test_hqq_never_worse),
      CZ_TEST(test_nf4_nearest),           CZ_TEST(test_dyn_map),           CZ_TEST(test_int4_artifact_bytes),
      CZ_TEST(test_int_schemes),           CZ_TEST(test_nf4_artifact),
      CZ_TEST(test_fp8_artifact),          CZ_TEST(test_decompress_lies),
      CZ_TEST(test_validation),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  tmp_cleanup();
  return rc;
}
