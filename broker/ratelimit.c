/* ratelimit.c - per-workspace minute windows and burst buckets in an
 * open-addressing table that sheds idle workspaces when it grows. */
#include "ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/registry.h"

#define TABLE_MIN 64
/* Bucket levels are kept in thousandths of a request, so integer refill
 * stays exact at any per-second rate. */
#define UNIT 1000

typedef struct rl_entry {
    char ws[LK_WORKSPACE_MAX + 1];   /* "" = empty slot */
    int64_t window_ms;               /* start of the minute window */
    int64_t count;                   /* requests in the window */
    int64_t level;                   /* bucket level, in UNITs */
    int64_t bucket_ms;               /* last refill */
} rl_entry;

struct lk_ratelimit {
    pthread_mutex_t m;            /* service threads share one table */
    rl_entry *slots;
    size_t cap;                      /* power of two */
    size_t count;
};

static uint64_t ws_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

lk_ratelimit *lk_ratelimit_create(void)
{
    lk_ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    rl->slots = calloc(TABLE_MIN, sizeof *rl->slots);
    if (!rl->slots) {
        free(rl);
        return NULL;
    }
    rl->cap = TABLE_MIN;
    pthread_mutex_init(&rl->m, NULL);
    return rl;
}

void lk_ratelimit_destroy(lk_ratelimit *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->m);
    free(rl->slots);
    free(rl);
}

size_t lk_ratelimit_count(const lk_ratelimit *rl)
{
    return rl->count;
}

static rl_entry *find_slot(rl_entry *slots, size_t cap, const char *ws)
{
    size_t mask = cap - 1;
    for (size_t i = ws_hash(ws) & mask;; i = (i + 1) & mask)
        if (!slots[i].ws[0] || strcmp(slots[i].ws, ws) == 0)
            return &slots[i];
}

/* An entry whose window has ended and whose bucket has had a full second
 * to refill is indistinguishable from a new one. */
static int stale(const rl_entry *e, int64_t now_ms)
{
    return now_ms >= e->window_ms + LK_RATE_WINDOW_MS && now_ms >= e->bucket_ms + 1000;
}

/* Rebuilds the table without stale entries, at a size that leaves room
 * for the live ones to double. */
static int rebuild(lk_ratelimit *rl, int64_t now_ms)
{
    size_t live = 0;
    for (size_t i = 0; i < rl->cap; i++)
        if (rl->slots[i].ws[0] && !stale(&rl->slots[i], now_ms))
            live++;
    size_t cap = TABLE_MIN;
    while (cap < 4 * (live + 1))
        cap *= 2;
    rl_entry *ns = calloc(cap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < rl->cap; i++) {
        const rl_entry *e = &rl->slots[i];
        if (e->ws[0] && !stale(e, now_ms))
            *find_slot(ns, cap, e->ws) = *e;
    }
    free(rl->slots);
    rl->slots = ns;
    rl->cap = cap;
    rl->count = live;
    return 0;
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

static int hit(lk_ratelimit *rl, const char *workspace, int64_t per_minute,
               int64_t per_second, int64_t now_ms, lk_rate_result *out)
{
    if (per_minute < 1)
        per_minute = 1;
    if (per_second < 1)
        per_second = 1;
    size_t wlen = strlen(workspace);
    if (wlen == 0 || wlen > LK_WORKSPACE_MAX)
        return -1;
    rl_entry *e = find_slot(rl->slots, rl->cap, workspace);
    if (!e->ws[0]) {
        if (2 * (rl->count + 1) > rl->cap) {
            if (rebuild(rl, now_ms))
                return -1;
            e = find_slot(rl->slots, rl->cap, workspace);
        }
        memcpy(e->ws, workspace, wlen + 1);
        e->window_ms = now_ms;
        e->count = 0;
        e->level = per_second * UNIT;
        e->bucket_ms = now_ms;
        rl->count++;
    }

    /* A clock stepped backwards also starts a new window. */
    if (now_ms < e->window_ms || now_ms >= e->window_ms + LK_RATE_WINDOW_MS) {
        e->window_ms = now_ms;
        e->count = 0;
    }
    if (e->count < INT64_MAX)
        e->count++;
    int64_t window_end = e->window_ms + LK_RATE_WINDOW_MS;
    out->limit = per_minute;
    out->remaining = e->count >= per_minute ? 0 : per_minute - e->count;
    out->reset = ceil_div(window_end, 1000);
    out->retry_after = 0;
    out->verdict = LK_RATE_OK;

    int64_t elapsed = now_ms > e->bucket_ms ? now_ms - e->bucket_ms : 0;
    int64_t full = per_second * UNIT;
    e->bucket_ms = now_ms;
    if (elapsed >= 1000 || e->level + elapsed * per_second >= full)
        e->level = full;
    else
        e->level += elapsed * per_second;
    if (e->level > full)
        e->level = full;   /* the cap was lowered by a reload */

    if (e->count > per_minute) {
        out->verdict = LK_RATE_MINUTE;
        out->retry_after = ceil_div(window_end - now_ms, 1000);
    } else if (e->level < UNIT) {
        out->verdict = LK_RATE_SECOND;
        out->retry_after = ceil_div(ceil_div(UNIT - e->level, per_second), 1000);
    } else {
        e->level -= UNIT;
    }
    if (out->verdict != LK_RATE_OK && out->retry_after < 1)
        out->retry_after = 1;
    return 0;
}

int lk_ratelimit_hit(lk_ratelimit *rl, const char *workspace, int64_t per_minute,
                     int64_t per_second, int64_t now_ms, lk_rate_result *out)
{
    pthread_mutex_lock(&rl->m);
    int rc = hit(rl, workspace, per_minute, per_second, now_ms, out);
    pthread_mutex_unlock(&rl->m);
    return rc;
}
