/* test_key.c - API key parsing, formatting, generation and public keys. */
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "latchkey/key.h"
#include "lk_internal.h"
#include "test.h"

#define VECTORS_MAX 8

typedef struct key_vector {
    char env[8];
    char kid[LK_KID_BYTES];
    char scalar[65];
    char public_hex[2 * LK_PUBKEY_BYTES + 1];
    char key[LK_KEY_STR_BYTES];
} key_vector;

/* The vector files sit next to this source; __FILE__ is absolute under
 * CMake, so the test finds them from any working directory. */
static void vector_path(const char *name, char *out, size_t size)
{
    const char *slash = strrchr(__FILE__, '/');
    int dir = slash ? (int)(slash - __FILE__) : 1;
    snprintf(out, size, "%.*s/vectors/%s", dir, slash ? __FILE__ : ".", name);
}

/* Reads "name = value" records separated by blank lines. */
static int load_key_vectors(key_vector *v, int max)
{
    char path[1024], line[512];
    int n = 0, open_rec = 0;
    vector_path("key.txt", path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    memset(v, 0, sizeof *v * (size_t)max);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#')
            continue;
        if (line[0] == '\0') {
            if (open_rec)
                n++;
            open_rec = 0;
            continue;
        }
        if (n >= max)
            break;
        char *eq = strstr(line, " = ");
        if (!eq)
            continue;
        *eq = '\0';
        const char *val = eq + 3;
        key_vector *r = &v[n];
        open_rec = 1;
        if (!strcmp(line, "env"))
            snprintf(r->env, sizeof r->env, "%s", val);
        else if (!strcmp(line, "kid"))
            snprintf(r->kid, sizeof r->kid, "%s", val);
        else if (!strcmp(line, "scalar"))
            snprintf(r->scalar, sizeof r->scalar, "%s", val);
        else if (!strcmp(line, "public"))
            snprintf(r->public_hex, sizeof r->public_hex, "%s", val);
        else if (!strcmp(line, "key"))
            snprintf(r->key, sizeof r->key, "%s", val);
    }
    if (open_rec && n < max)
        n++;
    fclose(f);
    return n;
}

/* Parses from an exact-size heap copy, so ASan catches any read past len. */
static int parse_exact(const char *s, size_t len, lk_key **out, lk_error *err)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return LK_ENOMEM;
    memcpy(copy, s, len);
    int rc = lk_key_parse(copy, len, out, err);
    free(copy);
    return rc;
}

static int parse_str(const char *s, lk_key **out, lk_error *err)
{
    return parse_exact(s, strlen(s), out, err);
}

/* Builds "lk_<env>_<kid>_<secret>_<crc>" with a correct checksum. */
static void make_key(const char *env, const char *kid, const char *secret,
                     char *out, size_t size)
{
    int n = snprintf(out, size, "lk_%s_%s_%s", env, kid, secret);
    snprintf(out + n, size - (size_t)n, "_%08x", lk_crc32(out, (size_t)n));
}

static void test_crc32_known_answers(void)
{
    ASSERT_EQ(lk_crc32("123456789", 9), 0xcbf43926u);
    ASSERT_EQ(lk_crc32("", 0), 0);
    ASSERT_EQ(lk_crc32("a", 1), 0xe8b7be43u);
    ASSERT_EQ(lk_crc32("The quick brown fox jumps over the lazy dog", 43), 0x414fa339u);
}

static void test_env(void)
{
    lk_env e = LK_ENV_SBX;
    ASSERT_STREQ(lk_env_name(LK_ENV_LIVE), "live");
    ASSERT_STREQ(lk_env_name(LK_ENV_SBX), "sbx");
    ASSERT_RC(lk_env_parse("live", &e), LK_OK);
    ASSERT_EQ(e, LK_ENV_LIVE);
    ASSERT_RC(lk_env_parse("sbx", &e), LK_OK);
    ASSERT_EQ(e, LK_ENV_SBX);
    ASSERT_RC(lk_env_parse("LIVE", &e), LK_EINVAL);
    ASSERT_RC(lk_env_parse("sandbox", &e), LK_EINVAL);
    ASSERT_RC(lk_env_parse("", &e), LK_EINVAL);
    ASSERT_RC(lk_env_parse(NULL, &e), LK_EINVAL);
}

