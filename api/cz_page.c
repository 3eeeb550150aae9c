/* cz_page: page_size / page_token parsing and opaque, MAC-protected page tokens. */
#include "cz_page.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cz_base64.h"
#include "cz_sha256.h"

/* version 1 (no issue time) was only ever issued by processes before 2026-11-27; tokens do not
 * outlive their process, so no version 1 token can be presented to this code */
#define TOKEN_VERSION 2
#define MAC_LEN 16              /* 128 bits of HMAC-SHA256: forging one means guessing it */
#define DIGEST_LEN 8            /* filter digest: tells "other filters" from "forged" */
/* offsets in the raw token */
#define OFF_LIST 1
#define OFF_CURSOR 2
#define OFF_ISSUED 10
#define OFF_DIGEST 14
#define OFF_MAC (OFF_DIGEST + DIGEST_LEN)
#define RAW_LEN (OFF_MAC + MAC_LEN)
_Static_assert((RAW_LEN * 8 + 5) / 6 == CZ_PAGE_TOKEN_LEN, "unpadded base64url length");

bool cz_page_key_init(cz_page_key *k) {
  return getrandom(k->key, sizeof k->key, 0) == (ssize_t)sizeof k->key;
}

/* SHA-256 of the filters, each as a presence byte and its value with a NUL, so that
 * "absent", "" and a value that runs into the next one all differ. */
static void filter_digest(const char *const *filters, int n, uint8_t out[DIGEST_LEN]) {
  cz_sha256 c;
  uint8_t d[32];
  cz_sha256_init(&c);
  for (int i = 0; i < n; i++) {
    uint8_t present = filters[i] != NULL;
    cz_sha256_update(&c, &present, 1);
    if (present) cz_sha256_update(&c, filters[i], strlen(filters[i]) + 1);
  }
  cz_sha256_final(&c, d);
  memcpy(out, d, DIGEST_LEN);
}

static void mac(const cz_page_key *k, const uint8_t *raw, uint8_t out[MAC_LEN]) {
  uint8_t m[32];
  cz_hmac_sha256(k->key, sizeof k->key, raw, OFF_MAC, m);
  memcpy(out, m, MAC_LEN);
}

static void put_be(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

void cz_page_token_at(const cz_page_key *k, cz_page_list list, const char *const *filters,
                      int n_filters, int64_t next, int64_t now_s,
                      char out[CZ_PAGE_TOKEN_LEN + 1]) {
  uint8_t raw[RAW_LEN];
  raw[0] = TOKEN_VERSION;
  raw[OFF_LIST] = (uint8_t)list;
  put_be(raw + OFF_CURSOR, (uint64_t)next, 8);
  put_be(raw + OFF_ISSUED, (uint64_t)now_s & 0xffffffffu, 4);
  filter_digest(filters, n_filters, raw + OFF_DIGEST);
  mac(k, raw, raw + OFF_MAC);
  char buf[CZ_BASE64_ENCODED_LEN(RAW_LEN)];
  cz_base64_encode(raw, sizeof raw, true, buf);
  memcpy(out, buf, CZ_PAGE_TOKEN_LEN + 1);
}

void cz_page_token(const cz_page_key *k, cz_page_list list, const char *const *filters,
                   int n_filters, int64_t next, char out[CZ_PAGE_TOKEN_LEN + 1]) {
  cz_page_token_at(k, list, filters, n_filters, next, (int64_t)time(NULL), out);
}

cz_err_code cz_page_token_check(const cz_page_key *k, cz_page_list list,
                                const char *const *filters, int n_filters, const char *token,
                                int64_t now_s, int64_t *before, cz_error *err) {
  uint8_t raw[RAW_LEN + 3], want[MAC_LEN], digest[DIGEST_LEN];
  size_t n = 0, len = strlen(token);
  if (len > CZ_PAGE_TOKEN_MAX_CHARS || !cz_base64_decode(token, len, true, raw, sizeof raw, &n) ||
      n != RAW_LEN || raw[0] != TOKEN_VERSION)
    return cz_err_set(err, CZ_E_INVALID_PAGE_TOKEN, "page_token is not one this server issued");
  mac(k, raw, want);
  if (!cz_mac_equal(want, raw + OFF_MAC, MAC_LEN) || raw[OFF_LIST] != (uint8_t)list)
    return cz_err_set(err, CZ_E_INVALID_PAGE_TOKEN,
                      "page_token is not one this server issued for this list (tokens do not "
                      "survive a restart of the daemon: start again from the first page)");
  filter_digest(filters, n_filters, digest);
  if (memcmp(digest, raw + OFF_DIGEST, DIGEST_LEN) != 0)
    return cz_err_set(err, CZ_E_INVALID_PAGE_TOKEN,
                      "page_token was issued for other filters: repeat the first page's filters");
  /* the issue time is 32 bits of Unix seconds: compare modulo 2^32 (good until 2106 and past) */
  uint32_t age = (uint32_t)((uint64_t)now_s - get_be(raw + OFF_ISSUED, 4));
  if (age > CZ_PAGE_TOKEN_TTL_S && age < UINT32_MAX - 300)  /* 5 min of clock step back is fine */
    return cz_err_set(err, CZ_E_INVALID_PAGE_TOKEN,
                      "page_token has expired (they last %d hours): start again from the first "
                      "page", CZ_PAGE_TOKEN_TTL_S / 3600);
  uint64_t v = get_be(raw + OFF_CURSOR, 8);
  if (v == 0 || v > INT64_MAX)  /* only a bug of ours could MAC such a cursor */
    return cz_err_set(err, CZ_E_INVALID_PAGE_TOKEN, "page_token is not one this server issued");
  *before = (int64_t)v;
  return CZ_E_OK;
}

bool cz_page_parse(cz_req *r, const cz_page_key *k, cz_page_list list,
                   const char *const *filters, int n_filters, int *size, int64_t *before) {
  const char *ps = cz_req_arg(r, "page_size"), *pt = cz_req_arg(r, "page_token");
  *size = CZ_PAGE_DEFAULT_SIZE;
  *before = 0;
  if (ps) {
    char *end;
    errno = 0;
    long v = strtol(ps, &end, 10);
    if (errno || *end || end == ps || v < 1 || v > CZ_PAGE_MAX_SIZE) {
      cz_reply_error(r, CZ_E_INVALID_ARGUMENT, "page_size must be an integer from 1 to %d",
                     CZ_PAGE_MAX_SIZE);
      return false;
    }
    *size = (int)v;
  }
  if (pt && *pt) {
    cz_error e = {0};
    if (cz_page_token_check(k, list, filters, n_filters, pt, (int64_t)time(NULL), before, &e)) {
      cz_reply_err(r, &e);
      return false;
    }
  }
  return true;
}

json_t *cz_page_json(const cz_page_key *k, cz_page_list list, const char *const *filters,
                     int n_filters, const char *key, json_t *items, int64_t next) {
  json_t *o = json_object();
  json_object_set_new(o, key, items);
  if (next > 0) {
    char tok[CZ_PAGE_TOKEN_LEN + 1];
    cz_page_token(k, list, filters, n_filters, next, tok);
    json_object_set_new(o, "next_page_token", json_string(tok));
  } else {
    json_object_set_new(o, "next_page_token", json_null());
  }
  return o;
}
