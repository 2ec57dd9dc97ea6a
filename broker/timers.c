/* timers.c - binary min-heap of deadlines behind one lws timer. */
#include "timers.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void put(lk_timers *ts, size_t i, lk_timer *t)
{
    ts->heap[i] = t;
    t->slot = i + 1;
}

static void sift_up(lk_timers *ts, size_t i)
{
    lk_timer *t = ts->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (ts->heap[p]->at_us <= t->at_us)
            break;
        put(ts, i, ts->heap[p]);
        i = p;
    }
    put(ts, i, t);
}

static void sift_down(lk_timers *ts, size_t i)
{
    lk_timer *t = ts->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= ts->n)
            break;
        if (c + 1 < ts->n && ts->heap[c + 1]->at_us < ts->heap[c]->at_us)
            c++;
        if (ts->heap[c]->at_us >= t->at_us)
            break;
        put(ts, i, ts->heap[c]);
        i = c;
    }
    put(ts, i, t);
}

static void on_sul(lws_sorted_usec_list_t *sul);

/* Points the lws timer at the earliest deadline, touching lws's list
 * only when that changed. */
static void resched(lk_timers *ts)
{
    int64_t at = ts->n ? ts->heap[0]->at_us : 0;
    if (at == ts->sul_at || !ts->ctx)
        return;
    ts->sul_at = at;
    if (!at) {
        lws_sul_cancel(&ts->sul);
        return;
    }
    int64_t delta = at - mono_us();
    lws_sul_schedule(ts->ctx, 0, &ts->sul, on_sul, delta < 1 ? 1 : delta);
}

static void remove_at(lk_timers *ts, size_t i)
{
    ts->heap[i]->slot = 0;
    lk_timer *last = ts->heap[--ts->n];
    if (i == ts->n)
        return;
    put(ts, i, last);
    sift_up(ts, i);
    sift_down(ts, last->slot - 1);
}

static void on_sul(lws_sorted_usec_list_t *sul)
{
    lk_timers *ts = lws_container_of(sul, lk_timers, sul);
    ts->sul_at = 0;
    int64_t now = mono_us();
    /* A callback may arm or cancel timers, this one included; only those
     * due now run, so a re-armed timer waits for its new deadline. */
    while (ts->n && ts->heap[0]->at_us <= now) {
        lk_timer *t = ts->heap[0];
        remove_at(ts, 0);
        t->fire(t);
    }
    resched(ts);
}

void lk_timers_init(lk_timers *ts, struct lws_context *ctx)
{
    ts->heap = NULL;
    ts->n = ts->cap = 0;
    ts->ctx = ctx;
    ts->sul_at = 0;
    memset(&ts->sul, 0, sizeof ts->sul);
}

void lk_timers_detach(lk_timers *ts)
{
    if (ts->ctx && ts->sul_at)
        lws_sul_cancel(&ts->sul);
    ts->ctx = NULL;
    ts->sul_at = 0;
}

void lk_timers_fini(lk_timers *ts)
{
    lk_timers_detach(ts);
    for (size_t i = 0; i < ts->n; i++)
        ts->heap[i]->slot = 0;
    free(ts->heap);
    ts->heap = NULL;
    ts->n = ts->cap = 0;
    ts->sul_at = 0;
}

int lk_timers_arm(lk_timers *ts, lk_timer *t, int64_t at_us, lk_timer_fn fire)
{
    t->fire = fire;
    if (at_us < 1)
        at_us = 1;
    if (t->slot) {
        size_t i = t->slot - 1;
        t->at_us = at_us;
        sift_up(ts, i);
        sift_down(ts, t->slot - 1);
        resched(ts);
        return 0;
    }
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 64;
        lk_timer **h = realloc(ts->heap, cap * sizeof *h);
        if (!h)
            return -1;
        ts->heap = h;
        ts->cap = cap;
    }
    t->at_us = at_us;
    put(ts, ts->n++, t);
    sift_up(ts, ts->n - 1);
    resched(ts);
    return 0;
}

void lk_timers_cancel(lk_timers *ts, lk_timer *t)
{
    if (!t->slot)
        return;
    remove_at(ts, t->slot - 1);
    resched(ts);
}
