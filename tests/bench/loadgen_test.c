/*
 * loadgen_test.c - unit tests for the load generator's WebSocket codec,
 * NATS and MQTT codecs and stream buffer, payload, protocol encoders and
 * latency histogram.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lg_client.h"
#include "lg_hist.h"
#include "lg_proto.h"
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
                             "latchkey.v1", "aaa.bbb.ccc");
    ASSERT_TRUE(n > 0);
    ASSERT_EQ(n, strlen(buf));
    ASSERT_TRUE(strncmp(buf, "GET /v1/realtime HTTP/1.1\r\n", 27) == 0);
    ASSERT_NOT_NULL(strstr(buf, "\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"));
    ASSERT_NOT_NULL(strstr(buf, "\r\nSec-WebSocket-Protocol: latchkey.v1, bearer.aaa.bbb.ccc\r\n"));
    ASSERT_NOT_NULL(strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n"));
    ASSERT_EQ(lg_ws_head_end(buf, n), n);
    ASSERT_EQ(lg_ws_head_end(buf, n - 1), 0);
    /* Too small a buffer writes nothing useful and says so. */
    ASSERT_EQ(lg_ws_request(buf, 40, "127.0.0.1", 8080, "/", RFC_KEY, "latchkey.v1", "t"), 0);
    n = lg_ws_request(buf, sizeof buf, "127.0.0.1", 1, "/", RFC_KEY, "latchkey.v1", NULL);
    ASSERT_NOT_NULL(strstr(buf, "Sec-WebSocket-Protocol: latchkey.v1\r\n"));
    n = lg_ws_request(buf, sizeof buf, "127.0.0.1", 1, "/mqtt", RFC_KEY, "mqtt", NULL);
    ASSERT_NOT_NULL(strstr(buf, "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"));
    /* No subprotocol at all (nats-server, limit): no header. */
    n = lg_ws_request(buf, sizeof buf, "127.0.0.1", 1, "/", RFC_KEY, NULL, NULL);
    ASSERT_TRUE(n > 0);
    ASSERT_NULL(strstr(buf, "Sec-WebSocket-Protocol"));
    ASSERT_EQ(lg_ws_head_end(buf, n), n);
}

static int check_proto(const char *head, const char *subprotocol)
{
    char why[64];
    return lg_ws_check_response(head, strlen(head), RFC_KEY, subprotocol, why, sizeof why);
}

