/*
 * lg_ws.c - WebSocket client codec for the load generator (see lg_ws.h).
 */
#include "lg_ws.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define LG_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define LG_WS_NONCE_BYTES 16

int lg_ws_make_key(char key[LG_WS_KEY_BYTES + 1])
{
    unsigned char nonce[LG_WS_NONCE_BYTES];
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)key, nonce, sizeof nonce);
    return 0;
}

void lg_ws_accept_for(const char *key, char out[LG_WS_ACCEPT_BYTES + 1])
{
    char buf[128];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int n = snprintf(buf, sizeof buf, "%s%s", key, LG_WS_GUID);
    if (n < 0 || (size_t)n >= sizeof buf ||
        EVP_Digest(buf, (size_t)n, digest, &dlen, EVP_sha1(), NULL) != 1 || dlen != 20) {
        /* An accept value no server can match. */
        out[0] = '\0';
        return;
    }
    EVP_EncodeBlock((unsigned char *)out, digest, (int)dlen);
}

size_t lg_ws_request(char *out, size_t cap, const char *host, int port, const char *path,
                     const char *key, const char *subprotocol, const char *token)
{
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s%s%s"
                     "\r\n",
                     path, host, port, key,
                     subprotocol || token ? "Sec-WebSocket-Protocol: " : "",
                     subprotocol ? subprotocol : "",
                     token ? (subprotocol ? ", bearer." : "bearer.") : "", token ? token : "",
                     subprotocol || token ? "\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

size_t lg_ws_head_end(const char *buf, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return i + 1;
    return 0;
}

int lg_ws_next_header(const char **pos, const char *end, const char **name, size_t *nlen,
                      const char **val, size_t *vlen)
{
    const char *p = *pos;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            return 0;
        size_t ll = (size_t)(eol - p);
        if (ll && p[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            return 0;
        *pos = eol + 1;
        const char *colon = memchr(p, ':', ll);
        if (colon) {
            const char *v = colon + 1;
            size_t vl = ll - (size_t)(colon - p) - 1;
            while (vl && (*v == ' ' || *v == '\t')) {
                v++;
                vl--;
            }
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            *name = p;
            *nlen = (size_t)(colon - p);
            *val = v;
            *vlen = vl;
            return 1;
        }
        p = eol + 1; /* a line with no colon: skipped */
    }
    return 0;
}

int lg_ws_has_token(const char *v, size_t vlen, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < vlen && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == tl && strncasecmp(v + start, tok, tl) == 0)
            return 1;
    }
    return 0;
}

int lg_ws_check_response(const char *head, size_t len, const char *key,
                         const char *subprotocol, char *why, size_t why_len)
{
    int upgrade = 0, connection = 0, accept = 0, proto = 0, proto_seen = 0;
    char want[LG_WS_ACCEPT_BYTES + 1];

    if (len < 12 || memcmp(head, "HTTP/1.1 ", 9) != 0) {
        snprintf(why, why_len, "not an HTTP/1.1 response");
        return -1;
    }
    if (memcmp(head + 9, "101", 3) != 0 || (len > 12 && head[12] != ' ' && head[12] != '\r')) {
        snprintf(why, why_len, "HTTP %.3s", head + 9);
        return -1;
    }
    lg_ws_accept_for(key, want);

    const char *p = memchr(head, '\n', len), *end = head + len, *line, *v;
    size_t nlen, vlen;
    if (p)
        p++;
    while (p && lg_ws_next_header(&p, end, &line, &nlen, &v, &vlen)) {
#define NAME_IS(s) (nlen == sizeof(s) - 1 && strncasecmp(line, s, nlen) == 0)
        if (NAME_IS("Upgrade"))
            upgrade = lg_ws_has_token(v, vlen, "websocket");
        else if (NAME_IS("Connection"))
            connection = lg_ws_has_token(v, vlen, "upgrade");
        else if (NAME_IS("Sec-WebSocket-Accept"))
            accept = want[0] && vlen == LG_WS_ACCEPT_BYTES && memcmp(v, want, vlen) == 0;
        else if (NAME_IS("Sec-WebSocket-Protocol")) {
            proto_seen = 1;
            proto = subprotocol && vlen == strlen(subprotocol) &&
                    memcmp(v, subprotocol, vlen) == 0;
        }
#undef NAME_IS
    }
    if (!upgrade || !connection) {
        snprintf(why, why_len, "missing Upgrade/Connection headers");
        return -1;
    }
    if (!accept) {
        snprintf(why, why_len, "bad Sec-WebSocket-Accept");
        return -1;
    }
    if (subprotocol && !proto) {
        snprintf(why, why_len, "subprotocol %s not selected", subprotocol);
        return -1;
    }
    if (!subprotocol && proto_seen) {
        snprintf(why, why_len, "unrequested subprotocol");
        return -1;
    }
    return 0;
}

