/*
 * lg_conn.c - load generator connections (see lg_conn.h).
 */
#define _GNU_SOURCE
#include "lg_conn.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define LG_READ_CHUNK 65536
#define LG_SCRATCH (256u << 10)
#define LG_TX_MAX (8u << 20) /* per-connection outbound bound */

int64_t lg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * LG_NS + ts.tv_nsec;
}

/* xorshift64*: frame masks only need to be unpredictable to intermediaries,
 * and a CSPRNG call per frame would dominate the publisher's cost. */
static uint32_t rng32(lg_net *net)
{
    net->rng ^= net->rng >> 12;
    net->rng ^= net->rng << 25;
    net->rng ^= net->rng >> 27;
    return (uint32_t)((net->rng * UINT64_C(2685821657736338717)) >> 32);
}

/* ---- tallies ---- */

void lg_tally_add(lg_tally *t, const char *name, size_t len)
{
    char clean[40];
    size_t n = 0;
    /* Names may come from the peer (error codes): keep them JSON-safe. */
    for (size_t i = 0; i < len && n + 1 < sizeof clean; i++) {
        char ch = name[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.';
        clean[n++] = ok ? ch : '_';
    }
    clean[n] = '\0';
    for (int i = 0; i < t->count; i++) {
        if (strcmp(t->item[i].name, clean) == 0) {
            t->item[i].n++;
            return;
        }
    }
    if (t->count == LG_TALLY) {
        snprintf(t->item[LG_TALLY - 1].name, sizeof t->item[0].name, "other");
        t->item[LG_TALLY - 1].n++;
        return;
    }
    snprintf(t->item[t->count].name, sizeof t->item[0].name, "%s", clean);
    t->item[t->count++].n = 1;
}

void lg_tally_str(lg_tally *t, const char *s)
{
    lg_tally_add(t, s, strlen(s));
}

void lg_tally_print(const char *key, const lg_tally *t)
{
    printf(",\"%s\":{", key);
    for (int i = 0; i < t->count; i++)
        printf("%s\"%s\":%llu", i ? "," : "", t->item[i].name,
               (unsigned long long)t->item[i].n);
    putchar('}');
}

/* ---- lifecycle ---- */

int lg_net_init(lg_net *net, int nconns)
{
    net->ep = epoll_create1(EPOLL_CLOEXEC);
    net->conns = calloc((size_t)nconns, sizeof *net->conns);
    net->scratch = malloc(LG_SCRATCH);
    if (net->ep < 0 || !net->conns || !net->scratch)
        return -1;
    net->nconns = nconns;
    for (int i = 0; i < nconns; i++) {
        net->conns[i].fd = -1;
        lg_ws_reader_init(&net->conns[i].rd, LG_MAX_MESSAGE);
    }
    if (RAND_bytes((unsigned char *)&net->rng, sizeof net->rng) != 1 || net->rng == 0)
        net->rng = (uint64_t)lg_now_ns() | 1;
    return 0;
}

void lg_net_free(lg_net *net)
{
    for (int i = 0; i < net->nconns; i++) {
        lg_conn *c = &net->conns[i];
        if (c->state == LG_CS_READY &&
            lg_conn_queue_frame(net, c, LG_WS_CLOSE, "\x03\xe8", 2) == 0)
            lg_conn_flush(net, c);
        lg_conn_release(net, c);
    }
    free(net->conns);
    free(net->scratch);
    net->conns = NULL;
    net->scratch = NULL;
    if (net->ep >= 0)
        close(net->ep);
    net->ep = -1;
}

int lg_conn_in_handshake(const lg_conn *c)
{
    return c->state >= LG_CS_CONNECTING && c->state < LG_CS_READY;
}

size_t lg_conn_pending(const lg_conn *c)
{
    return c->tx_len - c->tx_off;
}

void lg_conn_release(lg_net *net, lg_conn *c)
{
    (void)net;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->tx)
        OPENSSL_cleanse(c->tx, c->tx_cap); /* may hold the upgrade request */
    free(c->tx);
    free(c->rx);
    free(c->next_n);
    c->tx = c->rx = NULL;
    c->next_n = NULL;
    c->tx_cap = c->tx_len = c->tx_off = c->rx_cap = c->rx_len = 0;
    c->n_next = 0;
    c->epout = 0;
    lg_ws_reader_free(&c->rd);
    lg_stream_free(&c->st);
}

