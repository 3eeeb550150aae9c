/* test_quants: the q4_0 q4_1 q5_0 q5_1 iq4_nl iq4_xs mxfp4 tq1_0 tq2_0 kernels against ggml.
 *
 * - golden: for every type and distribution of tests/data/ggml-quants.safetensors, the
 *   table's quantize reproduces ggml's bytes without and (where the golden has them) with
 *   importance weights, and to_f32 reproduces ggml's dequantized floats bit for bit;
 * - reference: from_f32 (ggml's *_ref) equals quantize without importance, except iq4_nl whose
 *   file path searches scales that its reference does not (quant-formats.md 1.4);
 * - avx2: the AVX2 twins of the legacy, mxfp4, tq1_0, tq2_0 and iq4_nl references (also on
 *   every block count 1 .. 40, and on super-blocks of rounding ties, every tq1_0 digit string,
 *   scales near FLT_MAX and FLT_MIN, iq4 code-point ties and zero groups), of the legacy dequantizers (bit for bit, NaN and infinite scales included),
 *   and of the file path of the legacy types,
 *   iq4_nl and iq4_xs (with and without importance), write the same bytes as the scalar code on the golden
 *   inputs, random rows and blocks aimed at their reductions; the golden check runs both
 *   implementations of those file paths;
 * - pipeline: {"op":"quantize","type":T} over tiny-llama-f16.gguf gives, for every tensor that
 *   llama-quantize wrote as T in the manifest's T run, the same sha256; and the manifest's
 *   --imatrix runs are reproduced by calling quantize with the imatrix GGUF's importance
 *   (in_sum2 / counts, as llama-quantize loads it).
 * One TAP line per (type, distribution, variant), per type for the reference check and per
 * manifest run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "cz_model.h"
#include "cz_pipeline.h"
#include "cz_quants.h"
#include "cz_sha256.h"
#include "cz_test.h"
#include "cz_type.h"

/* tests/data/README.md: every golden input is F32 [4,512]: 4 rows of 512. */
enum { ROWS = 4, COLS = 512, N = ROWS * COLS };

typedef struct {
  cz_type type;
  bool imatrix_golden;   /* the golden holds <type>.<dist>.imatrix.* */
  bool ref_is_file_path; /* from_f32 == quantize(NULL) */
} qtype;

static const qtype TYPES[] = {
    {CZ_TYPE_Q4_0, true, true},   {CZ_TYPE_Q4_1, true, true},   {CZ_TYPE_Q5_0, true, true},
    {CZ_TYPE_Q5_1, true, true},   {CZ_TYPE_IQ4_NL, true, false}, {CZ_TYPE_IQ4_XS, true, true},
    {CZ_TYPE_MXFP4, false, true}, {CZ_TYPE_TQ1_0, false, true}, {CZ_TYPE_TQ2_0, false, true},
};
enum { N_TYPES = sizeof TYPES / sizeof TYPES[0] };

static const char *const DISTS[] = {"gauss", "cos", "uniform", "heavy", "edge"};
enum { N_DISTS = sizeof DISTS / sizeof DISTS[0] };

static cz_model *golden;
static char golden_path[4096];
static cz_error golden_err;
static char tmpdir[256];

/* ---- helpers ------------------------------------------------------------------------------- */

static const char *tname(cz_type t) { return cz_type_get(t)->name; }

/* Bytes of n elements of t (rows of whole blocks). */
static size_t nbytes_of(cz_type t, int64_t n) { return (size_t)cz_type_row_size(t, n); }

/* Count differing bytes and show the first, so that a failure says where. */
static void check_same_bytes(const char *what, const void *got, const void *want, size_t n) {
  const uint8_t *g = got, *w = want;
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (g[i] == w[i]) continue;
    if (bad++ == 0)
      printf("# %s: first difference at byte %zu: got 0x%02x, want 0x%02x\n", what, i, g[i], w[i]);
  }
  if (bad) {
    printf("# %s: %zu of %zu bytes differ\n", what, bad, n);
    cz_test_failures++;
  }
}

/* A golden tensor by name with the expected type and size, or NULL after recording why. */
static const cz_tensor *golden_tensor(const char *name, cz_type type, uint64_t nbytes) {
  if (golden == NULL) {
    printf("# cannot open %s: %s\n", golden_path, golden_err.msg);
    cz_test_failures++;
    return NULL;
  }
  const cz_tensor *t = cz_model_find(golden, name);
  if (t == NULL || t->type != type || t->nbytes != nbytes) {
    printf("# golden tensor %s missing or not %s of %llu bytes\n", name, tname(type),
           (unsigned long long)nbytes);
    cz_test_failures++;
    return NULL;
  }
  return t;
}

/* Golden floats into an aligned copy (mapping offsets need not be 4-aligned). */
static bool load_floats(const char *name, float *x, size_t n) {
  const cz_tensor *t = golden_tensor(name, CZ_TYPE_F32, n * sizeof(float));
  if (t == NULL) return false;
  memcpy(x, t->data, n * sizeof(float));
  return true;
}

static void sha256_hex_of(const void *data, size_t n, char hex[65]) {
  cz_sha256 c;
  uint8_t d[32];
  cz_sha256_init(&c);
  cz_sha256_update(&c, data, n);
  cz_sha256_final(&c, d);
  cz_sha256_hex(d, hex);
}

