/* Unit tests for the channel registry (broker/channel.c). */
#include <stdio.h>
#include <string.h>

#include "channel.h"
#include "hub.h"
#include "test.h"

#define WS "ws_a"

static lk_frame *frame(uint64_t seq, size_t len)
{
    lk_frame *f = lk_frame_new(len);
    memset(lk_frame_payload(f), 'x', len);
    f->len = (uint32_t)len;
    f->seq = seq;
    return f;
}

static void test_subscribe_both_indexes(void)
{
    lk_chanmap *m = lk_chanmap_create(0, 1);
    int a, b;
    lk_sublist la = {0}, lb = {0};
    lk_channel *ch = lk_chanmap_get(m, WS, 4, "chat", 4);
    ASSERT_NOT_NULL(ch);
    ASSERT_TRUE(lk_chanmap_get(m, WS, 4, "chat", 4) == ch);
    lk_sub *sa = lk_chanmap_subscribe(m, ch, 0, &a, &la);
    lk_sub *sb = lk_chanmap_subscribe(m, ch, 0, &b, &lb);
    ASSERT_EQ(lk_channel_subscriber_count(ch), 2);
    ASSERT_EQ(lk_chanmap_subscriptions(m), 2);
    ASSERT_TRUE(lk_sublist_find(&la, ch) == sa);
    ASSERT_TRUE(lk_sublist_find(&lb, ch) == sb);
    lk_chanmap_unsubscribe(m, &la, sa);
    ASSERT_NULL(lk_sublist_find(&la, ch));
    ASSERT_EQ(la.count, 0);
    ASSERT_TRUE(lk_channel_subscribers(ch, 0) == sb);
    ASSERT_NULL(sb->cnext);
    lk_chanmap_unsubscribe_all(m, &lb);
    ASSERT_EQ(lk_chanmap_subscriptions(m), 0);
    /* Idle channels stay, with their seq. */
    ASSERT_EQ(lk_chanmap_channels(m), 1);
    lk_chanmap_destroy(m);
}

static void test_workspaces_are_separate(void)
{
    lk_chanmap *m = lk_chanmap_create(0, 1);
    lk_channel *x = lk_chanmap_get(m, "ws_a", 4, "c", 1);
    lk_channel *y = lk_chanmap_get(m, "ws_b", 4, "c", 1);
    ASSERT_TRUE(x && y && x != y);
    ASSERT_NULL(lk_chanmap_find(m, "ws_c", 4, "c", 1));
    ASSERT_EQ(lk_channel_next_seq(x), 1);
    ASSERT_EQ(lk_channel_next_seq(x), 2);
    ASSERT_EQ(lk_channel_next_seq(y), 1);
    size_t len;
    ASSERT_EQ(memcmp(lk_channel_workspace(y, &len), "ws_b", 4), 0);
    ASSERT_EQ(len, 4);
    lk_chanmap_destroy(m);
}

static void test_many_channels_rehash(void)
{
    lk_chanmap *m = lk_chanmap_create(0, 1);
    char name[16];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(name, sizeof name, "c%d", i);
        ASSERT_NOT_NULL(lk_chanmap_get(m, WS, 4, name, (size_t)n));
    }
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(name, sizeof name, "c%d", i);
        lk_channel *ch = lk_chanmap_find(m, WS, 4, name, (size_t)n);
        ASSERT_NOT_NULL(ch);
        size_t len;
        const char *got = lk_channel_name(ch, &len);
        ASSERT_EQ(len, (size_t)n);
        ASSERT_EQ(memcmp(got, name, len), 0);
    }
    lk_chanmap_destroy(m);
}

static void test_history_ring(void)
{
    lk_chanmap *m = lk_chanmap_create(3, 1);
    lk_channel *ch = lk_chanmap_get(m, WS, 4, "h", 1);
    lk_frame *keep = NULL;
    for (uint64_t s = 1; s <= 5; s++) {
        lk_frame *f = frame(lk_channel_next_seq(ch), 10);
        ASSERT_EQ(f->seq, s);
        lk_chanmap_record(m, ch, f);
        if (s == 5)
            keep = lk_frame_ref(f);
        lk_frame_unref(f);
    }
    ASSERT_EQ(lk_channel_history_len(ch), 3);
    ASSERT_EQ(lk_channel_history_at(ch, 0)->seq, 3);
    ASSERT_EQ(lk_channel_history_at(ch, 2)->seq, 5);
    ASSERT_NULL(lk_channel_history_at(ch, 3));
    /* The history holds a reference: ours plus its own. */
    ASSERT_EQ(keep->refs, 2);
    lk_chanmap_destroy(m);
    ASSERT_EQ(keep->refs, 1);
    lk_frame_unref(keep);
}

