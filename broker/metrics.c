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

const char *lk_refusal_name(lk_refusal r)
{
    return (unsigned)r < LK_REFUSED_COUNT ? refusal_names[r] : "unknown";
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
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
