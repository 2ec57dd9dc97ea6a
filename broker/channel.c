/* channel.c - channel hash table, subscriber lists, per-workspace idle
 * lists and seq records, and history rings tied into one age order. */
#include "channel.h"

#include <string.h>

#include <openssl/rand.h>

#define WS_MAX 67
#define NAME_MAX_BYTES 200
#define RING_MIN 4

/* An entry of an intrusive chained hash table; the first member of every
 * struct kept in one, so a node pointer is also a pointer to its struct. */
typedef struct hnode {
    struct hnode *next;
    uint64_t hash;
} hnode;

typedef struct htab {
    hnode **b;
    size_t nb;                    /* power of two */
    size_t n;
} htab;

/* One history entry. All entries of all channels form one list in record
 * order, so the globally oldest frame is found in O(1). */
typedef struct hslot {
    lk_frame *f;
    lk_channel *ch;
    struct hslot *gprev, *gnext;
} hslot;

_Static_assert(sizeof(hslot) == 4 * sizeof(void *),
               "LK_HISTORY_ENTRY_OVERHEAD charges one hslot");

typedef struct seqrec seqrec;

/* What the registry keeps per workspace, for fair eviction. */
typedef struct wsrec {
    hnode h;
    lk_channel *idle_head, *idle_tail; /* oldest first */
    seqrec *rec_head, *rec_tail;       /* oldest first */
    size_t nidle, nrec, nchan;
    size_t hpos[2];                    /* places in the map's heaps */
    uint64_t *floor;                   /* LK_CHAN_SEQ_FLOOR_SLOTS, or NULL */
    uint8_t len;
    char name[];
} wsrec;

/* The last seq of an evicted channel. Two independently seeded hashes of
 * (workspace, name) stand for the name. */
struct seqrec {
    hnode h;
    uint64_t hash2;
    wsrec *ws;
    seqrec *prev, *next;
    uint64_t seq;
};

struct lk_channel {
    hnode h;                      /* hash of (workspace, name) */
    wsrec *ws;
    lk_channel *iprev, *inext;    /* the workspace's idle list */
    int idle;
    lk_sub **subs;                /* per service thread, map->nthreads heads */
    size_t nsubs;                 /* all threads */
    size_t pins;                  /* undelivered inbox entries (lk_chanmap_pin) */
    uint64_t seq;
    hslot *hist;                  /* ring of hist_cap slots, grown on demand */
    size_t hist_cap, hist_start, hist_len, hist_bytes;
    uint8_t ws_len, name_len;
    char *key;                    /* workspace '\0' name '\0', after subs */
};

enum { BY_IDLE, BY_REC };

/* Max-heap of workspaces by idle channels or by seq records. */
typedef struct wsheap {
    wsrec **v;
    size_t n, cap;
} wsheap;

struct lk_chanmap {
    htab chans, recs, wss;
    wsheap heap[2];
    size_t nsubs;
    size_t history;
    size_t nthreads;
    size_t nidle, nrec;
    hslot *oldest, *newest;       /* every history entry */
    size_t hist_bytes;            /* charged, all channels */
    uint64_t seed, seed2;
};

/* FNV-1a with a per-process random basis and a final avalanche, so bucket
 * placement cannot be predicted from channel names alone. */
static uint64_t hash_key(uint64_t seed, const char *ws, size_t ws_len,
                         const char *name, size_t name_len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < ws_len; i++)
        h = (h ^ (unsigned char)ws[i]) * 0x100000001b3ULL;
    h = (h ^ 0xff) * 0x100000001b3ULL;
    for (size_t i = 0; i < name_len; i++)
        h = (h ^ (unsigned char)name[i]) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* ---- hash tables ---- */

static int htab_init(htab *t)
{
    t->nb = 64;
    t->n = 0;
    t->b = calloc(t->nb, sizeof *t->b);
    return t->b ? 0 : -1;
}

