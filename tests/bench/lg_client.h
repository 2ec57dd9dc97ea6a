/*
 * lg_client.h - the protocols the load generator speaks on top of its
 * WebSocket connections, each taken to the same three steps: handshake
 * (ready when subscriptions are in place), deliveries, and publishes.
 *
 *   latchkey  latchkey.v1 + bearer.<token> subprotocols, text frames split
 *             on '\n'; ready on `welcome`, or on every `subscribed`.
 *   nats      no subprotocol; the NATS client protocol as one byte stream
 *             over binary frames: INFO, then CONNECT, SUB..., PING; ready on
 *             PONG. Server PINGs are answered; -ERR lines are tallied.
 *   mqtt      `mqtt` subprotocol, MQTT 3.1.1 as a byte stream over binary
 *             frames: CONNECT (clean session, keepalive 600 s, client id
 *             lg-<pid>-<index>); ready on CONNACK 0, or on a SUBACK granting
 *             every filter (QoS 0).
 *   raw       the `limit` server's protocol: the subscriptions are in the
 *             path (/sub/<channel>[,<channel>]), so ready on the 101;
 *             publishes and deliveries are text lines "<channel> <payload>".
 *
 * A connection subscribes to one channel, its "own": --channel, or with a
 * pattern the pattern's name for offset + its index; with `shared` it also
 * subscribes to --channel. Deliveries say which of the two they came on.
 *
 * Ownership: an lg_client is the caller's and must outlive the lg_net it is
 * attached to; it keeps pointers to the caller's strings.
 * Thread safety: none; one per lg_net.
 */
#ifndef LG_CLIENT_H
#define LG_CLIENT_H

#include <stddef.h>

#include "lg_conn.h"

#define LG_MAX_CHANNEL 200 /* Latchkey's channel name limit */
#define LG_MQTT_KEEPALIVE_S 600

enum { LG_KIND_OWN = 0, LG_KIND_SHARED = 1 };

/* One delivery: the payload JSON as the publisher wrote it. */
typedef void (*lg_deliver_fn)(lg_net *net, lg_conn *c, int kind, const char *p, size_t len);

typedef struct lg_client {
    /* Settings. */
    int proto;               /* enum lg_proto */
    int subscribe;           /* connections subscribe (sub mode) */
    const char *channel;     /* --channel, in Latchkey form */
    const char *pattern;     /* --channel-pattern (one %d), or NULL */
    int offset;              /* --channel-offset */
    int shared;              /* with a pattern: also subscribe to `channel` */
    lg_deliver_fn deliver;
    lg_tally *errors;        /* error replies, by code */

    /* Derived by lg_client_attach. */
    char shared_name[LG_MAX_CHANNEL + 1]; /* `channel` in the protocol's form */
    size_t shared_len;
    int pid;
} lg_client;

/* Checks a --channel-pattern: exactly one %d, no other '%', and names it
 * makes are valid channel names. 0 or -1. */
int lg_client_check_pattern(const char *pattern);
/* The pattern's name for `idx` (Latchkey form). Returns its length, or 0 if
 * it does not fit `cap` (with the NUL). */
size_t lg_client_pattern_name(const char *pattern, long idx, char *out, size_t cap);
/* A valid Latchkey channel name? */
int lg_client_valid_channel(const char *name);

/* Installs the protocol's hooks, subprotocol and default path on `net`
 * (net->path is kept if the caller set one). `token` is used by latchkey
 * only. */
void lg_client_attach(lg_client *cl, lg_net *net, const char *token);

/* Encodes one publish of `payload` on channel `name` (Latchkey form) into
 * `out`, and the frame opcode to send it in. Returns the length, or 0 if it
 * does not fit `cap`. */
size_t lg_client_publish(const lg_client *cl, const char *name, const char *payload, size_t plen,
                         uint8_t *out, size_t cap, int *opcode);

/* Keeps a ready connection alive where the protocol needs the client to
 * (MQTT PINGREQ; the others' servers ping). */
void lg_client_keepalive(lg_client *cl, lg_net *net, lg_conn *c);

#endif
