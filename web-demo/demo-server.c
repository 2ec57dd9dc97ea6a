/*
 * demo-server.c - latchkey-demo, the web demo's backend.
 *
 * It plays the part of an application backend: it holds the API key (from
 * LATCHKEY_API_KEY, never from a file it serves), lets a browser "log in"
 * with a bare name, and mints that user a short-lived token for the demo's
 * channels with the mint library. It also serves the page's own static
 * files, and nothing else, from a fixed list.
 *
 * One thread, one poll() loop, one request per connection, every buffer
 * and every wait bounded.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "latchkey/latchkey.h"
#include "http.h"

#ifndef DEMO_STATIC_DIR
#define DEMO_STATIC_DIR "web-demo"
#endif

#define DEMO_MAX_CONNS 64
#define DEMO_IO_TIMEOUT_MS 10000   /* to receive a request, or send a reply */
#define DEMO_DRAIN_TIMEOUT_MS 1000 /* to read what the client still sends */
#define DEMO_DRAIN_MAX 65536
#define DEMO_STATIC_MAX (1024 * 1024)
#define DEMO_URL_MAX 512
#define DEMO_NAME_MAX 32

/* What a logged-in demo user may do: chat, and read the news. */
static const char demo_capability[] =
    "{\"chat:lobby\":[\"realtime:subscribe\",\"realtime:publish\"],"
    "\"news\":[\"realtime:subscribe\"]}";

/* The only files the server will ever open, relative to --static-dir. */
static const struct demo_static {
    const char *path;
    const char *file;
    const char *type;
} demo_files[] = {
    {"/", "index.html", "text/html; charset=utf-8"},
    {"/index.html", "index.html", "text/html; charset=utf-8"},
    {"/app.js", "app.js", "text/javascript; charset=utf-8"},
    {"/latchkey.js", "latchkey.js", "text/javascript; charset=utf-8"},
    {"/style.css", "style.css", "text/css; charset=utf-8"},
};

typedef struct demo_opts {
    char host[256];
    char port[8];
    char broker_url[DEMO_URL_MAX + 1];
    char broker_origin[DEMO_URL_MAX + 1];
    long token_ttl;
    const char *static_dir;
} demo_opts;

typedef enum demo_phase { PH_READ, PH_WRITE, PH_DRAIN } demo_phase;

typedef struct demo_conn {
    int fd;
    demo_phase phase;
    int64_t deadline_ms;
    size_t in_len;
    size_t drained;
    char *out;
    size_t out_len;
    size_t out_off;
    int out_secret; /* the reply holds a token: wipe before freeing */
    char in[DEMO_HTTP_REQUEST_MAX];
} demo_conn;

typedef struct demo_server {
    demo_opts opts;
    lk_key *key;
    int static_fd;
    int listen_fd;
    demo_conn *conns[DEMO_MAX_CONNS];
    char csp[DEMO_URL_MAX + 512];
} demo_server;

static volatile sig_atomic_t demo_stop;

