/*
 * session.h - one latchkey.v1 WebSocket connection: the connect checks,
 * the bounded outbound queue of shared frames, reassembly of fragmented
 * client messages, publish rate limiting, token expiry timers and the
 * dispatch of client ops.
 *
 * A session lives in lws's per-connection memory (LK_PROTO_MAIN's user
 * space). It is set up in ESTABLISHED and torn down in CLOSED (or, as a
 * safety net, WSI_DESTROY); everything it owns is released there.
 *
 * Closing is always deferred to WRITEABLE: a close records the code,
 * optionally queues a final `error` frame, and asks for WRITEABLE, where
 * the queue is flushed and the close handed to lws, which sends the Close
 * frame and then waits (briefly) for the client's own before dropping
 * TCP, as RFC 6455 7.1.1 wants. A timeout makes sure a peer that stopped
 * reading is dropped anyway.
 *
 * Thread safety: service loop thread only.
 */
#ifndef LK_BROKER_SESSION_H
#define LK_BROKER_SESSION_H

#include <stddef.h>

#include "broker.h"
#include "frame.h"

/* Bytes of per-connection memory lws must allocate for a session. */
size_t lk_session_size(void);

/* Handles the WebSocket reasons of LK_PROTO_MAIN. */
int lk_session_callback(lk_broker *b, struct lws *wsi,
                        enum lws_callback_reasons reason, void *user,
                        void *in, size_t len);

/* Releases a session's resources; idempotent (CLOSED and WSI_DESTROY). */
void lk_session_cleanup(lk_broker *b, void *user);

/* Queues a shared message frame (taking a reference), stamped `now`
 * (lk_mono_us), and requests WRITEABLE. Returns 0, or -1 if the session is
 * closing or its queue overflowed, in which case it is being closed with
 * 4408. */
int lk_session_enqueue(lk_session *s, lk_frame *f, int64_t now);

/* Reads on (boundedly) from the sessions that received more than a small
 * message in the last service pass: lws reads little per pass (see
 * LK_RX_CHUNK). Call after every lws_service. */
void lk_sessions_read_more(lk_broker *b);

/* Closes every open session whose key is no longer active (error
 * forbidden, 4403). Called after the key table reloads. */
void lk_sessions_recheck_keys(lk_broker *b);

/* Closes every session with 1001 (shutdown). */
void lk_sessions_shutdown(lk_broker *b);

#endif
