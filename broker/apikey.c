/* apikey.c - presented API key checks and their set-associative cache. */
#include "apikey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define DIGEST_BYTES 32
#define WAYS 4
#define SETS (LK_APIKEY_CACHE_SLOTS / WAYS)

typedef struct ak_entry {
    int used;
    uint8_t digest[DIGEST_BYTES];
    int64_t last_used;
    lk_apikey info;
} ak_entry;

struct lk_apikeys {
    lk_registry *reg;
    size_t count;
    ak_entry slots[SETS][WAYS];
};

static int fail(lk_error *err, int code, const char *msg)
{
    if (err) {
        err->code = code;
        snprintf(err->message, sizeof err->message, "%s", msg);
    }
    return code;
}

int lk_apikeys_open(const char *db_path, lk_apikeys **out, lk_error *err)
{
    *out = NULL;
    lk_apikeys *c = calloc(1, sizeof *c);
    if (!c)
        return fail(err, LK_ENOMEM, "out of memory");
    int rc = lk_registry_open(db_path, &c->reg, err);
    if (rc != LK_OK) {
        free(c);
        return rc;
    }
    *out = c;
    return LK_OK;
}

static void drop(lk_apikeys *c, ak_entry *e)
{
    if (!e->used)
        return;
    lk_key_destroy(e->info.key);
    OPENSSL_cleanse(e, sizeof *e);
    c->count--;
}

void lk_apikeys_destroy(lk_apikeys *c)
{
    if (!c)
        return;
    for (size_t s = 0; s < SETS; s++)
        for (size_t w = 0; w < WAYS; w++)
            drop(c, &c->slots[s][w]);
    lk_registry_close(c->reg);
    free(c);
}

size_t lk_apikeys_count(const lk_apikeys *c)
{
    return c->count;
}

void lk_apikeys_purge(lk_apikeys *c, const lk_keystore *ks, int64_t now_s)
{
    for (size_t s = 0; s < SETS; s++)
        for (size_t w = 0; w < WAYS; w++) {
            ak_entry *e = &c->slots[s][w];
            if (e->used && (!lk_keystore_active(ks, e->info.kid) ||
                            now_s - e->last_used > LK_APIKEY_IDLE_SECS))
                drop(c, e);
        }
}

/* The key id inside "lk_live_<kid>_..." or "lk_sbx_<kid>_...", copied to
 * `kid` when the string is shaped like a key that far; 0 otherwise (the
 * full parse then reports what is wrong). */
