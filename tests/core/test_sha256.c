/* test_sha256: cz_sha256 against NIST's example vectors and the system's sha256sum (through
 * the SHA-NI compression on CPUs with the SHA extensions), and the SHA-NI compression against
 * the scalar one; HMAC-SHA256 against RFC 4231; cz_base64 against RFC 4648. */
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "cz_base64.h"
#include "cz_sha256.h"
#include "cz_test.h"

static void hash_hex(const void *data, size_t len, char hex[65]) {
  cz_sha256 c;
  uint8_t d[32];
  cz_sha256_init(&c);
  cz_sha256_update(&c, data, len);
  cz_sha256_final(&c, d);
  cz_sha256_hex(d, hex);
}

/* The FIPS 180-4 example messages (NIST CSRC "SHA256.pdf", "SHA2_Additional.pdf"). */
static void test_nist_vectors(void) {
  static const struct {
    const char *msg, *digest;
  } v[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
       "lmnopqrsmnopqrstnopqrstu",
       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    char hex[65];
    hash_hex(v[i].msg, strlen(v[i].msg), hex);
    CHECK_EQ_STR(hex, v[i].digest);
  }
}

static void test_million_a(void) {
  size_t n = 1000000;
  char *a = malloc(n);
  CHECK(a != NULL);
  if (!a) return;
  memset(a, 'a', n);
  char hex[65];
  hash_hex(a, n, hex);
  CHECK_EQ_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(a);
}

/* Deterministic bytes so that a failure reproduces. */
static void fill_pattern(uint8_t *p, size_t n, uint32_t seed) {
  uint32_t x = seed;
  for (size_t i = 0; i < n; i++) {
    x = x * 1664525u + 1013904223u;
    p[i] = (uint8_t)(x >> 24);
  }
}

/* The SHA-NI compression leaves the scalar one's state after 0 to 40 blocks of varied data,
 * from varied states, at odd addresses. */
static void test_shani_vs_scalar(void) {
  static uint8_t data[64 * 40 + 1];
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < sizeof data; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    data[i] = (uint8_t)(i % 97 == 0 ? 0xFF : i % 89 == 0 ? 0 : x >> 32);
  }
  uint32_t probe[8] = {0};
  if (!cz_sha256_blocks_shani(probe, data, 1)) {
    printf("# no SHA extensions on this CPU: the scalar compression only\n");
    return;
  }
  int bad = 0;
  for (size_t n = 0; n <= 40; n++) {
    uint32_t a[8], b[8];
    for (int i = 0; i < 8; i++) a[i] = b[i] = (uint32_t)(0x6a09e667u * (n + 1) + 0x1f83d9abu * (uint32_t)i);
    cz_sha256_blocks_scalar(a, data + 1, n);
    CHECK(cz_sha256_blocks_shani(b, data + 1, n));
    if (memcmp(a, b, sizeof a) != 0 && bad++ < 3) printf("# %zu blocks: states differ\n", n);
  }
  CHECK_EQ_INT(bad, 0);
}

/* Every split of a message, in chunk sizes that straddle the 64-byte block and the 56-byte
 * padding boundary, gives the one-shot digest; so do the lengths around the padding edge. */
static void test_streaming_chunks(void) {
  enum { N = 10007 };
  static uint8_t msg[N];
  fill_pattern(msg, N, 1);
  char want[65];
  hash_hex(msg, N, want);
  static const size_t steps[] = {1, 3, 7, 55, 56, 57, 63, 64, 65, 127, 128, 129, 1000, 4099};
  for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
    cz_sha256 c;
    uint8_t d[32];
    char hex[65];
    cz_sha256_init(&c);
    for (size_t off = 0; off < N; off += steps[s])
      cz_sha256_update(&c, msg + off, N - off < steps[s] ? N - off : steps[s]);
    cz_sha256_final(&c, d);
    cz_sha256_hex(d, hex);
    CHECK_EQ_STR(hex, want);
  }
  /* Also a varying chunk size, with empty updates mixed in. */
  cz_sha256 c;
  uint8_t d[32];
  char hex[65];
  cz_sha256_init(&c);
  size_t off = 0;
  for (size_t k = 0; off < N; k++) {
    size_t take = (k * 37) % 150;
    if (take > N - off) take = N - off;
    cz_sha256_update(&c, msg + off, take);
    off += take;
  }
  cz_sha256_final(&c, d);
  cz_sha256_hex(d, hex);
  CHECK_EQ_STR(hex, want);
}