static void test_known_answer_vectors(void)
{
    key_vector v[VECTORS_MAX];
    int n = load_key_vectors(v, VECTORS_MAX);
    ASSERT_EQ(n, 4);
    for (int i = 0; i < n; i++) {
        lk_key *k = NULL;
        lk_error err = {0};
        char built[LK_KEY_STR_BYTES], formatted[LK_KEY_STR_BYTES];
        char pub_hex[2 * LK_PUBKEY_BYTES + 1];
        uint8_t pub[LK_PUBKEY_BYTES];

        make_key(v[i].env, v[i].kid, v[i].scalar, built, sizeof built);
        ASSERT_STREQ(built, v[i].key);
        ASSERT_RC(parse_str(v[i].key, &k, &err), LK_OK);
        ASSERT_STREQ(lk_key_kid(k), v[i].kid);
        ASSERT_STREQ(lk_env_name(lk_key_env(k)), v[i].env);
        lk_key_public(k, pub);
        lk__hex_encode(pub, sizeof pub, pub_hex);
        ASSERT_STREQ(pub_hex, v[i].public_hex);
        lk_key_format(k, formatted);
        ASSERT_STREQ(formatted, v[i].key);
        lk_key_destroy(k);
    }
}

static void test_generate_round_trip(void)
{
    for (int env = LK_ENV_LIVE; env <= LK_ENV_SBX; env++) {
        lk_key *a = NULL, *b = NULL, *c = NULL;
        char sa[LK_KEY_STR_BYTES], sb[LK_KEY_STR_BYTES], sc[LK_KEY_STR_BYTES];
        uint8_t pa[LK_PUBKEY_BYTES], pc[LK_PUBKEY_BYTES];

        ASSERT_RC(lk_key_generate((lk_env)env, &a, NULL), LK_OK);
        ASSERT_RC(lk_key_generate((lk_env)env, &b, NULL), LK_OK);
        lk_key_format(a, sa);
        lk_key_format(b, sb);
        ASSERT_EQ(strlen(sa), env == LK_ENV_LIVE ? 98 : 97);
        ASSERT_TRUE(strcmp(sa, sb) != 0);
        ASSERT_TRUE(strcmp(lk_key_kid(a), lk_key_kid(b)) != 0);
        ASSERT_EQ(lk_key_env(a), env);

        ASSERT_RC(parse_str(sa, &c, NULL), LK_OK);
        lk_key_format(c, sc);
        ASSERT_STREQ(sc, sa);
        ASSERT_STREQ(lk_key_kid(c), lk_key_kid(a));
        lk_key_public(a, pa);
        lk_key_public(c, pc);
        ASSERT_TRUE(memcmp(pa, pc, sizeof pa) == 0);
        ASSERT_EQ(pa[0], 0x04);
        OPENSSL_cleanse(sa, sizeof sa);
        lk_key_destroy(a);
        lk_key_destroy(b);
        lk_key_destroy(c);
    }
}

typedef struct bad_key {
    const char *why;
    char key[160];
    int want;
} bad_key;

