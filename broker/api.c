/* api.c - POST /v1/tokens, POST /v1/channels/<channel>/messages,
 * GET /v1/key, and the access log of every HTTP response. */
#define _GNU_SOURCE /* memmem */
#include "api.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "apikey.h"
#include "codec.h"
#include "fanout.h"
#include "gate.h"
#include "ratelimit.h"

#define CHANNELS_PREFIX "/v1/channels/"
#define MESSAGES_SUFFIX "/messages"
#define CHANNELS_ROUTE "/v1/channels/{channel}/messages"
#define AUTH_HEADER_BYTES (LK_KEY_STR_MAX + 64)
/* Error messages stay under what lk_http_resp_error can escape. */
#define MSG_BYTES 480
#define SWEEP_SECS 60

struct lk_api {
    lk_apikeys *keys;
    int64_t last_sweep;
};

static const char *const method_names[] = {
    "GET", "POST", "OPTIONS", "PUT", "PATCH", "DELETE", "CONNECT", "HEAD"};

int lk_api_create(lk_broker *b, lk_api **out, char *why, size_t why_len)
{
    *out = NULL;
    lk_api *api = calloc(1, sizeof *api);
    if (!api) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    lk_error err = {0};
    int rc = lk_apikeys_open(b->cfg->db_path, &api->keys, &err);
    if (rc != LK_OK) {
        snprintf(why, why_len, "%s", err.message[0] ? err.message : lk_strerror(rc));
        free(api);
        return -1;
    }
    api->last_sweep = (int64_t)time(NULL);
    *out = api;
    return 0;
}

void lk_api_destroy(lk_api *api)
{
    if (!api)
        return;
    lk_apikeys_destroy(api->keys);
    free(api);
}

void lk_api_keys_changed(lk_broker *b)
{
    if (b->api)
        lk_apikeys_purge(b->api->keys, b->keys, (int64_t)time(NULL));
}

/* ------------------------------------------------------------ helpers */

static void set_header_int(lk_http_resp *resp, const char *name, int64_t v)
{
    char val[32];
    snprintf(val, sizeof val, "%" PRId64, v);
    lk_http_resp_header(resp, name, val);
}

/* Copies a client-supplied name for an error message, keeping it short
 * and printable so the reply stays valid JSON and UTF-8. */
