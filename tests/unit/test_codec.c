/* test_codec.c - the latchkey.v1 wire codec: frame parsing (every op, every
 * protocol and bad_request case), minify, JSON string escaping and the exact
 * bytes of every server frame. cJSON serves as an independent check that
 * writer output is valid JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "codec.h"
#include "test.h"

static char why[128];

static lk_parse_rc parse_n(const char *s, size_t n, lk_request *r)
{
    return lk_codec_parse(s, n, r, why, sizeof why);
}

static lk_parse_rc parse(const char *s, lk_request *r)
{
    return parse_n(s, strlen(s), r);
}

#define ASSERT_SPAN(span, str)                                                  \
    do {                                                                        \
        lk_span s_ = (span);                                                    \
        const char *e_ = (str);                                                 \
        if (!s_.p || s_.len != strlen(e_) || memcmp(s_.p, e_, s_.len) != 0)     \
            LK_TEST__FAIL("%s: \"%.*s\" != \"%s\"", #span, (int)s_.len,         \
                          s_.p ? s_.p : "", e_);                                \
    } while (0)

#define ASSERT_PARSE(frame, want)                                               \
    do {                                                                        \
        lk_request r_;                                                          \
        int got_ = parse((frame), &r_);                                         \
        if (got_ != (want))                                                     \
            LK_TEST__FAIL("parse(%s): got %d, want %d (%s)", (frame), got_,     \
                          (int)(want), why);                                    \
    } while (0)

/* ---- each op -------------------------------------------------------- */