static void test_parse_rejects_malformed(void)
{
    static const char kid[] = "a1b2c3d4e5f60718";
    static const char sec[] =
        "8250ad65b74f5afa7627ee00e05cd3c00214dca31a1608c8afdbfaa3485f307b";
    static const char n_hex[] =
        "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    char good[LK_KEY_STR_BYTES];
    bad_key cases[64];
    int nc = 0;
    size_t glen;

    make_key("live", kid, sec, good, sizeof good);
    glen = strlen(good);
#define CASE(w, code, ...)                                                   \
    do {                                                                    \
        cases[nc].why = (w);                                                \
        snprintf(cases[nc].key, sizeof cases[nc].key, __VA_ARGS__);         \
        cases[nc].want = (code);                                            \
        nc++;                                                               \
    } while (0)
    CASE("empty", LK_EKEY_FORMAT, "%s", "");
    CASE("prefix only", LK_EKEY_FORMAT, "lk");
    CASE("bad prefix", LK_EKEY_FORMAT, "sk_%s", good + 3);
    CASE("uppercase prefix", LK_EKEY_FORMAT, "LK_%s", good + 3);
    CASE("bad env", LK_EKEY_FORMAT, "lk_prod_%s", good + 8);
    CASE("uppercase env", LK_EKEY_FORMAT, "lk_LIVE_%s", good + 8);
    CASE("env without separator", LK_EKEY_FORMAT, "lk_live");
    CASE("env only", LK_EKEY_FORMAT, "lk_sbx_");
    CASE("uppercase kid", LK_EKEY_FORMAT, "lk_live_A1B2C3D4E5F60718_%s", good + 25);
    CASE("short kid", LK_EKEY_FORMAT, "lk_live_a1b2c3d4e5f6071_%s", good + 25);
    CASE("long kid", LK_EKEY_FORMAT, "lk_live_a1b2c3d4e5f607180_%s", good + 25);
    CASE("non-hex kid", LK_EKEY_FORMAT, "lk_live_g1b2c3d4e5f60718_%s", good + 25);
    CASE("empty kid", LK_EKEY_FORMAT, "lk_live__%s", good + 25);
    CASE("uppercase secret", LK_EKEY_FORMAT, "lk_live_%s_8250AD65B74F5AFA7627EE00E05CD3C00214DCA31A1608C8AFDBFAA3485F307B_%s", kid, good + 90);
    CASE("short secret", LK_EKEY_FORMAT, "lk_live_%s_%.63s_%s", kid, sec, good + 90);
    CASE("long secret", LK_EKEY_FORMAT, "lk_live_%s_%s0_%s", kid, sec, good + 90);
    CASE("missing secret", LK_EKEY_FORMAT, "lk_live_%s_%s", kid, good + 90);
    CASE("missing checksum", LK_EKEY_FORMAT, "lk_live_%s_%s", kid, sec);
    CASE("missing checksum, trailing _", LK_EKEY_FORMAT, "lk_live_%s_%s_", kid, sec);
    CASE("short checksum", LK_EKEY_FORMAT, "%.*s", (int)glen - 1, good);
    CASE("long checksum", LK_EKEY_FORMAT, "%s0", good);
    CASE("uppercase checksum", LK_EKEY_FORMAT, "lk_live_%s_%s_35BC17C9", kid, sec);
    CASE("extra _ at end", LK_EKEY_FORMAT, "%s_", good);
    CASE("extra part", LK_EKEY_FORMAT, "%s_00000000", good);
    CASE("extra _ inside", LK_EKEY_FORMAT, "lk_live_%s__%s", kid, good + 25);
    CASE("double separator after env", LK_EKEY_FORMAT, "lk_live__%s", good + 8);
    CASE("trailing newline", LK_EKEY_FORMAT, "%s\n", good);
    CASE("leading space", LK_EKEY_FORMAT, " %s", good);
    CASE("dash separators", LK_EKEY_FORMAT, "lk-live-%s", good + 8);
    CASE("checksum typo", LK_EKEY_CHECKSUM, "%.*s%c", (int)glen - 1, good,
         good[glen - 1] == '0' ? '1' : '0');
    CASE("secret typo", LK_EKEY_CHECKSUM, "lk_live_%s_9%s_%s", kid, sec + 1, good + 90);
    CASE("kid typo", LK_EKEY_CHECKSUM, "lk_live_b%s_%s", kid + 1, good + 25);
    CASE("env swapped", LK_EKEY_CHECKSUM, "lk_sbx_%s", good + 8);
    CASE("swapped secret digits", LK_EKEY_CHECKSUM, "lk_live_%s_2850%s_%s", kid, sec + 4, good + 90);
    make_key("live", kid, "0000000000000000000000000000000000000000000000000000000000000000",
             cases[nc].key, sizeof cases[nc].key);
    cases[nc].why = "scalar 0";
    cases[nc++].want = LK_EKEY_RANGE;
    make_key("sbx", kid, n_hex, cases[nc].key, sizeof cases[nc].key);
    cases[nc].why = "scalar n";
    cases[nc++].want = LK_EKEY_RANGE;
    make_key("live", kid, "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632552",
             cases[nc].key, sizeof cases[nc].key);
    cases[nc].why = "scalar n + 1";
    cases[nc++].want = LK_EKEY_RANGE;
    make_key("live", kid, "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
             cases[nc].key, sizeof cases[nc].key);
    cases[nc].why = "scalar 2^256 - 1";
    cases[nc++].want = LK_EKEY_RANGE;
#undef CASE

    /* Wrong separators under a checksum that covers them, so only the
     * field checks can refuse these. */
    {
        char body[LK_KEY_STR_BYTES];
        int n = snprintf(body, sizeof body, "lk_live_%s-%s", kid, sec);
        snprintf(cases[nc].key, sizeof cases[nc].key, "%s_%08x", body,
                 lk_crc32(body, (size_t)n));
        cases[nc].why = "'-' between kid and secret, checksum matching";
        cases[nc++].want = LK_EKEY_FORMAT;
        n = snprintf(body, sizeof body, "lk_live_%s_%s", kid, sec);
        snprintf(cases[nc].key, sizeof cases[nc].key, "%s-%08x", body,
                 lk_crc32(body, (size_t)n));
        cases[nc].why = "'-' between secret and checksum, checksum matching";
        cases[nc++].want = LK_EKEY_FORMAT;
    }

    for (int i = 0; i < nc; i++) {
        lk_key *k = (lk_key *)&cases[i]; /* must be reset to NULL */
        lk_error err = {0};
        int rc = parse_str(cases[i].key, &k, &err);
        if (rc != cases[i].want)
            fprintf(stderr, "case \"%s\": %s\n", cases[i].why, err.message);
        ASSERT_RC(rc, cases[i].want);
        ASSERT_NULL(k);
        ASSERT_EQ(err.code, cases[i].want);
        ASSERT_TRUE(err.message[0] != '\0');
        /* No failure may echo key material. */
        ASSERT_NULL(strstr(err.message, "8250ad65"));
        ASSERT_NULL(strstr(err.message, "a1b2c3d4"));
        if (strlen(cases[i].key) > 16)
            ASSERT_NULL(strstr(err.message, cases[i].key + 8));
    }

    /* The same secret with the CRC recomputed is simply another valid key. */
    char fixed[LK_KEY_STR_BYTES];
    lk_key *k = NULL;
    make_key("live", kid, "9250ad65b74f5afa7627ee00e05cd3c00214dca31a1608c8afdbfaa3485f307b",
             fixed, sizeof fixed);
    ASSERT_RC(parse_str(fixed, &k, NULL), LK_OK);
    lk_key_destroy(k);
    k = NULL;
    /* The first and last valid scalars. */
    make_key("live", kid, "0000000000000000000000000000000000000000000000000000000000000001",
             fixed, sizeof fixed);
    ASSERT_RC(parse_str(fixed, &k, NULL), LK_OK);
    lk_key_destroy(k);
    k = NULL;
    make_key("sbx", kid, "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550",
             fixed, sizeof fixed);
    ASSERT_RC(parse_str(fixed, &k, NULL), LK_OK);
    lk_key_destroy(k);
}

