/* log.c - JSON-lines logging with a stack line buffer and one write(2)
 * per line. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct lk_log {
    pthread_mutex_t m; /* fd and owns_fd */
    int fd;            /* 2 when logging to stderr */
    int owns_fd;
    int level;         /* lk_log_level, read without the mutex */
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *lk_log_level_name(lk_log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "info";
}

int lk_log_parse_level(const char *s, lk_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (lk_log_level)i;
            return 0;
        }
    }
    return -1;
}

static int open_log_file(const char *path, char *why, size_t why_len)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        snprintf(why, why_len, "cannot open log file %s: %s", path,
                 strerror(errno));
    return fd;
}

int lk_log_create(const char *path, lk_log_level level, lk_log **out,
                  char *why, size_t why_len)
{
    *out = NULL;
    lk_log *log = calloc(1, sizeof *log);
    if (!log) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    log->level = level;
    log->fd = STDERR_FILENO;
    if (path) {
        log->fd = open_log_file(path, why, why_len);
        if (log->fd < 0) {
            free(log);
            return -1;
        }
        log->owns_fd = 1;
    }
    pthread_mutex_init(&log->m, NULL);
    *out = log;
    return 0;
}

void lk_log_destroy(lk_log *log)
{
    if (!log)
        return;
    if (log->owns_fd)
        close(log->fd);
    pthread_mutex_destroy(&log->m);
    free(log);
}

int lk_log_reopen(lk_log *log, const char *path, char *why, size_t why_len)
{
    int fd = STDERR_FILENO;
    if (path) {
        fd = open_log_file(path, why, why_len);
        if (fd < 0)
            return -1;
    }
    pthread_mutex_lock(&log->m);
    if (log->owns_fd)
        close(log->fd);
    log->fd = fd;
    log->owns_fd = path != NULL;
    pthread_mutex_unlock(&log->m);
    return 0;
}

void lk_log_set_level(lk_log *log, lk_log_level level)
{
    __atomic_store_n(&log->level, (int)level, __ATOMIC_RELAXED);
}

int lk_log_enabled(const lk_log *log, lk_log_level level)
{
    return log && (int)level >= __atomic_load_n(&log->level, __ATOMIC_RELAXED);
}

/* Room kept free for the closing "}\n" and a truncation marker. */
#define LINE_RESERVE 32

static void put(lk_logline *l, const char *s, size_t n)
{
    if (l->len + n > LK_LOG_LINE_BYTES - LINE_RESERVE) {
        l->truncated = 1;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* Writes a JSON string, cutting it (never mid-escape) if the line is full. */
static void put_json_string(lk_logline *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t limit = LK_LOG_LINE_BYTES - LINE_RESERVE;
    if (l->len + 2 > limit) {
        l->truncated = 1;
        return;
    }
    l->buf[l->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)c;
        } else if (c == '\n') {
            esc[k++] = '\\';
            esc[k++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            k = 6;
        } else {
            esc[k++] = (char)c;
        }
        if (l->len + k + 1 > limit) {
            l->truncated = 1;
            break;
        }
        memcpy(l->buf + l->len, esc, k);
        l->len += k;
    }
    l->buf[l->len++] = '"';
}

int lk_log_begin(lk_logline *l, lk_log *log, lk_log_level level,
                 const char *msg)
{
    l->log = NULL;
    l->len = 0;
    l->truncated = 0;
    if (!lk_log_enabled(log, level))
        return 0;
    l->log = log;

    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(l->buf, sizeof l->buf,
                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
                     lk_log_level_name(level));
    l->len = (size_t)n;
    put_json_string(l, msg, strlen(msg));
    return 1;
}

static void put_key(lk_logline *l, const char *key)
{
    put(l, ",", 1);
    put_json_string(l, key, strlen(key));
    put(l, ":", 1);
}

void lk_log_strn(lk_logline *l, const char *key, const char *val, size_t len)
{
    if (!l->log)
        return;
    size_t mark = l->len;
    put_key(l, key);
    if (l->truncated) {
        l->len = mark;
        return;
    }
    if (val)
        put_json_string(l, val, len);
    else
        put(l, "null", 4);
}

void lk_log_str(lk_logline *l, const char *key, const char *val)
{
    lk_log_strn(l, key, val, val ? strlen(val) : 0);
}

void lk_log_int(lk_logline *l, const char *key, int64_t val)
{
    if (!l->log)
        return;
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRId64, val);
    size_t mark = l->len;
    put_key(l, key);
    put(l, num, (size_t)n);
    if (l->truncated)
        l->len = mark;
}

void lk_log_end(lk_logline *l)
{
    if (!l->log)
        return;
    if (l->truncated) {
        static const char mark[] = ",\"truncated\":true";
        memcpy(l->buf + l->len, mark, sizeof mark - 1);
        l->len += sizeof mark - 1;
    }
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    const char *p = l->buf;
    size_t left = l->len;
    /* A log write must not stall the loop for long; give up after a few
     * short writes rather than spin on a blocked pipe. */
    pthread_mutex_lock(&l->log->m);
    for (int tries = 0; left && tries < 8; tries++) {
        ssize_t w = write(l->log->fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    pthread_mutex_unlock(&l->log->m);
    l->log = NULL;
}

void lk_log_msg(lk_log *log, lk_log_level level, const char *msg,
                const char *detail)
{
    lk_logline l;
    if (!lk_log_begin(&l, log, level, msg))
        return;
    if (detail)
        lk_log_str(&l, "error", detail);
    lk_log_end(&l);
}
