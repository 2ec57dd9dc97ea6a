/* prelude.c - the first look at each connection: WebSocket upgrades go
 * to lws (a bearer subprotocol moved into Authorization), everything else
 * through the request gate (see prelude.h). */
#include "prelude.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

typedef struct lk_gate lk_gate;

enum { SIDE_CLIENT = 0, SIDE_PIPE };

/* Per-wsi data of LK_PROTO_PRELUDE: the client's socket, or the gate's
 * end of the socketpair to lws. */
typedef struct lk_prelude {
    int side;
    struct lws *wsi;
    lk_broker *b;
    char *head;                   /* the first head while it is incomplete */
    size_t head_len;
    int handed_off;               /* lws's HTTP server owns the socket count */
    int done;
    lk_gate *gate;
} lk_prelude;

size_t lk_prelude_conn_size(void)
{
    return sizeof(lk_prelude);
}

size_t lk_prelude_head_end(const char *buf, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' &&
            buf[i - 3] == '\r')
            return i + 1;
    return 0;
}

static const char PROTO_NAME[] = "sec-websocket-protocol";
static const char AUTH_NAME[] = "authorization";
static const char BEARER[] = "bearer.";

typedef struct line {
    const char *p;
    size_t len;          /* without the CRLF */
} line;

/* Next CRLF-terminated line at *pos within [0, end); 0 at the blank line
 * or the end. */
static int next_line(const char *in, size_t end, size_t *pos, line *l)
{
    size_t i = *pos;
    while (i + 1 < end && !(in[i] == '\r' && in[i + 1] == '\n'))
        i++;
    if (i + 1 >= end)
        return 0;
    l->p = in + *pos;
    l->len = i - *pos;
    *pos = i + 2;
    return l->len != 0;
}

static int header_is(const line *l, const char *name, size_t nlen,
                     const char **val, size_t *vlen)
{
    if (l->len <= nlen || l->p[nlen] != ':' || strncasecmp(l->p, name, nlen) != 0)
        return 0;
    const char *v = l->p + nlen + 1, *e = l->p + l->len;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *val = v;
    *vlen = (size_t)(e - v);
    return 1;
}

/* Walks the comma-separated items of a header value. */
static int next_item(const char **p, const char *end, const char **item, size_t *ilen)
{
    const char *s = *p;
    while (s < end && (*s == ',' || *s == ' ' || *s == '\t'))
        s++;
    if (s >= end)
        return 0;
    const char *e = s;
    while (e < end && *e != ',')
        e++;
    *p = e;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *item = s;
    *ilen = (size_t)(e - s);
    return 1;
}

static int is_bearer(const char *item, size_t len)
{
    return len >= sizeof BEARER - 1 && memcmp(item, BEARER, sizeof BEARER - 1) == 0;
}

size_t lk_prelude_rewrite(const char *in, size_t head_len, size_t len, char *out)
{
    const char *token = NULL;
    size_t token_len = 0;
    int any_bearer = 0, folded = 0;
    size_t pos = 0;
    line l;

    if (!next_line(in, head_len, &pos, &l))
        goto copy;
    while (next_line(in, head_len, &pos, &l)) {
        const char *v, *item;
        size_t vlen, ilen;
        if (l.p[0] == ' ' || l.p[0] == '\t')
            folded = 1;
        if (!header_is(&l, PROTO_NAME, sizeof PROTO_NAME - 1, &v, &vlen))
            continue;
        const char *it = v;
        while (next_item(&it, v + vlen, &item, &ilen)) {
            if (!is_bearer(item, ilen))
                continue;
            any_bearer = 1;
            if (!token && ilen > sizeof BEARER - 1) {
                token = item + sizeof BEARER - 1;
                token_len = ilen - (sizeof BEARER - 1);
            }
        }
    }
    if (!any_bearer || folded)
        goto copy;

    size_t o = 0;
    pos = 0;
    next_line(in, head_len, &pos, &l);
    memcpy(out, l.p, l.len);
    o = l.len;
    out[o++] = '\r';
    out[o++] = '\n';
    while (next_line(in, head_len, &pos, &l)) {
        const char *v, *item;
        size_t vlen, ilen;
        if (token && header_is(&l, AUTH_NAME, sizeof AUTH_NAME - 1, &v, &vlen))
            continue;
        if (!header_is(&l, PROTO_NAME, sizeof PROTO_NAME - 1, &v, &vlen)) {
            memcpy(out + o, l.p, l.len);
            o += l.len;
            out[o++] = '\r';
            out[o++] = '\n';
            continue;
        }
        size_t start = o;
        static const char hdr[] = "Sec-WebSocket-Protocol: ";
        memcpy(out + o, hdr, sizeof hdr - 1);
        o += sizeof hdr - 1;
        int kept = 0;
        const char *it = v;
        while (next_item(&it, v + vlen, &item, &ilen)) {
            if (is_bearer(item, ilen))
                continue;
            if (kept++) {
                out[o++] = ',';
                out[o++] = ' ';
            }
            memcpy(out + o, item, ilen);
            o += ilen;
        }
        if (!kept) {
            o = start;
            continue;
        }
        out[o++] = '\r';
        out[o++] = '\n';
    }
    if (token) {
        static const char auth[] = "Authorization: Bearer ";
        memcpy(out + o, auth, sizeof auth - 1);
        o += sizeof auth - 1;
        memcpy(out + o, token, token_len);
        o += token_len;
        out[o++] = '\r';
        out[o++] = '\n';
    }
    out[o++] = '\r';
    out[o++] = '\n';
    memcpy(out + o, in + head_len, len - head_len);
    return o + (len - head_len);

copy:
    memcpy(out, in, len);
    return len;
}

