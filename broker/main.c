/* main.c - latchkey-broker: configuration, signals (through a signalfd
 * served by the lws loop), the service loop and an orderly shutdown. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "api.h"
#include "broker.h"
#include "listener.h"
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

static void raise_nofile(lk_broker *b)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        b->fd_limit = 1024;
        return;
    }
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY || want > NOFILE_CAP)
        want = NOFILE_CAP;
    if (rl.rlim_cur < want) {
        rlim_t before = rl.rlim_cur;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = before;
    }
    b->fd_limit = (size_t)rl.rlim_cur;
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

static void on_key_poll(lws_sorted_usec_list_t *sul)
{
    lk_broker *b = lws_container_of(sul, lk_broker, sul_poll);
    if (++b->polls % TOUCH_EVERY_POLLS == 0)
        flush_key_use(b);
    int changed = 0;
    lk_error err = {0};
    int rc = lk_keystore_poll(b->keys, &changed, &err);
    if (rc != LK_OK) {
        lk_log_msg(b->log, LK_LOG_WARN, "key registry poll failed",
                   err.message[0] ? err.message : lk_strerror(rc));
    } else if (changed) {
        lk_logline l;
        if (lk_log_begin(&l, b->log, LK_LOG_INFO, "keys reloaded")) {
            lk_log_int(&l, "keys", (int64_t)lk_keystore_count(b->keys));
            lk_log_end(&l);
        }
        lk_sessions_recheck_keys(b);
        lk_api_keys_changed(b);
    }
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

static void begin_shutdown(lk_broker *b, int signo)
{
    if (b->stopping)
        return;
    b->stopping = 1;
    b->stop_deadline_us = lk_mono_us() + STOP_GRACE_US;
    lk_logline l;
    if (lk_log_begin(&l, b->log, LK_LOG_INFO, "shutdown")) {
        lk_log_str(&l, "signal", strsignal(signo));
        lk_log_int(&l, "connections", (int64_t)b->open_sessions);
        lk_log_end(&l);
    }
    lws_sul_cancel(&b->sul_poll);
    lws_sul_cancel(&b->sul_accept);
    lk_listener_stop_accepting(b);
    lk_sessions_shutdown(b);
    lws_sul_schedule(b->ctx, 0, &b->sul_stop, on_stop_check, 1);
}

/* SIGHUP: reopen the log file and take over the settings that can change
 * while running; the others keep their running values until a restart. */
