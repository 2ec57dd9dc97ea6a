/* test_token.c - minting and verifying client tokens, including every
 * rejection path and a cross-check against libjwt as an independent codec. */
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "latchkey/token.h"
#include "lk_internal.h"
#include "test.h"

#define NOW 1700000000
#define CAP "{\"chat:*\":[\"realtime:subscribe\",\"realtime:publish\"],\"news\":[\"realtime:subscribe\"]}"
#define CAP_CANON "{\"chat:*\":[\"realtime:publish\",\"realtime:subscribe\"],\"news\":[\"realtime:subscribe\"]}"
#define JTI "0123456789abcdefghij"

/* ---- fixture: two keys and a resolver that knows them ----------------- */

typedef struct entry {
    const char *kid;
    lk_pubkey *pub;
    int revoked;
    uint32_t scopes;
    const char *workspace;
} entry;

typedef struct fixture {
    lk_key *key, *other;
    entry e[2];
    int n;
    int calls;
    int fail_rc; /* nonzero: the resolver fails with this */
} fixture;

static int resolve(void *ud, const char *kid, lk_key_info *info)
{
    fixture *f = ud;
    f->calls++;
    if (f->fail_rc)
        return f->fail_rc;
    for (int i = 0; i < f->n; i++) {
        if (strcmp(f->e[i].kid, kid) == 0) {
            info->pubkey = f->e[i].pub;
            info->revoked = f->e[i].revoked;
            info->scopes = f->e[i].scopes;
            info->workspace = f->e[i].workspace;
            return LK_OK;
        }
    }
    return LK_ENOTFOUND;
}

static lk_pubkey *pub_of(const lk_key *k)
{
    uint8_t raw[LK_PUBKEY_BYTES];
    lk_pubkey *p = NULL;
    lk_key_public(k, raw);
    return lk_pubkey_create(raw, &p, NULL) == LK_OK ? p : NULL;
}

/* Only `key` is registered; `other` signs tokens the registry never saw. */
static int fx_init(fixture *f)
{
    memset(f, 0, sizeof *f);
    if (lk_key_generate(LK_ENV_LIVE, &f->key, NULL) ||
        lk_key_generate(LK_ENV_LIVE, &f->other, NULL))
        return -1;
    f->e[0] = (entry){lk_key_kid(f->key), pub_of(f->key), 0, LK_ACT_ALL, "ws_test"};
    f->n = 1;
    return f->e[0].pub ? 0 : -1;
}

static void fx_free(fixture *f)
{
    for (int i = 0; i < f->n; i++)
        lk_pubkey_destroy(f->e[i].pub);
    lk_key_destroy(f->key);
    lk_key_destroy(f->other);
}

static int verify_at(fixture *f, const char *tok, int64_t now, lk_claims **c,
                     lk_error *err)
{
    lk_verify_opts o = {.now = now};
    return lk_token_verify(tok, strlen(tok), &o, resolve, f, c, err);
}

/* Verifies and discards the claims; returns the code. */
static int check(fixture *f, const char *tok, const lk_verify_opts *o)
{
    lk_claims *c = (lk_claims *)f; /* must come back NULL on failure */
    lk_error err = {0};
    int rc = lk_token_verify(tok, strlen(tok), o, resolve, f, &c, &err);
    if (rc != LK_OK && c != NULL)
        return 12345; /* out-parameter not cleared */
    if (rc != LK_OK && (err.code != rc || !err.message[0]))
        return 12346; /* no error detail */
    lk_claims_destroy(c);
    return rc;
}

static int check_at(fixture *f, const char *tok, int64_t now)
{
    lk_verify_opts o = {.now = now};
    return check(f, tok, &o);
}

/* ---- hand-built tokens -------------------------------------------------- */

static char *b64(const void *data, size_t n)
{
    char *s = malloc(LK__B64URL_LEN(n) + 1);
    lk__b64url_encode(data, n, s);
    return s;
}

static char *join3(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *s = malloc(n);
    snprintf(s, n, "%s.%s.%s", a, b, c);
    return s;
}

enum sig_mode { SIG_ES256, SIG_NONE, SIG_JUNK64 };

/* header.payload (of explicit lengths, so they may hold NUL bytes) signed
 * as asked. Caller frees. */
static char *forge_n(lk_key *k, const char *header, size_t hn, const char *payload,
                     size_t pn, enum sig_mode mode)
{
    char *h = b64(header, hn), *p = b64(payload, pn);
    char *input = join3(h, p, "");
    size_t in_len = strlen(input) - 1; /* drop the trailing '.' */
    uint8_t sig[LK__SIG_BYTES];
    char *s;

    if (mode == SIG_ES256) {
        if (lk__key_sign(k, input, in_len, sig) != LK_OK)
            memset(sig, 0, sizeof sig);
        s = b64(sig, sizeof sig);
    } else if (mode == SIG_JUNK64) {
        memset(sig, 0x42, sizeof sig);
        s = b64(sig, sizeof sig);
    } else {
        s = strdup("");
    }
    char *tok = join3(h, p, s);
    free(h);
    free(p);
    free(s);
    free(input);
    return tok;
}

static char *forge(lk_key *k, const char *header, const char *payload, enum sig_mode mode)
{
    return forge_n(k, header, strlen(header), payload, strlen(payload), mode);
}