static void on_signal(int sig)
{
    (void)sig;
    demo_stop = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes `s` as JSON string content (no quotes) into f. Only used for
 * validated, printable values, but escapes anyway. */
static void log_json_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

static void log_line(const char *level, const char *msg, const char *key,
                     const char *val)
{
    fprintf(stderr, "{\"level\":\"%s\",\"msg\":\"", level);
    log_json_str(stderr, msg);
    fputc('"', stderr);
    if (key) {
        fprintf(stderr, ",\"%s\":\"", key);
        log_json_str(stderr, val);
        fputc('"', stderr);
    }
    fputs("}\n", stderr);
    fflush(stderr);
}

static void log_request(const demo_http_req *req, int status)
{
    static const char *const names[] = {"?", "GET", "HEAD", "POST", "OTHER"};
    const char *method = req->method <= DEMO_HTTP_OTHER ? names[req->method] : "?";
    fprintf(stderr, "{\"level\":\"info\",\"msg\":\"request\",\"method\":\"%s\",\"path\":\"",
            method);
    log_json_str(stderr, req->path[0] ? req->path : "-");
    fprintf(stderr, "\",\"status\":%d}\n", status);
    fflush(stderr);
}

/* ---- options ---- */

static void usage(FILE *f)
{
    fputs("Usage: latchkey-demo [options]\n"
          "\n"
          "Serves the Latchkey web demo and mints client tokens for it.\n"
          "The API key is read from the LATCHKEY_API_KEY environment variable.\n"
          "\n"
          "Options:\n"
          "  --listen HOST:PORT   address to serve on (default 127.0.0.1:8000;\n"
          "                       port 0 picks a free one, logged on stderr)\n"
          "  --broker-url URL     the broker's WebSocket URL given to the page\n"
          "                       (default ws://127.0.0.1:8080/v1/realtime)\n"
          "  --token-ttl SECONDS  lifetime of minted tokens, 1-86400 (default 600)\n"
          "  --static-dir DIR     directory holding index.html, app.js, style.css\n"
          "                       and latchkey.js (default: the source tree's web-demo)\n"
          "  --help               show this help\n",
          f);
}

static int parse_listen(const char *arg, demo_opts *o)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || colon == arg)
        return -1;
    const char *h = arg;
    size_t hl = (size_t)(colon - arg);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']')
            return -1;
        h++;
        hl -= 2;
    }
    if (hl >= sizeof o->host)
        return -1;
    const char *p = colon + 1;
    size_t pl = strlen(p);
    if (pl == 0 || pl > 5 || strspn(p, "0123456789") != pl || atol(p) > 65535)
        return -1;
    memcpy(o->host, h, hl);
    o->host[hl] = '\0';
    memcpy(o->port, p, pl + 1);
    return 0;
}

/* Accepts ws:// or wss://, a plain authority and an optional simple path
 * (default /v1/realtime). The URL is echoed into JSON and into the page's
 * Content-Security-Policy, hence the strict character sets. */
static int parse_broker_url(const char *url, demo_opts *o)
{
    size_t sl;
    if (strncmp(url, "ws://", 5) == 0)
        sl = 5;
    else if (strncmp(url, "wss://", 6) == 0)
        sl = 6;
    else
        return -1;
    size_t al = strspn(url + sl,
                       "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]");
    if (al == 0)
        return -1;
    const char *path = url + sl + al;
    size_t pl = strlen(path);
    if (pl && (path[0] != '/' ||
               strspn(path, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~/-") != pl))
        return -1;
    if (sl + al + (pl ? pl : strlen("/v1/realtime")) > DEMO_URL_MAX)
        return -1;
    const char *suffix = pl ? path : "/v1/realtime";
    size_t xl = strlen(suffix);
    memcpy(o->broker_origin, url, sl + al);
    o->broker_origin[sl + al] = '\0';
    memcpy(o->broker_url, url, sl + al);
    memcpy(o->broker_url + sl + al, suffix, xl + 1);
    return 0;
}

static int parse_options(int argc, char **argv, demo_opts *o)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"broker-url", required_argument, NULL, 'b'},
        {"token-ttl", required_argument, NULL, 't'},
        {"static-dir", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    parse_listen("127.0.0.1:8000", o);
    parse_broker_url("ws://127.0.0.1:8080/v1/realtime", o);
    o->token_ttl = LK_TOKEN_DEFAULT_TTL;
    o->static_dir = DEMO_STATIC_DIR;

    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            if (parse_listen(optarg, o) != 0) {
                fprintf(stderr, "latchkey-demo: --listen wants HOST:PORT\n");
                return 2;
            }
            break;
        case 'b':
            if (parse_broker_url(optarg, o) != 0) {
                fprintf(stderr, "latchkey-demo: --broker-url wants ws://HOST:PORT[/path] "
                                "or wss://...\n");
                return 2;
            }
            break;
        case 't': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v < LK_TOKEN_MIN_TTL ||
                v > LK_TOKEN_MAX_MINT_TTL) {
                fprintf(stderr, "latchkey-demo: --token-ttl wants 1-%d seconds\n",
                        LK_TOKEN_MAX_MINT_TTL);
                return 2;
            }
            o->token_ttl = v;
            break;
        }
        case 's':
            o->static_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            fprintf(stderr, "latchkey-demo: unknown option %s\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "latchkey-demo: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    return 0;
}

/* ---- routes ---- */

static const char security_headers[] =
    "Cache-Control: no-store\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "X-Frame-Options: DENY\r\n";

static void reply(demo_conn *c, int status, const char *type,
                  const char *extra, const char *body, size_t len, int head_only)
{
    char headers[1536];
    snprintf(headers, sizeof headers, "%s%s", security_headers, extra ? extra : "");
    free(c->out);
    c->out = demo_http_response(status, type, headers, body, len, head_only, &c->out_len);
    c->out_off = 0;
    if (!c->out)
        c->out_len = 0;
}

static void reply_json(demo_conn *c, int status, const char *json, const char *extra)
{
    reply(c, status, "application/json", extra, json, strlen(json), 0);
}

static void reply_error(demo_conn *c, int status, const char *code,
                        const char *message, const char *extra)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    if (o && cJSON_AddStringToObject(o, "error", message) &&
        cJSON_AddStringToObject(o, "code", code))
        s = cJSON_PrintUnformatted(o);
    reply_json(c, status, s ? s : "{\"error\":\"internal error\",\"code\":\"internal\"}", extra);
    cJSON_free(s);
    cJSON_Delete(o);
}

