/* test_demo_http.c - the demo backend's HTTP request parser: known answers,
 * every prefix of valid requests, and random mutations (run under ASan in
 * the sanitizer build, so an out-of-bounds read fails the test). */
#include <stdint.h>

#include "http.h"
#include "test.h"

static int parse(const char *s, demo_http_req *req)
{
    return demo_http_parse(s, strlen(s), req);
}

static void test_valid_requests(void)
{
    demo_http_req req;
    ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &req), 0);
    ASSERT_EQ(req.method, DEMO_HTTP_GET);
    ASSERT_STREQ(req.path, "/");
    ASSERT_EQ(req.body_len, 0);

    ASSERT_EQ(parse("HEAD /app.js?v=2#f HTTP/1.0\r\n\r\n", &req), 0);
    ASSERT_EQ(req.method, DEMO_HTTP_HEAD);
    ASSERT_STREQ(req.path, "/app.js");

    const char *post = "POST /api/token HTTP/1.1\r\ncontent-type: Application/JSON; charset=utf-8\r\n"
                       "Content-Length:  16 \r\n\r\n{\"name\":\"alice\"}";
    ASSERT_EQ(parse(post, &req), 0);
    ASSERT_EQ(req.method, DEMO_HTTP_POST);
    ASSERT_TRUE(req.json_body);
    ASSERT_EQ(req.body_len, 16);
    ASSERT_EQ(req.head_len, strlen(post) - 16);

    ASSERT_EQ(parse("DELETE /x HTTP/1.1\r\n\r\n", &req), 0);
    ASSERT_EQ(req.method, DEMO_HTTP_OTHER);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Type: application/jsonx\r\n\r\n", &req), 0);
    ASSERT_FALSE(req.json_body);
    /* A repeated, identical Content-Length is harmless. */
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", &req), 0);
}

static void test_incomplete(void)
{
    demo_http_req req;
    ASSERT_EQ(parse("", &req), DEMO_HTTP_INCOMPLETE);
    ASSERT_EQ(parse("GET / HTTP/1.1\r\n", &req), DEMO_HTTP_INCOMPLETE);
    ASSERT_EQ(parse("GET / HTTP/1.1\r\n\r", &req), DEMO_HTTP_INCOMPLETE);
    ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcd", &req), DEMO_HTTP_INCOMPLETE);
}

static void test_refusals(void)
{
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"\r\n\r\n", 400},
        {"GET\r\n\r\n", 400},
        {"GET /\r\n\r\n", 400},
        {"GET  / HTTP/1.1\r\n\r\n", 400},
        {"GET x HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1 \r\n\r\n", 400},
        {"GET / http/1.1\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET / HTTP/1.2\r\n\r\n", 505},
        {"G(T / HTTP/1.1\r\n\r\n", 400},
        {"GET /\x7f HTTP/1.1\r\n\r\n", 400},
        {"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nNo-Colon\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n: empty\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nSp ace: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n\tfold: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400},
        {"GET / HTTP/1.1\nX: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 4097\r\n\r\n", 413},
        {"POST / HTTP/1.1\r\nContent-Length: 18446744073709551617\r\n\r\n", 413},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n", 501},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        demo_http_req req;
        int rc = parse(cases[i].req, &req);
        if (rc != cases[i].status)
            fprintf(stderr, "case %zu: %s\n", i, cases[i].req);
        ASSERT_EQ(rc, cases[i].status);
    }
}

