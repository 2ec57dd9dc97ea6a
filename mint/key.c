/* key.c - API keys (lk_<env>_<kid>_<secret>_<crc>), P-256 key handles and
 * the ES256 primitives token.c signs and verifies with.
 *
 * A key is parsed once: the public point is derived from the scalar, and an
 * EVP_PKEY plus an EVP_PKEY_CTX already initialised for signing are kept in
 * the handle, because building them costs far more than a signature. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "latchkey/key.h"
#include "lk_internal.h"

#define KEY_PREFIX "lk_"
#define KEY_PREFIX_LEN 3
#define SECRET_HEX (2 * LK_SECRET_BYTES)
#define CRC_HEX 8
#define GENERATE_TRIES 64 /* a scalar >= n has odds ~2^-32; bound anyway */
#define POOL_PAGE 4096
#define POOL_TAKE_MAX 64

/* One page of CSPRNG output for public nonces (a token's jti). RAND_bytes
 * costs ~2 us per call here, mostly its fork check; this page is marked
 * MADV_WIPEONFORK instead, so a forked child finds avail == 0 and refills
 * from its own (reseeded) DRBG rather than repeating the parent's bytes. */
typedef struct rand_pool {
    size_t avail;
    uint8_t bytes[POOL_PAGE - sizeof(size_t)];
} rand_pool;

struct lk_key {
    lk_env env;
    char kid[LK_KID_BYTES];
    uint8_t secret[LK_SECRET_BYTES];
    uint8_t pub[LK_PUBKEY_BYTES];
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *sign_ctx;
    EVP_MD *sha256;   /* fetched once: SHA256() looks it up on every call */
    EVP_MD_CTX *md;
    rand_pool *pool;  /* lazily mapped; NULL until the first token */
    int pool_off;     /* the kernel refused WIPEONFORK: use RAND_bytes */
};

struct lk_pubkey {
    uint8_t pub[LK_PUBKEY_BYTES];
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *verify_ctx;
    EVP_MD *sha256;
    EVP_MD_CTX *md;
};

static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
    0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
    0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
    0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
    0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
    0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
    0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
    0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
    0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
    0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
    0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
    0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
    0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
    0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
    0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
    0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
    0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
    0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
    0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
    0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
    0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
    0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
    0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
    0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
    0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
    0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
    0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
    0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
    0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
    0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

const char *lk_env_name(lk_env env)
{
    switch (env) {
    case LK_ENV_LIVE:
        return "live";
    case LK_ENV_SBX:
        return "sbx";
    }
    return "unknown";
}

int lk_env_parse(const char *s, lk_env *out)
{
    if (!s || !out)
        return LK_EINVAL;
    if (strcmp(s, "live") == 0)
        *out = LK_ENV_LIVE;
    else if (strcmp(s, "sbx") == 0)
        *out = LK_ENV_SBX;
    else
        return LK_EINVAL;
    return LK_OK;
}

uint32_t lk_crc32(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < len; i++)
        crc = crc_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return crc ^ 0xffffffffu;
}

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

/* A fixed-width lowercase hex field at `pos`, followed by '_' unless it is
 * the last field. Never reads past `len`. */
static int hex_field_ok(const char *s, size_t len, size_t pos, size_t width, int last)
{
    if (pos > len || len - pos < width + (last ? 0 : 1))
        return 0;
    if (!is_lower_hex(s + pos, width))
        return 0;
    return last || s[pos + width] == '_';
}

/* Drops whatever OpenSSL queued for this thread so a failure in one call
 * cannot be misread by the next. */
static int crypto_fail(lk_error *err, const char *what)
{
    ERR_clear_error();
    return lk__fail(err, LK_ECRYPTO, "%s failed", what);
}

