/* main.c - latchkey-broker: configuration, signals (through a signalfd
 * served by thread 0's lws loop), the service threads and an orderly
 * shutdown. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "api.h"
#include "broker.h"
#include "fanout.h"
#include "hub.h"
#include "listener.h"
#include "ratelimit.h"
#include "session.h"
#include "tls.h"

#define KEY_POLL_US (250 * LWS_US_PER_MS)
#define TOUCH_EVERY_POLLS 240                  /* last-used times: each minute */
#define STOP_CHECK_US (20 * LWS_US_PER_MS)
#define STOP_GRACE_US (1500 * LWS_US_PER_MS)   /* SPEC: exit within 2 s */
#define FD_RESERVE 64                          /* log, registry, signalfd... */
#define NOFILE_CAP 1048576                     /* lws sizes tables by it */

size_t lk_broker_socket_limit(const lk_broker *b)
{
    size_t cap = b->fd_limit > FD_RESERVE ? b->fd_limit - FD_RESERVE : 1;
    if (b->cfg->max_connections > 0 && (uint64_t)b->cfg->max_connections < cap)
        return (size_t)b->cfg->max_connections;
    return cap;
}

/* Returns the soft open-file limit after raising it to the hard one. */
static size_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY || want > NOFILE_CAP)
        want = NOFILE_CAP;
    if (rl.rlim_cur < want) {
        rlim_t before = rl.rlim_cur;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = before;
    }
    return (size_t)rl.rlim_cur;
}

/* --threads 0: one service thread per CPU this process may run on, so a
 * broker pinned with taskset gets one thread per pinned core. */
static size_t thread_count(const lk_config *cfg)
{
    if (cfg->threads > 0)
        return (size_t)cfg->threads;
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                           : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n > LK_THREADS_MAX ? LK_THREADS_MAX : (size_t)n;
}

/* Errors before the logger exists still go out as JSON lines. */
static void early_error(const char *msg, const char *detail)
{
    lk_log *log = NULL;
    char why[128];
    if (lk_log_create(NULL, LK_LOG_ERROR, &log, why, sizeof why) == 0) {
        lk_log_msg(log, LK_LOG_ERROR, msg, detail);
        lk_log_destroy(log);
    }
}

/* ------------------------------------------------------------ key polling */

/* Writes the keys' last-used times; a failure only costs bookkeeping. */
static void flush_key_use(lk_broker *b)
{
    lk_error err = {0};
    int rc = lk_keystore_flush_used(b->keys, lk_now_us() / 1000000, &err);
    if (rc < 0)
        lk_log_msg(b->log, LK_LOG_WARN, "key use not recorded",
                   err.message[0] ? err.message : lk_strerror(rc));
}

static void log_keys_reloaded(lk_broker *b)
{
    lk_logline l;
    if (lk_log_begin(&l, b->log, LK_LOG_INFO, "keys reloaded")) {
        lk_log_int(&l, "keys", (int64_t)lk_keystore_count(b->keys));
        lk_log_end(&l);
    }
}

/* Reloads this thread's key table and acts on it; 1 if it changed. */
static int reload_keys(lk_broker *b)
{
    int changed = 0;
    lk_error err = {0};
    int rc = lk_keystore_poll(b->keys, &changed, &err);
    if (rc != LK_OK) {
        lk_log_msg(b->log, LK_LOG_WARN, "key registry poll failed",
                   err.message[0] ? err.message : lk_strerror(rc));
        return 0;
    }
    if (changed) {
        lk_sessions_recheck_keys(b);
        lk_api_keys_changed(b);
    }
    return changed;
}

/* A thread that found the registry changed tells the others, which take
 * the change before their next key check (lk_broker_sync_keys) and close
 * their revoked sessions on the wake-up; so from the "keys reloaded" line
 * on, no thread accepts a key revoked before it. */
static void announce_keys(lk_broker *b)
{
    if (lk_hub_threads(b->hub) > 1)
        lk_hub_request(b->hub, LK_HUB_KEYS);
    b->key_changes = lk_hub_key_changes(b->hub);
    log_keys_reloaded(b);
}

/* Thread 0 polls the registry every KEY_POLL_US; the other threads' timers
 * only record when keys were last used. */
