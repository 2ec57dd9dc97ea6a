/* fuzz_token.c - fuzzes token verification (lk_token_verify).
 *
 * The resolver knows one fixed P-256 key under three kids: its own (every
 * scope), a subscribe-only one and a revoked one. The first byte of an
 * input picks what is verified:
 *   '{'  a JSON document signed here with the fixed key, so mutations reach
 *        the claim and capability checks behind the signature: the input is
 *        the claims, or "HEADER\nCLAIMS" to choose the header too;
 *   '!'  a capability: minted into a token with lk_token_mint, then verified;
 *   else the bytes as a token (the seed corpus holds real signed tokens).
 * The time is fixed, so seed tokens stay valid; an odd-sized input is
 * verified with an audience, an even-sized one without.
 *
 * Checks, beyond "no crash, no leak, no overrun":
 *  - the resolver is called at most once, with a 16-lowercase-hex kid;
 *  - a refusal is a negative code equal to err.code, no claims, a printable
 *    message that quotes no part of the token, and close code 4403 exactly
 *    for a revoked key or missing scopes, 4401 otherwise;
 *  - accepted claims respect the times (exp strict, 30 s skew on iat/nbf,
 *    lifetime at most the default maximum), the jti and sub bounds, come from
 *    a known active kid, and carry a capability within that kid's scopes;
 *  - a capability mints exactly when lk_cap_parse accepts it (or the token
 *    would be too large), and the verified token's capability is the
 *    canonical form of the input.
 */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "fuzz.h"
#include "latchkey/cap.h"
#include "latchkey/key.h"
#include "latchkey/token.h"
#include "lk_internal.h"

#define FUZZ_NOW 1700000000
#define FUZZ_TTL 600
#define KID_FULL "f00dfeedc0ffee01"    /* the key's own kid: every scope */
#define KID_SUB "f00dfeedc0ffee02"     /* same key, realtime:subscribe only */
#define KID_REVOKED "f00dfeedc0ffee03" /* same key, revoked */
#define SECRET_HEX "2f1e3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f001"
#define WORKSPACE "ws_fuzz"
#define AUDIENCE "latchkey-fuzz"
#define CLIENT_ID "fuzz-client"
#define DEFAULT_HEADER "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"" KID_FULL "\"}"
/* A message must not hold this many base64url characters of the token. */
#define ECHO_WINDOW 24

#define SIG_BYTES 64 /* JWS ES256: r || s */

static lk_key *fuzz_key;
static lk_pubkey *fuzz_pub;
static EVP_PKEY *fuzz_pkey; /* the same key, for signing without the library */

static void init(void)
{
    if (fuzz_key)
        return;
    char s[LK_KEY_STR_BYTES];
    int n = snprintf(s, sizeof s, "lk_sbx_%s_%s_", KID_FULL, SECRET_HEX);
    snprintf(s + n, sizeof s - (size_t)n, "%08x", (unsigned)lk_crc32(s, (size_t)n - 1));
    CHECK(lk_key_parse(s, strlen(s), &fuzz_key, NULL) == LK_OK);
    CHECK(strcmp(lk_key_kid(fuzz_key), KID_FULL) == 0);
    uint8_t pub[LK_PUBKEY_BYTES];
    lk_key_public(fuzz_key, pub);
    CHECK(lk_pubkey_create(pub, &fuzz_pub, NULL) == LK_OK);
    char *pem = NULL;
    CHECK(lk_key_private_pem(fuzz_key, &pem, NULL) == LK_OK);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    CHECK(bio);
    fuzz_pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    CHECK(fuzz_pkey);
    BIO_free(bio);
    OPENSSL_cleanse(pem, strlen(pem));
    lk_free(pem);
}

/* ES256 over msg with OpenSSL, in JWS form (raw r || s). */
static void es256_sign(const char *msg, size_t len, uint8_t sig[SIG_BYTES])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t der[128];
    size_t der_len = sizeof der;
    CHECK(ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, fuzz_pkey) == 1);
    CHECK(EVP_DigestSign(ctx, der, &der_len, (const unsigned char *)msg, len) == 1);
    EVP_MD_CTX_free(ctx);
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    CHECK(es);
    CHECK(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) == 32);
    CHECK(BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) == 32);
    ECDSA_SIG_free(es);
}

