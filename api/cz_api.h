/* cz_api: the v1 REST API: route table and handlers for models, jobs, health.
 *
 * Thread: handlers run on the HTTP server's threads; the context is read-only after start
 * except `ready`, which is atomic.
 */
#ifndef CZ_API_H
#define CZ_API_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cz_blob.h"
#include "cz_http.h"
#include "cz_jobcache.h"
#include "cz_page.h"
#include "cz_store.h"

typedef struct {
  cz_store *store;
  cz_blob_store *blobs;
  uint64_t max_upload_bytes;   /* larger uploads get 413 */
  int max_attempts;            /* stored with every new job */
  int webhook_max_attempts;    /* stored with every new job's webhook */
  int max_queued;              /* > 0: a submit or retry with this many jobs queued gets 503 */
  bool auth_required;          /* API tokens needed (cz_api_auth.c) */
  void (*wake)(void *cls);     /* tell the worker there is new work; any thread */
  void *wake_cls;
  cz_page_key page_key;        /* MACs the page tokens of every list (cz_page.h) */
  atomic_int ready;            /* 1 once recovery has run and the worker is up */
  cz_jobcache *job_cache;      /* rendered job bodies (owned by the server); NULL: none */
} cz_api;

const cz_route *cz_api_routes(int *n);

#endif
