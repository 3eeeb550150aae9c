/* cz_config: parses and validates settings from defaults, file, environment and argv. */
#include "cz_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "cz_log.h"

extern char **environ;

#define DEFAULT_ADDR "127.0.0.1"
#define DEFAULT_DATA_DIR "./var"
#define WHY_MAX 160              /* a setter's reason for refusing a value */
#define FILE_LINE_MAX 65536      /* longer config lines are refused rather than guessed at */

/* ---- setters: parse one value into c, or explain in why and return -1 ---- */

typedef int (*setter_fn)(cz_config *c, const char *v, char *why);

static int refuse(char *why, const char *fmt, const char *v) {
  snprintf(why, WHY_MAX, fmt, v);
  return -1;
}

/* Decimal digits only, no sign or spaces (strtoull would accept and wrap "-1"). *end gets
 * the first unparsed character; -1 on no digits or overflow. */
static int parse_u64(const char *s, uint64_t *out, const char **end) {
  if (s[0] < '0' || s[0] > '9') return -1;
  errno = 0;
  char *e;
  unsigned long long v = strtoull(s, &e, 10);
  if (errno == ERANGE) return -1;
  *out = v;
  *end = e;
  return 0;
}

/* The whole string as an integer in lo..hi. */
static int parse_int_range(const char *s, int lo, int hi, int *out) {
  uint64_t v;
  const char *end;
  if (parse_u64(s, &v, &end) != 0 || *end != '\0' || v < (uint64_t)lo || v > (uint64_t)hi)
    return -1;
  *out = (int)v;
  return 0;
}

static int copy_str(char *dst, size_t cap, const char *v) {
  size_t n = strlen(v);
  if (n >= cap) return -1;
  memcpy(dst, v, n + 1);
  return 0;
}

static int set_listen(cz_config *c, const char *v, char *why) {
  const char *bad = "must be IPV4:PORT or [IPV6]:PORT with a numeric address and a port "
                    "0..65535, got \"%s\"";
  char addr[64];
  const char *port;
  int family;
  if (v[0] == '[') {
    const char *close = strchr(v, ']');
    if (close == NULL || close[1] != ':' || (size_t)(close - v - 1) >= sizeof addr)
      return refuse(why, bad, v);
    memcpy(addr, v + 1, (size_t)(close - v - 1));
    addr[close - v - 1] = '\0';
    port = close + 2;
    family = AF_INET6;
  } else {
    const char *colon = strchr(v, ':');
    if (colon == NULL || strchr(colon + 1, ':') != NULL || (size_t)(colon - v) >= sizeof addr)
      return refuse(why, bad, v); /* a second ':' is an IPv6 address without brackets */
    memcpy(addr, v, (size_t)(colon - v));
    addr[colon - v] = '\0';
    port = colon + 1;
    family = AF_INET;
  }
  unsigned char sa[sizeof(struct in6_addr)];
  int p;
  if (inet_pton(family, addr, sa) != 1 || parse_int_range(port, 0, 65535, &p) != 0)
    return refuse(why, bad, v);
  memcpy(c->listen_addr, addr, strlen(addr) + 1);
  c->listen_port = p;
  return 0;
}

static int set_data_dir(cz_config *c, const char *v, char *why) {
  if (v[0] == '\0') return refuse(why, "must not be empty%s", "");
  if (copy_str(c->data_dir, sizeof c->data_dir, v) != 0)
    return refuse(why, "path too long%s", "");
  return 0;
}

static int set_workers(cz_config *c, const char *v, char *why) {
  if (parse_int_range(v, 1, CZ_CONFIG_MAX_WORKERS, &c->workers) != 0) {
    char msg[WHY_MAX];
    snprintf(msg, sizeof msg, "must be an integer in 1..%d, got \"%%s\"", CZ_CONFIG_MAX_WORKERS);
    return refuse(why, msg, v);
  }
  return 0;
}

static int set_max_attempts(cz_config *c, const char *v, char *why) {
  if (parse_int_range(v, 1, CZ_CONFIG_MAX_ATTEMPTS, &c->max_attempts) != 0) {
    char msg[WHY_MAX];
    snprintf(msg, sizeof msg, "must be an integer in 1..%d, got \"%%s\"", CZ_CONFIG_MAX_ATTEMPTS);
    return refuse(why, msg, v);
  }
  return 0;
}

