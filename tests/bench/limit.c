/*
 * limit.c - a minimal single-threaded epoll WebSocket broadcaster with no
 * authentication and no JSON: the ceiling for a single-threaded C broker on
 * this machine, to compare real brokers against.
 *
 *   limit --listen 127.0.0.1:PORT     (port 0 picks one)
 *
 * Prints {"msg":"listening","port":N} on stderr once it listens; exits 0 on
 * SIGTERM or SIGINT.
 *
 * Protocol (loadgen --proto raw speaks it):
 *   GET /sub/<channel>[,<channel>...]  subscribes the connection to up to
 *                                      LIMIT_MAX_SUBS channels before the 101;
 *                                      any other path subscribes to nothing.
 *   client -> server   masked text frames of '\n'-separated lines
 *                      "<channel> <payload>"; each line goes, verbatim, to
 *                      every subscriber of <channel> (the sender too, if it
 *                      is one). No subprotocol, no fragmented messages.
 *   server -> client   text frames packing every line due to the connection
 *                      in one loop turn, separated by '\n' (as Latchkey's
 *                      SPEC section 4 batching), at most 65535 bytes each;
 *                      ping is answered with pong, close with close.
 *
 * Cost per broadcast: the line is looked up once (channel hash map) and
 * appended to each subscriber's output buffer (a memcpy); each connection
 * with output is written once per loop turn, with one write(); EPOLLOUT is
 * armed only after a short write. A subscriber whose unsent output passes
 * LIMIT_OUT_MAX is dropped (slow consumer). Everything is bounded: request
 * head, frame size, channels per connection, connections (the descriptor
 * limit, raised to its hard maximum).
 *
 * Channel names: 1..200 of [A-Za-z0-9_@.:=-], as Latchkey's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include "lg_ws.h"

#define LIMIT_MAX_HEAD 8192          /* request head */
#define LIMIT_MAX_FRAME 65535        /* client frame payload, and server frame payload */
#define LIMIT_MAX_SUBS 8             /* channels per connection */
#define LIMIT_MAX_CHANNEL 200
#define LIMIT_OUT_MAX (8u << 20)     /* unsent output before a subscriber is dropped */
#define LIMIT_OUT_KEEP 65536         /* an emptied output buffer up to this is kept */
#define LIMIT_SCRATCH (256u << 10)
#define LIMIT_ACCEPT_BATCH 256
#define LIMIT_NO_FRAME SIZE_MAX

#define EV_LISTEN UINT64_MAX
#define EV_SIGNAL (UINT64_MAX - 1)

enum cstate { CS_HTTP, CS_WS, CS_CLOSING, CS_DEAD };

typedef struct conn conn;
typedef struct channel channel;

struct channel {
    channel *next; /* hash chain */
    uint32_t hash;
    conn **subs;
    uint8_t *mslot; /* subs[i]'s index of this channel in its own list */
    int nsubs, cap;
    size_t len;
    char name[];
};

typedef struct member {
    channel *ch;
    int idx; /* position in ch->subs */
} member;

struct conn {
    int fd;
    enum cstate state;
    int epout, dirty, listed_dead;
    uint8_t *rx;
    size_t rx_len, rx_cap;
    uint8_t *out; /* unsent bytes are out[off, len) */
    size_t off, len, cap;
    size_t frame_at; /* header slot (4 bytes) of the open text frame, or LIMIT_NO_FRAME */
    member subs[LIMIT_MAX_SUBS];
    int nsubs;
    conn *dirty_next, *dead_next;
};

static struct {
    int ep, lfd, sfd, spare_fd;
    conn **conns; /* by descriptor */
    size_t max_fd;
    channel **table;
    size_t tsize, nchannels;
    conn *dirty, *dead;
    uint8_t *scratch;
    int stop;
} L;

static void die(const char *msg)
{
    fprintf(stderr, "limit: %s\n", msg);
    exit(2);
}

