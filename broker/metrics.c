/* metrics.c - Prometheus text for the broker's counters. */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const refusal_names[LK_REFUSED_COUNT] = {
    "unauthorized", "token_expired", "forbidden", "origin", "capacity"};
static const char *const verify_names[LK_VERIFY_COUNT] = {
    "ok", "expired", "invalid", "forbidden"};

static const char *const apiauth_names[LK_APIAUTH_COUNT] = {
    "cached", "verified", "refused"};
/* Bucket bounds: 100 us to 5 s, as microseconds and as Prometheus `le`. */
static const int64_t latency_bounds_us[LK_LATENCY_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
    500000, 1000000, 2500000, 5000000};
static const char *const latency_le[LK_LATENCY_BUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
    "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5"};

const char *lk_refusal_name(lk_refusal r)
{
    return (unsigned)r < LK_REFUSED_COUNT ? refusal_names[r] : "unknown";
}

void lk_metrics_count_request(lk_metrics *m, const char *route, int status)
{
    for (size_t i = 0; i < m->nrequests; i++) {
        lk_request_count *r = &m->requests[i];
        if (r->status == status && (r->route == route || strcmp(r->route, route) == 0)) {
            LK_COUNT(r->n);
            return;
        }
    }
    if (m->nrequests == LK_METRICS_REQUEST_SLOTS) {
        LK_COUNT(m->requests_unlabelled);
        return;
    }
    m->requests[m->nrequests] = (lk_request_count){route, status, 1};
    /* Readers on other threads see the slot filled before counting it. */
    __atomic_store_n(&m->nrequests, m->nrequests + 1, __ATOMIC_RELEASE);
}

static uint64_t load(const uint64_t *x)
{
    return __atomic_load_n(x, __ATOMIC_RELAXED);
}

static void add_counts(uint64_t *dst, const uint64_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] += load(&src[i]);
}

void lk_metrics_add(lk_metrics *dst, const lk_metrics *src)
{
    add_counts(&dst->connections_total, &src->connections_total, 1);
    add_counts(dst->refused, src->refused, LK_REFUSED_COUNT);
    add_counts(dst->verifications, src->verifications, LK_VERIFY_COUNT);
    add_counts(&dst->messages_published, &src->messages_published, 1);
    add_counts(&dst->messages_delivered, &src->messages_delivered, 1);
    add_counts(&dst->bytes_out, &src->bytes_out, 1);
    add_counts(&dst->slow_consumer_drops, &src->slow_consumer_drops, 1);
    add_counts(&dst->inbox_drops, &src->inbox_drops, 1);
    add_counts(&dst->rate_limited, &src->rate_limited, 1);
    add_counts(&dst->rate_limit_closes, &src->rate_limit_closes, 1);
    add_counts(&dst->revocation_kicks, &src->revocation_kicks, 1);
    add_counts(&dst->expiry_closes, &src->expiry_closes, 1);
    add_counts(&dst->protocol_errors, &src->protocol_errors, 1);
    add_counts(&dst->http_requests, &src->http_requests, 1);
    add_counts(dst->api_auth, src->api_auth, LK_APIAUTH_COUNT);
    add_counts(dst->api_rate_limited, src->api_rate_limited, 2);
    add_counts(&dst->api_tokens_issued, &src->api_tokens_issued, 1);
    add_counts(&dst->requests_unlabelled, &src->requests_unlabelled, 1);
    add_counts(dst->latency, src->latency, LK_LATENCY_BUCKETS + 1);
    add_counts(&dst->latency_count, &src->latency_count, 1);
    add_counts(&dst->latency_sum_us, &src->latency_sum_us, 1);
    size_t n = __atomic_load_n(&src->nrequests, __ATOMIC_ACQUIRE);
    for (size_t i = 0; i < n; i++) {
        const lk_request_count *r = &src->requests[i];
        size_t j = 0;
        while (j < dst->nrequests && !(dst->requests[j].status == r->status &&
                                       strcmp(dst->requests[j].route, r->route) == 0))
            j++;
        if (j < dst->nrequests)
            dst->requests[j].n += load(&r->n);
        else if (dst->nrequests < LK_METRICS_REQUEST_SLOTS)
            dst->requests[dst->nrequests++] = (lk_request_count){r->route, r->status, load(&r->n)};
        else
            dst->requests_unlabelled += load(&r->n);
    }
}

