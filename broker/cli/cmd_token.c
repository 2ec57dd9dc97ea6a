/* cmd_token.c - `latchkey token mint|inspect|verify`. Mint signs locally
 * (or asks the broker with --remote), inspect only decodes, verify runs the
 * broker's checks against the key registry. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "cli.h"

static int print_token(const cli *c, const char *token, int64_t exp, const char *kid)
{
    if (!c->json)
        return printf("%s\n", token) < 0 ? CLI_ERR : CLI_OK;
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "token", token);
        cJSON_AddNumberToObject(o, "expires_at", (double)exp);
        cJSON_AddStringToObject(o, "kid", kid);
    }
    return cli_print_json(o);
}

/* When the registry knows the key, refuse what the broker would refuse:
 * a revoked key, or a capability beyond the key's scopes. */
static int check_with_registry(const cli *c, const lk_key *key)
{
    if (!cli_registry_exists(c)) {
        if (!c->db)
            return CLI_OK;
        cli_error("no key registry at %s", c->db);
        return CLI_ERR;
    }
    lk_registry *reg;
    int rc = cli_open_registry(c, 0, &reg);
    if (rc != CLI_OK)
        return rc;
    lk_key_record rec;
    int found = cli_check_registered(reg, key, &rec);
    lk_registry_close(reg);
    if (found == LK_ENOTFOUND)
        return CLI_OK;
    if (found != LK_OK)
        return CLI_ERR;
    lk_cap *cap;
    lk_error err;
    if (lk_cap_parse(c->capability, strlen(c->capability), &cap, &err) != LK_OK)
        return cli_lk_error("invalid capability", &err);
    rc = lk_cap_check_scopes(cap, rec.scope_mask, &err);
    lk_cap_destroy(cap);
    if (rc != LK_OK) {
        cli_error("key %s (scopes %s): %s", rec.kid, rec.scopes, err.message);
        return CLI_ERR;
    }
    return CLI_OK;
}

static int mint_remote(const cli *c, lk_key *key, int64_t ttl)
{
    char url[CLI_URL_MAX];
    if (c->audience) {
        cli_error("--audience cannot be used with --remote: the broker's token "
                  "exchange sets no audience");
        return CLI_ERR;
    }
    if (cli_url(c, url) != CLI_OK)
        return CLI_ERR;
    cJSON *cap = cJSON_Parse(c->capability);
    if (!cJSON_IsObject(cap)) {
        cJSON_Delete(cap);
        cli_error("invalid capability: not a JSON object");
        return CLI_ERR;
    }
    cJSON *req = cJSON_CreateObject();
    char *body = NULL;
    if (req && cJSON_AddItemToObject(req, "capability", cap)) {
        cap = NULL;
        cJSON_AddNumberToObject(req, "ttl", (double)ttl);
        if (c->client_id)
            cJSON_AddStringToObject(req, "client_id", c->client_id);
        body = cJSON_PrintUnformatted(req);
    }
    cJSON_Delete(cap);
    cJSON_Delete(req);
    if (!body) {
        cli_error("out of memory");
        return CLI_ERR;
    }
    char raw[LK_KEY_STR_BYTES];
    lk_key_format(key, raw);
    cli_http_resp resp;
    int rc = cli_http("POST", url, "/v1/tokens", raw, body, &resp);
    OPENSSL_cleanse(raw, sizeof raw);
    cJSON_free(body);
    if (rc != CLI_OK)
        return rc;
    if (resp.status != 200) {
        rc = cli_http_fail("token exchange refused", &resp);
    } else {
        cJSON *doc = cJSON_ParseWithLength(resp.body, resp.len);
        const char *token = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(doc, "access_token"));
        cJSON *exp = cJSON_GetObjectItemCaseSensitive(doc, "expires_at");
        if (token && cJSON_IsNumber(exp)) {
            rc = print_token(c, token, (int64_t)exp->valuedouble, lk_key_kid(key));
        } else {
            cli_error("the broker's token response is malformed");
            rc = CLI_ERR;
        }
        cli_json_wipe(doc);
        cJSON_Delete(doc);
    }
    cli_http_resp_free(&resp);
    return rc;
}