static void printable(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    for (; *in && o + 4 < cap; in++)
        out[o++] = (*in >= 0x20 && *in < 0x7f) ? *in : '?';
    if (*in && o + 4 >= cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static void bad_request(lk_http_resp *resp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void bad_request(lk_http_resp *resp, const char *fmt, ...)
{
    char msg[MSG_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lk_http_resp_error(resp, 400, "bad_request", msg);
}

static void internal_error(lk_broker *b, lk_http_resp *resp, const char *what)
{
    lk_log_msg(b->log, LK_LOG_ERROR, "http api failure", what);
    lk_http_resp_error(resp, 500, "internal", "internal error");
}

/* Parses a request body that must be one JSON object whose members are
 * all in `allowed` (NULL-terminated) and none repeated. NULL after a 400. */
static cJSON *parse_object(const lk_http_req *req, lk_http_resp *resp,
                           const char *const *allowed)
{
    if (!req->body || req->body_len == 0) {
        bad_request(resp, "the request body must be a JSON object");
        return NULL;
    }
    /* cJSON would silently cut a string at an escaped NUL. */
    if (memmem(req->body, req->body_len, "\\u0000", 6)) {
        bad_request(resp, "NUL characters are not allowed in the request body");
        return NULL;
    }
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(req->body, req->body_len, &end, 0);
    if (doc && end) {
        for (const char *p = end; p < req->body + req->body_len; p++)
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
                cJSON_Delete(doc);
                doc = NULL;
                break;
            }
    }
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        bad_request(resp, "the request body must be a JSON object");
        return NULL;
    }
    for (const cJSON *f = doc->child; f; f = f->next) {
        char name[48];
        printable(name, sizeof name, f->string ? f->string : "");
        int known = 0;
        for (const char *const *a = allowed; *a; a++)
            known |= strcmp(f->string, *a) == 0;
        if (!known) {
            bad_request(resp, "unknown field \"%s\"", name);
            cJSON_Delete(doc);
            return NULL;
        }
        for (const cJSON *g = f->next; g; g = g->next)
            if (strcmp(f->string, g->string) == 0) {
                bad_request(resp, "field \"%s\" given twice", name);
                cJSON_Delete(doc);
                return NULL;
            }
    }
    return doc;
}

/* ------------------------------------------------------------ auth + limits */

/* The verified key behind `Authorization: Bearer <api_key>`, or NULL after
 * a 401 (or a 500 when the registry cannot be read). */
static const lk_apikey *authenticate(const lk_http_req *req, lk_http_resp *resp)
{
    lk_broker *b = req->b;
    lk_broker_poll_keys(b);
    lk_api *api = b->api;
    char hdr[AUTH_HEADER_BYTES];
    int n = lws_hdr_copy(req->wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION);
    const char *key = NULL;
    size_t key_len = 0;
    if (n > 7 && strncasecmp(hdr, "Bearer ", 7) == 0) {
        const char *p = hdr + 7, *e = hdr + n;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        key = p;
        key_len = (size_t)(e - p);
    }

    const lk_apikey *k = NULL;
    int cached = 0, rc = LK_EKEY_FORMAT;
    lk_error err = {0};
    if (!api) {
        rc = LK_ENOMEM;
    } else if (key_len) {
        int64_t now = (int64_t)time(NULL);
        if (now - api->last_sweep >= SWEEP_SECS) {
            lk_apikeys_purge(api->keys, b->keys, now);
            api->last_sweep = now;
        }
        rc = lk_apikeys_verify(api->keys, b->keys, key, key_len, now, &k, &cached, &err);
    }
    OPENSSL_cleanse(hdr, sizeof hdr);

    if (rc == LK_OK) {
        LK_COUNT(b->metrics.api_auth[cached ? LK_APIAUTH_CACHED : LK_APIAUTH_VERIFIED]);
        snprintf(resp->kid, sizeof resp->kid, "%s", k->kid);
        snprintf(resp->workspace, sizeof resp->workspace, "%s", k->workspace);
        return k;
    }
    if (rc == LK_ENOMEM || rc == LK_ECRYPTO || rc == LK_EDB || rc == LK_EIO) {
        internal_error(b, resp, err.message[0] ? err.message : lk_strerror(rc));
        return NULL;
    }
    LK_COUNT(b->metrics.api_auth[LK_APIAUTH_REFUSED]);
    lk_logline l;
    if (lk_log_begin(&l, b->log, LK_LOG_INFO, "api key refused")) {
        lk_log_str(&l, "reason", n == 0 ? "no Authorization header"
                                 : !key_len ? "not a Bearer API key"
                                            : err.message[0] ? err.message : lk_strerror(rc));
        lk_log_end(&l);
    }
    lk_http_resp_header(resp, "WWW-Authenticate:", "Bearer realm=\"latchkey\"");
    lk_http_resp_error(resp, 401, "not_authenticated",
                       n == 0 ? "Missing credentials: send Authorization: Bearer <api_key>"
                              : "Invalid credentials");
    return NULL;
}

/* Counts the request against its workspace and adds the X-RateLimit-*
 * headers. -1 after a 429 (or 500). */
static int rate_limit(const lk_http_req *req, const lk_apikey *k, lk_http_resp *resp)
{
    lk_broker *b = req->b;
    const lk_rate *lim = k->env == LK_ENV_SBX ? &b->cfg->api_rate_sandbox
                                              : &b->cfg->api_rate_live;
    lk_rate_result r;
    if (lk_ratelimit_hit(b->api_limits, k->workspace, lim->per_minute, lim->per_second,
                         lk_now_ms(), &r)) {
        internal_error(b, resp, "rate limiter out of memory");
        return -1;
    }
    set_header_int(resp, "X-RateLimit-Limit:", r.limit);
    set_header_int(resp, "X-RateLimit-Remaining:", r.remaining);
    set_header_int(resp, "X-RateLimit-Reset:", r.reset);
    if (r.verdict == LK_RATE_OK)
        return 0;
    LK_COUNT(b->metrics.api_rate_limited[r.verdict == LK_RATE_MINUTE ? 0 : 1]);
    set_header_int(resp, "Retry-After:", r.retry_after);
    char msg[MSG_BYTES];
    if (r.verdict == LK_RATE_MINUTE)
        snprintf(msg, sizeof msg, "rate limit exceeded: %" PRId64
                 " requests per minute for this workspace", lim->per_minute);
    else
        snprintf(msg, sizeof msg, "rate limit exceeded: %" PRId64
                 " requests per second for this workspace", lim->per_second);
    lk_http_resp_error(resp, 429, "rate_limited", msg);
    return -1;
}

static const lk_apikey *admit(const lk_http_req *req, lk_http_resp *resp)
{
    const lk_apikey *k = authenticate(req, resp);
    if (!k || rate_limit(req, k, resp))
        return NULL;
    return k;
}

/* ------------------------------------------------------------ POST /v1/tokens */

static int token_ttl(const lk_broker *b, const cJSON *doc, int64_t *ttl,
                     lk_http_resp *resp)
{
    int64_t max = b->cfg->max_token_ttl;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "ttl");
    *ttl = max < LK_TOKEN_DEFAULT_TTL ? max : LK_TOKEN_DEFAULT_TTL;
    if (!t)
        return 0;
    double v = t->valuedouble;
    if (!cJSON_IsNumber(t) || !(v >= 1 && v <= (double)max) || v != (double)(int64_t)v) {
        bad_request(resp, "ttl must be an integer from 1 to %" PRId64 " (seconds)", max);
        return -1;
    }
    *ttl = (int64_t)v;
    return 0;
}

void lk_api_tokens(const lk_http_req *req, lk_http_resp *resp)
{
    static const char *const fields[] = {"capability", "ttl", "client_id", "audience",
                                         NULL};
    lk_broker *b = req->b;
    const lk_apikey *k = admit(req, resp);
    if (!k)
        return;
    cJSON *doc = parse_object(req, resp, fields);
    if (!doc)
        return;

    char *cap_text = NULL, *tok = NULL;
    lk_cap *cap = NULL;
    lk_error err = {0};
    int64_t ttl;
    const cJSON *jcap = cJSON_GetObjectItemCaseSensitive(doc, "capability");
    const cJSON *jsub = cJSON_GetObjectItemCaseSensitive(doc, "client_id");
    const cJSON *jaud = cJSON_GetObjectItemCaseSensitive(doc, "audience");
    const char *client_id = NULL;

    if (!jcap) {
        bad_request(resp, "capability is required");
        goto out;
    }
    if (!cJSON_IsObject(jcap)) {
        bad_request(resp, "capability must be a JSON object of channel patterns to action arrays");
        goto out;
    }
    if (token_ttl(b, doc, &ttl, resp))
        goto out;
    if (jsub && !cJSON_IsNull(jsub)) {
        if (!cJSON_IsString(jsub) || !jsub->valuestring[0] ||
            strlen(jsub->valuestring) > LK_SUB_MAX) {
            bad_request(resp, "client_id must be a string of 1-%d bytes", LK_SUB_MAX);
            goto out;
        }
        client_id = jsub->valuestring;
    }
    if (jaud && !(cJSON_IsString(jaud) && b->cfg->audience &&
                  strcmp(jaud->valuestring, b->cfg->audience) == 0)) {
        bad_request(resp, "audience: tokens from this broker carry its own audience%s; "
                    "omit the field", b->cfg->audience ? "" : " (none is configured)");
        goto out;
    }

    cap_text = cJSON_PrintUnformatted(jcap);
    if (!cap_text) {
        internal_error(b, resp, "out of memory");
        goto out;
    }
    int rc = lk_cap_parse(cap_text, strlen(cap_text), &cap, &err);
    if (rc == LK_ENOMEM) {
        internal_error(b, resp, "out of memory");
        goto out;
    }
    if (rc != LK_OK) {
        bad_request(resp, "capability: %s", err.message);
        goto out;
    }
    rc = lk_cap_check_scopes(cap, k->scope_mask, &err);
    if (rc != LK_OK) {
        char msg[MSG_BYTES];
        snprintf(msg, sizeof msg, "%.200s (key scopes: %.200s)", err.message, k->scopes);
        lk_http_resp_error(resp, 403, "forbidden", msg);
        goto out;
    }

    int64_t now = (int64_t)time(NULL);
    lk_mint_opts opts = {
        .capability = cap_text,
        .ttl = ttl,
        .client_id = client_id,
        .audience = b->cfg->audience,
        .now = now,
    };
    rc = lk_token_mint(k->key, &opts, &tok, &err);
    if (rc == LK_ECAP) {
        bad_request(resp, "capability: %s", err.message);
        goto out;
    }
    if (rc == LK_ETTL) {
        bad_request(resp, "ttl: %s", err.message);
        goto out;
    }
    if (rc == LK_EINVAL && client_id) {
        bad_request(resp, "client_id: %s", err.message);
        goto out;
    }
    if (rc != LK_OK) {
        internal_error(b, resp, err.message[0] ? err.message : lk_strerror(rc));
        goto out;
    }

    size_t cap_len = strlen(tok) + 96;
    char *body = malloc(cap_len);
    if (!body) {
        internal_error(b, resp, "out of memory");
        goto out;
    }
    int n = snprintf(body, cap_len,
                     "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_at\":%" PRId64 "}",
                     tok, now + ttl);
    lk_http_resp_body(resp, 200, "application/json", body, (size_t)n);
    OPENSSL_cleanse(body, (size_t)n);
    free(body);
    lk_http_resp_header(resp, "Cache-Control:", "no-store");
    LK_COUNT(b->metrics.api_tokens_issued);
out:
    if (tok) {
        OPENSSL_cleanse(tok, strlen(tok));
        lk_free(tok);
    }
    lk_cap_destroy(cap);
    cJSON_free(cap_text);
    cJSON_Delete(doc);
}

/* ------------------------------------------------------------ publish */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* Past the string whose opening quote is at p. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        size_t depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = skip_string(p, end);
                if (!p)
                    return NULL;
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return NULL;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' &&
           *p != '\t' && *p != '\r' && *p != '\n')
        p++;
    return p;
}

