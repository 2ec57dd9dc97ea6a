/*
 * http.h - plain HTTP on the broker's listener: a small route table of
 * exact paths (or prefixes) with allowed methods, optional bounded request
 * bodies (LK_HTTP_BODY_MAX, 413 beyond) and JSON responses with extra
 * headers. Unknown paths get 404 and known paths with another method 405
 * with Allow, before any handler runs.
 *
 * Adding a route: write an lk_http_handler and add a line to the table in
 * http.c. The handler runs once the body (if the route reads one) is
 * complete, fills an lk_http_resp, and http.c writes it.
 *
 * Ownership: a response body set through the lk_http_resp_* helpers is
 * owned by the response and freed after it is written.
 * Thread safety: service loop thread only.
 */
#ifndef LK_BROKER_HTTP_H
#define LK_BROKER_HTTP_H

#include <stddef.h>

#include "broker.h"

#define LK_HTTP_BODY_MAX 65536
#define LK_HTTP_MAX_HEADERS 8
#define LK_HTTP_PATH_MAX 2048

typedef struct lk_http_req {
    lk_broker *b;
    struct lws *wsi;      /* for request headers (lws_hdr_copy) */
    int method;           /* LWSHUMETH_* */
    const char *path;     /* as lws decoded it, NUL-terminated */
    size_t path_len;
    const char *body;     /* NULL when the route reads no body */
    size_t body_len;
} lk_http_req;

typedef struct lk_http_header {
    const char *name;     /* static string, e.g. "Retry-After:" */
    char value[128];
} lk_http_header;

typedef struct lk_http_resp {
    int status;
    const char *content_type;
    unsigned char *buf;   /* LWS_PRE headroom, then the body */
    size_t len;
    int nheaders;
    /* LK_HTTP_MAX_HEADERS entries, allocated by the first header: the
     * response lives in lws's per-connection data, which a WebSocket
     * session shares, and must not make every session pay for it. */
    lk_http_header *headers;
    /* Set once an API key is verified, for the access log. */
    char kid[LK_KID_BYTES];
    char workspace[LK_WORKSPACE_MAX + 1];
} lk_http_resp;

typedef void (*lk_http_handler)(const lk_http_req *req, lk_http_resp *resp);

/* Sets the response body (copied). -1 on ENOMEM (the response becomes a
 * bodiless 500). */
int lk_http_resp_body(lk_http_resp *resp, int status, const char *content_type,
                      const char *body, size_t len);
/* {"error":message,"code":code} with `status`. */
int lk_http_resp_error(lk_http_resp *resp, int status, const char *code,
                       const char *message);
/* Adds a header; `name` must include the trailing ':' and be static.
 * -1 when LK_HTTP_MAX_HEADERS are already set. */
int lk_http_resp_header(lk_http_resp *resp, const char *name, const char *value);

size_t lk_http_conn_size(void);

/* Handles the HTTP reasons of LK_PROTO_MAIN; returns -2 for reasons it
 * does not handle (the caller passes them to lws_callback_http_dummy). */
int lk_http_callback(lk_broker *b, struct lws *wsi,
                     enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);

/* Releases an HTTP transaction's buffers; idempotent. */
void lk_http_cleanup(void *user);

#endif
