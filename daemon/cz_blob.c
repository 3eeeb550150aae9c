/* cz_blob: crash-safe publishing of content-addressed files under DATA_DIR/blobs. */
#define _GNU_SOURCE /* strerror_r returning char *, getrandom */
#include "cz_blob.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define PATH_LEN 4096        /* matches cz_blob_writer.tmp_path */
#define DIR_MODE 0750        /* blobs hold users' weights: no access for others */
#define TMP_MODE 0600        /* a temporary file is only ever opened by this process */
#define TMP_NAME_TRIES 16    /* O_EXCL collisions of 128-bit random names are not expected */
#define TMP_PREFIX "blob-"

struct cz_blob_store {
  char blobs_dir[PATH_LEN];
  char tmp_dir[PATH_LEN];
};

/* ---- errors ---- */

/* Fill err for a failed system call: ENOSPC/EDQUOT (also reported late, by fsync) become
 * CZ_E_NO_SPACE so that the API answers 507; anything else is an I/O error. The message names
 * the operation and the path. */
static cz_err_code sys_err(cz_error *err, int e, const char *op, const char *path) {
  char buf[128];
  const char *why = strerror_r(e, buf, sizeof buf);
  cz_err_code code = (e == ENOSPC || e == EDQUOT) ? CZ_E_NO_SPACE : CZ_E_IO;
  return cz_err_set(err, code, "blob store: %s %s: %s", op, path, why);
}

/* The last two components of path ("tmp/upload-...", "ab/abcd..."): writer errors reach API
 * clients (a 507 on upload), who have no business learning where the data directory is. */
static const char *client_path(const char *path) {
  const char *last = strrchr(path, '/');
  if (last == NULL || last == path) return path;
  const char *p = last;
  while (p > path && p[-1] != '/') p--;
  return p;
}

/* ---- paths ---- */

static int is_sha256_hex(const char *s) {
  if (s == NULL) return 0;
  for (int i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return s[64] == '\0';
}

/* Format into buf; -1 if it does not fit (never publish under a truncated path). */
static int path_fmt(char *buf, size_t len, const char *fmt, const char *a, const char *b) {
  int n = snprintf(buf, len, fmt, a, b);
  return n >= 0 && (size_t)n < len ? 0 : -1;
}

/* The hex is checked because it may come from a request: anything but 64 lower-case hex
 * digits gives "" (which opens nothing) rather than a path that could escape blobs/. */
char *cz_blob_path(const cz_blob_store *bs, const char *sha256_hex, char *buf, size_t len) {
  if (len == 0) return buf;
  if (!is_sha256_hex(sha256_hex) ||
      snprintf(buf, len, "%s/%.2s/%s", bs->blobs_dir, sha256_hex, sha256_hex) >= (int)len)
    buf[0] = '\0';
  return buf;
}

/* mkdir that accepts an existing directory; *created tells whether it was made now. */
static cz_err_code ensure_dir(const char *path, int *created, cz_error *err) {
  if (created) *created = 0;
  if (mkdir(path, DIR_MODE) == 0) {
    if (created) *created = 1;
    return CZ_E_OK;
  }
  if (errno != EEXIST) return sys_err(err, errno, "mkdir", path);
  struct stat st;
  if (stat(path, &st) != 0) return sys_err(err, errno, "stat", path);
  if (!S_ISDIR(st.st_mode)) return sys_err(err, ENOTDIR, "mkdir", path);
  return CZ_E_OK;
}

/* fsync a directory so that entries created or renamed in it survive a crash. */
static cz_err_code fsync_dir(const char *path, cz_error *err) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return sys_err(err, errno, "open directory", path);
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  return rc == 0 ? CZ_E_OK : sys_err(err, e, "fsync directory", path);
}

/* ---- the store ---- */

/* Temporary files are only ever written by a live writer of this process, and one process
 * owns DATA_DIR, so at open every regular file in tmp/ is the remains of a dead writer. */