static char *std_header(const lk_key *k, char *buf, size_t n)
{
    snprintf(buf, n, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", lk_key_kid(k));
    return buf;
}

/* A token with the standard header and the given claims, signed by `k`. */
static char *signed_claims(lk_key *k, const char *claims)
{
    char h[128];
    return forge(k, std_header(k, h, sizeof h), claims, SIG_ES256);
}

static char *claims_fmt(char *buf, size_t n, int64_t iat, int64_t exp, const char *extra)
{
    snprintf(buf, n, "{\"iat\":%lld,\"exp\":%lld,\"jti\":\"" JTI "\",\"cap\":" CAP "%s}",
             (long long)iat, (long long)exp, extra);
    return buf;
}

static char *mint(lk_key *k, int64_t now, int64_t ttl, const char *sub, const char *aud)
{
    lk_mint_opts o = {.capability = CAP, .ttl = ttl, .client_id = sub, .audience = aud,
                      .now = now};
    char *tok = NULL;
    lk_error err = {0};
    if (lk_token_mint(k, &o, &tok, &err) != LK_OK)
        fprintf(stderr, "mint failed: %s\n", err.message);
    return tok;
}

/* Decodes segment `i` (0 header, 1 payload) of a token into a string. */
static char *segment(const char *tok, int i)
{
    const char *s = tok;
    for (int k = 0; k < i; k++)
        s = strchr(s, '.') + 1;
    size_t n = strcspn(s, ".");
    char *out = malloc(n * 3 / 4 + 2);
    long m = lk__b64url_decode(s, n, (uint8_t *)out);
    out[m < 0 ? 0 : m] = '\0';
    return out;
}

/* ---- tests --------------------------------------------------------------- */

static void test_round_trip_all_claims(void)
{
    fixture f;
    ASSERT_EQ(fx_init(&f), 0);
    lk_mint_opts o = {.capability = CAP, .ttl = 300, .client_id = "user \"42\"\n\xc3\xa9",
                      .audience = "latchkey-test", .now = NOW, .nbf = NOW + 10};
    char *tok = NULL;
    lk_claims *c = NULL;
    lk_error err = {0};
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, &err), LK_OK);

    lk_verify_opts vo = {.now = NOW + 10, .audience = "latchkey-test"};
    ASSERT_RC(lk_token_verify(tok, strlen(tok), &vo, resolve, &f, &c, &err), LK_OK);
    ASSERT_EQ(f.calls, 1);
    ASSERT_STREQ(lk_claims_kid(c), lk_key_kid(f.key));
    ASSERT_STREQ(lk_claims_sub(c), "user \"42\"\n\xc3\xa9");
    ASSERT_STREQ(lk_claims_workspace(c), "ws_test");
    ASSERT_EQ(lk_claims_iat(c), NOW);
    ASSERT_EQ(lk_claims_exp(c), NOW + 300);
    ASSERT_EQ(lk_claims_nbf(c), NOW + 10);
    ASSERT_EQ(strlen(lk_claims_jti(c)), 22);
    const lk_cap *cap = lk_claims_cap(c);
    ASSERT_NOT_NULL(cap);
    ASSERT_TRUE(lk_cap_allows(cap, LK_ACT_PUBLISH, "chat:lobby", 10));
    ASSERT_TRUE(lk_cap_allows(cap, LK_ACT_SUBSCRIBE, "news", 4));
    ASSERT_FALSE(lk_cap_allows(cap, LK_ACT_PUBLISH, "news", 4));
    char *cj = lk_cap_to_json(cap);
    ASSERT_STREQ(cj, CAP_CANON);
    lk_free(cj);
    lk_claims_destroy(c);

    /* Nothing in the token but the three parts of a JWS. */
    char *h = segment(tok, 0), *p = segment(tok, 1);
    char want_h[128];
    ASSERT_STREQ(h, std_header(f.key, want_h, sizeof want_h));
    ASSERT_NOT_NULL(strstr(p, "\"cap\":" CAP_CANON));
    ASSERT_NOT_NULL(strstr(p, "\"aud\":\"latchkey-test\""));
    ASSERT_EQ(strlen(strrchr(tok, '.') + 1), 86);
    free(h);
    free(p);
    lk_free(tok);
    fx_free(&f);
}

static void test_mint_defaults(void)
{
    fixture f;
    ASSERT_EQ(fx_init(&f), 0);
    char *tok = mint(f.key, 0, 0, NULL, NULL);
    lk_claims *c = NULL;
    ASSERT_NOT_NULL(tok);
    /* now = 0 on both sides means the current time. */
    ASSERT_RC(lk_token_verify(tok, strlen(tok), NULL, resolve, &f, &c, NULL), LK_OK);
    ASSERT_EQ(lk_claims_exp(c) - lk_claims_iat(c), LK_TOKEN_DEFAULT_TTL);
    ASSERT_NULL(lk_claims_sub(c));
    ASSERT_EQ(lk_claims_nbf(c), 0);
    char *p = segment(tok, 1);
    ASSERT_NULL(strstr(p, "\"sub\""));
    ASSERT_NULL(strstr(p, "\"aud\""));
    ASSERT_NULL(strstr(p, "\"nbf\""));
    free(p);
    /* Two mints differ in jti. */
    char *tok2 = mint(f.key, 0, 0, NULL, NULL);
    lk_claims *c2 = NULL;
    ASSERT_RC(lk_token_verify(tok2, strlen(tok2), NULL, resolve, &f, &c2, NULL), LK_OK);
    ASSERT_TRUE(strcmp(lk_claims_jti(c), lk_claims_jti(c2)) != 0);
    lk_claims_destroy(c);
    lk_claims_destroy(c2);
    lk_free(tok);
    lk_free(tok2);
    fx_free(&f);
}

static void test_mint_refusals(void)
{
    fixture f;
    char *tok = (char *)&f;
    lk_error err = {0};
    char big_sub[LK_SUB_MAX + 2];
    ASSERT_EQ(fx_init(&f), 0);
    lk_mint_opts o = {.capability = CAP, .now = NOW};

    o.ttl = -1;
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, &err), LK_ETTL);
    ASSERT_NULL(tok);
    ASSERT_EQ(err.code, LK_ETTL);
    o.ttl = 86401;
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_ETTL);
    o.ttl = INT64_MIN;
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_ETTL);
    o.ttl = 86400;
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_OK);
    lk_free(tok);
    o.ttl = 1;
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_OK);
    lk_free(tok);
    o.ttl = 0;

    o.capability = "{}";
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, &err), LK_ECAP);
    o.capability = "{\"chat\":[\"realtime:dance\"]}";
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, &err), LK_ECAP);
    ASSERT_NOT_NULL(strstr(err.message, "realtime:dance"));
    o.capability = "not json";
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_ECAP);
    o.capability = NULL;
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_ECAP);
    o.capability = CAP;

    memset(big_sub, 'u', sizeof big_sub - 1);
    big_sub[LK_SUB_MAX + 1] = '\0';
    o.client_id = big_sub;
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_EINVAL);
    big_sub[LK_SUB_MAX] = '\0';
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_OK);
    lk_free(tok);
    o.client_id = "";
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_EINVAL);
    o.client_id = "bad \xff utf-8";
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_EINVAL);
    o.client_id = NULL;

    ASSERT_RC(lk_token_mint(NULL, &o, &tok, NULL), LK_EINVAL);
    ASSERT_RC(lk_token_mint(f.key, NULL, &tok, NULL), LK_EINVAL);
    ASSERT_RC(lk_token_mint(f.key, &o, NULL, NULL), LK_EINVAL);
    fx_free(&f);
}

static void test_mint_refuses_oversized_token(void)
{
    fixture f;
    char *tok = NULL;
    ASSERT_EQ(fx_init(&f), 0);
    /* 60 patterns of ~100 bytes: a valid capability, too big a token. */
    size_t cap_size = 60 * 140 + 16;
    char *cap = malloc(cap_size);
    size_t o = 0;
    cap[o++] = '{';
    for (int i = 0; i < 60; i++)
        o += (size_t)snprintf(cap + o, cap_size - o,
                              "%s\"room:%03d:%090d\":[\"realtime:subscribe\"]",
                              i ? "," : "", i, 0);
    cap[o++] = '}';
    cap[o] = '\0';
    lk_mint_opts mo = {.capability = cap, .now = NOW};
    lk_error err = {0};
    ASSERT_RC(lk_token_mint(f.key, &mo, &tok, &err), LK_ETOKEN_TOO_LARGE);
    ASSERT_NULL(tok);
    free(cap);
    fx_free(&f);
}

