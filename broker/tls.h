/*
 * tls.h - https:// and wss:// on the broker's listener (--tls-cert,
 * --tls-key), TLS 1.2 or later only.
 *
 * Why not plain lws TLS: the broker reads every request head itself before
 * lws does (prelude.h) to move a browser's `bearer.<token>` subprotocol
 * into Authorization, which lws 4.1.6 cannot read from a long
 * Sec-WebSocket-Protocol list; that needs the plaintext. So with TLS on,
 * each accepted connection is adopted on a second vhost as a raw socket
 * with lws TLS, and its plaintext is carried through a socketpair whose
 * other end enters the same path as a plain connection (prelude, HTTP,
 * WebSocket). Nothing behind it knows TLS is there. The cost is one
 * socketpair (two descriptors) and one extra copy per direction per TLS
 * connection.
 *
 * Certificates: the chain and key are read and checked against each other
 * at start (a mismatch stops the broker) and again on SIGHUP, when a
 * failure keeps the running pair. Renewing a certificate is: replace the
 * files, `kill -HUP` (systemd: `systemctl reload latchkey-broker`).
 * Existing connections keep the certificate they were made with.
 *
 * Ownership: lk_tls_start stores the state in b->tls; lk_tls_destroy
 * frees it after the lws context is gone (NULL is a no-op).
 * Thread safety: service loop thread only.
 */
#ifndef LK_BROKER_TLS_H
#define LK_BROKER_TLS_H

#include <stddef.h>

#include "broker.h"

typedef struct lk_tls lk_tls;

/* The context options TLS needs (LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT
 * when b->cfg has a certificate, else 0). */
unsigned long long lk_tls_context_options(const lk_broker *b);

/* When the config names a certificate, creates the TLS vhost on b->ctx
 * and loads the pair; b->tls stays NULL otherwise. -1 with `why`. */
int lk_tls_start(lk_broker *b, char *why, size_t why_len);

/* Takes an accepted TCP connection `fd` (whose socket b->sockets already
 * counts). Returns 0 once its plaintext side is in the prelude, which then
 * owns that count; -1 otherwise, with `fd` closed: the caller undoes the
 * count. */
int lk_tls_adopt(lk_broker *b, int fd);

/* Re-reads b->cfg's certificate and key (SIGHUP). On failure the running
 * pair stays and `why` says what is wrong; -1. */
int lk_tls_reload(lk_broker *b, char *why, size_t why_len);

void lk_tls_destroy(lk_tls *t);

#endif
