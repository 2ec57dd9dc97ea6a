/* http.c - calls to the broker's HTTP API (SPEC section 5) with libcurl.
 * The API key travels only in the Authorization header; requests time out
 * and responses are capped, so a stuck or hostile server cannot hang the
 * tool or exhaust its memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>

#include "cli.h"

#define HTTP_TIMEOUT_S 10L
#define HTTP_CONNECT_TIMEOUT_S 5L
#define HTTP_RESPONSE_MAX (1024 * 1024)

typedef struct sink {
    char *buf;
    size_t len, cap;
    int overflow;
} sink;

static size_t on_data(char *data, size_t size, size_t nmemb, void *ud)
{
    sink *s = ud;
    size_t n = size * nmemb;
    if (n > HTTP_RESPONSE_MAX - s->len) {
        s->overflow = 1;
        return 0;  /* aborts the transfer */
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *grown = malloc(cap);
        if (!grown)
            return 0;
        if (s->buf) {
            memcpy(grown, s->buf, s->len);
            OPENSSL_cleanse(s->buf, s->len);
            free(s->buf);
        }
        s->buf = grown;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

static int global_init(void)
{
    static int done;
    if (done)
        return 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    atexit(curl_global_cleanup);
    done = 1;
    return 0;
}

/* curl_slist_free_all does not wipe: clear the Authorization line first. */
static void free_headers(struct curl_slist *h)
{
    for (struct curl_slist *p = h; p; p = p->next)
        OPENSSL_cleanse(p->data, strlen(p->data));
    curl_slist_free_all(h);
}

int cli_http(const char *method, const char *base_url, const char *path,
             const char *api_key, const char *body, cli_http_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    size_t ulen = strlen(base_url) + strlen(path) + 1;
    char *url = malloc(ulen);
    char auth[32 + CLI_KEY_BUF_BYTES];
    char errbuf[CURL_ERROR_SIZE] = "";
    sink s = {0};
    struct curl_slist *headers = NULL, *h;
    CURL *curl = NULL;
    int rc = CLI_ERR;

    if (!url || global_init() != 0 || !(curl = curl_easy_init())) {
        cli_error("cannot start an HTTP request");
        goto out;
    }
    snprintf(url, ulen, "%s%s", base_url, path);
    if ((size_t)snprintf(auth, sizeof auth, "Authorization: Bearer %s", api_key) >=
        sizeof auth) {
        cli_error("API key too long");
        goto out;
    }
    /* An empty Expect: stops curl from stalling larger bodies on a
     * "100 Continue" the broker need not send. */
    const char *lines[] = {auth, "Accept: application/json",
                           body ? "Content-Type: application/json" : NULL,
                           body ? "Expect:" : NULL};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if (!lines[i])
            continue;
        if (!(h = curl_slist_append(headers, lines[i]))) {
            cli_error("out of memory");
            goto out;
        }
        headers = h;
    }

    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, HTTP_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, HTTP_CONNECT_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "latchkey/" LK_VERSION_STRING);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, body ? (long)strlen(body) : 0L);
    } else {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    }

    CURLcode cc = curl_easy_perform(curl);
    if (s.overflow) {
        cli_error("the response from %s is larger than %d bytes", base_url,
                  HTTP_RESPONSE_MAX);
    } else if (cc != CURLE_OK) {
        char clean[CURL_ERROR_SIZE];
        const char *why = errbuf[0] ? errbuf : curl_easy_strerror(cc);
        cli_sanitize(why, strlen(why), clean, sizeof clean - 1);
        cli_error("cannot reach the broker at %s: %s", base_url, clean);
    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
        resp->body = s.buf ? s.buf : calloc(1, 1);
        resp->len = s.len;
        s.buf = NULL;
        rc = resp->body ? CLI_OK : CLI_ERR;
    }
out:
    OPENSSL_cleanse(auth, sizeof auth);
    free_headers(headers);
    if (curl)
        curl_easy_cleanup(curl);
    if (s.buf) {
        OPENSSL_cleanse(s.buf, s.len);
        free(s.buf);
    }
    free(url);
    return rc;
}

void cli_http_resp_free(cli_http_resp *resp)
{
    if (resp->body) {
        OPENSSL_cleanse(resp->body, resp->len);
        free(resp->body);
    }
    resp->body = NULL;
    resp->len = 0;
}

int cli_http_fail(const char *what, const cli_http_resp *resp)
{
    char msg[256] = "", code[64] = "";
    cJSON *doc = cJSON_ParseWithLength(resp->body, resp->len);
    const char *e = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "error"));
    const char *c = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "code"));
    if (e)
        cli_sanitize(e, strlen(e), msg, 200);
    if (c)
        cli_sanitize(c, strlen(c), code, 40);
    cJSON_Delete(doc);
    if (!msg[0])
        snprintf(msg, sizeof msg, "unexpected response");
    if (code[0])
        cli_error("%s: %s (HTTP %ld, %s)", what, msg, resp->status, code);
    else
        cli_error("%s: %s (HTTP %ld)", what, msg, resp->status);
    return CLI_ERR;
}

char *cli_http_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
            (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
            ch == '~') {
            *o++ = (char)ch;
        } else {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    *o = '\0';
    return out;
}