static void test_known_answer_token(void)
{
    char path[1024], line[2048];
    char key[LK_KEY_STR_BYTES] = "", token[1024] = "", jti[64] = "", sub[64] = "";
    char aud[64] = "", cap[256] = "";
    long long now = 0, iat = 0, exp = 0;
    const char *slash = strrchr(__FILE__, '/');
    snprintf(path, sizeof path, "%.*s/vectors/token.txt", (int)(slash - __FILE__), __FILE__);
    FILE *fp = fopen(path, "r");
    ASSERT_NOT_NULL(fp);
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *eq = strstr(line, " = ");
        if (line[0] == '#' || !eq)
            continue;
        *eq = '\0';
        const char *v = eq + 3;
        if (!strcmp(line, "key")) snprintf(key, sizeof key, "%s", v);
        else if (!strcmp(line, "token")) snprintf(token, sizeof token, "%s", v);
        else if (!strcmp(line, "now")) now = atoll(v);
        else if (!strcmp(line, "iat")) iat = atoll(v);
        else if (!strcmp(line, "exp")) exp = atoll(v);
        else if (!strcmp(line, "jti")) snprintf(jti, sizeof jti, "%s", v);
        else if (!strcmp(line, "sub")) snprintf(sub, sizeof sub, "%s", v);
        else if (!strcmp(line, "aud")) snprintf(aud, sizeof aud, "%s", v);
        else if (!strcmp(line, "cap")) snprintf(cap, sizeof cap, "%s", v);
    }
    fclose(fp);

    fixture f;
    memset(&f, 0, sizeof f);
    ASSERT_RC(lk_key_parse(key, strlen(key), &f.key, NULL), LK_OK);
    f.e[0] = (entry){lk_key_kid(f.key), pub_of(f.key), 0, LK_ACT_ALL, NULL};
    f.n = 1;
    lk_verify_opts o = {.now = now, .audience = aud};
    lk_claims *c = NULL;
    ASSERT_RC(lk_token_verify(token, strlen(token), &o, resolve, &f, &c, NULL), LK_OK);
    ASSERT_EQ(lk_claims_iat(c), iat);
    ASSERT_EQ(lk_claims_exp(c), exp);
    ASSERT_STREQ(lk_claims_jti(c), jti);
    ASSERT_STREQ(lk_claims_sub(c), sub);
    ASSERT_NULL(lk_claims_workspace(c));
    char *cj = lk_cap_to_json(lk_claims_cap(c));
    ASSERT_STREQ(cj, cap);
    lk_free(cj);
    lk_claims_destroy(c);
    ASSERT_RC(check_at(&f, token, exp), LK_ETOKEN_EXPIRED);
    o.audience = "someone-else";
    ASSERT_RC(check(&f, token, &o), LK_ETOKEN_AUDIENCE);
    fx_free(&f);
}

static void test_libjwt_decodes_our_tokens(void)
{
    fixture f;
    ASSERT_EQ(fx_init(&f), 0);
    char *pem = NULL;
    ASSERT_RC(lk_pubkey_to_pem(f.e[0].pub, &pem, NULL), LK_OK);
    char *tok = mint(f.key, 0, 120, "client-7", NULL);
    ASSERT_NOT_NULL(tok);

    jwt_t *j = NULL;
    ASSERT_EQ(jwt_decode(&j, tok, (const unsigned char *)pem, (int)strlen(pem)), 0);
    ASSERT_EQ(jwt_get_alg(j), JWT_ALG_ES256);
    ASSERT_STREQ(jwt_get_header(j, "kid"), lk_key_kid(f.key));
    ASSERT_STREQ(jwt_get_header(j, "typ"), "JWT");
    ASSERT_STREQ(jwt_get_grant(j, "sub"), "client-7");
    ASSERT_EQ(jwt_get_grant_int(j, "exp") - jwt_get_grant_int(j, "iat"), 120);
    char *cap = jwt_get_grants_json(j, "cap");
    ASSERT_NOT_NULL(cap);
    free(cap);
    jwt_free(j);

    /* libjwt must also reject one of ours once tampered with. */
    char *bad = strdup(tok);
    char *sig = strrchr(bad, '.') + 1;
    sig[5] = sig[5] == 'A' ? 'B' : 'A';
    j = NULL;
    ASSERT_NE(jwt_decode(&j, bad, (const unsigned char *)pem, (int)strlen(pem)), 0);
    jwt_free(j);
    free(bad);

    /* A key libjwt does not know the token by must fail too. */
    lk_pubkey *op = pub_of(f.other);
    char *opem = NULL;
    ASSERT_RC(lk_pubkey_to_pem(op, &opem, NULL), LK_OK);
    j = NULL;
    ASSERT_NE(jwt_decode(&j, tok, (const unsigned char *)opem, (int)strlen(opem)), 0);
    jwt_free(j);
    lk_free(opem);
    lk_pubkey_destroy(op);
    lk_free(pem);
    lk_free(tok);
    fx_free(&f);
}

static void test_libjwt_minted_tokens_verify(void)
{
    fixture f;
    ASSERT_EQ(fx_init(&f), 0);
    char *priv = NULL;
    ASSERT_RC(lk_key_private_pem(f.key, &priv, NULL), LK_OK);

    for (int i = 0; i < 3; i++) {
        jwt_t *j = NULL;
        ASSERT_EQ(jwt_new(&j), 0);
        ASSERT_EQ(jwt_add_grant_int(j, "iat", NOW), 0);
        ASSERT_EQ(jwt_add_grant_int(j, "exp", NOW + 600), 0);
        ASSERT_EQ(jwt_add_grant(j, "jti", "libjwt-jti-0000000001"), 0);
        ASSERT_EQ(jwt_add_grant(j, "sub", "from-libjwt"), 0);
        ASSERT_EQ(jwt_add_grants_json(j, "{\"cap\":" CAP "}"), 0);
        ASSERT_EQ(jwt_add_header(j, "kid", lk_key_kid(f.key)), 0);
        ASSERT_EQ(jwt_set_alg(j, JWT_ALG_ES256, (const unsigned char *)priv,
                              (int)strlen(priv)), 0);
        char *tok = jwt_encode_str(j);
        jwt_free(j);
        ASSERT_NOT_NULL(tok);

        lk_claims *c = NULL;
        lk_error err = {0};
        int rc = verify_at(&f, tok, NOW + 1, &c, &err);
        if (rc)
            fprintf(stderr, "libjwt token refused: %s\n", err.message);
        ASSERT_RC(rc, LK_OK);
        ASSERT_STREQ(lk_claims_sub(c), "from-libjwt");
        ASSERT_STREQ(lk_claims_jti(c), "libjwt-jti-0000000001");
        lk_claims_destroy(c);
        ASSERT_RC(check_at(&f, tok, NOW + 600), LK_ETOKEN_EXPIRED);
        free(tok);
    }
    OPENSSL_cleanse(priv, strlen(priv));
    lk_free(priv);
    fx_free(&f);
}