static void reload(lk_broker *b)
{
    lk_config *fresh = NULL;
    char err[LK_CONFIG_ERR_BYTES];
    if (lk_config_load(b->argc, b->argv, &fresh, err) != LK_CONFIG_OK) {
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
    if (lk_log_reopen(b->log, fresh->log_file, why, sizeof why) != 0)
        lk_log_msg(b->log, LK_LOG_ERROR, "log file not reopened", why);
    lk_log_set_level(b->log, fresh->log_level);
    lk_config_destroy(b->cfg);
    b->cfg = fresh;
    if (lk_tls_reload(b, why, sizeof why))
        lk_log_msg(b->log, LK_LOG_ERROR, "tls certificate not reloaded; the running one stays",
                   why);
    lk_logline l;
    if (lk_log_begin(&l, b->log, LK_LOG_INFO, "reloaded")) {
        if (kept[0])
            lk_log_str(&l, "restart_needed_for", kept);
        lk_log_end(&l);
    }
}

void lk_broker_signal(lk_broker *b, int signo)
{
    if (signo == SIGHUP)
        reload(b);
    else if (signo == SIGTERM || signo == SIGINT)
        begin_shutdown(b, signo);
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
    if (sigprocmask(SIG_BLOCK, set, NULL) != 0)
        return -1;
    return signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void broker_free(lk_broker *b)
{
    lk_listener_destroy(b);
    if (b->signal_fd >= 0)
        close(b->signal_fd);
    lk_api_destroy(b->api);
    lk_chanmap_destroy(b->channels);
    lk_keystore_destroy(b->keys);
    free(b->pack);
    free(b->scratch);
    lk_config_destroy(b->cfg);
    lk_log_destroy(b->log);
}

int main(int argc, char **argv)
{
    lk_broker b;
    memset(&b, 0, sizeof b);
    b.argc = argc;
    b.argv = argv;
    b.listen_fd = -1;
    b.signal_fd = -1;

    char err[LK_CONFIG_ERR_BYTES];
    lk_config_rc crc = lk_config_load(argc, argv, &b.cfg, err);
    if (crc == LK_CONFIG_EXIT)
        return 0;
    if (crc != LK_CONFIG_OK) {
        early_error("invalid configuration", err);
        return 2;
    }

    char why[512];
    if (lk_log_create(b.cfg->log_file, b.cfg->log_level, &b.log, why, sizeof why)) {
        early_error("cannot open the log", why);
        lk_config_destroy(b.cfg);
        return 1;
    }

    sigset_t set;
    b.signal_fd = setup_signals(&set);
    if (b.signal_fd < 0) {
        lk_log_msg(b.log, LK_LOG_ERROR, "cannot set up signals", strerror(errno));
        broker_free(&b);
        return 1;
    }
    raise_nofile(&b);

    lk_error kerr = {0};
    int rc = lk_keystore_open(b.cfg->db_path, &b.keys, &kerr);
    if (rc != LK_OK) {
        lk_log_msg(b.log, LK_LOG_ERROR, "cannot open the key registry",
                   kerr.message[0] ? kerr.message : lk_strerror(rc));
        broker_free(&b);
        return 1;
    }
    if (lk_api_create(&b, &b.api, why, sizeof why)) {
        lk_log_msg(b.log, LK_LOG_ERROR, "cannot open the key registry", why);
        broker_free(&b);
        return 1;
    }
    b.channels = lk_chanmap_create((size_t)b.cfg->history);
    b.scratch_cap = (size_t)b.cfg->max_frame;
    if (b.scratch_cap < LK_MAX_HEADER_DATA)
        b.scratch_cap = LK_MAX_HEADER_DATA;
    b.scratch_cap += 1;
    b.scratch = malloc(b.scratch_cap);
    b.pack = malloc(LWS_PRE + LK_PACK_BYTES);
    if (!b.channels || !b.scratch || !b.pack) {
        lk_log_msg(b.log, LK_LOG_ERROR, "out of memory", NULL);
        broker_free(&b);
        return 1;
    }

    if (lk_listener_start(&b, why, sizeof why)) {
        lk_log_msg(b.log, LK_LOG_ERROR, "cannot start", why);
        broker_free(&b);
        return 1;
    }

    lk_logline l;
    if (lk_log_begin(&l, b.log, LK_LOG_INFO, "listening")) {
        lk_log_str(&l, "host", b.cfg->listen_host);
        lk_log_int(&l, "port", b.port);
        lk_log_str(&l, "version", LK_VERSION_STRING);
        lk_log_end(&l);
    }
    if (lk_log_begin(&l, b.log, LK_LOG_INFO, "capacity")) {
        lk_log_int(&l, "max_connections", (int64_t)lk_broker_socket_limit(&b));
        lk_log_int(&l, "open_files", (int64_t)b.fd_limit);
        lk_log_int(&l, "keys", (int64_t)lk_keystore_count(b.keys));
        lk_log_end(&l);
    }

    lws_sul_schedule(b.ctx, 0, &b.sul_poll, on_key_poll, KEY_POLL_US);
    while (!b.done)
        if (lws_service(b.ctx, 0) < 0)
            break;

    lws_sul_cancel(&b.sul_poll);
    lws_sul_cancel(&b.sul_stop);
    lws_sul_cancel(&b.sul_accept);
    lk_listener_destroy(&b);
    flush_key_use(&b);
    lk_log_msg(b.log, LK_LOG_INFO, "stopped", NULL);
    broker_free(&b);
    return 0;
}