static void test_parse_respects_length(void)
{
    char good[LK_KEY_STR_BYTES + 8];
    lk_key *k = NULL;
    make_key("live", "a1b2c3d4e5f60718",
             "8250ad65b74f5afa7627ee00e05cd3c00214dca31a1608c8afdbfaa3485f307b", good,
             sizeof good);
    size_t len = strlen(good);
    /* Every strict prefix is refused, and nothing past len is read. */
    for (size_t i = 0; i < len; i++) {
        int rc = parse_exact(good, i, &k, NULL);
        ASSERT_TRUE(rc == LK_EKEY_FORMAT);
        ASSERT_NULL(k);
    }
    /* Trailing bytes outside len are ignored. */
    memcpy(good + len, "garbage", 8);
    ASSERT_RC(lk_key_parse(good, len, &k, NULL), LK_OK);
    lk_key_destroy(k);
    /* An embedded NUL is a malformed key, not a shorter one. */
    good[len - 3] = '\0';
    ASSERT_RC(lk_key_parse(good, len, &k, NULL), LK_EKEY_FORMAT);
    ASSERT_RC(lk_key_parse(NULL, 0, &k, NULL), LK_EINVAL);
    ASSERT_RC(lk_key_parse(good, len, NULL, NULL), LK_EINVAL);
}

