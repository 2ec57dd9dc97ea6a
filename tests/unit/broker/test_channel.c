/* Unit tests for the channel registry (broker/channel.c). */
#include <string.h>

#include "channel.h"
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
    lk_chanmap *m = lk_chanmap_create(0);
    int a, b;
    lk_sublist la = {0}, lb = {0};
    lk_channel *ch = lk_chanmap_get(m, WS, 4, "chat", 4);
    ASSERT_NOT_NULL(ch);
    ASSERT_TRUE(lk_chanmap_get(m, WS, 4, "chat", 4) == ch);
    lk_sub *sa = lk_chanmap_subscribe(m, ch, &a, &la);
    lk_sub *sb = lk_chanmap_subscribe(m, ch, &b, &lb);
    ASSERT_EQ(lk_channel_subscriber_count(ch), 2);
    ASSERT_EQ(lk_chanmap_subscriptions(m), 2);
    ASSERT_TRUE(lk_sublist_find(&la, ch) == sa);
    ASSERT_TRUE(lk_sublist_find(&lb, ch) == sb);
    lk_chanmap_unsubscribe(m, &la, sa);
    ASSERT_NULL(lk_sublist_find(&la, ch));
    ASSERT_EQ(la.count, 0);
    ASSERT_TRUE(lk_channel_subscribers(ch) == sb);
    ASSERT_NULL(sb->cnext);
    lk_chanmap_unsubscribe_all(m, &lb);
    ASSERT_EQ(lk_chanmap_subscriptions(m), 0);
    /* Idle channels stay, with their seq. */
    ASSERT_EQ(lk_chanmap_channels(m), 1);
    lk_chanmap_destroy(m);
}

static void test_workspaces_are_separate(void)
{
    lk_chanmap *m = lk_chanmap_create(0);
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
    lk_chanmap *m = lk_chanmap_create(0);
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
    lk_chanmap *m = lk_chanmap_create(3);
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
    lk_chanmap *m = lk_chanmap_create(0);
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
    lk_chanmap *m = lk_chanmap_create(1);
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
    lk_chanmap *m = lk_chanmap_create(0);
    char name[202];
    memset(name, 'a', sizeof name);
    ASSERT_NULL(lk_chanmap_get(m, WS, 4, name, 201));
    ASSERT_NOT_NULL(lk_chanmap_get(m, WS, 4, name, 200));
    lk_chanmap_destroy(m);
}

LK_TEST_MAIN("channel",
             LK_TEST(test_subscribe_both_indexes),
             LK_TEST(test_workspaces_are_separate),
             LK_TEST(test_many_channels_rehash),
             LK_TEST(test_history_ring),
             LK_TEST(test_history_disabled),
             LK_TEST(test_idle_eviction_bound),
             LK_TEST(test_rejects_long_names))
