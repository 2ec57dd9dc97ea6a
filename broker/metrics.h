/*
 * metrics.h - the broker's counters and their Prometheus text rendering
 * for GET /metrics.
 *
 * Each service thread has its own lk_metrics and is the only writer of its
 * counters; GET /metrics, on any thread, sums them all (lk_metrics_add).
 * A counter is bumped with LK_COUNT: a relaxed atomic store of the owner's
 * own value plus one, a plain store on the machines we run on, so the
 * delivery path pays no locked instruction and readers never see a torn
 * value. Gauges (current connections, subscriptions, channels) are passed
 * in at render time.
 *
 * Ownership: lk_metrics_render returns a string the caller frees with free().
 * Thread safety: writes by the owning service thread only; lk_metrics_add
 * reads from any thread.
 */
#ifndef LK_BROKER_METRICS_H
#define LK_BROKER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define LK_COUNT_ADD(x, n) __atomic_store_n(&(x), (x) + (n), __ATOMIC_RELAXED)
#define LK_COUNT(x) LK_COUNT_ADD(x, 1)

/* Why a WebSocket connect was refused. */
typedef enum lk_refusal {
    LK_REFUSED_UNAUTHORIZED = 0,  /* missing or invalid token (4401) */
    LK_REFUSED_TOKEN_EXPIRED,     /* 4401 */
    LK_REFUSED_FORBIDDEN,         /* revoked key or cap beyond scopes (4403) */
    LK_REFUSED_ORIGIN,            /* Origin not allowed (4403) */
    LK_REFUSED_CAPACITY,          /* connection limit reached */
    LK_REFUSED_COUNT
} lk_refusal;

/* Outcome of one token verification (connect or in-band auth). */
typedef enum lk_verify_outcome {
    LK_VERIFY_OK = 0,
    LK_VERIFY_EXPIRED,
    LK_VERIFY_INVALID,     /* any other 4401 reason */
    LK_VERIFY_FORBIDDEN,   /* 4403 reasons */
    LK_VERIFY_COUNT
} lk_verify_outcome;

/* HTTP API key checks (api.c). */
typedef enum lk_apiauth_outcome {
    LK_APIAUTH_CACHED = 0,   /* verified from the cache, no crypto */
    LK_APIAUTH_VERIFIED,     /* verified with the full check */
    LK_APIAUTH_REFUSED,      /* 401 */
    LK_APIAUTH_COUNT
} lk_apiauth_outcome;

/* HTTP requests are counted per (route template, status); the pairs in
 * use are few and fixed by the route table, this bounds them anyway. */
#define LK_METRICS_REQUEST_SLOTS 96

typedef struct lk_request_count {
    const char *route;       /* static string */
    int status;
    uint64_t n;
} lk_request_count;

/* Delivery latency histogram: upper bounds in microseconds; one more
 * bucket counts everything above the last. */
#define LK_LATENCY_BUCKETS 15

typedef struct lk_metrics {
    uint64_t connections_total;        /* accepted WebSocket sessions */
    uint64_t refused[LK_REFUSED_COUNT];
    uint64_t verifications[LK_VERIFY_COUNT];
    uint64_t messages_published;
    uint64_t messages_delivered;       /* message frames queued to subscribers */
    uint64_t bytes_out;                /* WebSocket payload bytes written */
    uint64_t slow_consumer_drops;
    uint64_t inbox_drops;              /* messages lost to a full thread inbox */
    uint64_t rate_limited;             /* publishes refused with rate_limited */
    uint64_t rate_limit_closes;
    uint64_t revocation_kicks;
    uint64_t expiry_closes;
    uint64_t protocol_errors;          /* closes with 4400 or 4413 */
    uint64_t http_requests;

    uint64_t api_auth[LK_APIAUTH_COUNT];
    uint64_t api_rate_limited[2];      /* [0] per-minute, [1] per-second */
    uint64_t api_tokens_issued;
    lk_request_count requests[LK_METRICS_REQUEST_SLOTS];
    size_t nrequests;
    uint64_t requests_unlabelled;      /* beyond the slots; never expected */

    uint64_t latency[LK_LATENCY_BUCKETS + 1];  /* per bucket, not cumulative */
    uint64_t latency_count;
    uint64_t latency_sum_us;
} lk_metrics;

#define LK_METRICS_THREADS_MAX 64

typedef struct lk_gauges {
    uint64_t connections;      /* open WebSocket sessions */
    uint64_t thread_connections[LK_METRICS_THREADS_MAX]; /* ... per service thread */
    size_t threads;
    uint64_t sockets;          /* open TCP connections (HTTP included) */
    uint64_t subscriptions;
    uint64_t channels;
    uint64_t keys;
} lk_gauges;

const char *lk_refusal_name(lk_refusal r);

/* Counts one HTTP response; `route` must be a static string. */
void lk_metrics_count_request(lk_metrics *m, const char *route, int status);

/* Records the time one message frame spent between being queued for a
 * subscriber and being written to its socket. */
void lk_metrics_observe_delivery(lk_metrics *m, int64_t us);

/* Adds `src`'s counters (another thread's, read atomically) into `dst`. */
void lk_metrics_add(lk_metrics *dst, const lk_metrics *src);

/* Prometheus text exposition format 0.0.4. NULL on ENOMEM. */
char *lk_metrics_render(const lk_metrics *m, const lk_gauges *g, size_t *len);

#endif