static void test_private_pem(void)
{
    key_vector v[VECTORS_MAX];
    lk_key *k = NULL;
    char *pem = NULL;
    uint8_t want[LK_PUBKEY_BYTES], got[LK_PUBKEY_BYTES];
    size_t got_len = sizeof got;

    ASSERT_EQ(load_key_vectors(v, VECTORS_MAX), 4);
    ASSERT_RC(parse_str(v[2].key, &k, NULL), LK_OK);
    ASSERT_RC(lk_key_private_pem(k, &pem, NULL), LK_OK);
    ASSERT_TRUE(strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);

    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ASSERT_NOT_NULL(pk);
    ASSERT_EQ(EVP_PKEY_get_bits(pk), 256);
    ASSERT_EQ(EVP_PKEY_get_octet_string_param(pk, "encoded-pub-key", got, sizeof got,
                                              &got_len), 1);
    lk_key_public(k, want);
    ASSERT_EQ(got_len, LK_PUBKEY_BYTES);
    ASSERT_TRUE(memcmp(got, want, sizeof want) == 0);
    EVP_PKEY_free(pk);
    OPENSSL_cleanse(pem, strlen(pem));
    lk_free(pem);
    lk_key_destroy(k);
}

static void test_pubkey(void)
{
    key_vector v[VECTORS_MAX];
    uint8_t raw[LK_PUBKEY_BYTES];
    lk_pubkey *p = NULL;
    char *pem = NULL;
    lk_error err = {0};

    ASSERT_EQ(load_key_vectors(v, VECTORS_MAX), 4);
    ASSERT_EQ(lk__hex_decode(v[0].public_hex, sizeof raw, raw), 0);
    ASSERT_RC(lk_pubkey_create(raw, &p, NULL), LK_OK);
    ASSERT_RC(lk_pubkey_to_pem(p, &pem, NULL), LK_OK);
    ASSERT_TRUE(strncmp(pem, "-----BEGIN PUBLIC KEY-----\n", 27) == 0);

    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ASSERT_NOT_NULL(pk);
    uint8_t got[LK_PUBKEY_BYTES];
    size_t got_len = 0;
    ASSERT_EQ(EVP_PKEY_get_octet_string_param(pk, "encoded-pub-key", got, sizeof got,
                                              &got_len), 1);
    ASSERT_TRUE(got_len == sizeof raw && memcmp(got, raw, sizeof raw) == 0);
    EVP_PKEY_free(pk);
    lk_free(pem);
    lk_pubkey_destroy(p);

    /* Off the curve: the generator with y + 1. */
    p = (lk_pubkey *)raw;
    raw[LK_PUBKEY_BYTES - 1] ^= 0x01;
    ASSERT_RC(lk_pubkey_create(raw, &p, &err), LK_EINVAL);
    ASSERT_NULL(p);
    raw[LK_PUBKEY_BYTES - 1] ^= 0x01;
    raw[0] = 0x02; /* compressed form is not accepted */
    ASSERT_RC(lk_pubkey_create(raw, &p, NULL), LK_EINVAL);
    memset(raw, 0, sizeof raw);
    raw[0] = 0x04;
    ASSERT_RC(lk_pubkey_create(raw, &p, NULL), LK_EINVAL);
    memset(raw, 0xff, sizeof raw);
    raw[0] = 0x04; /* coordinates >= p */
    ASSERT_RC(lk_pubkey_create(raw, &p, NULL), LK_EINVAL);
    ASSERT_RC(lk_pubkey_create(NULL, &p, NULL), LK_EINVAL);
}