static void htab_grow(htab *t)
{
    size_t n = t->nb * 2;
    hnode **nb = calloc(n, sizeof *nb);
    if (!nb)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < t->nb; i++) {
        hnode *e = t->b[i];
        while (e) {
            hnode *next = e->next;
            e->next = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(t->b);
    t->b = nb;
    t->nb = n;
}

static void htab_insert(htab *t, hnode *e)
{
    if (t->n >= t->nb)
        htab_grow(t);
    hnode **head = &t->b[e->hash & (t->nb - 1)];
    e->next = *head;
    *head = e;
    t->n++;
}

static void htab_remove(htab *t, hnode *e)
{
    hnode **pp = &t->b[e->hash & (t->nb - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = e->next;
        t->n--;
    }
}

static hnode *htab_chain(const htab *t, uint64_t h)
{
    return t->b[h & (t->nb - 1)];
}

/* ---- workspace heaps ---- */

static size_t heap_key(const wsrec *w, int k)
{
    return k == BY_IDLE ? w->nidle : w->nrec;
}

static void heap_put(wsheap *h, int k, size_t i, wsrec *w)
{
    h->v[i] = w;
    w->hpos[k] = i;
}

static void heap_up(lk_chanmap *map, int k, wsrec *w)
{
    wsheap *h = &map->heap[k];
    size_t i = w->hpos[k];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (heap_key(h->v[p], k) >= heap_key(w, k))
            break;
        heap_put(h, k, i, h->v[p]);
        i = p;
    }
    heap_put(h, k, i, w);
}

static void heap_down(lk_chanmap *map, int k, wsrec *w)
{
    wsheap *h = &map->heap[k];
    size_t i = w->hpos[k];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && heap_key(h->v[c + 1], k) > heap_key(h->v[c], k))
            c++;
        if (heap_key(h->v[c], k) <= heap_key(w, k))
            break;
        heap_put(h, k, i, h->v[c]);
        i = c;
    }
    heap_put(h, k, i, w);
}

static int heap_reserve(wsheap *h)
{
    if (h->n < h->cap)
        return 0;
    size_t cap = h->cap ? h->cap * 2 : 8;
    wsrec **v = realloc(h->v, cap * sizeof *v);
    if (!v)
        return -1;
    h->v = v;
    h->cap = cap;
    return 0;
}

static void heap_del(lk_chanmap *map, int k, wsrec *w)
{
    wsheap *h = &map->heap[k];
    wsrec *last = h->v[--h->n];
    if (last == w)
        return;
    heap_put(h, k, w->hpos[k], last);
    heap_up(map, k, last);
    heap_down(map, k, last);
}

/* The workspace to take from when a shared bound is exceeded by `adder`:
 * the one holding the most (the adder on a tie), but never the adder's
 * only, just added, item. NULL if nobody else holds any. */
static wsrec *victim_ws(lk_chanmap *map, int k, wsrec *adder)
{
    wsheap *h = &map->heap[k];
    size_t mine = heap_key(adder, k);
    if (mine > 1 && mine >= heap_key(h->v[0], k))
        return adder;
    if (h->v[0] != adder)
        return h->v[0];
    /* The adder is on top: the next largest is one of its children. */
    wsrec *best = NULL;
    for (size_t i = 1; i <= 2 && i < h->n; i++)
        if (!best || heap_key(h->v[i], k) > heap_key(best, k))
            best = h->v[i];
    return best && heap_key(best, k) ? best : NULL;
}

/* ---- workspaces ---- */

static wsrec *ws_get(lk_chanmap *map, const char *ws, size_t len)
{
    uint64_t h = hash_key(map->seed, ws, len, NULL, 0);
    for (hnode *e = htab_chain(&map->wss, h); e; e = e->next) {
        wsrec *w = (wsrec *)e;
        if (e->hash == h && w->len == len && memcmp(w->name, ws, len) == 0)
            return w;
    }
    if (heap_reserve(&map->heap[BY_IDLE]) || heap_reserve(&map->heap[BY_REC]))
        return NULL;
    wsrec *w = calloc(1, sizeof *w + len + 1);
    if (!w)
        return NULL;
    w->h.hash = h;
    w->len = (uint8_t)len;
    memcpy(w->name, ws, len);
    for (int k = BY_IDLE; k <= BY_REC; k++) {
        heap_put(&map->heap[k], k, map->heap[k].n++, w);
        heap_up(map, k, w);
    }
    htab_insert(&map->wss, &w->h);
    return w;
}

/* Frees a workspace record that holds nothing worth keeping. */
static void ws_release(lk_chanmap *map, wsrec *w)
{
    if (w->nchan || w->nrec || w->floor)
        return;
    htab_remove(&map->wss, &w->h);
    heap_del(map, BY_IDLE, w);
    heap_del(map, BY_REC, w);
    free(w);
}