void lg_conn_drop(lg_net *net, lg_conn *c)
{
    if (lg_conn_in_handshake(c))
        net->inflight--;
    else if (c->state == LG_CS_READY)
        net->open--;
    lg_conn_release(net, c);
    c->state = LG_CS_NEW;
    c->waiting = 0;
    c->pub_n = 0;
}

void lg_conn_mark_dead(lg_net *net, lg_conn *c, const char *why)
{
    if (c->state == LG_CS_DEAD)
        return;
    if (lg_conn_in_handshake(c)) {
        net->inflight--;
        net->failed++;
        lg_tally_str(&net->failures, why);
    } else if (c->state == LG_CS_READY) {
        net->open--;
        lg_tally_str(&net->closes, why);
    }
    c->state = LG_CS_DEAD;
}

void lg_conn_kill(lg_net *net, lg_conn *c, const char *why)
{
    lg_conn_mark_dead(net, c, why);
    lg_conn_release(net, c);
}

void lg_conn_set_ready(lg_net *net, lg_conn *c)
{
    net->last_ready = lg_now_ns();
    if (net->ready_hist)
        lg_hist_record(net->ready_hist, (uint64_t)(net->last_ready - c->t_start));
    c->state = LG_CS_READY;
    net->inflight--;
    net->ever_ready++;
    net->open++;
}

/* ---- writing ---- */

static void set_epout(lg_net *net, lg_conn *c, int on)
{
    if (c->epout == on || c->fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.u64 = (uint64_t)(c - net->conns)};
    if (epoll_ctl(net->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->epout = on;
}

static int tx_reserve(lg_conn *c, size_t n)
{
    if (c->tx_off && c->tx_off == c->tx_len)
        c->tx_off = c->tx_len = 0;
    if (c->tx_len + n <= c->tx_cap)
        return 0;
    if (c->tx_off) {
        memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
        c->tx_len -= c->tx_off;
        c->tx_off = 0;
        if (c->tx_len + n <= c->tx_cap)
            return 0;
    }
    if (c->tx_len + n > LG_TX_MAX)
        return -1;
    size_t cap = c->tx_cap ? c->tx_cap : 1024;
    while (cap < c->tx_len + n)
        cap *= 2;
    uint8_t *t = realloc(c->tx, cap);
    if (!t)
        return -1;
    c->tx = t;
    c->tx_cap = cap;
    return 0;
}

int lg_conn_flush(lg_net *net, lg_conn *c)
{
    while (c->tx_off < c->tx_len) {
        ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->tx_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_epout(net, c, 1);
            return 0;
        }
        lg_conn_mark_dead(net, c, "write_error");
        return -1;
    }
    if (c->tx_cap > 65536 || c->state == LG_CS_UPGRADING) {
        /* The upgrade request (with the token) or a publish burst is gone:
         * wipe it and give the memory back so idle connections stay small. */
        OPENSSL_cleanse(c->tx, c->tx_cap);
        free(c->tx);
        c->tx = NULL;
        c->tx_cap = 0;
    }
    c->tx_off = c->tx_len = 0;
    set_epout(net, c, 0);
    return 0;
}

int lg_conn_queue_frame(lg_net *net, lg_conn *c, int opcode, const void *p, size_t len)
{
    if (tx_reserve(c, len + LG_WS_MAX_HEADER) < 0) {
        lg_conn_mark_dead(net, c, "tx_overflow");
        return -1;
    }
    c->tx_len += lg_ws_encode(c->tx + c->tx_len, opcode, p, len, rng32(net));
    return 0;
}

int lg_conn_send(lg_net *net, lg_conn *c, int opcode, const void *p, size_t len)
{
    if (lg_conn_queue_frame(net, c, opcode, p, len) < 0)
        return -1;
    return lg_conn_flush(net, c);
}

/* ---- connecting ---- */

void lg_conn_start(lg_net *net, lg_conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = LG_CS_CONNECTING;
    c->t_start = lg_now_ns();
    c->deadline = c->t_start + net->handshake_ns;
    net->inflight++;
    if (c->fd < 0) {
        lg_conn_kill(net, c, errno == EMFILE || errno == ENFILE ? "fd_limit" : "socket");
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (net->nsrc) {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_addr = net->src[(c - net->conns) % net->nsrc]};
        /* Leave the port to connect(), so each source address gets its own
         * ephemeral range against the one broker address. */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            lg_conn_kill(net, c, "bind");
            return;
        }
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)net->port),
                              .sin_addr = net->dst};
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        lg_conn_kill(net, c, errno == EADDRNOTAVAIL ? "no_ephemeral_port"
                             : errno == ECONNREFUSED ? "connect_refused" : "connect");
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                             .data.u64 = (uint64_t)(c - net->conns)};
    if (epoll_ctl(net->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        lg_conn_kill(net, c, "epoll");
        return;
    }
    c->epout = 1;
}

