/* test_blob: the content-addressed blob store, checked against sha256sum and the file system. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH/FTW_PHYS, mount */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cz_blob.h"
#include "cz_test.h"

#define SHA256_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- helpers ---- */

static char *make_data_dir(void) {
  char tmpl[] = "/tmp/cz-test-blob.XXXXXX";
  char *d = mkdtemp(tmpl);
  if (d == NULL) {
    perror("mkdtemp");
    exit(2);
  }
  return strdup(d);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  return remove(path) == 0 ? 0 : -1;
}

static void rm_rf(char *dir) {
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(dir);
}

/* snprintf for paths: a test path that does not fit is a broken test, not a result. */
static void pathf(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= len) {
    fprintf(stderr, "test path too long\n");
    exit(2);
  }
}

/* Entries in a directory, "." and ".." excluded; -1 if it cannot be read. */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

static int tmp_entries(const char *data_dir) {
  char p[4096];
  pathf(p, sizeof p, "%s/tmp", data_dir);
  return count_entries(p);
}

/* Digest by the system's sha256sum: an implementation independent of ours. */
static void sha256sum(const char *path, char hex[65]) {
  char cmd[4200];
  pathf(cmd, sizeof cmd, "sha256sum -- '%s'", path);
  hex[0] = '\0';
  FILE *p = popen(cmd, "r");
  if (p == NULL) return;
  if (fscanf(p, "%64s", hex) != 1) hex[0] = '\0';
  pclose(p);
}

/* Deterministic bytes that are not all alike (xorshift64). */
static unsigned char *pattern(size_t n, uint64_t seed) {
  unsigned char *b = malloc(n ? n : 1);
  uint64_t x = seed | 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b[i] = (unsigned char)x;
  }
  return b;
}

/* 1 if the file at path holds exactly buf[0..n). */
static int file_equals(const char *path, const unsigned char *buf, size_t n) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return 0;
  unsigned char *got = malloc(n + 1);
  size_t r = fread(got, 1, n + 1, f);
  fclose(f);
  int eq = r == n && memcmp(got, buf, n) == 0;
  free(got);
  return eq;
}

static void write_plain_file(const char *path, const unsigned char *buf, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(buf, 1, n, f) != n) {
    perror(path);
    exit(2);
  }
  fclose(f);
}

/* Stream buf through a new writer in uneven chunks and commit it. */
static cz_err_code put_streamed(cz_blob_store *bs, const unsigned char *buf, size_t n,
                                char hex[65], uint64_t *bytes, cz_error *err) {
  cz_blob_writer w;
  cz_err_code rc = cz_blob_writer_open(bs, &w, err);
  if (rc != CZ_E_OK) return rc;
  const size_t chunk = 7777; /* not a power of two: exercises the hash's partial blocks */
  for (size_t off = 0; off < n && rc == CZ_E_OK; off += chunk)
    rc = cz_blob_writer_write(&w, buf + off, n - off < chunk ? n - off : chunk, err);
  if (rc != CZ_E_OK) {
    cz_blob_writer_abort(&w);
    return rc;
  }
  return cz_blob_writer_commit(&w, hex, bytes, err);
}

/* ---- tests ---- */

static void test_streamed_commit_matches_sha256sum(void) {
  char *dd = make_data_dir();
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  size_t n = 3 * 1024 * 1024 + 12345;
  unsigned char *buf = pattern(n, 42);
  char hex[65] = "";
  uint64_t bytes = 0;
  CHECK_EQ_INT(put_streamed(bs, buf, n, hex, &bytes, &err), CZ_E_OK);
  CHECK_EQ_INT(bytes, n);

  char want_path[4200], got_path[4096], ref_hex[65];
  pathf(want_path, sizeof want_path, "%s/blobs/%.2s/%s", dd, hex, hex);
  CHECK_EQ_STR(cz_blob_path(bs, hex, got_path, sizeof got_path), want_path);
  sha256sum(want_path, ref_hex);
  CHECK_EQ_STR(hex, ref_hex);
  CHECK(file_equals(want_path, buf, n));
  struct stat st;
  CHECK(stat(want_path, &st) == 0 && (st.st_mode & 0777) == 0600);
  CHECK_EQ_INT(tmp_entries(dd), 0);

  free(buf);
  cz_blob_store_close(bs);
  rm_rf(dd);
}