static void test_alg_none(void)
{
    fixture f;
    char h[160], cl[512];
    ASSERT_EQ(fx_init(&f), 0);
    claims_fmt(cl, sizeof cl, NOW, NOW + 600, "");
    const char *kid = lk_key_kid(f.key);

    snprintf(h, sizeof h, "{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"%s\"}", kid);
    char *t1 = forge(f.key, h, cl, SIG_NONE);
    char *t2 = forge(f.key, h, cl, SIG_ES256);
    snprintf(h, sizeof h, "{\"alg\":\"none\"}");
    char *t3 = forge(f.key, h, cl, SIG_NONE);
    snprintf(h, sizeof h, "{\"alg\":\"NONE\",\"kid\":\"%s\"}", kid);
    char *t4 = forge(f.key, h, cl, SIG_NONE);
    ASSERT_RC(check_at(&f, t1, NOW), LK_ETOKEN_ALG);
    ASSERT_RC(check_at(&f, t2, NOW), LK_ETOKEN_ALG);
    ASSERT_RC(check_at(&f, t3, NOW), LK_ETOKEN_ALG);
    ASSERT_RC(check_at(&f, t4, NOW), LK_ETOKEN_ALG);
    /* The kid is never even looked up. */
    ASSERT_EQ(f.calls, 0);
    /* "alg":"ES256" without a signature is a signature failure. */
    char *t5 = forge(f.key, std_header(f.key, h, sizeof h), cl, SIG_NONE);
    ASSERT_RC(check_at(&f, t5, NOW), LK_ETOKEN_SIGNATURE);
    free(t1);
    free(t2);
    free(t3);
    free(t4);
    free(t5);
    fx_free(&f);
}

static void test_hs256_with_public_pem_refused(void)
{
    fixture f;
    char h[160], cl[512];
    ASSERT_EQ(fx_init(&f), 0);
    char *pem = NULL;
    ASSERT_RC(lk_pubkey_to_pem(f.e[0].pub, &pem, NULL), LK_OK);
    claims_fmt(cl, sizeof cl, NOW, NOW + 600, "");
    snprintf(h, sizeof h, "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
             lk_key_kid(f.key));
    char *hb = b64(h, strlen(h)), *pb = b64(cl, strlen(cl));
    char *input = join3(hb, pb, "");
    input[strlen(input) - 1] = '\0';
    unsigned char mac[32];
    unsigned int mac_len = 0;
    ASSERT_NOT_NULL(HMAC(EVP_sha256(), pem, (int)strlen(pem), (unsigned char *)input,
                         strlen(input), mac, &mac_len));
    ASSERT_EQ(mac_len, 32);
    char *sb = b64(mac, mac_len);
    char *tok = join3(hb, pb, sb);
    ASSERT_RC(check_at(&f, tok, NOW), LK_ETOKEN_ALG);
    /* Padding the MAC to 64 bytes does not help either. */
    uint8_t sig64[64] = {0};
    memcpy(sig64, mac, 32);
    char *sb64 = b64(sig64, 64);
    char *tok64 = join3(hb, pb, sb64);
    ASSERT_RC(check_at(&f, tok64, NOW), LK_ETOKEN_ALG);
    free(hb);
    free(pb);
    free(sb);
    free(sb64);
    free(input);
    free(tok);
    free(tok64);
    lk_free(pem);
    fx_free(&f);
}

/* Copies `tmpl` with every "@KID@" replaced by `kid`. */
static void subst_kid(const char *tmpl, const char *kid, char *out, size_t n)
{
    size_t o = 0;
    while (*tmpl && o + 1 < n) {
        if (strncmp(tmpl, "@KID@", 5) == 0) {
            o += (size_t)snprintf(out + o, n - o, "%s", kid);
            tmpl += 5;
        } else {
            out[o++] = *tmpl++;
        }
    }
    out[o < n ? o : n - 1] = '\0';
}

static void test_header_rejections(void)
{
    fixture f;
    char h[256], cl[512];
    ASSERT_EQ(fx_init(&f), 0);
    claims_fmt(cl, sizeof cl, NOW, NOW + 600, "");
    const char *kid = lk_key_kid(f.key);
    struct {
        const char *fmt;
        int want;
    } cases[] = {
        {"{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"@KID@\"}", LK_ETOKEN_ALG},
        {"{\"alg\":\"es256\",\"typ\":\"JWT\",\"kid\":\"@KID@\"}", LK_ETOKEN_ALG},
        {"{\"alg\":\"ES384\",\"typ\":\"JWT\",\"kid\":\"@KID@\"}", LK_ETOKEN_ALG},
        {"{\"alg\":\"HS256\",\"kid\":\"@KID@\"}", LK_ETOKEN_ALG},
        {"{\"alg\":\"ES256 \",\"kid\":\"@KID@\"}", LK_ETOKEN_ALG},
        {"{\"typ\":\"JWT\",\"kid\":\"@KID@\"}", LK_ETOKEN_ALG},
        {"{\"alg\":null,\"kid\":\"@KID@\"}", LK_ETOKEN_ALG},
        {"{\"alg\":[\"ES256\"],\"kid\":\"@KID@\"}", LK_ETOKEN_ALG},
        {"{\"ALG\":\"ES256\",\"kid\":\"@KID@\"}", LK_ETOKEN_ALG},
        {"{\"alg\":\"ES256\",\"typ\":\"JWS\",\"kid\":\"@KID@\"}", LK_ETOKEN_MALFORMED},
        {"{\"alg\":\"ES256\",\"typ\":1,\"kid\":\"@KID@\"}", LK_ETOKEN_MALFORMED},
        {"{\"alg\":\"ES256\",\"kid\":\"@KID@\",\"crit\":[\"exp\"]}", LK_ETOKEN_MALFORMED},
        {"{\"alg\":\"ES256\",\"kid\":\"@KID@\",\"alg\":\"none\"}", LK_ETOKEN_MALFORMED},
        {"{\"alg\":\"ES256\",\"kid\":\"@KID@\"} ", LK_ETOKEN_MALFORMED},
        {"{\"alg\":\"ES256\",\"kid\":\"@KID@\"}x", LK_ETOKEN_MALFORMED},
        {"[\"alg\",\"ES256\",\"@KID@\"]", LK_ETOKEN_MALFORMED},
        {"\"@KID@\"", LK_ETOKEN_MALFORMED},
        {"{\"alg\":\"ES256\",\"kid\":\"@KID@\"", LK_ETOKEN_MALFORMED},
        {"{\"alg\":\"ES256\",\"kid\":\"@KID@\",\"x5u\":\"http://127.0.0.1/k\"}", LK_OK},
        {"{\"alg\":\"ES256\",\"kid\":\"@KID@\"}", LK_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        subst_kid(cases[i].fmt, kid, h, sizeof h);
        char *t = forge(f.key, h, cl, SIG_ES256);
        int rc = check_at(&f, t, NOW);
        if (rc != cases[i].want)
            fprintf(stderr, "header %s\n", h);
        ASSERT_RC(rc, cases[i].want);
        free(t);
    }

    /* Key ids: missing, malformed or unknown. */
    const char *kid_cases[] = {
        "{\"alg\":\"ES256\"}",
        "{\"alg\":\"ES256\",\"kid\":\"\"}",
        "{\"alg\":\"ES256\",\"kid\":7}",
        "{\"alg\":\"ES256\",\"kid\":\"0123456789ABCDEF\"}",
        "{\"alg\":\"ES256\",\"kid\":\"0123456789abcde\"}",
        "{\"alg\":\"ES256\",\"kid\":\"0123456789abcdef0\"}",
        "{\"alg\":\"ES256\",\"kid\":\"../../etc/passwd\"}",
    };
    for (size_t i = 0; i < sizeof kid_cases / sizeof kid_cases[0]; i++) {
        char *t = forge(f.key, kid_cases[i], cl, SIG_ES256);
        ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_KID);
        free(t);
    }
    fx_free(&f);
}

