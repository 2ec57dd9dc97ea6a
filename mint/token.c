/* token.c - minting and verifying client tokens (compact ES256 JWS).
 *
 * Both paths do the JWS work here and leave the ECDSA to key.c's cached
 * contexts. libjwt is deliberately not used: 1.10.2 re-parses the PEM on
 * every call and takes the algorithm from the token header, so an HS256
 * token keyed with the public PEM would pass it (LIBNOTES section 2).
 *
 * Verification parses nothing from the payload before the signature has
 * been checked with the key named by a header that is already known to say
 * exactly ES256. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "latchkey/token.h"
#include "lk_internal.h"

#define JTI_RAW_BYTES 16   /* 22 base64url chars */
#define JTI_MAX 256
#define AUD_MAX 256        /* bytes in an audience we mint */
#define SIG_B64_LEN 86     /* 64 bytes, unpadded */
#define HEADER_MEMBERS_MAX 16
#define CLAIM_MEMBERS_MAX 64
/* Largest integer a double holds exactly; bounding times to [0, 2^53)
 * also keeps every sum and difference below far from int64 overflow. */
#define TIME_MAX 9007199254740991.0

struct lk_claims {
    char kid[LK_KID_BYTES];
    char *sub;
    char *jti;
    char *workspace;
    int64_t iat;
    int64_t exp;
    int64_t nbf;
    lk_cap *cap;
};

/* ---- minting ---------------------------------------------------------- */

/* Writes `s` as a JSON string literal (quotes included) at `out`, which
 * must hold 6 * n + 3 bytes. Returns the bytes written. */
static size_t json_quote(const char *s, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    return o;
}

static int check_text_option(const char *s, size_t max, const char *what,
                             size_t *len, lk_error *err)
{
    *len = strlen(s);
    if (*len == 0 || *len > max)
        return lk__fail(err, LK_EINVAL, "%s must be 1-%zu bytes", what, max);
    if (!lk__utf8_valid(s, *len, 0))
        return lk__fail(err, LK_EINVAL, "%s is not valid UTF-8", what);
    return LK_OK;
}

