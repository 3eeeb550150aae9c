/* test_fuzz_replay: runs every file of the fuzzers' seed corpus (tests/fuzz/corpus/HARNESS/)
 * and of the saved findings (tests/fuzz/regressions/HARNESS/) through the harness that uses
 * it, in the normal build (gcc, and ASan/UBSan under --enable-sanitizers): each must be
 * accepted or refused cleanly, with the oracles of fuzz_common.h. Whole-file inputs are also
 * opened from disk with cz_model_open (mmap and format detection), which must likewise
 * succeed or fail with a code and a message. One TAP line per harness and directory. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cz_test.h"
#include "fuzz_common.h"

static uint8_t *read_file(const char *path, size_t *n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0) close(fd);
    return NULL;
  }
  uint8_t *p = malloc((size_t)st.st_size + 1);
  size_t got = 0;
  while (p && got < (size_t)st.st_size) {
    ssize_t r = read(fd, p + got, (size_t)st.st_size - got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (p && got != (size_t)st.st_size) {
    free(p);
    return NULL;
  }
  *n = got;
  return p;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Replays dir (may not exist) through h; counts files into *n_files, returns the failures. */
static int replay_dir(const cz_fuzz_harness *h, const char *dir, int *n_files) {
  DIR *d = opendir(dir);
  *n_files = 0;
  if (d == NULL) return 0;
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      names = realloc(names, cap * sizeof *names);
    }
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof *names, cmp_str); /* a stable order, so that output is comparable */
  int failures = 0;
  for (size_t i = 0; i < n; i++) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    size_t len = 0;
    uint8_t *p = read_file(path, &len);
    (*n_files)++;
    if (p == NULL) {
      printf("# %s: cannot read\n", path);
      failures++;
      continue;
    }
    if (h->run(p, len) != 0) {
      printf("# %s: finding (see stderr)\n", path);
      failures++;
    }
    if (strcmp(h->name, "fuzz_st_header") != 0) {
      cz_format f = strcmp(h->name, "fuzz_gguf") == 0 ? CZ_FORMAT_GGUF : CZ_FORMAT_SAFETENSORS;
      for (int detect = 0; detect < 2; detect++) {
        cz_model *m = NULL;
        cz_error e = {0};
        cz_err_code rc = cz_model_open_as(path, detect ? 0 : f, &m, &e);
        if (rc == CZ_E_OK ? m == NULL || cz_fuzz_check_bounds(m, m->map, m->map_len) != 0
                          : m != NULL || cz_fuzz_check_error(rc, &e) != 0) {
          printf("# %s: cz_model_open_as(%s) misbehaves (%s: %s)\n", path,
                 detect ? "detect" : cz_format_name(f), cz_err_name(rc), e.msg);
          failures++;
        }
        cz_model_close(m);
      }
    }
    free(p);
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return failures;
}

int main(void) {
  const size_t nh = sizeof cz_fuzz_harnesses / sizeof cz_fuzz_harnesses[0];
  static const char *const kinds[] = {"corpus", "regressions"};
  printf("1..%zu\n", nh * 2);
  int failed = 0, t = 0;
  for (size_t k = 0; k < 2; k++) {
    for (size_t i = 0; i < nh; i++) {
      char dir[4096];
      snprintf(dir, sizeof dir, "%s/tests/fuzz/%s/%s", cz_test_srcdir(), kinds[k],
               cz_fuzz_harnesses[i].name);
      int n_files = 0;
      int f = replay_dir(&cz_fuzz_harnesses[i], dir, &n_files);
      /* the seed corpus must be there; a harness may have no saved findings */
      if (k == 0 && n_files == 0) {
        printf("# %s: no seed files\n", dir);
        f++;
      }
      printf("%s %d - %s/%s: %d file%s replayed%s\n", f ? "not ok" : "ok", ++t, kinds[k],
             cz_fuzz_harnesses[i].name, n_files, n_files == 1 ? "" : "s",
             f ? "" : ", each accepted or refused cleanly");
      fflush(stdout);
      if (f) failed++;
    }
  }
  return failed ? 1 : 0;
}
