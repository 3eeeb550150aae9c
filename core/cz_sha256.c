/* cz_sha256: SHA-256 written from FIPS 180-4 (sections 4.1.2, 4.2.2, 5.1.1, 5.3.3, 6.2). */
#include "cz_sha256.h"

#include "cz_cpu.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* FIPS 180-4 4.2.2: the first 32 bits of the fractional parts of the cube roots of the first
 * 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

/* The six logical functions of FIPS 180-4 4.1.2. */
static inline uint32_t ch(uint32_t x, uint32_t y, uint32_t z) { return (x & y) ^ (~x & z); }
static inline uint32_t maj(uint32_t x, uint32_t y, uint32_t z) {
  return (x & y) ^ (x & z) ^ (y & z);
}
static inline uint32_t big_sigma0(uint32_t x) { return rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22); }
static inline uint32_t big_sigma1(uint32_t x) { return rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25); }
static inline uint32_t small_sigma0(uint32_t x) { return rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3); }
static inline uint32_t small_sigma1(uint32_t x) { return rotr(x, 17) ^ rotr(x, 19) ^ (x >> 10); }

static inline uint32_t load_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* One 512-bit block: message schedule, 64 rounds, add into the hash state (6.2.2). */
static void compress(uint32_t h[8], const uint8_t block[64]) {
  uint32_t w[64];
  for (int t = 0; t < 16; t++) w[t] = load_be32(block + 4 * t);
  for (int t = 16; t < 64; t++)
    w[t] = small_sigma1(w[t - 2]) + w[t - 7] + small_sigma0(w[t - 15]) + w[t - 16];

  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (int t = 0; t < 64; t++) {
    uint32_t t1 = hh + big_sigma1(e) + ch(e, f, g) + K[t] + w[t];
    uint32_t t2 = big_sigma0(a) + maj(a, b, c);
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += hh;
}

void cz_sha256_blocks_scalar(uint32_t h[8], const uint8_t *p, size_t nblocks) {
  for (size_t i = 0; i < nblocks; i++) compress(h, p + 64 * i);
}

/* ---- SHA extensions (x86 SHA-NI) ----
 * The same compression with sha256rnds2 (two rounds), sha256msg1/msg2 (the schedule's
 * sigma0 and sigma1 terms). The instructions keep the state as ABEF and CDGH halves, hence
 * the shuffles in and out; the message words are loaded big-endian by a byte shuffle. Group
 * g of 4 rounds adds K[4g..4g+3] to its 4 schedule words W[4g..], runs 2 + 2 rounds, and on
 * the way finishes W[4g+4..] (msg2, groups 3..14) and starts W[4g+12..] (msg1, groups 1..12). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("sha,sse4.1"))) static void blocks_shani(uint32_t h[8], const uint8_t *p,
                                                                size_t nblocks) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1); /* CDAB */
  __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B);  /* EFGH */
  __m128i s0 = _mm_alignr_epi8(tmp, s1, 8);                                       /* ABEF */
  s1 = _mm_blend_epi16(s1, tmp, 0xF0);                                            /* CDGH */
  for (size_t b = 0; b < nblocks; b++, p += 64) {
    const __m128i abef = s0, cdgh = s1;
    __m128i m[4];
    for (int k = 0; k < 4; k++)
      m[k] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * k)), bswap);
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
      __m128i msg = _mm_add_epi32(m[g & 3], _mm_loadu_si128((const __m128i *)&K[4 * g]));
      s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
      if (g >= 3 && g <= 14) {
        const int nx = (g + 1) & 3;
        m[nx] = _mm_add_epi32(m[nx], _mm_alignr_epi8(m[g & 3], m[(g - 1) & 3], 4));
        m[nx] = _mm_sha256msg2_epu32(m[nx], m[g & 3]);
      }
      msg = _mm_shuffle_epi32(msg, 0x0E);
      s0 = _mm_sha256rnds2_epu32(s0, s1, msg);
      if (g >= 1 && g <= 12) m[(g - 1) & 3] = _mm_sha256msg1_epu32(m[(g - 1) & 3], m[g & 3]);
    }
    s0 = _mm_add_epi32(s0, abef);
    s1 = _mm_add_epi32(s1, cdgh);
  }
  tmp = _mm_shuffle_epi32(s0, 0x1B);              /* FEBA */
  s1 = _mm_shuffle_epi32(s1, 0xB1);               /* DCHG */
  s0 = _mm_blend_epi16(tmp, s1, 0xF0);            /* DCBA */
  s1 = _mm_alignr_epi8(s1, tmp, 8);               /* HGFE */
  _mm_storeu_si128((__m128i *)&h[0], s0);
  _mm_storeu_si128((__m128i *)&h[4], s1);
}