/* ---- channels ---- */

static uint32_t hash_name(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static channel *channel_find(const char *name, size_t len, uint32_t h)
{
    for (channel *ch = L.table[h & (L.tsize - 1)]; ch; ch = ch->next)
        if (ch->hash == h && ch->len == len && memcmp(ch->name, name, len) == 0)
            return ch;
    return NULL;
}

static void table_grow(void)
{
    size_t ns = L.tsize * 2;
    channel **t = calloc(ns, sizeof *t);
    if (!t)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < L.tsize; i++) {
        for (channel *ch = L.table[i], *next; ch; ch = next) {
            next = ch->next;
            ch->next = t[ch->hash & (ns - 1)];
            t[ch->hash & (ns - 1)] = ch;
        }
    }
    free(L.table);
    L.table = t;
    L.tsize = ns;
}

static void channel_free(channel *ch)
{
    channel **pp = &L.table[ch->hash & (L.tsize - 1)];
    while (*pp != ch)
        pp = &(*pp)->next;
    *pp = ch->next;
    L.nchannels--;
    free(ch->subs);
    free(ch->mslot);
    free(ch);
}

static int subscribe(conn *c, const char *name, size_t len)
{
    uint32_t h = hash_name(name, len);
    channel *ch = channel_find(name, len, h);
    if (c->nsubs == LIMIT_MAX_SUBS)
        return -1;
    if (ch) {
        for (int i = 0; i < c->nsubs; i++)
            if (c->subs[i].ch == ch)
                return 0;
    } else {
        ch = calloc(1, sizeof *ch + len + 1);
        if (!ch)
            return -1;
        memcpy(ch->name, name, len);
        ch->len = len;
        ch->hash = h;
        ch->next = L.table[h & (L.tsize - 1)];
        L.table[h & (L.tsize - 1)] = ch;
        if (++L.nchannels > L.tsize)
            table_grow();
    }
    if (ch->nsubs == ch->cap) {
        int cap = ch->cap ? ch->cap * 2 : 4;
        conn **s = realloc(ch->subs, (size_t)cap * sizeof *s);
        if (s)
            ch->subs = s;
        uint8_t *m = s ? realloc(ch->mslot, (size_t)cap) : NULL;
        if (m)
            ch->mslot = m;
        if (!m) {
            if (ch->nsubs == 0)
                channel_free(ch);
            return -1;
        }
        ch->cap = cap;
    }
    ch->subs[ch->nsubs] = c;
    ch->mslot[ch->nsubs] = (uint8_t)c->nsubs;
    c->subs[c->nsubs++] = (member){ch, ch->nsubs++};
    return 0;
}

static void unsubscribe_all(conn *c)
{
    for (int i = 0; i < c->nsubs; i++) {
        channel *ch = c->subs[i].ch;
        int idx = c->subs[i].idx, last = --ch->nsubs;
        if (idx != last) {
            conn *moved = ch->subs[last];
            ch->subs[idx] = moved;
            ch->mslot[idx] = ch->mslot[last];
            moved->subs[ch->mslot[idx]].idx = idx;
        }
        if (ch->nsubs == 0)
            channel_free(ch);
    }
    c->nsubs = 0;
}

/* ---- connections ---- */