int lk_token_mint(lk_key *key, const lk_mint_opts *opts, char **out,
                  lk_error *err)
{
    char header[64 + LK_KID_BYTES];
    char jti[LK__B64URL_LEN(JTI_RAW_BYTES) + 1];
    uint8_t jti_raw[JTI_RAW_BYTES];
    uint8_t sig[LK__SIG_BYTES];
    size_t sub_len = 0, aud_len = 0, header_len, payload_len, total, pos;
    char *cap_json = NULL, *payload = NULL, *tok = NULL;
    lk_cap *cap = NULL;
    int64_t ttl, now;
    int rc;

    if (!out)
        return lk__fail(err, LK_EINVAL, "out is NULL");
    *out = NULL;
    if (!key || !opts)
        return lk__fail(err, LK_EINVAL, "key and options are required");

    ttl = opts->ttl ? opts->ttl : LK_TOKEN_DEFAULT_TTL;
    if (ttl < LK_TOKEN_MIN_TTL || ttl > LK_TOKEN_MAX_MINT_TTL)
        return lk__fail(err, LK_ETTL, "ttl must be %d-%d seconds", LK_TOKEN_MIN_TTL,
                        LK_TOKEN_MAX_MINT_TTL);
    now = opts->now ? opts->now : (int64_t)time(NULL);
    /* Compared without adding first: now + ttl may not fit in an int64. */
    if (now < 0 || now > (int64_t)TIME_MAX - ttl)
        return lk__fail(err, LK_EINVAL, "issue time out of range");
    if (opts->nbf < 0 || (double)opts->nbf > TIME_MAX)
        return lk__fail(err, LK_EINVAL, "nbf out of range");
    if (opts->client_id &&
        (rc = check_text_option(opts->client_id, LK_SUB_MAX, "client id", &sub_len, err)))
        return rc;
    if (opts->audience &&
        (rc = check_text_option(opts->audience, AUD_MAX, "audience", &aud_len, err)))
        return rc;
    if (!opts->capability)
        return lk__fail(err, LK_ECAP, "a capability is required");
    if ((rc = lk_cap_parse(opts->capability, strlen(opts->capability), &cap, err)))
        return rc;
    cap_json = lk_cap_to_json(cap);
    lk_cap_destroy(cap);
    if (!cap_json)
        return lk__fail(err, LK_ENOMEM, "out of memory");

    if ((rc = lk__key_random(key, jti_raw, sizeof jti_raw))) {
        rc = lk__fail(err, rc, "random number generator failed");
        goto done;
    }
    lk__b64url_encode(jti_raw, sizeof jti_raw, jti);

    /* Fixed member order and no whitespace: the claims are built by hand so
     * that 64-bit times are printed as integers, never via a double. */
    size_t cap_len = strlen(cap_json);
    size_t cap_room = 200 + cap_len + 6 * (sub_len + aud_len);
    payload = malloc(cap_room);
    if (!payload) {
        rc = lk__fail(err, LK_ENOMEM, "out of memory");
        goto done;
    }
    pos = (size_t)snprintf(payload, cap_room, "{\"iat\":%lld,\"exp\":%lld",
                           (long long)now, (long long)(now + ttl));
    if (opts->nbf)
        pos += (size_t)snprintf(payload + pos, cap_room - pos, ",\"nbf\":%lld",
                                (long long)opts->nbf);
    pos += (size_t)snprintf(payload + pos, cap_room - pos, ",\"jti\":\"%s\"", jti);
    if (opts->client_id) {
        memcpy(payload + pos, ",\"sub\":", 7);
        pos += 7;
        pos += json_quote(opts->client_id, sub_len, payload + pos);
    }
    if (opts->audience) {
        memcpy(payload + pos, ",\"aud\":", 7);
        pos += 7;
        pos += json_quote(opts->audience, aud_len, payload + pos);
    }
    memcpy(payload + pos, ",\"cap\":", 7);
    pos += 7;
    memcpy(payload + pos, cap_json, cap_len);
    pos += cap_len;
    payload[pos++] = '}';
    payload_len = pos;

    header_len = (size_t)snprintf(header, sizeof header,
                                  "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
                                  lk_key_kid(key));
    total = LK__B64URL_LEN(header_len) + 1 + LK__B64URL_LEN(payload_len) + 1 +
            SIG_B64_LEN;
    tok = malloc(total + 1);
    if (!tok) {
        rc = lk__fail(err, LK_ENOMEM, "out of memory");
        goto done;
    }
    pos = lk__b64url_encode((const uint8_t *)header, header_len, tok);
    tok[pos++] = '.';
    pos += lk__b64url_encode((const uint8_t *)payload, payload_len, tok + pos);
    if (pos + 1 + SIG_B64_LEN > LK_TOKEN_MAX_BYTES) {
        rc = lk__fail(err, LK_ETOKEN_TOO_LARGE,
                      "token would be %zu bytes; verifiers refuse more than %d",
                      pos + 1 + SIG_B64_LEN, LK_TOKEN_MAX_BYTES);
        goto done;
    }
    if ((rc = lk__key_sign(key, tok, pos, sig))) {
        rc = lk__fail(err, rc, "signing failed");
        goto done;
    }
    tok[pos++] = '.';
    pos += lk__b64url_encode(sig, sizeof sig, tok + pos);
    *out = tok;
    tok = NULL;
    rc = LK_OK;
done:
    free(tok);
    free(payload);
    free(cap_json);
    return rc;
}

/* ---- verification ----------------------------------------------------- */

/* RFC 7515 leaves duplicate member names to the parser; cJSON keeps the
 * first and most JWT libraries the last, so a token that means different
 * things to different verifiers is refused outright. */
static int members_ok(const cJSON *obj, int max_members)
{
    int n = 0;
    for (const cJSON *a = obj->child; a; a = a->next) {
        if (++n > max_members)
            return 0;
        for (const cJSON *b = obj->child; b != a; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                return 0;
    }
    return 1;
}

static int is_kid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        if (n >= LK_KID_HEX)
            return 0;
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return 0;
    }
    return n == LK_KID_HEX;
}

/* 1 and *out for an integral NumericDate in [0, 2^53); 0 when absent;
 * -1 for anything else. */
static int get_time(const cJSON *claims, const char *name, int64_t *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(claims, name);
    double v;
    if (!item)
        return 0;
    if (!cJSON_IsNumber(item))
        return -1;
    v = item->valuedouble;
    /* The range check comes first so the cast below is defined; NaN fails
     * both comparisons. */
    if (!(v >= 0 && v <= TIME_MAX) || (double)(int64_t)v != v)
        return -1;
    *out = (int64_t)v;
    return 1;
}

