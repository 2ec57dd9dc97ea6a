/*
 * log.h - the broker's structured log: one JSON object per line,
 * {"ts":"...Z","level":"info","msg":"...", ...fields}, on stderr or a file.
 *
 * A line is built on the stack with lk_log_begin / lk_log_str / lk_log_int /
 * lk_log_end and written with a single write(2), so lines from one process
 * never interleave. Callers must never pass a token, API key or secret as a
 * field value.
 *
 * Ownership: lk_log_create returns a logger the caller destroys with
 * lk_log_destroy (NULL is a no-op).
 *
 * Thread safety: every service thread logs through one logger; lines are
 * written whole under its mutex, which also covers lk_log_reopen, so a
 * reopen never races a write. Create and destroy from one thread.
 */
#ifndef LK_BROKER_LOG_H
#define LK_BROKER_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum lk_log_level {
    LK_LOG_DEBUG = 0,
    LK_LOG_INFO,
    LK_LOG_WARN,
    LK_LOG_ERROR
} lk_log_level;

#define LK_LOG_LINE_BYTES 2048

typedef struct lk_log lk_log;

typedef struct lk_logline {
    lk_log *log;
    size_t len;
    int truncated;
    char buf[LK_LOG_LINE_BYTES];
} lk_logline;

/* Opens `path` for appending (mode 0600 when created), or uses stderr when
 * path is NULL. On failure returns -1 and writes the reason into `why`. */
int lk_log_create(const char *path, lk_log_level level, lk_log **out,
                  char *why, size_t why_len);
void lk_log_destroy(lk_log *log);

/* Reopens the file (after rotation) or switches to another path; keeps the
 * old one on failure. -1 with `why` on failure. */
int lk_log_reopen(lk_log *log, const char *path, char *why, size_t why_len);
void lk_log_set_level(lk_log *log, lk_log_level level);
int lk_log_enabled(const lk_log *log, lk_log_level level);

/* "debug"|"info"|"warn"|"error" -> level; -1 if unknown. */
int lk_log_parse_level(const char *s, lk_log_level *out);
const char *lk_log_level_name(lk_log_level level);

/* Starts a line; returns 0 (and the line is a no-op) when `level` is
 * filtered out, so callers can skip building fields. */
int lk_log_begin(lk_logline *l, lk_log *log, lk_log_level level,
                 const char *msg);
/* String field; NULL writes null. Long values are cut, the line stays JSON. */
void lk_log_str(lk_logline *l, const char *key, const char *val);
void lk_log_strn(lk_logline *l, const char *key, const char *val, size_t len);
void lk_log_int(lk_logline *l, const char *key, int64_t val);
void lk_log_end(lk_logline *l);

/* One-line helpers: a message with an optional "error" detail string. */
void lk_log_msg(lk_log *log, lk_log_level level, const char *msg,
                const char *detail);

#endif
