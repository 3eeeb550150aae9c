/* cz_test: a tiny TAP producer for the C unit tests (automake's tap-driver counts each line).
 *
 * A test file defines `static void test_xxx(void)` functions and lists them in a table passed
 * to cz_test_main(). CHECK() records one assertion failure and keeps going, so one run shows
 * every broken property of a test; each test function is one TAP line. The CZ_CHECK_* macros
 * print both operands.
 */
#ifndef CZ_TEST_H
#define CZ_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cz_test_failures; /* failures inside the current test function */

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      cz_test_failures++;                                                             \
      printf("# %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
    }                                                                                 \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                            \
  do {                                                                                \
    long long _a = (long long)(a), _b = (long long)(b);                               \
    if (_a != _b) {                                                                   \
      cz_test_failures++;                                                             \
      printf("# %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
             _a, _b);                                                                 \
    }                                                                                 \
  } while (0)

#define CHECK_EQ_STR(a, b)                                                            \
  do {                                                                                \
    const char *_a = (a), *_b = (b);                                                  \
    if (_a == NULL || _b == NULL || strcmp(_a, _b) != 0) {                            \
      cz_test_failures++;                                                             \
      printf("# %s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a,  \
             #b, _a ? _a : "(null)", _b ? _b : "(null)");                             \
    }                                                                                 \
  } while (0)

typedef struct {
  const char *name;
  void (*fn)(void);
} cz_test_case;

/* Directory of the source tree (tests/data lives there); from the harness's environment,
 * or "." when a test is run by hand from the top of the tree. */
static inline const char *cz_test_srcdir(void) {
  const char *s = getenv("CZ_SRCDIR");
  return s && *s ? s : ".";
}

static inline int cz_test_main(const cz_test_case *cases, int n) {
  int failed = 0;
  printf("1..%d\n", n);
  for (int i = 0; i < n; i++) {
    cz_test_failures = 0;
    cases[i].fn();
    printf("%s %d - %s\n", cz_test_failures ? "not ok" : "ok", i + 1, cases[i].name);
    fflush(stdout);
    if (cz_test_failures) failed++;
  }
  return failed ? 1 : 0;
}

#define CZ_TEST(fn) {#fn, fn}

#endif
