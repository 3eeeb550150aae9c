/* cz_api_auth: API tokens, `Authorization: Bearer TOKEN`.
 *
 * When tokens are required (cz_api.auth_required: --auth on, or auto while listening on a
 * non-loopback address) every route needs one except /livez, /readyz and the dashboard's
 * static files (GET / and GET /ui/NAME). A token is "czt_" + 16 hex digits (its id
 * "tok_..." in the store) + "_" + 32 hex digits of secret; the store keeps only its sha256,
 * compared in constant time. Missing, malformed, unknown, wrong or revoked -> 401
 * unauthenticated with WWW-Authenticate: Bearer; a read-only token (scope read) on anything
 * but GET/HEAD -> 403 permission_denied. The token's id becomes the request's principal
 * (Idempotency-Key scopes are per principal).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cz_api_service.h"
#include "cz_sha256.h"

static bool public_route(const char *pattern) {
  static const char *const open[] = {"/livez", "/readyz", "/", "/ui/{id}", NULL};
  for (int i = 0; open[i]; i++)
    if (strcmp(pattern, open[i]) == 0) return true;
  return false;
}

static void www_authenticate(cz_req *r, unsigned status, struct MHD_Response *resp) {
  MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"compressd\"");
}

static bool refuse(cz_req *r, const char *msg) {
  r->on_reply = www_authenticate;
  cz_reply_error(r, CZ_E_UNAUTHENTICATED, "%s", msg);
  return false;
}

static bool all_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

bool cz_token_parse(const char *token, char id[CZ_TOKEN_ID_LEN + 1]) {
  /* czt_ + 16 hex + _ + 32 hex */
  if (strlen(token) != 4 + 16 + 1 + 32 || strncmp(token, "czt_", 4) != 0 || token[20] != '_' ||
      !all_hex(token + 4, 16) || !all_hex(token + 21, 32))
    return false;
  snprintf(id, CZ_TOKEN_ID_LEN + 1, "tok_%.16s", token + 4);
  return true;
}

void cz_token_hash(const char *token, char hex[65]) {
  cz_sha256 c;
  uint8_t d[32];
  cz_sha256_init(&c);
  cz_sha256_update(&c, token, strlen(token));
  cz_sha256_final(&c, d);
  cz_sha256_hex(d, hex);
}

/* Equal 64-byte strings, in time that does not depend on where they differ. */
static bool same_hash(const char *a, const char *b) {
  if (strlen(a) != 64 || strlen(b) != 64) return false;
  volatile unsigned char diff = 0;
  for (size_t i = 0; i < 64; i++) diff |= (unsigned char)(a[i] ^ b[i]);
  return diff == 0;
}

bool cz_api_authorize(cz_req *r) {
  cz_api *api = r->app;
  if (!api->auth_required || public_route(r->route->pattern)) return true;
  const char *h = cz_req_header(r, "Authorization");
  if (!h)
    return refuse(r, "this server requires an API token: send Authorization: Bearer TOKEN "
                     "(an operator creates one with `compressd token create`)");
  if (strncasecmp(h, "Bearer ", 7) != 0)
    return refuse(r, "Authorization must be \"Bearer TOKEN\"");
  const char *token = h + 7;
  while (*token == ' ') token++;
  char id[CZ_TOKEN_ID_LEN + 1], hash[65];
  if (!cz_token_parse(token, id)) return refuse(r, "the API token is malformed");
  json_t *row;
  cz_error e = {0};
  cz_err_code rc = cz_store_token_get(api->store, id, &row, &e);
  if (rc == CZ_E_NOT_FOUND) return refuse(r, "the API token is not valid (unknown or revoked)");
  if (rc) {
    cz_reply_err(r, &e);
    return false;
  }
  cz_token_hash(token, hash);
  bool ok = same_hash(hash, json_string_value(json_object_get(row, "hash")) ?: "") &&
            json_is_null(json_object_get(row, "revoked_at"));
  bool read_only = strcmp(json_string_value(json_object_get(row, "scope")) ?: "", "read") == 0;
  json_decref(row);
  if (!ok) return refuse(r, "the API token is not valid (unknown or revoked)");
  if (read_only && strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
    cz_reply_error(r, CZ_E_PERMISSION_DENIED, "this token may only read (GET and HEAD)");
    return false;
  }
  snprintf(r->principal, sizeof r->principal, "%s", id);
  return true;
}
