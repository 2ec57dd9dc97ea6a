/*
 * http.h - the demo backend's deliberately small HTTP/1.1 layer: a request
 * parser and a response writer, with no I/O so both can be tested on their
 * own.
 *
 * The server answers one request per connection and then closes it, so the
 * parser only has to find one head and one Content-Length body. Anything
 * outside that small subset (chunked bodies, oversize heads or bodies,
 * header continuation lines, NUL bytes) is refused with a status code
 * rather than guessed at.
 *
 * Ownership: demo_http_response returns a buffer the caller frees with
 * free(). The parser does not allocate; `req` holds copies, not pointers.
 *
 * Thread safety: every function is reentrant.
 */
#ifndef DEMO_HTTP_H
#define DEMO_HTTP_H

#include <stddef.h>

#define DEMO_HTTP_HEAD_MAX 8192  /* request line + headers + blank line */
#define DEMO_HTTP_BODY_MAX 4096  /* the only body accepted is a tiny JSON */
#define DEMO_HTTP_PATH_MAX 256   /* request target, query string included */
#define DEMO_HTTP_REQUEST_MAX (DEMO_HTTP_HEAD_MAX + DEMO_HTTP_BODY_MAX)

/* demo_http_parse result when the buffer holds only part of a request. */
#define DEMO_HTTP_INCOMPLETE 1

typedef enum demo_http_method {
    DEMO_HTTP_GET = 1,
    DEMO_HTTP_HEAD,
    DEMO_HTTP_POST,
    DEMO_HTTP_OTHER
} demo_http_method;

typedef struct demo_http_req {
    demo_http_method method;
    char path[DEMO_HTTP_PATH_MAX + 1]; /* target without query or fragment */
    int json_body;      /* Content-Type is application/json */
    size_t head_len;    /* bytes of head, blank line included */
    size_t body_len;    /* Content-Length; the body starts at head_len */
} demo_http_req;

/* Parses the request in buf[0..len). Returns 0 when a whole request (head
 * and body) is present and fills `req`; DEMO_HTTP_INCOMPLETE when more
 * bytes are needed; otherwise the HTTP status to refuse it with: 400 (bad
 * syntax), 413 (body over DEMO_HTTP_BODY_MAX), 414 (target too long), 431
 * (head over DEMO_HTTP_HEAD_MAX), 501 (Transfer-Encoding), 505 (not
 * HTTP/1.x). */
int demo_http_parse(const char *buf, size_t len, demo_http_req *req);

/* The standard reason phrase for `status` ("Not Found"). Static string. */
const char *demo_http_reason(int status);

/* Formats a complete response: status line, Content-Type (omitted when
 * NULL), Content-Length, Connection: close, `extra_headers` (zero or more
 * complete "Name: value\r\n" lines, may be NULL), blank line, then the body
 * unless `head_only`. Returns a buffer of *out_len bytes that the caller
 * frees with free(), or NULL on ENOMEM. */
char *demo_http_response(int status, const char *content_type,
                         const char *extra_headers, const char *body,
                         size_t body_len, int head_only, size_t *out_len);

#endif
