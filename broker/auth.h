/*
 * auth.h - the handshake checks of a WebSocket connect: the Origin
 * allow-list, finding the client token, and verifying it against the key
 * table with the broker's limits.
 *
 * Token sources, in order: a `bearer.<token>` subprotocol (moved into the
 * Authorization header by the prelude, see prelude.h, because lws 4.1.6
 * cannot read long subprotocol lists), then `Authorization: Bearer`, then
 * the `access_token` query parameter. The first non-empty one wins.
 *
 * Ownership: lk_auth_verify returns claims the caller destroys with
 * lk_claims_destroy. Token spans point into the caller's buffer.
 * Thread safety: service loop thread only.
 */
#ifndef LK_BROKER_AUTH_H
#define LK_BROKER_AUTH_H

#include <stddef.h>

#include "broker.h"

/* Finds the token in the handshake headers of `wsi` (valid during
 * FILTER_PROTOCOL_CONNECTION and ESTABLISHED), copying through `buf`
 * (which must hold max_http_header_data + 1 bytes, so nothing lws holds
 * can be too long for it). Returns 1 with *tok and *len set, or 0 if no source
 * holds a non-empty token. */
int lk_auth_find_token(struct lws *wsi, char *buf, size_t cap,
                       const char **tok, size_t *len);

/* 1 if the connect's Origin passes --allowed-origins (always when unset). */
int lk_auth_origin_ok(lk_broker *b, struct lws *wsi);

/* Verifies a token with the configured audience, max TTL and the 8 KiB
 * size limit, counting the outcome in the metrics. LK_OK and *out, or the
 * lk_token_verify error with a message in err. */
int lk_auth_verify(lk_broker *b, const char *tok, size_t len, lk_claims **out,
                   lk_error *err);

/* SPEC error code for a verification failure: "token_expired",
 * "forbidden" or "unauthorized". */
const char *lk_auth_error_code(int rc);
/* WebSocket close code for a verification failure: 4401 or 4403. */
int lk_auth_close_code(int rc);

#endif
