/* codec.c - the latchkey.v1 wire codec (SPEC section 4).
 *
 * The parser is a strict RFC 8259 scanner that never allocates and never
 * converts numbers: `data` is handed back as the exact bytes the client
 * sent, so a 64-bit integer (or a 200-digit one) survives untouched. It is
 * iterative, with an explicit bit stack, so hostile nesting costs neither C
 * stack nor heap.
 *
 * Writers build compact frames with memcpy and a hand-rolled integer
 * formatter; the message writer runs once per publish. */
#include <string.h>

#include "codec.h"

/* Nesting the scanner tracks at all. Frames nested deeper than
 * LK_CODEC_MAX_DEPTH but within this are still validated, so that a known
 * op gets a bad_request rather than a protocol close; anything deeper is
 * not worth reading. */
#define SCAN_MAX_DEPTH 1024
/* Generous bound on an in-band token: verification itself refuses tokens
 * over 8 KiB with a proper unauthorized reply; this only caps absurd ones. */
#define TOKEN_MAX_BYTES 16384
#define INT64_DIGITS_MAX 20

/* ---- character classes ---------------------------------------------- */

/* 1 for bytes that may appear unescaped in a string without further
 * checks: printable ASCII except '"' and '\\'. */
static const unsigned char str_plain[256] = {
    [0x20] = 1, [0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7f] = 1,
};

/* SPEC section 1: [A-Za-z0-9_@.:=-]. */
static const unsigned char chan_ok[256] = {
    ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['0' ... '9'] = 1,
    ['_'] = 1, ['@'] = 1, ['.'] = 1, [':'] = 1, ['='] = 1, ['-'] = 1,
};

static inline int is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int channel_valid(const unsigned char *p, size_t len)
{
    if (len == 0 || len > 200)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!chan_ok[p[i]])
            return 0;
    return 1;
}

/* Length of the well-formed UTF-8 sequence starting at p (lead byte
 * >= 0x80), or 0 if it is malformed, overlong, a surrogate or beyond
 * U+10FFFF (RFC 3629 table 3-7). */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t avail = (size_t)(end - p);
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 0;
    }
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* ---- scanner ---------------------------------------------------------- */

#define SWAR_ONES 0x0101010101010101ull
#define SWAR_HIGH 0x8080808080808080ull

/* Nonzero if any byte of v needs a closer look inside a string: a control
 * character, '"', '\\' or a non-ASCII byte. */
static inline uint64_t swar_special(uint64_t v)
{
    uint64_t ctl = (v - SWAR_ONES * 0x20) & ~v;
    uint64_t q = v ^ (SWAR_ONES * '"');
    uint64_t b = v ^ (SWAR_ONES * '\\');
    q = (q - SWAR_ONES) & ~q;
    b = (b - SWAR_ONES) & ~b;
    return (ctl | q | b | v) & SWAR_HIGH;
}

static int read_u4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    int a = hex_val(p[0]), b = hex_val(p[1]), c = hex_val(p[2]), d = hex_val(p[3]);
    if ((a | b | c | d) < 0)
        return -1;
    *out = (unsigned)(a << 12 | b << 8 | c << 4 | d);
    return 0;
}

/* `p` is just past the opening quote. Returns the position just past the
 * closing quote, or NULL if the string is not valid JSON (bad escape, lone
 * surrogate, raw control character, invalid UTF-8, unterminated). */
static const unsigned char *scan_string(const unsigned char *p, const unsigned char *end)
{
    for (;;) {
        while (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            if (swar_special(v))
                break;
            p += 8;
        }
        while (p < end && str_plain[*p])
            p++;
        if (p >= end)
            return NULL;
        unsigned char c = *p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c >= 0x80) {
            size_t n = utf8_seq(p, end);
            if (!n)
                return NULL;
            p += n;
            continue;
        }
        /* c == '\\' */
        if (end - p < 2)
            return NULL;
        switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            p += 2;
            break;
        case 'u': {
            unsigned cp, lo;
            if (read_u4(p + 2, end, &cp) < 0)
                return NULL;
            p += 6;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return NULL;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                    read_u4(p + 2, end, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                    return NULL;
                p += 6;
            }
            break;
        }
        default:
            return NULL;
        }
    }
}