static EVP_PKEY *pkey_from_params(OSSL_PARAM_BLD *bld, int selection)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (params && pctx && EVP_PKEY_fromdata_init(pctx) == 1 &&
        EVP_PKEY_fromdata(pctx, &pkey, selection, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(pctx);
    /* The private scalar sits in the secure part, which this clears. */
    OSSL_PARAM_free(params);
    return pkey;
}

/* The contexts a key keeps so that each signature or verification costs
 * no setup: a PKEY context initialised for signing (sign != 0) or
 * verifying with SHA-256, the fetched digest and a digest context. 1 on
 * success; on failure the caller's destroy frees whatever was made. */
static int init_contexts(EVP_PKEY *pkey, int sign, EVP_PKEY_CTX **ctx,
                         EVP_MD **sha, EVP_MD_CTX **md)
{
    *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    *sha = EVP_MD_fetch(NULL, "SHA256", NULL);
    *md = EVP_MD_CTX_new();
    if (!*ctx || !*sha || !*md)
        return 0;
    if ((sign ? EVP_PKEY_sign_init(*ctx) : EVP_PKEY_verify_init(*ctx)) != 1)
        return 0;
    return EVP_PKEY_CTX_set_signature_md(*ctx, *sha) == 1;
}

/* Builds the key handle from a checked kid and a candidate scalar:
 * range check, public point d*G, then the EVP_PKEY and signing context
 * (LIBNOTES: a private-only EVP_PKEY has no public half and cannot be
 * written as PEM, so both halves go in together). */
static int key_build(lk_env env, const char kid[LK_KID_HEX],
                     const uint8_t secret[LK_SECRET_BYTES], lk_key **out,
                     lk_error *err)
{
    int rc = LK_ECRYPTO;
    lk_key *k = calloc(1, sizeof *k);
    EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    BIGNUM *d = BN_secure_new();
    BN_CTX *bctx = BN_CTX_secure_new();
    EC_POINT *point = group ? EC_POINT_new(group) : NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();

    if (!k || !group || !d || !bctx || !point || !bld) {
        rc = lk__fail(err, LK_ENOMEM, "out of memory");
        goto done;
    }
    k->env = env;
    memcpy(k->kid, kid, LK_KID_HEX);
    k->kid[LK_KID_HEX] = '\0';
    memcpy(k->secret, secret, LK_SECRET_BYTES);

    BN_set_flags(d, BN_FLG_CONSTTIME);
    if (!BN_bin2bn(secret, LK_SECRET_BYTES, d)) {
        rc = crypto_fail(err, "loading the secret");
        goto done;
    }
    if (BN_is_zero(d) || BN_cmp(d, EC_GROUP_get0_order(group)) >= 0) {
        rc = lk__fail(err, LK_EKEY_RANGE,
                      "API key secret is not a valid P-256 scalar (must be 1 <= d < n)");
        goto done;
    }
    if (EC_POINT_mul(group, point, d, NULL, NULL, bctx) != 1 ||
        EC_POINT_point2oct(group, point, POINT_CONVERSION_UNCOMPRESSED, k->pub,
                           sizeof k->pub, bctx) != sizeof k->pub) {
        rc = crypto_fail(err, "deriving the public key");
        goto done;
    }
    if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                        "prime256v1", 0) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, k->pub,
                                         sizeof k->pub) != 1 ||
        !(k->pkey = pkey_from_params(bld, EVP_PKEY_KEYPAIR))) {
        rc = crypto_fail(err, "building the private key");
        goto done;
    }
    if (!init_contexts(k->pkey, 1, &k->sign_ctx, &k->sha256, &k->md)) {
        rc = crypto_fail(err, "initialising the signing context");
        goto done;
    }
    *out = k;
    k = NULL;
    rc = LK_OK;
done:
    lk_key_destroy(k);
    OSSL_PARAM_BLD_free(bld);
    EC_POINT_free(point);
    BN_CTX_free(bctx);
    BN_clear_free(d);
    EC_GROUP_free(group);
    return rc;
}

int lk_key_generate(lk_env env, lk_key **out, lk_error *err)
{
    uint8_t secret[LK_SECRET_BYTES], kid_raw[LK_KID_HEX / 2];
    char kid[LK_KID_HEX + 1];
    int rc = LK_EKEY_RANGE;

    if (!out)
        return lk__fail(err, LK_EINVAL, "out is NULL");
    *out = NULL;
    if (env != LK_ENV_LIVE && env != LK_ENV_SBX)
        return lk__fail(err, LK_EINVAL, "unknown environment");
    if (lk__random(kid_raw, sizeof kid_raw) != LK_OK)
        return crypto_fail(err, "RAND_bytes");
    lk__hex_encode(kid_raw, sizeof kid_raw, kid);
    for (int i = 0; i < GENERATE_TRIES && rc == LK_EKEY_RANGE; i++) {
        if (lk__random(secret, sizeof secret) != LK_OK) {
            rc = crypto_fail(err, "RAND_bytes");
            break;
        }
        rc = key_build(env, kid, secret, out, err);
    }
    OPENSSL_cleanse(secret, sizeof secret);
    return rc;
}

