/* cz_serve: wires the store, blob store, worker and HTTP API into the running daemon. */
#include "cz_serve.h"

#include "cz_blas.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cz_api.h"
#include "cz_api_service.h"
#include "cz_blob.h"
#include "cz_config.h"
#include "cz_http.h"
#include "cz_log.h"
#include "cz_metrics.h"
#include "cz_store.h"
#include "cz_retention.h"
#include "cz_webhook.h"
#include "cz_worker.h"

extern void openblas_set_num_threads(int num_threads);

typedef struct {
  uv_loop_t *loop;
  cz_worker *worker;
  cz_http *http;
  cz_webhook *webhooks;     /* the delivery thread (cz_webhook.h) */
  cz_retention *retention;  /* the age / disk-quota sweep (cz_retention.h); NULL when off */
  uv_signal_t sigterm, sigint;
  bool stopping;
  uv_timer_t watchdog;      /* WATCHDOG=1 pings, when systemd asked for them */
  bool watchdog_on;
  cz_api api;
} serve_ctx;

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, if systemd gave one. */
static void notify(const char *state) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) return;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  memcpy(sa.sun_path, path, strlen(path));
  if (sa.sun_path[0] == '@') sa.sun_path[0] = 0;  /* abstract namespace */
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
  (void)sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
  close(fd);
}

/* systemd's watchdog (WatchdogSec= in the unit): when WATCHDOG_USEC is set, and WATCHDOG_PID
 * is unset or names this process, send WATCHDOG=1 from the event loop at half the interval.
 * A wedged loop stops the pings and systemd restarts the daemon. */
static void watchdog_ping(uv_timer_t *t) {
  (void)t;
  notify("WATCHDOG=1");
}

