/* test_config: defaults, every source and option, precedence and error messages of cz_config. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cz_config.h"
#include "cz_test.h"

#define MAX_ARGS 32

static char *no_env[] = {NULL};
static char tmp_dir[64]; /* config files of this run */

/* cz_config_load with argv given inline, NULL-terminated. */
static cz_err_code load(cz_config *c, cz_error *err, char **envp, ...) {
  char *argv[MAX_ARGS];
  int argc = 0;
  va_list ap;
  va_start(ap, envp);
  for (char *a; argc < MAX_ARGS && (a = va_arg(ap, char *)) != NULL;) argv[argc++] = a;
  va_end(ap);
  memset(err, 0, sizeof *err);
  return cz_config_load(c, argc, argv, envp, err);
}

/* Write a config file named name in this run's directory; returns its path (static). */
static const char *write_conf(const char *name, const char *text) {
  static char paths[8][256];
  static int next;
  char *p = paths[next++ % 8];
  snprintf(p, 256, "%s/%s", tmp_dir, name);
  FILE *f = fopen(p, "w");
  if (f == NULL || fputs(text, f) < 0) {
    perror(p);
    exit(2);
  }
  fclose(f);
  return p;
}

/* The error message contains every given fragment. */
static int msg_has(const cz_error *err, const char *a, const char *b) {
  int ok = strstr(err->msg, a) != NULL && (b == NULL || strstr(err->msg, b) != NULL);
  if (!ok) printf("# message was: %s\n", err->msg);
  return ok;
}

static void cwd_join(char *out, size_t len, const char *rel) {
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd) == NULL) cwd[0] = '\0';
  snprintf(out, len, "%s/%s", cwd, rel);
}

/* ---- tests ---- */

static void test_defaults(void) {
  cz_config c;
  cz_error err;
  CHECK_EQ_INT(load(&c, &err, no_env, NULL), CZ_E_OK);
  CHECK_EQ_STR(c.listen_addr, "127.0.0.1");
  CHECK_EQ_INT(c.listen_port, 8420);
  char want[8200];
  cwd_join(want, sizeof want, "var");
  CHECK_EQ_STR(c.data_dir, want);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1) cpus = 1;
  if (cpus > CZ_CONFIG_MAX_WORKERS) cpus = CZ_CONFIG_MAX_WORKERS;
  CHECK_EQ_INT(c.workers, cpus);
  CHECK(c.max_upload_bytes == 64ULL * 1024 * 1024 * 1024);
  CHECK_EQ_INT(c.max_attempts, 3);
  CHECK_EQ_STR(c.log_format, "logfmt");
  CHECK_EQ_STR(c.log_level, "info");
  CHECK_EQ_STR(c.config_file, "");
  CHECK_EQ_INT(c.help, 0);

  cz_config d;
  cz_config_defaults(&d);
  CHECK_EQ_STR(d.data_dir, "./var"); /* made absolute only by load */
  CHECK_EQ_INT(d.workers, cpus);
}

static void check_all_set(const cz_config *c) {
  CHECK_EQ_STR(c->listen_addr, "0.0.0.0");
  CHECK_EQ_INT(c->listen_port, 9000);
  CHECK_EQ_STR(c->data_dir, "/srv/compressd");
  CHECK_EQ_INT(c->workers, 5);
  CHECK(c->max_upload_bytes == 3ULL << 20);
  CHECK_EQ_INT(c->max_attempts, 7);
  CHECK_EQ_STR(c->log_format, "json");
  CHECK_EQ_STR(c->log_level, "debug");
}

static void test_every_option_on_command_line(void) {
  cz_config c;
  cz_error err;
  CHECK_EQ_INT(load(&c, &err, no_env, "--listen", "0.0.0.0:9000", "--data-dir", "/srv/compressd",
                    "--workers", "5", "--max-upload-bytes", "3M", "--max-attempts", "7",
                    "--log-format", "json", "--log-level", "debug", NULL),
               CZ_E_OK);
  check_all_set(&c);
  CHECK_EQ_INT(load(&c, &err, no_env, "--listen=0.0.0.0:9000", "--data-dir=/srv/compressd",
                    "--workers=5", "--max-upload-bytes=3M", "--max-attempts=7",
                    "--log-format=json", "--log-level=debug", NULL),
               CZ_E_OK);
  check_all_set(&c);
}