int lk_key_parse(const char *str, size_t len, lk_key **out, lk_error *err)
{
    uint8_t secret[LK_SECRET_BYTES];
    char crc_hex[CRC_HEX + 1];
    lk_env env;
    size_t pos, kid_pos, secret_pos, crc_pos;
    int rc;

    if (!out)
        return lk__fail(err, LK_EINVAL, "out is NULL");
    *out = NULL;
    if (!str)
        return lk__fail(err, LK_EINVAL, "API key is NULL");

    if (len < KEY_PREFIX_LEN || memcmp(str, KEY_PREFIX, KEY_PREFIX_LEN) != 0)
        return lk__fail(err, LK_EKEY_FORMAT, "API key must start with \"lk_\"");
    pos = KEY_PREFIX_LEN;
    if (len - pos >= 5 && memcmp(str + pos, "live_", 5) == 0) {
        env = LK_ENV_LIVE;
        pos += 5;
    } else if (len - pos >= 4 && memcmp(str + pos, "sbx_", 4) == 0) {
        env = LK_ENV_SBX;
        pos += 4;
    } else {
        return lk__fail(err, LK_EKEY_FORMAT,
                        "API key environment must be \"live\" or \"sbx\"");
    }
    kid_pos = pos;
    if (!hex_field_ok(str, len, kid_pos, LK_KID_HEX, 0))
        return lk__fail(err, LK_EKEY_FORMAT,
                        "API key id must be 16 lowercase hex characters followed by '_'");
    secret_pos = kid_pos + LK_KID_HEX + 1;
    if (!hex_field_ok(str, len, secret_pos, SECRET_HEX, 0))
        return lk__fail(err, LK_EKEY_FORMAT,
                        "API key secret must be 64 lowercase hex characters followed by '_'");
    crc_pos = secret_pos + SECRET_HEX + 1;
    if (!hex_field_ok(str, len, crc_pos, CRC_HEX, 1))
        return lk__fail(err, LK_EKEY_FORMAT,
                        "API key checksum must be 8 lowercase hex characters");
    if (len != crc_pos + CRC_HEX)
        return lk__fail(err, LK_EKEY_FORMAT,
                        "API key is %zu characters long, expected %zu", len,
                        crc_pos + CRC_HEX);

    snprintf(crc_hex, sizeof crc_hex, "%08x", lk_crc32(str, crc_pos - 1));
    rc = CRYPTO_memcmp(crc_hex, str + crc_pos, CRC_HEX);
    OPENSSL_cleanse(crc_hex, sizeof crc_hex);
    if (rc != 0)
        return lk__fail(err, LK_EKEY_CHECKSUM,
                        "API key checksum mismatch: the key is mistyped or truncated");

    /* A failed decode may already have written part of the secret. */
    if (lk__hex_decode(str + secret_pos, LK_SECRET_BYTES, secret) != 0)
        rc = lk__fail(err, LK_EKEY_FORMAT, "API key secret is not hex");
    else
        rc = key_build(env, str + kid_pos, secret, out, err);
    OPENSSL_cleanse(secret, sizeof secret);
    return rc;
}

void lk_key_format(const lk_key *key, char out[LK_KEY_STR_BYTES])
{
    char secret_hex[SECRET_HEX + 1];
    int n;

    lk__hex_encode(key->secret, sizeof key->secret, secret_hex);
    n = snprintf(out, LK_KEY_STR_BYTES, "lk_%s_%s_%s", lk_env_name(key->env),
                 key->kid, secret_hex);
    OPENSSL_cleanse(secret_hex, sizeof secret_hex);
    if (n < 0 || (size_t)n + 1 + CRC_HEX >= LK_KEY_STR_BYTES) {
        /* Never hand back a partial key: it would still hold the secret. */
        OPENSSL_cleanse(out, LK_KEY_STR_BYTES);
        return;
    }
    snprintf(out + n, LK_KEY_STR_BYTES - (size_t)n, "_%08x",
             lk_crc32(out, (size_t)n));
}

lk_env lk_key_env(const lk_key *key)
{
    return key->env;
}

const char *lk_key_kid(const lk_key *key)
{
    return key->kid;
}

void lk_key_public(const lk_key *key, uint8_t out[LK_PUBKEY_BYTES])
{
    memcpy(out, key->pub, LK_PUBKEY_BYTES);
}