static void test_limits(void)
{
    static char buf[DEMO_HTTP_REQUEST_MAX + 64];
    demo_http_req req;

    /* A 256-byte target is fine, 257 is refused. */
    int n = snprintf(buf, sizeof buf, "GET /%0255d HTTP/1.1\r\n\r\n", 0);
    ASSERT_EQ(demo_http_parse(buf, (size_t)n, &req), 0);
    n = snprintf(buf, sizeof buf, "GET /%0256d HTTP/1.1\r\n\r\n", 0);
    ASSERT_EQ(demo_http_parse(buf, (size_t)n, &req), 414);

    /* A head that never ends is refused once it reaches the limit. */
    memset(buf, 'a', sizeof buf);
    memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
    ASSERT_EQ(demo_http_parse(buf, DEMO_HTTP_HEAD_MAX - 1, &req), DEMO_HTTP_INCOMPLETE);
    ASSERT_EQ(demo_http_parse(buf, DEMO_HTTP_HEAD_MAX, &req), 431);
    ASSERT_EQ(demo_http_parse(buf, sizeof buf, &req), 431);

    /* NUL anywhere in the head. */
    char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    ASSERT_EQ(demo_http_parse(nul, sizeof nul - 1, &req), 400);

    /* The largest body accepted. */
    n = snprintf(buf, sizeof buf, "POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n", DEMO_HTTP_BODY_MAX);
    memset(buf + n, 'b', DEMO_HTTP_BODY_MAX);
    ASSERT_EQ(demo_http_parse(buf, (size_t)n + DEMO_HTTP_BODY_MAX, &req), 0);
    ASSERT_EQ(req.body_len, DEMO_HTTP_BODY_MAX);
}

/* Every proper prefix of a valid request is incomplete, never an error. */
static void test_prefixes(void)
{
    const char *post = "POST /api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       "Content-Length: 16\r\n\r\n{\"name\":\"alice\"}";
    size_t len = strlen(post);
    for (size_t i = 0; i < len; i++) {
        char *copy = malloc(i ? i : 1); /* exact size: ASan sees any overread */
        ASSERT_NOT_NULL(copy);
        memcpy(copy, post, i);
        demo_http_req req;
        int rc = demo_http_parse(copy, i, &req);
        free(copy);
        ASSERT_EQ(rc, DEMO_HTTP_INCOMPLETE);
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)rng_state;
}

static void test_mutations(void)
{
    static const char *seeds[] = {
        "GET /index.html HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        "POST /api/token HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"name\":\"alice\"}",
        "HEAD /?a=b HTTP/1.0\r\n\r\n",
    };
    static const char alphabet[] = "\r\n :/?#\0\x7f\xff" "0123456789GETPOSTHTTP/1.Content-Length";
    for (int iter = 0; iter < 200000; iter++) {
        const char *seed = seeds[rnd() % 3];
        size_t len = strlen(seed);
        char buf[256];
        memcpy(buf, seed, len);
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = rnd() % (len + 1);
            switch (rnd() % 3) {
            case 0: /* replace */
                if (at < len)
                    buf[at] = alphabet[rnd() % (sizeof alphabet - 1)];
                break;
            case 1: /* insert */
                if (len < sizeof buf - 1) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = alphabet[rnd() % (sizeof alphabet - 1)];
                    len++;
                }
                break;
            default: /* delete */
                if (at < len) {
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                }
                break;
            }
        }
        char *copy = malloc(len ? len : 1);
        ASSERT_NOT_NULL(copy);
        memcpy(copy, buf, len);
        demo_http_req req;
        int rc = demo_http_parse(copy, len, &req);
        free(copy);
        ASSERT_TRUE(rc == 0 || rc == DEMO_HTTP_INCOMPLETE || rc == 400 || rc == 413 ||
                    rc == 414 || rc == 431 || rc == 501 || rc == 505);
        if (rc == 0) {
            ASSERT_TRUE(req.head_len + req.body_len <= len);
            ASSERT_EQ(req.path[0], '/');
            ASSERT_TRUE(strlen(req.path) <= DEMO_HTTP_PATH_MAX);
        }
    }
}

static void test_response(void)
{
    size_t len = 0;
    char *r = demo_http_response(404, "application/json", "Allow: GET\r\n", "{}", 2, 0, &len);
    ASSERT_NOT_NULL(r);
    ASSERT_STREQ(r, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                    "Content-Length: 2\r\nConnection: close\r\nAllow: GET\r\n\r\n{}");
    ASSERT_EQ(len, strlen(r));
    free(r);
    r = demo_http_response(200, NULL, NULL, "abc", 3, 1, &len);
    ASSERT_NOT_NULL(r);
    ASSERT_STREQ(r, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n");
    free(r);
}

LK_TEST_MAIN("demo_http",
             LK_TEST(test_valid_requests),
             LK_TEST(test_incomplete),
             LK_TEST(test_refusals),
             LK_TEST(test_limits),
             LK_TEST(test_prefixes),
             LK_TEST(test_mutations),
             LK_TEST(test_response))
