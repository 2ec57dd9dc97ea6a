/* hub.c - the lock, the per-thread inboxes and the shared counters. */
#include "hub.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef struct inbox {
    pthread_mutex_t m;
    lk_hub_entry *v;              /* filled by posters */
    size_t n, cap;
    lk_hub_entry *taken;          /* the owner's last take */
    size_t taken_cap;
    atomic_size_t pending;        /* n, readable without the lock */
    int woken;                    /* a wake-up is on its way */
    struct lws_context *ctx;
    void *worker;
} inbox;

struct lk_hub {
    pthread_mutex_t lock;
    lk_chanmap *channels;
    size_t nthreads;
    atomic_size_t sockets;
    atomic_int stop;
    atomic_uint reloads;
    atomic_uint key_changes;
    inbox in[];
};

int lk_hub_create(size_t history, size_t nthreads, lk_hub **out)
{
    *out = NULL;
    if (nthreads < 1 || nthreads > LK_THREADS_MAX)
        return -1;
    lk_hub *h = calloc(1, sizeof *h + nthreads * sizeof h->in[0]);
    if (!h)
        return -1;
    h->nthreads = nthreads;
    if (!(h->channels = lk_chanmap_create(history, nthreads))) {
        free(h);
        return -1;
    }
    pthread_mutex_init(&h->lock, NULL);
    for (size_t t = 0; t < nthreads; t++)
        pthread_mutex_init(&h->in[t].m, NULL);
    *out = h;
    return 0;
}

void lk_hub_destroy(lk_hub *h)
{
    if (!h)
        return;
    for (size_t t = 0; t < h->nthreads; t++) {
        inbox *in = &h->in[t];
        for (size_t i = 0; i < in->n; i++)
            lk_frame_unref(in->v[i].f);
        free(in->v);
        free(in->taken);
        pthread_mutex_destroy(&in->m);
    }
    lk_chanmap_destroy(h->channels);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

size_t lk_hub_threads(const lk_hub *h)
{
    return h->nthreads;
}

void lk_hub_attach(lk_hub *h, size_t t, struct lws_context *ctx, void *worker)
{
    pthread_mutex_lock(&h->in[t].m);
    h->in[t].ctx = ctx;
    h->in[t].worker = worker;
    pthread_mutex_unlock(&h->in[t].m);
}

void *lk_hub_worker(const lk_hub *h, size_t t)
{
    return t < h->nthreads ? h->in[t].worker : NULL;
}

void lk_hub_lock(lk_hub *h)
{
    pthread_mutex_lock(&h->lock);
}

void lk_hub_unlock(lk_hub *h)
{
    pthread_mutex_unlock(&h->lock);
}

lk_chanmap *lk_hub_channels(lk_hub *h)
{
    return h->channels;
}

int lk_hub_post(lk_hub *h, size_t t, lk_channel *ch, lk_frame *f)
{
    inbox *in = &h->in[t];
    pthread_mutex_lock(&in->m);
    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 64;
        lk_hub_entry *v = cap <= LK_HUB_INBOX_MAX ? realloc(in->v, cap * sizeof *v) : NULL;
        if (!v) {
            pthread_mutex_unlock(&in->m);
            lk_frame_unref(f);
            return -1;
        }
        in->v = v;
        in->cap = cap;
    }
    in->v[in->n++] = (lk_hub_entry){ch, f};
    atomic_store_explicit(&in->pending, in->n, memory_order_release);
    int wake = !in->woken;
    in->woken = 1;
    pthread_mutex_unlock(&in->m);
    lk_chanmap_pin(h->channels, ch);
    return wake;
}

/* Under the inbox lock, so a thread detaching (lk_hub_attach with NULL)
 * before it destroys its context never races a wake-up into it. */
void lk_hub_wake(lk_hub *h, size_t t)
{
    pthread_mutex_lock(&h->in[t].m);
    if (h->in[t].ctx)
        lws_cancel_service(h->in[t].ctx);
    pthread_mutex_unlock(&h->in[t].m);
}

size_t lk_hub_take(lk_hub *h, size_t t, lk_hub_entry **out)
{
    inbox *in = &h->in[t];
    *out = NULL;
    if (!atomic_load_explicit(&in->pending, memory_order_acquire)) {
        /* Nothing posted; a wake-up already on its way finds this too. */
        return 0;
    }
    pthread_mutex_lock(&in->m);
    lk_hub_entry *v = in->v;
    size_t n = in->n, cap = in->cap;
    in->v = in->taken;
    in->cap = in->taken_cap;
    in->n = 0;
    in->woken = 0;
    atomic_store_explicit(&in->pending, 0, memory_order_relaxed);
    pthread_mutex_unlock(&in->m);
    in->taken = v;
    in->taken_cap = cap;
    *out = v;
    return n;
}

size_t lk_hub_pending(const lk_hub *h, size_t t)
{
    return atomic_load_explicit(&((lk_hub *)h)->in[t].pending, memory_order_acquire);
}

void lk_hub_done(lk_hub *h, const lk_hub_entry *e, size_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < n; i++)
        lk_chanmap_unpin(h->channels, e[i].ch);
    pthread_mutex_unlock(&h->lock);
}

size_t lk_hub_sockets_add(lk_hub *h, long delta)
{
    if (delta >= 0)
        return atomic_fetch_add(&h->sockets, (size_t)delta) + (size_t)delta;
    return atomic_fetch_sub(&h->sockets, (size_t)-delta) - (size_t)-delta;
}

size_t lk_hub_sockets(const lk_hub *h)
{
    return atomic_load(&h->sockets);
}

void lk_hub_request(lk_hub *h, int what)
{
    if (what == LK_HUB_STOP)
        atomic_store(&h->stop, 1);
    else if (what == LK_HUB_RELOAD)
        atomic_fetch_add(&h->reloads, 1);
    else if (what == LK_HUB_KEYS)
        atomic_fetch_add(&h->key_changes, 1);
    for (size_t t = 0; t < h->nthreads; t++)
        lk_hub_wake(h, t);
}

int lk_hub_stopping(const lk_hub *h)
{
    return atomic_load(&((lk_hub *)h)->stop);
}

unsigned lk_hub_reloads(const lk_hub *h)
{
    return atomic_load(&((lk_hub *)h)->reloads);
}

unsigned lk_hub_key_changes(const lk_hub *h)
{
    return atomic_load(&((lk_hub *)h)->key_changes);
}

