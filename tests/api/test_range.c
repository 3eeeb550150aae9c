/* test_range: the pure header parsers of api/cz_http_parse.c: Range (valid forms, clamping,
 * unsatisfiable, malformed and multi-range headers), entity-tag lists and If-Range, durations,
 * request ids, idempotency keys and Content-Disposition file names. */
#include <stdint.h>

#include "cz_http_parse.h"
#include "cz_test.h"

/* One Range case: the result and, when OK, the interval. */
static void range_is(const char *h, uint64_t size, cz_range_result want, uint64_t wa,
                     uint64_t wb) {
  uint64_t a = 777, b = 777;
  cz_range_result got = cz_range_parse(h, size, &a, &b);
  if (got != want) {
    cz_test_failures++;
    printf("# Range '%s' on %llu bytes: result %d, want %d\n", h ? h : "(null)",
           (unsigned long long)size, (int)got, (int)want);
    return;
  }
  if (want == CZ_RANGE_OK && (a != wa || b != wb)) {
    cz_test_failures++;
    printf("# Range '%s' on %llu bytes: [%llu, %llu], want [%llu, %llu]\n", h,
           (unsigned long long)size, (unsigned long long)a, (unsigned long long)b,
           (unsigned long long)wa, (unsigned long long)wb);
  }
}

static void test_range_valid(void) {
  range_is(NULL, 100, CZ_RANGE_NONE, 0, 0);
  range_is("bytes=0-9", 100, CZ_RANGE_OK, 0, 9);
  range_is("bytes=10-10", 100, CZ_RANGE_OK, 10, 10);
  range_is("bytes=0-99", 100, CZ_RANGE_OK, 0, 99);
  range_is("bytes=50-", 100, CZ_RANGE_OK, 50, 99);
  range_is("bytes=99-", 100, CZ_RANGE_OK, 99, 99);
  range_is("bytes=-10", 100, CZ_RANGE_OK, 90, 99);
  range_is("bytes=-1", 100, CZ_RANGE_OK, 99, 99);
  range_is("BYTES=1-2", 100, CZ_RANGE_OK, 1, 2);        /* the unit is case-insensitive */
  range_is("Bytes=1-2", 100, CZ_RANGE_OK, 1, 2);
  range_is("bytes= 1-2 ", 100, CZ_RANGE_OK, 1, 2);      /* optional whitespace */
  range_is("bytes=1-2,", 100, CZ_RANGE_OK, 1, 2);       /* empty list elements */
  range_is("bytes=,1-2", 100, CZ_RANGE_OK, 1, 2);
  range_is("bytes=007-008", 100, CZ_RANGE_OK, 7, 8);    /* leading zeros are digits */
}

static void test_range_clamped(void) {
  range_is("bytes=0-1000", 100, CZ_RANGE_OK, 0, 99);    /* last-pos past the end */
  range_is("bytes=-1000", 100, CZ_RANGE_OK, 0, 99);     /* suffix longer than the file */
  range_is("bytes=-100", 100, CZ_RANGE_OK, 0, 99);
  range_is("bytes=5-99999999999999999999999", 100, CZ_RANGE_OK, 5, 99); /* saturates */
  range_is("bytes=0-0", 1, CZ_RANGE_OK, 0, 0);
  range_is("bytes=0-", 1, CZ_RANGE_OK, 0, 0);
  uint64_t big = (uint64_t)64 << 30;                    /* 64 GiB: no 32-bit truncation */
  range_is("bytes=68719476000-", big, CZ_RANGE_OK, 68719476000ULL, big - 1);
  range_is("bytes=-5", big, CZ_RANGE_OK, big - 5, big - 1);
}

static void test_range_unsatisfiable(void) {
  range_is("bytes=100-", 100, CZ_RANGE_UNSATISFIABLE, 0, 0);
  range_is("bytes=100-200", 100, CZ_RANGE_UNSATISFIABLE, 0, 0);
  range_is("bytes=1000-", 100, CZ_RANGE_UNSATISFIABLE, 0, 0);
  range_is("bytes=-0", 100, CZ_RANGE_UNSATISFIABLE, 0, 0);
  range_is("bytes=99999999999999999999999-", 100, CZ_RANGE_UNSATISFIABLE, 0, 0);
  range_is("bytes=0-0", 0, CZ_RANGE_UNSATISFIABLE, 0, 0);  /* an empty file has no byte 0 */
  range_is("bytes=-5", 0, CZ_RANGE_UNSATISFIABLE, 0, 0);
}

