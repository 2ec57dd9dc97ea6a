/*
 * channel.h - the channel registry: channels keyed by (workspace, name)
 * in a hash table, with both indexes the broker needs:
 *   - channel -> its subscribers (a list with O(1) removal), for fan-out;
 *   - session -> its subscriptions (an lk_sublist the session owns), for
 *     unsubscribe, capability re-checks and cleanup on close.
 * Each channel also holds its sequence counter and a ring of the last
 * `history` message frames (shared references) for `since`.
 *
 * Seq never goes backwards for a (workspace, name), whatever other
 * workspaces do:
 *   - A channel with no subscribers stays, idle, with its seq and history.
 *     At most LK_CHAN_IDLE_MAX channels are idle; beyond that the oldest
 *     idle channel of the workspace holding the most idle channels is
 *     evicted, so a workspace at or under its fair share never loses one
 *     to another workspace's churn.
 *   - An evicted channel with messages leaves a seq record (about 64
 *     bytes: two independently seeded hashes of its workspace and name,
 *     and its seq), and the channel comes back with that seq. At most
 *     LK_CHAN_SEQ_KEPT_MAX records are kept (about 6.4 MiB), shared out
 *     like idle channels.
 *   - A record dropped from a workspace over its share is folded into that
 *     workspace's floor table (LK_CHAN_SEQ_FLOOR_SLOTS seqs, 2 KiB, kept
 *     for the process's life): a new channel there starts at the highest
 *     seq dropped into its slot, a slot shared by names hashing alike.
 * So seq grows by exactly 1 per message unless a workspace alone churns
 * through more than its share of records; then it may jump forward.
 * Workspace records are freed once empty and floor-less; their number is
 * bounded by the workspaces the registry holds.
 *
 * History memory: every recorded frame is charged its payload plus
 * LK_HISTORY_ENTRY_OVERHEAD (frame header, LWS_PRE headroom, up to
 * LK_FRAME_SLACK_MAX unused bytes, its ring slot). A channel keeps at most
 * `history` frames and LK_HISTORY_CHANNEL_BYTES; all channels together at
 * most LK_HISTORY_TOTAL_BYTES, beyond which the oldest frames are dropped,
 * whichever channel holds them. Rings grow on demand (doubling up to
 * `history`) and shrink when three quarters empty, so ring slots add at
 * most three slots per held frame beyond the charge.
 *
 * Service threads: subscriber lists are kept per thread, so a thread can
 * walk its own list of a channel without the hub lock while others change
 * theirs (lists change only under the lock, by their own thread), and a
 * channel with subscribers on a thread, or pinned for it, is never freed.
 *
 * Ownership: the map owns channels and subscriptions; lk_chanmap_destroy
 * frees everything (call it after every session has gone). Frames in the
 * history are referenced, not copied: they belong to the map alone.
 * Thread safety: every call under the hub lock (hub.h), except walking
 * lk_channel_subscribers(ch, own thread) as said above.
 */
#ifndef LK_BROKER_CHANNEL_H
#define LK_BROKER_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define LK_THREADS_MAX 64
#define LK_CHAN_IDLE_MAX 10000
#define LK_CHAN_SEQ_KEPT_MAX 100000
#define LK_CHAN_SEQ_FLOOR_SLOTS 256
#define LK_HISTORY_CHANNEL_BYTES ((size_t)4 << 20)
#define LK_HISTORY_TOTAL_BYTES ((size_t)256 << 20)
/* Unused bytes a recorded frame may carry past its payload: fan-out trims
 * frames to this, so history charges stay close to real memory. */
#define LK_FRAME_SLACK_MAX 64
/* Charged per history entry on top of its payload. */
#define LK_HISTORY_ENTRY_OVERHEAD \
    (sizeof(lk_frame) + LWS_PRE + LK_FRAME_SLACK_MAX + 4 * sizeof(void *))

typedef struct lk_channel lk_channel;
typedef struct lk_chanmap lk_chanmap;

typedef struct lk_sub {
    lk_channel *ch;
    void *owner;                  /* the subscribing session */
    size_t thread;                /* the owner's service thread */
    uint64_t from_seq;            /* channel seq when it subscribed: later
                                   * messages only are delivered live */
    struct lk_sub *cprev, *cnext; /* the channel's subscribers */
    struct lk_sub *sprev, *snext; /* the owner's subscriptions */
} lk_sub;

/* A session's subscriptions; zero-initialised is empty. */
typedef struct lk_sublist {
    lk_sub *head;
    size_t count;
} lk_sublist;

/* `history`: frames kept per channel (0 = none); `nthreads`: service
 * threads (1..LK_THREADS_MAX), each with its own subscriber lists. NULL on
 * ENOMEM or a bad thread count. */
lk_chanmap *lk_chanmap_create(size_t history, size_t nthreads);
void lk_chanmap_destroy(lk_chanmap *map);

size_t lk_chanmap_channels(const lk_chanmap *map);
size_t lk_chanmap_subscriptions(const lk_chanmap *map);
/* History bytes charged across all channels (see above). */
size_t lk_chanmap_history_bytes(const lk_chanmap *map);

/* The channel, or NULL if it does not exist. */
lk_channel *lk_chanmap_find(lk_chanmap *map, const char *ws, size_t ws_len,
                            const char *name, size_t name_len);
/* The channel, created if missing. NULL on ENOMEM or over-long names
 * (workspace > 67, name > 200 bytes). */
lk_channel *lk_chanmap_get(lk_chanmap *map, const char *ws, size_t ws_len,
                           const char *name, size_t name_len);

/* Subscribes `owner` (its list `sl`), served by service thread `thread`,
 * to `ch`, from the channel's current seq on. NULL on ENOMEM. Does not
 * check for duplicates: use lk_sublist_find first. */
lk_sub *lk_chanmap_subscribe(lk_chanmap *map, lk_channel *ch, size_t thread,
                             void *owner, lk_sublist *sl);
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
/* The subscribers served by `thread`. */
lk_sub *lk_channel_subscribers(const lk_channel *ch, size_t thread);
/* A pinned channel is never evicted: a message on its way to another
 * thread's subscribers pins it until delivered. Pins nest. */
void lk_chanmap_pin(lk_chanmap *map, lk_channel *ch);
void lk_chanmap_unpin(lk_chanmap *map, lk_channel *ch);
size_t lk_channel_subscriber_count(const lk_channel *ch);

/* Appends a message frame (whose seq is set) to the channel's history,
 * taking a reference. Drops the channel's oldest beyond its count or byte
 * limit, then the oldest of any channel beyond LK_HISTORY_TOTAL_BYTES. A
 * frame too big for either byte limit on its own is not kept; neither is
 * one met by ENOMEM. O(1) amortised. */
void lk_chanmap_record(lk_chanmap *map, lk_channel *ch, lk_frame *f);
/* History size and the i-th frame, oldest first. */
size_t lk_channel_history_len(const lk_channel *ch);
lk_frame *lk_channel_history_at(const lk_channel *ch, size_t i);
/* Ring slots allocated for the history (0 while it is empty). */
size_t lk_channel_history_capacity(const lk_channel *ch);

#endif
