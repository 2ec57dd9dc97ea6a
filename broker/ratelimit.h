/*
 * ratelimit.h - per-workspace limits on the HTTP API (SPEC section 5):
 * a fixed one-minute window and a per-second burst cap, both of which a
 * request must pass.
 *
 * The minute window opens with a workspace's first request and lasts 60 s;
 * every request counts in it, refused ones included, so Remaining and
 * Reset describe exactly what the client has left. The burst cap is a
 * token bucket holding `per_second` tokens, refilled at `per_second` per
 * second; only a request that passes the minute window takes a token.
 *
 * Entries exist only for workspaces that made an authenticated request;
 * one idle for over a minute holds no state worth keeping (a fresh entry
 * behaves the same) and is dropped when the table needs room, so memory is
 * bounded by the number of recently active workspaces.
 *
 * Ownership: lk_ratelimit_create returns a table the caller destroys with
 * lk_ratelimit_destroy (NULL is a no-op).
 * Thread safety: lk_ratelimit_hit may be called from any thread (every
 * service thread shares the table, so a workspace's limit does not grow
 * with the thread count); create, destroy and count from one.
 */
#ifndef LK_BROKER_RATELIMIT_H
#define LK_BROKER_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#define LK_RATE_WINDOW_MS 60000

typedef struct lk_ratelimit lk_ratelimit;

/* Which limit refused a request. */
typedef enum lk_rate_verdict {
    LK_RATE_OK = 0,
    LK_RATE_MINUTE,   /* the per-minute window is used up */
    LK_RATE_SECOND    /* the burst bucket is empty */
} lk_rate_verdict;

typedef struct lk_rate_result {
    lk_rate_verdict verdict;
    int64_t limit;        /* X-RateLimit-Limit: the per-minute limit */
    int64_t remaining;    /* X-RateLimit-Remaining, this request counted */
    int64_t reset;        /* X-RateLimit-Reset: unix seconds */
    int64_t retry_after;  /* Retry-After in seconds when refused, >= 1 */
} lk_rate_result;

/* NULL on ENOMEM. */
lk_ratelimit *lk_ratelimit_create(void);
void lk_ratelimit_destroy(lk_ratelimit *rl);

/* Counts one request of `workspace` at `now_ms` (unix milliseconds)
 * against `per_minute` and `per_second` (both >= 1) and fills *out.
 * Returns 0, or -1 on ENOMEM (the request should then be refused with a
 * server error; nothing is counted). */
int lk_ratelimit_hit(lk_ratelimit *rl, const char *workspace, int64_t per_minute,
                     int64_t per_second, int64_t now_ms, lk_rate_result *out);

/* Workspaces currently tracked. */
size_t lk_ratelimit_count(const lk_ratelimit *rl);

#endif
