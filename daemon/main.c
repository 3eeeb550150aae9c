/* compressd: command-line entry point: `serve` runs the daemon, `compress` runs a recipe on
 * a file without the server. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cz_decompress.h"
#include "cz_imatrix.h"
#include "cz_model.h"
#include "cz_pipeline.h"
#include "cz_api_service.h"
#include "cz_blas.h"
#include "cz_serve.h"
#include "cz_token.h"
#include "cz_sha256.h"

extern void openblas_set_num_threads(int num_threads);

#define MAX_RECIPE_BYTES (1024 * 1024) /* a recipe file is a small JSON document */

static void usage(FILE *f) {
  fprintf(f,
          "usage: compressd serve [--listen ADDR:PORT] [--data-dir DIR] [--workers N] "
          "[--config FILE] ...\n"
          "       compressd compress --recipe RECIPE.json IN OUT [--report FILE] [--threads N]\n"
          "                          [--calibration IMATRIX] [--input-sha256 HEX]\n"
          "       compressd compress --dry-run --recipe RECIPE.json IN [OUT] [--calibration IMATRIX]\n"
          "       compressd token create|list|revoke ... (API tokens)\n"
          "       compressd decompress IN OUT.safetensors [--dtype f32|f16]\n"
          "       compressd version\n"
          "Run `compressd serve --help` for every daemon option.\n");
}

static int die(const char *what, const cz_error *e) {
  fprintf(stderr, "compressd compress: %s: %s (%s)\n", what, e->msg, cz_err_name(e->code));
  return 1;
}

typedef struct {
  const char *recipe, *in, *out, *report, *calibration;
  char input_sha256[65];  /* --input-sha256, lower-cased; "" when not given (then hashed) */
  int threads;
  bool dry_run;   /* print the plan and the exact output size; compute and write nothing */
} compress_args;

static int parse_compress_args(int argc, char **argv, compress_args *a) {
  a->threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (a->threads < 1) a->threads = 1;
  const char *pos[2];
  int npos = 0;
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i];
    if (!strcmp(arg, "--dry-run")) {
      a->dry_run = true;
    } else if ((!strcmp(arg, "--recipe") || !strcmp(arg, "--report") ||
                !strcmp(arg, "--threads") || !strcmp(arg, "--calibration") ||
                !strcmp(arg, "--input-sha256")) &&
               i + 1 < argc) {
      const char *v = argv[++i];
      if (!strcmp(arg, "--input-sha256")) {
        if (strlen(v) != 64) return -1;
        for (int k = 0; k < 64; k++) {
          if (!isxdigit((unsigned char)v[k])) return -1;
          a->input_sha256[k] = (char)tolower((unsigned char)v[k]);
        }
        a->input_sha256[64] = 0;
      } else if (!strcmp(arg, "--recipe")) a->recipe = v;
      else if (!strcmp(arg, "--report")) a->report = v;
      else if (!strcmp(arg, "--calibration")) a->calibration = v;
      else {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || n < 1 || n > 256) return -1;
        a->threads = (int)n;
      }
    } else if (arg[0] == '-' && arg[1] == '-') {
      return -1;
    } else if (npos < 2) {
      pos[npos++] = arg;
    } else {
      return -1;
    }
  }
  if (!a->recipe || npos < (a->dry_run ? 1 : 2)) return -1;
  a->in = pos[0];
  a->out = npos == 2 ? pos[1] : NULL;
  return 0;
}

static cz_format format_of_path(const char *p) {
  size_t n = strlen(p);
  if (n >= 5 && strcmp(p + n - 5, ".gguf") == 0) return CZ_FORMAT_GGUF;
  if (n >= 12 && strcmp(p + n - 12, ".safetensors") == 0) return CZ_FORMAT_SAFETENSORS;
  return 0;
}

static double seconds_since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The input's SHA-256 (output metadata, report), computed on a thread of its own while the
 * pipeline runs instead of before it: at 1.3 GB/s it was a second and more of serial wall
 * time on a 1.7 GB model. The thread maps the file in windows of its own (cz_sha256_file),
 * not through the pipeline's mapping (which drops its pages as the tensors are consumed). */
typedef struct {
  int fd;        /* the input, open for reading; -1 when closed */
  bool started;  /* a thread runs (else hash_join hashes on the caller's thread) */
  pthread_t th;
  int rc;        /* 0 or -errno from cz_sha256_file */
  char hex[65];
} input_hash;

static void *hash_thread(void *p) {
  input_hash *h = p;
  h->rc = cz_sha256_file(h->fd, h->hex);
  return NULL;
}

