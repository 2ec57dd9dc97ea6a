/* config.c - one option table drives the flags, the config file keys,
 * validation and --help. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/latchkey.h"

typedef enum opt_kind {
    OPT_INT,
    OPT_STR,      /* optional string, empty = unset */
    OPT_PATH,     /* non-empty string */
    OPT_LISTEN,
    OPT_LEVEL,
    OPT_ORIGINS,
    OPT_RATE      /* "N/M": an lk_rate */
} opt_kind;

typedef struct opt {
    const char *name;
    opt_kind kind;
    size_t off;
    int64_t min, max;
    const char *def;     /* shown by --help; parsed as the default */
    const char *arg;
    const char *help;
    int live;            /* taken over on SIGHUP */
} opt;

#define OFF(f) offsetof(lk_config, f)

static const opt options[] = {
    {"listen", OPT_LISTEN, 0, 0, 0, "127.0.0.1:8080", "HOST:PORT",
     "address to listen on; port 0 picks a free port (logged)", 0},
    {"db", OPT_PATH, OFF(db_path), 0, 0, "./latchkey.db", "PATH",
     "key registry file, which must exist; if unset, $LATCHKEY_DB or", 0},
    {"audience", OPT_STR, OFF(audience), 0, 0, "", "AUD",
     "when set, tokens must carry this aud", 1},
    {"max-token-ttl", OPT_INT, OFF(max_token_ttl), 1, 86400, "3600", "SECONDS",
     "longest accepted token lifetime (exp - iat)", 1},
    {"max-frame", OPT_INT, OFF(max_frame), 1024, 16777216, "65536", "BYTES",
     "largest client frame; larger ones close with 4413", 0},
    {"max-subscriptions", OPT_INT, OFF(max_subscriptions), 1, 1000000, "100", "N",
     "subscriptions per connection", 1},
    {"threads", OPT_INT, OFF(threads), 0, 64, "0", "N",
     "service threads sharing the port; 0 = one per CPU the broker may use", 0},
    {"max-connections", OPT_INT, OFF(max_connections), 0, 100000000, "0", "N",
     "connection limit; 0 = as many as the open-file limit allows", 1},
    {"publish-rate", OPT_INT, OFF(publish_rate), 0, 100000000, "1000", "N",
     "publishes per second per connection; 0 = unlimited", 1},
    {"publish-burst", OPT_INT, OFF(publish_burst), 1, 100000000, "2000", "N",
     "publish burst per connection", 1},
    {"rate-limit-close", OPT_INT, OFF(rate_limit_close), 0, 100000000, "1000", "N",
     "close with 4429 after N rate-limited publishes within 10 s; 0 = never", 1},
    {"send-queue-messages", OPT_INT, OFF(send_queue_messages), 1, 10000000, "1024", "N",
     "queued outbound messages per connection; overflow closes with 4408", 1},
    {"send-queue-bytes", OPT_INT, OFF(send_queue_bytes), 1024, 1073741824, "4194304", "BYTES",
     "queued outbound bytes per connection; overflow closes with 4408", 1},
    {"history", OPT_INT, OFF(history), 0, 100000, "100", "N",
     "messages kept per channel for `since`; 0 disables", 0},
    {"ping-interval", OPT_INT, OFF(ping_interval), 1, 3600, "25", "SECONDS",
     "WebSocket ping interval; a peer silent for twice this is dropped", 0},
    {"allowed-origins", OPT_ORIGINS, OFF(allowed_origins), 0, 0, "", "LIST",
     "comma-separated exact origins; when set, upgrades with another Origin are refused (clients sending none are not browsers and pass)", 1},
    {"log-level", OPT_LEVEL, OFF(log_level), 0, 0, "info", "LEVEL",
     "debug|info|warn|error", 1},
    {"log-file", OPT_STR, OFF(log_file), 0, 0, "", "PATH",
     "log file, reopened on SIGHUP; default stderr", 1},
    {"tls-cert", OPT_STR, OFF(tls_cert), 0, 0, "", "PATH",
     "TLS certificate chain (PEM); with --tls-key the listener serves only "
     "https:// and wss://, TLS 1.2+; both files are re-read on SIGHUP", 1},
    {"tls-key", OPT_STR, OFF(tls_key), 0, 0, "", "PATH",
     "private key (PEM) of --tls-cert", 1},
    {"api-rate-live", OPT_RATE, OFF(api_rate_live), 1, 1000000000, "3000/30", "N/M",
     "HTTP API requests per workspace of a live key: N per minute, M per second", 1},
    {"api-rate-sandbox", OPT_RATE, OFF(api_rate_sandbox), 1, 1000000000, "100/5", "N/M",
     "HTTP API requests per sandbox workspace: N per minute, M per second", 1},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

static const opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].name) == len &&
            memcmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

