/*
 * latchkey/error.h - error codes shared by every liblatchkey-mint module.
 *
 * Every fallible function returns an int: LK_OK (0) on success, a negative
 * LK_E* code on failure. Functions that can explain a failure to a user also
 * take an optional `lk_error *` (may be NULL) that receives the code and a
 * human-readable message. Messages never contain secrets (API keys, tokens).
 *
 * Thread safety: everything here is reentrant; lk_error is caller-owned.
 */
#ifndef LATCHKEY_ERROR_H
#define LATCHKEY_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, description). One table generates the enum, lk_err_name()
 * and lk_strerror(), so the three can never drift apart. */
#define LK_ERRNO_MAP(X)                                                       \
    X(OK, 0, "success")                                                       \
    X(EINVAL, -1, "invalid argument")                                         \
    X(ENOMEM, -2, "out of memory")                                            \
    X(ECRYPTO, -3, "cryptographic library failure")                           \
    X(EIO, -4, "input/output error")                                          \
    X(EKEY_FORMAT, -10, "malformed API key")                                  \
    X(EKEY_CHECKSUM, -11, "API key checksum mismatch")                        \
    X(EKEY_RANGE, -12, "API key secret out of range")                         \
    X(ECAP, -20, "invalid capability")                                        \
    X(ECHANNEL, -21, "invalid channel name")                                  \
    X(EPATTERN, -22, "invalid channel pattern")                               \
    X(ESCOPE, -23, "invalid scope")                                           \
    X(ESCOPE_MISSING, -24, "capability exceeds the key's scopes")             \
    X(ETTL, -25, "token lifetime out of range")                               \
    X(ETOKEN_MALFORMED, -30, "malformed token")                               \
    X(ETOKEN_TOO_LARGE, -31, "token too large")                               \
    X(ETOKEN_ALG, -32, "token algorithm not allowed")                         \
    X(ETOKEN_KID, -33, "token signed by an unknown key")                      \
    X(ETOKEN_SIGNATURE, -34, "token signature invalid")                       \
    X(ETOKEN_EXPIRED, -35, "token expired")                                   \
    X(ETOKEN_NOT_YET_VALID, -36, "token not yet valid")                       \
    X(ETOKEN_TTL, -37, "token lifetime exceeds the maximum")                  \
    X(ETOKEN_AUDIENCE, -38, "token audience mismatch")                        \
    X(ETOKEN_CLAIMS, -39, "token claims invalid")                             \
    X(EKEY_REVOKED, -40, "API key revoked")                                   \
    X(EDB, -50, "key registry error")                                         \
    X(ENOTFOUND, -51, "not found")                                            \
    X(EEXIST, -52, "already exists")                                          \
    X(EWORKSPACE, -53, "invalid workspace")

typedef enum lk_err {
#define LK__ERR_ENUM(name, value, desc) LK_##name = (value),
    LK_ERRNO_MAP(LK__ERR_ENUM)
#undef LK__ERR_ENUM
} lk_err;

#define LK_ERROR_MSG_BYTES 256

/* Caller-owned error detail. `code` mirrors the function's return value;
 * `message` is NUL-terminated and safe to show to a user or log. */
typedef struct lk_error {
    int code;
    char message[LK_ERROR_MSG_BYTES];
} lk_error;

/* Short symbolic name, e.g. "ETOKEN_EXPIRED"; "UNKNOWN" for other values.
 * Returns a static string. */
const char *lk_err_name(int code);

/* One-line description of a code. Returns a static string. */
const char *lk_strerror(int code);

/* Frees memory that a liblatchkey-mint function documents as
 * "caller frees with lk_free". NULL is a no-op. */
void lk_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