/* Copies a memory BIO's contents into a lk_free-able string. */
static int bio_to_string(BIO *bio, char **out, lk_error *err)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || !data)
        return crypto_fail(err, "PEM encoding");
    char *s = malloc((size_t)n + 1);
    if (!s)
        return lk__fail(err, LK_ENOMEM, "out of memory");
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    *out = s;
    return LK_OK;
}

int lk_key_private_pem(const lk_key *key, char **out, lk_error *err)
{
    int rc;
    BIO *bio;

    if (!out)
        return lk__fail(err, LK_EINVAL, "out is NULL");
    *out = NULL;
    if (!key)
        return lk__fail(err, LK_EINVAL, "key is NULL");
    /* A secure-memory BIO wipes its buffer when freed. */
    bio = BIO_new(BIO_s_secmem());
    if (!bio)
        return crypto_fail(err, "BIO_new");
    if (PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL) != 1)
        rc = crypto_fail(err, "PEM_write_bio_PrivateKey");
    else
        rc = bio_to_string(bio, out, err);
    BIO_free(bio);
    return rc;
}

void lk_key_destroy(lk_key *key)
{
    if (!key)
        return;
    if (key->pool) {
        OPENSSL_cleanse(key->pool, sizeof *key->pool);
        munmap(key->pool, sizeof *key->pool);
    }
    EVP_MD_CTX_free(key->md);
    EVP_MD_free(key->sha256);
    EVP_PKEY_CTX_free(key->sign_ctx);
    EVP_PKEY_free(key->pkey);
    OPENSSL_cleanse(key, sizeof *key);
    free(key);
}

int lk_pubkey_create(const uint8_t raw[LK_PUBKEY_BYTES], lk_pubkey **out,
                     lk_error *err)
{
    int rc = LK_ECRYPTO;
    lk_pubkey *k = NULL;
    EC_GROUP *group = NULL;
    EC_POINT *point = NULL;
    OSSL_PARAM_BLD *bld = NULL;

    if (!out)
        return lk__fail(err, LK_EINVAL, "out is NULL");
    *out = NULL;
    if (!raw)
        return lk__fail(err, LK_EINVAL, "public key is NULL");
    if (raw[0] != 0x04)
        return lk__fail(err, LK_EINVAL, "public key is not an uncompressed point");

    group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    point = group ? EC_POINT_new(group) : NULL;
    if (!point) {
        rc = crypto_fail(err, "allocating the public point");
        goto done;
    }
    /* oct2point alone already refuses off-curve points; the explicit check
     * keeps that guarantee visible and independent of the OpenSSL version. */
    if (EC_POINT_oct2point(group, point, raw, LK_PUBKEY_BYTES, NULL) != 1 ||
        EC_POINT_is_on_curve(group, point, NULL) != 1) {
        ERR_clear_error();
        rc = lk__fail(err, LK_EINVAL, "public key is not a point on P-256");
        goto done;
    }
    k = calloc(1, sizeof *k);
    bld = OSSL_PARAM_BLD_new();
    if (!k || !bld) {
        rc = lk__fail(err, LK_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(k->pub, raw, LK_PUBKEY_BYTES);
    if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                        "prime256v1", 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, k->pub,
                                         sizeof k->pub) != 1 ||
        !(k->pkey = pkey_from_params(bld, EVP_PKEY_PUBLIC_KEY))) {
        rc = crypto_fail(err, "building the public key");
        goto done;
    }
    if (!init_contexts(k->pkey, 0, &k->verify_ctx, &k->sha256, &k->md)) {
        rc = crypto_fail(err, "initialising the verification context");
        goto done;
    }
    *out = k;
    k = NULL;
    rc = LK_OK;
done:
    lk_pubkey_destroy(k);
    OSSL_PARAM_BLD_free(bld);
    EC_POINT_free(point);
    EC_GROUP_free(group);
    return rc;
}

int lk_pubkey_to_pem(const lk_pubkey *key, char **out, lk_error *err)
{
    int rc;
    BIO *bio;

    if (!out)
        return lk__fail(err, LK_EINVAL, "out is NULL");
    *out = NULL;
    if (!key)
        return lk__fail(err, LK_EINVAL, "key is NULL");
    bio = BIO_new(BIO_s_mem());
    if (!bio)
        return crypto_fail(err, "BIO_new");
    if (PEM_write_bio_PUBKEY(bio, key->pkey) != 1)
        rc = crypto_fail(err, "PEM_write_bio_PUBKEY");
    else
        rc = bio_to_string(bio, out, err);
    BIO_free(bio);
    return rc;
}