bool cz_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t nblocks) {
  if (!cz_cpu_has_sha() || !__builtin_cpu_supports("sse4.1")) return false;
  blocks_shani(h, p, nblocks);
  return true;
}
#else
bool cz_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t nblocks) {
  (void)h, (void)p, (void)nblocks;
  return false;
}
#endif

/* nblocks whole blocks, with the SHA extensions when the CPU has them. */
static void blocks(uint32_t h[8], const uint8_t *p, size_t nblocks) {
  if (!cz_sha256_blocks_shani(h, p, nblocks)) cz_sha256_blocks_scalar(h, p, nblocks);
}

/* Initial hash value, FIPS 180-4 5.3.3 (square roots of the first 8 primes). */
void cz_sha256_init(cz_sha256 *c) {
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, h0, sizeof h0);
  c->total = 0;
  c->buf_len = 0;
}

/* Fill a partial block first, then hash whole blocks straight from the caller's buffer, and
 * keep the tail for next time. */
void cz_sha256_update(cz_sha256 *c, const void *data, size_t len) {
  const uint8_t *p = data;
  c->total += len;
  if (c->buf_len > 0) {
    size_t take = 64 - c->buf_len < len ? 64 - c->buf_len : len;
    memcpy(c->buf + c->buf_len, p, take);
    c->buf_len += take;
    p += take;
    len -= take;
    if (c->buf_len < 64) return;
    blocks(c->h, c->buf, 1);
    c->buf_len = 0;
  }
  blocks(c->h, p, len / 64);
  p += len / 64 * 64;
  len %= 64;
  if (len > 0) memcpy(c->buf, p, len);
  c->buf_len = len;
}

/* Padding (5.1.1): a 1 bit, zeros up to 56 mod 64 bytes, then the bit length big-endian. */
void cz_sha256_final(cz_sha256 *c, uint8_t out[32]) {
  uint64_t bits = c->total * 8;
  c->buf[c->buf_len++] = 0x80;
  if (c->buf_len > 56) {
    memset(c->buf + c->buf_len, 0, 64 - c->buf_len);
    compress(c->h, c->buf);
    c->buf_len = 0;
  }
  memset(c->buf + c->buf_len, 0, 56 - c->buf_len);
  store_be32(c->buf + 56, (uint32_t)(bits >> 32));
  store_be32(c->buf + 60, (uint32_t)bits);
  compress(c->h, c->buf);
  for (int i = 0; i < 8; i++) store_be32(out + 4 * i, c->h[i]);
  memset(c, 0, sizeof *c); /* a finished context is not reusable by accident */
}

void cz_sha256_hex(const uint8_t digest[32], char hex[65]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[digest[i] >> 4];
    hex[2 * i + 1] = digits[digest[i] & 15];
  }
  hex[64] = '\0';
}

/* pread from offset 0 so that the descriptor's position neither matters nor changes; the
 * buffer is on the heap because 1 MiB is too much for a worker thread's stack. */
