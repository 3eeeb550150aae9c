/* test_golden: our Q8_0, f16 and bf16 encoders reproduce ggml's bytes on its golden data. */
#include <stdint.h>

#include "cz_model.h"
#include "cz_test.h"
#include "cz_type.h"

/* tests/data/README.md: every input is F32 [4,512], i.e. 4 rows of 512. */
enum { ROWS = 4, COLS = 512, N = ROWS * COLS };

static cz_model *golden;
static char golden_path[4096];
static cz_error open_error;

static void open_golden(void) {
  snprintf(golden_path, sizeof golden_path, "%s/tests/data/ggml-quants.safetensors",
           cz_test_srcdir());
  if (cz_model_open(golden_path, &golden, &open_error) != CZ_E_OK) golden = NULL;
}

/* A golden tensor by name with the expected type and size, or NULL after recording why. */
static const cz_tensor *golden_tensor(const char *name, cz_type type, uint64_t nbytes) {
  if (golden == NULL) {
    printf("# cannot open %s: %s\n", golden_path, open_error.msg);
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

/* Golden floats are read into an aligned copy: the mapping offsets need not be 4-aligned. */
static int load_input(const char *dist, float *x) {
  char name[64];
  snprintf(name, sizeof name, "input.%s", dist);
  const cz_tensor *t = golden_tensor(name, CZ_TYPE_F32, N * sizeof(float));
  if (t == NULL) return 0;
  CHECK_EQ_INT(t->ne[0], COLS);
  CHECK_EQ_INT(t->ne[1], ROWS);
  memcpy(x, t->data, N * sizeof(float));
  return 1;
}

/* Q8_0: quantize row by row as ggml_quantize_chunk does, then dequantize the golden bytes. */
static void check_q8_0(const char *dist) {
  static float x[N], y[N];
  static cz_block_q8_0 q[N / CZ_QK8_0];
  char qname[64], dname[64];
  snprintf(qname, sizeof qname, "q8_0.%s.quant", dist);
  snprintf(dname, sizeof dname, "q8_0.%s.dequant", dist);
  if (!load_input(dist, x)) return;
  const cz_tensor *tq = golden_tensor(qname, CZ_TYPE_U8, sizeof q);
  const cz_tensor *td = golden_tensor(dname, CZ_TYPE_F32, sizeof y);
  if (tq == NULL || td == NULL) return;

  for (int r = 0; r < ROWS; r++)
    cz_quantize_row_q8_0(x + r * COLS, q + r * (COLS / CZ_QK8_0), COLS);
  check_same_bytes(qname, q, tq->data, sizeof q);

  memcpy(q, tq->data, sizeof q);
  cz_dequantize_row_q8_0(q, y, N);
  check_same_bytes(dname, y, td->data, sizeof y);
}

/* f16 / bf16: the golden ".quant" is ggml's conversion of the input; ".dequant" its decode. */
static void check_half(cz_type type, const char *dist) {
  static float x[N], y[N];
  static uint16_t h[N];
  const cz_type_traits *tr = cz_type_get(type);
  char qname[64], dname[64];
  snprintf(qname, sizeof qname, "%s.%s.quant", tr->name, dist);
  snprintf(dname, sizeof dname, "%s.%s.dequant", tr->name, dist);
  if (!load_input(dist, x)) return;
  const cz_tensor *tq = golden_tensor(qname, CZ_TYPE_U8, sizeof h);
  const cz_tensor *td = golden_tensor(dname, CZ_TYPE_F32, sizeof y);
  if (tq == NULL || td == NULL) return;

  tr->from_f32(x, h, N);
  check_same_bytes(qname, h, tq->data, sizeof h);
  tr->to_f32(tq->data, y, N);
  check_same_bytes(dname, y, td->data, sizeof y);
}

/* One TAP line per (type, dist). */
#define GOLDEN_CASES(dist)                                                    \
  static void test_q8_0_##dist(void) { check_q8_0(#dist); }                   \
  static void test_f16_##dist(void) { check_half(CZ_TYPE_F16, #dist); }      \
  static void test_bf16_##dist(void) { check_half(CZ_TYPE_BF16, #dist); }

GOLDEN_CASES(gauss)
GOLDEN_CASES(cos)
GOLDEN_CASES(uniform)
GOLDEN_CASES(heavy)
GOLDEN_CASES(edge)
#undef GOLDEN_CASES

int main(void) {
  static const cz_test_case cases[] = {
      CZ_TEST(test_q8_0_gauss), CZ_TEST(test_q8_0_cos),   CZ_TEST(test_q8_0_uniform),
      CZ_TEST(test_q8_0_heavy), CZ_TEST(test_q8_0_edge),  CZ_TEST(test_f16_gauss),
      CZ_TEST(test_f16_cos),    CZ_TEST(test_f16_uniform), CZ_TEST(test_f16_heavy),
      CZ_TEST(test_f16_edge),   CZ_TEST(test_bf16_gauss), CZ_TEST(test_bf16_cos),
      CZ_TEST(test_bf16_uniform), CZ_TEST(test_bf16_heavy), CZ_TEST(test_bf16_edge),
  };
  open_golden();
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  cz_model_close(golden);
  return rc;
}
