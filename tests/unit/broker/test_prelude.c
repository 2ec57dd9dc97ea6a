/* Unit tests for the request-head rewrite that carries a bearer
 * subprotocol past lws (broker/prelude.c). */
#include <stdlib.h>
#include <string.h>

#include "prelude.h"
#include "test.h"

static char out[8192];

static const char *rewrite(const char *req)
{
    size_t len = strlen(req);
    size_t head = lk_prelude_head_end(req, len);
    if (!head)
        return NULL;
    size_t n = lk_prelude_rewrite(req, head, len, out);
    out[n] = '\0';
    return out;
}

static void test_head_end(void)
{
    ASSERT_EQ(lk_prelude_head_end("GET / HTTP/1.1\r\nHost: a\r\n", 25), 0);
    const char *r = "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
    ASSERT_EQ(lk_prelude_head_end(r, strlen(r)), strlen(r) - 4);
    ASSERT_EQ(lk_prelude_head_end("", 0), 0);
    ASSERT_EQ(lk_prelude_head_end("\r\n\r", 3), 0);
}

static void test_unchanged_without_bearer(void)
{
    const char *r = "GET /v1/realtime HTTP/1.1\r\nHost: x\r\n"
                    "Sec-WebSocket-Protocol: latchkey.v1\r\nAuthorization: Bearer abc\r\n\r\n";
    ASSERT_STREQ(rewrite(r), r);
}

static void test_bearer_moves_to_authorization(void)
{
    const char *r = "GET /v1/realtime HTTP/1.1\r\nHost: x\r\n"
                    "Sec-WebSocket-Protocol: latchkey.v1, bearer.aaa.bbb.ccc\r\n"
                    "Authorization: Bearer other\r\nX-Y: z\r\n\r\n";
    ASSERT_STREQ(rewrite(r), "GET /v1/realtime HTTP/1.1\r\nHost: x\r\n"
                             "Sec-WebSocket-Protocol: latchkey.v1\r\nX-Y: z\r\n"
                             "Authorization: Bearer aaa.bbb.ccc\r\n\r\n");
}

static void test_bearer_first_and_case(void)
{
    const char *r = "GET / HTTP/1.1\r\nsec-websocket-protocol: bearer.t1,latchkey.v1 , bearer.t2\r\n\r\n";
    ASSERT_STREQ(rewrite(r), "GET / HTTP/1.1\r\nSec-WebSocket-Protocol: latchkey.v1\r\n"
                             "Authorization: Bearer t1\r\n\r\n");
}

static void test_empty_bearer_keeps_authorization(void)
{
    const char *r = "GET / HTTP/1.1\r\nSec-WebSocket-Protocol: latchkey.v1, bearer.\r\n"
                    "Authorization: Bearer hdr\r\n\r\n";
    ASSERT_STREQ(rewrite(r), "GET / HTTP/1.1\r\nSec-WebSocket-Protocol: latchkey.v1\r\n"
                             "Authorization: Bearer hdr\r\n\r\n");
}

static void test_only_bearer_drops_header(void)
{
    const char *r = "GET / HTTP/1.1\r\nSec-WebSocket-Protocol: bearer.tok\r\n\r\n";
    ASSERT_STREQ(rewrite(r), "GET / HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n");
}

static void test_second_protocol_header_and_body(void)
{
    const char *r = "POST / HTTP/1.1\r\nSec-WebSocket-Protocol: latchkey.v1\r\n"
                    "Sec-WebSocket-Protocol: bearer.zz\r\nContent-Length: 3\r\n\r\nabc";
    ASSERT_STREQ(rewrite(r), "POST / HTTP/1.1\r\nSec-WebSocket-Protocol: latchkey.v1\r\n"
                             "Content-Length: 3\r\nAuthorization: Bearer zz\r\n\r\nabc");
}

static void test_folded_headers_untouched(void)
{
    const char *r = "GET / HTTP/1.1\r\nSec-WebSocket-Protocol: latchkey.v1,\r\n bearer.x\r\n\r\n";
    ASSERT_STREQ(rewrite(r), r);
}

static void test_output_bound(void)
{
    /* Many short items grow by ", " each: stay within the documented bound. */
    char req[4096];
    size_t n = (size_t)snprintf(req, sizeof req, "GET / HTTP/1.1\r\nSec-WebSocket-Protocol: ");
    for (int i = 0; i < 500; i++)
        req[n++] = i % 2 ? ',' : 'a';
    n += (size_t)snprintf(req + n, sizeof req - n, ",bearer.t\r\n\r\n");
    size_t head = lk_prelude_head_end(req, n);
    ASSERT_TRUE(head > 0);
    size_t w = lk_prelude_rewrite(req, head, n, out);
    ASSERT_TRUE(w <= LK_PRELUDE_OUT_MAX(n));
    out[w] = '\0';
    ASSERT_TRUE(strstr(out, "Authorization: Bearer t\r\n") != NULL);
}

LK_TEST_MAIN("prelude",
             LK_TEST(test_head_end),
             LK_TEST(test_unchanged_without_bearer),
             LK_TEST(test_bearer_moves_to_authorization),
             LK_TEST(test_bearer_first_and_case),
             LK_TEST(test_empty_bearer_keeps_authorization),
             LK_TEST(test_only_bearer_drops_header),
             LK_TEST(test_second_protocol_header_and_body),
             LK_TEST(test_folded_headers_untouched),
             LK_TEST(test_output_bound))
