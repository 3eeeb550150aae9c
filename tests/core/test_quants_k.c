/* test_quants_k: the K-quants (q2_K..q6_K) against ggml's own bytes.
 *
 * Golden rows (tests/data/ggml-quants.safetensors): for every type and distribution, the
 * file-writing quantizer without and with the distribution's importance weights gives ggml's
 * bytes, in both its scalar and its AVX2 implementation, and decoding those bytes gives
 * ggml's floats bit for bit. AVX2 twins: on rows of many distributions (Gaussian with
 * outliers, uniform, heavy-tailed, one-signed, sparse with zeros of both signs, flat and
 * extreme sub-blocks, integer grids), with and without importance weights (some of them
 * zero), the AVX2 encoders write the scalar encoders' bytes. Whole model
 * (tests/data/tiny-llama-manifest.json, llama-quantize's outputs): the pipeline's
 * {"op":"quantize","type":T} output, and the kernels called directly with the tiny model's
 * imatrix, give the sha256 llama-quantize recorded for every tensor of that type.
 */
#define _GNU_SOURCE /* nftw's FTW_DEPTH|FTW_PHYS */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cz_model.h"
#include "cz_pipeline.h"
#include "cz_quants.h"
#include "cz_sha256.h"
#include "cz_test.h"
#include "cz_type.h"

/* tests/data/README.md: every golden input is F32 [4,512]: 4 rows of 512. */
enum { ROWS = 4, COLS = 512, N = ROWS * COLS };

static cz_model *golden, *tiny, *tiny_imatrix;
static json_t *manifest;
static char tmpdir[256];

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static cz_model *open_data(const char *file) {
  char path[4096];
  cz_error err = {0};
  cz_model *m = NULL;
  snprintf(path, sizeof path, "%s/tests/data/%s", cz_test_srcdir(), file);
  if (cz_model_open(path, &m, &err) != CZ_E_OK) {
    printf("# cannot open %s: %s\n", path, err.msg);
    return NULL;
  }
  return m;
}

/* Count differing bytes and show the first, so that a failure says where: in which unit
 * (a block of unit bytes, or a float with unit 4). */
static void check_same_bytes(const char *what, const void *got, const void *want, size_t n,
                             size_t unit) {
  const uint8_t *g = got, *w = want;
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (g[i] == w[i]) continue;
    if (bad++ == 0)
      printf("# %s: first difference at byte %zu (%s %zu): got 0x%02x, want 0x%02x\n", what, i,
             unit == sizeof(float) ? "float" : "block", i / unit, g[i], w[i]);
  }
  if (bad) {
    printf("# %s: %zu of %zu bytes differ\n", what, bad, n);
    cz_test_failures++;
  }
}

/* A golden tensor by name with the expected type and size, or NULL after recording why. */
static const cz_tensor *golden_tensor(const char *name, cz_type type, uint64_t nbytes) {
  if (golden == NULL) {
    cz_test_failures++;
    return NULL;
  }
  const cz_tensor *t = cz_model_find(golden, name);
  if (t == NULL || t->type != type || t->nbytes != nbytes) {
    printf("# golden tensor %s missing or not %s of %llu bytes\n", name,
           cz_type_get(type)->name, (unsigned long long)nbytes);
    cz_test_failures++;
    return NULL;
  }
  return t;
}

static void sha256_hex_of(const void *data, size_t n, char hex[65]) {
  cz_sha256 c;
  uint8_t d[32];
  cz_sha256_init(&c);
  cz_sha256_update(&c, data, n);
  cz_sha256_final(&c, d);
  cz_sha256_hex(d, hex);
}

/* ------------------------------------------------------------------------------------------ */
/* golden rows                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* The two implementations of a K type's file path (cz_quants.h). */
typedef struct {
  cz_type type;
  size_t (*scalar)(const float *, void *, int64_t, int64_t, const float *);
  bool (*avx2)(const float *, void *, int64_t, int64_t, const float *);
} k_impl;

static const k_impl K_IMPLS[] = {
    {CZ_TYPE_Q2_K, cz_q2_K_quantize_scalar, cz_q2_K_quantize_avx2},
    {CZ_TYPE_Q3_K, cz_q3_K_quantize_scalar, cz_q3_K_quantize_avx2},
    {CZ_TYPE_Q4_K, cz_q4_K_quantize_scalar, cz_q4_K_quantize_avx2},
    {CZ_TYPE_Q5_K, cz_q5_K_quantize_scalar, cz_q5_K_quantize_avx2},
    {CZ_TYPE_Q6_K, cz_q6_K_quantize_scalar, cz_q6_K_quantize_avx2},
};

static const k_impl *k_impl_of(cz_type t) {
  for (size_t i = 0; i < sizeof K_IMPLS / sizeof K_IMPLS[0]; i++)
    if (K_IMPLS[i].type == t) return &K_IMPLS[i];
  abort();
}

