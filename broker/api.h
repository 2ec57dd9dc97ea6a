/*
 * api.h - the HTTP API of SPEC section 5 on the broker's listener:
 *
 *   POST /v1/tokens                       token exchange
 *   POST /v1/channels/<channel>/messages  server-side publish
 *   GET  /v1/key                          the presented key's details
 *
 * Each handler runs, in order: the path's shape (404 before any
 * authentication), the method (405 with Allow), the API key from
 * `Authorization: Bearer` (401, see apikey.h), the workspace's rate
 * limits (429 with Retry-After; see ratelimit.h), then its own checks
 * (400 naming the field, 403 naming the missing scope). Every response
 * after authentication carries X-RateLimit-Limit/-Remaining/-Reset.
 *
 * Request bodies are strict: an unknown field is a 400 naming it, so a
 * typo never silently drops an option.
 *
 * There is no CORS: API keys belong on servers, so no Access-Control-*
 * header is ever sent and a browser's preflight gets 405.
 *
 * lk_api_observe is called by http.c once per HTTP response: it writes
 * the access log line (method, route template, status, duration, and the
 * key id and workspace once authenticated; never the path, query string,
 * key or token) and counts the request in the metrics.
 *
 * Ownership: lk_api_create returns state the caller destroys with
 * lk_api_destroy (NULL is a no-op).
 * Thread safety: service loop thread only.
 */
#ifndef LK_BROKER_API_H
#define LK_BROKER_API_H

#include <stdint.h>

#include "broker.h"
#include "http.h"

typedef struct lk_api lk_api;

/* Opens the API's registry handle (for key details on cache misses) and
 * its tables. On failure returns -1 with the reason in `why`. */
int lk_api_create(lk_broker *b, lk_api **out, char *why, size_t why_len);
void lk_api_destroy(lk_api *api);

/* Drops cached keys that were revoked. Call after the key table reloads. */
void lk_api_keys_changed(lk_broker *b);

/* Route handlers for http.c's table. */
void lk_api_tokens(const lk_http_req *req, lk_http_resp *resp);
void lk_api_publish(const lk_http_req *req, lk_http_resp *resp);
void lk_api_key(const lk_http_req *req, lk_http_resp *resp);

/* Access log and request metrics for one HTTP response. `route` is the
 * route's template (NULL for an unknown path); `method` is LWSHUMETH_*. */
void lk_api_observe(lk_broker *b, struct lws *wsi, int method, const char *route,
                    const lk_http_resp *resp, int64_t duration_us);

#endif