void lk_metrics_observe_delivery(lk_metrics *m, int64_t us)
{
    if (us < 0)
        us = 0;
    size_t i = 0;
    while (i < LK_LATENCY_BUCKETS && us > latency_bounds_us[i])
        i++;
    LK_COUNT(m->latency[i]);
    LK_COUNT(m->latency_count);
    LK_COUNT_ADD(m->latency_sum_us, (uint64_t)us);
}

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void add(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(buf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap * 2 + (size_t)n;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

static void metric(buf *b, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    add(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name,
        type, name, v);
}

char *lk_metrics_render(const lk_metrics *m, const lk_gauges *g, size_t *len)
{
    buf b = {malloc(4096), 0, 4096, 0};
    if (!b.p)
        return NULL;
    metric(&b, "latchkey_connections", "gauge",
           "Open WebSocket connections.", g->connections);
    metric(&b, "latchkey_sockets", "gauge",
           "Open TCP connections, HTTP included.", g->sockets);
    add(&b, "# HELP latchkey_thread_connections Open WebSocket connections, by service thread.\n"
            "# TYPE latchkey_thread_connections gauge\n");
    for (size_t t = 0; t < g->threads && t < LK_METRICS_THREADS_MAX; t++)
        add(&b, "latchkey_thread_connections{thread=\"%zu\"} %" PRIu64 "\n", t,
            g->thread_connections[t]);
    metric(&b, "latchkey_connections_total", "counter",
           "WebSocket connections accepted.", m->connections_total);
    add(&b, "# HELP latchkey_connections_refused_total WebSocket connects refused, by reason.\n"
            "# TYPE latchkey_connections_refused_total counter\n");
    for (int i = 0; i < LK_REFUSED_COUNT; i++)
        add(&b, "latchkey_connections_refused_total{reason=\"%s\"} %" PRIu64 "\n",
            refusal_names[i], m->refused[i]);
    add(&b, "# HELP latchkey_token_verifications_total Token verifications, by outcome.\n"
            "# TYPE latchkey_token_verifications_total counter\n");
    for (int i = 0; i < LK_VERIFY_COUNT; i++)
        add(&b, "latchkey_token_verifications_total{result=\"%s\"} %" PRIu64 "\n",
            verify_names[i], m->verifications[i]);
    metric(&b, "latchkey_subscriptions", "gauge",
           "Active channel subscriptions.", g->subscriptions);
    metric(&b, "latchkey_channels", "gauge",
           "Channels held (with subscribers or history).", g->channels);
    metric(&b, "latchkey_keys", "gauge", "API keys loaded from the registry.",
           g->keys);
    metric(&b, "latchkey_messages_published_total", "counter",
           "Messages published.", m->messages_published);
    metric(&b, "latchkey_messages_delivered_total", "counter",
           "Message frames queued to subscribers.", m->messages_delivered);
    metric(&b, "latchkey_bytes_out_total", "counter",
           "WebSocket payload bytes written.", m->bytes_out);
    metric(&b, "latchkey_slow_consumer_drops_total", "counter",
           "Connections closed with 4408 after their send queue overflowed.",
           m->slow_consumer_drops);
    metric(&b, "latchkey_inbox_drops_total", "counter",
           "Message copies lost because a service thread's inbox was full.",
           m->inbox_drops);
    metric(&b, "latchkey_rate_limited_total", "counter",
           "Publishes refused with rate_limited.", m->rate_limited);
    metric(&b, "latchkey_rate_limit_closes_total", "counter",
           "Connections closed with 4429.", m->rate_limit_closes);
    metric(&b, "latchkey_revocation_kicks_total", "counter",
           "Connections closed with 4403 after their key was revoked.",
           m->revocation_kicks);
    metric(&b, "latchkey_expiry_closes_total", "counter",
           "Connections closed with 4401 when their token expired.",
           m->expiry_closes);
    metric(&b, "latchkey_protocol_errors_total", "counter",
           "Connections closed with 4400 or 4413.", m->protocol_errors);
    metric(&b, "latchkey_http_requests_total", "counter",
           "HTTP requests served.", m->http_requests);
    add(&b, "# HELP latchkey_api_requests_total HTTP responses, by route template and status.\n"
            "# TYPE latchkey_api_requests_total counter\n");
    for (size_t i = 0; i < m->nrequests; i++)
        add(&b, "latchkey_api_requests_total{route=\"%s\",status=\"%d\"} %" PRIu64 "\n",
            m->requests[i].route, m->requests[i].status, m->requests[i].n);
    if (m->requests_unlabelled)
        add(&b, "latchkey_api_requests_total{route=\"other\",status=\"other\"} %" PRIu64 "\n",
            m->requests_unlabelled);
    add(&b, "# HELP latchkey_api_key_checks_total API keys presented to the HTTP API, by outcome.\n"
            "# TYPE latchkey_api_key_checks_total counter\n");
    for (int i = 0; i < LK_APIAUTH_COUNT; i++)
        add(&b, "latchkey_api_key_checks_total{result=\"%s\"} %" PRIu64 "\n",
            apiauth_names[i], m->api_auth[i]);
    add(&b, "# HELP latchkey_api_rate_limited_total HTTP API requests refused with 429, by limit.\n"
            "# TYPE latchkey_api_rate_limited_total counter\n"
            "latchkey_api_rate_limited_total{limit=\"minute\"} %" PRIu64 "\n"
            "latchkey_api_rate_limited_total{limit=\"second\"} %" PRIu64 "\n",
        m->api_rate_limited[0], m->api_rate_limited[1]);
    metric(&b, "latchkey_api_tokens_issued_total", "counter",
           "Client tokens minted by POST /v1/tokens.", m->api_tokens_issued);
    add(&b, "# HELP latchkey_delivery_latency_seconds Time a message spent queued for a subscriber before being written to its socket.\n"
            "# TYPE latchkey_delivery_latency_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < LK_LATENCY_BUCKETS; i++) {
        cum += m->latency[i];
        add(&b, "latchkey_delivery_latency_seconds_bucket{le=\"%s\"} %" PRIu64 "\n",
            latency_le[i], cum);
    }
    add(&b, "latchkey_delivery_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
            "latchkey_delivery_latency_seconds_sum %" PRIu64 ".%06" PRIu64 "\n"
            "latchkey_delivery_latency_seconds_count %" PRIu64 "\n",
        m->latency_count, m->latency_sum_us / 1000000, m->latency_sum_us % 1000000,
        m->latency_count);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