/* Run `sha256sum` on path and copy its 64 hex digits into hex; false when it is unavailable. */
static int system_sha256(const char *path, char hex[65]) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
  FILE *p = popen(cmd, "r");
  if (p == NULL) return 0;
  int ok = fscanf(p, "%64s", hex) == 1 && strlen(hex) == 64;
  return pclose(p) == 0 && ok;
}

/* Files of sizes around the 1 MiB read chunk, hashed with the descriptor's position moved
 * away from 0 (cz_sha256_file must not depend on it), against sha256sum. */
static void test_file_vs_sha256sum(void) {
  static const size_t sizes[] = {0, 1, 55, 56, 64, 1048575, 1048576, 1048577, 3 * 1048576 + 13};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char path[] = "/tmp/cz_test_sha256_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    uint8_t *buf = malloc(sizes[i] + 1);
    fill_pattern(buf, sizes[i], (uint32_t)i + 7);
    CHECK_EQ_INT(write(fd, buf, sizes[i]), (long long)sizes[i]);
    free(buf);
    lseek(fd, (off_t)(sizes[i] / 2), SEEK_SET);

    char ours[65], theirs[65];
    CHECK_EQ_INT(cz_sha256_file(fd, ours), 0);
    CHECK_EQ_INT(lseek(fd, 0, SEEK_CUR), (long long)(sizes[i] / 2));
    if (system_sha256(path, theirs))
      CHECK_EQ_STR(ours, theirs);
    else
      printf("# sha256sum unavailable, size %zu not cross-checked\n", sizes[i]);
    close(fd);
    unlink(path);
  }
}

static void test_file_bad_fd(void) {
  char hex[65];
  CHECK(cz_sha256_file(-1, hex) < 0);
}

/* RFC 4231 section 4: HMAC-SHA-256 test cases 1-7 (case 5 is truncated to 128 bits there).
 * Keys and data given as (byte, count) runs or text, exactly as the RFC lists them. */
