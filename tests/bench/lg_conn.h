/*
 * lg_conn.h - the load generator's connections on one epoll set:
 * nonblocking connect (optionally from several 127.0.0.x source addresses),
 * the WebSocket upgrade (with a subprotocol and, for latchkey, the token as
 * the bearer.<token> subprotocol), buffered masked writes, frame reading,
 * ping -> pong and close replies. What the protocol on top does is left to
 * the lg_net.on_open and lg_net.on_message hooks (lg_client.c).
 *
 * Ownership: lg_net owns the connection array and every connection buffer;
 * lg_net_free releases them. The token and path strings stay the caller's.
 *
 * Thread safety: none; one lg_net per thread.
 */
#ifndef LG_CONN_H
#define LG_CONN_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "lg_hist.h"
#include "lg_proto.h"
#include "lg_ws.h"

#define LG_MAX_SRC 64
#define LG_MAX_PATH 1100 /* longest upgrade path */
#define LG_MAX_MESSAGE (16u << 20) /* largest server frame or message */
#define LG_TALLY 24
#define LG_NS INT64_C(1000000000)
#define LG_MS INT64_C(1000000)

typedef enum lg_cstate {
    LG_CS_NEW,         /* not started */
    LG_CS_CONNECTING,  /* TCP connect in progress */
    LG_CS_UPGRADING,   /* request sent, waiting for the 101 */
    LG_CS_GREETING,    /* WebSocket open, waiting for welcome / INFO / CONNACK */
    LG_CS_SUBSCRIBING, /* subscriptions (or the NATS PING) sent, waiting for replies */
    LG_CS_READY,
    LG_CS_DEAD
} lg_cstate;

typedef struct lg_conn {
    int fd;
    lg_cstate state;
    int epout;              /* EPOLLOUT currently armed */
    int64_t deadline;       /* handshake deadline */
    int64_t t_start;        /* when the connect began */
    uint8_t *rx;            /* bytes of an incomplete head or frame */
    size_t rx_len, rx_cap;
    uint8_t *tx;            /* unsent bytes are tx[tx_off, tx_len) */
    size_t tx_off, tx_len, tx_cap;
    lg_ws_reader rd;
    lg_stream st;           /* NATS/MQTT: a message split across frames */
    char key[LG_WS_KEY_BYTES + 1];
    uint8_t waiting;        /* subscribe replies still due */
    /* Mode state, owned by the connection so it is freed with it. */
    uint32_t *next_n;       /* sub: next expected `n` per (publisher id, channel kind) */
    uint32_t n_next;        /* publisher ids next_n covers */
    uint32_t pub_n;         /* pub: next `n` when publishing on one channel */
} lg_conn;

/* Counts by name (failure reasons, close codes, error codes), bounded:
 * names past LG_TALLY share an "other" slot. */
typedef struct lg_tally {
    struct {
        char name[40];
        uint64_t n;
    } item[LG_TALLY];
    int count;
} lg_tally;

typedef struct lg_net lg_net;
/* The WebSocket is open (the 101 checked). */
typedef void (*lg_on_open)(lg_net *net, lg_conn *c);
/* One complete text or binary message. */
typedef void (*lg_on_message)(lg_net *net, lg_conn *c, int opcode, const uint8_t *p, size_t len);
/* Writes the upgrade path of a connection; returns its length, 0 if too long. */
typedef size_t (*lg_path_for)(lg_net *net, const lg_conn *c, char *out, size_t cap);

struct lg_net {
    /* Settings, filled by the caller before lg_net_init. */
    char host[INET_ADDRSTRLEN];
    struct in_addr dst;
    int port;
    const char *path;        /* upgrade path, unless path_for is set */
    lg_path_for path_for;
    const char *subprotocol; /* offered and required in the 101; NULL for none */
    const char *token;       /* offered as bearer.<token> when non-NULL */
    struct in_addr src[LG_MAX_SRC];
    int nsrc;
    int64_t handshake_ns;
    lg_on_open on_open;
    lg_on_message on_message;
    void *ud;                /* the hooks' state */

    /* State. */
    int ep;
    lg_conn *conns;
    int nconns;
    int inflight;   /* connections between connect and ready */
    int ever_ready;
    int open;       /* ready connections still open */
    int failed;
    lg_tally failures, closes;
    lg_hist *ready_hist; /* when set: connect-to-ready times, ns */
    int64_t last_ready;  /* clock when a connection last became ready */
    int64_t now_read; /* clock at the last read, for latency */
    uint64_t rng;
    uint8_t *scratch;
};

int64_t lg_now_ns(void);

/* Allocates `nconns` connections and the epoll set. 0 or -1. */
int lg_net_init(lg_net *net, int nconns);
/* Sends a close (1000) on every open connection and frees everything. */
void lg_net_free(lg_net *net);

/* Starts connecting (the index in net->conns is the epoll data). */
void lg_conn_start(lg_net *net, lg_conn *c);
/* Closes the socket at once, with no close frame, uncounted, and makes the
 * connection new again (a reconnect storm). */
void lg_conn_drop(lg_net *net, lg_conn *c);
/* Handles epoll events for a connection. */
void lg_conn_on_event(lg_net *net, lg_conn *c, uint32_t events);
int lg_conn_in_handshake(const lg_conn *c);
/* The handshake is over: counted ready and open. */
void lg_conn_set_ready(lg_net *net, lg_conn *c);
/* Marks the connection dead and counts `why` (as a failure during the
 * handshake, as a close after). Buffers stay until lg_conn_release, so a
 * callback may call this while its message is being read. */
void lg_conn_mark_dead(lg_net *net, lg_conn *c, const char *why);
void lg_conn_release(lg_net *net, lg_conn *c);
void lg_conn_kill(lg_net *net, lg_conn *c, const char *why);
/* Appends a masked frame to the send buffer; -1 (connection marked dead)
 * past the buffer bound. */
int lg_conn_queue_frame(lg_net *net, lg_conn *c, int opcode, const void *p, size_t len);
/* Writes what the socket takes and arms EPOLLOUT for the rest; -1 if the
 * connection died (marked dead, not released). */
int lg_conn_flush(lg_net *net, lg_conn *c);
/* Queues a frame and flushes; -1 if the connection died (marked dead). */
int lg_conn_send(lg_net *net, lg_conn *c, int opcode, const void *p, size_t len);
/* Unsent bytes. */
size_t lg_conn_pending(const lg_conn *c);

void lg_tally_add(lg_tally *t, const char *name, size_t len);
void lg_tally_str(lg_tally *t, const char *s);
/* Prints `,"key":{"name":n,...}` on stdout. */
void lg_tally_print(const char *key, const lg_tally *t);

#endif