static void print_help(void)
{
    printf("usage: latchkey-broker --listen HOST:PORT --db PATH [--config FILE] [options]\n\n"
           "Latchkey realtime WebSocket broker. Flags override the config file,\n"
           "whose keys are the flag names without \"--\" (one \"key value\" per line).\n\n");
    printf("  --%-22s %s\n", "config FILE", "config file");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt *o = &options[i];
        char left[64];
        snprintf(left, sizeof left, "%s %s", o->name, o->arg);
        printf("  --%-22s %s", left, o->help);
        if (o->def[0])
            printf(" (default %s)", o->def);
        printf("%s\n", o->live ? "" : " [restart to change]");
    }
    printf("  --%-22s %s\n  --%-22s %s\n", "help", "show this help",
           "version", "show the version");
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void free_origins(lk_config *cfg)
{
    for (size_t i = 0; i < cfg->n_origins; i++)
        free(cfg->origins[i]);
    free(cfg->origins);
    cfg->origins = NULL;
    cfg->n_origins = 0;
}

void lk_config_destroy(lk_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->listen_host);
    free(cfg->db_path);
    free(cfg->config_path);
    free(cfg->audience);
    free(cfg->allowed_origins);
    free(cfg->log_file);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free_origins(cfg);
    free(cfg);
}

/* Where a value came from, for error messages. */
typedef struct origin_ctx {
    const char *file;   /* NULL for the command line */
    int line;
} origin_ctx;