/* ---- seq records of evicted channels ---- */

static seqrec *rec_find(lk_chanmap *map, const wsrec *w, uint64_t h, uint64_t h2)
{
    for (hnode *e = htab_chain(&map->recs, h); e; e = e->next) {
        seqrec *r = (seqrec *)e;
        if (e->hash == h && r->hash2 == h2 && r->ws == w)
            return r;
    }
    return NULL;
}

static void rec_free(lk_chanmap *map, seqrec *r)
{
    wsrec *w = r->ws;
    if (r->prev)
        r->prev->next = r->next;
    else
        w->rec_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        w->rec_tail = r->prev;
    htab_remove(&map->recs, &r->h);
    w->nrec--;
    map->nrec--;
    heap_down(map, BY_REC, w);
    free(r);
}

/* Remembers `seq` for every name of `w` hashing to its slot. Without
 * memory for the table the seq is forgotten: the only way back to 0. */
static void floor_raise(wsrec *w, uint64_t h, uint64_t seq)
{
    if (!w->floor && !(w->floor = calloc(LK_CHAN_SEQ_FLOOR_SLOTS, sizeof *w->floor)))
        return;
    uint64_t *slot = &w->floor[h % LK_CHAN_SEQ_FLOOR_SLOTS];
    if (*slot < seq)
        *slot = seq;
}

static void rec_add(lk_chanmap *map, wsrec *w, uint64_t h, uint64_t h2, uint64_t seq)
{
    seqrec *r = rec_find(map, w, h, h2);
    if (r) {
        if (r->seq < seq)
            r->seq = seq;
        return;
    }
    r = malloc(sizeof *r);
    if (!r) {
        floor_raise(w, h, seq);
        return;
    }
    r->h.hash = h;
    r->hash2 = h2;
    r->ws = w;
    r->seq = seq;
    r->next = NULL;
    r->prev = w->rec_tail;
    if (w->rec_tail)
        w->rec_tail->next = r;
    else
        w->rec_head = r;
    w->rec_tail = r;
    htab_insert(&map->recs, &r->h);
    w->nrec++;
    map->nrec++;
    heap_up(map, BY_REC, w);
    while (map->nrec > LK_CHAN_SEQ_KEPT_MAX) {
        wsrec *v = victim_ws(map, BY_REC, w);
        if (!v)
            break;
        seqrec *old = v->rec_head;
        floor_raise(v, old->h.hash, old->seq);
        rec_free(map, old);
        if (v != w)
            ws_release(map, v);
    }
}

/* ---- history ---- */

static size_t charge(const lk_frame *f)
{
    return f->len + LK_HISTORY_ENTRY_OVERHEAD;
}

static hslot *slot_at(const lk_channel *ch, size_t i)
{
    size_t j = ch->hist_start + i;
    if (j >= ch->hist_cap)
        j -= ch->hist_cap;
    return &ch->hist[j];
}

static void glist_unlink(lk_chanmap *map, hslot *s)
{
    if (s->gprev)
        s->gprev->gnext = s->gnext;
    else
        map->oldest = s->gnext;
    if (s->gnext)
        s->gnext->gprev = s->gprev;
    else
        map->newest = s->gprev;
}

/* Moves the ring into `cap` slots (>= hist_len), re-pointing each entry's
 * neighbours in the global list at its new place. A neighbour still in the
 * old ring is updated there and copied with the change. */
static int ring_resize(lk_chanmap *map, lk_channel *ch, size_t cap)
{
    hslot *n = NULL;
    if (cap && !(n = malloc(cap * sizeof *n)))
        return -1;
    for (size_t i = 0; i < ch->hist_len; i++) {
        hslot *s = &n[i];
        *s = *slot_at(ch, i);
        if (s->gprev)
            s->gprev->gnext = s;
        else
            map->oldest = s;
        if (s->gnext)
            s->gnext->gprev = s;
        else
            map->newest = s;
    }
    free(ch->hist);
    ch->hist = n;
    ch->hist_cap = cap;
    ch->hist_start = 0;
    return 0;
}

/* Halves a ring once it is three quarters empty (frees an empty one), so
 * rings track what they hold at O(1) amortised cost. */