/* Binary exponent of a size suffix, or -1. */
static int suffix_shift(char s) {
  switch (s) {
    case 'K': case 'k': return 10;
    case 'M': case 'm': return 20;
    case 'G': case 'g': return 30;
    case 'T': case 't': return 40;
    default: return -1;
  }
}

static int set_max_upload(cz_config *c, const char *v, char *why) {
  const char *bad = "must be a byte count >= 1 with an optional K, M, G or T suffix (powers "
                    "of 1024) that fits in 64 bits, got \"%s\"";
  uint64_t n;
  const char *end;
  if (parse_u64(v, &n, &end) != 0) return refuse(why, bad, v);
  if (*end != '\0') {
    int shift = suffix_shift(*end);
    if (shift < 0 || end[1] != '\0' || n > (UINT64_MAX >> shift)) return refuse(why, bad, v);
    n <<= shift;
  }
  if (n == 0) return refuse(why, bad, v);
  c->max_upload_bytes = n;
  return 0;
}

static int set_log_format(cz_config *c, const char *v, char *why) {
  cz_log_format f;
  if (cz_log_format_from_name(v, &f) != 0)
    return refuse(why, "must be logfmt or json, got \"%s\"", v);
  return copy_str(c->log_format, sizeof c->log_format, v);
}

static int set_log_level(cz_config *c, const char *v, char *why) {
  cz_log_level l;
  if (cz_log_level_from_name(v, &l) != 0)
    return refuse(why, "must be debug, info, warn or error, got \"%s\"", v);
  return copy_str(c->log_level, sizeof c->log_level, v);
}

/* An integer setting in lo..hi, with the range in the refusal. */
static int set_int_in(int *dst, const char *v, int lo, int hi, char *why) {
  if (parse_int_range(v, lo, hi, dst) == 0) return 0;
  char msg[WHY_MAX];
  snprintf(msg, sizeof msg, "must be an integer in %d..%d, got \"%%s\"", lo, hi);
  return refuse(why, msg, v);
}

/* A byte count with an optional K, M, G or T suffix, in lo..hi. */
static int set_bytes_in(uint64_t *dst, const char *v, uint64_t lo, uint64_t hi, char *why) {
  uint64_t n;
  const char *end;
  bool ok = parse_u64(v, &n, &end) == 0;
  if (ok && *end != '\0') {
    int shift = suffix_shift(*end);
    ok = shift >= 0 && end[1] == '\0' && n <= (UINT64_MAX >> shift);
    if (ok) n <<= shift;
  }
  if (ok && n >= lo && n <= hi) {
    *dst = n;
    return 0;
  }
  char msg[WHY_MAX];
  snprintf(msg, sizeof msg, "must be a byte count in %llu..%llu with an optional K, M, G or T "
           "suffix, got \"%%s\"", (unsigned long long)lo, (unsigned long long)hi);
  return refuse(why, msg, v);
}

static int set_max_queued(cz_config *c, const char *v, char *why) {
  return set_int_in(&c->max_queued_jobs, v, 0, CZ_CONFIG_MAX_QUEUED, why);
}
static int set_request_deadline(cz_config *c, const char *v, char *why) {
  return set_int_in(&c->request_deadline, v, 1, CZ_CONFIG_MAX_SECONDS, why);
}
static int set_min_upload_rate(cz_config *c, const char *v, char *why) {
  return set_bytes_in(&c->min_upload_rate, v, 0, UINT64_MAX >> 1, why);
}
static int set_idle_timeout(cz_config *c, const char *v, char *why) {
  return set_int_in(&c->idle_timeout, v, 1, CZ_CONFIG_MAX_SECONDS, why);
}
static int set_max_connections(cz_config *c, const char *v, char *why) {
  return set_int_in(&c->max_connections, v, 1, CZ_CONFIG_MAX_CONNECTIONS, why);
}
static int set_max_connections_per_ip(cz_config *c, const char *v, char *why) {
  return set_int_in(&c->max_connections_per_ip, v, 0, CZ_CONFIG_MAX_CONNECTIONS, why);
}
static int set_max_header_bytes(cz_config *c, const char *v, char *why) {
  return set_bytes_in(&c->max_header_bytes, v, CZ_CONFIG_MIN_HEADER_BYTES,
                      CZ_CONFIG_MAX_HEADER_BYTES, why);
}