static int check(const char *head)
{
    return check_proto(head, "latchkey.v1");
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
    /* Without a requested subprotocol, none may be selected. */
    const char *plain = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n";
    ASSERT_EQ(check_proto(plain, NULL), 0);
    ASSERT_EQ(check_proto(plain, "mqtt"), -1);
    ASSERT_EQ(check_proto("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                          "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
                          NULL),
              -1);
    ASSERT_EQ(check_proto("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                          "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
                          "mqtt"),
              0);
    const char *refused = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
    ASSERT_EQ(lg_ws_check_response(refused, strlen(refused), RFC_KEY, "latchkey.v1", why,
                                   sizeof why),
              -1);
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

/* ---- NATS ---- */

/* A NATS stream as nats-server writes it, with what parsing it must give. */
static const char nats_stream[] =
    "INFO {\"server_id\":\"X\",\"version\":\"2.9.10\",\"max_payload\":1048576}\r\n"
    "PING\r\n"
    "MSG bench.fanout 1 5\r\nhello\r\n"
    "MSG a.b 22 _INBOX.x 0\r\n\r\n"
    "msg lower 3  7\r\nwith\r\n.\r\n"
    "HMSG h.s 2 12 15\r\nNATS/1.0\r\n\r\nabc\r\n"
    "+OK\r\n"
    "PONG\r\n"
    "-ERR 'Slow Consumer Detected'\r\n"
    "MSG last 2 2\r\n{}\r\n";

typedef struct nats_sink {
    int count;
    int types[16];
    uint64_t sids[16];
    char subj[16][32];
    char data[16][80];
    int stop_after;
} nats_sink;

static int nats_collect(void *ud, const lg_nats_msg *m)
{
    nats_sink *s = ud;
    if (s->count < 16) {
        s->types[s->count] = m->type;
        s->sids[s->count] = m->sid;
        snprintf(s->subj[s->count], sizeof s->subj[0], "%.*s", (int)m->subject_len,
                 m->subject ? m->subject : "");
        snprintf(s->data[s->count], sizeof s->data[0], "%.*s", (int)m->payload_len,
                 m->payload ? (const char *)m->payload : "");
    }
    s->count++;
    return s->stop_after && s->count >= s->stop_after;
}

static void check_nats_sink(const nats_sink *s)
{
    ASSERT_EQ(s->count, 10);
    ASSERT_EQ(s->types[0], LG_NATS_INFO);
    ASSERT_TRUE(strncmp(s->data[0], "{\"server_id\":\"X\"", 16) == 0);
    ASSERT_EQ(s->types[1], LG_NATS_PING);
    ASSERT_EQ(s->types[2], LG_NATS_MSG);
    ASSERT_STREQ(s->subj[2], "bench.fanout");
    ASSERT_EQ(s->sids[2], 1);
    ASSERT_STREQ(s->data[2], "hello");
    ASSERT_EQ(s->types[3], LG_NATS_MSG); /* reply subject, empty payload */
    ASSERT_EQ(s->sids[3], 22);
    ASSERT_STREQ(s->data[3], "");
    ASSERT_EQ(s->types[4], LG_NATS_MSG); /* lower case, double blank, CRLF inside */
    ASSERT_STREQ(s->data[4], "with\r\n.");
    ASSERT_EQ(s->types[5], LG_NATS_MSG); /* headers skipped */
    ASSERT_STREQ(s->data[5], "abc");
    ASSERT_EQ(s->types[6], LG_NATS_OK);
    ASSERT_EQ(s->types[7], LG_NATS_PONG);
    ASSERT_EQ(s->types[8], LG_NATS_ERR);
    ASSERT_STREQ(s->data[8], "'Slow Consumer Detected'");
    ASSERT_EQ(s->types[9], LG_NATS_MSG);
    ASSERT_STREQ(s->data[9], "{}");
}

static void test_nats_parse(void)
{
    nats_sink s = {0};
    const uint8_t *p = (const uint8_t *)nats_stream;
    size_t len = sizeof nats_stream - 1, off = 0;
    lg_nats_msg m;
    while (off < len) {
        long n = lg_nats_parse(p + off, len - off, 1024, &m);
        ASSERT_TRUE(n > 0);
        /* Every proper prefix of a message is incomplete, never an error. */
        for (size_t k = 0; k < (size_t)n; k++)
            ASSERT_EQ(lg_nats_parse(p + off, k, 1024, &m), 0);
        lg_nats_parse(p + off, len - off, 1024, &m);
        nats_collect(&s, &m);
        off += (size_t)n;
    }
    check_nats_sink(&s);
}

/* Feeds a stream in chunks of `step` bytes, and at every two-way split. */
static void test_nats_stream_splits(void)
{
    const uint8_t *p = (const uint8_t *)nats_stream;
    size_t len = sizeof nats_stream - 1;
    for (size_t step = 1; step <= len; step++) {
        nats_sink s = {0};
        lg_stream st = {0};
        for (size_t off = 0; off < len; off += step) {
            size_t take = len - off < step ? len - off : step;
            ASSERT_EQ(lg_nats_feed(&st, p + off, take, 1024, nats_collect, &s), 0);
        }
        ASSERT_EQ(st.len, 0);
        check_nats_sink(&s);
        lg_stream_free(&st);
        if (lk_test_failed)
            return;
    }
    for (size_t cut = 0; cut <= len; cut++) {
        nats_sink s = {0};
        lg_stream st = {0};
        ASSERT_EQ(lg_nats_feed(&st, p, cut, 1024, nats_collect, &s), 0);
        ASSERT_EQ(lg_nats_feed(&st, p + cut, len - cut, 1024, nats_collect, &s), 0);
        check_nats_sink(&s);
        lg_stream_free(&st);
        if (lk_test_failed)
            return;
    }
    /* A callback that stops drops the rest. */
    nats_sink s = {.stop_after = 3};
    lg_stream st = {0};
    ASSERT_EQ(lg_nats_feed(&st, p, len, 1024, nats_collect, &s), 1);
    ASSERT_EQ(s.count, 3);
    ASSERT_EQ(st.len, 0);
    lg_stream_free(&st);
}

static void test_nats_bad_input(void)
{
    static const char *const bad[] = {
        "FOO bar\r\n",                 /* unknown operation */
        "PING\n",                      /* LF without CR */
        "\r\n",                        /* empty line */
        "MSG a 1\r\n",                 /* too few arguments */
        "MSG a b c d e f g 1\r\n",     /* too many */
        "MSG a x 1\r\nz\r\n",          /* sid not a number */
        "MSG a 1 -1\r\nz\r\n",         /* length not a number */
        "MSG a 1 99999999999999999999\r\n", /* length overflow */
        "MSG a 1 2000\r\n",            /* over max_payload */
        "MSG a 1 3\r\nabcd\r\n",       /* payload longer than said */
        "HMSG a 1 5 3\r\nabc\r\n",     /* header bytes > total */
    };
    lg_nats_msg m;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long rc = lg_nats_parse((const uint8_t *)bad[i], strlen(bad[i]), 1024, &m);
        if (rc != -1)
            fprintf(stderr, "case %zu: %s\n", i, bad[i]);
        ASSERT_EQ(rc, -1);
    }
    /* A control line that never ends is refused once it passes the bound,
     * through the stream too (which then keeps nothing). */
    static uint8_t big[LG_NATS_MAX_LINE + 10];
    memcpy(big, "INFO ", 5);
    memset(big + 5, 'a', sizeof big - 5);
    ASSERT_EQ(lg_nats_parse(big, LG_NATS_MAX_LINE - 1, 1024, &m), 0);
    ASSERT_EQ(lg_nats_parse(big, sizeof big, 1024, &m), -1);
    nats_sink s = {0};
    lg_stream st = {0};
    ASSERT_EQ(lg_nats_feed(&st, big, 1000, 1024, nats_collect, &s), 0);
    ASSERT_EQ(lg_nats_feed(&st, big + 1000, sizeof big - 1000, 1024, nats_collect, &s), -1);
    ASSERT_EQ(st.len, 0);
    ASSERT_EQ(s.count, 0);
    /* Good messages before a bad one are delivered. */
    const char *mixed = "PING\r\nBAD\r\n";
    ASSERT_EQ(lg_nats_feed(&st, (const uint8_t *)mixed, strlen(mixed), 1024, nats_collect, &s),
              -1);
    ASSERT_EQ(s.count, 1);
    lg_stream_free(&st);
}