/* The raw text of top-level member `name` of a JSON object that cJSON has
 * already accepted, so numbers are never converted. 0 if absent. */
static int raw_member(const char *s, size_t len, const char *name, lk_span *out)
{
    const char *p = s, *end = s + len;
    size_t nlen = strlen(name);
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return 0;
    p++;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return 0;
        const char *k = p + 1;
        p = skip_string(p, end);
        if (!p)
            return 0;
        int match = (size_t)(p - 1 - k) == nlen && memcmp(k, name, nlen) == 0;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return 0;
        p = skip_ws(p + 1, end);
        const char *v = p;
        p = skip_value(p, end);
        if (!p)
            return 0;
        if (match) {
            out->p = v;
            out->len = (size_t)(p - v);
            return 1;
        }
        p = skip_ws(p, end);
        if (p >= end || *p != ',')
            return 0;
        p++;
    }
}

/* Checks `data` with the WebSocket codec's own rules (UTF-8, escapes,
 * nesting), by wrapping it in a publish frame. 0 and *checked pointing
 * into *frame (caller frees) on success; -1 after a 400 or 500. */
static int check_data(lk_broker *b, lk_span data, char **frame, lk_span *checked,
                      lk_http_resp *resp)
{
    static const char head[] = "{\"op\":\"publish\",\"channel\":\"x\",\"data\":";
    size_t n = sizeof head - 1 + data.len + 1;
    char *f = malloc(n);
    if (!f) {
        internal_error(b, resp, "out of memory");
        return -1;
    }
    memcpy(f, head, sizeof head - 1);
    memcpy(f + sizeof head - 1, data.p, data.len);
    f[n - 1] = '}';
    lk_request r;
    char why[160] = "";
    lk_parse_rc rc = lk_codec_parse(f, n, &r, why, sizeof why);
    if (rc != LK_PARSE_OK || r.op != LK_OP_PUBLISH) {
        free(f);
        if (rc == LK_PARSE_BAD_REQUEST && why[0])
            bad_request(resp, "data: %s", why);
        else
            bad_request(resp, "data is not valid JSON (UTF-8 text required)");
        return -1;
    }
    *frame = f;
    *checked = r.data;
    return 0;
}

