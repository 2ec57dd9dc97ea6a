/* Unit tests for presented API key checks and their cache (broker/apikey.c),
 * against a real registry file and the broker's key table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "apikey.h"
#include "test.h"

typedef struct fixture {
    char dir[64];
    char path[96];
    lk_registry *reg;
    lk_keystore *ks;
    lk_apikeys *cache;
    char raw[LK_KEY_STR_BYTES];
    lk_key_record rec;
} fixture;

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static int fixture_open(fixture *f, const char *scopes)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/lk-apikey-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/reg.db", f->dir);
    lk_error err;
    if (lk_registry_open(f->path, &f->reg, &err) != LK_OK ||
        lk_registry_create_key(f->reg, "ws_unit", "unit key", scopes, LK_ENV_LIVE, f->raw,
                               &f->rec, &err) != LK_OK ||
        lk_keystore_open(f->path, &f->ks, &err) != LK_OK ||
        lk_apikeys_open(f->path, &f->cache, &err) != LK_OK) {
        fprintf(stderr, "fixture: %s\n", err.message);
        return -1;
    }
    return 0;
}

static void fixture_close(fixture *f)
{
    lk_apikeys_destroy(f->cache);
    lk_keystore_destroy(f->ks);
    lk_registry_close(f->reg);
    OPENSSL_cleanse(f->raw, sizeof f->raw);
    char p[128];
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
}

/* A well-formed key string (valid checksum) from any parts. */
static void forge(char out[LK_KEY_STR_BYTES], const char *env, const char *kid,
                  const char *secret_hex)
{
    int n = snprintf(out, LK_KEY_STR_BYTES, "lk_%.4s_%.16s_%.64s", env, kid, secret_hex);
    snprintf(out + n, LK_KEY_STR_BYTES - (size_t)n, "_%08x", lk_crc32(out, (size_t)n));
}

static int verify(fixture *f, const char *key, int64_t now, int *cached)
{
    const lk_apikey *k = NULL;
    lk_error err = {0};
    int rc = lk_apikeys_verify(f->cache, f->ks, key, strlen(key), now, &k, cached, &err);
    if ((rc == LK_OK) != (k != NULL))
        return LK_EINVAL;
    size_t n = strlen(key);
    /* A refusal explains itself, never echoing the key's secret part. */
    if (rc != LK_OK && (!err.message[0] || (n >= 40 && strstr(err.message, key + n - 30))))
        return LK_EINVAL;
    return rc;
}

static void test_verify_then_cached(void)
{
    fixture f;
    ASSERT_EQ(fixture_open(&f, "realtime:publish,realtime:subscribe"), 0);
    const lk_apikey *k = NULL;
    int cached = -1;
    lk_error err = {0};
    ASSERT_RC(lk_apikeys_verify(f.cache, f.ks, f.raw, strlen(f.raw), now_s(), &k, &cached,
                                &err), LK_OK);
    ASSERT_EQ(cached, 0);
    ASSERT_STREQ(k->kid, f.rec.kid);
    ASSERT_STREQ(k->workspace, "ws_unit");
    ASSERT_STREQ(k->name, "unit key");
    ASSERT_EQ(k->env, LK_ENV_LIVE);
    ASSERT_STREQ(k->scopes, f.rec.scopes);
    ASSERT_EQ(k->scope_mask & (LK_ACT_PUBLISH | LK_ACT_SUBSCRIBE),
              LK_ACT_PUBLISH | LK_ACT_SUBSCRIBE);
    ASSERT_EQ(lk_apikeys_count(f.cache), 1);

    ASSERT_RC(lk_apikeys_verify(f.cache, f.ks, f.raw, strlen(f.raw), now_s(), &k, &cached,
                                &err), LK_OK);
    ASSERT_EQ(cached, 1);
    ASSERT_EQ(lk_apikeys_count(f.cache), 1);

    /* The cached signing key mints tokens. */
    lk_mint_opts opts = {.capability = "{\"a\":[\"realtime:subscribe\"]}", .ttl = 60};
    char *tok = NULL;
    ASSERT_RC(lk_token_mint(k->key, &opts, &tok, &err), LK_OK);
    ASSERT_NOT_NULL(tok);
    lk_free(tok);
    fixture_close(&f);
}