static int hash_start(input_hash *h, const char *path) {
  h->started = false;
  h->rc = 0;
  h->hex[0] = 0;
  if ((h->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return -errno;
  h->started = pthread_create(&h->th, NULL, hash_thread, h) == 0;
  return 0;
}

/* Wait for the digest; idempotent. Returns 0 or -errno. */
static int hash_join(input_hash *h) {
  if (h->fd < 0) return h->rc;
  if (h->started) pthread_join(h->th, NULL);
  else h->rc = cz_sha256_file(h->fd, h->hex);
  h->started = false;
  close(h->fd);
  h->fd = -1;
  return h->rc;
}

/* Write to OUT.tmp, fsync, rename: OUT is either the old file or the complete new one. The
 * input is hashed (hash, NULL on a dry run) while the run goes; its digest goes into the
 * output's header before the fsync. */
static int run_compress(const compress_args *a, cz_recipe *recipe, cz_model *m, input_hash *hash) {
  cz_error e = {0};
  cz_run *run;
  if (cz_run_plan(recipe, m, hash ? CZ_RUN_SHA256_PENDING : NULL, &run, &e)) return die("plan", &e);
  if (a->dry_run) {
    json_t *plan = cz_run_plan_json(run);
    json_object_set_new(plan, "recipe", cz_recipe_normalized(recipe));
    int rc = json_dumpf(plan, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER) == 0 ? 0 : 1;
    putchar('\n');
    fprintf(stderr, "compressd: dry run: %s -> %lld bytes of %s\n", a->in,
            (long long)cz_run_output_size(run), cz_format_name(cz_run_output_format(run)));
    json_decref(plan);
    cz_run_free(run);
    return rc;
  }
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", a->out);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int rc = 1;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (fd < 0) {
    cz_err_set(&e, CZ_E_IO, "%s: %s", tmp, strerror(errno));
    rc = die("output", &e);
  } else if (cz_run_begin(run, fd, &e) || cz_run_exec(run, a->threads, &e)) {
    rc = die("compress", &e);
  } else if ((rc = hash_join(hash)) != 0) {
    cz_err_set(&e, CZ_E_IO, "hashing %s: %s", a->in, strerror(-rc));
    rc = die("input", &e);
  } else if (cz_run_set_input_sha256(run, hash->hex, &e)) {
    rc = die("output", &e);
  } else if (fsync(fd) != 0 || rename(tmp, a->out) != 0) {
    cz_err_set(&e, CZ_E_IO, "%s: %s", a->out, strerror(errno));
    rc = die("output", &e);
  } else {
    rc = 0;
  }
  if (fd >= 0) close(fd);
  if (rc) {
    unlink(tmp);
    cz_run_free(run);
    return rc;
  }
  json_t *report = cz_run_report(run, seconds_since(&t0));
  char rpath[4200];
  snprintf(rpath, sizeof rpath, "%s", a->report ? a->report : "");
  if (!a->report) snprintf(rpath, sizeof rpath, "%s.report.json", a->out);
  if (json_dump_file(report, rpath, JSON_INDENT(1) | JSON_PRESERVE_ORDER) != 0) {
    fprintf(stderr, "compressd compress: cannot write the report %s\n", rpath);
    rc = 1;
  }
  json_t *tot = json_object_get(report, "totals");
  fprintf(stderr, "compressd: %s -> %s: %lld -> %lld bytes (%.2f bits per weight) in %.2f s\n",
          a->in, a->out, (long long)json_integer_value(json_object_get(tot, "bytes_in")),
          (long long)json_integer_value(json_object_get(tot, "bytes_out")),
          json_real_value(json_object_get(tot, "bpw")),
          json_real_value(json_object_get(tot, "seconds")));
  json_decref(report);
  cz_run_free(run);
  return rc;
}

static int compress_main(int argc, char **argv) {
  compress_args a = {0};
  if (parse_compress_args(argc, argv, &a) != 0) {
    usage(stderr);
    return 2;
  }
  openblas_set_num_threads(1);
  cz_error e = {0};
  json_error_t jerr;
  json_t *body = json_load_file(a.recipe, JSON_REJECT_DUPLICATES, &jerr);
  if (!body) {
    fprintf(stderr, "compressd compress: %s:%d: %s\n", a.recipe, jerr.line, jerr.text);
    return 1;
  }
  cz_recipe *recipe = NULL;
  cz_model *m = NULL;
  cz_imatrix *im = NULL;
  int rc = 1;
  if (cz_recipe_parse(body, NULL, &recipe, &e)) {
    rc = die(a.recipe, &e);
    goto out;
  }
  cz_format f = a.out ? format_of_path(a.out) : 0;
  if (cz_recipe_format(recipe) && f && f != cz_recipe_format(recipe)) {
    cz_err_set(&e, CZ_E_INVALID_ARGUMENT, "the recipe asks for %s but OUT ends in another extension",
               cz_format_name(cz_recipe_format(recipe)));
    rc = die(a.out, &e);
    goto out;
  }
  if (f) cz_recipe_set_default_format(recipe, f);
  if (a.calibration) {
    if (cz_imatrix_open(a.calibration, &im, &e)) {
      rc = die(a.calibration, &e);
      goto out;
    }
    cz_recipe_set_imatrix(recipe, im);
  }
  if (cz_model_open(a.in, &m, &e)) {
    rc = die(a.in, &e);
    goto out;
  }
  input_hash hash = {.fd = -1};
  /* A dry run reads no data; a digest the caller already has (a model registry's, or the
   * Hugging Face LFS object id, which is the file's SHA-256) spares the second core a pass
   * over the whole input: it is written to the output and the report as given. */
  if (a.input_sha256[0]) memcpy(hash.hex, a.input_sha256, sizeof hash.hex);
  int hrc = a.dry_run || a.input_sha256[0] ? 0 : hash_start(&hash, a.in);
  if (hrc) {
    cz_err_set(&e, CZ_E_IO, "%s", strerror(-hrc));
    rc = die(a.in, &e);
    goto out;
  }
  rc = run_compress(&a, recipe, m, a.dry_run ? NULL : &hash);
  hash_join(&hash); /* when the run failed before waiting for it */
out:
  cz_model_close(m);
  cz_recipe_free(recipe);
  cz_imatrix_free(im);
  json_decref(body);
  return rc;
}

/* decompress IN OUT [--dtype f32|f16]: any artifact back to dense float safetensors. */
static int decompress_main(int argc, char **argv) {
  const char *pos[2] = {NULL, NULL};
  int npos = 0;
  cz_type dtype = CZ_TYPE_F32;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
      const char *v = argv[++i];
      if (!strcmp(v, "f32") || !strcmp(v, "F32")) dtype = CZ_TYPE_F32;
      else if (!strcmp(v, "f16") || !strcmp(v, "F16")) dtype = CZ_TYPE_F16;
      else npos = 3;
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      npos = 3;
    } else if (npos < 2) {
      pos[npos++] = argv[i];
    } else {
      npos = 3;
    }
  }
  if (npos != 2) {
    usage(stderr);
    return 2;
  }
  cz_error e = {0};
  cz_model *m = NULL;
  if (cz_model_open(pos[0], &m, &e)) {
    fprintf(stderr, "compressd decompress: %s: %s (%s)\n", pos[0], e.msg, cz_err_name(e.code));
    return 1;
  }
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", pos[1]);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  json_t *summary = NULL;
  int rc = 1;
  if (fd < 0) {
    cz_err_set(&e, CZ_E_IO, "%s: %s", tmp, strerror(errno));
  } else if (!cz_decompress(m, dtype, fd, &summary, &e)) {
    if (fsync(fd) != 0 || rename(tmp, pos[1]) != 0) cz_err_set(&e, CZ_E_IO, "%s: %s", pos[1], strerror(errno));
    else rc = 0;
  }
  if (fd >= 0) close(fd);
  if (rc) {
    if (fd >= 0) unlink(tmp);
    fprintf(stderr, "compressd decompress: %s (%s)\n", e.msg, cz_err_name(e.code));
  } else {
    fprintf(stderr, "compressd: %s -> %s: %lld tensors (%lld rebuilt from the layout, %lld decoded, "
            "%lld copied), %lld bytes\n", pos[0], pos[1],
            (long long)json_integer_value(json_object_get(summary, "tensors")),
            (long long)json_integer_value(json_object_get(summary, "rebuilt_from_layout")),
            (long long)json_integer_value(json_object_get(summary, "decoded")),
            (long long)json_integer_value(json_object_get(summary, "copied")),
            (long long)json_integer_value(json_object_get(summary, "bytes")));
  }
  json_decref(summary);
  cz_model_close(m);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  /* the commands that run BLAS (and version, which names its kernels): first, as it may
   * re-execute the program */
  if (!strcmp(argv[1], "serve") || !strcmp(argv[1], "compress") || !strcmp(argv[1], "version"))
    cz_blas_pick_core(argv);
  if (!strcmp(argv[1], "serve")) return cz_serve_main(argc - 2, argv + 2);
  if (!strcmp(argv[1], "compress")) return compress_main(argc - 2, argv + 2);
  if (!strcmp(argv[1], "decompress")) return decompress_main(argc - 2, argv + 2);
  if (!strcmp(argv[1], "token")) return cz_token_main(argc - 2, argv + 2);
  if (!strcmp(argv[1], "routes")) {  /* hidden: the route table, for the OpenAPI test */
    cz_api_print_routes(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
    printf("compressd %s\n", CZ_VERSION);
    printf("openblas kernels: %s\n", cz_blas_core());
    return 0;
  }
  if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return 0;
  }
  usage(stderr);
  return 2;
}
