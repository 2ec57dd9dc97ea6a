/* listener.c - listen socket, lws context, protocols and their dispatch. */
#define _GNU_SOURCE /* accept4, strcasestr */
#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gate.h"
#include "http.h"
#include "hub.h"
#include "prelude.h"
#include "session.h"
#include "tls.h"

#define ACCEPT_BATCH 64              /* accepts per wakeup, for fairness */
#define ACCEPT_PAUSE_US (100 * LWS_US_PER_MS)

_Static_assert(LK_RX_CHUNK >= 125, "lws must get control frames whole");

/* lws's log hook takes no user pointer; this is the one process-wide
 * pointer the broker keeps, set while a context exists. */
static lk_log *lws_log_sink;

/* Markers of anything lws might echo that could hold a credential: token
 * parameters and headers, a JWT's base64url header, and API keys. Case is
 * ignored (headers and query names arrive in any case) except for the JWT
 * marker, whose case is fixed by base64url and too short to fold. */
static int may_hold_credential(const char *line)
{
    static const char *const folded[] = {"access_token", "bearer", "authorization",
                                         "lk_live_", "lk_sbx_"};
    for (size_t i = 0; i < sizeof folded / sizeof folded[0]; i++)
        if (strcasestr(line, folded[i]))
            return 1;
    return strstr(line, "eyJ") != NULL;
}

static void lws_log_emit(int level, const char *line)
{
    if (!lws_log_sink)
        return;
    /* lws reports every readbuf adoption at ERR level; it is routine. */
    if (strstr(line, "adopt_socket_readbuf") || strstr(line, "deferring handling ah"))
        return;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    /* Never let a credential that lws might echo reach the log. */
    if (may_hold_credential(line))
        line = "(message withheld: it may contain a credential)", n = strlen(line);
    lk_logline l;
    if (lk_log_begin(&l, lws_log_sink, level & LLL_ERR ? LK_LOG_ERROR : LK_LOG_WARN,
                     "lws")) {
        lk_log_strn(&l, "detail", line, n);
        lk_log_end(&l);
    }
}

static lk_broker *broker_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* ------------------------------------------------------------ main protocol */

static int main_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                   void *in, size_t len)
{
    lk_broker *b = broker_of(wsi);
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLOSED:
        return lk_session_callback(b, wsi, reason, user, in, len);
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* Another thread posted messages, or asked to stop or reload.
         * This reaches every protocol; only this one acts on it. */
        lk_broker_wake(b);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY: {
        /* Every wsi's last callback arrives here, whatever its protocol. */
        b->destroyed++;
        const struct lws_protocols *p = lws_get_protocol(wsi);
        if (!p)
            return 0;
        if (p->id == LK_PROTO_PRELUDE) {
            lk_prelude_destroy(b, wsi, user);
        } else if (p->id == LK_PROTO_MAIN) {
            lk_hub_sockets_add(b->hub, -1);
            lk_gate_forget(wsi);
            if (user && *(int *)user == LK_CONN_WS)
                lk_session_cleanup(b, user);
            else
                lk_http_cleanup(user);
        }
        return 0;
    }
    default:
        break;
    }
    int rc = lk_http_callback(b, wsi, reason, user, in, len);
    if (rc != -2)
        return rc;
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ------------------------------------------------------------ acceptor */

static void resume_accepting(lws_sorted_usec_list_t *sul)
{
    lk_broker *b = lws_container_of(sul, lk_broker, sul_accept);
    if (b->acceptor && !b->stopping)
        lws_rx_flow_control(b->acceptor, 1);
}