static cz_err_code clear_tmp(const char *tmp_dir, cz_error *err) {
  DIR *d = opendir(tmp_dir);
  if (d == NULL) return sys_err(err, errno, "opendir", tmp_dir);
  cz_err_code rc = CZ_E_OK;
  struct dirent *de;
  while (rc == CZ_E_OK && (errno = 0, de = readdir(d)) != NULL) {
    struct stat st;
    if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) rc = sys_err(err, errno, "stat leftover in", tmp_dir);
      continue;
    }
    if (!S_ISREG(st.st_mode)) continue; /* ".", "..", anything not ours */
    if (unlinkat(dirfd(d), de->d_name, 0) != 0 && errno != ENOENT)
      rc = sys_err(err, errno, "unlink leftover in", tmp_dir);
  }
  if (rc == CZ_E_OK && de == NULL && errno != 0) rc = sys_err(err, errno, "readdir", tmp_dir);
  closedir(d);
  return rc;
}

cz_err_code cz_blob_store_open(const char *data_dir, cz_blob_store **out, cz_error *err) {
  *out = NULL;
  if (data_dir == NULL || data_dir[0] == '\0')
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "blob store: empty data directory");
  cz_blob_store *bs = calloc(1, sizeof *bs);
  if (bs == NULL) return cz_err_set(err, CZ_E_NO_MEMORY, "blob store: out of memory");
  cz_err_code rc = CZ_E_OK;
  if (path_fmt(bs->blobs_dir, sizeof bs->blobs_dir, "%s/%s", data_dir, "blobs") != 0 ||
      path_fmt(bs->tmp_dir, sizeof bs->tmp_dir, "%s/%s", data_dir, "tmp") != 0)
    rc = cz_err_set(err, CZ_E_INVALID_ARGUMENT, "blob store: data directory path too long");
  if (rc == CZ_E_OK) rc = ensure_dir(data_dir, NULL, err);
  if (rc == CZ_E_OK) rc = ensure_dir(bs->blobs_dir, NULL, err);
  if (rc == CZ_E_OK) rc = ensure_dir(bs->tmp_dir, NULL, err);
  if (rc == CZ_E_OK) rc = clear_tmp(bs->tmp_dir, err);
  if (rc != CZ_E_OK) {
    free(bs);
    return rc;
  }
  *out = bs;
  return CZ_E_OK;
}

void cz_blob_store_close(cz_blob_store *bs) { free(bs); }

/* ---- writers ---- */

/* 128 random bits as hex. getrandom() cannot fail for 16 bytes once the pool is ready; if it
 * does anyway, time, pid and address bits still make a collision unlikely, and O_EXCL plus
 * the retry loop keep a collision harmless. */
static void random_name(char out[33]) {
  unsigned char r[16];
  if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long x = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 30) ^
                           ((unsigned long long)getpid() << 16) ^ (unsigned long long)(size_t)out;
    for (int i = 0; i < 16; i++) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      r[i] = (unsigned char)(x >> 56);
    }
  }
  for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", r[i]);
}

static void writer_reset(cz_blob_writer *w) {
  w->fd = -1;
  w->tmp_path[0] = '\0';
  w->bytes = 0;
  w->streamed = 1;
  cz_sha256_init(&w->sha);
}

cz_err_code cz_blob_writer_open(cz_blob_store *bs, cz_blob_writer *w, cz_error *err) {
  w->bs = bs;
  writer_reset(w);
  for (int i = 0; i < TMP_NAME_TRIES; i++) {
    char name[33];
    random_name(name);
    if (path_fmt(w->tmp_path, sizeof w->tmp_path, "%s/" TMP_PREFIX "%s.tmp", bs->tmp_dir,
                 name) != 0) {
      w->tmp_path[0] = '\0';
      return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "blob store: temporary path too long");
    }
    /* O_RDWR: a random-access writer's digest is computed by reading the file back. */
    w->fd = open(w->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, TMP_MODE);
    if (w->fd >= 0) return CZ_E_OK;
    if (errno != EEXIST) break;
  }
  cz_err_code rc = sys_err(err, errno, "create temporary file", client_path(w->tmp_path));
  w->tmp_path[0] = '\0';
  return rc;
}

