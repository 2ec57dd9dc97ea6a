/* fuzz_frame.c - fuzzes the client frame parser and every writer of the
 * wire codec.
 *
 * Checks, beyond "no crash, no overrun":
 *  - a frame the parser accepts is also accepted by cJSON (an independent
 *    parser), and its spans obey the contract (valid channel, unescaped
 *    token, in-bounds data);
 *  - minified `data` has no raw newline, is idempotent, and re-parses to
 *    the same bytes inside a publish frame;
 *  - every writer's output is a JSON object without a raw newline; it
 *    returns 0 at one byte short and the same bytes at the exact size,
 *    in exactly sized heap buffers so ASan sees any overrun;
 *  - lk_codec_json_string of arbitrary bytes is a string our own strict
 *    parser accepts (escapes and UTF-8 both valid).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "codec.h"
#include "fuzz.h"

#define CHANNEL_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@.:=-"

static int json_object_ok(const char *s, size_t n)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    int ok = cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!ok)
        return 0;
    while (end < s + n && strchr(" \t\r\n", *end))
        end++;
    return end == s + n;
}

static size_t w_welcome(char *o, size_t c, const lk_request *r, const char *str)
{
    return lk_codec_welcome(o, c, str, r->has_id ? str : NULL, "ws_fuzz", r->id,
                            (int64_t)r->since, (size_t)r->since);
}
static size_t w_subscribed(char *o, size_t c, const lk_request *r, const char *str)
{
    return lk_codec_subscribed(o, c, r->has_id, r->id, r->channel, r->since);
}
static size_t w_unsubscribed(char *o, size_t c, const lk_request *r, const char *str)
{
    return lk_codec_unsubscribed(o, c, r->has_id, r->id, r->channel,
                                 r->has_since ? str : NULL);
}
static size_t w_ack(char *o, size_t c, const lk_request *r, const char *str)
{
    return lk_codec_ack(o, c, r->has_id, r->id, r->channel, r->since);
}
static size_t w_authed(char *o, size_t c, const lk_request *r, const char *str)
{
    return lk_codec_authed(o, c, r->has_id, r->id, (int64_t)r->since);
}
static size_t w_pong(char *o, size_t c, const lk_request *r, const char *str)
{
    return lk_codec_pong(o, c, r->has_id, r->id);
}
static size_t w_expiring(char *o, size_t c, const lk_request *r, const char *str)
{
    return lk_codec_token_expiring(o, c, r->id);
}
/* r->data here is already minified. */
static size_t w_message(char *o, size_t c, const lk_request *r, const char *str)
{
    return lk_codec_message(o, c, r->channel, r->since, r->data,
                            r->has_id ? str : NULL, r->id);
}
static size_t w_error(char *o, size_t c, const lk_request *r, const char *str)
{
    return lk_codec_error(o, c, r->has_id, r->id, "bad_request", str);
}

typedef size_t (*writer_fn)(char *, size_t, const lk_request *, const char *);
static const writer_fn writers[] = {w_welcome, w_subscribed, w_unsubscribed, w_ack, w_authed,
                                    w_pong, w_expiring, w_message, w_error};

static void check_writer(writer_fn fn, const lk_request *r, const char *str, size_t bound)
{
    char *big = malloc(bound);
    CHECK(big);
    size_t n = fn(big, bound, r, str);
    CHECK(n > 0 && n <= bound);
    CHECK(!memchr(big, '\n', n));
    CHECK(json_object_ok(big, n));

    char *exact = malloc(n);
    CHECK(exact);
    CHECK(fn(exact, n, r, str) == n);
    CHECK(memcmp(exact, big, n) == 0);
    CHECK(fn(exact, n - 1, r, str) == 0);
    CHECK(fn(exact, n / 2, r, str) == 0);
    free(exact);
    free(big);
}

