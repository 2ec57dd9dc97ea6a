/* http.c - HTTP routes on the broker's listener. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "codec.h"
#include "hub.h"
#include "metrics.h"

typedef struct lk_http_route {
    const char *path;
    int prefix;               /* match every path starting with `path` */
    unsigned methods;         /* bit (1 << LWSHUMETH_*) per allowed method */
    int reads_body;
    lk_http_handler fn;
} lk_http_route;

typedef struct lk_http_conn {
    int kind;                 /* LK_CONN_HTTP; first, see broker.h */
    const lk_http_route *route;
    int method;
    char *path;
    char *body;
    size_t body_len;
    size_t body_cap;
    int too_large;
    int close_after;          /* the request has a body */
    int body_done;            /* HTTP_BODY_COMPLETION seen */
    int deferred;             /* answer ready, sent once the body is in */
    size_t discarded;
    int done;                 /* response written */
    lk_http_resp resp;
    const lk_http_route *matched; /* for the access log, refusals included */
    int64_t t0;               /* request start, lk_mono_us */
} lk_http_conn;

#define M(m) (1u << (m))
/* A refused request's body is read and dropped up to this size, so the
 * client can read the answer; a larger one closes the connection. */
#define LK_HTTP_DISCARD_MAX ((size_t)8 << 20)

static void route_healthz(const lk_http_req *req, lk_http_resp *resp);
static void route_metrics(const lk_http_req *req, lk_http_resp *resp);
static void route_realtime(const lk_http_req *req, lk_http_resp *resp);

static const lk_http_route routes[] = {
    {"/healthz", 0, M(LWSHUMETH_GET), 0, route_healthz},
    {"/metrics", 0, M(LWSHUMETH_GET), 0, route_metrics},
    {"/v1/realtime", 0, M(LWSHUMETH_GET), 0, route_realtime},
    {"/v1/tokens", 0, M(LWSHUMETH_POST), 1, lk_api_tokens},
    {"/v1/key", 0, M(LWSHUMETH_GET), 0, lk_api_key},
    /* Any method: the handler answers 404 for other paths under the
     * prefix before 405, as for unknown paths. */
    {"/v1/channels/", 1, M(LWSHUMETH_GET) | M(LWSHUMETH_POST) | M(LWSHUMETH_OPTIONS) |
                         M(LWSHUMETH_PUT) | M(LWSHUMETH_PATCH) | M(LWSHUMETH_DELETE) |
                         M(LWSHUMETH_HEAD), 1, lk_api_publish},
};

static const char *const method_names[] = {
    "GET", "POST", "OPTIONS", "PUT", "PATCH", "DELETE", "CONNECT", "HEAD"};

size_t lk_http_conn_size(void)
{
    return sizeof(lk_http_conn);
}

int lk_http_resp_body(lk_http_resp *resp, int status, const char *content_type,
                      const char *body, size_t len)
{
    free(resp->buf);
    resp->buf = malloc(LWS_PRE + len + 1);
    resp->status = status;
    resp->content_type = content_type;
    if (!resp->buf) {
        resp->status = 500;
        resp->len = 0;
        return -1;
    }
    memcpy(resp->buf + LWS_PRE, body, len);
    resp->len = len;
    return 0;
}

int lk_http_resp_error(lk_http_resp *resp, int status, const char *code,
                       const char *message)
{
    char msg[512], out[768];
    size_t m = lk_codec_json_string(msg, sizeof msg, message, strlen(message));
    if (!m)
        m = (size_t)snprintf(msg, sizeof msg, "\"error\"");
    int n = snprintf(out, sizeof out, "{\"error\":%.*s,\"code\":\"%s\"}", (int)m, msg,
                     code);
    return lk_http_resp_body(resp, status, "application/json", out, (size_t)n);
}

int lk_http_resp_header(lk_http_resp *resp, const char *name, const char *value)
{
    if (resp->nheaders >= LK_HTTP_MAX_HEADERS)
        return -1;
    if (!resp->headers &&
        !(resp->headers = calloc(LK_HTTP_MAX_HEADERS, sizeof *resp->headers)))
        return -1;
    lk_http_header *h = &resp->headers[resp->nheaders++];
    h->name = name;
    snprintf(h->value, sizeof h->value, "%s", value);
    return 0;
}

/* ------------------------------------------------------------ routes */

static void route_healthz(const lk_http_req *req, lk_http_resp *resp)
{
    static const char body[] = "{\"status\":\"ok\"}";
    lk_http_resp_body(resp, 200, "application/json", body, sizeof body - 1);
}

