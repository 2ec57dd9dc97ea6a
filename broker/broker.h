/*
 * broker.h - the state of one service thread: its configuration, counters,
 * key table, lws context with its own SO_REUSEPORT listen socket, and the
 * sessions it owns. main() runs one lk_broker per thread (--threads); what
 * they share is the logger (thread-safe), the HTTP API's rate limits
 * (thread-safe) and the hub (hub.h: channels, inboxes, socket count). The
 * only other process-wide state is the lws log hook (see listener.c).
 *
 * Thread safety: every field belongs to its service thread, except the
 * shared pointers named above.
 */
#ifndef LK_BROKER_BROKER_H
#define LK_BROKER_BROKER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <libwebsockets.h>

#include "channel.h"
#include "config.h"
#include "keystore.h"
#include "log.h"
#include "metrics.h"
#include "timers.h"

typedef struct lk_session lk_session;

/* Protocols on the one vhost. LK_PROTO_MAIN (index 0) serves HTTP and the
 * latchkey.v1 WebSocket protocol; it is also lws's default protocol, so
 * clients offering no subprotocol land on it. */
enum {
    LK_PROTO_MAIN = 0,
    LK_PROTO_ACCEPTOR,   /* the adopted listen socket */
    LK_PROTO_PRELUDE,    /* a new connection until its headers are read */
    LK_PROTO_SIGNAL,     /* signalfd */
    LK_PROTO_COUNT
};

/* Per-connection data of LK_PROTO_MAIN starts with this tag, so a callback
 * can tell an HTTP transaction from a WebSocket session. */
enum { LK_CONN_NONE = 0, LK_CONN_HTTP, LK_CONN_WS };

/* Sessions read on after a service pass, at most (lk_sessions_read_more). */
#define LK_HOT_MAX 64

/* Packed WRITEABLE frames stop growing at this size. */
#define LK_PACK_BYTES 65536

typedef struct lk_broker {
    lk_config *cfg;               /* replaced on SIGHUP */
    int argc;
    char **argv;
    size_t thread;                /* 0 .. threads-1; 0 handles signals */
    struct lk_hub *hub;           /* shared */
    lk_log *log;                  /* shared */
    struct lk_ratelimit *api_limits; /* shared (ratelimit.h) */
    lk_metrics metrics;
    lk_keystore *keys;
    struct lk_api *api;           /* HTTP API state (api.h) */
    struct lk_tls *tls;           /* NULL without --tls-cert (tls.h) */

    struct lws_context *ctx;
    struct lws_vhost *vh;
    struct lws *acceptor;
    int listen_fd;
    int port;
    struct lws_protocols protocols[LK_PROTO_COUNT + 1];
    lws_retry_bo_t retry;
    lws_sorted_usec_list_t sul_poll;
    lws_sorted_usec_list_t sul_stop;
    lws_sorted_usec_list_t sul_accept;
    lk_timers timers;             /* session timers (timers.h) */
    int signal_fd;                /* thread 0; -1 once lws owns it */
    unsigned reloads;             /* hub reload requests handled */
    unsigned key_changes;         /* hub keys requests handled */
    struct lk_hub_entry *inbox;   /* taken from the hub, delivered up to */
    size_t inbox_n, inbox_i;      /* inbox_i (fanout.c) */

    lk_session *sessions;         /* every WebSocket session */
    size_t nsessions;
    size_t open_sessions;         /* sessions past a successful connect (LK_COUNT: read by /metrics on any thread) */
    size_t fd_limit;              /* soft RLIMIT_NOFILE after raising it */
    uint64_t destroyed;           /* WSI_DESTROY events seen */
    uint64_t polls;               /* key registry polls so far */

    int stopping;
    int done;
    int64_t stop_deadline_us;

    struct lk_hot {               /* sessions that received data this */
        lk_session *s;            /* service pass, and how many bytes */
        size_t bytes;             /* (lk_sessions_read_more) */
    } hot[LK_HOT_MAX];
    size_t nhot;

    unsigned char *pack;          /* LWS_PRE + LK_PACK_BYTES */
    char *scratch;                /* header copies and minified data */
    size_t scratch_cap;
} lk_broker;

static inline int64_t lk_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t lk_now_ms(void)
{
    return lk_now_us() / 1000;
}

static inline int64_t lk_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The connection cap in force: --max-connections, or what the open-file
 * limit allows. */
size_t lk_broker_socket_limit(const lk_broker *b);

/* Signal delivered through the signalfd (thread 0; main.c). */
void lk_broker_signal(lk_broker *b, int signo);

/* The thread was woken by another (hub.h): delivers posted messages and
 * acts on stop and reload requests (main.c). */
void lk_broker_wake(lk_broker *b);

/* Reloads this thread's key table if thread 0 has announced a change that
 * this thread has not taken yet. Called before every key check, so that
 * once any thread has acted on a revocation no other thread accepts the
 * key (the wake-up alone could arrive after the next request). */
void lk_broker_sync_keys(lk_broker *b);

/* lk_broker_sync_keys, then a look at the registry itself (one cheap
 * query), announcing a change to the other threads. For the HTTP API,
 * whose key cache misses read the registry directly: a miss on one thread
 * must not refuse a key that another thread's cache still accepts. */
void lk_broker_poll_keys(lk_broker *b);

#endif