static void test_every_option_in_environment(void) {
  char *env[] = {"PATH=/usr/bin",
                 "COMPRESSD_LISTEN=0.0.0.0:9000",
                 "COMPRESSD_DATA_DIR=/srv/compressd",
                 "COMPRESSD_WORKERS=5",
                 "COMPRESSD_MAX_UPLOAD_BYTES=3145728",
                 "COMPRESSD_MAX_ATTEMPTS=7",
                 "COMPRESSD_LOG_FORMAT=json",
                 "COMPRESSD_LOG_LEVEL=debug",
                 "COMPRESSD_WORKERSX=9", /* a longer name is another variable */
                 NULL};
  cz_config c;
  cz_error err;
  CHECK_EQ_INT(load(&c, &err, env, NULL), CZ_E_OK);
  check_all_set(&c);
}

static void test_every_option_in_file(void) {
  const char *path = write_conf("all.conf",
                                "# compressd test configuration\n"
                                "\n"
                                "listen = 0.0.0.0:9000\n"
                                "  data_dir=/srv/compressd   \n"
                                "\tworkers\t=\t5\n"
                                "max_upload_bytes = 3m\r\n"
                                "   # an indented comment\n"
                                "max_attempts = 7\n"
                                "log_format = json\n"
                                "log_level = debug"); /* no final newline */
  cz_config c;
  cz_error err;
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", path, NULL), CZ_E_OK);
  check_all_set(&c);
  CHECK_EQ_STR(c.config_file, path);

  char *env[] = {NULL, NULL};
  char var[300];
  snprintf(var, sizeof var, "COMPRESSD_CONFIG=%s", path);
  env[0] = var;
  CHECK_EQ_INT(load(&c, &err, env, NULL), CZ_E_OK);
  check_all_set(&c);
}

static void test_precedence(void) {
  const char *file = write_conf("prec.conf", "workers = 2\nlog_level = warn\nmax_attempts = 4\n");
  char var[300];
  snprintf(var, sizeof var, "COMPRESSD_CONFIG=%s", file);
  char *env_file[] = {var, NULL};
  char *env_all[] = {var, "COMPRESSD_WORKERS=3", "COMPRESSD_LOG_LEVEL=error", NULL};
  cz_config c;
  cz_error err;

  CHECK_EQ_INT(load(&c, &err, env_file, NULL), CZ_E_OK); /* file over defaults */
  CHECK_EQ_INT(c.workers, 2);
  CHECK_EQ_STR(c.log_level, "warn");
  CHECK_EQ_INT(c.max_attempts, 4);

  CHECK_EQ_INT(load(&c, &err, env_all, NULL), CZ_E_OK); /* environment over file */
  CHECK_EQ_INT(c.workers, 3);
  CHECK_EQ_STR(c.log_level, "error");
  CHECK_EQ_INT(c.max_attempts, 4);

  CHECK_EQ_INT(load(&c, &err, env_all, "--workers", "4", NULL), CZ_E_OK); /* argv over all */
  CHECK_EQ_INT(c.workers, 4);
  CHECK_EQ_STR(c.log_level, "error");
  CHECK_EQ_INT(c.max_attempts, 4);

  /* On the command line the last occurrence wins. */
  CHECK_EQ_INT(load(&c, &err, env_all, "--workers=4", "--workers", "6", NULL), CZ_E_OK);
  CHECK_EQ_INT(c.workers, 6);

  /* --config beats COMPRESSD_CONFIG; the file it names is the one read. */
  const char *other = write_conf("other.conf", "workers = 9\n");
  CHECK_EQ_INT(load(&c, &err, env_file, "--config", other, NULL), CZ_E_OK);
  CHECK_EQ_INT(c.workers, 9);
  CHECK_EQ_INT(c.max_attempts, 3);
  CHECK_EQ_STR(c.config_file, other);

  /* In a file, a repeated key keeps the last value. */
  const char *twice = write_conf("twice.conf", "workers = 2\nworkers = 3\n");
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", twice, NULL), CZ_E_OK);
  CHECK_EQ_INT(c.workers, 3);
}

