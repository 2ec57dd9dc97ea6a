/*
 * lk_internal.h - helpers shared by the mint library's modules. Not
 * installed; nothing here is part of the public API.
 */
#ifndef LK_INTERNAL_H
#define LK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/error.h"

/* Fills `err` (if non-NULL) with `code` and a printf-style message and
 * returns `code`, so callers can write `return lk__fail(err, LK_EINVAL, ...)`. */
int lk__fail(lk_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* base64url without padding. Returns the encoded length; `out` must hold
 * LK__B64URL_LEN(n) + 1 bytes and is NUL-terminated. */
#define LK__B64URL_LEN(n) ((((n) + 2) / 3) * 4)
size_t lk__b64url_encode(const uint8_t *in, size_t n, char *out);
/* Decodes unpadded base64url; rejects padding, bad characters and
 * non-canonical trailing bits. Returns the decoded length or -1. `out` must
 * hold len * 3 / 4 + 1 bytes. */
long lk__b64url_decode(const char *in, size_t len, uint8_t *out);

/* Lowercase hex. `out` must hold 2n + 1 bytes. */
void lk__hex_encode(const uint8_t *in, size_t n, char *out);
/* Strict lowercase hex decode of exactly 2n chars; 0 on success, -1 else. */
int lk__hex_decode(const char *in, size_t n, uint8_t *out);

/* 1 if JSON text holds a raw NUL or a \u0000 escape. cJSON cuts strings
 * at NUL, so "*\u0000x" would read as "*": such text is refused before
 * parsing wherever a string's exact value matters (patterns, alg, kid). */
int lk__json_has_nul(const void *data, size_t len);

/* 1 if `n` bytes are valid UTF-8 (no overlong forms, surrogates or code
 * points past U+10FFFF); with `no_controls`, C0, DEL and C1 controls are
 * refused too. */
int lk__utf8_valid(const void *data, size_t n, int no_controls);

/* Fills `buf` from the OpenSSL CSPRNG; LK_ECRYPTO on failure. */
int lk__random(void *buf, size_t n);

/* Builds a capability from an already-parsed cJSON object (the `cap` claim
 * of a token), with the same validation as lk_cap_parse. Implemented in
 * cap.c. */
struct cJSON;
struct lk_cap;
int lk__cap_from_cjson(const struct cJSON *obj, struct lk_cap **out, lk_error *err);

/* ES256 with the contexts cached in the key handles, so token.c never
 * touches OpenSSL key objects. Both hash `msg` with SHA-256 themselves;
 * signatures are raw r||s (JWS form). Implemented in key.c. */
#define LK__SHA256_BYTES 32
#define LK__SIG_BYTES 64
struct lk_key;
struct lk_pubkey;
/* LK_OK, or LK_ECRYPTO/LK_ENOMEM. */
int lk__key_sign(struct lk_key *key, const void *msg, size_t len,
                 uint8_t sig[LK__SIG_BYTES]);
/* Random bytes for public nonces (a token's jti), from a per-key pool of
 * CSPRNG output that a forked child never shares. LK_OK or LK_ECRYPTO. */
int lk__key_random(struct lk_key *key, void *out, size_t n);
/* LK_OK if the signature is valid; LK_ETOKEN_SIGNATURE otherwise (any
 * malformed r or s included); LK_ENOMEM or LK_ECRYPTO on internal failure. */
int lk__pubkey_verify(struct lk_pubkey *key, const void *msg, size_t len,
                      const uint8_t sig[LK__SIG_BYTES]);

#endif