/* xorshift64 and Box-Muller: deterministic test data. */
static uint64_t rng_state = 88172645463325252ULL;
static double rng_unit(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

static void fill_random(float *x, int64_t n, double scale) {
  for (int64_t i = 0; i < n; i++) {
    double u = rng_unit(), v = rng_unit();
    double g = sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
    x[i] = (float)(g * scale);
    if (i % 97 == 5) x[i] *= 40.0f; /* outliers */
    if (i % 389 == 11) x[i] = 0.0f;
  }
}

/* The file path's scalar and AVX2 implementations (with and without importance), for the
 * types that have both (the legacy types also have twins of from_f32, see avx2_of). */
typedef size_t (*quantize_fn)(const float *, void *, int64_t, int64_t, const float *);
typedef bool (*quantize_avx2_fn)(const float *, void *, int64_t, int64_t, const float *);

static bool file_path_impls(cz_type t, quantize_fn *scalar, quantize_avx2_fn *avx2) {
  switch ((int)t) {
    case CZ_TYPE_Q4_0: *scalar = cz_q4_0_quantize_scalar; *avx2 = cz_q4_0_quantize_avx2; return true;
    case CZ_TYPE_Q4_1: *scalar = cz_q4_1_quantize_scalar; *avx2 = cz_q4_1_quantize_avx2; return true;
    case CZ_TYPE_Q5_0: *scalar = cz_q5_0_quantize_scalar; *avx2 = cz_q5_0_quantize_avx2; return true;
    case CZ_TYPE_Q5_1: *scalar = cz_q5_1_quantize_scalar; *avx2 = cz_q5_1_quantize_avx2; return true;
    case CZ_TYPE_IQ4_NL: *scalar = cz_iq4_nl_quantize_scalar; *avx2 = cz_iq4_nl_quantize_avx2; return true;
    case CZ_TYPE_IQ4_XS: *scalar = cz_iq4_xs_quantize_scalar; *avx2 = cz_iq4_xs_quantize_avx2; return true;
    default: return false;
  }
}

/* ---- golden: one type, one distribution, with or without importance ----------------------- */

static void check_golden(const qtype *q, const char *dist, bool weighted) {
  static float x[N], imp[COLS], y[N], want_y[N];
  static uint8_t got[N * 2], plain_want[N * 2];
  const cz_type_traits *tr = cz_type_get(q->type);
  const size_t nb = nbytes_of(q->type, N);
  char name[128], qname[128], dname[128];
  CHECK(tr->quantize != NULL && tr->to_f32 != NULL && tr->from_f32 != NULL);
  CHECK(!tr->requires_imatrix);
  if (tr->quantize == NULL || tr->to_f32 == NULL) return;

  snprintf(name, sizeof name, "input.%s", dist);
  if (!load_floats(name, x, N)) return;
  snprintf(name, sizeof name, "imatrix.%s", dist);
  if (!load_floats(name, imp, COLS)) return;
  const char *variant = weighted ? ".imatrix" : "";
  snprintf(qname, sizeof qname, "%s.%s%s.quant", tr->name, dist, variant);
  snprintf(dname, sizeof dname, "%s.%s%s.dequant", tr->name, dist, variant);
  const cz_tensor *tq = golden_tensor(qname, CZ_TYPE_U8, nb);
  const cz_tensor *td = golden_tensor(dname, CZ_TYPE_F32, sizeof y);
  if (tq == NULL || td == NULL) return;
  memcpy(want_y, td->data, sizeof want_y);

  memset(got, 0xA5, sizeof got);
  size_t n_written = tr->quantize(x, got, ROWS, COLS, weighted ? imp : NULL);
  CHECK_EQ_INT(n_written, nb);
  check_same_bytes(qname, got, tq->data, nb);
  CHECK(got[nb] == 0xA5); /* nothing past the end */
  /* quantize took the AVX2 twin if the CPU has AVX2: the scalar code must match ggml too */
  quantize_fn scalar;
  quantize_avx2_fn fast;
  if (file_path_impls(q->type, &scalar, &fast)) {
    memset(got, 0xA5, sizeof got);
    CHECK_EQ_INT(scalar(x, got, ROWS, COLS, weighted ? imp : NULL), nb);
    char sname[160];
    snprintf(sname, sizeof sname, "%s (scalar)", qname);
    check_same_bytes(sname, got, tq->data, nb);
  }

  /* dequantize ggml's bytes (read from the unaligned mapping directly) */
  tr->to_f32(tq->data, y, N);
  check_same_bytes(dname, y, want_y, sizeof y);

  /* types that ignore importance weights: with them, still the plain bytes */
  if (!weighted && !q->imatrix_golden) {
    memcpy(plain_want, tq->data, nb);
    memset(got, 0, sizeof got);
    tr->quantize(x, got, ROWS, COLS, imp);
    check_same_bytes("quantize with an ignored imatrix", got, plain_want, nb);
  }
}

/* ---- reference path -------------------------------------------------------------------------- */

/* from_f32 row by row against quantize(NULL), on the golden inputs and on random rows, into
 * an odd destination offset (kernels must not assume alignment). */
static void check_reference(const qtype *q) {
  const cz_type_traits *tr = cz_type_get(q->type);
  enum { RROWS = 3, RCOLS = 768 }; /* 768: a multiple of 32 and of 256 */
  static float x[RROWS * RCOLS + N], y[RROWS * RCOLS];
  static uint8_t a[RROWS * RCOLS * 2 + 1], b[RROWS * RCOLS * 2 + 1];
  if (tr->from_f32 == NULL || tr->quantize == NULL) {
    CHECK(tr->from_f32 != NULL && tr->quantize != NULL);
    return;
  }
  size_t differing_inputs = 0, inputs = 0;
  for (int d = 0; d <= N_DISTS; d++) {
    int64_t rows = ROWS, cols = COLS;
    char what[128];
    if (d < N_DISTS) {
      char name[64];
      snprintf(name, sizeof name, "input.%s", DISTS[d]);
      if (!load_floats(name, x, N)) return;
      snprintf(what, sizeof what, "%s reference on %s", tr->name, DISTS[d]);
    } else {
      rows = RROWS;
      cols = RCOLS;
      fill_random(x, rows * cols, 0.02);
      snprintf(what, sizeof what, "%s reference on random rows", tr->name);
    }
    const size_t row_bytes = nbytes_of(q->type, cols);
    for (int64_t r = 0; r < rows; r++)
      tr->from_f32(x + r * cols, a + 1 + (size_t)r * row_bytes, cols);
    CHECK_EQ_INT(tr->quantize(x, b + 1, rows, cols, NULL), rows * row_bytes);
    inputs++;
    if (q->ref_is_file_path) {
      check_same_bytes(what, a + 1, b + 1, (size_t)rows * row_bytes);
    } else {
      differing_inputs += memcmp(a + 1, b + 1, (size_t)rows * row_bytes) != 0;
    }
    /* what the reference writes decodes to something close to its input */
    tr->to_f32(a + 1, y, rows * cols);
    double err = 0, ref = 0;
    for (int64_t i = 0; i < rows * cols; i++) {
      err += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
      ref += (double)x[i] * x[i];
    }
    /* ternary codes are lossy by design: just better than writing zeros */
    const double bound = q->type == CZ_TYPE_TQ1_0 || q->type == CZ_TYPE_TQ2_0 ? 0.75 : 0.25;
    if (!(err <= bound * ref)) {
      printf("# %s: relative squared error %g\n", what, ref > 0 ? err / ref : err);
      cz_test_failures++;
    }
  }
  /* iq4_nl: the file path searches scales the reference does not (quant-formats.md 1.4) */
  if (!q->ref_is_file_path && differing_inputs == 0) {
    printf("# %s: reference and file path agree on all %zu inputs; expected them to differ\n",
           tr->name, inputs);
    cz_test_failures++;
  }
}

/* ---- AVX2 twins ------------------------------------------------------------------------------ */

typedef bool (*avx2_fn)(const float *src, void *dst, int64_t n);

static avx2_fn avx2_of(cz_type t) {
  switch ((int)t) {
    case CZ_TYPE_Q4_0: return cz_q4_0_from_f32_avx2;
    case CZ_TYPE_Q4_1: return cz_q4_1_from_f32_avx2;
    case CZ_TYPE_Q5_0: return cz_q5_0_from_f32_avx2;
    case CZ_TYPE_Q5_1: return cz_q5_1_from_f32_avx2;
    case CZ_TYPE_MXFP4: return cz_mxfp4_from_f32_avx2;
    case CZ_TYPE_TQ1_0: return cz_tq1_0_from_f32_avx2;
    case CZ_TYPE_TQ2_0: return cz_tq2_0_from_f32_avx2;
    case CZ_TYPE_IQ4_NL: return cz_iq4_nl_from_f32_avx2; /* its reference, not its file path */
    default: return NULL;
  }
}

typedef void (*ref_fn)(const float *src, void *dst, int64_t n);

/* The scalar reference an AVX2 twin must match: the table's from_f32, except for iq4_nl,
 * whose from_f32 takes the twin itself. */
static ref_fn scalar_ref_of(cz_type t) {
  if (t == CZ_TYPE_IQ4_NL) return cz_iq4_nl_from_f32_scalar;
  return cz_type_get(t)->from_f32;
}

/* Blocks aimed at the reductions: zeros of both signs in both orders, +-max ties in both
 * orders, constant blocks, one outlier, subnormals, huge and tiny magnitudes, codes at the
 * clamp. Block b of the result gets pattern b % n_patterns with a varying position. */
static void fill_special(float *x, int64_t nblocks) {
  for (int64_t b = 0; b < nblocks; b++) {
    float *y = x + 32 * b;
    const int pos = (int)(b * 7 % 32), pos2 = (pos + 1 + (int)(b % 30)) % 32;
    for (int j = 0; j < 32; j++) y[j] = (float)(rng_unit() * 2 - 1);
    switch (b % 14) {
      case 0: for (int j = 0; j < 32; j++) y[j] = 0.0f; break;
      case 1: for (int j = 0; j < 32; j++) y[j] = -0.0f; break;
      case 2: for (int j = 0; j < 32; j++) y[j] = (j + b) % 2 ? 0.0f : -0.0f; break;
      case 3: y[pos] = 3.0f; y[pos2] = -3.0f; break;
      case 4: y[pos] = -3.0f; y[pos2] = 3.0f; break;
      case 5: for (int j = 0; j < 32; j++) y[j] = 0.25f; break;
      case 6: for (int j = 0; j < 32; j++) y[j] = -7.5f; break;
      case 7: y[pos] = 1000.0f; break;
      case 8: for (int j = 0; j < 32; j++) y[j] *= 1e-39f; break; /* subnormal */
      case 9: for (int j = 0; j < 32; j++) y[j] *= 3e37f; break;
      case 10: for (int j = 0; j < 32; j++) y[j] = (float)(j - 16); break;
      case 11: /* min is a zero of either sign, max too */
        for (int j = 0; j < 32; j++) y[j] = fabsf(y[j]);
        y[pos] = -0.0f; y[pos2] = 0.0f; break;
      case 12:
        for (int j = 0; j < 32; j++) y[j] = -fabsf(y[j]);
        y[pos] = 0.0f; y[pos2] = -0.0f; break;
      case 13: for (int j = 0; j < 32; j++) y[j] = (float)((j % 3) - 1) * 1e-30f; break;
    }
  }
}

/* Super-blocks of 256 aimed at exact rounding, pattern sb % 6:
 * 0: ties of the ternary rounding: elements 0, -0, +-d/2 and their neighbours, +-d, for scales
 *    d = 2^e (x·(1/d) is then exactly +-0.5);
 * 1: every base-3 digit string of tq1_0's bytes: trit t of element m + 32k (and 160 + m + 16k,
 *    240 + j + 4k) is digit k of a counter, values (t - 1)·s;
 * 2: magnitudes near FLT_MAX (1/d subnormal) and 3: near FLT_MIN, largest magnitude 2^-125 ..
 *    2^-129 (1/d finite down to 2^-127, then infinite);
 * 4: groups of 32 whose first largest magnitude is -127 or 127 (iq4's first guess d = -+1),
 *    the others code points of kIQ4 and the midpoints between them (the nearest-code ties);
 * 5: groups of 32 that are zero, -0, below 1e-15 or Gaussian, in any order (iq4_nl's
 *    reference keeps the last codes through such groups). */
static void fill_exact(float *x, int64_t nsb) {
  static const float kiq4[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                 1,    13,   25,  38,  53,  69,  89,  113};
  for (int64_t sb = 0; sb < nsb; sb++) {
    float *y = x + 256 * sb;
    const int64_t r = sb / 6;
    switch (sb % 6) {
      case 0: {
        const float d = ldexpf(1.0f, (int)(r % 41) - 20), h = d / 2;
        const float pick[8] = {0.0f, -0.0f, h, -h, nextafterf(h, 0), -nextafterf(h, 0),
                               nextafterf(h, d), -nextafterf(h, d)};
        for (int j = 0; j < 256; j++) y[j] = pick[(int)(rng_unit() * 8)];
        y[(int)(rng_unit() * 256)] = rng_unit() < 0.5 ? d : -d;
        break;
      }
      case 1: {
        const float sc = (float)(0.1 + rng_unit());
        for (int m = 0; m < 32; m++) {
          int c = (int)((r * 32 + m) % 243);
          for (int k = 4; k >= 0; k--, c /= 3) y[m + 32 * k] = (float)(c % 3 - 1) * sc;
        }
        for (int m = 0; m < 16; m++) {
          int c = (int)((r * 16 + m + 100) % 243);
          for (int k = 4; k >= 0; k--, c /= 3) y[160 + m + 16 * k] = (float)(c % 3 - 1) * sc;
        }
        for (int j = 0; j < 4; j++) {
          int c = (int)((r * 4 + j) % 81);
          for (int k = 3; k >= 0; k--, c /= 3) y[240 + j + 4 * k] = (float)(c % 3 - 1) * sc;
        }
        break;
      }
      case 2:
      case 3: {
        const float top = sb % 6 == 2 ? 3.4e38f : ldexpf(1.0f, -125 - (int)(r % 5));
        float m = 0;
        for (int j = 0; j < 256; j++) {
          y[j] = (float)(rng_unit() * 2 - 1);
          if (fabsf(y[j]) > m) m = fabsf(y[j]);
        }
        for (int j = 0; j < 256; j++) y[j] = y[j] / m * top;
        y[(int)(rng_unit() * 256)] = rng_unit() < 0.5 ? top : -top;
        break;
      }
      case 4:
        for (int g = 0; g < 8; g++) {
          for (int j = 0; j < 32; j++) {
            const int i = (int)(rng_unit() * 15);
            y[32 * g + j] = rng_unit() < 0.5 ? kiq4[i] : (kiq4[i] + kiq4[i + 1]) / 2;
            if (g % 2) y[32 * g + j] = -y[32 * g + j];
          }
          y[32 * g + (int)(rng_unit() * 32)] = g % 2 ? 127.0f : -127.0f;
        }
        break;
      default:
        for (int g = 0; g < 8; g++) {
          const int kind = (int)(rng_unit() * 4);
          for (int j = 0; j < 32; j++)
            y[32 * g + j] = kind == 0 ? 0.0f : kind == 1 ? -0.0f
                          : kind == 2 ? (float)((rng_unit() * 2 - 1) * 9e-16)
                                      : (float)(rng_unit() * 2 - 1);
        }
        break;
    }
  }
}

static void check_avx2(const qtype *q) {
  const cz_type_traits *tr = cz_type_get(q->type);
  avx2_fn fast = avx2_of(q->type);
  ref_fn scalar = scalar_ref_of(q->type);
  enum { NR = 64 * 1024 };
  static float x[NR];
  static uint8_t a[NR + 64], b[NR + 64];
  if (!__builtin_cpu_supports("avx2")) {
    CHECK(!fast(x, b, 32)); /* no AVX2: it must decline */
    printf("# no AVX2 on this CPU: only the fallback checked\n");
    return;
  }
  for (int input = 0; input < N_DISTS + 5; input++) {
    int64_t n;
    char what[128];
    if (input < N_DISTS) {
      char name[64];
      snprintf(name, sizeof name, "input.%s", DISTS[input]);
      if (!load_floats(name, x, N)) return;
      n = N;
      snprintf(what, sizeof what, "%s avx2 on %s", tr->name, DISTS[input]);
    } else if (input == N_DISTS) {
      n = NR;
      fill_random(x, n, 0.02);
      snprintf(what, sizeof what, "%s avx2 on random rows", tr->name);
    } else if (input < N_DISTS + 3) {
      n = NR;
      fill_special(x, n / 32);
      snprintf(what, sizeof what, "%s avx2 on special blocks (%d)", tr->name, input);
    } else if (input == N_DISTS + 4) {
      n = NR;
      fill_exact(x, n / 256);
      snprintf(what, sizeof what, "%s avx2 on ties, digit strings, extreme scales", tr->name);
    } else { /* whole 256-blocks of subnormals (1/amax overflows to inf), tiny values, zeros */
      n = NR;
      fill_random(x, n, 1.0);
      for (int64_t i = 0; i < n; i++) {
        const int64_t sb = i / 256;
        if (sb % 4 == 0) x[i] *= 1e-40f;
        else if (sb % 4 == 1) x[i] *= 1e-36f;
        else if (sb % 4 == 2) x[i] = 0.0f;
      }
      snprintf(what, sizeof what, "%s avx2 on subnormal, tiny and zero super-blocks", tr->name);
    }
    const size_t nb = nbytes_of(q->type, n);
    memset(a, 0x5A, sizeof a);
    memset(b, 0x5A, sizeof b);
    scalar(x, a + 3, n);
    CHECK(fast(x, b + 3, n));
    check_same_bytes(what, b, a, nb + 6); /* unaligned, and nothing written around */
    /* the dispatching entry point: quantize without importance where it is the reference,
     * else (iq4_nl) from_f32 */
    memset(b, 0, sizeof b);
    if (q->ref_is_file_path)
      CHECK_EQ_INT(tr->quantize(x, b, n / COLS, COLS, NULL), nb);
    else
      tr->from_f32(x, b, n);
    check_same_bytes(what, b, a + 3, nb);
  }
  /* every block count 1 .. 40 from an odd block of random and special blocks (the legacy
   * twins go eight blocks at a time: whole groups and a padded rest) */
  fill_random(x, NR / 2, 0.02);
  fill_special(x + NR / 2, NR / 2 / 32);
  for (int blocks = 1; blocks <= 40; blocks++) {
    for (int half = 0; half < 2; half++) {
      const float *src = x + half * (NR / 2) + 32 * (blocks * 13 % 97);
      const int64_t n = 32 * (int64_t)blocks;
      const size_t nb = nbytes_of(q->type, n);
      char what[128];
      snprintf(what, sizeof what, "%s avx2 on %d %s blocks", tr->name, blocks,
               half ? "special" : "random");
      memset(a, 0x5A, sizeof a);
      memset(b, 0x5A, sizeof b);
      scalar(src, a + 1, n);
      CHECK(fast(src, b + 1, n));
      check_same_bytes(what, b, a, nb + 2);
    }
  }
}

/* ---- dequantizer twins --------------------------------------------------------------------- */

typedef void (*dequant_fn)(const void *src, float *dst, int64_t n);
typedef bool (*dequant_avx2_fn)(const void *src, float *dst, int64_t n);

static bool dequant_impls(cz_type t, dequant_fn *scalar, dequant_avx2_fn *fast) {
  switch ((int)t) {
    case CZ_TYPE_Q4_0: *scalar = cz_q4_0_to_f32_scalar; *fast = cz_q4_0_to_f32_avx2; return true;
    case CZ_TYPE_Q4_1: *scalar = cz_q4_1_to_f32_scalar; *fast = cz_q4_1_to_f32_avx2; return true;
    case CZ_TYPE_Q5_0: *scalar = cz_q5_0_to_f32_scalar; *fast = cz_q5_0_to_f32_avx2; return true;
    case CZ_TYPE_Q5_1: *scalar = cz_q5_1_to_f32_scalar; *fast = cz_q5_1_to_f32_avx2; return true;
    default: return false;
  }
}

static uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* The dequantizer twin gives the scalar floats bit for bit, NaNs included, on blocks of random
 * bytes whose scale (and min) halves are zeros of both signs, subnormal, the largest finite,
 * infinite, NaN (signaling and quiet) or random; the golden blocks; every block count 1 .. 40
 * and a long row from odd addresses; and the table's to_f32 takes it. */
static void check_dequant_avx2(const qtype *q) {
  const cz_type_traits *tr = cz_type_get(q->type);
  dequant_fn scalar;
  dequant_avx2_fn fast;
  enum { NBLK = 2053, MAXB = 24 };
  static uint8_t raw[NBLK * MAXB + 1];
  static float want[NBLK * 32], got[NBLK * 32 + 1];
  if (!dequant_impls(q->type, &scalar, &fast)) {
    CHECK(false);
    return;
  }
  const size_t bs = tr->type_size;
  const bool affine = q->type == CZ_TYPE_Q4_1 || q->type == CZ_TYPE_Q5_1;
  static const uint16_t special[] = {0x0000, 0x8000, 0x0001, 0x83FF, 0x7BFF, 0xFBFF,
                                     0x7C00, 0xFC00, 0x7C01, 0xFE00, 0x3C00, 0x0400};
  for (size_t i = 0; i < sizeof raw; i++) raw[i] = (uint8_t)(rng_unit() * 256);
  for (int blk = 0; blk < NBLK; blk++) {
    uint8_t *p = raw + 1 + blk * bs;
    const uint16_t d = special[(blk / 2) % 12], m = special[(blk / 5 + 3) % 12];
    if (blk % 2 == 0) memcpy(p, &d, 2);
    if (affine && blk % 3 == 0) memcpy(p + 2, &m, 2);
  }
  if (!__builtin_cpu_supports("avx2")) {
    CHECK(!fast(raw + 1, got, 32)); /* no AVX2: it must decline */
    printf("# no AVX2 on this CPU: only the fallback checked\n");
    return;
  }
  scalar(raw + 1, want, NBLK * 32);
  for (int nb = 1; nb <= 41; nb++) {
    const int blocks = nb == 41 ? NBLK : nb, start = nb == 41 ? 0 : (nb * 89) % (NBLK - 40);
    const int64_t n = 32 * (int64_t)blocks;
    for (int64_t i = 0; i <= n; i++) memcpy(&got[i], "ZZZZ", 4);
    if (!fast(raw + 1 + start * bs, got, n)) {
      CHECK(false); /* the CPU has AVX2: it may decline only without F16C */
      printf("# %s dequantizer twin declined\n", tr->name);
      return;
    }
    size_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
      if (float_bits(got[i]) != float_bits(want[start * 32 + i]) && bad++ < 3)
        printf("# %s to_f32 avx2, %d blocks from %d: element %lld %08x, scalar %08x\n", tr->name,
               blocks, start, (long long)i, float_bits(got[i]), float_bits(want[start * 32 + i]));
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(memcmp(&got[n], "ZZZZ", 4) == 0); /* nothing written past the end */
  }
  memset(got, 0, sizeof got);
  tr->to_f32(raw + 1, got, NBLK * 32);
  CHECK(memcmp(got, want, NBLK * 32 * sizeof(float)) == 0);
  /* ggml's blocks and floats (the golden check runs the table's to_f32, now the twin; here
   * the scalar code too) */
  for (int d = 0; d < N_DISTS; d++) {
    char qname[64], dname[64];
    snprintf(qname, sizeof qname, "%s.%s.quant", tr->name, DISTS[d]);
    snprintf(dname, sizeof dname, "%s.%s.dequant", tr->name, DISTS[d]);
    const cz_tensor *tq = golden_tensor(qname, CZ_TYPE_U8, nbytes_of(q->type, N));
    const cz_tensor *td = golden_tensor(dname, CZ_TYPE_F32, N * sizeof(float));
    if (tq == NULL || td == NULL) return;
    scalar(tq->data, want, N);
    check_same_bytes(dname, want, td->data, N * sizeof(float));
    CHECK(fast(tq->data, got, N));
    check_same_bytes(dname, got, td->data, N * sizeof(float));
  }
}

/* The file path's AVX2 twin against its scalar code, with and without importance weights, on
 * the golden inputs, random rows (rows of 41 blocks of 32: five groups of eight lanes and a
 * scalar tail) and the special blocks, into an odd destination. */
static void check_avx2_file(const qtype *q) {
  const cz_type_traits *tr = cz_type_get(q->type);
  quantize_fn scalar;
  quantize_avx2_fn fast;
  enum { NR = 64 * 1024, MAXC = 1536 };
  static float x[NR], imp[MAXC];
  static uint8_t a[NR + 64], b[NR + 64];
  if (!file_path_impls(q->type, &scalar, &fast)) {
    CHECK(false);
    return;
  }
  if (!__builtin_cpu_supports("avx2")) {
    CHECK(!fast(x, b, 1, 256, NULL)); /* no AVX2: it must decline */
    printf("# no AVX2 on this CPU: only the fallback checked\n");
    return;
  }
  const int64_t cols_random = q->type == CZ_TYPE_IQ4_XS ? 5 * 256 : 41 * 32;
  for (int input = 0; input < N_DISTS + 2; input++) {
    int64_t rows, cols;
    char what[160], name[64];
    if (input < N_DISTS) {
      snprintf(name, sizeof name, "input.%s", DISTS[input]);
      if (!load_floats(name, x, N)) return;
      rows = ROWS;
      cols = COLS;
    } else {
      cols = cols_random;
      rows = NR / cols;
      if (input == N_DISTS) fill_random(x, rows * cols, 0.02);
      else fill_special(x, rows * cols / 32);
    }
    for (int variant = 0; variant < 4; variant++) {
      const float *im = NULL;
      if (variant == 1 && input < N_DISTS) { /* the golden's importance */
        snprintf(name, sizeof name, "imatrix.%s", DISTS[input]);
        if (!load_floats(name, imp, COLS)) return;
        im = imp;
      } else if (variant >= 1) { /* random, and random with zeros (a zero weight) */
        for (int64_t c = 0; c < cols; c++)
          imp[c] = variant == 3 && c % 5 == 0 ? 0.0f : (float)(rng_unit() * 3 + 1e-3);
        im = imp;
      }
      snprintf(what, sizeof what, "%s avx2 file path on %s, importance %d", tr->name,
               input < N_DISTS ? DISTS[input] : input == N_DISTS ? "random rows" : "special blocks",
               variant);
      const size_t nb = (size_t)rows * nbytes_of(q->type, cols);
      memset(a, 0x5A, sizeof a);
      memset(b, 0x5A, sizeof b);
      CHECK_EQ_INT(scalar(x, a + 3, rows, cols, im), nb);
      CHECK(fast(x, b + 3, rows, cols, im));
      check_same_bytes(what, b, a, nb + 6); /* unaligned, and nothing written around */
      memset(b, 0, sizeof b);
      CHECK_EQ_INT(tr->quantize(x, b, rows, cols, im), nb); /* the dispatching entry point */
      check_same_bytes(what, b, a + 3, nb);
    }
  }
}

/* ---- manifest runs ------------------------------------------------------------------------- */

static json_t *manifest;

static json_t *manifest_run(const char *ftype, bool with_imatrix) {
  size_t i;
  json_t *run;
  json_array_foreach(json_object_get(manifest, "runs"), i, run) {
    const char *f = json_string_value(json_object_get(run, "ftype"));
    json_t *opts = json_object_get(run, "options");
    bool im = json_array_size(opts) == 2 &&
              strcmp(json_string_value(json_array_get(opts, 0)), "--imatrix") == 0;
    if (f && strcmp(f, ftype) == 0 &&
        (with_imatrix ? im : json_array_size(opts) == 0))
      return run;
  }
  printf("# no %s%s run in the manifest\n", ftype, with_imatrix ? " --imatrix" : "");
  cz_test_failures++;
  return NULL;
}

static cz_model *open_data(const char *file) {
  char path[512];
  snprintf(path, sizeof path, "%s/tests/data/%s", cz_test_srcdir(), file);
  cz_model *m = NULL;
  cz_error err = {0};
  if (cz_model_open(path, &m, &err) != CZ_E_OK) {
    printf("# cannot open %s: %s\n", path, err.msg);
    cz_test_failures++;
    return NULL;
  }
  return m;
}

/* For every manifest tensor of type t, compare with the sha256 that got() produced for it
 * (NULL: the tensor is missing, reported by got). Returns the number compared. */
typedef bool (*tensor_sha_fn)(const char *name, cz_type t, char hex[65], uint64_t *nbytes,
                              void *ctx);

static size_t compare_run(const json_t *run, cz_type t, tensor_sha_fn sha_of, void *ctx) {
  size_t i, compared = 0, mismatched = 0;
  json_t *e;
  json_array_foreach(json_object_get(run, "tensors"), i, e) {
    const char *name = json_string_value(json_object_get(e, "name"));
    if (strcmp(json_string_value(json_object_get(e, "type")), tname(t)) != 0) continue;
    char hex[65];
    uint64_t nbytes = 0;
    if (!sha_of(name, t, hex, &nbytes, ctx)) {
      mismatched++;
      continue;
    }
    compared++;
    const char *want = json_string_value(json_object_get(e, "sha256"));
    if (strcmp(hex, want) != 0 ||
        (json_int_t)nbytes != json_integer_value(json_object_get(e, "nbytes"))) {
      mismatched++;
      printf("# %s: got %s (%llu bytes), llama-quantize %s\n", name, hex,
             (unsigned long long)nbytes, want);
    }
  }
  CHECK_EQ_INT(mismatched, 0);
  printf("# %zu %s tensors compared\n", compared, tname(t));
  if (compared == 0) {
    printf("# no %s tensor compared\n", tname(t));
    cz_test_failures++;
  }
  return compared;
}

static bool output_sha(const char *name, cz_type t, char hex[65], uint64_t *nbytes, void *ctx) {
  const cz_tensor *o = cz_model_find((const cz_model *)ctx, name);
  if (o == NULL || o->type != t) {
    printf("# output tensor %s missing or not %s\n", name, tname(t));
    return false;
  }
  sha256_hex_of(o->data, (size_t)o->nbytes, hex);
  *nbytes = o->nbytes;
  return true;
}

/* {"op":"quantize","type":T} through the pipeline (recipe -> plan -> begin -> exec). */
static void check_pipeline_run(cz_type t, const char *ftype) {
  cz_model *in = open_data("tiny-llama-f16.gguf"), *out = NULL;
  cz_recipe *recipe = NULL;
  cz_run *run = NULL;
  cz_error err = {0};
  char path[512], text[256];
  int fd = -1;
  const json_t *mrun = manifest_run(ftype, false);
  if (in == NULL || mrun == NULL) goto done;
  snprintf(text, sizeof text,
           "{\"steps\":[{\"op\":\"quantize\",\"type\":\"%s\"}],\"output\":{\"format\":\"gguf\"}}",
           tname(t));
  json_error_t je;
  json_t *body = json_loads(text, 0, &je);
  cz_err_code rc = cz_recipe_parse(body, NULL, &recipe, &err);
  json_decref(body);
  if (rc == CZ_E_OK) rc = cz_run_plan(recipe, in, NULL, &run, &err);
  snprintf(path, sizeof path, "%s/%s.gguf", tmpdir, tname(t));
  if (rc == CZ_E_OK) {
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) rc = cz_err_set(&err, CZ_E_IO, "open %s: %s", path, strerror(errno));
  }
  if (rc == CZ_E_OK) rc = cz_run_begin(run, fd, &err);
  if (rc == CZ_E_OK) rc = cz_run_exec(run, 2, &err);
  if (fd >= 0) close(fd);
  if (rc != CZ_E_OK) {
    printf("# %s: pipeline failed: %s: %s\n", tname(t), cz_err_name(rc), err.msg);
    cz_test_failures++;
    goto done;
  }
  if (cz_model_open(path, &out, &err) != CZ_E_OK) {
    printf("# output %s does not open: %s\n", path, err.msg);
    cz_test_failures++;
    goto done;
  }
  compare_run(mrun, t, output_sha, out);
done:
  cz_model_close(out);
  cz_run_free(run);
  cz_recipe_free(recipe);
  cz_model_close(in);
}