static void test_empty_environment_variable_is_unset(void) {
  char *env[] = {"COMPRESSD_WORKERS=", "COMPRESSD_CONFIG=", NULL};
  cz_config c;
  cz_error err;
  CHECK_EQ_INT(load(&c, &err, env, NULL), CZ_E_OK);
  CHECK(c.workers >= 1);
  CHECK_EQ_STR(c.config_file, "");
}

static void test_null_envp_reads_process_environment(void) {
  setenv("COMPRESSD_MAX_ATTEMPTS", "17", 1);
  cz_config c;
  cz_error err;
  CHECK_EQ_INT(load(&c, &err, NULL, NULL), CZ_E_OK);
  CHECK_EQ_INT(c.max_attempts, 17);
  unsetenv("COMPRESSD_MAX_ATTEMPTS");
}

static void test_listen_values(void) {
  static const struct {
    const char *in, *addr;
    int port;
  } good[] = {
      {"0.0.0.0:0", "0.0.0.0", 0},          {"10.1.2.3:1", "10.1.2.3", 1},
      {"127.0.0.1:65535", "127.0.0.1", 65535}, {"[::1]:8080", "::1", 8080},
      {"[::]:0", "::", 0},                  {"[fe80::1:2]:443", "fe80::1:2", 443},
  };
  static const char *bad[] = {
      "localhost:80", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
      "127.0.0.1:+1", "127.0.0.1:8x", "127.0.0.1: 80", "::1:80", "[::1]80", "[::1]",
      "[::1:80", "[127.0.0.1]:80", "256.1.1.1:80", ":80", "", "1.2.3:80",
  };
  cz_config c;
  cz_error err;
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    CHECK_EQ_INT(load(&c, &err, no_env, "--listen", good[i].in, NULL), CZ_E_OK);
    CHECK_EQ_STR(c.listen_addr, good[i].addr);
    CHECK_EQ_INT(c.listen_port, good[i].port);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (load(&c, &err, no_env, "--listen", bad[i], NULL) != CZ_E_INVALID_ARGUMENT)
      printf("# --listen \"%s\" was accepted\n", bad[i]), cz_test_failures++;
    else
      CHECK(msg_has(&err, "--listen", bad[i]));
  }
}

