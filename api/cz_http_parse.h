/* cz_http_parse: pure parsers for request headers and parameters the HTTP layer interprets
 * itself (libmicrohttpd leaves them to the application): Range, entity-tag lists, durations,
 * client-supplied tokens; and a file-name sanitizer for Content-Disposition.
 *
 * Every function here is pure (no allocation, no global state) and may run on any thread.
 * Unit test: tests/api/test_range.c.
 */
#ifndef CZ_HTTP_PARSE_H
#define CZ_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Range (RFC 9110 section 14) ---- */

typedef enum {
  CZ_RANGE_NONE,          /* no header: send the whole representation (200) */
  CZ_RANGE_OK,            /* one satisfiable range in [*first, *last]: 206 */
  CZ_RANGE_UNSATISFIABLE, /* one range, none of it inside the representation: 416 */
  CZ_RANGE_IGNORED,       /* malformed, another unit, or several ranges: 200 with everything */
} cz_range_result;

/* Interpret a Range header value (NULL: none) against a representation of size bytes.
 * One range is served: "bytes=a-b" (b clamped to size-1), "bytes=a-" and the suffix
 * "bytes=-n" (the last n bytes; all of them when n >= size). A unit name is matched without
 * regard to case; optional whitespace around list elements and empty list elements are
 * allowed. A header asking for more than one range is answered with the whole body (RFC 9110
 * allows it), which also rules out the many-overlapping-ranges attack (CVE-2011-3192). Numbers
 * too large for 64 bits saturate. An empty representation cannot satisfy any range. */
cz_range_result cz_range_parse(const char *header, uint64_t size, uint64_t *first,
                               uint64_t *last);

/* ---- entity tags (RFC 9110 section 8.8.3) ---- */

/* Does an If-None-Match value ("*", or a comma-separated list of entity tags) match etag
 * (given quoted, e.g. "\"abc\"")? Weak comparison: W/"x" matches "x". A malformed list
 * matches nothing. */
bool cz_etag_list_match(const char *header, const char *etag);
/* Does an If-Range value select the range? Only a strong entity tag equal to etag does; a
 * weak tag or an HTTP-date (we send no Last-Modified) does not. */
bool cz_if_range_match(const char *header, const char *etag);

/* ---- durations ---- */

/* "30s", "500ms", "2m" or plain seconds "30": digits and an optional unit (ms, s, m), no
 * sign or fraction. *ms gets the value, saturated at max_ms. Returns false when malformed. */
bool cz_parse_duration_ms(const char *s, int64_t max_ms, int64_t *ms);

/* ---- client tokens ---- */

/* A request id a client may pass in X-Request-Id: 1..max bytes of [A-Za-z0-9._:-]. */
bool cz_request_id_ok(const char *s, size_t max);
/* An Idempotency-Key value: an optionally double-quoted string of 1..max visible ASCII
 * characters (0x21..0x7e) without '"' or '\'. The key (quotes removed) goes to out, which
 * must hold max + 1 bytes. */
bool cz_idempotency_key_parse(const char *s, size_t max, char *out);

/* ---- Content-Disposition ---- */

/* A file name safe in a quoted Content-Disposition filename and on any file system: bytes
 * outside [A-Za-z0-9._-] become '_', runs of '_' collapse, leading '.', '-' and '_' and
 * trailing '.' go, at most cap-1 bytes. Empty result -> fallback (itself not checked). */
void cz_filename_sanitize(const char *in, const char *fallback, char *out, size_t cap);

#endif
