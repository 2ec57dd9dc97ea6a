/*
 * fanout.h - publishing: one message is minified and serialized once into
 * a refcounted frame under the hub lock (which gives it its seq), recorded
 * in the channel history (as a copy the history owns), and posted as a
 * copy to every other service thread with subscribers on the channel
 * (hub.h). Each thread then queues its frame by reference on each of its
 * subscribers: no per-subscriber allocation, JSON work or lock.
 *
 * Thread safety: a service thread, with its own lk_broker.
 */
#ifndef LK_BROKER_FANOUT_H
#define LK_BROKER_FANOUT_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"

/* A publish's delivery on the publishing thread, finished by
 * lk_fanout_finish. */
typedef struct lk_fanout_local {
    lk_sub *subs;      /* this thread's subscribers, NULL if none */
    lk_frame *f;       /* the caller's reference */
    uint64_t seq;
    size_t older;      /* entries other threads posted here before it */
} lk_fanout_local;

/* Publishes `data` (valid JSON text, as sent by the publisher) on channel
 * `name` of workspace `ws`. `from` is the publisher's token sub, or NULL
 * (server-side publishes). On success fills *out (its seq is the
 * message's channel seq); the caller may queue an ack, then must call
 * lk_fanout_finish. LK_ENOMEM, or LK_EINVAL for data larger than the
 * scratch buffer, on failure; nothing is sent then. */
int lk_fanout_publish(lk_broker *b, const char *ws, size_t ws_len, const char *name,
                      size_t name_len, const char *data, size_t len, const char *from,
                      lk_fanout_local *out);

/* Delivers what other threads posted here first (their messages on the
 * channel have lower seqs), then the local copies of `l`. */
void lk_fanout_finish(lk_broker *b, lk_fanout_local *l);

/* Delivers everything other threads posted to this one. */
void lk_fanout_drain(lk_broker *b);

#endif