static void on_connected(lg_net *net, lg_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        lg_conn_kill(net, c, err == ECONNREFUSED ? "connect_refused" : "connect");
        return;
    }
    if (lg_ws_make_key(c->key) < 0) {
        lg_conn_kill(net, c, "rand");
        return;
    }
    char path[LG_MAX_PATH + 1];
    const char *p = net->path;
    if (net->path_for) {
        if (net->path_for(net, c, path, sizeof path) == 0) {
            lg_conn_kill(net, c, "path_too_long");
            return;
        }
        p = path;
    }
    size_t need = (net->token ? strlen(net->token) : 0) + strlen(p) + 512;
    if (tx_reserve(c, need) < 0) {
        lg_conn_kill(net, c, "tx_overflow");
        return;
    }
    size_t n = lg_ws_request((char *)c->tx, c->tx_cap, net->host, net->port, p, c->key,
                             net->subprotocol, net->token);
    if (n == 0) {
        lg_conn_kill(net, c, "request_too_large");
        return;
    }
    c->tx_len = n;
    c->state = LG_CS_UPGRADING;
    if (lg_conn_flush(net, c) < 0)
        lg_conn_release(net, c);
}

/* ---- reading ---- */

typedef struct reading {
    lg_net *net;
    lg_conn *c;
} reading;

static int on_message(void *ud, int opcode, const uint8_t *p, size_t len)
{
    reading *r = ud;
    lg_net *net = r->net;
    lg_conn *c = r->c;
    if (opcode == LG_WS_TEXT || opcode == LG_WS_BINARY) {
        net->on_message(net, c, opcode, p, len);
    } else if (opcode == LG_WS_PING) {
        if (lg_conn_queue_frame(net, c, LG_WS_PONG, p, len) == 0)
            lg_conn_flush(net, c);
    } else if (opcode == LG_WS_CLOSE) {
        unsigned code = len >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 1005;
        char why[24];
        snprintf(why, sizeof why, "close_%u", code);
        if (lg_conn_queue_frame(net, c, LG_WS_CLOSE, p, len >= 2 ? 2 : 0) == 0)
            lg_conn_flush(net, c);
        lg_conn_mark_dead(net, c, why);
    }
    return c->state == LG_CS_DEAD;
}

/* Handles `have` bytes at `buf`: the rest of the response head while
 * upgrading, then frames. Returns the bytes consumed. */
