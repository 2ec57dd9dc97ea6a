/* channel.c - channel hash table, subscriber lists, idle LRU and the
 * per-channel history ring. */
#include "channel.h"

#include <string.h>

#include <openssl/rand.h>

#define WS_MAX 67
#define NAME_MAX_BYTES 200

struct lk_channel {
    lk_channel *hnext;            /* bucket chain */
    lk_channel *iprev, *inext;    /* idle list, while nsubs == 0 */
    int idle;
    lk_sub *subs;
    size_t nsubs;
    uint64_t seq;
    lk_frame **hist;              /* ring of hist_cap frames */
    size_t hist_cap, hist_start, hist_len, hist_bytes;
    uint64_t hash;
    uint8_t ws_len, name_len;
    char key[];                   /* workspace '\0' name '\0' */
};

struct lk_chanmap {
    lk_channel **buckets;
    size_t nbuckets;              /* power of two */
    size_t nchannels;
    size_t nsubs;
    size_t history;
    size_t hist_bytes;            /* all channels */
    lk_channel *idle_head, *idle_tail;
    size_t nidle;
    uint64_t seed;
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

lk_chanmap *lk_chanmap_create(size_t history)
{
    lk_chanmap *map = calloc(1, sizeof *map);
    if (!map)
        return NULL;
    map->nbuckets = 64;
    map->buckets = calloc(map->nbuckets, sizeof *map->buckets);
    if (!map->buckets) {
        free(map);
        return NULL;
    }
    map->history = history;
    if (RAND_bytes((unsigned char *)&map->seed, sizeof map->seed) != 1)
        map->seed = (uint64_t)(uintptr_t)map;
    return map;
}

static void idle_remove(lk_chanmap *map, lk_channel *ch)
{
    if (!ch->idle)
        return;
    if (ch->iprev)
        ch->iprev->inext = ch->inext;
    else
        map->idle_head = ch->inext;
    if (ch->inext)
        ch->inext->iprev = ch->iprev;
    else
        map->idle_tail = ch->iprev;
    ch->iprev = ch->inext = NULL;
    ch->idle = 0;
    map->nidle--;
}

static void hist_clear(lk_chanmap *map, lk_channel *ch)
{
    for (size_t i = 0; i < ch->hist_len; i++)
        lk_frame_unref(ch->hist[(ch->hist_start + i) % ch->hist_cap]);
    map->hist_bytes -= ch->hist_bytes;
    ch->hist_len = ch->hist_start = ch->hist_bytes = 0;
}

static void channel_free(lk_chanmap *map, lk_channel *ch)
{
    hist_clear(map, ch);
    free(ch->hist);
    free(ch);
}

static void channel_remove(lk_chanmap *map, lk_channel *ch)
{
    lk_channel **pp = &map->buckets[ch->hash & (map->nbuckets - 1)];
    while (*pp && *pp != ch)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = ch->hnext;
    idle_remove(map, ch);
    map->nchannels--;
    channel_free(map, ch);
}

static void evict_idle(lk_chanmap *map, const lk_channel *keep)
{
    while (map->idle_head &&
           (map->nidle > LK_CHAN_IDLE_MAX || map->hist_bytes > LK_HISTORY_TOTAL_BYTES)) {
        lk_channel *victim = map->idle_head;
        if (victim == keep)
            break;
        channel_remove(map, victim);
    }
}

static void idle_add(lk_chanmap *map, lk_channel *ch)
{
    if (ch->idle)
        return;
    ch->idle = 1;
    ch->inext = NULL;
    ch->iprev = map->idle_tail;
    if (map->idle_tail)
        map->idle_tail->inext = ch;
    else
        map->idle_head = ch;
    map->idle_tail = ch;
    map->nidle++;
    evict_idle(map, ch);
}

void lk_chanmap_destroy(lk_chanmap *map)
{
    if (!map)
        return;
    for (size_t b = 0; b < map->nbuckets; b++) {
        lk_channel *ch = map->buckets[b];
        while (ch) {
            lk_channel *next = ch->hnext;
            lk_sub *s = ch->subs;
            while (s) {
                lk_sub *sn = s->cnext;
                free(s);
                s = sn;
            }
            channel_free(map, ch);
            ch = next;
        }
    }
    free(map->buckets);
    free(map);
}

size_t lk_chanmap_channels(const lk_chanmap *map)
{
    return map->nchannels;
}

size_t lk_chanmap_subscriptions(const lk_chanmap *map)
{
    return map->nsubs;
}

lk_channel *lk_chanmap_find(lk_chanmap *map, const char *ws, size_t ws_len,
                            const char *name, size_t name_len)
{
    uint64_t h = hash_key(map->seed, ws, ws_len, name, name_len);
    for (lk_channel *ch = map->buckets[h & (map->nbuckets - 1)]; ch; ch = ch->hnext)
        if (ch->hash == h && ch->ws_len == ws_len && ch->name_len == name_len &&
            memcmp(ch->key, ws, ws_len) == 0 &&
            memcmp(ch->key + ws_len + 1, name, name_len) == 0)
            return ch;
    return NULL;
}

static void grow(lk_chanmap *map)
{
    size_t n = map->nbuckets * 2;
    lk_channel **nb = calloc(n, sizeof *nb);
    if (!nb)
        return; /* longer chains, still correct */
    for (size_t b = 0; b < map->nbuckets; b++) {
        lk_channel *ch = map->buckets[b];
        while (ch) {
            lk_channel *next = ch->hnext;
            ch->hnext = nb[ch->hash & (n - 1)];
            nb[ch->hash & (n - 1)] = ch;
            ch = next;
        }
    }
    free(map->buckets);
    map->buckets = nb;
    map->nbuckets = n;
}

lk_channel *lk_chanmap_get(lk_chanmap *map, const char *ws, size_t ws_len,
                           const char *name, size_t name_len)
{
    lk_channel *ch = lk_chanmap_find(map, ws, ws_len, name, name_len);
    if (ch)
        return ch;
    if (ws_len > WS_MAX || name_len > NAME_MAX_BYTES || name_len == 0)
        return NULL;
    ch = calloc(1, sizeof *ch + ws_len + name_len + 2);
    if (!ch)
        return NULL;
    if (map->history) {
        ch->hist = calloc(map->history, sizeof *ch->hist);
        if (!ch->hist) {
            free(ch);
            return NULL;
        }
        ch->hist_cap = map->history;
    }
    ch->hash = hash_key(map->seed, ws, ws_len, name, name_len);
    ch->ws_len = (uint8_t)ws_len;
    ch->name_len = (uint8_t)name_len;
    memcpy(ch->key, ws, ws_len);
    memcpy(ch->key + ws_len + 1, name, name_len);
    if (map->nchannels >= map->nbuckets)
        grow(map);
    size_t b = ch->hash & (map->nbuckets - 1);
    ch->hnext = map->buckets[b];
    map->buckets[b] = ch;
    map->nchannels++;
    /* Born idle; the first subscriber takes it off the idle list. */
    idle_add(map, ch);
    return ch;
}

lk_sub *lk_chanmap_subscribe(lk_chanmap *map, lk_channel *ch, void *owner,
                             lk_sublist *sl)
{
    lk_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ch = ch;
    s->owner = owner;
    s->cnext = ch->subs;
    if (ch->subs)
        ch->subs->cprev = s;
    ch->subs = s;
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
        ch->subs = s->cnext;
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
    if (ch->nsubs == 0)
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

lk_sub *lk_channel_subscribers(const lk_channel *ch)
{
    return ch->subs;
}

size_t lk_channel_subscriber_count(const lk_channel *ch)
{
    return ch->nsubs;
}

static void hist_drop_oldest(lk_chanmap *map, lk_channel *ch)
{
    lk_frame *old = ch->hist[ch->hist_start];
    ch->hist_bytes -= old->len;
    map->hist_bytes -= old->len;
    lk_frame_unref(old);
    ch->hist_start = (ch->hist_start + 1) % ch->hist_cap;
    ch->hist_len--;
}

void lk_chanmap_record(lk_chanmap *map, lk_channel *ch, lk_frame *f)
{
    if (!ch->hist_cap)
        return;
    if (ch->hist_len == ch->hist_cap)
        hist_drop_oldest(map, ch);
    while (ch->hist_len && ch->hist_bytes + f->len > LK_HISTORY_CHANNEL_BYTES)
        hist_drop_oldest(map, ch);
    ch->hist[(ch->hist_start + ch->hist_len) % ch->hist_cap] = lk_frame_ref(f);
    ch->hist_len++;
    ch->hist_bytes += f->len;
    map->hist_bytes += f->len;
    if (map->hist_bytes > LK_HISTORY_TOTAL_BYTES)
        evict_idle(map, ch);
}

size_t lk_channel_history_len(const lk_channel *ch)
{
    return ch->hist_len;
}

lk_frame *lk_channel_history_at(const lk_channel *ch, size_t i)
{
    return i < ch->hist_len ? ch->hist[(ch->hist_start + i) % ch->hist_cap] : NULL;
}