static void ring_trim(lk_chanmap *map, lk_channel *ch)
{
    if (!ch->hist_len)
        (void)ring_resize(map, ch, 0);
    else if (ch->hist_cap > RING_MIN && ch->hist_len <= ch->hist_cap / 4)
        (void)ring_resize(map, ch, ch->hist_cap / 2); /* ENOMEM: keep the bigger one */
}

static void hist_drop_oldest(lk_chanmap *map, lk_channel *ch)
{
    hslot *s = &ch->hist[ch->hist_start];
    size_t c = charge(s->f);
    glist_unlink(map, s);
    ch->hist_bytes -= c;
    map->hist_bytes -= c;
    lk_frame_unref(s->f);
    if (++ch->hist_start == ch->hist_cap)
        ch->hist_start = 0;
    ch->hist_len--;
}

static void hist_clear(lk_chanmap *map, lk_channel *ch)
{
    while (ch->hist_len)
        hist_drop_oldest(map, ch);
    (void)ring_resize(map, ch, 0);
}

/* ---- channels ---- */

static void idle_remove(lk_chanmap *map, lk_channel *ch)
{
    if (!ch->idle)
        return;
    wsrec *w = ch->ws;
    if (ch->iprev)
        ch->iprev->inext = ch->inext;
    else
        w->idle_head = ch->inext;
    if (ch->inext)
        ch->inext->iprev = ch->iprev;
    else
        w->idle_tail = ch->iprev;
    ch->iprev = ch->inext = NULL;
    ch->idle = 0;
    w->nidle--;
    map->nidle--;
    heap_down(map, BY_IDLE, w);
}

/* Frees an idle channel, leaving a seq record if it ever had a message. */
static void channel_evict(lk_chanmap *map, lk_channel *ch)
{
    wsrec *w = ch->ws;
    uint64_t seq = ch->seq, h = ch->h.hash;
    uint64_t h2 = hash_key(map->seed2, ch->key, ch->ws_len, ch->key + ch->ws_len + 1,
                           ch->name_len);
    htab_remove(&map->chans, &ch->h);
    idle_remove(map, ch);
    hist_clear(map, ch);
    w->nchan--;
    free(ch);
    if (seq)
        rec_add(map, w, h, h2, seq);
    ws_release(map, w);
}

static void evict_idle(lk_chanmap *map, lk_channel *keep)
{
    while (map->nidle > LK_CHAN_IDLE_MAX) {
        wsrec *v = victim_ws(map, BY_IDLE, keep->ws);
        if (!v)
            break;
        channel_evict(map, v->idle_head);
    }
}

/* Appends `ch` to its workspace's idle list; may evict older idle channels
 * (never `ch`). */
static void idle_add(lk_chanmap *map, lk_channel *ch)
{
    if (ch->idle)
        return;
    wsrec *w = ch->ws;
    ch->idle = 1;
    ch->inext = NULL;
    ch->iprev = w->idle_tail;
    if (w->idle_tail)
        w->idle_tail->inext = ch;
    else
        w->idle_head = ch;
    w->idle_tail = ch;
    w->nidle++;
    map->nidle++;
    heap_up(map, BY_IDLE, w);
    evict_idle(map, ch);
}

lk_chanmap *lk_chanmap_create(size_t history, size_t nthreads)
{
    if (nthreads < 1 || nthreads > LK_THREADS_MAX)
        return NULL;
    lk_chanmap *map = calloc(1, sizeof *map);
    if (!map)
        return NULL;
    if (htab_init(&map->chans) || htab_init(&map->recs) || htab_init(&map->wss)) {
        free(map->chans.b);
        free(map->recs.b);
        free(map->wss.b);
        free(map);
        return NULL;
    }
    map->history = history;
    map->nthreads = nthreads;
    uint64_t seeds[2];
    if (RAND_bytes((unsigned char *)seeds, sizeof seeds) != 1) {
        seeds[0] = (uint64_t)(uintptr_t)map;
        seeds[1] = ~seeds[0];
    }
    map->seed = seeds[0];
    map->seed2 = seeds[1];
    return map;
}