static void test_random_access_commit(void) {
  char *dd = make_data_dir();
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  size_t n = 1024 * 1024 + 333;
  unsigned char *buf = pattern(n, 7);

  cz_blob_writer w;
  CHECK_EQ_INT(cz_blob_writer_open(bs, &w, &err), CZ_E_OK);
  cz_blob_writer_mark_random_access(&w);
  /* Back to front, as parallel tensor writers may finish in any order. */
  const size_t chunk = 65536;
  size_t nchunks = (n + chunk - 1) / chunk;
  for (size_t i = nchunks; i-- > 0;) {
    size_t off = i * chunk, len = n - off < chunk ? n - off : chunk;
    CHECK(pwrite(w.fd, buf + off, len, (off_t)off) == (ssize_t)len);
  }
  char hex[65] = "";
  uint64_t bytes = 0;
  CHECK_EQ_INT(cz_blob_writer_commit(&w, hex, &bytes, &err), CZ_E_OK);
  CHECK_EQ_INT(bytes, n);

  char ref[4200], ref_hex[65], path[4096];
  pathf(ref, sizeof ref, "%s/reference.bin", dd);
  write_plain_file(ref, buf, n);
  sha256sum(ref, ref_hex);
  CHECK_EQ_STR(hex, ref_hex);
  CHECK(file_equals(cz_blob_path(bs, hex, path, sizeof path), buf, n));
  CHECK_EQ_INT(tmp_entries(dd), 0);

  free(buf);
  cz_blob_store_close(bs);
  rm_rf(dd);
}

static void test_empty_blob(void) {
  char *dd = make_data_dir();
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  cz_blob_writer w;
  char hex[65] = "";
  uint64_t bytes = 99;
  CHECK_EQ_INT(cz_blob_writer_open(bs, &w, &err), CZ_E_OK);
  CHECK_EQ_INT(cz_blob_writer_commit(&w, hex, &bytes, &err), CZ_E_OK);
  CHECK_EQ_STR(hex, SHA256_EMPTY);
  CHECK_EQ_INT(bytes, 0);
  cz_blob_store_close(bs);
  rm_rf(dd);
}

static void test_identical_content_dedups(void) {
  char *dd = make_data_dir();
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  size_t n = 100000;
  unsigned char *buf = pattern(n, 3);
  char hex1[65] = "", hex2[65] = "", path[4096], fan[4200];
  uint64_t b1 = 0, b2 = 0;
  struct stat st1, st2;
  CHECK_EQ_INT(put_streamed(bs, buf, n, hex1, &b1, &err), CZ_E_OK);
  CHECK(stat(cz_blob_path(bs, hex1, path, sizeof path), &st1) == 0);
  CHECK_EQ_INT(put_streamed(bs, buf, n, hex2, &b2, &err), CZ_E_OK);
  CHECK(stat(path, &st2) == 0);

  CHECK_EQ_STR(hex1, hex2);
  CHECK_EQ_INT(b2, n);
  CHECK_EQ_INT(st1.st_ino, st2.st_ino); /* the published blob was kept, not replaced */
  pathf(fan, sizeof fan, "%s/blobs/%.2s", dd, hex1);
  CHECK_EQ_INT(count_entries(fan), 1);
  CHECK_EQ_INT(tmp_entries(dd), 0);

  free(buf);
  cz_blob_store_close(bs);
  rm_rf(dd);
}