/* ------------------------------------------------------------ framing */

static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && memchr("!#$%&'*+-.^_`|~", c, 15));
}

static int span_is(const char *p, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(p, word, len) == 0;
}

static int name_is(const char *p, size_t len, const char *name)
{
    return len == strlen(name) && strncasecmp(p, name, len) == 0;
}

/* The request line: a method lws knows, an absolute path, HTTP/1.x. */
static int request_line_ok(const line *l, int *has_body)
{
    static const char *const plain[] = {"GET", "HEAD", "DELETE", "OPTIONS"};
    static const char *const with_body[] = {"POST", "PUT", "PATCH"};
    const char *sp1 = memchr(l->p, ' ', l->len);
    if (!sp1)
        return 0;
    size_t mlen = (size_t)(sp1 - l->p);
    const char *target = sp1 + 1, *end = l->p + l->len;
    const char *sp2 = memchr(target, ' ', (size_t)(end - target));
    if (!sp2 || sp2 == target || *target != '/')
        return 0;
    for (const char *c = target; c < sp2; c++)
        if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e)
            return 0;
    const char *ver = sp2 + 1;
    if (!span_is(ver, (size_t)(end - ver), "HTTP/1.1") &&
        !span_is(ver, (size_t)(end - ver), "HTTP/1.0"))
        return 0;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (span_is(l->p, mlen, plain[i])) {
            *has_body = 0;
            return 1;
        }
    for (size_t i = 0; i < sizeof with_body / sizeof with_body[0]; i++)
        if (span_is(l->p, mlen, with_body[i])) {
            *has_body = 1;
            return 1;
        }
    return 0;
}

/* ": 123" exactly (one optional space, 1-18 digits): lws copies the value
 * into 31 bytes and reads it with atoll, so anything looser could make it
 * count a different body length, or none. */
static int content_length_ok(const char *v, size_t len, uint64_t *out)
{
    if (len && v[0] == ' ') {
        v++;
        len--;
    }
    if (!len || len > 18)
        return 0;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    *out = n;
    return 1;
}