void lk_pubkey_destroy(lk_pubkey *key)
{
    if (!key)
        return;
    EVP_MD_CTX_free(key->md);
    EVP_MD_free(key->sha256);
    EVP_PKEY_CTX_free(key->verify_ctx);
    EVP_PKEY_free(key->pkey);
    free(key);
}

int lk__key_random(lk_key *key, void *out, size_t n)
{
    rand_pool *p;

    if (n > POOL_TAKE_MAX || key->pool_off)
        return lk__random(out, n);
    if (!key->pool) {
        p = mmap(NULL, sizeof *p, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
        if (p == MAP_FAILED)
            return lk__random(out, n);
        if (madvise(p, sizeof *p, MADV_WIPEONFORK) != 0) {
            munmap(p, sizeof *p);
            key->pool_off = 1;
            return lk__random(out, n);
        }
        key->pool = p;
    }
    p = key->pool;
    if (p->avail < n) {
        if (lk__random(p->bytes, sizeof p->bytes) != LK_OK) {
            p->avail = 0;
            return LK_ECRYPTO;
        }
        p->avail = sizeof p->bytes;
    }
    p->avail -= n;
    memcpy(out, p->bytes + p->avail, n);
    OPENSSL_cleanse(p->bytes + p->avail, n);
    return LK_OK;
}

static int sha256(EVP_MD_CTX *md, const EVP_MD *alg, const void *msg, size_t len,
                  uint8_t out[LK__SHA256_BYTES])
{
    unsigned int n = 0;
    return EVP_DigestInit_ex2(md, alg, NULL) == 1 && EVP_DigestUpdate(md, msg, len) == 1 &&
           EVP_DigestFinal_ex(md, out, &n) == 1 && n == LK__SHA256_BYTES;
}

int lk__key_sign(lk_key *key, const void *msg, size_t len, uint8_t sig[LK__SIG_BYTES])
{
    uint8_t digest[LK__SHA256_BYTES];
    /* A DER ECDSA-Sig-Value for P-256 is at most 72 bytes. */
    unsigned char der[80];
    size_t der_len = sizeof der;
    const unsigned char *p = der;
    const BIGNUM *r, *s;
    ECDSA_SIG *es;
    int rc = LK_ECRYPTO;

    if (!sha256(key->md, key->sha256, msg, len, digest) ||
        EVP_PKEY_sign(key->sign_ctx, der, &der_len, digest, LK__SHA256_BYTES) != 1) {
        ERR_clear_error();
        return LK_ECRYPTO;
    }
    es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (es) {
        ECDSA_SIG_get0(es, &r, &s);
        if (BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32)
            rc = LK_OK;
        ECDSA_SIG_free(es);
    }
    if (rc != LK_OK)
        ERR_clear_error();
    return rc;
}

int lk__pubkey_verify(lk_pubkey *key, const void *msg, size_t len,
                      const uint8_t sig[LK__SIG_BYTES])
{
    uint8_t digest[LK__SHA256_BYTES];
    unsigned char der[80];
    unsigned char *p = der;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL);
    BIGNUM *s = BN_bin2bn(sig + 32, 32, NULL);
    int rc = LK_ENOMEM, n;

    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        goto done;
    }
    /* es owns r and s from here on. */
    n = i2d_ECDSA_SIG(es, NULL);
    if (n <= 0 || (size_t)n > sizeof der || i2d_ECDSA_SIG(es, &p) != n) {
        rc = LK_ETOKEN_SIGNATURE;
        goto done;
    }
    if (!sha256(key->md, key->sha256, msg, len, digest)) {
        rc = LK_ECRYPTO;
        goto done;
    }
    /* Out-of-range r or s (0, >= n) make verify return 0 or -1: both are a
     * bad signature, never an internal error. */
    rc = EVP_PKEY_verify(key->verify_ctx, der, (size_t)n, digest,
                         LK__SHA256_BYTES) == 1 ? LK_OK : LK_ETOKEN_SIGNATURE;
done:
    ECDSA_SIG_free(es);
    if (rc != LK_OK)
        ERR_clear_error();
    return rc;
}