/* cJSON ends a string at an embedded NUL, raw or escaped as \u0000, so
 * "ES256\u0000x" would read as ES256 here and as something else to every
 * other verifier (the same goes for kid, sub and cap patterns). Either form
 * makes the part malformed. Escapes are skipped in pairs so that a literal
 * backslash followed by "u0000" is not mistaken for one. */
static int parse_json(const uint8_t *buf, size_t len, cJSON **out)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)buf, len, &end, 0);
    if (!j)
        return 0;
    if (end != (const char *)buf + len || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return 0;
    }
    *out = j;
    return 1;
}

static int check_header(const cJSON *h, lk_error *err)
{
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    const cJSON *typ = cJSON_GetObjectItemCaseSensitive(h, "typ");
    const cJSON *kid = cJSON_GetObjectItemCaseSensitive(h, "kid");

    if (!members_ok(h, HEADER_MEMBERS_MAX))
        return lk__fail(err, LK_ETOKEN_MALFORMED,
                        "token header has duplicate or too many members");
    if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "ES256") != 0)
        return lk__fail(err, LK_ETOKEN_ALG, "token alg must be ES256");
    if (typ && (!cJSON_IsString(typ) || strcmp(typ->valuestring, "JWT") != 0))
        return lk__fail(err, LK_ETOKEN_MALFORMED, "token typ must be JWT");
    if (!cJSON_IsString(kid) || !is_kid(kid->valuestring))
        return lk__fail(err, LK_ETOKEN_KID,
                        "token kid must be 16 lowercase hex characters");
    /* No extension is understood, so any critical one must be refused. */
    if (cJSON_GetObjectItemCaseSensitive(h, "crit"))
        return lk__fail(err, LK_ETOKEN_MALFORMED,
                        "token header has unsupported critical extensions");
    return LK_OK;
}

static int check_audience(const cJSON *aud, const char *want, lk_error *err)
{
    const cJSON *a;
    if (aud && !cJSON_IsString(aud)) {
        if (!cJSON_IsArray(aud))
            return lk__fail(err, LK_ETOKEN_CLAIMS, "aud must be a string or an array");
        cJSON_ArrayForEach(a, aud)
            if (!cJSON_IsString(a))
                return lk__fail(err, LK_ETOKEN_CLAIMS, "aud array must hold strings");
    }
    if (!want)
        return LK_OK;
    if (!aud)
        return lk__fail(err, LK_ETOKEN_AUDIENCE, "token has no aud");
    if (cJSON_IsString(aud))
        return strcmp(aud->valuestring, want) == 0
                   ? LK_OK
                   : lk__fail(err, LK_ETOKEN_AUDIENCE, "token aud does not match");
    cJSON_ArrayForEach(a, aud)
        if (strcmp(a->valuestring, want) == 0)
            return LK_OK;
    return lk__fail(err, LK_ETOKEN_AUDIENCE, "token aud does not match");
}

/* Everything after the signature: times, claim types, capability. Fills
 * `c` (owned by the caller) and never looks at the key's status. */