/* The --imatrix runs: quantize each F16 weight's rows directly with the importance that
 * llama-quantize derives from the imatrix GGUF: in_sum2[j] / counts, or 1 for every column
 * when counts is 0; tensors without an entry (token_embd) are quantized without. */
typedef struct {
  const cz_model *in, *imx;
} imatrix_ctx;

static bool importance_of(const cz_model *imx, const char *name, int64_t ne0, float *e,
                          bool *found) {
  char key[256];
  snprintf(key, sizeof key, "%s.in_sum2", name);
  const cz_tensor *s = cz_model_find(imx, key);
  snprintf(key, sizeof key, "%s.counts", name);
  const cz_tensor *c = cz_model_find(imx, key);
  *found = s != NULL;
  if (s == NULL) return c == NULL;
  if (c == NULL || s->type != CZ_TYPE_F32 || c->type != CZ_TYPE_F32 || s->ne[0] != ne0 ||
      cz_tensor_nelements(s) != ne0 || cz_tensor_nelements(c) != 1) {
    printf("# imatrix entry %s is not [%lld] sums with one count\n", name, (long long)ne0);
    return false;
  }
  float count;
  memcpy(&count, c->data, sizeof count);
  for (int64_t j = 0; j < ne0; j++) {
    float sum;
    memcpy(&sum, s->data + 4 * j, sizeof sum);
    e[j] = count > 0.0f ? sum / count : 1;
  }
  return true;
}