static void test_abort_leaves_nothing(void) {
  char *dd = make_data_dir();
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  cz_blob_writer w;
  CHECK_EQ_INT(cz_blob_writer_open(bs, &w, &err), CZ_E_OK);
  CHECK_EQ_INT(cz_blob_writer_write(&w, "abc", 3, &err), CZ_E_OK);
  CHECK_EQ_INT(tmp_entries(dd), 1);
  cz_blob_writer_abort(&w);
  CHECK_EQ_INT(tmp_entries(dd), 0);
  cz_blob_writer_abort(&w); /* twice is harmless */
  CHECK_EQ_INT(w.fd, -1);

  /* After a commit, abort must not touch the published blob. */
  char hex[65], path[4096];
  uint64_t bytes;
  CHECK_EQ_INT(cz_blob_writer_open(bs, &w, &err), CZ_E_OK);
  CHECK_EQ_INT(cz_blob_writer_write(&w, "abc", 3, &err), CZ_E_OK);
  CHECK_EQ_INT(cz_blob_writer_commit(&w, hex, &bytes, &err), CZ_E_OK);
  cz_blob_writer_abort(&w);
  CHECK(access(cz_blob_path(bs, hex, path, sizeof path), F_OK) == 0);
  CHECK_EQ_INT(tmp_entries(dd), 0);
  /* Using a closed writer is reported, not crashed on. */
  CHECK_EQ_INT(cz_blob_writer_write(&w, "x", 1, &err), CZ_E_INTERNAL);
  CHECK_EQ_INT(cz_blob_writer_commit(&w, hex, &bytes, &err), CZ_E_INTERNAL);

  cz_blob_store_close(bs);
  rm_rf(dd);
}

static void test_open_removes_leftovers(void) {
  char *dd = make_data_dir();
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  cz_blob_store_close(bs);

  char p[4200];
  pathf(p, sizeof p, "%s/tmp/blob-0123456789abcdef0123456789abcdef.tmp", dd);
  write_plain_file(p, (const unsigned char *)"dead", 4);
  pathf(p, sizeof p, "%s/tmp/some-other-leftover", dd);
  write_plain_file(p, (const unsigned char *)"dead", 4);
  CHECK_EQ_INT(tmp_entries(dd), 2);

  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  CHECK_EQ_INT(tmp_entries(dd), 0);
  cz_blob_store_close(bs);
  rm_rf(dd);
}

/* cz_blob_sweep's used() for the test: a blob is referenced when its hex is in the list. */
static cz_err_code used_if_listed(void *cls, const char *hex, bool *used, cz_error *err) {
  *used = false;
  for (const char *const *k = cls; *k; k++)
    if (strcmp(*k, hex) == 0) *used = true;
  return CZ_E_OK;
}

static cz_err_code used_fails(void *cls, const char *hex, bool *used, cz_error *err) {
  return cz_err_set(err, CZ_E_IO, "no database");
}

static void test_sweep_removes_unreferenced(void) {
  char *dd = make_data_dir();
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  char keep[65], drop[65], p[4200], other[4200];
  uint64_t bytes;
  CHECK_EQ_INT(put_streamed(bs, (const unsigned char *)"keep", 4, keep, &bytes, &err), CZ_E_OK);
  CHECK_EQ_INT(put_streamed(bs, (const unsigned char *)"drop", 4, drop, &bytes, &err), CZ_E_OK);
  /* not named like a blob, or in the wrong fan-out directory: not ours, left alone */
  pathf(other, sizeof other, "%s/blobs/%.2s/notes.txt", dd, keep);
  write_plain_file(other, (const unsigned char *)"x", 1);
  char misplaced[4200];
  pathf(misplaced, sizeof misplaced, "%s/blobs/%.2s/%s", dd, keep, drop);
  if (strncmp(keep, drop, 2) != 0) write_plain_file(misplaced, (const unsigned char *)"y", 1);

  const char *listed[] = {keep, NULL};
  int removed = -1;
  CHECK_EQ_INT(cz_blob_sweep(bs, used_fails, NULL, &removed, &err), CZ_E_IO);
  CHECK(access(cz_blob_path(bs, drop, p, sizeof p), F_OK) == 0); /* an error removes nothing */
  CHECK_EQ_INT(cz_blob_sweep(bs, used_if_listed, listed, &removed, &err), CZ_E_OK);
  CHECK_EQ_INT(removed, 1);
  CHECK(access(cz_blob_path(bs, keep, p, sizeof p), F_OK) == 0);
  CHECK(access(cz_blob_path(bs, drop, p, sizeof p), F_OK) != 0);
  CHECK(access(other, F_OK) == 0);
  if (strncmp(keep, drop, 2) != 0) CHECK(access(misplaced, F_OK) == 0);
  CHECK_EQ_INT(cz_blob_sweep(bs, used_if_listed, listed, &removed, &err), CZ_E_OK);
  CHECK_EQ_INT(removed, 0);
  cz_blob_store_close(bs);
  rm_rf(dd);
}

