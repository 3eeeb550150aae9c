/* test_webhook: cz_webhook's pure parts: the signature against the Standard Webhooks
 * reference test vector, the secret and URL checks done at submit time, the backoff. (The
 * delivery itself is tested end to end by tests/e2e/test_webhooks.sh.) */
#include <stdint.h>

#include "cz_test.h"
#include "cz_webhook.h"

/* The vector of the Standard Webhooks reference libraries' tests (and svix's). */
static void test_signature_vector(void) {
  uint8_t key[CZ_WEBHOOK_MAX_KEY];
  size_t n = 0;
  cz_error e = {0};
  CHECK(cz_webhook_secret_decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key, &n, &e));
  CHECK_EQ_INT(n, 24);
  static const char body[] = "{\"test\": 2432232314}";
  char sig[CZ_WEBHOOK_SIG_LEN];
  cz_webhook_sign(key, n, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body, sizeof body - 1,
                  sig);
  CHECK_EQ_STR(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  /* one byte more in the body, another timestamp: another signature */
  cz_webhook_sign(key, n, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265331", body, sizeof body - 1,
                  sig);
  CHECK(strcmp(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") != 0);
}

static void test_secrets(void) {
  uint8_t key[CZ_WEBHOOK_MAX_KEY];
  size_t n;
  cz_error e = {0};
  /* 24 and 64 bytes: the limits; 23 and 65: refused */
  CHECK(cz_webhook_secret_decode("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", key, &n, &e) && n == 24);
  CHECK(cz_webhook_secret_decode("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
                                 key, &n, &e) && n == 64);
  static const char *const bad[] = {
      "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",            /* 23 bytes */
      "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", /* 65 */
      "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",                  /* no prefix */
      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",             /* not base64 (length) */
      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La*aSw",            /* not base64 (alphabet) */
      "whsec_",
      ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    e.code = CZ_E_OK;
    CHECK(!cz_webhook_secret_decode(bad[i], key, &n, &e));
    CHECK_EQ_INT(e.code, CZ_E_INVALID_ARGUMENT);
  }
}

static void test_urls(void) {
  cz_error e = {0};
  static const char *const good[] = {"http://127.0.0.1:8080/hook", "https://ci.example.com/h?a=1",
                                     "http://[::1]:9/x", "https://h"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) CHECK(cz_webhook_url_valid(good[i], &e));
  char long_url[CZ_WEBHOOK_MAX_URL + 2];
  memcpy(long_url, "http://h/", 9);
  memset(long_url + 9, 'a', sizeof long_url - 10);
  long_url[sizeof long_url - 1] = '\0';   /* one byte over the limit */
  static const char *const bad[] = {"ftp://h/", "file:///etc/passwd", "http:///x", "http://",
                                    "https://:80/", "http://h/a b", "http://h/\x7f", "HTTP://h/",
                                    "gopher://h", "http://h/\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK(!cz_webhook_url_valid(bad[i], &e));
    if (cz_webhook_url_valid(bad[i], &e)) printf("# accepted: %s\n", bad[i]);
  }
  CHECK(!cz_webhook_url_valid(long_url, &e));
  long_url[sizeof long_url - 2] = '\0';   /* exactly the limit */
  CHECK(cz_webhook_url_valid(long_url, &e));
}

static void test_backoff(void) {
  CHECK_EQ_INT(cz_webhook_delay_ms(5000, 1), 5000);
  CHECK_EQ_INT(cz_webhook_delay_ms(5000, 2), 10000);
  CHECK_EQ_INT(cz_webhook_delay_ms(5000, 8), 640000);
  CHECK_EQ_INT(cz_webhook_delay_ms(5000, 11), CZ_WEBHOOK_MAX_DELAY_MS);  /* 5.12e6 capped */
  CHECK_EQ_INT(cz_webhook_delay_ms(1, 1000), CZ_WEBHOOK_MAX_DELAY_MS);   /* no overflow */
  CHECK_EQ_INT(cz_webhook_delay_ms(CZ_WEBHOOK_MAX_DELAY_MS, 1), CZ_WEBHOOK_MAX_DELAY_MS);
}

int main(void) {
  static const cz_test_case cases[] = {CZ_TEST(test_signature_vector), CZ_TEST(test_secrets),
                                       CZ_TEST(test_urls), CZ_TEST(test_backoff)};
  return cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
}