static bool weighted_sha(const char *name, cz_type t, char hex[65], uint64_t *nbytes, void *vctx) {
  const imatrix_ctx *ctx = vctx;
  const cz_tensor *w = cz_model_find(ctx->in, name);
  if (w == NULL || w->type != CZ_TYPE_F16) {
    printf("# input tensor %s missing or not f16\n", name);
    return false;
  }
  const int64_t ne0 = w->ne[0], n = cz_tensor_nelements(w), rows = n / ne0;
  float *x = malloc((size_t)n * sizeof *x), *e = malloc((size_t)ne0 * sizeof *e);
  uint8_t *q = malloc(nbytes_of(t, n));
  bool found = false, ok = x && e && q && importance_of(ctx->imx, name, ne0, e, &found);
  if (ok) {
    cz_type_get(CZ_TYPE_F16)->to_f32(w->data, x, n);
    *nbytes = cz_type_get(t)->quantize(x, q, rows, ne0, found ? e : NULL);
    sha256_hex_of(q, (size_t)*nbytes, hex);
  }
  free(x);
  free(e);
  free(q);
  return ok;
}

static void check_imatrix_run(cz_type t, const char *ftype) {
  cz_model *in = open_data("tiny-llama-f16.gguf"), *imx = open_data("tiny-llama-imatrix.gguf");
  const json_t *mrun = manifest_run(ftype, true);
  if (in && imx && mrun) {
    imatrix_ctx ctx = {in, imx};
    compare_run(mrun, t, weighted_sha, &ctx);
  }
  cz_model_close(imx);
  cz_model_close(in);
}

