/*
 * latchkey/key.h - API keys (lk_<env>_<kid>_<secret>_<crc>) and public keys.
 *
 * An lk_key holds a P-256 private key parsed once, with the OpenSSL contexts
 * needed to sign cached inside it. An lk_pubkey holds a P-256 public key with
 * a cached verification context.
 *
 * Ownership: lk_key_generate/lk_key_parse return a key the caller destroys
 * with lk_key_destroy (which wipes the secret). lk_pubkey_create returns a
 * key the caller destroys with lk_pubkey_destroy. destroy(NULL) is a no-op.
 *
 * Thread safety: an lk_key or lk_pubkey is used by one thread at a time
 * (signing and verifying reuse a cached context). Distinct handles may be
 * used concurrently; there is no global mutable state.
 */
#ifndef LATCHKEY_KEY_H
#define LATCHKEY_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LK_KID_HEX 16          /* hex chars in a key id (8 random bytes) */
#define LK_KID_BYTES (LK_KID_HEX + 1)
#define LK_SECRET_BYTES 32     /* P-256 private scalar, big-endian */
#define LK_PUBKEY_BYTES 65     /* uncompressed SEC1 point 04||X||Y */
#define LK_KEY_STR_MAX 98      /* "lk_live_" + 16 + "_" + 64 + "_" + 8 */
#define LK_KEY_STR_BYTES (LK_KEY_STR_MAX + 1)

typedef enum lk_env { LK_ENV_LIVE = 0, LK_ENV_SBX = 1 } lk_env;

typedef struct lk_key lk_key;
typedef struct lk_pubkey lk_pubkey;

/* "live" or "sbx". */
const char *lk_env_name(lk_env env);
/* Parses "live"/"sbx"; LK_EINVAL otherwise. */
int lk_env_parse(const char *s, lk_env *out);

/* Creates a fresh key from the OpenSSL CSPRNG (scalar in [1, n)) with a
 * random kid. On failure *out is NULL. */
int lk_key_generate(lk_env env, lk_key **out, lk_error *err);

/* Parses an API key string of `len` bytes (need not be NUL-terminated).
 * Checks, in order: prefix, env, field lengths and hex, CRC-32 (before any
 * crypto), scalar range. Error messages name the failed check and never
 * echo the secret. On failure *out is NULL. */
int lk_key_parse(const char *str, size_t len, lk_key **out, lk_error *err);

/* Writes the full API key string (NUL-terminated) into `out`. The result
 * is secret: wipe it with OPENSSL_cleanse when done. */
void lk_key_format(const lk_key *key, char out[LK_KEY_STR_BYTES]);

lk_env lk_key_env(const lk_key *key);
/* The 16-hex-char key id; valid while the key lives. */
const char *lk_key_kid(const lk_key *key);
/* The public point, uncompressed (65 bytes). */
void lk_key_public(const lk_key *key, uint8_t out[LK_PUBKEY_BYTES]);
/* The private key as a PKCS#8 PEM, for handing to another JWT library.
 * Caller wipes and frees with lk_free. */
int lk_key_private_pem(const lk_key *key, char **out, lk_error *err);

/* Wipes the secret and frees. NULL is a no-op. */
void lk_key_destroy(lk_key *key);

/* Builds a public key from an uncompressed point; checks it is on P-256. */
int lk_pubkey_create(const uint8_t raw[LK_PUBKEY_BYTES], lk_pubkey **out,
                     lk_error *err);
/* SubjectPublicKeyInfo PEM. Caller frees with lk_free. */
int lk_pubkey_to_pem(const lk_pubkey *key, char **out, lk_error *err);
void lk_pubkey_destroy(lk_pubkey *key);

/* CRC-32 (IEEE 802.3, zlib's crc32) of `len` bytes. */
uint32_t lk_crc32(const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