static const unsigned char *scan_number(const unsigned char *p, const unsigned char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end)
        return NULL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && is_digit(*p))
            p++;
    } else {
        return NULL;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    return p;
}

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

/* Scans `"key" ws : ws` starting at p (which must be at the quote). */
static const unsigned char *scan_key_colon(const unsigned char *p, const unsigned char *end)
{
    if (p >= end || *p != '"')
        return NULL;
    p = scan_string(p + 1, end);
    if (!p)
        return NULL;
    p = skip_ws(p, end);
    if (p >= end || *p != ':')
        return NULL;
    return skip_ws(p + 1, end);
}

/* Scans one JSON value starting at p (no leading whitespace). Returns the
 * position just past it, or NULL on a syntax error or nesting beyond
 * SCAN_MAX_DEPTH. Sets *too_deep to 1 when it nests beyond
 * LK_CODEC_MAX_DEPTH, to 2 when it gives up at SCAN_MAX_DEPTH. */
static const unsigned char *scan_value(const unsigned char *p, const unsigned char *end,
                                       int *too_deep)
{
    /* Bit set = this level is an object. */
    uint64_t stack[SCAN_MAX_DEPTH / 64];
    unsigned depth = 0;

    for (;;) {
        /* Expecting a value. */
        if (p >= end)
            return NULL;
        switch (*p) {
        case '{':
        case '[': {
            int obj = *p == '{';
            if (depth == SCAN_MAX_DEPTH) {
                *too_deep = 2;
                return NULL;
            }
            if (obj)
                stack[depth / 64] |= 1ull << (depth % 64);
            else
                stack[depth / 64] &= ~(1ull << (depth % 64));
            depth++;
            if (depth > LK_CODEC_MAX_DEPTH)
                *too_deep = 1;
            p = skip_ws(p + 1, end);
            if (p < end && *p == (obj ? '}' : ']')) {
                depth--;
                p++;
                break;
            }
            if (obj) {
                p = scan_key_colon(p, end);
                if (!p)
                    return NULL;
            }
            continue;
        }
        case '"':
            p = scan_string(p + 1, end);
            break;
        case 't':
            if (end - p < 4 || memcmp(p, "true", 4) != 0)
                return NULL;
            p += 4;
            break;
        case 'f':
            if (end - p < 5 || memcmp(p, "false", 5) != 0)
                return NULL;
            p += 5;
            break;
        case 'n':
            if (end - p < 4 || memcmp(p, "null", 4) != 0)
                return NULL;
            p += 4;
            break;
        default:
            p = scan_number(p, end);
            break;
        }
        if (!p)
            return NULL;

        /* After a value: close containers until one wants another item. */
        for (;;) {
            if (depth == 0)
                return p;
            p = skip_ws(p, end);
            if (p >= end)
                return NULL;
            int obj = (stack[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1;
            if (*p == ',') {
                p = skip_ws(p + 1, end);
                if (obj) {
                    p = scan_key_colon(p, end);
                    if (!p)
                        return NULL;
                }
                break;
            }
            if (*p != (obj ? '}' : ']'))
                return NULL;
            depth--;
            p++;
        }
    }
}

/* ---- frame parser ----------------------------------------------------- */

enum field { F_OP, F_ID, F_CHANNEL, F_DATA, F_SINCE, F_TOKEN, F_COUNT, F_OTHER = F_COUNT };

/* Decodes a short escaped string (key or op value) into `buf`. Returns the
 * length, or -1 if it is longer than `cap` or decodes to anything but
 * ASCII: such a string cannot be one of ours. `s` is valid JSON. */
static int decode_short(const unsigned char *s, size_t len, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; o++) {
        if (o == cap)
            return -1;
        unsigned char c = s[i];
        if (c != '\\') {
            if (c >= 0x80)
                return -1;
            buf[o] = (char)c;
            i++;
            continue;
        }
        switch (s[i + 1]) {
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            unsigned cp;
            if (read_u4(s + i + 2, s + len, &cp) < 0 || cp >= 0x80)
                return -1;
            buf[o] = (char)cp;
            i += 6;
            continue;
        }
        default: c = s[i + 1]; break;
        }
        buf[o] = (char)c;
        i += 2;
    }
    return (int)o;
}

/* Unescaped text of a string token (quotes included in `p`/`len`); -1 if
 * it cannot be a short ASCII word. */