static int check_claims(const cJSON *claims, const lk_verify_opts *opts,
                        int64_t now, lk_claims *c, lk_error *err)
{
    int64_t max_ttl = opts && opts->max_ttl ? opts->max_ttl : LK_TOKEN_DEFAULT_MAX_TTL;
    const cJSON *jti, *sub, *cap;
    int has_iat, has_exp, has_nbf, rc;
    size_t n;

    if (!members_ok(claims, CLAIM_MEMBERS_MAX))
        return lk__fail(err, LK_ETOKEN_CLAIMS,
                        "token claims have duplicate or too many members");
    has_iat = get_time(claims, "iat", &c->iat);
    has_exp = get_time(claims, "exp", &c->exp);
    has_nbf = get_time(claims, "nbf", &c->nbf);
    if (has_iat != 1)
        return lk__fail(err, LK_ETOKEN_CLAIMS, "iat must be an integer time");
    if (has_exp != 1)
        return lk__fail(err, LK_ETOKEN_CLAIMS, "exp must be an integer time");
    if (has_nbf < 0)
        return lk__fail(err, LK_ETOKEN_CLAIMS, "nbf must be an integer time");
    if (c->exp <= c->iat)
        return lk__fail(err, LK_ETOKEN_CLAIMS, "exp must be after iat");
    if (now >= c->exp)
        return lk__fail(err, LK_ETOKEN_EXPIRED, "token expired");
    if (c->iat > now + LK_TOKEN_SKEW)
        return lk__fail(err, LK_ETOKEN_NOT_YET_VALID, "token iat is in the future");
    if (has_nbf && c->nbf > now + LK_TOKEN_SKEW)
        return lk__fail(err, LK_ETOKEN_NOT_YET_VALID, "token not valid before nbf");
    if (c->exp - c->iat > max_ttl)
        return lk__fail(err, LK_ETOKEN_TTL,
                        "token lifetime %lld s exceeds the maximum of %lld s",
                        (long long)(c->exp - c->iat), (long long)max_ttl);

    jti = cJSON_GetObjectItemCaseSensitive(claims, "jti");
    if (!cJSON_IsString(jti) || (n = strlen(jti->valuestring)) < LK_JTI_MIN ||
        n > JTI_MAX)
        return lk__fail(err, LK_ETOKEN_CLAIMS, "jti must be a string of %d-%d characters",
                        LK_JTI_MIN, JTI_MAX);
    sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
    if (sub && (!cJSON_IsString(sub) || (n = strlen(sub->valuestring)) == 0 ||
                n > LK_SUB_MAX))
        return lk__fail(err, LK_ETOKEN_CLAIMS, "sub must be a string of 1-%d bytes",
                        LK_SUB_MAX);
    if ((rc = check_audience(cJSON_GetObjectItemCaseSensitive(claims, "aud"),
                             opts ? opts->audience : NULL, err)))
        return rc;

    cap = cJSON_GetObjectItemCaseSensitive(claims, "cap");
    if (!cap)
        return lk__fail(err, LK_ETOKEN_CLAIMS, "token has no cap");
    if ((rc = lk__cap_from_cjson(cap, &c->cap, err))) {
        /* Keep cap.c's message (it names the bad pattern or action), but
         * any failure of a present cap is an invalid capability. */
        if (rc == LK_ENOMEM)
            return rc;
        if (err)
            err->code = LK_ECAP;
        return LK_ECAP;
    }

    c->jti = strdup(jti->valuestring);
    c->sub = sub ? strdup(sub->valuestring) : NULL;
    if (!c->jti || (sub && !c->sub))
        return lk__fail(err, LK_ENOMEM, "out of memory");
    return LK_OK;
}