void lk_api_publish(const lk_http_req *req, lk_http_resp *resp)
{
    static const char *const fields[] = {"data", NULL};
    lk_broker *b = req->b;
    const size_t plen = sizeof CHANNELS_PREFIX - 1, slen = sizeof MESSAGES_SUFFIX - 1;
    if (req->path_len <= plen + slen ||
        memcmp(req->path, CHANNELS_PREFIX, plen) != 0 ||
        memcmp(req->path + req->path_len - slen, MESSAGES_SUFFIX, slen) != 0) {
        lk_http_resp_error(resp, 404, "not_found", "not found");
        return;
    }
    if (req->method != LWSHUMETH_POST) {
        lk_http_resp_error(resp, 405, "method_not_allowed", "method not allowed");
        lk_http_resp_header(resp, "Allow:", "POST");
        return;
    }
    const char *chan = req->path + plen;
    size_t clen = req->path_len - plen - slen;

    const lk_apikey *k = admit(req, resp);
    if (!k)
        return;
    if (!lk_channel_valid(chan, clen)) {
        bad_request(resp, "invalid channel name in the path: expected 1-%d of "
                    "[A-Za-z0-9_@.:=-], percent-encoded", LK_CHANNEL_MAX);
        return;
    }
    if (!(k->scope_mask & LK_ACT_PUBLISH)) {
        char msg[MSG_BYTES];
        snprintf(msg, sizeof msg, "the key's scopes (%.200s) do not include realtime:publish",
                 k->scopes);
        lk_http_resp_error(resp, 403, "forbidden", msg);
        return;
    }
    cJSON *doc = parse_object(req, resp, fields);
    if (!doc)
        return;
    cJSON_Delete(doc);

    lk_span raw;
    if (!raw_member(req->body, req->body_len, "data", &raw)) {
        bad_request(resp, "data is required");
        return;
    }
    char *frame = NULL;
    lk_span data;
    if (check_data(b, raw, &frame, &data, resp))
        return;
    if ((int64_t)data.len > b->cfg->max_frame) {
        char msg[MSG_BYTES];
        snprintf(msg, sizeof msg, "data is larger than max-frame (%" PRId64 " bytes)",
                 b->cfg->max_frame);
        lk_http_resp_error(resp, 413, "too_large", msg);
        free(frame);
        return;
    }
    lk_fanout_local loc;
    int rc = lk_fanout_publish(b, k->workspace, strlen(k->workspace), chan, clen, data.p,
                               data.len, NULL, &loc);
    free(frame);
    uint64_t seq = loc.seq;
    if (rc == LK_OK)
        lk_fanout_finish(b, &loc);
    if (rc == LK_EINVAL) {
        lk_http_resp_error(resp, 413, "too_large", "data too large");
        return;
    }
    if (rc != LK_OK) {
        internal_error(b, resp, "publish failed");
        return;
    }
    char body[64];
    int n = snprintf(body, sizeof body, "{\"seq\":%" PRIu64 "}", seq);
    lk_http_resp_body(resp, 202, "application/json", body, (size_t)n);
}

