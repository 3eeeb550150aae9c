/* cz_config: the daemon's settings, from defaults, a config file, the environment and argv.
 *
 * Precedence, lowest first: built-in defaults < config file < environment < command line.
 * Each setting has one name per source:
 *
 *   command line          environment                  config file key     default
 *   --listen ADDR:PORT    COMPRESSD_LISTEN             listen              127.0.0.1:8420
 *   --data-dir DIR        COMPRESSD_DATA_DIR           data_dir            ./var
 *   --workers N           COMPRESSD_WORKERS            workers             online CPUs (1..64)
 *   --max-upload-bytes N  COMPRESSD_MAX_UPLOAD_BYTES   max_upload_bytes    64G
 *   --max-attempts N      COMPRESSD_MAX_ATTEMPTS       max_attempts        3
 *   --log-format F        COMPRESSD_LOG_FORMAT         log_format          logfmt
 *   --log-level L         COMPRESSD_LOG_LEVEL          log_level           info
 *   --max-queued-jobs N   COMPRESSD_MAX_QUEUED_JOBS    max_queued_jobs     1000
 *   --request-deadline S  COMPRESSD_REQUEST_DEADLINE   request_deadline    60
 *   --min-upload-rate N   COMPRESSD_MIN_UPLOAD_RATE    min_upload_rate     64K
 *   --idle-timeout S      COMPRESSD_IDLE_TIMEOUT       idle_timeout        60
 *   --max-connections N   COMPRESSD_MAX_CONNECTIONS    max_connections     256
 *   --max-connections-per-ip N  ..._PER_IP             max_connections_per_ip  64
 *   --max-header-bytes N  COMPRESSD_MAX_HEADER_BYTES   max_header_bytes    128K
 *   --auth MODE           COMPRESSD_AUTH               auth                auto
 *   --tls-cert FILE       COMPRESSD_TLS_CERT           tls_cert            none (plain HTTP)
 *   --tls-key FILE        COMPRESSD_TLS_KEY            tls_key             none
 *   --webhook-max-attempts N  ..._WEBHOOK_MAX_ATTEMPTS  webhook_max_attempts 8
 *   --webhook-backoff-ms N    ..._WEBHOOK_BACKOFF_MS    webhook_backoff_ms  5000
 *   --webhook-timeout S   COMPRESSD_WEBHOOK_TIMEOUT    webhook_timeout     10
 *   --retention-age S     COMPRESSD_RETENTION_AGE      retention_age       0 (keep forever)
 *   --disk-quota N        COMPRESSD_DISK_QUOTA         disk_quota          0 (no quota)
 *   --retention-interval S  ..._RETENTION_INTERVAL     retention_interval  60
 *   --config FILE         COMPRESSD_CONFIG             (none)              no file
 *
 * Command line: `--opt value` or `--opt=value`; -h/--help sets `help`. Anything else (an
 * unknown option, a missing value, a positional argument) is an error.
 * Environment: an empty variable counts as unset.
 * Config file: read only when --config or COMPRESSD_CONFIG names one (the command line wins);
 * lines `key = value`, blank lines and lines starting with '#' (comments take a whole line,
 * so '#' may appear in values); whitespace around key and value is ignored; a key given
 * twice keeps the last value. An unknown key or a bad value is an error naming file:line.
 *
 * Values: listen is a numeric IPv4 address or a bracketed numeric IPv6 address, a colon and
 * a port 0..65535 (0: the kernel picks a free port); host names are refused. Numbers are
 * decimal digits only (no sign, no spaces, no overflow); max_upload_bytes takes an optional
 * K, M, G or T suffix (powers of 1024, either case). log_format is logfmt|json, log_level is
 * debug|info|warn|error.
 *
 * Errors: CZ_E_INVALID_ARGUMENT for bad options or values, CZ_E_IO when the config file
 * cannot be read; the message names the source ("--workers", "COMPRESSD_WORKERS",
 * "/etc/compressd.conf:7") and the rejected value.
 * Thread: cz_config_load reads the environment and the working directory; call it at start-up
 * before threads exist. A loaded cz_config is plain data.
 */
#ifndef CZ_CONFIG_H
#define CZ_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "cz_err.h"

/* More compression threads than this only contend for memory bandwidth. */
#define CZ_CONFIG_MAX_WORKERS 64
/* A job that failed this often will not succeed on the next try. */
#define CZ_CONFIG_MAX_ATTEMPTS 100
#define CZ_CONFIG_DEFAULT_PORT 8420
/* 64 GiB: room for the largest common single-file checkpoints. */
#define CZ_CONFIG_DEFAULT_MAX_UPLOAD (64ULL << 30)
#define CZ_CONFIG_DEFAULT_MAX_ATTEMPTS 3
/* Limits of the HTTP service (issue 6), each a named default:
 * queued jobs beyond this get 503 queue_full with Retry-After (a queue that long is not
 * drained soon, and every queued job holds a model on disk); */
#define CZ_CONFIG_DEFAULT_MAX_QUEUED 1000
#define CZ_CONFIG_MAX_QUEUED 1000000
/* seconds a client has to send a whole request (headers and body), against slowloris;
 * uploads may take longer while they average at least min_upload_rate bytes/s; */
