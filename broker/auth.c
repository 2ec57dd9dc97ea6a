/* auth.c - token extraction from the handshake, Origin check and token
 * verification through the key table. */
#include "auth.h"

#include <string.h>
#include <strings.h>

int lk_auth_find_token(struct lws *wsi, char *buf, size_t cap,
                       const char **tok, size_t *len)
{
    int n = lws_hdr_copy(wsi, buf, (int)cap, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n > 7 && strncasecmp(buf, "Bearer ", 7) == 0) {
        const char *p = buf + 7, *end = buf + n;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end > p) {
            *tok = p;
            *len = (size_t)(end - p);
            return 1;
        }
    }
    /* lws_get_urlarg_by_name returns NULL both for "absent" and "buffer too
     * small"; `buf` holds the whole header budget, so only "absent" is
     * possible here. It returns the first match, URL-decoded. */
    const char *v = lws_get_urlarg_by_name(wsi, "access_token=", buf, (int)cap);
    if (v && *v) {
        *tok = v;
        *len = strlen(v);
        return 1;
    }
    return 0;
}

int lk_auth_origin_ok(lk_broker *b, struct lws *wsi)
{
    if (!b->cfg->n_origins)
        return 1;
    int n = lws_hdr_copy(wsi, b->scratch, (int)b->scratch_cap, WSI_TOKEN_ORIGIN);
    /* Browsers always send Origin; a client without one is not a browser,
     * and such a client could send any Origin it liked, so refusing it
     * would protect nothing. */
    if (n == 0 && lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) == 0)
        return 1;
    if (n <= 0)
        return 0;
    return lk_config_origin_allowed(b->cfg, b->scratch, (size_t)n);
}

int lk_auth_verify(lk_broker *b, const char *tok, size_t len, lk_claims **out,
                   lk_error *err)
{
    lk_broker_sync_keys(b);
    lk_verify_opts opts = {
        .now = 0,
        .max_ttl = b->cfg->max_token_ttl,
        .audience = b->cfg->audience,
        .max_bytes = LK_TOKEN_MAX_BYTES,
    };
    int rc = lk_token_verify(tok, len, &opts, lk_keystore_resolve, b->keys, out, err);
    lk_verify_outcome o = LK_VERIFY_OK;
    if (rc == LK_ETOKEN_EXPIRED)
        o = LK_VERIFY_EXPIRED;
    else if (rc != LK_OK)
        o = lk_auth_close_code(rc) == 4403 ? LK_VERIFY_FORBIDDEN : LK_VERIFY_INVALID;
    LK_COUNT(b->metrics.verifications[o]);
    return rc;
}

int lk_auth_close_code(int rc)
{
    if (rc == LK_EKEY_REVOKED || rc == LK_ESCOPE_MISSING)
        return 4403;
    return 4401;
}

const char *lk_auth_error_code(int rc)
{
    if (rc == LK_ETOKEN_EXPIRED)
        return "token_expired";
    return lk_auth_close_code(rc) == 4403 ? "forbidden" : "unauthorized";
}
