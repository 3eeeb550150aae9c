/* cz_err: the one table of error codes compressd reports, with their HTTP status.
 *
 * Every failure that can reach a user (API response, CLI message, job error) carries a
 * cz_err code plus a human message. Codes are stable: the numeric id and the string name are
 * part of the wire contract and are never renumbered or reused; a retired code stays in the
 * table as a comment. Add a code by adding one X() row.
 */
#ifndef CZ_ERR_H
#define CZ_ERR_H

#include <stddef.h>

/*      enum suffix            id  name                    http  */
#define CZ_ERR_MAP(X)                                                   \
  X(OK,                         0, "ok",                    200)         \
  X(INTERNAL,                   1, "internal",              500)         \
  X(NO_MEMORY,                  2, "out_of_memory",         503)         \
  X(IO,                         3, "io_error",              500)         \
  X(NO_SPACE,                   4, "no_space",              507)         \
  X(INVALID_ARGUMENT,           5, "invalid_argument",      400)         \
  X(NOT_FOUND,                  6, "not_found",             404)         \
  X(CONFLICT,                   7, "conflict",              409)         \
  X(TOO_LARGE,                  8, "payload_too_large",     413)         \
  X(CANCELED,                   9, "canceled",              409)         \
  X(UNSUPPORTED,               10, "unsupported",           422)         \
  X(METHOD_NOT_ALLOWED,        11, "method_not_allowed",    405)         \
  X(UNSUPPORTED_MEDIA_TYPE,    12, "unsupported_media_type",415)         \
  X(UNAVAILABLE,               13, "unavailable",           503)         \
  X(RANGE_NOT_SATISFIABLE,     14, "range_not_satisfiable", 416)         \
  X(IDEMPOTENCY_IN_FLIGHT,     15, "idempotency_key_in_flight", 409)     \
  X(IDEMPOTENCY_MISMATCH,      16, "idempotency_key_mismatch", 422)      \
  X(QUEUE_FULL,                17, "queue_full",            503)         \
  X(UNAUTHENTICATED,           18, "unauthenticated",       401)         \
  X(PERMISSION_DENIED,         19, "permission_denied",     403)         \
  X(INVALID_PAGE_TOKEN,        20, "invalid_page_token",    400)         \
  /* file format errors: 100..199 */                                    \
  X(UNKNOWN_FORMAT,           100, "unknown_format",        422)         \
  X(HEADER_TOO_SMALL,         101, "header_too_small",      422)         \
  X(HEADER_TOO_LARGE,         102, "header_too_large",      413)         \
  X(INVALID_HEADER_LENGTH,    103, "invalid_header_length", 422)         \
  X(INVALID_HEADER,           104, "invalid_header",        422)         \
  X(INVALID_UTF8,             105, "invalid_utf8",          422)         \
  X(DUPLICATE_KEY,            106, "duplicate_key",         422)         \
  X(UNKNOWN_DTYPE,            107, "unknown_dtype",         422)         \
  X(INVALID_OFFSETS,          108, "invalid_offsets",       422)         \
  X(SIZE_OVERFLOW,            109, "size_overflow",         422)         \
  X(SIZE_MISMATCH,            110, "size_mismatch",         422)         \
  X(TRAILING_DATA,            111, "trailing_data",         422)         \
  X(TRUNCATED,                112, "truncated",             422)         \
  X(INVALID_METADATA,         113, "invalid_metadata",      422)         \
  X(BAD_MAGIC,                114, "bad_magic",             422)         \
  X(UNSUPPORTED_VERSION,      115, "unsupported_version",   422)         \
  X(INVALID_KV,               116, "invalid_kv",            422)         \
  X(INVALID_TENSOR_INFO,      117, "invalid_tensor_info",   422)         \
  X(INVALID_ALIGNMENT,        118, "invalid_alignment",     422)         \
  X(TOO_MANY_TENSORS,         119, "too_many_tensors",      422)         \
  X(MISALIGNED_SLICE,         120, "misaligned_slice",      422)         \
  X(DUPLICATE_TENSOR,         121, "duplicate_tensor",      422)         \
  /* recipe / job errors: 200..299 */                                   \
  X(INVALID_RECIPE,           200, "invalid_recipe",        400)         \
  X(UNKNOWN_METHOD,           201, "unknown_method",        400)         \
  X(INVALID_PARAMETER,        202, "invalid_parameter",     400)         \
  X(UNSUPPORTED_INPUT,        203, "unsupported_input",     422)         \
  X(NON_FINITE,               204, "non_finite_values",     422)         \
  /* 205 "abandoned": what a job out of attempts after crashes was failed with before 206; \
   * kept so that rows written by older versions still name a known code */             \
  X(ABANDONED,                205, "abandoned",             500)         \
  /* the process died while running the job (kill -9, a crash, OOM) max_attempts times */ \
  X(WORKER_CRASH,             206, "worker_crash",          500)

typedef enum {
#define CZ_ERR_ENUM(sfx, id, name, http) CZ_E_##sfx = id,
  CZ_ERR_MAP(CZ_ERR_ENUM)
#undef CZ_ERR_ENUM
} cz_err_code;

/* An error as it travels up the stack: a code and a message for a person. The message names
 * the field or tensor at fault when there is one. Fixed size so that it can live on the stack
 * and be filled from any thread without allocation. */
typedef struct {
  cz_err_code code;
  char msg[256];
} cz_error;

/* Stable snake_case name of a code ("invalid_offsets"); "internal" for an unknown code. */
const char *cz_err_name(cz_err_code code);

/* HTTP status that an API response with this code carries. */
int cz_err_http_status(cz_err_code code);

/* Fill err (may be NULL) with code and a printf-style message; returns code, so that a
 * failing function can end with `return cz_err_set(err, CZ_E_..., "...", ...);`. */
cz_err_code cz_err_set(cz_error *err, cz_err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
