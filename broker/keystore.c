/* keystore.c - open-addressing table of registry keys, reloaded when the
 * registry version changes. */
#include "keystore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct ks_entry {
    char kid[LK_KID_BYTES];          /* "" = empty slot */
    char workspace[LK_WORKSPACE_MAX + 1];
    uint8_t raw[LK_PUBKEY_BYTES];
    uint32_t scopes;
    int revoked;
    int used;                        /* accepted since the last flush */
    lk_pubkey *pub;
} ks_entry;

typedef struct ks_table {
    ks_entry *slots;
    size_t cap;                      /* power of two, > 2 * count */
    size_t count;
} ks_table;

struct lk_keystore {
    lk_registry *reg;
    uint64_t version;
    ks_table t;
};

static size_t kid_hash(const char *kid)
{
    /* kids are random hex: their own bytes are a fine hash */
    size_t h = 0;
    for (int i = 0; i < LK_KID_HEX && kid[i]; i++)
        h = h * 31 + (unsigned char)kid[i];
    return h;
}

static ks_entry *table_find(const ks_table *t, const char *kid)
{
    if (!t->cap)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = kid_hash(kid) & mask, n = 0; n < t->cap; i = (i + 1) & mask, n++) {
        if (!t->slots[i].kid[0])
            return NULL;
        if (strcmp(t->slots[i].kid, kid) == 0)
            return &t->slots[i];
    }
    return NULL;
}

static void table_free(ks_table *t)
{
    for (size_t i = 0; i < t->cap; i++)
        lk_pubkey_destroy(t->slots[i].pub);
    free(t->slots);
    t->slots = NULL;
    t->cap = t->count = 0;
}

/* Builds a new table from registry records, moving unchanged public keys
 * out of `old` instead of parsing them again. */
static int table_build(ks_table *nt, ks_table *old, const lk_key_record *recs,
                       size_t n, lk_error *err)
{
    size_t cap = 16;
    while (cap < 2 * n + 1)
        cap *= 2;
    nt->slots = calloc(cap, sizeof *nt->slots);
    if (!nt->slots) {
        if (err) {
            err->code = LK_ENOMEM;
            snprintf(err->message, sizeof err->message, "out of memory");
        }
        return LK_ENOMEM;
    }
    nt->cap = cap;
    nt->count = 0;
    for (size_t r = 0; r < n; r++) {
        const lk_key_record *rec = &recs[r];
        if (strlen(rec->kid) != LK_KID_HEX || table_find(nt, rec->kid))
            continue;
        size_t i = kid_hash(rec->kid) & (cap - 1);
        while (nt->slots[i].kid[0])
            i = (i + 1) & (cap - 1);
        ks_entry *e = &nt->slots[i];
        memcpy(e->kid, rec->kid, sizeof e->kid);
        snprintf(e->workspace, sizeof e->workspace, "%s", rec->workspace);
        memcpy(e->raw, rec->pubkey, sizeof e->raw);
        e->scopes = rec->scope_mask;
        e->revoked = rec->status != LK_KEY_ACTIVE;
        ks_entry *prev = table_find(old, rec->kid);
        if (prev)
            e->used = prev->used;
        if (prev && prev->pub && memcmp(prev->raw, e->raw, sizeof e->raw) == 0) {
            e->pub = prev->pub;
            prev->pub = NULL;
        } else if (lk_pubkey_create(e->raw, &e->pub, NULL) != LK_OK) {
            /* An unusable public key verifies nothing; the kid stays
             * known so its tokens are refused rather than unknown. */
            e->pub = NULL;
        }
        nt->count++;
    }
    return LK_OK;
}

static int reload(lk_keystore *ks, lk_error *err)
{
    lk_key_record *recs = NULL;
    size_t n = 0;
    int rc = lk_registry_list(ks->reg, NULL, &recs, &n, err);
    if (rc != LK_OK)
        return rc;
    ks_table nt = {0};
    rc = table_build(&nt, &ks->t, recs, n, err);
    lk_free(recs);
    if (rc != LK_OK)
        return rc;
    table_free(&ks->t);
    ks->t = nt;
    return LK_OK;
}

int lk_keystore_open(const char *path, lk_keystore **out, lk_error *err)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0) {
        int e = errno;
        if (err) {
            err->code = LK_EIO;
            snprintf(err->message, sizeof err->message,
                     "key registry %s: %s", path, strerror(e));
        }
        return LK_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        if (err) {
            err->code = LK_EIO;
            snprintf(err->message, sizeof err->message,
                     "key registry %s: not a regular file", path);
        }
        return LK_EIO;
    }
    lk_keystore *ks = calloc(1, sizeof *ks);
    if (!ks)
        return LK_ENOMEM;
    int rc = lk_registry_open(path, &ks->reg, err);
    if (rc == LK_OK)
        rc = lk_registry_version(ks->reg, &ks->version, err);
    if (rc == LK_OK)
        rc = reload(ks, err);
    if (rc != LK_OK) {
        lk_keystore_destroy(ks);
        return rc;
    }
    *out = ks;
    return LK_OK;
}

void lk_keystore_destroy(lk_keystore *ks)
{
    if (!ks)
        return;
    table_free(&ks->t);
    lk_registry_close(ks->reg);
    free(ks);
}

int lk_keystore_poll(lk_keystore *ks, int *changed, lk_error *err)
{
    *changed = 0;
    uint64_t v;
    int rc = lk_registry_version(ks->reg, &v, err);
    if (rc != LK_OK)
        return rc;
    if (v == ks->version)
        return LK_OK;
    rc = reload(ks, err);
    if (rc != LK_OK)
        return rc;
    ks->version = v;
    *changed = 1;
    return LK_OK;
}

int lk_keystore_resolve(void *ud, const char *kid, lk_key_info *info)
{
    lk_keystore *ks = ud;
    ks_entry *e = table_find(&ks->t, kid);
    if (!e || !e->pub)
        return LK_ENOTFOUND;
    info->pubkey = e->pub;
    info->revoked = e->revoked;
    info->scopes = e->scopes;
    info->workspace = e->workspace;
    return LK_OK;
}

int lk_keystore_active(const lk_keystore *ks, const char *kid)
{
    const ks_entry *e = table_find(&ks->t, kid);
    return e && !e->revoked;
}

size_t lk_keystore_count(const lk_keystore *ks)
{
    return ks->t.count;
}

void lk_keystore_mark_used(lk_keystore *ks, const char *kid)
{
    ks_entry *e = kid ? table_find(&ks->t, kid) : NULL;
    if (e)
        e->used = 1;
}

int lk_keystore_flush_used(lk_keystore *ks, int64_t now, lk_error *err)
{
    int n = 0;
    for (size_t i = 0; i < ks->t.cap; i++) {
        ks_entry *e = &ks->t.slots[i];
        if (!e->kid[0] || !e->used)
            continue;
        e->used = 0;
        int rc = lk_registry_touch(ks->reg, e->kid, now, err);
        if (rc != LK_OK && rc != LK_ENOTFOUND)
            return rc;
        n++;
    }
    return n;
}