static uint32_t kid_scopes(const char *kid)
{
    return strcmp(kid, KID_SUB) == 0 ? LK_ACT_SUBSCRIBE : LK_ACT_ALL;
}

static int resolve(void *ud, const char *kid, lk_key_info *info)
{
    int *calls = ud;
    (*calls)++;
    CHECK(strlen(kid) == LK_KID_HEX && strspn(kid, "0123456789abcdef") == LK_KID_HEX);
    memset(info, 0, sizeof *info);
    if (strcmp(kid, KID_FULL) && strcmp(kid, KID_SUB) && strcmp(kid, KID_REVOKED))
        return LK_ENOTFOUND;
    info->pubkey = fuzz_pub;
    info->scopes = kid_scopes(kid);
    info->revoked = strcmp(kid, KID_REVOKED) == 0;
    info->workspace = WORKSPACE;
    return LK_OK;
}

static int is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

/* The token's dot-separated parts, base64url-decoded where they decode, one
 * after another: text the token's author wrote, which a message may name
 * (a bad capability action, say). Caller frees. */
static char *decoded_parts(const char *tok, size_t len, size_t *out_len)
{
    char *buf = malloc(len + 1);
    CHECK(buf);
    size_t o = 0;
    for (size_t i = 0; i <= len;) {
        const char *dot = memchr(tok + i, '.', len - i);
        size_t n = (dot ? (size_t)(dot - tok) : len) - i;
        long d = lk__b64url_decode(tok + i, n, (uint8_t *)buf + o);
        if (d > 0)
            o += (size_t)d;
        i += n + 1;
    }
    *out_len = o;
    return buf;
}

/* Any ECHO_WINDOW-long base64url run of the message must not occur in the
 * token, unless it is also part of what the token says (then the message
 * quotes a claim, not the token). Messages rarely hold such runs, so this
 * is cheap. */
static void check_no_echo(const char *tok, size_t len, const char *msg)
{
    size_t mlen = strlen(msg), dlen = 0;
    char *decoded = NULL;
    for (size_t i = 0; i < mlen;) {
        size_t j = i;
        while (j < mlen && is_b64url(msg[j]))
            j++;
        for (size_t w = i; w + ECHO_WINDOW <= j; w++) {
            if (!memmem(tok, len, msg + w, ECHO_WINDOW))
                continue;
            if (!decoded)
                decoded = decoded_parts(tok, len, &dlen);
            CHECK(memmem(decoded, dlen, msg + w, ECHO_WINDOW));
        }
        /* A quoted byte, "\xNN", is not text of the token: skip it whole. */
        i = j + (j < mlen && msg[j] == '\\' ? 4 : 1);
    }
    free(decoded);
}

static void check_claims(const lk_claims *c)
{
    const char *kid = lk_claims_kid(c);
    CHECK(kid && (strcmp(kid, KID_FULL) == 0 || strcmp(kid, KID_SUB) == 0));
    CHECK(lk_claims_workspace(c) && strcmp(lk_claims_workspace(c), WORKSPACE) == 0);
    int64_t iat = lk_claims_iat(c), exp = lk_claims_exp(c), nbf = lk_claims_nbf(c);
    CHECK(FUZZ_NOW < exp);
    CHECK(iat <= FUZZ_NOW + LK_TOKEN_SKEW);
    CHECK(nbf <= FUZZ_NOW + LK_TOKEN_SKEW);
    CHECK(exp - iat <= LK_TOKEN_DEFAULT_MAX_TTL);
    const char *jti = lk_claims_jti(c);
    CHECK(jti && strlen(jti) >= LK_JTI_MIN);
    const char *sub = lk_claims_sub(c);
    CHECK(!sub || (sub[0] && strlen(sub) <= LK_SUB_MAX));
    const lk_cap *cap = lk_claims_cap(c);
    CHECK(cap);
    CHECK(lk_cap_check_scopes(cap, kid_scopes(kid), NULL) == LK_OK);
    char *json = lk_cap_to_json(cap);
    lk_cap *again = NULL;
    CHECK(json && lk_cap_parse(json, strlen(json), &again, NULL) == LK_OK);
    lk_cap_destroy(again);
    lk_free(json);
}

/* Verifies and checks the outcome; returns the claims on success (caller
 * destroys) or NULL. */
