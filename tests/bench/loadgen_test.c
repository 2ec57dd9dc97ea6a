/*
 * loadgen_test.c - unit tests for the load generator's WebSocket codec and
 * latency histogram.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lg_hist.h"
#include "lg_ws.h"
#include "test.h"

/* RFC 6455 section 1.3 example. */
#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static void test_accept_known_answer(void)
{
    char out[LG_WS_ACCEPT_BYTES + 1];
    lg_ws_accept_for(RFC_KEY, out);
    ASSERT_STREQ(out, RFC_ACCEPT);
}

static void test_make_key(void)
{
    char a[LG_WS_KEY_BYTES + 1], b[LG_WS_KEY_BYTES + 1];
    ASSERT_EQ(lg_ws_make_key(a), 0);
    ASSERT_EQ(lg_ws_make_key(b), 0);
    ASSERT_EQ(strlen(a), LG_WS_KEY_BYTES);
    ASSERT_EQ(a[22], '=');
    ASSERT_TRUE(strcmp(a, b) != 0);
}

static void test_request(void)
{
    char buf[1024];
    size_t n = lg_ws_request(buf, sizeof buf, "127.0.0.1", 8080, "/v1/realtime", RFC_KEY,
                             "aaa.bbb.ccc");
    ASSERT_TRUE(n > 0);
    ASSERT_EQ(n, strlen(buf));
    ASSERT_TRUE(strncmp(buf, "GET /v1/realtime HTTP/1.1\r\n", 27) == 0);
    ASSERT_NOT_NULL(strstr(buf, "\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"));
    ASSERT_NOT_NULL(strstr(buf, "\r\nSec-WebSocket-Protocol: latchkey.v1, bearer.aaa.bbb.ccc\r\n"));
    ASSERT_NOT_NULL(strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n"));
    ASSERT_EQ(lg_ws_head_end(buf, n), n);
    ASSERT_EQ(lg_ws_head_end(buf, n - 1), 0);
    /* Too small a buffer writes nothing useful and says so. */
    ASSERT_EQ(lg_ws_request(buf, 40, "127.0.0.1", 8080, "/", RFC_KEY, "t"), 0);
    n = lg_ws_request(buf, sizeof buf, "127.0.0.1", 1, "/", RFC_KEY, NULL);
    ASSERT_NOT_NULL(strstr(buf, "Sec-WebSocket-Protocol: latchkey.v1\r\n"));
}

static int check(const char *head)
{
    char why[64];
    return lg_ws_check_response(head, strlen(head), RFC_KEY, why, sizeof why);
}

static void test_check_response(void)
{
    char why[64];
    ASSERT_EQ(check("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                    "Sec-WebSocket-Protocol: latchkey.v1\r\n\r\n"),
              0);
    /* Header names and the Upgrade/Connection values are case-insensitive;
     * Connection may list several tokens. */
    ASSERT_EQ(check("HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
                    "connection: keep-alive, upgrade\r\nsec-websocket-accept:  " RFC_ACCEPT "\r\n"
                    "SEC-WEBSOCKET-PROTOCOL: latchkey.v1\r\n\r\n"),
              0);
    ASSERT_EQ(check("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOO=\r\n"
                    "Sec-WebSocket-Protocol: latchkey.v1\r\n\r\n"),
              -1);
    ASSERT_EQ(check("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n"),
              -1);
    ASSERT_EQ(check("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                    "Sec-WebSocket-Protocol: bearer.x\r\n\r\n"),
              -1);
    ASSERT_EQ(check("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                    "Sec-WebSocket-Protocol: latchkey.v1\r\n\r\n"),
              -1);
    const char *refused = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
    ASSERT_EQ(lg_ws_check_response(refused, strlen(refused), RFC_KEY, why, sizeof why), -1);
    ASSERT_STREQ(why, "HTTP 401");
    ASSERT_EQ(check("HTTP/1.1 1010 Nope\r\n\r\n"), -1);
    ASSERT_EQ(check("garbage\r\n\r\n"), -1);
}

static void unmask(uint8_t *p, size_t len, const uint8_t *m)
{
    for (size_t i = 0; i < len; i++)
        p[i] ^= m[i & 3];
}

static void test_encode(void)
{
    static uint8_t payload[70000], out[70000 + LG_WS_MAX_HEADER];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7);
    const size_t lens[] = {0, 1, 125, 126, 65535, 65536, 70000};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        size_t len = lens[k];
        size_t n = lg_ws_encode(out, LG_WS_TEXT, payload, len, 0x01020304u);
        size_t h = len < 126 ? 6 : len <= 65535 ? 8 : 14;
        ASSERT_EQ(n, h + len);
        ASSERT_EQ(out[0], 0x81);
        ASSERT_EQ(out[1] & 0x80, 0x80);
        if (len < 126) {
            ASSERT_EQ(out[1] & 0x7f, len);
        } else if (len <= 65535) {
            ASSERT_EQ(out[1] & 0x7f, 126);
            ASSERT_EQ((out[2] << 8) | out[3], len);
        } else {
            ASSERT_EQ(out[1] & 0x7f, 127);
            uint64_t v = 0;
            for (int i = 0; i < 8; i++)
                v = (v << 8) | out[2 + i];
            ASSERT_EQ(v, len);
        }
        ASSERT_EQ(memcmp(out + h - 4, "\x01\x02\x03\x04", 4), 0);
        unmask(out + h, len, out + h - 4);
        ASSERT_EQ(memcmp(out + h, payload, len), 0);
    }
}

/* Collects reader callbacks. */
typedef struct sink {
    int count;
    int ops[16];
    char text[16][128];
    size_t lens[16];
    int stop_after;
} sink;

static int collect(void *ud, int opcode, const uint8_t *p, size_t len)
{
    sink *s = ud;
    if (s->count < 16) {
        s->ops[s->count] = opcode;
        s->lens[s->count] = len;
        if (len < sizeof s->text[0]) {
            if (len)
                memcpy(s->text[s->count], p, len);
            s->text[s->count][len] = '\0';
        }
    }
    s->count++;
    return s->stop_after && s->count >= s->stop_after;
}

/* An unmasked server frame. */
static size_t server_frame(uint8_t *out, int fin, int opcode, const char *p, size_t len)
{
    size_t h = 0;
    out[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    }
    memcpy(out + h, p, len);
    return h + len;
}

static void test_reader_fragments_and_control(void)
{
    uint8_t buf[512];
    size_t n = 0;
    n += server_frame(buf + n, 1, LG_WS_TEXT, "{\"op\":\"welcome\"}", 16);
    n += server_frame(buf + n, 0, LG_WS_TEXT, "hel", 3);
    n += server_frame(buf + n, 1, LG_WS_PING, "pp", 2); /* control inside a message */
    n += server_frame(buf + n, 0, LG_WS_CONT, "lo\nwo", 5);
    n += server_frame(buf + n, 1, LG_WS_CONT, "rld", 3);
    n += server_frame(buf + n, 1, LG_WS_CLOSE, "\x0f\xa0", 2);

    /* Feed byte by byte, keeping the unconsumed tail as a connection would:
     * every split point must give the same messages. */
    for (size_t step = 1; step <= n; step++) {
        sink s = {0};
        lg_ws_reader r;
        lg_ws_reader_init(&r, 1024);
        uint8_t pending[512];
        size_t plen = 0, fed = 0;
        while (fed < n) {
            size_t take = n - fed < step ? n - fed : step;
            memcpy(pending + plen, buf + fed, take);
            plen += take;
            fed += take;
            long used = lg_ws_reader_feed(&r, pending, plen, collect, &s);
            ASSERT_TRUE(used >= 0);
            memmove(pending, pending + used, plen - (size_t)used);
            plen -= (size_t)used;
        }
        ASSERT_EQ(plen, 0);
        ASSERT_EQ(s.count, 4);
        ASSERT_EQ(s.ops[0], LG_WS_TEXT);
        ASSERT_STREQ(s.text[0], "{\"op\":\"welcome\"}");
        ASSERT_EQ(s.ops[1], LG_WS_PING);
        ASSERT_STREQ(s.text[1], "pp");
        ASSERT_EQ(s.ops[2], LG_WS_TEXT);
        ASSERT_STREQ(s.text[2], "hello\nworld");
        ASSERT_EQ(s.ops[3], LG_WS_CLOSE);
        ASSERT_EQ(s.lens[3], 2);
        lg_ws_reader_free(&r);
    }
}

static void test_reader_stop(void)
{
    uint8_t buf[64];
    size_t a = server_frame(buf, 1, LG_WS_CLOSE, "\x03\xe8", 2);
    size_t b = server_frame(buf + a, 1, LG_WS_TEXT, "x", 1);
    sink s = {.stop_after = 1};
    lg_ws_reader r;
    lg_ws_reader_init(&r, 1024);
    ASSERT_EQ(lg_ws_reader_feed(&r, buf, a + b, collect, &s), (long)a);
    ASSERT_EQ(s.count, 1);
    lg_ws_reader_free(&r);
}

static void test_reader_errors(void)
{
    uint8_t buf[300];
    char big[200];
    memset(big, 'a', sizeof big);
    struct {
        const char *name;
        size_t len;
    } cases[8];
    int nc = 0;
    uint8_t frames[8][300];

    /* Masked server frame. */
    frames[nc][0] = 0x81;
    frames[nc][1] = 0x80 | 1;
    memcpy(frames[nc] + 2, "\0\0\0\0x", 5);
    cases[nc].name = "masked";
    cases[nc++].len = 7;
    /* Reserved bit without an extension. */
    frames[nc][0] = 0xC1;
    frames[nc][1] = 0;
    cases[nc].name = "rsv1";
    cases[nc++].len = 2;
    /* Fragmented control frame. */
    cases[nc].len = server_frame(frames[nc], 0, LG_WS_PING, "x", 1);
    cases[nc++].name = "fragmented ping";
    /* Control payload over 125 bytes. */
    cases[nc].len = server_frame(frames[nc], 1, LG_WS_PING, big, 126);
    cases[nc++].name = "long ping";
    /* Continuation with nothing to continue. */
    cases[nc].len = server_frame(frames[nc], 1, LG_WS_CONT, "x", 1);
    cases[nc++].name = "orphan continuation";
    /* Unknown opcode. */
    cases[nc].len = server_frame(frames[nc], 1, 0x3, "x", 1);
    cases[nc++].name = "opcode 3";
    /* Over the message limit (reader limit 100 below). */
    cases[nc].len = server_frame(frames[nc], 1, LG_WS_TEXT, big, 101);
    cases[nc++].name = "too large";
    /* A new text frame inside a fragmented message. */
    size_t l = server_frame(frames[nc], 0, LG_WS_TEXT, "a", 1);
    cases[nc].len = l + server_frame(frames[nc] + l, 1, LG_WS_TEXT, "b", 1);
    cases[nc++].name = "interleaved text";

    for (int i = 0; i < nc; i++) {
        sink s = {0};
        lg_ws_reader r;
        lg_ws_reader_init(&r, 100);
        memcpy(buf, frames[i], cases[i].len);
        long rc = lg_ws_reader_feed(&r, buf, cases[i].len, collect, &s);
        if (rc != -1)
            fprintf(stderr, "case %s\n", cases[i].name);
        ASSERT_EQ(rc, -1);
        lg_ws_reader_free(&r);
    }
}

static void test_reader_long_lengths(void)
{
    static uint8_t buf[70000 + 10];
    static char payload[70000];
    memset(payload, 'z', sizeof payload);
    buf[0] = 0x81;
    buf[1] = 127;
    for (int i = 0; i < 8; i++)
        buf[2 + i] = (uint8_t)((uint64_t)sizeof payload >> (8 * (7 - i)));
    memcpy(buf + 10, payload, sizeof payload);
    sink s = {0};
    lg_ws_reader r;
    lg_ws_reader_init(&r, 1u << 20);
    ASSERT_EQ(lg_ws_reader_feed(&r, buf, 9, collect, &s), 0);        /* partial header */
    ASSERT_EQ(lg_ws_reader_feed(&r, buf, 5000, collect, &s), 0);     /* partial payload */
    ASSERT_EQ(lg_ws_reader_feed(&r, buf, sizeof buf, collect, &s), (long)sizeof buf);
    ASSERT_EQ(s.count, 1);
    ASSERT_EQ(s.lens[0], sizeof payload);
    /* A 64-bit length far over the limit is refused before any allocation. */
    memset(buf + 2, 0xff, 8);
    ASSERT_EQ(lg_ws_reader_feed(&r, buf, 10, collect, &s), -1);
    lg_ws_reader_free(&r);
}

static void test_hist_buckets(void)
{
    for (uint64_t v = 0; v < 128; v++) {
        ASSERT_EQ(lg_hist_index(v), v);
        ASSERT_EQ(lg_hist_bucket_high((unsigned)v), v);
    }
    /* Buckets tile the range: each bucket's high end is followed by the
     * next bucket's first value. */
    for (unsigned i = 0; i + 1 < LG_HIST_BUCKETS; i++) {
        uint64_t hi = lg_hist_bucket_high(i);
        ASSERT_EQ(lg_hist_index(hi), i);
        ASSERT_EQ(lg_hist_index(hi + 1), i + 1);
    }
    ASSERT_EQ(lg_hist_index(UINT64_MAX), LG_HIST_BUCKETS - 1);
    ASSERT_TRUE(lg_hist_bucket_high(LG_HIST_BUCKETS - 1) == UINT64_MAX);
    /* Relative error of the high end stays under 1/64. */
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = x >> (x & 63);
        uint64_t hi = lg_hist_bucket_high(lg_hist_index(v));
        ASSERT_TRUE(hi >= v);
        ASSERT_TRUE((double)(hi - v) <= (double)v / 64.0 + 1.0);
    }
}

static void test_hist_percentiles(void)
{
    static lg_hist h, h2;
    lg_hist_reset(&h);
    ASSERT_EQ(lg_hist_percentile(&h, 50), 0);
    for (uint64_t v = 1; v <= 100000; v++)
        lg_hist_record(&h, v * 1000); /* 1 us .. 100 ms */
    ASSERT_EQ(h.total, 100000);
    ASSERT_EQ(h.max, 100000000);
    uint64_t p50 = lg_hist_percentile(&h, 50), p99 = lg_hist_percentile(&h, 99);
    ASSERT_TRUE(p50 >= 50000000 && p50 <= 50000000 + 50000000 / 64);
    ASSERT_TRUE(p99 >= 99000000 && p99 <= 99000000 + 99000000 / 64);
    ASSERT_EQ(lg_hist_percentile(&h, 100), 100000000);

    lg_hist_reset(&h2);
    for (int i = 0; i < 100000; i++)
        lg_hist_record(&h2, 200000000);
    lg_hist_merge(&h2, &h);
    ASSERT_EQ(h2.total, 200000);
    ASSERT_EQ(h2.max, 200000000);
    p50 = lg_hist_percentile(&h2, 50);
    ASSERT_TRUE(p50 >= 100000000 && p50 <= 100000000 + 100000000 / 64);
    ASSERT_EQ(lg_hist_percentile(&h2, 75), 200000000);
}

LK_TEST_MAIN("loadgen",
             LK_TEST(test_accept_known_answer),
             LK_TEST(test_make_key),
             LK_TEST(test_request),
             LK_TEST(test_check_response),
             LK_TEST(test_encode),
             LK_TEST(test_reader_fragments_and_control),
             LK_TEST(test_reader_stop),
             LK_TEST(test_reader_errors),
             LK_TEST(test_reader_long_lengths),
             LK_TEST(test_hist_buckets),
             LK_TEST(test_hist_percentiles))
