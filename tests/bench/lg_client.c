/*
 * lg_client.c - latchkey, NATS, MQTT and raw clients for the load
 * generator (see lg_client.h).
 */
#define _GNU_SOURCE
#include "lg_client.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LG_CHANNEL_CHARS                                                                      \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@.:=-"

/* ---- channel names ---- */

int lg_client_valid_channel(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n <= LG_MAX_CHANNEL && strspn(name, LG_CHANNEL_CHARS) == n;
}

size_t lg_client_pattern_name(const char *pattern, long idx, char *out, size_t cap)
{
    const char *d = strstr(pattern, "%d");
    if (!d)
        return 0;
    int n = snprintf(out, cap, "%.*s%ld%s", (int)(d - pattern), pattern, idx, d + 2);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

int lg_client_check_pattern(const char *pattern)
{
    const char *d = strstr(pattern, "%d");
    if (!d || strchr(pattern, '%') != d || strchr(d + 2, '%'))
        return -1;
    char name[LG_MAX_CHANNEL + 2];
    /* The widest index a process can reach. */
    return lg_client_pattern_name(pattern, 9999999999L, name, sizeof name) &&
                   lg_client_valid_channel(name)
               ? 0
               : -1;
}

/* The connection's own channel (Latchkey form). */
static size_t own_channel(const lg_client *cl, const lg_net *net, const lg_conn *c, char *out,
                          size_t cap)
{
    if (cl->pattern)
        return lg_client_pattern_name(cl->pattern, (long)cl->offset + (c - net->conns), out,
                                      cap);
    int n = snprintf(out, cap, "%s", cl->channel);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static int has_shared(const lg_client *cl)
{
    return cl->pattern && cl->shared;
}

static void fail(lg_net *net, lg_conn *c, const char *prefix, const char *what, size_t len)
{
    char why[48];
    snprintf(why, sizeof why, "%s%.*s", prefix, (int)(len > 30 ? 30 : len), what);
    lg_conn_mark_dead(net, c, why);
}

static void deliver(lg_client *cl, lg_net *net, lg_conn *c, int kind, const char *p, size_t len)
{
    if (c->state == LG_CS_READY && cl->subscribe)
        cl->deliver(net, c, kind, p, len);
}

/* The delivery's kind from the channel it came on. */
static int kind_of(const lg_client *cl, const char *ch, size_t len)
{
    return has_shared(cl) && len == cl->shared_len && memcmp(ch, cl->shared_name, len) == 0
               ? LG_KIND_SHARED
               : LG_KIND_OWN;
}

/* ---- latchkey ---- */

#define LG_MSG_PREFIX "{\"op\":\"message\","
#define LG_MSG_PREFIX_LEN (sizeof LG_MSG_PREFIX - 1)

static void latchkey_message(lg_client *cl, lg_net *net, lg_conn *c, const char *p, size_t len)
{
    static const char chan[] = "\"channel\":\"";
    const char *ch = NULL, *d;
    size_t chl = 0;
    int kind = LG_KIND_OWN;
    if (has_shared(cl)) {
        /* The broker writes the channel right after the op. */
        const char *q = p + LG_MSG_PREFIX_LEN;
        if (len > LG_MSG_PREFIX_LEN + sizeof chan &&
            memcmp(p, LG_MSG_PREFIX, LG_MSG_PREFIX_LEN) == 0 &&
            memcmp(q, chan, sizeof chan - 1) == 0) {
            ch = q + sizeof chan - 1;
            const char *e = memchr(ch, '"', (size_t)(p + len - ch));
            chl = e ? (size_t)(e - ch) : 0;
            if (!e)
                ch = NULL;
        }
        if (!ch && lg_json_str(p, len, "\"channel\"", 9, &ch, &chl) < 0)
            ch = NULL;
        if (ch)
            kind = kind_of(cl, ch, chl);
    }
    d = lg_json_member(p, len, "\"data\"", 6);
    if (!d || *d != '{') {
        deliver(cl, net, c, kind, "", 0);
        return;
    }
    /* The publisher's payload has no nested object: it ends at the first '}'. */
    const char *e = memchr(d, '}', len - (size_t)(d - p));
    deliver(cl, net, c, kind, d, e ? (size_t)(e + 1 - d) : 0);
}

static void latchkey_subscribe(lg_client *cl, lg_net *net, lg_conn *c)
{
    char name[LG_MAX_CHANNEL + 1], req[2 * LG_MAX_CHANNEL + 200];
    int n = 0;
    if (!own_channel(cl, net, c, name, sizeof name)) {
        lg_conn_mark_dead(net, c, "channel_name");
        return;
    }
    n = snprintf(req, sizeof req, "{\"op\":\"subscribe\",\"id\":1,\"channel\":\"%s\"}", name);
    c->state = LG_CS_SUBSCRIBING;
    c->waiting = 1;
    if (lg_conn_queue_frame(net, c, LG_WS_TEXT, req, (size_t)n) < 0)
        return;
    if (has_shared(cl)) {
        n = snprintf(req, sizeof req, "{\"op\":\"subscribe\",\"id\":2,\"channel\":\"%s\"}",
                     cl->channel);
        c->waiting = 2;
        if (lg_conn_queue_frame(net, c, LG_WS_TEXT, req, (size_t)n) < 0)
            return;
    }
    lg_conn_flush(net, c);
}

static void latchkey_line(lg_client *cl, lg_net *net, lg_conn *c, const char *p, size_t len)
{
    const char *op, *code;
    size_t oplen, codelen;
    /* Deliveries are nearly all the traffic: recognise them first. */
    if (len > LG_MSG_PREFIX_LEN && memcmp(p, LG_MSG_PREFIX, LG_MSG_PREFIX_LEN) == 0) {
        latchkey_message(cl, net, c, p, len);
        return;
    }
    if (lg_json_str(p, len, "\"op\"", 4, &op, &oplen) < 0) {
        lg_tally_str(cl->errors, "unparsed_frame");
        return;
    }
#define OP_IS(s) (oplen == sizeof(s) - 1 && memcmp(op, s, oplen) == 0)
    if (OP_IS("message")) {
        latchkey_message(cl, net, c, p, len);
    } else if (OP_IS("welcome")) {
        if (c->state != LG_CS_GREETING)
            return;
        if (cl->subscribe)
            latchkey_subscribe(cl, net, c);
        else
            lg_conn_set_ready(net, c);
    } else if (OP_IS("subscribed")) {
        if (c->state == LG_CS_SUBSCRIBING && c->waiting && --c->waiting == 0)
            lg_conn_set_ready(net, c);
    } else if (OP_IS("error")) {
        if (lg_json_str(p, len, "\"code\"", 6, &code, &codelen) < 0) {
            code = "unknown";
            codelen = 7;
        }
        lg_tally_add(cl->errors, code, codelen);
        if (c->state == LG_CS_SUBSCRIBING)
            fail(net, c, "subscribe_", code, codelen);
    }
#undef OP_IS
}

/* ---- raw ---- */

static void raw_line(lg_client *cl, lg_net *net, lg_conn *c, const char *p, size_t len)
{
    const char *sp = memchr(p, ' ', len);
    if (!sp) {
        lg_tally_str(cl->errors, "unparsed_line");
        return;
    }
    size_t chl = (size_t)(sp - p);
    deliver(cl, net, c, kind_of(cl, p, chl), sp + 1, len - chl - 1);
}

static size_t raw_path(lg_net *net, const lg_conn *c, char *out, size_t cap)
{
    lg_client *cl = net->ud;
    char name[LG_MAX_CHANNEL + 1];
    if (!own_channel(cl, net, c, name, sizeof name))
        return 0;
    int n = snprintf(out, cap, "/sub/%s%s%s", name, has_shared(cl) ? "," : "",
                     has_shared(cl) ? cl->channel : "");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* ---- NATS ---- */

typedef struct reading {
    lg_client *cl;
    lg_net *net;
    lg_conn *c;
} reading;

static void nats_start(lg_client *cl, lg_net *net, lg_conn *c)
{
    static const char connect[] =
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"echo\":false}\r\n";
    char req[sizeof connect + 2 * LG_MAX_CHANNEL + 64], name[LG_MAX_CHANNEL + 1],
        subj[LG_MAX_CHANNEL + 1];
    size_t n = sizeof connect - 1;
    memcpy(req, connect, n);
    if (cl->subscribe) {
        if (!own_channel(cl, net, c, name, sizeof name) ||
            !lg_proto_map_channel(LG_PROTO_NATS, name, subj, sizeof subj)) {
            lg_conn_mark_dead(net, c, "channel_name");
            return;
        }
        n += (size_t)snprintf(req + n, sizeof req - n, "SUB %s 1\r\n", subj);
        if (has_shared(cl))
            n += (size_t)snprintf(req + n, sizeof req - n, "SUB %s 2\r\n", cl->shared_name);
    }
    n += (size_t)snprintf(req + n, sizeof req - n, "PING\r\n");
    c->state = LG_CS_SUBSCRIBING;
    lg_conn_send(net, c, LG_WS_BINARY, req, n);
}

static int nats_msg(void *ud, const lg_nats_msg *m)
{
    reading *r = ud;
    lg_conn *c = r->c;
    switch (m->type) {
    case LG_NATS_MSG:
        deliver(r->cl, r->net, c, m->sid == 2 ? LG_KIND_SHARED : LG_KIND_OWN,
                (const char *)m->payload, m->payload_len);
        break;
    case LG_NATS_INFO:
        if (c->state == LG_CS_GREETING)
            nats_start(r->cl, r->net, c);
        break;
    case LG_NATS_PING:
        lg_conn_send(r->net, c, LG_WS_BINARY, "PONG\r\n", 6);
        break;
    case LG_NATS_PONG:
        if (c->state == LG_CS_SUBSCRIBING)
            lg_conn_set_ready(r->net, c);
        break;
    case LG_NATS_ERR: {
        const char *t = (const char *)m->payload;
        size_t tl = m->payload_len;
        if (tl >= 2 && t[0] == '\'' && t[tl - 1] == '\'') {
            t++;
            tl -= 2;
        }
        char name[40];
        snprintf(name, sizeof name, "nats_%.*s", (int)(tl > 30 ? 30 : tl), t);
        lg_tally_str(r->cl->errors, name);
        if (lg_conn_in_handshake(c))
            fail(r->net, c, "nats_", t, tl);
        break;
    }
    default:
        break;
    }
    return c->state == LG_CS_DEAD;
}

/* ---- MQTT ---- */

static void mqtt_connect(lg_client *cl, lg_net *net, lg_conn *c)
{
    char id[48];
    uint8_t pkt[96];
    snprintf(id, sizeof id, "lg-%d-%ld", cl->pid, (long)(c - net->conns));
    size_t n = lg_mqtt_connect(pkt, sizeof pkt, id, LG_MQTT_KEEPALIVE_S);
    lg_conn_send(net, c, LG_WS_BINARY, pkt, n);
}

static void mqtt_subscribe(lg_client *cl, lg_net *net, lg_conn *c)
{
    char name[LG_MAX_CHANNEL + 1], topic[LG_MAX_CHANNEL + 1];
    uint8_t pkt[2 * LG_MAX_CHANNEL + 32];
    if (!own_channel(cl, net, c, name, sizeof name) ||
        !lg_proto_map_channel(LG_PROTO_MQTT, name, topic, sizeof topic)) {
        lg_conn_mark_dead(net, c, "channel_name");
        return;
    }
    const char *topics[2] = {topic, cl->shared_name};
    size_t n = lg_mqtt_subscribe(pkt, sizeof pkt, 1, topics, has_shared(cl) ? 2 : 1);
    c->state = LG_CS_SUBSCRIBING;
    lg_conn_send(net, c, LG_WS_BINARY, pkt, n);
}

static int mqtt_packet(void *ud, const lg_mqtt_pkt *p)
{
    reading *r = ud;
    lg_conn *c = r->c;
    switch (p->type) {
    case LG_MQTT_PUBLISH:
        if (p->qos)
            lg_tally_str(r->cl->errors, "mqtt_qos_above_0");
        deliver(r->cl, r->net, c, kind_of(r->cl, (const char *)p->topic, p->topic_len),
                (const char *)p->payload, p->payload_len);
        break;
    case LG_MQTT_CONNACK:
        if (c->state != LG_CS_GREETING)
            break;
        if (p->body[1] != 0) {
            char why[24];
            snprintf(why, sizeof why, "connack_%u", p->body[1]);
            lg_conn_mark_dead(r->net, c, why);
        } else if (r->cl->subscribe) {
            mqtt_subscribe(r->cl, r->net, c);
        } else {
            lg_conn_set_ready(r->net, c);
        }
        break;
    case LG_MQTT_SUBACK: {
        if (c->state != LG_CS_SUBSCRIBING)
            break;
        size_t want = has_shared(r->cl) ? 2 : 1;
        int ok = p->body_len == 2 + want && p->body[0] == 0 && p->body[1] == 1;
        for (size_t i = 2; ok && i < p->body_len; i++)
            ok = p->body[i] != 0x80;
        if (ok)
            lg_conn_set_ready(r->net, c);
        else
            lg_conn_mark_dead(r->net, c, "suback_refused");
        break;
    }
    default:
        break;
    }
    return c->state == LG_CS_DEAD;
}

/* ---- hooks ---- */

static void on_open(lg_net *net, lg_conn *c)
{
    lg_client *cl = net->ud;
    if (cl->proto == LG_PROTO_MQTT)
        mqtt_connect(cl, net, c);
    else if (cl->proto == LG_PROTO_RAW)
        lg_conn_set_ready(net, c);
}

static void on_message(lg_net *net, lg_conn *c, int opcode, const uint8_t *p, size_t len)
{
    lg_client *cl = net->ud;
    reading r = {cl, net, c};
    int rc;
    switch (cl->proto) {
    case LG_PROTO_NATS:
        rc = lg_nats_feed(&c->st, p, len, LG_MAX_MESSAGE, nats_msg, &r);
        if (rc < 0)
            lg_conn_mark_dead(net, c, "nats_protocol_error");
        return;
    case LG_PROTO_MQTT:
        rc = lg_mqtt_feed(&c->st, p, len, LG_MAX_MESSAGE, mqtt_packet, &r);
        if (rc < 0)
            lg_conn_mark_dead(net, c, "mqtt_protocol_error");
        return;
    default:
        break;
    }
    if (opcode != LG_WS_TEXT) {
        lg_tally_str(cl->errors, "binary_frame");
        return;
    }
    /* Servers may pack several messages into one frame. */
    const char *s = (const char *)p, *end = s + len;
    while (s < end && c->state != LG_CS_DEAD) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *le = nl ? nl : end;
        if (le > s) {
            if (cl->proto == LG_PROTO_LATCHKEY)
                latchkey_line(cl, net, c, s, (size_t)(le - s));
            else
                raw_line(cl, net, c, s, (size_t)(le - s));
        }
        s = le + 1;
    }
}

void lg_client_attach(lg_client *cl, lg_net *net, const char *token)
{
    static const char *const paths[] = {"/v1/realtime", "/", "/mqtt", "/"};
    cl->pid = (int)getpid();
    cl->shared_len = lg_proto_map_channel(cl->proto, cl->channel, cl->shared_name,
                                          sizeof cl->shared_name);
    net->ud = cl;
    net->on_open = on_open;
    net->on_message = on_message;
    net->subprotocol = cl->proto == LG_PROTO_LATCHKEY ? "latchkey.v1"
                       : cl->proto == LG_PROTO_MQTT   ? "mqtt"
                                                      : NULL;
    net->token = cl->proto == LG_PROTO_LATCHKEY ? token : NULL;
    if (!net->path)
        net->path = paths[cl->proto];
    if (cl->proto == LG_PROTO_RAW && cl->subscribe)
        net->path_for = raw_path;
}

size_t lg_client_publish(const lg_client *cl, const char *name, const char *payload, size_t plen,
                         uint8_t *out, size_t cap, int *opcode)
{
    char mapped[LG_MAX_CHANNEL + 1];
    size_t ml = lg_proto_map_channel(cl->proto, name, mapped, sizeof mapped);
    int h;
    if (!ml)
        return 0;
    switch (cl->proto) {
    case LG_PROTO_NATS:
        *opcode = LG_WS_BINARY;
        h = snprintf((char *)out, cap, "PUB %s %zu\r\n", mapped, plen);
        if (h < 0 || (size_t)h + plen + 2 > cap)
            return 0;
        memcpy(out + h, payload, plen);
        memcpy(out + (size_t)h + plen, "\r\n", 2);
        return (size_t)h + plen + 2;
    case LG_PROTO_MQTT:
        *opcode = LG_WS_BINARY;
        return lg_mqtt_publish(out, cap, mapped, ml, payload, plen);
    case LG_PROTO_RAW:
        *opcode = LG_WS_TEXT;
        h = snprintf((char *)out, cap, "%s ", mapped);
        break;
    default:
        *opcode = LG_WS_TEXT;
        h = snprintf((char *)out, cap, "{\"op\":\"publish\",\"channel\":\"%s\",\"data\":", mapped);
        break;
    }
    int close = cl->proto == LG_PROTO_LATCHKEY;
    if (h < 0 || (size_t)h + plen + (size_t)close > cap)
        return 0;
    memcpy(out + h, payload, plen);
    if (close)
        out[(size_t)h + plen] = '}';
    return (size_t)h + plen + (size_t)close;
}

void lg_client_keepalive(lg_client *cl, lg_net *net, lg_conn *c)
{
    uint8_t ping[2];
    if (cl->proto == LG_PROTO_MQTT && c->state == LG_CS_READY)
        lg_conn_send(net, c, LG_WS_BINARY, ping, lg_mqtt_pingreq(ping, sizeof ping));
}
