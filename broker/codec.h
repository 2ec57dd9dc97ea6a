/*
 * codec.h - the latchkey.v1 wire codec: parses client frames and writes
 * server frames. No I/O and no libwebsockets dependency, so it can be unit
 * tested and fuzzed on its own.
 *
 * Parsing does not allocate: spans in lk_request point into the caller's
 * frame buffer and are valid while it is. Writers fill caller buffers and
 * return the length written, or 0 when the buffer is too small (nothing
 * useful is written then).
 *
 * Thread safety: every function is reentrant.
 */
#ifndef LK_BROKER_CODEC_H
#define LK_BROKER_CODEC_H

#include <stddef.h>
#include <stdint.h>

typedef enum lk_op {
    LK_OP_SUBSCRIBE = 1,
    LK_OP_UNSUBSCRIBE,
    LK_OP_PUBLISH,
    LK_OP_AUTH,
    LK_OP_PING
} lk_op;

typedef struct lk_span {
    const char *p;
    size_t len;
} lk_span;

/* Outcome of lk_codec_parse. */
typedef enum lk_parse_rc {
    LK_PARSE_OK = 0,
    LK_PARSE_PROTOCOL = -1,    /* not one JSON object, missing/unknown op: close 4400 */
    LK_PARSE_BAD_REQUEST = -2  /* known op, missing or invalid field: error bad_request */
} lk_parse_rc;

#define LK_CODEC_MAX_DEPTH 64  /* nesting limit for `data` */

typedef struct lk_request {
    lk_op op;
    int has_id;
    int64_t id;           /* integer `id`, echoed in the reply */
    lk_span channel;      /* subscribe/unsubscribe/publish: a valid channel name */
    lk_span data;         /* publish: raw JSON text of `data`, exactly as sent */
    int has_since;
    uint64_t since;       /* subscribe: optional non-negative integer */
    lk_span token;        /* auth: the token string (no escapes allowed) */
} lk_request;

/* Parses one client frame of `len` bytes. The frame must be exactly one
 * JSON object (surrounding whitespace allowed); duplicate keys: first wins;
 * unknown fields are ignored. On LK_PARSE_BAD_REQUEST, `req->op`,
 * `req->has_id`/`req->id` are set when they could be read, and `why`
 * (if non-NULL) receives a short NUL-terminated reason fit for the error
 * frame's message (it never quotes the token). */
lk_parse_rc lk_codec_parse(const char *buf, size_t len, lk_request *req,
                           char *why, size_t why_len);

/* Copies JSON text `in` to `out` without insignificant whitespace, so that
 * it never contains a raw newline. `out` must hold `len` bytes; it may equal
 * `in` (minify in place). Returns the length written. `in` must be valid
 * JSON (as returned in lk_request.data). */
size_t lk_codec_minify(const char *in, size_t len, char *out);

/* Writes `s` as a JSON string (with quotes and escapes). Returns the length
 * or 0 if `cap` is too small. Worst case needs 6 * len + 2 bytes. */
size_t lk_codec_json_string(char *out, size_t cap, const char *s, size_t len);

/* Server frames. Each writer returns the frame length, or 0 if `cap` is too
 * small. `id` is written only when has_id is nonzero. Strings passed as
 * `const char *` may be NULL where the SPEC allows null. */
size_t lk_codec_welcome(char *out, size_t cap, const char *conn_id,
                        const char *client_id, const char *workspace,
                        int64_t expires_at, int64_t server_time_ms,
                        size_t max_frame);
size_t lk_codec_subscribed(char *out, size_t cap, int has_id, int64_t id,
                           lk_span channel, uint64_t seq);
/* `reason` NULL for a plain reply, e.g. "capability_revoked" otherwise. */
size_t lk_codec_unsubscribed(char *out, size_t cap, int has_id, int64_t id,
                             lk_span channel, const char *reason);
size_t lk_codec_ack(char *out, size_t cap, int has_id, int64_t id,
                    lk_span channel, uint64_t seq);
size_t lk_codec_authed(char *out, size_t cap, int has_id, int64_t id,
                       int64_t expires_at);
size_t lk_codec_pong(char *out, size_t cap, int has_id, int64_t id);
size_t lk_codec_token_expiring(char *out, size_t cap, int64_t expires_in);
/* `data` must already be minified JSON. `from` NULL writes null. */
size_t lk_codec_message(char *out, size_t cap, lk_span channel, uint64_t seq,
                        lk_span data, const char *from, int64_t ts_ms);
/* `code` is one of the SPEC error codes ("bad_request", ...). */
size_t lk_codec_error(char *out, size_t cap, int has_id, int64_t id,
                      const char *code, const char *message);

#endif
