/*
 * listener.h - the listen socket and the lws context around it.
 *
 * The broker binds its own listen socket (SO_REUSEADDR + SO_REUSEPORT) and
 * gives lws a context without a listener (CONTEXT_PORT_NO_LISTEN_SERVER).
 * The listen socket is adopted as a raw file on the "acceptor" protocol,
 * which accept4()s in a loop and adopts each connection on the prelude
 * protocol (see prelude.h); thread 0 adopts the signalfd the same way.
 * Each service thread does all this with its own context and its own
 * listen socket on the same port: the kernel spreads new connections over
 * the SO_REUSEPORT sockets, and a connection stays with the thread that
 * accepted it. (lws 4.1.6 as Debian builds it has one service thread per
 * context, and sets SO_REUSEPORT itself only for several threads in one
 * context.)
 *
 * lws's own ERR/WARN log lines are routed into the broker's JSON log
 * through a process-wide hook (lws offers no per-context one), installed
 * once with lk_listener_log_hook.
 *
 * Thread safety: lk_listener_start and lk_listener_destroy on the thread
 * that creates the contexts (main), one broker at a time; the rest on the
 * broker's service thread.
 */
#ifndef LK_BROKER_LISTENER_H
#define LK_BROKER_LISTENER_H

#include <stddef.h>

#include "broker.h"

/* Lets lws's header buffer hold a whole 16 KiB request head with room to
 * spare (the prelude refuses heads over LK_PRELUDE_MAX before that). */
#define LK_MAX_HEADER_DATA 32768

/* lws allocates rx_buffer_size + LWS_PRE + 4 bytes for every WebSocket
 * connection and delivers larger messages in pieces of this size, which
 * session.c reassembles. 228 makes that 248 bytes, one 256-byte malloc
 * chunk, and still holds any control frame (125 bytes) whole. lws also
 * reads at most rx_buffer_size + LWS_PRE bytes from a connection per
 * service pass; lk_sessions_read_more reads on from busy clients. */
#define LK_RX_CHUNK 228

/* Routes lws's log lines into `log` (NULL: drops them) when the broker has
 * one service thread; with more, lws is told to log nothing (see
 * listener.c). `log` must outlive every context. */
void lk_listener_log_hook(lk_log *log, size_t threads);

/* Binds (thread 0: the configured port, and sets b->port; other threads:
 * b->port, which thread 0 has set), creates the context and adopts the
 * listen socket and, on thread 0, b->signal_fd (which lws then owns:
 * b->signal_fd becomes -1). On failure returns -1 with the reason in
 * `why`. */
int lk_listener_start(lk_broker *b, char *why, size_t why_len);

/* Closes the listen socket; connections in progress are unaffected. */
void lk_listener_stop_accepting(lk_broker *b);

/* Destroys the context (closing every connection). NULL-safe. */
void lk_listener_destroy(lk_broker *b);

#endif
