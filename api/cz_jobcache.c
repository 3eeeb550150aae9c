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
  char id[CZ_HTTP_MAX_ID + 1];
  uint64_t gen;
  size_t len;           /* 0: empty */
  char body[CZ_JOBCACHE_MAX_BODY];
} slot;

/* The locks apart from the slots: initializing a lock inside each slot would make every
 * slot's page resident (1 MiB) before any job is cached. */
struct cz_jobcache {
  pthread_mutex_t locks[JOBCACHE_SLOTS];
  slot slots[JOBCACHE_SLOTS];
};

cz_jobcache *cz_jobcache_new(void) {
  cz_jobcache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  for (int i = 0; i < JOBCACHE_SLOTS; i++) pthread_mutex_init(&c->locks[i], NULL);
  return c;
}

void cz_jobcache_free(cz_jobcache *c) {
  if (!c) return;
  for (int i = 0; i < JOBCACHE_SLOTS; i++) pthread_mutex_destroy(&c->locks[i]);
  free(c);
}

/* FNV-1a of the id: its slot number, or -1 when the id is too long to be a key. */
static int slot_of(const char *id) {
  uint32_t h = 2166136261u;
  size_t n = 0;
  for (const char *p = id; *p; p++, n++) {
    if (n >= CZ_HTTP_MAX_ID) return -1;
    h = (h ^ (uint8_t)*p) * 16777619u;
  }
  return (int)(h & (JOBCACHE_SLOTS - 1));
}

size_t cz_jobcache_get(cz_jobcache *c, const char *id, uint64_t gen, char *buf, size_t cap) {
  int i = c && id ? slot_of(id) : -1;
  if (i < 0) return 0;
  slot *s = &c->slots[i];
  size_t n = 0;
  pthread_mutex_lock(&c->locks[i]);
  if (s->len && s->gen == gen && s->len <= cap && strcmp(s->id, id) == 0) {
    memcpy(buf, s->body, s->len);
    n = s->len;
  }
  pthread_mutex_unlock(&c->locks[i]);
  return n;
}

void cz_jobcache_put(cz_jobcache *c, const char *id, uint64_t gen, const char *body, size_t len) {
  int i = c && id ? slot_of(id) : -1;
  if (i < 0 || len == 0 || len > CZ_JOBCACHE_MAX_BODY) return;
  slot *s = &c->slots[i];
  pthread_mutex_lock(&c->locks[i]);
  /* a slower renderer of an older generation must not replace a newer entry */
  if (!(s->len && s->gen > gen)) {
    strcpy(s->id, id);  /* slot_of checked the length */
    s->gen = gen;
    s->len = len;
    memcpy(s->body, body, len);
  }
  pthread_mutex_unlock(&c->locks[i]);
}
