/*
 * latchkey/token.h - minting and verifying client tokens (SPEC section 3).
 *
 * A client token is a compact ES256 JWS: header {"alg":"ES256","typ":"JWT",
 * "kid":...}, claims iat, exp, jti, cap, optional sub, nbf, aud.
 *
 * Verification trusts nothing in the token before the header has been
 * checked (alg exactly "ES256", kid known), and performs the ECDSA work
 * with the cached public key of that kid. Check order, mirroring the broker's
 * close codes: size and form, header, kid, signature, times, claims and
 * capability (all -> 4401), then key status and scopes (-> 4403).
 *
 * Ownership: lk_token_mint returns a token the caller frees with lk_free;
 * lk_token_verify returns claims the caller destroys with lk_claims_destroy.
 *
 * Thread safety: minting uses the lk_key's cached context (one thread per
 * key at a time); verification uses the resolved lk_pubkey's context (one
 * thread per pubkey at a time). The only global state is cJSON's parse-error
 * pointer, which every mint and verify overwrites and nothing reads: calls
 * on one thread (such as a broker service loop) are unaffected, while calls
 * from several threads at once race benignly on it and a TSan build may
 * report that.
 */
#ifndef LATCHKEY_TOKEN_H
#define LATCHKEY_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/cap.h"
#include "latchkey/error.h"
#include "latchkey/key.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LK_TOKEN_DEFAULT_TTL 600     /* seconds, mint default */
#define LK_TOKEN_MIN_TTL 1
#define LK_TOKEN_MAX_MINT_TTL 86400  /* mint refuses longer */
#define LK_TOKEN_DEFAULT_MAX_TTL 3600 /* verifier default max exp - iat */
#define LK_TOKEN_SKEW 30             /* seconds of leeway for iat and nbf */
#define LK_TOKEN_MAX_BYTES 8192      /* verifier default size limit */
#define LK_SUB_MAX 128               /* bytes in sub (client id) */
#define LK_JTI_MIN 16                /* chars in jti */

typedef struct lk_mint_opts {
    const char *capability; /* required: capability JSON text */
    int64_t ttl;            /* seconds; 0 = LK_TOKEN_DEFAULT_TTL; 1..86400 */
    const char *client_id;  /* optional `sub`, at most LK_SUB_MAX bytes */
    const char *audience;   /* optional `aud` */
    int64_t now;            /* unix seconds for iat; 0 = current time */
    int64_t nbf;            /* optional `nbf`; 0 = omitted */
} lk_mint_opts;

/* Mints a token signed with `key`. Validates the capability (LK_ECAP),
 * the TTL (LK_ETTL) and client_id (LK_EINVAL). Does not know the key's
 * scopes: callers holding the registry check lk_cap_check_scopes first.
 * Caller frees *out with lk_free; *out NULL on failure. */
int lk_token_mint(lk_key *key, const lk_mint_opts *opts, char **out,
                  lk_error *err);

/* What a resolver reports about a kid. */
typedef struct lk_key_info {
    lk_pubkey *pubkey;      /* borrowed; valid for the verify call */
    int revoked;            /* nonzero: the key is revoked */
    uint32_t scopes;        /* LK_ACT_* bits the key's scopes cover */
    const char *workspace;  /* copied into the claims; may be NULL */
} lk_key_info;

/* Looks up `kid` (16 lowercase hex chars). Returns LK_OK and fills *info,
 * or LK_ENOTFOUND. Called at most once per verification. */
typedef int (*lk_key_resolver)(void *ud, const char *kid, lk_key_info *info);

typedef struct lk_verify_opts {
    int64_t now;           /* unix seconds; 0 = current time */
    int64_t max_ttl;       /* max exp - iat; 0 = LK_TOKEN_DEFAULT_MAX_TTL */
    const char *audience;  /* NULL: aud is not checked */
    size_t max_bytes;      /* 0 = LK_TOKEN_MAX_BYTES */
} lk_verify_opts;

typedef struct lk_claims lk_claims;

/* Verifies `token` (len bytes, need not be NUL-terminated). `opts` may be
 * NULL for defaults. Returns LK_OK and *out, or one of LK_ETOKEN_*,
 * LK_ECAP (invalid cap), LK_EKEY_REVOKED, LK_ESCOPE_MISSING. On any failure
 * *out is NULL. The error message names the reason, never the token. */
__attribute__((warn_unused_result))
int lk_token_verify(const char *token, size_t len, const lk_verify_opts *opts,
                     lk_key_resolver resolve, void *ud, lk_claims **out,
                     lk_error *err);

/* The WebSocket close code for a verification result: 4401 or 4403
 * (0 for LK_OK). */
int lk_token_close_code(int rc);

/* Accessors; strings are valid until lk_claims_destroy. */
const char *lk_claims_kid(const lk_claims *c);
const char *lk_claims_sub(const lk_claims *c);       /* NULL when absent */
const char *lk_claims_jti(const lk_claims *c);
const char *lk_claims_workspace(const lk_claims *c); /* from the resolver */
int64_t lk_claims_iat(const lk_claims *c);
int64_t lk_claims_exp(const lk_claims *c);
int64_t lk_claims_nbf(const lk_claims *c);           /* 0 when absent */
const lk_cap *lk_claims_cap(const lk_claims *c);
void lk_claims_destroy(lk_claims *c);

#ifdef __cplusplus
}
#endif
#endif