/* quantize (NULL or the imatrix) == <type>.<dist>[.imatrix].quant; to_f32 of those bytes ==
 * .dequant bit for bit. Without an imatrix, from_f32 (the _ref) must give the same bytes. */
static void check_golden(cz_type type, const char *dist, bool weighted) {
  static float x[N], im[COLS], y[N];
  const cz_type_traits *tr = cz_type_get(type);
  const size_t row = (size_t)cz_type_row_size(type, COLS), nbytes = ROWS * row;
  const char *variant = weighted ? ".imatrix" : "";
  char name[96], qname[96], dname[96];

  snprintf(name, sizeof name, "input.%s", dist);
  const cz_tensor *tx = golden_tensor(name, CZ_TYPE_F32, sizeof x);
  snprintf(name, sizeof name, "imatrix.%s", dist);
  const cz_tensor *tim = weighted ? golden_tensor(name, CZ_TYPE_F32, sizeof im) : NULL;
  snprintf(qname, sizeof qname, "%s.%s%s.quant", tr->name, dist, variant);
  snprintf(dname, sizeof dname, "%s.%s%s.dequant", tr->name, dist, variant);
  const cz_tensor *tq = golden_tensor(qname, CZ_TYPE_U8, nbytes);
  const cz_tensor *td = golden_tensor(dname, CZ_TYPE_F32, sizeof y);
  if (tx == NULL || tq == NULL || td == NULL || (weighted && tim == NULL)) return;
  CHECK(tr->quantize != NULL && tr->from_f32 != NULL && tr->to_f32 != NULL);
  CHECK(!tr->requires_imatrix);
  if (tr->quantize == NULL || tr->from_f32 == NULL || tr->to_f32 == NULL) return;

  memcpy(x, tx->data, sizeof x); /* mapping offsets need not be 4-aligned */
  if (weighted) memcpy(im, tim->data, sizeof im);
  uint8_t *q = malloc(nbytes);
  CHECK_EQ_INT(tr->quantize(x, q, ROWS, COLS, weighted ? im : NULL), nbytes);
  check_same_bytes(qname, q, tq->data, nbytes, tr->type_size);
  /* both implementations of the file path, whichever the dispatch picks on this CPU */
  const k_impl *ki = k_impl_of(type);
  memset(q, 0, nbytes);
  CHECK_EQ_INT(ki->scalar(x, q, ROWS, COLS, weighted ? im : NULL), nbytes);
  check_same_bytes("scalar", q, tq->data, nbytes, tr->type_size);
  if (__builtin_cpu_supports("avx2")) {
    memset(q, 0, nbytes);
    CHECK(ki->avx2(x, q, ROWS, COLS, weighted ? im : NULL));
    check_same_bytes("avx2", q, tq->data, nbytes, tr->type_size);
  }
  if (!weighted) {
    memset(q, 0, nbytes);
    for (int r = 0; r < ROWS; r++) tr->from_f32(x + r * COLS, q + r * row, COLS);
    check_same_bytes("from_f32", q, tq->data, nbytes, tr->type_size);
  }
  tr->to_f32(tq->data, y, N);
  check_same_bytes(dname, y, td->data, sizeof y, sizeof(float));
  free(q);
}

#define GOLDEN_CASES(tn, dist)                                                             \
  static void test_##tn##_##dist(void) { check_golden(CZ_TYPE_##tn, #dist, false); }       \
  static void test_##tn##_##dist##_imatrix(void) { check_golden(CZ_TYPE_##tn, #dist, true); }
#define GOLDEN_TYPE(tn)                                                                    \
  GOLDEN_CASES(tn, gauss) GOLDEN_CASES(tn, cos) GOLDEN_CASES(tn, uniform)                  \
  GOLDEN_CASES(tn, heavy) GOLDEN_CASES(tn, edge)
/* function names keep ggml's spelling (q2_K); the enum is upper case */
#define CZ_TYPE_q2_K CZ_TYPE_Q2_K
#define CZ_TYPE_q3_K CZ_TYPE_Q3_K
#define CZ_TYPE_q4_K CZ_TYPE_Q4_K
#define CZ_TYPE_q5_K CZ_TYPE_Q5_K
#define CZ_TYPE_q6_K CZ_TYPE_Q6_K
GOLDEN_TYPE(q2_K)
GOLDEN_TYPE(q3_K)
GOLDEN_TYPE(q4_K)
GOLDEN_TYPE(q5_K)
GOLDEN_TYPE(q6_K)

/* Quantized bytes live at any offset inside a file buffer: an odd destination and source
 * give the same bytes and floats (UBSan would flag a misaligned access). */