static void test_unknown_and_wrong_kid(void)
{
    fixture f;
    char h[160], cl[512];
    ASSERT_EQ(fx_init(&f), 0);
    claims_fmt(cl, sizeof cl, NOW, NOW + 600, "");

    /* Signed by a key the registry does not hold. */
    char *t = mint(f.other, NOW, 600, NULL, NULL);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_KID);
    free(t);
    /* Claims the registered kid but signed by another key. */
    t = forge(f.other, std_header(f.key, h, sizeof h), cl, SIG_ES256);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_SIGNATURE);
    free(t);
    /* A resolver that finds the kid but hands back no public key. */
    f.e[1] = (entry){lk_key_kid(f.other), NULL, 0, LK_ACT_ALL, "ws_test"};
    f.n = 2;
    t = mint(f.other, NOW, 600, NULL, NULL);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_KID);
    free(t);
    f.n = 1;
    /* Resolver failures other than "not found" are passed through. */
    t = mint(f.key, NOW, 600, NULL, NULL);
    f.fail_rc = LK_EDB;
    ASSERT_RC(check_at(&f, t, NOW), LK_EDB);
    f.fail_rc = 0;
    f.calls = 0;
    ASSERT_RC(check_at(&f, t, NOW), LK_OK);
    ASSERT_EQ(f.calls, 1);
    lk_free(t);
    fx_free(&f);
}

static void test_tampering(void)
{
    fixture f;
    char cl[512];
    ASSERT_EQ(fx_init(&f), 0);
    char *tok = mint(f.key, NOW, 600, "alice", NULL);
    ASSERT_RC(check_at(&f, tok, NOW), LK_OK);

    /* Payload swapped for one granting more, signature kept. */
    char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
    claims_fmt(cl, sizeof cl, NOW, NOW + 600, ",\"sub\":\"mallory\"");
    char *pb = b64(cl, strlen(cl));
    size_t n = strlen(tok) + strlen(pb) + 1;
    char *t = malloc(n);
    snprintf(t, n, "%.*s.%s%s", (int)(dot1 - tok), tok, pb, dot2);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_SIGNATURE);
    free(t);
    free(pb);

    /* Every single-character change to the signature. */
    t = strdup(tok);
    char *sig = strrchr(t, '.') + 1;
    for (size_t i = 0; sig[i]; i++) {
        char saved = sig[i];
        sig[i] = saved == 'A' ? 'Q' : 'A';
        int rc = check_at(&f, t, NOW);
        ASSERT_TRUE(rc == LK_ETOKEN_SIGNATURE || rc == LK_ETOKEN_MALFORMED);
        sig[i] = saved;
    }
    /* Every single-character change to header and payload. */
    for (char *p = t; p < sig - 1; p++) {
        if (*p == '.')
            continue;
        char saved = *p;
        *p = saved == 'x' ? 'y' : 'x';
        ASSERT_NE(check_at(&f, t, NOW), LK_OK);
        *p = saved;
    }
    ASSERT_RC(check_at(&f, t, NOW), LK_OK);

    /* Raw signature of the wrong size, or with r or s out of range. */
    uint8_t raw[65];
    char *h = segment(tok, 0), *p = segment(tok, 1);
    char *hb = b64(h, strlen(h)), *pbb = b64(p, strlen(p));
    const struct {
        size_t len;
        uint8_t fill;
    } sigs[] = {{63, 0x11}, {65, 0x11}, {32, 0x11}, {64, 0x00}, {64, 0xff}, {1, 0}};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        memset(raw, sigs[i].fill, sizeof raw);
        char *sb = b64(raw, sigs[i].len);
        char *tt = join3(hb, pbb, sb);
        ASSERT_RC(check_at(&f, tt, NOW), LK_ETOKEN_SIGNATURE);
        free(sb);
        free(tt);
    }
    /* A valid signature with one byte appended. */
    {
        uint8_t s65[65];
        ASSERT_EQ(lk__b64url_decode(sig, strlen(sig), s65), 64);
        s65[64] = 0;
        char *sb = b64(s65, sizeof s65);
        char *tt = join3(hb, pbb, sb);
        ASSERT_RC(check_at(&f, tt, NOW), LK_ETOKEN_SIGNATURE);
        free(sb);
        free(tt);
    }
    /* A valid signature with r and s swapped. */
    {
        uint8_t s64[64];
        long m = lk__b64url_decode(sig, strlen(sig), s64);
        ASSERT_EQ(m, 64);
        uint8_t sw[64];
        memcpy(sw, s64 + 32, 32);
        memcpy(sw + 32, s64, 32);
        char *sb = b64(sw, 64);
        char *tt = join3(hb, pbb, sb);
        ASSERT_RC(check_at(&f, tt, NOW), LK_ETOKEN_SIGNATURE);
        free(sb);
        free(tt);
    }
    free(h);
    free(p);
    free(hb);
    free(pbb);
    free(t);
    lk_free(tok);
    fx_free(&f);
}

static void test_form_rejections(void)
{
    fixture f;
    ASSERT_EQ(fx_init(&f), 0);
    char *tok = mint(f.key, NOW, 600, NULL, NULL);
    size_t len = strlen(tok);

    /* Every truncation fails, read from an exact-size buffer. */
    for (size_t i = 0; i < len; i++) {
        char *cut = malloc(i ? i : 1);
        memcpy(cut, tok, i);
        lk_claims *c = NULL;
        lk_verify_opts o = {.now = NOW};
        int rc = lk_token_verify(cut, i, &o, resolve, &f, &c, NULL);
        ASSERT_NE(rc, LK_OK);
        ASSERT_NULL(c);
        free(cut);
    }
    /* And the exact-size copy of the whole token passes. */
    {
        char *exact = malloc(len);
        memcpy(exact, tok, len);
        lk_claims *c = NULL;
        lk_verify_opts o = {.now = NOW};
        ASSERT_RC(lk_token_verify(exact, len, &o, resolve, &f, &c, NULL), LK_OK);
        lk_claims_destroy(c);
        free(exact);
    }

    size_t n = len + 16;
    char *t = malloc(n);
    snprintf(t, n, "%s.", tok);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_MALFORMED);
    snprintf(t, n, "%s.abc", tok);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_MALFORMED);
    snprintf(t, n, ".%s", tok);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_MALFORMED);
    snprintf(t, n, "%s=", tok);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_MALFORMED);
    snprintf(t, n, "%s ", tok);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_MALFORMED);
    snprintf(t, n, "Bearer %s", tok);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_MALFORMED);
    free(t);
    ASSERT_RC(check_at(&f, "", NOW), LK_ETOKEN_MALFORMED);
    ASSERT_RC(check_at(&f, "..", NOW), LK_ETOKEN_MALFORMED);
    ASSERT_RC(check_at(&f, "abc", NOW), LK_ETOKEN_MALFORMED);
    ASSERT_RC(check_at(&f, "a+b.c/d.e", NOW), LK_ETOKEN_MALFORMED);
    /* An embedded NUL inside len is not a shorter token. */
    {
        char *z = strdup(tok);
        z[len / 2] = '\0';
        lk_claims *c = NULL;
        lk_verify_opts o = {.now = NOW};
        ASSERT_NE(lk_token_verify(z, len, &o, resolve, &f, &c, NULL), LK_OK);
        free(z);
    }
    /* Payload that is not a JSON object, validly signed. */
    char h[160];
    char *np = forge(f.key, std_header(f.key, h, sizeof h), "[1,2,3]", SIG_ES256);
    ASSERT_RC(check_at(&f, np, NOW), LK_ETOKEN_MALFORMED);
    free(np);
    np = forge(f.key, std_header(f.key, h, sizeof h), "{\"iat\":1", SIG_ES256);
    ASSERT_RC(check_at(&f, np, NOW), LK_ETOKEN_MALFORMED);
    free(np);
    lk_free(tok);
    fx_free(&f);
}