/* ---- MQTT ---- */

static void test_mqtt_encode(void)
{
    uint8_t out[300];
    static const uint8_t connect[] = {0x10, 18, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0x02, 0x58,
                                      0,    6,  'l', 'g', '-', '1', '-', '0'};
    ASSERT_EQ(lg_mqtt_connect(out, sizeof out, "lg-1-0", 600), sizeof connect);
    ASSERT_EQ(memcmp(out, connect, sizeof connect), 0);
    ASSERT_EQ(lg_mqtt_connect(out, sizeof connect - 1, "lg-1-0", 600), 0);

    static const uint8_t sub1[] = {0x82, 8, 0, 1, 0, 3, 'a', '/', 'b', 0};
    const char *topics[] = {"a/b", "bench/x"};
    ASSERT_EQ(lg_mqtt_subscribe(out, sizeof out, 1, topics, 1), sizeof sub1);
    ASSERT_EQ(memcmp(out, sub1, sizeof sub1), 0);
    size_t n = lg_mqtt_subscribe(out, sizeof out, 7, topics, 2);
    ASSERT_EQ(n, 2 + 2 + 6 + 10);
    ASSERT_EQ(out[1], 18);
    ASSERT_EQ(memcmp(out + 10, "\0\7bench/x\0", 10), 0);
    ASSERT_EQ(lg_mqtt_subscribe(out, sizeof out, 0, topics, 1), 0); /* packet id 0 */

    static const uint8_t pub[] = {0x30, 7, 0, 3, 'a', '/', 'b', 'h', 'i'};
    ASSERT_EQ(lg_mqtt_publish(out, sizeof out, "a/b", 3, "hi", 2), sizeof pub);
    ASSERT_EQ(memcmp(out, pub, sizeof pub), 0);
    /* Remaining length 2 + 1 + 200 = 203 takes two bytes: 0xcb 0x01. */
    static char big[200];
    memset(big, 'z', sizeof big);
    n = lg_mqtt_publish(out, sizeof out, "t", 1, big, sizeof big);
    ASSERT_EQ(n, 1 + 2 + 203);
    ASSERT_EQ(out[1], 0xcb);
    ASSERT_EQ(out[2], 0x01);
    lg_mqtt_pkt p;
    ASSERT_EQ(lg_mqtt_parse(out, n, 1 << 20, &p), (long)n);
    ASSERT_EQ(p.type, LG_MQTT_PUBLISH);
    ASSERT_EQ(p.topic_len, 1);
    ASSERT_EQ(p.payload_len, sizeof big);
    ASSERT_EQ(lg_mqtt_pingreq(out, sizeof out), 2);
    ASSERT_EQ(out[0], 0xc0);
}

