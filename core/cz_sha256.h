/* cz_sha256: streaming SHA-256 (FIPS 180-4), used for content addresses and provenance.
 * Thread: a context belongs to one thread at a time; no global state. */
#ifndef CZ_SHA256_H
#define CZ_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t h[8];
  uint64_t total;      /* bytes hashed so far */
  uint8_t buf[64];
  size_t buf_len;
} cz_sha256;

void cz_sha256_init(cz_sha256 *c);
void cz_sha256_update(cz_sha256 *c, const void *data, size_t len);
void cz_sha256_final(cz_sha256 *c, uint8_t out[32]);
/* Lower-case hex of a digest into hex[65] (NUL-terminated). */
void cz_sha256_hex(const uint8_t digest[32], char hex[65]);
/* Hash a whole file by reading it in bounded chunks; returns 0 or -errno. */
int cz_sha256_file(int fd, char hex[65]);

#endif