/* ------------------------------------------------------------ GET /v1/key */

void lk_api_key(const lk_http_req *req, lk_http_resp *resp)
{
    lk_broker *b = req->b;
    const lk_apikey *k = admit(req, resp);
    if (!k)
        return;
    char out[4096], esc[6 * LK_KEY_NAME_MAX + 8];
    size_t o = 0;
    size_t e = lk_codec_json_string(esc, sizeof esc, k->name, strlen(k->name));
    o += (size_t)snprintf(out + o, sizeof out - o,
                          "{\"kid\":\"%s\",\"workspace\":\"%s\",\"env\":\"%s\",\"name\":%.*s,"
                          "\"scopes\":[",
                          k->kid, k->workspace, lk_env_name(k->env), (int)e,
                          e ? esc : "\"\"");
    const char *p = k->scopes;
    for (int i = 0; *p && o < sizeof out - 64; i++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        e = lk_codec_json_string(esc, sizeof esc, p, len);
        o += (size_t)snprintf(out + o, sizeof out - o, "%s%.*s", i ? "," : "", (int)e, esc);
        p += len + (comma ? 1 : 0);
    }
    o += (size_t)snprintf(out + o, sizeof out - o, "]}");
    if (o >= sizeof out) {
        internal_error(b, resp, "key details too long");
        return;
    }
    lk_http_resp_body(resp, 200, "application/json", out, o);
}

/* ------------------------------------------------------------ access log */

void lk_api_observe(lk_broker *b, struct lws *wsi, int method, const char *route,
                    const lk_http_resp *resp, int64_t duration_us)
{
    if (route && strcmp(route, CHANNELS_PREFIX) == 0)
        route = CHANNELS_ROUTE;
    lk_metrics_count_request(&b->metrics, route ? route : "unknown", resp->status);
    int quiet = route && (strcmp(route, "/healthz") == 0 || strcmp(route, "/metrics") == 0);
    lk_logline l;
    if (!lk_log_begin(&l, b->log, quiet ? LK_LOG_DEBUG : LK_LOG_INFO, "http request"))
        return;
    lk_log_str(&l, "method", method >= 0 && method < (int)(sizeof method_names /
                                                           sizeof method_names[0])
                                 ? method_names[method] : "-");
    lk_log_str(&l, "route", route);
    lk_log_int(&l, "status", resp->status);
    lk_log_int(&l, "duration_us", duration_us);
    lk_log_int(&l, "bytes", (int64_t)resp->len);
    if (resp->kid[0]) {
        lk_log_str(&l, "kid", resp->kid);
        lk_log_str(&l, "workspace", resp->workspace);
    }
    char ip[64];
    const char *peer = wsi ? lk_gate_peer(wsi, ip, sizeof ip) : NULL;
    if (peer)
        lk_log_str(&l, "ip", peer);
    lk_log_end(&l);
}
