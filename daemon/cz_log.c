/* cz_log: formats events as logfmt or JSON lines into a stack buffer, one write(2) each. */
#include "cz_log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Room kept at the end of the line buffer for what closes a line whatever happened before:
 * a closing quote, the truncation marker, JSON's '}' and the newline (20 bytes today). */
#define LINE_RESERVE 32
/* Keys are identifiers; a longer one is cut (it is a programming error, not data). */
#define KEY_MAX 64
/* Bytes of a printf-formatted cz_logf message. */
#define LOGF_MSG_MAX 4096

/* Relaxed atomics: the settings are independent words and a logger that reads a stale value
 * for one event after cz_log_init is harmless. */
static _Atomic int g_level = CZ_LOG_INFO;
static _Atomic int g_format = CZ_LOG_LOGFMT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int cz_log_level_from_name(const char *name, cz_log_level *out) {
  if (name == NULL) return -1;
  for (int i = 0; i < 4; i++) {
    if (strcmp(name, level_names[i]) == 0) {
      *out = (cz_log_level)i;
      return 0;
    }
  }
  return -1;
}

int cz_log_format_from_name(const char *name, cz_log_format *out) {
  if (name == NULL) return -1;
  if (strcmp(name, "logfmt") == 0) {
    *out = CZ_LOG_LOGFMT;
    return 0;
  }
  if (strcmp(name, "json") == 0) {
    *out = CZ_LOG_JSON;
    return 0;
  }
  return -1;
}

const char *cz_log_level_name(cz_log_level lvl) {
  return (unsigned)lvl < 4 ? level_names[lvl] : "error";
}

cz_err_code cz_log_init(const char *format, const char *level) {
  cz_log_format f = (cz_log_format)atomic_load_explicit(&g_format, memory_order_relaxed);
  cz_log_level l = (cz_log_level)atomic_load_explicit(&g_level, memory_order_relaxed);
  if (format != NULL && cz_log_format_from_name(format, &f) != 0) return CZ_E_INVALID_ARGUMENT;
  if (level != NULL && cz_log_level_from_name(level, &l) != 0) return CZ_E_INVALID_ARGUMENT;
  atomic_store_explicit(&g_format, (int)f, memory_order_relaxed);
  atomic_store_explicit(&g_level, (int)l, memory_order_relaxed);
  return CZ_E_OK;
}

int cz_log_enabled(cz_log_level lvl) {
  return (int)lvl >= atomic_load_explicit(&g_level, memory_order_relaxed);
}

const char *cz_log_i64(char buf[CZ_LOG_NUM_MAX], long long v) {
  snprintf(buf, CZ_LOG_NUM_MAX, "%lld", v);
  return buf;
}

const char *cz_log_u64(char buf[CZ_LOG_NUM_MAX], unsigned long long v) {
  snprintf(buf, CZ_LOG_NUM_MAX, "%llu", v);
  return buf;
}

/* ---- the line buffer ---- */

typedef struct {
  char b[CZ_LOG_LINE_MAX];
  size_t n;
  int full; /* something did not fit: everything after it is dropped */
} line_buf;

/* Append all of s or nothing, leaving LINE_RESERVE free; once full, stays full. */
static int lb_put(line_buf *l, const char *s, size_t len) {
  if (l->full || len > CZ_LOG_LINE_MAX - LINE_RESERVE - l->n) {
    l->full = 1;
    return -1;
  }
  memcpy(l->b + l->n, s, len);
  l->n += len;
  return 0;
}

/* Append closing text into the reserve (always fits: callers add at most LINE_RESERVE). */
static void lb_close(line_buf *l, const char *s) {
  size_t len = strlen(s);
  if (len > CZ_LOG_LINE_MAX - l->n) len = CZ_LOG_LINE_MAX - l->n;
  memcpy(l->b + l->n, s, len);
  l->n += len;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there are not one
 * (overlong forms, surrogates and code points above U+10FFFF included). The NUL terminator
 * fails every continuation test, so this never reads past the string. */
static size_t utf8_len(const unsigned char *s) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  unsigned char lo = 0x80, hi = 0xBF;
  size_t n;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return n;
}

/* logfmt leaves a value bare only if a parser cannot misread it. */
static int logfmt_needs_quotes(const char *v) {
  if (*v == '\0') return 1;
  for (const unsigned char *p = (const unsigned char *)v; *p; p++)
    if (*p <= ' ' || *p == '=' || *p == '"' || *p == '\\' || *p == 0x7f) return 1;
  return 0;
}

/* Escaped form of one ASCII byte inside quotes into out; returns its length. JSON and quoted
 * logfmt share the same escapes (DEL is escaped too: harmless in JSON, invisible otherwise). */
static size_t escape_ascii(unsigned char c, char out[8]) {
  switch (c) {
    case '"': memcpy(out, "\\\"", 2); return 2;
    case '\\': memcpy(out, "\\\\", 2); return 2;
    case '\n': memcpy(out, "\\n", 2); return 2;
    case '\r': memcpy(out, "\\r", 2); return 2;
    case '\t': memcpy(out, "\\t", 2); return 2;
    default: break;
  }
  if (c < 0x20 || c == 0x7f) return (size_t)snprintf(out, 8, "\\u%04x", c);
  out[0] = (char)c;
  return 1;
}

