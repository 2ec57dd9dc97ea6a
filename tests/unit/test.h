/*
 * test.h - a minimal unit-test harness: ASSERT_* macros print both values
 * and the location, and a runner executes a table of test functions.
 */
#ifndef LK_TEST_H
#define LK_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int lk_test_failed;

#define LK_TEST__FAIL(...)                                       \
    do {                                                         \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);          \
        fprintf(stderr, __VA_ARGS__);                            \
        fputc('\n', stderr);                                     \
        lk_test_failed = 1;                                      \
        return;                                                  \
    } while (0)

#define ASSERT_TRUE(c) \
    do { if (!(c)) LK_TEST__FAIL("assertion failed: %s", #c); } while (0)
#define ASSERT_FALSE(c) ASSERT_TRUE(!(c))
#define ASSERT_EQ(a, b)                                                     \
    do {                                                                    \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                       \
        if (a_ != b_)                                                       \
            LK_TEST__FAIL("%s == %s: %" PRId64 " != %" PRId64, #a, #b, a_, b_); \
    } while (0)
#define ASSERT_NE(a, b)                                                     \
    do {                                                                    \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                       \
        if (a_ == b_)                                                       \
            LK_TEST__FAIL("%s != %s: both %" PRId64, #a, #b, a_);           \
    } while (0)
#define ASSERT_STREQ(a, b)                                                  \
    do {                                                                    \
        const char *a_ = (a), *b_ = (b);                                    \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                              \
            LK_TEST__FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b,             \
                          a_ ? a_ : "(null)", b_ ? b_ : "(null)");          \
    } while (0)
#define ASSERT_NULL(p) ASSERT_TRUE((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT_TRUE((p) != NULL)
/* Asserts an lk_* call returned `want`, printing both error names. */
#define ASSERT_RC(call, want)                                               \
    do {                                                                    \
        int r_ = (call), w_ = (want);                                       \
        if (r_ != w_)                                                       \
            LK_TEST__FAIL("%s: got %s (%d), want %s (%d)", #call,           \
                          lk_err_name(r_), r_, lk_err_name(w_), w_);        \
    } while (0)

typedef struct lk_test_case {
    const char *name;
    void (*fn)(void);
} lk_test_case;

#define LK_TEST(fn) { #fn, fn }

/* Runs every case; prints "N passed, N failed" and returns the exit code. */
static inline int lk_test_run(const char *suite, const lk_test_case *cases, size_t n)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        lk_test_failed = 0;
        cases[i].fn();
        if (lk_test_failed) {
            failed++;
            fprintf(stderr, "FAIL %s.%s\n", suite, cases[i].name);
        } else {
            passed++;
            printf("ok   %s.%s\n", suite, cases[i].name);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define LK_TEST_MAIN(suite, ...)                                            \
    int lk_test_failed;                                                     \
    int main(void)                                                          \
    {                                                                       \
        static const lk_test_case cases[] = {__VA_ARGS__};                  \
        return lk_test_run(suite, cases, sizeof cases / sizeof cases[0]);   \
    }

#endif