static const char *error_code(int status)
{
    switch (status) {
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 413: return "too_large";
    case 415: return "bad_request";
    case 500: return "internal";
    case 501: return "not_implemented";
    default: return "bad_request";
    }
}

/* Reads a whitelisted file into memory. Returns its length, or -1. */
static long read_static(int dirfd, const char *name, char **out)
{
    *out = NULL;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > DEMO_STATIC_MAX) {
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size ? size : 1);
    size_t got = 0;
    while (buf && got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != size) {
        free(buf);
        return -1;
    }
    *out = buf;
    return (long)size;
}

static int serve_static(demo_server *s, demo_conn *c, const demo_http_req *req)
{
    for (size_t i = 0; i < sizeof demo_files / sizeof demo_files[0]; i++) {
        if (strcmp(req->path, demo_files[i].path) != 0)
            continue;
        if (req->method != DEMO_HTTP_GET && req->method != DEMO_HTTP_HEAD) {
            reply_error(c, 405, "method_not_allowed", "method not allowed",
                        "Allow: GET, HEAD\r\n");
            return 405;
        }
        char *body;
        long len = read_static(s->static_fd, demo_files[i].file, &body);
        if (len < 0) {
            log_line("error", "cannot read static file", "file", demo_files[i].file);
            reply_error(c, 500, "internal", "cannot read file", NULL);
            return 500;
        }
        const char *extra = strncmp(demo_files[i].type, "text/html", 9) == 0 ? s->csp : NULL;
        reply(c, 200, demo_files[i].type, extra, body, (size_t)len,
              req->method == DEMO_HTTP_HEAD);
        free(body);
        return 200;
    }
    reply_error(c, 404, "not_found", "not found", NULL);
    return 404;
}

static int serve_config(demo_server *s, demo_conn *c)
{
    cJSON *o = cJSON_CreateObject();
    char *json = NULL;
    if (o && cJSON_AddStringToObject(o, "broker_url", s->opts.broker_url) &&
        cJSON_AddNumberToObject(o, "token_ttl", (double)s->opts.token_ttl))
        json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json) {
        reply_error(c, 500, "internal", "out of memory", NULL);
        return 500;
    }
    reply_json(c, 200, json, NULL);
    cJSON_free(json);
    return 200;
}

