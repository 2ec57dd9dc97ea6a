/* Unit tests for the HTTP API rate limiter (broker/ratelimit.c), on a
 * synthetic clock. */
#include <stdio.h>

#include "ratelimit.h"
#include "test.h"

#define T0 1700000000000LL   /* unix ms */

static void test_minute_window(void)
{
    lk_ratelimit *rl = lk_ratelimit_create();
    lk_rate_result r;
    ASSERT_NOT_NULL(rl);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 3, 100, T0 + i, &r), 0);
        ASSERT_EQ(r.verdict, LK_RATE_OK);
        ASSERT_EQ(r.limit, 3);
        ASSERT_EQ(r.remaining, 2 - i);
        ASSERT_EQ(r.reset, (T0 + 60000) / 1000);
    }
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 3, 100, T0 + 10, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_MINUTE);
    ASSERT_EQ(r.remaining, 0);
    ASSERT_EQ(r.retry_after, 60);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 3, 100, T0 + 59999, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_MINUTE);
    ASSERT_EQ(r.retry_after, 1);
    /* The window ends a minute after its first request. */
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 3, 100, T0 + 60000, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_OK);
    ASSERT_EQ(r.remaining, 2);
    ASSERT_EQ(r.reset, (T0 + 120000) / 1000);
    lk_ratelimit_destroy(rl);
}

static void test_reset_rounds_up(void)
{
    lk_ratelimit *rl = lk_ratelimit_create();
    lk_rate_result r;
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 5, 5, T0 + 1, &r), 0);
    ASSERT_EQ(r.reset, (T0 + 60000) / 1000 + 1);
    lk_ratelimit_destroy(rl);
}

static void test_burst_bucket(void)
{
    lk_ratelimit *rl = lk_ratelimit_create();
    lk_rate_result r;
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_b", 1000, 2, T0, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_OK);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_b", 1000, 2, T0, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_OK);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_b", 1000, 2, T0, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_SECOND);
    ASSERT_EQ(r.retry_after, 1);
    /* Refused requests count in the minute window. */
    ASSERT_EQ(r.remaining, 997);
    /* 2 per second: one token after 500 ms, not before. */
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_b", 1000, 2, T0 + 499, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_SECOND);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_b", 1000, 2, T0 + 500, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_OK);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_b", 1000, 2, T0 + 500, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_SECOND);
    /* A full second refills the whole burst, no more. */
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_b", 1000, 2, T0 + 5000, &r), 0);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_b", 1000, 2, T0 + 5000, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_OK);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_b", 1000, 2, T0 + 5000, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_SECOND);
    lk_ratelimit_destroy(rl);
}

static void test_minute_refusal_keeps_tokens(void)
{
    lk_ratelimit *rl = lk_ratelimit_create();
    lk_rate_result r;
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_c", 1, 1, T0, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_OK);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_c", 1, 1, T0 + 2000, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_MINUTE);
    ASSERT_EQ(r.retry_after, 58);
    /* The bucket was refilled and not spent by the refusal. */
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_c", 1, 1, T0 + 60000, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_OK);
    lk_ratelimit_destroy(rl);
}

static void test_workspaces_apart(void)
{
    lk_ratelimit *rl = lk_ratelimit_create();
    lk_rate_result r;
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 1, 10, T0, &r), 0);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 1, 10, T0, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_MINUTE);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_ab", 1, 10, T0, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_OK);
    ASSERT_EQ(lk_ratelimit_count(rl), 2);
    lk_ratelimit_destroy(rl);
}

static void test_clock_steps_back(void)
{
    lk_ratelimit *rl = lk_ratelimit_create();
    lk_rate_result r;
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 1, 10, T0, &r), 0);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 1, 10, T0 + 1, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_MINUTE);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 1, 10, T0 - 5000, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_OK);
    ASSERT_EQ(r.reset, (T0 - 5000 + 60000) / 1000);
    lk_ratelimit_destroy(rl);
}

static void test_lowered_burst_applies(void)
{
    lk_ratelimit *rl = lk_ratelimit_create();
    lk_rate_result r;
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 1000, 100, T0, &r), 0);
    /* A reload lowers the cap: the stored level is clipped to it. */
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 1000, 1, T0, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_OK);
    ASSERT_EQ(lk_ratelimit_hit(rl, "ws_a", 1000, 1, T0, &r), 0);
    ASSERT_EQ(r.verdict, LK_RATE_SECOND);
    lk_ratelimit_destroy(rl);
}

static void test_bad_workspace(void)
{
    lk_ratelimit *rl = lk_ratelimit_create();
    lk_rate_result r;
    char longws[80];
    memset(longws, 'a', sizeof longws - 1);
    longws[sizeof longws - 1] = '\0';
    ASSERT_EQ(lk_ratelimit_hit(rl, "", 1, 1, T0, &r), -1);
    ASSERT_EQ(lk_ratelimit_hit(rl, longws, 1, 1, T0, &r), -1);
    ASSERT_EQ(lk_ratelimit_count(rl), 0);
    lk_ratelimit_destroy(rl);
}

/* Workspaces idle for a minute are dropped as the table grows, so its size
 * follows the recently active ones. */
static void test_idle_workspaces_shed(void)
{
    lk_ratelimit *rl = lk_ratelimit_create();
    lk_rate_result r;
    char ws[32];
    for (int round = 0; round < 3; round++) {
        int64_t t = T0 + (int64_t)round * 61000;
        for (int i = 0; i < 5000; i++) {
            snprintf(ws, sizeof ws, "ws_%d_%d", round, i);
            ASSERT_EQ(lk_ratelimit_hit(rl, ws, 10, 10, t, &r), 0);
            ASSERT_EQ(r.verdict, LK_RATE_OK);
            ASSERT_EQ(r.remaining, 9);
        }
        ASSERT_TRUE(lk_ratelimit_count(rl) <= 10000);
    }
    /* A live entry survives the rebuilds with its count. */
    snprintf(ws, sizeof ws, "ws_2_17");
    ASSERT_EQ(lk_ratelimit_hit(rl, ws, 10, 10, T0 + 2 * 61000 + 5, &r), 0);
    ASSERT_EQ(r.remaining, 8);
    lk_ratelimit_destroy(rl);
    lk_ratelimit_destroy(NULL);
}

LK_TEST_MAIN("ratelimit",
             LK_TEST(test_minute_window),
             LK_TEST(test_reset_rounds_up),
             LK_TEST(test_burst_bucket),
             LK_TEST(test_minute_refusal_keeps_tokens),
             LK_TEST(test_workspaces_apart),
             LK_TEST(test_clock_steps_back),
             LK_TEST(test_lowered_burst_applies),
             LK_TEST(test_bad_workspace),
             LK_TEST(test_idle_workspaces_shed))
