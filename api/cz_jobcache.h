/* cz_jobcache: rendered GET /v1/jobs/{id} bodies, keyed by job id and store generation.
 *
 * Why: under load, GET of a job spent most of its handler time in SQLite and jansson for a
 * body that changes only when the store is written. An entry is valid only for the
 * cz_store_generation() it was rendered under; any write to the store makes every entry
 * stale, so a hit can never show an older state than a fresh read would.
 *
 * Usage: gen = cz_store_generation(store) BEFORE reading the rows; on a miss render, then
 * put(id, gen, body). Direct-mapped: a colliding id simply replaces the slot.
 * Thread: any; each slot has its own lock. Ownership: the cache copies what it is given and
 * copies out what it returns.
 */
#ifndef CZ_JOBCACHE_H
#define CZ_JOBCACHE_H

#include <stddef.h>
#include <stdint.h>

/* Larger bodies are not cached (a job's JSON is about 1 KiB; the id, links and error
 * message are bounded, this leaves room for a long error message). */
#define CZ_JOBCACHE_MAX_BODY 4096

typedef struct cz_jobcache cz_jobcache;

cz_jobcache *cz_jobcache_new(void);   /* NULL when out of memory */
void cz_jobcache_free(cz_jobcache *c); /* NULL is fine */

/* The body cached for id under exactly gen, copied into buf (cap bytes): its length, or 0
 * when there is none (or it does not fit). */
size_t cz_jobcache_get(cz_jobcache *c, const char *id, uint64_t gen, char *buf, size_t cap);

/* Remember body (len bytes) for id under gen; ignored when len is 0 or above
 * CZ_JOBCACHE_MAX_BODY, or when the slot already holds a newer generation. */
void cz_jobcache_put(cz_jobcache *c, const char *id, uint64_t gen, const char *body, size_t len);

#endif