static int set_webhook_max_attempts(cz_config *c, const char *v, char *why) {
  return set_int_in(&c->webhook_max_attempts, v, 1, CZ_CONFIG_MAX_WEBHOOK_ATTEMPTS, why);
}
static int set_webhook_backoff_ms(cz_config *c, const char *v, char *why) {
  return set_int_in(&c->webhook_backoff_ms, v, 1, CZ_CONFIG_MAX_WEBHOOK_BACKOFF_MS, why);
}
static int set_webhook_timeout(cz_config *c, const char *v, char *why) {
  return set_int_in(&c->webhook_timeout, v, 1, CZ_CONFIG_MAX_WEBHOOK_TIMEOUT, why);
}

static int set_retention_age(cz_config *c, const char *v, char *why) {
  uint64_t n;
  const char *end;
  if (parse_u64(v, &n, &end) != 0 || *end != '\0' || n > (uint64_t)CZ_CONFIG_MAX_RETENTION_AGE)
    return refuse(why, "must be seconds, 0 (keep forever) to ten years, got \"%s\"", v);
  c->retention_age = (int64_t)n;
  return 0;
}
static int set_disk_quota(cz_config *c, const char *v, char *why) {
  return set_bytes_in(&c->disk_quota, v, 0, UINT64_MAX >> 1, why);
}
static int set_retention_interval(cz_config *c, const char *v, char *why) {
  return set_int_in(&c->retention_interval, v, 1, CZ_CONFIG_MAX_SECONDS, why);
}