static void route_metrics(const lk_http_req *req, lk_http_resp *resp)
{
    lk_broker *b = req->b;
    lk_gauges g = {
        .sockets = lk_hub_sockets(b->hub),
        .keys = lk_keystore_count(b->keys),
    };
    /* Every service thread's counters, each read atomically. */
    lk_metrics m;
    memset(&m, 0, sizeof m);
    for (size_t t = 0; t < lk_hub_threads(b->hub); t++) {
        const lk_broker *w = lk_hub_worker(b->hub, t);
        if (!w)
            continue;
        lk_metrics_add(&m, &w->metrics);
        uint64_t open = __atomic_load_n(&w->open_sessions, __ATOMIC_RELAXED);
        g.connections += open;
        if (t < LK_METRICS_THREADS_MAX)
            g.thread_connections[g.threads++] = open;
    }
    lk_hub_lock(b->hub);
    g.subscriptions = lk_chanmap_subscriptions(lk_hub_channels(b->hub));
    g.channels = lk_chanmap_channels(lk_hub_channels(b->hub));
    lk_hub_unlock(b->hub);
    size_t len;
    char *text = lk_metrics_render(&m, &g, &len);
    if (!text) {
        lk_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    lk_http_resp_body(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void route_realtime(const lk_http_req *req, lk_http_resp *resp)
{
    lk_http_resp_error(resp, 426, "bad_request",
                       "WebSocket upgrade required (subprotocol latchkey.v1)");
    lk_http_resp_header(resp, "Upgrade:", "websocket");
}

/* ------------------------------------------------------------ plumbing */

void lk_http_cleanup(void *user)
{
    lk_http_conn *c = user;
    if (!c || c->kind != LK_CONN_HTTP)
        return;
    free(c->path);
    free(c->body);
    /* A /v1/tokens answer holds a client token. */
    if (c->resp.buf)
        OPENSSL_cleanse(c->resp.buf, LWS_PRE + c->resp.len);
    free(c->resp.buf);
    free(c->resp.headers);
    memset(c, 0, sizeof *c);
    c->kind = LK_CONN_HTTP;
}

static const lk_http_route *find_route(const char *path, size_t len)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        size_t rl = strlen(routes[i].path);
        if (routes[i].prefix ? len >= rl && memcmp(path, routes[i].path, rl) == 0
                             : len == rl && memcmp(path, routes[i].path, rl) == 0)
            return &routes[i];
    }
    return NULL;
}

/* Writes the whole response at once (lws buffers what the socket does not
 * take) and ends the transaction; responses are small, and this needs no
 * HTTP_WRITEABLE, which lws withholds while it reads a request body. */
static int respond(struct lws *wsi, lk_http_conn *c)
{
    lk_http_resp *r = &c->resp;
    if (!r->buf)
        lk_http_resp_error(r, 500, "internal", "no response");
    lk_api_observe(lws_context_user(lws_get_context(wsi)), wsi, c->method,
                   c->matched ? c->matched->path : NULL, r, lk_mono_us() - c->t0);
    unsigned char hdr[LWS_PRE + 2048];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    if (lws_add_http_common_headers(wsi, (unsigned)r->status,
                                    r->content_type ? r->content_type : "application/json",
                                    (lws_filepos_t)r->len, &p, end))
        return -1;
    for (int i = 0; i < r->nheaders; i++)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)r->headers[i].name,
                                        (const unsigned char *)r->headers[i].value,
                                        (int)strlen(r->headers[i].value), &p, end))
            return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (r->len && lws_write(wsi, r->buf + LWS_PRE, r->len, LWS_WRITE_HTTP_FINAL) !=
                      (int)r->len)
        return -1;
    /* A request body must have been read in full to reuse the connection. */
    int keep = !c->too_large && (!c->close_after || c->body_done);
    c->done = 1;
    if (!keep || lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

/* Sends an answer, or, when a request body is still on its way, keeps it
 * until HTTP_BODY_COMPLETION (lws would not deliver the answer earlier). */
static int finish_early(struct lws *wsi, lk_http_conn *c)
{
    if (!c->close_after || c->body_done)
        return respond(wsi, c);
    c->deferred = 1;
    return 0;
}

static int run_route(lk_broker *b, struct lws *wsi, lk_http_conn *c)
{
    lk_http_req req = {
        .b = b,
        .wsi = wsi,
        .method = c->method,
        .path = c->path ? c->path : "",
        .path_len = c->path ? strlen(c->path) : 0,
        .body = c->route->reads_body ? (c->body ? c->body : "") : NULL,
        .body_len = c->body_len,
    };
    c->route->fn(&req, &c->resp);
    return finish_early(wsi, c);
}

/* The request's Content-Length: 0 when absent, -1 when unreadable. */
static long long content_length(struct lws *wsi)
{
    char cl[32];
    int n = lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    if (n == 0)
        return 0;
    char *end;
    long long v = n > 0 ? strtoll(cl, &end, 10) : -1;
    return n < 0 || end == cl || v < 0 ? -1 : v;
}

static int on_http(lk_broker *b, struct lws *wsi, lk_http_conn *c, const char *path,
                   size_t len)
{
    LK_COUNT(b->metrics.http_requests);
    c->t0 = lk_mono_us();
    char *uri;
    int ulen;
    c->method = lws_http_get_uri_and_method(wsi, &uri, &ulen);
    /* With a body on its way, answers wait for it (see finish_early). */
    c->close_after = content_length(wsi) != 0;
    const lk_http_route *route = find_route(path, len);
    c->matched = route;
    if (!route) {
        lk_http_resp_error(&c->resp, 404, "not_found", "not found");
        return finish_early(wsi, c);
    }
    if (c->method < 0 || c->method >= 32 || !(route->methods & M(c->method))) {
        char allow[96] = "";
        size_t n = 0;
        for (int m = 0; m < (int)(sizeof method_names / sizeof method_names[0]); m++)
            if (route->methods & M(m))
                n += (size_t)snprintf(allow + n, sizeof allow - n, "%s%s",
                                      n ? ", " : "", method_names[m]);
        lk_http_resp_error(&c->resp, 405, "method_not_allowed", "method not allowed");
        lk_http_resp_header(&c->resp, "Allow:", allow);
        return finish_early(wsi, c);
    }
    c->route = route;
    if (len > LK_HTTP_PATH_MAX) {
        lk_http_resp_error(&c->resp, 414, "bad_request", "path too long");
        return finish_early(wsi, c);
    }
    c->path = strndup(path, len);
    if (!c->path)
        return -1;
    if (!route->reads_body)
        return run_route(b, wsi, c);

    long long clen = content_length(wsi);
    if (clen > LK_HTTP_BODY_MAX || clen < 0) {
        lk_http_resp_error(&c->resp, 413, "too_large", "request body too large");
        c->too_large = 1;
        c->close_after = 1;
        return finish_early(wsi, c);
    }
    if (clen <= 0)
        return run_route(b, wsi, c);
    return 0; /* the body arrives in HTTP_BODY */
}

static int on_body(struct lws *wsi, lk_http_conn *c, const char *in, size_t len)
{
    /* Body bytes with no request of ours in progress: after a bodyless
     * request completes, lws may rebind the protocol and hand further bytes
     * to a fresh, untagged block that lk_http_cleanup would never free.
     * Nothing can be framed from them, so the connection ends. */
    if (c->kind != LK_CONN_HTTP || c->done)
        return -1;
    if (!len)
        return 0;
    if (c->deferred || c->too_large || !c->route || !c->route->reads_body) {
        /* Read and dropped, up to a point. */
        c->discarded += len;
        return c->discarded > LK_HTTP_DISCARD_MAX ? -1 : 0;
    }
    if (c->body_len + len > LK_HTTP_BODY_MAX) {
        c->too_large = 1;
        return 0;
    }
    if (c->body_len + len + 1 > c->body_cap) {
        size_t ncap = c->body_cap ? c->body_cap * 2 : 1024;
        while (ncap < c->body_len + len + 1)
            ncap *= 2;
        char *nb = realloc(c->body, ncap);
        if (!nb)
            return -1;
        c->body = nb;
        c->body_cap = ncap;
    }
    memcpy(c->body + c->body_len, in, len);
    c->body_len += len;
    c->body[c->body_len] = '\0';
    return 0;
}

/* Only /v1/realtime upgrades to WebSocket. An upgrade elsewhere is
 * answered like an unknown path (404), then the connection is closed. */
static int confirm_upgrade(struct lws *wsi, const char *what)
{
    char uri[64];
    int n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    if (what && strcmp(what, "websocket") == 0 && n > 0 &&
        strcmp(uri, "/v1/realtime") == 0)
        return 0;
    /* lws has not allocated the per-connection data yet at this point. */
    lk_http_conn tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.kind = LK_CONN_HTTP;
    tmp.t0 = lk_mono_us();
    char *u;
    int ulen;
    tmp.method = lws_http_get_uri_and_method(wsi, &u, &ulen);
    tmp.close_after = 1;
    lk_http_resp_error(&tmp.resp, 404, "not_found", "not found");
    respond(wsi, &tmp);
    lk_http_cleanup(&tmp);
    return -1;
}

int lk_http_callback(lk_broker *b, struct lws *wsi,
                     enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    lk_http_conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        if (!c)
            return -1;
        lk_http_cleanup(c);
        c->kind = LK_CONN_HTTP;
        return on_http(b, wsi, c, in ? in : "", in ? strlen(in) : 0);
    case LWS_CALLBACK_HTTP_BODY:
        return c ? on_body(wsi, c, in, len) : -1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (c)
            c->body_done = 1;
        if (c && c->deferred) {
            c->deferred = 0;
            return respond(wsi, c);
        }
        if (!c || !c->route || c->done)
            return 0;
        if (c->too_large) {
            lk_http_resp_error(&c->resp, 413, "too_large", "request body too large");
            return respond(wsi, c);
        }
        return run_route(b, wsi, c);
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return confirm_upgrade(wsi, in);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        lk_http_cleanup(c);
        return 0;
    default:
        return -2;
    }
}
