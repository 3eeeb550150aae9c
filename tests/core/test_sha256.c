/* test_sha256: cz_sha256 against NIST's example vectors and the system's sha256sum. */
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

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

int main(void) {
  static const cz_test_case cases[] = {
      CZ_TEST(test_nist_vectors),     CZ_TEST(test_million_a), CZ_TEST(test_streaming_chunks),
      CZ_TEST(test_file_vs_sha256sum), CZ_TEST(test_file_bad_fd),
  };
  return cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
}