static void test_tmp_file_is_private(void) {
  char *dd = make_data_dir();
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  cz_blob_writer w1, w2;
  CHECK_EQ_INT(cz_blob_writer_open(bs, &w1, &err), CZ_E_OK);
  CHECK_EQ_INT(cz_blob_writer_open(bs, &w2, &err), CZ_E_OK);
  struct stat st;
  CHECK(fstat(w1.fd, &st) == 0 && (st.st_mode & 0777) == 0600);
  CHECK(fcntl(w1.fd, F_GETFD) & FD_CLOEXEC);
  char prefix[4200];
  pathf(prefix, sizeof prefix, "%s/tmp/", dd);
  CHECK(strncmp(w1.tmp_path, prefix, strlen(prefix)) == 0);
  CHECK(strcmp(w1.tmp_path, w2.tmp_path) != 0); /* random names */
  cz_blob_writer_abort(&w1);
  cz_blob_writer_abort(&w2);
  cz_blob_store_close(bs);
  rm_rf(dd);
}

static void test_path_and_remove(void) {
  char *dd = make_data_dir();
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  char hex[65], path[4096];
  uint64_t bytes;
  CHECK_EQ_INT(put_streamed(bs, (const unsigned char *)"hello", 5, hex, &bytes, &err),
               CZ_E_OK);
  CHECK_EQ_STR(hex, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  CHECK(access(cz_blob_path(bs, hex, path, sizeof path), F_OK) == 0);

  CHECK_EQ_INT(cz_blob_remove(bs, hex, &err), CZ_E_OK);
  CHECK(access(path, F_OK) != 0);
  CHECK_EQ_INT(cz_blob_remove(bs, hex, &err), CZ_E_NOT_FOUND);

  /* A digest from outside is never turned into a path that leaves blobs/. */
  CHECK_EQ_STR(cz_blob_path(bs, "../../etc/passwd", path, sizeof path), "");
  CHECK_EQ_STR(cz_blob_path(bs, "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
                            path, sizeof path), "");
  CHECK_EQ_INT(cz_blob_remove(bs, "../../etc/passwd", &err), CZ_E_INVALID_ARGUMENT);
  cz_blob_store_close(bs);
  rm_rf(dd);
}

static void test_undeclared_pwrite_is_caught(void) {
  char *dd = make_data_dir();
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  cz_blob_writer w;
  char hex[65];
  uint64_t bytes;
  CHECK_EQ_INT(cz_blob_writer_open(bs, &w, &err), CZ_E_OK);
  CHECK_EQ_INT(cz_blob_writer_write(&w, "0123456789", 10, &err), CZ_E_OK);
  CHECK(pwrite(w.fd, "x", 1, 100) == 1);
  CHECK_EQ_INT(cz_blob_writer_commit(&w, hex, &bytes, &err), CZ_E_INTERNAL);
  CHECK(strstr(err.msg, "mark_random_access") != NULL);
  CHECK_EQ_INT(tmp_entries(dd), 0);
  cz_blob_store_close(bs);
  rm_rf(dd);
}

typedef struct {
  cz_blob_store *bs;
  const unsigned char *buf;
  size_t n;
  char hex[65];
  cz_err_code rc;
} put_job;

static void *put_thread(void *arg) {
  put_job *j = arg;
  cz_error err;
  uint64_t bytes;
  j->rc = put_streamed(j->bs, j->buf, j->n, j->hex, &bytes, &err);
  return NULL;
}

static void test_concurrent_identical_commits(void) {
  enum { THREADS = 4 };
  char *dd = make_data_dir();
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  size_t n = 200000;
  unsigned char *buf = pattern(n, 11);
  put_job jobs[THREADS];
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) {
    jobs[i] = (put_job){.bs = bs, .buf = buf, .n = n, .rc = CZ_E_INTERNAL};
    pthread_create(&th[i], NULL, put_thread, &jobs[i]);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < THREADS; i++) {
    CHECK_EQ_INT(jobs[i].rc, CZ_E_OK);
    CHECK_EQ_STR(jobs[i].hex, jobs[0].hex);
  }
  char path[4096], fan[4200];
  CHECK(file_equals(cz_blob_path(bs, jobs[0].hex, path, sizeof path), buf, n));
  pathf(fan, sizeof fan, "%s/blobs/%.2s", dd, jobs[0].hex);
  CHECK_EQ_INT(count_entries(fan), 1);
  CHECK_EQ_INT(tmp_entries(dd), 0);
  free(buf);
  cz_blob_store_close(bs);
  rm_rf(dd);
}