static void test_unaligned(void) {
  static const cz_type types[] = {CZ_TYPE_Q2_K, CZ_TYPE_Q3_K, CZ_TYPE_Q4_K, CZ_TYPE_Q5_K,
                                  CZ_TYPE_Q6_K};
  static float x[COLS], im[COLS], y0[COLS], y1[COLS];
  for (int i = 0; i < COLS; i++) {
    x[i] = (float)((i * 37) % 101 - 50) / 64.0f;
    im[i] = 1.0f + (float)(i % 7);
  }
  for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
    const cz_type_traits *tr = cz_type_get(types[k]);
    const size_t row = (size_t)cz_type_row_size(types[k], COLS);
    uint8_t *a = malloc(row), *b = malloc(row + 1);
    for (int w = 0; w < 2; w++) {
      tr->quantize(x, a, 1, COLS, w ? im : NULL);
      tr->quantize(x, b + 1, 1, COLS, w ? im : NULL);
      check_same_bytes(tr->name, b + 1, a, row, tr->type_size);
      tr->to_f32(a, y0, COLS);
      tr->to_f32(b + 1, y1, COLS);
      check_same_bytes(tr->name, y1, y0, sizeof y0, sizeof(float));
    }
    free(a);
    free(b);
  }
}

/* ------------------------------------------------------------------------------------------ */
/* AVX2 twins against the scalar encoders                                                      */
/* ------------------------------------------------------------------------------------------ */

enum { AVX_COLS = 1024, AVX_ROWS = 48, AVX_N = AVX_COLS * AVX_ROWS, N_AVX_DISTS = 10 };

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static double rng_unit(void) { /* xorshift64*, in (0, 1) */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return ((double)((rng_state * 2685821657736338717ULL) >> 11) + 0.5) / 9007199254740992.0;
}
static double rng_gauss(void) {
  return sqrt(-2.0 * log(rng_unit())) * cos(6.283185307179586 * rng_unit());
}

/* Distribution d over n floats. The last ones aim at the lanes' branches: sub-blocks (of 16)
 * that are flat, all zero of either sign, one-signed, a lone outlier, subnormal, very large
 * or very small, on an integer grid (rounding ties); the last, sub-blocks at magnitudes from
 * 1e-44 to FLT_MAX. */
static void fill_dist(int d, float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const double g = rng_gauss();
    switch (d) {
      case 0: x[i] = (float)(g * 0.02 * (rng_unit() < 0.005 ? 10 : 1)); break;
      case 1: x[i] = (float)(rng_unit() * 2 - 1); break;
      case 2: x[i] = (float)(g / (rng_unit() + 0.01) * 1e-3); break; /* heavy tails */
      case 3: x[i] = (float)fabs(g); break;
      case 4: x[i] = (float)-fabs(g * 3); break;
      case 5: x[i] = rng_unit() < 0.85 ? (rng_unit() < 0.5 ? 0.0f : -0.0f) : (float)g; break;
      case 6: x[i] = (float)((int)(rng_unit() * 9) - 4); break;
      default: x[i] = (float)g; break;
    }
  }
  if (d == 9) { /* extreme magnitudes per sub-block of 16: x² and the sums overflow or vanish */
    static const float mag[8] = {1e19f, 1e30f, 7e37f, 1e-25f, 1e-35f, 1e-40f, 1e-44f, 1.0f};
    for (int64_t i = 0; i < n; i++) {
      const int64_t b = i / 16;
      x[i] *= mag[b % 8];
      if (b % 8 == 2 && i % 16 == (b / 8) % 16) x[i] = b % 16 < 8 ? 3.4e38f : -3.4e38f;
    }
    return;
  }
  if (d < 7) return;
  for (int64_t b = 0; b < n / 16; b++) {
    float *y = x + 16 * b;
    const int pos = (int)(rng_unit() * 16);
    switch ((b + (d == 8 ? 5 : 0)) % 11) {
      case 0: for (int j = 0; j < 16; j++) y[j] = 0.0f; break;
      case 1: for (int j = 0; j < 16; j++) y[j] = (j % 3) ? -0.0f : 0.0f; break;
      case 2: for (int j = 0; j < 16; j++) y[j] = 0.375f; break;
      case 3: for (int j = 0; j < 16; j++) y[j] = -2.5f; break;
      case 4: for (int j = 0; j < 16; j++) y[j] = 0.0f; y[pos] = (float)rng_gauss(); break;
      case 5: for (int j = 0; j < 16; j++) y[j] *= 1e-39f; break;
      case 6: for (int j = 0; j < 16; j++) y[j] *= 1e12f; break;
      case 7: for (int j = 0; j < 16; j++) y[j] *= 1e-17f; break;
      case 8: y[pos] *= 1000.0f; break;
      case 9: for (int j = 0; j < 16; j++) y[j] = fabsf(y[j]) + 1.0f; break;
      default: break; /* plain Gaussian */
    }
  }
}

/* Importance weights: none (NULL), positive, or a quarter of them zero. */
static const float *fill_importance(int variant, float *im) {
  if (variant == 0) return NULL;
  for (int j = 0; j < AVX_COLS; j++)
    im[j] = variant == 2 && rng_unit() < 0.25 ? 0.0f : (float)(0.05 + 3 * rng_unit());
  return im;
}

