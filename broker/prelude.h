/*
 * prelude.h - reads each new connection's HTTP request head before lws
 * sees it, to carry a `bearer.<token>` WebSocket subprotocol past lws.
 *
 * Why: lws 4.1.6 copies Sec-WebSocket-Protocol into a 128-byte buffer
 * and refuses the upgrade when the list is longer (server-ws.c,
 * "protocol list too long"), and a JWT alone is several hundred bytes. So
 * every accepted socket is first adopted as a raw descriptor, and the
 * prelude peeks at its request head (at most LK_PRELUDE_MAX bytes, else
 * 431) without consuming it. A head without a `bearer.` entry is handed
 * to lws's HTTP server untouched, so lws reads the whole request itself.
 * A head with one (and no body) is consumed and rewritten: the `bearer.`
 * entries leave Sec-WebSocket-Protocol and the first non-empty one becomes
 * the request's only Authorization header (the subprotocol is the
 * preferred token source, so it replaces a client-sent one); the socket is
 * then handed to lws with the rewritten head as already-read bytes
 * (lws_adopt_socket_vhost_readbuf on a dup of the descriptor). Body bytes
 * are never passed that way: lws 4.1.6 mishandles them. Later requests on
 * a kept-alive connection go to lws directly.
 *
 * Thread safety: service loop thread only. lk_prelude_rewrite is pure.
 */
#ifndef LK_BROKER_PRELUDE_H
#define LK_BROKER_PRELUDE_H

#include <stddef.h>

#include "broker.h"

#define LK_PRELUDE_MAX 24576      /* request head limit, > the SPEC's 16 KiB */
#define LK_PRELUDE_TIMEOUT_SECS 10

/* Offset just past the "\r\n\r\n" ending the request head in buf[0..len),
 * or 0 if it has not arrived. */
size_t lk_prelude_head_end(const char *buf, size_t len);

/* Upper bound of lk_prelude_rewrite's output for `len` input bytes. */
#define LK_PRELUDE_OUT_MAX(len) (2 * (len) + 64)

/* Rewrites a request whose head is in[0..head_len) followed by body bytes
 * up to `len`, as described above, into `out` (LK_PRELUDE_OUT_MAX(len)
 * bytes). Requests without a `bearer.` entry, or with obsolete header
 * folding, are copied unchanged. Returns the output length. */
size_t lk_prelude_rewrite(const char *in, size_t head_len, size_t len, char *out);

size_t lk_prelude_conn_size(void);

/* Adopts an accepted connection (plain TCP, or the plaintext end of a TLS
 * socketpair) on LK_PROTO_PRELUDE. The caller has counted it in
 * b->sockets; on NULL, see lk_prelude_destroy for who settles that. */
struct lws *lk_prelude_adopt(lk_broker *b, int fd);

/* Handles the raw-socket reasons of LK_PROTO_PRELUDE. */
int lk_prelude_callback(lk_broker *b, struct lws *wsi,
                        enum lws_callback_reasons reason, void *user,
                        void *in, size_t len);

/* Releases a prelude connection (WSI_DESTROY) and settles the socket
 * count when it never reached lws's HTTP server. */
void lk_prelude_destroy(lk_broker *b, void *user);

#endif