static int string_word(const unsigned char *p, size_t len, char *buf, size_t cap,
                       const char **word)
{
    const unsigned char *s = p + 1;
    size_t n = len - 2;
    if (!memchr(s, '\\', n)) {
        *word = (const char *)s;
        return n <= cap ? (int)n : -1;
    }
    *word = buf;
    return decode_short(s, n, buf, cap);
}

static enum field classify_key(const unsigned char *p, size_t len)
{
    char buf[8];
    const char *k;
    int n = string_word(p, len, buf, sizeof buf, &k);
    switch (n) {
    case 2:
        if (memcmp(k, "op", 2) == 0) return F_OP;
        if (memcmp(k, "id", 2) == 0) return F_ID;
        break;
    case 4:
        if (memcmp(k, "data", 4) == 0) return F_DATA;
        break;
    case 5:
        if (memcmp(k, "since", 5) == 0) return F_SINCE;
        if (memcmp(k, "token", 5) == 0) return F_TOKEN;
        break;
    case 7:
        if (memcmp(k, "channel", 7) == 0) return F_CHANNEL;
        break;
    default:
        break;
    }
    return F_OTHER;
}

static int classify_op(const unsigned char *p, size_t len, lk_op *op)
{
    char buf[12];
    const char *w;
    int n = string_word(p, len, buf, sizeof buf, &w);
    switch (n) {
    case 4:
        if (memcmp(w, "auth", 4) == 0) { *op = LK_OP_AUTH; return 0; }
        if (memcmp(w, "ping", 4) == 0) { *op = LK_OP_PING; return 0; }
        break;
    case 7:
        if (memcmp(w, "publish", 7) == 0) { *op = LK_OP_PUBLISH; return 0; }
        break;
    case 9:
        if (memcmp(w, "subscribe", 9) == 0) { *op = LK_OP_SUBSCRIBE; return 0; }
        break;
    case 11:
        if (memcmp(w, "unsubscribe", 11) == 0) { *op = LK_OP_UNSUBSCRIBE; return 0; }
        break;
    default:
        break;
    }
    return -1;
}

/* Reads a JSON integer literal (no fraction or exponent) into its sign and
 * magnitude. The token is already known to be a valid JSON value. */
