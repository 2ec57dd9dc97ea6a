/*
 * lg_ws.h - the load generator's WebSocket client codec (RFC 6455): the
 * upgrade request, the 101 check, masked frame encoding and an incremental
 * frame reader with fragment reassembly. No I/O, so it can be unit tested.
 *
 * Ownership: an lg_ws_reader owns its reassembly buffer; release it with
 * lg_ws_reader_free. Everything else writes into caller buffers.
 *
 * Thread safety: every function is reentrant; a reader belongs to one
 * connection and one thread.
 */
#ifndef LG_WS_H
#define LG_WS_H

#include <stddef.h>
#include <stdint.h>

#define LG_WS_KEY_BYTES 24        /* base64 of 16 random bytes */
#define LG_WS_ACCEPT_BYTES 28     /* base64 of a SHA-1 digest */
#define LG_WS_MAX_HEADER 14       /* largest client frame header (masked) */
#define LG_WS_MAX_HEAD 16384      /* largest response head we read */

enum {
    LG_WS_CONT = 0x0,
    LG_WS_TEXT = 0x1,
    LG_WS_BINARY = 0x2,
    LG_WS_CLOSE = 0x8,
    LG_WS_PING = 0x9,
    LG_WS_PONG = 0xA
};

/* Fills `key` with a fresh NUL-terminated Sec-WebSocket-Key. 0 on success,
 * -1 if the CSPRNG fails. */
int lg_ws_make_key(char key[LG_WS_KEY_BYTES + 1]);

/* The Sec-WebSocket-Accept value a server must answer to `key`. */
void lg_ws_accept_for(const char *key, char out[LG_WS_ACCEPT_BYTES + 1]);

/* Writes the upgrade request for `path`, offering `subprotocol` (none when
 * NULL) and, when `token` is non-NULL, bearer.<token> after it. Returns the
 * length, or 0 when `cap` is too small. The result holds the token: callers
 * cleanse it. */
size_t lg_ws_request(char *out, size_t cap, const char *host, int port, const char *path,
                     const char *key, const char *subprotocol, const char *token);

/* Length of the response head (through the blank line) at the start of
 * `buf`, or 0 if it is not complete yet. */
size_t lg_ws_head_end(const char *buf, size_t len);
/* The next "Name: value" line of a head from *pos (which starts just past
 * the request or status line): name and value, the value without
 * surrounding blanks; advances *pos. 0 at the blank line or the end. Lines
 * with no colon are skipped. */
int lg_ws_next_header(const char **pos, const char *end, const char **name, size_t *nlen,
                      const char **val, size_t *vlen);
/* Case-insensitive search for `tok` as a comma-separated element of a
 * header value of `vlen` bytes, e.g. "keep-alive, Upgrade". */
int lg_ws_has_token(const char *v, size_t vlen, const char *tok);

/* Checks a complete response head: status 101, Upgrade: websocket,
 * Connection: upgrade, the Accept matching `key` and `subprotocol` selected
 * (or, when it is NULL, none selected). 0 if valid; -1 with a short reason
 * in `why` otherwise (the status line's code for a refused upgrade). */
int lg_ws_check_response(const char *head, size_t len, const char *key,
                         const char *subprotocol, char *why, size_t why_len);

/* Encodes one final client frame with the given 32-bit mask. `out` must
 * hold len + LG_WS_MAX_HEADER bytes. Returns the frame length. */
size_t lg_ws_encode(uint8_t *out, int opcode, const void *payload, size_t len,
                    uint32_t mask);

/* Called for every complete message: text/binary reassembled from its
 * fragments, and every control frame. Return 0 to go on, nonzero to stop
 * reading (the connection is being closed). */
typedef int (*lg_ws_on_message)(void *ud, int opcode, const uint8_t *p, size_t len);

typedef struct lg_ws_reader {
    uint8_t *msg;       /* fragments of the message in progress */
    size_t msg_len;
    size_t msg_cap;
    int msg_opcode;     /* 0 when no fragmented message is in progress */
    size_t max_message; /* frame and reassembled message limit */
} lg_ws_reader;

/* A reader with no buffer and the given message limit. */
void lg_ws_reader_init(lg_ws_reader *r, size_t max_message);
/* Releases the reassembly buffer; the reader may be reused. */
void lg_ws_reader_free(lg_ws_reader *r);

/* Consumes the complete frames at the start of `buf` (a partial frame is
 * left for the next call, with more bytes). Returns the bytes consumed, or
 * -1 on a protocol error (masked or reserved-bit server frame, bad control
 * frame, unexpected continuation, over the limit, out of memory). When the
 * callback stops the reader, the bytes up to that frame are consumed. */
long lg_ws_reader_feed(lg_ws_reader *r, const uint8_t *buf, size_t len,
                       lg_ws_on_message cb, void *ud);

#endif
