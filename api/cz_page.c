/* cz_page: page_size / page_token parsing and opaque, MAC-protected page tokens. */
#include "cz_page.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cz_base64.h"
#include "cz_sha256.h"

#define TOKEN_VERSION 1
#define MAC_LEN 16              /* 128 bits of HMAC-SHA256: forging one means guessing it */
#define DIGEST_LEN 8            /* filter digest: tells "other filters" from "forged" */
#define RAW_LEN (1 + 1 + 8 + DIGEST_LEN + MAC_LEN)
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
  cz_hmac_sha256(k->key, sizeof k->key, raw, RAW_LEN - MAC_LEN, m);
  memcpy(out, m, MAC_LEN);
}

void cz_page_token(const cz_page_key *k, cz_page_list list, const char *const *filters,
                   int n_filters, int64_t next, char out[CZ_PAGE_TOKEN_LEN + 1]) {
  uint8_t raw[RAW_LEN];
  raw[0] = TOKEN_VERSION;
  raw[1] = (uint8_t)list;
  for (int i = 0; i < 8; i++) raw[2 + i] = (uint8_t)((uint64_t)next >> (56 - 8 * i));
  filter_digest(filters, n_filters, raw + 10);
  mac(k, raw, raw + 10 + DIGEST_LEN);
  char buf[CZ_BASE64_ENCODED_LEN(RAW_LEN)];
  cz_base64_encode(raw, sizeof raw, true, buf);
  memcpy(out, buf, CZ_PAGE_TOKEN_LEN + 1);
}

/* true = fine; false = the 400 has been queued. */
static bool parse_token(cz_req *r, const cz_page_key *k, cz_page_list list,
                        const char *const *filters, int n_filters, const char *pt,
                        int64_t *before) {
  uint8_t raw[RAW_LEN + 3], want[MAC_LEN], digest[DIGEST_LEN];
  size_t n = 0, len = strlen(pt);
  if (len > CZ_PAGE_TOKEN_MAX_CHARS || !cz_base64_decode(pt, len, true, raw, sizeof raw, &n) ||
      n != RAW_LEN || raw[0] != TOKEN_VERSION) {
    cz_reply_error(r, CZ_E_INVALID_PAGE_TOKEN, "page_token is not one this server issued");
    return false;
  }
  mac(k, raw, want);
  if (!cz_mac_equal(want, raw + 10 + DIGEST_LEN, MAC_LEN) || raw[1] != (uint8_t)list) {
    cz_reply_error(r, CZ_E_INVALID_PAGE_TOKEN,
                   "page_token is not one this server issued for this list (tokens do not "
                   "survive a restart of the daemon: start again from the first page)");
    return false;
  }
  filter_digest(filters, n_filters, digest);
  if (memcmp(digest, raw + 10, DIGEST_LEN) != 0) {
    cz_reply_error(r, CZ_E_INVALID_PAGE_TOKEN,
                   "page_token was issued for other filters: repeat the first page's filters");
    return false;
  }
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | raw[2 + i];
  if (v == 0 || v > INT64_MAX) {  /* only a bug of ours could MAC such a cursor */
    cz_reply_error(r, CZ_E_INVALID_PAGE_TOKEN, "page_token is not one this server issued");
    return false;
  }
  *before = (int64_t)v;
  return true;
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
  if (pt && *pt) return parse_token(r, k, list, filters, n_filters, pt, before);
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