static int int_literal(const unsigned char *p, size_t len, int *neg, uint64_t *mag)
{
    uint64_t v = 0;
    size_t i = 0;
    *neg = 0;
    if (len && p[0] == '-') {
        *neg = 1;
        i = 1;
    }
    if (i == len || !is_digit(p[i]) || len - i > INT64_DIGITS_MAX)
        return -1;
    for (; i < len; i++) {
        if (!is_digit(p[i]))
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *mag = v;
    return 0;
}

static lk_parse_rc fail(lk_parse_rc rc, const char *reason, char *why, size_t why_len)
{
    if (why && why_len) {
        size_t n = strlen(reason);
        if (n >= why_len)
            n = why_len - 1;
        memcpy(why, reason, n);
        why[n] = '\0';
    }
    return rc;
}

lk_parse_rc lk_codec_parse(const char *buf, size_t len, lk_request *req,
                           char *why, size_t why_len)
{
    lk_span f[F_COUNT] = {{0}};
    int too_deep = 0;

    memset(req, 0, sizeof *req);
    if (why && why_len)
        why[0] = '\0';
    if (!buf)
        return fail(LK_PARSE_PROTOCOL, "frame is not a JSON object", why, why_len);

    const unsigned char *p = (const unsigned char *)buf, *end = p + len;
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return fail(LK_PARSE_PROTOCOL, "frame is not a JSON object", why, why_len);
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (p >= end || *p != '"')
                goto bad_json;
            const unsigned char *k = p;
            p = scan_string(p + 1, end);
            if (!p)
                goto bad_json;
            enum field which = classify_key(k, (size_t)(p - k));
            p = skip_ws(p, end);
            if (p >= end || *p != ':')
                goto bad_json;
            p = skip_ws(p + 1, end);
            const unsigned char *v = p;
            p = scan_value(p, end, &too_deep);
            if (!p)
                goto bad_json;
            if (which != F_OTHER && !f[which].p) {
                f[which].p = (const char *)v;
                f[which].len = (size_t)(p - v);
            }
            p = skip_ws(p, end);
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            goto bad_json;
        }
    }
    p = skip_ws(p, end);
    if (p != end)
        return fail(LK_PARSE_PROTOCOL, "frame must hold exactly one JSON object",
                    why, why_len);

    /* The op decides everything else, so it is checked first. */
    if (!f[F_OP].p)
        return fail(LK_PARSE_PROTOCOL, "missing op", why, why_len);
    if (f[F_OP].p[0] != '"')
        return fail(LK_PARSE_PROTOCOL, "op must be a string", why, why_len);
    if (classify_op((const unsigned char *)f[F_OP].p, f[F_OP].len, &req->op) < 0)
        return fail(LK_PARSE_PROTOCOL, "unknown op", why, why_len);

    if (f[F_ID].p) {
        int neg;
        uint64_t mag;
        if (int_literal((const unsigned char *)f[F_ID].p, f[F_ID].len, &neg, &mag) < 0 ||
            mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
            return fail(LK_PARSE_BAD_REQUEST, "id must be a 64-bit integer", why, why_len);
        req->has_id = 1;
        req->id = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    }
    if (too_deep)
        return fail(LK_PARSE_BAD_REQUEST, "JSON nested too deeply", why, why_len);

    switch (req->op) {
    case LK_OP_SUBSCRIBE:
    case LK_OP_UNSUBSCRIBE:
    case LK_OP_PUBLISH: {
        lk_span c = f[F_CHANNEL];
        if (!c.p)
            return fail(LK_PARSE_BAD_REQUEST, "channel is required", why, why_len);
        if (c.p[0] != '"')
            return fail(LK_PARSE_BAD_REQUEST, "channel must be a string", why, why_len);
        if (!channel_valid((const unsigned char *)c.p + 1, c.len - 2))
            return fail(LK_PARSE_BAD_REQUEST,
                        "invalid channel name (1-200 of A-Z a-z 0-9 _ @ . : = -)",
                        why, why_len);
        req->channel.p = c.p + 1;
        req->channel.len = c.len - 2;
        break;
    }
    case LK_OP_AUTH: {
        lk_span t = f[F_TOKEN];
        if (!t.p)
            return fail(LK_PARSE_BAD_REQUEST, "token is required", why, why_len);
        if (t.p[0] != '"' || t.len == 2 || memchr(t.p + 1, '\\', t.len - 2))
            return fail(LK_PARSE_BAD_REQUEST,
                        "token must be a non-empty string without escapes", why, why_len);
        if (t.len - 2 > TOKEN_MAX_BYTES)
            return fail(LK_PARSE_BAD_REQUEST, "token too long", why, why_len);
        req->token.p = t.p + 1;
        req->token.len = t.len - 2;
        break;
    }
    case LK_OP_PING:
        break;
    }

    if (req->op == LK_OP_PUBLISH) {
        if (!f[F_DATA].p)
            return fail(LK_PARSE_BAD_REQUEST, "data is required", why, why_len);
        req->data = f[F_DATA];
    }
    if (req->op == LK_OP_SUBSCRIBE && f[F_SINCE].p) {
        int neg;
        uint64_t mag;
        if (int_literal((const unsigned char *)f[F_SINCE].p, f[F_SINCE].len, &neg, &mag) < 0 ||
            (neg && mag))
            return fail(LK_PARSE_BAD_REQUEST, "since must be a non-negative integer",
                        why, why_len);
        req->has_since = 1;
        req->since = mag;
    }
    return LK_PARSE_OK;

bad_json:
    return fail(LK_PARSE_PROTOCOL,
                too_deep == 2 ? "JSON nested too deeply" : "frame is not valid JSON",
                why, why_len);
}

/* ---- minify ----------------------------------------------------------- */

/* memmove rather than memcpy so that the caller may minify in place. */
size_t lk_codec_minify(const char *in, size_t len, char *out)
{
    size_t i = 0, o = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && !is_ws((unsigned char)in[run]) && in[run] != '"')
            run++;
        if (run < len && in[run] == '"') {
            run++;
            while (run < len && in[run] != '"')
                run += in[run] == '\\' ? 2 : 1;
            run = run < len ? run + 1 : len;
        }
        if (run > i) {
            if (out + o != in + i)
                memmove(out + o, in + i, run - i);
            o += run - i;
            i = run;
        }
        while (i < len && is_ws((unsigned char)in[i]))
            i++;
    }
    return o;
}

