/* cz_token: `compressd token create|list|revoke`, the operator's side of API tokens.
 *
 *   compressd token create [--name NAME] [--read-only] [--data-dir DIR | --config FILE]
 *   compressd token list   [--data-dir DIR | --config FILE]
 *   compressd token revoke ID [--data-dir DIR | --config FILE]
 *
 * The data directory comes from the same sources as the daemon's (options, COMPRESSD_*,
 * config file); the daemon may be running (SQLite serializes). create prints the token once
 * on stdout; only its sha256 is stored (api/cz_api_auth.c).
 */
#include "cz_token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "cz_api_service.h"
#include "cz_config.h"
#include "cz_store.h"

#define TOKEN_NAME_MAX 100

static int usage(void) {
  fprintf(stderr, "usage: compressd token create [--name NAME] [--read-only] [--data-dir DIR]\n"
                  "       compressd token list [--data-dir DIR]\n"
                  "       compressd token revoke ID [--data-dir DIR]\n"
                  "(--config FILE and the COMPRESSD_* variables work as for serve)\n");
  return 2;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hex(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static int fail(const char *what, const cz_error *e) {
  fprintf(stderr, "compressd token: %s: %s\n", what, e->msg);
  return 1;
}

int cz_token_main(int argc, char **argv) {
  if (argc < 1) return usage();
  const char *action = argv[0], *name = "token", *id = NULL;
  bool read_only = false;
  char *rest[64];
  int nrest = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--name") && i + 1 < argc) name = argv[++i];
    else if (!strcmp(argv[i], "--read-only")) read_only = true;
    else if (argv[i][0] != '-' && !id && !strcmp(action, "revoke")) id = argv[i];
    else if (nrest < 63) rest[nrest++] = argv[i];
  }
  rest[nrest] = NULL;
  if (strcmp(action, "create") && strcmp(action, "list") && strcmp(action, "revoke"))
    return usage();
  if (!strcmp(action, "revoke") && !id) return usage();
  if (strlen(name) == 0 || strlen(name) > TOKEN_NAME_MAX) {
    fprintf(stderr, "compressd token: --name: 1 to %d bytes\n", TOKEN_NAME_MAX);
    return 2;
  }
  cz_config cfg;
  cz_error e = {0};
  if (cz_config_load(&cfg, nrest, rest, NULL, &e)) {
    fprintf(stderr, "compressd token: %s\n", e.msg);
    return 2;
  }
  if (mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "compressd token: cannot create %s: %s\n", cfg.data_dir, strerror(errno));
    return 1;
  }
  char db[4200];
  snprintf(db, sizeof db, "%s/compressd.db", cfg.data_dir);
  cz_store *s;
  if (cz_store_open(db, &s, &e)) return fail(db, &e);
  int rc = 0;
  if (!strcmp(action, "create")) {
    uint8_t b[8 + 16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
      fprintf(stderr, "compressd token: no randomness available\n");
      cz_store_close(s);
      return 1;
    }
    char idhex[17], secret[33], token[64], tid[CZ_TOKEN_ID_LEN + 1], h[65];
    hex(b, 8, idhex);
    hex(b + 8, 16, secret);
    snprintf(token, sizeof token, "czt_%s_%s", idhex, secret);
    cz_token_parse(token, tid);
    cz_token_hash(token, h);
    if (cz_store_token_insert(s, tid, name, read_only ? "read" : "write", h, wall_ms(), &e)) {
      rc = fail("create", &e);
    } else {
      printf("%s\n", token);
      fprintf(stderr, "compressd token: created %s (%s, %s); the token above is shown only "
                      "now: send it as Authorization: Bearer TOKEN\n",
              tid, name, read_only ? "read-only" : "read and write");
    }
  } else if (!strcmp(action, "list")) {
    json_t *items;
    if (cz_store_token_list(s, &items, &e)) {
      rc = fail("list", &e);
    } else {
      size_t i;
      json_t *t;
      printf("%-22s %-6s %-8s %s\n", "ID", "SCOPE", "STATE", "NAME");
      json_array_foreach(items, i, t) {
        printf("%-22s %-6s %-8s %s\n", json_string_value(json_object_get(t, "id")),
               json_string_value(json_object_get(t, "scope")),
               json_is_null(json_object_get(t, "revoked_at")) ? "valid" : "revoked",
               json_string_value(json_object_get(t, "name")));
      }
      json_decref(items);
    }
  } else {
    if (cz_store_token_revoke(s, id, wall_ms(), &e)) rc = fail(id, &e);
    else fprintf(stderr, "compressd token: revoked %s\n", id);
  }
  cz_store_close(s);
  return rc;
}