static int set_auth(cz_config *c, const char *v, char *why) {
  if (strcmp(v, "auto") != 0 && strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
    return refuse(why, "must be auto, on or off, got \"%s\"", v);
  return copy_str(c->auth, sizeof c->auth, v);
}

static int set_tls_cert(cz_config *c, const char *v, char *why) {
  if (copy_str(c->tls_cert, sizeof c->tls_cert, v) != 0) return refuse(why, "path too long%s", "");
  return 0;
}

static int set_tls_key(cz_config *c, const char *v, char *why) {
  if (copy_str(c->tls_key, sizeof c->tls_key, v) != 0) return refuse(why, "path too long%s", "");
  return 0;
}

static int set_config_file(cz_config *c, const char *v, char *why) {
  if (v[0] == '\0') return refuse(why, "must not be empty%s", "");
  if (copy_str(c->config_file, sizeof c->config_file, v) != 0)
    return refuse(why, "path too long%s", "");
  return 0;
}

/* ---- the option table: one row per setting, every source's name for it ---- */

typedef struct {
  const char *key;  /* config file key */
  const char *flag; /* command-line option */
  const char *env;  /* environment variable */
  const char *arg;  /* placeholder in --help */
  setter_fn set;
  int in_file;      /* 0 for --config itself: a config file cannot name another */
  const char *help;
} opt_def;

#define STR_(x) #x
#define STR(x) STR_(x) /* a numeric limit as text, so help cannot drift from the check */

static const opt_def opts[] = {
    {"listen", "--listen", "COMPRESSD_LISTEN", "ADDR:PORT", set_listen, 1,
     "HTTP API address: IPV4:PORT or [IPV6]:PORT (port 0: any free port)"},
    {"data_dir", "--data-dir", "COMPRESSD_DATA_DIR", "DIR", set_data_dir, 1,
     "directory for the database, blobs and temporary files"},
    {"workers", "--workers", "COMPRESSD_WORKERS", "N", set_workers, 1,
     "compression worker threads, 1.." STR(CZ_CONFIG_MAX_WORKERS)},
    {"max_upload_bytes", "--max-upload-bytes", "COMPRESSD_MAX_UPLOAD_BYTES", "N",
     set_max_upload, 1, "largest accepted upload in bytes; K, M, G, T suffixes = powers of 1024"},
    {"max_attempts", "--max-attempts", "COMPRESSD_MAX_ATTEMPTS", "N", set_max_attempts, 1,
     "times a job is tried before it is marked failed, 1.." STR(CZ_CONFIG_MAX_ATTEMPTS)},
    {"log_format", "--log-format", "COMPRESSD_LOG_FORMAT", "F", set_log_format, 1,
     "log line format on stderr: logfmt or json"},
    {"log_level", "--log-level", "COMPRESSD_LOG_LEVEL", "L", set_log_level, 1,
     "lowest level logged: debug, info, warn or error"},
    {"max_queued_jobs", "--max-queued-jobs", "COMPRESSD_MAX_QUEUED_JOBS", "N", set_max_queued, 1,
     "queued jobs at most; more submissions get 503 queue_full with Retry-After (0: no limit)"},
    {"request_deadline", "--request-deadline", "COMPRESSD_REQUEST_DEADLINE", "SECONDS",
     set_request_deadline, 1,
     "time a client has to send a whole request; an upload may take longer while it keeps "
     "min_upload_rate"},
    {"min_upload_rate", "--min-upload-rate", "COMPRESSD_MIN_UPLOAD_RATE", "BYTES",
     set_min_upload_rate, 1,
     "bytes per second an upload must average once older than request_deadline (0: off)"},
    {"idle_timeout", "--idle-timeout", "COMPRESSD_IDLE_TIMEOUT", "SECONDS", set_idle_timeout, 1,
     "seconds without traffic before a connection is closed"},
    {"max_connections", "--max-connections", "COMPRESSD_MAX_CONNECTIONS", "N",
     set_max_connections, 1, "simultaneous HTTP connections"},
    {"max_connections_per_ip", "--max-connections-per-ip", "COMPRESSD_MAX_CONNECTIONS_PER_IP",
     "N", set_max_connections_per_ip, 1, "simultaneous connections from one address (0: no limit)"},
    {"max_header_bytes", "--max-header-bytes", "COMPRESSD_MAX_HEADER_BYTES", "BYTES",
     set_max_header_bytes, 1,
     "per-connection buffer: request line and headers must fit (else 414/431); also the "
     "upload read buffer"},
    {"auth", "--auth", "COMPRESSD_AUTH", "MODE", set_auth, 1,
     "API tokens (Authorization: Bearer): on, off, or auto = required unless listening on a "
     "loopback address; create them with `compressd token create`"},
    {"tls_cert", "--tls-cert", "COMPRESSD_TLS_CERT", "FILE", set_tls_cert, 1,
     "serve HTTPS with this PEM certificate (chain); needs --tls-key"},
    {"tls_key", "--tls-key", "COMPRESSD_TLS_KEY", "FILE", set_tls_key, 1,
     "the PEM private key of --tls-cert"},
    {"webhook_max_attempts", "--webhook-max-attempts", "COMPRESSD_WEBHOOK_MAX_ATTEMPTS", "N",
     set_webhook_max_attempts, 1,
     "tries of one webhook delivery before it is marked failed, 1.." STR(CZ_CONFIG_MAX_WEBHOOK_ATTEMPTS)},
    {"webhook_backoff_ms", "--webhook-backoff-ms", "COMPRESSD_WEBHOOK_BACKOFF_MS", "MS",
     set_webhook_backoff_ms, 1,
     "wait before a webhook's second try; doubled after each failure, at most an hour"},
    {"webhook_timeout", "--webhook-timeout", "COMPRESSD_WEBHOOK_TIMEOUT", "SECONDS",
     set_webhook_timeout, 1, "time one webhook POST may take, 1.." STR(CZ_CONFIG_MAX_WEBHOOK_TIMEOUT)},
    {"retention_age", "--retention-age", "COMPRESSD_RETENTION_AGE", "SECONDS", set_retention_age,
     1, "delete finished jobs (with their artifacts) and models no job names once older than "
        "this (0: keep forever)"},
    {"disk_quota", "--disk-quota", "COMPRESSD_DISK_QUOTA", "BYTES", set_disk_quota, 1,
     "while the blobs take more, delete the oldest finished jobs and unused models (0: no "
     "quota); K, M, G, T suffixes"},
    {"retention_interval", "--retention-interval", "COMPRESSD_RETENTION_INTERVAL", "SECONDS",
     set_retention_interval, 1, "seconds between two retention sweeps"},
    {"config", "--config", "COMPRESSD_CONFIG", "FILE", set_config_file, 0,
     "read settings from FILE (lines 'key = value'); default: no file"},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

/* The --config row: it is resolved before the other settings. */
static const opt_def *config_opt(void) {
  for (size_t k = 0; k < N_OPTS; k++)
    if (opts[k].set == set_config_file) return &opts[k];
  return NULL; /* not reached: the table has the row */
}

/* ---- defaults ---- */

static int online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) return 1;
  return n > CZ_CONFIG_MAX_WORKERS ? CZ_CONFIG_MAX_WORKERS : (int)n;
}