/* Append the characters of v (escaped when quoted), stopping at the first that does not fit. */
static void put_chars(line_buf *l, const char *v, int quoted) {
  const unsigned char *p = (const unsigned char *)v;
  while (*p) {
    char tmp[8];
    size_t adv, len;
    if (*p < 0x80) {
      adv = 1;
      len = quoted ? escape_ascii(*p, tmp) : (tmp[0] = (char)*p, 1);
    } else if ((adv = utf8_len(p)) != 0) {
      len = adv;
      memcpy(tmp, p, adv);
    } else {
      adv = 1;
      len = 3;
      memcpy(tmp, "\xEF\xBF\xBD", 3); /* U+FFFD REPLACEMENT CHARACTER */
    }
    if (lb_put(l, tmp, len) != 0) return;
    p += adv;
  }
}

/* Append one key/value. The separator, key and the value's opening go in as one unit so a
 * key is never left without its value; a value cut short is still closed. */
static void put_field(line_buf *l, cz_log_format f, const char *sep, const char *key,
                      const char *val) {
  char k[KEY_MAX + 1];
  size_t kn = 0;
  for (const char *p = key && *key ? key : "_"; *p && kn < KEY_MAX; p++) {
    char c = *p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '.' || c == '-';
    k[kn++] = ok ? c : '_';
  }
  k[kn] = '\0';

  int quoted = f == CZ_LOG_JSON ? val != NULL : (val != NULL && logfmt_needs_quotes(val));
  char head[KEY_MAX + 16];
  int hn;
  if (f == CZ_LOG_JSON)
    hn = snprintf(head, sizeof head, "%s\"%s\":%s", sep, k, val ? "\"" : "null");
  else
    hn = snprintf(head, sizeof head, "%s%s=%s", sep, k, quoted ? "\"" : "");
  if (lb_put(l, head, (size_t)hn) != 0 || val == NULL) return;
  put_chars(l, val, quoted);
  if (quoted) lb_close(l, "\"");
}

static _Thread_local const char *tl_request_id;

void cz_log_set_request_id(const char *id) { tl_request_id = id; }

void cz_time_iso(int64_t unix_ms, char out[CZ_TIME_ISO_LEN]) {
  int64_t s = unix_ms / 1000, ms = unix_ms % 1000;
  if (ms < 0) s--, ms += 1000;  /* before 1970: floor, not truncation */
  time_t t = (time_t)s;
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(out, CZ_TIME_ISO_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ms);
}

static void format_ts(char out[64]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  cz_time_iso((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, out);
}

/* Hand the line to the kernel. Normally one write(2); a signal or a short write on a full
 * pipe only makes it continue with the rest. */
static void emit(const char *b, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, b, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    b += w;
    n -= (size_t)w;
  }
}

/* Format and write one event; kv may be NULL (no fields). cut marks a message already
 * shortened by the caller. */
static void write_event(cz_log_level lvl, const char *msg, int cut, va_list *kv) {
  int saved_errno = errno; /* callers often log and then report errno */
  cz_log_format f = (cz_log_format)atomic_load_explicit(&g_format, memory_order_relaxed);
  int json = f == CZ_LOG_JSON;
  char ts[64];
  format_ts(ts);

  line_buf l;
  l.n = 0;
  l.full = 0;
  if (json) lb_put(&l, "{", 1);
  put_field(&l, f, "", "ts", ts);
  put_field(&l, f, json ? "," : " ", "level", cz_log_level_name(lvl));
  put_field(&l, f, json ? "," : " ", "msg", msg ? msg : "");
  if (tl_request_id) put_field(&l, f, json ? "," : " ", "request_id", tl_request_id);
  for (;;) {
    const char *key = kv ? va_arg(*kv, const char *) : NULL;
    if (key == NULL) break;
    const char *val = va_arg(*kv, const char *);
    if (!l.full) put_field(&l, f, json ? "," : " ", key, val);
  }
  if (l.full || cut) lb_close(&l, json ? ",\"truncated\":true" : " truncated=true");
  if (json) lb_close(&l, "}");
  lb_close(&l, "\n");
  emit(l.b, l.n);
  errno = saved_errno;
}

void cz_logv(cz_log_level lvl, const char *msg, va_list kv) {
  if (!cz_log_enabled(lvl)) return;
  va_list cp; /* a va_list parameter may be an array type; copy to take its address */
  va_copy(cp, kv);
  write_event(lvl, msg, 0, &cp);
  va_end(cp);
}

void cz_log(cz_log_level lvl, const char *msg, ...) {
  if (!cz_log_enabled(lvl)) return;
  va_list ap;
  va_start(ap, msg);
  write_event(lvl, msg, 0, &ap);
  va_end(ap);
}

void cz_logf(cz_log_level lvl, const char *fmt, ...) {
  if (!cz_log_enabled(lvl)) return;
  char msg[LOGF_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) msg[0] = '\0';
  write_event(lvl, msg, n >= (int)sizeof msg, NULL);
}