static void test_integers_are_strict(void) {
  static const char *bad_workers[] = {"0", "65", "-1", "+1", " 4", "4 ", "4x", "",
                                      "0x10", "1e2", "99999999999999999999", "4294967297"};
  cz_config c;
  cz_error err;
  for (size_t i = 0; i < sizeof bad_workers / sizeof bad_workers[0]; i++) {
    if (load(&c, &err, no_env, "--workers", bad_workers[i], NULL) != CZ_E_INVALID_ARGUMENT)
      printf("# --workers \"%s\" was accepted\n", bad_workers[i]), cz_test_failures++;
    else
      CHECK(msg_has(&err, "--workers: must be an integer in 1..64", bad_workers[i]));
  }
  CHECK_EQ_INT(load(&c, &err, no_env, "--workers", "64", NULL), CZ_E_OK);
  CHECK_EQ_INT(c.workers, 64);
  CHECK_EQ_INT(load(&c, &err, no_env, "--workers", "1", NULL), CZ_E_OK);
  CHECK_EQ_INT(c.workers, 1);
  CHECK_EQ_INT(load(&c, &err, no_env, "--workers", "007", NULL), CZ_E_OK); /* decimal */
  CHECK_EQ_INT(c.workers, 7);

  CHECK_EQ_INT(load(&c, &err, no_env, "--max-attempts", "0", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "--max-attempts: must be an integer in 1..100", "\"0\""));
  CHECK_EQ_INT(load(&c, &err, no_env, "--max-attempts", "101", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(load(&c, &err, no_env, "--max-attempts", "100", NULL), CZ_E_OK);
  CHECK_EQ_INT(c.max_attempts, 100);
}

static void test_max_upload_bytes_suffixes(void) {
  static const struct {
    const char *in;
    uint64_t want;
  } good[] = {
      {"1", 1},
      {"123", 123},
      {"1K", 1024},
      {"1k", 1024},
      {"3M", 3ULL << 20},
      {"64G", 64ULL << 30},
      {"2T", 2ULL << 40},
      {"16777215T", 16777215ULL << 40},
      {"18446744073709551615", UINT64_MAX},
  };
  static const char *bad[] = {"0", "0K", "1P", "1KB", "1 K", "K", "-1", "16777216T",
                              "18446744073709551616", "1.5G", ""};
  cz_config c;
  cz_error err;
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    CHECK_EQ_INT(load(&c, &err, no_env, "--max-upload-bytes", good[i].in, NULL), CZ_E_OK);
    if (c.max_upload_bytes != good[i].want)
      printf("# %s gave %llu\n", good[i].in, (unsigned long long)c.max_upload_bytes),
          cz_test_failures++;
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (load(&c, &err, no_env, "--max-upload-bytes", bad[i], NULL) != CZ_E_INVALID_ARGUMENT)
      printf("# --max-upload-bytes \"%s\" was accepted\n", bad[i]), cz_test_failures++;
    else
      CHECK(msg_has(&err, "--max-upload-bytes: must be a byte count", bad[i]));
  }
}

static void test_log_settings(void) {
  cz_config c;
  cz_error err;
  static const char *levels[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++) {
    CHECK_EQ_INT(load(&c, &err, no_env, "--log-level", levels[i], NULL), CZ_E_OK);
    CHECK_EQ_STR(c.log_level, levels[i]);
  }
  CHECK_EQ_INT(load(&c, &err, no_env, "--log-format", "json", NULL), CZ_E_OK);
  CHECK_EQ_STR(c.log_format, "json");
  CHECK_EQ_INT(load(&c, &err, no_env, "--log-format", "logfmt", NULL), CZ_E_OK);
  CHECK_EQ_STR(c.log_format, "logfmt");

  CHECK_EQ_INT(load(&c, &err, no_env, "--log-format", "xml", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "--log-format: must be logfmt or json", "\"xml\""));
  CHECK_EQ_INT(load(&c, &err, no_env, "--log-level", "INFO", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "--log-level: must be debug, info, warn or error", "\"INFO\""));
  CHECK_EQ_INT(load(&c, &err, no_env, "--log-level", "warning", NULL), CZ_E_INVALID_ARGUMENT);
}

static void test_data_dir_is_made_absolute(void) {
  cz_config c;
  cz_error err;
  char want[8200];
  CHECK_EQ_INT(load(&c, &err, no_env, "--data-dir", "rel/dir/", NULL), CZ_E_OK);
  cwd_join(want, sizeof want, "rel/dir");
  CHECK_EQ_STR(c.data_dir, want);
  CHECK_EQ_INT(load(&c, &err, no_env, "--data-dir", "/abs/dir//", NULL), CZ_E_OK);
  CHECK_EQ_STR(c.data_dir, "/abs/dir");
  CHECK_EQ_INT(load(&c, &err, no_env, "--data-dir", "/", NULL), CZ_E_OK);
  CHECK_EQ_STR(c.data_dir, "/");
  CHECK_EQ_INT(load(&c, &err, no_env, "--data-dir", "", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "--data-dir: must not be empty", NULL));
}

static void test_errors_name_their_source(void) {
  cz_config c;
  cz_error err;
  char *env[] = {"COMPRESSD_WORKERS=many", NULL};
  CHECK_EQ_INT(load(&c, &err, env, NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "COMPRESSD_WORKERS: must be an integer", "\"many\""));

  char *env_listen[] = {"COMPRESSD_LISTEN=nowhere", NULL};
  CHECK_EQ_INT(load(&c, &err, env_listen, NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "COMPRESSD_LISTEN:", "\"nowhere\""));

  /* A bad environment value is an error even when the command line overrides it: every
   * source given must be valid. */
  CHECK_EQ_INT(load(&c, &err, env, "--workers", "2", NULL), CZ_E_INVALID_ARGUMENT);
}

static void test_file_errors_name_file_and_line(void) {
  cz_config c;
  cz_error err;
  char want[400];
  const char *p = write_conf("unknown.conf", "# ok\nworkers = 2\n\nthreads = 4\n");
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", p, NULL), CZ_E_INVALID_ARGUMENT);
  snprintf(want, sizeof want, "%s:4: unknown key \"threads\"", p);
  CHECK(msg_has(&err, want, NULL));

  p = write_conf("badvalue.conf", "workers = 2\nlog_level = info\n#\n\nmax_attempts = lots\n");
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", p, NULL), CZ_E_INVALID_ARGUMENT);
  snprintf(want, sizeof want, "%s:5: max_attempts: must be an integer in 1..100", p);
  CHECK(msg_has(&err, want, "\"lots\""));

  p = write_conf("noequals.conf", "workers = 2\nworkers 3\n");
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", p, NULL), CZ_E_INVALID_ARGUMENT);
  snprintf(want, sizeof want, "%s:2: expected \"key = value\"", p);
  CHECK(msg_has(&err, want, NULL));

  /* Inline comments are not stripped: the value is refused, not silently misread. */
  p = write_conf("inline.conf", "workers = 4 # four\n");
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", p, NULL), CZ_E_INVALID_ARGUMENT);
  snprintf(want, sizeof want, "%s:1: workers", p);
  CHECK(msg_has(&err, want, NULL));

  /* A file cannot name another file; command-line spellings are not keys. */
  p = write_conf("nested.conf", "config = /etc/other.conf\n");
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", p, NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, ":1: unknown key \"config\"", NULL));
  p = write_conf("dash.conf", "data-dir = /x\n");
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", p, NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, ":1: unknown key \"data-dir\"", NULL));

  p = write_conf("emptyvalue.conf", "listen =\n");
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", p, NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, ":1: listen:", NULL));

  char missing[300];
  snprintf(missing, sizeof missing, "%s/does-not-exist.conf", tmp_dir);
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", missing, NULL), CZ_E_IO);
  CHECK(msg_has(&err, missing, "No such file"));
}

