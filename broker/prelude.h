/*
 * prelude.h - what lws gets to see of a new connection.
 *
 * Every accepted socket is first adopted as a raw descriptor, and the
 * prelude reads its first request head (at most LK_PRELUDE_MAX bytes; the
 * bytes are consumed, so a client that stops halfway costs nothing until
 * the head timeout), then does one of two things:
 *
 * - A well-formed WebSocket upgrade (GET with `Upgrade: websocket`, no
 *   body) is handed to lws's HTTP server with the bytes read so far as
 *   already-read data (lws_adopt_socket_vhost_readbuf, which parses the
 *   head at once). lws 4.1.6 either upgrades such a request or closes the
 *   connection, so nothing after the head is ever parsed as HTTP: later
 *   bytes are WebSocket frames to it. A head carrying a `bearer.<token>`
 *   subprotocol is rewritten first, because lws copies
 *   Sec-WebSocket-Protocol into a 128-byte buffer and refuses the upgrade
 *   when the list is longer (server-ws.c, "protocol list too long"): the
 *   `bearer.` entries leave Sec-WebSocket-Protocol and the first non-empty
 *   one becomes the request's only Authorization header.
 *
 * - Anything else (plain HTTP, malformed heads) goes behind the request
 *   gate (gate.h), which hands lws one request at a time over a
 *   socketpair. lk_prelude_frame is the gate's (and the upgrade check's)
 *   strict reading of a head: what it accepts, lws 4.1.6 frames the same
 *   way; the rest is refused (400; 431 for heads over LK_PRELUDE_MAX).
 *
 * Thread safety: service loop thread only. lk_prelude_rewrite,
 * lk_prelude_head_end and lk_prelude_frame are pure.
 */
#ifndef LK_BROKER_PRELUDE_H
#define LK_BROKER_PRELUDE_H

#include <stddef.h>
#include <stdint.h>

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

/* How lws will read a request, for the heads the prelude lets through. */
typedef struct lk_prelude_req {
    int upgrade;              /* WebSocket upgrade: lws upgrades or closes */
    int bearer;               /* a `bearer.` subprotocol entry to rewrite */
    uint64_t body;            /* body bytes that follow the head */
} lk_prelude_req;

/* Refusals of lk_prelude_frame. */
typedef enum lk_prelude_verdict {
    LK_PRELUDE_OK = 0,
    LK_PRELUDE_MALFORMED,     /* bare CR or LF, obs-fold, odd names, methods,
                                 versions, targets or Content-Length values */
    LK_PRELUDE_CHUNKED,       /* Transfer-Encoding (lws ignores it) */
    LK_PRELUDE_NO_LENGTH,     /* POST, PUT or PATCH without Content-Length:
                                 lws would read the next 100 MiB as its body */
} lk_prelude_verdict;

/* Checks the request head in[0..head_len) (head_len as returned by
 * lk_prelude_head_end) strictly, so that lws reads it exactly as the
 * prelude does, and says how lws will frame it. */
lk_prelude_verdict lk_prelude_frame(const char *in, size_t head_len, lk_prelude_req *req);

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
void lk_prelude_destroy(lk_broker *b, struct lws *wsi, void *user);

#endif