static void test_size_limit(void)
{
    fixture f;
    char h[160];
    ASSERT_EQ(fx_init(&f), 0);

    /* A validly signed token that is just over 8 KiB. */
    size_t pad = 6000;
    char *cl = malloc(pad + 600);
    char *filler = malloc(pad + 1);
    memset(filler, 'x', pad);
    filler[pad] = '\0';
    snprintf(cl, pad + 600,
             "{\"iat\":%d,\"exp\":%d,\"jti\":\"" JTI "\",\"cap\":" CAP ",\"pad\":\"%s\"}",
             NOW, NOW + 600, filler);
    char *t = forge(f.key, std_header(f.key, h, sizeof h), cl, SIG_ES256);
    ASSERT_TRUE(strlen(t) > LK_TOKEN_MAX_BYTES);
    f.calls = 0;
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_TOO_LARGE);
    ASSERT_EQ(f.calls, 0);
    /* A caller may allow more. */
    lk_verify_opts o = {.now = NOW, .max_bytes = 16384};
    ASSERT_RC(check(&f, t, &o), LK_OK);
    free(t);

    /* Exactly at the limit is accepted; one byte more is not. */
    char *ok = mint(f.key, NOW, 600, NULL, NULL);
    o.max_bytes = strlen(ok);
    ASSERT_RC(check(&f, ok, &o), LK_OK);
    o.max_bytes = strlen(ok) - 1;
    ASSERT_RC(check(&f, ok, &o), LK_ETOKEN_TOO_LARGE);
    lk_free(ok);
    free(cl);
    free(filler);
    fx_free(&f);
}

static void test_times(void)
{
    fixture f;
    char cl[512];
    ASSERT_EQ(fx_init(&f), 0);
    char *t = mint(f.key, NOW, 600, NULL, NULL);

    ASSERT_RC(check_at(&f, t, NOW + 599), LK_OK);
    ASSERT_RC(check_at(&f, t, NOW + 600), LK_ETOKEN_EXPIRED); /* now == exp */
    ASSERT_RC(check_at(&f, t, NOW + 100000), LK_ETOKEN_EXPIRED);
    /* iat in the future: 30 s of skew, no more. */
    ASSERT_RC(check_at(&f, t, NOW - 30), LK_OK);
    ASSERT_RC(check_at(&f, t, NOW - 31), LK_ETOKEN_NOT_YET_VALID);
    lk_free(t);

    /* nbf beyond the skew. */
    char *tn = signed_claims(f.key, claims_fmt(cl, sizeof cl, NOW, NOW + 600,
                                               ",\"nbf\":1700000100"));
    ASSERT_RC(check_at(&f, tn, NOW + 70), LK_OK);
    ASSERT_RC(check_at(&f, tn, NOW + 69), LK_ETOKEN_NOT_YET_VALID);
    free(tn);
    lk_mint_opts mo = {.capability = CAP, .now = NOW, .nbf = NOW + 31};
    ASSERT_RC(lk_token_mint(f.key, &mo, &tn, NULL), LK_OK);
    ASSERT_RC(check_at(&f, tn, NOW), LK_ETOKEN_NOT_YET_VALID);
    ASSERT_RC(check_at(&f, tn, NOW + 1), LK_OK);
    lk_free(tn);

    /* exp - iat against max_ttl, exactly. */
    char *a = signed_claims(f.key, claims_fmt(cl, sizeof cl, NOW, NOW + 3600, ""));
    char *b = signed_claims(f.key, claims_fmt(cl, sizeof cl, NOW, NOW + 3601, ""));
    ASSERT_RC(check_at(&f, a, NOW), LK_OK);
    ASSERT_RC(check_at(&f, b, NOW), LK_ETOKEN_TTL);
    lk_verify_opts o = {.now = NOW, .max_ttl = 3601};
    ASSERT_RC(check(&f, b, &o), LK_OK);
    o.max_ttl = 60;
    ASSERT_RC(check(&f, a, &o), LK_ETOKEN_TTL);
    char *c60 = signed_claims(f.key, claims_fmt(cl, sizeof cl, NOW, NOW + 60, ""));
    char *c61 = signed_claims(f.key, claims_fmt(cl, sizeof cl, NOW, NOW + 61, ""));
    ASSERT_RC(check(&f, c60, &o), LK_OK);
    ASSERT_RC(check(&f, c61, &o), LK_ETOKEN_TTL);
    o.max_ttl = -1;
    ASSERT_RC(check(&f, c60, &o), LK_EINVAL);
    /* Expiry is reported before lifetime. */
    ASSERT_RC(check_at(&f, b, NOW + 3601), LK_ETOKEN_EXPIRED);
    free(a);
    free(b);
    free(c60);
    free(c61);
    fx_free(&f);
}

static void test_claim_rejections(void)
{
    fixture f;
    ASSERT_EQ(fx_init(&f), 0);
    char long_sub[LK_SUB_MAX + 16], long_jti[300];
    memset(long_sub, 's', sizeof long_sub);
    memset(long_jti, 'j', sizeof long_jti);
    char sub128[200], sub129[200], jti256[320], jti257[320];
    snprintf(sub128, sizeof sub128, "\"sub\":\"%.128s\"", long_sub);
    snprintf(sub129, sizeof sub129, "\"sub\":\"%.129s\"", long_sub);
    snprintf(jti256, sizeof jti256, "\"jti\":\"%.256s\"", long_jti);
    snprintf(jti257, sizeof jti257, "\"jti\":\"%.257s\"", long_jti);
    char c1[1024], c2[1024], c3[1024], c4[1024];
    snprintf(c1, sizeof c1, "{\"iat\":%d,\"exp\":%d,\"cap\":" CAP ",%s}", NOW, NOW + 600, jti256);
    snprintf(c2, sizeof c2, "{\"iat\":%d,\"exp\":%d,\"cap\":" CAP ",%s}", NOW, NOW + 600, jti257);
    snprintf(c3, sizeof c3, "{\"iat\":%d,\"exp\":%d,\"jti\":\"" JTI "\",\"cap\":" CAP ",%s}",
             NOW, NOW + 600, sub128);
    snprintf(c4, sizeof c4, "{\"iat\":%d,\"exp\":%d,\"jti\":\"" JTI "\",\"cap\":" CAP ",%s}",
             NOW, NOW + 600, sub129);

    struct {
        const char *claims;
        int want;
    } cases[] = {
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_OK},
        {"{\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\"}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":\"1700000000\",\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000.5,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1e300,\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":-5,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":true,\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":null,\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1700000000,\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"nbf\":\"soon\",\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1.7e9,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":" CAP "}", LK_OK},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"0123456789abcde\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"0123456789abcdef\",\"cap\":" CAP "}", LK_OK},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":1234567890123456789,\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {c1, LK_OK},
        {c2, LK_ETOKEN_CLAIMS},
        {c3, LK_OK},
        {c4, LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"sub\":42,\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"sub\":null,\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"sub\":\"\",\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"aud\":5,\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"aud\":[\"a\",1],\"cap\":" CAP "}", LK_ETOKEN_CLAIMS},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"aud\":\"x\",\"cap\":" CAP "}", LK_OK},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":{}}", LK_ECAP},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":{\"chat\":[\"realtime:dance\"]}}", LK_ECAP},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":{\"chat\":[]}}", LK_ECAP},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":{\"chat\":[\"realtime:*\"]}}", LK_ECAP},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":{\"ch*at\":[\"realtime:publish\"]}}", LK_ECAP},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":[\"realtime:publish\"]}", LK_ECAP},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":\"*\"}", LK_ECAP},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":{\"news\":[\"realtime:presence\"]}}", LK_OK},
        {"{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI "\",\"cap\":" CAP ",\"exp\":1800000000}", LK_ETOKEN_CLAIMS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = signed_claims(f.key, cases[i].claims);
        int rc = check_at(&f, t, NOW);
        if (rc != cases[i].want)
            fprintf(stderr, "claims case %zu: %s\n", i, cases[i].claims);
        ASSERT_RC(rc, cases[i].want);
        free(t);
    }
    fx_free(&f);
}

