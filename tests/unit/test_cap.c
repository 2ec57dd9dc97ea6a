/* test_cap.c - channel names, patterns, scopes and capabilities (cap.c). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "latchkey/cap.h"
#include "lk_internal.h"
#include "test.h"

#define PUB LK_ACT_PUBLISH
#define SUB LK_ACT_SUBSCRIBE
#define PRES LK_ACT_PRESENCE
#define HIST LK_ACT_HISTORY

static const char allowed[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@.:=-";

static int chan_ok(const char *s) { return lk_channel_valid(s, strlen(s)); }
static int pat_ok(const char *s) { return lk_pattern_valid(s, strlen(s)); }
static int match(const char *p, const char *n)
{
    return lk_pattern_match(p, strlen(p), n, strlen(n));
}

/* Parses `json`; returns the code and leaves the capability in *cap. */
static int parse(const char *json, lk_cap **cap, lk_error *err)
{
    return lk_cap_parse(json, strlen(json), cap, err);
}

static uint32_t acts(const lk_cap *cap, const char *ch)
{
    return lk_cap_actions(cap, ch, strlen(ch));
}

static void fill(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
}

/* ---- channel names ---- */

static void channel_lengths(void)
{
    char buf[260];
    ASSERT_FALSE(lk_channel_valid("", 0));
    ASSERT_FALSE(lk_channel_valid(NULL, 0));
    ASSERT_FALSE(lk_channel_valid(NULL, 5));
    fill(buf, 'a', 1);
    ASSERT_TRUE(chan_ok(buf));
    fill(buf, 'a', 200);
    ASSERT_TRUE(chan_ok(buf));
    fill(buf, 'a', 201);
    ASSERT_FALSE(chan_ok(buf));
    fill(buf, 'a', 255);
    ASSERT_FALSE(chan_ok(buf));
}

static void channel_bytes(void)
{
    for (int c = 0; c < 256; c++) {
        char s[3] = {'x', (char)c, 'y'};
        int want = c != 0 && strchr(allowed, c) != NULL;
        if (lk_channel_valid(s, 3) != want)
            LK_TEST__FAIL("byte 0x%02x: got %d want %d", c, !want, want);
        if (lk_channel_valid(s + 1, 1) != want)
            LK_TEST__FAIL("1-byte name 0x%02x: got %d want %d", c, !want, want);
    }
    ASSERT_TRUE(chan_ok(allowed));
    ASSERT_TRUE(chan_ok("chat:lobby"));
    ASSERT_TRUE(chan_ok("user@example.com:inbox=1"));
    ASSERT_FALSE(chan_ok("chat lobby"));
    ASSERT_FALSE(chan_ok("chat/lobby"));
    ASSERT_FALSE(chan_ok("chat#lobby"));
    ASSERT_FALSE(chan_ok("chat*"));
    ASSERT_FALSE(chan_ok("*"));
    ASSERT_FALSE(lk_channel_valid("ab\0cd", 5));
    ASSERT_FALSE(chan_ok("caf\xc3\xa9"));
    ASSERT_FALSE(chan_ok("chat\n"));
}

/* ---- patterns ---- */

static void pattern_validity(void)
{
    char buf[260];
    ASSERT_TRUE(pat_ok("*"));
    ASSERT_TRUE(pat_ok("chat:*"));
    ASSERT_TRUE(pat_ok("chat*"));
    ASSERT_TRUE(pat_ok("chat:lobby"));
    ASSERT_FALSE(pat_ok(""));
    ASSERT_FALSE(lk_pattern_valid(NULL, 1));
    ASSERT_FALSE(pat_ok("*chat"));
    ASSERT_FALSE(pat_ok("ch*at"));
    ASSERT_FALSE(pat_ok("**"));
    ASSERT_FALSE(pat_ok("chat:**"));
    ASSERT_FALSE(pat_ok("chat *"));
    ASSERT_FALSE(pat_ok("chat/*"));
    ASSERT_FALSE(lk_pattern_valid("ch\0*", 4));
    fill(buf, 'a', 200);
    ASSERT_TRUE(pat_ok(buf));
    fill(buf, 'a', 199);
    strcat(buf, "*");
    ASSERT_TRUE(pat_ok(buf));
    fill(buf, 'a', 200);
    strcat(buf, "*");
    ASSERT_FALSE(pat_ok(buf));
    fill(buf, 'a', 201);
    ASSERT_FALSE(pat_ok(buf));
}

static void pattern_matching(void)
{
    ASSERT_TRUE(match("chat:*", "chat:lobby"));
    ASSERT_TRUE(match("chat:*", "chat:a:b"));
    ASSERT_TRUE(match("chat:*", "chat:"));
    ASSERT_FALSE(match("chat:*", "chats"));
    ASSERT_FALSE(match("chat:*", "chat"));
    ASSERT_FALSE(match("chat:*", "cha"));
    ASSERT_FALSE(match("chat:*", "xchat:lobby"));
    ASSERT_TRUE(match("chat*", "chat"));
    ASSERT_TRUE(match("chat*", "chats"));
    ASSERT_TRUE(match("chat*", "chat:lobby"));
    ASSERT_TRUE(match("*", "a"));
    ASSERT_TRUE(match("*", "chat:lobby"));
    ASSERT_TRUE(match("news", "news"));
    ASSERT_FALSE(match("news", "news2"));
    ASSERT_FALSE(match("news", "new"));
    ASSERT_FALSE(match("news", "News"));
    ASSERT_FALSE(lk_pattern_match("", 0, "a", 1));
}