lk_prelude_verdict lk_prelude_frame(const char *in, size_t head_len, lk_prelude_req *req)
{
    memset(req, 0, sizeof *req);
    /* Every line ends in CRLF; no bare CR or LF, no NUL anywhere. */
    for (size_t i = 0; i < head_len; i++) {
        char c = in[i];
        if ((c == '\r' && (i + 1 >= head_len || in[i + 1] != '\n')) ||
            (c == '\n' && (i == 0 || in[i - 1] != '\r')) || c == '\0')
            return LK_PRELUDE_MALFORMED;
    }
    size_t pos = 0;
    line l;
    int has_body = 0, chunked = 0, upgrades = 0, upgrade_ok = 0, lengths = 0;
    uint64_t length = 0;
    if (!next_line(in, head_len, &pos, &l) || !request_line_ok(&l, &has_body))
        return LK_PRELUDE_MALFORMED;
    while (next_line(in, head_len, &pos, &l)) {
        size_t n = 0;
        while (n < l.len && is_tchar((unsigned char)l.p[n]))
            n++;
        if (!n || n == l.len || l.p[n] != ':')
            return LK_PRELUDE_MALFORMED;   /* also obs-fold: a leading space */
        const char *v = l.p + n + 1;
        size_t vlen = l.len - n - 1;
        for (size_t i = 0; i < vlen; i++) {
            unsigned char c = (unsigned char)v[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return LK_PRELUDE_MALFORMED;
        }
        if (name_is(l.p, n, "content-length")) {
            if (lengths++ || !content_length_ok(v, vlen, &length))
                return LK_PRELUDE_MALFORMED;
        } else if (name_is(l.p, n, "transfer-encoding")) {
            chunked = 1;
        } else if (name_is(l.p, n, "upgrade")) {
            const char *s = v, *e = v + vlen;
            while (s < e && (*s == ' ' || *s == '\t'))
                s++;
            while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            upgrades++;
            upgrade_ok = name_is(s, (size_t)(e - s), "websocket");
        } else if (name_is(l.p, n, PROTO_NAME)) {
            const char *it = v, *item;
            size_t ilen;
            while (next_item(&it, v + vlen, &item, &ilen))
                if (is_bearer(item, ilen))
                    req->bearer = 1;
        }
    }
    /* next_line stops at the blank line that ends the head. */
    if (pos != head_len)
        return LK_PRELUDE_MALFORMED;
    if (chunked)
        return LK_PRELUDE_CHUNKED;
    if (upgrades) {
        /* lws takes any non-empty Upgrade as an upgrade attempt. */
        if (upgrades > 1 || !upgrade_ok || lengths || has_body ||
            !span_is(in, 4, "GET "))
            return LK_PRELUDE_MALFORMED;
        req->upgrade = 1;
        return LK_PRELUDE_OK;
    }
    if (has_body && !lengths)
        return LK_PRELUDE_NO_LENGTH;
    req->body = lengths ? length : 0;
    return LK_PRELUDE_OK;
}

/* ------------------------------------------------------------ helpers */

static void kill_async(struct lws *wsi)
{
    if (wsi)
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* lws closes a descriptor it failed to adopt on most paths but not all;
 * nothing else opens descriptors meanwhile (one thread), so this cannot
 * hit a reused number. */
static void close_if_open(int fd)
{
    if (fcntl(fd, F_GETFD) >= 0)
        close(fd);
}

/* The client's address, kept on the wsi lws serves through the gate. */
typedef struct lk_peer {
    uint32_t magic;
    char ip[64];
} lk_peer;

#define PEER_MAGIC 0x6c6b7072u

static lk_peer *peer_of(struct lws *wsi)
{
    /* lws serves from its own copy of the protocol table: match by vhost
     * and id (the TLS vhost's wsis carry other opaque data). */
    lk_broker *b = lws_context_user(lws_get_context(wsi));
    const struct lws_protocols *pr = lws_get_protocol(wsi);
    if (!b || lws_get_vhost(wsi) != b->vh || !pr || pr->id != LK_PROTO_MAIN)
        return NULL;
    lk_peer *peer = lws_get_opaque_user_data(wsi);
    return peer && peer->magic == PEER_MAGIC ? peer : NULL;
}

const char *lk_prelude_peer(struct lws *wsi, char *buf, size_t len)
{
    lk_peer *peer = peer_of(wsi);
    if (!peer)
        return lws_get_peer_simple(wsi, buf, len);
    if (!peer->ip[0] || !len)
        return NULL;
    snprintf(buf, len, "%s", peer->ip);
    return buf;
}

void lk_prelude_forget(struct lws *wsi)
{
    lk_peer *peer = peer_of(wsi);
    if (!peer)
        return;
    lws_set_opaque_user_data(wsi, NULL);
    free(peer);
}

/* ------------------------------------------------------------ the gate */

#define GATE_IN_MAX LK_PRELUDE_MAX       /* client bytes held: one head at most */
#define GATE_CHUNK 16384                 /* bytes moved per read */
#define GATE_STALL_SECS 10               /* a client that reads nothing, a slow head */
#define GATE_LINGER_SECS 1               /* reading after our last byte */
#define DRAIN_FIRST_US (1 * LWS_US_PER_MS)
#define DRAIN_STEP_MAX_US (50 * LWS_US_PER_MS)
#define DRAIN_GIVE_UP_US (10 * LWS_US_PER_SEC)

enum { G_HEAD = 0, G_BODY, G_TUNNEL };
enum { TO_NONE = 0, TO_STALL, TO_LINGER };

/* The gate's own answers: the status line, then the JSON body. */
typedef struct gate_refusal {
    const char *status;
    const char *body;
} gate_refusal;

struct lk_gate {
    lk_broker *b;
    struct lws *client, *pipe;   /* NULL once gone */
    int refs;                    /* one per live wsi */
    int state;
    uint64_t body_left;
    unsigned char *in;           /* client bytes not yet passed on (GATE_IN_MAX) */
    size_t in_len;
    unsigned char *to_pipe;      /* passed on, not yet taken by the socketpair */
    size_t to_pipe_len;
    unsigned char *to_client;    /* lws's output the client has not taken yet */
    size_t to_client_len;
    const gate_refusal *refusal; /* our answer, sent after lws's last byte */
    int client_eof, pipe_eof, pipe_shut, finishing, timeout;
    int rearm_client, rearm_pipe;
    lws_sorted_usec_list_t sul;  /* waits for lws to read what it was given */
    lws_sorted_usec_list_t sul_w; /* asks for WRITEABLE again, see rearm() */
    int64_t drain_since_us;
    lws_usec_t drain_step_us;
};

static const gate_refusal REFUSAL_400 = {
    "400 Bad Request", "{\"error\":\"malformed request\",\"code\":\"bad_request\"}"};
static const gate_refusal REFUSAL_CHUNKED = {
    "400 Bad Request", "{\"error\":\"Transfer-Encoding is not supported; send "
                       "Content-Length\",\"code\":\"bad_request\"}"};
static const gate_refusal REFUSAL_NO_LENGTH = {
    "400 Bad Request", "{\"error\":\"Content-Length is required\",\"code\":\"bad_request\"}"};
static const gate_refusal REFUSAL_431 = {
    "431 Request Header Fields Too Large",
    "{\"error\":\"request headers too large\",\"code\":\"too_large\"}"};

static void wipe_free(unsigned char *p, size_t n)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, n);
    free(p);
}

