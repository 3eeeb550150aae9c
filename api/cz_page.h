/* cz_page: list paging for the v1 API: page_size and opaque, tamper-proof page_token.
 *
 * A token is the base64url (RFC 4648 section 5, unpadded) of
 *   version (1 byte, 2) | list (1 byte) | cursor (8 bytes, big-endian) |
 *   issued (4 bytes, Unix seconds, big-endian) |
 *   filter digest (8 bytes: SHA-256 of the list's filter values) | MAC (16 bytes)
 * where the MAC is the leftmost 128 bits of HMAC-SHA256(key, everything before it). The
 * daemon keeps the key in its data directory (page-token.key), so a token stays valid across
 * restarts, for CZ_PAGE_TOKEN_TTL_S at most (AIP-158's rule of thumb of 3 days); removing
 * the file (with the daemon stopped) revokes every token.
 * A token that does not decode, is not for this list or fails the MAC is 400
 * invalid_page_token; so is a valid token sent with different filters than its first page.
 *
 * Thread: pure functions over a read-only key; any thread.
 */
#ifndef CZ_PAGE_H
#define CZ_PAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "cz_http.h"

#define CZ_PAGE_KEY_LEN 32
#define CZ_PAGE_DEFAULT_SIZE 50
#define CZ_PAGE_MAX_SIZE 1000        /* bounds one list response */
#define CZ_PAGE_TOKEN_MAX_CHARS 64   /* a longer page_token is refused before decoding */
#define CZ_PAGE_TOKEN_TTL_S (3 * 86400)

/* Which list a token belongs to: part of the token, so one list's token is refused by another.
 * Stable ids, never reused. */
typedef enum { CZ_PAGE_MODELS = 1, CZ_PAGE_JOBS = 2, CZ_PAGE_CALIBRATIONS = 3 } cz_page_list;

typedef struct {
  uint8_t key[CZ_PAGE_KEY_LEN];
} cz_page_key;

/* Fill a key from the kernel's random source; false if it has none (the daemon refuses to
 * start rather than issue forgeable tokens). */
bool cz_page_key_init(cz_page_key *k);

/* Parse page_size and page_token of the request for list `list`, whose filter values are
 * filters[0..n_filters) (NULL = not given). On success *size is the page size and *before the
 * cursor (0 = first page). On a bad value the 400 has been queued and false is returned. */
bool cz_page_parse(cz_req *r, const cz_page_key *k, cz_page_list list,
                   const char *const *filters, int n_filters, int *size, int64_t *before);

/* The token for the page after `next` (next > 0) under the same filters, into out; issued
 * now, or at now_s (Unix seconds) for the _at form. */
#define CZ_PAGE_TOKEN_LEN 51
void cz_page_token(const cz_page_key *k, cz_page_list list, const char *const *filters,
                   int n_filters, int64_t next, char out[CZ_PAGE_TOKEN_LEN + 1]);
void cz_page_token_at(const cz_page_key *k, cz_page_list list, const char *const *filters,
                      int n_filters, int64_t next, int64_t now_s,
                      char out[CZ_PAGE_TOKEN_LEN + 1]);
/* Check a presented token at now_s: CZ_E_OK with *before, or CZ_E_INVALID_PAGE_TOKEN with the
 * reason (malformed, forged or altered, another list, other filters, expired) in err. */
cz_err_code cz_page_token_check(const cz_page_key *k, cz_page_list list,
                                const char *const *filters, int n_filters, const char *token,
                                int64_t now_s, int64_t *before, cz_error *err);

/* {"<key>": items, "next_page_token": token or null}; steals items. */
json_t *cz_page_json(const cz_page_key *k, cz_page_list list, const char *const *filters,
                     int n_filters, const char *key, json_t *items, int64_t next);

#endif