static int name_valid(const char *name)
{
    size_t n = strlen(name);
    return n >= 1 && n <= DEMO_NAME_MAX &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

/* cJSON decodes \u0000 into a NUL that would silently cut the name short. */
static int has_nul_escape(const char *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (p[i] != '\\')
            continue;
        if (p[i + 1] == 'u' && i + 5 < len && memcmp(p + i + 2, "0000", 4) == 0)
            return 1;
        i++; /* skip the escaped character, e.g. an escaped backslash */
    }
    return 0;
}

/* POST /api/token {"name":"alice"} -> {"token":...,"expires_at":...,
 * "client_id":"alice"}. */
static int serve_token(demo_server *s, demo_conn *c, const demo_http_req *req)
{
    /* Requiring a JSON content type forces a CORS preflight, which this
     * server never grants, on any cross-site attempt. */
    if (!req->json_body) {
        reply_error(c, 415, "bad_request", "Content-Type must be application/json", NULL);
        return 415;
    }
    const char *body = c->in + req->head_len;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, req->body_len, &end, 0);
    while (o && end < body + req->body_len && strchr(" \t\r\n", *end) && *end)
        end++;
    const cJSON *name = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "name") : NULL;
    char user[DEMO_NAME_MAX + 1];
    int ok = o && end == body + req->body_len && cJSON_IsString(name) &&
             name_valid(name->valuestring) && !has_nul_escape(body, req->body_len);
    if (ok)
        snprintf(user, sizeof user, "%s", name->valuestring);
    cJSON_Delete(o);
    if (!ok) {
        reply_error(c, 400, "bad_request",
                    "name must be 1-32 characters of A-Z, a-z, 0-9, _ and -", NULL);
        return 400;
    }

    int64_t now = (int64_t)time(NULL);
    lk_mint_opts mo = {
        .capability = demo_capability,
        .ttl = s->opts.token_ttl,
        .client_id = user,
        .now = now,
    };
    char *token = NULL;
    lk_error err = {0};
    int rc = lk_token_mint(s->key, &mo, &token, &err);
    if (rc != LK_OK) {
        log_line("error", "token mint failed", "reason", err.message);
        reply_error(c, 500, "internal", "could not mint a token", NULL);
        return 500;
    }

    cJSON *r = cJSON_CreateObject();
    char *json = NULL;
    if (r && cJSON_AddStringToObject(r, "token", token) &&
        cJSON_AddNumberToObject(r, "expires_at", (double)(now + s->opts.token_ttl)) &&
        cJSON_AddStringToObject(r, "client_id", user))
        json = cJSON_PrintUnformatted(r);
    OPENSSL_cleanse(token, strlen(token));
    lk_free(token);
    if (r) {
        /* cJSON holds its own copy of the token. */
        cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "token");
        if (cJSON_IsString(t))
            OPENSSL_cleanse(t->valuestring, strlen(t->valuestring));
        cJSON_Delete(r);
    }
    if (!json) {
        reply_error(c, 500, "internal", "out of memory", NULL);
        return 500;
    }
    reply_json(c, 200, json, NULL);
    c->out_secret = 1;
    OPENSSL_cleanse(json, strlen(json));
    cJSON_free(json);
    return 200;
}

static void handle_request(demo_server *s, demo_conn *c)
{
    demo_http_req req;
    int rc = demo_http_parse(c->in, c->in_len, &req);
    if (rc == DEMO_HTTP_INCOMPLETE)
        return;

    int status;
    if (rc != 0) {
        reply_error(c, rc, error_code(rc), demo_http_reason(rc), NULL);
        status = rc;
    } else if (strcmp(req.path, "/api/token") == 0) {
        if (req.method != DEMO_HTTP_POST) {
            reply_error(c, 405, "method_not_allowed", "method not allowed", "Allow: POST\r\n");
            status = 405;
        } else {
            status = serve_token(s, c, &req);
        }
    } else if (strcmp(req.path, "/api/config") == 0) {
        if (req.method != DEMO_HTTP_GET) {
            reply_error(c, 405, "method_not_allowed", "method not allowed", "Allow: GET\r\n");
            status = 405;
        } else {
            status = serve_config(s, c);
        }
    } else {
        status = serve_static(s, c, &req);
    }
    log_request(&req, status);
    c->phase = PH_WRITE;
    c->deadline_ms = now_ms() + DEMO_IO_TIMEOUT_MS;
}