/* cJSON would end these strings at the NUL, so "ES256\u0000x" would read
 * as ES256 and "a\u0000b" as the pattern "a": refused in either form. */
static void test_embedded_nul(void)
{
    fixture f;
    char h[256], cl[512];
    ASSERT_EQ(fx_init(&f), 0);
    const char *kid = lk_key_kid(f.key);
    claims_fmt(cl, sizeof cl, NOW, NOW + 600, "");

    const char *headers[] = {
        "{\"alg\":\"ES256\\u0000x\",\"kid\":\"@KID@\"}",
        "{\"alg\":\"ES256\",\"kid\":\"@KID@\\u0000\"}",
        "{\"alg\":\"ES256\",\"typ\":\"JWT\\u0000\",\"kid\":\"@KID@\"}",
        "{\"alg\\u0000\":\"none\",\"alg\":\"ES256\",\"kid\":\"@KID@\"}",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        subst_kid(headers[i], kid, h, sizeof h);
        char *t = forge(f.key, h, cl, SIG_ES256);
        ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_MALFORMED);
        free(t);
    }
    /* A raw NUL byte inside the alg string. */
    int hn = snprintf(h, sizeof h, "{\"alg\":\"ES256?x\",\"kid\":\"%s\"}", kid);
    *strchr(h, '?') = '\0';
    char *t = forge_n(f.key, h, (size_t)hn, cl, strlen(cl), SIG_ES256);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_MALFORMED);
    free(t);
    ASSERT_EQ(f.calls, 0);

    const char *extras[] = {
        ",\"sub\":\"alice\\u0000admin\"",
        ",\"aud\":\"x\\u0000\"",
        ",\"jti2\":{\"k\":\"\\u0000\"}",
    };
    for (size_t i = 0; i < sizeof extras / sizeof extras[0]; i++) {
        t = signed_claims(f.key, claims_fmt(cl, sizeof cl, NOW, NOW + 600, extras[i]));
        ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_MALFORMED);
        free(t);
    }
    t = signed_claims(f.key, "{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI
                             "\",\"cap\":{\"a\\u0000b\":[\"realtime:publish\"]}}");
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_MALFORMED);
    free(t);
    int pn = snprintf(cl, sizeof cl, "{\"iat\":%d,\"exp\":%d,\"jti\":\"" JTI
                      "\",\"sub\":\"bob?x\",\"cap\":" CAP "}", NOW, NOW + 600);
    *strchr(cl, '?') = '\0';
    t = forge_n(f.key, std_header(f.key, h, sizeof h), strlen(h), cl, (size_t)pn, SIG_ES256);
    ASSERT_RC(check_at(&f, t, NOW), LK_ETOKEN_MALFORMED);
    free(t);

    /* An escaped backslash followed by "u0000" is just text. */
    lk_claims *c = NULL;
    t = signed_claims(f.key, claims_fmt(cl, sizeof cl, NOW, NOW + 600,
                                        ",\"sub\":\"a\\\\u0000b\""));
    ASSERT_RC(verify_at(&f, t, NOW, &c, NULL), LK_OK);
    ASSERT_STREQ(lk_claims_sub(c), "a\\u0000b");
    lk_claims_destroy(c);
    free(t);
    fx_free(&f);
}

/* Times past 2038 (beyond a 32-bit valueint) and at the top of the range
 * that a double holds exactly. */
static void test_far_future_times(void)
{
    fixture f;
    char *tok = NULL;
    lk_claims *c = NULL;
    const int64_t y2100 = 4102444800LL, top = 9007199254740991LL;
    ASSERT_EQ(fx_init(&f), 0);

    tok = mint(f.key, y2100, 600, NULL, NULL);
    ASSERT_NOT_NULL(tok);
    ASSERT_RC(verify_at(&f, tok, y2100 + 1, &c, NULL), LK_OK);
    ASSERT_EQ(lk_claims_iat(c), y2100);
    ASSERT_EQ(lk_claims_exp(c), y2100 + 600);
    lk_claims_destroy(c);
    ASSERT_RC(check_at(&f, tok, y2100 + 600), LK_ETOKEN_EXPIRED);
    lk_free(tok);

    lk_mint_opts o = {.capability = CAP, .now = top - 600};
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_OK);
    ASSERT_RC(check_at(&f, tok, top - 1), LK_OK);
    ASSERT_RC(check_at(&f, tok, top), LK_ETOKEN_EXPIRED);
    lk_free(tok);
    o.now = top - 599;
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_EINVAL);
    ASSERT_NULL(tok);
    /* Must be refused without computing now + ttl (it would overflow). */
    o.now = INT64_MAX;
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_EINVAL);
    o.now = INT64_MAX - 300;
    o.ttl = 600;
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_EINVAL);
    o.now = -1;
    ASSERT_RC(lk_token_mint(f.key, &o, &tok, NULL), LK_EINVAL);
    /* A verifier clock at the extremes is defined behaviour too. */
    tok = mint(f.key, NOW, 600, NULL, NULL);
    ASSERT_RC(check_at(&f, tok, INT64_MAX), LK_ETOKEN_EXPIRED);
    ASSERT_RC(check_at(&f, tok, INT64_MIN), LK_ETOKEN_NOT_YET_VALID);
    lk_free(tok);
    fx_free(&f);
}