#define CZ_CONFIG_DEFAULT_REQUEST_DEADLINE 60
#define CZ_CONFIG_DEFAULT_MIN_UPLOAD_RATE (64 * 1024)
/* seconds of silence before a connection is closed (libmicrohttpd's timeout); */
#define CZ_CONFIG_DEFAULT_IDLE_TIMEOUT 60
#define CZ_CONFIG_MAX_SECONDS 86400
/* simultaneous connections, in all and from one address; */
#define CZ_CONFIG_DEFAULT_MAX_CONNECTIONS 256
#define CZ_CONFIG_DEFAULT_MAX_CONNECTIONS_PER_IP 64
#define CZ_CONFIG_MAX_CONNECTIONS 100000
/* per-connection memory of libmicrohttpd: the request line and headers must fit in it
 * (beyond: 414 or 431), and it is the read buffer of uploads. 32K would save about 5 us of
 * CPU per keep-alive GET (libmicrohttpd clears the whole pool between requests), but uploads
 * were 10-25 % slower with it in paired runs (bench/README.md), so 128K stays the default. */
#define CZ_CONFIG_DEFAULT_MAX_HEADER_BYTES (128 * 1024)
#define CZ_CONFIG_MIN_HEADER_BYTES (8 * 1024)
#define CZ_CONFIG_MAX_HEADER_BYTES (16 * 1024 * 1024)
/* Webhooks: tries per delivery (Standard Webhooks' schedule has 8 over about a day); the wait
 * before the second try, doubled after each failure up to an hour (cz_webhook.h); the time
 * one POST may take, so that a stalled receiver cannot hold the delivery thread. */
#define CZ_CONFIG_DEFAULT_WEBHOOK_MAX_ATTEMPTS 8
#define CZ_CONFIG_MAX_WEBHOOK_ATTEMPTS 100
#define CZ_CONFIG_DEFAULT_WEBHOOK_BACKOFF_MS 5000
#define CZ_CONFIG_MAX_WEBHOOK_BACKOFF_MS 3600000
#define CZ_CONFIG_DEFAULT_WEBHOOK_TIMEOUT 10
#define CZ_CONFIG_MAX_WEBHOOK_TIMEOUT 300
/* Retention (cz_retention.h): off by default, since it deletes users' data; an age up to ten
 * years; the sweep runs every retention_interval seconds. */
#define CZ_CONFIG_MAX_RETENTION_AGE (10LL * 366 * 86400)
#define CZ_CONFIG_DEFAULT_RETENTION_INTERVAL 60

typedef struct {
  char listen_addr[64];     /* numeric address without brackets: "127.0.0.1", "::1" */
  int listen_port;          /* 0..65535; 0 means an ephemeral port */
  char data_dir[4096];      /* absolute: a relative value is resolved against the working
                               directory at load time, without following symlinks */
  int workers;              /* 1..CZ_CONFIG_MAX_WORKERS */
  uint64_t max_upload_bytes;/* >= 1 */
  int max_attempts;         /* 1..CZ_CONFIG_MAX_ATTEMPTS */
  char log_format[16];      /* "logfmt" | "json" (valid for cz_log_init) */
  char log_level[16];       /* "debug" | "info" | "warn" | "error" */
  int max_queued_jobs;      /* 0..CZ_CONFIG_MAX_QUEUED; 0: no limit */
  int request_deadline;     /* seconds, 1..CZ_CONFIG_MAX_SECONDS */
  uint64_t min_upload_rate; /* bytes per second, 0 (off) or more */
  int idle_timeout;         /* seconds, 1..CZ_CONFIG_MAX_SECONDS */
  int max_connections;      /* 1..CZ_CONFIG_MAX_CONNECTIONS */
  int max_connections_per_ip; /* 0 (no limit) ..CZ_CONFIG_MAX_CONNECTIONS */
  uint64_t max_header_bytes;  /* CZ_CONFIG_MIN_HEADER_BYTES..CZ_CONFIG_MAX_HEADER_BYTES */
  char auth[8];             /* "auto" (tokens required unless listening on loopback), "on", "off" */
  char tls_cert[4096];      /* PEM certificate (chain) file; with tls_key: HTTPS. "" = none */
  char tls_key[4096];       /* PEM private key file; both or neither (checked at load) */
  int webhook_max_attempts; /* 1..CZ_CONFIG_MAX_WEBHOOK_ATTEMPTS */
  int webhook_backoff_ms;   /* 1..CZ_CONFIG_MAX_WEBHOOK_BACKOFF_MS */
  int webhook_timeout;      /* seconds, 1..CZ_CONFIG_MAX_WEBHOOK_TIMEOUT */
  int64_t retention_age;    /* seconds, 0 (off)..CZ_CONFIG_MAX_RETENTION_AGE */
  uint64_t disk_quota;      /* bytes of blobs, 0 = no quota */
  int retention_interval;   /* seconds between sweeps, 1..CZ_CONFIG_MAX_SECONDS */
  char config_file[4096];   /* the file that was read, "" if none */
  int help;                 /* 1 if -h/--help was given: the caller prints help and exits;
                               the other options and the config file are then not checked */
} cz_config;

/* Fill c with the built-in defaults (data_dir left relative: "./var"). */
void cz_config_defaults(cz_config *c);

/* Build the configuration from all sources into c. argv holds the arguments after the
 * subcommand (argc of them; argv[0] is the first option, not a program name). envp is a
 * NULL-terminated "NAME=value" array, or NULL for the process environment. On error c is
 * left unchanged and err says what and where. */
cz_err_code cz_config_load(cz_config *c, int argc, char **argv, char **envp, cz_error *err);

/* Print the option list (options, environment variables, file keys, defaults) to f. No usage
 * line: the caller knows its program and subcommand names. */
void cz_config_print_help(FILE *f);

#endif