static void set_epout(conn *c, int on)
{
    if (c->epout == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u64 = (uint64_t)c->fd};
    if (epoll_ctl(L.ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->epout = on;
}

/* Queues the connection for closing at the end of the loop turn, so its
 * descriptor is not reused while events for it may still be pending. A
 * CLOSING connection's queued output is written first, best effort. */
static void kill_conn(conn *c, enum cstate how)
{
    if (c->state == CS_DEAD || (c->state == CS_CLOSING && how == CS_CLOSING))
        return;
    c->state = how;
    if (!c->listed_dead) {
        c->listed_dead = 1;
        c->dead_next = L.dead;
        L.dead = c;
    }
}

static void mark_dirty(conn *c)
{
    if (!c->dirty) {
        c->dirty = 1;
        c->dirty_next = L.dirty;
        L.dirty = c;
    }
}

static int out_reserve(conn *c, size_t n)
{
    if (c->len + n <= c->cap)
        return 0;
    if (c->off) {
        size_t shift = c->off;
        memmove(c->out, c->out + shift, c->len - shift);
        c->len -= shift;
        c->off = 0;
        if (c->frame_at != LIMIT_NO_FRAME)
            c->frame_at -= shift;
        if (c->len + n <= c->cap)
            return 0;
    }
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + n)
        cap *= 2;
    uint8_t *o = realloc(c->out, cap);
    if (!o)
        return -1;
    c->out = o;
    c->cap = cap;
    return 0;
}

/* Writes the open frame's header into its 4-byte slot: a 126-form header
 * fills it; a short one takes its last 2 bytes when it starts the unsent
 * output, else the (under 126-byte) payload moves up by 2. */
static void close_frame(conn *c)
{
    if (c->frame_at == LIMIT_NO_FRAME)
        return;
    size_t plen = c->len - c->frame_at - 4;
    uint8_t *h = c->out + c->frame_at;
    if (plen >= 126) {
        h[0] = 0x81;
        h[1] = 126;
        h[2] = (uint8_t)(plen >> 8);
        h[3] = (uint8_t)plen;
    } else if (c->frame_at == c->off) {
        h[2] = 0x81;
        h[3] = (uint8_t)plen;
        c->off += 2;
    } else {
        memmove(h + 2, h + 4, plen);
        h[0] = 0x81;
        h[1] = (uint8_t)plen;
        c->len -= 2;
    }
    c->frame_at = LIMIT_NO_FRAME;
}

/* Appends one line to the connection's open text frame. */
static void deliver(conn *c, const char *line, size_t n)
{
    if (c->state != CS_WS)
        return;
    if (c->len - c->off + n + 5 > LIMIT_OUT_MAX) {
        kill_conn(c, CS_DEAD); /* slow consumer */
        return;
    }
    if (c->frame_at != LIMIT_NO_FRAME && c->len - c->frame_at - 4 + 1 + n > LIMIT_MAX_FRAME)
        close_frame(c);
    if (out_reserve(c, n + 4) < 0) {
        kill_conn(c, CS_DEAD);
        return;
    }
    if (c->frame_at == LIMIT_NO_FRAME) {
        c->frame_at = c->len;
        c->len += 4;
    } else {
        c->out[c->len++] = '\n';
    }
    memcpy(c->out + c->len, line, n);
    c->len += n;
    mark_dirty(c);
}

/* Queues raw bytes (the HTTP response) or a control frame. */
static void queue_bytes(conn *c, const void *p, size_t n)
{
    close_frame(c);
    if (out_reserve(c, n) < 0) {
        kill_conn(c, CS_DEAD);
        return;
    }
    memcpy(c->out + c->len, p, n);
    c->len += n;
    mark_dirty(c);
}

static void queue_control(conn *c, int opcode, const uint8_t *p, size_t n)
{
    uint8_t f[2 + 125];
    f[0] = (uint8_t)(0x80 | opcode);
    f[1] = (uint8_t)n;
    memcpy(f + 2, p, n);
    queue_bytes(c, f, n + 2);
}

static void close_with(conn *c, unsigned code)
{
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    if (c->state == CS_WS)
        queue_control(c, 0x8, p, 2);
    kill_conn(c, CS_CLOSING);
}

/* One write() with everything unsent. */
static void flush(conn *c)
{
    close_frame(c);
    if (c->off == c->len)
        return;
    ssize_t n = send(c->fd, c->out + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            kill_conn(c, CS_DEAD);
        else
            set_epout(c, 1);
        return;
    }
    c->off += (size_t)n;
    if (c->off < c->len) {
        set_epout(c, 1);
        return;
    }
    c->off = c->len = 0;
    if (c->cap > LIMIT_OUT_KEEP) {
        free(c->out);
        c->out = NULL;
        c->cap = 0;
    }
    set_epout(c, 0);
}

static void free_conn(conn *c)
{
    unsubscribe_all(c);
    L.conns[c->fd] = NULL;
    close(c->fd);
    free(c->rx);
    free(c->out);
    free(c);
}

/* ---- HTTP upgrade ---- */

static int valid_channel(const char *s, size_t n)
{
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@.:=-";
    if (n == 0 || n > LIMIT_MAX_CHANNEL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(ok, s[i]))
            return 0;
    return 1;
}

static void refuse(conn *c, const char *status)
{
    char r[128];
    int n = snprintf(r, sizeof r, "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                     status);
    queue_bytes(c, r, (size_t)n);
    kill_conn(c, CS_CLOSING);
}

/* Handles the complete request head [h, h+len). */
static void upgrade(conn *c, const char *h, size_t len)
{
    const char *eol = memchr(h, '\n', len);
    const char *sp1 = memchr(h, ' ', len);
    if (!eol || !sp1 || sp1 - h != 3 || memcmp(h, "GET", 3) != 0) {
        refuse(c, "400 Bad Request");
        return;
    }
    const char *path = sp1 + 1;
    const char *sp2 = memchr(path, ' ', (size_t)(eol - path));
    if (!sp2 || *path != '/') {
        refuse(c, "400 Bad Request");
        return;
    }
    size_t plen = (size_t)(sp2 - path);

    int up = 0, conn_up = 0, version = 0;
    const char *key = NULL;
    size_t klen = 0;
    const char *p = eol + 1, *end = h + len, *name, *v;
    size_t nl, vl;
    while (lg_ws_next_header(&p, end, &name, &nl, &v, &vl)) {
#define NAME_IS(s) (nl == sizeof(s) - 1 && strncasecmp(name, s, nl) == 0)
        if (NAME_IS("Upgrade"))
            up = lg_ws_has_token(v, vl, "websocket");
        else if (NAME_IS("Connection"))
            conn_up = lg_ws_has_token(v, vl, "upgrade");
        else if (NAME_IS("Sec-WebSocket-Version"))
            version = vl == 2 && memcmp(v, "13", 2) == 0;
        else if (NAME_IS("Sec-WebSocket-Key")) {
            key = v;
            klen = vl;
        }
#undef NAME_IS
    }
    if (!up || !conn_up || !version || klen != LG_WS_KEY_BYTES) {
        refuse(c, "400 Bad Request");
        return;
    }
    if (plen >= 5 && memcmp(path, "/sub/", 5) == 0) {
        const char *s = path + 5, *pe = path + plen;
        while (s <= pe) {
            const char *comma = memchr(s, ',', (size_t)(pe - s));
            const char *ce = comma ? comma : pe;
            if (!valid_channel(s, (size_t)(ce - s)) || subscribe(c, s, (size_t)(ce - s)) < 0) {
                unsubscribe_all(c);
                refuse(c, "400 Bad Request");
                return;
            }
            s = ce + 1;
        }
    }
    char k[LG_WS_KEY_BYTES + 1], accept[LG_WS_ACCEPT_BYTES + 1], r[256];
    memcpy(k, key, klen);
    k[klen] = '\0';
    lg_ws_accept_for(k, accept);
    int n = snprintf(r, sizeof r,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    queue_bytes(c, r, (size_t)n);
    c->state = CS_WS;
}

/* ---- WebSocket frames ---- */

static void on_text(conn *c, const char *p, size_t n)
{
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *sp = memchr(p, ' ', (size_t)(le - p));
        if (sp && sp > p) {
            size_t cl = (size_t)(sp - p);
            channel *ch = channel_find(p, cl, hash_name(p, cl));
            if (ch)
                for (int i = 0; i < ch->nsubs; i++)
                    deliver(ch->subs[i], p, (size_t)(le - p));
        }
        p = le + 1;
    }
}

/* Consumes complete frames from `buf`; returns the bytes used. */
static size_t on_frames(conn *c, uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (c->state == CS_WS && len - off >= 2) {
        uint8_t *f = buf + off;
        size_t avail = len - off, h = 2;
        int fin = f[0] & 0x80, op = f[0] & 0x0f;
        uint64_t plen = f[1] & 0x7f;
        if ((f[0] & 0x70) || !(f[1] & 0x80)) {
            close_with(c, 1002); /* reserved bits, or an unmasked client frame */
            break;
        }
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = (uint64_t)f[2] << 8 | f[3];
            h = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | f[2 + i];
            h = 10;
        }
        if (plen > LIMIT_MAX_FRAME) {
            close_with(c, 1009);
            break;
        }
        if (avail < h + 4 + plen)
            break;
        uint8_t *m = f + h, *p = f + h + 4;
        size_t n = (size_t)plen;
        for (size_t i = 0; i < n; i++)
            p[i] ^= m[i & 3];
        off += h + 4 + n;
        if (op == 0x1 && fin) {
            on_text(c, (const char *)p, n);
        } else if (op == 0x9) {
            if (!fin || n > 125) {
                close_with(c, 1002);
                break;
            }
            queue_control(c, 0xA, p, n);
        } else if (op == 0xA) {
            continue;
        } else if (op == 0x8) {
            close_with(c, n >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 1000);
        } else {
            close_with(c, 1003); /* binary or fragmented: not spoken here */
        }
    }
    return off;
}

static size_t on_bytes(conn *c, uint8_t *buf, size_t len)
{
    size_t used = 0;
    if (c->state == CS_HTTP) {
        size_t end = lg_ws_head_end((const char *)buf, len < LIMIT_MAX_HEAD ? len : LIMIT_MAX_HEAD);
        if (end == 0) {
            if (len >= LIMIT_MAX_HEAD)
                refuse(c, "431 Request Header Fields Too Large");
            return len >= LIMIT_MAX_HEAD ? len : 0;
        }
        upgrade(c, (const char *)buf, end);
        used = end;
    }
    return used + on_frames(c, buf + used, len - used);
}

static void on_readable(conn *c)
{
    uint8_t *buf = L.scratch;
    size_t have = 0, cap = LIMIT_SCRATCH;
    if (c->rx_len) {
        buf = c->rx;
        have = c->rx_len;
        cap = c->rx_cap;
    }
    ssize_t n = recv(c->fd, buf + have, cap - have, 0);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            kill_conn(c, CS_DEAD);
        return;
    }
    have += (size_t)n;
    size_t used = on_bytes(c, buf, have);
    if (c->state >= CS_CLOSING) {
        c->rx_len = 0;
        return;
    }
    size_t left = have - used;
    if (buf == c->rx) {
        memmove(c->rx, c->rx + used, left);
        c->rx_len = left;
        return;
    }
    if (!left)
        return;
    /* A partial head or frame waits in a buffer of its own, sized for the
     * largest one, so the next read completes it. */
    if (!c->rx) {
        c->rx_cap = LIMIT_MAX_FRAME + 14 > LIMIT_MAX_HEAD ? LIMIT_MAX_FRAME + 14 : LIMIT_MAX_HEAD;
        c->rx = malloc(c->rx_cap);
        if (!c->rx) {
            c->rx_cap = 0;
            kill_conn(c, CS_DEAD);
            return;
        }
    }
    memcpy(c->rx, buf + used, left);
    c->rx_len = left;
}