/* A twin (isa "avx2" or "avx512") against the scalar, byte for byte, on every distribution
 * with and without importance; without the CPU feature it must decline. */
typedef bool (*k_twin_fn)(const float *, void *, int64_t, int64_t, const float *);

static void check_twin(cz_type t, k_twin_fn twin, const char *isa, bool cpu_has) {
  const k_impl *ki = k_impl_of(t);
  const char *name = cz_type_get(t)->name;
  static float x[AVX_N], im[AVX_COLS];
  static uint8_t a[AVX_N], b[AVX_N + 1];
  const size_t nbytes = AVX_ROWS * (size_t)cz_type_row_size(t, AVX_COLS);
  if (!cpu_has) {
    CHECK(!twin(x, b, 1, AVX_COLS, NULL)); /* it must decline */
    printf("# no %s on this CPU: only the fallback checked\n", isa);
    return;
  }
  size_t blocks = 0;
  for (int d = 0; d < N_AVX_DISTS; d++) {
    fill_dist(d, x, AVX_N);
    for (int v = 0; v < 3; v++) {
      const float *imp = fill_importance(v, im);
      char what[96];
      snprintf(what, sizeof what, "%s %s, distribution %d, %s", name, isa, d,
               v == 0 ? "no importance" : v == 1 ? "importance" : "importance with zeros");
      memset(a, 0x11, sizeof a);
      memset(b, 0x22, sizeof b);
      CHECK_EQ_INT(ki->scalar(x, a, AVX_ROWS, AVX_COLS, imp), nbytes);
      CHECK(twin(x, b + 1, AVX_ROWS, AVX_COLS, imp)); /* an odd destination too */
      check_same_bytes(what, b + 1, a, nbytes, cz_type_get(t)->type_size);
      CHECK(b[0] == 0x22 && b[nbytes + 1] == 0x22); /* nothing written around */
      blocks += nbytes / cz_type_get(t)->type_size;
    }
  }
  printf("# %s %s: %zu super-blocks compared\n", name, isa, blocks);
}

static void check_avx2_type(cz_type t) {
  check_twin(t, k_impl_of(t)->avx2, "avx2", __builtin_cpu_supports("avx2"));
}

static void test_avx2_q2_K(void) { check_avx2_type(CZ_TYPE_Q2_K); }
static void test_avx2_q3_K(void) { check_avx2_type(CZ_TYPE_Q3_K); }
static void test_avx2_q4_K(void) { check_avx2_type(CZ_TYPE_Q4_K); }
static void test_avx2_q5_K(void) { check_avx2_type(CZ_TYPE_Q5_K); }
static void test_avx2_q6_K(void) { check_avx2_type(CZ_TYPE_Q6_K); }
/* q6_K's AVX-512 twin (sixteen sub-blocks in one __m512) against the scalar the same way. */
static void test_avx512_q6_K(void) {
  check_twin(CZ_TYPE_Q6_K, cz_q6_K_quantize_avx512, "avx512", __builtin_cpu_supports("avx512f"));
}

/* cz_<t>_to_f32 against the scalar decoder for the K types with a vector decoder (q6_K's AVX2
 * one where the CPU has it; the others' to_f32 is their scalar decoder), bit for bit, on
 * random bytes from an odd address: every 6-bit value and sub-block scale, and scales d that
 * are zero, subnormal, the largest half, Inf and NaN (signaling too: a file's bytes). */
static void test_decode_vs_scalar(void) {
  enum { NB = 2048 };
  static const struct {
    cz_type t;
    void (*scalar)(const void *, float *, int64_t);
  } types[] = {{CZ_TYPE_Q6_K, cz_q6_K_to_f32_scalar}};
  static const uint16_t special[] = {0x0000, 0x8000, 0x0001, 0x83ff, 0x7bff, 0xfbff,
                                     0x7c00, 0xfc00, 0x7e00, 0x7d55, 0x3c00, 0x1400};
  for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
    const cz_type_traits *tr = cz_type_get(types[k].t);
    const size_t bs = tr->type_size;
    uint8_t *src = malloc(NB * bs + 1);
    float *y0 = malloc(sizeof(float) * NB * 256), *y1 = malloc(sizeof(float) * NB * 256);
    for (size_t i = 0; i < NB * bs + 1; i++) src[i] = (uint8_t)(rng_unit() * 256);
    /* d is the block's first half (K-quants with a min: d then dmin), except q6_K's last */
    for (int b = 0; b < NB; b++) {
      const size_t at = 1 + b * bs + (types[k].t == CZ_TYPE_Q6_K ? bs - 2 : 0);
      uint16_t h = b < 64 ? special[b % 12] : (uint16_t)(rng_unit() * 0x7800);
      if (b >= 64 && rng_unit() < 0.5) h |= 0x8000;
      memcpy(src + at, &h, 2);
    }
    types[k].scalar(src + 1, y0, NB * 256);
    tr->to_f32(src + 1, y1, NB * 256);
    size_t bad = 0;
    for (size_t i = 0; i < (size_t)NB * 256; i++) bad += memcmp(&y0[i], &y1[i], sizeof(float)) != 0;
    if (bad) printf("# %s: %zu of %d values differ from the scalar decoder\n", tr->name, bad, NB * 256);
    CHECK(bad == 0);
    free(src);
    free(y0);
    free(y1);
  }
}

