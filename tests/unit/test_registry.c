/* test_registry.c - the SQLite key registry: records, workspace envs,
 * revocation, rotation, versioning, schema checks and file hygiene. */
#define _GNU_SOURCE /* nftw */
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "latchkey/latchkey.h"
#include "lk_internal.h"
#include "test.h"

static char tmpdir[64];
static int db_seq;

static void remove_tmpdir(void);

/* The test's private directory, made on first use and removed at exit. */
static const char *test_dir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/lk-test-registry-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

/* A fresh database path in the test's private directory. */
static const char *new_db_path(void)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/reg%d.db", test_dir(), ++db_seq);
    return path;
}

static int remove_entry(const char *path, const struct stat *st, int type,
                        struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tmpdir(void)
{
    nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* tmpdir/`rel` in a static buffer (one of two, so two can be in use). */
static const char *in_tmp(const char *rel)
{
    static char bufs[2][192];
    static int which;
    char *b = bufs[which ^= 1];
    snprintf(b, sizeof bufs[0], "%s/%s", test_dir(), rel);
    return b;
}

/* Makes tmpdir/`rel` with exactly `mode` (mkdir alone would apply the
 * umask and drop the sticky bit). */
static int make_dir(const char *rel, mode_t mode)
{
    const char *dir = in_tmp(rel);
    return mkdir(dir, 0700) == 0 && chmod(dir, mode) == 0 ? 0 : -1;
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

/* Asserts lk_registry_open refuses `path` with `code`, leaves *out NULL
 * and says `why` in its message. */
#define ASSERT_REFUSED(path, code, why)                                     \
    do {                                                                    \
        lk_registry *reg_ = (lk_registry *)1;                               \
        lk_error e_ = {0};                                                  \
        int rc_ = lk_registry_open((path), &reg_, &e_);                     \
        if (rc_ == LK_OK)                                                   \
            lk_registry_close(reg_);                                        \
        ASSERT_RC(rc_, (code));                                             \
        ASSERT_NULL(reg_);                                                  \
        if (!strstr(e_.message, (why)))                                     \
            LK_TEST__FAIL("message \"%s\" does not say \"%s\"",           \
                          e_.message, (why));                               \
    } while (0)

/* Runs one statement on the file behind the registry's back. */
static int raw_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static lk_registry *open_new(const char **path_out)
{
    const char *path = new_db_path();
    lk_registry *reg = NULL;
    lk_error err;
    if (lk_registry_open(path, &reg, &err) != LK_OK)
        fprintf(stderr, "open %s: %s\n", path, err.message);
    if (path_out)
        *path_out = path;
    return reg;
}

static void test_create_and_get(void)
{
    lk_registry *reg = open_new(NULL);
    ASSERT_NOT_NULL(reg);
    char raw[LK_KEY_STR_BYTES];
    lk_key_record rec, got;
    lk_error err;
    int64_t before = (int64_t)time(NULL);
    ASSERT_RC(lk_registry_create_key(reg, "ws_acme", "backend",
                                     "realtime:subscribe, realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_OK);
    ASSERT_TRUE(strncmp(raw, "lk_live_", 8) == 0);
    ASSERT_EQ(strlen(raw), LK_KEY_STR_MAX);
    ASSERT_TRUE(strncmp(raw + 8, rec.kid, LK_KID_HEX) == 0);

    ASSERT_RC(lk_registry_get(reg, rec.kid, &got, &err), LK_OK);
    ASSERT_STREQ(got.kid, rec.kid);
    ASSERT_STREQ(got.workspace, "ws_acme");
    ASSERT_STREQ(got.name, "backend");
    ASSERT_EQ(got.env, LK_ENV_LIVE);
    ASSERT_STREQ(got.scopes, rec.scopes);
    ASSERT_EQ(got.scope_mask, LK_ACT_PUBLISH | LK_ACT_SUBSCRIBE);
    ASSERT_EQ(got.status, LK_KEY_ACTIVE);
    ASSERT_TRUE(got.created_at >= before && got.created_at <= before + 5);
    ASSERT_EQ(got.revoked_at, 0);
    ASSERT_EQ(got.last_used_at, 0);
    ASSERT_TRUE(memcmp(got.pubkey, rec.pubkey, LK_PUBKEY_BYTES) == 0);

    /* The stored public key is the raw key's. */
    lk_key *key = NULL;
    ASSERT_RC(lk_key_parse(raw, strlen(raw), &key, &err), LK_OK);
    uint8_t pub[LK_PUBKEY_BYTES];
    lk_key_public(key, pub);
    ASSERT_TRUE(memcmp(pub, got.pubkey, LK_PUBKEY_BYTES) == 0);
    ASSERT_STREQ(lk_key_kid(key), got.kid);
    lk_key_destroy(key);

    ASSERT_RC(lk_registry_create_key(reg, "ws_play", "dev", "realtime:*",
                                     LK_ENV_SBX, raw, &rec, &err), LK_OK);
    ASSERT_TRUE(strncmp(raw, "lk_sbx_", 7) == 0);
    ASSERT_RC(lk_registry_get(reg, rec.kid, &got, &err), LK_OK);
    ASSERT_EQ(got.env, LK_ENV_SBX);
    ASSERT_TRUE((got.scope_mask & (LK_ACT_PUBLISH | LK_ACT_SUBSCRIBE)) ==
                (LK_ACT_PUBLISH | LK_ACT_SUBSCRIBE));

    /* A NULL record is allowed. */
    ASSERT_RC(lk_registry_create_key(reg, "ws_acme", "second", "realtime:publish",
                                     LK_ENV_LIVE, raw, NULL, &err), LK_OK);
    OPENSSL_cleanse(raw, sizeof raw);
    lk_registry_close(reg);
}

static void test_list(void)
{
    lk_registry *reg = open_new(NULL);
    ASSERT_NOT_NULL(reg);
    lk_key_record *recs = (lk_key_record *)1;
    size_t n = 99;
    lk_error err;
    ASSERT_RC(lk_registry_list(reg, NULL, &recs, &n, &err), LK_OK);
    ASSERT_NULL(recs);
    ASSERT_EQ(n, 0);

    char raw[LK_KEY_STR_BYTES];
    char kids[40][LK_KID_BYTES];
    for (int i = 0; i < 40; i++) {
        lk_key_record rec;
        char name[32];
        snprintf(name, sizeof name, "key %d", i);
        ASSERT_RC(lk_registry_create_key(reg, i % 2 ? "ws_odd" : "ws_even", name,
                                         "realtime:subscribe", LK_ENV_LIVE,
                                         raw, &rec, &err), LK_OK);
        memcpy(kids[i], rec.kid, LK_KID_BYTES);
    }
    OPENSSL_cleanse(raw, sizeof raw);

    ASSERT_RC(lk_registry_list(reg, NULL, &recs, &n, &err), LK_OK);
    ASSERT_EQ(n, 40);
    for (size_t i = 0; i < n; i++)
        ASSERT_STREQ(recs[i].kid, kids[i]);
    lk_free(recs);

    ASSERT_RC(lk_registry_list(reg, "ws_odd", &recs, &n, &err), LK_OK);
    ASSERT_EQ(n, 20);
    for (size_t i = 0; i < n; i++) {
        ASSERT_STREQ(recs[i].workspace, "ws_odd");
        ASSERT_STREQ(recs[i].kid, kids[2 * i + 1]);
    }
    lk_free(recs);

    ASSERT_RC(lk_registry_list(reg, "ws_none", &recs, &n, &err), LK_OK);
    ASSERT_EQ(n, 0);
    ASSERT_NULL(recs);
    ASSERT_RC(lk_registry_list(reg, "nope", &recs, &n, &err), LK_EWORKSPACE);
    ASSERT_NULL(recs);
    lk_registry_close(reg);
}

static void test_revoke(void)
{
    const char *path;
    lk_registry *reg = open_new(&path);
    ASSERT_NOT_NULL(reg);
    char raw[LK_KEY_STR_BYTES];
    lk_key_record rec, got;
    lk_error err;
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", "k", "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_OK);
    int64_t before = (int64_t)time(NULL);
    ASSERT_RC(lk_registry_revoke(reg, rec.kid, &err), LK_OK);
    ASSERT_RC(lk_registry_get(reg, rec.kid, &got, &err), LK_OK);
    ASSERT_EQ(got.status, LK_KEY_REVOKED);
    ASSERT_TRUE(got.revoked_at >= before && got.revoked_at <= before + 5);

    /* Idempotent, and the first revocation time is kept. */
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE keys SET revoked_at = 1000 WHERE kid = '%s'",
             rec.kid);
    ASSERT_EQ(raw_sql(path, sql), SQLITE_OK);
    ASSERT_RC(lk_registry_revoke(reg, rec.kid, &err), LK_OK);
    ASSERT_RC(lk_registry_get(reg, rec.kid, &got, &err), LK_OK);
    ASSERT_EQ(got.status, LK_KEY_REVOKED);
    ASSERT_EQ(got.revoked_at, 1000);

    ASSERT_RC(lk_registry_revoke(reg, "0123456789abcdef", &err), LK_ENOTFOUND);
    ASSERT_TRUE(strstr(err.message, "0123456789abcdef") != NULL);
    OPENSSL_cleanse(raw, sizeof raw);
    lk_registry_close(reg);
}

static void test_rotate(void)
{
    lk_registry *reg = open_new(NULL);
    ASSERT_NOT_NULL(reg);
    char raw[LK_KEY_STR_BYTES], raw2[LK_KEY_STR_BYTES];
    lk_key_record old, neu, got;
    lk_error err;
    ASSERT_RC(lk_registry_create_key(reg, "ws_play", "frontend minting",
                                     "realtime:subscribe", LK_ENV_SBX, raw, &old,
                                     &err), LK_OK);
    ASSERT_RC(lk_registry_rotate(reg, old.kid, raw2, &neu, &err), LK_OK);
    ASSERT_TRUE(strcmp(raw, raw2) != 0);
    ASSERT_TRUE(strcmp(old.kid, neu.kid) != 0);
    ASSERT_TRUE(strncmp(raw2, "lk_sbx_", 7) == 0);
    ASSERT_RC(lk_registry_get(reg, neu.kid, &got, &err), LK_OK);
    ASSERT_STREQ(got.workspace, "ws_play");
    ASSERT_EQ(got.env, LK_ENV_SBX);
    ASSERT_STREQ(got.name, "frontend minting");
    ASSERT_STREQ(got.scopes, old.scopes);
    ASSERT_EQ(got.scope_mask, old.scope_mask);
    ASSERT_EQ(got.status, LK_KEY_ACTIVE);

    lk_key *key = NULL;
    ASSERT_RC(lk_key_parse(raw2, strlen(raw2), &key, &err), LK_OK);
    uint8_t pub[LK_PUBKEY_BYTES];
    lk_key_public(key, pub);
    ASSERT_TRUE(memcmp(pub, got.pubkey, LK_PUBKEY_BYTES) == 0);
    lk_key_destroy(key);

    /* The old key stays active until revoked. */
    ASSERT_RC(lk_registry_get(reg, old.kid, &got, &err), LK_OK);
    ASSERT_EQ(got.status, LK_KEY_ACTIVE);

    ASSERT_RC(lk_registry_revoke(reg, old.kid, &err), LK_OK);
    ASSERT_RC(lk_registry_rotate(reg, old.kid, raw2, &neu, &err), LK_EKEY_REVOKED);
    ASSERT_EQ(raw2[0], '\0');
    ASSERT_RC(lk_registry_rotate(reg, "fedcba9876543210", raw2, &neu, &err),
              LK_ENOTFOUND);
    ASSERT_RC(lk_registry_rotate(reg, "xyz", raw2, &neu, &err), LK_EINVAL);

    size_t n;
    lk_key_record *recs;
    ASSERT_RC(lk_registry_list(reg, "ws_play", &recs, &n, &err), LK_OK);
    ASSERT_EQ(n, 2);
    lk_free(recs);
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(raw2, sizeof raw2);
    lk_registry_close(reg);
}

static void test_touch(void)
{
    lk_registry *reg = open_new(NULL);
    ASSERT_NOT_NULL(reg);
    char raw[LK_KEY_STR_BYTES];
    lk_key_record rec, got;
    lk_error err;
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", "k", "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_OK);
    ASSERT_RC(lk_registry_touch(reg, rec.kid, 1700000000, &err), LK_OK);
    ASSERT_RC(lk_registry_get(reg, rec.kid, &got, &err), LK_OK);
    ASSERT_EQ(got.last_used_at, 1700000000);
    /* A late, older report never moves the time backwards. */
    ASSERT_RC(lk_registry_touch(reg, rec.kid, 1600000000, &err), LK_OK);
    ASSERT_RC(lk_registry_get(reg, rec.kid, &got, &err), LK_OK);
    ASSERT_EQ(got.last_used_at, 1700000000);
    ASSERT_RC(lk_registry_touch(reg, "0000000000000000", 1, &err), LK_ENOTFOUND);
    OPENSSL_cleanse(raw, sizeof raw);
    lk_registry_close(reg);
}

static void test_env_mismatch(void)
{
    lk_registry *reg = open_new(NULL);
    ASSERT_NOT_NULL(reg);
    char raw[LK_KEY_STR_BYTES];
    lk_key_record rec;
    lk_error err;
    ASSERT_RC(lk_registry_create_key(reg, "ws_prod", "k", "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_OK);
    ASSERT_RC(lk_registry_create_key(reg, "ws_prod", "k2", "realtime:publish",
                                     LK_ENV_SBX, raw, &rec, &err), LK_EWORKSPACE);
    ASSERT_EQ(raw[0], '\0');
    ASSERT_TRUE(strstr(err.message, "ws_prod") != NULL);
    ASSERT_TRUE(strstr(err.message, "live") != NULL);

    ASSERT_RC(lk_registry_create_key(reg, "ws_test", "k", "realtime:publish",
                                     LK_ENV_SBX, raw, &rec, &err), LK_OK);
    ASSERT_RC(lk_registry_create_key(reg, "ws_test", "k", "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_EWORKSPACE);
    ASSERT_TRUE(strstr(err.message, "sandbox") != NULL);

    /* Refused creations leave nothing behind. */
    size_t n;
    lk_key_record *recs;
    ASSERT_RC(lk_registry_list(reg, NULL, &recs, &n, &err), LK_OK);
    ASSERT_EQ(n, 2);
    lk_free(recs);
    lk_registry_close(reg);
}

static void test_workspace_valid(void)
{
    ASSERT_TRUE(lk_workspace_valid("ws_a"));
    ASSERT_TRUE(lk_workspace_valid("ws_acme-prod_2"));
    ASSERT_TRUE(lk_workspace_valid("ws__"));
    char ws[80] = "ws_";
    memset(ws + 3, 'a', 64);
    ws[67] = '\0';
    ASSERT_TRUE(lk_workspace_valid(ws));
    ws[67] = 'a';
    ws[68] = '\0';
    ASSERT_FALSE(lk_workspace_valid(ws));
    ASSERT_FALSE(lk_workspace_valid("ws_"));
    ASSERT_FALSE(lk_workspace_valid("ws"));
    ASSERT_FALSE(lk_workspace_valid(""));
    ASSERT_FALSE(lk_workspace_valid(NULL));
    ASSERT_FALSE(lk_workspace_valid("WS_a"));
    ASSERT_FALSE(lk_workspace_valid("ws_A"));
    ASSERT_FALSE(lk_workspace_valid("ws_a b"));
    ASSERT_FALSE(lk_workspace_valid("ws_a.b"));
    ASSERT_FALSE(lk_workspace_valid("xws_a"));
    ASSERT_FALSE(lk_workspace_valid("ws_a\n"));
}

static void test_invalid_input(void)
{
    lk_registry *reg = open_new(NULL);
    ASSERT_NOT_NULL(reg);
    char raw[LK_KEY_STR_BYTES];
    lk_key_record rec;
    lk_error err;
    ASSERT_RC(lk_registry_create_key(reg, "acme", "k", "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_EWORKSPACE);
    ASSERT_RC(lk_registry_create_key(reg, "ws_A", "k", "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_EWORKSPACE);
    ASSERT_RC(lk_registry_create_key(reg, NULL, "k", "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_EWORKSPACE);

    char longname[LK_KEY_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname);
    longname[LK_KEY_NAME_MAX] = '\0';
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", longname, "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_OK);
    longname[LK_KEY_NAME_MAX] = 'n';
    longname[LK_KEY_NAME_MAX + 1] = '\0';
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", longname, "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_EINVAL);
    static const char *const bad_names[] = {
        "", "tab\there", "new\nline", "del\x7f", "\xc3", "\xc0\xaf",
        "\xed\xa0\x80", "c1\xc2\x85", "\xff",
    };
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        ASSERT_RC(lk_registry_create_key(reg, "ws_a", bad_names[i],
                                         "realtime:publish", LK_ENV_LIVE, raw,
                                         &rec, &err), LK_EINVAL);
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", NULL, "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_EINVAL);
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", "caf\xc3\xa9 \xe2\x9c\x93",
                                     "realtime:publish", LK_ENV_LIVE, raw, &rec,
                                     &err), LK_OK);

    ASSERT_RC(lk_registry_create_key(reg, "ws_a", "k", "realtime:teleport",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_ESCOPE);
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", "k", "", LK_ENV_LIVE, raw,
                                     &rec, &err), LK_ESCOPE);
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", "k", NULL, LK_ENV_LIVE, raw,
                                     &rec, &err), LK_ESCOPE);
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", "k", "realtime:publish",
                                     (lk_env)7, raw, &rec, &err), LK_EINVAL);
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", "k", "realtime:publish",
                                     LK_ENV_LIVE, NULL, &rec, &err), LK_EINVAL);

    size_t n;
    lk_key_record *recs;
    ASSERT_RC(lk_registry_list(reg, NULL, &recs, &n, &err), LK_OK);
    ASSERT_EQ(n, 2);
    lk_free(recs);
    OPENSSL_cleanse(raw, sizeof raw);
    lk_registry_close(reg);
}