static void test_history_disabled(void)
{
    lk_chanmap *m = lk_chanmap_create(0, 1);
    lk_channel *ch = lk_chanmap_get(m, WS, 4, "h", 1);
    lk_frame *f = frame(1, 4);
    lk_chanmap_record(m, ch, f);
    ASSERT_EQ(lk_channel_history_len(ch), 0);
    ASSERT_EQ(f->refs, 1);
    lk_frame_unref(f);
    lk_chanmap_destroy(m);
}

static void test_idle_eviction_bound(void)
{
    lk_chanmap *m = lk_chanmap_create(1, 1);
    char name[16];
    for (int i = 0; i < LK_CHAN_IDLE_MAX + 50; i++) {
        int n = snprintf(name, sizeof name, "i%d", i);
        ASSERT_NOT_NULL(lk_chanmap_get(m, WS, 4, name, (size_t)n));
    }
    ASSERT_EQ(lk_chanmap_channels(m), LK_CHAN_IDLE_MAX);
    /* Oldest idle channels went first; subscribed ones never go. */
    ASSERT_NULL(lk_chanmap_find(m, WS, 4, "i0", 2));
    ASSERT_NOT_NULL(lk_chanmap_find(m, WS, 4, "i10049", 6));
    lk_chanmap_destroy(m);
}

static void test_rejects_long_names(void)
{
    lk_chanmap *m = lk_chanmap_create(0, 1);
    char name[202];
    memset(name, 'a', sizeof name);
    ASSERT_NULL(lk_chanmap_get(m, WS, 4, name, 201));
    ASSERT_NOT_NULL(lk_chanmap_get(m, WS, 4, name, 200));
    lk_chanmap_destroy(m);
}

/* Creates `count` channels "<prefix><i>" in `ws`, each with one message,
 * so each leaves a seq record when evicted. */
static int churn(lk_chanmap *m, const char *ws, const char *prefix, int count)
{
    char name[32];
    for (int i = 0; i < count; i++) {
        int n = snprintf(name, sizeof name, "%s%d", prefix, i);
        lk_channel *ch = lk_chanmap_get(m, ws, strlen(ws), name, (size_t)n);
        if (!ch)
            return -1;
        lk_channel_next_seq(ch);
    }
    return 0;
}

static lk_channel *victim_with_seq5(lk_chanmap *m, const char *ws)
{
    lk_channel *ch = lk_chanmap_get(m, ws, 4, "victim", 6);
    for (int i = 0; i < 5; i++) {
        lk_frame *f = frame(lk_channel_next_seq(ch), 10);
        lk_chanmap_record(m, ch, f);
        lk_frame_unref(f);
    }
    return ch;
}

/* Another workspace's churn neither evicts an idle channel (with its
 * history) nor resets its seq. */
static void test_other_workspace_cannot_evict(void)
{
    lk_chanmap *m = lk_chanmap_create(2, 1);
    lk_sublist sl = {0};
    int owner;
    lk_channel *v = victim_with_seq5(m, "ws_a");
    /* Subscribe/unsubscribe churn, then publishing to new names. */
    for (int i = 0; i < LK_CHAN_IDLE_MAX + 50; i++) {
        char name[32];
        int n = snprintf(name, sizeof name, "s%d", i);
        lk_channel *ch = lk_chanmap_get(m, "ws_b", 4, name, (size_t)n);
        ASSERT_NOT_NULL(ch);
        lk_chanmap_unsubscribe(m, &sl, lk_chanmap_subscribe(m, ch, 0, &owner, &sl));
    }
    ASSERT_EQ(churn(m, "ws_b", "p", LK_CHAN_IDLE_MAX + 50), 0);
    ASSERT_TRUE(lk_chanmap_find(m, "ws_a", 4, "victim", 6) == v);
    ASSERT_EQ(lk_channel_seq(v), 5);
    ASSERT_EQ(lk_channel_history_len(v), 2);
    ASSERT_TRUE(lk_chanmap_channels(m) <= LK_CHAN_IDLE_MAX);
    ASSERT_EQ(lk_channel_next_seq(v), 6);
    lk_chanmap_destroy(m);
}