int lk_token_verify(const char *token, size_t len, const lk_verify_opts *opts,
                    lk_key_resolver resolve, void *ud, lk_claims **out,
                    lk_error *err)
{
    size_t max_bytes = opts && opts->max_bytes ? opts->max_bytes : LK_TOKEN_MAX_BYTES;
    const char *dot1, *dot2;
    size_t hlen, plen, slen;
    uint8_t *buf = NULL, *hbuf, *pbuf, *sbuf;
    long hdec, pdec, sdec;
    cJSON *header = NULL, *claims = NULL;
    lk_key_info info = {0};
    lk_claims *c = NULL;
    int64_t now;
    int rc;

    if (!out)
        return lk__fail(err, LK_EINVAL, "out is NULL");
    *out = NULL;
    if (!token || !resolve)
        return lk__fail(err, LK_EINVAL, "token and resolver are required");
    if (opts && opts->max_ttl < 0)
        return lk__fail(err, LK_EINVAL, "max_ttl is negative");

    /* Form: bounded size, three non-empty strict base64url segments. */
    if (len > max_bytes)
        return lk__fail(err, LK_ETOKEN_TOO_LARGE, "token is over %zu bytes", max_bytes);
    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return lk__fail(err, LK_ETOKEN_MALFORMED, "token must have exactly three parts");
    hlen = (size_t)(dot1 - token);
    plen = (size_t)(dot2 - dot1 - 1);
    slen = len - (size_t)(dot2 + 1 - token);
    /* An empty signature is left to the header and signature checks, so an
     * unsigned "alg":"none" token is reported as the algorithm it is. */
    if (!hlen || !plen)
        return lk__fail(err, LK_ETOKEN_MALFORMED, "token has an empty header or payload");

    /* One buffer for the three decoded parts, each followed by a NUL. */
    buf = malloc(hlen * 3 / 4 + plen * 3 / 4 + slen * 3 / 4 + 3);
    if (!buf)
        return lk__fail(err, LK_ENOMEM, "out of memory");
    hbuf = buf;
    hdec = lk__b64url_decode(token, hlen, hbuf);
    pbuf = hbuf + (hdec > 0 ? hdec : 0) + 1;
    pdec = hdec < 0 ? -1 : lk__b64url_decode(dot1 + 1, plen, pbuf);
    sbuf = pbuf + (pdec > 0 ? pdec : 0) + 1;
    sdec = pdec < 0 ? -1 : lk__b64url_decode(dot2 + 1, slen, sbuf);
    if (hdec <= 0 || pdec <= 0 || sdec < 0) {
        rc = lk__fail(err, LK_ETOKEN_MALFORMED, "token part is not base64url");
        goto done;
    }
    hbuf[hdec] = '\0';
    pbuf[pdec] = '\0';

    if (lk__json_has_nul(hbuf, (size_t)hdec)) {
        rc = lk__fail(err, LK_ETOKEN_MALFORMED, "token header contains a NUL character");
        goto done;
    }
    if (!parse_json(hbuf, (size_t)hdec, &header)) {
        rc = lk__fail(err, LK_ETOKEN_MALFORMED, "token header is not a JSON object");
        goto done;
    }
    if ((rc = check_header(header, err)))
        goto done;
    const char *kid = cJSON_GetObjectItemCaseSensitive(header, "kid")->valuestring;
    rc = resolve(ud, kid, &info);
    if (rc == LK_ENOTFOUND || (rc == LK_OK && !info.pubkey)) {
        rc = lk__fail(err, LK_ETOKEN_KID, "token signed by an unknown key");
        goto done;
    }
    if (rc) {
        rc = lk__fail(err, rc, "key lookup failed: %s", lk_strerror(rc));
        goto done;
    }

    if (sdec != LK__SIG_BYTES) {
        rc = lk__fail(err, LK_ETOKEN_SIGNATURE, "token signature must be 64 bytes");
        goto done;
    }
    if ((rc = lk__pubkey_verify(info.pubkey, token, (size_t)(dot2 - token), sbuf))) {
        rc = rc == LK_ETOKEN_SIGNATURE
                 ? lk__fail(err, rc, "token signature invalid")
                 : lk__fail(err, rc, "signature check failed: %s", lk_strerror(rc));
        goto done;
    }

    /* The payload is authentic from here on. */
    if (lk__json_has_nul(pbuf, (size_t)pdec)) {
        rc = lk__fail(err, LK_ETOKEN_MALFORMED, "token claims contain a NUL character");
        goto done;
    }
    if (!parse_json(pbuf, (size_t)pdec, &claims)) {
        rc = lk__fail(err, LK_ETOKEN_MALFORMED, "token claims are not a JSON object");
        goto done;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        rc = lk__fail(err, LK_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(c->kid, kid, LK_KID_BYTES);
    now = opts && opts->now ? opts->now : (int64_t)time(NULL);
    if ((rc = check_claims(claims, opts, now, c, err)))
        goto done;

    if (info.revoked) {
        rc = lk__fail(err, LK_EKEY_REVOKED, "token's API key is revoked");
        goto done;
    }
    if ((rc = lk_cap_check_scopes(c->cap, info.scopes, err)))
        goto done;
    if (info.workspace && !(c->workspace = strdup(info.workspace))) {
        rc = lk__fail(err, LK_ENOMEM, "out of memory");
        goto done;
    }
    *out = c;
    c = NULL;
    rc = LK_OK;
done:
    lk_claims_destroy(c);
    cJSON_Delete(claims);
    cJSON_Delete(header);
    free(buf);
    return rc;
}

int lk_token_close_code(int rc)
{
    if (rc == LK_OK)
        return 0;
    if (rc == LK_EKEY_REVOKED || rc == LK_ESCOPE_MISSING)
        return 4403;
    return 4401;
}

const char *lk_claims_kid(const lk_claims *c)
{
    return c ? c->kid : NULL;
}

const char *lk_claims_sub(const lk_claims *c)
{
    return c ? c->sub : NULL;
}

const char *lk_claims_jti(const lk_claims *c)
{
    return c ? c->jti : NULL;
}

const char *lk_claims_workspace(const lk_claims *c)
{
    return c ? c->workspace : NULL;
}

int64_t lk_claims_iat(const lk_claims *c)
{
    return c ? c->iat : 0;
}

int64_t lk_claims_exp(const lk_claims *c)
{
    return c ? c->exp : 0;
}

int64_t lk_claims_nbf(const lk_claims *c)
{
    return c ? c->nbf : 0;
}

const lk_cap *lk_claims_cap(const lk_claims *c)
{
    return c ? c->cap : NULL;
}

void lk_claims_destroy(lk_claims *c)
{
    if (!c)
        return;
    lk_cap_destroy(c->cap);
    free(c->sub);
    free(c->jti);
    free(c->workspace);
    free(c);
}