/* ---- loop ---- */

static void on_accept(void)
{
    for (int i = 0; i < LIMIT_ACCEPT_BATCH; i++) {
        int fd = accept4(L.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: take the connection with the spare
                 * one and close it, so the listener does not spin. */
                close(L.spare_fd);
                int x = accept(L.lfd, NULL, NULL);
                if (x >= 0)
                    close(x);
                L.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            }
            return;
        }
        conn *c = (size_t)fd < L.max_fd ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        c->frame_at = LIMIT_NO_FRAME;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)fd};
        if (epoll_ctl(L.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
            continue;
        }
        L.conns[fd] = c;
    }
}

/* The end of a loop turn: one write per connection with output, then the
 * closes. */
static void end_turn(void)
{
    while (L.dirty) {
        conn *c = L.dirty;
        L.dirty = c->dirty_next;
        c->dirty = 0;
        if (c->state != CS_DEAD)
            flush(c);
    }
    while (L.dead) {
        conn *c = L.dead;
        L.dead = c->dead_next;
        free_conn(c);
    }
}

static void listen_on(const char *spec)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof host)
        die("--listen takes 127.x.y.z:PORT");
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    char *e;
    long port = strtol(colon + 1, &e, 10);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (*e || e == colon + 1 || port < 0 || port > 65535 ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        die("--listen takes 127.x.y.z:PORT");
    if ((ntohl(sa.sin_addr.s_addr) >> 24) != 127)
        die("refusing to listen outside 127.0.0.0/8");
    L.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(L.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (L.lfd < 0 || bind(L.lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(L.lfd, 4096) < 0)
        die("cannot listen there");
    socklen_t sl = sizeof sa;
    getsockname(L.lfd, (struct sockaddr *)&sa, &sl);
    fprintf(stderr, "{\"msg\":\"listening\",\"port\":%d}\n", ntohs(sa.sin_port));
    fflush(stderr);
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--listen") != 0) {
        fputs("usage: limit --listen 127.0.0.1:PORT\n", stderr);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    L.max_fd = rl.rlim_cur < (1u << 20) ? (size_t)rl.rlim_cur : (1u << 20);

    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    signal(SIGPIPE, SIG_IGN);

    L.tsize = 1024;
    L.table = calloc(L.tsize, sizeof *L.table);
    L.conns = calloc(L.max_fd, sizeof *L.conns);
    L.scratch = malloc(LIMIT_SCRATCH);
    L.ep = epoll_create1(EPOLL_CLOEXEC);
    L.sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
    L.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!L.table || !L.conns || !L.scratch || L.ep < 0 || L.sfd < 0)
        die("out of memory or descriptors");
    listen_on(argv[2]);

    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_LISTEN};
    epoll_ctl(L.ep, EPOLL_CTL_ADD, L.lfd, &ev);
    ev.data.u64 = EV_SIGNAL;
    epoll_ctl(L.ep, EPOLL_CTL_ADD, L.sfd, &ev);

    struct epoll_event evs[1024];
    while (!L.stop) {
        int n = epoll_wait(L.ep, evs, (int)(sizeof evs / sizeof evs[0]), 1000);
        if (n < 0 && errno != EINTR)
            die("epoll_wait failed");
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            if (d == EV_LISTEN) {
                on_accept();
                continue;
            }
            if (d == EV_SIGNAL) {
                L.stop = 1;
                continue;
            }
            conn *c = d < L.max_fd ? L.conns[d] : NULL;
            if (!c || c->state >= CS_CLOSING)
                continue;
            if (evs[i].events & EPOLLOUT)
                flush(c);
            if (c->state < CS_CLOSING && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                on_readable(c);
        }
        end_turn();
    }
    for (size_t fd = 0; fd < L.max_fd; fd++)
        if (L.conns[fd])
            free_conn(L.conns[fd]);
    free(L.conns);
    free(L.table);
    free(L.scratch);
    close(L.lfd);
    close(L.sfd);
    close(L.ep);
    if (L.spare_fd >= 0)
        close(L.spare_fd);
    return 0;
}
