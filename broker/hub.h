/*
 * hub.h - what the service threads share: the channel registry under one
 * lock, an inbox per thread for messages published on another thread,
 * the process-wide socket count, and stop and reload requests.
 *
 * Each service thread runs its own lws context and owns its connections.
 * A publish takes the lock once to give the message its seq, record it in
 * the history and post a copy of the frame to every other thread that has
 * subscribers on the channel; each thread then delivers to its own
 * subscribers without any lock. Posting happens under the lock, so every
 * inbox receives a channel's messages in seq order. A thread that posts
 * into an empty inbox wakes its owner with lws_cancel_service(), the one
 * lws call that is safe from another thread; a busy thread finds the
 * entries on its next wake-up, so wake-ups coalesce under load.
 *
 * Ownership: lk_hub_create returns a hub the caller destroys with
 * lk_hub_destroy (NULL is a no-op) after every thread has stopped; it frees
 * undelivered entries. A posted frame belongs to the hub, then to the
 * thread that takes it.
 * Thread safety: every function may be called from any thread; the ones
 * marked "lock held" need lk_hub_lock.
 */
#ifndef LK_BROKER_HUB_H
#define LK_BROKER_HUB_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "channel.h"
#include "frame.h"

/* Entries an inbox may hold before posts to it are dropped: only a thread
 * stalled for a long time gets there, and its subscribers then see a gap
 * in seq rather than the process running out of memory. */
#define LK_HUB_INBOX_MAX ((size_t)1 << 20)

typedef struct lk_hub lk_hub;

typedef struct lk_hub_entry {
    lk_channel *ch;    /* pinned until lk_hub_done */
    lk_frame *f;       /* the taker's to unref */
} lk_hub_entry;

enum { LK_HUB_STOP = 1, LK_HUB_RELOAD = 2, LK_HUB_KEYS = 3 };

/* 0, or -1 on ENOMEM or a thread count outside 1..LK_THREADS_MAX. */
int lk_hub_create(size_t history, size_t nthreads, lk_hub **out);
void lk_hub_destroy(lk_hub *h);

size_t lk_hub_threads(const lk_hub *h);

/* Registers thread `t`'s context (for wake-ups) and its owner's state
 * (read back with lk_hub_worker, e.g. to sum metrics). */
void lk_hub_attach(lk_hub *h, size_t t, struct lws_context *ctx, void *worker);
void *lk_hub_worker(const lk_hub *h, size_t t);

void lk_hub_lock(lk_hub *h);
void lk_hub_unlock(lk_hub *h);
/* Lock held. */
lk_chanmap *lk_hub_channels(lk_hub *h);

/* Lock held: hands `f` to thread `t` for its subscribers of `ch`, pinning
 * `ch`. Returns 1 if `t` must be woken (lk_hub_wake, after unlocking), 0 if
 * not, -1 if the inbox is full or out of memory (`f` is then freed). */
int lk_hub_post(lk_hub *h, size_t t, lk_channel *ch, lk_frame *f);
void lk_hub_wake(lk_hub *h, size_t t);

/* Thread `t` takes everything posted to it: *out holds the entries, valid
 * until its next lk_hub_take. Cheap when empty (no lock). */
size_t lk_hub_take(lk_hub *h, size_t t, lk_hub_entry **out);
/* Entries waiting in thread `t`'s inbox; exact with the lock held, since
 * posts happen under it. */
size_t lk_hub_pending(const lk_hub *h, size_t t);
/* Unpins the channels of delivered entries (takes the lock once). */
void lk_hub_done(lk_hub *h, const lk_hub_entry *e, size_t n);

/* Process-wide open sockets: adds `delta` and returns the new total. */
size_t lk_hub_sockets_add(lk_hub *h, long delta);
size_t lk_hub_sockets(const lk_hub *h);

/* Asks every thread to stop, to reload its configuration, or (LK_HUB_KEYS,
 * from the thread that polls the registry) to reload its key table; wakes
 * them all. */
void lk_hub_request(lk_hub *h, int what);
int lk_hub_stopping(const lk_hub *h);
/* Grow by one per reload or keys request. */
unsigned lk_hub_reloads(const lk_hub *h);
unsigned lk_hub_key_changes(const lk_hub *h);

#endif
