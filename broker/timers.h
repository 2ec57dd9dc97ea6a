/*
 * timers.h - a service thread's session timers (token expiry warnings and
 * closes, close-handshake deadlines) in one binary min-heap behind a
 * single lws timer.
 *
 * lws 4.1.6 keeps its timers in a sorted linked list and inserts by
 * walking it, so a timer per session made every connect, renewal and
 * close cost O(connections): at 20,000 connections that walk dominated
 * the connect path. The heap makes it O(log n), and lws's list holds one
 * entry for all of them, rescheduled only when the earliest one changes.
 *
 * Ownership: lk_timers_init/lk_timers_fini bracket the heap array; timers
 * are embedded in their owners, which must cancel them before going away.
 * Thread safety: the service thread that owns the lws context.
 */
#ifndef LK_BROKER_TIMERS_H
#define LK_BROKER_TIMERS_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

typedef struct lk_timer lk_timer;
typedef void (*lk_timer_fn)(lk_timer *t);

struct lk_timer {
    int64_t at_us;     /* deadline, lk_mono_us() clock */
    size_t slot;       /* 1 + heap index while armed, else 0 */
    lk_timer_fn fire;
};

typedef struct lk_timers {
    lk_timer **heap;
    size_t n, cap;
    struct lws_context *ctx;
    lws_sorted_usec_list_t sul;
    int64_t sul_at;    /* when the lws timer fires; 0 = not scheduled */
} lk_timers;

void lk_timers_init(lk_timers *ts, struct lws_context *ctx);
/* Cancels the lws timer and stops using lws: call it before destroying
 * the context, whose teardown may still cancel session timers. */
void lk_timers_detach(lk_timers *ts);
/* Frees the heap (timers still armed are forgotten). */
void lk_timers_fini(lk_timers *ts);

/* Arms (or re-arms) `t` to call `fire` at `at_us`. 0, or -1 on ENOMEM
 * (the timer is then not armed). */
int lk_timers_arm(lk_timers *ts, lk_timer *t, int64_t at_us, lk_timer_fn fire);
/* Disarms `t`; a no-op if it is not armed. */
void lk_timers_cancel(lk_timers *ts, lk_timer *t);

#endif