/* CONNACK, SUBACK, PUBLISH x3 (one QoS 1, one with a 3-byte length),
 * PINGRESP. */
static size_t mqtt_stream(uint8_t *buf)
{
    static char big[20000];
    memset(big, 'q', sizeof big);
    size_t n = 0;
    static const uint8_t head[] = {0x20, 2, 0, 0, 0x90, 3, 0, 1, 0};
    memcpy(buf, head, sizeof head);
    n += sizeof head;
    n += lg_mqtt_publish(buf + n, 100, "bench/fanout", 12, "{\"t\":1}", 7);
    static const uint8_t qos1[] = {0x32, 9, 0, 2, 'a', 'b', 0, 5, 'x', 'y', 'z'};
    memcpy(buf + n, qos1, sizeof qos1);
    n += sizeof qos1;
    n += lg_mqtt_publish(buf + n, sizeof big + 100, "b", 1, big, sizeof big);
    buf[n++] = 0xd0;
    buf[n++] = 0;
    return n;
}

typedef struct mqtt_sink {
    int count;
    int types[16];
    size_t plen[16];
    char data[16][32];
    int qos[16];
} mqtt_sink;

static int mqtt_collect(void *ud, const lg_mqtt_pkt *p)
{
    mqtt_sink *s = ud;
    if (s->count < 16) {
        s->types[s->count] = p->type;
        s->plen[s->count] = p->payload_len;
        s->qos[s->count] = p->qos;
        snprintf(s->data[s->count], sizeof s->data[0], "%.*s",
                 (int)(p->payload_len > 20 ? 20 : p->payload_len),
                 p->payload ? (const char *)p->payload : "");
    }
    s->count++;
    return 0;
}

static void check_mqtt_sink(const mqtt_sink *s)
{
    ASSERT_EQ(s->count, 6);
    ASSERT_EQ(s->types[0], LG_MQTT_CONNACK);
    ASSERT_EQ(s->types[1], LG_MQTT_SUBACK);
    ASSERT_EQ(s->types[2], LG_MQTT_PUBLISH);
    ASSERT_STREQ(s->data[2], "{\"t\":1}");
    ASSERT_EQ(s->types[3], LG_MQTT_PUBLISH);
    ASSERT_EQ(s->qos[3], 1);
    ASSERT_STREQ(s->data[3], "xyz"); /* packet id skipped */
    ASSERT_EQ(s->types[4], LG_MQTT_PUBLISH);
    ASSERT_EQ(s->plen[4], 20000);
    ASSERT_EQ(s->types[5], LG_MQTT_PINGRESP);
}

static void test_mqtt_stream_splits(void)
{
    static uint8_t buf[21000];
    size_t len = mqtt_stream(buf);
    /* The large PUBLISH (before the 2-byte PINGRESP) has a 3-byte length. */
    const uint8_t *big = buf + len - 2 - (1 + 3 + 2 + 1 + 20000);
    ASSERT_EQ(big[0], 0x30);
    ASSERT_TRUE((big[1] & 0x80) && (big[2] & 0x80) && !(big[3] & 0x80));
    /* Two-way splits around every packet boundary and inside headers. */
    for (size_t cut = 0; cut <= len; cut += cut < 60 || cut > len - 60 ? 1 : 997) {
        mqtt_sink s = {0};
        lg_stream st = {0};
        ASSERT_EQ(lg_mqtt_feed(&st, buf, cut, 1 << 20, mqtt_collect, &s), 0);
        ASSERT_EQ(lg_mqtt_feed(&st, buf + cut, len - cut, 1 << 20, mqtt_collect, &s), 0);
        ASSERT_EQ(st.len, 0);
        check_mqtt_sink(&s);
        lg_stream_free(&st);
        if (lk_test_failed)
            return;
    }
    /* Small chunks. */
    for (size_t step = 1; step <= 7; step++) {
        mqtt_sink s = {0};
        lg_stream st = {0};
        for (size_t off = 0; off < len; off += step) {
            size_t take = len - off < step ? len - off : step;
            ASSERT_EQ(lg_mqtt_feed(&st, buf + off, take, 1 << 20, mqtt_collect, &s), 0);
        }
        check_mqtt_sink(&s);
        lg_stream_free(&st);
    }
}