/* An evicted channel comes back with its seq, not 0. */
static void test_seq_survives_eviction(void)
{
    lk_chanmap *m = lk_chanmap_create(2, 1);
    victim_with_seq5(m, "ws_a");
    ASSERT_EQ(churn(m, "ws_a", "c", LK_CHAN_IDLE_MAX + 50), 0);
    ASSERT_NULL(lk_chanmap_find(m, "ws_a", 4, "victim", 6));
    lk_channel *v = lk_chanmap_get(m, "ws_a", 4, "victim", 6);
    ASSERT_NOT_NULL(v);
    ASSERT_EQ(lk_channel_seq(v), 5);
    ASSERT_EQ(lk_channel_history_len(v), 0);
    ASSERT_EQ(lk_channel_next_seq(v), 6);
    /* A never-used name still starts at 1, in any workspace. */
    ASSERT_EQ(lk_channel_seq(lk_chanmap_get(m, "ws_a", 4, "fresh", 5)), 0);
    ASSERT_EQ(lk_channel_seq(lk_chanmap_get(m, "ws_b", 4, "victim", 6)), 0);
    lk_chanmap_destroy(m);
}

/* Seq records are shared out fairly: another workspace overflowing them
 * drops its own, so ws_a's evicted channel keeps its exact seq. */
static void test_seq_records_fair_share(void)
{
    lk_chanmap *m = lk_chanmap_create(0, 1);
    victim_with_seq5(m, "ws_a");
    ASSERT_EQ(churn(m, "ws_a", "c", LK_CHAN_IDLE_MAX + 1), 0);
    ASSERT_NULL(lk_chanmap_find(m, "ws_a", 4, "victim", 6));
    ASSERT_EQ(churn(m, "ws_b", "c", LK_CHAN_SEQ_KEPT_MAX + LK_CHAN_IDLE_MAX + 100), 0);
    ASSERT_EQ(lk_channel_seq(lk_chanmap_get(m, "ws_a", 4, "victim", 6)), 5);
    /* ws_b's own oldest records went to its floor: never back to 0. */
    lk_channel *first = lk_chanmap_get(m, "ws_b", 4, "c0", 2);
    ASSERT_TRUE(lk_channel_seq(first) >= 1);
    lk_chanmap_destroy(m);
}

/* Past every bound, within one workspace, seq may jump but never falls. */
static void test_seq_never_backwards_past_bound(void)
{
    lk_chanmap *m = lk_chanmap_create(0, 1);
    lk_channel *v = lk_chanmap_get(m, "ws_a", 4, "victim", 6);
    for (int i = 0; i < 1000; i++)
        lk_channel_next_seq(v);
    ASSERT_EQ(churn(m, "ws_a", "c", LK_CHAN_SEQ_KEPT_MAX + LK_CHAN_IDLE_MAX + 100), 0);
    v = lk_chanmap_get(m, "ws_a", 4, "victim", 6);
    ASSERT_TRUE(lk_channel_seq(v) >= 1000);
    ASSERT_EQ(lk_channel_seq(lk_chanmap_get(m, "ws_b", 4, "victim", 6)), 0);
    lk_chanmap_destroy(m);
}

#define MIB ((size_t)1 << 20)

/* Subscribed channels share LK_HISTORY_TOTAL_BYTES: beyond it the globally
 * oldest frames go, whichever channel holds them. */