size_t lg_ws_encode(uint8_t *out, int opcode, const void *payload, size_t len,
                    uint32_t mask)
{
    size_t h = 0;
    out[h++] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t m[4] = {(uint8_t)(mask >> 24), (uint8_t)(mask >> 16), (uint8_t)(mask >> 8),
                    (uint8_t)mask};
    memcpy(out + h, m, 4);
    h += 4;
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        out[h + i] = src[i] ^ m[i & 3];
    return h + len;
}

void lg_ws_reader_init(lg_ws_reader *r, size_t max_message)
{
    memset(r, 0, sizeof *r);
    r->max_message = max_message;
}

void lg_ws_reader_free(lg_ws_reader *r)
{
    free(r->msg);
    r->msg = NULL;
    r->msg_len = r->msg_cap = 0;
    r->msg_opcode = 0;
}

static int append_fragment(lg_ws_reader *r, const uint8_t *p, size_t n)
{
    if (n > r->max_message - r->msg_len)
        return -1;
    if (r->msg_len + n > r->msg_cap) {
        size_t cap = r->msg_cap ? r->msg_cap : 4096;
        while (cap < r->msg_len + n)
            cap *= 2;
        uint8_t *m = realloc(r->msg, cap);
        if (!m)
            return -1;
        r->msg = m;
        r->msg_cap = cap;
    }
    memcpy(r->msg + r->msg_len, p, n);
    r->msg_len += n;
    return 0;
}

long lg_ws_reader_feed(lg_ws_reader *r, const uint8_t *buf, size_t len,
                       lg_ws_on_message cb, void *ud)
{
    size_t off = 0;
    for (;;) {
        const uint8_t *f = buf + off;
        size_t avail = len - off;
        if (avail < 2)
            break;
        int fin = f[0] & 0x80, opcode = f[0] & 0x0f;
        if ((f[0] & 0x70) || (f[1] & 0x80))
            return -1; /* no extension negotiated; servers never mask */
        uint64_t plen = f[1] & 0x7f;
        size_t h = 2;
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = ((uint64_t)f[2] << 8) | f[3];
            h = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = (plen << 8) | f[2 + i];
            h = 10;
        }
        if (plen > r->max_message)
            return -1;
        if (avail - h < plen)
            break;
        const uint8_t *p = f + h;
        size_t n = (size_t)plen;
        int stop = 0;

        if (opcode >= 0x8) {
            if (!fin || n > 125 || (opcode != LG_WS_CLOSE && opcode != LG_WS_PING &&
                                    opcode != LG_WS_PONG))
                return -1;
            stop = cb(ud, opcode, p, n);
        } else if (opcode == LG_WS_CONT) {
            if (!r->msg_opcode || append_fragment(r, p, n) < 0)
                return -1;
            if (fin) {
                int op = r->msg_opcode;
                size_t mlen = r->msg_len;
                r->msg_opcode = 0;
                r->msg_len = 0;
                stop = cb(ud, op, r->msg, mlen);
                /* Idle connections should not keep a large buffer around. */
                if (r->msg_cap > 65536)
                    lg_ws_reader_free(r);
            }
        } else if (opcode == LG_WS_TEXT || opcode == LG_WS_BINARY) {
            if (r->msg_opcode)
                return -1; /* a new message inside a fragmented one */
            if (fin) {
                stop = cb(ud, opcode, p, n);
            } else {
                if (append_fragment(r, p, n) < 0)
                    return -1;
                r->msg_opcode = opcode;
            }
        } else {
            return -1;
        }
        off += h + n;
        if (stop)
            break;
    }
    return (long)off;
}
