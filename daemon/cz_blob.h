/* cz_blob: the content-addressed blob store under DATA_DIR/blobs, for uploads and artifacts.
 *
 * A blob is named by the sha256 of its bytes: blobs/ab/abcdef... (two-level fan-out). Blobs
 * are immutable once published. Publishing is crash-safe: bytes go to a temporary file in
 * DATA_DIR/tmp, are fsynced, renamed into place, and the directory is fsynced; only then may
 * the caller record the blob in the database. A failed fsync is never retried (the data may be
 * lost); the temporary file is removed and the caller gets an error.
 *
 * Thread: a cz_blob_store may be shared by threads (it holds only paths); a cz_blob_writer
 * belongs to one thread at a time.
 */
#ifndef CZ_BLOB_H
#define CZ_BLOB_H

#include <stdbool.h>
#include <stdint.h>

#include "cz_err.h"
#include "cz_sha256.h"

typedef struct cz_blob_store cz_blob_store;

/* Create DATA_DIR/blobs and DATA_DIR/tmp if needed; remove leftover temporary files (they
 * belong to writes that a dead process never published). */
cz_err_code cz_blob_store_open(const char *data_dir, cz_blob_store **out, cz_error *err);
void cz_blob_store_close(cz_blob_store *bs);

/* Absolute path of the blob with this hex digest into buf; returns buf. */
char *cz_blob_path(const cz_blob_store *bs, const char *sha256_hex, char *buf, size_t len);
/* Free and total bytes of the file system that holds the blobs (statvfs; free as an
 * unprivileged process sees it). */
cz_err_code cz_blob_store_space(const cz_blob_store *bs, uint64_t *free_bytes,
                                uint64_t *total_bytes, cz_error *err);

/* A temporary file being filled. Either write through cz_blob_writer_write (hash computed on
 * the fly) or write to fd directly with pwrite (then the hash is computed at commit by
 * reading the file back). */
typedef struct {
  cz_blob_store *bs;
  int fd;
  char tmp_path[4096];
  cz_sha256 sha;
  uint64_t bytes;
  int streamed;   /* 1 while every byte came through cz_blob_writer_write in order */
} cz_blob_writer;

cz_err_code cz_blob_writer_open(cz_blob_store *bs, cz_blob_writer *w, cz_error *err);
/* Append; ENOSPC maps to CZ_E_NO_SPACE. */
cz_err_code cz_blob_writer_write(cz_blob_writer *w, const void *data, size_t len, cz_error *err);
/* Mark that the fd was written with pwrite; the digest will be computed by reading back. */
void cz_blob_writer_mark_random_access(cz_blob_writer *w);
/* fsync, rename to its content address (an existing identical blob is kept), fsync the
 * directory. Fills sha256_hex[65] and *bytes. The writer is closed either way. */
cz_err_code cz_blob_writer_commit(cz_blob_writer *w, char sha256_hex[65], uint64_t *bytes,
                                  cz_error *err);
/* Close and unlink the temporary file. Safe to call after commit (no-op). */
void cz_blob_writer_abort(cz_blob_writer *w);
/* At start, before anything else uses the store: remove every published blob that used()
 * says no row references (the remains of a process that died between publishing a blob and
 * committing its row). Files under blobs/ not named like blobs are left alone. *removed
 * counts the blobs removed; the first error from used() or the file system stops the sweep. */
cz_err_code cz_blob_sweep(cz_blob_store *bs,
                          cz_err_code (*used)(void *cls, const char *sha256_hex, bool *is_used,
                                              cz_error *err),
                          void *cls, int *removed, cz_error *err);
/* Bytes and count of the published blobs (what a disk quota measures; temporary files of
 * writes in progress are not counted). */
cz_err_code cz_blob_usage(cz_blob_store *bs, uint64_t *bytes, uint64_t *count, cz_error *err);
/* Size of one published blob; NOT_FOUND if absent. */
cz_err_code cz_blob_size(cz_blob_store *bs, const char *sha256_hex, uint64_t *bytes,
                         cz_error *err);
/* Remove a published blob (when the last row that referenced it is gone). */
cz_err_code cz_blob_remove(cz_blob_store *bs, const char *sha256_hex, cz_error *err);

#endif