static void test_unknown_kid(void)
{
    lk_registry *reg = open_new(NULL);
    ASSERT_NOT_NULL(reg);
    lk_key_record got;
    lk_error err;
    ASSERT_RC(lk_registry_get(reg, "0123456789abcdef", &got, &err), LK_ENOTFOUND);
    ASSERT_EQ(err.code, LK_ENOTFOUND);
    ASSERT_RC(lk_registry_get(reg, "0123456789ABCDEF", &got, &err), LK_EINVAL);
    ASSERT_RC(lk_registry_get(reg, "0123456789abcde", &got, &err), LK_EINVAL);
    ASSERT_RC(lk_registry_get(reg, "0123456789abcdef0", &got, &err), LK_EINVAL);
    ASSERT_RC(lk_registry_get(reg, "", &got, &err), LK_EINVAL);
    ASSERT_RC(lk_registry_get(reg, NULL, &got, &err), LK_EINVAL);
    ASSERT_RC(lk_registry_get(reg, "x' OR '1'='1", &got, &err), LK_EINVAL);

    /* A pasted API key in place of a kid is never echoed back. */
    char raw[LK_KEY_STR_BYTES];
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", "k", "realtime:publish",
                                     LK_ENV_LIVE, raw, NULL, &err), LK_OK);
    ASSERT_RC(lk_registry_revoke(reg, raw, &err), LK_EINVAL);
    ASSERT_TRUE(strstr(err.message, raw + 25) == NULL);
    ASSERT_RC(lk_registry_get(reg, raw, &got, &err), LK_EINVAL);
    ASSERT_TRUE(strstr(err.message, raw + 25) == NULL);
    OPENSSL_cleanse(raw, sizeof raw);
    lk_registry_close(reg);
}