/* A regular file is hashed through read-only mappings of HASH_WINDOW bytes, populated in one
 * call and unmapped after: read() copied every byte once more (10 % of the hash's CPU time
 * at SHA-NI speed). A window bounds the address space and the resident pages the hash holds.
 * Anything else (a pipe, a file that will not map) is read in bounded chunks. */
#define HASH_WINDOW ((size_t)16 << 20)

static int sha256_read(int fd, cz_sha256 *c) {
  enum { CHUNK = 1 << 20 };
  uint8_t *buf = malloc(CHUNK);
  if (buf == NULL) return -ENOMEM;
  off_t off = 0;
  for (;;) {
    ssize_t n = pread(fd, buf, CHUNK, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      free(buf);
      return -e;
    }
    if (n == 0) break;
    cz_sha256_update(c, buf, (size_t)n);
    off += n;
  }
  free(buf);
  return 0;
}

static int sha256_mapped(int fd, uint64_t size, cz_sha256 *c) {
  for (uint64_t off = 0; off < size;) {
    const size_t n = size - off < HASH_WINDOW ? (size_t)(size - off) : HASH_WINDOW;
    void *p = mmap(NULL, n, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)off);
    if (p == MAP_FAILED) return off == 0 ? 1 : -errno;  /* 1: not mappable, read it */
    cz_sha256_update(c, p, n);
    munmap(p, n);
    off += n;
  }
  return 0;
}

int cz_sha256_file(int fd, char hex[65]) {
  cz_sha256 c;
  cz_sha256_init(&c);
  struct stat st;
  int rc = 1;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
    rc = sha256_mapped(fd, (uint64_t)st.st_size, &c);
  if (rc == 1) {
    cz_sha256_init(&c);
    rc = sha256_read(fd, &c);
  }
  if (rc != 0) return rc;
  uint8_t digest[32];
  cz_sha256_final(&c, digest);
  cz_sha256_hex(digest, hex);
  return 0;
}

/* ---- HMAC (RFC 2104): H((K ^ opad) || H((K ^ ipad) || m)) ---- */

void cz_hmac_sha256_init(cz_hmac *h, const void *key, size_t key_len) {
  uint8_t k[64] = {0};
  if (key_len > sizeof k) {
    cz_sha256 c;
    cz_sha256_init(&c);
    cz_sha256_update(&c, key, key_len);
    cz_sha256_final(&c, k);  /* 32 bytes, the rest stays zero */
  } else if (key_len > 0) {
    memcpy(k, key, key_len);
  }
  uint8_t ipad[64];
  for (int i = 0; i < 64; i++) {
    ipad[i] = k[i] ^ 0x36;
    h->opad_key[i] = k[i] ^ 0x5c;
  }
  cz_sha256_init(&h->inner);
  cz_sha256_update(&h->inner, ipad, sizeof ipad);
  memset(k, 0, sizeof k);
  memset(ipad, 0, sizeof ipad);
}

void cz_hmac_sha256_update(cz_hmac *h, const void *data, size_t len) {
  cz_sha256_update(&h->inner, data, len);
}

void cz_hmac_sha256_final(cz_hmac *h, uint8_t out[32]) {
  uint8_t ih[32];
  cz_sha256_final(&h->inner, ih);
  cz_sha256 outer;
  cz_sha256_init(&outer);
  cz_sha256_update(&outer, h->opad_key, sizeof h->opad_key);
  cz_sha256_update(&outer, ih, sizeof ih);
  cz_sha256_final(&outer, out);
  memset(h, 0, sizeof *h);  /* the padded key does not outlive the MAC */
}

void cz_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                    uint8_t out[32]) {
  cz_hmac h;
  cz_hmac_sha256_init(&h, key, key_len);
  cz_hmac_sha256_update(&h, data, len);
  cz_hmac_sha256_final(&h, out);
}

int cz_mac_equal(const uint8_t *a, const uint8_t *b, size_t len) {
  uint8_t d = 0;
  for (size_t i = 0; i < len; i++) d |= (uint8_t)(a[i] ^ b[i]);
  return d == 0;
}
