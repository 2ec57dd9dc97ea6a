/*
 * latchkey/registry.h - the embedded key registry (SPEC section 2): one
 * SQLite file holding, per key, its kid, workspace, env, name, scopes, public
 * key (never the secret), status and times.
 *
 * Ownership: lk_registry_open returns a handle the caller closes with
 * lk_registry_close. lk_registry_list returns an array the caller frees
 * with lk_free. Records are plain structs copied into caller memory.
 *
 * Thread safety: a handle is used by one thread at a time. Several handles
 * (threads or processes, e.g. the CLI and a running broker) may open the
 * same file: WAL mode with a busy timeout serialises writers.
 */
#ifndef LATCHKEY_REGISTRY_H
#define LATCHKEY_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/cap.h"
#include "latchkey/error.h"
#include "latchkey/key.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LK_WORKSPACE_MAX 67   /* "ws_" + 64 */
#define LK_KEY_NAME_MAX 128

typedef enum lk_key_status {
    LK_KEY_ACTIVE = 0,
    LK_KEY_REVOKED = 1
} lk_key_status;

typedef struct lk_key_record {
    char kid[LK_KID_BYTES];
    char workspace[LK_WORKSPACE_MAX + 1];
    lk_env env;
    char name[LK_KEY_NAME_MAX + 1];
    char scopes[LK_SCOPES_MAX + 1];  /* canonical comma-separated list */
    uint32_t scope_mask;             /* LK_ACT_* bits the scopes cover */
    uint8_t pubkey[LK_PUBKEY_BYTES];
    lk_key_status status;
    int64_t created_at;              /* unix seconds */
    int64_t revoked_at;              /* 0 = not revoked */
    int64_t last_used_at;            /* 0 = never */
} lk_key_record;

typedef struct lk_registry lk_registry;

/* 1 if `ws` is "ws_" followed by 1-64 of [a-z0-9_-]. */
int lk_workspace_valid(const char *ws);

/* Opens (creating if missing, mode 0600) and migrates the registry at
 * `path`. On failure *out is NULL and err says why (unreadable file, not a
 * registry, newer schema...). Refused: a directory on the path (after its
 * symbolic links are resolved) that someone other than root or us could
 * change, a registry or -wal/-shm/-journal file owned by another uid or
 * writable by group or others, and a registry file that is itself a
 * symbolic link. */
int lk_registry_open(const char *path, lk_registry **out, lk_error *err);
void lk_registry_close(lk_registry *reg);

/* Creates a key in `workspace` (validated) with `scopes` (lk_scopes_parse
 * syntax). The workspace's env is fixed by its first key: a mismatch is
 * LK_EWORKSPACE. Writes the raw key, shown once, into raw_out (wipe it
 * after use) and the stored record into *rec (may be NULL). */
int lk_registry_create_key(lk_registry *reg, const char *workspace,
                           const char *name, const char *scopes, lk_env env,
                           char raw_out[LK_KEY_STR_BYTES], lk_key_record *rec,
                           lk_error *err);

/* LK_ENOTFOUND if no such kid. */
int lk_registry_get(lk_registry *reg, const char *kid, lk_key_record *out,
                    lk_error *err);

/* All keys, or those of one workspace when `workspace` is non-NULL, oldest
 * first. Caller frees *out with lk_free (NULL when *n == 0). */
int lk_registry_list(lk_registry *reg, const char *workspace,
                     lk_key_record **out, size_t *n, lk_error *err);

/* Marks a key revoked (idempotent; revoked_at keeps the first time). */
int lk_registry_revoke(lk_registry *reg, const char *kid, lk_error *err);

/* Creates a new key with the old one's workspace, env, name and scopes; the
 * old key stays active. LK_EKEY_REVOKED if the old key is revoked. */
int lk_registry_rotate(lk_registry *reg, const char *kid,
                       char raw_out[LK_KEY_STR_BYTES], lk_key_record *rec,
                       lk_error *err);

/* Records a use of the key at `when` (unix seconds). */
int lk_registry_touch(lk_registry *reg, const char *kid, int64_t when,
                      lk_error *err);

/* A number that changes whenever any connection (this one or another
 * process) commits a change to the keys. Costs no disk read when nothing
 * changed; meant to be polled several times a second. */
int lk_registry_version(lk_registry *reg, uint64_t *out, lk_error *err);

#ifdef __cplusplus
}
#endif
#endif