/* ---- connections ---- */

static void conn_close(demo_server *s, size_t i)
{
    demo_conn *c = s->conns[i];
    if (!c)
        return;
    close(c->fd);
    if (c->out && c->out_secret)
        OPENSSL_cleanse(c->out, c->out_len);
    free(c->out);
    OPENSSL_cleanse(c->in, c->in_len);
    free(c);
    s->conns[i] = NULL;
}

static void conn_accept(demo_server *s)
{
    for (int k = 0; k < DEMO_MAX_CONNS; k++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a transient error: poll again */
        size_t slot = DEMO_MAX_CONNS, oldest = DEMO_MAX_CONNS;
        for (size_t i = 0; i < DEMO_MAX_CONNS && slot == DEMO_MAX_CONNS; i++) {
            demo_conn *o = s->conns[i];
            if (!o)
                slot = i;
            else if (o->phase == PH_READ &&
                     (oldest == DEMO_MAX_CONNS || o->deadline_ms < s->conns[oldest]->deadline_ms))
                oldest = i;
        }
        /* Full: drop the client that has waited longest without sending a
         * whole request, so idle sockets cannot lock everyone out. */
        if (slot == DEMO_MAX_CONNS && oldest < DEMO_MAX_CONNS) {
            conn_close(s, oldest);
            slot = oldest;
        }
        demo_conn *c = slot < DEMO_MAX_CONNS ? malloc(sizeof *c) : NULL;
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->phase = PH_READ;
        c->deadline_ms = now_ms() + DEMO_IO_TIMEOUT_MS;
        c->in_len = 0;
        c->drained = 0;
        c->out = NULL;
        c->out_len = c->out_off = 0;
        c->out_secret = 0;
        s->conns[slot] = c;
    }
}