void lk_chanmap_destroy(lk_chanmap *map)
{
    if (!map)
        return;
    for (size_t b = 0; b < map->chans.nb; b++) {
        hnode *e = map->chans.b[b];
        while (e) {
            hnode *next = e->next;
            lk_channel *ch = (lk_channel *)e;
            for (size_t t = 0; t < map->nthreads; t++) {
                lk_sub *s = ch->subs[t];
                while (s) {
                    lk_sub *sn = s->cnext;
                    free(s);
                    s = sn;
                }
            }
            hist_clear(map, ch);
            free(ch);
            e = next;
        }
    }
    for (size_t b = 0; b < map->recs.nb; b++) {
        hnode *e = map->recs.b[b];
        while (e) {
            hnode *next = e->next;
            free(e);
            e = next;
        }
    }
    for (size_t b = 0; b < map->wss.nb; b++) {
        hnode *e = map->wss.b[b];
        while (e) {
            hnode *next = e->next;
            free(((wsrec *)e)->floor);
            free(e);
            e = next;
        }
    }
    free(map->chans.b);
    free(map->recs.b);
    free(map->wss.b);
    free(map->heap[BY_IDLE].v);
    free(map->heap[BY_REC].v);
    free(map);
}

size_t lk_chanmap_channels(const lk_chanmap *map)
{
    return map->chans.n;
}

size_t lk_chanmap_subscriptions(const lk_chanmap *map)
{
    return map->nsubs;
}

size_t lk_chanmap_history_bytes(const lk_chanmap *map)
{
    return map->hist_bytes;
}

static lk_channel *chan_find(const lk_chanmap *map, uint64_t h, const char *ws,
                             size_t ws_len, const char *name, size_t name_len)
{
    for (hnode *e = htab_chain(&map->chans, h); e; e = e->next) {
        lk_channel *ch = (lk_channel *)e;
        if (e->hash == h && ch->ws_len == ws_len && ch->name_len == name_len &&
            memcmp(ch->key, ws, ws_len) == 0 &&
            memcmp(ch->key + ws_len + 1, name, name_len) == 0)
            return ch;
    }
    return NULL;
}

lk_channel *lk_chanmap_find(lk_chanmap *map, const char *ws, size_t ws_len,
                            const char *name, size_t name_len)
{
    return chan_find(map, hash_key(map->seed, ws, ws_len, name, name_len), ws, ws_len,
                     name, name_len);
}

lk_channel *lk_chanmap_get(lk_chanmap *map, const char *ws, size_t ws_len,
                           const char *name, size_t name_len)
{
    uint64_t h = hash_key(map->seed, ws, ws_len, name, name_len);
    lk_channel *ch = chan_find(map, h, ws, ws_len, name, name_len);
    if (ch)
        return ch;
    if (ws_len > WS_MAX || name_len > NAME_MAX_BYTES || name_len == 0)
        return NULL;
    wsrec *w = ws_get(map, ws, ws_len);
    if (!w)
        return NULL;
    /* One allocation: the struct, its per-thread heads, then the key. */
    size_t heads = map->nthreads * sizeof(lk_sub *);
    size_t key_at = (sizeof *ch + sizeof(lk_sub *) - 1) / sizeof(lk_sub *) * sizeof(lk_sub *);
    ch = calloc(1, key_at + heads + ws_len + name_len + 2);
    if (!ch) {
        ws_release(map, w);
        return NULL;
    }
    ch->subs = (lk_sub **)((char *)ch + key_at);
    ch->key = (char *)ch->subs + heads;
    ch->h.hash = h;
    ch->ws = w;
    ch->ws_len = (uint8_t)ws_len;
    ch->name_len = (uint8_t)name_len;
    memcpy(ch->key, ws, ws_len);
    memcpy(ch->key + ws_len + 1, name, name_len);
    w->nchan++;
    seqrec *r = rec_find(map, w, h, hash_key(map->seed2, ws, ws_len, name, name_len));
    if (r) {
        ch->seq = r->seq;
        rec_free(map, r);
    } else if (w->floor) {
        ch->seq = w->floor[h % LK_CHAN_SEQ_FLOOR_SLOTS];
    }
    htab_insert(&map->chans, &ch->h);
    /* Born idle; the first subscriber takes it off the idle list. */
    idle_add(map, ch);
    return ch;
}

lk_sub *lk_chanmap_subscribe(lk_chanmap *map, lk_channel *ch, size_t thread,
                             void *owner, lk_sublist *sl)
{
    if (thread >= map->nthreads)
        return NULL;
    lk_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ch = ch;
    s->owner = owner;
    s->thread = thread;
    s->from_seq = ch->seq;
    lk_sub **head = &ch->subs[thread];
    s->cnext = *head;
    if (*head)
        (*head)->cprev = s;
    *head = s;
    ch->nsubs++;
    s->snext = sl->head;
    if (sl->head)
        sl->head->sprev = s;
    sl->head = s;
    sl->count++;
    map->nsubs++;
    idle_remove(map, ch);
    return s;
}

