/* prelude.c - the first look at each connection: WebSocket upgrades go
 * to lws (a bearer subprotocol moved into Authorization), everything else
 * through the request gate (see prelude.h). */
#include "prelude.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "gate.h"
#include "hub.h"

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

/* ------------------------------------------------------------ hand-off */

/* lws closes a descriptor it failed to adopt on most paths but not all;
 * nothing else opens descriptors meanwhile (one thread), so this cannot
 * hit a reused number. */
static void close_if_open(int fd)
{
    if (fcntl(fd, F_GETFD) >= 0)
        close(fd);
}

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
        return lk_gate_start(b, wsi, buf, len, &p->gate, &p->handed_off);
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
        return lk_gate_client_rx(p->gate);
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
        p->gate = lk_gate_of_pipe(wsi);
        if (p->gate) {
            p->side = SIDE_PIPE;
            return 0;
        }
        p->side = SIDE_CLIENT;
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LK_PRELUDE_TIMEOUT_SECS);
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE:
        if (p->side == SIDE_PIPE)
            return p->gate ? lk_gate_pipe_rx(p->gate) : -1;
        return on_readable(b, wsi, p);
    case LWS_CALLBACK_RAW_WRITEABLE_FILE:
        if (!p->gate)
            return 0;
        return p->side == SIDE_PIPE ? lk_gate_pipe_writeable(p->gate)
                                    : lk_gate_client_writeable(p->gate);
    default:
        return 0;
    }
}

void lk_prelude_destroy(lk_broker *b, struct lws *wsi, void *user)
{
    lk_prelude *p = user;
    /* The gate's end of a socketpair is known by the gate set on it at
     * adoption, even if it died before its first callback. */
    lk_gate *pipe_gate = lk_gate_of_pipe(wsi);
    if (pipe_gate) {
        lws_set_opaque_user_data(wsi, NULL);
        lk_gate_pipe_gone(pipe_gate);
        return;
    }
    if (!p)
        return;
    forget_head(p);
    lk_gate *g = p->gate;
    p->gate = NULL;
    if (!p->handed_off) {
        p->handed_off = 1;
        lk_hub_sockets_add(b->hub, -1);
    }
    if (g)
        lk_gate_client_gone(g);
}