/* ENOSPC needs a small file system: a tmpfs, which only root can mount (and not in every
 * container). The TAP line then says SKIP with the reason; the name is rewritten for that. */
static char enospc_name[256] = "test_enospc_maps_to_no_space";

static void skip_enospc(const char *why) {
  snprintf(enospc_name, sizeof enospc_name, "test_enospc_maps_to_no_space # SKIP %s", why);
}

/* Fill the data on a 64 KiB tmpfs: the write fails, the writer can be aborted cleanly. */
static void enospc_on_write(const char *dd) {
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  if (bs == NULL) return;
  cz_blob_writer w;
  CHECK_EQ_INT(cz_blob_writer_open(bs, &w, &err), CZ_E_OK);
  unsigned char *buf = pattern(1 << 20, 5);
  cz_err_code rc = CZ_E_OK;
  for (int i = 0; i < 16 && rc == CZ_E_OK; i++) rc = cz_blob_writer_write(&w, buf, 1 << 20, &err);
  CHECK_EQ_INT(rc, CZ_E_NO_SPACE);
  CHECK(strstr(err.msg, "write") != NULL);
  cz_blob_writer_abort(&w);
  CHECK_EQ_INT(tmp_entries(dd), 0);
  free(buf);
  cz_blob_store_close(bs);
}

/* Exhaust the inodes after the temporary file exists: the commit's mkdir of the fan-out
 * directory fails with ENOSPC, and the temporary file is gone afterwards. */
static void enospc_on_commit(const char *dd) {
  cz_blob_store *bs;
  cz_error err = {0};
  CHECK_EQ_INT(cz_blob_store_open(dd, &bs, &err), CZ_E_OK);
  if (bs == NULL) return;
  cz_blob_writer w;
  CHECK_EQ_INT(cz_blob_writer_open(bs, &w, &err), CZ_E_OK);
  CHECK_EQ_INT(cz_blob_writer_write(&w, "abc", 3, &err), CZ_E_OK);
  char p[4200];
  for (int i = 0; i < 100000; i++) {
    pathf(p, sizeof p, "%s/filler-%d", dd, i);
    int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0) break;
    close(fd);
  }
  char hex[65];
  uint64_t bytes;
  CHECK_EQ_INT(cz_blob_writer_commit(&w, hex, &bytes, &err), CZ_E_NO_SPACE);
  CHECK(strstr(err.msg, "mkdir") != NULL);
  CHECK_EQ_INT(tmp_entries(dd), 0);
  cz_blob_store_close(bs);
}

static void test_enospc_maps_to_no_space(void) {
  if (geteuid() != 0) {
    skip_enospc("needs root to mount a small tmpfs");
    return;
  }
  char *mnt = make_data_dir();
  if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k,nr_inodes=64,mode=0700") != 0) {
    char why[128];
    snprintf(why, sizeof why, "cannot mount a tmpfs: %s", strerror(errno));
    skip_enospc(why);
    rmdir(mnt);
    free(mnt);
    return;
  }
  char dd[4200];
  pathf(dd, sizeof dd, "%s/write", mnt);
  enospc_on_write(dd);
  pathf(dd, sizeof dd, "%s/commit", mnt);
  enospc_on_commit(dd);
  umount2(mnt, MNT_DETACH);
  rmdir(mnt);
  free(mnt);
}

int main(void) {
  static cz_test_case cases[] = {
      CZ_TEST(test_streamed_commit_matches_sha256sum),
      CZ_TEST(test_random_access_commit),
      CZ_TEST(test_empty_blob),
      CZ_TEST(test_identical_content_dedups),
      CZ_TEST(test_abort_leaves_nothing),
      CZ_TEST(test_open_removes_leftovers),
      CZ_TEST(test_tmp_file_is_private),
      CZ_TEST(test_sweep_removes_unreferenced),
      CZ_TEST(test_path_and_remove),
      CZ_TEST(test_undeclared_pwrite_is_caught),
      CZ_TEST(test_concurrent_identical_commits),
      {enospc_name, test_enospc_maps_to_no_space},
  };
  return cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
}