static void accept_batch(lk_broker *b)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(b->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* Out of descriptors: stop polling the listener for a
                 * moment instead of spinning on it. */
                lk_log_msg(b->log, LK_LOG_WARN, "accept paused", strerror(errno));
                lws_rx_flow_control(b->acceptor, 0);
                lws_sul_schedule(b->ctx, 0, &b->sul_accept, resume_accepting,
                                 ACCEPT_PAUSE_US);
            }
            return;
        }
        if (b->stopping || lk_hub_sockets(b->hub) >= lk_broker_socket_limit(b)) {
            if (!b->stopping)
                LK_COUNT(b->metrics.refused[LK_REFUSED_CAPACITY]);
            close(fd);
            continue;
        }
        /* Responses and frames are small, separate writes: without this,
         * Nagle holds each one back for the peer's delayed ACK (~40 ms on
         * a kept-alive connection). lws does this for sockets it accepts. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        lk_hub_sockets_add(b->hub, 1);
        if (b->tls) {
            if (lk_tls_adopt(b, fd))
                lk_hub_sockets_add(b->hub, -1);
            continue;
        }
        uint64_t seen = b->destroyed;
        struct lws *w = lk_prelude_adopt(b, fd);
        if (!w && b->destroyed == seen) {
            close(fd);
            lk_hub_sockets_add(b->hub, -1);
        }
    }
}

static int acceptor_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                       void *in, size_t len)
{
    lk_broker *b = broker_of(wsi);
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        accept_batch(b);
        return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        b->acceptor = NULL;
        b->listen_fd = -1;
        return 0;
    default:
        return 0;
    }
}

static int prelude_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                      void *in, size_t len)
{
    return lk_prelude_callback(broker_of(wsi), wsi, reason, user, in, len);
}

static int signal_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                     void *in, size_t len)
{
    if (reason != LWS_CALLBACK_RAW_RX_FILE)
        return 0;
    lk_broker *b = broker_of(wsi);
    struct signalfd_siginfo si;
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(lws_get_socket_fd(wsi), &si, sizeof si);
        if (n != (ssize_t)sizeof si)
            break;
        lk_broker_signal(b, (int)si.ssi_signo);
    }
    return 0;
}

/* ------------------------------------------------------------ setup */

/* SO_REUSEPORT would let us bind next to another broker (or anything else
 * using it) on the same port; a probe bind without it tells a port in use
 * from a free one. */
static int port_taken(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return 0;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int taken = bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno == EADDRINUSE;
    close(fd);
    return taken;
}