static void test_mqtt_bad_input(void)
{
    static const struct {
        const char *name;
        uint8_t b[8];
        size_t len;
    } bad[] = {
        {"type 0", {0x00, 0}, 2},
        {"type 15", {0xf0, 0}, 2},
        {"5-byte length", {0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, 6},
        {"publish qos 3", {0x36, 3, 0, 1, 'a'}, 5},
        {"publish topic past the end", {0x30, 3, 0, 5, 'a'}, 5},
        {"publish empty topic", {0x30, 2, 0, 0}, 4},
        {"publish qos 1 no packet id", {0x32, 3, 0, 1, 'a'}, 5},
        {"connack length 3", {0x20, 3, 0, 0, 0}, 5},
        {"suback too short", {0x90, 2, 0, 1}, 4},
        {"pingresp with body", {0xd0, 1, 0}, 3},
        {"over max_packet", {0x30, 0x80, 0x01}, 3},
    };
    lg_mqtt_pkt p;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long rc = lg_mqtt_parse(bad[i].b, bad[i].len, 100, &p);
        if (rc != -1)
            fprintf(stderr, "case %s\n", bad[i].name);
        ASSERT_EQ(rc, -1);
    }
    /* Incomplete, not bad: a length still continuing, a short body. */
    static const uint8_t part[] = {0x30, 0x80};
    ASSERT_EQ(lg_mqtt_parse(part, 2, 1000, &p), 0);
    static const uint8_t shortb[] = {0x30, 10, 0, 1};
    ASSERT_EQ(lg_mqtt_parse(shortb, 4, 1000, &p), 0);
    ASSERT_EQ(lg_mqtt_parse(shortb, 1, 1000, &p), 0);
    mqtt_sink s = {0};
    lg_stream st = {0};
    ASSERT_EQ(lg_mqtt_feed(&st, bad[0].b, bad[0].len, 100, mqtt_collect, &s), -1);
    ASSERT_EQ(s.count, 0);
    lg_stream_free(&st);
}

/* ---- payload, names, publish encoding ---- */

static void test_payload(void)
{
    char buf[256];
    lg_payload pl;
    ASSERT_EQ(lg_payload_make(buf, 64, 123456789012345LL, 42, 7), 64);
    ASSERT_TRUE(memcmp(buf, "{\"t\":123456789012345,\"n\":42,\"i\":7,\"p\":\"xx", 41) == 0);
    ASSERT_EQ(memcmp(buf + 62, "\"}", 2), 0);
    ASSERT_EQ(lg_payload_parse(buf, 64, &pl), 0);
    ASSERT_EQ(pl.t, 123456789012345LL);
    ASSERT_EQ(pl.n, 42);
    ASSERT_EQ(pl.id, 7);
    ASSERT_EQ(lg_payload_make(buf, 20, 1, 1, 1), 0); /* cannot fit */
    const char *other = "{ \"p\" : \"x\", \"i\" : 3 , \"n\":9,\"t\" :5 }";
    ASSERT_EQ(lg_payload_parse(other, strlen(other), &pl), 0);
    ASSERT_EQ(pl.t, 5);
    ASSERT_EQ(pl.n, 9);
    ASSERT_EQ(pl.id, 3);
    const char *missing = "{\"t\":1,\"n\":2}";
    ASSERT_EQ(lg_payload_parse(missing, strlen(missing), &pl), -1);
    /* A key at the very end with nothing after it. */
    const char *cut = "{\"t\":1,\"n\":2,\"i\"";
    ASSERT_EQ(lg_payload_parse(cut, strlen(cut), &pl), -1);
    ASSERT_EQ(lg_payload_parse("", 0, &pl), -1);
}

