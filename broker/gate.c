/* gate.c - the request gate: client requests reach lws's HTTP server over
 * a socketpair one at a time, answers come back unchanged (see gate.h). */
#include "gate.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "prelude.h"

#define GATE_IN_MAX LK_PRELUDE_MAX       /* client bytes held: one head at most */
#define GATE_IN_FIRST 4096               /* grown on demand, freed when empty */
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
    unsigned char *in;           /* client bytes not yet passed on */
    size_t in_len, in_cap;       /* in_cap <= GATE_IN_MAX */
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

/* ------------------------------------------------------------ client address */

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

const char *lk_gate_peer(struct lws *wsi, char *buf, size_t len)
{
    lk_peer *peer = peer_of(wsi);
    if (!peer)
        return lws_get_peer_simple(wsi, buf, len);
    if (!peer->ip[0] || !len)
        return NULL;
    snprintf(buf, len, "%s", peer->ip);
    return buf;
}

void lk_gate_forget(struct lws *wsi)
{
    lk_peer *peer = peer_of(wsi);
    if (!peer)
        return;
    lws_set_opaque_user_data(wsi, NULL);
    free(peer);
}

/* ------------------------------------------------------------ passing bytes */

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
    wipe_free(g->in, g->in_cap);
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
    if (!g->in_len) {
        /* An idle kept-alive connection holds no buffer. */
        wipe_free(g->in, g->in_cap);
        g->in = NULL;
        g->in_cap = 0;
    }
}

/* Room for more client bytes, up to GATE_IN_MAX in all: 0 or -1. */
static int grow_in(lk_gate *g)
{
    if (g->in_len < g->in_cap)
        return 0;
    size_t ncap = g->in_cap ? g->in_cap * 2 : GATE_IN_FIRST;
    if (ncap > GATE_IN_MAX)
        ncap = GATE_IN_MAX;
    if (ncap <= g->in_len)
        return -1;
    unsigned char *n = malloc(ncap);
    if (!n)
        return -1;
    if (g->in_len)
        memcpy(n, g->in, g->in_len);
    wipe_free(g->in, g->in_cap);
    g->in = n;
    g->in_cap = ncap;
    return 0;
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
        if (g->in_len)
            consume_in(g, g->in_len);
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
int lk_gate_client_rx(lk_gate *g)
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
    if (grow_in(g))
        return -1;
    ssize_t n = recv(fd, g->in + g->in_len, g->in_cap - g->in_len, MSG_DONTWAIT);
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

int lk_gate_client_writeable(lk_gate *g)
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
int lk_gate_pipe_rx(lk_gate *g)
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

int lk_gate_pipe_writeable(lk_gate *g)
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

void lk_gate_client_gone(lk_gate *g)
{
    g->client = NULL;
    lws_sul_cancel(&g->sul);
    kill_async(g->pipe);
    gate_unref(g);
}

void lk_gate_pipe_gone(lk_gate *g)
{
    g->pipe = NULL;
    g->pipe_eof = 1;
    g->pipe_shut = 1;
    if (g->client)
        lws_callback_on_writable(g->client);
    gate_unref(g);
}

int lk_gate_start(lk_broker *b, struct lws *client, const char *pre, size_t pre_len,
                  lk_gate **gate, int *handed_off)
{
    int sv[2];
    *gate = NULL;
    if (pre_len > GATE_IN_MAX ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    lk_gate *g = calloc(1, sizeof *g);
    lk_peer *peer = calloc(1, sizeof *peer);
    unsigned char *in = pre_len ? malloc(pre_len) : NULL;
    if (!g || !peer || (pre_len && !in)) {
        free(g);
        free(peer);
        free(in);
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    g->b = b;
    g->in = in;
    if (pre_len)
        memcpy(g->in, pre, pre_len);
    g->in_len = g->in_cap = pre_len;
    g->client = client;
    g->refs = 1;   /* the client's */
    g->timeout = TO_STALL;   /* the prelude's head timeout is running */
    *gate = g;

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
    if (!lws_get_peer_simple(client, peer->ip, sizeof peer->ip))
        peer->ip[0] = '\0';
    memset(&d, 0, sizeof d);
    d.vh = b->vh;
    d.type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP;
    d.fd.sockfd = sv[0];
    d.opaque = peer;
    uint64_t seen = b->destroyed;
    *handed_off = 1;
    struct lws *nw = lws_adopt_descriptor_vhost_via_info(&d);
    if (!nw) {
        if (b->destroyed == seen) {
            /* lws never made a wsi: the socket count is still the caller's. */
            *handed_off = 0;
            free(peer);
        }
        close_if_open(sv[0]);
        return -1;
    }
    return gate_pump(g);
}

lk_gate *lk_gate_of_pipe(struct lws *wsi)
{
    return lws_get_opaque_user_data(wsi);
}
