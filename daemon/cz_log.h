/* cz_log: structured event log on stderr, one line per event, as logfmt or JSON lines.
 *
 * An event is a level, a short constant message and key/value string pairs:
 *
 *   cz_log(CZ_LOG_INFO, "job claimed", "job", id, "attempt", CZ_LOG_INT(attempt), NULL);
 *
 * logfmt:  ts=2026-11-26T19:55:59.123Z level=info msg="job claimed" job=job_abc attempt=1
 * json:    {"ts":"2026-11-26T19:55:59.123Z","level":"info","msg":"job claimed",
 *           "job":"job_abc","attempt":"1"}            (on one line)
 *
 * Timestamps are UTC with milliseconds. Values are strings; a NULL value is written as an
 * empty logfmt value (`key=`) or JSON null. Values are escaped for the format: logfmt quotes
 * a value that is empty or holds a space, '=', '"', '\' or a control character, and escapes
 * '"', '\', newline, CR, tab and other control characters inside the quotes; JSON escapes as
 * RFC 8259 requires. Bytes that are not valid UTF-8 become U+FFFD, so every line is valid
 * UTF-8. Keys are meant to be constant identifiers; characters outside [A-Za-z0-9_.-] are
 * replaced by '_'.
 *
 * Size: a line is at most CZ_LOG_LINE_MAX bytes. A longer event is cut at a character
 * boundary, its open value closed, remaining fields dropped, and the field truncated=true
 * appended, so the line stays well-formed.
 *
 * Thread: every function may be called from any thread at any time. Each line is formatted
 * in a buffer on the caller's stack and handed to the kernel with one write(2) on fd 2, so
 * lines of concurrent threads never interleave inside the process (and, on a pipe, not with
 * other processes either as long as a line fits in PIPE_BUF). No locks, no allocation.
 * cz_log_init may be called again later (e.g. by tests); concurrent loggers then see either
 * the old or the new setting.
 *
 * Errors: logging never fails from the caller's point of view; a failed write(2) is dropped
 * because there is nowhere left to report it.
 */
#ifndef CZ_LOG_H
#define CZ_LOG_H

#include <stdarg.h>
#include <stdint.h>

#include "cz_err.h"

/* Longest line written, newline included. Bounded so that a line is formatted on the stack
 * without allocation; 8 KiB holds any sane event with room for a long path or error text. */
#define CZ_LOG_LINE_MAX 8192

typedef enum { CZ_LOG_DEBUG = 0, CZ_LOG_INFO = 1, CZ_LOG_WARN = 2, CZ_LOG_ERROR = 3 } cz_log_level;
typedef enum { CZ_LOG_LOGFMT = 0, CZ_LOG_JSON = 1 } cz_log_format;

/* Select the output format ("logfmt" | "json") and the lowest level written ("debug" |
 * "info" | "warn" | "error"). NULL keeps the current setting. Before any call the logger
 * writes logfmt at info. Returns CZ_E_INVALID_ARGUMENT and changes nothing if a name is
 * unknown. */
cz_err_code cz_log_init(const char *format, const char *level);

/* Name lookups shared with the configuration parser; return 0, or -1 if the name is unknown
 * (*out untouched). */
int cz_log_level_from_name(const char *name, cz_log_level *out);
int cz_log_format_from_name(const char *name, cz_log_format *out);
/* "debug" | "info" | "warn" | "error". */
const char *cz_log_level_name(cz_log_level lvl);

/* 1 if events at lvl are written under the current setting; lets a caller skip building
 * expensive values for a debug event. */
int cz_log_enabled(cz_log_level lvl);

/* Write one event: msg, then key, value, key, value, ... terminated by a NULL key. Every key
 * must be followed by a value (which may be NULL). */
void cz_log(cz_log_level lvl, const char *msg, ...) __attribute__((sentinel));
void cz_logv(cz_log_level lvl, const char *msg, va_list kv);

/* Write one event without fields whose message is printf-formatted, for one-off events
 * (prefer constant messages with fields: they can be searched and counted). */
void cz_logf(cz_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The request this thread is handling: while set (not NULL), every event the thread logs
 * carries request_id=ID right after msg. Thread-local; the HTTP layer sets it around each
 * call into a handler and clears it after. The string must outlive the setting. */
void cz_log_set_request_id(const char *id);

/* Decimal text of an integer for use as a value, in a buffer that lives until the end of the
 * enclosing block (a compound literal), e.g. cz_log(..., "bytes", CZ_LOG_UINT(n), NULL). */
#define CZ_LOG_NUM_MAX 24 /* "-9223372036854775808" and its NUL fit */
#define CZ_LOG_INT(v) cz_log_i64((char[CZ_LOG_NUM_MAX]){0}, (long long)(v))
#define CZ_LOG_UINT(v) cz_log_u64((char[CZ_LOG_NUM_MAX]){0}, (unsigned long long)(v))
const char *cz_log_i64(char buf[CZ_LOG_NUM_MAX], long long v);
const char *cz_log_u64(char buf[CZ_LOG_NUM_MAX], unsigned long long v);

/* Unix milliseconds as RFC 3339 UTC with milliseconds ("2026-01-02T03:04:05.678Z"), the
 * format of the log's ts= and of every time in the API. */
#define CZ_TIME_ISO_LEN 64 /* 24 used; room for any int year, as gcc's -Wformat-truncation asks */
void cz_time_iso(int64_t unix_ms, char out[CZ_TIME_ISO_LEN]);

#endif