static void gate_unref(lk_gate *g)
{
    if (--g->refs)
        return;
    lws_sul_cancel(&g->sul);
    lws_sul_cancel(&g->sul_w);
    wipe_free(g->in, GATE_IN_MAX);
    wipe_free(g->to_pipe, g->to_pipe_len);
    wipe_free(g->to_client, g->to_client_len);
    free(g);
}

/* One lws timeout per wsi: the client's is armed for the condition that
 * needs one, and left alone while that condition holds. */
static void set_client_timeout(lk_gate *g, int kind)
{
    if (!g->client || g->timeout == kind)
        return;
    g->timeout = kind;
    lws_set_timeout(g->client, kind ? PENDING_TIMEOUT_USER_OK : NO_PENDING_TIMEOUT,
                    kind == TO_LINGER ? GATE_LINGER_SECS
                    : kind == TO_STALL ? GATE_STALL_SECS : 0);
}

static int append(unsigned char **q, size_t *qlen, const void *data, size_t n)
{
    unsigned char *nq = malloc(*qlen + n);
    if (!nq)
        return -1;
    if (*qlen)
        memcpy(nq, *q, *qlen);
    memcpy(nq + *qlen, data, n);
    wipe_free(*q, *qlen);
    *q = nq;
    *qlen += n;
    return 0;
}

static void drop_front(unsigned char **q, size_t *qlen, size_t n)
{
    if (n >= *qlen) {
        wipe_free(*q, *qlen);
        *q = NULL;
        *qlen = 0;
        return;
    }
    memmove(*q, *q + n, *qlen - n);
    OPENSSL_cleanse(*q + *qlen - n, n);
    *qlen -= n;
}