static int open_listen_socket(lk_broker *b, char *why, size_t why_len)
{
    const lk_config *cfg = b->cfg;
    char port[8];
    snprintf(port, sizeof port, "%d", b->thread == 0 ? cfg->listen_port : b->port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(cfg->listen_host, port, &hints, &res);
    if (rc) {
        snprintf(why, why_len, "cannot resolve %s: %s", cfg->listen_host,
                 gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (b->thread == 0 && cfg->listen_port && port_taken(ai)) {
            err = EADDRINUSE;
            close(fd);
            fd = -1;
            break;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(why, why_len, "cannot listen on %s:%s: %s", cfg->listen_host, port,
                 strerror(err));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        b->port = ntohs(ss.ss_family == AF_INET6
                            ? ((struct sockaddr_in6 *)&ss)->sin6_port
                            : ((struct sockaddr_in *)&ss)->sin_port);
    b->listen_fd = fd;
    return 0;
}

void lk_listener_log_hook(lk_log *log, size_t threads)
{
    /* lws 4.1.6 formats every log line into one static buffer, so two
     * threads logging at once garble each other's lines (it logs each
     * adoption at ERR level): with several service threads its lines are
     * not asked for at all. */
    int level = log && threads == 1 ? LLL_ERR | LLL_WARN : 0;
    lws_log_sink = level ? log : NULL;
    lws_set_log_level(level, level ? lws_log_emit : NULL);
}

int lk_listener_start(lk_broker *b, char *why, size_t why_len)
{
    b->listen_fd = -1;
    if (open_listen_socket(b, why, why_len))
        return -1;

    size_t pss = lk_session_size();
    if (lk_http_conn_size() > pss)
        pss = lk_http_conn_size();
    /* A message frame is at most max_frame of data plus its envelope; a
     * single send must be able to carry it whole. */
    size_t tx = (size_t)b->cfg->max_frame + 4096;
    if (tx < LK_PACK_BYTES + 1024)
        tx = LK_PACK_BYTES + 1024;

    /* lws binds a WebSocket upgrade to any protocol on the vhost whose name
     * the client offers in Sec-WebSocket-Protocol. The internal ones carry
     * parentheses, which lws's tokenizer splits on (RFC 7230 delimiters),
     * so no offer can name them: a client cannot get an unauthenticated
     * WebSocket on the acceptor or the prelude, which the socket count
     * would also lose track of. */
    struct lws_protocols *p = b->protocols;
    memset(p, 0, sizeof b->protocols);
    p[LK_PROTO_MAIN] = (struct lws_protocols){"latchkey.v1", main_cb, pss, LK_RX_CHUNK,
                                              LK_PROTO_MAIN, NULL, tx};
    p[LK_PROTO_ACCEPTOR] = (struct lws_protocols){"(acceptor)", acceptor_cb, 0, 0,
                                                  LK_PROTO_ACCEPTOR, NULL, 0};
    p[LK_PROTO_PRELUDE] = (struct lws_protocols){"(prelude)", prelude_cb,
                                                 lk_prelude_conn_size(), 0,
                                                 LK_PROTO_PRELUDE, NULL, 0};
    p[LK_PROTO_SIGNAL] = (struct lws_protocols){"(signal)", signal_cb, 0, 0,
                                                LK_PROTO_SIGNAL, NULL, 0};

    b->retry = (lws_retry_bo_t){
        .secs_since_valid_ping = (uint16_t)b->cfg->ping_interval,
        .secs_since_valid_hangup = (uint16_t)(2 * b->cfg->ping_interval),
    };

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = p;
    info.user = b;
    info.vhost_name = "latchkey";
    info.max_http_header_data = LK_MAX_HEADER_DATA;
    info.retry_and_idle_policy = &b->retry;
    info.timeout_secs = 10;
    /* No LWS_SERVER_OPTION_VALIDATE_UTF8: the codec refuses bad UTF-8 as a
     * protocol error (4400, SPEC) where lws would close with 1007. */
    info.options = lk_tls_context_options(b);
    b->ctx = lws_create_context(&info);
    if (!b->ctx) {
        snprintf(why, why_len, "cannot create the lws context");
        close(b->listen_fd);
        b->listen_fd = -1;
        return -1;
    }
    lk_timers_init(&b->timers, b->ctx);
    b->vh = lws_get_vhost_by_name(b->ctx, "latchkey");
    if (!b->vh) {
        snprintf(why, why_len, "lws created no vhost");
        goto fail;
    }
    if (lk_tls_start(b, why, why_len))
        goto fail;
    lws_sock_file_fd_type d;
    d.filefd = b->listen_fd;
    b->acceptor = lws_adopt_descriptor_vhost(b->vh, LWS_ADOPT_RAW_FILE_DESC, d,
                                             p[LK_PROTO_ACCEPTOR].name, NULL);
    if (!b->acceptor) {
        snprintf(why, why_len, "cannot adopt the listen socket");
        goto fail;
    }
    if (b->signal_fd >= 0) {
        d.filefd = b->signal_fd;
        if (!lws_adopt_descriptor_vhost(b->vh, LWS_ADOPT_RAW_FILE_DESC, d,
                                        p[LK_PROTO_SIGNAL].name, NULL)) {
            snprintf(why, why_len, "cannot adopt the signal descriptor");
            goto fail;
        }
        b->signal_fd = -1;
    }
    return 0;
fail:
    lk_listener_destroy(b);
    return -1;
}

void lk_listener_stop_accepting(lk_broker *b)
{
    if (b->acceptor)
        lws_set_timeout(b->acceptor, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

void lk_listener_destroy(lk_broker *b)
{
    /* Once adopted, lws closes the listen socket itself. */
    int own_fd = b->listen_fd >= 0 && !b->acceptor;
    if (b->ctx) {
        lk_timers_detach(&b->timers);
        lws_context_destroy(b->ctx);
        b->ctx = NULL;
        lk_timers_fini(&b->timers);
    }
    if (own_fd)
        close(b->listen_fd);
    lk_tls_destroy(b->tls);
    b->tls = NULL;
    b->listen_fd = -1;
    b->acceptor = NULL;
    b->vh = NULL;
}