static void test_refusals(void)
{
    fixture f;
    ASSERT_EQ(fixture_open(&f, "realtime:subscribe"), 0);
    char key[LK_KEY_STR_BYTES], secret[65];
    int cached;
    const char *real_secret = f.raw + strlen("lk_live_") + LK_KID_HEX + 1;

    memset(secret, 'a', 64);
    secret[64] = '\0';
    forge(key, "live", f.rec.kid, secret);
    ASSERT_RC(verify(&f, key, now_s(), &cached), LK_ETOKEN_SIGNATURE);

    forge(key, "live", "0123456789abcdef", secret);
    ASSERT_RC(verify(&f, key, now_s(), &cached), LK_ENOTFOUND);

    char real[65];
    memcpy(real, real_secret, 64);
    real[64] = '\0';
    forge(key, "sbx", f.rec.kid, real);
    ASSERT_RC(verify(&f, key, now_s(), &cached), LK_ETOKEN_SIGNATURE);

    snprintf(key, sizeof key, "%s", f.raw);
    key[strlen(key) - 1] = key[strlen(key) - 1] == '0' ? '1' : '0';
    ASSERT_RC(verify(&f, key, now_s(), &cached), LK_EKEY_CHECKSUM);

    ASSERT_RC(verify(&f, "lk_live_short", now_s(), &cached), LK_EKEY_FORMAT);
    ASSERT_RC(verify(&f, "Bearer", now_s(), &cached), LK_EKEY_FORMAT);
    char longkey[300];
    memset(longkey, 'a', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    ASSERT_RC(verify(&f, longkey, now_s(), &cached), LK_EKEY_FORMAT);
    /* A scalar out of range, with a valid checksum. */
    memset(secret, 'f', 64);
    forge(key, "live", f.rec.kid, secret);
    ASSERT_RC(verify(&f, key, now_s(), &cached), LK_EKEY_RANGE);

    ASSERT_EQ(lk_apikeys_count(f.cache), 0);
    /* The real key still works after all that. */
    ASSERT_RC(verify(&f, f.raw, now_s(), &cached), LK_OK);
    fixture_close(&f);
}

static void test_revocation_drops_cached_key(void)
{
    fixture f;
    ASSERT_EQ(fixture_open(&f, "realtime:subscribe"), 0);
    int cached, changed = 0;
    lk_error err;
    ASSERT_RC(verify(&f, f.raw, now_s(), &cached), LK_OK);
    ASSERT_RC(verify(&f, f.raw, now_s(), &cached), LK_OK);
    ASSERT_EQ(cached, 1);
    ASSERT_RC(lk_registry_revoke(f.reg, f.rec.kid, &err), LK_OK);
    /* Until the table reloads the key is still known as active. */
    ASSERT_RC(lk_keystore_poll(f.ks, &changed, &err), LK_OK);
    ASSERT_EQ(changed, 1);
    /* A hit checks the table: refused, and the entry is gone. */
    ASSERT_RC(verify(&f, f.raw, now_s(), &cached), LK_EKEY_REVOKED);
    ASSERT_EQ(lk_apikeys_count(f.cache), 0);
    ASSERT_RC(verify(&f, f.raw, now_s(), &cached), LK_EKEY_REVOKED);
    fixture_close(&f);
}

static void test_purge(void)
{
    fixture f;
    ASSERT_EQ(fixture_open(&f, "realtime:subscribe"), 0);
    char raw2[LK_KEY_STR_BYTES];
    lk_key_record rec2;
    lk_error err;
    int cached, changed;
    ASSERT_RC(lk_registry_create_key(f.reg, "ws_unit", "second", "realtime:subscribe",
                                     LK_ENV_LIVE, raw2, &rec2, &err), LK_OK);
    ASSERT_RC(lk_keystore_poll(f.ks, &changed, &err), LK_OK);
    ASSERT_RC(verify(&f, f.raw, now_s(), &cached), LK_OK);
    ASSERT_RC(verify(&f, raw2, now_s(), &cached), LK_OK);
    ASSERT_EQ(lk_apikeys_count(f.cache), 2);
    ASSERT_RC(lk_registry_revoke(f.reg, rec2.kid, &err), LK_OK);
    ASSERT_RC(lk_keystore_poll(f.ks, &changed, &err), LK_OK);
    lk_apikeys_purge(f.cache, f.ks, now_s());
    ASSERT_EQ(lk_apikeys_count(f.cache), 1);
    /* Idle entries go too. */
    lk_apikeys_purge(f.cache, f.ks, now_s() + LK_APIKEY_IDLE_SECS + 1);
    ASSERT_EQ(lk_apikeys_count(f.cache), 0);
    OPENSSL_cleanse(raw2, sizeof raw2);
    fixture_close(&f);
}

static void test_idle_entry_verified_again(void)
{
    fixture f;
    ASSERT_EQ(fixture_open(&f, "realtime:subscribe"), 0);
    int cached;
    int64_t t = now_s();
    ASSERT_RC(verify(&f, f.raw, t, &cached), LK_OK);
    ASSERT_RC(verify(&f, f.raw, t + LK_APIKEY_IDLE_SECS, &cached), LK_OK);
    ASSERT_EQ(cached, 1);
    ASSERT_RC(verify(&f, f.raw, t + 2 * LK_APIKEY_IDLE_SECS + 1, &cached), LK_OK);
    ASSERT_EQ(cached, 0);
    ASSERT_EQ(lk_apikeys_count(f.cache), 1);
    fixture_close(&f);
    lk_apikeys_destroy(NULL);
}

LK_TEST_MAIN("apikey",
             LK_TEST(test_verify_then_cached),
             LK_TEST(test_refusals),
             LK_TEST(test_revocation_drops_cached_key),
             LK_TEST(test_purge),
             LK_TEST(test_idle_entry_verified_again))