static void test_file_mode(void)
{
    mode_t old = umask(0);
    const char *path;
    lk_registry *reg = open_new(&path);
    umask(old);
    ASSERT_NOT_NULL(reg);
    char raw[LK_KEY_STR_BYTES];
    lk_error err;
    ASSERT_RC(lk_registry_create_key(reg, "ws_a", "k", "realtime:publish",
                                     LK_ENV_LIVE, raw, NULL, &err), LK_OK);
    OPENSSL_cleanse(raw, sizeof raw);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    char side[160];
    snprintf(side, sizeof side, "%s-wal", path);
    ASSERT_EQ(stat(side, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    lk_registry_close(reg);

    /* Journal mode is WAL, persistently. */
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *q;
    ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    ASSERT_STREQ((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void test_version(void)
{
    const char *path;
    lk_registry *a = open_new(&path);
    ASSERT_NOT_NULL(a);
    lk_registry *b = NULL;
    lk_error err;
    ASSERT_RC(lk_registry_open(path, &b, &err), LK_OK);

    uint64_t v0, v1, v2, v3, v4;
    ASSERT_RC(lk_registry_version(a, &v0, &err), LK_OK);
    ASSERT_RC(lk_registry_version(a, &v1, &err), LK_OK);
    ASSERT_EQ(v1, v0);

    char raw[LK_KEY_STR_BYTES];
    lk_key_record rec;
    ASSERT_RC(lk_registry_create_key(a, "ws_a", "k", "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_OK);
    OPENSSL_cleanse(raw, sizeof raw);
    ASSERT_RC(lk_registry_version(a, &v1, &err), LK_OK);
    ASSERT_NE(v1, v0);

    /* Another handle's commit is seen by the first. */
    ASSERT_RC(lk_registry_version(b, &v2, &err), LK_OK);
    ASSERT_RC(lk_registry_revoke(b, rec.kid, &err), LK_OK);
    ASSERT_RC(lk_registry_version(a, &v3, &err), LK_OK);
    ASSERT_NE(v3, v1);
    ASSERT_RC(lk_registry_version(a, &v4, &err), LK_OK);
    ASSERT_EQ(v4, v3);

    lk_key_record got;
    ASSERT_RC(lk_registry_get(a, rec.kid, &got, &err), LK_OK);
    ASSERT_EQ(got.status, LK_KEY_REVOKED);

    /* A refused write changes nothing. */
    ASSERT_RC(lk_registry_rotate(a, rec.kid, raw, NULL, &err), LK_EKEY_REVOKED);
    ASSERT_RC(lk_registry_version(a, &v4, &err), LK_OK);
    ASSERT_EQ(v4, v3);

    /* Polling is cheap enough for a 100 ms timer with a wide margin. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 10000; i++)
        ASSERT_RC(lk_registry_version(a, &v4, &err), LK_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
                 (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 / 10000;
    printf("     lk_registry_version: %.2f us/call\n", us);
    ASSERT_TRUE(us < 1000.0);
    ASSERT_EQ(v4, v3);

    lk_registry_close(b);
    lk_registry_close(a);
}

static void test_reopen_persists(void)
{
    const char *path;
    lk_registry *reg = open_new(&path);
    ASSERT_NOT_NULL(reg);
    char raw[LK_KEY_STR_BYTES];
    lk_key_record rec, got;
    lk_error err;
    ASSERT_RC(lk_registry_create_key(reg, "ws_keep", "persisted", "realtime:*",
                                     LK_ENV_SBX, raw, &rec, &err), LK_OK);
    OPENSSL_cleanse(raw, sizeof raw);
    ASSERT_RC(lk_registry_touch(reg, rec.kid, 1234567890, &err), LK_OK);
    lk_registry_close(reg);

    ASSERT_RC(lk_registry_open(path, &reg, &err), LK_OK);
    ASSERT_RC(lk_registry_get(reg, rec.kid, &got, &err), LK_OK);
    ASSERT_STREQ(got.workspace, "ws_keep");
    ASSERT_STREQ(got.name, "persisted");
    ASSERT_EQ(got.env, LK_ENV_SBX);
    ASSERT_EQ(got.last_used_at, 1234567890);
    ASSERT_TRUE(memcmp(got.pubkey, rec.pubkey, LK_PUBKEY_BYTES) == 0);
    /* The workspace's env survives too. */
    ASSERT_RC(lk_registry_create_key(reg, "ws_keep", "x", "realtime:*",
                                     LK_ENV_LIVE, raw, NULL, &err), LK_EWORKSPACE);
    lk_registry_close(reg);
}

static void test_schema_checks(void)
{
    const char *path;
    lk_registry *reg = open_new(&path);
    ASSERT_NOT_NULL(reg);
    lk_registry_close(reg);
    ASSERT_EQ(raw_sql(path, "PRAGMA user_version = 99"), SQLITE_OK);
    lk_error err;
    reg = (lk_registry *)1;
    ASSERT_RC(lk_registry_open(path, &reg, &err), LK_EDB);
    ASSERT_NULL(reg);
    ASSERT_TRUE(strstr(err.message, "newer") != NULL);
    ASSERT_TRUE(strstr(err.message, "99") != NULL);

    /* Someone else's SQLite database is not migrated into a registry. */
    path = new_db_path();
    ASSERT_EQ(raw_sql(path, "CREATE TABLE notes (body TEXT)"), SQLITE_OK);
    ASSERT_RC(lk_registry_open(path, &reg, &err), LK_EDB);
    ASSERT_TRUE(strstr(err.message, "not a latchkey key registry") != NULL);

    /* Nor is a file that is not a database at all. */
    path = new_db_path();
    FILE *f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    for (int i = 0; i < 200; i++)
        fputs("this is not a database. ", f);
    fclose(f);
    ASSERT_RC(lk_registry_open(path, &reg, &err), LK_EDB);
    ASSERT_NULL(reg);

    char dir_path[128];
    snprintf(dir_path, sizeof dir_path, "%s/no/such/dir.db", tmpdir);
    ASSERT_RC(lk_registry_open(dir_path, &reg, &err), LK_EIO);
    ASSERT_NULL(reg);
    ASSERT_RC(lk_registry_open("", &reg, &err), LK_EINVAL);
    lk_registry_close(NULL);
}

/* Several processes opening a brand-new file at once migrate it once and
 * all their writes land (WAL plus the busy timeout serialise them). */
static void test_concurrent_processes(void)
{
    const char *path = new_db_path();
    enum { PROCS = 4, KEYS_EACH = 5 };
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        ASSERT_TRUE(pids[i] >= 0);
        if (pids[i] == 0) {
            lk_registry *reg = NULL;
            char raw[LK_KEY_STR_BYTES];
            lk_error cerr;
            int ok = lk_registry_open(path, &reg, &cerr) == LK_OK;
            for (int k = 0; ok && k < KEYS_EACH; k++)
                ok = lk_registry_create_key(reg, "ws_race", "k", "realtime:publish",
                                            LK_ENV_LIVE, raw, NULL, &cerr) == LK_OK;
            if (!ok)
                fprintf(stderr, "child %d: %s\n", i, cerr.message);
            OPENSSL_cleanse(raw, sizeof raw);
            lk_registry_close(reg);
            _exit(ok ? 0 : 1);
        }
    }
    for (int i = 0; i < PROCS; i++) {
        int status = -1;
        ASSERT_EQ(waitpid(pids[i], &status, 0), pids[i]);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
    }
    lk_registry *reg = NULL;
    lk_error err;
    ASSERT_RC(lk_registry_open(path, &reg, &err), LK_OK);
    lk_key_record *recs;
    size_t n;
    ASSERT_RC(lk_registry_list(reg, "ws_race", &recs, &n, &err), LK_OK);
    ASSERT_EQ(n, PROCS * KEYS_EACH);
    lk_free(recs);
    lk_registry_close(reg);
}

static int read_all(const char *path, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *grown = realloc(*buf, cap);
            if (!grown) {
                fclose(f);
                return -1;
            }
            *buf = grown;
        }
        size_t got = fread(*buf + *len, 1, cap - *len, f);
        if (got == 0)
            break;
        *len += got;
    }
    fclose(f);
    return 0;
}

static int contains(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return 1;
    return 0;
}

static void test_no_secret_in_file(void)
{
    const char *path;
    lk_registry *reg = open_new(&path);
    ASSERT_NOT_NULL(reg);
    char raws[3][LK_KEY_STR_BYTES];
    lk_key_record rec;
    lk_error err;
    ASSERT_RC(lk_registry_create_key(reg, "ws_s", "a", "realtime:publish",
                                     LK_ENV_LIVE, raws[0], &rec, &err), LK_OK);
    ASSERT_RC(lk_registry_create_key(reg, "ws_s", "b", "realtime:subscribe",
                                     LK_ENV_LIVE, raws[1], NULL, &err), LK_OK);
    ASSERT_RC(lk_registry_rotate(reg, rec.kid, raws[2], NULL, &err), LK_OK);

    /* Look in the WAL before the checkpoint and in the main file after. */
    static const char *const suffixes[] = {"-wal", ""};
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            lk_registry_close(reg);
        char file[160];
        snprintf(file, sizeof file, "%s%s", path, suffixes[pass]);
        uint8_t *bytes;
        size_t len;
        ASSERT_EQ(read_all(file, &bytes, &len), 0);
        ASSERT_TRUE(len > 0);
        for (int k = 0; k < 3; k++) {
            /* lk_<env>_<kid>_<secret>_<crc>: the secret follows the kid. */
            const char *secret = strchr(strchr(raws[k] + 3, '_') + 1, '_') + 1;
            uint8_t scalar[LK_SECRET_BYTES];
            ASSERT_EQ(lk__hex_decode(secret, LK_SECRET_BYTES, scalar), 0);
            ASSERT_FALSE(contains(bytes, len, secret, 2 * LK_SECRET_BYTES));
            ASSERT_FALSE(contains(bytes, len, scalar, LK_SECRET_BYTES));
            ASSERT_FALSE(contains(bytes, len, raws[k], strlen(raws[k])));
            /* The kid is stored, which shows the search itself works. */
            ASSERT_TRUE(contains(bytes, len, raws[k] + 8, LK_KID_HEX));
            OPENSSL_cleanse(scalar, sizeof scalar);
        }
        free(bytes);
    }
    OPENSSL_cleanse(raws, sizeof raws);
}

/* A symbolic link as the file itself is refused, and a dangling one does
 * not make us create its target. */
static void test_symlink_refused(void)
{
    const char *path;
    lk_registry *reg = open_new(&path);
    ASSERT_NOT_NULL(reg);
    lk_registry_close(reg);
    char real[192];
    snprintf(real, sizeof real, "%s", path);
    const char *link = in_tmp("link.db");
    ASSERT_EQ(symlink(real, link), 0);
    ASSERT_REFUSED(link, LK_EIO, "is a symbolic link");

    const char *dangling = in_tmp("dangling.db");
    ASSERT_EQ(symlink(in_tmp("target.db"), dangling), 0);
    ASSERT_REFUSED(dangling, LK_EIO, "is a symbolic link");
    ASSERT_EQ(file_mode(in_tmp("target.db")), (mode_t)-1);

    /* Still refused when reached through a directory link that is fine. */
    ASSERT_EQ(make_dir("flreal", 0700), 0);
    ASSERT_EQ(symlink(real, in_tmp("flreal/reg.db")), 0);
    ASSERT_EQ(symlink(in_tmp("flreal"), in_tmp("fllink")), 0);
    ASSERT_REFUSED(in_tmp("fllink/reg.db"), LK_EIO, "is a symbolic link");
}

/* Anyone else able to write the file could add a key. Such a file is
 * refused and left as it is, never silently chmod-ed. */
static void test_writable_file_refused(void)
{
    const char *path;
    lk_registry *reg = open_new(&path);
    ASSERT_NOT_NULL(reg);
    lk_registry_close(reg);
    ASSERT_EQ(chmod(path, 0620), 0);
    ASSERT_REFUSED(path, LK_EIO, "writable by group or others");
    ASSERT_EQ(chmod(path, 0602), 0);
    ASSERT_REFUSED(path, LK_EIO, "chmod 600");
    ASSERT_EQ(file_mode(path), 0602);
    /* Readable is fine: the registry holds only public keys. */
    ASSERT_EQ(chmod(path, 0644), 0);
    lk_error err;
    ASSERT_RC(lk_registry_open(path, &reg, &err), LK_OK);
    lk_registry_close(reg);

    /* Pre-created by someone else before the first open: not adopted. */
    path = new_db_path();
    mode_t old = umask(0);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0666);
    umask(old);
    ASSERT_TRUE(fd >= 0);
    close(fd);
    ASSERT_REFUSED(path, LK_EIO, "writable by group or others");
    ASSERT_EQ(file_mode(path), 0666);
}

static void test_non_regular_refused(void)
{
    const char *path = new_db_path();
    ASSERT_EQ(mkdir(path, 0700), 0);
    ASSERT_REFUSED(path, LK_EIO, "not a regular file (it is a directory)");
    path = new_db_path();
    ASSERT_EQ(mkfifo(path, 0600), 0);
    ASSERT_REFUSED(path, LK_EIO, "not a regular file (it is a fifo)");
}

static uid_t nobody_uid(void)
{
    struct passwd *pw = getpwnam("nobody");
    return pw ? pw->pw_uid : 65534;
}

/* Needs root to give a file away; skipped (and said so) otherwise. */
static void test_other_owner_refused(void)
{
    if (geteuid() != 0) {
        printf("skip test_other_owner_refused: needs root to chown to nobody\n");
        return;
    }
    uid_t nobody = nobody_uid();
    const char *path;
    lk_registry *reg = open_new(&path);
    ASSERT_NOT_NULL(reg);
    lk_registry_close(reg);
    ASSERT_EQ(chown(path, nobody, (gid_t)-1), 0);
    ASSERT_REFUSED(path, LK_EIO, "is owned by uid");

    /* The owner of the directory could swap the file. */
    ASSERT_EQ(make_dir("theirs", 0755), 0);
    ASSERT_EQ(chown(in_tmp("theirs"), nobody, (gid_t)-1), 0);
    ASSERT_REFUSED(in_tmp("theirs/reg.db"), LK_EIO, "theirs is owned by uid");
    ASSERT_EQ(file_mode(in_tmp("theirs/reg.db")), (mode_t)-1);

    /* So could a -wal file of theirs, which SQLite would replay. */
    reg = open_new(&path);
    ASSERT_NOT_NULL(reg);
    lk_registry_close(reg);
    char wal[192];
    snprintf(wal, sizeof wal, "%s-wal", path);
    int fd = open(wal, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(fchown(fd, nobody, (gid_t)-1), 0);
    close(fd);
    ASSERT_REFUSED(path, LK_EIO, "-wal is owned by uid");
}

/* SQLite gives the -wal and -shm files the main file's mode, so a new
 * registry's are 0600 whatever the umask. */
static void test_sidecar_modes(void)
{
    static const mode_t umasks[] = {0, 0277};
    for (size_t i = 0; i < sizeof umasks / sizeof *umasks; i++) {
        mode_t old = umask(umasks[i]);
        const char *path;
        lk_registry *reg = open_new(&path);
        umask(old);
        ASSERT_NOT_NULL(reg);
        char raw[LK_KEY_STR_BYTES];
        lk_error err;
        ASSERT_RC(lk_registry_create_key(reg, "ws_m", "k", "realtime:publish",
                                         LK_ENV_LIVE, raw, NULL, &err), LK_OK);
        OPENSSL_cleanse(raw, sizeof raw);
        static const char *const suffixes[] = {"", "-wal", "-shm"};
        for (int s = 0; s < 3; s++) {
            char file[192];
            snprintf(file, sizeof file, "%s%s", path, suffixes[s]);
            struct stat st;
            ASSERT_EQ(lstat(file, &st), 0);
            ASSERT_TRUE(S_ISREG(st.st_mode));
            ASSERT_EQ(st.st_mode & 07777, 0600);
            ASSERT_EQ(st.st_uid, geteuid());
        }
        lk_registry_close(reg);
    }
}

/* A -wal, -shm or -journal file left next to the registry is judged like
 * the registry itself before SQLite reads (and replays) it. */
static void test_leftover_sidecar_refused(void)
{
    const char *path;
    lk_registry *reg = open_new(&path);
    ASSERT_NOT_NULL(reg);
    lk_registry_close(reg);
    static const char *const suffixes[] = {"-wal", "-shm", "-journal"};
    for (int s = 0; s < 3; s++) {
        char side[192];
        snprintf(side, sizeof side, "%s%s", path, suffixes[s]);
        ASSERT_EQ(file_mode(side), (mode_t)-1);
        mode_t old = umask(0);
        int fd = open(side, O_WRONLY | O_CREAT | O_EXCL, 0666);
        umask(old);
        ASSERT_TRUE(fd >= 0);
        close(fd);
        ASSERT_REFUSED(path, LK_EIO, suffixes[s]);
        ASSERT_EQ(unlink(side), 0);
        ASSERT_EQ(symlink("/dev/null", side), 0);
        ASSERT_REFUSED(path, LK_EIO, "is a symbolic link");
        ASSERT_EQ(unlink(side), 0);
    }
    lk_error err;
    ASSERT_RC(lk_registry_open(path, &reg, &err), LK_OK);
    lk_registry_close(reg);
}

/* Someone able to change a directory on the way could swap the registry
 * between our checks and SQLite opening it, or plant its -wal file. */
static void test_unsafe_directory_refused(void)
{
    ASSERT_EQ(make_dir("gw", 0770), 0);
    ASSERT_REFUSED(in_tmp("gw/reg.db"), LK_EIO, "gw is writable by group or others");
    ASSERT_EQ(file_mode(in_tmp("gw/reg.db")), (mode_t)-1);

    /* Sticky is not enough for the registry's own directory... */
    ASSERT_EQ(make_dir("sticky", 01777), 0);
    ASSERT_REFUSED(in_tmp("sticky/reg.db"), LK_EIO, "sticky is writable");

    /* ...but is above it, as with /tmp: nobody else can rename our entry. */
    ASSERT_EQ(make_dir("sticky/mine", 0700), 0);
    lk_registry *reg = NULL;
    lk_error err;
    ASSERT_RC(lk_registry_open(in_tmp("sticky/mine/reg.db"), &reg, &err), LK_OK);
    lk_registry_close(reg);

    ASSERT_EQ(make_dir("open", 0777), 0);
    ASSERT_EQ(make_dir("open/mine", 0700), 0);
    ASSERT_REFUSED(in_tmp("open/mine/reg.db"), LK_EIO, "open is writable");
    ASSERT_REFUSED(in_tmp("open/mine/..//mine//reg.db"), LK_EIO, "open is writable");
    ASSERT_REFUSED(in_tmp("sticky/mine/../../gw/reg.db"), LK_EIO, "gw is writable");

    /* A relative path is judged from the working directory. */
    int here = open(".", O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(here >= 0);
    ASSERT_EQ(chdir(in_tmp("gw")), 0);
    reg = (lk_registry *)1;
    int rc = lk_registry_open("reg.db", &reg, &err);
    ASSERT_EQ(fchdir(here), 0);
    close(here);
    ASSERT_RC(rc, LK_EIO);
    ASSERT_NULL(reg);
    ASSERT_TRUE(strstr(err.message, "gw is writable") != NULL);
}

/* Links in the directory part are resolved, as systemd's StateDirectory
 * with DynamicUser (/var/lib/x -> private/x) and symlinked homes need:
 * the checks and SQLite then use the real directory. */
static void test_symlinked_directory_accepted(void)
{
    ASSERT_EQ(make_dir("realdir", 0700), 0);
    ASSERT_EQ(symlink(in_tmp("realdir"), in_tmp("linkdir")), 0);
    lk_registry *reg = NULL;
    lk_error err = {0};
    int rc = lk_registry_open(in_tmp("linkdir/reg.db"), &reg, &err);
    if (rc != LK_OK)
        fprintf(stderr, "open: %s\n", err.message);
    ASSERT_RC(rc, LK_OK);
    char raw[LK_KEY_STR_BYTES];
    lk_key_record rec;
    ASSERT_RC(lk_registry_create_key(reg, "ws_link", "k", "realtime:publish",
                                     LK_ENV_LIVE, raw, &rec, &err), LK_OK);
    OPENSSL_cleanse(raw, sizeof raw);
    /* Everything landed in the real directory, 0600, and the link is
     * still a link. */
    struct stat st;
    ASSERT_EQ(lstat(in_tmp("linkdir"), &st), 0);
    ASSERT_TRUE(S_ISLNK(st.st_mode));
    ASSERT_EQ(file_mode(in_tmp("realdir/reg.db")), 0600);
    ASSERT_EQ(file_mode(in_tmp("realdir/reg.db-wal")), 0600);
    lk_registry_close(reg);

    /* The same registry, by its real path. */
    ASSERT_RC(lk_registry_open(in_tmp("realdir/reg.db"), &reg, &err), LK_OK);
    lk_key_record got;
    ASSERT_RC(lk_registry_get(reg, rec.kid, &got, &err), LK_OK);
    ASSERT_STREQ(got.workspace, "ws_link");
    lk_registry_close(reg);

    /* A relative link further up, reached from a relative path. */
    ASSERT_EQ(make_dir("realdir/sub", 0700), 0);
    ASSERT_EQ(symlink("realdir", in_tmp("rellink")), 0);
    int here = open(".", O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(here >= 0);
    ASSERT_EQ(chdir(test_dir()), 0);
    reg = NULL;
    rc = lk_registry_open("rellink/sub/reg.db", &reg, &err);
    ASSERT_EQ(fchdir(here), 0);
    close(here);
    ASSERT_RC(rc, LK_OK);
    lk_registry_close(reg);
    ASSERT_EQ(file_mode(in_tmp("realdir/sub/reg.db")), 0600);
}

/* Asserts the last refusal's message names both the given and the
 * resolved path. */
static void assert_names_both(const char *given, const char *resolved, const char *why)
{
    lk_registry *reg = (lk_registry *)1;
    lk_error err = {0};
    int rc = lk_registry_open(given, &reg, &err);
    if (rc == LK_OK)
        lk_registry_close(reg);
    ASSERT_RC(rc, LK_EIO);
    ASSERT_NULL(reg);
    if (!strstr(err.message, why) || !strstr(err.message, given) ||
        !strstr(err.message, resolved))
        LK_TEST__FAIL("message \"%s\" does not say \"%s\" about %s and %s",
                      err.message, why, given, resolved);
}

/* A link that leads into a directory someone else can change is refused
 * as if the real path had been given, and nothing is created there. */
static void test_symlink_into_unsafe_directory_refused(void)
{
    char given[192], resolved[192];
    ASSERT_EQ(make_dir("lgw", 0770), 0);
    ASSERT_EQ(symlink(in_tmp("lgw"), in_tmp("lgwlink")), 0);
    ASSERT_REFUSED(in_tmp("lgwlink/reg.db"), LK_EIO, "lgw is writable by group or others");
    snprintf(given, sizeof given, "%s", in_tmp("lgwlink/reg.db"));
    snprintf(resolved, sizeof resolved, "%s", in_tmp("lgw"));
    assert_names_both(given, resolved, "is writable by group or others");
    ASSERT_EQ(file_mode(in_tmp("lgw/reg.db")), (mode_t)-1);

    /* An unsafe directory above the target counts too. */
    ASSERT_EQ(make_dir("lopen", 0777), 0);
    ASSERT_EQ(make_dir("lopen/mine", 0700), 0);
    ASSERT_EQ(symlink(in_tmp("lopen/mine"), in_tmp("lopenlink")), 0);
    ASSERT_REFUSED(in_tmp("lopenlink/reg.db"), LK_EIO, "lopen is writable");
    ASSERT_EQ(file_mode(in_tmp("lopen/mine/reg.db")), (mode_t)-1);

    /* Two long paths overflow the message, which then says it was cut. */
    char longname[128];
    memset(longname, 'x', 120);
    longname[120] = '\0';
    ASSERT_EQ(symlink(in_tmp("lopen/mine"), in_tmp(longname)), 0);
    snprintf(given, sizeof given, "%s/reg.db", in_tmp(longname));
    lk_registry *reg = (lk_registry *)1;
    lk_error err = {0};
    ASSERT_RC(lk_registry_open(given, &reg, &err), LK_EIO);
    ASSERT_NULL(reg);
    ASSERT_EQ(strlen(err.message), (size_t)LK_ERROR_MSG_BYTES - 1);
    ASSERT_STREQ(err.message + LK_ERROR_MSG_BYTES - 4, "...");
    ASSERT_TRUE(strstr(err.message, longname) != NULL);

    if (geteuid() == 0) {
        ASSERT_EQ(make_dir("ltheirs", 0755), 0);
        ASSERT_EQ(chown(in_tmp("ltheirs"), nobody_uid(), (gid_t)-1), 0);
        ASSERT_EQ(symlink(in_tmp("ltheirs"), in_tmp("ltheirslink")), 0);
        ASSERT_REFUSED(in_tmp("ltheirslink/reg.db"), LK_EIO, "ltheirs is owned by uid");
        ASSERT_EQ(file_mode(in_tmp("ltheirs/reg.db")), (mode_t)-1);
    } else {
        printf("skip foreign-owned link target: needs root to chown to nobody\n");
    }

    /* File problems behind a good link name both paths as well. */
    ASSERT_EQ(make_dir("lfile", 0700), 0);
    ASSERT_EQ(symlink(in_tmp("lfile"), in_tmp("lfilelink")), 0);
    reg = NULL;
    ASSERT_RC(lk_registry_open(in_tmp("lfilelink/reg.db"), &reg, &err), LK_OK);
    lk_registry_close(reg);
    ASSERT_EQ(chmod(in_tmp("lfile/reg.db"), 0620), 0);
    snprintf(given, sizeof given, "%s", in_tmp("lfilelink/reg.db"));
    snprintf(resolved, sizeof resolved, "%s", in_tmp("lfile/reg.db"));
    assert_names_both(given, resolved, "writable by group or others");
    ASSERT_EQ(file_mode(resolved), 0620);
}

LK_TEST_MAIN("registry",
             LK_TEST(test_workspace_valid),
             LK_TEST(test_create_and_get),
             LK_TEST(test_list),
             LK_TEST(test_revoke),
             LK_TEST(test_rotate),
             LK_TEST(test_touch),
             LK_TEST(test_env_mismatch),
             LK_TEST(test_invalid_input),
             LK_TEST(test_unknown_kid),
             LK_TEST(test_file_mode),
             LK_TEST(test_version),
             LK_TEST(test_reopen_persists),
             LK_TEST(test_schema_checks),
             LK_TEST(test_concurrent_processes),
             LK_TEST(test_no_secret_in_file),
             LK_TEST(test_symlink_refused),
             LK_TEST(test_writable_file_refused),
             LK_TEST(test_non_regular_refused),
             LK_TEST(test_other_owner_refused),
             LK_TEST(test_sidecar_modes),
             LK_TEST(test_leftover_sidecar_refused),
             LK_TEST(test_unsafe_directory_refused),
             LK_TEST(test_symlinked_directory_accepted),
             LK_TEST(test_symlink_into_unsafe_directory_refused))