static void on_key_poll(lws_sorted_usec_list_t *sul)
{
    lk_broker *b = lws_container_of(sul, lk_broker, sul_poll);
    if (++b->polls % TOUCH_EVERY_POLLS == 0)
        flush_key_use(b);
    if (b->thread == 0)
        lk_broker_poll_keys(b);
    /* Messages posted while a wake-up was being handled wait for the
     * next one; this keeps any such entry from waiting longer. */
    lk_fanout_drain(b);
    if (!b->stopping)
        lws_sul_schedule(b->ctx, 0, &b->sul_poll, on_key_poll, KEY_POLL_US);
}

/* ------------------------------------------------------------ signals */

static void on_stop_check(lws_sorted_usec_list_t *sul)
{
    lk_broker *b = lws_container_of(sul, lk_broker, sul_stop);
    if (!b->nsessions || lk_mono_us() >= b->stop_deadline_us) {
        b->done = 1;
        /* Timers run before lws polls: wake the poll so the loop sees it. */
        lws_cancel_service(b->ctx);
        return;
    }
    lws_sul_schedule(b->ctx, 0, &b->sul_stop, on_stop_check, STOP_CHECK_US);
}

static void begin_shutdown(lk_broker *b)
{
    if (b->stopping)
        return;
    b->stopping = 1;
    b->stop_deadline_us = lk_mono_us() + STOP_GRACE_US;
    lws_sul_cancel(&b->sul_poll);
    lws_sul_cancel(&b->sul_accept);
    lk_listener_stop_accepting(b);
    lk_sessions_shutdown(b);
    lws_sul_schedule(b->ctx, 0, &b->sul_stop, on_stop_check, 1);
}

/* SIGHUP: reopen the log file (thread 0) and take over the settings that
 * can change while running; the others keep their running values until a
 * restart. Each thread reloads its own copy of the configuration. */
static void reload(lk_broker *b)
{
    lk_config *fresh = NULL;
    char err[LK_CONFIG_ERR_BYTES];
    if (lk_config_load(b->argc, b->argv, &fresh, err) != LK_CONFIG_OK) {
        if (b->thread == 0)
            lk_log_msg(b->log, LK_LOG_ERROR, "reload failed; settings unchanged", err);
        return;
    }
    char kept[256];
    if (!lk_config_apply_live(b->cfg, fresh, kept, sizeof kept)) {
        lk_config_destroy(fresh);
        lk_log_msg(b->log, LK_LOG_ERROR, "reload failed; settings unchanged",
                   "out of memory");
        return;
    }
    char why[256];
    if (b->thread == 0) {
        if (lk_log_reopen(b->log, fresh->log_file, why, sizeof why) != 0)
            lk_log_msg(b->log, LK_LOG_ERROR, "log file not reopened", why);
        lk_log_set_level(b->log, fresh->log_level);
    }
    lk_config_destroy(b->cfg);
    b->cfg = fresh;
    if (lk_tls_reload(b, why, sizeof why))
        lk_log_msg(b->log, LK_LOG_ERROR, "tls certificate not reloaded; the running one stays",
                   why);
    lk_logline l;
    if (b->thread == 0 && lk_log_begin(&l, b->log, LK_LOG_INFO, "reloaded")) {
        if (kept[0])
            lk_log_str(&l, "restart_needed_for", kept);
        lk_log_end(&l);
    }
}

void lk_broker_signal(lk_broker *b, int signo)
{
    if (signo == SIGHUP) {
        lk_hub_request(b->hub, LK_HUB_RELOAD);
    } else if ((signo == SIGTERM || signo == SIGINT) && !lk_hub_stopping(b->hub)) {
        size_t open = 0;
        for (size_t t = 0; t < lk_hub_threads(b->hub); t++) {
            const lk_broker *w = lk_hub_worker(b->hub, t);
            if (w)
                open += __atomic_load_n(&w->open_sessions, __ATOMIC_RELAXED);
        }
        lk_logline l;
        if (lk_log_begin(&l, b->log, LK_LOG_INFO, "shutdown")) {
            lk_log_str(&l, "signal", strsignal(signo));
            lk_log_int(&l, "connections", (int64_t)open);
            lk_log_end(&l);
        }
        lk_hub_request(b->hub, LK_HUB_STOP);
    }
}

void lk_broker_wake(lk_broker *b)
{
    lk_fanout_drain(b);
    if (lk_hub_stopping(b->hub))
        begin_shutdown(b);
    unsigned reloads = lk_hub_reloads(b->hub);
    if (reloads != b->reloads) {
        b->reloads = reloads;
        reload(b);
    }
    lk_broker_sync_keys(b);
}

