/* http.c - request parsing and response formatting for the demo backend. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Finds the end of the head ("\r\n\r\n") within the first `len` bytes and
 * returns the head length including it, or 0. */
static size_t head_end(const char *buf, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return i + 1;
    return 0;
}

static int parse_request_line(const char *p, size_t len, demo_http_req *req)
{
    size_t i = 0;
    while (i < len && p[i] != ' ') {
        if (!is_tchar((unsigned char)p[i]))
            return 400;
        i++;
    }
    if (i == 0 || i >= len)
        return 400;
    if (i == 3 && memcmp(p, "GET", 3) == 0)
        req->method = DEMO_HTTP_GET;
    else if (i == 4 && memcmp(p, "HEAD", 4) == 0)
        req->method = DEMO_HTTP_HEAD;
    else if (i == 4 && memcmp(p, "POST", 4) == 0)
        req->method = DEMO_HTTP_POST;
    else
        req->method = DEMO_HTTP_OTHER;

    size_t t = ++i;
    while (i < len && p[i] != ' ') {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f)
            return 400;
        i++;
    }
    size_t tlen = i - t;
    if (tlen == 0 || i >= len)
        return 400;
    if (tlen > DEMO_HTTP_PATH_MAX)
        return 414;
    if (p[t] != '/')
        return 400;
    size_t plen = 0;
    while (plen < tlen && p[t + plen] != '?' && p[t + plen] != '#')
        plen++;
    memcpy(req->path, p + t, plen);
    req->path[plen] = '\0';

    i++;
    const char *v = p + i;
    if (len - i != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
        v[6] != '.' || v[7] < '0' || v[7] > '9')
        return 400;
    return (v[5] == '1' && (v[7] == '0' || v[7] == '1')) ? 0 : 505;
}

static void trim(const char **v, size_t *n)
{
    while (*n > 0 && (**v == ' ' || **v == '\t')) {
        (*v)++;
        (*n)--;
    }
    while (*n > 0 && ((*v)[*n - 1] == ' ' || (*v)[*n - 1] == '\t'))
        (*n)--;
}

static int is_json_type(const char *v, size_t n)
{
    static const char json[] = "application/json";
    size_t jl = sizeof json - 1;
    if (n < jl || strncasecmp(v, json, jl) != 0)
        return 0;
    return n == jl || v[jl] == ';' || v[jl] == ' ';
}

/* Parses one header line (no CRLF). Updates `req` and *content_length
 * (-1 = not seen yet). Returns 0 or a refusal status. */
static int parse_header(const char *p, size_t len, demo_http_req *req,
                        long *content_length)
{
    size_t i = 0;
    while (i < len && p[i] != ':') {
        if (!is_tchar((unsigned char)p[i]))
            return 400; /* also refuses obsolete line folding */
        i++;
    }
    if (i == 0 || i >= len)
        return 400;
    size_t nlen = i;
    const char *v = p + i + 1;
    size_t vlen = len - i - 1;
    trim(&v, &vlen);
    for (size_t k = 0; k < vlen; k++) {
        unsigned char c = (unsigned char)v[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 400;
    }

    if (nlen == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
        if (vlen == 0 || vlen > 9)
            return vlen > 9 ? 413 : 400;
        long n = 0;
        for (size_t k = 0; k < vlen; k++) {
            if (v[k] < '0' || v[k] > '9')
                return 400;
            n = n * 10 + (v[k] - '0');
        }
        if (*content_length >= 0 && *content_length != n)
            return 400;
        *content_length = n;
    } else if (nlen == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
        return 501;
    } else if (nlen == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
        req->json_body = is_json_type(v, vlen);
    }
    return 0;
}

int demo_http_parse(const char *buf, size_t len, demo_http_req *req)
{
    memset(req, 0, sizeof *req);
    size_t scan = len < DEMO_HTTP_HEAD_MAX ? len : DEMO_HTTP_HEAD_MAX;
    if (memchr(buf, '\0', scan))
        return 400;
    size_t hl = head_end(buf, scan);
    if (hl == 0)
        return len >= DEMO_HTTP_HEAD_MAX ? 431 : DEMO_HTTP_INCOMPLETE;

    const char *line = buf;
    const char *end = buf + hl - 2; /* the final CRLF ends the head */
    int first = 1;
    long content_length = -1;
    /* A bare LF is refused by the character checks of every line part, so
     * lines can only be read one way. */
    while (line < end) {
        const char *cr = memchr(line, '\r', (size_t)(end - line));
        if (!cr || cr[1] != '\n')
            return 400;
        size_t n = (size_t)(cr - line);
        int rc = first ? parse_request_line(line, n, req)
                       : parse_header(line, n, req, &content_length);
        if (rc)
            return rc;
        first = 0;
        line = cr + 2;
    }
    if (first)
        return 400;
    if (content_length < 0)
        content_length = 0;
    if (content_length > DEMO_HTTP_BODY_MAX)
        return 413;
    req->head_len = hl;
    req->body_len = (size_t)content_length;
    if (len - hl < req->body_len)
        return DEMO_HTTP_INCOMPLETE;
    return 0;
}

const char *demo_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

char *demo_http_response(int status, const char *content_type,
                         const char *extra_headers, const char *body,
                         size_t body_len, int head_only, size_t *out_len)
{
    char head[2048];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "%s%s%s"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "%s"
                     "\r\n",
                     status, demo_http_reason(status),
                     content_type ? "Content-Type: " : "",
                     content_type ? content_type : "",
                     content_type ? "\r\n" : "",
                     body_len, extra_headers ? extra_headers : "");
    if (n < 0 || (size_t)n >= sizeof head)
        return NULL;
    size_t blen = head_only ? 0 : body_len;
    char *out = malloc((size_t)n + blen + 1);
    if (!out)
        return NULL;
    memcpy(out, head, (size_t)n);
    if (blen)
        memcpy(out + n, body, blen);
    out[(size_t)n + blen] = '\0';
    *out_len = (size_t)n + blen;
    return out;
}