static int fail(char *err, const origin_ctx *at, const opt *o,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(char *err, const origin_ctx *at, const opt *o,
                const char *fmt, ...)
{
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (at && at->file)
        snprintf(err, LK_CONFIG_ERR_BYTES, "%s:%d: %s%s%s", at->file, at->line,
                 o ? o->name : "", o ? ": " : "", what);
    else if (o)
        snprintf(err, LK_CONFIG_ERR_BYTES, "--%s: %s", o->name, what);
    else
        snprintf(err, LK_CONFIG_ERR_BYTES, "%s", what);
    return -1;
}

static int parse_int(const char *s, int64_t *out)
{
    if (!*s)
        return -1;
    const char *p = s;
    if (*p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int parse_listen(lk_config *cfg, const char *v, char *err,
                        const origin_ctx *at, const opt *o)
{
    const char *colon, *host = v;
    size_t host_len;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close[1] != ':')
            return fail(err, at, o, "\"%s\" is not HOST:PORT", v);
        host = v + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (!colon)
            return fail(err, at, o, "\"%s\" is not HOST:PORT", v);
        host_len = (size_t)(colon - v);
    }
    int64_t port;
    if (host_len == 0 || parse_int(colon + 1, &port) || port < 0 || port > 65535)
        return fail(err, at, o, "\"%s\" is not HOST:PORT (port 0-65535)", v);
    char *h = dupn(host, host_len);
    if (!h)
        return fail(err, at, o, "out of memory");
    free(cfg->listen_host);
    cfg->listen_host = h;
    cfg->listen_port = (int)port;
    return 0;
}

static int parse_origins(lk_config *cfg, const char *v, char *err,
                         const origin_ctx *at, const opt *o)
{
    free_origins(cfg);
    free(cfg->allowed_origins);
    cfg->allowed_origins = NULL;
    if (!*v)
        return 0;
    size_t cap = 1;
    for (const char *p = v; *p; p++)
        cap += *p == ',';
    cfg->origins = calloc(cap, sizeof *cfg->origins);
    cfg->allowed_origins = strdup(v);
    if (!cfg->origins || !cfg->allowed_origins)
        return fail(err, at, o, "out of memory");
    const char *p = v;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (a == b)
            return fail(err, at, o, "empty origin in \"%s\"", v);
        for (const char *c = a; c < b; c++)
            if (isspace((unsigned char)*c) || (unsigned char)*c < 0x21 ||
                (unsigned char)*c > 0x7e)
                return fail(err, at, o, "invalid origin in \"%s\"", v);
        cfg->origins[cfg->n_origins] = dupn(a, (size_t)(b - a));
        if (!cfg->origins[cfg->n_origins])
            return fail(err, at, o, "out of memory");
        cfg->n_origins++;
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

static int set_opt(lk_config *cfg, const opt *o, const char *v, char *err,
                   const origin_ctx *at)
{
    char *base = (char *)cfg;
    switch (o->kind) {
    case OPT_INT: {
        int64_t n;
        if (parse_int(v, &n))
            return fail(err, at, o, "\"%s\" is not an integer", v);
        if (n < o->min || n > o->max)
            return fail(err, at, o, "%s is out of range (%lld..%lld)", v,
                        (long long)o->min, (long long)o->max);
        *(int64_t *)(base + o->off) = n;
        return 0;
    }
    case OPT_STR:
    case OPT_PATH: {
        char **slot = (char **)(base + o->off);
        if (o->kind == OPT_PATH && !*v)
            return fail(err, at, o, "needs a non-empty value");
        char *d = *v ? strdup(v) : NULL;
        if (*v && !d)
            return fail(err, at, o, "out of memory");
        free(*slot);
        *slot = d;
        return 0;
    }
    case OPT_LISTEN:
        return parse_listen(cfg, v, err, at, o);
    case OPT_LEVEL: {
        lk_log_level lvl;
        if (lk_log_parse_level(v, &lvl))
            return fail(err, at, o, "\"%s\" is not one of debug|info|warn|error", v);
        cfg->log_level = lvl;
        return 0;
    }
    case OPT_ORIGINS:
        return parse_origins(cfg, v, err, at, o);
    case OPT_RATE: {
        const char *slash = strchr(v, '/');
        char per_min[24];
        int64_t m, s;
        if (!slash || (size_t)(slash - v) >= sizeof per_min)
            return fail(err, at, o, "\"%s\" is not N/M (per minute/per second)", v);
        memcpy(per_min, v, (size_t)(slash - v));
        per_min[slash - v] = '\0';
        if (parse_int(per_min, &m) || parse_int(slash + 1, &s))
            return fail(err, at, o, "\"%s\" is not N/M (per minute/per second)", v);
        if (m < o->min || m > o->max || s < o->min || s > o->max)
            return fail(err, at, o, "%s is out of range (%lld..%lld each)", v,
                        (long long)o->min, (long long)o->max);
        lk_rate *r = (lk_rate *)(base + o->off);
        r->per_minute = m;
        r->per_second = s;
        return 0;
    }
    }
    return -1;
}

/* Config files hold at most this many bytes per line. */
#define LINE_MAX_BYTES 4096

static int load_file(lk_config *cfg, const char *path, char *err)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, LK_CONFIG_ERR_BYTES, "--config: cannot open %s: %s", path,
                 strerror(errno));
        return -1;
    }
    char line[LINE_MAX_BYTES + 2];
    unsigned char seen[N_OPTIONS] = {0};
    origin_ctx at = {path, 0};
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        at.line++;
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n')
            line[--n] = '\0';
        else if (!feof(f)) {
            rc = fail(err, &at, NULL, "line too long");
            break;
        }
        if (n && line[n - 1] == '\r')
            line[--n] = '\0';
        /* '#' starts a comment at the start of a line or after a blank. */
        for (size_t i = 0; i < n; i++) {
            if (line[i] == '#' && (i == 0 || isspace((unsigned char)line[i - 1]))) {
                line[i] = '\0';
                n = i;
                break;
            }
        }
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        char *end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (!*p)
            continue;
        char *key = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        size_t klen = (size_t)(p - key);
        while (isspace((unsigned char)*p))
            p++;
        const opt *o = find_opt(key, klen);
        if (!o) {
            key[klen] = '\0';
            rc = fail(err, &at, NULL, "unknown setting \"%s\"", key);
            break;
        }
        if (seen[o - options]) {
            rc = fail(err, &at, o, "set twice");
            break;
        }
        seen[o - options] = 1;
        if (o->kind != OPT_STR && o->kind != OPT_ORIGINS && !*p) {
            rc = fail(err, &at, o, "missing value");
            break;
        }
        if (set_opt(cfg, o, p, err, &at)) {
            rc = -1;
            break;
        }
    }
    if (!rc && ferror(f)) {
        snprintf(err, LK_CONFIG_ERR_BYTES, "--config: cannot read %s", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

static int set_defaults(lk_config *cfg, char *err)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (set_opt(cfg, &options[i], options[i].def, err, NULL))
            return -1;
    return 0;
}

/* Splits "--name=value" / "--name value"; returns the option or NULL. */
static const char *flag_name(const char *arg, size_t *len, const char **inline_val)
{
    if (strncmp(arg, "--", 2) != 0)
        return NULL;
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    *len = eq ? (size_t)(eq - name) : strlen(name);
    *inline_val = eq ? eq + 1 : NULL;
    return name;
}

lk_config_rc lk_config_load(int argc, char **argv, lk_config **out,
                            char err[LK_CONFIG_ERR_BYTES])
{
    *out = NULL;
    err[0] = '\0';
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help();
            return LK_CONFIG_EXIT;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("latchkey-broker %s\n", LK_VERSION_STRING);
            return LK_CONFIG_EXIT;
        }
    }

    lk_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        snprintf(err, LK_CONFIG_ERR_BYTES, "out of memory");
        return LK_CONFIG_ERROR;
    }
    if (set_defaults(cfg, err))
        goto bad;
    int db_from_file = 0;

    /* First pass: find --config so the file applies before the flags. */
    for (int i = 1; i < argc; i++) {
        size_t len;
        const char *val;
        const char *name = flag_name(argv[i], &len, &val);
        if (!name || len != 6 || memcmp(name, "config", 6) != 0)
            continue;
        if (!val) {
            if (i + 1 >= argc) {
                snprintf(err, LK_CONFIG_ERR_BYTES, "--config: missing value");
                goto bad;
            }
            val = argv[++i];
        }
        if (!*val) {
            snprintf(err, LK_CONFIG_ERR_BYTES, "--config: needs a non-empty value");
            goto bad;
        }
        free(cfg->config_path);
        cfg->config_path = strdup(val);
        if (!cfg->config_path) {
            snprintf(err, LK_CONFIG_ERR_BYTES, "out of memory");
            goto bad;
        }
    }
    if (cfg->config_path) {
        char *before = cfg->db_path;
        cfg->db_path = NULL;
        if (load_file(cfg, cfg->config_path, err)) {
            free(before);
            goto bad;
        }
        if (cfg->db_path) {
            db_from_file = 1;
            free(before);
        } else {
            cfg->db_path = before;
        }
    }
    const char *env_db = getenv("LATCHKEY_DB");
    if (env_db && *env_db && !db_from_file) {
        char *d = strdup(env_db);
        if (!d) {
            snprintf(err, LK_CONFIG_ERR_BYTES, "out of memory");
            goto bad;
        }
        free(cfg->db_path);
        cfg->db_path = d;
    }

    for (int i = 1; i < argc; i++) {
        size_t len;
        const char *val;
        const char *name = flag_name(argv[i], &len, &val);
        if (!name || len == 0) {
            snprintf(err, LK_CONFIG_ERR_BYTES, "unexpected argument \"%s\" (see --help)",
                     argv[i]);
            goto bad;
        }
        int is_config = len == 6 && memcmp(name, "config", 6) == 0;
        const opt *o = is_config ? NULL : find_opt(name, len);
        if (!o && !is_config) {
            snprintf(err, LK_CONFIG_ERR_BYTES, "unknown option \"--%.*s\" (see --help)",
                     (int)(len > 64 ? 64 : len), name);
            goto bad;
        }
        if (!val) {
            if (i + 1 >= argc) {
                snprintf(err, LK_CONFIG_ERR_BYTES, "--%.*s: missing value", (int)len, name);
                goto bad;
            }
            val = argv[++i];
        }
        if (is_config)
            continue;
        if (set_opt(cfg, o, val, err, NULL))
            goto bad;
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        snprintf(err, LK_CONFIG_ERR_BYTES, "--%s: needs --%s as well",
                 cfg->tls_cert ? "tls-cert" : "tls-key", cfg->tls_cert ? "tls-key" : "tls-cert");
        goto bad;
    }
    *out = cfg;
    return LK_CONFIG_OK;