static void test_history_total_bound(void)
{
    enum { NCH = 100, ROUNDS = 4 };
    lk_chanmap *m = lk_chanmap_create(8, 1);
    lk_sublist sl = {0};
    int owner;
    lk_channel *ch[NCH];
    lk_frame *big[ROUNDS];
    for (int c = 0; c < NCH; c++) {
        char name[16];
        int n = snprintf(name, sizeof name, "t%d", c);
        ch[c] = lk_chanmap_get(m, WS, 4, name, (size_t)n);
        ASSERT_NOT_NULL(lk_chanmap_subscribe(m, ch[c], 0, &owner, &sl));
    }
    for (int r = 0; r < ROUNDS; r++)
        big[r] = frame((uint64_t)r + 1, MIB);
    for (int r = 0; r < ROUNDS; r++)
        for (int c = 0; c < NCH; c++)
            lk_chanmap_record(m, ch[c], big[r]);
    size_t held = 0, entries = 0;
    for (int c = 0; c < NCH; c++) {
        size_t n = lk_channel_history_len(ch[c]);
        entries += n;
        for (size_t i = 0; i < n; i++)
            held += lk_channel_history_at(ch[c], i)->len;
    }
    ASSERT_TRUE(held <= LK_HISTORY_TOTAL_BYTES);
    ASSERT_TRUE(lk_chanmap_history_bytes(m) <= LK_HISTORY_TOTAL_BYTES);
    ASSERT_EQ(lk_chanmap_history_bytes(m), entries * (MIB + LK_HISTORY_ENTRY_OVERHEAD));
    /* 3 frames fit a channel, 255 all channels; the last 255 of the 300
     * records of rounds 2..4 are kept. */
    ASSERT_EQ(entries, 255);
    for (int c = 0; c < NCH; c++) {
        size_t want = c < 45 ? 2 : 3;
        ASSERT_EQ(lk_channel_history_len(ch[c]), want);
        for (size_t i = 0; i < want; i++)
            ASSERT_EQ(lk_channel_history_at(ch[c], i)->seq, ROUNDS - want + 1 + i);
    }
    ASSERT_EQ(big[0]->refs, 1);
    ASSERT_EQ(big[1]->refs, 1 + 55);
    lk_chanmap_unsubscribe_all(m, &sl);
    lk_chanmap_destroy(m);
    for (int r = 0; r < ROUNDS; r++) {
        ASSERT_EQ(big[r]->refs, 1);
        lk_frame_unref(big[r]);
    }
}

/* The global age order survives ring growth and shrinking: two channels'
 * interleaved frames are dropped oldest first, alternately. */
static void test_history_global_order(void)
{
    const size_t small = 10, charge = small + LK_HISTORY_ENTRY_OVERHEAD;
    lk_chanmap *m = lk_chanmap_create(64, 1);
    lk_channel *a = lk_chanmap_get(m, WS, 4, "a", 1);
    lk_channel *b = lk_chanmap_get(m, WS, 4, "b", 1);
    for (int i = 0; i < 64; i++) {
        lk_frame *fa = frame(lk_channel_next_seq(a), small);
        lk_frame *fb = frame(lk_channel_next_seq(b), small);
        lk_chanmap_record(m, a, fa);
        lk_chanmap_record(m, b, fb);
        lk_frame_unref(fa);
        lk_frame_unref(fb);
    }
    ASSERT_EQ(lk_channel_history_capacity(a), 64);
    /* Fill up to the total with 1 MiB frames, 3 to a channel. */
    lk_frame *big = frame(1, MIB);
    char name[16];
    int c = 0;
    while (LK_HISTORY_TOTAL_BYTES - lk_chanmap_history_bytes(m) >= MIB + LK_HISTORY_ENTRY_OVERHEAD) {
        int n = snprintf(name, sizeof name, "f%d", c++ / 3);
        lk_chanmap_record(m, lk_chanmap_get(m, WS, 4, name, (size_t)n), big);
    }
    ASSERT_EQ(lk_channel_history_len(a), 64);
    /* A frame needing exactly 10 entries' room, then one needing 100. */
    size_t room = LK_HISTORY_TOTAL_BYTES - lk_chanmap_history_bytes(m);
    lk_channel *z = lk_chanmap_get(m, WS, 4, "z", 1);
    lk_frame *f = frame(1, room + 10 * charge - LK_HISTORY_ENTRY_OVERHEAD);
    lk_chanmap_record(m, z, f);
    lk_frame_unref(f);
    ASSERT_EQ(lk_chanmap_history_bytes(m), LK_HISTORY_TOTAL_BYTES);
    ASSERT_EQ(lk_channel_history_len(a), 59);
    ASSERT_EQ(lk_channel_history_at(a, 0)->seq, 6);
    ASSERT_EQ(lk_channel_history_at(b, 0)->seq, 6);
    f = frame(2, 100 * charge - LK_HISTORY_ENTRY_OVERHEAD);
    lk_chanmap_record(m, z, f);
    lk_frame_unref(f);
    ASSERT_EQ(lk_channel_history_len(a), 9);
    ASSERT_EQ(lk_channel_history_len(b), 9);
    for (size_t i = 0; i < 9; i++) {
        ASSERT_EQ(lk_channel_history_at(a, i)->seq, 56 + i);
        ASSERT_EQ(lk_channel_history_at(b, i)->seq, 56 + i);
    }
    /* Rings shrank with what they hold. */
    ASSERT_TRUE(lk_channel_history_capacity(a) <= 4 * 9);
    ASSERT_EQ(lk_chanmap_history_bytes(m), LK_HISTORY_TOTAL_BYTES);
    lk_chanmap_destroy(m);
    ASSERT_EQ(big->refs, 1);
    lk_frame_unref(big);
}