static void test_hmac_rfc4231(void) {
  uint8_t k_0b[20], k_aa20[20], k_0c[20], k_aa131[131], d_dd[50], d_cd[50], k_seq[25];
  memset(k_0b, 0x0b, sizeof k_0b);
  memset(k_aa20, 0xaa, sizeof k_aa20);
  memset(k_0c, 0x0c, sizeof k_0c);
  memset(k_aa131, 0xaa, sizeof k_aa131);
  memset(d_dd, 0xdd, sizeof d_dd);
  memset(d_cd, 0xcd, sizeof d_cd);
  for (int i = 0; i < 25; i++) k_seq[i] = (uint8_t)(i + 1);
  static const char t6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
  static const char t7[] =
      "This is a test using a larger than block-size key and a larger than block-size data. "
      "The key needs to be hashed before being used by the HMAC algorithm.";
  const struct {
    const void *key;
    size_t klen;
    const void *data;
    size_t dlen;
    const char *mac;
  } v[] = {
      {k_0b, 20, "Hi There", 8,
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {"Jefe", 4, "what do ya want for nothing?", 28,
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {k_aa20, 20, d_dd, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {k_seq, 25, d_cd, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {k_0c, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b"},
      {k_aa131, 131, t6, sizeof t6 - 1,
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {k_aa131, 131, t7, sizeof t7 - 1,
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    uint8_t mac[32];
    char hex[65];
    cz_hmac_sha256(v[i].key, v[i].klen, v[i].data, v[i].dlen, mac);
    cz_sha256_hex(mac, hex);
    hex[strlen(v[i].mac)] = '\0'; /* case 5 compares the leftmost 128 bits only */
    CHECK_EQ_STR(hex, v[i].mac);
    /* the streaming form, one byte at a time, gives the same MAC */
    cz_hmac h;
    uint8_t mac2[32];
    cz_hmac_sha256_init(&h, v[i].key, v[i].klen);
    for (size_t j = 0; j < v[i].dlen; j++) cz_hmac_sha256_update(&h, (const uint8_t *)v[i].data + j, 1);
    cz_hmac_sha256_final(&h, mac2);
    CHECK(cz_mac_equal(mac, mac2, 32));
  }
  uint8_t a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 5};
  CHECK(cz_mac_equal(a, a, 4));
  CHECK(!cz_mac_equal(a, b, 4));
}

/* RFC 4648 section 10 vectors, both alphabets, and the decoder's refusals. */
static void test_base64(void) {
  static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *const std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  for (int i = 0; i < 7; i++) {
    char out[CZ_BASE64_ENCODED_LEN(6)];
    uint8_t dec[8];
    size_t n;
    cz_base64_encode(in[i], strlen(in[i]), false, out);
    CHECK_EQ_STR(out, std[i]);
    cz_base64_encode(in[i], strlen(in[i]), true, out);
    CHECK_EQ_STR(out, url[i]);
    CHECK(cz_base64_decode(std[i], strlen(std[i]), false, dec, sizeof dec, &n));
    CHECK(n == strlen(in[i]) && memcmp(dec, in[i], n) == 0);
    CHECK(cz_base64_decode(url[i], strlen(url[i]), true, dec, sizeof dec, &n));
    CHECK(n == strlen(in[i]) && memcmp(dec, in[i], n) == 0);
  }
  static const uint8_t hi[3] = {0xfb, 0xff, 0xbf};
  char out[8];
  cz_base64_encode(hi, 3, false, out);
  CHECK_EQ_STR(out, "+/+/");
  cz_base64_encode(hi, 3, true, out);
  CHECK_EQ_STR(out, "-_-_");
  uint8_t dec[8];
  size_t n;
  static const char *const bad_std[] = {"Zg=", "Zg", "Zh==", "Z===", "Zm9v\n", "Zm=v", "-_-_"};
  for (size_t i = 0; i < sizeof bad_std / sizeof bad_std[0]; i++)
    CHECK(!cz_base64_decode(bad_std[i], strlen(bad_std[i]), false, dec, sizeof dec, &n));
  static const char *const bad_url[] = {"Zg==", "Z", "Zh", "+/+/", "Zm9v!"};
  for (size_t i = 0; i < sizeof bad_url / sizeof bad_url[0]; i++)
    CHECK(!cz_base64_decode(bad_url[i], strlen(bad_url[i]), true, dec, sizeof dec, &n));
  CHECK(!cz_base64_decode("Zm9vYmFy", 8, false, dec, 5, &n));  /* does not fit */
}

/* Properties over many inputs: encode then decode gives the bytes back (both alphabets), and
 * any string the decoder accepts is the encoder's own spelling of what it decoded to (one
 * token, one spelling: an altered page token cannot decode to the same bytes). */
static void test_base64_properties(void) {
  uint32_t x = 12345;
  static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=";
  int accepted = 0;
  for (int iter = 0; iter < 4000; iter++) {
    uint8_t in[100], out[100];
    char enc[CZ_BASE64_ENCODED_LEN(100)], re[CZ_BASE64_ENCODED_LEN(100)];
    size_t len = (size_t)(iter % 100), n = 0;
    for (size_t i = 0; i < len; i++) {
      x = x * 1664525u + 1013904223u;
      in[i] = (uint8_t)(x >> 24);
    }
    bool url = iter & 1;
    size_t el = cz_base64_encode(in, len, url, enc);
    CHECK_EQ_INT(el, strlen(enc));
    CHECK(cz_base64_decode(enc, el, url, out, sizeof out, &n) && n == len &&
          memcmp(in, out, len) == 0);
    /* a random string over both alphabets and '=' */
    char rnd[24];
    size_t rl = (size_t)(iter % 23);
    for (size_t i = 0; i < rl; i++) {
      x = x * 1664525u + 1013904223u;
      rnd[i] = alpha[(x >> 24) % (sizeof alpha - 1)];
    }
    rnd[rl] = 0;
    if (cz_base64_decode(rnd, rl, url, out, sizeof out, &n)) {
      accepted++;
      cz_base64_encode(out, n, url, re);
      CHECK_EQ_STR(re, rnd);
    }
  }
  CHECK(accepted > 50);  /* the property was exercised */
}

int main(void) {
  static const cz_test_case cases[] = {
      CZ_TEST(test_nist_vectors),     CZ_TEST(test_million_a), CZ_TEST(test_streaming_chunks),
      CZ_TEST(test_shani_vs_scalar),
      CZ_TEST(test_file_vs_sha256sum), CZ_TEST(test_file_bad_fd), CZ_TEST(test_hmac_rfc4231), CZ_TEST(test_base64), CZ_TEST(test_base64_properties),
  };
  return cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
}
