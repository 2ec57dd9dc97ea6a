/* Unit tests for the request-head rewrite that carries a bearer
 * subprotocol past lws (broker/prelude.c). */
#include <stdio.h>
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

/* lk_prelude_frame on a whole request head (the text up to and with its
 * blank line). */
static int frame(const char *head, lk_prelude_req *req)
{
    size_t len = strlen(head);
    if (lk_prelude_head_end(head, len) != len)
        return -1;   /* not one whole head: matches no verdict */
    return (int)lk_prelude_frame(head, len, req);
}

#define UPGRADE_HEADERS "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
                        "Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==\r\n"             \
                        "Sec-WebSocket-Version: 13\r\n"

static void test_frame_upgrades(void)
{
    lk_prelude_req req;
    ASSERT_EQ(frame("GET /v1/realtime HTTP/1.1\r\n" UPGRADE_HEADERS
                    "Sec-WebSocket-Protocol: latchkey.v1\r\n\r\n", &req), LK_PRELUDE_OK);
    ASSERT_TRUE(req.upgrade);
    ASSERT_FALSE(req.bearer);
    ASSERT_EQ(req.body, 0);
    ASSERT_EQ(frame("GET /v1/realtime HTTP/1.1\r\n" UPGRADE_HEADERS
                    "Sec-WebSocket-Protocol: latchkey.v1, bearer.a.b.c\r\n\r\n", &req),
              LK_PRELUDE_OK);
    ASSERT_TRUE(req.upgrade && req.bearer);
    ASSERT_EQ(frame("GET / HTTP/1.1\r\nupgrade:  WebSocket \t\r\n\r\n", &req), LK_PRELUDE_OK);
    ASSERT_TRUE(req.upgrade);
    /* lws takes any Upgrade as an upgrade attempt: only a clean one passes. */
    ASSERT_EQ(frame("GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", &req), LK_PRELUDE_MALFORMED);
    ASSERT_EQ(frame("GET / HTTP/1.1\r\nUpgrade:\r\n\r\n", &req), LK_PRELUDE_MALFORMED);
    ASSERT_EQ(frame("GET / HTTP/1.1\r\nUpgrade: websocket\r\nUpgrade: websocket\r\n\r\n",
                    &req), LK_PRELUDE_MALFORMED);
    ASSERT_EQ(frame("POST / HTTP/1.1\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
                    &req), LK_PRELUDE_MALFORMED);
    ASSERT_EQ(frame("GET / HTTP/1.1\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\n",
                    &req), LK_PRELUDE_MALFORMED);
}

static void test_frame_bodies(void)
{
    lk_prelude_req req;
    ASSERT_EQ(frame("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &req), LK_PRELUDE_OK);
    ASSERT_FALSE(req.upgrade);
    ASSERT_EQ(req.body, 0);
    ASSERT_FALSE(req.bearer);
    ASSERT_EQ(frame("POST /v1/tokens HTTP/1.1\r\ncontent-length: 17\r\n\r\n", &req),
              LK_PRELUDE_OK);
    ASSERT_EQ(req.body, 17);
    ASSERT_EQ(frame("PUT /x HTTP/1.0\r\nContent-Length:0\r\n\r\n", &req), LK_PRELUDE_OK);
    ASSERT_EQ(req.body, 0);
    ASSERT_EQ(frame("GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n", &req), LK_PRELUDE_OK);
    ASSERT_EQ(req.body, 5);
    ASSERT_EQ(frame("DELETE /x HTTP/1.1\r\nContent-Length: 999999999999999999\r\n\r\n",
                    &req), LK_PRELUDE_OK);
    ASSERT_EQ(req.body, 999999999999999999ULL);
    /* lws would read a body of 100 MiB: refused instead. */
    ASSERT_EQ(frame("POST /v1/tokens HTTP/1.1\r\nHost: x\r\n\r\n", &req), LK_PRELUDE_NO_LENGTH);
    ASSERT_EQ(frame("PATCH /x HTTP/1.1\r\n\r\n", &req), LK_PRELUDE_NO_LENGTH);
    ASSERT_EQ(frame("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &req),
              LK_PRELUDE_CHUNKED);
    ASSERT_EQ(frame("POST /x HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: x\r\n\r\n",
                    &req), LK_PRELUDE_CHUNKED);
}

static void test_frame_refuses_what_lws_could_read_otherwise(void)
{
    static const char *const bad[] = {
        "POST /x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: +2\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: -2\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: 2 \r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length:  2\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: \r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length : 2\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n",
        "GET / HTTP/1.1\r\n\tX-A: b\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: b\rc\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: b\nHost: c\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: b\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: b\x01\r\n\r\n",
        "GET / HTTP/1.1\r\n: b\r\n\r\n",
        "GET / HTTP/1.1\r\nX(A): b\r\n\r\n",
        "GET / HTTP/1.1\r\nno colon\r\n\r\n",
        "get / HTTP/1.1\r\n\r\n",
        "CONNECT x:443 HTTP/1.1\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET /\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET http://x/ HTTP/1.1\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
        "GET /\x80 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
    };
    lk_prelude_req req;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (frame(bad[i], &req) != LK_PRELUDE_MALFORMED) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            ASSERT_TRUE(0);
        }
    }
    /* A NUL inside the head. */
    static const char nul[] = "GET / HTTP/1.1\r\nX-A: b\0c\r\n\r\n";
    ASSERT_EQ(lk_prelude_frame(nul, sizeof nul - 1, &req), LK_PRELUDE_MALFORMED);
    /* Tabs and 8-bit bytes are fine in values. */
    ASSERT_EQ(frame("GET / HTTP/1.1\r\nX-A: b\tc \xc3\xa9\r\n\r\n", &req), LK_PRELUDE_OK);
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
             LK_TEST(test_output_bound),
             LK_TEST(test_frame_upgrades),
             LK_TEST(test_frame_bodies),
             LK_TEST(test_frame_refuses_what_lws_could_read_otherwise))
