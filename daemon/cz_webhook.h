/* cz_webhook: deliver a job's webhook when the job finishes (issue 6).
 *
 * A job submitted with {"webhook": {"url": ..., "secret": "whsec_..."}} gets a row in the
 * store (migration 0012). One dedicated thread, never a compression worker nor the HTTP or
 * event-loop threads, does all the network work:
 *   1. a waiting webhook whose job has finished gets its message fixed: a msg_ id, the event
 *      (job.succeeded, job.failed, job.canceled) and the JSON body
 *      {"type", "timestamp", "data": {the job}}; every try sends exactly these;
 *   2. a due delivery is POSTed with the Standard Webhooks headers webhook-id,
 *      webhook-timestamp (Unix seconds of this try) and
 *      webhook-signature: v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>, where key is the
 *      base64 after "whsec_" of the secret;
 *   3. a 2xx answer marks it delivered; anything else (status, connection error, timeout)
 *      schedules the next try after backoff_ms * 2^(tries - 1), at most CZ_WEBHOOK_MAX_DELAY_MS,
 *      until max_attempts tries were made (then failed).
 * Because the state is in SQLite, a restart resumes the pending deliveries. Redirects are not
 * followed; only http and https are spoken.
 *
 * Thread: cz_webhook_start/stop from the main thread; cz_webhook_kick from any thread.
 */
#ifndef CZ_WEBHOOK_H
#define CZ_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cz_err.h"
#include "cz_store.h"

#define CZ_WEBHOOK_MAX_URL 2048            /* bytes of a webhook URL */
#define CZ_WEBHOOK_MIN_KEY 24              /* bytes of the decoded secret, as Standard */
#define CZ_WEBHOOK_MAX_KEY 64              /* Webhooks recommends */
#define CZ_WEBHOOK_MAX_DELAY_MS 3600000    /* the backoff stops doubling at an hour */

typedef struct {
  int backoff_ms;        /* wait before the second try */
  int timeout_s;         /* one POST, connection included */
} cz_webhook_opts;

typedef struct cz_webhook cz_webhook;

/* Start the delivery thread. */
cz_err_code cz_webhook_start(cz_store *store, const cz_webhook_opts *o, cz_webhook **out,
                             cz_error *err);
/* Look for work now (a job finished). Any thread; never blocks on the network. */
void cz_webhook_kick(cz_webhook *w);
/* Stop the thread (a POST in progress is aborted and counts as a failed try) and free. */
void cz_webhook_stop(cz_webhook *w);

/* Checks used at submit time. A URL: http:// or https://, a host, at most CZ_WEBHOOK_MAX_URL
 * bytes of printable ASCII without spaces. A secret: "whsec_" and the standard base64 of
 * CZ_WEBHOOK_MIN_KEY..CZ_WEBHOOK_MAX_KEY bytes; key gets them. Each returns false with a
 * message for the client in err. */
bool cz_webhook_url_valid(const char *url, cz_error *err);
bool cz_webhook_secret_decode(const char *secret, uint8_t key[CZ_WEBHOOK_MAX_KEY],
                              size_t *key_len, cz_error *err);

/* The webhook-signature value "v1,<base64 HMAC-SHA256(key, msg_id.timestamp.body)>". */
#define CZ_WEBHOOK_SIG_LEN 48   /* "v1," + 44 characters of base64 + NUL */
void cz_webhook_sign(const uint8_t *key, size_t key_len, const char *msg_id, const char *ts,
                     const char *body, size_t body_len, char out[CZ_WEBHOOK_SIG_LEN]);

/* The delay after the n-th failed try (n >= 1): backoff_ms * 2^(n-1), capped. */
int64_t cz_webhook_delay_ms(int backoff_ms, int n);

#endif