/* ---- writers ---------------------------------------------------------- */

size_t lk_codec_json_string(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = s ? p + len : p;
    size_t o = 0;

    if (!out || cap < 2)
        return 0;
    out[o++] = '"';
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && str_plain[*p])
            p++;
        size_t n = (size_t)(p - run);
        if (n) {
            if (n > cap - o)
                return 0;
            memcpy(out + o, run, n);
            o += n;
        }
        if (p >= end)
            break;
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            if (cap - o < 2)
                return 0;
            out[o++] = '\\';
            out[o++] = (char)c;
            p++;
        } else if (c < 0x20) {
            if (cap - o < 6)
                return 0;
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
            p++;
        } else {
            /* Invalid UTF-8 would make the whole text frame invalid and
             * every receiving browser drop the connection. */
            size_t k = utf8_seq(p, end);
            if (k) {
                if (cap - o < k)
                    return 0;
                memcpy(out + o, p, k);
                o += k;
                p += k;
            } else {
                if (cap - o < 6)
                    return 0;
                memcpy(out + o, "\\ufffd", 6);
                o += 6;
                p++;
            }
        }
    }
    if (cap - o < 1)
        return 0;
    out[o++] = '"';
    return o;
}

typedef struct wbuf {
    char *out;
    size_t cap, len;
    int ok;
} wbuf;

static void put(wbuf *w, const void *s, size_t n)
{
    if (!w->ok || n > w->cap - w->len) {
        w->ok = 0;
        return;
    }
    if (n) {
        memcpy(w->out + w->len, s, n);
        w->len += n;
    }
}

#define PUT_LIT(w, lit) put((w), (lit), sizeof(lit) - 1)

static void put_u64(wbuf *w, uint64_t v)
{
    char tmp[INT64_DIGITS_MAX];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(w, tmp + i, sizeof tmp - i);
}

static void put_i64(wbuf *w, int64_t v)
{
    if (v < 0) {
        PUT_LIT(w, "-");
        put_u64(w, 0 - (uint64_t)v);
    } else {
        put_u64(w, (uint64_t)v);
    }
}

static void put_jstr(wbuf *w, const char *s, size_t len)
{
    if (!w->ok)
        return;
    size_t n = lk_codec_json_string(w->out + w->len, w->cap - w->len, s, len);
    if (!n)
        w->ok = 0;
    w->len += n;
}

/* A C string as JSON, NULL as null. */
static void put_cstr(wbuf *w, const char *s)
{
    if (s)
        put_jstr(w, s, strlen(s));
    else
        PUT_LIT(w, "null");
}

static void put_op_id(wbuf *w, const char *head, size_t head_len, int has_id, int64_t id)
{
    put(w, head, head_len);
    if (has_id) {
        PUT_LIT(w, ",\"id\":");
        put_i64(w, id);
    }
}

/* The opening `{"op":"name"` of a frame and its length, for a literal op. */
#define OP_LIT(op) "{\"op\":\"" op "\"", sizeof("{\"op\":\"" op "\"") - 1
#define OP_HEAD(w, op, has_id, id) put_op_id((w), OP_LIT(op), (has_id), (id))

static size_t done(const wbuf *w)
{
    return w->ok ? w->len : 0;
}

/* A NULL buffer fails every write, without arithmetic on NULL. */
#define WBUF(out, cap) { (out), (out) ? (cap) : 0, 0, (out) != NULL }

size_t lk_codec_welcome(char *out, size_t cap, const char *conn_id,
                        const char *client_id, const char *workspace,
                        int64_t expires_at, int64_t server_time_ms,
                        size_t max_frame)
{
    wbuf w = WBUF(out, cap);
    PUT_LIT(&w, "{\"op\":\"welcome\",\"conn_id\":");
    put_cstr(&w, conn_id);
    PUT_LIT(&w, ",\"client_id\":");
    put_cstr(&w, client_id);
    PUT_LIT(&w, ",\"workspace\":");
    put_cstr(&w, workspace);
    PUT_LIT(&w, ",\"expires_at\":");
    put_i64(&w, expires_at);
    PUT_LIT(&w, ",\"server_time\":");
    put_i64(&w, server_time_ms);
    PUT_LIT(&w, ",\"max_frame\":");
    put_u64(&w, max_frame);
    PUT_LIT(&w, "}");
    return done(&w);
}