static void test_audience(void)
{
    fixture f;
    char cl[512];
    ASSERT_EQ(fx_init(&f), 0);
    char *t = mint(f.key, NOW, 600, NULL, "api.example");
    char *none = mint(f.key, NOW, 600, NULL, NULL);
    char *arr = signed_claims(f.key, claims_fmt(cl, sizeof cl, NOW, NOW + 600,
                                                ",\"aud\":[\"other\",\"api.example\"]"));
    char *arr_no = signed_claims(f.key, claims_fmt(cl, sizeof cl, NOW, NOW + 600,
                                                   ",\"aud\":[\"other\"]"));
    char *empty = signed_claims(f.key, claims_fmt(cl, sizeof cl, NOW, NOW + 600,
                                                  ",\"aud\":[]"));
    lk_verify_opts o = {.now = NOW, .audience = "api.example"};
    ASSERT_RC(check(&f, t, &o), LK_OK);
    ASSERT_RC(check(&f, arr, &o), LK_OK);
    ASSERT_RC(check(&f, arr_no, &o), LK_ETOKEN_AUDIENCE);
    ASSERT_RC(check(&f, empty, &o), LK_ETOKEN_AUDIENCE);
    ASSERT_RC(check(&f, none, &o), LK_ETOKEN_AUDIENCE);
    o.audience = "API.example";
    ASSERT_RC(check(&f, t, &o), LK_ETOKEN_AUDIENCE);
    /* Without a configured audience, aud is not checked. */
    o.audience = NULL;
    ASSERT_RC(check(&f, t, &o), LK_OK);
    ASSERT_RC(check(&f, arr_no, &o), LK_OK);
    ASSERT_RC(check(&f, none, &o), LK_OK);
    lk_free(t);
    lk_free(none);
    free(arr);
    free(arr_no);
    free(empty);
    fx_free(&f);
}

static void test_key_status_and_scopes(void)
{
    fixture f;
    char h[160], cl[512];
    lk_error err = {0};
    lk_claims *c = NULL;
    ASSERT_EQ(fx_init(&f), 0);
    char *t = mint(f.key, NOW, 600, NULL, NULL);

    f.e[0].revoked = 1;
    ASSERT_RC(check_at(&f, t, NOW), LK_EKEY_REVOKED);
    /* Status is checked only once everything else passed. */
    char *bad = forge(f.other, std_header(f.key, h, sizeof h),
                      claims_fmt(cl, sizeof cl, NOW, NOW + 600, ""), SIG_ES256);
    ASSERT_RC(check_at(&f, bad, NOW), LK_ETOKEN_SIGNATURE);
    ASSERT_RC(check_at(&f, t, NOW + 600), LK_ETOKEN_EXPIRED);
    char *nocap = signed_claims(f.key, "{\"iat\":1700000000,\"exp\":1700000600,\"jti\":\"" JTI
                                       "\",\"cap\":{}}");
    ASSERT_RC(check_at(&f, nocap, NOW), LK_ECAP);
    f.e[0].revoked = 0;

    /* The key may subscribe only; the token also asks to publish. */
    f.e[0].scopes = LK_ACT_SUBSCRIBE;
    ASSERT_RC(verify_at(&f, t, NOW, &c, &err), LK_ESCOPE_MISSING);
    ASSERT_NULL(c);
    ASSERT_NOT_NULL(strstr(err.message, "realtime:publish"));
    f.e[0].scopes = LK_ACT_PUBLISH | LK_ACT_SUBSCRIBE;
    ASSERT_RC(check_at(&f, t, NOW), LK_OK);
    f.e[0].scopes = 0;
    ASSERT_RC(check_at(&f, t, NOW), LK_ESCOPE_MISSING);
    lk_free(t);
    free(bad);
    free(nocap);
    fx_free(&f);
}

static void test_errors_never_echo_token(void)
{
    fixture f;
    ASSERT_EQ(fx_init(&f), 0);
    char *t = mint(f.key, NOW, 600, "secret-client", NULL);
    char *sig = strrchr(t, '.') + 1;
    const int64_t at[] = {NOW + 600, NOW - 100};
    for (size_t i = 0; i < 2; i++) {
        lk_error err = {0};
        lk_claims *c = NULL;
        ASSERT_NE(verify_at(&f, t, at[i], &c, &err), LK_OK);
        ASSERT_NULL(strstr(err.message, sig));
        ASSERT_NULL(strstr(err.message, "secret-client"));
        ASSERT_NULL(strstr(err.message, "eyJ"));
    }
    lk_free(t);
    fx_free(&f);
}

static void test_close_codes(void)
{
    ASSERT_EQ(lk_token_close_code(LK_OK), 0);
    const int c4401[] = {LK_ETOKEN_MALFORMED, LK_ETOKEN_TOO_LARGE, LK_ETOKEN_ALG,
                         LK_ETOKEN_KID, LK_ETOKEN_SIGNATURE, LK_ETOKEN_EXPIRED,
                         LK_ETOKEN_NOT_YET_VALID, LK_ETOKEN_TTL, LK_ETOKEN_AUDIENCE,
                         LK_ETOKEN_CLAIMS, LK_ECAP, LK_EINVAL, LK_EDB, LK_ENOMEM};
    for (size_t i = 0; i < sizeof c4401 / sizeof c4401[0]; i++)
        ASSERT_EQ(lk_token_close_code(c4401[i]), 4401);
    ASSERT_EQ(lk_token_close_code(LK_EKEY_REVOKED), 4403);
    ASSERT_EQ(lk_token_close_code(LK_ESCOPE_MISSING), 4403);
}

static void test_null_arguments(void)
{
    fixture f;
    lk_claims *c = NULL;
    ASSERT_EQ(fx_init(&f), 0);
    char *t = mint(f.key, NOW, 600, NULL, NULL);
    ASSERT_RC(lk_token_verify(NULL, 0, NULL, resolve, &f, &c, NULL), LK_EINVAL);
    ASSERT_RC(lk_token_verify(t, strlen(t), NULL, NULL, &f, &c, NULL), LK_EINVAL);
    ASSERT_RC(lk_token_verify(t, strlen(t), NULL, resolve, &f, NULL, NULL), LK_EINVAL);
    lk_claims_destroy(NULL);
    ASSERT_NULL(lk_claims_sub(NULL));
    ASSERT_EQ(lk_claims_exp(NULL), 0);
    lk_free(t);
    fx_free(&f);
}

LK_TEST_MAIN("token",
             LK_TEST(test_round_trip_all_claims),
             LK_TEST(test_mint_defaults),
             LK_TEST(test_mint_refusals),
             LK_TEST(test_mint_refuses_oversized_token),
             LK_TEST(test_known_answer_token),
             LK_TEST(test_libjwt_decodes_our_tokens),
             LK_TEST(test_libjwt_minted_tokens_verify),
             LK_TEST(test_alg_none),
             LK_TEST(test_hs256_with_public_pem_refused),
             LK_TEST(test_header_rejections),
             LK_TEST(test_unknown_and_wrong_kid),
             LK_TEST(test_tampering),
             LK_TEST(test_form_rejections),
             LK_TEST(test_size_limit),
             LK_TEST(test_times),
             LK_TEST(test_claim_rejections),
             LK_TEST(test_embedded_nul),
             LK_TEST(test_far_future_times),
             LK_TEST(test_audience),
             LK_TEST(test_key_status_and_scopes),
             LK_TEST(test_errors_never_echo_token),
             LK_TEST(test_close_codes),
             LK_TEST(test_null_arguments))