static void test_range_malformed(void) {
  static const char *const bad[] = {
      "",              "bytes",          "bytes=",          "bytes=,",        "bytes=-",
      "bytes=a-b",     "bytes=1",        "bytes=1-2-3",     "bytes=5-4",      "bytes=--1",
      "bytes=+1-2",    "bytes=1 -2",     "bytes=1- 2",      "bytes=0x10-20",  "bytes=1-2;",
      "bytes 1-2",     "bytes:1-2",      "items=0-1",       "byte=0-1",       "bytesx=0-1",
      "=0-1",          "bytes=1.5-2",    "bytes=-1-2",      "bytes=1-2 x",    "bytes=\t",
      "bytes=0-1,a",   "bytes=0-1,5-4",  "bytes=\x01" "0-1", "bytes=0-1\xff",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    range_is(bad[i], 100, CZ_RANGE_IGNORED, 0, 0);
}

static void test_range_multiple(void) {
  /* several ranges: answered with the whole file */
  range_is("bytes=0-1,5-6", 100, CZ_RANGE_IGNORED, 0, 0);
  range_is("bytes=0-1, -5", 100, CZ_RANGE_IGNORED, 0, 0);
  range_is("bytes=200-300,0-1", 100, CZ_RANGE_IGNORED, 0, 0);
  /* the Apache Killer shape: many overlapping ranges */
  char h[8192] = "bytes=0-";
  size_t n = strlen(h);
  for (int i = 1; i < 1000 && n + 16 < sizeof h; i++) n += (size_t)snprintf(h + n, sizeof h - n, ",5-%d", i + 5);
  range_is(h, 100, CZ_RANGE_IGNORED, 0, 0);
}

static void test_etag_list(void) {
  const char *e = "\"abc\"";
  CHECK(cz_etag_list_match("\"abc\"", e));
  CHECK(cz_etag_list_match("*", e));
  CHECK(cz_etag_list_match(" * ", e));
  CHECK(cz_etag_list_match("W/\"abc\"", e));          /* weak comparison */
  CHECK(cz_etag_list_match("\"x\", \"abc\"", e));
  CHECK(cz_etag_list_match("\"x\",W/\"abc\" ,", e));
  CHECK(!cz_etag_list_match("\"abcd\"", e));
  CHECK(!cz_etag_list_match("abc", e));               /* unquoted */
  CHECK(!cz_etag_list_match("\"abc", e));
  CHECK(!cz_etag_list_match("\"x\" \"abc\"", e));     /* missing comma */
  CHECK(!cz_etag_list_match("w/\"abc\"", e));         /* W is case-sensitive */
  CHECK(!cz_etag_list_match("", e));
  CHECK(!cz_etag_list_match("**", e));
  CHECK(!cz_etag_list_match(NULL, e));
}

static void test_if_range(void) {
  const char *e = "\"abc\"";
  CHECK(cz_if_range_match("\"abc\"", e));
  CHECK(cz_if_range_match(" \"abc\" ", e));
  CHECK(!cz_if_range_match("W/\"abc\"", e));          /* If-Range needs a strong match */
  CHECK(!cz_if_range_match("\"abd\"", e));
  CHECK(!cz_if_range_match("Wed, 21 Oct 2015 07:28:00 GMT", e));
  CHECK(!cz_if_range_match("\"abc\", \"abc\"", e));
  CHECK(!cz_if_range_match("*", e));
  CHECK(!cz_if_range_match(NULL, e));
}

static void test_duration(void) {
  int64_t ms = -1;
  CHECK(cz_parse_duration_ms("30s", 60000, &ms) && ms == 30000);
  CHECK(cz_parse_duration_ms("30", 60000, &ms) && ms == 30000);
  CHECK(cz_parse_duration_ms("500ms", 60000, &ms) && ms == 500);
  CHECK(cz_parse_duration_ms("1m", 60000, &ms) && ms == 60000);
  CHECK(cz_parse_duration_ms("0", 60000, &ms) && ms == 0);
  CHECK(cz_parse_duration_ms("90s", 60000, &ms) && ms == 60000);       /* clamped */
  CHECK(cz_parse_duration_ms("99999999999999999999m", 60000, &ms) && ms == 60000);
  static const char *const bad[] = {"", "s", "-1s", "+1s", "1.5s", "1h", "1 s", "1S", "1sec",
                                    " 1", "ms", "1ms1", "0x10", NULL};
  for (int i = 0; bad[i]; i++) {
    if (cz_parse_duration_ms(bad[i], 60000, &ms)) {
      cz_test_failures++;
      printf("# duration '%s' accepted\n", bad[i]);
    }
  }
  CHECK(!cz_parse_duration_ms(NULL, 60000, &ms));
}

static void test_request_id(void) {
  CHECK(cz_request_id_ok("abc-123", 64));
  CHECK(cz_request_id_ok("6f1c2a8e-7d5b-4c1f-9e2a-3b4c5d6e7f80", 64));
  CHECK(cz_request_id_ok("a.b_c:d", 64));
  CHECK(!cz_request_id_ok("", 64));
  CHECK(!cz_request_id_ok("a b", 64));
  CHECK(!cz_request_id_ok("a\"b", 64));
  CHECK(!cz_request_id_ok("a\nb", 64));
  CHECK(!cz_request_id_ok("a=b", 64));
  CHECK(!cz_request_id_ok("\xc3\xa9", 64));
  char longid[80];
  memset(longid, 'a', sizeof longid - 1);
  longid[79] = 0;
  CHECK(!cz_request_id_ok(longid, 64));
  longid[64] = 0;
  CHECK(cz_request_id_ok(longid, 64));
}

static void test_idempotency_key(void) {
  char out[256];
  CHECK(cz_idempotency_key_parse("8e03978e-40d5-43e8-bc93-6894a57f9324", 255, out) &&
        strcmp(out, "8e03978e-40d5-43e8-bc93-6894a57f9324") == 0);
  CHECK(cz_idempotency_key_parse("\"quoted\"", 255, out) && strcmp(out, "quoted") == 0);
  CHECK(cz_idempotency_key_parse("a", 255, out) && strcmp(out, "a") == 0);
  CHECK(!cz_idempotency_key_parse("", 255, out));
  CHECK(!cz_idempotency_key_parse("\"\"", 255, out));
  CHECK(!cz_idempotency_key_parse("a b", 255, out));
  CHECK(!cz_idempotency_key_parse("a\"b", 255, out));
  CHECK(!cz_idempotency_key_parse("a\\b", 255, out));
  CHECK(!cz_idempotency_key_parse("\xc3\xa9", 255, out));
  char k[300];
  memset(k, 'k', sizeof k - 1);
  k[299] = 0;
  CHECK(!cz_idempotency_key_parse(k, 255, out));
  k[255] = 0;
  CHECK(cz_idempotency_key_parse(k, 255, out) && strlen(out) == 255);
}

static void test_filename(void) {
  char out[64];
  cz_filename_sanitize("tiny-llama", "x", out, sizeof out);
  CHECK_EQ_STR(out, "tiny-llama");
  cz_filename_sanitize("my model (v2)/final", "x", out, sizeof out);
  CHECK_EQ_STR(out, "my_model_v2_final");
  cz_filename_sanitize("../../etc/passwd", "x", out, sizeof out);
  CHECK_EQ_STR(out, "etc_passwd");
  cz_filename_sanitize("\"quoted\";\r\nX: y", "x", out, sizeof out);
  CHECK_EQ_STR(out, "quoted_X_y");
  cz_filename_sanitize("caf\xc3\xa9", "x", out, sizeof out);
  CHECK_EQ_STR(out, "caf");
  cz_filename_sanitize("-rf", "x", out, sizeof out);
  CHECK_EQ_STR(out, "rf");
  cz_filename_sanitize("name.", "x", out, sizeof out);
  CHECK_EQ_STR(out, "name");
  cz_filename_sanitize("///", "model", out, sizeof out);
  CHECK_EQ_STR(out, "model");
  cz_filename_sanitize(NULL, "model", out, sizeof out);
  CHECK_EQ_STR(out, "model");
  char small[6];
  cz_filename_sanitize("abcdefghij", "x", small, sizeof small);
  CHECK_EQ_STR(small, "abcde");
}

int main(void) {
  static const cz_test_case cases[] = {
      CZ_TEST(test_range_valid),         CZ_TEST(test_range_clamped),
      CZ_TEST(test_range_unsatisfiable), CZ_TEST(test_range_malformed),
      CZ_TEST(test_range_multiple),      CZ_TEST(test_etag_list),
      CZ_TEST(test_if_range),            CZ_TEST(test_duration),
      CZ_TEST(test_request_id),          CZ_TEST(test_idempotency_key),
      CZ_TEST(test_filename),
  };
  return cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
}