void cz_config_defaults(cz_config *c) {
  memset(c, 0, sizeof *c);
  memcpy(c->listen_addr, DEFAULT_ADDR, sizeof DEFAULT_ADDR);
  c->listen_port = CZ_CONFIG_DEFAULT_PORT;
  memcpy(c->data_dir, DEFAULT_DATA_DIR, sizeof DEFAULT_DATA_DIR);
  c->workers = online_cpus();
  c->max_upload_bytes = CZ_CONFIG_DEFAULT_MAX_UPLOAD;
  c->max_attempts = CZ_CONFIG_DEFAULT_MAX_ATTEMPTS;
  memcpy(c->log_format, "logfmt", sizeof "logfmt");
  memcpy(c->log_level, "info", sizeof "info");
  c->max_queued_jobs = CZ_CONFIG_DEFAULT_MAX_QUEUED;
  c->request_deadline = CZ_CONFIG_DEFAULT_REQUEST_DEADLINE;
  c->min_upload_rate = CZ_CONFIG_DEFAULT_MIN_UPLOAD_RATE;
  c->idle_timeout = CZ_CONFIG_DEFAULT_IDLE_TIMEOUT;
  c->max_connections = CZ_CONFIG_DEFAULT_MAX_CONNECTIONS;
  c->max_connections_per_ip = CZ_CONFIG_DEFAULT_MAX_CONNECTIONS_PER_IP;
  c->max_header_bytes = CZ_CONFIG_DEFAULT_MAX_HEADER_BYTES;
  memcpy(c->auth, "auto", sizeof "auto");
  c->webhook_max_attempts = CZ_CONFIG_DEFAULT_WEBHOOK_MAX_ATTEMPTS;
  c->webhook_backoff_ms = CZ_CONFIG_DEFAULT_WEBHOOK_BACKOFF_MS;
  c->webhook_timeout = CZ_CONFIG_DEFAULT_WEBHOOK_TIMEOUT;
  c->retention_interval = CZ_CONFIG_DEFAULT_RETENTION_INTERVAL;
}

/* ---- command line ---- */

/* The next option at argv[*i]: sets *o and *val (NULL for --help) and advances *i. */
static cz_err_code next_arg(int argc, char **argv, int *i, const opt_def **o, const char **val,
                            cz_error *err) {
  const char *a = argv[(*i)++];
  *o = NULL;
  *val = NULL;
  if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return CZ_E_OK;
  if (strncmp(a, "--", 2) != 0)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "unexpected argument \"%s\" (see --help)", a);
  const char *eq = strchr(a, '=');
  size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
  for (size_t k = 0; k < N_OPTS; k++) {
    if (strlen(opts[k].flag) != name_len || strncmp(opts[k].flag, a, name_len) != 0) continue;
    *o = &opts[k];
    if (eq) {
      *val = eq + 1;
    } else if (*i < argc) {
      *val = argv[(*i)++]; /* taken as is, even if it starts with "--" */
    } else {
      return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%s: missing value", opts[k].flag);
    }
    return CZ_E_OK;
  }
  return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "unknown option \"%.*s\" (see --help)",
                    (int)name_len, a);
}

static cz_err_code apply(cz_config *c, const opt_def *o, const char *v, const char *where,
                         cz_error *err) {
  char why[WHY_MAX];
  if (o->set(c, v, why) != 0)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%s: %s", where, why);
  return CZ_E_OK;
}

/* Check the whole command line; note --help and the last --config. */
static cz_err_code scan_cli(cz_config *c, int argc, char **argv, cz_error *err) {
  for (int i = 0; i < argc;) {
    const opt_def *o;
    const char *v;
    cz_err_code rc = next_arg(argc, argv, &i, &o, &v, err);
    if (rc != CZ_E_OK) return rc;
    if (o == NULL)
      c->help = 1;
    else if (o->set == set_config_file)
      rc = apply(c, o, v, o->flag, err);
    if (rc != CZ_E_OK) return rc;
  }
  return CZ_E_OK;
}