static size_t process(lg_net *net, lg_conn *c, uint8_t *buf, size_t have)
{
    size_t off = 0;
    if (c->state == LG_CS_UPGRADING) {
        size_t end = lg_ws_head_end((const char *)buf, have);
        if (end == 0) {
            if (have > LG_WS_MAX_HEAD)
                lg_conn_mark_dead(net, c, "head_too_large");
            return 0;
        }
        char why[64];
        if (lg_ws_check_response((const char *)buf, end, c->key, net->subprotocol, why,
                                 sizeof why) < 0) {
            char tag[80];
            snprintf(tag, sizeof tag, "upgrade_%s", why);
            for (size_t i = 0; tag[i]; i++)
                if (tag[i] == ' ')
                    tag[i] = '_';
            lg_conn_mark_dead(net, c, tag);
            return end;
        }
        c->state = LG_CS_GREETING;
        off = end;
        net->on_open(net, c);
        if (c->state == LG_CS_DEAD)
            return have;
    }
    reading r = {net, c};
    long n = lg_ws_reader_feed(&c->rd, buf + off, have - off, on_message, &r);
    if (n < 0) {
        lg_conn_mark_dead(net, c, "protocol_error");
        return have;
    }
    return off + (size_t)n;
}

static void on_readable(lg_net *net, lg_conn *c)
{
    uint8_t *buf;
    size_t have, cap;
    /* Most reads end on a frame boundary: read into the shared scratch
     * buffer and keep only a partial frame per connection. */
    if (c->rx_len) {
        if (c->rx_cap < c->rx_len + LG_READ_CHUNK) {
            uint8_t *r = realloc(c->rx, c->rx_len + LG_READ_CHUNK);
            if (!r) {
                lg_conn_kill(net, c, "oom");
                return;
            }
            c->rx = r;
            c->rx_cap = c->rx_len + LG_READ_CHUNK;
        }
        buf = c->rx;
        have = c->rx_len;
        cap = c->rx_cap;
    } else {
        buf = net->scratch;
        have = 0;
        cap = LG_SCRATCH;
    }
    ssize_t n = recv(c->fd, buf + have, cap - have, 0);
    if (n == 0) {
        lg_conn_kill(net, c, "eof");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            lg_conn_kill(net, c, errno == ECONNRESET ? "reset" : "read_error");
        return;
    }
    have += (size_t)n;
    net->now_read = lg_now_ns();
    size_t used = process(net, c, buf, have);
    if (c->state == LG_CS_DEAD) {
        lg_conn_release(net, c);
        return;
    }
    size_t left = have - used;
    if (left > LG_MAX_MESSAGE + LG_WS_MAX_HEADER + LG_WS_MAX_HEAD) {
        lg_conn_kill(net, c, "frame_too_large");
        return;
    }
    if (buf == c->rx) {
        memmove(c->rx, c->rx + used, left);
        c->rx_len = left;
        if (left == 0 && c->rx_cap > 4 * LG_READ_CHUNK) {
            free(c->rx);
            c->rx = NULL;
            c->rx_cap = 0;
        }
    } else if (left) {
        /* A buffer kept from an earlier partial frame is reused. */
        if (c->rx_cap < left) {
            free(c->rx);
            c->rx = malloc(left + LG_READ_CHUNK);
            c->rx_cap = c->rx ? left + LG_READ_CHUNK : 0;
            if (!c->rx) {
                lg_conn_kill(net, c, "oom");
                return;
            }
        }
        memcpy(c->rx, buf + used, left);
        c->rx_len = left;
    }
}

void lg_conn_on_event(lg_net *net, lg_conn *c, uint32_t events)
{
    if (c->state == LG_CS_DEAD || c->fd < 0)
        return;
    if (c->state == LG_CS_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            on_connected(net, c);
        return;
    }
    if (events & EPOLLOUT) {
        if (lg_conn_flush(net, c) < 0) {
            lg_conn_release(net, c);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(net, c);
}