/* Returns 0 to keep the connection, -1 to close it. */
static int conn_io(demo_server *s, demo_conn *c, short revents)
{
    if (c->phase == PH_READ && (revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
        if (n < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        if (n == 0)
            return -1;
        c->in_len += (size_t)n;
        handle_request(s, c);
        if (c->phase == PH_READ && c->in_len == sizeof c->in) {
            /* Unreachable with the parser's limits; refuse rather than spin. */
            reply_error(c, 413, "too_large", "request too large", NULL);
            c->phase = PH_WRITE;
        }
    }
    if (c->phase == PH_WRITE) {
        if (!c->out)
            return -1;
        while (c->out_off < c->out_len) {
            ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
            if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
            c->out_off += (size_t)n;
        }
        /* Half-close, then read what the client still sends, so closing
         * does not reset the connection before it has read the reply. */
        shutdown(c->fd, SHUT_WR);
        c->phase = PH_DRAIN;
        c->deadline_ms = now_ms() + DEMO_DRAIN_TIMEOUT_MS;
        return 0;
    }
    if (c->phase == PH_DRAIN && (revents & (POLLIN | POLLHUP | POLLERR))) {
        char sink[4096];
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        c->drained += (size_t)n;
        if (n == 0 || c->drained > DEMO_DRAIN_MAX)
            return -1;
    }
    return 0;
}

static int listen_on(const demo_opts *o, int *port_out)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(o->host, o->port, &hints, &res);
    if (rc != 0) {
        log_line("error", "cannot resolve listen address", "error", gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        log_line("error", "cannot listen", "error", strerror(errno));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd);
        return -1;
    }
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static void serve(demo_server *s)
{
    struct pollfd pfd[DEMO_MAX_CONNS + 1];
    size_t idx[DEMO_MAX_CONNS + 1];
    while (!demo_stop) {
        size_t n = 0;
        int64_t now = now_ms(), next = now + 1000;
        pfd[n].fd = s->listen_fd;
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        n++;
        for (size_t i = 0; i < DEMO_MAX_CONNS; i++) {
            demo_conn *c = s->conns[i];
            if (!c)
                continue;
            pfd[n].fd = c->fd;
            pfd[n].events = c->phase == PH_WRITE ? POLLOUT : POLLIN;
            pfd[n].revents = 0;
            idx[n] = i;
            n++;
            if (c->deadline_ms < next)
                next = c->deadline_ms;
        }
        int wait = next > now ? (int)(next - now) : 0;
        int rc = poll(pfd, (nfds_t)n, wait);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            log_line("error", "poll failed", "error", strerror(errno));
            return;
        }
        if (pfd[0].revents & POLLIN)
            conn_accept(s);
        now = now_ms();
        for (size_t k = 1; k < n; k++) {
            size_t i = idx[k];
            demo_conn *c = s->conns[i];
            if (!c)
                continue;
            if ((pfd[k].revents && conn_io(s, c, pfd[k].revents) != 0) ||
                (s->conns[i] && now >= c->deadline_ms))
                conn_close(s, i);
        }
    }
}

/* Takes the API key out of the environment, so that nothing this process
 * starts inherits it and /proc/<pid>/environ no longer shows it. */
static int load_key(lk_key **out)
{
    char *raw = getenv("LATCHKEY_API_KEY");
    if (!raw || !*raw) {
        fputs("latchkey-demo: set LATCHKEY_API_KEY to the demo's API key\n", stderr);
        return -1;
    }
    lk_error err = {0};
    int rc = lk_key_parse(raw, strlen(raw), out, &err);
    OPENSSL_cleanse(raw, strlen(raw));
    unsetenv("LATCHKEY_API_KEY");
    if (rc != LK_OK) {
        fprintf(stderr, "latchkey-demo: LATCHKEY_API_KEY: %s\n", err.message);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    demo_server s;
    memset(&s, 0, sizeof s);
    s.static_fd = s.listen_fd = -1;
    int rc = parse_options(argc, argv, &s.opts);
    if (rc)
        return rc == 1 ? 0 : rc;

    s.static_fd = open(s.opts.static_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (s.static_fd < 0 || fstatat(s.static_fd, "index.html", &st, 0) != 0) {
        fprintf(stderr, "latchkey-demo: --static-dir %s does not hold the demo's index.html\n",
                s.opts.static_dir);
        if (s.static_fd >= 0)
            close(s.static_fd);
        return 2;
    }
    if (load_key(&s.key) != 0) {
        close(s.static_fd);
        return 2;
    }
    snprintf(s.csp, sizeof s.csp,
             "Content-Security-Policy: default-src 'self'; connect-src 'self' %s; "
             "img-src 'self' data:; base-uri 'none'; form-action 'self'; "
             "frame-ancestors 'none'\r\n",
             s.opts.broker_origin);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int port = 0;
    s.listen_fd = listen_on(&s.opts, &port);
    if (s.listen_fd < 0) {
        lk_key_destroy(s.key);
        close(s.static_fd);
        return 1;
    }
    fprintf(stderr, "{\"level\":\"info\",\"msg\":\"listening\",\"host\":\"");
    log_json_str(stderr, s.opts.host);
    fprintf(stderr, "\",\"port\":%d,\"broker_url\":\"", port);
    log_json_str(stderr, s.opts.broker_url);
    fprintf(stderr, "\",\"token_ttl\":%ld}\n", s.opts.token_ttl);
    fflush(stderr);

    serve(&s);

    for (size_t i = 0; i < DEMO_MAX_CONNS; i++)
        conn_close(&s, i);
    close(s.listen_fd);
    close(s.static_fd);
    lk_key_destroy(s.key);
    log_line("info", "stopped", NULL, NULL);
    return 0;
}
