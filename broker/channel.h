/*
 * channel.h - the channel registry: channels keyed by (workspace, name)
 * in a hash table, with both indexes the broker needs:
 *   - channel -> its subscribers (a list with O(1) removal), for fan-out;
 *   - session -> its subscriptions (an lk_sublist the session owns), for
 *     unsubscribe, capability re-checks and cleanup on close.
 * Each channel also holds its sequence counter and a ring of the last
 * `history` message frames (shared references) for `since`.
 *
 * A channel with no subscribers stays, idle, so its seq and history
 * survive reconnects; idle channels are evicted oldest first beyond
 * LK_CHAN_IDLE_MAX or when all history exceeds LK_HISTORY_TOTAL_BYTES.
 *
 * Ownership: the map owns channels and subscriptions; lk_chanmap_destroy
 * frees everything (call it after every session has gone). Frames in the
 * history are referenced, not copied.
 * Thread safety: service loop thread only.
 */
#ifndef LK_BROKER_CHANNEL_H
#define LK_BROKER_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define LK_CHAN_IDLE_MAX 10000
#define LK_HISTORY_CHANNEL_BYTES (4u << 20)
#define LK_HISTORY_TOTAL_BYTES ((size_t)256 << 20)

typedef struct lk_channel lk_channel;
typedef struct lk_chanmap lk_chanmap;

typedef struct lk_sub {
    lk_channel *ch;
    void *owner;                  /* the subscribing session */
    struct lk_sub *cprev, *cnext; /* the channel's subscribers */
    struct lk_sub *sprev, *snext; /* the owner's subscriptions */
} lk_sub;

/* A session's subscriptions; zero-initialised is empty. */
typedef struct lk_sublist {
    lk_sub *head;
    size_t count;
} lk_sublist;

/* `history`: frames kept per channel (0 = none). NULL on ENOMEM. */
lk_chanmap *lk_chanmap_create(size_t history);
void lk_chanmap_destroy(lk_chanmap *map);

size_t lk_chanmap_channels(const lk_chanmap *map);
size_t lk_chanmap_subscriptions(const lk_chanmap *map);

/* The channel, or NULL if it does not exist. */
lk_channel *lk_chanmap_find(lk_chanmap *map, const char *ws, size_t ws_len,
                            const char *name, size_t name_len);
/* The channel, created if missing. NULL on ENOMEM or over-long names
 * (workspace > 67, name > 200 bytes). */
lk_channel *lk_chanmap_get(lk_chanmap *map, const char *ws, size_t ws_len,
                           const char *name, size_t name_len);

/* Subscribes `owner` (its list `sl`) to `ch`. NULL on ENOMEM. Does not
 * check for duplicates: use lk_sublist_find first. */
lk_sub *lk_chanmap_subscribe(lk_chanmap *map, lk_channel *ch, void *owner,
                             lk_sublist *sl);
/* Removes and frees one subscription. */
void lk_chanmap_unsubscribe(lk_chanmap *map, lk_sublist *sl, lk_sub *s);
void lk_chanmap_unsubscribe_all(lk_chanmap *map, lk_sublist *sl);
/* The owner's subscription to `ch`, or NULL. */
lk_sub *lk_sublist_find(const lk_sublist *sl, const lk_channel *ch);

/* Takes the next seq (first is 1). */
uint64_t lk_channel_next_seq(lk_channel *ch);
uint64_t lk_channel_seq(const lk_channel *ch);
const char *lk_channel_name(const lk_channel *ch, size_t *len);
const char *lk_channel_workspace(const lk_channel *ch, size_t *len);
lk_sub *lk_channel_subscribers(const lk_channel *ch);
size_t lk_channel_subscriber_count(const lk_channel *ch);

/* Appends a message frame (whose seq is set) to the channel's history,
 * taking a reference; drops the oldest beyond the count or byte limit. */
void lk_chanmap_record(lk_chanmap *map, lk_channel *ch, lk_frame *f);
/* History size and the i-th frame, oldest first. */
size_t lk_channel_history_len(const lk_channel *ch);
lk_frame *lk_channel_history_at(const lk_channel *ch, size_t i);

#endif