/* ---- the case list --------------------------------------------------------------------------- */

typedef enum {
  K_GOLDEN,
  K_GOLDEN_IMATRIX,
  K_REFERENCE,
  K_AVX2,
  K_AVX2_FILE,
  K_DEQUANT,
  K_PIPELINE,
  K_IMATRIX_RUN
} kind;

typedef struct {
  kind k;
  const qtype *q;
  const char *dist;  /* golden cases */
  const char *ftype; /* manifest runs */
} qcase;

enum { MAX_CASES = 2 * N_TYPES * N_DISTS + 2 * N_TYPES + 16 };
static qcase qcases[MAX_CASES];
static char qnames[MAX_CASES][64];
static int n_cases, next_case;

static void run_next(void) {
  const qcase *c = &qcases[next_case++];
  switch (c->k) {
    case K_GOLDEN: check_golden(c->q, c->dist, false); break;
    case K_GOLDEN_IMATRIX: check_golden(c->q, c->dist, true); break;
    case K_REFERENCE: check_reference(c->q); break;
    case K_AVX2: check_avx2(c->q); break;
    case K_AVX2_FILE: check_avx2_file(c->q); break;
    case K_DEQUANT: check_dequant_avx2(c->q); break;
    case K_PIPELINE: check_pipeline_run(c->q->type, c->ftype); break;
    case K_IMATRIX_RUN: check_imatrix_run(c->q->type, c->ftype); break;
  }
}

