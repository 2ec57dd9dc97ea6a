/*
 * keystore.h - the broker's in-memory view of the key registry: kid ->
 * public key (with its cached verify context), status, scope mask and
 * workspace. Token verification resolves kids here, never on disk.
 *
 * lk_keystore_poll asks the registry for its version (cheap) and reloads
 * the whole table only when it changed, reusing the lk_pubkey objects of
 * keys that did not change. The broker polls every 250 ms, so keys
 * created, rotated or revoked by the CLI take effect within a second.
 *
 * Ownership: lk_keystore_open returns a store the caller destroys with
 * lk_keystore_destroy (NULL is a no-op). Pointers handed out by the
 * resolver are valid until the next successful reload.
 * Thread safety: one thread (the service loop).
 */
#ifndef LK_BROKER_KEYSTORE_H
#define LK_BROKER_KEYSTORE_H

#include <stddef.h>

#include "latchkey/latchkey.h"

typedef struct lk_keystore lk_keystore;

/* Opens the registry at `path`, which must already exist and be readable
 * (the broker never creates one), and loads every key. */
int lk_keystore_open(const char *path, lk_keystore **out, lk_error *err);
void lk_keystore_destroy(lk_keystore *ks);

/* Reloads when the registry version moved. *changed is set to 1 after a
 * reload. On error the previous table stays in use. */
int lk_keystore_poll(lk_keystore *ks, int *changed, lk_error *err);

/* An lk_key_resolver over the table; `ud` is the lk_keystore. */
int lk_keystore_resolve(void *ud, const char *kid, lk_key_info *info);

/* 1 if `kid` is present and active, 0 if revoked or unknown. */
int lk_keystore_active(const lk_keystore *ks, const char *kid);

size_t lk_keystore_count(const lk_keystore *ks);

/* Notes that a token of `kid` was accepted. The registry's last-used time
 * is written in batches by lk_keystore_flush_used, not on every connect. */
void lk_keystore_mark_used(lk_keystore *ks, const char *kid);
/* Records `now` as the last use of every key marked since the last flush.
 * Returns how many keys were written, or a negative lk_err. */
int lk_keystore_flush_used(lk_keystore *ks, int64_t now, lk_error *err);

#endif
