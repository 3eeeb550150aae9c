/* cz_http_parse: Range, entity tags, durations, client tokens, file names (see the header). */
#include "cz_http_parse.h"

#include <string.h>
#include <strings.h>

static const char *skip_ows(const char *p) {
  while (*p == ' ' || *p == '\t') p++;
  return p;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Decimal digits at *p (at least one), saturating at UINT64_MAX; advances *p. */
static bool parse_u64_sat(const char **p, uint64_t *out) {
  const char *s = *p;
  if (!is_digit(*s)) return false;
  uint64_t v = 0;
  for (; is_digit(*s); s++) {
    unsigned d = (unsigned)(*s - '0');
    v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
  }
  *p = s;
  *out = v;
  return true;
}

/* ---- Range ---- */

typedef struct {
  bool suffix;
  uint64_t a, b;   /* int-range: first, last (b = UINT64_MAX when open); suffix: a = length */
} range_spec;

static bool parse_spec(const char **pp, range_spec *r) {
  const char *p = *pp;
  if (*p == '-') {
    p++;
    r->suffix = true;
    if (!parse_u64_sat(&p, &r->a)) return false;
  } else {
    r->suffix = false;
    if (!parse_u64_sat(&p, &r->a) || *p != '-') return false;
    p++;
    if (is_digit(*p)) {
      if (!parse_u64_sat(&p, &r->b) || r->b < r->a) return false;
    } else {
      r->b = UINT64_MAX;
    }
  }
  *pp = p;
  return true;
}

cz_range_result cz_range_parse(const char *header, uint64_t size, uint64_t *first,
                               uint64_t *last) {
  if (header == NULL) return CZ_RANGE_NONE;
  const char *p = skip_ows(header);
  const char *eq = strchr(p, '=');
  if (eq == NULL || (size_t)(eq - p) != 5 || strncasecmp(p, "bytes", 5) != 0)
    return CZ_RANGE_IGNORED;
  p = eq + 1;
  range_spec one = {0};
  int count = 0;
  for (;;) {
    p = skip_ows(p);
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p == 0) break;
    range_spec r;
    if (!parse_spec(&p, &r)) return CZ_RANGE_IGNORED;
    p = skip_ows(p);
    if (*p != ',' && *p != 0) return CZ_RANGE_IGNORED;
    if (count++ == 0) one = r;
  }
  if (count != 1) return CZ_RANGE_IGNORED;
  if (size == 0) return CZ_RANGE_UNSATISFIABLE;
  if (one.suffix) {
    if (one.a == 0) return CZ_RANGE_UNSATISFIABLE;
    *first = one.a >= size ? 0 : size - one.a;
    *last = size - 1;
    return CZ_RANGE_OK;
  }
  if (one.a >= size) return CZ_RANGE_UNSATISFIABLE;
  *first = one.a;
  *last = one.b >= size ? size - 1 : one.b;
  return CZ_RANGE_OK;
}

/* ---- entity tags ---- */

/* One entity-tag at *pp: [W/]"etagc*". Sets the opaque tag (quotes included) and weakness. */
static bool parse_etag(const char **pp, const char **tag, size_t *len, bool *weak) {
  const char *p = *pp;
  *weak = false;
  if (p[0] == 'W' && p[1] == '/') {
    *weak = true;
    p += 2;
  }
  if (*p != '"') return false;
  const char *start = p++;
  /* etagc = %x21 / %x23-7E / obs-text */
  while (*p && *p != '"') {
    unsigned char c = (unsigned char)*p;
    if (c < 0x21 || c == 0x7f) return false;
    p++;
  }
  if (*p != '"') return false;
  p++;
  *tag = start;
  *len = (size_t)(p - start);
  *pp = p;
  return true;
}

bool cz_etag_list_match(const char *header, const char *etag) {
  if (header == NULL || etag == NULL) return false;
  const char *p = skip_ows(header);
  if (p[0] == '*' && *skip_ows(p + 1) == 0) return true;
  size_t elen = strlen(etag);
  bool matched = false;
  for (;;) {
    p = skip_ows(p);
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p == 0) break;
    const char *tag;
    size_t len;
    bool weak;
    if (!parse_etag(&p, &tag, &len, &weak)) return false;
    p = skip_ows(p);
    if (*p != ',' && *p != 0) return false;
    if (len == elen && memcmp(tag, etag, len) == 0) matched = true;
  }
  return matched;
}

bool cz_if_range_match(const char *header, const char *etag) {
  if (header == NULL || etag == NULL) return false;
  const char *p = skip_ows(header);
  const char *tag;
  size_t len;
  bool weak;
  if (!parse_etag(&p, &tag, &len, &weak) || weak || *skip_ows(p) != 0) return false;
  return len == strlen(etag) && memcmp(tag, etag, len) == 0;
}

/* ---- durations ---- */

bool cz_parse_duration_ms(const char *s, int64_t max_ms, int64_t *ms) {
  if (s == NULL || max_ms < 0) return false;
  const char *p = s;
  uint64_t v;
  if (!parse_u64_sat(&p, &v)) return false;
  uint64_t mult;
  if (*p == 0 || strcmp(p, "s") == 0) mult = 1000;
  else if (strcmp(p, "ms") == 0) mult = 1;
  else if (strcmp(p, "m") == 0) mult = 60000;
  else return false;
  uint64_t max = (uint64_t)max_ms;
  *ms = v > max / mult ? max_ms : (int64_t)(v * mult > max ? max : v * mult);
  return true;
}

/* ---- client tokens ---- */

bool cz_request_id_ok(const char *s, size_t max) {
  if (s == NULL) return false;
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' ||
              c == '_' || c == ':' || c == '-';
    if (!ok || n >= max) return false;
  }
  return n > 0;
}

bool cz_idempotency_key_parse(const char *s, size_t max, char *out) {
  if (s == NULL) return false;
  size_t n = strlen(s);
  if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
    s++;
    n -= 2;
  }
  if (n == 0 || n > max) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') return false;
  }
  memcpy(out, s, n);
  out[n] = 0;
  return true;
}

/* ---- file names ---- */

void cz_filename_sanitize(const char *in, const char *fallback, char *out, size_t cap) {
  if (cap == 0) return;
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p && n + 1 < cap; p++) {
    unsigned char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_';
    char o = ok ? (char)c : '_';
    if (n == 0 && (o == '.' || o == '-' || o == '_')) continue;  /* no hidden or option-like names */
    if (o == '_' && n > 0 && out[n - 1] == '_') continue;
    out[n++] = o;
  }
  while (n > 0 && (out[n - 1] == '.' || out[n - 1] == '_')) n--;
  out[n] = 0;
  if (n == 0) {
    size_t f = strlen(fallback);
    if (f >= cap) f = cap - 1;
    memcpy(out, fallback, f);
    out[f] = 0;
  }
}