void lk_chanmap_unsubscribe(lk_chanmap *map, lk_sublist *sl, lk_sub *s)
{
    lk_channel *ch = s->ch;
    if (s->cprev)
        s->cprev->cnext = s->cnext;
    else
        ch->subs[s->thread] = s->cnext;
    if (s->cnext)
        s->cnext->cprev = s->cprev;
    if (s->sprev)
        s->sprev->snext = s->snext;
    else
        sl->head = s->snext;
    if (s->snext)
        s->snext->sprev = s->sprev;
    ch->nsubs--;
    sl->count--;
    map->nsubs--;
    free(s);
    if (ch->nsubs == 0 && ch->pins == 0)
        idle_add(map, ch);
}

void lk_chanmap_pin(lk_chanmap *map, lk_channel *ch)
{
    ch->pins++;
    idle_remove(map, ch);
}

void lk_chanmap_unpin(lk_chanmap *map, lk_channel *ch)
{
    if (--ch->pins == 0 && ch->nsubs == 0)
        idle_add(map, ch);
}

void lk_chanmap_unsubscribe_all(lk_chanmap *map, lk_sublist *sl)
{
    while (sl->head)
        lk_chanmap_unsubscribe(map, sl, sl->head);
}

lk_sub *lk_sublist_find(const lk_sublist *sl, const lk_channel *ch)
{
    for (lk_sub *s = sl->head; s; s = s->snext)
        if (s->ch == ch)
            return s;
    return NULL;
}

uint64_t lk_channel_next_seq(lk_channel *ch)
{
    return ++ch->seq;
}

uint64_t lk_channel_seq(const lk_channel *ch)
{
    return ch->seq;
}

const char *lk_channel_name(const lk_channel *ch, size_t *len)
{
    *len = ch->name_len;
    return ch->key + ch->ws_len + 1;
}

const char *lk_channel_workspace(const lk_channel *ch, size_t *len)
{
    *len = ch->ws_len;
    return ch->key;
}

lk_sub *lk_channel_subscribers(const lk_channel *ch, size_t thread)
{
    return ch->subs[thread];
}

size_t lk_channel_subscriber_count(const lk_channel *ch)
{
    return ch->nsubs;
}

void lk_chanmap_record(lk_chanmap *map, lk_channel *ch, lk_frame *f)
{
    size_t c = charge(f);
    if (!map->history || c > LK_HISTORY_CHANNEL_BYTES || c > LK_HISTORY_TOTAL_BYTES)
        return;
    while (ch->hist_len &&
           (ch->hist_len >= map->history || ch->hist_bytes + c > LK_HISTORY_CHANNEL_BYTES))
        hist_drop_oldest(map, ch);
    while (map->oldest && map->hist_bytes + c > LK_HISTORY_TOTAL_BYTES) {
        lk_channel *old = map->oldest->ch;
        hist_drop_oldest(map, old);
        if (old != ch)
            ring_trim(map, old);
    }
    if (ch->hist_len == ch->hist_cap) {
        size_t cap = ch->hist_cap ? ch->hist_cap * 2 : RING_MIN;
        if (cap > map->history)
            cap = map->history;
        if (ring_resize(map, ch, cap)) {
            ring_trim(map, ch);
            return;
        }
    }
    hslot *s = slot_at(ch, ch->hist_len);
    s->f = lk_frame_ref(f);
    s->ch = ch;
    s->gnext = NULL;
    s->gprev = map->newest;
    if (map->newest)
        map->newest->gnext = s;
    else
        map->oldest = s;
    map->newest = s;
    ch->hist_len++;
    ch->hist_bytes += c;
    map->hist_bytes += c;
    ring_trim(map, ch);
}

size_t lk_channel_history_len(const lk_channel *ch)
{
    return ch->hist_len;
}

lk_frame *lk_channel_history_at(const lk_channel *ch, size_t i)
{
    return i < ch->hist_len ? slot_at(ch, i)->f : NULL;
}

size_t lk_channel_history_capacity(const lk_channel *ch)
{
    return ch->hist_cap;
}