cz_err_code cz_blob_writer_write(cz_blob_writer *w, const void *data, size_t len,
                                 cz_error *err) {
  if (w->fd < 0) return cz_err_set(err, CZ_E_INTERNAL, "blob store: write to a closed writer");
  const unsigned char *p = data;
  while (len > 0) {
    ssize_t n = write(w->fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_err(err, errno, "write", client_path(w->tmp_path));
    }
    /* Hash exactly what reached the file, so a short write followed by an error leaves a
     * consistent (if useless) state. */
    cz_sha256_update(&w->sha, p, (size_t)n);
    w->bytes += (uint64_t)n;
    p += n;
    len -= (size_t)n;
  }
  return CZ_E_OK;
}

void cz_blob_writer_mark_random_access(cz_blob_writer *w) { w->streamed = 0; }

void cz_blob_writer_abort(cz_blob_writer *w) {
  if (w->fd >= 0) close(w->fd);
  if (w->tmp_path[0] != '\0') unlink(w->tmp_path);
  w->fd = -1;
  w->tmp_path[0] = '\0';
}

/* Failure during commit: the writer is closed and the temporary file removed either way. */
static cz_err_code commit_fail(cz_blob_writer *w, cz_err_code rc) {
  cz_blob_writer_abort(w);
  return rc;
}

/* The digest and size of what the temporary file holds. A streamed writer already has the
 * digest; its size is still checked so that a pwrite the caller forgot to declare with
 * cz_blob_writer_mark_random_access is caught instead of publishing under a wrong name. */
static cz_err_code writer_digest(cz_blob_writer *w, char hex[65], uint64_t *bytes,
                                 cz_error *err) {
  struct stat st;
  if (fstat(w->fd, &st) != 0) return sys_err(err, errno, "stat", client_path(w->tmp_path));
  if (w->streamed) {
    if ((uint64_t)st.st_size != w->bytes)
      return cz_err_set(err, CZ_E_INTERNAL,
                        "blob store: %s holds %lld bytes but %llu were streamed (pwrite "
                        "without cz_blob_writer_mark_random_access?)",
                        w->tmp_path, (long long)st.st_size, (unsigned long long)w->bytes);
    uint8_t digest[32];
    cz_sha256_final(&w->sha, digest);
    cz_sha256_hex(digest, hex);
  } else {
    int rc = cz_sha256_file(w->fd, hex); /* reads the whole file whatever the offset */
    if (rc == -ENOMEM) return cz_err_set(err, CZ_E_NO_MEMORY, "blob store: out of memory");
    if (rc != 0) return sys_err(err, -rc, "read back", client_path(w->tmp_path));
  }
  *bytes = (uint64_t)st.st_size;
  return CZ_E_OK;
}