int cli_cmd_token_mint(cli *c)
{
    if (!c->capability)
        return cli_usage_error(c, "--capability is required");
    int64_t ttl = LK_TOKEN_DEFAULT_TTL;
    if (c->ttl && cli_parse_int(c->ttl, LK_TOKEN_MIN_TTL, LK_TOKEN_MAX_MINT_TTL, &ttl)) {
        cli_error("--ttl must be a whole number of seconds from %d to %d",
                  LK_TOKEN_MIN_TTL, LK_TOKEN_MAX_MINT_TTL);
        return CLI_ERR;
    }
    lk_key *key;
    int rc = cli_resolve_key(c, &key);
    if (rc != CLI_OK)
        return rc;
    if (c->remote) {
        rc = mint_remote(c, key, ttl);
        lk_key_destroy(key);
        return rc;
    }
    if ((rc = check_with_registry(c, key)) != CLI_OK) {
        lk_key_destroy(key);
        return rc;
    }
    lk_mint_opts opts = {
        .capability = c->capability,
        .ttl = ttl,
        .client_id = c->client_id,
        .audience = c->audience,
        .now = (int64_t)time(NULL),
    };
    char *token = NULL;
    lk_error err;
    if (lk_token_mint(key, &opts, &token, &err) != LK_OK)
        rc = cli_lk_error("cannot mint the token", &err);
    else
        rc = print_token(c, token, opts.now + ttl, lk_key_kid(key));
    lk_free(token);
    lk_key_destroy(key);
    return rc;
}

/* The token argument, or stdin for "-", without surrounding whitespace.
 * Caller frees with free(). */
static char *read_token(const char *arg, size_t *len)
{
    char *buf;
    size_t n;
    if (strcmp(arg, "-") == 0) {
        if (!(buf = cli_read_stdin(CLI_TOKEN_MAX, &n)))
            return NULL;
    } else {
        n = strlen(arg);
        if (n > CLI_TOKEN_MAX) {
            cli_error("token is over %d bytes", CLI_TOKEN_MAX);
            return NULL;
        }
        if (!(buf = strdup(arg))) {
            cli_error("out of memory");
            return NULL;
        }
    }
    size_t start = 0;
    while (start < n && isspace((unsigned char)buf[start]))
        start++;
    while (n > start && isspace((unsigned char)buf[n - 1]))
        n--;
    memmove(buf, buf + start, n - start);
    buf[n - start] = '\0';
    *len = n - start;
    return buf;
}

static int b64url_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '-') return 62;
    if (ch == '_') return 63;
    return -1;
}

/* Decodes one base64url segment into a JSON object; NULL if it is not. */
static cJSON *decode_segment(const char *in, size_t len)
{
    while (len > 0 && in[len - 1] == '=')
        len--;
    unsigned char *out = malloc(len * 3 / 4 + 1);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts((const char *)out, o, &end, 0);
    if (doc && (!cJSON_IsObject(doc) || end != (const char *)out + o)) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    free(out);
    return doc;
}

static void print_time_claim(const cJSON *claims, const char *name, const char *label,
                             int64_t now)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
    if (!cJSON_IsNumber(v))
        return;
    int64_t t = (int64_t)v->valuedouble;
    char when[32];
    cli_format_time(t, when);
    if (strcmp(name, "exp") == 0 && t > now)
        printf("%-11s %s (in %lld s)\n", label, when, (long long)(t - now));
    else if (strcmp(name, "exp") == 0)
        printf("%-11s %s (expired %lld s ago)\n", label, when, (long long)(now - t));
    else
        printf("%-11s %s\n", label, when);
}

int cli_cmd_token_inspect(cli *c)
{
    size_t len;
    char *tok = read_token(c->args[0], &len);
    if (!tok)
        return CLI_ERR;
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    const char *d3 = d2 ? memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) : NULL;
    cJSON *header = NULL, *claims = NULL;
    int rc = CLI_ERR;
    if (!d2 || d3) {
        cli_error("malformed token: expected three dot-separated parts");
        goto out;
    }
    header = decode_segment(tok, (size_t)(d1 - tok));
    claims = decode_segment(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!header || !claims) {
        cli_error("malformed token: the %s is not base64url-encoded JSON object",
                  header ? "payload" : "header");
        goto out;
    }
    if (c->json) {
        cJSON *doc = cJSON_CreateObject();
        if (doc) {
            cJSON_AddItemToObject(doc, "header", header);
            cJSON_AddItemToObject(doc, "claims", claims);
            cJSON_AddFalseToObject(doc, "verified");
            header = claims = NULL;
        }
        rc = cli_print_json(doc);
    } else {
        char *h = cJSON_Print(header), *p = cJSON_Print(claims);
        if (h && p) {
            int64_t now = (int64_t)time(NULL);
            printf("Header:\n%s\nClaims:\n%s\n", h, p);
            print_time_claim(claims, "iat", "Issued:", now);
            print_time_claim(claims, "nbf", "Not before:", now);
            print_time_claim(claims, "exp", "Expires:", now);
            rc = CLI_OK;
        } else {
            cli_error("out of memory");
        }
        cJSON_free(h);
        cJSON_free(p);
    }
    fprintf(stderr, "Note: the signature was not verified; use `latchkey token "
                    "verify` to check the token.\n");