/* The json_string output must be accepted by our own strict scanner. */
static void check_json_string(const char *s, size_t len)
{
    static const char head[] = "{\"op\":\"ping\",\"x\":";
    size_t cap = 6 * len + 2;
    char *frame = malloc(sizeof head + cap + 1);
    CHECK(frame);
    memcpy(frame, head, sizeof head - 1);
    size_t n = lk_codec_json_string(frame + sizeof head - 1, cap, s, len);
    CHECK(n >= 2 && n <= cap);
    frame[sizeof head - 1 + n] = '}';
    lk_request r;
    CHECK(lk_codec_parse(frame, sizeof head + n, &r, NULL, 0) == LK_PARSE_OK);
    free(frame);
    if (n > 2) {
        char *exact = malloc(n - 1);
        CHECK(exact);
        CHECK(lk_codec_json_string(exact, n - 1, s, len) == 0);
        free(exact);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    lk_request r;
    char why[48];

    check_json_string(in, size < 4096 ? size : 4096);

    memset(why, 'x', sizeof why);
    lk_parse_rc rc = lk_codec_parse(in, size, &r, why, sizeof why);
    CHECK(fuzz_message_ok(why, sizeof why));
    if (rc != LK_PARSE_OK) {
        CHECK(rc == LK_PARSE_PROTOCOL || rc == LK_PARSE_BAD_REQUEST);
        if (rc == LK_PARSE_BAD_REQUEST)
            CHECK(r.op >= LK_OP_SUBSCRIBE && r.op <= LK_OP_PING && why[0]);
        return 0;
    }
    CHECK(json_object_ok(in, size));

    switch (r.op) {
    case LK_OP_SUBSCRIBE:
    case LK_OP_UNSUBSCRIBE:
    case LK_OP_PUBLISH:
        CHECK(r.channel.len >= 1 && r.channel.len <= 200);
        CHECK(r.channel.p > in && r.channel.p + r.channel.len < in + size);
        for (size_t i = 0; i < r.channel.len; i++)
            CHECK(r.channel.p[i] && strchr(CHANNEL_CHARS, r.channel.p[i]));
        break;
    case LK_OP_AUTH:
        CHECK(r.token.len >= 1 && r.token.p > in && r.token.p + r.token.len < in + size);
        CHECK(!memchr(r.token.p, '\\', r.token.len));
        break;
    case LK_OP_PING:
        break;
    default:
        CHECK(0);
    }
    CHECK(r.has_since == 0 || r.op == LK_OP_SUBSCRIBE);

    char *min = NULL;
    if (r.op == LK_OP_PUBLISH) {
        CHECK(r.data.len >= 1 && r.data.p >= in && r.data.p + r.data.len < in + size);
        min = malloc(r.data.len);
        CHECK(min);
        size_t n = lk_codec_minify(r.data.p, r.data.len, min);
        CHECK(n >= 1 && n <= r.data.len);
        CHECK(!memchr(min, '\n', n));
        char *again = malloc(n);
        CHECK(again);
        CHECK(lk_codec_minify(min, n, again) == n && memcmp(again, min, n) == 0);
        free(again);

        static const char head[] = "{\"op\":\"publish\",\"channel\":\"c\",\"data\":";
        char *frame = malloc(sizeof head + n);
        CHECK(frame);
        memcpy(frame, head, sizeof head - 1);
        memcpy(frame + sizeof head - 1, min, n);
        frame[sizeof head - 1 + n] = '}';
        lk_request r2;
        CHECK(lk_codec_parse(frame, sizeof head + n, &r2, NULL, 0) == LK_PARSE_OK);
        CHECK(r2.data.len == n && memcmp(r2.data.p, min, n) == 0);
        free(frame);
        r.data.p = min;
        r.data.len = n;
    } else {
        r.data.p = "null";
        r.data.len = 4;
    }

    /* A NUL-terminated string from the frame, for the writers' string
     * arguments: the token when there is one, else the raw input. */
    const char *src = r.op == LK_OP_AUTH ? r.token.p : in;
    size_t slen = r.op == LK_OP_AUTH ? r.token.len : size;
    if (slen > 4096)
        slen = 4096;
    char *str = malloc(slen + 1);
    CHECK(str);
    memcpy(str, src, slen);
    str[slen] = '\0';

    size_t bound = 12 * slen + 6 * r.channel.len + r.data.len + 512;
    for (size_t i = 0; i < sizeof writers / sizeof writers[0]; i++)
        check_writer(writers[i], &r, str, bound);

    free(str);
    free(min);
    return 0;
}
