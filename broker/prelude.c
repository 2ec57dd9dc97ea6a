/* prelude.c - request-head reader that moves a bearer subprotocol into
 * the Authorization header, then hands the socket to lws. */
#define _GNU_SOURCE /* memmem */
#include "prelude.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct lk_prelude {
    struct lws *wsi;
    lk_broker *b;
    lws_sorted_usec_list_t sul;   /* re-enables reading after a pause */
    int handed_off;
    int done;
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

static void reply_431(struct lws *wsi)
{
    static const char body[] =
        "{\"error\":\"request headers too large\",\"code\":\"too_large\"}";
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s", sizeof body - 1, body);
    /* Best effort: the connection is closed right after either way. */
    if (send(lws_get_socket_fd(wsi), resp, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        return;
}

/* Does the head carry anything to rewrite? Only a request without a body
 * is rewritten: lws 4.1.6 mishandles body bytes that follow a head given
 * to it as already-read data (it hands the wrong bytes to HTTP_BODY and
 * can spin), and a `bearer.` subprotocol only makes sense on a GET
 * upgrade anyway. */
static int needs_rewrite(const char *head, size_t len)
{
    if (!memmem(head, len, "bearer.", 7))
        return 0;
    static const char *const body_headers[] = {"\ncontent-length:", "\ntransfer-encoding:"};
    for (size_t h = 0; h < 2; h++) {
        size_t hl = strlen(body_headers[h]);
        for (size_t i = 0; i + hl <= len; i++)
            if (strncasecmp(head + i, body_headers[h], hl) == 0)
                return 0;
    }
    return 1;
}

/* Gives the socket (a duplicate descriptor; this wsi closes the original)
 * to lws's HTTP server, with the rewritten head as already-read bytes when
 * `out` is set, else untouched for lws to read in full. */
static int hand_off(lk_broker *b, struct lws *wsi, lk_prelude *p, const char *out,
                    size_t n)
{
    int nfd = fcntl(lws_get_socket_fd(wsi), F_DUPFD_CLOEXEC, 0);
    if (nfd < 0)
        return -1;
    uint64_t seen = b->destroyed;
    p->handed_off = 1;
    struct lws *nw = out ? lws_adopt_socket_vhost_readbuf(b->vh, nfd, out, n)
                         : lws_adopt_socket_vhost(b->vh, nfd);
    /* NULL with no WSI_DESTROY means lws never took the descriptor. */
    if (!nw && b->destroyed == seen) {
        close(nfd);
        b->sockets--;
    }
    return -1;
}

#define PRELUDE_PAUSE_US (2 * LWS_US_PER_MS)

static void resume(lws_sorted_usec_list_t *sul)
{
    lk_prelude *p = lws_container_of(sul, lk_prelude, sul);
    lws_rx_flow_control(p->wsi, 1);
}

/* Peeks at the request head without consuming it. Until the head is
 * complete, reading pauses briefly after each look (the bytes stay queued,
 * so the socket would otherwise stay readable). A head with a `bearer.`
 * subprotocol is then consumed and handed over rewritten; any other
 * request is handed over untouched. */
static int on_readable(lk_broker *b, struct lws *wsi, lk_prelude *p)
{
    if (p->done)
        return -1;
    int fd = lws_get_socket_fd(wsi);
    char *buf = b->scratch;
    size_t cap = b->scratch_cap < LK_PRELUDE_MAX ? b->scratch_cap : LK_PRELUDE_MAX;
    ssize_t n = recv(fd, buf, cap, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return -1;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    size_t head = lk_prelude_head_end(buf, (size_t)n);
    if (!head) {
        if ((size_t)n >= cap) {
            p->done = 1;
            reply_431(wsi);
            return -1;
        }
        lws_rx_flow_control(wsi, 0);
        lws_sul_schedule(b->ctx, 0, &p->sul, resume, PRELUDE_PAUSE_US);
        return 0;
    }
    p->done = 1;
    lws_sul_cancel(&p->sul);
    if (!needs_rewrite(buf, head))
        return hand_off(b, wsi, p, NULL, 0);

    if (recv(fd, buf, head, MSG_DONTWAIT) != (ssize_t)head)
        return -1;
    char *out = malloc(LK_PRELUDE_OUT_MAX(head));
    if (!out) {
        memset(buf, 0, head);
        return -1;
    }
    size_t len = lk_prelude_rewrite(buf, head, head, out);
    /* The head holds a token: wipe both copies once lws has its own. */
    memset(buf, 0, head);
    int rc = hand_off(b, wsi, p, out, len);
    memset(out, 0, len);
    free(out);
    return rc;
}

struct lws *lk_prelude_adopt(lk_broker *b, int fd)
{
    lws_sock_file_fd_type d;
    d.filefd = fd;
    return lws_adopt_descriptor_vhost(b->vh, LWS_ADOPT_RAW_FILE_DESC, d, "lk-prelude",
                                      NULL);
}

int lk_prelude_callback(lk_broker *b, struct lws *wsi,
                        enum lws_callback_reasons reason, void *user,
                        void *in, size_t len)
{
    lk_prelude *p = user;
    switch (reason) {
    case LWS_CALLBACK_RAW_ADOPT_FILE:
        if (p) {
            p->wsi = wsi;
            p->b = b;
        }
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LK_PRELUDE_TIMEOUT_SECS);
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE:
        return p ? on_readable(b, wsi, p) : -1;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (p)
            lws_sul_cancel(&p->sul);
        return 0;
    default:
        return 0;
    }
}

void lk_prelude_destroy(lk_broker *b, void *user)
{
    lk_prelude *p = user;
    if (!p)
        return;
    lws_sul_cancel(&p->sul);
    if (!p->handed_off) {
        p->handed_off = 1;
        b->sockets--;
    }
}
