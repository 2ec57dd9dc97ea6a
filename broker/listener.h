/*
 * listener.h - the listen socket and the lws context around it.
 *
 * The broker binds its own listen socket (SO_REUSEADDR + SO_REUSEPORT) and
 * gives lws a context without a listener (CONTEXT_PORT_NO_LISTEN_SERVER).
 * The listen socket is adopted as a raw file on the "acceptor" protocol,
 * which accept4()s in a loop and adopts each connection on the prelude
 * protocol (see prelude.h); a signalfd is adopted the same way. This is
 * the pattern that lets several service loops share one port later.
 *
 * lws's own ERR/WARN log lines are routed into the broker's JSON log
 * through a process-wide hook (lws offers no per-context one).
 *
 * Thread safety: service loop thread only.
 */
#ifndef LK_BROKER_LISTENER_H
#define LK_BROKER_LISTENER_H

#include <stddef.h>

#include "broker.h"

/* Lets lws's header buffer hold a whole 16 KiB request head with room to
 * spare (the prelude refuses heads over LK_PRELUDE_MAX before that). */
#define LK_MAX_HEADER_DATA 32768

/* Binds, creates the context and adopts the listen socket and
 * b->signal_fd (which lws then owns: b->signal_fd becomes -1). On failure
 * returns -1 with the reason in `why`. */
int lk_listener_start(lk_broker *b, char *why, size_t why_len);

/* Closes the listen socket; connections in progress are unaffected. */
void lk_listener_stop_accepting(lk_broker *b);

/* Destroys the context (closing every connection). NULL-safe. */
void lk_listener_destroy(lk_broker *b);

#endif
