/*
 * lg_proto.c - NATS and MQTT codecs, stream buffer, payload and JSON
 * look-ups for the load generator (see lg_proto.h).
 */
#define _GNU_SOURCE
#include "lg_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LG_STREAM_KEEP_CAP 65536 /* an emptied stream keeps a buffer up to this */
#define LG_NATS_MAX_ARGS 6

/* ---- NATS ---- */

static int is_blank(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* A decimal of 1..19 digits. */
static int parse_dec(const uint8_t *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

long lg_nats_parse(const uint8_t *buf, size_t len, size_t max_payload, lg_nats_msg *m)
{
    memset(m, 0, sizeof *m);
    size_t lim = len < LG_NATS_MAX_LINE ? len : LG_NATS_MAX_LINE;
    const uint8_t *nl = memchr(buf, '\n', lim);
    if (!nl)
        return len >= LG_NATS_MAX_LINE ? -1 : 0;
    size_t line = (size_t)(nl - buf);
    if (line == 0 || buf[line - 1] != '\r')
        return -1;
    line--;
    size_t used = line + 2;

    size_t oplen = 0;
    while (oplen < line && !is_blank(buf[oplen]))
        oplen++;
    const uint8_t *rest = buf + oplen;
    size_t rlen = line - oplen;
    while (rlen && is_blank(*rest)) {
        rest++;
        rlen--;
    }
#define OP_IS(s) (oplen == sizeof(s) - 1 && strncasecmp((const char *)buf, s, oplen) == 0)
    if (OP_IS("PING") || OP_IS("PONG") || OP_IS("+OK")) {
        m->type = OP_IS("PING") ? LG_NATS_PING : OP_IS("PONG") ? LG_NATS_PONG : LG_NATS_OK;
        return (long)used;
    }
    if (OP_IS("INFO") || OP_IS("-ERR")) {
        m->type = OP_IS("INFO") ? LG_NATS_INFO : LG_NATS_ERR;
        m->payload = rest;
        m->payload_len = rlen;
        return (long)used;
    }
    int hmsg = OP_IS("HMSG");
    if (!hmsg && !OP_IS("MSG"))
        return -1;
#undef OP_IS

    /* MSG <subject> <sid> [reply-to] <#bytes>
     * HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes> */
    const uint8_t *arg[LG_NATS_MAX_ARGS];
    size_t alen[LG_NATS_MAX_ARGS];
    int na = 0;
    size_t i = 0;
    while (i < rlen) {
        if (is_blank(rest[i])) {
            i++;
            continue;
        }
        if (na == LG_NATS_MAX_ARGS)
            return -1;
        arg[na] = rest + i;
        while (i < rlen && !is_blank(rest[i]))
            i++;
        alen[na] = (size_t)(rest + i - arg[na]);
        na++;
    }
    int want = hmsg ? 4 : 3;
    if (na != want && na != want + 1)
        return -1;
    uint64_t sid, total, hdr = 0;
    if (parse_dec(arg[1], alen[1], &sid) < 0 || parse_dec(arg[na - 1], alen[na - 1], &total) < 0)
        return -1;
    if (hmsg && (parse_dec(arg[na - 2], alen[na - 2], &hdr) < 0 || hdr > total))
        return -1;
    if (total > max_payload)
        return -1;
    if (len - used < total + 2)
        return 0;
    if (buf[used + total] != '\r' || buf[used + total + 1] != '\n')
        return -1;
    m->type = LG_NATS_MSG;
    m->subject = (const char *)arg[0];
    m->subject_len = alen[0];
    m->sid = sid;
    m->payload = buf + used + hdr;
    m->payload_len = (size_t)(total - hdr);
    return (long)(used + total + 2);
}

/* ---- MQTT ---- */

long lg_mqtt_parse(const uint8_t *buf, size_t len, size_t max_packet, lg_mqtt_pkt *p)
{
    memset(p, 0, sizeof *p);
    if (len < 2)
        return 0;
    p->type = buf[0] >> 4;
    p->flags = buf[0] & 0x0f;
    if (p->type == 0 || p->type == 15)
        return -1;
    size_t rl = 0, i;
    for (i = 1;; i++) {
        if (i > 4)
            return -1; /* a fifth length byte */
        if (i >= len)
            return 0;
        rl |= (size_t)(buf[i] & 0x7f) << (7 * (i - 1));
        if (!(buf[i] & 0x80))
            break;
    }
    size_t h = i + 1;
    if (rl > max_packet)
        return -1;
    if (len - h < rl)
        return 0;
    const uint8_t *b = buf + h;
    p->body = b;
    p->body_len = rl;
    switch (p->type) {
    case LG_MQTT_PUBLISH: {
        p->qos = (p->flags >> 1) & 3;
        if (p->qos == 3 || rl < 2)
            return -1;
        size_t tl = (size_t)b[0] << 8 | b[1];
        size_t off = 2 + tl + (p->qos ? 2 : 0);
        if (tl == 0 || off > rl)
            return -1;
        p->topic = b + 2;
        p->topic_len = tl;
        p->payload = b + off;
        p->payload_len = rl - off;
        break;
    }
    case LG_MQTT_CONNACK:
        if (rl != 2)
            return -1;
        break;
    case LG_MQTT_SUBACK:
        if (rl < 3)
            return -1;
        break;
    case LG_MQTT_PINGRESP:
        if (rl != 0)
            return -1;
        break;
    default:
        break;
    }
    return (long)(h + rl);
}

#define LG_MQTT_MAX_REMAINING 268435455u

/* Writes the fixed header; returns its length, or 0 if it cannot fit with
 * `rl` more bytes. */
static size_t mqtt_header(uint8_t *out, size_t cap, uint8_t first, size_t rl)
{
    uint8_t h[LG_MQTT_MAX_HEADER];
    size_t n = 0, v = rl;
    if (rl > LG_MQTT_MAX_REMAINING)
        return 0;
    h[n++] = first;
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        h[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    if (cap < n || cap - n < rl)
        return 0;
    memcpy(out, h, n);
    return n;
}

static uint8_t *put16(uint8_t *o, size_t v)
{
    o[0] = (uint8_t)(v >> 8);
    o[1] = (uint8_t)v;
    return o + 2;
}

size_t lg_mqtt_connect(uint8_t *out, size_t cap, const char *client_id, unsigned keepalive_s)
{
    size_t idl = strlen(client_id);
    if (idl > 65535 || keepalive_s > 65535)
        return 0;
    size_t rl = 10 + 2 + idl;
    size_t h = mqtt_header(out, cap, LG_MQTT_CONNECT << 4, rl);
    if (!h)
        return 0;
    uint8_t *o = out + h;
    o = put16(o, 4);
    memcpy(o, "MQTT", 4);
    o += 4;
    *o++ = 4;    /* protocol level 3.1.1 */
    *o++ = 0x02; /* clean session, no will, no credentials */
    o = put16(o, keepalive_s);
    o = put16(o, idl);
    memcpy(o, client_id, idl);
    return h + rl;
}

size_t lg_mqtt_subscribe(uint8_t *out, size_t cap, unsigned packet_id, const char *const *topics,
                         int n)
{
    size_t rl = 2;
    if (packet_id == 0 || packet_id > 65535 || n < 1)
        return 0;
    for (int i = 0; i < n; i++) {
        size_t tl = strlen(topics[i]);
        if (tl == 0 || tl > 65535)
            return 0;
        rl += 2 + tl + 1;
    }
    size_t h = mqtt_header(out, cap, LG_MQTT_SUBSCRIBE << 4 | 0x2, rl);
    if (!h)
        return 0;
    uint8_t *o = put16(out + h, packet_id);
    for (int i = 0; i < n; i++) {
        size_t tl = strlen(topics[i]);
        o = put16(o, tl);
        memcpy(o, topics[i], tl);
        o += tl;
        *o++ = 0; /* QoS 0 */
    }
    return h + rl;
}

size_t lg_mqtt_publish(uint8_t *out, size_t cap, const char *topic, size_t topic_len,
                       const void *payload, size_t len)
{
    if (topic_len == 0 || topic_len > 65535 || len > LG_MQTT_MAX_REMAINING)
        return 0;
    size_t rl = 2 + topic_len + len;
    size_t h = mqtt_header(out, cap, LG_MQTT_PUBLISH << 4, rl);
    if (!h)
        return 0;
    uint8_t *o = put16(out + h, topic_len);
    memcpy(o, topic, topic_len);
    memcpy(o + topic_len, payload, len);
    return h + rl;
}

size_t lg_mqtt_pingreq(uint8_t *out, size_t cap)
{
    if (cap < 2)
        return 0;
    out[0] = LG_MQTT_PINGREQ << 4;
    out[1] = 0;
    return 2;
}

/* ---- stream buffer ---- */

void lg_stream_free(lg_stream *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}

static int stream_reserve(lg_stream *s, size_t need)
{
    if (need <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 1024;
    while (cap < need)
        cap *= 2;
    uint8_t *b = realloc(s->buf, cap);
    if (!b)
        return -1;
    s->buf = b;
    s->cap = cap;
    return 0;
}

typedef long (*parse_fn)(const uint8_t *buf, size_t len, size_t max, void *msg);

/* The caller's typed callback. */
typedef struct feeder {
    lg_nats_cb nats;
    lg_mqtt_cb mqtt;
    void *ud;
} feeder;

static long parse_nats(const uint8_t *buf, size_t len, size_t max, void *msg)
{
    return lg_nats_parse(buf, len, max, msg);
}

static long parse_mqtt(const uint8_t *buf, size_t len, size_t max, void *msg)
{
    return lg_mqtt_parse(buf, len, max, msg);
}

static int deliver(const feeder *f, const void *msg)
{
    return f->nats ? f->nats(f->ud, msg) : f->mqtt(f->ud, msg);
}

/* Parses in place when nothing is kept (the usual case: servers end
 * frames on message boundaries), else appends to the kept tail first. */
static int stream_feed(lg_stream *s, const uint8_t *p, size_t len, size_t max, size_t keep_max,
                       parse_fn parse, void *msg, const feeder *f)
{
    const uint8_t *buf = p;
    size_t have = len, off = 0;
    int rc = 0;
    if (s->len) {
        if (len > SIZE_MAX / 2 - s->len || stream_reserve(s, s->len + len) < 0)
            return -1;
        memcpy(s->buf + s->len, p, len);
        s->len += len;
        buf = s->buf;
        have = s->len;
    }
    while (off < have) {
        long n = parse(buf + off, have - off, max, msg);
        if (n <= 0) {
            rc = n < 0 ? -1 : 0;
            break;
        }
        off += (size_t)n;
        if (deliver(f, msg)) {
            rc = 1;
            break;
        }
    }
    size_t left = have - off;
    if (rc != 0 || left > keep_max) {
        s->len = 0;
        return rc != 0 ? rc : -1;
    }
    if (buf == s->buf) {
        memmove(s->buf, s->buf + off, left);
        s->len = left;
    } else if (left) {
        if (stream_reserve(s, left) < 0)
            return -1;
        memcpy(s->buf, p + off, left);
        s->len = left;
    }
    if (s->len == 0 && s->cap > LG_STREAM_KEEP_CAP)
        lg_stream_free(s);
    return 0;
}

int lg_nats_feed(lg_stream *s, const uint8_t *p, size_t len, size_t max_payload, lg_nats_cb cb,
                 void *ud)
{
    lg_nats_msg m;
    feeder f = {.nats = cb, .ud = ud};
    return stream_feed(s, p, len, max_payload, max_payload + LG_NATS_MAX_LINE + 2, parse_nats,
                       &m, &f);
}

int lg_mqtt_feed(lg_stream *s, const uint8_t *p, size_t len, size_t max_packet, lg_mqtt_cb cb,
                 void *ud)
{
    lg_mqtt_pkt m;
    feeder f = {.mqtt = cb, .ud = ud};
    return stream_feed(s, p, len, max_packet, max_packet + LG_MQTT_MAX_HEADER, parse_mqtt, &m,
                       &f);
}

/* ---- names ---- */

static const char *const proto_names[] = {"latchkey", "nats", "mqtt", "raw"};

const char *lg_proto_name(int proto)
{
    return proto >= 0 && proto <= LG_PROTO_RAW ? proto_names[proto] : "?";
}

int lg_proto_parse(const char *s)
{
    for (int i = 0; i <= LG_PROTO_RAW; i++)
        if (strcmp(s, proto_names[i]) == 0)
            return i;
    return -1;
}

size_t lg_proto_map_channel(int proto, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    if (n + 1 > cap)
        return 0;
    char sep = proto == LG_PROTO_NATS ? '.' : proto == LG_PROTO_MQTT ? '/' : ':';
    for (size_t i = 0; i < n; i++)
        out[i] = name[i] == ':' ? sep : name[i];
    out[n] = '\0';
    return n;
}

/* ---- payload ---- */

size_t lg_payload_make(char *out, size_t size, int64_t t, uint32_t n, int id)
{
    char head[96];
    int h = snprintf(head, sizeof head, "{\"t\":%lld,\"n\":%u,\"i\":%d,\"p\":\"", (long long)t, n,
                     id);
    if (h < 0 || (size_t)h + 2 > size)
        return 0;
    size_t pad = size - (size_t)h - 2;
    memcpy(out, head, (size_t)h);
    memset(out + h, 'x', pad);
    memcpy(out + (size_t)h + pad, "\"}", 2);
    return size;
}

/* Parses the digits at *s (advancing it) up to `e`. */
static int parse_digits(const char **s, const char *e, uint64_t *out)
{
    const char *q = *s;
    uint64_t v = 0;
    int digits = 0;
    while (q < e && *q >= '0' && *q <= '9' && digits < 19) {
        v = v * 10 + (uint64_t)(*q - '0');
        q++;
        digits++;
    }
    if (!digits)
        return -1;
    *s = q;
    *out = v;
    return 0;
}

/* Skips `lit` at *s if it is there. */
static int skip(const char **s, const char *e, const char *lit, size_t n)
{
    if ((size_t)(e - *s) < n || memcmp(*s, lit, n) != 0)
        return -1;
    *s += n;
    return 0;
}

int lg_payload_parse(const char *p, size_t len, lg_payload *out)
{
    const char *q = p, *e = p + len;
    /* Fast path: the payload as the publisher wrote it. */
    if (skip(&q, e, "{\"t\":", 5) == 0 && parse_digits(&q, e, &out->t) == 0 &&
        skip(&q, e, ",\"n\":", 5) == 0 && parse_digits(&q, e, &out->n) == 0 &&
        skip(&q, e, ",\"i\":", 5) == 0 && parse_digits(&q, e, &out->id) == 0)
        return 0;
    return lg_json_uint(p, len, "\"t\"", 3, &out->t) == 0 &&
                   lg_json_uint(p, len, "\"n\"", 3, &out->n) == 0 &&
                   lg_json_uint(p, len, "\"i\"", 3, &out->id) == 0
               ? 0
               : -1;
}

/* ---- JSON look-ups ---- */

static const char *skip_ws(const char *s, const char *e)
{
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
        s++;
    return s;
}

const char *lg_json_member(const char *p, size_t len, const char *qkey, size_t klen)
{
    const char *e = p + len, *s = p;
    while ((s = memmem(s, (size_t)(e - s), qkey, klen))) {
        const char *v = skip_ws(s + klen, e);
        if (v < e && *v == ':') {
            v = skip_ws(v + 1, e);
            return v < e ? v : NULL;
        }
        s += klen;
    }
    return NULL;
}

int lg_json_str(const char *p, size_t len, const char *qkey, size_t klen, const char **v,
                size_t *vlen)
{
    const char *s = lg_json_member(p, len, qkey, klen);
    if (!s || *s != '"')
        return -1;
    s++;
    const char *e = memchr(s, '"', len - (size_t)(s - p));
    if (!e)
        return -1;
    *v = s;
    *vlen = (size_t)(e - s);
    return 0;
}

int lg_json_uint(const char *p, size_t len, const char *qkey, size_t klen, uint64_t *out)
{
    const char *s = lg_json_member(p, len, qkey, klen);
    return s ? parse_digits(&s, p + len, out) : -1;
}