static void test_public_matches_private(void)
{
    lk_key *k = NULL;
    lk_pubkey *p = NULL;
    uint8_t raw[LK_PUBKEY_BYTES], digest[LK__SHA256_BYTES], sig[LK__SIG_BYTES];

    ASSERT_RC(lk_key_generate(LK_ENV_LIVE, &k, NULL), LK_OK);
    lk_key_public(k, raw);
    ASSERT_RC(lk_pubkey_create(raw, &p, NULL), LK_OK);
    memset(digest, 0x5a, sizeof digest);
    ASSERT_RC(lk__key_sign(k, digest, sizeof digest, sig), LK_OK);
    ASSERT_RC(lk__pubkey_verify(p, digest, sizeof digest, sig), LK_OK);
    /* The cached contexts survive repeated use. */
    for (int i = 0; i < 5; i++) {
        digest[0] = (uint8_t)i;
        ASSERT_RC(lk__key_sign(k, digest, sizeof digest, sig), LK_OK);
        ASSERT_RC(lk__pubkey_verify(p, digest, sizeof digest, sig), LK_OK);
    }
    digest[1] ^= 1;
    ASSERT_RC(lk__pubkey_verify(p, digest, sizeof digest, sig), LK_ETOKEN_SIGNATURE);
    memset(sig, 0, sizeof sig);
    ASSERT_RC(lk__pubkey_verify(p, digest, sizeof digest, sig), LK_ETOKEN_SIGNATURE);
    memset(sig, 0xff, sizeof sig);
    ASSERT_RC(lk__pubkey_verify(p, digest, sizeof digest, sig), LK_ETOKEN_SIGNATURE);
    lk_pubkey_destroy(p);
    lk_key_destroy(k);
}

/* Overwrites the 32-byte big-endian half of a raw signature with `v`. */
static void set_half(uint8_t half[32], const BIGNUM *v)
{
    BN_bn2binpad(v, half, 32);
}

/* ECDSA values at and around the group order: 0 and >= n are refused as a
 * bad signature (never an internal error); the high-S twin of a valid
 * signature verifies, as in every other ES256 implementation, so a token's
 * bytes are not unique and must never serve as its identity. */
static void test_verify_scalar_edges(void)
{
    lk_key *k = NULL;
    lk_pubkey *p = NULL;
    uint8_t raw[LK_PUBKEY_BYTES], msg[48], sig[LK__SIG_BYTES], bad[LK__SIG_BYTES];
    BIGNUM *n = NULL, *r = NULL, *s = NULL, *t = BN_new();

    ASSERT_NOT_NULL(t);
    ASSERT_TRUE(BN_hex2bn(&n, "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"));
    ASSERT_RC(lk_key_generate(LK_ENV_LIVE, &k, NULL), LK_OK);
    lk_key_public(k, raw);
    ASSERT_RC(lk_pubkey_create(raw, &p, NULL), LK_OK);
    memset(msg, 0x33, sizeof msg);
    ASSERT_RC(lk__key_sign(k, msg, sizeof msg, sig), LK_OK);
    ASSERT_RC(lk__pubkey_verify(p, msg, sizeof msg, sig), LK_OK);
    r = BN_bin2bn(sig, 32, NULL);
    s = BN_bin2bn(sig + 32, 32, NULL);
    ASSERT_TRUE(r && s);

    /* r = 0, s = 0, r = n, s = n, r + n (when it fits), s + n (idem). */
    memcpy(bad, sig, sizeof bad);
    memset(bad, 0, 32);
    ASSERT_RC(lk__pubkey_verify(p, msg, sizeof msg, bad), LK_ETOKEN_SIGNATURE);
    memcpy(bad, sig, sizeof bad);
    memset(bad + 32, 0, 32);
    ASSERT_RC(lk__pubkey_verify(p, msg, sizeof msg, bad), LK_ETOKEN_SIGNATURE);
    memcpy(bad, sig, sizeof bad);
    set_half(bad, n);
    ASSERT_RC(lk__pubkey_verify(p, msg, sizeof msg, bad), LK_ETOKEN_SIGNATURE);
    memcpy(bad, sig, sizeof bad);
    set_half(bad + 32, n);
    ASSERT_RC(lk__pubkey_verify(p, msg, sizeof msg, bad), LK_ETOKEN_SIGNATURE);
    ASSERT_TRUE(BN_add(t, r, n));
    if (BN_num_bytes(t) <= 32) {
        memcpy(bad, sig, sizeof bad);
        set_half(bad, t);
        ASSERT_RC(lk__pubkey_verify(p, msg, sizeof msg, bad), LK_ETOKEN_SIGNATURE);
    }
    ASSERT_TRUE(BN_add(t, s, n));
    if (BN_num_bytes(t) <= 32) {
        memcpy(bad, sig, sizeof bad);
        set_half(bad + 32, t);
        ASSERT_RC(lk__pubkey_verify(p, msg, sizeof msg, bad), LK_ETOKEN_SIGNATURE);
    }
    /* n - s: the other valid s for the same r. */
    ASSERT_TRUE(BN_sub(t, n, s));
    memcpy(bad, sig, sizeof bad);
    set_half(bad + 32, t);
    ASSERT_RC(lk__pubkey_verify(p, msg, sizeof msg, bad), LK_OK);
    /* ...but not for another message. */
    msg[0] ^= 1;
    ASSERT_RC(lk__pubkey_verify(p, msg, sizeof msg, bad), LK_ETOKEN_SIGNATURE);

    BN_free(n);
    BN_free(r);
    BN_free(s);
    BN_free(t);
    lk_pubkey_destroy(p);
    lk_key_destroy(k);
}