/* q3_K's level search (make_q3_quants) stops after 5 sweeps even when the 5th still changed a
 * level. These sub-blocks of 16 (found by searching Gaussian ones, about 1 in 200,000) give
 * other levels with a cap of 4 or 6 sweeps than with 5, so an AVX2 twin that ran one sweep
 * more or less would differ here; they go into super-blocks at every position, scaled by powers
 * of two (which scale every product and sum exactly: the same decisions), between Gaussian
 * sub-blocks. */
static const float Q3_FIVE_SWEEPS[][16] = {
    {0x1.14e6ecp-2, -0x1.329e5p-1, 0x1.e721p-1, 0x1.49fbc8p+0, -0x1.becb1ap+0, 0x1.9f24dp-1,
     0x1.cd309cp-4, -0x1.114036p-1, -0x1.30eb9cp+0, -0x1.9c9b3ap-1, -0x1.5c57b2p-1,
     -0x1.0cab8p+0, -0x1.8a0caap+0, -0x1.36641ep-1, -0x1.cbdc98p-6, 0x1.b14092p+0},
    {-0x1.5dc85ap-1, 0x1.aa847cp-1, 0x1.5b08a4p-2, 0x1.5596dp+0, -0x1.e5f302p-2, 0x1.5e385p-3,
     0x1.b6413ap+0, 0x1.3f3e08p+0, -0x1.8e49d6p+0, -0x1.12a99p-4, -0x1.5aa25cp-1,
     0x1.2a8386p+0, -0x1.150f5ep-1, -0x1.c5269ap+0, 0x1.284532p+0, -0x1.323e88p+0},
    {0x1.44db64p-2, 0x1.42cb8p+0, -0x1.d159d6p-3, -0x1.1bd6dap+0, -0x1.0e5f3ap-3,
     -0x1.3993eep-1, -0x1.4d0764p-2, 0x1.465f04p-2, -0x1.11578ap+0, 0x1.4d635cp+0,
     0x1.e6549p-1, -0x1.c8737ep-1, -0x1.5dce6p+0, 0x1.1b9bd4p-1, -0x1.0cc24p-1, 0x1.bc0752p-1},
    {0x1.72ea66p+0, 0x1.556d0ap-3, 0x1.69003cp-1, 0x1.1f10bcp-2, -0x1.68929cp+0,
     -0x1.8b8268p-3, -0x1.326d3cp-3, -0x1.db1f22p+0, -0x1.c0f356p+0, -0x1.146b2p+0,
     0x1.cee2e4p+0, -0x1.ab8518p+0, -0x1.39acfep-3, -0x1.2b3eeap+0, -0x1.7298fap-1,
     0x1.bb7058p-1},
    {-0x1.3fe2bcp+0, -0x1.926b18p-1, -0x1.36dd3ap+0, 0x1.e9c1cp-4, 0x1.6bd89ep-3,
     -0x1.47825cp-5, 0x1.0b97bep-2, 0x1.651498p-1, -0x1.886e7ap+0, 0x1.cc764ep+0,
     -0x1.71f51ap+0, -0x1.d87312p-4, -0x1.688f0cp-1, 0x1.578c5ap+0, -0x1.3394a8p-4,
     -0x1.d7da78p+0},
    {0x1.dcf47ep-2, 0x1.97a2a4p-1, 0x1.55b76cp+0, 0x1.4a5632p+0, -0x1.8f68fep-4, 0x1.d8c9dp-2,
     0x1.9cd5cap+0, -0x1.b4a1ep+0, 0x1.13662p+0, -0x1.00a6d4p+0, 0x1.1cdfep+0, 0x1.0bc38cp+0,
     -0x1.a7d516p-4, -0x1.820a3ep+0, 0x1.f8e202p-3, -0x1.f88462p-2},
};

static void test_avx2_q3_K_sweeps(void) {
  enum { NSUB = 6, SB = 3 * 16 * NSUB }; /* 3 super-blocks per (sub-block, position) pair */
  static float x[SB * 256];
  static uint8_t a[SB * 110], b[SB * 110];
  if (!__builtin_cpu_supports("avx2")) {
    printf("# no AVX2 on this CPU: nothing to compare\n");
    return;
  }
  for (int sb = 0; sb < SB; sb++) {
    float *y = x + 256 * sb;
    for (int i = 0; i < 256; i++) y[i] = (float)(rng_gauss() * (sb % 3 == 2 ? 1e-3 : 1.0));
    const int k = sb / 3 % NSUB, pos = sb / (3 * NSUB); /* pos: which sub-block of 16 */
    const float f = ldexpf(1.0f, (sb % 7) * 3 - 9);
    for (int i = 0; i < 16; i++) y[16 * pos + i] = Q3_FIVE_SWEEPS[k][i] * f;
  }
  const cz_type_traits *tr = cz_type_get(CZ_TYPE_Q3_K);
  CHECK_EQ_INT(cz_q3_K_quantize_scalar(x, a, SB, 256, NULL), sizeof a);
  CHECK(cz_q3_K_quantize_avx2(x, b, SB, 256, NULL));
  check_same_bytes("q3_K avx2 on five-sweep sub-blocks", b, a, sizeof a, tr->type_size);
}

