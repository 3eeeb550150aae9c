/* test_page: cz_page's opaque page tokens with the clock given by the test: round trip, every
 * character altered, another list, other filters, another key (another process), expiry after
 * CZ_PAGE_TOKEN_TTL_S, and the shapes a client could send. */
#include <stdint.h>

#include "cz_page.h"
#include "cz_test.h"

static cz_page_key key(uint8_t v) {
  cz_page_key k;
  memset(k.key, v, sizeof k.key);
  return k;
}

static int64_t check(const cz_page_key *k, cz_page_list l, const char *const *f, int n,
                     const char *tok, int64_t now, cz_error *e) {
  int64_t before = -1;
  e->code = CZ_E_OK;
  e->msg[0] = 0;
  cz_err_code rc = cz_page_token_check(k, l, f, n, tok, now, &before, e);
  return rc == CZ_E_OK ? before : -(int64_t)rc;
}

static void test_round_trip_and_alterations(void) {
  cz_page_key k = key(7);
  const char *f[] = {"succeeded", "mdl_1"};
  char tok[CZ_PAGE_TOKEN_LEN + 1];
  cz_error e;
  cz_page_token_at(&k, CZ_PAGE_JOBS, f, 2, 12345, 1000000, tok);
  CHECK_EQ_INT(strlen(tok), CZ_PAGE_TOKEN_LEN);
  CHECK(strstr(tok, "12345") == NULL);
  CHECK_EQ_INT(check(&k, CZ_PAGE_JOBS, f, 2, tok, 1000000, &e), 12345);
  /* every character changed to another of the alphabet is refused */
  for (size_t i = 0; i < CZ_PAGE_TOKEN_LEN; i++) {
    char t[CZ_PAGE_TOKEN_LEN + 1];
    memcpy(t, tok, sizeof t);
    t[i] = t[i] == 'A' ? 'B' : 'A';
    int64_t r = check(&k, CZ_PAGE_JOBS, f, 2, t, 1000000, &e);
    CHECK_EQ_INT(r, -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
    if (r >= 0) printf("# position %zu accepted\n", i);
  }
  /* truncated, extended, padded, empty, over the length limit, another alphabet */
  char t[128];
  snprintf(t, sizeof t, "%.*s", CZ_PAGE_TOKEN_LEN - 1, tok);
  CHECK_EQ_INT(check(&k, CZ_PAGE_JOBS, f, 2, t, 1000000, &e), -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
  snprintf(t, sizeof t, "%sA", tok);
  CHECK_EQ_INT(check(&k, CZ_PAGE_JOBS, f, 2, t, 1000000, &e), -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
  snprintf(t, sizeof t, "%s=", tok);
  CHECK_EQ_INT(check(&k, CZ_PAGE_JOBS, f, 2, t, 1000000, &e), -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
  CHECK_EQ_INT(check(&k, CZ_PAGE_JOBS, f, 2, "", 1000000, &e), -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
  CHECK_EQ_INT(check(&k, CZ_PAGE_JOBS, f, 2, "12345", 1000000, &e),
               -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
  memset(t, 'A', 100);
  t[100] = 0;
  CHECK_EQ_INT(check(&k, CZ_PAGE_JOBS, f, 2, t, 1000000, &e), -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
  memcpy(t, tok, CZ_PAGE_TOKEN_LEN + 1);
  for (char *p = t; *p; p++) *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
  if (strcmp(t, tok) != 0)
    CHECK_EQ_INT(check(&k, CZ_PAGE_JOBS, f, 2, t, 1000000, &e), -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
}

static void test_binding(void) {
  cz_page_key k = key(7), other = key(8);
  const char *f[] = {"succeeded", NULL};
  char tok[CZ_PAGE_TOKEN_LEN + 1];
  cz_error e;
  cz_page_token_at(&k, CZ_PAGE_JOBS, f, 2, 99, 5000, tok);
  CHECK_EQ_INT(check(&k, CZ_PAGE_JOBS, f, 2, tok, 5000, &e), 99);
  /* another daemon process (another key) */
  CHECK_EQ_INT(check(&other, CZ_PAGE_JOBS, f, 2, tok, 5000, &e), -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
  /* another list */
  CHECK_EQ_INT(check(&k, CZ_PAGE_MODELS, f, 2, tok, 5000, &e), -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
  CHECK_EQ_INT(check(&k, CZ_PAGE_CALIBRATIONS, f, 2, tok, 5000, &e),
               -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
  /* other filters, each told apart: absent, empty, another value, a value that moved */
  const char *g1[] = {NULL, NULL}, *g2[] = {"failed", NULL}, *g3[] = {"succeeded", ""},
             *g4[] = {NULL, "succeeded"}, *g5[] = {"succeede", "d"};
  const char *const *gs[] = {g1, g2, g3, g4, g5};
  for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) {
    CHECK_EQ_INT(check(&k, CZ_PAGE_JOBS, gs[i], 2, tok, 5000, &e),
                 -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
    CHECK(strstr(e.msg, "filters") != NULL);
  }
}

static void test_expiry(void) {
  cz_page_key k = key(3);
  char tok[CZ_PAGE_TOKEN_LEN + 1];
  cz_error e;
  int64_t t0 = 1795000000;  /* 2026-11 */
  cz_page_token_at(&k, CZ_PAGE_MODELS, NULL, 0, 7, t0, tok);
  CHECK_EQ_INT(check(&k, CZ_PAGE_MODELS, NULL, 0, tok, t0 + CZ_PAGE_TOKEN_TTL_S, &e), 7);
  CHECK_EQ_INT(check(&k, CZ_PAGE_MODELS, NULL, 0, tok, t0 + CZ_PAGE_TOKEN_TTL_S + 1, &e),
               -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
  CHECK(strstr(e.msg, "expired") != NULL);
  /* a clock stepped back a little keeps the token valid; a token from the far future is not */
  CHECK_EQ_INT(check(&k, CZ_PAGE_MODELS, NULL, 0, tok, t0 - 200, &e), 7);
  CHECK_EQ_INT(check(&k, CZ_PAGE_MODELS, NULL, 0, tok, t0 - 1000, &e),
               -(int64_t)CZ_E_INVALID_PAGE_TOKEN);
  /* past 2106 (32-bit seconds wrap): still a 3-day window */
  int64_t t1 = ((int64_t)1 << 32) + 100;
  cz_page_token_at(&k, CZ_PAGE_MODELS, NULL, 0, 8, t1 - 200, tok);
  CHECK_EQ_INT(check(&k, CZ_PAGE_MODELS, NULL, 0, tok, t1, &e), 8);
}

int main(void) {
  static const cz_test_case cases[] = {CZ_TEST(test_round_trip_and_alterations),
                                       CZ_TEST(test_binding), CZ_TEST(test_expiry)};
  return cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
}