/* Rings are allocated on the first message and doubled up to `history`. */
static void test_history_ring_grows_lazily(void)
{
    lk_chanmap *m = lk_chanmap_create(100000, 1);
    char name[16];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(name, sizeof name, "l%d", i);
        lk_channel *ch = lk_chanmap_get(m, WS, 4, name, (size_t)n);
        ASSERT_EQ(lk_channel_history_capacity(ch), 0);
        lk_frame *f = frame(lk_channel_next_seq(ch), 10);
        lk_chanmap_record(m, ch, f);
        lk_frame_unref(f);
        ASSERT_TRUE(lk_channel_history_capacity(ch) <= 4);
    }
    lk_channel *ch = lk_chanmap_get(m, WS, 4, "grow", 4);
    for (uint64_t s = 1; s <= 100; s++) {
        lk_frame *f = frame(s, 10);
        lk_chanmap_record(m, ch, f);
        lk_frame_unref(f);
        size_t cap = lk_channel_history_capacity(ch);
        ASSERT_TRUE(cap >= s && cap < 2 * s + 4);
    }
    for (size_t i = 0; i < 100; i++)
        ASSERT_EQ(lk_channel_history_at(ch, i)->seq, i + 1);
    lk_chanmap_destroy(m);

    /* Never past `history`, and wrapping keeps the order. */
    m = lk_chanmap_create(6, 1);
    ch = lk_chanmap_get(m, WS, 4, "w", 1);
    for (uint64_t s = 1; s <= 20; s++) {
        lk_frame *f = frame(s, 10);
        lk_chanmap_record(m, ch, f);
        lk_frame_unref(f);
    }
    ASSERT_EQ(lk_channel_history_capacity(ch), 6);
    ASSERT_EQ(lk_channel_history_len(ch), 6);
    for (size_t i = 0; i < 6; i++)
        ASSERT_EQ(lk_channel_history_at(ch, i)->seq, 15 + i);
    lk_chanmap_destroy(m);
}

static void test_per_thread_lists(void)
{
    lk_chanmap *m = lk_chanmap_create(0, 3);
    int a, b;
    lk_sublist la = {0}, lb = {0};
    lk_channel *ch = lk_chanmap_get(m, WS, 4, "chat", 4);
    lk_channel_next_seq(ch);
    lk_sub *sa = lk_chanmap_subscribe(m, ch, 2, &a, &la);
    lk_channel_next_seq(ch);
    lk_sub *sb = lk_chanmap_subscribe(m, ch, 0, &b, &lb);
    ASSERT_NOT_NULL(sa);
    ASSERT_NULL(lk_chanmap_subscribe(m, ch, 3, &b, &lb)); /* no such thread */
    ASSERT_TRUE(lk_channel_subscribers(ch, 2) == sa);
    ASSERT_TRUE(lk_channel_subscribers(ch, 0) == sb);
    ASSERT_NULL(lk_channel_subscribers(ch, 1));
    /* Live delivery starts after the seq at subscribe time. */
    ASSERT_EQ(sa->from_seq, 1);
    ASSERT_EQ(sb->from_seq, 2);
    ASSERT_EQ(lk_channel_subscriber_count(ch), 2);
    lk_chanmap_unsubscribe(m, &la, sa);
    ASSERT_NULL(lk_channel_subscribers(ch, 2));
    ASSERT_TRUE(lk_channel_subscribers(ch, 0) == sb);
    lk_chanmap_unsubscribe_all(m, &lb);
    lk_chanmap_destroy(m);
}

/* A channel with a message on its way to another thread must survive the
 * idle bound, or that thread would read freed memory. */