static bool watchdog_start(uv_loop_t *loop, uv_timer_t *t) {
  const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
  if (!usec || !*usec) return false;
  char *end;
  if (pid && *pid && (strtol(pid, &end, 10) != (long)getpid() || *end)) return false;
  errno = 0;
  unsigned long long us = strtoull(usec, &end, 10);
  if (errno || *end || us == 0) return false;
  uint64_t ms = us / 2000 > 0 ? us / 2000 : 1;
  uv_timer_init(loop, t);
  uv_timer_start(t, watchdog_ping, ms, ms);
  cz_log(CZ_LOG_INFO, "watchdog", "interval_ms", CZ_LOG_UINT(ms), NULL);
  return true;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake_worker(void *cls) {
  serve_ctx *s = cls;
  if (s->worker) cz_worker_wake(s->worker);
}

/* The store changed a job's state: answer the long-polls waiting on it. */
static void job_changed(void *cls, const char *job_id) {
  serve_ctx *s = cls;
  if (s->http) cz_http_wake(s->http, job_id);
  cz_webhook_kick(s->webhooks);  /* a finished job may have a webhook to send */
}

/* Is addr (numeric) a loopback address: 127.0.0.0/8 or ::1? */
static bool loopback(const char *addr) {
  return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0;
}

/* A PEM file for TLS, whole, NUL-terminated (malloc'd); NULL with err set. */
#define PEM_MAX (1 << 20)
static char *read_pem(const char *path, const char *what, cz_error *err) {
  FILE *f = fopen(path, "re");
  if (!f) {
    cz_err_set(err, CZ_E_IO, "%s %s: %s", what, path, strerror(errno));
    return NULL;
  }
  char *buf = malloc(PEM_MAX + 1);
  size_t n = buf ? fread(buf, 1, PEM_MAX + 1, f) : 0;
  bool bad = !buf || ferror(f) || n > PEM_MAX || n == 0;
  fclose(f);
  if (bad) {
    free(buf);
    cz_err_set(err, CZ_E_INVALID_ARGUMENT, "%s %s: empty, unreadable or over %d bytes", what,
               path, PEM_MAX);
    return NULL;
  }
  buf[n] = 0;
  return buf;
}

static void worker_stopped(void *cls) {
  serve_ctx *s = cls;
  s->worker = NULL;
  if (s->watchdog_on) uv_close((uv_handle_t *)&s->watchdog, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  serve_ctx *s = h->data;
  if (s->stopping) return;
  s->stopping = true;
  cz_log(CZ_LOG_INFO, "stopping", "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
  notify("STOPPING=1");
  atomic_store(&s->api.ready, 0);
  cz_http_quiesce(s->http);   /* no new connections; requests in progress finish */
  cz_worker_shutdown(s->worker, worker_stopped, s);
}

/* One daemon per data directory: two would both think they own the running jobs. */
static int lock_data_dir(const char *dir, cz_error *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/compressd.lock", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    cz_err_set(err, CZ_E_IO, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    cz_err_set(err, CZ_E_CONFLICT, "another compressd is using the data directory %s", dir);
    close(fd);
    return -1;
  }
  return fd;
}

/* The page-token key lives in the data directory (page-token.key, 0600), so that a client
 * paging through a list carries on across a restart or an upgrade; made once, atomically
 * (temporary file, fsync, rename), from the kernel's random source. A file of the wrong size
 * is refused rather than replaced: it is not ours to overwrite. */
static cz_err_code load_page_key(const char *dir, cz_page_key *k, cz_error *err) {
  char path[4200], tmp[4220];
  snprintf(path, sizeof path, "%s/page-token.key", dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    ssize_t n = read(fd, k->key, sizeof k->key);
    char extra;
    bool more = n == (ssize_t)sizeof k->key && read(fd, &extra, 1) != 0;
    close(fd);
    if (n != (ssize_t)sizeof k->key || more)
      return cz_err_set(err, CZ_E_IO, "%s is not a %d-byte key (remove it to make a new one)",
                        path, CZ_PAGE_KEY_LEN);
    return CZ_E_OK;
  }
  if (errno != ENOENT) return cz_err_set(err, CZ_E_IO, "cannot read %s: %s", path, strerror(errno));
  if (!cz_page_key_init(k))
    return cz_err_set(err, CZ_E_INTERNAL, "no random bytes for the page-token key: %s",
                      strerror(errno));
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  bool ok = fd >= 0 && write(fd, k->key, sizeof k->key) == (ssize_t)sizeof k->key &&
            fsync(fd) == 0;
  if (fd >= 0 && close(fd) != 0) ok = false;
  if (!ok || rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return cz_err_set(err, e == ENOSPC ? CZ_E_NO_SPACE : CZ_E_IO, "cannot write %s: %s", path,
                      strerror(e));
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);  /* the rename itself; a lost key only costs clients their page tokens */
    close(dfd);
  }
  return CZ_E_OK;
}

static int fail(const cz_error *e) {
  cz_log(CZ_LOG_ERROR, "cannot start", "code", cz_err_name(e->code), "error", e->msg, NULL);
  fprintf(stderr, "compressd: %s\n", e->msg);
  return 1;
}

/* cz_blob_sweep's question, answered by the database. */
static cz_err_code blob_used(void *store, const char *sha256_hex, bool *used, cz_error *err) {
  return cz_store_blob_used(store, sha256_hex, used, err);
}

static cz_err_code open_state(const cz_config *cfg, cz_store **store, cz_blob_store **blobs,
                              cz_error *err) {
  char db[4200];
  snprintf(db, sizeof db, "%s/compressd.db", cfg->data_dir);
  cz_err_code rc = cz_store_open(db, store, err);
  if (rc) return rc;
  if ((rc = cz_blob_store_open(cfg->data_dir, blobs, err))) return rc;
  int requeued, failed, swept;
  if ((rc = cz_store_recover(*store, now_ms(), &requeued, &failed, err))) return rc;
  /* after recover: a blob published by a job that then failed for good is unreferenced */
  if ((rc = cz_blob_sweep(*blobs, blob_used, *store, &swept, err))) return rc;
  cz_log(CZ_LOG_INFO, "recovered", "requeued", CZ_LOG_INT(requeued), "failed",
         CZ_LOG_INT(failed), "unreferenced_blobs_removed", CZ_LOG_INT(swept), "schema",
         CZ_LOG_INT(cz_store_schema_version(*store)), NULL);
  return CZ_E_OK;
}

int cz_serve_main(int argc, char **argv) {
  cz_config cfg;
  cz_error e = {0};
  if (cz_config_load(&cfg, argc, argv, NULL, &e)) {
    fprintf(stderr, "compressd serve: %s\n", e.msg);
    return 2;
  }
  if (cfg.help) {
    cz_config_print_help(stdout);
    return 0;
  }
  cz_log_init(cfg.log_format, cfg.log_level);
  /* libuv sizes its pool from the environment at first use; BLAS gets one thread per
   * pool thread so the two never oversubscribe the cores. */
  char nthreads[16];
  snprintf(nthreads, sizeof nthreads, "%d", cfg.workers + 1);
  setenv("UV_THREADPOOL_SIZE", nthreads, 1);
  cz_metrics_worker_slots(cfg.workers + 1);  /* the pool's threads, all able to run tasks */
  openblas_set_num_threads(1);

  serve_ctx s = {0};
  cz_store *store = NULL;
  cz_blob_store *blobs = NULL;
  int lock = -1, rc = 1;
  if (mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST) {
    cz_err_set(&e, CZ_E_IO, "cannot create %s: %s", cfg.data_dir, strerror(errno));
    return fail(&e);
  }
  if ((lock = lock_data_dir(cfg.data_dir, &e)) < 0 || open_state(&cfg, &store, &blobs, &e)) {
    rc = fail(&e);
    goto out;
  }
  s.loop = uv_default_loop();
  s.api = (cz_api){.store = store, .blobs = blobs, .max_upload_bytes = cfg.max_upload_bytes,
                   .max_attempts = cfg.max_attempts, .max_queued = cfg.max_queued_jobs,
                   .auth_required = strcmp(cfg.auth, "on") == 0 ||
                                    (strcmp(cfg.auth, "auto") == 0 && !loopback(cfg.listen_addr)),
                   .webhook_max_attempts = cfg.webhook_max_attempts,
                   .wake = wake_worker, .wake_cls = &s,
                   /* NULL (out of memory) only means every GET of a job reads the store */
                   .job_cache = cz_jobcache_new()};
  if (load_page_key(cfg.data_dir, &s.api.page_key, &e)) {
    rc = fail(&e);
    goto out;
  }
  cz_http_limits lim = {(unsigned)cfg.idle_timeout, (unsigned)cfg.max_connections,
                        (unsigned)cfg.max_connections_per_ip, (size_t)cfg.max_header_bytes,
                        (unsigned)cfg.request_deadline, cfg.min_upload_rate, cz_api_authorize,
                        NULL, NULL};
  char *tls_cert = NULL, *tls_key = NULL;
  if (cfg.tls_cert[0]) {
    if (!(tls_cert = read_pem(cfg.tls_cert, "tls_cert", &e)) ||
        !(tls_key = read_pem(cfg.tls_key, "tls_key", &e))) {
      free(tls_cert);
      rc = fail(&e);
      goto out;
    }
    lim.tls_cert_pem = tls_cert;
    lim.tls_key_pem = tls_key;
  }
  char owner[64];
  snprintf(owner, sizeof owner, "pid%ld-%lld", (long)getpid(), (long long)now_ms());
  cz_worker_opts wopts = {.threads = cfg.workers, .max_attempts = cfg.max_attempts, .owner = owner};
  int n_routes;
  const cz_route *routes = cz_api_routes(&n_routes);
  cz_webhook_opts whopts = {cfg.webhook_backoff_ms, cfg.webhook_timeout};
  cz_retention_policy rpol = {cfg.retention_age * 1000, cfg.disk_quota};
  if (cz_webhook_start(store, &whopts, &s.webhooks, &e) ||
      cz_retention_start(store, blobs, &rpol, (int64_t)cfg.retention_interval * 1000,
                         &s.retention, &e) ||
      cz_worker_start(s.loop, store, blobs, &wopts, &s.worker, &e) ||
      cz_http_start(cfg.listen_addr, cfg.listen_port, routes, n_routes, &s.api, &lim, &s.http,
                    &e)) {
    free(tls_cert);
    if (tls_key) memset(tls_key, 0, strlen(tls_key));
    free(tls_key);
    rc = fail(&e);
    goto out;
  }
  cz_store_set_job_listener(store, job_changed, &s);
  uv_signal_init(s.loop, &s.sigterm);
  uv_signal_init(s.loop, &s.sigint);
  s.sigterm.data = s.sigint.data = &s;
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  signal(SIGPIPE, SIG_IGN);
  atomic_store(&s.api.ready, 1);
  const char *host = cfg.listen_addr;
  bool v6 = strchr(host, ':') != NULL;
  free(tls_cert);  /* cz_http keeps its own copies */
  if (tls_key) memset(tls_key, 0, strlen(tls_key));
  free(tls_key);
  printf("compressd %s listening on %s://%s%s%s:%d/ (data in %s)\n", CZ_VERSION,
         cfg.tls_cert[0] ? "https" : "http", v6 ? "[" : "",
         host, v6 ? "]" : "", cz_http_port(s.http), cfg.data_dir);
  fflush(stdout);
  cz_log(CZ_LOG_INFO, "listening", "addr", host, "port", CZ_LOG_INT(cz_http_port(s.http)),
         "data_dir", cfg.data_dir, "workers", CZ_LOG_INT(cfg.workers), "tokens",
         s.api.auth_required ? "required" : "not required", "blas_core", cz_blas_core(), NULL);
  notify("READY=1");
  s.watchdog_on = watchdog_start(s.loop, &s.watchdog);
  if (s.watchdog_on) notify("WATCHDOG=1");
  uv_run(s.loop, UV_RUN_DEFAULT);
  rc = 0;
  cz_log(CZ_LOG_INFO, "stopped", NULL);
out:
  if (store) cz_store_set_job_listener(store, NULL, NULL);
  cz_http_stop(s.http);
  cz_jobcache_free(s.api.job_cache);  /* no handler runs any more */
  cz_webhook_stop(s.webhooks);
  cz_retention_stop(s.retention);
  if (s.loop) uv_loop_close(s.loop);
  cz_store_close(store);
  cz_blob_store_close(blobs);
  if (lock >= 0) close(lock);
  return rc;
}