/* {"op":OP,"id":..,"channel":..,"seq":..}: `subscribed` and `ack` differ
 * only in their op. */
static size_t channel_seq_reply(char *out, size_t cap, const char *head,
                                size_t head_len, int has_id, int64_t id,
                                lk_span channel, uint64_t seq)
{
    wbuf w = WBUF(out, cap);
    put_op_id(&w, head, head_len, has_id, id);
    PUT_LIT(&w, ",\"channel\":");
    put_jstr(&w, channel.p, channel.len);
    PUT_LIT(&w, ",\"seq\":");
    put_u64(&w, seq);
    PUT_LIT(&w, "}");
    return done(&w);
}

size_t lk_codec_subscribed(char *out, size_t cap, int has_id, int64_t id,
                           lk_span channel, uint64_t seq)
{
    return channel_seq_reply(out, cap, OP_LIT("subscribed"), has_id, id, channel, seq);
}

size_t lk_codec_unsubscribed(char *out, size_t cap, int has_id, int64_t id,
                             lk_span channel, const char *reason)
{
    wbuf w = WBUF(out, cap);
    OP_HEAD(&w, "unsubscribed", has_id, id);
    PUT_LIT(&w, ",\"channel\":");
    put_jstr(&w, channel.p, channel.len);
    if (reason) {
        PUT_LIT(&w, ",\"reason\":");
        put_cstr(&w, reason);
    }
    PUT_LIT(&w, "}");
    return done(&w);
}

size_t lk_codec_ack(char *out, size_t cap, int has_id, int64_t id,
                    lk_span channel, uint64_t seq)
{
    return channel_seq_reply(out, cap, OP_LIT("ack"), has_id, id, channel, seq);
}

size_t lk_codec_authed(char *out, size_t cap, int has_id, int64_t id,
                       int64_t expires_at)
{
    wbuf w = WBUF(out, cap);
    OP_HEAD(&w, "authed", has_id, id);
    PUT_LIT(&w, ",\"expires_at\":");
    put_i64(&w, expires_at);
    PUT_LIT(&w, "}");
    return done(&w);
}

size_t lk_codec_pong(char *out, size_t cap, int has_id, int64_t id)
{
    wbuf w = WBUF(out, cap);
    OP_HEAD(&w, "pong", has_id, id);
    PUT_LIT(&w, "}");
    return done(&w);
}

size_t lk_codec_token_expiring(char *out, size_t cap, int64_t expires_in)
{
    wbuf w = WBUF(out, cap);
    PUT_LIT(&w, "{\"op\":\"token_expiring\",\"expires_in\":");
    put_i64(&w, expires_in);
    PUT_LIT(&w, "}");
    return done(&w);
}

size_t lk_codec_message(char *out, size_t cap, lk_span channel, uint64_t seq,
                        lk_span data, const char *from, int64_t ts_ms)
{
    wbuf w = WBUF(out, cap);
    PUT_LIT(&w, "{\"op\":\"message\",\"channel\":");
    put_jstr(&w, channel.p, channel.len);
    PUT_LIT(&w, ",\"seq\":");
    put_u64(&w, seq);
    PUT_LIT(&w, ",\"data\":");
    /* An empty span is not JSON; null keeps the frame well-formed. */
    if (data.len)
        put(&w, data.p, data.len);
    else
        PUT_LIT(&w, "null");
    PUT_LIT(&w, ",\"from\":");
    put_cstr(&w, from);
    PUT_LIT(&w, ",\"ts\":");
    put_i64(&w, ts_ms);
    PUT_LIT(&w, "}");
    return done(&w);
}

size_t lk_codec_error(char *out, size_t cap, int has_id, int64_t id,
                      const char *code, const char *message)
{
    wbuf w = WBUF(out, cap);
    OP_HEAD(&w, "error", has_id, id);
    PUT_LIT(&w, ",\"code\":");
    put_cstr(&w, code);
    PUT_LIT(&w, ",\"message\":");
    put_cstr(&w, message);
    PUT_LIT(&w, "}");
    return done(&w);
}
