/* Unit tests for the session timer heap (broker/timers.c), driven by a
 * real lws context's service loop. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "timers.h"

#define N 2000

typedef struct item {
    lk_timer t;
    int fired;
    int64_t fired_at;
    int cancelled;
} item;

static item items[N];
static int fired_total;
static int64_t last_deadline;
static int out_of_order;

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_fire(lk_timer *t)
{
    item *it = (item *)t;
    it->fired++;
    it->fired_at = mono_us();
    fired_total++;
    if (t->at_us < last_deadline)
        out_of_order++;
    last_deadline = t->at_us;
}

static struct lws_context *context(void)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    lws_set_log_level(0, NULL);
    return lws_create_context(&info);
}

static void test_heap_order_cancel_rearm(void)
{
    struct lws_context *ctx = context();
    ASSERT_NOT_NULL(ctx);
    lk_timers ts;
    lk_timers_init(&ts, ctx);
    srand(7);
    int64_t t0 = mono_us();
    for (int i = 0; i < N; i++) {
        memset(&items[i], 0, sizeof items[i]);
        ASSERT_EQ(lk_timers_arm(&ts, &items[i].t, t0 + 20000 + rand() % 60000, on_fire), 0);
    }
    /* Cancel every third, move every fifth earlier or later. */
    for (int i = 0; i < N; i += 3) {
        lk_timers_cancel(&ts, &items[i].t);
        items[i].cancelled = 1;
        lk_timers_cancel(&ts, &items[i].t); /* twice is harmless */
    }
    for (int i = 1; i < N; i += 5)
        if (!items[i].cancelled)
            ASSERT_EQ(lk_timers_arm(&ts, &items[i].t, t0 + 10000 + rand() % 90000, on_fire), 0);
    int expected = 0;
    for (int i = 0; i < N; i++)
        expected += !items[i].cancelled;
    int64_t deadline = t0 + 2000000;
    while (fired_total < expected && mono_us() < deadline)
        lws_service(ctx, 0);
    ASSERT_EQ(fired_total, expected);
    ASSERT_EQ(out_of_order, 0);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(items[i].fired, (items[i].cancelled ? 0 : 1));
        ASSERT_EQ(items[i].t.slot, 0);
        if (items[i].fired)
            ASSERT_TRUE(items[i].fired_at >= items[i].t.at_us);
    }
    ASSERT_EQ(ts.n, 0);
    lk_timers_detach(&ts);
    lws_context_destroy(ctx);
    lk_timers_fini(&ts);
}

static int rearmed;
static lk_timers *self_ts;

static void rearm_once(lk_timer *t)
{
    if (rearmed++ == 0)
        ASSERT_EQ(lk_timers_arm(self_ts, t, mono_us() + 5000, rearm_once), 0);
}

static void test_rearm_from_callback(void)
{
    struct lws_context *ctx = context();
    ASSERT_NOT_NULL(ctx);
    lk_timers ts;
    lk_timers_init(&ts, ctx);
    self_ts = &ts;
    lk_timer t;
    memset(&t, 0, sizeof t);
    ASSERT_EQ(lk_timers_arm(&ts, &t, mono_us() + 1000, rearm_once), 0);
    int64_t deadline = mono_us() + 1000000;
    while (rearmed < 2 && mono_us() < deadline)
        lws_service(ctx, 0);
    ASSERT_EQ(rearmed, 2);
    ASSERT_EQ(t.slot, 0);
    lk_timers_detach(&ts);
    lws_context_destroy(ctx);
    lk_timers_fini(&ts);
}

LK_TEST_MAIN("timers",
             LK_TEST(test_heap_order_cancel_rearm),
             LK_TEST(test_rearm_from_callback))