static void test_command_line_errors(void) {
  cz_config c;
  cz_error err;
  CHECK_EQ_INT(load(&c, &err, no_env, "--nope", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "unknown option \"--nope\"", NULL));
  CHECK_EQ_INT(load(&c, &err, no_env, "--nope=1", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "unknown option \"--nope\"", NULL));
  /* Abbreviations are not options. */
  CHECK_EQ_INT(load(&c, &err, no_env, "--work", "2", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(load(&c, &err, no_env, "--workers", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "--workers: missing value", NULL));
  CHECK_EQ_INT(load(&c, &err, no_env, "serve", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "unexpected argument \"serve\"", NULL));
  CHECK_EQ_INT(load(&c, &err, no_env, "-w", "2", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", "", NULL), CZ_E_INVALID_ARGUMENT);
  /* An invalid option is reported even after one that names a config file. */
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", "/nonexistent", "--bogus", NULL),
               CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "--bogus", NULL));
}

static void test_help(void) {
  cz_config c;
  cz_error err;
  CHECK_EQ_INT(load(&c, &err, no_env, "--help", NULL), CZ_E_OK);
  CHECK_EQ_INT(c.help, 1);
  /* Help is answered without reading a config file that may not exist. */
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", "/nonexistent", "-h", NULL), CZ_E_OK);
  CHECK_EQ_INT(c.help, 1);
}

static void test_failed_load_leaves_config_unchanged(void) {
  cz_config c, before;
  cz_error err;
  memset(&c, 0x5a, sizeof c);
  before = c;
  CHECK_EQ_INT(load(&c, &err, no_env, "--workers", "3", "--log-level", "loud", NULL),
               CZ_E_INVALID_ARGUMENT);
  CHECK(memcmp(&c, &before, sizeof c) == 0);
}

static void test_print_help_lists_everything(void) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  cz_config_print_help(f);
  fclose(f);
  static const char *want[] = {
      "--listen",         "COMPRESSD_LISTEN",           "127.0.0.1:8420",
      "--data-dir",       "COMPRESSD_DATA_DIR",         "data_dir",
      "--workers",        "COMPRESSD_WORKERS",          "--max-upload-bytes",
      "COMPRESSD_MAX_UPLOAD_BYTES", "max_upload_bytes", "64G",
      "--max-attempts",   "COMPRESSD_MAX_ATTEMPTS",     "max_attempts",
      "--log-format",     "COMPRESSD_LOG_FORMAT",       "logfmt",
      "--log-level",      "COMPRESSD_LOG_LEVEL",        "--config",
      "COMPRESSD_CONFIG", "--help",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (text == NULL || strstr(text, want[i]) == NULL)
      printf("# help lacks %s\n", want[i]), cz_test_failures++;
  free(text);
}

/* The shipped example file parses, and as shipped (all commented out) changes nothing. */
static void test_shipped_example_config(void) {
  char path[4200];
  snprintf(path, sizeof path, "%s/deploy/compressd.conf", cz_test_srcdir());
  cz_config c, d;
  cz_error err;
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", path, NULL), CZ_E_OK);
  CHECK_EQ_INT(load(&d, &err, no_env, NULL), CZ_E_OK);
  CHECK_EQ_STR(c.listen_addr, d.listen_addr);
  CHECK_EQ_INT(c.listen_port, d.listen_port);
  CHECK_EQ_STR(c.data_dir, d.data_dir);
  CHECK_EQ_INT(c.workers, d.workers);
  CHECK(c.max_upload_bytes == d.max_upload_bytes);
  CHECK_EQ_INT(c.max_attempts, d.max_attempts);
  CHECK_EQ_STR(c.log_format, d.log_format);
  CHECK_EQ_STR(c.log_level, d.log_level);

  /* Uncommenting every setting gives a valid file too. */
  FILE *in = fopen(path, "r");
  CHECK(in != NULL);
  if (in == NULL) return;
  char uncommented[300], line[1024];
  snprintf(uncommented, sizeof uncommented, "%s/uncommented.conf", tmp_dir);
  FILE *out = fopen(uncommented, "w");
  int settings = 0;
  while (fgets(line, sizeof line, in)) {
    /* "#key = value" lines are settings; "# text" lines are prose. */
    if (line[0] == '#' && line[1] != ' ' && line[1] != '\n' && strchr(line, '=') != NULL) {
      fputs(line + 1, out);
      settings++;
    }
  }
  fclose(in);
  fclose(out);
  CHECK_EQ_INT(settings, 23);
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", uncommented, NULL), CZ_E_OK);
  if (err.code != CZ_E_OK) printf("# %s\n", err.msg);
  CHECK_EQ_STR(c.listen_addr, "127.0.0.1");
  CHECK_EQ_INT(c.max_attempts, 3);
  /* the limits shown are the defaults */
  CHECK_EQ_INT(c.max_queued_jobs, d.max_queued_jobs);
  CHECK_EQ_INT(c.request_deadline, d.request_deadline);
  CHECK_EQ_INT(c.min_upload_rate, d.min_upload_rate);
  CHECK_EQ_INT(c.idle_timeout, d.idle_timeout);
  CHECK_EQ_INT(c.max_connections, d.max_connections);
  CHECK_EQ_INT(c.max_connections_per_ip, d.max_connections_per_ip);
  CHECK_EQ_INT(c.max_header_bytes, d.max_header_bytes);
  CHECK_EQ_STR(c.auth, d.auth);
  CHECK_EQ_INT(c.webhook_max_attempts, d.webhook_max_attempts);
  CHECK_EQ_INT(c.webhook_backoff_ms, d.webhook_backoff_ms);
  CHECK_EQ_INT(c.webhook_timeout, d.webhook_timeout);
  CHECK(c.retention_age == d.retention_age && c.disk_quota == d.disk_quota);
  CHECK_EQ_INT(c.retention_interval, d.retention_interval);
  CHECK_EQ_STR(c.tls_cert, "/etc/compressd/tls/cert.pem");  /* the example's pair */
  CHECK_EQ_STR(c.tls_key, "/etc/compressd/tls/key.pem");
  /* one without the other is refused; the default is neither */
  CHECK_EQ_INT(load(&c, &err, no_env, "--tls-cert", "/x.pem", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK(msg_has(&err, "tls_cert", "tls_key"));
  CHECK_EQ_INT(load(&c, &err, no_env, NULL), CZ_E_OK);
  CHECK_EQ_STR(c.tls_cert, "");
  CHECK_EQ_STR(c.tls_key, "");
  /* the webhook settings: defaults and ranges */
  CHECK_EQ_INT(d.webhook_max_attempts, 8);
  CHECK_EQ_INT(d.webhook_backoff_ms, 5000);
  CHECK_EQ_INT(d.webhook_timeout, 10);
  CHECK_EQ_INT(load(&c, &err, no_env, "--webhook-max-attempts", "0", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(load(&c, &err, no_env, "--webhook-max-attempts", "101", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(load(&c, &err, no_env, "--webhook-backoff-ms", "3600001", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(load(&c, &err, no_env, "--webhook-timeout", "301", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(load(&c, &err, no_env, "--webhook-max-attempts", "100", "--webhook-backoff-ms", "1",
                    "--webhook-timeout", "300", NULL), CZ_E_OK);
  CHECK_EQ_INT(c.webhook_max_attempts, 100);
  CHECK_EQ_INT(c.webhook_backoff_ms, 1);
  CHECK_EQ_INT(c.webhook_timeout, 300);
  /* retention: off by default; seconds without suffixes; a quota with them */
  CHECK(d.retention_age == 0 && d.disk_quota == 0);
  CHECK_EQ_INT(d.retention_interval, 60);
  CHECK_EQ_INT(load(&c, &err, no_env, "--retention-age", "1K", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(load(&c, &err, no_env, "--retention-age", "-1", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(load(&c, &err, no_env, "--retention-age", "999999999999", NULL),
               CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(load(&c, &err, no_env, "--retention-interval", "0", NULL), CZ_E_INVALID_ARGUMENT);
  CHECK_EQ_INT(load(&c, &err, no_env, "--retention-age", "2592000", "--disk-quota", "500G",
                    "--retention-interval", "5", NULL), CZ_E_OK);
  CHECK(c.retention_age == 2592000);
  CHECK(c.disk_quota == 500ULL << 30);
  CHECK_EQ_INT(c.retention_interval, 5);
}

static int rm_conf_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  return system(cmd);
}

/* The limits of the HTTP service: defaults, the three sources, ranges, size suffixes. */
static void test_service_limits(void) {
  cz_config c;
  cz_error err = {0};
  CHECK_EQ_INT(load(&c, &err, no_env, NULL), CZ_E_OK);
  CHECK_EQ_INT(c.max_queued_jobs, CZ_CONFIG_DEFAULT_MAX_QUEUED);
  CHECK_EQ_INT(c.request_deadline, CZ_CONFIG_DEFAULT_REQUEST_DEADLINE);
  CHECK_EQ_INT(c.min_upload_rate, CZ_CONFIG_DEFAULT_MIN_UPLOAD_RATE);
  CHECK_EQ_INT(c.idle_timeout, CZ_CONFIG_DEFAULT_IDLE_TIMEOUT);
  CHECK_EQ_INT(c.max_connections, CZ_CONFIG_DEFAULT_MAX_CONNECTIONS);
  CHECK_EQ_INT(c.max_connections_per_ip, CZ_CONFIG_DEFAULT_MAX_CONNECTIONS_PER_IP);
  CHECK_EQ_INT(c.max_header_bytes, CZ_CONFIG_DEFAULT_MAX_HEADER_BYTES);
  CHECK_EQ_INT(load(&c, &err, no_env, "--max-queued-jobs", "0", "--request-deadline", "5",
                    "--min-upload-rate", "1M", "--idle-timeout", "7", "--max-connections", "9",
                    "--max-connections-per-ip", "0", "--max-header-bytes", "16K", NULL),
               CZ_E_OK);
  CHECK_EQ_INT(c.max_queued_jobs, 0);
  CHECK_EQ_INT(c.request_deadline, 5);
  CHECK_EQ_INT(c.min_upload_rate, 1 << 20);
  CHECK_EQ_INT(c.idle_timeout, 7);
  CHECK_EQ_INT(c.max_connections, 9);
  CHECK_EQ_INT(c.max_connections_per_ip, 0);
  CHECK_EQ_INT(c.max_header_bytes, 16 << 10);
  char *env[] = {"COMPRESSD_MAX_QUEUED_JOBS=12", "COMPRESSD_MIN_UPLOAD_RATE=0", NULL};
  CHECK_EQ_INT(load(&c, &err, env, NULL), CZ_E_OK);
  CHECK_EQ_INT(c.max_queued_jobs, 12);
  CHECK_EQ_INT(c.min_upload_rate, 0);
  const char *path = write_conf("limits.conf", "request_deadline = 30\nmax_header_bytes = 64K\n");
  CHECK_EQ_INT(load(&c, &err, no_env, "--config", path, NULL), CZ_E_OK);
  CHECK_EQ_INT(c.request_deadline, 30);
  CHECK_EQ_INT(c.max_header_bytes, 64 << 10);
  static const char *const bad[][2] = {
      {"--max-queued-jobs", "-1"},   {"--max-queued-jobs", "1000001"},
      {"--request-deadline", "0"},   {"--request-deadline", "86401"},
      {"--idle-timeout", "0"},       {"--max-connections", "0"},
      {"--min-upload-rate", "1X"},   {"--max-header-bytes", "4K"},
      {"--max-header-bytes", "17M"}, {"--max-connections-per-ip", "x"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_EQ_INT(load(&c, &err, no_env, bad[i][0], bad[i][1], NULL), CZ_E_INVALID_ARGUMENT);
    CHECK(msg_has(&err, bad[i][0], bad[i][1]));
  }
}

int main(void) {
  snprintf(tmp_dir, sizeof tmp_dir, "/tmp/cz-test-config.XXXXXX");
  if (mkdtemp(tmp_dir) == NULL) {
    perror("mkdtemp");
    return 2;
  }
  static const cz_test_case cases[] = {
      CZ_TEST(test_defaults),
      CZ_TEST(test_every_option_on_command_line),
      CZ_TEST(test_every_option_in_environment),
      CZ_TEST(test_every_option_in_file),
      CZ_TEST(test_precedence),
      CZ_TEST(test_empty_environment_variable_is_unset),
      CZ_TEST(test_null_envp_reads_process_environment),
      CZ_TEST(test_listen_values),
      CZ_TEST(test_integers_are_strict),
      CZ_TEST(test_max_upload_bytes_suffixes),
      CZ_TEST(test_log_settings),
      CZ_TEST(test_data_dir_is_made_absolute),
      CZ_TEST(test_errors_name_their_source),
      CZ_TEST(test_file_errors_name_file_and_line),
      CZ_TEST(test_command_line_errors),
      CZ_TEST(test_help),
      CZ_TEST(test_failed_load_leaves_config_unchanged),
      CZ_TEST(test_print_help_lists_everything),
      CZ_TEST(test_shipped_example_config),
      CZ_TEST(test_service_limits),
  };
  int rc = cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
  rm_conf_dir();
  return rc;
}