/* Sends what the socket takes now: bytes sent, or -1 on a dead socket. */
static ssize_t send_some(int fd, const void *data, size_t n)
{
    ssize_t w;
    do
        w = send(fd, data, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    return w;
}

static void rearm_now(lws_sorted_usec_list_t *sul)
{
    lk_gate *g = lws_container_of(sul, lk_gate, sul_w);
    if (g->rearm_client && g->client)
        lws_callback_on_writable(g->client);
    if (g->rearm_pipe && g->pipe)
        lws_callback_on_writable(g->pipe);
    g->rearm_client = g->rearm_pipe = 0;
}

/* Asks for WRITEABLE from within that wsi's own WRITEABLE: lws 4.1.6's
 * raw-file role turns POLLOUT off right after the callback returns
 * (ops-raw-file.c), which would cancel a request made during it, so the
 * request is made from a timer instead. */
static void rearm(lk_gate *g, struct lws *wsi)
{
    if (wsi == g->client)
        g->rearm_client = 1;
    else
        g->rearm_pipe = 1;
    lws_sul_schedule(g->b->ctx, 0, &g->sul_w, rearm_now, 1);
}

/* Passes bytes to lws; what the socketpair does not take waits in
 * to_pipe, and nothing more is passed until it has gone. */
static int to_lws(lk_gate *g, const void *data, size_t n)
{
    if (g->pipe_shut || !g->pipe)
        return 0;
    ssize_t w = send_some(lws_get_socket_fd(g->pipe), data, n);
    if (w < 0) {
        g->pipe_shut = 1;   /* lws has gone; its EOF follows */
        return 0;
    }
    if ((size_t)w < n) {
        if (append(&g->to_pipe, &g->to_pipe_len, (const char *)data + w, n - (size_t)w))
            return -1;
        rearm(g, g->pipe);   /* this may run inside the pipe's WRITEABLE */
    }
    return 0;
}

static void consume_in(lk_gate *g, size_t n)
{
    memmove(g->in, g->in + n, g->in_len - n);
    OPENSSL_cleanse(g->in + g->in_len - n, n);
    g->in_len -= n;
}

/* Has lws read every byte it was given? Then its next read holds the next
 * request alone. */
static int lws_drained(lk_gate *g)
{
    int queued = 0;
    if (g->to_pipe_len)
        return 0;
    if (ioctl(lws_get_socket_fd(g->pipe), SIOCOUTQ, &queued) != 0)
        return 0;
    return queued == 0;
}

static void stop_passing(lk_gate *g)
{
    if (g->pipe_shut || !g->pipe)
        return;
    g->pipe_shut = 1;
    if (!g->to_pipe_len)
        shutdown(lws_get_socket_fd(g->pipe), SHUT_WR);
}

/* No more requests are passed on: lws finishes what it has, closes on our
 * EOF, and the refusal follows its last byte. */
static void refuse(lk_gate *g, const gate_refusal *resp)
{
    g->refusal = resp;
    stop_passing(g);
}

static void client_reads(lk_gate *g, int on)
{
    if (g->client)
        lws_rx_flow_control(g->client, on);
}

static void drain_retry(lws_sorted_usec_list_t *sul);

static int gate_pump(lk_gate *g);

static void wait_for_drain(lk_gate *g)
{
    int64_t now = lk_mono_us();
    if (!g->drain_since_us) {
        g->drain_since_us = now;
        g->drain_step_us = DRAIN_FIRST_US;
    } else if (now - g->drain_since_us > DRAIN_GIVE_UP_US) {
        /* lws stopped reading; give up on the connection. */
        kill_async(g->client);
        return;
    }
    client_reads(g, 0);
    lws_sul_schedule(g->b->ctx, 0, &g->sul, drain_retry, g->drain_step_us);
    g->drain_step_us = g->drain_step_us * 2 > DRAIN_STEP_MAX_US ? DRAIN_STEP_MAX_US
                                                                 : g->drain_step_us * 2;
}

static void drain_retry(lws_sorted_usec_list_t *sul)
{
    lk_gate *g = lws_container_of(sul, lk_gate, sul);
    if (g->client && gate_pump(g))
        kill_async(g->client);
}

/* Passes the next head on, rewritten if it carries a bearer subprotocol. */
static int pass_head(lk_gate *g, size_t head, const lk_prelude_req *req)
{
    int rc;
    if (req->bearer) {
        char *out = malloc(LK_PRELUDE_OUT_MAX(head));
        if (!out)
            return -1;
        size_t n = lk_prelude_rewrite((const char *)g->in, head, head, out);
        rc = to_lws(g, out, n);
        OPENSSL_cleanse(out, n);
        free(out);
    } else {
        rc = to_lws(g, g->in, head);
    }
    consume_in(g, head);
    g->body_left = req->body;
    g->state = req->upgrade ? G_TUNNEL : req->body ? G_BODY : G_HEAD;
    return rc;
}

/* Moves client bytes on to lws as far as the framing allows. Returns -1
 * when the client connection must go. */
static int gate_pump(lk_gate *g)
{
    while (!g->pipe_shut && g->pipe && !g->to_pipe_len && g->in_len) {
        if (g->state != G_HEAD) {
            size_t n = g->in_len;
            if (g->state == G_BODY && g->body_left < n)
                n = (size_t)g->body_left;
            if (to_lws(g, g->in, n))
                return -1;
            consume_in(g, n);
            if (g->state == G_BODY && !(g->body_left -= n))
                g->state = G_HEAD;
            continue;
        }
        size_t head = lk_prelude_head_end((const char *)g->in, g->in_len);
        if (!head) {
            if (g->in_len >= GATE_IN_MAX)
                refuse(g, &REFUSAL_431);
            else
                set_client_timeout(g, TO_STALL);   /* a head trickling in */
            break;
        }
        if (!lws_drained(g)) {
            wait_for_drain(g);
            return 0;
        }
        g->drain_since_us = 0;
        lk_prelude_req req;
        lk_prelude_verdict v = lk_prelude_frame((const char *)g->in, head, &req);
        if (v != LK_PRELUDE_OK) {
            refuse(g, v == LK_PRELUDE_CHUNKED     ? &REFUSAL_CHUNKED
                      : v == LK_PRELUDE_NO_LENGTH ? &REFUSAL_NO_LENGTH
                                                  : &REFUSAL_400);
            break;
        }
        if (pass_head(g, head, &req))
            return -1;
        if (!g->to_client_len)
            set_client_timeout(g, TO_NONE);
    }
    if (g->pipe_shut || !g->pipe) {
        /* Nothing more goes to lws: what the client still sends is dropped. */
        g->in_len = 0;
        client_reads(g, g->finishing);
        return 0;
    }
    if (g->client_eof && !g->to_pipe_len && (!g->in_len || g->state == G_HEAD)) {
        /* The client is done: lws answers what it has, then sees the EOF. */
        stop_passing(g);
        client_reads(g, 0);
        return 0;
    }
    client_reads(g, !g->client_eof && !g->to_pipe_len && g->in_len < GATE_IN_MAX);
    return 0;
}

/* Client readable: its bytes go into `in`; when finishing, they are read
 * and dropped until it closes. */
static int gate_client_readable(lk_gate *g)
{
    int fd = lws_get_socket_fd(g->client);
    if (!g->finishing && (g->client_eof || g->pipe_shut)) {
        /* Nothing to read for now; an EOF would stay readable. */
        client_reads(g, 0);
        return 0;
    }
    if (g->finishing) {
        char *buf = g->b->scratch;
        for (int i = 0; i < 16; i++) {
            ssize_t n = recv(fd, buf, g->b->scratch_cap, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                           errno != EINTR))
                return -1;
            if (n < 0)
                break;
            OPENSSL_cleanse(buf, (size_t)n);
        }
        return 0;
    }
    if (g->in_len >= GATE_IN_MAX) {
        client_reads(g, 0);
        return 0;
    }
    ssize_t n = recv(fd, g->in + g->in_len, GATE_IN_MAX - g->in_len, MSG_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    if (n == 0)
        g->client_eof = 1;
    g->in_len += (size_t)n;
    return gate_pump(g);
}

/* Finishing: lws is gone and its last byte sent, so the refusal (if any)
 * follows, then our FIN; the client gets a moment to read and close. */
static int gate_finish(lk_gate *g)
{
    if (g->finishing)
        return 0;
    g->finishing = 1;
    shutdown(lws_get_socket_fd(g->client), SHUT_WR);
    set_client_timeout(g, TO_LINGER);
    client_reads(g, 1);
    return 0;
}

static int gate_client_writeable(lk_gate *g)
{
    if (g->pipe_eof && g->refusal) {
        char resp[512];
        int n = snprintf(resp, sizeof resp,
                         "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         g->refusal->status, strlen(g->refusal->body), g->refusal->body);
        g->refusal = NULL;
        if (n < 0 || (size_t)n >= sizeof resp ||
            append(&g->to_client, &g->to_client_len, resp, (size_t)n))
            return -1;
    }
    if (g->to_client_len) {
        ssize_t w = send_some(lws_get_socket_fd(g->client), g->to_client, g->to_client_len);
        if (w < 0)
            return -1;
        drop_front(&g->to_client, &g->to_client_len, (size_t)w);
        if (g->to_client_len) {
            rearm(g, g->client);
            return 0;
        }
    }
    if (g->pipe_eof)
        return gate_finish(g);
    set_client_timeout(g, TO_NONE);
    if (g->pipe)
        lws_rx_flow_control(g->pipe, 1);
    return gate_pump(g);
}

/* lws's output: straight on to the client, or held (and lws's side
 * paused) while the client is not taking it. */
static int gate_pipe_readable(lk_gate *g)
{
    lk_broker *b = g->b;
    if (g->to_client_len || !g->client) {
        lws_rx_flow_control(g->pipe, 0);
        return 0;
    }
    size_t cap = b->scratch_cap < GATE_CHUNK ? b->scratch_cap : GATE_CHUNK;
    ssize_t n = recv(lws_get_socket_fd(g->pipe), b->scratch, cap, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0) {
        g->pipe_eof = 1;
        lws_callback_on_writable(g->client);
        return -1;
    }
    ssize_t w = send_some(lws_get_socket_fd(g->client), b->scratch, (size_t)n);
    int rc = 0;
    if (w < 0) {
        kill_async(g->client);
        rc = -1;
    } else if (w < n) {
        if (append(&g->to_client, &g->to_client_len, b->scratch + w, (size_t)(n - w))) {
            kill_async(g->client);
            rc = -1;
        } else {
            lws_rx_flow_control(g->pipe, 0);
            lws_callback_on_writable(g->client);
            set_client_timeout(g, TO_STALL);
        }
    }
    OPENSSL_cleanse(b->scratch, (size_t)n);
    return rc;
}

static int gate_pipe_writeable(lk_gate *g)
{
    if (g->to_pipe_len) {
        ssize_t w = send_some(lws_get_socket_fd(g->pipe), g->to_pipe, g->to_pipe_len);
        if (w < 0) {
            g->pipe_shut = 1;
            wipe_free(g->to_pipe, g->to_pipe_len);
            g->to_pipe = NULL;
            g->to_pipe_len = 0;
            return 0;
        }
        drop_front(&g->to_pipe, &g->to_pipe_len, (size_t)w);
        if (g->to_pipe_len) {
            rearm(g, g->pipe);
            return 0;
        }
        if (g->pipe_shut)
            shutdown(lws_get_socket_fd(g->pipe), SHUT_WR);
    }
    if (g->client && gate_pump(g))
        kill_async(g->client);
    return 0;
}

static void gate_client_gone(lk_gate *g)
{
    g->client = NULL;
    lws_sul_cancel(&g->sul);
    kill_async(g->pipe);
    gate_unref(g);
}

static void gate_pipe_gone(lk_gate *g)
{
    g->pipe = NULL;
    g->pipe_eof = 1;
    g->pipe_shut = 1;
    if (g->client)
        lws_callback_on_writable(g->client);
    gate_unref(g);
}

/* Puts the client connection behind the gate: lws's HTTP server gets one
 * end of a socketpair, the gate the other. `pre` holds what the prelude
 * already read from the client. */
static int gate_start(lk_broker *b, struct lws *wsi, lk_prelude *p, const char *pre,
                      size_t pre_len)
{
    int sv[2];
    if (pre_len > GATE_IN_MAX ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    lk_gate *g = calloc(1, sizeof *g);
    lk_peer *peer = calloc(1, sizeof *peer);
    unsigned char *in = malloc(GATE_IN_MAX);
    if (!g || !peer || !in) {
        free(g);
        free(peer);
        free(in);
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    g->b = b;
    g->in = in;
    memcpy(g->in, pre, pre_len);
    g->in_len = pre_len;
    g->client = wsi;
    g->refs = 1;   /* the client's */
    g->timeout = TO_STALL;   /* the prelude's head timeout is running */
    p->gate = g;

    lws_adopt_desc_t d;
    memset(&d, 0, sizeof d);
    d.vh = b->vh;
    d.type = LWS_ADOPT_RAW_FILE_DESC;
    d.fd.filefd = sv[1];
    d.vh_prot_name = b->protocols[LK_PROTO_PRELUDE].name;
    d.opaque = g;
    g->refs++;     /* the pipe's, returned by its WSI_DESTROY */
    g->pipe = lws_adopt_descriptor_vhost_via_info(&d);
    if (!g->pipe) {
        close_if_open(sv[1]);
        close(sv[0]);
        free(peer);
        /* Without a WSI_DESTROY the pipe's reference is still ours. */
        if (!g->pipe_eof)
            g->refs--;
        return -1;
    }

    peer->magic = PEER_MAGIC;
    if (!lws_get_peer_simple(wsi, peer->ip, sizeof peer->ip))
        peer->ip[0] = '\0';
    memset(&d, 0, sizeof d);
    d.vh = b->vh;
    d.type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP;
    d.fd.sockfd = sv[0];
    d.opaque = peer;
    uint64_t seen = b->destroyed;
    p->handed_off = 1;
    struct lws *nw = lws_adopt_descriptor_vhost_via_info(&d);
    if (!nw) {
        if (b->destroyed == seen) {
            /* lws never made a wsi: the socket count is still ours. */
            p->handed_off = 0;
            free(peer);
        }
        close_if_open(sv[0]);
        return -1;
    }
    return gate_pump(g);
}

/* ------------------------------------------------------------ hand-off */

/* Gives the socket (a duplicate descriptor; this wsi closes the original)
 * to lws's HTTP server with the bytes read so far, a validated upgrade
 * head and whatever followed it, as already-read data. lws parses the head
 * at once and either upgrades or closes; later bytes are WebSocket frames
 * to it. */
static int hand_off(lk_broker *b, struct lws *wsi, lk_prelude *p, const char *data,
                    size_t n)
{
    int nfd = fcntl(lws_get_socket_fd(wsi), F_DUPFD_CLOEXEC, 0);
    if (nfd < 0)
        return -1;
    uint64_t seen = b->destroyed;
    p->handed_off = 1;
    struct lws *nw = lws_adopt_socket_vhost_readbuf(b->vh, nfd, data, n);
    /* NULL with no WSI_DESTROY means lws never made a wsi. (A NULL after
     * one is also how lws reports that it refused the head and closed.) */
    if (!nw && b->destroyed == seen) {
        close_if_open(nfd);
        p->handed_off = 0;
    }
    return -1;
}

static void forget_head(lk_prelude *p)
{
    if (p->head)
        OPENSSL_cleanse(p->head, p->head_len);
    free(p->head);
    p->head = NULL;
    p->head_len = 0;
}

/* What to do with a connection once its first head is in buf[0..len). */
static int route(lk_broker *b, struct lws *wsi, lk_prelude *p, const char *buf,
                 size_t len)
{
    p->done = 1;
    size_t head = lk_prelude_head_end(buf, len);
    lk_prelude_req req;
    if (!head || lk_prelude_frame(buf, head, &req) != LK_PRELUDE_OK || !req.upgrade)
        return gate_start(b, wsi, p, buf, len);
    if (!req.bearer)
        return hand_off(b, wsi, p, buf, len);
    char *out = malloc(LK_PRELUDE_OUT_MAX(len));
    if (!out)
        return -1;
    size_t n = lk_prelude_rewrite(buf, head, len, out);
    int rc = hand_off(b, wsi, p, out, n);
    /* The head holds a token: lws has its own copy now. */
    OPENSSL_cleanse(out, n);
    free(out);
    return rc;
}

/* Reads the first request head. The bytes are consumed (kept in p->head
 * while the head is incomplete), so an EOF shows and nothing stays
 * readable: no polling while a client trickles its head in, which the
 * prelude's head timeout bounds. */
static int on_readable(lk_broker *b, struct lws *wsi, lk_prelude *p)
{
    if (p->gate)
        return gate_client_readable(p->gate);
    if (p->done)
        return -1;
    char *buf = b->scratch;
    size_t room = LK_PRELUDE_MAX - p->head_len;
    if (room > b->scratch_cap - p->head_len)
        room = b->scratch_cap - p->head_len;
    if (p->head_len)
        memcpy(buf, p->head, p->head_len);
    ssize_t n = recv(lws_get_socket_fd(wsi), buf + p->head_len, room, MSG_DONTWAIT);
    if (n <= 0) {
        if (p->head_len)
            OPENSSL_cleanse(buf, p->head_len);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        return -1;   /* closed before a whole head */
    }
    size_t len = p->head_len + (size_t)n;
    int rc = 0;
    if (lk_prelude_head_end(buf, len) || len >= LK_PRELUDE_MAX) {
        forget_head(p);
        rc = route(b, wsi, p, buf, len);
    } else {
        char *nh = malloc(len);
        if (!nh) {
            rc = -1;
        } else {
            memcpy(nh, buf, len);
            forget_head(p);
            p->head = nh;
            p->head_len = len;
        }
    }
    OPENSSL_cleanse(buf, len);
    return rc;
}

/* ------------------------------------------------------------ callbacks */

struct lws *lk_prelude_adopt(lk_broker *b, int fd)
{
    lws_sock_file_fd_type d;
    d.filefd = fd;
    return lws_adopt_descriptor_vhost(b->vh, LWS_ADOPT_RAW_FILE_DESC, d,
                                      b->protocols[LK_PROTO_PRELUDE].name, NULL);
}

int lk_prelude_callback(lk_broker *b, struct lws *wsi,
                        enum lws_callback_reasons reason, void *user,
                        void *in, size_t len)
{
    lk_prelude *p = user;
    if (!p)
        return reason == LWS_CALLBACK_RAW_RX_FILE ? -1 : 0;
    switch (reason) {
    case LWS_CALLBACK_RAW_ADOPT_FILE:
        p->wsi = wsi;
        p->b = b;
        p->gate = lws_get_opaque_user_data(wsi);
        if (p->gate) {
            p->side = SIDE_PIPE;
            return 0;
        }
        p->side = SIDE_CLIENT;
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LK_PRELUDE_TIMEOUT_SECS);
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE:
        if (p->side == SIDE_PIPE)
            return p->gate ? gate_pipe_readable(p->gate) : -1;
        return on_readable(b, wsi, p);
    case LWS_CALLBACK_RAW_WRITEABLE_FILE:
        if (!p->gate)
            return 0;
        return p->side == SIDE_PIPE ? gate_pipe_writeable(p->gate)
                                    : gate_client_writeable(p->gate);
    default:
        return 0;
    }
}

void lk_prelude_destroy(lk_broker *b, struct lws *wsi, void *user)
{
    lk_prelude *p = user;
    /* The gate's end of a socketpair is known by the gate set on it at
     * adoption, even if it died before its first callback. */
    lk_gate *pipe_gate = lws_get_opaque_user_data(wsi);
    if (pipe_gate) {
        lws_set_opaque_user_data(wsi, NULL);
        gate_pipe_gone(pipe_gate);
        return;
    }
    if (!p)
        return;
    forget_head(p);
    lk_gate *g = p->gate;
    p->gate = NULL;
    if (!p->handed_off) {
        p->handed_off = 1;
        b->sockets--;
    }
    if (g)
        gate_client_gone(g);
}