out:
    cJSON_Delete(header);
    cJSON_Delete(claims);
    OPENSSL_cleanse(tok, len);
    free(tok);
    return rc;
}

typedef struct registry_resolver {
    lk_registry *reg;
    lk_key_record rec;
    lk_pubkey *pub;
} registry_resolver;

static int resolve_from_registry(void *ud, const char *kid, lk_key_info *info)
{
    registry_resolver *r = ud;
    int rc = lk_registry_get(r->reg, kid, &r->rec, NULL);
    if (rc != LK_OK)
        return rc;
    lk_pubkey_destroy(r->pub);
    r->pub = NULL;
    if ((rc = lk_pubkey_create(r->rec.pubkey, &r->pub, NULL)) != LK_OK)
        return rc;
    info->pubkey = r->pub;
    info->revoked = r->rec.status == LK_KEY_REVOKED;
    info->scopes = r->rec.scope_mask;
    info->workspace = r->rec.workspace;
    return LK_OK;
}

static int print_valid(const cli *c, const lk_claims *cl)
{
    char *cap = lk_cap_to_json(lk_claims_cap(cl));
    if (!cap) {
        cli_error("out of memory");
        return CLI_ERR;
    }
    int rc;
    const char *sub = lk_claims_sub(cl);
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddTrueToObject(o, "valid");
            cJSON_AddStringToObject(o, "kid", lk_claims_kid(cl));
            cJSON_AddStringToObject(o, "workspace", lk_claims_workspace(cl));
            if (sub)
                cJSON_AddStringToObject(o, "sub", sub);
            else
                cJSON_AddNullToObject(o, "sub");
            cJSON_AddStringToObject(o, "jti", lk_claims_jti(cl));
            cJSON_AddNumberToObject(o, "iat", (double)lk_claims_iat(cl));
            cJSON_AddNumberToObject(o, "exp", (double)lk_claims_exp(cl));
            if (lk_claims_nbf(cl))
                cJSON_AddNumberToObject(o, "nbf", (double)lk_claims_nbf(cl));
            cJSON_AddItemToObject(o, "cap", cJSON_Parse(cap));
        }
        rc = cli_print_json(o);
    } else {
        char exp[32];
        int64_t left = lk_claims_exp(cl) - (int64_t)time(NULL);
        cli_format_time(lk_claims_exp(cl), exp);
        printf("Token is valid.\n"
               "kid:        %s\n"
               "workspace:  %s\n"
               "client id:  %s\n"
               "expires:    %s (in %lld s)\n"
               "capability: %s\n",
               lk_claims_kid(cl), lk_claims_workspace(cl), sub ? sub : "(none)",
               exp, (long long)left, cap);
        rc = CLI_OK;
    }
    lk_free(cap);
    return rc;
}

int cli_cmd_token_verify(cli *c)
{
    int64_t max_ttl = LK_TOKEN_DEFAULT_MAX_TTL;
    if (c->max_ttl && cli_parse_int(c->max_ttl, 1, INT32_MAX, &max_ttl)) {
        cli_error("--max-ttl must be a positive whole number of seconds");
        return CLI_ERR;
    }
    registry_resolver r = {0};
    int rc = cli_open_registry(c, 0, &r.reg);
    if (rc != CLI_OK)
        return rc;
    size_t len;
    char *tok = read_token(c->args[0], &len);
    if (!tok) {
        lk_registry_close(r.reg);
        return CLI_ERR;
    }
    lk_verify_opts opts = {.max_ttl = max_ttl, .audience = c->audience};
    lk_claims *cl = NULL;
    lk_error err;
    int vrc = lk_token_verify(tok, len, &opts, resolve_from_registry, &r, &cl, &err);
    if (vrc == LK_OK) {
        rc = print_valid(c, cl);
    } else {
        int close_code = lk_token_close_code(vrc);
        cli_error("token refused: %s (%s; the broker closes with %d)", err.message,
                  lk_err_name(vrc), close_code);
        if (c->json) {
            cJSON *o = cJSON_CreateObject();
            if (o) {
                cJSON_AddFalseToObject(o, "valid");
                cJSON_AddStringToObject(o, "error", err.message);
                cJSON_AddStringToObject(o, "code", lk_err_name(vrc));
                cJSON_AddNumberToObject(o, "close_code", close_code);
            }
            cli_print_json(o);
        }
        rc = CLI_ERR;
    }
    lk_claims_destroy(cl);
    lk_pubkey_destroy(r.pub);
    lk_registry_close(r.reg);
    OPENSSL_cleanse(tok, len);
    free(tok);
    return rc;
}