void lk_broker_sync_keys(lk_broker *b)
{
    unsigned keys = lk_hub_key_changes(b->hub);
    if (keys == b->key_changes)
        return;
    b->key_changes = keys;
    reload_keys(b);
}

void lk_broker_poll_keys(lk_broker *b)
{
    lk_broker_sync_keys(b);
    if (reload_keys(b))
        announce_keys(b);
}

/* ------------------------------------------------------------ main */

static int setup_signals(sigset_t *set)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    /* Blocked before any thread starts, so every thread inherits the mask
     * and the signals arrive only through the signalfd. */
    if (sigprocmask(SIG_BLOCK, set, NULL) != 0)
        return -1;
    return signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void broker_free(lk_broker *b)
{
    if (!b)
        return;
    lk_listener_destroy(b);
    if (b->signal_fd >= 0)
        close(b->signal_fd);
    lk_api_destroy(b->api);
    lk_keystore_destroy(b->keys);
    free(b->pack);
    free(b->scratch);
    lk_config_destroy(b->cfg);
    free(b);
}

/* What every service thread shares; main() owns it. */
typedef struct shared {
    int argc;
    char **argv;
    lk_log *log;
    lk_hub *hub;
    struct lk_ratelimit *api_limits;
    size_t fd_limit;
} shared;

/* Sets up service thread `t`'s broker with its own configuration (thread
 * 0 takes `cfg`), key table, API state and lws context listening on the
 * shared port. It owns `cfg` and `signal_fd` (-1: none) from here on, even
 * on failure. NULL with the reason logged. */
static lk_broker *broker_new(const shared *sh, size_t t, lk_config *cfg, int port,
                             int signal_fd)
{
    lk_broker *b = calloc(1, sizeof *b);
    char why[512];
    if (!b) {
        lk_config_destroy(cfg);
        if (signal_fd >= 0)
            close(signal_fd);
        lk_log_msg(sh->log, LK_LOG_ERROR, "out of memory", NULL);
        return NULL;
    }
    b->argc = sh->argc;
    b->argv = sh->argv;
    b->thread = t;
    b->hub = sh->hub;
    b->log = sh->log;
    b->api_limits = sh->api_limits;
    b->fd_limit = sh->fd_limit;
    b->listen_fd = -1;
    b->signal_fd = signal_fd;
    b->port = port;
    b->reloads = lk_hub_reloads(sh->hub);
    b->cfg = cfg;
    if (!b->cfg) {
        char err[LK_CONFIG_ERR_BYTES];
        if (lk_config_load(sh->argc, sh->argv, &b->cfg, err) != LK_CONFIG_OK) {
            lk_log_msg(sh->log, LK_LOG_ERROR, "invalid configuration", err);
            broker_free(b);
            return NULL;
        }
    }
    lk_error kerr = {0};
    int rc = lk_keystore_open(b->cfg->db_path, &b->keys, &kerr);
    if (rc != LK_OK) {
        lk_log_msg(b->log, LK_LOG_ERROR, "cannot open the key registry",
                   kerr.message[0] ? kerr.message : lk_strerror(rc));
        broker_free(b);
        return NULL;
    }
    if (lk_api_create(b, &b->api, why, sizeof why)) {
        lk_log_msg(b->log, LK_LOG_ERROR, "cannot open the key registry", why);
        broker_free(b);
        return NULL;
    }
    b->scratch_cap = (size_t)b->cfg->max_frame;
    if (b->scratch_cap < LK_MAX_HEADER_DATA)
        b->scratch_cap = LK_MAX_HEADER_DATA;
    b->scratch_cap += 1;
    b->scratch = malloc(b->scratch_cap);
    b->pack = malloc(LWS_PRE + LK_PACK_BYTES);
    if (!b->scratch || !b->pack) {
        lk_log_msg(b->log, LK_LOG_ERROR, "out of memory", NULL);
        broker_free(b);
        return NULL;
    }
    if (lk_listener_start(b, why, sizeof why)) {
        lk_log_msg(b->log, LK_LOG_ERROR, "cannot start", why);
        broker_free(b);
        return NULL;
    }
    return b;
}

static void *serve(void *arg)
{
    lk_broker *b = arg;
    while (!b->done) {
        if (lws_service(b->ctx, 0) < 0)
            break;
        lk_sessions_read_more(b);
    }
    /* Out of the loop early (an lws error): the others still stop. */
    if (!b->done)
        lk_hub_request(b->hub, LK_HUB_STOP);
    return NULL;
}