cz_err_code cz_blob_writer_commit(cz_blob_writer *w, char sha256_hex[65], uint64_t *bytes,
                                  cz_error *err) {
  if (w->fd < 0) return cz_err_set(err, CZ_E_INTERNAL, "blob store: commit of a closed writer");
  /* Never retried: after a failed fsync the kernel may have dropped the dirty pages and a
   * second fsync would report success for data that is gone. */
  if (fsync(w->fd) != 0)
    return commit_fail(w, sys_err(err, errno, "fsync", client_path(w->tmp_path)));

  char hex[65];
  uint64_t size = 0;
  cz_err_code rc = writer_digest(w, hex, &size, err);
  if (rc != CZ_E_OK) return commit_fail(w, rc);

  const cz_blob_store *bs = w->bs;
  char fan_dir[PATH_LEN], final_path[PATH_LEN];
  char fan[3] = {hex[0], hex[1], '\0'};
  if (path_fmt(fan_dir, sizeof fan_dir, "%s/%s", bs->blobs_dir, fan) != 0 ||
      path_fmt(final_path, sizeof final_path, "%s/%s", fan_dir, hex) != 0)
    return commit_fail(w, cz_err_set(err, CZ_E_INVALID_ARGUMENT, "blob store: path too long"));

  int created;
  rc = ensure_dir(fan_dir, &created, err);
  if (rc == CZ_E_OK && created) rc = fsync_dir(bs->blobs_dir, err);
  if (rc != CZ_E_OK) return commit_fail(w, rc);

  /* Same name means same content: keep the published blob (readers may hold it open) and
   * drop ours. A regular file of the wrong size there is damage; the rename replaces it. */
  struct stat st;
  if (stat(final_path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size) {
    cz_blob_writer_abort(w);
  } else {
    if (rename(w->tmp_path, final_path) != 0)
      return commit_fail(w, sys_err(err, errno, "rename into", client_path(final_path)));
    close(w->fd);
    w->fd = -1;
    w->tmp_path[0] = '\0';
  }
  /* Also after a dedup: the identical blob may have been renamed by another thread that has
   * not fsynced the directory yet. If this fails the blob is in place but maybe not durable:
   * the caller must not record it; an unreferenced blob is only wasted space. */
  rc = fsync_dir(fan_dir, err);
  if (rc != CZ_E_OK) return rc;
  memcpy(sha256_hex, hex, 65);
  *bytes = size;
  return CZ_E_OK;
}

/* Sweep one fan-out directory blobs/xy/. */
static cz_err_code sweep_fan(const char *dir, const char *fan,
                             cz_err_code (*used)(void *, const char *, bool *, cz_error *),
                             void *cls, int *removed, cz_error *err) {
  DIR *d = opendir(dir);
  if (d == NULL) return sys_err(err, errno, "opendir", dir);
  cz_err_code rc = CZ_E_OK;
  struct dirent *de;
  while (rc == CZ_E_OK && (errno = 0, de = readdir(d)) != NULL) {
    /* only names this module publishes: 64 hex digits starting with the directory's two */
    if (!is_sha256_hex(de->d_name) || strncmp(de->d_name, fan, 2) != 0) continue;
    bool in_use = true;
    if ((rc = used(cls, de->d_name, &in_use, err)) != CZ_E_OK || in_use) continue;
    if (unlinkat(dirfd(d), de->d_name, 0) == 0)
      (*removed)++;
    else if (errno != ENOENT)
      rc = sys_err(err, errno, "unlink unreferenced blob in", dir);
  }
  if (rc == CZ_E_OK && de == NULL && errno != 0) rc = sys_err(err, errno, "readdir", dir);
  closedir(d);
  return rc;
}

cz_err_code cz_blob_sweep(cz_blob_store *bs,
                          cz_err_code (*used)(void *cls, const char *sha256_hex, bool *is_used,
                                              cz_error *err),
                          void *cls, int *removed, cz_error *err) {
  *removed = 0;
  DIR *d = opendir(bs->blobs_dir);
  if (d == NULL) return sys_err(err, errno, "opendir", bs->blobs_dir);
  cz_err_code rc = CZ_E_OK;
  struct dirent *de;
  while (rc == CZ_E_OK && (errno = 0, de = readdir(d)) != NULL) {
    const char *n = de->d_name;
    char fan_dir[PATH_LEN];
    if (strlen(n) != 2 || !isxdigit((unsigned char)n[0]) || !isxdigit((unsigned char)n[1]))
      continue;
    if (path_fmt(fan_dir, sizeof fan_dir, "%s/%s", bs->blobs_dir, n) != 0) continue;
    struct stat st;
    if (stat(fan_dir, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    rc = sweep_fan(fan_dir, n, used, cls, removed, err);
  }
  if (rc == CZ_E_OK && de == NULL && errno != 0) rc = sys_err(err, errno, "readdir", bs->blobs_dir);
  closedir(d);
  return rc;
}

cz_err_code cz_blob_remove(cz_blob_store *bs, const char *sha256_hex, cz_error *err) {
  if (!is_sha256_hex(sha256_hex))
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "blob store: not a sha256 hex digest");
  char path[PATH_LEN];
  cz_blob_path(bs, sha256_hex, path, sizeof path);
  if (path[0] == '\0')
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "blob store: path too long");
  /* No directory fsync: a removal lost in a crash leaves an unreferenced blob, which is
   * only wasted space, never a wrong answer. */
  if (unlink(path) != 0) {
    if (errno == ENOENT)
      return cz_err_set(err, CZ_E_NOT_FOUND, "blob store: no blob %s", sha256_hex);
    return sys_err(err, errno, "unlink", path);
  }
  return CZ_E_OK;
}

cz_err_code cz_blob_store_space(const cz_blob_store *bs, uint64_t *free_bytes,
                                uint64_t *total_bytes, cz_error *err) {
  struct statvfs v;
  if (statvfs(bs->blobs_dir, &v) != 0)
    return cz_err_set(err, CZ_E_IO, "statvfs %s: %s", bs->blobs_dir, strerror(errno));
  *free_bytes = (uint64_t)v.f_bavail * v.f_frsize;
  *total_bytes = (uint64_t)v.f_blocks * v.f_frsize;
  return CZ_E_OK;
}

/* One fan-out directory's blobs into the totals. */
static cz_err_code usage_fan(const char *dir, const char *fan, uint64_t *bytes, uint64_t *count,
                             cz_error *err) {
  DIR *d = opendir(dir);
  if (d == NULL) return sys_err(err, errno, "opendir", dir);
  struct dirent *de;
  while ((errno = 0, de = readdir(d)) != NULL) {
    struct stat st;
    if (!is_sha256_hex(de->d_name) || strncmp(de->d_name, fan, 2) != 0) continue;
    if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
      continue;  /* removed meanwhile, or not ours */
    *bytes += (uint64_t)st.st_size;
    (*count)++;
  }
  cz_err_code rc = errno != 0 ? sys_err(err, errno, "readdir", dir) : CZ_E_OK;
  closedir(d);
  return rc;
}

cz_err_code cz_blob_usage(cz_blob_store *bs, uint64_t *bytes, uint64_t *count, cz_error *err) {
  *bytes = *count = 0;
  DIR *d = opendir(bs->blobs_dir);
  if (d == NULL) return sys_err(err, errno, "opendir", bs->blobs_dir);
  cz_err_code rc = CZ_E_OK;
  struct dirent *de;
  while (rc == CZ_E_OK && (errno = 0, de = readdir(d)) != NULL) {
    const char *n = de->d_name;
    char fan_dir[PATH_LEN];
    if (strlen(n) != 2 || !isxdigit((unsigned char)n[0]) || !isxdigit((unsigned char)n[1]))
      continue;
    if (path_fmt(fan_dir, sizeof fan_dir, "%s/%s", bs->blobs_dir, n) != 0) continue;
    rc = usage_fan(fan_dir, n, bytes, count, err);
  }
  if (rc == CZ_E_OK && de == NULL && errno != 0) rc = sys_err(err, errno, "readdir", bs->blobs_dir);
  closedir(d);
  return rc;
}

cz_err_code cz_blob_size(cz_blob_store *bs, const char *sha256_hex, uint64_t *bytes,
                         cz_error *err) {
  if (!is_sha256_hex(sha256_hex))
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "blob store: not a sha256 hex digest");
  char path[PATH_LEN];
  struct stat st;
  cz_blob_path(bs, sha256_hex, path, sizeof path);
  if (path[0] == '\0' || stat(path, &st) != 0)
    return cz_err_set(err, CZ_E_NOT_FOUND, "blob %s not found", sha256_hex);
  *bytes = (uint64_t)st.st_size;
  return CZ_E_OK;
}
