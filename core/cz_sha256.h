/* cz_sha256: streaming SHA-256 (FIPS 180-4), used for content addresses and provenance.
 * Thread: a context belongs to one thread at a time; no global state. */
#ifndef CZ_SHA256_H
#define CZ_SHA256_H

#include <stdbool.h>
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
/* The compression function over nblocks 64-byte blocks, in its two implementations (update
 * takes the SHA-NI one when the CPU has the SHA extensions); exposed for tests and benches.
 * The _shani one returns false, touching nothing, without them. */
void cz_sha256_blocks_scalar(uint32_t h[8], const uint8_t *p, size_t nblocks);
bool cz_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t nblocks);
/* Hash a whole file from offset 0 to its end, whatever the descriptor's offset: a regular file
 * through bounded read-only mappings, anything else by reading; returns 0 or -errno. A regular
 * file must not shrink meanwhile (a mapping past its end faults). */
int cz_sha256_file(int fd, char hex[65]);

/* HMAC-SHA256 (RFC 2104 with SHA-256, FIPS 198-1): keys longer than the 64-byte block are
 * hashed first, as the RFC says. Streaming form for messages built in parts (a webhook's
 * "id.timestamp.body"); the one-shot form for the rest. */
typedef struct {
  cz_sha256 inner;
  uint8_t opad_key[64];  /* key XOR 0x5c, kept for the outer hash at the end */
} cz_hmac;

void cz_hmac_sha256_init(cz_hmac *h, const void *key, size_t key_len);
void cz_hmac_sha256_update(cz_hmac *h, const void *data, size_t len);
void cz_hmac_sha256_final(cz_hmac *h, uint8_t out[32]);
void cz_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                    uint8_t out[32]);
/* Constant-time comparison of two MACs (no early exit that would leak a matching prefix). */
int cz_mac_equal(const uint8_t *a, const uint8_t *b, size_t len);

#endif