int main(int argc, char **argv)
{
    shared sh = {.argc = argc, .argv = argv};
    lk_config *cfg = NULL;
    char err[LK_CONFIG_ERR_BYTES];
    lk_config_rc crc = lk_config_load(argc, argv, &cfg, err);
    if (crc == LK_CONFIG_EXIT)
        return 0;
    if (crc != LK_CONFIG_OK) {
        early_error("invalid configuration", err);
        return 2;
    }

    char why[512];
    if (lk_log_create(cfg->log_file, cfg->log_level, &sh.log, why, sizeof why)) {
        early_error("cannot open the log", why);
        lk_config_destroy(cfg);
        return 1;
    }

    sigset_t set;
    int signal_fd = setup_signals(&set);
    if (signal_fd < 0) {
        lk_log_msg(sh.log, LK_LOG_ERROR, "cannot set up signals", strerror(errno));
        lk_config_destroy(cfg);
        lk_log_destroy(sh.log);
        return 1;
    }
    sh.fd_limit = raise_nofile();
    size_t nthreads = thread_count(cfg);
    sh.api_limits = lk_ratelimit_create();
    if (!sh.api_limits || lk_hub_create((size_t)cfg->history, nthreads, &sh.hub)) {
        lk_log_msg(sh.log, LK_LOG_ERROR, "out of memory", NULL);
        lk_ratelimit_destroy(sh.api_limits);
        close(signal_fd);
        lk_config_destroy(cfg);
        lk_log_destroy(sh.log);
        return 1;
    }
    lk_listener_log_hook(sh.log, nthreads);

    /* Contexts are created here, one after the other; each thread then
     * only services its own. */
    lk_broker *w[LK_THREADS_MAX] = {0};
    pthread_t tid[LK_THREADS_MAX];
    size_t started = 1, made = 0;
    int status = 0;
    for (; made < nthreads; made++) {
        w[made] = broker_new(&sh, made, made ? NULL : cfg, made ? w[0]->port : 0,
                             made ? -1 : signal_fd);
        if (!w[made]) {
            status = 1;
            break;
        }
        lk_hub_attach(sh.hub, made, w[made]->ctx, w[made]);
    }
    if (status)
        goto out;

    lk_broker *b = w[0];
    lk_logline l;
    if (lk_log_begin(&l, b->log, LK_LOG_INFO, "listening")) {
        lk_log_str(&l, "host", b->cfg->listen_host);
        lk_log_int(&l, "port", b->port);
        lk_log_int(&l, "threads", (int64_t)nthreads);
        lk_log_str(&l, "version", LK_VERSION_STRING);
        lk_log_end(&l);
    }
    if (lk_log_begin(&l, b->log, LK_LOG_INFO, "capacity")) {
        lk_log_int(&l, "max_connections", (int64_t)lk_broker_socket_limit(b));
        lk_log_int(&l, "open_files", (int64_t)b->fd_limit);
        lk_log_int(&l, "keys", (int64_t)lk_keystore_count(b->keys));
        lk_log_end(&l);
    }

    for (size_t t = 0; t < nthreads; t++)
        lws_sul_schedule(w[t]->ctx, 0, &w[t]->sul_poll, on_key_poll, KEY_POLL_US);
    for (; started < nthreads; started++) {
        int rc = pthread_create(&tid[started], NULL, serve, w[started]);
        if (rc) {
            lk_log_msg(b->log, LK_LOG_ERROR, "cannot start a service thread", strerror(rc));
            lk_hub_request(sh.hub, LK_HUB_STOP);
            status = 1;
            break;
        }
    }
    serve(b);
    for (size_t t = 1; t < started; t++)
        pthread_join(tid[t], NULL);

out:
    for (size_t t = 0; t < made; t++) {
        lk_hub_attach(sh.hub, t, NULL, NULL);
        lws_sul_cancel(&w[t]->sul_poll);
        lws_sul_cancel(&w[t]->sul_stop);
        lws_sul_cancel(&w[t]->sul_accept);
        lk_listener_destroy(w[t]);
        if (!status)
            flush_key_use(w[t]);
    }
    /* Sessions are gone: nothing references the channels any more. */
    for (size_t t = 0; t < made; t++)
        broker_free(w[t]);
    lk_listener_log_hook(NULL, 1);
    lk_hub_destroy(sh.hub);
    lk_ratelimit_destroy(sh.api_limits);
    if (!status)
        lk_log_msg(sh.log, LK_LOG_INFO, "stopped", NULL);
    lk_log_destroy(sh.log);
    return status;
}
