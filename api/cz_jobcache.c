/* cz_jobcache: rendered job JSON keyed by job id and store generation (see cz_jobcache.h). */
#include "cz_jobcache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cz_http.h"

/* Slots of the direct-mapped table: a few clients polling a few jobs each fit; more only
 * costs misses. A power of two. */
#define JOBCACHE_SLOTS 256

typedef struct {
  pthread_mutex_t lock;
  char id[CZ_HTTP_MAX_ID + 1];
  uint64_t gen;
  size_t len;           /* 0: empty */
  char body[CZ_JOBCACHE_MAX_BODY];
} slot;

struct cz_jobcache {
  slot slots[JOBCACHE_SLOTS];
};

cz_jobcache *cz_jobcache_new(void) {
  cz_jobcache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  for (int i = 0; i < JOBCACHE_SLOTS; i++) pthread_mutex_init(&c->slots[i].lock, NULL);
  return c;
}

void cz_jobcache_free(cz_jobcache *c) {
  if (!c) return;
  for (int i = 0; i < JOBCACHE_SLOTS; i++) pthread_mutex_destroy(&c->slots[i].lock);
  free(c);
}

/* FNV-1a of the id; NULL when the id is too long to be a key. */
static slot *slot_of(cz_jobcache *c, const char *id) {
  uint32_t h = 2166136261u;
  size_t n = 0;
  for (const char *p = id; *p; p++, n++) {
    if (n >= CZ_HTTP_MAX_ID) return NULL;
    h = (h ^ (uint8_t)*p) * 16777619u;
  }
  return &c->slots[h & (JOBCACHE_SLOTS - 1)];
}

size_t cz_jobcache_get(cz_jobcache *c, const char *id, uint64_t gen, char *buf, size_t cap) {
  slot *s = c && id ? slot_of(c, id) : NULL;
  if (!s) return 0;
  size_t n = 0;
  pthread_mutex_lock(&s->lock);
  if (s->len && s->gen == gen && s->len <= cap && strcmp(s->id, id) == 0) {
    memcpy(buf, s->body, s->len);
    n = s->len;
  }
  pthread_mutex_unlock(&s->lock);
  return n;
}

void cz_jobcache_put(cz_jobcache *c, const char *id, uint64_t gen, const char *body, size_t len) {
  slot *s = c && id ? slot_of(c, id) : NULL;
  if (!s || len == 0 || len > CZ_JOBCACHE_MAX_BODY) return;
  pthread_mutex_lock(&s->lock);
  /* a slower renderer of an older generation must not replace a newer entry */
  if (!(s->len && s->gen > gen)) {
    strcpy(s->id, id);  /* slot_of checked the length */
    s->gen = gen;
    s->len = len;
    memcpy(s->body, body, len);
  }
  pthread_mutex_unlock(&s->lock);
}
