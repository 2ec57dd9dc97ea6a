/*
 * apikey.h - checks the API keys that backends present to the HTTP API
 * (Authorization: Bearer lk_...), with a bounded cache so that a key used
 * again costs one SHA-256 and no elliptic-curve work.
 *
 * A first use runs, in order: length and prefix, the key id looked up in
 * the broker's key table (unknown or revoked: refused before any
 * crypto), lk_key_parse (format, CRC-32, scalar range, then the public
 * point d*G), the registry record (for name, scopes and the stored public
 * key) and a constant-time comparison of the derived public key with the
 * stored one. A verified key is cached under SHA-256 of the presented
 * string: the raw string is never stored. The entry keeps the parsed
 * signing key, which POST /v1/tokens needs; it is wiped when the entry is
 * evicted, idle for LK_APIKEY_IDLE_SECS, dropped because its key was
 * revoked (lk_apikeys_purge, and a status check on every hit) or when the
 * cache is destroyed.
 *
 * Every refusal looks the same to the client (401 "Invalid credentials");
 * the lk_error message says which check failed, for the broker's own log,
 * and never contains the key.
 *
 * Ownership: lk_apikeys_open returns a cache the caller destroys with
 * lk_apikeys_destroy (NULL is a no-op). A verified lk_apikey is borrowed
 * from the cache: valid until the next call on the same cache.
 * Thread safety: one thread (the service loop).
 */
#ifndef LK_BROKER_APIKEY_H
#define LK_BROKER_APIKEY_H

#include <stddef.h>
#include <stdint.h>

#include "keystore.h"
#include "latchkey/latchkey.h"

#define LK_APIKEY_CACHE_SLOTS 1024    /* 4-way sets */
#define LK_APIKEY_IDLE_SECS 600

typedef struct lk_apikey {
    char kid[LK_KID_BYTES];
    char workspace[LK_WORKSPACE_MAX + 1];
    lk_env env;
    char name[LK_KEY_NAME_MAX + 1];
    char scopes[LK_SCOPES_MAX + 1];   /* canonical comma-separated list */
    uint32_t scope_mask;              /* LK_ACT_* bits */
    lk_key *key;                      /* the signing key (borrowed) */
} lk_apikey;

typedef struct lk_apikeys lk_apikeys;

/* Opens a registry handle of its own on `db_path` (read on cache misses
 * only). On failure *out is NULL and err says why. */
int lk_apikeys_open(const char *db_path, lk_apikeys **out, lk_error *err);
void lk_apikeys_destroy(lk_apikeys *c);

/* Verifies `presented` (len bytes, not NUL-terminated). LK_OK with *out
 * (borrowed) and *cached set to 1 when no crypto was needed; otherwise an
 * error (LK_EKEY_FORMAT, LK_EKEY_CHECKSUM, LK_EKEY_RANGE, LK_ENOTFOUND,
 * LK_EKEY_REVOKED, LK_ETOKEN_SIGNATURE for a secret that does not match,
 * LK_EDB, LK_ENOMEM...) with *out NULL. `now_s` is unix seconds. */
__attribute__((warn_unused_result))
int lk_apikeys_verify(lk_apikeys *c, const lk_keystore *ks, const char *presented,
                      size_t len, int64_t now_s, const lk_apikey **out,
                      int *cached, lk_error *err);

/* Drops (and wipes) every entry whose key the table no longer lists as
 * active, and entries idle too long. Call after the key table reloads. */
void lk_apikeys_purge(lk_apikeys *c, const lk_keystore *ks, int64_t now_s);

/* Entries held. */
size_t lk_apikeys_count(const lk_apikeys *c);

#endif
