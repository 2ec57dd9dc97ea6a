/*
 * fanout.h - publishing: one message is minified and serialized once into
 * a refcounted frame, recorded in the channel history, and queued by
 * reference on every subscriber, each of which is asked for WRITEABLE.
 * No per-subscriber allocation or JSON work happens here.
 *
 * Thread safety: service loop thread only.
 */
#ifndef LK_BROKER_FANOUT_H
#define LK_BROKER_FANOUT_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"

/* Publishes `data` (valid JSON text, as sent by the publisher) on `ch`.
 * `from` is the publisher's token sub, or NULL (server-side publishes).
 * On success *seq is the message's channel seq. LK_ENOMEM or LK_EINVAL
 * (data larger than the scratch buffer) on failure; nothing is sent then.
 * Equivalent to lk_fanout_build then lk_fanout_deliver. */
int lk_fanout_publish(lk_broker *b, lk_channel *ch, const char *data,
                      size_t len, const char *from, uint64_t *seq);

/* The first half of a publish: takes the channel's next seq, serializes
 * the message frame (f->seq) and records it in the history. Lets a
 * publisher queue its ack before its own copy of the message. With history
 * on, the frame is trimmed to LK_FRAME_SLACK_MAX spare bytes, the most the
 * history's byte count allows for. Returns the frame (the caller's
 * reference), or NULL on failure with no seq taken. */
lk_frame *lk_fanout_build(lk_broker *b, lk_channel *ch, const char *data,
                          size_t len, const char *from);
/* The second half: queues `f` on every subscriber of `ch` and drops the
 * caller's reference. */
void lk_fanout_deliver(lk_broker *b, lk_channel *ch, lk_frame *f);

#endif