static int kid_of(const char *s, size_t len, char kid[LK_KID_BYTES])
{
    size_t pos;
    if (len >= 8 && memcmp(s, "lk_live_", 8) == 0)
        pos = 8;
    else if (len >= 7 && memcmp(s, "lk_sbx_", 7) == 0)
        pos = 7;
    else
        return 0;
    if (len < pos + LK_KID_HEX + 1 || s[pos + LK_KID_HEX] != '_')
        return 0;
    for (size_t i = 0; i < LK_KID_HEX; i++) {
        char ch = s[pos + i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return 0;
        kid[i] = ch;
    }
    kid[LK_KID_HEX] = '\0';
    return 1;
}

/* The key table says whether a kid exists and is active, without any
 * disk access; a refusal here costs no crypto. */
static int check_table(const lk_keystore *ks, const char *kid, lk_error *err)
{
    lk_key_info info;
    if (lk_keystore_resolve((void *)ks, kid, &info) != LK_OK)
        return fail(err, LK_ENOTFOUND, "unknown key id");
    if (info.revoked)
        return fail(err, LK_EKEY_REVOKED, "key revoked");
    return LK_OK;
}

/* The full check of a key not in the cache. On success *key holds the
 * parsed key and *rec its registry record. */
static int verify_fresh(lk_apikeys *c, const lk_keystore *ks, const char *s,
                        size_t len, lk_key **key, lk_key_record *rec, lk_error *err)
{
    char kid[LK_KID_BYTES];
    *key = NULL;
    if (kid_of(s, len, kid)) {
        int rc = check_table(ks, kid, err);
        if (rc != LK_OK)
            return rc;
    }
    lk_key *k = NULL;
    int rc = lk_key_parse(s, len, &k, err);
    if (rc != LK_OK)
        return rc;
    /* kid_of may have declined a string lk_key_parse accepts only if the
     * two disagree on the format; check the table again to be sure. */
    rc = check_table(ks, lk_key_kid(k), err);
    if (rc == LK_OK)
        rc = lk_registry_get(c->reg, lk_key_kid(k), rec, err);
    if (rc == LK_OK && rec->status != LK_KEY_ACTIVE)
        rc = fail(err, LK_EKEY_REVOKED, "key revoked");
    if (rc == LK_OK && rec->env != lk_key_env(k))
        rc = fail(err, LK_ETOKEN_SIGNATURE, "key environment does not match the registry");
    if (rc == LK_OK) {
        uint8_t pub[LK_PUBKEY_BYTES];
        lk_key_public(k, pub);
        if (CRYPTO_memcmp(pub, rec->pubkey, sizeof pub) != 0)
            rc = fail(err, LK_ETOKEN_SIGNATURE, "key secret does not match the registry");
    }
    if (rc != LK_OK) {
        lk_key_destroy(k);
        return rc;
    }
    *key = k;
    return LK_OK;
}

int lk_apikeys_verify(lk_apikeys *c, const lk_keystore *ks, const char *presented,
                      size_t len, int64_t now_s, const lk_apikey **out,
                      int *cached, lk_error *err)
{
    *out = NULL;
    *cached = 0;
    if (!presented || len == 0 || len > LK_KEY_STR_MAX)
        return fail(err, LK_EKEY_FORMAT, "not an API key");

    uint8_t digest[DIGEST_BYTES];
    unsigned int dlen = 0;
    if (EVP_Digest(presented, len, digest, &dlen, EVP_sha256(), NULL) != 1 ||
        dlen != DIGEST_BYTES)
        return fail(err, LK_ECRYPTO, "SHA-256 failed");

    ak_entry *set = c->slots[digest[0] % SETS];
    for (size_t w = 0; w < WAYS; w++) {
        ak_entry *e = &set[w];
        if (!e->used || CRYPTO_memcmp(e->digest, digest, DIGEST_BYTES) != 0)
            continue;
        if (!lk_keystore_active(ks, e->info.kid)) {
            drop(c, e);
            return fail(err, LK_EKEY_REVOKED, "key revoked");
        }
        if (now_s - e->last_used > LK_APIKEY_IDLE_SECS) {
            drop(c, e);
            break;
        }
        e->last_used = now_s;
        *cached = 1;
        *out = &e->info;
        return LK_OK;
    }

    lk_key *key;
    lk_key_record rec;
    int rc = verify_fresh(c, ks, presented, len, &key, &rec, err);
    if (rc != LK_OK)
        return rc;

    ak_entry *victim = &set[0];
    for (size_t w = 0; w < WAYS; w++) {
        if (!set[w].used) {
            victim = &set[w];
            break;
        }
        if (set[w].last_used < victim->last_used)
            victim = &set[w];
    }
    drop(c, victim);
    victim->used = 1;
    memcpy(victim->digest, digest, DIGEST_BYTES);
    victim->last_used = now_s;
    lk_apikey *info = &victim->info;
    snprintf(info->kid, sizeof info->kid, "%s", rec.kid);
    snprintf(info->workspace, sizeof info->workspace, "%s", rec.workspace);
    info->env = rec.env;
    snprintf(info->name, sizeof info->name, "%s", rec.name);
    snprintf(info->scopes, sizeof info->scopes, "%s", rec.scopes);
    info->scope_mask = rec.scope_mask;
    info->key = key;
    c->count++;
    *out = info;
    return LK_OK;
}