/* ------------------------------------------------------------------------------------------ */
/* whole model: llama-quantize's manifest                                                      */
/* ------------------------------------------------------------------------------------------ */

static bool is_k_type(int t) {
  return t == CZ_TYPE_Q2_K || t == CZ_TYPE_Q3_K || t == CZ_TYPE_Q4_K || t == CZ_TYPE_Q5_K ||
         t == CZ_TYPE_Q6_K;
}

/* The manifest run with this ftype and these options (NULL: none), or NULL. */
static const json_t *manifest_run(const char *ftype, const char *option) {
  size_t i;
  json_t *run;
  json_array_foreach(json_object_get(manifest, "runs"), i, run) {
    const json_t *opts = json_object_get(run, "options");
    if (strcmp(json_string_value(json_object_get(run, "ftype")), ftype) != 0) continue;
    if (option == NULL ? json_array_size(opts) == 0
                       : json_array_size(opts) > 0 &&
                             strcmp(json_string_value(json_array_get(opts, 0)), option) == 0)
      return run;
  }
  printf("# manifest has no run %s %s\n", ftype, option ? option : "(no options)");
  cz_test_failures++;
  return NULL;
}

/* Compare one tensor's bytes with a manifest entry (type, nbytes, sha256). */
static void check_manifest_tensor(const char *run, const json_t *want, int type,
                                  const uint8_t *data, uint64_t nbytes) {
  const char *name = json_string_value(json_object_get(want, "name"));
  const char *sha = json_string_value(json_object_get(want, "sha256"));
  char hex[65];
  if ((uint64_t)json_integer_value(json_object_get(want, "nbytes")) != nbytes) {
    printf("# %s %s: %llu bytes, llama-quantize wrote %lld\n", run, name,
           (unsigned long long)nbytes, json_integer_value(json_object_get(want, "nbytes")));
    cz_test_failures++;
    return;
  }
  sha256_hex_of(data, (size_t)nbytes, hex);
  if (strcmp(hex, sha) != 0) {
    printf("# %s %s (%s): sha256 %s, llama-quantize's %s\n", run, name,
           cz_type_get(type)->name, hex, sha);
    cz_test_failures++;
  }
}

/* The pipeline with {"op":"quantize","type":T} on the tiny model; every tensor that the
 * manifest's run (no options) stores as T must have llama-quantize's bytes. */
static void check_pipeline(cz_type type, const char *ftype) {
  const json_t *run = manifest_run(ftype, NULL);
  if (tiny == NULL || run == NULL) {
    cz_test_failures++;
    return;
  }
  const char *tname = cz_type_get(type)->name;
  char recipe[128], out_path[512];
  snprintf(recipe, sizeof recipe, "{\"steps\":[{\"op\":\"quantize\",\"type\":\"%s\"}]}", tname);
  snprintf(out_path, sizeof out_path, "%s/%s.gguf", tmpdir, tname);

  json_error_t je;
  json_t *body = json_loads(recipe, 0, &je);
  cz_recipe *r = NULL;
  cz_run *cr = NULL;
  cz_model *out = NULL;
  cz_error err = {0};
  int fd = -1;
  if (cz_recipe_parse(body, NULL, &r, &err) || cz_run_plan(r, tiny, NULL, &cr, &err)) goto fail;
  fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    cz_err_set(&err, CZ_E_IO, "open %s: %s", out_path, strerror(errno));
    goto fail;
  }
  if (cz_run_begin(cr, fd, &err) || cz_run_exec(cr, 2, &err)) goto fail;
  close(fd);
  fd = -1;
  if (cz_model_open(out_path, &out, &err)) goto fail;

  size_t i, compared = 0;
  json_t *want;
  json_array_foreach(json_object_get(run, "tensors"), i, want) {
    if (strcasecmp(json_string_value(json_object_get(want, "type")), tname) != 0) continue;
    const char *name = json_string_value(json_object_get(want, "name"));
    const cz_tensor *t = cz_model_find(out, name);
    if (t == NULL || t->type != type) {
      printf("# %s: our output has %s %s\n", name, t ? "it as" : "no such tensor",
             t ? cz_type_get(t->type)->name : "");
      cz_test_failures++;
      continue;
    }
    check_manifest_tensor(ftype, want, type, t->data, t->nbytes);
    compared++;
  }
  printf("# %s: %zu %s tensors compared\n", ftype, compared, tname);
  CHECK(compared > 0);
  goto done;
