/*
 * gate.h - the request gate: how a connection that is not a WebSocket
 * upgrade reaches lws's HTTP server (see prelude.h for the choice).
 *
 * lws gets one end of a socketpair and the gate passes it the client's
 * requests one at a time, each only once lws has read all of the previous
 * one (the socketpair's send queue is empty). lws 4.1.6 must never find
 * the head of a request with a body among bytes it read together with an
 * earlier request: it then parses that head from its buffered-input list
 * and, in lws_http_action, feeds the head itself to HTTP_BODY and loops
 * forever once the connection goes back to keep-alive (or frees the
 * connection twice if it closes instead). Pipelined requests did exactly
 * that, spinning the service loop so that even SIGTERM went unread.
 *
 * Each head is checked with lk_prelude_frame; the gate passes the head
 * (rewritten if it carries a bearer subprotocol) and exactly the
 * Content-Length bytes after it, and refuses the rest: it stops passing
 * requests, lets lws answer what it has and close on the EOF, then sends
 * its own answer (400, or 431 for a head over LK_PRELUDE_MAX) after lws's
 * last byte. An upgrade arriving on a kept-alive connection turns the gate
 * into a plain byte pipe, since lws upgrades or closes. Answers flow back
 * unchanged; once lws closes its end, the gate shuts down its write side
 * and reads until the client closes (for a second at most), so the last
 * answer is not lost to a reset.
 *
 * Costs: a socketpair (two descriptors), one copy per direction, a buffer
 * while a head or body is being passed on (none on an idle connection).
 * lws sees the client's address through lk_gate_peer.
 *
 * Ownership: a gate is shared by the client's wsi and the gate's end of
 * the socketpair (both on LK_PROTO_PRELUDE) and freed when both are gone.
 * Thread safety: service loop thread only.
 */
#ifndef LK_BROKER_GATE_H
#define LK_BROKER_GATE_H

#include <stddef.h>

#include "broker.h"

typedef struct lk_gate lk_gate;

/* Puts the client connection `client` (a raw wsi on LK_PROTO_PRELUDE)
 * behind a new gate; `pre` holds the bytes already read from it. The gate
 * is stored in *gate whenever one was made, even on failure, for
 * lk_gate_client_gone. *handed_off is set once lws's HTTP server counts
 * the connection in b->sockets. Returns 0, or -1 if the client must be
 * closed. */
int lk_gate_start(lk_broker *b, struct lws *client, const char *pre, size_t pre_len,
                  lk_gate **gate, int *handed_off);

/* The gate of a wsi that is a gate's end of a socketpair, else NULL. */
lk_gate *lk_gate_of_pipe(struct lws *wsi);

/* RAW_RX_FILE and RAW_WRITEABLE_FILE of the client's wsi and of the gate's
 * end of the socketpair: 0, or -1 to close that wsi. */
int lk_gate_client_rx(lk_gate *g);
int lk_gate_client_writeable(lk_gate *g);
int lk_gate_pipe_rx(lk_gate *g);
int lk_gate_pipe_writeable(lk_gate *g);

/* WSI_DESTROY of either side; the gate is freed after the second. */
void lk_gate_client_gone(lk_gate *g);
void lk_gate_pipe_gone(lk_gate *g);

/* The client's address for a wsi of lws's HTTP server (written into `buf`),
 * also when a gate stands in between; NULL if unknown. */
const char *lk_gate_peer(struct lws *wsi, char *buf, size_t len);

/* Frees what a gate attached to a wsi of lws's HTTP server; called from
 * its WSI_DESTROY. */
void lk_gate_forget(struct lws *wsi);

#endif