static void test_pinned_channel_not_evicted(void)
{
    lk_chanmap *m = lk_chanmap_create(0, 2);
    lk_channel *ch = lk_chanmap_get(m, WS, 4, "pinned", 6);
    lk_chanmap_pin(m, ch);
    lk_chanmap_pin(m, ch);
    char name[16];
    for (int i = 0; i < LK_CHAN_IDLE_MAX + 10; i++) {
        int n = snprintf(name, sizeof name, "i%d", i);
        ASSERT_NOT_NULL(lk_chanmap_get(m, WS, 4, name, (size_t)n));
    }
    ASSERT_TRUE(lk_chanmap_find(m, WS, 4, "pinned", 6) == ch);
    lk_chanmap_unpin(m, ch);
    ASSERT_TRUE(lk_chanmap_find(m, WS, 4, "pinned", 6) == ch);
    /* The last unpin makes it idle again: the newest, so it stays. */
    lk_chanmap_unpin(m, ch);
    ASSERT_EQ(lk_chanmap_channels(m), LK_CHAN_IDLE_MAX);
    for (int i = 0; i < LK_CHAN_IDLE_MAX + 10; i++) {
        int n = snprintf(name, sizeof name, "j%d", i);
        ASSERT_NOT_NULL(lk_chanmap_get(m, WS, 4, name, (size_t)n));
    }
    ASSERT_NULL(lk_chanmap_find(m, WS, 4, "pinned", 6));
    lk_chanmap_destroy(m);
}

static void test_hub_inbox(void)
{
    lk_hub *h = NULL;
    ASSERT_EQ(lk_hub_create(0, 0, &h), -1);
    ASSERT_EQ(lk_hub_create(0, LK_THREADS_MAX + 1, &h), -1);
    ASSERT_EQ(lk_hub_create(4, 2, &h), 0);
    lk_hub_entry *e;
    ASSERT_EQ(lk_hub_take(h, 1, &e), 0);
    lk_hub_lock(h);
    lk_channel *ch = lk_chanmap_get(lk_hub_channels(h), WS, 4, "c", 1);
    /* The first post into an empty inbox asks for a wake-up, later ones
     * ride on it. */
    ASSERT_EQ(lk_hub_post(h, 1, ch, frame(1, 8)), 1);
    ASSERT_EQ(lk_hub_post(h, 1, ch, frame(2, 8)), 0);
    ASSERT_EQ(lk_hub_post(h, 1, ch, frame(3, 8)), 0);
    lk_hub_unlock(h);
    size_t n = lk_hub_take(h, 1, &e);
    ASSERT_EQ(n, 3);
    for (size_t i = 0; i < n; i++) {
        ASSERT_TRUE(e[i].ch == ch);
        ASSERT_EQ(e[i].f->seq, i + 1); /* in post order */
        lk_frame_unref(e[i].f);
    }
    lk_hub_done(h, e, n);
    ASSERT_EQ(lk_hub_take(h, 0, &e), 0);
    lk_hub_lock(h);
    ASSERT_EQ(lk_hub_post(h, 1, ch, frame(4, 8)), 1);
    lk_hub_unlock(h);
    ASSERT_EQ(lk_hub_sockets_add(h, 3), 3);
    ASSERT_EQ(lk_hub_sockets_add(h, -1), 2);
    ASSERT_EQ(lk_hub_stopping(h), 0);
    lk_hub_request(h, LK_HUB_STOP);
    ASSERT_EQ(lk_hub_stopping(h), 1);
    /* An untaken entry is freed with the hub (ASan checks). */
    lk_hub_destroy(h);
}

LK_TEST_MAIN("channel",
             LK_TEST(test_per_thread_lists),
             LK_TEST(test_pinned_channel_not_evicted),
             LK_TEST(test_hub_inbox),
             LK_TEST(test_subscribe_both_indexes),
             LK_TEST(test_workspaces_are_separate),
             LK_TEST(test_many_channels_rehash),
             LK_TEST(test_history_ring),
             LK_TEST(test_history_disabled),
             LK_TEST(test_idle_eviction_bound),
             LK_TEST(test_rejects_long_names),
             LK_TEST(test_other_workspace_cannot_evict),
             LK_TEST(test_seq_survives_eviction),
             LK_TEST(test_seq_records_fair_share),
             LK_TEST(test_seq_never_backwards_past_bound),
             LK_TEST(test_history_total_bound),
             LK_TEST(test_history_global_order),
             LK_TEST(test_history_ring_grows_lazily))