static cz_err_code apply_cli(cz_config *c, int argc, char **argv, cz_error *err) {
  for (int i = 0; i < argc;) {
    const opt_def *o;
    const char *v;
    cz_err_code rc = next_arg(argc, argv, &i, &o, &v, err);
    if (rc == CZ_E_OK && o != NULL && o->set != set_config_file)
      rc = apply(c, o, v, o->flag, err);
    if (rc != CZ_E_OK) return rc;
  }
  return CZ_E_OK;
}

/* ---- environment ---- */

/* Value of name in envp, NULL when unset or empty. */
static const char *env_get(char **envp, const char *name) {
  size_t n = strlen(name);
  for (char **e = envp; e && *e; e++)
    if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return (*e)[n + 1] ? *e + n + 1 : NULL;
  return NULL;
}

static cz_err_code apply_env(cz_config *c, char **envp, cz_error *err) {
  for (size_t k = 0; k < N_OPTS; k++) {
    const char *v = env_get(envp, opts[k].env);
    if (v == NULL || opts[k].set == set_config_file) continue;
    cz_err_code rc = apply(c, &opts[k], v, opts[k].env, err);
    if (rc != CZ_E_OK) return rc;
  }
  return CZ_E_OK;
}

/* ---- config file ---- */

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
    s[--n] = '\0';
  return s;
}

static cz_err_code file_line(cz_config *c, const char *path, int lineno, char *line,
                             size_t len, cz_error *err) {
  if (strlen(line) != len)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%s:%d: NUL byte in line", path, lineno);
  if (len > FILE_LINE_MAX)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%s:%d: line longer than %d bytes", path,
                      lineno, FILE_LINE_MAX);
  char *s = trim(line);
  if (*s == '\0' || *s == '#') return CZ_E_OK;
  char *eq = strchr(s, '=');
  if (eq == NULL)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%s:%d: expected \"key = value\"", path,
                      lineno);
  *eq = '\0';
  const char *key = trim(s), *val = trim(eq + 1);
  for (size_t k = 0; k < N_OPTS; k++) {
    if (!opts[k].in_file || strcmp(opts[k].key, key) != 0) continue;
    char where[sizeof ((cz_error *)0)->msg]; /* longer is cut in the message anyway */
    snprintf(where, sizeof where, "%.200s:%d: %.32s", path, lineno, key);
    return apply(c, &opts[k], val, where, err);
  }
  return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%s:%d: unknown key \"%s\"", path, lineno, key);
}

static cz_err_code apply_file(cz_config *c, const char *path, cz_error *err) {
  FILE *f = fopen(path, "re");
  if (f == NULL) return cz_err_set(err, CZ_E_IO, "config file %s: %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int lineno = 0;
  cz_err_code rc = CZ_E_OK;
  while (rc == CZ_E_OK && (n = getline(&line, &cap, f)) >= 0)
    rc = file_line(c, path, ++lineno, line, (size_t)n, err);
  if (rc == CZ_E_OK && ferror(f))
    rc = cz_err_set(err, CZ_E_IO, "config file %s: read error", path);
  free(line);
  fclose(f);
  return rc;
}

/* ---- data_dir ---- */

/* Absolute data_dir: every later component (blob paths, the database, logs) then names the
 * same place whatever the working directory is. "./" prefixes and trailing '/' go. */
static cz_err_code absolute_data_dir(cz_config *c, cz_error *err) {
  char *d = c->data_dir;
  size_t n = strlen(d);
  while (n > 1 && d[n - 1] == '/') d[--n] = '\0';
  if (d[0] == '/') return CZ_E_OK;
  const char *rel = d;
  while (rel[0] == '.' && rel[1] == '/') {
    rel += 2;
    while (*rel == '/') rel++;
  }
  if (strcmp(rel, ".") == 0) rel = "";
  char cwd[sizeof c->data_dir];
  if (getcwd(cwd, sizeof cwd) == NULL)
    return cz_err_set(err, CZ_E_IO, "data_dir: cannot get the working directory: %s",
                      strerror(errno));
  char out[sizeof c->data_dir];
  int len = snprintf(out, sizeof out, "%s%s%s", cwd,
                     (*rel && strcmp(cwd, "/") != 0) ? "/" : "", rel);
  if (len < 0 || (size_t)len >= sizeof out)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "data_dir: path too long");
  memcpy(c->data_dir, out, (size_t)len + 1);
  return CZ_E_OK;
}

/* ---- load ---- */

