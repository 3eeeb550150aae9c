/* test_jobcache: api/cz_jobcache.c: a hit only under the exact generation and id, copies in
 * and out, an older render never replaces a newer one, colliding ids, size limits. */
#include <stdint.h>
#include <string.h>

#include "cz_jobcache.h"
#include "cz_test.h"

static void test_hit_and_generation(void) {
  cz_jobcache *c = cz_jobcache_new();
  CHECK(c != NULL);
  if (!c) return;
  char buf[CZ_JOBCACHE_MAX_BODY];
  CHECK_EQ_INT((int)cz_jobcache_get(c, "job_a", 1, buf, sizeof buf), 0);  /* empty */
  char body[] = "{\"id\":\"job_a\",\"state\":\"queued\"}";
  cz_jobcache_put(c, "job_a", 7, body, strlen(body));
  body[1] = 'X';  /* the cache kept its own copy */
  size_t n = cz_jobcache_get(c, "job_a", 7, buf, sizeof buf);
  CHECK_EQ_INT((int)n, (int)strlen(body));
  CHECK(n && memcmp(buf, "{\"id\":\"job_a\",\"state\":\"queued\"}", n) == 0);
  /* another generation (the store was written) or another id: a miss */
  CHECK_EQ_INT((int)cz_jobcache_get(c, "job_a", 8, buf, sizeof buf), 0);
  CHECK_EQ_INT((int)cz_jobcache_get(c, "job_a", 6, buf, sizeof buf), 0);
  CHECK_EQ_INT((int)cz_jobcache_get(c, "job_b", 7, buf, sizeof buf), 0);
  CHECK_EQ_INT((int)cz_jobcache_get(c, "job_", 7, buf, sizeof buf), 0);
  /* too small a buffer: a miss, nothing written past it */
  char small[8] = "unset__";
  CHECK_EQ_INT((int)cz_jobcache_get(c, "job_a", 7, small, 4), 0);
  /* a newer render replaces it; an older one arriving late does not */
  cz_jobcache_put(c, "job_a", 9, "{\"new\":1}", 9);
  cz_jobcache_put(c, "job_a", 8, "{\"old\":1}", 9);
  n = cz_jobcache_get(c, "job_a", 9, buf, sizeof buf);
  CHECK(n == 9 && memcmp(buf, "{\"new\":1}", 9) == 0);
  CHECK_EQ_INT((int)cz_jobcache_get(c, "job_a", 8, buf, sizeof buf), 0);
  cz_jobcache_free(c);
  cz_jobcache_free(NULL);
}

/* Many ids share the slots: each get answers its own id's body or misses, never another's. */
static void test_collisions(void) {
  cz_jobcache *c = cz_jobcache_new();
  if (!c) return;
  char id[32], body[64], buf[CZ_JOBCACHE_MAX_BODY];
  for (int i = 0; i < 2000; i++) {
    snprintf(id, sizeof id, "job_%d", i);
    int len = snprintf(body, sizeof body, "{\"id\":\"job_%d\"}", i);
    cz_jobcache_put(c, id, 1, body, (size_t)len);
  }
  int hits = 0;
  for (int i = 0; i < 2000; i++) {
    snprintf(id, sizeof id, "job_%d", i);
    int len = snprintf(body, sizeof body, "{\"id\":\"job_%d\"}", i);
    size_t n = cz_jobcache_get(c, id, 1, buf, sizeof buf);
    if (n) {
      hits++;
      CHECK(n == (size_t)len && memcmp(buf, body, n) == 0);
    }
  }
  CHECK(hits > 0);
  CHECK(hits < 2000);  /* more ids than slots: some were replaced */
  cz_jobcache_free(c);
}

static void test_limits(void) {
  cz_jobcache *c = cz_jobcache_new();
  if (!c) return;
  static char big[CZ_JOBCACHE_MAX_BODY + 1];
  static char buf[CZ_JOBCACHE_MAX_BODY + 1];
  memset(big, 'x', sizeof big);
  cz_jobcache_put(c, "job_big", 1, big, sizeof big);   /* over the limit: not kept */
  CHECK_EQ_INT((int)cz_jobcache_get(c, "job_big", 1, buf, sizeof buf), 0);
  cz_jobcache_put(c, "job_big", 1, big, CZ_JOBCACHE_MAX_BODY);  /* at it: kept */
  CHECK_EQ_INT((int)cz_jobcache_get(c, "job_big", 1, buf, sizeof buf), CZ_JOBCACHE_MAX_BODY);
  cz_jobcache_put(c, "job_empty", 1, "", 0);
  CHECK_EQ_INT((int)cz_jobcache_get(c, "job_empty", 1, buf, sizeof buf), 0);
  /* an id longer than any route id is never a key */
  char long_id[200];
  memset(long_id, 'a', sizeof long_id - 1);
  long_id[sizeof long_id - 1] = 0;
  cz_jobcache_put(c, long_id, 1, "{}", 2);
  CHECK_EQ_INT((int)cz_jobcache_get(c, long_id, 1, buf, sizeof buf), 0);
  cz_jobcache_free(c);
}

int main(void) {
  static const cz_test_case cases[] = {
      CZ_TEST(test_hit_and_generation), CZ_TEST(test_collisions), CZ_TEST(test_limits)};
  return cz_test_main(cases, (int)(sizeof cases / sizeof cases[0]));
}