static void test_random_pool(void)
{
    lk_key *k = NULL;
    uint8_t prev[16] = {0}, cur[16], child[16];
    int fds[2];

    ASSERT_RC(lk_key_generate(LK_ENV_LIVE, &k, NULL), LK_OK);
    /* Enough draws to refill the pool several times; no repeats. */
    for (int i = 0; i < 1000; i++) {
        ASSERT_RC(lk__key_random(k, cur, sizeof cur), LK_OK);
        ASSERT_TRUE(memcmp(cur, prev, sizeof cur) != 0);
        memcpy(prev, cur, sizeof cur);
    }
    /* A forked child must not hand out the bytes its parent uses next. */
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        uint8_t c[16] = {0};
        int ok = lk__key_random(k, c, sizeof c) == LK_OK &&
                 write(fds[1], c, sizeof c) == (ssize_t)sizeof c;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    ASSERT_RC(lk__key_random(k, cur, sizeof cur), LK_OK);
    ASSERT_EQ(read(fds[0], child, sizeof child), (ssize_t)sizeof child);
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT_TRUE(memcmp(cur, child, sizeof cur) != 0);
    close(fds[0]);
    close(fds[1]);
    /* Larger requests bypass the pool but still work, even past its size. */
    uint8_t big[100];
    ASSERT_RC(lk__key_random(k, big, sizeof big), LK_OK);
    uint8_t *huge = calloc(1, 3 * 4096);
    ASSERT_NOT_NULL(huge);
    ASSERT_RC(lk__key_random(k, huge, 3 * 4096), LK_OK);
    ASSERT_TRUE(memcmp(huge, huge + 4096, 4096) != 0);
    free(huge);
    lk_key_destroy(k);
}

static void test_destroy_null_and_bad_args(void)
{
    lk_key *k = NULL;
    lk_key_destroy(NULL);
    lk_pubkey_destroy(NULL);
    ASSERT_RC(lk_key_generate((lk_env)7, &k, NULL), LK_EINVAL);
    ASSERT_NULL(k);
    ASSERT_RC(lk_key_generate(LK_ENV_LIVE, NULL, NULL), LK_EINVAL);
    ASSERT_RC(lk_key_private_pem(NULL, NULL, NULL), LK_EINVAL);
}

LK_TEST_MAIN("key",
             LK_TEST(test_crc32_known_answers),
             LK_TEST(test_env),
             LK_TEST(test_known_answer_vectors),
             LK_TEST(test_generate_round_trip),
             LK_TEST(test_parse_rejects_malformed),
             LK_TEST(test_parse_respects_length),
             LK_TEST(test_private_pem),
             LK_TEST(test_pubkey),
             LK_TEST(test_public_matches_private),
             LK_TEST(test_verify_scalar_edges),
             LK_TEST(test_random_pool),
             LK_TEST(test_destroy_null_and_bad_args))
