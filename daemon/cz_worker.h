/* cz_worker: runs queued jobs on libuv's thread pool.
 *
 * The loop thread claims jobs from the store, plans them (cz_pipeline) and feeds their tasks
 * to uv_queue_work, up to `threads` tasks in flight per job so that every core works on one
 * large job. A timer records progress and renews the lease every HEARTBEAT_MS, and picks up
 * cancel requests; the artifact is published (fsync + rename) on a pool thread, then the job
 * is marked done on the loop thread.
 *
 * Thread: everything runs on the loop thread except cz_worker_wake, which any thread may call
 * (it is a uv_async_send). When a function returns an error, no callback is made.
 */
#ifndef CZ_WORKER_H
#define CZ_WORKER_H

#include <uv.h>

#include "cz_blob.h"
#include "cz_err.h"
#include "cz_store.h"

typedef struct cz_worker cz_worker;

typedef struct {
  int threads;        /* tasks in flight per job (and jobs at once: max(1, threads / 2)) */
  int max_attempts;   /* stored with each job at submit; used here for logs */
  const char *owner;  /* lease owner id of this process */
} cz_worker_opts;

cz_err_code cz_worker_start(uv_loop_t *loop, cz_store *store, cz_blob_store *blobs,
                            const cz_worker_opts *opts, cz_worker **out, cz_error *err);
/* Look for new work or cancel requests now rather than at the next tick. Any thread. */
void cz_worker_wake(cz_worker *w);
/* Stop claiming; running jobs are stopped at their next chunk and handed back to the queue
 * (their attempt is not counted). done() runs on the loop thread when nothing runs any more
 * and every handle is closed; the worker is freed after it returns. */
void cz_worker_shutdown(cz_worker *w, void (*done)(void *cls), void *cls);

#endif