/* ---- actions ---- */

static void action_names(void)
{
    static const struct { const char *name; uint32_t bit; } known[] = {
        {"realtime:publish", PUB}, {"realtime:subscribe", SUB},
        {"realtime:presence", PRES}, {"realtime:history", HIST}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        ASSERT_EQ(lk_action_from_name(known[i].name, strlen(known[i].name)), known[i].bit);
        ASSERT_STREQ(lk_action_name(known[i].bit), known[i].name);
    }
    ASSERT_EQ(lk_action_from_name("realtime:*", 10), 0);
    ASSERT_EQ(lk_action_from_name("*", 1), 0);
    ASSERT_EQ(lk_action_from_name("REALTIME:publish", 16), 0);
    ASSERT_EQ(lk_action_from_name("realtime:publis", 15), 0);
    ASSERT_EQ(lk_action_from_name("realtime:publishx", 17), 0);
    ASSERT_EQ(lk_action_from_name("realtime:publish", 15), 0);
    ASSERT_EQ(lk_action_from_name(NULL, 0), 0);
    ASSERT_NULL(lk_action_name(0));
    ASSERT_NULL(lk_action_name(PUB | SUB));
    ASSERT_NULL(lk_action_name(0x10));
}

/* ---- scopes ---- */

static void scopes_valid(void)
{
    static const struct { const char *in; uint32_t mask; const char *canon; } cases[] = {
        {"realtime:publish", PUB, "realtime:publish"},
        {"realtime:publish,realtime:subscribe", PUB | SUB,
         "realtime:publish,realtime:subscribe"},
        {" realtime:subscribe ,\trealtime:publish\n", PUB | SUB,
         "realtime:subscribe,realtime:publish"},
        {"realtime:publish,realtime:publish, realtime:publish", PUB, "realtime:publish"},
        {"realtime:*", LK_ACT_ALL, "realtime:*"},
        {"*:subscribe", SUB, "*:subscribe"},
        {"*:publish,*:subscribe", PUB | SUB, "*:publish,*:subscribe"},
        {"*", LK_ACT_ALL, "*"},
        {"*:*", LK_ACT_ALL, "*:*"},
        {"other:*", 0, "other:*"},
        {"other:publish", 0, "other:publish"},
        {"*:audit", 0, "*:audit"},
        {"realtime:presence,realtime:history", PRES | HIST,
         "realtime:presence,realtime:history"},
        {"billing_v2:read-all,realtime:subscribe", SUB,
         "billing_v2:read-all,realtime:subscribe"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t mask = 0xdead;
        char canon[LK_SCOPES_MAX + 1];
        lk_error err = {0};
        int rc = lk_scopes_parse(cases[i].in, &mask, canon, &err);
        if (rc != LK_OK)
            LK_TEST__FAIL("\"%s\": %s (%s)", cases[i].in, lk_err_name(rc), err.message);
        ASSERT_EQ(mask, cases[i].mask);
        ASSERT_STREQ(canon, cases[i].canon);
        /* The canonical form parses to itself. */
        char again[LK_SCOPES_MAX + 1];
        uint32_t mask2 = 0;
        ASSERT_RC(lk_scopes_parse(canon, &mask2, again, NULL), LK_OK);
        ASSERT_STREQ(again, canon);
        ASSERT_EQ(mask2, mask);
    }
    uint32_t mask = 0;
    ASSERT_RC(lk_scopes_parse("realtime:publish", &mask, NULL, NULL), LK_OK);
    ASSERT_EQ(mask, PUB);
    ASSERT_RC(lk_scopes_parse("realtime:publish", NULL, NULL, NULL), LK_OK);
}

static void scopes_malformed(void)
{
    static const struct { const char *in; const char *in_msg; } cases[] = {
        {"", "empty scope list"},
        {"   ", "empty scope list"},
        {"realtime", "\"realtime\""},
        {":publish", "\":publish\""},
        {"realtime:", "\"realtime:\""},
        {"a:b:c", "\"a:b:c\""},
        {"REALTIME:publish", "\"REALTIME:publish\""},
        {"realtime:Publish", "\"realtime:Publish\""},
        {"realtime:publish,", "position 2"},
        {",realtime:publish", "position 1"},
        {"realtime:publish,,realtime:subscribe", "position 2"},
        {"realtime:publish, ,realtime:subscribe", "position 2"},
        {"realtime : publish", "\"realtime : publish\""},
        {"realtime:pub lish", "\"realtime:pub lish\""},
        {"realtime:publsh", "\"realtime:publsh\""},
        {"realtime:**", "\"realtime:**\""},
        {"**", "\"**\""},
        {"*realtime:publish", "\"*realtime:publish\""},
        {"realtime:publish;realtime:subscribe", "realtime:publish;"},
        {"realtime:publish,caf\xc3\xa9:x", "caf\\xc3\\xa9:x"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t mask = 0xdead;
        char canon[LK_SCOPES_MAX + 1] = "junk";
        lk_error err = {0};
        int rc = lk_scopes_parse(cases[i].in, &mask, canon, &err);
        if (rc != LK_ESCOPE)
            LK_TEST__FAIL("\"%s\": got %s, want ESCOPE", cases[i].in, lk_err_name(rc));
        ASSERT_EQ(err.code, LK_ESCOPE);
        ASSERT_EQ(mask, 0);
        ASSERT_STREQ(canon, "");
        if (!strstr(err.message, cases[i].in_msg))
            LK_TEST__FAIL("\"%s\": message \"%s\" lacks \"%s\"", cases[i].in,
                          err.message, cases[i].in_msg);
    }
    ASSERT_RC(lk_scopes_parse(NULL, NULL, NULL, NULL), LK_EINVAL);
}

static void scopes_length_limit(void)
{
    char list[2048], canon[LK_SCOPES_MAX + 1];
    size_t o = 0;
    /* "s000:a," ... 7 bytes per item: 73 items = 510 bytes canonical. */
    for (int i = 0; i < 73; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%ss%03d:a", i ? "," : "", i);
    ASSERT_EQ(o, 510);
    ASSERT_RC(lk_scopes_parse(list, NULL, canon, NULL), LK_OK);
    ASSERT_EQ(strlen(canon), 510);
    /* Duplicates do not count towards the limit. */
    snprintf(list + o, sizeof list - o, ",s000:a,s001:a,   s002:a");
    ASSERT_RC(lk_scopes_parse(list, NULL, canon, NULL), LK_OK);
    ASSERT_EQ(strlen(canon), 510);
    snprintf(list + o, sizeof list - o, ",x");
    ASSERT_RC(lk_scopes_parse(list, NULL, canon, NULL), LK_ESCOPE); /* 'x' malformed */
    snprintf(list + o, sizeof list - o, ",*");
    ASSERT_RC(lk_scopes_parse(list, NULL, canon, NULL), LK_OK); /* 512 exactly */
    ASSERT_EQ(strlen(canon), 512);
    snprintf(list + o, sizeof list - o, ",*,*:*");
    lk_error err;
    ASSERT_RC(lk_scopes_parse(list, NULL, canon, &err), LK_ESCOPE);
    ASSERT_TRUE(strstr(err.message, "longer than 512") != NULL);
}

/* ---- capability parsing ---- */

static void cap_valid(void)
{
    lk_cap *cap = NULL;
    lk_error err = {0};
    int rc = parse("{\"chat:*\":[\"realtime:subscribe\",\"realtime:publish\"],"
                   "\"news\":[\"realtime:subscribe\"]}", &cap, &err);
    if (rc != LK_OK)
        LK_TEST__FAIL("parse: %s", err.message);
    ASSERT_EQ(acts(cap, "chat:lobby"), PUB | SUB);
    ASSERT_EQ(acts(cap, "chat:a:b"), PUB | SUB);
    ASSERT_EQ(acts(cap, "chat:"), PUB | SUB);
    ASSERT_EQ(acts(cap, "chats"), 0);
    ASSERT_EQ(acts(cap, "chat"), 0);
    ASSERT_EQ(acts(cap, "news"), SUB);
    ASSERT_EQ(acts(cap, "news:x"), 0);
    ASSERT_EQ(acts(cap, "new"), 0);
    ASSERT_TRUE(lk_cap_allows(cap, PUB, "chat:x", 6));
    ASSERT_FALSE(lk_cap_allows(cap, PUB, "news", 4));
    ASSERT_TRUE(lk_cap_allows(cap, SUB, "news", 4));
    ASSERT_EQ(lk_cap_required(cap), PUB | SUB);
    lk_cap_destroy(cap);

    /* Not NUL-terminated: only `len` bytes are read; whitespace around is fine. */
    const char buf[] = " \n{\"a\":[\"realtime:publish\"]}\r\n\t GARBAGE";
    ASSERT_RC(lk_cap_parse(buf, strlen(buf) - 7, &cap, &err), LK_OK);
    ASSERT_EQ(acts(cap, "a"), PUB);
    lk_cap_destroy(cap);
}

static void cap_exact_and_star(void)
{
    lk_cap *cap = NULL;
    ASSERT_RC(parse("{\"*\":[\"realtime:subscribe\"]}", &cap, NULL), LK_OK);
    ASSERT_EQ(acts(cap, "a"), SUB);
    ASSERT_EQ(acts(cap, "anything:at:all"), SUB);
    lk_cap_destroy(cap);

    ASSERT_RC(parse("{\"room-1\":[\"realtime:publish\"],\"room-2\":[\"realtime:subscribe\"],"
                    "\"room-10\":[\"realtime:publish\",\"realtime:subscribe\"]}", &cap, NULL),
              LK_OK);
    ASSERT_EQ(acts(cap, "room-1"), PUB);
    ASSERT_EQ(acts(cap, "room-2"), SUB);
    ASSERT_EQ(acts(cap, "room-10"), PUB | SUB);
    ASSERT_EQ(acts(cap, "room-3"), 0);
    ASSERT_EQ(acts(cap, "room-"), 0);
    ASSERT_EQ(acts(cap, "room-100"), 0);
    ASSERT_EQ(acts(cap, "Room-1"), 0);
    lk_cap_destroy(cap);
}

static void cap_overlapping_or(void)
{
    lk_cap *cap = NULL;
    ASSERT_RC(parse("{\"chat:*\":[\"realtime:subscribe\"],"
                    "\"chat:lobby\":[\"realtime:publish\"],"
                    "\"chat:vip:*\":[\"realtime:publish\"],"
                    "\"chat:vip:lounge-for-members-only:*\":[\"realtime:subscribe\"],"
                    "\"c*\":[\"realtime:presence\"]}", &cap, NULL),
              LK_OK);
    ASSERT_EQ(acts(cap, "chat:lobby"), PUB | SUB);
    ASSERT_EQ(acts(cap, "chat:other"), SUB);
    ASSERT_EQ(acts(cap, "chat:vip:x"), PUB | SUB);
    ASSERT_EQ(acts(cap, "chat:vip:lounge-for-members-only:a"), PUB | SUB);
    ASSERT_EQ(acts(cap, "chat:vip:lounge-for-members-onlyX"), PUB | SUB);
    ASSERT_EQ(acts(cap, "chat"), 0);
    ASSERT_EQ(acts(cap, "cat"), 0);
    lk_cap_destroy(cap);

    ASSERT_RC(parse("{\"a*\":[\"realtime:publish\"],\"ab*\":[\"realtime:subscribe\"],"
                    "\"abcdefghij*\":[\"realtime:publish\"],\"*\":[\"realtime:presence\"]}",
                    &cap, NULL),
              LK_OK);
    ASSERT_EQ(acts(cap, "a"), PUB);
    ASSERT_EQ(acts(cap, "ab"), PUB | SUB);
    ASSERT_EQ(acts(cap, "abcdefghij"), PUB | SUB);
    ASSERT_EQ(acts(cap, "abcdefghiX"), PUB | SUB);
    ASSERT_EQ(acts(cap, "b"), 0);
    lk_cap_destroy(cap);
}

static void cap_reserved_grant_nothing(void)
{
    lk_cap *cap = NULL;
    ASSERT_RC(parse("{\"c\":[\"realtime:presence\",\"realtime:history\"]}", &cap, NULL), LK_OK);
    ASSERT_EQ(acts(cap, "c"), 0);
    ASSERT_FALSE(lk_cap_allows(cap, PRES, "c", 1));
    ASSERT_FALSE(lk_cap_allows(cap, HIST, "c", 1));
    ASSERT_FALSE(lk_cap_allows(cap, PUB, "c", 1));
    ASSERT_FALSE(lk_cap_allows(cap, SUB, "c", 1));
    ASSERT_EQ(lk_cap_required(cap), PRES | HIST);
    lk_cap_destroy(cap);

    ASSERT_RC(parse("{\"*\":[\"realtime:history\"],\"c*\":[\"realtime:presence\"],"
                    "\"d\":[\"realtime:presence\",\"realtime:subscribe\"]}", &cap, NULL),
              LK_OK);
    ASSERT_EQ(acts(cap, "c"), 0);
    ASSERT_EQ(acts(cap, "cx"), 0);
    ASSERT_EQ(acts(cap, "d"), SUB);
    ASSERT_EQ(acts(cap, "zzz"), 0);
    ASSERT_EQ(lk_cap_required(cap), PRES | HIST | SUB);
    lk_cap_destroy(cap);
}

static void cap_malformed(void)
{
    static const struct { const char *json; const char *in_msg; } cases[] = {
        {"[]", "JSON object"},
        {"[{\"c\":[\"realtime:publish\"]}]", "JSON object"},
        {"\"c\"", "JSON object"},
        {"1", "JSON object"},
        {"null", "JSON object"},
        {"true", "JSON object"},
        {"{}", "empty"},
        {"  {  }  ", "empty"},
        {"{\"c\":[]}", "\"c\": empty action list"},
        {"{\"c\":\"realtime:publish\"}", "\"c\": value must be an array"},
        {"{\"c\":{\"realtime:publish\":1}}", "\"c\": value must be an array"},
        {"{\"c\":null}", "\"c\": value must be an array"},
        {"{\"c\":[1]}", "\"c\": actions must be strings"},
        {"{\"c\":[null]}", "\"c\": actions must be strings"},
        {"{\"c\":[\"realtime:publish\",[\"realtime:publish\"]]}", "actions must be strings"},
        {"{\"c\":[{\"a\":[1,[2,{}]]}]}", "actions must be strings"},
        {"{\"c\":[\"realtime:*\"]}", "wildcard action \"realtime:*\""},
        {"{\"c\":[\"*\"]}", "wildcard action \"*\""},
        {"{\"c\":[\"*:publish\"]}", "wildcard action"},
        {"{\"c\":[\"realtime:publsh\"]}", "unknown action \"realtime:publsh\""},
        {"{\"c\":[\"publish\"]}", "unknown action \"publish\""},
        {"{\"c\":[\"REALTIME:PUBLISH\"]}", "unknown action"},
        {"{\"c\":[\"\"]}", "unknown action \"\""},
        {"{\"bad name\":[\"realtime:publish\"]}", "\"bad name\""},
        {"{\"\":[\"realtime:publish\"]}", "invalid channel pattern \"\""},
        {"{\"*chat\":[\"realtime:publish\"]}", "\"*chat\""},
        {"{\"ch*at\":[\"realtime:publish\"]}", "\"ch*at\""},
        {"{\"**\":[\"realtime:publish\"]}", "\"**\""},
        {"{\"chat:**\":[\"realtime:publish\"]}", "\"chat:**\""},
        {"{\"a/b\":[\"realtime:publish\"]}", "\"a/b\""},
        {"{\"caf\xc3\xa9\":[\"realtime:publish\"]}", "\"caf\\xc3\\xa9\""},
        {"{\"a\\nb\":[\"realtime:publish\"]}", "\"a\\x0ab\""},
        {"{\"q\\\"\":[\"realtime:publish\"]}", "\"q\\x22\""},
        {"{\"c\":[\"realtime:publish\"],\"c\":[\"realtime:subscribe\"]}",
         "duplicate pattern \"c\""},
        {"{\"b\":[\"realtime:publish\"],\"a*\":[\"realtime:publish\"],"
         "\"a*\":[\"realtime:publish\"]}", "duplicate pattern \"a*\""},
        {"{", "not valid JSON"},
        {"{\"c\":[\"realtime:publish\"]", "not valid JSON"},
        {"{\"c\":[\"realtime:publish\"],}", "not valid JSON"},
        {"{c:[\"realtime:publish\"]}", "not valid JSON"},
        {"{\"c\":[\"realtime:publish\"]}x", "unexpected data"},
        {"{\"c\":[\"realtime:publish\"]}{}", "unexpected data"},
        {"{\"c\":[\"realtime:publish\"]} []", "unexpected data"},
        {"", "empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lk_cap *cap = (lk_cap *)&cases; /* must be reset to NULL */
        lk_error err = {0};
        int rc = parse(cases[i].json, &cap, &err);
        if (rc != LK_ECAP)
            LK_TEST__FAIL("%s: got %s, want ECAP", cases[i].json, lk_err_name(rc));
        ASSERT_EQ(err.code, LK_ECAP);
        ASSERT_NULL(cap);
        if (!strstr(err.message, cases[i].in_msg))
            LK_TEST__FAIL("%s: message \"%s\" lacks \"%s\"", cases[i].json, err.message,
                          cases[i].in_msg);
    }
    lk_cap *cap = NULL;
    ASSERT_RC(lk_cap_parse(NULL, 0, &cap, NULL), LK_ECAP);
    ASSERT_RC(lk_cap_parse("{}", 2, NULL, NULL), LK_EINVAL);
    /* The NUL is part of the input, not a terminator. */
    static const char with_nul[] = "{\"c\":[\"realtime:publish\"]}";
    ASSERT_RC(lk_cap_parse(with_nul, sizeof with_nul - 1, &cap, NULL), LK_OK);
    lk_cap_destroy(cap);
    ASSERT_RC(lk_cap_parse(with_nul, sizeof with_nul, &cap, NULL), LK_ECAP);
    ASSERT_NULL(cap);
}

static void cap_bounded_messages(void)
{
    /* A huge, hostile pattern name: the message is bounded and printable. */
    static char json[6000];
    size_t o = (size_t)snprintf(json, sizeof json, "{\"");
    for (int i = 0; i < 5000; i++)
        json[o++] = (i % 7 == 0) ? '\x01' : 'x';
    o += (size_t)snprintf(json + o, sizeof json - o, "\":[\"realtime:publish\"]}");
    lk_cap *cap = NULL;
    lk_error err = {0};
    ASSERT_RC(lk_cap_parse(json, o, &cap, &err), LK_ECAP);
    ASSERT_TRUE(strlen(err.message) < 200);
    for (const char *p = err.message; *p; p++)
        ASSERT_TRUE((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);

    static char big[20000];
    o = (size_t)snprintf(big, sizeof big, "{\"");
    for (int i = 0; i < 3000; i++)
        o += (size_t)snprintf(big + o, sizeof big - o, "%s", i % 5 ? "y" : "\\u0007");
    o += (size_t)snprintf(big + o, sizeof big - o, "\":[\"realtime:publish\"]}");
    ASSERT_RC(lk_cap_parse(big, o, &cap, &err), LK_ECAP);
    ASSERT_TRUE(strstr(err.message, "invalid channel pattern") != NULL);
    ASSERT_TRUE(strstr(err.message, "...") != NULL);
    ASSERT_TRUE(strlen(err.message) < 200);
    for (const char *p = err.message; *p; p++)
        ASSERT_TRUE((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);

    o = (size_t)snprintf(big, sizeof big, "{\"c\":[\"");
    for (int i = 0; i < 3000; i++)
        big[o++] = 'z';
    o += (size_t)snprintf(big + o, sizeof big - o, "\"]}");
    ASSERT_RC(lk_cap_parse(big, o, &cap, &err), LK_ECAP);
    ASSERT_TRUE(strstr(err.message, "unknown action \"zzzz") != NULL);
    ASSERT_TRUE(strlen(err.message) < 200);
}

/* Writes {"p0":[...],...} with n patterns into buf. */
static size_t many_patterns(char *buf, size_t cap, int n, int actions_each)
{
    size_t o = (size_t)snprintf(buf, cap, "{");
    for (int i = 0; i < n; i++) {
        o += (size_t)snprintf(buf + o, cap - o, "%s\"p%d%s\":[", i ? "," : "", i,
                              i % 3 == 0 ? "*" : "");
        for (int a = 0; a < actions_each; a++)
            o += (size_t)snprintf(buf + o, cap - o, "%s\"realtime:%s\"", a ? "," : "",
                                  a % 2 ? "publish" : "subscribe");
        o += (size_t)snprintf(buf + o, cap - o, "]");
    }
    o += (size_t)snprintf(buf + o, cap - o, "}");
    return o;
}

static void cap_limits(void)
{
    static char buf[200000];
    lk_cap *cap = NULL;
    lk_error err = {0};
    size_t n = many_patterns(buf, sizeof buf, 256, 1);
    ASSERT_RC(lk_cap_parse(buf, n, &cap, &err), LK_OK);
    ASSERT_EQ(acts(cap, "p255"), SUB);
    ASSERT_EQ(acts(cap, "p3"), SUB);
    ASSERT_EQ(acts(cap, "p3x"), SUB);
    ASSERT_EQ(acts(cap, "p4x"), 0);
    lk_cap_destroy(cap);

    n = many_patterns(buf, sizeof buf, 257, 1);
    ASSERT_RC(lk_cap_parse(buf, n, &cap, &err), LK_ECAP);
    ASSERT_TRUE(strstr(err.message, "more than 256 patterns") != NULL);
    ASSERT_NULL(cap);

    n = many_patterns(buf, sizeof buf, 2, 16);
    ASSERT_RC(lk_cap_parse(buf, n, &cap, &err), LK_OK);
    ASSERT_EQ(acts(cap, "p1"), PUB | SUB);
    lk_cap_destroy(cap);
    n = many_patterns(buf, sizeof buf, 2, 17);
    ASSERT_RC(lk_cap_parse(buf, n, &cap, &err), LK_ECAP);
    ASSERT_TRUE(strstr(err.message, "more than 16 actions") != NULL);

    /* Over 128 KiB of input is refused before parsing. */
    n = (size_t)snprintf(buf, sizeof buf, "{\"c\":[\"realtime:publish\"]}");
    memset(buf + n, ' ', 140000);
    ASSERT_RC(lk_cap_parse(buf, n + 140000, &cap, &err), LK_ECAP);
    ASSERT_TRUE(strstr(err.message, "larger than") != NULL);
    ASSERT_RC(lk_cap_parse(buf, n + 1000, &cap, &err), LK_OK);
    lk_cap_destroy(cap);

    /* Deep nesting inside a value is refused, not a crash. */
    n = (size_t)snprintf(buf, sizeof buf, "{\"c\":");
    for (int i = 0; i < 900; i++)
        buf[n++] = '[';
    for (int i = 0; i < 900; i++)
        buf[n++] = ']';
    buf[n++] = '}';
    ASSERT_RC(lk_cap_parse(buf, n, &cap, &err), LK_ECAP);
}

static void cap_long_patterns(void)
{
    char pat[LK_CHANNEL_MAX + 1], ch[300], json[600];
    lk_cap *cap = NULL;
    lk_error err;
    fill(pat, 'q', 199);
    snprintf(json, sizeof json, "{\"%s*\":[\"realtime:publish\"],\"%sr\":[\"realtime:subscribe\"]}",
             pat, pat);
    ASSERT_RC(parse(json, &cap, &err), LK_OK);
    fill(ch, 'q', 199);
    ASSERT_EQ(acts(cap, ch), PUB);
    strcat(ch, "r");
    ASSERT_EQ(acts(cap, ch), PUB | SUB);
    fill(ch, 'q', 198);
    ASSERT_EQ(acts(cap, ch), 0);
    /* Longer than any valid name: no over-read, no false match. */
    fill(ch, 'q', 290);
    ASSERT_EQ(acts(cap, ch), PUB);
    ASSERT_EQ(lk_cap_actions(cap, NULL, 0), 0);
    ASSERT_EQ(lk_cap_actions(cap, "", 0), 0);
    lk_cap_destroy(cap);
}

/* ---- compiled form against the plain definition ---- */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* A short name over a tiny alphabet so that patterns overlap often. */
static size_t rnd_name(char *out, size_t max)
{
    static const char alpha[] = "ab:";
    size_t n = rnd(4) == 0 ? 1 + rnd((uint32_t)max) : 1 + rnd(12);
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++)
        out[i] = alpha[rnd(3)];
    return n;
}

static void cap_matches_reference(void)
{
    enum { MAXP = 256, ROUNDS = 400, PROBES = 150 };
    static char pats[MAXP][LK_CHANNEL_MAX + 1];
    static size_t plens[MAXP];
    static uint32_t masks[MAXP];
    static char json[MAXP * 300];
    for (int round = 0; round < ROUNDS; round++) {
        int np = round % 50 == 0 ? MAXP : 1 + (int)rnd(40), k = 0;
        for (int tries = 0; k < np && tries < 4 * np; tries++) {
            char p[LK_CHANNEL_MAX + 1];
            size_t n;
            uint32_t kind = rnd(10);
            if (kind == 0) {
                p[0] = '*';
                n = 1;
            } else {
                n = rnd_name(p, LK_CHANNEL_MAX - 1);
                if (kind < 6)
                    p[n++] = '*';
            }
            int dup = 0;
            for (int j = 0; j < k && !dup; j++)
                dup = plens[j] == n && memcmp(pats[j], p, n) == 0;
            if (dup)
                continue;
            memcpy(pats[k], p, n);
            pats[k][n] = '\0';
            plens[k] = n;
            masks[k] = 1 + rnd(15);
            k++;
        }
        size_t o = (size_t)snprintf(json, sizeof json, "{");
        for (int j = 0; j < k; j++) {
            o += (size_t)snprintf(json + o, sizeof json - o, "%s\"%s\":[", j ? "," : "", pats[j]);
            int first = 1;
            for (uint32_t b = 1; b <= 8; b <<= 1) {
                if (!(masks[j] & b))
                    continue;
                o += (size_t)snprintf(json + o, sizeof json - o, "%s\"%s\"", first ? "" : ",",
                                      lk_action_name(b));
                first = 0;
            }
            o += (size_t)snprintf(json + o, sizeof json - o, "]");
        }
        o += (size_t)snprintf(json + o, sizeof json - o, "}");
        lk_cap *cap = NULL;
        lk_error err;
        int rc = lk_cap_parse(json, o, &cap, &err);
        if (rc != LK_OK)
            LK_TEST__FAIL("round %d: %s", round, err.message);
        uint32_t required = 0;
        for (int j = 0; j < k; j++)
            required |= masks[j];
        ASSERT_EQ(lk_cap_required(cap), required);
        for (int probe = 0; probe < PROBES; probe++) {
            char ch[LK_CHANNEL_MAX + 8];
            size_t n;
            if (probe % 2) {
                /* A pattern's own prefix, maybe extended or cut short. */
                int j = (int)rnd((uint32_t)k);
                n = plens[j];
                memcpy(ch, pats[j], n);
                if (ch[n - 1] == '*')
                    n--;
                if (rnd(2) && n < LK_CHANNEL_MAX)
                    n += rnd_name(ch + n, LK_CHANNEL_MAX - n);
                else if (rnd(2) && n > 1)
                    n--;
                if (n == 0)
                    ch[n++] = 'a';
            } else {
                n = rnd_name(ch, LK_CHANNEL_MAX);
            }
            uint32_t want = 0;
            for (int j = 0; j < k; j++)
                if (lk_pattern_match(pats[j], plens[j], ch, n))
                    want |= masks[j] & (PUB | SUB);
            uint32_t got = lk_cap_actions(cap, ch, n);
            if (got != want) {
                lk_cap_destroy(cap);
                LK_TEST__FAIL("round %d: channel %.*s: got %u want %u", round, (int)n, ch,
                              got, want);
            }
        }
        lk_cap_destroy(cap);
    }
}

/* ---- scope checks ---- */

static void check_scopes(void)
{
    lk_cap *cap = NULL;
    lk_error err = {0};
    ASSERT_RC(parse("{\"chat:*\":[\"realtime:subscribe\",\"realtime:publish\"],"
                    "\"news\":[\"realtime:subscribe\"]}", &cap, NULL),
              LK_OK);
    ASSERT_RC(lk_cap_check_scopes(cap, PUB | SUB, &err), LK_OK);
    ASSERT_RC(lk_cap_check_scopes(cap, LK_ACT_ALL, &err), LK_OK);
    ASSERT_RC(lk_cap_check_scopes(cap, SUB, &err), LK_ESCOPE_MISSING);
    ASSERT_EQ(err.code, LK_ESCOPE_MISSING);
    ASSERT_STREQ(err.message, "capability needs realtime:publish (pattern chat:*), which "
                              "the key's scopes do not grant");
    ASSERT_RC(lk_cap_check_scopes(cap, PUB, &err), LK_ESCOPE_MISSING);
    ASSERT_STREQ(err.message, "capability needs realtime:subscribe (pattern chat:*), which "
                              "the key's scopes do not grant");
    ASSERT_RC(lk_cap_check_scopes(cap, 0, NULL), LK_ESCOPE_MISSING);

    uint32_t mask = 0;
    ASSERT_RC(lk_scopes_parse("*:subscribe", &mask, NULL, NULL), LK_OK);
    ASSERT_RC(lk_cap_check_scopes(cap, mask, &err), LK_ESCOPE_MISSING);
    ASSERT_RC(lk_scopes_parse("realtime:*", &mask, NULL, NULL), LK_OK);
    ASSERT_RC(lk_cap_check_scopes(cap, mask, &err), LK_OK);
    ASSERT_RC(lk_scopes_parse("other:*", &mask, NULL, NULL), LK_OK);
    ASSERT_RC(lk_cap_check_scopes(cap, mask, &err), LK_ESCOPE_MISSING);
    lk_cap_destroy(cap);

    /* Reserved actions still need their scope. */
    ASSERT_RC(parse("{\"news\":[\"realtime:subscribe\",\"realtime:history\"]}", &cap, NULL),
              LK_OK);
    ASSERT_RC(lk_cap_check_scopes(cap, PUB | SUB, &err), LK_ESCOPE_MISSING);
    ASSERT_STREQ(err.message, "capability needs realtime:history (pattern news), which "
                              "the key's scopes do not grant");
    ASSERT_RC(lk_scopes_parse("realtime:*", &mask, NULL, NULL), LK_OK);
    ASSERT_RC(lk_cap_check_scopes(cap, mask, &err), LK_OK);
    lk_cap_destroy(cap);

    /* A 200-byte pattern keeps the message bounded. */
    char pat[LK_CHANNEL_MAX + 1], json[400];
    fill(pat, 'w', 200);
    snprintf(json, sizeof json, "{\"%s\":[\"realtime:publish\"]}", pat);
    ASSERT_RC(parse(json, &cap, NULL), LK_OK);
    ASSERT_RC(lk_cap_check_scopes(cap, SUB, &err), LK_ESCOPE_MISSING);
    ASSERT_TRUE(strstr(err.message, "realtime:publish (pattern wwww") != NULL);
    ASSERT_TRUE(strstr(err.message, "...") != NULL);
    ASSERT_TRUE(strlen(err.message) < LK_ERROR_MSG_BYTES - 1);
    lk_cap_destroy(cap);

    ASSERT_RC(lk_cap_check_scopes(NULL, LK_ACT_ALL, NULL), LK_EINVAL);
}

/* ---- canonical JSON ---- */

static void to_json_canonical(void)
{
    lk_cap *a = NULL, *b = NULL;
    ASSERT_RC(parse("{\"news\":[\"realtime:subscribe\",\"realtime:subscribe\"],"
                    "\"chat:*\":[\"realtime:subscribe\",\"realtime:publish\"],"
                    "\"*\":[\"realtime:history\"]}", &a, NULL),
              LK_OK);
    ASSERT_RC(parse(" { \"*\" : [\"realtime:history\"] , \"chat:*\":[\"realtime:publish\","
                    "\"realtime:subscribe\"],\"news\":[\"realtime:subscribe\"] } ", &b, NULL),
              LK_OK);
    char *ja = lk_cap_to_json(a), *jb = lk_cap_to_json(b);
    const char *want = "{\"*\":[\"realtime:history\"],\"chat:*\":[\"realtime:publish\","
                       "\"realtime:subscribe\"],\"news\":[\"realtime:subscribe\"]}";
    ASSERT_STREQ(ja, want);
    ASSERT_STREQ(jb, want);

    /* Round trip: parsing the canonical form gives the same capability. */
    lk_cap *c = NULL;
    ASSERT_RC(parse(ja, &c, NULL), LK_OK);
    char *jc = lk_cap_to_json(c);
    ASSERT_STREQ(jc, want);
    ASSERT_EQ(lk_cap_required(c), lk_cap_required(a));
    ASSERT_EQ(acts(c, "chat:x"), acts(a, "chat:x"));
    lk_free(ja);
    lk_free(jb);
    lk_free(jc);
    lk_cap_destroy(a);
    lk_cap_destroy(b);
    lk_cap_destroy(c);

    /* All four actions, in bit order. */
    ASSERT_RC(parse("{\"x\":[\"realtime:history\",\"realtime:presence\","
                    "\"realtime:subscribe\",\"realtime:publish\"]}", &a, NULL),
              LK_OK);
    ja = lk_cap_to_json(a);
    ASSERT_STREQ(ja, "{\"x\":[\"realtime:publish\",\"realtime:subscribe\","
                     "\"realtime:presence\",\"realtime:history\"]}");
    lk_free(ja);
    lk_cap_destroy(a);
    ASSERT_NULL(lk_cap_to_json(NULL));
}

static void from_cjson(void)
{
    lk_cap *cap = (lk_cap *)&rng_state;
    lk_error err;
    cJSON *root = cJSON_Parse("{\"cap\":{\"a:*\":[\"realtime:subscribe\"]},\"arr\":[1]}");
    ASSERT_NOT_NULL(root);
    ASSERT_RC(lk__cap_from_cjson(cJSON_GetObjectItemCaseSensitive(root, "cap"), &cap, &err),
              LK_OK);
    ASSERT_EQ(acts(cap, "a:b"), SUB);
    lk_cap_destroy(cap);
    cap = (lk_cap *)&rng_state;
    ASSERT_RC(lk__cap_from_cjson(cJSON_GetObjectItemCaseSensitive(root, "arr"), &cap, &err),
              LK_ECAP);
    ASSERT_NULL(cap);
    ASSERT_RC(lk__cap_from_cjson(NULL, &cap, &err), LK_ECAP);
    ASSERT_RC(lk__cap_from_cjson(root, NULL, &err), LK_EINVAL);
    /* The whole document is an object, but "arr" is not a pattern's array of actions. */
    ASSERT_RC(lk__cap_from_cjson(root, &cap, &err), LK_ECAP);
    ASSERT_TRUE(strstr(err.message, "\"cap\": value must be an array") != NULL);
    cJSON_Delete(root);
}

static void null_handles(void)
{
    lk_cap_destroy(NULL);
    ASSERT_EQ(lk_cap_actions(NULL, "a", 1), 0);
    ASSERT_EQ(lk_cap_required(NULL), 0);
}

/* cJSON cuts strings at NUL: "*\u0000private" must not become "*". */
static void cap_embedded_nul(void)
{
    static const char escaped[] = "{\"*\\u0000private\":[\"realtime:publish\"]}";
    static const char raw[] = "{\"chat\0x\":[\"realtime:publish\"]}";
    static const char escaped_backslash[] = "{\"a\":[\"realtime:publish\"],\"b\\\\u0000\":1}";
    lk_cap *cap = NULL;
    lk_error err;
    ASSERT_RC(lk_cap_parse(escaped, sizeof escaped - 1, &cap, &err), LK_ECAP);
    ASSERT_NULL(cap);
    ASSERT_RC(lk_cap_parse(raw, sizeof raw - 1, &cap, &err), LK_ECAP);
    ASSERT_NULL(cap);
    /* An escaped backslash followed by "u0000" is no NUL; this one fails
     * later, for its non-array value, not for a NUL. */
    ASSERT_RC(lk_cap_parse(escaped_backslash, sizeof escaped_backslash - 1, &cap, &err), LK_ECAP);
    ASSERT_TRUE(strstr(err.message, "NUL") == NULL);
}

LK_TEST_MAIN("cap", LK_TEST(cap_embedded_nul),
             LK_TEST(channel_lengths), LK_TEST(channel_bytes), LK_TEST(pattern_validity),
             LK_TEST(pattern_matching), LK_TEST(action_names), LK_TEST(scopes_valid),
             LK_TEST(scopes_malformed), LK_TEST(scopes_length_limit), LK_TEST(cap_valid),
             LK_TEST(cap_exact_and_star), LK_TEST(cap_overlapping_or),
             LK_TEST(cap_reserved_grant_nothing), LK_TEST(cap_malformed),
             LK_TEST(cap_bounded_messages), LK_TEST(cap_limits), LK_TEST(cap_long_patterns),
             LK_TEST(cap_matches_reference), LK_TEST(check_scopes), LK_TEST(to_json_canonical),
             LK_TEST(from_cjson), LK_TEST(null_handles))