static void test_channel_names(void)
{
    char out[64];
    ASSERT_EQ(lg_proto_map_channel(LG_PROTO_NATS, "bench:c:1", out, sizeof out), 9);
    ASSERT_STREQ(out, "bench.c.1");
    lg_proto_map_channel(LG_PROTO_MQTT, "bench:c:1", out, sizeof out);
    ASSERT_STREQ(out, "bench/c/1");
    lg_proto_map_channel(LG_PROTO_RAW, "bench:c:1", out, sizeof out);
    ASSERT_STREQ(out, "bench:c:1");
    ASSERT_EQ(lg_proto_map_channel(LG_PROTO_NATS, "bench:c:1", out, 9), 0);

    ASSERT_EQ(lg_client_check_pattern("bench:c%d"), 0);
    ASSERT_EQ(lg_client_check_pattern("c%d:x"), 0);
    ASSERT_EQ(lg_client_check_pattern("bench"), -1);
    ASSERT_EQ(lg_client_check_pattern("%d%d"), -1);
    ASSERT_EQ(lg_client_check_pattern("%s%d"), -1);
    ASSERT_EQ(lg_client_check_pattern("a b%d"), -1);
    ASSERT_EQ(lg_client_pattern_name("bench:c%d", 42, out, sizeof out), 9);
    ASSERT_STREQ(out, "bench:c42");
    ASSERT_EQ(lg_client_pattern_name("c%d:x", 7, out, sizeof out), 4);
    ASSERT_STREQ(out, "c7:x");
    ASSERT_EQ(lg_proto_parse("mqtt"), LG_PROTO_MQTT);
    ASSERT_EQ(lg_proto_parse("amqp"), -1);
    ASSERT_STREQ(lg_proto_name(LG_PROTO_RAW), "raw");
}

static void test_publish_encoding(void)
{
    uint8_t out[512];
    int op = -1;
    const char *pl = "{\"t\":1,\"n\":0,\"i\":0,\"p\":\"\"}";
    size_t plen = strlen(pl);
    lg_client cl = {.proto = LG_PROTO_LATCHKEY, .channel = "bench"};

    size_t n = lg_client_publish(&cl, "bench:a", pl, plen, out, sizeof out, &op);
    ASSERT_EQ(op, LG_WS_TEXT);
    out[n] = '\0';
    ASSERT_STREQ((char *)out, "{\"op\":\"publish\",\"channel\":\"bench:a\",\"data\":{\"t\":1,"
                              "\"n\":0,\"i\":0,\"p\":\"\"}}");

    cl.proto = LG_PROTO_NATS;
    n = lg_client_publish(&cl, "bench:a", pl, plen, out, sizeof out, &op);
    ASSERT_EQ(op, LG_WS_BINARY);
    out[n] = '\0';
    ASSERT_STREQ((char *)out, "PUB bench.a 26\r\n{\"t\":1,\"n\":0,\"i\":0,\"p\":\"\"}\r\n");
    lg_nats_msg m;
    ASSERT_EQ(lg_nats_parse(out, n, 1024, &m), -1); /* PUB is not a server message */

    cl.proto = LG_PROTO_MQTT;
    n = lg_client_publish(&cl, "bench:a", pl, plen, out, sizeof out, &op);
    ASSERT_EQ(op, LG_WS_BINARY);
    lg_mqtt_pkt p;
    ASSERT_EQ(lg_mqtt_parse(out, n, 1024, &p), (long)n);
    ASSERT_EQ(p.topic_len, 7);
    ASSERT_EQ(memcmp(p.topic, "bench/a", 7), 0);
    ASSERT_EQ(p.payload_len, plen);

    cl.proto = LG_PROTO_RAW;
    n = lg_client_publish(&cl, "bench:a", pl, plen, out, sizeof out, &op);
    ASSERT_EQ(op, LG_WS_TEXT);
    out[n] = '\0';
    ASSERT_STREQ((char *)out, "bench:a {\"t\":1,\"n\":0,\"i\":0,\"p\":\"\"}");
    /* Too small a buffer. */
    ASSERT_EQ(lg_client_publish(&cl, "bench:a", pl, plen, out, 20, &op), 0);
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
             LK_TEST(test_nats_parse),
             LK_TEST(test_nats_stream_splits),
             LK_TEST(test_nats_bad_input),
             LK_TEST(test_mqtt_encode),
             LK_TEST(test_mqtt_stream_splits),
             LK_TEST(test_mqtt_bad_input),
             LK_TEST(test_payload),
             LK_TEST(test_channel_names),
             LK_TEST(test_publish_encoding),
             LK_TEST(test_hist_buckets),
             LK_TEST(test_hist_percentiles))