static void add_case(kind k, const qtype *q, const char *dist, const char *ftype) {
  qcase *c = &qcases[n_cases];
  c->k = k;
  c->q = q;
  c->dist = dist;
  c->ftype = ftype;
  char *nm = qnames[n_cases++];
  const char *t = tname(q->type);
  switch (k) {
    case K_GOLDEN: snprintf(nm, 64, "golden %s %s", t, dist); break;
    case K_GOLDEN_IMATRIX: snprintf(nm, 64, "golden %s %s imatrix", t, dist); break;
    case K_REFERENCE: snprintf(nm, 64, "reference %s", t); break;
    case K_AVX2: snprintf(nm, 64, "avx2 %s = scalar", t); break;
    case K_AVX2_FILE: snprintf(nm, 64, "avx2 %s file path = scalar", t); break;
    case K_DEQUANT: snprintf(nm, 64, "avx2 %s to_f32 = scalar", t); break;
    case K_PIPELINE: snprintf(nm, 64, "pipeline %s = llama-quantize %s", t, ftype); break;
    case K_IMATRIX_RUN: snprintf(nm, 64, "imatrix %s = llama-quantize %s --imatrix", t, ftype); break;
  }
}

static const qtype *qtype_of(cz_type t) {
  for (int i = 0; i < N_TYPES; i++)
    if (TYPES[i].type == t) return &TYPES[i];
  return NULL;
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "%s/cz_test_quants.XXXXXX",
           getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (mkdtemp(tmpdir) == NULL) {
    printf("Bail out! mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  snprintf(golden_path, sizeof golden_path, "%s/tests/data/ggml-quants.safetensors",
           cz_test_srcdir());
  if (cz_model_open(golden_path, &golden, &golden_err) != CZ_E_OK) golden = NULL;
  char mpath[512];
  snprintf(mpath, sizeof mpath, "%s/tests/data/tiny-llama-manifest.json", cz_test_srcdir());
  json_error_t je;
  manifest = json_load_file(mpath, 0, &je);
  if (manifest == NULL) printf("# cannot load %s: %s\n", mpath, je.text);

  for (int i = 0; i < N_TYPES; i++) {
    for (int d = 0; d < N_DISTS; d++) {
      add_case(K_GOLDEN, &TYPES[i], DISTS[d], NULL);
      if (TYPES[i].imatrix_golden) add_case(K_GOLDEN_IMATRIX, &TYPES[i], DISTS[d], NULL);
    }
  }
  for (int i = 0; i < N_TYPES; i++) add_case(K_REFERENCE, &TYPES[i], NULL, NULL);
  for (int i = 0; i < N_TYPES; i++)
    if (avx2_of(TYPES[i].type)) add_case(K_AVX2, &TYPES[i], NULL, NULL);
  for (int i = 0; i < N_TYPES; i++) {
    quantize_fn s;
    quantize_avx2_fn f;
    if (file_path_impls(TYPES[i].type, &s, &f)) add_case(K_AVX2_FILE, &TYPES[i], NULL, NULL);
  }
  for (int i = 0; i < N_TYPES; i++) {
    dequant_fn s;
    dequant_avx2_fn f;
    if (dequant_impls(TYPES[i].type, &s, &f)) add_case(K_DEQUANT, &TYPES[i], NULL, NULL);
  }
  static const struct {
    cz_type t;
    const char *ftype;
  } runs[] = {{CZ_TYPE_Q4_0, "Q4_0"},     {CZ_TYPE_Q4_1, "Q4_1"},     {CZ_TYPE_Q5_0, "Q5_0"},
              {CZ_TYPE_Q5_1, "Q5_1"},     {CZ_TYPE_IQ4_NL, "IQ4_NL"}, {CZ_TYPE_IQ4_XS, "IQ4_XS"}};
  for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++)
    add_case(K_PIPELINE, qtype_of(runs[i].t), NULL, runs[i].ftype);
  add_case(K_IMATRIX_RUN, qtype_of(CZ_TYPE_Q4_0), NULL, "Q4_0");
  add_case(K_IMATRIX_RUN, qtype_of(CZ_TYPE_IQ4_XS), NULL, "IQ4_XS");

  static cz_test_case cases[MAX_CASES];
  for (int i = 0; i < n_cases; i++) {
    cases[i].name = qnames[i];
    cases[i].fn = run_next;
  }
  int rc = cz_test_main(cases, n_cases);
  json_decref(manifest);
  cz_model_close(golden);
  char path[512];
  for (int i = 0; i < N_TYPES; i++) {
    snprintf(path, sizeof path, "%s/%s.gguf", tmpdir, tname(TYPES[i].type));
    unlink(path);
  }
  rmdir(tmpdir);
  return rc;
}