cz_err_code cz_config_load(cz_config *c, int argc, char **argv, char **envp, cz_error *err) {
  cz_config t; /* built aside so that c stays unchanged on error */
  cz_config_defaults(&t);
  if (envp == NULL) envp = environ;

  /* The file's path first: the command line, else the environment. */
  const opt_def *cfg = config_opt();
  const char *env_cfg = env_get(envp, cfg->env);
  cz_err_code rc = CZ_E_OK;
  if (env_cfg != NULL) rc = apply(&t, cfg, env_cfg, cfg->env, err);
  if (rc == CZ_E_OK) rc = scan_cli(&t, argc, argv, err);
  if (rc != CZ_E_OK) return rc;
  if (t.help) {
    *c = t;
    return CZ_E_OK;
  }

  if (t.config_file[0] != '\0') rc = apply_file(&t, t.config_file, err);
  if (rc == CZ_E_OK) rc = apply_env(&t, envp, err);
  if (rc == CZ_E_OK) rc = apply_cli(&t, argc, argv, err);
  if (rc == CZ_E_OK) rc = absolute_data_dir(&t, err);
  if (rc == CZ_E_OK && (t.tls_cert[0] == '\0') != (t.tls_key[0] == '\0'))
    rc = cz_err_set(err, CZ_E_INVALID_ARGUMENT,
                    "tls_cert and tls_key go together: give both for HTTPS, or neither");
  if (rc == CZ_E_OK) *c = t;
  return rc;
}

/* ---- help ---- */

/* "64G" for a multiple of a power of 1024, else the plain number. */
static void format_bytes(uint64_t n, char out[32]) {
  static const char suffix[] = "TGMK";
  for (int i = 0; i < 4; i++) {
    int shift = 40 - 10 * i;
    if (n != 0 && n % (1ULL << shift) == 0) {
      snprintf(out, 32, "%llu%c", (unsigned long long)(n >> shift), suffix[i]);
      return;
    }
  }
  snprintf(out, 32, "%llu", (unsigned long long)n);
}

static void default_text(const cz_config *d, const opt_def *o, char out[128]) {
  if (o->set == set_listen) snprintf(out, 128, "%s:%d", d->listen_addr, d->listen_port);
  else if (o->set == set_data_dir) snprintf(out, 128, "%s", DEFAULT_DATA_DIR);
  else if (o->set == set_workers) snprintf(out, 128, "%d (online CPUs)", d->workers);
  else if (o->set == set_max_upload) format_bytes(d->max_upload_bytes, out);
  else if (o->set == set_max_attempts) snprintf(out, 128, "%d", d->max_attempts);
  else if (o->set == set_log_format) snprintf(out, 128, "%s", d->log_format);
  else if (o->set == set_log_level) snprintf(out, 128, "%s", d->log_level);
  else if (o->set == set_max_queued) snprintf(out, 128, "%d", d->max_queued_jobs);
  else if (o->set == set_request_deadline) snprintf(out, 128, "%d", d->request_deadline);
  else if (o->set == set_min_upload_rate) format_bytes(d->min_upload_rate, out);
  else if (o->set == set_idle_timeout) snprintf(out, 128, "%d", d->idle_timeout);
  else if (o->set == set_max_connections) snprintf(out, 128, "%d", d->max_connections);
  else if (o->set == set_max_connections_per_ip)
    snprintf(out, 128, "%d", d->max_connections_per_ip);
  else if (o->set == set_max_header_bytes) format_bytes(d->max_header_bytes, out);
  else if (o->set == set_auth) snprintf(out, 128, "%s", d->auth);
  else if (o->set == set_tls_cert || o->set == set_tls_key) snprintf(out, 128, "none");
  else snprintf(out, 128, "none");
}

void cz_config_print_help(FILE *f) {
  cz_config d;
  cz_config_defaults(&d);
  fprintf(f, "Options (precedence: command line > environment > config file > defaults;\n"
             "--opt value and --opt=value are the same):\n");
  for (size_t k = 0; k < N_OPTS; k++) {
    const opt_def *o = &opts[k];
    char def[128];
    default_text(&d, o, def);
    fprintf(f, "  %s %s\n      %s\n", o->flag, o->arg, o->help);
    if (o->in_file)
      fprintf(f, "      env %s, file key %s, default %s\n", o->env, o->key, def);
    else
      fprintf(f, "      env %s, default %s\n", o->env, def);
  }
  fprintf(f, "  -h, --help\n      print this help and exit\n");
}