fail:
  printf("# pipeline %s: %s\n", recipe, err.msg);
  cz_test_failures++;
done:
  if (fd >= 0) close(fd);
  cz_model_close(out);
  cz_run_free(cr);
  cz_recipe_free(r);
  json_decref(body);
}

static void test_pipeline_q2_K(void) { check_pipeline(CZ_TYPE_Q2_K, "Q2_K"); }
static void test_pipeline_q3_K(void) { check_pipeline(CZ_TYPE_Q3_K, "Q3_K_S"); }
static void test_pipeline_q4_K(void) { check_pipeline(CZ_TYPE_Q4_K, "Q4_K_S"); }
static void test_pipeline_q5_K(void) { check_pipeline(CZ_TYPE_Q5_K, "Q5_K_S"); }
static void test_pipeline_q6_K(void) { check_pipeline(CZ_TYPE_Q6_K, "Q6_K"); }

/* llama-quantize's importance for a weight from an imatrix GGUF (quant-formats.md 5): the
 * mean squared activation <name>.in_sum2 / <name>.counts per input column; a tensor that
 * never saw input (count 0) gets ones. Returns false when the imatrix has no entry (the
 * tensor is then quantized without one, as llama-quantize does). */
static bool load_importance(const char *name, int64_t ncols, float *im) {
  char key[CZ_MAX_NAME + 16];
  snprintf(key, sizeof key, "%s.in_sum2", name);
  const cz_tensor *sums = tiny_imatrix ? cz_model_find(tiny_imatrix, key) : NULL;
  snprintf(key, sizeof key, "%s.counts", name);
  const cz_tensor *counts = tiny_imatrix ? cz_model_find(tiny_imatrix, key) : NULL;
  if (sums == NULL || counts == NULL) return false;
  if (sums->type != CZ_TYPE_F32 || counts->type != CZ_TYPE_F32 ||
      cz_tensor_nelements(sums) != ncols || cz_tensor_nelements(counts) != 1) {
    printf("# imatrix entry for %s is not F32 [%lld] + F32 [1]\n", name, (long long)ncols);
    cz_test_failures++;
    return false;
  }
  float count;
  memcpy(&count, counts->data, sizeof count);
  memcpy(im, sums->data, (size_t)ncols * sizeof(float));
  for (int64_t j = 0; j < ncols; j++) im[j] = count > 0.0f ? im[j] / count : 1.0f;
  return true;
}

/* The type's quantize called directly on the input tensor's rows converted to f32, with the
 * tensor's importance when weighted (and the imatrix has it); sha256 against want. */
static void check_direct(const char *run, const json_t *want, int type, bool weighted,
                         int *n_weighted) {
  const char *name = json_string_value(json_object_get(want, "name"));
  const cz_tensor *t = cz_model_find(tiny, name);
  const cz_type_traits *in = t ? cz_type_get(t->type) : NULL;
  if (t == NULL || in == NULL || in->to_f32 == NULL || t->n_dims != 2) {
    printf("# input has no decodable 2-D tensor %s\n", name);
    cz_test_failures++;
    return;
  }
  const int64_t ncols = t->ne[0], nrows = t->ne[1];
  const uint64_t nbytes = cz_type_row_size((cz_type)type, ncols) * (uint64_t)nrows;
  float *x = malloc((size_t)(ncols * nrows) * sizeof(float));
  float *im = malloc((size_t)ncols * sizeof(float));
  uint8_t *q = malloc((size_t)nbytes);
  in->to_f32(t->data, x, ncols * nrows);
  bool have_im = weighted && load_importance(name, ncols, im);
  *n_weighted += have_im;
  CHECK_EQ_INT(cz_type_get(type)->quantize(x, q, nrows, ncols, have_im ? im : NULL), nbytes);
  check_manifest_tensor(run, want, type, q, nbytes);
  free(x);
  free(im);
  free(q);
}

/* Every tensor of an "--imatrix" run that llama-quantize stored as a K type. */
static void check_imatrix_run(const char *ftype) {
  const json_t *run = manifest_run(ftype, "--imatrix");
  if (tiny == NULL || tiny_imatrix == NULL || run == NULL) {
    cz_test_failures++;
    return;
  }
  size_t i, compared = 0;
  int n_weighted = 0;
  json_t *want;
  json_array_foreach(json_object_get(run, "tensors"), i, want) {
    const int type = cz_type_from_name(json_string_value(json_object_get(want, "type")));
    if (!is_k_type(type)) continue;
    check_direct(ftype, want, type, true, &n_weighted);
    compared++;
  }
  printf("# %s --imatrix: %zu K-quant tensors compared, %d with importance weights\n", ftype,
         compared, n_weighted);
  CHECK(compared > 0 && n_weighted > 0);
}