static lk_claims *verify(const char *tok, size_t len, const char *audience, int *rc_out)
{
    lk_verify_opts opts = {.now = FUZZ_NOW, .audience = audience};
    lk_claims *c = (lk_claims *)(uintptr_t)1;
    lk_error err;
    int calls = 0;
    memset(&err, 0xa5, sizeof err);
    int rc = lk_token_verify(tok, len, &opts, resolve, &calls, &c, &err);
    CHECK(calls <= 1);
    if (rc_out)
        *rc_out = rc;
    if (rc != LK_OK) {
        CHECK(rc < 0 && err.code == rc && c == NULL);
        CHECK(fuzz_message_ok(err.message, sizeof err.message));
        check_no_echo(tok, len, err.message);
        int forbidden = rc == LK_EKEY_REVOKED || rc == LK_ESCOPE_MISSING;
        CHECK(lk_token_close_code(rc) == (forbidden ? 4403 : 4401));
        return NULL;
    }
    CHECK(c != NULL && lk_token_close_code(rc) == 0);
    check_claims(c);
    return c;
}

/* Signs HEADER.CLAIMS with the fixed key, as any JWT library would. */
static void fuzz_signed(const char *in, size_t size, const char *audience)
{
    const char *hdr = DEFAULT_HEADER, *claims = in;
    size_t hlen = strlen(DEFAULT_HEADER), clen = size;
    const char *nl = memchr(in, '\n', size);
    if (nl) {
        hdr = in;
        hlen = (size_t)(nl - in);
        claims = nl + 1;
        clen = size - hlen - 1;
    }
    char *tok = malloc(LK__B64URL_LEN(hlen) + LK__B64URL_LEN(clen) +
                       LK__B64URL_LEN(SIG_BYTES) + 3);
    CHECK(tok);
    size_t o = lk__b64url_encode((const uint8_t *)hdr, hlen, tok);
    tok[o++] = '.';
    o += lk__b64url_encode((const uint8_t *)claims, clen, tok + o);
    uint8_t sig[SIG_BYTES];
    es256_sign(tok, o, sig);
    tok[o++] = '.';
    o += lk__b64url_encode(sig, sizeof sig, tok + o);
    lk_claims_destroy(verify(tok, o, audience, NULL));
    free(tok);
}

static void fuzz_mint(const char *in, size_t size)
{
    char *capability = strndup(in, size); /* a C string: ends at the first NUL */
    CHECK(capability);
    lk_mint_opts mo = {.capability = capability, .ttl = FUZZ_TTL, .client_id = CLIENT_ID,
                       .audience = AUDIENCE, .now = FUZZ_NOW};
    char *tok = (char *)(uintptr_t)1;
    lk_error err;
    int rc = lk_token_mint(fuzz_key, &mo, &tok, &err);
    lk_cap *ref = NULL;
    int prc = lk_cap_parse(capability, strlen(capability), &ref, NULL);
    if (rc != LK_OK) {
        CHECK(tok == NULL && rc < 0 && err.code == rc);
        CHECK(prc == LK_OK ? rc == LK_ETOKEN_TOO_LARGE : rc == prc);
    } else {
        CHECK(prc == LK_OK && tok);
        CHECK(strlen(tok) <= LK_TOKEN_MAX_BYTES);
        int vrc;
        lk_claims *c = verify(tok, strlen(tok), AUDIENCE, &vrc);
        CHECK(vrc == LK_OK && c);
        CHECK(lk_claims_iat(c) == FUZZ_NOW && lk_claims_exp(c) == FUZZ_NOW + FUZZ_TTL);
        CHECK(lk_claims_sub(c) && strcmp(lk_claims_sub(c), CLIENT_ID) == 0);
        char *a = lk_cap_to_json(lk_claims_cap(c)), *b = lk_cap_to_json(ref);
        CHECK(a && b && strcmp(a, b) == 0);
        lk_free(a);
        lk_free(b);
        lk_claims_destroy(c);
        lk_free(tok);
    }
    lk_cap_destroy(ref);
    free(capability);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *audience = size % 2 ? AUDIENCE : NULL;
    init();
    if (size && in[0] == '{')
        fuzz_signed(in, size, audience);
    else if (size && in[0] == '!')
        fuzz_mint(in + 1, size - 1);
    else
        lk_claims_destroy(verify(in, size, audience, NULL));
    return 0;
}
