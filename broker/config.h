/*
 * config.h - the broker's settings: defaults, then the config file, then
 * command-line flags, validated strictly into an immutable lk_config.
 *
 * Every option exists both as a flag (--max-frame 4096) and as a config
 * file key (max-frame 4096, one "key value" per line, '#' comments).
 * Unknown names, bad numbers and out-of-range values are errors that name
 * the option (and the file line).
 *
 * Ownership: lk_config_load returns a config the caller destroys with
 * lk_config_destroy (NULL is a no-op). A config is never modified after
 * loading; SIGHUP builds a new one with lk_config_load and the broker takes
 * the settings marked live from it (see lk_config_apply_live).
 *
 * Thread safety: a loaded config is immutable and may be shared.
 */
#ifndef LK_BROKER_CONFIG_H
#define LK_BROKER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define LK_CONFIG_ERR_BYTES 512

/* An HTTP API rate limit, "N/M" in flags and files (see ratelimit.h). */
typedef struct lk_rate {
    int64_t per_minute;
    int64_t per_second;
} lk_rate;

typedef struct lk_config {
    char *listen_host;          /* numeric or resolvable host, no brackets */
    int listen_port;            /* 0 = ephemeral */
    char *db_path;
    char *config_path;          /* NULL when no --config */
    char *audience;             /* NULL: aud not checked */
    int64_t max_token_ttl;
    int64_t max_frame;
    int64_t max_subscriptions;
    int64_t threads;            /* 0 = one per usable CPU */
    int64_t max_connections;    /* 0 = open-file limit */
    int64_t publish_rate;       /* per second; 0 = unlimited */
    int64_t publish_burst;
    int64_t rate_limit_close;   /* refusals within 10 s; 0 = never close */
    int64_t send_queue_messages;
    int64_t send_queue_bytes;
    int64_t history;
    int64_t ping_interval;
    char *allowed_origins;      /* raw comma-separated list, NULL = any */
    char **origins;             /* parsed list */
    size_t n_origins;
    lk_log_level log_level;
    char *log_file;             /* NULL = stderr */
    char *tls_cert;             /* both set or both NULL (plain HTTP) */
    char *tls_key;
    lk_rate api_rate_live;      /* per workspace */
    lk_rate api_rate_sandbox;
} lk_config;

typedef enum lk_config_rc {
    LK_CONFIG_OK = 0,
    LK_CONFIG_EXIT = 1,    /* --help or --version printed: exit 0 */
    LK_CONFIG_ERROR = -1   /* message in err: exit 2 */
} lk_config_rc;

/* Parses argv (and the --config file it names). --help and --version
 * print to stdout and return LK_CONFIG_EXIT. On error *out is NULL and
 * `err` names the option. */
lk_config_rc lk_config_load(int argc, char **argv, lk_config **out,
                            char err[LK_CONFIG_ERR_BYTES]);
void lk_config_destroy(lk_config *cfg);

/* 1 if `origin` (len bytes) is allowed: no list configured, or an exact
 * match of one entry. */
int lk_config_origin_allowed(const lk_config *cfg, const char *origin,
                             size_t len);

/* Builds the config a reload should use: a copy of `fresh` whose settings
 * that cannot change while running (listen, db, max-frame, history,
 * ping-interval, TLS on or off) are taken from `running`. Names of settings that differed
 * but were kept are listed in `kept` (comma-separated). Caller destroys the
 * result; NULL on ENOMEM. */
lk_config *lk_config_apply_live(const lk_config *running, lk_config *fresh,
                                char *kept, size_t kept_len);

#endif