static void test_subscribe(void)
{
    lk_request r;
    ASSERT_EQ(parse("{\"op\":\"subscribe\",\"id\":1,\"channel\":\"chat:lobby\"}", &r),
              LK_PARSE_OK);
    ASSERT_EQ(r.op, LK_OP_SUBSCRIBE);
    ASSERT_EQ(r.has_id, 1);
    ASSERT_EQ(r.id, 1);
    ASSERT_SPAN(r.channel, "chat:lobby");
    ASSERT_EQ(r.has_since, 0);
    ASSERT_STREQ(why, "");

    ASSERT_EQ(parse("{\"channel\":\"a\",\"op\":\"subscribe\"}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.op, LK_OP_SUBSCRIBE);
    ASSERT_EQ(r.has_id, 0);
    ASSERT_SPAN(r.channel, "a");

    ASSERT_EQ(parse("{\"op\":\"subscribe\",\"channel\":\"a\",\"since\":42}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.has_since, 1);
    ASSERT_EQ(r.since, 42);
    ASSERT_EQ(parse("{\"op\":\"subscribe\",\"channel\":\"a\",\"since\":0}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.has_since, 1);
    ASSERT_EQ(r.since, 0);
    ASSERT_EQ(parse("{\"op\":\"subscribe\",\"channel\":\"a\",\"since\":18446744073709551615}",
                    &r), LK_PARSE_OK);
    ASSERT_TRUE(r.since == UINT64_MAX);
}

static void test_unsubscribe(void)
{
    lk_request r;
    ASSERT_EQ(parse("{\"op\":\"unsubscribe\",\"id\":2,\"channel\":\"chat:lobby\"}", &r),
              LK_PARSE_OK);
    ASSERT_EQ(r.op, LK_OP_UNSUBSCRIBE);
    ASSERT_EQ(r.has_id, 1);
    ASSERT_EQ(r.id, 2);
    ASSERT_SPAN(r.channel, "chat:lobby");
    ASSERT_EQ(parse("{\"op\":\"unsubscribe\",\"channel\":\"x\"}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.has_id, 0);
    ASSERT_SPAN(r.channel, "x");
}

static void test_publish(void)
{
    lk_request r;
    ASSERT_EQ(parse("{\"op\":\"publish\",\"id\":3,\"channel\":\"chat:lobby\","
                    "\"data\":{\"text\":\"hi\"}}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.op, LK_OP_PUBLISH);
    ASSERT_EQ(r.has_id, 1);
    ASSERT_EQ(r.id, 3);
    ASSERT_SPAN(r.channel, "chat:lobby");
    ASSERT_SPAN(r.data, "{\"text\":\"hi\"}");

    ASSERT_EQ(parse("{\"data\":[1,2],\"channel\":\"c\",\"op\":\"publish\"}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.has_id, 0);
    ASSERT_SPAN(r.data, "[1,2]");
    ASSERT_SPAN(r.channel, "c");
}

static void test_auth(void)
{
    lk_request r;
    ASSERT_EQ(parse("{\"op\":\"auth\",\"id\":4,\"token\":\"eyJ.abc.d-_\"}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.op, LK_OP_AUTH);
    ASSERT_EQ(r.has_id, 1);
    ASSERT_EQ(r.id, 4);
    ASSERT_SPAN(r.token, "eyJ.abc.d-_");
    ASSERT_EQ(parse("{\"op\":\"auth\",\"token\":\"t\"}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.has_id, 0);
    ASSERT_SPAN(r.token, "t");
}

static void test_ping(void)
{
    lk_request r;
    ASSERT_EQ(parse("{\"op\":\"ping\",\"id\":5}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.op, LK_OP_PING);
    ASSERT_EQ(r.has_id, 1);
    ASSERT_EQ(r.id, 5);
    ASSERT_EQ(parse("{\"op\":\"ping\"}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.op, LK_OP_PING);
    ASSERT_EQ(r.has_id, 0);
    /* Fields that belong to other ops are not this op's business. */
    ASSERT_EQ(parse("{\"op\":\"ping\",\"channel\":\"bad name\",\"since\":-1,\"token\":5}", &r),
              LK_PARSE_OK);
}

static void test_id_values(void)
{
    lk_request r;
    ASSERT_EQ(parse("{\"op\":\"ping\",\"id\":-7}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.id, -7);
    ASSERT_EQ(parse("{\"op\":\"ping\",\"id\":0}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.id, 0);
    ASSERT_EQ(parse("{\"op\":\"ping\",\"id\":-0}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.id, 0);
    ASSERT_EQ(parse("{\"op\":\"ping\",\"id\":9223372036854775807}", &r), LK_PARSE_OK);
    ASSERT_TRUE(r.id == INT64_MAX);
    ASSERT_EQ(parse("{\"op\":\"ping\",\"id\":-9223372036854775808}", &r), LK_PARSE_OK);
    ASSERT_TRUE(r.id == INT64_MIN);

    static const char *bad[] = {
        "9223372036854775808", "-9223372036854775809", "18446744073709551616",
        "100000000000000000000000", "1.5", "1.0", "1e3", "1E3", "-1e0", "\"1\"",
        "null", "true", "false", "[1]", "{}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char frame[96];
        snprintf(frame, sizeof frame,
                 "{\"op\":\"publish\",\"id\":%s,\"channel\":\"c\",\"data\":1}", bad[i]);
        ASSERT_PARSE(frame, LK_PARSE_BAD_REQUEST);
        ASSERT_EQ(parse(frame, &r), LK_PARSE_BAD_REQUEST);
        ASSERT_EQ(r.op, LK_OP_PUBLISH);
        ASSERT_EQ(r.has_id, 0);
        ASSERT_STREQ(why, "id must be a 64-bit integer");
    }
}

/* ---- bad_request ------------------------------------------------------ */

static void test_bad_channel(void)
{
    static const char *ops[] = {"subscribe", "unsubscribe", "publish"};
    static const char *bad[] = {
        "",                         /* missing */
        ",\"channel\":1",
        ",\"channel\":null",
        ",\"channel\":[\"a\"]",
        ",\"channel\":\"\"",
        ",\"channel\":\"chat lobby\"",
        ",\"channel\":\"chat/lobby\"",
        ",\"channel\":\"chat*\"",
        ",\"channel\":\"caf\xc3\xa9\"",
        ",\"channel\":\"chat\\u003alobby\"",  /* escapes are never valid */
        ",\"channel\":\"a\\nb\"",
        ",\"channel\":\"\\u0061\"",
    };
    lk_request r;
    for (size_t o = 0; o < 3; o++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            char frame[160];
            snprintf(frame, sizeof frame, "{\"op\":\"%s\",\"id\":9%s,\"data\":1}", ops[o],
                     bad[i]);
            ASSERT_PARSE(frame, LK_PARSE_BAD_REQUEST);
            ASSERT_EQ(parse(frame, &r), LK_PARSE_BAD_REQUEST);
            ASSERT_EQ(r.has_id, 1);
            ASSERT_EQ(r.id, 9);
            ASSERT_TRUE(strstr(why, "channel") != NULL);
        }
    }

    char frame[300], name[202];
    memset(name, 'a', 201);
    name[200] = '\0';
    snprintf(frame, sizeof frame, "{\"op\":\"subscribe\",\"channel\":\"%s\"}", name);
    ASSERT_EQ(parse(frame, &r), LK_PARSE_OK);
    ASSERT_EQ(r.channel.len, 200);
    name[200] = 'a';
    name[201] = '\0';
    snprintf(frame, sizeof frame, "{\"op\":\"subscribe\",\"channel\":\"%s\"}", name);
    ASSERT_PARSE(frame, LK_PARSE_BAD_REQUEST);

    ASSERT_EQ(parse("{\"op\":\"subscribe\",\"channel\":\"AZaz09_@.:=-\"}", &r), LK_PARSE_OK);
    ASSERT_SPAN(r.channel, "AZaz09_@.:=-");
}

static void test_bad_publish_data(void)
{
    lk_request r;
    ASSERT_EQ(parse("{\"op\":\"publish\",\"id\":3,\"channel\":\"c\"}", &r),
              LK_PARSE_BAD_REQUEST);
    ASSERT_EQ(r.op, LK_OP_PUBLISH);
    ASSERT_EQ(r.id, 3);
    ASSERT_STREQ(why, "data is required");
}

static void test_bad_since(void)
{
    static const char *bad[] = {"-1", "1.5", "1e2", "\"3\"", "null", "true", "[]",
                                "18446744073709551616", "-9223372036854775808"};
    lk_request r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char frame[128];
        snprintf(frame, sizeof frame,
                 "{\"op\":\"subscribe\",\"id\":1,\"channel\":\"c\",\"since\":%s}", bad[i]);
        ASSERT_PARSE(frame, LK_PARSE_BAD_REQUEST);
        ASSERT_STREQ(why, "since must be a non-negative integer");
    }
    /* since only matters to subscribe. */
    ASSERT_EQ(parse("{\"op\":\"publish\",\"channel\":\"c\",\"data\":1,\"since\":-1}", &r),
              LK_PARSE_OK);
    ASSERT_EQ(r.has_since, 0);
    ASSERT_EQ(parse("{\"op\":\"subscribe\",\"channel\":\"c\",\"since\":-0}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.since, 0);
}

static void test_bad_token(void)
{
    static const char *bad[] = {"", ",\"token\":1", ",\"token\":null", ",\"token\":[\"a\"]",
                                ",\"token\":\"\"", ",\"token\":\"ab\\u0063\"",
                                ",\"token\":\"a\\/b\""};
    lk_request r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char frame[128];
        snprintf(frame, sizeof frame, "{\"op\":\"auth\",\"id\":4%s}", bad[i]);
        ASSERT_PARSE(frame, LK_PARSE_BAD_REQUEST);
        ASSERT_EQ(parse(frame, &r), LK_PARSE_BAD_REQUEST);
        ASSERT_EQ(r.op, LK_OP_AUTH);
        ASSERT_EQ(r.id, 4);
        ASSERT_TRUE(strstr(why, "token") != NULL);
    }

    /* Up to 16 KiB reaches verification (which applies the 8 KiB rule and
     * answers unauthorized); beyond is refused here. */
    size_t big = 16384;
    char *frame = malloc(big + 64);
    ASSERT_NOT_NULL(frame);
    int n = snprintf(frame, 64, "{\"op\":\"auth\",\"token\":\"");
    memset(frame + n, 'x', big);
    memcpy(frame + n + big, "\"}", 3);
    lk_parse_rc rc = parse(frame, &r);
    size_t tlen = r.token.len;
    memset(frame + n, 'x', big + 1);
    memcpy(frame + n + big + 1, "\"}", 3);
    lk_parse_rc rc2 = parse(frame, &r);
    int leaked = strstr(why, "xxxx") != NULL;
    free(frame);
    ASSERT_EQ(rc, LK_PARSE_OK);
    ASSERT_EQ(tlen, big);
    ASSERT_EQ(rc2, LK_PARSE_BAD_REQUEST);
    ASSERT_FALSE(leaked);
}

static void test_why_buffer(void)
{
    lk_request r;
    char small[6] = "zzzzz";
    const char *f = "{\"op\":\"publish\",\"channel\":\"c\"}";
    ASSERT_EQ(lk_codec_parse(f, strlen(f), &r, small, sizeof small), LK_PARSE_BAD_REQUEST);
    ASSERT_STREQ(small, "data ");
    ASSERT_EQ(lk_codec_parse(f, strlen(f), &r, NULL, 0), LK_PARSE_BAD_REQUEST);
    small[0] = 'q';
    f = "{\"op\":\"ping\"}";
    ASSERT_EQ(lk_codec_parse(f, strlen(f), &r, small, 0), LK_PARSE_OK);
    ASSERT_EQ(small[0], 'q');
}

/* ---- protocol --------------------------------------------------------- */

static void test_protocol_not_one_object(void)
{
    static const char *bad[] = {
        "", " ", "\n", "[]", "[{\"op\":\"ping\"}]", "1", "\"op\"", "null", "true",
        "{\"op\":\"ping\"}\n{\"op\":\"ping\"}",
        "{\"op\":\"ping\",\"id\":1}\n{\"op\":\"ping\",\"id\":2}\n",
        "{\"op\":\"ping\"}x", "{\"op\":\"ping\"},", "{\"op\":\"ping\"}}",
        "{\"op\":\"ping\"} 1",
        "{\"op\":\"ping\"", "{\"op\":\"ping\",", "{\"op\":", "{\"op\"", "{\"op", "{",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_PARSE(bad[i], LK_PARSE_PROTOCOL);
    lk_request r;
    ASSERT_EQ(parse_n("{\"op\":\"ping\"}\0", 14, &r), LK_PARSE_PROTOCOL);
    ASSERT_EQ(lk_codec_parse(NULL, 0, &r, why, sizeof why), LK_PARSE_PROTOCOL);
    ASSERT_EQ(parse_n("{\"op\":\"ping\"}", 12, &r), LK_PARSE_PROTOCOL);
}

static void test_protocol_op(void)
{
    static const char *bad[] = {
        "{}", "{\"id\":1}", "{\"channel\":\"c\",\"data\":1}", "{\"op\":1}", "{\"op\":null}",
        "{\"op\":[\"ping\"]}", "{\"op\":{}}", "{\"op\":true}", "{\"op\":\"nope\"}",
        "{\"op\":\"Ping\"}", "{\"op\":\"ping \"}", "{\"op\":\"\"}", "{\"op\":\"pingping\"}",
        "{\"op\":\"message\"}", "{\"op\":\"ping\\u0000\"}", "{\"OP\":\"ping\"}",
        "{\"op \":\"ping\"}", "{\"op\":1,\"op\":\"ping\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_PARSE(bad[i], LK_PARSE_PROTOCOL);
    ASSERT_PARSE("{\"op\":\"nope\"}", LK_PARSE_PROTOCOL);
    ASSERT_STREQ(why, "unknown op");
    ASSERT_PARSE("{\"id\":1}", LK_PARSE_PROTOCOL);
    ASSERT_STREQ(why, "missing op");
}

/* `{"op":"ping","x":<value>}`: a valid frame around one value. */
static const char *ping_with(const char *value)
{
    static char frame[256];
    snprintf(frame, sizeof frame, "{\"op\":\"ping\",\"x\":%s}", value);
    return frame;
}

static void test_protocol_invalid_json(void)
{
    static const char *bad_frames[] = {
        "{\"op\":\"ping\",}", "{,\"op\":\"ping\"}", "{'op':'ping'}", "{op:\"ping\"}",
        "{\"op\" \"ping\"}", "{\"op\"::\"ping\"}", "{\"op\":\"ping\"\xc2\xa0}",
        "{\"op\":\"ping\",\"x\xff\":1}", "\xef\xbb\xbf{\"op\":\"ping\"}",
        "{\"op\":\"ping\"\f}", "{\"op\":\"ping\"\v}",
    };
    static const char *bad_values[] = {
        "01", "1.", ".5", "+1", "1e", "1e+", "-", "--1", "0x10", "NaN", "Infinity",
        "tru", "True", "nul", "falsey", "", "[1,]", "[1 2]", "[", "[}", "{]", "{\"a\"}",
        "{\"a\":1,}", "{1:2}", "[[[]]", "\"\\q\"", "\"\\u12\"", "\"\\u12g4\"", "\"\\\"",
        "\"abc", "\"a\x01\"", "\"a\nb\"", "\"a\tb\"", "\"\x1f\"",
        /* lone or mismatched surrogates */
        "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\ud800\\ud800\"",
        "\"\\udbff x\"", "\"\\ud800\\\"",
        /* invalid UTF-8: stray, overlong, surrogate, too high, truncated */
        "\"\xff\"", "\"\x80\"", "\"\xc0\x80\"", "\"\xc1\xbf\"", "\"\xe0\x80\xaf\"",
        "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xc3\"",
        "\"\xe2\x82\"", "\"\xf0\x9f\x98\"", "\"\xc3\x28\"",
    };
    for (size_t i = 0; i < sizeof bad_frames / sizeof bad_frames[0]; i++)
        ASSERT_PARSE(bad_frames[i], LK_PARSE_PROTOCOL);
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++)
        ASSERT_PARSE(ping_with(bad_values[i]), LK_PARSE_PROTOCOL);
}

/* ---- valid edge cases ------------------------------------------------- */

static void test_valid_strings(void)
{
    static const char *good[] = {
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"",
        "\"\\ud83d\\ude00 \\uDBFF\\uDFFF \\u00e9\\u0000\"",
        "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"",
        "\"\x7f\"",
        "{\"\":0,\"\xe2\x82\xac\":[]}",
        "[0,-0,1.5,-1.5e10,1E+2,1e-2,0.0,123456789012345678901234567890]",
        "[true,false,null,{},[],\"\"]",
        ("\"a long string that runs past several eight byte words \\\" with \\\\ escapes "
         "\xc3\xa9 in the middle and at the end\""),
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ASSERT_PARSE(ping_with(good[i]), LK_PARSE_OK);
}

static void test_escaped_key_and_op(void)
{
    lk_request r;
    ASSERT_EQ(parse("{\"\\u006fp\":\"p\\u0069ng\",\"\\u0069d\":12}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.op, LK_OP_PING);
    ASSERT_EQ(r.has_id, 1);
    ASSERT_EQ(r.id, 12);
    ASSERT_EQ(parse("{\"op\":\"\\u0073ubscribe\",\"ch\\u0061nnel\":\"c\"}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.op, LK_OP_SUBSCRIBE);
    ASSERT_SPAN(r.channel, "c");
    /* An escaped duplicate is still a duplicate: the first wins. */
    ASSERT_EQ(parse("{\"op\":\"ping\",\"\\u006fp\":\"nope\"}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.op, LK_OP_PING);
    /* Escapes that decode to something else are other keys and ops. */
    ASSERT_EQ(parse("{\"op\":\"ping\",\"i\\u0064\\n\":1,\"\\/id\":2,\"\\u00e9\":3,"
                    "\"\\u0069\\u0064\\u0069\\u0064\\u0069\\u0064\\u0069\\u0064\\u0069\":4}", &r),
              LK_PARSE_OK);
    ASSERT_EQ(r.has_id, 0);
    ASSERT_PARSE("{\"op\":\"ping\\n\"}", LK_PARSE_PROTOCOL);
    ASSERT_PARSE("{\"op\":\"\\/ping\"}", LK_PARSE_PROTOCOL);
    ASSERT_PARSE("{\"op\":\"\\t\\b\\f\\r\\\"\\\\\"}", LK_PARSE_PROTOCOL);
    ASSERT_PARSE("{\"op\":\"p\\u00efng\"}", LK_PARSE_PROTOCOL);
}

static void test_data_values(void)
{
    static const char *data[] = {
        "12345678901234567890123",
        "-9223372036854775809",
        "1.0000000000000000000001e-400",
        "null", "false", "0", "\"\"", "[]", "{}",
        "{\"a\":{\"b\":[1,{\"c\":[null,true,\"x\"]}]},\"n\":18446744073709551616}",
        ("\"quote \\\" backslash \\\\ newline \\n unicode \\u00e9 \\ud83d\\ude00 "
         "raw \xc3\xa9\""),
        "[1, 2,\t3 ,\n4]",
        "{ \"spaced\" : \"a b\" }",
    };
    lk_request r;
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) {
        char frame[256];
        snprintf(frame, sizeof frame,
                 "{\"op\":\"publish\",\"channel\":\"c\",\"data\": \n%s\t ,\"id\":1}", data[i]);
        ASSERT_EQ(parse(frame, &r), LK_PARSE_OK);
        ASSERT_SPAN(r.data, data[i]);
        snprintf(frame, sizeof frame, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":%s}",
                 data[i]);
        ASSERT_EQ(parse(frame, &r), LK_PARSE_OK);
        ASSERT_SPAN(r.data, data[i]);
    }
}

static void test_duplicates_and_unknown(void)
{
    lk_request r;
    ASSERT_EQ(parse("{\"op\":\"ping\",\"op\":\"nope\"}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.op, LK_OP_PING);
    ASSERT_EQ(parse("{\"op\":\"publish\",\"channel\":\"a\",\"channel\":\"b c\",\"data\":1,"
                    "\"data\":2}", &r), LK_PARSE_OK);
    ASSERT_SPAN(r.channel, "a");
    ASSERT_SPAN(r.data, "1");
    ASSERT_EQ(parse("{\"op\":\"ping\",\"id\":1,\"id\":\"x\"}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.id, 1);
    ASSERT_EQ(parse("{\"op\":\"ping\",\"id\":\"x\",\"id\":1}", &r), LK_PARSE_BAD_REQUEST);
    ASSERT_EQ(parse("{\"op\":\"publish\",\"channel\":1,\"channel\":\"ok\",\"data\":1}", &r),
              LK_PARSE_BAD_REQUEST);

    ASSERT_EQ(parse("{\"op\":\"ping\",\"foo\":{\"bar\":[1,2,{\"x\":null}]},\"id\":3,"
                    "\"zz\":\"\"}", &r), LK_PARSE_OK);
    ASSERT_EQ(r.id, 3);
    ASSERT_EQ(parse("{\"op\":\"auth\",\"token\":\"t\",\"tokens\":1,\"toke\":2}", &r),
              LK_PARSE_OK);
    ASSERT_SPAN(r.token, "t");
}

static void test_whitespace(void)
{
    lk_request r;
    const char *pretty =
        " \r\n{\n"
        "\t\"op\" : \"publish\" ,\n"
        "  \"id\"\t:\t7,\r\n"
        "  \"channel\": \"chat:lobby\",\n"
        "  \"data\": {\n    \"text\": \"hi\",\n    \"n\": [1, 2]\n  }\n"
        "}\n\n ";
    ASSERT_EQ(parse(pretty, &r), LK_PARSE_OK);
    ASSERT_EQ(r.id, 7);
    ASSERT_SPAN(r.channel, "chat:lobby");
    ASSERT_SPAN(r.data, "{\n    \"text\": \"hi\",\n    \"n\": [1, 2]\n  }");
    ASSERT_EQ(parse("{ }", &r), LK_PARSE_PROTOCOL);
}

static char *nested(size_t depth, const char *open, const char *close, const char *head)
{
    size_t hl = strlen(head), ol = strlen(open), cl = strlen(close);
    char *s = malloc(hl + depth * (ol + cl) + 4);
    if (!s)
        return NULL;
    char *p = s;
    memcpy(p, head, hl);
    p += hl;
    for (size_t i = 0; i < depth; i++, p += ol)
        memcpy(p, open, ol);
    *p++ = '1';
    for (size_t i = 0; i < depth; i++, p += cl)
        memcpy(p, close, cl);
    memcpy(p, "}", 2);
    return s;
}

static void test_depth(void)
{
    static const char head[] = "{\"op\":\"publish\",\"id\":8,\"channel\":\"c\",\"data\":";
    static const struct {
        size_t depth;
        const char *open, *close;
        lk_parse_rc want;
    } cases[] = {
        {LK_CODEC_MAX_DEPTH, "[", "]", LK_PARSE_OK},
        {LK_CODEC_MAX_DEPTH, "{\"a\":", "}", LK_PARSE_OK},
        {LK_CODEC_MAX_DEPTH + 1, "[", "]", LK_PARSE_BAD_REQUEST},
        {LK_CODEC_MAX_DEPTH + 1, "{\"a\":", "}", LK_PARSE_BAD_REQUEST},
        {1000, "[", "]", LK_PARSE_BAD_REQUEST},
        {5000, "[", "]", LK_PARSE_PROTOCOL},
        {100000, "[", "]", LK_PARSE_PROTOCOL},
    };
    lk_request r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *f = nested(cases[i].depth, cases[i].open, cases[i].close, head);
        ASSERT_NOT_NULL(f);
        lk_parse_rc rc = parse(f, &r);
        free(f);
        if (rc != cases[i].want)
            LK_TEST__FAIL("depth %zu: got %d, want %d", cases[i].depth, rc, cases[i].want);
        if (rc == LK_PARSE_BAD_REQUEST) {
            ASSERT_EQ(r.id, 8);
            ASSERT_STREQ(why, "JSON nested too deeply");
        }
    }
    /* The limit applies to unknown fields too. */
    char *f = nested(LK_CODEC_MAX_DEPTH + 1, "[", "]", "{\"op\":\"ping\",\"x\":");
    ASSERT_NOT_NULL(f);
    lk_parse_rc rc = parse(f, &r);
    free(f);
    ASSERT_EQ(rc, LK_PARSE_BAD_REQUEST);
    /* Unclosed deep nesting is not JSON at all. */
    f = nested(100, "[", "", "{\"op\":\"ping\",\"x\":");
    ASSERT_NOT_NULL(f);
    rc = parse(f, &r);
    free(f);
    ASSERT_EQ(rc, LK_PARSE_PROTOCOL);
}

/* ---- minify ----------------------------------------------------------- */

static void check_minify(const char *in, const char *want)
{
    char out[256];
    size_t n = lk_codec_minify(in, strlen(in), out);
    out[n] = '\0';
    ASSERT_STREQ(out, want);
}

static void test_minify(void)
{
    check_minify("{ \"a\" : [ 1 , 2 ] ,\n\t\"b\" : \"x y\\\"z \\\\\" }\r\n",
                 "{\"a\":[1,2],\"b\":\"x y\\\"z \\\\\"}");
    if (lk_test_failed) return;
    check_minify("12345678901234567890123", "12345678901234567890123");
    if (lk_test_failed) return;
    check_minify("\"  \\\\\"", "\"  \\\\\"");
    if (lk_test_failed) return;
    check_minify("[ \" a \\\" \" , \"\\\\\" , \" \" ]", "[\" a \\\" \",\"\\\\\",\" \"]");
    if (lk_test_failed) return;
    check_minify("", "");
    if (lk_test_failed) return;

    /* In place, and the result parses to the same data with no newline. */
    char frame[] = "{\"op\":\"publish\",\"channel\":\"c\",\"data\":{\n  \"k\": [1,\n 2],\n"
                   "  \"s\": \"a\\nb c\"\n}}";
    lk_request r;
    ASSERT_EQ(parse(frame, &r), LK_PARSE_OK);
    char *d = (char *)r.data.p;
    size_t n = lk_codec_minify(d, r.data.len, d);
    ASSERT_EQ(n, strlen("{\"k\":[1,2],\"s\":\"a\\nb c\"}"));
    ASSERT_TRUE(memcmp(d, "{\"k\":[1,2],\"s\":\"a\\nb c\"}", n) == 0);
    ASSERT_NULL(memchr(d, '\n', n));
}

/* ---- json_string ------------------------------------------------------ */

static void check_jstr(const char *in, size_t len, const char *want)
{
    char out[256];
    size_t wl = strlen(want);
    size_t n = lk_codec_json_string(out, sizeof out, in, len);
    if (n != wl || memcmp(out, want, n) != 0)
        LK_TEST__FAIL("json_string: \"%.*s\" != \"%s\"", (int)n, out, want);
    ASSERT_EQ(lk_codec_json_string(out, wl - 1, in, len), 0);
    ASSERT_EQ(lk_codec_json_string(out, wl, in, len), wl);
    cJSON *j = cJSON_ParseWithLength(out, n);
    ASSERT_NOT_NULL(j);
    int is_str = cJSON_IsString(j);
    cJSON_Delete(j);
    ASSERT_TRUE(is_str);
}

static void test_json_string(void)
{
    check_jstr("plain", 5, "\"plain\"");
    if (lk_test_failed) return;
    check_jstr("", 0, "\"\"");
    if (lk_test_failed) return;
    check_jstr("a\"b\\c/d", 7, "\"a\\\"b\\\\c/d\"");
    if (lk_test_failed) return;
    check_jstr("\n\r\t\x01\x1f\x7f", 6, "\"\\u000a\\u000d\\u0009\\u0001\\u001f\x7f\"");
    if (lk_test_failed) return;
    check_jstr("nul\0x", 5, "\"nul\\u0000x\"");
    if (lk_test_failed) return;
    check_jstr("caf\xc3\xa9 \xf0\x9f\x98\x80", 10, "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    if (lk_test_failed) return;
    /* Invalid UTF-8 would poison a text frame; it becomes U+FFFD. */
    check_jstr("a\xff" "b\xc3", 4, "\"a\\ufffdb\\ufffd\"");
    if (lk_test_failed) return;
    check_jstr("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");
    if (lk_test_failed) return;

    char out[6 * 8 + 2];
    ASSERT_EQ(lk_codec_json_string(out, sizeof out, "\x01\x02\x03\x04\xff\xfe\x05\x06", 8),
              sizeof out);
    ASSERT_EQ(lk_codec_json_string(out, 1, "", 0), 0);
    ASSERT_EQ(lk_codec_json_string(NULL, 0, "x", 1), 0);
}

/* ---- writers ---------------------------------------------------------- */

/* Runs `call` (which uses `buf_` and `cap_`) at every capacity up to the
 * expected length: too small must return 0 and never write past cap, the
 * exact length must produce the expected bytes. The buffer is heap-sized
 * exactly so that ASan sees any overrun too. */
#define CHECK_WRITER(want, call)                                                \
    do {                                                                        \
        const char *w_ = (want);                                                \
        size_t wl_ = strlen(w_);                                                \
        for (size_t cap_ = 0; cap_ <= wl_; cap_++) {                            \
            char *buf_ = malloc(cap_ + 8);                                      \
            ASSERT_NOT_NULL(buf_);                                              \
            memset(buf_, 0x5a, cap_ + 8);                                       \
            size_t n_ = (call);                                                 \
            int tail_ok_ = 1;                                                   \
            for (size_t t_ = cap_; t_ < cap_ + 8; t_++)                         \
                tail_ok_ &= buf_[t_] == 0x5a;                                   \
            int match_ = n_ == wl_ && memcmp(buf_, w_, wl_) == 0;               \
            if (cap_ == wl_ && !match_)                                         \
                LK_TEST__FAIL("%s:\n got  %.*s\n want %s", #call, (int)n_,      \
                              buf_, w_);                                        \
            free(buf_);                                                         \
            if (!tail_ok_)                                                      \
                LK_TEST__FAIL("%s wrote past cap %zu", #call, cap_);            \
            if (cap_ < wl_ && n_ != 0)                                          \
                LK_TEST__FAIL("%s returned %zu at cap %zu", #call, n_, cap_);   \
        }                                                                       \
        cJSON *j_ = cJSON_Parse(w_);                                            \
        int obj_ = cJSON_IsObject(j_);                                          \
        cJSON_Delete(j_);                                                       \
        if (!obj_)                                                              \
            LK_TEST__FAIL("not a JSON object: %s", w_);                         \
    } while (0)

static const lk_span lobby = {"chat:lobby", 10};

static void test_write_welcome(void)
{
    CHECK_WRITER("{\"op\":\"welcome\",\"conn_id\":\"c_1f\",\"client_id\":\"u1\","
                 "\"workspace\":\"ws_a\",\"expires_at\":1700000600,"
                 "\"server_time\":1700000000123,\"max_frame\":65536}",
                 lk_codec_welcome(buf_, cap_, "c_1f", "u1", "ws_a", 1700000600,
                                  1700000000123LL, 65536));
    CHECK_WRITER("{\"op\":\"welcome\",\"conn_id\":\"c\",\"client_id\":null,"
                 "\"workspace\":\"ws_a\",\"expires_at\":0,\"server_time\":-1,\"max_frame\":0}",
                 lk_codec_welcome(buf_, cap_, "c", NULL, "ws_a", 0, -1, 0));
    CHECK_WRITER("{\"op\":\"welcome\",\"conn_id\":\"c\",\"client_id\":\"a\\\"b\\\\c\\u000a\","
                 "\"workspace\":\"ws_a\",\"expires_at\":1,\"server_time\":2,\"max_frame\":3}",
                 lk_codec_welcome(buf_, cap_, "c", "a\"b\\c\n", "ws_a", 1, 2, 3));
}

static void test_write_subscribed(void)
{
    CHECK_WRITER("{\"op\":\"subscribed\",\"id\":1,\"channel\":\"chat:lobby\",\"seq\":0}",
                 lk_codec_subscribed(buf_, cap_, 1, 1, lobby, 0));
    CHECK_WRITER("{\"op\":\"subscribed\",\"channel\":\"chat:lobby\","
                 "\"seq\":18446744073709551615}",
                 lk_codec_subscribed(buf_, cap_, 0, 99, lobby, UINT64_MAX));
    CHECK_WRITER("{\"op\":\"subscribed\",\"id\":-9223372036854775808,"
                 "\"channel\":\"chat:lobby\",\"seq\":42}",
                 lk_codec_subscribed(buf_, cap_, 1, INT64_MIN, lobby, 42));
}

static void test_write_unsubscribed(void)
{
    CHECK_WRITER("{\"op\":\"unsubscribed\",\"id\":2,\"channel\":\"chat:lobby\"}",
                 lk_codec_unsubscribed(buf_, cap_, 1, 2, lobby, NULL));
    CHECK_WRITER("{\"op\":\"unsubscribed\",\"channel\":\"chat:lobby\","
                 "\"reason\":\"capability_revoked\"}",
                 lk_codec_unsubscribed(buf_, cap_, 0, 0, lobby, "capability_revoked"));
}

static void test_write_ack(void)
{
    CHECK_WRITER("{\"op\":\"ack\",\"id\":3,\"channel\":\"chat:lobby\",\"seq\":42}",
                 lk_codec_ack(buf_, cap_, 1, 3, lobby, 42));
    CHECK_WRITER("{\"op\":\"ack\",\"channel\":\"chat:lobby\",\"seq\":1}",
                 lk_codec_ack(buf_, cap_, 0, 3, lobby, 1));
}

static void test_write_authed(void)
{
    CHECK_WRITER("{\"op\":\"authed\",\"id\":4,\"expires_at\":1700003600}",
                 lk_codec_authed(buf_, cap_, 1, 4, 1700003600));
    CHECK_WRITER("{\"op\":\"authed\",\"expires_at\":9223372036854775807}",
                 lk_codec_authed(buf_, cap_, 0, 0, INT64_MAX));
}

static void test_write_pong(void)
{
    CHECK_WRITER("{\"op\":\"pong\",\"id\":5}", lk_codec_pong(buf_, cap_, 1, 5));
    CHECK_WRITER("{\"op\":\"pong\",\"id\":-1}", lk_codec_pong(buf_, cap_, 1, -1));
    CHECK_WRITER("{\"op\":\"pong\"}", lk_codec_pong(buf_, cap_, 0, 5));
}

static void test_write_token_expiring(void)
{
    CHECK_WRITER("{\"op\":\"token_expiring\",\"expires_in\":30}",
                 lk_codec_token_expiring(buf_, cap_, 30));
    CHECK_WRITER("{\"op\":\"token_expiring\",\"expires_in\":0}",
                 lk_codec_token_expiring(buf_, cap_, 0));
}

static void test_write_message(void)
{
#define DATA "{\"n\":12345678901234567890123,\"s\":\"a\\\"b\"}"
    static const lk_span data = {DATA, sizeof DATA - 1};
#undef DATA
    CHECK_WRITER("{\"op\":\"message\",\"channel\":\"chat:lobby\",\"seq\":43,"
                 "\"data\":{\"n\":12345678901234567890123,\"s\":\"a\\\"b\"},\"from\":\"u1\","
                 "\"ts\":1700000000456}",
                 lk_codec_message(buf_, cap_, lobby, 43, data, "u1", 1700000000456LL));
    CHECK_WRITER("{\"op\":\"message\",\"channel\":\"chat:lobby\",\"seq\":1,\"data\":null,"
                 "\"from\":null,\"ts\":0}",
                 lk_codec_message(buf_, cap_, lobby, 1, (lk_span){"null", 4}, NULL, 0));
    CHECK_WRITER("{\"op\":\"message\",\"channel\":\"chat:lobby\",\"seq\":2,\"data\":1,"
                 "\"from\":\"q\\\"b\\\\s\\u0001\\u000d\",\"ts\":5}",
                 lk_codec_message(buf_, cap_, lobby, 2, (lk_span){"1", 1}, "q\"b\\s\x01\r",
                                  5));
    CHECK_WRITER("{\"op\":\"message\",\"channel\":\"chat:lobby\",\"seq\":2,\"data\":null,"
                 "\"from\":null,\"ts\":5}",
                 lk_codec_message(buf_, cap_, lobby, 2, (lk_span){NULL, 0}, NULL, 5));
}

static void test_write_error(void)
{
    CHECK_WRITER("{\"op\":\"error\",\"id\":6,\"code\":\"bad_request\","
                 "\"message\":\"invalid channel name\"}",
                 lk_codec_error(buf_, cap_, 1, 6, "bad_request", "invalid channel name"));
    CHECK_WRITER("{\"op\":\"error\",\"code\":\"forbidden\",\"message\":\"no \\\"publish\\\" "
                 "on c:\\\\x\\u000a\\u0009\"}",
                 lk_codec_error(buf_, cap_, 0, 6, "forbidden", "no \"publish\" on c:\\x\n\t"));
}

LK_TEST_MAIN("codec",
             LK_TEST(test_subscribe), LK_TEST(test_unsubscribe), LK_TEST(test_publish),
             LK_TEST(test_auth), LK_TEST(test_ping), LK_TEST(test_id_values),
             LK_TEST(test_bad_channel), LK_TEST(test_bad_publish_data),
             LK_TEST(test_bad_since),
             LK_TEST(test_bad_token), LK_TEST(test_why_buffer),
             LK_TEST(test_protocol_not_one_object), LK_TEST(test_protocol_op),
             LK_TEST(test_protocol_invalid_json), LK_TEST(test_valid_strings),
             LK_TEST(test_escaped_key_and_op), LK_TEST(test_data_values),
             LK_TEST(test_duplicates_and_unknown), LK_TEST(test_whitespace),
             LK_TEST(test_depth),
             LK_TEST(test_minify), LK_TEST(test_json_string), LK_TEST(test_write_welcome),
             LK_TEST(test_write_subscribed), LK_TEST(test_write_unsubscribed),
             LK_TEST(test_write_ack), LK_TEST(test_write_authed), LK_TEST(test_write_pong),
             LK_TEST(test_write_token_expiring), LK_TEST(test_write_message),
             LK_TEST(test_write_error))