bad:
    lk_config_destroy(cfg);
    return LK_CONFIG_ERROR;
}

int lk_config_origin_allowed(const lk_config *cfg, const char *origin,
                             size_t len)
{
    if (!cfg->n_origins)
        return 1;
    for (size_t i = 0; i < cfg->n_origins; i++)
        if (strlen(cfg->origins[i]) == len &&
            memcmp(cfg->origins[i], origin, len) == 0)
            return 1;
    return 0;
}

static void note_kept(char *kept, size_t kept_len, const char *name)
{
    size_t n = strlen(kept);
    snprintf(kept + n, kept_len - n, "%s%s", n ? "," : "", name);
}

static int str_differs(const char *a, const char *b)
{
    if (!a || !b)
        return a != b;
    return strcmp(a, b) != 0;
}

lk_config *lk_config_apply_live(const lk_config *running, lk_config *fresh,
                                char *kept, size_t kept_len)
{
    kept[0] = '\0';
    if (str_differs(running->listen_host, fresh->listen_host) ||
        running->listen_port != fresh->listen_port)
        note_kept(kept, kept_len, "listen");
    if (str_differs(running->db_path, fresh->db_path))
        note_kept(kept, kept_len, "db");
    if (running->max_frame != fresh->max_frame)
        note_kept(kept, kept_len, "max-frame");
    if (running->history != fresh->history)
        note_kept(kept, kept_len, "history");
    if (running->ping_interval != fresh->ping_interval)
        note_kept(kept, kept_len, "ping-interval");
    /* New certificate files apply on reload; turning TLS on or off does not. */
    if (!running->tls_cert != !fresh->tls_cert) {
        note_kept(kept, kept_len, "tls-cert,tls-key");
        char *c = running->tls_cert ? strdup(running->tls_cert) : NULL;
        char *k = running->tls_key ? strdup(running->tls_key) : NULL;
        if (running->tls_cert && (!c || !k)) {
            free(c);
            free(k);
            return NULL;
        }
        free(fresh->tls_cert);
        free(fresh->tls_key);
        fresh->tls_cert = c;
        fresh->tls_key = k;
    }

    char *host = strdup(running->listen_host);
    char *db = strdup(running->db_path);
    if (!host || !db) {
        free(host);
        free(db);
        return NULL;
    }
    free(fresh->listen_host);
    free(fresh->db_path);
    fresh->listen_host = host;
    fresh->db_path = db;
    fresh->listen_port = running->listen_port;
    fresh->max_frame = running->max_frame;
    fresh->history = running->history;
    fresh->ping_interval = running->ping_interval;
    return fresh;
}