static void test_imatrix_Q2_K(void) { check_imatrix_run("Q2_K"); }
static void test_imatrix_Q6_K(void) { check_imatrix_run("Q6_K"); }
static void test_imatrix_Q4_K_M(void) { check_imatrix_run("Q4_K_M"); }

/* Every K-typed tensor of every run, kernel called directly (mixture choices come from the
 * manifest, so this checks the kernels on every tensor shape and type llama-quantize
 * produced, not the mixture logic). Identical (tensor, type, weighted) triples are computed
 * once. */
static void test_every_run_direct(void) {
  if (tiny == NULL || manifest == NULL) {
    cz_test_failures++;
    return;
  }
  enum { MAX_SEEN = 512 }; /* the manifest has about 220 distinct cases */
  typedef struct {
    const char *name;
    int type;
    bool weighted;
  } seen_case;
  static seen_case seen[MAX_SEEN];
  size_t n_seen = 0, r, i, compared = 0;
  int n_weighted = 0;
  json_t *run, *want;
  json_array_foreach(json_object_get(manifest, "runs"), r, run) {
    const json_t *opts = json_object_get(run, "options");
    bool weighted = false;
    for (size_t k = 0; k < json_array_size(opts); k++)
      weighted |= strcmp(json_string_value(json_array_get(opts, k)), "--imatrix") == 0;
    char label[256];
    snprintf(label, sizeof label, "%s%s", json_string_value(json_object_get(run, "ftype")),
             weighted ? " --imatrix" : (json_array_size(opts) ? " (options)" : ""));
    json_array_foreach(json_object_get(run, "tensors"), i, want) {
      const int type = cz_type_from_name(json_string_value(json_object_get(want, "type")));
      if (!is_k_type(type)) continue;
      const char *name = json_string_value(json_object_get(want, "name"));
      bool dup = false;
      for (size_t k = 0; k < n_seen && !dup; k++)
        dup = seen[k].type == type && seen[k].weighted == weighted &&
              strcmp(seen[k].name, name) == 0;
      if (dup) continue;
      if (n_seen < MAX_SEEN) seen[n_seen++] = (seen_case){name, type, weighted};
      check_direct(label, want, type, weighted, &n_weighted);
      compared++;
    }
  }
  printf("# %zu distinct (tensor, K type, imatrix) cases compared, %d weighted\n", compared,
         n_weighted);
  CHECK(compared > 0);
}

/* ------------------------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

#define GOLDEN_ROWS(tn, dist) CZ_TEST(test_##tn##_##dist), CZ_TEST(test_##tn##_##dist##_imatrix)
#define GOLDEN_TYPE_ROWS(tn)                                                               \
  GOLDEN_ROWS(tn, gauss), GOLDEN_ROWS(tn, cos), GOLDEN_ROWS(tn, uniform),                  \
      GOLDEN_ROWS(tn, heavy), GOLDEN_ROWS(tn, edge)

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "%s/cz_test_quants_k.XXXXXX",
           getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (mkdtemp(tmpdir) == NULL) {
    printf("Bail out! mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  golden = open_data("ggml-quants.safetensors");
  tiny = open_data("tiny-llama-f16.gguf");
  tiny_imatrix = open_data("tiny-llama-imatrix.gguf");
  char path[4096];
  json_error_t je;
  snprintf(path, sizeof path, "%s/tests/data/tiny-llama-manifest.json", cz_test_srcdir());
  manifest = json_load_file(path, 0, &je);
  if (manifest == NULL) printf("# cannot read %s: %s\n", path, je.text);

  static const cz_test_case cases[] = {
      GOLDEN_TYPE_ROWS(q2_K),        GOLDEN_TYPE_ROWS(q3_K),     GOLDEN_TYPE_ROWS(q4_K),
      GOLDEN_TYPE_ROWS(q5_K),        GOLDEN_TYPE_ROWS(q6_K),     CZ_TEST(test_unaligned),
      CZ_TEST(test_avx2_q2_K),       CZ_TEST(test_avx2_q3_K),    CZ_TEST(test_avx2_q4_K),
      CZ_TEST(test_avx2_q5_K),       CZ_TEST(test_avx2_q6_K),    CZ_TEST(test_decode_vs_scalar),
      CZ_TEST(test_avx2_q3_K_sweeps), CZ_TEST(test_avx512_q6_K),
      CZ_TEST(test_pipeline_q2_K),   CZ_TEST(test_pipeline_q3_K), CZ_TEST(test_pipeline_q4_K),
      CZ_TEST(test_pipeline_q5_K),   CZ_TEST(test_pipeline_q6_K), CZ_TEST(test_imatrix_Q2_K),
      CZ_TEST(test_imatrix_Q6_K),    CZ_TEST(test_imatrix_Q4_K_M), CZ_TEST(test_every_run_direct),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  json_decref(manifest);
  cz_model_close(tiny_imatrix);
  cz_model_close(tiny);
  cz_model_close(golden);
  nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}
